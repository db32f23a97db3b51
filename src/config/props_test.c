/* The property store: values, sorted keys, prefixes and subscribers, also across threads. */
#include "fq_test.h"

#include "config/config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

Test(props, set_get_replace_delete)
{
	fqc_props *p;
	char buf[16], *dup;

	FQ_PASS(fqc_props_new(&p));
	FQ_FAIL(fqc_props_get(p, "id", buf, sizeof(buf)), FQ_ENOENT);
	cr_assert(!fqc_props_has(p, "id"));
	cr_assert_null(fqc_props_dup(p, "id"));
	FQ_PASS(fqc_props_set(p, "id", "sampler1"));
	FQ_PASS(fqc_props_get(p, "id", buf, sizeof(buf)));
	cr_assert_str_eq(buf, "sampler1");
	FQ_PASS(fqc_props_set(p, "id", "sink1"));
	dup = fqc_props_dup(p, "id");
	cr_assert_str_eq(dup, "sink1");
	free(dup);
	cr_assert(fqc_props_has(p, "id"));
	FQ_PASS(fqc_props_set(p, "empty", ""));
	FQ_PASS(fqc_props_get(p, "empty", buf, sizeof(buf)));
	cr_assert_str_eq(buf, "");
	FQ_PASS(fqc_props_delete(p, "id"));
	FQ_FAIL(fqc_props_delete(p, "id"), FQ_ENOENT);
	cr_assert(!fqc_props_has(p, "id"));
	FQ_FAIL(fqc_props_set(p, "", "x"), FQ_EINVAL);
	FQ_FAIL(fqc_props_set(p, "k", NULL), FQ_EINVAL);
	fqc_props_free(p);
	fqc_props_free(NULL);
}

Test(props, small_buffer_is_erange_and_truncates)
{
	fqc_props *p;
	char buf[4];

	FQ_PASS(fqc_props_new(&p));
	FQ_PASS(fqc_props_set(p, "transport", "zeromq"));
	FQ_FAIL(fqc_props_get(p, "transport", buf, sizeof(buf)), FQ_ERANGE);
	cr_assert_str_eq(buf, "zer");
	FQ_FAIL(fqc_props_key_at(p, 0, buf, sizeof(buf)), FQ_ERANGE);
	cr_assert_str_eq(buf, "tra");
	fqc_props_free(p);
}

Test(props, keys_in_sorted_order_prefix_list_and_delete)
{
	static const char *const in[] = {"rate",
	                                 "chans.data.1.type",
	                                 "id",
	                                 "chans.data.0.type",
	                                 "chans.datum.0.type",
	                                 "chans.ack.0.type",
	                                 "zz",
	                                 "a"};
	static const char *const sorted[] = {"a",
	                                     "chans.ack.0.type",
	                                     "chans.data.0.type",
	                                     "chans.data.1.type",
	                                     "chans.datum.0.type",
	                                     "id",
	                                     "rate",
	                                     "zz"};
	fqc_props *p;
	char buf[64], **keys, **values;
	size_t n;

	FQ_PASS(fqc_props_new(&p));
	for (size_t i = 0; i < 8; i++)
		FQ_PASS(fqc_props_set(p, in[i], in[i]));
	for (size_t i = 0; i < 8; i++) {
		FQ_PASS(fqc_props_key_at(p, i, buf, sizeof(buf)));
		cr_assert_str_eq(buf, sorted[i]);
	}
	FQ_FAIL(fqc_props_key_at(p, 8, buf, sizeof(buf)), FQ_ENOENT);

	FQ_PASS(fqc_props_list(p, "chans.data.", &keys, &values, &n));
	cr_assert_eq(n, 2);
	cr_assert_str_eq(keys[0], "chans.data.0.type");
	cr_assert_str_eq(values[1], "chans.data.1.type");
	fqc_strv_free(keys, n);
	fqc_strv_free(values, n);
	FQ_PASS(fqc_props_list(p, "nothing.", &keys, NULL, &n));
	cr_assert_eq(n, 0);
	cr_assert_null(keys);
	FQ_PASS(fqc_props_list(p, NULL, &keys, NULL, &n));
	cr_assert_eq(n, 8);
	fqc_strv_free(keys, n);

	cr_assert_eq(fqc_props_delete_prefix(p, "chans.data."), 2);
	cr_assert(fqc_props_has(p, "chans.datum.0.type"));
	cr_assert(!fqc_props_has(p, "chans.data.0.type"));
	cr_assert_eq(fqc_props_delete_prefix(p, "chans.data."), 0);
	FQ_PASS(fqc_props_key_at(p, 2, buf, sizeof(buf)));
	cr_assert_str_eq(buf, "chans.datum.0.type");
	fqc_props_free(p);
}

