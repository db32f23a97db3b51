/*
 * Raw shared-memory ring baseline of the fq-bench patterns (see baseline_ring.h): what two
 * processes on this machine can do at best when they pass messages through shared memory
 * without a library, as a fabriq shared-memory transport does, moving handles and leaving the
 * payload where it is.
 *
 * One file (the memfd the parent created, inherited as "memfd://FD") holds, page-aligned:
 *
 *   header  magic, the layout and the run's size and parts (the two sides check they agree)
 *   ring 0  sender -> receiver (thr), pinger -> ponger (lat)
 *   ring 1  ponger -> pinger (lat only)
 *   pool    thr: one buffer per ring slot; lat: one buffer per part
 *
 * A ring is a single-producer/single-consumer queue of 32-byte entries (a handle: offset and
 * size of the part's buffer, part count on a message's first entry, sequence number), a power
 * of two of them. The producer's index (head) and the consumer's (tail) each sit alone on a
 * 128-byte line pair (adjacent-line prefetchers pull lines in pairs), apart from the entries;
 * each side keeps its own index privately and a cached copy of the other's, re-read only when
 * the ring looks full (producer) or empty (consumer). A message of P parts is P entries
 * published by one store of head (release); the consumer frees them by one store of tail. Both
 * sides busy-poll (a pause instruction per poll); every 128 unsuccessful polls (a few
 * microseconds, far more than a handoff between two CPUs) they look at the clock (a silent
 * peer ends the run after the role's timeout) and yield the CPU: nothing is lost when each side
 * has its own CPU, and a peer that shares it gets to run.
 *
 * thr: the sender takes the buffer of the next slot (slot i's buffer is free again once the
 * receiver has moved past slot i: the ring's free list is the ring itself), writes its first
 * and last byte, as the fabriq and libzmq senders do, and publishes the handle; the receiver
 * reads the handles, not the payload, as the fabriq receiver does. lat: the pinger publishes the
 * handles of its buffers on ring 0, the ponger copies them to ring 1. The end marker is one
 * entry whose size is fqb_marker_size(size).
 *
 * Capacity: --hwm messages (default 1000, as fabriq's and libzmq's) times the parts, rounded up
 * to a power of two, then halved while the pool would exceed 256 MiB (it is never below two
 * messages). The file is sparse: only the pages written are memory.
 */
#include "baseline_ring.h"

#include <errno.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RING_MAGIC   0x31474e4952425146ULL /* "FQBRING1" */
#define RING_LINE    128u
#define RING_PAGE    4096u
#define RING_CAP_MAX (1u << 20)
#define POOL_BUDGET  ((uint64_t)256 << 20)
#define DEFAULT_HWM  1000u
#define SPIN_CHECK   127u /* polls between two looks at the clock (a power of two minus 1) */
#define WARMUP       100  /* lat: round trips before the timed ones, as the other roles */

typedef struct ring_ent {
	uint64_t off;   /* buffer offset in the file */
	uint64_t size;  /* bytes */
	uint32_t parts; /* first entry of a message: its part count; 0 on the others */
	uint32_t pad;
	uint64_t seq; /* message number */
} ring_ent;
_Static_assert(sizeof(ring_ent) == 32, "a ring entry is 32 bytes, as a shmem transport one");

typedef struct ring {
	alignas(RING_LINE) _Atomic uint64_t head; /* written by the producer only */
	alignas(RING_LINE) _Atomic uint64_t tail; /* written by the consumer only */
	alignas(RING_LINE) ring_ent ent[];
} ring;

typedef struct layout {
	uint64_t pattern, size, parts;
	uint64_t cap; /* entries per ring, a power of two */
	uint64_t stride, nbuf;
	uint64_t ring_off[2], pool_off, total;
} layout;

typedef struct ring_hdr {
	_Atomic uint64_t magic; /* written last by the binding side */
	layout l;
} ring_hdr;
_Static_assert(sizeof(ring_hdr) <= RING_PAGE, "the header fits its page");

