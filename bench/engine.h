/*
 * The benchmark engine behind fq-bench: clocks, CPU time, latency statistics, result rows and
 * their table and JSON output, the report lines a benchmark process writes for its parent,
 * and the child processes the parent runs and bounds.
 *
 * Nothing here runs per message: the roles read clocks outside their loops (thr) or once per
 * round trip into a sample array sized before the loop (lat).
 */
#ifndef FQB_ENGINE_H
#define FQB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#define FQB_EXIT_OK      0
#define FQB_EXIT_FAILURE 1
#define FQB_EXIT_USAGE   2

#define FQB_URL_MAX   512
#define FQB_NAME_MAX  32
#define FQB_MAX_PARTS 1024

/* ---- Clocks ----------------------------------------------------------------------------- */

/* Monotonic clock in nanoseconds. */
uint64_t fqb_now_ns(void);
/* CPU seconds (user + system) used so far by every thread of this process. */
double fqb_cpu_seconds(void);

/* ---- Parsing ---------------------------------------------------------------------------- */

/* "64", "4K", "1M", "2G" (powers of two; "KiB"/"KB" read the same). Returns 0, or -1. */
int fqb_parse_size(const char *text, size_t *out);
/* A comma-separated list of sizes; at most `max` of them. Returns how many, -1 on error. */
int fqb_parse_size_list(const char *text, size_t *out, int max);
/* Seconds as a decimal number ("0.5"), > 0. */
int fqb_parse_seconds(const char *text, double *out);

/* ---- What a run measures ---------------------------------------------------------------- */

typedef enum fqb_pattern {
	FQB_THR, /* PUSH -> PULL stream */
	FQB_LAT, /* PAIR ping-pong */
} fqb_pattern;

typedef enum fqb_role {
	FQB_ROLE_NONE,
	FQB_ROLE_SENDER,   /* thr: sends, connects by default */
	FQB_ROLE_RECEIVER, /* thr: receives and measures, binds by default */
	FQB_ROLE_PINGER,   /* lat: sends, waits for the echo, measures; connects by default */
	FQB_ROLE_PONGER,   /* lat: echoes; binds by default */
} fqb_role;

const char *fqb_pattern_name(fqb_pattern p);
const char *fqb_role_name(fqb_role r);
int fqb_role_parse(const char *text, fqb_role *out);

/* Everything one side of a run needs; the same for the fabriq and the raw library roles. */
typedef struct fqb_role_args {
	fqb_role role;
	const char *transport;         /* fabriq transport name */
	const char *transport_options; /* "key=value,..." or NULL */
	const char *url;
	bool bind;
	size_t size;     /* bytes per part */
	size_t parts;    /* parts per message (1: a single message) */
	uint64_t count;  /* messages (thr) or round trips (lat); 0: use duration */
	double duration; /* seconds, when count == 0 */
	int hwm;         /* -1: the library's default */
	int timeout_ms;  /* send/receive timeout and linger */
	bool hold;       /* after the end marker, wait for stdin to close (fqb_hold_wait) */
	bool adopt;      /* thr sender: wrap one preallocated buffer instead of allocating */
	bool fill;       /* --memset: the sender (pinger) writes every byte of every message */
	const char *ofi_provider; /* the ofi baselines' libfabric provider, NULL: the default */
	long ofi_spin_us;         /* the ofi baselines: busy-poll this long before sleeping */
} fqb_role_args;

/*
 * The end of a stream is one single-part message whose size differs from the payload size:
 * empty, or one byte when the payload itself is empty. A receiver tells it apart by its part
 * count or its size, without reading a clock per message.
 */
static inline size_t fqb_marker_size(size_t size)
{
	return size == 0 ? 1 : 0;
}

