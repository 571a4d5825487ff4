/*
 * test_tls.c - the TLS engine core, in memory: a server and a client
 * connected back to back through buffers. Right CA, right pin, wrong pin,
 * wrong name, expired, unknown CA; a rejected server gets no application
 * byte. Then the event-loop contract over a socketpair (tls_app_pending,
 * the last record before EOF is never lost) and the small buffer modes.
 *
 * Test certificates (openssl): a P-256 CA "Test CA"; server certificates
 * for DNS:server.test (EC P-256 and RSA 2048) signed by it, valid until
 * 2036; OTHER_CERT a self-signed certificate of an unrelated key. Pins by
 *   openssl x509 -in C -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "localca.h"
#include "pem.h"
#include "tls.h"

static const char CA_CERT[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBeDCCAR+gAwIBAgIUeSI9hNNrYZFpHBUGhgYxwRAR2kQwCgYIKoZIzj0EAwIw\n"
	"EjEQMA4GA1UEAwwHVGVzdCBDQTAeFw0yNjExMjgyMzM2MDZaFw00NjExMjMyMzM2\n"
	"MDZaMBIxEDAOBgNVBAMMB1Rlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n"
	"AAQg0VF5E806q/+gI9D6FpUBasgcR8YkH5IfwpnShROvngMjeYEVs0B3GDoq0zhQ\n"
	"96X9aXKFRQVtI99EQavL3Zwgo1MwUTAdBgNVHQ4EFgQUnL4iOD7WfLfN6l+IygZV\n"
	"ipPBd4kwHwYDVR0jBBgwFoAUnL4iOD7WfLfN6l+IygZVipPBd4kwDwYDVR0TAQH/\n"
	"BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBDd4I46uXDLpv+ykxRcM4En9QkD2Zw\n"
	"nZ8hYXo8jR7/1QIgO/XqKyAJVhuQpgwQrCFn1OwRLlSOh4MhX9eawUwLR7E=\n"
	"-----END CERTIFICATE-----\n";
static const char SRV_CERT[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBvzCCAWWgAwIBAgIUKfWIK9HbDx/9nVOcHJsncfUEME8wCgYIKoZIzj0EAwIw\n"
	"EjEQMA4GA1UEAwwHVGVzdCBDQTAeFw0yNjExMjgyMzM2MDZaFw0zNjExMjUyMzM2\n"
	"MDZaMBYxFDASBgNVBAMMC3NlcnZlci50ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0D\n"
	"AQcDQgAE20W+OGXpjhGfaV60R/9GmYJlDoLcg5xbz7nM8bnmx/toyaGK8cRe8j/1\n"
	"dELzhPn6V0jSrrvXV2YBWxrlDjdcm6OBlDCBkTAMBgNVHRMBAf8EAjAAMA4GA1Ud\n"
	"DwEB/wQEAwIFoDATBgNVHSUEDDAKBggrBgEFBQcDATAcBgNVHREEFTATggtzZXJ2\n"
	"ZXIudGVzdIcEfwAAATAdBgNVHQ4EFgQUbRPeRSX5jJvDV3ATZm8hb8CawF8wHwYD\n"
	"VR0jBBgwFoAUnL4iOD7WfLfN6l+IygZVipPBd4kwCgYIKoZIzj0EAwIDSAAwRQIg\n"
	"Xk6tYSJEFY2UnXywh1dpOyf7+iaQECLwcjBM+DbwfXkCIQDijIOpQjFpa2ZCXCD7\n"
	"1wI0/BMVJFwRgl9yTIq92aRLAQ==\n"
	"-----END CERTIFICATE-----\n";
static const char SRV_KEY[] =
	"-----BEGIN EC PRIVATE KEY-----\n"
	"MHcCAQEEIB8dkHqhpNw41YCRpWlQzclpNYKTNN47Eex0w9gaFC5joAoGCCqGSM49\n"
	"AwEHoUQDQgAE20W+OGXpjhGfaV60R/9GmYJlDoLcg5xbz7nM8bnmx/toyaGK8cRe\n"
	"8j/1dELzhPn6V0jSrrvXV2YBWxrlDjdcmw==\n"
	"-----END EC PRIVATE KEY-----\n";
static const char SRVRSA_CERT[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIICiTCCAjCgAwIBAgIUKfWIK9HbDx/9nVOcHJsncfUEMFAwCgYIKoZIzj0EAwIw\n"
	"EjEQMA4GA1UEAwwHVGVzdCBDQTAeFw0yNjExMjgyMzM2MDdaFw0zNjExMjUyMzM2\n"
	"MDdaMBYxFDASBgNVBAMMC3NlcnZlci50ZXN0MIIBIjANBgkqhkiG9w0BAQEFAAOC\n"
	"AQ8AMIIBCgKCAQEApwhRgyMcvPlezTzzO6Dyyfi7ucIjxKjUgVvH2xuo04pPPx1b\n"
	"VtjDyk8JjhkU3V73CX2Bw2gGn56cRQAGyCJnfGkQpVGEJYDl//HEM9eeP9ASe/Co\n"
	"iyNEBMdMM7oYWXsf36rTEh/bDPuIittvPb3VTmdiZG0gwlr4m1NeIz34s4xYx4yF\n"
	"DGQv0c8Vs5xJRYgv9JkpCkgsjshSpSdlGetA4x1XeINAkQM79iblyG/CHRoZoVoA\n"
	"IHASq631oVK0nSXYDWVv3jujfGIM8wBvYJYp9MJNFx51XTaM5yZdEx+zB9OXgVtJ\n"
	"YqWZ0iDNsAhu41piRbNiXUpYUujwh33aCz8XYwIDAQABo4GUMIGRMAwGA1UdEwEB\n"
	"/wQCMAAwDgYDVR0PAQH/BAQDAgWgMBMGA1UdJQQMMAoGCCsGAQUFBwMBMBwGA1Ud\n"
	"EQQVMBOCC3NlcnZlci50ZXN0hwR/AAABMB0GA1UdDgQWBBTSrAG4yOvUc1gloy+q\n"
	"SeGvCaDOXDAfBgNVHSMEGDAWgBScviI4PtZ8t83qX4jKBlWKk8F3iTAKBggqhkjO\n"
	"PQQDAgNHADBEAiBB7+FCPn2ibD5Q6LKbsy1ZHU4ue/Uf0I8Snp16th7xjwIgI2EG\n"
	"mWm/QAwbpCLys30/NwtyfkSnJ5GJFG+7AoL7Ksk=\n"
	"-----END CERTIFICATE-----\n";
static const char SRVRSA_KEY[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCnCFGDIxy8+V7N\n"
	"PPM7oPLJ+Lu5wiPEqNSBW8fbG6jTik8/HVtW2MPKTwmOGRTdXvcJfYHDaAafnpxF\n"
	"AAbIImd8aRClUYQlgOX/8cQz154/0BJ78KiLI0QEx0wzuhhZex/fqtMSH9sM+4iK\n"
	"2289vdVOZ2JkbSDCWvibU14jPfizjFjHjIUMZC/RzxWznElFiC/0mSkKSCyOyFKl\n"
	"J2UZ60DjHVd4g0CRAzv2JuXIb8IdGhmhWgAgcBKrrfWhUrSdJdgNZW/eO6N8Ygzz\n"
	"AG9glin0wk0XHnVdNoznJl0TH7MH05eBW0lipZnSIM2wCG7jWmJFs2JdSlhS6PCH\n"
	"fdoLPxdjAgMBAAECggEAAYBMoz4Uiwo+tN+AXB/VLsWCgmfhRGo0BrmZcTmtacFL\n"
	"dwi/gmdOUyokrtdA3cB1vesX2Ha94H9fbitS5EeS4IZdNO8nneKrroIwvjqI3I/1\n"
	"KpH+Icn+WYClCa35fAxkO/FgFkCdCl/UWVMhi8+B9ENvmfF1IuoIY/T62pw6+Pod\n"
	"NprsPngrKaRRtIOWsTCybq7dHd2hitb88S2gmYSB7urjAZP0S/SA3llvEbzMmUI5\n"
	"S/d7XG65B7Ik+mrKXf7apUHuxXKlw2PiqOTxSfHELOjRquU6CEt1fGLRQdGATR4+\n"
	"OKWhApM4p44Mp4zsUdu4STMZ0W4AfSsxorjE1DFc2QKBgQDPgAHypN1gvu3/IcSw\n"
	"BqMK12vlEnILsOJjzkPOoswU5FIhCYfRi3pvXNhIQLMuvADZCQBkxWovmOY8bs+f\n"
	"hEJuaV1SGuL9SRKi6nccfh6QI6ExrrDTP9VUS2FAo+dSYEOgM2BDaPKsrs6Nw+Kq\n"
	"ePaXLvutMemwIBGzGvSgPJofVQKBgQDOEuQsGD5if1QdmKstHiDaoE7RxtUU7VCD\n"
	"aYxSmWlMaH0C8dMRLgrU68GcliMA4dPnaYFzaAaOIzhvf/pEIXwgI5Ak/Ik8kVgV\n"
	"z1ZkUbWzme7fjWsOi/+GCnhV9u5wCD/YfkpGpba8/aMANHsDGRiJ7bGdd/OZWMq4\n"
	"dltZjV2r1wKBgDAvhsRFOs+DpxsPSXCjKeuTmQ+qF+fVHM2WkbKDpabYWqYnY23q\n"
	"2PTRd7xXogShTgUYjQnZuk3xUM4J4ZcmjJK9TxmI+ttcw8Indp+cPha033L9ITz9\n"
	"XtnjY2MybL55clrac2lUDr7BHWBYc+OokYMMOw++PolS+SlBgjtPt269AoGAZNmX\n"
	"8wB2X2vi9Y0GkNEC0RvNFxrQoyo00eswsifEAZHNREimu+ylfmhWW1Saks7yDnly\n"
	"0dDiDGOuNdsS1o7wmSXuYDt6yjpzOlE6/WODof6+iYdDEl5vUeED3UY4kHlpDYFY\n"
	"xlRJJxqVz/7fCLgaaz35Q5A1liF/LGE3+Y6WfgcCgYEAx0crhDO5zMhzSGjMDDkn\n"
	"2l/xckwxQUjG6as1o+RHRjWtN2PiOj/fBJefT2oY5ZWbTfG9i9KfMmyLvcO1o2S+\n"
	"9IoKsy0R5gXiiwpFOQvSTLayWSVixiqhkajxhHwxtWTVZcc6hAAVlezEoyVHWyuw\n"
	"8QgznWZP97nz97wRqI5Vm1E=\n"
	"-----END PRIVATE KEY-----\n";
static const char OTHER_CERT[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBeTCCAR+gAwIBAgIUXYZjY+Q9QKhQTwWqp7QLGMvn/ukwCgYIKoZIzj0EAwIw\n"
	"EjEQMA4GA1UEAwwHZWMudGVzdDAeFw0yNjExMjgyMzMzMDNaFw0zNjExMjUyMzMz\n"
	"MDNaMBIxEDAOBgNVBAMMB2VjLnRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n"
	"AAQmQyqqpeTXekmKUiwvD5LgV9z4DHng63FDZ3vMqv7gV0ciFSP54S96vqdc6bYI\n"
	"VLJR+Gk5s7+JTUgsO6VlWv4Jo1MwUTAdBgNVHQ4EFgQUwh0jdLWItpw7g0jovSOH\n"
	"G5DUMeAwHwYDVR0jBBgwFoAUwh0jdLWItpw7g0jovSOHG5DUMeAwDwYDVR0TAQH/\n"
	"BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAtMhROXpZ6VwW0TBUFKlckW1ji7sq\n"
	"QqMVNnIL4gOTvUQCICPq1XDDm783FAJA52weOknZhsF0cqGqtDMKXB9kG+xW\n"
	"-----END CERTIFICATE-----\n";

static const char SRV_PIN[] = "421aff95a96d615c5d0b5ef5605b5cef7fdddaac4b2be452872bf394a10204d7";
static const char SRVRSA_PIN[] = "2a037b0ce03b9184a970c2815efb0f6e5e4de6cdaf8b6d1db5bd5b3b65fee254";
/* 2030-01-01, when the test certificates are valid, and 2040-01-01. */
#define T_VALID 1893456000LL
#define T_LATE 2208988800LL

