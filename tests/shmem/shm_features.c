/*
 * shmem transport features beyond the conformance suite: zero-copy (pointers, not bytes,
 * travel), segment growth and the total limit, a message of several GiB, region
 * acknowledgements, PUB/SUB with a slow and a fast subscriber, alignment, and refusals at
 * connect time (another transport, another host).
 */
#include "fq_test.h"
#include "transport/shmem/shm.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

TestSuite(shmem, .init = fqt_init, .fini = fqt_fini, .timeout = 120);

static fq_transport *open_shmem(const char *options)
{
	fq_transport *t = NULL;

	FQ_PASS(fq_transport_open(&t, "shmem", options));
	return t;
}

static shm_stats stats(fq_transport *t)
{
	shm_stats st;

	shm_node_stats(shm_node_of(t), &st);
	return st;
}

/* Every block of t is back (returned blocks may take one batch flush, bounded). */
static void expect_all_back(fq_transport *t)
{
	int64_t deadline = fqt_now_ms() + FQT_WAIT_MS;
	shm_stats st = stats(t);

	while (st.blocks_out != 0 && fqt_now_ms() < deadline) {
		fqt_pause();
		st = stats(t);
	}
	cr_assert(st.blocks_out == 0, "%llu blocks are still out",
	          (unsigned long long)st.blocks_out);
}

static void pair_up(fq_transport *t, fq_socket_type a, fq_socket_type b, fq_socket **sa,
                    fq_socket **sb)
{
	*sa = fqt_socket(t, a);
	*sb = fqt_socket(t, b);
	fqt_marry(*sb, *sa, "ipc");
}

Test(shmem, zero_copy_forwarding, .description = "a forwarded message keeps its bytes in place")
{
	fq_transport *t = open_shmem(NULL);
	fq_socket *a, *b, *c, *d;
	fq_msg *m = fqt_msg_pattern(t, 100 * KiB, 3), *r = NULL;
	void *where = fq_msg_data(m);

	pair_up(t, FQ_PUSH, FQ_PULL, &a, &b);
	pair_up(t, FQ_PUSH, FQ_PULL, &c, &d);
	FQ_PASS(fq_send(a, &m, 0));
	FQ_PASS(fqt_recv(b, &r, 0));
	cr_assert(fq_msg_data(r) == where, "the receiver got a copy, not the block");
	FQ_PASS(fq_send(c, &r, 0));
	FQ_PASS(fqt_recv(d, &r, 0));
	cr_assert(fq_msg_data(r) == where, "forwarding copied the message");
	fqt_msg_check(r, 100 * KiB, 3);
	fq_msg_free(r);
	fqt_close(a);
	fqt_close(b);
	fqt_close(c);
	fqt_close(d);
	expect_all_back(t);
	fq_transport_close(t);
}

Test(shmem, reclaim_scans_every_block,
     .description = "the reclaim scan walks past carved blocks that were never handed out")
{
	fq_transport *t = open_shmem(NULL);
	shm_node *n = shm_node_of(t);
	const pid_t dead = 0x3ffffff0; /* above pid_max: no such process */
	fq_msg *m[3];
	shm_blk *b;

	/* The first allocation carves a magazine's worth of blocks; the last one goes out
	 * first, so unused carved blocks lie before it in the segment. (300 bytes: above the
	 * small messages, which live in private memory.) */
	for (int i = 0; i < 3; i++)
		FQ_PASS(fq_msg_alloc(t, 300, &m[i]));
	b = ((shm_msg *)m[1])->ref->blk;
	atomic_store(&b->word, SHM_WORD(SHM_HELD, dead)); /* as if handed to a dead process */
	shm_reclaim_pid(n, dead);
	cr_assert(SHM_WORD_STATE(atomic_load(&b->word)) == SHM_FREE,
	          "a block held by a dead process was not taken back");
	cr_assert(stats(t).reclaimed_blocks == 1);
	for (int i = 0; i < 3; i++)
		fq_msg_free(m[i]); /* m[1] is no longer ours: its free is a no-op */
	expect_all_back(t);
	fq_transport_close(t);
}

Test(shmem, growth_and_limit, .description = "full segments add segments up to segment_limit")
{
	fq_transport *t = open_shmem("segment_size=1M,segment_limit=6M,alloc_timeout=50");
	fq_socket *push, *pull;
	fq_msg *held[200];
	size_t n = 0;
	int rc = 0;

	pair_up(t, FQ_PUSH, FQ_PULL, &push, &pull);
	FQ_PASS(fq_socket_set_int(push, "snd_hwm", 0));
	/* Hold messages until the limit refuses more: FQ_ENOMEM, no crash, no hang. */
	while (n < 200) {
		rc = fq_msg_alloc(t, 64 * KiB, &held[n]);
		if (rc != 0)
			break;
		n++;
	}
	FQ_FAIL(rc, FQ_ENOMEM);
	cr_assert(stats(t).segments >= 5, "only %llu segments for %zu blocks of 64 KiB",
	          (unsigned long long)stats(t).segments, n);
	cr_assert(stats(t).segment_bytes <= 6 * MiB);
	cr_log_info("growth: %zu blocks of 64 KiB in %llu segments of 1 MiB", n,
	            (unsigned long long)stats(t).segments);
	/* They travel, and the memory comes back for new messages. */
	for (size_t i = 0; i < n; i++) {
		fq_msg *r = NULL;

		memset(fq_msg_data(held[i]), (int)i, 64 * KiB);
		FQ_PASS(fq_send(push, &held[i], 0));
		FQ_PASS(fqt_recv(pull, &r, 0));
		cr_assert(((uint8_t *)fq_msg_data(r))[64 * KiB - 1] == (uint8_t)i);
		fq_msg_free(r);
	}
	expect_all_back(t);
	FQ_PASS(fq_msg_alloc(t, 64 * KiB, &held[0]));
	fq_msg_free(held[0]);
	fqt_close(push);
	fqt_close(pull);
	fq_transport_close(t);
}

