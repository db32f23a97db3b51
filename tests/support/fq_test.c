/*
 * fq_test: helpers shared by fabriq's Criterion tests (see fq_test.h).
 */
#include "fq_test.h"

#include "core/transport.h" /* the scheme list of a transport: not in the public API */

#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRACKED 64

static fq_socket *tracked_sockets[MAX_TRACKED];
static fq_transport *tracked_transports[MAX_TRACKED];
static char scratch[128];
static unsigned url_counter;

/* Probes start with a byte no test payload starts with, then a tag and a counter. */
static const char probe_magic[] = "\x7f"
                                  "FQT-PROBE";
#define PROBE_MAGIC_LEN (sizeof(probe_magic) - 1)
#define PROBE_LEN       (PROBE_MAGIC_LEN + sizeof(uint64_t))

/* ---- Misc ------------------------------------------------------------------------------- */

int64_t fqt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fqt_pause(void)
{
	struct timespec ts = {0, 1000000};

	nanosleep(&ts, NULL);
}

void fqt_join_bounded(pthread_t th, atomic_bool *done, const char *what)
{
	int64_t deadline = fqt_now_ms() + 3 * FQT_WAIT_MS;

	while (!atomic_load(done) && fqt_now_ms() < deadline)
		fqt_pause();
	cr_assert(atomic_load(done), "%s did not finish", what);
	pthread_join(th, NULL);
}

