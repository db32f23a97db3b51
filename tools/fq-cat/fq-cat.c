/*
 * fq-cat: send and receive fabriq messages from the command line, for trying things out,
 * scripting and tests. One socket per process; its type decides the role:
 *   PUSH, PUB          send the data (--data, --file or stdin) --count times
 *   PULL, SUB          receive and print until --count messages or --recv-timeout
 *   REQ                send each request and print its reply
 *   REP                print each request and answer it with the data (or echo it)
 *   PAIR               send when data is given, else receive
 *
 * Exit status: 0 success, 1 runtime failure (timeout, send/receive error), 2 usage error.
 *
 * SIGINT and SIGTERM are taken by a dedicated thread which interrupts the socket
 * (fq_socket_interrupt), so a stopped fq-cat still closes its socket properly and removes
 * the ipc files it bound; another signal a second later ends the process at once.
 */
#include <fabriq/fabriq.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2

/* Returned by the run loops when a signal stopped them (not an FQ_ code: those are < 0). */
#define STOPPED 100

enum format { FMT_RAW, FMT_ASCII, FMT_QUOTED, FMT_HEX };

/* One --data or --file argument, in command-line order: a message, or a part with --parts. */
struct item {
	const char *path;          /* --file argument ("-" is stdin), NULL for --data */
	const unsigned char *data; /* the bytes to send */
	size_t size;
	unsigned char *owned; /* buffer to free, when the bytes were read from a file */
};

struct endpoint {
	bool bind;
	const char *url;
};

struct config {
	const char *transport;
	const char *transport_options;
	fq_socket_type type;
	int type_count;
	struct endpoint *endpoints;
	size_t n_endpoints;
	const char **subscriptions;
	size_t n_subscriptions;
	const char **settings;
	size_t n_settings;
	struct item *items;
	size_t n_items;
	bool parts;
	bool count_given;
	uint64_t count; /* 0: forever */
	double interval;
	double delay;
	int64_t recv_timeout_ms; /* -1: not given */
	int64_t send_timeout_ms;
	enum format format;
	int format_count;
	int verbose;
};

/* Formatting goes through a small buffer so that a large message is not printed bytewise. */
struct out {
	char buf[8192];
	size_t n;
	bool failed;
};

/* State of one run: the configuration, the socket, and how many vectors were printed. */
struct ctx {
	const struct config *c;
	fq_transport *t;
	fq_socket *s;
	uint64_t vectors_printed;
	struct out out;
};

/* A received message: a single one (fq_recv) or a vector of parts (fq_recvv). */
struct rx {
	fq_msg *msg;
	fq_parts *parts;
};

/* ---- Stopping on signals ---------------------------------------------------------------- */

/*
 * The signal thread and the main thread share this. `socket` is set only while it may be
 * interrupted: the main thread clears it under the lock before closing the socket, so the
 * signal thread never touches a closed one.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled when `requested` becomes true; CLOCK_MONOTONIC */
	bool requested;
	fq_socket *socket;
} stop = {.lock = PTHREAD_MUTEX_INITIALIZER};

static sigset_t stop_signals;

/* End the process the way `sig` would have without fq-cat's handling. */
static _Noreturn void die_of(int sig)
{
	sigset_t one;

	signal(sig, SIG_DFL);
	sigemptyset(&one);
	sigaddset(&one, sig);
	pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	raise(sig);
	_exit(128 + sig);
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void *signal_main(void *arg)
{
	struct timespec first;
	int sig = 0;
	bool interrupted = false;

	(void)arg;
	if (sigwait(&stop_signals, &sig) != 0)
		return NULL;
	clock_gettime(CLOCK_MONOTONIC, &first);
	pthread_mutex_lock(&stop.lock);
	stop.requested = true;
	if (stop.socket != NULL) {
		fq_socket_interrupt(stop.socket);
		interrupted = true;
	}
	pthread_cond_broadcast(&stop.cond);
	pthread_mutex_unlock(&stop.lock);
	/* No socket to interrupt (setting up, or lingering at exit): nothing to wait for. */
	if (!interrupted)
		die_of(sig);
	for (;;) {
		if (sigwait(&stop_signals, &sig) != 0)
			continue;
		/*
		 * A repeat within a second is the same request delivered twice (timeout(1), for
		 * one, signals its child and then its process group). A later one means: stop
		 * now, without waiting for the linger.
		 */
		if (seconds_since(&first) >= 1.0)
			die_of(sig);
	}
	return NULL;
}

/* Block SIGINT/SIGTERM in every thread (library threads inherit the mask) but one. */
static int start_signal_thread(void)
{
	pthread_condattr_t attr;
	pthread_t thread;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&stop.cond, &attr);
	pthread_condattr_destroy(&attr);

	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &stop_signals, NULL) != 0)
		return -1;
	if (pthread_create(&thread, NULL, signal_main, NULL) != 0)
		return -1;
	pthread_detach(thread);
	return 0;
}

