/*
 * fq-multiplier: sends every message of --in-channel to every --out-channel (shared,
 * reference-counted copies: fq_msg_copy); FairMQ's fairmq-multiplier.
 * See docs/man/fq-devices.1.md.
 */
#include "forward.h"

static const fq_device_option options[] = {
    {"in-channel", 0, FQ_OPT_STRING, "data-in", "name of the input channel", false},
    {"out-channel", 0, FQ_OPT_STRING, "data-out",
     "output channels: repeat the option or separate names with commas", true},
    {"multipart", 0, FQ_OPT_BOOL, "true", "receive and send vectors of parts", false},
    FQDEV_COMMON_OPTIONS,
};

int main(int argc, char **argv)
{
	return fqdev_forward_main(argc, argv, FQDEV_MULTIPLIER, options,
	                          sizeof(options) / sizeof(options[0]));
}
