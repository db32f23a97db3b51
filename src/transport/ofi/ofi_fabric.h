/*
 * The libfabric layer of the ofi transport: one reliable-datagram endpoint per transport
 * instance (fabric, domain, address vector, completion queue), memory registration that obeys
 * every mr_mode bit real verbs hardware demands, a bounded registration cache, and the three
 * operations the protocol needs: post a receive, send a vector, read remote memory.
 *
 * Threads: every call takes the fabric's lock (the domain is opened FI_THREAD_DOMAIN: the
 * application serialises). Completions are read by whoever calls ofi_fabric_progress; the
 * provider moves data only then (tcp;ofi_rxm and shm have manual data progress).
 *
 * Strict mode: the code always behaves as if the provider demanded FI_MR_LOCAL (every local
 * buffer registered, descriptors always passed), FI_MR_ALLOCATED (only mapped memory is
 * registered), FI_MR_PROV_KEY (keys are read back with fi_mr_key and shipped to the peer) and
 * FI_MR_ENDPOINT (registrations are bound to the endpoint where the provider allows it); the
 * remote address of an RMA follows the provider's FI_MR_VIRT_ADDR bit (virtual address) or
 * its absence (offset in the registration). `ofi_caps.mr_mode` says what the code obeys;
 * tests flip its bits.
 */
#ifndef FQI_OFI_FABRIC_H
#define FQI_OFI_FABRIC_H

#include "core/core.h"

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <sys/uio.h>

#define OFI_NAME_MAX 64 /* bytes of an endpoint name (fi_getname) we can carry */

/* The provider's limits, and the memory-registration rules the code obeys. */
typedef struct ofi_caps {
	uint64_t mr_mode; /* FI_MR_* bits obeyed: the provider's, plus the strict ones */
	size_t iov_limit, rma_iov_limit, mr_iov_limit;
	size_t inject_size, max_msg_size;
	bool wait_fd; /* the CQ has a pollable fd; else the caller polls with a timer */
} ofi_caps;

typedef struct ofi_fabric {
	pthread_mutex_t lock;
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	int cq_fd; /* -1 without FI_WAIT_FD */
	ofi_caps caps;
	char name[OFI_NAME_MAX];
	size_t namelen;
	char prov[64];
	_Atomic uint64_t registrations; /* fi_mr_reg calls so far (fq-bench shows them) */
	uint64_t next_key;              /* requested keys, where the provider takes ours */
	/* Completions read while retrying a post, run by the next ofi_fabric_progress (a post
	 * never runs callbacks: its caller may hold the locks they take). Under `lock`. */
	struct ofi_done *deferred;
	size_t n_deferred, cap_deferred;
	bool counted_shm; /* an shm endpoint of this process (see shm_clear_stale) */
} ofi_fabric;

/*
 * An operation's context: the provider's scratch space (FI_CONTEXT/FI_CONTEXT2 mode) first,
 * then what the completion handler needs. Embed it at the start of the caller's record.
 */
typedef struct ofi_op {
	struct fi_context2 fi_ctx;
	void (*done)(struct ofi_op *op, int status, size_t len); /* status 0 or FQ_E* */
} ofi_op;

/*
 * Open the endpoint on `provider` ("tcp;ofi_rxm", "shm", "verbs;ofi_rxm", ...; NULL: the
 * first of FI_PROVIDER, then the default order verbs;ofi_rxm, shm, tcp;ofi_rxm). `node`
 * (may be NULL) is the local address to use ("127.0.0.1"). Errors: FQ_EUNAVAIL (no such
 * provider, or it lacks RDM + MSG + RMA read), FQ_ENOMEM, wrapped libfabric errors.
 */
int ofi_fabric_open(ofi_fabric *f, const char *provider, const char *node, bool strict);
/* Load libfabric (once, on first use): 0, or FQ_EUNAVAIL when it cannot be loaded. */
int ofi_lib(void);
/* Close the endpoint alone (its posted operations are cancelled): the buffers they named may
 * be deregistered and freed after it, before ofi_fabric_close. */
void ofi_fabric_close_ep(ofi_fabric *f);
/*
 * May the caller sleep on cq_fd now (fi_trywait)? false: completions are there, or the
 * provider needs progress first. Only with caps.wait_fd.
 */
bool ofi_fabric_can_sleep(ofi_fabric *f);
/* Close everything; every operation must have completed or been cancelled. */
void ofi_fabric_close(ofi_fabric *f);
/* libfabric's error code (negative FI_E*, or positive errno from a completion) as FQ_E*. */
int ofi_err(int fi_rc);

/* Add a peer's endpoint name to the address vector. */
int ofi_av_insert(ofi_fabric *f, const void *name, size_t len, fi_addr_t *out);
void ofi_av_remove(ofi_fabric *f, fi_addr_t addr);

