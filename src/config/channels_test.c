/* Channels from FairMQ JSON and --channel-config, the check of the store, and the positions
 * (FILE:LINE:COLUMN) of everything reported about a JSON file. */
#include "fq_test.h"

#include "config/config.h"
#include "config/config_impl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Scratch files and captured reports --------------------------------------------------- */

static char dir[64];
static char files[16][128];
static size_t nfiles;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/fq-config-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	nfiles = 0;
	fqc_set_program("fq-test");
}

static void teardown(void)
{
	for (size_t i = 0; i < nfiles; i++)
		unlink(files[i]);
	rmdir(dir);
}

TestSuite(json, .init = setup, .fini = teardown);
TestSuite(subopt, .init = setup, .fini = teardown);
TestSuite(check, .init = setup, .fini = teardown);

/* Write text into DIR/name and return the path. */
static const char *write_json(const char *name, const char *text)
{
	FILE *f;

	cr_assert_lt(nfiles, 16);
	snprintf(files[nfiles], sizeof(files[0]), "%s/%s", dir, name);
	f = fopen(files[nfiles], "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return files[nfiles++];
}

#define assert_has(hay, needle) \
	cr_assert_not_null(strstr((hay), (needle)), "missing \"%s\" in:\n%s", (needle), (hay))

static void getp(fqc_props *p, const char *key, const char *want)
{
	char buf[256];
	int rc = fqc_props_get(p, key, buf, sizeof(buf));

	cr_assert_eq(rc, 0, "%s: %s", key, fq_err_name(rc));
	cr_assert_str_eq(buf, want, "%s: got '%s', want '%s'", key, buf, want);
}

/* Read a file expecting failure `code`; returns the report text (static copy). */
static const char *json_fails(const char *path, const char *id, const char *key, int code)
{
	static char text[4096];
	fqc_props *p;
	fqt_capture err;

	FQ_PASS(fqc_props_new(&p));
	fqt_capture_open(&err);
	FQ_FAIL(fqc_channels_from_json(path, id, key, p, err.f), code);
	snprintf(text, sizeof(text), "%s", fqt_capture_text(&err));
	fqt_capture_close(&err);
	/* Nothing of a failed file reaches the store. */
	cr_assert(!fqc_props_has(p, "chans.data.0.type"));
	fqc_props_free(p);
	return text;
}

/* The sampler -> sink example of FairMQ's documentation. */
static const char sampler_sink[] =
    "{\"fairMQOptions\":{\"devices\":[\n"
    "  {\"id\":\"sampler1\",\"channels\":[{\"name\":\"data\",\"sockets\":[{\"type\":\"push\","
    "\"method\":\"bind\",\"address\":\"tcp://*:5555\"}]}]},\n"
    "  {\"id\":\"sink1\",\"channels\":[{\"name\":\"data\",\"sockets\":[{\"type\":\"pull\","
    "\"method\":\"connect\",\"address\":\"tcp://localhost:5555\",\"transport\":\"shmem\"}]}]}]}}"
    "\n";

static void assert_defaults(fqc_props *p, const char *prefix)
{
	static const char *const def[][2] = {
	    {"sndBufSize", "1000"},    {"rcvBufSize", "1000"}, {"sndKernelSize", "0"},
	    {"rcvKernelSize", "0"},    {"sndTimeoutMs", "-1"}, {"rcvTimeoutMs", "-1"},
	    {"linger", "500"},         {"rateLogging", "1"},   {"portRangeMin", "22000"},
	    {"portRangeMax", "23000"}, {"autoBind", "true"},
	};
	char key[128];

	for (size_t i = 0; i < sizeof(def) / sizeof(def[0]); i++) {
		snprintf(key, sizeof(key), "%s.%s", prefix, def[i][0]);
		getp(p, key, def[i][1]);
	}
}

/* ---- JSON: what is read ------------------------------------------------------------------- */

Test(json, fairmq_sampler_sink_example)
{
	const char *path = write_json("ex.json", sampler_sink);
	fqc_props *p;
	char **names;
	size_t *subs, n;

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_channels_from_json(path, "sampler1", NULL, p, stderr));
	getp(p, "chans.data.0.type", "push");
	getp(p, "chans.data.0.method", "bind");
	getp(p, "chans.data.0.address", "tcp://*:5555");
	getp(p, "chans.data.0.transport", "default");
	assert_defaults(p, "chans.data.0");
	FQ_PASS(fqc_channels_check(p, stderr));
	FQ_PASS(fqc_channels_list(p, &names, &subs, &n));
	cr_assert_eq(n, 1);
	cr_assert_str_eq(names[0], "data");
	cr_assert_eq(subs[0], 1);
	fqc_strv_free(names, n);
	free(subs);
	fqc_props_free(p);

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_channels_from_json(path, "sink1", "", p, stderr));
	getp(p, "chans.data.0.type", "pull");
	getp(p, "chans.data.0.method", "connect");
	getp(p, "chans.data.0.address", "tcp://localhost:5555");
	getp(p, "chans.data.0.transport", "shmem");
	assert_defaults(p, "chans.data.0");
	fqc_props_free(p);
}

