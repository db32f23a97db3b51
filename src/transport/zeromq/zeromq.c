/*
 * zeromq transport: libzmq sockets, thin and faithful.
 *
 * A single message is one ZeroMQ frame; a vector of parts is one ZeroMQ multipart message sent
 * in one locked sequence, so plain libzmq peers and FairMQ devices interoperate both ways.
 *
 * Thread-safety: libzmq sockets are not thread-safe, so every call into a socket happens under
 * the socket's mutex, always with ZMQ_DONTWAIT. A caller that has to wait drops the mutex and
 * sleeps in poll() on libzmq's notification fd (ZMQ_FD), a "kick" eventfd and an "interrupt"
 * eventfd. ZMQ_FD is an edge: any thread's call into the socket may consume the notification
 * another thread waits for, so whoever leaves the socket ready for a waiting direction kicks
 * the waiters (after_op). This keeps the single-threaded fast path at one uncontended lock
 * around the plain libzmq call.
 */
#include "core/core.h"
#include "core/transport.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#define SUBSYS "zeromq"

enum { OPT_IO_THREADS, OPT_MAX_SOCKETS, OPT_IPV6, OPT_BUFFER_CACHE, OPT_COUNT };

static const fqi_option zmq_options[OPT_COUNT] = {
    [OPT_IO_THREADS] = {"io_threads", FQ_OPT_INT, "1", 1, 64,
                        "libzmq I/O threads of the transport instance"},
    [OPT_MAX_SOCKETS] = {"max_sockets", FQ_OPT_INT, "1023", 1, 1 << 20,
                         "most sockets one transport instance may open"},
    [OPT_IPV6] = {"ipv6", FQ_OPT_BOOL, "false", 0, 1,
                  "let tcp:// sockets use IPv6 as well as IPv4"},
    [OPT_BUFFER_CACHE] = {"buffer_cache", FQ_OPT_SIZE, "128M", 0, INT64_MAX,
                          "bytes of freed large message buffers (64 KiB to 64 MiB) kept for "
                          "reuse, so big messages do not fault in fresh pages (0 = off)"},
};

/*
 * Large message buffers are recycled: a buffer that libzmq (or the receiver) releases goes
 * back to its size class, up to `buffer_cache` bytes in all, and the next fq_msg_alloc of
 * that class reuses it, already mapped and warm. Releases come from any thread, possibly
 * after the transport closed: the pool counts one reference per live buffer.
 */
#define POOL_MIN_SHIFT 16 /* 64 KiB */
#define POOL_MAX_SHIFT 26 /* 64 MiB */
#define POOL_CLASSES   (POOL_MAX_SHIFT - POOL_MIN_SHIFT + 1)
#define POOL_HEADER    64 /* keeps the data 64-byte aligned */

typedef struct pool_buf {
	struct pool_buf *next;
	struct zt_pool *pool;
	unsigned cls;
} pool_buf;

typedef struct zt_pool {
	pthread_mutex_t lock;
	_Atomic long refs; /* the transport's + one per live buffer */
	size_t cached, max;
	bool closed;
	pool_buf *free[POOL_CLASSES];
} zt_pool;

typedef struct zt_transport {
	void *ctx;
	zt_pool *pool;
	/* The monitor thread logs connection events (drops, failed handshakes) of every socket;
	 * sockets register with it through the control PAIR, guarded by mon_lock. */
	pthread_t mon_thread;
	pthread_mutex_t mon_lock;
	void *mon_ctl;
	_Atomic unsigned long mon_ids;
	/* inproc names bound and connected in this instance (see inproc_rebound). */
	pthread_mutex_t inproc_lock;
	struct zt_inproc *inproc;
} zt_transport;

/*
 * libzmq attaches an inproc connect made before the bind, but never re-attaches one whose
 * binder closed: the connector would stay deaf after the peer restarts. Each name counts its
 * binds (gen); a connection records the bind it is attached to, and a new bind re-connects
 * every connection attached to an older one. Connections still pending in libzmq (made while
 * nobody was bound) are left to libzmq, which attaches them itself.
 */
typedef struct zt_inproc {
	struct zt_inproc *next;
	fq_socket *s; /* the binder (is_bind) or a connector */
	bool is_bind;
	unsigned gen; /* binder: its bind generation; connector: the bind it is attached to */
	char name[];
} zt_inproc;

typedef struct zt_msg {
	fq_msg base;
	zmq_msg_t zm;
} zt_msg;

/*
 * Byte accounting for snd_hwm_bytes: libzmq frees a sent buffer once it is written out, so
 * bytes queued = bytes handed to libzmq - bytes freed. Shared with the free callbacks, which
 * may run after the socket is gone, hence the reference count.
 */
typedef struct zt_acct {
	_Atomic int64_t bytes;
	_Atomic int64_t limit;
	_Atomic int refs;
	int efd; /* written when the queued bytes fall below the limit */
} zt_acct;

typedef struct zt_tracked {
	zmq_msg_t orig;
	zt_acct *acct;
	size_t size;
	bool cancelled;
} zt_tracked;

typedef struct zt_socket {
	void *zs;
	pthread_mutex_t lock;
	int zfd;     /* ZMQ_FD */
	int kick_fd; /* wakes waiters whose direction became ready */
	int intr_fd; /* readable while interrupted */
	int ep_fd;   /* epoll over zfd and intr_fd: fq_socket_fd */
	_Atomic int waiters_in, waiters_out;
	_Atomic bool interrupted;
	fq_parts *pending; /* a vector that fq_recv refused, kept for fq_recvv */
	zt_acct *acct;
	unsigned long mon_id;
	/* ipc socket files this socket bound: libzmq 4.3 leaves them behind, we remove them
	 * at close unless someone else has bound the path since (different inode). */
	struct zt_ipc_file {
		char *path;
		dev_t dev;
		ino_t ino;
	} * ipc_files;
	size_t n_ipc_files;
} zt_socket;

/* ---- Errors ----------------------------------------------------------------------------- */

static int zerr(int e)
{
	switch (e) {
	case EFSM:
		return FQ_ESTATE;
	case ETERM:
		return FQ_ECLOSED;
	case ENOCOMPATPROTO:
		return FQ_EMISMATCH;
	case EPROTONOSUPPORT:
	case EINVAL:
		return FQ_EADDRINVAL;
	case ENOTSOCK:
		return FQ_ECLOSED;
	default:
		return fqi_syserr(e);
	}
}

/* ---- Buffer pool ------------------------------------------------------------------------ */

static void pool_drop_cached(zt_pool *p)
{
	for (unsigned c = 0; c < POOL_CLASSES; c++) {
		while (p->free[c] != NULL) {
			pool_buf *b = p->free[c];

			p->free[c] = b->next;
			free(b);
		}
	}
	p->cached = 0;
}

static void pool_unref(zt_pool *p)
{
	if (atomic_fetch_sub(&p->refs, 1) == 1) {
		pool_drop_cached(p);
		pthread_mutex_destroy(&p->lock);
		free(p);
	}
}

