/* The ofi transport's wire protocol (ofi_proto.h): encoding and checked decoding. */
#include "transport/ofi/ofi_proto.h"

#include <stdio.h>
#include <string.h>

/* ---- Little-endian fields ---------------------------------------------------------------- */

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---- Frames ----------------------------------------------------------------------------- */

static int bad(char *why, size_t len, const char *fmt, unsigned long long a, unsigned long long b)
{
	if (why != NULL && len > 0)
		snprintf(why, len, fmt, a, b);
	return FQ_EPROTO;
}

static void put_header(unsigned char *p, unsigned type, uint32_t conn, uint64_t seq)
{
	put32(p, OFI_PROTO_MAGIC);
	p[4] = OFI_PROTO_VERSION;
	p[5] = (unsigned char)type;
	put16(p + 6, 0);
	put32(p + 8, conn);
	put32(p + 12, 0);
	put64(p + 16, seq);
}

size_t ofi_eager_head_bytes(size_t nparts)
{
	return OFI_HDR_BYTES + 8 + 8 * nparts;
}

size_t ofi_rts_bytes(size_t nparts)
{
	return OFI_HDR_BYTES + 8 + OFI_RTS_PART * nparts;
}

int ofi_encode_eager_head(void *buf, size_t cap, uint32_t conn, uint64_t seq, const uint64_t *sizes,
                          size_t nparts)
{
	unsigned char *p = buf;

	if (nparts == 0 || nparts > OFI_MAX_PARTS)
		return FQ_EINVAL;
	if (cap < ofi_eager_head_bytes(nparts))
		return FQ_ERANGE;
	put_header(p, OFI_EAGER, conn, seq);
	put32(p + OFI_HDR_BYTES, (uint32_t)nparts);
	put32(p + OFI_HDR_BYTES + 4, 0);
	for (size_t i = 0; i < nparts; i++)
		put64(p + OFI_HDR_BYTES + 8 + 8 * i, sizes[i]);
	return (int)ofi_eager_head_bytes(nparts);
}

int ofi_encode_rts(void *buf, size_t cap, uint32_t conn, uint64_t seq, const ofi_rts_part *parts,
                   size_t nparts)
{
	unsigned char *p = buf;

	if (nparts == 0 || nparts > OFI_MAX_PARTS)
		return FQ_EINVAL;
	if (cap < ofi_rts_bytes(nparts))
		return FQ_ERANGE;
	put_header(p, OFI_RTS, conn, seq);
	put32(p + OFI_HDR_BYTES, (uint32_t)nparts);
	put32(p + OFI_HDR_BYTES + 4, 0);
	ofi_encode_rts_table(p + OFI_HDR_BYTES + 8, parts, nparts);
	return (int)ofi_rts_bytes(nparts);
}

void ofi_encode_rts_table(void *buf, const ofi_rts_part *parts, size_t nparts)
{
	for (size_t i = 0; i < nparts; i++) {
		unsigned char *q = (unsigned char *)buf + OFI_RTS_PART * i;

		put64(q, parts[i].size);
		put64(q + 8, parts[i].raddr);
		put64(q + 16, parts[i].key);
	}
}

int ofi_encode_rtsi(void *buf, size_t cap, uint32_t conn, uint64_t seq, size_t nparts,
                    uint64_t table_raddr, uint64_t table_key)
{
	unsigned char *p = buf;

	if (nparts == 0 || nparts > OFI_MAX_PARTS)
		return FQ_EINVAL;
	if (cap < OFI_RTSI_BYTES)
		return FQ_ERANGE;
	put_header(p, OFI_RTSI, conn, seq);
	put32(p + OFI_HDR_BYTES, (uint32_t)nparts);
	put32(p + OFI_HDR_BYTES + 4, 0);
	put64(p + OFI_HDR_BYTES + 8, table_raddr);
	put64(p + OFI_HDR_BYTES + 16, table_key);
	return (int)OFI_RTSI_BYTES;
}

/* Check n part records at p; their sum goes to *total. */
static int check_table(const unsigned char *p, size_t rec, uint32_t n, uint64_t *total, char *why,
                       size_t why_len)
{
	*total = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t size = get64(p + rec * i);

		if (size > UINT64_MAX - *total)
			return bad(why, why_len, "part sizes overflow (part %llu: %llu bytes)", i,
			           size);
		*total += size;
	}
	return 0;
}

