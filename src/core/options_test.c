/* Option tables: typed parsing with units and ranges, and the load order defaults < env < kv. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static const fqi_option table[] = {
    {"size", FQ_OPT_SIZE, "1M", 0, INT64_MAX, "a size"},
    {"count", FQ_OPT_INT, "7", -5, 100, "a count"},
    {"wait", FQ_OPT_DURATION, "-1", -1, 1000, "a duration"},
    {"flag", FQ_OPT_BOOL, "false", 0, 1, "a flag"},
    {"name", FQ_OPT_STRING, "abc", 0, 0, "a string"},
};

Test(options, units_and_ranges)
{
	int64_t v;

	cr_assert_eq(fqi_option_parse(&table[0], "4G", &v), 0);
	cr_assert_eq(v, (int64_t)4 << 30);
	cr_assert_eq(fqi_option_parse(&table[0], "16KiB", &v), 0);
	cr_assert_eq(v, 16384);
	cr_assert_eq(fqi_option_parse(&table[0], "12x", &v), FQ_EINVAL);
	cr_assert_eq(fqi_option_parse(&table[0], "-1", &v), FQ_ERANGE);
	cr_assert_eq(fqi_option_parse(&table[0], "99999999T", &v), FQ_ERANGE);
	cr_assert_eq(fqi_option_parse(&table[1], "101", &v), FQ_ERANGE);
	cr_assert_eq(fqi_option_parse(&table[1], "1K", &v), FQ_EINVAL);
	cr_assert_eq(fqi_option_parse(&table[2], "infinite", &v), 0);
	cr_assert_eq(v, -1);
	cr_assert_eq(fqi_option_parse(&table[3], "yes", &v), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(fqi_option_parse(&table[3], "maybe", &v), FQ_EINVAL);
}

Test(options, defaults_then_environment_then_string)
{
	int64_t values[5];
	char *strings[5] = {0};

	setenv("FQ_UNIT_COUNT", "9", 1);
	cr_assert_eq(fqi_options_load("unit", table, 5, "size=2K,name=xyz", values, strings), 0);
	cr_assert_eq(values[0], 2048);
	cr_assert_eq(values[1], 9);
	cr_assert_eq(values[2], -1);
	cr_assert_eq(values[3], 0);
	cr_assert_str_eq(strings[4], "xyz");
	cr_assert_eq(fqi_options_load("unit", table, 5, "nosuch=1", values, strings), FQ_ENOENT);
	cr_assert_eq(fqi_options_load("unit", table, 5, "count", values, strings), FQ_EINVAL);
	setenv("FQ_UNIT_COUNT", "many", 1);
	cr_assert_eq(fqi_options_load("unit", table, 5, NULL, values, strings), FQ_EINVAL);
	unsetenv("FQ_UNIT_COUNT");
	for (int i = 0; i < 5; i++)
		free(strings[i]);
}

Test(options, catalogue_lists_socket_and_transport_options)
{
	fq_opt_info info;
	bool hwm = false;
	size_t i;

	for (i = 0; fq_option_at(i, &info) == 0; i++) {
		cr_assert_not_null(info.help);
		cr_assert_not_null(info.default_value);
		if (strcmp(info.component, "socket") == 0 && strcmp(info.name, "snd_hwm") == 0)
			hwm = true;
	}
	cr_assert(hwm);
	cr_assert_geq(i, (size_t)FQI_SO_COUNT);
	cr_assert_eq(fq_option_at(i, &info), FQ_ENOENT);
}

Test(url, split_scheme_and_rest)
{
	fqi_url u;

	cr_assert_eq(fqi_url_parse("tcp://127.0.0.1:5555", &u), 0);
	cr_assert_str_eq(u.scheme, "tcp");
	cr_assert_str_eq(u.rest, "127.0.0.1:5555");
	cr_assert_eq(fqi_url_parse("ipc:///tmp/x", &u), 0);
	cr_assert_str_eq(u.rest, "/tmp/x");
	cr_assert_eq(fqi_url_parse("nourl", &u), FQ_EADDRINVAL);
	cr_assert_eq(fqi_url_parse("://x", &u), FQ_EADDRINVAL);
	cr_assert_eq(fqi_url_parse("tcp://", &u), FQ_EADDRINVAL);
}