/* Remove a directory and the files in it (no subdirectories are made). */
static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d != NULL) {
		while ((e = readdir(d)) != NULL) {
			char path[PATH_MAX];

			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
}

/*
 * A test that crashed could not remove its scratch directory: remove those of processes that
 * no longer exist ("fqt-<pid>-XXXXXX", ours only).
 */
static void remove_stale(const char *base)
{
	DIR *d = opendir(base);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		struct stat st;
		long pid;
		char tail[8];

		if (sscanf(e->d_name, "fqt-%ld-%7s", &pid, tail) != 2 || strlen(tail) != 6 ||
		    pid <= 0 || (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == getuid())
			remove_dir(path);
	}
	closedir(d);
}

const char *fqt_scratch_dir(void)
{
	if (scratch[0] == '\0') {
		const char *base = getenv("TMPDIR");

		/* ipc paths must fit sockaddr_un.sun_path (108 bytes) with room for a name. */
		if (base == NULL || base[0] == '\0' || strlen(base) > 60)
			base = "/tmp";
		remove_stale(base);
		snprintf(scratch, sizeof(scratch), "%s/fqt-%ld-XXXXXX", base, (long)getpid());
		cr_assert(mkdtemp(scratch) != NULL, "mkdtemp(%s): %s", scratch, strerror(errno));
	}
	return scratch;
}

/* Remove the scratch directory and whatever is left in it. */
static void scratch_remove(void)
{
	if (scratch[0] != '\0')
		remove_dir(scratch);
	scratch[0] = '\0';
}

/* ---- Life cycle ------------------------------------------------------------------------- */

void fqt_init(void)
{
	memset(tracked_sockets, 0, sizeof(tracked_sockets));
	memset(tracked_transports, 0, sizeof(tracked_transports));
	if (getenv("FQ_LOG_LEVEL") == NULL)
		fq_log_set_level(FQ_LOG_ERROR);
}

void fqt_fini(void)
{
	for (size_t i = 0; i < MAX_TRACKED; i++) {
		fq_socket_close(tracked_sockets[i]);
		tracked_sockets[i] = NULL;
	}
	for (size_t i = 0; i < MAX_TRACKED; i++) {
		fq_transport_close(tracked_transports[i]);
		tracked_transports[i] = NULL;
	}
	scratch_remove();
}

static void track(void **table, void *obj)
{
	for (size_t i = 0; i < MAX_TRACKED; i++) {
		if (table[i] == NULL) {
			table[i] = obj;
			return;
		}
	}
	cr_assert_fail("fq_test: more than %d tracked objects", MAX_TRACKED);
}

static bool untrack(void **table, void *obj)
{
	for (size_t i = 0; i < MAX_TRACKED; i++) {
		if (table[i] == obj) {
			table[i] = NULL;
			return true;
		}
	}
	return false;
}

fq_transport *fqt_transport_open(const char *name)
{
	fq_transport *t = NULL;

	FQ_PASS(fq_transport_open(&t, name, NULL));
	cr_assert(t != NULL);
	track((void **)tracked_transports, t);
	return t;
}

void fqt_transport_close(fq_transport *t)
{
	untrack((void **)tracked_transports, t);
	fq_transport_close(t);
}

fq_socket *fqt_socket(fq_transport *t, fq_socket_type type)
{
	fq_socket *s = NULL;

	FQ_PASS(fq_socket_open(&s, t, type));
	cr_assert(s != NULL);
	track((void **)tracked_sockets, s);
	FQ_PASS(fq_socket_set_int(s, "linger", 0));
	FQ_PASS(fq_socket_set_int(s, "snd_timeout", FQT_WAIT_MS));
	FQ_PASS(fq_socket_set_int(s, "rcv_timeout", FQT_WAIT_MS));
	return s;
}

void fqt_close(fq_socket *s)
{
	untrack((void **)tracked_sockets, s);
	fq_socket_close(s);
}

/* ---- Addresses -------------------------------------------------------------------------- */

static int free_tcp_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port;

	cr_assert(fd >= 0, "socket: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind: %s", strerror(errno));
	cr_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static char *make_url(const char *scheme, char *buf, bool fixed)
{
	unsigned n = ++url_counter;

	if (strcmp(scheme, "tcp") == 0) {
		snprintf(buf, FQT_URL_MAX, "tcp://127.0.0.1:%d", fixed ? free_tcp_port() : 0);
	} else if (strcmp(scheme, "ipc") == 0) {
		int len = snprintf(buf, FQT_URL_MAX, "ipc://%s/s%u", fqt_scratch_dir(), n);

		cr_assert(len - 6 < 100, "ipc path too long: %s", buf);
	} else if (strcmp(scheme, "inproc") == 0) {
		snprintf(buf, FQT_URL_MAX, "inproc://fqt-%ld-%u", (long)getpid(), n);
	} else {
		cr_assert_fail("fq_test: no address recipe for scheme '%s' (add one to "
		               "tests/support/fq_test.c)",
		               scheme);
	}
	return buf;
}

char *fqt_url(const char *scheme, char *buf)
{
	return make_url(scheme, buf, false);
}

char *fqt_url_fixed(const char *scheme, char *buf)
{
	return make_url(scheme, buf, true);
}

void fqt_bind(fq_socket *s, char *url)
{
	char resolved[FQT_URL_MAX];
	size_t i;
	int rc = 0;

	FQ_PASS(fq_bind(s, url));
	/* The new endpoint is the last one. */
	for (i = 0; rc == 0; i++)
		rc = fq_socket_endpoint(s, i, resolved, sizeof(resolved));
	cr_assert(rc == FQ_ENOENT, "fq_socket_endpoint: %s", fq_err_name(rc));
	cr_assert(i >= 2, "fq_socket_endpoint lists no endpoint after a successful bind");
	FQ_PASS(fq_socket_endpoint(s, i - 2, resolved, sizeof(resolved)));
	if (strncmp(url, "tcp://", 6) == 0) {
		const char *colon = strrchr(resolved, ':');

		cr_assert(colon != NULL && atoi(colon + 1) > 0,
		          "endpoint of %s does not show the port: '%s'", url, resolved);
	}
	snprintf(url, FQT_URL_MAX, "%s", resolved);
}

void fqt_connect(fq_socket *s, const char *url)
{
	FQ_PASS(fq_connect(s, url));
}

void fqt_rebind(fq_socket *s, const char *url)
{
	int64_t deadline = fqt_now_ms() + FQT_WAIT_MS;
	int rc;

	/* A closed socket may release its address asynchronously: retry, bounded. */
	while ((rc = fq_bind(s, url)) == FQ_EADDRINUSE && fqt_now_ms() < deadline)
		fqt_pause();
	cr_assert(rc == 0, "fq_bind(%s) again: %s (%s)", url, fq_err_name(rc), fq_strerror(rc));
}

/* ---- Messages --------------------------------------------------------------------------- */

void fqt_pattern_fill(void *data, size_t size, uint32_t seed)
{
	uint8_t *p = data;

	for (size_t i = 0; i < size; i++)
		p[i] = fqt_pattern_byte(seed, i);
}

size_t fqt_pattern_find(const void *data, size_t size, uint32_t seed)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < size; i++) {
		if (p[i] != fqt_pattern_byte(seed, i))
			return i;
	}
	return SIZE_MAX;
}

