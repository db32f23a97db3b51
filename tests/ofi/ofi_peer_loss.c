/*
 * Peer loss on the ofi transport: one PULL serves N short-lived PUSH peers, each in its own
 * process, that (in turn) exit without closing anything right after a rendezvous send, are
 * SIGKILLed while their large message is announced or being read, or close in order. The
 * survivor must end with no connection, no reserved buffer and no read left, a bounded number
 * of registrations (not one per peer), and still serve a new peer.
 *
 *     fq_ofi_peer_loss PEERS          the survivor (provider from FQ_OFI_PROVIDER)
 *     fq_ofi_peer_loss child URL MODE one peer (started by the survivor)
 */
#include "transport/ofi/ofi.h"

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

static int child(const char *url, int mode)
{
	fq_transport *t;
	fq_socket *s;
	int rc = fq_transport_open(&t, "ofi", NULL);

	if (rc != 0)
		die("child transport", rc);
	if ((rc = fq_socket_open(&s, t, FQ_PUSH)) != 0 || (rc = fq_connect(s, url)) != 0)
		die("child socket", rc);
	send_bytes(s, t, 16, 's');
	send_bytes(s, t, BIG, 'b');
	if (mode == 0) {
		usleep(
		    20000); /* the provider moves the frames (its progress runs on our I/O thread) */
		_exit(0);   /* gone without a word: the survivor sees the TCP connection end */
	}
	if (mode == 1)
		pause(); /* the survivor kills us */
	fq_socket_close(s);
	fq_transport_close(t);
	return 0;
}

static fq_msg *recv_one(fq_socket *s, int timeout_ms)
{
	fq_msg *m = NULL;

	fq_socket_set_int(s, "rcv_timeout", timeout_ms);
	return fq_recv(s, &m, 0) == 0 ? m : NULL;
}

static pid_t spawn(const char *self, const char *url, int mode)
{
	char mode_text[8];
	pid_t pid;

	snprintf(mode_text, sizeof(mode_text), "%d", mode);
	pid = fork();
	if (pid == 0) {
		execl(self, self, "child", url, mode_text, (char *)NULL);
		_exit(127);
	}
	return pid;
}

int main(int argc, char **argv)
{
	int peers = argc > 1 ? atoi(argv[1]) : 1000, lost_big = 0, got_big = 0, lost_small = 0, rc;
	char dir[] = "/tmp/fq-ofi-loss-XXXXXX", url[128];
	fq_transport *t;
	fq_socket *pull;
	ofi_stats st0, st;
	int64_t deadline;
	struct timespec t0, t1;

	if (argc == 4 && strcmp(argv[1], "child") == 0)
		return child(argv[2], atoi(argv[3]));
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(url, sizeof(url), "ipc://%s/loss", dir);
	if ((rc = fq_transport_open(&t, "ofi", NULL)) != 0)
		die("transport", rc);
	if ((rc = fq_socket_open(&pull, t, FQ_PULL)) != 0 || (rc = fq_bind(pull, url)) != 0)
		die("bind", rc);
	ofi_transport_stats(t, &st0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < peers; i++) {
		int mode = i % 3, status;
		pid_t pid = spawn(argv[0], url, mode);
		fq_msg *m = recv_one(pull, mode == 0 ? 2000 : 10000);

		if (m == NULL && mode == 0) {
			/* It may die before the provider sent anything: only its data is lost. */
			lost_small++;
		} else if (m == NULL || fq_msg_size(m) != 16) {
			fprintf(stderr, "ofi_peer_loss: peer %d: no first message\n", i);
			kill(pid, SIGKILL);
			return 1;
		}
		fq_msg_free(m);
		if (mode == 1)
			kill(pid,
			     SIGKILL); /* its large message is announced, being read, or not yet */
		m = recv_one(pull, mode == 2 ? 10000 : 200);
		if (m != NULL) {
			got_big++;
			if (fq_msg_size(m) != BIG ||
			    ((unsigned char *)fq_msg_data(m))[BIG - 1] != 'b') {
				fprintf(stderr, "ofi_peer_loss: peer %d: a wrong large message\n",
				        i);
				return 1;
			}
			fq_msg_free(m);
		} else if (mode == 2) {
			fprintf(stderr,
			        "ofi_peer_loss: peer %d closed in order, its message is lost\n", i);
			return 1;
		} else {
			lost_big++;
		}
		if (waitpid(pid, &status, 0) != pid)
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
	       "peer (%d peers died before their first message left); left: %zu connections, %zu "
	       "of %zu receive buffers reserved, %zu reads; "
	       "registrations %llu -> %llu (pool buffers %llu, cache %zu entries)\n",
	       peers, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	       got_big, lost_big, lost_small, st.conns, st.rbufs_reserved, st.rbufs_posted,
	       st.reads_out, (unsigned long long)st0.registrations,
	       (unsigned long long)st.registrations, (unsigned long long)st.pool_made,
	       st.rcache_entries);
	if (st.conns != 0 || st.rbufs_reserved != 0 || st.reads_out != 0) {
		fprintf(stderr, "ofi_peer_loss: the dead peers left state behind\n");
		return 1;
	}
	/* Registrations do not grow with the number of peers: buffers are reused. */
	if (st.registrations - st0.registrations > 64 + (uint64_t)st.rbufs_posted / 64) {
		fprintf(stderr, "ofi_peer_loss: %llu registrations for %d peers\n",
		        (unsigned long long)(st.registrations - st0.registrations), peers);
		return 1;
	}
	/* And the socket still serves a new peer. */
	{
		int status;
		pid_t pid = spawn(argv[0], url, 2);
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
