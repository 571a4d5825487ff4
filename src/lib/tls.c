/*
 * tls.c - non-blocking TLS 1.2 on BearSSL's engine. See tls.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "der.h"
#include "evloop.h"
#include "tls.h"

/* Smallest RSA key accepted from a server, in bytes (2048 bits). */
#define TLS_RSA_MIN_BYTES 256

/* ECDHE with AEAD only; ECDSA first (our own certificates are ECDSA). */
static const uint16_t tls_suites[] = {
	BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	BR_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	BR_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	BR_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
};

static const struct {
	int code;
	const char *text;
} tls_err_text[] = {
	{ BR_ERR_BAD_PARAM, "bad parameter" },
	{ BR_ERR_UNSUPPORTED_VERSION, "peer does not speak TLS 1.2" },
	{ BR_ERR_BAD_VERSION, "unexpected protocol version" },
	{ BR_ERR_BAD_LENGTH, "bad record length" },
	{ BR_ERR_TOO_LARGE, "record too large" },
	{ BR_ERR_BAD_MAC, "bad record MAC" },
	{ BR_ERR_NO_RANDOM, "no random source" },
	{ BR_ERR_UNKNOWN_TYPE, "unknown record type" },
	{ BR_ERR_UNEXPECTED, "unexpected message" },
	{ BR_ERR_BAD_HANDSHAKE, "malformed handshake message" },
	{ BR_ERR_BAD_CIPHER_SUITE, "no common cipher suite (ECDHE + AEAD required)" },
	{ BR_ERR_BAD_SNI, "bad server name" },
	{ BR_ERR_BAD_FINISHED, "bad Finished message" },
	{ BR_ERR_INVALID_ALGORITHM, "unsupported algorithm" },
	{ BR_ERR_BAD_SIGNATURE, "bad handshake signature" },
	{ BR_ERR_WRONG_KEY_USAGE, "server key not usable for this suite" },
	{ BR_ERR_IO, "I/O error" },
	{ BR_ERR_X509_EMPTY_CHAIN, "server sent no certificate" },
	{ BR_ERR_X509_BAD_SIGNATURE, "bad certificate signature" },
	{ BR_ERR_X509_TIME_UNKNOWN, "current time unknown" },
	{ BR_ERR_X509_EXPIRED, "certificate expired or not yet valid" },
	{ BR_ERR_X509_DN_MISMATCH, "issuer name mismatch in the chain" },
	{ BR_ERR_X509_BAD_SERVER_NAME, "certificate does not match the server name" },
	{ BR_ERR_X509_CRITICAL_EXTENSION, "unsupported critical extension" },
	{ BR_ERR_X509_NOT_CA, "issuer is not a CA" },
	{ BR_ERR_X509_FORBIDDEN_KEY_USAGE, "key usage forbids TLS server use" },
	{ BR_ERR_X509_WEAK_PUBLIC_KEY, "weak public key" },
	{ BR_ERR_X509_NOT_TRUSTED, "certificate not trusted (unknown issuer)" },
	{ BR_ERR_X509_WRONG_KEY_TYPE, "unexpected key type" },
};

static const struct {
	int alert;
	const char *name;
} tls_alerts[] = {
	{ 0, "close_notify" }, { 10, "unexpected_message" }, { 20, "bad_record_mac" },
	{ 40, "handshake_failure" }, { 42, "bad_certificate" },
	{ 43, "unsupported_certificate" }, { 45, "certificate_expired" },
	{ 46, "certificate_unknown" }, { 47, "illegal_parameter" }, { 48, "unknown_ca" },
	{ 50, "decode_error" }, { 51, "decrypt_error" }, { 70, "protocol_version" },
	{ 71, "insufficient_security" }, { 80, "internal_error" },
	{ 112, "unrecognized_name" },
};

static void tls_seterr(struct tls_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void tls_seterr(struct tls_conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->failed)
		return;		/* keep the first cause */
	c->failed = 1;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
}

static void tls_fmt(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void tls_fmt(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- pins ---------------------------------------------------------------- */

void tls_pin_format(const unsigned char pin[32], char out[TLS_PIN_HEX])
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 32; i++) {
		out[2 * i] = hex[pin[i] >> 4];
		out[2 * i + 1] = hex[pin[i] & 15];
	}
	out[64] = '\0';
}

