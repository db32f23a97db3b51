/*
 * Sockets: the transport-independent part (options, endpoints, argument checks, the one-copy
 * path for messages of another transport). Queues, blocking and wire work are the
 * transport's (transport.h).
 */
#include "core.h"
#include "transport.h"

#include <stdio.h>
#include <string.h>

#define MS_MAX INT32_MAX

const fqi_option fqi_socket_options[FQI_SO_COUNT] = {
    [FQI_SO_SND_HWM] = {"snd_hwm", FQ_OPT_INT, "1000", 0, INT32_MAX,
                        "send queue limit in messages per peer (0 = unlimited)"},
    [FQI_SO_RCV_HWM] = {"rcv_hwm", FQ_OPT_INT, "1000", 0, INT32_MAX,
                        "receive queue limit in messages per peer (0 = unlimited)"},
    [FQI_SO_SND_HWM_BYTES] = {"snd_hwm_bytes", FQ_OPT_SIZE, "0", 0, INT64_MAX,
                              "send queue limit in bytes for the socket (0 = unlimited)"},
    [FQI_SO_RCV_HWM_BYTES] = {"rcv_hwm_bytes", FQ_OPT_SIZE, "0", 0, INT64_MAX,
                              "receive queue limit in bytes for the socket (0 = unlimited)"},
    [FQI_SO_SND_TIMEOUT] = {"snd_timeout", FQ_OPT_DURATION, "-1", -1, MS_MAX,
                            "blocking send gives up after this many ms (-1 = never)"},
    [FQI_SO_RCV_TIMEOUT] = {"rcv_timeout", FQ_OPT_DURATION, "-1", -1, MS_MAX,
                            "blocking receive gives up after this many ms (-1 = never)"},
    [FQI_SO_LINGER] = {"linger", FQ_OPT_DURATION, "500", -1, MS_MAX,
                       "ms to keep delivering queued messages after close (-1 = until done)"},
    [FQI_SO_MAX_MSG_SIZE] = {"max_msg_size", FQ_OPT_SIZE, "4G", 0, INT64_MAX,
                             "largest message accepted from a network peer; a peer announcing "
                             "more is dropped before anything is allocated (0 = unlimited)"},
    [FQI_SO_RECONNECT_IVL] = {"reconnect_ivl", FQ_OPT_DURATION, "100", 0, MS_MAX,
                              "ms between attempts to (re)connect"},
    [FQI_SO_RECONNECT_IVL_MAX] = {"reconnect_ivl_max", FQ_OPT_DURATION, "0", 0, MS_MAX,
                                  "upper bound of the reconnect back-off in ms (0 = no back-off)"},
    [FQI_SO_SND_KERNEL_SIZE] = {"snd_kernel_size", FQ_OPT_SIZE, "0", 0, INT32_MAX,
                                "kernel send buffer in bytes (0 = OS default)"},
    [FQI_SO_RCV_KERNEL_SIZE] = {"rcv_kernel_size", FQ_OPT_SIZE, "0", 0, INT32_MAX,
                                "kernel receive buffer in bytes (0 = OS default)"},
    [FQI_SO_SUBSCRIBE] = {"subscribe", FQ_OPT_STRING, "", 0, 0,
                          "SUB: receive messages whose first part starts with this prefix"},
    [FQI_SO_UNSUBSCRIBE] = {"unsubscribe", FQ_OPT_STRING, "", 0, 0,
                            "SUB: remove a prefix given to subscribe"},
};

static const char *const type_names[] = {
    [FQ_PAIR] = "pair", [FQ_PUB] = "pub",   [FQ_SUB] = "sub",   [FQ_REQ] = "req",
    [FQ_REP] = "rep",   [FQ_PUSH] = "push", [FQ_PULL] = "pull",
};

const char *fq_socket_type_name(fq_socket_type type)
{
	if ((unsigned)type >= FQI_ARRAY_LEN(type_names))
		return "unknown";
	return type_names[type];
}

