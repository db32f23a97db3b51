/*
 * fq_test: a thin layer over Criterion for fabriq tests (in the spirit of nng's NUTS).
 *
 * - FQ_PASS(expr) / FQ_FAIL(expr, code): assert a fabriq return code, printing its name and
 *   message on mismatch.
 * - Objects made through fqt_* (transports, sockets) are tracked and closed by fqt_fini(), and
 *   scratch files (ipc sockets) live in a per-test directory that fqt_fini() removes. A suite
 *   uses them with TestSuite(name, .init = fqt_init, .fini = fqt_fini).
 * - Every wait in these helpers is bounded by FQT_WAIT_MS; nothing sleeps to synchronise.
 *
 * The helpers assert with Criterion and must be called from the test's main thread. The few
 * functions marked "thread-safe" never assert and may be called from worker threads.
 */
#ifndef FQ_TEST_H
#define FQ_TEST_H

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fabriq/fabriq.h"

/* Upper bound for anything that "should happen soon" (a connection, a delivery). */
#define FQT_WAIT_MS 10000
/* Room for any address the helpers make. */
#define FQT_URL_MAX 256

/* ---- Assertions on return codes --------------------------------------------------------- */

#define FQ_PASS(expr)                                                                   \
	do {                                                                            \
		int fqt_rc_ = (expr);                                                   \
		cr_assert(fqt_rc_ >= 0, "%s\n  failed with %d %s (%s)", #expr, fqt_rc_, \
		          fq_err_name(fqt_rc_), fq_strerror(fqt_rc_));                  \
	} while (0)

#define FQ_FAIL(expr, code)                                                                 \
	do {                                                                                \
		int fqt_rc_ = (expr);                                                       \
		int fqt_want_ = (code);                                                     \
		cr_assert(fqt_rc_ == fqt_want_, "%s\n  expected %s, got %d %s (%s)", #expr, \
		          fq_err_name(fqt_want_), fqt_rc_, fq_err_name(fqt_rc_),            \
		          fq_strerror(fqt_rc_));                                            \
	} while (0)

/* ---- Per-test life cycle ---------------------------------------------------------------- */

/* Suite .init: quiet library logging below WARN, reset the tracking tables. */
void fqt_init(void);
/*
 * Suite .fini: close tracked sockets and transports, then remove the scratch directory and
 * anything in it (whether the library cleans up its files is a test case of its own).
 */
void fqt_fini(void);

/* Open a transport instance; closed by fqt_fini unless closed with fqt_transport_close. */
fq_transport *fqt_transport_open(const char *name);
void fqt_transport_close(fq_transport *t);

/*
 * Open a socket with test defaults: linger 0, snd_timeout and rcv_timeout FQT_WAIT_MS (so
 * nothing blocks forever). Tests that need other values set them afterwards.
 */
fq_socket *fqt_socket(fq_transport *t, fq_socket_type type);
/* Close a tracked socket now. */
void fqt_close(fq_socket *s);

/* ---- Addresses -------------------------------------------------------------------------- */

/*
 * A fresh address for `scheme` in buf (FQT_URL_MAX bytes), returned for convenience:
 * ipc: a path in the per-test scratch directory; inproc: a process-unique name;
 * tcp: "tcp://127.0.0.1:0" (bind it with fqt_bind to learn the port).
 */
char *fqt_url(const char *scheme, char *buf);
/* Like fqt_url, but usable before anyone binds (tcp: a port that was free just now). */
char *fqt_url_fixed(const char *scheme, char *buf);
/* Bind and replace url (FQT_URL_MAX bytes) with the resolved address (the real tcp port). */
void fqt_bind(fq_socket *s, char *url);
void fqt_connect(fq_socket *s, const char *url);
/* Bind, retrying while the address is still held by a socket closed just before (bounded). */
void fqt_rebind(fq_socket *s, const char *url);

/*
 * Bind a to a fresh address of `scheme`, connect b to it, and wait (bounded) until a message
 * can pass between them; no probe is left behind (except PUB/SUB, see fqt_sync). Both
 * sockets must be fresh. fqt_marry_url also returns the address.
 */
