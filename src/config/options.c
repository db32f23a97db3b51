/*
 * Options tables and the command line: the standard device options, value checking, the
 * two-phase argv parse (plugins first, since they bring options of their own), --help and
 * --print-options.
 *
 * An fqc_opts is filled before the command line is read and only read afterwards; it has no
 * lock (fqc_opts_add must not run concurrently with anything else on the same object).
 */
#include "config/config_impl.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Reports ---------------------------------------------------------------------------- */

static pthread_mutex_t program_lock = PTHREAD_MUTEX_INITIALIZER;
static char program_name[128];

void fqc_set_program(const char *argv0)
{
	const char *base;

	if (argv0 == NULL)
		return;
	base = strrchr(argv0, '/');
	base = base != NULL ? base + 1 : argv0;
	pthread_mutex_lock(&program_lock);
	snprintf(program_name, sizeof(program_name), "%s", base);
	pthread_mutex_unlock(&program_lock);
}

void fqc_program(char *buf, size_t len)
{
	pthread_mutex_lock(&program_lock);
	if (program_name[0] == '\0') {
		/* Nobody parsed a command line yet (a channel reader used on its own). */
		snprintf(buf, len, "%s", program_invocation_short_name);
	} else {
		snprintf(buf, len, "%s", program_name);
	}
	pthread_mutex_unlock(&program_lock);
}

void fqc_report(FILE *err, const char *fmt, ...)
{
	char program[128], line[1024];
	va_list ap;

	if (err == NULL)
		return;
	fqc_program(program, sizeof(program));
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One fprintf per line, so that reports from several threads do not interleave. */
	fprintf(err, "%s: %s\n", program, line);
}

/* ---- Values ----------------------------------------------------------------------------- */

/* The value parsers are libfabriq's (fq_opt_parse): one grammar for every options table. */
bool fqc_parse_i64(const char *text, int64_t *out)
{
	return fq_opt_parse(FQ_OPT_INT, text, out) == 0;
}

bool fqc_parse_bool(const char *text, bool *out)
{
	int64_t v;

	if (fq_opt_parse(FQ_OPT_BOOL, text, &v) != 0)
		return false;
	*out = v != 0;
	return true;
}

static int parse_size(const char *text, int64_t *out)
{
	return fq_opt_parse(FQ_OPT_SIZE, text, out);
}

static int parse_duration(const char *text, int64_t *out)
{
	return fq_opt_parse(FQ_OPT_DURATION, text, out);
}

static int parse_value(fq_opt_type type, const char *text, int64_t *out, char *why, size_t len)
{
	bool b;
	int rc;

	switch (type) {
	case FQ_OPT_BOOL:
		if (fqc_parse_bool(text, &b)) {
			*out = b;
			return 0;
		}
		snprintf(why, len, "not a bool (true/false, 1/0, yes/no, on/off)");
		return FQ_EINVAL;
	case FQ_OPT_INT:
		if (fqc_parse_i64(text, out))
			return 0;
		snprintf(why, len, "not an integer");
		return FQ_EINVAL;
	case FQ_OPT_SIZE:
		rc = parse_size(text, out);
		if (rc == FQ_ERANGE)
			snprintf(why, len, "size out of range (0 to 2^63-1 bytes)");
		else if (rc != 0)
			snprintf(why, len,
			         "not a size (bytes, with an optional K, M, G or T suffix)");
		return rc == 0 ? 0 : FQ_EINVAL;
	case FQ_OPT_DURATION:
		rc = parse_duration(text, out);
		if (rc == FQ_ERANGE)
			snprintf(why, len, "a duration must be >= -1 (-1 = infinite)");
		else if (rc != 0)
			snprintf(why, len, "not a duration (milliseconds, -1 = infinite)");
		return rc == 0 ? 0 : FQ_EINVAL;
	case FQ_OPT_STRING:
		/* Any text; as a number only when it is an integer (fqc_value_int). */
		if (fqc_parse_i64(text, out))
			return 0;
		snprintf(why, len, "not an integer");
		return FQ_EINVAL;
	}
	snprintf(why, len, "unknown option type");
	return FQ_EINVAL;
}

