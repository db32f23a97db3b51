/*
 * Shared by the ready-made devices: see common.h.
 */
#include "common.h"

#include "../tools/common/tool_common.h" /* json_string */

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t fqdev_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void fqdev_stats_start(fqdev_stats *s)
{
	s->msgs = 0;
	s->bytes = 0;
	s->start_ns = fqdev_now_ns();
	s->end_ns = 0;
}

void fqdev_stats_stop(fqdev_stats *s)
{
	s->end_ns = fqdev_now_ns();
}

void fqdev_summary(fq_device *d, const fqdev_stats *s)
{
	int64_t end = s->end_ns != 0 ? s->end_ns : fqdev_now_ns();
	double secs = s->start_ns != 0 ? (double)(end - s->start_ns) / 1e9 : 0.0;
	double rate = secs > 0 ? (double)s->msgs / secs : 0.0;
	double mbps = secs > 0 ? (double)s->bytes / secs / 1e6 : 0.0;
	bool json = false;
	const char *id = fq_device_id(d);

	if (id == NULL)
		id = "";
	(void)fq_device_get_bool(d, "json", &json);
	if (json) {
		fputs("{\"id\":", stdout);
		json_string(stdout, id);
		printf(",\"messages\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"msg_per_s\":%.3f,"
		       "\"mb_per_s\":%.3f}\n",
		       (unsigned long long)s->msgs, (unsigned long long)s->bytes, secs, rate, mbps);
	} else {
		printf("%s: %llu messages, %llu bytes in %.3f s: %.1f msg/s, %.3f MB/s\n", id,
		       (unsigned long long)s->msgs, (unsigned long long)s->bytes, secs, rate, mbps);
	}
	fflush(stdout);
}

/* Report a failed option read with the option's name (configuration has checked the values). */
static int opt_failed(fq_device *d, const char *name, int rc)
{
	if (rc == 0)
		return 0;
	fprintf(stderr, "%s: --%s: %s\n", fq_device_id(d), name,
	        rc == FQ_ENOENT ? "not set" : fq_strerror(rc));
	return FQ_EINVAL;
}

int fqdev_opt_string(fq_device *d, const char *name, char *buf, size_t len)
{
	return opt_failed(d, name, fq_device_get_property(d, name, buf, len));
}

int fqdev_opt_int(fq_device *d, const char *name, int64_t *out)
{
	return opt_failed(d, name, fq_device_get_int(d, name, out));
}

int fqdev_opt_size(fq_device *d, const char *name, uint64_t *out)
{
	int64_t v;
	int rc = fqdev_opt_int(d, name, &v); /* FQ_OPT_SIZE: K/M/G/T, never negative */

	if (rc == 0)
		*out = (uint64_t)v;
	return rc;
}

int fqdev_opt_bool(fq_device *d, const char *name, bool *out)
{
	return opt_failed(d, name, fq_device_get_bool(d, name, out));
}

int fqdev_opt_double(fq_device *d, const char *name, double *out)
{
	char buf[64], *end;
	double v;
	int rc = fqdev_opt_string(d, name, buf, sizeof(buf));

	if (rc != 0)
		return rc;
	errno = 0;
	v = strtod(buf, &end);
	if (errno != 0 || end == buf || *end != '\0' || !(v >= 0)) {
		fprintf(stderr, "%s: --%s: '%s' is not a number >= 0\n", fq_device_id(d), name,
		        buf);
		return FQ_EINVAL;
	}
	*out = v;
	return 0;
}

