/*
 * The device in one process: transitions and hooks, illegal requests, one pending request at
 * a time, errors, interruption of blocking calls, on-data dispatch over two transports,
 * bound addresses, connects that wait for an address, and configuration errors.
 * fq_device_run runs in a thread; the test is the controller (--control none).
 */
#include "fq_test.h"
#include <fabriq/device.h>

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(device, .init = fqt_init, .fini = fqt_fini, .timeout = 60);

/* ---- Helpers ----------------------------------------------------------------------------- */

typedef struct rec {
	char calls[512];
	pthread_mutex_t lock;
	atomic_int block_init; /* init waits while set */
	int fail_bind;         /* bind hook returns this */
	int64_t recv_rc[4];
	int nrecv;
	atomic_int in_run;
	atomic_int got[2];
	int want_total;
} rec;

static void note(rec *r, const char *what)
{
	pthread_mutex_lock(&r->lock);
	strncat(r->calls, what, sizeof(r->calls) - strlen(r->calls) - 1);
	strncat(r->calls, ",", sizeof(r->calls) - strlen(r->calls) - 1);
	pthread_mutex_unlock(&r->lock);
}

#define HOOK(name)                                   \
	static int h_##name(fq_device *d, void *arg) \
	{                                            \
		(void)d;                             \
		note(arg, #name);                    \
		return 0;                            \
	}
HOOK(connect)
HOOK(init_task)
HOOK(pre_run)
HOOK(post_run)
HOOK(reset_task)
HOOK(reset)

static int h_init(fq_device *d, void *arg)
{
	rec *r = arg;

	(void)d;
	note(r, "init");
	while (atomic_load(&r->block_init))
		usleep(1000);
	return 0;
}

static int h_bind(fq_device *d, void *arg)
{
	rec *r = arg;

	(void)d;
	note(r, "bind");
	return r->fail_bind;
}

/* RUNNING until a transition is asked for. */
static int h_run(fq_device *d, void *arg)
{
	(void)arg;
	while (fq_device_wait_for(d, 1000) != FQ_EINTR)
		;
	return 0;
}

static fq_device_hooks hooks_for(rec *r)
{
	fq_device_hooks h = {.size = sizeof(h), .arg = r};

	pthread_mutex_init(&r->lock, NULL);
	h.init = h_init;
	h.bind = h_bind;
	h.connect = h_connect;
	h.init_task = h_init_task;
	h.pre_run = h_pre_run;
	h.post_run = h_post_run;
	h.run = h_run;
	h.reset_task = h_reset_task;
	h.reset = h_reset;
	return h;
}

typedef struct runner {
	fq_device *d;
	pthread_t th;
	int rc;
} runner;

static void *run_main(void *arg)
{
	runner *r = arg;

	r->rc = fq_device_run(r->d);
	return NULL;
}

/* A configured device from a NULL-terminated argument list (argv[0] is added). */
static fq_device *device_with(const fq_device_hooks *h, const char *first, ...)
{
	char *argv[32] = {"fq-devtest"};
	int argc = 1;
	fq_device *d;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a != NULL && argc < 31; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	cr_assert_eq(fq_device_new(&d, h), 0);
	cr_assert_eq(fq_device_configure(d, argc, argv), 0);
	return d;
}

static void start(runner *r, fq_device *d)
{
	r->d = d;
	cr_assert_eq(pthread_create(&r->th, NULL, run_main, r), 0);
}

static void go(fq_device *d, fq_transition t, fq_state want)
{
	cr_assert_eq(fq_device_change_state(d, t), 0, "%s in %s", fq_transition_name(t),
	             fq_state_name(fq_device_state(d)));
	cr_assert_eq(fq_device_wait_state(d, want, 10000), 0, "waiting for %s, in %s",
	             fq_state_name(want), fq_state_name(fq_device_state(d)));
}

/* Every transition that FairMQ's table does not allow from the current state is refused. */
static void assert_illegal_refused(fq_device *d)
{
	fq_state s = fq_device_state(d);

	for (int t = 1; t < FQ_TRANSITION_COUNT; t++) {
		if (t == FQ_TRANSITION_ERROR_FOUND || fq_state_next(s, (fq_transition)t) >= 0)
			continue;
		cr_assert_eq(fq_device_change_state(d, (fq_transition)t), FQ_ESTATE, "%s in %s",
		             fq_transition_name((fq_transition)t), fq_state_name(s));
		cr_assert_not(fq_device_new_state_pending(d));
	}
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_AUTO), FQ_EINVAL);
}

