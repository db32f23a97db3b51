/*
 * iceoryx baseline of the fq-bench patterns (see baseline_iceoryx.h), on iceoryx's C binding,
 * written the way its examples and its own benchmark (iceperf) use it.
 *
 * Topics. An address "iox://SERVICE/INSTANCE" names the run; its events are the topics:
 * thr: "data" (sender -> receiver) and "end"; lat: "ping" (pinger -> ponger), "pong" (back)
 * and "end". Every publisher has the WAIT_FOR_CONSUMER policy and every subscriber
 * BLOCK_PRODUCER: a publisher whose subscriber's queue is full waits (iceoryx yields the CPU
 * in a loop until there is room) instead of dropping the oldest chunk, so every count is
 * exact. No history: a run starts once the sender sees its subscribers connected.
 *
 * thr: the sender loans a chunk of SIZE bytes per part (iox_pub_loan_chunk), writes its first
 * and last byte (every byte with --memset), as the fabriq sender does, and publishes it; the
 * receiver takes each chunk and releases it, reading nothing: it counts chunks. The end is a
 * chunk on the "end" topic holding the number of messages sent: it is published after the last
 * data chunk, so once the receiver sees it, everything sent is in its queue, and it drains it.
 * lat: the pinger loans, writes and publishes a ping per part; the ponger takes each ping,
 * loans a pong of the same size, publishes it unwritten and releases the ping; the pinger takes
 * and releases the pongs. Every message is a fresh loan: iceoryx cannot send a received chunk
 * on, and the loan, publish, take and release of both hops are what a round trip costs.
 *
 * Waiting: the subscribers busy-poll, iox_sub_take_chunk in a loop with a pause instruction;
 * every 128 empty polls they look at the "end" topic and at the clock (a silent peer ends the
 * run after the role's timeout) and yield the CPU, as the ring baseline does. No waitset: this
 * is iceoryx's lowest latency, to be compared with a busy-polling transport.
 *
 * Queue and mempools: a subscriber queue holds min(256, --hwm x parts) chunks (256 is
 * iceoryx's maximum), halved while the chunks it holds would exceed 256 MiB; a size needs that
 * many chunks plus 8 (the one being loaned, the one held by the receiver, the publisher's
 * cached last chunk and some room) in the first mempool that fits it. RouDi's built-in mempools
 * are used when they have that (fq-bench started RouDi without a configuration); otherwise
 * fq-bench writes a configuration with the built-in mempools plus one per size that did not fit.
 *
 * RouDi (parent side): at most one per machine. fq-bench uses a running one (its /tmp/roudi
 * socket answers), else starts iox-roudi with its stdout on a pipe, read until "RouDi is ready
 * for clients" (bounded), its log in a memfd (printed if it fails) and the configuration, if
 * any, in another memfd it reads as /proc/self/fd/N: fq-bench writes no file of its own.
 * RouDi gets SIGTERM if fq-bench dies. At the end fq-bench stops it with SIGTERM (it removes
 * its shared memory, sockets and locks itself), SIGKILL after 10 s, and removes whatever of
 * those is still there.
 */
#include "baseline_iceoryx.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <iceoryx_binding_c/enums.h>
#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>
#include <iceoryx_binding_c/types.h>

#define IOX_QUEUE_MAX   256u /* iceoryx's MAX_SUBSCRIBER_QUEUE_CAPACITY */
#define IOX_EXTRA       8u   /* chunks beyond the queue, see above */
#define IOX_HEADER      40u  /* sizeof(iox::mepoo::ChunkHeader) */
#define IOX_MAX_PAYLOAD (UINT32_MAX - 4096u)
#define POOL_BUDGET     ((uint64_t)256 << 20)
#define DEFAULT_HWM     1000u
#define SPIN_CHECK      127u /* empty polls between two looks at the clock (2^n - 1) */
#define WARMUP          100  /* lat: round trips before the timed ones, as the other roles */
#define END_SIZE        8u   /* the end chunk: a uint64_t */
#define ROUDI_READY_S   30
#define ROUDI_STOP_S    10
#define ROUDI_SOCKET    "/tmp/roudi"
#define NAME_MAX_IOX    100 /* iceoryx's IdString_t capacity */

/* ---- Sizing: shared by the parent (RouDi's mempools) and the roles (queue capacity) ----- */

