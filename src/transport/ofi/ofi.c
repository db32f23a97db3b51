/*
 * ofi transport: fabriq sockets over libfabric's reliable-datagram endpoints (RDMA where the
 * provider has it), with zero-copy rendezvous for large messages.
 *
 * One endpoint per transport instance (ofi_fabric.c); every socket's connections are
 * multiplexed on it by a connection id in the frame header (ofi_proto.h). A connection is
 * made over a TCP bootstrap connection at the user's address (ofi_boot.c), which then says
 * when the peer is gone.
 *
 * Data path:
 * - EAGER: a frame that fits the receiver's buffers (`eager` bytes) is copied into a
 *   registered bounce buffer and sent; the receiver copies it out of its posted buffer into
 *   fresh messages and reposts the buffer at once.
 * - RTS: larger messages are announced (address, size, key per part); the receiver reads them
 *   with fi_read into registered pool memory, in chunks, several at a time, then answers FIN;
 *   only then does the sender release the message.
 * - Credits: a connection's receiver grants `credits` frames (at most rcv_hwm); one comes
 *   back when a message has been delivered and the peer's queue is below rcv_hwm, in CREDIT
 *   frames sent once a quarter of the grant is owed. With rcv_hwm_bytes it also grants bytes:
 *   the sender keeps messages queued while what it sent and the application there has not
 *   received would pass the grant (any message goes while less than a quarter is out);
 *   CREDIT frames give the bytes back once a quarter of that grant is owed. Posted receive
 *   buffers are reserved per connection (its grant, the FINs of our own rendezvous and the
 *   CREDIT frames, 8 more when the peer grants bytes), so a fast sender never overruns a slow
 *   receiver and nothing is dropped.
 * - Order: EAGER and RTS share one sequence per connection; the receiver delivers in that
 *   order even when a rendezvous ends after a later eager message.
 *
 * Threads and locks: one mutex (ot->lock) guards the protocol state of every socket and
 * connection of the instance; the fabric has its own lock (taken inside it, after ot->lock).
 * Completion callbacks run from ofi_fabric_progress without either lock and take ot->lock;
 * progress is never called with ot->lock held. The I/O thread drives the bootstrap
 * connections, progress (sleeping on the CQ's fd where the provider has one, polling with a
 * backoff where not), queued sends and reads. A caller that waits polls progress itself for
 * `spin` microseconds before it sleeps.
 */
#include "transport/ofi/ofi.h"
#include "transport/ofi/ofi_boot.h"
#include "transport/ofi/ofi_proto.h"

#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SUBSYS "ofi"

/* ---- Options ------------------------------------------------------------------------------ */

enum {
	OPT_PROVIDER,
	OPT_NODE,
	OPT_EAGER,
	OPT_CREDITS,
	OPT_SEND_BUFS,
	OPT_READ_CHUNK,
	OPT_READ_DEPTH,
	OPT_IOV_MAX,
	OPT_BUFFER_CACHE,
	OPT_RCACHE_ENTRIES,
	OPT_RCACHE_BYTES,
	OPT_SPIN,
	OPT_BUSY_POLL,
	OPT_STRICT,
	OPT_SMC,
	OPT_COUNT
};

static const fqi_option ofi_options[OPT_COUNT] = {
    [OPT_PROVIDER] = {"provider", FQ_OPT_STRING, "", 0, 0,
                      "libfabric provider (\"tcp;ofi_rxm\", \"shm\", \"verbs;ofi_rxm\"); empty: "
                      "FI_PROVIDER, else verbs;ofi_rxm then tcp;ofi_rxm"},
    [OPT_NODE] = {"node", FQ_OPT_STRING, "", 0, 0,
                  "local address of the fabric endpoint (\"127.0.0.1\" keeps tcp;ofi_rxm on "
                  "loopback); empty: the provider's choice. shm ignores it"},
    [OPT_EAGER] = {"eager", FQ_OPT_SIZE, "16K", 256, 1 << 20,
                   "bytes of a posted receive buffer: frames up to this size travel eagerly "
                   "(copied), larger messages by rendezvous (read by the receiver)"},
    [OPT_CREDITS] = {"credits", FQ_OPT_INT, "32", 1, 1024,
                     "frames a peer may send before this side grants more (capped by rcv_hwm)"},
    [OPT_SEND_BUFS] = {"send_bufs", FQ_OPT_INT, "256", 16, 65536,
                       "registered bounce buffers for outgoing frames"},
    [OPT_READ_CHUNK] = {"read_chunk", FQ_OPT_SIZE, "4M", 4096, (int64_t)1 << 30,
                        "bytes of one RMA read of a rendezvous"},
    [OPT_READ_DEPTH] = {"read_depth", FQ_OPT_INT, "8", 1, 64, "RMA reads in flight"},
    [OPT_IOV_MAX] = {"iov_max", FQ_OPT_INT, "0", 0, OFI_SEGS_MAX,
                     "pieces of a rendezvous one RMA read gathers (parts shorter than "
                     "read_chunk share a read); 0: the provider's iov and rma_iov limits, "
                     "which also cap any other value"},
    [OPT_BUFFER_CACHE] = {"buffer_cache", FQ_OPT_SIZE, "256M", 0, INT64_MAX,
                          "bytes of freed registered message buffers kept for reuse"},
    [OPT_RCACHE_ENTRIES] = {"rcache_entries", FQ_OPT_INT, "256", 1, 1 << 20,
                            "registrations kept for memory fabriq did not allocate (adopted "
                            "buffers, small parts of a rendezvous)"},
    [OPT_RCACHE_BYTES] = {"rcache_bytes", FQ_OPT_SIZE, "4G", 4096, INT64_MAX,
                          "bytes the registration cache may keep registered"},
    [OPT_SPIN] = {"spin", FQ_OPT_INT, "100", 0, 1000000,
                  "microseconds a waiting call drives progress itself before it sleeps"},
    [OPT_BUSY_POLL] = {"busy_poll", FQ_OPT_BOOL, "false", 0, 1,
                       "the I/O thread never sleeps (providers without a wait fd, such as "
                       "shm: lowest latency, one core busy)"},
    [OPT_STRICT] = {"strict", FQ_OPT_BOOL, "false", 0, 1,
                    "obey FI_MR_LOCAL, FI_MR_ALLOCATED, FI_MR_PROV_KEY and FI_MR_ENDPOINT even "
                    "where the provider does not ask (as verbs hardware does)"},
    [OPT_SMC] = {"smc", FQ_OPT_STRING, "off", 0, 0,
                 "SMC for the TCP bootstrap connections: " FQI_SMC_MODES " (fabriq-smc(7))"},
};

/* ---- Objects ------------------------------------------------------------------------------ */

typedef struct ofi_t ofi_t;
typedef struct ofi_sock ofi_sock;
typedef struct ofi_conn ofi_conn;

enum { CONN_BOOT, CONN_READY, CONN_GONE };
enum { SRC_WAKE, SRC_LISTENER, SRC_CONN, SRC_CQ };

typedef struct io_src {
	int kind;
} io_src;

typedef struct listener {
	io_src src;
	ofi_sock *ss;
	int fd;
	char path[108]; /* ipc://: the socket file to remove at close ("" for tcp) */
	struct listener *next;
} listener;

typedef struct connecter {
	ofi_sock *ss;
	bool unix_path; /* ipc://: host holds the path */
	char host[256];
	int port;
	int64_t ivl, due_ms; /* next attempt */
	ofi_conn *conn;      /* the current connection, if any */
	struct connecter *next;
} connecter;

/* An intrusive doubly-linked list of operations the provider holds (posted, not completed). */
typedef struct alink {
	struct alink *prev, *next;
} alink;

#define ALINK_OWNER(l, type) ((type *)(void *)((char *)(l)-offsetof(type, al)))

static void alink_add(alink **head, alink *l)
{
	l->prev = NULL;
	l->next = *head;
	if (*head != NULL)
		(*head)->prev = l;
	*head = l;
}

static void alink_del(alink **head, alink *l)
{
	if (l->prev != NULL)
		l->prev->next = l->next;
	else
		*head = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	l->prev = l->next = NULL;
}

/* A message waiting to go, or one whose rendezvous the peer has not finished. */
typedef struct out_msg {
	struct out_msg *next;
	uint64_t seq;
	size_t n;
	uint64_t bytes;
	fq_msg **parts;
	const ofi_mr **held; /* rendezvous: registration-cache entries held until FIN */
	fq_msg *table;       /* indirect rendezvous: the part table the peer reads */
	fq_msg *one[1];
} out_msg;

/* A message arriving: eager (complete) or being read. */
typedef struct in_msg {
	struct in_msg *next;
	ofi_conn *c;
	uint64_t seq;
	size_t n;
	uint64_t bytes;
	fq_msg **parts;
	ofi_rts_part *rparts; /* rendezvous: the sender's parts */
	fq_msg *table;        /* indirect rendezvous: where the part table is read to */
	uint64_t table_raddr, table_key;
	size_t next_part; /* reading: the part and offset to post next */
	uint64_t next_off;
	unsigned reads_out;
	int status;
	bool dropped;  /* delivered as nothing (too big, or the read failed) */
	bool complete; /* every byte is here: deliverable once its turn comes */
	fq_msg *one[1];
} in_msg;

/* A frame that arrived before the peer's hello (its bytes follow). */
typedef struct early {
	struct early *next;
	size_t len;
} early;

/* A posted receive buffer. */
typedef struct rbuf {
	ofi_op op;
	ofi_t *ot;
	unsigned char *data;
	const ofi_mr *mr;  /* its slab's registration */
	struct rbuf *next; /* unposted list */
} rbuf;

/* A registered bounce buffer for an outgoing frame. */
typedef struct sbuf {
	ofi_op op;
	ofi_t *ot;
	ofi_conn *c; /* NULL: free, or retired from a lost connection */
	unsigned char *data;
	const ofi_mr *mr; /* its slab's registration */
	struct sbuf *next;
	alink al; /* posted: ot->sb_active */
} sbuf;

/* One RMA read in flight. */
typedef struct rd_op {
	ofi_op op;
	ofi_t *ot;
	in_msg *im;
	bool table;         /* it reads im's part table */
	struct rd_op *next; /* free list */
	alink al;           /* posted: ot->rd_active */
} rd_op;

typedef struct av_ent {
	unsigned char name[OFI_NAME_MAX];
	size_t len;
	fi_addr_t addr;
	int refs;
	struct av_ent *next;
} av_ent;

struct ofi_conn {
	io_src src;
	ofi_t *ot;
	ofi_sock *ss; /* NULL once its socket closed */
	int state;
	bool in_peers;
	uint32_t id, peer_id;
	uint32_t peer_type;
	av_ent *av;
	ofi_boot_conn boot;
	connecter *origin;
	uint32_t reserved; /* posted receive buffers reserved for this connection */
	long ops;          /* sends and reads posted that name this connection */
	/* Sending. */
	uint32_t credits, peer_grant, peer_eager;
	uint64_t peer_bytes; /* the peer's byte grant (its rcv_hwm_bytes), 0 = none */
	uint64_t bytes_out;  /* message bytes sent that the peer has not given back */
	uint64_t tx_seq;
	out_msg *outq, *outq_tail;
	size_t outq_n;
	uint64_t outq_bytes;
	out_msg *rdv; /* announced, waiting for FIN */
	unsigned rdv_n;
	uint64_t *fins; /* FINs we owe the peer */
	size_t fins_n, fins_cap;
	/* Receiving. */
	uint32_t grant, owed, withheld;
	uint64_t grant_bytes, owed_bytes; /* our byte grant (rcv_hwm_bytes); bytes to give back */
	uint64_t rx_next;
	in_msg **win; /* reorder window: grant slots */
	in_msg *rq, *rq_tail;
	size_t rq_n;
	bool pending;  /* listed in ot->pending */
	bool bye_sent; /* we said BYE (closing): the peer's TCP close confirms */
	bool bye;      /* the peer said BYE: it sends nothing from bye_seq on */
	uint64_t bye_seq;
	struct early *early, **early_tail; /* frames that came before the peer's hello */
	/* PUB: the peer's subscriptions. */
	fqi_subs subs;
	struct ofi_conn *next, *pend_next;
};

struct ofi_sock {
	fq_socket *s;
	ofi_t *ot;
	pthread_cond_t cv;
	int efd;
	bool efd_armed;
	int waiters;
	_Atomic bool intr;
	ofi_conn **peers;
	size_t npeers, cap_peers;
	size_t rr_send, rr_recv;
	bool awaiting; /* REQ: reply pending; REP: answer owed */
	ofi_conn *turn;
	fqi_subs subs; /* SUB: ours */
	bool closing;
};