static struct tls_conn srv, cli;
static struct tls_server_config scfg;
static struct tls_client_config ccfg;
static struct pem_anchors ca, other;
static char err[256];

/* Ciphertext on its way from one side to the other (a socket buffer). */
struct pipe {
	unsigned char buf[4096];
	size_t off, len;
};

static struct pipe c2s, s2c;

/* Moves what it can from `from` through p into `to`; 1 on progress. A
 * finished receiver drops what it refuses, like a closed socket. */
static int flow(struct tls_conn *from, struct pipe *p, struct tls_conn *to)
{
	int moved = 0;

	for (;;) {
		ssize_t n;

		if (p->off == p->len) {
			n = tls_drain(from, p->buf, sizeof p->buf);
			if (n <= 0)
				return moved;
			p->off = 0;
			p->len = (size_t)n;
			moved = 1;
		}
		n = tls_feed(to, p->buf + p->off, p->len - p->off);
		if (n < 0)
			p->off = p->len;
		else if (n == 0)
			return moved;	/* receiver busy: its application must read */
		else
			p->off += (size_t)n;
		moved = 1;
	}
}

/* Moves ciphertext both ways until neither side has anything to say. */
static void shuttle_pair(struct tls_conn *c, struct tls_conn *s)
{
	while (flow(c, &c2s, s) | flow(s, &s2c, c))
		;
}