/* RouDi's built-in mempools (iceoryx 2.0): payload bytes and chunk count. */
static const struct {
	uint64_t size, count;
} default_pools[] = {
    {128, 10000}, {1024, 5000},  {16384, 1000}, {131072, 200},
    {524288, 50}, {1048576, 30}, {4194304, 10},
};
#define N_DEFAULT_POOLS (sizeof(default_pools) / sizeof(default_pools[0]))

static uint64_t pool_size(size_t size)
{
	uint64_t s = size < 8 ? 8 : size;

	return (s + 7) / 8 * 8;
}

static uint64_t queue_capacity(size_t size, size_t parts, int hwm)
{
	uint64_t q = hwm < 0    ? DEFAULT_HWM * parts
	             : hwm == 0 ? IOX_QUEUE_MAX
	                        : (uint64_t)hwm * parts;

	if (q > IOX_QUEUE_MAX)
		q = IOX_QUEUE_MAX;
	while (q > 2 && q * (pool_size(size) + IOX_HEADER) > POOL_BUDGET)
		q >>= 1;
	return q;
}

/* ---- Parent side: RouDi --------------------------------------------------------------- */

static struct {
	pid_t pid;  /* the RouDi fq-bench started, or -1 */
	int out_fd; /* its stdout (read end) */
	int log_fd; /* its stderr (a memfd) */
} roudi = {-1, -1, -1};

static bool roudi_answers(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool up;

	if (fd < 0)
		return false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ROUDI_SOCKET);
	up = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EPROTOTYPE;
	close(fd);
	return up;
}

static bool find_in_path(const char *exe, char *out, size_t len)
{
	const char *path = getenv("PATH");

	if (path == NULL || *path == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path; *p != '\0';) {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);

		if (n > 0 && (size_t)snprintf(out, len, "%.*s/%s", (int)n, p, exe) < len &&
		    access(out, X_OK) == 0)
			return true;
		if (colon == NULL)
			break;
		p = colon + 1;
	}
	return false;
}

typedef struct pool {
	uint64_t size, count;
} pool;

static int pool_cmp(const void *a, const void *b)
{
	const pool *x = a, *y = b;

	return (x->size > y->size) - (x->size < y->size);
}

/*
 * The mempools the run needs; 0 when RouDi's built-in ones hold them, else the number of
 * pools of the configuration to write into `out` (room for N_DEFAULT_POOLS + n_sizes + 1).
 */
static int plan_pools(const size_t *sizes, int n_sizes, size_t parts, int hwm, pool *out)
{
	pool need[64];
	int n_need = 0, n = 0;
	bool fits = true;

	need[n_need++] = (pool){pool_size(END_SIZE), 16};
	for (int i = 0; i < n_sizes && n_need < 64; i++)
		need[n_need++] =
		    (pool){pool_size(sizes[i]), queue_capacity(sizes[i], parts, hwm) + IOX_EXTRA};
	for (int i = 0; i < n_need; i++) {
		size_t d = 0;

		while (d < N_DEFAULT_POOLS && default_pools[d].size < need[i].size)
			d++;
		if (d == N_DEFAULT_POOLS || default_pools[d].count < need[i].count)
			fits = false;
	}
	if (fits)
		return 0;
	for (size_t d = 0; d < N_DEFAULT_POOLS; d++)
		out[n++] = (pool){default_pools[d].size, default_pools[d].count};
	for (int i = 0; i < n_need; i++) {
		int j;

		for (j = 0; j < n && out[j].size != need[i].size; j++)
			;
		if (j < n) {
			if (out[j].count < need[i].count)
				out[j].count = need[i].count;
		} else {
			out[n++] = need[i];
		}
	}
	qsort(out, (size_t)n, sizeof(*out), pool_cmp);
	return n;
}

