/*
 * Channels: FairMQ's JSON (--mq-config) and --channel-config into "chans.<name>.<sub>.<key>"
 * properties, and the check of whatever the store holds before anything is bound.
 *
 * Both readers collect a whole channel (every sub-channel with every key) before writing it,
 * and write nothing when they reported a problem, so the store never holds half a channel.
 * Values are checked once here, where the user's text and its position are still known;
 * fqc_channels_check checks again because properties can be set from elsewhere too.
 */
#include "config/config_impl.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- Keys ------------------------------------------------------------------------------- */

enum {
	K_TYPE,
	K_METHOD,
	K_ADDRESS,
	K_TRANSPORT,
	K_SNDBUF,
	K_RCVBUF,
	K_SNDKERNEL,
	K_RCVKERNEL,
	K_SNDTIMEO,
	K_RCVTIMEO,
	K_LINGER,
	K_RATELOG,
	K_PORTMIN,
	K_PORTMAX,
	K_AUTOBIND,
	NKEYS
};

typedef enum kind { KIND_STR, KIND_INT, KIND_BOOL } kind;

static const struct key_info {
	const char *name;
	kind kind;
	const char *def; /* NULL: none (type and method are required, address optional) */
	int64_t min, max;
} keys[NKEYS] = {
    {"type", KIND_STR, NULL, 0, 0},
    {"method", KIND_STR, NULL, 0, 0},
    {"address", KIND_STR, NULL, 0, 0},
    {"transport", KIND_STR, "default", 0, 0},
    {"sndBufSize", KIND_INT, "1000", 0, INT32_MAX},
    {"rcvBufSize", KIND_INT, "1000", 0, INT32_MAX},
    {"sndKernelSize", KIND_INT, "0", 0, INT32_MAX},
    {"rcvKernelSize", KIND_INT, "0", 0, INT32_MAX},
    {"sndTimeoutMs", KIND_INT, "-1", -1, INT32_MAX},
    {"rcvTimeoutMs", KIND_INT, "-1", -1, INT32_MAX},
    {"linger", KIND_INT, "500", -1, INT32_MAX},
    {"rateLogging", KIND_INT, "1", 0, INT32_MAX},
    {"portRangeMin", KIND_INT, "22000", 1, 65535},
    {"portRangeMax", KIND_INT, "23000", 1, 65535},
    {"autoBind", KIND_BOOL, "true", 0, 0},
};

const char *const fqc_channel_keys[] = {
    "type",       "method",        "address",       "transport",    "sndBufSize",
    "rcvBufSize", "sndKernelSize", "rcvKernelSize", "sndTimeoutMs", "rcvTimeoutMs",
    "linger",     "rateLogging",   "portRangeMin",  "portRangeMax", "autoBind",
};
const size_t fqc_channel_keys_count = sizeof(fqc_channel_keys) / sizeof(fqc_channel_keys[0]);

/* Upper bound of numSockets: a typo's 1e9 sockets should be an error, not an OOM. */
#define MAX_SOCKETS 4096

static int key_index(const char *name)
{
	for (int k = 0; k < NKEYS; k++)
		if (strcmp(keys[k].name, name) == 0)
			return k;
	return -1;
}

bool fqc_channel_name_ok(const char *name)
{
	if (name == NULL || name[0] == '\0')
		return false;
	for (const char *p = name; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '#' && *p != '-')
			return false;
	return true;
}

/* One endpoint of an address: "[@|+|>]scheme://rest". */
static bool endpoint_ok(const char *ep, size_t len, char *why, size_t wlen)
{
	static const char *const schemes[] = {"tcp", "ipc", "inproc"};
	const char *sep, *end = ep + len;
	size_t slen;

	if (len > 0 && (*ep == '@' || *ep == '+' || *ep == '>')) {
		ep++;
		len--;
	}
	if (len == 0) {
		snprintf(why, wlen, "empty address in the list");
		return false;
	}
	sep = strstr(ep, "://");
	if (sep == NULL || sep >= end) {
		snprintf(why, wlen, "'%.*s' has no scheme (tcp://, ipc:// or inproc://)", (int)len,
		         ep);
		return false;
	}
	slen = (size_t)(sep - ep);
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		if (strlen(schemes[i]) == slen && strncmp(ep, schemes[i], slen) == 0) {
			const char *rest = sep + 3, *colon;

			if (rest >= end) {
				snprintf(why, wlen, "'%.*s' has nothing after the scheme", (int)len,
				         ep);
				return false;
			}
			if (i > 0)
				return true;
			/* tcp: HOST:PORT, with a port of digits. */
			colon = NULL;
			for (const char *p = rest; p < end; p++)
				if (*p == ':')
					colon = p;
			if (colon == NULL || colon == rest || colon + 1 == end) {
				snprintf(why, wlen, "'%.*s' is not tcp://HOST:PORT", (int)len, ep);
				return false;
			}
			for (const char *p = colon + 1; p < end; p++)
				if (!isdigit((unsigned char)*p) || end - colon - 1 > 5) {
					snprintf(why, wlen, "'%.*s' has a bad port", (int)len, ep);
					return false;
				}
			if (strtol(colon + 1, NULL, 10) > 65535) {
				snprintf(why, wlen, "'%.*s' has a bad port", (int)len, ep);
				return false;
			}
			return true;
		}
	}
	snprintf(why, wlen, "'%.*s' has an unknown scheme '%.*s' (tcp, ipc or inproc)", (int)len,
	         ep, (int)slen, ep);
	return false;
}

