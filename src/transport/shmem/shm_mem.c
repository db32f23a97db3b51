/*
 * shmem transport, memory: segments, the owner-local allocator, block holders, messages,
 * and the reclaiming of blocks held by dead processes.
 *
 * Locks: n->alloc_lock (process-local) guards the allocator of one node. Nothing here takes
 * a lock that another process can hold: blocks come back through a lock-free stack per
 * segment (any process pushes, only the owner pops the whole stack at once, so there is no
 * ABA), and the holder of a block changes with one compare-and-swap on its holder word.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shm.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUBSYS "shmem"

/* ---- Fault injection -------------------------------------------------------------------- */

const char *shm_fault_point = (const char *)1;

void shm_fault_hit(const char *point)
{
	if (shm_fault_point == (const char *)1)
		shm_fault_point = getenv("FQ_SHM_FAULT");
	if (shm_fault_point != NULL && strcmp(shm_fault_point, point) == 0) {
		static _Atomic long hits;
		const char *after = getenv("FQ_SHM_FAULT_AFTER");
		long skip = after ? atol(after) : 0;

		if (atomic_fetch_add(&hits, 1) >= skip) {
			FQI_INFO(SUBSYS, "fault injection: killing pid %d at '%s'", (int)getpid(),
			         point);
			raise(SIGKILL);
		}
	}
}

/* ---- Process identity ------------------------------------------------------------------ */

/* glibc does not cache getpid(); the hot path asks for it on every block it takes over. */
static _Atomic pid_t self_pid;

static void self_forget(void)
{
	atomic_store(&self_pid, 0);
}

pid_t shm_self(void)
{
	pid_t p = atomic_load_explicit(&self_pid, memory_order_relaxed);

	if (FQI_UNLIKELY(p == 0)) {
		static pthread_once_t once = PTHREAD_ONCE_INIT;

		pthread_once(&once, shm_self_atfork);
		p = getpid();
		atomic_store(&self_pid, p);
	}
	return p;
}

void shm_self_atfork(void)
{
	pthread_atfork(NULL, NULL, self_forget);
}

/* ---- Per-thread state: message wrappers are recycled per thread ------------------------ */

static _Thread_local fqi_tcache wrap_cache FQI_TLS_FAST; /* freed by the core at exit */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void batches_thread_exit(void);
static void mags_thread_exit(void);

static _Thread_local FQI_TLS_FAST bool exit_hooked; /* exit_key is set for this thread */

static void thread_exit(void *arg)
{
	FQI_UNUSED(arg);
	exit_hooked = false; /* what the flushes below leave hooks itself again */
	batches_thread_exit();
	mags_thread_exit();
	shm_spares_flush();
}

static void exit_key_init(void)
{
	pthread_key_create(&exit_key, thread_exit);
}

/*
 * Have thread_exit run when this thread exits: it gives back what the thread keeps
 * (magazines, batches, spare map references; the wrapper and small-message caches are
 * freed by the core). Called where each of them is first taken; cheap after the first.
 */
static void thread_exit_hook(void)
{
	if (FQI_LIKELY(exit_hooked))
		return;
	pthread_once(&exit_once, exit_key_init);
	exit_hooked = pthread_setspecific(exit_key, (void *)1) == 0; /* else: again next time */
}

static shm_msg *wrap_get(void)
{
	shm_msg *m = fqi_tcache_get(&wrap_cache);

	if (FQI_LIKELY(m != NULL))
		return m;
	return malloc(sizeof(shm_msg));
}

static void wrap_put(shm_msg *m)
{
	fqi_tcache_release(&wrap_cache, m);
}

/*
 * Small messages (below n->small_below bytes: up to the inline_max) live in private memory.
 * Their bytes travel inline, copied through the ring, so a block under them would cost an
 * allocation and a free on each side for nothing. The bytes follow the wrapper in one piece
 * of memory, on a cache line of their own; pieces are recycled per thread. A small message
 * that cannot go inline (the area is full) is copied into a block by the send.
 */
typedef struct shm_small {
	shm_msg msg;
	_Alignas(SHM_CACHE_LINE) char data[SHM_SMALL_MAX];
} shm_small;

static _Thread_local fqi_tcache small_cache FQI_TLS_FAST;

static void small_put(shm_msg *m)
{
	fqi_tcache_release(&small_cache, m);
}

/* A small message of `size` bytes (at most SHM_SMALL_MAX), bytes not set. */
static int small_new(fq_transport *t, size_t size, fq_msg **out)
{
	shm_small *sm = fqi_tcache_get(&small_cache);

	if (sm == NULL) {
		sm = aligned_alloc(SHM_CACHE_LINE, sizeof(*sm));
		if (sm == NULL)
			return FQ_ENOMEM;
	}
	sm->msg.base = (fq_msg){.ops = &shm_msg_ops, .t = t, .data = sm->data, .size = size};
	sm->msg.embedded = (shm_ref){.refs = 1, .host = &sm->msg, .small = true};
	sm->msg.ref = &sm->msg.embedded;
	*out = &sm->msg.base;
	return 0;
}

/* ---- Maps ------------------------------------------------------------------------------- */

void shm_map_ref(shm_map *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

static void node_unref(shm_node *n);

void shm_map_unref(shm_map *m)
{
	if (m == NULL || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Our pid stays in the segment's user table: this process may map the segment again
	 * (through another connection) and hold blocks; the owner drops the pid when we die. */
	munmap(m->base, m->size);
	close(m->fd);
	if (m->node != NULL)
		node_unref(m->node);
	free(m);
}

int shm_map_peer(int fd, shm_map **out)
{
	struct stat st;
	shm_map *m;
	void *base;

	if (fstat(fd, &st) != 0)
		return fqi_syserr(errno);
	/* Ours to map, and sealed: nobody can shrink it under us (no SIGBUS). */
	if (st.st_uid != geteuid() || (size_t)st.st_size < SHM_HDR_BYTES ||
	    (fcntl(fd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_SEAL)) !=
	        (F_SEAL_SHRINK | F_SEAL_SEAL))
		return FQ_EPROTO;
	base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return fqi_syserr(errno);
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		munmap(base, (size_t)st.st_size);
		return FQ_ENOMEM;
	}
	atomic_init(&m->refs, 1);
	m->fd = fd;
	m->base = base;
	m->size = (size_t)st.st_size;
	*out = m;
	return 0;
}

bool shm_register_user(shm_map *m)
{
	shm_seg_hdr *h = m->base;
	uint64_t me = (uint32_t)shm_self();
	int free_slot = -1;

	if (m->registered || m->own)
		return true;
	for (unsigned i = 0; i < SHM_USERS; i++) {
		uint64_t v = atomic_load(&h->users[i]);

		if (v == me) {
			m->registered = true;
			return true;
		}
		if (v == 0 && free_slot < 0)
			free_slot = (int)i;
	}
	for (unsigned i = (unsigned)(free_slot < 0 ? 0 : free_slot); i < SHM_USERS; i++) {
		uint64_t v = 0;

		if (atomic_compare_exchange_strong(&h->users[i], &v, me)) {
			m->registered = true;
			return true;
		}
	}
	return false;
}

/*
 * Spare references: a sender hands its blocks on and drops its reference to their (own)
 * segment at once, then takes one again for the next block it allocates. The thread keeps
 * such references instead of giving them back one locked instruction at a time; magazine
 * refills use them first. They are real references (the map stays alive while they exist)
 * and go back when the thread moves to another segment, closes the node, or exits.
 */
static _Thread_local FQI_TLS_FAST shm_map *spare_map;
static _Thread_local FQI_TLS_FAST long spare_refs;

void shm_spares_flush(void)
{
	shm_map *m = spare_map;

	spare_map = NULL;
	if (m == NULL || spare_refs == 0)
		return; /* (refills may have used every spare) */
	if (spare_refs > 1)
		atomic_fetch_sub_explicit(&m->refs, spare_refs - 1, memory_order_release);
	spare_refs = 0;
	shm_map_unref(m); /* the last one may free it */
}

/* Drop a reference to an own map, keeping it as a spare. */
static void map_unref_spare(shm_map *m)
{
	if (m != spare_map) {
		shm_spares_flush();
		thread_exit_hook();
		spare_map = m;
	}
	if (++spare_refs > 256) {
		atomic_fetch_sub_explicit(&m->refs, 128, memory_order_release);
		spare_refs -= 128; /* at least 128 remain: the map cannot reach 0 here */
	}
}

/* Take a reference, from the spares if there are any. */
static void map_ref_spare(shm_map *m)
{
	if (m == spare_map && spare_refs > 0)
		spare_refs--;
	else
		shm_map_ref(m);
}

/* ---- Own segments ----------------------------------------------------------------------- */

static void node_unref(shm_node *n)
{
	if (atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) != 1)
		return;
	pthread_mutex_destroy(&n->alloc_lock);
	free(n->segs);
	free(n);
}

