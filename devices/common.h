/*
 * Shared by the ready-made devices (fq-sampler, fq-sink, ...): option readers, a message and
 * byte counter with the summary line every device prints at the end, and the sequence
 * numbers of --check. Each device is one program linked with this file and libfabriq-device.
 *
 * Threads: the counters are touched only from the device's callbacks, which never run
 * concurrently (see fabriq/device.h), so nothing here is locked.
 */
#ifndef FQ_DEVICES_COMMON_H
#define FQ_DEVICES_COMMON_H

#include <fabriq/device.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Options every ready-made device has; put FQDEV_COMMON_OPTIONS last in its table. */
#define FQDEV_COMMON_OPTIONS                                                \
	{"json",                                                            \
	 0,                                                                 \
	 FQ_OPT_BOOL,                                                       \
	 "false",                                                           \
	 "print the final summary as one JSON object line instead of text", \
	 false},                                                            \
	{                                                                   \
		"max-iterations", 0, FQ_OPT_INT, "0",                       \
		    "stop after this many messages (0 = no limit)", false   \
	}

/* Counters for the summary: from the start of RUNNING (pre_run) to its end (post_run). */
typedef struct fqdev_stats {
	uint64_t msgs;
	uint64_t bytes;
	int64_t start_ns;
	int64_t end_ns;
} fqdev_stats;

/* Monotonic clock in nanoseconds. */
int64_t fqdev_now_ns(void);

void fqdev_stats_start(fqdev_stats *s);
void fqdev_stats_stop(fqdev_stats *s);
static inline void fqdev_count(fqdev_stats *s, uint64_t bytes)
{
	s->msgs++;
	s->bytes += bytes;
}
/*
 * Print the one summary line to stdout (and flush):
 *   <id>: <messages> messages, <bytes> bytes in <seconds> s: <msg/s> msg/s, <MB/s> MB/s
 * or, with --json, {"id":...,"messages":...,"bytes":...,"seconds":...,"msg_per_s":...,
 * "mb_per_s":...}. MB = 10^6 bytes.
 */
void fqdev_summary(fq_device *d, const fqdev_stats *s);

/*
 * Option readers, after configuration: the property's value as its type has it
 * (fq_device_get_property, fq_device_get_int with K/M/G/T sizes, fq_device_get_bool); a float
 * for fqdev_opt_double (>= 0). A missing or malformed value is reported to stderr with the
 * option's name and gives FQ_EINVAL (configuration has checked the typed values already).
 */
int fqdev_opt_string(fq_device *d, const char *name, char *buf, size_t len);
int fqdev_opt_int(fq_device *d, const char *name, int64_t *out);
int fqdev_opt_size(fq_device *d, const char *name, uint64_t *out);
int fqdev_opt_bool(fq_device *d, const char *name, bool *out);
int fqdev_opt_double(fq_device *d, const char *name, double *out);
/*
 * A list option (multi, or comma separated, or both): the names, split at '\n' and ',',
 * empty items skipped, as malloc'ed strings in a malloc'ed array (free with
 * fqdev_list_free). FQ_EINVAL for an empty list, FQ_ENOMEM.
 */
int fqdev_opt_list(fq_device *d, const char *name, char ***out, size_t *n);
void fqdev_list_free(char **v, size_t n);
/* Check that every named channel exists: FQ_ENOENT (reported to stderr) otherwise. */
int fqdev_require_channel(fq_device *d, const char *option, const char *channel);

/*
 * --check: the first 8 bytes of every part carry the sender's sequence number, little
 * endian (parts shorter than 8 bytes carry nothing). The checker counts messages whose
 * number is not the previous one plus one ("out of order": lost, duplicated or reordered).
 */
void fqdev_seq_put(void *data, size_t size, uint64_t seq);
bool fqdev_seq_get(const void *data, size_t size, uint64_t *seq);

typedef struct fqdev_checker {
	bool started;
	uint64_t last;
	uint64_t out_of_order;
	uint64_t unchecked; /* too short to carry a number */
} fqdev_checker;

/* Feed one message's (or vector's) sequence number; returns false when out of order. */
bool fqdev_check(fqdev_checker *c, const void *data, size_t size);

/*
 * Register the on-data callback of `channel` (exactly one of on_data, on_parts), from
 * fq_device_main's setup function (it runs after configuration, so the channel may be an
 * option). Errors as fq_device_on_data, reported to stderr.
 */
int fqdev_on_channel(fq_device *d, const char *channel, fq_on_data_fn on_data,
                     fq_on_parts_fn on_parts, void *arg);

/*
 * Send a message on a sub-channel, blocking until the channel takes it or a transition is
 * requested. On success *msg is consumed (NULL); on failure it stays the caller's. Returns
 * the bytes sent or fq_device_send's error (FQ_EINTR when a transition is pending).
 */
int64_t fqdev_send(fq_device *d, const char *channel, size_t sub, fq_msg **msg);
/* The same for an array of n messages (all consumed on success, all still the caller's on
 * failure). */
int64_t fqdev_send_v(fq_device *d, const char *channel, size_t sub, fq_msg **v, size_t n);

/* Log through fabriq's log sink with the device's id as the subsystem. */
#define fqdev_log(d, level, ...) fq_log((level), fq_device_id(d), __VA_ARGS__)

/*
 * For callbacks that cannot return an error code (conditional_run, on-data): log the error
 * and request ERROR FOUND, so that the device ends in ERROR (exit status 2). Returns false,
 * for `return fqdev_fail(...)`.
 */
bool fqdev_fail(fq_device *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* FQ_DEVICES_COMMON_H */
