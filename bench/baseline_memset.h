/*
 * The memset reference of fq-bench --memset: how many bytes per second one process writes
 * with memset into one reused buffer of the run's size, on the sender's CPU, for the run's
 * count or duration. With --memset every sender writes every byte of every message, so a
 * throughput row divided by this one is the share of the machine's write bandwidth it reaches.
 */
#ifndef FQB_BASELINE_MEMSET_H
#define FQB_BASELINE_MEMSET_H

#include "engine.h"

/*
 * Run the memset loop (a->role sender): a->size bytes, a->count times or for a->duration
 * seconds; reports iterations, seconds and CPU seconds (fqb_report_solo). An exit status.
 */
int fqb_memset_role(const fqb_role_args *a);

#endif /* FQB_BASELINE_MEMSET_H */
