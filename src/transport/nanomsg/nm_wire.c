/* The vector header of the nanomsg transport (nm_wire.h has the format). */
#include "transport/nanomsg/nm_wire.h"

#include "fabriq/fabriq.h"

#include <stdio.h>
#include <string.h>

static uint64_t get_be(const unsigned char *p, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

int nm_vec_is(const void *body, size_t len)
{
	return len >= NM_VEC_MAGIC_LEN && memcmp(body, NM_VEC_MAGIC, NM_VEC_MAGIC_LEN) == 0;
}

void nm_vec_put_head(unsigned char *head, uint32_t n)
{
	memcpy(head, NM_VEC_MAGIC, NM_VEC_MAGIC_LEN);
	head[6] = NM_VEC_VERSION;
	head[7] = 0;
	put_be(head + 8, n, 4);
}

void nm_vec_put_size(unsigned char *head, size_t i, uint64_t size)
{
	put_be(head + NM_VEC_FIXED + 8 * i, size, 8);
}

uint64_t nm_vec_size(const void *body, size_t i)
{
	return get_be((const unsigned char *)body + NM_VEC_FIXED + 8 * i, 8);
}

int nm_vec_parse(const void *body, size_t len, size_t *n, size_t *offset_first, char *why,
                 size_t why_len)
{
	const unsigned char *b = body;
	uint64_t count, total = 0;
	char dummy[8];

	if (why == NULL) {
		why = dummy;
		why_len = sizeof(dummy);
	}
	if (!nm_vec_is(body, len)) {
		snprintf(why, why_len, "no vector magic");
		return FQ_EPROTO;
	}
	if (len < NM_VEC_FIXED) {
		snprintf(why, why_len, "vector header truncated at %zu bytes", len);
		return FQ_EPROTO;
	}
	if (b[6] != NM_VEC_VERSION || b[7] != 0) {
		snprintf(why, why_len, "vector header version %u flags %#x (expected %u, 0)", b[6],
		         b[7], NM_VEC_VERSION);
		return FQ_EPROTO;
	}
	count = get_be(b + 8, 4);
	if (count == 0 || count > NM_VEC_MAX_PARTS || count > (len - NM_VEC_FIXED) / 8) {
		snprintf(why, why_len, "vector of %llu parts in a body of %zu bytes",
		         (unsigned long long)count, len);
		return FQ_EPROTO;
	}
	for (uint64_t i = 0; i < count; i++) {
		uint64_t s = nm_vec_size(body, i);

		if (s > len || total + s > len) {
			snprintf(why, why_len, "vector part %llu of %llu bytes overruns the body",
			         (unsigned long long)i, (unsigned long long)s);
			return FQ_EPROTO;
		}
		total += s;
	}
	if (nm_vec_head_bytes(count) + total != len) {
		snprintf(why, why_len, "vector parts add up to %llu bytes, the body has %zu",
		         (unsigned long long)(nm_vec_head_bytes(count) + total), len);
		return FQ_EPROTO;
	}
	*n = (size_t)count;
	*offset_first = nm_vec_head_bytes(count);
	return 0;
}
