/*
 * shmem transport: the layouts that live in shared memory and the private state around them.
 *
 * Everything a peer can read or write sits in memory-backed files (memfd) that are mapped by
 * the processes that need them and passed over the Unix-domain connection (SCM_RIGHTS):
 *
 *   segment  = header page (owner identity, free stack, user table) + blocks
 *   block    = 64-byte header (holder word, free-stack link, kind) + data
 *   ring     = single-producer/single-consumer queue of 32-byte entries, one per direction
 *              and connection, created by its consumer, followed by an inline area: the
 *              bytes of small parts (up to the producer's inline_max) travel there, copied,
 *              instead of in a block (no block header crosses between the cores for them)
 *
 * Crash safety rests on one rule: who holds a block is written in the block's holder word
 * (state | pid), and every change of holder is one compare-and-swap on that word. The owner
 * (the only process that allocates from a segment) watches every process that mapped its
 * segments (user table + pidfd) and, when one dies, takes back the blocks whose word names
 * it. No cross-process lock exists anywhere. See docs/man/fabriq-shmem.7.md.
 */
#ifndef FQI_SHM_H
#define FQI_SHM_H

#include "core/core.h"
#include "core/transport.h"

#include <stdalign.h>
#include <sys/types.h>

#define SHM_SEG_MAGIC    0x3147455351465aULL /* "ZFQSEG1" */
#define SHM_RING_MAGIC   0x32474e49525146ULL /* "FQRING2" */
#define SHM_BLK_MAGIC    0xfab10c51u
#define SHM_VERSION      2u
#define SHM_HDR_BYTES    4096u /* segment header page */
#define SHM_BLK_HDR      64u   /* block header */
#define SHM_USERS        62u   /* processes that may map one segment */
#define SHM_CACHE_LINE   64u
#define SHM_MAX_PARTS    65535u
#define SHM_SEG_INLINE   UINT32_MAX /* ring entry whose part lies in the ring's inline area */
#define SHM_INL_ALIGN    16u        /* inline parts start on multiples of this */
#define SHM_INL_MAX      4096u      /* largest inline_max */
#define SHM_SMALL_MAX    256u       /* largest message kept in private memory */
#define SHM_INL_AREA_MIN 16384u     /* smallest inline area (of a ring of 256 entries) */

/* Segment kinds. */
enum { SHM_SEG_POOL = 1, SHM_SEG_REGION = 2 };

/* Block kinds. */
enum { SHM_BLK_DATA = 1, SHM_BLK_STUB = 2, SHM_BLK_REGION = 3 };

/* Holder word: state in the high half, pid in the low half. */
enum { SHM_FREE = 0, SHM_HELD = 1, SHM_FREEING = 2 };
#define SHM_WORD(state, pid) (((uint64_t)(state) << 32) | (uint32_t)(pid))
#define SHM_WORD_STATE(w)    ((uint32_t)((w) >> 32))
#define SHM_WORD_PID(w)      ((pid_t)(uint32_t)(w))

typedef struct shm_seg_hdr {
	uint64_t magic;
	uint32_t version, kind;
	uint64_t owner_id; /* random id of the owning node (transport instance) */
	uint32_t owner_pid, idx;
	uint64_t size;         /* bytes of the whole file */
	uint32_t align;        /* data alignment: block sizes follow shm_block_bytes() */
	uint32_t dedicated;    /* one block only */
	uint64_t first_off;    /* offset of the first block */
	_Atomic uint64_t bump; /* end of the carved blocks (owner-written, for monitors) */
	char session[32];      /* the transport's session label (fq-shmmon groups by it) */
	alignas(64) _Atomic uint64_t free_head; /* stack of returned blocks (offset, 0 = empty) */
	alignas(64) _Atomic uint64_t users[SHM_USERS]; /* pids that mapped the segment, 0 = free */
	/* Owner-written figures for fq-shmmon. */
	alignas(64) _Atomic uint64_t used_bytes;
	_Atomic uint64_t blocks_out;
} shm_seg_hdr;
_Static_assert(sizeof(shm_seg_hdr) <= SHM_HDR_BYTES, "segment header fits its page");

