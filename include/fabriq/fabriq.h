/*
 * fabriq: one C API over several message transports (zeromq, nanomsg, shmem, ofi).
 *
 * This is the whole public core API. Anything not declared here is internal and unsupported.
 *
 * Conventions that hold for every function below unless its comment says otherwise:
 * - Return value: 0 (or a non-negative count) on success, a negative FQ_E* code on failure.
 *   fq_strerror() and fq_err_name() turn a code into text. Nothing is reported through errno.
 * - Ownership of messages: a successful send passes the message to the library and sets the
 *   caller's pointer to NULL; a failed send leaves the message with the caller, unchanged.
 *   A receive hands the received message to the caller, who frees it or sends it on.
 * - Thread-safety: transports, sockets and pollers may be used from any thread; every socket
 *   operation is atomic (a vector of parts is never interleaved with another caller's).
 *   A message and a parts vector belong to one holder at a time and are not locked.
 * - Fork: not fork-safe. A child must not use objects created before fork(); exec instead.
 */
#ifndef FABRIQ_FABRIQ_H
#define FABRIQ_FABRIQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FQ_STATIC_DEFINE)
#define FQ_API
#elif defined(FQ_BUILDING_LIBRARY)
#define FQ_API __attribute__((visibility("default")))
#else
#define FQ_API
#endif

/* ---- Version ---------------------------------------------------------------------------- */

#define FQ_VERSION_MAJOR                     0
#define FQ_VERSION_MINOR                     1
#define FQ_VERSION_PATCH                     0
#define FQ_VERSION_STRING                    "0.1.0"
#define FQ_MAKE_VERSION(major, minor, patch) ((major)*10000 + (minor)*100 + (patch))
#define FQ_VERSION                           FQ_MAKE_VERSION(FQ_VERSION_MAJOR, FQ_VERSION_MINOR, FQ_VERSION_PATCH)

/* The version of the library actually loaded (may differ from the header's). Thread-safe. */
FQ_API const char *fq_version(void);

/* ---- Errors ----------------------------------------------------------------------------- */

/*
 * One table gives the codes, their names and their messages. Operating-system errors that have
 * no fabriq equivalent are wrapped as FQ_ESYS_BASE - errno, so the errno is never lost:
 * FQ_IS_SYSERR(rc) tells, FQ_SYSERR_ERRNO(rc) recovers it.
 */
#define FQ_ERRNO_MAP(X)                                                                         \
	X(EINVAL, -1, "invalid argument")                                                       \
	X(ENOMEM, -2, "out of memory")                                                          \
	X(EAGAIN, -3, "resource temporarily unavailable (back-pressure or nothing to receive)") \
	X(ETIMEDOUT, -4, "operation timed out")                                                 \
	X(EINTR, -5, "operation interrupted")                                                   \
	X(ECLOSED, -6, "object is closed")                                                      \
	X(EMSGSIZE, -7, "message too large")                                                    \
	X(EPROTO, -8, "protocol error from peer")                                               \
	X(EMISMATCH, -9, "transport mismatch")                                                  \
	X(ENOTSUP, -10, "operation not supported by this transport or socket type")             \
	X(EADDRINVAL, -11, "invalid or unsupported address")                                    \
	X(EADDRINUSE, -12, "address already in use")                                            \
	X(ECONNREFUSED, -13, "connection refused")                                              \
	X(ENOENT, -14, "no such entry (unknown name)")                                          \
	X(ESTATE, -15, "operation not valid in the current state")                              \
	X(EPARTS, -16, "message has several parts: receive it with fq_recvv")                   \
	X(ERANGE, -17, "value out of range")                                                    \
	X(EPERM, -18, "permission denied")                                                      \
	X(EUNAVAIL, -19, "transport not usable on this machine")                                \
	X(EINTERNAL, -20, "internal error")                                                     \
	X(EEXIST, -21, "already exists")

typedef enum fq_err {
	FQ_OK = 0,
#define FQ_ERR_ENUM_(name, value, msg) FQ_##name = (value),
	FQ_ERRNO_MAP(FQ_ERR_ENUM_)
#undef FQ_ERR_ENUM_
} fq_err;

#define FQ_ESYS_BASE        (-1000)
#define FQ_IS_SYSERR(rc)    ((rc) <= FQ_ESYS_BASE)
#define FQ_SYSERR_ERRNO(rc) (FQ_ESYS_BASE - (rc))