struct seen {
	fqc_props *p;
	int calls;
	char key[64], value[64], read_back[64];
};

static void remember(const char *key, const char *value, void *arg)
{
	struct seen *s = arg;

	s->calls++;
	snprintf(s->key, sizeof(s->key), "%s", key);
	snprintf(s->value, sizeof(s->value), "%s", value);
	/* The store is unlocked while subscribers run: reading it must not deadlock. */
	fqc_props_get(s->p, key, s->read_back, sizeof(s->read_back));
}

Test(props, subscribers_see_sets_after_unlock, .timeout = 10)
{
	struct seen a = {0}, b = {0};
	fqc_props *p;
	int ta, tb;

	FQ_PASS(fqc_props_new(&p));
	a.p = b.p = p;
	ta = fqc_props_subscribe(p, remember, &a);
	tb = fqc_props_subscribe(p, remember, &b);
	cr_assert_geq(ta, 0);
	cr_assert_geq(tb, 0);
	cr_assert_neq(ta, tb);
	FQ_PASS(fqc_props_set(p, "chans.data.0.address", "tcp://127.0.0.1:22001"));
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(b.calls, 1);
	cr_assert_str_eq(a.key, "chans.data.0.address");
	cr_assert_str_eq(a.value, "tcp://127.0.0.1:22001");
	cr_assert_str_eq(a.read_back, "tcp://127.0.0.1:22001");
	/* Deletes are not announced. */
	FQ_PASS(fqc_props_delete(p, "chans.data.0.address"));
	cr_assert_eq(a.calls, 1);
	fqc_props_unsubscribe(p, ta);
	fqc_props_unsubscribe(p, ta); /* twice: ignored */
	fqc_props_unsubscribe(p, -1);
	FQ_PASS(fqc_props_set(p, "id", "x"));
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(b.calls, 2);
	cr_assert_str_eq(b.value, "x");
	fqc_props_free(p); /* frees b's subscription */
}

struct self {
	fqc_props *p;
	int token, calls;
};

static void unsubscribe_self(const char *key, const char *value, void *arg)
{
	struct self *s = arg;

	s->calls++;
	fqc_props_unsubscribe(s->p, s->token);
}

Test(props, a_subscriber_may_unsubscribe_itself, .timeout = 10)
{
	struct self s = {0};

	FQ_PASS(fqc_props_new(&s.p));
	s.token = fqc_props_subscribe(s.p, unsubscribe_self, &s);
	cr_assert_geq(s.token, 0);
	FQ_PASS(fqc_props_set(s.p, "a", "1"));
	FQ_PASS(fqc_props_set(s.p, "a", "2"));
	cr_assert_eq(s.calls, 1);
	fqc_props_free(s.p);
}

/* ---- Threads ---------------------------------------------------------------------------- */

#define THREADS 4
#define KEYS    500

static atomic_int heard, garbled;

/* Runs in the writer threads: no Criterion asserts there, just counters. */
static void count(const char *key, const char *value, void *arg)
{
	atomic_fetch_add(&heard, 1);
	/* Values are copies: both strings stay readable for the whole call. */
	if (key[0] != 'k' || value[0] != 'v')
		atomic_store(&garbled, 1);
}

struct writer {
	fqc_props *p;
	int id;
};

