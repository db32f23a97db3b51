/*
 * Crash safety of the shmem transport, with real processes and SIGKILL:
 *
 *   shm_crash fault POINT   a child is killed inside the cross-process step POINT (the
 *                           transport's fault injection); the survivor must not hang, must
 *                           get back every block the child held or had in flight within 2 s,
 *                           and a restarted child must work
 *   shm_crash chain SECONDS source -> worker -> sink, the worker killed at random moments and
 *                           restarted; sequence numbers must stay in order without duplicates,
 *                           losses only from the victims' in-flight windows, nothing leaked
 *   shm_crash intruder      another Unix user can neither connect nor open a segment
 *
 * The parent is the survivor; children are this program again (fork + exec) in a role.
 * Every wait is bounded; children are killed on every exit path.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "transport/shmem/shm.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *self_exe;
static char scratch[128];
static int failures;
static pid_t children[16];

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
			failures++;                                          \
		}                                                            \
	} while (0)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* ---- Messages: 8 bytes of sequence number, then a pattern derived from it ---------------- */

static uint8_t pat(uint64_t seq, size_t i)
{
	return (uint8_t)(seq * 131 + i * 7 + 1);
}

static fq_msg *make_msg(fq_transport *t, uint64_t seq, size_t size)
{
	fq_msg *m = NULL;
	uint8_t *d;

	if (fq_msg_alloc(t, size, &m) != 0)
		return NULL;
	d = fq_msg_data(m);
	memcpy(d, &seq, sizeof(seq));
	for (size_t i = sizeof(seq); i < size; i += 4096)
		d[i] = pat(seq, i);
	d[size - 1] = pat(seq, size - 1);
	return m;
}

/* Sequence number of a message whose bytes are intact, or UINT64_MAX. */
static uint64_t check_msg(fq_msg *m)
{
	const uint8_t *d = fq_msg_data(m);
	size_t size = fq_msg_size(m);
	uint64_t seq;

	if (size < 16)
		return UINT64_MAX;
	memcpy(&seq, d, sizeof(seq));
	for (size_t i = sizeof(seq); i < size; i += 4096)
		if (d[i] != pat(seq, i))
			return UINT64_MAX;
	return d[size - 1] == pat(seq, size - 1) ? seq : UINT64_MAX;
}

/* ---- Children ----------------------------------------------------------------------------- */

static pid_t spawn(const char *fault, const char *after, const char *const *args)
{
	char *argv[16], *envp[256], fault_env[64], after_env[64];
	size_t n = 0, e = 0;
	pid_t pid;

	argv[n++] = (char *)self_exe;
	argv[n++] = (char *)"role";
	for (size_t i = 0; args[i] != NULL && n < 15; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	for (char **v = environ; *v != NULL && e < 250; v++) {
		if (strncmp(*v, "FQ_SHM_FAULT", 12) != 0)
			envp[e++] = *v;
	}
	if (fault != NULL) {
		snprintf(fault_env, sizeof(fault_env), "FQ_SHM_FAULT=%s", fault);
		snprintf(after_env, sizeof(after_env), "FQ_SHM_FAULT_AFTER=%s",
		         after ? after : "0");
		envp[e++] = fault_env;
		envp[e++] = after_env;
	}
	envp[e] = NULL;
	{
		pid_t parent = getpid();

		pid = fork();
		if (pid == 0) {
			/* Never outlive the test (a killed test must not leave roles running). */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(1);
			execve(self_exe, argv, envp);
			_exit(127);
		}
	}
	for (size_t i = 0; i < 16; i++) {
		if (children[i] == 0) {
			children[i] = pid;
			break;
		}
	}
	return pid;
}

static void forget_child(pid_t pid)
{
	for (size_t i = 0; i < 16; i++)
		if (children[i] == pid)
			children[i] = 0;
}

/* Wait up to ms for pid; kill it if it does not end. Returns the wait status, -1 on timeout. */
static int reap(pid_t pid, int ms)
{
	int64_t deadline = now_ms() + ms;
	int status;

	while (now_ms() < deadline) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			forget_child(pid);
			return status;
		}
		pause_ms(5);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	forget_child(pid);
	return -1;
}

/* Still running? (does not reap it: reap() gets the status later) */
static bool alive(pid_t pid)
{
	siginfo_t info;

	memset(&info, 0, sizeof(info));
	return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	       info.si_pid == 0;
}

static void kill_children(void)
{
	for (size_t i = 0; i < 16; i++) {
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	}
}