Test(shmem, several_gib, .timeout = 240,
     .description = "a 5 GiB message travels without 5 GiB of memory being touched")
{
	fq_transport *t = open_shmem(NULL);
	const size_t size = 5 * GiB + 12345;
	fq_socket *push, *pull;
	fq_msg *m = NULL, *r = NULL;
	uint8_t *d;

	pair_up(t, FQ_PUSH, FQ_PULL, &push, &pull);
	FQ_PASS(fq_socket_set(pull, "max_msg_size", "0")); /* the default is 4G */
	FQ_PASS(fq_msg_alloc(t, size, &m));
	d = fq_msg_data(m);
	for (size_t off = 0; off < size; off += 256 * MiB)
		d[off] = (uint8_t)(off >> 28) + 1;
	d[size - 1] = 0xee;
	FQ_PASS(fq_send(push, &m, 0));
	FQ_PASS(fqt_recv(pull, &r, 0));
	cr_assert(fq_msg_size(r) == size, "received %zu bytes", fq_msg_size(r));
	d = fq_msg_data(r);
	for (size_t off = 0; off < size; off += 256 * MiB)
		cr_assert(d[off] == (uint8_t)((off >> 28) + 1), "marker at %zu", off);
	cr_assert(d[size - 1] == 0xee);
	cr_assert(d[size / 2 + 1] == 0, "untouched bytes read as zero");
	fq_msg_free(r);
	expect_all_back(t);
	fqt_close(push);
	fqt_close(pull);
	fq_transport_close(t);
}

static struct {
	pthread_mutex_t lock;
	int calls, acks;
	bool seen[200];
	bool bad;
	char *base;
} acks = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_acks(const fq_region_ack *a, size_t n, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&acks.lock);
	acks.calls++;
	for (size_t i = 0; i < n; i++) {
		uintptr_t k = (uintptr_t)a[i].hint;

		if (k >= 200 || acks.seen[k] || a[i].size != 1000 ||
		    (char *)a[i].data != acks.base + k * 1024)
			acks.bad = true;
		else
			acks.seen[k] = true;
		acks.acks++;
	}
	pthread_mutex_unlock(&acks.lock);
}

Test(shmem, region_acks, .description = "region messages are zero-copy and acked, in batches")
{
	fq_transport *t = open_shmem(NULL);
	fq_region *reg = NULL;
	fq_socket *push, *pull;
	fq_msg *got[200];
	int64_t deadline;

	/* The region exists before anybody connects. */
	FQ_PASS(fq_region_open(&reg, t, 256 * KiB, on_acks, NULL));
	acks.base = fq_region_data(reg);
	pair_up(t, FQ_PUSH, FQ_PULL, &push, &pull);
	for (uintptr_t i = 0; i < 200; i++) {
		fq_msg *m = NULL;
		char *p = acks.base + (i % 200) * 1024;

		memset(p, (int)i, 1000);
		FQ_PASS(fq_msg_from_region(reg, p, 1000, (void *)i, &m));
		FQ_PASS(fq_send(push, &m, 0));
		FQ_PASS(fqt_recv(pull, &got[i], 0));
		cr_assert(fq_msg_data(got[i]) == p, "a region message was copied");
	}
	pthread_mutex_lock(&acks.lock);
	cr_assert(acks.acks == 0, "acked before the receiver freed anything");
	pthread_mutex_unlock(&acks.lock);
	for (int i = 0; i < 200; i++)
		fq_msg_free(got[i]);
	deadline = fqt_now_ms() + FQT_WAIT_MS;
	for (;;) {
		pthread_mutex_lock(&acks.lock);
		if (acks.acks >= 200 || fqt_now_ms() > deadline)
			break;
		pthread_mutex_unlock(&acks.lock);
		fqt_pause();
	}
	cr_assert(acks.acks == 200 && !acks.bad, "%d acks (bad: %d)", acks.acks, acks.bad);
	cr_assert(acks.calls < 200, "%d callbacks for 200 acks: not batched", acks.calls);
	cr_log_info("region: 200 acks in %d callbacks", acks.calls);
	pthread_mutex_unlock(&acks.lock);
	fq_region_close(reg);
	fqt_close(push);
	fqt_close(pull);
	expect_all_back(t);
	fq_transport_close(t);
}

/* Bind pub, connect two subscribers to everything, wait until both are connected. */
static void pub_two_subs(fq_socket *pub, fq_socket *s1, fq_socket *s2)
{
	char url[FQT_URL_MAX];

	FQ_PASS(fq_socket_set(s1, "subscribe", ""));
	FQ_PASS(fq_socket_set(s2, "subscribe", ""));
	fqt_bind(pub, fqt_url("ipc", url));
	fqt_connect(s1, url);
	fqt_connect(s2, url);
	fqt_sync(pub, s1);
	fqt_sync(pub, s2);
}

