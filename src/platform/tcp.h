/*
 * TCP stream sockets that fabriq opens itself, optionally as SMC (RFC 7609: SMC-R over RoCE,
 * SMC-D over ISM). An SMC socket starts as TCP, negotiates SMC in the handshake and falls
 * back to TCP on its own when the peer or the path cannot do it; after socket() it takes the
 * same sockaddr_in/in6, socket options and calls as a TCP socket, so the caller only chooses
 * how the socket is created. See docs/man/fabriq-smc.7.md.
 *
 * Every function here is thread-safe and may block only as long as socket(2) does.
 */
#ifndef FQI_PLATFORM_TCP_H
#define FQI_PLATFORM_TCP_H

#include "core/core.h"

/* How a transport's TCP sockets are created: the value of a transport option `smc`. */
typedef enum fqi_smc_mode {
	FQI_SMC_OFF = 0,     /* plain TCP */
	FQI_SMC_TRY = 1,     /* SMC where the kernel has it, plain TCP where it has not */
	FQI_SMC_REQUIRE = 2, /* SMC or an error */
} fqi_smc_mode;

/* How fqi_tcp_socket() made the socket (its non-negative return value). */
typedef enum fqi_tcp_kind {
	FQI_TCP_PLAIN = 0,       /* socket(AF_INET[6], SOCK_STREAM, 0) */
	FQI_TCP_AF_SMC = 1,      /* socket(AF_SMC, SOCK_STREAM, SMCPROTO_SMC[6]) */
	FQI_TCP_IPPROTO_SMC = 2, /* socket(AF_INET[6], SOCK_STREAM, IPPROTO_SMC), Linux >= 6.11 */
} fqi_tcp_kind;

/* Text of an option value: "off", "try", "require". The values, for option help. */
#define FQI_SMC_MODES "off|try|require"

/*
 * Parse "off", "try" or "require" (case-insensitive; "0"/"1"/"2" too). Errors: FQ_EINVAL
 * (NULL or another word; *out untouched).
 */
int fqi_smc_mode_parse(const char *text, fqi_smc_mode *out);
/* "off", "try", "require" ("?" for a value outside the enum). */
const char *fqi_smc_mode_name(fqi_smc_mode mode);
/* "tcp", "af_smc", "ipproto_smc" ("?" for a value outside the enum). */
const char *fqi_tcp_kind_name(fqi_tcp_kind kind);

/*
 * Open a stream socket for `family` (AF_INET or AF_INET6) in `mode`. `flags` is ORed into
 * the socket type (SOCK_NONBLOCK, SOCK_CLOEXEC). `what` names the purpose in log lines
 * ("shmem tcp listener"); may be NULL.
 * - off: socket(family, SOCK_STREAM, 0).
 * - try: socket(AF_SMC, SOCK_STREAM, SMCPROTO_SMC or SMCPROTO_SMC6), then
 *   socket(family, SOCK_STREAM, IPPROTO_SMC); when the kernel refuses both with EAFNOSUPPORT,
 *   EPROTONOSUPPORT, EPERM or EINVAL, a plain TCP socket. Which one was made is logged at
 *   debug level.
 * - require: the two SMC attempts only.
 * On success returns the fqi_tcp_kind (>= 0) and stores the descriptor (the caller's, to
 * close) in *fd_out. On failure *fd_out is untouched and nothing is open. Errors: FQ_EINVAL
 * (family or mode out of range, fd_out NULL); FQ_EUNAVAIL (require, and this kernel offers no
 * SMC: the reasons are logged at error level); any other socket(2) error, wrapped with
 * fqi_syserr (e.g. EMFILE from an SMC attempt is returned as it is, not hidden by a fallback).
 */
int fqi_tcp_socket(int family, int flags, fqi_smc_mode mode, const char *what, int *fd_out);

/*
 * Does this kernel let us create SMC sockets (AF_SMC or IPPROTO_SMC)? Opens and closes one
 * socket each time (no cache, so that the test hook below is honoured). Returns 0 if it does,
 * FQ_EUNAVAIL if it does not, another negative code if socket(2) failed for another reason
 * (e.g. out of descriptors). Says nothing about whether a given connection will negotiate
 * SMC: that needs RDMA hardware (or an ISM device) on both ends.
 */
int fqi_smc_available(void);

/*
 * Test hook: while `errnum` is not 0, every SMC socket() attempt of this process fails with
 * that errno instead of asking the kernel (so the fallback and require paths can be tested on
 * a machine that has SMC, and other errors on one that has not). 0 restores the real calls.
 * The environment variable FQ_SMC_INJECT_ERRNO (a number, read once at load) sets the initial
 * value, for multi-process tests. Thread-safe (atomic).
 */
void fqi_smc_inject_failure(int errnum);

#endif /* FQI_PLATFORM_TCP_H */