static int tls_hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static int tls_pin_hex(const char *s, unsigned char pin[32])
{
	int i;

	for (i = 0; i < 32; i++) {
		int hi, lo;

		if (i > 0 && *s == ':')
			s++;
		hi = tls_hexval(s[0]);
		lo = hi < 0 ? -1 : tls_hexval(s[1]);
		if (lo < 0)
			return -1;
		pin[i] = (unsigned char)(hi << 4 | lo);
		s += 2;
	}
	return *s == '\0' ? 0 : -1;
}

static int tls_b64val(char ch)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = ch ? strchr(b64, ch) : NULL;

	return p ? (int)(p - b64) : -1;
}

/* 32 bytes are 43 base64 characters and one '='. */
static int tls_pin_b64(const char *s, unsigned char pin[32])
{
	uint32_t acc = 0;
	int bits = 0, n = 0, i;

	if (strlen(s) != 44 || s[43] != '=')
		return -1;
	for (i = 0; i < 43; i++) {
		int v = tls_b64val(s[i]);

		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n < 32)
				pin[n++] = (unsigned char)(acc >> bits);
		}
	}
	return n == 32 && (acc & ((1u << bits) - 1)) == 0 ? 0 : -1;
}

int tls_pin_parse(const char *text, unsigned char pin[32])
{
	if (strncmp(text, "sha256//", 8) == 0)
		return tls_pin_b64(text + 8, pin);
	if (strncmp(text, "sha256:", 7) == 0)
		text += 7;
	return tls_pin_hex(text, pin);
}

int tls_pin_of_key(const br_x509_pkey *pk, unsigned char pin[32])
{
	unsigned char spki[DER_SPKI_MAX];
	br_sha256_context sc;
	int n = der_spki(pk, spki, sizeof spki);

	if (n < 0)
		return -1;
	br_sha256_init(&sc);
	br_sha256_update(&sc, spki, (size_t)n);
	br_sha256_out(&sc, pin);
	return 0;
}

/* ---- server configuration ------------------------------------------------ */

/* 0 when the private key belongs to the certificate's public key. */
static int tls_key_matches(const struct pem_key *key, const br_x509_pkey *pk)
{
	unsigned char buf[BR_X509_BUFSIZE_KEY];
	const unsigned char *n = pk->key.rsa.n;
	size_t len, nlen = pk->key.rsa.nlen;

	if (key->type == BR_KEYTYPE_EC) {
		br_ec_public_key pub;

		if (pk->key_type != BR_KEYTYPE_EC)
			return -1;
		len = br_ec_compute_pub(br_ec_get_default(), &pub, buf, pem_key_ec(key));
		return len && pub.curve == pk->key.ec.curve && pub.qlen == pk->key.ec.qlen
		       && memcmp(pub.q, pk->key.ec.q, pub.qlen) == 0 ? 0 : -1;
	}
	if (pk->key_type != BR_KEYTYPE_RSA)
		return -1;
	len = br_rsa_compute_modulus_get_default()(NULL, pem_key_rsa(key));
	if (len == 0 || len > sizeof buf)
		return -1;
	br_rsa_compute_modulus_get_default()(buf, pem_key_rsa(key));
	while (nlen > 0 && *n == 0) {
		n++;
		nlen--;
	}
	return len == nlen && memcmp(buf, n, len) == 0 ? 0 : -1;
}

/* Checks the end-entity certificate against the key; notes the issuer's
 * key type (which BearSSL needs for its EC server profile). */
