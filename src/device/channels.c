/*
 * Channels of a device: the transports they use, their sockets (one per sub-channel), bind
 * and connect with FairMQ's rules (auto-bind on a port range, connect waiting for an address
 * until --init-timeout), counted send/receive, the on-data dispatch and rate logging.
 */
#include "device/device_impl.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- Transports ------------------------------------------------------------------------- */

/*
 * Device options that are a transport's own option under another (FairMQ) name. A table,
 * so that the device knows no transport by name in its code.
 */
static const struct {
	const char *device_option;
	const char *transport;
	const char *transport_option;
} option_map[] = {
    {"shm-segment-size", "shmem", "segment_size"},
    {"session", "shmem", "session"},
};

static int append_kv(char *buf, size_t len, const char *kv)
{
	size_t used = strlen(buf);
	int n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", kv);

	return n < 0 || (size_t)n >= len - used ? FQ_ERANGE : 0;
}

/* The "k=v,..." options for transport `name`: the mapped device options, then every
 * --transport-option "name:k=v,...". */
static int transport_options(fq_device *d, const char *name, char *buf, size_t len)
{
	char *all = fqc_props_dup(d->props, "transport-option");
	char value[256], kv[512];
	int rc = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(option_map) / sizeof(option_map[0]) && rc == 0; i++) {
		if (strcmp(option_map[i].transport, name) != 0 ||
		    fqc_props_get(d->props, option_map[i].device_option, value, sizeof(value)) != 0)
			continue;
		snprintf(kv, sizeof(kv), "%s=%s", option_map[i].transport_option, value);
		rc = append_kv(buf, len, kv);
	}
	if (all != NULL) {
		char *save = NULL;
		size_t nlen = strlen(name);

		for (char *line = strtok_r(all, "\n", &save); line != NULL && rc == 0;
		     line = strtok_r(NULL, "\n", &save)) {
			if (strncmp(line, name, nlen) == 0 && line[nlen] == ':')
				rc = append_kv(buf, len, line + nlen + 1);
		}
		free(all);
	}
	return rc;
}

static int get_transport(fq_device *d, const char *name, fq_transport **out)
{
	char opts[2048];
	int rc;

	for (size_t i = 0; i < d->ntr; i++) {
		if (strcmp(d->tr[i].name, name) == 0) {
			*out = d->tr[i].t;
			return 0;
		}
	}
	if (d->ntr == sizeof(d->tr) / sizeof(d->tr[0]))
		return FQ_ERANGE;
	rc = transport_options(d, name, opts, sizeof(opts));
	if (rc == 0)
		rc = fq_transport_open(out, name, opts[0] ? opts : NULL);
	if (rc != 0) {
		fq_log(FQ_LOG_ERROR, FQD_SUBSYS, "%s: transport %s (options '%s'): %s",
		       fq_device_id(d), name, opts, fq_strerror(rc));
		return rc;
	}
	d->tr[d->ntr].name = strdup(name);
	d->tr[d->ntr].t = *out;
	if (d->tr[d->ntr].name == NULL) {
		fq_transport_close(*out);
		return FQ_ENOMEM;
	}
	d->ntr++;
	return 0;
}

static fqd_sub *find_sub(fq_device *d, const char *channel, size_t sub, fqd_chan **chan);

/* ---- Building ---------------------------------------------------------------------------- */

static int chan_prop(fq_device *d, const char *chan, size_t sub, const char *key, char *buf,
                     size_t len)
{
	char k[256];

	snprintf(k, sizeof(k), "chans.%s.%zu.%s", chan, sub, key);
	return fqc_props_get(d->props, k, buf, len);
}

static int64_t chan_int(fq_device *d, const char *chan, size_t sub, const char *key, int64_t dflt)
{
	char buf[64];
	int64_t v;

	if (chan_prop(d, chan, sub, key, buf, sizeof(buf)) != 0 ||
	    fqc_value_int(FQ_OPT_INT, buf, &v) != 0)
		return dflt;
	return v;
}