static void shuttle(void)
{
	shuttle_pair(&cli, &srv);
}

static void reset_pipes(void)
{
	c2s.off = c2s.len = 0;
	s2c.off = s2c.len = 0;
}

static void server_setup(const char *cert, const char *key)
{
	tls_server_config_free(&scfg);
	CHECK_EQ(tls_server_config_parse(&scfg, cert, strlen(cert), key, strlen(key),
					 err, sizeof err), 0);
}

static void client_ca(const struct pem_anchors *a)
{
	memset(&ccfg, 0, sizeof ccfg);
	ccfg.anchors = a->ta;
	ccfg.anchor_count = a->count;
	ccfg.now = T_VALID;
}

static void client_pin(const char *pin)
{
	memset(&ccfg, 0, sizeof ccfg);
	ccfg.have_pin = 1;
	CHECK_EQ(tls_pin_parse(pin, ccfg.pin), 0);
}

/* Handshake, then "hello" both ways, then close_notify. */
static void expect_ok(const char *name)
{
	char buf[64];

	reset_pipes();
	CHECK_EQ(tls_server_start(&srv, &scfg), 0);
	CHECK_EQ(tls_client_start(&cli, &ccfg, name), 0);
	CHECK_EQ(tls_write(&cli, "early", 5), -1);	/* nothing before the handshake */
	CHECK_EQ(errno, EAGAIN);
	shuttle();
	CHECK(tls_established(&cli));
	CHECK(tls_established(&srv));
	CHECK_STREQ(tls_error(&cli), "");
	CHECK_EQ(tls_write(&cli, "hel", 3), 3);	/* two writes, one record */
	CHECK_EQ(tls_write(&cli, "lo", 2), 2);
	shuttle();
	CHECK_EQ(tls_read(&srv, buf, sizeof buf), 5);
	CHECK_MEMEQ(buf, "hello", 5);
	CHECK_EQ(tls_read(&srv, buf, sizeof buf), -1);
	CHECK_EQ(errno, EAGAIN);
	CHECK_EQ(tls_write(&srv, "world", 5), 5);
	shuttle();
	CHECK_EQ(tls_read(&cli, buf, sizeof buf), 5);
	CHECK_MEMEQ(buf, "world", 5);
	tls_close(&cli);
	shuttle();
	CHECK_EQ(tls_read(&srv, buf, sizeof buf), 0);
	CHECK_EQ(tls_read(&cli, buf, sizeof buf), 0);
}

/* The handshake fails on the client; the error names the seen key; the
 * server never gets application data. */
static void expect_reject(const char *name, const char *why, const char *seen_pin)
{
	char buf[64], pin[TLS_PIN_HEX];

	reset_pipes();
	CHECK_EQ(tls_server_start(&srv, &scfg), 0);
	CHECK_EQ(tls_client_start(&cli, &ccfg, name), 0);
	shuttle();
	CHECK(!tls_established(&cli));
	CHECK(tls_finished(&cli));
	CHECK(strstr(tls_error(&cli), why) != NULL);
	if (seen_pin) {
		CHECK(strstr(tls_error(&cli), seen_pin) != NULL);
		CHECK_EQ(tls_peer_pin(&cli, pin), 0);
		CHECK_STREQ(pin, seen_pin);
	}
	if (!strstr(tls_error(&cli), why))
		fprintf(stderr, "  error was: %s\n", tls_error(&cli));
	CHECK_EQ(tls_write(&cli, "secret", 6), -1);
	CHECK_EQ(errno, EPROTO);
	shuttle();
	CHECK_EQ(tls_read(&srv, buf, sizeof buf), -1);
	CHECK(!tls_established(&srv));
}