void fqt_marry(fq_socket *a, fq_socket *b, const char *scheme);
void fqt_marry_url(fq_socket *a, fq_socket *b, const char *scheme, char *url);
/*
 * Wait until a message passes from `from` to `to`, using probe messages that the fqt_recv*
 * helpers skip (a few may be left in flight). Works for PUSH->PULL (also when `from` has other
 * peers), PUB->SUB (subscribes to the probe prefix for the duration), PAIR, and REQ->REP (one
 * full round trip).
 */
void fqt_sync(fq_socket *from, fq_socket *to);

/* ---- Messages --------------------------------------------------------------------------- */

/* Byte i of the test pattern for `seed`. Thread-safe. */
static inline uint8_t fqt_pattern_byte(uint32_t seed, size_t i)
{
	return (uint8_t)((i * 7u) ^ (i >> 8) ^ (i >> 16) ^ (i >> 24) ^ (seed * 151u) ^ (seed >> 8));
}
/* Fill / check a buffer with the pattern. fqt_pattern_find returns the first bad offset or
 * SIZE_MAX when all bytes match. Thread-safe. */
void fqt_pattern_fill(void *data, size_t size, uint32_t seed);
size_t fqt_pattern_find(const void *data, size_t size, uint32_t seed);

/* A message of `size` bytes of the pattern for `seed`. */
fq_msg *fqt_msg_pattern(fq_transport *t, size_t size, uint32_t seed);
/* Assert that m has exactly `size` bytes of the pattern for `seed`. */
void fqt_msg_check(fq_msg *m, size_t size, uint32_t seed);
/* A message holding the bytes of str (without the NUL). */
fq_msg *fqt_msg_str(fq_transport *t, const char *str);
/* Does m hold exactly the bytes of str? */
bool fqt_msg_is(fq_msg *m, const char *str);

/* Is m a probe of fqt_sync? Thread-safe. */
bool fqt_is_probe(fq_msg *m);
/* A probe of fqt_sync in *out, for peers that synchronise by hand. Thread-safe; returns the
 * code of fq_msg_alloc. */
int fqt_probe_alloc(fq_transport *t, fq_msg **out);

/*
 * Large messages from sparse memory: an anonymous mapping in which only a few marker bytes are
 * written, the rest reads as zeros without being committed, so gigabytes cost the sender no
 * memory. fqt_big_msg adopts such a mapping of `size` bytes into *out; its free function
 * unmaps it and adds one to *frees (which must outlive the message). fqt_big_find returns the
 * first offset of data that differs from that content, or SIZE_MAX. Thread-safe; they return
 * fabriq codes and never assert.
 */
int fqt_big_msg(fq_transport *t, size_t size, atomic_int *frees, fq_msg **out);
size_t fqt_big_find(const void *data, size_t size);

/*
 * fq_recv / fq_recvv that skip fqt_sync probes (same return codes). Thread-safe: they never
 * assert.
 */
int fqt_recv(fq_socket *s, fq_msg **out, int flags);
int fqt_recvv(fq_socket *s, fq_parts **out, int flags);

/* Send str as one message (asserts success). */
void fqt_send_str(fq_socket *s, const char *str);
/* Receive one message (skipping probes) and assert it is exactly str. */
void fqt_recv_str(fq_socket *s, const char *expect);

/* ---- Pieces of cases that the conformance suites share ----------------------------------- */

/*
 * Sequenced messages: 8 bytes of the sequence number, then the pattern for that number (size
 * at least 8). fqt_seq_alloc and fqt_seq_ok never assert (thread-safe); fqt_send_seq returns
 * fq_send's code and frees a message it could not send (asserting the ownership rule);
 * fqt_recv_seq receives one (skipping probes), checks size and bytes and returns its number.
 */
int fqt_seq_alloc(fq_transport *t, size_t size, uint64_t seq, fq_msg **out);
bool fqt_seq_ok(fq_msg *m, size_t size, uint64_t seq);
int fqt_send_seq(fq_socket *s, size_t size, uint64_t seq, int flags);
uint64_t fqt_recv_seq(fq_socket *s, size_t size);
/* Message sizes around a receive byte mark of FQT_MARK ("64K"): small, above the mark, just
 * under it, far above, small, just over it, the smallest sequenced message. */