/* Socket options from the channel keys; kernel buffer sizes only where asked for. */
static int configure_socket(fq_device *d, fqd_chan *c, size_t sub, fq_socket *s)
{
	static const struct {
		const char *key, *option;
		bool only_if_set;
	} map[] = {
	    {"sndBufSize", "snd_hwm", false},
	    {"rcvBufSize", "rcv_hwm", false},
	    {"sndTimeoutMs", "snd_timeout", false},
	    {"rcvTimeoutMs", "rcv_timeout", false},
	    {"linger", "linger", false},
	    {"sndKernelSize", "snd_kernel_size", true},
	    {"rcvKernelSize", "rcv_kernel_size", true},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		int64_t v = chan_int(d, c->name, sub, map[i].key, 0);
		int rc;

		if (map[i].only_if_set && v == 0)
			continue;
		rc = fq_socket_set_int(s, map[i].option, v);
		if (rc == FQ_ENOTSUP) {
			fq_log(FQ_LOG_WARN, FQD_SUBSYS,
			       "%s: %s: %s is not supported by transport %s", fq_device_id(d),
			       c->subs[sub].label, map[i].key, fq_transport_name(c->t));
		} else if (rc != 0) {
			fq_log(FQ_LOG_ERROR, FQD_SUBSYS, "%s: %s: %s=%lld: %s", fq_device_id(d),
			       c->subs[sub].label, map[i].key, (long long)v, fq_strerror(rc));
			return rc;
		}
	}
	if (fq_socket_get_type(s) == FQ_SUB)
		return fq_socket_set(s, "subscribe", ""); /* FairMQ's SUB takes everything */
	return 0;
}

static int build_channel(fq_device *d, fqd_chan *c)
{
	char tname[64], type[32];
	fq_socket_type st;
	int rc;

	if (chan_prop(d, c->name, 0, "transport", tname, sizeof(tname)) != 0 ||
	    strcmp(tname, "default") == 0)
		fqc_props_get(d->props, "transport", tname, sizeof(tname));
	rc = get_transport(d, tname, &c->t);
	if (rc != 0)
		return rc;
	c->rate_logging = (int)chan_int(d, c->name, 0, "rateLogging", 1);
	for (size_t i = 0; i < c->nsub; i++) {
		fqd_sub *sub = &c->subs[i];

		snprintf(sub->label, sizeof(sub->label), "%s[%zu]", c->name, i);
		if (chan_prop(d, c->name, i, "type", type, sizeof(type)) != 0 ||
		    fq_socket_type_parse(type, &st) != 0) {
			fq_log(FQ_LOG_ERROR, FQD_SUBSYS, "%s: %s: no valid socket type",
			       fq_device_id(d), sub->label);
			return FQ_EINVAL;
		}
		rc = fq_socket_open(&sub->sock, c->t, st);
		if (rc != 0) {
			fq_log(FQ_LOG_ERROR, FQD_SUBSYS, "%s: %s: %s socket on %s: %s",
			       fq_device_id(d), sub->label, type, tname, fq_strerror(rc));
			return rc;
		}
		rc = configure_socket(d, c, i, sub->sock);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Attach the registered on-data callbacks to their channels (d->lock not held). */
static int bind_handlers(fq_device *d)
{
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nchans; i++) {
		d->chans[i].on_data = NULL;
		d->chans[i].on_parts = NULL;
	}
	for (size_t h = 0; h < d->nhandlers; h++) {
		fqd_chan *c = NULL;

		find_sub(d, d->handlers[h].channel, 0, &c);
		if (c == NULL) {
			fq_log(FQ_LOG_ERROR, FQD_SUBSYS,
			       "%s: a data callback is registered for channel '%s', which is "
			       "not configured",
			       fq_device_id(d), d->handlers[h].channel);
			rc = FQ_ENOENT;
			continue;
		}
		c->on_data = d->handlers[h].on_data;
		c->on_parts = d->handlers[h].on_parts;
		c->arg = d->handlers[h].arg;
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int fqd_channels_build(fq_device *d)
{
	char **names = NULL;
	size_t *subs = NULL, n = 0;
	fqd_chan *chans;
	int rc;

	fqd_channels_free(d); /* a second INIT DEVICE after RESET DEVICE starts afresh */
	rc = fqc_channels_list(d->props, &names, &subs, &n);
	if (rc != 0)
		return rc;
	chans = calloc(n ? n : 1, sizeof(*chans));
	if (chans == NULL) {
		rc = FQ_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		chans[i].name = names[i];
		names[i] = NULL;
		chans[i].nsub = subs[i];
		chans[i].subs = calloc(subs[i] ? subs[i] : 1, sizeof(fqd_sub));
		if (chans[i].subs == NULL) {
			chans[i].nsub = 0; /* fqd_channels_free walks nsub entries of subs */
			rc = FQ_ENOMEM;
		}
	}
	pthread_mutex_lock(&d->chan_lock);
	d->chans = chans;
	d->nchans = n;
	pthread_mutex_unlock(&d->chan_lock);
	if (rc == 0)
		rc = bind_handlers(d);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = build_channel(d, &chans[i]);
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(subs);
	if (rc != 0)
		fqd_channels_free(d);
	return rc;
}

void fqd_channels_free(fq_device *d)
{
	fqd_chan *chans;
	size_t n;

	pthread_mutex_lock(&d->chan_lock);
	chans = d->chans;
	n = d->nchans;
	d->chans = NULL;
	d->nchans = 0;
	pthread_mutex_unlock(&d->chan_lock);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < chans[i].nsub; j++)
			fq_socket_close(chans[i].subs[j].sock);
		free(chans[i].subs);
		free(chans[i].name);
	}
	free(chans);
	for (size_t i = 0; i < d->ntr; i++) {
		fq_transport_close(d->tr[i].t);
		free(d->tr[i].name);
	}
	d->ntr = 0;
}

void fqd_channels_interrupt(fq_device *d, bool on)
{
	pthread_mutex_lock(&d->chan_lock);
	for (size_t i = 0; i < d->nchans; i++) {
		for (size_t j = 0; j < d->chans[i].nsub; j++) {
			fq_socket *s = d->chans[i].subs[j].sock;

			if (s == NULL)
				continue;
			if (on)
				fq_socket_interrupt(s);
			else
				fq_socket_resume(s);
		}
	}
	pthread_mutex_unlock(&d->chan_lock);
}

/* ---- Bind and connect ------------------------------------------------------------------- */

/* The IPv4 address of --network-interface ("default": the first non-loopback interface that
 * is up, else 127.0.0.1). */
static void interface_address(fq_device *d, char *buf, size_t len)
{
	char want[64] = "default";
	struct ifaddrs *ifs, *i;

	snprintf(buf, len, "127.0.0.1");
	fqc_props_get(d->props, "network-interface", want, sizeof(want));
	if (getifaddrs(&ifs) != 0)
		return;
	for (i = ifs; i != NULL; i = i->ifa_next) {
		bool is_default = strcmp(want, "default") == 0;

		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
		    !(i->ifa_flags & IFF_UP))
			continue;
		if (is_default ? (i->ifa_flags & IFF_LOOPBACK) != 0
		               : strcmp(i->ifa_name, want) != 0)
			continue;
		inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, buf,
		          (socklen_t)len);
		break;
	}
	freeifaddrs(ifs);
}

