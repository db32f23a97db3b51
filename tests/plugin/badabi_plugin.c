/* A plugin built for another ABI version: refused before any of its code runs. */
#include <fabriq/plugin.h>

#include <stdlib.h>

static int init(const fq_plugin_api *api, void **out)
{
	(void)api;
	(void)out;
	abort(); /* must never be called */
}

FQ_PLUGIN_EXPORT const fq_plugin_desc fq_plugin_descriptor = {
    sizeof(fq_plugin_desc),
    FQ_PLUGIN_ABI_VERSION + 1,
    "testbadabi",
    "9.0",
    "fabriq tests",
    "",
    NULL,
    0,
    init,
    NULL,
};