struct ofi_t {
	fq_transport *t;
	ofi_fabric f;
	bool fabric_open;
	ofi_pool *pool;
	ofi_rcache *rcache;
	pthread_mutex_t lock;
	pthread_t io;
	bool io_started;
	_Atomic bool stop;
	int ep, wake_fd;
	io_src wake_src, cq_src;
	/* Receive buffers: posted = made and posted, reserved = promised to connections. */
	size_t rbuf_size;
	size_t posted, reserved;
	rbuf *unposted;
	struct slab {
		ofi_mr mr;
		void *mem;
		size_t len;
		void *objs;
		struct slab *next;
	} * slabs;
	/* Send bounce buffers. */
	sbuf *sfree;
	size_t sbufs, sbufs_max;
	/* Reads. */
	in_msg *readq, *readq_tail;
	rd_op *rd_free;
	alink *rd_active, *sb_active;
	unsigned reads_out, read_depth;
	unsigned reads_retired; /* reads of lost peers the provider has not ended (see
	                         * conn_retire_reads) */
	in_msg *orphans;
	size_t read_chunk;
	size_t read_segs;      /* segments per read: iov_max within the provider's limits */
	uint64_t reads_posted; /* counter "reads" */
	/* Connections. */
	ofi_conn **slots;
	uint32_t *gens;
	size_t nslots;
	ofi_conn *conns, *pending;
	listener *listeners, *dead_listeners;
	connecter *connecters;
	av_ent *avs;
	uint32_t credits;
	int64_t spin_us;
	bool busy_poll;
	fqi_smc_mode smc;
	_Atomic uint64_t activity; /* completions seen: the I/O thread's backoff resets */
	_Atomic int spinners;      /* callers in their spin (sock_wait): they drive progress */
};

static ofi_t *ot_of(fq_transport *t)
{
	return t->priv;
}

static ofi_sock *ss_of(fq_socket *s)
{
	return s->priv;
}

ofi_pool *ofi_pool_of(fq_transport *t)
{
	return ot_of(t)->pool;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Something changed for the socket's callers (ot->lock held). */
static void sock_changed(ofi_sock *ss)
{
	if (ss == NULL)
		return;
	if (ss->waiters > 0)
		pthread_cond_broadcast(&ss->cv);
	if (ss->efd_armed) {
		ss->efd_armed = false;
		fqi_kick(ss->efd);
	}
}

static void io_wake(ofi_t *ot)
{
	fqi_kick(ot->wake_fd);
}

/* The caller's spin (sock_wait) is over: it no longer counts as driving progress. The I/O
 * thread takes the completion queue back within 10 ms, without being woken (io_main). */
static void spin_end(ofi_t *ot, int64_t *spin_until)
{
	if (*spin_until > 0)
		atomic_fetch_sub_explicit(&ot->spinners, 1, memory_order_relaxed);
	*spin_until = -1;
}

static void free_parts(fq_msg **parts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (parts[i] != NULL)
			fq_msg_free(parts[i]);
	}
}

static void in_msg_free(in_msg *im)
{
	if (im->parts != NULL) {
		free_parts(im->parts, im->n);
		if (im->parts != im->one)
			free(im->parts);
	}
	free(im->rparts);
	fq_msg_free(im->table);
	free(im);
}

static void out_msg_free(ofi_t *ot, out_msg *om)
{
	if (om->held != NULL) {
		for (size_t i = 0; i < om->n; i++) {
			if (om->held[i] != NULL)
				ofi_rcache_put(ot->rcache, om->held[i]);
		}
		free(om->held);
	}
	free_parts(om->parts, om->n); /* the array is part of om */
	fq_msg_free(om->table);
	free(om);
}

/* ---- Buffers ------------------------------------------------------------------------------ */

static void on_recv(ofi_op *op, int status, size_t len);
static void on_send(ofi_op *op, int status, size_t len);

/* A registered slab of n objects of obj_size with bytes each (ot->lock held). */
static int slab_new(ofi_t *ot, size_t n, size_t obj_size, size_t bytes, uint64_t access,
                    struct slab **out)
{
	struct slab *sl = calloc(1, sizeof(*sl));
	int rc;

	if (sl == NULL)
		return FQ_ENOMEM;
	sl->len = n * bytes;
	sl->mem = aligned_alloc(4096, (sl->len + 4095) / 4096 * 4096);
	sl->objs = calloc(n, obj_size);
	if (sl->mem == NULL || sl->objs == NULL) {
		free(sl->mem);
		free(sl->objs);
		free(sl);
		return FQ_ENOMEM;
	}
	rc = ofi_mr_reg(&ot->f, sl->mem, sl->len, access, &sl->mr);
	if (rc != 0) {
		free(sl->mem);
		free(sl->objs);
		free(sl);
		return rc;
	}
	sl->next = ot->slabs;
	ot->slabs = sl;
	*out = sl;
	return 0;
}

static void rbuf_post(ofi_t *ot, rbuf *rb)
{
	if (atomic_load(&ot->stop) ||
	    ofi_post_recv(&ot->f, rb->data, ot->rbuf_size, rb->mr, &rb->op) != 0) {
		rb->next = ot->unposted; /* the I/O thread tries again */
		ot->unposted = rb;
	}
}

/* Have `n` more posted buffers than are reserved, and reserve them (ot->lock held). */
static int rbufs_reserve(ofi_t *ot, size_t n)
{
	while (ot->posted < ot->reserved + n) {
		struct slab *sl;
		size_t k = 64;
		int rc = slab_new(ot, k, sizeof(rbuf), ot->rbuf_size, FI_RECV, &sl);

		if (rc != 0)
			return rc;
		for (size_t i = 0; i < k; i++) {
			rbuf *rb = (rbuf *)sl->objs + i;

			rb->op.done = on_recv;
			rb->ot = ot;
			rb->data = (unsigned char *)sl->mem + i * ot->rbuf_size;
			rb->mr = &sl->mr;
			rbuf_post(ot, rb);
		}
		ot->posted += k;
	}
	ot->reserved += n;
	return 0;
}

/* A bounce buffer for a frame to c, or NULL when all are out (ot->lock held). */
static sbuf *sbuf_get(ofi_t *ot, ofi_conn *c)
{
	sbuf *sb = ot->sfree;

	if (sb == NULL && ot->sbufs < ot->sbufs_max) {
		struct slab *sl;
		size_t k = 64;

		if (slab_new(ot, k, sizeof(sbuf), ot->rbuf_size, FI_SEND, &sl) == 0) {
			for (size_t i = 0; i < k; i++) {
				sbuf *b = (sbuf *)sl->objs + i;

				b->op.done = on_send;
				b->ot = ot;
				b->data = (unsigned char *)sl->mem + i * ot->rbuf_size;
				b->mr = &sl->mr;
				b->next = ot->sfree;
				ot->sfree = b;
			}
			ot->sbufs += k;
		}
		sb = ot->sfree;
	}
	if (sb != NULL) {
		ot->sfree = sb->next;
		sb->c = c;
	}
	return sb;
}

static void sbuf_put(ofi_t *ot, sbuf *sb)
{
	sb->c = NULL;
	sb->next = ot->sfree;
	ot->sfree = sb;
}

/* Post a frame of len bytes in sb to c (ot->lock held). */
static int frame_post(ofi_t *ot, ofi_conn *c, sbuf *sb, size_t len)
{
	struct iovec iov = {sb->data, len};
	int rc = ofi_post_send(&ot->f, &iov, &sb->mr, 1, c->av->addr, &sb->op);

	if (rc == 0) {
		c->ops++;
		alink_add(&ot->sb_active, &sb->al);
	}
	return rc;
}

/* ---- Connections ---------------------------------------------------------------------------- */

static void mark_pending(ofi_t *ot, ofi_conn *c)
{
	if (!c->pending) {
		c->pending = true;
		c->pend_next = ot->pending;
		ot->pending = c;
	}
}

static int conn_id_new(ofi_t *ot, ofi_conn *c)
{
	size_t i;

	for (i = 0; i < ot->nslots && ot->slots[i] != NULL; i++)
		;
	if (i == ot->nslots) {
		size_t cap = ot->nslots ? 2 * ot->nslots : 64;
		ofi_conn **s = realloc(ot->slots, cap * sizeof(*s));
		uint32_t *g;

		if (s == NULL)
			return FQ_ENOMEM;
		ot->slots = s;
		g = realloc(ot->gens, cap * sizeof(*g));
		if (g == NULL)
			return FQ_ENOMEM;
		ot->gens = g;
		for (size_t k = ot->nslots; k < cap; k++) {
			ot->slots[k] = NULL;
			ot->gens[k] = 0;
		}
		ot->nslots = cap;
	}
	if (i >= (1u << 20))
		return FQ_ENOMEM;
	ot->gens[i] = (ot->gens[i] + 1) & 0xfff;
	ot->slots[i] = c;
	c->id = (uint32_t)i | ot->gens[i] << 20;
	return 0;
}

static ofi_conn *conn_find(ofi_t *ot, uint32_t id)
{
	size_t i = id & ((1u << 20) - 1);

	if (i >= ot->nslots || ot->slots[i] == NULL || ot->gens[i] != id >> 20)
		return NULL;
	return ot->slots[i];
}