int fq_socket_type_parse(const char *name, fq_socket_type *out)
{
	if (name == NULL || out == NULL)
		return FQ_EINVAL;
	for (size_t i = 0; i < FQI_ARRAY_LEN(type_names); i++) {
		if (strcmp(name, type_names[i]) == 0) {
			*out = (fq_socket_type)i;
			return 0;
		}
	}
	return FQ_ENOENT;
}

/* Default values with FQ_SOCKET_<NAME> from the environment, parsed once per open. */
static int socket_defaults(int64_t *values)
{
	return fqi_options_load("socket", fqi_socket_options, FQI_SO_COUNT, NULL, values, NULL);
}

static void list_add(fq_socket *s)
{
	fq_transport *t = s->t;

	pthread_mutex_lock(&t->lock);
	s->next = t->sockets;
	s->prev = NULL;
	if (t->sockets != NULL)
		t->sockets->prev = s;
	t->sockets = s;
	pthread_mutex_unlock(&t->lock);
}

static void list_remove(fq_socket *s)
{
	fq_transport *t = s->t;

	pthread_mutex_lock(&t->lock);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		t->sockets = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	pthread_mutex_unlock(&t->lock);
}

int fq_socket_open(fq_socket **out, fq_transport *t, fq_socket_type type)
{
	const fqi_socket_ops *ops;
	int64_t values[FQI_SO_COUNT];
	fq_socket *s;
	int rc;

	if (out == NULL || t == NULL || (unsigned)type >= FQI_ARRAY_LEN(type_names))
		return FQ_EINVAL;
	*out = NULL;
	rc = socket_defaults(values);
	if (rc != 0)
		return rc;
	ops = t->desc->socket_ops;
	s = calloc(1, sizeof(*s) + ops->priv_size);
	if (s == NULL)
		return FQ_ENOMEM;
	s->t = t;
	s->ops = ops;
	s->type = type;
	s->priv = ops->priv_size ? (void *)(s + 1) : NULL;
	pthread_mutex_init(&s->ep_lock, NULL);
	for (int i = 0; i < FQI_SO_COUNT; i++)
		atomic_init(&s->opt[i], values[i]);
	rc = ops->open(s);
	if (rc != 0) {
		pthread_mutex_destroy(&s->ep_lock);
		free(s);
		return rc;
	}
	for (int i = 0; i < FQI_SO_COUNT; i++) {
		if (fqi_socket_options[i].type == FQ_OPT_STRING)
			continue;
		rc = ops->setopt(s, (fqi_sockopt_id)i, NULL);
		if (rc != 0) {
			FQI_WARN("core", "%s socket: default %s=%lld not accepted: %s",
			         t->desc->name, fqi_socket_options[i].name, (long long)values[i],
			         fq_strerror(rc));
			ops->close(s);
			pthread_mutex_destroy(&s->ep_lock);
			free(s);
			return rc;
		}
	}
	list_add(s);
	*out = s;
	return 0;
}

static int set_value(fq_socket *s, int id, int64_t value, const char *text)
{
	int64_t old = atomic_exchange(&s->opt[id], value);
	int rc = s->ops->setopt(s, (fqi_sockopt_id)id, text);

	if (rc != 0)
		atomic_store(&s->opt[id], old);
	return rc;
}

int fq_socket_set(fq_socket *s, const char *option, const char *value)
{
	int64_t v;
	int id, rc;

	if (s == NULL || option == NULL || value == NULL)
		return FQ_EINVAL;
	id = fqi_option_find(fqi_socket_options, FQI_SO_COUNT, option);
	if (id < 0)
		return FQ_ENOENT;
	rc = fqi_option_parse(&fqi_socket_options[id], value, &v);
	if (rc != 0)
		return rc == FQ_ERANGE ? FQ_EINVAL : rc;
	return set_value(s, id, v, value);
}