static bool address_ok(const char *text, char *why, size_t wlen)
{
	const char *p = text;

	for (;;) {
		size_t len = strcspn(p, ",");

		if (!endpoint_ok(p, len, why, wlen))
			return false;
		if (p[len] == '\0')
			return true;
		p += len + 1;
	}
}

/*
 * Check the text of key k and return its normalised form (malloc'ed): integers in decimal,
 * bools as true/false. NULL with a reason in why, or NULL with why empty when out of memory.
 */
static char *normalize(int k, const char *text, char *why, size_t wlen)
{
	char buf[32];
	int64_t v;
	bool b;

	why[0] = '\0';
	switch (keys[k].kind) {
	case KIND_INT:
		if (!fqc_parse_i64(text, &v)) {
			snprintf(why, wlen, "'%s' is not an integer", text);
			return NULL;
		}
		if (v < keys[k].min || v > keys[k].max) {
			snprintf(why, wlen, "%s is out of range (%lld to %lld)", text,
			         (long long)keys[k].min, (long long)keys[k].max);
			return NULL;
		}
		snprintf(buf, sizeof(buf), "%lld", (long long)v);
		return strdup(buf);
	case KIND_BOOL:
		if (!fqc_parse_bool(text, &b)) {
			snprintf(why, wlen, "'%s' is not a bool (true or false)", text);
			return NULL;
		}
		return strdup(b ? "true" : "false");
	case KIND_STR:
		break;
	}
	if (k == K_TYPE) {
		fq_socket_type t;

		if (fq_socket_type_parse(text, &t) != 0) {
			snprintf(why, wlen,
			         "'%s' is not a socket type (pair, pub, sub, req, rep, push, pull)",
			         text);
			return NULL;
		}
	} else if (k == K_METHOD) {
		if (strcmp(text, "bind") != 0 && strcmp(text, "connect") != 0) {
			snprintf(why, wlen, "'%s' is not bind or connect", text);
			return NULL;
		}
	} else if (k == K_ADDRESS) {
		if (!address_ok(text, why, wlen))
			return NULL;
	} else if (k == K_TRANSPORT) {
		bool ok = text[0] != '\0';

		for (const char *p = text; *p != '\0'; p++)
			ok = ok && (isalnum((unsigned char)*p) || *p == '_' || *p == '-');
		if (!ok) {
			snprintf(why, wlen, "'%s' is not a transport name", text);
			return NULL;
		}
	}
	return strdup(text);
}

/* ---- Collected channels ----------------------------------------------------------------- */

typedef struct subchan {
	char *v[NKEYS];  /* malloc'ed values, NULL = not given */
	bool bad[NKEYS]; /* given but reported already: not "missing" too */
} subchan;

typedef struct chan {
	char *name;
	subchan *subs;
	size_t nsub;
} chan;

static void sub_clear(subchan *s)
{
	for (int k = 0; k < NKEYS; k++) {
		free(s->v[k]);
		s->v[k] = NULL;
	}
}

static void chans_free(chan *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < c[i].nsub; j++)
			sub_clear(&c[i].subs[j]);
		free(c[i].subs);
		free(c[i].name);
	}
	free(c);
}

/* dst = base with over's values on top (over may be NULL). false when out of memory. */
static bool sub_merge(subchan *dst, const subchan *base, const subchan *over)
{
	for (int k = 0; k < NKEYS; k++) {
		bool use_over = over != NULL && (over->v[k] != NULL || over->bad[k]);
		const char *v = use_over ? over->v[k] : base->v[k];

		dst->bad[k] = use_over ? over->bad[k] : base->bad[k];
		dst->v[k] = v != NULL ? strdup(v) : NULL;
		if (v != NULL && dst->v[k] == NULL)
			return false;
	}
	return true;
}

