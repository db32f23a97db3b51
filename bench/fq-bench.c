/*
 * fq-bench: throughput and latency of fabriq transports, side by side with raw libzmq, with raw
 * libnanomsg, with a raw shared-memory ring (the machine's limit), with iceoryx, with a futex
 * ping-pong (the floor of a blocking wake-up), with memset (the machine's write bandwidth) and
 * with raw libfabric (send/recv and the fi_read rendezvous of the ofi transport).
 *
 * By default the tool is the parent of each run: it starts both sides as two processes (this
 * same executable with --role), on a fresh address, optionally pinned to CPUs, collects their
 * report lines (engine.h), bounds every wait, kills stragglers and removes what it created.
 * With --role it is one side only, for runs across machines or under a profiler.
 *
 * thr: PUSH -> PULL. The sender allocates every message (fq_msg_alloc), writes its first and
 *      last byte and sends it (fq_send, or fq_sendv with --parts); the receiver times from the
 *      first message to the end marker.
 * lat: PAIR ping-pong; the pinger reads the clock once per round trip; one-way = round trip/2.
 * --memset: every sender (pinger) writes every byte of every message instead of two.
 */
#include <fabriq/fabriq.h>

#include "baseline_futex.h"
#ifdef FQB_HAVE_ICEORYX
#include "baseline_iceoryx.h"
#endif
#include "baseline_memset.h"
#ifdef FQB_HAVE_NANOMSG
#include "baseline_nanomsg.h"
#endif
#ifdef FQB_HAVE_OFI
#include "baseline_ofi.h"
#endif
#include "baseline_ring.h"
#include "baseline_zmq.h"
#include "engine.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SIZES       32
#define MAX_TRANSPORTS  16
#define MAX_SCHEMES     4
/*
 * A side gives up on a silent peer after this long at most, or after half the run's --timeout
 * if that is shorter: it reports its failure before the parent would have to kill it.
 */
#define PEER_TIMEOUT_MS 10000

typedef enum impl_kind {
	IMPL_FABRIQ,
	IMPL_ZMQ,
	IMPL_RING,
	IMPL_IOX,
	IMPL_FUTEX,
	IMPL_MEMSET,
	IMPL_OFI,
	IMPL_OFI_READ,
	IMPL_NN
} impl_kind;

/* --impl names and the row names of each implementation. */
static const char *const impl_names[] = {
    [IMPL_FABRIQ] = "fabriq", [IMPL_ZMQ] = "zmq",           [IMPL_RING] = "ring",
    [IMPL_IOX] = "iceoryx",   [IMPL_FUTEX] = "futex",       [IMPL_MEMSET] = "memset",
    [IMPL_OFI] = "ofi",       [IMPL_OFI_READ] = "ofi-read", [IMPL_NN] = "nanomsg",
};
/* The transport and url scheme columns of a baseline's rows (fabriq's are its own). */
static const char *const impl_transports[] = {
    [IMPL_FABRIQ] = "",       [IMPL_ZMQ] = "libzmq",  [IMPL_RING] = "spsc",
    [IMPL_IOX] = "pubsub",    [IMPL_FUTEX] = "futex", [IMPL_MEMSET] = "libc",
    [IMPL_OFI] = "",          [IMPL_OFI_READ] = "", /* the provider */
    [IMPL_NN] = "libnanomsg",
};

/* --baseline: which raw implementations each case is also run on (a set). */
enum { BASE_ZMQ = 1, BASE_RING = 2, BASE_IOX = 4, BASE_FUTEX = 8, BASE_OFI = 16, BASE_NN = 32 };

#ifdef FQB_HAVE_ICEORYX
static const bool have_iceoryx = true;
#else
static const bool have_iceoryx = false;
#endif
#ifdef FQB_HAVE_NANOMSG
static const bool have_nanomsg = true;
#else
static const bool have_nanomsg = false;
#define FQB_NN_ZERO_COPY_MIN 4096
#endif
#ifdef FQB_HAVE_OFI
static const bool have_ofi = true;
#else
static const bool have_ofi = false;
#define FQB_OFI_DEFAULT_PROVIDER "tcp;ofi_rxm"
#endif

typedef struct config {
	/* What to run */
	const char *transport; /* NULL or "all": every usable one */
	const char *transport_options;
	bool patterns[2]; /* indexed by fqb_pattern */
	size_t sizes[MAX_SIZES];
	int n_sizes;
	size_t parts;
	uint64_t count;
	double duration;
	const char *url;
	const char *schemes[MAX_SCHEMES];
	int n_schemes;
	int cpus[2];
	int hwm;
	double timeout;
	bool json;
	unsigned baseline;        /* BASE_* */
	bool adopt;               /* thr: fabriq sender sends one buffer with fq_msg_adopt */
	bool fill;                /* --memset: senders write every byte; the memset reference row */
	bool baseline_first;      /* run the baselines before fabriq in each case */
	const char *ofi_provider; /* --ofi-provider */
	long ofi_spin;            /* --ofi-spin: microseconds, -1: not given */
	/* Role mode */
	fqb_role role;
	impl_kind impl;
	int bind;  /* -1: the role's default */
	bool hold; /* sender/pinger: keep the socket open until stdin closes */
} config;

enum {
	OPT_SIZES = 256,
	OPT_ROLE,
	OPT_BIND,
	OPT_CONNECT,
	OPT_IMPL,
	OPT_BASELINE,
	OPT_HWM,
	OPT_TIMEOUT,
	OPT_SCHEME,
	OPT_TOPTS,
	OPT_HOLD,
	OPT_ADOPT,
	OPT_BASELINE_FIRST,
	OPT_MEMSET,
	OPT_OFI_PROVIDER,
	OPT_OFI_SPIN,
	OPT_VERSION,
};

