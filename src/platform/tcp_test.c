/*
 * TCP sockets with smc=off|try|require: what each mode makes, the fallback on a kernel without
 * SMC (this CI machine), the clear error of require, and injected failures of the SMC socket()
 * call. Whatever the mode, the socket must still work as TCP over loopback.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tcp.h"

/* ---- Helpers ---------------------------------------------------------------------------- */

static void quiet(void)
{
	fq_log_set_level(FQ_LOG_NONE);
	fqi_smc_inject_failure(0);
}

TestSuite(tcp, .init = quiet, .timeout = 30);

/* Is SMC offered here without injection? (Decides what try and require must give.) */
static bool smc_here(void)
{
	int rc = fqi_smc_available();

	cr_assert(rc == 0 || rc == FQ_EUNAVAIL, "probe failed: %s", fq_strerror(rc));
	return rc == 0;
}

/*
 * Use `lfd` (from fqi_tcp_socket) as a listener on loopback and connect a plain TCP client
 * to it; a byte must pass both ways. Closes lfd.
 */
static void loopback_roundtrip(int lfd, int family)
{
	struct sockaddr_storage sa = {0};
	socklen_t len;
	int cfd, afd;
	char c = 0;

	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;

		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*s4);
	}
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, len), 0, "bind: %s", strerror(errno));
	cr_assert_eq(listen(lfd, 4), 0, "listen: %s", strerror(errno));
	len = sizeof(sa);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	cfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(cfd >= 0);
	cr_assert_eq(connect(cfd, (struct sockaddr *)&sa, len), 0, "connect: %s", strerror(errno));
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert(afd >= 0, "accept: %s", strerror(errno));
	cr_assert_eq(write(cfd, "x", 1), 1);
	cr_assert_eq(read(afd, &c, 1), 1);
	cr_assert_eq(c, 'x');
	cr_assert_eq(write(afd, "y", 1), 1);
	cr_assert_eq(read(cfd, &c, 1), 1);
	cr_assert_eq(c, 'y');
	close(afd);
	close(cfd);
	close(lfd);
}

/* The socket's domain and protocol, as the kernel reports them. */
static void expect_plain_tcp(int fd, int family)
{
	int v = -1;
	socklen_t len = sizeof(v);

	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len), 0);
	cr_assert_eq(v, family, "domain %d, expected %d", v, family);
	len = sizeof(v);
	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len), 0);
	cr_assert_eq(v, IPPROTO_TCP, "protocol %d, expected TCP", v);
}

/* Log lines, collected by a handler (the library's own sink is replaced). */
static char log_text[4096];

static void collect(fq_log_level level, const char *subsys, const char *msg, void *arg)
{
	size_t used = strlen(log_text);

	(void)arg;
	snprintf(log_text + used, sizeof(log_text) - used, "%d [%s] %s\n", (int)level, subsys, msg);
}

static void collect_logs(fq_log_level level)
{
	log_text[0] = '\0';
	fq_log_set_handler(collect, NULL);
	fq_log_set_level(level);
}

/* ---- Tests ------------------------------------------------------------------------------ */

Test(tcp, modes_parse, .description = "off|try|require and nothing else")
{
	fqi_smc_mode m = FQI_SMC_TRY;

	cr_assert_eq(fqi_smc_mode_parse("off", &m), 0);
	cr_assert_eq(m, FQI_SMC_OFF);
	cr_assert_eq(fqi_smc_mode_parse("TRY", &m), 0);
	cr_assert_eq(m, FQI_SMC_TRY);
	cr_assert_eq(fqi_smc_mode_parse("require", &m), 0);
	cr_assert_eq(m, FQI_SMC_REQUIRE);
	cr_assert_eq(fqi_smc_mode_parse("2", &m), 0);
	cr_assert_eq(m, FQI_SMC_REQUIRE);
	m = FQI_SMC_TRY;
	cr_assert_eq(fqi_smc_mode_parse("on", &m), FQ_EINVAL);
	cr_assert_eq(fqi_smc_mode_parse("", &m), FQ_EINVAL);
	cr_assert_eq(fqi_smc_mode_parse("3", &m), FQ_EINVAL);
	cr_assert_eq(fqi_smc_mode_parse(NULL, &m), FQ_EINVAL);
	cr_assert_eq(m, FQI_SMC_TRY, "a refused value changed the output");
	cr_assert_str_eq(fqi_smc_mode_name(FQI_SMC_REQUIRE), "require");
	cr_assert_str_eq(fqi_tcp_kind_name(FQI_TCP_IPPROTO_SMC), "ipproto_smc");
}

