/*
 * The libfabric layer of the ofi transport (ofi_fabric.h): endpoint set-up, registration,
 * the registration cache, posting and completions.
 */
#include "transport/ofi/ofi_fabric.h"

#include <dirent.h>

#include <dlfcn.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fi_eq.h>

#define SUBSYS "ofi"

/*
 * Retries of -FI_EAGAIN, each after progressing the completion queue; then FQ_EAGAIN, and the
 * caller queues the operation and posts it again after the next completions (the peer may
 * have to make progress first, as rxm's connection set-up needs).
 */
#define OFI_EAGAIN_TRIES 16

/* The memory-registration bits the code obeys on top of the provider's, in strict mode. */
#define OFI_STRICT_MR (FI_MR_LOCAL | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT)

/*
 * libfabric is loaded when the ofi transport is first used, not with libfabriq: loading it
 * runs provider constructors that install signal handlers (shm's cleanup of its shared
 * memory) in every program, fabriq user or not. Only these five functions are exported by
 * the library; everything else in its headers calls through the objects' operation tables.
 */
static struct {
	int rc;
	void *dl;
	int (*getinfo)(uint32_t version, const char *node, const char *service, uint64_t flags,
	               const struct fi_info *hints, struct fi_info **info);
	void (*freeinfo)(struct fi_info *info);
	struct fi_info *(*dupinfo)(const struct fi_info *info);
	int (*fabric)(struct fi_fabric_attr *attr, struct fid_fabric **fabric, void *context);
	const char *(*strerror)(int errnum);
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_load(void)
{
	lib.dl = dlopen("libfabric.so.1", RTLD_NOW | RTLD_LOCAL);
	if (lib.dl == NULL) {
		FQI_DEBUG(SUBSYS, "libfabric not loadable: %s", dlerror());
		lib.rc = FQ_EUNAVAIL;
		return;
	}
	*(void **)&lib.getinfo = dlsym(lib.dl, "fi_getinfo");
	*(void **)&lib.freeinfo = dlsym(lib.dl, "fi_freeinfo");
	*(void **)&lib.dupinfo = dlsym(lib.dl, "fi_dupinfo");
	*(void **)&lib.fabric = dlsym(lib.dl, "fi_fabric");
	*(void **)&lib.strerror = dlsym(lib.dl, "fi_strerror");
	if (lib.getinfo == NULL || lib.freeinfo == NULL || lib.dupinfo == NULL ||
	    lib.fabric == NULL || lib.strerror == NULL) {
		FQI_WARN(SUBSYS, "libfabric.so.1 lacks a function fabriq needs");
		lib.rc = FQ_EUNAVAIL;
	}
}

int ofi_lib(void)
{
	pthread_once(&lib_once, lib_load);
	return lib.rc;
}

static const char *fi_err_text(int e)
{
	return lib.strerror != NULL ? lib.strerror(e) : "libfabric error";
}

int ofi_err(int fi_rc)
{
	int e = fi_rc < 0 ? -fi_rc : fi_rc;

	switch (e) {
	case 0:
		return 0;
	case FI_EAGAIN:
		return FQ_EAGAIN;
	case FI_ENOMEM:
		return FQ_ENOMEM;
	case FI_EINVAL:
		return FQ_EINVAL;
	case FI_ETRUNC:
	case FI_EMSGSIZE:
		return FQ_EMSGSIZE;
	case FI_ECANCELED:
		return FQ_ECLOSED;
	case FI_ENOSYS:
	case FI_EOPNOTSUPP:
		return FQ_ENOTSUP;
	case FI_ENODATA:
		return FQ_EUNAVAIL;
	case FI_ETIMEDOUT:
		return FQ_ETIMEDOUT;
	case FI_ECONNREFUSED:
		return FQ_ECONNREFUSED;
	default:
		/* libfabric's own codes start at 256 (FI_ERRNO_OFFSET); below that it is errno. */
		return e < 256 ? fqi_syserr(e) : FQ_EPROTO;
	}
}

static int fail(const char *what, int fi_rc)
{
	FQI_WARN(SUBSYS, "%s: %s", what, fi_err_text(fi_rc < 0 ? -fi_rc : fi_rc));
	return ofi_err(fi_rc);
}

/* ---- Opening ---------------------------------------------------------------------------- */

static struct fi_info *find_provider(const char *provider, const char *node)
{
	struct fi_info *hints = lib.dupinfo(NULL), *info = NULL; /* fi_allocinfo */
	int rc;

