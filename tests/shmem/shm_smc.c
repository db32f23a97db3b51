/*
 * The shmem transport's `smc` option (fabriq-smc(7)): its tcp:// endpoints hold their port
 * with a TCP listener, and connect probes that port with a TCP socket; smc=try|require makes
 * those SMC sockets. This machine has no SMC, so: smc=try must still carry PUSH/PULL over
 * tcp://127.0.0.1:0, smc=require must fail at bind and connect with FQ_EUNAVAIL and a clear
 * log line, and a bad value is refused when the transport opens. On a machine with SMC the
 * SMC socket() call is made to fail (test hook) so that the same assertions hold.
 */
#include "fq_test.h"
#include "platform/tcp.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

TestSuite(shmem_smc, .init = fqt_init, .fini = fqt_fini, .timeout = 60);

static fq_transport *open_shmem(const char *options)
{
	fq_transport *t = NULL;

	FQ_PASS(fq_transport_open(&t, "shmem", options));
	return t;
}

/* PUSH/PULL over tcp://127.0.0.1:0 with messages of a few sizes. */
static void pushpull_over_tcp(fq_transport *t)
{
	static const size_t sizes[] = {0, 1, 4096, (size_t)1 << 20};
	fq_socket *push = fqt_socket(t, FQ_PUSH), *pull = fqt_socket(t, FQ_PULL);
	char url[FQT_URL_MAX];

	fqt_marry_url(push, pull, "tcp", url);
	cr_assert(strncmp(url, "tcp://127.0.0.1:", 16) == 0, "bound to %s", url);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fq_msg *m = fqt_msg_pattern(t, sizes[i], (uint32_t)i), *r = NULL;

		FQ_PASS(fq_send(push, &m, 0));
		FQ_PASS(fqt_recv(pull, &r, 0));
		fqt_msg_check(r, sizes[i], (uint32_t)i);
		fq_msg_free(r);
	}
	fqt_close(push);
	fqt_close(pull);
}

/* Log lines of the TCP socket helper (subsystem "tcp"); the I/O thread may log concurrently. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[4096];

static void collect(fq_log_level level, const char *subsys, const char *msg, void *arg)
{
	size_t used;

	(void)arg;
	if (strcmp(subsys, "tcp") != 0)
		return;
	pthread_mutex_lock(&log_lock);
	used = strlen(log_text);
	snprintf(log_text + used, sizeof(log_text) - used, "%d %s\n", (int)level, msg);
	pthread_mutex_unlock(&log_lock);
}

static void collect_logs(fq_log_level level)
{
	log_text[0] = '\0';
	fq_log_set_handler(collect, NULL);
	fq_log_set_level(level);
}

static bool logged(const char *text)
{
	bool found;

	pthread_mutex_lock(&log_lock);
	found = strstr(log_text, text) != NULL;
	pthread_mutex_unlock(&log_lock);
	return found;
}

Test(shmem_smc, default_off, .description = "the option is listed, default off")
{
	fq_opt_info info;
	bool found = false;

	for (size_t i = 0; fq_option_at(i, &info) == 0; i++) {
		if (strcmp(info.component, "shmem") == 0 && strcmp(info.name, "smc") == 0) {
			found = true;
			cr_assert_str_eq(info.default_value, "off");
			cr_assert(strstr(info.help, "off|try|require") != NULL, "help: %s",
			          info.help);
		}
	}
	cr_assert(found, "no shmem option smc");
}

Test(shmem_smc, try_pushpull, .description = "smc=try: PUSH/PULL over tcp://127.0.0.1:0")
{
	fq_transport *t = open_shmem("smc=try");
	bool smc = fq_smc_probe() == 0;

	collect_logs(FQ_LOG_DEBUG);
	pushpull_over_tcp(t);
	fq_log_set_handler(NULL, NULL);
	cr_assert(logged(smc ? "shmem tcp:// listener: smc=try, made an SMC socket"
	                     : "shmem tcp:// listener: smc=try, no SMC here"),
	          "the listener did not try SMC: %s", log_text);
	fq_transport_close(t);
}

Test(shmem_smc, try_injected_refusal,
     .description = "smc=try with the SMC socket() refused (EPERM): falls back, still works")
{
	fq_transport *t = open_shmem("smc=try");

	fqi_smc_inject_failure(EPERM);
	collect_logs(FQ_LOG_DEBUG);
	pushpull_over_tcp(t);
	fq_log_set_handler(NULL, NULL);
	cr_assert(logged("shmem tcp:// listener: smc=try, no SMC here (AF_SMC: Operation not "
	                 "permitted"),
	          "the injected refusal was not seen: %s", log_text);
	fq_transport_close(t);
}

Test(shmem_smc, require_refused,
     .description = "smc=require without SMC: bind and connect fail with FQ_EUNAVAIL")
{
	fq_transport *t, *plain = open_shmem(NULL);
	fq_socket *s, *other = fqt_socket(plain, FQ_PULL);
	char url[FQT_URL_MAX], ipc[FQT_URL_MAX];

	if (fq_smc_probe() == 0)
		fqi_smc_inject_failure(EAFNOSUPPORT); /* look like this CI machine */
	t = open_shmem("smc=require");
	s = fqt_socket(t, FQ_PUSH);
	collect_logs(FQ_LOG_ERROR);
	FQ_FAIL(fq_bind(s, "tcp://127.0.0.1:0"), FQ_EUNAVAIL);
	cr_assert(logged("shmem tcp:// listener: smc=require, but this kernel offers no SMC"),
	          "no clear reason logged: %s", log_text);
	/* connect too, whether or not the endpoint is there */
	fqt_bind(other, fqt_url("tcp", url));
	FQ_FAIL(fq_connect(s, url), FQ_EUNAVAIL);
	FQ_FAIL(fq_connect(s, "tcp://127.0.0.1:1"), FQ_EUNAVAIL);
	fq_log_set_handler(NULL, NULL);
	cr_assert_eq(fq_socket_endpoint(s, 0, url, sizeof(url)), FQ_ENOENT,
	             "a failed bind or connect left an endpoint");
	/* ipc:// has no TCP socket: smc does not apply */
	fqt_bind(s, fqt_url("ipc", ipc));
	fqt_close(s);
	fqt_close(other);
	fq_transport_close(t);
	fq_transport_close(plain);
}

Test(shmem_smc, bad_value, .description = "smc=maybe is refused when the transport opens")
{
	fq_transport *t = NULL;

	FQ_FAIL(fq_transport_open(&t, "shmem", "smc=maybe"), FQ_EINVAL);
	cr_assert_null(t);
	FQ_FAIL(fq_transport_open(&t, "shmem", "smc="), FQ_EINVAL);
	t = open_shmem("smc=OFF");
	fq_transport_close(t);
}
