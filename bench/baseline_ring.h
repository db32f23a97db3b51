/*
 * The fq-bench patterns on a raw shared-memory ring: the physical limit of message passing
 * between two processes on this machine, measured in the same run, with the same sizes, parts,
 * limits, end marker and CPU pinning as the fabriq rows.
 *
 * What is measured (see baseline_ring.c and fq-bench(1)): a single-producer/single-consumer
 * ring of 32-byte handles (offset, size, part count, sequence) in one memfd that both processes
 * map, one handle per part, the size of a shmem transport ring entry. The payload sits in a
 * pool of buffers in the same memfd, one per ring slot, and never moves: the thr sender writes
 * the first and last byte of the buffer of each message (as the fabriq sender does), the
 * receiver reads the handles only. Both sides busy-poll; head and tail sit on their own cache
 * lines and each side keeps a cached copy of the other's index.
 */
#ifndef FQB_BASELINE_RING_H
#define FQB_BASELINE_RING_H

#include "engine.h"

/* The url scheme of a ring run ("memfd://FD": a descriptor inherited from the parent). */
#define FQB_RING_SCHEME "memfd"

/*
 * Create the shared file of one ring run (memfd, close-on-exec): the parent creates it before
 * starting the two sides, lets them inherit it (fqb_child_spawn's keep_fd) and passes
 * "memfd://FD" as their URL; the binding side sizes and lays it out. fd, or -1 (errno set).
 */
int fqb_ring_create(void);

/* Run one side (a->role) on the raw ring; writes report lines; returns an exit status. */
int fqb_ring_role(const fqb_role_args *a);

#endif /* FQB_BASELINE_RING_H */
