/*
 * A device for the signal tests: --control none, and a starter thread of its own that
 * requests the transitions given with --start (comma-separated names), so that the device
 * sits in any state. --hold STATE makes the hook of a working state wait, cooperatively,
 * until a transition is requested.
 */
#include <fabriq/device.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char hold[64];

static const fq_device_option options[] = {
    {"start", 0, FQ_OPT_STRING, "", "transitions to request, comma-separated", false},
    {"hold", 0, FQ_OPT_STRING, "", "working state whose hook waits for a request", false},
    {"hang", 0, FQ_OPT_BOOL, "false", "init ignores requests for 60 s", false},
};

static int maybe_hold(fq_device *d, const char *state)
{
	if (strcmp(hold, state) != 0)
		return 0;
	for (int i = 0; i < 600; i++) { /* at most 60 s */
		if (fq_device_wait_for(d, 100) == FQ_EINTR)
			return 0;
	}
	return FQ_ETIMEDOUT;
}

static int h_init(fq_device *d, void *a)
{
	bool hang = false;

	(void)a;
	fq_device_get_property(d, "hold", hold, sizeof(hold));
	if (fq_device_get_bool(d, "hang", &hang) == 0 && hang) {
		struct timespec ts = {0, 100000000};

		for (int i = 0; i < 600; i++)
			nanosleep(&ts, NULL); /* not cooperative: only a second signal ends this */
	}
	return maybe_hold(d, "INITIALIZING DEVICE");
}

#define HOLD_HOOK(fn, state)                 \
	static int fn(fq_device *d, void *a) \
	{                                    \
		(void)a;                     \
		return maybe_hold(d, state); \
	}
HOLD_HOOK(h_bind, "BINDING")
HOLD_HOOK(h_connect, "CONNECTING")
HOLD_HOOK(h_init_task, "INITIALIZING TASK")
HOLD_HOOK(h_reset_task, "RESETTING TASK")
HOLD_HOOK(h_reset, "RESETTING DEVICE")
HOLD_HOOK(h_run, "RUNNING")

static void *starter(void *arg)
{
	fq_device *d = arg;
	char list[512], *save = NULL;

	if (fq_device_get_property(d, "start", list, sizeof(list)) != 0)
		return NULL;
	for (char *name = strtok_r(list, ",", &save); name != NULL;
	     name = strtok_r(NULL, ",", &save)) {
		fq_transition t;

		if (fq_transition_parse(name, &t) != 0) {
			fprintf(stderr, "sig_device: bad transition '%s'\n", name);
			return NULL;
		}
		/* Wait until the request is possible (the previous one carried out). */
		for (int i = 0; i < 2000 && fq_device_change_state(d, t) != 0; i++)
			fq_device_wait_state(d, FQ_STATE_EXITING, 5);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	fq_device_hooks h = {.size = sizeof(h),
	                     .init = h_init,
	                     .bind = h_bind,
	                     .connect = h_connect,
	                     .init_task = h_init_task,
	                     .reset_task = h_reset_task,
	                     .reset = h_reset,
	                     .run = h_run};
	pthread_t th;
	fq_device *d;
	int rc;

	if (fq_device_new(&d, &h) != 0 || fq_device_add_options(d, options, 3) != 0)
		return 1;
	rc = fq_device_configure(d, argc, argv);
	if (rc != 0) {
		fq_device_destroy(d);
		return rc == 1 ? 0 : 1;
	}
	pthread_create(&th, NULL, starter, d);
	rc = fq_device_run(d);
	pthread_join(th, NULL);
	fq_device_destroy(d);
	printf("exit %s\n", rc == 0 ? "ok" : fq_strerror(rc));
	return rc == 0 ? 0 : 2;
}
