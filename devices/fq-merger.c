/*
 * fq-merger: sends everything that arrives on any sub-channel of the --in-channel channels on
 * one --out-channel; FairMQ's fairmq-merger. See docs/man/fq-devices.1.md.
 */
#include "forward.h"

static const fq_device_option options[] = {
    {"in-channel", 0, FQ_OPT_STRING, "data-in",
     "input channel(s): repeat the option or separate names with commas", true},
    {"out-channel", 0, FQ_OPT_STRING, "data-out", "name of the output channel", false},
    {"multipart", 0, FQ_OPT_BOOL, "true", "receive and send vectors of parts", false},
    FQDEV_COMMON_OPTIONS,
};

int main(int argc, char **argv)
{
	return fqdev_forward_main(argc, argv, FQDEV_MERGER, options,
	                          sizeof(options) / sizeof(options[0]));
}
