/*
 * The ofi transport's bootstrap connections: a TCP connection (SMC where asked for) at the
 * user's bind/connect address, on which the two sides exchange their HELLO (endpoint name,
 * provider, connection ids, credits, eager threshold) and which then stays open as the
 * liveness signal: EOF or an error on it means the peer is gone (libfabric's RDM endpoints
 * have no connection to lose), and BYE (one byte) means an orderly close.
 *
 * Every function is non-blocking; the transport's I/O thread drives them from its poll loop.
 * A connection is used by one thread at a time.
 */
#ifndef FQI_OFI_BOOT_H
#define FQI_OFI_BOOT_H

#include "platform/tcp.h"
#include "transport/ofi/ofi_proto.h"

#define OFI_BOOT_BYE 'B'

typedef struct ofi_boot_conn {
	int fd;
	bool connecting; /* a non-blocking connect in progress */
	unsigned char out[OFI_HELLO_MAX];
	size_t out_len, out_sent;
	unsigned char in[OFI_HELLO_MAX];
	size_t in_len;
	bool hello_done; /* the peer's HELLO has arrived (in `peer`) */
	ofi_hello peer;
	char why[128]; /* the reason of the last FQ_EPROTO */
} ofi_boot_conn;

/*
 * Listen on host:port ("*" or "" = every address; port 0 = a free one). *port_out gets the
 * port bound. Errors: FQ_EADDRINVAL (host), FQ_EADDRINUSE, FQ_EUNAVAIL (smc require).
 */
int ofi_boot_listen(const char *host, int port, fqi_smc_mode smc, int *fd_out, int *port_out);
/* Accept one pending connection (FQ_EAGAIN if none) and queue our HELLO on it. */
int ofi_boot_accept(int lfd, const ofi_hello *mine, ofi_boot_conn *c);
/* Start connecting to host:port and queue our HELLO. Errors: FQ_EADDRINVAL, socket errors. */
int ofi_boot_connect(const char *host, int port, fqi_smc_mode smc, const ofi_hello *mine,
                     ofi_boot_conn *c);
/* The poll events the connection waits for now (POLLIN, plus POLLOUT while sending). */
short ofi_boot_events(const ofi_boot_conn *c);
/*
 * Move the connection on after poll said `revents`: finish connecting, send what is queued,
 * read. Returns 0 (nothing new), 1 (the peer's HELLO has just arrived), FQ_ECLOSED (the peer
 * closed: EOF or BYE), FQ_ECONNREFUSED (the connect failed), FQ_EPROTO (the peer sent what
 * is not our protocol; the reason is in c->why and logged).
 */
int ofi_boot_io(ofi_boot_conn *c, short revents);
/* Send BYE (best effort, never blocks) and close. */
void ofi_boot_close(ofi_boot_conn *c, bool bye);

#endif /* FQI_OFI_BOOT_H */
