/*
 * Raw libfabric baseline of the fq-bench patterns (see baseline_ofi.h): what two processes get
 * from a provider without fabriq, written the way the ofi transport is meant to use it
 * (reference/rdma.md, section 6): one FI_EP_RDM endpoint, one address vector, one completion
 * queue for both directions, buffers registered once before the timed loop.
 *
 * Set-up: the parent creates a small memfd (fqb_ofi_create) that both sides inherit as
 * "memfd://FD". Each side writes its endpoint name (fi_getname) into its own slot of it, the
 * ofi-read sender also the address and key of its rendezvous buffer, then waits for the other
 * slot and inserts the peer's name into its address vector. The binding side reports the url
 * once its slot is written.
 *
 * Provider rules obeyed (fi_getinfo asks for LOCAL|VIRT_ADDR|ALLOCATED|PROV_KEY|ENDPOINT and
 * the code follows whatever the provider leaves set): local buffers are registered, and their
 * descriptors passed, only under FI_MR_LOCAL; remote addresses are virtual addresses under
 * FI_MR_VIRT_ADDR, else offsets from the registered region; keys are the provider's under
 * FI_MR_PROV_KEY, else our own; FI_MR_ENDPOINT binds and enables each region; every buffer is
 * allocated and written before it is registered (FI_MR_ALLOCATED). Every registration goes
 * through region_open, which counts it; the counts are reported (mr=, mr_steady=).
 *
 * Progress: tcp;ofi_rxm and shm move data only inside fi_cq_read (manual progress), so every
 * wait reads the CQ, and a post that returns -FI_EAGAIN is retried after reading it (its
 * completions are kept in a queue for the role). Waiting blocks on the CQ's fd (FI_WAIT_FD,
 * fi_trywait before each sleep) where the provider has one, after busy-polling for --ofi-spin
 * microseconds (default 0), and busy-polls otherwise (shm), yielding the CPU every 128 empty
 * polls. A silent peer ends the run after the role's timeout.
 *
 * thr (ofi): the sender sends from a window of buffers (fi_inject from one buffer when the
 * payload fits the inject size) and reuses a buffer once its send completed; the receiver keeps
 * a window of receives posted and reposts each one as it completes. lat (ofi): one receive
 * posted ahead on each side; the pinger sends, waits for the echo; the ponger echoes from its
 * own buffer. thr (ofi-read): for message i the sender writes buffer i % W and announces it in
 * an RTS (address, length, key); the receiver reads it with fi_read into one of its own
 * buffers (several reads in flight), sends FIN, and the sender reuses the buffer on FIN. The
 * end of a stream is the end marker (fqb_marker_size) for ofi and an END message for ofi-read;
 * the ofi-read receiver waits for the sender's BYE, which says every FIN arrived.
 */
#include "baseline_ofi.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define OFI_API_VERSION FI_VERSION(1, 9)
#define SETUP_NAME_MAX  256
#define CQ_SIZE         1024
#define CQ_BATCH        16
#define PENDING_MAX     1024 /* > every operation a role has in flight */
#define WINDOW_MAX      64   /* buffers in flight per direction */
#define TX_BUDGET       ((size_t)16 << 20)
#define RX_BUDGET       ((size_t)32 << 20)
#define CTRL_SLOTS      64 /* ofi-read: control receives posted, control sends in flight */
#define CTRL_SIZE       64
#define SPIN_CHECK      127u /* empty polls between two looks at the clock */
#define WARMUP          100  /* lat: round trips before the timed ones, as the other roles */

/* ---- The set-up file -------------------------------------------------------------------- */

typedef struct setup_slot {
	_Atomic uint32_t ready; /* written last, by the slot's owner */
	uint32_t name_len;
	uint64_t size;     /* payload size: the two sides check they agree */
	uint64_t buf_addr; /* ofi-read sender: its buffer as the peer names it (VIRT_ADDR) */
	uint64_t buf_key;
	uint64_t buf_len;
	uint64_t credits; /* thr receiver: receives posted for the sender */
	uint8_t name[SETUP_NAME_MAX];
} setup_slot;

typedef struct setup_file {
	setup_slot side[2]; /* 0: the binding side, 1: the connecting side */
} setup_file;