static fq_socket *sock(fq_transport *t, fq_socket_type type, int timeout_ms)
{
	fq_socket *s = NULL;

	if (fq_socket_open(&s, t, type) != 0)
		return NULL;
	fq_socket_set_int(s, "rcv_timeout", timeout_ms);
	fq_socket_set_int(s, "snd_timeout", timeout_ms);
	fq_socket_set_int(s, "reconnect_ivl", 10);
	fq_socket_set_int(s, "linger", 2000);
	return s;
}

/* Roles. Each returns the exit code. */
static int role(int argc, char **argv)
{
	fq_transport *t = NULL;
	int rc = fq_transport_open(&t, "shmem", NULL);
	const char *r = argc > 0 ? argv[0] : "";

	if (rc != 0)
		return 3;
	if (strcmp(r, "sender") == 0 && argc == 4) { /* URL COUNT SIZE */
		fq_socket *s = sock(t, FQ_PUSH, 5000);
		unsigned long count = strtoul(argv[2], NULL, 10);
		size_t size = strtoul(argv[3], NULL, 10);

		fq_connect(s, argv[1]);
		for (unsigned long i = 0; i < count; i++) {
			fq_msg *m = make_msg(t, i, size);

			if (m == NULL || fq_send(s, &m, 0) != 0)
				return 4;
		}
		fq_socket_close(s);
	} else if (strcmp(r, "receiver") == 0 && argc == 4) { /* URL COUNT HOLD */
		fq_socket *s = sock(t, FQ_PULL, 5000);
		unsigned long count = strtoul(argv[2], NULL, 10), hold = strtoul(argv[3], NULL, 10);
		fq_msg *held[4096];
		size_t nheld = 0;

		fq_connect(s, argv[1]);
		for (unsigned long i = 0; i < count; i++) {
			fq_msg *m = NULL;

			if (fq_recv(s, &m, 0) != 0 || check_msg(m) == UINT64_MAX)
				return 5;
			if (hold != 0 && i % hold == 0 && nheld < 4096)
				held[nheld++] = m;
			else
				fq_msg_free(m);
		}
		while (nheld > 0)
			fq_msg_free(held[--nheld]);
		fq_socket_close(s);
	} else if (strcmp(r, "forwarder") == 0 && argc == 3) { /* IN OUT: until killed */
		fq_socket *in = sock(t, FQ_PULL, 100), *out = sock(t, FQ_PUSH, 100);

		fq_socket_set_int(in, "rcv_hwm", 16);
		fq_socket_set_int(out, "snd_hwm", 16);
		fq_connect(in, argv[1]);
		fq_connect(out, argv[2]);
		for (;;) {
			fq_msg *m = NULL;

			if (fq_recv(in, &m, 0) != 0)
				continue;
			while (fq_send(out, &m, 0) == FQ_ETIMEDOUT)
				;
			fq_msg_free(m);
		}
	} else if (strcmp(r, "pub") == 0 && argc == 3) { /* URL COUNT */
		fq_socket *s = sock(t, FQ_PUB, 1000);
		unsigned long count = strtoul(argv[2], NULL, 10);

		fq_bind(s, argv[1]);
		for (unsigned long i = 0; i < count; i++) {
			fq_msg *m = make_msg(t, i, 512); /* above inline_max: shared by stubs */

			if (m == NULL || fq_send(s, &m, 0) != 0)
				return 4;
			pause_ms(1);
		}
		fq_socket_close(s);
	} else if (strcmp(r, "region") == 0 && argc == 3) { /* URL COUNT */
		fq_socket *s = sock(t, FQ_PUSH, 5000);
		unsigned long count = strtoul(argv[2], NULL, 10);
		fq_region *reg = NULL;

		if (fq_region_open(&reg, t, 1 << 20, NULL, NULL) != 0)
			return 6;
		fq_connect(s, argv[1]);
		for (unsigned long i = 0; i < count; i++) {
			fq_msg *m = NULL;
			uint8_t *d = (uint8_t *)fq_region_data(reg) + (i % 1024) * 1024;

			memcpy(d, &i, sizeof(i));
			for (size_t k = 8; k < 1024; k += 4096)
				d[k] = pat(i, k);
			d[1023] = pat(i, 1023);
			if (fq_msg_from_region(reg, d, 1024, NULL, &m) != 0 ||
			    fq_send(s, &m, 0) != 0)
				return 4;
			pause_ms(1);
		}
		fq_socket_close(s);
		pause_ms(200); /* acks */
		fq_region_close(reg);
	} else if (strcmp(r, "closer") == 0 && argc == 3) { /* URL ROUNDS */
		/* Send fast, close with linger 0 while the consumer still drains, then reuse the
		 * blocks for messages we keep: the consumer must never see one of those. */
		int rounds = atoi(argv[2]);
		static fq_msg *held[60000];
		size_t nheld = 0;

		for (int k = 0; k < rounds; k++) {
			fq_socket *s = sock(t, FQ_PUSH, 0);
			int64_t until;

			fq_socket_set_int(s, "linger", 0);
			fq_connect(s, argv[1]);
			while (!(fq_socket_events(s) & FQ_POLLOUT))
				pause_ms(1);
			until = now_ms() + 30;
			for (uint64_t i = 0; now_ms() < until; i++) {
				fq_msg *m = make_msg(t, i, 512); /* above inline_max: blocks */

				if (m == NULL)
					return 4;
				memcpy((char *)fq_msg_data(m) + 8, "S1", 2);
				if (fq_send(s, &m, FQ_DONTWAIT) != 0)
					fq_msg_free(m);
			}
			fq_socket_close(s);
			for (int i = 0; i < 3000 && nheld < 60000; i++) {
				fq_msg *m = NULL;

				if (fq_msg_alloc(t, 512, &m) != 0)
					return 4;
				memset(fq_msg_data(m), 'S', 512);
				memcpy((char *)fq_msg_data(m) + 8, "S2", 2);
				held[nheld++] = m;
			}
			pause_ms(20);
		}
		pause_ms(500);
		for (size_t i = 0; i < nheld; i++) {
			if (memcmp((char *)fq_msg_data(held[i]) + 8, "S2", 2) != 0)
				return 8; /* changed under us: somebody else had the block */
			fq_msg_free(held[i]);
		}
	} else if (strcmp(r, "taker") == 0 && argc == 2) { /* URL: run with FQ_SHM_FAULT=ring_pop */
		fq_socket *s = sock(t, FQ_PULL, 5000);
		fq_msg *m = NULL;

		fq_connect(s, argv[1]);
		fq_recv(s, &m, 0); /* killed inside, after taking the block over */
		return 6;
	} else if (strcmp(r, "intruder") == 0 && argc == 2) { /* URL: must receive nothing */
		fq_socket *s = sock(t, FQ_PULL, 1000);
		fq_msg *m = NULL;

		fq_connect(s, argv[1]);
		rc = fq_recv(s, &m, 0);
		fq_msg_free(m);
		fq_socket_close(s);
		fq_transport_close(t);
		return rc == 0 ? 7 : 0;
	} else {
		fprintf(stderr, "unknown role %s\n", r);
		return 2;
	}
	fq_transport_close(t);
	return 0;
}

