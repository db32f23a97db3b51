/* The benchmark engine: see engine.h. */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- Clocks ----------------------------------------------------------------------------- */

uint64_t fqb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double fqb_cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0.0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- Parsing ---------------------------------------------------------------------------- */

int fqb_parse_size(const char *text, size_t *out)
{
	unsigned long long v, mul = 1;
	char *end;

	if (text == NULL || *text == '\0' || *text == '-' || *text == '+')
		return -1;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || end == text)
		return -1;
	switch (*end) {
	case 'k':
	case 'K':
		mul = 1ull << 10;
		break;
	case 'm':
	case 'M':
		mul = 1ull << 20;
		break;
	case 'g':
	case 'G':
		mul = 1ull << 30;
		break;
	case 't':
	case 'T':
		mul = 1ull << 40;
		break;
	case '\0':
		break;
	default:
		return -1;
	}
	if (mul != 1) {
		end++;
		if (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0)
			end += strlen(end);
	}
	if (*end != '\0' || v > SIZE_MAX / mul)
		return -1;
	*out = (size_t)(v * mul);
	return 0;
}

int fqb_parse_size_list(const char *text, size_t *out, int max)
{
	char item[64];
	int n = 0;

	for (const char *p = text;; p++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (n == max || len == 0 || len >= sizeof(item))
			return -1;
		memcpy(item, p, len);
		item[len] = '\0';
		if (fqb_parse_size(item, &out[n]) != 0)
			return -1;
		n++;
		if (comma == NULL)
			return n;
		p = comma;
	}
}

int fqb_parse_seconds(const char *text, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !(v > 0) || v > 1e6)
		return -1;
	*out = v;
	return 0;
}

const char *fqb_pattern_name(fqb_pattern p)
{
	return p == FQB_THR ? "thr" : "lat";
}

static const char *const role_names[] = {
    [FQB_ROLE_NONE] = "none",     [FQB_ROLE_SENDER] = "sender", [FQB_ROLE_RECEIVER] = "receiver",
    [FQB_ROLE_PINGER] = "pinger", [FQB_ROLE_PONGER] = "ponger",
};

const char *fqb_role_name(fqb_role r)
{
	return (unsigned)r < sizeof(role_names) / sizeof(role_names[0]) ? role_names[r] : "none";
}

int fqb_role_parse(const char *text, fqb_role *out)
{
	for (int r = FQB_ROLE_SENDER; r <= FQB_ROLE_PONGER; r++) {
		if (strcmp(text, role_names[r]) == 0) {
			*out = (fqb_role)r;
			return 0;
		}
	}
	return -1;
}

#define DEADLINE_FAST_NS  250000u  /* looks closer than this: look half as often */
#define DEADLINE_SLOW_NS  2000000u /* looks further apart than this: more often, to fit */
#define DEADLINE_STEP_MAX 65536u
#define COUNTED_STEP_MAX  1024u /* a count-bound run: how often fqb_deadline_check is called */

void fqb_deadline_start(fqb_deadline *d, const fqb_role_args *a)
{
	d->counted = a->count > 0;
	d->step = 1;
	if (d->counted && a->count / 4 > 1)
		d->step = a->count / 4 < COUNTED_STEP_MAX ? a->count / 4 : COUNTED_STEP_MAX;
	d->last_ns = fqb_now_ns();
	d->end_ns = d->last_ns + (uint64_t)(a->duration * 1e9);
	d->next = 0;
}

bool fqb_deadline_check(fqb_deadline *d, uint64_t i)
{
	uint64_t now, dt;

	d->next = i + d->step;
	if (d->counted)
		return false;
	now = fqb_now_ns();
	if (now >= d->end_ns)
		return true;
	dt = now - d->last_ns;
	d->last_ns = now;
	if (dt < DEADLINE_FAST_NS && d->step < DEADLINE_STEP_MAX)
		d->step *= 2;
	else if (dt > DEADLINE_SLOW_NS && d->step > 1)
		d->step = d->step * DEADLINE_SLOW_NS / dt > 1 ? d->step * DEADLINE_SLOW_NS / dt : 1;
	return false;
}

