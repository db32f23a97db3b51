/*
 * shmem transport: zero-copy messages between processes of one host.
 *
 * Connections are Unix-domain SOCK_SEQPACKET sockets (ipc:// paths; tcp://host:port is mapped
 * onto a per-user directory after checking that the host is this one). They carry only
 * control messages: the handshake (each side's ring and wake-up eventfds), segment
 * announcements (memfds, SCM_RIGHTS) and subscriptions. Messages travel as 32-byte handles
 * through one single-producer ring per direction, in shared memory.
 *
 * Threads and locks (all process-local):
 * - sock->rlock serialises receivers, sock->slock senders; changing a socket's peer list takes
 *   both (order: rlock, conn->ctl_lock, slock).
 * - The I/O thread accepts, runs handshakes, reads control messages, reconnects, watches the
 *   processes that map our segments (pidfd) and delivers region acknowledgements.
 * - Waiting: a receiver sets cons_sleeping in its rings and sleeps on its socket's efd_in; a
 *   producer writes that eventfd only when the flag is set, so nobody makes a system call
 *   while the peer keeps up. Senders wait the same way on efd_out.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shm.h"

#include "platform/tcp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SUBSYS "shmem"

/* ---- Options ---------------------------------------------------------------------------- */

enum {
	OPT_SEGMENT_SIZE,
	OPT_SEGMENT_LIMIT,
	OPT_ALIGNMENT,
	OPT_ALLOC_TIMEOUT,
	OPT_SPIN,
	OPT_BUSY_POLL,
	OPT_SESSION,
	OPT_PREFAULT,
	OPT_SMC,
	OPT_INLINE_MAX,
	OPT_COUNT
};

static const fqi_option shm_options[OPT_COUNT] = {
    [OPT_SEGMENT_SIZE] = {"segment_size", FQ_OPT_SIZE, "256M", 1 << 20, (int64_t)1 << 40,
                          "bytes of one shared-memory segment; another is added when full"},
    [OPT_SEGMENT_LIMIT] = {"segment_limit", FQ_OPT_SIZE, "16G", 1 << 20, (int64_t)1 << 46,
                           "most bytes of segments one transport instance creates"},
    [OPT_ALIGNMENT] = {"alignment", FQ_OPT_SIZE, "64", 64, 4096,
                       "alignment of message data (a power of two)"},
    [OPT_ALLOC_TIMEOUT] = {"alloc_timeout", FQ_OPT_INT, "1000", -1, INT32_MAX,
                           "ms an allocation waits at segment_limit for memory to come back "
                           "before FQ_ENOMEM (-1: forever)"},
    [OPT_SPIN] = {"spin", FQ_OPT_INT, "20", 0, 1000000,
                  "microseconds a waiting call polls the rings before it sleeps"},
    [OPT_BUSY_POLL] = {"busy_poll", FQ_OPT_BOOL, "false", 0, 1,
                       "never sleep: waiting calls poll the rings (lowest latency, one core "
                       "busy per waiting thread)"},
    [OPT_SESSION] = {"session", FQ_OPT_STRING, "default", 0, 0,
                     "label of the segments (as FairMQ's --session), shown by fq-shmmon"},
    [OPT_PREFAULT] = {"prefault", FQ_OPT_BOOL, "false", 0, 1,
                      "give pool segments their memory when they are created (no page faults "
                      "on first use; costs segment_size of memory at once)"},
    [OPT_SMC] = {"smc", FQ_OPT_STRING, "off", 0, 0,
                 "SMC for the TCP sockets of tcp:// endpoints (the port holder and the probe "
                 "of connect): " FQI_SMC_MODES " (fabriq-smc(7))"},
    [OPT_INLINE_MAX] = {"inline_max", FQ_OPT_SIZE, "256", 0, SHM_INL_MAX,
                        "parts of at most this many bytes are copied into the receiver's ring "
                        "instead of handing over a block (0: every part goes by block)"},
};

/* ---- Objects ---------------------------------------------------------------------------- */

/*
 * The socket locks guard a few hundred nanoseconds of ring work: a test-and-set lock whose
 * release is a plain store (a pthread mutex pays a second locked instruction to unlock),
 * yielding after a while so that a preempted holder can finish.
 */
typedef struct shm_lock {
	_Atomic int v;
} shm_lock;

static inline void shm_lock_take(shm_lock *l)
{
	for (unsigned spins = 0; atomic_exchange_explicit(&l->v, 1, memory_order_acquire) != 0;) {
		do {
			if (++spins % 128 == 0)
				sched_yield();
			else
#if defined(__x86_64__) || defined(__i386__)
				__builtin_ia32_pause();
#else
				atomic_signal_fence(memory_order_seq_cst);
#endif
		} while (atomic_load_explicit(&l->v, memory_order_relaxed) != 0);
	}
}

static inline void shm_lock_give(shm_lock *l)
{
	atomic_store_explicit(&l->v, 0, memory_order_release);
}

typedef struct shm_transport shm_transport;
typedef struct shm_sock shm_sock;
typedef struct shm_conn shm_conn;

enum { SRC_WAKE = 1, SRC_LISTEN, SRC_TCP, SRC_CONN, SRC_PIDFD };

typedef struct io_src {
	int kind;
} io_src;

typedef struct listener {
	io_src src;
	io_src tcp_src; /* the TCP port that names a tcp:// endpoint */
	int fd, tcp_fd;
	shm_sock *ss;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev;
	ino_t ino;
	bool dead;
	struct listener *next;
} listener;

typedef struct connecter {
	shm_sock *ss;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int64_t next_ms, ivl;
	shm_conn *conn; /* current connection, NULL while retrying */
	struct connecter *next;
} connecter;

enum { CONN_HANDSHAKE, CONN_READY, CONN_GONE };

typedef struct seg_slot {
	uint64_t owner_id;
	uint32_t idx, conn_idx; /* conn_idx + 1, 0 = empty */
} seg_slot;

struct shm_conn {
	io_src src;
	shm_transport *st;
	shm_sock *ss;
	int fd;
	int state;
	bool in_peers;       /* listed in ss->peers */
	_Atomic bool broken; /* a data path found it unusable: the I/O thread ends it */
	bool peer_closed;    /* BYE or hang-up seen */
	bool out_released;   /* what we published and nobody read went back */
	bool refused;        /* not taken as a peer (PAIR has one already) */
	pid_t peer_pid;
	uint64_t peer_node;
	uint32_t peer_type;
	connecter *origin;
	/* Rings. */
	shm_map *in_map, *out_map;
	shm_ring *in, *out;
	uint64_t out_limit;                /* most entries queued on out */
	uint32_t in_cap, out_cap;          /* ring capacities, fixed at the handshake (the shared
	                           * copy is the peer's to scribble on) */
	uint64_t out_tail_seen;            /* producer's cached copy of out->tail */
	uint64_t out_head, out_head_bytes; /* producer's own copies (never read back) */
	uint64_t in_head_seen;             /* consumer's cached copy of in->head */
	/* Inline areas, fixed at the handshake as the capacities. */
	char *in_idata, *out_idata;
	uint64_t in_icap, out_icap;
	uint64_t out_ihead, out_itail_seen; /* producer: next position, cached out->itail */
	int peer_efd_in, peer_efd_out;
	/* Segments the peer announced (by their index on this connection). */
	pthread_mutex_t ctl_lock;
	/* Two levels, grown only: receivers read it without ctl_lock while the I/O thread adds
	 * announcements (slots are published with release stores). */
	_Atomic(shm_map *) *_Atomic in_maps[SHM_SEG_CHUNKS];
	/* Segments we announced: index -> map, and (owner, idx) -> index. */
	shm_map **out_maps;
	size_t n_out, cap_out;
	seg_slot *out_hash;
	size_t hash_cap;
	shm_map *last_map; /* last lookup (a map announced here: out_maps holds it) */
	uint32_t last_idx;
	/* Control messages waiting for the I/O thread to send them (never sent while a socket
	 * lock is held: the reader may be our own I/O thread). */
	pthread_mutex_t outq_lock;
	ctl_msg *outq;
	size_t outq_n, outq_cap, outq_sent;
	bool outq_polling; /* EPOLLOUT requested */
	/* PUB side: the peer's subscriptions (guarded by ss->slock). */
	fqi_subs subs;
	shm_conn *next; /* in the transport's list */
};

struct shm_sock {
	fq_socket *s;
	shm_transport *st;
	shm_lock slock, rlock; /* short sections only: nobody sleeps holding them */
	int efd_in, efd_out, pfd;
	_Atomic bool intr;
	_Atomic int waiters_in, waiters_out;
	shm_conn **peers; /* ready connections (changed under rlock + slock) */
	size_t npeers, cap_peers;
	size_t rr_send, rr_recv;
	bool armed_in, armed_out;
	/* REQ / REP turns. */
	bool awaiting; /* REQ: reply pending; REP: answer owed */
	shm_conn *turn_conn;
	/* SUB: our subscriptions (guarded by slock). */
	fqi_subs subs;
	bool closing;
};

struct shm_transport {
	shm_node *node;
	pthread_t io;
	bool io_started;
	int ep;
	io_src wake_src;
	int wake_fd;
	_Atomic bool stop;
	pthread_mutex_t lock; /* conns, listeners, connecters, watches */
	shm_conn *conns;
	listener *listeners;
	/*
	 * Freed by the I/O thread at the top of its next round: an event for them may still be
	 * in the batch it is working on when a socket closes.
	 */
	shm_conn *dead_conns;
	listener *dead_listeners;
	shm_conn *orphans; /* of closed sockets, kept while a live peer may read their output */
	connecter *connecters;
	struct watch {
		io_src src;
		pid_t pid;
		int fd;
	} * *watches;
	size_t nwatch, cap_watch;
	int64_t spin_us;
	bool busy_poll;
	size_t inline_max;
	fqi_smc_mode smc; /* how tcp:// endpoints open their TCP sockets */
	int64_t last_scan_ms;
	/* Regions with messages out: acks to deliver. */
	pthread_mutex_t region_lock;
	struct shm_region_priv *regions;
};

typedef struct shm_region_priv {
	fq_region *r;
	shm_map *map;
	pthread_mutex_t lock;
	fq_region_ack *pending;
	size_t npending, cap_pending;
	struct shm_region_priv *next;
	shm_transport *st;
} shm_region_priv;

static shm_transport *st_of(fq_transport *t)
{
	return t->priv;
}

shm_node *shm_node_of(fq_transport *t)
{
	return st_of(t)->node;
}