/* Replace the channel's properties with these sub-channels, defaults filled in. */
static int write_channel(fqc_props *props, const chan *c)
{
	char key[512];
	int rc = 0;

	snprintf(key, sizeof(key), "chans.%s.", c->name);
	fqc_props_delete_prefix(props, key);
	for (size_t i = 0; i < c->nsub && rc == 0; i++) {
		for (int k = 0; k < NKEYS && rc == 0; k++) {
			const char *v = c->subs[i].v[k] != NULL ? c->subs[i].v[k] : keys[k].def;

			if (v == NULL)
				continue;
			snprintf(key, sizeof(key), "chans.%s.%zu.%s", c->name, i, keys[k].name);
			rc = fqc_props_set(props, key, v);
		}
	}
	return rc;
}

/* ---- JSON ------------------------------------------------------------------------------- */

#define MAX_DEPTH 16

typedef struct jctx {
	const char *path;
	const char *text;
	size_t len;
	FILE *err;
	int rc;
	fqc_json_step steps[MAX_DEPTH];
	size_t depth;
} jctx;

static void push_key(jctx *c, const char *key)
{
	if (c->depth < MAX_DEPTH)
		c->steps[c->depth] = (fqc_json_step){key, 0};
	c->depth++;
}

static void push_index(jctx *c, size_t index)
{
	if (c->depth < MAX_DEPTH)
		c->steps[c->depth] = (fqc_json_step){NULL, index};
	c->depth++;
}

static void pop(jctx *c)
{
	c->depth--;
}

/* Report at the current path (its key when at_key), falling back to the nearest ancestor
 * the locator finds. */
static void jreport(jctx *c, bool at_key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void jreport(jctx *c, bool at_key, const char *fmt, ...)
{
	char msg[768];
	size_t n = c->depth < MAX_DEPTH ? c->depth : MAX_DEPTH;
	long off = -1;
	int line, col;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (size_t k = n + 1; k-- > 0 && off < 0;)
		off = fqc_json_locate(c->text, c->len, c->steps, k, at_key && k == n);
	fqc_json_linecol(c->text, off >= 0 ? (size_t)off : 0, &line, &col);
	fqc_report(c->err, "%s:%d:%d: %s", c->path, line, col, msg);
	if (c->rc == 0)
		c->rc = FQ_EINVAL;
}

static const char *json_kind(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a bool";
	case JSON_NULL:
		return "null";
	}
	return "something else";
}

/*
 * The value of member `name` (already pushed on the path) for channel key k, checked and
 * normalised; NULL after a report (or when out of memory: c->rc says which).
 */
static char *json_value(jctx *c, int k, const json_t *j)
{
	char buf[64], why[256], *v;
	const char *text = NULL;

	switch (keys[k].kind) {
	case KIND_STR:
		if (json_is_string(j))
			text = json_string_value(j);
		break;
	case KIND_INT:
		/* FairMQ's own writer puts numbers in strings. */
		if (json_is_integer(j)) {
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
			text = buf;
		} else if (json_is_string(j)) {
			text = json_string_value(j);
		}
		break;
	case KIND_BOOL:
		if (json_is_boolean(j))
			text = json_is_true(j) ? "true" : "false";
		else if (json_is_string(j))
			text = json_string_value(j);
		break;
	}
	if (text == NULL) {
		jreport(c, false, "%s: expected %s, got %s", keys[k].name,
		        keys[k].kind == KIND_STR   ? "a string"
		        : keys[k].kind == KIND_INT ? "an integer"
		                                   : "true or false",
		        json_kind(j));
		return NULL;
	}
	v = normalize(k, text, why, sizeof(why));
	if (v == NULL && why[0] != '\0')
		jreport(c, false, "%s: %s", keys[k].name, why);
	else if (v == NULL)
		c->rc = FQ_ENOMEM;
	return v;
}

/* The channel keys of one object (a channel's defaults or a socket) into s. */
static void json_sub(jctx *c, const json_t *obj, subchan *s, const char *where)
{
	const char *name;
	json_t *val;

	json_object_foreach((json_t *)obj, name, val)
	{
		int k = key_index(name);

		push_key(c, name);
		if (k >= 0) {
			free(s->v[k]);
			s->v[k] = json_value(c, k, val);
			s->bad[k] = s->v[k] == NULL;
		} else if (strcmp(where, "a channel") != 0 ||
		           (strcmp(name, "name") != 0 && strcmp(name, "numSockets") != 0 &&
		            strcmp(name, "sockets") != 0)) {
			jreport(c, true, "unknown key '%s' in %s", name, where);
		}
		pop(c);
	}
}

/* Missing "type" or "method" of sub-channel i, reported at the object that should have had
 * it (the path points there). */
static void json_require(jctx *c, const chan *ch, size_t i)
{
	static const int required[] = {K_TYPE, K_METHOD};

	for (size_t r = 0; r < 2; r++)
		if (ch->subs[i].v[required[r]] == NULL && !ch->subs[i].bad[required[r]])
			jreport(c, false, "channel '%s' sub-channel %zu: missing \"%s\"", ch->name,
			        i, keys[required[r]].name);
}