static void t_ca_ok(void)
{
	server_setup(SRV_CERT, SRV_KEY);
	client_ca(&ca);
	expect_ok("server.test");
	CHECK_EQ(br_ssl_engine_get_version(cli.eng), BR_TLS12);
}

static void t_ca_ok_rsa(void)
{
	server_setup(SRVRSA_CERT, SRVRSA_KEY);
	client_ca(&ca);
	expect_ok("server.test");
	server_setup(SRV_CERT, SRV_KEY);
}

static void t_pin_ok(void)
{
	client_pin(SRV_PIN);
	expect_ok(NULL);
	client_pin(SRV_PIN);
	expect_ok("any.name.is.fine");
}

static void t_wrong_pin(void)
{
	client_pin(SRVRSA_PIN);
	expect_reject("server.test", "does not match the pin", SRV_PIN);
	CHECK(strstr(tls_error(&cli), SRVRSA_PIN) != NULL);	/* the expected one too */
}

static void t_wrong_name(void)
{
	client_ca(&ca);
	expect_reject("mail.example.com", "does not match the server name", SRV_PIN);
}

static void t_expired(void)
{
	client_ca(&ca);
	ccfg.now = T_LATE;
	expect_reject("server.test", "expired", SRV_PIN);
}

static void t_unknown_ca(void)
{
	client_ca(&other);
	expect_reject("server.test", "not trusted", SRV_PIN);
}

static void t_ca_and_pin(void)
{
	client_ca(&ca);
	ccfg.have_pin = 1;
	CHECK_EQ(tls_pin_parse(SRV_PIN, ccfg.pin), 0);
	expect_ok("server.test");
	ccfg.pin[0] ^= 1;
	expect_reject("server.test", "does not match the pin", SRV_PIN);
}

static void t_refuse_unverified(void)
{
	memset(&ccfg, 0, sizeof ccfg);
	CHECK_EQ(tls_client_start(&cli, &ccfg, "server.test"), -1);
	CHECK(strstr(tls_error(&cli), "refusing") != NULL);
	client_ca(&ca);
	CHECK_EQ(tls_client_start(&cli, &ccfg, NULL), -1);
}

static void t_key_mismatch(void)
{
	struct tls_server_config bad;

	CHECK_EQ(tls_server_config_parse(&bad, SRV_CERT, strlen(SRV_CERT), SRVRSA_KEY,
					 strlen(SRVRSA_KEY), err, sizeof err), -1);
	CHECK(strstr(err, "does not belong") != NULL);
	CHECK_EQ(tls_server_config_parse(&bad, SRVRSA_CERT, strlen(SRVRSA_CERT), SRVRSA_KEY,
					 strlen(SRVRSA_KEY), err, sizeof err), 0);
	tls_server_config_free(&bad);
}

static void t_pin_parse(void)
{
	unsigned char pin[32], pin2[32];
	char hex[TLS_PIN_HEX];
	char colons[100];
	int i;

	CHECK_EQ(tls_pin_parse(SRV_PIN, pin), 0);
	tls_pin_format(pin, hex);
	CHECK_STREQ(hex, SRV_PIN);
	for (i = 0; i < 32; i++)
		snprintf(colons + 3 * i, 4, "%02X:", pin[i]);
	colons[95] = '\0';
	CHECK_EQ(tls_pin_parse(colons, pin2), 0);
	CHECK_MEMEQ(pin, pin2, 32);
	snprintf(colons, sizeof colons, "sha256:%s", SRV_PIN);
	CHECK_EQ(tls_pin_parse(colons, pin2), 0);
	CHECK_MEMEQ(pin, pin2, 32);
	/* echo 421aff...d7 | xxd -r -p | base64 */
	CHECK_EQ(tls_pin_parse("sha256//Qhr/laltYVxdC171YFtc73/d2qxLK+RShyvzlKECBNc=", pin2), 0);
	CHECK_MEMEQ(pin, pin2, 32);
	CHECK_EQ(tls_pin_parse("", pin2), -1);
	CHECK_EQ(tls_pin_parse("421aff", pin2), -1);
	CHECK_EQ(tls_pin_parse("sha256//Qhr/laltYVxdC171YFtc73/d2qxLK+RShyvzlKECBNc", pin2), -1);
	snprintf(colons, sizeof colons, "%sff", SRV_PIN);
	CHECK_EQ(tls_pin_parse(colons, pin2), -1);
	snprintf(colons, sizeof colons, "%s", SRV_PIN);
	colons[10] = 'g';
	CHECK_EQ(tls_pin_parse(colons, pin2), -1);
}

/* 200 KB through the engines: writes stop (EAGAIN) when a record waits
 * to be sent, and resume after the shuttle. */
static void t_bulk(void)
{
	static unsigned char out[200000], in[200000];
	size_t sent = 0, got = 0, i;
	int rounds = 0;

	for (i = 0; i < sizeof out; i++)
		out[i] = (unsigned char)(i * 7 + i / 251);
	server_setup(SRV_CERT, SRV_KEY);
	client_pin(SRV_PIN);
	reset_pipes();
	CHECK_EQ(tls_server_start(&srv, &scfg), 0);
	CHECK_EQ(tls_client_start(&cli, &ccfg, NULL), 0);
	shuttle();
	while (got < sizeof in && rounds++ < 1000) {
		ssize_t n;

		while (sent < sizeof out && (n = tls_write(&cli, out + sent, sizeof out - sent)) > 0)
			sent += (size_t)n;
		CHECK(sent == sizeof out || errno == EAGAIN);
		shuttle();
		while ((n = tls_read(&srv, in + got, sizeof in - got)) > 0)
			got += (size_t)n;
	}
	CHECK_EQ(got, sizeof in);
	CHECK_MEMEQ(in, out, sizeof in);
}

