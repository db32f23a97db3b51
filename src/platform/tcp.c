/* TCP stream sockets, optionally SMC (platform/tcp.h). */
#include "platform/tcp.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define SUBSYS "tcp"

/* Linux values (include/linux/socket.h, net/smc/smc.h, include/uapi/linux/in.h); older C
 * libraries lack the names. */
#ifndef AF_SMC
#define AF_SMC 43
#endif
#ifndef SMCPROTO_SMC
#define SMCPROTO_SMC 0
#endif
#ifndef SMCPROTO_SMC6
#define SMCPROTO_SMC6 1
#endif
#ifndef IPPROTO_SMC
#define IPPROTO_SMC 256
#endif

static _Atomic int inject_errno;

__attribute__((constructor)) static void inject_init_from_env(void)
{
	const char *env = getenv("FQ_SMC_INJECT_ERRNO");

	if (env != NULL && *env != '\0')
		atomic_store(&inject_errno, atoi(env));
}

void fqi_smc_inject_failure(int errnum)
{
	atomic_store(&inject_errno, errnum);
}

static const char *const mode_names[] = {"off", "try", "require"};
static const char *const kind_names[] = {"tcp", "af_smc", "ipproto_smc"};

int fqi_smc_mode_parse(const char *text, fqi_smc_mode *out)
{
	if (text == NULL || out == NULL)
		return FQ_EINVAL;
	for (size_t i = 0; i < FQI_ARRAY_LEN(mode_names); i++) {
		char digit[2] = {(char)('0' + i), '\0'};

		if (strcasecmp(text, mode_names[i]) == 0 || strcmp(text, digit) == 0) {
			*out = (fqi_smc_mode)i;
			return 0;
		}
	}
	return FQ_EINVAL;
}

const char *fqi_smc_mode_name(fqi_smc_mode mode)
{
	return (unsigned)mode < FQI_ARRAY_LEN(mode_names) ? mode_names[mode] : "?";
}

const char *fqi_tcp_kind_name(fqi_tcp_kind kind)
{
	return (unsigned)kind < FQI_ARRAY_LEN(kind_names) ? kind_names[kind] : "?";
}

/* The errors by which a kernel (or a sandbox) says "no SMC here": try falls back on them. */
static bool smc_unsupported(int e)
{
	return e == EAFNOSUPPORT || e == EPROTONOSUPPORT || e == EPERM || e == EINVAL;
}

/* One SMC socket() attempt, through the test hook. Returns the fd or -1 with errno set. */
static int smc_socket(int domain, int type, int protocol)
{
	int e = atomic_load(&inject_errno);

	if (e != 0) {
		errno = e;
		return -1;
	}
	return socket(domain, type, protocol);
}

/*
 * The two ways to an SMC socket, in order. Returns the kind (> 0) with *fd_out set, or -1
 * with the two errnos in why[] (0 where that attempt was not made).
 */
static int smc_open(int family, int flags, int *fd_out, int why[2])
{
	int fd;

	why[0] = why[1] = 0;
	fd = smc_socket(AF_SMC, SOCK_STREAM | flags,
	                family == AF_INET6 ? SMCPROTO_SMC6 : SMCPROTO_SMC);
	if (fd >= 0) {
		*fd_out = fd;
		return FQI_TCP_AF_SMC;
	}
	why[0] = errno;
	if (!smc_unsupported(why[0]))
		return -1;
	fd = smc_socket(family, SOCK_STREAM | flags, IPPROTO_SMC);
	if (fd >= 0) {
		*fd_out = fd;
		return FQI_TCP_IPPROTO_SMC;
	}
	why[1] = errno;
	return -1;
}

int fqi_tcp_socket(int family, int flags, fqi_smc_mode mode, const char *what, int *fd_out)
{
	int why[2], kind, fd;

	if ((family != AF_INET && family != AF_INET6) || fd_out == NULL ||
	    (unsigned)mode >= FQI_ARRAY_LEN(mode_names))
		return FQ_EINVAL;
	if (what == NULL)
		what = "tcp socket";
	if (mode != FQI_SMC_OFF) {
		kind = smc_open(family, flags, &fd, why);
		if (kind > 0) {
			FQI_DEBUG(SUBSYS, "%s: smc=%s, made an SMC socket (%s)", what,
			          fqi_smc_mode_name(mode), fqi_tcp_kind_name((fqi_tcp_kind)kind));
			*fd_out = fd;
			return kind;
		}
		/* Out of descriptors, memory...: a plain socket would not do better. */
		if (!smc_unsupported(why[0]) || !smc_unsupported(why[1])) {
			int e = smc_unsupported(why[0]) ? why[1] : why[0];

			FQI_DEBUG(SUBSYS, "%s: SMC socket: %s", what, strerror(e));
			return fqi_syserr(e);
		}
		if (mode == FQI_SMC_REQUIRE) {
			FQI_ERROR(SUBSYS,
			          "%s: smc=require, but this kernel offers no SMC (AF_SMC: %s; "
			          "IPPROTO_SMC: %s; is the smc module loaded?)",
			          what, strerror(why[0]), strerror(why[1]));
			return FQ_EUNAVAIL;
		}
		FQI_DEBUG(SUBSYS, "%s: smc=try, no SMC here (AF_SMC: %s; IPPROTO_SMC: %s): TCP",
		          what, strerror(why[0]), strerror(why[1]));
	}
	fd = socket(family, SOCK_STREAM | flags, 0);
	if (fd < 0)
		return fqi_syserr(errno);
	if (mode == FQI_SMC_OFF)
		FQI_DEBUG(SUBSYS, "%s: smc=off, TCP socket", what);
	*fd_out = fd;
	return FQI_TCP_PLAIN;
}

int fqi_smc_available(void)
{
	int why[2], fd;

	if (smc_open(AF_INET, SOCK_CLOEXEC, &fd, why) > 0) {
		close(fd);
		return 0;
	}
	if (!smc_unsupported(why[0]))
		return fqi_syserr(why[0]);
	if (!smc_unsupported(why[1]))
		return fqi_syserr(why[1]);
	return FQ_EUNAVAIL;
}

int fq_smc_probe(void)
{
	return fqi_smc_available();
}