/* Message for a code (never NULL; unknown codes give "unknown error"). Thread-safe. */
FQ_API const char *fq_strerror(int err);
/* Symbolic name for a code, e.g. "FQ_EAGAIN" (never NULL). Thread-safe. */
FQ_API const char *fq_err_name(int err);

/* ---- Logging ---------------------------------------------------------------------------- */

typedef enum fq_log_level {
	FQ_LOG_NONE = 0,
	FQ_LOG_ERROR = 1,
	FQ_LOG_WARN = 2,
	FQ_LOG_INFO = 3,
	FQ_LOG_DEBUG = 4,
	FQ_LOG_TRACE = 5,
} fq_log_level;

/*
 * Log sink. Called from any library thread, possibly concurrently; must not call back into a
 * socket. `subsys` is a short tag such as "core" or "zeromq"; `msg` has no trailing newline.
 */
typedef void (*fq_log_fn)(fq_log_level level, const char *subsys, const char *msg, void *arg);

/*
 * Install a log sink (NULL restores the default, which writes to stderr). The level starts at
 * FQ_LOG_WARN, or at the value of the environment variable FQ_LOG_LEVEL
 * (none|error|warn|info|debug|trace). Both calls are thread-safe.
 */
FQ_API void fq_log_set_handler(fq_log_fn fn, void *arg);
FQ_API void fq_log_set_level(fq_log_level level);
FQ_API fq_log_level fq_log_get_level(void);
/* Parse "warn" etc.; returns 0 and sets *out, or FQ_EINVAL. */
FQ_API int fq_log_level_parse(const char *text, fq_log_level *out);
/*
 * Log a printf-style message through the installed sink when `level` is enabled (the message
 * is cut at 1023 bytes). For applications, devices and plugins. Thread-safe.
 */