/* Write, write, close at once (an HTTP answer): all arrives, then the end. */
static void t_write_then_close(void)
{
	char buf[64];

	client_pin(SRV_PIN);
	reset_pipes();
	CHECK_EQ(tls_server_start(&srv, &scfg), 0);
	CHECK_EQ(tls_client_start(&cli, &ccfg, NULL), 0);
	shuttle();
	CHECK_EQ(tls_write(&srv, "echo\n", 5), 5);
	CHECK_EQ(tls_write(&srv, "bye\n", 4), 4);
	tls_close(&srv);
	CHECK_EQ(tls_write(&srv, "late", 4), -1);
	shuttle();
	CHECK_EQ(tls_read(&cli, buf, sizeof buf), 9);
	CHECK_MEMEQ(buf, "echo\nbye\n", 9);
	shuttle();	/* close_notify waited behind the unread data */
	CHECK_EQ(tls_read(&cli, buf, sizeof buf), 0);
}

/* Garbage instead of a ClientHello: the server fails, nothing is read. */
static void t_garbage(void)
{
	static const char junk[] = "GET / HTTP/1.0\r\n\r\n";
	char buf[16];

	reset_pipes();
	CHECK_EQ(tls_server_start(&srv, &scfg), 0);
	CHECK(tls_feed(&srv, junk, sizeof junk - 1) > 0);
	CHECK(tls_finished(&srv));
	CHECK_EQ(tls_read(&srv, buf, sizeof buf), -1);
	CHECK(strlen(tls_error(&srv)) > 0);
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return pem_read_file(path, len, err, sizeof err);
}

static mode_t mode_of(const char *dir, const char *name)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return stat(path, &st) == 0 ? st.st_mode & 07777 : 0;
}

static void localca_server(const char *dir)
{
	char cert[512], key[512];

	snprintf(cert, sizeof cert, "%s/server.pem", dir);
	snprintf(key, sizeof key, "%s/server.key", dir);
	tls_server_config_free(&scfg);
	CHECK_EQ(tls_server_config_load(&scfg, cert, key, err, sizeof err), 0);
}

/* The local CA: generated certificates work with our client, CA alone. */
static void t_localca(void)
{
	static const char *const names[] = { "box", "mail.office.lan", "imap.office.lan",
		"192.168.77.1", "fd00::1" };
	static const char *const bad[] = { "box", "not a name!" };
	char dir[] = "/tmp/postern-lc-XXXXXX", path[512];
	int64_t now = time(NULL), na = 0;
	struct pem_anchors lca;
	char *ca1, *ca2, *srv1, *srv2;
	size_t l1, l2, s1, s2;

	CHECK(mkdtemp(dir) != NULL);
	CHECK_EQ(localca_init(dir, names, 5, now, err, sizeof err), 0);
	CHECK_EQ(mode_of(dir, "ca.key"), 0600);
	CHECK_EQ(mode_of(dir, "server.key"), 0600);
	CHECK_EQ(mode_of(dir, "ca.pem"), 0644);
	snprintf(path, sizeof path, "%s/ca.pem", dir);
	CHECK_EQ(pem_anchors_load(&lca, path, err, sizeof err), 1);
	CHECK(lca.ta[0].flags & BR_X509_TA_CA);
	localca_server(dir);
	CHECK_EQ(scfg.chain.count, 2);
	client_ca(&lca);
	ccfg.now = now;
	expect_ok("mail.office.lan");
	expect_ok("box");
	expect_reject("smtp.office.lan", "does not match the server name", NULL);
	/* Expiry: fine now, due within 30 days after 340 days. */
	snprintf(path, sizeof path, "%s/server.pem", dir);
	CHECK_EQ(localca_expires_within(path, now, 30 * 86400LL, &na, err, sizeof err), 0);
	CHECK(na >= now + 364 * 86400LL && na <= now + 366 * 86400LL);
	CHECK_EQ(localca_expires_within(path, now + 340 * 86400LL, 30 * 86400LL, NULL,
					err, sizeof err), 1);
	CHECK_EQ(localca_renew(dir, NULL, 0, now, 0, err, sizeof err), 0);
	ca1 = slurp(dir, "ca.pem", &l1);
	srv1 = slurp(dir, "server.pem", &s1);
	CHECK_EQ(localca_renew(dir, NULL, 0, now + 340 * 86400LL, 0, err, sizeof err), 1);
	ca2 = slurp(dir, "ca.pem", &l2);
	srv2 = slurp(dir, "server.pem", &s2);
	CHECK(ca1 && ca2 && l1 == l2 && memcmp(ca1, ca2, l1) == 0);	/* same CA */
	CHECK(srv1 && srv2 && (s1 != s2 || memcmp(srv1, srv2, s1) != 0));
	free(ca2);
	free(srv1);
	free(srv2);
	/* The renewed certificate kept the names and is valid a year later. */
	localca_server(dir);
	ccfg.now = now + 400 * 86400LL;
	expect_ok("imap.office.lan");
	/* init again keeps the CA; a bad name is refused. */
	CHECK_EQ(localca_init(dir, names, 2, now, err, sizeof err), 0);
	ca2 = slurp(dir, "ca.pem", &l2);
	CHECK(ca2 && l1 == l2 && memcmp(ca1, ca2, l1) == 0);
	free(ca1);
	free(ca2);
	CHECK_EQ(localca_init(dir, bad, 2, now, err, sizeof err), -1);
	CHECK(strstr(err, "not a name!") != NULL);
	CHECK_EQ(localca_renew("/nonexistent", NULL, 0, now, 0, err, sizeof err), -1);
	CHECK(localca_name_ok("mail.office.lan") && localca_name_ok("*.office.lan"));
	CHECK(localca_name_ok("192.168.77.1") && localca_name_ok("fd00::1"));
	CHECK(!localca_name_ok("") && !localca_name_ok("a..b") && !localca_name_ok("-a.b"));
	CHECK(!localca_name_ok("a b") && !localca_name_ok("a.b-") && !localca_name_ok("a.*.b"));
	pem_anchors_free(&lca);
	server_setup(SRV_CERT, SRV_KEY);
	snprintf(path, sizeof path, "rm -rf '%s'", dir);
	CHECK_EQ(system(path), 0);
}