int fqc_value_check(const fq_device_option *opt, const char *text, char *why, size_t len)
{
	char scratch[128];
	int64_t v;

	if (why == NULL || len == 0) {
		why = scratch;
		len = sizeof(scratch);
	}
	why[0] = '\0';
	if (opt == NULL || text == NULL) {
		snprintf(why, len, "missing value");
		return FQ_EINVAL;
	}
	if (opt->type == FQ_OPT_STRING)
		return 0;
	return parse_value(opt->type, text, &v, why, len);
}

int fqc_value_int(fq_opt_type type, const char *text, int64_t *out)
{
	char why[128]; /* parse_value writes a reason; unused here */
	int64_t v;

	if (text == NULL || out == NULL)
		return FQ_EINVAL;
	if (parse_value(type, text, &v, why, sizeof(why)) != 0)
		return FQ_EINVAL;
	*out = v;
	return 0;
}

/* ---- The standard options --------------------------------------------------------------- */

const fq_device_option fqc_std_options[] = {
    {"id", 0, FQ_OPT_STRING, NULL, "device id, unique in the topology (required)", false},
    {"transport", 0, FQ_OPT_STRING, "zeromq",
     "default transport of the channels: zeromq|shmem|nanomsg|ofi", false},
    {"severity", 0, FQ_OPT_STRING, "info", "log level: trace|debug|info|warn|error|nolog", false},
    {"session", 0, FQ_OPT_STRING, "default",
     "session name: devices of one session share shared-memory segments", false},
    {"init-timeout", 0, FQ_OPT_INT, "120",
     "seconds to wait in CONNECTING for the addresses of connecting channels", false},
    {"rate", 0, FQ_OPT_STRING, "0", "calls of conditional_run per second (Hz), 0 = no limit",
     false},
    {"control", 0, FQ_OPT_STRING, "dynamic",
     "state control: dynamic|interactive (keyboard commands on a terminal), static (run to "
     "RUNNING, then shut down when it ends), none",
     false},
    {"print-options", 0, FQ_OPT_BOOL, "false",
     "print every option as name:value:type:help and exit", false},
    {"print-channels", 0, FQ_OPT_BOOL, "false", "print the configured channels and exit", false},
    {"help", 'h', FQ_OPT_BOOL, "false", "print this help and exit", false},
    {"version", 'v', FQ_OPT_BOOL, "false", "print the version and exit", false},
    {"mq-config", 0, FQ_OPT_STRING, NULL, "FairMQ JSON file with the channels of the devices",
     false},
    {"channel-config", 0, FQ_OPT_STRING, NULL,
     "a channel: name=NAME,type=T,method=bind|connect,address=URL,... (repeatable)", true},
    {"config-key", 0, FQ_OPT_STRING, NULL,
     "take the --mq-config entry with this \"key\" instead of the one with the id", false},
    {"network-interface", 0, FQ_OPT_STRING, "default",
     "interface whose address auto-bound tcp channels use (default: the default route's)", false},
    {"io-threads", 0, FQ_OPT_INT, "1", "I/O threads of the zeromq transport", false},
    {"shm-segment-size", 0, FQ_OPT_SIZE, NULL,
     "size of the shared-memory segment (default: the shmem transport's)", false},
    {"transport-option", 0, FQ_OPT_STRING, NULL,
     "TRANSPORT:key=value,... passed to that transport when it is opened (repeatable)", true},
    {"plugin", 'P', FQ_OPT_STRING, NULL, "plugins to load (NAME[,NAME...]; repeatable)", true},
    {"plugin-search-path", 'S', FQ_OPT_STRING, NULL,
     "directory to search for plugins before the default ones (repeatable)", true},
    {"catch-signals", 0, FQ_OPT_BOOL, "true",
     "handle SIGINT/SIGTERM: first an orderly shutdown, second an immediate exit", false},
};
const size_t fqc_std_options_count = sizeof(fqc_std_options) / sizeof(fqc_std_options[0]);

/* ---- Tables ----------------------------------------------------------------------------- */

typedef struct opt_table {
	const char *section;
	const fq_device_option *t;
	size_t n;
} opt_table;

struct fqc_opts {
	opt_table *tables;
	size_t n;
};

int fqc_opts_new(fqc_opts **out)
{
	if (out == NULL)
		return FQ_EINVAL;
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? 0 : FQ_ENOMEM;
}

void fqc_opts_free(fqc_opts *o)
{
	if (o == NULL)
		return;
	free(o->tables);
	free(o);
}

