/* Options tables, value checks, the command line (defaults < environment < argv), --help and
 * --print-options. Reports are captured and checked piece by piece. */
#include "fq_test.h"

#include "config/config.h"

#include <stdlib.h>
#include <string.h>

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

#define assert_has(hay, needle) \
	cr_assert_not_null(strstr((hay), (needle)), "missing \"%s\" in:\n%s", (needle), (hay))

static const fq_device_option custom[] = {
    {"msg-size", 's', FQ_OPT_SIZE, "1M", "message size", false},
    {"max-iterations", 0, FQ_OPT_INT, "0", "stop after this many messages (0: never)", false},
    {"wait", 0, FQ_OPT_DURATION, "-1", "how long to wait", false},
    {"tag", 't', FQ_OPT_STRING, NULL, "tags to add", true},
    {"quiet", 'q', FQ_OPT_BOOL, "false", "say less", false},
};

static fqc_opts *std_and_custom(void)
{
	fqc_opts *o;

	FQ_PASS(fqc_opts_new(&o));
	FQ_PASS(fqc_opts_add(o, "device", fqc_std_options, fqc_std_options_count));
	FQ_PASS(fqc_opts_add(o, "fq-sampler", custom, sizeof(custom) / sizeof(custom[0])));
	return o;
}

static void unset_env(void)
{
	unsetenv("FQ_DEVICE_IO_THREADS");
	unsetenv("FQ_DEVICE_MSG_SIZE");
	unsetenv("FQ_DEVICE_TRANSPORT");
	unsetenv("FQ_DEVICE_TAG");
}

static void getp(fqc_props *p, const char *key, const char *want)
{
	char buf[256];

	FQ_PASS(fqc_props_get(p, key, buf, sizeof(buf)));
	cr_assert_str_eq(buf, want, "%s: got '%s', want '%s'", key, buf, want);
}

/* ---- Values ----------------------------------------------------------------------------- */

static bool ok(fq_opt_type t, const char *text)
{
	fq_device_option o = {"x", 0, t, NULL, "", false};
	char why[128];

	return fqc_value_check(&o, text, why, sizeof(why)) == 0;
}

static const char *why_not(fq_opt_type t, const char *text)
{
	static char why[128];
	fq_device_option o = {"x", 0, t, NULL, "", false};

	cr_assert_eq(fqc_value_check(&o, text, why, sizeof(why)), FQ_EINVAL);
	return why;
}

Test(values, bools)
{
	int64_t v;
	static const char *const yes[] = {"1", "true", "TRUE", "yes", "on"};
	static const char *const no[] = {"0", "false", "False", "no", "off"};

	for (size_t i = 0; i < 5; i++) {
		FQ_PASS(fqc_value_int(FQ_OPT_BOOL, yes[i], &v));
		cr_assert_eq(v, 1);
		FQ_PASS(fqc_value_int(FQ_OPT_BOOL, no[i], &v));
		cr_assert_eq(v, 0);
	}
	assert_has(why_not(FQ_OPT_BOOL, "maybe"), "not a bool");
	cr_assert(!ok(FQ_OPT_BOOL, ""));
	cr_assert(!ok(FQ_OPT_BOOL, "2"));
}

Test(values, integers)
{
	int64_t v;

	FQ_PASS(fqc_value_int(FQ_OPT_INT, "-42", &v));
	cr_assert_eq(v, -42);
	FQ_PASS(fqc_value_int(FQ_OPT_INT, "010", &v));
	cr_assert_eq(v, 10);
	FQ_PASS(fqc_value_int(FQ_OPT_INT, "9223372036854775807", &v));
	cr_assert_eq(v, INT64_MAX);
	assert_has(why_not(FQ_OPT_INT, "12a"), "not an integer");
	cr_assert(!ok(FQ_OPT_INT, "9223372036854775808"));
	cr_assert(!ok(FQ_OPT_INT, " 1"));
	cr_assert(!ok(FQ_OPT_INT, "+1"));
	cr_assert(!ok(FQ_OPT_INT, "1K"));
	cr_assert(!ok(FQ_OPT_INT, ""));
	cr_assert(!ok(FQ_OPT_INT, "-"));
	FQ_FAIL(fqc_value_int(FQ_OPT_INT, "x", &v), FQ_EINVAL);
}

