/*
 * Peer loss on the ofi transport: one PULL serves N short-lived PUSH peers. A peer is one
 * transport instance (its own endpoint); each process started holds PER of them (loading
 * libfabric costs a process about 0.3 s here, most of it in libpsm_infinipath's constructor).
 * The processes in turn exit without closing anything right after a rendezvous send, are
 * SIGKILLed (once their sends have returned) while their large messages are announced or being
 * read, or close in order. The survivor must end with no connection, no reserved buffer and no
 * read left, a bounded number of registrations (not one per peer), and still serve a new peer.
 *
 *     fq_ofi_peer_loss PEERS [PER]        the survivor (provider from FQ_OFI_PROVIDER)
 *     fq_ofi_peer_loss child URL MODE PER FD
 *                                         PER peers in one process (started by the survivor);
 *                                         mode 1 writes a byte to FD once its sends returned
 */
#include "transport/ofi/ofi.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BIG (256u << 10)

static void die(const char *what, int rc)
{
	fprintf(stderr, "ofi_peer_loss: %s: %s\n", what, fq_strerror(rc));
	exit(1);
}

static void send_bytes(fq_socket *s, fq_transport *t, size_t size, int tag)
{
	fq_msg *m;
	int rc = fq_msg_alloc(t, size, &m);

	if (rc != 0)
		die("alloc", rc);
	memset(fq_msg_data(m), tag, size);
	rc = fq_send(s, &m, 0);
	if (rc != 0)
		die("send", rc);
}

static int child(const char *url, int mode, int per, int sent_fd)
{
	fq_transport **t = calloc((size_t)per, sizeof(*t));
	fq_socket **s = calloc((size_t)per, sizeof(*s));
	int rc;

	if (t == NULL || s == NULL)
		die("child", FQ_ENOMEM);
	for (int i = 0; i < per; i++) {
		if ((rc = fq_transport_open(&t[i], "ofi", NULL)) != 0)
			die("child transport", rc);
		/* A survivor that failed is gone: give up rather than wait for it forever. A
		 * closing peer's messages must arrive, however long a loaded machine takes to
		 * connect: linger well beyond the default 500 ms. */
		if ((rc = fq_socket_open(&s[i], t[i], FQ_PUSH)) != 0 ||
		    (rc = fq_socket_set_int(s[i], "snd_timeout", 60000)) != 0 ||
		    (rc = fq_socket_set_int(s[i], "linger", 30000)) != 0 ||
		    (rc = fq_connect(s[i], url)) != 0)
			die("child socket", rc);
	}
	for (int i = 0; i < per; i++)
		send_bytes(s[i], t[i], 16, 's');
	for (int i = 0; i < per; i++)
		send_bytes(s[i], t[i], BIG, 'b');
	if (mode == 0) {
		/* The providers move the frames (their progress runs on the I/O threads; rxm
		 * makes its connection first). */
		usleep(100000);
		_exit(0); /* gone without a word: the survivor sees the TCP connections end */
	}
	if (mode == 1) {
		if (write(sent_fd, "s", 1) != 1)
			die("child pipe", FQ_ECLOSED);
		pause(); /* the survivor kills us */
	}
	for (int i = 0; i < per; i++) {
		fq_socket_close(s[i]);
		fq_transport_close(t[i]);
	}
	free(s);
	free(t);
	return 0;
}

static fq_msg *recv_one(fq_socket *s, int timeout_ms)
{
	fq_msg *m = NULL;

	fq_socket_set_int(s, "rcv_timeout", timeout_ms);
	return fq_recv(s, &m, 0) == 0 ? m : NULL;
}

/*
 * Receive until a message of `size` bytes arrives (false after timeout_ms). The large messages
 * of earlier peers that come meanwhile are checked and counted in *got_big.
 */
