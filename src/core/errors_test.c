/* The error table: every code has a distinct name and a message; OS errors survive. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

static const int codes[] = {
#define CODE_(name, value, msg) FQ_##name,
    FQ_ERRNO_MAP(CODE_)
#undef CODE_
};

Test(errors, every_code_has_a_distinct_name_and_message)
{
	for (size_t i = 0; i < FQI_ARRAY_LEN(codes); i++) {
		cr_assert_lt(codes[i], 0);
		cr_assert_str_neq(fq_strerror(codes[i]), "unknown error");
		cr_assert_eq(strncmp(fq_err_name(codes[i]), "FQ_E", 4), 0);
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(fq_err_name(codes[i]), fq_err_name(codes[j]));
	}
	cr_assert_str_eq(fq_err_name(FQ_EAGAIN), "FQ_EAGAIN");
	cr_assert_str_eq(fq_strerror(0), "success");
	cr_assert_str_eq(fq_err_name(-999), "FQ_EUNKNOWN");
}

Test(errors, os_errors_are_wrapped_not_lost)
{
	cr_assert_eq(fqi_syserr(EAGAIN), FQ_EAGAIN);
	cr_assert_eq(fqi_syserr(EADDRINUSE), FQ_EADDRINUSE);
	int rc = fqi_syserr(ENOSPC);
	cr_assert(FQ_IS_SYSERR(rc));
	cr_assert_eq(FQ_SYSERR_ERRNO(rc), ENOSPC);
	cr_assert_str_eq(fq_strerror(rc), strerror(ENOSPC));
	cr_assert_str_eq(fq_err_name(rc), "FQ_ESYS");
}

static int seen_level;
static char seen_msg[256];

static void sink(fq_log_level level, const char *subsys, const char *msg, void *arg)
{
	seen_level = (int)level;
	snprintf(seen_msg, sizeof(seen_msg), "%s:%s", subsys, msg);
	*(int *)arg += 1;
}

Test(log, handler_and_level_filter)
{
	int calls = 0;
	fq_log_level lv;

	fq_log_set_handler(sink, &calls);
	fq_log_set_level(FQ_LOG_WARN);
	FQI_INFO("test", "hidden %d", 1);
	cr_assert_eq(calls, 0);
	FQI_WARN("test", "shown %d", 2);
	cr_assert_eq(calls, 1);
	cr_assert_eq(seen_level, FQ_LOG_WARN);
	cr_assert_str_eq(seen_msg, "test:shown 2");
	fq_log_set_level(FQ_LOG_NONE);
	FQI_ERROR("test", "silenced");
	cr_assert_eq(calls, 1);
	fq_log_set_handler(NULL, NULL);
	cr_assert_eq(fq_log_level_parse("debug", &lv), 0);
	cr_assert_eq(lv, FQ_LOG_DEBUG);
	cr_assert_eq(fq_log_level_parse("loud", &lv), FQ_EINVAL);
}
