/*
 * Messaging patterns for transports that route messages themselves (shmem, ofi): which socket
 * types send, receive and may be peers, SUB prefix lists, and the eventfd wake-ups their
 * waiting callers sleep on.
 */
#include "core.h"

#include <string.h>
#include <sys/eventfd.h>

bool fqi_type_receives(fq_socket_type t)
{
	return t == FQ_PULL || t == FQ_SUB || t == FQ_REQ || t == FQ_REP || t == FQ_PAIR;
}

bool fqi_type_sends(fq_socket_type t)
{
	return t == FQ_PUSH || t == FQ_PUB || t == FQ_REQ || t == FQ_REP || t == FQ_PAIR;
}

bool fqi_types_match(uint32_t a, uint32_t b)
{
	switch (a) {
	case FQ_PUSH:
		return b == FQ_PULL;
	case FQ_PULL:
		return b == FQ_PUSH;
	case FQ_PUB:
		return b == FQ_SUB;
	case FQ_SUB:
		return b == FQ_PUB;
	case FQ_REQ:
		return b == FQ_REP;
	case FQ_REP:
		return b == FQ_REQ;
	case FQ_PAIR:
		return b == FQ_PAIR;
	default:
		return false;
	}
}

int fqi_subs_change(fqi_subs *s, const void *text, size_t len, bool add)
{
	char **v, *copy;
	size_t *l;

	for (size_t i = 0; i < s->n; i++) {
		if (s->len[i] == len && memcmp(s->text[i], text, len) == 0) {
			if (!add) {
				free(s->text[i]);
				s->text[i] = s->text[s->n - 1];
				s->len[i] = s->len[s->n - 1];
				s->n--;
				return 0;
			}
			break; /* duplicates are kept: zeromq counts them */
		}
	}
	if (!add)
		return 0;
	v = realloc(s->text, (s->n + 1) * sizeof(*v));
	if (v == NULL)
		return FQ_ENOMEM;
	s->text = v;
	l = realloc(s->len, (s->n + 1) * sizeof(*l));
	if (l == NULL)
		return FQ_ENOMEM;
	s->len = l;
	copy = malloc(len + 1);
	if (copy == NULL)
		return FQ_ENOMEM;
	if (len > 0)
		memcpy(copy, text, len);
	copy[len] = '\0';
	v[s->n] = copy;
	l[s->n] = len;
	s->n++;
	return 0;
}

bool fqi_subs_match(const fqi_subs *s, const void *data, size_t size)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->len[i] <= size && memcmp(s->text[i], data, s->len[i]) == 0)
			return true;
	}
	return false;
}

void fqi_subs_free(fqi_subs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->text[i]);
	free(s->text);
	free(s->len);
	*s = (fqi_subs){0};
}

void fqi_kick(int fd)
{
	if (fd >= 0)
		eventfd_write(fd, 1);
}

void fqi_drain(int fd)
{
	eventfd_t v;

	(void)eventfd_read(fd, &v);
}