fq_msg *fqt_msg_pattern(fq_transport *t, size_t size, uint32_t seed)
{
	fq_msg *m = NULL;

	FQ_PASS(fq_msg_alloc(t, size, &m));
	cr_assert(m != NULL);
	cr_assert(fq_msg_size(m) == size, "fq_msg_alloc(%zu) made %zu bytes", size, fq_msg_size(m));
	if (size != 0)
		fqt_pattern_fill(fq_msg_data(m), size, seed);
	return m;
}

void fqt_msg_check(fq_msg *m, size_t size, uint32_t seed)
{
	size_t bad;

	cr_assert(m != NULL, "no message");
	cr_assert(fq_msg_size(m) == size, "message of %zu bytes, expected %zu (pattern %u)",
	          fq_msg_size(m), size, (unsigned)seed);
	if (size == 0)
		return;
	bad = fqt_pattern_find(fq_msg_data(m), size, seed);
	cr_assert(bad == SIZE_MAX, "message of %zu bytes (pattern %u) differs at byte %zu", size,
	          (unsigned)seed, bad);
}

fq_msg *fqt_msg_str(fq_transport *t, const char *str)
{
	size_t len = strlen(str);
	fq_msg *m = NULL;

	FQ_PASS(fq_msg_alloc(t, len, &m));
	if (len != 0)
		memcpy(fq_msg_data(m), str, len);
	return m;
}

bool fqt_msg_is(fq_msg *m, const char *str)
{
	size_t len = strlen(str);

	return m != NULL && fq_msg_size(m) == len &&
	       (len == 0 || memcmp(fq_msg_data(m), str, len) == 0);
}

bool fqt_is_probe(fq_msg *m)
{
	return m != NULL && fq_msg_size(m) == PROBE_LEN &&
	       memcmp(fq_msg_data(m), probe_magic, PROBE_MAGIC_LEN) == 0;
}

int fqt_recv(fq_socket *s, fq_msg **out, int flags)
{
	for (;;) {
		int rc = fq_recv(s, out, flags);

		if (rc < 0 || !fqt_is_probe(*out))
			return rc;
		fq_msg_free(*out);
		*out = NULL;
	}
}

int fqt_recvv(fq_socket *s, fq_parts **out, int flags)
{
	for (;;) {
		int rc = fq_recvv(s, out, flags);

		if (rc < 0 || fq_parts_count(*out) != 1 || !fqt_is_probe(fq_parts_at(*out, 0)))
			return rc;
		fq_parts_free(*out);
		*out = NULL;
	}
}

void fqt_send_str(fq_socket *s, const char *str)
{
	fq_msg *m = fqt_msg_str(fq_socket_transport(s), str);

	FQ_PASS(fq_send(s, &m, 0));
	cr_assert(m == NULL, "a successful fq_send must set the caller's pointer to NULL");
}

void fqt_recv_str(fq_socket *s, const char *expect)
{
	fq_msg *m = NULL;
	int rc = fqt_recv(s, &m, 0);

	cr_assert(rc >= 0, "receiving '%s': %s (%s)", expect, fq_err_name(rc), fq_strerror(rc));
	cr_assert(fqt_msg_is(m, expect), "received %zu bytes '%.*s', expected '%s'", fq_msg_size(m),
	          (int)(fq_msg_size(m) < 80 ? fq_msg_size(m) : 80), (const char *)fq_msg_data(m),
	          expect);
	fq_msg_free(m);
}

/* ---- Sparse large messages -------------------------------------------------------------- */

struct big_hint {
	size_t size;
	atomic_int *frees;
};

static void big_unmap(void *data, void *arg)
{
	struct big_hint *h = arg;

	munmap(data, h->size);
	atomic_fetch_add(h->frees, 1);
	free(h);
}

static uint8_t marker_byte(size_t off)
{
	return (uint8_t)((0x5a ^ (off * 131) ^ (off >> 29)) | 1);
}