static shm_sock *ss_of(fq_socket *s)
{
	return s->priv;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * One step of a busy wait: a look at this thread's returned blocks and `pauses` PAUSEs
 * (each costs 10 to 150 cycles depending on the CPU, 25 ns on the EPYC of
 * docs/performance.md, so few in a row where the wait is for latency).
 */
static void spin_pause(unsigned pauses)
{
	shm_flush_frees();
	do {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#else
		atomic_signal_fence(memory_order_seq_cst);
#endif
	} while (--pauses > 0);
}

/*
 * PAUSEs per step of a send that waits for room. Room comes at the consumer's pace, and a
 * full ring is a ring's worth of work for it, so the producer need not look often: each
 * look is a pass over the peers, a clock read and the consumer's tail line, and on a core
 * shared with the consumer (SMT) it takes issue slots from it. A ring with a small limit
 * (snd_hwm + rcv_hwm) is drained quickly: the producer then looks as often as it can.
 */
#define SHM_ROOM_PAUSES_MAX 32u

static unsigned room_pauses(const shm_sock *ss)
{
	uint64_t limit = UINT64_MAX;

	for (size_t k = 0; k < ss->npeers; k++) {
		if (ss->peers[k]->out_limit < limit)
			limit = ss->peers[k]->out_limit;
	}
	limit /= 8;
	return limit < 1 ? 1 : limit > SHM_ROOM_PAUSES_MAX ? SHM_ROOM_PAUSES_MAX : (unsigned)limit;
}

/* The peers changed: wake the directions this socket uses (an unused eventfd that stays
 * readable would keep the socket's fd readable for a poll loop that never drains it). */
struct shm_sock;
static void kick_changed(struct shm_sock *ss);

/* ---- Control channel -------------------------------------------------------------------- */

/* Send one control message with up to 3 fds; waits briefly if the peer's buffer is full. */
static int ctl_send(int fd, const ctl_msg *m, size_t len, const int *fds, int nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(3 * sizeof(int))];
	} u;
	struct iovec iov = {.iov_base = (void *)m, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	memset(&u, 0, sizeof(u));
	if (nfds > 0) {
		struct cmsghdr *c;

		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	for (int tries = 0; tries < 200; tries++) {
		if (sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return fqi_syserr(errno);
		struct pollfd p = {.fd = fd, .events = POLLOUT};

		poll(&p, 1, 10);
	}
	return FQ_ETIMEDOUT;
}

static size_t ctl_len(const ctl_msg *m)
{
	return offsetof(ctl_msg, text) + m->len;
}

static void ctl_init(ctl_msg *m, uint32_t type)
{
	memset(m, 0, offsetof(ctl_msg, text));
	m->magic = CTL_MAGIC;
	m->type = type;
	m->version = SHM_VERSION;
}

/* ---- Rings ------------------------------------------------------------------------------ */

static uint32_t ring_cap_for(int64_t hwm)
{
	uint64_t want = (hwm > 0 ? (uint64_t)hwm : 65536) * 2 + 128;
	uint32_t cap = 256;

	while (cap < want && cap < (1u << 20))
		cap <<= 1;
	return cap;
}

/* Bytes of the inline area of a ring of `cap` entries: 64 per entry, at most 1 MiB. */
static uint64_t ring_icap_for(uint32_t cap)
{
	uint64_t icap = (uint64_t)cap * 64;

	return icap < SHM_INL_AREA_MIN ? SHM_INL_AREA_MIN : icap > (1u << 20) ? (1u << 20) : icap;
}

static int ring_create(fq_socket *s, shm_map **out)
{
	uint32_t cap = ring_cap_for(atomic_load(&s->opt[FQI_SO_RCV_HWM]));
	uint64_t ioff = (sizeof(shm_ring) + (size_t)cap * sizeof(shm_ent) + SHM_CACHE_LINE - 1) &
	                ~(uint64_t)(SHM_CACHE_LINE - 1);
	uint64_t icap = ring_icap_for(cap);
	size_t size = ioff + icap;
	int fd = memfd_create("fabriq-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	shm_ring *r;
	shm_map *m;
	int rc;

	if (fd < 0)
		return fqi_syserr(errno);
	size = (size + 4095) & ~(size_t)4095;
	if (size < SHM_HDR_BYTES)
		size = SHM_HDR_BYTES;
	if (ftruncate(fd, (off_t)size) != 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
		rc = fqi_syserr(errno);
		close(fd);
		return rc;
	}
	rc = shm_map_peer(fd, &m);
	if (rc != 0) {
		close(fd);
		return rc;
	}
	r = m->base;
	r->magic = SHM_RING_MAGIC;
	r->cap = cap;
	r->ioff = ioff;
	r->icap = icap;
	r->hwm = (uint32_t)atomic_load(&s->opt[FQI_SO_RCV_HWM]);
	atomic_store(&r->hwm_bytes, (uint64_t)atomic_load(&s->opt[FQI_SO_RCV_HWM_BYTES]));
	*out = m;
	return 0;
}

static void kick_changed(shm_sock *ss)
{
	if (fqi_type_receives(ss->s->type))
		fqi_kick(ss->efd_in);
	if (fqi_type_sends(ss->s->type))
		fqi_kick(ss->efd_out);
}

/* ---- Connections ------------------------------------------------------------------------ */

static void io_wake(shm_transport *st)
{
	fqi_kick(st->wake_fd);
}

/* Map conn index -> peer segment (ctl_lock held). */
static int conn_add_in_map(shm_conn *c, uint32_t idx, shm_map *m)
{
	_Atomic(shm_map *) *chunk;

	if (idx >= SHM_SEG_CHUNKS * SHM_SEG_CHUNK)
		return FQ_EPROTO;
	chunk = atomic_load(&c->in_maps[idx / SHM_SEG_CHUNK]);
	if (chunk == NULL) {
		chunk = calloc(SHM_SEG_CHUNK, sizeof(*chunk));
		if (chunk == NULL)
			return FQ_ENOMEM;
		atomic_store_explicit(&c->in_maps[idx / SHM_SEG_CHUNK], chunk,
		                      memory_order_release);
	}
	if (atomic_load(&chunk[idx % SHM_SEG_CHUNK]) != NULL)
		return FQ_EPROTO;
	atomic_store_explicit(&chunk[idx % SHM_SEG_CHUNK], m, memory_order_release);
	return 0;
}

static shm_map *conn_in_map_peek(shm_conn *c, uint32_t idx)
{
	_Atomic(shm_map *) *chunk;

	if (idx >= SHM_SEG_CHUNKS * SHM_SEG_CHUNK)
		return NULL;
	chunk = atomic_load_explicit(&c->in_maps[idx / SHM_SEG_CHUNK], memory_order_acquire);
	return chunk ? atomic_load_explicit(&chunk[idx % SHM_SEG_CHUNK], memory_order_acquire)
	             : NULL;
}

static int conn_handle_hello(shm_conn *c, const ctl_msg *m, const int *fds, int nfds);
static void sock_add_peer(shm_sock *ss, shm_conn *c);

/*
 * Read and handle every queued control message. Called by the I/O thread and by receivers
 * that meet a segment index they do not know yet (its announcement is queued before the ring
 * entry is published). Returns FQ_ECLOSED at end of stream, FQ_EPROTO for bad input.
 */
static int conn_drain_ctl(shm_conn *c)
{
	int rc = 0;

	pthread_mutex_lock(&c->ctl_lock);
	while (rc == 0 && c->fd >= 0) {
		ctl_msg m;
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(4 * sizeof(int))];
		} u;
		struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
		struct msghdr mh = {.msg_iov = &iov,
		                    .msg_iovlen = 1,
		                    .msg_control = u.buf,
		                    .msg_controllen = sizeof(u.buf)};
		int fds[4], nfds = 0;
		ssize_t got = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			rc = FQ_ECLOSED;
			break;
		}
		if (got == 0) {
			rc = FQ_ECLOSED;
			break;
		}
		for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h != NULL; h = CMSG_NXTHDR(&mh, h)) {
			if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
				int k = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));

				for (int i = 0; i < k; i++) {
					int fd;

					memcpy(&fd, CMSG_DATA(h) + (size_t)i * sizeof(int),
					       sizeof(fd));
					if (nfds < 4)
						fds[nfds++] = fd;
					else
						close(fd);
				}
			}
		}
		if ((size_t)got >= offsetof(ctl_msg, text) && m.magic == CTL_MAGIC &&
		    m.version != SHM_VERSION) {
			FQI_WARN(
			    SUBSYS,
			    "peer pid %d speaks shmem protocol version %u, this process %u (mixed "
			    "fabriq versions); dropping it",
			    (int)c->peer_pid, m.version, SHM_VERSION);
			rc = FQ_EPROTO;
		} else if ((size_t)got < offsetof(ctl_msg, text) || m.magic != CTL_MAGIC ||
		           (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || m.len > CTL_TEXT ||
		           (size_t)got != offsetof(ctl_msg, text) + m.len) {
			FQI_WARN(SUBSYS,
			         "peer pid %d sent a malformed control message (%zd bytes); "
			         "dropping it",
			         (int)c->peer_pid, got);
			rc = FQ_EPROTO;
		} else {
			switch (m.type) {
			case CTL_HELLO:
				rc = conn_handle_hello(c, &m, fds, nfds);
				nfds = 0; /* taken */
				break;
			case CTL_SEG: {
				shm_map *map = NULL;

				if (nfds != 1 || c->state != CONN_READY) {
					rc = FQ_EPROTO;
					break;
				}
				rc = shm_map_peer(fds[0], &map);
				if (rc != 0)
					break;
				nfds = 0;
				{
					shm_seg_hdr *h = map->base;

					if (h->magic != SHM_SEG_MAGIC || h->size != map->size ||
					    h->owner_id != m.owner_id || h->idx != m.seg_idx) {
						shm_map_unref(map);
						rc = FQ_EPROTO;
						break;
					}
					map->owner_id = h->owner_id;
					map->owner_pid = h->owner_pid;
					map->idx = h->idx;
					map->kind = h->kind;
				}
				if (map->owner_id == c->st->node->id) {
					/* Our own segment came back: use our mapping. */
					shm_map *own = NULL;
					shm_node *n = c->st->node;

					pthread_mutex_lock(&n->alloc_lock);
					if (map->idx < n->nsegs && n->segs[map->idx] != NULL) {
						own = n->segs[map->idx];
						shm_map_ref(own);
					}
					pthread_mutex_unlock(&n->alloc_lock);
					if (own != NULL) {
						shm_map_unref(map);
						map = own;
					}
				} else if (!shm_register_user(map)) {
					FQI_WARN(
					    SUBSYS,
					    "segment %u of pid %u has %u users already; "
					    "its blocks are not reclaimed if this process dies",
					    map->idx, map->owner_pid, SHM_USERS);
				}
				rc = conn_add_in_map(c, m.idx, map);
				if (rc != 0)
					shm_map_unref(map);
				break;
			}
			case CTL_SUB:
			case CTL_UNSUB:
				shm_lock_take(&c->ss->slock);
				rc = fqi_subs_change(&c->subs, m.text, m.len, m.type == CTL_SUB);
				shm_lock_give(&c->ss->slock);
				break;
			case CTL_BYE:
				c->peer_closed = true;
				break;
			default:
				rc = FQ_EPROTO;
			}
			if (rc == FQ_EPROTO)
				FQI_WARN(SUBSYS,
				         "peer pid %d: bad control message of type %u; dropping "
				         "the connection",
				         (int)c->peer_pid, m.type);
		}
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	}
	pthread_mutex_unlock(&c->ctl_lock);
	return rc;
}

static int conn_send_hello(shm_conn *c)
{
	fq_socket *s = c->ss->s;
	ctl_msg m;
	int fds[3];
	int rc = ring_create(s, &c->in_map);

	if (rc != 0)
		return rc;
	c->in = c->in_map->base;
	c->in_cap = c->in->cap; /* read before the peer has the ring */
	c->in_icap = c->in->icap;
	c->in_idata = (char *)c->in + c->in->ioff;
	ctl_init(&m, CTL_HELLO);
	m.sock_type = (uint32_t)s->type;
	m.node_id = c->st->node->id;
	m.pid = (uint32_t)shm_self();
	m.rcv_hwm = (uint32_t)atomic_load(&s->opt[FQI_SO_RCV_HWM]);
	fds[0] = c->in_map->fd;
	fds[1] = c->ss->efd_in;
	fds[2] = c->ss->efd_out;
	return ctl_send(c->fd, &m, ctl_len(&m), fds, 3);
}

/* A ring's fixed layout, read once: the peer can write the shared copy at any time. */
typedef struct ring_layout {
	uint32_t cap;
	uint64_t ioff, icap;
} ring_layout;

/* Does a peer's ring have a layout we can use (entries and inline area inside the map)? */
static bool ring_valid(const shm_map *map, ring_layout *out)
{
	const volatile shm_ring *r = map->base;
	ring_layout l;
	uint64_t ents;

	if (map->size < sizeof(shm_ring) || r->magic != SHM_RING_MAGIC)
		return false;
	l.cap = r->cap;
	l.ioff = r->ioff;
	l.icap = r->icap;
	ents = sizeof(shm_ring) + (uint64_t)l.cap * sizeof(shm_ent);
	if (l.cap == 0 || (l.cap & (l.cap - 1)) != 0 || ents > map->size || l.ioff < ents ||
	    l.ioff > map->size || l.icap < SHM_INL_AREA_MIN || (l.icap & (l.icap - 1)) != 0 ||
	    l.icap > map->size - l.ioff)
		return false;
	*out = l;
	return true;
}

static int conn_handle_hello(shm_conn *c, const ctl_msg *m, const int *fds, int nfds)
{
	shm_map *ring = NULL;
	int64_t snd_hwm = atomic_load(&c->ss->s->opt[FQI_SO_SND_HWM]);
	ring_layout l;
	int rc;

	if (c->state != CONN_HANDSHAKE || nfds != 3) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		return FQ_EPROTO;
	}
	if (!fqi_types_match((uint32_t)c->ss->s->type, m->sock_type)) {
		FQI_WARN(SUBSYS,
		         "peer pid %u is a %s socket, which cannot talk to a %s socket; "
		         "dropping it",
		         m->pid, fq_socket_type_name((fq_socket_type)m->sock_type),
		         fq_socket_type_name(c->ss->s->type));
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		return FQ_EMISMATCH;
	}
	rc = shm_map_peer(fds[0], &ring);
	if (rc != 0 || !ring_valid(ring, &l)) {
		if (ring != NULL)
			shm_map_unref(ring);
		else
			close(fds[0]);
		close(fds[1]);
		close(fds[2]);
		return FQ_EPROTO;
	}
	c->out_map = ring;
	c->out = ring->base;
	c->peer_efd_in = fds[1];
	c->peer_efd_out = fds[2];
	/* A peer could pass something that blocks on write: never wait on it under slock. */
	fcntl(c->peer_efd_in, F_SETFL, O_NONBLOCK);
	fcntl(c->peer_efd_out, F_SETFL, O_NONBLOCK);
	c->peer_node = m->node_id;
	c->peer_type = m->sock_type;
	c->out_cap = l.cap;
	c->out_icap = l.icap;
	c->out_idata = (char *)c->out + l.ioff;
	c->out_limit = c->out_cap;
	if (c->out->hwm != 0 && snd_hwm != 0 &&
	    (uint64_t)c->out->hwm + (uint64_t)snd_hwm < c->out_limit)
		c->out_limit = (uint64_t)c->out->hwm + (uint64_t)snd_hwm;
	c->out_tail_seen = atomic_load(&c->out->tail);
	c->out_head = atomic_load(&c->out->head);
	c->out_head_bytes = atomic_load(&c->out->head_bytes);
	c->out_ihead = c->out_itail_seen = atomic_load(&c->out->itail);
	c->state = CONN_READY; /* the I/O thread adds it to the socket's peers */
	return 0;
}

/* ---- Sockets: peers ---------------------------------------------------------------------- */

static int send_subs(shm_sock *ss, shm_conn *c);

static void sock_add_peer(shm_sock *ss, shm_conn *c)
{
	shm_lock_take(&ss->rlock);
	shm_lock_take(&ss->slock);
	if (ss->npeers == ss->cap_peers) {
		size_t cap = ss->cap_peers ? 2 * ss->cap_peers : 8;
		shm_conn **v = realloc(ss->peers, cap * sizeof(*v));

		if (v == NULL) {
			shm_lock_give(&ss->slock);
			shm_lock_give(&ss->rlock);
			return;
		}
		ss->peers = v;
		ss->cap_peers = cap;
	}
	if (ss->s->type == FQ_PAIR && ss->npeers > 0) {
		shm_lock_give(&ss->slock);
		shm_lock_give(&ss->rlock);
		FQI_INFO(SUBSYS, "PAIR socket has a peer already; refusing pid %d",
		         (int)c->peer_pid);
		c->refused = true;
		shutdown(c->fd, SHUT_RDWR);
		return;
	}
	ss->peers[ss->npeers++] = c;
	c->in_peers = true;
	if (ss->s->type == FQ_SUB)
		send_subs(ss, c);
	shm_lock_give(&ss->slock);
	shm_lock_give(&ss->rlock);
	kick_changed(ss);
}

/*
 * Release what we published to a ring that nobody will read any more: its consumer closed
 * it (ring->closed) or died. Never earlier: a live consumer may still take any entry over,
 * and a released own block is reused at once. The consumer's tail is left alone.
 */
static void conn_release_out(shm_conn *c)
{
	uint64_t head, tail;

	if (c->out == NULL)
		return;
	head = atomic_load(&c->out->head);
	tail = atomic_load(&c->out->tail);
	if (head - tail > c->out_cap)
		return; /* the peer wrote nonsense into the tail: leave it to the owners */
	for (uint64_t pos = tail; pos != head; pos++) {
		shm_ent e = c->out->ent[pos & (c->out_cap - 1)];
		uint64_t off = e.blk & ((1ULL << 48) - 1);

		if (e.seg < c->n_out && c->out_maps[e.seg] != NULL &&
		    off + SHM_BLK_HDR <= c->out_maps[e.seg]->size)
			shm_blk_release(c->out_maps[e.seg],
			                (shm_blk *)((char *)c->out_maps[e.seg]->base + off));
	}
	c->out_released = true;
}