static int write_config(const pool *pools, int n)
{
	int fd = memfd_create("fq-bench-roudi-config", MFD_CLOEXEC);
	FILE *f;

	if (fd < 0)
		return -1;
	f = fdopen(dup(fd), "w");
	if (f == NULL) {
		close(fd);
		return -1;
	}
	fprintf(f, "# RouDi configuration written by fq-bench for one run\n"
	           "[general]\nversion = 1\n\n[[segment]]\n");
	for (int i = 0; i < n; i++)
		fprintf(f, "\n[[segment.mempool]]\nsize = %llu\ncount = %llu\n",
		        (unsigned long long)pools[i].size, (unsigned long long)pools[i].count);
	if (fclose(f) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void print_log(void)
{
	char buf[4096];
	ssize_t got;
	off_t off = 0;

	if (roudi.log_fd < 0)
		return;
	fprintf(stderr, "fq-bench: iox-roudi said:\n");
	while ((got = pread(roudi.log_fd, buf, sizeof(buf), off)) > 0) {
		fwrite(buf, 1, (size_t)got, stderr);
		off += got;
	}
}

/* The files a RouDi run leaves when it cannot clean up: shared memory, sockets, locks. */
static void remove_leftovers(bool say)
{
	char shm[300];
	const struct group *g = getgrgid(getegid());
	const char *files[] = {"/dev/shm/iceoryx_mgmt", shm, ROUDI_SOCKET, "/tmp/roudi.lock",
	                       "/tmp/iox-unique-roudi.lock"};

	snprintf(shm, sizeof(shm), "/dev/shm/%s", g != NULL ? g->gr_name : "root");
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (unlink(files[i]) == 0 && say)
			fprintf(stderr, "fq-bench: removed %s, left by iox-roudi\n", files[i]);
	}
}

static void close_fds(void)
{
	if (roudi.out_fd >= 0)
		close(roudi.out_fd);
	if (roudi.log_fd >= 0)
		close(roudi.log_fd);
	roudi.out_fd = roudi.log_fd = -1;
}

/* Read RouDi's stdout until it says it is ready; false on exit, error or deadline. */
static bool wait_ready(uint64_t deadline)
{
	char buf[512];
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = {.fd = roudi.out_fd, .events = POLLIN};
		uint64_t now = fqb_now_ns();
		ssize_t got;

		if (now >= deadline) {
			fprintf(stderr, "fq-bench: iox-roudi not ready after %d s\n",
			        ROUDI_READY_S);
			return false;
		}
		if (poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1) < 0 && errno != EINTR)
			return false;
		if (pfd.revents == 0)
			continue;
		if (len == sizeof(buf) - 1)
			len = 0;
		got = read(roudi.out_fd, buf + len, sizeof(buf) - 1 - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			fprintf(stderr, "fq-bench: iox-roudi exited before it was ready\n");
			return false;
		}
		len += (size_t)got;
		buf[len] = '\0';
		if (strstr(buf, "RouDi is ready for clients") != NULL)
			return true;
		/* Keep the last partial line only. */
		{
			char *nl = strrchr(buf, '\n');

			if (nl != NULL) {
				len = strlen(nl + 1);
				memmove(buf, nl + 1, len + 1);
			}
		}
	}
}

static void reap_roudi(int wait_s)
{
	uint64_t deadline = fqb_now_ns() + (uint64_t)wait_s * 1000000000u;
	int status = 0;
	bool killed = false;

	for (;;) {
		pid_t got = waitpid(roudi.pid, &status, WNOHANG);

		if (got == roudi.pid || (got < 0 && errno == ECHILD))
			break;
		if (fqb_now_ns() >= deadline) {
			fprintf(stderr, "fq-bench: iox-roudi did not stop within %d s: killed\n",
			        wait_s);
			kill(roudi.pid, SIGKILL);
			while (waitpid(roudi.pid, &status, 0) < 0 && errno == EINTR)
				;
			killed = true;
			break;
		}
		struct timespec ts = {0, 10000000L};
		nanosleep(&ts, NULL);
	}
	if (!killed && WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		fprintf(stderr, "fq-bench: iox-roudi exited with status %d\n", WEXITSTATUS(status));
		print_log();
	}
	roudi.pid = -1;
	remove_leftovers(killed);
}