static void startup(fq_device *d)
{
	go(d, FQ_TRANSITION_INIT_DEVICE, FQ_STATE_INITIALIZING_DEVICE);
	assert_illegal_refused(d);
	go(d, FQ_TRANSITION_COMPLETE_INIT, FQ_STATE_INITIALIZED);
	assert_illegal_refused(d);
	go(d, FQ_TRANSITION_BIND, FQ_STATE_BOUND);
	assert_illegal_refused(d);
	go(d, FQ_TRANSITION_CONNECT, FQ_STATE_DEVICE_READY);
	assert_illegal_refused(d);
	go(d, FQ_TRANSITION_INIT_TASK, FQ_STATE_READY);
	assert_illegal_refused(d);
}

static void shutdown_from_ready(fq_device *d)
{
	go(d, FQ_TRANSITION_RESET_TASK, FQ_STATE_DEVICE_READY);
	go(d, FQ_TRANSITION_RESET_DEVICE, FQ_STATE_IDLE);
	assert_illegal_refused(d);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_END), 0);
}

static void ipc(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "ipc://%s/%s", fqt_scratch_dir(), name);
}

/* ---- Transitions ------------------------------------------------------------------------- */

static void on_state(fq_device *d, fq_state s, void *arg)
{
	rec *r = arg;

	(void)d;
	note(r, fq_state_name(s));
}

Test(device, every_transition_with_its_hooks_in_order)
{
	rec r = {0}, states = {0};
	fq_device_hooks h = hooks_for(&r);
	char cc[256], url[128];
	runner run;
	fq_device *d;

	pthread_mutex_init(&states.lock, NULL);
	ipc(url, sizeof(url), "a");
	snprintf(cc, sizeof(cc), "name=data,type=pair,method=bind,address=%s", url);
	d = device_with(&h, "--id", "t1", "--control", "none", "--channel-config", cc, NULL);
	cr_assert_geq(fq_device_subscribe_state(d, on_state, &states), 0);
	cr_assert_eq(fq_device_state(d), FQ_STATE_IDLE);
	start(&run, d);
	assert_illegal_refused(d);
	startup(d);
	go(d, FQ_TRANSITION_RUN, FQ_STATE_RUNNING);
	assert_illegal_refused(d);
	go(d, FQ_TRANSITION_STOP, FQ_STATE_READY);
	/* A second round: RUN again, and a second INIT DEVICE after RESET DEVICE. */
	go(d, FQ_TRANSITION_RUN, FQ_STATE_RUNNING);
	go(d, FQ_TRANSITION_STOP, FQ_STATE_READY);
	go(d, FQ_TRANSITION_RESET_TASK, FQ_STATE_DEVICE_READY);
	go(d, FQ_TRANSITION_RESET_DEVICE, FQ_STATE_IDLE);
	startup(d);
	shutdown_from_ready(d);
	pthread_join(run.th, NULL);
	cr_assert_eq(run.rc, 0);
	cr_assert_eq(fq_device_state(d), FQ_STATE_EXITING);
	cr_assert_str_eq(r.calls, "init,bind,connect,init_task,pre_run,post_run,pre_run,post_run,"
	                          "reset_task,reset,init,bind,connect,init_task,reset_task,reset,");
	cr_assert_str_eq(states.calls,
	                 "INITIALIZING DEVICE,INITIALIZED,BINDING,BOUND,CONNECTING,DEVICE READY,"
	                 "INITIALIZING TASK,READY,RUNNING,READY,RUNNING,READY,RESETTING TASK,"
	                 "DEVICE READY,RESETTING DEVICE,IDLE,INITIALIZING DEVICE,INITIALIZED,"
	                 "BINDING,BOUND,CONNECTING,DEVICE READY,INITIALIZING TASK,READY,"
	                 "RESETTING TASK,DEVICE READY,RESETTING DEVICE,IDLE,EXITING,");
	fq_device_destroy(d);
}

