/* Messages, vectors of parts and regions: ownership checks here, storage in the transport. */
#include "core.h"
#include "transport.h"

#include <string.h>

int fq_msg_alloc(fq_transport *t, size_t size, fq_msg **out)
{
	if (t == NULL || out == NULL)
		return FQ_EINVAL;
	return t->desc->msg_ops->alloc(t, size, out);
}

int fq_msg_adopt(fq_transport *t, void *data, size_t size, void (*free_fn)(void *, void *),
                 void *hint, fq_msg **out)
{
	if (t == NULL || out == NULL || (data == NULL && size != 0))
		return FQ_EINVAL;
	return t->desc->msg_ops->adopt(t, data, size, free_fn, hint, out);
}

int fq_msg_copy(const fq_msg *m, fq_msg **out)
{
	if (m == NULL || out == NULL)
		return FQ_EINVAL;
	return m->ops->copy(m, out);
}

void *fq_msg_data(fq_msg *m)
{
	return m ? m->data : NULL;
}

size_t fq_msg_size(const fq_msg *m)
{
	return m ? m->size : 0;
}

fq_transport *fq_msg_transport(const fq_msg *m)
{
	return m ? m->t : NULL;
}

int fq_msg_shrink(fq_msg *m, size_t size)
{
	if (m == NULL || size > m->size)
		return FQ_EINVAL;
	if (size == m->size)
		return 0;
	return m->ops->shrink(m, size);
}

void fq_msg_free(fq_msg *m)
{
	if (m != NULL)
		m->ops->free(m);
}

/* ---- Parts ---- */

int fqi_parts_new(size_t n, fq_parts **out)
{
	fq_parts *p = malloc(sizeof(*p) + n * sizeof(fq_msg *));

	if (p == NULL)
		return FQ_ENOMEM;
	p->n = n;
	p->bytes = 0;
	p->msgs = (fq_msg **)(p + 1);
	memset(p->msgs, 0, n * sizeof(fq_msg *));
	*out = p;
	return 0;
}

void fqi_parts_release(fq_parts *p)
{
	for (size_t i = 0; i < p->n; i++) {
		fq_msg_free(p->msgs[i]);
		p->msgs[i] = NULL;
	}
}

size_t fq_parts_count(const fq_parts *p)
{
	return p ? p->n : 0;
}

size_t fq_parts_bytes(const fq_parts *p)
{
	return p ? p->bytes : 0;
}

fq_msg *fq_parts_at(fq_parts *p, size_t i)
{
	return (p != NULL && i < p->n) ? p->msgs[i] : NULL;
}

fq_msg *fq_parts_take(fq_parts *p, size_t i)
{
	fq_msg *m;

	if (p == NULL || i >= p->n)
		return NULL;
	m = p->msgs[i];
	p->msgs[i] = NULL;
	return m;
}

void fq_parts_free(fq_parts *p)
{
	if (p == NULL)
		return;
	fqi_parts_release(p);
	free(p);
}

/* ---- Regions ---- */

int fq_region_open(fq_region **out, fq_transport *t, size_t size,
                   void (*ack_fn)(const fq_region_ack *, size_t, void *), void *arg)
{
	const fqi_region_ops *ops;
	fq_region *r;
	int rc;

	if (out == NULL || t == NULL || size == 0)
		return FQ_EINVAL;
	ops = t->desc->region_ops;
	r = calloc(1, sizeof(*r) + ops->priv_size);
	if (r == NULL)
		return FQ_ENOMEM;
	r->t = t;
	r->ops = ops;
	r->size = size;
	r->ack_fn = ack_fn;
	r->arg = arg;
	r->priv = ops->priv_size ? (void *)(r + 1) : NULL;
	atomic_init(&r->refs, 1);
	rc = ops->open(r);
	if (rc != 0) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void *fq_region_data(fq_region *r)
{
	return r ? r->data : NULL;
}

size_t fq_region_size(const fq_region *r)
{
	return r ? r->size : 0;
}

int fq_msg_from_region(fq_region *r, void *data, size_t size, void *hint, fq_msg **out)
{
	char *base, *p = data;

	if (r == NULL || out == NULL)
		return FQ_EINVAL;
	base = r->data;
	if (p < base || p > base + r->size || size > (size_t)(base + r->size - p))
		return FQ_ERANGE;
	return r->ops->msg(r, data, size, hint, out);
}

void fqi_region_ref(fq_region *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

void fqi_region_unref(fq_region *r)
{
	if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
		r->ops->close(r);
		free(r);
	}
}

void fq_region_close(fq_region *r)
{
	if (r != NULL)
		fqi_region_unref(r);
}

/* ---- Per-thread record caches ------------------------------------------------------------- */

static pthread_key_t tcache_key;
static pthread_once_t tcache_once = PTHREAD_ONCE_INIT;

/* At thread exit: free what every cache of the thread keeps (its list of armed caches). */
static void tcache_drain(void *head)
{
	for (fqi_tcache *c = head, *next; c != NULL; c = next) {
		next = c->next;
		while (c->n > 0)
			free(c->free[--c->n]);
		free(c->free);
		c->free = NULL;
		c->armed = false;
	}
}

static void tcache_init(void)
{
	(void)pthread_key_create(&tcache_key, tcache_drain);
}

bool fqi_tcache_arm(fqi_tcache *c)
{
	void **slots = malloc(FQI_TCACHE_MAX * sizeof(*slots));

	if (slots == NULL)
		return false;
	pthread_once(&tcache_once, tcache_init);
	c->next = pthread_getspecific(tcache_key);
	if (pthread_setspecific(tcache_key, c) != 0) {
		free(slots);
		return false; /* not listed for the exit: keep nothing */
	}
	c->free = slots;
	c->n = 0;
	c->armed = true;
	return true;
}