FQ_API void fq_log(fq_log_level level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Types ------------------------------------------------------------------------------ */

typedef struct fq_transport fq_transport; /* a transport instance: context, segments, domain */
typedef struct fq_msg fq_msg;             /* one blob, owned by exactly one holder */
typedef struct fq_socket fq_socket;       /* typed endpoint: bind/connect many addresses */
typedef struct fq_region fq_region;       /* user-managed memory registered with a transport */
typedef struct fq_poller fq_poller;
typedef struct fq_parts fq_parts; /* received vector of parts */

typedef enum fq_socket_type {
	FQ_PAIR = 0,
	FQ_PUB = 1,
	FQ_SUB = 2,
	FQ_REQ = 3,
	FQ_REP = 4,
	FQ_PUSH = 5,
	FQ_PULL = 6,
} fq_socket_type;

/* Flags for send and receive calls. */
#define FQ_DONTWAIT 0x1 /* never block: FQ_EAGAIN instead */

/* Poll events. */
#define FQ_POLLIN  0x1
#define FQ_POLLOUT 0x2

/* ---- Transports ------------------------------------------------------------------------- */

/*
 * Open an instance of the transport called `name` ("zeromq", ...). `options` is NULL or
 * "key=value,key=value" with keys from that transport's option table (fq-info --options);
 * environment variables FQ_<TRANSPORT>_<KEY> give defaults. Errors: FQ_ENOENT (unknown
 * transport or option), FQ_EINVAL (bad value), FQ_EUNAVAIL, FQ_ENOMEM. Thread-safe.
 */
FQ_API int fq_transport_open(fq_transport **out, const char *name, const char *options);
/*
 * Close a transport. All its sockets must be closed first; messages of the transport that are
 * still held stay valid until freed. Blocks for the linger of sockets closed just before.
 * NULL is ignored.
 */
FQ_API void fq_transport_close(fq_transport *t);
/* Name of the transport ("zeromq"). */
FQ_API const char *fq_transport_name(const fq_transport *t);
/*
 * Read a counter of the instance by name, for benchmarks and monitoring. Known names:
 * "registrations" (ofi: memory registrations made so far; a steady state makes none).
 * Never blocks; thread-safe. Errors: FQ_ENOENT (the transport has no such counter),
 * FQ_EINVAL (NULL argument).
 */
FQ_API int fq_transport_counter(fq_transport *t, const char *name, uint64_t *value);

/* Number of transports compiled in, and the name of the i-th (NULL when out of range). */
FQ_API size_t fq_transport_count(void);
FQ_API const char *fq_transport_name_at(size_t i);
/* 0 if the transport is compiled in and usable on this machine, else a negative code. */
FQ_API int fq_transport_probe(const char *name);
/*
 * Does this kernel offer SMC (RFC 7609 shared-memory communications: SMC-R over RoCE, SMC-D),
 * which the `smc=try|require` option of transports with TCP sockets asks for
 * (fabriq-smc(7))? Creates and closes one socket (AF_SMC, then AF_INET with IPPROTO_SMC).
 * Returns 0 if the kernel can create SMC sockets, FQ_EUNAVAIL if it cannot, another negative
 * code if socket(2) failed otherwise (e.g. out of descriptors). 0 does not mean a connection
 * will use SMC: that also needs RDMA hardware (or an ISM device) on both ends, and SMC falls
 * back to TCP on its own where it is missing. Does not block; thread-safe.
 */
FQ_API int fq_smc_probe(void);

/* ---- Messages --------------------------------------------------------------------------- */

/*
 * Allocate a message of `size` bytes (0 is fine) in the transport's memory. The caller owns it.
 * Errors: FQ_EINVAL, FQ_ENOMEM. Thread-safe.
 */
FQ_API int fq_msg_alloc(fq_transport *t, size_t size, fq_msg **out);
/*
 * Wrap the caller's buffer without copying where the transport can send from user memory.
 * Ownership of `data` passes to the message: `free_fn(data, hint)` runs exactly once when the
 * library no longer needs it, on any thread (NULL free_fn: the memory is never freed and must
 * outlive every use). On failure nothing was taken and free_fn is not called.
 */
FQ_API int fq_msg_adopt(fq_transport *t, void *data, size_t size,
                        void (*free_fn)(void *data, void *hint), void *hint, fq_msg **out);
/*
 * A shared, read-only, reference-counted copy: both messages see the same bytes; neither may
 * be written after this call. Each is freed (or sent) on its own. Errors: FQ_ENOMEM.
 */
FQ_API int fq_msg_copy(const fq_msg *m, fq_msg **out);
/* Data pointer (valid until the message is freed or sent) and size. */
FQ_API void *fq_msg_data(fq_msg *m);
FQ_API size_t fq_msg_size(const fq_msg *m);
/* Transport the message belongs to. */
FQ_API fq_transport *fq_msg_transport(const fq_msg *m);
/* Reduce the size; never grows (FQ_EINVAL if `size` > current size). */
FQ_API int fq_msg_shrink(fq_msg *m, size_t size);
/* Release a message. NULL is ignored. */
FQ_API void fq_msg_free(fq_msg *m);

/* ---- Received vectors of parts ---------------------------------------------------------- */

/* Number of parts, and total bytes. */
FQ_API size_t fq_parts_count(const fq_parts *p);
FQ_API size_t fq_parts_bytes(const fq_parts *p);
/* Borrow part i (owned by the vector; NULL if i is out of range or the part was taken). */
FQ_API fq_msg *fq_parts_at(fq_parts *p, size_t i);
/* Take part i out of the vector: the caller then owns it (NULL if out of range or taken). */
FQ_API fq_msg *fq_parts_take(fq_parts *p, size_t i);
/* Free the vector and every part still in it. NULL is ignored. */
FQ_API void fq_parts_free(fq_parts *p);

/* ---- Sockets ---------------------------------------------------------------------------- */

/*
 * Open a socket of `type` on transport `t`. Errors: FQ_EINVAL, FQ_ENOTSUP, FQ_ENOMEM.
 * Options take their defaults from the socket option table (FQ_SOCKET_<NAME> in the
 * environment overrides a default) and may be set with fq_socket_set before bind/connect.
 */
FQ_API int fq_socket_open(fq_socket **out, fq_transport *t, fq_socket_type type);
/*
 * Set an option by name from a string, e.g. ("snd_hwm", "1000"), ("rcv_timeout", "250"),
 * ("max_msg_size", "16M"), ("subscribe", "topic"). Sizes accept K/M/G/T suffixes (powers of two).
 * Queue limits apply to connections made after the call. Errors: FQ_ENOENT (unknown option),
 * FQ_EINVAL (bad value), FQ_ENOTSUP (not supported by this transport). Thread-safe.
 */
FQ_API int fq_socket_set(fq_socket *s, const char *option, const char *value);
/* Typed setter and getter for integer, size and duration options. */
FQ_API int fq_socket_set_int(fq_socket *s, const char *option, int64_t value);
FQ_API int fq_socket_get_int(fq_socket *s, const char *option, int64_t *value);
/* Socket type and transport. */
FQ_API fq_socket_type fq_socket_get_type(const fq_socket *s);
FQ_API fq_transport *fq_socket_transport(const fq_socket *s);
/* "push", "pull", ... and the reverse. */
FQ_API const char *fq_socket_type_name(fq_socket_type type);
FQ_API int fq_socket_type_parse(const char *name, fq_socket_type *out);

/*
 * Bind to a URL ("tcp://host:0" picks a free port, host "*" means every interface;
 * "ipc:///path"; "inproc://name"). A socket may
 * bind and connect to many addresses. Errors: FQ_EADDRINVAL (malformed, or a scheme this
 * transport does not serve), FQ_EADDRINUSE, FQ_EMISMATCH, FQ_EUNAVAIL (a transport option
 * asks for what this machine lacks, e.g. smc=require without SMC, fabriq-smc(7)). Does not
 * block on peers.
 */
FQ_API int fq_bind(fq_socket *s, const char *url);
/*
 * Connect to a URL. Succeeds before the peer binds; the connection is (re)established in the
 * background whenever the peer is there. Errors: FQ_EADDRINVAL, FQ_EMISMATCH, FQ_EUNAVAIL
 * (as for fq_bind).
 */
FQ_API int fq_connect(fq_socket *s, const char *url);
/*
 * The i-th bound or connected address, resolved (the real port after port 0), written
 * NUL-terminated into buf. Errors: FQ_ENOENT (no i-th endpoint), FQ_ERANGE (buf too small).
 */
FQ_API int fq_socket_endpoint(fq_socket *s, size_t i, char *buf, size_t len);

/*
 * Send one message. Success: *m is set to NULL, the library owns the message. Failure: *m is
 * untouched and still the caller's. Blocks while the queue is full (up to snd_timeout; forever
 * if -1) unless FQ_DONTWAIT. A message of another transport is copied once by the library.
 * Errors: FQ_EAGAIN, FQ_ETIMEDOUT, FQ_EINTR, FQ_ESTATE (e.g. REQ sending twice), FQ_ENOTSUP
 * (socket type cannot send), FQ_EMSGSIZE, FQ_EINVAL.
 */
FQ_API int fq_send(fq_socket *s, fq_msg **m, int flags);
/*
 * Receive one message; the caller owns *out on success. Blocks up to rcv_timeout unless
 * FQ_DONTWAIT. A vector of several parts is not returned by fq_recv: FQ_EPARTS, and the vector
 * stays queued for fq_recvv. Errors: FQ_EAGAIN, FQ_ETIMEDOUT, FQ_EINTR, FQ_ESTATE, FQ_ENOTSUP,
 * FQ_EPARTS.
 */
FQ_API int fq_recv(fq_socket *s, fq_msg **out, int flags);
/*
 * Send n >= 1 messages as one atomic vector: the receiver gets all parts, in order, or none.
 * Success: every parts[i] is set to NULL. Failure: every message stays the caller's.
 * Same blocking and errors as fq_send.
 */
FQ_API int fq_sendv(fq_socket *s, fq_msg **parts, size_t n, int flags);
/* Receive one vector of parts (a single message arrives as a vector of one). */
FQ_API int fq_recvv(fq_socket *s, fq_parts **out, int flags);

/*
 * Ready events (FQ_POLLIN | FQ_POLLOUT) right now, without blocking; negative on error.
 */
FQ_API int fq_socket_events(fq_socket *s);
/*
 * A file descriptor for the application's own poll/epoll loop. It becomes readable when the
 * socket's events may have changed; then call fq_socket_events() (or send/receive with
 * FQ_DONTWAIT until FQ_EAGAIN) before waiting on it again: it is a wake-up hint, not a level.
 * The fd is owned by the socket; never read, write or close it.
 */
FQ_API int fq_socket_fd(fq_socket *s, int *fd);
/*
 * Wake every thread blocked in this socket's send or receive with FQ_EINTR, now and until
 * fq_socket_resume(). For shutting down or changing state while threads wait. Thread-safe.
 */
FQ_API void fq_socket_interrupt(fq_socket *s);
FQ_API void fq_socket_resume(fq_socket *s);
/*
 * Close the socket. Unsent messages are delivered for up to `linger` ms in the background.
 * No other thread may use the socket during or after the call. NULL is ignored.
 */
FQ_API void fq_socket_close(fq_socket *s);

/* ---- Poller ----------------------------------------------------------------------------- */

/* A set of sockets of any transports to wait on together. Not thread-safe: one user. */
FQ_API int fq_poller_open(fq_poller **out);
/* Add a socket with the events of interest; returns its index (>= 0) in the poller. */
FQ_API int fq_poller_add(fq_poller *p, fq_socket *s, int events);
/*
 * Wait until at least one socket is ready or timeout_ms passes (-1: forever, 0: just check).
 * Returns the number of ready sockets (0 on timeout). FQ_EINTR if a socket was interrupted.
 */
FQ_API int fq_poller_wait(fq_poller *p, int timeout_ms);
/* Events found ready for the socket at `index` by the last fq_poller_wait. */
FQ_API int fq_poller_events(const fq_poller *p, size_t index);
FQ_API void fq_poller_close(fq_poller *p);

/* ---- Regions ---------------------------------------------------------------------------- */

typedef struct fq_region_ack {
	void *data;
	size_t size;
	void *hint;
} fq_region_ack;

/*
 * Register `size` bytes of user-managed memory with the transport (readout buffers). Messages
 * made with fq_msg_from_region point into it; when the last holder frees such a message, the
 * region's ack_fn gets (data, size, hint), possibly batched, on any thread.
 * Errors: FQ_ENOTSUP where the transport has no regions, FQ_ENOMEM.
 */
FQ_API int fq_region_open(fq_region **out, fq_transport *t, size_t size,
                          void (*ack_fn)(const fq_region_ack *acks, size_t n, void *arg),
                          void *arg);
FQ_API void *fq_region_data(fq_region *r);
FQ_API size_t fq_region_size(const fq_region *r);
/* A message for [data, data+size) inside the region; zero-copy. FQ_ERANGE if not inside. */
FQ_API int fq_msg_from_region(fq_region *r, void *data, size_t size, void *hint, fq_msg **out);
/*
 * Give up the opener's reference. Never blocks: messages still pointing into the region keep
 * it alive, their acks are still delivered, and the memory goes with the last of them.
 */
FQ_API void fq_region_close(fq_region *r);

/* ---- Options catalogue ------------------------------------------------------------------ */

typedef enum fq_opt_type {
	FQ_OPT_BOOL,
	FQ_OPT_INT,      /* signed integer */
	FQ_OPT_SIZE,     /* bytes, K/M/G/T suffixes */
	FQ_OPT_DURATION, /* milliseconds, -1 = infinite */
	FQ_OPT_STRING,
} fq_opt_type;

typedef struct fq_opt_info {
	const char *component; /* "socket", "zeromq", ... */
	const char *name;
	fq_opt_type type;
	const char *default_value; /* as text */
	const char *help;
} fq_opt_info;

/*
 * Walk every option of every component compiled in (socket options, transport options).
 * Returns 0 and fills *out for i < count, FQ_ENOENT past the end. Thread-safe.
 */
FQ_API int fq_option_at(size_t i, fq_opt_info *out);
/*
 * Parse `text` as a value of `type`, as option tables do: bools (1/0, true/false, yes/no,
 * on/off, y/n), integers, sizes (K/M/G/T binary suffixes, optionally "iB" or "B"), durations
 * (milliseconds, -1 or "inf" = infinite; sizes >= 0, durations >= -1). Strings give 0.
 * Errors: FQ_EINVAL (not a value of that type), FQ_ERANGE (out of range). Thread-safe.
 */
FQ_API int fq_opt_parse(fq_opt_type type, const char *text, int64_t *out);
/* "bool", "int", "size", "duration", "string" ("unknown" out of range). Thread-safe. */
FQ_API const char *fq_opt_type_name(fq_opt_type type);

#ifdef __cplusplus
}
#endif

#endif /* FABRIQ_FABRIQ_H */