int fqb_ofi_create(void)
{
	int fd = memfd_create("fq-bench-ofi", MFD_CLOEXEC);

	if (fd >= 0 && ftruncate(fd, (off_t)sizeof(setup_file)) != 0) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

/* ---- Control messages (ofi-read) -------------------------------------------------------- */

enum { CTRL_RTS = 1, CTRL_END, CTRL_FIN, CTRL_BYE };

typedef struct ctrl_msg {
	uint32_t type;
	uint32_t slot; /* RTS, FIN: the sender's buffer */
	uint64_t seq;  /* RTS: message number; END: messages sent */
	uint64_t addr; /* RTS: where to read, per FI_MR_VIRT_ADDR */
	uint64_t len;  /* RTS: bytes */
	uint64_t key;  /* RTS: the region's key */
} ctrl_msg;
_Static_assert(sizeof(ctrl_msg) <= CTRL_SIZE, "a control message fits its slot");

/* ---- One side --------------------------------------------------------------------------- */

enum { OP_SEND = 1, OP_RECV, OP_READ, OP_CTRL_SEND, OP_CTRL_RECV };

/* A posted operation; the completion's op_context points at ctx (FI_CONTEXT/FI_CONTEXT2). */
typedef struct op {
	struct fi_context2 ctx;
	int kind;
	uint32_t slot;
} op;

/* A buffer, registered when the rules above ask for it. */
typedef struct region {
	char *buf;
	size_t len;
	struct fid_mr *mr;
	void *desc;     /* NULL when not registered */
	uint64_t key;   /* remote key (registered remote regions) */
	uint64_t raddr; /* the region's base as the peer names it */
} region;

typedef struct oside {
	const fqb_role_args *a;
	setup_file *setup;
	int me; /* own setup slot */
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	fi_addr_t peer;
	int wait_fd; /* the CQ's fd (FI_WAIT_FD), -1: busy-poll */
	uint64_t mr_mode;
	size_t inject_size;
	uint64_t next_key;
	unsigned mr_count, mr_steady;
	bool steady; /* in the timed loop: a registration now counts as steady-state */
	struct fi_cq_msg_entry pending[PENDING_MAX];
	size_t p_head, p_n;
} oside;

static int ofi_failed(const char *what, ssize_t rc)
{
	fqb_report_error("%s: %s (%zd)", what, fi_strerror((int)-rc), rc);
	return -1;
}

static size_t stride_of(size_t size)
{
	size_t s = size ? size : 1;

	return (s + 63) & ~(size_t)63;
}

static size_t window_of(size_t budget, size_t stride, size_t lo, size_t hi)
{
	size_t w = budget / stride;

	return w < lo ? lo : w > hi ? hi : w;
}

static int region_open(oside *s, region *r, size_t len, uint64_t access, bool remote)
{
	size_t alloc = (len + 4095) & ~(size_t)4095;
	uint64_t want_key = s->next_key++;
	int rc;

	memset(r, 0, sizeof(*r));
	r->len = len;
	r->buf = aligned_alloc(4096, alloc ? alloc : 4096);
	if (r->buf == NULL) {
		fqb_report_error("ofi: out of memory for %zu bytes", len);
		return -1;
	}
	memset(r->buf, 0x5a, alloc); /* FI_MR_ALLOCATED: mapped before it is registered */
	if (!remote && !(s->mr_mode & FI_MR_LOCAL))
		return 0;
	rc = fi_mr_reg(s->domain, r->buf, len, access, 0, want_key, 0, &r->mr, NULL);
	if (rc != 0)
		return ofi_failed("fi_mr_reg", rc);
	s->mr_count++;
	if (s->steady)
		s->mr_steady++;
	if (s->mr_mode & FI_MR_ENDPOINT) {
		rc = fi_mr_bind(r->mr, &s->ep->fid, 0);
		if (rc == 0)
			rc = fi_mr_enable(r->mr);
		if (rc != 0)
			return ofi_failed("fi_mr_bind/fi_mr_enable", rc);
	}
	r->desc = fi_mr_desc(r->mr);
	r->key = (s->mr_mode & FI_MR_PROV_KEY) ? fi_mr_key(r->mr) : want_key;
	r->raddr = (s->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)r->buf : 0;
	return 0;
}

static void region_close(region *r)
{
	if (r->mr != NULL)
		fi_close(&r->mr->fid);
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

static void side_close(oside *s)
{
	if (s->ep != NULL)
		fi_close(&s->ep->fid);
	if (s->av != NULL)
		fi_close(&s->av->fid);
	if (s->cq != NULL)
		fi_close(&s->cq->fid);
	if (s->domain != NULL)
		fi_close(&s->domain->fid);
	if (s->fabric != NULL)
		fi_close(&s->fabric->fid);
	if (s->info != NULL)
		fi_freeinfo(s->info);
	if (s->setup != NULL)
		munmap(s->setup, sizeof(*s->setup));
	s->ep = NULL;
	s->av = NULL;
	s->cq = NULL;
	s->domain = NULL;
	s->fabric = NULL;
	s->info = NULL;
	s->setup = NULL;
}

/* Map the set-up file, open fabric, domain, CQ, AV and endpoint. 0 or -1 (reported). */
static int side_open(oside *s, const fqb_role_args *a)
{
	const char *prov = a->ofi_provider ? a->ofi_provider : FQB_OFI_DEFAULT_PROVIDER;
	/* Providers on IP get the loopback address; shm names its endpoints itself. */
	const bool ip = strncmp(prov, "shm", 3) != 0;
	struct fi_cq_attr cq_attr = {.size = CQ_SIZE, .format = FI_CQ_FORMAT_MSG};
	struct fi_av_attr av_attr = {.type = FI_AV_TABLE, .count = 4};
	struct fi_info *hints;
	struct stat st;
	int fd = fqb_parse_fd_url(a->url, FQB_OFI_SCHEME), rc;

	memset(s, 0, sizeof(*s));
	s->a = a;
	s->me = a->bind ? 0 : 1;
	s->wait_fd = -1;
	s->next_key = 1;
	if (fd < 0) {
		fqb_report_error("ofi: bad url '%s' (expected %s://FD)", a->url, FQB_OFI_SCHEME);
		return -1;
	}
	/* A file given by hand may be empty: both sides size it alike. */
	if (fstat(fd, &st) != 0 ||
	    (st.st_size < (off_t)sizeof(*s->setup) && ftruncate(fd, sizeof(*s->setup)) != 0)) {
		fqb_report_error("ofi: the set-up file: %s", strerror(errno));
		return -1;
	}
	s->setup = mmap(NULL, sizeof(*s->setup), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (s->setup == MAP_FAILED) {
		s->setup = NULL;
		fqb_report_error("ofi: mmap of the set-up file: %s", strerror(errno));
		return -1;
	}
	hints = fi_allocinfo();
	if (hints == NULL) {
		fqb_report_error("ofi: fi_allocinfo: out of memory");
		goto fail;
	}
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_MSG | FI_RMA | FI_READ | FI_REMOTE_READ;
	hints->mode = FI_CONTEXT | FI_CONTEXT2;
	hints->domain_attr->mr_mode =
	    FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
	hints->domain_attr->threading = FI_THREAD_DOMAIN;
	hints->domain_attr->resource_mgmt = FI_RM_ENABLED;
	hints->tx_attr->msg_order = FI_ORDER_SAS; /* the end marker comes after the payload */
	hints->rx_attr->msg_order = FI_ORDER_SAS;
	hints->fabric_attr->prov_name = strdup(prov);
	rc = fi_getinfo(OFI_API_VERSION, ip ? "127.0.0.1" : NULL, NULL, ip ? FI_SOURCE : 0, hints,
	                &s->info);
	fi_freeinfo(hints);
	if (rc != 0) {
		fqb_report_error("ofi: no provider '%s' with FI_EP_RDM, FI_MSG and FI_RMA read: %s",
		                 prov, fi_strerror(-rc));
		s->info = NULL;
		goto fail;
	}
	s->mr_mode = s->info->domain_attr->mr_mode;
	s->inject_size = s->info->tx_attr->inject_size;
	if ((rc = fi_fabric(s->info->fabric_attr, &s->fabric, NULL)) != 0) {
		ofi_failed("fi_fabric", rc);
		goto fail;
	}
	if ((rc = fi_domain(s->fabric, s->info, &s->domain, NULL)) != 0) {
		ofi_failed("fi_domain", rc);
		goto fail;
	}
	/* A CQ with an fd where the provider has one; busy-polling where not (shm). */
	cq_attr.wait_obj = FI_WAIT_FD;
	if (fi_cq_open(s->domain, &cq_attr, &s->cq, NULL) == 0) {
		if (fi_control(&s->cq->fid, FI_GETWAIT, &s->wait_fd) != 0)
			s->wait_fd = -1;
	} else {
		cq_attr.wait_obj = FI_WAIT_NONE;
		if ((rc = fi_cq_open(s->domain, &cq_attr, &s->cq, NULL)) != 0) {
			ofi_failed("fi_cq_open", rc);
			goto fail;
		}
	}
	if ((rc = fi_av_open(s->domain, &av_attr, &s->av, NULL)) != 0) {
		ofi_failed("fi_av_open", rc);
		goto fail;
	}
	if ((rc = fi_endpoint(s->domain, s->info, &s->ep, NULL)) != 0) {
		ofi_failed("fi_endpoint", rc);
		goto fail;
	}
	if ((rc = fi_ep_bind(s->ep, &s->av->fid, 0)) != 0 ||
	    (rc = fi_ep_bind(s->ep, &s->cq->fid, FI_TRANSMIT | FI_RECV)) != 0) {
		ofi_failed("fi_ep_bind", rc);
		goto fail;
	}
	if ((rc = fi_enable(s->ep)) != 0) {
		ofi_failed("fi_enable", rc);
		goto fail;
	}
	return 0;
fail:
	side_close(s);
	return -1;
}

/* Write this side's slot of the set-up file; the binding side then reports its url. */
static int side_publish(oside *s, const region *rdv)
{
	setup_slot *me = &s->setup->side[s->me];
	size_t len = sizeof(me->name);
	int rc = fi_getname(&s->ep->fid, me->name, &len);

	if (rc != 0)
		return ofi_failed("fi_getname", rc);
	me->name_len = (uint32_t)len;
	me->size = s->a->size;
	if (rdv != NULL) {
		me->buf_addr = rdv->raddr;
		me->buf_key = rdv->key;
		me->buf_len = rdv->len;
	}
	atomic_store_explicit(&me->ready, 1, memory_order_release);
	if (s->a->bind)
		fqb_report_url(s->a->url);
	return 0;
}

/* Wait for the peer's slot and insert its name into the address vector. */
static int side_meet(oside *s, setup_slot *peer_out)
{
	setup_slot *peer = &s->setup->side[1 - s->me];
	uint64_t deadline = fqb_now_ns() + (uint64_t)s->a->timeout_ms * 1000000u;
	int rc;

	while (atomic_load_explicit(&peer->ready, memory_order_acquire) == 0) {
		struct timespec ts = {0, 100000};

		if (fqb_now_ns() >= deadline) {
			fqb_report_error("ofi: the peer did not publish its endpoint in %d ms",
			                 s->a->timeout_ms);
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	if (peer->size != s->a->size) {
		fqb_report_error("ofi: the peer runs size %llu, this side %zu",
		                 (unsigned long long)peer->size, s->a->size);
		return -1;
	}
	rc = fi_av_insert(s->av, peer->name, 1, &s->peer, 0, NULL);
	if (rc != 1)
		return ofi_failed("fi_av_insert", rc < 0 ? rc : -FI_EINVAL);
	if (peer_out != NULL)
		*peer_out = *peer;
	return 0;
}

/* ---- Completions and progress ----------------------------------------------------------- */

static int cq_error(oside *s)
{
	struct fi_cq_err_entry e;
	char buf[128];

	memset(&e, 0, sizeof(e));
	if (fi_cq_readerr(s->cq, &e, 0) < 0) {
		fqb_report_error("ofi: fi_cq_readerr failed");
		return -1;
	}
	fqb_report_error("ofi: completion error: %s (%s)", fi_strerror(e.err),
	                 fi_cq_strerror(s->cq, e.prov_errno, e.err_data, buf, sizeof(buf)));
	return -1;
}

/* Read what the CQ holds into the pending queue (this is what makes progress). 0 or -1. */
static int cq_drain(oside *s)
{
	while (s->p_n < PENDING_MAX) {
		size_t tail = (s->p_head + s->p_n) % PENDING_MAX;
		size_t room = PENDING_MAX - s->p_n;
		ssize_t n;

		if (room > PENDING_MAX - tail)
			room = PENDING_MAX - tail;
		if (room > CQ_BATCH)
			room = CQ_BATCH;
		n = fi_cq_read(s->cq, &s->pending[tail], room);
		if (n == -FI_EAGAIN)
			return 0;
		if (n == -FI_EAVAIL)
			return cq_error(s);
		if (n < 0)
			return ofi_failed("fi_cq_read", n);
		s->p_n += (size_t)n;
		if ((size_t)n < room)
			return 0;
	}
	return 0;
}

static int peer_silent(const oside *s)
{
	fqb_report_error("ofi: nothing completed for %d ms (peer gone?)", s->a->timeout_ms);
	return -1;
}

/*
 * The next completion into *e: 1; 0 if there is none and !block; -1 on an error or when
 * nothing completes within the timeout (reported).
 */
static int next_comp(oside *s, struct fi_cq_msg_entry *e, bool block)
{
	uint64_t deadline = 0, spin_end = 0;
	unsigned spins = 0;

	for (;;) {
		if (s->p_n == 0 && cq_drain(s) != 0)
			return -1;
		if (s->p_n > 0) {
			*e = s->pending[s->p_head];
			s->p_head = (s->p_head + 1) % PENDING_MAX;
			s->p_n--;
			return 1;
		}
		if (!block)
			return 0;
		if (deadline == 0) {
			deadline = fqb_now_ns() + (uint64_t)s->a->timeout_ms * 1000000u;
			spin_end = fqb_now_ns() + (uint64_t)s->a->ofi_spin_us * 1000u;
		}
		if (s->wait_fd >= 0) {
			struct fid *f = &s->cq->fid;
			uint64_t now = fqb_now_ns();

			if (now >= deadline)
				return peer_silent(s);
			if (now < spin_end) /* --ofi-spin: busy-poll first */
				continue;
			/* Sleep only when nothing is left to progress. */
			if (fi_trywait(s->fabric, &f, 1) == FI_SUCCESS) {
				struct pollfd pfd = {.fd = s->wait_fd, .events = POLLIN};
				uint64_t left = (deadline - now) / 1000000u + 1;

				poll(&pfd, 1, left > 100 ? 100 : (int)left);
			}
		} else if ((++spins & SPIN_CHECK) == 0) {
			if (fqb_now_ns() >= deadline)
				return peer_silent(s);
			sched_yield();
		}
	}
}

/* After -FI_EAGAIN: read the CQ (progress) and bound the retries by the timeout. */
static int retry_wait(oside *s, uint64_t *deadline, unsigned *spins)
{
	if (cq_drain(s) != 0)
		return -1;
	if (*deadline == 0)
		*deadline = fqb_now_ns() + (uint64_t)s->a->timeout_ms * 1000000u;
	if ((++*spins & SPIN_CHECK) == 0) {
		if (fqb_now_ns() >= *deadline)
			return peer_silent(s);
		sched_yield();
	}
	return 0;
}

/* Post with `expr`, retrying -FI_EAGAIN after reading the CQ; returns -1 from the caller. */
#define OFI_POST(s, what, expr)                                        \
	do {                                                           \
		uint64_t deadline_ = 0;                                \
		unsigned spins_ = 0;                                   \
		ssize_t rc_;                                           \
		while ((rc_ = (expr)) == -FI_EAGAIN) {                 \
			if (retry_wait((s), &deadline_, &spins_) != 0) \
				return -1;                             \
		}                                                      \
		if (rc_ != 0)                                          \
			return ofi_failed((what), rc_);                \
	} while (0)

/* With o == NULL: fi_inject (no completion); the length must fit the inject size. */
static int post_send(oside *s, const void *buf, size_t len, void *desc, op *o)
{
	if (o == NULL && len > s->inject_size) {
		fqb_report_error("ofi: the provider's inject size (%zu) is below %zu bytes",
		                 s->inject_size, len);
		return -1;
	}
	if (o == NULL)
		OFI_POST(s, "fi_inject", fi_inject(s->ep, buf, len, s->peer));
	else
		OFI_POST(s, "fi_send", fi_send(s->ep, buf, len, desc, s->peer, &o->ctx));
	return 0;
}

static int post_recv(oside *s, void *buf, size_t len, void *desc, op *o)
{
	OFI_POST(s, "fi_recv", fi_recv(s->ep, buf, len, desc, FI_ADDR_UNSPEC, &o->ctx));
	return 0;
}

static int post_read(oside *s, void *buf, size_t len, void *desc, uint64_t addr, uint64_t key,
                     op *o)
{
	OFI_POST(s, "fi_read", fi_read(s->ep, buf, len, desc, s->peer, addr, key, &o->ctx));
	return 0;
}

static op *op_of(const struct fi_cq_msg_entry *e)
{
	return (op *)e->op_context;
}

/*
 * Role mode's --hold, with progress: keep reading the CQ (a manual-progress provider moves
 * nothing otherwise) until stdin closes or the timeout passes.
 */
static void hold_progress(oside *s)
{
	struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
	uint64_t deadline = fqb_now_ns() + (uint64_t)s->a->timeout_ms * 1000000u;
	char buf[64];

	while (fqb_now_ns() < deadline) {
		int rc = poll(&pfd, 1, 1);

		if (rc < 0 && errno != EINTR)
			return;
		if (rc > 0) {
			if (pfd.revents & (POLLERR | POLLNVAL))
				return;
			if (read(STDIN_FILENO, buf, sizeof(buf)) <= 0)
				return;
		}
		if (cq_drain(s) != 0)
			return;
		s->p_n = 0; /* nothing is awaited any more */
	}
}

static void report_end(oside *s, const char *line)
{
	printf("result %s mr=%u mr_steady=%u\n", line, s->mr_count, s->mr_steady);
	fflush(stdout);
}

static void report_sender(oside *s, fqb_role role, uint64_t count, double cpu)
{
	char line[256];

	snprintf(line, sizeof(line), "role=%s count=%llu cpu=%.6f", fqb_role_name(role),
	         (unsigned long long)count, cpu);
	report_end(s, line);
}

static void report_receiver(oside *s, uint64_t count, double seconds, double cpu)
{
	char line[256];

	snprintf(line, sizeof(line), "role=receiver count=%llu seconds=%.9f cpu=%.6f",
	         (unsigned long long)count, seconds, cpu);
	report_end(s, line);
}

/* ---- thr: send/recv --------------------------------------------------------------------- */

/*
 * Credits: the receiver grants one per posted receive (in the set-up file), and returns them in
 * CREDIT messages of CREDIT_SIZE bytes, half a window at a time, as it reposts its receives, so
 * that the sender never runs further ahead than the receives posted for it (the libfabric
 * providers would otherwise queue every unexpected message, without a bound).
 */
#define CREDIT_SLOTS 8

typedef struct tsender {
	oside s;
	region tx; /* window buffers, then CREDIT_SLOTS receive slots of CTRL_SIZE */
	op ops[WINDOW_MAX], crx[CREDIT_SLOTS];
	bool busy[WINDOW_MAX];
	size_t window, stride, in_flight;
	uint64_t credits;
} tsender;

static int tsender_step(tsender *t)
{
	struct fi_cq_msg_entry e;
	op *o;

	if (next_comp(&t->s, &e, true) != 1)
		return -1;
	o = op_of(&e);
	if (o->kind == OP_SEND) {
		t->busy[o->slot] = false;
		t->in_flight--;
	} else if (o->kind == OP_CTRL_RECV) {
		char *slot = t->tx.buf + t->window * t->stride + o->slot * CTRL_SIZE;
		uint64_t granted;

		memcpy(&granted, slot, sizeof(granted));
		t->credits += granted;
		return post_recv(&t->s, slot, CTRL_SIZE, t->tx.desc, o);
	}
	return 0;
}

static int thr_sender(const fqb_role_args *a)
{
	fqb_deadline dl;
	uint64_t i;
	setup_slot peer;
	bool inject;
	double cpu0;
	int rc = FQB_EXIT_FAILURE;
	tsender *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		fqb_report_error("out of memory");
		return FQB_EXIT_FAILURE;
	}
	if (side_open(&t->s, a) != 0) {
		free(t);
		return FQB_EXIT_FAILURE;
	}
	t->stride = stride_of(a->size);
	inject = a->size <= t->s.inject_size;
	t->window = inject ? 1 : window_of(TX_BUDGET, t->stride, 2, WINDOW_MAX);
	if (region_open(&t->s, &t->tx, t->window * t->stride + CREDIT_SLOTS * CTRL_SIZE,
	                FI_SEND | FI_RECV, false) != 0)
		goto out;
	for (uint32_t k = 0; k < WINDOW_MAX; k++)
		t->ops[k] = (op){.kind = OP_SEND, .slot = k};
	for (uint32_t k = 0; k < CREDIT_SLOTS; k++) {
		t->crx[k] = (op){.kind = OP_CTRL_RECV, .slot = k};
		if (post_recv(&t->s, t->tx.buf + t->window * t->stride + k * CTRL_SIZE, CTRL_SIZE,
		              t->tx.desc, &t->crx[k]) != 0)
			goto out;
	}
	if (side_publish(&t->s, NULL) != 0 || side_meet(&t->s, &peer) != 0)
		goto out;
	t->credits = peer.credits;
	t->s.steady = true;
	cpu0 = fqb_cpu_seconds();
	fqb_deadline_start(&dl, a);
	for (i = 0; a->count == 0 || i < a->count; i++) {
		size_t slot = i % t->window;
		char *p = t->tx.buf + slot * t->stride;

		if (fqb_deadline_passed(&dl, i))
			break;
		/* One credit for this message, and one kept for the end marker. */
		while (t->busy[slot] || t->credits < 2) {
			if (tsender_step(t) != 0)
				goto out;
		}
		fqb_touch(p, a->size, i, a->fill);
		if (post_send(&t->s, p, a->size, t->tx.desc, inject ? NULL : &t->ops[slot]) != 0)
			goto out;
		t->credits--;
		if (!inject) {
			t->busy[slot] = true;
			t->in_flight++;
		}
	}
	while (t->in_flight > 0) {
		if (tsender_step(t) != 0)
			goto out;
	}
	/* The end marker: 0 or 1 byte, within the inject size of every provider here. */
	if (fqb_marker_size(a->size) <= t->s.inject_size) {
		if (post_send(&t->s, t->tx.buf, fqb_marker_size(a->size), t->tx.desc, NULL) != 0)
			goto out;
	} else {
		if (post_send(&t->s, t->tx.buf, fqb_marker_size(a->size), t->tx.desc, &t->ops[0]) !=
		    0)
			goto out;
		t->busy[0] = true;
		t->in_flight++;
		while (t->in_flight > 0) {
			if (tsender_step(t) != 0)
				goto out;
		}
	}
	if (a->hold)
		hold_progress(&t->s);
	report_sender(&t->s, FQB_ROLE_SENDER, i, fqb_cpu_seconds() - cpu0);
	rc = FQB_EXIT_OK;
out:
	side_close(&t->s);
	region_close(&t->tx);
	free(t);
	return rc;
}

static int thr_receiver(const fqb_role_args *a)
{
	const size_t stride = stride_of(a->size);
	const size_t window = window_of(RX_BUDGET, stride, 4, WINDOW_MAX);
	op ops[WINDOW_MAX];
	uint64_t n = 0, t_first = 0, t_end, returned = 0;
	struct fi_cq_msg_entry e;
	region rx;
	double cpu0;
	oside s;
	int rc = FQB_EXIT_FAILURE;

	if (side_open(&s, a) != 0)
		return FQB_EXIT_FAILURE;
	memset(&rx, 0, sizeof(rx));
	if (region_open(&s, &rx, window * stride, FI_RECV, false) != 0)
		goto out;
	for (size_t k = 0; k < window; k++) {
		ops[k] = (op){.kind = OP_RECV, .slot = (uint32_t)k};
		if (post_recv(&s, rx.buf + k * stride, stride, rx.desc, &ops[k]) != 0)
			goto out;
	}
	s.setup->side[s.me].credits = window;
	if (side_publish(&s, NULL) != 0 || side_meet(&s, NULL) != 0)
		goto out;
	s.steady = true;
	cpu0 = fqb_cpu_seconds();
	for (;;) {
		op *o;

		if (next_comp(&s, &e, true) != 1)
			goto out;
		o = op_of(&e);
		if (o->kind != OP_RECV)
			continue;
		if (e.len == fqb_marker_size(a->size))
			break;
		if (e.len != a->size) {
			fqb_report_error("ofi: a message of %zu bytes, expected %zu", e.len,
			                 a->size);
			goto out;
		}
		if (n++ == 0)
			t_first = fqb_now_ns();
		if (post_recv(&s, rx.buf + o->slot * stride, stride, rx.desc, o) != 0)
			goto out;
		/* Hand the reposted receives back as credits, half a window at a time. */
		if (++returned == window / 2) {
			if (post_send(&s, &returned, sizeof(returned), NULL, NULL) != 0)
				goto out;
			returned = 0;
		}
	}
	t_end = fqb_now_ns();
	report_receiver(&s, n, n ? (double)(t_end - t_first) / 1e9 : 0.0, fqb_cpu_seconds() - cpu0);
	rc = FQB_EXIT_OK;
out:
	if (rc != FQB_EXIT_OK)
		fprintf(stderr, "fq-bench: ofi receiver stopped after %llu messages\n",
		        (unsigned long long)n);
	side_close(&s);
	region_close(&rx);
	return rc;
}

/* ---- lat: send/recv ping-pong ----------------------------------------------------------- */

typedef struct lat_state {
	oside s;
	region r; /* [0, stride): send buffer, [stride, 2 stride): receive buffer */
	size_t stride;
	op tx, rx;
	bool inject, tx_busy, rx_done;
	size_t rx_len;
} lat_state;

static int lat_open(lat_state *l, const fqb_role_args *a)
{
	memset(&l->r, 0, sizeof(l->r));
	l->stride = stride_of(a->size);
	l->tx = (op){.kind = OP_SEND};
	l->rx = (op){.kind = OP_RECV};
	if (side_open(&l->s, a) != 0)
		return -1;
	l->inject = a->size <= l->s.inject_size;
	if (region_open(&l->s, &l->r, 2 * l->stride, FI_SEND | FI_RECV, false) != 0 ||
	    post_recv(&l->s, l->r.buf + l->stride, l->stride, l->r.desc, &l->rx) != 0 ||
	    side_publish(&l->s, NULL) != 0 || side_meet(&l->s, NULL) != 0)
		return -1;
	return 0;
}

static void lat_close(lat_state *l)
{
	side_close(&l->s);
	region_close(&l->r);
}

/* Handle one completion (waiting for it). 0 or -1. */
static int lat_step(lat_state *l)
{
	struct fi_cq_msg_entry e;

	if (next_comp(&l->s, &e, true) != 1)
		return -1;
	if (op_of(&e) == &l->tx) {
		l->tx_busy = false;
	} else if (op_of(&e) == &l->rx) {
		l->rx_done = true;
		l->rx_len = e.len;
	}
	return 0;
}

static int lat_send(lat_state *l, size_t len)
{
	while (l->tx_busy) {
		if (lat_step(l) != 0)
			return -1;
	}
	if (len <= l->s.inject_size)
		return post_send(&l->s, l->r.buf, len, l->r.desc, NULL);
	l->tx_busy = true;
	return post_send(&l->s, l->r.buf, len, l->r.desc, &l->tx);
}

/* Wait for the posted receive, then post it again. Its length, or -1. */
static ssize_t lat_recv(lat_state *l)
{
	size_t len;

	while (!l->rx_done) {
		if (lat_step(l) != 0)
			return -1;
	}
	l->rx_done = false;
	len = l->rx_len;
	if (post_recv(&l->s, l->r.buf + l->stride, l->stride, l->r.desc, &l->rx) != 0)
		return -1;
	return (ssize_t)len;
}

static int pinger(const fqb_role_args *a)
{
	fqb_samples samples = {0};
	uint64_t t0, prev, end_ns = UINT64_MAX, n = 0;
	int lap;
	fqb_lat_stats st;
	double cpu0;
	char line[512];
	int rc = FQB_EXIT_FAILURE;
	lat_state l;

	memset(&l, 0, sizeof(l));
	if (fqb_samples_init(&samples, a->count, a->duration) != 0) {
		fqb_report_error("out of memory for latency samples");
		return FQB_EXIT_FAILURE;
	}
	if (lat_open(&l, a) != 0)
		goto out;
	for (int w = 0; w < WARMUP; w++) {
		if (lat_send(&l, a->size) != 0 || lat_recv(&l) != (ssize_t)a->size)
			goto out;
	}
	l.s.steady = true;
	cpu0 = fqb_cpu_seconds();
	t0 = prev = fqb_now_ns();
	if (a->count == 0)
		end_ns = t0 + (uint64_t)(a->duration * 1e9);
	while (a->count == 0 || n < a->count) {
		while (a->fill && l.tx_busy) {
			if (lat_step(&l) != 0)
				goto out;
		}
		if (a->fill)
			fqb_touch(l.r.buf, a->size, n, true);
		if (lat_send(&l, a->size) != 0)
			goto out;
		if (lat_recv(&l) != (ssize_t)a->size) {
			fqb_report_error("ofi: the echo has the wrong size");
			goto out;
		}
		lap = fqb_lap(&samples, &prev, &n, end_ns);
		if (lap < 0)
			goto out;
		if (lap > 0)
			break;
	}
	if (lat_send(&l, fqb_marker_size(a->size)) != 0)
		goto out;
	while (l.tx_busy) {
		if (lat_step(&l) != 0)
			goto out;
	}
	if (a->hold)
		hold_progress(&l.s);
	fqb_lat_stats_compute(&samples, &st);
	snprintf(line, sizeof(line),
	         "role=pinger count=%llu seconds=%.9f p50=%.4f p99=%.4f mean=%.4f max=%.4f "
	         "cpu=%.6f",
	         (unsigned long long)n, (double)(prev - t0) / 1e9, st.p50_us, st.p99_us, st.mean_us,
	         st.max_us, fqb_cpu_seconds() - cpu0);
	report_end(&l.s, line);
	rc = FQB_EXIT_OK;
out:
	lat_close(&l);
	fqb_samples_free(&samples);
	return rc;
}

static int ponger(const fqb_role_args *a)
{
	uint64_t n = 0;
	double cpu0;
	ssize_t len;
	int rc = FQB_EXIT_FAILURE;
	lat_state l;

	memset(&l, 0, sizeof(l));
	if (lat_open(&l, a) != 0)
		goto out;
	cpu0 = fqb_cpu_seconds();
	while ((len = lat_recv(&l)) == (ssize_t)a->size) {
		if (n == WARMUP)
			l.s.steady = true;
		if (lat_send(&l, a->size) != 0)
			goto out;
		n++;
	}
	if (len != (ssize_t)fqb_marker_size(a->size)) {
		if (len >= 0)
			fqb_report_error("ofi: a message of %zd bytes, expected %zu", len, a->size);
		goto out;
	}
	while (l.tx_busy) {
		if (lat_step(&l) != 0)
			goto out;
	}
	report_sender(&l.s, FQB_ROLE_PONGER, n, fqb_cpu_seconds() - cpu0);
	rc = FQB_EXIT_OK;
out:
	lat_close(&l);
	return rc;
}

/* ---- thr: fi_read rendezvous ------------------------------------------------------------ */

/* Control traffic of one side: CTRL_SLOTS receive slots, then CTRL_SLOTS send slots. */
typedef struct ctrl {
	region r;
	op rx[CTRL_SLOTS], tx[CTRL_SLOTS];
	bool tx_busy[CTRL_SLOTS];
	size_t tx_next;
} ctrl;

static int ctrl_open(oside *s, ctrl *c)
{
	memset(c, 0, sizeof(*c));
	if (region_open(s, &c->r, 2 * CTRL_SLOTS * CTRL_SIZE, FI_SEND | FI_RECV, false) != 0)
		return -1;
	for (uint32_t k = 0; k < CTRL_SLOTS; k++) {
		c->rx[k] = (op){.kind = OP_CTRL_RECV, .slot = k};
		c->tx[k] = (op){.kind = OP_CTRL_SEND, .slot = k};
		if (post_recv(s, c->r.buf + k * CTRL_SIZE, CTRL_SIZE, c->r.desc, &c->rx[k]) != 0)
			return -1;
	}
	return 0;
}

static int ctrl_repost(oside *s, ctrl *c, const op *o)
{
	return post_recv(s, c->r.buf + o->slot * CTRL_SIZE, CTRL_SIZE, c->r.desc, &c->rx[o->slot]);
}

static const ctrl_msg *ctrl_at(const ctrl *c, const op *o)
{
	return (const ctrl_msg *)(c->r.buf + o->slot * CTRL_SIZE);
}

/*
 * Send a control message: fi_inject where it fits, else from a free send slot (the caller
 * frees slots as their OP_CTRL_SEND completions come; this waits for one when all are busy,
 * handing other completions to `other`).
 */
static int ctrl_send(oside *s, ctrl *c, const ctrl_msg *m,
                     int (*other)(void *, const struct fi_cq_msg_entry *), void *arg)
{
	size_t k;

	if (sizeof(*m) <= s->inject_size)
		return post_send(s, m, sizeof(*m), NULL, NULL);
	k = c->tx_next;
	while (c->tx_busy[k]) {
		struct fi_cq_msg_entry e;

		if (next_comp(s, &e, true) != 1)
			return -1;
		if (op_of(&e)->kind == OP_CTRL_SEND)
			c->tx_busy[op_of(&e)->slot] = false;
		else if (other(arg, &e) != 0)
			return -1;
	}
	c->tx_next = (k + 1) % CTRL_SLOTS;
	memcpy(c->r.buf + (CTRL_SLOTS + k) * CTRL_SIZE, m, sizeof(*m));
	c->tx_busy[k] = true;
	return post_send(s, c->r.buf + (CTRL_SLOTS + k) * CTRL_SIZE, sizeof(*m), c->r.desc,
	                 &c->tx[k]);
}

static bool ctrl_idle(const ctrl *c)
{
	for (size_t k = 0; k < CTRL_SLOTS; k++) {
		if (c->tx_busy[k])
			return false;
	}
	return true;
}

typedef struct rsender {
	oside s;
	ctrl c;
	region pool;
	size_t stride, window, in_flight;
	bool busy[WINDOW_MAX];
} rsender;

/* Sender side of a completion other than a control send: a FIN frees its buffer. */
static int rsender_comp(void *arg, const struct fi_cq_msg_entry *e)
{
	rsender *r = arg;
	const op *o = op_of(e);

	if (o->kind == OP_CTRL_SEND) {
		r->c.tx_busy[o->slot] = false;
		return 0;
	}
	if (o->kind != OP_CTRL_RECV)
		return 0;
	if (ctrl_at(&r->c, o)->type == CTRL_FIN) {
		uint32_t slot = ctrl_at(&r->c, o)->slot;

		if (slot >= r->window || !r->busy[slot]) {
			fqb_report_error("ofi-read: a FIN for buffer %u, not in flight", slot);
			return -1;
		}
		r->busy[slot] = false;
		r->in_flight--;
	}
	return ctrl_repost(&r->s, &r->c, o);
}

static int rsender_step(rsender *r)
{
	struct fi_cq_msg_entry e;

	if (next_comp(&r->s, &e, true) != 1)
		return -1;
	return rsender_comp(r, &e);
}

static int read_sender(const fqb_role_args *a)
{
	fqb_deadline dl;
	uint64_t i;
	double cpu0;
	int rc = FQB_EXIT_FAILURE;
	rsender *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		fqb_report_error("out of memory");
		return FQB_EXIT_FAILURE;
	}
	r->stride = stride_of(a->size);
	/* At most CTRL_SLOTS - 2 buffers in flight: the receiver has a posted receive for
	 * every RTS, the END and the BYE. */
	r->window = window_of(TX_BUDGET, r->stride, 2, CTRL_SLOTS - 2);
	if (side_open(&r->s, a) != 0) {
		free(r);
		return FQB_EXIT_FAILURE;
	}
	if (region_open(&r->s, &r->pool, r->window * r->stride, FI_REMOTE_READ | FI_SEND, true) !=
	        0 ||
	    ctrl_open(&r->s, &r->c) != 0 || side_publish(&r->s, &r->pool) != 0 ||
	    side_meet(&r->s, NULL) != 0)
		goto out;
	r->s.steady = true;
	cpu0 = fqb_cpu_seconds();
	fqb_deadline_start(&dl, a);
	for (i = 0; a->count == 0 || i < a->count; i++) {
		size_t slot = i % r->window;
		ctrl_msg m = {.type = CTRL_RTS, .slot = (uint32_t)slot, .seq = i, .len = a->size};

		if (fqb_deadline_passed(&dl, i))
			break;
		while (r->busy[slot]) {
			if (rsender_step(r) != 0)
				goto out;
		}
		fqb_touch(r->pool.buf + slot * r->stride, a->size, i, a->fill);
		/* The address as the peer names it: a virtual address or an offset. */
		m.addr = r->pool.raddr + slot * r->stride;
		m.key = r->pool.key;
		r->busy[slot] = true;
		r->in_flight++;
		if (ctrl_send(&r->s, &r->c, &m, rsender_comp, r) != 0)
			goto out;
	}
	{
		ctrl_msg end = {.type = CTRL_END, .seq = i};

		if (ctrl_send(&r->s, &r->c, &end, rsender_comp, r) != 0)
			goto out;
	}
	while (r->in_flight > 0) {
		if (rsender_step(r) != 0)
			goto out;
	}
	{
		/* Every FIN is in: the receiver may finish. */
		ctrl_msg bye = {.type = CTRL_BYE};

		if (ctrl_send(&r->s, &r->c, &bye, rsender_comp, r) != 0)
			goto out;
	}
	while (!ctrl_idle(&r->c)) {
		if (rsender_step(r) != 0)
			goto out;
	}
	if (a->hold)
		hold_progress(&r->s);
	report_sender(&r->s, FQB_ROLE_SENDER, i, fqb_cpu_seconds() - cpu0);
	rc = FQB_EXIT_OK;
out:
	side_close(&r->s);
	region_close(&r->pool);
	region_close(&r->c.r);
	free(r);
	return rc;
}

typedef struct rreceiver {
	oside s;
	ctrl c;
	region dst;
	size_t stride, window;
	op reads[WINDOW_MAX];
	uint32_t read_slot[WINDOW_MAX]; /* the sender's buffer each read comes from */
	bool dst_busy[WINDOW_MAX];
	size_t reads_in_flight;
	ctrl_msg queue[CTRL_SLOTS]; /* RTS waiting for a free buffer */
	size_t q_head, q_n;
	uint64_t done, end_count, t_first;
	bool end_seen, bye_seen;
} rreceiver;

static int rreceiver_comp(rreceiver *r, const struct fi_cq_msg_entry *e);

/* Completions that come while a FIN waits for a send slot (providers without inject). */
static int rreceiver_other(void *arg, const struct fi_cq_msg_entry *e)
{
	return rreceiver_comp(arg, e);
}

static int rreceiver_fin(rreceiver *r, uint32_t slot)
{
	ctrl_msg fin = {.type = CTRL_FIN, .slot = slot};

	if (r->done++ == 0)
		r->t_first = fqb_now_ns();
	return ctrl_send(&r->s, &r->c, &fin, rreceiver_other, r);
}

static int rreceiver_comp(rreceiver *r, const struct fi_cq_msg_entry *e)
{
	const op *o = op_of(e);
	const ctrl_msg *m;

	if (o->kind == OP_CTRL_SEND) {
		r->c.tx_busy[o->slot] = false;
		return 0;
	}
	if (o->kind == OP_READ) {
		r->dst_busy[o->slot] = false;
		r->reads_in_flight--;
		return rreceiver_fin(r, r->read_slot[o->slot]);
	}
	if (o->kind != OP_CTRL_RECV)
		return 0;
	m = ctrl_at(&r->c, o);
	switch (m->type) {
	case CTRL_RTS:
		if (m->len != r->s.a->size || r->q_n == CTRL_SLOTS) {
			fqb_report_error("ofi-read: an RTS of %llu bytes, expected %zu",
			                 (unsigned long long)m->len, r->s.a->size);
			return -1;
		}
		r->queue[(r->q_head + r->q_n++) % CTRL_SLOTS] = *m;
		break;
	case CTRL_END:
		r->end_seen = true;
		r->end_count = m->seq;
		break;
	case CTRL_BYE:
		r->bye_seen = true;
		break;
	default:
		fqb_report_error("ofi-read: unknown control message %u", m->type);
		return -1;
	}
	return ctrl_repost(&r->s, &r->c, o);
}

/* Start a read for every queued RTS that has a free buffer (0-byte ones complete at once). */
static int rreceiver_start(rreceiver *r)
{
	while (r->q_n > 0) {
		const ctrl_msg *m = &r->queue[r->q_head];
		size_t k;

		if (m->len == 0) {
			uint32_t slot = m->slot;

			r->q_head = (r->q_head + 1) % CTRL_SLOTS;
			r->q_n--;
			if (rreceiver_fin(r, slot) != 0)
				return -1;
			continue;
		}
		for (k = 0; k < r->window && r->dst_busy[k]; k++)
			;
		if (k == r->window)
			return 0;
		r->dst_busy[k] = true;
		r->read_slot[k] = m->slot;
		r->reads_in_flight++;
		r->q_head = (r->q_head + 1) % CTRL_SLOTS;
		r->q_n--;
		if (post_read(&r->s, r->dst.buf + k * r->stride, m->len, r->dst.desc, m->addr,
		              m->key, &r->reads[k]) != 0)
			return -1;
	}
	return 0;
}

static int read_receiver(const fqb_role_args *a)
{
	uint64_t t_end = 0;
	double cpu0;
	int rc = FQB_EXIT_FAILURE;
	rreceiver *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		fqb_report_error("out of memory");
		return FQB_EXIT_FAILURE;
	}
	r->stride = stride_of(a->size);
	r->window = window_of(RX_BUDGET, r->stride, 2, WINDOW_MAX);
	for (uint32_t k = 0; k < WINDOW_MAX; k++)
		r->reads[k] = (op){.kind = OP_READ, .slot = k};
	if (side_open(&r->s, a) != 0) {
		free(r);
		return FQB_EXIT_FAILURE;
	}
	if (region_open(&r->s, &r->dst, r->window * r->stride, FI_READ, false) != 0 ||
	    ctrl_open(&r->s, &r->c) != 0 || side_publish(&r->s, NULL) != 0 ||
	    side_meet(&r->s, NULL) != 0)
		goto out;
	r->s.steady = true;
	cpu0 = fqb_cpu_seconds();
	while (!(r->end_seen && r->done == r->end_count && r->bye_seen)) {
		struct fi_cq_msg_entry e;

		if (next_comp(&r->s, &e, true) != 1 || rreceiver_comp(r, &e) != 0 ||
		    rreceiver_start(r) != 0)
			goto out;
		/* Everything read: the time is taken here, not at the sender's BYE. */
		if (t_end == 0 && r->end_seen && r->done == r->end_count)
			t_end = fqb_now_ns();
	}
	while (!ctrl_idle(&r->c)) {
		struct fi_cq_msg_entry e;

		if (next_comp(&r->s, &e, true) != 1 || rreceiver_comp(r, &e) != 0)
			goto out;
	}
	report_receiver(&r->s, r->done, r->done ? (double)(t_end - r->t_first) / 1e9 : 0.0,
	                fqb_cpu_seconds() - cpu0);
	rc = FQB_EXIT_OK;
out:
	side_close(&r->s);
	region_close(&r->dst);
	region_close(&r->c.r);
	free(r);
	return rc;
}

int fqb_ofi_role(const fqb_role_args *a, bool read)
{
	static const fqb_role_fns fns = {thr_sender, thr_receiver, pinger, ponger, "no role"};
	static const fqb_role_fns read_fns = {read_sender, read_receiver, NULL, NULL,
	                                      "ofi-read measures thr only (sender, receiver)"};

	if (a->parts != 1) {
		fqb_report_error("the ofi baselines send single-part messages only (--parts 1)");
		return FQB_EXIT_USAGE;
	}
	return fqb_role_run(read ? &read_fns : &fns, a);
}