static const struct option long_options[] = {
    {"transport", required_argument, NULL, 't'},
    {"transport-options", required_argument, NULL, OPT_TOPTS},
    {"pattern", required_argument, NULL, 'p'},
    {"size", required_argument, NULL, 's'},
    {"sizes", required_argument, NULL, OPT_SIZES},
    {"count", required_argument, NULL, 'n'},
    {"duration", required_argument, NULL, 'd'},
    {"parts", required_argument, NULL, 'P'},
    {"url", required_argument, NULL, 'u'},
    {"scheme", required_argument, NULL, OPT_SCHEME},
    {"cpus", required_argument, NULL, 'c'},
    {"hwm", required_argument, NULL, OPT_HWM},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"json", no_argument, NULL, 'j'},
    {"baseline", required_argument, NULL, OPT_BASELINE},
    {"role", required_argument, NULL, OPT_ROLE},
    {"bind", no_argument, NULL, OPT_BIND},
    {"connect", no_argument, NULL, OPT_CONNECT},
    {"impl", required_argument, NULL, OPT_IMPL},
    {"hold", no_argument, NULL, OPT_HOLD},
    {"adopt", no_argument, NULL, OPT_ADOPT},
    {"baseline-first", no_argument, NULL, OPT_BASELINE_FIRST},
    {"memset", no_argument, NULL, OPT_MEMSET},
    {"ofi-provider", required_argument, NULL, OPT_OFI_PROVIDER},
    {"ofi-spin", required_argument, NULL, OPT_OFI_SPIN},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: fq-bench [--transport NAME|all] [--pattern thr|lat|thr,lat]\n"
	    "                [--size BYTES | --sizes LIST] [--count N | --duration S]\n"
	    "                [--parts P] [--url URL | --scheme tcp|ipc|tcp,ipc] [--cpus A,B]\n"
	    "                [--hwm N] [--baseline LIST] [--ofi-provider NAME] [--ofi-spin US]\n"
	    "                [--memset]\n"
	    "                [--json] [--timeout S]\n"
	    "       fq-bench --role sender|receiver|pinger|ponger --url URL [--bind|--connect]\n"
	    "                [--impl fabriq|zmq|nanomsg|ring|iceoryx|futex|memset|ofi|ofi-read]\n"
	    "                [same options]\n"
	    "\n"
	    "Measure message throughput (thr: PUSH->PULL) and latency (lat: PAIR ping-pong)\n"
	    "of fabriq transports, each run in two processes started by fq-bench itself.\n"
	    "\n"
	    "  -t, --transport NAME     transport to measure, or 'all' (default) for every\n"
	    "                           usable transport compiled in\n"
	    "      --transport-options KV  'key=value,...' for fq_transport_open\n"
	    "  -p, --pattern LIST       thr, lat or thr,lat (default thr,lat)\n"
	    "  -s, --size BYTES         payload bytes per part; K/M/G suffixes (default 64)\n"
	    "      --sizes LIST         several sizes, e.g. 64,4K,1M\n"
	    "  -n, --count N            messages (thr) or round trips (lat) per run\n"
	    "  -d, --duration S         seconds per run instead of a count (default 1)\n"
	    "  -P, --parts P            send vectors of P parts of BYTES each (default 1)\n"
	    "  -u, --url URL            address the receiving side binds (default: a fresh\n"
	    "                           ipc path or tcp://127.0.0.1:0)\n"
	    "      --scheme LIST        tcp, ipc or tcp,ipc (default: tcp if the transport\n"
	    "                           serves it, else ipc)\n"
	    "  -c, --cpus A,B           pin the sender/pinger to CPU A, the receiver/ponger\n"
	    "                           to CPU B\n"
	    "      --hwm N              send and receive high-water marks in messages\n"
	    "      --baseline LIST      also run each case on some of (comma-separated):\n"
	    "                           zmq      raw libzmq on the same scheme (fq/raw column)\n"
	    "                           nanomsg  raw libnanomsg on the same scheme, vectors\n"
	    "                                    sent as the nanomsg transport sends them\n"
	    "                                    (fq/nn column)\n"
	    "                           ring     a busy-polled SPSC ring of 32-byte handles in\n"
	    "                                    a memfd shared by two processes pinned as the\n"
	    "                                    fabriq ones: the limit of shared-memory\n"
	    "                                    messaging on this machine (fq/ring column)\n"
	    "                           iceoryx  iceoryx publish/subscribe (C API, loaned\n"
	    "                                    chunks, blocking publisher, busy-polling\n"
	    "                                    subscriber); fq-bench starts iox-roudi for\n"
	    "                                    the run if none is running (fq/iox column)\n"
	    "                           futex    lat only: a FUTEX_WAIT/FUTEX_WAKE ping-pong\n"
	    "                                    through one shared word, no spinning: the\n"
	    "                                    floor of a blocking wake-up; one row of\n"
	    "                                    size 0 per run (fq/futex column)\n"
	    "                           ofi      raw libfabric, FI_EP_RDM, between two\n"
	    "                                    processes: an 'ofi' row (fi_send/fi_recv,\n"
	    "                                    thr and lat; fq/ofi column) and, for thr,\n"
	    "                                    an 'ofi-read' row (the receiver pulls each\n"
	    "                                    message with fi_read and answers FIN;\n"
	    "                                    fq/read column); single-part messages;\n"
	    "                                    the mr column counts registrations\n"
	    "      --ofi-provider NAME  libfabric provider of --baseline ofi (default\n"
	    "                           tcp;ofi_rxm; also shm)\n"
	    "      --ofi-spin US        --baseline ofi: busy-poll the CQ for US microseconds\n"
	    "                           before sleeping on its fd (default 0: sleep at once;\n"
	    "                           the ofi transport's own default is spin=100)\n"
	    "      --baseline-first     run the baselines first in each case (alone: zmq)\n");
	fprintf(out,
	        "      --memset             every sender (and pinger) writes every byte of every\n"
	        "                           message with memset, not just the first and last;\n"
	        "                           thr adds a memset row per size (memset of SIZE bytes\n"
	        "                           into one buffer, on the sender's CPU, as long as a\n"
	        "                           run) and a /memset column: each row's bytes/s over it\n"
	        "      --adopt              thr: the fabriq sender sends one preallocated buffer\n"
	        "                           (fq_msg_adopt) instead of fq_msg_alloc per message\n"
	        "  -j, --json               one JSON object per result line instead of a table\n");
	fprintf(out,
	        "      --timeout S          bound on one run in seconds (default 60, plus the\n"
	        "                           duration); stragglers are killed\n"
	        "      --role ROLE          run one side only: sender, receiver, pinger, ponger\n"
	        "      --bind, --connect    role mode: bind or connect the URL (default: receiver\n"
	        "                           and ponger bind, sender and pinger connect)\n"
	        "      --impl IMPL          role mode: fabriq (default), zmq or nanomsg (the raw\n"
	        "                           libzmq or libnanomsg baseline), ring or futex\n"
	        "                           (--url memfd://FD, an inherited descriptor of a\n"
	        "                           file both sides map),\n"
	        "                           iceoryx (--url iox://SERVICE/INSTANCE; needs a\n"
	        "                           running iox-roudi), memset (--role sender alone),\n"
	        "                           ofi or ofi-read (--url memfd://FD, the inherited\n"
	        "                           set-up file)\n"
	        "      --hold               role mode, sender or pinger: after the last message,\n"
	        "                           keep the socket open until stdin closes\n"
	        "  -h, --help               show this help and exit\n"
	        "      --version            show the version and exit\n"
	        "\n"
	        "Exit status: 0 success, 1 a run failed, 2 usage error.\n");
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "fq-bench: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'fq-bench --help'.\n");
	return FQB_EXIT_USAGE;
}

static int parse_uint(const char *text, unsigned long long max, unsigned long long *out)
{
	char *end;

	if (*text == '-' || *text == '\0')
		return -1;
	errno = 0;
	*out = strtoull(text, &end, 10);
	return (errno != 0 || *end != '\0' || *out > max) ? -1 : 0;
}

static int parse_cpus(const char *text, int *cpus)
{
	unsigned long long v;
	char first[32];
	const char *comma = strchr(text, ',');
	size_t len = comma ? (size_t)(comma - text) : strlen(text);

	if (len == 0 || len >= sizeof(first))
		return -1;
	memcpy(first, text, len);
	first[len] = '\0';
	if (parse_uint(first, 4095, &v) != 0)
		return -1;
	cpus[0] = cpus[1] = (int)v;
	if (comma == NULL)
		return 0;
	if (parse_uint(comma + 1, 4095, &v) != 0)
		return -1;
	cpus[1] = (int)v;
	return 0;
}

static int parse_patterns(const char *text, bool *patterns)
{
	patterns[FQB_THR] = patterns[FQB_LAT] = false;
	if (strcmp(text, "thr") == 0)
		patterns[FQB_THR] = true;
	else if (strcmp(text, "lat") == 0)
		patterns[FQB_LAT] = true;
	else if (strcmp(text, "thr,lat") == 0 || strcmp(text, "lat,thr") == 0)
		patterns[FQB_THR] = patterns[FQB_LAT] = true;
	else
		return -1;
	return 0;
}

static int parse_schemes(char *text, config *cfg)
{
	cfg->n_schemes = 0;
	for (char *save = NULL, *s = strtok_r(text, ",", &save); s != NULL;
	     s = strtok_r(NULL, ",", &save)) {
		if ((strcmp(s, "tcp") != 0 && strcmp(s, "ipc") != 0) ||
		    cfg->n_schemes == MAX_SCHEMES)
			return -1;
		cfg->schemes[cfg->n_schemes++] = s;
	}
	return cfg->n_schemes > 0 ? 0 : -1;
}

static int parse_baselines(const char *text, unsigned *out)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
	    {"zmq", BASE_ZMQ},     {"ring", BASE_RING}, {"iceoryx", BASE_IOX},
	    {"futex", BASE_FUTEX}, {"ofi", BASE_OFI},   {"nanomsg", BASE_NN},
	};
	char item[16];

	for (const char *p = text;; p++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len == 0 || len >= sizeof(item))
			return -1;
		memcpy(item, p, len);
		item[len] = '\0';
		size_t i;

		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			if (strcmp(item, names[i].name) == 0)
				break;
		}
		if (i == sizeof(names) / sizeof(names[0]))
			return -1;
		*out |= names[i].bit;
		if (comma == NULL)
			return 0;
		p = comma;
	}
}

