/*
 * der.h - a small DER writer (enough for X.509 v3 certificates) and the
 * SubjectPublicKeyInfo encoding used for SHA-256 key pins.
 *
 * The writer fills a caller-owned buffer. Errors are sticky: after an
 * overflow or a bad argument every further call does nothing and
 * der_finish() returns -1, so a sequence of calls needs one check at the end.
 *
 *   struct der w;
 *   der_init(&w, buf, sizeof buf);
 *   der_begin(&w, DER_SEQUENCE);
 *     der_int_u64(&w, 2);
 *     der_oid(&w, "2.5.4.3");
 *   der_end(&w);
 *   if (der_finish(&w, &len) < 0) ...
 */
#ifndef POSTERN_DER_H
#define POSTERN_DER_H

#include <stddef.h>
#include <stdint.h>

#include <bearssl.h>

/* Deepest nesting of der_begin() (an X.509 certificate needs about 8). */
#define DER_DEPTH_MAX 16

/* Universal tags. */
#define DER_BOOLEAN      0x01
#define DER_INTEGER      0x02
#define DER_BIT_STRING   0x03
#define DER_OCTET_STRING 0x04
#define DER_NULL         0x05
#define DER_OID          0x06
#define DER_UTF8STRING   0x0c
#define DER_PRINTABLE    0x13
#define DER_IA5STRING    0x16
#define DER_UTCTIME      0x17
#define DER_GENTIME      0x18
#define DER_SEQUENCE     0x30
#define DER_SET          0x31
/* Context-specific tags: [n] constructed (explicit) and [n] primitive (implicit). */
#define DER_CTX(n)       (0xa0 | (n))
#define DER_CTX_PRIM(n)  (0x80 | (n))

/* Largest SubjectPublicKeyInfo der_spki() produces (RSA 4096 fits easily). */
#define DER_SPKI_MAX 1200

struct der {
	unsigned char *buf;
	size_t cap;
	size_t len;
	int err;
	int depth;
	size_t open[DER_DEPTH_MAX];	/* offset of each open tag byte */
};

/* Starts writing into buf (cap bytes). */
void der_init(struct der *w, void *buf, size_t cap);

/* Opens a constructed element (DER_SEQUENCE, DER_SET, DER_CTX(n)) or an
 * encapsulating OCTET STRING / BIT STRING; der_end() closes the innermost
 * one and fills in its length. For a BIT STRING the caller writes the
 * "unused bits" byte (0) itself with der_bytes(). */
void der_begin(struct der *w, unsigned tag);
void der_end(struct der *w);

/* Appends raw bytes (for example an already-encoded element). */
void der_bytes(struct der *w, const void *data, size_t len);

/* Writes a whole primitive element: tag, length, contents. */
void der_prim(struct der *w, unsigned tag, const void *data, size_t len);

/* INTEGER from an unsigned value, or from an unsigned big-endian byte
 * string (leading zeros are stripped, a 0 is prepended when the top bit is
 * set, so the INTEGER stays positive). */
void der_int_u64(struct der *w, uint64_t v);
void der_int_bytes(struct der *w, const void *be, size_t len);

/* BOOLEAN (0xff for true) and NULL. */
void der_bool(struct der *w, int v);
void der_null(struct der *w);

/* OBJECT IDENTIFIER from dotted text ("1.2.840.10045.2.1"); a malformed
 * OID sets the error. */
void der_oid(struct der *w, const char *dotted);

/* BIT STRING with the given count of unused bits in the last byte (0-7). */
void der_bit_string(struct der *w, const void *data, size_t len, unsigned unused);

/* BIT STRING holding named bits (as in KeyUsage): bit 0 is the first (most
 * significant) bit; trailing zero bits are dropped, as DER requires. */
void der_named_bits(struct der *w, uint32_t bits);

/* OCTET STRING. */
void der_octets(struct der *w, const void *data, size_t len);

/* Character strings. der_printable() sets the error if s holds characters
 * outside PrintableString. */
void der_utf8(struct der *w, const char *s);
void der_printable(struct der *w, const char *s);
void der_ia5(struct der *w, const char *s);

/* Time as X.509 wants it: UTCTime for years 1950-2049, GeneralizedTime
 * otherwise (RFC 5280 4.1.2.5). t is seconds since the Unix epoch, UTC. */
void der_time(struct der *w, int64_t t);

/* Ends writing: stores the length in *len and returns 0, or -1 if any call
 * failed (overflow, bad argument) or an element is still open. */
int der_finish(struct der *w, size_t *len);

/* Encodes the SubjectPublicKeyInfo of an EC (P-256/384/521) or RSA public
 * key into out (cap bytes); returns its length or -1. Its SHA-256 is the
 * key pin (openssl x509 -pubkey | openssl pkey -pubin -outform DER). */
int der_spki(const br_x509_pkey *pk, unsigned char *out, size_t cap);

/* Converts a Unix time to the days/seconds pair BearSSL's X.509 code uses
 * (days since 1 January of year 0, seconds since midnight). */
void der_time_to_br(int64_t t, uint32_t *days, uint32_t *seconds);

/* Converts BearSSL's days/seconds pair back to a Unix time. */
int64_t der_br_to_time(uint32_t days, uint32_t seconds);

#endif
