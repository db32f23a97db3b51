/*
 * The device's insides, shared by device.c (life cycle, state machine, properties),
 * channels.c (transports, sockets, send/receive, rate logging) and control.c (plugins, the
 * built-in control plugins, signals). Internal to libfabriq-device.
 */
#ifndef FQD_DEVICE_IMPL_H
#define FQD_DEVICE_IMPL_H

#include "config/config.h"

#include <fabriq/device.h>
#include <fabriq/plugin.h>

#include <pthread.h>
#include <stdatomic.h>

#define FQD_SUBSYS "device"

/* One sub-channel: a socket and its counters. */
enum { FQD_MSGS_IN, FQD_BYTES_IN, FQD_MSGS_OUT, FQD_BYTES_OUT };

typedef struct fqd_sub {
	fq_socket *sock;
	char label[96]; /* "data[0]" */
	/*
	 * Counters, FQD_MSGS_IN ... FQD_BYTES_OUT: `own` is written by the device's loop thread
	 * alone (plain load and store, no locked instruction per message), `shared` by any other
	 * thread (atomic add). The figures are their sums.
	 */
	_Atomic uint64_t own[4];
	_Atomic uint64_t shared[4];
	uint64_t logged[4]; /* the counters at the last rate log line */
	int64_t last_log_ms;
} fqd_sub;

typedef struct fqd_chan {
	char *name;
	size_t nsub;
	fqd_sub *subs;
	fq_transport *t;  /* owned by the device's transport list */
	int rate_logging; /* seconds, 0 = off */
	fq_on_data_fn on_data;
	fq_on_parts_fn on_parts;
	void *arg;
} fqd_chan;

typedef struct fqd_handler {
	char *channel;
	fq_on_data_fn on_data;
	fq_on_parts_fn on_parts;
	void *arg;
} fqd_handler;

typedef struct fqd_sub_entry {
	int token;
	fq_state_fn fn;
	void *arg;
} fqd_sub_entry;

typedef struct fqd_plugin {
	char *name;
	char *path;
	void *dl; /* NULL for a built-in plugin */
	const fq_plugin_desc *desc;
	void *state;
	bool started;
} fqd_plugin;

struct fq_device {
	fq_device_hooks hooks;
	fqc_opts *opts;
	fqc_props *props;
	bool configured;
	char *id;
	char *program;

	/* State machine: lock protects state, pending, controller, subscribers. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	fq_state state;
	uint64_t gen;          /* state changes so far */
	_Atomic int pending;   /* fq_transition, or -1; written under lock, read anywhere */
	pthread_t loop_thread; /* fq_device_run's */
	char *controller;
	fqd_sub_entry *state_subs;
	size_t nstate_subs;
	int notifying; /* enter_state calls are running state subscribers (lock) */
	int next_token;
	_Atomic bool shutting_down;
	int error_code; /* the code that sent the device to ERROR */

	/* Channels and transports: built at COMPLETE INIT, gone at RESET DEVICE. */
	pthread_mutex_t chan_lock; /* the socket list, for interrupting from other threads */
	fqd_chan *chans;
	size_t nchans;
	struct {
		char *name;
		fq_transport *t;
	} tr[16];
	size_t ntr;
	fqd_handler *handlers;
	size_t nhandlers;

	/* Rate logging during RUNNING. */
	pthread_t rate_thread;
	bool rate_running;
	bool rate_stop;
	pthread_cond_t rate_cond;

	/* Plugins (control first). */
	fqd_plugin *plugins;
	size_t nplugins;
	fq_plugin_api api;
	char **search_paths;
	size_t nsearch_paths;

	/* Property subscribers are kept by the store; the device maps tokens. */
	struct {
		int token;
		int store_token;
		fq_property_fn fn;
		void *arg;
	} * prop_subs;
	size_t nprop_subs;
};

/* device.c */
void fqd_set_error(fq_device *d, int code, const char *what);

/* channels.c */
int fqd_channels_build(fq_device *d);   /* COMPLETE INIT: transports, sockets, options */
int fqd_channels_bind(fq_device *d);    /* BINDING */
int fqd_channels_connect(fq_device *d); /* CONNECTING: waits for missing addresses */
void fqd_channels_free(fq_device *d);   /* RESET DEVICE, ERROR, destroy */
void fqd_channels_interrupt(fq_device *d, bool on);
int fqd_dispatch(fq_device *d); /* RUNNING with on-data callbacks */
void fqd_rate_start(fq_device *d);
void fqd_rate_stop(fq_device *d);
int fqd_print_channels(fq_device *d, FILE *out);

/* control.c */
int fqd_plugins_load(fq_device *d, int argc, char **argv, FILE *err);
int fqd_plugins_start(fq_device *d);
void fqd_plugins_stop(fq_device *d);
void fqd_plugins_free(fq_device *d);
int fqd_signals_start(fq_device *d);
void fqd_signals_stop(fq_device *d);
/* Walk the device down to EXITING from wherever it is (used by control plugins, signals). */
void fqd_shutdown_sequence(fq_device *d, const char *who);

#endif /* FQD_DEVICE_IMPL_H */
