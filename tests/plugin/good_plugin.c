/* A test plugin: adds an option, logs every state into the file it names, and checks that
 * it cannot drive the device while the control plugin holds it. */
#include <fabriq/plugin.h>

#include <stdio.h>
#include <stdlib.h>

static const fq_device_option options[] = {
    {"test-plugin-log", 0, FQ_OPT_STRING, NULL, "file to write state names into", false},
};

typedef struct state {
	const fq_plugin_api *api;
	FILE *log;
	int token;
} state;

static void on_state(fq_device *d, fq_state s, void *arg)
{
	state *st = arg;

	(void)d;
	fprintf(st->log, "%s\n", fq_state_name(s));
	fflush(st->log);
}

static int init(const fq_plugin_api *api, void **out)
{
	char path[512];
	state *st;

	if (api->size < sizeof(fq_plugin_api) || api->abi_version != FQ_PLUGIN_ABI_VERSION)
		return FQ_EINVAL;
	if (api->get_property(api->device, "test-plugin-log", path, sizeof(path)) != 0)
		return 0; /* nothing asked of us */
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return FQ_ENOMEM;
	st->api = api;
	st->log = fopen(path, "w");
	if (st->log == NULL) {
		free(st);
		return FQ_EINVAL;
	}
	/* The control plugin took control first. */
	fprintf(st->log, "take_control=%d\n", api->take_control(api->device, "test"));
	fprintf(st->log, "change_state=%d\n",
	        api->change_state(api->device, "test", FQ_TRANSITION_INIT_DEVICE));
	st->token = api->subscribe_state(api->device, on_state, st);
	*out = st;
	return 0;
}

static void fini(void *arg)
{
	state *st = arg;

	if (st == NULL)
		return;
	st->api->unsubscribe_state(st->api->device, st->token);
	fprintf(st->log, "fini\n");
	fclose(st->log);
	free(st);
}

FQ_PLUGIN_EXPORT const fq_plugin_desc fq_plugin_descriptor = {
    sizeof(fq_plugin_desc),
    FQ_PLUGIN_ABI_VERSION,
    "testgood",
    "1.0",
    "fabriq tests",
    "",
    options,
    1,
    init,
    fini,
};