typedef struct shm_blk {
	_Atomic uint64_t word; /* holder: SHM_WORD(state, pid) */
	uint64_t next;         /* free-stack link (offset of the next block, 0 = end) */
	uint32_t magic;
	uint16_t kind, cls; /* SHM_BLK_*; size class (owner) */
	uint64_t a;         /* DATA: capacity; STUB: target (seg << 48 | off); REGION: region */
	/*
	 * REGION: offset in the region, size, hint. DATA and STUB on a stack of returned blocks:
	 * offsets of the blocks 2, 3 and 4 steps further down the stack, as the returner
	 * expects them: the collector prefetches those headers instead of finding each one
	 * only when it reads the previous one's link. Never trusted: a wrong or stale hint
	 * costs a useless prefetch.
	 */
	uint64_t b, c, d;
	uint32_t local_refs; /* owner-private: stubs out + 1 while the owner holds the block */
	uint32_t pad;
} shm_blk;
_Static_assert(sizeof(shm_blk) == SHM_BLK_HDR, "block header is one cache line");

/*
 * A ring entry: one part of a vector (the first entry of a vector carries the part count).
 * An inline part has seg SHM_SEG_INLINE, no block, and its bytes at doff, a position in the
 * ring's inline area that only grows (the area is used modulo icap; a part never wraps).
 */
typedef struct shm_ent {
	uint32_t seg;  /* connection index of the block's segment, or SHM_SEG_INLINE */
	uint32_t dseg; /* connection index of the data's segment or region */
	uint64_t blk;  /* block offset (low 48 bits) | parts in the vector << 48 (first entry) */
	uint64_t doff; /* data offset in dseg (inline: position in the inline area) */
	uint64_t size; /* data bytes */
} shm_ent;
_Static_assert(sizeof(shm_ent) == 32, "ring entry is 32 bytes");

typedef struct shm_ring {
	/* Producer's line. */
	alignas(64) _Atomic uint64_t head;
	_Atomic uint64_t head_bytes;
	/* Consumer's line. */
	alignas(64) _Atomic uint64_t tail;
	_Atomic uint64_t tail_bytes;
	_Atomic uint64_t itail; /* inline area: everything before this position was read */
	/*
	 * The sleep flags have lines of their own: they change rarely, so the side that reads
	 * them after every publish (or pop) finds them in its cache.
	 */
	alignas(64) _Atomic uint32_t prod_waiting;  /* producer sleeps until tail moves */
	alignas(64) _Atomic uint32_t cons_sleeping; /* consumer sleeps until head moves */
	/* Fixed at creation (consumer), or set by it. */
	alignas(64) uint64_t magic;
	uint32_t cap;               /* entries, a power of two */
	uint32_t hwm;               /* most entries queued (the consumer's rcv_hwm) */
	_Atomic uint64_t hwm_bytes; /* most bytes queued (rcv_hwm_bytes), 0 = no limit */
	_Atomic uint32_t closed;    /* consumer closed: the producer stops */
	uint64_t ioff, icap;        /* inline area: offset from the ring, bytes (a power of two) */
	alignas(64) shm_ent ent[];
} shm_ring;

/* ---- Control messages ------------------------------------------------------------------- */

/*
 * One struct per SOCK_SEQPACKET message, sent as offsetof(text) + len bytes. HELLO carries
 * three fds (the sender's inbound ring, its socket's efd_in and efd_out), SEG one (the
 * segment or region); SUB/UNSUB carry a prefix in text; BYE announces an orderly close.
 */

#define CTL_MAGIC 0x4c544346u /* "FCTL" */
#define CTL_TEXT  1024

enum { CTL_HELLO = 1, CTL_SEG, CTL_SUB, CTL_UNSUB, CTL_BYE };

typedef struct ctl_msg {
	uint32_t magic, type;
	uint32_t version, sock_type;
	uint64_t node_id;
	uint32_t pid, rcv_hwm;
	uint32_t idx, kind;
	uint64_t owner_id;
	uint32_t owner_pid, seg_idx;
	uint64_t size;
	uint32_t len, pad;
	char text[CTL_TEXT];
} ctl_msg;

/* Segments one connection can announce: SHM_SEG_CHUNKS x SHM_SEG_CHUNK indexes. */
#define SHM_SEG_CHUNK  256
#define SHM_SEG_CHUNKS 256

/* ---- Private state ---------------------------------------------------------------------- */

/*
 * A mapping of one memfd (own or a peer's segment, a region, a ring). Reference counted:
 * the node's table holds one, every live message into it one more.
 */
typedef struct shm_map {
	_Atomic long refs;
	int fd;
	void *base;
	size_t size;
	uint64_t owner_id;
	uint32_t owner_pid, idx, kind;
	bool own;        /* created by this node */
	bool dedicated;  /* one block only (messages larger than a pool segment) */
	bool registered; /* our pid is in its user table */
	/* Owner side: allocation state. */
	size_t bump;                     /* next free offset */
	bool cached;                     /* dedicated segment whose block is back, kept for reuse */
	uint64_t blocks_out, used_bytes; /* owner's figures, mirrored into the header */
	struct shm_region_priv *region;  /* region segments: the region */
	struct shm_node *node;           /* own maps: the owner node (holds a node reference) */
} shm_map;