	if (hints == NULL)
		return NULL;
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_MSG | FI_RMA | FI_READ | FI_REMOTE_READ;
	hints->mode = FI_CONTEXT | FI_CONTEXT2;
	/* Offer every bit a verbs provider may demand: the code obeys them all. */
	hints->domain_attr->mr_mode =
	    FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
	hints->domain_attr->threading = FI_THREAD_DOMAIN;
	/* shm names its endpoints itself (from the process): a node would make every process's
	 * the same. */
	if (provider != NULL && strncmp(provider, "shm", 3) == 0)
		node = NULL;
	if (provider != NULL && (hints->fabric_attr->prov_name = strdup(provider)) == NULL) {
		lib.freeinfo(hints);
		return NULL;
	}
	rc = lib.getinfo(FI_VERSION(1, 17), node, NULL, node != NULL ? FI_SOURCE : 0, hints, &info);
	lib.freeinfo(hints);
	if (rc != 0) {
		FQI_DEBUG(SUBSYS, "provider %s: %s", provider ? provider : "(any)",
		          fi_err_text(-rc));
		return NULL;
	}
	return info;
}

/* The provider to use: the one asked for, else FI_PROVIDER, else the default order. */
static struct fi_info *choose(const char *provider, const char *node)
{
	static const char *const order[] = {"verbs;ofi_rxm", "tcp;ofi_rxm"};
	const char *env = getenv("FI_PROVIDER");
	struct fi_info *info;

	if (provider != NULL && provider[0] != '\0')
		return find_provider(provider, node);
	if (env != NULL && env[0] != '\0')
		return find_provider(env, node);
	/* shm reaches this host only: it is used when asked for, never by default. */
	for (size_t i = 0; i < FQI_ARRAY_LEN(order); i++) {
		info = find_provider(order[i], node);
		if (info != NULL)
			return info;
	}
	return NULL;
}

static void caps_of(ofi_fabric *f, bool strict)
{
	const struct fi_info *i = f->info;

	f->caps.mr_mode = (uint64_t)i->domain_attr->mr_mode | (strict ? OFI_STRICT_MR : 0);
	f->caps.iov_limit = i->tx_attr->iov_limit ? i->tx_attr->iov_limit : 1;
	f->caps.rma_iov_limit = i->tx_attr->rma_iov_limit ? i->tx_attr->rma_iov_limit : 1;
	f->caps.mr_iov_limit = i->domain_attr->mr_iov_limit ? i->domain_attr->mr_iov_limit : 1;
	f->caps.inject_size = i->tx_attr->inject_size;
	f->caps.max_msg_size = i->ep_attr->max_msg_size;
}

static int open_cq(ofi_fabric *f)
{
	struct fi_cq_attr attr = {
	    .size = 4096, .format = FI_CQ_FORMAT_DATA, .wait_obj = FI_WAIT_FD};
	int rc = fi_cq_open(f->domain, &attr, &f->cq, NULL);

	if (rc == 0) {
		/* Ask for FI_WAIT_FD explicitly: GETWAIT on another wait object writes more. */
		rc = fi_control(&f->cq->fid, FI_GETWAIT, &f->cq_fd);
		if (rc == 0) {
			f->caps.wait_fd = true;
			return 0;
		}
		fi_close(&f->cq->fid);
		f->cq = NULL;
	}
	/* No fd (shm): the caller wakes itself up with a timer. */
	FQI_DEBUG(SUBSYS, "%s: no FI_WAIT_FD completion queue (%s); polling", f->prov,
	          fi_err_text(-rc));
	attr.wait_obj = FI_WAIT_NONE;
	f->cq_fd = -1;
	f->caps.wait_fd = false;
	rc = fi_cq_open(f->domain, &attr, &f->cq, NULL);
	return rc == 0 ? 0 : fail("fi_cq_open", rc);
}

/*
 * libfabric's shm provider names its shared-memory regions "<pid>:<endpoint>:<n>" in /dev/shm
 * and removes them only on an orderly close (or SIGINT/SIGTERM): a process killed with
 * SIGKILL leaves them behind, and a later process that gets the same pid cannot open an
 * endpoint (EBUSY). Before this process opens its first shm endpoint, anything under its own
 * pid is such a leftover: remove it. Later opens must not (the names are this process's own).
 */
static pthread_mutex_t shm_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned shm_open_count;

static void shm_clear_stale(void)
{
	char prefix[32];
	size_t plen = (size_t)snprintf(prefix, sizeof(prefix), "%ld:", (long)getpid());
	DIR *d = opendir("/dev/shm");
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, plen) == 0 && unlinkat(dirfd(d), e->d_name, 0) == 0)
			FQI_INFO(SUBSYS,
			         "removed /dev/shm/%s, left by a killed process with our pid",
			         e->d_name);
	}
	closedir(d);
}

