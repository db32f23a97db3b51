/*
 * fabriq device framework (libfabriq-device): a process with named channels, FairMQ's state
 * machine and configuration, per-channel on-data callbacks, rate logging and plugins.
 *
 * A device is made with fq_device_new(), given callbacks (fq_device_hooks, fq_device_on_data)
 * and custom options (fq_device_add_options), configured from the command line, FairMQ JSON
 * (--mq-config) and --channel-config (fq_device_configure), then driven through its states
 * by a control plugin until it exits (fq_device_run). fq_device_main() does all of that.
 *
 * Threads: fq_device_run() runs every user callback in the calling thread, one at a time
 * (callbacks of one device never run concurrently). State change requests, properties and
 * the state queries are thread-safe and may come from any thread (plugins run their own).
 */
#ifndef FABRIQ_DEVICE_H
#define FABRIQ_DEVICE_H

#include <fabriq/fabriq.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fq_device fq_device;

/* ---- States and transitions (FairMQ's, with the same names) ---------------------------- */

typedef enum fq_state {
	FQ_STATE_IDLE = 0,
	FQ_STATE_INITIALIZING_DEVICE,
	FQ_STATE_INITIALIZED,
	FQ_STATE_BINDING,
	FQ_STATE_BOUND,
	FQ_STATE_CONNECTING,
	FQ_STATE_DEVICE_READY,
	FQ_STATE_INITIALIZING_TASK,
	FQ_STATE_READY,
	FQ_STATE_RUNNING,
	FQ_STATE_RESETTING_TASK,
	FQ_STATE_RESETTING_DEVICE,
	FQ_STATE_EXITING,
	FQ_STATE_ERROR,
	FQ_STATE_COUNT
} fq_state;

typedef enum fq_transition {
	FQ_TRANSITION_AUTO = 0,
	FQ_TRANSITION_INIT_DEVICE,
	FQ_TRANSITION_COMPLETE_INIT,
	FQ_TRANSITION_BIND,
	FQ_TRANSITION_CONNECT,
	FQ_TRANSITION_INIT_TASK,
	FQ_TRANSITION_RUN,
	FQ_TRANSITION_STOP,
	FQ_TRANSITION_RESET_TASK,
	FQ_TRANSITION_RESET_DEVICE,
	FQ_TRANSITION_END,
	FQ_TRANSITION_ERROR_FOUND,
	FQ_TRANSITION_COUNT
} fq_transition;

/* "DEVICE READY", "INIT TASK", ... (NULL when out of range), and back (case-insensitive;
 * '_' and '-' read as ' '). Errors: FQ_EINVAL for an unknown name. */
FQ_API const char *fq_state_name(fq_state s);
FQ_API int fq_state_parse(const char *name, fq_state *out);
FQ_API const char *fq_transition_name(fq_transition t);
FQ_API int fq_transition_parse(const char *name, fq_transition *out);
/*
 * The state that transition t leads to from state s, or -1 when FairMQ's table has no such
 * edge (ERROR FOUND is allowed from every state but EXITING and ERROR). Pure function.
 */
FQ_API int fq_state_next(fq_state s, fq_transition t);

/* ---- Options ---------------------------------------------------------------------------- */

/*
 * One row of an options table: the command line (--name VALUE, --name=VALUE, -s VALUE for a
 * short name, a bare --name for a bool), the environment (FQ_DEVICE_<NAME>, '-' as '_'), the
 * JSON properties and --help are all driven by it. Values are text, checked against `type`.
 * `multi`: may be given several times; the property then holds the values joined by '\n'.
 */
typedef struct fq_device_option {
	const char *name;          /* "msg-size" */
	char short_name;           /* 'P', or 0 */
	fq_opt_type type;          /* FQ_OPT_BOOL, _INT, _SIZE (K/M/G/T), _DURATION (ms), _STRING */
	const char *default_value; /* text, or NULL for "unset" */
	const char *help;
	bool multi;
} fq_device_option;