static bool recv_until(fq_socket *s, size_t size, int timeout_ms, int *got_big)
{
	int64_t deadline = fqi_clock_ms() + timeout_ms;

	for (;;) {
		int64_t left = deadline - fqi_clock_ms();
		fq_msg *m = left > 0 ? recv_one(s, (int)left) : NULL;
		size_t got;

		if (m == NULL)
			return false;
		got = fq_msg_size(m);
		if (got == BIG && ((unsigned char *)fq_msg_data(m))[BIG - 1] == 'b') {
			(*got_big)++;
		} else if (got != 16) {
			fprintf(stderr, "ofi_peer_loss: a message of %zu bytes\n", got);
			exit(1);
		}
		fq_msg_free(m);
		if (got == size)
			return true;
	}
}

/*
 * A peer process that did not close its transports in order leaves libfabric shm's regions
 * ("<pid>:...") in /dev/shm: remove them, as a supervisor of such processes would.
 */
static void clean_shm_of(pid_t pid)
{
	char prefix[32];
	size_t plen = (size_t)snprintf(prefix, sizeof(prefix), "%ld:", (long)pid);
	DIR *d = opendir("/dev/shm");
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, plen) == 0)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

/* Start a child; for mode 1, *sent_fd gets the pipe on which it says that its sends returned. */
static pid_t spawn(const char *self, const char *url, int mode, int per, int *sent_fd)
{
	char mode_text[8], per_text[16], fd_text[16];
	int p[2] = {-1, -1};
	pid_t pid;

	if (mode == 1 && pipe2(p, O_CLOEXEC) != 0)
		die("pipe", FQ_ENOMEM);
	snprintf(mode_text, sizeof(mode_text), "%d", mode);
	snprintf(per_text, sizeof(per_text), "%d", per);
	snprintf(fd_text, sizeof(fd_text), "%d", p[1]);
	pid = fork();
	if (pid == 0) {
		if (p[1] >= 0)
			fcntl(p[1], F_SETFD, 0);
		execl(self, self, "child", url, mode_text, per_text, fd_text, (char *)NULL);
		_exit(127);
	}
	if (p[1] >= 0)
		close(p[1]);
	if (sent_fd != NULL)
		*sent_fd = p[0];
	else if (p[0] >= 0)
		close(p[0]);
	return pid;
}

/*
 * Wait until a mode 1 child's sends have returned (or it is gone). libfabric's shm (1.17)
 * holds the receiver's region spinlock, which lives in the receiver's shared memory, through
 * every send: a sender SIGKILLed inside one leaves it locked for good, and the survivor then
 * gets nothing more from anyone (or spins in its progress). No transport above it can undo
 * that, so the test kills its peers outside their sends; their large messages are still
 * announced or being read.
 */
static void wait_sent(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	if (poll(&p, 1, 60000) == 1 && read(fd, &c, 1) < 0)
		perror("ofi_peer_loss: pipe");
	close(fd);
}