static int av_get(ofi_t *ot, const unsigned char *name, size_t len, av_ent **out)
{
	av_ent *a;
	int rc;

	for (a = ot->avs; a != NULL; a = a->next) {
		if (a->len == len && memcmp(a->name, name, len) == 0) {
			a->refs++;
			*out = a;
			return 0;
		}
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return FQ_ENOMEM;
	rc = ofi_av_insert(&ot->f, name, len, &a->addr);
	if (rc != 0) {
		free(a);
		return rc;
	}
	memcpy(a->name, name, len);
	a->len = len;
	a->refs = 1;
	a->next = ot->avs;
	ot->avs = a;
	*out = a;
	return 0;
}

static void av_put(ofi_t *ot, av_ent *a)
{
	if (--a->refs > 0)
		return;
	for (av_ent **pp = &ot->avs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	ofi_av_remove(&ot->f, a->addr);
	free(a);
}

static void sock_del_peer(ofi_sock *ss, ofi_conn *c)
{
	for (size_t i = 0; i < ss->npeers; i++) {
		if (ss->peers[i] == c) {
			ss->peers[i] = ss->peers[--ss->npeers];
			break;
		}
	}
	c->in_peers = false;
	if (ss->turn == c) {
		ss->turn = NULL;
		if (ss->s->type == FQ_REQ)
			ss->awaiting = false; /* the request is lost: the REQ may ask again */
	}
	if (ss->rr_send >= ss->npeers)
		ss->rr_send = 0;
	if (ss->rr_recv >= ss->npeers)
		ss->rr_recv = 0;
}

/*
 * The connection is over (ot->lock held): its unsent messages and unfinished rendezvous are
 * released, its reads and frames in flight retired (conn_retire_reads), received messages
 * stay deliverable. The object, with what it still holds, is freed by the I/O thread once no
 * operation names it (conn_reap).
 */
static void conn_retire_reads(ofi_t *ot, ofi_conn *c);
static void orphan_del(ofi_t *ot, in_msg *im);

static void conn_gone(ofi_conn *c, const char *why)
{
	ofi_t *ot = c->ot;

	if (c->state == CONN_GONE)
		return;
	if (why != NULL)
		FQI_INFO(SUBSYS, "connection %#x dropped: %s", c->id, why);
	c->state = CONN_GONE;
	/* Out of the poll set before the close: a forked child may still hold the socket, and
	 * then closing it would not remove it, and events would come for a freed connection. */
	if (c->boot.fd >= 0)
		epoll_ctl(ot->ep, EPOLL_CTL_DEL, c->boot.fd, NULL);
	ofi_boot_close(&c->boot, why == NULL);
	while (c->outq != NULL) {
		out_msg *om = c->outq;

		c->outq = om->next;
		out_msg_free(ot, om);
	}
	c->outq_tail = NULL;
	c->outq_n = 0;
	c->outq_bytes = 0;
	while (c->rdv != NULL) {
		out_msg *om = c->rdv;

		c->rdv = om->next;
		for (size_t i = 0; i < om->n; i++)
			ofi_msg_no_reuse(om->parts[i]);
		out_msg_free(ot, om);
	}
	c->rdv_n = 0;
	c->fins_n = 0;
	conn_retire_reads(ot, c);
	if (c->origin != NULL) {
		c->origin->conn = NULL;
		c->origin->due_ms = fqi_clock_ms() + c->origin->ivl;
		c->origin = NULL;
	}
	if (c->ss != NULL) {
		if (c->in_peers && c->rq == NULL)
			sock_del_peer(c->ss, c);
		sock_changed(c->ss);
	}
	io_wake(ot);
}

static void orphan_del(ofi_t *ot, in_msg *im)
{
	for (in_msg **pp = &ot->orphans; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == im) {
			*pp = im->next;
			return;
		}
	}
}

/*
 * The peer is lost while we read from it. A read may never end on its own (libfabric's shm
 * provider waits for the dead peer to serve it), and its destination must not be reused
 * while the provider may still write there. So the reads are cancelled (best effort) and
 * their messages retired: detached from the connection, their pages given back to the kernel
 * at once (MADV_DONTNEED: a late write only faults in a fresh page), the address range and
 * its registration kept until the provider completes the read or the endpoint closes. The
 * connection and the read depth are free at once (ot->lock held).
 */
static void conn_retire_reads(ofi_t *ot, ofi_conn *c)
{
	for (alink *l = ot->rd_active; l != NULL; l = l->next) {
		rd_op *rd = ALINK_OWNER(l, rd_op);

		if (rd->im->c == c)
			ofi_cancel(&ot->f, &rd->op);
	}
	/* Frames to the lost peer the provider still holds: their bounce buffers come back
	 * when it lets them go, without the connection. */
	for (alink *l = ot->sb_active; l != NULL; l = l->next) {
		sbuf *sb = ALINK_OWNER(l, sbuf);

		if (sb->c == c) {
			ofi_cancel(&ot->f, &sb->op);
			sb->c = NULL;
			c->ops--;
		}
	}
	for (in_msg **pp = &ot->readq; *pp != NULL;) {
		in_msg *im = *pp;

		if (im->c != c) {
			ot->readq_tail = im;
			pp = &im->next;
			continue;
		}
		*pp = im->next; /* not read further */
		c->ops--;
		im->next_part = im->n;
	}
	if (ot->readq == NULL)
		ot->readq_tail = NULL;
	for (uint32_t i = 0; c->win != NULL && i < c->grant; i++) {
		in_msg *im = c->win[i];

		if (im == NULL || im->reads_out == 0)
			continue;
		c->win[i] = NULL;
		c->ops -= im->reads_out;
		ot->reads_out -= im->reads_out;
		ot->reads_retired += im->reads_out;
		for (size_t k = 0; k < im->n; k++) {
			ofi_msg *m = (ofi_msg *)im->parts[k];

			if (m != NULL && m->b->pool != NULL)
				madvise(m->b->data, m->b->cap, MADV_DONTNEED);
		}
		im->c = NULL;
		im->next = ot->orphans;
		ot->orphans = im;
	}
}

static void conn_free(ofi_conn *c)
{
	ofi_t *ot = c->ot;

	while (c->early != NULL) {
		early *e = c->early;

		c->early = e->next;
		free(e);
	}
	while (c->rq != NULL) {
		in_msg *im = c->rq;

		c->rq = im->next;
		in_msg_free(im);
	}
	for (uint32_t i = 0; c->win != NULL && i < c->grant; i++) {
		if (c->win[i] != NULL)
			in_msg_free(c->win[i]);
	}
	if (c->av != NULL)
		av_put(ot, c->av);
	ot->reserved -= c->reserved;
	ot->slots[c->id & ((1u << 20) - 1)] = NULL;
	fqi_subs_free(&c->subs);
	free(c->win);
	free(c->fins);
	free(c);
}

static void conn_reap(ofi_t *ot)
{
	for (ofi_conn **pp = &ot->conns; *pp != NULL;) {
		ofi_conn *c = *pp;

		if (c->state == CONN_GONE && c->ops == 0 && !c->pending &&
		    (c->ss == NULL || !c->in_peers)) {
			*pp = c->next;
			conn_free(c);
			continue;
		}
		pp = &c->next;
	}
}

static void on_record(void *arg, int type, const void *text, size_t len);
static void handle_frame(ofi_t *ot, ofi_conn *c, const ofi_frame *fr);

static void fill_hello(ofi_conn *c, ofi_hello *h)
{
	ofi_t *ot = c->ot;

	memset(h, 0, sizeof(*h));
	h->version = OFI_PROTO_VERSION;
	h->sock_type = (uint16_t)c->ss->s->type;
	h->conn = c->id;
	h->credits = c->grant;
	h->eager = ot->rbuf_size;
	h->bytes = c->grant_bytes;
	h->name_len = (uint16_t)ot->f.namelen;
	memcpy(h->name, ot->f.name, ot->f.namelen);
	h->prov_len = (uint16_t)strlen(ot->f.prov);
	memcpy(h->prov, ot->f.prov, h->prov_len);
}

/* A new connection of ss before its TCP connection exists (ot->lock held). */
static int conn_new(ofi_sock *ss, ofi_conn **out)
{
	ofi_t *ot = ss->ot;
	ofi_conn *c = calloc(1, sizeof(*c));
	int64_t hwm = atomic_load(&ss->s->opt[FQI_SO_RCV_HWM]);
	int rc;

	if (c == NULL)
		return FQ_ENOMEM;
	c->src.kind = SRC_CONN;
	c->ot = ot;
	c->ss = ss;
	c->boot.fd = -1;
	c->early_tail = &c->early;
	c->grant = hwm > 0 && hwm < ot->credits ? (uint32_t)hwm : ot->credits;
	c->grant_bytes = (uint64_t)atomic_load(&ss->s->opt[FQI_SO_RCV_HWM_BYTES]);
	c->win = calloc(c->grant, sizeof(*c->win));
	rc = c->win ? conn_id_new(ot, c) : FQ_ENOMEM;
	if (rc == 0) {
		/* Our grant, the FINs of our own rendezvous (at most `credits`), CREDIT frames. */
		c->reserved = c->grant + ot->credits + 8;
		rc = rbufs_reserve(ot, c->reserved);
		if (rc != 0) {
			ot->slots[c->id & ((1u << 20) - 1)] = NULL;
			c->reserved = 0;
		}
	}
	if (rc != 0) {
		free(c->win);
		free(c);
		return rc;
	}
	c->next = ot->conns;
	ot->conns = c;
	*out = c;
	return 0;
}

static int send_subs(ofi_sock *ss, ofi_conn *c)
{
	int rc = 0;

	for (size_t i = 0; i < ss->subs.n && rc == 0; i++)
		rc = ofi_boot_record(&c->boot, OFI_BOOT_SUB, ss->subs.text[i], ss->subs.len[i]);
	return rc;
}

static void conn_watch(ofi_conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &c->src};

	if (ofi_boot_events(&c->boot) & POLLOUT)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(c->ot->ep, EPOLL_CTL_MOD, c->boot.fd, &ev) != 0)
		epoll_ctl(c->ot->ep, EPOLL_CTL_ADD, c->boot.fd, &ev);
}

/* Peers of ss that are connected (a lost one stays listed while its messages are unread). */
static size_t ready_peers(const ofi_sock *ss)
{
	size_t n = 0;

	for (size_t i = 0; i < ss->npeers; i++)
		n += ss->peers[i]->state == CONN_READY;
	return n;
}

/* The peer's HELLO arrived (ot->lock held). */
static void conn_hello(ofi_conn *c)
{
	ofi_sock *ss = c->ss;
	const ofi_hello *h = &c->boot.peer;
	char why[256];
	int rc;

	if (strcmp(h->prov, c->ot->f.prov) != 0) {
		snprintf(why, sizeof(why), "the peer uses provider \"%s\", this side \"%s\"",
		         h->prov, c->ot->f.prov);
		FQI_WARN(SUBSYS, "%s", why);
		conn_gone(c, why);
		return;
	}
	if (!fqi_types_match(ss->s->type, h->sock_type)) {
		snprintf(why, sizeof(why), "a %s socket cannot talk to a %s socket",
		         fq_socket_type_name(ss->s->type),
		         fq_socket_type_name((fq_socket_type)h->sock_type));
		FQI_WARN(SUBSYS, "%s", why);
		conn_gone(c, why);
		return;
	}
	if (h->credits == 0 || h->eager < 256 || h->eager > (1u << 20)) {
		FQI_WARN(SUBSYS, "peer hello with credits %u and eager %llu", h->credits,
		         (unsigned long long)h->eager);
		conn_gone(c, "a bad hello");
		return;
	}
	if (ss->s->type == FQ_PAIR && ready_peers(ss) > 0) {
		conn_gone(c, "PAIR socket has a peer already");
		return;
	}
	rc = av_get(c->ot, h->name, h->name_len, &c->av);
	if (rc != 0) {
		conn_gone(c, fq_strerror(rc));
		return;
	}
	c->peer_id = h->conn;
	c->peer_type = h->sock_type;
	c->credits = c->peer_grant = h->credits;
	c->peer_bytes = h->bytes;
	if (c->peer_bytes > 0) {
		/* The peer gives bytes back in CREDIT frames of their own, on top of those for
		 * frames: room for them, so that they never find no buffer posted. */
		rc = rbufs_reserve(c->ot, 8);
		if (rc != 0) {
			conn_gone(c, fq_strerror(rc));
			return;
		}
		c->reserved += 8;
	}
	c->peer_eager = (uint32_t)h->eager;
	c->boot.on_record = on_record;
	c->boot.record_arg = c;
	c->state = CONN_READY;
	FQI_DEBUG(SUBSYS, "connection %#x: ready (%s to %s, peer id %#x)", c->id,
	          fq_socket_type_name(ss->s->type),
	          fq_socket_type_name((fq_socket_type)h->sock_type), h->conn);
	if (ss->npeers == ss->cap_peers) {
		size_t cap = ss->cap_peers ? 2 * ss->cap_peers : 8;
		ofi_conn **v = realloc(ss->peers, cap * sizeof(*v));

		if (v == NULL) {
			conn_gone(c, "out of memory");
			return;
		}
		ss->peers = v;
		ss->cap_peers = cap;
	}
	ss->peers[ss->npeers++] = c;
	c->in_peers = true;
	if (ss->s->type == FQ_SUB && send_subs(ss, c) != 0) {
		conn_gone(c, "cannot send the subscriptions");
		return;
	}
	rc = ofi_boot_pending(&c->boot);
	if (rc != 0) {
		conn_gone(c, rc == FQ_ECLOSED ? NULL : c->boot.why);
		return;
	}
	while (c->early != NULL && c->state == CONN_READY) {
		early *e = c->early;
		ofi_frame fr;

		c->early = e->next;
		if (ofi_decode(e + 1, e->len, &fr, why, sizeof(why)) == 0)
			handle_frame(c->ot, c, &fr);
		free(e);
	}
	c->early_tail = &c->early;
	sock_changed(ss);
}

/* Drive c's bootstrap connection (ot->lock held); false once it is gone. */
static bool conn_boot_io(ofi_conn *c, short revents)
{
	int rc = ofi_boot_io(&c->boot, revents);

	if (rc == 1) {
		conn_hello(c);
	} else if (rc < 0) {
		if (rc == FQ_ECONNREFUSED)
			FQI_DEBUG(SUBSYS, "connection %#x: refused", c->id);
		conn_gone(c, rc == FQ_ECLOSED || rc == FQ_ECONNREFUSED ? NULL
		             : rc == FQ_EPROTO                         ? c->boot.why
		                                                       : fq_strerror(rc));
	}
	if (c->state != CONN_GONE)
		conn_watch(c);
	return c->state != CONN_GONE;
}

/* A frame came before the hello: read the TCP connection now; true when c is ready. */
static bool conn_boot_now(ofi_conn *c)
{
	conn_boot_io(c, POLLIN);
	return c->state == CONN_READY;
}

/* ---- Subscriptions ------------------------------------------------------------------------ */

static void on_record(void *arg, int type, const void *text, size_t len)
{
	ofi_conn *c = arg;

	if (c->ss == NULL || c->ss->s->type != FQ_PUB)
		return;
	if (fqi_subs_change(&c->subs, text, len, type == OFI_BOOT_SUB) != 0)
		conn_gone(c, "out of memory for subscriptions");
}

/* ---- Sending ------------------------------------------------------------------------------ */

/* Can c take another message now? (ot->lock held) */
static bool conn_room(const ofi_conn *c, uint64_t bytes)
{
	int64_t hwm = atomic_load_explicit(&c->ss->s->opt[FQI_SO_SND_HWM], memory_order_relaxed);
	int64_t hwm_bytes =
	    atomic_load_explicit(&c->ss->s->opt[FQI_SO_SND_HWM_BYTES], memory_order_relaxed);

	if (c->state != CONN_READY)
		return false;
	if (hwm > 0 && c->outq_n >= (uint64_t)hwm)
		return false;
	if (hwm_bytes > 0 && c->outq_n > 0 && c->outq_bytes + bytes > (uint64_t)hwm_bytes)
		return false;
	return true;
}

/* Largest frame for c: it must fit the peer's receive buffers and our bounce buffers. */
static size_t peer_cap(const ofi_t *ot, const ofi_conn *c)
{
	return c->peer_eager < ot->rbuf_size ? c->peer_eager : ot->rbuf_size;
}

/* Bytes of the eager frame for n parts of `bytes` in all, or 0: it goes by rendezvous. */
static size_t eager_len(const ofi_t *ot, const ofi_conn *c, size_t n, uint64_t bytes)
{
	size_t cap = peer_cap(ot, c), head = ofi_eager_head_bytes(n);

	if (head > cap || bytes > cap - head)
		return 0;
	return head + (size_t)bytes;
}

/* Does an RTS for n parts fit c's receive buffers (else: an indirect RTS)? */
static bool rts_fits(const ofi_t *ot, const ofi_conn *c, size_t n)
{
	return ofi_rts_bytes(n) <= peer_cap(ot, c);
}

/* Can a vector of n parts ever go to c? Eagerly, in an RTS, or in an indirect RTS: always,
 * up to OFI_MAX_PARTS (ofi_send checks). */
static bool fits(const ofi_t *ot, const ofi_conn *c, size_t n, uint64_t bytes)
{
	(void)ot, (void)c, (void)n, (void)bytes;
	return true;
}

