/* Logging: one sink (callback + argument) and one level, both changeable at any time. */
#include "core.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const level_names[] = {"none", "error", "warn", "info", "debug", "trace"};

_Atomic int fqi_log_level_now = FQ_LOG_WARN;

static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static fq_log_fn sink_fn;
static void *sink_arg;

static void log_stderr(fq_log_level level, const char *subsys, const char *msg, void *arg)
{
	FQI_UNUSED(arg);
	/* One fprintf per line keeps concurrent lines whole. */
	fprintf(stderr, "fabriq %s [%s] %s\n", level_names[level], subsys, msg);
}

__attribute__((constructor)) static void log_init_from_env(void)
{
	const char *env = getenv("FQ_LOG_LEVEL");
	fq_log_level level;

	if (env != NULL && fq_log_level_parse(env, &level) == 0)
		atomic_store(&fqi_log_level_now, (int)level);
}

int fq_log_level_parse(const char *text, fq_log_level *out)
{
	if (text == NULL || out == NULL)
		return FQ_EINVAL;
	for (size_t i = 0; i < FQI_ARRAY_LEN(level_names); i++) {
		if (strcasecmp(text, level_names[i]) == 0) {
			*out = (fq_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(text, "warning") == 0) {
		*out = FQ_LOG_WARN;
		return 0;
	}
	return FQ_EINVAL;
}

void fq_log_set_handler(fq_log_fn fn, void *arg)
{
	pthread_mutex_lock(&sink_lock);
	sink_fn = fn;
	sink_arg = arg;
	pthread_mutex_unlock(&sink_lock);
}

void fq_log_set_level(fq_log_level level)
{
	if ((int)level < FQ_LOG_NONE)
		level = FQ_LOG_NONE;
	if (level > FQ_LOG_TRACE)
		level = FQ_LOG_TRACE;
	atomic_store(&fqi_log_level_now, (int)level);
}

fq_log_level fq_log_get_level(void)
{
	return (fq_log_level)atomic_load(&fqi_log_level_now);
}

static void log_emit(fq_log_level level, const char *subsys, const char *fmt, va_list ap)
{
	char msg[1024];
	fq_log_fn fn;
	void *arg;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	pthread_mutex_lock(&sink_lock);
	fn = sink_fn != NULL ? sink_fn : log_stderr;
	arg = sink_arg;
	pthread_mutex_unlock(&sink_lock);
	fn(level, subsys, msg, arg);
}

void fqi_log(fq_log_level level, const char *subsys, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(level, subsys, fmt, ap);
	va_end(ap);
}

void fq_log(fq_log_level level, const char *subsys, const char *fmt, ...)
{
	va_list ap;

	if (level == FQ_LOG_NONE ||
	    (int)level > atomic_load_explicit(&fqi_log_level_now, memory_order_relaxed))
		return;
	va_start(ap, fmt);
	log_emit(level, subsys, fmt, ap);
	va_end(ap);
}
