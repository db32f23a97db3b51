/*
 * The transport contract: what a transport implements and what the core promises it.
 *
 * A transport is one descriptor (fqi_transport_desc) with a name, the URL schemes it serves,
 * capability flags and four operation tables. Every table starts with its own size so tables can
 * grow; an operation a transport does not have points at a shared fqi_no_* stub that returns
 * FQ_ENOTSUP, never at NULL (the registry asserts that at start-up).
 *
 * General rules for every member:
 * - Errors are negative FQ_E* codes; OS errors are wrapped with fqi_syserr(errno).
 * - Lower layers never call back into the core except through the documented callbacks
 *   (message free functions, region acks, logging).
 * - "Owns" means: responsible for freeing. A message handed to an operation that fails stays
 *   with the caller, untouched.
 */
#ifndef FQI_TRANSPORT_H
#define FQI_TRANSPORT_H

#include "core.h"

/* Capability flags. They must match what the operation tables really do. */
#define FQI_CAP_ZERO_COPY     0x01 /* adopt() sends from user memory without a copy */
#define FQI_CAP_REGIONS       0x02 /* region operations are real */
#define FQI_CAP_CROSS_HOST    0x04 /* addresses may reach other hosts */
#define FQI_CAP_POLL_FD       0x08 /* socket fd() gives a pollable descriptor */
#define FQI_CAP_RCV_HWM_BYTES 0x10 /* rcv_hwm_bytes is enforced */

typedef struct fqi_transport_ops {
	size_t size;      /* sizeof(fqi_transport_ops) */
	size_t priv_size; /* bytes of private state the core allocates after struct fq_transport */
	/*
	 * Initialise the instance; t->opts holds the parsed transport options. May block briefly
	 * (starting threads). On failure everything it made is undone. Errors: FQ_ENOMEM,
	 * FQ_EUNAVAIL, FQ_EINVAL.
	 */
	int (*init)(fq_transport *t);
	/* Release the instance. All sockets are closed. May block for socket linger. */
	void (*fini)(fq_transport *t);
	/* Is the transport usable on this machine? No instance needed. Never blocks long. */
	int (*probe)(void);
	/* Counter `name` of the instance (fq_transport_counter). FQ_ENOENT if unknown. */
	int (*counter)(fq_transport *t, const char *name, uint64_t *value);
} fqi_transport_ops;

typedef struct fqi_msg_ops {
	size_t size;
	/*
	 * Make a message of `size` bytes. Thread-safe, no locks held by the caller, never blocks
	 * except in the allocator. Errors: FQ_ENOMEM.
	 */
	int (*alloc)(fq_transport *t, size_t size, fq_msg **out);
	/*
	 * Wrap user memory. Success: the message owns `data` and calls free_fn(data, hint) once,
	 * from any thread, when the last reference goes. Failure: nothing was taken.
	 */
	int (*adopt)(fq_transport *t, void *data, size_t size, fqi_free_fn free_fn, void *hint,
	             fq_msg **out);
	/* Shared read-only copy (reference count). Both stay valid independently. */
	int (*copy)(const fq_msg *m, fq_msg **out);
	/* Reduce m->size. The core has checked size <= m->size. Never fails but with FQ_ENOMEM. */
	int (*shrink)(fq_msg *m, size_t size);
	/* Release the message (and the memory when it was the last reference). */
	void (*free)(fq_msg *m);
} fqi_msg_ops;

