/*
 * nanomsg transport: libnanomsg sockets, wire-compatible with nanomsg and NNG peers (the SP
 * protocols push0/pull0, pub0/sub0, req0/rep0, pair0 over tcp://, ipc:// and inproc://).
 *
 * A single fabriq message is one SP message; a vector of parts is one SP message with the
 * header of nm_wire.h in front, gathered by nn_sendmsg, so it stays atomic.
 *
 * Messages: fq_msg_alloc makes an nn_allocmsg chunk, sent without a copy (nn_send with
 * NN_MSG) when the message is its chunk's only user; received messages are the chunks
 * libnanomsg read into, and the parts of a received vector point into their one chunk (no
 * copy on receive). Copies (fq_msg_copy) share the memory through a reference count at the
 * message that owns it (the root). Adopted memory, shared memory and vectors are copied once,
 * by libnanomsg, when sent.
 *
 * Thread-safety: libnanomsg sockets are thread-safe, and every send or receive is one call
 * into them with NN_DONTWAIT. A caller that has to wait sleeps in poll() on libnanomsg's
 * NN_RCVFD / NN_SNDFD (levels: readable while a message can be received / sent) and the
 * socket's interrupt eventfd, then tries again. The socket's mutex guards only what fabriq
 * adds: a vector that fq_recv left for fq_recvv, the REQ/REP turn, the SUB prefix list.
 */
#include "core/core.h"
#include "core/transport.h"
#include "transport/nanomsg/nm_wire.h"

#include <arpa/inet.h>
#include <nanomsg/nn.h>
#include <nanomsg/pair.h>
#include <nanomsg/pipeline.h>
#include <nanomsg/pubsub.h>
#include <nanomsg/reqrep.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUBSYS "nanomsg"

/*
 * libnanomsg's nn_recv returns the size of a message as an int. Its chunk knows the real
 * size: nn_chunk_size is exported by the library (though not declared in its headers), and
 * used here when present, so messages of 2 GiB and more keep their size. Without it, sizes
 * are taken modulo 2^32 (right up to 4 GiB - 1).
 */
extern size_t nn_chunk_size(void *p) __attribute__((weak));

/* ---- Errors ----------------------------------------------------------------------------- */

static int nerr(int e)
{
	switch (e) {
	case EAGAIN:
		return FQ_EAGAIN;
	case EFSM:
		return FQ_ESTATE;
	case ETERM:
	case EBADF:
		return FQ_ECLOSED;
	case EADDRINUSE:
		return FQ_EADDRINUSE;
	case EINVAL:
	case ENAMETOOLONG:
	case EPROTONOSUPPORT:
	case ENODEV:
	case EADDRNOTAVAIL:
		return FQ_EADDRINVAL;
	case EMSGSIZE:
		return FQ_EMSGSIZE;
	default:
		return fqi_syserr(e);
	}
}

/* ---- Messages --------------------------------------------------------------------------- */

/*
 * A message, or the holder of a received vector's chunk. The memory belongs to the root: the
 * message itself, or the one it was copied from (or the vector's holder). The root counts its
 * users and outlives its own fq_msg_free while copies remain.
 */
typedef struct nm_msg {
	fq_msg base;
	struct nm_msg *root;
	_Atomic long refs;   /* at the root: users of the memory */
	void *chunk;         /* at the root: the libnanomsg chunk, or NULL */
	size_t chunk_size;   /* its size */
	fqi_free_fn free_fn; /* at the root: adopted memory's release */
	void *hint;
	void *mem;     /* at the root: the memory free_fn gets */
	bool in_block; /* a received vector's holder or part: one block, freed with the holder */
} nm_msg;

static const fqi_msg_ops nm_msg_ops;

/*
 * Message records are recycled per thread (fqi_tcache), so a small message costs
 * libnanomsg's chunk and no second malloc/free. A thread's cache is freed when it exits.
 */
static _Thread_local fqi_tcache scache FQI_TLS_FAST;

static void shell_free(nm_msg *m)
{
	fqi_tcache_release(&scache, m);
}

static nm_msg *msg_shell(fq_transport *t, void *data, size_t size)
{
	nm_msg *m = fqi_tcache_get(&scache);

	if (m == NULL && (m = malloc(sizeof(*m))) == NULL)
		return NULL;
	m->base = (fq_msg){.ops = &nm_msg_ops, .t = t, .data = data, .size = size};
	m->root = m;
	atomic_init(&m->refs, 1);
	m->chunk = NULL;
	m->chunk_size = 0;
	m->free_fn = NULL;
	m->hint = m->mem = NULL;
	m->in_block = false;
	return m;
}

static void root_release(nm_msg *r)
{
	if (r->chunk != NULL)
		nn_freemsg(r->chunk);
	else if (r->free_fn != NULL)
		r->free_fn(r->mem, r->hint);
	if (r->in_block)
		free(r); /* a received vector's holder: the block of its parts */
	else
		shell_free(r);
}

static void nm_msg_free(fq_msg *base)
{
	nm_msg *m = (nm_msg *)base, *r = m->root;

	if (m != r && !m->in_block)
		shell_free(m);
	if (atomic_fetch_sub(&r->refs, 1) == 1)
		root_release(r);
}

/* A message around a libnanomsg chunk of `size` bytes (taken over; freed on failure). */
static int msg_of_chunk(fq_transport *t, void *chunk, size_t size, fq_msg **out)
{
	nm_msg *m = msg_shell(t, chunk, size);

	if (m == NULL) {
		nn_freemsg(chunk);
		return FQ_ENOMEM;
	}
	m->chunk = chunk;
	m->chunk_size = size;
	*out = &m->base;
	return 0;
}

static int nm_msg_alloc(fq_transport *t, size_t size, fq_msg **out)
{
	void *chunk = nn_allocmsg(size, 0);

	if (chunk == NULL)
		return FQ_ENOMEM;
	return msg_of_chunk(t, chunk, size, out);
}

