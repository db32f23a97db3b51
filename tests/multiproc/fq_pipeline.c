/*
 * Processes for the multi-process pipeline test (public API only):
 *
 *   fq_pipeline source URL[,URL...] COUNT
 *       PUSH connected to every URL; sends COUNT messages (8-byte sequence number, then a
 *       pattern of (seq % 5000) bytes); waits until everything went out (linger), exits 0.
 *   fq_pipeline worker ID IN_URL ENDPOINT_FILE OUT_URL STOP_FILE
 *       PULL bound to IN_URL (resolved address to ENDPOINT_FILE), PUSH connected to OUT_URL;
 *       forwards every message as a vector [ID, message]; exits 0 once STOP_FILE exists and
 *       its input is idle.
 *   fq_pipeline merger IN_URL ENDPOINT_FILE COUNT
 *       PULL bound to IN_URL; receives vectors until it has COUNT distinct messages; checks
 *       each is intact and arrived once; prints how many came through each worker; exit 0/1.
 *
 * Every blocking call is bounded; the harness bounds the processes.
 */
#include <fabriq/fabriq.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../interop/peer_pattern.h"

#define TIMEOUT_MS 20000
#define MAX_COUNT  1000000
#define MAX_WORKER 16

static int fail(const char *who, const char *what, int rc)
{
	fprintf(stderr, "%s: %s: %s (%s)\n", who, what, fq_err_name(rc), fq_strerror(rc));
	return 1;
}

static size_t payload_size(uint64_t seq)
{
	return sizeof(seq) + (size_t)(seq % 5000);
}

static uint8_t payload_byte(uint64_t seq, size_t k)
{
	return (uint8_t)(seq * 29 + k * 3 + (k >> 8));
}

static int open_socket(fq_transport *t, fq_socket_type type, fq_socket **s, int rcv_timeout)
{
	int rc = fq_socket_open(s, t, type);

	if (rc == 0)
		rc = fq_socket_set_int(*s, "snd_timeout", TIMEOUT_MS);
	if (rc == 0)
		rc = fq_socket_set_int(*s, "rcv_timeout", rcv_timeout);
	if (rc == 0)
		rc = fq_socket_set_int(*s, "linger", TIMEOUT_MS);
	return rc;
}

static int bind_and_publish(fq_socket *s, const char *url, const char *epfile)
{
	char endpoint[1024];
	int rc = fq_bind(s, url);

	if (rc == 0)
		rc = fq_socket_endpoint(s, 0, endpoint, sizeof(endpoint));
	if (rc == 0 && peer_write_endpoint(epfile, endpoint) != 0)
		rc = FQ_EINVAL;
	return rc;
}

static int source(fq_transport *t, char *urls, unsigned long count)
{
	fq_socket *s = NULL;
	int rc = open_socket(t, FQ_PUSH, &s, TIMEOUT_MS);

	for (char *url = strtok(urls, ","); rc == 0 && url != NULL; url = strtok(NULL, ","))
		rc = fq_connect(s, url);
	if (rc != 0)
		return fail("source", "setup", rc);
	for (uint64_t seq = 0; seq < count; seq++) {
		fq_msg *m = NULL;
		uint8_t *p;

		rc = fq_msg_alloc(t, payload_size(seq), &m);
		if (rc != 0)
			return fail("source", "fq_msg_alloc", rc);
		p = fq_msg_data(m);
		memcpy(p, &seq, sizeof(seq));
		for (size_t k = sizeof(seq); k < payload_size(seq); k++)
			p[k] = payload_byte(seq, k);
		rc = fq_send(s, &m, 0);
		if (rc != 0) {
			fq_msg_free(m);
			return fail("source", "fq_send", rc);
		}
	}
	fq_socket_close(s);
	printf("source: sent %lu messages\n", count);
	return 0;
}

static int worker(fq_transport *t, const char *id, const char *in_url, const char *epfile,
                  const char *out_url, const char *stop_file)
{
	fq_socket *in = NULL, *out = NULL;
	unsigned long forwarded = 0;
	int rc = open_socket(t, FQ_PULL, &in, 50);

	if (rc == 0)
		rc = open_socket(t, FQ_PUSH, &out, TIMEOUT_MS);
	if (rc == 0)
		rc = fq_connect(out, out_url);
	if (rc == 0)
		rc = bind_and_publish(in, in_url, epfile);
	if (rc != 0)
		return fail("worker", "setup", rc);
	for (;;) {
		fq_msg *v[2] = {NULL, NULL};

		rc = fq_recv(in, &v[1], 0);
		if (rc == FQ_ETIMEDOUT) {
			/* Idle: finished once the harness says the merger has everything. */
			if (access(stop_file, F_OK) == 0)
				break;
			continue;
		}
		if (rc != 0)
			return fail("worker", "fq_recv", rc);
		rc = fq_msg_alloc(t, strlen(id), &v[0]);
		if (rc == 0) {
			memcpy(fq_msg_data(v[0]), id, strlen(id));
			rc = fq_sendv(out, v, 2, 0);
		}
		fq_msg_free(v[0]);
		fq_msg_free(v[1]);
		if (rc != 0)
			return fail("worker", "forward", rc);
		forwarded++;
	}
	fq_socket_close(in);
	fq_socket_close(out);
	printf("worker %s: forwarded %lu messages\n", id, forwarded);
	return 0;
}

