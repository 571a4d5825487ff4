/*
 * test_tls.c - the TLS engine core, in memory: a server and a client
 * connected back to back through buffers. Right CA, right pin, wrong pin,
 * wrong name, expired, unknown CA; a rejected server gets no application
 * byte.
 *
 * Test certificates (openssl): a P-256 CA "Test CA"; server certificates
 * for DNS:server.test (EC P-256 and RSA 2048) signed by it, valid until
 * 2036; OTHER_CERT a self-signed certificate of an unrelated key. Pins by
 *   openssl x509 -in C -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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
static void shuttle(void)
{
	while (flow(&cli, &c2s, &srv) | flow(&srv, &s2c, &cli))
		;
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
	char dir[] = "lcXXXXXX", path[512];
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
	RUN(t_localca);
	tls_server_config_free(&scfg);
	pem_anchors_free(&ca);
	pem_anchors_free(&other);
	return check_done();
}
