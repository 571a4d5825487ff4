/*
 * localca.c - the box's own ECDSA P-256 CA and server certificate.
 * See localca.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "der.h"
#include "fsutil.h"
#include "localca.h"
#include "pem.h"

/* Bytes of seed for the DRBG, and of random certificate serial numbers. */
#define LOCALCA_SEED_BYTES 48
#define LOCALCA_SERIAL_BYTES 16
/* Longest path built inside the directory. */
#define LOCALCA_PATH_MAX 1024
/* Largest PEM text written (a chain of two certificates, or a key). */
#define LOCALCA_PEM_MAX (4 * LOCALCA_CERT_MAX)
#define LOCALCA_DAY 86400
#define LOCALCA_ORG "Postern"

static void lc_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void lc_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- keys and randomness ------------------------------------------------- */

int localca_rng_init(br_hmac_drbg_context *rng, char *err, size_t errlen)
{
	unsigned char seed[LOCALCA_SEED_BYTES];
	size_t got = 0;

	while (got < sizeof seed) {
		ssize_t n = getrandom(seed + got, sizeof seed - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			lc_err(err, errlen, "getrandom: %s", strerror(errno));
			return -1;
		}
		got += (size_t)n;
	}
	br_hmac_drbg_init(rng, &br_sha256_vtable, seed, sizeof seed);
	explicit_bzero(seed, sizeof seed);
	return 0;
}

int localca_keygen(br_hmac_drbg_context *rng, struct localca_key *key)
{
	const br_ec_impl *ec = br_ec_get_default();

	if (br_ec_keygen(&rng->vtable, ec, &key->sk, key->skbuf, BR_EC_secp256r1) == 0)
		return -1;
	return br_ec_compute_pub(ec, &key->pk, key->pkbuf, &key->sk) ? 0 : -1;
}

/* Key identifier: SHA-1 of the public key bits (RFC 5280 4.2.1.2 (1)). */
static void lc_key_id(const br_ec_public_key *pk, unsigned char id[20])
{
	br_sha1_context sc;

	br_sha1_init(&sc);
	br_sha1_update(&sc, pk->q, pk->qlen);
	br_sha1_out(&sc, id);
}

/* ---- certificate encoding ---------------------------------------------- */

static void lc_name(struct der *w, const char *cn)
{
	der_begin(w, DER_SEQUENCE);
	der_begin(w, DER_SET);
	der_begin(w, DER_SEQUENCE);
	der_oid(w, "2.5.4.10");
	der_utf8(w, LOCALCA_ORG);
	der_end(w);
	der_end(w);
	der_begin(w, DER_SET);
	der_begin(w, DER_SEQUENCE);
	der_oid(w, "2.5.4.3");
	der_utf8(w, cn);
	der_end(w);
	der_end(w);
	der_end(w);
}

/* Opens one extension: SEQUENCE { OID, [critical], OCTET STRING { ... */
static void lc_ext_begin(struct der *w, const char *oid, int critical)
{
	der_begin(w, DER_SEQUENCE);
	der_oid(w, oid);
	if (critical)
		der_bool(w, 1);
	der_begin(w, DER_OCTET_STRING);
}

static void lc_ext_end(struct der *w)
{
	der_end(w);
	der_end(w);
}

/* 1 for a name we may put in a dNSName: labels of [A-Za-z0-9-], "*." first. */
static int lc_dns_ok(const char *s)
{
	size_t len = strlen(s), label = 0, i;

	if (len == 0 || len > LOCALCA_NAME_MAX)
		return 0;
	if (strncmp(s, "*.", 2) == 0)
		s += 2;
	for (i = 0; s[i]; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		      || (c >= '0' && c <= '9') || (c == '-' && label > 0)))
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && s[i - 1] != '-';
}

int localca_name_ok(const char *name)
{
	unsigned char ip[16];

	return inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1
	       || lc_dns_ok(name);
}