Test(shmem, pubsub_slow_and_fast,
     .description = "a slow subscriber neither blocks the "
                    "publisher nor costs the fast one a message")
{
	fq_transport *t = open_shmem(NULL);
	fq_socket *pub = fqt_socket(t, FQ_PUB);
	fq_socket *fast = fqt_socket(t, FQ_SUB), *slow = fqt_socket(t, FQ_SUB);
	static void *where[20000];
	int slow_got = 0;

	FQ_PASS(fq_socket_set_int(fast, "rcv_hwm", 0));
	FQ_PASS(fq_socket_set_int(slow, "rcv_hwm", 10));
	FQ_PASS(fq_socket_set_int(pub, "snd_hwm", 10));
	pub_two_subs(pub, fast, slow);
	for (uint32_t i = 0; i < 20000; i++) {
		/* Above inline_max: the blocks themselves fan out. */
		fq_msg *m = fqt_msg_pattern(t, 300 + i % 200, i);

		memcpy(fq_msg_data(m), &i, sizeof(i));
		where[i] = fq_msg_data(m);
		FQ_PASS(fq_send(pub, &m, FQ_DONTWAIT)); /* never blocks, never fails */
	}
	for (uint32_t i = 0; i < 20000; i++) {
		fq_msg *r = NULL;
		uint32_t k;

		FQ_PASS(fqt_recv(fast, &r, 0));
		memcpy(&k, fq_msg_data(r), sizeof(k));
		cr_assert(k == i, "fast subscriber: message %u where %u was due", k, i);
		cr_assert(fq_msg_data(r) == where[i], "fan-out copied the bytes");
		fq_msg_free(r);
	}
	for (;;) {
		fq_msg *r = NULL;
		uint32_t k;

		if (fqt_recv(slow, &r, FQ_DONTWAIT) != 0)
			break;
		memcpy(&k, fq_msg_data(r), sizeof(k));
		cr_assert(fq_msg_data(r) == where[k], "fan-out copied the bytes");
		fq_msg_free(r);
		slow_got++;
	}
	cr_assert(slow_got > 0 && slow_got <= 10 + 10 + 5, "slow subscriber kept %d", slow_got);
	cr_log_info("pubsub: fast got 20000, slow kept %d", slow_got);
	fqt_close(pub);
	fqt_close(fast);
	fqt_close(slow);
	expect_all_back(t);
	fq_transport_close(t);
}

/*
 * Did r arrive as an inline copy? The receiving transport never sends, so a small message in
 * private memory or a block of its own under a received message is the copy of an inline
 * part; a block handed over lies in a segment of the sender.
 */
static bool arrived_inline(fq_msg *r)
{
	const shm_ref *ref = ((shm_msg *)r)->ref;

	return ref->small || (ref->map != NULL && ref->map->own);
}

/*
 * Send `count` messages of sizes 0 .. 400 (seq in the first bytes) from a (transport ts) to
 * b; parts up to the default inline_max (256) arrive inline when `inline_on`, larger ones
 * never.
 */
static void inline_round(fq_socket *a, fq_socket *b, fq_transport *ts, uint32_t count,
                         bool inline_on)
{
	for (uint32_t i = 0; i < count; i++) {
		size_t size = (i * 37) % 401;
		fq_msg *m = fqt_msg_pattern(ts, size, i), *r = NULL;

		FQ_PASS(fq_send(a, &m, 0));
		FQ_PASS(fqt_recv(b, &r, 0));
		fqt_msg_check(r, size, i);
		cr_assert(arrived_inline(r) == (inline_on && size <= 256),
		          "a %zu-byte part %s inline", size,
		          arrived_inline(r) ? "came" : "did not come");
		cr_assert(((uintptr_t)fq_msg_data(r) & 63) == 0, "a %zu-byte part is not aligned",
		          size);
		fq_msg_free(r);
	}
}

/* A sender of ts bound, a receiver of tr connected to it. */
static void cross_pair(fq_transport *ts, fq_transport *tr, fq_socket_type a, fq_socket_type b,
                       int64_t rcv_hwm, fq_socket **sa, fq_socket **sb)
{
	*sa = fqt_socket(ts, a);
	*sb = fqt_socket(tr, b);
	if (rcv_hwm >= 0)
		FQ_PASS(fq_socket_set_int(*sb, "rcv_hwm", rcv_hwm));
	fqt_marry(*sa, *sb, "ipc");
}

Test(shmem, inline_small_parts,
     .description = "parts up to inline_max travel inside the ring: bytes, order and alignment "
                    "kept, vectors mixed with blocks, the area wraps and fills, PUB, 0 turns it "
                    "off")
{
	fq_transport *ts = open_shmem(NULL), *tr = open_shmem(NULL);
	fq_transport *t0 = open_shmem("inline_max=0");
	fq_socket *a, *b, *b2;
	fq_parts *v = NULL;
	fq_msg *parts[5];
	const size_t sizes[5] = {0, 100, 4096, 1, 256};

	cross_pair(ts, tr, FQ_PUSH, FQ_PULL, -1, &a, &b);
	/* Sizes 0 .. 400 in turn: far more bytes than the area holds, so it wraps. */
	inline_round(a, b, ts, 20000, true);
	/* A vector of inline and block parts arrives whole and in order. */
	for (int i = 0; i < 5; i++)
		parts[i] = fqt_msg_pattern(ts, sizes[i], (uint32_t)i);
	FQ_PASS(fq_sendv(a, parts, 5, 0));
	FQ_PASS(fq_recvv(b, &v, 0));
	cr_assert(fq_parts_count(v) == 5);
	for (int i = 0; i < 5; i++) {
		fqt_msg_check(fq_parts_at(v, (size_t)i), sizes[i], (uint32_t)i);
		cr_assert(arrived_inline(fq_parts_at(v, (size_t)i)) == (sizes[i] <= 256));
	}
	fq_parts_free(v);
	fqt_close(a);
	fqt_close(b);

	/*
	 * A burst that the receiver does not read yet: a ring of 512 entries has an inline
	 * area of 32 KiB, which 256 such parts fill; the rest go by block, all in order.
	 */
	cross_pair(ts, tr, FQ_PUSH, FQ_PULL, 100, &a, &b);
	for (uint32_t i = 0; i < 500; i++) {
		fq_msg *m = fqt_msg_pattern(ts, 120, i);

		FQ_PASS(fq_send(a, &m, 0));
	}
	for (uint32_t i = 0, by_block = 0; i < 500; i++) {
		fq_msg *r = NULL;

		FQ_PASS(fqt_recv(b, &r, 0));
		fqt_msg_check(r, 120, i);
		by_block += !arrived_inline(r);
		fq_msg_free(r);
		if (i == 499)
			cr_assert(by_block > 0 && by_block < 500, "%u of 500 parts went by block",
			          by_block);
	}
	fqt_close(a);
	fqt_close(b);

	/*
	 * PUB to two subscribers that do not read yet, one with a small ring: the fast one
	 * gets every part inline, the small one the first ones inline, then by block (a copy:
	 * the parts are small messages in private memory), then none (PUB drops for a
	 * subscriber without room).
	 */
	a = fqt_socket(ts, FQ_PUB);
	b = fqt_socket(tr, FQ_SUB);
	b2 = fqt_socket(tr, FQ_SUB);
	FQ_PASS(fq_socket_set_int(b, "rcv_hwm", 0));
	FQ_PASS(fq_socket_set_int(b2, "rcv_hwm", 100));
	pub_two_subs(a, b, b2);
	for (uint32_t i = 0; i < 2000; i++) {
		fq_msg *m = fqt_msg_pattern(ts, 120, i);

		FQ_PASS(fq_send(a, &m, FQ_DONTWAIT));
	}
	for (uint32_t i = 0; i < 2000; i++) {
		fq_msg *r = NULL;

		FQ_PASS(fqt_recv(b, &r, 0));
		fqt_msg_check(r, 120, i);
		cr_assert(arrived_inline(r), "part %u to the fast subscriber did not come inline",
		          i);
		fq_msg_free(r);
	}
	{
		uint32_t got = 0, inl = 0;
		fq_msg *r = NULL;

		/* Nobody read: it has the first ones, in order, and then nothing. */
		while (fqt_recv(b2, &r, FQ_DONTWAIT) == 0) {
			fqt_msg_check(r, 120, got);
			inl += arrived_inline(r);
			got++;
			fq_msg_free(r);
		}
		cr_assert(got > 256 && got < 2000 && inl > 0 && inl < got,
		          "small subscriber: %u parts, %u inline", got, inl);
	}
	fqt_close(a);
	fqt_close(b);
	fqt_close(b2);
	expect_all_back(ts);
	expect_all_back(tr);

	/* inline_max=0: every part goes by block. */
	cross_pair(t0, tr, FQ_PUSH, FQ_PULL, -1, &a, &b);
	inline_round(a, b, t0, 400, false);
	fqt_close(a);
	fqt_close(b);
	expect_all_back(t0);
	fq_transport_close(t0);
	fq_transport_close(tr);
	fq_transport_close(ts);
}