static void *write_keys(void *arg)
{
	struct writer *w = arg;
	char key[32], value[32];

	for (int i = 0; i < KEYS; i++) {
		snprintf(key, sizeof(key), "k%d.%03d", w->id, i);
		snprintf(value, sizeof(value), "v%d", i);
		if (fqc_props_set(w->p, key, value) != 0)
			return (void *)1;
	}
	return NULL;
}

static void *churn_subscriptions(void *arg)
{
	fqc_props *p = arg;
	int dummy;

	for (int i = 0; i < 200; i++) {
		int t = fqc_props_subscribe(p, count, &dummy);

		if (t < 0)
			return (void *)1;
		fqc_props_unsubscribe(p, t);
	}
	return NULL;
}

Test(props, concurrent_sets_and_subscriptions, .timeout = 60)
{
	pthread_t th[THREADS + 1];
	struct writer w[THREADS];
	fqc_props *p;
	char buf[32];
	void *ret;
	int t;

	atomic_store(&heard, 0);
	atomic_store(&garbled, 0);
	FQ_PASS(fqc_props_new(&p));
	t = fqc_props_subscribe(p, count, NULL);
	cr_assert_geq(t, 0);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct writer){p, i};
		cr_assert_eq(pthread_create(&th[i], NULL, write_keys, &w[i]), 0);
	}
	cr_assert_eq(pthread_create(&th[THREADS], NULL, churn_subscriptions, p), 0);
	for (int i = 0; i <= THREADS; i++) {
		cr_assert_eq(pthread_join(th[i], &ret), 0);
		cr_assert_null(ret);
	}
	/* The standing subscriber heard every set; the churned ones some of them. */
	cr_assert_geq(atomic_load(&heard), THREADS * KEYS);
	cr_assert_eq(atomic_load(&garbled), 0);
	for (size_t i = 0; i < THREADS * KEYS; i++)
		FQ_PASS(fqc_props_key_at(p, i, buf, sizeof(buf)));
	FQ_FAIL(fqc_props_key_at(p, THREADS * KEYS, buf, sizeof(buf)), FQ_ENOENT);
	FQ_PASS(fqc_props_key_at(p, 0, buf, sizeof(buf)));
	cr_assert_str_eq(buf, "k0.000");
	fqc_props_unsubscribe(p, t);
	fqc_props_free(p);
}

/* Unsubscribe waits for a callback running in another thread, so its argument can go. */
struct slow {
	atomic_int entered, release;
};

static void slow_cb(const char *key, const char *value, void *arg)
{
	struct slow *s = arg;

	atomic_store(&s->entered, 1);
	while (!atomic_load(&s->release))
		fqt_pause();
}

static void *do_set(void *arg)
{
	fqc_props_set(arg, "k", "v");
	return NULL;
}

static void *do_release(void *arg)
{
	struct slow *s = arg;

	/* Give unsubscribe a chance to (wrongly) return early; correctness does not hinge on it. */
	for (int i = 0; i < 20; i++)
		fqt_pause();
	atomic_store(&s->release, 1);
	return NULL;
}

Test(props, unsubscribe_waits_for_running_callback, .timeout = 30)
{
	struct slow s;
	fqc_props *p;
	pthread_t setter, releaser;
	int t;

	atomic_init(&s.entered, 0);
	atomic_init(&s.release, 0);
	FQ_PASS(fqc_props_new(&p));
	t = fqc_props_subscribe(p, slow_cb, &s);
	cr_assert_eq(pthread_create(&setter, NULL, do_set, p), 0);
	while (!atomic_load(&s.entered))
		fqt_pause();
	cr_assert_eq(pthread_create(&releaser, NULL, do_release, &s), 0);
	fqc_props_unsubscribe(p, t);
	/* Returned: the callback must have been released and left. */
	cr_assert_eq(atomic_load(&s.release), 1);
	pthread_join(setter, NULL);
	pthread_join(releaser, NULL);
	fqc_props_free(p);
}