int ofi_fabric_open(ofi_fabric *f, const char *provider, const char *node, bool strict)
{
	struct fi_av_attr av_attr = {.type = FI_AV_TABLE};
	int rc;

	memset(f, 0, sizeof(*f));
	f->cq_fd = -1;
	pthread_mutex_init(&f->lock, NULL);
	rc = ofi_lib();
	if (rc != 0)
		return rc;
	f->info = choose(provider, node);
	if (f->info == NULL)
		return FQ_EUNAVAIL;
	snprintf(f->prov, sizeof(f->prov), "%s", f->info->fabric_attr->prov_name);
	if (strcmp(f->prov, "shm") == 0) {
		pthread_mutex_lock(&shm_lock);
		if (shm_open_count++ == 0)
			shm_clear_stale();
		pthread_mutex_unlock(&shm_lock);
		f->counted_shm = true;
	}
	caps_of(f, strict);
	f->next_key = 1;
	rc = lib.fabric(f->info->fabric_attr, &f->fabric, NULL);
	if (rc != 0) {
		rc = fail("fi_fabric", rc);
		goto err;
	}
	rc = fi_domain(f->fabric, f->info, &f->domain, NULL);
	if (rc != 0) {
		rc = fail("fi_domain", rc);
		goto err;
	}
	rc = fi_av_open(f->domain, &av_attr, &f->av, NULL);
	if (rc != 0) {
		rc = fail("fi_av_open", rc);
		goto err;
	}
	rc = open_cq(f);
	if (rc != 0)
		goto err;
	rc = fi_endpoint(f->domain, f->info, &f->ep, NULL);
	if (rc == 0)
		rc = fi_ep_bind(f->ep, &f->av->fid, 0);
	if (rc == 0)
		rc = fi_ep_bind(f->ep, &f->cq->fid, FI_TRANSMIT | FI_RECV);
	if (rc == 0)
		rc = fi_enable(f->ep);
	if (rc != 0) {
		rc = fail("endpoint", rc);
		goto err;
	}
	f->namelen = sizeof(f->name);
	rc = fi_getname(&f->ep->fid, f->name, &f->namelen);
	if (rc != 0) {
		rc = rc == -FI_ETOOSMALL ? FQ_ERANGE : fail("fi_getname", rc);
		goto err;
	}
	FQI_DEBUG(SUBSYS, "%s: endpoint open (iov %zu, rma iov %zu, inject %zu, mr_mode %#llx%s)",
	          f->prov, f->caps.iov_limit, f->caps.rma_iov_limit, f->caps.inject_size,
	          (unsigned long long)f->caps.mr_mode, f->caps.wait_fd ? ", fd" : "");
	return 0;
err:
	ofi_fabric_close(f);
	return rc;
}

