/*
 * The ofi transport's bootstrap connections: a TCP connection (SMC where asked for) at the
 * user's bind/connect address, on which the two sides exchange their HELLO (endpoint name,
 * provider, connection ids, credits, eager threshold) and which then stays open as the
 * liveness signal: EOF or an error on it means the peer is gone (libfabric's RDM endpoints
 * have no connection to lose), and BYE (one byte) means an orderly close. After the HELLO it
 * also carries records a socket needs in order but off the data path (subscriptions):
 *     u8 type ('S' subscribe, 'U' unsubscribe), u16 length (LE), the bytes
 * and BYE is the single byte 'B'.
 *
 * Every function is non-blocking; the transport's I/O thread drives them from its poll loop.
 * A connection is used by one thread at a time.
 */
#ifndef FQI_OFI_BOOT_H
#define FQI_OFI_BOOT_H

#include "platform/tcp.h"
#include "transport/ofi/ofi_proto.h"

#define OFI_BOOT_BYE   'B'
#define OFI_BOOT_SUB   'S'
#define OFI_BOOT_UNSUB 'U'
#define OFI_BOOT_TEXT  1024u /* longest record text (a subscription) */

/* Where a record that arrived goes (type OFI_BOOT_SUB or OFI_BOOT_UNSUB). */
typedef void (*ofi_boot_record_fn)(void *arg, int type, const void *text, size_t len);

typedef struct ofi_boot_conn {
	int fd;
	bool connecting;    /* a non-blocking connect in progress */
	unsigned char *out; /* queued bytes (the HELLO, then records), malloc'd */
	size_t out_len, out_sent, out_cap;
	unsigned char in[OFI_HELLO_MAX + 3 + OFI_BOOT_TEXT];
	size_t in_len;
	ofi_boot_record_fn on_record; /* NULL: records are refused as a protocol error */
	void *record_arg;
	bool hello_done; /* the peer's HELLO has arrived (in `peer`) */
	ofi_hello peer;
	char why[128]; /* the reason of the last FQ_EPROTO */
} ofi_boot_conn;

/*
 * Listen on host:port ("*" or "" = every address; port 0 = a free one). *port_out gets the
 * port bound. Errors: FQ_EADDRINVAL (host), FQ_EADDRINUSE, FQ_EUNAVAIL (smc require).
 */
int ofi_boot_listen(const char *host, int port, fqi_smc_mode smc, int *fd_out, int *port_out);
/*
 * The same over a Unix-domain stream socket at `path` (ipc://; '@' = Linux abstract name), for
 * peers on this host (the shm provider's natural bootstrap). A stale socket file nobody
 * answers on is replaced. Errors: FQ_EADDRINVAL (too long), FQ_EADDRINUSE.
 */
int ofi_boot_listen_unix(const char *path, int *fd_out);
int ofi_boot_connect_unix(const char *path, const ofi_hello *mine, ofi_boot_conn *c);
/* Accept one pending connection: its fd in *fd_out, or FQ_EAGAIN if none. */
int ofi_boot_accept(int lfd, int *fd_out);
/* Make an accepted fd the connection c and queue our HELLO on it (on failure fd is closed). */
int ofi_boot_start(int fd, const ofi_hello *mine, ofi_boot_conn *c);
/* Start connecting to host:port and queue our HELLO. Errors: FQ_EADDRINVAL, socket errors. */
int ofi_boot_connect(const char *host, int port, fqi_smc_mode smc, const ofi_hello *mine,
                     ofi_boot_conn *c);
/* Queue a record (OFI_BOOT_SUB / OFI_BOOT_UNSUB, len <= OFI_BOOT_TEXT) after the HELLO and
 * send what can go now. Errors: FQ_EINVAL, FQ_ENOMEM, FQ_ECLOSED. */
int ofi_boot_record(ofi_boot_conn *c, int type, const void *text, size_t len);
/* The poll events the connection waits for now (POLLIN, plus POLLOUT while sending). */
short ofi_boot_events(const ofi_boot_conn *c);
/*
 * Move the connection on after poll said `revents`: finish connecting, send what is queued,
 * read. Returns 0 (nothing new), 1 (the peer's HELLO has just arrived), FQ_ECLOSED (the peer
 * closed: EOF or BYE), FQ_ECONNREFUSED (the connect failed), FQ_EPROTO (the peer sent what
 * is not our protocol; the reason is in c->why and logged).
 */
int ofi_boot_io(ofi_boot_conn *c, short revents);
/*
 * After ofi_boot_io returned 1, set on_record and call this: it hands over the records that
 * came in the same read as the hello. 0, FQ_ECLOSED (BYE came too) or FQ_EPROTO.
 */
int ofi_boot_pending(ofi_boot_conn *c);
/* Send BYE (best effort, never blocks) and close; frees the queue. */
void ofi_boot_close(ofi_boot_conn *c, bool bye);

#endif /* FQI_OFI_BOOT_H */