Test(values, sizes_with_binary_suffixes)
{
	static const struct {
		const char *text;
		int64_t v;
	} good[] = {
	    {"0", 0},
	    {"4096", 4096},
	    {"1K", 1024},
	    {"1k", 1024},
	    {"16KiB", 16384},
	    {"2MiB", 2 << 20},
	    {"2M", 2 << 20},
	    {"3G", (int64_t)3 << 30},
	    {"1GB", (int64_t)1 << 30},
	    {"2T", (int64_t)2 << 40},
	    {"100B", 100},
	};
	int64_t v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		FQ_PASS(fqc_value_int(FQ_OPT_SIZE, good[i].text, &v));
		cr_assert_eq(v, good[i].v, "%s", good[i].text);
	}
	assert_has(why_not(FQ_OPT_SIZE, "12x"), "not a size");
	assert_has(why_not(FQ_OPT_SIZE, "-1"), "out of range");
	assert_has(why_not(FQ_OPT_SIZE, "99999999T"), "out of range");
	assert_has(why_not(FQ_OPT_SIZE, "99999999999999999999"), "out of range");
	cr_assert(!ok(FQ_OPT_SIZE, "1KiBB"));
	cr_assert(!ok(FQ_OPT_SIZE, "K"));
	cr_assert(!ok(FQ_OPT_SIZE, "1.5M"));
	cr_assert(!ok(FQ_OPT_SIZE, ""));
}

Test(values, durations_and_strings)
{
	int64_t v;

	FQ_PASS(fqc_value_int(FQ_OPT_DURATION, "-1", &v));
	cr_assert_eq(v, -1);
	FQ_PASS(fqc_value_int(FQ_OPT_DURATION, "250", &v));
	cr_assert_eq(v, 250);
	FQ_PASS(fqc_value_int(FQ_OPT_DURATION, "infinite", &v));
	cr_assert_eq(v, -1);
	assert_has(why_not(FQ_OPT_DURATION, "-2"), ">= -1");
	assert_has(why_not(FQ_OPT_DURATION, "1s"), "not a duration");
	cr_assert(ok(FQ_OPT_STRING, ""));
	cr_assert(ok(FQ_OPT_STRING, "anything at all\n"));
	/* A string option reads as a number only when it is one. */
	FQ_PASS(fqc_value_int(FQ_OPT_STRING, "7", &v));
	cr_assert_eq(v, 7);
	FQ_FAIL(fqc_value_int(FQ_OPT_STRING, "seven", &v), FQ_EINVAL);
	cr_assert_eq(fqc_value_check(&custom[0], NULL, NULL, 0), FQ_EINVAL);
}

/* ---- Tables ----------------------------------------------------------------------------- */

