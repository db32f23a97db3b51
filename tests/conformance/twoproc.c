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

static const struct role {
	const char *name;
	child_fn fn;
} roles[] = {
    {"seq_push", seq_push_child}, {"seq_pull", seq_pull_child}, {"vec", vec_child},
    {"echo", echo_child},         {"pub", pub_child},           {"fan", fan_child},
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
