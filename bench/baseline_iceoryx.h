/*
 * The fq-bench patterns on Eclipse iceoryx (its C binding, iceoryx 2.x): zero-copy
 * publish/subscribe through shared memory managed by the RouDi daemon, measured in the same
 * run, with the same sizes, parts, limits and CPU pinning as the fabriq rows (see
 * baseline_iceoryx.c and fq-bench(1)).
 *
 * Built only where CMake found the C binding (FQ_BENCH_ICEORYX, FQB_HAVE_ICEORYX); fq-bench
 * then starts iox-roudi for the run when none is running, and stops it at the end.
 */
#ifndef FQB_BASELINE_ICEORYX_H
#define FQB_BASELINE_ICEORYX_H

#include "engine.h"

/* The url scheme of an iceoryx run: "iox://SERVICE/INSTANCE" names the topics of one run. */
#define FQB_IOX_SCHEME "iox"

/*
 * Parent side. Make sure a RouDi serves the run: use one that is running, or start
 * `iox-roudi` (found in PATH) with a mempool configuration that holds chunks of every size in
 * `sizes` for `parts` and `hwm` (its built-in one when that does, a generated one otherwise),
 * and wait until it is ready. 0: ready; 1: iceoryx cannot run here (no iox-roudi; why is in
 * `why`, the baseline is skipped); -1: failure (message on stderr).
 */
int fqb_iox_start(const size_t *sizes, int n_sizes, size_t parts, int hwm, char *why,
                  size_t why_len);
/*
 * Stop the RouDi fqb_iox_start started (SIGTERM, then SIGKILL after a bounded wait) and remove
 * what it left in /dev/shm and /tmp; a no-op when it started none.
 */
void fqb_iox_stop(void);
/* The address of run number `run` of this parent: fresh topics, no stale publisher. */
void fqb_iox_url(char *url, size_t len, unsigned run);
/* After a run: remove the socket and lock a side (`role`, `pid`) left in /tmp if killed. */
void fqb_iox_forget(fqb_role role, pid_t pid);

/* Run one side (a->role) on iceoryx; writes report lines; returns an exit status. */
int fqb_iox_role(const fqb_role_args *a);

#endif /* FQB_BASELINE_ICEORYX_H */
