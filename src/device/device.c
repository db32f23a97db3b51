/*
 * The device: life cycle, configuration, the state machine loop and the properties API.
 *
 * fq_device_run's thread carries out every transition and runs every user callback; other
 * threads (control plugins, signal handling, the user's) only request transitions. A request
 * is checked against the current state (or, during a state that advances by itself, against
 * the state it will reach), interrupts the device's blocking socket calls, and waits in
 * `pending` until the loop takes it.
 */
#include "device/device_impl.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool is_terminal(fq_state s)
{
	return s == FQ_STATE_EXITING || s == FQ_STATE_ERROR;
}

/* States that advance by themselves once their work is done. */
static bool is_auto(fq_state s)
{
	return fq_state_next(s, FQ_TRANSITION_AUTO) >= 0;
}

/* ---- Life cycle ------------------------------------------------------------------------- */

int fq_device_new(fq_device **out, const fq_device_hooks *hooks)
{
	fq_device *d;
	int rc;

	if (out == NULL || (hooks != NULL && (hooks->size == 0 || hooks->size > sizeof(*hooks))))
		return FQ_EINVAL;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return FQ_ENOMEM;
	if (hooks != NULL)
		memcpy(&d->hooks, hooks, hooks->size);
	d->hooks.size = sizeof(d->hooks);
	d->pending = -1;
	d->state = FQ_STATE_IDLE;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	pthread_mutex_init(&d->chan_lock, NULL);
	pthread_cond_init(&d->rate_cond, NULL);
	rc = fqc_opts_new(&d->opts);
	if (rc == 0)
		rc = fqc_props_new(&d->props);
	if (rc == 0)
		rc = fqc_opts_add(d->opts, "device", fqc_std_options, fqc_std_options_count);
	if (rc != 0) {
		fq_device_destroy(d);
		return rc;
	}
	*out = d;
	return 0;
}

void fq_device_destroy(fq_device *d)
{
	if (d == NULL)
		return;
	fqd_rate_stop(d);
	fqd_plugins_stop(d);
	fqd_channels_free(d);
	fqd_plugins_free(d);
	for (size_t i = 0; i < d->nhandlers; i++)
		free(d->handlers[i].channel);
	free(d->handlers);
	free(d->state_subs);
	for (size_t i = 0; i < d->nprop_subs; i++) {
		fqc_props_unsubscribe(d->props, d->prop_subs[i].store_token);
		free(d->prop_subs[i].arg); /* the trampoline */
	}
	free(d->prop_subs);
	fqc_props_free(d->props);
	fqc_opts_free(d->opts);
	free(d->controller);
	free(d->id);
	free(d->program);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->chan_lock);
	pthread_cond_destroy(&d->rate_cond);
	free(d);
}

int fq_device_add_options(fq_device *d, const fq_device_option *table, size_t n)
{
	if (d == NULL || (table == NULL && n != 0))
		return FQ_EINVAL;
	if (d->configured)
		return FQ_ESTATE;
	return n == 0 ? 0 : fqc_opts_add(d->opts, "device-specific", table, n);
}