Test(device, one_pending_request_at_a_time)
{
	rec r = {0};
	fq_device_hooks h = hooks_for(&r);
	runner run;
	fq_device *d = device_with(&h, "--id", "t2", "--control", "none", NULL);

	atomic_store(&r.block_init, 1);
	start(&run, d);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_INIT_DEVICE), 0);
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_INITIALIZING_DEVICE, 10000), 0);
	/* init is still running: COMPLETE INIT waits, a second request is refused. */
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_COMPLETE_INIT), 0);
	cr_assert(fq_device_new_state_pending(d));
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_COMPLETE_INIT), FQ_ESTATE);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_BIND), FQ_ESTATE);
	cr_assert_eq(fq_device_wait_for(d, 10), FQ_EINTR, "a pending request cuts a wait short");
	atomic_store(&r.block_init, 0);
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_INITIALIZED, 10000), 0);
	cr_assert_not(fq_device_new_state_pending(d));
	cr_assert_eq(fq_device_wait_for(d, 1), 0);
	go(d, FQ_TRANSITION_RESET_DEVICE, FQ_STATE_IDLE);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_END), 0);
	pthread_join(run.th, NULL);
	cr_assert_eq(run.rc, 0);
	fq_device_destroy(d);
}

Test(device, a_failing_hook_leads_to_error_and_run_returns_its_code)
{
	rec r = {0};
	fq_device_hooks h = hooks_for(&r);
	runner run;
	fq_device *d = device_with(&h, "--id", "t3", "--control", "none", NULL);

	r.fail_bind = FQ_EADDRINUSE;
	start(&run, d);
	go(d, FQ_TRANSITION_INIT_DEVICE, FQ_STATE_INITIALIZING_DEVICE);
	go(d, FQ_TRANSITION_COMPLETE_INIT, FQ_STATE_INITIALIZED);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_BIND), 0);
	pthread_join(run.th, NULL);
	cr_assert_eq(run.rc, FQ_EADDRINUSE);
	cr_assert_eq(fq_device_state(d), FQ_STATE_ERROR);
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_READY, 0), FQ_ESTATE);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_ERROR_FOUND), FQ_ESTATE);
	fq_device_destroy(d);
}

Test(device, error_found_is_accepted_in_any_state_but_the_last_two)
{
	rec r = {0};
	fq_device_hooks h = hooks_for(&r);
	runner run;
	fq_device *d = device_with(&h, "--id", "t4", "--control", "none", NULL);

	start(&run, d);
	startup(d);
	go(d, FQ_TRANSITION_RUN, FQ_STATE_RUNNING);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_ERROR_FOUND), 0);
	pthread_join(run.th, NULL);
	cr_assert_lt(run.rc, 0);
	cr_assert_eq(fq_device_state(d), FQ_STATE_ERROR);
	fq_device_destroy(d);
}

/* ---- Interruption ------------------------------------------------------------------------ */

static int run_recv(fq_device *d, void *arg)
{
	rec *r = arg;
	fq_msg *m = NULL;
	int64_t rc;

	atomic_store(&r->in_run, 1);
	rc = fq_device_recv(d, "data", 0, &m, -1);
	if (rc >= 0) {
		cr_assert_eq(rc, 5);
		cr_assert_eq(memcmp(fq_msg_data(m), "hello", 5), 0);
		fq_msg_free(m);
	}
	r->recv_rc[r->nrecv++] = rc;
	return 0;
}

