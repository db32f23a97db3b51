/*
 * The ofi transport's private header: messages and the registered-memory pool (ofi_msg.c),
 * shared with the protocol engine (ofi.c).
 *
 * Every message points at a buffer (ofi_buf) that knows how a peer may read it:
 * - pool buffers (16 KiB and up, from fq_msg_alloc and for received rendezvous data) are
 *   registered once when made and recycled by size class: no registration in steady state;
 * - region messages use the region's registration (made once at fq_region_open);
 * - small messages (plain malloc) and adopted user memory have none: they travel eagerly
 *   (copied) or, in a rendezvous, through the registration cache.
 * Buffers are reference-counted (fq_msg_copy shares them) and outlive the transport: its close
 * drops every registration first (ofi_pool_close), and a late free only returns memory.
 */
#ifndef FQI_OFI_H
#define FQI_OFI_H

#include "core/transport.h"
#include "transport/ofi/ofi_fabric.h"

typedef struct ofi_pool ofi_pool;

typedef struct ofi_buf {
	_Atomic long refs;
	unsigned char *data;
	size_t cap;
	const ofi_mr *reg;   /* the registration a peer reads through, or NULL */
	ofi_mr own;          /* pool buffers: their registration (reg points here) */
	ofi_pool *pool;      /* pool buffers: where they go back */
	int cls;             /* pool size class, or -1 for an exact size (not kept) */
	bool embedded;       /* small: allocated with its first message (msg, buf, data) */
	bool no_reuse;       /* a lost peer may still read it: unmapped when freed, never reused */
	fqi_free_fn free_fn; /* adopted memory and region messages */
	void *hint;
	struct ofi_buf *next, *prev; /* pool: free list of the class, or the live list */
} ofi_buf;

typedef struct ofi_msg {
	fq_msg m;
	ofi_buf *b;
} ofi_msg;

extern const fqi_msg_ops ofi_msg_ops;
extern const fqi_region_ops ofi_region_ops;

/* The pool: `cache_bytes` of freed buffers kept registered for reuse. */
int ofi_pool_new(ofi_fabric *f, size_t cache_bytes, ofi_pool **out);
/* At transport close: every registration it holds is dropped; buffers stay valid memory. */
void ofi_pool_close(ofi_pool *p);
/* Buffers made so far (each one registration). */
uint64_t ofi_pool_made(ofi_pool *p);

/*
 * Make a message of `size` bytes; `registered` asks for pool memory even when small (the
 * destination of an RMA read). Errors: FQ_ENOMEM, registration errors.
 */
int ofi_msg_new(fq_transport *t, ofi_pool *p, size_t size, bool registered, fq_msg **out);

/*
 * A peer was lost while it may still read m (its rendezvous never finished): when freed, its
 * pool buffer is deregistered and unmapped instead of being reused, so a late read gets
 * nobody else's bytes (or fails) rather than those of a newer message.
 */
void ofi_msg_no_reuse(fq_msg *m);

/* The transport's pool (ofi.c). */
ofi_pool *ofi_pool_of(fq_transport *t);

/* What an instance holds now (tests check that peers leave nothing behind; fq-bench shows
 * the registrations). */
typedef struct ofi_stats {
	size_t conns;           /* connection objects, live or waiting to be freed */
	size_t rbufs_posted;    /* receive buffers made and posted */
	size_t rbufs_reserved;  /* of them, promised to live connections */
	size_t reads_out;       /* RMA reads in flight */
	size_t reads_retired;   /* reads of lost peers the provider has not ended (no memory) */
	uint64_t registrations; /* fi_mr_reg calls so far */
	uint64_t pool_made;     /* pool buffers made (each one registration) */
	uint64_t rcache_misses; /* registrations made by the cache */
	size_t rcache_entries;
} ofi_stats;
void ofi_transport_stats(fq_transport *t, ofi_stats *out);

#endif /* FQI_OFI_H */