static int tls_check_chain(struct tls_server_config *cfg, char *err, size_t errlen)
{
	br_x509_decoder_context dc;
	const br_x509_pkey *pk;

	br_x509_decoder_init(&dc, NULL, NULL);
	br_x509_decoder_push(&dc, cfg->chain.certs[0].data, cfg->chain.certs[0].data_len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (!pk) {
		tls_fmt(err, errlen, "cannot decode the first certificate (BearSSL error %d)",
			br_x509_decoder_last_error(&dc));
		return -1;
	}
	if (tls_key_matches(&cfg->key, pk) < 0) {
		tls_fmt(err, errlen, "the private key does not belong to the first certificate");
		return -1;
	}
	cfg->issuer_key_type = br_x509_decoder_get_signer_key_type(&dc);
	if (cfg->issuer_key_type != BR_KEYTYPE_RSA)
		cfg->issuer_key_type = BR_KEYTYPE_EC;
	return 0;
}

int tls_server_config_load(struct tls_server_config *cfg, const char *cert_path,
	const char *key_path, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof *cfg);
	if (pem_chain_load(&cfg->chain, cert_path, err, errlen) < 0)
		return -1;
	if (pem_key_load(&cfg->key, key_path, err, errlen) < 0
	    || tls_check_chain(cfg, err, errlen) < 0) {
		tls_server_config_free(cfg);
		return -1;
	}
	return 0;
}

int tls_server_config_parse(struct tls_server_config *cfg, const char *cert_pem,
	size_t cert_len, const char *key_pem, size_t key_len, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof *cfg);
	if (pem_chain_parse(&cfg->chain, cert_pem, cert_len, err, errlen) < 0)
		return -1;
	if (pem_key_parse(&cfg->key, key_pem, key_len, err, errlen) < 0
	    || tls_check_chain(cfg, err, errlen) < 0) {
		tls_server_config_free(cfg);
		return -1;
	}
	return 0;
}

void tls_server_config_free(struct tls_server_config *cfg)
{
	pem_chain_free(&cfg->chain);
	pem_key_wipe(&cfg->key);
}

/* ---- the client's X.509 engine: CA and/or pin ------------------------------ */

static struct tls_x509 *tls_x509_of(const br_x509_class *const *ctx)
{
	return (struct tls_x509 *)(void *)ctx;
}

static void tx_start_chain(const br_x509_class **ctx, const char *server_name)
{
	struct tls_x509 *x = tls_x509_of(ctx);

	x->cert_index = 0;
	x->seen = 0;
	x->pin_mismatch = 0;
	if (x->cfg->anchors)
		x->minimal.vtable->start_chain(&x->minimal.vtable, server_name);
}

static void tx_start_cert(const br_x509_class **ctx, uint32_t length)
{
	struct tls_x509 *x = tls_x509_of(ctx);

	if (x->cert_index == 0)
		br_x509_decoder_init(&x->ee, NULL, NULL);
	if (x->cfg->anchors)
		x->minimal.vtable->start_cert(&x->minimal.vtable, length);
}

static void tx_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
	struct tls_x509 *x = tls_x509_of(ctx);

	if (x->cert_index == 0)
		br_x509_decoder_push(&x->ee, buf, len);
	if (x->cfg->anchors)
		x->minimal.vtable->append(&x->minimal.vtable, buf, len);
}

static void tx_end_cert(const br_x509_class **ctx)
{
	struct tls_x509 *x = tls_x509_of(ctx);

	if (x->cfg->anchors)
		x->minimal.vtable->end_cert(&x->minimal.vtable);
	x->cert_index++;
}

static unsigned tx_end_chain(const br_x509_class **ctx)
{
	struct tls_x509 *x = tls_x509_of(ctx);
	const br_x509_pkey *pk = x->cert_index ? br_x509_decoder_get_pkey(&x->ee) : NULL;
	unsigned e;

	if (pk && tls_pin_of_key(pk, x->seen_pin) == 0)
		x->seen = 1;
	if (x->cfg->anchors) {
		e = x->minimal.vtable->end_chain(&x->minimal.vtable);
		if (e != BR_ERR_OK)
			return e;
	}
	if (x->cfg->have_pin) {
		if (!x->seen)
			return x->cert_index ? BR_ERR_X509_WRONG_KEY_TYPE : BR_ERR_X509_EMPTY_CHAIN;
		if (memcmp(x->seen_pin, x->cfg->pin, 32) != 0) {
			x->pin_mismatch = 1;
			return BR_ERR_X509_NOT_TRUSTED;
		}
	}
	return BR_ERR_OK;
}

