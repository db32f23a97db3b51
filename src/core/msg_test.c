/* Messages and socket option plumbing through the public API, on every compiled transport. */
#include <criterion/criterion.h>
#include <string.h>

#include "core.h"
#include "transport.h"

static int freed;

static void count_free(void *data, void *hint)
{
	cr_assert_eq(data, hint);
	freed++;
}

Test(msg, alloc_adopt_copy_shrink_on_every_transport)
{
	for (size_t i = 0; i < fq_transport_count(); i++) {
		const char *name = fq_transport_name_at(i);
		static char buf[100];
		fq_transport *t;
		fq_msg *m, *c;

		if (fq_transport_probe(name) != 0)
			continue;
		cr_assert_eq(fq_transport_open(&t, name, NULL), 0, "%s", name);
		cr_assert_eq(fq_msg_alloc(t, 0, &m), 0);
		cr_assert_eq(fq_msg_size(m), 0);
		fq_msg_free(m);
		cr_assert_eq(fq_msg_alloc(t, 1000, &m), 0);
		memset(fq_msg_data(m), 7, 1000);
		cr_assert_eq(fq_msg_copy(m, &c), 0);
		cr_assert_eq(fq_msg_size(c), 1000);
		cr_assert_eq(((char *)fq_msg_data(c))[999], 7);
		cr_assert_eq(fq_msg_shrink(m, 2000), FQ_EINVAL);
		cr_assert_eq(fq_msg_shrink(m, 300), 0);
		cr_assert_eq(fq_msg_size(m), 300);
		cr_assert_eq(((char *)fq_msg_data(m))[299], 7);
		cr_assert_eq(fq_msg_transport(m), t);
		fq_msg_free(m);
		fq_msg_free(c);
		freed = 0;
		cr_assert_eq(fq_msg_adopt(t, buf, sizeof(buf), count_free, buf, &m), 0);
		cr_assert_eq(fq_msg_data(m), buf);
		fq_msg_free(m);
		cr_assert_eq(freed, 1);
		{
			uint64_t v = 7;

			cr_assert_eq(fq_transport_counter(t, "no-such-counter", &v), FQ_ENOENT);
			cr_assert_eq(v, 7);
			cr_assert_eq(fq_transport_counter(t, NULL, &v), FQ_EINVAL);
			cr_assert_eq(fq_transport_counter(NULL, "registrations", &v), FQ_EINVAL);
		}
		fq_transport_close(t);
	}
}

Test(socket, options_by_name_and_type)
{
	fq_transport *t;
	fq_socket *s;
	int64_t v;

	cr_assert_eq(fq_transport_open(&t, "nosuch", NULL), FQ_ENOENT);
	cr_assert_eq(fq_transport_open(&t, fq_transport_name_at(0), "nosuch=1"), FQ_ENOENT);
	cr_assert_eq(fq_transport_open(&t, fq_transport_name_at(0), NULL), 0);
	cr_assert_eq(fq_socket_open(&s, t, (fq_socket_type)99), FQ_EINVAL);
	cr_assert_eq(fq_socket_open(&s, t, FQ_PUSH), 0);
	cr_assert_eq(fq_socket_get_type(s), FQ_PUSH);
	cr_assert_eq(fq_socket_get_int(s, "linger", &v), 0);
	cr_assert_eq(v, 500);
	cr_assert_eq(fq_socket_set(s, "snd_hwm", "10"), 0);
	cr_assert_eq(fq_socket_get_int(s, "snd_hwm", &v), 0);
	cr_assert_eq(v, 10);
	cr_assert_eq(fq_socket_set(s, "snd_hwm", "ten"), FQ_EINVAL);
	cr_assert_eq(fq_socket_set(s, "snd_hwm", "-3"), FQ_EINVAL);
	cr_assert_eq(fq_socket_set_int(s, "max_msg_size", (int64_t)1 << 40), 0);
	cr_assert_eq(fq_socket_set(s, "no_such", "1"), FQ_ENOENT);
	cr_assert_eq(fq_socket_set(s, "subscribe", "x"), FQ_ENOTSUP);
	cr_assert_eq(fq_bind(s, "bogus"), FQ_EADDRINVAL);
	cr_assert_eq(fq_bind(s, "carrier-pigeon://x"), FQ_EADDRINVAL);
	fq_socket_type type;
	cr_assert_eq(fq_socket_type_parse("pull", &type), 0);
	cr_assert_eq(type, FQ_PULL);
	cr_assert_str_eq(fq_socket_type_name(FQ_REP), "rep");
	fq_socket_close(s);
	fq_transport_close(t);
}

/* ---- Per-thread record caches --------------------------------------------------------------- */

static _Thread_local fqi_tcache cache_a, cache_b;

/* In a thread of its own: fill two caches (the second one past full), take some back. The
 * records left are freed at the thread's exit; under AddressSanitizer a leak fails the run. */
static void *tcache_main(void *arg)
{
	void *taken[FQI_TCACHE_MAX];
	int *ok = arg;

	*ok = fqi_tcache_get(&cache_a) == NULL;
	for (int i = 0; i < FQI_TCACHE_MAX; i++) {
		void *r = malloc(32);

		*ok &= r != NULL && fqi_tcache_put(&cache_a, r);
		taken[i] = r;
	}
	{
		void *extra = malloc(32);

		*ok &= !fqi_tcache_put(&cache_a, extra); /* full: the caller frees it */
		free(extra);
	}
	/* Last in, first out: the warmest record comes back first. */
	*ok &= fqi_tcache_get(&cache_a) == taken[FQI_TCACHE_MAX - 1];
	free(taken[FQI_TCACHE_MAX - 1]);
	*ok &= fqi_tcache_put(&cache_b, malloc(16));
	*ok &= cache_a.armed && cache_b.armed;
	return NULL;
}

Test(tcache, records_recycled_per_thread_and_freed_at_exit)
{
	pthread_t th;
	int ok = 0;

	cr_assert_eq(pthread_create(&th, NULL, tcache_main, &ok), 0);
	pthread_join(th, NULL);
	cr_assert(ok, "the cache did not behave");
	/* This thread's caches are its own. */
	cr_assert_null(fqi_tcache_get(&cache_a));
	cr_assert(!cache_a.armed);
}
