/*
 * Bootstrap connections over loopback: HELLO exchange, orderly close and peer loss, a
 * refused connect, a peer that is not fabriq, and SMC modes (this kernel has none).
 */
#include "transport/ofi/ofi_boot.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static ofi_hello hello(uint32_t conn, const char *prov)
{
	ofi_hello h = {.version = OFI_PROTO_VERSION,
	               .sock_type = 5,
	               .conn = conn,
	               .credits = 64,
	               .eager = 8192,
	               .name_len = 8,
	               .prov_len = (uint16_t)strlen(prov)};

	memset(h.name, (int)conn, 8);
	memcpy(h.prov, prov, h.prov_len);
	return h;
}

/* Drive c with poll until ofi_boot_io returns something other than 0 (bounded). */
/* Accept one pending connection and queue our hello on it (FQ_EAGAIN: none yet). */
static int accept_one(int lfd, const ofi_hello *mine, ofi_boot_conn *c)
{
	int fd, rc = ofi_boot_accept(lfd, &fd);

	return rc != 0 ? rc : ofi_boot_start(fd, mine, c);
}

static int drive(ofi_boot_conn *c)
{
	for (int i = 0; i < 500; i++) {
		struct pollfd p = {.fd = c->fd, .events = ofi_boot_events(c)};
		int rc;

		poll(&p, 1, 10);
		rc = ofi_boot_io(c, p.revents);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* One poll round (records arrive without any result code). */
static int step(ofi_boot_conn *c)
{
	struct pollfd p = {.fd = c->fd, .events = ofi_boot_events(c)};

	poll(&p, 1, 20);
	return ofi_boot_io(c, p.revents);
}

/* Drive both ends until each has the other's HELLO. */
static void exchange(ofi_boot_conn *a, ofi_boot_conn *b)
{
	int ra = 0, rb = 0;

	for (int i = 0; i < 500 && !(a->hello_done && b->hello_done); i++) {
		struct pollfd p[2] = {{.fd = a->fd, .events = ofi_boot_events(a)},
		                      {.fd = b->fd, .events = ofi_boot_events(b)}};

		poll(p, 2, 10);
		ra = ofi_boot_io(a, p[0].revents);
		rb = ofi_boot_io(b, p[1].revents);
		cr_assert_geq(ra, 0, "%s", fq_strerror(ra));
		cr_assert_geq(rb, 0, "%s", fq_strerror(rb));
	}
	cr_assert(a->hello_done && b->hello_done);
}

static void pair(fqi_smc_mode smc, int *lfd, ofi_boot_conn *a, ofi_boot_conn *b)
{
	ofi_hello ha = hello(1, "tcp;ofi_rxm"), hb = hello(2, "tcp;ofi_rxm");
	int port, rc;

	cr_assert_eq(ofi_boot_listen("127.0.0.1", 0, smc, lfd, &port), 0);
	cr_assert_gt(port, 0);
	cr_assert_eq(ofi_boot_connect("127.0.0.1", port, smc, &ha, a), 0);
	for (int i = 0; i < 500 && (rc = accept_one(*lfd, &hb, b)) == FQ_EAGAIN; i++)
		usleep(1000);
	cr_assert_eq(rc, 0);
}

Test(ofi_boot, hellos_cross_then_bye_and_loss_are_seen, .timeout = 30)
{
	ofi_boot_conn a, b;
	int lfd;

	pair(FQI_SMC_OFF, &lfd, &a, &b);
	exchange(&a, &b);
	cr_assert_eq(a.peer.conn, 2);
	cr_assert_eq(b.peer.conn, 1);
	cr_assert_eq(b.peer.credits, 64);
	cr_assert_eq(b.peer.eager, 8192);
	cr_assert_str_eq(b.peer.prov, "tcp;ofi_rxm");
	/* Quiet afterwards: nothing to report. */
	{
		struct pollfd p = {.fd = b.fd, .events = ofi_boot_events(&b)};

		poll(&p, 1, 20);
		cr_assert_eq(ofi_boot_io(&b, p.revents), 0);
	}
	ofi_boot_close(&a, true);
	cr_assert_eq(drive(&b), FQ_ECLOSED, "BYE");
	ofi_boot_close(&b, false);

	/* A peer that dies without BYE: EOF. */
	pair(FQI_SMC_OFF, &lfd, &a, &b);
	exchange(&a, &b);
	ofi_boot_close(&b, false);
	cr_assert_eq(drive(&a), FQ_ECLOSED);
	ofi_boot_close(&a, false);
	close(lfd);
}

Test(ofi_boot, a_connect_to_nobody_is_refused, .timeout = 30)
{
	ofi_hello h = hello(1, "shm");
	ofi_boot_conn c;
	int lfd, port, rc;

	/* A port that was free a moment ago. */
	cr_assert_eq(ofi_boot_listen("127.0.0.1", 0, FQI_SMC_OFF, &lfd, &port), 0);
	close(lfd);
	rc = ofi_boot_connect("127.0.0.1", port, FQI_SMC_OFF, &h, &c);
	if (rc == 0) {
		rc = drive(&c);
		ofi_boot_close(&c, false);
	}
	cr_assert_eq(rc, FQ_ECONNREFUSED, "%s", fq_strerror(rc));
	cr_assert_eq(ofi_boot_connect("no.such.host.invalid", 1, FQI_SMC_OFF, &h, &c),
	             FQ_EADDRINVAL);
}

Test(ofi_boot, a_peer_that_is_not_fabriq_is_dropped_with_a_reason, .timeout = 30)
{
	ofi_hello h = hello(2, "tcp;ofi_rxm");
	ofi_boot_conn b;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int lfd, port, s = socket(AF_INET, SOCK_STREAM, 0), rc;

	cr_assert_eq(ofi_boot_listen("127.0.0.1", 0, FQI_SMC_OFF, &lfd, &port), 0);
	sin.sin_port = htons((uint16_t)port);
	cr_assert_eq(connect(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(send(s, "GET / HTTP/1.0\r\n\r\n", 18, 0), 18);
	for (int i = 0; i < 500 && (rc = accept_one(lfd, &h, &b)) == FQ_EAGAIN; i++)
		usleep(1000);
	cr_assert_eq(rc, 0);
	cr_assert_eq(drive(&b), FQ_EPROTO);
	cr_assert_not_null(strstr(b.why, "magic"), "%s", b.why);
	ofi_boot_close(&b, false);
	close(s);
	close(lfd);
}

Test(ofi_boot, bytes_after_the_hello_that_are_not_bye_drop_the_peer, .timeout = 30)
{
	ofi_boot_conn a, b;
	int lfd;

	pair(FQI_SMC_OFF, &lfd, &a, &b);
	exchange(&a, &b);
	cr_assert_eq(send(a.fd, "x", 1, 0), 1);
	cr_assert_eq(drive(&b), FQ_EPROTO);
	cr_assert_not_null(strstr(b.why, "after the hello"), "%s", b.why);
	ofi_boot_close(&a, false);
	ofi_boot_close(&b, false);
	close(lfd);
}

struct records {
	int n;
	int type[8];
	char text[8][32];
};

static void on_record(void *arg, int type, const void *text, size_t len)
{
	struct records *r = arg;

	cr_assert(r->n < 8 && len < sizeof(r->text[0]));
	r->type[r->n] = type;
	memcpy(r->text[r->n], text, len);
	r->text[r->n][len] = '\0';
	r->n++;
}

Test(ofi_boot, records_after_the_hello_arrive_in_order_even_byte_by_byte, .timeout = 30)
{
	ofi_boot_conn a, b;
	struct records got = {0};
	unsigned char raw[] = {OFI_BOOT_UNSUB, 2, 0, 'x', 'y'};
	unsigned char big[] = {OFI_BOOT_SUB, 0xff, 0xff};
	int lfd;

	pair(FQI_SMC_OFF, &lfd, &a, &b);
	exchange(&a, &b);
	b.on_record = on_record;
	b.record_arg = &got;
	cr_assert_eq(ofi_boot_pending(&b), 0);
	cr_assert_eq(ofi_boot_record(&a, OFI_BOOT_SUB, "topic", 5), 0);
	cr_assert_eq(ofi_boot_record(&a, OFI_BOOT_SUB, "", 0), 0);
	cr_assert_eq(ofi_boot_record(&a, 'Z', "", 0), FQ_EINVAL);
	cr_assert_eq(ofi_boot_record(&a, OFI_BOOT_SUB, "", OFI_BOOT_TEXT + 1), FQ_EINVAL);
	for (int i = 0; i < 100 && got.n < 2; i++)
		cr_assert_eq(step(&b), 0);
	/* A record split over several reads. */
	for (size_t i = 0; i < sizeof(raw); i++) {
		cr_assert_eq(send(a.fd, raw + i, 1, 0), 1);
		usleep(2000);
		cr_assert_eq(step(&b), 0);
	}
	cr_assert_eq(got.n, 3);
	cr_assert(got.type[0] == OFI_BOOT_SUB && strcmp(got.text[0], "topic") == 0);
	cr_assert(got.type[1] == OFI_BOOT_SUB && got.text[1][0] == '\0');
	cr_assert(got.type[2] == OFI_BOOT_UNSUB && strcmp(got.text[2], "xy") == 0);
	/* A length above the limit drops the peer. */
	cr_assert_eq(send(a.fd, big, sizeof(big), 0), 3);
	usleep(2000);
	cr_assert_eq(step(&b), FQ_EPROTO);
	cr_assert_not_null(strstr(b.why, "record of"), "%s", b.why);
	ofi_boot_close(&a, false);
	ofi_boot_close(&b, false);
	close(lfd);
}

Test(ofi_boot, smc_try_falls_back_and_require_fails_here, .timeout = 30)
{
	ofi_boot_conn a, b;
	int lfd, port;

	fqi_smc_inject_failure(EAFNOSUPPORT); /* as this kernel, also on one with SMC */
	pair(FQI_SMC_TRY, &lfd, &a, &b);
	exchange(&a, &b);
	ofi_boot_close(&a, true);
	ofi_boot_close(&b, true);
	close(lfd);
	cr_assert_eq(ofi_boot_listen("127.0.0.1", 0, FQI_SMC_REQUIRE, &lfd, &port), FQ_EUNAVAIL);
	fqi_smc_inject_failure(0);
}
