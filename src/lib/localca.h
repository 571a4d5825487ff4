/*
 * localca.h - the box's own certificate authority.
 *
 * On first boot the box makes an ECDSA P-256 CA (valid LOCALCA_CA_DAYS) and
 * a server certificate for its names (host name, mail/imap/smtp names in
 * the internal domain, LAN address) signed by that CA (valid
 * LOCALCA_SERVER_DAYS), and renews the server certificate when it expires
 * within LOCALCA_RENEW_DAYS. Offices install ca.pem on their desktops once.
 * An admin who installs their own certificate simply points the daemons at
 * other files; this module only manages its directory:
 *
 *   DIR/ca.pem      CA certificate (mode 0644)
 *   DIR/ca.key      CA private key, SEC1 "EC PRIVATE KEY" (mode 0600)
 *   DIR/server.pem  server certificate followed by ca.pem (the chain)
 *   DIR/server.key  server private key (mode 0600)
 *
 * Files are written atomically (temp file, fsync, rename, fsync dir).
 * Keys come from BearSSL's HMAC-DRBG seeded by getrandom(). Functions return
 * -1 with a message in err on failure and never exit.
 */
#ifndef POSTERN_LOCALCA_H
#define POSTERN_LOCALCA_H

#include <stddef.h>
#include <stdint.h>

#include <bearssl.h>

#define LOCALCA_CA_DAYS (20 * 365)
#define LOCALCA_SERVER_DAYS 365
#define LOCALCA_RENEW_DAYS 30
/* Certificates start this long before "now", for clocks slightly behind. */
#define LOCALCA_BACKDATE_SECONDS 3600
/* Most names (DNS names and addresses) in one server certificate. */
#define LOCALCA_NAMES_MAX 16
/* Longest DNS name (RFC 1035). */
#define LOCALCA_NAME_MAX 253
/* Largest certificate DER produced. */
#define LOCALCA_CERT_MAX 4096

#define LOCALCA_CA_CERT "ca.pem"
#define LOCALCA_CA_KEY "ca.key"
#define LOCALCA_SERVER_CERT "server.pem"
#define LOCALCA_SERVER_KEY "server.key"

/* An EC P-256 key pair; points into itself, do not copy. */
struct localca_key {
	br_ec_private_key sk;
	br_ec_public_key pk;
	unsigned char skbuf[BR_EC_KBUF_PRIV_MAX_SIZE];
	unsigned char pkbuf[BR_EC_KBUF_PUB_MAX_SIZE];
};

/* What to put in one certificate. */
struct localca_req {
	const char *cn;				/* subject common name */
	int is_ca;
	const char *const *names;		/* DNS names and IPv4/IPv6 addresses */
	size_t name_count;
	int64_t not_before, not_after;		/* Unix times */
	const br_ec_public_key *subject;	/* the certified key */
	const br_ec_private_key *issuer_sk;	/* signs; the subject's own for a CA */
	const br_ec_public_key *issuer_pk;	/* for the authority key identifier */
	const unsigned char *issuer_dn;		/* DER Name; NULL: self-issued */
	size_t issuer_dn_len;
	const unsigned char *serial;		/* positive, big-endian */
	size_t serial_len;
};

/* Seeds a DRBG from getrandom(). Returns 0 or -1. */
int localca_rng_init(br_hmac_drbg_context *rng, char *err, size_t errlen);

/* Makes a P-256 key pair. Returns 0 or -1. */
int localca_keygen(br_hmac_drbg_context *rng, struct localca_key *key);

/* Encodes and signs the certificate req describes into out (cap bytes).
 * Names that parse as IP addresses go in as iPAddress, others as dNSName
 * (letters, digits, '-', '.', and a leading "*." only). Returns the DER
 * length or -1 with err. */
int localca_issue(const struct localca_req *req, unsigned char *out, size_t cap,
	char *err, size_t errlen);

/* 1 when name can go into a certificate: an IPv4/IPv6 address, or a DNS
 * name as localca_issue() accepts it. */
int localca_name_ok(const char *name);

/* Creates the CA in dir unless a valid one is there, then issues a fresh
 * server certificate for names (host name first: it becomes the CN).
 * now is the current Unix time. Returns 0 or -1. */
int localca_init(const char *dir, const char *const *names, size_t count,
	int64_t now, char *err, size_t errlen);

/* Reissues the server certificate (with the existing CA) if it is missing,
 * does not match server.key, or expires within LOCALCA_RENEW_DAYS (always
 * with force). With count 0, the names of the current certificate are kept.
 * Returns 1 when it reissued, 0 when nothing was needed, -1 on error. */
int localca_renew(const char *dir, const char *const *names, size_t count,
	int64_t now, int force, char *err, size_t errlen);

/* Reads the first certificate of a PEM file; stores its notAfter in
 * *not_after (may be NULL). Returns 1 if it expires within `within`
 * seconds of now (or already has), 0 if not, -1 on error. */
int localca_expires_within(const char *cert_path, int64_t now, int64_t within,
	int64_t *not_after, char *err, size_t errlen);

#endif