static int parse_args(int argc, char **argv, config *cfg)
{
	unsigned long long v;
	bool have_count = false, have_duration = false;
	int c;

	*cfg = (config){.patterns = {true, true},
	                .sizes = {64},
	                .n_sizes = 1,
	                .parts = 1,
	                .duration = 1.0,
	                .cpus = {-1, -1},
	                .hwm = -1,
	                .ofi_spin = -1,
	                .timeout = 60.0,
	                .role = FQB_ROLE_NONE,
	                .impl = IMPL_FABRIQ,
	                .bind = -1};
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":t:p:s:n:d:P:u:c:jh", long_options, NULL)) != -1) {
		switch (c) {
		case 't':
			cfg->transport = optarg;
			break;
		case OPT_TOPTS:
			cfg->transport_options = optarg;
			break;
		case 'p':
			if (parse_patterns(optarg, cfg->patterns) != 0)
				return usage_error("bad --pattern '%s' (thr, lat or thr,lat)",
				                   optarg);
			break;
		case 's':
		case OPT_SIZES:
			cfg->n_sizes = fqb_parse_size_list(optarg, cfg->sizes, MAX_SIZES);
			if (cfg->n_sizes <= 0)
				return usage_error("bad size list '%s'", optarg);
			break;
		case 'n':
			if (parse_uint(optarg, UINT64_MAX, &v) != 0 || v == 0)
				return usage_error("bad --count '%s'", optarg);
			cfg->count = v;
			have_count = true;
			break;
		case 'd':
			if (fqb_parse_seconds(optarg, &cfg->duration) != 0)
				return usage_error("bad --duration '%s'", optarg);
			have_duration = true;
			break;
		case 'P':
			if (parse_uint(optarg, FQB_MAX_PARTS, &v) != 0 || v == 0)
				return usage_error("bad --parts '%s' (1 to 1024)", optarg);
			cfg->parts = (size_t)v;
			break;
		case 'u':
			cfg->url = optarg;
			break;
		case OPT_SCHEME:
			if (parse_schemes(optarg, cfg) != 0)
				return usage_error("bad --scheme '%s' (tcp, ipc or tcp,ipc)",
				                   optarg);
			break;
		case 'c':
			if (parse_cpus(optarg, cfg->cpus) != 0)
				return usage_error("bad --cpus '%s' (A or A,B)", optarg);
			break;
		case OPT_HWM:
			if (parse_uint(optarg, INT32_MAX, &v) != 0)
				return usage_error("bad --hwm '%s'", optarg);
			cfg->hwm = (int)v;
			break;
		case OPT_TIMEOUT:
			if (fqb_parse_seconds(optarg, &cfg->timeout) != 0)
				return usage_error("bad --timeout '%s'", optarg);
			break;
		case 'j':
			cfg->json = true;
			break;
		case OPT_BASELINE:
			if (parse_baselines(optarg, &cfg->baseline) != 0)
				return usage_error("unknown --baseline '%s' (a list of zmq, "
				                   "nanomsg, ring, iceoryx, futex, ofi)",
				                   optarg);
			break;
		case OPT_ROLE:
			if (fqb_role_parse(optarg, &cfg->role) != 0)
				return usage_error("bad --role '%s'", optarg);
			break;
		case OPT_BIND:
			cfg->bind = 1;
			break;
		case OPT_HOLD:
			cfg->hold = true;
			break;
		case OPT_ADOPT:
			cfg->adopt = true;
			break;
		case OPT_BASELINE_FIRST:
			cfg->baseline_first = true;
			break;
		case OPT_MEMSET:
			cfg->fill = true;
			break;
		case OPT_OFI_PROVIDER:
			if (*optarg == '\0')
				return usage_error("%s", "empty --ofi-provider");
			cfg->ofi_provider = optarg;
			break;
		case OPT_OFI_SPIN: {
			char *end;

			errno = 0;
			cfg->ofi_spin = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || cfg->ofi_spin < 0 ||
			    cfg->ofi_spin > 1000000)
				return usage_error(
				    "bad --ofi-spin '%s' (0 to 1000000 microseconds)", optarg);
			break;
		}
		case OPT_CONNECT:
			cfg->bind = 0;
			break;
		case OPT_IMPL: {
			size_t i;

			for (i = 0; i < sizeof(impl_names) / sizeof(impl_names[0]); i++) {
				if (strcmp(optarg, impl_names[i]) == 0)
					break;
			}
			if (i == sizeof(impl_names) / sizeof(impl_names[0]))
				return usage_error("bad --impl '%s' (fabriq, zmq, nanomsg, ring, "
				                   "iceoryx, futex, memset, ofi or ofi-read)",
				                   optarg);
			cfg->impl = (impl_kind)i;
			break;
		}
		case 'h':
			usage(stdout);
			exit(FQB_EXIT_OK);
		case OPT_VERSION:
			printf("fq-bench %s (library %s)\n", FQ_VERSION_STRING, fq_version());
			exit(FQB_EXIT_OK);
		case ':':
			return usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (have_count && have_duration)
		return usage_error("%s", "--count and --duration exclude each other");
	if (have_count)
		cfg->duration = 0;
	if (cfg->baseline_first && cfg->baseline == 0)
		cfg->baseline = BASE_ZMQ;
	if (cfg->url != NULL && cfg->n_schemes > 0)
		return usage_error("%s", "--url and --scheme exclude each other");
	if (cfg->role != FQB_ROLE_NONE) {
		if (cfg->url == NULL)
			return usage_error("%s", "--role needs --url");
		if (cfg->n_sizes != 1)
			return usage_error("%s", "--role takes one --size");
		if (cfg->impl == IMPL_FABRIQ &&
		    (cfg->transport == NULL || strcmp(cfg->transport, "all") == 0))
			return usage_error("%s", "--role needs one --transport");
	}
	return -1;
}

/* ---- One side on fabriq ----------------------------------------------------------------- */

typedef struct fside {
	fq_transport *t;
	fq_socket *s;
} fside;

/*
 * Memory registrations of a role's transport (only ofi counts them): those made before the
 * second half of the run (set-up, the pools filling) and those during it, which a steady
 * state does not make.
 */
typedef struct mr_probe {
	fq_transport *t;
	bool counts, taken;
	uint64_t mid, start_ns;
} mr_probe;

static void mr_probe_start(mr_probe *p, fq_transport *t)
{
	uint64_t v;

	p->t = t;
	p->counts = fq_transport_counter(t, "registrations", &v) == 0;
	p->taken = false;
	p->start_ns = fqb_now_ns();
}

/* After message n: take the mid-run count once half of the count or duration has gone. */
static void mr_probe_tick(mr_probe *p, const fqb_role_args *a, uint64_t n)
{
	if (!p->counts || p->taken)
		return;
	if (a->count > 0 ? n < a->count / 2
	                 : fqb_now_ns() - p->start_ns < (uint64_t)(a->duration * 0.5e9))
		return;
	p->taken = fq_transport_counter(p->t, "registrations", &p->mid) == 0;
}

static void mr_probe_report(mr_probe *p)
{
	uint64_t now;

	if (!p->counts || fq_transport_counter(p->t, "registrations", &now) != 0)
		return;
	if (!p->taken)
		p->mid = now;
	fqb_report_mr(p->mid, now - p->mid);
}

static void fside_close(fside *f)
{
	fq_socket_close(f->s);
	fq_transport_close(f->t); /* waits for the linger of the socket just closed */
	f->s = NULL;
	f->t = NULL;
}

static int fq_failed(const char *what, int rc)
{
	fqb_report_error("%s: %s (%s)", what, fq_strerror(rc), fq_err_name(rc));
	return -1;
}

static int fside_open(fside *f, const fqb_role_args *a, fq_socket_type type)
{
	char ep[FQB_URL_MAX];
	int rc;

	f->t = NULL;
	f->s = NULL;
	rc = fq_transport_open(&f->t, a->transport, a->transport_options);
	if (rc != 0)
		return fq_failed("fq_transport_open", rc);
	rc = fq_socket_open(&f->s, f->t, type);
	if (rc != 0) {
		fq_failed("fq_socket_open", rc);
		goto fail;
	}
	if (a->hwm >= 0 && ((rc = fq_socket_set_int(f->s, "snd_hwm", a->hwm)) != 0 ||
	                    (rc = fq_socket_set_int(f->s, "rcv_hwm", a->hwm)) != 0)) {
		fq_failed("setting snd_hwm/rcv_hwm", rc);
		goto fail;
	}
	if ((rc = fq_socket_set_int(f->s, "snd_timeout", a->timeout_ms)) != 0 ||
	    (rc = fq_socket_set_int(f->s, "rcv_timeout", a->timeout_ms)) != 0 ||
	    (rc = fq_socket_set_int(f->s, "linger", a->timeout_ms)) != 0) {
		fq_failed("setting timeouts", rc);
		goto fail;
	}
	/* Payloads beyond the default limit: accept them rather than drop the peer. */
	if (a->size * a->parts >= ((size_t)4 << 30) &&
	    (rc = fq_socket_set_int(f->s, "max_msg_size", 0)) != 0) {
		fq_failed("setting max_msg_size", rc);
		goto fail;
	}
	if (a->bind) {
		rc = fq_bind(f->s, a->url);
		if (rc != 0) {
			fqb_report_error("fq_bind %s: %s", a->url, fq_strerror(rc));
			goto fail;
		}
		rc = fq_socket_endpoint(f->s, 0, ep, sizeof(ep));
		if (rc != 0) {
			fq_failed("fq_socket_endpoint", rc);
			goto fail;
		}
		fqb_report_url(ep);
	} else {
		rc = fq_connect(f->s, a->url);
		if (rc != 0) {
			fqb_report_error("fq_connect %s: %s", a->url, fq_strerror(rc));
			goto fail;
		}
	}
	return 0;
fail:
	fside_close(f);
	return -1;
}