int fqb_iox_start(const size_t *sizes, int n_sizes, size_t parts, int hwm, char *why,
                  size_t why_len)
{
	char exe[PATH_MAX], cfg_path[64];
	pool pools[N_DEFAULT_POOLS + 64 + 1];
	int out[2], cfg_fd = -1, n_pools;
	char *argv[8];
	int argc = 0;

	if (roudi.pid > 0)
		return 0;
	if (roudi_answers()) {
		fprintf(stderr, "fq-bench: iceoryx: using the RouDi that is running (its mempools "
		                "must hold the sizes asked for)\n");
		return 0;
	}
	if (!find_in_path("iox-roudi", exe, sizeof(exe))) {
		snprintf(why, why_len, "iox-roudi is not in PATH (Debian package iceoryx)");
		return 1;
	}
	for (int i = 0; i < n_sizes; i++) {
		if (sizes[i] > IOX_MAX_PAYLOAD) {
			fprintf(stderr,
			        "fq-bench: iceoryx: %zu-byte chunks are beyond its 4 GiB "
			        "limit\n",
			        sizes[i]);
			return -1;
		}
	}
	n_pools = plan_pools(sizes, n_sizes > 64 ? 64 : n_sizes, parts, hwm, pools);
	if (n_pools > 0 && (cfg_fd = write_config(pools, n_pools)) < 0) {
		fprintf(stderr, "fq-bench: iceoryx: writing RouDi's configuration: %s\n",
		        strerror(errno));
		return -1;
	}
	roudi.log_fd = memfd_create("fq-bench-roudi-log", MFD_CLOEXEC);
	if (roudi.log_fd < 0 || pipe2(out, O_CLOEXEC) != 0) {
		fprintf(stderr, "fq-bench: iceoryx: %s\n", strerror(errno));
		if (cfg_fd >= 0)
			close(cfg_fd);
		close_fds();
		return -1;
	}
	argv[argc++] = "iox-roudi";
	argv[argc++] = "--log-level";
	argv[argc++] = "warning";
	if (cfg_fd >= 0) {
		snprintf(cfg_path, sizeof(cfg_path), "/proc/self/fd/%d", cfg_fd);
		argv[argc++] = "--config-file";
		argv[argc++] = cfg_path;
	}
	argv[argc] = NULL;

	pid_t parent = getpid();

	fflush(NULL);
	roudi.pid = fork();
	if (roudi.pid < 0) {
		fprintf(stderr, "fq-bench: fork: %s\n", strerror(errno));
		close(out[0]);
		close(out[1]);
		if (cfg_fd >= 0)
			close(cfg_fd);
		close_fds();
		return -1;
	}
	if (roudi.pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		/* A RouDi that outlives fq-bench cleans up on SIGTERM. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0 ||
		    dup2(roudi.log_fd, STDERR_FILENO) < 0)
			_exit(127);
		if (cfg_fd >= 0 && fcntl(cfg_fd, F_SETFD, 0) != 0)
			_exit(127);
		execv(exe, argv);
		fprintf(stderr, "fq-bench: exec %s: %s\n", exe, strerror(errno));
		_exit(127);
	}
	close(out[1]);
	roudi.out_fd = out[0];
	if (!wait_ready(fqb_now_ns() + (uint64_t)ROUDI_READY_S * 1000000000u)) {
		if (cfg_fd >= 0)
			close(cfg_fd);
		kill(roudi.pid, SIGTERM);
		reap_roudi(ROUDI_STOP_S);
		print_log();
		close_fds();
		return -1;
	}
	if (cfg_fd >= 0)
		close(cfg_fd);
	return 0;
}

void fqb_iox_stop(void)
{
	if (roudi.pid <= 0)
		return;
	kill(roudi.pid, SIGTERM);
	reap_roudi(ROUDI_STOP_S);
	close_fds();
}

void fqb_iox_url(char *url, size_t len, unsigned run)
{
	snprintf(url, len, "%s://fq-bench/%d.%u", FQB_IOX_SCHEME, (int)getpid(), run);
}

static void runtime_name(char *out, size_t len, fqb_role role, pid_t pid)
{
	snprintf(out, len, "fq-bench-%s-%d", fqb_role_name(role), (int)pid);
}

void fqb_iox_forget(fqb_role role, pid_t pid)
{
	char path[128], name[64];
	struct stat st;

	/* iceoryx's runtime makes /tmp/NAME (its socket) and /tmp/NAME.lock. */
	runtime_name(name, sizeof(name), role, pid);
	snprintf(path, sizeof(path), "/tmp/%s", name);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	snprintf(path, sizeof(path), "/tmp/%s.lock", name);
	if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
		unlink(path);
}

/* ---- Roles ---------------------------------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

typedef struct iside {
	char service[NAME_MAX_IOX + 1], instance[NAME_MAX_IOX + 1];
	iox_pub_storage_t pub_store[2];
	iox_sub_storage_t sub_store[2];
	iox_pub_t pub[2];
	iox_sub_t sub[2];
	int n_pub, n_sub;
	bool runtime;
} iside;

static int parse_url(iside *s, const char *url)
{
	const char *prefix = FQB_IOX_SCHEME "://";
	const char *p, *slash;

	if (strncmp(url, prefix, strlen(prefix)) != 0)
		return -1;
	p = url + strlen(prefix);
	slash = strchr(p, '/');
	if (slash == NULL || slash == p || slash[1] == '\0' || strchr(slash + 1, '/') != NULL ||
	    (size_t)(slash - p) > NAME_MAX_IOX || strlen(slash + 1) > NAME_MAX_IOX)
		return -1;
	memcpy(s->service, p, (size_t)(slash - p));
	s->service[slash - p] = '\0';
	snprintf(s->instance, sizeof(s->instance), "%s", slash + 1);
	return 0;
}

/* The files of this side's runtime, removed if it is ended by a signal (see iside_open). */
static char own_socket[96], own_lock[96];

static void on_term(int sig)
{
	(void)sig;
	unlink(own_socket);
	unlink(own_lock);
	_exit(FQB_EXIT_FAILURE);
}

static int iside_open(iside *s, const fqb_role_args *a)
{
	struct sigaction sa = {.sa_handler = on_term};
	char name[64];

	memset(s, 0, sizeof(*s));
	if (parse_url(s, a->url) != 0) {
		fqb_report_error("iceoryx: bad url '%s' (%s://SERVICE/INSTANCE)", a->url,
		                 FQB_IOX_SCHEME);
		return -1;
	}
	if (a->size > IOX_MAX_PAYLOAD) {
		fqb_report_error("iceoryx: %zu-byte chunks are beyond its 4 GiB limit", a->size);
		return -1;
	}
	runtime_name(name, sizeof(name), a->role, getpid());
	/*
	 * iceoryx's runtime makes /tmp/NAME and /tmp/NAME.lock and removes them when it shuts down.
	 * A side that is ended by a signal removes them too: SIGTERM and SIGINT, and SIGTERM rather
	 * than fq-bench's SIGKILL when the parent dies (RouDi, the parent's child too, then stops
	 * and cleans up after itself). A side killed by the parent is cleaned by fqb_iox_forget.
	 */
	snprintf(own_socket, sizeof(own_socket), "/tmp/%s", name);
	snprintf(own_lock, sizeof(own_lock), "/tmp/%s.lock", name);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1) {
		fqb_report_error("iceoryx: the parent is gone");
		return -1;
	}
	iox_set_loglevel(Iceoryx_LogLevel_Warn);
	iox_runtime_init(name); /* waits for RouDi; ends the process if there is none */
	s->runtime = true;
	return 0;
}

