/*
 * Raw libnanomsg baseline of the fq-bench patterns (see baseline_nanomsg.h). Written the way a
 * careful libnanomsg user would: blocking nn_send/nn_recv, messages received as libnanomsg's
 * own chunks (NN_MSG) and freed, or sent back, without a copy.
 *
 * thr: a single part below FQB_NN_ZERO_COPY_MIN is written into one reused buffer and sent
 * with nn_send (libnanomsg copies it into a chunk); from FQB_NN_ZERO_COPY_MIN on, each message
 * is written into a chunk of its own (nn_allocmsg) that nn_send(NN_MSG) hands over, as the
 * nanomsg transport sends a message from fq_msg_alloc. The receiver frees each chunk.
 * lat: the pinger sends one chunk, the ponger sends each chunk it receives straight back and
 * the pinger sends the echo on again: no allocation and no copy per round trip.
 *
 * A vector of parts is one SP message laid out as the nanomsg transport lays it out: the
 * header of src/transport/nanomsg/nm_wire.h (magic, version, flags, part count, each part's
 * size; big-endian), written here by hand, then the parts. The thr sender gathers the header
 * and its part buffers with nn_sendmsg (one copy, by libnanomsg, as fq_sendv), the receivers
 * check the header.
 *
 * Limits: libnanomsg has no high-water mark in messages, only queue sizes in bytes (NN_SNDBUF,
 * NN_RCVBUF); the nanomsg transport ignores snd_hwm/rcv_hwm and so does this baseline: both
 * keep libnanomsg's defaults whatever --hwm says. Received sizes are not limited
 * (NN_RCVMAXSIZE -1; the transport's max_msg_size of 4 GiB is beyond what libnanomsg takes).
 * nn_recv returns the size as an int: messages of 2 GiB and more are refused up front.
 *
 * The end: libnanomsg has no linger, nn_close drops what it still holds. The sender (pinger)
 * keeps its socket open after the end marker until the parent releases it (--hold: the
 * receiver has reported, so the marker arrived). Run by hand without --hold, it waits instead,
 * at most its timeout, until libnanomsg has handed the marker to the connection (NN_SNDFD
 * readable again); what the kernel holds by then is still delivered.
 */
#include "baseline_nanomsg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <nanomsg/nn.h>
#include <nanomsg/pair.h>
#include <nanomsg/pipeline.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- The vector header (nm_wire.h) -------------------------------------------------------- */

#define VEC_MAGIC     "\0FQVEC"
#define VEC_MAGIC_LEN 6
#define VEC_VERSION   1
#define VEC_FIXED     12 /* magic, version, flags, part count */

static size_t vec_head_bytes(size_t parts)
{
	return VEC_FIXED + 8 * parts;
}

/* Bytes of one message on the wire: the payload, or a vector's header and parts. */
static size_t wire_bytes(const fqb_role_args *a)
{
	return a->parts == 1 ? a->size : vec_head_bytes(a->parts) + a->parts * a->size;
}

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--) {
		p[i] = (unsigned char)v;
		v >>= 8;
	}
}

static uint64_t get_be(const unsigned char *p, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++)
		v = v << 8 | p[i];
	return v;
}

/* The header of a vector of a->parts parts of a->size bytes each. */
static void vec_put_head(unsigned char *head, const fqb_role_args *a)
{
	memcpy(head, VEC_MAGIC, VEC_MAGIC_LEN);
	head[6] = VEC_VERSION;
	head[7] = 0;
	put_be(head + 8, a->parts, 4);
	for (size_t i = 0; i < a->parts; i++)
		put_be(head + VEC_FIXED + 8 * i, a->size, 8);
}

/* Is this received body a vector of a->parts parts of a->size bytes, sizes adding up? */
static bool vec_ok(const unsigned char *body, size_t len, const fqb_role_args *a)
{
	if (len != wire_bytes(a) || memcmp(body, VEC_MAGIC, VEC_MAGIC_LEN) != 0 ||
	    body[6] != VEC_VERSION || body[7] != 0 || get_be(body + 8, 4) != a->parts)
		return false;
	for (size_t i = 0; i < a->parts; i++) {
		if (get_be(body + VEC_FIXED + 8 * i, 8) != a->size)
			return false;
	}
	return true;
}

