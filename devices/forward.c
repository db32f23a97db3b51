/*
 * The forwarding engine behind fq-processor, fq-splitter, fq-merger, fq-multiplier and
 * fq-proxy: see forward.h.
 *
 * A received message is sent on as it is: the same message, so a shmem -> shmem hop moves no
 * bytes; fq_device_send copies it once when the output channel has another transport.
 */
#include "forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum transform { TRANSFORM_NONE, TRANSFORM_TOUCH, TRANSFORM_XOR } transform;

typedef struct forwarder {
	fqdev_kind kind;
	char **ins, **outs;
	size_t nin, nout;
	bool multipart;
	int64_t max_iterations;
	transform transform;
	size_t next;      /* splitter: the next sub-channel */
	size_t nsub;      /* splitter: sub-channels of the output */
	uint64_t touched; /* touch: a sum of the bytes read, so that reading is not elided */
	fqdev_stats stats;
} forwarder;

static void apply(forwarder *f, fq_msg *m)
{
	unsigned char *p = fq_msg_data(m);
	size_t n = fq_msg_size(m);

	switch (f->transform) {
	case TRANSFORM_NONE:
		break;
	case TRANSFORM_TOUCH: {
		uint64_t sum = 0;

		for (size_t i = 0; i < n; i++)
			sum += p[i];
		f->touched += sum;
		break;
	}
	case TRANSFORM_XOR:
		/* Applied twice, the bytes are back: fq-sink --check works behind two processors. */
		for (size_t i = 0; i < n; i++)
			p[i] ^= 0xff;
		break;
	}
}

static bool done(forwarder *f)
{
	return f->max_iterations > 0 && f->stats.msgs >= (uint64_t)f->max_iterations;
}

/* FQ_EINTR (a transition is pending) ends RUNNING quietly; anything else is an error. */
static bool sent(fq_device *d, forwarder *f, const char *channel, int64_t rc)
{
	if (rc >= 0)
		return true;
	if (rc == FQ_EINTR || rc == FQ_EAGAIN || rc == FQ_ETIMEDOUT)
		return false;
	return fqdev_fail(d, "sending on %s: %s", channel, fq_strerror((int)rc));
}

/*
 * Send the n messages v on a sub-channel: one message, or the parts of a vector with
 * --multipart. All consumed on success, all still the caller's on failure.
 */
static int64_t send_out(fq_device *d, forwarder *f, const char *channel, size_t sub, fq_msg **v,
                        size_t n)
{
	if (f->multipart)
		return fqdev_send_v(d, channel, sub, v, n);
	return fqdev_send(d, channel, sub, &v[0]);
}

/* The multiplier: shared copies of v on every output channel but the first. */
static bool send_copies(fq_device *d, forwarder *f, fq_msg **v, size_t n)
{
	fq_msg *stack[64];
	fq_msg **copies = n <= 64 ? stack : malloc(n * sizeof(*copies));
	bool ok = true;

	if (copies == NULL)
		return fqdev_fail(d, "copying a message: %s", fq_strerror(FQ_ENOMEM));
	for (size_t i = 1; i < f->nout && ok; i++) {
		int rc = 0;
		size_t made = 0;

		for (; made < n && rc == 0; made++)
			rc = fq_msg_copy(v[made], &copies[made]);
		if (rc != 0) {
			made--; /* the failed copy made nothing */
			ok = fqdev_fail(d, "copying a message: %s", fq_strerror(rc));
		} else {
			ok = sent(d, f, f->outs[i], send_out(d, f, f->outs[i], 0, copies, n));
		}
		for (size_t j = 0; !ok && j < made; j++)
			fq_msg_free(copies[j]);
	}
	if (copies != stack)
		free(copies);
	return ok;
}

/*
 * Route one message or vector (v, n) by the device's kind. True when it was sent on (all
 * consumed); false when not (all still the caller's), errors reported with fqdev_fail.
 */
static bool forward(fq_device *d, forwarder *f, fq_msg **v, size_t n)
{
	size_t out_sub = 0;

	switch (f->kind) {
	case FQDEV_PROCESSOR:
		for (size_t i = 0; i < n; i++)
			apply(f, v[i]);
		break;
	case FQDEV_SPLITTER:
		out_sub = f->next;
		f->next = (f->next + 1) % f->nsub;
		break;
	case FQDEV_MULTIPLIER:
		if (!send_copies(d, f, v, n))
			return false;
		break;
	case FQDEV_MERGER:
	case FQDEV_PROXY:
		break;
	}
	return sent(d, f, f->outs[0], send_out(d, f, f->outs[0], out_sub, v, n));
}