/* ---- Survivor-side checks ------------------------------------------------------------------ */

static shm_stats stats(fq_transport *t)
{
	shm_stats st;

	shm_node_stats(shm_node_of(t), &st);
	return st;
}

/* Mappings of other processes' segments this process still holds (fds in /proc/self/fd). */
static int foreign_segments(fq_transport *t)
{
	char path[300], link[256];
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		if (strstr(link, "memfd:fabriq-segment") != NULL ||
		    strstr(link, "memfd:fabriq-region") != NULL)
			n++;
	}
	closedir(d);
	return n - (int)stats(t).segments;
}

/* Wait until the survivor has every block back and maps nothing of the dead; print the time. */
static void expect_clean(fq_transport *t, const char *what, int64_t since)
{
	int64_t deadline = now_ms() + 2000;
	shm_stats st = stats(t);
	int foreign = foreign_segments(t);

	while ((st.blocks_out != 0 || foreign != 0) && now_ms() < deadline) {
		pause_ms(5);
		st = stats(t);
		foreign = foreign_segments(t);
	}
	CHECK(st.blocks_out == 0, "%s: %llu blocks still out 2 s after the kill", what,
	      (unsigned long long)st.blocks_out);
	CHECK(foreign == 0, "%s: %d segments of other processes still mapped", what, foreign);
	fprintf(stderr, "  %s: clean %lld ms after the kill (%llu blocks taken back in all)\n",
	        what, (long long)(now_ms() - since), (unsigned long long)st.reclaimed_blocks);
}

static void expect_sigkill(int status, const char *what)
{
	CHECK(status != -1, "%s: the child did not die (fault point never reached?)", what);
	CHECK(status == -1 || (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL),
	      "%s: child ended with status 0x%x, not by SIGKILL at the fault point", what, status);
}

/* ---- Fault points --------------------------------------------------------------------------- */

