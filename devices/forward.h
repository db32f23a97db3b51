/*
 * The forwarding devices (fq-processor, fq-splitter, fq-merger, fq-multiplier, fq-proxy) are
 * one engine with a routing rule each: receive on the input channel(s) through on-data
 * callbacks, optionally transform, send on the output channel(s). Each program is a main()
 * that calls fqdev_forward_main with its kind and its options table.
 */
#ifndef FQ_DEVICES_FORWARD_H
#define FQ_DEVICES_FORWARD_H

#include "common.h"

typedef enum fqdev_kind {
	FQDEV_PROCESSOR,  /* in -> transform -> out[0], sub-channel 0 */
	FQDEV_SPLITTER,   /* in -> out sub-channels in turn (round robin) */
	FQDEV_MERGER,     /* every sub-channel of every in channel -> out */
	FQDEV_MULTIPLIER, /* in -> a copy to every out channel (sub-channel 0 of each) */
	FQDEV_PROXY,      /* in -> out, any socket types */
} fqdev_kind;

/*
 * Run the device (fq_device_main): returns the process exit status. The table must hold
 * "in-channel", "out-channel", "multipart" and FQDEV_COMMON_OPTIONS; FQDEV_PROCESSOR also
 * "transform".
 */
int fqdev_forward_main(int argc, char **argv, fqdev_kind kind, const fq_device_option *options,
                       size_t noptions);

#endif /* FQ_DEVICES_FORWARD_H */