/* A registration: local descriptor, key for the peer, and what the peer must address. */
typedef struct ofi_mr {
	struct fid_mr *mr;
	void *desc;
	uint64_t key;
	void *base;
	size_t len;
} ofi_mr;

/* Register [buf, buf + len) for `access` (FI_SEND | FI_RECV | FI_READ | FI_REMOTE_READ ...). */
int ofi_mr_reg(ofi_fabric *f, void *buf, size_t len, uint64_t access, ofi_mr *out);
void ofi_mr_dereg(ofi_fabric *f, ofi_mr *m);
/* The address a peer passes to fi_read for p inside m (virtual address or offset). */
uint64_t ofi_mr_raddr(const ofi_fabric *f, const ofi_mr *m, const void *p);

/*
 * The registration cache, for memory the transport did not allocate (adopted user buffers):
 * at most `max_entries` registrations and `max_bytes` registered; a hit on a covering
 * registration costs no fi_mr_reg. Entries in use are never evicted; unused ones go least
 * recently used first. Thread-safe.
 */
typedef struct ofi_rcache ofi_rcache;
int ofi_rcache_new(ofi_fabric *f, size_t max_entries, size_t max_bytes, ofi_rcache **out);
void ofi_rcache_free(ofi_rcache *c);
/* A registration covering [buf, buf + len), held until ofi_rcache_put. */
int ofi_rcache_get(ofi_rcache *c, void *buf, size_t len, const ofi_mr **out);
void ofi_rcache_put(ofi_rcache *c, const ofi_mr *m);
/* Figures: hits, misses (= registrations made), evictions, entries now. */
void ofi_rcache_stats(ofi_rcache *c, uint64_t *hits, uint64_t *misses, uint64_t *evictions,
                      size_t *entries);

/*
 * Post operations. -FI_EAGAIN from the provider is retried after reading the CQ (never
 * dropped) up to a bound, then FQ_EAGAIN. The completions read meanwhile are kept for the
 * next ofi_fabric_progress: a post never runs done() callbacks, so it may be called with the
 * caller's own locks held. The op's done() runs from ofi_fabric_progress.
 */
/*
 * Every local buffer comes with the registration it lies in (its descriptor goes to the
 * provider). Where FI_MR_LOCAL is obeyed (verbs, or strict mode) a buffer outside its
 * registration is refused with FQ_EINVAL and logged: strict mode on a lenient provider finds
 * the mistakes verbs hardware would punish.
 */
int ofi_post_recv(ofi_fabric *f, void *buf, size_t len, const ofi_mr *mr, ofi_op *op);
/* Send n <= caps.iov_limit buffers as one message (mr[i]: the registration of iov[i]). */
int ofi_post_send(ofi_fabric *f, const struct iovec *iov, const ofi_mr *const *mr, size_t n,
                  fi_addr_t to, ofi_op *op);
/* Read len bytes at the peer's (raddr, key) into buf. */
int ofi_post_read(ofi_fabric *f, void *buf, size_t len, const ofi_mr *mr, fi_addr_t from,
                  uint64_t raddr, uint64_t key, ofi_op *op);
/*
 * One segment of a gathering read: len bytes at the peer's (raddr, key) into buf, which lies
 * in the local registration mr.
 */
typedef struct ofi_rma_seg {
	void *buf;
	size_t len;
	const ofi_mr *mr;
	uint64_t raddr, key;
} ofi_rma_seg;
#define OFI_SEGS_MAX 16
/* How many segments one read may carry: min(iov_limit, rma_iov_limit, OFI_SEGS_MAX). */
size_t ofi_read_segs_max(const ofi_fabric *f);
/*
 * Read n segments as one operation (one completion). n above ofi_read_segs_max is FQ_EINVAL:
 * the caller splits longer lists.
 */
int ofi_post_readv(ofi_fabric *f, const ofi_rma_seg *seg, size_t n, fi_addr_t from, ofi_op *op);

/* Ask the provider to end a posted operation early (best effort: it completes, in error or
 * not, through ofi_fabric_progress as any other). */
void ofi_cancel(ofi_fabric *f, ofi_op *op);

/*
 * Read completions and run their done() callbacks (lock not held while they run). Returns
 * how many completed, or a negative code for a failure of the queue itself. Never blocks.
 */
int ofi_fabric_progress(ofi_fabric *f);
/*
 * Wait for completions up to timeout_ms (-1: no limit) or until `wake_fd` (may be -1) is
 * readable: on the CQ's fd when there is one (after fi_trywait), else in short sleeps.
 * Returns 0 (something may be ready) or FQ_ETIMEDOUT.
 */
int ofi_fabric_wait(ofi_fabric *f, int wake_fd, int timeout_ms);

#endif /* FQI_OFI_FABRIC_H */
