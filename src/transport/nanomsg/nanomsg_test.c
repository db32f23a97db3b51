/*
 * The nanomsg transport against plain libnanomsg sockets in the same process: what fabriq
 * puts on the wire and what it makes of what a foreign SP peer sends (vector header, the
 * magic, malformed vectors), zero-copy hand-over on inproc, SUB filtering of vectors, vectors
 * kept for fq_recvv in order. (Interoperation with nanocat and nngcat as separate programs is
 * in tests/interop.)
 */
#include "fq_test.h"

#include "transport/nanomsg/nm_wire.h"

#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <nanomsg/pubsub.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

TestSuite(nanomsg, .init = fqt_init, .fini = fqt_fini, .timeout = 60);

static fq_transport *tp(void)
{
	static fq_transport *t;

	if (t == NULL)
		t = fqt_transport_open("nanomsg");
	return t;
}

/* A plain libnanomsg socket of `protocol` bound or connected to url (bounded waits). */
static int raw_socket(int protocol, const char *url, bool bind)
{
	int s = nn_socket(AF_SP, protocol), ms = FQT_WAIT_MS;

	cr_assert_geq(s, 0, "nn_socket: %s", nn_strerror(nn_errno()));
	nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &ms, sizeof(ms));
	nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &ms, sizeof(ms));
	cr_assert_geq(bind ? nn_bind(s, url) : nn_connect(s, url), 0, "%s: %s", url,
	              nn_strerror(nn_errno()));
	return s;
}

static void raw_send(int s, const void *data, size_t len)
{
	cr_assert_eq(nn_send(s, data, len, 0), (int)len, "nn_send: %s", nn_strerror(nn_errno()));
}

/* Receive with plain libnanomsg; returns the chunk (nn_freemsg it) and its length. */
static void *raw_recv(int s, size_t *len)
{
	void *chunk = NULL;
	int rc = nn_recv(s, &chunk, NN_MSG, 0);

	cr_assert_geq(rc, 0, "nn_recv: %s", nn_strerror(nn_errno()));
	*len = (size_t)rc;
	return chunk;
}

Test(nanomsg, a_vector_on_the_wire_is_the_documented_header)
{
	fq_socket *push = fqt_socket(tp(), FQ_PUSH);
	char url[FQT_URL_MAX];
	fq_msg *parts[3] = {fqt_msg_str(tp(), "ab"), fqt_msg_str(tp(), ""), fqt_msg_str(tp(), "c")};
	static const unsigned char want[] = {
	    0x00, 'F', 'Q', 'V', 'E', 'C', 1, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0,   0,   0,  2,
	    0,    0,   0,   0,   0,   0,   0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 'b', 'c'};
	size_t len;
	void *body;
	int raw;

	fqt_bind(push, fqt_url("ipc", url));
	raw = raw_socket(NN_PULL, url, false);
	FQ_PASS(fq_sendv(push, parts, 3, 0));
	body = raw_recv(raw, &len);
	cr_assert_eq(len, sizeof(want));
	cr_assert_eq(memcmp(body, want, len), 0,
	             "the vector header differs from fabriq-nanomsg(7)");
	nn_freemsg(body);
	/* A single message is the body as it is. */
	fqt_send_str(push, "plain");
	body = raw_recv(raw, &len);
	cr_assert(len == 5 && memcmp(body, "plain", 5) == 0);
	nn_freemsg(body);
	nn_close(raw);
}

Test(nanomsg, a_message_that_starts_with_the_magic_arrives_unchanged)
{
	fq_socket *push = fqt_socket(tp(), FQ_PUSH), *pull = fqt_socket(tp(), FQ_PULL);
	static const char odd[] = "\0FQVEC and then anything";
	fq_msg *m = NULL;

	fqt_marry(pull, push, "ipc");
	FQ_PASS(fq_msg_alloc(tp(), sizeof(odd), &m));
	memcpy(fq_msg_data(m), odd, sizeof(odd));
	FQ_PASS(fq_send(push, &m, 0));
	FQ_PASS(fqt_recv(pull, &m, 0));
	cr_assert_eq(fq_msg_size(m), sizeof(odd));
	cr_assert_eq(memcmp(fq_msg_data(m), odd, sizeof(odd)), 0);
	fq_msg_free(m);
}