/*
 * Blocks of one class held to fill a segment, given back by a thread a little later, after
 * it looked at the events of the socket whose send waits for them (which takes that
 * socket's lock: a send that waited with the lock held would never let it through).
 */
struct held_blocks {
	shm_map *map[8192];
	shm_blk *blk[8192];
	size_t n;
	fq_socket *waiting;
	int events;
};

static void *give_back_later(void *arg)
{
	struct held_blocks *h = arg;

	usleep(50 * 1000);
	h->events = fq_socket_events(h->waiting);
	for (size_t i = 0; i < h->n; i++) {
		shm_blk_release(h->map[i], h->blk[i]);
		shm_map_unref(h->map[i]);
	}
	return NULL;
}

Test(shmem, small_message_by_block_at_limit,
     .description = "a small message that has to go by block at segment_limit: FQ_ENOMEM at "
                    "once with FQ_DONTWAIT (still the caller's), sent when memory comes back "
                    "otherwise")
{
	fq_transport *ts = open_shmem("segment_size=1M,segment_limit=1M,alloc_timeout=-1");
	fq_transport *tr = open_shmem(NULL);
	struct held_blocks *h = calloc(1, sizeof(*h));
	fq_msg *m = NULL, *r = NULL;
	fq_socket *a, *b;
	pthread_t th;
	uint32_t sent = 0;
	int rc = 0;

	cr_assert(h != NULL);
	cross_pair(ts, tr, FQ_PUSH, FQ_PULL, 100, &a, &b);
	/* Nobody reads: 300 parts of 120 bytes fill the inline area (256 fit), the rest go by
	 * block (copies: the parts are small messages in private memory). */
	for (; sent < 300; sent++) {
		m = fqt_msg_pattern(ts, 120, sent);
		FQ_PASS(fq_send(a, &m, 0));
	}
	/* Hold every remaining block of the copies' class that the segment can give. */
	while (h->n < FQI_ARRAY_LEN(h->blk) && shm_alloc_nowait(shm_node_of(ts), SHM_BLK_DATA, 120,
	                                                        &h->map[h->n], &h->blk[h->n]) == 0)
		h->n++;
	cr_assert(h->n > 0 && h->n < FQI_ARRAY_LEN(h->blk), "%zu blocks held", h->n);
	/* A small message still allocates (private memory), but cannot go now; with
	 * alloc_timeout=-1 a send that waited for memory would never come back. */
	m = fqt_msg_pattern(ts, 120, sent);
	FQ_FAIL(fq_send(a, &m, FQ_DONTWAIT), FQ_ENOMEM);
	cr_assert(m != NULL, "a failed send took the message");
	fqt_msg_check(m, 120, sent);
	/* The send's own timeout bounds its wait for memory. */
	FQ_PASS(fq_socket_set_int(a, "snd_timeout", 50));
	FQ_FAIL(fq_send(a, &m, 0), FQ_ETIMEDOUT);
	cr_assert(m != NULL, "a timed-out send took the message");
	FQ_PASS(fq_socket_set_int(a, "snd_timeout", -1));
	/* Memory comes back while a blocking send waits for it (with the socket unlocked). */
	h->waiting = a;
	h->events = -1;
	rc = pthread_create(&th, NULL, give_back_later, h);
	cr_assert(rc == 0);
	FQ_PASS(fq_send(a, &m, 0));
	cr_assert(m == NULL);
	sent++;
	pthread_join(th, NULL);
	cr_assert(h->events >= 0, "fq_socket_events during the wait: %d", h->events);
	for (uint32_t i = 0; i < sent; i++) {
		FQ_PASS(fqt_recv(b, &r, 0));
		fqt_msg_check(r, 120, i);
		fq_msg_free(r);
	}
	FQ_FAIL(fqt_recv(b, &r, FQ_DONTWAIT), FQ_EAGAIN);
	free(h);
	fqt_close(a);
	fqt_close(b);
	expect_all_back(ts);
	fq_transport_close(ts);
	fq_transport_close(tr);
}