Test(json, num_sockets_and_inherited_channel_defaults)
{
	const char *path = write_json(
	    "n.json",
	    "{\"fairMQOptions\": {\"devices\": [{\"id\": \"d\", \"channels\": [\n"
	    "  {\"name\": \"data\", \"type\": \"pub\", \"method\": \"bind\", \"numSockets\": 3,\n"
	    "   \"address\": \"ipc:///tmp/x\", \"sndBufSize\": \"500\", \"autoBind\": \"false\"},\n"
	    "  {\"name\": \"ack#1\", \"type\": \"pull\", \"method\": \"connect\", \"linger\": 0,\n"
	    "   \"rateLogging\": \"0\", \"transport\": \"shmem\", \"autoBind\": false,\n"
	    "   \"sockets\": [{\"address\": \"tcp://a:1\"},\n"
	    "                {\"address\": \"tcp://b:2\", \"linger\": \"7\", \"method\": "
	    "\"bind\"},\n"
	    "                {}]},\n"
	    "  {\"name\": \"solo\", \"type\": \"req\", \"method\": \"connect\", \"sockets\": []}\n"
	    "]}]}}\n");
	fqc_props *p;
	char **names;
	size_t *subs, n;

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_channels_from_json(path, "d", NULL, p, stderr));
	for (int i = 0; i < 3; i++) {
		char pre[64], key[96];

		snprintf(pre, sizeof(pre), "chans.data.%d", i);
		snprintf(key, sizeof(key), "%s.type", pre);
		getp(p, key, "pub");
		snprintf(key, sizeof(key), "%s.address", pre);
		getp(p, key, "ipc:///tmp/x");
		snprintf(key, sizeof(key), "%s.sndBufSize", pre);
		getp(p, key, "500");
		snprintf(key, sizeof(key), "%s.autoBind", pre);
		getp(p, key, "false");
		snprintf(key, sizeof(key), "%s.rcvBufSize", pre);
		getp(p, key, "1000");
	}
	cr_assert(!fqc_props_has(p, "chans.data.3.type"));
	/* Socket values over channel values over defaults. */
	getp(p, "chans.ack#1.0.address", "tcp://a:1");
	getp(p, "chans.ack#1.0.linger", "0");
	getp(p, "chans.ack#1.0.method", "connect");
	getp(p, "chans.ack#1.1.linger", "7");
	getp(p, "chans.ack#1.1.method", "bind");
	getp(p, "chans.ack#1.2.rateLogging", "0");
	getp(p, "chans.ack#1.2.transport", "shmem");
	getp(p, "chans.ack#1.2.autoBind", "false");
	cr_assert(!fqc_props_has(p, "chans.ack#1.2.address"));
	getp(p, "chans.ack#1.2.sndTimeoutMs", "-1");
	/* No sockets: one sub-channel from the channel's values. */
	getp(p, "chans.solo.0.type", "req");
	assert_defaults(p, "chans.solo.0");
	FQ_PASS(fqc_channels_check(p, stderr));
	FQ_PASS(fqc_channels_list(p, &names, &subs, &n));
	cr_assert_eq(n, 3);
	cr_assert_str_eq(names[0], "ack#1");
	cr_assert_eq(subs[0], 3);
	cr_assert_str_eq(names[1], "data");
	cr_assert_eq(subs[1], 3);
	cr_assert_str_eq(names[2], "solo");
	cr_assert_eq(subs[2], 1);
	fqc_strv_free(names, n);
	free(subs);
	fqc_props_free(p);
}