int fq_socket_set_int(fq_socket *s, const char *option, int64_t value)
{
	const fqi_option *o;
	int id;

	if (s == NULL || option == NULL)
		return FQ_EINVAL;
	id = fqi_option_find(fqi_socket_options, FQI_SO_COUNT, option);
	if (id < 0)
		return FQ_ENOENT;
	o = &fqi_socket_options[id];
	if (o->type == FQ_OPT_STRING)
		return FQ_EINVAL;
	if (o->type == FQ_OPT_BOOL)
		value = value != 0;
	else if (value < o->min || value > o->max)
		return FQ_EINVAL;
	return set_value(s, id, value, NULL);
}

int fq_socket_get_int(fq_socket *s, const char *option, int64_t *value)
{
	int id;

	if (s == NULL || option == NULL || value == NULL)
		return FQ_EINVAL;
	id = fqi_option_find(fqi_socket_options, FQI_SO_COUNT, option);
	if (id < 0)
		return FQ_ENOENT;
	if (fqi_socket_options[id].type == FQ_OPT_STRING)
		return FQ_EINVAL;
	*value = atomic_load(&s->opt[id]);
	return 0;
}

fq_socket_type fq_socket_get_type(const fq_socket *s)
{
	return s ? s->type : (fq_socket_type)-1;
}

fq_transport *fq_socket_transport(const fq_socket *s)
{
	return s ? s->t : NULL;
}

typedef int (*endpoint_op)(fq_socket *, const fqi_url *, char *);

static int attach(fq_socket *s, const char *text, bool bind)
{
	char resolved[FQI_URL_MAX];
	fqi_url url;
	endpoint_op op;
	char *copy;
	int rc;

	if (s == NULL || text == NULL)
		return FQ_EINVAL;
	rc = fqi_url_parse(text, &url);
	if (rc != 0) {
		FQI_WARN("core", "malformed address '%s' (expected scheme://...)", text);
		return rc;
	}
	if (!fqi_transport_serves(s->t->desc, url.scheme)) {
		FQI_WARN("core", "transport %s does not serve '%s://' (it serves %s)",
		         s->t->desc->name, url.scheme, s->t->desc->schemes);
		return FQ_EADDRINVAL;
	}
	op = bind ? s->ops->bind : s->ops->connect;
	resolved[0] = '\0';
	rc = op(s, &url, resolved);
	if (rc != 0)
		return rc;
	copy = strdup(resolved[0] ? resolved : text);
	if (copy == NULL)
		return FQ_ENOMEM;
	pthread_mutex_lock(&s->ep_lock);
	if (s->n_endpoints == s->cap_endpoints) {
		size_t cap = s->cap_endpoints ? 2 * s->cap_endpoints : 4;
		char **grown = realloc(s->endpoints, cap * sizeof(*grown));

		if (grown != NULL) {
			s->endpoints = grown;
			s->cap_endpoints = cap;
		}
	}
	if (s->n_endpoints < s->cap_endpoints) {
		s->endpoints[s->n_endpoints++] = copy;
		copy = NULL;
	}
	pthread_mutex_unlock(&s->ep_lock);
	/* Out of memory only costs the listing: the endpoint itself is live. */
	free(copy);
	return 0;
}

int fq_bind(fq_socket *s, const char *url)
{
	return attach(s, url, true);
}

int fq_connect(fq_socket *s, const char *url)
{
	return attach(s, url, false);
}

int fq_socket_endpoint(fq_socket *s, size_t i, char *buf, size_t len)
{
	int rc = 0;

	if (s == NULL || buf == NULL)
		return FQ_EINVAL;
	pthread_mutex_lock(&s->ep_lock);
	if (i >= s->n_endpoints)
		rc = FQ_ENOENT;
	else if (strlen(s->endpoints[i]) >= len)
		rc = FQ_ERANGE;
	else
		strcpy(buf, s->endpoints[i]);
	pthread_mutex_unlock(&s->ep_lock);
	return rc;
}

/*
 * Messages of another transport cost one copy into this socket's transport. The originals
 * stay the caller's until the copies were sent.
 */