struct freeing {
	fq_msg *msgs[200];
	size_t n;
};

static void *free_all(void *arg)
{
	struct freeing *f = arg;

	for (size_t i = 0; i < f->n; i++)
		fq_msg_free(f->msgs[i]);
	f->n = 0;
	return NULL;
}

Test(shmem, freed_on_another_thread,
     .description = "messages and copies freed by a thread that never allocates, and then "
                    "exits: every block comes back (LeakSanitizer checks what the thread kept)")
{
	fq_transport *t = open_shmem(NULL);
	struct freeing f = {.n = 0};
	pthread_t th;

	for (uint32_t i = 0; i < 50; i++) {
		size_t size = i % 2 ? 100 : 100 * KiB; /* small messages and blocks */

		f.msgs[f.n] = fqt_msg_pattern(t, size, i);
		FQ_PASS(fq_msg_copy(f.msgs[f.n], &f.msgs[f.n + 1]));
		f.n += 2;
	}
	cr_assert(pthread_create(&th, NULL, free_all, &f) == 0);
	pthread_join(th, NULL);
	cr_assert(f.n == 0);
	expect_all_back(t);
	fq_transport_close(t);
}

Test(shmem, inline_parts_into_receiver_blocks,
     .description = "a receiver with inline_max=0 or alignment above 64 keeps no small "
                    "messages: received inline parts land in its own blocks, aligned as it "
                    "is configured")
{
	static const char *const options[] = {"inline_max=0", "alignment=256"};
	static const size_t align[] = {64, 256};
	fq_transport *ts = open_shmem(NULL);

	for (size_t k = 0; k < FQI_ARRAY_LEN(options); k++) {
		fq_transport *tr = open_shmem(options[k]);
		fq_socket *a, *b;

		cross_pair(ts, tr, FQ_PUSH, FQ_PULL, -1, &a, &b);
		for (uint32_t i = 0; i < 300; i++) {
			size_t size = (i * 37) % 257;
			fq_msg *m = fqt_msg_pattern(ts, size, i), *r = NULL;
			const shm_ref *ref;

			FQ_PASS(fq_send(a, &m, 0));
			FQ_PASS(fqt_recv(b, &r, 0));
			fqt_msg_check(r, size, i);
			ref = ((shm_msg *)r)->ref;
			cr_assert(!ref->small && ref->map != NULL && ref->map->own,
			          "%s: a %zu-byte inline part is not in a block of the receiver",
			          options[k], size);
			cr_assert((uintptr_t)fq_msg_data(r) % align[k] == 0, "%s: %zu bytes at %p",
			          options[k], size, fq_msg_data(r));
			fq_msg_free(r);
		}
		fqt_close(a);
		fqt_close(b);
		expect_all_back(tr);
		fq_transport_close(tr);
	}
	expect_all_back(ts);
	fq_transport_close(ts);
}

Test(shmem, large_blocks_without_magazines,
     .description = "blocks above 128 KiB (allocated under the lock, not from magazines) "
                    "travel zero-copy, are shared by copies and all come back")
{
	fq_transport *t = open_shmem(NULL);
	fq_socket *a, *b;

	pair_up(t, FQ_PUSH, FQ_PULL, &a, &b);
	for (uint32_t i = 0; i < 200; i++) {
		size_t size = 128 * KiB + (i % 7) * 100 * KiB;
		fq_msg *m = fqt_msg_pattern(t, size, i), *r = NULL, *c = NULL;
		void *where = fq_msg_data(m);

		FQ_PASS(fq_send(a, &m, 0));
		FQ_PASS(fqt_recv(b, &r, 0));
		cr_assert(fq_msg_data(r) == where, "a %zu-byte message was copied", size);
		FQ_PASS(fq_msg_copy(r, &c));
		fqt_msg_check(c, size, i);
		if (i % 2) {
			fq_msg_free(r);
			fq_msg_free(c);
		} else {
			fq_msg_free(c);
			fq_msg_free(r);
		}
	}
	fqt_close(a);
	fqt_close(b);
	expect_all_back(t);
	cr_assert(stats(t).used_bytes < 64 * KiB, "%llu bytes still used",
	          (unsigned long long)stats(t).used_bytes);
	fq_transport_close(t);
}

Test(shmem, alignment, .description = "message data is aligned as configured")
{
	static const size_t sizes[] = {0, 1, 63, 64, 65, 1000, 5000, 100000, 3 * MiB};
	fq_transport *t = open_shmem("alignment=4096");
	fq_transport *d = open_shmem(NULL);

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fq_msg *a = NULL, *b = NULL;

		FQ_PASS(fq_msg_alloc(t, sizes[i], &a));
		FQ_PASS(fq_msg_alloc(d, sizes[i], &b));
		cr_assert((uintptr_t)fq_msg_data(a) % 4096 == 0, "%zu bytes: %p", sizes[i],
		          fq_msg_data(a));
		cr_assert((uintptr_t)fq_msg_data(b) % 64 == 0, "%zu bytes: %p", sizes[i],
		          fq_msg_data(b));
		fq_msg_free(a);
		fq_msg_free(b);
	}
	fq_transport_close(t);
	fq_transport_close(d);
	{
		fq_transport *bad = NULL;

		FQ_FAIL(fq_transport_open(&bad, "shmem", "alignment=100"), FQ_EINVAL);
	}
}