/* Create and map a memfd of `size` bytes, sealed against resizing. */
static int memfd_new(const char *name, size_t size, int *fd_out, void **base_out)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *base;

	if (fd < 0)
		return fqi_syserr(errno);
	if (ftruncate(fd, (off_t)size) != 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
		int rc = fqi_syserr(errno);

		close(fd);
		return rc;
	}
	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		int rc = fqi_syserr(errno);

		close(fd);
		return rc;
	}
	*fd_out = fd;
	*base_out = base;
	return 0;
}

/* Offset of a segment's first block: its data lands on an `align` boundary. */
static size_t first_off(const shm_node *n)
{
	return SHM_HDR_BYTES + n->align - SHM_BLK_HDR;
}

/* A new own segment; alloc_lock held. */
int shm_seg_new(shm_node *n, size_t size, uint32_t kind, bool dedicated, shm_map **out)
{
	shm_seg_hdr *h;
	shm_map *m;
	size_t idx;
	int rc;

	/* Indexes are never reused: peers know a segment by (owner, index). */
	idx = n->nsegs;
	if (idx == n->cap_segs) {
		size_t cap = n->cap_segs ? 2 * n->cap_segs : 16;
		shm_map **segs = realloc(n->segs, cap * sizeof(*segs));

		if (segs == NULL)
			return FQ_ENOMEM;
		memset(segs + n->cap_segs, 0, (cap - n->cap_segs) * sizeof(*segs));
		n->segs = segs;
		n->cap_segs = cap;
	}
	if (idx >= (1u << 16))
		return FQ_ENOMEM;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return FQ_ENOMEM;
	shm_fault("segment_grow");
	rc = memfd_new(kind == SHM_SEG_REGION ? "fabriq-region" : "fabriq-segment", size, &m->fd,
	               &m->base);
	if (rc != 0) {
		free(m);
		return rc;
	}
	if (n->prefault && kind == SHM_SEG_POOL && !dedicated) {
		/* Fault the pages in now, in the kernel, rather than one by one in a sender. */
		if (madvise(m->base, size, MADV_POPULATE_WRITE) != 0)
			FQI_DEBUG(SUBSYS, "prefault of %zu bytes: %s", size, strerror(errno));
	}
	h = m->base;
	h->magic = SHM_SEG_MAGIC;
	h->version = SHM_VERSION;
	h->kind = kind;
	h->owner_id = n->id;
	h->owner_pid = (uint32_t)n->pid;
	h->idx = (uint32_t)idx;
	h->size = size;
	h->align = (uint32_t)n->align;
	h->dedicated = dedicated;
	h->first_off = first_off(n);
	atomic_init(&h->bump, first_off(n));
	memcpy(h->session, n->session, sizeof(h->session));
	atomic_init(&m->refs, 1);
	m->size = size;
	m->owner_id = n->id;
	m->owner_pid = (uint32_t)n->pid;
	m->idx = (uint32_t)idx;
	m->kind = kind;
	m->own = true;
	m->dedicated = dedicated;
	m->node = n;
	atomic_fetch_add(&n->refs, 1);
	m->bump = first_off(n);
	n->segs[idx] = m;
	if (idx >= n->nsegs)
		n->nsegs = idx + 1;
	n->total += size;
	*out = m;
	return 0;
}

void shm_seg_retire(shm_node *n, shm_map *m)
{
	if (m->idx < n->nsegs && n->segs[m->idx] == m) {
		n->segs[m->idx] = NULL;
		n->total -= m->size;
		shm_map_unref(m);
	}
}

/* Bytes of a block (header + data) of class `cls` under the node's alignment. */
static size_t block_bytes(const shm_node *n, unsigned cls)
{
	return shm_block_bytes(n->align, cls);
}

static size_t blk_footprint(const shm_node *n, const shm_map *m, const shm_blk *b)
{
	return m->dedicated ? m->size - SHM_HDR_BYTES : block_bytes(n, b->cls);
}

static shm_map *seg_of(shm_node *n, const shm_blk *b)
{
	return b->pad < n->nsegs ? n->segs[b->pad] : NULL;
}

/* Put a block that came back on its free list (or keep it while stubs point at it). */
static void blk_returned(shm_node *n, shm_map *m, shm_blk *b);

/*
 * Change a block's local reference count (alloc_lock held, so no locked instruction): atomic
 * loads and stores because mag_free reads it without the lock.
 */
static uint32_t local_refs_add(shm_blk *b, int d)
{
	uint32_t v = __atomic_load_n(&b->local_refs, __ATOMIC_RELAXED) + (uint32_t)d;

	__atomic_store_n(&b->local_refs, v, __ATOMIC_RELEASE);
	return v;
}

static void blk_to_list(shm_node *n, shm_map *m, shm_blk *b)
{
	atomic_store_explicit(&b->word, SHM_WORD(SHM_FREE, 0), memory_order_relaxed);
	m->blocks_out--;
	m->used_bytes -= blk_footprint(n, m, b);
	atomic_store_explicit(&((shm_seg_hdr *)m->base)->blocks_out, m->blocks_out,
	                      memory_order_relaxed);
	atomic_store_explicit(&((shm_seg_hdr *)m->base)->used_bytes, m->used_bytes,
	                      memory_order_relaxed);
	if (m->dedicated) {
		/* Give the pages back now; keep the segment (and its fd at the peers) for reuse. */
		fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, SHM_HDR_BYTES,
		          (off_t)(m->size - SHM_HDR_BYTES));
		m->cached = true;
		return;
	}
	/* Latest first: the block that came back last is handed out first, while its lines
	 * (those its sender wrote last) are still in a cache. */
	b->next = (uint64_t)(uintptr_t)n->free_cls[b->cls];
	n->free_cls[b->cls] = b;
	n->back_seg[b->cls] = m->idx;
}

