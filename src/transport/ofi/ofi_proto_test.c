/*
 * The ofi wire protocol: every frame round-trips, and every malformed frame a peer could
 * send (truncated at any byte, wrong magic, version, type, reserved bits, part counts, sizes
 * that do not match or overflow, stray bytes) is refused with a reason, never trusted.
 */
#include "transport/ofi/ofi_proto.h"

#include <criterion/criterion.h>
#include <string.h>

static unsigned char buf[4096];
static char why[128];

static int decode(size_t len, ofi_frame *f)
{
	why[0] = '\0';
	return ofi_decode(buf, len, f, why, sizeof(why));
}

Test(ofi_proto, eager_round_trip_and_every_truncation)
{
	uint64_t sizes[3] = {5, 0, 3};
	ofi_frame f;
	int head = ofi_encode_eager_head(buf, sizeof(buf), 7, 42, sizes, 3);

	cr_assert_eq(head, (int)ofi_eager_head_bytes(3));
	memcpy(buf + head, "helloabc", 8);
	cr_assert_eq(decode((size_t)head + 8, &f), 0, "%s", why);
	cr_assert_eq(f.type, OFI_EAGER);
	cr_assert_eq(f.conn, 7);
	cr_assert_eq(f.seq, 42);
	cr_assert_eq(f.nparts, 3);
	cr_assert_eq(f.total, 8);
	cr_assert_eq(ofi_eager_size(&f, 0), 5);
	cr_assert_eq(ofi_eager_size(&f, 1), 0);
	cr_assert_eq(ofi_eager_size(&f, 2), 3);
	cr_assert_eq(memcmp(f.data, "helloabc", 8), 0);
	for (size_t len = 0; len < (size_t)head + 8; len++)
		cr_assert_eq(decode(len, &f), FQ_EPROTO, "truncated to %zu bytes was accepted",
		             len);
	cr_assert_eq(decode((size_t)head + 9, &f), FQ_EPROTO, "a stray byte was accepted");
	cr_assert_not_null(strstr(why, "carries"), "%s", why);
}

Test(ofi_proto, rts_round_trip)
{
	ofi_rts_part parts[2] = {{1u << 30, 0x7f0000001000ull, 0xabc}, {0, 0, 1}};
	ofi_frame f;
	int n = ofi_encode_rts(buf, sizeof(buf), 1, UINT64_MAX, parts, 2);

	cr_assert_eq(n, (int)ofi_rts_bytes(2));
	cr_assert_eq(decode((size_t)n, &f), 0, "%s", why);
	cr_assert_eq(f.type, OFI_RTS);
	cr_assert_eq(f.seq, UINT64_MAX);
	cr_assert_eq(f.total, 1u << 30);
	cr_assert_eq(ofi_rts_at(&f, 0).raddr, 0x7f0000001000ull);
	cr_assert_eq(ofi_rts_at(&f, 0).key, 0xabc);
	cr_assert_eq(ofi_rts_at(&f, 1).key, 1);
	for (size_t len = 0; len < (size_t)n; len++)
		cr_assert_eq(decode(len, &f), FQ_EPROTO, "truncated to %zu bytes was accepted",
		             len);
	cr_assert_eq(decode((size_t)n + 1, &f), FQ_EPROTO);
}