static void json_channel(jctx *c, const json_t *jc, chan *ch)
{
	subchan base = {{NULL}, {false}};
	json_t *jname = json_object_get(jc, "name"), *jnum = json_object_get(jc, "numSockets");
	json_t *jsocks = json_object_get(jc, "sockets");
	int64_t num = 0;
	size_t nsock = 0;

	if (jname == NULL) {
		jreport(c, false, "a channel without \"name\"");
	} else {
		push_key(c, "name");
		if (!json_is_string(jname))
			jreport(c, false, "name: expected a string, got %s", json_kind(jname));
		else if (!fqc_channel_name_ok(json_string_value(jname)))
			jreport(c, false,
			        "name: '%s' is not a channel name (letters, digits, _ # -)",
			        json_string_value(jname));
		else
			ch->name = strdup(json_string_value(jname));
		pop(c);
	}
	json_sub(c, jc, &base, "a channel");
	if (jnum != NULL) {
		push_key(c, "numSockets");
		if (json_is_integer(jnum))
			num = json_integer_value(jnum);
		else if (!json_is_string(jnum) || !fqc_parse_i64(json_string_value(jnum), &num))
			num = -1;
		if (num < 0 || num > MAX_SOCKETS) {
			jreport(c, false, "numSockets: expected an integer from 0 to %d",
			        MAX_SOCKETS);
			num = 0;
		}
		pop(c);
	}
	if (jsocks != NULL && !json_is_array(jsocks)) {
		push_key(c, "sockets");
		jreport(c, false, "sockets: expected an array, got %s", json_kind(jsocks));
		pop(c);
		jsocks = NULL;
	}
	nsock = jsocks != NULL ? json_array_size(jsocks) : 0;
	/* numSockets > 0 wins over "sockets" (FairMQ ignores the list then). */
	ch->nsub = num > 0 ? (size_t)num : nsock > 0 ? nsock : 1;
	ch->subs = calloc(ch->nsub, sizeof(subchan));
	if (ch->subs == NULL) {
		ch->nsub = 0;
		c->rc = FQ_ENOMEM;
		sub_clear(&base);
		return;
	}
	if (num == 0 && nsock > 0) {
		push_key(c, "sockets");
		for (size_t i = 0; i < nsock; i++) {
			json_t *js = json_array_get(jsocks, i);
			subchan over = {{NULL}, {false}};

			push_index(c, i);
			if (!json_is_object(js))
				jreport(c, false, "sockets[%zu]: expected an object, got %s", i,
				        json_kind(js));
			else
				json_sub(c, js, &over, "a socket");
			if (!sub_merge(&ch->subs[i], &base, &over))
				c->rc = FQ_ENOMEM;
			if (ch->name != NULL && json_is_object(js))
				json_require(c, ch, i);
			sub_clear(&over);
			pop(c);
		}
		pop(c);
	} else {
		for (size_t i = 0; i < ch->nsub; i++) {
			if (!sub_merge(&ch->subs[i], &base, NULL))
				c->rc = FQ_ENOMEM;
		}
		/* The same values everywhere: one report for all of them. */
		if (ch->name != NULL)
			json_require(c, ch, 0);
	}
	sub_clear(&base);
}

/* The device entry's channels into *out. */
static void json_device(jctx *c, const json_t *dev, chan **out, size_t *nout)
{
	const char *name;
	json_t *val, *jchans = json_object_get(dev, "channels");
	chan *chans = NULL;
	size_t n = 0;

	json_object_foreach((json_t *)dev, name, val)
	{
		if (strcmp(name, "id") != 0 && strcmp(name, "key") != 0 &&
		    strcmp(name, "channels") != 0) {
			push_key(c, name);
			jreport(c, true, "unknown key '%s' in a device entry", name);
			pop(c);
		}
	}
	if (jchans == NULL)
		goto done; /* a device without channels (it may add some itself) */
	push_key(c, "channels");
	if (!json_is_array(jchans)) {
		jreport(c, false, "channels: expected an array, got %s", json_kind(jchans));
		pop(c);
		goto done;
	}
	chans = calloc(json_array_size(jchans) + 1, sizeof(chan));
	if (chans == NULL) {
		c->rc = FQ_ENOMEM;
		pop(c);
		goto done;
	}
	for (size_t i = 0; i < json_array_size(jchans); i++) {
		json_t *jc = json_array_get(jchans, i);

		push_index(c, i);
		if (!json_is_object(jc)) {
			jreport(c, false, "channels[%zu]: expected an object, got %s", i,
			        json_kind(jc));
			pop(c);
			continue;
		}
		json_channel(c, jc, &chans[n]);
		for (size_t j = 0; j < n && chans[n].name != NULL; j++) {
			if (chans[j].name != NULL && strcmp(chans[j].name, chans[n].name) == 0) {
				push_key(c, "name");
				jreport(c, false, "channel '%s' is defined twice", chans[n].name);
				pop(c);
				break;
			}
		}
		n++;
		pop(c);
	}
	pop(c);
done:
	*out = chans;
	*nout = n;
}

