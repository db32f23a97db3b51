/* The ofi transport's bootstrap connections (ofi_boot.h). */
#include "transport/ofi/ofi_boot.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SUBSYS "ofi"

/* host:port as an IPv4 or IPv6 socket address ("*" or "" = any). */
static int resolve(const char *host, int port, bool passive, struct sockaddr_storage *ss,
                   socklen_t *len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res;
	char service[16];
	int rc;

	if (port < 0 || port > 65535)
		return FQ_EADDRINVAL;
	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	if (host != NULL && (host[0] == '\0' || strcmp(host, "*") == 0))
		host = NULL;
	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		FQI_WARN(SUBSYS, "address %s:%d: %s", host ? host : "*", port, gai_strerror(rc));
		return FQ_EADDRINVAL;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int ofi_boot_listen(const char *host, int port, fqi_smc_mode smc, int *fd_out, int *port_out)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1, rc = resolve(host, port, true, &ss, &len);

	if (rc != 0)
		return rc;
	rc = fqi_tcp_socket(ss.ss_family, SOCK_NONBLOCK | SOCK_CLOEXEC, smc,
	                    "ofi bootstrap listener", &fd);
	if (rc < 0)
		return rc;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 128) != 0) {
		rc = errno == EADDRINUSE ? FQ_EADDRINUSE : fqi_syserr(errno);
		close(fd);
		return rc;
	}
	len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	*port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                                           : ((struct sockaddr_in *)&ss)->sin_port);
	*fd_out = fd;
	return 0;
}

static int out_room(ofi_boot_conn *c, size_t more)
{
	if (c->out_sent > 0 && c->out_sent == c->out_len)
		c->out_len = c->out_sent = 0;
	if (c->out_cap - c->out_len < more) {
		size_t cap = c->out_cap ? c->out_cap : 256;
		unsigned char *p;

		while (cap - c->out_len < more)
			cap *= 2;
		p = realloc(c->out, cap);
		if (p == NULL)
			return FQ_ENOMEM;
		c->out = p;
		c->out_cap = cap;
	}
	return 0;
}

static int queue_hello(ofi_boot_conn *c, const ofi_hello *mine)
{
	int n, rc = out_room(c, OFI_HELLO_MAX);

	if (rc != 0)
		return rc;
	n = ofi_encode_hello(c->out, OFI_HELLO_MAX, mine);
	if (n < 0)
		return n;
	c->out_len = (size_t)n;
	c->out_sent = 0;
	return 0;
}

static void conn_init(ofi_boot_conn *c, int fd)
{
	int one = 1;

	memset(c, 0, sizeof(*c));
	c->fd = fd;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails on Unix sockets */
}

/*
 * Take fd as c's socket and queue our hello; with sa, also start connecting (non-blocking).
 * On failure fd is closed and c holds nothing.
 */
static int conn_start(ofi_boot_conn *c, int fd, const ofi_hello *mine, const struct sockaddr *sa,
                      socklen_t len)
{
	int rc;

	conn_init(c, fd);
	rc = queue_hello(c, mine);
	if (rc == 0 && sa != NULL && connect(fd, sa, len) != 0) {
		if (errno == EINPROGRESS || errno == EAGAIN)
			c->connecting = true;
		else
			rc = errno == ECONNREFUSED || errno == ENOENT ? FQ_ECONNREFUSED
			                                              : fqi_syserr(errno);
	}
	if (rc != 0) {
		close(fd);
		c->fd = -1;
		free(c->out);
		c->out = NULL;
	}
	return rc;
}

int ofi_boot_accept(int lfd, int *fd_out)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? FQ_EAGAIN : fqi_syserr(errno);
	*fd_out = fd;
	return 0;
}

int ofi_boot_start(int fd, const ofi_hello *mine, ofi_boot_conn *c)
{
	return conn_start(c, fd, mine, NULL, 0);
}

int ofi_boot_connect(const char *host, int port, fqi_smc_mode smc, const ofi_hello *mine,
                     ofi_boot_conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, rc = resolve(host, port, false, &ss, &len);

	if (rc != 0)
		return rc;
	rc = fqi_tcp_socket(ss.ss_family, SOCK_NONBLOCK | SOCK_CLOEXEC, smc, "ofi bootstrap", &fd);
	if (rc < 0)
		return rc;
	return conn_start(c, fd, mine, (struct sockaddr *)&ss, len);
}

static int fill_sun(const char *path, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(sa->sun_path))
		return FQ_EADDRINVAL;
	memcpy(sa->sun_path, path, n);
	if (path[0] == '@') {
		sa->sun_path[0] = '\0';
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		*len = (socklen_t)sizeof(*sa);
	}
	return 0;
}

