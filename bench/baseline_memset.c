/*
 * The memset reference (see baseline_memset.h): the loop a --memset sender runs per message,
 * without the messaging. The buffer is written once before the clock starts (its pages exist,
 * as a warm allocator's would) and is never read: an empty asm statement that claims to read
 * memory after each memset keeps the compiler from dropping the stores.
 */
#include "baseline_memset.h"

#include <stdlib.h>
#include <string.h>

int fqb_memset_role(const fqb_role_args *a)
{
	fqb_deadline dl;
	uint64_t i, t0, t1;
	char *buf;
	double cpu0;

	if (a->role != FQB_ROLE_SENDER) {
		fqb_report_error("memset: the reference has one side only: --role sender");
		return FQB_EXIT_USAGE;
	}
	buf = malloc(a->size ? a->size : 1);
	if (buf == NULL) {
		fqb_report_error("out of memory for a %zu-byte buffer", a->size);
		return FQB_EXIT_FAILURE;
	}
	memset(buf, 0x5a, a->size);
	__asm__ __volatile__("" : : "r"(buf) : "memory");
	cpu0 = fqb_cpu_seconds();
	t0 = fqb_now_ns();
	fqb_deadline_start(&dl, a);
	for (i = 0; a->count == 0 || i < a->count; i++) {
		if (fqb_deadline_passed(&dl, i))
			break;
		memset(buf, (int)(unsigned char)(i + 1), a->size);
		__asm__ __volatile__("" : : "r"(buf) : "memory");
	}
	t1 = fqb_now_ns();
	fqb_report_solo(i, (double)(t1 - t0) / 1e9, fqb_cpu_seconds() - cpu0);
	free(buf);
	return FQB_EXIT_OK;
}