/*
 * The end of a sender's run. A count-bound run (count > 0) never reads the clock (it still
 * stops at `next` every count/4 messages, at most 1024, for the caller's mid-run probes); a
 * duration-bound one reads it every `step` messages, with step doubled while two reads come
 * less than 0.25 ms apart and cut to fit 2 ms when they come further apart. So the clock
 * costs a compare per message whatever a message costs (a zero-copy 16 MiB message takes as
 * long as a 64 B one), and a run ends at most one step late: a few ms while the cost of a
 * message stays the same, more if messages suddenly get much slower.
 */
typedef struct fqb_deadline {
	uint64_t next; /* message index of the next look (the caller compares with it) */
	uint64_t step, end_ns, last_ns;
	bool counted;
} fqb_deadline;

void fqb_deadline_start(fqb_deadline *d, const fqb_role_args *a);

/* The slow half of fqb_deadline_passed: true once the duration is over. */
bool fqb_deadline_check(fqb_deadline *d, uint64_t i);

/* Call before message i: true when the run is over (then send no more). */
static inline bool fqb_deadline_passed(fqb_deadline *d, uint64_t i)
{
	return i >= d->next && fqb_deadline_check(d, i);
}

/*
 * What a sender writes into the payload of message `i` before sending it: its first and last
 * byte, or, with --memset (`fill`), every byte, with a value that changes from one message to
 * the next.
 */
static inline void fqb_touch(char *p, size_t size, uint64_t i, bool fill)
{
	if (size == 0)
		return;
	if (fill) {
		memset(p, (int)(unsigned char)(i + 1), size);
	} else {
		p[0] = (char)i;
		p[size - 1] = (char)i;
	}
}

/* ---- Latency samples -------------------------------------------------------------------- */

typedef struct fqb_samples {
	uint64_t *ns; /* round-trip times */
	size_t n, cap;
} fqb_samples;

/*
 * Room for the samples of a run of `count` round trips, or of `duration` seconds when count is
 * 0 (at most 16M up front; more grow by doubling), written once so that no page fault lands
 * inside the timed loop. 0 or -1 (out of memory).
 */
int fqb_samples_init(fqb_samples *s, uint64_t count, double duration);
/* Double the room (called by fqb_samples_add when full). 0 or -1 (out of memory). */
int fqb_samples_grow(fqb_samples *s);
/* Append; grows (rarely: by doubling) when full. 0 or -1 (out of memory). */
static inline int fqb_samples_add(fqb_samples *s, uint64_t ns)
{
	if (s->n == s->cap && fqb_samples_grow(s) != 0)
		return -1;
	s->ns[s->n++] = ns;
	return 0;
}
void fqb_samples_free(fqb_samples *s);

typedef struct fqb_lat_stats {
	double p50_us, p99_us, mean_us, max_us; /* one-way: round trip / 2 */
} fqb_lat_stats;

/* Sort the samples and compute one-way statistics (nearest-rank percentiles). */
void fqb_lat_stats_compute(fqb_samples *s, fqb_lat_stats *out);

/* One implementation's role functions; a NULL one is a usage error (`why` says so). */
typedef struct fqb_role_fns {
	int (*sender)(const fqb_role_args *a);
	int (*receiver)(const fqb_role_args *a);
	int (*pinger)(const fqb_role_args *a);
	int (*ponger)(const fqb_role_args *a);
	const char *why; /* message for a role the implementation lacks */
} fqb_role_fns;
int fqb_role_run(const fqb_role_fns *fns, const fqb_role_args *a);
/* The fd of a "SCHEME://FD" url (memfd-based baselines), or -1. */
int fqb_parse_fd_url(const char *url, const char *scheme);

/* ---- Report lines (child -> parent, on the child's stdout) ------------------------------ */

/*
 * A benchmark process writes one line per event to stdout and flushes it:
 *   url <resolved-url>                      after a successful bind
 *   result role=<r> key=value ...           at the end
 *   error <text>                            before exiting with status 1
 */