static int nm_msg_adopt(fq_transport *t, void *data, size_t size, fqi_free_fn free_fn, void *hint,
                        fq_msg **out)
{
	nm_msg *m = msg_shell(t, data, size);

	if (m == NULL)
		return FQ_ENOMEM;
	m->free_fn = free_fn;
	m->hint = hint;
	m->mem = data;
	*out = &m->base;
	return 0;
}

static int nm_msg_copy(const fq_msg *src, fq_msg **out)
{
	const nm_msg *s = (const nm_msg *)src;
	nm_msg *m = msg_shell(src->t, src->data, src->size);

	if (m == NULL)
		return FQ_ENOMEM;
	m->root = s->root;
	atomic_fetch_add(&s->root->refs, 1);
	*out = &m->base;
	return 0;
}

static int nm_msg_shrink(fq_msg *m, size_t size)
{
	m->size = size; /* a send with nn_reallocmsg or a copy sends only `size` bytes */
	return 0;
}

/* ---- Transport state -------------------------------------------------------------------- */

typedef struct nm_t {
	_Atomic uint64_t copies; /* counter "send_copies": sends libnanomsg had to copy */
	pthread_mutex_t lock;    /* socks */
	pthread_cond_t cond;
	struct nm_sock *socks;
	bool stop;
	pthread_t monitor;
} nm_t;

/* ---- Sockets ---------------------------------------------------------------------------- */

enum { TURN_ANY, TURN_SEND, TURN_RECV };

typedef struct nm_sock {
	fq_socket *s;
	struct nm_sock *next; /* in the transport's list (the monitor's) */
	int nn;
	int rcv_fd, snd_fd; /* libnanomsg's levels, -1 where the type has no such direction */
	int intr_fd;        /* eventfd: readable while interrupted */
	int stash_fd;       /* eventfd: readable while vectors wait in the stash */
	int ep_fd;          /* fq_socket_fd: epoll over the main level, intr_fd and stash_fd */
	_Atomic bool interrupted;
	pthread_mutex_t lock;      /* stash, subs, broken_seen, ipc_files */
	pthread_mutex_t turn_lock; /* REQ/REP: held around a try that may change the turn */
	fq_parts **stash;          /* vectors fq_recv left for fq_recvv, oldest first */
	size_t stash_n, stash_cap;
	_Atomic size_t stashed; /* stash_n, read without the lock */
	_Atomic int turn;       /* REQ/REP: whose turn it is (changed under turn_lock) */
	fqi_subs subs;          /* SUB: the prefixes, for vectors (filtered here) */
	bool magic_subscribed;
	uint64_t broken_seen;      /* NN_STAT_BROKEN_CONNECTIONS logged so far */
	int64_t warned;            /* malformed vectors: when the last warning went out (ms) */
	uint64_t malformed;        /* ... and how many were dropped since */
	_Atomic int64_t last_send; /* coarse monotonic ms of the last successful send */
	char **ipc_files;          /* bound ipc:// paths, removed at close */
	size_t n_ipc_files;
} nm_sock;

static const int nn_types[] = {
    [FQ_PAIR] = NN_PAIR, [FQ_PUB] = NN_PUB,   [FQ_SUB] = NN_SUB,   [FQ_REQ] = NN_REQ,
    [FQ_REP] = NN_REP,   [FQ_PUSH] = NN_PUSH, [FQ_PULL] = NN_PULL,
};

static int set_int(nm_sock *ns, int level, int opt, int value)
{
	return nn_setsockopt(ns->nn, level, opt, &value, sizeof(value)) == 0 ? 0 : nerr(errno);
}

static int clamp_int(int64_t v)
{
	return v > INT32_MAX ? INT32_MAX : (int)v;
}

/* The tighter of two byte limits, 0 meaning none. */
static int64_t tighter(int64_t a, int64_t b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return a < b ? a : b;
}

/*
 * libnanomsg drops connections on its own threads (a peer that announced more than
 * max_msg_size, a malformed frame, a peer that vanished) and shows it only in a statistic.
 * The transport's monitor thread looks at every socket's every MONITOR_MS and logs each new
 * drop. Called with the transport's list lock held.
 */
#define MONITOR_MS 100

/* Connections closed since the last look (under the transport's list lock). */
static uint64_t broken_delta(nm_sock *ns)
{
	uint64_t broken = nn_get_statistic(ns->nn, NN_STAT_BROKEN_CONNECTIONS), d;

	if (broken == (uint64_t)-1 || broken <= ns->broken_seen)
		return 0;
	d = broken - ns->broken_seen;
	ns->broken_seen = broken;
	return d;
}

/*
 * A peer that left and a peer libnanomsg dropped look alike. A receiving socket says so at
 * warn level, so a drop is never silent (as the zeromq transport does); a sending socket only
 * loses a consumer, which reconnects and round robin handle. Called with no lock held (the
 * log sink is the user's).
 */
static void log_broken(fq_socket_type type, uint64_t n, int64_t max)
{
	char limit[48] = "";

	if (max > 0) /* what libnanomsg applies (an int) */
		snprintf(limit, sizeof(limit), " of %lld bytes",
		         (long long)(max > INT32_MAX ? INT32_MAX : max));
	FQI_LOG(fqi_type_receives(type) ? FQ_LOG_WARN : FQ_LOG_INFO, SUBSYS,
	        "%s socket: %llu connection(s) closed: the peer left, or was dropped for breaking "
	        "the protocol (a message above the limit%s, a malformed frame)",
	        fq_socket_type_name(type), (unsigned long long)n, limit);
}

/*
 * Sleep until `fd` (a libnanomsg level) or `extra` (-1: none) is readable, the deadline
 * passes or an interrupt.
 */