/* The child receives from us (points on the receiving side: ring_pop, free). */
static void fault_receiver(fq_transport *t, const char *point, size_t size)
{
	char url[200];
	fq_socket *push = sock(t, FQ_PUSH, 50);
	uint64_t seq = 0;
	pid_t pid;
	int status;
	int64_t killed;

	snprintf(url, sizeof(url), "ipc://%s/recv-%s", scratch, point);
	fq_bind(push, url);
	pid = spawn(point, "40", (const char *[]){"receiver", url, "100000", "3", NULL});
	while (alive(pid) && seq < 100000) {
		fq_msg *m = make_msg(t, seq, size);

		if (fq_send(push, &m, 0) == 0)
			seq++;
		fq_msg_free(m);
	}
	status = reap(pid, 3000);
	killed = now_ms();
	expect_sigkill(status, point);
	expect_clean(t, point, killed);
	/*
	 * Until the death is noticed, a send may still go into the dead receiver's ring (and be
	 * lost with it): inline parts leave no blocks to take back, so expect_clean does not
	 * wait for that. Wait (bounded) until the connection is gone.
	 */
	for (int64_t give_up = now_ms() + 3000;
	     (fq_socket_events(push) & FQ_POLLOUT) && now_ms() < give_up;)
		pause_ms(5);
	CHECK(!(fq_socket_events(push) & FQ_POLLOUT),
	      "%s: the dead receiver is still a peer 3 s on", point);
	/* A restarted receiver gets everything. */
	pid = spawn(NULL, NULL, (const char *[]){"receiver", url, "200", "0", NULL});
	for (int i = 0; i < 200;) {
		fq_msg *m = make_msg(t, (uint64_t)i, size);
		int rc = fq_send(push, &m, 0);

		fq_msg_free(m);
		if (rc == 0)
			i++;
		else if (!alive(pid))
			break;
	}
	status = reap(pid, 5000);
	CHECK(status == 0, "%s: restarted receiver ended with 0x%x", point, status);
	fq_socket_close(push);
	expect_clean(t, "after the restart", now_ms());
}

/* The child sends to us (points of an owner: alloc, segment_grow, ring_push, region_ack). */
static void fault_sender(fq_transport *t, const char *point, const char *child_role,
                         const char *after, const char *size)
{
	char url[200];
	fq_socket *pull = sock(t, FQ_PULL, 100);
	fq_msg *held[256];
	size_t nheld = 0;
	uint64_t next = 0;
	long got = 0;
	pid_t pid;
	int status;
	int64_t killed = 0, quiet_until;

	snprintf(url, sizeof(url), "ipc://%s/send-%s", scratch, point);
	fq_bind(pull, url);
	if (strcmp(child_role, "sender") == 0)
		pid = spawn(point, after, (const char *[]){"sender", url, "100000", size, NULL});
	else
		pid = spawn(point, after, (const char *[]){child_role, url, "100000", NULL});
	quiet_until = now_ms() + 10000;
	while (now_ms() < quiet_until) {
		fq_msg *m = NULL;
		uint64_t seq;

		if (fq_recv(pull, &m, 0) != 0) {
			if (killed == 0 && !alive(pid)) {
				killed = now_ms();
				quiet_until =
				    killed + 300; /* what it published is still readable */
			}
			continue;
		}
		seq = check_msg(m);
		CHECK(seq == next, "%s: received seq %llu, expected %llu (corrupt or reordered)",
		      point, (unsigned long long)seq, (unsigned long long)next);
		next = seq + 1;
		got++;
		/* Hold some messages of the dying owner: they must stay readable. */
		if (nheld < 256 && got % 4 == 0)
			held[nheld++] = m;
		else
			fq_msg_free(m);
	}
	status = reap(pid, 1000);
	expect_sigkill(status, point);
	for (size_t i = 0; i < nheld; i++) {
		CHECK(check_msg(held[i]) != UINT64_MAX,
		      "%s: a held message changed after its "
		      "owner died",
		      point);
		fq_msg_free(held[i]);
	}
	fprintf(stderr, "  %s: %ld messages before the kill\n", point, got);
	expect_clean(t, point, killed ? killed : now_ms());
	/* A restarted sender delivers. */
	pid = spawn(NULL, NULL, (const char *[]){"sender", url, "100", "1000", NULL});
	for (int i = 0; i < 100; i++) {
		fq_msg *m = NULL;
		int rc = fq_recv(pull, &m, 0);

		if (rc != 0 && !alive(pid))
			break;
		if (rc != 0) {
			i--;
			continue;
		}
		CHECK(check_msg(m) == (uint64_t)i, "%s: restarted sender's message %d", point, i);
		fq_msg_free(m);
	}
	status = reap(pid, 5000);
	CHECK(status == 0, "%s: restarted sender ended with 0x%x", point, status);
	fq_socket_close(pull);
	expect_clean(t, "after the restart", now_ms());
}