Test(shmem, refused_at_connect,
     .description = "another host or another transport: an error "
                    "at connect time")
{
	fq_transport *t = open_shmem(NULL);
	fq_socket *s = fqt_socket(t, FQ_PUSH);

	/* 192.0.2.1 (TEST-NET-1) is nobody's address here. */
	FQ_FAIL(fq_connect(s, "tcp://192.0.2.1:5555"), FQ_EMISMATCH);
	FQ_FAIL(fq_bind(s, "tcp://192.0.2.1:5555"), FQ_EADDRINVAL);
	FQ_FAIL(fq_connect(s, "inproc://x"), FQ_EADDRINVAL);
#ifdef FQT_HAVE_ZEROMQ
	{
		fq_transport *z = fqt_transport_open("zeromq");
		fq_socket *zs = fqt_socket(z, FQ_PULL);
		char url[FQT_URL_MAX];

		fqt_bind(zs, fqt_url("ipc", url));
		FQ_FAIL(fq_connect(s, url), FQ_EMISMATCH);
		fqt_bind(zs, fqt_url("tcp", url));
		FQ_FAIL(fq_connect(s, url), FQ_EMISMATCH);
	}
#endif
	fqt_close(s);
	fq_transport_close(t);
}

/* ---- A hostile peer: raw control messages and ring entries ---------------------------------- */

static atomic_int hostile_warnings;

static void count_hostile(fq_log_level level, const char *subsys, const char *msg, void *arg)
{
	(void)subsys;
	(void)msg;
	(void)arg;
	if (level <= FQ_LOG_WARN)
		atomic_fetch_add(&hostile_warnings, 1);
}

struct hostile {
	int fd;
	shm_ring *ring; /* the victim's inbound ring, which we produce into */
	size_t ring_size;
	int victim_efd_in;
};

static int sendfds(int fd, const void *buf, size_t len, const int *fds, int n)
{
	char cbuf[CMSG_SPACE(3 * sizeof(int))];
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	memset(cbuf, 0, sizeof(cbuf));
	if (n > 0) {
		struct cmsghdr *c;

		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)n * sizeof(int));
	}
	return (int)sendmsg(fd, &mh, MSG_NOSIGNAL);
}

static int sealed_memfd(size_t size)
{
	int fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	cr_assert(fd >= 0);
	cr_assert(ftruncate(fd, (off_t)size) == 0);
	cr_assert(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0);
	return fd;
}

/* Connect to path as a PUSH peer; with `hello`, complete the handshake like a real peer. */
static struct hostile hostile_connect(const char *path, bool hello, uint32_t type)
{
	struct hostile h = {.fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char cbuf[CMSG_SPACE(4 * sizeof(int))];
	ctl_msg m;
	struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	int fds[3];
	struct timeval tv = {.tv_sec = 5};