void ofi_fabric_close_ep(ofi_fabric *f)
{
	pthread_mutex_lock(&f->lock);
	if (f->ep != NULL)
		fi_close(&f->ep->fid);
	f->ep = NULL;
	pthread_mutex_unlock(&f->lock);
}

bool ofi_fabric_can_sleep(ofi_fabric *f)
{
	struct fid *fids[1] = {&f->cq->fid};
	int rc;

	pthread_mutex_lock(&f->lock);
	rc = f->n_deferred > 0 ? -FI_EAGAIN : fi_trywait(f->fabric, fids, 1);
	pthread_mutex_unlock(&f->lock);
	return rc == FI_SUCCESS;
}

void ofi_fabric_close(ofi_fabric *f)
{
	if (f->ep != NULL)
		fi_close(&f->ep->fid);
	if (f->cq != NULL)
		fi_close(&f->cq->fid);
	if (f->av != NULL)
		fi_close(&f->av->fid);
	if (f->domain != NULL)
		fi_close(&f->domain->fid);
	if (f->fabric != NULL)
		fi_close(&f->fabric->fid);
	if (f->info != NULL)
		lib.freeinfo(f->info);
	f->ep = NULL;
	f->cq = NULL;
	f->av = NULL;
	f->domain = NULL;
	f->fabric = NULL;
	f->info = NULL;
	free(f->deferred);
	f->deferred = NULL;
	f->n_deferred = f->cap_deferred = 0;
	if (f->counted_shm) {
		pthread_mutex_lock(&shm_lock);
		shm_open_count--;
		pthread_mutex_unlock(&shm_lock);
		f->counted_shm = false;
	}
	pthread_mutex_destroy(&f->lock);
}

int ofi_av_insert(ofi_fabric *f, const void *name, size_t len, fi_addr_t *out)
{
	int n;

	if (len == 0 || len > OFI_NAME_MAX)
		return FQ_EPROTO;
	pthread_mutex_lock(&f->lock);
	n = fi_av_insert(f->av, name, 1, out, 0, NULL);
	pthread_mutex_unlock(&f->lock);
	return n == 1 ? 0 : n < 0 ? fail("fi_av_insert", n) : FQ_EPROTO;
}

void ofi_av_remove(ofi_fabric *f, fi_addr_t addr)
{
	pthread_mutex_lock(&f->lock);
	fi_av_remove(f->av, &addr, 1, 0);
	pthread_mutex_unlock(&f->lock);
}

/* ---- Registration ----------------------------------------------------------------------- */

int ofi_mr_reg(ofi_fabric *f, void *buf, size_t len, uint64_t access, ofi_mr *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	out->base = buf;
	out->len = len;
	if (len == 0)
		return 0; /* nothing to describe: a NULL descriptor */
	pthread_mutex_lock(&f->lock);
	/* With FI_MR_PROV_KEY the provider picks the key; ours is a hint otherwise. */
	rc = fi_mr_reg(f->domain, buf, len, access, 0, f->next_key++, 0, &out->mr, NULL);
	if (rc == 0 && (f->info->domain_attr->mr_mode & FI_MR_ENDPOINT)) {
		rc = fi_mr_bind(out->mr, &f->ep->fid, 0);
		if (rc == 0)
			rc = fi_mr_enable(out->mr);
	}
	pthread_mutex_unlock(&f->lock);
	if (rc != 0) {
		if (out->mr != NULL)
			fi_close(&out->mr->fid);
		out->mr = NULL;
		return fail("fi_mr_reg", rc);
	}
	atomic_fetch_add_explicit(&f->registrations, 1, memory_order_relaxed);
	out->desc = fi_mr_desc(out->mr);
	out->key = fi_mr_key(out->mr);
	return 0;
}

void ofi_mr_dereg(ofi_fabric *f, ofi_mr *m)
{
	if (m->mr != NULL) {
		pthread_mutex_lock(&f->lock);
		fi_close(&m->mr->fid);
		pthread_mutex_unlock(&f->lock);
	}
	m->mr = NULL;
	m->desc = NULL;
}