/* The marker offsets below `size` (at most 16): both ends, page and 2^30 / 2^31 edges. */
static size_t big_markers(size_t size, size_t *off)
{
	const size_t mib = (size_t)1 << 20, gib = (size_t)1 << 30, two_g = (size_t)1 << 31;
	const size_t candidates[] = {0,   1,         4095,  4096,      mib,          gib - 1,
	                             gib, two_g - 1, two_g, two_g + 1, two_g + 4096, size - 1};
	size_t n = 0;

	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
		bool dup = false;

		if (candidates[i] >= size)
			continue;
		for (size_t j = 0; j < n; j++)
			dup |= off[j] == candidates[i];
		if (!dup)
			off[n++] = candidates[i];
	}
	return n;
}

int fqt_big_msg(fq_transport *t, size_t size, atomic_int *frees, fq_msg **out)
{
	struct big_hint *h = malloc(sizeof(*h));
	size_t off[16], n;
	void *mem;
	int rc;

	if (h == NULL)
		return FQ_ENOMEM;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
	           -1, 0);
	if (mem == MAP_FAILED) {
		free(h);
		return FQ_ENOMEM;
	}
	*h = (struct big_hint){size, frees};
	n = big_markers(size, off);
	for (size_t i = 0; i < n; i++)
		((uint8_t *)mem)[off[i]] = marker_byte(off[i]);
	rc = fq_msg_adopt(t, mem, size, big_unmap, h, out);
	if (rc != 0) {
		munmap(mem, size);
		free(h);
	}
	return rc;
}

size_t fqt_big_find(const void *data, size_t size)
{
	static const uint8_t zeros[64 * 1024];
	const uint8_t *p = data;
	size_t off[16], n = big_markers(size, off);

	for (size_t i = 0; i < n; i++)
		if (p[off[i]] != marker_byte(off[i]))
			return off[i];
	for (size_t pos = 0; pos < size; pos += sizeof(zeros)) {
		size_t len = size - pos < sizeof(zeros) ? size - pos : sizeof(zeros);

		if (memcmp(p + pos, zeros, len) == 0)
			continue;
		for (size_t k = pos; k < pos + len; k++) {
			bool marker = false;

			for (size_t i = 0; i < n; i++)
				marker |= off[i] == k;
			if (p[k] != 0 && !marker)
				return k;
		}
	}
	return SIZE_MAX;
}

/* ---- Connecting ------------------------------------------------------------------------- */

int fqt_probe_alloc(fq_transport *t, fq_msg **out)
{
	static atomic_uint_fast64_t counter;
	uint64_t n = atomic_fetch_add(&counter, 1) + 1;
	int rc = fq_msg_alloc(t, PROBE_LEN, out);

	if (rc == 0) {
		memcpy(fq_msg_data(*out), probe_magic, PROBE_MAGIC_LEN);
		memcpy((char *)fq_msg_data(*out) + PROBE_MAGIC_LEN, &n, sizeof(n));
	}
	return rc;
}

static fq_msg *probe_msg(fq_transport *t)
{
	fq_msg *m = NULL;

	FQ_PASS(fqt_probe_alloc(t, &m));
	return m;
}

/* Poll `s` for a probe until the deadline or `tries` attempts; data messages are an error. */
static bool probe_arrived(fq_socket *s, int64_t until)
{
	do {
		fq_msg *m = NULL;
		int rc = fq_recv(s, &m, FQ_DONTWAIT);

		if (rc == 0) {
			bool probe = fqt_is_probe(m);

			fq_msg_free(m);
			cr_assert(probe, "fqt_sync: a data message arrived while connecting");
			return true;
		}
		cr_assert(rc == FQ_EAGAIN, "fqt_sync: fq_recv: %s (%s)", fq_err_name(rc),
		          fq_strerror(rc));
		fqt_pause();
	} while (fqt_now_ms() < until);
	return false;
}