Test(tables, standard_options_have_fairmq_names_and_defaults)
{
	static const struct {
		const char *name;
		char short_name;
		fq_opt_type type;
		const char *def;
		bool multi;
	} want[] = {
	    {"id", 0, FQ_OPT_STRING, NULL, false},
	    {"transport", 0, FQ_OPT_STRING, "zeromq", false},
	    {"severity", 0, FQ_OPT_STRING, "info", false},
	    {"session", 0, FQ_OPT_STRING, "default", false},
	    {"init-timeout", 0, FQ_OPT_INT, "120", false},
	    {"rate", 0, FQ_OPT_STRING, "0", false},
	    {"control", 0, FQ_OPT_STRING, "dynamic", false},
	    {"print-options", 0, FQ_OPT_BOOL, "false", false},
	    {"print-channels", 0, FQ_OPT_BOOL, "false", false},
	    {"help", 'h', FQ_OPT_BOOL, "false", false},
	    {"version", 'v', FQ_OPT_BOOL, "false", false},
	    {"mq-config", 0, FQ_OPT_STRING, NULL, false},
	    {"channel-config", 0, FQ_OPT_STRING, NULL, true},
	    {"config-key", 0, FQ_OPT_STRING, NULL, false},
	    {"network-interface", 0, FQ_OPT_STRING, "default", false},
	    {"io-threads", 0, FQ_OPT_INT, "1", false},
	    {"shm-segment-size", 0, FQ_OPT_SIZE, NULL, false},
	    {"transport-option", 0, FQ_OPT_STRING, NULL, true},
	    {"plugin", 'P', FQ_OPT_STRING, NULL, true},
	    {"plugin-search-path", 'S', FQ_OPT_STRING, NULL, true},
	    {"catch-signals", 0, FQ_OPT_BOOL, "true", false},
	};
	fqc_opts *o = std_and_custom();

	cr_assert_eq(fqc_std_options_count, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const fq_device_option *r = fqc_opts_find(o, want[i].name);

		cr_assert_not_null(r, "%s", want[i].name);
		cr_assert_eq(r->short_name, want[i].short_name, "%s", want[i].name);
		cr_assert_eq(r->type, want[i].type, "%s", want[i].name);
		cr_assert_eq(r->multi, want[i].multi, "%s", want[i].name);
		if (want[i].def == NULL)
			cr_assert_null(r->default_value, "%s", want[i].name);
		else
			cr_assert_str_eq(r->default_value, want[i].def);
		cr_assert_not_null(r->help);
	}
	assert_has(fqc_opts_find(o, "transport")->help, "zeromq|shmem|nanomsg|ofi");
	assert_has(fqc_opts_find(o, "severity")->help, "trace|debug|info|warn|error|nolog");
	cr_assert_null(fqc_opts_find(o, "nosuch"));
	cr_assert_eq(fqc_opts_find(o, "msg-size"), &custom[0]);
	fqc_opts_free(o);
}

Test(tables, taken_names_are_eexist_and_nothing_is_added)
{
	static const fq_device_option same_long[] = {
	    {"fresh", 0, FQ_OPT_INT, "1", "new", false},
	    {"id", 0, FQ_OPT_STRING, NULL, "again", false},
	};
	static const fq_device_option same_short[] = {{"other", 'P', FQ_OPT_STRING, NULL, "", 0}};
	static const fq_device_option twice[] = {
	    {"a", 'a', FQ_OPT_INT, "1", "", false},
	    {"b", 'a', FQ_OPT_INT, "1", "", false},
	};
	static const fq_device_option bad_name[] = {{"-x", 0, FQ_OPT_INT, "1", "", false}};
	fqc_opts *o = std_and_custom();

	FQ_FAIL(fqc_opts_add(o, "x", same_long, 2), FQ_EEXIST);
	cr_assert_null(fqc_opts_find(o, "fresh"));
	FQ_FAIL(fqc_opts_add(o, "x", same_short, 1), FQ_EEXIST);
	FQ_FAIL(fqc_opts_add(o, "x", twice, 2), FQ_EEXIST);
	FQ_FAIL(fqc_opts_add(o, "x", fqc_std_options, fqc_std_options_count), FQ_EEXIST);
	FQ_FAIL(fqc_opts_add(o, "x", bad_name, 1), FQ_EINVAL);
	FQ_PASS(fqc_opts_add(o, "x", same_long, 1));
	cr_assert_not_null(fqc_opts_find(o, "fresh"));
	fqc_opts_free(o);
}

/* ---- Phase 1 ---------------------------------------------------------------------------- */