Test(tcp, bad_arguments, .description = "only AF_INET/AF_INET6 and known modes")
{
	int fd = -7;

	cr_assert_eq(fqi_tcp_socket(AF_UNIX, 0, FQI_SMC_OFF, NULL, &fd), FQ_EINVAL);
	cr_assert_eq(fqi_tcp_socket(AF_INET, 0, (fqi_smc_mode)3, NULL, &fd), FQ_EINVAL);
	cr_assert_eq(fqi_tcp_socket(AF_INET, 0, FQI_SMC_OFF, NULL, NULL), FQ_EINVAL);
	cr_assert_eq(fd, -7);
}

Test(tcp, off_is_plain_tcp, .description = "smc=off makes a TCP socket, even with SMC broken")
{
	int fd = -1;

	fqi_smc_inject_failure(EMFILE); /* off never asks for SMC, so never sees this */
	cr_assert_eq(fqi_tcp_socket(AF_INET, SOCK_CLOEXEC, FQI_SMC_OFF, "test", &fd),
	             FQI_TCP_PLAIN);
	expect_plain_tcp(fd, AF_INET);
	loopback_roundtrip(fd, AF_INET);
}

Test(tcp, try_falls_back_and_connects,
     .description = "smc=try gives TCP where the kernel has no SMC; it works over loopback")
{
	bool smc = smc_here();
	int fd = -1, kind;

	collect_logs(FQ_LOG_DEBUG);
	kind = fqi_tcp_socket(AF_INET, SOCK_CLOEXEC, FQI_SMC_TRY, "test listener", &fd);
	cr_assert(kind >= 0, "try failed: %s", fq_strerror(kind));
	if (smc) {
		cr_assert(kind == FQI_TCP_AF_SMC || kind == FQI_TCP_IPPROTO_SMC);
		cr_assert(strstr(log_text, "made an SMC socket") != NULL, "log: %s", log_text);
	} else {
		cr_assert_eq(kind, FQI_TCP_PLAIN);
		expect_plain_tcp(fd, AF_INET);
		cr_assert(strstr(log_text, "test listener: smc=try, no SMC here") != NULL,
		          "the fallback was not logged at debug level: %s", log_text);
	}
	/* An SMC socket falls back to TCP by itself against a TCP peer: loopback works too. */
	loopback_roundtrip(fd, AF_INET);
	fq_log_set_handler(NULL, NULL);
}

Test(tcp, try_ipv6, .description = "smc=try for AF_INET6 (SMCPROTO_SMC6), over ::1")
{
	int fd = -1, kind, probe = socket(AF_INET6, SOCK_STREAM, 0);

	if (probe < 0)
		cr_skip_test("no IPv6 here: %s", strerror(errno));
	close(probe);
	kind = fqi_tcp_socket(AF_INET6, SOCK_CLOEXEC, FQI_SMC_TRY, NULL, &fd);
	cr_assert(kind >= 0, "try failed: %s", fq_strerror(kind));
	if (!smc_here())
		expect_plain_tcp(fd, AF_INET6);
	loopback_roundtrip(fd, AF_INET6);
}

