/*
 * Transport registry: the descriptors compiled in (generated/transports.def lists them) and
 * the transport instance lifecycle. The core never branches on a transport's identity.
 */
#include "core.h"
#include "transport.h"

#include <string.h>

#define FQI_TRANSPORT(name) extern const fqi_transport_desc fqi_##name##_transport;
#include "transports.def"
#undef FQI_TRANSPORT

static const fqi_transport_desc *const transports[] = {
#define FQI_TRANSPORT(name) &fqi_##name##_transport,
#include "transports.def"
#undef FQI_TRANSPORT
    NULL};

/* Every table must be complete: a NULL member is a bug in the transport, caught at once. */
static void check_desc(const fqi_transport_desc *d)
{
	FQI_ASSERT(d->transport_ops->size == sizeof(fqi_transport_ops));
	FQI_ASSERT(d->msg_ops->size == sizeof(fqi_msg_ops));
	FQI_ASSERT(d->socket_ops->size == sizeof(fqi_socket_ops));
	FQI_ASSERT(d->region_ops->size == sizeof(fqi_region_ops));
	FQI_ASSERT(d->transport_ops->init && d->transport_ops->fini && d->transport_ops->probe &&
	           d->transport_ops->counter);
	FQI_ASSERT(d->msg_ops->alloc && d->msg_ops->adopt && d->msg_ops->copy &&
	           d->msg_ops->shrink && d->msg_ops->free);
	FQI_ASSERT(d->socket_ops->open && d->socket_ops->close && d->socket_ops->setopt &&
	           d->socket_ops->bind && d->socket_ops->connect && d->socket_ops->send &&
	           d->socket_ops->recv && d->socket_ops->recvv && d->socket_ops->events &&
	           d->socket_ops->fd && d->socket_ops->interrupt);
	FQI_ASSERT(d->region_ops->open && d->region_ops->close && d->region_ops->msg);
}

size_t fqi_transport_count(void)
{
	return FQI_ARRAY_LEN(transports) - 1;
}

const fqi_transport_desc *fqi_transport_at(size_t i)
{
	return i < fqi_transport_count() ? transports[i] : NULL;
}

const fqi_transport_desc *fqi_transport_find(const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < fqi_transport_count(); i++) {
		if (strcmp(transports[i]->name, name) == 0)
			return transports[i];
	}
	return NULL;
}

bool fqi_transport_serves(const fqi_transport_desc *d, const char *scheme)
{
	size_t n = strlen(scheme);

	for (const char *p = d->schemes; *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len == n && strncmp(p, scheme, n) == 0)
			return true;
		p += len + (comma ? 1 : 0);
	}
	return false;
}

size_t fq_transport_count(void)
{
	return fqi_transport_count();
}

const char *fq_transport_name_at(size_t i)
{
	const fqi_transport_desc *d = fqi_transport_at(i);

	return d ? d->name : NULL;
}

int fq_transport_probe(const char *name)
{
	const fqi_transport_desc *d = fqi_transport_find(name);

	if (d == NULL)
		return FQ_ENOENT;
	return d->transport_ops->probe();
}

int fq_transport_open(fq_transport **out, const char *name, const char *options)
{
	const fqi_transport_desc *d;
	fq_transport *t;
	int rc;

	if (out == NULL || name == NULL)
		return FQ_EINVAL;
	*out = NULL;
	d = fqi_transport_find(name);
	if (d == NULL) {
		FQI_WARN("core", "unknown transport '%s'", name);
		return FQ_ENOENT;
	}
	check_desc(d);
	t = calloc(1, sizeof(*t) + d->transport_ops->priv_size);
	if (t == NULL)
		return FQ_ENOMEM;
	t->desc = d;
	pthread_mutex_init(&t->lock, NULL);
	t->priv = d->transport_ops->priv_size ? (void *)(t + 1) : NULL;
	t->opt = calloc(d->option_count + 1, sizeof(*t->opt));
	t->opt_str = calloc(d->option_count + 1, sizeof(*t->opt_str));
	if (t->opt == NULL || t->opt_str == NULL) {
		rc = FQ_ENOMEM;
		goto fail;
	}
	rc = fqi_options_load(d->name, d->options, d->option_count, options, t->opt, t->opt_str);
	if (rc != 0)
		goto fail;
	rc = d->transport_ops->init(t);
	if (rc != 0)
		goto fail;
	*out = t;
	return 0;
fail:
	for (size_t i = 0; t->opt_str != NULL && i < d->option_count; i++)
		free(t->opt_str[i]);
	free(t->opt_str);
	free(t->opt);
	free(t);
	return rc;
}

void fq_transport_close(fq_transport *t)
{
	if (t == NULL)
		return;
	/* Closing under the user's feet is a mistake, but it must not hang the context. */
	while (t->sockets != NULL) {
		FQI_WARN("core", "transport %s closed with sockets still open: closing them",
		         t->desc->name);
		fq_socket_close(t->sockets);
	}
	t->desc->transport_ops->fini(t);
	for (size_t i = 0; i < t->desc->option_count; i++)
		free(t->opt_str[i]);
	free(t->opt_str);
	free(t->opt);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

const char *fq_transport_name(const fq_transport *t)
{
	return t ? t->desc->name : NULL;
}

int fq_transport_counter(fq_transport *t, const char *name, uint64_t *value)
{
	if (t == NULL || name == NULL || value == NULL)
		return FQ_EINVAL;
	return t->desc->transport_ops->counter(t, name, value);
}

/* Shared "not supported" stubs. */
int fqi_no_probe(void)
{
	return 0;
}

int fqi_no_counter(fq_transport *t, const char *name, uint64_t *value)
{
	FQI_UNUSED(t);
	FQI_UNUSED(name);
	FQI_UNUSED(value);
	return FQ_ENOENT;
}

int fqi_no_region_open(fq_region *r)
{
	FQI_UNUSED(r);
	return FQ_ENOTSUP;
}

void fqi_no_region_close(fq_region *r)
{
	FQI_UNUSED(r);
}

int fqi_no_region_msg(fq_region *r, void *data, size_t size, void *hint, fq_msg **out)
{
	FQI_UNUSED(r);
	FQI_UNUSED(data);
	FQI_UNUSED(size);
	FQI_UNUSED(hint);
	FQI_UNUSED(out);
	return FQ_ENOTSUP;
}

int fqi_no_shrink(fq_msg *m, size_t size)
{
	FQI_UNUSED(m);
	FQI_UNUSED(size);
	return FQ_ENOTSUP;
}