Test(json, entry_by_key_and_a_device_without_channels)
{
	const char *path = write_json(
	    "k.json", "{\"fairMQOptions\":{\"devices\":[\n"
	              " {\"key\":\"processor\",\"channels\":[{\"name\":\"data\",\"type\":\"pull\","
	              "\"method\":\"connect\",\"address\":\"tcp://h:1\"}]},\n"
	              " {\"id\":\"processor\",\"channels\":[{\"name\":\"data\",\"type\":\"push\","
	              "\"method\":\"connect\",\"address\":\"tcp://h:2\"}]},\n"
	              " {\"id\":\"lonely\"}]}}\n");
	fqc_props *p;
	char **names;
	size_t *subs, n;

	FQ_PASS(fqc_props_new(&p));
	/* --config-key wins over the id. */
	FQ_PASS(fqc_channels_from_json(path, "processor-7", "processor", p, stderr));
	getp(p, "chans.data.0.type", "pull");
	fqc_props_free(p);

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_channels_from_json(path, "processor", NULL, p, stderr));
	getp(p, "chans.data.0.type", "push");
	fqc_props_free(p);

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_channels_from_json(path, "lonely", NULL, p, stderr));
	FQ_PASS(fqc_channels_list(p, &names, &subs, &n));
	cr_assert_eq(n, 0);
	fqc_props_free(p);
}

Test(json, file_replaces_a_channel_and_keeps_others)
{
	const char *path = write_json("r.json", sampler_sink);
	fqc_props *p;

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_channels_from_subopt("name=data,type=pub,method=bind,numSockets=2", p, stderr));
	FQ_PASS(fqc_channels_from_subopt("name=other,type=pub,method=bind", p, stderr));
	FQ_PASS(fqc_channels_from_json(path, "sampler1", NULL, p, stderr));
	getp(p, "chans.data.0.type", "push");
	cr_assert(!fqc_props_has(p, "chans.data.1.type"));
	getp(p, "chans.other.0.type", "pub");
	fqc_props_free(p);
}

/* ---- JSON: what is reported --------------------------------------------------------------- */

Test(json, missing_file_and_missing_entry)
{
	const char *path = write_json("m.json", sampler_sink);
	char missing[128];
	const char *t;

	snprintf(missing, sizeof(missing), "%s/nothing.json", dir);
	t = json_fails(missing, "sampler1", NULL, FQ_ENOENT);
	assert_has(t, "fq-test: ");
	assert_has(t, "nothing.json: No such file or directory\n");
	t = json_fails(path, "sampler2", NULL, FQ_ENOENT);
	assert_has(t, "m.json: no device entry with \"id\": \"sampler2\"\n");
	t = json_fails(path, "sampler1", "nokey", FQ_ENOENT);
	assert_has(t, "m.json: no device entry with \"key\": \"nokey\"\n");
}

Test(json, syntax_error_position_from_jansson)
{
	const char *path = write_json("s.json", "{\"fairMQOptions\": {\n"
	                                        "  \"devices\": [\n"
	                                        "    {\"id\": \"a\",, \"channels\": []}\n"
	                                        "  ]}}\n");
	char want[256];
	const char *t = json_fails(path, "a", NULL, FQ_EINVAL);

	snprintf(want, sizeof(want), "fq-test: %s:3:16: ", path);
	assert_has(t, want);
	assert_has(t, "expected near ','");
}

Test(json, duplicate_key_is_a_syntax_error)
{
	const char *path = write_json("d.json", "{\"fairMQOptions\": {\"devices\": [\n"
	                                        "  {\"id\": \"a\", \"id\": \"b\"}]}}\n");
	char want[256];
	const char *t = json_fails(path, "a", NULL, FQ_EINVAL);

	snprintf(want, sizeof(want), "%s:2:", path);
	assert_has(t, want);
	assert_has(t, "duplicate object key");
}