static void sync_req_rep(fq_socket *req, fq_socket *rep, int64_t deadline)
{
	fq_msg *m = probe_msg(fq_socket_transport(req));
	int rc;

	while ((rc = fq_send(req, &m, FQ_DONTWAIT)) == FQ_EAGAIN && fqt_now_ms() < deadline)
		fqt_pause();
	if (rc != 0)
		fq_msg_free(m);
	cr_assert(rc == 0, "fqt_sync: REQ could not send: %s", fq_err_name(rc));
	cr_assert(probe_arrived(rep, deadline), "fqt_sync: no request reached the REP in %d ms",
	          FQT_WAIT_MS);
	m = probe_msg(fq_socket_transport(rep));
	rc = fq_send(rep, &m, 0);
	if (rc != 0)
		fq_msg_free(m);
	cr_assert(rc == 0, "fqt_sync: REP could not reply: %s", fq_err_name(rc));
	cr_assert(probe_arrived(req, deadline), "fqt_sync: no reply reached the REQ in %d ms",
	          FQT_WAIT_MS);
}

/*
 * `single`: from and to are one fresh connection, so one probe is enough and none is left
 * behind. Otherwise a probe goes out every 10 ms until one arrives: it may have been dropped
 * (PUB without the subscription yet, a connection that was dying) or dealt to another peer.
 */
static void sync_probes(fq_socket *from, fq_socket *to, bool single)
{
	int64_t deadline = fqt_now_ms() + FQT_WAIT_MS;
	fq_socket_type tf = fq_socket_get_type(from), tt = fq_socket_get_type(to);
	char sub[PROBE_MAGIC_LEN + 1];

	if (tf == FQ_REQ && tt == FQ_REP) {
		sync_req_rep(from, to, deadline);
		return;
	}
	cr_assert((tf == FQ_PUSH && tt == FQ_PULL) || (tf == FQ_PUB && tt == FQ_SUB) ||
	              (tf == FQ_PAIR && tt == FQ_PAIR),
	          "fqt_sync: cannot probe from %s to %s", fq_socket_type_name(tf),
	          fq_socket_type_name(tt));
	memcpy(sub, probe_magic, PROBE_MAGIC_LEN);
	sub[PROBE_MAGIC_LEN] = '\0';
	if (tt == FQ_SUB) {
		FQ_PASS(fq_socket_set(to, "subscribe", sub));
		single = false;
	}
	for (bool sent = false;;) {
		if (!single || !sent) {
			fq_msg *m = probe_msg(fq_socket_transport(from));
			int rc = fq_send(from, &m, FQ_DONTWAIT);

			if (rc != 0)
				fq_msg_free(m);
			cr_assert(rc == 0 || rc == FQ_EAGAIN, "fqt_sync: probe send: %s (%s)",
			          fq_err_name(rc), fq_strerror(rc));
			sent = rc == 0;
		}
		if (probe_arrived(to, single && sent ? deadline : fqt_now_ms() + 10))
			break;
		cr_assert(fqt_now_ms() < deadline, "fqt_sync: %s and %s did not connect in %d ms",
		          fq_socket_type_name(tf), fq_socket_type_name(tt), FQT_WAIT_MS);
	}
	if (tt == FQ_SUB)
		FQ_PASS(fq_socket_set(to, "unsubscribe", sub));
}

void fqt_sync(fq_socket *from, fq_socket *to)
{
	sync_probes(from, to, false);
}

void fqt_marry_url(fq_socket *a, fq_socket *b, const char *scheme, char *url)
{
	fq_socket_type ta = fq_socket_get_type(a);

	fqt_url(scheme, url);
	fqt_bind(a, url);
	fqt_connect(b, url);
	if (ta == FQ_PUSH || ta == FQ_PUB || ta == FQ_REQ || ta == FQ_PAIR)
		sync_probes(a, b, true);
	else
		sync_probes(b, a, true);
}

void fqt_marry(fq_socket *a, fq_socket *b, const char *scheme)
{
	char url[FQT_URL_MAX];

	fqt_marry_url(a, b, scheme, url);
}

/* ---- Parameters ------------------------------------------------------------------------- */

static bool in_list(const char *list, const char *word, size_t len)
{
	const char *p = list;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n == len && strncmp(p, word, len) == 0)
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

static void free_params(struct criterion_test_params *p)
{
	cr_free(p->params);
}

struct criterion_test_params fqt_scheme_params(const char *name, const char *exclude)
{
	const fqi_transport_desc *d = fqi_transport_find(name);
	const char *p = d ? d->schemes : "";
	fqt_scheme_param *params = cr_calloc(8, sizeof(*params));
	size_t n = 0;

