/*
 * Futex ping-pong baseline of fq-bench lat (see baseline_futex.h): the floor of a blocking
 * wake-up between two processes, what any transport pays per hop when the receiver sleeps in
 * the kernel instead of polling.
 *
 * One page of the memfd the parent created (inherited as "memfd://FD") holds a magic number,
 * written last by the binding side (the ponger), a stop flag and the word the two sides take
 * turns on. The word counts hops: the pinger turns an even value v into v + 1 and wakes the
 * ponger, the ponger turns v + 1 into v + 2 and wakes the pinger. Each side, after its own
 * store and FUTEX_WAKE, looks at the word once and, while it still holds the value it wrote,
 * sleeps in FUTEX_WAIT on that value: no spinning, so every hop is one wake-up of a sleeping
 * process. The futexes are shared ones (not FUTEX_PRIVATE_FLAG): the two sides are separate
 * processes. A wait sleeps 100 ms at most and then looks at the clock, so a silent peer ends
 * the run after the role's timeout. The pinger ends the run by setting the stop flag before
 * its last hop. No payload moves: the row is measured once per run and shows size 0.
 */
#include "baseline_futex.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FUTEX_MAGIC   0x5845545542514631ULL /* "1FQBUTEX" */
#define FUTEX_PAGE    4096u
#define WARMUP        100 /* round trips before the timed ones, as the other roles */
#define WAIT_SLICE_NS 100000000L

typedef struct futex_page {
	_Atomic uint64_t magic;
	_Atomic uint32_t stop;
	_Atomic uint32_t word; /* hops so far */
} futex_page;

int fqb_futex_create(void)
{
	return memfd_create("fq-bench-futex", MFD_CLOEXEC);
}