Test(device, a_transition_request_interrupts_a_blocking_receive)
{
	rec r = {0};
	fq_device_hooks h = hooks_for(&r);
	char cc[256], url[128];
	fq_transport *t;
	fq_socket *peer;
	fq_msg *m;
	runner run;
	fq_device *d;

	h.run = run_recv;
	ipc(url, sizeof(url), "intr");
	snprintf(cc, sizeof(cc), "name=data,type=pull,method=bind,address=%s", url);
	d = device_with(&h, "--id", "t5", "--control", "none", "--channel-config", cc, NULL);
	start(&run, d);
	startup(d);
	go(d, FQ_TRANSITION_RUN, FQ_STATE_RUNNING);
	while (!atomic_load(&r.in_run))
		usleep(1000);
	/* The receive blocks (nobody sends) until STOP is asked for. */
	go(d, FQ_TRANSITION_STOP, FQ_STATE_READY);
	cr_assert_eq(r.nrecv, 1);
	cr_assert_eq(r.recv_rc[0], FQ_EINTR);
	/* In the next RUNNING the socket works again: a message ends run by itself. */
	cr_assert_eq(fq_transport_open(&t, "zeromq", NULL), 0);
	cr_assert_eq(fq_socket_open(&peer, t, FQ_PUSH), 0);
	cr_assert_eq(fq_connect(peer, url), 0);
	cr_assert_eq(fq_msg_alloc(t, 5, &m), 0);
	memcpy(fq_msg_data(m), "hello", 5);
	cr_assert_eq(fq_send(peer, &m, 0), 0);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_RUN), 0);
	while (r.nrecv < 2)
		usleep(1000);
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_READY, 10000), 0);
	cr_assert_eq(r.recv_rc[1], 5);
	{
		fq_channel_stats st;

		cr_assert_eq(fq_device_channel_stats(d, "data", 0, &st), 0);
		cr_assert_eq(st.msgs_in, 1);
		cr_assert_eq(st.bytes_in, 5);
	}
	shutdown_from_ready(d);
	pthread_join(run.th, NULL);
	cr_assert_eq(run.rc, 0);
	fq_socket_close(peer);
	fq_transport_close(t);
	fq_device_destroy(d);
}

/* ---- On-data dispatch over two transports ------------------------------------------------ */

static bool on_msg(fq_device *d, fq_msg **m, size_t sub, void *arg)
{
	rec *r = arg;
	int which = fq_msg_size(*m) == 3 ? 0 : 1;

	(void)d;
	cr_assert_eq(sub, 0);
	return atomic_fetch_add(&r->got[which], 1) + 1 + atomic_load(&r->got[1 - which]) <
	       r->want_total;
}

static void push_n(const char *transport, const char *url, size_t size, int n)
{
	fq_transport *t;
	fq_socket *s;

	cr_assert_eq(fq_transport_open(&t, transport, NULL), 0);
	cr_assert_eq(fq_socket_open(&s, t, FQ_PUSH), 0);
	cr_assert_eq(fq_connect(s, url), 0);
	for (int i = 0; i < n; i++) {
		fq_msg *m;

		cr_assert_eq(fq_msg_alloc(t, size, &m), 0);
		memset(fq_msg_data(m), 'x', size);
		cr_assert_eq(fq_send(s, &m, 0), 0);
	}
	fq_socket_close(s);
	fq_transport_close(t);
}