static int wait_level(nm_sock *ns, int fd, int extra, int64_t deadline)
{
	struct pollfd p[3] = {{.fd = fd, .events = POLLIN},
	                      {.fd = ns->intr_fd, .events = POLLIN},
	                      {.fd = extra, .events = POLLIN}};
	int left;

	if (atomic_load(&ns->interrupted))
		return FQ_EINTR;
	left = fqi_deadline_remaining(deadline);
	if (left == 0)
		return FQ_ETIMEDOUT;
	if (poll(p, extra >= 0 ? 3 : 2, left) < 0 && errno != EINTR)
		return fqi_syserr(errno);
	return atomic_load(&ns->interrupted) ? FQ_EINTR : 0;
}

/* ---- Sending ---------------------------------------------------------------------------- */

/* Milliseconds on the coarse monotonic clock (a few ns: read on every send). */
static int64_t coarse_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The chunk a send hands to libnanomsg (nn_send with NN_MSG): the message's own chunk when it
 * is the chunk's only user (no copy; *own set), else a chunk made here with the bytes (a
 * vector with its header, a shared or adopted message, a message that starts with the vector
 * magic, sent as a vector of one part). Making the chunk here, not in nn_sendmsg, turns an
 * allocation failure into FQ_ENOMEM (libnanomsg asserts on it).
 */
static int wire_chunk(fq_msg **parts, size_t n, void **chunk, bool *own)
{
	uint64_t total = 0;
	unsigned char *c;
	size_t at;

	*own = false;
	if (n == 1 && !nm_vec_is(parts[0]->data, parts[0]->size)) {
		nm_msg *m = (nm_msg *)parts[0], *r = m->root;

		if (r == m && r->chunk != NULL && m->base.data == r->chunk &&
		    atomic_load_explicit(&r->refs, memory_order_acquire) == 1) {
			if (m->base.size != r->chunk_size) {
				void *cut = nn_reallocmsg(r->chunk, m->base.size);

				if (cut == NULL)
					return FQ_ENOMEM;
				r->chunk = m->base.data = cut;
				r->chunk_size = m->base.size;
			}
			*chunk = r->chunk;
			*own = true;
			return 0;
		}
		c = nn_allocmsg(m->base.size, 0);
		if (c == NULL)
			return FQ_ENOMEM;
		if (m->base.size > 0)
			memcpy(c, m->base.data, m->base.size);
		*chunk = c;
		return 0;
	}
	if (n > NM_VEC_MAX_PARTS)
		return FQ_EMSGSIZE;
	total = nm_vec_head_bytes(n);
	for (size_t i = 0; i < n; i++) {
		if (parts[i]->size > SIZE_MAX - total)
			return FQ_EMSGSIZE;
		total += parts[i]->size;
	}
	c = nn_allocmsg((size_t)total, 0);
	if (c == NULL)
		return FQ_ENOMEM;
	nm_vec_put_head(c, (uint32_t)n);
	at = nm_vec_head_bytes(n);
	for (size_t i = 0; i < n; i++) {
		nm_vec_put_size(c, i, parts[i]->size);
		if (parts[i]->size > 0)
			memcpy(c + at, parts[i]->data, parts[i]->size);
		at += parts[i]->size;
	}
	*chunk = c;
	return 0;
}

/*
 * One attempt to hand `chunk` over. nn_send returns the size as an int, which is -1 for a
 * message of 2^32 k - 1 bytes: errno, cleared before, tells a failure from that.
 */
static int try_send(nm_sock *ns, void *chunk)
{
	int rc;

	errno = 0;
	rc = nn_send(ns->nn, &chunk, NN_MSG, NN_DONTWAIT);
	return rc == -1 && errno != 0 ? nerr(errno) : 0;
}

static int nm_send(fq_socket *s, fq_msg **parts, size_t n, int flags)
{
	nm_t *nt = s->t->priv;
	nm_sock *ns = s->priv;
	bool turns = s->type == FQ_REQ || s->type == FQ_REP, own;
	int64_t deadline = -2;
	void *chunk;
	int rc;

	if (!fqi_type_sends(s->type))
		return FQ_ENOTSUP;
	if (atomic_load(&ns->interrupted))
		return FQ_EINTR;
	if (turns && atomic_load(&ns->turn) != TURN_SEND)
		return FQ_ESTATE;
	rc = wire_chunk(parts, n, &chunk, &own);
	if (rc != 0)
		return rc;
	for (;;) {
		if (atomic_load(&ns->interrupted)) {
			rc = FQ_EINTR;
			break;
		}
		if (turns) {
			pthread_mutex_lock(&ns->turn_lock);
			if (atomic_load(&ns->turn) != TURN_SEND) {
				pthread_mutex_unlock(&ns->turn_lock);
				rc = FQ_ESTATE;
				break;
			}
		}
		rc = try_send(ns, chunk);
		if (turns) {
			if (rc == 0)
				atomic_store(&ns->turn, TURN_RECV);
			pthread_mutex_unlock(&ns->turn_lock);
		}
		if (rc != FQ_EAGAIN || (flags & FQ_DONTWAIT))
			break;
		if (deadline == -2)
			deadline = fqi_deadline(atomic_load(&s->opt[FQI_SO_SND_TIMEOUT]));
		rc = wait_level(ns, ns->snd_fd, -1, deadline);
		if (rc != 0)
			break;
	}
	if (rc != 0) {
		if (!own)
			nn_freemsg(chunk); /* the copy; the parts stay the caller's */
		return rc;
	}
	atomic_store_explicit(&ns->last_send, coarse_ms(), memory_order_relaxed);
	if (own) {
		shell_free((nm_msg *)parts[0]); /* its chunk is libnanomsg's now */
		parts[0] = NULL;
		return 0;
	}
	atomic_fetch_add_explicit(&nt->copies, 1, memory_order_relaxed);
	for (size_t i = 0; i < n; i++) {
		nm_msg_free(parts[i]);
		parts[i] = NULL;
	}
	return 0;
}