/* tls_app_pending: set while decrypted bytes wait, clear once read. */
static void t_app_pending(void)
{
	char buf[100];

	client_pin(SRV_PIN);
	reset_pipes();
	CHECK_EQ(tls_server_start(&srv, &scfg), 0);
	CHECK_EQ(tls_client_start(&cli, &ccfg, NULL), 0);
	CHECK(!tls_app_pending(&cli));
	shuttle();
	CHECK(tls_established(&cli));
	CHECK(!tls_app_pending(&cli) && !tls_app_pending(&srv));
	memset(buf, 'x', sizeof buf);
	CHECK_EQ(tls_write(&srv, buf, sizeof buf), (ssize_t)sizeof buf);
	CHECK(!tls_app_pending(&cli));		/* still in the server's engine */
	shuttle();
	CHECK(tls_app_pending(&cli));
	CHECK_EQ(tls_read(&cli, buf, 40), 40);
	CHECK(tls_app_pending(&cli));
	CHECK_EQ(tls_read(&cli, buf, sizeof buf), 60);
	CHECK(!tls_app_pending(&cli));
	CHECK_EQ(tls_read(&cli, buf, sizeof buf), -1);
	CHECK_EQ(errno, EAGAIN);
}

/* ---- over a socketpair with tls_pump --------------------------------------- */

static void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (unsigned char)(i * seed + i / 251);
}

/* Starts s and c (the caller's buffer of len bytes each, 0: built-in) and
 * pumps both ends of fds until both are established. */
static void pair_handshake(struct tls_conn *s, struct tls_conn *c, size_t len, int fds[2])
{
	int i;

	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
	client_pin(SRV_PIN);
	if (len) {
		CHECK_EQ(tls_server_start_buf(s, &scfg, (unsigned char *)s + TLS_CONN_BASE_SIZE,
					      len), 0);
		CHECK_EQ(tls_client_start_buf(c, &ccfg, NULL,
					      (unsigned char *)c + TLS_CONN_BASE_SIZE, len), 0);
	} else {
		CHECK_EQ(tls_server_start(s, &scfg), 0);
		CHECK_EQ(tls_client_start(c, &ccfg, NULL), 0);
	}
	for (i = 0; i < 100 && !(tls_established(s) && tls_established(c)); i++) {
		tls_pump(c, fds[1]);
		tls_pump(s, fds[0]);
	}
	CHECK(tls_established(s) && tls_established(c));
}

/* Writes all of data on s and pushes it into the socket. */
static void pair_send(struct tls_conn *s, int fd, const unsigned char *data, size_t len)
{
	size_t off = 0;
	int i;

	for (i = 0; i < 10000 && off < len; i++) {
		ssize_t n = tls_write(s, data + off, len - off);

		if (n > 0)
			off += (size_t)n;
		CHECK(tls_pump(s, fd) >= 0);
	}
	for (i = 0; i < 100 && (br_ssl_engine_current_state(s->eng) & BR_SSL_SENDREC); i++)
		tls_pump(s, fd);
	CHECK_EQ(off, len);
}

/* The event-loop contract: pump, stop on -1, else read until EAGAIN (at
 * most `bite` bytes per turn: an application whose buffer fills up).
 * Returns what tls_read said last (0: end of stream, -1: error). */
static ssize_t pair_receive(struct tls_conn *c, int fd, unsigned char *in, size_t cap,
	size_t *got, size_t bite)
{
	ssize_t n = -1;
	int turns;

	for (turns = 0; turns < 100000; turns++) {
		int ev = tls_pump(c, fd);
		size_t took = 0;

		if (ev < 0)
			return tls_read(c, in, 0);	/* nothing may be left */
		while (took < bite && *got < cap
		       && (n = tls_read(c, in + *got, bite - took < cap - *got ?
					bite - took : cap - *got)) > 0) {
			*got += (size_t)n;
			took += (size_t)n;
		}
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return n;
		if (!tls_app_pending(c) && ev) {
			struct pollfd p = { .fd = fd, .events = (short)ev };

			poll(&p, 1, 1000);
		}
	}
	CHECK(!"pair_receive: no end");
	return -1;
}

/* The server writes its last records and closes the socket at once (with
 * or without close_notify); the client gets every byte, then the end. */
static void eof_case(size_t len, int notify, size_t bite)
{
	static unsigned char out[40000], in[sizeof out];
	struct tls_conn *s = malloc(len ? TLS_CONN_SIZE(len) : sizeof *s);
	struct tls_conn *c = malloc(len ? TLS_CONN_SIZE(len) : sizeof *c);
	size_t got = 0;
	int fds[2];

	fill_pattern(out, sizeof out, 13);
	pair_handshake(s, c, len, fds);
	pair_send(s, fds[0], out, sizeof out);
	if (notify)
		CHECK_EQ(tls_close_fd(s, fds[0], tls_now_ms() + 2000), 0);
	close(fds[0]);
	CHECK_EQ(pair_receive(c, fds[1], in, sizeof in, &got, bite), 0);
	CHECK_EQ(got, sizeof in);
	CHECK_MEMEQ(in, out, sizeof in);
	CHECK(!tls_app_pending(c));
	CHECK_EQ(tls_pump(c, fds[1]), -1);
	CHECK_STREQ(tls_error(c), "");
	close(fds[1]);
	free(s);
	free(c);
}