const fq_device_option *fqc_opts_find(fqc_opts *o, const char *name)
{
	if (o == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < o->n; i++)
		for (size_t j = 0; j < o->tables[i].n; j++)
			if (strcmp(o->tables[i].t[j].name, name) == 0)
				return &o->tables[i].t[j];
	return NULL;
}

static const fq_device_option *find_short(fqc_opts *o, char c)
{
	for (size_t i = 0; i < o->n; i++)
		for (size_t j = 0; j < o->tables[i].n; j++)
			if (o->tables[i].t[j].short_name == c)
				return &o->tables[i].t[j];
	return NULL;
}

/* Names as the command line and the environment can carry them: [A-Za-z0-9_-], no leading
 * '-'. Short names: a letter or a digit. */
static bool good_name(const char *name)
{
	if (name == NULL || name[0] == '\0' || name[0] == '-')
		return false;
	for (const char *p = name; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return false;
	return true;
}

int fqc_opts_add(fqc_opts *o, const char *section, const fq_device_option *table, size_t n)
{
	opt_table *grown;

	if (o == NULL || section == NULL || (table == NULL && n > 0))
		return FQ_EINVAL;
	for (size_t i = 0; i < n; i++) {
		const fq_device_option *r = &table[i];

		if (!good_name(r->name) ||
		    (r->short_name != 0 && !isalnum((unsigned char)r->short_name)))
			return FQ_EINVAL;
		if ((unsigned)r->type > FQ_OPT_STRING)
			return FQ_EINVAL;
		if (fqc_opts_find(o, r->name) != NULL ||
		    (r->short_name != 0 && find_short(o, r->short_name) != NULL))
			return FQ_EEXIST;
		/* ... and within the new table itself. */
		for (size_t j = 0; j < i; j++)
			if (strcmp(table[j].name, r->name) == 0 ||
			    (r->short_name != 0 && table[j].short_name == r->short_name))
				return FQ_EEXIST;
	}
	grown = realloc(o->tables, (o->n + 1) * sizeof(*grown));
	if (grown == NULL)
		return FQ_ENOMEM;
	o->tables = grown;
	o->tables[o->n++] = (opt_table){section, table, n};
	return 0;
}

/* ---- Phase 1: plugins ------------------------------------------------------------------- */

static int strv_push(char ***v, size_t *n, const char *s, size_t len)
{
	char **grown = realloc(*v, (*n + 1) * sizeof(char *));

	if (grown == NULL)
		return FQ_ENOMEM;
	*v = grown;
	grown[*n] = strndup(s, len);
	if (grown[*n] == NULL)
		return FQ_ENOMEM;
	(*n)++;
	return 0;
}

/*
 * If argv[*i] is the option (long or short), its value: "--long=V", "--long V", "-sV",
 * "-s V" (advancing *i over a separate value). NULL otherwise or when the value is missing.
 */
static const char *scan_value(int argc, char **argv, int *i, const char *lng, char shrt)
{
	const char *a = argv[*i];
	size_t l = strlen(lng);

	if (a[0] == '-' && a[1] == '-' && strncmp(a + 2, lng, l) == 0) {
		if (a[2 + l] == '=')
			return a + 3 + l;
		if (a[2 + l] == '\0')
			return *i + 1 < argc ? argv[++*i] : NULL;
		return NULL;
	}
	if (a[0] == '-' && a[1] == shrt) {
		if (a[2] != '\0')
			return a + 2;
		return *i + 1 < argc ? argv[++*i] : NULL;
	}
	return NULL;
}

int fqc_scan_plugins(int argc, char **argv, char ***plugins, size_t *nplugins, char ***paths,
                     size_t *npaths)
{
	int rc = 0;

	if (argv == NULL || plugins == NULL || nplugins == NULL || paths == NULL || npaths == NULL)
		return FQ_EINVAL;
	*plugins = *paths = NULL;
	*nplugins = *npaths = 0;
	for (int i = 1; i < argc && rc == 0; i++) {
		const char *v;

		if (strcmp(argv[i], "--") == 0)
			break;
		if ((v = scan_value(argc, argv, &i, "plugin-search-path", 'S')) != NULL) {
			rc = strv_push(paths, npaths, v, strlen(v));
		} else if ((v = scan_value(argc, argv, &i, "plugin", 'P')) != NULL) {
			/* "-P a,b" names two plugins. */
			while (rc == 0 && *v != '\0') {
				size_t len = strcspn(v, ",");

				if (len > 0)
					rc = strv_push(plugins, nplugins, v, len);
				v += len;
				if (*v == ',')
					v++;
			}
		}
	}
	if (rc != 0) {
		fqc_strv_free(*plugins, *nplugins);
		fqc_strv_free(*paths, *npaths);
		*plugins = *paths = NULL;
		*nplugins = *npaths = 0;
	}
	return rc;
}

/* ---- Phase 2: the whole command line ---------------------------------------------------- */

/* The value an option ends up with, and where it came from for multi options. */
typedef struct slot {
	const fq_device_option *opt;
	char *value; /* malloc'ed, or NULL for unset */
	bool from_cmdline;
} slot;

typedef struct parse_ctx {
	slot *slots;
	size_t n;
	int rc;
	FILE *err;
} parse_ctx;

static slot *slot_of(parse_ctx *c, const fq_device_option *o)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->slots[i].opt == o)
			return &c->slots[i];
	return NULL;
}