Test(device, on_data_callbacks_serve_channels_of_two_transports)
{
	rec r = {.want_total = 200};
	fq_device_hooks h = hooks_for(&r);
	char cc1[256], cc2[256], u1[128], u2[128];
	fq_channel_stats st;
	runner run;
	fq_device *d;

	ipc(u1, sizeof(u1), "z");
	ipc(u2, sizeof(u2), "s");
	snprintf(cc1, sizeof(cc1), "name=a,type=pull,method=bind,address=%s,rateLogging=0", u1);
	snprintf(cc2, sizeof(cc2), "name=b,type=pull,method=bind,address=%s,transport=shmem", u2);
	h.run = NULL; /* the on-data dispatch */
	cr_assert_eq(fq_device_new(&d, &h), 0);
	cr_assert_eq(fq_device_on_data(d, "a", on_msg, &r), 0);
	cr_assert_eq(fq_device_on_data(d, "b", on_msg, &r), 0);
	cr_assert_eq(fq_device_on_data(d, "b", on_msg, &r), FQ_EEXIST);
	{
		char *argv[] = {"t",    "--id",
		                "t6",   "--control",
		                "none", "--channel-config",
		                cc1,    "--channel-config",
		                cc2};

		cr_assert_eq(fq_device_configure(d, 9, argv), 0);
	}
	start(&run, d);
	startup(d);
	cr_assert_str_eq(fq_transport_name(fq_device_transport(d, "a")), "zeromq");
	cr_assert_str_eq(fq_transport_name(fq_device_transport(d, "b")), "shmem");
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_RUN), 0);
	push_n("zeromq", u1, 3, 100);
	push_n("shmem", u2, 4, 100);
	/* The last callback returns false: RUNNING ends by itself. */
	while (atomic_load(&r.got[0]) + atomic_load(&r.got[1]) < 200)
		usleep(1000);
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_READY, 10000), 0);
	cr_assert_eq(atomic_load(&r.got[0]), 100);
	cr_assert_eq(atomic_load(&r.got[1]), 100);
	cr_assert_eq(fq_device_channel_stats(d, "b", 0, &st), 0);
	cr_assert_eq(st.msgs_in, 100);
	cr_assert_eq(st.bytes_in, 400);
	cr_assert_eq(fq_device_channel_stats(d, "b", 1, &st), FQ_ENOENT);
	shutdown_from_ready(d);
	pthread_join(run.th, NULL);
	cr_assert_eq(run.rc, 0);
	fq_device_destroy(d);
}

/* ---- Addresses --------------------------------------------------------------------------- */

/* A TCP port that is taken (by a listener of the test), or -1. */
static int taken_port(int *fd)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);

	*fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(*fd, 0);
	cr_assert_eq(bind(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(*fd, 1), 0);
	cr_assert_eq(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
	return ntohs(a.sin_port);
}

Test(device, bound_addresses_are_written_back_and_auto_bind_uses_the_port_range)
{
	rec r = {0};
	fq_device_hooks h = hooks_for(&r);
	char addr[256], cc[256];
	int fd, port = taken_port(&fd);
	runner run;
	fq_device *d;

	snprintf(cc, sizeof(cc),
	         "name=range,type=push,method=bind,address=tcp://127.0.0.1:%d,portRangeMin=41000,"
	         "portRangeMax=41999",
	         port);
	d = device_with(&h, "--id", "t7", "--control", "none", "--channel-config",
	                "name=zero,type=push,method=bind,address=tcp://127.0.0.1:0",
	                "--channel-config", cc, NULL);
	start(&run, d);
	go(d, FQ_TRANSITION_INIT_DEVICE, FQ_STATE_INITIALIZING_DEVICE);
	go(d, FQ_TRANSITION_COMPLETE_INIT, FQ_STATE_INITIALIZED);
	go(d, FQ_TRANSITION_BIND, FQ_STATE_BOUND);
	cr_assert_eq(fq_device_get_property(d, "chans.zero.0.address", addr, sizeof(addr)), 0);
	cr_assert(strncmp(addr, "tcp://127.0.0.1:", 16) == 0 && atoi(addr + 16) > 0, "%s", addr);
	cr_assert_eq(fq_device_get_property(d, "chans.range.0.address", addr, sizeof(addr)), 0);
	cr_assert(atoi(addr + 16) >= 41000 && atoi(addr + 16) <= 41999, "%s", addr);
	go(d, FQ_TRANSITION_RESET_DEVICE, FQ_STATE_IDLE);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_END), 0);
	pthread_join(run.th, NULL);
	fq_device_destroy(d);
	close(fd);
}