Test(nanomsg, a_foreign_vector_is_read_and_a_malformed_one_dropped)
{
	fq_socket *pull = fqt_socket(tp(), FQ_PULL);
	char url[FQT_URL_MAX];
	unsigned char body[64];
	size_t len = nm_vec_head_bytes(2) + 3;
	fq_parts *v = NULL;
	fq_msg *m = NULL;
	int raw;

	fqt_bind(pull, fqt_url("tcp", url));
	raw = raw_socket(NN_PUSH, url, false);
	nm_vec_put_head(body, 2);
	nm_vec_put_size(body, 0, 1);
	nm_vec_put_size(body, 1, 2);
	memcpy(body + nm_vec_head_bytes(2), "xyz", 3);
	raw_send(raw, body, len - 1); /* one byte short: dropped, logged */
	raw_send(raw, body, len);     /* good */
	raw_send(raw, "after", 5);
	FQ_PASS(fqt_recvv(pull, &v, 0));
	cr_assert_eq(fq_parts_count(v), 2);
	cr_assert(fqt_msg_is(fq_parts_at(v, 0), "x"));
	cr_assert(fqt_msg_is(fq_parts_at(v, 1), "yz"));
	fq_parts_free(v);
	fqt_recv_str(pull, "after");
	FQ_FAIL(fqt_recv(pull, &m, FQ_DONTWAIT), FQ_EAGAIN);
	nn_close(raw);
}

static uint64_t copies(void)
{
	uint64_t v = 0;

	FQ_PASS(fq_transport_counter(tp(), "send_copies", &v));
	return v;
}

static void adopt_free(void *data, void *hint)
{
	(void)hint;
	free(data);
}

Test(nanomsg, messages_go_without_a_copy_where_they_can)
{
	fq_socket *push = fqt_socket(tp(), FQ_PUSH), *pull = fqt_socket(tp(), FQ_PULL);
	fq_socket *push2 = fqt_socket(tp(), FQ_PUSH), *pull2 = fqt_socket(tp(), FQ_PULL);
	fq_msg *m = NULL, *copy = NULL;
	uint64_t before;
	void *mem;

	fqt_marry(pull, push, "ipc");
	fqt_marry(pull2, push2, "ipc");
	before = copies();
	/* An allocated message is handed to libnanomsg as its chunk. */
	m = fqt_msg_pattern(tp(), 100000, 1);
	FQ_PASS(fq_send(push, &m, 0));
	FQ_PASS(fqt_recv(pull, &m, 0));
	fqt_msg_check(m, 100000, 1);
	/* A received one is forwarded as its chunk. */
	FQ_PASS(fq_send(push2, &m, 0));
	FQ_PASS(fqt_recv(pull2, &m, 0));
	fqt_msg_check(m, 100000, 1);
	/* Shrunk, still (nn_reallocmsg). */
	FQ_PASS(fq_msg_shrink(m, 10));
	FQ_PASS(fq_send(push, &m, 0));
	FQ_PASS(fqt_recv(pull, &m, 0));
	cr_assert_eq(fq_msg_size(m), 10);
	cr_assert_eq(copies(), before, "%llu sends copied",
	             (unsigned long long)(copies() - before));
	/* Shared (a copy is alive): copied once, both stay valid. */
	FQ_PASS(fq_msg_copy(m, &copy));
	FQ_PASS(fq_send(push, &m, 0));
	FQ_PASS(fqt_recv(pull, &m, 0));
	cr_assert_eq(memcmp(fq_msg_data(m), fq_msg_data(copy), 10), 0);
	fq_msg_free(copy);
	fq_msg_free(m);
	cr_assert_eq(copies(), before + 1);
	/* Adopted memory: copied once. */
	mem = malloc(64);
	cr_assert_not_null(mem);
	memset(mem, 7, 64);
	FQ_PASS(fq_msg_adopt(tp(), mem, 64, adopt_free, NULL, &m));
	FQ_PASS(fq_send(push, &m, 0));
	FQ_PASS(fqt_recv(pull, &m, 0));
	cr_assert_eq(((unsigned char *)fq_msg_data(m))[63], 7);
	fq_msg_free(m);
	cr_assert_eq(copies(), before + 2);
}