/* Record a checked command-line value: replaces, or for multi options appends with '\n'. */
static void slot_put(parse_ctx *c, const fq_device_option *o, const char *value)
{
	slot *s = slot_of(c, o);
	char *joined;

	if (s == NULL)
		return;
	if (o->multi && s->from_cmdline && s->value != NULL) {
		size_t a = strlen(s->value), b = strlen(value);

		joined = malloc(a + b + 2);
		if (joined != NULL) {
			memcpy(joined, s->value, a);
			joined[a] = '\n';
			memcpy(joined + a + 1, value, b + 1);
		}
	} else {
		joined = strdup(value);
	}
	if (joined == NULL) {
		c->rc = FQ_ENOMEM;
		return;
	}
	free(s->value);
	s->value = joined;
	s->from_cmdline = true;
}

static void put_checked(parse_ctx *c, const fq_device_option *o, const char *shown,
                        const char *value)
{
	char why[128];

	if (fqc_value_check(o, value, why, sizeof(why)) != 0) {
		fqc_report(c->err, "%s: bad value '%s': %s", shown, value, why);
		if (c->rc == 0)
			c->rc = FQ_EINVAL;
		return;
	}
	slot_put(c, o, value);
}

static void fail(parse_ctx *c, int rc)
{
	if (c->rc == 0 || c->rc == FQ_EINVAL)
		c->rc = rc;
}

/* "--name" text for reports, from an option row. */
static void long_form(const fq_device_option *o, char *buf, size_t len)
{
	snprintf(buf, len, "--%s", o->name);
}

/* Next argument as a value, unless it is missing or looks like another long option. */
static const char *next_value(int argc, char **argv, int *i)
{
	const char *v;

	if (*i + 1 >= argc)
		return NULL;
	v = argv[*i + 1];
	if (v[0] == '-' && v[1] == '-' && v[2] != '\0')
		return NULL;
	++*i;
	return v;
}

static void parse_long(parse_ctx *c, fqc_opts *opts, int argc, char **argv, int *i)
{
	const char *a = argv[*i] + 2, *eq = strchr(a, '='), *value;
	char name[128], shown[140];
	const fq_device_option *o;
	size_t nlen = eq != NULL ? (size_t)(eq - a) : strlen(a);

	snprintf(name, sizeof(name), "%.*s", (int)(nlen < sizeof(name) ? nlen : sizeof(name) - 1),
	         a);
	o = fqc_opts_find(opts, name);
	if (o == NULL) {
		fqc_report(c->err, "unknown option --%s; see --help", name);
		fail(c, FQ_EINVAL);
		return;
	}
	long_form(o, shown, sizeof(shown));
	if (eq != NULL) {
		value = eq + 1;
	} else if (o->type == FQ_OPT_BOOL) {
		bool b;

		/* A bare flag is true; "--flag false" is read too, as FairMQ's int flags allow. */
		value = "true";
		if (*i + 1 < argc && fqc_parse_bool(argv[*i + 1], &b))
			value = argv[++*i];
	} else {
		value = next_value(argc, argv, i);
		if (value == NULL) {
			fqc_report(c->err, "%s: missing value", shown);
			fail(c, FQ_EINVAL);
			return;
		}
	}
	put_checked(c, o, shown, value);
}