/* Send om as an RTS through sb (ot->lock held). FQ_EAGAIN: try again later, nothing done. */
static int send_rts(ofi_t *ot, ofi_conn *c, out_msg *om, sbuf *sb)
{
	ofi_rts_part stack[16];
	ofi_rts_part *rp = om->n <= 16 ? stack : calloc(om->n, sizeof(*rp));
	int rc = 0, len;

	if (rp == NULL)
		return FQ_ENOMEM;
	if (om->held == NULL) {
		om->held = calloc(om->n, sizeof(*om->held));
		if (om->held == NULL)
			rc = FQ_ENOMEM;
	}
	for (size_t i = 0; i < om->n && rc == 0; i++) {
		fq_msg *m = om->parts[i];
		const ofi_mr *reg = ((ofi_msg *)m)->b->reg;

		if (m->size == 0) {
			rp[i] = (ofi_rts_part){0, 0, 0};
			continue;
		}
		if (reg == NULL || reg->mr == NULL) {
			if (om->held[i] == NULL)
				rc = ofi_rcache_get(ot->rcache, m->data, m->size, &om->held[i]);
			reg = om->held[i];
		}
		if (rc == 0)
			rp[i] =
			    (ofi_rts_part){m->size, ofi_mr_raddr(&ot->f, reg, m->data), reg->key};
	}
	if (rc == 0 && rts_fits(ot, c, om->n)) {
		len = ofi_encode_rts(sb->data, peer_cap(ot, c), c->peer_id, om->seq, rp, om->n);
		rc = len < 0 ? len : frame_post(ot, c, sb, (size_t)len);
	} else if (rc == 0) {
		/* The table does not fit a receive buffer: the peer reads it from registered
		 * memory first (kept, like the parts, until FIN). */
		ofi_msg *t;

		if (om->table == NULL)
			rc = ofi_msg_new(ot->t, ot->pool, om->n * OFI_RTS_PART, true, &om->table);
		if (rc == 0) {
			t = (ofi_msg *)om->table;
			ofi_encode_rts_table(om->table->data, rp, om->n);
			len = ofi_encode_rtsi(sb->data, peer_cap(ot, c), c->peer_id, om->seq, om->n,
			                      ofi_mr_raddr(&ot->f, t->b->reg, om->table->data),
			                      t->b->reg->key);
			rc = len < 0 ? len : frame_post(ot, c, sb, (size_t)len);
		}
	}
	if (rp != stack)
		free(rp);
	return rc;
}

/*
 * May a message of `bytes` go to c under the peer's byte grant? Within the grant; or, so that
 * a message larger than three quarters of it never waits for good, while nothing or less than
 * a quarter of the grant is out: the peer gives bytes back once a quarter of its grant is
 * owed, so a sender that waits has at least that much out and will hear of it.
 */
static bool bytes_granted(const ofi_conn *c, uint64_t bytes)
{
	return c->peer_bytes == 0 || c->bytes_out == 0 || c->bytes_out + bytes <= c->peer_bytes ||
	       c->bytes_out < c->peer_bytes / 4;
}

/* Post what c has queued while credits and buffers last (ot->lock held). */
static void conn_flush(ofi_t *ot, ofi_conn *c)
{
	uint32_t thresh = c->grant / 4 ? c->grant / 4 : 1;
	int rc = 0;

	if (c->state != CONN_READY)
		return;
	if (c->owed >= thresh ||
	    (c->grant_bytes > 0 && c->owed_bytes > 0 && c->owed_bytes >= c->grant_bytes / 4)) {
		sbuf *sb = sbuf_get(ot, c);
		int len;

		if (sb == NULL)
			goto later;
		len = ofi_encode_ctl(sb->data, ot->rbuf_size, OFI_CREDIT, c->peer_id, c->owed_bytes,
		                     c->owed);
		rc = frame_post(ot, c, sb, (size_t)len);
		if (rc != 0) {
			sbuf_put(ot, sb);
			goto not_posted;
		}
		c->owed = 0;
		c->owed_bytes = 0;
	}
	while (c->fins_n > 0) {
		sbuf *sb = sbuf_get(ot, c);
		int len;

		if (sb == NULL)
			goto later;
		len = ofi_encode_ctl(sb->data, ot->rbuf_size, OFI_FIN, c->peer_id,
		                     c->fins[c->fins_n - 1], 0);
		rc = frame_post(ot, c, sb, (size_t)len);
		if (rc != 0) {
			sbuf_put(ot, sb);
			goto not_posted;
		}
		c->fins_n--;
	}
	while (c->outq != NULL && c->credits > 0) {
		out_msg *om = c->outq;
		size_t elen = eager_len(ot, c, om->n, om->bytes);
		sbuf *sb;

		if (elen == 0 && c->rdv_n >= ot->credits)
			break; /* the peer reserved room for that many FINs */
		if (!bytes_granted(c, om->bytes))
			break; /* the peer's rcv_hwm_bytes: its CREDIT will give bytes back */
		sb = sbuf_get(ot, c);
		if (sb == NULL)
			goto later;
		om->seq = c->tx_seq;
		if (elen > 0) {
			uint64_t stack[64];
			uint64_t *sizes = om->n <= 64 ? stack : malloc(om->n * sizeof(*sizes));
			int head;

			if (sizes == NULL) {
				sbuf_put(ot, sb);
				goto later;
			}
			for (size_t i = 0; i < om->n; i++)
				sizes[i] = om->parts[i]->size;
			head = ofi_encode_eager_head(sb->data, ot->rbuf_size, c->peer_id, om->seq,
			                             sizes, om->n);
			if (sizes != stack)
				free(sizes);
			for (size_t i = 0, at = (size_t)head; i < om->n; i++) {
				if (om->parts[i]->size > 0)
					memcpy(sb->data + at, om->parts[i]->data,
					       om->parts[i]->size);
				at += om->parts[i]->size;
			}
			rc = frame_post(ot, c, sb, elen);
		} else {
			rc = send_rts(ot, c, om, sb);
		}
		if (rc != 0) {
			sbuf_put(ot, sb);
			goto not_posted;
		}
		c->tx_seq++;
		c->credits--;
		c->bytes_out += om->bytes;
		c->outq = om->next;
		if (c->outq == NULL)
			c->outq_tail = NULL;
		c->outq_n--;
		c->outq_bytes -= om->bytes;
		if (elen > 0) {
			out_msg_free(ot, om);
		} else {
			om->next = c->rdv;
			c->rdv = om;
			c->rdv_n++;
		}
		sock_changed(c->ss);
	}
	return;
not_posted:
	if (rc == FQ_EAGAIN || rc == FQ_ENOMEM)
		goto later; /* the provider (or the registration cache) is full: again later */
	FQI_WARN(SUBSYS, "connection %#x: posting a frame failed: %s", c->id, fq_strerror(rc));
	conn_gone(c, fq_strerror(rc));
	return;
later:
	mark_pending(ot, c);
}

static void on_send(ofi_op *op, int status, size_t len)
{
	sbuf *sb = (sbuf *)op;
	ofi_t *ot = sb->ot;
	ofi_conn *c = sb->c;

	FQI_UNUSED(len);
	pthread_mutex_lock(&ot->lock);
	alink_del(&ot->sb_active, &sb->al);
	sbuf_put(ot, sb);
	if (c != NULL) {
		c->ops--;
		if (status != 0 && c->state == CONN_READY)
			conn_gone(c, fq_strerror(status));
	}
	/* A bounce buffer is back: connections waiting for one may go on. */
	if (ot->pending != NULL)
		io_wake(ot);
	pthread_mutex_unlock(&ot->lock);
}

/* Queue parts (n >= 1) on c; the parts are taken on success (ot->lock held). */
static int conn_queue(ofi_t *ot, ofi_conn *c, fq_msg **parts, size_t n, uint64_t bytes, bool take)
{
	out_msg *om;

	if (c->state != CONN_READY)
		return FQ_ECLOSED;
	om = calloc(1, sizeof(*om) + (n > 1 ? n * sizeof(fq_msg *) : 0));
	if (om == NULL)
		return FQ_ENOMEM;
	om->n = n;
	om->bytes = bytes;
	om->parts = n > 1 ? (fq_msg **)(om + 1) : om->one;
	for (size_t i = 0; i < n; i++) {
		if (take) {
			om->parts[i] = parts[i];
		} else if (fq_msg_copy(parts[i], &om->parts[i]) != 0) {
			free_parts(om->parts, i);
			free(om);
			return FQ_ENOMEM;
		}
	}
	if (c->outq_tail != NULL)
		c->outq_tail->next = om;
	else
		c->outq = om;
	c->outq_tail = om;
	c->outq_n++;
	c->outq_bytes += bytes;
	conn_flush(ot, c);
	return 0;
}

/* ---- Receiving ------------------------------------------------------------------------------ */

static void post_reads(ofi_t *ot);
static void bye_check(ofi_conn *c);
static void readq_add(ofi_t *ot, in_msg *im);
static int in_destinations(ofi_t *ot, in_msg *im, const ofi_frame *fr);

/* The peer said BYE and everything it sent before is here: close our side too. */
static void bye_check(ofi_conn *c)
{
	if (c->bye && c->state == CONN_READY && c->rx_next >= c->bye_seq)
		conn_gone(c, NULL);
}

/* im is complete (or dropped): deliver it and what it held back, in order (ot->lock held). */
static void in_ready(ofi_t *ot, in_msg *im)
{
	ofi_conn *c = im->c;

	if (im->rparts != NULL && c->state != CONN_GONE) {
		/* Tell the sender it may let the message go. */
		if (c->fins_n == c->fins_cap) {
			size_t cap = c->fins_cap ? 2 * c->fins_cap : 16;
			uint64_t *f = realloc(c->fins, cap * sizeof(*f));

			if (f != NULL) {
				c->fins = f;
				c->fins_cap = cap;
			}
		}
		if (c->fins_n < c->fins_cap)
			c->fins[c->fins_n++] = im->seq;
		else
			conn_gone(c, "out of memory"); /* and im goes below */
	}
	if (c->state == CONN_GONE || c->ss == NULL) {
		if (c->win[im->seq % c->grant] == im)
			c->win[im->seq % c->grant] = NULL;
		in_msg_free(im);
		return;
	}
	im->complete = true;
	c->win[im->seq % c->grant] = im;
	while ((im = c->win[c->rx_next % c->grant]) != NULL && im->complete) {
		int64_t hwm = atomic_load(&c->ss->s->opt[FQI_SO_RCV_HWM]);

		c->win[c->rx_next % c->grant] = NULL;
		c->rx_next++;
		if (im->dropped) {
			c->owed_bytes += im->bytes;
			in_msg_free(im);
			c->owed++;
			continue;
		}
		im->next = NULL;
		if (c->rq_tail != NULL)
			c->rq_tail->next = im;
		else
			c->rq = im;
		c->rq_tail = im;
		c->rq_n++;
		if (hwm > 0 && c->rq_n > (uint64_t)hwm)
			c->withheld++;
		else
			c->owed++;
	}
	conn_flush(ot, c);
	sock_changed(c->ss);
	bye_check(c);
}

/*
 * im has no read out and none to post: deliver it, or, when a read failed (or could not be
 * posted), drop it and its peer, which the sender learns by the connection's end (ot->lock
 * held).
 */
static void in_finish(ofi_t *ot, in_msg *im)
{
	if (im->status != 0) {
		free_parts(im->parts, im->n);
		memset(im->parts, 0, im->n * sizeof(*im->parts));
		im->dropped = true;
		if (im->c->state != CONN_GONE)
			conn_gone(im->c, "a rendezvous read failed");
	}
	in_ready(ot, im);
}

/*
 * The part table of an indirect RTS is here (or its read failed: im->status): check it, make
 * the destinations and queue the message for its reads; on failure im is finished by the
 * caller and the peer dropped (ot->lock held).
 */
static void table_read(ofi_t *ot, in_msg *im)
{
	ofi_conn *c = im->c;
	uint64_t max = c->ss ? (uint64_t)atomic_load(&c->ss->s->opt[FQI_SO_MAX_MSG_SIZE]) : 0;
	ofi_frame view = {0};
	char why[160];
	int rc = im->status;

	if (rc == 0 && ofi_decode_rts_table(im->table->data, im->table->size, (uint32_t)im->n,
	                                    &view, why, sizeof(why)) != 0) {
		rc = FQ_EPROTO;
		conn_gone(c, why);
	}
	if (rc == 0 && max > 0 && view.total > max) {
		snprintf(why, sizeof(why), "a message of %llu bytes is above max_msg_size %llu",
		         (unsigned long long)view.total, (unsigned long long)max);
		FQI_WARN(SUBSYS, "connection %#x: %s; the peer is dropped", c->id, why);
		rc = FQ_EMSGSIZE;
		conn_gone(c, why);
	}
	if (rc == 0) {
		im->bytes = view.total;
		rc = in_destinations(ot, im, &view);
		if (rc != 0)
			conn_gone(c, fq_strerror(rc));
	}
	fq_msg_free(im->table);
	im->table = NULL;
	if (rc != 0) {
		im->status = rc;
		im->next_part = im->n;
		return;
	}
	readq_add(ot, im);
}