static void send_parts(fq_socket *s, const char *a, const char *b)
{
	fq_msg *parts[2] = {fqt_msg_str(tp(), a), fqt_msg_str(tp(), b)};

	FQ_PASS(fq_sendv(s, parts, 2, 0));
}

Test(nanomsg, sub_matches_the_first_part_of_a_vector)
{
	fq_socket *pub = fqt_socket(tp(), FQ_PUB), *sub = fqt_socket(tp(), FQ_SUB);
	fq_parts *v = NULL;

	fqt_marry(sub, pub, "ipc");
	FQ_PASS(fq_socket_set(sub, "subscribe", "keep"));
	FQ_PASS(fq_socket_set(sub, "unsubscribe", "never added")); /* nothing to remove */
	for (int i = 0; i < 1000; i++) {
		send_parts(pub, "drop", "keep (second part)");
		send_parts(pub, "keep-1", "x");
		if (fqt_recvv(sub, &v, FQ_DONTWAIT) == 0)
			break;
		fqt_pause();
	}
	cr_assert_not_null(v, "no vector passed the subscription");
	cr_assert(fqt_msg_is(fq_parts_at(v, 0), "keep-1"));
	fq_parts_free(v);
	/* Everything that arrives from now on starts with "keep" (or is a probe). */
	for (int i = 0; i < 20; i++) {
		v = NULL;
		if (fqt_recvv(sub, &v, FQ_DONTWAIT) != 0)
			break;
		cr_assert(fqt_msg_is(fq_parts_at(v, 0), "keep-1"),
		          "a vector that starts with '%.*s'", (int)fq_msg_size(fq_parts_at(v, 0)),
		          (const char *)fq_msg_data(fq_parts_at(v, 0)));
		fq_parts_free(v);
	}
}

Test(nanomsg, vectors_left_by_fq_recv_wait_in_order)
{
	fq_socket *push = fqt_socket(tp(), FQ_PUSH), *pull = fqt_socket(tp(), FQ_PULL);
	fq_parts *v = NULL;
	fq_msg *m = NULL;

	fqt_marry(pull, push, "inproc");
	send_parts(push, "one", "1");
	send_parts(push, "two", "2");
	fqt_send_str(push, "three");
	for (int64_t end = fqt_now_ms() + FQT_WAIT_MS; !(fq_socket_events(pull) & FQ_POLLIN);)
		cr_assert_lt(fqt_now_ms(), end);
	FQ_FAIL(fqt_recv(pull, &m, 0), FQ_EPARTS);
	FQ_FAIL(fqt_recv(pull, &m, 0), FQ_EPARTS);
	cr_assert(fq_socket_events(pull) & FQ_POLLIN);
	FQ_PASS(fqt_recvv(pull, &v, 0));
	cr_assert(fqt_msg_is(fq_parts_at(v, 0), "one"));
	fq_parts_free(v);
	FQ_FAIL(fqt_recv(pull, &m, 0), FQ_EPARTS);
	FQ_PASS(fqt_recvv(pull, &v, 0));
	cr_assert(fqt_msg_is(fq_parts_at(v, 0), "two"));
	fq_parts_free(v);
	fqt_recv_str(pull, "three");
}

Test(nanomsg, a_req_with_a_malformed_reply_may_ask_again)
{
	fq_socket *req = fqt_socket(tp(), FQ_REQ);
	char url[FQT_URL_MAX];
	unsigned char bad[NM_VEC_FIXED] = {0};
	fq_msg *m = NULL;
	size_t len;
	void *q;
	int rep;

	fqt_bind(req, fqt_url("ipc", url));
	rep = raw_socket(NN_REP, url, false);
	fqt_send_str(req, "q1");
	q = raw_recv(rep, &len);
	nn_freemsg(q);
	nm_vec_put_head(bad, 3); /* three parts announced, no sizes: malformed */
	raw_send(rep, bad, sizeof(bad));
	FQ_FAIL(fqt_recv(req, &m, 0), FQ_EPROTO);
	/* libnanomsg's REQ is done with that request: fabriq's is too. */
	fqt_send_str(req, "q2");
	q = raw_recv(rep, &len);
	cr_assert(len == 2 && memcmp(q, "q2", 2) == 0);
	nn_freemsg(q);
	raw_send(rep, "a2", 2);
	fqt_recv_str(req, "a2");
	nn_close(rep);
}