static bool ring_empty(const shm_ring *r)
{
	return r == NULL || atomic_load_explicit(&r->head, memory_order_acquire) ==
	                        atomic_load_explicit(&r->tail, memory_order_relaxed);
}

/* Has process pid ended (gone, or a zombie)? */
static bool pid_gone(pid_t pid)
{
	char path[64], buf[512];
	ssize_t len;
	int fd;
	char *paren;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return false;
	buf[len] = '\0';
	paren = strrchr(buf, ')');
	return paren != NULL && (paren[2] == 'Z' || paren[2] == 'X');
}

/*
 * May our side of a gone connection be freed? Its outbound entries must be read, or
 * released once nobody can read them. Touches no socket state (orphans have none).
 */
static bool conn_out_settled(shm_conn *c)
{
	if (c->out == NULL || c->out_released || ring_empty(c->out))
		return true;
	if (atomic_load(&c->out->closed)) {
		conn_release_out(c);
		return true;
	}
	/* A dead peer's output is released by peer_died, before its blocks are taken back. */
	return c->peer_pid != shm_self() && c->peer_pid > 0 && pid_gone(c->peer_pid) &&
	       c->out_released;
}

static void conn_free(shm_conn *c)
{
	for (size_t i = 0; i < SHM_SEG_CHUNKS; i++) {
		_Atomic(shm_map *) *chunk = atomic_load(&c->in_maps[i]);

		for (size_t j = 0; chunk != NULL && j < SHM_SEG_CHUNK; j++)
			shm_map_unref(atomic_load(&chunk[j]));
		free(chunk);
	}
	for (size_t i = 0; i < c->n_out; i++)
		shm_map_unref(c->out_maps[i]);
	fqi_subs_free(&c->subs);

	free(c->out_maps);
	free(c->out_hash);
	shm_map_unref(c->in_map);
	shm_map_unref(c->out_map);
	if (c->peer_efd_in >= 0)
		close(c->peer_efd_in);
	if (c->peer_efd_out >= 0)
		close(c->peer_efd_out);
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_destroy(&c->ctl_lock);
	pthread_mutex_destroy(&c->outq_lock);
	free(c->outq);
	free(c);
}

static void watch_pid(shm_transport *st, pid_t pid);

/*
 * The connection ended (peer closed, died, or sent garbage). Called by the I/O thread with
 * st->lock held. Sending stops at once; what the peer published stays readable until a
 * receiver has drained it (conn_reap).
 */
static void conn_gone(shm_conn *c, const char *why)
{
	shm_sock *ss = c->ss;

	if (c->state == CONN_GONE)
		return;
	if (why != NULL)
		FQI_LOG(ss->s->type == FQ_PUSH || ss->s->type == FQ_PUB ? FQ_LOG_INFO : FQ_LOG_WARN,
		        SUBSYS, "connection to pid %d ended: %s", (int)c->peer_pid, why);
	shm_lock_take(&ss->rlock);
	shm_lock_take(&ss->slock);
	c->state = CONN_GONE;
	c->peer_closed = true;
	/* What the peer published stays readable (it is drained before the connection goes);
	 * what we published stays for the peer unless it is done (conn_out_settled). */
	if (c->in != NULL && (ss->closing || atomic_load(&c->broken)))
		atomic_store(&c->in->closed, 1);
	shm_lock_give(&ss->slock);
	shm_lock_give(&ss->rlock);
	epoll_ctl(c->st->ep, EPOLL_CTL_DEL, c->fd, NULL);
	shutdown(c->fd, SHUT_RDWR);
	if (c->peer_pid > 0 && c->peer_pid != shm_self())
		watch_pid(c->st, c->peer_pid);
	if (c->origin != NULL) {
		c->origin->conn = NULL;
		c->origin->next_ms = fqi_clock_ms() + c->origin->ivl;
		c->origin = NULL;
	}
	kick_changed(ss);
}

static void listener_free(listener *l)
{
	close(l->fd);
	if (l->tcp_fd >= 0)
		close(l->tcp_fd);
	free(l);
}

/* Free what closed sockets left (I/O thread before it waits, or fini). st->lock held. */
static void free_dead(shm_transport *st)
{
	while (st->dead_conns != NULL) {
		shm_conn *c = st->dead_conns;

		st->dead_conns = c->next;
		conn_free(c);
	}
	while (st->dead_listeners != NULL) {
		listener *l = st->dead_listeners;

		st->dead_listeners = l->next;
		listener_free(l);
	}
}

/*
 * Unlink gone connections whose inbound ring is drained. st->lock held. `defer`: called
 * outside the I/O thread, which may still hold an event for them.
 */
static void conn_reap(shm_transport *st, bool all, bool defer)
{
	for (shm_conn **pp = &st->conns; *pp != NULL;) {
		shm_conn *c = *pp;
		shm_sock *ss = c->ss;
		bool in_done, out_done;

		if (c->state != CONN_GONE) {
			pp = &c->next;
			continue;
		}
		shm_lock_take(&ss->rlock);
		shm_lock_take(&ss->slock);
		in_done = all || ss->closing || atomic_load(&c->broken) || ring_empty(c->in) ||
		          !fqi_type_receives(ss->s->type);
		out_done = all || conn_out_settled(c);
		if ((in_done || ss->closing) && c->in_peers) {
			for (size_t i = 0; i < ss->npeers; i++) {
				if (ss->peers[i] == c) {
					ss->peers[i] = ss->peers[--ss->npeers];
					break;
				}
			}
			c->in_peers = false;
			if (ss->turn_conn == c)
				ss->turn_conn = NULL;
		}
		if (in_done && c->in != NULL)
			atomic_store(&c->in->closed, 1); /* we never read it again */
		shm_lock_give(&ss->slock);
		shm_lock_give(&ss->rlock);
		if (!in_done) {
			pp = &c->next;
			continue;
		}
		if (!out_done && !ss->closing) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		if (!out_done) {
			/* The socket closes, but a live peer may still read what we published:
			 * the I/O thread keeps the connection until it is settled. */
			c->ss = NULL;
			c->next = st->orphans;
			st->orphans = c;
		} else if (defer) {
			c->next = st->dead_conns;
			st->dead_conns = c;
		} else {
			conn_free(c);
		}
	}
}

/* Orphaned connections (of closed sockets) whose output is settled go. I/O thread. */
static void orphans_reap(shm_transport *st, bool all)
{
	for (shm_conn **pp = &st->orphans; *pp != NULL;) {
		shm_conn *c = *pp;

		if (!all && !conn_out_settled(c)) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		conn_free(c);
	}
}

static shm_conn *conn_new(shm_transport *st, shm_sock *ss, int fd)
{
	shm_conn *c = calloc(1, sizeof(*c));
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};

	if (c == NULL) {
		close(fd);
		return NULL;
	}
	c->src.kind = SRC_CONN;
	c->st = st;
	c->ss = ss;
	c->fd = fd;
	c->peer_efd_in = c->peer_efd_out = -1;
	pthread_mutex_init(&c->ctl_lock, NULL);
	pthread_mutex_init(&c->outq_lock, NULL);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != geteuid()) {
		FQI_WARN(SUBSYS,
		         "refusing a connection from uid %d (pid %d): only uid %d may "
		         "attach",
		         (int)cred.uid, (int)cred.pid, (int)geteuid());
		conn_free(c);
		return NULL;
	}
	c->peer_pid = cred.pid;
	if (conn_send_hello(c) != 0) {
		conn_free(c);
		return NULL;
	}
	ev.data.ptr = &c->src;
	if (epoll_ctl(st->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		conn_free(c);
		return NULL;
	}
	c->next = st->conns;
	st->conns = c;
	return c;
}

/* ---- Addresses -------------------------------------------------------------------------- */

/*
 * Unix socket addresses. A path starting with '@' is in the abstract namespace (no file: it
 * goes away with the socket, even after a crash); tcp:// endpoints use one per port.
 */
static socklen_t fill_sun(const char *path, struct sockaddr_un *sa)
{
	size_t len = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (path[0] == '@') {
		memcpy(sa->sun_path + 1, path + 1, len - 1);
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	}
	memcpy(sa->sun_path, path, len);
	return (socklen_t)sizeof(*sa);
}

static void tcp_name(char *buf, size_t len, long port)
{
	snprintf(buf, len, "@fabriq-shmem-%u-tcp-%ld", (unsigned)geteuid(), port);
}

/* Split "host:port". */
static int split_host_port(const char *rest, char *host, size_t hlen, long *port)
{
	const char *colon = strrchr(rest, ':');
	char *end;

	if (colon == NULL || (size_t)(colon - rest) >= hlen || colon == rest)
		return FQ_EADDRINVAL;
	memcpy(host, rest, (size_t)(colon - rest));
	host[colon - rest] = '\0';
	errno = 0;
	*port = strtol(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || end == colon + 1 || *port < 0 || *port > 65535)
		return FQ_EADDRINVAL;
	return 0;
}

/* Is `host` an address of this machine? (binding a UDP socket to it succeeds) */
static int host_is_local(const char *host, struct sockaddr_storage *ss_out, socklen_t *len_out)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
	struct addrinfo *ai = NULL;
	int rc, fd;

	if (strcmp(host, "*") == 0)
		host = "0.0.0.0";
	if (getaddrinfo(host, NULL, &hints, &ai) != 0 || ai == NULL)
		return FQ_EADDRINVAL;
	memcpy(ss_out, ai->ai_addr, ai->ai_addrlen);
	*len_out = ai->ai_addrlen;
	freeaddrinfo(ai);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fqi_syserr(errno);
	((struct sockaddr_in *)ss_out)->sin_port = 0;
	rc = bind(fd, (struct sockaddr *)ss_out, *len_out) == 0 ? 0 : FQ_EMISMATCH;
	close(fd);
	return rc;
}

/* ---- Socket operations: bind / connect ---------------------------------------------------- */