int ofi_decode_rts_table(const void *table, size_t len, uint32_t nparts, ofi_frame *out, char *why,
                         size_t why_len)
{
	if (len != (size_t)OFI_RTS_PART * nparts)
		return bad(why, why_len, "rendezvous table of %llu bytes for %llu parts", len,
		           nparts);
	out->nparts = nparts;
	out->meta = table;
	return check_table(table, OFI_RTS_PART, nparts, &out->total, why, why_len);
}

int ofi_encode_ctl(void *buf, size_t cap, unsigned type, uint32_t conn, uint64_t seq,
                   uint32_t credits)
{
	unsigned char *p = buf;
	size_t n = OFI_HDR_BYTES + (type == OFI_CREDIT ? 8 : 0);

	if (type != OFI_FIN && type != OFI_CREDIT && type != OFI_BYE)
		return FQ_EINVAL;
	if (cap < n)
		return FQ_ERANGE;
	put_header(p, type, conn, seq);
	if (type == OFI_CREDIT) {
		put32(p + OFI_HDR_BYTES, credits);
		put32(p + OFI_HDR_BYTES + 4, 0);
	}
	return (int)n;
}

int ofi_decode(const void *buf, size_t len, ofi_frame *out, char *why, size_t why_len)
{
	const unsigned char *p = buf;
	uint64_t total = 0;

	memset(out, 0, sizeof(*out));
	if (len < OFI_HDR_BYTES)
		return bad(why, why_len, "frame of %llu bytes, shorter than the %llu-byte header",
		           len, OFI_HDR_BYTES);
	if (get32(p) != OFI_PROTO_MAGIC)
		return bad(why, why_len, "bad magic %#llx (not a fabriq ofi peer?)%.0llu", get32(p),
		           0);
	if (p[4] != OFI_PROTO_VERSION)
		return bad(why, why_len, "protocol version %llu, this side speaks %llu", p[4],
		           OFI_PROTO_VERSION);
	if (get16(p + 6) != 0 || get32(p + 12) != 0)
		return bad(why, why_len, "reserved header fields set (%#llx, %#llx)", get16(p + 6),
		           get32(p + 12));
	out->type = p[5];
	out->conn = get32(p + 8);
	out->seq = get64(p + 16);
	p += OFI_HDR_BYTES;
	len -= OFI_HDR_BYTES;
	switch (out->type) {
	case OFI_EAGER:
	case OFI_RTS: {
		size_t rec = out->type == OFI_EAGER ? 8 : OFI_RTS_PART;

		if (len < 8)
			return bad(why, why_len, "truncated part count (%llu of %llu bytes)", len,
			           8);
		out->nparts = get32(p);
		if (out->nparts == 0 || out->nparts > OFI_MAX_PARTS || get32(p + 4) != 0)
			return bad(why, why_len, "%llu parts (1 to %llu allowed)", out->nparts,
			           OFI_MAX_PARTS);
		p += 8;
		len -= 8;
		if (len < rec * out->nparts)
			return bad(why, why_len, "truncated part table (%llu of %llu bytes)", len,
			           rec * out->nparts);
		out->meta = p;
		if (check_table(p, rec, out->nparts, &total, why, why_len) != 0)
			return FQ_EPROTO;
		out->total = total;
		len -= rec * out->nparts;
		if (out->type == OFI_EAGER) {
			out->data = p + rec * out->nparts;
			if (len != total)
				return bad(
				    why, why_len,
				    "eager frame announces %llu bytes of parts but carries %llu",
				    total, len);
		} else if (len != 0) {
			return bad(why, why_len, "%llu stray bytes after a rendezvous table%.0llu",
			           len, 0);
		}
		return 0;
	}
	case OFI_RTSI:
		if (len != OFI_RTSI_BYTES - OFI_HDR_BYTES)
			return bad(why, why_len,
			           "indirect rendezvous frame of %llu bytes (expected %llu)",
			           len + OFI_HDR_BYTES, OFI_RTSI_BYTES);
		out->nparts = get32(p);
		if (out->nparts == 0 || out->nparts > OFI_MAX_PARTS || get32(p + 4) != 0)
			return bad(why, why_len, "%llu parts (1 to %llu allowed)", out->nparts,
			           OFI_MAX_PARTS);
		out->table_raddr = get64(p + 8);
		out->table_key = get64(p + 16);
		return 0;
	case OFI_CREDIT:
		if (len != 8 || get32(p + 4) != 0)
			return bad(why, why_len, "credit frame of %llu bytes (expected %llu)", len,
			           8);
		out->credits = get32(p);
		return 0;
	case OFI_FIN:
	case OFI_BYE:
		if (len != 0)
			return bad(why, why_len, "%llu stray bytes after a type %llu frame", len,
			           out->type);
		return 0;
	default:
		return bad(why, why_len, "unknown frame type %llu%.0llu", out->type, 0);
	}
}