Test(nanomsg, too_many_parts_are_refused)
{
	fq_socket *push = fqt_socket(tp(), FQ_PUSH), *pull = fqt_socket(tp(), FQ_PULL);
	size_t n = NM_VEC_MAX_PARTS + 1;
	fq_msg **parts = calloc(n, sizeof(*parts));

	cr_assert_not_null(parts);
	fqt_marry(pull, push, "inproc");
	for (size_t i = 0; i < n; i++)
		FQ_PASS(fq_msg_alloc(tp(), 0, &parts[i]));
	FQ_FAIL(fq_sendv(push, parts, n, 0), FQ_EMSGSIZE);
	FQ_PASS(fq_sendv(push, parts + 1, n - 1, 0)); /* the most a vector may have */
	fq_msg_free(parts[0]);
	{
		fq_parts *v = NULL;

		FQ_PASS(fqt_recvv(pull, &v, 0));
		cr_assert_eq(fq_parts_count(v), NM_VEC_MAX_PARTS);
		fq_parts_free(v);
	}
	free(parts);
}

Test(nanomsg, unwanted_and_malformed_vectors_do_not_stall_a_receive)
{
	fq_socket *sub = fqt_socket(tp(), FQ_SUB);
	char url[FQT_URL_MAX];
	unsigned char body[NM_VEC_FIXED + 8 + 5];
	fq_msg *m = NULL;
	int pub;

	fqt_bind(sub, fqt_url("ipc", url));
	FQ_PASS(fq_socket_set(sub, "subscribe", "want"));
	pub = raw_socket(NN_PUB, url, false);
	nm_vec_put_head(body, 1);
	nm_vec_put_size(body, 0, 5);
	memcpy(body + NM_VEC_FIXED + 8, "other", 5);
	/* Until the subscriber is connected, then a burst of unwanted vectors and a wanted one. */
	for (int i = 0; i < 2000 && fqt_recv(sub, &m, FQ_DONTWAIT) != 0; i++) {
		for (int k = 0; k < 300; k++)
			raw_send(pub, body, sizeof(body));
		raw_send(pub, body, sizeof(body) - 1); /* malformed */
		raw_send(pub, "wanted", 6);
		fqt_pause();
	}
	cr_assert_not_null(m, "the wanted message never arrived");
	cr_assert(fqt_msg_is(m, "wanted"));
	fq_msg_free(m);
	/* With nothing wanted left, a timed receive ends on time however much else comes. */
	FQ_PASS(fq_socket_set_int(sub, "rcv_timeout", 200));
	for (int k = 0; k < 300; k++)
		raw_send(pub, body, sizeof(body));
	for (;;) {
		int rc = fqt_recv(sub, &m, 0);

		if (rc == FQ_ETIMEDOUT)
			break;
		FQ_PASS(rc);
		cr_assert(fqt_msg_is(m, "wanted"), "an unwanted message was delivered");
		fq_msg_free(m);
	}
	nn_close(pub);
}

static void *recvv_main(void *arg)
{
	fq_socket *s = arg;
	fq_parts *v = NULL;

	return fqt_recvv(s, &v, 0) == 0 ? v : NULL;
}

Test(nanomsg, a_vector_kept_by_fq_recv_wakes_a_blocked_fq_recvv)
{
	fq_socket *push = fqt_socket(tp(), FQ_PUSH), *pull = fqt_socket(tp(), FQ_PULL);
	fq_msg *m = NULL;
	pthread_t th;
	void *got;

	fqt_marry(pull, push, "inproc");
	cr_assert_eq(pthread_create(&th, NULL, recvv_main, pull), 0);
	send_parts(push, "v", "1");
	/* Whichever thread takes it from libnanomsg, the blocked fq_recvv ends with it. */
	(void)fqt_recv(pull, &m, FQ_DONTWAIT);
	cr_assert_null(m);
	cr_assert_eq(pthread_join(th, &got), 0);
	cr_assert_not_null(got, "the blocked fq_recvv did not get the vector");
	cr_assert(fqt_msg_is(fq_parts_at(got, 0), "v"));
	fq_parts_free(got);
}
