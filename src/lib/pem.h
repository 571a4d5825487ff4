/*
 * pem.h - PEM input for TLS: certificate chains, private keys (EC and RSA,
 * raw or PKCS#8) and trust-anchor bundles (such as the Mozilla CA bundle),
 * decoded with BearSSL.
 *
 * These are start-up (or SIGHUP) operations: chains and anchors are
 * allocated on the heap once and shared read-only by every connection; keys
 * live in a caller-owned struct. Every function returns -1 on bad input
 * with a message in err (errlen bytes, may be 0), never exits.
 */
#ifndef POSTERN_PEM_H
#define POSTERN_PEM_H

#include <stddef.h>

#include <bearssl.h>

/* Largest PEM file read (a full Mozilla CA bundle is about 220 KB). */
#define PEM_FILE_MAX (1024 * 1024)
/* Largest single decoded object (DER bytes). */
#define PEM_OBJECT_MAX (64 * 1024)
/* Most certificates in a server chain. */
#define PEM_CHAIN_MAX 10
/* Most trust anchors in one bundle. */
#define PEM_ANCHORS_MAX 1000

/* Called once per PEM object, with its banner name ("CERTIFICATE") and DER
 * contents; returns 0 to continue, -1 to stop (pem_decode returns -1). */
typedef int (*pem_object_fn)(void *arg, const char *name,
	const unsigned char *der, size_t len);

/* Decodes every PEM object in text (len bytes). Text outside objects is
 * ignored. Returns the number of objects, or -1 (malformed PEM, an object
 * over PEM_OBJECT_MAX, an unterminated object, or fn returned -1). */
int pem_decode(const void *text, size_t len, pem_object_fn fn, void *arg,
	char *err, size_t errlen);

/* A certificate chain, end-entity first, as BearSSL's server wants it. */
struct pem_chain {
	br_x509_certificate *certs;
	size_t count;
};

/* Parses the CERTIFICATE objects of text into chain (at least one, at most
 * PEM_CHAIN_MAX; other objects are ignored). Returns the count or -1.
 * Release with pem_chain_free(). */
int pem_chain_parse(struct pem_chain *chain, const void *text, size_t len,
	char *err, size_t errlen);

/* The same, reading the file at path. */
int pem_chain_load(struct pem_chain *chain, const char *path,
	char *err, size_t errlen);

/* Frees the chain's certificates; the struct may be reused. */
void pem_chain_free(struct pem_chain *chain);

/* A private key. It points into itself: do not copy it once loaded. */
struct pem_key {
	br_skey_decoder_context dc;
	int type;		/* BR_KEYTYPE_EC or BR_KEYTYPE_RSA */
};

/* Parses the first private-key object of text ("EC PRIVATE KEY",
 * "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY"). Returns 0 or -1. */
int pem_key_parse(struct pem_key *key, const void *text, size_t len,
	char *err, size_t errlen);

/* The same, reading the file at path. */
int pem_key_load(struct pem_key *key, const char *path, char *err, size_t errlen);

/* The key itself; NULL when the key is of the other type. */
const br_ec_private_key *pem_key_ec(const struct pem_key *key);
const br_rsa_private_key *pem_key_rsa(const struct pem_key *key);

/* Clears the key material. */
void pem_key_wipe(struct pem_key *key);

/* Trust anchors for br_x509_minimal. A certificate with the CA flag becomes
 * a CA anchor; one without it is trusted directly (its key must be the
 * server's, as with a self-signed server certificate). */
struct pem_anchors {
	br_x509_trust_anchor *ta;
	size_t count;
};

/* Parses every CERTIFICATE object of text into anchors (at least one).
 * Returns the count or -1. Release with pem_anchors_free(). */
int pem_anchors_parse(struct pem_anchors *anchors, const void *text, size_t len,
	char *err, size_t errlen);

/* The same, reading the file at path (a CA bundle). */
int pem_anchors_load(struct pem_anchors *anchors, const char *path,
	char *err, size_t errlen);

void pem_anchors_free(struct pem_anchors *anchors);

/* Reads a whole file of at most PEM_FILE_MAX bytes into a new heap buffer
 * (NUL-terminated; free() it). Returns the buffer and its length in *len,
 * or NULL with err. */
char *pem_read_file(const char *path, size_t *len, char *err, size_t errlen);

#endif