static void on_read(ofi_op *op, int status, size_t len)
{
	rd_op *rd = (rd_op *)op;
	ofi_t *ot = rd->ot;
	in_msg *im = rd->im;
	bool table = rd->table;

	FQI_UNUSED(len);
	pthread_mutex_lock(&ot->lock);
	rd->table = false;
	alink_del(&ot->rd_active, &rd->al);
	rd->next = ot->rd_free;
	ot->rd_free = rd;
	im->reads_out--;
	if (im->c == NULL) {
		/* A read of a lost peer's message that the provider ended at last. */
		ot->reads_retired--;
		if (im->reads_out == 0) {
			orphan_del(ot, im);
			in_msg_free(im);
		}
		pthread_mutex_unlock(&ot->lock);
		return;
	}
	ot->reads_out--;
	im->c->ops--;
	if (status != 0 && im->status == 0) {
		im->status = status;
		FQI_WARN(SUBSYS, "connection %#x: reading a message failed: %s", im->c->id,
		         fq_strerror(status));
	}
	if (table)
		table_read(ot, im);
	if (im->reads_out == 0 && im->next_part >= im->n)
		in_finish(ot, im);
	post_reads(ot);
	pthread_mutex_unlock(&ot->lock);
}

/*
 * Gather the next read of im: up to ot->read_segs pieces of its parts, read_chunk bytes in
 * all (a part longer than that takes several reads, parts shorter share one). Empty parts are
 * skipped. Returns the number of segments; im's cursor is not moved (ot->lock held).
 */
static size_t read_segs(ofi_t *ot, const in_msg *im, ofi_rma_seg *seg, uint64_t *bytes)
{
	size_t part = im->next_part, n = 0;
	uint64_t off = im->next_off, total = 0;
	uint64_t room =
	    ot->read_chunk < ot->f.caps.max_msg_size ? ot->read_chunk : ot->f.caps.max_msg_size;

	while (part < im->n && n < ot->read_segs && total < room) {
		const ofi_rts_part *p = &im->rparts[part];
		const ofi_msg *dst = (const ofi_msg *)im->parts[part];
		uint64_t len = p->size - off;

		if (len == 0) {
			part++;
			off = 0;
			continue;
		}
		if (len > room - total)
			len = room - total;
		seg[n++] = (ofi_rma_seg){dst->b->data + off, (size_t)len, dst->b->reg,
		                         p->raddr + off, p->key};
		total += len;
		off += len;
		if (off == p->size) {
			part++;
			off = 0;
		}
	}
	*bytes = total;
	return n;
}

/* Move im's cursor past `bytes` read bytes and any empty parts after them (ot->lock held). */
static void read_advance(in_msg *im, uint64_t bytes)
{
	while (im->next_part < im->n) {
		uint64_t left = im->rparts[im->next_part].size - im->next_off;

		if (left > bytes) {
			im->next_off += bytes;
			return;
		}
		bytes -= left;
		im->next_part++;
		im->next_off = 0;
	}
}

/* im joins the read queue (a connection op until it leaves). */
static void readq_add(ofi_t *ot, in_msg *im)
{
	im->next = NULL;
	im->c->ops++;
	if (ot->readq_tail != NULL)
		ot->readq_tail->next = im;
	else
		ot->readq = im;
	ot->readq_tail = im;
}

/* im, the head of the read queue, leaves it. */
static void readq_unlink(ofi_t *ot, in_msg *im)
{
	ot->readq = im->next;
	if (ot->readq == NULL)
		ot->readq_tail = NULL;
	im->c->ops--;
}

/*
 * im, the head of the read queue, has nothing more to post: it leaves the queue, and its last
 * read to complete (or post_reads, when none is out) finishes it (ot->lock held).
 */
static void readq_pop(ofi_t *ot, in_msg *im)
{
	im->next_part = im->n;
	readq_unlink(ot, im);
}

/* A read operation from the free list, or a new one (NULL: out of memory; ot->lock held). */
static rd_op *rd_get(ofi_t *ot)
{
	rd_op *rd = ot->rd_free;

	if (rd == NULL) {
		rd = calloc(1, sizeof(*rd));
		if (rd == NULL)
			return NULL;
		rd->op.done = on_read;
		rd->ot = ot;
	} else {
		ot->rd_free = rd->next;
	}
	return rd;
}

/* Post reads while the depth allows (ot->lock held). */
static void post_reads(ofi_t *ot)
{
	while (ot->readq != NULL && ot->reads_out < ot->read_depth) {
		in_msg *im = ot->readq;
		bool table = im->rparts == NULL; /* an indirect RTS: its part table first */
		ofi_rma_seg seg[OFI_SEGS_MAX];
		uint64_t bytes = 0;
		size_t nseg = 1;
		rd_op *rd;
		int rc;

		if (im->c->state == CONN_GONE && im->status == 0)
			im->status = FQ_ECLOSED;
		if (!table)
			read_advance(im, 0);
		if (im->status != 0 || (!table && im->next_part >= im->n)) {
			readq_pop(ot, im);
			if (im->reads_out == 0)
				in_finish(ot, im);
			continue;
		}
		if (table)
			seg[0] = (ofi_rma_seg){im->table->data, im->table->size,
			                       ((ofi_msg *)im->table)->b->reg, im->table_raddr,
			                       im->table_key};
		else
			nseg = read_segs(ot, im, seg, &bytes);
		rd = rd_get(ot);
		if (rd == NULL)
			return;
		rd->im = im;
		rd->table = table;
		rc = ofi_post_readv(&ot->f, seg, nseg, im->c->av->addr, &rd->op);
		if (rc != 0) {
			rd->table = false;
			rd->next = ot->rd_free;
			ot->rd_free = rd;
			if (rc == FQ_EAGAIN)
				return; /* the I/O thread tries again after progress */
			im->status = rc;
			continue;
		}
		alink_add(&ot->rd_active, &rd->al);
		ot->reads_out++;
		ot->reads_posted++;
		im->reads_out++;
		im->c->ops++;
		if (table) {
			readq_unlink(ot, im); /* back in the queue once the table is here */
			continue;
		}
		read_advance(im, bytes);
		if (im->next_part >= im->n)
			readq_pop(ot, im); /* all posted: on_read finishes it */
	}
}

/*
 * An RTS (or the table of an RTSI, seen as one): the sender's parts, and registered
 * destinations for them. On failure the caller drops the peer (ot->lock held).
 */
