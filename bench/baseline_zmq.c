/*
 * Raw libzmq baseline of the fq-bench patterns (see baseline_zmq.h). Written the way a careful
 * libzmq user would: small messages with zmq_msg_init_size, large ones zero-copy from one
 * buffer with a no-op free function, blocking zmq_msg_send/zmq_msg_recv, one zmq_msg_t reused
 * by the receiver. A vector of parts is a multipart message.
 */
#include "baseline_zmq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

typedef struct zside {
	void *ctx;
	void *sock;
} zside;

static void no_free(void *data, void *hint)
{
	(void)data;
	(void)hint;
}

static int set_int(void *sock, int opt, int value, const char *name)
{
	if (zmq_setsockopt(sock, opt, &value, sizeof(value)) != 0) {
		fqb_report_error("zmq_setsockopt %s: %s", name, zmq_strerror(errno));
		return -1;
	}
	return 0;
}

static void zside_close(zside *z)
{
	if (z->sock != NULL)
		zmq_close(z->sock);
	if (z->ctx != NULL) {
		while (zmq_ctx_term(z->ctx) != 0 && errno == EINTR)
			;
	}
	z->sock = z->ctx = NULL;
}

static int zside_open(zside *z, const fqb_role_args *a, int type)
{
	char ep[FQB_URL_MAX];
	size_t len = sizeof(ep);

	z->sock = NULL;
	z->ctx = zmq_ctx_new();
	if (z->ctx == NULL) {
		fqb_report_error("zmq_ctx_new: %s", zmq_strerror(errno));
		return -1;
	}
	z->sock = zmq_socket(z->ctx, type);
	if (z->sock == NULL) {
		fqb_report_error("zmq_socket: %s", zmq_strerror(errno));
		goto fail;
	}
	if (a->hwm >= 0 && (set_int(z->sock, ZMQ_SNDHWM, a->hwm, "ZMQ_SNDHWM") != 0 ||
	                    set_int(z->sock, ZMQ_RCVHWM, a->hwm, "ZMQ_RCVHWM") != 0))
		goto fail;
	if (set_int(z->sock, ZMQ_SNDTIMEO, a->timeout_ms, "ZMQ_SNDTIMEO") != 0 ||
	    set_int(z->sock, ZMQ_RCVTIMEO, a->timeout_ms, "ZMQ_RCVTIMEO") != 0 ||
	    set_int(z->sock, ZMQ_LINGER, a->timeout_ms, "ZMQ_LINGER") != 0)
		goto fail;
	if (a->bind) {
		if (zmq_bind(z->sock, a->url) != 0) {
			fqb_report_error("zmq_bind %s: %s", a->url, zmq_strerror(errno));
			goto fail;
		}
		if (zmq_getsockopt(z->sock, ZMQ_LAST_ENDPOINT, ep, &len) != 0) {
			fqb_report_error("ZMQ_LAST_ENDPOINT: %s", zmq_strerror(errno));
			goto fail;
		}
		fqb_report_url(ep);
	} else if (zmq_connect(z->sock, a->url) != 0) {
		fqb_report_error("zmq_connect %s: %s", a->url, zmq_strerror(errno));
		goto fail;
	}
	return 0;
fail:
	zside_close(z);
	return -1;
}

/* ---- thr -------------------------------------------------------------------------------- */