static void stop_watch(fq_socket *s)
{
	pthread_mutex_lock(&stop.lock);
	stop.socket = s;
	if (s != NULL && stop.requested)
		fq_socket_interrupt(s);
	pthread_mutex_unlock(&stop.lock);
}

static bool stop_requested(void)
{
	bool r;

	pthread_mutex_lock(&stop.lock);
	r = stop.requested;
	pthread_mutex_unlock(&stop.lock);
	return r;
}

/* Sleep `seconds`, waking early when a stop is requested. Returns true if stopped. */
static bool sleep_unless_stopped(double seconds)
{
	struct timespec deadline;
	bool r;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)seconds;
	deadline.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&stop.lock);
	while (!stop.requested) {
		if (pthread_cond_timedwait(&stop.cond, &stop.lock, &deadline) == ETIMEDOUT)
			break;
	}
	r = stop.requested;
	pthread_mutex_unlock(&stop.lock);
	return r;
}

/* ---- Command line ----------------------------------------------------------------------- */

enum {
	OPT_TRANSPORT = 256,
	OPT_PUSH,
	OPT_PULL,
	OPT_PUB,
	OPT_SUB,
	OPT_REQ,
	OPT_REP,
	OPT_PAIR,
	OPT_BIND,
	OPT_CONNECT,
	OPT_DATA,
	OPT_FILE,
	OPT_PARTS,
	OPT_COUNT,
	OPT_INTERVAL,
	OPT_DELAY,
	OPT_SUBSCRIBE,
	OPT_RAW,
	OPT_ASCII,
	OPT_QUOTED,
	OPT_HEX,
	OPT_RECV_TIMEOUT,
	OPT_SEND_TIMEOUT,
	OPT_SET,
	OPT_TRANSPORT_OPTIONS,
	OPT_VERSION,
};

static const struct option long_options[] = {
    {"transport", required_argument, NULL, OPT_TRANSPORT},
    {"push", no_argument, NULL, OPT_PUSH},
    {"pull", no_argument, NULL, OPT_PULL},
    {"pub", no_argument, NULL, OPT_PUB},
    {"sub", no_argument, NULL, OPT_SUB},
    {"req", no_argument, NULL, OPT_REQ},
    {"rep", no_argument, NULL, OPT_REP},
    {"pair", no_argument, NULL, OPT_PAIR},
    {"bind", required_argument, NULL, OPT_BIND},
    {"connect", required_argument, NULL, OPT_CONNECT},
    {"data", required_argument, NULL, OPT_DATA},
    {"file", required_argument, NULL, OPT_FILE},
    {"parts", no_argument, NULL, OPT_PARTS},
    {"count", required_argument, NULL, OPT_COUNT},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"delay", required_argument, NULL, OPT_DELAY},
    {"subscribe", required_argument, NULL, OPT_SUBSCRIBE},
    {"raw", no_argument, NULL, OPT_RAW},
    {"ascii", no_argument, NULL, OPT_ASCII},
    {"quoted", no_argument, NULL, OPT_QUOTED},
    {"hex", no_argument, NULL, OPT_HEX},
    {"recv-timeout", required_argument, NULL, OPT_RECV_TIMEOUT},
    {"send-timeout", required_argument, NULL, OPT_SEND_TIMEOUT},
    {"set", required_argument, NULL, OPT_SET},
    {"transport-options", required_argument, NULL, OPT_TRANSPORT_OPTIONS},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: fq-cat SOCKET-TYPE (--bind URL | --connect URL)... [OPTIONS]\n"
	        "\n"
	        "Send or receive fabriq messages from the command line.\n"
	        "\n"
	        "Socket type (exactly one):\n"
	        "  --push --pull --pub --sub --req --rep --pair\n"
	        "Endpoints (at least one, repeatable):\n"
	        "  --bind URL, --connect URL\n"
	        "Sending:\n"
	        "  --data TEXT           a message (repeatable; default: all of stdin)\n"
	        "  --file PATH           a message read from PATH ('-' is stdin; repeatable)\n"
	        "  --parts               send all --data/--file items as one vector of parts;\n"
	        "                        receive vectors and print each part\n"
	        "  --count N             send everything N times (0: forever; default 1);\n"
	        "                        receivers: stop after N messages (default 0: forever)\n"
	        "  --interval SEC        pause between sends (fractions allowed)\n"
	        "  --delay SEC           pause before the first send\n"
	        "  --send-timeout SEC    give up a blocked send after SEC\n"
	        "Receiving:\n"
	        "  --subscribe PREFIX    SUB: receive only messages starting with PREFIX\n"
	        "                        (repeatable; default: everything)\n"
	        "  --recv-timeout SEC    stop when nothing arrives for SEC\n"
	        "  --raw                 print the bytes as they are (default)\n"
	        "  --ascii               one line per message, non-printable bytes as '.'\n"
	        "  --quoted              one C-quoted string per line\n"
	        "  --hex                 one line of hex digits per message\n"
	        "Other:\n"
	        "  --transport NAME      transport (default: zeromq; see fq-info)\n"
	        "  --transport-options S \"key=value,...\" for the transport\n"
	        "  --set OPT=VALUE       socket option (repeatable; see fq-info --options)\n"
	        "  -v, --verbose         more library logging, and print the endpoints\n"
	        "  -h, --help            show this help\n"
	        "      --version         show the version\n"
	        "\n"
	        "Exit status: 0 success, 1 runtime failure, 2 usage error.\n");
}