static int unix_listen(const char *path, int *fd_out)
{
	struct sockaddr_un sa;
	socklen_t salen;
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return FQ_EADDRINVAL;
	salen = fill_sun(path, &sa);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fqi_syserr(errno);
	if (bind(fd, (struct sockaddr *)&sa, salen) != 0) {
		int probe;
		bool alive;

		if (errno == EADDRINUSE && path[0] == '@') {
			close(fd); /* abstract names are never stale */
			return FQ_EADDRINUSE;
		}
		if (errno != EADDRINUSE) {
			rc =
			    errno == ENOENT || errno == ENOTDIR ? FQ_EADDRINVAL : fqi_syserr(errno);
			close(fd);
			return rc;
		}
		/* A file is there: in use if somebody answers, stale otherwise. */
		probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		alive = probe >= 0 && (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
		                       errno == EAGAIN || errno == EPROTOTYPE);
		if (probe >= 0)
			close(probe);
		if (alive) {
			close(fd);
			return FQ_EADDRINUSE;
		}
		{
			struct stat sb;

			if (lstat(path, &sb) != 0 || !S_ISSOCK(sb.st_mode)) {
				FQI_WARN(SUBSYS, "%s exists and is not a socket: not replaced",
				         path);
				close(fd);
				return FQ_EADDRINUSE;
			}
		}
		unlink(path);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			rc = errno == EADDRINUSE ? FQ_EADDRINUSE : fqi_syserr(errno);
			close(fd);
			return rc;
		}
	}
	if (path[0] != '@')
		chmod(path, 0600);
	if (listen(fd, 128) != 0) {
		rc = fqi_syserr(errno);
		close(fd);
		if (path[0] != '@')
			unlink(path);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

static int shm_bind(fq_socket *s, const fqi_url *url, char *resolved)
{
	shm_sock *ss = ss_of(s);
	shm_transport *st = ss->st;
	listener *l = calloc(1, sizeof(*l));
	struct epoll_event ev = {.events = EPOLLIN};
	struct stat sb;
	int rc;

	if (l == NULL)
		return FQ_ENOMEM;
	l->src.kind = SRC_LISTEN;
	l->ss = ss;
	l->tcp_fd = -1;
	if (strcmp(url->scheme, "ipc") == 0) {
		if (strlen(url->rest) == 0 || strlen(url->rest) >= sizeof(l->path)) {
			free(l);
			return FQ_EADDRINVAL;
		}
		strcpy(l->path, url->rest);
		snprintf(resolved, FQI_URL_MAX, "ipc://%s", url->rest);
	} else {
		/* tcp://host:port on this machine: a real TCP listener holds the port (so that
		 * port 0 resolves and nobody else takes it), the data path is an abstract Unix
		 * socket named after the port. */
		char host[256];
		long port;
		struct sockaddr_storage sa;
		socklen_t salen;
		int one = 1;

		rc = split_host_port(url->rest, host, sizeof(host), &port);
		if (rc == 0)
			rc = host_is_local(host, &sa, &salen);
		if (rc == FQ_EMISMATCH)
			rc = FQ_EADDRINVAL;
		if (rc != 0) {
			free(l);
			return rc;
		}
		((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port);
		rc = fqi_tcp_socket(AF_INET, SOCK_NONBLOCK | SOCK_CLOEXEC, st->smc,
		                    "shmem tcp:// listener", &l->tcp_fd);
		if (rc < 0) {
			free(l);
			return rc;
		}
		setsockopt(l->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(l->tcp_fd, (struct sockaddr *)&sa, salen) != 0 ||
		    listen(l->tcp_fd, 16) != 0) {
			rc = errno == EADDRINUSE ? FQ_EADDRINUSE : fqi_syserr(errno);
			close(l->tcp_fd);
			free(l);
			return rc;
		}
		salen = sizeof(sa);
		getsockname(l->tcp_fd, (struct sockaddr *)&sa, &salen);
		port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
		tcp_name(l->path, sizeof(l->path), port);
		snprintf(resolved, FQI_URL_MAX, "tcp://%s:%ld", host, port);
	}
	rc = unix_listen(l->path, &l->fd);
	if (rc != 0) {
		if (l->tcp_fd >= 0)
			close(l->tcp_fd);
		free(l);
		return rc;
	}
	if (l->path[0] != '@' && stat(l->path, &sb) == 0) {
		l->dev = sb.st_dev;
		l->ino = sb.st_ino;
	}
	pthread_mutex_lock(&st->lock);
	l->next = st->listeners;
	st->listeners = l;
	ev.data.ptr = &l->src;
	epoll_ctl(st->ep, EPOLL_CTL_ADD, l->fd, &ev);
	if (l->tcp_fd >= 0) {
		/* The TCP port only names the endpoint: connections to it are closed at once. */
		struct epoll_event tev = {.events = EPOLLIN, .data.ptr = &l->tcp_src};

		l->tcp_src.kind = SRC_TCP;
		epoll_ctl(st->ep, EPOLL_CTL_ADD, l->tcp_fd, &tev);
	}
	pthread_mutex_unlock(&st->lock);
	return 0;
}

/* Does a Unix SOCK_SEQPACKET listener answer at path? (probe connection, closed at once) */
static bool unix_answers(const char *path)
{
	struct sockaddr_un sa;
	socklen_t salen = fill_sun(path, &sa);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = connect(fd, (struct sockaddr *)&sa, salen) == 0;
	close(fd);
	return ok;
}

/* One connection attempt; st->lock held. FQ_EMISMATCH if the endpoint is not shmem. */
static int connect_once(shm_transport *st, connecter *k)
{
	struct sockaddr_un sa;
	socklen_t salen = fill_sun(k->path, &sa);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return fqi_syserr(errno);
	if (connect(fd, (struct sockaddr *)&sa, salen) != 0) {
		int e = errno;

		close(fd);
		if (e == EPROTOTYPE)
			return FQ_EMISMATCH;
		return FQ_ECONNREFUSED;
	}
	k->conn = conn_new(st, k->ss, fd);
	if (k->conn == NULL)
		return FQ_ECONNREFUSED;
	k->conn->origin = k;
	return 0;
}

/*
 * Before connecting to a tcp:// endpoint (whose port is in sa): a TCP listener on that port
 * without our Unix socket at `path` is another transport (FQ_EMISMATCH). The probe socket is
 * made as the transport's smc option says; with smc=require it is made even when the Unix
 * socket answers, so that connect fails (FQ_EUNAVAIL) as bind does on a kernel without SMC.
 * Otherwise a probe socket that cannot be made is skipped, as the probe is only a courtesy.
 */
static int tcp_probe(shm_transport *st, const fqi_url *url, const char *path,
                     const struct sockaddr_storage *sa, socklen_t salen)
{
	bool answers = unix_answers(path);
	int fd, rc;

	if (answers && st->smc != FQI_SMC_REQUIRE)
		return 0;
	rc = fqi_tcp_socket(AF_INET, SOCK_CLOEXEC, st->smc, "shmem tcp:// probe", &fd);
	if (rc < 0)
		return st->smc == FQI_SMC_REQUIRE ? rc : 0;
	if (!answers && connect(fd, (const struct sockaddr *)sa, salen) == 0) {
		close(fd);
		FQI_WARN(SUBSYS, "%s is served, but not by a shmem socket", url->text);
		return FQ_EMISMATCH;
	}
	close(fd);
	return 0;
}

static int shm_connect(fq_socket *s, const fqi_url *url, char *resolved)
{
	shm_sock *ss = ss_of(s);
	shm_transport *st = ss->st;
	connecter *k = calloc(1, sizeof(*k));
	int rc;

	if (k == NULL)
		return FQ_ENOMEM;
	k->ss = ss;
	k->ivl = atomic_load(&s->opt[FQI_SO_RECONNECT_IVL]);
	if (k->ivl <= 0)
		k->ivl = 100;
	if (strcmp(url->scheme, "ipc") == 0) {
		if (strlen(url->rest) == 0 || strlen(url->rest) >= sizeof(k->path)) {
			free(k);
			return FQ_EADDRINVAL;
		}
		strcpy(k->path, url->rest);
	} else {
		char host[256];
		long port;
		struct sockaddr_storage sa;
		socklen_t salen;

		rc = split_host_port(url->rest, host, sizeof(host), &port);
		if (rc == 0 && (port == 0 || strcmp(host, "*") == 0))
			rc = FQ_EADDRINVAL;
		if (rc == 0) {
			rc = host_is_local(host, &sa, &salen);
			if (rc == FQ_EMISMATCH)
				FQI_WARN(SUBSYS,
				         "%s is not an address of this host: shmem cannot "
				         "cross hosts (use zeromq or ofi for that channel)",
				         url->text);
		}
		if (rc != 0) {
			free(k);
			return rc;
		}
		tcp_name(k->path, sizeof(k->path), port);
		((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port);
		rc = tcp_probe(st, url, k->path, &sa, salen);
		if (rc != 0) {
			free(k);
			return rc;
		}
	}
	snprintf(resolved, FQI_URL_MAX, "%s", url->text);
	pthread_mutex_lock(&st->lock);
	rc = connect_once(st, k);
	if (rc == FQ_EMISMATCH) {
		pthread_mutex_unlock(&st->lock);
		FQI_WARN(SUBSYS, "%s is not a shmem endpoint (another transport listens there)",
		         url->text);
		free(k);
		return rc;
	}
	if (rc != 0)
		k->next_ms = fqi_clock_ms() + k->ivl;
	k->next = st->connecters;
	st->connecters = k;
	pthread_mutex_unlock(&st->lock);
	io_wake(st);
	return 0;
}

/* ---- Subscriptions ------------------------------------------------------------------------ */

/* Queue a control message (no fds) for the I/O thread. Any lock may be held. */
static int ctl_queue(shm_conn *c, const ctl_msg *m)
{
	int rc = 0;

	pthread_mutex_lock(&c->outq_lock);
	if (c->outq_n == c->outq_cap) {
		size_t cap = c->outq_cap ? 2 * c->outq_cap : 8;
		ctl_msg *v = realloc(c->outq, cap * sizeof(*v));

		if (v == NULL)
			rc = FQ_ENOMEM;
		else {
			c->outq = v;
			c->outq_cap = cap;
		}
	}
	if (rc == 0)
		memcpy(&c->outq[c->outq_n++], m, ctl_len(m));
	pthread_mutex_unlock(&c->outq_lock);
	io_wake(c->st);
	return rc;
}

/* Send what is queued without waiting; ask for EPOLLOUT when the peer is full. I/O thread,
 * st->lock held. */
static void ctl_flush(shm_conn *c)
{
	bool full = false;

	pthread_mutex_lock(&c->outq_lock);
	while (c->outq_sent < c->outq_n && c->state != CONN_GONE) {
		ctl_msg *m = &c->outq[c->outq_sent];

		if (send(c->fd, m, ctl_len(m), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			full = errno == EAGAIN || errno == EINTR;
			break;
		}
		c->outq_sent++;
	}
	if (c->outq_sent == c->outq_n)
		c->outq_sent = c->outq_n = 0;
	pthread_mutex_unlock(&c->outq_lock);
	if (full != c->outq_polling && c->state != CONN_GONE) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (full ? EPOLLOUT : 0),
		                         .data.ptr = &c->src};

		epoll_ctl(c->st->ep, EPOLL_CTL_MOD, c->fd, &ev);
		c->outq_polling = full;
	}
}

/* Tell one PUB peer all our subscriptions (slock held: queued, not sent here). */
static int send_subs(shm_sock *ss, shm_conn *c)
{
	for (size_t i = 0; i < ss->subs.n; i++) {
		ctl_msg m;
		int rc;

		ctl_init(&m, CTL_SUB);
		m.len = (uint32_t)ss->subs.len[i];
		memcpy(m.text, ss->subs.text[i], ss->subs.len[i]);
		rc = ctl_queue(c, &m);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ---- Sending ------------------------------------------------------------------------------ */

/* conn_seg_index for a segment other than the last one (out of line: see there). */
FQI_NOINLINE static int conn_seg_lookup(shm_conn *c, shm_map *m, uint32_t *idx)
{
	uint64_t key = m->owner_id ^ ((uint64_t)m->idx * 0x9e3779b97f4a7c15ULL);
	size_t mask, i;
	ctl_msg msg;
	int rc;

	if (c->hash_cap != 0) {
		mask = c->hash_cap - 1;
		for (i = key & mask;; i = (i + 1) & mask) {
			seg_slot *sl = &c->out_hash[i];

			if (sl->conn_idx == 0)
				break;
			if (sl->owner_id == m->owner_id && sl->idx == m->idx) {
				*idx = sl->conn_idx - 1;
				c->last_map = m;
				c->last_idx = *idx;
				return 0;
			}
		}
	}
	/* New on this connection: grow the tables, announce, remember. */
	if (2 * (c->n_out + 1) > c->hash_cap) {
		size_t cap = c->hash_cap ? 2 * c->hash_cap : 64;
		seg_slot *h = calloc(cap, sizeof(*h));

		if (h == NULL)
			return FQ_ENOMEM;
		for (size_t j = 0; j < c->hash_cap; j++) {
			seg_slot *sl = &c->out_hash[j];

			if (sl->conn_idx == 0)
				continue;
			for (i = (sl->owner_id ^ ((uint64_t)sl->idx * 0x9e3779b97f4a7c15ULL)) &
			         (cap - 1);
			     h[i].conn_idx != 0; i = (i + 1) & (cap - 1))
				;
			h[i] = *sl;
		}
		free(c->out_hash);
		c->out_hash = h;
		c->hash_cap = cap;
	}
	if (c->n_out == c->cap_out) {
		size_t cap = c->cap_out ? 2 * c->cap_out : 16;
		shm_map **v = realloc(c->out_maps, cap * sizeof(*v));

		if (v == NULL)
			return FQ_ENOMEM;
		c->out_maps = v;
		c->cap_out = cap;
	}
	ctl_init(&msg, CTL_SEG);
	msg.idx = (uint32_t)c->n_out;
	msg.owner_id = m->owner_id;
	msg.owner_pid = m->owner_pid;
	msg.seg_idx = m->idx;
	msg.kind = m->kind;
	msg.size = m->size;
	rc = ctl_send(c->fd, &msg, ctl_len(&msg), &m->fd, 1);
	if (rc != 0)
		return rc;
	shm_map_ref(m);
	c->out_maps[c->n_out] = m;
	mask = c->hash_cap - 1;
	for (i = key & mask; c->out_hash[i].conn_idx != 0; i = (i + 1) & mask)
		;
	c->out_hash[i].owner_id = m->owner_id;
	c->out_hash[i].idx = m->idx;
	c->out_hash[i].conn_idx = (uint32_t)++c->n_out;
	*idx = (uint32_t)(c->n_out - 1);
	return 0;
}

/*
 * Index of `m` on connection c, announcing the segment first if needed. slock held. The
 * usual case (the segment of the last part) is inline: the look-up's frame (a control
 * message) cost more than the rest of it at every part.
 */
static inline int conn_seg_index(shm_conn *c, shm_map *m, uint32_t *idx)
{
	if (FQI_LIKELY(c->last_map == m)) {
		*idx = c->last_idx;
		return 0;
	}
	return conn_seg_lookup(c, m, idx);
}

/* Entries free on c's ring for n parts and `bytes` (checks hwm and byte limits). */
static bool conn_has_room(shm_conn *c, size_t n, uint64_t bytes)
{
	shm_ring *r = c->out;
	uint64_t head, queued, qbytes, lim;
	int64_t snd_bytes;

	if (c->state != CONN_READY || atomic_load_explicit(&c->broken, memory_order_relaxed) ||
	    atomic_load_explicit(&r->closed, memory_order_relaxed))
		return false;
	head = c->out_head; /* the shared copy's line is the consumer's to read */
	queued = head - c->out_tail_seen;
	if (queued + n > c->out_limit || queued + n > c->out_cap) {
		c->out_tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
		queued = head - c->out_tail_seen;
		if (queued > c->out_cap)
			return false; /* corrupt tail: treat as full */
		if (queued != 0 && queued + n > c->out_limit)
			return false;
		if (queued + n > c->out_cap)
			return false;
	}
	if (queued == 0)
		return true; /* one message always fits an empty ring */
	lim = atomic_load_explicit(&r->hwm_bytes, memory_order_relaxed);
	snd_bytes =
	    atomic_load_explicit(&c->ss->s->opt[FQI_SO_SND_HWM_BYTES], memory_order_relaxed);
	if (lim == 0 && snd_bytes == 0)
		return true;
	qbytes = c->out_head_bytes - atomic_load_explicit(&r->tail_bytes, memory_order_acquire);
	if ((lim != 0 && qbytes + bytes > lim) ||
	    (snd_bytes != 0 && qbytes + bytes > (uint64_t)snd_bytes)) {
		/* Our copy of the tail may be old: the ring may be empty, where one message
		 * always fits (else a message above the byte marks would never go). */
		c->out_tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
		return head == c->out_tail_seen;
	}
	return true;
}

/*
 * A part ready to go: the block we hand over and where its data is, or (inl) the bytes to
 * copy into the inline area at position doff.
 */
typedef struct out_part {
	shm_map *map, *dmap;
	shm_blk *blk;
	uint64_t doff, size;
	fq_msg *made;    /* a stub or copy made for this send (freed if the send fails) */
	const void *src; /* inl: the bytes */
	bool inl;
} out_part;

static uint64_t inl_round(uint64_t size)
{
	return (size + SHM_INL_ALIGN - 1) & ~(uint64_t)(SHM_INL_ALIGN - 1);
}

/*
 * Can part m travel inline on c, its bytes at position *ipos of the inline area (moved on
 * if so)? Small parts only, never a region's (acked by its last reader), and only while the
 * area has room: a part that does not fit goes by block, in the same order.
 */
static bool plan_inline(shm_sock *ss, shm_conn *c, fq_msg *m, uint64_t *ipos, out_part *op)
{
	const shm_ref *r = ((shm_msg *)m)->ref;
	uint64_t icap = c->out_icap, need = inl_round(m->size), p = *ipos;

	if (ss->st->inline_max == 0 || m->size > ss->st->inline_max || need > icap / 4 ||
	    (r->dmap != NULL && r->dmap->kind == SHM_SEG_REGION))
		return false;
	if ((p & (icap - 1)) + need > icap)
		p = (p + icap) & ~(icap - 1); /* a part never wraps: skip the end */
	if (p + need - c->out_itail_seen > icap) {
		c->out_itail_seen = atomic_load_explicit(&c->out->itail, memory_order_acquire);
		if (p + need - c->out_itail_seen > icap)
			return false;
	}
	*op = (out_part){.doff = p, .size = m->size, .src = m->data, .inl = true};
	*ipos = p + need;
	return true;
}

/* prepare_part for a part that cannot go as itself (out of line: see plan_parts). */
FQI_NOINLINE static int prepare_shared(shm_sock *ss, fq_msg *m, out_part *op)
{
	shm_ref *r = ((shm_msg *)m)->ref;
	shm_node *n = ss->st->node;
	int rc;

	if (r->blk != NULL && r->map->own && r->map->node == n && r->blk->kind == SHM_BLK_DATA) {
		shm_map *smap;
		shm_blk *stub;

		rc = shm_make_stub(n, r->map, r->blk, &smap, &stub);
		if (rc != 0)
			return rc;
		rc = shm_msg_new(m->t, smap, r->map, stub, m->data, m->size, &op->made);
		if (rc != 0) {
			shm_blk_release(smap, stub);
			shm_map_unref(smap);
			return rc;
		}
		if (r->map != smap)
			shm_map_ref(r->map); /* the stub's message holds both maps */
		op->map = smap;
		op->dmap = r->map;
		op->blk = stub;
		op->doff = (uint64_t)((char *)m->data - (char *)r->map->base);
		return 0;
	}
	/* Adopted user memory, or a shared block of another owner (or a shared region
	 * message): one copy into an own block. */
	rc = shm_msg_alloc_block(m->t, m->size, &op->made);
	if (rc != 0)
		return rc;
	if (m->size != 0)
		memcpy(op->made->data, m->data, m->size);
	r = ((shm_msg *)op->made)->ref;
	op->map = r->map;
	op->dmap = r->map;
	op->blk = r->blk;
	op->doff = (uint64_t)((char *)op->made->data - (char *)r->map->base);
	return 0;
}

/*
 * Decide how part m travels: as itself (the only wrapper of its block), as a stub of an own
 * block shared with others, or as a copy of a foreign shared block.
 */
static inline int prepare_part(shm_sock *ss, fq_msg *m, bool exclusive, out_part *op)
{
	shm_ref *r = ((shm_msg *)m)->ref;

	op->made = NULL;
	op->inl = false;
	op->size = m->size;
	if (r->blk != NULL && exclusive &&
	    atomic_load_explicit(&r->refs, memory_order_acquire) == 1) {
		op->map = r->map;
		op->dmap = r->dmap;
		op->blk = r->blk;
		op->doff = (uint64_t)((char *)m->data - (char *)r->dmap->base);
		return 0;
	}
	return prepare_shared(ss, m, op);
}

static void unprepare(out_part *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ops[i].made != NULL)
			fq_msg_free(ops[i].made);
	}
}

/*
 * Prepare the n parts of a send to c: inline where they may, else prepare_part. Inline, as
 * publish: called for every message, their frames cost more than their work at one part.
 */
static inline int plan_parts(shm_sock *ss, shm_conn *c, fq_msg **parts, size_t n, bool exclusive,
                             out_part *ops)
{
	uint64_t ipos = c->out_ihead;

	for (size_t i = 0; i < n; i++) {
		int rc;

		if (plan_inline(ss, c, parts[i], &ipos, &ops[i]))
			continue;
		rc = prepare_part(ss, parts[i], exclusive, &ops[i]);
		if (rc != 0) {
			unprepare(ops, i);
			return rc;
		}
	}
	return 0;
}

/* Publish prepared parts on c (room checked, slock held). */
static inline int publish(shm_conn *c, out_part *ops, size_t n)
{
	shm_ring *r = c->out;
	uint64_t head = c->out_head, ihead = c->out_ihead;
	uint64_t bytes = 0;
	uint32_t seg, dseg;
	int rc;

	for (size_t i = 0; i < n; i++) {
		const uint64_t first = i == 0 ? (uint64_t)n << 48 : 0;
		shm_ent *e = &r->ent[(head + i) & (c->out_cap - 1)];

		if (ops[i].inl) {
			if (ops[i].size != 0)
				memcpy(c->out_idata + (ops[i].doff & (c->out_icap - 1)), ops[i].src,
				       ops[i].size);
			*e = (shm_ent){.seg = SHM_SEG_INLINE,
			               .blk = first,
			               .doff = ops[i].doff,
			               .size = ops[i].size};
			ihead = ops[i].doff + inl_round(ops[i].size);
			bytes += ops[i].size;
			continue;
		}
		rc = conn_seg_index(c, ops[i].map, &seg);
		if (rc == 0)
			rc = conn_seg_index(c, ops[i].dmap, &dseg);
		if (rc != 0)
			return rc;
		e->seg = seg;
		e->dseg = dseg;
		e->blk = (uint64_t)((char *)ops[i].blk - (char *)ops[i].map->base) | first;
		e->doff = ops[i].doff;
		e->size = ops[i].size;
		bytes += ops[i].size;
	}
	shm_fault("ring_push");
	c->out_ihead = ihead;
	c->out_head_bytes += bytes;
	c->out_head = head + n;
	shm_prefetch_write(&r->ent[(head + n + 2) & (c->out_cap - 1)]); /* the next line */
	atomic_store_explicit(&r->head_bytes, c->out_head_bytes, memory_order_relaxed);
	atomic_store_explicit(&r->head, c->out_head, memory_order_release);
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&r->cons_sleeping, memory_order_relaxed))
		fqi_kick(c->peer_efd_in);
	return 0;
}