static int sender(const fqb_role_args *a)
{
	const bool zero_copy = a->size >= FQB_ZMQ_ZERO_COPY_MIN;
	fqb_deadline dl;
	char *buf = NULL;
	uint64_t i;
	double cpu0;
	zside z;

	if (zside_open(&z, a, ZMQ_PUSH) != 0)
		return FQB_EXIT_FAILURE;
	if (zero_copy) {
		buf = malloc(a->size);
		if (buf == NULL) {
			fqb_report_error("out of memory for a %zu-byte buffer", a->size);
			zside_close(&z);
			return FQB_EXIT_FAILURE;
		}
		memset(buf, 0x5a, a->size);
	}
	cpu0 = fqb_cpu_seconds();
	fqb_deadline_start(&dl, a);
	for (i = 0; a->count == 0 || i < a->count; i++) {
		if (fqb_deadline_passed(&dl, i))
			break;
		for (size_t j = 0; j < a->parts; j++) {
			int more = j + 1 < a->parts ? ZMQ_SNDMORE : 0;
			zmq_msg_t msg;
			char *p;

			if (zero_copy) {
				zmq_msg_init_data(&msg, buf, a->size, no_free, NULL);
			} else if (zmq_msg_init_size(&msg, a->size) != 0) {
				fqb_report_error("zmq_msg_init_size: %s", zmq_strerror(errno));
				goto fail;
			}
			p = zmq_msg_data(&msg);
			fqb_touch(p, a->size, i, a->fill);
			if (zmq_msg_send(&msg, z.sock, more) < 0) {
				fqb_report_error("zmq_msg_send: %s", zmq_strerror(errno));
				zmq_msg_close(&msg);
				goto fail;
			}
		}
	}
	if (zmq_send(z.sock, "", fqb_marker_size(a->size), 0) < 0) {
		fqb_report_error("zmq_send (end marker): %s", zmq_strerror(errno));
		goto fail;
	}
	if (a->hold)
		fqb_hold_wait(a->timeout_ms);
	zside_close(&z); /* lingers until everything is written out */
	free(buf);
	fqb_report_sender(FQB_ROLE_SENDER, i, fqb_cpu_seconds() - cpu0);
	return FQB_EXIT_OK;
fail:
	zside_close(&z);
	free(buf);
	return FQB_EXIT_FAILURE;
}

/*
 * Receive one message of `parts` frames into msgs[0..parts). 1: payload, 0: the end marker,
 * -1: error (reported).
 */
static int recv_message(void *sock, zmq_msg_t *msgs, const fqb_role_args *a)
{
	size_t got = 0;

	for (;;) {
		if (zmq_msg_recv(&msgs[got], sock, 0) < 0) {
			fqb_report_error("zmq_msg_recv: %s", zmq_strerror(errno));
			return -1;
		}
		got++;
		if (!zmq_msg_more(&msgs[got - 1]))
			break;
		if (got == a->parts) {
			fqb_report_error("a message with more than %zu parts", a->parts);
			return -1;
		}
	}
	if (got == 1 && a->parts > 1 && zmq_msg_size(&msgs[0]) == fqb_marker_size(a->size))
		return 0;
	if (got == 1 && a->parts == 1 && zmq_msg_size(&msgs[0]) == fqb_marker_size(a->size))
		return 0;
	if (got != a->parts || zmq_msg_size(&msgs[0]) != a->size) {
		fqb_report_error("unexpected message: %zu parts, first of %zu bytes", got,
		                 zmq_msg_size(&msgs[0]));
		return -1;
	}
	return 1;
}

static void close_msgs(zmq_msg_t *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		zmq_msg_close(&msgs[i]);
}

static int receiver(const fqb_role_args *a)
{
	zmq_msg_t msgs[FQB_MAX_PARTS];
	uint64_t n = 0, t_first = 0, t_end;
	double cpu0;
	int rc = FQB_EXIT_FAILURE, got;
	zside z;

	if (zside_open(&z, a, ZMQ_PULL) != 0)
		return FQB_EXIT_FAILURE;
	for (size_t i = 0; i < a->parts; i++)
		zmq_msg_init(&msgs[i]);
	cpu0 = fqb_cpu_seconds();
	while ((got = recv_message(z.sock, msgs, a)) == 1) {
		if (n++ == 0)
			t_first = fqb_now_ns();
	}
	t_end = fqb_now_ns();
	rc = fqb_receiver_end(got, n, t_first, t_end, cpu0);
	close_msgs(msgs, a->parts);
	zside_close(&z);
	return rc;
}

/* ---- lat -------------------------------------------------------------------------------- */