static bool parse_seconds(const char *text, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	/* !(v >= 0) also rejects NaN; the upper bound keeps conversions to ms in range. */
	if (end == text || *end != '\0' || errno == ERANGE || !(v >= 0) || v > 1e9)
		return false;
	*out = v;
	return true;
}

static bool parse_count(const char *text, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*text == '-' || *text == '\0')
		return false;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (*end != '\0' || errno == ERANGE)
		return false;
	*out = v;
	return true;
}

static int64_t seconds_to_ms(double seconds)
{
	return (int64_t)(seconds * 1000.0 + 0.5);
}

static void set_type(struct config *c, fq_socket_type type)
{
	c->type = type;
	c->type_count++;
}

static void set_format(struct config *c, enum format f)
{
	c->format = f;
	c->format_count++;
}

static bool is_sender(const struct config *c)
{
	switch (c->type) {
	case FQ_PUSH:
	case FQ_PUB:
	case FQ_REQ:
		return true;
	case FQ_PAIR:
		return c->n_items > 0;
	default:
		return false;
	}
}

static const char *option_name(int val)
{
	for (const struct option *o = long_options; o->name != NULL; o++) {
		if (o->val == val)
			return o->name;
	}
	return "?";
}

/* Parse argv into *c. Returns -1 to go on, else the exit status (help, version, errors). */
static int parse_args(int argc, char **argv, struct config *c)
{
	double seconds;
	int opt;

	/*
	 * Every repeatable option consumes at least one argv element, so argc bounds every list:
	 * no growing arrays needed.
	 */
	c->endpoints = calloc((size_t)argc, sizeof(*c->endpoints));
	c->subscriptions = calloc((size_t)argc, sizeof(*c->subscriptions));
	c->settings = calloc((size_t)argc, sizeof(*c->settings));
	c->items = calloc((size_t)argc + 1, sizeof(*c->items)); /* + 1: implicit stdin */
	if (!c->endpoints || !c->subscriptions || !c->settings || !c->items) {
		fprintf(stderr, "fq-cat: out of memory\n");
		return EXIT_RUNTIME;
	}
	c->transport = "zeromq";
	c->recv_timeout_ms = -1;
	c->send_timeout_ms = -1;

	while ((opt = getopt_long(argc, argv, "vh", long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_TRANSPORT:
			c->transport = optarg;
			break;
		case OPT_TRANSPORT_OPTIONS:
			c->transport_options = optarg;
			break;
		case OPT_PUSH:
			set_type(c, FQ_PUSH);
			break;
		case OPT_PULL:
			set_type(c, FQ_PULL);
			break;
		case OPT_PUB:
			set_type(c, FQ_PUB);
			break;
		case OPT_SUB:
			set_type(c, FQ_SUB);
			break;
		case OPT_REQ:
			set_type(c, FQ_REQ);
			break;
		case OPT_REP:
			set_type(c, FQ_REP);
			break;
		case OPT_PAIR:
			set_type(c, FQ_PAIR);
			break;
		case OPT_BIND:
		case OPT_CONNECT:
			c->endpoints[c->n_endpoints++] = (struct endpoint){opt == OPT_BIND, optarg};
			break;
		case OPT_DATA:
			c->items[c->n_items++] = (struct item){
			    .data = (const unsigned char *)optarg, .size = strlen(optarg)};
			break;
		case OPT_FILE:
			c->items[c->n_items++] = (struct item){.path = optarg};
			break;
		case OPT_PARTS:
			c->parts = true;
			break;
		case OPT_COUNT:
			if (!parse_count(optarg, &c->count)) {
				fprintf(stderr, "fq-cat: --count needs a number >= 0, got '%s'\n",
				        optarg);
				return EXIT_USAGE;
			}
			c->count_given = true;
			break;
		case OPT_INTERVAL:
		case OPT_DELAY:
		case OPT_RECV_TIMEOUT:
		case OPT_SEND_TIMEOUT:
			if (!parse_seconds(optarg, &seconds)) {
				fprintf(stderr, "fq-cat: --%s needs seconds >= 0, got '%s'\n",
				        option_name(opt), optarg);
				return EXIT_USAGE;
			}
			if (opt == OPT_INTERVAL)
				c->interval = seconds;
			else if (opt == OPT_DELAY)
				c->delay = seconds;
			else if (opt == OPT_RECV_TIMEOUT)
				c->recv_timeout_ms = seconds_to_ms(seconds);
			else
				c->send_timeout_ms = seconds_to_ms(seconds);
			break;
		case OPT_SUBSCRIBE:
			c->subscriptions[c->n_subscriptions++] = optarg;
			break;
		case OPT_RAW:
			set_format(c, FMT_RAW);
			break;
		case OPT_ASCII:
			set_format(c, FMT_ASCII);
			break;
		case OPT_QUOTED:
			set_format(c, FMT_QUOTED);
			break;
		case OPT_HEX:
			set_format(c, FMT_HEX);
			break;
		case OPT_SET:
			if (strchr(optarg, '=') == NULL || optarg[0] == '=') {
				fprintf(stderr, "fq-cat: --set needs OPT=VALUE, got '%s'\n",
				        optarg);
				return EXIT_USAGE;
			}
			c->settings[c->n_settings++] = optarg;
			break;
		case 'v':
			c->verbose++;
			break;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		case OPT_VERSION:
			printf("fq-cat (fabriq) %s\n", fq_version());
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fq-cat: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (c->type_count != 1) {
		fprintf(stderr, "fq-cat: give exactly one socket type "
		                "(--push --pull --pub --sub --req --rep --pair)\n");
		return EXIT_USAGE;
	}
	if (c->n_endpoints == 0) {
		fprintf(stderr, "fq-cat: give at least one --bind or --connect\n");
		return EXIT_USAGE;
	}
	if (c->format_count > 1) {
		fprintf(stderr, "fq-cat: give at most one of --raw --ascii --quoted --hex\n");
		return EXIT_USAGE;
	}
	if (c->n_subscriptions > 0 && c->type != FQ_SUB) {
		fprintf(stderr, "fq-cat: --subscribe is for --sub sockets\n");
		return EXIT_USAGE;
	}
	if (c->n_items > 0 && (c->type == FQ_PULL || c->type == FQ_SUB)) {
		fprintf(stderr, "fq-cat: --%s sockets cannot send: drop --data/--file\n",
		        fq_socket_type_name(c->type));
		return EXIT_USAGE;
	}
	if (c->type == FQ_REP && c->n_items > 1 && !c->parts) {
		fprintf(stderr, "fq-cat: a reply is one message: give one --data/--file, "
		                "or --parts to reply with all of them as one vector\n");
		return EXIT_USAGE;
	}
	if (!c->count_given)
		c->count = is_sender(c) ? 1 : 0;
	/* A sending socket without data sends all of stdin as one message. */
	if (c->n_items == 0 && is_sender(c))
		c->items[c->n_items++] = (struct item){.path = "-"};
	return -1;
}

/* ---- Data to send ----------------------------------------------------------------------- */

static int read_all(FILE *f, unsigned char **out, size_t *len)
{
	size_t cap = 64 * 1024, n = 0;
	unsigned char *buf = malloc(cap);

	if (buf == NULL)
		return ENOMEM;
	for (;;) {
		size_t got;

		if (n == cap) {
			unsigned char *grown = realloc(buf, cap * 2);

			if (grown == NULL) {
				free(buf);
				return ENOMEM;
			}
			buf = grown;
			cap *= 2;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0) {
			if (ferror(f)) {
				int e = errno != 0 ? errno : EIO;

				free(buf);
				return e;
			}
			break;
		}
	}
	*out = buf;
	*len = n;
	return 0;
}

/* Read every --file (and stdin, once, however often "-" is named). */
static int load_items(struct config *c)
{
	const struct item *from_stdin = NULL;

	for (size_t i = 0; i < c->n_items; i++) {
		struct item *it = &c->items[i];
		FILE *f;
		int e;

		if (it->path == NULL)
			continue;
		if (strcmp(it->path, "-") == 0 && from_stdin != NULL) {
			it->data = from_stdin->data;
			it->size = from_stdin->size;
			continue;
		}
		f = strcmp(it->path, "-") == 0 ? stdin : fopen(it->path, "rb");
		if (f == NULL) {
			fprintf(stderr, "fq-cat: %s: %s\n", it->path, strerror(errno));
			return EXIT_RUNTIME;
		}
		errno = 0;
		e = read_all(f, &it->owned, &it->size);
		if (f != stdin)
			fclose(f);
		if (e != 0) {
			fprintf(stderr, "fq-cat: %s: %s\n",
			        strcmp(it->path, "-") == 0 ? "stdin" : it->path, strerror(e));
			return EXIT_RUNTIME;
		}
		it->data = it->owned;
		if (f == stdin)
			from_stdin = it;
	}
	return 0;
}

/* A fresh message with the item's bytes: every send gives its message away. */
static int make_msg(fq_transport *t, const struct item *it, fq_msg **out)
{
	int rc = fq_msg_alloc(t, it->size, out);

	if (rc == 0 && it->size > 0)
		memcpy(fq_msg_data(*out), it->data, it->size);
	return rc;
}

/* Send n items: each as one message, or (--parts) all as one vector. */
static int send_items(struct ctx *x, const struct item *items, size_t n)
{
	fq_msg **v;
	int rc = 0;

	if (!x->c->parts) {
		for (size_t i = 0; i < n && rc == 0; i++) {
			fq_msg *m;

			rc = make_msg(x->t, &items[i], &m);
			if (rc != 0)
				break;
			rc = fq_send(x->s, &m, 0);
			fq_msg_free(m); /* still ours if the send failed; NULL if it succeeded */
		}
		return rc;
	}
	v = calloc(n, sizeof(*v));
	if (v == NULL)
		return FQ_ENOMEM;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = make_msg(x->t, &items[i], &v[i]);
	if (rc == 0)
		rc = fq_sendv(x->s, v, n, 0);
	for (size_t i = 0; i < n; i++)
		fq_msg_free(v[i]); /* all NULL after a successful send */
	free(v);
	return rc;
}

/* ---- Output ----------------------------------------------------------------------------- */

static void out_flush(struct out *o)
{
	if (o->n > 0 && fwrite(o->buf, 1, o->n, stdout) != o->n)
		o->failed = true;
	o->n = 0;
}

static void out_str(struct out *o, const char *s, size_t len)
{
	if (o->n + len > sizeof(o->buf))
		out_flush(o);
	memcpy(o->buf + o->n, s, len);
	o->n += len;
}

static void out_char(struct out *o, char ch)
{
	out_str(o, &ch, 1);
}

static void format_begin(struct out *o, enum format f)
{
	if (f == FMT_QUOTED)
		out_char(o, '"');
}

static void format_end(struct out *o, enum format f)
{
	if (f == FMT_QUOTED)
		out_str(o, "\"\n", 2);
	else if (f != FMT_RAW)
		out_char(o, '\n');
}

static void format_body(struct out *o, enum format f, const unsigned char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char esc[4];

	if (f == FMT_RAW) {
		out_flush(o);
		if (n > 0 && fwrite(p, 1, n, stdout) != n)
			o->failed = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char b = p[i];
		bool printable = b >= 0x20 && b < 0x7f;

		switch (f) {
		case FMT_ASCII:
			out_char(o, printable ? (char)b : '.');
			break;
		case FMT_HEX:
			out_char(o, digits[b >> 4]);
			out_char(o, digits[b & 0xf]);
			break;
		case FMT_QUOTED:
			if (b == '"' || b == '\\') {
				out_char(o, '\\');
				out_char(o, (char)b);
			} else if (b == '\n') {
				out_str(o, "\\n", 2);
			} else if (b == '\r') {
				out_str(o, "\\r", 2);
			} else if (b == '\t') {
				out_str(o, "\\t", 2);
			} else if (printable) {
				out_char(o, (char)b);
			} else {
				/* Three octal digits: unlike \x, C ends them unambiguously. */
				esc[0] = '\\';
				esc[1] = (char)('0' + (b >> 6));
				esc[2] = (char)('0' + ((b >> 3) & 7));
				esc[3] = (char)('0' + (b & 7));
				out_str(o, esc, 4);
			}
			break;
		case FMT_RAW:
			break;
		}
	}
}

/*
 * Print what was received. A single message, or a vector without --parts, is one message
 * (parts concatenated). With --parts each part is one line and a line "--" separates
 * vectors; --raw never adds bytes of its own.
 * Returns 0, or the errno of a failed write wrapped as an FQ_ system error.
 */
static int print_rx(struct ctx *x, struct rx *rx)
{
	enum format f = x->c->format;
	struct out *o = &x->out;
	int rc = 0;

	o->n = 0;
	o->failed = false;
	errno = 0;
	if (rx->msg != NULL) {
		format_begin(o, f);
		format_body(o, f, fq_msg_data(rx->msg), fq_msg_size(rx->msg));
		format_end(o, f);
	} else {
		size_t n = fq_parts_count(rx->parts);
		bool each = x->c->parts;

		if (each && f != FMT_RAW && x->vectors_printed > 0)
			out_str(o, "--\n", 3);
		if (!each)
			format_begin(o, f);
		for (size_t i = 0; i < n; i++) {
			fq_msg *m = fq_parts_at(rx->parts, i);

			if (each)
				format_begin(o, f);
			format_body(o, f, fq_msg_data(m), fq_msg_size(m));
			if (each)
				format_end(o, f);
		}
		if (!each)
			format_end(o, f);
	}
	out_flush(o);
	/* Flush per message: a reader at the other end of a pipe sees messages as they come. */
	if (fflush(stdout) != 0 || o->failed)
		rc = FQ_ESYS_BASE - (errno != 0 ? errno : EIO);
	x->vectors_printed++;
	return rc;
}

/* ---- Running ---------------------------------------------------------------------------- */

static void report(const char *what, int rc)
{
	fprintf(stderr, "fq-cat: %s: %s (%s)\n", what, fq_strerror(rc), fq_err_name(rc));
}

static void rx_free(struct rx *rx)
{
	fq_msg_free(rx->msg);
	fq_parts_free(rx->parts);
	rx->msg = NULL;
	rx->parts = NULL;
}

/* Receive one message (or vector) and print it; the caller frees *rx. */
static int receive_one(struct ctx *x, struct rx *rx)
{
	int rc = FQ_EPARTS;

	rx->msg = NULL;
	rx->parts = NULL;
	if (!x->c->parts)
		rc = fq_recv(x->s, &rx->msg, 0);
	/* A vector arriving without --parts is still shown, as one message. */
	if (rc == FQ_EPARTS)
		rc = fq_recvv(x->s, &rx->parts, 0);
	if (rc == 0)
		rc = print_rx(x, rx);
	return rc;
}

/* REP: answer with the data given, or send the request back. */
static int reply(struct ctx *x, struct rx *rx)
{
	size_t n;
	fq_msg **v;
	int rc;

	if (x->c->n_items > 0)
		return send_items(x, x->c->items, x->c->parts ? x->c->n_items : 1);
	if (rx->msg != NULL)
		return fq_send(x->s, &rx->msg, 0); /* on failure rx still holds it */
	n = fq_parts_count(rx->parts);
	v = calloc(n > 0 ? n : 1, sizeof(*v));
	if (v == NULL)
		return FQ_ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = fq_parts_take(rx->parts, i);
	rc = fq_sendv(x->s, v, n, 0);
	for (size_t i = 0; i < n; i++)
		fq_msg_free(v[i]);
	free(v);
	return rc;
}

static int run_receiver(struct ctx *x)
{
	const struct config *c = x->c;
	uint64_t received = 0;
	struct rx rx = {NULL, NULL};
	int rc;

	while (c->count == 0 || received < c->count) {
		rc = receive_one(x, &rx);
		if (rc == FQ_ETIMEDOUT) {
			rx_free(&rx);
			/* The end of a stream is a success once something arrived, unless more
			 * was asked for. */
			if (received == 0 || c->count > 0) {
				fprintf(stderr,
				        "fq-cat: receive timed out after %" PRIu64 " message%s\n",
				        received, received == 1 ? "" : "s");
				return EXIT_RUNTIME;
			}
			return EXIT_SUCCESS;
		}
		if (rc == FQ_EINTR && stop_requested()) {
			rx_free(&rx);
			return STOPPED;
		}
		if (rc != 0) {
			rx_free(&rx);
			report(FQ_IS_SYSERR(rc) ? "writing output" : "receive", rc);
			return EXIT_RUNTIME;
		}
		received++;
		if (c->type == FQ_REP) {
			rc = reply(x, &rx);
			if (rc != 0) {
				rx_free(&rx);
				if (rc == FQ_EINTR && stop_requested())
					return STOPPED;
				report("reply", rc);
				return EXIT_RUNTIME;
			}
		}
		rx_free(&rx);
	}
	return EXIT_SUCCESS;
}

static int run_sender(struct ctx *x)
{
	const struct config *c = x->c;
	size_t units = c->parts ? 1 : c->n_items;
	size_t per_unit = c->parts ? c->n_items : 1;
	bool first = true;
	struct rx rx = {NULL, NULL};
	int rc;

	if (c->delay > 0 && sleep_unless_stopped(c->delay))
		return STOPPED;
	for (uint64_t round = 0; c->count == 0 || round < c->count; round++) {
		for (size_t u = 0; u < units; u++) {
			if (!first && c->interval > 0 && sleep_unless_stopped(c->interval))
				return STOPPED;
			first = false;
			rc = send_items(x, &c->items[u * per_unit], per_unit);
			if (rc == FQ_EINTR && stop_requested())
				return STOPPED;
			if (rc != 0) {
				report("send", rc);
				return EXIT_RUNTIME;
			}
			if (c->type != FQ_REQ)
				continue;
			rc = receive_one(x, &rx);
			rx_free(&rx);
			if (rc == FQ_EINTR && stop_requested())
				return STOPPED;
			if (rc != 0) {
				report(rc == FQ_ETIMEDOUT ? "waiting for the reply"
				       : FQ_IS_SYSERR(rc) ? "writing output"
				                          : "receive",
				       rc);
				return EXIT_RUNTIME;
			}
		}
	}
	return EXIT_SUCCESS;
}

/* Errors about what the user typed (names, values, addresses) are usage errors. */
static int setup_status(int rc)
{
	switch (rc) {
	case FQ_ENOENT:
	case FQ_EINVAL:
	case FQ_ERANGE:
	case FQ_EADDRINVAL:
		return EXIT_USAGE;
	default:
		return EXIT_RUNTIME;
	}
}

static int apply_setting(fq_socket *s, const char *setting)
{
	const char *eq = strchr(setting, '=');
	size_t len = (size_t)(eq - setting);
	char name[128];
	int rc;

	if (len >= sizeof(name)) {
		fprintf(stderr, "fq-cat: --set %s: option name too long\n", setting);
		return FQ_EINVAL;
	}
	memcpy(name, setting, len);
	name[len] = '\0';
	rc = fq_socket_set(s, name, eq + 1);
	if (rc != 0)
		fprintf(stderr, "fq-cat: --set %s: %s (%s)\n", setting, fq_strerror(rc),
		        fq_err_name(rc));
	return rc;
}

static int setup(struct ctx *x)
{
	const struct config *c = x->c;
	char what[64];
	int rc;

	rc = fq_transport_open(&x->t, c->transport, c->transport_options);
	if (rc != 0) {
		snprintf(what, sizeof(what), "transport %s", c->transport);
		report(what, rc);
		return setup_status(rc);
	}
	rc = fq_socket_open(&x->s, x->t, c->type);
	if (rc != 0) {
		report("socket", rc);
		return setup_status(rc);
	}
	/* From here a signal interrupts the socket, so every later blocking call returns. */
	stop_watch(x->s);
	if (c->recv_timeout_ms >= 0)
		rc = fq_socket_set_int(x->s, "rcv_timeout", c->recv_timeout_ms);
	if (rc == 0 && c->send_timeout_ms >= 0)
		rc = fq_socket_set_int(x->s, "snd_timeout", c->send_timeout_ms);
	if (rc != 0) {
		report("timeout", rc);
		return setup_status(rc);
	}
	/* After our own settings, so that --set has the last word. */
	for (size_t i = 0; i < c->n_settings; i++) {
		rc = apply_setting(x->s, c->settings[i]);
		if (rc != 0)
			return setup_status(rc);
	}
	if (c->type == FQ_SUB) {
		for (size_t i = 0; i < c->n_subscriptions || i == 0; i++) {
			const char *prefix = c->n_subscriptions > 0 ? c->subscriptions[i] : "";

			rc = fq_socket_set(x->s, "subscribe", prefix);
			if (rc != 0) {
				report("subscribe", rc);
				return setup_status(rc);
			}
		}
	}
	for (size_t i = 0; i < c->n_endpoints; i++) {
		const struct endpoint *e = &c->endpoints[i];

		rc = e->bind ? fq_bind(x->s, e->url) : fq_connect(x->s, e->url);
		if (rc != 0) {
			fprintf(stderr, "fq-cat: %s %s: %s (%s)\n", e->bind ? "bind" : "connect",
			        e->url, fq_strerror(rc), fq_err_name(rc));
			return setup_status(rc);
		}
	}
	if (c->verbose > 0) {
		/* Resolved addresses: the port picked for tcp://...:0 is only known here. */
		char buf[512];

		for (size_t i = 0; fq_socket_endpoint(x->s, i, buf, sizeof(buf)) == 0; i++)
			fprintf(stderr, "fq-cat: endpoint %s\n", buf);
	}
	return 0;
}

static void free_config(struct config *c)
{
	for (size_t i = 0; c->items != NULL && i < c->n_items; i++)
		free(c->items[i].owned);
	free(c->items);
	free(c->endpoints);
	free(c->subscriptions);
	free(c->settings);
}

int main(int argc, char **argv)
{
	struct config c = {0};
	struct ctx x = {.c = &c};
	int status;
	fq_log_level level;

	status = parse_args(argc, argv, &c);
	if (status >= 0) {
		free_config(&c);
		return status;
	}
	/* The library logs to stderr from warn up (or FQ_LOG_LEVEL); each -v shows more. */
	level = fq_log_get_level();
	for (int i = 0; i < c.verbose && level < FQ_LOG_TRACE; i++)
		level = (fq_log_level)(level + 1);
	fq_log_set_level(level);

	status = load_items(&c);
	if (status != 0) {
		free_config(&c);
		return status;
	}
	/* A vanished reader of our output is a write error to report, not a silent death. */
	signal(SIGPIPE, SIG_IGN);
	if (start_signal_thread() != 0) {
		fprintf(stderr, "fq-cat: cannot start the signal thread\n");
		free_config(&c);
		return EXIT_RUNTIME;
	}

	status = setup(&x);
	if (status == 0) {
		status = is_sender(&c) ? run_sender(&x) : run_receiver(&x);
		if (status == STOPPED) {
			/* Stopping a receiver that runs until stopped is its normal end. */
			bool normal = !is_sender(&c) && c.count == 0;

			if (!normal)
				fprintf(stderr, "fq-cat: interrupted\n");
			status = normal ? EXIT_SUCCESS : EXIT_RUNTIME;
		}
	}
	stop_watch(NULL);
	fq_socket_close(x.s);
	fq_transport_close(x.t);
	free_config(&c);
	return status;
}
