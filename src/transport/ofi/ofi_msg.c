/* The ofi transport's messages, registered-memory pool and regions (ofi.h). */
#include "transport/ofi/ofi.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SUBSYS "ofi"

#define POOL_MIN_SHIFT 14 /* 16 KiB: smaller messages are malloc'd and travel eagerly */
#define POOL_MAX_SHIFT 26 /* 64 MiB: larger buffers are made to measure and not kept */
#define POOL_CLASSES   (POOL_MAX_SHIFT - POOL_MIN_SHIFT + 1)

#define MR_ACCESS (FI_SEND | FI_RECV | FI_READ | FI_REMOTE_READ)

typedef struct ofi_region_priv {
	ofi_mr mr;
	ofi_pool *pool;
	struct ofi_region_priv *next, *prev;
} ofi_region_priv;

struct ofi_pool {
	pthread_mutex_t lock;
	_Atomic long refs; /* the transport's + one per live pool buffer and open region */
	ofi_fabric *f;     /* NULL once the transport closed: nothing is registered any more */
	size_t cached, max;
	uint64_t made;
	ofi_buf *free[POOL_CLASSES];
	ofi_buf *live; /* registered buffers in use */
	ofi_region_priv *regions;
};

static void pool_unref(ofi_pool *p)
{
	if (atomic_fetch_sub(&p->refs, 1) == 1) {
		pthread_mutex_destroy(&p->lock);
		free(p);
	}
}

int ofi_pool_new(ofi_fabric *f, size_t cache_bytes, ofi_pool **out)
{
	ofi_pool *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return FQ_ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	atomic_init(&p->refs, 1);
	p->f = f;
	p->max = cache_bytes;
	*out = p;
	return 0;
}

static void list_del(ofi_buf **head, ofi_buf *b)
{
	if (b->prev != NULL)
		b->prev->next = b->next;
	else
		*head = b->next;
	if (b->next != NULL)
		b->next->prev = b->prev;
	b->next = b->prev = NULL;
}

static void list_add(ofi_buf **head, ofi_buf *b)
{
	b->prev = NULL;
	b->next = *head;
	if (*head != NULL)
		(*head)->prev = b;
	*head = b;
}

static void buf_unmap(ofi_buf *b)
{
	munmap(b->data, b->cap);
	free(b);
}

void ofi_pool_close(ofi_pool *p)
{
	ofi_buf *dead = NULL;

	pthread_mutex_lock(&p->lock);
	for (ofi_buf *b = p->live; b != NULL; b = b->next)
		ofi_mr_dereg(p->f, &b->own);
	for (ofi_region_priv *r = p->regions; r != NULL; r = r->next)
		ofi_mr_dereg(p->f, &r->mr);
	for (int c = 0; c < POOL_CLASSES; c++) {
		while (p->free[c] != NULL) {
			ofi_buf *b = p->free[c];

			list_del(&p->free[c], b);
			ofi_mr_dereg(p->f, &b->own);
			b->next = dead;
			dead = b;
		}
	}
	p->cached = 0;
	p->f = NULL;
	pthread_mutex_unlock(&p->lock);
	while (dead != NULL) {
		ofi_buf *b = dead;

		dead = b->next;
		buf_unmap(b);
		pool_unref(p);
	}
	pool_unref(p);
}

uint64_t ofi_pool_made(ofi_pool *p)
{
	uint64_t n;

	pthread_mutex_lock(&p->lock);
	n = p->made;
	pthread_mutex_unlock(&p->lock);
	return n;
}

static int size_class(size_t size, size_t *cap)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	for (int c = 0; c < POOL_CLASSES; c++) {
		if (size <= (size_t)1 << (POOL_MIN_SHIFT + c)) {
			*cap = (size_t)1 << (POOL_MIN_SHIFT + c);
			return c;
		}
	}
	*cap = (size + page - 1) / page * page;
	return -1;
}