int main(int argc, char **argv)
{
	int peers = argc > 1 ? atoi(argv[1]) : 1000, per = argc > 2 ? atoi(argv[2]) : 10;
	int lost_big = 0, got_big = 0, lost_small = 0;
	int closers = 0, rc;
	char dir[] = "/tmp/fq-ofi-loss-XXXXXX", url[128];
	fq_transport *t;
	fq_socket *pull;
	ofi_stats st0, st;
	int64_t deadline;
	struct timespec t0, t1;

	if (argc == 6 && strcmp(argv[1], "child") == 0)
		return child(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	if (per < 1 || peers < per)
		return 2;
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(url, sizeof(url), "ipc://%s/loss", dir);
	if ((rc = fq_transport_open(&t, "ofi", NULL)) != 0)
		die("transport", rc);
	if ((rc = fq_socket_open(&pull, t, FQ_PULL)) != 0 || (rc = fq_bind(pull, url)) != 0)
		die("bind", rc);
	ofi_transport_stats(t, &st0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < peers / per; i++) {
		int mode = i % 3, status, sent_fd = -1;
		pid_t pid = spawn(argv[0], url, mode, per, &sent_fd);

		for (int k = 0; k < per; k++) {
			if (recv_until(pull, 16, mode == 0 ? 2000 : 30000, &got_big))
				continue;
			if (mode != 0) {
				ofi_transport_stats(t, &st);
				fprintf(stderr,
				        "ofi_peer_loss: process %d (mode %d): peer %d of %d sent "
				        "nothing; survivor: %zu connections, %zu of %zu receive "
				        "buffers reserved, %u reads out (%u retired)\n",
				        i, mode, k, per, (size_t)st.conns,
				        (size_t)st.rbufs_reserved, (size_t)st.rbufs_posted,
				        (unsigned)st.reads_out, (unsigned)st.reads_retired);
				/* Leave nothing behind: the peer's regions, then our own. */
				if (sent_fd >= 0)
					close(sent_fd);
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
				clean_shm_of(pid);
				fq_socket_close(pull);
				fq_transport_close(t);
				return 1;
			}
			lost_small += per - k; /* it died before the providers sent anything */
			break;
		}
		if (mode == 1) {
			wait_sent(sent_fd);
			kill(pid, SIGKILL); /* its large messages: announced, being read, or read */
		}
		if (mode == 2)
			closers += per;
		if (waitpid(pid, &status, 0) != pid)
			return 1;
		if (mode != 2)
			clean_shm_of(pid);
	}
	peers = peers / per * per;
	/* The large messages still on their way (a closing peer's has arrived when it exits). */
	recv_until(pull, 0, 500, &got_big);
	lost_big = peers - got_big;
	if (got_big < closers) {
		fprintf(stderr,
		        "ofi_peer_loss: %d of %d peers that closed in order lost their message\n",
		        closers - got_big, closers);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* Everything of the dead goes within a bounded time. */
	deadline = fqi_clock_ms() + 5000;
	do {
		ofi_transport_stats(t, &st);
		if (st.conns == 0 && st.rbufs_reserved == 0 && st.reads_out == 0)
			break;
		usleep(10000);
	} while (fqi_clock_ms() < deadline);
	printf("ofi_peer_loss: %d peers in %.1f s: %d large messages arrived, %d lost with their "
	       "peer (%d peers died before their first message left), %d per process; left: %zu "
	       "connections, %zu "
	       "of %zu receive buffers reserved, %zu reads (%zu retired); "
	       "registrations %llu -> %llu (pool buffers %llu, cache %zu entries)\n",
	       peers, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	       got_big, lost_big, lost_small, per, st.conns, st.rbufs_reserved, st.rbufs_posted,
	       st.reads_out, st.reads_retired, (unsigned long long)st0.registrations,
	       (unsigned long long)st.registrations, (unsigned long long)st.pool_made,
	       st.rcache_entries);
	if (st.conns != 0 || st.rbufs_reserved != 0 || st.reads_out != 0) {
		fprintf(stderr, "ofi_peer_loss: the dead peers left state behind\n");
		return 1;
	}
	{
		uint64_t regs = 0;

		if (fq_transport_counter(t, "registrations", &regs) != 0 ||
		    regs != st.registrations) {
			fprintf(stderr, "ofi_peer_loss: fq_transport_counter disagrees\n");
			return 1;
		}
	}
	/* Registrations do not grow with the number of peers: buffers are reused. */
	if (st.registrations - st0.registrations >
	    64 + (uint64_t)st.rbufs_posted / 64 + st.reads_retired) {
		fprintf(stderr, "ofi_peer_loss: %llu registrations for %d peers\n",
		        (unsigned long long)(st.registrations - st0.registrations), peers);
		return 1;
	}
	/* And the socket still serves a new peer. */
	{
		int status;
		pid_t pid = spawn(argv[0], url, 2, 1, NULL);
		fq_msg *a = recv_one(pull, 10000), *b = recv_one(pull, 10000);

		waitpid(pid, &status, 0);
		if (a == NULL || b == NULL || fq_msg_size(b) != BIG) {
			fprintf(stderr, "ofi_peer_loss: a new peer was not served\n");
			return 1;
		}
		fq_msg_free(a);
		fq_msg_free(b);
	}
	fq_socket_close(pull);
	fq_transport_close(t);
	rmdir(dir);
	return 0;
}