/* ---- Receiving -------------------------------------------------------------------------- */

/* The size of a received chunk (see nn_chunk_size above). */
static size_t chunk_size(void *chunk, int rc)
{
	if (nn_chunk_size != NULL)
		return nn_chunk_size(chunk);
	return (size_t)(uint32_t)rc; /* the int rc is the size modulo 2^32 */
}

/*
 * A malformed vector was dropped: warn at most once a second, with the count since (a peer
 * must not flood the log).
 */
static void note_malformed(fq_socket *s, size_t len, const char *why)
{
	nm_sock *ns = s->priv;
	int64_t now = coarse_ms();
	uint64_t n = 0;

	pthread_mutex_lock(&ns->lock);
	ns->malformed++;
	if (now - ns->warned >= 1000) {
		n = ns->malformed;
		ns->malformed = 0;
		ns->warned = now;
	}
	pthread_mutex_unlock(&ns->lock);
	if (n > 0)
		FQI_WARN(SUBSYS,
		         "%s socket: dropped %llu malformed vector(s), the last of %zu bytes: %s",
		         fq_socket_type_name(s->type), (unsigned long long)n, len, why);
}

/*
 * Parts pointing into a checked vector's chunk (taken over): n parts, the first at offset
 * `at`. The parts are allocated in one block with the chunk's holder. Errors: FQ_ENOMEM.
 */
static int vector_of_chunk(fq_socket *s, void *chunk, size_t len, size_t n, size_t at,
                           fq_parts **out)
{
	nm_msg *block;
	fq_parts *v;

	if (fqi_parts_new(n, &v) != 0) {
		nn_freemsg(chunk);
		return FQ_ENOMEM;
	}
	block = malloc((n + 1) * sizeof(*block));
	if (block == NULL) {
		fq_parts_free(v);
		nn_freemsg(chunk);
		return FQ_ENOMEM;
	}
	block[0] = (nm_msg){.base = {.ops = &nm_msg_ops, .t = s->t, .data = chunk, .size = len},
	                    .root = &block[0],
	                    .chunk = chunk,
	                    .chunk_size = len,
	                    .in_block = true};
	atomic_init(&block[0].refs, (long)n);
	for (size_t i = 0; i < n; i++) {
		uint64_t size = nm_vec_size(chunk, i);
		nm_msg *p = &block[i + 1];

		*p = (nm_msg){.base = {.ops = &nm_msg_ops,
		                       .t = s->t,
		                       .data = (char *)chunk + at,
		                       .size = (size_t)size},
		              .root = &block[0],
		              .in_block = true};
		atomic_init(&p->refs, 1);
		v->msgs[i] = &p->base;
		v->bytes += size;
		at += size;
	}
	*out = v;
	return 0;
}

#define SKIPPED 1 /* try_recv dropped what it read (malformed, or not subscribed) */

/* Keep v for fq_recvv (behind any kept before, by other threads' fq_recv). */
static int stash_add(nm_sock *ns, fq_parts *v)
{
	pthread_mutex_lock(&ns->lock);
	if (ns->stash_n == ns->stash_cap) {
		size_t cap = ns->stash_cap ? 2 * ns->stash_cap : 4;
		fq_parts **grown = realloc(ns->stash, cap * sizeof(*grown));

		if (grown == NULL) {
			pthread_mutex_unlock(&ns->lock);
			fq_parts_free(v);
			return FQ_ENOMEM;
		}
		ns->stash = grown;
		ns->stash_cap = cap;
	}
	ns->stash[ns->stash_n++] = v;
	atomic_store(&ns->stashed, ns->stash_n);
	fqi_kick(ns->stash_fd); /* a thread asleep in fq_recvv, or the application's fd */
	pthread_mutex_unlock(&ns->lock);
	return FQ_EPARTS;
}

/* The oldest kept vector: taken (take) or looked at; NULL when none. */
static fq_parts *stash_first(nm_sock *ns, bool take)
{
	fq_parts *v = NULL;

	if (atomic_load_explicit(&ns->stashed, memory_order_acquire) == 0)
		return NULL;
	pthread_mutex_lock(&ns->lock);
	if (ns->stash_n > 0) {
		v = ns->stash[0];
		if (take) {
			memmove(ns->stash, ns->stash + 1, --ns->stash_n * sizeof(*ns->stash));
			atomic_store(&ns->stashed, ns->stash_n);
			if (ns->stash_n == 0)
				fqi_drain(ns->stash_fd);
		}
	}
	pthread_mutex_unlock(&ns->lock);
	return v;
}

/*
 * One attempt to receive. A single message goes to *msg_out, or as a vector of one part when
 * want_vector; a vector goes to *parts_out, or is kept for recvv with FQ_EPARTS. *consumed
 * says whether a message was taken from libnanomsg (a REQ's reply), delivered or not.
 */