/* A file whose lines are easy to count: every problem on its own line. */
static const char bad_values[] =
    "{\n"                                                                              /* 1 */
    "  \"fairMQOptions\": {\n"                                                         /* 2 */
    "    \"devices\": [\n"                                                             /* 3 */
    "      {\"id\": \"other\", \"bogus\": 1},\n"                                       /* 4 */
    "      {\n"                                                                        /* 5 */
    "        \"id\": \"d\",\n"                                                         /* 6 */
    "        \"channels\": [\n"                                                        /* 7 */
    "          {\"name\": \"ok\", \"type\": \"push\", \"method\": \"bind\"},\n"        /* 8 */
    "          {\n"                                                                    /* 9 */
    "            \"name\": \"data\",\n"                                                /* 10 */
    "            \"sockets\": [\n"                                                     /* 11 */
    "              {\"type\": \"push\", \"method\": \"bind\",\n"                       /* 12 */
    "               \"sndBufSize\": true},\n"                                          /* 13 */
    "              {\"type\": \"pusher\", \"method\": \"bind\"},\n"                    /* 14 */
    "              {\"méthod\": \"bind\", \"type\": \"push\"},\n"                      /* 15 */
    "              {\"type\": \"push\", \"method\": \"bind\", \"linger\": \"-7\"},\n"  /* 16 */
    "              {\"type\": \"push\", \"method\": \"bind\", \"rcvBufSize\": 1.5},\n" /* 17 */
    "              {\"type\": \"push\", \"method\": \"bind\", \"address\": \"udp://x:1\"},\n"
    "              {\"type\": \"push\", \"method\": \"bind\", \"autoBind\": \"sometimes\"}\n"
    "            ]\n" /* 20 */
    "          },\n"  /* 21 */
    "          {\"name\": \"bad name\", \"type\": \"pull\", \"method\": \"connect\"},\n"
    "          {\"name\": \"nomethod\", \"type\": \"pull\"},\n"                /* 23 */
    "          {\"name\": \"ok\", \"type\": \"pull\", \"method\": \"bind\"}\n" /* 24 */
    "        ],\n"                                                             /* 25 */
    "        \"extra\": {\"a\": [1, 2]}\n"                                     /* 26 */
    "      }\n"                                                                /* 27 */
    "    ]\n"                                                                  /* 28 */
    "  }\n"                                                                    /* 29 */
    "}\n";

Test(json, semantic_errors_at_their_line_and_column)
{
	const char *path = write_json("bad.json", bad_values);
	const char *t = json_fails(path, "d", NULL, FQ_EINVAL);
	char want[256];

#define AT(line, col, what)                                                                   \
	do {                                                                                  \
		snprintf(want, sizeof(want), "fq-test: %s:%d:%d: %s", path, line, col, what); \
		assert_has(t, want);                                                          \
	} while (0)

	/* Wrong type: at the value. */
	AT(13, 30, "sndBufSize: expected an integer, got a bool\n");
	/* Bad value: at the value. */
	AT(14, 24, "type: 'pusher' is not a socket type (pair, pub, sub, req, rep, push, pull)\n");
	/* Unknown key: at the key (column in characters: 'é' is one). */
	AT(15, 16, "unknown key 'méthod' in a socket\n");
	/* Missing method: at the socket object. */
	AT(15, 15, "channel 'data' sub-channel 2: missing \"method\"\n");
	AT(16, 60, "linger: -7 is out of range (-1 to 2147483647)\n");
	AT(17, 64, "rcvBufSize: expected an integer, got a real number\n");
	AT(18, 61, "address: 'udp://x:1' has an unknown scheme 'udp' (tcp, ipc or inproc)\n");
	AT(19, 62, "autoBind: 'sometimes' is not a bool (true or false)\n");
	AT(22, 20, "name: 'bad name' is not a channel name");
	AT(23, 11, "channel 'nomethod' sub-channel 0: missing \"method\"\n");
	AT(24, 20, "channel 'ok' is defined twice\n");
	AT(26, 9, "unknown key 'extra' in a device entry\n");
#undef AT
	/* Other entries are not judged beyond their id. */
	cr_assert_null(strstr(t, "bogus"), "%s", t);
}