uint64_t ofi_eager_size(const ofi_frame *f, size_t i)
{
	return get64(f->meta + 8 * i);
}

ofi_rts_part ofi_rts_at(const ofi_frame *f, size_t i)
{
	const unsigned char *q = f->meta + OFI_RTS_PART * i;
	ofi_rts_part r = {get64(q), get64(q + 8), get64(q + 16)};

	return r;
}

/* ---- Bootstrap HELLO -------------------------------------------------------------------- */

int ofi_encode_hello(void *buf, size_t cap, const ofi_hello *h)
{
	unsigned char *p = buf;
	size_t n = OFI_HELLO_FIXED + h->name_len + h->prov_len;

	if (h->name_len == 0 || h->name_len > sizeof(h->name) || h->prov_len > 64)
		return FQ_EINVAL;
	if (cap < n)
		return FQ_ERANGE;
	put32(p, OFI_HELLO_MAGIC);
	put16(p + 4, h->version);
	put16(p + 6, h->sock_type);
	put32(p + 8, h->conn);
	put32(p + 12, h->credits);
	put64(p + 16, h->eager);
	put64(p + 24, h->bytes);
	put16(p + 32, h->name_len);
	put16(p + 34, h->prov_len);
	memcpy(p + OFI_HELLO_FIXED, h->name, h->name_len);
	memcpy(p + OFI_HELLO_FIXED + h->name_len, h->prov, h->prov_len);
	return (int)n;
}

int ofi_decode_hello(const void *buf, size_t len, ofi_hello *out, size_t *used, char *why,
                     size_t why_len)
{
	const unsigned char *p = buf;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (len >= 4 && get32(p) != OFI_HELLO_MAGIC)
		return bad(why, why_len, "bad hello magic %#llx (not a fabriq ofi endpoint)%.0llu",
		           get32(p), 0);
	/* The version first: the rest of the layout depends on it. */
	if (len < 6)
		return FQ_EAGAIN;
	out->version = get16(p + 4);
	if (out->version != OFI_PROTO_VERSION)
		return bad(why, why_len, "hello of protocol version %llu, this side speaks %llu",
		           out->version, OFI_PROTO_VERSION);
	if (len < OFI_HELLO_FIXED)
		return FQ_EAGAIN;
	out->sock_type = get16(p + 6);
	out->conn = get32(p + 8);
	out->credits = get32(p + 12);
	out->eager = get64(p + 16);
	out->bytes = get64(p + 24);
	out->name_len = get16(p + 32);
	out->prov_len = get16(p + 34);
	if (out->name_len == 0 || out->name_len > sizeof(out->name) || out->prov_len > 64)
		return bad(why, why_len, "hello with a %llu-byte name and a %llu-byte provider",
		           out->name_len, out->prov_len);
	n = OFI_HELLO_FIXED + out->name_len + out->prov_len;
	if (len < n)
		return FQ_EAGAIN;
	memcpy(out->name, p + OFI_HELLO_FIXED, out->name_len);
	memcpy(out->prov, p + OFI_HELLO_FIXED + out->name_len, out->prov_len);
	out->prov[out->prov_len] = '\0';
	if (strlen(out->prov) != out->prov_len)
		return bad(why, why_len, "provider name with a NUL byte%.0llu%.0llu", 0, 0);
	*used = n;
	return 0;
}