Test(ofi_proto, control_frames)
{
	ofi_frame f;
	/* A CREDIT gives back frames and (in the seq field) bytes, also above 2^32. */
	int n = ofi_encode_ctl(buf, sizeof(buf), OFI_CREDIT, 3, (5ull << 32) + 7, 64);

	cr_assert_eq(decode((size_t)n, &f), 0, "%s", why);
	cr_assert_eq(f.type, OFI_CREDIT);
	cr_assert_eq(f.credits, 64);
	cr_assert_eq(f.seq, (5ull << 32) + 7);
	n = ofi_encode_ctl(buf, sizeof(buf), OFI_FIN, 3, 99, 0);
	cr_assert_eq(decode((size_t)n, &f), 0);
	cr_assert_eq(f.type, OFI_FIN);
	cr_assert_eq(f.seq, 99);
	cr_assert_eq(decode((size_t)n + 8, &f), FQ_EPROTO);
	n = ofi_encode_ctl(buf, sizeof(buf), OFI_BYE, 3, 0, 0);
	cr_assert_eq(decode((size_t)n, &f), 0);
	cr_assert_eq(ofi_encode_ctl(buf, sizeof(buf), OFI_EAGER, 0, 0, 0), FQ_EINVAL);
	cr_assert_eq(ofi_encode_ctl(buf, 10, OFI_FIN, 0, 0, 0), FQ_ERANGE);
}

Test(ofi_proto, hostile_headers_are_refused_with_a_reason)
{
	uint64_t size = 4;
	ofi_frame f;
	int n = ofi_encode_eager_head(buf, sizeof(buf), 1, 1, &size, 1);

	memcpy(buf + n, "data", 4);
	buf[0] ^= 1;
	cr_assert_eq(decode((size_t)n + 4, &f), FQ_EPROTO);
	cr_assert_not_null(strstr(why, "magic"), "%s", why);
	buf[0] ^= 1;
	buf[4] = 9;
	cr_assert_eq(decode((size_t)n + 4, &f), FQ_EPROTO);
	cr_assert_not_null(strstr(why, "version 9"), "%s", why);
	buf[4] = OFI_PROTO_VERSION;
	buf[5] = 77;
	cr_assert_eq(decode((size_t)n + 4, &f), FQ_EPROTO);
	cr_assert_not_null(strstr(why, "type 77"), "%s", why);
	buf[5] = OFI_EAGER;
	buf[6] = 1;
	cr_assert_eq(decode((size_t)n + 4, &f), FQ_EPROTO);
	buf[6] = 0;
	/* A part count of zero, and one above the limit. */
	memset(buf + OFI_HDR_BYTES, 0, 4);
	cr_assert_eq(decode((size_t)n + 4, &f), FQ_EPROTO);
	buf[OFI_HDR_BYTES + 2] = 1; /* 65536 parts */
	cr_assert_eq(decode((size_t)n + 4, &f), FQ_EPROTO);
	cr_assert_not_null(strstr(why, "65536 parts"), "%s", why);
}

Test(ofi_proto, part_sizes_that_overflow_are_refused)
{
	uint64_t sizes[2] = {UINT64_MAX, 2};
	ofi_frame f;
	int n = ofi_encode_eager_head(buf, sizeof(buf), 1, 1, sizes, 2);

	cr_assert_eq(decode((size_t)n, &f), FQ_EPROTO);
	cr_assert_not_null(strstr(why, "overflow"), "%s", why);
	cr_assert_eq(ofi_encode_eager_head(buf, sizeof(buf), 1, 1, sizes, 0), FQ_EINVAL);
	cr_assert_eq(ofi_encode_eager_head(buf, 16, 1, 1, sizes, 2), FQ_ERANGE);
}