void fqb_report_url(const char *url);
void fqb_report_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * The end of one round trip of a pinger's timed loop: record its time since *prev_ns, count
 * it in *n and move *prev_ns on. Returns 1 when end_ns has passed (stop), 0 to go on, or -1
 * (out of memory, reported).
 */
static inline int fqb_lap(fqb_samples *s, uint64_t *prev_ns, uint64_t *n, uint64_t end_ns)
{
	uint64_t now = fqb_now_ns();

	if (fqb_samples_add(s, now - *prev_ns) != 0) {
		fqb_report_error("out of memory for latency samples");
		return -1;
	}
	*prev_ns = now;
	(*n)++;
	return now >= end_ns ? 1 : 0;
}
/* Receiver: messages, seconds from the first message to the end marker, CPU seconds. */
/*
 * Add memory registrations to the next result line: made before the second half of the run
 * (setup, warm-up) and during it (steady: 0 is the aim). Roles whose transport counts them.
 */
void fqb_report_mr(uint64_t setup, uint64_t steady);
void fqb_report_receiver(uint64_t count, double seconds, double cpu);
/*
 * The end of a receiver's loop: got 0 (the end marker came) reports n messages between
 * t_first and t_end (ns) and CPU since cpu0, and returns FQB_EXIT_OK; anything else says on
 * stderr after how many messages the receiver stopped and returns FQB_EXIT_FAILURE.
 */
int fqb_receiver_end(int got, uint64_t n, uint64_t t_first, uint64_t t_end, double cpu0);
/* Sender and ponger: CPU seconds (and messages sent). */
void fqb_report_sender(fqb_role role, uint64_t count, double cpu);
/* A run of one process (the memset reference): iterations, seconds, CPU seconds. */
void fqb_report_solo(uint64_t count, double seconds, double cpu);
/* Pinger: round trips, seconds, one-way statistics, CPU seconds. */
void fqb_report_pinger(uint64_t count, double seconds, const fqb_lat_stats *st, double cpu);
/* Pinger's closing report from its samples: round trips, first to last timestamp (ns), CPU
 * seconds since cpu0. */
void fqb_report_pinger_samples(fqb_samples *s, uint64_t count, uint64_t t0_ns, uint64_t last_ns,
                               double cpu0);
/* Value of key=... in a report line; 0 if found, -1 if not. */
int fqb_report_get(const char *line, const char *key, double *out);

/* ---- Results ---------------------------------------------------------------------------- */

#define FQB_NA (-1.0) /* a field that does not apply to the pattern */

typedef struct fqb_result {
	char impl[FQB_NAME_MAX]; /* "fabriq", "zmq", "nanomsg", "ring", "iceoryx", "futex",
	                            "memset", "ofi", "ofi-read" */
	char transport[FQB_NAME_MAX];
	char url_scheme[FQB_NAME_MAX];
	fqb_pattern pattern;
	size_t size, parts;
	uint64_t count; /* messages (thr) or round trips (lat) */
	double seconds;
	double msgs_per_s;  /* thr: messages/s; lat: round trips/s */
	double bytes_per_s; /* payload bytes/s (thr), FQB_NA for lat */
	double lat_p50_us, lat_p99_us, lat_mean_us, lat_max_us; /* FQB_NA for thr */
	double cpu_s_sender, cpu_s_receiver; /* sender/pinger and receiver/ponger (FQB_NA: none) */
	double ratio;          /* fabriq / raw libzmq for the pattern's main figure, or FQB_NA */
	double ratio_ring;     /* fabriq / raw shared-memory ring, or FQB_NA */
	double ratio_iox;      /* fabriq / iceoryx, or FQB_NA */
	double ratio_futex;    /* fabriq / futex ping-pong (lat), or FQB_NA */
	double ratio_memset;   /* thr, --memset: this row's bytes/s / the memset row's, or FQB_NA */
	double ratio_ofi;      /* fabriq / raw libfabric send/recv, or FQB_NA */
	double ratio_ofi_read; /* thr: fabriq / raw libfabric fi_read rendezvous, or FQB_NA */
	double ratio_nn;       /* fabriq / raw libnanomsg, or FQB_NA */
	double mr_setup;  /* ofi rows: memory registrations of both sides before the timed loop */
	double mr_steady; /* ofi rows: registrations inside the timed loop (0), else FQB_NA */
	bool zero_copy;   /* thr: the sender sent from one preallocated buffer */
	bool fill;        /* --memset: the sender wrote every byte of every message */
} fqb_result;