static int send_marker(fside *f, const fqb_role_args *a)
{
	fq_msg *m;
	int rc = fq_msg_alloc(f->t, fqb_marker_size(a->size), &m);

	if (rc != 0)
		return fq_failed("fq_msg_alloc (end marker)", rc);
	if (fqb_marker_size(a->size) > 0)
		*(char *)fq_msg_data(m) = 0;
	rc = fq_send(f->s, &m, 0);
	if (rc != 0) {
		fq_msg_free(m);
		return fq_failed("fq_send (end marker)", rc);
	}
	return 0;
}

static int fq_sender(const fqb_role_args *a)
{
	const size_t size = a->size, parts = a->parts;
	fq_msg *v[FQB_MAX_PARTS];
	fqb_deadline dl;
	uint64_t i;
	char *buf = NULL;
	double cpu0;
	mr_probe mr = {0};
	fside f;
	int rc;

	if (a->adopt && size > 0) {
		buf = malloc(size);
		if (buf == NULL) {
			fqb_report_error("out of memory for a %zu-byte buffer", size);
			return FQB_EXIT_FAILURE;
		}
		memset(buf, 0x5a, size);
	}
	if (fside_open(&f, a, FQ_PUSH) != 0) {
		free(buf);
		return FQB_EXIT_FAILURE;
	}
	cpu0 = fqb_cpu_seconds();
	mr_probe_start(&mr, f.t);
	fqb_deadline_start(&dl, a);
	for (i = 0; a->count == 0 || i < a->count; i++) {
		if (i >= dl.next) {
			if (fqb_deadline_check(&dl, i))
				break;
			mr_probe_tick(&mr, a, i);
		}
		for (size_t j = 0; j < parts; j++) {
			/* Adopted without a free function: the buffer outlives every message. */
			rc = a->adopt ? fq_msg_adopt(f.t, buf, size, NULL, NULL, &v[j])
			              : fq_msg_alloc(f.t, size, &v[j]);
			if (rc != 0) {
				fq_failed(a->adopt ? "fq_msg_adopt" : "fq_msg_alloc", rc);
				while (j > 0)
					fq_msg_free(v[--j]);
				goto fail;
			}
			fqb_touch(fq_msg_data(v[j]), size, i, a->fill);
		}
		rc = parts == 1 ? fq_send(f.s, &v[0], 0) : fq_sendv(f.s, v, parts, 0);
		if (rc != 0) {
			fq_failed(parts == 1 ? "fq_send" : "fq_sendv", rc);
			for (size_t j = 0; j < parts; j++)
				fq_msg_free(v[j]);
			goto fail;
		}
	}
	if (send_marker(&f, a) != 0)
		goto fail;
	if (a->hold)
		fqb_hold_wait(a->timeout_ms);
	mr_probe_report(&mr);
	fside_close(&f); /* waits for the linger: the buffer is no longer used after it */
	free(buf);
	fqb_report_sender(FQB_ROLE_SENDER, i, fqb_cpu_seconds() - cpu0);
	return FQB_EXIT_OK;
fail:
	fside_close(&f);
	free(buf);
	return FQB_EXIT_FAILURE;
}

/*
 * Receive one message or vector. 1: payload (in *m, or its parts in v[] when parts > 1),
 * 0: the end marker (freed), -1: error (reported).
 */
static int fq_recv_message(fside *f, const fqb_role_args *a, fq_msg **m, fq_msg **v)
{
	fq_parts *p;
	size_t n, first;
	int rc;

	if (a->parts == 1) {
		rc = fq_recv(f->s, m, 0);
		if (rc != 0)
			return fq_failed("fq_recv", rc);
		if (fq_msg_size(*m) == a->size)
			return 1;
		first = fq_msg_size(*m);
		fq_msg_free(*m);
		*m = NULL;
		if (first == fqb_marker_size(a->size))
			return 0;
		fqb_report_error("unexpected message of %zu bytes", first);
		return -1;
	}
	rc = fq_recvv(f->s, &p, 0);
	if (rc != 0)
		return fq_failed("fq_recvv", rc);
	n = fq_parts_count(p);
	first = fq_msg_size(fq_parts_at(p, 0));
	if (n == a->parts && first == a->size) {
		for (size_t j = 0; j < n; j++)
			v[j] = fq_parts_take(p, j);
		fq_parts_free(p);
		return 1;
	}
	fq_parts_free(p);
	if (n == 1 && first == fqb_marker_size(a->size))
		return 0;
	fqb_report_error("unexpected message: %zu parts, first of %zu bytes", n, first);
	return -1;
}

static int fq_receiver(const fqb_role_args *a)
{
	uint64_t n = 0, t_first = 0, t_end;
	fq_msg *m = NULL, *v[FQB_MAX_PARTS];
	double cpu0;
	int got, rc = FQB_EXIT_FAILURE;
	mr_probe mr = {0};
	fside f;

	if (fside_open(&f, a, FQ_PULL) != 0)
		return FQB_EXIT_FAILURE;
	cpu0 = fqb_cpu_seconds();
	while ((got = fq_recv_message(&f, a, &m, v)) == 1) {
		if (n++ == 0) {
			t_first = fqb_now_ns();
			mr_probe_start(&mr, f.t); /* the run starts with the first message */
		}
		if ((n & 63) == 0)
			mr_probe_tick(&mr, a, n);
		if (a->parts == 1) {
			fq_msg_free(m);
		} else {
			for (size_t j = 0; j < a->parts; j++)
				fq_msg_free(v[j]);
		}
	}
	t_end = fqb_now_ns();
	if (got == 0 && n > 0)
		mr_probe_report(&mr);
	rc = fqb_receiver_end(got, n, t_first, t_end, cpu0);
	fside_close(&f);
	return rc;
}

static int fq_send_message(fside *f, const fqb_role_args *a, fq_msg **m, fq_msg **v)
{
	int rc = a->parts == 1 ? fq_send(f->s, m, 0) : fq_sendv(f->s, v, a->parts, 0);

	return rc == 0 ? 0 : fq_failed(a->parts == 1 ? "fq_send" : "fq_sendv", rc);
}

static void free_message(const fqb_role_args *a, fq_msg **m, fq_msg **v)
{
	fq_msg_free(*m);
	*m = NULL;
	if (a->parts > 1) {
		for (size_t j = 0; j < a->parts; j++) {
			fq_msg_free(v[j]);
			v[j] = NULL;
		}
	}
}

/* --memset: the pinger writes every byte of the message it is about to send. */
static void fill_message(const fqb_role_args *a, fq_msg *m, fq_msg **v, uint64_t n)
{
	if (!a->fill)
		return;
	for (size_t j = 0; j < a->parts; j++)
		fqb_touch(fq_msg_data(a->parts == 1 ? m : v[j]), a->size, n, true);
}

/* Round trips not measured before the timed ones: connection set-up and first-touch costs. */
#define WARMUP 100

