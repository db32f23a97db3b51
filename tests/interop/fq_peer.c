/*
 * The fabriq side of the interop tests, written against the public API only.
 *
 *   fq_peer push|pull bind|connect URL COUNT PARTS [ENDPOINT_FILE]
 *
 * push sends COUNT messages: with PARTS == 1 each is one fq_send, else one fq_sendv of PARTS
 * parts. pull receives COUNT messages (fq_recv for PARTS == 1, else fq_recvv) and checks every
 * part. A binder writes its resolved address to ENDPOINT_FILE. Exit 0 when all went well, 1
 * otherwise. Every blocking call is bounded (20 s).
 */
#include <fabriq/fabriq.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_pattern.h"

#define WHO        "fq_peer"
#define TIMEOUT_MS 20000
#define MAX_PARTS  64

static int fail(const char *what, int rc)
{
	fprintf(stderr, WHO ": %s: %s (%s)\n", what, fq_err_name(rc), fq_strerror(rc));
	return 1;
}

static int make(fq_transport *t, unsigned long i, unsigned j, fq_msg **out)
{
	int rc = fq_msg_alloc(t, peer_part_size(i, j), out);

	if (rc == 0)
		peer_fill(i, j, fq_msg_data(*out));
	return rc;
}

static int do_push(fq_transport *t, fq_socket *s, unsigned long count, unsigned parts)
{
	for (unsigned long i = 0; i < count; i++) {
		fq_msg *m[MAX_PARTS] = {NULL};
		int rc = 0;

		for (unsigned j = 0; j < parts && rc == 0; j++)
			rc = make(t, i, j, &m[j]);
		if (rc == 0)
			rc = parts == 1 ? fq_send(s, &m[0], 0) : fq_sendv(s, m, parts, 0);
		for (unsigned j = 0; j < parts; j++)
			fq_msg_free(m[j]); /* NULL after a successful send */
		if (rc != 0)
			return fail("send", rc);
	}
	printf(WHO ": sent %lu messages of %u parts\n", count, parts);
	return 0;
}

static int do_pull(fq_socket *s, unsigned long count, unsigned parts)
{
	int errors = 0, rc;

	for (unsigned long i = 0; i < count && errors <= 10; i++) {
		if (parts == 1) {
			fq_msg *m = NULL;

			rc = fq_recv(s, &m, 0);
			if (rc != 0) {
				fprintf(stderr, WHO ": after %lu messages: ", i);
				return fail("fq_recv", rc);
			}
			errors += peer_check(WHO, i, 0, fq_msg_data(m), fq_msg_size(m)) != 0;
			fq_msg_free(m);
		} else {
			fq_parts *v = NULL;

			rc = fq_recvv(s, &v, 0);
			if (rc != 0) {
				fprintf(stderr, WHO ": after %lu messages: ", i);
				return fail("fq_recvv", rc);
			}
			if (fq_parts_count(v) != parts) {
				fprintf(stderr, WHO ": message %lu has %zu parts, expected %u\n", i,
				        fq_parts_count(v), parts);
				errors++;
			}
			for (unsigned j = 0; j < parts && j < fq_parts_count(v); j++) {
				fq_msg *m = fq_parts_at(v, j);

				errors +=
				    peer_check(WHO, i, j, fq_msg_data(m), fq_msg_size(m)) != 0;
			}
			fq_parts_free(v);
		}
	}
	printf(WHO ": received %lu messages of %u parts, %d errors\n", count, parts, errors);
	return errors != 0;
}

int main(int argc, char **argv)
{
	const char *role, *mode, *url, *epfile;
	fq_transport *t = NULL;
	fq_socket *s = NULL;
	unsigned long count;
	unsigned parts;
	char endpoint[1024];
	int rc;

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
	if (parts == 0 || parts > MAX_PARTS)
		return 2;

	if ((rc = fq_transport_open(&t, "zeromq", NULL)) != 0)
		return fail("fq_transport_open", rc);
	if ((rc = fq_socket_open(&s, t, strcmp(role, "push") == 0 ? FQ_PUSH : FQ_PULL)) != 0)
		return fail("fq_socket_open", rc);
	if ((rc = fq_socket_set_int(s, "snd_timeout", TIMEOUT_MS)) != 0 ||
	    (rc = fq_socket_set_int(s, "rcv_timeout", TIMEOUT_MS)) != 0 ||
	    (rc = fq_socket_set_int(s, "linger", TIMEOUT_MS)) != 0)
		return fail("fq_socket_set_int", rc);
	if (strcmp(mode, "bind") == 0) {
		if ((rc = fq_bind(s, url)) != 0)
			return fail("fq_bind", rc);
		if ((rc = fq_socket_endpoint(s, 0, endpoint, sizeof(endpoint))) != 0)
			return fail("fq_socket_endpoint", rc);
		if (epfile != NULL && peer_write_endpoint(epfile, endpoint) != 0) {
			perror(WHO ": endpoint file");
			return 1;
		}
	} else if ((rc = fq_connect(s, url)) != 0) {
		return fail("fq_connect", rc);
	}
	rc = strcmp(role, "push") == 0 ? do_push(t, s, count, parts) : do_pull(s, count, parts);
	fq_socket_close(s);
	fq_transport_close(t); /* waits (up to the linger) until everything was sent */
	return rc;
}