static int lc_san(struct der *w, const char *const *names, size_t n,
	char *err, size_t errlen)
{
	size_t i;

	lc_ext_begin(w, "2.5.29.17", 0);
	der_begin(w, DER_SEQUENCE);
	for (i = 0; i < n; i++) {
		unsigned char ip[16];

		if (inet_pton(AF_INET, names[i], ip) == 1) {
			der_prim(w, DER_CTX_PRIM(7), ip, 4);
		} else if (inet_pton(AF_INET6, names[i], ip) == 1) {
			der_prim(w, DER_CTX_PRIM(7), ip, 16);
		} else if (lc_dns_ok(names[i])) {
			der_prim(w, DER_CTX_PRIM(2), names[i], strlen(names[i]));
		} else {
			lc_err(err, errlen, "not a host name or IP address: \"%s\"", names[i]);
			return -1;
		}
	}
	der_end(w);
	lc_ext_end(w);
	return 0;
}

static void lc_ca_extensions(struct der *w)
{
	lc_ext_begin(w, "2.5.29.19", 1);	/* basicConstraints: CA, pathLen 0 */
	der_begin(w, DER_SEQUENCE);
	der_bool(w, 1);
	der_int_u64(w, 0);
	der_end(w);
	lc_ext_end(w);
	lc_ext_begin(w, "2.5.29.15", 1);	/* keyUsage: keyCertSign, cRLSign */
	der_named_bits(w, (1u << 5) | (1u << 6));
	lc_ext_end(w);
}

static void lc_server_extensions(struct der *w)
{
	lc_ext_begin(w, "2.5.29.19", 1);	/* basicConstraints: not a CA */
	der_begin(w, DER_SEQUENCE);
	der_end(w);
	lc_ext_end(w);
	lc_ext_begin(w, "2.5.29.15", 1);	/* keyUsage: digitalSignature */
	der_named_bits(w, 1u << 0);
	lc_ext_end(w);
	lc_ext_begin(w, "2.5.29.37", 0);	/* extKeyUsage: serverAuth */
	der_begin(w, DER_SEQUENCE);
	der_oid(w, "1.3.6.1.5.5.7.3.1");
	der_end(w);
	lc_ext_end(w);
}

static void lc_key_ids(struct der *w, const struct localca_req *req)
{
	unsigned char id[20];

	lc_key_id(req->subject, id);
	lc_ext_begin(w, "2.5.29.14", 0);	/* subjectKeyIdentifier */
	der_octets(w, id, sizeof id);
	lc_ext_end(w);
	lc_key_id(req->issuer_pk, id);
	lc_ext_begin(w, "2.5.29.35", 0);	/* authorityKeyIdentifier */
	der_begin(w, DER_SEQUENCE);
	der_prim(w, DER_CTX_PRIM(0), id, sizeof id);
	der_end(w);
	lc_ext_end(w);
}

static void lc_sigalg(struct der *w)
{
	der_begin(w, DER_SEQUENCE);
	der_oid(w, "1.2.840.10045.4.3.2");	/* ecdsa-with-SHA256 */
	der_end(w);
}

static int lc_tbs(struct der *w, const struct localca_req *req, char *err, size_t errlen)
{
	br_x509_pkey pk = { .key_type = BR_KEYTYPE_EC };
	unsigned char spki[DER_SPKI_MAX];
	int n;

	pk.key.ec = *req->subject;
	n = der_spki(&pk, spki, sizeof spki);
	if (n < 0) {
		lc_err(err, errlen, "cannot encode the public key");
		return -1;
	}
	der_begin(w, DER_SEQUENCE);
	der_begin(w, DER_CTX(0));
	der_int_u64(w, 2);			/* v3 */
	der_end(w);
	der_int_bytes(w, req->serial, req->serial_len);
	lc_sigalg(w);
	if (req->issuer_dn)
		der_bytes(w, req->issuer_dn, req->issuer_dn_len);
	else
		lc_name(w, req->cn);
	der_begin(w, DER_SEQUENCE);
	der_time(w, req->not_before);
	der_time(w, req->not_after);
	der_end(w);
	lc_name(w, req->cn);
	der_bytes(w, spki, (size_t)n);
	der_begin(w, DER_CTX(3));
	der_begin(w, DER_SEQUENCE);
	if (req->is_ca)
		lc_ca_extensions(w);
	else
		lc_server_extensions(w);
	if (req->name_count && lc_san(w, req->names, req->name_count, err, errlen) < 0)
		return -1;
	lc_key_ids(w, req);
	der_end(w);
	der_end(w);
	der_end(w);
	return 0;
}