/* The payload of part j of a message as it travels. */
static char *part_at(void *body, const fqb_role_args *a, size_t j)
{
	if (a->parts == 1)
		return body;
	return (char *)body + vec_head_bytes(a->parts) + j * a->size;
}

/* ---- Sockets ------------------------------------------------------------------------------ */

static int set_int(int s, int opt, int value, const char *name)
{
	if (nn_setsockopt(s, NN_SOL_SOCKET, opt, &value, sizeof(value)) != 0) {
		fqb_report_error("nn_setsockopt %s: %s", name, nn_strerror(errno));
		return -1;
	}
	return 0;
}

/* A TCP port free at this moment (libnanomsg cannot bind port 0), or -1 (errno set). */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/*
 * Bind `url`, writing the bound address into ep. tcp://HOST:0 binds a port found free, and
 * another if a process took that one meanwhile. 0 or -1 (reported).
 */
static int bind_url(int s, const char *url, char *ep, size_t len)
{
	const char *colon = strrchr(url, ':');

	if (strncmp(url, "tcp://", 6) != 0 || colon == NULL || strcmp(colon, ":0") != 0) {
		snprintf(ep, len, "%s", url);
		if (nn_bind(s, url) >= 0)
			return 0;
		fqb_report_error("nn_bind %s: %s", url, nn_strerror(errno));
		return -1;
	}
	for (int tries = 0; tries < 20; tries++) {
		int port = free_port();

		if (port < 0) {
			fqb_report_error("finding a free tcp port: %s", strerror(errno));
			return -1;
		}
		snprintf(ep, len, "%.*s:%d", (int)(colon - url), url, port);
		if (nn_bind(s, ep) >= 0)
			return 0;
		if (errno != EADDRINUSE)
			break;
	}
	fqb_report_error("nn_bind %s: %s", ep, nn_strerror(errno));
	return -1;
}

/* A socket of `type`, bound or connected as a says. The socket, or -1 (reported). */
static int side_open(const fqb_role_args *a, int type)
{
	char ep[FQB_URL_MAX];
	int s;

	if (a->size > 0 && (a->size > ((size_t)INT_MAX - vec_head_bytes(a->parts)) / a->parts)) {
		fqb_report_error("messages of %zu x %zu bytes: libnanomsg's nn_recv returns sizes "
		                 "as an int (below 2 GiB)",
		                 a->parts, a->size);
		return -1;
	}
	s = nn_socket(AF_SP, type);
	if (s < 0) {
		fqb_report_error("nn_socket: %s", nn_strerror(errno));
		return -1;
	}
	if (set_int(s, NN_SNDTIMEO, a->timeout_ms, "NN_SNDTIMEO") != 0 ||
	    set_int(s, NN_RCVTIMEO, a->timeout_ms, "NN_RCVTIMEO") != 0 ||
	    set_int(s, NN_RCVMAXSIZE, -1, "NN_RCVMAXSIZE") != 0)
		goto fail;
	if (a->bind) {
		if (bind_url(s, a->url, ep, sizeof(ep)) != 0)
			goto fail;
		fqb_report_url(ep);
	} else if (nn_connect(s, a->url) < 0) {
		fqb_report_error("nn_connect %s: %s", a->url, nn_strerror(errno));
		goto fail;
	}
	return s;
fail:
	nn_close(s);
	return -1;
}