Test(argv, scan_plugins_in_order)
{
	char *argv[] = {"dev",           "--id", "x",        "-P",
	                "a,b",           "-Pc",  "--plugin", "d",
	                "--plugin=e,,f", "-S",   "/x",       "--plugin-search-path=/y",
	                "-S/z",          "--",   "-P",       "late"};
	char **plugins, **paths;
	size_t np, ns;

	FQ_PASS(fqc_scan_plugins(16, argv, &plugins, &np, &paths, &ns));
	cr_assert_eq(np, 6);
	cr_assert_str_eq(plugins[0], "a");
	cr_assert_str_eq(plugins[1], "b");
	cr_assert_str_eq(plugins[2], "c");
	cr_assert_str_eq(plugins[3], "d");
	cr_assert_str_eq(plugins[4], "e");
	cr_assert_str_eq(plugins[5], "f");
	cr_assert_eq(ns, 3);
	cr_assert_str_eq(paths[0], "/x");
	cr_assert_str_eq(paths[1], "/y");
	cr_assert_str_eq(paths[2], "/z");
	fqc_strv_free(plugins, np);
	fqc_strv_free(paths, ns);

	FQ_PASS(fqc_scan_plugins(1, argv, &plugins, &np, &paths, &ns));
	cr_assert_eq(np + ns, 0);
}

/* ---- Phase 2 ---------------------------------------------------------------------------- */

Test(argv, defaults_environment_command_line, .fini = unset_env)
{
	char *argv[] = {"/usr/bin/fq-sampler",
	                "--id",
	                "sampler1",
	                "--msg-size=4K",
	                "-t",
	                "a",
	                "-tb",
	                "--tag=c",
	                "--quiet",
	                "--catch-signals=false"};
	fqc_opts *o = std_and_custom();
	fqc_props *p;
	fqt_capture err;

	unset_env();
	setenv("FQ_DEVICE_IO_THREADS", "4", 1);
	setenv("FQ_DEVICE_MSG_SIZE", "2K", 1);
	setenv("FQ_DEVICE_TAG", "from-env", 1);
	FQ_PASS(fqc_props_new(&p));
	fqt_capture_open(&err);
	FQ_PASS(fqc_parse_argv(o, p, 10, argv, err.f));
	cr_assert_str_eq(fqt_capture_text(&err), "");
	getp(p, "id", "sampler1");
	getp(p, "transport", "zeromq"); /* default */
	getp(p, "io-threads", "4");     /* environment */
	getp(p, "msg-size", "4K");      /* command line over environment */
	getp(p, "tag", "a\nb\nc");      /* a multi option: the command line replaces the env */
	getp(p, "quiet", "true");
	getp(p, "catch-signals", "false");
	getp(p, "init-timeout", "120");
	getp(p, "wait", "-1");
	cr_assert(!fqc_props_has(p, "mq-config")); /* no default: unset */
	cr_assert(!fqc_props_has(p, "channel-config"));
	fqt_capture_close(&err);
	fqc_props_free(p);
	fqc_opts_free(o);
}

Test(argv, every_form_of_option)
{
	char *argv[] = {"dev",
	                "--id=x",
	                "--transport",
	                "shmem",
	                "-s",
	                "1M",
	                "-s2M",
	                "-P",
	                "p1",
	                "-Pp2",
	                "--plugin=p3",
	                "-hv",
	                "--print-options",
	                "false",
	                "--rate",
	                "-1",
	                "-q",
	                "--channel-config",
	                "name=a",
	                "--channel-config=name=b"};
	fqc_opts *o = std_and_custom();
	fqc_props *p;

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_parse_argv(o, p, 20, argv, stderr));
	getp(p, "id", "x");
	getp(p, "transport", "shmem");
	getp(p, "msg-size", "2M"); /* the last one wins */
	getp(p, "plugin", "p1\np2\np3");
	getp(p, "help", "true");
	getp(p, "version", "true");
	getp(p, "print-options", "false");
	getp(p, "rate", "-1"); /* '-1' is a value, not an option */
	getp(p, "quiet", "true");
	getp(p, "channel-config", "name=a\nname=b");
	fqc_props_free(p);
	fqc_opts_free(o);
}