/* Region acknowledgements: implemented by shmem.c, called with alloc_lock held. */
void shm_region_returned(shm_node *n, shm_blk *b);

static void blk_returned(shm_node *n, shm_map *m, shm_blk *b)
{
	switch (b->kind) {
	case SHM_BLK_STUB: {
		uint64_t t = b->a;
		shm_map *tm = (t >> 48) < n->nsegs ? n->segs[t >> 48] : NULL;

		blk_to_list(n, m, b);
		if (tm != NULL) {
			shm_blk *target = (shm_blk *)((char *)tm->base + (t & ((1ULL << 48) - 1)));

			if (local_refs_add(target, -1) == 0)
				blk_to_list(n, tm, target);
		}
		return;
	}
	case SHM_BLK_REGION:
		shm_region_returned(n, b);
		blk_to_list(n, m, b);
		return;
	default:
		if (local_refs_add(b, -1) == 0)
			blk_to_list(n, m, b);
		return;
	}
}

/* Are b, c, d of a returned block prefetch hints (see shm_blk)? */
static bool blk_hinted(const shm_blk *b)
{
	return b->kind != SHM_BLK_REGION;
}

static void prefetch_at(const shm_map *m, uint64_t off)
{
	if (off >= SHM_HDR_BYTES && off <= m->size - SHM_BLK_HDR)
		shm_prefetch_write((char *)m->base + off);
}

/*
 * The collector is at b, whose successor on the stack is at next: ask for the headers of the
 * next few blocks now, so that their transfers from the core that returned them overlap
 * instead of coming one after the other as the chain is followed.
 */
static void prefetch_hinted(const shm_map *m, const shm_blk *b, uint64_t next)
{
	prefetch_at(m, next);
	if (!blk_hinted(b))
		return;
	prefetch_at(m, b->b);
	prefetch_at(m, b->c);
	prefetch_at(m, b->d);
}

/* Pop the returned blocks of own segment i; alloc_lock held. */
static void collect_seg(shm_node *n, size_t i)
{
	shm_map *m = n->segs[i];
	uint64_t off;

	if (m == NULL || m->kind != SHM_SEG_POOL)
		return;
	off =
	    atomic_exchange_explicit(&((shm_seg_hdr *)m->base)->free_head, 0, memory_order_acquire);
	/* The chain is written by other processes: bounded, and every block must be FREEING
	 * (which also refuses a block pushed twice). */
	for (size_t steps = m->bump / SHM_CACHE_LINE + 1; off != 0; steps--) {
		shm_blk *b;
		uint64_t w;

		if (steps == 0) {
			FQI_ERROR(SUBSYS,
			          "segment %zu: the stack of returned blocks loops; rest of it "
			          "dropped",
			          i);
			break;
		}
		if (off < SHM_HDR_BYTES || off > m->size - SHM_BLK_HDR ||
		    (off & (SHM_CACHE_LINE - 1)) != 0) {
			FQI_ERROR(SUBSYS,
			          "segment %zu: returned block at %llu is outside the segment; "
			          "rest of the stack dropped",
			          i, (unsigned long long)off);
			break;
		}
		b = (shm_blk *)((char *)m->base + off);
		off = b->next;
		prefetch_hinted(m, b, off);
		w = atomic_load_explicit(&b->word, memory_order_acquire);
		if (b->magic != SHM_BLK_MAGIC || SHM_WORD_STATE(w) != SHM_FREEING)
			continue;
		/* A plain store: a FREEING block on the stack has no other writer (its returner
		 * is done with it, the reclaim scan holds alloc_lock), and a locked instruction
		 * per returned block cost 5 % of the 1 KiB message rate. */
		atomic_store_explicit(&b->word, SHM_WORD(SHM_FREE, 0), memory_order_relaxed);
		/* FREE from here on, also while stubs keep it (local_refs > 0): the reclaim
		 * scan must never count this return twice. */
		blk_returned(n, m, b);
	}
}

/*
 * Pop the returned blocks of own segments; alloc_lock held. With want < SHM_CLASSES, stop
 * after the first segment that gave back a block of that class (an allocation's look: one
 * exchange per segment, each taking a line from the core that pushed, would cost more than
 * the rest of the allocation when there are many segments), going on from there next time;
 * else look at every segment.
 */
static void collect_some(shm_node *n, unsigned want)
{
	size_t nsegs = n->nsegs, start = n->collect_at < nsegs ? n->collect_at : 0;

	for (size_t k = 0; k < nsegs; k++) {
		size_t i = (start + k) % nsegs;

		if (want < SHM_CLASSES && n->free_cls[want] != NULL) {
			n->collect_at = i;
			return;
		}
		collect_seg(n, i);
	}
}

/*
 * Before an allocation of class cls takes the top of a non-empty free list: if the segment
 * that a block of cls came back to last has new returns, take them first. Otherwise a free
 * list that grew during a burst is worked through before any block that just came back, and
 * a steady stream cycles through every block it ever had, each out of the caches: a sender
 * that writes 64 KiB messages cycled through 60-80 blocks (5 MiB) instead of a handful.
 * Only for classes up to that of a SHM_BATCH_MAX_BYTES message (blocks of up to 80 KiB),
 * whose blocks go back in batches (the returner writes the line loaded here once per batch;
 * the few in the class with more than SHM_BATCH_MAX_BYTES go back alone). Larger blocks all
 * go back one by one, and a look per allocation cost 15 % of the 16 MiB message rate for
 * little gain when every byte is written (two such blocks do not fit the caches anyway).
 */
static void collect_recent(shm_node *n, unsigned cls)
{
	uint32_t i = n->back_seg[cls];
	shm_map *m = i < n->nsegs ? n->segs[i] : NULL;

	if (m != NULL && m->kind == SHM_SEG_POOL &&
	    atomic_load_explicit(&((shm_seg_hdr *)m->base)->free_head, memory_order_relaxed) != 0)
		collect_seg(n, i);
}

static void collect_locked(shm_node *n)
{
	collect_some(n, SHM_CLASSES);
}

void shm_collect(shm_node *n)
{
	pthread_mutex_lock(&n->alloc_lock);
	collect_locked(n);
	pthread_mutex_unlock(&n->alloc_lock);
}