static void parse_short(parse_ctx *c, fqc_opts *opts, int argc, char **argv, int *i)
{
	const char *a = argv[*i] + 1;
	const fq_device_option *o;
	char shown[140];

	/* "-hv": a cluster of bool flags; "-Pname" / "-P name": a short option with a value. */
	while (*a != '\0') {
		o = find_short(opts, *a);
		if (o == NULL) {
			fqc_report(c->err, "unknown option -%c; see --help", *a);
			fail(c, FQ_EINVAL);
			return;
		}
		snprintf(shown, sizeof(shown), "-%c (--%s)", *a, o->name);
		if (o->type == FQ_OPT_BOOL) {
			put_checked(c, o, shown, "true");
			a++;
			continue;
		}
		if (a[1] != '\0') {
			put_checked(c, o, shown, a + 1);
			return;
		}
		{
			const char *value = next_value(argc, argv, i);

			if (value == NULL) {
				fqc_report(c->err, "%s: missing value", shown);
				fail(c, FQ_EINVAL);
				return;
			}
			put_checked(c, o, shown, value);
		}
		return;
	}
}

/* FQ_DEVICE_<NAME>: upper case, '-' as '_'. */
static void env_name(const char *name, char *buf, size_t len)
{
	size_t i;

	snprintf(buf, len, "FQ_DEVICE_%s", name);
	for (i = 0; buf[i] != '\0'; i++)
		buf[i] = buf[i] == '-' ? '_' : (char)toupper((unsigned char)buf[i]);
}

/* Defaults, then the environment, into the slots. */
static void load_base(parse_ctx *c)
{
	char why[128], env[160];

	for (size_t i = 0; i < c->n; i++) {
		const fq_device_option *o = c->slots[i].opt;
		const char *v = o->default_value, *e;

		if (v != NULL && fqc_value_check(o, v, why, sizeof(why)) != 0) {
			/* A bug in the table, but reported like user input: the user sees it first. */
			fqc_report(c->err, "--%s: bad default '%s': %s", o->name, v, why);
			fail(c, FQ_EINVAL);
			v = NULL;
		}
		env_name(o->name, env, sizeof(env));
		e = getenv(env);
		if (e != NULL) {
			if (fqc_value_check(o, e, why, sizeof(why)) != 0) {
				fqc_report(c->err, "%s: bad value '%s' for --%s: %s", env, e,
				           o->name, why);
				fail(c, FQ_EINVAL);
			} else {
				v = e;
			}
		}
		if (v != NULL) {
			c->slots[i].value = strdup(v);
			if (c->slots[i].value == NULL)
				c->rc = FQ_ENOMEM;
		}
	}
}

int fqc_parse_argv(fqc_opts *opts, fqc_props *props, int argc, char **argv, FILE *err)
{
	parse_ctx c = {NULL, 0, 0, err};
	size_t total = 0, k = 0;
	bool positional_only = false;

	if (opts == NULL || props == NULL || argc < 0 || (argc > 0 && argv == NULL))
		return FQ_EINVAL;
	if (argc > 0 && argv[0] != NULL)
		fqc_set_program(argv[0]);
	for (size_t i = 0; i < opts->n; i++)
		total += opts->tables[i].n;
	c.slots = calloc(total > 0 ? total : 1, sizeof(slot));
	if (c.slots == NULL)
		return FQ_ENOMEM;
	for (size_t i = 0; i < opts->n; i++)
		for (size_t j = 0; j < opts->tables[i].n; j++)
			c.slots[k++].opt = &opts->tables[i].t[j];
	c.n = total;

	load_base(&c);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (a == NULL)
			break;
		if (!positional_only && strcmp(a, "--") == 0) {
			positional_only = true;
		} else if (!positional_only && a[0] == '-' && a[1] == '-') {
			parse_long(&c, opts, argc, argv, &i);
		} else if (!positional_only && a[0] == '-' && a[1] != '\0') {
			parse_short(&c, opts, argc, argv, &i);
		} else {
			/* Devices take no positional arguments: most likely a forgotten "--name". */
			fqc_report(err, "unexpected argument '%s'", a);
			fail(&c, FQ_EINVAL);
		}
	}

	for (size_t i = 0; i < c.n && c.rc != FQ_ENOMEM; i++) {
		if (c.slots[i].value != NULL) {
			int r = fqc_props_set(props, c.slots[i].opt->name, c.slots[i].value);

			if (r != 0)
				c.rc = r;
		}
	}
	for (size_t i = 0; i < c.n; i++)
		free(c.slots[i].value);
	free(c.slots);
	return c.rc;
}