/*
 * After a successful publish: the wrappers of the handed-over blocks go, the rest (parts that
 * went inline or as copies) is freed.
 */
static void finish_sent(fq_msg **parts, out_part *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ops[i].inl) {
			fq_msg_free(parts[i]);
		} else if (ops[i].made != NULL) {
			shm_msg_forget(ops[i].made);
			fq_msg_free(parts[i]);
		} else {
			shm_msg_forget(parts[i]);
		}
		parts[i] = NULL;
	}
}

static int wait_fd(shm_sock *ss, int efd, int64_t deadline);

static int check_intr(shm_sock *ss)
{
	return atomic_load_explicit(&ss->intr, memory_order_acquire) ? FQ_EINTR : 0;
}

/* Set or clear prod_waiting on every out ring (slock held). */
static void arm_out(shm_sock *ss, bool on)
{
	for (size_t i = 0; i < ss->npeers; i++) {
		if (ss->peers[i]->out != NULL)
			atomic_store_explicit(&ss->peers[i]->out->prod_waiting, on,
			                      memory_order_relaxed);
	}
	ss->armed_out = on;
	atomic_thread_fence(memory_order_seq_cst);
}

static int send_pub(shm_sock *ss, fq_msg **parts, size_t n)
{
	out_part stack_ops[8];
	out_part *ops = n <= 8 ? stack_ops : calloc(n, sizeof(*ops));
	uint64_t bytes = 0;
	size_t matched = 0;
	shm_conn *last = NULL;

	if (ops == NULL)
		return FQ_ENOMEM;
	for (size_t i = 0; i < n; i++)
		bytes += parts[i]->size;
	/* Every matching subscriber but the last gets stubs (or copies); the last gets the
	 * blocks themselves. A subscriber without room misses the message (PUB drops). */
	for (size_t k = 0; k < ss->npeers; k++) {
		shm_conn *c = ss->peers[k];

		if (!fqi_subs_match(&c->subs, parts[0]->data, parts[0]->size) ||
		    !conn_has_room(c, n, bytes))
			continue;
		if (last != NULL && plan_parts(ss, last, parts, n, false, ops) == 0) {
			if (publish(last, ops, n) != 0) {
				unprepare(ops, n);
			} else {
				for (size_t i = 0; i < n; i++) {
					if (ops[i].made != NULL)
						shm_msg_forget(ops[i].made);
				}
				matched++;
			}
		}
		last = c;
	}
	if (last != NULL && plan_parts(ss, last, parts, n, true, ops) == 0) {
		if (publish(last, ops, n) == 0) {
			finish_sent(parts, ops, n);
			matched++;
		} else {
			unprepare(ops, n);
		}
	}
	if (ops != stack_ops)
		free(ops);
	/* Sent to nobody (or failed): the message is dropped, which counts as sent for PUB. */
	for (size_t i = 0; i < n; i++) {
		if (parts[i] != NULL) {
			fq_msg_free(parts[i]);
			parts[i] = NULL;
		}
	}
	return 0;
}

/*
 * The peer k (at most npeers) places after `from` in the round-robin order; `from` may be
 * past the end after a peer left. No division: it would cost more than the rest of a send.
 */
static inline size_t peer_at(const shm_sock *ss, size_t from, size_t k)
{
	size_t at = (from < ss->npeers ? from : 0) + k;

	return at < ss->npeers ? at : at - ss->npeers;
}

/* Could a send of n parts go somewhere now? (REP: only to the requester; slock held) */
static bool send_room(shm_sock *ss, size_t n, uint64_t bytes)
{
	if (ss->s->type == FQ_REP)
		return ss->turn_conn != NULL && conn_has_room(ss->turn_conn, n, bytes);
	for (size_t k = 0; k < ss->npeers; k++) {
		if (conn_has_room(ss->peers[k], n, bytes))
			return true;
	}
	return false;
}

/*
 * A send found no memory for the copy or stub a part needs (at segment_limit): wait a little
 * with the socket lock released, as an allocation waits. 0: try again; FQ_ETIMEDOUT once the
 * send's timeout has passed, FQ_ENOMEM once alloc_timeout has passed since the first miss
 * (deadlines -2 before they are set). slock held.
 */
static int wait_memory(shm_sock *ss, int64_t *mem_deadline, int64_t *deadline)
{
	bool more;

	if (*deadline == -2)
		*deadline = fqi_deadline(atomic_load(&ss->s->opt[FQI_SO_SND_TIMEOUT]));
	if (fqi_deadline_remaining(*deadline) == 0)
		return FQ_ETIMEDOUT;
	shm_lock_give(&ss->slock);
	more = shm_alloc_backoff(ss->st->node, mem_deadline);
	shm_lock_take(&ss->slock);
	return more ? 0 : FQ_ENOMEM;
}

static int shm_send(fq_socket *s, fq_msg **parts, size_t n, int flags)
{
	shm_sock *ss = ss_of(s);
	int64_t deadline = -2, mem_deadline = -2;
	uint64_t bytes = 0;
	int64_t spin_until = 0;
	int rc;

	if (!fqi_type_sends(s->type))
		return FQ_ENOTSUP;
	if (n > SHM_MAX_PARTS)
		return FQ_EMSGSIZE;
	for (size_t i = 0; i < n; i++)
		bytes += parts[i]->size;
	shm_lock_take(&ss->slock);
	if ((s->type == FQ_REQ && ss->awaiting) || (s->type == FQ_REP && !ss->awaiting)) {
		shm_lock_give(&ss->slock);
		return FQ_ESTATE;
	}
	if (s->type == FQ_PUB) {
		rc = send_pub(ss, parts, n);
		shm_lock_give(&ss->slock);
		return rc;
	}
	for (;;) {
		shm_conn *c = NULL;
		bool no_mem;

		rc = check_intr(ss);
		if (rc != 0)
			break;
		if (s->type == FQ_REP) {
			c = ss->turn_conn;
			if (c == NULL || c->state != CONN_READY) {
				/* The requester is gone: the answer is dropped (as zeromq does). */
				for (size_t i = 0; i < n; i++) {
					fq_msg_free(parts[i]);
					parts[i] = NULL;
				}
				ss->awaiting = false;
				ss->turn_conn = NULL;
				rc = 0;
				break;
			}
			if (!conn_has_room(c, n, bytes))
				c = NULL;
		} else {
			for (size_t k = 0; k < ss->npeers; k++) {
				shm_conn *cand = ss->peers[peer_at(ss, ss->rr_send, k)];

				if (conn_has_room(cand, n, bytes)) {
					c = cand;
					ss->rr_send = peer_at(ss, ss->rr_send, k + 1);
					break;
				}
			}
		}
		if (c != NULL) {
			out_part stack_ops[8];
			out_part *ops = n <= 8 ? stack_ops : calloc(n, sizeof(*ops));

			if (ops == NULL) {
				rc = FQ_ENOMEM;
				break;
			}
			rc = plan_parts(ss, c, parts, n, true, ops);
			no_mem = rc == FQ_ENOMEM; /* for a copy or stub: waiting may help */
			if (rc == 0) {
				rc = publish(c, ops, n);
				if (rc != 0)
					unprepare(ops, n);
			}
			if (rc == 0) {
				finish_sent(parts, ops, n);
				if (s->type == FQ_REQ) {
					ss->awaiting = true;
					ss->turn_conn = c;
				} else if (s->type == FQ_REP) {
					ss->awaiting = false;
					ss->turn_conn = NULL;
				}
			}
			if (ops != stack_ops)
				free(ops);
			if (no_mem && !(flags & FQ_DONTWAIT)) {
				rc = wait_memory(ss, &mem_deadline, &deadline);
				if (rc == 0)
					continue;
				break;
			}
			if (rc != 0 && rc != FQ_ENOMEM) {
				/* The announcement failed: the peer is going away. Try again. */
				atomic_store(&c->broken, true);
				io_wake(ss->st);
				continue;
			}
			break;
		}
		if (n > 1) {
			/* A vector that no ready peer's ring can ever hold. */
			bool fits = ss->npeers == 0;

			for (size_t k = 0; k < ss->npeers && !fits; k++)
				fits = ss->peers[k]->out == NULL || n <= ss->peers[k]->out_cap;
			if (!fits) {
				rc = FQ_EMSGSIZE;
				break;
			}
		}
		if (flags & FQ_DONTWAIT) {
			rc = FQ_EAGAIN;
			break;
		}
		if (deadline == -2) /* unless a wait for memory set it */
			deadline = fqi_deadline(atomic_load(&s->opt[FQI_SO_SND_TIMEOUT]));
		if (spin_until == 0)
			spin_until = now_us() + ss->st->spin_us;
		if (ss->st->busy_poll || now_us() < spin_until) {
			unsigned pauses = room_pauses(ss);

			shm_lock_give(&ss->slock);
			if (fqi_deadline_remaining(deadline) == 0) {
				shm_lock_take(&ss->slock);
				rc = FQ_ETIMEDOUT;
				break;
			}
			spin_pause(pauses);
			shm_lock_take(&ss->slock);
			continue;
		}
		atomic_fetch_add(&ss->waiters_out, 1);
		arm_out(ss, true);
		/* Re-check after arming (a consumer may have made room just before). */
		if (send_room(ss, n, bytes)) {
			atomic_fetch_sub(&ss->waiters_out, 1);
			continue;
		}
		shm_lock_give(&ss->slock);
		rc = wait_fd(ss, ss->efd_out, deadline);
		shm_lock_take(&ss->slock);
		atomic_fetch_sub(&ss->waiters_out, 1);
		if (rc != 0)
			break;
	}
	if (rc == FQ_EAGAIN && atomic_load(&ss->waiters_out) == 0) {
		fqi_drain(ss->efd_out);
		arm_out(ss, true);
		if (send_room(ss, n, bytes))
			fqi_kick(ss->efd_out);
	} else if (rc == 0 && ss->armed_out && atomic_load(&ss->waiters_out) == 0) {
		arm_out(ss, false);
	}
	shm_lock_give(&ss->slock);
	if (atomic_load_explicit(&ss->waiters_out, memory_order_relaxed) > 0)
		fqi_kick(ss->efd_out);
	return rc;
}