Test(device, a_connect_waits_for_its_address_until_the_init_timeout)
{
	rec r = {0};
	fq_device_hooks h = hooks_for(&r);
	char url[128];
	runner run;
	fq_device *d = device_with(&h, "--id", "t8", "--control", "none", "--channel-config",
	                           "name=data,type=push,method=connect", NULL);

	ipc(url, sizeof(url), "late");
	start(&run, d);
	go(d, FQ_TRANSITION_INIT_DEVICE, FQ_STATE_INITIALIZING_DEVICE);
	go(d, FQ_TRANSITION_COMPLETE_INIT, FQ_STATE_INITIALIZED);
	go(d, FQ_TRANSITION_BIND, FQ_STATE_BOUND);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_CONNECT), 0);
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_DEVICE_READY, 200), FQ_ETIMEDOUT);
	cr_assert_eq(fq_device_state(d), FQ_STATE_CONNECTING);
	/* A controller publishes the address: the device goes on. */
	cr_assert_eq(fq_device_set_property(d, "chans.data.0.address", url), 0);
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_DEVICE_READY, 10000), 0);
	go(d, FQ_TRANSITION_RESET_DEVICE, FQ_STATE_IDLE);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_END), 0);
	pthread_join(run.th, NULL);
	cr_assert_eq(run.rc, 0);
	fq_device_destroy(d);

	/* Nobody publishes it: ERROR after --init-timeout. */
	d = device_with(&h, "--id", "t9", "--control", "none", "--init-timeout", "1",
	                "--channel-config", "name=data,type=push,method=connect", NULL);
	start(&run, d);
	go(d, FQ_TRANSITION_INIT_DEVICE, FQ_STATE_INITIALIZING_DEVICE);
	go(d, FQ_TRANSITION_COMPLETE_INIT, FQ_STATE_INITIALIZED);
	go(d, FQ_TRANSITION_BIND, FQ_STATE_BOUND);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_CONNECT), 0);
	pthread_join(run.th, NULL);
	cr_assert_eq(run.rc, FQ_ETIMEDOUT);
	cr_assert_eq(fq_device_state(d), FQ_STATE_ERROR);
	fq_device_destroy(d);
}

/* ---- Static control ---------------------------------------------------------------------- */

static bool count_to_ten(fq_device *d, void *arg)
{
	rec *r = arg;

	(void)d;
	return atomic_fetch_add(&r->got[0], 1) + 1 < 10;
}

Test(device, static_control_runs_the_device_through_and_out)
{
	rec r = {0};
	fq_device_hooks h = hooks_for(&r);
	fq_device *d;

	h.run = NULL;
	h.conditional_run = count_to_ten;
	d = device_with(&h, "--id", "t10", "--control", "static", "--rate", "1000", NULL);
	cr_assert_eq(fq_device_run(d), 0);
	cr_assert_eq(fq_device_state(d), FQ_STATE_EXITING);
	cr_assert_eq(atomic_load(&r.got[0]), 10);
	cr_assert_str_eq(r.calls, "init,bind,connect,init_task,pre_run,post_run,reset_task,reset,");
	fq_device_destroy(d);
}

/* ---- Configuration errors ---------------------------------------------------------------- */

static int configure_capture(char *out, size_t len, int argc, char **argv)
{
	char path[128];
	fq_device *d;
	int saved, fd, rc;
	FILE *f;

	snprintf(path, sizeof(path), "%s/stderr", fqt_scratch_dir());
	fflush(stderr);
	saved = dup(2);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	dup2(fd, 2);
	close(fd);
	cr_assert_eq(fq_device_new(&d, NULL), 0);
	rc = fq_device_configure(d, argc, argv);
	fq_device_destroy(d);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fopen(path, "r");
	out[fread(out, 1, len - 1, f)] = '\0';
	fclose(f);
	return rc;
}

Test(device, configuration_errors_name_the_option)
{
	char err[4096];
	char *no_id[] = {"fq-x", "--control", "static"};
	char *bad[] = {"fq-x", "--id",      "a",      "--severity",  "loud",          "--rate",
	               "fast", "--control", "remote", "--transport", "carrier-pigeon"};
	char *help[] = {"fq-x", "--help"};

	cr_assert_eq(configure_capture(err, sizeof(err), 3, no_id), FQ_EINVAL);
	cr_assert_not_null(strstr(err, "fq-x: --id:"), "%s", err);
	cr_assert_eq(configure_capture(err, sizeof(err), 11, bad), FQ_EINVAL);
	cr_assert_not_null(strstr(err, "--severity: 'loud'"), "%s", err);
	cr_assert_not_null(strstr(err, "--rate: 'fast'"), "%s", err);
	cr_assert_not_null(strstr(err, "--control: 'remote'"), "%s", err);
	cr_assert_not_null(strstr(err, "--transport: 'carrier-pigeon'"), "%s", err);
	cr_assert_eq(configure_capture(err, sizeof(err), 2, help), 1);
}

