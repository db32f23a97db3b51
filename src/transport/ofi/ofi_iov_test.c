/*
 * Rendezvous reads and the provider's iov limits: a vector of parts is pulled with reads that
 * gather at most iov_max pieces (and read_chunk bytes) each, so no read exceeds the provider's
 * iov_limit / rma_iov_limit, and the vector still arrives whole, in one delivery. Checked with
 * small limits (1, 2, 3) and the provider's own (4 here), on tcp;ofi_rxm and shm, in strict
 * mode too; the number of reads comes from the transport's "reads" counter.
 */
#include "fq_test.h"

#include <stdio.h>
#include <string.h>

TestSuite(ofi_iov, .init = fqt_init, .fini = fqt_fini, .timeout = 120);

#define KiB ((size_t)1 << 10)

typedef struct pair {
	fq_transport *tx_t, *rx_t;
	fq_socket *push, *pull;
} pair;

static fq_transport *open_ofi(const char *provider, const char *extra)
{
	char options[256];
	fq_transport *t = NULL;

	snprintf(options, sizeof(options), "provider=%s,node=127.0.0.1%s%s", provider,
	         extra[0] != '\0' ? "," : "", extra);
	FQ_PASS(fq_transport_open(&t, "ofi", options));
	return t;
}

/* PUSH on one transport instance, PULL on another: the receiver's reads are its own. */
static pair open_pair(const char *provider, const char *rx_options)
{
	pair p;
	char url[128];

	p.tx_t = open_ofi(provider, "");
	p.rx_t = open_ofi(provider, rx_options);
	p.push = fqt_socket(p.tx_t, FQ_PUSH);
	p.pull = fqt_socket(p.rx_t, FQ_PULL);
	fqt_marry_url(p.push, p.pull, "tcp", url);
	return p;
}

static void close_pair(pair *p)
{
	fqt_close(p->push);
	fqt_close(p->pull);
	fq_transport_close(p->tx_t);
	fq_transport_close(p->rx_t);
}

static uint64_t reads(fq_transport *t)
{
	uint64_t v = 0;

	FQ_PASS(fq_transport_counter(t, "reads", &v));
	return v;
}

/* Send parts of the given sizes as one vector; return how many reads the receiver made. */
static uint64_t pass_vector(pair *p, const size_t *sizes, size_t n)
{
	fq_msg *parts[128];
	fq_parts *v = NULL;
	uint64_t before = reads(p->rx_t);

	cr_assert_leq(n, sizeof(parts) / sizeof(parts[0]));
	for (size_t i = 0; i < n; i++)
		parts[i] = fqt_msg_pattern(p->tx_t, sizes[i], (uint32_t)(1000 + i));
	FQ_PASS(fq_sendv(p->push, parts, n, 0));
	FQ_PASS(fq_recvv(p->pull, &v, 0));
	cr_assert_eq(fq_parts_count(v), n, "%zu parts arrived, %zu sent", fq_parts_count(v), n);
	for (size_t i = 0; i < n; i++)
		fqt_msg_check(fq_parts_at(v, i), sizes[i], (uint32_t)(1000 + i));
	fq_parts_free(v);
	return reads(p->rx_t) - before;
}

static void fill(size_t *sizes, size_t n, size_t size)
{
	for (size_t i = 0; i < n; i++)
		sizes[i] = size;
}

/* One provider, one strictness: every limit, the same vectors. */
static void limits_case(const char *provider, const char *strict)
{
	static const struct {
		unsigned iov_max, expect; /* 0: the provider's limit (4 on both providers here) */
	} limits[] = {{1, 1}, {2, 2}, {3, 3}, {0, 4}, {16, 4}};

	for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
		unsigned k = limits[l].expect;
		char options[128];
		size_t sizes[128];
		pair p;

		snprintf(options, sizeof(options), "iov_max=%u,read_chunk=4K%s", limits[l].iov_max,
		         strict);
		fprintf(stderr, "ofi_iov: %s, %s\n", provider, options);
		p = open_pair(provider, options);

		/* 64 parts of 1000 B (above the 16 KiB eager limit): ceil(64 / k) reads of up to
		 * k whole parts (k * 1000 <= 4096). */
		fill(sizes, 64, 1000);
		cr_assert_eq(pass_vector(&p, sizes, 64), (64 + k - 1) / k, "iov_max=%u",
		             limits[l].iov_max);

		/* Empty parts take no segment: 64 parts, every other one empty. */
		for (size_t i = 0; i < 64; i++)
			sizes[i] = i % 2 ? 0 : 1000;
		sizes[1] = 20 * KiB; /* one part over read_chunk: 5 reads of its own pieces */
		{
			uint64_t got = pass_vector(&p, sizes, 64);
			/* at least one read per k pieces; at most the small parts' reads plus the
			 * large part's 6 pieces */
			uint64_t lo = (33 + k - 1) / k, hi = (32 + k - 1) / k + 6;

			cr_assert(got >= lo && got <= hi,
			          "iov_max=%u: %llu reads, not in [%llu, %llu]", limits[l].iov_max,
			          (unsigned long long)got, (unsigned long long)lo,
			          (unsigned long long)hi);
		}

		/* 20 parts of 3000 B, reads of at most 4096 B: whole parts alone with k = 1 (20
		 * reads); with k >= 2 pieces fill every read: ceil(60000 / 4096) = 15. */
		fill(sizes, 20, 3000);
		cr_assert_eq(pass_vector(&p, sizes, 20), k == 1 ? 20u : 15u, "iov_max=%u",
		             limits[l].iov_max);

		/* One large part: chunked by read_chunk whatever k is. */
		sizes[0] = 40000;
		cr_assert_eq(pass_vector(&p, sizes, 1), 10u, "iov_max=%u", limits[l].iov_max);

		/* The most parts one announcement holds, each a few bytes. */
		fill(sizes, 128, 200);
		cr_assert_eq(pass_vector(&p, sizes, 128), (128 + k - 1) / k, "iov_max=%u",
		             limits[l].iov_max);
		close_pair(&p);
	}
}

Test(ofi_iov, limits_tcp)
{
	limits_case("tcp;ofi_rxm", "");
}

Test(ofi_iov, limits_tcp_strict)
{
	limits_case("tcp;ofi_rxm", ",strict=true");
}

Test(ofi_iov, limits_shm)
{
	limits_case("shm", "");
}

Test(ofi_iov, iov_max_out_of_range_is_refused)
{
	fq_transport *t = NULL;

	FQ_FAIL(fq_transport_open(&t, "ofi", "iov_max=17"), FQ_EINVAL);
	FQ_FAIL(fq_transport_open(&t, "ofi", "iov_max=-1"), FQ_EINVAL);
	cr_assert_null(t);
}
