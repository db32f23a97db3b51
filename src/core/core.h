/*
 * Internal umbrella header of libfabriq: every .c of the core and the transports includes
 * this one file. fq_ is public, fqi_ is internal; nothing here is installed.
 */
#ifndef FQI_CORE_H
#define FQI_CORE_H

#define FQ_BUILDING_LIBRARY 1
#include "fabriq/fabriq.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- Small helpers ---------------------------------------------------------------------- */

#define FQI_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define FQI_UNUSED(x)    ((void)(x))
#define FQI_LIKELY(x)    __builtin_expect(!!(x), 1)
#define FQI_UNLIKELY(x)  __builtin_expect(!!(x), 0)
/* Thread-locals on the hot path: the static TLS model, fine for a few bytes in a .so. */
#define FQI_TLS_FAST     __attribute__((tls_model("initial-exec")))
/* A path kept out of line, so that its caller's fast path saves no registers for it. */
#define FQI_NOINLINE     __attribute__((noinline))

/* Invariant violations (never user or peer input) end the process with a message. */
_Noreturn void fqi_panic(const char *file, int line, const char *what);
#define FQI_ASSERT(cond)                                      \
	do {                                                  \
		if (FQI_UNLIKELY(!(cond)))                    \
			fqi_panic(__FILE__, __LINE__, #cond); \
	} while (0)

/* Wrap an errno value into a fabriq code (known ones map onto FQ_E*). */
int fqi_syserr(int errnum);

/* ---- Logging ---------------------------------------------------------------------------- */

extern _Atomic int fqi_log_level_now;
void fqi_log(fq_log_level level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Formats only when the level is on; keeps errno. */
#define FQI_LOG(level, subsys, ...)                                                             \
	do {                                                                                    \
		if (FQI_UNLIKELY((int)(level) <= atomic_load_explicit(&fqi_log_level_now,       \
		                                                      memory_order_relaxed))) { \
			int fqi_saved_errno_ = errno;                                           \
			fqi_log((level), (subsys), __VA_ARGS__);                                \
			errno = fqi_saved_errno_;                                               \
		}                                                                               \
	} while (0)
#define FQI_ERROR(subsys, ...) FQI_LOG(FQ_LOG_ERROR, subsys, __VA_ARGS__)
#define FQI_WARN(subsys, ...)  FQI_LOG(FQ_LOG_WARN, subsys, __VA_ARGS__)
#define FQI_INFO(subsys, ...)  FQI_LOG(FQ_LOG_INFO, subsys, __VA_ARGS__)
#define FQI_DEBUG(subsys, ...) FQI_LOG(FQ_LOG_DEBUG, subsys, __VA_ARGS__)

/* ---- Options ---------------------------------------------------------------------------- */

/* One row of an options table: drives parsing, defaults, environment, help and fq-info. */
typedef struct fqi_option {
	const char *name;
	fq_opt_type type;
	const char *default_value;
	int64_t min, max; /* accepted range for numeric types */
	const char *help;
} fqi_option;

/* Parse `text` as a value of `o` (range-checked). Errors: FQ_EINVAL, FQ_ERANGE. */
int fqi_option_parse(const fqi_option *o, const char *text, int64_t *out);
/*
 * Fill values[] (one per row) from the defaults, then FQ_<COMPONENT>_<NAME> from the
 * environment, then a "key=value,..." string. Unknown keys: FQ_ENOENT (logged).
 */
int fqi_options_load(const char *component, const fqi_option *table, size_t count, const char *kv,
                     int64_t *values, char **strings);
int fqi_option_find(const fqi_option *table, size_t count, const char *name);

/* Socket options: one table in socket.c, indexed by this enum. */
typedef enum fqi_sockopt_id {
	FQI_SO_SND_HWM,
	FQI_SO_RCV_HWM,
	FQI_SO_SND_HWM_BYTES,
	FQI_SO_RCV_HWM_BYTES,
	FQI_SO_SND_TIMEOUT,
	FQI_SO_RCV_TIMEOUT,
	FQI_SO_LINGER,
	FQI_SO_MAX_MSG_SIZE,
	FQI_SO_RECONNECT_IVL,
	FQI_SO_RECONNECT_IVL_MAX,
	FQI_SO_SND_KERNEL_SIZE,
	FQI_SO_RCV_KERNEL_SIZE,
	FQI_SO_SUBSCRIBE,
	FQI_SO_UNSUBSCRIBE,
	FQI_SO_COUNT
} fqi_sockopt_id;

extern const fqi_option fqi_socket_options[FQI_SO_COUNT];

/* ---- URLs ------------------------------------------------------------------------------- */

#define FQI_URL_MAX 512

typedef struct fqi_url {
	char text[FQI_URL_MAX]; /* the whole URL as given */
	char scheme[16];        /* "tcp" */
	const char *rest;       /* points into text, after "://" */
} fqi_url;

/* Split "scheme://rest". Errors: FQ_EADDRINVAL. */
int fqi_url_parse(const char *text, fqi_url *out);

/* ---- Objects ---------------------------------------------------------------------------- */

typedef void (*fqi_free_fn)(void *data, void *hint);
struct fqi_transport_desc;

struct fq_transport {
	const struct fqi_transport_desc *desc;
	int64_t *opt;              /* transport option values, one per row of desc->options */
	char **opt_str;            /* string option values (or NULL) */
	pthread_mutex_t lock;      /* guards the socket list */
	struct fq_socket *sockets; /* open sockets, closed with a warning by an early close */
	void *priv;
};

/*
 * Every transport's message starts with this header. `ops` is static, so a message can still
 * be read and freed after its transport instance was closed.
 */
struct fq_msg {
	const struct fqi_msg_ops *ops;
	fq_transport *t;
	void *data;
	size_t size;
};

struct fq_parts {
	size_t n;
	size_t bytes;
	fq_msg **msgs;
};

struct fq_socket {
	fq_transport *t;
	const struct fqi_socket_ops *ops;
	fq_socket_type type;
	_Atomic int64_t opt[FQI_SO_COUNT];
	/* Resolved endpoints, appended under ep_lock; read by fq_socket_endpoint. */
	pthread_mutex_t ep_lock;
	size_t n_endpoints, cap_endpoints;
	char **endpoints;
	struct fq_socket *next, *prev; /* in the transport's list */
	void *priv;
};

struct fq_region {
	const struct fqi_region_ops *ops; /* static: the region may outlive its transport */
	fq_transport *t;
	void *data;
	size_t size;
	void (*ack_fn)(const fq_region_ack *acks, size_t n, void *arg);
	void *arg;
	_Atomic long refs; /* the opener's reference + one per live message */
	void *priv;
};

/* Messages pointing into a region hold a reference; the last one releases the region. */
void fqi_region_ref(fq_region *r);
void fqi_region_unref(fq_region *r);

/* Make an empty vector for n parts (recvv implementations). Errors: FQ_ENOMEM. */
int fqi_parts_new(size_t n, fq_parts **out);
/* Free the parts but not the container (for transports that build a vector and fail). */
void fqi_parts_release(fq_parts *p);

/* ---- Per-thread record caches (msg.c) ---------------------------------------------------- */

/*
 * A transport's message records recycled per thread, so that a message that is freed on the
 * thread that allocates the next one never reaches malloc. Declare one per record type:
 *     static _Thread_local fqi_tcache cache FQI_TLS_FAST;
 * fqi_tcache_get gives a record or NULL (then malloc one); fqi_tcache_put keeps one, or
 * returns false when the cache is full (then free it). Everything kept is freed when the
 * thread exits. Records must come from malloc.
 *
 * The slots are allocated when the cache is first armed: a library with static-model
 * thread-locals has its whole thread-local block in the static TLS room, of which little
 * (about 1 KiB) is left for a library loaded with dlopen, so thread-locals stay small.
 */
#define FQI_TCACHE_MAX 64
typedef struct fqi_tcache {
	unsigned n;
	bool armed; /* listed for the thread-exit free, slots allocated */
	struct fqi_tcache *next;
	void **free; /* FQI_TCACHE_MAX slots once armed */
} fqi_tcache;

bool fqi_tcache_arm(fqi_tcache *c);

static inline void *fqi_tcache_get(fqi_tcache *c)
{
	return c->n > 0 ? c->free[--c->n] : NULL;
}

static inline bool fqi_tcache_put(fqi_tcache *c, void *rec)
{
	if (FQI_UNLIKELY(!c->armed) && !fqi_tcache_arm(c))
		return false;
	if (FQI_UNLIKELY(c->n >= FQI_TCACHE_MAX))
		return false;
	c->free[c->n++] = rec;
	return true;
}

/* Keep rec in c, or free it when c is full (or cannot be armed). */
static inline void fqi_tcache_release(fqi_tcache *c, void *rec)
{
	if (!fqi_tcache_put(c, rec))
		free(rec);
}

/* ---- Patterns (pattern.c): for transports that route messages themselves ---------------- */

bool fqi_type_receives(fq_socket_type t);
bool fqi_type_sends(fq_socket_type t);
/* May a socket of type a have a peer of type b? */
bool fqi_types_match(uint32_t a, uint32_t b);

/* A SUB's prefixes (duplicates kept, as zeromq counts them). Not thread-safe. */
typedef struct fqi_subs {
	char **text; /* NUL-terminated copies */
	size_t *len;
	size_t n;
} fqi_subs;
/* Add (or remove one of) `text`. Errors: FQ_ENOMEM (nothing changed). */
int fqi_subs_change(fqi_subs *s, const void *text, size_t len, bool add);
/* Does one prefix match the start of data? */
bool fqi_subs_match(const fqi_subs *s, const void *data, size_t size);
void fqi_subs_free(fqi_subs *s);

/* Wake an eventfd (fd < 0: nothing) / take its count (non-blocking fds). */
void fqi_kick(int fd);
void fqi_drain(int fd);

/* Milliseconds on the monotonic clock, and deadline helpers (-1 timeout: no deadline). */
int64_t fqi_clock_ms(void);
int64_t fqi_deadline(int64_t timeout_ms);
/* Remaining ms until the deadline for poll(): -1 (none), 0 (passed) or positive. */
int fqi_deadline_remaining(int64_t deadline);

#endif /* FQI_CORE_H */