/* One side's mapping. */
typedef struct rside {
	int fd;
	char *base;
	layout l;
} rside;

/* Private ends of a ring: own index, cached copy of the other side's. */
typedef struct prod {
	ring *r;
	uint64_t cap, mask, head, tail_seen;
} prod;

typedef struct cons {
	ring *r;
	uint64_t mask, tail, head_seen;
} cons;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

static uint64_t pow2_at_least(uint64_t v)
{
	uint64_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

int fqb_ring_create(void)
{
	return memfd_create("fq-bench-ring", MFD_CLOEXEC);
}

/* ---- Layout and mapping ----------------------------------------------------------------- */

static int plan(const fqb_role_args *a, fqb_pattern pattern, layout *l)
{
	const uint64_t min_cap = pow2_at_least(2 * (uint64_t)a->parts);
	uint64_t ring_bytes, pool_bytes;

	memset(l, 0, sizeof(*l));
	l->pattern = pattern;
	l->size = a->size;
	l->parts = a->parts;
	if (a->size > ((uint64_t)1 << 48)) {
		fqb_report_error("ring: %zu-byte parts are beyond the ring's reach", a->size);
		return -1;
	}
	l->stride = align_up(a->size ? a->size : 1, 64);
	if (pattern == FQB_THR) {
		uint64_t hwm = a->hwm < 0    ? DEFAULT_HWM
		               : a->hwm == 0 ? RING_CAP_MAX
		                             : (uint64_t)a->hwm;
		uint64_t want = hwm * a->parts;

		l->cap = pow2_at_least(want < RING_CAP_MAX ? want : RING_CAP_MAX);
		while (l->cap > min_cap && l->cap * l->stride > POOL_BUDGET)
			l->cap >>= 1;
		if (l->cap < min_cap)
			l->cap = min_cap;
		l->nbuf = l->cap;
	} else {
		l->cap = min_cap;
		l->nbuf = a->parts;
	}
	if (l->stride > (UINT64_MAX >> 2) / l->nbuf) {
		fqb_report_error("ring: a pool of %llu x %zu bytes is beyond reach",
		                 (unsigned long long)l->nbuf, a->size);
		return -1;
	}
	pool_bytes = align_up(l->nbuf * l->stride, RING_PAGE);
	ring_bytes = align_up(offsetof(ring, ent) + l->cap * sizeof(ring_ent), RING_PAGE);
	l->ring_off[0] = RING_PAGE;
	l->ring_off[1] = pattern == FQB_LAT ? RING_PAGE + ring_bytes : 0;
	l->pool_off = RING_PAGE + ring_bytes * (pattern == FQB_LAT ? 2 : 1);
	l->total = l->pool_off + pool_bytes;
	if ((uint64_t)(size_t)l->total != l->total || (uint64_t)(off_t)l->total != l->total) {
		fqb_report_error("ring: a %llu-byte file is beyond reach",
		                 (unsigned long long)l->total);
		return -1;
	}
	return 0;
}

static int parse_fd(const char *url)
{
	return fqb_parse_fd_url(url, FQB_RING_SCHEME);
}

static void rside_close(rside *s)
{
	if (s->base != NULL && s->base != MAP_FAILED)
		munmap(s->base, (size_t)s->l.total);
	if (s->fd >= 0)
		close(s->fd);
	s->base = NULL;
	s->fd = -1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * Map the file of a->url. The binding side empties it, sizes it, writes the header and reports
 * the URL; the other side waits (up to its timeout) for a header that matches its own plan.
 */
static int rside_open(rside *s, const fqb_role_args *a, fqb_pattern pattern)
{
	uint64_t deadline = fqb_now_ns() + (uint64_t)a->timeout_ms * 1000000u;
	ring_hdr *h;

	s->base = NULL;
	s->fd = parse_fd(a->url);
	if (s->fd < 0) {
		fqb_report_error("ring: bad url '%s' (%s://FD, an inherited descriptor)", a->url,
		                 FQB_RING_SCHEME);
		return -1;
	}
	if (plan(a, pattern, &s->l) != 0)
		goto fail;
	if (a->bind) {
		/* Truncating first clears whatever an earlier run left in a reused file. */
		if (ftruncate(s->fd, 0) != 0 || ftruncate(s->fd, (off_t)s->l.total) != 0) {
			fqb_report_error("ring: sizing %s to %llu bytes: %s", a->url,
			                 (unsigned long long)s->l.total, strerror(errno));
			goto fail;
		}
	} else {
		struct stat st;

		for (;;) {
			if (fstat(s->fd, &st) != 0) {
				fqb_report_error("ring: %s: %s", a->url, strerror(errno));
				goto fail;
			}
			if ((uint64_t)st.st_size >= s->l.total)
				break;
			if (fqb_now_ns() >= deadline) {
				fqb_report_error("ring: %s is %lld bytes, not the %llu of this run",
				                 a->url, (long long)st.st_size,
				                 (unsigned long long)s->l.total);
				goto fail;
			}
			sleep_ms(1);
		}
	}
	s->base = mmap(NULL, (size_t)s->l.total, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		fqb_report_error("ring: mmap of %llu bytes: %s", (unsigned long long)s->l.total,
		                 strerror(errno));
		goto fail;
	}
	h = (ring_hdr *)s->base;
	if (a->bind) {
		h->l = s->l;
		atomic_store_explicit(&h->magic, RING_MAGIC, memory_order_release);
		fqb_report_url(a->url);
		return 0;
	}
	while (atomic_load_explicit(&h->magic, memory_order_acquire) != RING_MAGIC) {
		if (fqb_now_ns() >= deadline) {
			fqb_report_error("ring: the binding side never laid out %s", a->url);
			goto fail;
		}
		sleep_ms(1);
	}
	if (memcmp(&h->l, &s->l, sizeof(s->l)) != 0) {
		fqb_report_error("ring: the two sides disagree on the layout (size, parts, hwm?)");
		goto fail;
	}
	return 0;
fail:
	rside_close(s);
	return -1;
}

static ring *rside_ring(const rside *s, int i)
{
	return (ring *)(s->base + s->l.ring_off[i]);
}

static void prod_init(prod *p, const rside *s, int i)
{
	p->r = rside_ring(s, i);
	p->cap = s->l.cap;
	p->mask = s->l.cap - 1;
	p->head = atomic_load_explicit(&p->r->head, memory_order_relaxed);
	p->tail_seen = atomic_load_explicit(&p->r->tail, memory_order_acquire);
}

static void cons_init(cons *c, const rside *s, int i)
{
	c->r = rside_ring(s, i);
	c->mask = s->l.cap - 1;
	c->tail = atomic_load_explicit(&c->r->tail, memory_order_relaxed);
	c->head_seen = atomic_load_explicit(&c->r->head, memory_order_acquire);
}

/* ---- Waiting ---------------------------------------------------------------------------- */

/* Every SPIN_CHECK + 1 polls: true once the peer has been silent for timeout_ms. */
static bool peer_silent(uint64_t *deadline, int timeout_ms)
{
	uint64_t now = fqb_now_ns();

	if (*deadline == 0)
		*deadline = now + (uint64_t)timeout_ms * 1000000u;
	else if (now >= *deadline)
		return true;
	sched_yield(); /* a peer on the same CPU gets it; alone on its CPU, a no-op */
	return false;
}

static __attribute__((noinline)) int prod_wait_slow(prod *p, uint64_t need, int timeout_ms)
{
	uint64_t deadline = 0;

	for (uint32_t n = 1;; n++) {
		cpu_relax();
		p->tail_seen = atomic_load_explicit(&p->r->tail, memory_order_acquire);
		if (p->cap - (p->head - p->tail_seen) >= need)
			return 0;
		if ((n & SPIN_CHECK) == 0 && peer_silent(&deadline, timeout_ms))
			return -1;
	}
}

/* Room for `need` entries; 0, or -1 when the consumer has been silent for timeout_ms. */
static inline int prod_wait(prod *p, uint64_t need, int timeout_ms)
{
	if (p->cap - (p->head - p->tail_seen) >= need)
		return 0;
	p->tail_seen = atomic_load_explicit(&p->r->tail, memory_order_acquire);
	if (p->cap - (p->head - p->tail_seen) >= need)
		return 0;
	return prod_wait_slow(p, need, timeout_ms);
}

static inline ring_ent *prod_slot(const prod *p, uint64_t j)
{
	return &p->r->ent[(p->head + j) & p->mask];
}

static inline void prod_publish(prod *p, uint64_t n)
{
	p->head += n;
	atomic_store_explicit(&p->r->head, p->head, memory_order_release);
}

static __attribute__((noinline)) int cons_wait_slow(cons *c, int timeout_ms)
{
	uint64_t deadline = 0;

	for (uint32_t n = 1;; n++) {
		cpu_relax();
		c->head_seen = atomic_load_explicit(&c->r->head, memory_order_acquire);
		if (c->head_seen != c->tail)
			return 0;
		if ((n & SPIN_CHECK) == 0 && peer_silent(&deadline, timeout_ms))
			return -1;
	}
}

/*
 * The next message's first entry; NULL when the producer has been silent for timeout_ms. The
 * producer publishes whole messages, so all its parts are there too.
 */
static inline const ring_ent *cons_wait(cons *c, int timeout_ms)
{
	if (c->head_seen == c->tail) {
		c->head_seen = atomic_load_explicit(&c->r->head, memory_order_acquire);
		if (c->head_seen == c->tail && cons_wait_slow(c, timeout_ms) != 0)
			return NULL;
	}
	return &c->r->ent[c->tail & c->mask];
}

static inline void cons_release(cons *c, uint64_t n)
{
	c->tail += n;
	atomic_store_explicit(&c->r->tail, c->tail, memory_order_release);
}

/*
 * What the first entry `e` starts: 1 a message of the run's size and parts, 0 the end marker,
 * -1 anything else (reported).
 */
static int classify(const ring_ent *e, const fqb_role_args *a, uint64_t avail)
{
	if (e->size == a->size && e->parts == a->parts && avail >= a->parts)
		return 1;
	if (e->parts == 1 && e->size == fqb_marker_size(a->size))
		return 0;
	fqb_report_error("ring: unexpected message: %u parts, first of %llu bytes", e->parts,
	                 (unsigned long long)e->size);
	return -1;
}

static int push_marker(prod *p, const fqb_role_args *a, uint64_t seq)
{
	ring_ent *e;

	if (prod_wait(p, 1, a->timeout_ms) != 0) {
		fqb_report_error("ring: the peer stopped taking messages");
		return -1;
	}
	e = prod_slot(p, 0);
	*e = (ring_ent){.off = 0, .size = fqb_marker_size(a->size), .parts = 1, .seq = seq};
	prod_publish(p, 1);
	return 0;
}

/* ---- thr -------------------------------------------------------------------------------- */

static int sender(const fqb_role_args *a)
{
	fqb_deadline dl;
	const uint64_t size = a->size, parts = a->parts;
	uint64_t i;
	double cpu0;
	rside s;
	prod p;

	if (rside_open(&s, a, FQB_THR) != 0)
		return FQB_EXIT_FAILURE;
	prod_init(&p, &s, 0);
	/*
	 * The pool's pages exist before the clock starts, as a warm allocator's would: those the
	 * loop writes, every one with --memset.
	 */
	for (uint64_t b = 0; b < s.l.nbuf && size > 0; b++) {
		char *buf = s.base + s.l.pool_off + b * s.l.stride;

		if (a->fill)
			memset(buf, 0x5a, size);
		else
			buf[0] = buf[size - 1] = 0x5a;
	}
	cpu0 = fqb_cpu_seconds();
	fqb_deadline_start(&dl, a);
	for (i = 0; a->count == 0 || i < a->count; i++) {
		if (fqb_deadline_passed(&dl, i))
			break;
		if (prod_wait(&p, parts, a->timeout_ms) != 0) {
			fqb_report_error("ring: the receiver stopped taking messages");
			goto fail;
		}
		for (uint64_t j = 0; j < parts; j++) {
			/* Slot k's buffer: free again once the receiver has passed slot k. */
			const uint64_t slot = (p.head + j) & p.mask;
			const uint64_t off = s.l.pool_off + slot * s.l.stride;

			fqb_touch(s.base + off, size, i, a->fill);
			p.r->ent[slot] = (ring_ent){.off = off,
			                            .size = size,
			                            .parts = j == 0 ? (uint32_t)parts : 0,
			                            .seq = i};
		}
		prod_publish(&p, parts);
	}
	if (push_marker(&p, a, i) != 0)
		goto fail;
	if (a->hold)
		fqb_hold_wait(a->timeout_ms);
	rside_close(&s);
	fqb_report_sender(FQB_ROLE_SENDER, i, fqb_cpu_seconds() - cpu0);
	return FQB_EXIT_OK;
fail:
	rside_close(&s);
	return FQB_EXIT_FAILURE;
}

static int receiver(const fqb_role_args *a)
{
	uint64_t n = 0, t_first = 0, t_end;
	int got, rc = FQB_EXIT_FAILURE;
	double cpu0;
	rside s;
	cons c;

	if (rside_open(&s, a, FQB_THR) != 0)
		return FQB_EXIT_FAILURE;
	cons_init(&c, &s, 0);
	cpu0 = fqb_cpu_seconds();
	for (;;) {
		const ring_ent *e = cons_wait(&c, a->timeout_ms);

		if (e == NULL) {
			fqb_report_error("ring: the sender went silent");
			got = -1;
			break;
		}
		got = classify(e, a, c.head_seen - c.tail);
		if (got != 1) {
			if (got == 0)
				cons_release(&c, 1);
			break;
		}
		if (n++ == 0)
			t_first = fqb_now_ns();
		cons_release(&c, a->parts);
	}
	t_end = fqb_now_ns();
	rc = fqb_receiver_end(got, n, t_first, t_end, cpu0);
	rside_close(&s);
	return rc;
}

/* ---- lat -------------------------------------------------------------------------------- */

/* Publish a message of `parts` entries copied from `src` (consecutive, wrapping). */
static int push_message(prod *p, const ring_ent *const *src, uint64_t parts, int timeout_ms)
{
	if (prod_wait(p, parts, timeout_ms) != 0) {
		fqb_report_error("ring: the peer stopped taking messages");
		return -1;
	}
	for (uint64_t j = 0; j < parts; j++)
		*prod_slot(p, j) = *src[j];
	prod_publish(p, parts);
	return 0;
}

/* Wait for the echo of a message; 0 or -1 (reported). */
static int pull_echo(cons *c, const fqb_role_args *a)
{
	const ring_ent *e = cons_wait(c, a->timeout_ms);

	if (e == NULL) {
		fqb_report_error("ring: the ponger went silent");
		return -1;
	}
	if (classify(e, a, c->head_seen - c->tail) != 1) {
		if (e->parts == 1 && e->size == fqb_marker_size(a->size))
			fqb_report_error("ring: an end marker from the ponger");
		return -1;
	}
	cons_release(c, a->parts);
	return 0;
}

static int pinger(const fqb_role_args *a)
{
	const ring_ent *src[FQB_MAX_PARTS];
	ring_ent *mine = NULL;
	fqb_samples samples = {0};
	uint64_t t0, prev, end_ns = UINT64_MAX, n = 0;
	int lap;
	double cpu0;
	int rc = FQB_EXIT_FAILURE;
	rside s;
	prod p;
	cons c;

	if (fqb_samples_init(&samples, a->count, a->duration) != 0) {
		fqb_report_error("out of memory for latency samples");
		return FQB_EXIT_FAILURE;
	}
	mine = calloc(a->parts, sizeof(*mine));
	if (mine == NULL) {
		fqb_report_error("out of memory");
		fqb_samples_free(&samples);
		return FQB_EXIT_FAILURE;
	}
	if (rside_open(&s, a, FQB_LAT) != 0) {
		free(mine);
		fqb_samples_free(&samples);
		return FQB_EXIT_FAILURE;
	}
	prod_init(&p, &s, 0);
	cons_init(&c, &s, 1);
	/* One buffer per part, filled once, sent back and forth as the fabriq pinger does. */
	for (size_t j = 0; j < a->parts; j++) {
		mine[j] = (ring_ent){.off = s.l.pool_off + j * s.l.stride,
		                     .size = a->size,
		                     .parts = j == 0 ? (uint32_t)a->parts : 0};
		if (a->size > 0)
			memset(s.base + mine[j].off, 0x5a, a->size);
		src[j] = &mine[j];
	}
	for (int w = 0; w < WARMUP; w++) {
		if (push_message(&p, src, a->parts, a->timeout_ms) != 0 || pull_echo(&c, a) != 0)
			goto out;
	}
	cpu0 = fqb_cpu_seconds();
	t0 = prev = fqb_now_ns();
	if (a->count == 0)
		end_ns = t0 + (uint64_t)(a->duration * 1e9);
	while (a->count == 0 || n < a->count) {
		for (size_t j = 0; a->fill && j < a->parts; j++)
			fqb_touch(s.base + mine[j].off, a->size, n, true);
		if (push_message(&p, src, a->parts, a->timeout_ms) != 0 || pull_echo(&c, a) != 0)
			goto out;
		lap = fqb_lap(&samples, &prev, &n, end_ns);
		if (lap < 0)
			goto out;
		if (lap > 0)
			break;
	}
	if (push_marker(&p, a, n) != 0)
		goto out;
	if (a->hold)
		fqb_hold_wait(a->timeout_ms);
	fqb_report_pinger_samples(&samples, n, t0, prev, cpu0);
	rc = FQB_EXIT_OK;
out:
	rside_close(&s);
	free(mine);
	fqb_samples_free(&samples);
	return rc;
}

static int ponger(const fqb_role_args *a)
{
	const ring_ent *src[FQB_MAX_PARTS];
	uint64_t n = 0;
	int got, rc = FQB_EXIT_FAILURE;
	double cpu0;
	rside s;
	prod p;
	cons c;

	if (rside_open(&s, a, FQB_LAT) != 0)
		return FQB_EXIT_FAILURE;
	cons_init(&c, &s, 0);
	prod_init(&p, &s, 1);
	cpu0 = fqb_cpu_seconds();
	for (;;) {
		const ring_ent *e = cons_wait(&c, a->timeout_ms);

		if (e == NULL) {
			fqb_report_error("ring: the pinger went silent");
			got = -1;
			break;
		}
		got = classify(e, a, c.head_seen - c.tail);
		if (got != 1) {
			if (got == 0)
				cons_release(&c, 1);
			break;
		}
		/* The same handles straight back; then the incoming slots are free. */
		for (size_t j = 0; j < a->parts; j++)
			src[j] = &c.r->ent[(c.tail + j) & c.mask];
		if (push_message(&p, src, a->parts, a->timeout_ms) != 0) {
			got = -1;
			break;
		}
		cons_release(&c, a->parts);
		n++;
	}
	if (got == 0) {
		fqb_report_sender(FQB_ROLE_PONGER, n, fqb_cpu_seconds() - cpu0);
		rc = FQB_EXIT_OK;
	}
	rside_close(&s);
	return rc;
}

int fqb_ring_role(const fqb_role_args *a)
{
	static const fqb_role_fns fns = {sender, receiver, pinger, ponger, "no role"};

	return fqb_role_run(&fns, a);
}
