/*
 * Poller over sockets of any transports: ask each socket for its ready events; when none is
 * ready, sleep in poll() on the sockets' wake-up fds and ask again.
 */
#include "core.h"
#include "transport.h"

#include <poll.h>

/*
 * Another thread using one of the sockets may consume a wake-up meant for us (libzmq's fd is
 * an edge, not a level), so one poll() sleeps at most this long before looking again.
 */
#define POLL_SLICE_MS 100

struct fq_poller {
	size_t n, cap;
	fq_socket **socks;
	int *want;
	int *ready;
	struct pollfd *pfds;
};

int fq_poller_open(fq_poller **out)
{
	if (out == NULL)
		return FQ_EINVAL;
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : FQ_ENOMEM;
}

int fq_poller_add(fq_poller *p, fq_socket *s, int events)
{
	int fd, rc;

	if (p == NULL || s == NULL || (events & ~(FQ_POLLIN | FQ_POLLOUT)) != 0 || events == 0)
		return FQ_EINVAL;
	rc = s->ops->fd(s, &fd);
	if (rc != 0)
		return rc;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		void *a = realloc(p->socks, cap * sizeof(*p->socks));

		if (a == NULL)
			return FQ_ENOMEM;
		p->socks = a;
		if ((a = realloc(p->want, cap * sizeof(int))) == NULL)
			return FQ_ENOMEM;
		p->want = a;
		if ((a = realloc(p->ready, cap * sizeof(int))) == NULL)
			return FQ_ENOMEM;
		p->ready = a;
		if ((a = realloc(p->pfds, cap * sizeof(struct pollfd))) == NULL)
			return FQ_ENOMEM;
		p->pfds = a;
		p->cap = cap;
	}
	p->socks[p->n] = s;
	p->want[p->n] = events;
	p->ready[p->n] = 0;
	p->pfds[p->n] = (struct pollfd){.fd = fd, .events = POLLIN};
	return (int)p->n++;
}

int fq_poller_wait(fq_poller *p, int timeout_ms)
{
	int64_t deadline;

	if (p == NULL)
		return FQ_EINVAL;
	deadline = fqi_deadline(timeout_ms);
	for (;;) {
		int count = 0, left, slice;

		for (size_t i = 0; i < p->n; i++) {
			int ev = p->socks[i]->ops->events(p->socks[i]);

			if (ev < 0)
				return ev;
			p->ready[i] = ev & p->want[i];
			count += p->ready[i] != 0;
		}
		left = fqi_deadline_remaining(deadline);
		if (count > 0 || left == 0)
			return count;
		slice = (left < 0 || left > POLL_SLICE_MS) ? POLL_SLICE_MS : left;
		if (poll(p->pfds, p->n, slice) < 0 && errno != EINTR)
			return fqi_syserr(errno);
	}
}

int fq_poller_events(const fq_poller *p, size_t index)
{
	if (p == NULL || index >= p->n)
		return FQ_EINVAL;
	return p->ready[index];
}

void fq_poller_close(fq_poller *p)
{
	if (p == NULL)
		return;
	free(p->socks);
	free(p->want);
	free(p->ready);
	free(p->pfds);
	free(p);
}