/* tcp://host:port -> host and port (port -1 when absent or not a number). */
static bool split_tcp(const char *url, char *host, size_t hlen, long *port)
{
	const char *h, *colon;
	char *end;

	if (strncmp(url, "tcp://", 6) != 0)
		return false;
	h = url + 6;
	colon = strrchr(h, ':');
	if (colon == NULL || (size_t)(colon - h) >= hlen) {
		snprintf(host, hlen, "%s", h);
		*port = -1;
		return true;
	}
	memcpy(host, h, (size_t)(colon - h));
	host[colon - h] = '\0';
	*port = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0')
		*port = -1;
	return true;
}

/* Bind with FairMQ's auto-bind: a tcp address without a usable port, or whose port is taken,
 * gets a random port of [portRangeMin, portRangeMax] (up to 1000 attempts). */
static int bind_one(fq_device *d, fqd_chan *c, size_t sub, const char *url)
{
	fq_socket *s = c->subs[sub].sock;
	bool autobind = chan_int(d, c->name, sub, "autoBind", 1) != 0;
	char host[256], try_url[300];
	long port;
	int rc = 0;

	if (!split_tcp(url, host, sizeof(host), &port) || port > 0 || !autobind) {
		rc = fq_bind(s, url);
		if (rc != FQ_EADDRINUSE || !autobind || !split_tcp(url, host, sizeof(host), &port))
			return rc;
	}
	{
		int64_t lo = chan_int(d, c->name, sub, "portRangeMin", 22000);
		int64_t hi = chan_int(d, c->name, sub, "portRangeMax", 23000);
		unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid() ^ (unsigned)(sub << 16);

		if (hi < lo)
			hi = lo;
		for (int attempt = 0; attempt < 1000; attempt++) {
			long p = (long)(lo + rand_r(&seed) % (hi - lo + 1));

			snprintf(try_url, sizeof(try_url), "tcp://%s:%ld", host, p);
			rc = fq_bind(s, try_url);
			if (rc != FQ_EADDRINUSE)
				break;
		}
	}
	return rc;
}

/* The endpoints of an address property: "a,b" with '@' (bind), '+' or '>' (connect). */
typedef int (*endpoint_fn)(fq_device *d, fqd_chan *c, size_t sub, const char *url);