Test(ofi_proto, hello_round_trip_partial_and_hostile)
{
	ofi_hello h = {.version = OFI_PROTO_VERSION,
	               .sock_type = 5,
	               .conn = 12,
	               .credits = 256,
	               .eager = 16384,
	               .bytes = (3ull << 32) + 1,
	               .name_len = 16,
	               .prov_len = 11};
	ofi_hello out;
	size_t used = 0;
	int n;

	memset(h.name, 0xab, 16);
	memcpy(h.prov, "tcp;ofi_rxm", 11);
	n = ofi_encode_hello(buf, sizeof(buf), &h);
	cr_assert_eq(n, OFI_HELLO_FIXED + 16 + 11);
	for (int len = 4; len < n; len++)
		cr_assert_eq(ofi_decode_hello(buf, (size_t)len, &out, &used, why, sizeof(why)),
		             FQ_EAGAIN, "%d bytes", len);
	cr_assert_eq(ofi_decode_hello(buf, (size_t)n, &out, &used, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(used, (size_t)n);
	cr_assert_eq(out.conn, 12);
	cr_assert_eq(out.credits, 256);
	cr_assert_eq(out.eager, 16384);
	cr_assert_eq(out.bytes, (3ull << 32) + 1);
	cr_assert_str_eq(out.prov, "tcp;ofi_rxm");
	cr_assert_eq(memcmp(out.name, h.name, 16), 0);
	/* A name longer than any endpoint name, another version (refused as soon as its two
	 * bytes are in, whatever follows), and a foreign protocol. */
	buf[32] = 200;
	cr_assert_eq(ofi_decode_hello(buf, (size_t)n, &out, &used, why, sizeof(why)), FQ_EPROTO);
	buf[4] = 1;
	buf[5] = 0;
	cr_assert_eq(ofi_decode_hello(buf, 6, &out, &used, why, sizeof(why)), FQ_EPROTO);
	cr_assert_not_null(strstr(why, "version 1"), "%s", why);
	memcpy(buf, "GET ", 4);
	cr_assert_eq(ofi_decode_hello(buf, 4, &out, &used, why, sizeof(why)), FQ_EPROTO);
	cr_assert_not_null(strstr(why, "hello magic"), "%s", why);
}

Test(ofi_proto, indirect_rts_and_its_table)
{
	static unsigned char table[3 * OFI_RTS_PART];
	ofi_rts_part parts[3] = {{10, 0x1000, 7}, {0, 0, 0}, {1u << 20, 0x2000, 9}}, p;
	ofi_frame f, view = {0};
	int n = ofi_encode_rtsi(buf, sizeof(buf), 5, 99, 3, 0xabcdef, 42);

	cr_assert_eq(n, (int)OFI_RTSI_BYTES);
	cr_assert_eq(decode((size_t)n, &f), 0, "%s", why);
	cr_assert_eq(f.type, OFI_RTSI);
	cr_assert_eq(f.seq, 99);
	cr_assert_eq(f.nparts, 3);
	cr_assert_eq(f.table_raddr, 0xabcdef);
	cr_assert_eq(f.table_key, 42);
	for (size_t len = 0; len < (size_t)n; len++)
		cr_assert_eq(decode(len, &f), FQ_EPROTO, "truncated to %zu bytes was accepted",
		             len);
	cr_assert_eq(decode((size_t)n + 1, &f), FQ_EPROTO);
	cr_assert_eq(ofi_encode_rtsi(buf, sizeof(buf), 5, 99, 0, 1, 1), FQ_EINVAL);
	cr_assert_eq(ofi_encode_rtsi(buf, sizeof(buf), 5, 99, OFI_MAX_PARTS + 1, 1, 1), FQ_EINVAL);
	cr_assert_eq(ofi_encode_rtsi(buf, 16, 5, 99, 3, 1, 1), FQ_ERANGE);

	/* The table reads back as an RTS's part records. */
	ofi_encode_rts_table(table, parts, 3);
	cr_assert_eq(ofi_decode_rts_table(table, sizeof(table), 3, &view, why, sizeof(why)), 0,
	             "%s", why);
	cr_assert_eq(view.total, 10 + (1u << 20));
	p = ofi_rts_at(&view, 2);
	cr_assert(p.size == 1u << 20 && p.raddr == 0x2000 && p.key == 9);
	/* A table of another length, and sizes that overflow, are refused. */
	cr_assert_eq(ofi_decode_rts_table(table, sizeof(table) - 1, 3, &view, why, sizeof(why)),
	             FQ_EPROTO);
	parts[0].size = UINT64_MAX;
	ofi_encode_rts_table(table, parts, 3);
	cr_assert_eq(ofi_decode_rts_table(table, sizeof(table), 3, &view, why, sizeof(why)),
	             FQ_EPROTO);
	cr_assert_not_null(strstr(why, "overflow"), "%s", why);
}