/* ---- --help and --print-options --------------------------------------------------------- */

/* The value placeholder shown in --help ("" for bools, which need none). */
static const char *placeholder(fq_opt_type t)
{
	switch (t) {
	case FQ_OPT_BOOL:
		return "";
	case FQ_OPT_INT:
		return " INT";
	case FQ_OPT_SIZE:
		return " SIZE";
	case FQ_OPT_DURATION:
		return " MS";
	case FQ_OPT_STRING:
		return " STRING";
	}
	return "";
}

static int left_column(const fq_device_option *o, char *buf, size_t len)
{
	if (o->short_name != 0)
		return snprintf(buf, len, "  -%c, --%s%s", o->short_name, o->name,
		                placeholder(o->type));
	return snprintf(buf, len, "      --%s%s", o->name, placeholder(o->type));
}

/* Print text from column `indent` on (the cursor is there), wrapped at HELP_WIDTH columns. */
static void wrap(FILE *out, const char *text, int indent)
{
	enum { HELP_WIDTH = 100 };
	int room = HELP_WIDTH - indent > 30 ? HELP_WIDTH - indent : 30;
	bool first = true;

	fputs("  ", out);
	while (*text != '\0') {
		int len = (int)strlen(text), cut = len;

		if (len > room) {
			/* Break at the last blank that fits, or mid-word if there is none. */
			for (cut = room; cut > 0 && text[cut] != ' '; cut--)
				;
			if (cut == 0)
				cut = room;
		}
		if (!first)
			fprintf(out, "%*s", indent, "");
		fprintf(out, "%.*s\n", cut, text);
		text += cut;
		while (*text == ' ')
			text++;
		first = false;
	}
	if (first)
		fputc('\n', out);
}

void fqc_opts_help(fqc_opts *opts, const char *program, FILE *out)
{
	/* Help text starts in one column for every section, capped so that a long name does not
	 * push everyone's help off the screen (that one gets its own line). */
	enum { MAX_LEFT = 40 };
	char left[256], text[1024];
	int width = 0;

	if (opts == NULL || out == NULL)
		return;
	for (size_t i = 0; i < opts->n; i++)
		for (size_t j = 0; j < opts->tables[i].n; j++) {
			int w = left_column(&opts->tables[i].t[j], left, sizeof(left));

			if (w > width && w <= MAX_LEFT)
				width = w;
		}
	fprintf(out, "Usage: %s [options]\n", program != NULL ? program : "device");
	for (size_t i = 0; i < opts->n; i++) {
		const char *sec = opts->tables[i].section;
		size_t sl = strlen(sec);

		/* "fq-sampler" reads "fq-sampler options:"; a title that says it already stays. */
		if (sl >= 7 && strcmp(sec + sl - 7, "options") == 0)
			fprintf(out, "\n%s:\n", sec);
		else
			fprintf(out, "\n%s options:\n", sec);
		for (size_t j = 0; j < opts->tables[i].n; j++) {
			const fq_device_option *o = &opts->tables[i].t[j];
			int w = left_column(o, left, sizeof(left));

			if (w > width)
				fprintf(out, "%s\n%*s", left, width, "");
			else
				fprintf(out, "%-*s", width, left);
			snprintf(text, sizeof(text), "%s [%s; default: %s%s]",
			         o->help != NULL ? o->help : "", fq_opt_type_name(o->type),
			         o->default_value != NULL ? o->default_value : "unset",
			         o->multi ? "; repeatable" : "");
			wrap(out, text, width + 2);
		}
	}
}

void fqc_opts_print(fqc_opts *opts, fqc_props *props, FILE *out)
{
	if (opts == NULL || out == NULL)
		return;
	for (size_t i = 0; i < opts->n; i++)
		for (size_t j = 0; j < opts->tables[i].n; j++) {
			const fq_device_option *o = &opts->tables[i].t[j];
			char *v = fqc_props_dup(props, o->name);

			/* One line per option: a multi value's '\n' separators become ','. */
			for (char *p = v; p != NULL && *p != '\0'; p++)
				if (*p == '\n')
					*p = ',';
			fprintf(out, "%s:%s:%s%s%s:%s\n", o->name, v != NULL ? v : "",
			        o->multi ? "vector<" : "", fq_opt_type_name(o->type),
			        o->multi ? ">" : "", o->help != NULL ? o->help : "");
			free(v);
		}
}