static int try_recv(fq_socket *s, bool want_vector, fq_msg **msg_out, fq_parts **parts_out,
                    bool *consumed)
{
	nm_sock *ns = s->priv;
	fq_parts *v = stash_first(ns, want_vector);
	void *chunk = NULL;
	size_t len, n, at;
	char why[128];
	int rc;

	*consumed = false;
	if (v != NULL) {
		if (!want_vector)
			return FQ_EPARTS;
		*parts_out = v;
		return 0;
	}
	/* nn_recv's int result is -1 for a 2^32 k - 1 byte message: the chunk tells success. */
	rc = nn_recv(ns->nn, &chunk, NN_MSG, NN_DONTWAIT);
	if (chunk == NULL)
		return nerr(errno);
	*consumed = true;
	len = chunk_size(chunk, rc);
	if (!nm_vec_is(chunk, len)) {
		fq_msg *m;

		rc = msg_of_chunk(s->t, chunk, len, &m);
		if (rc != 0)
			return rc;
		if (!want_vector) {
			*msg_out = m;
			return 0;
		}
		rc = fqi_parts_new(1, &v);
		if (rc != 0) {
			nm_msg_free(m);
			return rc;
		}
		v->msgs[0] = m;
		v->bytes = m->size;
		*parts_out = v;
		return 0;
	}
	if (nm_vec_parse(chunk, len, &n, &at, why, sizeof(why)) != 0) {
		note_malformed(s, len, why);
		nn_freemsg(chunk);
		return SKIPPED;
	}
	if (s->type == FQ_SUB) {
		/* The first part decides, before anything is allocated for the parts. */
		bool wanted;

		pthread_mutex_lock(&ns->lock);
		wanted =
		    fqi_subs_match(&ns->subs, (char *)chunk + at, (size_t)nm_vec_size(chunk, 0));
		pthread_mutex_unlock(&ns->lock);
		if (!wanted) {
			nn_freemsg(chunk);
			return SKIPPED;
		}
	}
	rc = vector_of_chunk(s, chunk, len, n, at, &v);
	if (rc != 0)
		return rc;
	if (v->n == 1 && !want_vector) {
		/* A single message that was wrapped because it starts with the magic. */
		*msg_out = fq_parts_take(v, 0);
		fq_parts_free(v);
		return 0;
	}
	if (!want_vector)
		return stash_add(ns, v);
	*parts_out = v;
	return 0;
}

/* Dropped messages are skipped without waiting, but not past the deadline: at most this many
 * in a row with FQ_DONTWAIT. */
#define SKIPS_MAX 64

static int recv_common(fq_socket *s, bool want_vector, fq_msg **msg_out, fq_parts **parts_out,
                       int flags)
{
	nm_sock *ns = s->priv;
	bool turns = s->type == FQ_REQ || s->type == FQ_REP;
	int64_t deadline = -2;
	int skips = 0;

	if (!fqi_type_receives(s->type))
		return FQ_ENOTSUP;
	for (;;) {
		bool consumed = false;
		int rc;

		if (atomic_load(&ns->interrupted))
			return FQ_EINTR;
		if (turns) {
			pthread_mutex_lock(&ns->turn_lock);
			if (atomic_load(&ns->turn) != TURN_RECV) {
				pthread_mutex_unlock(&ns->turn_lock);
				return FQ_ESTATE;
			}
		}
		rc = try_recv(s, want_vector, msg_out, parts_out, &consumed);
		if (turns) {
			/* A REQ whose reply was taken from libnanomsg may ask again, even when the
			 * reply was dropped (libnanomsg's REQ is done with that request). */
			if (rc == 0 || rc == FQ_EPARTS || (consumed && s->type == FQ_REQ))
				atomic_store(&ns->turn, rc == FQ_EPARTS ? TURN_RECV : TURN_SEND);
			pthread_mutex_unlock(&ns->turn_lock);
		}
		if (rc == SKIPPED && s->type == FQ_REQ)
			return FQ_EPROTO; /* the reply was malformed (logged) */
		if (deadline == -2 && (rc == SKIPPED || rc == FQ_EAGAIN))
			deadline = fqi_deadline(atomic_load(&s->opt[FQI_SO_RCV_TIMEOUT]));
		if (rc == SKIPPED) {
			if ((flags & FQ_DONTWAIT) && ++skips >= SKIPS_MAX)
				return FQ_EAGAIN;
			if (!(flags & FQ_DONTWAIT) && fqi_deadline_remaining(deadline) == 0)
				return FQ_ETIMEDOUT;
			continue;
		}
		if (rc != FQ_EAGAIN || (flags & FQ_DONTWAIT))
			return rc;
		rc = wait_level(ns, ns->rcv_fd, ns->stash_fd, deadline);
		if (rc != 0)
			return rc;
	}
}

static int nm_recv(fq_socket *s, fq_msg **out, int flags)
{
	return recv_common(s, false, out, NULL, flags);
}

static int nm_recvv(fq_socket *s, fq_parts **out, int flags)
{
	return recv_common(s, true, NULL, out, flags);
}

/* ---- Options ---------------------------------------------------------------------------- */

static bool subs_has(const fqi_subs *subs, const char *text, size_t len)
{
	for (size_t i = 0; i < subs->n; i++)
		if (subs->len[i] == len && memcmp(subs->text[i], text, len) == 0)
			return true;
	return false;
}

static int subscribe(fq_socket *s, const char *text, bool add)
{
	nm_sock *ns = s->priv;
	size_t len = strlen(text);
	int rc = 0;

	pthread_mutex_lock(&ns->lock);
	if (!add && !subs_has(&ns->subs, text, len)) {
		pthread_mutex_unlock(&ns->lock);
		return 0; /* as on the other transports: nothing to remove */
	}
	if (add && !ns->magic_subscribed) {
		/* Vectors pass libnanomsg's filter; their first part is matched here. */
		if (nn_setsockopt(ns->nn, NN_SUB, NN_SUB_SUBSCRIBE, NM_VEC_MAGIC,
		                  NM_VEC_MAGIC_LEN) != 0)
			rc = nerr(errno);
		ns->magic_subscribed = rc == 0;
	}
	/* fabriq's list first (it may fail for memory), then libnanomsg's, undone on failure. */
	if (rc == 0)
		rc = fqi_subs_change(&ns->subs, text, len, add);
	if (rc == 0 && nn_setsockopt(ns->nn, NN_SUB, add ? NN_SUB_SUBSCRIBE : NN_SUB_UNSUBSCRIBE,
	                             text, len) != 0) {
		rc = nerr(errno);
		fqi_subs_change(&ns->subs, text, len, !add);
	}
	pthread_mutex_unlock(&ns->lock);
	return rc;
}

#define NN_DEFAULT_BUF (128 * 1024) /* libnanomsg's NN_SNDBUF / NN_RCVBUF default */

