/*
 * The nanomsg transport's vector header: encoded as documented (big-endian), parsed back, and
 * every malformed header a peer could send (truncated at any byte, other version or flags, no
 * parts, sizes that overflow, overrun or fall short of the body) refused with a reason.
 */
#include "transport/nanomsg/nm_wire.h"

#include "fabriq/fabriq.h"

#include <criterion/criterion.h>
#include <string.h>

static unsigned char body[4096];
static char why[160];

/* A vector of the given part sizes, parts filled with their index; returns its length. */
static size_t build(const uint64_t *sizes, uint32_t n)
{
	size_t at = nm_vec_head_bytes(n);

	nm_vec_put_head(body, n);
	for (uint32_t i = 0; i < n; i++) {
		nm_vec_put_size(body, i, sizes[i]);
		memset(body + at, (int)i + 1, sizes[i]);
		at += sizes[i];
	}
	return at;
}

Test(nm_wire, layout_is_the_documented_one)
{
	uint64_t sizes[2] = {3, 0x0102030405060708ull};

	nm_vec_put_head(body, 2);
	nm_vec_put_size(body, 0, sizes[0]);
	nm_vec_put_size(body, 1, sizes[1]);
	cr_assert_eq(memcmp(body, "\0FQVEC\1\0\0\0\0\2", 12), 0);
	cr_assert_eq(memcmp(body + 12, "\0\0\0\0\0\0\0\3", 8), 0);
	cr_assert_eq(memcmp(body + 20, "\1\2\3\4\5\6\7\10", 8), 0);
	cr_assert_eq(nm_vec_head_bytes(2), 28);
}

Test(nm_wire, round_trip_with_empty_parts)
{
	uint64_t sizes[4] = {5, 0, 100, 0};
	size_t len = build(sizes, 4), n = 0, at = 0;

	cr_assert(nm_vec_is(body, len));
	cr_assert_eq(nm_vec_parse(body, len, &n, &at, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(n, 4);
	cr_assert_eq(at, nm_vec_head_bytes(4));
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(nm_vec_size(body, i), sizes[i]);
		if (sizes[i] > 0)
			cr_assert_eq(body[at], i + 1);
		at += sizes[i];
	}
	cr_assert_eq(at, len);
}

Test(nm_wire, plain_messages_are_not_vectors)
{
	cr_assert_not(nm_vec_is("hello", 5));
	cr_assert_not(nm_vec_is("", 0));
	cr_assert_not(nm_vec_is("\0FQVE", 5)); /* shorter than the magic */
	cr_assert_not(nm_vec_is("\0FQVEX", 6));
	cr_assert(nm_vec_is("\0FQVEC", 6));
}

Test(nm_wire, every_truncation_is_refused)
{
	uint64_t sizes[3] = {7, 0, 9};
	size_t len = build(sizes, 3), n, at;

	for (size_t cut = NM_VEC_MAGIC_LEN; cut < len; cut++)
		cr_assert_eq(nm_vec_parse(body, cut, &n, &at, why, sizeof(why)), FQ_EPROTO,
		             "truncated to %zu of %zu bytes was accepted", cut, len);
	/* A byte too many is refused as well: nothing may follow the parts. */
	cr_assert_eq(nm_vec_parse(body, len + 1, &n, &at, why, sizeof(why)), FQ_EPROTO);
}

Test(nm_wire, bad_headers_are_refused_with_a_reason)
{
	uint64_t sizes[2] = {4, 4};
	size_t len, n, at;

	len = build(sizes, 2);
	body[6] = 2; /* version */
	cr_assert_eq(nm_vec_parse(body, len, &n, &at, why, sizeof(why)), FQ_EPROTO);
	cr_assert(strstr(why, "version") != NULL, "%s", why);

	len = build(sizes, 2);
	body[7] = 1; /* flags */
	cr_assert_eq(nm_vec_parse(body, len, &n, &at, why, sizeof(why)), FQ_EPROTO);

	len = build(sizes, 2);
	body[11] = 0; /* no parts */
	cr_assert_eq(nm_vec_parse(body, len, &n, &at, why, sizeof(why)), FQ_EPROTO);

	len = build(sizes, 2);
	body[9] = 0x01; /* 65538 parts: above NM_VEC_MAX_PARTS */
	cr_assert_eq(nm_vec_parse(body, len, &n, &at, why, sizeof(why)), FQ_EPROTO);

	len = build(sizes, 2);
	body[8] = 0xff; /* more parts than the body could hold sizes for */
	cr_assert_eq(nm_vec_parse(body, len, &n, &at, why, sizeof(why)), FQ_EPROTO);
	cr_assert(strstr(why, "parts") != NULL, "%s", why);

	len = build(sizes, 2);
	nm_vec_put_size(body, 0, UINT64_MAX); /* would overflow the sum */
	cr_assert_eq(nm_vec_parse(body, len, &n, &at, why, sizeof(why)), FQ_EPROTO);

	len = build(sizes, 2);
	nm_vec_put_size(body, 1, 3); /* sizes fall short of the body */
	cr_assert_eq(nm_vec_parse(body, len, &n, &at, why, sizeof(why)), FQ_EPROTO);

	cr_assert_eq(nm_vec_parse("hello", 5, &n, &at, NULL, 0), FQ_EPROTO);
}