static void t_eof_keeps_last_record(void)
{
	eof_case(0, 0, 1 << 20);
	eof_case(0, 0, 1000);
	eof_case(0, 1, 777);
	eof_case(TLS_BUF_MONO, 0, 1000);
	eof_case(TLS_BUF_MONO, 1, 1 << 20);
	eof_case(TLS_BUF_SMALL_BIDI, 0, 1000);
}

/* tls_write_fd with more than one record's worth (16 KB): every record goes
 * out at once, without waiting for the peer to say anything. */
static void t_write_fd_many_records(void)
{
	static unsigned char out[40000], in[sizeof out];
	size_t got = 0;
	int64_t t0;
	int fds[2];

	fill_pattern(out, sizeof out, 31);
	pair_handshake(&srv, &cli, 0, fds);
	t0 = tls_now_ms();
	CHECK_EQ(tls_write_fd(&srv, fds[0], out, sizeof out, t0 + 5000), 0);
	CHECK(tls_now_ms() - t0 < 2000);
	close(fds[0]);
	CHECK_EQ(pair_receive(&cli, fds[1], in, sizeof in, &got, 1 << 20), 0);
	CHECK_EQ(got, sizeof in);
	CHECK_MEMEQ(in, out, sizeof in);
	close(fds[1]);
}

/* The server sends its last words and closes; the client, which had a
 * command queued, fails to send it (EPIPE) but still reads every byte the
 * server sent before tls_pump reports the end. */
static void t_send_error_keeps_data(void)
{
	static unsigned char out[40000], in[sizeof out];
	size_t got = 0;
	int fds[2];

	fill_pattern(out, sizeof out, 29);
	pair_handshake(&srv, &cli, 0, fds);
	pair_send(&srv, fds[0], out, sizeof out);
	close(fds[0]);
	CHECK_EQ(tls_write(&cli, "QUIT\r\n", 6), 6);
	CHECK_EQ(pair_receive(&cli, fds[1], in, sizeof in, &got, 5000), -1);
	CHECK_EQ(errno, EPROTO);
	CHECK_EQ(got, sizeof in);
	CHECK_MEMEQ(in, out, sizeof in);
	CHECK(strstr(tls_error(&cli), "send failed") != NULL);
	CHECK_EQ(tls_write(&cli, "x", 1), -1);
	close(fds[1]);
}

/* ---- small buffers ---------------------------------------------------------- */

/* Starts a connection with a len-byte buffer right after it (one
 * allocation of TLS_CONN_SIZE(len)), or the built-in one for len 0. */
static struct tls_conn *small_conn(size_t len, int server)
{
	struct tls_conn *c = malloc(len ? TLS_CONN_SIZE(len) : sizeof *c);
	unsigned char *buf = (unsigned char *)c + TLS_CONN_BASE_SIZE;

	if (server)
		CHECK_EQ(len ? tls_server_start_buf(c, &scfg, buf, len) : tls_server_start(c, &scfg), 0);
	else
		CHECK_EQ(len ? tls_client_start_buf(c, &ccfg, "server.test", buf, len)
			     : tls_client_start(c, &ccfg, "server.test"), 0);
	return c;
}

/* A handshake, then 200 KB from the client and 200 KB from the server
 * (both_ways: at the same time, else one after the other), in memory. */
static void small_case(size_t len_s, size_t len_c, int both_ways)
{
	static unsigned char out[200000], in_s[sizeof out], in_c[sizeof out];
	struct tls_conn *s, *c;
	size_t sent_c = 0, sent_s = 0, got_s = 0, got_c = 0;
	int rounds = 0;
	ssize_t n;

	fill_pattern(out, sizeof out, 7);
	client_ca(&ca);
	reset_pipes();
	s = small_conn(len_s, 1);
	c = small_conn(len_c, 0);
	shuttle_pair(c, s);
	CHECK(tls_established(c) && tls_established(s));
	while ((got_s < sizeof out || got_c < sizeof out) && rounds++ < 10000) {
		while (sent_c < sizeof out && (n = tls_write(c, out + sent_c, sizeof out - sent_c)) > 0)
			sent_c += (size_t)n;
		while ((both_ways || got_s == sizeof out) && sent_s < sizeof out
		       && (n = tls_write(s, out + sent_s, sizeof out - sent_s)) > 0)
			sent_s += (size_t)n;
		shuttle_pair(c, s);
		while ((n = tls_read(s, in_s + got_s, sizeof out - got_s)) > 0)
			got_s += (size_t)n;
		while ((n = tls_read(c, in_c + got_c, sizeof out - got_c)) > 0)
			got_c += (size_t)n;
	}
	if (got_s != sizeof out || got_c != sizeof out)
		fprintf(stderr, "  buffers %zu/%zu: %zu/%zu bytes\n", len_s, len_c, got_s, got_c);
	CHECK_EQ(got_s, sizeof out);
	CHECK_EQ(got_c, sizeof out);
	CHECK_MEMEQ(in_s, out, sizeof out);
	CHECK_MEMEQ(in_c, out, sizeof out);
	CHECK_STREQ(tls_error(c), "");
	CHECK_STREQ(tls_error(s), "");
	free(s);
	free(c);
}

