/*
 * Option tables: parsing of typed values, defaults < environment < "key=value,..." strings,
 * and the catalogue walked by fq_option_at (fq-info --options).
 */
#include "core.h"
#include "transport.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int parse_bool(const char *text, int64_t *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on", "y"};
	static const char *const no[] = {"0", "false", "no", "off", "n"};

	for (size_t i = 0; i < FQI_ARRAY_LEN(yes); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return FQ_EINVAL;
}

/* Integer with an optional binary-unit suffix (K, M, G, T; "KiB" and "KB" read the same). */
static int parse_number(const char *text, bool units, int64_t *out)
{
	char *end;
	long long v;
	int shift = 0;

	errno = 0;
	v = strtoll(text, &end, 10); /* "010" is ten, not octal eight */
	if (end == text || errno == ERANGE)
		return errno == ERANGE ? FQ_ERANGE : FQ_EINVAL;
	if (units && *end != '\0') {
		switch (toupper((unsigned char)*end)) {
		case 'K':
			shift = 10;
			break;
		case 'M':
			shift = 20;
			break;
		case 'G':
			shift = 30;
			break;
		case 'T':
			shift = 40;
			break;
		case 'B':
			shift = 0;
			break;
		default:
			return FQ_EINVAL;
		}
		end++;
		if (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0)
			end += strlen(end);
	}
	if (*end != '\0')
		return FQ_EINVAL;
	if (shift > 0 && (v > (LLONG_MAX >> shift) || v < (LLONG_MIN >> shift)))
		return FQ_ERANGE;
	*out = (int64_t)v * ((int64_t)1 << shift);
	return 0;
}

int fqi_option_parse(const fqi_option *o, const char *text, int64_t *out)
{
	int rc;
	int64_t v = 0;

	if (text == NULL)
		return FQ_EINVAL;
	switch (o->type) {
	case FQ_OPT_BOOL:
		rc = parse_bool(text, &v);
		break;
	case FQ_OPT_INT:
		rc = parse_number(text, false, &v);
		break;
	case FQ_OPT_SIZE:
		rc = parse_number(text, true, &v);
		break;
	case FQ_OPT_DURATION:
		if (strcasecmp(text, "inf") == 0 || strcasecmp(text, "infinite") == 0) {
			v = -1;
			rc = 0;
		} else {
			rc = parse_number(text, false, &v);
		}
		break;
	case FQ_OPT_STRING:
		*out = 0;
		return 0;
	default:
		return FQ_EINVAL;
	}
	if (rc != 0)
		return rc;
	if (o->type != FQ_OPT_BOOL && (v < o->min || v > o->max))
		return FQ_ERANGE;
	*out = v;
	return 0;
}

const char *fq_opt_type_name(fq_opt_type type)
{
	switch (type) {
	case FQ_OPT_BOOL:
		return "bool";
	case FQ_OPT_INT:
		return "int";
	case FQ_OPT_SIZE:
		return "size";
	case FQ_OPT_DURATION:
		return "duration";
	case FQ_OPT_STRING:
		return "string";
	}
	return "unknown";
}

int fq_opt_parse(fq_opt_type type, const char *text, int64_t *out)
{
	/* The widest range each type allows; tables narrow it per option. */
	static const fqi_option any[] = {
	    [FQ_OPT_BOOL] = {"", FQ_OPT_BOOL, "", 0, 1, ""},
	    [FQ_OPT_INT] = {"", FQ_OPT_INT, "", INT64_MIN, INT64_MAX, ""},
	    [FQ_OPT_SIZE] = {"", FQ_OPT_SIZE, "", 0, INT64_MAX, ""},
	    [FQ_OPT_DURATION] = {"", FQ_OPT_DURATION, "", -1, INT64_MAX, ""},
	    [FQ_OPT_STRING] = {"", FQ_OPT_STRING, "", 0, 0, ""},
	};
	int64_t v;
	int rc;

	if ((unsigned)type >= FQI_ARRAY_LEN(any) || text == NULL || out == NULL)
		return FQ_EINVAL;
	/* strtoll would take leading blanks and '+': a configuration value has neither. */
	if (type != FQ_OPT_BOOL && type != FQ_OPT_STRING &&
	    (isspace((unsigned char)text[0]) || text[0] == '+'))
		return FQ_EINVAL;
	rc = fqi_option_parse(&any[type], text, &v);
	if (rc == 0)
		*out = v;
	return rc;
}

