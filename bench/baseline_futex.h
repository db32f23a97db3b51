/*
 * The floor of any blocking wake-up between two processes: a ping-pong through one 32-bit word
 * in a memfd both processes map, with FUTEX_WAIT and FUTEX_WAKE and no spinning (see
 * baseline_futex.c and fq-bench(1)). lat only: it moves no payload, so its rows have size 0.
 */
#ifndef FQB_BASELINE_FUTEX_H
#define FQB_BASELINE_FUTEX_H

#include "engine.h"

/* The url scheme of a futex run ("memfd://FD": a descriptor inherited from the parent). */
#define FQB_FUTEX_SCHEME "memfd"

/* Create the shared file of one futex run (memfd, close-on-exec). fd, or -1 (errno set). */
int fqb_futex_create(void);

/* Run one side (pinger or ponger) of the futex ping-pong; writes report lines; exit status. */
int fqb_futex_role(const fqb_role_args *a);

#endif /* FQB_BASELINE_FUTEX_H */