static void t_small_buffers(void)
{
	static unsigned char mono[TLS_BUF_MONO], split[TLS_BUF_SMALL_BIDI];
	struct tls_conn *c = malloc(TLS_CONN_SIZE(TLS_BUF_MONO));

	/* A buffer elsewhere; the mode follows its size. */
	CHECK_EQ(tls_server_start_buf(&srv, &scfg, mono, sizeof mono), 0);
	CHECK(srv.half_duplex && srv.buf_len == sizeof mono);
	CHECK_EQ(tls_server_start_buf(&srv, &scfg, split, sizeof split), 0);
	CHECK(!srv.half_duplex);
	CHECK_EQ(tls_server_start(&srv, &scfg), 0);
	CHECK(!srv.half_duplex && srv.buf_len == TLS_IOBUF_SIZE);

	CHECK(TLS_CONN_SIZE(TLS_BUF_MONO) < 26 * 1024);
	CHECK(TLS_CONN_SIZE(TLS_BUF_SMALL_BIDI) < 27 * 1024);
	CHECK(TLS_CONN_SIZE(TLS_IOBUF_SIZE) <= sizeof(struct tls_conn));
	/* A half-duplex server with a full-duplex client, as in production. */
	small_case(TLS_BUF_MONO, 0, 1);
	small_case(TLS_BUF_SMALL_BIDI, 0, 1);
	small_case(TLS_BUF_SMALL_BIDI, TLS_BUF_SMALL_BIDI, 1);
	small_case(TLS_BUF_BIDI, TLS_BUF_BIDI, 1);
	/* Two half-duplex ends: one direction at a time. */
	small_case(TLS_BUF_MONO, TLS_BUF_MONO, 0);
	/* Too small for a full incoming record: refused. */
	client_pin(SRV_PIN);
	CHECK_EQ(tls_client_start_buf(c, &ccfg, NULL, (unsigned char *)c + TLS_CONN_BASE_SIZE,
				      TLS_BUF_MONO - 1), -1);
	CHECK(strstr(tls_error(c), "too small") != NULL);
	CHECK_EQ(tls_server_start_buf(c, &scfg, (unsigned char *)c + TLS_CONN_BASE_SIZE,
				      TLS_BUF_MONO - 1), -1);
	free(c);
}

/* Deliver 3, "timeouts on the handshake and on every read": a peer that says
 * nothing makes tls_handshake (both sides), tls_read_fd and tls_write_fd
 * give up at their deadline (not before) with ETIMEDOUT and a message
 * naming the phase. */
#define T_TIMEOUT_MS 300

static void expect_timeout(int r, const struct tls_conn *c, int64_t t0, const char *what)
{
	int e = errno;

	CHECK_EQ(r, -1);
	CHECK_EQ(e, ETIMEDOUT);
	CHECK(tls_now_ms() - t0 >= T_TIMEOUT_MS);
	CHECK(strstr(tls_error(c), what) != NULL);
}

static void t_timeouts(void)
{
	static unsigned char big[4 << 20];
	char buf[64];
	int fds[2];
	int64_t t0;

	/* Handshake: the client's ClientHello is never answered... */
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
	client_pin(SRV_PIN);
	CHECK_EQ(tls_client_start(&cli, &ccfg, NULL), 0);
	t0 = tls_now_ms();
	expect_timeout(tls_handshake(&cli, fds[1], t0 + T_TIMEOUT_MS), &cli, t0,
		       "timeout during the TLS handshake");
	CHECK(!tls_established(&cli));
	/* ... and a server whose client never sends a ClientHello. */
	CHECK_EQ(tls_server_start(&srv, &scfg), 0);
	t0 = tls_now_ms();
	expect_timeout(tls_handshake(&srv, fds[0], t0 + T_TIMEOUT_MS), &srv, t0,
		       "timeout during the TLS handshake");
	close(fds[0]);
	close(fds[1]);

	/* Read: established, the server sends nothing. */
	pair_handshake(&srv, &cli, 0, fds);
	t0 = tls_now_ms();
	expect_timeout((int)tls_read_fd(&cli, fds[1], buf, sizeof buf, t0 + T_TIMEOUT_MS),
		       &cli, t0, "timeout during a TLS read");
	/* A timeout is final (sticky, like every TLS error): data that comes
	 * later is not read from a connection the caller was told is dead. */
	CHECK_EQ(tls_write_fd(&srv, fds[0], "late\n", 5, tls_now_ms() + 5000), 0);
	CHECK_EQ(tls_read_fd(&cli, fds[1], buf, sizeof buf, tls_now_ms() + 5000), -1);
	CHECK(strstr(tls_error(&cli), "timeout during a TLS read") != NULL);
	/* Write: the client never reads, the socket buffer fills up. */
	t0 = tls_now_ms();
	expect_timeout(tls_write_fd(&srv, fds[0], big, sizeof big, t0 + T_TIMEOUT_MS),
		       &srv, t0, "timeout during a TLS write");
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	CHECK_EQ(pem_anchors_parse(&ca, CA_CERT, strlen(CA_CERT), err, sizeof err), 1);
	CHECK_EQ(pem_anchors_parse(&other, OTHER_CERT, strlen(OTHER_CERT), err, sizeof err), 1);
	server_setup(SRV_CERT, SRV_KEY);
	RUN(t_ca_ok);
	RUN(t_ca_ok_rsa);
	RUN(t_pin_ok);
	RUN(t_wrong_pin);
	RUN(t_wrong_name);
	RUN(t_expired);
	RUN(t_unknown_ca);
	RUN(t_ca_and_pin);
	RUN(t_refuse_unverified);
	RUN(t_key_mismatch);
	RUN(t_pin_parse);
	RUN(t_bulk);
	RUN(t_write_then_close);
	RUN(t_garbage);
	RUN(t_app_pending);
	RUN(t_eof_keeps_last_record);
	RUN(t_send_error_keeps_data);
	RUN(t_write_fd_many_records);
	RUN(t_small_buffers);
	RUN(t_localca);
	RUN(t_timeouts);
	tls_server_config_free(&scfg);
	pem_anchors_free(&ca);
	pem_anchors_free(&other);
	return check_done();
}