int fqi_option_find(const fqi_option *table, size_t count, const char *name)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(table[i].name, name) == 0)
			return (int)i;
	}
	return FQ_ENOENT;
}

static void env_name(char *buf, size_t len, const char *component, const char *name)
{
	size_t i;

	snprintf(buf, len, "FQ_%s_%s", component, name);
	for (i = 0; buf[i] != '\0'; i++)
		buf[i] = (char)toupper((unsigned char)buf[i]);
}

static int set_one(const char *component, const fqi_option *table, size_t count, const char *key,
                   const char *value, int64_t *values, char **strings)
{
	int i = fqi_option_find(table, count, key);
	int rc;

	if (i < 0) {
		FQI_WARN("options", "unknown %s option '%s'", component, key);
		return FQ_ENOENT;
	}
	rc = fqi_option_parse(&table[i], value, &values[i]);
	if (rc != 0) {
		FQI_WARN("options", "bad value '%s' for %s option '%s': %s", value, component, key,
		         fq_strerror(rc));
		return FQ_EINVAL;
	}
	if (table[i].type == FQ_OPT_STRING && strings != NULL) {
		char *copy = strdup(value);

		if (copy == NULL)
			return FQ_ENOMEM;
		free(strings[i]);
		strings[i] = copy;
	}
	return 0;
}

int fqi_options_load(const char *component, const fqi_option *table, size_t count, const char *kv,
                     int64_t *values, char **strings)
{
	char name[128];
	int rc;

	for (size_t i = 0; i < count; i++) {
		const char *env;

		env_name(name, sizeof(name), component, table[i].name);
		env = getenv(name);
		rc = set_one(component, table, count, table[i].name, table[i].default_value, values,
		             strings);
		FQI_ASSERT(rc == 0); /* defaults are ours and must parse */
		if (env != NULL) {
			rc = set_one(component, table, count, table[i].name, env, values, strings);
			if (rc != 0)
				return rc;
		}
	}
	if (kv == NULL || *kv == '\0')
		return 0;

	char *copy = strdup(kv), *save = NULL;

	if (copy == NULL)
		return FQ_ENOMEM;
	rc = 0;
	for (char *item = strtok_r(copy, ",", &save); item != NULL && rc == 0;
	     item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');

		if (eq == NULL) {
			FQI_WARN("options", "'%s' is not key=value", item);
			rc = FQ_EINVAL;
			break;
		}
		*eq = '\0';
		rc = set_one(component, table, count, item, eq + 1, values, strings);
	}
	free(copy);
	return rc;
}

int fq_option_at(size_t i, fq_opt_info *out)
{
	if (out == NULL)
		return FQ_EINVAL;
	if (i < FQI_SO_COUNT) {
		const fqi_option *o = &fqi_socket_options[i];

		*out = (fq_opt_info){"socket", o->name, o->type, o->default_value, o->help};
		return 0;
	}
	i -= FQI_SO_COUNT;
	for (size_t t = 0; t < fqi_transport_count(); t++) {
		const fqi_transport_desc *d = fqi_transport_at(t);

		if (i < d->option_count) {
			const fqi_option *o = &d->options[i];

			*out = (fq_opt_info){d->name, o->name, o->type, o->default_value, o->help};
			return 0;
		}
		i -= d->option_count;
	}
	return FQ_ENOENT;
}