/* The child forwards our own blocks to another of our sockets (ring_push/ring_pop there). */
static void fault_forwarder(fq_transport *t, const char *point)
{
	char a[200], b[200];
	fq_socket *src = sock(t, FQ_PUSH, 0), *sink = sock(t, FQ_PULL, 0);
	uint64_t sent = 0, next = 0;
	pid_t pid;
	int status;
	int64_t killed;

	snprintf(a, sizeof(a), "ipc://%s/fwd-a-%s", scratch, point);
	snprintf(b, sizeof(b), "ipc://%s/fwd-b-%s", scratch, point);
	fq_bind(src, a);
	fq_bind(sink, b);
	pid = spawn(point, "30", (const char *[]){"forwarder", a, b, NULL});
	for (int64_t give_up = now_ms() + 20000; alive(pid) && now_ms() < give_up;) {
		fq_msg *m = make_msg(t, sent, 300);

		if (fq_send(src, &m, FQ_DONTWAIT) == 0)
			sent++;
		fq_msg_free(m);
		while (fq_recv(sink, &m, FQ_DONTWAIT) == 0) {
			uint64_t seq = check_msg(m);

			CHECK(seq != UINT64_MAX && seq >= next, "%s: seq %llu after %llu", point,
			      (unsigned long long)seq, (unsigned long long)next);
			next = seq + 1;
			fq_msg_free(m);
		}
	}
	status = reap(pid, 1000);
	killed = now_ms();
	expect_sigkill(status, point);
	for (int64_t until = now_ms() + 300; now_ms() < until;) {
		fq_msg *m = NULL;

		if (fq_recv(sink, &m, FQ_DONTWAIT) == 0) {
			CHECK(check_msg(m) != UINT64_MAX, "%s: corrupt message after the kill",
			      point);
			fq_msg_free(m);
		}
		pause_ms(1);
	}
	fq_socket_close(src);
	fq_socket_close(sink);
	expect_clean(t, point, killed);
}

/* The child publishes to two of our subscribers (stubs: refcount). */
static void fault_pub(fq_transport *t, const char *point)
{
	char url[200];
	fq_socket *s1 = sock(t, FQ_SUB, 50), *s2 = sock(t, FQ_SUB, 50);
	long got = 0;
	pid_t pid;
	int status;
	int64_t killed;

	snprintf(url, sizeof(url), "ipc://%s/pub-%s", scratch, point);
	fq_socket_set(s1, "subscribe", "");
	fq_socket_set(s2, "subscribe", "");
	/* The publisher binds, both subscribers connect: every message is shared by two. */
	fq_connect(s1, url);
	fq_connect(s2, url);
	pid = spawn(point, "20", (const char *[]){"pub", url, "100000", NULL});
	for (int64_t give_up = now_ms() + 20000; alive(pid) && now_ms() < give_up;) {
		fq_msg *m = NULL;

		for (int k = 0; k < 2; k++) {
			if (fq_recv(k ? s2 : s1, &m, FQ_DONTWAIT) == 0) {
				CHECK(check_msg(m) != UINT64_MAX, "%s: corrupt message", point);
				fq_msg_free(m);
				got++;
			}
		}
		pause_ms(1);
	}
	status = reap(pid, 1000);
	killed = now_ms();
	expect_sigkill(status, point);
	fprintf(stderr, "  %s: %ld messages before the kill\n", point, got);
	fq_socket_close(s1);
	fq_socket_close(s2);
	expect_clean(t, point, killed);
}

static int run_fault(fq_transport *t, const char *point)
{
	fprintf(stderr, "fault point %s\n", point);
	/*
	 * Blocks cross between the processes from 300 bytes on (above inline_max); 64-byte
	 * messages travel inline, in the ring, and are killed there too.
	 */
	if (strcmp(point, "free") == 0)
		fault_receiver(t, point, 512);
	else if (strcmp(point, "ring_pop") == 0) {
		fault_receiver(t, point, 512);
		fault_receiver(t, point, 64);
	} else if (strcmp(point, "alloc") == 0)
		fault_sender(t, point, "sender", "30", "65536");
	else if (strcmp(point, "segment_grow") == 0) /* segment_size=1M: grows every 15 blocks */
		fault_sender(t, point, "sender", "2", "65536");
	else if (strcmp(point, "ring_push") == 0) {
		fault_sender(t, point, "sender", "30", "65536");
		fault_sender(t, point, "sender", "30", "64");
		fault_forwarder(t, point);
	} else if (strcmp(point, "region_ack") == 0)
		fault_sender(t, point, "region", "3", NULL);
	else if (strcmp(point, "refcount") == 0)
		fault_pub(t, point);
	else {
		fprintf(stderr, "unknown fault point %s\n", point);
		return 2;
	}
	if (strcmp(point, "ring_pop") == 0)
		fault_forwarder(t, point);
	return 0;
}