static int pool_get(ofi_pool *p, size_t size, ofi_buf **out)
{
	size_t cap;
	int cls = size_class(size, &cap), rc;
	ofi_buf *b;

	pthread_mutex_lock(&p->lock);
	if (p->f == NULL) {
		pthread_mutex_unlock(&p->lock);
		return FQ_ESTATE;
	}
	if (cls >= 0 && p->free[cls] != NULL) {
		b = p->free[cls];
		list_del(&p->free[cls], b);
		p->cached -= b->cap;
		list_add(&p->live, b);
		pthread_mutex_unlock(&p->lock);
		*out = b;
		return 0;
	}
	pthread_mutex_unlock(&p->lock);
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return FQ_ENOMEM;
	/* Untouched pages cost nothing: a 4 GiB class for a 2 GiB message is only address space. */
	b->data = mmap(NULL, cap, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (b->data == MAP_FAILED) {
		free(b);
		return FQ_ENOMEM;
	}
	b->cap = cap;
	b->cls = cls;
	b->pool = p;
	pthread_mutex_lock(&p->lock);
	rc = p->f != NULL ? ofi_mr_reg(p->f, b->data, cap, MR_ACCESS, &b->own) : FQ_ESTATE;
	if (rc == 0) {
		p->made++;
		atomic_fetch_add(&p->refs, 1);
		list_add(&p->live, b);
	}
	pthread_mutex_unlock(&p->lock);
	if (rc != 0) {
		buf_unmap(b);
		return rc;
	}
	b->reg = &b->own;
	*out = b;
	return 0;
}

static void pool_put(ofi_buf *b)
{
	ofi_pool *p = b->pool;

	pthread_mutex_lock(&p->lock);
	list_del(&p->live, b);
	if (p->f != NULL && b->cls >= 0 && !b->no_reuse && p->cached + b->cap <= p->max) {
		list_add(&p->free[b->cls], b);
		p->cached += b->cap;
		pthread_mutex_unlock(&p->lock);
		return;
	}
	if (p->f != NULL)
		ofi_mr_dereg(p->f, &b->own);
	pthread_mutex_unlock(&p->lock);
	buf_unmap(b);
	pool_unref(p);
}

/* ---- Messages ----------------------------------------------------------------------------- */

static void buf_release(ofi_buf *b)
{
	if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (b->free_fn != NULL)
		b->free_fn(b->data, b->hint);
	if (b->pool != NULL) {
		b->refs = 0;
		pool_put(b);
	} else if (b->embedded) {
		free((char *)b - sizeof(ofi_msg));
	} else {
		free(b);
	}
}

static ofi_msg *msg_on(fq_transport *t, ofi_buf *b, size_t size)
{
	ofi_msg *m = malloc(sizeof(*m));

	if (m == NULL)
		return NULL;
	m->m = (fq_msg){&ofi_msg_ops, t, b->data, size};
	m->b = b;
	return m;
}

int ofi_msg_new(fq_transport *t, ofi_pool *p, size_t size, bool registered, fq_msg **out)
{
	ofi_buf *b;
	ofi_msg *m;
	int rc;

	if (!registered && size < ((size_t)1 << POOL_MIN_SHIFT)) {
		/* One allocation: the message, its buffer and the bytes. */
		m = malloc(sizeof(ofi_msg) + sizeof(ofi_buf) + size);
		if (m == NULL)
			return FQ_ENOMEM;
		b = (ofi_buf *)(m + 1);
		memset(b, 0, sizeof(*b));
		b->data = (unsigned char *)(b + 1);
		b->cap = size;
		b->cls = -1;
		b->embedded = true;
		atomic_init(&b->refs, 1);
		m->m = (fq_msg){&ofi_msg_ops, t, b->data, size};
		m->b = b;
		*out = &m->m;
		return 0;
	}
	rc = pool_get(p, size, &b);
	if (rc != 0)
		return rc;
	atomic_store(&b->refs, 1);
	m = msg_on(t, b, size);
	if (m == NULL) {
		buf_release(b);
		return FQ_ENOMEM;
	}
	*out = &m->m;
	return 0;
}

static int msg_alloc(fq_transport *t, size_t size, fq_msg **out)
{
	return ofi_msg_new(t, ofi_pool_of(t), size, false, out);
}

static int msg_wrap(fq_transport *t, void *data, size_t size, const ofi_mr *reg,
                    fqi_free_fn free_fn, void *hint, fq_msg **out)
{
	ofi_buf *b = calloc(1, sizeof(*b));
	ofi_msg *m;

	if (b == NULL)
		return FQ_ENOMEM;
	b->data = data;
	b->cap = size;
	b->cls = -1;
	b->reg = reg;
	b->free_fn = free_fn;
	b->hint = hint;
	atomic_init(&b->refs, 1);
	m = msg_on(t, b, size);
	if (m == NULL) {
		free(b);
		return FQ_ENOMEM;
	}
	*out = &m->m;
	return 0;
}

static int msg_adopt(fq_transport *t, void *data, size_t size, fqi_free_fn free_fn, void *hint,
                     fq_msg **out)
{
	return msg_wrap(t, data, size, NULL, free_fn, hint, out);
}

static int msg_copy(const fq_msg *base, fq_msg **out)
{
	const ofi_msg *src = (const ofi_msg *)base;
	ofi_msg *m = msg_on(base->t, src->b, base->size);

	if (m == NULL)
		return FQ_ENOMEM;
	m->m.data = base->data;
	atomic_fetch_add_explicit(&src->b->refs, 1, memory_order_relaxed);
	*out = &m->m;
	return 0;
}

static int msg_shrink(fq_msg *m, size_t size)
{
	m->size = size; /* the buffer keeps its size; only fewer bytes travel */
	return 0;
}

static void msg_free(fq_msg *base)
{
	ofi_msg *m = (ofi_msg *)base;
	ofi_buf *b = m->b;

	if (!(b->embedded && (ofi_msg *)((char *)b - sizeof(ofi_msg)) == m))
		free(m);
	buf_release(b);
}

void ofi_msg_no_reuse(fq_msg *m)
{
	ofi_buf *b = ((ofi_msg *)m)->b;

	if (b->pool != NULL)
		b->no_reuse = true;
}

const fqi_msg_ops ofi_msg_ops = {
    .size = sizeof(fqi_msg_ops),
    .alloc = msg_alloc,
    .adopt = msg_adopt,
    .copy = msg_copy,
    .shrink = msg_shrink,
    .free = msg_free,
};

/* ---- Regions: registered once, their messages read by peers without any copy ------------- */

typedef struct region_ref {
	fq_region *r;
	fq_region_ack ack;
} region_ref;

static int region_open(fq_region *r)
{
	ofi_region_priv *rp = r->priv;
	ofi_pool *p = ofi_pool_of(r->t);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t size = (r->size + page - 1) / page * page;
	int rc;

	r->data = mmap(NULL, size ? size : page, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->data == MAP_FAILED) {
		r->data = NULL;
		return FQ_ENOMEM;
	}
	pthread_mutex_lock(&p->lock);
	rc = p->f != NULL ? ofi_mr_reg(p->f, r->data, size ? size : page, MR_ACCESS, &rp->mr)
	                  : FQ_ESTATE;
	if (rc == 0) {
		rp->pool = p;
		rp->prev = NULL;
		rp->next = p->regions;
		if (p->regions != NULL)
			p->regions->prev = rp;
		p->regions = rp;
		atomic_fetch_add(&p->refs, 1);
	}
	pthread_mutex_unlock(&p->lock);
	if (rc != 0) {
		munmap(r->data, size ? size : page);
		r->data = NULL;
	}
	return rc;
}

static void region_close(fq_region *r)
{
	ofi_region_priv *rp = r->priv;
	ofi_pool *p = rp->pool;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t size = (r->size + page - 1) / page * page;

	pthread_mutex_lock(&p->lock);
	if (p->f != NULL)
		ofi_mr_dereg(p->f, &rp->mr);
	if (rp->prev != NULL)
		rp->prev->next = rp->next;
	else
		p->regions = rp->next;
	if (rp->next != NULL)
		rp->next->prev = rp->prev;
	pthread_mutex_unlock(&p->lock);
	munmap(r->data, size ? size : page);
	pool_unref(p);
}

static void region_msg_free(void *data, void *hint)
{
	region_ref *ref = hint;

	FQI_UNUSED(data);
	if (ref->r->ack_fn != NULL)
		ref->r->ack_fn(&ref->ack, 1, ref->r->arg);
	fqi_region_unref(ref->r);
	free(ref);
}

static int region_msg(fq_region *r, void *data, size_t size, void *hint, fq_msg **out)
{
	ofi_region_priv *rp = r->priv;
	region_ref *ref = malloc(sizeof(*ref));
	int rc;

	if (ref == NULL)
		return FQ_ENOMEM;
	*ref = (region_ref){r, {data, size, hint}};
	fqi_region_ref(r);
	rc = msg_wrap(r->t, data, size, &rp->mr, region_msg_free, ref, out);
	if (rc != 0) {
		fqi_region_unref(r);
		free(ref);
	}
	return rc;
}

const fqi_region_ops ofi_region_ops = {
    .size = sizeof(fqi_region_ops),
    .priv_size = sizeof(ofi_region_priv),
    .open = region_open,
    .close = region_close,
    .msg = region_msg,
};