/* ---- Latency samples -------------------------------------------------------------------- */

int fqb_samples_init(fqb_samples *s, uint64_t count, double duration)
{
	/* A duration run: room for round trips of 10 us, the fastest seen on loopback. */
	uint64_t want = count ? count : (uint64_t)(duration * 100000) + 1024;

	s->n = 0;
	s->cap = want < (1u << 24) ? (size_t)want : (size_t)1 << 24;
	s->ns = malloc(s->cap * sizeof(*s->ns));
	if (s->ns == NULL)
		return -1;
	memset(s->ns, 0, s->cap * sizeof(*s->ns));
	return 0;
}

int fqb_samples_grow(fqb_samples *s)
{
	uint64_t *grown = realloc(s->ns, 2 * s->cap * sizeof(*s->ns));

	if (grown == NULL)
		return -1;
	memset(grown + s->cap, 0, s->cap * sizeof(*grown));
	s->ns = grown;
	s->cap *= 2;
	return 0;
}

void fqb_samples_free(fqb_samples *s)
{
	free(s->ns);
	s->ns = NULL;
	s->n = s->cap = 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest rank: the smallest sample with at least p percent of the samples at or below it. */
static uint64_t percentile(const fqb_samples *s, double p)
{
	size_t rank = (size_t)ceil(p / 100.0 * (double)s->n);

	return s->ns[rank == 0 ? 0 : rank - 1];
}

void fqb_lat_stats_compute(fqb_samples *s, fqb_lat_stats *out)
{
	double sum = 0;

	if (s->n == 0) {
		*out = (fqb_lat_stats){0, 0, 0, 0};
		return;
	}
	qsort(s->ns, s->n, sizeof(*s->ns), cmp_u64);
	for (size_t i = 0; i < s->n; i++)
		sum += (double)s->ns[i];
	/* Round trip in ns -> one way in us. */
	out->p50_us = (double)percentile(s, 50) / 2000.0;
	out->p99_us = (double)percentile(s, 99) / 2000.0;
	out->mean_us = sum / (double)s->n / 2000.0;
	out->max_us = (double)s->ns[s->n - 1] / 2000.0;
}

/* ---- Report lines ----------------------------------------------------------------------- */

void fqb_report_url(const char *url)
{
	printf("url %s\n", url);
	fflush(stdout);
}

void fqb_report_error(const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p != '\0'; p++) {
		if (*p == '\n')
			*p = ' ';
	}
	printf("error %s\n", msg);
	fflush(stdout);
	fprintf(stderr, "fq-bench: %s\n", msg);
}

/* Memory registrations of the next result line (fqb_report_mr), or none. */
static char mr_suffix[64];

void fqb_report_mr(uint64_t setup, uint64_t steady)
{
	snprintf(mr_suffix, sizeof(mr_suffix), " mr=%llu mr_steady=%llu", (unsigned long long)setup,
	         (unsigned long long)steady);
}

void fqb_report_receiver(uint64_t count, double seconds, double cpu)
{
	printf("result role=receiver count=%llu seconds=%.9f cpu=%.6f%s\n",
	       (unsigned long long)count, seconds, cpu, mr_suffix);
	fflush(stdout);
}

int fqb_receiver_end(int got, uint64_t n, uint64_t t_first, uint64_t t_end, double cpu0)
{
	if (got != 0) {
		fprintf(stderr, "fq-bench: receiver stopped after %llu messages\n",
		        (unsigned long long)n);
		return FQB_EXIT_FAILURE;
	}
	fqb_report_receiver(n, n ? (double)(t_end - t_first) / 1e9 : 0.0, fqb_cpu_seconds() - cpu0);
	return FQB_EXIT_OK;
}