typedef struct fqi_socket_ops {
	size_t size;
	size_t priv_size; /* private state the core allocates after struct fq_socket */
	/*
	 * Initialise a socket of s->type. The core calls setopt() for every socket option right
	 * after. Errors: FQ_ENOTSUP (type), FQ_ENOMEM.
	 */
	int (*open)(fq_socket *s);
	/*
	 * Close: hand unsent messages to linger, free the private state. No other thread uses
	 * the socket any more (the public contract of fq_socket_close). Messages made by the
	 * transport must stay readable and freeable after fini (they carry their own ops).
	 */
	void (*close)(fq_socket *s);
	/*
	 * Apply socket option `id` (the new value is already in s->opt[id]; `text` is the raw
	 * string for string options such as subscribe). Called with no lock held; the transport
	 * serialises against its own I/O. FQ_ENOTSUP if the value cannot be honoured.
	 */
	int (*setopt)(fq_socket *s, fqi_sockopt_id id, const char *text);
	/*
	 * Bind / connect to a parsed URL whose scheme the descriptor lists. Write the resolved
	 * address into `resolved` (NUL-terminated, at most FQI_URL_MAX bytes). Does not wait for
	 * peers. Errors: FQ_EADDRINVAL, FQ_EADDRINUSE, FQ_EMISMATCH.
	 */
	int (*bind)(fq_socket *s, const fqi_url *url, char *resolved);
	int (*connect)(fq_socket *s, const fqi_url *url, char *resolved);
	/*
	 * Send n >= 1 messages of this transport as one atomic vector (n == 1: a plain message).
	 * Thread-safe: concurrent senders never interleave. Blocks up to s->opt[snd_timeout]
	 * unless FQ_DONTWAIT. Success: every parts[i] is set to NULL and the transport owns them.
	 * Failure: parts[] untouched. Errors: FQ_EAGAIN, FQ_ETIMEDOUT, FQ_EINTR, FQ_ESTATE,
	 * FQ_ENOTSUP, FQ_EMSGSIZE.
	 */
	int (*send)(fq_socket *s, fq_msg **parts, size_t n, int flags);
	/*
	 * Receive a single message (the caller owns *out). A queued vector of several parts is
	 * left for recvv and FQ_EPARTS returned. Thread-safe; blocks up to s->opt[rcv_timeout].
	 */
	int (*recv)(fq_socket *s, fq_msg **out, int flags);
	/* Receive one vector of parts (made with fqi_parts_new; the caller owns it). */
	int (*recvv)(fq_socket *s, fq_parts **out, int flags);
	/* Ready events now (FQ_POLLIN | FQ_POLLOUT); never blocks. */
	int (*events)(fq_socket *s);
	/* The socket's wake-up fd (see fq_socket_fd). */
	int (*fd)(fq_socket *s, int *fd);
	/* Set (on) or clear (off) the interrupted state and wake every blocked caller. */
	void (*interrupt)(fq_socket *s, bool on);
} fqi_socket_ops;

typedef struct fqi_region_ops {
	size_t size;
	size_t priv_size; /* private state the core allocates after struct fq_region */
	/* Create the memory (r->size bytes) and set r->data. Errors: FQ_ENOMEM, FQ_ENOTSUP. */
	int (*open)(fq_region *r);
	/* Release; every message of the region has been freed and every ack delivered. */
	void (*close)(fq_region *r);
	/* A zero-copy message pointing at [data, data + size) inside r (checked by the core). */
	int (*msg)(fq_region *r, void *data, size_t size, void *hint, fq_msg **out);
} fqi_region_ops;

typedef struct fqi_transport_desc {
	const char *name;
	const char *schemes;       /* comma-separated URL schemes: "tcp,ipc,inproc" */
	unsigned caps;             /* FQI_CAP_* */
	const fqi_option *options; /* transport options table, terminated by a NULL name */
	size_t option_count;
	const fqi_transport_ops *transport_ops;
	const fqi_msg_ops *msg_ops;
	const fqi_socket_ops *socket_ops;
	const fqi_region_ops *region_ops;
} fqi_transport_desc;

/* Shared "not supported" stubs, for operations a transport does not have. */
int fqi_no_probe(void);
int fqi_no_counter(fq_transport *t, const char *name, uint64_t *value);
int fqi_no_region_open(fq_region *r);
void fqi_no_region_close(fq_region *r);
int fqi_no_region_msg(fq_region *r, void *data, size_t size, void *hint, fq_msg **out);
int fqi_no_shrink(fq_msg *m, size_t size);

/* Registry. */
const fqi_transport_desc *fqi_transport_find(const char *name);
size_t fqi_transport_count(void);
const fqi_transport_desc *fqi_transport_at(size_t i);
bool fqi_transport_serves(const fqi_transport_desc *d, const char *scheme);

#endif /* FQI_TRANSPORT_H */
