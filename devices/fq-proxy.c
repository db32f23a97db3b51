/*
 * fq-proxy: sends everything from --in-channel on --out-channel, whatever their socket types
 * (PULL -> PUB, SUB -> PUSH, PAIR -> PAIR ...); FairMQ's fairmq-proxy.
 * See docs/man/fq-devices.1.md.
 */
#include "forward.h"

static const fq_device_option options[] = {
    {"in-channel", 0, FQ_OPT_STRING, "data-in", "name of the input channel", false},
    {"out-channel", 0, FQ_OPT_STRING, "data-out", "name of the output channel", false},
    {"multipart", 0, FQ_OPT_BOOL, "true", "receive and send vectors of parts", false},
    FQDEV_COMMON_OPTIONS,
};

int main(int argc, char **argv)
{
	return fqdev_forward_main(argc, argv, FQDEV_PROXY, options,
	                          sizeof(options) / sizeof(options[0]));
}