/* ---- Receiving ---------------------------------------------------------------------------- */

static shm_map *conn_in_map(shm_conn *c, uint32_t idx)
{
	shm_map *m = conn_in_map_peek(c, idx);

	if (m != NULL)
		return m;
	/* Its announcement was sent before the entry: read it now. */
	conn_drain_ctl(c);
	return conn_in_map_peek(c, idx);
}

/* Bytes [off, off + len) inside a map of `size` bytes, past its header? */
static bool in_bounds(uint64_t off, uint64_t len, size_t size)
{
	return off >= SHM_HDR_BYTES && off <= size && len <= size - off;
}

/*
 * The entry at pos is published (the consumer is behind): start loading what its pop will
 * read first, its inline bytes or its block's header, so that the pop does not wait for two
 * cache-line transfers one after the other (the entry, then what it points to). Only a
 * hint: a garbage entry costs a useless prefetch inside our own mappings.
 */
static inline void in_prefetch(shm_conn *c, uint64_t pos)
{
	const shm_ent *e = &c->in->ent[pos & (c->in_cap - 1)];
	uint32_t seg = e->seg;
	shm_map *map;
	uint64_t off;

	if (seg == SHM_SEG_INLINE) {
		__builtin_prefetch(c->in_idata + (e->doff & (c->in_icap - 1)));
		return;
	}
	map = conn_in_map_peek(c, seg);
	off = e->blk & ((1ULL << 48) - 1);
	if (map != NULL && off < map->size)
		shm_prefetch_write((char *)map->base + off);
}

/*
 * Take one vector from c's ring into msgs[] (at most max parts). Returns the part count, 0
 * if the ring is empty, FQ_EPARTS if it has more than max parts, FQ_EPROTO if the peer sent
 * garbage (the connection is then dropped), or a negative error. rlock held.
 */
static long pop_vector(shm_sock *ss, shm_conn *c, fq_msg **msgs, size_t max, size_t *total)
{
	shm_ring *r = c->in;
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint64_t head = c->in_head_seen; /* entries up to here were acquired already */
	uint64_t bytes = 0, max_size = (uint64_t)atomic_load(&ss->s->opt[FQI_SO_MAX_MSG_SIZE]);
	uint64_t itail = 0; /* end of the last inline part taken, 0: none */
	pid_t me = shm_self();
	size_t n, bad_at = 0, n_inl = 0;
	bool lost = false, too_big = false;
	long rc;

	if (head == tail) {
		head = atomic_load_explicit(&r->head, memory_order_acquire);
		c->in_head_seen = head;
		if (head == tail)
			return 0;
	}
	if (head - tail > c->in_cap)
		goto bad;
	n = (size_t)(r->ent[tail & (c->in_cap - 1)].blk >> 48);
	if (n == 0 || n > head - tail)
		goto bad;
	if (n > max)
		return FQ_EPARTS;
	if (head - tail > n)
		in_prefetch(c, tail + n);
	msgs[0] = NULL; /* the error paths free what was taken (one part: no memset call) */
	for (size_t i = 1; i < n; i++)
		msgs[i] = NULL;
	/*
	 * Inline parts first: copying them out can fail for want of memory, which leaves the
	 * vector in the ring; no block has been taken over yet.
	 */
	for (size_t i = 0; i < n; i++) {
		shm_ent e = r->ent[(tail + i) & (c->in_cap - 1)];
		uint64_t at = e.doff & (c->in_icap - 1);

		if (e.seg != SHM_SEG_INLINE)
			continue;
		if (e.blk != (i == 0 ? (uint64_t)n << 48 : 0) || e.size > c->in_icap ||
		    at + e.size > c->in_icap) {
			FQI_WARN(SUBSYS,
			         "peer pid %d sent an inline part outside the ring; dropping the "
			         "connection",
			         (int)c->peer_pid);
			goto bad_release; /* bad_at 0: nothing was taken off the ring */
		}
		if (shm_msg_copy_in(ss->s->t, c->in_idata + at, e.size, &msgs[i]) != 0) {
			for (size_t k = 0; k < i; k++) {
				fq_msg_free(msgs[k]);
				msgs[k] = NULL;
			}
			return FQ_ENOMEM;
		}
		itail = e.doff + inl_round(e.size);
		/* Counted as the copy is (the peer may rewrite the entry after this pass). */
		bytes += e.size;
		if (max_size != 0 && e.size > max_size)
			too_big = true;
		n_inl++;
	}
	/* Then the blocks (none in a vector of small parts: no second look at the entries). */
	for (size_t i = 0; i < n && n_inl < n; i++) {
		shm_ent e = r->ent[(tail + i) & (c->in_cap - 1)];
		uint64_t off = e.blk & ((1ULL << 48) - 1);
		shm_map *map, *dmap;
		shm_blk *b;
		uint64_t w;

		bad_at = i;
		if (msgs[i] != NULL)
			continue; /* inline, counted by the first pass */
		bytes += e.size;  /* taken off the ring, delivered or not: the producer counts it */
		if (e.seg == SHM_SEG_INLINE) {
			FQI_WARN(SUBSYS,
			         "peer pid %d rewrote a published entry; dropping the connection",
			         (int)c->peer_pid);
			goto bad_release;
		}
		map = conn_in_map(c, e.seg);
		dmap = conn_in_map(c, e.dseg);
		if (i > 0 && (e.blk >> 48) != 0)
			goto bad_release;
		if (map == NULL || dmap == NULL || (off & (SHM_CACHE_LINE - 1)) != 0 ||
		    !in_bounds(off, SHM_BLK_HDR, map->size) ||
		    !in_bounds(e.doff, e.size, dmap->size) || map->kind != SHM_SEG_POOL) {
			FQI_WARN(SUBSYS,
			         "peer pid %d sent a handle outside its segments; dropping "
			         "the connection",
			         (int)c->peer_pid);
			goto bad_release;
		}
		b = (shm_blk *)((char *)map->base + off);
		/* Take the block over: one CAS from the sender to us. */
		w = SHM_WORD(SHM_HELD, c->peer_pid);
		if (b->magic != SHM_BLK_MAGIC || !atomic_compare_exchange_strong_explicit(
		                                     &b->word, &w, SHM_WORD(SHM_HELD, me),
		                                     memory_order_acq_rel, memory_order_acquire)) {
			/* Taken back by its owner (the sender died) or not the sender's. */
			lost = true;
			msgs[i] = NULL;
			continue;
		}
		shm_map_ref(map);
		if (dmap != map)
			shm_map_ref(dmap);
		if (shm_msg_new(ss->s->t, map, dmap, b, (char *)dmap->base + e.doff, e.size,
		                &msgs[i]) != 0) {
			shm_blk_release(map, b);
			if (dmap != map)
				shm_map_unref(dmap);
			shm_map_unref(map);
			msgs[i] = NULL;
			lost = true;
			continue;
		}
		if (max_size != 0 && e.size > max_size)
			too_big = true;
	}
	shm_fault("ring_pop");
	if (itail != 0)
		atomic_store_explicit(&r->itail, itail, memory_order_release);
	atomic_store_explicit(&r->tail_bytes,
	                      atomic_load_explicit(&r->tail_bytes, memory_order_relaxed) + bytes,
	                      memory_order_relaxed);
	atomic_store_explicit(&r->tail, tail + n, memory_order_release);
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&r->prod_waiting, memory_order_relaxed))
		fqi_kick(c->peer_efd_out);
	if (lost || too_big) {
		for (size_t i = 0; i < n; i++) {
			fq_msg_free(msgs[i]);
			msgs[i] = NULL;
		}
		if (too_big)
			FQI_WARN(SUBSYS,
			         "pid %d sent a message of %llu bytes, above max_msg_size "
			         "%llu; dropped",
			         (int)c->peer_pid, (unsigned long long)bytes,
			         (unsigned long long)max_size);
		else
			atomic_fetch_add(&ss->st->node->dropped_entries, n);
		return FQ_EAGAIN; /* try the next one */
	}
	*total = bytes;
	return (long)n;

bad_release:
	/* Release what this call took over, and move the tail past those entries so that the
	 * producer does not release them again (after reusing the blocks). */
	rc = FQ_EPROTO;
	for (size_t i = 0; i < n; i++) {
		if (msgs[i] != NULL)
			fq_msg_free(msgs[i]);
		msgs[i] = NULL;
	}
	atomic_store_explicit(&r->tail, tail + bad_at, memory_order_release);
	goto drop;
bad:
	rc = FQ_EPROTO;
	FQI_WARN(SUBSYS, "peer pid %d corrupted its ring; dropping the connection",
	         (int)c->peer_pid);
drop:
	atomic_store(&r->closed, 1); /* we never read it again: the producer takes back */
	atomic_store(&c->broken, true);
	io_wake(ss->st);
	return rc;
}

static void arm_in(shm_sock *ss, bool on)
{
	for (size_t i = 0; i < ss->npeers; i++) {
		if (ss->peers[i]->in != NULL)
			atomic_store_explicit(&ss->peers[i]->in->cons_sleeping, on,
			                      memory_order_relaxed);
	}
	ss->armed_in = on;
	atomic_thread_fence(memory_order_seq_cst);
}

static bool any_input(shm_sock *ss)
{
	if (ss->s->type == FQ_REQ)
		return ss->turn_conn != NULL && !atomic_load(&ss->turn_conn->broken) &&
		       !ring_empty(ss->turn_conn->in);
	for (size_t i = 0; i < ss->npeers; i++) {
		if (!atomic_load_explicit(&ss->peers[i]->broken, memory_order_relaxed) &&
		    !ring_empty(ss->peers[i]->in))
			return true;
	}
	return false;
}

/* Receive one vector; *parts_out gets msgs (malloc'd by the caller's choice). */
static int recv_common(fq_socket *s, fq_msg **one, fq_parts **vec, int flags)
{
	shm_sock *ss = ss_of(s);
	int64_t deadline = -2, spin_until = 0;
	fq_msg *stack_msgs[64];
	int rc;

	if (!fqi_type_receives(s->type))
		return FQ_ENOTSUP;
	shm_lock_take(&ss->rlock);
	if ((s->type == FQ_REQ && !ss->awaiting) || (s->type == FQ_REP && ss->awaiting)) {
		shm_lock_give(&ss->rlock);
		return FQ_ESTATE;
	}
	for (;;) {
		bool progress = false;

		rc = check_intr(ss);
		if (rc != 0)
			break;
		for (size_t k = 0; k < ss->npeers; k++) {
			size_t at = peer_at(ss, ss->rr_recv, k);
			shm_conn *c = ss->peers[at];
			size_t total = 0;
			long got;

			if (s->type == FQ_REQ && c != ss->turn_conn)
				continue;
			if (c->in == NULL || atomic_load_explicit(&c->broken, memory_order_relaxed))
				continue;
			if (one != NULL) {
				got = pop_vector(ss, c, stack_msgs, 1, &total);
				if (got == 1)
					*one = stack_msgs[0];
			} else {
				shm_ring *r = c->in;
				uint64_t tail = atomic_load(&r->tail),
				         head =
				             atomic_load_explicit(&r->head, memory_order_acquire);
				size_t want =
				    head != tail
				        ? (size_t)(r->ent[tail & (c->in_cap - 1)].blk >> 48)
				        : 0;
				fq_parts *p = NULL;

				if (want == 0 || want > SHM_MAX_PARTS) {
					got = head == tail
					          ? 0
					          : pop_vector(ss, c, stack_msgs, 64, &total);
				} else if (fqi_parts_new(want, &p) != 0) {
					got = FQ_ENOMEM;
				} else {
					got = pop_vector(ss, c, p->msgs, want, &total);
					if (got > 0) {
						p->n = (size_t)got; /* the peer may have changed the
						                     * count since we read it */
						p->bytes = total;
						*vec = p;
					} else {
						free(p);
					}
				}
			}
			if (got == FQ_EPARTS) {
				rc = FQ_EPARTS;
				goto out;
			}
			if (got == FQ_EAGAIN) {
				progress = true; /* dropped one; look again */
				continue;
			}
			if (got < 0) {
				if (got == FQ_ENOMEM) {
					rc = FQ_ENOMEM;
					goto out;
				}
				continue; /* that peer was dropped */
			}
			if (got > 0) {
				ss->rr_recv = peer_at(ss, at, 1);
				if (s->type == FQ_REP) {
					ss->awaiting = true;
					ss->turn_conn = c;
				} else if (s->type == FQ_REQ) {
					ss->awaiting = false;
					ss->turn_conn = NULL;
				}
				rc = 0;
				goto out;
			}
		}
		if (progress)
			continue;
		if (flags & FQ_DONTWAIT) {
			rc = FQ_EAGAIN;
			break;
		}
		if (deadline == -2) {
			deadline = fqi_deadline(atomic_load(&s->opt[FQI_SO_RCV_TIMEOUT]));
			spin_until = now_us() + ss->st->spin_us;
		}
		if (ss->st->busy_poll || now_us() < spin_until) {
			if (fqi_deadline_remaining(deadline) == 0) {
				rc = FQ_ETIMEDOUT;
				break;
			}
			shm_lock_give(&ss->rlock);
			spin_pause(1);
			shm_lock_take(&ss->rlock);
			continue;
		}
		atomic_fetch_add(&ss->waiters_in, 1);
		arm_in(ss, true);
		if (any_input(ss)) {
			atomic_fetch_sub(&ss->waiters_in, 1);
			continue;
		}
		shm_lock_give(&ss->rlock);
		rc = wait_fd(ss, ss->efd_in, deadline);
		shm_lock_take(&ss->rlock);
		atomic_fetch_sub(&ss->waiters_in, 1);
		if (rc != 0)
			break;
	}
out:
	if (rc == FQ_EAGAIN && atomic_load(&ss->waiters_in) == 0) {
		/* A poll loop waits on the fd next: make the next message wake it. */
		fqi_drain(ss->efd_in);
		arm_in(ss, true);
		if (any_input(ss))
			fqi_kick(ss->efd_in);
	} else if (rc == 0 && ss->armed_in && atomic_load(&ss->waiters_in) == 0) {
		arm_in(ss, false);
	}
	shm_lock_give(&ss->rlock);
	if (atomic_load_explicit(&ss->waiters_in, memory_order_relaxed) > 0)
		fqi_kick(ss->efd_in); /* another receiver may be the one to take what is left */
	return rc;
}