/* Take back what a dead process held: blocks it holds, or was pushing back. */
void shm_reclaim_pid(shm_node *n, pid_t dead)
{
	uint64_t taken = 0;

	pthread_mutex_lock(&n->alloc_lock);
	collect_locked(n); /* the dead cannot push any more: what is on the stacks is counted */
	for (size_t i = 0; i < n->nsegs; i++) {
		shm_map *m = n->segs[i];
		shm_seg_hdr *h;

		if (m == NULL)
			continue;
		h = m->base;
		for (unsigned u = 0; u < SHM_USERS; u++) {
			uint64_t v = (uint32_t)dead;

			atomic_compare_exchange_strong(&h->users[u], &v, 0);
		}
		if (m->kind != SHM_SEG_POOL)
			continue;
		for (size_t off = first_off(n); off + SHM_BLK_HDR <= m->bump;) {
			shm_blk *b = (shm_blk *)((char *)m->base + off);
			uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
			size_t step;

			if (!m->dedicated && b->cls >= SHM_CLASSES) {
				FQI_ERROR(SUBSYS,
				          "segment %zu: block at %zu has a bad size class; "
				          "rest of the segment not scanned",
				          i, off);
				break;
			}
			step = m->dedicated ? m->size : block_bytes(n, b->cls);

			if ((SHM_WORD_STATE(w) == SHM_HELD || SHM_WORD_STATE(w) == SHM_FREEING) &&
			    SHM_WORD_PID(w) == dead &&
			    atomic_compare_exchange_strong(&b->word, &w, SHM_WORD(SHM_FREE, 0))) {
				blk_returned(n, m, b);
				taken++;
			}
			if (step == 0)
				break;
			off += step;
		}
	}
	pthread_mutex_unlock(&n->alloc_lock);
	if (taken != 0) {
		atomic_fetch_add(&n->reclaimed_blocks, taken);
		FQI_INFO(SUBSYS, "took back %llu blocks held by dead process %d",
		         (unsigned long long)taken, (int)dead);
	}
}

/* ---- Allocation ------------------------------------------------------------------------- */

static size_t blk_footprint(const shm_node *n, const shm_map *m, const shm_blk *b);

static void blk_header(shm_map *m, shm_blk *b, unsigned cls, uint16_t kind, size_t cap)
{
	atomic_store_explicit(&b->word, SHM_WORD(SHM_HELD, shm_self()), memory_order_relaxed);
	b->next = 0;
	b->magic = SHM_BLK_MAGIC;
	b->kind = kind;
	b->cls = (uint16_t)cls;
	b->a = cap;
	b->b = b->c = b->d = 0;
	b->local_refs = 1;
	b->pad = m->idx;
}

/* Count a block out (alloc_lock held). */
static void blk_account(shm_node *n, shm_map *m, size_t footprint)
{
	/*
	 * The figures are the owner's alone: plain stores, no locked instruction, which would
	 * wait here for the header line that the last holder still has in its cache.
	 */
	FQI_UNUSED(n);
	m->blocks_out++;
	m->used_bytes += footprint;
	atomic_store_explicit(&((shm_seg_hdr *)m->base)->blocks_out, m->blocks_out,
	                      memory_order_relaxed);
	atomic_store_explicit(&((shm_seg_hdr *)m->base)->used_bytes, m->used_bytes,
	                      memory_order_relaxed);
}

/* One attempt; alloc_lock held. FQ_ENOMEM when the limit is reached. */
static int alloc_locked(shm_node *n, size_t bytes, shm_map **mo, shm_blk **bo, unsigned *clso)
{
	unsigned cls;
	shm_map *m;
	int rc;

	if (bytes > n->seg_size / 2) {
		/* A segment of its own, reused when a returned one is big enough. */
		size_t want = (SHM_HDR_BYTES + n->align + bytes + 4095) & ~(size_t)4095;

		for (size_t i = 0; i < n->nsegs; i++) {
			m = n->segs[i];
			if (m != NULL && m->dedicated && m->cached && m->size >= want &&
			    m->size / 2 <= want) {
				m->cached = false;
				*mo = m;
				*bo = (shm_blk *)((char *)m->base + first_off(n));
				*clso = 0;
				return 0;
			}
		}
		if (n->total + want > n->limit) {
			/* Retire cached segments that do not fit, to make room. */
			for (size_t i = 0; i < n->nsegs && n->total + want > n->limit; i++) {
				m = n->segs[i];
				if (m != NULL && m->dedicated && m->cached &&
				    atomic_load(&m->refs) == 1) {
					n->total -= m->size;
					n->segs[i] = NULL;
					shm_map_unref(m);
				}
			}
			if (n->total + want > n->limit)
				return FQ_ENOMEM;
		}
		rc = shm_seg_new(n, want, SHM_SEG_POOL, true, &m);
		if (rc != 0)
			return rc;
		*mo = m;
		*bo = (shm_blk *)((char *)m->base + first_off(n));
		m->bump = m->size; /* carved: the reclaim scan looks at its one block */
		atomic_store_explicit(&((shm_seg_hdr *)m->base)->bump, m->bump,
		                      memory_order_relaxed);
		*clso = 0;
		return 0;
	}
	cls = shm_class_of(bytes);
	if (cls >= SHM_CLASSES)
		return FQ_ENOMEM;
	if (n->free_cls[cls] == NULL)
		collect_some(n, cls);
	else if (cls <= shm_class_of(SHM_BLK_HDR + SHM_BATCH_MAX_BYTES))
		collect_recent(n, cls);
	if (n->free_cls[cls] != NULL) {
		shm_blk *b = n->free_cls[cls];

		n->free_cls[cls] = (shm_blk *)(uintptr_t)b->next;
		*mo = seg_of(n, b);
		*bo = b;
		*clso = cls;
		return 0;
	}
	m = n->current;
	if (m == NULL || m->bump + block_bytes(n, cls) > m->size) {
		if (n->total + n->seg_size > n->limit)
			return FQ_ENOMEM;
		rc = shm_seg_new(n, n->seg_size, SHM_SEG_POOL, false, &m);
		if (rc != 0)
			return rc;
		n->current = m;
		FQI_DEBUG(SUBSYS, "new segment %u (%zu bytes, %zu in all)", m->idx, m->size,
		          n->total);
	}
	*mo = m;
	*bo = (shm_blk *)((char *)m->base + m->bump);
	*clso = cls;
	/*
	 * A carved block is walkable at once (the reclaim scan and fq-shmmon step through the
	 * segment by the class in each header), even while it waits unused in a magazine.
	 */
	(*bo)->cls = (uint16_t)cls;
	(*bo)->pad = m->idx;
	(*bo)->magic = SHM_BLK_MAGIC;
	m->bump += block_bytes(n, cls);
	atomic_store_explicit(&((shm_seg_hdr *)m->base)->bump, m->bump, memory_order_relaxed);
	return 0;
}

/*
 * Per-thread magazines: blocks of one size class of one node, taken from the allocator 32 at
 * a time under its lock, so that most allocations take no lock at all. A block in a
 * magazine is free (holder word FREE: the reclaim scan passes it by) but counted out by the
 * owner; n->mag_blocks says how many, for the figures.
 */
#define SHM_MAG       32
#define SHM_MAG_SLOTS 4
#define SHM_MAG_BYTES (256 * 1024) /* bytes of blocks a refill takes at most */

typedef struct magazine {
	shm_node *node;
	unsigned cls, count;
	unsigned taken; /* handed out since n->mag_blocks was last told (one atomic per refill) */
	shm_blk *blk[SHM_MAG];
	shm_map *map[SHM_MAG]; /* each holds a map reference */
} magazine;

/*
 * The magazines (2 KiB a thread) live on the heap, found through a static-model pointer: a
 * thread-local array would be part of the library's thread-local block, which must fit the
 * little static TLS room left for a library loaded with dlopen. NULL when the thread has
 * none and could not get them (then every allocation takes the lock).
 */