uint64_t ofi_mr_raddr(const ofi_fabric *f, const ofi_mr *m, const void *p)
{
	/* The provider decides the meaning of a remote address, not strict mode. */
	if (f->info->domain_attr->mr_mode & FI_MR_VIRT_ADDR)
		return (uint64_t)(uintptr_t)p;
	return (uint64_t)((const char *)p - (const char *)m->base);
}

/* ---- Registration cache ----------------------------------------------------------------- */

/* Slots never move: callers hold pointers to their ofi_mr. */
typedef struct rc_entry {
	ofi_mr m;
	unsigned refs;
	bool used;
	uint64_t last_use;
} rc_entry;

struct ofi_rcache {
	ofi_fabric *f;
	pthread_mutex_t lock;
	rc_entry *e;
	size_t n, max_entries, max_bytes, bytes;
	uint64_t clock, hits, misses, evictions;
};

int ofi_rcache_new(ofi_fabric *f, size_t max_entries, size_t max_bytes, ofi_rcache **out)
{
	ofi_rcache *c = calloc(1, sizeof(*c));

	if (c == NULL || max_entries == 0)
		goto nomem;
	c->e = calloc(max_entries, sizeof(*c->e));
	if (c->e == NULL)
		goto nomem;
	c->f = f;
	c->max_entries = max_entries;
	c->max_bytes = max_bytes;
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
nomem:
	free(c);
	return max_entries == 0 ? FQ_EINVAL : FQ_ENOMEM;
}

void ofi_rcache_free(ofi_rcache *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->max_entries; i++) {
		if (c->e[i].used)
			ofi_mr_dereg(c->f, &c->e[i].m);
	}
	pthread_mutex_destroy(&c->lock);
	free(c->e);
	free(c);
}

/* Drop the least recently used entry nobody holds; false if every entry is held. */
static bool evict_one(ofi_rcache *c)
{
	size_t victim = SIZE_MAX;

	for (size_t i = 0; i < c->max_entries; i++) {
		if (c->e[i].used && c->e[i].refs == 0 &&
		    (victim == SIZE_MAX || c->e[i].last_use < c->e[victim].last_use))
			victim = i;
	}
	if (victim == SIZE_MAX)
		return false;
	c->bytes -= c->e[victim].m.len;
	ofi_mr_dereg(c->f, &c->e[victim].m);
	c->e[victim].used = false;
	c->n--;
	c->evictions++;
	return true;
}

