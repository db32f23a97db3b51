/*
 * fabriq device plugins: shared objects loaded with -P NAME (file libfabriq-plugin-NAME.so,
 * looked up in the --plugin-search-path folders, then the installed plugin folder, then by
 * the dynamic loader), or a path to a .so.
 *
 * ABI: the plugin exports one symbol, `fq_plugin_descriptor` (an fq_plugin_desc). Both
 * structs below start with their own size and the ABI version, so either side can be newer:
 * a member is only used when the other side's size covers it. A plugin whose abi_version
 * differs from FQ_PLUGIN_ABI_VERSION is refused with a clear error, before any of its code
 * runs.
 *
 * Life cycle: the device loads the plugins while it reads its command line (their options are
 * then part of the device's), calls init() once configuration is complete (before IDLE is
 * left), and fini() after the device has reached EXITING or ERROR. Plugins that want to act
 * on their own start a thread in init() and end it in fini(). Load order = notification order.
 */
#ifndef FABRIQ_PLUGIN_H
#define FABRIQ_PLUGIN_H

#include <fabriq/device.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FQ_PLUGIN_ABI_VERSION 1u

/* What the device offers to a plugin. Every function is thread-safe. */
typedef struct fq_plugin_api {
	size_t size; /* sizeof(fq_plugin_api) of the device */
	uint32_t abi_version;
	fq_device *device;
	/*
	 * Device control: one plugin at a time may request transitions. take_control fails with
	 * FQ_ESTATE while another plugin holds it; steal_control takes it anyway (signal handling
	 * does that for an orderly shutdown); release_control gives it back. change_state also
	 * fails with FQ_EPERM for a plugin that does not hold control.
	 */
	int (*take_control)(fq_device *d, const char *plugin);
	void (*steal_control)(fq_device *d, const char *plugin);
	void (*release_control)(fq_device *d, const char *plugin);
	int (*change_state)(fq_device *d, const char *plugin, fq_transition t);
	fq_state (*get_state)(fq_device *d);
	int (*wait_state)(fq_device *d, fq_state s, int timeout_ms);
	int (*subscribe_state)(fq_device *d, fq_state_fn fn, void *arg);
	void (*unsubscribe_state)(fq_device *d, int token);
	/* Properties: as fq_device_get_property and friends. */
	int (*get_property)(fq_device *d, const char *key, char *buf, size_t len);
	int (*set_property)(fq_device *d, const char *key, const char *value);
	int (*property_key_at)(fq_device *d, size_t i, char *buf, size_t len);
	int (*subscribe_property)(fq_device *d, fq_property_fn fn, void *arg);
	void (*unsubscribe_property)(fq_device *d, int token);
	/* True after the first SIGINT/SIGTERM: the device is shutting down. */
	bool (*shutting_down)(fq_device *d);
} fq_plugin_api;

/* What a plugin exports as `fq_plugin_descriptor`. */
typedef struct fq_plugin_desc {
	size_t size;          /* sizeof(fq_plugin_desc) of the plugin */
	uint32_t abi_version; /* FQ_PLUGIN_ABI_VERSION */
	const char *name;
	const char *version;
	const char *maintainer;
	const char *homepage;
	const fq_device_option *options; /* added to the device's options; may be NULL */
	size_t noptions;
	/*
	 * Start: *state is the plugin's own pointer, passed to fini. A negative fabriq error
	 * stops the device before it leaves IDLE.
	 */
	int (*init)(const fq_plugin_api *api, void **state);
	/* Stop: join threads, free state. The device is in EXITING or ERROR. */
	void (*fini)(void *state);
} fq_plugin_desc;

#define FQ_PLUGIN_SYMBOL "fq_plugin_descriptor"

/* Put before the descriptor's definition: exported even from a -fvisibility=hidden build. */
#define FQ_PLUGIN_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
}
#endif

#endif /* FABRIQ_PLUGIN_H */