/* ---- Random kills in a chain ---------------------------------------------------------------- */

struct source {
	fq_transport *t;
	fq_socket *s;
	_Atomic bool stop;
	_Atomic uint64_t sent;
};

static void *source_main(void *arg)
{
	struct source *src = arg;

	while (!atomic_load(&src->stop)) {
		uint64_t seq = atomic_load(&src->sent);
		fq_msg *m = make_msg(src->t, seq, 256 + (size_t)(seq % 7) * 1000);
		int rc = fq_send(src->s, &m, 0);

		fq_msg_free(m);
		if (rc == 0)
			atomic_store(&src->sent, seq + 1);
	}
	return NULL;
}

static void run_chain(fq_transport *t, int seconds)
{
	char a[200], b[200];
	struct source src = {.t = t};
	fq_socket *sink = sock(t, FQ_PULL, 20);
	uint64_t next = 0, got = 0, lost = 0;
	int kills = 0;
	int64_t end = now_ms() + seconds * 1000, next_kill;
	pthread_t th;
	pid_t pid;

	fprintf(stderr, "chain: source -> worker -> sink, worker killed at random for %d s\n",
	        seconds);
	src.s = sock(t, FQ_PUSH, 20);
	fq_socket_set_int(src.s, "snd_hwm", 16);
	fq_socket_set_int(sink, "rcv_hwm", 16);
	snprintf(a, sizeof(a), "ipc://%s/chain-a", scratch);
	snprintf(b, sizeof(b), "ipc://%s/chain-b", scratch);
	fq_bind(src.s, a);
	fq_bind(sink, b);
	pid = spawn(NULL, NULL, (const char *[]){"forwarder", a, b, NULL});
	pthread_create(&th, NULL, source_main, &src);
	srand(12345);
	next_kill = now_ms() + 50 + rand() % 200;
	while (now_ms() < end) {
		fq_msg *m = NULL;

		if (now_ms() >= next_kill) {
			kill(pid, SIGKILL);
			reap(pid, 1000);
			kills++;
			pid = spawn(NULL, NULL, (const char *[]){"forwarder", a, b, NULL});
			next_kill = now_ms() + 50 + rand() % 200;
		}
		if (fq_recv(sink, &m, 0) != 0)
			continue;
		{
			uint64_t seq = check_msg(m);

			CHECK(seq != UINT64_MAX, "chain: corrupt message");
			CHECK(seq == UINT64_MAX || seq >= next,
			      "chain: seq %llu after %llu "
			      "(duplicate or reordered)",
			      (unsigned long long)seq, (unsigned long long)next);
			if (seq != UINT64_MAX && seq >= next) {
				lost += seq - next;
				next = seq + 1;
			}
			got++;
		}
		fq_msg_free(m);
	}
	atomic_store(&src.stop, true);
	pthread_join(th, NULL);
	/* Drain what the last worker still carries. */
	for (int64_t idle = now_ms() + 500; now_ms() < idle;) {
		fq_msg *m = NULL;

		if (fq_recv(sink, &m, 0) != 0)
			continue;
		{
			uint64_t seq = check_msg(m);

			CHECK(seq != UINT64_MAX && seq >= next,
			      "chain: bad message while draining");
			if (seq != UINT64_MAX && seq >= next) {
				lost += seq - next;
				next = seq + 1;
			}
		}
		got++;
		fq_msg_free(m);
		idle = now_ms() + 500;
	}
	kill(pid, SIGKILL);
	reap(pid, 1000);
	lost += atomic_load(&src.sent) - next;
	fprintf(stderr, "  chain: %d kills, %llu sent, %llu received, %llu lost (%.1f per kill)\n",
	        kills, (unsigned long long)atomic_load(&src.sent), (unsigned long long)got,
	        (unsigned long long)lost, kills ? (double)lost / kills : 0.0);
	CHECK(kills >= seconds * 3, "chain: only %d kills", kills);
	CHECK(got > 0, "chain: nothing arrived");
	CHECK(got + lost == atomic_load(&src.sent), "chain: counts do not add up");
	/* In-flight window of a victim: its input ring (16 + 16), what it holds (1) and its
	 * output ring (16 + 16), plus the messages in the source's ring to it. */
	CHECK(lost <= (uint64_t)(kills + 1) * (2 * 32 + 1 + 32),
	      "chain: %llu lost, more than %d kills' in-flight windows", (unsigned long long)lost,
	      kills);
	fq_socket_close(src.s);
	fq_socket_close(sink);
	expect_clean(t, "chain", now_ms());
}