static int shm_recv(fq_socket *s, fq_msg **out, int flags)
{
	return recv_common(s, out, NULL, flags);
}

static int shm_recvv(fq_socket *s, fq_parts **out, int flags)
{
	return recv_common(s, NULL, out, flags);
}

/* Sleep on efd until kicked, interrupted or the deadline. */
/* Sleep on efd until kicked, interrupted or the deadline. The caller counted itself as a
 * waiter before it armed the flags (so nobody disarms them under it). */
static int wait_fd(shm_sock *ss, int efd, int64_t deadline)
{
	struct pollfd p = {.fd = efd, .events = POLLIN};
	int ms = fqi_deadline_remaining(deadline);
	int rc;

	if (ms == 0)
		return FQ_ETIMEDOUT;
	shm_flush_frees(); /* blocks this thread gave back must not wait while it sleeps */
	if (check_intr(ss) != 0)
		return FQ_EINTR;
	rc = poll(&p, 1, ms < 0 || ms > 100 ? 100 : ms);
	if (rc > 0)
		fqi_drain(efd);
	if (check_intr(ss) != 0)
		return FQ_EINTR;
	if (fqi_deadline_remaining(deadline) == 0)
		return FQ_ETIMEDOUT;
	return 0;
}

/* ---- Poll support ------------------------------------------------------------------------- */

static int shm_events(fq_socket *s)
{
	shm_sock *ss = ss_of(s);
	int ev = 0;

	if (check_intr(ss) != 0)
		return FQ_EINTR; /* the fd stays readable while interrupted */
	/* A direction this call does not look at (REQ: the one of the other turn) must not
	 * keep the fd readable: drain it when nobody sleeps on it. */
	if (atomic_load(&ss->waiters_in) == 0 &&
	    !(fqi_type_receives(s->type) && !(s->type == FQ_REQ && !ss->awaiting)))
		fqi_drain(ss->efd_in);
	if (atomic_load(&ss->waiters_out) == 0 &&
	    !(fqi_type_sends(s->type) && !(s->type == FQ_REQ && ss->awaiting)))
		fqi_drain(ss->efd_out);
	if (fqi_type_receives(s->type) && !(s->type == FQ_REQ && !ss->awaiting)) {
		shm_lock_take(&ss->rlock);
		if (atomic_load(&ss->waiters_in) == 0)
			fqi_drain(ss->efd_in);
		if (any_input(ss)) {
			ev |= FQ_POLLIN;
		} else {
			arm_in(ss, true);
			if (any_input(ss))
				ev |= FQ_POLLIN;
		}
		shm_lock_give(&ss->rlock);
	}
	if (fqi_type_sends(s->type) && !(s->type == FQ_REQ && ss->awaiting)) {
		shm_lock_take(&ss->slock);
		if (atomic_load(&ss->waiters_out) == 0)
			fqi_drain(ss->efd_out);
		if (s->type == FQ_PUB || (s->type == FQ_REP && ss->awaiting)) {
			ev |= FQ_POLLOUT;
		} else {
			for (size_t k = 0; k < ss->npeers && !(ev & FQ_POLLOUT); k++) {
				if (conn_has_room(ss->peers[k], 1, 0))
					ev |= FQ_POLLOUT;
			}
			if (!(ev & FQ_POLLOUT))
				arm_out(ss, true);
		}
		shm_lock_give(&ss->slock);
	}
	return ev;
}

static int shm_fd(fq_socket *s, int *fd)
{
	*fd = ss_of(s)->pfd;
	return 0;
}

static void shm_interrupt(fq_socket *s, bool on)
{
	shm_sock *ss = ss_of(s);

	atomic_store(&ss->intr, on);
	kick_changed(ss);
}

/* ---- Socket life -------------------------------------------------------------------------- */

static int shm_sock_open(fq_socket *s)
{
	shm_sock *ss = ss_of(s);
	struct epoll_event ev = {.events = EPOLLIN};

	ss->s = s;
	ss->st = st_of(s->t);
	atomic_init(&ss->slock.v, 0);
	atomic_init(&ss->rlock.v, 0);
	ss->efd_in = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ss->efd_out = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ss->pfd = epoll_create1(EPOLL_CLOEXEC);
	if (ss->efd_in < 0 || ss->efd_out < 0 || ss->pfd < 0 ||
	    epoll_ctl(ss->pfd, EPOLL_CTL_ADD, ss->efd_in, &ev) != 0 ||
	    epoll_ctl(ss->pfd, EPOLL_CTL_ADD, ss->efd_out, &ev) != 0) {
		int rc = fqi_syserr(errno);

		if (ss->efd_in >= 0)
			close(ss->efd_in);
		if (ss->efd_out >= 0)
			close(ss->efd_out);
		if (ss->pfd >= 0)
			close(ss->pfd);
		return rc;
	}
	return 0;
}

static int shm_setopt(fq_socket *s, fqi_sockopt_id id, const char *text)
{
	shm_sock *ss = ss_of(s);
	int rc = 0;

	switch (id) {
	case FQI_SO_SUBSCRIBE:
	case FQI_SO_UNSUBSCRIBE: {
		size_t len = text ? strlen(text) : 0;

		if (s->type != FQ_SUB)
			return id == FQI_SO_SUBSCRIBE && text == NULL ? 0 : FQ_ENOTSUP;
		if (len > CTL_TEXT)
			return FQ_EINVAL;
		shm_lock_take(&ss->slock);
		rc = fqi_subs_change(&ss->subs, text ? text : "", len, id == FQI_SO_SUBSCRIBE);
		for (size_t i = 0; rc == 0 && i < ss->npeers; i++) {
			ctl_msg m;

			ctl_init(&m, id == FQI_SO_SUBSCRIBE ? CTL_SUB : CTL_UNSUB);
			m.len = (uint32_t)len;
			memcpy(m.text, text ? text : "", len);
			rc = ctl_queue(ss->peers[i], &m);
		}
		shm_lock_give(&ss->slock);
		return rc;
	}
	case FQI_SO_RCV_HWM_BYTES:
		shm_lock_take(&ss->rlock);
		for (size_t i = 0; i < ss->npeers; i++) {
			if (ss->peers[i]->in != NULL)
				atomic_store(&ss->peers[i]->in->hwm_bytes,
				             (uint64_t)atomic_load(&s->opt[id]));
		}
		shm_lock_give(&ss->rlock);
		return 0;
	default:
		return 0;
	}
}

/* Wait (up to linger) until every peer has read what we published. */
static void linger_wait(shm_sock *ss)
{
	int64_t linger = atomic_load(&ss->s->opt[FQI_SO_LINGER]);
	int64_t deadline = fqi_deadline(linger);

	for (;;) {
		bool pending = false;

		shm_lock_take(&ss->slock);
		for (size_t i = 0; i < ss->npeers; i++) {
			shm_conn *c = ss->peers[i];

			if (c->state == CONN_READY && c->out != NULL &&
			    !atomic_load(&c->out->closed) && !ring_empty(c->out))
				pending = true;
		}
		if (pending)
			arm_out(ss, true);
		shm_lock_give(&ss->slock);
		if (!pending || fqi_deadline_remaining(deadline) == 0)
			return;
		{
			struct pollfd p = {.fd = ss->efd_out, .events = POLLIN};
			int ms = fqi_deadline_remaining(deadline);

			if (poll(&p, 1, ms < 0 || ms > 20 ? 20 : ms) > 0)
				fqi_drain(ss->efd_out);
		}
	}
}

static void shm_close(fq_socket *s)
{
	shm_sock *ss = ss_of(s);
	shm_transport *st = ss->st;

	if (fqi_type_sends(s->type))
		linger_wait(ss);
	pthread_mutex_lock(&st->lock);
	ss->closing = true;
	for (listener **pp = &st->listeners; *pp != NULL;) {
		listener *l = *pp;
		struct stat sb;

		if (l->ss != ss) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		epoll_ctl(st->ep, EPOLL_CTL_DEL, l->fd, NULL);
		if (l->tcp_fd >= 0)
			epoll_ctl(st->ep, EPOLL_CTL_DEL, l->tcp_fd, NULL);
		if (l->path[0] != '@' && stat(l->path, &sb) == 0 && sb.st_dev == l->dev &&
		    sb.st_ino == l->ino)
			unlink(l->path);
		l->dead = true;
		l->next = st->dead_listeners;
		st->dead_listeners = l;
	}
	for (connecter **pp = &st->connecters; *pp != NULL;) {
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
	for (shm_conn *c = st->conns; c != NULL; c = c->next) {
		if (c->ss != ss)
			continue;
		if (c->state != CONN_GONE) {
			ctl_msg m;

			ctl_init(&m, CTL_BYE);
			ctl_send(c->fd, &m, ctl_len(&m), NULL, 0);
		}
		conn_gone(c, NULL);
	}
	conn_reap(st, false, true);
	pthread_mutex_unlock(&st->lock);
	io_wake(st);
	fqi_subs_free(&ss->subs);
	free(ss->peers);
	close(ss->efd_in);
	close(ss->efd_out);
	close(ss->pfd);
}

/* ---- I/O thread ----------------------------------------------------------------------------- */

/*
 * Process pid died. First release what we published to it and it never took (those blocks
 * are still ours), then take back what it held: in the other order, a block taken back and
 * reused at once could still be named by one of our unread ring entries and be released
 * a second time. st->lock held.
 */
static void peer_died(shm_transport *st, pid_t pid)
{
	for (shm_conn *c = st->conns; c != NULL; c = c->next) {
		if (c->peer_pid != pid || c->out_released || c->state == CONN_HANDSHAKE)
			continue;
		shm_lock_take(&c->ss->slock);
		atomic_store(&c->broken, true); /* no send uses it any more; the loop ends it */
		conn_release_out(c);
		shm_lock_give(&c->ss->slock);
	}
	for (shm_conn *c = st->orphans; c != NULL; c = c->next) {
		if (c->peer_pid == pid && !c->out_released)
			conn_release_out(c);
	}
	shm_reclaim_pid(st->node, pid);
}

static void watch_pid(shm_transport *st, pid_t pid)
{
	struct watch *w;
	struct epoll_event ev = {.events = EPOLLIN};
	int fd;

	for (size_t i = 0; i < st->nwatch; i++) {
		if (st->watches[i]->pid == pid)
			return;
	}
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0) {
		if (errno == ESRCH)
			peer_died(st, pid); /* gone already */
		return;
	}
	if (st->nwatch == st->cap_watch) {
		size_t cap = st->cap_watch ? 2 * st->cap_watch : 16;
		struct watch **v = realloc(st->watches, cap * sizeof(*v));

		if (v == NULL) {
			close(fd);
			return;
		}
		st->watches = v;
		st->cap_watch = cap;
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		close(fd);
		return;
	}
	w->src.kind = SRC_PIDFD;
	w->pid = pid;
	w->fd = fd;
	ev.data.ptr = &w->src;
	epoll_ctl(st->ep, EPOLL_CTL_ADD, fd, &ev);
	st->watches[st->nwatch++] = w;
}

static void watch_fired(shm_transport *st, struct watch *w)
{
	epoll_ctl(st->ep, EPOLL_CTL_DEL, w->fd, NULL);
	close(w->fd);
	for (size_t i = 0; i < st->nwatch; i++) {
		if (st->watches[i] == w) {
			st->watches[i] = st->watches[--st->nwatch];
			break;
		}
	}
	FQI_INFO(SUBSYS, "process %d is gone; taking back its blocks", (int)w->pid);
	peer_died(st, w->pid);
	free(w);
}

/* Watch every process named in the user tables of our segments. st->lock held. */
static void scan_users(shm_transport *st)
{
	shm_node *n = st->node;
	pid_t pids[SHM_USERS * 4];
	size_t np = 0;

	pthread_mutex_lock(&n->alloc_lock);
	for (size_t i = 0; i < n->nsegs && np + SHM_USERS <= FQI_ARRAY_LEN(pids); i++) {
		shm_seg_hdr *h = n->segs[i] ? n->segs[i]->base : NULL;

		for (unsigned u = 0; h != NULL && u < SHM_USERS; u++) {
			pid_t p = (pid_t)atomic_load_explicit(&h->users[u], memory_order_relaxed);
			bool seen = false;

			for (size_t j = 0; j < np && !seen; j++)
				seen = pids[j] == p;
			if (p > 0 && !seen)
				pids[np++] = p;
		}
	}
	pthread_mutex_unlock(&n->alloc_lock);
	for (size_t i = 0; i < np; i++) {
		if (pids[i] != shm_self())
			watch_pid(st, pids[i]);
	}
}

void shm_region_returned(shm_node *n, shm_blk *b)
{
	shm_map *m = b->a < n->nsegs ? n->segs[b->a] : NULL;
	shm_region_priv *rp = m != NULL ? m->region : NULL;

	if (rp == NULL)
		return;
	pthread_mutex_lock(&rp->lock);
	if (rp->npending == rp->cap_pending) {
		size_t cap = rp->cap_pending ? 2 * rp->cap_pending : 64;
		fq_region_ack *v = realloc(rp->pending, cap * sizeof(*v));

		if (v == NULL) {
			pthread_mutex_unlock(&rp->lock);
			return;
		}
		rp->pending = v;
		rp->cap_pending = cap;
	}
	rp->pending[rp->npending].data = (char *)rp->r->data + b->b;
	rp->pending[rp->npending].size = b->c;
	rp->pending[rp->npending].hint = (void *)(uintptr_t)b->d;
	rp->npending++;
	pthread_mutex_unlock(&rp->lock);
}