int localca_issue(const struct localca_req *req, unsigned char *out, size_t cap,
	char *err, size_t errlen)
{
	unsigned char tbs[LOCALCA_CERT_MAX], hash[32], sig[80];
	br_sha256_context sc;
	struct der w;
	size_t tbs_len, sig_len, len;

	if (!req->cn || !*req->cn || strlen(req->cn) > 64 || req->name_count > LOCALCA_NAMES_MAX) {
		lc_err(err, errlen, "bad common name or too many names");
		return -1;
	}
	der_init(&w, tbs, sizeof tbs);
	if (lc_tbs(&w, req, err, errlen) < 0)
		return -1;
	if (der_finish(&w, &tbs_len) < 0) {
		lc_err(err, errlen, "certificate too large");
		return -1;
	}
	br_sha256_init(&sc);
	br_sha256_update(&sc, tbs, tbs_len);
	br_sha256_out(&sc, hash);
	sig_len = br_ecdsa_sign_asn1_get_default()(br_ec_get_default(), &br_sha256_vtable,
		hash, req->issuer_sk, sig);
	if (sig_len == 0) {
		lc_err(err, errlen, "ECDSA signing failed");
		return -1;
	}
	der_init(&w, out, cap);
	der_begin(&w, DER_SEQUENCE);
	der_bytes(&w, tbs, tbs_len);
	lc_sigalg(&w);
	der_bit_string(&w, sig, sig_len, 0);
	der_end(&w);
	if (der_finish(&w, &len) < 0) {
		lc_err(err, errlen, "certificate too large");
		return -1;
	}
	return (int)len;
}

/* ---- files ------------------------------------------------------------- */

static int lc_path(char *out, const char *dir, const char *name)
{
	int n = snprintf(out, LOCALCA_PATH_MAX, "%s/%s", dir, name);

	return n > 0 && n < LOCALCA_PATH_MAX ? 0 : -1;
}

/* PEM-encodes DER objects (each with its banner) and writes them to
 * dir/name atomically with mode. */