/*
 * A held block, shared by the wrappers that fq_msg_copy makes within the process. It lives
 * inside the first wrapper (`host`), which is freed when the last wrapper goes.
 */
typedef struct shm_ref {
	_Atomic long refs;
	shm_map *map;  /* block's segment */
	shm_map *dmap; /* data's segment or region (== map for DATA) */
	shm_blk *blk;
	struct shm_msg *host;
	/* fq_msg_adopt: the user's buffer (copied into blk), given back when the copy goes. */
	fqi_free_fn adopt_fn;
	void *adopt_data, *adopt_hint;
	bool small; /* host is a small message: its bytes follow it in private memory */
} shm_ref;

typedef struct shm_msg {
	fq_msg base;
	shm_ref *ref;
	shm_ref embedded;
} shm_msg;

/*
 * Ask for a cache line in exclusive state ahead of a write (PREFETCHW), so that the
 * transfer from the other core overlaps with other work instead of stalling the write.
 */
static inline void shm_prefetch_write(const void *p)
{
#if defined(__x86_64__)
	__asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1, 3);
#endif
}

/* Allocator size classes: 4 steps per power of two above 256 bytes. */
#define SHM_CLASSES 192

static inline unsigned shm_class_of(size_t bytes)
{
	unsigned lg;
	size_t base;

	if (bytes <= 4 * SHM_CACHE_LINE)
		return (unsigned)((bytes + SHM_CACHE_LINE - 1) / SHM_CACHE_LINE);
	lg = 63u - (unsigned)__builtin_clzll((unsigned long long)(bytes - 1)); /* 2^lg < bytes */
	base = (size_t)1 << lg;
	return 4 + (lg - 8) * 4 + (unsigned)((bytes - 1 - base) / (base / 4)) + 1;
}

static inline size_t shm_class_bytes(unsigned cls)
{
	unsigned lg;

	if (cls <= 4)
		return (size_t)cls * SHM_CACHE_LINE;
	lg = 8 + (cls - 5) / 4;
	return ((size_t)1 << lg) + ((size_t)1 << lg) / 4 * ((cls - 5) % 4 + 1);
}

/* Bytes a block of class `cls` takes in a pool segment with data alignment `align`. */
static inline size_t shm_block_bytes(size_t align, unsigned cls)
{
	return (shm_class_bytes(cls) + align - 1) & ~(align - 1);
}

typedef struct shm_region_priv shm_region_priv;

/*
 * A node is one transport instance: it owns segments and regions and allocates from them.
 * It is freed when the transport is closed and no map of it is left (messages outlive it).
 */
typedef struct shm_node {
	_Atomic long refs; /* the transport + one per own map */
	_Atomic bool closed;
	fq_transport *t;
	uint64_t id;
	pid_t pid;
	/* Options. */
	size_t seg_size, limit, align;
	char session[32];
	int64_t alloc_timeout_ms;
	bool prefault;
	size_t small_below; /* shorter messages live in private memory (shm_mem.c); 0: none */
	/* Allocator: only this process allocates from its segments. */
	pthread_mutex_t alloc_lock;
	shm_map **segs; /* own segments by index (NULL when retired) */
	size_t nsegs, cap_segs;
	size_t total;                   /* bytes of own segments */
	shm_map *current;               /* pool segment being carved */
	size_t collect_at;              /* where an allocation's look at the returns goes on */
	shm_blk *free_cls[SHM_CLASSES]; /* private free lists, latest first (linked through
	                                 * blk->next) */
	uint32_t back_seg[SHM_CLASSES]; /* segment a block of the class last came back to */
	_Atomic uint64_t outstanding_region_msgs;
	_Atomic uint64_t mag_blocks; /* free blocks sitting in threads' magazines */
	/* Statistics (fq-shmmon, tests). */
	_Atomic uint64_t reclaimed_blocks, dropped_entries;
} shm_node;

/* ---- shm_mem.c -------------------------------------------------------------------------- */

extern const fqi_msg_ops shm_msg_ops;

int shm_node_mem_init(shm_node *n);
void shm_node_mem_fini(shm_node *n);
/*
 * Allocate a block of `kind` with `size` data bytes, held by this process; *map gets one
 * reference. Waits up to alloc_timeout at the segment limit, then FQ_ENOMEM.
 */