static const br_x509_pkey *tx_get_pkey(const br_x509_class *const *ctx, unsigned *usages)
{
	struct tls_x509 *x = tls_x509_of(ctx);

	if (x->cfg->anchors)
		return x->minimal.vtable->get_pkey(&x->minimal.vtable, usages);
	if (usages)
		*usages = BR_KEYTYPE_KEYX | BR_KEYTYPE_SIGN;
	return br_x509_decoder_get_pkey(&x->ee);
}

static const br_x509_class tls_x509_vtable = {
	sizeof(struct tls_x509),
	tx_start_chain, tx_start_cert, tx_append, tx_end_cert, tx_end_chain,
	tx_get_pkey,
};

/* ---- starting connections ------------------------------------------------ */

/* Gives the engine its record buffer. Split by hand: BearSSL 0.6's
 * br_ssl_engine_set_buffer(..., 1) lets the two halves overlap by 240
 * bytes (its output half starts at buf + w, not buf + len - w). */
static int tls_set_buffer(struct tls_conn *c, unsigned char *buf, size_t len)
{
	c->buf_len = len;
	if (len < TLS_BUF_MONO) {
		tls_seterr(c, "TLS record buffer too small (%zu bytes, need %d)", len,
			TLS_BUF_MONO);
		return -1;
	}
	if (len < TLS_BUF_SMALL_BIDI) {
		c->half_duplex = 1;
		br_ssl_engine_set_buffers_bidi(c->eng, buf, len, NULL, 0);
	} else {
		br_ssl_engine_set_buffers_bidi(c->eng, buf, BR_SSL_BUFSIZE_INPUT,
			buf + BR_SSL_BUFSIZE_INPUT, len - BR_SSL_BUFSIZE_INPUT);
	}
	return 0;
}

static int tls_engine_common(struct tls_conn *c, void *buf, size_t len)
{
	br_ssl_engine_set_versions(c->eng, BR_TLS12, BR_TLS12);
	br_ssl_engine_set_suites(c->eng, tls_suites, sizeof tls_suites / sizeof tls_suites[0]);
	return tls_set_buffer(c, buf, len);
}

int tls_server_start(struct tls_conn *c, const struct tls_server_config *cfg)
{
	return tls_server_start_buf(c, cfg, c->iobuf, sizeof c->iobuf);
}

int tls_server_start_buf(struct tls_conn *c, const struct tls_server_config *cfg,
	void *buf, size_t len)
{
	memset(c, 0, TLS_CONN_BASE_SIZE);
	c->eng = &c->u.srv.eng;
	if (cfg->key.type == BR_KEYTYPE_EC)
		br_ssl_server_init_full_ec(&c->u.srv, cfg->chain.certs, cfg->chain.count,
			cfg->issuer_key_type, pem_key_ec(&cfg->key));
	else
		br_ssl_server_init_full_rsa(&c->u.srv, cfg->chain.certs, cfg->chain.count,
			pem_key_rsa(&cfg->key));
	if (tls_engine_common(c, buf, len) < 0)
		return -1;
	if (!br_ssl_server_reset(&c->u.srv)) {
		tls_seterr(c, "TLS server start failed (BearSSL error %d)",
			br_ssl_engine_last_error(c->eng));
		return -1;
	}
	return 0;
}

static void tls_set_clock(struct tls_conn *c, const struct tls_client_config *cfg)
{
	uint32_t days, secs;

	der_time_to_br(cfg->now ? cfg->now : (int64_t)time(NULL), &days, &secs);
	br_x509_minimal_set_time(&c->x509.minimal, days, secs);
}

int tls_client_start(struct tls_conn *c, const struct tls_client_config *cfg,
	const char *server_name)
{
	return tls_client_start_buf(c, cfg, server_name, c->iobuf, sizeof c->iobuf);
}