static int send_message(void *sock, zmq_msg_t *msgs, size_t parts)
{
	for (size_t j = 0; j < parts; j++) {
		if (zmq_msg_send(&msgs[j], sock, j + 1 < parts ? ZMQ_SNDMORE : 0) < 0) {
			fqb_report_error("zmq_msg_send: %s", zmq_strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Round trips not measured before the timed ones: connection set-up and first-touch costs. */
#define WARMUP 100

static int pinger(const fqb_role_args *a)
{
	zmq_msg_t msgs[FQB_MAX_PARTS];
	fqb_samples samples = {0};
	uint64_t t0, prev, end_ns = UINT64_MAX, n = 0;
	int lap;
	double cpu0;
	int rc = FQB_EXIT_FAILURE;
	zside z;

	if (fqb_samples_init(&samples, a->count, a->duration) != 0) {
		fqb_report_error("out of memory for latency samples");
		return FQB_EXIT_FAILURE;
	}
	if (zside_open(&z, a, ZMQ_PAIR) != 0) {
		fqb_samples_free(&samples);
		return FQB_EXIT_FAILURE;
	}
	for (size_t j = 0; j < a->parts; j++) {
		zmq_msg_init_size(&msgs[j], a->size);
		if (a->size > 0)
			memset(zmq_msg_data(&msgs[j]), 0x5a, a->size);
	}
	for (int w = 0; w < WARMUP; w++) {
		if (send_message(z.sock, msgs, a->parts) != 0 || recv_message(z.sock, msgs, a) != 1)
			goto out;
	}
	cpu0 = fqb_cpu_seconds();
	t0 = prev = fqb_now_ns();
	if (a->count == 0)
		end_ns = t0 + (uint64_t)(a->duration * 1e9);
	while (a->count == 0 || n < a->count) {
		for (size_t j = 0; a->fill && j < a->parts; j++)
			fqb_touch(zmq_msg_data(&msgs[j]), a->size, n, true);
		if (send_message(z.sock, msgs, a->parts) != 0 || recv_message(z.sock, msgs, a) != 1)
			goto out;
		lap = fqb_lap(&samples, &prev, &n, end_ns);
		if (lap < 0)
			goto out;
		if (lap > 0)
			break;
	}
	if (zmq_send(z.sock, "", fqb_marker_size(a->size), 0) < 0) {
		fqb_report_error("zmq_send (end marker): %s", zmq_strerror(errno));
		goto out;
	}
	if (a->hold)
		fqb_hold_wait(a->timeout_ms);
	fqb_report_pinger_samples(&samples, n, t0, prev, cpu0);
	rc = FQB_EXIT_OK;
out:
	close_msgs(msgs, a->parts);
	zside_close(&z);
	fqb_samples_free(&samples);
	return rc;
}

static int ponger(const fqb_role_args *a)
{
	zmq_msg_t msgs[FQB_MAX_PARTS];
	uint64_t n = 0;
	double cpu0;
	int rc = FQB_EXIT_FAILURE, got;
	zside z;

	if (zside_open(&z, a, ZMQ_PAIR) != 0)
		return FQB_EXIT_FAILURE;
	for (size_t i = 0; i < a->parts; i++)
		zmq_msg_init(&msgs[i]);
	cpu0 = fqb_cpu_seconds();
	while ((got = recv_message(z.sock, msgs, a)) == 1) {
		if (send_message(z.sock, msgs, a->parts) != 0) {
			got = -1;
			break;
		}
		n++;
	}
	if (got == 0) {
		fqb_report_sender(FQB_ROLE_PONGER, n, fqb_cpu_seconds() - cpu0);
		rc = FQB_EXIT_OK;
	}
	close_msgs(msgs, a->parts);
	zside_close(&z);
	return rc;
}

int fqb_zmq_role(const fqb_role_args *a)
{
	static const fqb_role_fns fns = {sender, receiver, pinger, ponger, "no role"};

	return fqb_role_run(&fns, a);
}