static bool on_data(fq_device *d, fq_msg **msg, size_t sub, void *arg)
{
	forwarder *f = arg;

	fqdev_count(&f->stats, fq_msg_size(*msg));
	/* Not sent, the message stays in *msg and the device frees it. */
	return forward(d, f, msg, 1) && !done(f);
}

static bool on_parts(fq_device *d, fq_parts **parts, size_t sub, void *arg)
{
	forwarder *f = arg;
	size_t n = fq_parts_count(*parts);
	fq_msg *stack[64];
	fq_msg **v = n <= 64 ? stack : malloc(n * sizeof(*v));
	bool ok;

	if (v == NULL)
		return fqdev_fail(d, "receiving a vector: %s", fq_strerror(FQ_ENOMEM));
	fqdev_count(&f->stats, fq_parts_bytes(*parts));
	for (size_t i = 0; i < n; i++)
		v[i] = fq_parts_take(*parts, i);
	ok = forward(d, f, v, n);
	if (!ok) {
		for (size_t i = 0; i < n; i++)
			fq_msg_free(v[i]);
	}
	if (v != stack)
		free(v);
	return ok && !done(f);
}

/* fq_device_main's setup, after configuration, in IDLE: the channels are options. */
static int setup(fq_device *d, void *arg)
{
	forwarder *f = arg;
	int rc;

	if ((rc = fqdev_opt_list(d, "in-channel", &f->ins, &f->nin)) != 0 ||
	    (rc = fqdev_opt_list(d, "out-channel", &f->outs, &f->nout)) != 0 ||
	    (rc = fqdev_opt_bool(d, "multipart", &f->multipart)) != 0)
		return rc;
	if (f->kind != FQDEV_MERGER && f->nin > 1) {
		fprintf(stderr, "%s: --in-channel: one channel only (fq-merger takes several)\n",
		        fq_device_id(d));
		return FQ_EINVAL;
	}
	if (f->kind != FQDEV_MULTIPLIER && f->nout > 1) {
		fprintf(stderr,
		        "%s: --out-channel: one channel only (fq-multiplier takes several)\n",
		        fq_device_id(d));
		return FQ_EINVAL;
	}
	for (size_t i = 0; i < f->nin; i++) {
		rc = fqdev_on_channel(d, f->ins[i], f->multipart ? NULL : on_data,
		                      f->multipart ? on_parts : NULL, f);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int init_task(fq_device *d, void *arg)
{
	forwarder *f = arg;
	int rc;

	if ((rc = fqdev_opt_int(d, "max-iterations", &f->max_iterations)) != 0)
		return rc;
	for (size_t i = 0; i < f->nin; i++) {
		if ((rc = fqdev_require_channel(d, "in-channel", f->ins[i])) != 0)
			return rc;
	}
	for (size_t i = 0; i < f->nout; i++) {
		if ((rc = fqdev_require_channel(d, "out-channel", f->outs[i])) != 0)
			return rc;
	}
	f->nsub = fq_device_subchannels(d, f->outs[0]);
	f->next = 0;
	if (f->kind == FQDEV_PROCESSOR) {
		char name[16];

		if ((rc = fqdev_opt_string(d, "transform", name, sizeof(name))) != 0)
			return rc;
		if (strcmp(name, "none") == 0) {
			f->transform = TRANSFORM_NONE;
		} else if (strcmp(name, "touch") == 0) {
			f->transform = TRANSFORM_TOUCH;
		} else if (strcmp(name, "xor") == 0) {
			f->transform = TRANSFORM_XOR;
		} else {
			fprintf(stderr, "%s: --transform: '%s' is not none, touch or xor\n",
			        fq_device_id(d), name);
			return FQ_EINVAL;
		}
	}
	return 0;
}

static int pre_run(fq_device *d, void *arg)
{
	fqdev_stats_start(&((forwarder *)arg)->stats);
	return 0;
}

static int post_run(fq_device *d, void *arg)
{
	forwarder *f = arg;

	fqdev_stats_stop(&f->stats);
	fqdev_summary(d, &f->stats);
	return 0;
}

int fqdev_forward_main(int argc, char **argv, fqdev_kind kind, const fq_device_option *options,
                       size_t noptions)
{
	forwarder f = {.kind = kind};
	fq_device_hooks hooks = {
	    .size = sizeof(hooks),
	    .arg = &f,
	    .init_task = init_task,
	    .pre_run = pre_run,
	    .post_run = post_run,
	};
	int status = fq_device_main(argc, argv, &hooks, options, noptions, setup, &f);

	fqdev_list_free(f.ins, f.nin);
	fqdev_list_free(f.outs, f.nout);
	return status;
}