int shm_alloc(shm_node *n, int kind, size_t size, shm_map **map, shm_blk **blk);
/* shm_alloc without waiting: FQ_ENOMEM at the limit at once (for callers that hold a socket
 * lock, which the I/O thread and the reclaim of a dead peer's blocks may need). */
int shm_alloc_nowait(shm_node *n, int kind, size_t size, shm_map **map, shm_blk **blk);
/*
 * One step of a wait for memory at the segment limit: returns this thread's freed blocks,
 * sleeps 200 us and says whether to try again (false once alloc_timeout has passed since
 * the first step; *deadline is -2 before it). Call it without any lock held.
 */
bool shm_alloc_backoff(shm_node *n, int64_t *deadline);
/* A message over a held block (takes the map references; dmap may equal map). */
int shm_msg_new(fq_transport *t, shm_map *map, shm_map *dmap, shm_blk *blk, void *data, size_t size,
                fq_msg **out);
/*
 * A message of `size` (at most SHM_INL_MAX) bytes copied from `src` (an inline part that
 * arrived): a small message if it is one, else into an own block taken without waiting, or
 * at the segment limit into private memory with the same alignment. Errors: FQ_ENOMEM.
 */
int shm_msg_copy_in(fq_transport *t, const void *src, size_t size, fq_msg **out);
/* A message over a new data block of `size` bytes, even a small one, taken without waiting.
 * Errors: FQ_ENOMEM (at the limit), FQ_ECLOSED. */
int shm_msg_alloc_block(fq_transport *t, size_t size, fq_msg **out);
/* Drop a wrapper whose block was handed on (the only wrapper of its block). */
void shm_msg_forget(fq_msg *m);
/*
 * A stub: a small own block that stands for one more reference to own block `target`, so
 * that one block can be held by several processes at once (each holds its own stub). Taken
 * without waiting (FQ_ENOMEM at the limit).
 */
int shm_make_stub(shm_node *n, shm_map *tmap, shm_blk *target, shm_map **map, shm_blk **stub);
/* Give up a block we hold (holder word is ours): to the owner's free stack or our lists. */
void shm_blk_release(shm_map *map, shm_blk *b);
/* A new own segment / retire one (alloc_lock held). */
int shm_seg_new(shm_node *n, size_t size, uint32_t kind, bool dedicated, shm_map **out);
void shm_seg_retire(shm_node *n, shm_map *m);
/* Process returned blocks of own segments; reclaim blocks of dead pids. */
void shm_collect(shm_node *n);
void shm_reclaim_pid(shm_node *n, pid_t dead);
/* Map a peer's memfd (takes fd on success). */
int shm_map_peer(int fd, shm_map **out);
void shm_map_unref(shm_map *m);
void shm_map_ref(shm_map *m);
/* Register our pid in a foreign segment's user table. */
bool shm_register_user(shm_map *m);
/* Figures of a node's own segments (returned blocks are collected first). */
typedef struct shm_stats {
	uint64_t segments, segment_bytes;
	uint64_t blocks_out; /* allocated and not back: held here, by peers or in flight */
	uint64_t used_bytes;
	uint64_t reclaimed_blocks; /* taken back from dead processes */
	uint64_t dropped_entries;  /* handles whose block was taken back before we got it */
} shm_stats;
void shm_node_stats(shm_node *n, shm_stats *st);
shm_node *shm_node_of(fq_transport *t);

/* This process's pid (cached; reset in a forked child). */
pid_t shm_self(void);
void shm_self_atfork(void);
/* Push this thread's batches of returned blocks to their owners (before sleeping). */
void shm_flush_frees(void);
/* Give this thread's magazines of free blocks back to their nodes. */
void shm_flush_magazines(void);
/* Give back this thread's spare references to an own segment. */
void shm_spares_flush(void);
/* Push every thread's batches older than max_age_ms (I/O threads, periodically). */
void shm_flush_stale(int64_t now_ms, int64_t max_age_ms);
/* Blocks up to this many data bytes go back to their owner in batches. */
#define SHM_BATCH_MAX_BYTES 65536
/*
 * Fault injection for tests: SIGKILL this process at `point` when the environment variable
 * FQ_SHM_FAULT names it (after FQ_SHM_FAULT_AFTER earlier hits). Points: alloc, free,
 * ring_push, ring_pop, refcount, region_ack, segment_grow.
 */
extern const char *shm_fault_point; /* (const char *)1 until the environment was read */
void shm_fault_hit(const char *point);
static inline void shm_fault(const char *point)
{
	if (FQI_UNLIKELY(shm_fault_point != NULL))
		shm_fault_hit(point);
}

#endif /* FQI_SHM_H */