static zt_pool *pool_new(size_t max)
{
	zt_pool *p = calloc(1, sizeof(*p));

	if (p != NULL) {
		pthread_mutex_init(&p->lock, NULL);
		atomic_init(&p->refs, 1);
		p->max = max;
	}
	return p;
}

/* The transport goes: keep nothing more; live buffers finish the pool. */
static void pool_close(zt_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->closed = true;
	pool_drop_cached(p);
	pthread_mutex_unlock(&p->lock);
	pool_unref(p);
}

static void pool_put(void *data, void *hint)
{
	pool_buf *b = hint;
	zt_pool *p = b->pool;
	size_t bytes = (size_t)1 << (b->cls + POOL_MIN_SHIFT);

	FQI_UNUSED(data);
	pthread_mutex_lock(&p->lock);
	if (!p->closed && p->cached + bytes <= p->max) {
		b->next = p->free[b->cls];
		p->free[b->cls] = b;
		p->cached += bytes;
		b = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	free(b);
	pool_unref(p);
}

/* A buffer of at least `size` bytes for a libzmq frame, or NULL (then allocate normally). */
static pool_buf *pool_get(zt_pool *p, size_t size)
{
	unsigned cls = 0;
	pool_buf *b;

	if (p->max == 0 || size < ((size_t)1 << POOL_MIN_SHIFT) ||
	    size > ((size_t)1 << POOL_MAX_SHIFT))
		return NULL;
	while (((size_t)1 << (cls + POOL_MIN_SHIFT)) < size)
		cls++;
	pthread_mutex_lock(&p->lock);
	b = p->free[cls];
	if (b != NULL) {
		p->free[cls] = b->next;
		p->cached -= (size_t)1 << (cls + POOL_MIN_SHIFT);
	}
	pthread_mutex_unlock(&p->lock);
	if (b == NULL) {
		b = aligned_alloc(POOL_HEADER, POOL_HEADER + ((size_t)1 << (cls + POOL_MIN_SHIFT)));
		if (b == NULL)
			return NULL;
		b->pool = p;
		b->cls = cls;
	}
	atomic_fetch_add(&p->refs, 1);
	return b;
}

/* ---- Transport -------------------------------------------------------------------------- */

#define MON_EVENTS                                                                    \
	(ZMQ_EVENT_CONNECTED | ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |          \
	 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | \
	 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

/* A fabriq socket is a libzmq socket plus the two ends of its monitor. */
#define ZMQ_SOCKETS_PER_SOCKET 3

typedef struct mon_entry {
	unsigned long id;
	void *pair;
	bool receives; /* a receiving socket: a closed connection may have been a drop */
} mon_entry;

/* Log one event read from a socket monitor (two frames: event id + value, endpoint). */
static void mon_log(void *pair, unsigned long id, bool receives)
{
	zmq_msg_t head, addr;
	uint16_t event = 0;
	int32_t value = 0;
	const char *where;
	int len;

	zmq_msg_init(&head);
	zmq_msg_init(&addr);
	if (zmq_msg_recv(&head, pair, ZMQ_DONTWAIT) < 0 || zmq_msg_size(&head) < 6 ||
	    zmq_msg_recv(&addr, pair, ZMQ_DONTWAIT) < 0)
		goto out;
	memcpy(&event, zmq_msg_data(&head), sizeof(event));
	memcpy(&value, (char *)zmq_msg_data(&head) + 2, sizeof(value));
	where = zmq_msg_data(&addr);
	len = (int)zmq_msg_size(&addr);
	switch (event) {
	case ZMQ_EVENT_CONNECTED:
	case ZMQ_EVENT_ACCEPTED:
		FQI_DEBUG(SUBSYS, "socket %lu: peer connected on %.*s", id, len, where);
		break;
	case ZMQ_EVENT_DISCONNECTED:
		/* libzmq reports a peer that left and a peer it dropped (broken framing, a frame
		 * above max_msg_size) alike. A receiving socket says so at warn level, so a drop
		 * is never silent; a sending socket only loses a consumer, which libzmq's
		 * reconnect and round robin handle. */
		FQI_LOG(receives ? FQ_LOG_WARN : FQ_LOG_INFO, SUBSYS,
		        "socket %lu: connection on %.*s closed: the peer left, or was dropped for "
		        "breaking the protocol (e.g. a message above max_msg_size)",
		        id, len, where);
		break;
	case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
		FQI_WARN(SUBSYS,
		         "socket %lu: peer on %.*s dropped: it does not speak ZMTP or uses an "
		         "incompatible socket type (transport mismatch?), code %d",
		         id, len, where, value);
		break;
	case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
	case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
		FQI_WARN(SUBSYS, "socket %lu: handshake with %.*s failed: %s", id, len, where,
		         zmq_strerror(value));
		break;
	default:
		break;
	}
out:
	zmq_msg_close(&head);
	zmq_msg_close(&addr);
}

static void *mon_main(void *arg)
{
	zt_transport *zt = arg;
	void *ctl = zmq_socket(zt->ctx, ZMQ_PAIR);
	mon_entry *mons = NULL;
	zmq_pollitem_t *items = NULL;
	size_t n = 0, cap = 0;
	char name[64];
	bool run = true;

	snprintf(name, sizeof(name), "inproc://fq-zmon-ctl-%p", (void *)zt);
	if (ctl == NULL || zmq_connect(ctl, name) != 0)
		return NULL;
	while (run) {
		if (cap < n + 1) {
			cap = cap ? cap * 2 : 16;
			mons = realloc(mons, cap * sizeof(*mons));
			items = realloc(items, (cap + 1) * sizeof(*items));
			FQI_ASSERT(mons != NULL && items != NULL);
		}
		items[0] = (zmq_pollitem_t){.socket = ctl, .events = ZMQ_POLLIN};
		for (size_t i = 0; i < n; i++)
			items[i + 1] =
			    (zmq_pollitem_t){.socket = mons[i].pair, .events = ZMQ_POLLIN};
		if (zmq_poll(items, (int)n + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (size_t i = 0; i < n; i++) {
			if (items[i + 1].revents & ZMQ_POLLIN)
				mon_log(mons[i].pair, mons[i].id, mons[i].receives);
		}
		if (items[0].revents & ZMQ_POLLIN) {
			char cmd[32] = {0};
			int len = zmq_recv(ctl, cmd, sizeof(cmd) - 1, 0);
			unsigned long id;
			int receives = 0;

			if (len <= 0 || cmd[0] == 'Q') {
				run = false;
			} else if (cmd[0] == 'A' &&
			           sscanf(cmd + 1, "%lu %d", &id, &receives) == 2) {
				void *pair = zmq_socket(zt->ctx, ZMQ_PAIR);

				snprintf(name, sizeof(name), "inproc://fq-zmon-%p-%lu", (void *)zt,
				         id);
				if (pair != NULL && zmq_connect(pair, name) == 0)
					mons[n++] = (mon_entry){id, pair, receives != 0};
				else if (pair != NULL)
					zmq_close(pair);
			} else if (cmd[0] == 'R' && sscanf(cmd + 1, "%lu", &id) == 1) {
				for (size_t i = 0; i < n; i++) {
					if (mons[i].id == id) {
						zmq_close(mons[i].pair);
						mons[i] = mons[--n];
						break;
					}
				}
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		zmq_close(mons[i].pair);
	free(mons);
	free(items);
	zmq_close(ctl);
	return NULL;
}

static void mon_command(zt_transport *zt, char op, unsigned long id, bool receives)
{
	char cmd[32];
	int len = snprintf(cmd, sizeof(cmd), "%c%lu %d", op, id, receives ? 1 : 0);

	pthread_mutex_lock(&zt->mon_lock);
	zmq_send(zt->mon_ctl, cmd, (size_t)len, 0);
	pthread_mutex_unlock(&zt->mon_lock);
}

static int zt_init(fq_transport *t)
{
	zt_transport *zt = t->priv;
	char name[64];
	int rc, linger = 0;

	zt->pool = pool_new((size_t)t->opt[OPT_BUFFER_CACHE]);
	if (zt->pool == NULL)
		return FQ_ENOMEM;
	zt->ctx = zmq_ctx_new();
	if (zt->ctx == NULL) {
		pool_close(zt->pool);
		return fqi_syserr(errno);
	}
	if (zmq_ctx_set(zt->ctx, ZMQ_IO_THREADS, (int)t->opt[OPT_IO_THREADS]) != 0 ||
	    zmq_ctx_set(zt->ctx, ZMQ_MAX_SOCKETS,
	                (int)t->opt[OPT_MAX_SOCKETS] * ZMQ_SOCKETS_PER_SOCKET + 2) != 0 ||
	    zmq_ctx_set(zt->ctx, ZMQ_IPV6, (int)t->opt[OPT_IPV6]) != 0)
		goto fail;
	zt->mon_ctl = zmq_socket(zt->ctx, ZMQ_PAIR);
	snprintf(name, sizeof(name), "inproc://fq-zmon-ctl-%p", (void *)zt);
	if (zt->mon_ctl == NULL || zmq_bind(zt->mon_ctl, name) != 0)
		goto fail;
	zmq_setsockopt(zt->mon_ctl, ZMQ_LINGER, &linger, sizeof(linger));
	pthread_mutex_init(&zt->mon_lock, NULL);
	pthread_mutex_init(&zt->inproc_lock, NULL);
	rc = pthread_create(&zt->mon_thread, NULL, mon_main, zt);
	if (rc != 0) {
		pthread_mutex_destroy(&zt->mon_lock);
		pthread_mutex_destroy(&zt->inproc_lock);
		errno = rc;
		goto fail;
	}
	return 0;
fail:
	rc = zerr(errno);
	if (zt->mon_ctl != NULL)
		zmq_close(zt->mon_ctl);
	zmq_ctx_term(zt->ctx);
	pool_close(zt->pool);
	return rc;
}

static void zt_fini(fq_transport *t)
{
	zt_transport *zt = t->priv;

	mon_command(zt, 'Q', 0, false);
	pthread_join(zt->mon_thread, NULL);
	zmq_close(zt->mon_ctl);
	pthread_mutex_destroy(&zt->mon_lock);
	while (zt->inproc != NULL) {
		zt_inproc *e = zt->inproc;

		zt->inproc = e->next;
		free(e);
	}
	pthread_mutex_destroy(&zt->inproc_lock);
	while (zmq_ctx_term(zt->ctx) != 0 && errno == EINTR)
		;
	pool_close(zt->pool);
}

static int zt_probe(void)
{
	void *ctx = zmq_ctx_new();

	if (ctx == NULL)
		return FQ_EUNAVAIL;
	zmq_ctx_term(ctx);
	return 0;
}

/* ---- Messages --------------------------------------------------------------------------- */

static const fqi_msg_ops zt_msg_ops;

/*
 * Message wrappers are recycled through a small per-thread stack: a sender frees the wrapper
 * of every message it sends and allocates the next one on the same thread, a receiver does
 * the same with the messages it consumes, so the hot path never reaches malloc (fqi_tcache;
 * initial-exec TLS: a plain %fs-relative access, no __tls_get_addr call per message).
 */
static _Thread_local fqi_tcache wcache FQI_TLS_FAST;

static void msg_release(zt_msg *m)
{
	fqi_tcache_release(&wcache, m);
}

static zt_msg *msg_new(fq_transport *t)
{
	zt_msg *m = fqi_tcache_get(&wcache);

	if (m == NULL)
		m = malloc(sizeof(*m));

	if (m != NULL) {
		m->base.ops = &zt_msg_ops;
		m->base.t = t;
	}
	return m;
}

static void msg_sync(zt_msg *m)
{
	m->base.data = zmq_msg_data(&m->zm);
	m->base.size = zmq_msg_size(&m->zm);
}

static int zt_msg_alloc(fq_transport *t, size_t size, fq_msg **out)
{
	zt_msg *m = msg_new(t);
	pool_buf *b;

	if (m == NULL)
		return FQ_ENOMEM;
	b = pool_get(((zt_transport *)t->priv)->pool, size);
	if (b != NULL) {
		if (zmq_msg_init_data(&m->zm, (char *)b + POOL_HEADER, size, pool_put, b) != 0) {
			pool_put(NULL, b);
			msg_release(m);
			return FQ_ENOMEM;
		}
	} else if (zmq_msg_init_size(&m->zm, size) != 0) {
		msg_release(m);
		return FQ_ENOMEM;
	}
	msg_sync(m);
	*out = &m->base;
	return 0;
}

static int zt_msg_adopt(fq_transport *t, void *data, size_t size, fqi_free_fn free_fn, void *hint,
                        fq_msg **out)
{
	zt_msg *m = msg_new(t);

	if (m == NULL)
		return FQ_ENOMEM;
	/* libzmq's free function has the same signature; NULL means constant memory. */
	if (zmq_msg_init_data(&m->zm, data, size, free_fn, hint) != 0) {
		msg_release(m);
		return FQ_ENOMEM;
	}
	msg_sync(m);
	*out = &m->base;
	return 0;
}

static int zt_msg_copy(const fq_msg *src, fq_msg **out)
{
	zt_msg *from = (zt_msg *)src, *m = msg_new(src->t);

	if (m == NULL)
		return FQ_ENOMEM;
	zmq_msg_init(&m->zm);
	if (zmq_msg_copy(&m->zm, &from->zm) != 0) {
		zmq_msg_close(&m->zm);
		msg_release(m);
		return FQ_ENOMEM;
	}
	m->base.data = zmq_msg_data(&m->zm);
	m->base.size = src->size;
	*out = &m->base;
	return 0;
}

static void shrunk_free(void *data, void *hint)
{
	zmq_msg_t *orig = hint;

	FQI_UNUSED(data);
	zmq_msg_close(orig);
	free(orig);
}

/*
 * libzmq cannot shorten a message, so a shrunk message becomes a new frame over the same
 * bytes that keeps the original alive; small ones are simply copied.
 */
static int zt_msg_shrink(fq_msg *base, size_t size)
{
	zt_msg *m = (zt_msg *)base;
	zmq_msg_t fresh;

	if (size <= 256) {
		if (zmq_msg_init_size(&fresh, size) != 0)
			return FQ_ENOMEM;
		memcpy(zmq_msg_data(&fresh), base->data, size);
		zmq_msg_close(&m->zm);
		zmq_msg_init(&m->zm);
		zmq_msg_move(&m->zm, &fresh);
	} else {
		zmq_msg_t *orig = malloc(sizeof(*orig));

		if (orig == NULL)
			return FQ_ENOMEM;
		zmq_msg_init(orig);
		zmq_msg_move(orig, &m->zm);
		if (zmq_msg_init_data(&m->zm, zmq_msg_data(orig), size, shrunk_free, orig) != 0) {
			zmq_msg_move(&m->zm, orig);
			free(orig);
			return FQ_ENOMEM;
		}
	}
	msg_sync(m);
	return 0;
}

static void zt_msg_free(fq_msg *base)
{
	zt_msg *m = (zt_msg *)base;

	zmq_msg_close(&m->zm);
	msg_release(m);
}

/* ---- Regions: process-local memory whose messages ack when libzmq lets them go ---------- */

typedef struct zt_region_ref {
	fq_region *r;
	fq_region_ack ack;
} zt_region_ref;

static int zt_region_open(fq_region *r)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t size = (r->size + page - 1) / page * page;

	r->data = aligned_alloc(page, size);
	return r->data ? 0 : FQ_ENOMEM;
}

static void zt_region_close(fq_region *r)
{
	free(r->data);
}

static void region_msg_free(void *data, void *hint)
{
	zt_region_ref *ref = hint;

	FQI_UNUSED(data);
	if (ref->r->ack_fn != NULL)
		ref->r->ack_fn(&ref->ack, 1, ref->r->arg);
	fqi_region_unref(ref->r);
	free(ref);
}

static int zt_region_msg(fq_region *r, void *data, size_t size, void *hint, fq_msg **out)
{
	zt_region_ref *ref = malloc(sizeof(*ref));
	int rc;

	if (ref == NULL)
		return FQ_ENOMEM;
	*ref = (zt_region_ref){r, {data, size, hint}};
	fqi_region_ref(r);
	rc = zt_msg_adopt(r->t, data, size, region_msg_free, ref, out);
	if (rc != 0) {
		fqi_region_unref(r);
		free(ref);
	}
	return rc;
}

/* ---- Sockets: helpers ------------------------------------------------------------------- */

static const int ztypes[] = {
    [FQ_PAIR] = ZMQ_PAIR, [FQ_PUB] = ZMQ_PUB,   [FQ_SUB] = ZMQ_SUB,   [FQ_REQ] = ZMQ_REQ,
    [FQ_REP] = ZMQ_REP,   [FQ_PUSH] = ZMQ_PUSH, [FQ_PULL] = ZMQ_PULL,
};

static bool can_send(fq_socket_type type)
{
	return type != FQ_PULL && type != FQ_SUB;
}

static bool can_recv(fq_socket_type type)
{
	return type != FQ_PUSH && type != FQ_PUB;
}

static void fd_signal(int fd)
{
	uint64_t one = 1;

	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void fd_drain(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

/* Ready events of the libzmq socket; caller holds z->lock. Also re-arms ZMQ_FD. */
static int zevents_locked(zt_socket *z)
{
	int ev = 0, out = 0;
	size_t len = sizeof(ev);

	if (zmq_getsockopt(z->zs, ZMQ_EVENTS, &ev, &len) != 0)
		return zerr(errno);
	if (ev & ZMQ_POLLIN)
		out |= FQ_POLLIN;
	if (ev & ZMQ_POLLOUT)
		out |= FQ_POLLOUT;
	if (z->pending != NULL)
		out |= FQ_POLLIN;
	/* Over the byte limit the socket is not writable, whatever libzmq says. The drain keeps
	 * the level-triggered fq_socket_fd from spinning on an old "below the limit" edge. */
	if (atomic_load(&z->acct->limit) > 0) {
		fd_drain(z->acct->efd);
		if (atomic_load(&z->acct->bytes) >= atomic_load(&z->acct->limit))
			out &= ~FQ_POLLOUT;
	}
	return out;
}

/* After any call into the socket, under z->lock: pass readiness on to waiting threads. */
static void after_op(zt_socket *z)
{
	int in = atomic_load_explicit(&z->waiters_in, memory_order_relaxed);
	int out = atomic_load_explicit(&z->waiters_out, memory_order_relaxed);
	int ev;

	if (FQI_LIKELY(in == 0 && out == 0))
		return;
	ev = zevents_locked(z);
	if (ev > 0 && (((ev & FQ_POLLIN) && in) || ((ev & FQ_POLLOUT) && out)))
		fd_signal(z->kick_fd);
}

/*
 * Sleep until `dir` may be possible, the deadline passes (FQ_ETIMEDOUT) or the socket is
 * interrupted (FQ_EINTR). 0 means: try again. Called without z->lock, by a caller that
 * counted itself as a waiter (register_wait) under the lock of its failed attempt, so any
 * later call into the socket by another thread sees it and kicks it. Uncounts the caller
 * on return.
 */
static int zwait(fq_socket *s, int dir, int64_t deadline)
{
	zt_socket *z = s->priv;
	_Atomic int *waiters = dir == FQ_POLLIN ? &z->waiters_in : &z->waiters_out;
	struct pollfd pfd[4];
	nfds_t n = 3;
	int ev, left, rc = 0;

	/* A failed DONTWAIT call lets libzmq skip its command queue (throttling), which would
	 * leave ZMQ_FD readable and this loop spinning; ZMQ_EVENTS processes it for real. */
	pthread_mutex_lock(&z->lock);
	ev = zevents_locked(z);
	pthread_mutex_unlock(&z->lock);
	if (ev < 0 || (ev & dir)) {
		rc = ev < 0 ? ev : 0;
		goto out;
	}
	if (atomic_load(&z->interrupted)) {
		rc = FQ_EINTR;
		goto out;
	}
	left = fqi_deadline_remaining(deadline);
	if (left == 0) {
		rc = FQ_ETIMEDOUT;
		goto out;
	}
	pfd[0] = (struct pollfd){.fd = z->zfd, .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = z->kick_fd, .events = POLLIN};
	pfd[2] = (struct pollfd){.fd = z->intr_fd, .events = POLLIN};
	if (dir == FQ_POLLOUT && atomic_load(&z->acct->limit) > 0) {
		pfd[3] = (struct pollfd){.fd = z->acct->efd, .events = POLLIN};
		n = 4;
	}
	if (poll(pfd, n, left) < 0 && errno != EINTR) {
		rc = fqi_syserr(errno);
		goto out;
	}
	if (pfd[1].revents & POLLIN)
		fd_drain(z->kick_fd);
	if (n == 4 && (pfd[3].revents & POLLIN))
		fd_drain(z->acct->efd);
	if (atomic_load(&z->interrupted))
		rc = FQ_EINTR;
out:
	atomic_fetch_sub(waiters, 1);
	return rc;
}

#define RETRY 1 /* from settle(): try the operation again; every real result is <= 0 */

/* Under z->lock, right after a failed attempt: count the caller as a waiter if it waits. */
static void register_wait(zt_socket *z, int rc, int flags, int dir)
{
	if (rc == FQ_EAGAIN && !(flags & FQ_DONTWAIT))
		atomic_fetch_add(dir == FQ_POLLIN ? &z->waiters_in : &z->waiters_out, 1);
}

/*
 * After one attempt that gave `rc`: the result to return, or RETRY once the direction may be
 * possible again. The deadline starts at the first wait (-2: not started).
 */
static int settle(fq_socket *s, int rc, int flags, int dir, int64_t *deadline)
{
	fqi_sockopt_id timeout = dir == FQ_POLLIN ? FQI_SO_RCV_TIMEOUT : FQI_SO_SND_TIMEOUT;

	if (rc != FQ_EAGAIN || (flags & FQ_DONTWAIT))
		return rc;
	if (*deadline == -2)
		*deadline = fqi_deadline(atomic_load(&s->opt[timeout]));
	rc = zwait(s, dir, *deadline);
	return rc != 0 ? rc : RETRY;
}

/* ---- Sending ---------------------------------------------------------------------------- */

static void acct_unref(zt_acct *a)
{
	if (atomic_fetch_sub(&a->refs, 1) == 1) {
		close(a->efd);
		free(a);
	}
}

static void tracked_free(void *data, void *hint)
{
	zt_tracked *tr = hint;
	zt_acct *a = tr->acct;

	FQI_UNUSED(data);
	if (!tr->cancelled) {
		int64_t before = atomic_fetch_sub(&a->bytes, (int64_t)tr->size);
		int64_t limit = atomic_load(&a->limit);

		if (before >= limit && before - (int64_t)tr->size < limit)
			fd_signal(a->efd);
	}
	zmq_msg_close(&tr->orig);
	free(tr);
	acct_unref(a);
}

/* Undo track() for parts [0, n): the originals go back, the wrappers' release does not count. */
static void untrack(fq_msg **parts, zt_tracked **recs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		zt_msg *m = (zt_msg *)parts[i];
		zmq_msg_t wrapper;

		recs[i]->cancelled = true;
		zmq_msg_init(&wrapper);
		zmq_msg_move(&wrapper, &m->zm);
		zmq_msg_move(&m->zm, &recs[i]->orig);
		zmq_msg_close(&wrapper); /* runs tracked_free: frees the record only */
		msg_sync(m);
	}
}

/* Re-wrap every part so that libzmq's release of it is counted against snd_hwm_bytes. */
static int track(zt_socket *z, fq_msg **parts, zt_tracked **recs, size_t n, size_t *total)
{
	*total = 0;
	for (size_t i = 0; i < n; i++) {
		zt_msg *m = (zt_msg *)parts[i];
		zt_tracked *tr = malloc(sizeof(*tr));

		if (tr == NULL) {
			untrack(parts, recs, i);
			return FQ_ENOMEM;
		}
		tr->acct = z->acct;
		tr->size = m->base.size;
		tr->cancelled = false;
		zmq_msg_init(&tr->orig);
		zmq_msg_move(&tr->orig, &m->zm);
		atomic_fetch_add(&z->acct->refs, 1);
		/* zmq_msg_init_data with a non-NULL buffer only fails on allocation. */
		if (zmq_msg_init_data(&m->zm, zmq_msg_data(&tr->orig), tr->size, tracked_free,
		                      tr) != 0) {
			zmq_msg_move(&m->zm, &tr->orig);
			msg_sync(m);
			acct_unref(z->acct);
			free(tr);
			untrack(parts, recs, i);
			return FQ_ENOMEM;
		}
		recs[i] = tr;
		*total += tr->size;
	}
	return 0;
}

static int try_send(fq_socket *s, fq_msg **parts, size_t n)
{
	zt_socket *z = s->priv;

	for (size_t i = 0; i < n; i++) {
		zt_msg *m = (zt_msg *)parts[i];
		int more = i + 1 < n ? ZMQ_SNDMORE : 0;

		if (zmq_msg_send(&m->zm, z->zs, ZMQ_DONTWAIT | more) < 0) {
			int e = errno;

			if (i == 0)
				return e == EAGAIN ? FQ_EAGAIN : zerr(e);
			/* libzmq takes the rest of a multipart message once it took the first
			 * frame; it refuses only while the context is torn down under us. The
			 * vector is lost then: drop the rest, and the caller owns nothing. */
			while (zmq_msg_send(&m->zm, z->zs, more) < 0) {
				if (errno == EINTR)
					continue;
				e = errno;
				FQI_ERROR(SUBSYS,
				          "libzmq refused part %zu of %zu (%s): vector dropped",
				          i + 1, n, zmq_strerror(e));
				for (size_t k = 0; k < n; k++) {
					if (k >= i)
						zt_msg_free(parts[k]);
					else
						msg_release((zt_msg *)parts[k]);
					parts[k] = NULL;
				}
				return zerr(e);
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		msg_release((zt_msg *)parts[i]);
		parts[i] = NULL;
	}
	return 0;
}

/* Send with snd_hwm_bytes in force; caller holds z->lock. */
static int try_send_counted(fq_socket *s, fq_msg **parts, size_t n, int64_t limit)
{
	zt_socket *z = s->priv;
	zt_tracked *buf[16], **recs = buf;
	size_t total;
	int rc;

	if (atomic_load(&z->acct->bytes) >= limit)
		return FQ_EAGAIN;
	if (n > FQI_ARRAY_LEN(buf) && (recs = malloc(n * sizeof(*recs))) == NULL)
		return FQ_ENOMEM;
	rc = track(z, parts, recs, n, &total);
	if (rc == 0) {
		/* Count before sending: libzmq may release the frames before we return. */
		atomic_fetch_add(&z->acct->bytes, (int64_t)total);
		rc = try_send(s, parts, n);
		/* parts[0] == NULL: a dropped vector, whose frames uncount themselves. */
		if (rc != 0 && parts[0] != NULL) {
			atomic_fetch_sub(&z->acct->bytes, (int64_t)total);
			untrack(parts, recs, n);
		}
	}
	if (recs != buf)
		free(recs);
	return rc;
}

static int zt_send(fq_socket *s, fq_msg **parts, size_t n, int flags)
{
	zt_socket *z = s->priv;
	int64_t deadline = -2;

	if (FQI_UNLIKELY(!can_send(s->type)))
		return FQ_ENOTSUP;
	for (;;) {
		int64_t limit = atomic_load_explicit(&z->acct->limit, memory_order_relaxed);
		int rc;

		if (FQI_UNLIKELY(atomic_load_explicit(&z->interrupted, memory_order_relaxed)))
			return FQ_EINTR;
		pthread_mutex_lock(&z->lock);
		if (limit > 0)
			rc = try_send_counted(s, parts, n, limit);
		else
			rc = try_send(s, parts, n);
		after_op(z);
		register_wait(z, rc, flags, FQ_POLLOUT);
		pthread_mutex_unlock(&z->lock);
		rc = settle(s, rc, flags, FQ_POLLOUT, &deadline);
		if (rc != RETRY)
			return rc;
	}
}

/* ---- Receiving -------------------------------------------------------------------------- */

/* Receive the remaining frames of a multipart message; they are all there already. */
static int recv_rest(zt_socket *z, zt_msg *first, fq_parts **out)
{
	zt_msg *stack[16], **msgs = stack;
	size_t n = 1, cap = FQI_ARRAY_LEN(stack);
	int more = 1, rc = 0;
	size_t len = sizeof(more);

	msgs[0] = first;
	while (rc == 0) {
		zt_msg *m;

		if (!zmq_msg_more(&msgs[n - 1]->zm))
			break;
		if (n == cap) {
			zt_msg **grown = malloc(2 * cap * sizeof(*grown));

			if (grown == NULL) {
				rc = FQ_ENOMEM;
				break;
			}
			memcpy(grown, msgs, n * sizeof(*grown));
			if (msgs != stack)
				free(msgs);
			msgs = grown;
			cap *= 2;
		}
		m = msg_new(first->base.t);
		if (m == NULL) {
			rc = FQ_ENOMEM;
			break;
		}
		zmq_msg_init(&m->zm);
		while (zmq_msg_recv(&m->zm, z->zs, 0) < 0) {
			if (errno != EINTR)
				fqi_panic(__FILE__, __LINE__, "libzmq lost a later part");
		}
		msg_sync(m);
		msgs[n++] = m;
	}
	if (rc == 0)
		rc = fqi_parts_new(n, out);
	if (rc == 0) {
		for (size_t i = 0; i < n; i++) {
			(*out)->msgs[i] = &msgs[i]->base;
			(*out)->bytes += msgs[i]->base.size;
		}
	} else {
		/* Out of memory in the middle: drain the rest so the socket stays in step. */
		zmq_msg_t skip;

		while (zmq_getsockopt(z->zs, ZMQ_RCVMORE, &more, &len) == 0 && more) {
			zmq_msg_init(&skip);
			zmq_msg_recv(&skip, z->zs, 0);
			zmq_msg_close(&skip);
		}
		for (size_t i = 0; i < n; i++)
			zt_msg_free(&msgs[i]->base);
		FQI_ERROR(SUBSYS, "out of memory receiving a vector of parts: vector dropped");
	}
	if (msgs != stack)
		free(msgs);
	return rc;
}

/*
 * One attempt under z->lock. want_vector: return a vector (recvv); otherwise a single
 * message, and a vector of several parts is parked in z->pending (FQ_EPARTS).
 */
static int try_recv(fq_socket *s, bool want_vector, fq_msg **msg_out, fq_parts **parts_out)
{
	zt_socket *z = s->priv;
	zt_msg *m;
	int rc;

	if (z->pending != NULL) {
		if (want_vector) {
			*parts_out = z->pending;
			z->pending = NULL;
			return 0;
		}
		return FQ_EPARTS;
	}
	m = msg_new(s->t);
	if (m == NULL)
		return FQ_ENOMEM;
	zmq_msg_init(&m->zm);
	if (zmq_msg_recv(&m->zm, z->zs, ZMQ_DONTWAIT) < 0) {
		int e = errno;

		zmq_msg_close(&m->zm);
		msg_release(m);
		return e == EAGAIN ? FQ_EAGAIN : zerr(e);
	}
	msg_sync(m);
	if (zmq_msg_more(&m->zm)) {
		fq_parts *p;

		rc = recv_rest(z, m, &p);
		if (rc != 0)
			return rc;
		if (want_vector) {
			*parts_out = p;
			return 0;
		}
		z->pending = p;
		return FQ_EPARTS;
	}
	if (want_vector) {
		rc = fqi_parts_new(1, parts_out);
		if (rc != 0) {
			zt_msg_free(&m->base);
			return rc;
		}
		(*parts_out)->msgs[0] = &m->base;
		(*parts_out)->bytes = m->base.size;
		return 0;
	}
	*msg_out = &m->base;
	return 0;
}

static int recv_common(fq_socket *s, bool want_vector, fq_msg **msg_out, fq_parts **parts_out,
                       int flags)
{
	zt_socket *z = s->priv;
	int64_t deadline = -2;

	if (FQI_UNLIKELY(!can_recv(s->type)))
		return FQ_ENOTSUP;
	for (;;) {
		int rc;

		if (FQI_UNLIKELY(atomic_load_explicit(&z->interrupted, memory_order_relaxed)))
			return FQ_EINTR;
		pthread_mutex_lock(&z->lock);
		rc = try_recv(s, want_vector, msg_out, parts_out);
		after_op(z);
		register_wait(z, rc, flags, FQ_POLLIN);
		pthread_mutex_unlock(&z->lock);
		rc = settle(s, rc, flags, FQ_POLLIN, &deadline);
		if (rc != RETRY)
			return rc;
	}
}

static int zt_recv(fq_socket *s, fq_msg **out, int flags)
{
	return recv_common(s, false, out, NULL, flags);
}

static int zt_recvv(fq_socket *s, fq_parts **out, int flags)
{
	return recv_common(s, true, NULL, out, flags);
}

/* ---- Socket lifecycle and options ------------------------------------------------------- */

static int set_int(zt_socket *z, int zopt, int value)
{
	int rc;

	pthread_mutex_lock(&z->lock);
	rc = zmq_setsockopt(z->zs, zopt, &value, sizeof(value));
	pthread_mutex_unlock(&z->lock);
	return rc == 0 ? 0 : zerr(errno);
}

static int set_bytes(zt_socket *z, int zopt, const void *value, size_t len)
{
	int rc;

	pthread_mutex_lock(&z->lock);
	rc = zmq_setsockopt(z->zs, zopt, value, len);
	pthread_mutex_unlock(&z->lock);
	return rc == 0 ? 0 : zerr(errno);
}

static int clamp_int(int64_t v)
{
	return v > INT32_MAX ? INT32_MAX : (int)v;
}

static int zt_setopt(fq_socket *s, fqi_sockopt_id id, const char *text)
{
	zt_socket *z = s->priv;
	int64_t v = atomic_load(&s->opt[id]);

	switch (id) {
	case FQI_SO_SND_HWM:
		return set_int(z, ZMQ_SNDHWM, clamp_int(v));
	case FQI_SO_RCV_HWM:
		return set_int(z, ZMQ_RCVHWM, clamp_int(v));
	case FQI_SO_SND_HWM_BYTES:
		atomic_store(&z->acct->limit, v);
		fd_signal(z->acct->efd); /* a raised limit may unblock a sender */
		return 0;
	case FQI_SO_RCV_HWM_BYTES:
		if (v != 0) {
			FQI_WARN(SUBSYS,
			         "rcv_hwm_bytes is not supported: libzmq bounds its receive "
			         "queue in messages only (use rcv_hwm)");
			return FQ_ENOTSUP;
		}
		return 0;
	case FQI_SO_SND_TIMEOUT:
	case FQI_SO_RCV_TIMEOUT:
		return 0; /* read at each blocking call */
	case FQI_SO_LINGER:
		return set_int(z, ZMQ_LINGER, clamp_int(v));
	case FQI_SO_MAX_MSG_SIZE: {
		/* libzmq checks a frame's announced size before allocating and drops the peer. */
		int64_t max = v == 0 ? -1 : v;

		return set_bytes(z, ZMQ_MAXMSGSIZE, &max, sizeof(max));
	}
	case FQI_SO_RECONNECT_IVL:
		return set_int(z, ZMQ_RECONNECT_IVL, clamp_int(v));
	case FQI_SO_RECONNECT_IVL_MAX:
		return set_int(z, ZMQ_RECONNECT_IVL_MAX, clamp_int(v));
	case FQI_SO_SND_KERNEL_SIZE:
		return set_int(z, ZMQ_SNDBUF, v == 0 ? -1 : clamp_int(v));
	case FQI_SO_RCV_KERNEL_SIZE:
		return set_int(z, ZMQ_RCVBUF, v == 0 ? -1 : clamp_int(v));
	case FQI_SO_SUBSCRIBE:
	case FQI_SO_UNSUBSCRIBE:
		if (text == NULL)
			return 0;
		if (s->type != FQ_SUB)
			return FQ_ENOTSUP;
		return set_bytes(z, id == FQI_SO_SUBSCRIBE ? ZMQ_SUBSCRIBE : ZMQ_UNSUBSCRIBE, text,
		                 strlen(text));
	default:
		return FQ_ENOENT;
	}
}

static void socket_release(zt_socket *z)
{
	if (z->ep_fd >= 0)
		close(z->ep_fd);
	if (z->kick_fd >= 0)
		close(z->kick_fd);
	if (z->intr_fd >= 0)
		close(z->intr_fd);
	if (z->zs != NULL)
		zmq_close(z->zs);
	if (z->acct != NULL)
		acct_unref(z->acct);
	pthread_mutex_destroy(&z->lock);
}

static int zt_open(fq_socket *s)
{
	zt_transport *zt = s->t->priv;
	zt_socket *z = s->priv;
	size_t len = sizeof(z->zfd);
	struct epoll_event ev = {.events = EPOLLIN};
	char mon_name[64];
	int zero = 0;

	pthread_mutex_init(&z->lock, NULL);
	z->kick_fd = z->intr_fd = z->ep_fd = -1;
	z->zs = zmq_socket(zt->ctx, ztypes[s->type]);
	if (z->zs == NULL) {
		int rc = zerr(errno);

		socket_release(z);
		return rc == FQ_EADDRINVAL ? FQ_EINVAL : rc;
	}
	/* Our own loops do the waiting; libzmq never blocks. */
	zmq_setsockopt(z->zs, ZMQ_SNDTIMEO, &zero, sizeof(zero));
	zmq_setsockopt(z->zs, ZMQ_RCVTIMEO, &zero, sizeof(zero));
	if (zmq_getsockopt(z->zs, ZMQ_FD, &z->zfd, &len) != 0)
		goto sys_fail;
	z->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	z->intr_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	z->ep_fd = epoll_create1(EPOLL_CLOEXEC);
	if (z->kick_fd < 0 || z->intr_fd < 0 || z->ep_fd < 0)
		goto sys_fail;
	ev.data.fd = z->zfd;
	if (epoll_ctl(z->ep_fd, EPOLL_CTL_ADD, z->zfd, &ev) != 0)
		goto sys_fail;
	ev.data.fd = z->intr_fd;
	if (epoll_ctl(z->ep_fd, EPOLL_CTL_ADD, z->intr_fd, &ev) != 0)
		goto sys_fail;
	z->acct = calloc(1, sizeof(*z->acct));
	if (z->acct == NULL) {
		socket_release(z);
		return FQ_ENOMEM;
	}
	atomic_init(&z->acct->refs, 1);
	z->acct->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ev.data.fd = z->acct->efd;
	if (z->acct->efd < 0 || epoll_ctl(z->ep_fd, EPOLL_CTL_ADD, z->acct->efd, &ev) != 0)
		goto sys_fail;
	z->mon_id = atomic_fetch_add(&zt->mon_ids, 1) + 1;
	snprintf(mon_name, sizeof(mon_name), "inproc://fq-zmon-%p-%lu", (void *)zt, z->mon_id);
	if (zmq_socket_monitor(z->zs, mon_name, MON_EVENTS) == 0)
		mon_command(zt, 'A', z->mon_id, can_recv(s->type));
	else
		z->mon_id = 0;
	return 0;
sys_fail : {
	int rc = fqi_syserr(errno);

	socket_release(z);
	return rc;
}
}

/* The binder entry of `name` (at most one: libzmq refuses a second live binder). */
static zt_inproc *inproc_binder(zt_transport *zt, const char *name)
{
	for (zt_inproc *e = zt->inproc; e != NULL; e = e->next) {
		if (e->is_bind && strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

static void inproc_record(fq_socket *s, const char *name, bool is_bind)
{
	zt_transport *zt = s->t->priv;
	char url[FQI_URL_MAX];
	zt_inproc *b, *e = NULL;

	pthread_mutex_lock(&zt->inproc_lock);
	b = inproc_binder(zt, name);
	if (b == NULL || !is_bind) {
		e = calloc(1, sizeof(*e) + strlen(name) + 1);
		if (e == NULL) {
			pthread_mutex_unlock(&zt->inproc_lock);
			FQI_WARN(SUBSYS,
			         "out of memory: inproc://%s will not re-attach after a "
			         "restart of its peer",
			         name);
			return;
		}
		strcpy(e->name, name);
		e->s = s;
		e->is_bind = is_bind;
		e->next = zt->inproc;
		zt->inproc = e;
	}
	if (!is_bind) {
		/* Attached to the current binder, or pending until the next one binds. */
		e->gen = b == NULL ? 1 : (b->s != NULL ? b->gen : b->gen + 1);
		pthread_mutex_unlock(&zt->inproc_lock);
		return;
	}
	if (b != NULL) {
		b->s = s;
		b->gen++;
	} else {
		b = e;
		b->gen = 1;
	}
	/* Connections attached to an earlier binder of this name lost their peer. */
	snprintf(url, sizeof(url), "inproc://%s", name);
	for (zt_inproc *c = zt->inproc; c != NULL; c = c->next) {
		zt_socket *cz;

		if (c->is_bind || c->gen >= b->gen || c->s == s || strcmp(c->name, name) != 0)
			continue;
		cz = c->s->priv;
		pthread_mutex_lock(&cz->lock);
		if (zmq_connect(cz->zs, url) != 0)
			FQI_WARN(SUBSYS, "re-attaching a connection to %s failed: %s", url,
			         zmq_strerror(errno));
		pthread_mutex_unlock(&cz->lock);
		c->gen = b->gen;
	}
	pthread_mutex_unlock(&zt->inproc_lock);
}

/* A closing socket: its connections go; a binder entry stays, unowned, to keep its gen. */
static void inproc_forget(fq_socket *s)
{
	zt_transport *zt = s->t->priv;

	pthread_mutex_lock(&zt->inproc_lock);
	for (zt_inproc **p = &zt->inproc; *p != NULL;) {
		zt_inproc *e = *p;

		if (e->s == s && e->is_bind) {
			e->s = NULL;
		} else if (e->s == s) {
			*p = e->next;
			free(e);
			continue;
		}
		p = &e->next;
	}
	pthread_mutex_unlock(&zt->inproc_lock);
}

static void remember_ipc_file(zt_socket *z, const char *path)
{
	struct zt_ipc_file *grown;
	struct stat st;
	char *copy;

	if (stat(path, &st) != 0 || (copy = strdup(path)) == NULL)
		return;
	grown = realloc(z->ipc_files, (z->n_ipc_files + 1) * sizeof(*grown));
	if (grown == NULL) {
		free(copy);
		return;
	}
	z->ipc_files = grown;
	z->ipc_files[z->n_ipc_files++] = (struct zt_ipc_file){copy, st.st_dev, st.st_ino};
}

static void remove_ipc_files(zt_socket *z)
{
	for (size_t i = 0; i < z->n_ipc_files; i++) {
		struct zt_ipc_file *f = &z->ipc_files[i];
		struct stat st;

		if (stat(f->path, &st) == 0 && st.st_dev == f->dev && st.st_ino == f->ino)
			unlink(f->path);
		free(f->path);
	}
	free(z->ipc_files);
	z->ipc_files = NULL;
	z->n_ipc_files = 0;
}

static void zt_close(fq_socket *s)
{
	zt_socket *z = s->priv;

	if (z->mon_id != 0) {
		zmq_socket_monitor(z->zs, NULL, 0);
		mon_command(s->t->priv, 'R', z->mon_id, false);
	}
	if (z->pending != NULL)
		fq_parts_free(z->pending);
	inproc_forget(s);
	remove_ipc_files(z);
	socket_release(z);
}

static int zt_attach(fq_socket *s, const fqi_url *url, char *resolved, bool bind)
{
	zt_socket *z = s->priv;
	size_t len = FQI_URL_MAX;
	int rc;

	pthread_mutex_lock(&z->lock);
	rc = bind ? zmq_bind(z->zs, url->text) : zmq_connect(z->zs, url->text);
	if (rc != 0) {
		int e = errno;

		pthread_mutex_unlock(&z->lock);
		FQI_WARN(SUBSYS, "%s %s failed: %s", bind ? "bind" : "connect", url->text,
		         zmq_strerror(e));
		return zerr(e);
	}
	if (bind && zmq_getsockopt(z->zs, ZMQ_LAST_ENDPOINT, resolved, &len) != 0)
		resolved[0] = '\0';
	if (bind && strncmp(resolved, "ipc://", 6) == 0 && resolved[6] != '@')
		remember_ipc_file(z, resolved + 6);
	pthread_mutex_unlock(&z->lock);
	if (strcmp(url->scheme, "inproc") == 0)
		inproc_record(s, url->rest, bind);
	return 0;
}

static int zt_bind(fq_socket *s, const fqi_url *url, char *resolved)
{
	return zt_attach(s, url, resolved, true);
}

static int zt_connect(fq_socket *s, const fqi_url *url, char *resolved)
{
	return zt_attach(s, url, resolved, false);
}

static int zt_events(fq_socket *s)
{
	zt_socket *z = s->priv;
	int ev;

	if (atomic_load(&z->interrupted))
		return FQ_EINTR;
	pthread_mutex_lock(&z->lock);
	ev = zevents_locked(z);
	pthread_mutex_unlock(&z->lock);
	if (ev > 0 && !can_recv(s->type))
		ev &= ~FQ_POLLIN;
	if (ev > 0 && !can_send(s->type))
		ev &= ~FQ_POLLOUT;
	return ev;
}

static int zt_fd(fq_socket *s, int *fd)
{
	zt_socket *z = s->priv;

	*fd = z->ep_fd;
	return 0;
}

static void zt_interrupt(fq_socket *s, bool on)
{
	zt_socket *z = s->priv;

	atomic_store(&z->interrupted, on);
	if (on)
		fd_signal(z->intr_fd);
	else
		fd_drain(z->intr_fd);
}

/* ---- Descriptor ------------------------------------------------------------------------- */

static const fqi_transport_ops zt_transport_ops = {
    .size = sizeof(fqi_transport_ops),
    .priv_size = sizeof(zt_transport),
    .init = zt_init,
    .fini = zt_fini,
    .probe = zt_probe,
    .counter = fqi_no_counter,
};

static const fqi_msg_ops zt_msg_ops = {
    .size = sizeof(fqi_msg_ops),
    .alloc = zt_msg_alloc,
    .adopt = zt_msg_adopt,
    .copy = zt_msg_copy,
    .shrink = zt_msg_shrink,
    .free = zt_msg_free,
};

static const fqi_socket_ops zt_socket_ops = {
    .size = sizeof(fqi_socket_ops),
    .priv_size = sizeof(zt_socket),
    .open = zt_open,
    .close = zt_close,
    .setopt = zt_setopt,
    .bind = zt_bind,
    .connect = zt_connect,
    .send = zt_send,
    .recv = zt_recv,
    .recvv = zt_recvv,
    .events = zt_events,
    .fd = zt_fd,
    .interrupt = zt_interrupt,
};

static const fqi_region_ops zt_region_ops = {
    .size = sizeof(fqi_region_ops),
    .priv_size = 0,
    .open = zt_region_open,
    .close = zt_region_close,
    .msg = zt_region_msg,
};

const fqi_transport_desc fqi_zeromq_transport = {
    .name = "zeromq",
    .schemes = "tcp,ipc,inproc",
    .caps = FQI_CAP_ZERO_COPY | FQI_CAP_REGIONS | FQI_CAP_CROSS_HOST | FQI_CAP_POLL_FD,
    .options = zmq_options,
    .option_count = OPT_COUNT,
    .transport_ops = &zt_transport_ops,
    .msg_ops = &zt_msg_ops,
    .socket_ops = &zt_socket_ops,
    .region_ops = &zt_region_ops,
};