static int parse_fd(const char *url)
{
	return fqb_parse_fd_url(url, FQB_FUTEX_SCHEME);
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

static void wake(futex_page *f)
{
	futex(&f->word, FUTEX_WAKE, 1, NULL);
}

/*
 * Sleep until the word is no longer `mine` (the value this side wrote last). Returns the new
 * value, or -1 when the peer stayed silent for timeout_ms.
 */
static int64_t wait_turn(futex_page *f, uint32_t mine, int timeout_ms)
{
	const struct timespec slice = {.tv_sec = 0, .tv_nsec = WAIT_SLICE_NS};
	uint64_t deadline = 0;

	for (;;) {
		uint32_t v = atomic_load_explicit(&f->word, memory_order_acquire);

		if (v != mine)
			return v;
		if (futex(&f->word, FUTEX_WAIT, mine, &slice) != 0 && errno == ETIMEDOUT) {
			uint64_t now = fqb_now_ns();

			if (deadline == 0)
				deadline = now + (uint64_t)timeout_ms * 1000000u;
			else if (now >= deadline)
				return -1;
		}
	}
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Map the page of a->url; the binding side sizes and initialises it. NULL on error. */
static futex_page *open_page(const fqb_role_args *a, int *fd_out)
{
	uint64_t deadline = fqb_now_ns() + (uint64_t)a->timeout_ms * 1000000u;
	int fd = parse_fd(a->url);
	futex_page *f;
	struct stat st;

	*fd_out = -1;
	if (fd < 0) {
		fqb_report_error("futex: bad url '%s' (%s://FD, an inherited descriptor)", a->url,
		                 FQB_FUTEX_SCHEME);
		return NULL;
	}
	if (a->bind) {
		if (ftruncate(fd, 0) != 0 || ftruncate(fd, FUTEX_PAGE) != 0) {
			fqb_report_error("futex: sizing %s: %s", a->url, strerror(errno));
			close(fd);
			return NULL;
		}
	} else {
		for (;;) {
			if (fstat(fd, &st) != 0) {
				fqb_report_error("futex: %s: %s", a->url, strerror(errno));
				close(fd);
				return NULL;
			}
			if (st.st_size >= (off_t)FUTEX_PAGE)
				break;
			if (fqb_now_ns() >= deadline) {
				fqb_report_error("futex: the binding side never sized %s", a->url);
				close(fd);
				return NULL;
			}
			sleep_ms(1);
		}
	}
	f = mmap(NULL, FUTEX_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (f == MAP_FAILED) {
		fqb_report_error("futex: mmap: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	*fd_out = fd;
	if (a->bind) {
		atomic_store_explicit(&f->stop, 0, memory_order_relaxed);
		atomic_store_explicit(&f->word, 0, memory_order_relaxed);
		atomic_store_explicit(&f->magic, FUTEX_MAGIC, memory_order_release);
		fqb_report_url(a->url);
		return f;
	}
	while (atomic_load_explicit(&f->magic, memory_order_acquire) != FUTEX_MAGIC) {
		if (fqb_now_ns() >= deadline) {
			fqb_report_error("futex: the binding side never laid out %s", a->url);
			munmap(f, FUTEX_PAGE);
			close(fd);
			*fd_out = -1;
			return NULL;
		}
		sleep_ms(1);
	}
	return f;
}

static void close_page(futex_page *f, int fd)
{
	if (f != NULL)
		munmap(f, FUTEX_PAGE);
	if (fd >= 0)
		close(fd);
}

/* One round trip from the pinger's side: hop `*v` -> `*v + 1`, wait for `*v + 2`. */
static int round_trip(futex_page *f, uint32_t *v, int timeout_ms)
{
	int64_t got;

	atomic_store_explicit(&f->word, *v + 1, memory_order_release);
	wake(f);
	got = wait_turn(f, *v + 1, timeout_ms);
	if (got < 0) {
		fqb_report_error("futex: the ponger went silent");
		return -1;
	}
	if ((uint32_t)got != *v + 2) {
		fqb_report_error("futex: unexpected word %lld, expected %u", (long long)got,
		                 *v + 2);
		return -1;
	}
	*v += 2;
	return 0;
}

static int pinger(const fqb_role_args *a)
{
	fqb_samples samples = {0};
	uint64_t t0, prev, end_ns = UINT64_MAX, n = 0;
	int lap;
	uint32_t v = 0;
	int fd, rc = FQB_EXIT_FAILURE;
	futex_page *f;
	double cpu0;

	if (fqb_samples_init(&samples, a->count, a->duration) != 0) {
		fqb_report_error("out of memory for latency samples");
		return FQB_EXIT_FAILURE;
	}
	f = open_page(a, &fd);
	if (f == NULL) {
		fqb_samples_free(&samples);
		return FQB_EXIT_FAILURE;
	}
	for (int w = 0; w < WARMUP; w++) {
		if (round_trip(f, &v, a->timeout_ms) != 0)
			goto out;
	}
	cpu0 = fqb_cpu_seconds();
	t0 = prev = fqb_now_ns();
	if (a->count == 0)
		end_ns = t0 + (uint64_t)(a->duration * 1e9);
	while (a->count == 0 || n < a->count) {
		if (round_trip(f, &v, a->timeout_ms) != 0)
			goto out;
		lap = fqb_lap(&samples, &prev, &n, end_ns);
		if (lap < 0)
			goto out;
		if (lap > 0)
			break;
	}
	/* The end: the stop flag, then a last hop that wakes the ponger to see it. */
	atomic_store_explicit(&f->stop, 1, memory_order_relaxed);
	atomic_store_explicit(&f->word, v + 1, memory_order_release);
	wake(f);
	if (a->hold)
		fqb_hold_wait(a->timeout_ms);
	fqb_report_pinger_samples(&samples, n, t0, prev, cpu0);
	rc = FQB_EXIT_OK;
out:
	close_page(f, fd);
	fqb_samples_free(&samples);
	return rc;
}

static int ponger(const fqb_role_args *a)
{
	uint64_t n = 0;
	uint32_t v = 0;
	int fd, rc = FQB_EXIT_FAILURE;
	futex_page *f;
	double cpu0;

	f = open_page(a, &fd);
	if (f == NULL)
		return FQB_EXIT_FAILURE;
	cpu0 = fqb_cpu_seconds();
	for (;;) {
		int64_t got = wait_turn(f, v, a->timeout_ms);

		if (got < 0) {
			fqb_report_error("futex: the pinger went silent");
			goto out;
		}
		if ((uint32_t)got != v + 1) {
			fqb_report_error("futex: unexpected word %lld, expected %u", (long long)got,
			                 v + 1);
			goto out;
		}
		if (atomic_load_explicit(&f->stop, memory_order_relaxed))
			break;
		v += 2;
		atomic_store_explicit(&f->word, v, memory_order_release);
		wake(f);
		n++;
	}
	fqb_report_sender(FQB_ROLE_PONGER, n, fqb_cpu_seconds() - cpu0);
	rc = FQB_EXIT_OK;
out:
	close_page(f, fd);
	return rc;
}

int fqb_futex_role(const fqb_role_args *a)
{
	static const fqb_role_fns fns = {NULL, NULL, pinger, ponger,
	                                 "futex: lat only (--role pinger or ponger)"};

	return fqb_role_run(&fns, a);
}
