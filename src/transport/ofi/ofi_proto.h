/*
 * The ofi transport's wire protocol: the frames two fabriq endpoints exchange over libfabric,
 * and the HELLO of the TCP bootstrap connection. Fixed little-endian layout, checked field by
 * field on receipt: a peer that sends a frame that does not decode is dropped with a logged
 * reason (FQ_EPROTO), and nothing else is lost.
 *
 * Every fabric frame starts with a 24-byte header:
 *     u32 magic   'F','Q','O','F' (0x464f5146 read as little endian)
 *     u8  version OFI_PROTO_VERSION
 *     u8  type    OFI_EAGER, OFI_RTS, OFI_FIN, OFI_CREDIT, OFI_BYE
 *     u16 flags   0 (reserved)
 *     u32 conn    the receiver's id for this connection (given in its HELLO)
 *     u32 pad     0
 *     u64 seq     per-connection message number (EAGER and RTS share one sequence, so the
 *                 receiver delivers in send order even when a rendezvous ends after a later
 *                 eager message); for FIN, the seq of the RTS it finishes
 * then, by type:
 *     EAGER   u32 nparts, u32 0, u64 size[nparts], the parts' bytes back to back
 *     RTS     u32 nparts, u32 0, per part {u64 size, u64 raddr, u64 key}: the receiver reads
 *             each part with fi_read and answers FIN; only then does the sender free them
 *     RTSI    u32 nparts, u32 0, u64 table raddr, u64 table key: an RTS whose part table
 *             (nparts records as in RTS) did not fit a receive buffer; the receiver reads the
 *             table first (nparts * 24 bytes at raddr), then goes on as for an RTS
 *     FIN     nothing more
 *     CREDIT  u32 credits (receive buffers newly posted for this sender), u32 0; the header's
 *             seq carries the message bytes given back (received by the application, or
 *             dropped) against the byte grant of the HELLO, 0 without one
 *     BYE     nothing more (orderly close; the bootstrap connection says the same)
 */
#ifndef FQI_OFI_PROTO_H
#define FQI_OFI_PROTO_H

#include "core/core.h"

#define OFI_PROTO_MAGIC   0x464f5146u /* "FQOF" */
#define OFI_PROTO_VERSION 2u
#define OFI_HDR_BYTES     24u
#define OFI_MAX_PARTS     65535u
#define OFI_RTS_PART      24u /* size, raddr, key */

enum { OFI_EAGER = 1, OFI_RTS = 2, OFI_FIN = 3, OFI_CREDIT = 4, OFI_BYE = 5, OFI_RTSI = 6 };
#define OFI_RTSI_BYTES (OFI_HDR_BYTES + 24u)

/* One part of a rendezvous announcement. */
typedef struct ofi_rts_part {
	uint64_t size, raddr, key;
} ofi_rts_part;

/* A decoded frame: a view into the received buffer (valid while the buffer is). */
typedef struct ofi_frame {
	unsigned type;
	uint32_t conn;
	uint64_t seq;
	uint32_t nparts;           /* EAGER, RTS */
	const unsigned char *meta; /* EAGER: the sizes; RTS: the part records */
	const unsigned char *data; /* EAGER: the first part's bytes */
	uint64_t total;            /* EAGER, RTS: bytes of all parts */
	uint32_t credits;          /* CREDIT */
	uint64_t table_raddr;      /* RTSI */
	uint64_t table_key;
} ofi_frame;

/* Bytes of an EAGER frame's header and size table for n parts (the data follows). */
size_t ofi_eager_head_bytes(size_t nparts);
/* Bytes of an RTS frame for n parts. */
size_t ofi_rts_bytes(size_t nparts);

/*
 * Encoders write into buf (cap bytes) and return the bytes written, or FQ_ERANGE (buf too
 * small) or FQ_EINVAL (nparts 0 or above OFI_MAX_PARTS).
 */
int ofi_encode_eager_head(void *buf, size_t cap, uint32_t conn, uint64_t seq, const uint64_t *sizes,
                          size_t nparts);
int ofi_encode_rts(void *buf, size_t cap, uint32_t conn, uint64_t seq, const ofi_rts_part *parts,
                   size_t nparts);
int ofi_encode_ctl(void *buf, size_t cap, unsigned type, uint32_t conn, uint64_t seq,
                   uint32_t credits);
int ofi_encode_rtsi(void *buf, size_t cap, uint32_t conn, uint64_t seq, size_t nparts,
                    uint64_t table_raddr, uint64_t table_key);
/* The part records of an RTS, or of the table an RTSI points at (nparts * 24 bytes). */
void ofi_encode_rts_table(void *buf, const ofi_rts_part *parts, size_t nparts);
/*
 * Check a table read for an RTSI of nparts (len must be nparts * 24; sizes must not
 * overflow) and make *out a view of it that ofi_rts_at reads (nparts, meta, total set).
 * FQ_EPROTO with the reason in why.
 */
int ofi_decode_rts_table(const void *table, size_t len, uint32_t nparts, ofi_frame *out, char *why,
                         size_t why_len);

/*
 * Decode and check a received frame of `len` bytes: magic, version, type, reserved fields
 * zero, part counts in range, the size table matching the bytes that arrived, no sum that
 * overflows. 0, or FQ_EPROTO with the reason in why (at least 96 bytes).
 */
int ofi_decode(const void *buf, size_t len, ofi_frame *out, char *why, size_t why_len);
/* Part i of a decoded EAGER (its size) or RTS frame. */
uint64_t ofi_eager_size(const ofi_frame *f, size_t i);
ofi_rts_part ofi_rts_at(const ofi_frame *f, size_t i);

/*
 * The HELLO each side sends first on the TCP bootstrap connection:
 *     u32 magic "FQOH", u16 version, u16 socket type, u32 conn (the sender's id for this
 *     connection: the peer puts it in every frame it sends), u32 credits (receive buffers the
 *     sender has posted for the peer), u64 eager (the sender's eager threshold),
 *     u64 bytes (the byte grant: the most message bytes the peer may have sent and this side's
 *     application not yet received, from rcv_hwm_bytes; 0 = none),
 *     u16 name_len, u16 prov_len, name bytes (fi_getname), provider bytes (not terminated).
 */
#define OFI_HELLO_MAGIC 0x484f5146u /* "FQOH" */
#define OFI_HELLO_FIXED 36u
#define OFI_HELLO_MAX   (OFI_HELLO_FIXED + 64u + 64u)

typedef struct ofi_hello {
	uint16_t version, sock_type;
	uint32_t conn, credits;
	uint64_t eager, bytes;
	uint16_t name_len, prov_len;
	unsigned char name[64];
	char prov[65]; /* NUL-terminated after decoding */
} ofi_hello;

int ofi_encode_hello(void *buf, size_t cap, const ofi_hello *h);
/* 0, FQ_EAGAIN (not all of it has arrived yet: read more), or FQ_EPROTO with a reason. */
int ofi_decode_hello(const void *buf, size_t len, ofi_hello *out, size_t *used, char *why,
                     size_t why_len);

#endif /* FQI_OFI_PROTO_H */