static int send_marker(int s, const fqb_role_args *a)
{
	if (nn_send(s, "", fqb_marker_size(a->size), 0) < 0) {
		fqb_report_error("nn_send (end marker): %s", nn_strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * After the end marker: held until the parent releases the side (the peer has the marker), or,
 * without --hold, until libnanomsg has handed the marker to the connection (at most the
 * timeout), since nn_close drops what it still holds.
 */
static void marker_wait(int s, const fqb_role_args *a)
{
	struct pollfd p = {.events = POLLIN};
	size_t len = sizeof(p.fd);

	if (a->hold) {
		fqb_hold_wait(a->timeout_ms);
		return;
	}
	if (nn_getsockopt(s, NN_SOL_SOCKET, NN_SNDFD, &p.fd, &len) == 0)
		(void)poll(&p, 1, a->timeout_ms);
}

/*
 * Receive one message into *body (a chunk, ours). 1: payload, 0: the end marker (freed),
 * -1: error (reported).
 */
static int recv_message(int s, void **body, const fqb_role_args *a)
{
	int rc = nn_recv(s, body, NN_MSG, 0);
	size_t len;

	if (rc < 0) {
		fqb_report_error("nn_recv: %s", nn_strerror(errno));
		return -1;
	}
	len = (size_t)rc;
	if (a->parts == 1 ? len == a->size : vec_ok(*body, len, a))
		return 1;
	nn_freemsg(*body);
	*body = NULL;
	if (len == fqb_marker_size(a->size))
		return 0;
	fqb_report_error("unexpected message of %zu bytes", len);
	return -1;
}

/* ---- thr ---------------------------------------------------------------------------------- */

static int sender(const fqb_role_args *a)
{
	const bool zero_copy = a->parts == 1 && a->size >= FQB_NN_ZERO_COPY_MIN;
	fqb_deadline dl;
	const size_t head = a->parts == 1 ? 0 : vec_head_bytes(a->parts);
	struct nn_iovec *iov = NULL;
	struct nn_msghdr hdr = {0};
	char *buf = NULL;
	uint64_t i;
	double cpu0;
	int s;

	/* The reused buffer: the vector header and every part (or the single payload). */
	if (!zero_copy) {
		buf = malloc(head + a->parts * a->size + 1);
		iov = a->parts > 1 ? calloc(a->parts + 1, sizeof(*iov)) : NULL;
		if (buf == NULL || (a->parts > 1 && iov == NULL)) {
			fqb_report_error("out of memory for %zu parts of %zu bytes", a->parts,
			                 a->size);
			free(buf);
			free(iov);
			return FQB_EXIT_FAILURE;
		}
		memset(buf, 0x5a, head + a->parts * a->size + 1);
	}
	if (a->parts > 1) {
		vec_put_head((unsigned char *)buf, a);
		iov[0] = (struct nn_iovec){buf, head};
		for (size_t j = 0; j < a->parts; j++)
			iov[j + 1] = (struct nn_iovec){part_at(buf, a, j), a->size};
		hdr = (struct nn_msghdr){.msg_iov = iov, .msg_iovlen = (int)(a->parts + 1)};
	}
	s = side_open(a, NN_PUSH);
	if (s < 0)
		goto fail_open;
	cpu0 = fqb_cpu_seconds();
	fqb_deadline_start(&dl, a);
	for (i = 0; a->count == 0 || i < a->count; i++) {
		int rc;

		if (fqb_deadline_passed(&dl, i))
			break;
		if (zero_copy) {
			void *chunk = nn_allocmsg(a->size, 0);

			if (chunk == NULL) {
				fqb_report_error("nn_allocmsg: %s", nn_strerror(errno));
				goto fail;
			}
			fqb_touch(chunk, a->size, i, a->fill);
			rc = nn_send(s, &chunk, NN_MSG, 0);
			if (rc < 0)
				nn_freemsg(chunk);
		} else if (a->parts == 1) {
			fqb_touch(buf, a->size, i, a->fill);
			rc = nn_send(s, buf, a->size, 0);
		} else {
			for (size_t j = 0; j < a->parts; j++)
				fqb_touch(part_at(buf, a, j), a->size, i, a->fill);
			rc = nn_sendmsg(s, &hdr, 0);
		}
		if (rc < 0) {
			fqb_report_error("%s: %s", a->parts == 1 ? "nn_send" : "nn_sendmsg",
			                 nn_strerror(errno));
			goto fail;
		}
	}
	if (send_marker(s, a) != 0)
		goto fail;
	marker_wait(s, a);
	nn_close(s);
	free(buf);
	free(iov);
	fqb_report_sender(FQB_ROLE_SENDER, i, fqb_cpu_seconds() - cpu0);
	return FQB_EXIT_OK;
fail:
	nn_close(s);
fail_open:
	free(buf);
	free(iov);
	return FQB_EXIT_FAILURE;
}

static int receiver(const fqb_role_args *a)
{
	uint64_t n = 0, t_first = 0, t_end;
	void *body = NULL;
	double cpu0;
	int rc = FQB_EXIT_FAILURE, got;
	int s = side_open(a, NN_PULL);

	if (s < 0)
		return FQB_EXIT_FAILURE;
	cpu0 = fqb_cpu_seconds();
	while ((got = recv_message(s, &body, a)) == 1) {
		if (n++ == 0)
			t_first = fqb_now_ns();
		nn_freemsg(body);
	}
	t_end = fqb_now_ns();
	rc = fqb_receiver_end(got, n, t_first, t_end, cpu0);
	nn_close(s);
	return rc;
}

/* ---- lat ---------------------------------------------------------------------------------- */

/* Send the chunk *body (handed over: NULL after, also on failure). 0 or -1 (reported). */
static int send_chunk(int s, void **body)
{
	if (nn_send(s, body, NN_MSG, 0) >= 0) {
		*body = NULL;
		return 0;
	}
	fqb_report_error("nn_send: %s", nn_strerror(errno));
	nn_freemsg(*body);
	*body = NULL;
	return -1;
}

/* Round trips not measured before the timed ones: connection set-up and first-touch costs. */
#define WARMUP 100

static int pinger(const fqb_role_args *a)
{
	fqb_samples samples = {0};
	uint64_t t0, prev, end_ns = UINT64_MAX, n = 0;
	void *body = NULL;
	int lap;
	double cpu0;
	int rc = FQB_EXIT_FAILURE;
	int s;

	if (fqb_samples_init(&samples, a->count, a->duration) != 0) {
		fqb_report_error("out of memory for latency samples");
		return FQB_EXIT_FAILURE;
	}
	s = side_open(a, NN_PAIR);
	if (s < 0) {
		fqb_samples_free(&samples);
		return FQB_EXIT_FAILURE;
	}
	/* One message, sent on and on: the echo comes back as the next one to send. */
	body = nn_allocmsg(wire_bytes(a), 0);
	if (body == NULL) {
		fqb_report_error("nn_allocmsg: %s", nn_strerror(errno));
		goto out;
	}
	if (a->parts > 1)
		vec_put_head(body, a);
	for (size_t j = 0; j < a->parts && a->size > 0; j++)
		memset(part_at(body, a, j), 0x5a, a->size);
	for (int w = 0; w < WARMUP; w++) {
		if (send_chunk(s, &body) != 0 || recv_message(s, &body, a) != 1)
			goto out;
	}
	cpu0 = fqb_cpu_seconds();
	t0 = prev = fqb_now_ns();
	if (a->count == 0)
		end_ns = t0 + (uint64_t)(a->duration * 1e9);
	while (a->count == 0 || n < a->count) {
		for (size_t j = 0; a->fill && j < a->parts; j++)
			fqb_touch(part_at(body, a, j), a->size, n, true);
		if (send_chunk(s, &body) != 0 || recv_message(s, &body, a) != 1)
			goto out;
		lap = fqb_lap(&samples, &prev, &n, end_ns);
		if (lap < 0)
			goto out;
		if (lap > 0)
			break;
	}
	if (send_marker(s, a) != 0)
		goto out;
	marker_wait(s, a);
	fqb_report_pinger_samples(&samples, n, t0, prev, cpu0);
	rc = FQB_EXIT_OK;
out:
	if (body != NULL)
		nn_freemsg(body);
	nn_close(s);
	fqb_samples_free(&samples);
	return rc;
}

static int ponger(const fqb_role_args *a)
{
	uint64_t n = 0;
	void *body = NULL;
	double cpu0;
	int rc = FQB_EXIT_FAILURE, got;
	int s = side_open(a, NN_PAIR);

	if (s < 0)
		return FQB_EXIT_FAILURE;
	cpu0 = fqb_cpu_seconds();
	while ((got = recv_message(s, &body, a)) == 1) {
		if (send_chunk(s, &body) != 0) {
			got = -1;
			break;
		}
		n++;
	}
	if (got == 0) {
		fqb_report_sender(FQB_ROLE_PONGER, n, fqb_cpu_seconds() - cpu0);
		rc = FQB_EXIT_OK;
	}
	nn_close(s);
	return rc;
}

int fqb_nn_role(const fqb_role_args *a)
{
	static const fqb_role_fns fns = {sender, receiver, pinger, ponger, "no role"};

	return fqb_role_run(&fns, a);
}