static int fq_pinger(const fqb_role_args *a)
{
	fq_msg *m = NULL, *v[FQB_MAX_PARTS] = {NULL};
	fqb_samples samples = {0};
	uint64_t t0, prev, end_ns = UINT64_MAX, n = 0;
	int lap;
	double cpu0;
	int rc = FQB_EXIT_FAILURE;
	mr_probe mr = {0};
	fside f;

	if (fqb_samples_init(&samples, a->count, a->duration) != 0) {
		fqb_report_error("out of memory for latency samples");
		return FQB_EXIT_FAILURE;
	}
	if (fside_open(&f, a, FQ_PAIR) != 0) {
		fqb_samples_free(&samples);
		return FQB_EXIT_FAILURE;
	}
	for (size_t j = 0; j < a->parts; j++) {
		fq_msg **slot = a->parts == 1 ? &m : &v[j];
		int err = fq_msg_alloc(f.t, a->size, slot);

		if (err != 0) {
			fq_failed("fq_msg_alloc", err);
			goto out;
		}
		if (a->size > 0)
			memset(fq_msg_data(*slot), 0x5a, a->size);
	}
	/* The echo comes back as the next message to send: no allocation per round trip. */
	for (int w = 0; w < WARMUP; w++) {
		if (fq_send_message(&f, a, &m, v) != 0 || fq_recv_message(&f, a, &m, v) != 1)
			goto out;
	}
	cpu0 = fqb_cpu_seconds();
	mr_probe_start(&mr, f.t);
	t0 = prev = fqb_now_ns();
	if (a->count == 0)
		end_ns = t0 + (uint64_t)(a->duration * 1e9);
	while (a->count == 0 || n < a->count) {
		mr_probe_tick(&mr, a, n);
		fill_message(a, m, v, n);
		if (fq_send_message(&f, a, &m, v) != 0 || fq_recv_message(&f, a, &m, v) != 1)
			goto out;
		lap = fqb_lap(&samples, &prev, &n, end_ns);
		if (lap < 0)
			goto out;
		if (lap > 0)
			break;
	}
	if (send_marker(&f, a) != 0)
		goto out;
	if (a->hold)
		fqb_hold_wait(a->timeout_ms);
	mr_probe_report(&mr);
	fqb_report_pinger_samples(&samples, n, t0, prev, cpu0);
	rc = FQB_EXIT_OK;
out:
	free_message(a, &m, v);
	fside_close(&f);
	fqb_samples_free(&samples);
	return rc;
}

static int fq_ponger(const fqb_role_args *a)
{
	fq_msg *m = NULL, *v[FQB_MAX_PARTS] = {NULL};
	uint64_t n = 0;
	double cpu0;
	int got, rc = FQB_EXIT_FAILURE;
	mr_probe mr = {0};
	fside f;

	if (fside_open(&f, a, FQ_PAIR) != 0)
		return FQB_EXIT_FAILURE;
	cpu0 = fqb_cpu_seconds();
	while ((got = fq_recv_message(&f, a, &m, v)) == 1) {
		if (n == WARMUP)
			mr_probe_start(&mr, f.t); /* the pinger's timed run starts */
		if (n > WARMUP)
			mr_probe_tick(&mr, a, n - WARMUP);
		if (fq_send_message(&f, a, &m, v) != 0) {
			got = -1;
			break;
		}
		n++;
	}
	if (got == 0) {
		if (n > WARMUP)
			mr_probe_report(&mr);
		fqb_report_sender(FQB_ROLE_PONGER, n, fqb_cpu_seconds() - cpu0);
		rc = FQB_EXIT_OK;
	}
	free_message(a, &m, v);
	fside_close(&f);
	return rc;
}

static int run_role(const config *cfg)
{
	fqb_role_args a = {
	    .role = cfg->role,
	    .transport = cfg->transport,
	    .transport_options = cfg->transport_options,
	    .url = cfg->url,
	    .bind = cfg->bind >= 0
	                ? cfg->bind
	                : (cfg->role == FQB_ROLE_RECEIVER || cfg->role == FQB_ROLE_PONGER),
	    .size = cfg->sizes[0],
	    .parts = cfg->parts,
	    .count = cfg->count,
	    .duration = cfg->duration,
	    .hwm = cfg->hwm,
	    .hold = cfg->hold,
	    .adopt = cfg->adopt,
	    .fill = cfg->fill,
	    .ofi_provider = cfg->ofi_provider,
	    .ofi_spin_us = cfg->ofi_spin > 0 ? cfg->ofi_spin : 0,
	    .timeout_ms =
	        cfg->timeout * 500 < PEER_TIMEOUT_MS ? (int)(cfg->timeout * 500) : PEER_TIMEOUT_MS,
	};

	/* Peers leaving at the end of a run are expected: keep the library's warnings about
	 * them out of the output unless the user asked for a level. */
	if (getenv("FQ_LOG_LEVEL") == NULL)
		fq_log_set_level(FQ_LOG_ERROR);
	if (cfg->cpus[0] >= 0 && fqb_pin_cpu(cfg->cpus[0]) != 0) {
		fqb_report_error("cannot pin to CPU %d: %s", cfg->cpus[0], strerror(errno));
		return FQB_EXIT_FAILURE;
	}
	switch (cfg->impl) {
	case IMPL_ZMQ:
		return fqb_zmq_role(&a);
	case IMPL_NN:
#ifdef FQB_HAVE_NANOMSG
		return fqb_nn_role(&a);
#else
		fqb_report_error("this fq-bench was built without libnanomsg");
		return FQB_EXIT_FAILURE;
#endif
	case IMPL_RING:
		return fqb_ring_role(&a);
	case IMPL_FUTEX:
		return fqb_futex_role(&a);
	case IMPL_MEMSET:
		return fqb_memset_role(&a);
	case IMPL_OFI:
	case IMPL_OFI_READ:
#ifdef FQB_HAVE_OFI
		return fqb_ofi_role(&a, cfg->impl == IMPL_OFI_READ);
#else
		fqb_report_error("this fq-bench was built without libfabric");
		return FQB_EXIT_FAILURE;
#endif
	case IMPL_IOX:
#ifdef FQB_HAVE_ICEORYX
		return fqb_iox_role(&a);
#else
		fqb_report_error("this fq-bench was built without iceoryx");
		return FQB_EXIT_FAILURE;
#endif
	case IMPL_FABRIQ:
		break;
	}
	{
		static const fqb_role_fns fns = {fq_sender, fq_receiver, fq_pinger, fq_ponger,
		                                 "no role"};

		return fqb_role_run(&fns, &a);
	}
}

/* ---- The parent: runs and their results ------------------------------------------------- */

static char self_exe[PATH_MAX];

/* A fresh address for one run; `dir` gets the temporary directory of an ipc path ("" else). */
static int make_url(const char *scheme, char *url, size_t len, char *dir, size_t dlen)
{
	const char *tmp = getenv("TMPDIR");

	dir[0] = '\0';
	if (strcmp(scheme, "tcp") == 0) {
		snprintf(url, len, "tcp://127.0.0.1:0");
		return 0;
	}
	if (tmp == NULL || *tmp == '\0' || strlen(tmp) > 60)
		tmp = "/tmp";
	snprintf(dir, dlen, "%s/fq-bench.XXXXXX", tmp);
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "fq-bench: mkdtemp %s: %s\n", dir, strerror(errno));
		dir[0] = '\0';
		return -1;
	}
	snprintf(url, len, "ipc://%s/s", dir);
	return 0;
}

static void remove_url(const char *dir)
{
	char path[PATH_MAX + 4];

	if (dir[0] == '\0')
		return;
	snprintf(path, sizeof(path), "%s/s", dir);
	unlink(path);
	if (rmdir(dir) != 0)
		fprintf(stderr, "fq-bench: cannot remove %s: %s\n", dir, strerror(errno));
}

/* Does `transport` accept `scheme`? Tried by binding a throw-away socket. */
static bool scheme_served(const config *cfg, const char *transport, const char *scheme)
{
	char url[FQB_URL_MAX], dir[PATH_MAX];
	fq_transport *t = NULL;
	fq_socket *s = NULL;
	int rc;

	if (make_url(scheme, url, sizeof(url), dir, sizeof(dir)) != 0)
		return false;
	fq_log_level saved = fq_log_get_level();
	fq_log_set_level(FQ_LOG_NONE); /* a refused scheme is an answer here, not a problem */
	rc = fq_transport_open(&t, transport, cfg->transport_options);
	if (rc == 0)
		rc = fq_socket_open(&s, t, FQ_PULL);
	if (rc == 0)
		rc = fq_bind(s, url);
	fq_socket_close(s);
	fq_transport_close(t);
	fq_log_set_level(saved);
	remove_url(dir);
	return rc == 0;
}

typedef struct argv_buf {
	char *v[48];
	int n;
	char store[24][48]; /* numbers */
	int ns;
} argv_buf;

static void argv_add(argv_buf *b, const char *s)
{
	if (b->n < (int)(sizeof(b->v) / sizeof(b->v[0])) - 1)
		b->v[b->n++] = (char *)s;
	b->v[b->n] = NULL;
}

static void argv_num(argv_buf *b, const char *opt, const char *fmt, double v)
{
	char *slot = b->store[b->ns++];

	snprintf(slot, sizeof(b->store[0]), fmt, v);
	argv_add(b, opt);
	argv_add(b, slot);
}

