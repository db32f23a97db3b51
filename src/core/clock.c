/* Monotonic time and deadlines for blocking calls. */
#include "core.h"

#include <limits.h>
#include <time.h>

int64_t fqi_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fqi_deadline(int64_t timeout_ms)
{
	if (timeout_ms < 0)
		return -1;
	return fqi_clock_ms() + timeout_ms;
}

int fqi_deadline_remaining(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - fqi_clock_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}