void fqdev_list_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int fqdev_opt_list(fq_device *d, const char *name, char ***out, size_t *n)
{
	char buf[4096];
	char **v = NULL;
	size_t count = 0;
	int rc = fqdev_opt_string(d, name, buf, sizeof(buf));

	if (rc != 0)
		return rc;
	for (char *save = NULL, *tok = strtok_r(buf, ",\n", &save); tok != NULL;
	     tok = strtok_r(NULL, ",\n", &save)) {
		char **nv;

		while (isspace((unsigned char)*tok))
			tok++;
		for (size_t l = strlen(tok); l > 0 && isspace((unsigned char)tok[l - 1]); l--)
			tok[l - 1] = '\0';
		if (*tok == '\0')
			continue;
		nv = realloc(v, (count + 1) * sizeof(*v));
		if (nv == NULL) {
			fqdev_list_free(v, count);
			return FQ_ENOMEM;
		}
		v = nv;
		v[count] = strdup(tok);
		if (v[count] == NULL) {
			fqdev_list_free(v, count);
			return FQ_ENOMEM;
		}
		count++;
	}
	if (count == 0) {
		fprintf(stderr, "%s: --%s: no channel named\n", fq_device_id(d), name);
		free(v);
		return FQ_EINVAL;
	}
	*out = v;
	*n = count;
	return 0;
}

int fqdev_require_channel(fq_device *d, const char *option, const char *channel)
{
	if (fq_device_subchannels(d, channel) > 0)
		return 0;
	fprintf(stderr, "%s: --%s: there is no channel '%s' (see --mq-config, --channel-config)\n",
	        fq_device_id(d), option, channel);
	return FQ_ENOENT;
}

void fqdev_seq_put(void *data, size_t size, uint64_t seq)
{
	unsigned char *p = data;

	if (size < 8)
		return;
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(seq >> (8 * i));
}

bool fqdev_seq_get(const void *data, size_t size, uint64_t *seq)
{
	const unsigned char *p = data;
	uint64_t v = 0;

	if (size < 8)
		return false;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	*seq = v;
	return true;
}

bool fqdev_check(fqdev_checker *c, const void *data, size_t size)
{
	uint64_t seq;
	bool ok = true;

	if (!fqdev_seq_get(data, size, &seq)) {
		c->unchecked++;
		return true;
	}
	if (c->started && seq != c->last + 1) {
		c->out_of_order++;
		ok = false;
	}
	c->started = true;
	c->last = seq;
	return ok;
}

bool fqdev_fail(fq_device *d, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Printed to stderr directly: errors must show whatever the log level. */
	fprintf(stderr, "%s: error: %s\n", fq_device_id(d), msg);
	(void)fq_device_change_state(d, FQ_TRANSITION_ERROR_FOUND);
	return false;
}

int fqdev_on_channel(fq_device *d, const char *channel, fq_on_data_fn on_data,
                     fq_on_parts_fn on_parts, void *arg)
{
	int rc = on_data != NULL ? fq_device_on_data(d, channel, on_data, arg)
	                         : fq_device_on_parts(d, channel, on_parts, arg);

	if (rc != 0)
		fprintf(stderr, "%s: channel '%s': cannot receive: %s\n", fq_device_id(d), channel,
		        fq_strerror(rc));
	return rc;
}

/*
 * A blocking send returns FQ_EINTR when a transition is pending: then it is not retried. An
 * FQ_EINTR without a pending request (the request was carried out meanwhile, and the sockets
 * are resumed in a moment) is retried after a short pause, not in a hot loop.
 */
static bool retry(fq_device *d, int64_t rc)
{
	if (rc != FQ_EINTR && rc != FQ_EAGAIN && rc != FQ_ETIMEDOUT)
		return false;
	if (fq_device_new_state_pending(d))
		return false;
	if (rc == FQ_EINTR)
		(void)fq_device_wait_for(d, 1);
	return true;
}

int64_t fqdev_send(fq_device *d, const char *channel, size_t sub, fq_msg **msg)
{
	int64_t rc;

	do
		rc = fq_device_send(d, channel, sub, msg, -1);
	while (retry(d, rc));
	return rc;
}

int64_t fqdev_send_v(fq_device *d, const char *channel, size_t sub, fq_msg **v, size_t n)
{
	int64_t rc;

	do
		rc = fq_device_sendv(d, channel, sub, v, n, -1);
	while (retry(d, rc));
	return rc;
}