Test(json, structure_errors)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
	    {"[1]\n", ":1:1: expected an object with \"fairMQOptions\""},
	    {"{\"fairMQOptions\": []}", ":1:19: fairMQOptions: expected an object, got an array"},
	    {"{\"fairMQOptions\": {\"device\": {}}}",
	     ":1:20: unknown key 'device' in fairMQOptions"},
	    {"{\"fairMQOptions\": {}}", ":1:19: fairMQOptions without \"devices\""},
	    {"{\"fairMQOptions\": {\"devices\": {}}}",
	     ":1:31: devices: expected an array, got an object"},
	    {"{\"fairMQOptions\": {\"devices\": [7, {\"id\": \"d\"}]}}",
	     ":1:32: devices[0]: expected an object, got an integer"},
	    {"{\"fairMQOptions\": {\"devices\": [{\"id\": 7}, {\"id\": \"d\"}]}}",
	     ":1:39: id: expected a string, got an integer"},
	    {"{\"fairMQOptions\": {\"devices\": [{\"id\": \"d\", \"channels\": {}}]}}",
	     ":1:56: channels: expected an array, got an object"},
	    {"{\"fairMQOptions\": {\"devices\": [{\"id\": \"d\", \"channels\": [\"x\"]}]}}",
	     ":1:57: channels[0]: expected an object, got a string"},
	    {"{\"fairMQOptions\": {\"devices\": [{\"id\": \"d\", \"channels\": [{\"type\": "
	     "\"pub\"}]}]}}",
	     ":1:57: a channel without \"name\""},
	    {"{\"fairMQOptions\": {\"devices\": [{\"id\": \"d\", \"channels\": [{\"name\": 1}]}]}}",
	     ":1:66: name: expected a string, got an integer"},
	    {"{\"fairMQOptions\": {\"devices\": [{\"id\": \"d\", \"channels\": [{\"name\": \"c\", "
	     "\"type\": \"pub\", \"method\": \"bind\", \"numSockets\": -1}]}]}}",
	     ":1:118: numSockets: expected an integer from 0 to 4096"},
	    {"{\"fairMQOptions\": {\"devices\": [{\"id\": \"d\", \"channels\": [{\"name\": \"c\", "
	     "\"sockets\": 5}]}]}}",
	     ":1:82: sockets: expected an array, got an integer"},
	    {"{\"fairMQOptions\": {\"devices\": [{\"id\": \"d\", \"channels\": [{\"name\": \"c\", "
	     "\"sockets\": [null]}]}]}}",
	     ":1:83: sockets[0]: expected an object, got null"},
	    {"{\"fairMQOptions\": {\"devices\": [{\"id\": \"d\", \"channels\": [{\"name\": \"c\", "
	     "\"method\": \"bind\", \"sockets\": [{\"name\": \"c\", \"type\": \"sub\"}]}]}]}}",
	     ":1:102: unknown key 'name' in a socket"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[32], want[512];
		const char *path, *t;

		snprintf(name, sizeof(name), "c%zu.json", i);
		path = write_json(name, cases[i].text);
		t = json_fails(path, "d", NULL, FQ_EINVAL);
		snprintf(want, sizeof(want), "%s%s", path, cases[i].want);
		assert_has(t, want);
		unlink(path);
		nfiles--;
	}
}

Test(json, every_problem_once_one_line_each)
{
	const char *path = write_json("bad.json", bad_values);
	const char *t = json_fails(path, "d", NULL, FQ_EINVAL);
	size_t lines = 0;

	for (const char *s = t; *s != '\0'; s++)
		lines += *s == '\n';
	cr_assert_eq(lines, 12, "%s", t);
}

/* ---- The locator on its own --------------------------------------------------------------- */