static int merger(fq_transport *t, const char *in_url, const char *epfile, unsigned long count)
{
	unsigned char *seen = calloc(count, 1);
	unsigned long got = 0, per_worker[MAX_WORKER] = {0};
	fq_socket *in = NULL;
	int errors = 0, rc;

	if (seen == NULL)
		return 1;
	rc = open_socket(t, FQ_PULL, &in, TIMEOUT_MS);
	if (rc == 0)
		rc = bind_and_publish(in, in_url, epfile);
	if (rc != 0)
		return fail("merger", "setup", rc);
	while (got < count && errors <= 10) {
		fq_parts *v = NULL;
		fq_msg *m;
		const uint8_t *p;
		uint64_t seq;
		unsigned w;

		rc = fq_recvv(in, &v, 0);
		if (rc != 0) {
			fprintf(stderr, "merger: after %lu messages: ", got);
			return fail("merger", "fq_recvv", rc);
		}
		if (fq_parts_count(v) != 2 || fq_msg_size(fq_parts_at(v, 0)) != 1) {
			fprintf(stderr, "merger: malformed vector of %zu parts\n",
			        fq_parts_count(v));
			errors++;
			fq_parts_free(v);
			continue;
		}
		w = (unsigned)(*(const char *)fq_msg_data(fq_parts_at(v, 0)) - '0') % MAX_WORKER;
		m = fq_parts_at(v, 1);
		p = fq_msg_data(m);
		memcpy(&seq, p, sizeof(seq));
		if (fq_msg_size(m) < sizeof(seq) || seq >= count ||
		    fq_msg_size(m) != payload_size(seq)) {
			fprintf(stderr, "merger: bad message (%zu bytes)\n", fq_msg_size(m));
			errors++;
		} else if (seen[seq]) {
			fprintf(stderr, "merger: message %llu arrived twice\n",
			        (unsigned long long)seq);
			errors++;
		} else {
			for (size_t k = sizeof(seq); k < payload_size(seq); k++) {
				if (p[k] != payload_byte(seq, k)) {
					fprintf(stderr,
					        "merger: message %llu differs at byte %zu\n",
					        (unsigned long long)seq, k);
					errors++;
					break;
				}
			}
			seen[seq] = 1;
			got++;
			per_worker[w]++;
		}
		fq_parts_free(v);
	}
	fq_socket_close(in);
	free(seen);
	printf("merger: %lu of %lu messages, %d errors; per worker:", got, count, errors);
	for (unsigned w = 0; w < MAX_WORKER; w++) {
		if (per_worker[w] != 0)
			printf(" %u:%lu", w, per_worker[w]);
	}
	printf("\n");
	return errors != 0 || got != count;
}

int main(int argc, char **argv)
{
	fq_transport *t = NULL;
	unsigned long count;
	int rc;

	if (argc < 2)
		goto usage;
	rc = fq_transport_open(
	    &t, getenv("FQ_PIPELINE_TRANSPORT") ? getenv("FQ_PIPELINE_TRANSPORT") : "zeromq", NULL);
	if (rc != 0)
		return fail(argv[1], "fq_transport_open", rc);
	if (strcmp(argv[1], "source") == 0 && argc == 4) {
		count = strtoul(argv[3], NULL, 10);
		rc = source(t, argv[2], count);
	} else if (strcmp(argv[1], "worker") == 0 && argc == 7 && strlen(argv[2]) == 1) {
		rc = worker(t, argv[2], argv[3], argv[4], argv[5], argv[6]);
	} else if (strcmp(argv[1], "merger") == 0 && argc == 5) {
		count = strtoul(argv[4], NULL, 10);
		rc = count > 0 && count <= MAX_COUNT ? merger(t, argv[2], argv[3], count) : 2;
	} else {
		fq_transport_close(t);
		goto usage;
	}
	fq_transport_close(t); /* waits for the linger: everything sent was delivered */
	return rc;
usage:
	fprintf(stderr,
	        "usage: %s source URLS COUNT | worker ID IN_URL EPFILE OUT_URL STOPFILE | "
	        "merger IN_URL EPFILE COUNT\n",
	        argv[0]);
	return 2;
}