static void child_args(argv_buf *b, const config *cfg, impl_kind impl, const char *transport,
                       fqb_role role, const char *url, size_t size)
{
	memset(b, 0, sizeof(*b));
	argv_add(b, "fq-bench");
	argv_add(b, "--role");
	argv_add(b, fqb_role_name(role));
	argv_add(b, "--impl");
	argv_add(b, impl_names[impl]);
	argv_add(b, "--transport");
	argv_add(b, transport);
	if (cfg->transport_options != NULL) {
		argv_add(b, "--transport-options");
		argv_add(b, cfg->transport_options);
	}
	argv_add(b, "--url");
	argv_add(b, url);
	if (role == FQB_ROLE_RECEIVER || role == FQB_ROLE_PONGER) {
		argv_add(b, "--bind");
	} else {
		argv_add(b, "--connect");
		if (impl != IMPL_MEMSET)
			argv_add(b, "--hold");
	}
	argv_num(b, "--size", "%.0f", (double)size);
	argv_num(b, "--parts", "%.0f", (double)cfg->parts);
	if (cfg->count > 0) {
		char *slot = b->store[b->ns++];

		snprintf(slot, sizeof(b->store[0]), "%llu", (unsigned long long)cfg->count);
		argv_add(b, "--count");
		argv_add(b, slot);
	} else {
		argv_num(b, "--duration", "%.6f", cfg->duration);
	}
	argv_num(b, "--timeout", "%.3f", cfg->timeout);
	if (cfg->adopt && impl == IMPL_FABRIQ && role == FQB_ROLE_SENDER)
		argv_add(b, "--adopt");
	if (cfg->fill && (role == FQB_ROLE_SENDER || role == FQB_ROLE_PINGER))
		argv_add(b, "--memset");
	if (cfg->hwm >= 0)
		argv_num(b, "--hwm", "%.0f", (double)cfg->hwm);
	if ((impl == IMPL_OFI || impl == IMPL_OFI_READ) && cfg->ofi_provider != NULL) {
		argv_add(b, "--ofi-provider");
		argv_add(b, cfg->ofi_provider);
	}
	if ((impl == IMPL_OFI || impl == IMPL_OFI_READ) && cfg->ofi_spin >= 0)
		argv_num(b, "--ofi-spin", "%.0f", (double)cfg->ofi_spin);
}

static double get(const char *line, const char *key)
{
	double v;

	return fqb_report_get(line, key, &v) == 0 ? v : FQB_NA;
}

static void no_ratios(fqb_result *r)
{
	r->ratio = r->ratio_ring = r->ratio_iox = r->ratio_futex = r->ratio_memset = FQB_NA;
	r->ratio_ofi = r->ratio_ofi_read = r->ratio_nn = FQB_NA;
	r->mr_setup = r->mr_steady = FQB_NA;
}

/* Turn the two sides' report lines into a result row. False if they make no sense. */
static bool fill_result(fqb_result *r, fqb_pattern pattern, const char *measuring,
                        const char *other)
{
	r->count = (uint64_t)get(measuring, "count");
	r->seconds = get(measuring, "seconds");
	r->bytes_per_s = r->lat_p50_us = r->lat_p99_us = r->lat_mean_us = r->lat_max_us = FQB_NA;
	r->msgs_per_s = r->seconds > 0 ? (double)r->count / r->seconds : FQB_NA;
	no_ratios(r);
	if (pattern == FQB_THR) {
		double sent = get(other, "count");

		r->cpu_s_receiver = get(measuring, "cpu");
		r->cpu_s_sender = get(other, "cpu");
		if (r->msgs_per_s >= 0)
			r->bytes_per_s = r->msgs_per_s * (double)r->size * (double)r->parts;
		if (sent != (double)r->count) {
			fprintf(stderr,
			        "fq-bench: the sender sent %.0f messages, the receiver got "
			        "%llu\n",
			        sent, (unsigned long long)r->count);
			return false;
		}
	} else {
		r->cpu_s_sender = get(measuring, "cpu");
		r->cpu_s_receiver = get(other, "cpu");
		r->lat_p50_us = get(measuring, "p50");
		r->lat_p99_us = get(measuring, "p99");
		r->lat_mean_us = get(measuring, "mean");
		r->lat_max_us = get(measuring, "max");
	}
	/* The ofi baselines count their memory registrations on both sides. */
	if (get(measuring, "mr") >= 0 && get(other, "mr") >= 0) {
		r->mr_setup = get(measuring, "mr") + get(other, "mr");
		r->mr_steady = get(measuring, "mr_steady") + get(other, "mr_steady");
	}
	return true;
}

#ifdef FQB_HAVE_ICEORYX
/* Runs of this parent so far: each iceoryx run gets topics of its own. */
static unsigned iox_runs;
#endif

/* The memset reference: one child on the sender's CPU. True and *r filled on success. */
static bool run_memset(const config *cfg, size_t size, fqb_result *r)
{
	uint64_t deadline = fqb_now_ns() + (uint64_t)((cfg->timeout + cfg->duration) * 1e9);
	fqb_child kid;
	argv_buf args;

	child_args(&args, cfg, IMPL_MEMSET, "none", FQB_ROLE_SENDER, "none://", size);
	if (fqb_child_spawn(&kid, "memset", self_exe, args.v, cfg->cpus[0], false, -1) != 0)
		return false;
	if (!fqb_children_finish(&kid, 1, deadline)) {
		fqb_child_explain(&kid);
		return false;
	}
	r->count = (uint64_t)get(kid.result, "count");
	r->seconds = get(kid.result, "seconds");
	r->msgs_per_s = r->seconds > 0 ? (double)r->count / r->seconds : FQB_NA;
	r->bytes_per_s = r->msgs_per_s >= 0 ? r->msgs_per_s * (double)size : FQB_NA;
	r->lat_p50_us = r->lat_p99_us = r->lat_mean_us = r->lat_max_us = FQB_NA;
	r->cpu_s_sender = get(kid.result, "cpu");
	r->cpu_s_receiver = FQB_NA;
	no_ratios(r);
	return true;
}

static const char *ofi_provider(const config *cfg)
{
	return cfg->ofi_provider ? cfg->ofi_provider : FQB_OFI_DEFAULT_PROVIDER;
}

