/*
 * The conformance cases that need two processes: each side has its own transport instance in
 * its own address space (its own endpoint, segments and registrations), as in a real pipeline.
 * Compiled once per transport with -DFQT_TRANSPORT="name"; every case runs once per URL scheme
 * that crosses processes.
 *
 * The peer is this program started again (fork and exec, so it inherits no library state:
 * Criterion itself uses libnanomsg) with "--twoproc-peer ROLE SCHEME ARG"; it speaks through
 * two pipes on fds 3 and 4: it learns the address to bind or connect to, says which address
 * it bound, and reports its end by its exit status. It never uses Criterion: a failing check
 * prints its reason and exits non-zero, which fails the case. Every wait is bounded; a case
 * that fails kills its children.
 */
#include "fq_test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FQT_TRANSPORT
#error "compile with -DFQT_TRANSPORT=\"transport name\""
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* ---- Children ----------------------------------------------------------------------------- */

typedef struct child {
	pid_t pid;
	int to, from; /* pipes: parent -> child, child -> parent */
} child;

typedef void (*child_fn)(child *self, const char *scheme, int arg);

static child kids[8];
static int nkids;

static void kill_kids(void)
{
	for (int i = 0; i < nkids; i++) {
		if (kids[i].pid > 0) {
			kill(kids[i].pid, SIGKILL);
			waitpid(kids[i].pid, NULL, 0);
			kids[i].pid = 0;
		}
		close(kids[i].to);
		close(kids[i].from);
	}
	nkids = 0;
}

static void fini(void)
{
	kill_kids();
	fqt_fini();
}

static void init(void)
{
	signal(SIGPIPE, SIG_IGN); /* a dead peer's pipe fails the write, not the runner */
	fqt_init();
}

TestSuite(twoproc, .init = init, .fini = fini, .timeout = 240);

/* In a child: report a failed check and leave. */
#define CHK(expr)                                                                                \
	do {                                                                                     \
		int chk_rc_ = (expr);                                                            \
		if (chk_rc_ < 0) {                                                               \
			fprintf(stderr, "twoproc child %d: %s:%d: %s: %s (%s)\n", (int)getpid(), \
			        __FILE__, __LINE__, #expr, fq_err_name(chk_rc_),                 \
			        fq_strerror(chk_rc_));                                           \
			_exit(2);                                                                \
		}                                                                                \
	} while (0)
#define CHK_TRUE(cond, ...)                                                                   \
	do {                                                                                  \
		if (!(cond)) {                                                                \
			fprintf(stderr, "twoproc child %d: %s:%d: ", (int)getpid(), __FILE__, \
			        __LINE__);                                                    \
			fprintf(stderr, __VA_ARGS__);                                         \
			fputc('\n', stderr);                                                  \
			_exit(3);                                                             \
		}                                                                             \
	} while (0)

/* Write one line (no newline in s). */
static bool put_line(int fd, const char *s)
{
	size_t len = strlen(s);
	char buf[FQT_URL_MAX + 2];

	if (len > FQT_URL_MAX)
		return false;
	memcpy(buf, s, len);
	buf[len++] = '\n';
	return write(fd, buf, len) == (ssize_t)len;
}

/* Read one line within `ms` milliseconds; false on timeout or end. */
static bool get_line_within(int fd, char *buf, size_t cap, int ms)
{
	int64_t end = fqt_now_ms() + ms;
	size_t n = 0;

	while (n + 1 < cap) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int left = (int)(end - fqt_now_ms());
		ssize_t r;

		if (left <= 0 || poll(&p, 1, left) <= 0)
			return false;
		r = read(fd, buf + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			return true;
		}
		n++;
	}
	return false;
}

static bool get_line(int fd, char *buf, size_t cap)
{
	return get_line_within(fd, buf, cap, FQT_WAIT_MS);
}

/* The peer roles, by name (main() starts one in a peer process). */
static void seq_push_child(child *self, const char *scheme, int arg);
static void seq_pull_child(child *self, const char *scheme, int arg);
static void vec_child(child *self, const char *scheme, int arg);
static void echo_child(child *self, const char *scheme, int arg);
static void pub_child(child *self, const char *scheme, int arg);
static void fan_child(child *self, const char *scheme, int arg);
static void rsock_child(child *self, const char *scheme, int type);

static const struct role {
	const char *name;
	child_fn fn;
} roles[] = {
    {"seq_push", seq_push_child}, {"seq_pull", seq_pull_child}, {"vec", vec_child},
    {"echo", echo_child},         {"pub", pub_child},           {"fan", fan_child},
    {"rsock", rsock_child},
};

static const char *role_name(child_fn fn)
{
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (roles[i].fn == fn)
			return roles[i].name;
	return NULL;
}

extern char **environ;

/* Start role fn in a peer process; returns its record. */
static child *spawn(child_fn fn, const char *scheme, int arg)
{
	int down[2], up[2];
	char arg_text[16], *argv[6];
	const char *name = role_name(fn);
	child *k;

	cr_assert_not_null(name);
	cr_assert_lt(nkids, (int)(sizeof(kids) / sizeof(kids[0])));
	cr_assert_eq(pipe2(down, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(up, O_CLOEXEC), 0);
	fflush(NULL);
	k = &kids[nkids++];
	k->pid = fork();
	cr_assert_geq(k->pid, 0, "fork: %s", strerror(errno));
	if (k->pid == 0) {
		/* The peer: pipes on fds 3 and 4, nothing of Criterion's sandbox (BXFI_*). */
		size_t n = 0, envc = 0;
		char **env;

		while (environ[envc] != NULL)
			envc++;
		env = calloc(envc + 1, sizeof(*env));
		for (size_t i = 0; env != NULL && i < envc; i++)
			if (strncmp(environ[i], "BXFI", 4) != 0)
				env[n++] = environ[i];
		if (dup2(down[0], 3) < 0 || dup2(up[1], 4) < 0 || env == NULL)
			_exit(126);
		snprintf(arg_text, sizeof(arg_text), "%d", arg);
		argv[0] = (char *)"/proc/self/exe";
		argv[1] = (char *)"--twoproc-peer";
		argv[2] = (char *)name;
		argv[3] = (char *)scheme;
		argv[4] = arg_text;
		argv[5] = NULL;
		execve("/proc/self/exe", argv, env);
		_exit(127);
	}
	close(down[0]);
	close(up[1]);
	k->to = down[1];
	k->from = up[0];
	return k;
}

/* Wait (bounded) for a child's end and check that it succeeded. */
static void reap(child *k)
{
	int64_t end = fqt_now_ms() + 6 * FQT_WAIT_MS;
	int status = 0;
	pid_t r;

	while ((r = waitpid(k->pid, &status, WNOHANG)) == 0 && fqt_now_ms() < end)
		fqt_pause();
	if (r == 0) {
		kill(k->pid, SIGKILL);
		waitpid(k->pid, &status, 0);
		k->pid = 0;
		cr_assert_fail("the peer process did not end");
	}
	k->pid = 0;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	          "the peer process failed (status %#x; its reason is on stderr)", status);
}

/* The child's transport and a socket with bounded waits and a linger that delivers. */
static fq_socket *child_socket(fq_transport **t, fq_socket_type type)
{
	fq_socket *s = NULL;

	CHK(fq_transport_open(t, FQT_TRANSPORT, NULL));
	CHK(fq_socket_open(&s, *t, type));
	CHK(fq_socket_set_int(s, "linger", FQT_WAIT_MS));
	CHK(fq_socket_set_int(s, "snd_timeout", FQT_WAIT_MS));
	CHK(fq_socket_set_int(s, "rcv_timeout", FQT_WAIT_MS));
	return s;
}

static void child_close(fq_transport *t, fq_socket *s)
{
	fq_socket_close(s);
	fq_transport_close(t);
}

/*
 * The child's address: "bind <url>" (it binds and answers with the resolved address) or
 * "connect <url>".
 */
static void child_attach(child *self, fq_socket *s)
{
	char line[FQT_URL_MAX + 16], resolved[FQT_URL_MAX];
	size_t i = 0;
	int rc = 0;

	/* A child may wait for others to finish first (fan_in_and_return). */
	CHK_TRUE(get_line_within(self->from, line, sizeof(line), 6 * FQT_WAIT_MS),
	         "no address from the parent");
	if (strncmp(line, "connect ", 8) == 0) {
		CHK(fq_connect(s, line + 8));
		return;
	}
	CHK_TRUE(strncmp(line, "bind ", 5) == 0, "bad command %s", line);
	CHK(fq_bind(s, line + 5));
	while (rc == 0)
		rc = fq_socket_endpoint(s, i++, resolved, sizeof(resolved));
	CHK_TRUE(i >= 2, "no endpoint after bind");
	CHK(fq_socket_endpoint(s, i - 2, resolved, sizeof(resolved)));
	CHK_TRUE(put_line(self->to, resolved), "cannot answer the parent");
}

/* Wait for the parent's "go" (or any line). */
static void child_wait_go(child *self)
{
	char line[64];

	CHK_TRUE(get_line(self->from, line, sizeof(line)), "no go from the parent");
}

/*
 * A sender waits for the parent to have everything before it closes: closing is not a
 * delivery guarantee on every transport (libnanomsg drops what is in flight, fabriq-nanomsg(7)).
 */
static void child_wait_done(child *self)
{
	char line[64];

	CHK_TRUE(get_line_within(self->from, line, sizeof(line), 6 * FQT_WAIT_MS),
	         "the parent never said it had everything");
}

/* ---- Parent side -------------------------------------------------------------------------- */

static fq_transport *tp(void)
{
	static fq_transport *t;

	if (t == NULL)
		t = fqt_transport_open(FQT_TRANSPORT);
	return t;
}

/* The child binds a fresh address of scheme; returns the resolved one in url. */
static void kid_binds(child *k, const char *scheme, char *url)
{
	char cmd[FQT_URL_MAX + 16];

	snprintf(cmd, sizeof(cmd), "bind %s", fqt_url(scheme, url));
	cr_assert(put_line(k->to, cmd));
	cr_assert(get_line(k->from, url, FQT_URL_MAX), "the peer did not say where it bound");
}

static void kid_connects(child *k, const char *url)
{
	char cmd[FQT_URL_MAX + 16];

	snprintf(cmd, sizeof(cmd), "connect %s", url);
	cr_assert(put_line(k->to, cmd));
}

static void go(child *k)
{
	cr_assert(put_line(k->to, "go"));
}