/*
 * The standard device options, as fq_option_at(3) rows with component "device" (for fq-info
 * --options): fills *out for i < their number, else FQ_ENOENT. Thread-safe.
 */
FQ_API int fq_device_option_at(size_t i, fq_opt_info *out);

/* ---- Callbacks -------------------------------------------------------------------------- */

/*
 * Step callbacks, all optional, all run in fq_device_run's thread. A callback that returns a
 * negative fabriq error code sends the device to ERROR (the code is logged with its message).
 * `size` must be sizeof(fq_device_hooks) (so that fields can be added later).
 */
typedef struct fq_device_hooks {
	size_t size;
	void *arg;                               /* passed to every callback */
	int (*init)(fq_device *d, void *arg);    /* INITIALIZING DEVICE, channels not yet built */
	int (*bind)(fq_device *d, void *arg);    /* BINDING, after the bind channels are bound */
	int (*connect)(fq_device *d, void *arg); /* CONNECTING, after the connects */
	int (*init_task)(fq_device *d, void *arg);
	int (*pre_run)(fq_device *d, void *arg);
	/*
	 * RUNNING: if set, called once; it should return when fq_device_new_state_pending() is
	 * true (blocking calls on the device's sockets return FQ_EINTR then). Returning ends
	 * RUNNING (the device goes to READY by itself).
	 */
	int (*run)(fq_device *d, void *arg);
	/*
	 * RUNNING, if run is not set: called in a loop, at most --rate times per second when
	 * --rate > 0; returning false ends RUNNING.
	 */
	bool (*conditional_run)(fq_device *d, void *arg);
	int (*post_run)(fq_device *d, void *arg);
	int (*reset_task)(fq_device *d, void *arg);
	int (*reset)(fq_device *d, void *arg); /* RESETTING DEVICE, before the channels go */
} fq_device_hooks;

/*
 * On-data callbacks: in RUNNING (when neither run nor conditional_run is set) the device
 * receives on every channel that has one and calls it with the message (*msg, owned by the
 * callback: it may free it, send it on, or leave it, and a message left in *msg is freed
 * afterwards) and the sub-channel index. Returning false ends RUNNING.
 */
typedef bool (*fq_on_data_fn)(fq_device *d, fq_msg **msg, size_t sub, void *arg);
typedef bool (*fq_on_parts_fn)(fq_device *d, fq_parts **parts, size_t sub, void *arg);

/* ---- Life cycle ------------------------------------------------------------------------- */

/*
 * A new device in IDLE with the standard options (fq_device_option_at lists them).
 * `hooks` may be NULL; it is copied. Errors: FQ_EINVAL (hooks->size too large), FQ_ENOMEM.
 */
FQ_API int fq_device_new(fq_device **out, const fq_device_hooks *hooks);
/*
 * Add the device's own options (before fq_device_configure). The table must outlive the
 * device. Errors: FQ_EEXIST (a name is taken), FQ_EINVAL, FQ_ESTATE (already configured).
 */
FQ_API int fq_device_add_options(fq_device *d, const fq_device_option *table, size_t n);
/*
 * Register an on-data callback for `channel`, any time before RUNNING (callbacks are attached
 * when RUNNING starts; a callback for a channel that is not configured then sends the device
 * to ERROR). One per channel; parts and single messages are exclusive. Thread-safe.
 * Errors: FQ_EEXIST, FQ_EINVAL, FQ_ESTATE (RUNNING, EXITING or ERROR).
 */
FQ_API int fq_device_on_data(fq_device *d, const char *channel, fq_on_data_fn fn, void *arg);
FQ_API int fq_device_on_parts(fq_device *d, const char *channel, fq_on_parts_fn fn, void *arg);
/*
 * Read options: built-in defaults < environment < --mq-config JSON / --channel-config <
 * command line; load the plugins named by -P; check everything before anything is bound.
 * Returns 0 when the device should run, 1 when it has done its job already (--help,
 * --version, --print-options, --print-channels printed to stdout), or a negative error
 * (FQ_EINVAL for bad input) after printing one line per problem to stderr naming the option,
 * or the file with line and column. Call once.
 */