int tls_client_start_buf(struct tls_conn *c, const struct tls_client_config *cfg,
	const char *server_name, void *buf, size_t len)
{
	memset(c, 0, TLS_CONN_BASE_SIZE);
	c->is_client = 1;
	c->eng = &c->u.cli.eng;
	if (!cfg->anchors && !cfg->have_pin) {
		tls_seterr(c, "no CA bundle and no pin: refusing an unverified connection");
		return -1;
	}
	if (cfg->anchors && (!server_name || !*server_name)) {
		tls_seterr(c, "a server name is needed to verify against a CA bundle");
		return -1;
	}
	br_ssl_client_init_full(&c->u.cli, &c->x509.minimal,
		cfg->anchors, cfg->anchors ? cfg->anchor_count : 0);
	br_x509_minimal_set_minrsa(&c->x509.minimal, TLS_RSA_MIN_BYTES);
	tls_set_clock(c, cfg);
	c->x509.vtable = &tls_x509_vtable;
	c->x509.cfg = cfg;
	br_ssl_engine_set_x509(c->eng, &c->x509.vtable);
	if (tls_engine_common(c, buf, len) < 0)
		return -1;
	if (!br_ssl_client_reset(&c->u.cli, server_name, 0)) {
		tls_seterr(c, "TLS client start failed (BearSSL error %d)",
			br_ssl_engine_last_error(c->eng));
		return -1;
	}
	return 0;
}

/* ---- state and errors ---------------------------------------------------- */

static const char *tls_alert_name(int alert)
{
	size_t i;

	for (i = 0; i < sizeof tls_alerts / sizeof tls_alerts[0]; i++) {
		if (tls_alerts[i].alert == alert)
			return tls_alerts[i].name;
	}
	return "alert";
}

static void tls_describe(int e, char *out, size_t cap)
{
	size_t i;

	if (e >= BR_ERR_SEND_FATAL_ALERT) {
		snprintf(out, cap, "sent fatal alert %d (%s)", e - BR_ERR_SEND_FATAL_ALERT,
			tls_alert_name(e - BR_ERR_SEND_FATAL_ALERT));
		return;
	}
	if (e >= BR_ERR_RECV_FATAL_ALERT) {
		snprintf(out, cap, "peer sent fatal alert %d (%s)", e - BR_ERR_RECV_FATAL_ALERT,
			tls_alert_name(e - BR_ERR_RECV_FATAL_ALERT));
		return;
	}
	for (i = 0; i < sizeof tls_err_text / sizeof tls_err_text[0]; i++) {
		if (tls_err_text[i].code == e) {
			snprintf(out, cap, "%s", tls_err_text[i].text);
			return;
		}
	}
	snprintf(out, cap, "%s error %d", e >= BR_ERR_X509_OK ? "certificate" : "protocol", e);
}

/* Records why the engine closed, naming the server key a client saw. */
static void tls_note_failure(struct tls_conn *c, int e)
{
	char why[128], seen[TLS_PIN_HEX], want[TLS_PIN_HEX];

	tls_describe(e, why, sizeof why);
	if (!c->is_client || !c->x509.seen) {
		tls_seterr(c, "TLS handshake failed: %s", why);
		return;
	}
	tls_pin_format(c->x509.seen_pin, seen);
	if (c->x509.pin_mismatch) {
		tls_pin_format(c->x509.cfg->pin, want);
		tls_seterr(c, "server key does not match the pin %s; "
			"server key SHA-256 SPKI fingerprint: %s", want, seen);
		return;
	}
	tls_seterr(c, "TLS handshake failed: %s; server key SHA-256 SPKI fingerprint: %s",
		why, seen);
}

static unsigned tls_state(struct tls_conn *c)
{
	unsigned st = br_ssl_engine_current_state(c->eng);

	if (st & (BR_SSL_SENDAPP | BR_SSL_RECVAPP))
		c->established = 1;
	if (st & BR_SSL_CLOSED) {
		int e = br_ssl_engine_last_error(c->eng);

		if (e != BR_ERR_OK)
			tls_note_failure(c, e);
	}
	return st;
}

const char *tls_error(const struct tls_conn *c)
{
	return c->err;
}

int tls_peer_pin(const struct tls_conn *c, char out[TLS_PIN_HEX])
{
	if (!c->is_client || !c->x509.seen)
		return -1;
	tls_pin_format(c->x509.seen_pin, out);
	return 0;
}