/* ---- A consumer dies holding a taken-over entry: no block may be handed out twice -------- */

static void run_reuse(void)
{
	char url[200];
	fq_transport *t = NULL;
	fq_socket *push;
	static fq_msg *held[20000];
	static void *where[20000];
	int n = 0, dups = 0, status;
	pid_t pid;

	fprintf(stderr, "reuse: a consumer dies inside ring_pop; we allocate on meanwhile\n");
	if (fq_transport_open(&t, "shmem", NULL) != 0) {
		failures++;
		return;
	}
	push = sock(t, FQ_PUSH, 1000);
	snprintf(url, sizeof(url), "ipc://%s/reuse", scratch);
	fq_bind(push, url);
	pid = spawn("ring_pop", "0", (const char *[]){"taker", url, NULL});
	for (int i = 0; i < 4; i++) {
		fq_msg *m = make_msg(t, (uint64_t)i, 512); /* above inline_max: blocks */

		if (fq_send(push, &m, 0) != 0)
			fq_msg_free(m);
	}
	status = reap(pid, 5000);
	expect_sigkill(status, "reuse");
	/* Allocate while the death is noticed, blocks taken back and ring entries released. */
	for (int64_t until = now_ms() + 400; n < 20000 && now_ms() < until; n++) {
		if (fq_msg_alloc(t, 512, &held[n]) != 0)
			break;
		where[n] = fq_msg_data(held[n]);
		for (int k = 0; k < n; k++)
			dups += where[k] == where[n];
		pause_ms(0);
		usleep(100);
	}
	fprintf(stderr, "  reuse: %d messages held, %d blocks handed out twice\n", n, dups);
	CHECK(dups == 0, "reuse: %d blocks were handed out twice", dups);
	for (int k = 0; k < n; k++)
		fq_msg_free(held[k]);
	fq_socket_close(push);
	expect_clean(t, "reuse", now_ms());
	fq_transport_close(t);
}

/* ---- A producer closing while its consumer drains ----------------------------------------- */

static void run_closer(void)
{
	char url[200];
	fq_transport *t = NULL;
	fq_socket *pull;
	long s1 = 0, s2 = 0;
	pid_t pid;
	int status;

	fprintf(stderr, "closer: a producer closes (linger 0) while we drain, and reuses blocks\n");
	if (fq_transport_open(&t, "shmem", NULL) != 0) {
		failures++;
		return;
	}
	pull = sock(t, FQ_PULL, 0);
	snprintf(url, sizeof(url), "ipc://%s/closer", scratch);
	fq_bind(pull, url);
	pid = spawn(NULL, NULL, (const char *[]){"closer", url, "10", NULL});
	for (int64_t idle = now_ms() + 3000; now_ms() < idle;) {
		fq_msg *m = NULL;

		if (fq_recv(pull, &m, FQ_DONTWAIT) != 0) {
			if (!alive(pid) && now_ms() + 2500 < idle)
				idle = now_ms() + 500;
			continue;
		}
		if (memcmp((char *)fq_msg_data(m) + 8, "S2", 2) == 0)
			s2++;
		else
			s1++;
		fq_msg_free(m);
		idle = now_ms() + 3000;
	}
	status = reap(pid, 10000);
	fprintf(stderr, "  closer: %ld messages, %ld of them blocks the producer had reused\n",
	        s1 + s2, s2);
	CHECK(s2 == 0, "closer: received %ld blocks that the producer holds", s2);
	CHECK(s1 > 0, "closer: nothing arrived");
	CHECK(status == 0, "closer: the producer saw its held messages change (status 0x%x)",
	      status);
	fq_socket_close(pull);
	fq_transport_close(t);
}

/* ---- Another user --------------------------------------------------------------------------- */

