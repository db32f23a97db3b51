/*
 * fq-sampler: sends messages of --msg-size bytes on --out-channel as fast as the channel
 * takes them, or at --msg-rate per second; FairMQ's fairmq-bsampler, with the same options.
 * See docs/man/fq-devices.1.md.
 */
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct sampler {
	char channel[256];
	uint64_t msg_size;
	int64_t num_parts;
	bool multipart;
	int64_t max_iterations;
	double msg_rate;
	bool memset;
	bool check;
	int64_t interval_ns; /* 0: unlimited */
	int64_t next_ns;     /* when the next send is due */
	uint64_t seq;
	fq_msg **parts;
	fqdev_stats stats;
} sampler;

static const fq_device_option options[] = {
    {"out-channel", 0, FQ_OPT_STRING, "data", "name of the channel to send on", false},
    {"msg-size", 0, FQ_OPT_SIZE, "1000000", "bytes of each message (or of each part)", false},
    {"num-parts", 0, FQ_OPT_INT, "1", "parts of each vector, with --multipart", false},
    {"multipart", 0, FQ_OPT_BOOL, "false", "send vectors of --num-parts parts", false},
    {"msg-rate", 0, FQ_OPT_STRING, "0", "messages per second (a float; 0 = unlimited)", false},
    {"memset", 0, FQ_OPT_BOOL, "false", "write every byte of every message", false},
    {"check", 0, FQ_OPT_BOOL, "false",
     "write a sequence number into the first 8 bytes of each part, for fq-sink --check", false},
    FQDEV_COMMON_OPTIONS,
};

static int init_task(fq_device *d, void *arg)
{
	sampler *s = arg;
	int rc;

	if ((rc = fqdev_opt_string(d, "out-channel", s->channel, sizeof(s->channel))) != 0 ||
	    (rc = fqdev_opt_size(d, "msg-size", &s->msg_size)) != 0 ||
	    (rc = fqdev_opt_int(d, "num-parts", &s->num_parts)) != 0 ||
	    (rc = fqdev_opt_bool(d, "multipart", &s->multipart)) != 0 ||
	    (rc = fqdev_opt_int(d, "max-iterations", &s->max_iterations)) != 0 ||
	    (rc = fqdev_opt_double(d, "msg-rate", &s->msg_rate)) != 0 ||
	    (rc = fqdev_opt_bool(d, "memset", &s->memset)) != 0 ||
	    (rc = fqdev_opt_bool(d, "check", &s->check)) != 0)
		return rc;
	if ((rc = fqdev_require_channel(d, "out-channel", s->channel)) != 0)
		return rc;
	if (s->num_parts < 1 || s->num_parts > 65535) {
		fprintf(stderr, "%s: --num-parts: %lld is not in 1..65535\n", fq_device_id(d),
		        (long long)s->num_parts);
		return FQ_EINVAL;
	}
	if (!s->multipart)
		s->num_parts = 1;
	free(s->parts);
	s->parts = calloc((size_t)s->num_parts, sizeof(*s->parts));
	if (s->parts == NULL)
		return FQ_ENOMEM;
	s->interval_ns = s->msg_rate > 0 ? (int64_t)llround(1e9 / s->msg_rate) : 0;
	return 0;
}

static int pre_run(fq_device *d, void *arg)
{
	sampler *s = arg;

	fqdev_stats_start(&s->stats);
	s->next_ns = s->stats.start_ns;
	return 0;
}

/*
 * Wait until the next send is due: in the device's interruptible sleep for whole
 * milliseconds, then to the nanosecond. False when a transition is requested meanwhile.
 */
static bool pace(fq_device *d, sampler *s)
{
	int64_t now = fqdev_now_ns();

	if (s->interval_ns == 0)
		return true;
	if (now - s->next_ns > 1000000000)
		s->next_ns = now; /* far behind (blocked sends): do not burst to catch up */
	while (s->next_ns - now >= 1000000) {
		if (fq_device_wait_for(d, (int)((s->next_ns - now) / 1000000)) == FQ_EINTR)
			return false;
		now = fqdev_now_ns();
	}
	if (s->next_ns > now) {
		struct timespec ts = {.tv_sec = s->next_ns / 1000000000,
		                      .tv_nsec = s->next_ns % 1000000000};

		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
	}
	s->next_ns += s->interval_ns;
	return true;
}

static void free_parts(sampler *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		fq_msg_free(s->parts[i]);
		s->parts[i] = NULL;
	}
}

static bool conditional_run(fq_device *d, void *arg)
{
	sampler *s = arg;
	size_t n = (size_t)s->num_parts;
	int64_t rc;

	if (s->max_iterations > 0 && s->stats.msgs >= (uint64_t)s->max_iterations)
		return false;
	if (!pace(d, s))
		return false;
	for (size_t i = 0; i < n; i++) {
		rc = fq_device_msg_alloc(d, s->channel, (size_t)s->msg_size, &s->parts[i]);
		if (rc != 0) {
			free_parts(s, i);
			return fqdev_fail(d, "allocating %llu bytes: %s",
			                  (unsigned long long)s->msg_size, fq_strerror((int)rc));
		}
		if (s->memset)
			memset(fq_msg_data(s->parts[i]), (int)(s->seq & 0xff), (size_t)s->msg_size);
		if (s->check)
			fqdev_seq_put(fq_msg_data(s->parts[i]), (size_t)s->msg_size, s->seq);
	}
	/* A busy peer makes the send wait; a transition request interrupts it (FQ_EINTR). */
	if (s->multipart)
		rc = fqdev_send_v(d, s->channel, 0, s->parts, n);
	else
		rc = fqdev_send(d, s->channel, 0, &s->parts[0]);
	if (rc < 0) {
		free_parts(s, n);
		if (rc == FQ_EINTR || rc == FQ_EAGAIN || rc == FQ_ETIMEDOUT)
			return false; /* a transition is pending */
		return fqdev_fail(d, "sending on %s: %s", s->channel, fq_strerror((int)rc));
	}
	fqdev_count(&s->stats, (uint64_t)rc);
	s->seq++;
	return true;
}

static int post_run(fq_device *d, void *arg)
{
	sampler *s = arg;

	fqdev_stats_stop(&s->stats);
	fqdev_summary(d, &s->stats);
	return 0;
}

int main(int argc, char **argv)
{
	sampler s = {0};
	fq_device_hooks hooks = {
	    .size = sizeof(hooks),
	    .arg = &s,
	    .init_task = init_task,
	    .pre_run = pre_run,
	    .conditional_run = conditional_run,
	    .post_run = post_run,
	};
	int status = fq_device_main(argc, argv, &hooks, options,
	                            sizeof(options) / sizeof(options[0]), NULL, NULL);

	free(s.parts);
	return status;
}