static int lc_write_pem(const char *dir, const char *name, mode_t mode,
	const unsigned char *const *der, const size_t *len, const char *const *banner,
	size_t count, char *err, size_t errlen)
{
	static char text[LOCALCA_PEM_MAX];
	char path[LOCALCA_PATH_MAX];
	size_t used = 0, i;
	int r;

	for (i = 0; i < count; i++) {
		size_t need = br_pem_encode(NULL, der[i], len[i], banner[i], BR_PEM_LINE64);

		if (need + 1 > sizeof text - used) {
			lc_err(err, errlen, "%s: too large", name);
			return -1;
		}
		used += br_pem_encode(text + used, der[i], len[i], banner[i], BR_PEM_LINE64);
	}
	if (lc_path(path, dir, name) < 0) {
		lc_err(err, errlen, "%s: path too long", dir);
		return -1;
	}
	r = fs_write_atomic(path, text, used, mode);
	explicit_bzero(text, used);
	if (r < 0) {
		lc_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int lc_write_key(const char *dir, const char *name, const struct localca_key *key,
	char *err, size_t errlen)
{
	unsigned char der[256];
	const unsigned char *objs[1] = { der };
	const char *banners[1] = { BR_ENCODE_PEM_EC_RAW };
	size_t len = br_encode_ec_raw_der(NULL, &key->sk, &key->pk);
	int r;

	if (len == 0 || len > sizeof der) {
		lc_err(err, errlen, "cannot encode the private key");
		return -1;
	}
	br_encode_ec_raw_der(der, &key->sk, &key->pk);
	r = lc_write_pem(dir, name, 0600, objs, &len, banners, 1, err, errlen);
	explicit_bzero(der, sizeof der);
	return r;
}

static void lc_serial(br_hmac_drbg_context *rng, unsigned char serial[LOCALCA_SERIAL_BYTES])
{
	br_hmac_drbg_generate(rng, serial, LOCALCA_SERIAL_BYTES);
	serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);	/* positive, full length */
}

/* ---- the CA as found on disk ------------------------------------------- */

struct lc_ca {
	struct pem_key key;
	br_ec_public_key pk;
	unsigned char pkbuf[BR_EC_KBUF_PUB_MAX_SIZE];
	unsigned char cert[LOCALCA_CERT_MAX];
	size_t cert_len;
	unsigned char dn[512];
	size_t dn_len;
	int dn_overflow;
};

static void lc_dn_append(void *ctx, const void *buf, size_t len)
{
	struct lc_ca *ca = ctx;

	if (len > sizeof ca->dn - ca->dn_len) {
		ca->dn_overflow = 1;
		return;
	}
	memcpy(ca->dn + ca->dn_len, buf, len);
	ca->dn_len += len;
}

/* Loads ca.pem and ca.key and checks that they belong together. */
static int lc_ca_load(struct lc_ca *ca, const char *dir, char *err, size_t errlen)
{
	char path[LOCALCA_PATH_MAX];
	struct pem_chain chain;
	br_x509_decoder_context dc;
	const br_x509_pkey *pk;
	int ok;

	memset(ca, 0, sizeof *ca);
	if (lc_path(path, dir, LOCALCA_CA_KEY) < 0
	    || pem_key_load(&ca->key, path, err, errlen) < 0)
		return -1;
	if (!pem_key_ec(&ca->key) || pem_key_ec(&ca->key)->curve != BR_EC_secp256r1
	    || !br_ec_compute_pub(br_ec_get_default(), &ca->pk, ca->pkbuf, pem_key_ec(&ca->key))) {
		lc_err(err, errlen, "%s: not a P-256 key", path);
		return -1;
	}
	if (lc_path(path, dir, LOCALCA_CA_CERT) < 0
	    || pem_chain_load(&chain, path, err, errlen) < 0)
		return -1;
	ok = chain.certs[0].data_len <= sizeof ca->cert;
	if (ok) {
		memcpy(ca->cert, chain.certs[0].data, chain.certs[0].data_len);
		ca->cert_len = chain.certs[0].data_len;
	}
	pem_chain_free(&chain);
	br_x509_decoder_init(&dc, lc_dn_append, ca);
	br_x509_decoder_push(&dc, ca->cert, ca->cert_len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (!ok || !pk || ca->dn_overflow || pk->key_type != BR_KEYTYPE_EC
	    || pk->key.ec.qlen != ca->pk.qlen || memcmp(pk->key.ec.q, ca->pk.q, ca->pk.qlen) != 0) {
		lc_err(err, errlen, "%s: unreadable, or not the certificate of %s",
			path, LOCALCA_CA_KEY);
		return -1;
	}
	return 0;
}

static int lc_make_ca(const char *dir, const char *host, br_hmac_drbg_context *rng,
	int64_t now, char *err, size_t errlen)
{
	static struct localca_key key;
	unsigned char cert[LOCALCA_CERT_MAX], serial[LOCALCA_SERIAL_BYTES];
	char cn[65];
	struct localca_req req = { 0 };
	const unsigned char *objs[1] = { cert };
	const char *banners[1] = { "CERTIFICATE" };
	size_t len;
	int n;

	if (localca_keygen(rng, &key) < 0) {
		lc_err(err, errlen, "CA key generation failed");
		return -1;
	}
	snprintf(cn, sizeof cn, "Postern local CA %.40s", host);
	lc_serial(rng, serial);
	req.cn = cn;
	req.is_ca = 1;
	req.not_before = now - LOCALCA_BACKDATE_SECONDS;
	req.not_after = now + (int64_t)LOCALCA_CA_DAYS * LOCALCA_DAY;
	req.subject = &key.pk;
	req.issuer_sk = &key.sk;
	req.issuer_pk = &key.pk;
	req.serial = serial;
	req.serial_len = sizeof serial;
	n = localca_issue(&req, cert, sizeof cert, err, errlen);
	if (n < 0)
		return -1;
	len = (size_t)n;
	/* Key first: a crash in between leaves a key without certificate,
	 * which the next init replaces; never a certificate without key. */
	n = lc_write_key(dir, LOCALCA_CA_KEY, &key, err, errlen);
	explicit_bzero(&key, sizeof key);
	if (n < 0)
		return -1;
	return lc_write_pem(dir, LOCALCA_CA_CERT, 0644, objs, &len, banners, 1, err, errlen);
}

/* Issues and writes server.key and server.pem (with the CA appended). */
static int lc_make_server(const char *dir, const struct lc_ca *ca,
	const char *const *names, size_t count, br_hmac_drbg_context *rng,
	int64_t now, char *err, size_t errlen)
{
	static struct localca_key key;
	unsigned char cert[LOCALCA_CERT_MAX], serial[LOCALCA_SERIAL_BYTES];
	struct localca_req req = { 0 };
	const unsigned char *objs[2] = { cert, ca->cert };
	const char *banners[2] = { "CERTIFICATE", "CERTIFICATE" };
	size_t lens[2];
	int n;

	if (count == 0 || localca_keygen(rng, &key) < 0) {
		lc_err(err, errlen, count ? "key generation failed" : "no names given");
		return -1;
	}
	lc_serial(rng, serial);
	req.cn = names[0];
	req.names = names;
	req.name_count = count;
	req.not_before = now - LOCALCA_BACKDATE_SECONDS;
	req.not_after = now + (int64_t)LOCALCA_SERVER_DAYS * LOCALCA_DAY;
	req.subject = &key.pk;
	req.issuer_sk = pem_key_ec(&ca->key);
	req.issuer_pk = &ca->pk;
	req.issuer_dn = ca->dn;
	req.issuer_dn_len = ca->dn_len;
	req.serial = serial;
	req.serial_len = sizeof serial;
	n = localca_issue(&req, cert, sizeof cert, err, errlen);
	if (n < 0 || lc_write_key(dir, LOCALCA_SERVER_KEY, &key, err, errlen) < 0) {
		explicit_bzero(&key, sizeof key);
		return -1;
	}
	explicit_bzero(&key, sizeof key);
	lens[0] = (size_t)n;
	lens[1] = ca->cert_len;
	return lc_write_pem(dir, LOCALCA_SERVER_CERT, 0644, objs, lens, banners, 2, err, errlen);
}

int localca_init(const char *dir, const char *const *names, size_t count,
	int64_t now, char *err, size_t errlen)
{
	static struct lc_ca ca;
	br_hmac_drbg_context rng;
	char path[LOCALCA_PATH_MAX];
	int r = -1;

	if (count == 0) {
		lc_err(err, errlen, "no names given");
		return -1;
	}
	if (fs_mkdir_p(dir, 0755) < 0) {
		lc_err(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (localca_rng_init(&rng, err, errlen) < 0)
		return -1;
	/* Keep a CA that loads and is not about to expire. */
	if (lc_ca_load(&ca, dir, NULL, 0) < 0 || lc_path(path, dir, LOCALCA_CA_CERT) < 0
	    || localca_expires_within(path, now, (int64_t)LOCALCA_SERVER_DAYS * LOCALCA_DAY,
				      NULL, NULL, 0) != 0) {
		if (lc_make_ca(dir, names[0], &rng, now, err, errlen) < 0
		    || lc_ca_load(&ca, dir, err, errlen) < 0)
			goto out;
	}
	r = lc_make_server(dir, &ca, names, count, &rng, now, err, errlen);
out:
	explicit_bzero(&ca, sizeof ca);
	explicit_bzero(&rng, sizeof rng);
	return r;
}

/* ---- renewal ----------------------------------------------------------- */

/* Reads the first DER certificate of a PEM file into out. */
static int lc_first_cert(const char *path, unsigned char *out, size_t cap, size_t *len,
	char *err, size_t errlen)
{
	struct pem_chain chain;
	int ok;

	if (pem_chain_load(&chain, path, err, errlen) < 0)
		return -1;
	ok = chain.certs[0].data_len <= cap;
	if (ok) {
		memcpy(out, chain.certs[0].data, chain.certs[0].data_len);
		*len = chain.certs[0].data_len;
	} else {
		lc_err(err, errlen, "%s: certificate too large", path);
	}
	pem_chain_free(&chain);
	return ok ? 0 : -1;
}

int localca_expires_within(const char *cert_path, int64_t now, int64_t within,
	int64_t *not_after, char *err, size_t errlen)
{
	unsigned char cert[LOCALCA_CERT_MAX];
	br_x509_decoder_context dc;
	size_t len;
	int64_t na;

	if (lc_first_cert(cert_path, cert, sizeof cert, &len, err, errlen) < 0)
		return -1;
	br_x509_decoder_init(&dc, NULL, NULL);
	br_x509_decoder_push(&dc, cert, len);
	if (!br_x509_decoder_get_pkey(&dc)) {
		lc_err(err, errlen, "%s: cannot decode the certificate", cert_path);
		return -1;
	}
	na = der_br_to_time(dc.notafter_days, dc.notafter_seconds);
	if (not_after)
		*not_after = na;
	return na - now <= within ? 1 : 0;
}

/* DER reader for the subjectAltName of our own certificates. */
struct lc_rd {
	const unsigned char *p, *end;
};

/* Reads one TLV (one-byte tags, definite lengths); returns 0 or -1. */
static int lc_rd_tlv(struct lc_rd *r, unsigned *tag, struct lc_rd *val)
{
	size_t len = 0, n;

	if (r->end - r->p < 2)
		return -1;
	*tag = *r->p++;
	n = *r->p++;
	if (n & 0x80) {
		n &= 0x7f;
		if (n == 0 || n > 3 || (size_t)(r->end - r->p) < n)
			return -1;
		while (n--)
			len = len << 8 | *r->p++;
	} else {
		len = n;
	}
	if ((size_t)(r->end - r->p) < len)
		return -1;
	val->p = r->p;
	val->end = r->p + len;
	r->p += len;
	return 0;
}

/* Finds the extension with the given OID (DER contents) in a certificate;
 * stores the extnValue contents in *out. Returns 0 or -1. */
static int lc_find_ext(const unsigned char *cert, size_t len, const unsigned char *oid,
	size_t oid_len, struct lc_rd *out)
{
	struct lc_rd r = { cert, cert + len }, c, tbs, v;
	unsigned tag;

	if (lc_rd_tlv(&r, &tag, &c) < 0 || lc_rd_tlv(&c, &tag, &tbs) < 0)
		return -1;
	while (tbs.p < tbs.end) {
		if (lc_rd_tlv(&tbs, &tag, &v) < 0)
			return -1;
		if (tag == DER_CTX(3))
			break;
	}
	if (tag != DER_CTX(3) || lc_rd_tlv(&v, &tag, &c) < 0)
		return -1;
	while (c.p < c.end) {
		struct lc_rd ext, f;

		if (lc_rd_tlv(&c, &tag, &ext) < 0 || lc_rd_tlv(&ext, &tag, &f) < 0)
			return -1;
		if (tag != DER_OID || (size_t)(f.end - f.p) != oid_len
		    || memcmp(f.p, oid, oid_len) != 0)
			continue;
		do {
			if (lc_rd_tlv(&ext, &tag, &f) < 0)
				return -1;
		} while (tag == DER_BOOLEAN);
		*out = f;
		return tag == DER_OCTET_STRING ? 0 : -1;
	}
	return -1;
}

/* Extracts the DNS names and addresses of the certificate's SAN. */
static int lc_cert_names(const unsigned char *cert, size_t len,
	char names[][LOCALCA_NAME_MAX + 1], size_t *count)
{
	static const unsigned char san_oid[] = { 0x55, 0x1d, 0x11 };
	struct lc_rd ext, seq, v;
	unsigned tag;

	*count = 0;
	if (lc_find_ext(cert, len, san_oid, sizeof san_oid, &ext) < 0
	    || lc_rd_tlv(&ext, &tag, &seq) < 0 || tag != DER_SEQUENCE)
		return -1;
	while (seq.p < seq.end && *count < LOCALCA_NAMES_MAX) {
		size_t n;

		if (lc_rd_tlv(&seq, &tag, &v) < 0)
			return -1;
		n = (size_t)(v.end - v.p);
		if (tag == DER_CTX_PRIM(2) && n > 0 && n <= LOCALCA_NAME_MAX) {
			memcpy(names[*count], v.p, n);
			names[(*count)++][n] = '\0';
		} else if (tag == DER_CTX_PRIM(7) && (n == 4 || n == 16)) {
			inet_ntop(n == 4 ? AF_INET : AF_INET6, v.p, names[(*count)++],
				LOCALCA_NAME_MAX + 1);
		}
	}
	return *count ? 0 : -1;
}

/* 0 when server.key loads and belongs to the certificate. */
static int lc_server_key_ok(const char *dir, const unsigned char *cert, size_t len)
{
	static struct pem_key key;
	char path[LOCALCA_PATH_MAX];
	br_x509_decoder_context dc;
	const br_x509_pkey *pk;
	br_ec_public_key pub;
	unsigned char buf[BR_EC_KBUF_PUB_MAX_SIZE];
	int ok;

	if (lc_path(path, dir, LOCALCA_SERVER_KEY) < 0 || pem_key_load(&key, path, NULL, 0) < 0)
		return -1;
	br_x509_decoder_init(&dc, NULL, NULL);
	br_x509_decoder_push(&dc, cert, len);
	pk = br_x509_decoder_get_pkey(&dc);
	ok = pk && pk->key_type == BR_KEYTYPE_EC && pem_key_ec(&key)
	     && br_ec_compute_pub(br_ec_get_default(), &pub, buf, pem_key_ec(&key))
	     && pub.qlen == pk->key.ec.qlen && memcmp(pub.q, pk->key.ec.q, pub.qlen) == 0;
	pem_key_wipe(&key);
	return ok ? 0 : -1;
}

/* Decides whether the server certificate needs reissuing; keeps its names. */
static int lc_needs_renewal(const char *dir, int64_t now,
	char names[][LOCALCA_NAME_MAX + 1], size_t *count)
{
	unsigned char cert[LOCALCA_CERT_MAX];
	char path[LOCALCA_PATH_MAX];
	size_t len;

	*count = 0;
	if (lc_path(path, dir, LOCALCA_SERVER_CERT) < 0
	    || lc_first_cert(path, cert, sizeof cert, &len, NULL, 0) < 0)
		return 1;
	lc_cert_names(cert, len, names, count);
	if (lc_server_key_ok(dir, cert, len) < 0)
		return 1;
	return localca_expires_within(path, now, (int64_t)LOCALCA_RENEW_DAYS * LOCALCA_DAY,
				      NULL, NULL, 0) != 0;
}

int localca_renew(const char *dir, const char *const *names, size_t count,
	int64_t now, int force, char *err, size_t errlen)
{
	static struct lc_ca ca;
	static char old[LOCALCA_NAMES_MAX][LOCALCA_NAME_MAX + 1];
	const char *oldp[LOCALCA_NAMES_MAX];
	br_hmac_drbg_context rng;
	size_t nold, i;
	int need, r = -1;

	need = lc_needs_renewal(dir, now, old, &nold);
	if (!need && !force)
		return 0;
	if (count == 0) {
		for (i = 0; i < nold; i++)
			oldp[i] = old[i];
		names = oldp;
		count = nold;
	}
	if (count == 0) {
		lc_err(err, errlen, "%s: no names given and none in the old certificate", dir);
		return -1;
	}
	if (lc_ca_load(&ca, dir, err, errlen) < 0 || localca_rng_init(&rng, err, errlen) < 0)
		goto out;
	if (lc_make_server(dir, &ca, names, count, &rng, now, err, errlen) == 0)
		r = 1;
out:
	explicit_bzero(&ca, sizeof ca);
	explicit_bzero(&rng, sizeof rng);
	return r;
}