/* Deliver queued region acknowledgements (I/O thread, no lock held). */
static void flush_acks(shm_transport *st)
{
	struct batch {
		shm_region_priv *rp;
		fq_region_ack *acks;
		size_t n;
	} *todo = NULL;
	size_t ntodo = 0, cap = 0;

	/* Take the acks under the lock; call back and release references after it (a last
	 * reference closes the region, which takes this lock). */
	pthread_mutex_lock(&st->region_lock);
	for (shm_region_priv *rp = st->regions; rp != NULL; rp = rp->next) {
		fq_region_ack *acks;
		size_t n;

		pthread_mutex_lock(&rp->lock);
		acks = rp->pending;
		n = rp->npending;
		if (n != 0 && ntodo == cap) {
			struct batch *v = realloc(todo, (cap ? 2 * cap : 8) * sizeof(*v));

			if (v == NULL) {
				pthread_mutex_unlock(&rp->lock);
				break; /* next time */
			}
			todo = v;
			cap = cap ? 2 * cap : 8;
		}
		if (n != 0) {
			rp->pending = NULL;
			rp->npending = rp->cap_pending = 0;
			fqi_region_ref(rp->r); /* keeps rp while we are outside the lock */
			todo[ntodo++] = (struct batch){rp, acks, n};
		}
		pthread_mutex_unlock(&rp->lock);
	}
	pthread_mutex_unlock(&st->region_lock);
	for (size_t k = 0; k < ntodo; k++) {
		fq_region *r = todo[k].rp->r;

		shm_fault("region_ack");
		if (r->ack_fn != NULL)
			r->ack_fn(todo[k].acks, todo[k].n, r->arg);
		atomic_fetch_sub(&st->node->outstanding_region_msgs, todo[k].n);
		free(todo[k].acks);
		/* Each message held a region reference, and so did we. */
		for (size_t i = 0; i <= todo[k].n; i++)
			fqi_region_unref(r);
	}
	free(todo);
}

static void io_accept(shm_transport *st, listener *l)
{
	while (!l->dead) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		if (l->dead || l->ss->closing) {
			close(fd);
			continue;
		}
		conn_new(st, l->ss, fd);
	}
}

static void *io_main(void *arg)
{
	shm_transport *st = arg;
	struct epoll_event evs[32];

	while (!atomic_load(&st->stop)) {
		int64_t now = fqi_clock_ms(), next = now + 10;
		int timeout, k;

		pthread_mutex_lock(&st->lock);
		free_dead(st);
		for (connecter *c = st->connecters; c != NULL; c = c->next) {
			if (c->conn != NULL)
				continue;
			if (c->next_ms <= now && connect_once(st, c) != 0) {
				int64_t max = atomic_load(&c->ss->s->opt[FQI_SO_RECONNECT_IVL_MAX]);

				if (max > c->ivl) {
					c->ivl *= 2;
					if (c->ivl > max)
						c->ivl = max;
				}
				c->next_ms = now + c->ivl;
			}
			if (c->conn == NULL && c->next_ms < next)
				next = c->next_ms;
		}
		shm_flush_stale(now, 10);
		if (now - st->last_scan_ms >= 50) {
			st->last_scan_ms = now;
			scan_users(st);
			conn_reap(st, false, false);
			orphans_reap(st, false);
		}
		pthread_mutex_unlock(&st->lock);
		if (atomic_load(&st->node->outstanding_region_msgs) != 0) {
			shm_collect(st->node);
			flush_acks(st);
			if (next > now + 2)
				next = now + 2;
		}
		timeout = (int)(next > now ? next - now : 0);
		k = epoll_wait(st->ep, evs, (int)FQI_ARRAY_LEN(evs), timeout);
		pthread_mutex_lock(&st->lock);
		for (int i = 0; i < k; i++) {
			io_src *src = evs[i].data.ptr;

			switch (src->kind) {
			case SRC_WAKE:
				fqi_drain(st->wake_fd);
				break;
			case SRC_LISTEN:
				io_accept(st, (listener *)src);
				break;
			case SRC_TCP: {
				listener *l =
				    (listener *)((char *)src - offsetof(listener, tcp_src));
				int fd;

				while (!l->dead &&
				       (fd = accept4(l->tcp_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
					close(fd);
				break;
			}
			case SRC_CONN: {
				shm_conn *c = (shm_conn *)src;
				int rc;

				if (c->state == CONN_GONE)
					break;
				rc = conn_drain_ctl(c);
				if (rc == FQ_ECLOSED)
					conn_gone(c, c->peer_closed ? NULL : "the peer hung up");
				else if (rc == FQ_EMISMATCH)
					conn_gone(c, "socket types do not match");
				else if (rc != 0)
					conn_gone(c, fq_strerror(rc));
				break;
			}
			case SRC_PIDFD:
				watch_fired(st, (struct watch *)src);
				break;
			default:
				break;
			}
		}
		/* Handshakes that completed, connections a data path found broken, and
		 * queued control messages. */
		for (shm_conn *c = st->conns; c != NULL; c = c->next) {
			if (c->state == CONN_READY)
				ctl_flush(c);
			if (c->state == CONN_READY && !c->in_peers && !c->refused)
				sock_add_peer(c->ss, c);
			if (c->state != CONN_GONE && atomic_load(&c->broken))
				conn_gone(c, "it sent bad data or went away");
		}
		pthread_mutex_unlock(&st->lock);
	}
	return NULL;
}

/* ---- Transport ---------------------------------------------------------------------------- */

static int shm_init(fq_transport *t)
{
	shm_transport *st = st_of(t);
	shm_node *n = calloc(1, sizeof(*n));
	struct epoll_event ev = {.events = EPOLLIN};
	int rc;

	if (n == NULL)
		return FQ_ENOMEM;
	if ((t->opt[OPT_ALIGNMENT] & (t->opt[OPT_ALIGNMENT] - 1)) != 0) {
		FQI_ERROR(SUBSYS, "alignment %lld is not a power of two",
		          (long long)t->opt[OPT_ALIGNMENT]);
		free(n);
		return FQ_EINVAL;
	}
	if (fqi_smc_mode_parse(t->opt_str[OPT_SMC] ? t->opt_str[OPT_SMC] : "off", &st->smc) != 0) {
		FQI_ERROR(SUBSYS, "smc=%s: not one of " FQI_SMC_MODES, t->opt_str[OPT_SMC]);
		free(n);
		return FQ_EINVAL;
	}
	rc = shm_node_mem_init(n);
	if (rc != 0) {
		free(n);
		return rc;
	}
	n->t = t;
	if (getrandom(&n->id, sizeof(n->id), 0) != sizeof(n->id) || n->id == 0)
		n->id = ((uint64_t)shm_self() << 32) ^ (uint64_t)fqi_clock_ms() ^
		        (uint64_t)(uintptr_t)n;
	n->seg_size = (size_t)t->opt[OPT_SEGMENT_SIZE];
	n->limit = (size_t)t->opt[OPT_SEGMENT_LIMIT];
	n->align = (size_t)t->opt[OPT_ALIGNMENT];
	n->alloc_timeout_ms = t->opt[OPT_ALLOC_TIMEOUT];
	n->prefault = t->opt[OPT_PREFAULT] != 0;
	snprintf(n->session, sizeof(n->session), "%s",
	         t->opt_str[OPT_SESSION] ? t->opt_str[OPT_SESSION] : "default");
	st->node = n;
	st->spin_us = t->opt[OPT_SPIN];
	st->busy_poll = t->opt[OPT_BUSY_POLL] != 0;
	st->inline_max = (size_t)t->opt[OPT_INLINE_MAX];
	/* Small messages in private memory only where they go inline, and only as aligned as
	 * the option asks (their bytes start on a cache line). */
	if (st->inline_max != 0 && n->align <= SHM_CACHE_LINE)
		n->small_below =
		    (st->inline_max < SHM_SMALL_MAX ? st->inline_max : SHM_SMALL_MAX) + 1;
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->region_lock, NULL);
	st->ep = epoll_create1(EPOLL_CLOEXEC);
	st->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	st->wake_src.kind = SRC_WAKE;
	ev.data.ptr = &st->wake_src;
	if (st->ep < 0 || st->wake_fd < 0 ||
	    epoll_ctl(st->ep, EPOLL_CTL_ADD, st->wake_fd, &ev) != 0 ||
	    pthread_create(&st->io, NULL, io_main, st) != 0) {
		rc = fqi_syserr(errno);
		if (st->ep >= 0)
			close(st->ep);
		if (st->wake_fd >= 0)
			close(st->wake_fd);
		shm_node_mem_fini(n);
		return rc;
	}
	st->io_started = true;
	return 0;
}

static void shm_fini(fq_transport *t)
{
	shm_transport *st = st_of(t);

	atomic_store(&st->stop, true);
	io_wake(st);
	pthread_join(st->io, NULL);
	pthread_mutex_lock(&st->lock);
	free_dead(st);
	conn_reap(st, true, false);
	orphans_reap(st, true); /* our blocks stay with their readers; we stop watching */
	for (size_t i = 0; i < st->nwatch; i++) {
		close(st->watches[i]->fd);
		free(st->watches[i]);
	}
	free(st->watches);
	pthread_mutex_unlock(&st->lock);
	shm_collect(st->node);
	flush_acks(st);
	close(st->ep);
	close(st->wake_fd);
	shm_node_mem_fini(st->node);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->region_lock);
}

static int shm_probe(void)
{
	int fd = memfd_create("fabriq-probe", MFD_CLOEXEC);

	if (fd < 0)
		return FQ_EUNAVAIL;
	close(fd);
	return 0;
}

/* ---- Regions ------------------------------------------------------------------------------ */

static int shm_region_open(fq_region *r)
{
	shm_transport *st = st_of(r->t);
	shm_node *n = st->node;
	shm_region_priv *rp = r->priv;
	size_t size;
	shm_map *m = NULL;
	int rc;

	if (r->size > SIZE_MAX - 2 * SHM_HDR_BYTES)
		return FQ_ENOMEM;
	size = (SHM_HDR_BYTES + r->size + 4095) & ~(size_t)4095;
	pthread_mutex_lock(&n->alloc_lock);
	rc = n->total + size > n->limit ? FQ_ENOMEM : 0;
	if (rc == 0)
		rc = shm_seg_new(n, size, SHM_SEG_REGION, false, &m);
	if (rc == 0)
		m->region = rp;
	pthread_mutex_unlock(&n->alloc_lock);
	if (rc != 0)
		return rc;
	rp->r = r;
	rp->map = m;
	rp->st = st;
	pthread_mutex_init(&rp->lock, NULL);
	r->data = (char *)m->base + SHM_HDR_BYTES;
	pthread_mutex_lock(&st->region_lock);
	rp->next = st->regions;
	st->regions = rp;
	pthread_mutex_unlock(&st->region_lock);
	return 0;
}

static void shm_region_close(fq_region *r)
{
	shm_region_priv *rp = r->priv;
	shm_transport *st = rp->st;

	pthread_mutex_lock(&st->region_lock);
	for (shm_region_priv **pp = &st->regions; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == rp) {
			*pp = rp->next;
			break;
		}
	}
	pthread_mutex_unlock(&st->region_lock);
	/* Retire the segment (peers that mapped it keep their mapping until they let go). */
	pthread_mutex_lock(&st->node->alloc_lock);
	rp->map->region = NULL;
	shm_seg_retire(st->node, rp->map);
	pthread_mutex_unlock(&st->node->alloc_lock);
	free(rp->pending);
	pthread_mutex_destroy(&rp->lock);
}

static int shm_region_msg(fq_region *r, void *data, size_t size, void *hint, fq_msg **out)
{
	shm_region_priv *rp = r->priv;
	shm_node *n = rp->st->node;
	shm_map *smap;
	shm_blk *stub;
	int rc = shm_alloc(n, SHM_BLK_REGION, 0, &smap, &stub);

	if (rc != 0)
		return rc;
	stub->a = rp->map->idx;
	stub->b = (uint64_t)((char *)data - (char *)r->data);
	stub->c = size;
	stub->d = (uint64_t)(uintptr_t)hint;
	shm_map_ref(rp->map);
	rc = shm_msg_new(r->t, smap, rp->map, stub, data, size, out);
	if (rc != 0) {
		stub->kind = SHM_BLK_STUB; /* no ack for a message that never existed */
		stub->a = ~0ULL;
		shm_blk_release(smap, stub);
		shm_map_unref(rp->map);
		shm_map_unref(smap);
		return rc;
	}
	fqi_region_ref(r);
	atomic_fetch_add(&n->outstanding_region_msgs, 1);
	return 0;
}

/* ---- Descriptor --------------------------------------------------------------------------- */

static const fqi_transport_ops shm_transport_ops = {
    .size = sizeof(fqi_transport_ops),
    .priv_size = sizeof(shm_transport),
    .init = shm_init,
    .fini = shm_fini,
    .probe = shm_probe,
    .counter = fqi_no_counter,
};

static const fqi_socket_ops shm_socket_ops = {
    .size = sizeof(fqi_socket_ops),
    .priv_size = sizeof(shm_sock),
    .open = shm_sock_open,
    .close = shm_close,
    .setopt = shm_setopt,
    .bind = shm_bind,
    .connect = shm_connect,
    .send = shm_send,
    .recv = shm_recv,
    .recvv = shm_recvv,
    .events = shm_events,
    .fd = shm_fd,
    .interrupt = shm_interrupt,
};

static const fqi_region_ops shm_region_ops = {
    .size = sizeof(fqi_region_ops),
    .priv_size = sizeof(shm_region_priv),
    .open = shm_region_open,
    .close = shm_region_close,
    .msg = shm_region_msg,
};

const fqi_transport_desc fqi_shmem_transport = {
    .name = "shmem",
    .schemes = "ipc,tcp",
    .caps = FQI_CAP_REGIONS | FQI_CAP_POLL_FD | FQI_CAP_RCV_HWM_BYTES,
    .options = shm_options,
    .option_count = OPT_COUNT,
    .transport_ops = &shm_transport_ops,
    .msg_ops = &shm_msg_ops,
    .socket_ops = &shm_socket_ops,
    .region_ops = &shm_region_ops,
};