	cr_assert(h.fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert(connect(h.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s", path);
	if (!hello)
		return h;
	setsockopt(h.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert(recvmsg(h.fd, &mh, MSG_CMSG_CLOEXEC) > 0, "no HELLO from the victim");
	memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(fds));
	h.ring_size = (size_t)lseek(fds[0], 0, SEEK_END);
	h.ring = mmap(NULL, h.ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	cr_assert(h.ring != MAP_FAILED);
	h.victim_efd_in = fds[1];
	close(fds[0]);
	close(fds[2]);
	memset(&m, 0, sizeof(m));
	m.magic = CTL_MAGIC;
	m.type = CTL_HELLO;
	m.version = SHM_VERSION;
	m.sock_type = type;
	m.node_id = 42;
	m.pid = (uint32_t)getpid();
	fds[0] = sealed_memfd(1 << 16);
	fds[1] = eventfd(0, EFD_CLOEXEC);
	fds[2] = eventfd(0, EFD_CLOEXEC);
	{
		shm_ring *r = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);

		r->magic = SHM_RING_MAGIC;
		r->cap = 256;
		r->ioff = 1 << 14; /* past the 256 entries */
		r->icap = SHM_INL_AREA_MIN;
		munmap(r, 1 << 16);
	}
	cr_assert(sendfds(h.fd, &m, offsetof(ctl_msg, text), fds, 3) > 0);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	return h;
}

static void hostile_close(struct hostile *h)
{
	if (h->ring != NULL)
		munmap(h->ring, h->ring_size);
	if (h->victim_efd_in > 0)
		close(h->victim_efd_in);
	close(h->fd);
}

/* Publish one entry into the victim's ring. */
static void hostile_publish(struct hostile *h, shm_ent e, uint64_t advance)
{
	uint64_t head = atomic_load(&h->ring->head);

	h->ring->ent[head & (h->ring->cap - 1)] = e;
	atomic_store(&h->ring->head, head + advance);
	eventfd_write(h->victim_efd_in, 1);
}

/* The victim still serves a well-behaved peer, and logged the bad one. */
static void still_serves(fq_socket *good, fq_socket *pull, const char *what)
{
	int64_t deadline = fqt_now_ms() + FQT_WAIT_MS;

	fqt_send_str(good, what);
	fqt_recv_str(pull, what);
	/* Bad ring entries are found by a receiving call that visits that peer. */
	while (atomic_load(&hostile_warnings) == 0 && fqt_now_ms() < deadline) {
		fq_msg *m = NULL;

		cr_assert(fq_recv(pull, &m, FQ_DONTWAIT) == FQ_EAGAIN, "%s: something arrived",
		          what);
		fqt_pause();
	}
	cr_assert(atomic_load(&hostile_warnings) > 0, "%s: the drop was not logged", what);
	atomic_store(&hostile_warnings, 0);
}

Test(shmem, hostile_peer,
     .description = "garbage from a peer drops that peer, logged; the "
                    "others are served and nothing crashes")
{
	fq_transport *t = open_shmem(NULL);
	fq_socket *pull = fqt_socket(t, FQ_PULL), *good = fqt_socket(t, FQ_PUSH);
	char url[FQT_URL_MAX];
	const char *path;
	struct hostile h;
	shm_ent e;

	fqt_bind(pull, fqt_url("ipc", url));
	path = url + strlen("ipc://");
	fqt_connect(good, url);
	fqt_sync(good, pull);
	fq_log_set_handler(count_hostile, NULL);
	fq_log_set_level(FQ_LOG_WARN);

	/* Bytes that are no control message at all. */
	h = hostile_connect(path, false, 0);
	cr_assert(send(h.fd, "garbage!", 8, MSG_NOSIGNAL) == 8);
	still_serves(good, pull, "after garbage");
	hostile_close(&h);

	/* A HELLO from a socket type that cannot talk to PULL. */
	h = hostile_connect(path, true, FQ_SUB);
	still_serves(good, pull, "after a wrong type");
	hostile_close(&h);

	/* Handles into segments never announced, and outside any segment. */
	h = hostile_connect(path, true, FQ_PUSH);
	e = (shm_ent){.seg = 7, .dseg = 7, .blk = (1ULL << 48) | 4096, .doff = 4160, .size = 10};
	hostile_publish(&h, e, 1);
	still_serves(good, pull, "after an unknown segment");
	hostile_close(&h);

	/* A vector that claims more parts than were published, and a head beyond the ring. */
	h = hostile_connect(path, true, FQ_PUSH);
	e = (shm_ent){.seg = 0, .dseg = 0, .blk = (200ULL << 48) | 4096, .size = 10};
	hostile_publish(&h, e, 1);
	still_serves(good, pull, "after a short vector");
	hostile_close(&h);
	h = hostile_connect(path, true, FQ_PUSH);
	e = (shm_ent){.seg = 0, .blk = (1ULL << 48) | 4096, .size = 10};
	hostile_publish(&h, e, 1000000);
	still_serves(good, pull, "after a wild head");
	hostile_close(&h);

	/* An inline part across the end of the inline area, and one larger than the area. */
	h = hostile_connect(path, true, FQ_PUSH);
	e = (shm_ent){
	    .seg = SHM_SEG_INLINE, .blk = 1ULL << 48, .doff = (1ULL << 20) - 8, .size = 64};
	hostile_publish(&h, e, 1);
	still_serves(good, pull, "after an inline part across the area's end");
	hostile_close(&h);
	h = hostile_connect(path, true, FQ_PUSH);
	e = (shm_ent){.seg = SHM_SEG_INLINE, .blk = 1ULL << 48, .size = (uint64_t)1 << 40};
	hostile_publish(&h, e, 1);
	still_serves(good, pull, "after a huge inline part");
	hostile_close(&h);

	/* A segment announcement with a memfd that anyone could shrink (not sealed). */
	h = hostile_connect(path, true, FQ_PUSH);
	{
		ctl_msg m;
		int fd = memfd_create("unsealed", MFD_CLOEXEC);

		cr_assert(ftruncate(fd, 1 << 20) == 0);
		memset(&m, 0, sizeof(m));
		m.magic = CTL_MAGIC;
		m.type = CTL_SEG;
		m.version = SHM_VERSION;
		m.idx = 0;
		cr_assert(sendfds(h.fd, &m, offsetof(ctl_msg, text), &fd, 1) > 0);
		close(fd);
		e = (shm_ent){
		    .seg = 0, .dseg = 0, .blk = (1ULL << 48) | 4096, .doff = 4160, .size = 8};
		hostile_publish(&h, e, 1);
	}
	still_serves(good, pull, "after an unsealed segment");
	hostile_close(&h);

	fq_log_set_handler(NULL, NULL);
	fqt_close(good);
	fqt_close(pull);
	expect_all_back(t);
	fq_transport_close(t);
}

/* ---- Regressions from review ------------------------------------------------------------- */

static atomic_int late_acks;

static void count_acks(const fq_region_ack *a, size_t n, void *arg)
{
	(void)a;
	(void)arg;
	atomic_fetch_add(&late_acks, (int)n);
}

Test(shmem, region_closed_with_messages_out,
     .description = "closing a region while its messages are out: acks still come, no hang")
{
	fq_transport *t = open_shmem(NULL);
	fq_region *reg = NULL;
	fq_socket *push, *pull;
	fq_msg *m = NULL, *r = NULL;
	int64_t deadline;

	FQ_PASS(fq_region_open(&reg, t, 64 * KiB, count_acks, NULL));
	pair_up(t, FQ_PUSH, FQ_PULL, &push, &pull);
	FQ_PASS(fq_msg_from_region(reg, fq_region_data(reg), 100, NULL, &m));
	FQ_PASS(fq_send(push, &m, 0));
	FQ_PASS(fqt_recv(pull, &r, 0));
	fq_region_close(reg); /* the message still points into it */
	fq_msg_free(r);
	deadline = fqt_now_ms() + FQT_WAIT_MS;
	while (atomic_load(&late_acks) == 0 && fqt_now_ms() < deadline)
		fqt_pause();
	cr_assert(atomic_load(&late_acks) == 1);
	fqt_close(push);
	fqt_close(pull);
	fq_transport_close(t); /* returned: the I/O thread is not stuck */
}

struct intr_arg {
	fq_socket *s;
	int delay_ms;
};

static void *interrupt_later(void *arg)
{
	struct intr_arg *a = arg;

	usleep((useconds_t)a->delay_ms * 1000);
	fq_socket_interrupt(a->s);
	return NULL;
}

Test(shmem, interrupt_wakes_poller, .description = "fq_socket_interrupt ends fq_poller_wait")
{
	fq_transport *t = open_shmem(NULL);
	fq_socket *push, *pull;
	fq_poller *p = NULL;
	struct intr_arg a;
	pthread_t th;
	int64_t t0;

	pair_up(t, FQ_PUSH, FQ_PULL, &push, &pull);
	FQ_PASS(fq_poller_open(&p));
	FQ_PASS(fq_poller_add(p, pull, FQ_POLLIN));
	a = (struct intr_arg){pull, 100};
	cr_assert(pthread_create(&th, NULL, interrupt_later, &a) == 0);
	t0 = fqt_now_ms();
	FQ_FAIL(fq_poller_wait(p, 5000), FQ_EINTR);
	cr_assert(fqt_now_ms() - t0 < 2000, "took %lld ms", (long long)(fqt_now_ms() - t0));
	pthread_join(th, NULL);
	FQ_FAIL(fq_socket_events(pull), FQ_EINTR);
	fq_socket_resume(pull);
	fq_poller_close(p);
	fqt_close(push);
	fqt_close(pull);
	fq_transport_close(t);
}

struct slow_sender {
	fq_socket *s;
	fq_transport *t;
};

static void *send_three(void *arg)
{
	struct slow_sender *ss = arg;

	for (int i = 0; i < 3; i++) {
		fq_msg *m = fqt_msg_str(ss->t, "tick");

		usleep(50000);
		if (fq_send(ss->s, &m, 0) != 0)
			fq_msg_free(m);
	}
	return NULL;
}

Test(shmem, fd_loop_does_not_spin,
     .description = "poll(fq_socket_fd) + receive until FQ_EAGAIN wakes once per message")
{
	fq_transport *t = open_shmem(NULL);
	fq_socket *push, *pull;
	struct slow_sender ss;
	pthread_t th;
	int fd, got = 0, wakeups = 0;
	int64_t deadline;

	pair_up(t, FQ_PUSH, FQ_PULL, &push, &pull);
	FQ_PASS(fq_socket_fd(pull, &fd));
	ss = (struct slow_sender){push, t};
	cr_assert(pthread_create(&th, NULL, send_three, &ss) == 0);
	deadline = fqt_now_ms() + FQT_WAIT_MS;
	while (got < 3 && fqt_now_ms() < deadline) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		fq_msg *m = NULL;

		if (poll(&pfd, 1, 1000) > 0)
			wakeups++;
		while (fq_recv(pull, &m, FQ_DONTWAIT) == 0) {
			got++;
			fq_msg_free(m);
		}
	}
	pthread_join(th, NULL);
	cr_assert(got == 3);
	cr_assert(wakeups <= 20, "%d wake-ups for 3 messages: the fd stays readable", wakeups);
	fqt_close(push);
	fqt_close(pull);
	fq_transport_close(t);
}

Test(shmem, bind_keeps_other_files, .description = "bind never deletes a file that is no socket")
{
	fq_transport *t = open_shmem(NULL);
	fq_socket *s = fqt_socket(t, FQ_PULL);
	char url[FQT_URL_MAX];
	const char *path;
	FILE *fp;

	fqt_url("ipc", url);
	path = url + strlen("ipc://");
	fp = fopen(path, "w");
	cr_assert(fp != NULL);
	fputs("precious", fp);
	fclose(fp);
	FQ_FAIL(fq_bind(s, url), FQ_EADDRINUSE);
	cr_assert(access(path, F_OK) == 0, "bind deleted %s", path);
	unlink(path);
	fqt_close(s);
	fq_transport_close(t);
}

#include <sys/resource.h>

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

Test(shmem, req_poll_does_not_spin,
     .description = "a poller waiting on an awaiting REQ sleeps (peers changed meanwhile)")
{
	fq_transport *t = open_shmem(NULL);
	fq_socket *req = fqt_socket(t, FQ_REQ), *rep1 = fqt_socket(t, FQ_REP);
	fq_socket *rep2 = fqt_socket(t, FQ_REP);
	char u1[FQT_URL_MAX], u2[FQT_URL_MAX];
	fq_poller *p = NULL;
	double cpu;

	fqt_bind(rep1, fqt_url("ipc", u1));
	fqt_bind(rep2, fqt_url("ipc", u2));
	fqt_connect(req, u1);
	fqt_send_str(req, "question");
	fqt_connect(req, u2); /* a peer change while the REQ awaits its reply */
	FQ_PASS(fq_poller_open(&p));
	FQ_PASS(fq_poller_add(p, req, FQ_POLLIN));
	cpu = cpu_seconds();
	FQ_PASS(fq_poller_wait(p, 500)); /* no reply comes: 0 ready after 500 ms */
	cpu = cpu_seconds() - cpu;
	cr_assert(cpu < 0.2, "the poller burnt %.2f s of CPU in 0.5 s", cpu);
	fq_poller_close(p);
	fqt_close(req);
	fqt_close(rep1);
	fqt_close(rep2);
	fq_transport_close(t);
}

Test(shmem, many_subscriptions,
     .description = "150 subscriptions of 1000 bytes all reach a PUB "
                    "of the same transport")
{
	fq_transport *t = open_shmem(NULL);
	fq_socket *pub = fqt_socket(t, FQ_PUB), *sub = fqt_socket(t, FQ_SUB);
	char url[FQT_URL_MAX], topic[1001];
	bool seen[150] = {false};
	int got = 0;
	int64_t deadline;

	for (int i = 0; i < 150; i++) {
		memset(topic, 'a' + i % 26, 1000);
		snprintf(topic, 5, "%03d", i);
		topic[3] = '-';
		topic[1000] = '\0';
		FQ_PASS(fq_socket_set(sub, "subscribe", topic));
	}
	fqt_bind(pub, fqt_url("ipc", url));
	fqt_connect(sub, url);
	/* Publish every topic until each has arrived once (subscriptions travel meanwhile). */
	deadline = fqt_now_ms() + FQT_WAIT_MS;
	while (got < 150 && fqt_now_ms() < deadline) {
		for (int i = 0; i < 150; i++) {
			fq_msg *m = NULL;

			memset(topic, 'a' + i % 26, 1000);
			snprintf(topic, 5, "%03d", i);
			topic[3] = '-';
			FQ_PASS(fq_msg_alloc(t, 1000, &m));
			memcpy(fq_msg_data(m), topic, 1000);
			FQ_PASS(fq_send(pub, &m, 0));
		}
		for (;;) {
			fq_msg *r = NULL;
			int k;

			if (fq_recv(sub, &r, FQ_DONTWAIT) != 0)
				break;
			k = atoi((const char *)fq_msg_data(r));
			if (k >= 0 && k < 150 && !seen[k]) {
				seen[k] = true;
				got++;
			}
			fq_msg_free(r);
		}
		fqt_pause();
	}
	cr_assert(got == 150, "only %d of 150 subscribed topics arrived", got);
	fqt_close(pub);
	fqt_close(sub);
	fq_transport_close(t);
}
