/*
 * Configuration of libfabriq-device (internal): a property store, options tables, the command
 * line, FairMQ's JSON (fairMQOptions) and --channel-config.
 *
 * Error reports: functions that read user input print one line per problem to `err`, in the
 * form "PROGRAM: WHERE: WHAT" where WHERE is "--option", "FILE:LINE:COLUMN" or
 * "--channel-config 'TOKEN'", and return FQ_EINVAL (or FQ_ENOENT for a missing file or
 * device entry) after reporting every problem they found, not just the first.
 */
#ifndef FQC_CONFIG_H
#define FQC_CONFIG_H

#include <fabriq/device.h>

#include <stdio.h>

/* ---- Property store: text keys to text values, thread-safe ------------------------------- */

typedef struct fqc_props fqc_props;
typedef void (*fqc_prop_fn)(const char *key, const char *value, void *arg);

int fqc_props_new(fqc_props **out);
void fqc_props_free(fqc_props *p);
/* Copy the value of key into buf. FQ_ENOENT (unset), FQ_ERANGE (buf too small). */
int fqc_props_get(fqc_props *p, const char *key, char *buf, size_t len);
/* A malloc'ed copy of the value, or NULL when unset (or out of memory). */
char *fqc_props_dup(fqc_props *p, const char *key);
bool fqc_props_has(fqc_props *p, const char *key);
/* Set (create or replace); subscribers are called after the store is unlocked. */
int fqc_props_set(fqc_props *p, const char *key, const char *value);
int fqc_props_delete(fqc_props *p, const char *key);
/* i-th key in sorted (strcmp) order. FQ_ENOENT past the end, FQ_ERANGE (buf). */
int fqc_props_key_at(fqc_props *p, size_t i, char *buf, size_t len);
/* Delete every key starting with prefix, in one step. Returns how many went (>= 0). */
int fqc_props_delete_prefix(fqc_props *p, const char *prefix);
/*
 * A consistent snapshot of the keys starting with prefix (NULL: all) in sorted order, and
 * their values if `values` is non-NULL: malloc'ed arrays of malloc'ed strings (free with
 * fqc_strv_free; NULL when *n is 0). Errors: FQ_ENOMEM (nothing returned).
 */
int fqc_props_list(fqc_props *p, const char *prefix, char ***keys, char ***values, size_t *n);
/*
 * Subscribers are called for fqc_props_set only (not for deletes), in the setting thread,
 * oldest first. Returns a token >= 0, or FQ_ENOMEM.
 */
int fqc_props_subscribe(fqc_props *p, fqc_prop_fn fn, void *arg);
/*
 * After it returns, the callback is not running in any other thread and will not be called
 * again, so its argument may be freed (from inside its own callback it cannot wait for
 * itself: the callback must not touch its argument after unsubscribing).
 */
void fqc_props_unsubscribe(fqc_props *p, int token);

/* ---- Options tables ---------------------------------------------------------------------- */

typedef struct fqc_opts fqc_opts;

/* The device's standard options (--id, --transport, ...), listed in fqc_std_options. */
extern const fq_device_option fqc_std_options[];
extern const size_t fqc_std_options_count;

int fqc_opts_new(fqc_opts **out);
void fqc_opts_free(fqc_opts *o);
/* Add a table under a section title for --help ("device", "fq-sampler", "plugin control").
 * The table is not copied. FQ_EEXIST when a long or short name is taken (nothing added). */
int fqc_opts_add(fqc_opts *o, const char *section, const fq_device_option *table, size_t n);
const fq_device_option *fqc_opts_find(fqc_opts *o, const char *name);
/*
 * Check a value against an option's type: 0, or FQ_EINVAL with a reason in why ("not a
 * size", ...). Bools accept 1/0 true/false yes/no on/off; sizes K/M/G/T (powers of two)
 * and plain numbers; durations integers in ms (-1 = infinite).
 */
int fqc_value_check(const fq_device_option *opt, const char *text, char *why, size_t len);
/* Parse a checked value into a number (bool: 0/1). */
int fqc_value_int(fq_opt_type type, const char *text, int64_t *out);

/*
 * Phase 1 of the command line: the values of -P/--plugin (each may list several names
 * separated by commas) and -S/--plugin-search-path, in order, as malloc'ed arrays of
 * malloc'ed strings (free with fqc_strv_free). Does not judge anything else.
 */