void fqb_report_sender(fqb_role role, uint64_t count, double cpu)
{
	printf("result role=%s count=%llu cpu=%.6f%s\n", fqb_role_name(role),
	       (unsigned long long)count, cpu, mr_suffix);
	fflush(stdout);
}

void fqb_report_solo(uint64_t count, double seconds, double cpu)
{
	printf("result role=sender count=%llu seconds=%.9f cpu=%.6f\n", (unsigned long long)count,
	       seconds, cpu);
	fflush(stdout);
}

void fqb_report_pinger(uint64_t count, double seconds, const fqb_lat_stats *st, double cpu)
{
	printf("result role=pinger count=%llu seconds=%.9f p50=%.4f p99=%.4f mean=%.4f max=%.4f "
	       "cpu=%.6f%s\n",
	       (unsigned long long)count, seconds, st->p50_us, st->p99_us, st->mean_us, st->max_us,
	       cpu, mr_suffix);
	fflush(stdout);
}

void fqb_report_pinger_samples(fqb_samples *s, uint64_t count, uint64_t t0_ns, uint64_t last_ns,
                               double cpu0)
{
	double cpu = fqb_cpu_seconds() - cpu0;
	fqb_lat_stats st;

	fqb_lat_stats_compute(s, &st);
	fqb_report_pinger(count, (double)(last_ns - t0_ns) / 1e9, &st, cpu);
}

int fqb_role_run(const fqb_role_fns *fns, const fqb_role_args *a)
{
	int (*fn)(const fqb_role_args *) = NULL;

	switch (a->role) {
	case FQB_ROLE_SENDER:
		fn = fns->sender;
		break;
	case FQB_ROLE_RECEIVER:
		fn = fns->receiver;
		break;
	case FQB_ROLE_PINGER:
		fn = fns->pinger;
		break;
	case FQB_ROLE_PONGER:
		fn = fns->ponger;
		break;
	default:
		break;
	}
	if (fn == NULL) {
		fqb_report_error("%s", fns->why ? fns->why : "no role");
		return FQB_EXIT_USAGE;
	}
	return fn(a);
}

int fqb_parse_fd_url(const char *url, const char *scheme)
{
	size_t plen = strlen(scheme);
	char *end;
	long v;

	if (strncmp(url, scheme, plen) != 0 || strncmp(url + plen, "://", 3) != 0)
		return -1;
	url += plen + 3;
	errno = 0;
	v = strtol(url, &end, 10);
	if (errno != 0 || end == url || *end != '\0' || v < 0 || v > 65535)
		return -1;
	return (int)v;
}

int fqb_report_get(const char *line, const char *key, double *out)
{
	size_t klen = strlen(key);

	for (const char *p = line; (p = strstr(p, key)) != NULL; p += klen) {
		char *end;

		if ((p != line && p[-1] != ' ') || p[klen] != '=')
			continue;
		errno = 0;
		*out = strtod(p + klen + 1, &end);
		return (errno == 0 && end != p + klen + 1) ? 0 : -1;
	}
	return -1;
}

/* ---- Results ---------------------------------------------------------------------------- */

/* 65536 -> "64K", 1048576 -> "1M", 100 -> "100". */
static void fmt_size(char *buf, size_t len, size_t v)
{
	static const char units[] = "KMGT";
	int u = -1;

	while (v >= 1024 && v % 1024 == 0 && u < 3) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%zu", v);
	else
		snprintf(buf, len, "%zu%c", v, units[u]);
}

