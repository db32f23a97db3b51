/*
 * The fq-bench patterns on raw libfabric (FI_EP_RDM, no fabriq code): the baseline of the ofi
 * transport, measured in the same run, with the same sizes, limits and end marker
 * (see baseline_ofi.c and fq-bench(1)).
 *
 *   ofi       thr: fi_send -> posted fi_recv buffers; lat: fi_send/fi_recv ping-pong
 *             (fi_inject where the payload fits the provider's inject size).
 *   ofi-read  thr only, the rendezvous the ofi transport uses above its eager threshold: the
 *             sender announces (address, length, key) of a registered buffer in a small
 *             message, the receiver pulls the payload with fi_read into its own buffer and
 *             answers FIN, and only then does the sender reuse the buffer.
 *
 * The two processes exchange their endpoint names (fi_getname) and the sender's buffer
 * (address, key) through a small memfd the parent creates and both inherit ("memfd://FD"),
 * as the ring and futex baselines do.
 */
#ifndef FQB_BASELINE_OFI_H
#define FQB_BASELINE_OFI_H

#include "engine.h"

/* The url scheme of an ofi run ("memfd://FD": the set-up file inherited from the parent). */
#define FQB_OFI_SCHEME           "memfd"
/* The provider when --ofi-provider is not given. */
#define FQB_OFI_DEFAULT_PROVIDER "tcp;ofi_rxm"

/* Create the set-up file of one ofi run (memfd, close-on-exec, sized). fd, or -1 (errno set). */
int fqb_ofi_create(void);

/*
 * Run one side (a->role) on raw libfabric with provider a->ofi_provider; `read`: the fi_read
 * rendezvous (thr only). Writes report lines; the result line adds mr=N (memory registrations
 * at set-up) and mr_steady=N (registrations in the timed loop: 0). Returns an exit status.
 */
int fqb_ofi_role(const fqb_role_args *a, bool read);

#endif /* FQB_BASELINE_OFI_H */