static int add_handler(fq_device *d, const char *channel, fq_on_data_fn fn, fq_on_parts_fn pfn,
                       void *arg)
{
	fqd_handler *h;

	int rc = 0;

	if (d == NULL || channel == NULL || (fn == NULL && pfn == NULL))
		return FQ_EINVAL;
	pthread_mutex_lock(&d->lock);
	if (d->state == FQ_STATE_RUNNING || d->state == FQ_STATE_EXITING ||
	    d->state == FQ_STATE_ERROR)
		rc = FQ_ESTATE;
	for (size_t i = 0; i < d->nhandlers && rc == 0; i++) {
		if (strcmp(d->handlers[i].channel, channel) == 0)
			rc = FQ_EEXIST;
	}
	if (rc == 0) {
		h = realloc(d->handlers, (d->nhandlers + 1) * sizeof(*h));
		if (h == NULL)
			rc = FQ_ENOMEM;
		else
			d->handlers = h;
	}
	if (rc == 0) {
		h = &d->handlers[d->nhandlers];
		h->channel = strdup(channel);
		h->on_data = fn;
		h->on_parts = pfn;
		h->arg = arg;
		if (h->channel == NULL)
			rc = FQ_ENOMEM;
		else
			d->nhandlers++;
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int fq_device_on_data(fq_device *d, const char *channel, fq_on_data_fn fn, void *arg)
{
	return add_handler(d, channel, fn, NULL, arg);
}

int fq_device_on_parts(fq_device *d, const char *channel, fq_on_parts_fn fn, void *arg)
{
	return add_handler(d, channel, NULL, fn, arg);
}

const char *fq_device_id(fq_device *d)
{
	return d != NULL && d->id != NULL ? d->id : "";
}

int fq_device_option_at(size_t i, fq_opt_info *out)
{
	const fq_device_option *o;

	if (out == NULL)
		return FQ_EINVAL;
	if (i >= fqc_std_options_count)
		return FQ_ENOENT;
	o = &fqc_std_options[i];
	out->component = "device";
	out->name = o->name;
	out->type = o->type;
	out->default_value = o->default_value != NULL ? o->default_value : "";
	out->help = o->help;
	return 0;
}

/* ---- Configuration ---------------------------------------------------------------------- */

/* FairMQ's severities onto fabriq's log levels. */
static int apply_severity(const char *text)
{
	static const struct {
		const char *name;
		fq_log_level level;
	} map[] = {
	    {"nolog", FQ_LOG_NONE},   {"fatal", FQ_LOG_ERROR},    {"error", FQ_LOG_ERROR},
	    {"alarm", FQ_LOG_WARN},   {"important", FQ_LOG_INFO}, {"warn", FQ_LOG_WARN},
	    {"warning", FQ_LOG_WARN}, {"state", FQ_LOG_INFO},     {"info", FQ_LOG_INFO},
	    {"detail", FQ_LOG_DEBUG}, {"debug", FQ_LOG_DEBUG},    {"debug1", FQ_LOG_DEBUG},
	    {"trace", FQ_LOG_TRACE},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(text, map[i].name) == 0) {
			fq_log_set_level(map[i].level);
			return 0;
		}
	}
	return FQ_EINVAL;
}

static void report(fq_device *d, FILE *err, const char *fmt, ...)
{
	va_list ap;

	fprintf(err, "%s: ", d->program);
	va_start(ap, fmt);
	vfprintf(err, fmt, ap);
	va_end(ap);
	fputc('\n', err);
}

/* Each line of a multi option (joined with '\n'), in order. */
static int each_line(const char *joined, int (*fn)(const char *line, void *arg), void *arg)
{
	char *copy, *save = NULL;
	int rc = 0;

	if (joined == NULL)
		return 0;
	copy = strdup(joined);
	if (copy == NULL)
		return FQ_ENOMEM;
	for (char *line = strtok_r(copy, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		int r = fn(line, arg);

		if (r != 0 && rc == 0)
			rc = r;
	}
	free(copy);
	return rc;
}

struct subopt_ctx {
	fq_device *d;
	FILE *err;
};

static int one_channel_config(const char *line, void *arg)
{
	struct subopt_ctx *c = arg;

	return fqc_channels_from_subopt(line, c->d->props, c->err);
}

static int check_values(fq_device *d, FILE *err)
{
	static const char *const controls[] = {"dynamic", "interactive", "external", "static",
	                                       "none"};
	char buf[256];
	int rc = 0;
	bool ok = false;

	if (fqc_props_get(d->props, "severity", buf, sizeof(buf)) == 0 &&
	    apply_severity(buf) != 0) {
		report(d, err,
		       "--severity: '%s' is not one of trace, debug, info, warn, error, "
		       "fatal, nolog",
		       buf);
		rc = FQ_EINVAL;
	}
	if (fqc_props_get(d->props, "rate", buf, sizeof(buf)) == 0) {
		char *end;
		double r = strtod(buf, &end);

		if (end == buf || *end != '\0' || !(r >= 0) || isinf(r)) {
			report(d, err, "--rate: '%s' is not a rate in Hz (a number >= 0)", buf);
			rc = FQ_EINVAL;
		}
	}
	if (fqc_props_get(d->props, "control", buf, sizeof(buf)) == 0) {
		for (size_t i = 0; i < sizeof(controls) / sizeof(controls[0]); i++)
			ok = ok || strcmp(buf, controls[i]) == 0;
		if (!ok) {
			report(d, err,
			       "--control: '%s' is not one of dynamic, interactive, static, none",
			       buf);
			rc = FQ_EINVAL;
		}
	}
	if (fqc_props_get(d->props, "transport", buf, sizeof(buf)) == 0 &&
	    fq_transport_probe(buf) != 0) {
		report(d, err, "--transport: '%s': %s", buf, fq_strerror(fq_transport_probe(buf)));
		rc = FQ_EINVAL;
	}
	return rc;
}

static int print_version(fq_device *d)
{
	printf("%s (fabriq %s)\n", d->program, fq_version());
	return 1;
}

int fq_device_configure(fq_device *d, int argc, char **argv)
{
	FILE *err = stderr;
	char *path, *key;
	bool flag = false;
	int rc;

	if (d == NULL || argc < 1 || argv == NULL)
		return FQ_EINVAL;
	if (d->configured)
		return FQ_ESTATE;
	d->configured = true;
	free(d->program);
	{
		char *copy = strdup(argv[0]);

		d->program = copy ? strdup(basename(copy)) : NULL;
		free(copy);
		if (d->program == NULL)
			return FQ_ENOMEM;
	}
	rc = fqd_plugins_load(d, argc, argv, err);
	if (rc != 0)
		return rc;
	rc = fqc_parse_argv(d->opts, d->props, argc, argv, err);
	if (rc != 0)
		return rc;
	if (fq_device_get_bool(d, "help", &flag) == 0 && flag) {
		fqc_opts_help(d->opts, d->program, stdout);
		return 1;
	}
	if (fq_device_get_bool(d, "version", &flag) == 0 && flag)
		return print_version(d);
	rc = check_values(d, err);
	d->id = fqc_props_dup(d->props, "id");
	if (fq_device_get_bool(d, "print-options", &flag) == 0 && flag) {
		fqc_opts_print(d->opts, d->props, stdout);
		return rc == 0 ? 1 : rc;
	}
	if (d->id == NULL || d->id[0] == '\0') {
		report(d, err, "--id: every device needs an id (--id NAME)");
		rc = FQ_EINVAL;
	}
	path = fqc_props_dup(d->props, "mq-config");
	key = fqc_props_dup(d->props, "config-key");
	if (path != NULL && d->id != NULL) {
		int r = fqc_channels_from_json(path, d->id, key, d->props, err);

		if (r != 0)
			rc = r;
	}
	free(path);
	free(key);
	{
		char *cc = fqc_props_dup(d->props, "channel-config");
		struct subopt_ctx ctx = {d, err};
		int r = each_line(cc, one_channel_config, &ctx);

		free(cc);
		if (r != 0)
			rc = r;
	}
	if (rc == 0)
		rc = fqc_channels_check(d->props, err);
	if (rc != 0)
		return rc == FQ_ENOENT ? FQ_EINVAL : rc;
	if (fq_device_get_bool(d, "print-channels", &flag) == 0 && flag) {
		fqd_print_channels(d, stdout);
		return 1;
	}
	return 0;
}

/* ---- State machine ---------------------------------------------------------------------- */

/* Enter `s` (lock held; released while subscribers run, then taken again). */
static void enter_state(fq_device *d, fq_state s)
{
	fqd_sub_entry subs[32];
	size_t n;

	d->state = s;
	d->gen++;
	/* Blocking calls work again, unless a request is already waiting. Under the lock, as the
	 * interrupt of a request is: the two never cross. */
	if (d->pending < 0)
		fqd_channels_interrupt(d, false);
	n = d->nstate_subs < 32 ? d->nstate_subs : 32;
	if (n > 0)
		memcpy(subs, d->state_subs, n * sizeof(*subs));
	pthread_cond_broadcast(&d->cond);
	d->notifying++;
	pthread_mutex_unlock(&d->lock);
	fq_log(FQ_LOG_INFO, FQD_SUBSYS, "%s: state %s", fq_device_id(d), fq_state_name(s));
	for (size_t i = 0; i < n; i++)
		subs[i].fn(d, s, subs[i].arg);
	pthread_mutex_lock(&d->lock);
	if (--d->notifying == 0)
		pthread_cond_broadcast(&d->cond); /* fq_device_unsubscribe_state may wait */
}

void fqd_set_error(fq_device *d, int code, const char *what)
{
	fq_log(FQ_LOG_ERROR, FQD_SUBSYS, "%s: %s failed: %s (%s)", fq_device_id(d), what,
	       fq_strerror(code), fq_err_name(code));
	pthread_mutex_lock(&d->lock);
	if (d->error_code == 0)
		d->error_code = code < 0 ? code : FQ_EINTERNAL;
	pthread_mutex_unlock(&d->lock);
}

static int call_hook(fq_device *d, int (*fn)(fq_device *, void *), const char *what)
{
	int rc;

	if (fn == NULL)
		return 0;
	rc = fn(d, d->hooks.arg);
	if (rc < 0)
		fqd_set_error(d, rc, what);
	return rc < 0 ? rc : 0;
}

/* --rate in Hz as a period in ns (0 = as fast as possible). */
static int64_t rate_period_ns(fq_device *d)
{
	char buf[64];
	double hz;

	if (fqc_props_get(d->props, "rate", buf, sizeof(buf)) != 0)
		return 0;
	hz = strtod(buf, NULL);
	return hz > 0 ? (int64_t)(1e9 / hz) : 0;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* RUNNING: pre_run, the user's loop, post_run. Returns 0 or the failing hook's code. */
static int do_running(fq_device *d)
{
	int rc = call_hook(d, d->hooks.pre_run, "pre_run");

	if (rc != 0)
		return rc;
	fqd_rate_start(d);
	if (d->hooks.run != NULL) {
		rc = call_hook(d, d->hooks.run, "run");
	} else if (d->hooks.conditional_run != NULL) {
		int64_t period = rate_period_ns(d), next = mono_ns();

		while (!fq_device_new_state_pending(d)) {
			if (!d->hooks.conditional_run(d, d->hooks.arg))
				break;
			if (period > 0) {
				int64_t now = mono_ns();

				next += period;
				if (next > now)
					fq_device_wait_for(d,
					                   (int)((next - now + 999999) / 1000000));
				else
					next = now; /* late: do not try to catch up with a burst */
			}
		}
	} else if (d->nhandlers > 0) {
		rc = fqd_dispatch(d);
		if (rc < 0)
			fqd_set_error(d, rc, "receiving");
	}
	/* Nothing to run: RUNNING ends at once, as FairMQ's default ConditionalRun does. */
	fqd_rate_stop(d);
	if (rc == 0)
		rc = call_hook(d, d->hooks.post_run, "post_run");
	return rc;
}

/* The work of a state that has just been entered (lock not held). */
static int do_state(fq_device *d, fq_state s)
{
	int rc = 0;

	switch (s) {
	case FQ_STATE_INITIALIZING_DEVICE:
		rc = call_hook(d, d->hooks.init, "init");
		break;
	case FQ_STATE_BINDING:
		rc = fqd_channels_bind(d);
		if (rc == 0)
			rc = call_hook(d, d->hooks.bind, "bind");
		break;
	case FQ_STATE_CONNECTING:
		rc = fqd_channels_connect(d);
		if (rc == 0)
			rc = call_hook(d, d->hooks.connect, "connect");
		break;
	case FQ_STATE_INITIALIZING_TASK:
		rc = call_hook(d, d->hooks.init_task, "init_task");
		break;
	case FQ_STATE_RUNNING:
		rc = do_running(d);
		break;
	case FQ_STATE_RESETTING_TASK:
		rc = call_hook(d, d->hooks.reset_task, "reset_task");
		break;
	case FQ_STATE_RESETTING_DEVICE:
		rc = call_hook(d, d->hooks.reset, "reset");
		fqd_channels_free(d);
		break;
	default:
		break;
	}
	return rc;
}

/* The state loop: takes requests and carries them out until EXITING or ERROR. */
static void state_loop(fq_device *d)
{
	pthread_mutex_lock(&d->lock);
	while (!is_terminal(d->state)) {
		fq_transition t;
		int next, rc;

		while (d->pending < 0)
			pthread_cond_wait(&d->cond, &d->lock);
		t = (fq_transition)d->pending;
		d->pending = -1;
		next = fq_state_next(d->state, t);
		if (next < 0) {
			fq_log(FQ_LOG_WARN, FQD_SUBSYS, "%s: %s is not possible in %s; ignored",
			       fq_device_id(d), fq_transition_name(t), fq_state_name(d->state));
			continue;
		}
		if (t == FQ_TRANSITION_COMPLETE_INIT) {
			/* The channels, from the configuration as it is now (a controller may have
			 * set addresses between INIT DEVICE and COMPLETE INIT). */
			pthread_mutex_unlock(&d->lock);
			rc = fqd_channels_build(d);
			pthread_mutex_lock(&d->lock);
			if (rc != 0) {
				if (d->error_code == 0)
					d->error_code = rc;
				enter_state(d, FQ_STATE_ERROR);
				break;
			}
		}
		enter_state(d, (fq_state)next);
		/* A working state: do its work, then go on by itself. */
		while (!is_terminal(d->state) &&
		       (is_auto(d->state) || d->state == FQ_STATE_RUNNING ||
		        d->state == FQ_STATE_INITIALIZING_DEVICE)) {
			fq_state cur = d->state;

			pthread_mutex_unlock(&d->lock);
			rc = do_state(d, cur);
			pthread_mutex_lock(&d->lock);
			if (rc != 0 || d->pending == FQ_TRANSITION_ERROR_FOUND) {
				d->pending = -1;
				if (d->error_code == 0)
					d->error_code = rc != 0 ? rc : FQ_EINTERNAL;
				enter_state(d, FQ_STATE_ERROR);
				break;
			}
			if (cur == FQ_STATE_INITIALIZING_DEVICE)
				break; /* waits for COMPLETE INIT */
			if (cur == FQ_STATE_RUNNING) {
				if (d->pending == FQ_TRANSITION_STOP)
					d->pending = -1;
				enter_state(d, FQ_STATE_READY); /* STOP, asked for or by itself */
				break;
			}
			enter_state(d, (fq_state)fq_state_next(cur, FQ_TRANSITION_AUTO));
		}
	}
	pthread_mutex_unlock(&d->lock);
}

int fq_device_run(fq_device *d)
{
	int rc;

	if (d == NULL)
		return FQ_EINVAL;
	if (!d->configured)
		return FQ_ESTATE;
	d->loop_thread = pthread_self(); /* before any other thread can look */
	rc = fqd_signals_start(d);
	if (rc == 0)
		rc = fqd_plugins_start(d);
	if (rc != 0) {
		/* Plugins started before the failing one may wait for a state change (the static
		 * control plugin has asked for INIT DEVICE): ERROR wakes them, so fini can join. */
		pthread_mutex_lock(&d->lock);
		if (d->error_code == 0)
			d->error_code = rc;
		d->pending = -1;
		enter_state(d, FQ_STATE_ERROR);
		pthread_mutex_unlock(&d->lock);
		fqd_plugins_stop(d);
		fqd_signals_stop(d);
		return rc;
	}
	state_loop(d);
	fqd_channels_free(d); /* after ERROR: nothing is left behind either */
	fqd_plugins_stop(d);
	fqd_signals_stop(d);
	if (d->state == FQ_STATE_ERROR)
		return d->error_code != 0 ? d->error_code : FQ_EINTERNAL;
	return 0;
}

fq_state fq_device_state(fq_device *d)
{
	fq_state s;

	pthread_mutex_lock(&d->lock);
	s = d->state;
	pthread_mutex_unlock(&d->lock);
	return s;
}

int fq_device_change_state(fq_device *d, fq_transition t)
{
	fq_state base;
	int rc = 0;

	if (d == NULL || (unsigned)t >= FQ_TRANSITION_COUNT || t == FQ_TRANSITION_AUTO)
		return FQ_EINVAL;
	pthread_mutex_lock(&d->lock);
	base = d->state;
	if (t == FQ_TRANSITION_ERROR_FOUND) {
		if (is_terminal(base))
			rc = FQ_ESTATE;
	} else if (d->pending >= 0) {
		rc = FQ_ESTATE;
	} else {
		if (is_auto(base))
			base = (fq_state)fq_state_next(base, FQ_TRANSITION_AUTO);
		if (fq_state_next(base, t) < 0)
			rc = FQ_ESTATE;
	}
	if (rc == 0) {
		d->pending = (int)t;
		fqd_channels_interrupt(d, true); /* lock order: d->lock, then chan_lock */
		pthread_cond_broadcast(&d->cond);
	}
	pthread_mutex_unlock(&d->lock);
	if (rc != 0)
		fq_log(FQ_LOG_DEBUG, FQD_SUBSYS, "%s: %s refused in %s", fq_device_id(d),
		       fq_transition_name(t), fq_state_name(base));
	return rc;
}

bool fq_device_new_state_pending(fq_device *d)
{
	/* No lock: the loops of RUNNING ask this once per message. */
	return atomic_load_explicit(&d->pending, memory_order_acquire) >= 0;
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

int fq_device_wait_state(fq_device *d, fq_state s, int timeout_ms)
{
	struct timespec dl;
	int rc = 0;

	if (d == NULL || (unsigned)s >= FQ_STATE_COUNT)
		return FQ_EINVAL;
	if (timeout_ms >= 0)
		deadline_after(&dl, timeout_ms);
	pthread_mutex_lock(&d->lock);
	while (d->state != s) {
		if (is_terminal(d->state)) {
			rc = FQ_ESTATE;
			break;
		}
		if (timeout_ms < 0) {
			pthread_cond_wait(&d->cond, &d->lock);
		} else if (pthread_cond_timedwait(&d->cond, &d->lock, &dl) == ETIMEDOUT) {
			rc = d->state == s ? 0 : FQ_ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int fq_device_wait_for(fq_device *d, int ms)
{
	struct timespec dl;
	int rc = 0;

	if (d == NULL)
		return FQ_EINVAL;
	deadline_after(&dl, ms < 0 ? 0 : ms);
	pthread_mutex_lock(&d->lock);
	while (d->pending < 0) {
		if (pthread_cond_timedwait(&d->cond, &d->lock, &dl) == ETIMEDOUT)
			break;
	}
	if (d->pending >= 0)
		rc = FQ_EINTR;
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int fq_device_subscribe_state(fq_device *d, fq_state_fn fn, void *arg)
{
	fqd_sub_entry *s;
	int token;

	if (d == NULL || fn == NULL)
		return FQ_EINVAL;
	pthread_mutex_lock(&d->lock);
	if (d->nstate_subs >= 32) {
		pthread_mutex_unlock(&d->lock);
		return FQ_ENOMEM;
	}
	s = realloc(d->state_subs, (d->nstate_subs + 1) * sizeof(*s));
	if (s == NULL) {
		pthread_mutex_unlock(&d->lock);
		return FQ_ENOMEM;
	}
	d->state_subs = s;
	token = d->next_token++;
	s[d->nstate_subs++] = (fqd_sub_entry){token, fn, arg};
	pthread_mutex_unlock(&d->lock);
	return token;
}

void fq_device_unsubscribe_state(fq_device *d, int token)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nstate_subs; i++) {
		if (d->state_subs[i].token == token) {
			memmove(&d->state_subs[i], &d->state_subs[i + 1],
			        (d->nstate_subs - i - 1) * sizeof(d->state_subs[0]));
			d->nstate_subs--;
			break;
		}
	}
	/* The callback may be running from a copy of the list: wait, so that its argument can
	 * be freed on return (not from the loop thread, where the callbacks themselves run). */
	while (d->notifying > 0 && !pthread_equal(pthread_self(), d->loop_thread))
		pthread_cond_wait(&d->cond, &d->lock);
	pthread_mutex_unlock(&d->lock);
}

/* ---- Properties ------------------------------------------------------------------------- */

int fq_device_get_property(fq_device *d, const char *key, char *buf, size_t len)
{
	if (d == NULL || key == NULL || buf == NULL)
		return FQ_EINVAL;
	return fqc_props_get(d->props, key, buf, len);
}

int fq_device_get_int(fq_device *d, const char *key, int64_t *out)
{
	const fq_device_option *o;
	char buf[128];
	int rc;

	if (d == NULL || key == NULL || out == NULL)
		return FQ_EINVAL;
	rc = fqc_props_get(d->props, key, buf, sizeof(buf));
	if (rc != 0)
		return rc;
	o = fqc_opts_find(d->opts, key);
	return fqc_value_int(o != NULL ? o->type : FQ_OPT_SIZE, buf, out);
}

int fq_device_get_bool(fq_device *d, const char *key, bool *out)
{
	int64_t v;
	char buf[16];
	int rc;

	if (d == NULL || key == NULL || out == NULL)
		return FQ_EINVAL;
	rc = fqc_props_get(d->props, key, buf, sizeof(buf));
	if (rc != 0)
		return rc;
	rc = fqc_value_int(FQ_OPT_BOOL, buf, &v);
	if (rc == 0)
		*out = v != 0;
	return rc;
}

int fq_device_set_property(fq_device *d, const char *key, const char *value)
{
	const fq_device_option *o;
	char why[128];

	if (d == NULL || key == NULL || value == NULL)
		return FQ_EINVAL;
	o = fqc_opts_find(d->opts, key);
	if (o != NULL && fqc_value_check(o, value, why, sizeof(why)) != 0)
		return FQ_EINVAL;
	return fqc_props_set(d->props, key, value);
}

int fq_device_property_key_at(fq_device *d, size_t i, char *buf, size_t len)
{
	if (d == NULL || buf == NULL)
		return FQ_EINVAL;
	return fqc_props_key_at(d->props, i, buf, len);
}

struct prop_tramp {
	fq_device *d;
	fq_property_fn fn;
	void *arg;
};

static void prop_trampoline(const char *key, const char *value, void *arg)
{
	struct prop_tramp *t = arg;

	t->fn(t->d, key, value, t->arg);
}

int fq_device_subscribe_property(fq_device *d, fq_property_fn fn, void *arg)
{
	struct prop_tramp *t;
	int store_token, token;
	void *grown;

	if (d == NULL || fn == NULL)
		return FQ_EINVAL;
	t = malloc(sizeof(*t));
	if (t == NULL)
		return FQ_ENOMEM;
	*t = (struct prop_tramp){d, fn, arg};
	pthread_mutex_lock(&d->lock);
	grown = realloc(d->prop_subs, (d->nprop_subs + 1) * sizeof(d->prop_subs[0]));
	if (grown == NULL) {
		pthread_mutex_unlock(&d->lock);
		free(t);
		return FQ_ENOMEM;
	}
	d->prop_subs = grown;
	store_token = fqc_props_subscribe(d->props, prop_trampoline, t);
	if (store_token < 0) {
		pthread_mutex_unlock(&d->lock);
		free(t);
		return store_token;
	}
	token = d->next_token++;
	d->prop_subs[d->nprop_subs].token = token;
	d->prop_subs[d->nprop_subs].store_token = store_token;
	d->prop_subs[d->nprop_subs].fn = fn;
	d->prop_subs[d->nprop_subs].arg = t; /* freed at unsubscribe */
	d->nprop_subs++;
	pthread_mutex_unlock(&d->lock);
	return token;
}

void fq_device_unsubscribe_property(fq_device *d, int token)
{
	int store_token = -1;
	void *tramp = NULL;

	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nprop_subs; i++) {
		if (d->prop_subs[i].token == token) {
			store_token = d->prop_subs[i].store_token;
			tramp = d->prop_subs[i].arg;
			memmove(&d->prop_subs[i], &d->prop_subs[i + 1],
			        (d->nprop_subs - i - 1) * sizeof(d->prop_subs[0]));
			d->nprop_subs--;
			break;
		}
	}
	pthread_mutex_unlock(&d->lock);
	/* Not under d->lock: this waits for a running callback, which may take d->lock. */
	if (tramp != NULL) {
		fqc_props_unsubscribe(d->props, store_token);
		free(tramp);
	}
}

/* ---- fq_device_main --------------------------------------------------------------------- */

int fq_device_main(int argc, char **argv, const fq_device_hooks *hooks,
                   const fq_device_option *options, size_t noptions,
                   int (*setup)(fq_device *d, void *arg), void *setup_arg)
{
	fq_device *d;
	int rc = fq_device_new(&d, hooks);

	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", argc > 0 ? argv[0] : "device", fq_strerror(rc));
		return 1;
	}
	rc = fq_device_add_options(d, options, noptions);
	if (rc == 0)
		rc = fq_device_configure(d, argc, argv);
	if (rc != 0) {
		if (rc < 0 && rc != FQ_EINVAL)
			fprintf(stderr, "%s: %s\n", argc > 0 ? argv[0] : "device", fq_strerror(rc));
		fq_device_destroy(d);
		return rc == 1 ? 0 : 1;
	}
	if (setup != NULL)
		rc = setup(d, setup_arg);
	if (rc != 0) {
		fprintf(stderr, "%s: device set-up: %s\n", d->program, fq_strerror(rc));
		fq_device_destroy(d);
		return 1;
	}
	rc = fq_device_run(d);
	if (rc != 0)
		fprintf(stderr, "%s: %s ended in ERROR: %s\n", d->program, fq_device_id(d),
		        fq_strerror(rc));
	fq_device_destroy(d);
	return rc == 0 ? 0 : 2;
}