Test(json, locator_follows_strings_escapes_and_nesting)
{
	static const char text[] = "{ \"a\\\"}\": [1, {\"x\": \"]}\"}, [2, [3]]],\n"
	                           "  \"b\": {\"c\": [true, null, -1.5e3, {\"d\": \"\\u00e9\"}]},\n"
	                           "  \"e\\n\": 1 }";
	fqc_json_step path[4];
	int line, col;
	long off;

	path[0] = (fqc_json_step){"b", 0};
	path[1] = (fqc_json_step){"c", 0};
	path[2] = (fqc_json_step){NULL, 3};
	path[3] = (fqc_json_step){"d", 0};
	off = fqc_json_locate(text, strlen(text), path, 4, false);
	cr_assert_geq(off, 0);
	cr_assert_eq(strncmp(text + off, "\"\\u00e9\"", 8), 0);
	fqc_json_linecol(text, (size_t)off, &line, &col);
	cr_assert_eq(line, 2);
	cr_assert_eq(col, 41);
	off = fqc_json_locate(text, strlen(text), path, 4, true);
	cr_assert_eq(strncmp(text + off, "\"d\"", 3), 0);

	path[0] = (fqc_json_step){"a\"}", 0};
	path[1] = (fqc_json_step){NULL, 2};
	path[2] = (fqc_json_step){NULL, 1};
	off = fqc_json_locate(text, strlen(text), path, 3, false);
	cr_assert_eq(strncmp(text + off, "[3]", 3), 0);
	path[0] = (fqc_json_step){"e\n", 0};
	off = fqc_json_locate(text, strlen(text), path, 1, true);
	fqc_json_linecol(text, (size_t)off, &line, &col);
	cr_assert_eq(line, 3);
	cr_assert_eq(col, 3);
	/* Absent paths: -1. */
	path[0] = (fqc_json_step){"zz", 0};
	cr_assert_eq(fqc_json_locate(text, strlen(text), path, 1, false), -1);
	path[0] = (fqc_json_step){"a\"}", 0};
	path[1] = (fqc_json_step){NULL, 3};
	cr_assert_eq(fqc_json_locate(text, strlen(text), path, 2, false), -1);
	path[1] = (fqc_json_step){"x", 0};
	cr_assert_eq(fqc_json_locate(text, strlen(text), path, 2, false), -1);
	/* The empty path is the root. */
	cr_assert_eq(fqc_json_locate(text, strlen(text), path, 0, false), 0);
}

/* ---- --channel-config --------------------------------------------------------------------- */

Test(subopt, name_forms_addresses_and_sub_channels)
{
	fqc_props *p;

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_channels_from_subopt("name=data,type=push,method=bind,address=tcp://*:5555,"
	                                 "transport=shmem,rateLogging=0",
	                                 p, stderr));
	getp(p, "chans.data.0.type", "push");
	getp(p, "chans.data.0.address", "tcp://*:5555");
	getp(p, "chans.data.0.transport", "shmem");
	getp(p, "chans.data.0.rateLogging", "0");
	getp(p, "chans.data.0.linger", "500");
	getp(p, "chans.data.0.autoBind", "true");

	/* "NAME:..." and one sub-channel per address=. */
	FQ_PASS(fqc_channels_from_subopt("in:type=pull,method=connect,address=tcp://a:1,"
	                                 "address=@tcp://*:2,+tcp://b:3,>ipc:///tmp/s,"
	                                 "autoBind=0",
	                                 p, stderr));
	getp(p, "chans.in.0.address", "tcp://a:1");
	getp(p, "chans.in.1.address", "@tcp://*:2,+tcp://b:3,>ipc:///tmp/s");
	getp(p, "chans.in.1.type", "pull");
	getp(p, "chans.in.0.autoBind", "false");
	cr_assert(!fqc_props_has(p, "chans.in.2.type"));

	FQ_PASS(fqc_channels_from_subopt("name=many,type=pub,method=bind,numSockets=3,"
	                                 "address=inproc://m",
	                                 p, stderr));
	getp(p, "chans.many.2.type", "pub");
	getp(p, "chans.many.2.address", "inproc://m");
	FQ_PASS(fqc_channels_from_subopt("name=two,type=pub,method=bind,numSockets=2,"
	                                 "address=inproc://a,address=inproc://b",
	                                 p, stderr));
	getp(p, "chans.two.1.address", "inproc://b");
	/* No address: bind auto-binds, connect waits for one. */
	FQ_PASS(fqc_channels_from_subopt("name=auto,type=rep,method=bind", p, stderr));
	cr_assert(!fqc_props_has(p, "chans.auto.0.address"));
	getp(p, "chans.auto.0.portRangeMin", "22000");

	/* Given again: replaces the channel's sub-channels. */
	FQ_PASS(fqc_channels_from_subopt("many:type=sub,method=connect", p, stderr));
	getp(p, "chans.many.0.type", "sub");
	cr_assert(!fqc_props_has(p, "chans.many.1.type"));
	FQ_PASS(fqc_channels_check(p, stderr));
	fqc_props_free(p);
}

