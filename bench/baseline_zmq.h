/*
 * The fq-bench patterns written on raw libzmq only: the baseline fabriq is measured against,
 * in the same run, on the same machine, with the same sizes, parts, limits and end marker.
 */
#ifndef FQB_BASELINE_ZMQ_H
#define FQB_BASELINE_ZMQ_H

#include "engine.h"

/* Sizes from this on are sent zero-copy from one preallocated buffer (zmq_msg_init_data). */
#define FQB_ZMQ_ZERO_COPY_MIN 4096

/* Run one side (a->role) on raw libzmq; writes report lines; returns an exit status. */
int fqb_zmq_role(const fqb_role_args *a);

#endif /* FQB_BASELINE_ZMQ_H */