static int in_destinations(ofi_t *ot, in_msg *im, const ofi_frame *fr)
{
	im->rparts = calloc(im->n, sizeof(*im->rparts));
	if (im->rparts == NULL)
		return FQ_ENOMEM;
	for (size_t i = 0; i < im->n; i++) {
		int rc;

		im->rparts[i] = ofi_rts_at(fr, i);
		rc = ofi_msg_new(ot->t, ot->pool, im->rparts[i].size, im->rparts[i].size > 0,
		                 &im->parts[i]);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* A frame for c arrived in rb (ot->lock held). */
static void handle_frame(ofi_t *ot, ofi_conn *c, const ofi_frame *fr)
{
	uint64_t max = c->ss ? (uint64_t)atomic_load(&c->ss->s->opt[FQI_SO_MAX_MSG_SIZE]) : 0;
	in_msg *im;
	char why[160];

	switch (fr->type) {
	case OFI_CREDIT:
		if (fr->credits > c->peer_grant - c->credits) {
			conn_gone(c, "the peer returned more credits than it granted");
			return;
		}
		if (fr->seq > c->bytes_out) {
			conn_gone(c, "the peer gave back more bytes than it was sent");
			return;
		}
		c->credits += fr->credits;
		c->bytes_out -= fr->seq;
		conn_flush(ot, c);
		return;
	case OFI_FIN:
		for (out_msg **pp = &c->rdv; *pp != NULL; pp = &(*pp)->next) {
			out_msg *om = *pp;

			if (om->seq == fr->seq) {
				*pp = om->next;
				c->rdv_n--;
				out_msg_free(ot, om);
				conn_flush(ot, c);
				return;
			}
		}
		snprintf(why, sizeof(why), "FIN for message %llu that is not out",
		         (unsigned long long)fr->seq);
		conn_gone(c, why);
		return;
	case OFI_BYE:
		/* Everything before it is delivered first; then the TCP close tells the peer. */
		c->bye = true;
		c->bye_seq = fr->seq;
		bye_check(c);
		return;
	default:
		break;
	}
	if (fr->seq < c->rx_next || fr->seq - c->rx_next >= c->grant ||
	    c->win[fr->seq % c->grant] != NULL) {
		snprintf(why, sizeof(why),
		         "message %llu outside the window (next %llu, %u credits)",
		         (unsigned long long)fr->seq, (unsigned long long)c->rx_next, c->grant);
		conn_gone(c, why);
		return;
	}
	im = calloc(1, sizeof(*im));
	if (im == NULL) {
		conn_gone(c, "out of memory");
		return;
	}
	im->c = c;
	im->seq = fr->seq;
	im->n = fr->nparts;
	im->bytes = fr->total;
	im->parts = im->n > 1 ? calloc(im->n, sizeof(*im->parts)) : im->one;
	if (im->parts == NULL) {
		free(im);
		conn_gone(c, "out of memory");
		return;
	}
	if (max > 0 && fr->total > max) {
		snprintf(why, sizeof(why), "a message of %llu bytes is above max_msg_size %llu",
		         (unsigned long long)fr->total, (unsigned long long)max);
		FQI_WARN(SUBSYS, "connection %#x: %s; the peer is dropped", c->id, why);
		in_msg_free(im);
		conn_gone(c, why);
		return;
	}
	if (fr->type == OFI_EAGER) {
		const unsigned char *at = fr->data;

		for (size_t i = 0; i < im->n; i++) {
			uint64_t sz = ofi_eager_size(fr, i);

			if (ofi_msg_new(ot->t, ot->pool, sz, false, &im->parts[i]) != 0) {
				in_msg_free(im);
				conn_gone(c, "out of memory");
				return;
			}
			if (sz > 0)
				memcpy(im->parts[i]->data, at, sz);
			at += sz;
		}
		im->next_part = im->n;
		in_ready(ot, im);
		return;
	}
	if (fr->type == OFI_RTSI) {
		/* The part table first, into registered memory; then as for an RTS. */
		int rc = ofi_msg_new(ot->t, ot->pool, im->n * OFI_RTS_PART, true, &im->table);

		if (rc != 0) {
			in_msg_free(im);
			conn_gone(c, fq_strerror(rc));
			return;
		}
		im->table_raddr = fr->table_raddr;
		im->table_key = fr->table_key;
	} else {
		int rc = in_destinations(ot, im, fr);

		if (rc != 0) {
			in_msg_free(im);
			conn_gone(c, fq_strerror(rc));
			return;
		}
	}
	c->win[im->seq % c->grant] = im; /* holds the slot while reading */
	readq_add(ot, im);
	post_reads(ot);
}

static void on_recv(ofi_op *op, int status, size_t len)
{
	rbuf *rb = (rbuf *)op;
	ofi_t *ot = rb->ot;
	ofi_frame fr;
	char why[128];
	ofi_conn *c;

	pthread_mutex_lock(&ot->lock);
	if (status != 0) {
		if (!atomic_load(&ot->stop))
			FQI_WARN(SUBSYS, "a receive failed: %s", fq_strerror(status));
		rbuf_post(ot, rb);
		pthread_mutex_unlock(&ot->lock);
		return;
	}
	if (ofi_decode(rb->data, len, &fr, why, sizeof(why)) != 0) {
		/* Not a frame of ours: we cannot tell whose it is, so only it is dropped. */
		FQI_WARN(SUBSYS, "a frame was dropped: %s", why);
	} else if ((c = conn_find(ot, fr.conn)) == NULL || c->state == CONN_GONE) {
		FQI_DEBUG(SUBSYS, "a frame for connection %#x, which is gone", fr.conn);
	} else if (c->state == CONN_BOOT && !conn_boot_now(c)) {
		/* The peer's hello is still on its way on the TCP connection: keep the frame
		 * until it is here (the peer sends no more than our grant). */
		early *e = malloc(sizeof(*e) + len);

		if (e == NULL) {
			conn_gone(c, "out of memory");
		} else {
			e->next = NULL;
			e->len = len;
			memcpy(e + 1, rb->data, len);
			*c->early_tail = e;
			c->early_tail = &e->next;
		}
	} else if (c->state == CONN_READY) {
		handle_frame(ot, c, &fr);
	}
	atomic_fetch_add_explicit(&ot->activity, 1, memory_order_relaxed);
	rbuf_post(ot, rb);
	pthread_mutex_unlock(&ot->lock);
}

/* ---- Waiting ------------------------------------------------------------------------------ */

/*
 * A spinning caller's poll found nothing: give the CPU away if another task wants it. A yield
 * enters the scheduler, and a completion that comes meanwhile waits for it, so when the last
 * yield switched to nobody (this thread's context-switch count did not move: it has a core of
 * its own) the next comes after twice as many empty polls, up to 128; when it did switch (a
 * peer shares the core: starving it would stall the very reply we wait for), after every one.
 */
static void spin_yield(void)
{
	static _Thread_local unsigned empty, every = 1;
	struct rusage before, after;

	if (++empty < every)
		return;
	empty = 0;
	if (getrusage(RUSAGE_THREAD, &before) != 0) {
		sched_yield();
		return;
	}
	sched_yield();
	if (getrusage(RUSAGE_THREAD, &after) == 0 &&
	    after.ru_nivcsw + after.ru_nvcsw == before.ru_nivcsw + before.ru_nvcsw)
		every = every < 128 ? 2 * every : 128;
	else
		every = 1;
}

/*
 * Wait for a change of ss (ot->lock held, released while waiting): first drive progress in
 * this thread for `spin` microseconds, then sleep on the condition until the I/O thread's
 * progress signals it. Returns 0 (look again), FQ_EINTR or FQ_ETIMEDOUT.
 *
 * *spin_until is the caller's state, 0 at first: while the spin lasts (> 0), the caller counts
 * in ot->spinners, and the I/O thread leaves the completion queue to it (two threads woken
 * by every completion would only take the CPU and the fabric lock from each other); the
 * caller ends its count with spin_end, on every way out. -1: the spin is over (or none).
 */
static int sock_wait(ofi_sock *ss, int64_t deadline, int64_t *spin_until)
{
	ofi_t *ot = ss->ot;
	int ms;

	if (atomic_load(&ss->intr))
		return FQ_EINTR;
	ms = fqi_deadline_remaining(deadline);
	if (ms == 0)
		return FQ_ETIMEDOUT;
	if (*spin_until == 0) {
		*spin_until = ot->spin_us > 0 ? now_us() + ot->spin_us : -1;
		if (*spin_until > 0)
			atomic_fetch_add_explicit(&ot->spinners, 1, memory_order_relaxed);
	}
	if (*spin_until > 0 && now_us() < *spin_until) {
		pthread_mutex_unlock(&ot->lock);
		if (ofi_fabric_progress(&ot->f) <= 0)
			spin_yield();
		pthread_mutex_lock(&ot->lock);
		return 0;
	}
	spin_end(ot, spin_until);
	{
		struct timespec ts;
		int64_t wait_ms = ms < 0 || ms > 100 ? 100 : ms;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += wait_ms / 1000;
		ts.tv_nsec += (wait_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		ss->waiters++;
		io_wake(ot); /* the I/O thread drives progress while we sleep */
		pthread_cond_timedwait(&ss->cv, &ot->lock, &ts);
		ss->waiters--;
	}
	if (atomic_load(&ss->intr))
		return FQ_EINTR;
	return 0;
}

/* ---- Socket operations: send -------------------------------------------------------------- */

static int send_pub(ofi_t *ot, ofi_sock *ss, fq_msg **parts, size_t n, uint64_t bytes)
{
	ofi_conn *last = NULL;

	/* Every matching subscriber with room gets a shared copy, the last one the parts; a
	 * subscriber without room (or buffers too small for the vector) misses the message (PUB
	 * drops, as ZeroMQ's does). Backwards: a peer that a failing post drops leaves the list
	 * by a swap with the last one, which has been seen already. */
	for (size_t k = ss->npeers; k-- > 0;) {
		ofi_conn *c = ss->peers[k];

		if (!conn_room(c, bytes) || !fits(ot, c, n, bytes) ||
		    !fqi_subs_match(&c->subs, parts[0]->data, parts[0]->size))
			continue;
		if (last != NULL)
			conn_queue(ot, last, parts, n, bytes, false);
		last = c;
	}
	if (last != NULL && conn_queue(ot, last, parts, n, bytes, true) == 0) {
		for (size_t i = 0; i < n; i++)
			parts[i] = NULL;
		return 0;
	}
	free_parts(parts, n);
	for (size_t i = 0; i < n; i++)
		parts[i] = NULL;
	return 0;
}

static int ofi_send(fq_socket *s, fq_msg **parts, size_t n, int flags)
{
	ofi_sock *ss = ss_of(s);
	ofi_t *ot = ss->ot;
	int64_t deadline = -2, spin_until = 0;
	uint64_t bytes = 0;
	int rc;

	if (!fqi_type_sends(s->type))
		return FQ_ENOTSUP;
	if (n > OFI_MAX_PARTS)
		return FQ_EMSGSIZE;
	for (size_t i = 0; i < n; i++)
		bytes += parts[i]->size;
	pthread_mutex_lock(&ot->lock);
	if ((s->type == FQ_REQ && ss->awaiting) || (s->type == FQ_REP && !ss->awaiting)) {
		pthread_mutex_unlock(&ot->lock);
		return FQ_ESTATE;
	}
	if (s->type == FQ_PUB) {
		rc = send_pub(ot, ss, parts, n, bytes);
		pthread_mutex_unlock(&ot->lock);
		return rc;
	}
	for (;;) {
		ofi_conn *c = NULL;
		bool any_fits = false;

		if (atomic_load(&ss->intr)) {
			rc = FQ_EINTR;
			break;
		}
		if (s->type == FQ_REP) {
			c = ss->turn;
			if (c == NULL || c->state != CONN_READY) {
				/* The requester is gone: the answer is dropped (as zeromq does). */
				free_parts(parts, n);
				for (size_t i = 0; i < n; i++)
					parts[i] = NULL;
				ss->awaiting = false;
				ss->turn = NULL;
				rc = 0;
				break;
			}
			any_fits = fits(ot, c, n, bytes);
			if (!any_fits || !conn_room(c, bytes))
				c = NULL;
		} else {
			for (size_t k = 0; k < ss->npeers; k++) {
				ofi_conn *cand = ss->peers[(ss->rr_send + k) % ss->npeers];

				if (cand->state != CONN_READY || !fits(ot, cand, n, bytes))
					continue;
				any_fits = true;
				if (conn_room(cand, bytes)) {
					c = cand;
					ss->rr_send = (ss->rr_send + k + 1) % ss->npeers;
					break;
				}
			}
		}
		if (c != NULL) {
			rc = conn_queue(ot, c, parts, n, bytes, true);
			if (rc == 0) {
				for (size_t i = 0; i < n; i++)
					parts[i] = NULL;
				if (s->type == FQ_REQ) {
					/* A post that failed at once dropped the peer and the
					 * request with it: the REQ may ask again. */
					ss->awaiting = c->state == CONN_READY;
					ss->turn = ss->awaiting ? c : NULL;
				} else if (s->type == FQ_REP) {
					ss->awaiting = false;
					ss->turn = NULL;
				}
			}
			break;
		}
		if (!any_fits && ss->npeers > 0) {
			bool ready = false;

			for (size_t k = 0; k < ss->npeers; k++)
				ready = ready || ss->peers[k]->state == CONN_READY;
			if (ready) {
				/* More parts than a peer's buffers can announce. */
				rc = FQ_EMSGSIZE;
				break;
			}
		}
		if (flags & FQ_DONTWAIT) {
			rc = FQ_EAGAIN;
			break;
		}
		if (deadline == -2)
			deadline = fqi_deadline(atomic_load(&s->opt[FQI_SO_SND_TIMEOUT]));
		rc = sock_wait(ss, deadline, &spin_until);
		if (rc != 0)
			break;
	}
	spin_end(ot, &spin_until);
	pthread_mutex_unlock(&ot->lock);
	return rc;
}

/* ---- Socket operations: receive ----------------------------------------------------------- */

/* Take the next message of c off its queue (ot->lock held). */
static in_msg *rq_pop(ofi_t *ot, ofi_conn *c)
{
	in_msg *im = c->rq;

	c->rq = im->next;
	if (c->rq == NULL)
		c->rq_tail = NULL;
	c->rq_n--;
	c->owed_bytes += im->bytes;
	if (c->withheld > 0) {
		c->withheld--;
		c->owed++;
	}
	if (c->state == CONN_READY)
		conn_flush(ot, c);
	return im;
}

static bool any_input(ofi_sock *ss)
{
	for (size_t k = 0; k < ss->npeers; k++) {
		if (ss->peers[k]->rq != NULL && (ss->s->type != FQ_REQ || ss->peers[k] == ss->turn))
			return true;
	}
	return false;
}

static int recv_common(fq_socket *s, fq_msg **one, fq_parts **vec, int flags)
{
	ofi_sock *ss = ss_of(s);
	ofi_t *ot = ss->ot;
	int64_t deadline = -2, spin_until = 0;
	int rc;

	if (!fqi_type_receives(s->type))
		return FQ_ENOTSUP;
	pthread_mutex_lock(&ot->lock);
	if ((s->type == FQ_REQ && !ss->awaiting) || (s->type == FQ_REP && ss->awaiting)) {
		pthread_mutex_unlock(&ot->lock);
		return FQ_ESTATE;
	}
	for (;;) {
		ofi_conn *c = NULL;
		size_t at = 0;

		if (atomic_load(&ss->intr)) {
			rc = FQ_EINTR;
			break;
		}
		for (size_t k = 0; k < ss->npeers && c == NULL; k++) {
			at = (ss->rr_recv + k) % ss->npeers;
			if (ss->peers[at]->rq != NULL &&
			    (s->type != FQ_REQ || ss->peers[at] == ss->turn))
				c = ss->peers[at];
		}
		if (c != NULL) {
			in_msg *im = c->rq;

			if (one != NULL && im->n != 1) {
				rc = FQ_EPARTS;
				break;
			}
			if (one == NULL) {
				fq_parts *p;

				rc = fqi_parts_new(im->n, &p);
				if (rc != 0)
					break;
				memcpy(p->msgs, im->parts, im->n * sizeof(*im->parts));
				p->bytes = im->bytes;
				*vec = p;
			} else {
				*one = im->parts[0];
			}
			memset(im->parts, 0, im->n * sizeof(*im->parts));
			rq_pop(ot, c);
			in_msg_free(im);
			ss->rr_recv = (at + 1) % (ss->npeers ? ss->npeers : 1);
			if (c->state == CONN_GONE && c->rq == NULL)
				sock_del_peer(ss, c);
			if (s->type == FQ_REP) {
				ss->awaiting = true;
				ss->turn = c->state == CONN_READY ? c : NULL;
			} else if (s->type == FQ_REQ) {
				ss->awaiting = false;
				ss->turn = NULL;
			}
			rc = 0;
			break;
		}
		if (flags & FQ_DONTWAIT) {
			rc = FQ_EAGAIN;
			break;
		}
		if (deadline == -2)
			deadline = fqi_deadline(atomic_load(&s->opt[FQI_SO_RCV_TIMEOUT]));
		rc = sock_wait(ss, deadline, &spin_until);
		if (rc != 0)
			break;
	}
	spin_end(ot, &spin_until);
	pthread_mutex_unlock(&ot->lock);
	return rc;
}

static int ofi_recv(fq_socket *s, fq_msg **out, int flags)
{
	return recv_common(s, out, NULL, flags);
}

static int ofi_recvv(fq_socket *s, fq_parts **out, int flags)
{
	return recv_common(s, NULL, out, flags);
}

/* ---- Poll support ------------------------------------------------------------------------- */

static int ofi_events(fq_socket *s)
{
	ofi_sock *ss = ss_of(s);
	ofi_t *ot = ss->ot;
	int ev = 0;

	if (atomic_load(&ss->intr))
		return FQ_EINTR;
	/* Completions nobody has read yet would not wake the fd: read them first. */
	ofi_fabric_progress(&ot->f);
	pthread_mutex_lock(&ot->lock);
	fqi_drain(ss->efd);
	if (fqi_type_receives(s->type) && !(s->type == FQ_REQ && !ss->awaiting) &&
	    !(s->type == FQ_REP && ss->awaiting) && any_input(ss))
		ev |= FQ_POLLIN;
	if (fqi_type_sends(s->type) && !(s->type == FQ_REQ && ss->awaiting) &&
	    !(s->type == FQ_REP && !ss->awaiting)) {
		if (s->type == FQ_PUB || s->type == FQ_REP) {
			ev |= FQ_POLLOUT;
		} else {
			for (size_t k = 0; k < ss->npeers && !(ev & FQ_POLLOUT); k++) {
				if (conn_room(ss->peers[k], 0))
					ev |= FQ_POLLOUT;
			}
		}
	}
	ss->efd_armed = true;
	if (ss->waiters == 0)
		io_wake(ot); /* someone polls the fd: the I/O thread must drive progress */
	pthread_mutex_unlock(&ot->lock);
	return ev;
}

static int ofi_fd(fq_socket *s, int *fd)
{
	ofi_sock *ss = ss_of(s);

	pthread_mutex_lock(&ss->ot->lock);
	ss->efd_armed = true;
	pthread_mutex_unlock(&ss->ot->lock);
	*fd = ss->efd;
	return 0;
}

static void ofi_interrupt(fq_socket *s, bool on)
{
	ofi_sock *ss = ss_of(s);

	atomic_store(&ss->intr, on);
	pthread_mutex_lock(&ss->ot->lock);
	pthread_cond_broadcast(&ss->cv);
	fqi_kick(ss->efd);
	pthread_mutex_unlock(&ss->ot->lock);
}

/* ---- Socket operations: addresses --------------------------------------------------------- */

/* "host:port" of a tcp:// URL; port 0 or "*" allowed for bind only. */
static int split_addr(const char *rest, bool bind, char *host, size_t hlen, int *port)
{
	const char *colon = strrchr(rest, ':');
	char *end;
	long p;

	if (colon == NULL || (size_t)(colon - rest) >= hlen || colon[1] == '\0')
		return FQ_EADDRINVAL;
	memcpy(host, rest, (size_t)(colon - rest));
	host[colon - rest] = '\0';
	if (host[0] == '[') {
		size_t l = strlen(host);

		if (l < 2 || host[l - 1] != ']')
			return FQ_EADDRINVAL;
		memmove(host, host + 1, l - 2);
		host[l - 2] = '\0';
	}
	if (bind && strcmp(colon + 1, "*") == 0) {
		*port = 0;
		return 0;
	}
	p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || p < (bind ? 0 : 1) || p > 65535)
		return FQ_EADDRINVAL;
	*port = (int)p;
	return 0;
}

static int ofi_bind(fq_socket *s, const fqi_url *url, char *resolved)
{
	ofi_sock *ss = ss_of(s);
	ofi_t *ot = ss->ot;
	char host[256];
	bool ipc = strcmp(url->scheme, "ipc") == 0;
	int port = 0, fd, bound = 0, rc;
	listener *l;
	struct epoll_event ev = {.events = EPOLLIN};

	if (ipc) {
		if (strlen(url->rest) >= sizeof(l->path))
			return FQ_EADDRINVAL;
		rc = ofi_boot_listen_unix(url->rest, &fd);
	} else {
		rc = split_addr(url->rest, true, host, sizeof(host), &port);
		if (rc == 0)
			rc = ofi_boot_listen(host, port, ot->smc, &fd, &bound);
	}
	if (rc != 0)
		return rc;
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		close(fd);
		return FQ_ENOMEM;
	}
	l->src.kind = SRC_LISTENER;
	l->ss = ss;
	l->fd = fd;
	if (ipc && url->rest[0] != '@')
		snprintf(l->path, sizeof(l->path), "%s", url->rest);
	ev.data.ptr = &l->src;
	pthread_mutex_lock(&ot->lock);
	l->next = ot->listeners;
	ot->listeners = l;
	epoll_ctl(ot->ep, EPOLL_CTL_ADD, fd, &ev);
	pthread_mutex_unlock(&ot->lock);
	if (ipc) {
		snprintf(resolved, FQI_URL_MAX, "ipc://%s", url->rest);
		return 0;
	}
	snprintf(resolved, FQI_URL_MAX, "tcp://%s%s%s:%d", strchr(host, ':') ? "[" : "",
	         host[0] == '\0' || strcmp(host, "*") == 0 ? "0.0.0.0" : host,
	         strchr(host, ':') ? "]" : "", bound);
	return 0;
}

static int ofi_connect(fq_socket *s, const fqi_url *url, char *resolved)
{
	ofi_sock *ss = ss_of(s);
	ofi_t *ot = ss->ot;
	connecter *k = calloc(1, sizeof(*k));
	int rc;

	if (k == NULL)
		return FQ_ENOMEM;
	if (strcmp(url->scheme, "ipc") == 0) {
		k->unix_path = true;
		rc = url->rest[0] == '\0' || strlen(url->rest) >= 108 ? FQ_EADDRINVAL : 0;
		if (rc == 0)
			snprintf(k->host, sizeof(k->host), "%s", url->rest);
	} else {
		rc = split_addr(url->rest, false, k->host, sizeof(k->host), &k->port);
		if (rc == 0 && (k->host[0] == '\0' || strcmp(k->host, "*") == 0))
			rc = FQ_EADDRINVAL;
	}
	if (rc != 0) {
		free(k);
		return rc;
	}
	k->ss = ss;
	k->ivl = atomic_load(&s->opt[FQI_SO_RECONNECT_IVL]);
	k->due_ms = 0;
	pthread_mutex_lock(&ot->lock);
	k->next = ot->connecters;
	ot->connecters = k;
	pthread_mutex_unlock(&ot->lock);
	io_wake(ot);
	snprintf(resolved, FQI_URL_MAX, "%s", url->text);
	return 0;
}

/* ---- Socket life -------------------------------------------------------------------------- */

static int ofi_sock_open(fq_socket *s)
{
	ofi_sock *ss = ss_of(s);
	pthread_condattr_t ca;

	memset(ss, 0, sizeof(*ss));
	ss->s = s;
	ss->ot = ot_of(s->t);
	ss->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ss->efd < 0)
		return fqi_syserr(errno);
	pthread_condattr_init(&ca);
	pthread_cond_init(&ss->cv, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

static int ofi_setopt(fq_socket *s, fqi_sockopt_id id, const char *text)
{
	ofi_sock *ss = ss_of(s);
	ofi_t *ot = ss->ot;
	int rc = 0;

	switch (id) {
	case FQI_SO_SUBSCRIBE:
	case FQI_SO_UNSUBSCRIBE: {
		size_t len = text ? strlen(text) : 0;

		if (s->type != FQ_SUB)
			return id == FQI_SO_SUBSCRIBE && text == NULL ? 0 : FQ_ENOTSUP;
		if (len > OFI_BOOT_TEXT)
			return FQ_EINVAL;
		pthread_mutex_lock(&ot->lock);
		rc = fqi_subs_change(&ss->subs, text ? text : "", len, id == FQI_SO_SUBSCRIBE);
		for (size_t i = 0; rc == 0 && i < ss->npeers; i++) {
			ofi_conn *c = ss->peers[i];

			if (c->state == CONN_READY &&
			    ofi_boot_record(&c->boot,
			                    id == FQI_SO_SUBSCRIBE ? OFI_BOOT_SUB : OFI_BOOT_UNSUB,
			                    text ? text : "", len) == 0)
				conn_watch(c);
		}
		pthread_mutex_unlock(&ot->lock);
		return rc;
	}
	default:
		return 0;
	}
}

/* Wait (up to linger) until what we queued or announced has gone. */
static void linger_wait(ofi_sock *ss)
{
	ofi_t *ot = ss->ot;
	int64_t deadline = fqi_deadline(atomic_load(&ss->s->opt[FQI_SO_LINGER]));

	pthread_mutex_lock(&ot->lock);
	for (;;) {
		bool busy = false;
		int64_t spin = -1; /* no spin: sleep at once */

		for (size_t i = 0; i < ss->npeers; i++) {
			ofi_conn *c = ss->peers[i];

			if (c->state == CONN_READY && (c->outq != NULL || c->rdv != NULL))
				busy = true;
		}
		if (!busy || fqi_deadline_remaining(deadline) == 0)
			break;
		if (sock_wait(ss, deadline, &spin) != 0)
			break;
	}
	/*
	 * Say BYE after the last frame and wait for the peers to close: then they have it all
	 * (closing the endpoint earlier could lose what the provider still holds). A BYE that
	 * cannot be posted yet (no send buffer free) is tried again after each wait: without it
	 * the peer could close on our TCP end before it took our last eager frames.
	 */
	for (;;) {
		bool busy = false;
		int64_t spin = -1; /* no spin: sleep at once */

		for (size_t i = 0; i < ss->npeers; i++) {
			ofi_conn *c = ss->peers[i];
			sbuf *sb;
			int rc;

			if (c->state != CONN_READY || c->bye_sent || (sb = sbuf_get(ot, c)) == NULL)
				continue;
			rc = frame_post(ot, c, sb,
			                (size_t)ofi_encode_ctl(sb->data, ot->rbuf_size, OFI_BYE,
			                                       c->peer_id, c->tx_seq, 0));
			if (rc == 0) {
				c->bye_sent = true;
				continue;
			}
			sbuf_put(ot, sb);
			if (rc != FQ_EAGAIN && rc != FQ_ENOMEM)
				conn_gone(
				    c, fq_strerror(rc)); /* as conn_flush does; may leave peers */
		}
		for (size_t i = 0; i < ss->npeers; i++)
			busy = busy || ss->peers[i]->state == CONN_READY;
		if (!busy || fqi_deadline_remaining(deadline) == 0)
			break;
		if (sock_wait(ss, deadline, &spin) != 0)
			break;
	}
	pthread_mutex_unlock(&ot->lock);
}

static void ofi_close(fq_socket *s)
{
	ofi_sock *ss = ss_of(s);
	ofi_t *ot = ss->ot;

	if (fqi_type_sends(s->type))
		linger_wait(ss);
	pthread_mutex_lock(&ot->lock);
	ss->closing = true;
	for (listener **pp = &ot->listeners; *pp != NULL;) {
		listener *l = *pp;

		if (l->ss != ss) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		epoll_ctl(ot->ep, EPOLL_CTL_DEL, l->fd, NULL);
		close(l->fd);
		l->fd = -1;
		if (l->path[0] != '\0')
			unlink(l->path);
		l->next = ot->dead_listeners;
		ot->dead_listeners = l;
	}
	for (connecter **pp = &ot->connecters; *pp != NULL;) {
		connecter *k = *pp;

		if (k->ss != ss) {
			pp = &k->next;
			continue;
		}
		*pp = k->next;
		if (k->conn != NULL)
			k->conn->origin = NULL;
		free(k);
	}
	for (ofi_conn *c = ot->conns; c != NULL; c = c->next) {
		if (c->ss != ss)
			continue;
		conn_gone(c, NULL); /* its messages go with it (conn_free) */
		c->in_peers = false;
		c->ss = NULL;
	}
	pthread_mutex_unlock(&ot->lock);
	io_wake(ot);
	fqi_subs_free(&ss->subs);
	free(ss->peers);
	pthread_cond_destroy(&ss->cv);
	close(ss->efd);
}

/* ---- I/O thread --------------------------------------------------------------------------- */

static void io_accept(ofi_t *ot, listener *l)
{
	for (;;) {
		ofi_conn *c;
		ofi_hello h;
		int fd, rc = ofi_boot_accept(l->fd, &fd);

		if (rc != 0) {
			if (rc != FQ_EAGAIN)
				FQI_WARN(SUBSYS, "accept: %s", fq_strerror(rc));
			return;
		}
		rc = conn_new(l->ss, &c);
		if (rc != 0) {
			FQI_WARN(SUBSYS, "cannot take a connection: %s", fq_strerror(rc));
			close(fd);
			continue;
		}
		fill_hello(c, &h);
		rc = ofi_boot_start(fd, &h, &c->boot);
		if (rc != 0) {
			c->state = CONN_GONE;
			continue;
		}
		conn_watch(c);
	}
}

static void io_connecters(ofi_t *ot, int64_t now, int *timeout)
{
	for (connecter *k = ot->connecters; k != NULL; k = k->next) {
		ofi_conn *c;
		ofi_hello h;
		int rc;

		if (k->conn != NULL)
			continue;
		if (k->due_ms > now) {
			int left = (int)(k->due_ms - now);

			if (*timeout < 0 || left < *timeout)
				*timeout = left;
			continue;
		}
		rc = conn_new(k->ss, &c);
		if (rc == 0) {
			fill_hello(c, &h);
			rc = k->unix_path
			         ? ofi_boot_connect_unix(k->host, &h, &c->boot)
			         : ofi_boot_connect(k->host, k->port, ot->smc, &h, &c->boot);
			if (rc != 0)
				c->state = CONN_GONE;
		}
		if (rc != 0) {
			FQI_DEBUG(SUBSYS, "connect %s:%d: %s", k->host, k->port, fq_strerror(rc));
			k->due_ms = now + (k->ivl > 0 ? k->ivl : 1);
			if (*timeout < 0 || k->due_ms - now < *timeout)
				*timeout = (int)(k->due_ms - now);
			continue;
		}
		c->origin = k;
		k->conn = c;
		conn_watch(c);
	}
}

static void io_round(ofi_t *ot)
{
	ofi_conn *list;

	pthread_mutex_lock(&ot->lock);
	list = ot->pending;
	ot->pending = NULL;
	for (ofi_conn *c = list, *next; c != NULL; c = next) {
		next = c->pend_next;
		c->pending = false;
		conn_flush(ot, c);
	}
	post_reads(ot);
	{
		rbuf *retry = ot->unposted; /* taken: a failure puts its buffer back */

		ot->unposted = NULL;
		while (retry != NULL) {
			rbuf *rb = retry;

			retry = rb->next;
			rbuf_post(ot, rb);
		}
	}
	conn_reap(ot);
	while (ot->dead_listeners != NULL) {
		listener *l = ot->dead_listeners;

		ot->dead_listeners = l->next;
		free(l);
	}
	pthread_mutex_unlock(&ot->lock);
}

static void *io_main(void *arg)
{
	ofi_t *ot = arg;
	struct epoll_event evs[32];
	uint64_t seen = 0;
	bool cq_armed = true, spinning;
	int idle = 0;

	while (!atomic_load(&ot->stop)) {
		int timeout = -1, n;
		uint64_t act;

		/* Progress first: completions call back into the protocol. */
		while (ofi_fabric_progress(&ot->f) > 0)
			idle = 0;
		io_round(ot);
		pthread_mutex_lock(&ot->lock);
		io_connecters(ot, fqi_clock_ms(), &timeout);
		if (ot->pending != NULL || ot->unposted != NULL ||
		    (ot->readq != NULL && ot->reads_out < ot->read_depth))
			timeout = timeout < 0 || timeout > 1 ? 1 : timeout;
		pthread_mutex_unlock(&ot->lock);
		act = atomic_load_explicit(&ot->activity, memory_order_relaxed);
		if (act != seen) {
			seen = act;
			idle = 0;
		}
		spinning = atomic_load_explicit(&ot->spinners, memory_order_relaxed) > 0;
		if (ot->busy_poll) {
			timeout = 0;
		} else if (spinning) {
			/* A caller drives progress itself (it spins in a wait): polling or waking
			 * here would only take the CPU and the fabric lock from it (a look every
			 * millisecond doubled the tail of a ping-pong). The queue's fd stays
			 * disarmed; a caller that goes to sleep wakes us, one that is done is
			 * noticed within 10 ms (nothing waits on us meanwhile: a call that waits
			 * spins or wakes us, a poller's fd wakes us). */
			if (timeout < 0 || timeout > 10)
				timeout = 10;
		} else if (!ot->f.caps.wait_fd) {
			/* No fd to sleep on: poll, backing off to a millisecond when idle. */
			if (idle++ < 64) {
				timeout = 0;
				sched_yield();
			} else if (timeout < 0 || timeout > 1) {
				timeout = 1;
			}
		} else if (!ofi_fabric_can_sleep(&ot->f)) {
			timeout = 0;
		} else if (!cq_armed) {
			/* One shot: each wake-up by the queue disarms it. */
			struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT,
			                         .data.ptr = &ot->cq_src};

			cq_armed = epoll_ctl(ot->ep, EPOLL_CTL_MOD, ot->f.cq_fd, &ev) == 0;
			if (!cq_armed)
				timeout = timeout < 0 || timeout > 1 ? 1 : timeout;
		}
		n = epoll_wait(ot->ep, evs, 32, timeout);
		pthread_mutex_lock(&ot->lock);
		for (int i = 0; i < n; i++) {
			io_src *src = evs[i].data.ptr;

			switch (src->kind) {
			case SRC_WAKE:
				fqi_drain(ot->wake_fd);
				break;
			case SRC_CQ:
				cq_armed = false;
				break; /* progress at the top of the loop */
			case SRC_LISTENER: {
				listener *l = (listener *)src;

				if (l->fd >= 0)
					io_accept(ot, l);
				break;
			}
			case SRC_CONN: {
				ofi_conn *c = (ofi_conn *)src;
				short re =
				    (short)((evs[i].events & EPOLLIN ? POLLIN : 0) |
				            (evs[i].events & EPOLLOUT ? POLLOUT : 0) |
				            (evs[i].events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)
				                 ? POLLHUP | POLLIN
				                 : 0));

				if (c->state != CONN_GONE)
					conn_boot_io(c, re);
				break;
			}
			default:
				break;
			}
		}
		pthread_mutex_unlock(&ot->lock);
	}
	return NULL;
}