Test(subopt, overrides_the_json_file)
{
	const char *path =
	    write_json("o.json", "{\"fairMQOptions\":{\"devices\":[{\"id\":\"d\",\"channels\":["
	                         "{\"name\":\"data\",\"type\":\"push\",\"method\":\"bind\","
	                         "\"numSockets\":3}]}]}}");
	fqc_props *p;
	char **names;
	size_t *subs, n;

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_channels_from_json(path, "d", NULL, p, stderr));
	FQ_PASS(
	    fqc_channels_from_subopt("data:type=pull,method=connect,address=tcp://h:9", p, stderr));
	FQ_PASS(fqc_channels_list(p, &names, &subs, &n));
	cr_assert_eq(n, 1);
	cr_assert_eq(subs[0], 1);
	getp(p, "chans.data.0.type", "pull");
	fqc_strv_free(names, n);
	free(subs);
	fqc_props_free(p);
}

Test(subopt, every_problem_with_the_token)
{
	static const struct {
		const char *token, *want;
	} cases[] = {
	    {"type=push,method=bind", "no channel name (name=NAME,... or NAME:...)"},
	    {"name=da ta,type=push,method=bind", "'da ta' is not a channel name"},
	    {"name=d,type=push,method=bind,colour=red", "unknown key 'colour'"},
	    {"name=d,type=shove,method=bind", "type: 'shove' is not a socket type"},
	    {"name=d,type=push", "missing method="},
	    {"name=d,method=bind", "missing type="},
	    {"name=d,type=push,method=both", "method: 'both' is not bind or connect"},
	    {"name=d,type=push,method=bind,address=udp://x:1",
	     "address: 'udp://x:1' has an unknown scheme 'udp'"},
	    {"name=d,type=push,method=bind,address=tcp://x",
	     "address: 'tcp://x' is not tcp://HOST:PORT"},
	    {"name=d,type=push,method=bind,address=tcp://x:99999",
	     "address: 'tcp://x:99999' has a bad port"},
	    {"name=d,type=push,method=bind,address=localhost:5",
	     "address: 'localhost:5' has no scheme"},
	    {"name=d,type=push,method=bind,address=tcp://x:1,,tcp://y:2", "address: empty address"},
	    {"name=d,type=push,method=bind,sndBufSize=big", "sndBufSize: 'big' is not an integer"},
	    {"name=d,type=push,method=bind,portRangeMax=70000",
	     "portRangeMax: 70000 is out of range (1 to 65535)"},
	    {"name=d,type=push,method=bind,numSockets=-2", "numSockets: '-2' is not an integer"},
	    {"name=d,type=push,method=bind,numSockets=3,address=inproc://a,address=inproc://b",
	     "numSockets=3 but 2 addresses"},
	    {"name=d,type=push,junk,method=bind", "'junk' is not KEY=VALUE"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fqc_props *p;
		fqt_capture err;
		char want[512];

		FQ_PASS(fqc_props_new(&p));
		fqt_capture_open(&err);
		FQ_FAIL(fqc_channels_from_subopt(cases[i].token, p, err.f), FQ_EINVAL);
		snprintf(want, sizeof(want), "fq-test: --channel-config '%s': %s", cases[i].token,
		         cases[i].want);
		assert_has(fqt_capture_text(&err), want);
		cr_assert(!fqc_props_has(p, "chans.d.0.type"), "%s", cases[i].token);
		fqt_capture_close(&err);
		fqc_props_free(p);
	}
}

Test(subopt, several_problems_all_reported)
{
	fqt_capture err;
	fqc_props *p;
	const char *t;

	FQ_PASS(fqc_props_new(&p));
	fqt_capture_open(&err);
	FQ_FAIL(fqc_channels_from_subopt("name=d,type=x,foo=1,linger=z", p, err.f), FQ_EINVAL);
	t = fqt_capture_text(&err);
	assert_has(t, "type: 'x' is not a socket type");
	assert_has(t, "unknown key 'foo'");
	assert_has(t, "linger: 'z' is not an integer");
	assert_has(t, "missing method=");
	cr_assert_null(strstr(t, "missing type="), "%s", t); /* bad, not missing */
	fqt_capture_close(&err);
	fqc_props_free(p);
}

/* ---- The store ---------------------------------------------------------------------------- */

static const char *check_fails(fqc_props *p)
{
	static char text[4096];
	fqt_capture err;

	fqt_capture_open(&err);
	FQ_FAIL(fqc_channels_check(p, err.f), FQ_EINVAL);
	snprintf(text, sizeof(text), "%s", fqt_capture_text(&err));
	fqt_capture_close(&err);
	return text;
}

Test(check, fills_defaults_of_a_channel_made_by_hand)
{
	fqc_props *p;

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_props_set(p, "chans.hand.0.type", "pair"));
	FQ_PASS(fqc_props_set(p, "chans.hand.0.method", "connect"));
	FQ_PASS(fqc_channels_check(p, stderr));
	assert_defaults(p, "chans.hand.0");
	getp(p, "chans.hand.0.transport", "default");
	cr_assert(!fqc_props_has(p, "chans.hand.0.address"));
	fqc_props_free(p);
}