static int nm_setopt(fq_socket *s, fqi_sockopt_id id, const char *text)
{
	nm_sock *ns = s->priv;
	int64_t v = atomic_load(&s->opt[id]);

	switch (id) {
	case FQI_SO_SND_HWM:
	case FQI_SO_RCV_HWM:
		return 0; /* libnanomsg bounds its queues in bytes (fabriq-nanomsg(7)) */
	case FQI_SO_SND_HWM_BYTES:
	case FQI_SO_SND_KERNEL_SIZE: {
		int64_t b = tighter(atomic_load(&s->opt[FQI_SO_SND_HWM_BYTES]),
		                    atomic_load(&s->opt[FQI_SO_SND_KERNEL_SIZE]));

		return set_int(ns, NN_SOL_SOCKET, NN_SNDBUF,
		               b == 0 ? NN_DEFAULT_BUF : clamp_int(b));
	}
	case FQI_SO_RCV_HWM_BYTES:
	case FQI_SO_RCV_KERNEL_SIZE: {
		int64_t b = tighter(atomic_load(&s->opt[FQI_SO_RCV_HWM_BYTES]),
		                    atomic_load(&s->opt[FQI_SO_RCV_KERNEL_SIZE]));

		return set_int(ns, NN_SOL_SOCKET, NN_RCVBUF,
		               b == 0 ? NN_DEFAULT_BUF : clamp_int(b));
	}
	case FQI_SO_SND_TIMEOUT:
	case FQI_SO_RCV_TIMEOUT:
	case FQI_SO_LINGER:
		return 0; /* read when they apply */
	case FQI_SO_MAX_MSG_SIZE:
		/* Checked against the announced size before allocating; the peer's connection is
		 * dropped. An int in libnanomsg: larger limits are clamped to 2^31 - 1. */
		return set_int(ns, NN_SOL_SOCKET, NN_RCVMAXSIZE, v == 0 ? -1 : clamp_int(v));
	case FQI_SO_RECONNECT_IVL:
		return set_int(ns, NN_SOL_SOCKET, NN_RECONNECT_IVL, clamp_int(v));
	case FQI_SO_RECONNECT_IVL_MAX:
		return set_int(ns, NN_SOL_SOCKET, NN_RECONNECT_IVL_MAX, clamp_int(v));
	case FQI_SO_SUBSCRIBE:
	case FQI_SO_UNSUBSCRIBE:
		if (text == NULL)
			return 0;
		if (s->type != FQ_SUB)
			return FQ_ENOTSUP;
		return subscribe(s, text, id == FQI_SO_SUBSCRIBE);
	default:
		return FQ_ENOENT;
	}
}

/* ---- Open, bind, connect, close --------------------------------------------------------- */

static void sock_release(nm_sock *ns)
{
	if (ns->nn >= 0)
		nn_close(ns->nn);
	if (ns->ep_fd >= 0)
		close(ns->ep_fd);
	if (ns->intr_fd >= 0)
		close(ns->intr_fd);
	if (ns->stash_fd >= 0)
		close(ns->stash_fd);
	fqi_subs_free(&ns->subs);
	pthread_mutex_destroy(&ns->lock);
	pthread_mutex_destroy(&ns->turn_lock);
}

static int level_fd(nm_sock *ns, int opt, int *out)
{
	size_t len = sizeof(*out);

	return nn_getsockopt(ns->nn, NN_SOL_SOCKET, opt, out, &len) == 0 ? 0 : nerr(errno);
}

static int nm_open(fq_socket *s)
{
	nm_t *nt = s->t->priv;
	nm_sock *ns = s->priv;
	struct epoll_event ev = {.events = EPOLLIN};
	int rc = 0;

	memset(ns, 0, sizeof(*ns));
	pthread_mutex_init(&ns->lock, NULL);
	pthread_mutex_init(&ns->turn_lock, NULL);
	ns->rcv_fd = ns->snd_fd = ns->intr_fd = ns->stash_fd = ns->ep_fd = -1;
	atomic_init(&ns->turn, s->type == FQ_REQ   ? TURN_SEND
	                       : s->type == FQ_REP ? TURN_RECV
	                                           : TURN_ANY);
	if ((unsigned)s->type >= FQI_ARRAY_LEN(nn_types)) {
		ns->nn = -1;
		sock_release(ns);
		return FQ_ENOTSUP;
	}
	ns->nn = nn_socket(AF_SP, nn_types[s->type]);
	if (ns->nn < 0) {
		rc = nerr(errno);
		goto fail;
	}
	if (fqi_type_receives(s->type))
		rc = level_fd(ns, NN_RCVFD, &ns->rcv_fd);
	if (rc == 0 && fqi_type_sends(s->type))
		rc = level_fd(ns, NN_SNDFD, &ns->snd_fd);
	if (rc != 0)
		goto fail;
	ns->intr_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ns->stash_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ns->ep_fd = epoll_create1(EPOLL_CLOEXEC);
	if (ns->intr_fd < 0 || ns->stash_fd < 0 || ns->ep_fd < 0)
		goto sys_fail;
	/* The application's fd: input for types that receive, else room to send. */
	ev.data.fd = ns->rcv_fd >= 0 ? ns->rcv_fd : ns->snd_fd;
	if (epoll_ctl(ns->ep_fd, EPOLL_CTL_ADD, ev.data.fd, &ev) != 0)
		goto sys_fail;
	ev.data.fd = ns->intr_fd;
	if (epoll_ctl(ns->ep_fd, EPOLL_CTL_ADD, ns->intr_fd, &ev) != 0)
		goto sys_fail;
	ev.data.fd = ns->stash_fd;
	if (epoll_ctl(ns->ep_fd, EPOLL_CTL_ADD, ns->stash_fd, &ev) != 0)
		goto sys_fail;
	ns->s = s;
	pthread_mutex_lock(&nt->lock);
	ns->next = nt->socks;
	nt->socks = ns;
	pthread_mutex_unlock(&nt->lock);
	return 0;
sys_fail:
	rc = fqi_syserr(errno);
fail:
	sock_release(ns);
	return rc;
}