/* ---- Transport ------------------------------------------------------------------------------ */

static void ofi_fini(fq_transport *t);

static int ofi_init(fq_transport *t)
{
	ofi_t *ot = calloc(1, sizeof(*ot));
	const char *prov = t->opt_str[OPT_PROVIDER], *node;
	struct epoll_event ev = {.events = EPOLLIN};
	int rc;

	if (ot == NULL)
		return FQ_ENOMEM;
	t->priv = ot;
	ot->t = t;
	ot->ep = ot->wake_fd = -1;
	pthread_mutex_init(&ot->lock, NULL);
	if (fqi_smc_mode_parse(t->opt_str[OPT_SMC] ? t->opt_str[OPT_SMC] : "off", &ot->smc) != 0) {
		FQI_ERROR(SUBSYS, "smc=%s: not one of " FQI_SMC_MODES, t->opt_str[OPT_SMC]);
		rc = FQ_EINVAL;
		goto fail;
	}
	ot->rbuf_size = (size_t)t->opt[OPT_EAGER];
	ot->credits = (uint32_t)t->opt[OPT_CREDITS];
	ot->sbufs_max = (size_t)t->opt[OPT_SEND_BUFS];
	ot->read_chunk = (size_t)t->opt[OPT_READ_CHUNK];
	ot->read_depth = (unsigned)t->opt[OPT_READ_DEPTH];
	ot->read_segs = (size_t)t->opt[OPT_IOV_MAX];
	ot->spin_us = t->opt[OPT_SPIN];
	ot->busy_poll = t->opt[OPT_BUSY_POLL] != 0;
	node = t->opt_str[OPT_NODE];
	rc =
	    ofi_fabric_open(&ot->f, prov != NULL && prov[0] != '\0' ? prov : NULL,
	                    node != NULL && node[0] != '\0' ? node : NULL, t->opt[OPT_STRICT] != 0);
	if (rc != 0)
		goto fail;
	ot->fabric_open = true;
	if (ot->rbuf_size > ot->f.caps.max_msg_size)
		ot->rbuf_size = ot->f.caps.max_msg_size;
	if (ot->read_segs == 0 || ot->read_segs > ofi_read_segs_max(&ot->f))
		ot->read_segs = ofi_read_segs_max(&ot->f);
	rc = ofi_pool_new(&ot->f, (size_t)t->opt[OPT_BUFFER_CACHE], &ot->pool);
	if (rc == 0)
		rc = ofi_rcache_new(&ot->f, (size_t)t->opt[OPT_RCACHE_ENTRIES],
		                    (size_t)t->opt[OPT_RCACHE_BYTES], &ot->rcache);
	if (rc != 0)
		goto fail;
	ot->ep = epoll_create1(EPOLL_CLOEXEC);
	ot->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ot->ep < 0 || ot->wake_fd < 0) {
		rc = fqi_syserr(errno);
		goto fail;
	}
	ot->wake_src.kind = SRC_WAKE;
	ev.data.ptr = &ot->wake_src;
	epoll_ctl(ot->ep, EPOLL_CTL_ADD, ot->wake_fd, &ev);
	if (ot->f.caps.wait_fd) {
		ot->cq_src.kind = SRC_CQ;
		ev.events = EPOLLIN | EPOLLONESHOT; /* the I/O thread re-arms it (io_main) */
		ev.data.ptr = &ot->cq_src;
		epoll_ctl(ot->ep, EPOLL_CTL_ADD, ot->f.cq_fd, &ev);
	}
	if (pthread_create(&ot->io, NULL, io_main, ot) != 0) {
		rc = FQ_ENOMEM;
		goto fail;
	}
	ot->io_started = true;
	FQI_INFO(SUBSYS, "provider %s, eager %zu bytes, %u credits, %s", ot->f.prov, ot->rbuf_size,
	         ot->credits, ot->f.caps.wait_fd ? "wait fd" : "polled");
	return 0;