/* One run: both sides as child processes. True and *r filled on success. */
static bool run_case(const config *cfg, impl_kind impl, const char *transport, const char *scheme,
                     fqb_pattern pattern, size_t size, fqb_result *r)
{
	const fqb_role binder = pattern == FQB_THR ? FQB_ROLE_RECEIVER : FQB_ROLE_PONGER;
	const fqb_role connecter = pattern == FQB_THR ? FQB_ROLE_SENDER : FQB_ROLE_PINGER;
	char url[FQB_URL_MAX], dir[PATH_MAX] = "";
	uint64_t deadline;
	fqb_child kids[2];
	argv_buf args;
	bool ok = false, spawned[2] = {false, false};
	int mem_fd = -1;

	memset(r, 0, sizeof(*r));
	snprintf(r->impl, sizeof(r->impl), "%s", impl_names[impl]);
	snprintf(r->transport, sizeof(r->transport), "%s",
	         impl == IMPL_FABRIQ                         ? transport
	         : impl == IMPL_OFI || impl == IMPL_OFI_READ ? ofi_provider(cfg)
	                                                     : impl_transports[impl]);
	snprintf(r->url_scheme, sizeof(r->url_scheme), "%s", scheme);
	r->pattern = pattern;
	r->size = size;
	r->parts = cfg->parts;
	r->fill = cfg->fill && impl != IMPL_FUTEX;
	if (pattern == FQB_THR)
		r->zero_copy = impl == IMPL_ZMQ  ? size >= FQB_ZMQ_ZERO_COPY_MIN
		               : impl == IMPL_NN ? size >= FQB_NN_ZERO_COPY_MIN && cfg->parts == 1
		               : impl == IMPL_FABRIQ ? cfg->adopt
		                                     : true;
	if (impl == IMPL_MEMSET) {
		r->zero_copy = false;
		ok = run_memset(cfg, size, r);
		goto out_url;
	}

	if (impl == IMPL_RING || impl == IMPL_FUTEX) {
		/* One shared file per run, inherited by both sides under the same number. */
		mem_fd = impl == IMPL_RING ? fqb_ring_create() : fqb_futex_create();
		if (mem_fd < 0) {
			fprintf(stderr, "fq-bench: memfd_create: %s\n", strerror(errno));
			goto out_url;
		}
		snprintf(url, sizeof(url), "%s://%d",
		         impl == IMPL_RING ? FQB_RING_SCHEME : FQB_FUTEX_SCHEME, mem_fd);
	} else if (impl == IMPL_OFI || impl == IMPL_OFI_READ) {
#ifdef FQB_HAVE_OFI
		/* The set-up file both sides write their endpoint names into. */
		mem_fd = fqb_ofi_create();
		if (mem_fd < 0) {
			fprintf(stderr, "fq-bench: memfd_create: %s\n", strerror(errno));
			goto out_url;
		}
		snprintf(url, sizeof(url), "%s://%d", FQB_OFI_SCHEME, mem_fd);
#endif
	} else if (impl == IMPL_IOX) {
#ifdef FQB_HAVE_ICEORYX
		fqb_iox_url(url, sizeof(url), ++iox_runs);
#endif
	} else if (cfg->url != NULL) {
		snprintf(url, sizeof(url), "%s", cfg->url);
	} else if (make_url(scheme, url, sizeof(url), dir, sizeof(dir)) != 0) {
		return false;
	}
	deadline = fqb_now_ns() + (uint64_t)((cfg->timeout + cfg->duration) * 1e9);

	child_args(&args, cfg, impl, transport, binder, url, size);
	if (fqb_child_spawn(&kids[0], fqb_role_name(binder), self_exe, args.v, cfg->cpus[1], false,
	                    mem_fd) != 0)
		goto out_url;
	spawned[0] = true;
	if (!fqb_child_wait_url(&kids[0], deadline)) {
		fprintf(stderr, "fq-bench: the %s did not bind %s%s%s\n", fqb_role_name(binder),
		        url, kids[0].error[0] ? ": " : "", kids[0].error);
		fqb_child_kill(&kids[0]);
		goto out_url;
	}
	child_args(&args, cfg, impl, transport, connecter, kids[0].url, size);
	if (fqb_child_spawn(&kids[1], fqb_role_name(connecter), self_exe, args.v, cfg->cpus[0],
	                    true, mem_fd) != 0) {
		fqb_child_kill(&kids[0]);
		goto out_url;
	}
	spawned[1] = true;
	if (!fqb_children_finish(kids, 2, deadline)) {
		fqb_child_explain(&kids[0]);
		fqb_child_explain(&kids[1]);
		goto out_url;
	}
	ok = fill_result(r, pattern, pattern == FQB_THR ? kids[0].result : kids[1].result,
	                 pattern == FQB_THR ? kids[1].result : kids[0].result);
out_url:
	remove_url(dir);
	if (mem_fd >= 0)
		close(mem_fd);
#ifdef FQB_HAVE_ICEORYX
	/* A side that was killed leaves its iceoryx socket in /tmp. */
	if (impl == IMPL_IOX) {
		if (spawned[0])
			fqb_iox_forget(binder, kids[0].pid);
		if (spawned[1])
			fqb_iox_forget(connecter, kids[1].pid);
	}
#else
	(void)spawned;
#endif
	if (!ok)
		fprintf(stderr, "fq-bench: %s %s %s %s %zu bytes x %zu: run failed\n", r->impl,
		        transport, scheme, fqb_pattern_name(pattern), size, cfg->parts);
	return ok;
}

/*
 * Raw results, measured once per case and reused for every transport: libzmq and libnanomsg
 * per scheme, the ring, iceoryx and memset (which have no scheme of their own) once per pattern
 * and size, the futex once (lat, size 0).
 */
typedef struct baseline_cache {
	struct {
		impl_kind impl;
		char scheme[8];
		fqb_pattern pattern;
		size_t size;
		bool ok;
		fqb_result r;
	} e[MAX_SIZES * 2 * (2 * MAX_SCHEMES + 6)];
	int n;
} baseline_cache;

static const char *baseline_scheme(impl_kind impl, const char *scheme)
{
	switch (impl) {
	case IMPL_RING:
		return FQB_RING_SCHEME;
	case IMPL_FUTEX:
		return FQB_FUTEX_SCHEME;
	case IMPL_IOX:
		return "iox";
	case IMPL_MEMSET:
		return "none";
	case IMPL_OFI:
	case IMPL_OFI_READ:
		return "memfd";
	default:
		return scheme;
	}
}

static const fqb_result *baseline(const config *cfg, baseline_cache *bc, impl_kind impl,
                                  const char *scheme, fqb_pattern pattern, size_t size, bool *fresh)
{
	int i;

	*fresh = false;
	scheme = baseline_scheme(impl, scheme);
	if (impl == IMPL_FUTEX)
		size = 0; /* no payload: one row per run */
	for (i = 0; i < bc->n; i++) {
		if (bc->e[i].impl == impl && strcmp(bc->e[i].scheme, scheme) == 0 &&
		    bc->e[i].pattern == pattern && bc->e[i].size == size)
			return bc->e[i].ok ? &bc->e[i].r : NULL;
	}
	if (bc->n == (int)(sizeof(bc->e) / sizeof(bc->e[0])))
		return NULL;
	i = bc->n++;
	bc->e[i].impl = impl;
	snprintf(bc->e[i].scheme, sizeof(bc->e[i].scheme), "%s", scheme);
	bc->e[i].pattern = pattern;
	bc->e[i].size = size;
	bc->e[i].ok = run_case(cfg, impl, impl == IMPL_ZMQ ? "zeromq" : impl_names[impl], scheme,
	                       pattern, size, &bc->e[i].r);
	*fresh = bc->e[i].ok;
	return bc->e[i].ok ? &bc->e[i].r : NULL;
}

/* The ratio columns the table shows. */
static unsigned table_cols(const config *cfg)
{
	return ((cfg->baseline & BASE_ZMQ) ? FQB_COL_RAW : 0) |
	       ((cfg->baseline & BASE_NN) ? FQB_COL_NN : 0) |
	       ((cfg->baseline & BASE_RING) ? FQB_COL_RING : 0) |
	       ((cfg->baseline & BASE_IOX) ? FQB_COL_IOX : 0) |
	       ((cfg->baseline & BASE_FUTEX) && cfg->patterns[FQB_LAT] ? FQB_COL_FUTEX : 0) |
	       (cfg->fill && cfg->patterns[FQB_THR] ? FQB_COL_MEMSET : 0) |
	       ((cfg->baseline & BASE_OFI) ? FQB_COL_OFI | FQB_COL_MR : 0) |
	       ((cfg->baseline & BASE_OFI) && cfg->patterns[FQB_THR] ? FQB_COL_OFI_READ : 0);
}

static void print_row(const config *cfg, const fqb_result *r)
{
	if (cfg->json)
		fqb_json_row(stdout, r);
	else
		fqb_table_row(stdout, r, table_cols(cfg));
}

static int scheme_of(const char *url, char *out, size_t len)
{
	const char *sep = strstr(url, "://");

	if (sep == NULL || (size_t)(sep - url) >= len)
		return -1;
	memcpy(out, url, (size_t)(sep - url));
	out[sep - url] = '\0';
	return 0;
}

/* fabriq's figure over a raw one: the message rate for thr, the median latency for lat. */
static double ratio_of(const fqb_result *fq, const fqb_result *raw)
{
	if (raw != NULL && fq->pattern == FQB_THR && raw->msgs_per_s > 0)
		return fq->msgs_per_s / raw->msgs_per_s;
	if (raw != NULL && fq->pattern == FQB_LAT && raw->lat_p50_us > 0)
		return fq->lat_p50_us / raw->lat_p50_us;
	return FQB_NA;
}

/* A row's bytes per second over the memset reference's (thr). */
static double memset_ratio(const fqb_result *r, const fqb_result *ref)
{
	if (ref == NULL || r == NULL || r->pattern != FQB_THR || r->bytes_per_s < 0 ||
	    !(ref->bytes_per_s > 0))
		return FQB_NA;
	return r->bytes_per_s / ref->bytes_per_s;
}

/* The baselines of one case, in the order of their rows. */
enum { B_ZMQ, B_NN, B_RING, B_IOX, B_FUTEX, B_OFI, B_OFI_READ, B_MEMSET, N_B };

/*
 * One case on fabriq, and on the raw implementations of --baseline (libzmq and libnanomsg on
 * the tcp and ipc schemes, the others on any) and the memset reference (--memset, thr); prints
 * the rows, each raw one the first time it is measured. Returns failures.
 */