/* Parameters: schemes that cross processes (not inproc://). */
#define PER_SCHEME(name, ...)                                                                 \
	static void name##_body(const char *scheme);                                          \
	ParameterizedTestParameters(twoproc, name)                                            \
	{                                                                                     \
		return fqt_scheme_params(FQT_TRANSPORT, "inproc");                            \
	}                                                                                     \
	ParameterizedTest(fqt_scheme_param *p, twoproc, name, __VA_ARGS__)                    \
	{                                                                                     \
		fprintf(stderr, "twoproc %s: %s over %s\n", FQT_TRANSPORT, #name, p->scheme); \
		name##_body(p->scheme);                                                       \
	}                                                                                     \
	static void name##_body(const char *scheme)

/* ---- Sequenced messages (both sides) ------------------------------------------------------ */

/* Sizes that cross every threshold of the transports: empty, tiny, around 16 KiB (the ofi
 * eager limit), rendezvous and chunked reads. */
static const size_t seq_sizes[] = {
    0,         1,       8,           64,      1 * KiB, 16 * KiB - 40, 16 * KiB, 16 * KiB + 1,
    100 * KiB, 1 * MiB, 5 * MiB + 3, 64 * MiB};
#define N_SIZES    (sizeof(seq_sizes) / sizeof(seq_sizes[0]))
#define SEQ_ROUNDS 3

static uint32_t seq_seed(size_t k)
{
	return (uint32_t)(k * 2654435761u);
}

/* Message k of the sequence: size seq_sizes[k % N_SIZES], pattern of seed k. */
static fq_msg *seq_make(fq_transport *t, size_t k)
{
	size_t size = seq_sizes[k % N_SIZES];
	fq_msg *m = NULL;

	if (fq_msg_alloc(t, size, &m) != 0)
		return NULL;
	fqt_pattern_fill(fq_msg_data(m), size, seq_seed(k));
	return m;
}

static bool seq_ok(fq_msg *m, size_t k)
{
	size_t size = seq_sizes[k % N_SIZES];

	return fq_msg_size(m) == size &&
	       fqt_pattern_find(fq_msg_data(m), size, seq_seed(k)) == SIZE_MAX;
}

/* The child's half: send (or receive) the whole sequence on a socket of `type`. */
static void child_seq(child *self, fq_socket_type type, bool sends)
{
	fq_transport *t;
	fq_socket *s = child_socket(&t, type);

	child_attach(self, s);
	child_wait_go(self);
	for (size_t k = 0; k < SEQ_ROUNDS * N_SIZES; k++) {
		fq_msg *m = NULL;

		if (sends) {
			m = seq_make(t, k);
			CHK_TRUE(m != NULL, "fq_msg_alloc failed");
			CHK(fq_send(s, &m, 0));
		} else {
			CHK(fq_recv(s, &m, 0));
			CHK_TRUE(seq_ok(m, k), "message %zu: %zu bytes, or its bytes differ", k,
			         fq_msg_size(m));
			fq_msg_free(m);
		}
	}
	if (sends)
		child_wait_done(self);
	child_close(t, s);
}

static void seq_push_child(child *self, const char *scheme, int arg)
{
	(void)scheme, (void)arg;
	child_seq(self, FQ_PUSH, true);
}

static void seq_pull_child(child *self, const char *scheme, int arg)
{
	(void)scheme, (void)arg;
	child_seq(self, FQ_PULL, false);
}

static void parent_recv_seq(fq_socket *s)
{
	for (size_t k = 0; k < SEQ_ROUNDS * N_SIZES; k++) {
		fq_msg *m = NULL;

		FQ_PASS(fqt_recv(s, &m, 0));
		cr_assert(seq_ok(m, k), "message %zu: %zu bytes (%zu sent), or its bytes differ", k,
		          fq_msg_size(m), seq_sizes[k % N_SIZES]);
		fq_msg_free(m);
	}
}

PER_SCHEME(push_pull_sizes, .description = "0 B to 64 MiB in order; the sender's process binds")
{
	child *k = spawn(seq_push_child, scheme, 0);
	fq_socket *pull = fqt_socket(tp(), FQ_PULL);
	char url[FQT_URL_MAX];

	kid_binds(k, scheme, url);
	fqt_connect(pull, url);
	go(k);
	parent_recv_seq(pull);
	go(k); /* done */
	reap(k);
}

PER_SCHEME(pull_push_sizes,
           .description = "0 B to 64 MiB in order; the receiver's process binds, the sender's "
                          "connects before it")
{
	child *k = spawn(seq_pull_child, scheme, 0);
	fq_socket *push = fqt_socket(tp(), FQ_PUSH);
	char url[FQT_URL_MAX];

	/* Connect first: the child binds after the parent's connect is under way. */
	fqt_url_fixed(scheme, url);
	fqt_connect(push, url);
	FQ_PASS(fq_socket_set_int(push, "linger", FQT_WAIT_MS));
	{
		char cmd[FQT_URL_MAX + 16], got[FQT_URL_MAX];

		snprintf(cmd, sizeof(cmd), "bind %s", url);
		cr_assert(put_line(k->to, cmd));
		cr_assert(get_line(k->from, got, sizeof(got)));
	}
	go(k);
	for (size_t i = 0; i < SEQ_ROUNDS * N_SIZES; i++) {
		fq_msg *m = seq_make(tp(), i);

		cr_assert_not_null(m);
		FQ_PASS(fq_send(push, &m, 0));
	}
	reap(k); /* it has checked every message */
}

/* ---- Vectors ------------------------------------------------------------------------------ */

/* Vectors of n parts; part i of vector n has part_size(n, i) bytes (empty parts included). */
static const size_t vec_counts[] = {1, 2, 3, 64, 600, 1000, 2000};
#define N_VECS (sizeof(vec_counts) / sizeof(vec_counts[0]))

static size_t part_size(size_t n, size_t i)
{
	switch (n) {
	case 2:
		return i == 0 ? 0 : 100;
	case 3:
		return i == 0 ? 10 : i == 1 ? 0 : 3 * MiB + 1; /* rendezvous, mixed */
	case 64:
		return i % 3 == 0 ? 0 : i * 1000; /* many parts read with gathered reads */
	case 600:
		return i % 5 == 0 ? 0 : 40; /* more parts than most iov limits, small */
	case 1000:
		return i % 100 == 1 ? 200000 : 50; /* a part table larger than a receive buffer */
	case 2000:
		return i % 7 == 0 ? 0 : 100;
	default:
		return 5;
	}
}

static void vec_child(child *self, const char *scheme, int arg)
{
	fq_transport *t;
	fq_socket *s = child_socket(&t, FQ_PUSH);

	(void)scheme, (void)arg;
	child_attach(self, s);
	child_wait_go(self);
	for (int round = 0; round < 2; round++) {
		for (size_t v = 0; v < N_VECS; v++) {
			size_t n = vec_counts[v];
			fq_msg **parts = calloc(n, sizeof(*parts));

			CHK_TRUE(parts != NULL, "out of memory");
			for (size_t i = 0; i < n; i++) {
				CHK(fq_msg_alloc(t, part_size(n, i), &parts[i]));
				fqt_pattern_fill(fq_msg_data(parts[i]), part_size(n, i),
				                 (uint32_t)(n * 1000 + i));
			}
			CHK(fq_sendv(s, parts, n, 0));
			for (size_t i = 0; i < n; i++)
				CHK_TRUE(parts[i] == NULL, "fq_sendv left part %zu", i);
			free(parts);
		}
	}
	child_wait_done(self);
	child_close(t, s);
}

PER_SCHEME(vectors, .description = "vectors of 1 to 2000 parts, eager and rendezvous, arrive whole")
{
	child *k = spawn(vec_child, scheme, 0);
	fq_socket *pull = fqt_socket(tp(), FQ_PULL);
	char url[FQT_URL_MAX];

	fqt_bind(pull, fqt_url(scheme, url));
	kid_connects(k, url);
	go(k);
	for (int round = 0; round < 2; round++) {
		for (size_t v = 0; v < N_VECS; v++) {
			size_t n = vec_counts[v];
			fq_parts *got = NULL;

			FQ_PASS(fqt_recvv(pull, &got, 0));
			cr_assert_eq(fq_parts_count(got), n, "vector of %zu parts came with %zu", n,
			             fq_parts_count(got));
			for (size_t i = 0; i < n; i++)
				fqt_msg_check(fq_parts_at(got, i), part_size(n, i),
				              (uint32_t)(n * 1000 + i));
			fq_parts_free(got);
		}
	}
	go(k); /* done */
	reap(k);
}

/* ---- PAIR, REQ/REP ------------------------------------------------------------------------ */

/* Answer each request (or PAIR message) with its bytes and one more (0xA5), until "quit". */
static void echo_child(child *self, const char *scheme, int type)
{
	fq_transport *t;
	fq_socket *s = child_socket(&t, (fq_socket_type)type);

	(void)scheme;
	child_attach(self, s);
	for (;;) {
		fq_msg *m = NULL, *r = NULL;
		size_t size;

		CHK(fq_recv(s, &m, 0));
		size = fq_msg_size(m);
		if (size == 4 && memcmp(fq_msg_data(m), "quit", 4) == 0) {
			fq_msg_free(m);
			break;
		}
		CHK(fq_msg_alloc(t, size + 1, &r));
		memcpy(fq_msg_data(r), fq_msg_data(m), size);
		((uint8_t *)fq_msg_data(r))[size] = 0xA5;
		fq_msg_free(m);
		CHK(fq_send(s, &r, 0));
	}
	child_close(t, s);
}

static void ping_pong(fq_socket *s, size_t rounds)
{
	for (size_t i = 0; i < rounds; i++) {
		size_t size = seq_sizes[i % N_SIZES] % (4 * MiB) + 8; /* never "quit" */
		fq_msg *m = fqt_msg_pattern(tp(), size, (uint32_t)i), *r = NULL;

		FQ_PASS(fq_send(s, &m, 0));
		FQ_PASS(fqt_recv(s, &r, 0));
		cr_assert_eq(fq_msg_size(r), size + 1, "round %zu", i);
		cr_assert_eq(fqt_pattern_find(fq_msg_data(r), size, (uint32_t)i), SIZE_MAX,
		             "round %zu: the answer differs", i);
		cr_assert_eq(((uint8_t *)fq_msg_data(r))[size], 0xA5);
		fq_msg_free(r);
	}
	{
		fq_msg *q = fqt_msg_str(tp(), "quit");

		FQ_PASS(fq_socket_set_int(s, "linger", FQT_WAIT_MS));
		FQ_PASS(fq_send(s, &q, 0));
	}
}

PER_SCHEME(pair_both_ways, .description = "PAIR across processes: 60 round trips, 8 B to 4 MiB")
{
	child *k = spawn(echo_child, scheme, FQ_PAIR);
	fq_socket *pair = fqt_socket(tp(), FQ_PAIR);
	char url[FQT_URL_MAX];

	kid_binds(k, scheme, url);
	fqt_connect(pair, url);
	ping_pong(pair, 60);
	reap(k);
}

PER_SCHEME(req_rep, .description = "REQ/REP across processes: 60 requests, 8 B to 4 MiB")
{
	child *k = spawn(echo_child, scheme, FQ_REP);
	fq_socket *req = fqt_socket(tp(), FQ_REQ);
	char url[FQT_URL_MAX];

	fqt_bind(req, fqt_url(scheme, url));
	kid_connects(k, url);
	ping_pong(req, 60);
	reap(k);
}

/* Bytes [from, size) of d hold the pattern of seed (the head before was overwritten). */
static bool tail_ok(const uint8_t *d, size_t from, size_t size, uint32_t seed)
{
	for (size_t j = from; j < size; j++)
		if (d[j] != fqt_pattern_byte(seed, j))
			return false;
	return true;
}

/* ---- PUB/SUB ------------------------------------------------------------------------------ */

#define PUB_COUNT 300

/* Publish "sync" until the parent says it is subscribed and served, then PUB_COUNT messages
 * alternating between topics "A" and "B" (message i: topic, then 8 bytes of i, then a pattern
 * of up to 40 KiB), then "A-end". */
static void pub_child(child *self, const char *scheme, int arg)
{
	fq_transport *t;
	fq_socket *s = child_socket(&t, FQ_PUB);
	char line[64];

	(void)scheme, (void)arg;
	child_attach(self, s);
	for (int tries = 0;; tries++) {
		fq_msg *m = NULL;
		struct pollfd p = {.fd = self->from, .events = POLLIN};

		CHK_TRUE(tries < FQT_WAIT_MS / 5, "the subscriber never saw a sync message");
		CHK(fq_msg_alloc(t, 5, &m));
		memcpy(fq_msg_data(m), "Async", 5);
		CHK(fq_send(s, &m, 0));
		if (poll(&p, 1, 5) > 0)
			break;
	}
	CHK_TRUE(get_line(self->from, line, sizeof(line)), "no go");
	for (uint64_t i = 0; i < PUB_COUNT; i++) {
		size_t size = 9 + (size_t)(i * 137) % (40 * KiB);
		fq_msg *m = NULL;
		uint8_t *d;

		CHK(fq_msg_alloc(t, size, &m));
		d = fq_msg_data(m);
		fqt_pattern_fill(d, size, (uint32_t)i);
		d[0] = i % 2 ? 'B' : 'A';
		memcpy(d + 1, &i, 8);
		CHK(fq_send(s, &m, 0));
		/* After each pair, wait until its A arrived: a PUB may drop what a subscriber
		 * cannot take yet (libnanomsg's does as soon as the connection's buffers are
		 * full), and this case checks filtering and order, not a flood. */
		if (i % 2 == 1)
			CHK_TRUE(get_line(self->from, line, sizeof(line)), "no ack for %llu",
			         (unsigned long long)i - 1);
	}
	{
		fq_msg *m = NULL;

		CHK(fq_msg_alloc(t, 5, &m));
		memcpy(fq_msg_data(m), "A-end", 5);
		CHK(fq_send(s, &m, 0));
	}
	child_wait_done(self);
	child_close(t, s);
}

PER_SCHEME(pub_sub_prefix, .description = "PUB/SUB across processes: only the subscribed topic, "
                                          "all of it, in order")
{
	child *k = spawn(pub_child, scheme, 0);
	fq_socket *sub = fqt_socket(tp(), FQ_SUB);
	char url[FQT_URL_MAX];
	uint64_t want = 0;

	FQ_PASS(fq_socket_set(sub, "subscribe", "A"));
	kid_binds(k, scheme, url);
	fqt_connect(sub, url);
	for (;;) {
		fq_msg *m = NULL;

		FQ_PASS(fqt_recv(sub, &m, 0));
		if (fqt_msg_is(m, "Async")) {
			fq_msg_free(m);
			break;
		}
		cr_assert_fail("expected the sync message first");
	}
	go(k);
	for (;;) {
		fq_msg *m = NULL;
		const uint8_t *d;
		uint64_t i;
		size_t size;

		FQ_PASS(fqt_recv(sub, &m, 0));
		if (fqt_msg_is(m, "Async")) { /* still in flight from before the go */
			fq_msg_free(m);
			continue;
		}
		if (fqt_msg_is(m, "A-end")) {
			fq_msg_free(m);
			break;
		}
		d = fq_msg_data(m);
		cr_assert_geq(fq_msg_size(m), 9);
		cr_assert_eq(d[0], 'A', "a message of topic %c arrived", d[0]);
		memcpy(&i, d + 1, 8);
		cr_assert_eq(i, want, "message %llu arrived, %llu expected", (unsigned long long)i,
		             (unsigned long long)want);
		size = 9 + (size_t)(i * 137) % (40 * KiB);
		cr_assert_eq(fq_msg_size(m), size);
		cr_assert(tail_ok(d, 9, size, (uint32_t)i), "message %llu differs",
		          (unsigned long long)i);
		fq_msg_free(m);
		want += 2;
		cr_assert(put_line(k->to, "ack"));
	}
	cr_assert_eq(want, PUB_COUNT, "%llu of %d messages of topic A arrived",
	             (unsigned long long)want / 2, PUB_COUNT / 2);
	go(k); /* done */
	reap(k);
}

/* ---- Several peers, and a peer that comes back ------------------------------------------- */

#define FAN_COUNT 200

/* Connect and push FAN_COUNT messages "<id> <seq>" padded with a pattern to varying sizes. */
static void fan_child(child *self, const char *scheme, int id)
{
	fq_transport *t;
	fq_socket *s = child_socket(&t, FQ_PUSH);

	(void)scheme;
	child_attach(self, s);
	for (uint32_t i = 0; i < FAN_COUNT; i++) {
		size_t size = 8 + (i * 7919u) % (48 * KiB);
		fq_msg *m = NULL;
		uint32_t head[2] = {(uint32_t)id, i};

		CHK(fq_msg_alloc(t, size, &m));
		fqt_pattern_fill(fq_msg_data(m), size, (uint32_t)id * 100000u + i);
		memcpy(fq_msg_data(m), head, sizeof(head));
		CHK(fq_send(s, &m, 0));
	}
	child_wait_done(self);
	child_close(t, s);
}

/* Receive n_ids * FAN_COUNT messages; each sender's arrive in its order. */
static void fan_in(fq_socket *pull, int first_id, int n_ids)
{
	uint32_t next[8] = {0};

	for (int got = 0; got < n_ids * FAN_COUNT; got++) {
		fq_msg *m = NULL;
		uint32_t head[2];
		size_t size;

		int rc = fqt_recv(pull, &m, 0);

		cr_assert_eq(rc, 0, "fq_recv: %s after %d messages (peer %d: %u, peer %d: %u)",
		             fq_err_name(rc), got, first_id, next[0], first_id + 1, next[1]);
		cr_assert_geq(fq_msg_size(m), 8);
		memcpy(head, fq_msg_data(m), sizeof(head));
		cr_assert(head[0] >= (uint32_t)first_id && head[0] < (uint32_t)(first_id + n_ids),
		          "a message from peer %u", head[0]);
		cr_assert_eq(head[1], next[head[0] - first_id], "peer %u: message %u, expected %u",
		             head[0], head[1], next[head[0] - first_id]);
		size = 8 + (head[1] * 7919u) % (48 * KiB);
		cr_assert_eq(fq_msg_size(m), size);
		cr_assert(tail_ok(fq_msg_data(m), 8, size, head[0] * 100000u + head[1]),
		          "peer %u: message %u differs", head[0], head[1]);
		next[head[0] - first_id]++;
		fq_msg_free(m);
	}
}

PER_SCHEME(fan_in_and_return,
           .description = "two processes push to one puller; then a third connects to the same "
                          "address after they are gone")
{
	/* All three start before anything is opened; the third waits for its address. */
	child *a = spawn(fan_child, scheme, 0), *b = spawn(fan_child, scheme, 1),
	      *c = spawn(fan_child, scheme, 2);
	fq_socket *pull = fqt_socket(tp(), FQ_PULL);
	char url[FQT_URL_MAX];

	fqt_bind(pull, fqt_url(scheme, url));
	kid_connects(a, url);
	kid_connects(b, url);
	fan_in(pull, 0, 2);
	go(a); /* done */
	go(b);
	reap(a);
	reap(b);
	kid_connects(c, url);
	fan_in(pull, 2, 1);
	go(c);
	reap(c);
}

/* ---- A socket in the peer process, driven command by command ----------------------------- */

/*
 * The "rsock" role holds one socket of the type given as its argument and carries out one
 * command line at a time, answering "ok[ detail]" or "fail <reason>". The cases below run the
 * conformance suite's checks with one side of each pair in this process, so that what the
 * suite checks within one process also holds between two.
 *
 *   set NAME VALUE         fq_socket_set ("fail CODE" names the error)
 *   bind URL / connect URL bind answers "ok RESOLVED"
 *   send N SIZE SEQ0 WAIT  N sequenced messages (8 bytes of number, then its pattern);
 *                          WAIT 0 is FQ_DONTWAIT, and the answer is "ok SENT CODE"
 *   recv N SIZE SEQ0       N sequenced messages, checked
 *   sendstr TEXT / recvstr TEXT
 *   sendv N                a vector of N parts (part_size, pattern n * 1000 + i)
 *   check SIZE SEED        one message of the pattern
 *   checkv SIZE:SEED...    one vector of the patterns
 *   sendbig SIZE / recvbig SIZE   a sparse message (fqt_big_msg); sendbig answers once the
 *                          library has given the memory back
 *   empty                  nothing is waiting (FQ_DONTWAIT gives FQ_EAGAIN)
 *   probe                  wait for a probe of fqt_sync (data before it is an error)
 *   trickle TEXT           every 10 ms send TEXT ("probe": a probe), FQ_DONTWAIT, until the
 *                          next line; answers "ok SENT"
 *   flood                  send "A-<n>" in 4 KiB as fast as the peer takes them until the next
 *                          line; answers "ok SENT"
 *   drain                  take the "rr-<i>" (i < RR_N) waiting now; answers with a string of
 *                          RR_N digits, 1 for each one taken so far
 *   tags THREADS N         THREADS x N vectors of 3 tagged parts (fqt_part_tag), each
 *                          thread's in order and never mixed
 *   quit                   close at once (linger 0) and end
 */
#define RR_N      100
#define LINE_MAX_ 1024

static bool put_text(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool put_text(int fd, const char *fmt, ...)
{
	char buf[LINE_MAX_];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof(buf) - 1)
		return false;
	buf[n++] = '\n';
	return write(fd, buf, (size_t)n) == n;
}

/* A child's receive that skips probes and reports a failure as a reason. */
static bool rs_recv(fq_socket *s, fq_msg **m, int flags, char *why, size_t cap)
{
	int rc = fqt_recv(s, m, flags);

	if (rc != 0)
		snprintf(why, cap, "fq_recv: %s", fq_err_name(rc));
	return rc == 0;
}

static bool rs_send_text(fq_transport *t, fq_socket *s, const char *text, int flags, int *rc)
{
	fq_msg *m = NULL;

	*rc =
	    strcmp(text, "probe") == 0 ? fqt_probe_alloc(t, &m) : fq_msg_alloc(t, strlen(text), &m);
	if (*rc == 0 && strcmp(text, "probe") != 0)
		memcpy(fq_msg_data(m), text, strlen(text));
	if (*rc == 0)
		*rc = fq_send(s, &m, flags);
	fq_msg_free(m);
	return *rc == 0;
}

/* Is a line from the parent waiting? */
static bool line_waiting(child *self)
{
	struct pollfd p = {.fd = self->from, .events = POLLIN};

	return poll(&p, 1, 0) > 0;
}

/* tags: check THREADS x N vectors of fq_sendv from THREADS threads. */
static bool rs_tags(fq_socket *s, unsigned threads, unsigned n, char *why, size_t cap)
{
	uint32_t next[16] = {0};

	if (threads > 16)
		return snprintf(why, cap, "too many threads"), false;
	for (unsigned k = 0; k < threads * n; k++) {
		fq_parts *v = NULL;
		fqt_part_tag tag[3];
		int rc = fqt_recvv(s, &v, 0);

		if (rc != 0)
			return snprintf(why, cap, "vector %u: %s", k, fq_err_name(rc)), false;
		for (uint32_t i = 0; i < 3 && fq_parts_count(v) == 3; i++) {
			fq_msg *p = fq_parts_at(v, i);

			if (fq_msg_size(p) == sizeof(tag[0]) + i * 8)
				memcpy(&tag[i], fq_msg_data(p), sizeof(tag[0]));
			else
				tag[i].magic = 0;
		}
		if (fq_parts_count(v) != 3 || tag[0].magic != FQT_TAG_MAGIC ||
		    tag[0].thread >= threads) {
			fq_parts_free(v);
			return snprintf(why, cap, "vector %u is malformed", k), false;
		}
		for (uint32_t i = 0; i < 3; i++) {
			if (tag[i].magic != FQT_TAG_MAGIC || tag[i].index != i ||
			    tag[i].thread != tag[0].thread || tag[i].seq != next[tag[0].thread]) {
				fq_parts_free(v);
				return snprintf(
				           why, cap,
				           "vector %u: part %u of thread %u message %u is out of "
				           "place (thread %u expects %u)",
				           k, i, tag[i].thread, tag[i].seq, tag[0].thread,
				           next[tag[0].thread]),
				       false;
			}
		}
		next[tag[0].thread]++;
		fq_parts_free(v);
	}
	return true;
}

/* Carry out one command; false (with the reason in why) on failure. */
static bool rs_command(child *self, fq_transport *t, fq_socket *s, char *line, char *detail,
                       char *why, size_t cap)
{
	static char taken[RR_N + 1];
	char *arg = strchr(line, ' '), url[FQT_URL_MAX];
	unsigned long long a = 0, b = 0, c = 0, d = 0;
	fq_msg *m = NULL;
	int rc = 0;

	if (arg != NULL)
		*arg++ = '\0';
	else
		arg = line + strlen(line);
	detail[0] = '\0';
	if (taken[0] == '\0')
		memset(taken, '0', RR_N);
	if (strcmp(line, "set") == 0) {
		char *value = strchr(arg, ' ');

		if (value == NULL)
			return snprintf(why, cap, "set NAME VALUE"), false;
		*value++ = '\0';
		rc = fq_socket_set(s, arg, value);
		if (rc != 0)
			return snprintf(why, cap, "%s", fq_err_name(rc)), false;
	} else if (strcmp(line, "bind") == 0) {
		size_t i = 0;

		int64_t end = fqt_now_ms() + FQT_WAIT_MS;

		/* An address a previous process just left may be released late: retry. */
		while ((rc = fq_bind(s, arg)) == FQ_EADDRINUSE && fqt_now_ms() < end)
			fqt_pause();
		if (rc != 0)
			return snprintf(why, cap, "fq_bind %s: %s", arg, fq_err_name(rc)), false;
		while (fq_socket_endpoint(s, i, url, sizeof(url)) == 0)
			i++;
		if (i == 0 || fq_socket_endpoint(s, i - 1, url, sizeof(url)) != 0)
			return snprintf(why, cap, "no endpoint after bind"), false;
		snprintf(detail, FQT_URL_MAX, "%s", url);
	} else if (strcmp(line, "connect") == 0) {
		if ((rc = fq_connect(s, arg)) != 0)
			return snprintf(why, cap, "fq_connect %s: %s", arg, fq_err_name(rc)), false;
	} else if (strcmp(line, "send") == 0) {
		unsigned long long sent = 0;

		if (sscanf(arg, "%llu %llu %llu %llu", &a, &b, &c, &d) != 4)
			return snprintf(why, cap, "send N SIZE SEQ0 WAIT"), false;
		while (sent < a) {
			rc = fqt_seq_alloc(t, b, c + sent, &m);
			if (rc == 0)
				rc = fq_send(s, &m, d ? 0 : FQ_DONTWAIT);
			fq_msg_free(m);
			m = NULL;
			if (rc != 0)
				break;
			sent++;
		}
		snprintf(detail, 64, "%llu %s", sent, rc == 0 ? "OK" : fq_err_name(rc));
	} else if (strcmp(line, "recv") == 0) {
		if (sscanf(arg, "%llu %llu %llu", &a, &b, &c) != 3)
			return snprintf(why, cap, "recv N SIZE SEQ0"), false;
		for (; a > 0; a--, c++) {
			if (!rs_recv(s, &m, 0, why, cap))
				return false;
			if (!fqt_seq_ok(m, b, c)) {
				uint64_t got = 0;

				if (fq_msg_size(m) >= 8)
					memcpy(&got, fq_msg_data(m), 8);
				snprintf(
				    why, cap,
				    "message %llu: %zu bytes, number %llu (%llu bytes expected)", c,
				    fq_msg_size(m), (unsigned long long)got, b);
				fq_msg_free(m);
				return false;
			}
			fq_msg_free(m);
			m = NULL;
		}
	} else if (strcmp(line, "sendstr") == 0 || strcmp(line, "recvstr") == 0) {
		if (line[0] == 's') {
			if (!rs_send_text(t, s, arg, 0, &rc))
				return snprintf(why, cap, "sending '%s': %s", arg, fq_err_name(rc)),
				       false;
		} else {
			bool same;

			if (!rs_recv(s, &m, 0, why, cap))
				return false;
			same = fqt_msg_is(m, arg);
			fq_msg_free(m);
			if (!same)
				return snprintf(why, cap, "not '%s'", arg), false;
		}
	} else if (strcmp(line, "sendv") == 0) {
		fq_msg *parts[64] = {NULL};

		a = strtoull(arg, NULL, 10);
		if (a == 0 || a > 64)
			return snprintf(why, cap, "sendv N (1..64)"), false;
		for (size_t i = 0; i < a && rc == 0; i++) {
			rc = fq_msg_alloc(t, part_size(a, i), &parts[i]);
			if (rc == 0)
				fqt_pattern_fill(fq_msg_data(parts[i]), part_size(a, i),
				                 (uint32_t)(a * 1000 + i));
		}
		if (rc == 0)
			rc = fq_sendv(s, parts, a, 0);
		for (size_t i = 0; i < a; i++)
			fq_msg_free(parts[i]);
		if (rc != 0)
			return snprintf(why, cap, "fq_sendv: %s", fq_err_name(rc)), false;
	} else if (strcmp(line, "check") == 0) {
		if (sscanf(arg, "%llu %llu", &a, &b) != 2)
			return snprintf(why, cap, "check SIZE SEED"), false;
		if (!rs_recv(s, &m, 0, why, cap))
			return false;
		rc = fq_msg_size(m) == a &&
		     fqt_pattern_find(fq_msg_data(m), a, (uint32_t)b) == SIZE_MAX;
		if (!rc)
			snprintf(why, cap, "%zu bytes, %llu of pattern %llu expected",
			         fq_msg_size(m), a, b);
		fq_msg_free(m);
		return rc;
	} else if (strcmp(line, "checkv") == 0) {
		fq_parts *v = NULL;
		size_t i = 0;
		int used = 0;

		if ((rc = fqt_recvv(s, &v, 0)) != 0)
			return snprintf(why, cap, "fq_recvv: %s", fq_err_name(rc)), false;
		for (; sscanf(arg, "%llu:%llu%n", &a, &b, &used) == 2; arg += used, i++) {
			fq_msg *p = fq_parts_at(v, i);

			if (p == NULL || fq_msg_size(p) != a ||
			    fqt_pattern_find(fq_msg_data(p), a, (uint32_t)b) != SIZE_MAX) {
				fq_parts_free(v);
				return snprintf(why, cap, "part %zu differs", i), false;
			}
		}
		rc = fq_parts_count(v) == i;
		if (!rc)
			snprintf(why, cap, "%zu parts, %zu expected", fq_parts_count(v), i);
		fq_parts_free(v);
		return rc;
	} else if (strcmp(line, "sendbig") == 0 || strcmp(line, "recvbig") == 0) {
		a = strtoull(arg, NULL, 10);
		if (line[0] == 's') {
			atomic_int frees = 0;
			int64_t end;

			if ((rc = fqt_big_msg(t, a, &frees, &m)) == 0)
				rc = fq_send(s, &m, 0);
			if (rc != 0) {
				fq_msg_free(m);
				return snprintf(why, cap, "sending %llu B: %s", a, fq_err_name(rc)),
				       false;
			}
			end = fqt_now_ms() + 30 * FQT_WAIT_MS;
			while (atomic_load(&frees) == 0 && fqt_now_ms() < end)
				fqt_pause();
			if (atomic_load(&frees) != 1)
				return snprintf(why, cap, "the memory came back %d times",
				                atomic_load(&frees)),
				       false;
		} else {
			size_t bad;

			if (!rs_recv(s, &m, 0, why, cap))
				return false;
			bad = fq_msg_size(m) == a ? fqt_big_find(fq_msg_data(m), a) : 0;
			if (bad != SIZE_MAX)
				snprintf(why, cap, "%zu bytes (%llu expected), byte %zu differs",
				         fq_msg_size(m), a, bad);
			fq_msg_free(m);
			return bad == SIZE_MAX;
		}
	} else if (strcmp(line, "empty") == 0) {
		rc = fqt_recv(s, &m, FQ_DONTWAIT);
		fq_msg_free(m);
		if (rc != FQ_EAGAIN)
			return snprintf(why, cap, "fq_recv gave %s, not FQ_EAGAIN",
			                fq_err_name(rc)),
			       false;
	} else if (strcmp(line, "probe") == 0) {
		bool probe;

		if ((rc = fq_recv(s, &m, 0)) != 0)
			return snprintf(why, cap, "no probe: %s", fq_err_name(rc)), false;
		probe = fqt_is_probe(m);
		fq_msg_free(m);
		if (!probe)
			return snprintf(why, cap, "a data message before the probe"), false;
	} else if (strcmp(line, "trickle") == 0 || strcmp(line, "flood") == 0) {
		bool flood = line[0] == 'f';
		char text[32], stop[64];

		for (a = 0; !line_waiting(self);) {
			if (flood) {
				snprintf(text, sizeof(text), "A-%llu", a);
				if ((rc = fq_msg_alloc(t, 4096, &m)) != 0)
					break;
				memset(fq_msg_data(m), 0, 4096);
				memcpy(fq_msg_data(m), text, strlen(text));
				rc = fq_send(s, &m, FQ_DONTWAIT);
				fq_msg_free(m);
				m = NULL;
			} else {
				rs_send_text(t, s, arg, FQ_DONTWAIT, &rc);
				usleep(10000);
			}
			if (rc == 0)
				a++;
			else if (rc == FQ_EAGAIN)
				fqt_pause();
			else
				break;
		}
		if (rc != 0 && rc != FQ_EAGAIN)
			return snprintf(why, cap, "%s: %s", line, fq_err_name(rc)), false;
		if (!get_line(self->from, stop, sizeof(stop)))
			return snprintf(why, cap, "no stop"), false;
		snprintf(detail, 64, "%llu", a);
	} else if (strcmp(line, "drain") == 0) {
		while ((rc = fqt_recv(s, &m, FQ_DONTWAIT)) == 0) {
			char text[32];
			int i = -1;

			if (fq_msg_size(m) < sizeof(text)) {
				memcpy(text, fq_msg_data(m), fq_msg_size(m));
				text[fq_msg_size(m)] = '\0';
				if (sscanf(text, "rr-%d", &i) != 1)
					i = -1;
			}
			fq_msg_free(m);
			m = NULL;
			if (i < 0 || i >= RR_N || taken[i] == '1')
				return snprintf(why, cap, "message %d unexpected or twice", i),
				       false;
			for (int j = i + 1; j < RR_N; j++)
				if (taken[j] == '1')
					return snprintf(why, cap, "rr-%d after rr-%d", i, j), false;
			taken[i] = '1';
		}
		if (rc != FQ_EAGAIN)
			return snprintf(why, cap, "drain: %s", fq_err_name(rc)), false;
		snprintf(detail, RR_N + 1, "%s", taken);
	} else if (strcmp(line, "tags") == 0) {
		if (sscanf(arg, "%llu %llu", &a, &b) != 2)
			return snprintf(why, cap, "tags THREADS N"), false;
		return rs_tags(s, (unsigned)a, (unsigned)b, why, cap);
	} else {
		return snprintf(why, cap, "unknown command %s", line), false;
	}
	return true;
}

static void rsock_child(child *self, const char *scheme, int type)
{
	char line[LINE_MAX_], detail[LINE_MAX_], why[512];
	fq_transport *t;
	fq_socket *s = child_socket(&t, (fq_socket_type)type);

	(void)scheme;
	while (get_line_within(self->from, line, sizeof(line), 60 * FQT_WAIT_MS)) {
		if (strcmp(line, "quit") == 0) {
			/* The parent has taken what it waits for: no linger. */
			CHK(fq_socket_set_int(s, "linger", 0));
			child_close(t, s);
			CHK_TRUE(put_text(self->to, "ok"), "cannot answer the parent");
			return;
		}
		if (rs_command(self, t, s, line, detail, why, sizeof(why)))
			CHK_TRUE(put_text(self->to, "ok%s%s", detail[0] ? " " : "", detail),
			         "cannot answer the parent");
		else
			CHK_TRUE(put_text(self->to, "fail %s", why), "cannot answer the parent");
	}
	CHK_TRUE(false, "the parent went away without quit");
}

/* ---- Parent side of the rsock cases ------------------------------------------------------- */

static child *rsock(const char *scheme, fq_socket_type type)
{
	return spawn(rsock_child, scheme, (int)type);
}

static void tell(child *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tell(child *k, const char *fmt, ...)
{
	char buf[LINE_MAX_];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cr_assert(put_text(k->to, "%s", buf), "the peer process is gone (command %s)", buf);
}

/* The answer to the command told last, within ms: asserts "ok" and returns what follows it
 * (valid until the next answer). */
static const char *answer_within(child *k, int ms)
{
	static char buf[LINE_MAX_];

	cr_assert(get_line_within(k->from, buf, sizeof(buf), ms), "the peer did not answer");
	cr_assert(strncmp(buf, "ok", 2) == 0, "the peer: %s", buf);
	return buf[2] == ' ' ? buf + 3 : buf + 2;
}

static const char *answer(child *k)
{
	return answer_within(k, 6 * FQT_WAIT_MS);
}

static const char *ask(child *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *ask(child *k, const char *fmt, ...)
{
	char buf[LINE_MAX_];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	tell(k, "%s", buf);
	return answer(k);
}

static void rs_quit(child *k)
{
	ask(k, "quit");
	reap(k);
}

/* The peer binds a fresh address of scheme; its resolved address goes to url. */
static void rs_binds(child *k, const char *scheme, char *url)
{
	char fresh[FQT_URL_MAX];

	snprintf(url, FQT_URL_MAX, "%s", ask(k, "bind %s", fqt_url(scheme, fresh)));
}

/* Wait until a message passes from s to the peer k (probes, which receivers skip, every 20 ms:
 * only a few are left in flight). */
static void sync_to(fq_socket *s, child *k)
{
	int64_t deadline = fqt_now_ms() + FQT_WAIT_MS;

	tell(k, "probe");
	for (;;) {
		struct pollfd p = {.fd = k->from, .events = POLLIN};
		fq_msg *m = NULL;

		FQ_PASS(fqt_probe_alloc(fq_socket_transport(s), &m));
		if (fq_send(s, &m, FQ_DONTWAIT) != 0)
			fq_msg_free(m);
		if (poll(&p, 1, 20) > 0)
			break;
		cr_assert(fqt_now_ms() < deadline, "no probe reached the peer process");
	}
	answer(k);
}

/* Wait until a message passes from the peer k to s; every probe the peer sent is taken, so
 * nothing of the synchronisation is left to wake a poller. */
static void sync_from(child *k, fq_socket *s)
{
	int64_t deadline = fqt_now_ms() + FQT_WAIT_MS;
	unsigned long long sent;

	tell(k, "trickle probe");
	for (;;) {
		fq_msg *m = NULL;
		int rc = fq_recv(s, &m, FQ_DONTWAIT);

		if (rc == 0) {
			bool probe = fqt_is_probe(m);

			fq_msg_free(m);
			cr_assert(probe, "a data message arrived before the probe");
			break;
		}
		cr_assert(rc == FQ_EAGAIN, "fq_recv: %s", fq_err_name(rc));
		cr_assert(fqt_now_ms() < deadline, "no probe came from the peer process");
		fqt_pause();
	}
	tell(k, "stop");
	cr_assert(sscanf(answer(k), "%llu", &sent) == 1);
	for (unsigned long long i = 1; i < sent; i++) {
		fq_msg *m = NULL;
		bool probe;

		FQ_PASS(fq_recv(s, &m, 0));
		probe = fqt_is_probe(m);
		fq_msg_free(m);
		cr_assert(probe, "a data message arrived among the probes");
	}
}

/* ---- Sizes beyond 2^31, both ways ------------------------------------------------------- */

PER_SCHEME(size_over_2g_both_ways, .timeout = 480,
           .description = "2^31 + 4097 bytes cross processes byte-exact, both ways (PAIR)")
{
	const size_t size = ((size_t)1 << 31) + 4097;
	child *k = rsock(scheme, FQ_PAIR);
	fq_socket *pair = fqt_socket(tp(), FQ_PAIR);
	atomic_int frees = 0;
	char url[FQT_URL_MAX];
	fq_msg *m = NULL;
	int64_t deadline;
	size_t bad;

	ask(k, "set max_msg_size 0");
	ask(k, "set rcv_timeout 200000");
	ask(k, "set snd_timeout 200000");
	FQ_PASS(fq_socket_set(pair, "max_msg_size", "0"));
	FQ_PASS(fq_socket_set_int(pair, "rcv_timeout", 200000));
	FQ_PASS(fq_socket_set_int(pair, "snd_timeout", 200000));
	rs_binds(k, scheme, url);
	fqt_connect(pair, url);
	FQ_PASS(fqt_big_msg(tp(), size, &frees, &m));
	FQ_PASS(fq_send(pair, &m, 0));
	ask(k, "recvbig %zu", size);
	deadline = fqt_now_ms() + 3 * FQT_WAIT_MS;
	while (atomic_load(&frees) == 0 && fqt_now_ms() < deadline)
		fqt_pause();
	cr_assert(atomic_load(&frees) == 1, "adopted memory freed %d times", atomic_load(&frees));

	tell(k, "sendbig %zu", size);
	FQ_PASS(fqt_recv(pair, &m, 0));
	cr_assert(fq_msg_size(m) == size, "received %zu bytes, expected %zu", fq_msg_size(m), size);
	bad = fqt_big_find(fq_msg_data(m), size);
	cr_assert(bad == SIZE_MAX, "byte %zu differs", bad);
	fq_msg_free(m);
	answer(k); /* the peer got its memory back once */
	rs_quit(k);
}

/* ---- The binding process ends and another takes its address ------------------------------- */

PER_SCHEME(binder_restarts,
           .description = "a connected PUSH delivers again after the binding process ended and "
                          "a new process bound the same address, twice")
{
	fq_socket *push = fqt_socket(tp(), FQ_PUSH);
	char url[FQT_URL_MAX];

	FQ_PASS(fq_socket_set_int(push, "reconnect_ivl", 20));
	fqt_url_fixed(scheme, url);
	for (int round = 0; round < 3; round++) {
		child *k = rsock(scheme, FQ_PULL);

		ask(k, "bind %s", url);
		if (round == 0)
			fqt_connect(push, url);
		sync_to(push, k);
		fqt_send_str(push, round == 0 ? "one" : "again");
		ask(k, "recvstr %s", round == 0 ? "one" : "again");
		rs_quit(k);
	}
}

/* ---- Vectors: FQ_EPARTS ----------------------------------------------------------------- */

PER_SCHEME(parts_recv_eparts,
           .description = "fq_recv refuses a peer's vector with FQ_EPARTS and leaves it for "
                          "fq_recvv")
{
	child *k = rsock(scheme, FQ_PUSH);
	fq_socket *pull = fqt_socket(tp(), FQ_PULL);
	char url[FQT_URL_MAX];
	fq_parts *v = NULL;
	fq_msg *m = NULL;

	fqt_bind(pull, fqt_url(scheme, url));
	ask(k, "connect %s", url);
	ask(k, "sendv 3"); /* 10 B, 0 B and 3 MiB + 1: eager and rendezvous parts */
	ask(k, "sendstr single");
	FQ_FAIL(fqt_recv(pull, &m, 0), FQ_EPARTS);
	cr_assert(m == NULL, "FQ_EPARTS must not hand out a message");
	FQ_FAIL(fqt_recv(pull, &m, FQ_DONTWAIT), FQ_EPARTS);
	FQ_PASS(fqt_recvv(pull, &v, 0));
	cr_assert_eq(fq_parts_count(v), 3);
	for (size_t i = 0; i < 3; i++)
		fqt_msg_check(fq_parts_at(v, i), part_size(3, i), (uint32_t)(3000 + i));
	fq_parts_free(v);
	FQ_PASS(fqt_recvv(pull, &v, 0));
	cr_assert(fq_parts_count(v) == 1 && fqt_msg_is(fq_parts_at(v, 0), "single"));
	fq_parts_free(v);
	rs_quit(k);
}

/* ---- PUSH round robin to two processes ----------------------------------------------------- */

PER_SCHEME(push_round_robin, .description = "PUSH deals messages round robin to pullers in two "
                                            "processes")
{
	child *k[2] = {rsock(scheme, FQ_PULL), rsock(scheme, FQ_PULL)};
	fq_socket *push = fqt_socket(tp(), FQ_PUSH);
	char url[FQT_URL_MAX], name[32];
	int count[2] = {0, 0}, total = 0;
	int64_t deadline;

	fqt_bind(push, fqt_url(scheme, url));
	for (int j = 0; j < 2; j++)
		ask(k[j], "connect %s", url);
	/* Both connected: probes go round robin, so each peer gets one within a few. */
	tell(k[0], "probe");
	tell(k[1], "probe");
	deadline = fqt_now_ms() + FQT_WAIT_MS;
	for (int answered = 0; answered < 2;) {
		fq_msg *m = NULL;

		cr_assert(fqt_now_ms() < deadline, "the pullers were never both connected");
		FQ_PASS(fqt_probe_alloc(tp(), &m));
		if (fq_send(push, &m, FQ_DONTWAIT) != 0)
			fq_msg_free(m);
		usleep(20000);
		answered = 0;
		for (int j = 0; j < 2; j++) {
			struct pollfd p = {.fd = k[j]->from, .events = POLLIN};

			answered += poll(&p, 1, 0) > 0;
		}
	}
	answer(k[0]);
	answer(k[1]);
	for (int i = 0; i < RR_N; i++) {
		snprintf(name, sizeof(name), "rr-%d", i);
		fqt_send_str(push, name);
	}
	/* The peers check order and duplicates; here: every message once, dealt evenly. */
	deadline = fqt_now_ms() + FQT_WAIT_MS;
	while (total < RR_N && fqt_now_ms() < deadline) {
		const char *taken[2];

		total = 0;
		for (int j = 0; j < 2; j++) {
			taken[j] = strdup(ask(k[j], "drain"));
			cr_assert(taken[j] != NULL && strlen(taken[j]) == RR_N);
			count[j] = 0;
			for (int i = 0; i < RR_N; i++)
				count[j] += taken[j][i] == '1';
		}
		for (int i = 0; i < RR_N; i++) {
			cr_assert(taken[0][i] != '1' || taken[1][i] != '1', "rr-%d arrived twice",
			          i);
			total += taken[0][i] == '1' || taken[1][i] == '1';
		}
		free((void *)taken[0]);
		free((void *)taken[1]);
		if (total < RR_N)
			usleep(10000);
	}
	cr_assert(total == RR_N, "received %d of %d messages", total, RR_N);
	cr_assert(abs(count[0] - count[1]) <= 2,
	          "not round robin: puller 0 got %d, puller 1 got %d", count[0], count[1]);
	rs_quit(k[0]);
	rs_quit(k[1]);
}

/* ---- Fair queuing across processes --------------------------------------------------------- */

PER_SCHEME(pull_fair_queue,
           .description = "PULL fair-queues: a flooding peer process does not starve another")
{
	child *a = rsock(scheme, FQ_PUSH), *b = rsock(scheme, FQ_PUSH);
	fq_socket *pull = fqt_socket(tp(), FQ_PULL);
	char url[FQT_URL_MAX], text[32];
	unsigned long long flooded;
	int next_b = 0;
	uint64_t next_a = 0;
	int64_t deadline;

	fqt_bind(pull, fqt_url(scheme, url));
	ask(a, "connect %s", url);
	ask(b, "connect %s", url);
	sync_from(a, pull);
	sync_from(b, pull);
	tell(a, "flood");
	/* Let the flood fill every queue on the way before B starts. */
	deadline = fqt_now_ms() + FQT_WAIT_MS;
	for (int got = 0; got < 200;) {
		fq_msg *m = NULL;

		FQ_PASS(fqt_recv(pull, &m, 0));
		snprintf(text, sizeof(text), "A-%llu", (unsigned long long)next_a++);
		cr_assert(fq_msg_size(m) == 4096 && memcmp(fq_msg_data(m), text, strlen(text)) == 0,
		          "expected %s first", text);
		fq_msg_free(m);
		got++;
	}
	for (int i = 0; i < 10; i++)
		ask(b, "sendstr B-%d", i);
	while (next_b < 10 && fqt_now_ms() < deadline) {
		fq_msg *m = NULL;

		FQ_PASS(fqt_recv(pull, &m, 0));
		if (fq_msg_size(m) == 4096) {
			snprintf(text, sizeof(text), "A-%llu", (unsigned long long)next_a++);
			cr_assert(memcmp(fq_msg_data(m), text, strlen(text)) == 0,
			          "A's messages out of order: %s expected", text);
		} else {
			snprintf(text, sizeof(text), "B-%d", next_b++);
			cr_assert(fqt_msg_is(m, text), "B's messages out of order: %s expected",
			          text);
		}
		fq_msg_free(m);
	}
	cr_assert(next_b == 10, "B was starved: %d of its 10 messages arrived", next_b);
	/* Stop the flood and take the rest of it: the counts add up. */
	tell(a, "stop");
	cr_assert(sscanf(answer(a), "%llu", &flooded) == 1);
	while (next_a < flooded) {
		fq_msg *m = NULL;

		FQ_PASS(fqt_recv(pull, &m, 0));
		snprintf(text, sizeof(text), "A-%llu", (unsigned long long)next_a++);
		cr_assert(memcmp(fq_msg_data(m), text, strlen(text)) == 0, "%s expected", text);
		fq_msg_free(m);
	}
	rs_quit(a);
	rs_quit(b);
}

/* ---- Timeouts with a silent peer ----------------------------------------------------------- */

PER_SCHEME(timeouts, .description = "with a silent peer process: FQ_ETIMEDOUT, FQ_EAGAIN, and "
                                    "the next message still arrives")
{
	child *k = rsock(scheme, FQ_PUSH);
	fq_socket *pull = fqt_socket(tp(), FQ_PULL);
	char url[FQT_URL_MAX];
	fq_parts *v = NULL;
	fq_msg *m = NULL;

	fqt_bind(pull, fqt_url(scheme, url));
	ask(k, "connect %s", url);
	sync_from(k, pull);
	FQ_PASS(fq_socket_set(pull, "rcv_timeout", "100"));
	FQ_FAIL(fqt_recv(pull, &m, 0), FQ_ETIMEDOUT);
	FQ_FAIL(fqt_recvv(pull, &v, 0), FQ_ETIMEDOUT);
	FQ_FAIL(fqt_recv(pull, &m, FQ_DONTWAIT), FQ_EAGAIN);
	FQ_FAIL(fqt_recvv(pull, &v, FQ_DONTWAIT), FQ_EAGAIN);
	cr_assert(m == NULL && v == NULL);
	FQ_PASS(fq_socket_set_int(pull, "rcv_timeout", FQT_WAIT_MS));
	ask(k, "send 1 1000 7 1");
	cr_assert_eq(fqt_recv_seq(pull, 1000), 7);
	rs_quit(k);
}

/* ---- High-water marks towards a peer that does not read ------------------------------------ */

/* Fill towards the peer's socket with FQ_DONTWAIT until FQ_EAGAIN (at most bound messages);
 * then the peer takes them and `more` besides while this side sends; none is lost, all in
 * order, nothing is left. Returns the count accepted before the first FQ_EAGAIN. */
static int fill_peer_then_drain(fq_socket *push, child *k, size_t size, int bound, int more)
{
	int sent = fqt_fill(push, size, bound);

	tell(k, "recv %d %zu 0", sent + more, size);
	for (int i = 0; i < more; i++)
		FQ_PASS(fqt_send_seq(push, size, (uint64_t)(sent + i), 0));
	answer(k);
	ask(k, "empty");
	return sent;
}

PER_SCHEME(hwm_messages,
           .description = "snd_hwm/rcv_hwm bound the backlog towards a peer process that does "
                          "not read")
{
	child *k = rsock(scheme, FQ_PULL);
	fq_socket *push = fqt_socket(tp(), FQ_PUSH);
	const int bound = 3 * (10 + 10) + 8 + 4; /* as in the conformance suite */
	char url[FQT_URL_MAX];
	int first_full;

	FQ_PASS(fq_socket_set(push, "snd_hwm", "10"));
	FQ_PASS(fq_socket_set(push, "snd_kernel_size", "128K"));
	ask(k, "set rcv_hwm 10");
	ask(k, "set rcv_kernel_size 128K");
	rs_binds(k, scheme, url);
	fqt_connect(push, url);
	sync_to(push, k);
	first_full = fill_peer_then_drain(push, k, 64 * KiB, bound, 100);
	cr_assert(first_full >= 1, "snd_hwm 10 queued no message at all");
	cr_log_info("%s: FQ_EAGAIN after %d messages of 64 KiB", scheme, first_full);
	rs_quit(k);
}

PER_SCHEME(hwm_bytes,
           .description = "snd_hwm_bytes bounds the backlog in bytes; rcv_hwm_bytes is enforced "
                          "or refused as documented")
{
	child *k = rsock(scheme, FQ_PULL);
	fq_socket *push = fqt_socket(tp(), FQ_PUSH);
	const int bound = 3 * (4 + 1) + 4; /* as in the conformance suite */
	char url[FQT_URL_MAX], reply[LINE_MAX_];
	int first_full;

	FQ_PASS(fq_socket_set(push, "snd_hwm_bytes", "1M"));
	FQ_PASS(fq_socket_set(push, "snd_kernel_size", "64K"));
	ask(k, "set rcv_hwm 1");
	ask(k, "set rcv_kernel_size 64K");
	tell(k, "set rcv_hwm_bytes 1M");
	cr_assert(get_line(k->from, reply, sizeof(reply)));
	if (strcmp(reply, "ok") != 0) {
		cr_assert(strcmp(reply, "fail FQ_ENOTSUP") == 0, "rcv_hwm_bytes: %s", reply);
		cr_log_info("%s: rcv_hwm_bytes not supported (documented)", FQT_TRANSPORT);
	}
	rs_binds(k, scheme, url);
	fqt_connect(push, url);
	sync_to(push, k);
	first_full = fill_peer_then_drain(push, k, 256 * KiB, bound, 40);
	cr_assert(first_full >= 1);
	cr_log_info("%s: FQ_EAGAIN after %d messages of 256 KiB", scheme, first_full);
	rs_quit(k);
}

PER_SCHEME(hwm_rcv_bytes_large,
           .description = "a peer process's messages larger than rcv_hwm_bytes still flow, in "
                          "order, between small ones")
{
	child *k = rsock(scheme, FQ_PUSH);
	fq_socket *pull = fqt_socket(tp(), FQ_PULL);
	const size_t *sizes = fqt_mark_sizes, n = FQT_MARK_SIZES_N, rounds = 3;
	char url[FQT_URL_MAX];
	int rc = fq_socket_set(pull, "rcv_hwm_bytes", FQT_MARK);

	if (rc == FQ_ENOTSUP) {
		cr_log_info("%s: rcv_hwm_bytes not supported (documented)", FQT_TRANSPORT);
		rs_quit(k);
		return;
	}
	FQ_PASS(rc);
	FQ_PASS(fq_socket_set_int(pull, "rcv_timeout", 3 * FQT_WAIT_MS));
	fqt_bind(pull, fqt_url(scheme, url));
	ask(k, "connect %s", url);
	sync_from(k, pull);
	/* The peer sends them all (blocking sends, one command each) while we do not read yet. */
	for (size_t i = 0; i < n * rounds; i++)
		tell(k, "send 1 %zu %zu 1", sizes[i % n], i);
	usleep(200 * 1000);
	for (size_t i = 0; i < n * rounds; i++)
		cr_assert_eq(fqt_recv_seq(pull, sizes[i % n]), i);
	for (size_t i = 0; i < n * rounds; i++)
		cr_assert_str_eq(answer(k), "1 OK", "send %zu", i);
	rs_quit(k);
}

/* ---- A peer process that sends too much ---------------------------------------------------- */

PER_SCHEME(oversize_rejected,
           .description = "a peer process's message above max_msg_size is dropped and logged; "
                          "the other peer loses nothing, the sender's later messages arrive")
{
	child *a = rsock(scheme, FQ_PUSH), *b = rsock(scheme, FQ_PUSH);
	fq_socket *pull = fqt_socket(tp(), FQ_PULL);
	char url[FQT_URL_MAX], text[32];
	bool a_after = false;
	int next_b = 0;
	int64_t deadline;

	fqt_warnings_start();
	FQ_PASS(fq_socket_set(pull, "max_msg_size", "1M"));
	fqt_bind(pull, fqt_url(scheme, url));
	ask(a, "set reconnect_ivl 20");
	ask(a, "connect %s", url);
	ask(b, "connect %s", url);
	sync_from(a, pull);
	sync_from(b, pull);
	ask(a, "send 1 %zu 99 1", 2 * MiB);
	tell(a, "trickle A-after");
	for (int i = 0; i < 100; i++)
		ask(b, "sendstr B-%d", i);
	deadline = fqt_now_ms() + 3 * FQT_WAIT_MS;
	while ((next_b < 100 || !a_after) && fqt_now_ms() < deadline) {
		fq_msg *m = NULL;
		int rc = fqt_recv(pull, &m, FQ_DONTWAIT);

		if (rc == FQ_EAGAIN) {
			fqt_pause();
			continue;
		}
		FQ_PASS(rc);
		cr_assert(fq_msg_size(m) <= MiB, "a %zu-byte message got past max_msg_size 1M",
		          fq_msg_size(m));
		if (fqt_msg_is(m, "A-after")) {
			a_after = true;
		} else {
			snprintf(text, sizeof(text), "B-%d", next_b++);
			cr_assert(fqt_msg_is(m, text), "B's messages out of order: %s expected",
			          text);
		}
		fq_msg_free(m);
	}
	tell(a, "stop");
	answer(a);
	cr_assert(next_b == 100, "only %d of B's 100 messages arrived", next_b);
	cr_assert(a_after, "A's connection never delivered again after the oversized message");
	deadline = fqt_now_ms() + FQT_WAIT_MS;
	while (fqt_warnings() == 0 && fqt_now_ms() < deadline)
		fqt_pause();
	fqt_warnings_stop();
	cr_assert(fqt_warnings() > 0, "the drop of the oversized message was not logged");
	rs_quit(a);
	rs_quit(b);
}

/* ---- Threads ------------------------------------------------------------------------------- */

#define TS_THREADS 4
#define TS_VECTORS 2000

struct tr_receiver {
	fq_socket *s;
	atomic_uchar *seen;
	atomic_int *total, bad;
	atomic_bool *stop, done;
};

/* Receive until all TS_VECTORS arrived (among all receivers) or told to stop. */
static void *tr_recv_main(void *arg)
{
	struct tr_receiver *r = arg;

	while (atomic_load(r->total) < TS_VECTORS && !atomic_load(r->stop)) {
		fq_msg *m = NULL;
		uint64_t seq = 0;
		int rc = fqt_recv(r->s, &m, 0);

		if (rc == FQ_ETIMEDOUT)
			continue; /* rcv_timeout 100 ms: look at total and stop again */
		if (rc != 0) {
			atomic_fetch_add(&r->bad, 1);
			break;
		}
		if (fq_msg_size(m) == 64)
			memcpy(&seq, fq_msg_data(m), sizeof(seq));
		if (fq_msg_size(m) != 64 || seq >= TS_VECTORS || !fqt_seq_ok(m, 64, seq) ||
		    atomic_fetch_add(&r->seen[seq], 1) != 0)
			atomic_fetch_add(&r->bad, 1);
		atomic_fetch_add(r->total, 1);
		fq_msg_free(m);
	}
	atomic_store(&r->done, true);
	return NULL;
}

PER_SCHEME(threads, .description = "4 threads send vectors to a peer process, unmixed; 2 threads "
                                   "receive a peer's messages, each once")
{
	child *k = rsock(scheme, FQ_PAIR);
	fq_socket *pair = fqt_socket(tp(), FQ_PAIR);
	fqt_tag_sender ts[TS_THREADS];
	struct tr_receiver tr[2];
	atomic_uchar *seen = calloc(TS_VECTORS, sizeof(*seen));
	pthread_t th[TS_THREADS];
	atomic_int total = 0;
	atomic_bool stop = false;
	char url[FQT_URL_MAX];
	int64_t deadline;
	int missing = 0;

	cr_assert(seen != NULL);
	rs_binds(k, scheme, url);
	fqt_connect(pair, url);
	tell(k, "tags %d %d", TS_THREADS, TS_VECTORS);
	for (int i = 0; i < TS_THREADS; i++) {
		ts[i] = (fqt_tag_sender){.s = pair, .id = (uint32_t)i, .n = TS_VECTORS};
		cr_assert(pthread_create(&th[i], NULL, fqt_tag_sender_main, &ts[i]) == 0);
	}
	for (int i = 0; i < TS_THREADS; i++) {
		fqt_join_bounded(th[i], &ts[i].done, "sender thread");
		FQ_PASS(atomic_load(&ts[i].err));
	}
	answer(k);

	FQ_PASS(fq_socket_set_int(pair, "rcv_timeout", 100));
	for (int i = 0; i < 2; i++) {
		tr[i] =
		    (struct tr_receiver){.s = pair, .seen = seen, .total = &total, .stop = &stop};
		cr_assert(pthread_create(&th[i], NULL, tr_recv_main, &tr[i]) == 0);
	}
	ask(k, "send %d 64 0 1", TS_VECTORS);
	deadline = fqt_now_ms() + FQT_WAIT_MS;
	while (atomic_load(&total) < TS_VECTORS && fqt_now_ms() < deadline)
		fqt_pause();
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		fqt_join_bounded(th[i], &tr[i].done, "receiver thread");
	for (int i = 0; i < TS_VECTORS; i++)
		missing += atomic_load(&seen[i]) == 0;
	cr_assert(atomic_load(&tr[0].bad) + atomic_load(&tr[1].bad) == 0,
	          "malformed or duplicated messages");
	cr_assert(missing == 0, "%d messages missing", missing);
	free(seen);
	rs_quit(k);
}

/* ---- Ownership: what this process sends, the peer reads ------------------------------------ */

/* A PUSH here, connected to a PULL in the peer (which binds). */
static fq_socket *push_to_peer(child *k, const char *scheme)
{
	fq_socket *push = fqt_socket(tp(), FQ_PUSH);
	char url[FQT_URL_MAX];

	rs_binds(k, scheme, url);
	fqt_connect(push, url);
	return push;
}

PER_SCHEME(msg_copy, .description = "copies of one message (fq_msg_copy), eager and rendezvous, "
                                    "reach a peer process intact in any free order")
{
	static const size_t sizes[] = {10, 100 * KiB, 8 * MiB};
	child *k = rsock(scheme, FQ_PULL);
	fq_socket *push = push_to_peer(k, scheme);

	for (size_t i = 0; i < 3; i++) {
		fq_msg *m = fqt_msg_pattern(tp(), sizes[i], 5), *c = NULL, *c2 = NULL;

		FQ_PASS(fq_msg_copy(m, &c));
		FQ_PASS(fq_msg_copy(m, &c2));
		FQ_PASS(fq_send(push, &c, 0));
		fqt_msg_check(m, sizes[i], 5);
		FQ_PASS(fq_send(push, &m, 0));
		fqt_msg_check(c2, sizes[i], 5);
		fq_msg_free(c2);
		ask(k, "check %zu 5", sizes[i]);
		ask(k, "check %zu 5", sizes[i]);
	}
	rs_quit(k);
}

PER_SCHEME(msg_adopt, .description = "adopted buffers sent to a peer process are freed exactly "
                                     "once, after the peer has them")
{
	static char forever[] = "static bytes, never freed";
	static const size_t sizes[] = {50000, 8 * MiB};
	child *k = rsock(scheme, FQ_PULL);
	fq_socket *push = push_to_peer(k, scheme);
	fqt_adopted a[2];
	fq_msg *m = NULL;

	for (size_t i = 0; i < 2; i++) {
		m = fqt_adopt_pattern(tp(), sizes[i], (uint32_t)(11 + i), &a[i]);
		FQ_PASS(fq_send(push, &m, 0));
		cr_assert(m == NULL);
		ask(k, "check %zu %zu", sizes[i], 11 + i);
		fqt_wait_frees(&a[i], 1);
	}
	FQ_PASS(fq_msg_adopt(tp(), forever, sizeof(forever) - 1, NULL, NULL, &m));
	FQ_PASS(fq_send(push, &m, 0));
	ask(k, "recvstr %s", forever);
	fqt_close(push);
	cr_assert(atomic_load(&a[0].frees) == 1 && atomic_load(&a[1].frees) == 1,
	          "free functions ran again at close");
	rs_quit(k);
}

PER_SCHEME(msg_shrink, .description = "a peer process receives only the shrunk size")
{
	child *k = rsock(scheme, FQ_PULL);
	fq_socket *push = push_to_peer(k, scheme);
	fqt_adopted a;
	fq_msg *m = fqt_msg_pattern(tp(), 10000, 31);

	FQ_PASS(fq_msg_shrink(m, 100));
	FQ_PASS(fq_send(push, &m, 0));
	m = fqt_msg_pattern(tp(), 5000, 32);
	FQ_PASS(fq_msg_shrink(m, 0));
	FQ_PASS(fq_send(push, &m, 0));
	m = fqt_adopt_pattern(tp(), 3 * MiB, 33, &a);
	FQ_PASS(fq_msg_shrink(m, 3 * MiB - 1));
	FQ_PASS(fq_send(push, &m, 0));
	ask(k, "check 100 31");
	ask(k, "check 0 32");
	ask(k, "check %zu 33", 3 * MiB - 1);
	fqt_wait_frees(&a, 1);
	rs_quit(k);
}

PER_SCHEME(cross_transport, .description = "messages of another transport instance reach a peer "
                                           "process like local ones")
{
	child *k = rsock(scheme, FQ_PULL);
	fq_transport *t2 = fqt_transport_open(FQT_TRANSPORT);
	fq_socket *push = push_to_peer(k, scheme);
	fq_msg *m = fqt_msg_pattern(t2, 70000, 41), *parts[3];
	fqt_adopted a;

	FQ_PASS(fq_send(push, &m, 0));
	parts[0] = fqt_msg_pattern(t2, 10, 42);
	parts[1] = fqt_msg_pattern(tp(), 20, 43);
	parts[2] = fqt_adopt_pattern(t2, 2 * MiB, 44, &a);
	FQ_PASS(fq_sendv(push, parts, 3, 0));
	ask(k, "check 70000 41");
	ask(k, "checkv 10:42 20:43 %zu:44", 2 * MiB);
	fqt_wait_frees(&a, 1);
	rs_quit(k);
}

/* ---- Poller and pollable fds, woken by another process ------------------------------------- */

PER_SCHEME(poller_and_fd,
           .description = "fq_poller and the socket's fd report what peer processes sent, and "
                          "only that")
{
	child *ka = rsock(scheme, FQ_PUSH), *kb = rsock(scheme, FQ_PUSH),
	      *kc = rsock(scheme, FQ_PULL);
	fq_socket *a = fqt_socket(tp(), FQ_PULL), *b = fqt_socket(tp(), FQ_PULL);
	fq_socket *out = push_to_peer(kc, scheme);
	fq_poller *poller = NULL;
	char url[FQT_URL_MAX];
	int ia, ib, io;

	fqt_bind(a, fqt_url(scheme, url));
	ask(ka, "connect %s", url);
	fqt_bind(b, fqt_url(scheme, url));
	ask(kb, "connect %s", url);
	sync_from(ka, a);
	sync_from(kb, b);
	FQ_PASS(fq_poller_open(&poller));
	ia = fq_poller_add(poller, a, FQ_POLLIN);
	ib = fq_poller_add(poller, b, FQ_POLLIN);
	FQ_PASS(ia);
	FQ_PASS(ib);
	FQ_FAIL(fq_poller_wait(poller, 100), 0);
	ask(kb, "sendstr to b");
	fqt_poller_expect(poller, ib, ia);
	fqt_recv_str(b, "to b");
	FQ_FAIL(fq_poller_wait(poller, 0), 0);
	fq_poller_close(poller);

	/* The fd in a plain poll() loop, three times over. */
	cr_assert((fq_socket_events(a) & FQ_POLLIN) == 0, "readable before anything was sent");
	for (int i = 0; i < 3; i++) {
		fq_msg *m = NULL;
		char text[16];

		snprintf(text, sizeof(text), "fd-%d", i);
		ask(ka, "sendstr %s", text);
		cr_assert(fqt_wait_events_fd(a, FQ_POLLIN) & FQ_POLLIN,
		          "message %d never reported through the fd", i);
		FQ_PASS(fqt_recv(a, &m, FQ_DONTWAIT));
		cr_assert(fqt_msg_is(m, text));
		fq_msg_free(m);
		cr_assert((fq_socket_events(a) & FQ_POLLIN) == 0);
	}

	/* A PUSH connected to a peer process can send. */
	FQ_PASS(fq_poller_open(&poller));
	io = fq_poller_add(poller, out, FQ_POLLOUT);
	FQ_PASS(io);
	FQ_FAIL(fq_poller_wait(poller, FQT_WAIT_MS), 1);
	cr_assert(fq_poller_events(poller, (size_t)io) & FQ_POLLOUT);
	fq_poller_close(poller);
	rs_quit(ka);
	rs_quit(kb);
	rs_quit(kc);
}

/* ---- Interrupt while a peer process is connected ------------------------------------------- */

PER_SCHEME(interrupt, .description = "fq_socket_interrupt wakes a receive that waits on a peer "
                                     "process; after fq_socket_resume its message arrives")
{
	child *k = rsock(scheme, FQ_PUSH);
	fq_socket *pull = fqt_socket(tp(), FQ_PULL);
	fqt_blocked_call rb = {.s = pull};
	char url[FQT_URL_MAX];
	pthread_t th;
	fq_msg *m = NULL;

	fqt_bind(pull, fqt_url(scheme, url));
	ask(k, "connect %s", url);
	sync_from(k, pull);
	FQ_PASS(fq_socket_set_int(pull, "rcv_timeout", -1));
	cr_assert(pthread_create(&th, NULL, fqt_blocked_main, &rb) == 0);
	usleep(50000); /* not needed for correctness: makes it likely the call is blocked */
	fq_socket_interrupt(pull);
	fqt_join_bounded(th, &rb.done, "blocked fq_recv");
	FQ_FAIL(atomic_load(&rb.rc), FQ_EINTR);
	cr_assert(rb.m == NULL);
	ask(k, "sendstr while interrupted");
	FQ_FAIL(fq_recv(pull, &m, 0), FQ_EINTR);
	fq_socket_resume(pull);
	rb = (fqt_blocked_call){.s = pull};
	cr_assert(pthread_create(&th, NULL, fqt_blocked_main, &rb) == 0);
	fqt_join_bounded(th, &rb.done, "fq_recv after resume");
	FQ_PASS(atomic_load(&rb.rc));
	cr_assert(fqt_msg_is(rb.m, "while interrupted"), "the peer's message was lost");
	fq_msg_free(rb.m);
	rs_quit(k);
}

/* ---- Entry -------------------------------------------------------------------------------- */

/* A peer process (see spawn), or the Criterion runner. */
int main(int argc, char *argv[])
{
	struct criterion_test_set *tests;
	int result = 0;

	if (argc == 5 && strcmp(argv[1], "--twoproc-peer") == 0) {
		child self = {getpid(), 4, 3};

		for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
			if (strcmp(roles[i].name, argv[2]) == 0) {
				roles[i].fn(&self, argv[3], atoi(argv[4]));
				return 0;
			}
		}
		fprintf(stderr, "twoproc: no peer role %s\n", argv[2]);
		return 2;
	}
	tests = criterion_initialize();
	if (criterion_handle_args(argc, argv, true))
		result = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	return result;
}