static void fmt_rate(char *buf, size_t len, double v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else if (v >= 1e6)
		snprintf(buf, len, "%.3fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, len, "%.2fk", v / 1e3);
	else
		snprintf(buf, len, "%.1f", v);
}

/* Decimal units: 1 MB/s = 10^6 bytes per second. */
static void fmt_bytes_rate(char *buf, size_t len, double v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else if (v >= 1e9)
		snprintf(buf, len, "%.2f GB/s", v / 1e9);
	else
		snprintf(buf, len, "%.1f MB/s", v / 1e6);
}

static void fmt_us(char *buf, size_t len, double v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else if (v >= 1000)
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%.2f", v);
}

static const struct {
	unsigned col;
	const char *name;
	int width;
} ratio_cols[] = {
    {FQB_COL_RAW, "fq/raw", 6}, {FQB_COL_NN, "fq/nn", 5},         {FQB_COL_RING, "fq/ring", 7},
    {FQB_COL_IOX, "fq/iox", 6}, {FQB_COL_FUTEX, "fq/futex", 8},   {FQB_COL_MEMSET, "/memset", 7},
    {FQB_COL_OFI, "fq/ofi", 6}, {FQB_COL_OFI_READ, "fq/read", 7},
};

static double ratio_col(const fqb_result *r, unsigned col)
{
	switch (col) {
	case FQB_COL_RAW:
		return r->ratio;
	case FQB_COL_NN:
		return r->ratio_nn;
	case FQB_COL_RING:
		return r->ratio_ring;
	case FQB_COL_IOX:
		return r->ratio_iox;
	case FQB_COL_FUTEX:
		return r->ratio_futex;
	case FQB_COL_OFI:
		return r->ratio_ofi;
	case FQB_COL_OFI_READ:
		return r->ratio_ofi_read;
	default:
		return r->ratio_memset;
	}
}

static void fmt_cpu(char *buf, size_t len, double v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.2f", v);
}

void fqb_table_header(FILE *out, unsigned cols)
{
	fprintf(out, "%-8s %-11s %-6s %-4s %6s %5s %10s %12s %8s %8s %7s %7s", "impl", "transport",
	        "scheme", "pat", "size", "parts", "msgs/s", "throughput", "p50 us", "p99 us",
	        "cpu snd", "cpu rcv");
	for (size_t i = 0; i < sizeof(ratio_cols) / sizeof(ratio_cols[0]); i++) {
		if (cols & ratio_cols[i].col)
			fprintf(out, " %*s", ratio_cols[i].width, ratio_cols[i].name);
	}
	if (cols & FQB_COL_MR)
		fprintf(out, " %s", "mr");
	fputc('\n', out);
	fflush(out);
}

void fqb_table_row(FILE *out, const fqb_result *r, unsigned cols)
{
	char size[24], rate[24], bytes[24], p50[24], p99[24], csnd[24], crcv[24];
	int blanks = 0;

	fmt_size(size, sizeof(size), r->size);
	fmt_rate(rate, sizeof(rate), r->msgs_per_s);
	fmt_bytes_rate(bytes, sizeof(bytes), r->bytes_per_s);
	fmt_us(p50, sizeof(p50), r->lat_p50_us);
	fmt_us(p99, sizeof(p99), r->lat_p99_us);
	fmt_cpu(csnd, sizeof(csnd), r->cpu_s_sender);
	fmt_cpu(crcv, sizeof(crcv), r->cpu_s_receiver);
	fprintf(out, "%-8s %-11s %-6s %-4s %6s %5zu %10s %12s %8s %8s %7s %7s", r->impl,
	        r->transport, r->url_scheme, fqb_pattern_name(r->pattern), size, r->parts, rate,
	        bytes, p50, p99, csnd, crcv);
	/* The ratio columns: left empty, without trailing blanks, where there is no ratio. */
	for (size_t i = 0; i < sizeof(ratio_cols) / sizeof(ratio_cols[0]); i++) {
		double v;

		if (!(cols & ratio_cols[i].col))
			continue;
		v = ratio_col(r, ratio_cols[i].col);
		if (v < 0) {
			blanks += 1 + ratio_cols[i].width;
			continue;
		}
		fprintf(out, "%*s %*.2f", blanks, "", ratio_cols[i].width, v);
		blanks = 0;
	}
	/* Registrations: at set-up + in the timed loop (ofi rows). */
	if ((cols & FQB_COL_MR) && r->mr_setup >= 0)
		fprintf(out, "%*s %.0f+%.0f", blanks, "", r->mr_setup, r->mr_steady);
	fputc('\n', out);
	fflush(out);
}

static void json_str(FILE *out, const char *key, const char *v)
{
	fprintf(out, "\"%s\":\"", key);
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

/* A number, or null where the field does not apply (never NaN or infinity: not JSON). */
static void json_num(FILE *out, const char *key, double v, const char *fmt)
{
	fprintf(out, ",\"%s\":", key);
	if (v < 0 || isnan(v) || isinf(v))
		fputs("null", out);
	else
		fprintf(out, fmt, v);
}

void fqb_json_row(FILE *out, const fqb_result *r)
{
	fputc('{', out);
	json_str(out, "impl", r->impl);
	fputc(',', out);
	json_str(out, "transport", r->transport);
	fputc(',', out);
	json_str(out, "pattern", fqb_pattern_name(r->pattern));
	fputc(',', out);
	json_str(out, "url_scheme", r->url_scheme);
	fprintf(out, ",\"size\":%zu,\"parts\":%zu,\"zero_copy\":%s,\"memset\":%s,\"count\":%llu",
	        r->size, r->parts, r->zero_copy ? "true" : "false", r->fill ? "true" : "false",
	        (unsigned long long)r->count);
	json_num(out, "seconds", r->seconds, "%.6f");
	json_num(out, "msgs_per_s", r->msgs_per_s, "%.1f");
	json_num(out, "bytes_per_s", r->bytes_per_s, "%.1f");
	json_num(out, "lat_p50_us", r->lat_p50_us, "%.3f");
	json_num(out, "lat_p99_us", r->lat_p99_us, "%.3f");
	json_num(out, "lat_mean_us", r->lat_mean_us, "%.3f");
	json_num(out, "lat_max_us", r->lat_max_us, "%.3f");
	json_num(out, "cpu_s_sender", r->cpu_s_sender, "%.4f");
	json_num(out, "cpu_s_receiver", r->cpu_s_receiver, "%.4f");
	if (r->ratio >= 0)
		json_num(out, "ratio_vs_raw", r->ratio, "%.4f");
	if (r->ratio_nn >= 0)
		json_num(out, "ratio_vs_nanomsg", r->ratio_nn, "%.4f");
	if (r->ratio_ring >= 0)
		json_num(out, "ratio_vs_ring", r->ratio_ring, "%.4f");
	if (r->ratio_iox >= 0)
		json_num(out, "ratio_vs_iceoryx", r->ratio_iox, "%.4f");
	if (r->ratio_futex >= 0)
		json_num(out, "ratio_vs_futex", r->ratio_futex, "%.4f");
	if (r->ratio_memset >= 0)
		json_num(out, "ratio_vs_memset", r->ratio_memset, "%.4f");
	if (r->ratio_ofi >= 0)
		json_num(out, "ratio_vs_ofi", r->ratio_ofi, "%.4f");
	if (r->ratio_ofi_read >= 0)
		json_num(out, "ratio_vs_ofi_read", r->ratio_ofi_read, "%.4f");
	if (r->mr_setup >= 0) {
		json_num(out, "mr_regs", r->mr_setup, "%.0f");
		json_num(out, "mr_regs_steady", r->mr_steady, "%.0f");
	}
	fputs("}\n", out);
	fflush(out);
}

/* ---- Child processes -------------------------------------------------------------------- */

int fqb_pin_cpu(int cpu)
{
	cpu_set_t set;

	if (cpu < 0 || cpu >= CPU_SETSIZE) {
		errno = EINVAL;
		return -1;
	}
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

void fqb_hold_wait(int timeout_ms)
{
	struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
	uint64_t deadline = fqb_now_ns() + (uint64_t)timeout_ms * 1000000u;
	char buf[64];

	for (;;) {
		uint64_t now = fqb_now_ns();
		int rc;

		if (now >= deadline)
			return;
		rc = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0 || (pfd.revents & (POLLERR | POLLNVAL)))
			return;
		if (read(STDIN_FILENO, buf, sizeof(buf)) <= 0)
			return; /* EOF: released */
	}
}

int fqb_child_spawn(fqb_child *c, const char *name, const char *exe, char *const argv[], int cpu,
                    bool hold, int keep_fd)
{
	pid_t parent = getpid();
	int fds[2], hold_fds[2] = {-1, -1};

	memset(c, 0, sizeof(*c));
	c->name = name;
	c->fd = -1;
	c->hold_fd = -1;
	c->pid = -1;
	if (pipe2(fds, O_CLOEXEC) != 0) {
		fprintf(stderr, "fq-bench: pipe: %s\n", strerror(errno));
		return -1;
	}
	if (hold && pipe2(hold_fds, O_CLOEXEC) != 0) {
		fprintf(stderr, "fq-bench: pipe: %s\n", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	fflush(NULL);
	c->pid = fork();
	if (c->pid < 0) {
		fprintf(stderr, "fq-bench: fork: %s\n", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		if (hold) {
			close(hold_fds[0]);
			close(hold_fds[1]);
		}
		return -1;
	}
	if (c->pid == 0) {
		/* Never outlive the parent, even if it is killed. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (dup2(fds[1], STDOUT_FILENO) < 0)
			_exit(127);
		if (hold && dup2(hold_fds[0], STDIN_FILENO) < 0)
			_exit(127);
		if (keep_fd >= 0 && fcntl(keep_fd, F_SETFD, 0) != 0)
			_exit(127);
		if (cpu >= 0 && fqb_pin_cpu(cpu) != 0) {
			fprintf(stderr, "fq-bench: cannot pin to CPU %d: %s\n", cpu,
			        strerror(errno));
			_exit(1);
		}
		execv(exe, argv);
		fprintf(stderr, "fq-bench: exec %s: %s\n", exe, strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	c->fd = fds[0];
	if (hold) {
		close(hold_fds[0]);
		c->hold_fd = hold_fds[1];
	}
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	return 0;
}

static void copy_line(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src);
}

static void handle_line(fqb_child *c, char *line)
{
	if (strncmp(line, "url ", 4) == 0) {
		copy_line(c->url, sizeof(c->url), line + 4);
		c->has_url = true;
	} else if (strncmp(line, "result ", 7) == 0) {
		copy_line(c->result, sizeof(c->result), line + 7);
		c->has_result = true;
	} else if (strncmp(line, "error ", 6) == 0) {
		copy_line(c->error, sizeof(c->error), line + 6);
	}
}

/* Read what is there; split lines. Closes the fd at EOF or on error. */
static void child_read(fqb_child *c)
{
	for (;;) {
		ssize_t got;
		char *nl;

		if (c->len == sizeof(c->buf) - 1)
			c->len = 0; /* an over-long line: not ours, drop it */
		got = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (got <= 0) {
			close(c->fd);
			c->fd = -1;
			return;
		}
		c->len += (size_t)got;
		c->buf[c->len] = '\0';
		while ((nl = strchr(c->buf, '\n')) != NULL) {
			*nl = '\0';
			handle_line(c, c->buf);
			c->len -= (size_t)(nl + 1 - c->buf);
			memmove(c->buf, nl + 1, c->len + 1);
		}
	}
}

static int remaining_ms(uint64_t deadline_ns)
{
	uint64_t now = fqb_now_ns();

	if (now >= deadline_ns)
		return 0;
	return (int)((deadline_ns - now + 999999) / 1000000);
}

bool fqb_child_wait_url(fqb_child *c, uint64_t deadline_ns)
{
	while (!c->has_url && c->fd >= 0) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		int left = remaining_ms(deadline_ns);

		if (left == 0)
			return false;
		if (poll(&pfd, 1, left) < 0 && errno != EINTR)
			return false;
		if (pfd.revents)
			child_read(c);
	}
	return c->has_url;
}

static void child_release(fqb_child *c)
{
	if (c->hold_fd >= 0) {
		close(c->hold_fd);
		c->hold_fd = -1;
	}
}

void fqb_child_kill(fqb_child *c)
{
	child_release(c);
	if (c->pid > 0 && !c->reaped) {
		c->killed = true;
		kill(c->pid, SIGKILL);
		while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR)
			;
		c->reaped = true;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

void fqb_child_explain(const fqb_child *c)
{
	if (c->error[0] != '\0')
		fprintf(stderr, "fq-bench: %s: %s\n", c->name, c->error);
	else if (c->killed || c->pid <= 0 || !c->reaped)
		return;
	else if (WIFSIGNALED(c->status))
		fprintf(stderr, "fq-bench: %s died of signal %d (%s)\n", c->name,
		        WTERMSIG(c->status), strsignal(WTERMSIG(c->status)));
	else if (WIFEXITED(c->status) && WEXITSTATUS(c->status) != 0)
		fprintf(stderr, "fq-bench: %s exited with status %d\n", c->name,
		        WEXITSTATUS(c->status));
	else if (!c->has_result)
		fprintf(stderr, "fq-bench: %s exited without a result\n", c->name);
}

/* Reap without waiting; true if the child is gone. */
static bool child_reap(fqb_child *c)
{
	if (c->pid > 0 && !c->reaped) {
		pid_t got = waitpid(c->pid, &c->status, WNOHANG);

		if (got == c->pid || (got < 0 && errno == ECHILD))
			c->reaped = true;
	}
	return c->reaped;
}

static bool child_failed(const fqb_child *c)
{
	return c->reaped && c->fd < 0 &&
	       (!WIFEXITED(c->status) || WEXITSTATUS(c->status) != 0 || !c->has_result);
}

bool fqb_children_finish(fqb_child *c, size_t n, uint64_t deadline_ns)
{
	struct pollfd pfd[8];
	bool ok = true;

	if (n > sizeof(pfd) / sizeof(pfd[0]))
		return false;
	for (;;) {
		size_t open = 0, gone = 0;
		int left = remaining_ms(deadline_ns);

		for (size_t i = 0; i < n; i++) {
			if (c[i].fd < 0 && child_reap(&c[i]))
				gone++;
			if (child_failed(&c[i]))
				ok = false;
		}
		if (gone == n) {
			for (size_t i = 0; i < n; i++)
				child_release(&c[i]);
			return ok;
		}
		if (!ok || left == 0) {
			for (size_t i = 0; i < n; i++) {
				if (!c[i].reaped && left == 0)
					fprintf(stderr,
					        "fq-bench: %s still running at the deadline: "
					        "killed\n",
					        c[i].name);
				fqb_child_kill(&c[i]);
			}
			return false;
		}
		for (size_t i = 0; i < n; i++) {
			if (c[i].fd >= 0)
				pfd[open++] = (struct pollfd){.fd = c[i].fd, .events = POLLIN};
		}
		/* With every pipe closed, only exits are awaited: look again shortly. */
		if (poll(pfd, open, open ? left : (left < 5 ? left : 5)) < 0 && errno != EINTR)
			ok = false;
		for (size_t i = 0; i < n; i++) {
			if (c[i].fd >= 0)
				child_read(&c[i]);
		}
		/* A child that reported its result (a receiver) or left releases the held ones. */
		for (size_t i = 0; i < n; i++) {
			if (c[i].has_result || c[i].fd < 0) {
				for (size_t j = 0; j < n; j++) {
					if (j != i)
						child_release(&c[j]);
				}
			}
		}
	}
}