static _Thread_local FQI_TLS_FAST magazine *mags_ptr;
static _Thread_local FQI_TLS_FAST unsigned mag_clock;

static inline magazine *my_mags(void)
{
	if (FQI_UNLIKELY(mags_ptr == NULL)) {
		mags_ptr = calloc(SHM_MAG_SLOTS, sizeof(magazine));
		thread_exit_hook(); /* frees them */
	}
	return mags_ptr;
}

static void mag_flush(magazine *g)
{
	shm_node *n = g->node;

	if (g->count == 0) {
		if (g->taken != 0)
			atomic_fetch_sub(&n->mag_blocks, g->taken);
		g->taken = 0;
		g->node = NULL;
		return;
	}
	pthread_mutex_lock(&n->alloc_lock);
	for (unsigned i = 0; i < g->count; i++) {
		shm_blk *b = g->blk[i];

		if (atomic_load(&n->closed))
			break;
		b->cls = (uint16_t)g->cls;
		b->pad = g->map[i]->idx;
		b->kind = SHM_BLK_DATA;
		b->local_refs = 1;
		blk_to_list(n, g->map[i], b); /* counts it back in */
	}
	atomic_fetch_sub(&n->mag_blocks, g->count + g->taken);
	g->taken = 0;
	pthread_mutex_unlock(&n->alloc_lock);
	for (unsigned i = 0; i < g->count; i++)
		shm_map_unref(g->map[i]); /* may free the node with the last one */
	g->count = 0;
	g->node = NULL;
}

void shm_flush_magazines(void)
{
	magazine *mags = mags_ptr;

	for (unsigned i = 0; mags != NULL && i < SHM_MAG_SLOTS; i++)
		mag_flush(&mags[i]);
}

static void mags_thread_exit(void)
{
	shm_flush_magazines();
	free(mags_ptr);
	mags_ptr = NULL;
}

/* Refill g for (n, cls) with blocks of `bytes`; alloc_lock held. */
static void mag_refill_locked(shm_node *n, magazine *g, unsigned cls, size_t bytes)
{
	/* Large blocks come a few at a time: a block that just came back is still in the
	 * cache, and a sender that writes every byte should get that one again. */
	size_t want = SHM_MAG_BYTES / block_bytes(n, cls);

	want = want < 1 ? 1 : want > SHM_MAG ? SHM_MAG : want;
	g->node = n;
	g->cls = cls;
	while (g->count < want) {
		shm_map *m;
		shm_blk *b = n->free_cls[cls];
		unsigned c;

		if (b != NULL && g->count > 0) {
			/* The first block came through alloc_locked, which took the new returns
			 * first; the rest are the next ones on the list. */
			n->free_cls[cls] = (shm_blk *)(uintptr_t)b->next;
			m = seg_of(n, b);
		} else if (alloc_locked(n, bytes, &m, &b, &c) != 0) {
			break;
		}
		map_ref_spare(m);
		blk_account(n, m, block_bytes(n, cls)); /* out to the magazine */
		g->blk[g->count] = b;
		g->map[g->count] = m;
		g->count++;
	}
	/* The free list gave the latest block first; the magazine hands out from its end. */
	for (unsigned i = 0, j = g->count; i + 1 < j; i++, j--) {
		shm_blk *tb = g->blk[i];
		shm_map *tm = g->map[i];

		g->blk[i] = g->blk[j - 1];
		g->map[i] = g->map[j - 1];
		g->blk[j - 1] = tb;
		g->map[j - 1] = tm;
	}
	/* One locked instruction, not two (a magazine of large blocks is refilled for every
	 * message); unsigned arithmetic wraps as the counter does. */
	if (g->count != g->taken)
		atomic_fetch_add(&n->mag_blocks, (uint64_t)g->count - g->taken);
	g->taken = 0;
	for (unsigned k = 1; k <= 4 && k <= g->count; k++)
		shm_prefetch_write(g->blk[g->count - k]);
}

/*
 * Refill g, this thread's empty magazine for (n, cls), or (g NULL) a free or the oldest
 * slot. Returns the magazine, or NULL when nothing was to be had (then the caller takes the
 * slow path, which waits at the limit). Out of line: mag_alloc's frame stays small.
 */
FQI_NOINLINE static magazine *mag_refill(shm_node *n, magazine *mags, magazine *g, unsigned cls,
                                         size_t bytes)
{
	if (g == NULL) {
		for (unsigned i = 0; i < SHM_MAG_SLOTS && g == NULL; i++) {
			if (mags[i].count == 0)
				g = &mags[i];
		}
		if (g == NULL)
			g = &mags[mag_clock++ % SHM_MAG_SLOTS];
		mag_flush(g);
	}
	pthread_mutex_lock(&n->alloc_lock);
	if (!atomic_load(&n->closed))
		mag_refill_locked(n, g, cls, bytes);
	pthread_mutex_unlock(&n->alloc_lock);
	if (g->count == 0) {
		g->node = NULL;
		return NULL;
	}
	return g;
}

/* A block from this thread's magazine, or false (then the caller takes the slow path). */
static bool mag_alloc(shm_node *n, size_t bytes, int kind, shm_map **map, shm_blk **blk)
{
	unsigned cls = shm_class_of(bytes);
	magazine *mags, *g = NULL;

	/*
	 * Blocks above half the refill budget would come one per refill: a magazine would only
	 * add its bookkeeping (two locked instructions on n->mag_blocks per message) to the
	 * allocation under the lock that it cannot save. Blocks of dedicated segments never
	 * come from a free list. Checked before the magazines exist: a thread that only
	 * allocates large blocks gets none.
	 */
	if (bytes > SHM_MAG_BYTES / 2 || bytes > n->seg_size / 2 || cls >= SHM_CLASSES)
		return false;
	mags = my_mags();
	if (FQI_UNLIKELY(mags == NULL))
		return false;
	shm_fault("alloc");
	for (unsigned i = 0; i < SHM_MAG_SLOTS; i++) {
		if (mags[i].node == n && mags[i].cls == cls) {
			g = &mags[i];
			break;
		}
	}
	if (g == NULL || g->count == 0) {
		g = mag_refill(n, mags, g, cls, bytes);
		if (g == NULL)
			return false;
	}
	g->count--;
	g->taken++; /* no locked instruction here: it would wait for the header line */
	if (g->count == 0) {
		/* Empty: it holds no map reference any more, so nothing keeps n alive for a
		 * later flush; tell n now. */
		atomic_fetch_sub_explicit(&n->mag_blocks, g->taken, memory_order_relaxed);
		g->taken = 0;
	}
	*map = g->map[g->count];
	*blk = g->blk[g->count];
	if (g->count >= 4)
		shm_prefetch_write(g->blk[g->count - 4]); /* a header we write 4 blocks on */
	blk_header(*map, *blk, cls, (uint16_t)kind, bytes - SHM_BLK_HDR);
	return true;
}