static void remember_ipc_file(nm_sock *ns, const char *path)
{
	char **grown = realloc(ns->ipc_files, (ns->n_ipc_files + 1) * sizeof(*grown));
	char *copy = strdup(path);

	if (grown != NULL)
		ns->ipc_files = grown;
	if (grown == NULL || copy == NULL) {
		free(copy);
		return;
	}
	ns->ipc_files[ns->n_ipc_files++] = copy;
}

/*
 * tcp://host:0: libnanomsg cannot bind port 0, so fabriq picks a port that is free now and
 * binds it, trying again when another process took it meanwhile.
 */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return fqi_syserr(errno);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	else
		port = fqi_syserr(errno);
	close(fd);
	return port;
}

static int bind_tcp_any_port(nm_sock *ns, const fqi_url *url, char *resolved)
{
	const char *colon = strrchr(url->rest, ':');
	int host_len = (int)(colon - url->rest);

	for (int tries = 0; tries < 20; tries++) {
		int port = free_port();

		if (port < 0)
			return port;
		snprintf(resolved, FQI_URL_MAX, "tcp://%.*s:%d", host_len, url->rest, port);
		if (nn_bind(ns->nn, resolved) >= 0) {
			if (host_len == 1 && url->rest[0] == '*')
				snprintf(resolved, FQI_URL_MAX, "tcp://0.0.0.0:%d", port);
			return 0;
		}
		if (errno != EADDRINUSE)
			return nerr(errno);
	}
	return FQ_EADDRINUSE;
}

static int nm_bind(fq_socket *s, const fqi_url *url, char *resolved)
{
	nm_sock *ns = s->priv;
	const char *colon = strrchr(url->rest, ':');
	int rc = 0;

	if (strcmp(url->scheme, "tcp") == 0 && colon != NULL && strcmp(colon, ":0") == 0) {
		rc = bind_tcp_any_port(ns, url, resolved);
	} else if (nn_bind(ns->nn, url->text) < 0) {
		rc = nerr(errno);
	} else if (strncmp(url->text, "tcp://*:", 8) == 0) {
		/* connectable, as the zeromq transport reports it */
		snprintf(resolved, FQI_URL_MAX, "tcp://0.0.0.0:%s", url->text + 8);
	} else {
		snprintf(resolved, FQI_URL_MAX, "%s", url->text);
	}
	if (rc != 0) {
		FQI_WARN(SUBSYS, "bind %s failed: %s", url->text, fq_strerror(rc));
		return rc;
	}
	if (strcmp(url->scheme, "ipc") == 0) {
		pthread_mutex_lock(&ns->lock);
		remember_ipc_file(ns, url->rest);
		pthread_mutex_unlock(&ns->lock);
	}
	return 0;
}

static int nm_connect(fq_socket *s, const fqi_url *url, char *resolved)
{
	nm_sock *ns = s->priv;

	if (nn_connect(ns->nn, url->text) < 0) {
		int rc = nerr(errno);

		FQI_WARN(SUBSYS, "connect %s failed: %s", url->text, fq_strerror(rc));
		return rc;
	}
	snprintf(resolved, FQI_URL_MAX, "%s", url->text);
	return 0;
}

/*
 * libnanomsg drops what it still holds at nn_close (its NN_LINGER is not implemented), and on
 * ipc a receiver's libnanomsg drops what it had not read yet when the connection ends; nothing
 * tells when a peer has read a message. So with linger, a socket that sent keeps its
 * connections open until `linger` ms after its last send, unless none is left. A socket that
 * sent nothing for `linger` ms closes at once.
 */
#define LINGER_FOREVER_MS 1000 /* linger -1: libnanomsg cannot say when it is done */
#define LINGER_SLICE_MS   10

static void linger(fq_socket *s)
{
	nm_sock *ns = s->priv;
	int64_t ms = atomic_load(&s->opt[FQI_SO_LINGER]);
	int64_t last = atomic_load(&ns->last_send), end, left;
	bool handed = false;

	if (ns->snd_fd < 0 || ms == 0 || last == 0)
		return;
	end = last + (ms < 0 ? LINGER_FOREVER_MS : ms);
	/* In slices: first until libnanomsg has handed the last message over, then for the rest
	 * of the time; at once when no connection is left to deliver to. */
	while ((left = end - coarse_ms()) > 0) {
		struct pollfd p = {.fd = ns->snd_fd, .events = POLLIN};
		int slice = left < LINGER_SLICE_MS ? (int)left : LINGER_SLICE_MS;

		if (nn_get_statistic(ns->nn, NN_STAT_CURRENT_CONNECTIONS) == 0)
			return;
		if (handed) {
			struct timespec ts = {.tv_nsec = slice * 1000000L};

			nanosleep(&ts, NULL);
		} else if (poll(&p, 1, slice) > 0) {
			handed = true;
		}
	}
}

static void nm_close(fq_socket *s)
{
	nm_t *nt = s->t->priv;
	nm_sock *ns = s->priv;
	uint64_t closed;
	for (size_t i = 0; i < ns->stash_n; i++)
		fq_parts_free(ns->stash[i]);
	free(ns->stash);
	linger(s);
	pthread_mutex_lock(&nt->lock);
	closed = broken_delta(ns);
	for (nm_sock **pp = &nt->socks; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == ns) {
			*pp = ns->next;
			break;
		}
	}
	pthread_mutex_unlock(&nt->lock);
	if (closed > 0)
		log_broken(s->type, closed, atomic_load(&s->opt[FQI_SO_MAX_MSG_SIZE]));
	nn_close(ns->nn);
	ns->nn = -1;
	for (size_t i = 0; i < ns->n_ipc_files; i++) {
		unlink(ns->ipc_files[i]);
		free(ns->ipc_files[i]);
	}
	free(ns->ipc_files);
	sock_release(ns);
}