#define FQT_MARK         "64K"
#define FQT_MARK_SIZES_N 7
extern const size_t fqt_mark_sizes[FQT_MARK_SIZES_N];
/* Send sequenced messages 0, 1, ... with FQ_DONTWAIT until FQ_EAGAIN; asserts that it came
 * within `bound` messages, and returns how many were accepted. */
int fqt_fill(fq_socket *push, size_t size, int bound);

/* An adopted heap buffer of the pattern for `seed`; its free function counts in `frees` (one
 * run with the wrong pointer counts 1000). fqt_wait_frees asserts (bounded) that it ran
 * exactly `expect` times. */
typedef struct fqt_adopted {
	atomic_int frees;
	void *data;
} fqt_adopted;
fq_msg *fqt_adopt_pattern(fq_transport *t, size_t size, uint32_t seed, fqt_adopted *a);
void fqt_wait_frees(fqt_adopted *a, int expect);

/*
 * Vectors sent from several threads at once: thread `id` sends `n` vectors of 3 parts; part i
 * is a tag followed by i * 8 bytes. Run fqt_tag_sender_main in a thread; it never asserts and
 * sets err (the first failure) and done.
 */
#define FQT_TAG_MAGIC 0xfab71cu
typedef struct fqt_part_tag {
	uint32_t thread, seq, index, magic;
} fqt_part_tag;
typedef struct fqt_tag_sender {
	fq_socket *s;
	uint32_t id;
	int n;
	atomic_int err;
	atomic_bool done;
} fqt_tag_sender;
void *fqt_tag_sender_main(void *arg);

/* A call that blocks in a thread (fqt_blocked_main): fq_send of m if `send`, else fqt_recv
 * into m; rc and done are set when it returns. */
typedef struct fqt_blocked_call {
	fq_socket *s;
	bool send;
	atomic_int rc;
	atomic_bool done;
	fq_msg *m;
} fqt_blocked_call;
void *fqt_blocked_main(void *arg);

/* Wait (bounded) on the socket's fd as an application's poll loop would: fq_socket_events
 * first, then poll(); returns the events last seen. */
int fqt_wait_events_fd(fq_socket *s, int want);

/* Wait (bounded) until poller p reports a ready socket, and assert that exactly the one at
 * index `ready` is readable and the one at `idle` is not. */
void fqt_poller_expect(fq_poller *p, int ready, int idle);

/* Count the warnings (and worse) that the library logs from fqt_warnings_start until
 * fqt_warnings_stop; fqt_warnings is the count so far. */
void fqt_warnings_start(void);
int fqt_warnings(void);
void fqt_warnings_stop(void);

/* ---- Misc ------------------------------------------------------------------------------- */

/* Join th once *done is set; a thread that does not finish within 3 x FQT_WAIT_MS fails the
 * test instead of hanging it. */
void fqt_join_bounded(pthread_t th, atomic_bool *done, const char *what);

/* Milliseconds on the monotonic clock. Thread-safe. */
int64_t fqt_now_ms(void);
/* Yield a little inside a bounded polling loop (about 1 ms). Thread-safe. */
void fqt_pause(void);
/* The per-test scratch directory (made on first use). */
const char *fqt_scratch_dir(void);

/* A stream that collects what is written to it (error reports of a function under test). */
typedef struct fqt_capture {
	FILE *f;
	char *text;
	size_t len;
} fqt_capture;
void fqt_capture_open(fqt_capture *c);
/* Everything written so far, NUL-terminated (valid until the next write or close). */
const char *fqt_capture_text(fqt_capture *c);
void fqt_capture_close(fqt_capture *c);

/*
 * Parameters of tests that run once per URL scheme of a transport. Plain char arrays: Criterion
 * copies parameters into the test process byte by byte.
 */
typedef struct fqt_scheme_param {
	char scheme[16];
} fqt_scheme_param;

/*
 * The URL schemes transport `name` serves, as a Criterion parameter array (cr_malloc'ed),
 * optionally leaving out the schemes listed in `exclude` (comma-separated, or NULL).
 */
struct criterion_test_params fqt_scheme_params(const char *name, const char *exclude);

#endif /* FQ_TEST_H */
