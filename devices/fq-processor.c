/*
 * fq-processor: receives on --in-channel, optionally reads (touch) or rewrites (xor) every
 * byte, and sends the same message on --out-channel: zero-copy where both channels share a
 * transport. A template for user processing devices. See docs/man/fq-devices.1.md.
 */
#include "forward.h"

static const fq_device_option options[] = {
    {"in-channel", 0, FQ_OPT_STRING, "data-in", "name of the input channel", false},
    {"out-channel", 0, FQ_OPT_STRING, "data-out", "name of the output channel", false},
    {"multipart", 0, FQ_OPT_BOOL, "false", "receive and send vectors of parts", false},
    {"transform", 0, FQ_OPT_STRING, "none",
     "none | touch (read every byte) | xor (rewrite every byte in place, ^ 0xff)", false},
    FQDEV_COMMON_OPTIONS,
};

int main(int argc, char **argv)
{
	return fqdev_forward_main(argc, argv, FQDEV_PROCESSOR, options,
	                          sizeof(options) / sizeof(options[0]));
}
