/*
 * The vector header of the nanomsg transport: how a vector of parts travels as one SP message.
 *
 * A single fabriq message is one SP message, byte for byte (nanocat, nngcat and any SP peer
 * read it as it is). A vector of parts is one SP message that starts with this header, all
 * integers big-endian (the byte order of the SP protocols):
 *
 *   offset  size  field
 *   0       6     magic: 0x00 'F' 'Q' 'V' 'E' 'C'
 *   6       1     version: 1
 *   7       1     flags: 0 (anything else is refused)
 *   8       4     n: number of parts, 1 to 65535
 *   12      8*n   size of each part, in order
 *   12+8n   ...   the parts' bytes, one after the other; nothing follows them
 *
 * A receiver takes a body that starts with the magic as a vector and checks that the sizes
 * add up to the body exactly; a body that starts with the magic but does not (truncated,
 * other version or flags, sizes that overflow or disagree) is malformed and dropped. A fabriq
 * sender never sends a single message that starts with the magic raw: it sends it as a vector
 * of one part, so every fabriq message arrives as it was sent.
 *
 * Pure functions, no state: thread-safe.
 */
#ifndef FQI_NM_WIRE_H
#define FQI_NM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define NM_VEC_MAGIC     "\0FQVEC"
#define NM_VEC_MAGIC_LEN 6
#define NM_VEC_VERSION   1
#define NM_VEC_FIXED     12 /* magic, version, flags, n */
/* Most parts a vector may have (more is refused on both sides: a peer must not make the
 * receiver allocate a part record per 8 bytes of header). */
#define NM_VEC_MAX_PARTS 65535

/* Bytes of the header of an n-part vector. */
static inline size_t nm_vec_head_bytes(size_t n)
{
	return NM_VEC_FIXED + 8 * n;
}

/* Does a body of len bytes start with the magic (and so must be read as a vector)? */
int nm_vec_is(const void *body, size_t len);

/* Write the fixed part of the header for n parts into head (nm_vec_head_bytes(n) bytes). */
void nm_vec_put_head(unsigned char *head, uint32_t n);
/* Write the size of part i. */
void nm_vec_put_size(unsigned char *head, size_t i, uint64_t size);

/*
 * Check a body that nm_vec_is: on success (0) *n holds the part count, and part i has
 * nm_vec_size(body, i) bytes starting at body + *offset_first + the sizes before it.
 * FQ_EPROTO with a reason in why (may be NULL) for a malformed header.
 */
int nm_vec_parse(const void *body, size_t len, size_t *n, size_t *offset_first, char *why,
                 size_t why_len);
uint64_t nm_vec_size(const void *body, size_t i);

#endif /* FQI_NM_WIRE_H */