int tls_established(struct tls_conn *c)
{
	tls_state(c);
	return c->established && !c->failed;
}

int tls_finished(struct tls_conn *c)
{
	return (tls_state(c) & BR_SSL_CLOSED) || c->failed || c->transport_eof;
}

int tls_app_pending(const struct tls_conn *c)
{
	return c->eng && (br_ssl_engine_current_state(c->eng) & BR_SSL_RECVAPP) != 0;
}

/* Turns what tls_write queued into a record. Done when ciphertext is taken,
 * not per write: while a record waits to be sent the engine accepts no
 * application data, so consecutive writes share a record. */
static void tls_flush(struct tls_conn *c)
{
	if (c->unflushed) {
		br_ssl_engine_flush(c->eng, 0);
		c->unflushed = 0;
	}
}

/* Flushes, and starts a requested close once queued records are out:
 * closing earlier could lose the last application record. */
static void tls_progress(struct tls_conn *c)
{
	tls_flush(c);
	if (c->close_pending
	    && !(br_ssl_engine_current_state(c->eng) & BR_SSL_SENDREC)) {
		c->close_pending = 0;
		br_ssl_engine_close(c->eng);
	}
}

/* ---- engine core ----------------------------------------------------------- */

ssize_t tls_feed(struct tls_conn *c, const void *data, size_t len)
{
	unsigned st = tls_state(c);
	unsigned char *buf;
	size_t room;

	if ((st & BR_SSL_CLOSED) || c->failed)
		return -1;
	if (!(st & BR_SSL_RECVREC))
		return 0;
	buf = br_ssl_engine_recvrec_buf(c->eng, &room);
	if (len > room)
		len = room;
	memcpy(buf, data, len);
	br_ssl_engine_recvrec_ack(c->eng, len);
	tls_state(c);
	return (ssize_t)len;
}

ssize_t tls_drain(struct tls_conn *c, void *out, size_t cap)
{
	unsigned st;

	tls_progress(c);
	st = tls_state(c);
	unsigned char *buf;
	size_t len;

	if (!(st & BR_SSL_SENDREC))
		return (st & BR_SSL_CLOSED) ? -1 : 0;
	buf = br_ssl_engine_sendrec_buf(c->eng, &len);
	if (len > cap)
		len = cap;
	memcpy(out, buf, len);
	br_ssl_engine_sendrec_ack(c->eng, len);
	return (ssize_t)len;
}

ssize_t tls_read(struct tls_conn *c, void *out, size_t cap)
{
	unsigned st = tls_state(c);
	unsigned char *buf;
	size_t len;

	if (st & BR_SSL_RECVAPP) {
		buf = br_ssl_engine_recvapp_buf(c->eng, &len);
		if (len > cap)
			len = cap;
		memcpy(out, buf, len);
		br_ssl_engine_recvapp_ack(c->eng, len);
		return (ssize_t)len;
	}
	if (c->failed) {
		errno = EPROTO;
		return -1;
	}
	if ((st & BR_SSL_CLOSED) || c->transport_eof) {
		if (c->established)
			return 0;
		tls_seterr(c, "connection closed during the TLS handshake");
		errno = EPROTO;
		return -1;
	}
	errno = EAGAIN;
	return -1;
}

ssize_t tls_write(struct tls_conn *c, const void *data, size_t len)
{
	unsigned st = tls_state(c);
	unsigned char *buf;
	size_t room;

	if (c->failed || (st & BR_SSL_CLOSED) || c->transport_eof || c->close_pending
	    || c->send_error) {
		errno = c->failed ? EPROTO : EPIPE;
		return -1;
	}
	if (!(st & BR_SSL_SENDAPP) || !c->established) {
		errno = EAGAIN;
		return -1;
	}
	buf = br_ssl_engine_sendapp_buf(c->eng, &room);
	if (len > room)
		len = room;
	memcpy(buf, data, len);
	br_ssl_engine_sendapp_ack(c->eng, len);
	c->unflushed = 1;
	return (ssize_t)len;
}

void tls_close(struct tls_conn *c)
{
	c->close_pending = 1;
	tls_progress(c);
}

/* ---- socket pump ----------------------------------------------------------- */