Test(argv, every_problem_is_reported_with_the_option, .fini = unset_env)
{
	char *argv[] = {
	    "./bin/fq-sink", "--foo",     "--io-threads",  "many",  "-x",  "--msg-size=12x",
	    "stray",         "--wait=-5", "--quiet=maybe", "--tag", "--id"};
	fqc_opts *o = std_and_custom();
	fqc_props *p;
	fqt_capture err;
	const char *t;

	unset_env();
	setenv("FQ_DEVICE_TRANSPORT", "", 1); /* a string: empty is fine */
	setenv("FQ_DEVICE_MSG_SIZE", "lots", 1);
	FQ_PASS(fqc_props_new(&p));
	fqt_capture_open(&err);
	FQ_FAIL(fqc_parse_argv(o, p, 11, argv, err.f), FQ_EINVAL);
	t = fqt_capture_text(&err);
	assert_has(t, "fq-sink: unknown option --foo; see --help\n");
	assert_has(t, "fq-sink: --io-threads: bad value 'many': not an integer\n");
	assert_has(t, "fq-sink: unknown option -x; see --help\n");
	assert_has(t, "fq-sink: --msg-size: bad value '12x': not a size");
	assert_has(t, "fq-sink: unexpected argument 'stray'\n");
	assert_has(t, "fq-sink: --wait: bad value '-5': a duration must be >= -1");
	assert_has(t, "fq-sink: --quiet: bad value 'maybe': not a bool");
	assert_has(t, "fq-sink: --tag: missing value\n"); /* "--id" is no value */
	assert_has(t, "fq-sink: --id: missing value\n");
	assert_has(t, "fq-sink: FQ_DEVICE_MSG_SIZE: bad value 'lots' for --msg-size: not a size");
	cr_assert_eq(count_lines(t), 10, "%s", t);
	getp(p, "transport", "");
	fqt_capture_close(&err);
	fqc_props_free(p);
	fqc_opts_free(o);
}

Test(argv, short_option_errors)
{
	char *argv[] = {"dev", "-P"};
	char *argv2[] = {"dev", "-hq", "-hz"};
	fqc_opts *o = std_and_custom();
	fqc_props *p;
	fqt_capture err;

	FQ_PASS(fqc_props_new(&p));
	fqt_capture_open(&err);
	FQ_FAIL(fqc_parse_argv(o, p, 2, argv, err.f), FQ_EINVAL);
	assert_has(fqt_capture_text(&err), "dev: -P (--plugin): missing value\n");
	FQ_FAIL(fqc_parse_argv(o, p, 3, argv2, err.f), FQ_EINVAL);
	assert_has(fqt_capture_text(&err), "dev: unknown option -z; see --help\n");
	fqt_capture_close(&err);
	fqc_props_free(p);
	fqc_opts_free(o);
}

Test(argv, double_dash_ends_options)
{
	char *argv[] = {"dev", "--", "--id"};
	fqc_opts *o = std_and_custom();
	fqc_props *p;
	fqt_capture err;

	FQ_PASS(fqc_props_new(&p));
	fqt_capture_open(&err);
	FQ_FAIL(fqc_parse_argv(o, p, 3, argv, err.f), FQ_EINVAL);
	assert_has(fqt_capture_text(&err), "dev: unexpected argument '--id'\n");
	fqt_capture_close(&err);
	fqc_props_free(p);
	fqc_opts_free(o);
}

Test(argv, a_bad_default_in_a_table_is_reported)
{
	static const fq_device_option bad[] = {{"count", 0, FQ_OPT_INT, "ten", "", false}};
	char *argv[] = {"dev"};
	fqc_opts *o;
	fqc_props *p;
	fqt_capture err;

	FQ_PASS(fqc_opts_new(&o));
	FQ_PASS(fqc_opts_add(o, "x", bad, 1));
	FQ_PASS(fqc_props_new(&p));
	fqt_capture_open(&err);
	FQ_FAIL(fqc_parse_argv(o, p, 1, argv, err.f), FQ_EINVAL);
	assert_has(fqt_capture_text(&err), "dev: --count: bad default 'ten': not an integer\n");
	fqt_capture_close(&err);
	fqc_props_free(p);
	fqc_opts_free(o);
}

/* ---- Output ----------------------------------------------------------------------------- */