Test(check, every_kind_of_bad_property)
{
	fqc_props *p;
	const char *t;

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_channels_from_subopt("name=a,type=push,method=bind,address=tcp://*:1,"
	                                 "address=tcp://*:2",
	                                 p, stderr));
	FQ_PASS(fqc_props_set(p, "chans.a.0.type", "dealer"));
	FQ_PASS(fqc_props_set(p, "chans.a.1.sndBufSize", "-3"));
	FQ_PASS(fqc_props_set(p, "chans.a.1.transport", "shmem"));
	FQ_PASS(fqc_props_set(p, "chans.a.0.address", "tcp://*:x"));
	FQ_PASS(fqc_props_set(p, "chans.a.0.portRangeMin", "30000"));
	FQ_PASS(fqc_props_set(p, "chans.a.0.autoBind", "perhaps"));
	FQ_PASS(fqc_props_set(p, "chans.a.0.colour", "red"));
	FQ_PASS(fqc_props_set(p, "chans.b.0.type", "pull"));
	FQ_PASS(fqc_props_set(p, "chans.c.0.method", "bind"));
	FQ_PASS(fqc_props_set(p, "chans.c.0.type", "push"));
	FQ_PASS(fqc_props_set(p, "chans.c.2.type", "push"));
	FQ_PASS(fqc_props_set(p, "chans.c.2.method", "bind"));
	FQ_PASS(fqc_props_set(p, "chans.d.01.type", "push"));
	FQ_PASS(fqc_props_set(p, "chans.e f.0.type", "push"));
	FQ_PASS(fqc_props_set(p, "chans.e f.0.method", "bind"));
	t = check_fails(p);
	assert_has(t, "fq-test: chans.a.0.type: 'dealer' is not a socket type");
	assert_has(t, "fq-test: chans.a.1.sndBufSize: -3 is out of range (0 to 2147483647)\n");
	assert_has(t, "fq-test: chans.a: sub-channels 0 and 1 have different transports "
	              "('default' and 'shmem')\n");
	assert_has(t, "fq-test: chans.a.0.address: 'tcp://*:x' has a bad port\n");
	assert_has(t, "fq-test: chans.a.0.autoBind: 'perhaps' is not a bool");
	assert_has(t, "fq-test: chans.a.0.colour: unknown channel property 'colour'\n");
	assert_has(t, "fq-test: chans.b.0.method: missing (channel 'b' needs a method)\n");
	assert_has(t, "fq-test: chans.c: sub-channels are not numbered 0 to 2\n");
	assert_has(t, "fq-test: chans.d.01.type: not a channel property (chans.NAME.INDEX.KEY)\n");
	assert_has(t, "fq-test: chans.e f: 'e f' is not a channel name");
	fqc_props_free(p);

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(
	    fqc_channels_from_subopt("name=a,type=push,method=bind,portRangeMin=30000", p, stderr));
	t = check_fails(p);
	assert_has(t, "fq-test: chans.a.0: portRangeMin 30000 is above portRangeMax 23000\n");
	fqc_props_free(p);
}

Test(check, channel_keys_catalogue)
{
	cr_assert_eq(fqc_channel_keys_count, 15);
	cr_assert_str_eq(fqc_channel_keys[0], "type");
	cr_assert_str_eq(fqc_channel_keys[14], "autoBind");
}
