/*
 * hello: the smallest useful fabriq device plugin. It adds the option --hello-greeting and
 * logs every state change of the device it is loaded into, with the greeting:
 *
 *   fq-sink --id sink1 -P hello --hello-greeting hi ...
 *   ... [sink1/hello] hi: RUNNING
 *
 * Build: libfabriq-plugin-hello.so (`-P hello` finds it on the plugin search path), see
 * CMakeLists.txt beside this file. The plugin ABI is include/fabriq/plugin.h.
 */
#include <fabriq/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hello {
	const fq_plugin_api *api;
	int token;
	char greeting[128];
	char subsys[160];
} hello;

static const fq_device_option hello_options[] = {
    {"hello-greeting", 0, FQ_OPT_STRING, "hello", "what the hello plugin says at every state",
     false},
};

/* Called in the thread that changed the state: only log, never block or change state. */
static void on_state(fq_device *d, fq_state state, void *arg)
{
	hello *h = arg;

	fq_log(FQ_LOG_INFO, h->subsys, "%s: %s", h->greeting, fq_state_name(state));
}

static int hello_init(const fq_plugin_api *api, void **state)
{
	hello *h = calloc(1, sizeof(*h));
	int rc;

	if (h == NULL)
		return FQ_ENOMEM;
	h->api = api;
	/* Configuration is complete when init runs: the option has its final value. */
	if (api->get_property(api->device, "hello-greeting", h->greeting, sizeof(h->greeting)) != 0)
		strcpy(h->greeting, "hello");
	snprintf(h->subsys, sizeof(h->subsys), "%s/hello", fq_device_id(api->device));
	rc = api->subscribe_state(api->device, on_state, h);
	if (rc < 0) {
		free(h);
		return rc;
	}
	h->token = rc;
	fq_log(FQ_LOG_INFO, h->subsys, "%s: loaded into %s", h->greeting,
	       fq_device_id(api->device));
	*state = h;
	return 0;
}

static void hello_fini(void *state)
{
	hello *h = state;

	h->api->unsubscribe_state(h->api->device, h->token);
	fq_log(FQ_LOG_INFO, h->subsys, "%s: goodbye", h->greeting);
	free(h);
}

/* The one symbol the device looks for (FQ_PLUGIN_SYMBOL). */
__attribute__((visibility("default"))) const fq_plugin_desc fq_plugin_descriptor = {
    .size = sizeof(fq_plugin_desc),
    .abi_version = FQ_PLUGIN_ABI_VERSION,
    .name = "hello",
    .version = "1.0",
    .maintainer = "fabriq developers",
    .homepage = "https://example.invalid/fabriq",
    .options = hello_options,
    .noptions = sizeof(hello_options) / sizeof(hello_options[0]),
    .init = hello_init,
    .fini = hello_fini,
};