static int each_endpoint(fq_device *d, fqd_chan *c, size_t sub, const char *addr, bool binding,
                         endpoint_fn fn)
{
	char method[16] = "";
	char *copy = strdup(addr), *save = NULL;
	int rc = 0;

	if (copy == NULL)
		return FQ_ENOMEM;
	chan_prop(d, c->name, sub, "method", method, sizeof(method));
	for (char *ep = strtok_r(copy, ",", &save); ep != NULL && rc == 0;
	     ep = strtok_r(NULL, ",", &save)) {
		bool bind = strcmp(method, "bind") == 0;

		while (*ep == ' ')
			ep++;
		if (*ep == '@') {
			bind = true;
			ep++;
		} else if (*ep == '+' || *ep == '>') {
			bind = false;
			ep++;
		}
		if (bind == binding)
			rc = fn(d, c, sub, ep);
	}
	free(copy);
	return rc;
}

static int do_bind(fq_device *d, fqd_chan *c, size_t sub, const char *url)
{
	int rc = bind_one(d, c, sub, url);

	if (rc != 0)
		fq_log(FQ_LOG_ERROR, FQD_SUBSYS, "%s: %s: bind %s: %s", fq_device_id(d),
		       c->subs[sub].label, url, fq_strerror(rc));
	return rc;
}

/*
 * Write the addresses really bound (ports chosen) back into the address property: each bind
 * endpoint of `given` is replaced by the socket's next bound endpoint (the socket has only
 * bound so far, in this order), keeping its '@'; connect endpoints ('+', '>') stay as they
 * are, as CONNECTING reads them from this property.
 */
static void publish_endpoints(fq_device *d, fqd_chan *c, size_t sub, const char *given)
{
	char all[2048] = "", ep[512], key[256], method[16] = "";
	char *copy = strdup(given), *save = NULL;
	size_t used = 0, nbound = 0;

	if (copy == NULL)
		return;
	chan_prop(d, c->name, sub, "method", method, sizeof(method));
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		bool bind = strcmp(method, "bind") == 0;
		const char *prefix = "";
		int n;

		while (*tok == ' ')
			tok++;
		if (*tok == '@') {
			bind = true;
			prefix = "@";
			tok++;
		} else if (*tok == '+' || *tok == '>') {
			bind = false;
		}
		if (bind && fq_socket_endpoint(c->subs[sub].sock, nbound++, ep, sizeof(ep)) != 0) {
			free(copy);
			return; /* not what was bound: leave the property alone */
		}
		n = snprintf(all + used, sizeof(all) - used, "%s%s%s", used ? "," : "", prefix,
		             bind ? ep : tok);
		if (n < 0 || (size_t)n >= sizeof(all) - used) {
			free(copy);
			return;
		}
		used += (size_t)n;
	}
	free(copy);
	if (used == 0 || strcmp(all, given) == 0)
		return;
	snprintf(key, sizeof(key), "chans.%s.%zu.address", c->name, sub);
	fqc_props_set(d->props, key, all);
}

int fqd_channels_bind(fq_device *d)
{
	for (size_t i = 0; i < d->nchans; i++) {
		fqd_chan *c = &d->chans[i];

		for (size_t j = 0; j < c->nsub; j++) {
			char addr[1024] = "", method[16] = "";
			int rc;

			chan_prop(d, c->name, j, "address", addr, sizeof(addr));
			chan_prop(d, c->name, j, "method", method, sizeof(method));
			if (addr[0] == '\0' || strcmp(addr, "unspecified") == 0) {
				char ip[64];

				if (strcmp(method, "bind") != 0)
					continue; /* a connect waits for its address in CONNECTING */
				interface_address(d, ip, sizeof(ip));
				snprintf(addr, sizeof(addr), "tcp://%s:0", ip);
			}
			rc = each_endpoint(d, c, j, addr, true, do_bind);
			if (rc != 0)
				return rc;
			publish_endpoints(d, c, j, addr);
		}
	}
	return 0;
}

static int do_connect(fq_device *d, fqd_chan *c, size_t sub, const char *url)
{
	int rc = fq_connect(c->subs[sub].sock, url);

	if (rc != 0)
		fq_log(FQ_LOG_ERROR, FQD_SUBSYS, "%s: %s: connect %s: %s", fq_device_id(d),
		       c->subs[sub].label, url, fq_strerror(rc));
	return rc;
}

