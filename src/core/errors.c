/* Error codes: one table (fabriq.h FQ_ERRNO_MAP) gives names and messages. */
#include "core.h"

#include <stdio.h>
#include <string.h>

const char *fq_strerror(int err)
{
	if (err == 0)
		return "success";
	if (FQ_IS_SYSERR(err))
		return strerror(FQ_SYSERR_ERRNO(err));
	switch (err) {
#define FQI_ERR_MSG_(name, value, msg) \
	case FQ_##name:                \
		return msg;
		FQ_ERRNO_MAP(FQI_ERR_MSG_)
#undef FQI_ERR_MSG_
	default:
		return "unknown error";
	}
}

const char *fq_err_name(int err)
{
	if (err == 0)
		return "FQ_OK";
	if (FQ_IS_SYSERR(err))
		return "FQ_ESYS";
	switch (err) {
#define FQI_ERR_NAME_(name, value, msg) \
	case FQ_##name:                 \
		return "FQ_" #name;
		FQ_ERRNO_MAP(FQI_ERR_NAME_)
#undef FQI_ERR_NAME_
	default:
		return "FQ_EUNKNOWN";
	}
}

int fqi_syserr(int errnum)
{
	switch (errnum) {
	case 0:
		return 0;
	case EINVAL:
		return FQ_EINVAL;
	case ENOMEM:
		return FQ_ENOMEM;
	case EAGAIN:
		return FQ_EAGAIN;
	case ETIMEDOUT:
		return FQ_ETIMEDOUT;
	case EINTR:
		return FQ_EINTR;
	case EMSGSIZE:
		return FQ_EMSGSIZE;
	case EPROTO:
		return FQ_EPROTO;
	case ENOTSUP:
		return FQ_ENOTSUP;
	case EADDRINUSE:
		return FQ_EADDRINUSE;
	case EADDRNOTAVAIL:
	case EAFNOSUPPORT:
	case EPROTONOSUPPORT:
	case ENODEV:
		return FQ_EADDRINVAL;
	case ECONNREFUSED:
		return FQ_ECONNREFUSED;
	case ENOENT:
		return FQ_ENOENT;
	case EPERM:
	case EACCES:
		return FQ_EPERM;
	case ERANGE:
		return FQ_ERANGE;
	default:
		return FQ_ESYS_BASE - errnum;
	}
}

_Noreturn void fqi_panic(const char *file, int line, const char *what)
{
	fprintf(stderr, "fabriq: internal invariant broken at %s:%d: %s\n", file, line, what);
	abort();
}

const char *fq_version(void)
{
	return FQ_VERSION_STRING;
}