FQ_API int fq_device_configure(fq_device *d, int argc, char **argv);
/*
 * Run the device: start its plugins (the control plugin drives the states), handle
 * SIGINT/SIGTERM (first: orderly shutdown through the states; a second one, half a second or
 * more after the first: immediate exit with status 130), and return when the device reaches
 * EXITING (0) or ERROR (a negative code).
 * Blocks; call once, from one thread.
 */
FQ_API int fq_device_run(fq_device *d);
/* Free the device (after fq_device_run returned, or instead of it). NULL is ignored. */
FQ_API void fq_device_destroy(fq_device *d);
/*
 * new + add_options + configure + setup + run + destroy, for a main(): returns the process exit
 * status (0 on success or after --help, 1 on a configuration or set-up error, 2 after ERROR).
 * `setup` (may be NULL) is called after fq_device_configure, so it can read the options (a
 * channel name, say) and register on-data callbacks.
 */
FQ_API int fq_device_main(int argc, char **argv, const fq_device_hooks *hooks,
                          const fq_device_option *options, size_t noptions,
                          int (*setup)(fq_device *d, void *arg), void *setup_arg);

/* ---- States ----------------------------------------------------------------------------- */

/* Current state. Thread-safe. */
FQ_API fq_state fq_device_state(fq_device *d);
/*
 * Request a transition. Accepted when it is legal from the current state (from the state a
 * working state is about to reach, for BINDING, CONNECTING, ...) and no other request is
 * pending (ERROR FOUND is always accepted). Blocking calls on the device's sockets return
 * FQ_EINTR until the next state starts. Does not wait. Thread-safe.
 * Errors: FQ_ESTATE (illegal now, or another request pending), FQ_EINVAL.
 */
FQ_API int fq_device_change_state(fq_device *d, fq_transition t);
/* True while a transition request waits to be carried out (cooperative handlers check it). */
FQ_API bool fq_device_new_state_pending(fq_device *d);
/*
 * Wait until the device is in state s (0), or timeout_ms passes (FQ_ETIMEDOUT; -1 = forever),
 * or it reached ERROR or EXITING instead (FQ_ESTATE). Thread-safe; not from a state callback.
 */
FQ_API int fq_device_wait_state(fq_device *d, fq_state s, int timeout_ms);
/*
 * Sleep up to ms milliseconds, or less when a transition is requested (then FQ_EINTR).
 * For run/conditional_run callbacks.
 */
FQ_API int fq_device_wait_for(fq_device *d, int ms);
/*
 * Call fn(d, new_state, arg) after every state change, in the thread that made it (do not
 * block in it, do not request transitions from it). Returns a token >= 0 for unsubscribe.
 * Once fq_device_unsubscribe_state returns (in a thread other than fq_device_run's), fn is
 * not running and will not be called again, so arg may be freed. Thread-safe.
 * Errors: FQ_ENOMEM.
 */
typedef void (*fq_state_fn)(fq_device *d, fq_state state, void *arg);
FQ_API int fq_device_subscribe_state(fq_device *d, fq_state_fn fn, void *arg);
FQ_API void fq_device_unsubscribe_state(fq_device *d, int token);

/* ---- Channels --------------------------------------------------------------------------- */

/* Number of sub-channels (sockets) of a channel; 0 if there is no such channel. */
FQ_API size_t fq_device_subchannels(fq_device *d, const char *channel);
/*
 * The socket of sub-channel `sub` (from INITIALIZED on, until RESETTING DEVICE frees it;
 * NULL before, or if absent). Owned by the device; sending and receiving on it directly
 * bypasses the rate counters.
 */