static void run_intruder(fq_transport *t)
{
	char url[200], path[200];
	fq_socket *push = sock(t, FQ_PUSH, 0);
	fq_msg *m = make_msg(t, 1, 64);
	pid_t pid;
	int status;

	fprintf(stderr, "intruder: uid 65534 against a socket and segments of uid %d\n",
	        (int)geteuid());
	if (geteuid() != 0) {
		fprintf(stderr, "  not root: cannot switch to another user here; case not run\n");
		fq_msg_free(m);
		fq_socket_close(push);
		failures += getenv("FQ_SHM_REQUIRE_INTRUDER") ? 1 : 0;
		return;
	}
	snprintf(url, sizeof(url), "ipc://%s/intruder", scratch);
	fq_bind(push, url);
	fq_send(push, &m, FQ_DONTWAIT); /* queued for whoever connects */
	fq_msg_free(m);
	/* Even with the path opened to everybody, the peer's uid is checked. */
	chmod(scratch, 0777);
	snprintf(path, sizeof(path), "%s/intruder", scratch);
	chmod(path, 0666);
	pid = fork();
	if (pid == 0) {
		char *argv[] = {(char *)self_exe, (char *)"role", (char *)"intruder", url, NULL};

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(9);
		execv(self_exe, argv);
		_exit(127);
	}
	status = reap(pid, 5000);
	CHECK(status == 0, "intruder: another user received a message (status 0x%x)", status);
	/* Nor can it open our segments through /proc. */
	pid = fork();
	if (pid == 0) {
		char fdpath[64], link[256];
		DIR *d;
		struct dirent *e;
		int opened = 0, seen = 0;
		pid_t owner = getppid();

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(9);
		snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd", (int)owner);
		d = opendir(fdpath);
		if (d == NULL)
			_exit(0); /* cannot even list them */
		while ((e = readdir(d)) != NULL) {
			char p[400];
			ssize_t len;

			snprintf(p, sizeof(p), "%s/%s", fdpath, e->d_name);
			len = readlink(p, link, sizeof(link) - 1);
			if (len > 0 && strstr(link, "fabriq") != NULL) {
				seen++;
				if (open(p, O_RDONLY) >= 0)
					opened++;
			}
		}
		_exit(opened == 0 ? 0 : 8);
	}
	status = reap(pid, 5000);
	CHECK(status == 0, "intruder: another user opened a segment (status 0x%x)", status);
	fq_socket_close(push);
	chmod(scratch, 0700);
}

/* ---- Main ----------------------------------------------------------------------------------- */

static void cleanup_scratch(void)
{
	char cmd[300];

	kill_children();
	if (scratch[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", scratch);
	}
}

int main(int argc, char **argv)
{
	static const char *points[] = {"alloc",    "free",       "ring_push",    "ring_pop",
	                               "refcount", "region_ack", "segment_grow", NULL};
	fq_transport *t = NULL;
	int rc;

	self_exe = "/proc/self/exe";
	if (argc >= 2 && strcmp(argv[1], "role") == 0)
		return role(argc - 2, argv + 2);
	if (argc < 2) {
		fprintf(stderr, "usage: %s fault POINT|all | chain SECONDS | intruder | all\n",
		        argv[0]);
		return 2;
	}
	{
		static char exe[4096];
		ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

		if (len > 0) {
			exe[len] = '\0';
			self_exe = exe;
		}
	}
	snprintf(scratch, sizeof(scratch), "/tmp/fq-shm-crash-XXXXXX");
	if (mkdtemp(scratch) == NULL)
		return 1;
	atexit(cleanup_scratch);
	/* Small segments so that growth is exercised; children inherit the setting. */
	setenv("FQ_SHMEM_SEGMENT_SIZE", "1M", 1);
	rc = fq_transport_open(&t, "shmem", NULL);
	if (rc != 0) {
		fprintf(stderr, "shmem transport: %s\n", fq_strerror(rc));
		return 1;
	}
	if (strcmp(argv[1], "fault") == 0 && argc == 3) {
		if (strcmp(argv[2], "all") == 0) {
			for (int i = 0; points[i] != NULL; i++)
				run_fault(t, points[i]);
		} else if (run_fault(t, argv[2]) != 0) {
			return 2;
		}
	} else if (strcmp(argv[1], "chain") == 0 && argc == 3) {
		run_chain(t, atoi(argv[2]));
	} else if (strcmp(argv[1], "intruder") == 0) {
		run_intruder(t);
	} else if (strcmp(argv[1], "closer") == 0) {
		run_closer();
	} else if (strcmp(argv[1], "reuse") == 0) {
		run_reuse();
	} else {
		fprintf(stderr, "unknown command\n");
		return 2;
	}
	fq_transport_close(t);
	kill_children();
	fprintf(stderr, "%s\n", failures ? "FAILED" : "passed");
	return failures ? 1 : 0;
}