/* ---- Review regressions ------------------------------------------------------------------ */

Test(device, writing_back_bound_addresses_keeps_the_connect_endpoints_and_prefixes)
{
	rec r = {0};
	fq_device_hooks h = hooks_for(&r);
	char in_url[128], cc_in[256], cc_out[256], cc_self[256], addr[512];
	fq_msg *m;
	runner run;
	fq_device *d;

	ipc(in_url, sizeof(in_url), "in");
	snprintf(cc_in, sizeof(cc_in), "name=in,type=pull,method=bind,address=%s", in_url);
	/* A bound push that also connects to "in" ('+'), and a connecting pull that also binds
	 * ('@'): after BIND, both must still know what to connect to, and what not to. */
	snprintf(cc_out, sizeof(cc_out),
	         "name=out,type=push,method=bind,address=tcp://127.0.0.1:0,+%s", in_url);
	snprintf(cc_self, sizeof(cc_self),
	         "name=self,type=pull,method=connect,address=@tcp://127.0.0.1:0");
	d = device_with(&h, "--id", "t11", "--control", "none", "--channel-config", cc_in,
	                "--channel-config", cc_out, "--channel-config", cc_self, NULL);
	start(&run, d);
	startup(d);
	cr_assert_eq(fq_device_get_property(d, "chans.out.0.address", addr, sizeof(addr)), 0);
	cr_assert(strncmp(addr, "tcp://127.0.0.1:", 16) == 0 && atoi(addr + 16) > 0, "%s", addr);
	cr_assert_not_null(strstr(addr, ",+ipc://"), "%s", addr);
	cr_assert_eq(fq_device_get_property(d, "chans.self.0.address", addr, sizeof(addr)), 0);
	cr_assert(strncmp(addr, "@tcp://127.0.0.1:", 17) == 0 && atoi(addr + 17) > 0, "%s", addr);
	/* The '+' endpoint was connected: a message from "out" arrives on "in". */
	cr_assert_eq(fq_device_msg_alloc(d, "out", 2, &m), 0);
	memcpy(fq_msg_data(m), "hi", 2);
	cr_assert_eq(fq_device_send(d, "out", 0, &m, 5000), 2);
	cr_assert_eq(fq_device_recv(d, "in", 0, &m, 5000), 2);
	fq_msg_free(m);
	shutdown_from_ready(d);
	pthread_join(run.th, NULL);
	cr_assert_eq(run.rc, 0);
	fq_device_destroy(d);
}

Test(device, a_connect_still_waiting_for_its_address_is_not_skipped_by_a_queued_init_task)
{
	rec r = {0};
	fq_device_hooks h = hooks_for(&r);
	char url[128], ep[256];
	runner run;
	fq_device *d = device_with(&h, "--id", "t12", "--control", "none", "--channel-config",
	                           "name=data,type=push,method=connect", NULL);

	ipc(url, sizeof(url), "later");
	start(&run, d);
	go(d, FQ_TRANSITION_INIT_DEVICE, FQ_STATE_INITIALIZING_DEVICE);
	go(d, FQ_TRANSITION_COMPLETE_INIT, FQ_STATE_INITIALIZED);
	go(d, FQ_TRANSITION_BIND, FQ_STATE_BOUND);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_CONNECT), 0);
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_CONNECTING, 10000), 0);
	/* INIT TASK is accepted (legal from DEVICE READY, where CONNECTING leads) ... */
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_INIT_TASK), 0);
	/* ... but the device does not leave CONNECTING with its channel unconnected. */
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_READY, 300), FQ_ETIMEDOUT);
	cr_assert_eq(fq_device_set_property(d, "chans.data.0.address", url), 0);
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_READY, 10000), 0);
	cr_assert_eq(fq_socket_endpoint(fq_device_socket(d, "data", 0), 0, ep, sizeof(ep)), 0);
	shutdown_from_ready(d);
	pthread_join(run.th, NULL);
	cr_assert_eq(run.rc, 0);
	fq_device_destroy(d);
}