/* Read the whole file (NUL-terminated) for jansson and the locator. */
static int read_file(const char *path, char **text, size_t *len, FILE *err)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 4096, n = 0;
	char *buf;

	if (f == NULL) {
		int e = errno;

		fqc_report(err, "%s: %s", path, strerror(e));
		return e == ENOENT ? FQ_ENOENT : FQ_EINVAL;
	}
	buf = malloc(cap);
	while (buf != NULL) {
		size_t got = fread(buf + n, 1, cap - n - 1, f);

		n += got;
		if (n + 1 < cap)
			break;
		{
			char *grown = realloc(buf, cap * 2);

			if (grown == NULL) {
				free(buf);
				buf = NULL;
			}
			buf = grown;
			cap *= 2;
		}
	}
	if (buf != NULL && ferror(f)) {
		fqc_report(err, "%s: read error", path);
		fclose(f);
		free(buf);
		return FQ_EINVAL;
	}
	fclose(f);
	if (buf == NULL)
		return FQ_ENOMEM;
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
}

/* Find the device entry (reporting malformed entries on the way); NULL when there is none. */
static const json_t *json_find_device(jctx *c, const json_t *devices, const char *id,
                                      const char *key, size_t *index)
{
	const bool by_key = key != NULL && key[0] != '\0';
	const char *want = by_key ? key : id, *field = by_key ? "key" : "id";
	const json_t *found = NULL;

	for (size_t i = 0; i < json_array_size(devices); i++) {
		json_t *dev = json_array_get(devices, i), *f;

		push_index(c, i);
		if (!json_is_object(dev)) {
			jreport(c, false, "devices[%zu]: expected an object, got %s", i,
			        json_kind(dev));
		} else {
			f = json_object_get(dev, field);
			if (f != NULL && !json_is_string(f)) {
				push_key(c, field);
				jreport(c, false, "%s: expected a string, got %s", field,
				        json_kind(f));
				pop(c);
			} else if (f != NULL && found == NULL && want != NULL &&
			           strcmp(json_string_value(f), want) == 0) {
				found = dev;
				*index = i;
			}
		}
		pop(c);
	}
	return found;
}