int ofi_boot_listen_unix(const char *path, int *fd_out)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd, rc = fill_sun(path, &sa, &len);

	if (rc != 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fqi_syserr(errno);
	rc = bind(fd, (struct sockaddr *)&sa, len) == 0 ? 0 : errno;
	if (rc == EADDRINUSE && path[0] != '@') {
		/* A file left by a process that died: nobody answers on it any more. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool alive = probe >= 0 && connect(probe, (struct sockaddr *)&sa, len) == 0;

		if (probe >= 0)
			close(probe);
		if (!alive) {
			unlink(path);
			rc = bind(fd, (struct sockaddr *)&sa, len) == 0 ? 0 : errno;
		}
	}
	if (rc == 0 && listen(fd, 128) != 0)
		rc = errno;
	if (rc != 0) {
		close(fd);
		return rc == EADDRINUSE ? FQ_EADDRINUSE : fqi_syserr(rc);
	}
	*fd_out = fd;
	return 0;
}

int ofi_boot_connect_unix(const char *path, const ofi_hello *mine, ofi_boot_conn *c)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd, rc = fill_sun(path, &sa, &len);

	if (rc != 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fqi_syserr(errno);
	return conn_start(c, fd, mine, (struct sockaddr *)&sa, len);
}

short ofi_boot_events(const ofi_boot_conn *c)
{
	return (short)(POLLIN | (c->connecting || c->out_sent < c->out_len ? POLLOUT : 0));
}

static int protocol_error(ofi_boot_conn *c)
{
	FQI_WARN(SUBSYS, "bootstrap peer dropped: %s", c->why);
	return FQ_EPROTO;
}

static int flush_out(ofi_boot_conn *c)
{
	while (!c->connecting && c->out_sent < c->out_len) {
		ssize_t n =
		    send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return errno == EPIPE || errno == ECONNRESET ? FQ_ECLOSED
			                                             : fqi_syserr(errno);
		}
		c->out_sent += (size_t)n;
	}
	return 0;
}

int ofi_boot_record(ofi_boot_conn *c, int type, const void *text, size_t len)
{
	int rc;

	if ((type != OFI_BOOT_SUB && type != OFI_BOOT_UNSUB) || len > OFI_BOOT_TEXT)
		return FQ_EINVAL;
	if (c->fd < 0)
		return FQ_ECLOSED;
	rc = out_room(c, 3 + len);
	if (rc != 0)
		return rc;
	c->out[c->out_len] = (unsigned char)type;
	c->out[c->out_len + 1] = (unsigned char)len;
	c->out[c->out_len + 2] = (unsigned char)(len >> 8);
	if (len > 0)
		memcpy(c->out + c->out_len + 3, text, len);
	c->out_len += 3 + len;
	return flush_out(c);
}

/* Take the complete records at the start of c->in; FQ_ECLOSED on BYE, FQ_EPROTO. */
static int take_records(ofi_boot_conn *c)
{
	size_t at = 0;
	int rc = 0;

	while (at < c->in_len && rc == 0) {
		unsigned char type = c->in[at];
		size_t len;

		if (type == OFI_BOOT_BYE) {
			rc = FQ_ECLOSED;
			break;
		}
		if ((type != OFI_BOOT_SUB && type != OFI_BOOT_UNSUB) || c->on_record == NULL) {
			snprintf(c->why, sizeof(c->why), "byte %#x after the hello", type);
			rc = protocol_error(c);
			break;
		}
		if (c->in_len - at < 3)
			break;
		len = (size_t)c->in[at + 1] | (size_t)c->in[at + 2] << 8;
		if (len > OFI_BOOT_TEXT) {
			snprintf(c->why, sizeof(c->why), "a record of %zu bytes (at most %u)", len,
			         OFI_BOOT_TEXT);
			rc = protocol_error(c);
			break;
		}
		if (c->in_len - at < 3 + len)
			break;
		c->on_record(c->record_arg, type, c->in + at + 3, len);
		at += 3 + len;
	}
	memmove(c->in, c->in + at, c->in_len - at);
	c->in_len -= at;
	return rc;
}

int ofi_boot_io(ofi_boot_conn *c, short revents)
{
	int result = 0, rc;

	if (c->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
			return 0;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0)
			return err == ECONNREFUSED ? FQ_ECONNREFUSED : fqi_syserr(err);
		c->connecting = false;
	}
	rc = flush_out(c);
	if (rc != 0)
		return rc;
	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);

		if (n == 0)
			return FQ_ECLOSED;
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return result;
			return errno == ECONNRESET ? FQ_ECLOSED : fqi_syserr(errno);
		}
		c->in_len += (size_t)n;
		if (!c->hello_done) {
			size_t used = 0;

			rc = ofi_decode_hello(c->in, c->in_len, &c->peer, &used, c->why,
			                      sizeof(c->why));
			if (rc == FQ_EPROTO)
				return protocol_error(c);
			if (rc != 0) {
				if (c->in_len >= OFI_HELLO_MAX) {
					snprintf(c->why, sizeof(c->why),
					         "a hello longer than %u bytes", OFI_HELLO_MAX);
					return protocol_error(c);
				}
				continue;
			}
			c->hello_done = true;
			result = 1;
			memmove(c->in, c->in + used, c->in_len - used);
			c->in_len -= used;
			/* Records that came with the hello wait for the caller to set on_record
			 * (it learns who the peer is from this result first). */
			if (c->in_len > 0 && c->on_record == NULL && c->in[0] != OFI_BOOT_BYE &&
			    c->in[0] != OFI_BOOT_SUB && c->in[0] != OFI_BOOT_UNSUB) {
				snprintf(c->why, sizeof(c->why), "byte %#x after the hello",
				         c->in[0]);
				return protocol_error(c);
			}
			if (c->in_len > 0 && c->in[0] == OFI_BOOT_BYE)
				return FQ_ECLOSED;
			return result;
		}
		rc = take_records(c);
		if (rc != 0)
			return rc;
	}
}

/* Records that arrived together with the hello, once the caller has set on_record. */
int ofi_boot_pending(ofi_boot_conn *c)
{
	return c->hello_done ? take_records(c) : 0;
}

void ofi_boot_close(ofi_boot_conn *c, bool bye)
{
	if (c->fd < 0)
		return;
	if (bye && !c->connecting) {
		char b = OFI_BOOT_BYE;

		(void)!send(c->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	close(c->fd);
	c->fd = -1;
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_sent = c->out_cap = 0;
}