typedef struct prop_waiter {
	fq_device *d;
	atomic_int entered;
	atomic_int leave;
} prop_waiter;

/* A property subscriber that, once unsubscribing has begun, looks at the device state. */
static void on_prop_then_state(fq_device *d, const char *key, const char *value, void *arg)
{
	prop_waiter *w = arg;

	(void)key;
	(void)value;
	atomic_store(&w->entered, 1);
	while (!atomic_load(&w->leave))
		usleep(1000);
	usleep(
	    100000); /* let the unsubscribing thread get well into fq_device_unsubscribe_property */
	(void)fq_device_state(d);
}

static void *set_one(void *arg)
{
	prop_waiter *w = arg;

	fq_device_set_property(w->d, "user-key", "1");
	return NULL;
}

Test(device, unsubscribing_a_property_callback_that_reads_the_state_does_not_deadlock,
     .timeout = 10)
{
	prop_waiter w = {0};
	pthread_t th;
	int token;

	w.d = device_with(NULL, "--id", "t13", "--control", "none", NULL);
	token = fq_device_subscribe_property(w.d, on_prop_then_state, &w);
	cr_assert_geq(token, 0);
	cr_assert_eq(pthread_create(&th, NULL, set_one, &w), 0);
	while (!atomic_load(&w.entered))
		usleep(1000);
	atomic_store(&w.leave, 1);
	fq_device_unsubscribe_property(w.d, token); /* waits for the callback to return */
	pthread_join(th, NULL);
	fq_device_destroy(w.d);
}

static void on_prop_ignore(fq_device *d, const char *key, const char *value, void *arg)
{
	(void)d;
	(void)key;
	(void)value;
	(void)arg;
}

Test(device, destroy_frees_property_subscriptions_left_in_place)
{
	/* Leak check: meaningful under the address sanitizer build. */
	fq_device *d = device_with(NULL, "--id", "t14", "--control", "none", NULL);

	cr_assert_geq(fq_device_subscribe_property(d, on_prop_ignore, NULL), 0);
	cr_assert_eq(fq_device_set_property(d, "user-key", "1"), 0);
	fq_device_destroy(d);
}

typedef struct state_waiter {
	atomic_int entered, unsub_started, unsub_returned, called_after_return, done;
} state_waiter;

static void on_state_slow(fq_device *d, fq_state s, void *arg)
{
	state_waiter *w = arg;

	(void)d;
	if (s != FQ_STATE_INITIALIZING_DEVICE)
		return;
	atomic_store(&w->entered, 1);
	while (!atomic_load(&w->unsub_started))
		usleep(1000);
	usleep(100000); /* give a non-waiting unsubscribe the time to return */
	if (atomic_load(&w->unsub_returned))
		atomic_store(&w->called_after_return, 1);
	atomic_store(&w->done, 1);
}

Test(device, unsubscribe_state_waits_for_a_running_state_callback)
{
	state_waiter w = {0};
	runner run;
	fq_device *d = device_with(NULL, "--id", "t15", "--control", "none", NULL);
	int token = fq_device_subscribe_state(d, on_state_slow, &w);

	cr_assert_geq(token, 0);
	start(&run, d);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_INIT_DEVICE), 0);
	while (!atomic_load(&w.entered))
		usleep(1000);
	atomic_store(&w.unsub_started, 1);
	fq_device_unsubscribe_state(d, token);
	atomic_store(&w.unsub_returned, 1);
	while (!atomic_load(&w.done))
		usleep(1000);
	cr_assert_eq(atomic_load(&w.called_after_return), 0,
	             "the callback still ran after unsubscribe returned");
	cr_assert_eq(fq_device_wait_state(d, FQ_STATE_INITIALIZING_DEVICE, 10000), 0);
	cr_assert_eq(fq_device_change_state(d, FQ_TRANSITION_ERROR_FOUND), 0);
	pthread_join(run.th, NULL);
	fq_device_destroy(d);
}