static iox_pub_t add_pub(iside *s, const char *event)
{
	iox_pub_options_t o;

	iox_pub_options_init(&o);
	o.historyCapacity = 0;
	o.offerOnCreate = true;
	o.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
	s->pub[s->n_pub] =
	    iox_pub_init(&s->pub_store[s->n_pub], s->service, s->instance, event, &o);
	return s->pub[s->n_pub++];
}

static iox_sub_t add_sub(iside *s, const char *event, uint64_t queue)
{
	iox_sub_options_t o;

	iox_sub_options_init(&o);
	o.queueCapacity = queue;
	o.historyRequest = 0;
	o.subscribeOnCreate = true;
	o.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
	o.requirePublisherHistorySupport = false;
	s->sub[s->n_sub] =
	    iox_sub_init(&s->sub_store[s->n_sub], s->service, s->instance, event, &o);
	return s->sub[s->n_sub++];
}

static void iside_close(iside *s)
{
	for (int i = 0; i < s->n_sub; i++)
		iox_sub_deinit(s->sub[i]);
	for (int i = 0; i < s->n_pub; i++)
		iox_pub_deinit(s->pub[i]);
	s->n_sub = s->n_pub = 0;
	if (s->runtime)
		iox_runtime_shutdown();
	s->runtime = false;
}

/* The result line is out: a side that cannot shut down its runtime still measured. */
static volatile sig_atomic_t reported;

static void on_alarm(int sig)
{
	static const char msg[] = "fq-bench: iceoryx: the runtime did not shut down within 5 s: "
	                          "leaving without it\n";

	(void)sig;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to say */
	}
	unlink(own_socket);
	unlink(own_lock);
	_exit(reported ? FQB_EXIT_OK : FQB_EXIT_FAILURE);
}

