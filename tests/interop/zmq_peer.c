/*
 * A peer written against plain libzmq only, to check that fabriq's zeromq transport talks to
 * ordinary ZeroMQ programs.
 *
 *   zmq_peer push|pull bind|connect URL COUNT PARTS [ENDPOINT_FILE]
 *
 * push sends COUNT messages of PARTS frames (ZMQ_SNDMORE); pull receives COUNT messages and
 * checks every frame. A binder writes its resolved address to ENDPOINT_FILE. Exit 0 when all
 * went well, 1 otherwise. Every blocking call is bounded (20 s).
 */
#include <zmq.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer_pattern.h"

#define WHO        "zmq_peer"
#define TIMEOUT_MS 20000

static int fail(const char *what)
{
	fprintf(stderr, WHO ": %s: %s\n", what, zmq_strerror(zmq_errno()));
	return 1;
}

static int do_push(void *s, unsigned long count, unsigned parts)
{
	for (unsigned long i = 0; i < count; i++) {
		for (unsigned j = 0; j < parts; j++) {
			zmq_msg_t m;

			if (zmq_msg_init_size(&m, peer_part_size(i, j)) != 0)
				return fail("zmq_msg_init_size");
			peer_fill(i, j, zmq_msg_data(&m));
			if (zmq_msg_send(&m, s, j + 1 < parts ? ZMQ_SNDMORE : 0) < 0) {
				zmq_msg_close(&m);
				return fail("zmq_msg_send");
			}
		}
	}
	printf(WHO ": sent %lu messages of %u parts\n", count, parts);
	return 0;
}

static int do_pull(void *s, unsigned long count, unsigned parts)
{
	int errors = 0;

	for (unsigned long i = 0; i < count; i++) {
		unsigned j = 0;
		int more = 1;

		while (more) {
			zmq_msg_t m;

			zmq_msg_init(&m);
			if (zmq_msg_recv(&m, s, 0) < 0) {
				fprintf(stderr, WHO ": after %lu messages: ", i);
				return fail("zmq_msg_recv");
			}
			more = zmq_msg_more(&m);
			if (j < parts && peer_check(WHO, i, j, zmq_msg_data(&m), zmq_msg_size(&m)))
				errors++;
			j++;
			zmq_msg_close(&m);
		}
		if (j != parts) {
			fprintf(stderr, WHO ": message %lu has %u parts, expected %u\n", i, j,
			        parts);
			errors++;
		}
		if (errors > 10)
			break;
	}
	printf(WHO ": received %lu messages of %u parts, %d errors\n", count, parts, errors);
	return errors != 0;
}

int main(int argc, char **argv)
{
	const char *role, *mode, *url, *epfile;
	int timeout = TIMEOUT_MS, rc;
	unsigned long count;
	unsigned parts;
	char endpoint[1024];
	size_t len = sizeof(endpoint);
	void *ctx, *s;

	if (argc < 6) {
		fprintf(stderr,
		        "usage: %s push|pull bind|connect URL COUNT PARTS [ENDPOINT_FILE]\n",
		        argv[0]);
		return 2;
	}
	role = argv[1];
	mode = argv[2];
	url = argv[3];
	count = strtoul(argv[4], NULL, 10);
	parts = (unsigned)strtoul(argv[5], NULL, 10);
	epfile = argc > 6 ? argv[6] : NULL;
	if (parts == 0)
		return 2;

	ctx = zmq_ctx_new();
	s = zmq_socket(ctx, strcmp(role, "push") == 0 ? ZMQ_PUSH : ZMQ_PULL);
	zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof(timeout));
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
	zmq_setsockopt(s, ZMQ_LINGER, &timeout, sizeof(timeout));
	if (strcmp(mode, "bind") == 0) {
		if (zmq_bind(s, url) != 0)
			return fail("zmq_bind");
		zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, endpoint, &len);
		if (epfile != NULL && peer_write_endpoint(epfile, endpoint) != 0) {
			perror(WHO ": endpoint file");
			return 1;
		}
	} else if (zmq_connect(s, url) != 0) {
		return fail("zmq_connect");
	}
	rc = strcmp(role, "push") == 0 ? do_push(s, count, parts) : do_pull(s, count, parts);
	zmq_close(s);
	zmq_ctx_term(ctx); /* waits (up to the linger) until everything was sent */
	/* libzmq leaves the socket file of an ipc:// address it bound; a good peer removes it. */
	if (strcmp(mode, "bind") == 0 && strncmp(url, "ipc://", 6) == 0)
		unlink(url + 6);
	return rc;
}