/* alloc_once past the magazines: under the allocator's lock. */
FQI_NOINLINE static int alloc_direct(shm_node *n, int kind, size_t bytes, shm_map **map,
                                     shm_blk **blk)
{
	unsigned cls = 0;
	shm_map *m = NULL;
	shm_blk *b = NULL;
	int rc;

	pthread_mutex_lock(&n->alloc_lock);
	shm_fault("alloc");
	rc = atomic_load(&n->closed) ? FQ_ECLOSED : alloc_locked(n, bytes, &m, &b, &cls);
	if (rc == 0) {
		map_ref_spare(m); /* before the header is written: see blk_account */
		blk_account(n, m, m->dedicated ? m->size - SHM_HDR_BYTES : block_bytes(n, cls));
		blk_header(m, b, cls, (uint16_t)kind, bytes - SHM_BLK_HDR);
	}
	pthread_mutex_unlock(&n->alloc_lock);
	if (rc == 0) {
		*map = m;
		*blk = b;
	}
	return rc;
}

/* A block of `bytes` (header included) without waiting: FQ_ENOMEM at the limit. */
static int alloc_once(shm_node *n, int kind, size_t bytes, shm_map **map, shm_blk **blk)
{
	if (mag_alloc(n, bytes, kind, map, blk))
		return 0;
	return alloc_direct(n, kind, bytes, map, blk);
}

/* shm_alloc at the limit: wait up to alloc_timeout for blocks to come back. */
bool shm_alloc_backoff(shm_node *n, int64_t *deadline)
{
	if (*deadline == -2)
		*deadline = fqi_deadline(n->alloc_timeout_ms);
	if (fqi_deadline_remaining(*deadline) == 0)
		return false;
	shm_flush_frees(); /* our own returns may be what is missing */
	usleep(200);       /* at the limit: wait for blocks to come back */
	return true;
}

int shm_alloc_nowait(shm_node *n, int kind, size_t size, shm_map **map, shm_blk **blk)
{
	if (size > SIZE_MAX / 2)
		return FQ_ENOMEM;
	return alloc_once(n, kind, SHM_BLK_HDR + (size ? size : 1), map, blk);
}

FQI_NOINLINE static int alloc_wait(shm_node *n, int kind, size_t size, shm_map **map, shm_blk **blk)
{
	int64_t deadline = -2;
	int rc;

	do {
		if (!shm_alloc_backoff(n, &deadline)) {
			FQI_DEBUG(SUBSYS, "no room for %zu bytes within the limit of %zu", size,
			          n->limit);
			return FQ_ENOMEM;
		}
		rc = shm_alloc_nowait(n, kind, size, map, blk);
	} while (rc == FQ_ENOMEM);
	return rc;
}

int shm_alloc(shm_node *n, int kind, size_t size, shm_map **map, shm_blk **blk)
{
	int rc = shm_alloc_nowait(n, kind, size, map, blk);

	return rc == FQ_ENOMEM && size <= SIZE_MAX / 2 ? alloc_wait(n, kind, size, map, blk) : rc;
}

int shm_make_stub(shm_node *n, shm_map *tmap, shm_blk *target, shm_map **map, shm_blk **stub)
{
	int rc = shm_alloc_nowait(n, SHM_BLK_STUB, 0, map, stub);

	if (rc != 0)
		return rc;
	(*stub)->a = ((uint64_t)tmap->idx << 48) | (uint64_t)((char *)target - (char *)tmap->base);
	pthread_mutex_lock(&n->alloc_lock);
	shm_fault("refcount");
	local_refs_add(target, 1);
	pthread_mutex_unlock(&n->alloc_lock);
	return 0;
}

/* ---- Releasing blocks ------------------------------------------------------------------- */

/* Push the chain first..last (linked through next) onto m's stack of returned blocks. */
static void push_chain(shm_map *m, shm_blk *first, shm_blk *last)
{
	shm_seg_hdr *h = m->base;
	uint64_t off = (uint64_t)((char *)first - (char *)m->base);
	uint64_t head = atomic_load_explicit(&h->free_head, memory_order_relaxed);

	do {
		last->next = head;
	} while (!atomic_compare_exchange_weak_explicit(
	    &h->free_head, &head, off, memory_order_release, memory_order_relaxed));
}

/*
 * Large blocks go back one by one. This thread's last pushes of such blocks onto one
 * segment's stack, latest first: while the owner has not taken them, they are what lies
 * below the next one, so they are its hints.
 */
static _Thread_local shm_map *pushed_map;
static _Thread_local uint64_t pushed[4];

static void push_one(shm_map *m, shm_blk *b)
{
	if (pushed_map != m) {
		memset(pushed, 0, sizeof(pushed));
		pushed_map = m; /* only compared: a stale pointer costs stale hints */
	}
	if (blk_hinted(b)) {
		b->b = pushed[1];
		b->c = pushed[2];
		b->d = pushed[3];
	}
	push_chain(m, b, b);
	memmove(pushed + 1, pushed, sizeof(pushed) - sizeof(pushed[0]));
	pushed[0] = (uint64_t)((char *)b - (char *)m->base);
}

/*
 * Small blocks of other owners go back in batches: one CAS on the owner's stack per batch
 * instead of one per message. A batch is pushed when it is full, when its thread is about
 * to sleep in a fabriq call, and when the thread exits. Blocks waiting in a batch are
 * FREEING by this process: if it dies, the owner takes them back like any other.
 */
#define SHM_BATCH       32
#define SHM_BATCH_SLOTS 4

typedef struct free_batch {
	shm_map *map;
	shm_blk *first, *last;
	unsigned n;
} free_batch;

/*
 * A thread's batches. They are listed globally so that I/O threads can push batches that
 * sit too long (a thread that freed a few messages and then went elsewhere): the owner
 * thread and a flusher take `busy` (a spin flag, never held across anything that blocks).
 */
typedef struct thread_batches {
	atomic_flag busy;
	int64_t since_ms; /* when the oldest waiting block was added, 0 = nothing waits */
	free_batch b[SHM_BATCH_SLOTS];
	struct thread_batches *next, *prev;
} thread_batches;

static _Thread_local FQI_TLS_FAST thread_batches *my_batches;
static pthread_mutex_t batches_lock = PTHREAD_MUTEX_INITIALIZER;
static thread_batches *all_batches;

static void batch_flush(free_batch *fb)
{
	if (fb->map == NULL)
		return;
	push_chain(fb->map, fb->first, fb->last);
	shm_map_unref(fb->map);
	fb->map = NULL;
	fb->n = 0;
}

static void batches_flush_locked(thread_batches *tb)
{
	for (unsigned i = 0; i < SHM_BATCH_SLOTS; i++)
		batch_flush(&tb->b[i]);
	tb->since_ms = 0;
}

static void lock_batches(thread_batches *tb)
{
	while (atomic_flag_test_and_set_explicit(&tb->busy, memory_order_acquire))
		;
}

static void unlock_batches(thread_batches *tb)
{
	atomic_flag_clear_explicit(&tb->busy, memory_order_release);
}

void shm_flush_frees(void)
{
	thread_batches *tb = my_batches;

	if (tb == NULL || tb->since_ms == 0)
		return;
	lock_batches(tb);
	batches_flush_locked(tb);
	unlock_batches(tb);
}