/*
 * Close the side with a bound: iceoryx's runtime has been seen, rarely, never to return from
 * its shutdown. The alarm stays armed until the process has exited (the runtime's destructor
 * runs at exit); RouDi drops a side that left without a word after its keep-alive timeout.
 */
static void iside_close_bounded(iside *s)
{
	struct sigaction sa = {.sa_handler = on_alarm};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(5);
	iside_close(s);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * Sender and pinger: wait until every publisher has its subscriber and, for the pinger, its
 * subscriber its publisher (RouDi connects them within a few discovery intervals).
 */
static int wait_connected(const iside *s, int timeout_ms)
{
	uint64_t deadline = fqb_now_ns() + (uint64_t)timeout_ms * 1000000u;

	for (;;) {
		bool all = true;

		for (int i = 0; i < s->n_pub; i++)
			all = all && iox_pub_has_subscribers(s->pub[i]);
		for (int i = 0; i < s->n_sub; i++)
			all = all && iox_sub_get_subscription_state(s->sub[i]) ==
			                 SubscribeState_SUBSCRIBED;
		if (all)
			return 0;
		if (fqb_now_ns() >= deadline) {
			fqb_report_error("iceoryx: the peer did not connect within %d ms",
			                 timeout_ms);
			return -1;
		}
		sleep_ms(1);
	}
}

static const char *alloc_result_name(enum iox_AllocationResult r)
{
	switch (r) {
	case AllocationResult_NO_MEMPOOLS_AVAILABLE:
		return "no mempool holds chunks of this size";
	case AllocationResult_RUNNING_OUT_OF_CHUNKS:
		return "running out of chunks";
	case AllocationResult_TOO_MANY_CHUNKS_ALLOCATED_IN_PARALLEL:
		return "too many chunks loaned at once";
	default:
		return "error";
	}
}

static void *loan(iox_pub_t pub, size_t size)
{
	void *p = NULL;
	enum iox_AllocationResult r = iox_pub_loan_chunk(pub, &p, (uint32_t)size);

	if (r != AllocationResult_SUCCESS) {
		fqb_report_error("iceoryx: loaning a %zu-byte chunk: %s (RouDi's mempools: "
		                 "see fq-bench(1))",
		                 size, alloc_result_name(r));
		return NULL;
	}
	return p;
}

static int publish_end(iox_pub_t pub, uint64_t n)
{
	void *p = loan(pub, END_SIZE);

	if (p == NULL)
		return -1;
	memcpy(p, &n, sizeof(n));
	iox_pub_publish_chunk(pub, p);
	return 0;
}

/*
 * Every SPIN_CHECK + 1 empty polls: look at the end topic (`end`, when not NULL; *ended set
 * and *sent read from it) and at the clock. -1 once the peer has been silent for timeout_ms.
 */
static int idle_check(iox_sub_t end, bool *ended, uint64_t *sent, uint64_t *deadline,
                      int timeout_ms)
{
	uint64_t now;

	if (end != NULL) {
		const void *p;

		if (iox_sub_take_chunk(end, &p) == ChunkReceiveResult_SUCCESS) {
			memcpy(sent, p, sizeof(*sent));
			iox_sub_release_chunk(end, p);
			*ended = true;
			return 0;
		}
	}
	now = fqb_now_ns();
	if (*deadline == 0)
		*deadline = now + (uint64_t)timeout_ms * 1000000u;
	else if (now >= *deadline)
		return -1;
	sched_yield(); /* a peer on the same CPU gets it; alone on its CPU, a no-op */
	return 0;
}

/* ---- thr ---------------------------------------------------------------------------------- */

static int sender(const fqb_role_args *a)
{
	fqb_deadline dl;
	const size_t size = a->size, parts = a->parts;
	uint64_t i;
	iox_pub_t data, end;
	double cpu0;
	iside s;

	if (iside_open(&s, a) != 0)
		return FQB_EXIT_FAILURE;
	data = add_pub(&s, "data");
	end = add_pub(&s, "end");
	if (wait_connected(&s, a->timeout_ms) != 0)
		goto fail;
	cpu0 = fqb_cpu_seconds();
	fqb_deadline_start(&dl, a);
	for (i = 0; a->count == 0 || i < a->count; i++) {
		if (fqb_deadline_passed(&dl, i))
			break;
		for (size_t j = 0; j < parts; j++) {
			char *p = loan(data, size);

			if (p == NULL)
				goto fail;
			fqb_touch(p, size, i, a->fill);
			iox_pub_publish_chunk(data,
			                      p); /* waits while the receiver's queue is full */
		}
	}
	if (publish_end(end, i) != 0)
		goto fail;
	if (a->hold)
		fqb_hold_wait(a->timeout_ms);
	fqb_report_sender(FQB_ROLE_SENDER, i, fqb_cpu_seconds() - cpu0);
	reported = 1;
	iside_close_bounded(&s);
	return FQB_EXIT_OK;
fail:
	iside_close_bounded(&s);
	return FQB_EXIT_FAILURE;
}

static int receiver(const fqb_role_args *a)
{
	const uint64_t queue = queue_capacity(a->size, a->parts, a->hwm);
	uint64_t chunks = 0, sent = 0, t_first = 0, t_end, deadline = 0;
	uint32_t idle = 0;
	bool ended = false;
	iox_sub_t data, end;
	double cpu0;
	iside s;

	if (iside_open(&s, a) != 0)
		return FQB_EXIT_FAILURE;
	data = add_sub(&s, "data", queue);
	end = add_sub(&s, "end", 1);
	fqb_report_url(a->url);
	cpu0 = fqb_cpu_seconds();
	for (;;) {
		const void *p;
		enum iox_ChunkReceiveResult r = iox_sub_take_chunk(data, &p);

		if (r == ChunkReceiveResult_SUCCESS) {
			if (chunks++ == 0)
				t_first = fqb_now_ns();
			iox_sub_release_chunk(data, p);
			idle = 0;
			deadline = 0;
			continue;
		}
		if (r != ChunkReceiveResult_NO_CHUNK_AVAILABLE) {
			fqb_report_error("iceoryx: iox_sub_take_chunk failed (%d)", (int)r);
			goto fail;
		}
		if (ended)
			break; /* the end was seen and the queue is drained */
		cpu_relax();
		if ((++idle & SPIN_CHECK) == 0 &&
		    idle_check(end, &ended, &sent, &deadline, a->timeout_ms) != 0) {
			fqb_report_error("iceoryx: the sender went silent");
			goto fail;
		}
	}
	t_end = fqb_now_ns();
	if (chunks != sent * a->parts) {
		fqb_report_error("iceoryx: %llu chunks received, %llu messages of %zu parts sent",
		                 (unsigned long long)chunks, (unsigned long long)sent, a->parts);
		goto fail;
	}
	fqb_report_receiver(sent, sent ? (double)(t_end - t_first) / 1e9 : 0.0,
	                    fqb_cpu_seconds() - cpu0);
	reported = 1;
	iside_close_bounded(&s);
	return FQB_EXIT_OK;
fail:
	fprintf(stderr, "fq-bench: receiver stopped after %llu chunks\n",
	        (unsigned long long)chunks);
	iside_close_bounded(&s);
	return FQB_EXIT_FAILURE;
}

/* ---- lat ---------------------------------------------------------------------------------- */

/* Busy-poll `sub` for one chunk and release it. 0, or -1 (reported) on silence or error. */
static int take_one(iox_sub_t sub, const fqb_role_args *a)
{
	uint64_t deadline = 0, unused = 0;
	uint32_t idle = 0;
	bool ended = false;

	for (;;) {
		const void *p;
		enum iox_ChunkReceiveResult r = iox_sub_take_chunk(sub, &p);

		if (r == ChunkReceiveResult_SUCCESS) {
			iox_sub_release_chunk(sub, p);
			return 0;
		}
		if (r != ChunkReceiveResult_NO_CHUNK_AVAILABLE) {
			fqb_report_error("iceoryx: iox_sub_take_chunk failed (%d)", (int)r);
			return -1;
		}
		cpu_relax();
		if ((++idle & SPIN_CHECK) == 0 &&
		    idle_check(NULL, &ended, &unused, &deadline, a->timeout_ms) != 0) {
			fqb_report_error("iceoryx: the ponger went silent");
			return -1;
		}
	}
}

static int round_trip(iox_pub_t ping, iox_sub_t pong, const fqb_role_args *a, uint64_t n)
{
	for (size_t j = 0; j < a->parts; j++) {
		char *p = loan(ping, a->size);

		if (p == NULL)
			return -1;
		fqb_touch(p, a->size, n, a->fill);
		iox_pub_publish_chunk(ping, p);
	}
	for (size_t j = 0; j < a->parts; j++) {
		if (take_one(pong, a) != 0)
			return -1;
	}
	return 0;
}

static int pinger(const fqb_role_args *a)
{
	const uint64_t queue = queue_capacity(a->size, a->parts, a->hwm);
	fqb_samples samples = {0};
	uint64_t t0, prev, end_ns = UINT64_MAX, n = 0;
	int lap;
	iox_pub_t ping, end;
	iox_sub_t pong;
	double cpu0;
	int rc = FQB_EXIT_FAILURE;
	iside s;

	if (fqb_samples_init(&samples, a->count, a->duration) != 0) {
		fqb_report_error("out of memory for latency samples");
		return FQB_EXIT_FAILURE;
	}
	if (iside_open(&s, a) != 0) {
		fqb_samples_free(&samples);
		return FQB_EXIT_FAILURE;
	}
	ping = add_pub(&s, "ping");
	end = add_pub(&s, "end");
	pong = add_sub(&s, "pong", queue);
	if (wait_connected(&s, a->timeout_ms) != 0)
		goto out;
	for (int w = 0; w < WARMUP; w++) {
		if (round_trip(ping, pong, a, (uint64_t)w) != 0)
			goto out;
	}
	cpu0 = fqb_cpu_seconds();
	t0 = prev = fqb_now_ns();
	if (a->count == 0)
		end_ns = t0 + (uint64_t)(a->duration * 1e9);
	while (a->count == 0 || n < a->count) {
		if (round_trip(ping, pong, a, n) != 0)
			goto out;
		lap = fqb_lap(&samples, &prev, &n, end_ns);
		if (lap < 0)
			goto out;
		if (lap > 0)
			break;
	}
	if (publish_end(end, n) != 0)
		goto out;
	if (a->hold)
		fqb_hold_wait(a->timeout_ms);
	fqb_report_pinger_samples(&samples, n, t0, prev, cpu0);
	reported = 1;
	rc = FQB_EXIT_OK;
out:
	iside_close_bounded(&s);
	fqb_samples_free(&samples);
	return rc;
}

static int ponger(const fqb_role_args *a)
{
	const uint64_t queue = queue_capacity(a->size, a->parts, a->hwm);
	uint64_t n = 0, sent = 0, deadline = 0;
	uint32_t idle = 0;
	bool ended = false;
	iox_sub_t ping, end;
	iox_pub_t pong;
	double cpu0;
	iside s;

	if (iside_open(&s, a) != 0)
		return FQB_EXIT_FAILURE;
	ping = add_sub(&s, "ping", queue);
	end = add_sub(&s, "end", 1);
	pong = add_pub(&s, "pong");
	fqb_report_url(a->url);
	cpu0 = fqb_cpu_seconds();
	while (!ended) {
		const void *in;
		enum iox_ChunkReceiveResult r = iox_sub_take_chunk(ping, &in);

		if (r == ChunkReceiveResult_SUCCESS) {
			void *out = loan(pong, a->size);

			if (out == NULL) {
				iox_sub_release_chunk(ping, in);
				goto fail;
			}
			iox_pub_publish_chunk(pong, out);
			iox_sub_release_chunk(ping, in);
			n++;
			idle = 0;
			deadline = 0;
			continue;
		}
		if (r != ChunkReceiveResult_NO_CHUNK_AVAILABLE) {
			fqb_report_error("iceoryx: iox_sub_take_chunk failed (%d)", (int)r);
			goto fail;
		}
		cpu_relax();
		if ((++idle & SPIN_CHECK) == 0 &&
		    idle_check(end, &ended, &sent, &deadline, a->timeout_ms) != 0) {
			fqb_report_error("iceoryx: the pinger went silent");
			goto fail;
		}
	}
	fqb_report_sender(FQB_ROLE_PONGER, n, fqb_cpu_seconds() - cpu0);
	reported = 1;
	iside_close_bounded(&s);
	return FQB_EXIT_OK;
fail:
	iside_close_bounded(&s);
	return FQB_EXIT_FAILURE;
}

int fqb_iox_role(const fqb_role_args *a)
{
	static const fqb_role_fns fns = {sender, receiver, pinger, ponger, "no role"};

	return fqb_role_run(&fns, a);
}