/* Writes pending records; returns 1 on progress, 0 if it would block. After
 * a send error (the peer closed: EPIPE, ECONNRESET) records are dropped
 * instead, so that the engine can still decrypt what the peer sent before
 * it went away; the pump fails the connection once that is read. */
static int tls_pump_send(struct tls_conn *c, int fd)
{
	size_t len;
	unsigned char *buf = br_ssl_engine_sendrec_buf(c->eng, &len);
	ssize_t n = c->send_error ? -1 : send(fd, buf, len, MSG_NOSIGNAL);

	if (n > 0) {
		br_ssl_engine_sendrec_ack(c->eng, (size_t)n);
		return 1;
	}
	if (n < 0 && !c->send_error && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n < 0 && !c->send_error && errno == EINTR)
		return 1;
	if (!c->send_error)
		c->send_error = n < 0 ? errno : EPIPE;
	br_ssl_engine_sendrec_ack(c->eng, len);
	return 1;
}

/* Reads records; returns 1 on progress, 0 if it would block, -1 at EOF or error. */
static int tls_pump_recv(struct tls_conn *c, int fd)
{
	size_t len;
	unsigned char *buf = br_ssl_engine_recvrec_buf(c->eng, &len);
	ssize_t n = recv(fd, buf, len, 0);

	if (n > 0) {
		br_ssl_engine_recvrec_ack(c->eng, (size_t)n);
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n < 0 && errno == EINTR)
		return 1;
	if (n == 0) {
		c->transport_eof = 1;
		if (!c->established)
			tls_seterr(c, "connection closed by the peer during the TLS handshake");
		return -1;
	}
	tls_seterr(c, "TLS receive failed: %s", strerror(errno));
	return -1;
}

/* The end of a pump whose transport is over: -1 only once the application
 * has taken every decrypted byte, so a final record is never lost. */
static int tls_pump_over(struct tls_conn *c)
{
	if (tls_app_pending(c))
		return 0;
	/* The peer's close_notify ends the stream cleanly even if ours could
	 * not be sent back: it had closed its socket already. */
	if (c->send_error && !((tls_state(c) & BR_SSL_CLOSED)
			       && br_ssl_engine_last_error(c->eng) == BR_ERR_OK))
		tls_seterr(c, "TLS send failed: %s", strerror(c->send_error));
	return -1;
}

int tls_pump(struct tls_conn *c, int fd)
{
	for (;;) {
		unsigned st;
		int want = 0, progress = 0, r;

		tls_progress(c);
		st = tls_state(c);
		if ((st & BR_SSL_CLOSED) || c->failed || c->transport_eof)
			return tls_pump_over(c);
		if (st & BR_SSL_SENDREC) {
			r = tls_pump_send(c, fd);
			progress |= r;
			want |= r ? 0 : POLLOUT;
		}
		if (st & BR_SSL_RECVREC) {
			r = tls_pump_recv(c, fd);
			if (r < 0)
				return tls_pump_over(c);
			progress |= r;
			want |= r ? 0 : POLLIN;
		}
		if (!progress)
			return c->send_error ? tls_pump_over(c) : want;
	}
}

/* ---- blocking helpers ------------------------------------------------------ */

int64_t tls_now_ms(void)
{
	return evl_clock_ms();
}

/* Waits for events on fd until the deadline; 0, or -1 with the error set. */
static int tls_wait(struct tls_conn *c, int fd, int events, int64_t deadline_ms,
	const char *what)
{
	struct pollfd p = { .fd = fd, .events = (short)events };

	for (;;) {
		int64_t left = deadline_ms - tls_now_ms();
		int r;

		if (left <= 0) {
			tls_seterr(c, "timeout during %s", what);
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR) {
			tls_seterr(c, "poll: %s", strerror(errno));
			return -1;
		}
	}
}