int fqc_scan_plugins(int argc, char **argv, char ***plugins, size_t *nplugins, char ***paths,
                     size_t *npaths);
void fqc_strv_free(char **v, size_t n);
/*
 * The program name used in error reports ("PROGRAM: ..."): basename of argv0. fqc_parse_argv
 * sets it; the channel readers, which have no argv, use it. Process-wide, thread-safe.
 */
void fqc_set_program(const char *argv0);
/*
 * Phase 2: fill `props` with every option of `opts`: the default, else FQ_DEVICE_<NAME> from
 * the environment ('-' as '_', upper case), then the command line (--name VALUE,
 * --name=VALUE, -X VALUE, a bare --name for a bool; a multi option given several times is
 * joined with '\n'). Unknown options, missing values, bad values and stray arguments are
 * reported to err (program = argv[0]'s basename) and give FQ_EINVAL.
 */
int fqc_parse_argv(fqc_opts *opts, fqc_props *props, int argc, char **argv, FILE *err);
/* --help: usage line and every section's options with type, default and help. */
void fqc_opts_help(fqc_opts *opts, const char *program, FILE *out);
/* --print-options: one line "name:value:type:help" per option, FairMQ's machine format. */
void fqc_opts_print(fqc_opts *opts, fqc_props *props, FILE *out);

/* ---- Channels ---------------------------------------------------------------------------- */

/*
 * Channel properties live in the store as "chans.<name>.<sub>.<key>" with FairMQ's keys:
 * type, method, address, transport, sndBufSize, rcvBufSize, sndKernelSize, rcvKernelSize,
 * sndTimeoutMs, rcvTimeoutMs, linger, rateLogging, portRangeMin, portRangeMax, autoBind.
 * Every sub-channel gets every key (defaults filled in: transport "default", buffers 1000,
 * kernel sizes 0, timeouts -1, linger 500, rateLogging 1, ports 22000-23000, autoBind
 * "true"); type and method must be given, address may be missing (bind: auto-bind on the
 * port range; connect: the device waits for it to be set).
 * Channel names: [A-Za-z0-9_#-]+ ('[' and ']' are not allowed in names: "name[0]" is how a
 * sub-channel is written in logs).
 */
extern const char *const fqc_channel_keys[];
extern const size_t fqc_channel_keys_count;

/*
 * Read a FairMQ JSON file (--mq-config), take the device entry whose "id" equals `id` (or
 * whose "key" equals `key` when key is non-NULL and non-empty) and write its channels into
 * props. Schema: {"fairMQOptions": {"devices": [{"id"|"key", "channels": [{"name", channel
 * defaults (every channel key, plus "numSockets"), "sockets": [{channel keys}]}]}]}}. Unknown
 * keys, wrong value types (numbers may also be given as strings, as FairMQ writes them; bools
 * as true/false or "true"/"false") and bad values are reported with FILE:LINE:COLUMN of the
 * offending key or value. FQ_ENOENT: file missing, or no entry for the id/key.
 */
int fqc_channels_from_json(const char *path, const char *id, const char *key, fqc_props *props,
                           FILE *err);
/*
 * One --channel-config token: "name=data,type=push,method=bind,address=tcp://host:5555,..." or
 * "data:type=push,...". Each address= starts one more sub-channel; numSockets=N makes N.
 * The channel's sub-channels are replaced (a channel given on the command line overrides the
 * JSON file's). Errors reported with the token.
 */
int fqc_channels_from_subopt(const char *token, fqc_props *props, FILE *err);
/*
 * Check every channel in props: type is a socket type, method bind|connect, numbers in
 * range, autoBind a bool, port range sane, addresses (comma-separated, each optionally
 * prefixed with '@' bind, '+' or '>' connect) of a known scheme; every sub-channel of one
 * channel has the same transport. Keys that are missing but have a default (a channel made
 * with fq_device_set_property) get it, so that afterwards every sub-channel has every key.
 */
int fqc_channels_check(fqc_props *props, FILE *err);
/* Channel names in sorted order and their number of sub-channels (malloc'ed; free both). */
int fqc_channels_list(fqc_props *props, char ***names, size_t **subs, size_t *n);

#endif /* FQC_CONFIG_H */