/* Column where the help text of the line holding `opt` starts. */
static long help_column(const char *text, const char *opt, const char *help)
{
	const char *at = strstr(text, opt), *line, *h;

	cr_assert_not_null(at, "%s", opt);
	for (line = at; line > text && line[-1] != '\n'; line--)
		;
	h = strstr(at, help);
	cr_assert_not_null(h, "%s", help);
	return h - line;
}

Test(output, help_groups_sections_aligned)
{
	fqc_opts *o = std_and_custom();
	fqt_capture out;
	const char *t;

	fqt_capture_open(&out);
	fqc_opts_help(o, "fq-sampler", out.f);
	t = fqt_capture_text(&out);
	assert_has(t, "Usage: fq-sampler [options]\n");
	assert_has(t, "\ndevice options:\n");
	assert_has(t, "\nfq-sampler options:\n");
	cr_assert(strstr(t, "device options:") < strstr(t, "fq-sampler options:"));
	assert_has(t, "      --id STRING ");
	assert_has(t, "  -h, --help ");
	assert_has(t, "  -s, --msg-size SIZE ");
	assert_has(t, "      --wait MS ");
	assert_has(t, "message size [size; default: 1M]\n");
	assert_has(t, "[string; default: unset]");
	assert_has(t, "[string; default: unset; repeatable]");
	assert_has(t, "[int; default: 120]");
	cr_assert_eq(help_column(t, "--id ", "device id"),
	             help_column(t, "--msg-size", "message size"));
	cr_assert_eq(help_column(t, "--help", "print this help"),
	             help_column(t, "--plugin-search-path", "directory"));
	fqt_capture_close(&out);
	fqc_opts_free(o);
}

Test(output, help_section_titles_and_long_names)
{
	static const fq_device_option t[] = {
	    {"a-really-long-option-name-that-does-not-fit", 0, FQ_OPT_INT, "1", "long one", false},
	    {"b", 0, FQ_OPT_BOOL, "false", "short one", false},
	};
	fqc_opts *o;
	fqt_capture out;
	const char *s;

	FQ_PASS(fqc_opts_new(&o));
	FQ_PASS(fqc_opts_add(o, "plugin control", t, 2));
	FQ_PASS(fqc_opts_add(o, "device options", NULL, 0));
	fqt_capture_open(&out);
	fqc_opts_help(o, NULL, out.f);
	s = fqt_capture_text(&out);
	assert_has(s, "Usage: device [options]\n");
	assert_has(s, "\nplugin control options:\n");
	assert_has(s, "\ndevice options:\n");
	/* Too long for the column: its help goes on the next line, in the column. */
	assert_has(s, "      --a-really-long-option-name-that-does-not-fit INT\n"
	              "           long one [int; default: 1]\n");
	assert_has(s, "      --b  short one [bool; default: false]\n");
	fqt_capture_close(&out);
	fqc_opts_free(o);
}

Test(output, print_options_machine_format)
{
	char *argv[] = {"dev", "--id", "sampler1", "-P", "a", "-P", "b"};
	fqc_opts *o = std_and_custom();
	fqc_props *p;
	fqt_capture out;
	const char *t;

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_parse_argv(o, p, 7, argv, stderr));
	fqt_capture_open(&out);
	fqc_opts_print(o, p, out.f);
	t = fqt_capture_text(&out);
	cr_assert_eq(strncmp(t, "id:sampler1:string:device id", 28), 0, "%s", t);
	assert_has(t, "\ntransport:zeromq:string:");
	assert_has(t, "\nio-threads:1:int:");
	assert_has(t, "\nmq-config::string:");
	assert_has(t, "\nplugin:a,b:vector<string>:plugins to load");
	assert_has(t, "\ncatch-signals:true:bool:");
	assert_has(t, "\nmsg-size:1M:size:message size\n");
	assert_has(t, "\nwait:-1:duration:");
	cr_assert_eq(count_lines(t), fqc_std_options_count + 5);
	fqt_capture_close(&out);
	fqc_props_free(p);
	fqc_opts_free(o);
}