static int run_one(const config *cfg, baseline_cache *bc, const char *transport, const char *scheme,
                   fqb_pattern p, size_t size)
{
	const bool tcp_ipc = strcmp(scheme, "tcp") == 0 || strcmp(scheme, "ipc") == 0;
	const impl_kind kinds[N_B] = {IMPL_ZMQ,   IMPL_NN,  IMPL_RING,     IMPL_IOX,
	                              IMPL_FUTEX, IMPL_OFI, IMPL_OFI_READ, IMPL_MEMSET};
	const bool want[N_B] = {
	    (cfg->baseline & BASE_ZMQ) && tcp_ipc,
	    (cfg->baseline & BASE_NN) && tcp_ipc,
	    (cfg->baseline & BASE_RING) != 0,
	    (cfg->baseline & BASE_IOX) != 0,
	    (cfg->baseline & BASE_FUTEX) && p == FQB_LAT,
	    (cfg->baseline & BASE_OFI) != 0,
	    (cfg->baseline & BASE_OFI) && p == FQB_THR,
	    cfg->fill && p == FQB_THR,
	};
	const fqb_result *raw[N_B] = {NULL};
	bool fresh[N_B] = {false};
	int failures = 0;
	fqb_result r;
	bool ok;

	if (cfg->baseline_first) {
		for (int b = 0; b < N_B; b++) {
			if (want[b])
				failures += (raw[b] = baseline(cfg, bc, kinds[b], scheme, p, size,
				                               &fresh[b])) == NULL;
		}
	}
	ok = run_case(cfg, IMPL_FABRIQ, transport, scheme, p, size, &r);
	if (!ok)
		failures++;
	if (ok && !cfg->baseline_first) {
		for (int b = 0; b < N_B; b++) {
			if (want[b])
				failures += (raw[b] = baseline(cfg, bc, kinds[b], scheme, p, size,
				                               &fresh[b])) == NULL;
		}
	}
	if (ok) {
		r.ratio = ratio_of(&r, raw[B_ZMQ]);
		r.ratio_nn = ratio_of(&r, raw[B_NN]);
		r.ratio_ring = ratio_of(&r, raw[B_RING]);
		r.ratio_iox = ratio_of(&r, raw[B_IOX]);
		r.ratio_futex = ratio_of(&r, raw[B_FUTEX]);
		r.ratio_ofi = ratio_of(&r, raw[B_OFI]);
		r.ratio_ofi_read = ratio_of(&r, raw[B_OFI_READ]);
		r.ratio_memset = memset_ratio(&r, raw[B_MEMSET]);
		print_row(cfg, &r);
	}
	for (int b = 0; b < N_B; b++) {
		if (fresh[b]) {
			fqb_result shown = *raw[b];

			if (b != B_MEMSET)
				shown.ratio_memset = memset_ratio(&shown, raw[B_MEMSET]);
			print_row(cfg, &shown);
		}
	}
	return failures;
}

static int run_all(config *cfg)
{
	const char *transports[MAX_TRANSPORTS];
	static baseline_cache bc;
	char url_scheme[16];
	int n_transports = 0, failures = 0, runs = 0;

	if (readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1) < 0) {
		fprintf(stderr, "fq-bench: cannot find my own executable: %s\n", strerror(errno));
		return FQB_EXIT_FAILURE;
	}
	if (cfg->url != NULL && scheme_of(cfg->url, url_scheme, sizeof(url_scheme)) != 0)
		return usage_error("malformed --url '%s' (scheme://...)", cfg->url);
	if (cfg->transport == NULL || strcmp(cfg->transport, "all") == 0) {
		for (size_t i = 0; i < fq_transport_count() && n_transports < MAX_TRANSPORTS; i++) {
			const char *name = fq_transport_name_at(i);
			int rc = fq_transport_probe(name);

			if (rc == 0)
				transports[n_transports++] = name;
			else
				fprintf(stderr, "fq-bench: skipping transport %s: %s\n", name,
				        fq_strerror(rc));
		}
	} else {
		int rc = fq_transport_probe(cfg->transport);

		if (rc != 0) {
			fprintf(stderr, "fq-bench: transport %s: %s\n", cfg->transport,
			        fq_strerror(rc));
			return rc == FQ_ENOENT ? FQB_EXIT_USAGE : FQB_EXIT_FAILURE;
		}
		transports[n_transports++] = cfg->transport;
	}
	if (n_transports == 0) {
		fprintf(stderr, "fq-bench: no usable transport\n");
		return FQB_EXIT_FAILURE;
	}
	if ((cfg->baseline & BASE_FUTEX) && cfg->patterns[FQB_THR])
		fprintf(stderr, "fq-bench: --baseline futex measures lat only: no futex row for "
		                "thr\n");
	if ((cfg->baseline & BASE_IOX) && !have_iceoryx) {
		fprintf(stderr, "fq-bench: --baseline iceoryx skipped: this fq-bench was built "
		                "without iceoryx (FQ_BENCH_ICEORYX; Debian package "
		                "libiceoryx-binding-c-dev)\n");
		cfg->baseline &= ~(unsigned)BASE_IOX;
	}
#ifdef FQB_HAVE_ICEORYX
	if (cfg->baseline & BASE_IOX) {
		char why[256] = "";
		int rc =
		    fqb_iox_start(cfg->sizes, cfg->n_sizes, cfg->parts, cfg->hwm, why, sizeof(why));

		if (rc != 0) {
			if (rc > 0) {
				fprintf(stderr, "fq-bench: --baseline iceoryx skipped: %s\n", why);
			} else {
				fprintf(stderr,
				        "fq-bench: --baseline iceoryx: no RouDi, no iceoryx "
				        "rows\n");
				failures++;
			}
			cfg->baseline &= ~(unsigned)BASE_IOX;
		}
	}
#endif
	if ((cfg->baseline & BASE_NN) && !have_nanomsg) {
		fprintf(stderr, "fq-bench: --baseline nanomsg skipped: this fq-bench was built "
		                "without libnanomsg (Debian package libnanomsg-dev)\n");
		cfg->baseline &= ~(unsigned)BASE_NN;
	}
	if ((cfg->baseline & BASE_OFI) && !have_ofi) {
		fprintf(stderr, "fq-bench: --baseline ofi skipped: this fq-bench was built without "
		                "libfabric (Debian package libfabric-dev)\n");
		cfg->baseline &= ~(unsigned)BASE_OFI;
	}
	if ((cfg->baseline & BASE_OFI) && cfg->parts != 1) {
		fprintf(stderr, "fq-bench: --baseline ofi skipped: it sends single-part messages "
		                "only (--parts 1)\n");
		cfg->baseline &= ~(unsigned)BASE_OFI;
	}
	if (!cfg->json)
		fqb_table_header(stdout, table_cols(cfg));

	for (int ti = 0; ti < n_transports; ti++) {
		const char *schemes[MAX_SCHEMES];
		int n_schemes = 0;

		if (cfg->url != NULL) {
			schemes[n_schemes++] = url_scheme;
		} else if (cfg->n_schemes > 0) {
			for (int i = 0; i < cfg->n_schemes; i++)
				schemes[n_schemes++] = cfg->schemes[i];
		} else if (scheme_served(cfg, transports[ti], "tcp")) {
			schemes[n_schemes++] = "tcp";
		} else if (scheme_served(cfg, transports[ti], "ipc")) {
			schemes[n_schemes++] = "ipc";
		} else {
			fprintf(stderr,
			        "fq-bench: transport %s serves neither tcp nor ipc: give --url\n",
			        transports[ti]);
			failures++;
			continue;
		}
		for (int si = 0; si < n_schemes; si++) {
			for (int p = FQB_THR; p <= FQB_LAT; p++) {
				if (!cfg->patterns[p])
					continue;
				for (int zi = 0; zi < cfg->n_sizes; zi++) {
					runs++;
					failures += run_one(cfg, &bc, transports[ti], schemes[si],
					                    (fqb_pattern)p, cfg->sizes[zi]);
				}
			}
		}
	}
#ifdef FQB_HAVE_ICEORYX
	fqb_iox_stop();
#endif
	if (runs == 0 && failures == 0)
		return FQB_EXIT_FAILURE;
	return failures ? FQB_EXIT_FAILURE : FQB_EXIT_OK;
}

int main(int argc, char **argv)
{
	config cfg;
	int rc = parse_args(argc, argv, &cfg);

	if (rc >= 0)
		return rc;
	if (cfg.role != FQB_ROLE_NONE)
		return run_role(&cfg);
	return run_all(&cfg);
}
