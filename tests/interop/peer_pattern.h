/*
 * The messages both interop peers send and expect: message i has `parts` frames; frame j has
 * peer_part_size(i, j) bytes (zero-length frames included) of peer_byte(i, j, k). Shared by
 * the plain-libzmq peer and the fabriq peer; includes neither library.
 */
#ifndef PEER_PATTERN_H
#define PEER_PATTERN_H

#include <stddef.h>
#include <stdio.h>

static inline size_t peer_part_size(unsigned long i, unsigned j)
{
	if (i % 50 == 7 && j == 0)
		return 100000; /* now and then a frame larger than any batch buffer */
	return (size_t)((i * 31 + j * 17) % 300);
}

static inline unsigned char peer_byte(unsigned long i, unsigned j, size_t k)
{
	return (unsigned char)(i * 13 + j * 101 + k * 7 + (k >> 8));
}

static inline void peer_fill(unsigned long i, unsigned j, unsigned char *p)
{
	for (size_t k = 0; k < peer_part_size(i, j); k++)
		p[k] = peer_byte(i, j, k);
}

/* 0 if frame j of message i is right, else -1 with a line on stderr. */
static inline int peer_check(const char *who, unsigned long i, unsigned j, const unsigned char *p,
                             size_t size)
{
	if (size != peer_part_size(i, j)) {
		fprintf(stderr, "%s: message %lu part %u: %zu bytes, expected %zu\n", who, i, j,
		        size, peer_part_size(i, j));
		return -1;
	}
	for (size_t k = 0; k < size; k++) {
		if (p[k] != peer_byte(i, j, k)) {
			fprintf(stderr, "%s: message %lu part %u differs at byte %zu\n", who, i, j,
			        k);
			return -1;
		}
	}
	return 0;
}

/* Publish a bound address for the other process: write a temporary file, then rename. */
static inline int peer_write_endpoint(const char *path, const char *endpoint)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "%s\n", endpoint);
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, path);
}

#endif /* PEER_PATTERN_H */