/* The ratio columns of the table, in their order (a set). */
enum {
	FQB_COL_RAW = 1,       /* fq/raw: --baseline zmq */
	FQB_COL_RING = 2,      /* fq/ring: --baseline ring */
	FQB_COL_IOX = 4,       /* fq/iox: --baseline iceoryx */
	FQB_COL_FUTEX = 8,     /* fq/futex: --baseline futex */
	FQB_COL_MEMSET = 16,   /* /memset: --memset */
	FQB_COL_OFI = 32,      /* fq/ofi: --baseline ofi (send/recv) */
	FQB_COL_OFI_READ = 64, /* fq/read: --baseline ofi, thr (fi_read rendezvous) */
	FQB_COL_MR = 128,      /* mr: --baseline ofi, registrations "setup+steady" */
	FQB_COL_NN = 256       /* fq/nn: --baseline nanomsg */
};

/* `cols`: the FQB_COL_* columns to show. */
void fqb_table_header(FILE *out, unsigned cols);
void fqb_table_row(FILE *out, const fqb_result *r, unsigned cols);
/* One JSON object on one line. */
void fqb_json_row(FILE *out, const fqb_result *r);

/* ---- Child processes -------------------------------------------------------------------- */

typedef struct fqb_child {
	const char *name; /* for messages: "receiver", ... */
	pid_t pid;
	int fd;         /* read end of the child's stdout, -1 after EOF */
	int hold_fd;    /* write end of the child's stdin when held, else -1 */
	char buf[2048]; /* partial line */
	size_t len;
	char url[FQB_URL_MAX];
	char result[1024];
	char error[256];
	bool has_url, has_result, reaped;
	bool killed; /* by the parent (fqb_child_kill) */
	int status;  /* wait status once reaped */
} fqb_child;

/*
 * Start `exe` with `argv`, its stdout a pipe read by the parent, stderr inherited, pinned to
 * `cpu` (-1: not pinned) and killed if the parent dies. With `hold`, its stdin is a pipe that
 * the parent closes once another child has reported its result (fq-bench --hold: a sender
 * keeps its socket open until the receiver has everything). `keep_fd` (-1: none), a
 * close-on-exec descriptor of the parent, is inherited under the same number (the ring
 * baseline's memfd). 0 or -1 (message on stderr).
 */
int fqb_child_spawn(fqb_child *c, const char *name, const char *exe, char *const argv[], int cpu,
                    bool hold, int keep_fd);
/* Read until the child reported its URL; false on error, EOF or deadline (fqb_now_ns time). */
bool fqb_child_wait_url(fqb_child *c, uint64_t deadline_ns);
/*
 * Read every child's reports until all closed stdout, then reap them. A child that fails, or
 * any child still running at the deadline, gets the others killed. True if every child
 * exited 0 with a result line.
 */
bool fqb_children_finish(fqb_child *c, size_t n, uint64_t deadline_ns);
/* Kill (SIGKILL) and reap a child that is still running. */
void fqb_child_kill(fqb_child *c);
/* Print why a failed child failed (its error line, exit status or signal) to stderr. */
void fqb_child_explain(const fqb_child *c);

/* Child side of `hold`: wait until stdin closes or `timeout_ms` passes. */
void fqb_hold_wait(int timeout_ms);

/* Pin the calling process to one CPU. 0 or -1 (errno set). */
int fqb_pin_cpu(int cpu);

#endif /* FQB_ENGINE_H */