int fqc_channels_from_json(const char *path, const char *id, const char *key, fqc_props *props,
                           FILE *err)
{
	jctx c = {.path = path, .err = err};
	json_error_t jerr;
	json_t *root = NULL, *fmq, *devices, *val;
	const json_t *dev;
	const char *name;
	chan *chans = NULL;
	size_t nchans = 0, index = 0;
	char *text = NULL;
	int rc;

	if (path == NULL || props == NULL ||
	    ((id == NULL || id[0] == '\0') && (key == NULL || key[0] == '\0')))
		return FQ_EINVAL;
	rc = read_file(path, &text, &c.len, err);
	if (rc != 0)
		return rc;
	c.text = text;
	root = json_loadb(text, c.len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		fqc_report(err, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
		free(text);
		return FQ_EINVAL;
	}
	if (!json_is_object(root) || (fmq = json_object_get(root, "fairMQOptions")) == NULL) {
		jreport(&c, false, "expected an object with \"fairMQOptions\"");
		goto out;
	}
	push_key(&c, "fairMQOptions");
	if (!json_is_object(fmq)) {
		jreport(&c, false, "fairMQOptions: expected an object, got %s", json_kind(fmq));
		goto out;
	}
	json_object_foreach(fmq, name, val)
	{
		if (strcmp(name, "devices") != 0) {
			push_key(&c, name);
			jreport(&c, true, "unknown key '%s' in fairMQOptions", name);
			pop(&c);
		}
	}
	devices = json_object_get(fmq, "devices");
	if (devices == NULL) {
		jreport(&c, false, "fairMQOptions without \"devices\"");
		goto out;
	}
	push_key(&c, "devices");
	if (!json_is_array(devices)) {
		jreport(&c, false, "devices: expected an array, got %s", json_kind(devices));
		goto out;
	}
	dev = json_find_device(&c, devices, id, key, &index);
	if (dev == NULL) {
		if (key != NULL && key[0] != '\0')
			fqc_report(err, "%s: no device entry with \"key\": \"%s\"", path, key);
		else
			fqc_report(err, "%s: no device entry with \"id\": \"%s\"", path, id);
		if (c.rc == 0)
			c.rc = FQ_ENOENT;
		goto out;
	}
	push_index(&c, index);
	json_device(&c, dev, &chans, &nchans);
	for (size_t i = 0; i < nchans && c.rc == 0; i++)
		c.rc = write_channel(props, &chans[i]);
out:
	chans_free(chans, nchans);
	json_decref(root);
	free(text);
	return c.rc;
}

/* ---- --channel-config ------------------------------------------------------------------- */

typedef struct sctx {
	const char *token;
	FILE *err;
	int rc;
} sctx;

static void sreport(sctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sreport(sctx *c, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fqc_report(c->err, "--channel-config '%s': %s", c->token, msg);
	if (c->rc == 0)
		c->rc = FQ_EINVAL;
}

/* Append ",more" to *s. */
static bool append(char **s, const char *more, size_t len)
{
	size_t a = strlen(*s);
	char *grown = realloc(*s, a + len + 2);

	if (grown == NULL)
		return false;
	grown[a] = ',';
	memcpy(grown + a + 1, more, len);
	grown[a + len + 1] = '\0';
	*s = grown;
	return true;
}

int fqc_channels_from_subopt(const char *token, fqc_props *props, FILE *err)
{
	sctx c = {token, err, 0};
	subchan base = {{NULL}, {false}};
	char **addrs = NULL, *name = NULL, why[256];
	size_t naddr = 0;
	const char *p, *colon, *eq;
	int64_t num = 0;
	bool last_was_address = false;
	chan ch = {NULL, NULL, 0};

	if (token == NULL || props == NULL)
		return FQ_EINVAL;
	/* "data:type=push,..." names the channel before the first ':' (if that comes before any
	 * '=': "name=data,...,address=tcp://..." has its first ':' in the address). */
	p = token;
	colon = strchr(token, ':');
	eq = strchr(token, '=');
	if (strncmp(token, "name=", 5) != 0 && colon != NULL && (eq == NULL || colon < eq)) {
		name = strndup(token, (size_t)(colon - token));
		if (name == NULL)
			return FQ_ENOMEM;
		p = colon + 1;
	}
	while (*p != '\0' && c.rc != FQ_ENOMEM) {
		size_t len = strcspn(p, ",");
		const char *e = memchr(p, '=', len);
		char *value;
		int k;

		if (e == NULL) {
			/* "address=tcp://a:1,tcp://b:2": the address list goes on. */
			if (last_was_address) {
				if (!append(&addrs[naddr - 1], p, len))
					c.rc = FQ_ENOMEM;
			} else if (len > 0) {
				sreport(&c, "'%.*s' is not KEY=VALUE", (int)len, p);
			}
		} else {
			char kname[64];
			size_t klen = (size_t)(e - p);

			snprintf(kname, sizeof(kname), "%.*s", (int)(klen < 63 ? klen : 63), p);
			value = strndup(e + 1, len - klen - 1);
			if (value == NULL) {
				c.rc = FQ_ENOMEM;
				break;
			}
			last_was_address = false;
			k = key_index(kname);
			if (strcmp(kname, "name") == 0) {
				free(name);
				name = value;
				value = NULL;
			} else if (strcmp(kname, "numSockets") == 0) {
				if (!fqc_parse_i64(value, &num) || num < 0 || num > MAX_SOCKETS) {
					sreport(&c,
					        "numSockets: '%s' is not an integer from 0 to %d",
					        value, MAX_SOCKETS);
					num = 0;
				}
			} else if (k == K_ADDRESS) {
				char **grown = realloc(addrs, (naddr + 1) * sizeof(char *));

				if (grown == NULL) {
					c.rc = FQ_ENOMEM;
				} else {
					addrs = grown;
					addrs[naddr++] = value;
					value = NULL;
					last_was_address = true;
				}
			} else if (k >= 0) {
				free(base.v[k]);
				base.v[k] = normalize(k, value, why, sizeof(why));
				base.bad[k] = base.v[k] == NULL;
				if (base.v[k] == NULL && why[0] != '\0')
					sreport(&c, "%s: %s", kname, why);
				else if (base.v[k] == NULL)
					c.rc = FQ_ENOMEM;
			} else {
				sreport(&c, "unknown key '%s'", kname);
			}
			free(value);
		}
		p += len;
		if (*p == ',')
			p++;
	}
	/* Addresses are checked once complete (a list may span several ','-separated pieces). */
	for (size_t i = 0; i < naddr; i++) {
		char *norm = normalize(K_ADDRESS, addrs[i], why, sizeof(why));

		if (norm == NULL)
			sreport(&c, "address: %s", why);
		free(norm);
	}
	if (name == NULL)
		sreport(&c, "no channel name (name=NAME,... or NAME:...)");
	else if (!fqc_channel_name_ok(name))
		sreport(&c, "'%s' is not a channel name (letters, digits, _ # -)", name);
	if (base.v[K_TYPE] == NULL && !base.bad[K_TYPE])
		sreport(&c, "missing type=");
	if (base.v[K_METHOD] == NULL && !base.bad[K_METHOD])
		sreport(&c, "missing method=");
	if (num > 0 && naddr > 1 && (size_t)num != naddr)
		sreport(&c, "numSockets=%lld but %zu addresses", (long long)num, naddr);

	if (c.rc == 0) {
		ch.name = name;
		ch.nsub = num > 0 ? (size_t)num : naddr > 0 ? naddr : 1;
		ch.subs = calloc(ch.nsub, sizeof(subchan));
		if (ch.subs == NULL)
			c.rc = FQ_ENOMEM;
		for (size_t i = 0; c.rc == 0 && i < ch.nsub; i++) {
			subchan over = {{NULL}, {false}};

			over.v[K_ADDRESS] = naddr == 0 ? NULL : addrs[naddr == 1 ? 0 : i];
			if (!sub_merge(&ch.subs[i], &base, &over))
				c.rc = FQ_ENOMEM;
		}
		if (c.rc == 0)
			c.rc = write_channel(props, &ch);
		for (size_t i = 0; ch.subs != NULL && i < ch.nsub; i++)
			sub_clear(&ch.subs[i]);
		free(ch.subs);
	}
	sub_clear(&base);
	fqc_strv_free(addrs, naddr);
	free(name);
	return c.rc;
}

/* ---- What the store holds --------------------------------------------------------------- */

/*
 * Split "chans.NAME.SUB.KEY": name and key point into `key` (name not terminated: nlen).
 * false when the key does not have that shape.
 */
static bool split_key(const char *key, const char **name, size_t *nlen, size_t *sub,
                      const char **rest)
{
	const char *p = key + 6, *dot = strchr(p, '.'), *q;
	size_t v = 0;

	if (strncmp(key, "chans.", 6) != 0 || dot == NULL || dot == p)
		return false;
	q = dot + 1;
	if (!isdigit((unsigned char)*q) || (q[0] == '0' && isdigit((unsigned char)q[1])))
		return false;
	for (; isdigit((unsigned char)*q); q++) {
		if (v > MAX_SOCKETS * 16)
			return false;
		v = v * 10 + (size_t)(*q - '0');
	}
	if (*q != '.' || q[1] == '\0')
		return false;
	*name = p;
	*nlen = (size_t)(dot - p);
	*sub = v;
	*rest = q + 1;
	return true;
}

int fqc_channels_list(fqc_props *props, char ***names, size_t **subs, size_t *n)
{
	char **k = NULL, **nm = NULL;
	size_t nk = 0, cnt = 0, *sb = NULL;
	int rc;

	if (props == NULL || names == NULL || subs == NULL || n == NULL)
		return FQ_EINVAL;
	*names = NULL;
	*subs = NULL;
	*n = 0;
	rc = fqc_props_list(props, "chans.", &k, NULL, &nk);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < nk && rc == 0; i++) {
		const char *name, *rest;
		size_t nlen, sub;

		if (!split_key(k[i], &name, &nlen, &sub, &rest))
			continue;
		/* Keys of one channel are contiguous in sorted order (they share "chans.NAME."). */
		if (cnt == 0 || strlen(nm[cnt - 1]) != nlen ||
		    strncmp(nm[cnt - 1], name, nlen) != 0) {
			char **gn = realloc(nm, (cnt + 1) * sizeof(char *));
			size_t *gs;

			if (gn == NULL) {
				rc = FQ_ENOMEM;
				break;
			}
			nm = gn;
			gs = realloc(sb, (cnt + 1) * sizeof(size_t));
			if (gs == NULL) {
				rc = FQ_ENOMEM;
				break;
			}
			sb = gs;
			nm[cnt] = strndup(name, nlen);
			sb[cnt] = 0;
			if (nm[cnt] == NULL) {
				rc = FQ_ENOMEM;
				break;
			}
			cnt++;
		}
		if (sub + 1 > sb[cnt - 1])
			sb[cnt - 1] = sub + 1;
	}
	fqc_strv_free(k, nk);
	if (rc != 0) {
		fqc_strv_free(nm, cnt);
		free(sb);
		return rc;
	}
	*names = nm;
	*subs = sb;
	*n = cnt;
	return 0;
}

/* Check one sub-channel's values (vals[k] may be NULL: missing) and fill in defaults. */
static int check_sub(fqc_props *props, const char *name, size_t i, const char *const *vals,
                     FILE *err)
{
	char key[512], why[256];
	int rc = 0;

	for (int k = 0; k < NKEYS; k++) {
		char *norm;

		snprintf(key, sizeof(key), "chans.%s.%zu.%s", name, i, keys[k].name);
		if (vals[k] == NULL) {
			if (k == K_TYPE || k == K_METHOD) {
				fqc_report(err, "%s: missing (channel '%s' needs a %s)", key, name,
				           keys[k].name);
				rc = FQ_EINVAL;
			} else if (keys[k].def != NULL) {
				int r = fqc_props_set(props, key, keys[k].def);

				if (r != 0)
					return r;
			}
			continue;
		}
		norm = normalize(k, vals[k], why, sizeof(why));
		if (norm == NULL && why[0] == '\0')
			return FQ_ENOMEM;
		if (norm == NULL) {
			fqc_report(err, "%s: %s", key, why);
			rc = FQ_EINVAL;
		}
		free(norm);
	}
	if (rc == 0 && vals[K_PORTMIN] != NULL && vals[K_PORTMAX] != NULL &&
	    strtol(vals[K_PORTMIN], NULL, 10) > strtol(vals[K_PORTMAX], NULL, 10)) {
		fqc_report(err, "chans.%s.%zu: portRangeMin %s is above portRangeMax %s", name, i,
		           vals[K_PORTMIN], vals[K_PORTMAX]);
		rc = FQ_EINVAL;
	}
	return rc;
}

int fqc_channels_check(fqc_props *props, FILE *err)
{
	char **k = NULL, **v = NULL, *name = NULL;
	size_t nk = 0, i = 0;
	int rc;

	if (props == NULL)
		return FQ_EINVAL;
	rc = fqc_props_list(props, "chans.", &k, &v, &nk);
	if (rc != 0)
		return rc;
	while (i < nk && rc != FQ_ENOMEM) {
		const char *nm, *rest;
		size_t nlen, sub, start = i, nsub = 0, got = 0;
		const char *(*vals)[NKEYS] = NULL;
		bool *seen = NULL;

		if (!split_key(k[i], &nm, &nlen, &sub, &rest)) {
			fqc_report(err, "%s: not a channel property (chans.NAME.INDEX.KEY)", k[i]);
			rc = FQ_EINVAL;
			i++;
			continue;
		}
		free(name);
		name = strndup(nm, nlen);
		if (name == NULL) {
			rc = FQ_ENOMEM;
			break;
		}
		if (!fqc_channel_name_ok(name)) {
			fqc_report(err,
			           "chans.%s: '%s' is not a channel name (letters, digits, _ # -)",
			           name, name);
			rc = FQ_EINVAL;
		}
		/* This channel's run of keys, and its number of sub-channels. */
		for (; i < nk; i++) {
			const char *n2, *r2;
			size_t l2, s2;

			if (!split_key(k[i], &n2, &l2, &s2, &r2) || l2 != nlen ||
			    strncmp(n2, name, nlen) != 0)
				break;
			if (s2 + 1 > nsub)
				nsub = s2 + 1;
		}
		vals = calloc(nsub, sizeof(*vals));
		seen = calloc(nsub, sizeof(bool));
		if (vals == NULL || seen == NULL) {
			free(vals);
			free(seen);
			rc = FQ_ENOMEM;
			break;
		}
		for (size_t j = start; j < i; j++) {
			int ki;

			(void)split_key(k[j], &nm, &nlen, &sub, &rest);
			ki = key_index(rest);
			if (!seen[sub])
				got++;
			seen[sub] = true;
			if (ki < 0) {
				fqc_report(err, "%s: unknown channel property '%s'", k[j], rest);
				rc = FQ_EINVAL;
			} else {
				vals[sub][ki] = v[j];
			}
		}
		if (got != nsub) {
			fqc_report(err, "chans.%s: sub-channels are not numbered 0 to %zu", name,
			           nsub - 1);
			rc = FQ_EINVAL;
		}
		for (size_t s = 0; s < nsub && rc != FQ_ENOMEM; s++) {
			if (!seen[s])
				continue;
			int r = check_sub(props, name, s, vals[s], err);

			if (r != 0)
				rc = r;
		}
		/* One transport instance serves a channel: its sub-channels must agree. */
		for (size_t s = 1; s < nsub; s++) {
			const char *a = vals[0][K_TRANSPORT] ? vals[0][K_TRANSPORT] : "default";
			const char *b = vals[s][K_TRANSPORT] ? vals[s][K_TRANSPORT] : "default";

			if (seen[0] && seen[s] && strcmp(a, b) != 0) {
				fqc_report(
				    err,
				    "chans.%s: sub-channels 0 and %zu have different transports "
				    "('%s' and '%s')",
				    name, s, a, b);
				rc = rc != FQ_ENOMEM ? FQ_EINVAL : rc;
				break;
			}
		}
		free(vals);
		free(seen);
	}
	free(name);
	fqc_strv_free(k, nk);
	fqc_strv_free(v, nk);
	return rc;
}
