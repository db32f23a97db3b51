/*
 * The fq-bench patterns written on raw libnanomsg only: the baseline of the nanomsg transport,
 * measured in the same run, on the same machine, with the same sizes, parts, limits and end
 * marker (see baseline_nanomsg.c and fq-bench(1)).
 */
#ifndef FQB_BASELINE_NANOMSG_H
#define FQB_BASELINE_NANOMSG_H

#include "engine.h"

/*
 * thr, single parts: sizes from this on are sent zero-copy, each message written into a chunk
 * of its own (nn_allocmsg) and handed over with nn_send(NN_MSG); smaller ones are sent with
 * nn_send from one reused buffer (libnanomsg copies them into a chunk).
 */
#define FQB_NN_ZERO_COPY_MIN 4096

/* Run one side (a->role) on raw libnanomsg; writes report lines; returns an exit status. */
int fqb_nn_role(const fqb_role_args *a);

#endif /* FQB_BASELINE_NANOMSG_H */