fail:
	ofi_fini(t);
	return rc;
}

static void ofi_fini(fq_transport *t)
{
	ofi_t *ot = t->priv;

	if (ot == NULL)
		return;
	atomic_store(&ot->stop, true);
	if (ot->io_started) {
		io_wake(ot);
		pthread_join(ot->io, NULL);
	}
	/* Sockets are closed: end every connection, then let the provider finish. */
	pthread_mutex_lock(&ot->lock);
	for (ofi_conn *c = ot->conns; c != NULL; c = c->next)
		conn_gone(c, NULL);
	pthread_mutex_unlock(&ot->lock);
	if (ot->fabric_open) {
		for (int i = 0; i < 100; i++) {
			bool busy;

			ofi_fabric_progress(&ot->f);
			pthread_mutex_lock(&ot->lock);
			busy = ot->reads_out > 0;
			for (ofi_conn *c = ot->conns; c != NULL && !busy; c = c->next)
				busy = c->ops > 0;
			pthread_mutex_unlock(&ot->lock);
			if (!busy)
				break;
			usleep(1000);
		}
	}
	pthread_mutex_lock(&ot->lock);
	ot->readq = ot->readq_tail = NULL; /* their messages sit in their connections' windows */
	while (ot->conns != NULL) {
		ofi_conn *c = ot->conns;

		ot->conns = c->next;
		c->ops = 0;
		conn_free(c);
	}
	pthread_mutex_unlock(&ot->lock);
	while (ot->rd_free != NULL) {
		rd_op *rd = ot->rd_free;

		ot->rd_free = rd->next;
		free(rd);
	}
	while (ot->dead_listeners != NULL) {
		listener *l = ot->dead_listeners;

		ot->dead_listeners = l->next;
		free(l);
	}
	/* Closing the endpoint ends what the provider still holds (posted receives, retired
	 * reads and sends); the memory they named goes after it. */
	if (ot->fabric_open)
		ofi_fabric_close_ep(&ot->f);
	while (ot->rd_active != NULL) {
		rd_op *rd = ALINK_OWNER(ot->rd_active, rd_op);

		alink_del(&ot->rd_active, &rd->al);
		free(rd);
	}
	while (ot->orphans != NULL) {
		in_msg *im = ot->orphans;

		ot->orphans = im->next;
		in_msg_free(im);
	}
	if (ot->rcache != NULL)
		ofi_rcache_free(ot->rcache);
	if (ot->pool != NULL)
		ofi_pool_close(ot->pool);
	if (ot->fabric_open) {
		struct slab *sl = ot->slabs;

		while (sl != NULL) {
			struct slab *next = sl->next;

			ofi_mr_dereg(&ot->f, &sl->mr);
			free(sl->mem);
			free(sl->objs);
			free(sl);
			sl = next;
		}
		ofi_fabric_close(&ot->f);
	}
	for (av_ent *a = ot->avs, *next; a != NULL; a = next) {
		next = a->next;
		free(a);
	}
	free(ot->slots);
	free(ot->gens);
	if (ot->ep >= 0)
		close(ot->ep);
	if (ot->wake_fd >= 0)
		close(ot->wake_fd);
	pthread_mutex_destroy(&ot->lock);
	free(ot);
	t->priv = NULL;
}

void ofi_transport_stats(fq_transport *t, ofi_stats *out)
{
	ofi_t *ot = ot_of(t);
	uint64_t hits, evictions;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&ot->lock);
	for (ofi_conn *c = ot->conns; c != NULL; c = c->next)
		out->conns++;
	out->rbufs_posted = ot->posted;
	out->rbufs_reserved = ot->reserved;
	out->reads_out = ot->reads_out;
	out->reads_retired = ot->reads_retired;
	pthread_mutex_unlock(&ot->lock);
	out->registrations = atomic_load(&ot->f.registrations);
	out->pool_made = ofi_pool_made(ot->pool);
	ofi_rcache_stats(ot->rcache, &hits, &out->rcache_misses, &evictions, &out->rcache_entries);
}

static int ofi_counter(fq_transport *t, const char *name, uint64_t *value)
{
	ofi_t *ot = ot_of(t);

	if (strcmp(name, "registrations") == 0) {
		*value = atomic_load(&ot->f.registrations);
		return 0;
	}
	if (strcmp(name, "reads") == 0) {
		pthread_mutex_lock(&ot->lock);
		*value = ot->reads_posted;
		pthread_mutex_unlock(&ot->lock);
		return 0;
	}
	return FQ_ENOENT;
}

static int ofi_probe(void)
{
	return ofi_lib();
}

static const fqi_transport_ops ofi_transport_ops = {
    .size = sizeof(fqi_transport_ops),
    .priv_size = 0,
    .init = ofi_init,
    .fini = ofi_fini,
    .probe = ofi_probe,
    .counter = ofi_counter,
};

static const fqi_socket_ops ofi_socket_ops = {
    .size = sizeof(fqi_socket_ops),
    .priv_size = sizeof(ofi_sock),
    .open = ofi_sock_open,
    .close = ofi_close,
    .setopt = ofi_setopt,
    .bind = ofi_bind,
    .connect = ofi_connect,
    .send = ofi_send,
    .recv = ofi_recv,
    .recvv = ofi_recvv,
    .events = ofi_events,
    .fd = ofi_fd,
    .interrupt = ofi_interrupt,
};

const fqi_transport_desc fqi_ofi_transport = {
    .name = "ofi",
    .schemes = "tcp,ipc",
    .caps = FQI_CAP_ZERO_COPY | FQI_CAP_REGIONS | FQI_CAP_CROSS_HOST | FQI_CAP_POLL_FD |
            FQI_CAP_RCV_HWM_BYTES,
    .options = ofi_options,
    .option_count = OPT_COUNT,
    .transport_ops = &ofi_transport_ops,
    .msg_ops = &ofi_msg_ops,
    .socket_ops = &ofi_socket_ops,
    .region_ops = &ofi_region_ops,
};