	while (params != NULL && *p != '\0' && n < 8) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len > 0 && len < sizeof(params[n].scheme) &&
		    (exclude == NULL || !in_list(exclude, p, len))) {
			memcpy(params[n].scheme, p, len);
			params[n].scheme[len] = '\0';
			n++;
		}
		p = end ? end + 1 : p + len;
	}
	return cr_make_param_array(fqt_scheme_param, params, n, free_params);
}

void fqt_capture_open(fqt_capture *c)
{
	c->text = NULL;
	c->len = 0;
	c->f = open_memstream(&c->text, &c->len);
	cr_assert_not_null(c->f);
}

const char *fqt_capture_text(fqt_capture *c)
{
	fflush(c->f);
	return c->text != NULL ? c->text : "";
}

void fqt_capture_close(fqt_capture *c)
{
	fclose(c->f);
	free(c->text);
}

/* ---- Pieces of cases that the conformance suites share ----------------------------------- */

const size_t fqt_mark_sizes[FQT_MARK_SIZES_N] = {200, 1u << 20,        48u << 10, 3u << 20,
                                                 200, (64u << 10) + 1, 8};

int fqt_seq_alloc(fq_transport *t, size_t size, uint64_t seq, fq_msg **out)
{
	int rc = size >= sizeof(seq) ? fq_msg_alloc(t, size, out) : FQ_EINVAL;

	if (rc == 0) {
		fqt_pattern_fill(fq_msg_data(*out), size, (uint32_t)seq);
		memcpy(fq_msg_data(*out), &seq, sizeof(seq));
	}
	return rc;
}

bool fqt_seq_ok(fq_msg *m, size_t size, uint64_t seq)
{
	const uint8_t *d = fq_msg_data(m);
	uint64_t got;

	if (fq_msg_size(m) != size || size < sizeof(got))
		return false;
	memcpy(&got, d, sizeof(got));
	for (size_t i = sizeof(got); i < size; i++)
		if (d[i] != fqt_pattern_byte((uint32_t)seq, i))
			return false;
	return got == seq;
}

int fqt_send_seq(fq_socket *s, size_t size, uint64_t seq, int flags)
{
	fq_msg *m = NULL;
	int rc;

	FQ_PASS(fqt_seq_alloc(fq_socket_transport(s), size, seq, &m));
	rc = fq_send(s, &m, flags);
	if (rc == 0)
		cr_assert(m == NULL, "a successful fq_send must set the caller's pointer to NULL");
	else
		cr_assert(m != NULL, "a failed fq_send must leave the message with the caller");
	fq_msg_free(m);
	return rc;
}

uint64_t fqt_recv_seq(fq_socket *s, size_t size)
{
	fq_msg *m = NULL;
	uint64_t seq = 0;
	int rc = fqt_recv(s, &m, 0);

	cr_assert(rc == 0, "fq_recv: %s (%s)", fq_err_name(rc), fq_strerror(rc));
	cr_assert(fq_msg_size(m) == size, "received %zu bytes, expected %zu", fq_msg_size(m), size);
	memcpy(&seq, fq_msg_data(m), sizeof(seq));
	cr_assert(fqt_seq_ok(m, size, seq), "message %llu differs", (unsigned long long)seq);
	fq_msg_free(m);
	return seq;
}

int fqt_fill(fq_socket *push, size_t size, int bound)
{
	int sent = 0, rc;

	while (sent <= bound) {
		rc = fqt_send_seq(push, size, (uint64_t)sent, FQ_DONTWAIT);
		if (rc == FQ_EAGAIN)
			break;
		FQ_PASS(rc);
		sent++;
	}
	cr_assert(sent <= bound,
	          "the sender never got FQ_EAGAIN: %d messages of %zu bytes accepted", sent, size);
	return sent;
}

static void adopted_free(void *data, void *hint)
{
	fqt_adopted *a = hint;

	atomic_fetch_add(&a->frees, data == a->data ? 1 : 1000); /* a wrong pointer fails */
	free(data);
}