int ofi_rcache_get(ofi_rcache *c, void *buf, size_t len, const ofi_mr **out)
{
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t lo = (uintptr_t)buf & ~(uintptr_t)(page - 1);
	uintptr_t hi = ((uintptr_t)buf + len + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
	rc_entry *e;
	int rc;

	pthread_mutex_lock(&c->lock);
	c->clock++;
	for (size_t i = 0; i < c->max_entries; i++) {
		e = &c->e[i];
		if (e->used && (uintptr_t)e->m.base <= (uintptr_t)buf &&
		    (uintptr_t)buf + len <= (uintptr_t)e->m.base + e->m.len) {
			e->refs++;
			e->last_use = c->clock;
			c->hits++;
			*out = &e->m;
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
	}
	/* Whole pages: fork-safe registration, and neighbours of this buffer hit next time. */
	while ((c->n == c->max_entries || c->bytes + (hi - lo) > c->max_bytes) && evict_one(c))
		;
	if (c->n == c->max_entries || (c->bytes + (hi - lo) > c->max_bytes && c->n > 0)) {
		pthread_mutex_unlock(&c->lock);
		return FQ_EAGAIN; /* every entry is in use: wait for some to come back */
	}
	e = c->e;
	while (e->used)
		e++; /* a free slot exists: n < max_entries */
	rc = ofi_mr_reg(c->f, (void *)lo, hi - lo, FI_SEND | FI_READ | FI_REMOTE_READ, &e->m);
	if (rc == 0) {
		e->used = true;
		e->refs = 1;
		e->last_use = c->clock;
		c->bytes += hi - lo;
		c->misses++;
		c->n++;
		*out = &e->m;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void ofi_rcache_put(ofi_rcache *c, const ofi_mr *m)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->max_entries; i++) {
		if (c->e[i].used && &c->e[i].m == m) {
			FQI_ASSERT(c->e[i].refs > 0);
			c->e[i].refs--;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

void ofi_rcache_stats(ofi_rcache *c, uint64_t *hits, uint64_t *misses, uint64_t *evictions,
                      size_t *entries)
{
	pthread_mutex_lock(&c->lock);
	*hits = c->hits;
	*misses = c->misses;
	*evictions = c->evictions;
	*entries = c->n;
	pthread_mutex_unlock(&c->lock);
}

/* ---- Operations ------------------------------------------------------------------------- */

typedef ssize_t (*post_fn)(ofi_fabric *f, const void *args, ofi_op *op);

struct ofi_done {
	ofi_op *op;
	int status;
	size_t len;
};

/*
 * Read up to `max` completions into done[] (f->lock held). Returns how many, 0 when the queue
 * is empty, or a negative libfabric code.
 */
static ssize_t cq_take(ofi_fabric *f, struct ofi_done *done, size_t max)
{
	struct fi_cq_data_entry ents[16];
	ssize_t n = fi_cq_read(f->cq, ents, max < 16 ? max : 16);

	if (n == -FI_EAVAIL) {
		struct fi_cq_err_entry err = {0};

		n = fi_cq_readerr(f->cq, &err, 0);
		if (n == 1) {
			done[0] = (struct ofi_done){err.op_context, ofi_err(err.err), err.len};
			FQI_DEBUG(SUBSYS, "%s: operation failed: %s (%s)", f->prov,
			          fi_err_text(err.err),
			          fi_cq_strerror(f->cq, err.prov_errno, err.err_data, NULL, 0));
		}
		return n;
	}
	for (ssize_t i = 0; i < n; i++)
		done[i] = (struct ofi_done){ents[i].op_context, 0, ents[i].len};
	return n == -FI_EAGAIN ? 0 : n;
}

/* Move what the CQ holds to the deferred list (f->lock held). */
static int cq_defer(ofi_fabric *f)
{
	for (;;) {
		ssize_t n;

		if (f->cap_deferred - f->n_deferred < 16) {
			size_t cap = f->cap_deferred ? 2 * f->cap_deferred : 64;
			struct ofi_done *d = realloc(f->deferred, cap * sizeof(*d));

			if (d == NULL)
				return FQ_ENOMEM;
			f->deferred = d;
			f->cap_deferred = cap;
		}
		n = cq_take(f, f->deferred + f->n_deferred, 16);
		if (n <= 0)
			return n < 0 ? fail("fi_cq_read", (int)n) : 0;
		f->n_deferred += (size_t)n;
	}
}

/* Post with -FI_EAGAIN retried after reading the CQ: the provider needs completions read to
 * free its queue slots (and, on rxm, to make connections). */
static int post(ofi_fabric *f, post_fn fn, const void *args, ofi_op *op)
{
	ssize_t rc = -FI_EAGAIN;

	pthread_mutex_lock(&f->lock);
	for (int i = 0; i < OFI_EAGAIN_TRIES && rc == -FI_EAGAIN; i++) {
		rc = fn(f, args, op);
		if (rc == -FI_EAGAIN) {
			int d = cq_defer(f);

			if (d < 0) {
				pthread_mutex_unlock(&f->lock);
				return d;
			}
		}
	}
	pthread_mutex_unlock(&f->lock);
	return rc == 0 ? 0 : rc == -FI_EAGAIN ? FQ_EAGAIN : fail("post", (int)rc);
}

struct recv_args {
	void *buf;
	size_t len;
	void *desc;
};

static ssize_t do_recv(ofi_fabric *f, const void *args, ofi_op *op)
{
	const struct recv_args *a = args;

	return fi_recv(f->ep, a->buf, a->len, a->desc, FI_ADDR_UNSPEC, op);
}

/* FI_MR_LOCAL: is [buf, buf + len) inside mr? */
static int local_ok(const ofi_fabric *f, const char *what, const void *buf, size_t len,
                    const ofi_mr *mr)
{
	if (!(f->caps.mr_mode & FI_MR_LOCAL) || len == 0)
		return 0;
	if (mr != NULL && mr->mr != NULL && (const char *)buf >= (const char *)mr->base &&
	    (const char *)buf + len <= (const char *)mr->base + mr->len)
		return 0;
	FQI_ERROR(SUBSYS, "%s: %s of %zu bytes at %p is outside its registration (FI_MR_LOCAL)",
	          f->prov, what, len, buf);
	return FQ_EINVAL;
}

int ofi_post_recv(ofi_fabric *f, void *buf, size_t len, const ofi_mr *mr, ofi_op *op)
{
	struct recv_args a = {buf, len, mr != NULL ? mr->desc : NULL};
	int rc = local_ok(f, "receive buffer", buf, len, mr);

	return rc != 0 ? rc : post(f, do_recv, &a, op);
}

struct send_args {
	const struct iovec *iov;
	void **desc;
	size_t n;
	fi_addr_t to;
};

static ssize_t do_send(ofi_fabric *f, const void *args, ofi_op *op)
{
	const struct send_args *a = args;
	struct fi_msg msg = {
	    .msg_iov = a->iov, .desc = a->desc, .iov_count = a->n, .addr = a->to, .context = op};

	return fi_sendmsg(f->ep, &msg, 0);
}

int ofi_post_send(ofi_fabric *f, const struct iovec *iov, const ofi_mr *const *mr, size_t n,
                  fi_addr_t to, ofi_op *op)
{
	void *desc[16];
	struct send_args a = {iov, desc, n, to};

	if (n == 0 || n > f->caps.iov_limit || n > FQI_ARRAY_LEN(desc))
		return FQ_EINVAL;
	for (size_t i = 0; i < n; i++) {
		int rc = local_ok(f, "send buffer", iov[i].iov_base, iov[i].iov_len, mr[i]);

		if (rc != 0)
			return rc;
		desc[i] = mr[i] != NULL ? mr[i]->desc : NULL;
	}
	return post(f, do_send, &a, op);
}

struct read_args {
	struct iovec iov[OFI_SEGS_MAX];
	void *desc[OFI_SEGS_MAX];
	struct fi_rma_iov rma[OFI_SEGS_MAX];
	size_t n;
	fi_addr_t from;
};

static ssize_t do_read(ofi_fabric *f, const void *args, ofi_op *op)
{
	const struct read_args *a = args;
	struct fi_msg_rma msg = {.msg_iov = a->iov,
	                         .desc = (void **)a->desc,
	                         .iov_count = a->n,
	                         .addr = a->from,
	                         .rma_iov = a->rma,
	                         .rma_iov_count = a->n,
	                         .context = op};

	if (a->n == 1)
		return fi_read(f->ep, a->iov[0].iov_base, a->iov[0].iov_len, a->desc[0], a->from,
		               a->rma[0].addr, a->rma[0].key, op);
	return fi_readmsg(f->ep, &msg, FI_COMPLETION);
}

size_t ofi_read_segs_max(const ofi_fabric *f)
{
	size_t n =
	    f->caps.iov_limit < f->caps.rma_iov_limit ? f->caps.iov_limit : f->caps.rma_iov_limit;

	return n < OFI_SEGS_MAX ? n : OFI_SEGS_MAX;
}

int ofi_post_readv(ofi_fabric *f, const ofi_rma_seg *seg, size_t n, fi_addr_t from, ofi_op *op)
{
	struct read_args a = {.n = n, .from = from};

	if (n == 0 || n > ofi_read_segs_max(f))
		return FQ_EINVAL;
	for (size_t i = 0; i < n; i++) {
		int rc = local_ok(f, "read destination", seg[i].buf, seg[i].len, seg[i].mr);

		if (rc != 0)
			return rc;
		a.iov[i] = (struct iovec){seg[i].buf, seg[i].len};
		a.desc[i] = seg[i].mr != NULL ? seg[i].mr->desc : NULL;
		a.rma[i] = (struct fi_rma_iov){seg[i].raddr, seg[i].len, seg[i].key};
	}
	return post(f, do_read, &a, op);
}

int ofi_post_read(ofi_fabric *f, void *buf, size_t len, const ofi_mr *mr, fi_addr_t from,
                  uint64_t raddr, uint64_t key, ofi_op *op)
{
	ofi_rma_seg seg = {buf, len, mr, raddr, key};

	return ofi_post_readv(f, &seg, 1, from, op);
}

void ofi_cancel(ofi_fabric *f, ofi_op *op)
{
	ssize_t rc;

	pthread_mutex_lock(&f->lock);
	rc = f->ep != NULL ? fi_cancel(&f->ep->fid, op) : 0;
	pthread_mutex_unlock(&f->lock);
	if (rc != 0)
		FQI_DEBUG(SUBSYS, "%s: fi_cancel: %s", f->prov, fi_err_text((int)-rc));
}

/* ---- Completions ------------------------------------------------------------------------ */

int ofi_fabric_progress(ofi_fabric *f)
{
	struct ofi_done local[16], *batch;
	ssize_t n;
	int done = 0;

	for (;;) {
		bool owned = false;

		pthread_mutex_lock(&f->lock);
		if (f->n_deferred > 0) {
			/* Completions a post read earlier go first, in the order they came. */
			batch = f->deferred;
			n = (ssize_t)f->n_deferred;
			f->deferred = NULL;
			f->n_deferred = f->cap_deferred = 0;
			owned = true;
		} else {
			batch = local;
			n = cq_take(f, local, FQI_ARRAY_LEN(local));
		}
		pthread_mutex_unlock(&f->lock);
		if (n == 0)
			return done;
		if (n < 0)
			return fail("fi_cq_read", (int)n);
		for (ssize_t i = 0; i < n; i++) {
			if (batch[i].op != NULL && batch[i].op->done != NULL)
				batch[i].op->done(batch[i].op, batch[i].status, batch[i].len);
		}
		if (owned)
			free(batch);
		done += (int)n;
		if (!owned && (size_t)n < FQI_ARRAY_LEN(local))
			return done; /* the queue gave less than asked: it was empty */
	}
}

int ofi_fabric_wait(ofi_fabric *f, int wake_fd, int timeout_ms)
{
	struct pollfd p[2];
	nfds_t n = 0;
	int rc;

	if (f->caps.wait_fd) {
		struct fid *fids[1] = {&f->cq->fid};

		pthread_mutex_lock(&f->lock);
		rc = fi_trywait(f->fabric, fids, 1);
		pthread_mutex_unlock(&f->lock);
		if (rc != FI_SUCCESS)
			return 0; /* completions are there: read them */
		p[n++] = (struct pollfd){.fd = f->cq_fd, .events = POLLIN};
	}
	if (wake_fd >= 0)
		p[n++] = (struct pollfd){.fd = wake_fd, .events = POLLIN};
	if (!f->caps.wait_fd) {
		/* No fd to sleep on: look again after a short nap (or sooner on wake_fd). */
		int nap = timeout_ms < 0 || timeout_ms > 1 ? 1 : timeout_ms;

		rc = n > 0 ? poll(p, n, nap) : (usleep((useconds_t)nap * 1000), 0);
		return rc > 0 || timeout_ms != 0 ? 0 : FQ_ETIMEDOUT;
	}
	rc = poll(p, n, timeout_ms);
	if (rc < 0 && errno != EINTR)
		return fqi_syserr(errno);
	return rc == 0 ? FQ_ETIMEDOUT : 0;
}