FQ_API fq_socket *fq_device_socket(fq_device *d, const char *channel, size_t sub);
/* The transport instance of a channel (shared by its sub-channels), for fq_msg_alloc. */
FQ_API fq_transport *fq_device_transport(fq_device *d, const char *channel);
/* fq_msg_alloc on the channel's transport. Errors: FQ_ENOENT (no channel), fq_msg_alloc's. */
FQ_API int fq_device_msg_alloc(fq_device *d, const char *channel, size_t size, fq_msg **out);
/*
 * Send or receive on a sub-channel with a timeout (-1: block, 0: do not wait, > 0 ms),
 * counted for rate logging. Ownership as fq_send/fq_recv: a successful send sets *msg to
 * NULL; a message of another transport is copied once. Returns the bytes moved (>= 0) or
 * FQ_EAGAIN (timeout 0), FQ_ETIMEDOUT, FQ_EINTR (a transition is pending), FQ_ENOENT (no such
 * channel or sub-channel), or the socket's errors.
 * Threads: any thread may call these while the channels exist, from INITIALIZED until
 * RESETTING DEVICE (the device's own callbacks always may). A thread of the user's that
 * sends or receives must stop before RESET DEVICE (subscribe to the state, or stop it in
 * reset_task): the channels, and their sockets, are freed there.
 */
FQ_API int64_t fq_device_send(fq_device *d, const char *channel, size_t sub, fq_msg **msg,
                              int timeout_ms);
FQ_API int64_t fq_device_sendv(fq_device *d, const char *channel, size_t sub, fq_msg **parts,
                               size_t n, int timeout_ms);
FQ_API int64_t fq_device_recv(fq_device *d, const char *channel, size_t sub, fq_msg **out,
                              int timeout_ms);
FQ_API int64_t fq_device_recvv(fq_device *d, const char *channel, size_t sub, fq_parts **out,
                               int timeout_ms);
/* Messages and bytes moved through fq_device_send/recv and the on-data dispatch so far. */
typedef struct fq_channel_stats {
	uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
} fq_channel_stats;
FQ_API int fq_device_channel_stats(fq_device *d, const char *channel, size_t sub,
                                   fq_channel_stats *out);

/* ---- Properties ------------------------------------------------------------------------- */

/*
 * Every option (by its name: "id", "transport", "msg-size", ...) and every channel property
 * ("chans.<channel>.<sub>.<key>", FairMQ's keys: type, method, address, transport,
 * sndBufSize, rcvBufSize, sndKernelSize, rcvKernelSize, sndTimeoutMs, rcvTimeoutMs, linger,
 * rateLogging, portRangeMin, portRangeMax, autoBind) is a property with a text value. The
 * addresses actually bound are written back to "chans.<channel>.<sub>.address".
 */
/* Copy the value into buf (NUL-terminated). Errors: FQ_ENOENT (unset), FQ_ERANGE (buf). */
FQ_API int fq_device_get_property(fq_device *d, const char *key, char *buf, size_t len);
/* Typed readers for options; FQ_ENOENT when unset, FQ_EINVAL when not a number/bool. */
FQ_API int fq_device_get_int(fq_device *d, const char *key, int64_t *out);
FQ_API int fq_device_get_bool(fq_device *d, const char *key, bool *out);
/*
 * Set a property; a known option's value is checked against its type (FQ_EINVAL). Subscribers
 * are called in this thread after the change. Thread-safe.
 */
FQ_API int fq_device_set_property(fq_device *d, const char *key, const char *value);
/* Walk the property keys in sorted order: the i-th key into buf; FQ_ENOENT past the end. */
FQ_API int fq_device_property_key_at(fq_device *d, size_t i, char *buf, size_t len);
typedef void (*fq_property_fn)(fq_device *d, const char *key, const char *value, void *arg);
/* Returns a token >= 0. The callback must not set properties of the same device. */
FQ_API int fq_device_subscribe_property(fq_device *d, fq_property_fn fn, void *arg);
FQ_API void fq_device_unsubscribe_property(fq_device *d, int token);

/* The device's --id. */
FQ_API const char *fq_device_id(fq_device *d);

#ifdef __cplusplus
}
#endif

#endif /* FABRIQ_DEVICE_H */