FQI_NOINLINE static int send_foreign(fq_socket *s, fq_msg **parts, size_t n, int flags)
{
	fq_msg *buf[32];
	fq_msg **local = n <= FQI_ARRAY_LEN(buf) / 2 ? buf : calloc(2 * n, sizeof(*local));
	fq_msg **copied; /* copied[i]: the original of a part that was copied, else NULL */
	size_t made = 0;
	int rc = 0;

	if (local == NULL)
		return FQ_ENOMEM;
	copied = local + n;
	for (; made < n; made++) {
		fq_msg *m = parts[made];

		copied[made] = NULL;
		if (m->t == s->t) {
			local[made] = m;
			continue;
		}
		rc = s->t->desc->msg_ops->alloc(s->t, m->size, &local[made]);
		if (rc != 0)
			break;
		if (m->size != 0)
			memcpy(local[made]->data, m->data, m->size);
		copied[made] = m;
	}
	if (rc == 0)
		rc = s->ops->send(s, local, n, flags);
	if (rc == 0 || (made == n && local[0] == NULL)) {
		/* Sent (or dropped whole by the transport): the copies' originals are ours to
		 * free, the caller owns nothing any more. */
		for (size_t i = 0; i < n; i++) {
			fq_msg_free(copied[i]);
			parts[i] = NULL;
		}
	} else {
		for (size_t i = 0; i < made; i++) {
			if (copied[i] != NULL)
				fq_msg_free(local[i]);
		}
	}
	if (local != buf)
		free(local);
	return rc;
}

int fq_send(fq_socket *s, fq_msg **m, int flags)
{
	if (FQI_UNLIKELY(s == NULL || m == NULL || *m == NULL))
		return FQ_EINVAL;
	if (FQI_UNLIKELY((*m)->t != s->t))
		return send_foreign(s, m, 1, flags);
	return s->ops->send(s, m, 1, flags);
}

int fq_sendv(fq_socket *s, fq_msg **parts, size_t n, int flags)
{
	bool foreign = false;

	if (s == NULL || parts == NULL || n == 0)
		return FQ_EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (parts[i] == NULL)
			return FQ_EINVAL;
		foreign |= parts[i]->t != s->t;
		for (size_t j = 0; j < i; j++) {
			if (parts[j] == parts[i])
				return FQ_EINVAL; /* the same message twice would be freed twice */
		}
	}
	if (foreign)
		return send_foreign(s, parts, n, flags);
	return s->ops->send(s, parts, n, flags);
}

int fq_recv(fq_socket *s, fq_msg **out, int flags)
{
	if (FQI_UNLIKELY(s == NULL || out == NULL))
		return FQ_EINVAL;
	*out = NULL;
	return s->ops->recv(s, out, flags);
}

int fq_recvv(fq_socket *s, fq_parts **out, int flags)
{
	if (s == NULL || out == NULL)
		return FQ_EINVAL;
	*out = NULL;
	return s->ops->recvv(s, out, flags);
}

int fq_socket_events(fq_socket *s)
{
	if (s == NULL)
		return FQ_EINVAL;
	return s->ops->events(s);
}

int fq_socket_fd(fq_socket *s, int *fd)
{
	if (s == NULL || fd == NULL)
		return FQ_EINVAL;
	return s->ops->fd(s, fd);
}

void fq_socket_interrupt(fq_socket *s)
{
	if (s != NULL)
		s->ops->interrupt(s, true);
}

void fq_socket_resume(fq_socket *s)
{
	if (s != NULL)
		s->ops->interrupt(s, false);
}

void fq_socket_close(fq_socket *s)
{
	if (s == NULL)
		return;
	list_remove(s);
	s->ops->close(s);
	for (size_t i = 0; i < s->n_endpoints; i++)
		free(s->endpoints[i]);
	free(s->endpoints);
	pthread_mutex_destroy(&s->ep_lock);
	free(s);
}