static int tls_nonblock(struct tls_conn *c, int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
		tls_seterr(c, "fcntl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int tls_handshake(struct tls_conn *c, int fd, int64_t deadline_ms)
{
	if (tls_nonblock(c, fd) < 0)
		return -1;
	for (;;) {
		int ev = tls_pump(c, fd);

		if (tls_established(c))
			return 0;
		if (ev < 0) {
			tls_seterr(c, "connection closed during the TLS handshake");
			errno = EPROTO;
			return -1;
		}
		if (tls_wait(c, fd, ev ? ev : POLLIN, deadline_ms, "the TLS handshake") < 0)
			return -1;
	}
}

ssize_t tls_read_fd(struct tls_conn *c, int fd, void *buf, size_t cap,
	int64_t deadline_ms)
{
	if (tls_nonblock(c, fd) < 0)
		return -1;
	for (;;) {
		ssize_t n = tls_read(c, buf, cap);
		int ev;

		if (n >= 0 || errno != EAGAIN)
			return n;
		ev = tls_pump(c, fd);
		if (ev < 0)
			continue;	/* tls_read now reports the end or the error */
		n = tls_read(c, buf, cap);
		if (n >= 0 || errno != EAGAIN)
			return n;
		if (tls_wait(c, fd, ev ? ev : POLLIN, deadline_ms, "a TLS read") < 0)
			return -1;
	}
}

/* Pushes queued records onto the socket. */
static int tls_flush_fd(struct tls_conn *c, int fd, int64_t deadline_ms)
{
	for (;;) {
		int ev = tls_pump(c, fd);

		if (!(br_ssl_engine_current_state(c->eng) & BR_SSL_SENDREC))
			return c->failed ? -1 : 0;
		if (ev < 0 || c->failed || c->transport_eof)
			return -1;	/* (0 with unread data: the socket is gone) */
		if (tls_wait(c, fd, POLLOUT, deadline_ms, "a TLS write") < 0)
			return -1;
	}
}

int tls_write_fd(struct tls_conn *c, int fd, const void *buf, size_t len,
	int64_t deadline_ms)
{
	const unsigned char *p = buf;

	if (tls_nonblock(c, fd) < 0)
		return -1;
	while (len > 0) {
		ssize_t n = tls_write(c, p, len);
		int ev;

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (errno != EAGAIN)
			return -1;
		ev = tls_pump(c, fd);
		if (ev < 0)
			return -1;
		/* The pump sent the pending record and the engine takes
		 * application data again: go on with the next record rather than
		 * wait for the peer (ev then holds only POLLIN). */
		if (tls_state(c) & BR_SSL_SENDAPP)
			continue;
		if (tls_wait(c, fd, ev ? ev : POLLIN, deadline_ms, "a TLS write") < 0)
			return -1;
	}
	return tls_flush_fd(c, fd, deadline_ms);
}

int tls_close_fd(struct tls_conn *c, int fd, int64_t deadline_ms)
{
	if (c->failed)
		return -1;
	tls_close(c);
	return tls_flush_fd(c, fd, deadline_ms);
}

int tls_conn_close_ready(struct tls_conn *c, int fd, int *closing, int want)
{
	if (!c || !tls_established(c))
		return 1;
	if (!*closing) {
		tls_close(c);
		*closing = 1;
		want = tls_pump(c, fd);
	}
	return want < 0 || !(want & POLLOUT);
}

ssize_t tls_conn_recv(struct tls_conn *c, int fd, void *buf, size_t cap)
{
	if (!c)
		return recv(fd, buf, cap, 0);
	if (!tls_established(c)) {
		errno = EAGAIN;
		return -1;
	}
	return tls_read(c, buf, cap);
}

ssize_t tls_conn_send(struct tls_conn *c, int fd, const void *buf, size_t len)
{
	ssize_t n;
	int w;

	if (!c)
		return send(fd, buf, len, MSG_NOSIGNAL);
	if (!tls_established(c)) {
		errno = EAGAIN;
		return -1;
	}
	n = tls_write(c, buf, len);
	if (n >= 0 || errno != EAGAIN)
		return n;
	/* A record waits in the engine: send it, then retry once. */
	w = tls_pump(c, fd);
	if (w < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			errno = EIO;   /* the connection is over, not busy */
		return -1;
	}
	if (w & POLLOUT) {
		errno = EAGAIN;   /* the socket is full: wait for it */
		return -1;
	}
	return tls_write(c, buf, len);
}