fq_msg *fqt_adopt_pattern(fq_transport *t, size_t size, uint32_t seed, fqt_adopted *a)
{
	fq_msg *m = NULL;

	a->data = malloc(size);
	cr_assert(a->data != NULL);
	atomic_init(&a->frees, 0);
	fqt_pattern_fill(a->data, size, seed);
	FQ_PASS(fq_msg_adopt(t, a->data, size, adopted_free, a, &m));
	cr_assert(fq_msg_size(m) == size);
	fqt_msg_check(m, size, seed);
	return m;
}

void fqt_wait_frees(fqt_adopted *a, int expect)
{
	int64_t deadline = fqt_now_ms() + FQT_WAIT_MS;

	while (atomic_load(&a->frees) < expect && fqt_now_ms() < deadline)
		fqt_pause();
	cr_assert(atomic_load(&a->frees) == expect, "free function ran %d times, expected %d",
	          atomic_load(&a->frees), expect);
}

void *fqt_tag_sender_main(void *arg)
{
	fqt_tag_sender *ts = arg;

	for (int seq = 0; seq < ts->n && atomic_load(&ts->err) == 0; seq++) {
		fq_msg *parts[3] = {NULL, NULL, NULL};
		int rc = 0;

		for (uint32_t i = 0; i < 3 && rc == 0; i++) {
			fqt_part_tag tag = {ts->id, (uint32_t)seq, i, FQT_TAG_MAGIC};

			rc = fq_msg_alloc(fq_socket_transport(ts->s), sizeof(tag) + i * 8,
			                  &parts[i]);
			if (rc == 0)
				memcpy(fq_msg_data(parts[i]), &tag, sizeof(tag));
		}
		if (rc == 0)
			rc = fq_sendv(ts->s, parts, 3, 0);
		for (int i = 0; i < 3; i++)
			fq_msg_free(parts[i]);
		if (rc != 0)
			atomic_store(&ts->err, rc);
	}
	atomic_store(&ts->done, true);
	return NULL;
}

void *fqt_blocked_main(void *arg)
{
	fqt_blocked_call *b = arg;
	int rc = b->send ? fq_send(b->s, &b->m, 0) : fqt_recv(b->s, &b->m, 0);

	atomic_store(&b->rc, rc);
	atomic_store(&b->done, true);
	return NULL;
}

int fqt_wait_events_fd(fq_socket *s, int want)
{
	int64_t deadline = fqt_now_ms() + FQT_WAIT_MS;
	struct pollfd pfd = {.events = POLLIN};
	int ev;

	FQ_PASS(fq_socket_fd(s, &pfd.fd));
	cr_assert(pfd.fd >= 0);
	for (;;) {
		int64_t left = deadline - fqt_now_ms();

		ev = fq_socket_events(s);
		FQ_PASS(ev);
		if ((ev & want) || left <= 0)
			return ev;
		cr_assert(poll(&pfd, 1, (int)left) >= 0);
	}
}

void fqt_poller_expect(fq_poller *p, int ready, int idle)
{
	int64_t deadline = fqt_now_ms() + FQT_WAIT_MS;
	int n = 0;

	while (n == 0 && fqt_now_ms() < deadline) {
		n = fq_poller_wait(p, 100);
		FQ_PASS(n);
	}
	cr_assert(n == 1, "fq_poller_wait returned %d, expected 1 ready socket", n);
	cr_assert(fq_poller_events(p, (size_t)ready) & FQ_POLLIN,
	          "the socket sent to is not reported readable");
	cr_assert((fq_poller_events(p, (size_t)idle) & FQ_POLLIN) == 0,
	          "a socket is reported readable but nothing was sent to it");
}

static atomic_int warnings;

static void count_warning(fq_log_level level, const char *subsys, const char *msg, void *arg)
{
	(void)subsys, (void)msg, (void)arg;
	if (level <= FQ_LOG_WARN)
		atomic_fetch_add(&warnings, 1);
}

void fqt_warnings_start(void)
{
	atomic_store(&warnings, 0);
	fq_log_set_handler(count_warning, NULL);
	fq_log_set_level(FQ_LOG_WARN);
}

int fqt_warnings(void)
{
	return atomic_load(&warnings);
}

void fqt_warnings_stop(void)
{
	fq_log_set_handler(NULL, NULL);
}