/* Called by I/O threads: push batches older than max_age_ms of every thread. */
void shm_flush_stale(int64_t now_ms, int64_t max_age_ms)
{
	pthread_mutex_lock(&batches_lock);
	for (thread_batches *tb = all_batches; tb != NULL; tb = tb->next) {
		if (tb->since_ms == 0 || now_ms - tb->since_ms < max_age_ms)
			continue;
		if (atomic_flag_test_and_set_explicit(&tb->busy, memory_order_acquire))
			continue; /* its thread is at it */
		batches_flush_locked(tb);
		unlock_batches(tb);
	}
	pthread_mutex_unlock(&batches_lock);
}

static void batches_thread_exit(void)
{
	thread_batches *tb = my_batches;

	if (tb == NULL)
		return;
	pthread_mutex_lock(&batches_lock);
	lock_batches(tb);
	batches_flush_locked(tb);
	if (tb->prev != NULL)
		tb->prev->next = tb->next;
	else
		all_batches = tb->next;
	if (tb->next != NULL)
		tb->next->prev = tb->prev;
	pthread_mutex_unlock(&batches_lock);
	my_batches = NULL;
	free(tb);
}

static thread_batches *batches_get(void)
{
	thread_batches *tb = my_batches;

	if (FQI_LIKELY(tb != NULL))
		return tb;
	tb = calloc(1, sizeof(*tb));
	if (tb == NULL)
		return NULL;
	atomic_flag_clear(&tb->busy);
	thread_exit_hook();
	pthread_mutex_lock(&batches_lock);
	tb->next = all_batches;
	if (all_batches != NULL)
		all_batches->prev = tb;
	all_batches = tb;
	pthread_mutex_unlock(&batches_lock);
	my_batches = tb;
	return tb;
}

/* Returns false if the block could not be batched (push it alone). */
static bool batch_add(shm_map *m, shm_blk *b)
{
	thread_batches *tb = batches_get();
	free_batch *fb = NULL;

	if (tb == NULL)
		return false;
	lock_batches(tb);
	for (unsigned i = 0; i < SHM_BATCH_SLOTS; i++) {
		if (tb->b[i].map == m) {
			fb = &tb->b[i];
			break;
		}
		if (tb->b[i].map == NULL && fb == NULL)
			fb = &tb->b[i];
	}
	if (fb == NULL) {
		fb = &tb->b[0];
		batch_flush(fb);
	}
	if (fb->map == NULL) {
		shm_map_ref(m);
		fb->map = m;
		fb->last = b;
		b->next = 0;
		if (blk_hinted(b))
			b->b = b->c = b->d = 0;
		if (tb->since_ms == 0)
			tb->since_ms = fqi_clock_ms();
	} else {
		const shm_blk *f = fb->first;

		b->next = (uint64_t)((char *)f - (char *)m->base);
		if (blk_hinted(b)) {
			/* Further down this batch: what f said, one step on. */
			b->b = f->next;
			b->c = blk_hinted(f) ? f->b : 0;
			b->d = blk_hinted(f) ? f->c : 0;
		}
	}
	fb->first = b;
	if (++fb->n >= SHM_BATCH)
		batch_flush(fb);
	unlock_batches(tb);
	return true;
}

void shm_blk_release(shm_map *m, shm_blk *b)
{
	pid_t me = shm_self();
	uint64_t w = SHM_WORD(SHM_HELD, me);

	if (m->own && !atomic_load(&m->node->closed)) {
		shm_node *n = m->node;

		pthread_mutex_lock(&n->alloc_lock);
		if (atomic_compare_exchange_strong(&b->word, &w, SHM_WORD(SHM_FREE, 0))) {
			shm_fault("free");
			blk_returned(n, m, b);
		}
		pthread_mutex_unlock(&n->alloc_lock);
		return;
	}
	/* Someone else's block (or a closed node's): back through its segment's stack. */
	if (!atomic_compare_exchange_strong(&b->word, &w, SHM_WORD(SHM_FREEING, me))) {
		FQI_DEBUG(SUBSYS, "block at %p was taken back by its owner", (void *)b);
		return;
	}
	shm_fault("free");
	if (m->dedicated || (b->kind == SHM_BLK_DATA && b->a > SHM_BATCH_MAX_BYTES) ||
	    !batch_add(m, b))
		push_one(m, b);
}

static void ref_adopted_done(shm_ref *r)
{
	if (r->adopt_fn != NULL) {
		r->adopt_fn(r->adopt_data, r->adopt_hint);
		r->adopt_fn = NULL;
	}
}

/*
 * Put an own data block that this process holds alone (no stub out: a part that went inline,
 * a received inline part, a message never sent, or one that came back) into this thread's
 * magazine of its class, with the map reference the message held: no lock, no locked
 * instruction, and the header line stays in this cache. Only while that magazine is below its
 * last refill (taken > 0), so it never holds more than a refill. False: the caller frees it
 * the usual way.
 */
static bool mag_free(shm_map *m, shm_blk *b)
{
	shm_node *n = m->node;
	magazine *mags, *g = NULL;

	if (!m->own || m->dedicated || b->kind != SHM_BLK_DATA ||
	    atomic_load_explicit(&n->closed, memory_order_relaxed) ||
	    __atomic_load_n(&b->local_refs, __ATOMIC_ACQUIRE) != 1 || /* no stub is out */
	    atomic_load_explicit(&b->word, memory_order_relaxed) != SHM_WORD(SHM_HELD, shm_self()))
		return false;
	mags = mags_ptr; /* none yet: nothing to put it in */
	for (unsigned i = 0; mags != NULL && i < SHM_MAG_SLOTS; i++) {
		if (mags[i].node == n && mags[i].cls == b->cls) {
			g = &mags[i];
			break;
		}
	}
	if (g == NULL || g->taken == 0 || g->count >= SHM_MAG)
		return false;
	shm_fault("free");
	atomic_store_explicit(&b->word, SHM_WORD(SHM_FREE, 0), memory_order_relaxed);
	g->blk[g->count] = b;
	g->map[g->count] = m;
	g->count++;
	g->taken--; /* as if it had never been handed out */
	return true;
}

static void ref_release(shm_ref *r)
{
	ref_adopted_done(r);
	if (r->blk == NULL)
		return; /* adopted user memory: no block */
	if (r->dmap == r->map && mag_free(r->map, r->blk))
		return;
	shm_blk_release(r->map, r->blk);
	if (r->dmap != r->map)
		shm_map_unref(r->dmap);
	shm_map_unref(r->map);
}

/* ---- Messages --------------------------------------------------------------------------- */

int shm_msg_new(fq_transport *t, shm_map *map, shm_map *dmap, shm_blk *blk, void *data, size_t size,
                fq_msg **out)
{
	shm_msg *m = wrap_get();

	if (m == NULL)
		return FQ_ENOMEM;
	m->base.ops = &shm_msg_ops;
	m->base.t = t;
	m->base.data = data;
	m->base.size = size;
	atomic_init(&m->embedded.refs, 1);
	m->embedded.map = map;
	m->embedded.dmap = dmap;
	m->embedded.blk = blk;
	m->embedded.host = m;
	m->embedded.adopt_fn = NULL;
	m->embedded.small = false;
	m->ref = &m->embedded;
	*out = &m->base;
	return 0;
}

