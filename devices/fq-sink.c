/*
 * fq-sink: receives messages (or vectors of parts with --multipart) on --in-channel, counts
 * them, optionally appends their bytes to --out-filename and checks fq-sampler's sequence
 * numbers (--check); FairMQ's fairmq-sink, with the same options. See docs/man/fq-devices.1.md.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sink {
	char channel[256];
	bool multipart;
	int64_t max_iterations;
	char filename[4096];
	uint64_t max_file_size;
	bool check;
	FILE *file;
	uint64_t file_bytes;
	bool file_full;
	fqdev_checker checker;
	fqdev_stats stats;
} sink;

static const fq_device_option options[] = {
    {"in-channel", 0, FQ_OPT_STRING, "data", "name of the channel to receive on", false},
    {"multipart", 0, FQ_OPT_BOOL, "false", "receive vectors of parts", false},
    {"out-filename", 0, FQ_OPT_STRING, "", "append the received bytes to this file", false},
    {"max-file-size", 0, FQ_OPT_STRING, "2000000000",
     "stop writing to --out-filename beyond this many bytes (a size, or FairMQ's 2e9)", false},
    {"check", 0, FQ_OPT_BOOL, "false",
     "check fq-sampler --check sequence numbers; out-of-order messages make the device fail",
     false},
    FQDEV_COMMON_OPTIONS,
};

static bool limit_reached(sink *s)
{
	return s->max_iterations > 0 && s->stats.msgs >= (uint64_t)s->max_iterations;
}

static bool write_out(fq_device *d, sink *s, const void *data, size_t size)
{
	if (s->file == NULL || s->file_full)
		return true;
	if (s->file_bytes + size > s->max_file_size) {
		fqdev_log(d, FQ_LOG_WARN,
		          "%s reached --max-file-size (%llu bytes): not written to any more",
		          s->filename, (unsigned long long)s->max_file_size);
		s->file_full = true;
		return true;
	}
	if (size > 0 && fwrite(data, 1, size, s->file) != size)
		return fqdev_fail(d, "writing %s: %s", s->filename, strerror(errno));
	s->file_bytes += size;
	return true;
}

static bool on_data(fq_device *d, fq_msg **msg, size_t sub, void *arg)
{
	sink *s = arg;
	size_t size = fq_msg_size(*msg);

	fqdev_count(&s->stats, size);
	if (s->check)
		(void)fqdev_check(&s->checker, fq_msg_data(*msg), size);
	if (!write_out(d, s, fq_msg_data(*msg), size))
		return false;
	fq_msg_free(*msg);
	*msg = NULL;
	return !limit_reached(s);
}

static bool on_parts(fq_device *d, fq_parts **parts, size_t sub, void *arg)
{
	sink *s = arg;
	size_t n = fq_parts_count(*parts);

	fqdev_count(&s->stats, fq_parts_bytes(*parts));
	for (size_t i = 0; i < n; i++) {
		fq_msg *m = fq_parts_at(*parts, i);

		/* Every part of a vector carries the vector's number: the first is checked. */
		if (s->check && i == 0)
			(void)fqdev_check(&s->checker, fq_msg_data(m), fq_msg_size(m));
		if (!write_out(d, s, fq_msg_data(m), fq_msg_size(m)))
			return false;
	}
	fq_parts_free(*parts);
	*parts = NULL;
	return !limit_reached(s);
}

/* fq_device_main's setup, after configuration, in IDLE: the channel is an option. */
static int setup(fq_device *d, void *arg)
{
	sink *s = arg;
	int rc;

	if ((rc = fqdev_opt_string(d, "in-channel", s->channel, sizeof(s->channel))) != 0 ||
	    (rc = fqdev_opt_bool(d, "multipart", &s->multipart)) != 0)
		return rc;
	return fqdev_on_channel(d, s->channel, s->multipart ? NULL : on_data,
	                        s->multipart ? on_parts : NULL, s);
}

/* --max-file-size: a size (K/M/G/T), or a number as FairMQ writes it ("2e9"). */
static int file_size_option(fq_device *d, uint64_t *out)
{
	char buf[64];
	int64_t n;
	double v;
	int rc = fqdev_opt_string(d, "max-file-size", buf, sizeof(buf));

	if (rc != 0)
		return rc;
	if (fq_opt_parse(FQ_OPT_SIZE, buf, &n) == 0) {
		*out = (uint64_t)n;
		return 0;
	}
	rc = fqdev_opt_double(d, "max-file-size", &v);
	if (rc == 0)
		*out = v >= 1.8e19 ? UINT64_MAX : (uint64_t)v;
	return rc;
}

static int init_task(fq_device *d, void *arg)
{
	sink *s = arg;
	int rc;

	if ((rc = fqdev_opt_int(d, "max-iterations", &s->max_iterations)) != 0 ||
	    (rc = fqdev_opt_string(d, "out-filename", s->filename, sizeof(s->filename))) != 0 ||
	    (rc = file_size_option(d, &s->max_file_size)) != 0 ||
	    (rc = fqdev_opt_bool(d, "check", &s->check)) != 0)
		return rc;
	if ((rc = fqdev_require_channel(d, "in-channel", s->channel)) != 0)
		return rc;
	if (s->check && fq_device_subchannels(d, s->channel) > 1)
		fqdev_log(d, FQ_LOG_WARN, "--check assumes one sender; %s has %zu sub-channels",
		          s->channel, fq_device_subchannels(d, s->channel));
	if (s->filename[0] != '\0' && s->file == NULL) {
		s->file = fopen(s->filename, "ab");
		if (s->file == NULL) {
			fprintf(stderr, "%s: --out-filename: %s: %s\n", fq_device_id(d),
			        s->filename, strerror(errno));
			return FQ_EINVAL;
		}
		s->file_bytes = 0;
		s->file_full = false;
	}
	return 0;
}

static int pre_run(fq_device *d, void *arg)
{
	sink *s = arg;

	fqdev_stats_start(&s->stats);
	memset(&s->checker, 0, sizeof(s->checker));
	return 0;
}

static int post_run(fq_device *d, void *arg)
{
	sink *s = arg;

	fqdev_stats_stop(&s->stats);
	if (s->file != NULL)
		fflush(s->file);
	fqdev_summary(d, &s->stats);
	if (s->check && s->checker.out_of_order > 0) {
		fprintf(stderr, "%s: --check: %llu of %llu messages out of order\n",
		        fq_device_id(d), (unsigned long long)s->checker.out_of_order,
		        (unsigned long long)s->stats.msgs);
		return FQ_EPROTO;
	}
	return 0;
}

static int close_file(fq_device *d, sink *s)
{
	int rc = 0;

	if (s->file != NULL && fclose(s->file) != 0) {
		fprintf(stderr, "%s: --out-filename: %s: %s\n", fq_device_id(d), s->filename,
		        strerror(errno));
		rc = FQ_EINVAL;
	}
	s->file = NULL;
	return rc;
}

static int reset_task(fq_device *d, void *arg)
{
	return close_file(d, arg);
}

int main(int argc, char **argv)
{
	sink s = {0};
	fq_device_hooks hooks = {
	    .size = sizeof(hooks),
	    .arg = &s,
	    .init_task = init_task,
	    .pre_run = pre_run,
	    .post_run = post_run,
	    .reset_task = reset_task,
	};
	int status = fq_device_main(argc, argv, &hooks, options,
	                            sizeof(options) / sizeof(options[0]), setup, &s);

	if (s.file != NULL)
		fclose(s.file); /* the device ended in ERROR before RESET TASK */
	return status;
}
