/*
 * The libfabric layer alone: two endpoints in one process exchange an eager message and a
 * rendezvous-sized fi_read, in strict mode, on tcp;ofi_rxm and on shm; the registration
 * cache; error mapping.
 */
#include "transport/ofi/ofi_fabric.h"
#include <stdio.h>
#include <fcntl.h>

#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

typedef struct done_rec {
	ofi_op op;
	int calls, status;
	size_t len;
} done_rec;

static void on_done(ofi_op *op, int status, size_t len)
{
	done_rec *r = (done_rec *)op;

	r->calls++;
	r->status = status;
	r->len = len;
}

/* Post again while the provider pushes back (the peer has to progress: rxm connects). */
#define POST(a, b, call)                                                  \
	do {                                                              \
		int rc_ = FQ_EAGAIN;                                      \
		for (int i_ = 0; i_ < 100000 && rc_ == FQ_EAGAIN; i_++) { \
			rc_ = (call);                                     \
			if (rc_ == FQ_EAGAIN) {                           \
				ofi_fabric_progress(a);                   \
				ofi_fabric_progress(b);                   \
			}                                                 \
		}                                                         \
		cr_assert_eq(rc_, 0, "%s: %s", #call, fq_strerror(rc_));  \
	} while (0)

/* Progress both endpoints until every record has completed (bounded). */
static void drive(ofi_fabric *a, ofi_fabric *b, done_rec **recs, size_t n)
{
	for (int round = 0; round < 200000; round++) {
		size_t complete = 0;

		cr_assert_geq(ofi_fabric_progress(a), 0);
		cr_assert_geq(ofi_fabric_progress(b), 0);
		for (size_t i = 0; i < n; i++)
			complete += recs[i]->calls > 0;
		if (complete == n)
			return;
		if (round % 64 == 63)
			ofi_fabric_wait(b, -1, 1);
	}
	cr_assert_fail("operations did not complete");
}

static void exchange(const char *provider, const char *node)
{
	ofi_fabric a, b;
	fi_addr_t to_b, to_a;
	ofi_mr smr, rmr, src_mr, dst_mr;
	char small[64] = "hello over libfabric";
	char inbox[4096];
	size_t big = 1u << 20;
	char *src = malloc(big), *dst = calloc(1, big);
	done_rec rx = {.op.done = on_done}, tx = {.op.done = on_done}, rd = {.op.done = on_done};
	done_rec *eager[] = {&rx, &tx}, *read[] = {&rd};
	struct iovec iov = {small, strlen(small) + 1};
	const ofi_mr *mrs = &smr;
	int rc;

	rc = ofi_fabric_open(&a, provider, node, true);
	cr_assert_eq(rc, 0, "%s: %s (scripts/deps.sh installs libfabric)", provider,
	             fq_strerror(rc));
	cr_assert_eq(ofi_fabric_open(&b, provider, node, true), 0);
	/* Strict mode obeys every bit real hardware may demand. */
	cr_assert_eq(a.caps.mr_mode & (FI_MR_LOCAL | FI_MR_ALLOCATED | FI_MR_PROV_KEY),
	             FI_MR_LOCAL | FI_MR_ALLOCATED | FI_MR_PROV_KEY);
	cr_assert_geq(a.caps.iov_limit, 1);
	cr_assert_eq(ofi_av_insert(&a, b.name, b.namelen, &to_b), 0);
	cr_assert_eq(ofi_av_insert(&b, a.name, a.namelen, &to_a), 0);

	/* Eager: a registered receive buffer, a registered send buffer, one message. */
	cr_assert_eq(ofi_mr_reg(&b, inbox, sizeof(inbox), FI_RECV, &rmr), 0);
	cr_assert_eq(ofi_mr_reg(&a, small, sizeof(small), FI_SEND, &smr), 0);
	POST(&a, &b, ofi_post_recv(&b, inbox, sizeof(inbox), &rmr, &rx.op));
	/* Strict mode (FI_MR_LOCAL): a buffer outside its registration never reaches the
	 * provider. */
	cr_assert_eq(ofi_post_recv(&b, inbox, sizeof(inbox), NULL, &rx.op), FQ_EINVAL);
	cr_assert_eq(ofi_post_recv(&b, inbox + 1, sizeof(inbox), &rmr, &rx.op), FQ_EINVAL);
	cr_assert_eq(ofi_post_read(&b, src, 64, &rmr, to_a, 0, 0, &rd.op), FQ_EINVAL);
	POST(&a, &b, ofi_post_send(&a, &iov, &mrs, 1, to_b, &tx.op));
	drive(&a, &b, eager, 2);
	cr_assert_eq(tx.status, 0);
	cr_assert_eq(rx.status, 0);
	cr_assert_eq(rx.len, strlen(small) + 1);
	cr_assert_str_eq(inbox, small);

	/* Rendezvous: the receiver pulls 1 MiB with fi_read, addressed as the provider wants. */
	for (size_t i = 0; i < big; i++)
		src[i] = (char)(i * 7 + 3);
	cr_assert_eq(ofi_mr_reg(&a, src, big, FI_REMOTE_READ, &src_mr), 0);
	cr_assert_eq(ofi_mr_reg(&b, dst, big, FI_READ, &dst_mr), 0);
	POST(&a, &b,
	     ofi_post_read(&b, dst, big, &dst_mr, to_a, ofi_mr_raddr(&a, &src_mr, src), src_mr.key,
	                   &rd.op));
	drive(&a, &b, read, 1);
	cr_assert_eq(rd.status, 0, "%s", fq_strerror(rd.status));
	cr_assert_eq(memcmp(src, dst, big), 0);

	/* A gathering read: as many segments as the limits allow, from scattered places of the
	 * source into places of the destination in the opposite order; one more is refused. */
	{
		ofi_rma_seg seg[OFI_SEGS_MAX + 1];
		size_t n = ofi_read_segs_max(&b), piece = 1000;

		cr_assert_geq(n, 1);
		cr_assert_leq(n, a.caps.rma_iov_limit);
		memset(dst, 0, big);
		for (size_t i = 0; i <= n; i++) {
			char *from = src + 4096 * (i + 1) + i, *into = dst + 4096 * (n - i);

			seg[i] = (ofi_rma_seg){into, piece, &dst_mr,
			                       ofi_mr_raddr(&a, &src_mr, from), src_mr.key};
		}
		cr_assert_eq(ofi_post_readv(&b, seg, n + 1, to_a, &rd.op), FQ_EINVAL);
		cr_assert_eq(ofi_post_readv(&b, seg, 0, to_a, &rd.op), FQ_EINVAL);
		rd.calls = 0;
		POST(&a, &b, ofi_post_readv(&b, seg, n, to_a, &rd.op));
		drive(&a, &b, read, 1);
		cr_assert_eq(rd.status, 0, "%s", fq_strerror(rd.status));
		cr_assert_eq(rd.calls, 1, "one completion for the whole gather");
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(memcmp(dst + 4096 * (n - i), src + 4096 * (i + 1) + i, piece),
			             0, "segment %zu of %zu", i, n);
	}
	cr_assert_eq(atomic_load(&a.registrations), 2);
	cr_assert_eq(atomic_load(&b.registrations), 2);

	ofi_mr_dereg(&a, &smr);
	ofi_mr_dereg(&a, &src_mr);
	ofi_mr_dereg(&b, &rmr);
	ofi_mr_dereg(&b, &dst_mr);
	ofi_fabric_close(&a);
	ofi_fabric_close(&b);
	free(src);
	free(dst);
}

Test(ofi_fabric, eager_and_read_on_tcp_rxm, .timeout = 60)
{
	exchange("tcp;ofi_rxm", "127.0.0.1");
}

Test(ofi_fabric, eager_and_read_on_shm, .timeout = 60)
{
	exchange("shm", NULL);
}

Test(ofi_fabric, shm_regions_a_killed_process_left_under_our_pid_do_not_block_us, .timeout = 60)
{
	char path[64];
	ofi_fabric f;
	int fd;

	/* What libfabric's shm leaves behind when a process with this pid was SIGKILLed. */
	snprintf(path, sizeof(path), "/dev/shm/%ld:0:0", (long)getpid());
	fd = open(path, O_CREAT | O_RDWR, 0600);
	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(ofi_fabric_open(&f, "shm", NULL, true), 0);
	ofi_fabric_close(&f);
	cr_assert(access(path, F_OK) != 0, "the stale region is still there");
}

Test(ofi_fabric, an_unknown_provider_is_unavailable)
{
	ofi_fabric f;

	cr_assert_eq(ofi_fabric_open(&f, "no-such-provider", NULL, true), FQ_EUNAVAIL);
}

Test(ofi_fabric, registration_cache_hits_evicts_and_bounds, .timeout = 60)
{
	ofi_fabric f;
	ofi_rcache *c;
	const ofi_mr *m1, *m2, *m3, *m4;
	uint64_t hits, misses, evictions;
	size_t entries;
	long page = sysconf(_SC_PAGESIZE);
	char *mem = aligned_alloc((size_t)page, (size_t)page * 8);

	cr_assert_eq(ofi_fabric_open(&f, "tcp;ofi_rxm", "127.0.0.1", true), 0);
	cr_assert_eq(ofi_rcache_new(&f, 2, SIZE_MAX, &c), 0);
	cr_assert_eq(ofi_rcache_get(c, mem + 10, 100, &m1), 0);
	cr_assert_eq(ofi_rcache_get(c, mem + 200, 50, &m2), 0, "same page: a hit");
	cr_assert_eq(m1, m2);
	cr_assert_eq(ofi_rcache_get(c, mem + 2 * page, 10, &m3), 0);
	/* Two entries, both held: a third registration must wait. */
	cr_assert_eq(ofi_rcache_get(c, mem + 5 * page, 10, &m4), FQ_EAGAIN);
	ofi_rcache_put(c, m1);
	ofi_rcache_put(c, m2);
	cr_assert_eq(ofi_rcache_get(c, mem + 5 * page, 10, &m4), 0, "the unused one goes");
	ofi_rcache_stats(c, &hits, &misses, &evictions, &entries);
	cr_assert_eq(hits, 1);
	cr_assert_eq(misses, 3);
	cr_assert_eq(evictions, 1);
	cr_assert_eq(entries, 2);
	cr_assert_eq(atomic_load(&f.registrations), 3);
	ofi_rcache_put(c, m3);
	ofi_rcache_put(c, m4);
	ofi_rcache_free(c);
	ofi_fabric_close(&f);
	free(mem);
}

Test(ofi_fabric, errors_map_to_fabriq_codes)
{
	cr_assert_eq(ofi_err(-FI_EAGAIN), FQ_EAGAIN);
	cr_assert_eq(ofi_err(FI_ETRUNC), FQ_EMSGSIZE);
	cr_assert_eq(ofi_err(-FI_ECANCELED), FQ_ECLOSED);
	cr_assert_eq(ofi_err(-FI_ENOSYS), FQ_ENOTSUP);
	cr_assert_eq(ofi_err(-FI_ECONNREFUSED), FQ_ECONNREFUSED);
	cr_assert(FQ_IS_SYSERR(ofi_err(-FI_EIO)));
	cr_assert_eq(ofi_err(-FI_EOTHER), FQ_EPROTO);
	cr_assert_eq(ofi_err(0), 0);
}