void shm_msg_forget(fq_msg *msg)
{
	shm_msg *m = (shm_msg *)msg;
	shm_ref *r = m->ref;
	shm_msg *host = r->host;

	ref_adopted_done(r);
	if (r->dmap != r->map)
		shm_map_unref(r->dmap);
	if (r->map->own)
		map_unref_spare(r->map);
	else
		shm_map_unref(r->map);
	wrap_put(host);
	if (host != m)
		wrap_put(m);
}

/* The node of a transport instance (defined in shmem.c). */
shm_node *shm_node_of(fq_transport *t);

/* A message over a data block just allocated (given back if the wrapper fails). */
static int msg_of_block(fq_transport *t, shm_map *map, shm_blk *blk, size_t size, fq_msg **out)
{
	int rc = shm_msg_new(t, map, map, blk, (char *)blk + SHM_BLK_HDR, size, out);

	if (rc != 0) {
		shm_blk_release(map, blk);
		shm_map_unref(map);
	}
	return rc;
}

/* A message over a new data block; at the limit, waits up to alloc_timeout if `wait`. */
static int msg_block(fq_transport *t, size_t size, bool wait, fq_msg **out)
{
	shm_node *n = shm_node_of(t);
	shm_map *map;
	shm_blk *blk;
	int rc = wait ? shm_alloc(n, SHM_BLK_DATA, size, &map, &blk)
	              : shm_alloc_nowait(n, SHM_BLK_DATA, size, &map, &blk);

	return rc != 0 ? rc : msg_of_block(t, map, blk, size, out);
}

int shm_msg_alloc_block(fq_transport *t, size_t size, fq_msg **out)
{
	return msg_block(t, size, false, out);
}

static int msg_alloc(fq_transport *t, size_t size, fq_msg **out)
{
	if (size < shm_node_of(t)->small_below)
		return small_new(t, size, out);
	return msg_block(t, size, true, out);
}

/*
 * Adopted memory stays where it is: the message points at the user's buffer, and a send on a
 * shmem socket copies it once into a segment (user memory cannot be handed to another
 * process after the fact). The buffer is given back when the last wrapper goes.
 */
static int msg_adopt(fq_transport *t, void *data, size_t size, fqi_free_fn free_fn, void *hint,
                     fq_msg **out)
{
	int rc = shm_msg_new(t, NULL, NULL, NULL, data, size, out);
	shm_ref *r;

	if (rc != 0)
		return rc;
	r = ((shm_msg *)*out)->ref;
	r->adopt_fn = free_fn;
	r->adopt_data = data;
	r->adopt_hint = hint;
	return 0;
}

static void private_free(void *data, void *hint)
{
	(void)hint;
	free(data);
}

int shm_msg_copy_in(fq_transport *t, const void *src, size_t size, fq_msg **out)
{
	shm_node *n = shm_node_of(t);
	size_t cap = (size + n->align - 1) & ~(n->align - 1);
	shm_map *map;
	shm_blk *blk;
	void *data;
	int rc;

	if (size < n->small_below) {
		rc = small_new(t, size, out);
		if (rc == 0 && size != 0)
			memcpy((*out)->data, src, size);
		return rc;
	}
	if (size <= SHM_INL_MAX && shm_alloc_nowait(n, SHM_BLK_DATA, size, &map, &blk) == 0) {
		if (size != 0)
			memcpy((char *)blk + SHM_BLK_HDR, src, size);
		return msg_of_block(t, map, blk, size, out);
	}
	/* At the segment limit (or closing): private memory, aligned alike. */
	data = aligned_alloc(n->align, cap != 0 ? cap : n->align);
	if (data == NULL)
		return FQ_ENOMEM;
	if (size != 0)
		memcpy(data, src, size);
	rc = msg_adopt(t, data, size, private_free, NULL, out);
	if (rc != 0)
		free(data);
	return rc;
}

static int msg_copy(const fq_msg *src, fq_msg **out)
{
	const shm_msg *s = (const shm_msg *)src;
	shm_msg *m = wrap_get();

	if (m == NULL)
		return FQ_ENOMEM;
	m->base = s->base;
	m->ref = s->ref;
	atomic_fetch_add_explicit(&s->ref->refs, 1, memory_order_relaxed);
	*out = &m->base;
	return 0;
}

static int msg_shrink(fq_msg *m, size_t size)
{
	m->size = size;
	return 0;
}

static void msg_free(fq_msg *msg)
{
	shm_msg *m = (shm_msg *)msg;
	shm_ref *r = m->ref;
	shm_msg *host = r->host;

	/* The last wrapper needs no locked instruction: nobody else can copy it any more. */
	if (atomic_load_explicit(&r->refs, memory_order_acquire) == 1 ||
	    atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
		if (r->small) {
			small_put(host);
		} else {
			ref_release(r);
			wrap_put(host);
		}
	}
	if (host != m)
		wrap_put(m);
}

const fqi_msg_ops shm_msg_ops = {
    .size = sizeof(fqi_msg_ops),
    .alloc = msg_alloc,
    .adopt = msg_adopt,
    .copy = msg_copy,
    .shrink = msg_shrink,
    .free = msg_free,
};

void shm_node_stats(shm_node *n, shm_stats *st)
{
	magazine *mags = mags_ptr;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&n->alloc_lock);
	collect_locked(n);
	for (size_t i = 0; i < n->nsegs; i++) {
		shm_map *m = n->segs[i];
		shm_seg_hdr *h;

		if (m == NULL)
			continue;
		h = m->base;
		st->segments++;
		st->segment_bytes += m->size;
		st->blocks_out += atomic_load(&h->blocks_out);
		st->used_bytes += atomic_load(&h->used_bytes);
	}
	pthread_mutex_unlock(&n->alloc_lock);
	/* This thread's hand-outs (other threads tell theirs at their next refill). */
	for (unsigned i = 0; mags != NULL && i < SHM_MAG_SLOTS; i++) {
		if (mags[i].node == n && mags[i].taken != 0) {
			atomic_fetch_sub(&n->mag_blocks, mags[i].taken);
			mags[i].taken = 0;
		}
	}
	st->blocks_out -= atomic_load(&n->mag_blocks); /* free, in threads' magazines */
	st->reclaimed_blocks = atomic_load(&n->reclaimed_blocks);
	st->dropped_entries = atomic_load(&n->dropped_entries);
}

/* ---- Node ------------------------------------------------------------------------------- */

int shm_node_mem_init(shm_node *n)
{
	atomic_init(&n->refs, 1);
	n->pid = shm_self();
	if (pthread_mutex_init(&n->alloc_lock, NULL) != 0)
		return FQ_ENOMEM;
	return 0;
}

/* The transport closes: own segments stay mapped while messages point into them. */
void shm_node_mem_fini(shm_node *n)
{
	shm_flush_magazines(); /* this thread's; other threads give theirs back when they
	                        * next allocate or exit (their blocks keep the maps alive) */
	shm_flush_frees();
	shm_spares_flush();
	pthread_mutex_lock(&n->alloc_lock);
	collect_locked(n);
	atomic_store(&n->closed, true);
	for (size_t i = 0; i < n->nsegs; i++) {
		shm_map *m = n->segs[i];

		n->segs[i] = NULL;
		if (m != NULL)
			shm_map_unref(m);
	}
	pthread_mutex_unlock(&n->alloc_lock);
	node_unref(n);
}
