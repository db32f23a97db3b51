/*
 * minimal_device: the smallest useful fabriq device. It counts what arrives on --in-channel
 * and prints a summary when RUNNING ends (Ctrl-C):
 *
 *   minimal_device --id counter --control static \
 *       --channel-config name=data,type=pull,method=bind,address=ipc:///tmp/counter.ipc
 *   ^C
 *   counter: 42 messages, 42000000 bytes
 *
 * Without the channel it has nothing to receive, and RUNNING ends at once.
 * Build: see CMakeLists.txt beside this file, or
 *   cc minimal_device.c $(pkg-config --cflags --libs fabriq-device) -o minimal_device
 */
#include <fabriq/device.h>

#include <stdio.h>

typedef struct counter {
	char channel[128];
	bool receiving;
	unsigned long long msgs, bytes;
} counter;

static const fq_device_option options[] = {
    {"in-channel", 0, FQ_OPT_STRING, "data", "name of the channel to count", false},
};

/* In RUNNING, for every message: *msg is ours; left there, the device frees it. */
static bool on_data(fq_device *d, fq_msg **msg, size_t sub, void *arg)
{
	counter *c = arg;

	c->msgs++;
	c->bytes += fq_msg_size(*msg);
	return true; /* go on receiving */
}

/* fq_device_main calls this after configuration: the options have their values. */
static int setup(fq_device *d, void *arg)
{
	counter *c = arg;

	return fq_device_get_property(d, "in-channel", c->channel, sizeof(c->channel));
}

/* INIT TASK: the channels exist now, and callbacks may be registered until RUNNING. */
static int init_task(fq_device *d, void *arg)
{
	counter *c = arg;
	int rc;

	if (c->receiving || fq_device_subchannels(d, c->channel) == 0)
		return 0;
	rc = fq_device_on_data(d, c->channel, on_data, c);
	c->receiving = rc == 0;
	return rc;
}

static int post_run(fq_device *d, void *arg)
{
	counter *c = arg;

	printf("%s: %llu messages, %llu bytes\n", fq_device_id(d), c->msgs, c->bytes);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	counter c = {0};
	fq_device_hooks hooks = {
	    .size = sizeof(hooks),
	    .arg = &c,
	    .init_task = init_task,
	    .post_run = post_run,
	};

	/* Exit status: 0 (also after --help), 1 for a configuration error, 2 after ERROR. */
	return fq_device_main(argc, argv, &hooks, options, sizeof(options) / sizeof(options[0]),
	                      setup, &c);
}