static bool level_up(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return fd >= 0 && poll(&p, 1, 0) > 0;
}

static int nm_events(fq_socket *s)
{
	nm_sock *ns = s->priv;
	int ev = 0;

	if (atomic_load(&ns->interrupted))
		return FQ_EINTR;
	if (atomic_load(&ns->stashed) > 0 || level_up(ns->rcv_fd))
		ev |= FQ_POLLIN;
	if (level_up(ns->snd_fd))
		ev |= FQ_POLLOUT;
	if (s->type == FQ_REQ || s->type == FQ_REP)
		ev &= atomic_load(&ns->turn) == TURN_SEND ? FQ_POLLOUT : FQ_POLLIN;
	return ev;
}

static int nm_fd(fq_socket *s, int *fd)
{
	*fd = ((nm_sock *)s->priv)->ep_fd;
	return 0;
}

static void nm_interrupt(fq_socket *s, bool on)
{
	nm_sock *ns = s->priv;

	atomic_store(&ns->interrupted, on);
	if (on)
		fqi_kick(ns->intr_fd);
	else
		fqi_drain(ns->intr_fd);
}

/* ---- Transport -------------------------------------------------------------------------- */

static void *monitor_main(void *arg)
{
	nm_t *nt = arg;
	struct closed {
		fq_socket_type type;
		uint64_t n;
		int64_t max;
	} *found = NULL;
	size_t cap = 0;

	pthread_mutex_lock(&nt->lock);
	while (!nt->stop) {
		struct timespec ts;
		size_t n = 0, count = 0;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += MONITOR_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&nt->cond, &nt->lock, &ts);
		for (nm_sock *ns = nt->socks; ns != NULL; ns = ns->next)
			count++;
		if (count > cap) {
			struct closed *grown = realloc(found, count * sizeof(*grown));

			if (grown == NULL)
				continue; /* look again next time */
			found = grown;
			cap = count;
		}
		for (nm_sock *ns = nt->socks; ns != NULL && !nt->stop; ns = ns->next) {
			uint64_t d = broken_delta(ns);

			if (d > 0)
				found[n++] = (struct closed){
				    ns->s->type, d, atomic_load(&ns->s->opt[FQI_SO_MAX_MSG_SIZE])};
		}
		/* The log sink is the user's: never call it with the list locked. */
		pthread_mutex_unlock(&nt->lock);
		for (size_t i = 0; i < n; i++)
			log_broken(found[i].type, found[i].n, found[i].max);
		pthread_mutex_lock(&nt->lock);
	}
	pthread_mutex_unlock(&nt->lock);
	free(found);
	return NULL;
}

static int nm_init(fq_transport *t)
{
	nm_t *nt = calloc(1, sizeof(*nt));
	pthread_condattr_t ca;
	int rc;

	if (nt == NULL)
		return FQ_ENOMEM;
	pthread_mutex_init(&nt->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&nt->cond, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&nt->monitor, NULL, monitor_main, nt);
	if (rc != 0) {
		pthread_cond_destroy(&nt->cond);
		pthread_mutex_destroy(&nt->lock);
		free(nt);
		return fqi_syserr(rc);
	}
	t->priv = nt;
	return 0;
}

static void nm_fini(fq_transport *t)
{
	nm_t *nt = t->priv;

	pthread_mutex_lock(&nt->lock);
	nt->stop = true;
	pthread_cond_signal(&nt->cond);
	pthread_mutex_unlock(&nt->lock);
	pthread_join(nt->monitor, NULL);
	pthread_cond_destroy(&nt->cond);
	pthread_mutex_destroy(&nt->lock);
	free(nt);
	t->priv = NULL;
}

static int nm_counter(fq_transport *t, const char *name, uint64_t *value)
{
	nm_t *nt = t->priv;

	if (strcmp(name, "send_copies") != 0)
		return FQ_ENOENT;
	*value = atomic_load(&nt->copies);
	return 0;
}

static const fqi_transport_ops nm_transport_ops = {
    .size = sizeof(fqi_transport_ops),
    .priv_size = 0,
    .init = nm_init,
    .fini = nm_fini,
    .probe = fqi_no_probe,
    .counter = nm_counter,
};

static const fqi_msg_ops nm_msg_ops = {
    .size = sizeof(fqi_msg_ops),
    .alloc = nm_msg_alloc,
    .adopt = nm_msg_adopt,
    .copy = nm_msg_copy,
    .shrink = nm_msg_shrink,
    .free = nm_msg_free,
};

static const fqi_socket_ops nm_socket_ops = {
    .size = sizeof(fqi_socket_ops),
    .priv_size = sizeof(nm_sock),
    .open = nm_open,
    .close = nm_close,
    .setopt = nm_setopt,
    .bind = nm_bind,
    .connect = nm_connect,
    .send = nm_send,
    .recv = nm_recv,
    .recvv = nm_recvv,
    .events = nm_events,
    .fd = nm_fd,
    .interrupt = nm_interrupt,
};

static const fqi_region_ops nm_region_ops = {
    .size = sizeof(fqi_region_ops),
    .priv_size = 0,
    .open = fqi_no_region_open,
    .close = fqi_no_region_close,
    .msg = fqi_no_region_msg,
};

const fqi_transport_desc fqi_nanomsg_transport = {
    .name = "nanomsg",
    .schemes = "tcp,ipc,inproc",
    .caps = FQI_CAP_CROSS_HOST | FQI_CAP_POLL_FD | FQI_CAP_RCV_HWM_BYTES,
    .options = NULL,
    .option_count = 0,
    .transport_ops = &nm_transport_ops,
    .msg_ops = &nm_msg_ops,
    .socket_ops = &nm_socket_ops,
    .region_ops = &nm_region_ops,
};