Test(tcp, require_fails_clearly,
     .description = "smc=require without SMC: FQ_EUNAVAIL, logged with the reasons")
{
	int fd = -7, rc;

	if (smc_here())
		fqi_smc_inject_failure(EAFNOSUPPORT); /* make this machine look like CI */
	collect_logs(FQ_LOG_ERROR);
	rc = fqi_tcp_socket(AF_INET, SOCK_CLOEXEC, FQI_SMC_REQUIRE, "test listener", &fd);
	cr_assert_eq(rc, FQ_EUNAVAIL, "got %s", fq_err_name(rc));
	cr_assert_eq(fd, -7, "a failed call set the descriptor");
	cr_assert(strstr(log_text, "test listener: smc=require, but this kernel offers no SMC") !=
	              NULL,
	          "no clear error in the log: %s", log_text);
	cr_assert(strstr(log_text, "AF_SMC: ") != NULL && strstr(log_text, "IPPROTO_SMC: "),
	          "the reasons are missing: %s", log_text);
	cr_assert_eq(fqi_smc_available(), FQ_EUNAVAIL);
	cr_assert_eq(fq_smc_probe(), FQ_EUNAVAIL);
	fq_log_set_handler(NULL, NULL);
}

Test(tcp, probe_matches_the_kernel, .description = "fq_smc_probe agrees with socket(AF_SMC)")
{
	int fd = socket(43 /* AF_SMC */, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int fd2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 256 /* IPPROTO_SMC */);
	bool kernel_has = fd >= 0 || fd2 >= 0;

	if (fd >= 0)
		close(fd);
	if (fd2 >= 0)
		close(fd2);
	cr_assert_eq(fq_smc_probe(), kernel_has ? 0 : FQ_EUNAVAIL);
}

/* Parameters: the errnos by which a kernel or a sandbox says "no SMC". */
ParameterizedTestParameters(tcp, injected_unsupported)
{
	static int errs[] = {EAFNOSUPPORT, EPROTONOSUPPORT, EPERM, EINVAL};

	return cr_make_param_array(int, errs, sizeof(errs) / sizeof(errs[0]));
}

ParameterizedTest(int *err, tcp, injected_unsupported,
                  .description = "an SMC socket() refused as unsupported: try falls back, "
                                 "require fails with FQ_EUNAVAIL")
{
	int fd = -1;

	fqi_smc_inject_failure(*err);
	cr_assert_eq(fqi_tcp_socket(AF_INET, SOCK_CLOEXEC, FQI_SMC_TRY, NULL, &fd), FQI_TCP_PLAIN);
	expect_plain_tcp(fd, AF_INET);
	loopback_roundtrip(fd, AF_INET);
	fd = -7;
	cr_assert_eq(fqi_tcp_socket(AF_INET, SOCK_CLOEXEC, FQI_SMC_REQUIRE, NULL, &fd),
	             FQ_EUNAVAIL);
	cr_assert_eq(fd, -7);
	cr_assert_eq(fq_smc_probe(), FQ_EUNAVAIL);
}

Test(tcp, injected_other_error,
     .description = "an SMC socket() failing otherwise (EMFILE) is returned, not hidden")
{
	int fd = -7, want = FQ_ESYS_BASE - EMFILE;

	fqi_smc_inject_failure(EMFILE);
	cr_assert_eq(fqi_tcp_socket(AF_INET, SOCK_CLOEXEC, FQI_SMC_TRY, NULL, &fd), want);
	cr_assert_eq(fqi_tcp_socket(AF_INET, SOCK_CLOEXEC, FQI_SMC_REQUIRE, NULL, &fd), want);
	cr_assert_eq(fd, -7);
	cr_assert_eq(fq_smc_probe(), want);
	cr_assert(FQ_IS_SYSERR(want) && FQ_SYSERR_ERRNO(want) == EMFILE);
	fqi_smc_inject_failure(0);
	cr_assert_eq(fqi_tcp_socket(AF_INET, SOCK_CLOEXEC, FQI_SMC_TRY, NULL, &fd) >= 0, true,
	             "clearing the hook did not restore the real calls");
	close(fd);
}