int fqd_channels_connect(fq_device *d)
{
	int64_t timeout_s = 120;

	fq_device_get_int(d, "init-timeout", &timeout_s);
	for (size_t i = 0; i < d->nchans; i++) {
		fqd_chan *c = &d->chans[i];

		for (size_t j = 0; j < c->nsub; j++) {
			char addr[1024] = "", method[16] = "";
			int waited_ms = 0, pending, rc;

			chan_prop(d, c->name, j, "method", method, sizeof(method));
			if (strcmp(method, "connect") != 0) {
				/* A bound sub-channel may still list connect endpoints ('+', '>'). */
				chan_prop(d, c->name, j, "address", addr, sizeof(addr));
				rc = each_endpoint(d, c, j, addr, false, do_connect);
				if (rc != 0)
					return rc;
				continue;
			}
			/* FairMQ's service discovery: a controller may set the address later. */
			for (;;) {
				addr[0] = '\0';
				chan_prop(d, c->name, j, "address", addr, sizeof(addr));
				if (addr[0] != '\0' && strcmp(addr, "unspecified") != 0)
					break;
				if (waited_ms >= timeout_s * 1000) {
					fq_log(FQ_LOG_ERROR, FQD_SUBSYS,
					       "%s: %s: no address to connect to after %lld s "
					       "(--init-timeout)",
					       fq_device_id(d), c->subs[j].label,
					       (long long)timeout_s);
					return FQ_ETIMEDOUT;
				}
				pending = atomic_load(&d->pending);
				/* A request that abandons the set-up decides; one that builds on it (INIT
				 * TASK, queued for DEVICE READY) must not leave this channel unconnected. */
				if (pending == FQ_TRANSITION_RESET_DEVICE ||
				    pending == FQ_TRANSITION_ERROR_FOUND ||
				    atomic_load(&d->shutting_down))
					return 0;
				if (pending >= 0) {
					struct timespec ts = {0, 50 * 1000000};

					nanosleep(&ts, NULL);
				} else if (fq_device_wait_for(d, 50) == FQ_EINTR) {
					continue;
				}
				waited_ms += 50;
			}
			rc = each_endpoint(d, c, j, addr, false, do_connect);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

/* ---- Send and receive ------------------------------------------------------------------- */

static fqd_sub *find_sub(fq_device *d, const char *channel, size_t sub, fqd_chan **chan)
{
	if (d == NULL || channel == NULL)
		return NULL;
	for (size_t i = 0; i < d->nchans; i++) {
		if (strcmp(d->chans[i].name, channel) == 0) {
			if (chan != NULL)
				*chan = &d->chans[i];
			return sub < d->chans[i].nsub && d->chans[i].subs[sub].sock != NULL
			           ? &d->chans[i].subs[sub]
			           : NULL;
		}
	}
	return NULL;
}

size_t fq_device_subchannels(fq_device *d, const char *channel)
{
	fqd_chan *c = NULL;

	find_sub(d, channel, 0, &c);
	return c != NULL ? c->nsub : 0;
}

fq_socket *fq_device_socket(fq_device *d, const char *channel, size_t sub)
{
	fqd_sub *s = find_sub(d, channel, sub, NULL);

	return s != NULL ? s->sock : NULL;
}

fq_transport *fq_device_transport(fq_device *d, const char *channel)
{
	fqd_chan *c = NULL;

	find_sub(d, channel, 0, &c);
	return c != NULL ? c->t : NULL;
}

int fq_device_msg_alloc(fq_device *d, const char *channel, size_t size, fq_msg **out)
{
	fq_transport *t = fq_device_transport(d, channel);

	return t == NULL ? FQ_ENOENT : fq_msg_alloc(t, size, out);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * One call with the device's timeout rules: -1 blocks (the socket's own timeout, FairMQ's
 * sndTimeoutMs/rcvTimeoutMs, still applies), 0 does not wait, > 0 polls the socket's fd.
 */
typedef int (*io_fn)(fq_socket *s, void *a, void *b, int flags);

static int timed(fq_device *d, fq_socket *s, io_fn fn, void *a, void *b, int timeout_ms, int want)
{
	int64_t deadline;
	int fd, rc;

	if (timeout_ms < 0)
		return fn(s, a, b, 0);
	if (timeout_ms == 0)
		return fn(s, a, b, FQ_DONTWAIT);
	deadline = now_ms() + timeout_ms;
	if (fq_socket_fd(s, &fd) != 0)
		fd = -1;
	for (;;) {
		int64_t left;

		rc = fn(s, a, b, FQ_DONTWAIT);
		if (rc != FQ_EAGAIN)
			return rc;
		if (fq_device_new_state_pending(d))
			return FQ_EINTR;
		left = deadline - now_ms();
		if (left <= 0)
			return FQ_ETIMEDOUT;
		if (fq_socket_events(s) & want)
			continue;
		if (fd >= 0) {
			struct pollfd p = {.fd = fd, .events = POLLIN};

			poll(&p, 1, left < 20 ? (int)left : 20);
		} else {
			struct timespec ts = {0, 1000000};

			nanosleep(&ts, NULL);
		}
	}
}

static int io_send(fq_socket *s, void *a, void *b, int flags)
{
	(void)b;
	return fq_send(s, a, flags);
}

static int io_sendv(fq_socket *s, void *a, void *b, int flags)
{
	return fq_sendv(s, a, *(size_t *)b, flags);
}

static int io_recv(fq_socket *s, void *a, void *b, int flags)
{
	(void)b;
	return fq_recv(s, a, flags);
}

static int io_recvv(fq_socket *s, void *a, void *b, int flags)
{
	(void)b;
	return fq_recvv(s, a, flags);
}

/* Count one message of nbytes in direction `dir` (FQD_MSGS_IN or FQD_MSGS_OUT). */
static void count(fq_device *d, fqd_sub *s, int dir, uint64_t nbytes)
{
	if (pthread_equal(pthread_self(), d->loop_thread)) {
		_Atomic uint64_t *c = &s->own[dir];

		atomic_store_explicit(&c[0], atomic_load_explicit(&c[0], memory_order_relaxed) + 1,
		                      memory_order_relaxed);
		atomic_store_explicit(&c[1],
		                      atomic_load_explicit(&c[1], memory_order_relaxed) + nbytes,
		                      memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&s->shared[dir], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->shared[dir + 1], nbytes, memory_order_relaxed);
	}
}

static void counters(const fqd_sub *s, uint64_t v[4])
{
	for (int i = 0; i < 4; i++)
		v[i] = atomic_load_explicit(&s->own[i], memory_order_relaxed) +
		       atomic_load_explicit(&s->shared[i], memory_order_relaxed);
}

int64_t fq_device_send(fq_device *d, const char *channel, size_t sub, fq_msg **msg, int timeout_ms)
{
	fqd_sub *s = find_sub(d, channel, sub, NULL);
	uint64_t size;
	int rc;

	if (s == NULL)
		return FQ_ENOENT;
	if (msg == NULL || *msg == NULL)
		return FQ_EINVAL;
	size = fq_msg_size(*msg);
	rc = timed(d, s->sock, io_send, msg, NULL, timeout_ms, FQ_POLLOUT);
	if (rc != 0)
		return rc;
	count(d, s, FQD_MSGS_OUT, size);
	return (int64_t)size;
}

int64_t fq_device_sendv(fq_device *d, const char *channel, size_t sub, fq_msg **parts, size_t n,
                        int timeout_ms)
{
	fqd_sub *s = find_sub(d, channel, sub, NULL);
	uint64_t size = 0;
	int rc;

	if (s == NULL)
		return FQ_ENOENT;
	if (parts == NULL || n == 0)
		return FQ_EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (parts[i] == NULL)
			return FQ_EINVAL;
		size += fq_msg_size(parts[i]);
	}
	rc = timed(d, s->sock, io_sendv, parts, &n, timeout_ms, FQ_POLLOUT);
	if (rc != 0)
		return rc;
	count(d, s, FQD_MSGS_OUT, size);
	return (int64_t)size;
}

int64_t fq_device_recv(fq_device *d, const char *channel, size_t sub, fq_msg **out, int timeout_ms)
{
	fqd_sub *s = find_sub(d, channel, sub, NULL);
	int rc;

	if (s == NULL)
		return FQ_ENOENT;
	if (out == NULL)
		return FQ_EINVAL;
	rc = timed(d, s->sock, io_recv, out, NULL, timeout_ms, FQ_POLLIN);
	if (rc != 0)
		return rc;
	count(d, s, FQD_MSGS_IN, fq_msg_size(*out));
	return (int64_t)fq_msg_size(*out);
}

int64_t fq_device_recvv(fq_device *d, const char *channel, size_t sub, fq_parts **out,
                        int timeout_ms)
{
	fqd_sub *s = find_sub(d, channel, sub, NULL);
	int rc;

	if (s == NULL)
		return FQ_ENOENT;
	if (out == NULL)
		return FQ_EINVAL;
	rc = timed(d, s->sock, io_recvv, out, NULL, timeout_ms, FQ_POLLIN);
	if (rc != 0)
		return rc;
	count(d, s, FQD_MSGS_IN, fq_parts_bytes(*out));
	return (int64_t)fq_parts_bytes(*out);
}

int fq_device_channel_stats(fq_device *d, const char *channel, size_t sub, fq_channel_stats *out)
{
	fqd_sub *s = find_sub(d, channel, sub, NULL);

	if (s == NULL)
		return FQ_ENOENT;
	if (out == NULL)
		return FQ_EINVAL;
	{
		uint64_t v[4];

		counters(s, v);
		out->msgs_in = v[FQD_MSGS_IN];
		out->bytes_in = v[FQD_BYTES_IN];
		out->msgs_out = v[FQD_MSGS_OUT];
		out->bytes_out = v[FQD_BYTES_OUT];
	}
	return 0;
}

/* ---- On-data dispatch ------------------------------------------------------------------- */

typedef struct input {
	fqd_chan *c;
	size_t sub;
} input;

/*
 * Receive one message or vector from `in` (flags: 0 or FQ_DONTWAIT) and hand it to the
 * channel's callback. Returns 1 to go on, 0 when the callback asked to leave RUNNING, or a
 * negative code from the receive (FQ_EAGAIN, FQ_EINTR, FQ_ETIMEDOUT, errors).
 */
static int deliver(fq_device *d, const input *in, int flags)
{
	fqd_sub *s = &in->c->subs[in->sub];
	fq_parts *parts = NULL;
	bool go_on = true;
	int rc;

	if (in->c->on_data != NULL) {
		fq_msg *m = NULL;

		rc = fq_recv(s->sock, &m, flags);
		if (rc == 0) {
			count(d, s, FQD_MSGS_IN, fq_msg_size(m));
			go_on = in->c->on_data(d, &m, in->sub, in->c->arg);
			fq_msg_free(m);
			return go_on ? 1 : 0;
		}
		if (rc != FQ_EPARTS)
			return rc;
		/* A vector for a single-message callback: its parts one after the other. */
		rc = fq_recvv(s->sock, &parts, flags);
		if (rc != 0)
			return rc;
		count(d, s, FQD_MSGS_IN, fq_parts_bytes(parts));
		for (size_t i = 0; i < fq_parts_count(parts) && go_on; i++) {
			fq_msg *part = fq_parts_take(parts, i);

			go_on = in->c->on_data(d, &part, in->sub, in->c->arg);
			fq_msg_free(part);
		}
		fq_parts_free(parts);
		return go_on ? 1 : 0;
	}
	rc = fq_recvv(s->sock, &parts, flags);
	if (rc != 0)
		return rc;
	count(d, s, FQD_MSGS_IN, fq_parts_bytes(parts));
	go_on = in->c->on_parts(d, &parts, in->sub, in->c->arg);
	fq_parts_free(parts);
	return go_on ? 1 : 0;
}

static bool benign(int rc)
{
	return rc == FQ_EAGAIN || rc == FQ_EINTR || rc == FQ_ETIMEDOUT;
}

int fqd_dispatch(fq_device *d)
{
	input *ins;
	size_t n = 0;
	fq_poller *p = NULL;
	int rc = bind_handlers(d); /* callbacks may be registered until RUNNING */

	if (rc != 0)
		return rc;
	for (size_t i = 0; i < d->nchans; i++) {
		if (d->chans[i].on_data != NULL || d->chans[i].on_parts != NULL)
			n += d->chans[i].nsub;
	}
	if (n == 0)
		return 0;
	ins = calloc(n, sizeof(*ins));
	if (ins == NULL)
		return FQ_ENOMEM;
	n = 0;
	for (size_t i = 0; i < d->nchans; i++) {
		if (d->chans[i].on_data == NULL && d->chans[i].on_parts == NULL)
			continue;
		for (size_t j = 0; j < d->chans[i].nsub; j++)
			ins[n++] = (input){&d->chans[i], j};
	}
	if (n == 1) {
		/* One input: a blocking receive loop; a transition request interrupts it. */
		while (!fq_device_new_state_pending(d)) {
			rc = deliver(d, &ins[0], 0);
			if (rc == 0)
				break;
			if (rc < 0 && !benign(rc))
				break;
			rc = 0;
		}
		free(ins);
		return rc < 0 ? rc : 0;
	}
	/* Several inputs, of any transports: one poller, fair rounds of up to 64 per input. */
	rc = fq_poller_open(&p);
	for (size_t i = 0; i < n && rc >= 0; i++)
		rc = fq_poller_add(p, ins[i].c->subs[ins[i].sub].sock, FQ_POLLIN);
	if (rc >= 0)
		rc = 0;
	while (rc == 0 && !fq_device_new_state_pending(d)) {
		int ready = fq_poller_wait(p, 200);

		if (ready < 0) {
			if (!benign(ready))
				rc = ready;
			continue;
		}
		for (size_t i = 0; i < n && rc == 0; i++) {
			if (!(fq_poller_events(p, i) & FQ_POLLIN))
				continue;
			for (int k = 0; k < 64; k++) {
				int r = deliver(d, &ins[i], FQ_DONTWAIT);

				if (r == 1)
					continue;
				if (r == 0)
					rc = 1; /* asked to stop */
				else if (!benign(r))
					rc = r;
				break;
			}
		}
	}
	fq_poller_close(p);
	free(ins);
	return rc < 0 ? rc : 0;
}

/* ---- Rate logging ----------------------------------------------------------------------- */

static void log_rates(fq_device *d, int64_t now)
{
	for (size_t i = 0; i < d->nchans; i++) {
		fqd_chan *c = &d->chans[i];

		if (c->rate_logging <= 0)
			continue;
		for (size_t j = 0; j < c->nsub; j++) {
			fqd_sub *s = &c->subs[j];
			uint64_t v[4];
			double secs = (double)(now - s->last_log_ms) / 1000.0;

			counters(s, v);
			if (now - s->last_log_ms < (int64_t)c->rate_logging * 1000)
				continue;
			if (secs > 0)
				fq_log(FQ_LOG_INFO, FQD_SUBSYS,
				       "%s: %s: in: %.0f msg/s (%.2f MB/s) out: %.0f msg/s (%.2f "
				       "MB/s)",
				       fq_device_id(d), s->label,
				       (double)(v[0] - s->logged[0]) / secs,
				       (double)(v[1] - s->logged[1]) / secs / 1e6,
				       (double)(v[2] - s->logged[2]) / secs,
				       (double)(v[3] - s->logged[3]) / secs / 1e6);
			memcpy(s->logged, v, sizeof(v));
			s->last_log_ms = now;
		}
	}
}

static void *rate_main(void *arg)
{
	fq_device *d = arg;
	struct timespec dl;

	pthread_mutex_lock(&d->lock);
	while (!d->rate_stop) {
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 1;
		pthread_cond_timedwait(&d->rate_cond, &d->lock, &dl);
		if (d->rate_stop)
			break;
		pthread_mutex_unlock(&d->lock);
		log_rates(d, now_ms());
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

void fqd_rate_start(fq_device *d)
{
	bool any = false;
	int64_t now = now_ms();

	for (size_t i = 0; i < d->nchans; i++) {
		any = any || d->chans[i].rate_logging > 0;
		for (size_t j = 0; j < d->chans[i].nsub; j++) {
			fqd_sub *s = &d->chans[i].subs[j];

			counters(s, s->logged);
			s->last_log_ms = now;
		}
	}
	if (!any || d->rate_running)
		return;
	d->rate_stop = false;
	d->rate_running = pthread_create(&d->rate_thread, NULL, rate_main, d) == 0;
}

void fqd_rate_stop(fq_device *d)
{
	if (!d->rate_running)
		return;
	pthread_mutex_lock(&d->lock);
	d->rate_stop = true;
	pthread_cond_broadcast(&d->rate_cond);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->rate_thread, NULL);
	d->rate_running = false;
}

/* ---- --print-channels ------------------------------------------------------------------- */

int fqd_print_channels(fq_device *d, FILE *out)
{
	char **names = NULL;
	size_t *subs = NULL, n = 0;
	int rc = fqc_channels_list(d->props, &names, &subs, &n);

	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < subs[i]; j++) {
			char type[32] = "", method[16] = "", addr[1024] = "", tr[64] = "";

			chan_prop(d, names[i], j, "type", type, sizeof(type));
			chan_prop(d, names[i], j, "method", method, sizeof(method));
			chan_prop(d, names[i], j, "address", addr, sizeof(addr));
			chan_prop(d, names[i], j, "transport", tr, sizeof(tr));
			fprintf(out, "%s[%zu]:%s:%s:%s:%s\n", names[i], j, type, method,
			        addr[0] ? addr : "unspecified", tr);
		}
		free(names[i]);
	}
	free(names);
	free(subs);
	return 0;
}
