/*
 * dns-wire.h - DNS messages (RFC 1035) as bytes: a bounded reader and a
 * writer. No sockets, no allocation: unit tests and the fuzzer drive it
 * from byte arrays.
 *
 * Reading: cursor functions take the message (msg, len) and a position and
 * return the position after what they read, or -1 when the bytes are not a
 * valid item (too short, a label over 63 bytes, a name over 255 bytes, a
 * compression pointer that does not point strictly backwards, more than
 * DNS_PTR_HOPS_MAX pointers). A cursor never points past len.
 *
 * Names are kept in wire form without compression ("\3www\7example\3com\0"),
 * at most DNS_NAME_MAX bytes with the root label; dns_name_eq compares them
 * ASCII-case-insensitively, memcmp compares them exactly (0x20 checks).
 *
 * Writing: a struct dns_wbuf over the caller's buffer with a sticky
 * overflow flag; names are written uncompressed (answers stay small, and
 * the writer is simpler to trust).
 */
#ifndef POSTERN_DNS_WIRE_H
#define POSTERN_DNS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_MAX 255	/* wire bytes of a name, root label included (RFC 1035 3.1) */
#define DNS_LABEL_MAX 63	/* bytes of one label (RFC 1035 2.3.4) */
#define DNS_PTR_HOPS_MAX 16	/* compression pointers followed in one name */
#define DNS_NAME_TEXT_MAX 1024	/* "a.b.c" text form, escapes included, with NUL */
#define DNS_HEADER_LEN 12
#define DNS_UDP_PLAIN 512	/* UDP payload without EDNS0 (RFC 1035 4.2.1) */
#define DNS_EDNS_UDP 1232	/* our EDNS0 UDP size (DNS flag day 2020) */
#define DNS_MSG_MAX 65535	/* TCP messages (RFC 1035 4.2.2) */

/* Types and classes we handle by name. */
enum {
	DNS_T_A = 1, DNS_T_NS = 2, DNS_T_CNAME = 5, DNS_T_SOA = 6, DNS_T_PTR = 12,
	DNS_T_MX = 15, DNS_T_TXT = 16, DNS_T_AAAA = 28, DNS_T_SRV = 33,
	DNS_T_OPT = 41, DNS_T_ANY = 255, DNS_C_IN = 1
};

/* Header flags (second 16-bit word). */
#define DNS_F_QR 0x8000u
#define DNS_F_AA 0x0400u
#define DNS_F_TC 0x0200u
#define DNS_F_RD 0x0100u
#define DNS_F_RA 0x0080u
#define DNS_F_AD 0x0020u
#define DNS_F_CD 0x0010u
#define DNS_OPCODE_MASK 0x7800u
#define DNS_OPCODE(f) (((f) >> 11) & 0xf)
#define DNS_RCODE(f) ((f) & 0xf)

enum { DNS_R_NOERROR = 0, DNS_R_FORMERR = 1, DNS_R_SERVFAIL = 2,
       DNS_R_NXDOMAIN = 3, DNS_R_NOTIMP = 4, DNS_R_REFUSED = 5 };

struct dns_header {
	uint16_t id, flags, qdcount, ancount, nscount, arcount;
};

struct dns_question {
	uint8_t name[DNS_NAME_MAX];
	size_t namelen;		/* wire bytes, root label included */
	uint16_t type, qclass;
};

/* One resource record; rdata stays in the message (rdpos, rdlen). */
struct dns_rr {
	uint8_t name[DNS_NAME_MAX];
	size_t namelen;
	uint16_t type, rclass;
	uint32_t ttl;
	uint16_t rdlen;
	size_t rdpos;		/* offset of the rdata in the message */
};

/* ---- reading ------------------------------------------------------------ */

/* Reads the 12-byte header at pos 0. Returns 12 or -1. */
long dns_read_header(const uint8_t *msg, size_t len, struct dns_header *h);

/* Reads a possibly compressed name at pos into out (wire form, uncompressed,
 * DNS_NAME_MAX bytes) and its length into *outlen. Returns the position
 * after the name in the message (after the first pointer if any), or -1. */
long dns_read_name(const uint8_t *msg, size_t len, size_t pos,
	uint8_t out[DNS_NAME_MAX], size_t *outlen);

/* Skips a possibly compressed name (validating it as dns_read_name). */
long dns_skip_name(const uint8_t *msg, size_t len, size_t pos);

/* Reads a question entry. Returns the position after it, or -1. */
long dns_read_question(const uint8_t *msg, size_t len, size_t pos, struct dns_question *q);

/* Reads a resource record (its rdata is bounds-checked, not decoded).
 * Returns the position after it, or -1. */
long dns_read_rr(const uint8_t *msg, size_t len, size_t pos, struct dns_rr *rr);

/* Parses a whole message: header, then every section (each name and RR
 * bounded). Stores the header and the offset of each section's first entry
 * (sec[0] questions, [1] answers, [2] authority, [3] additional). Fails on
 * trailing garbage too. Returns 0 or -1. */
int dns_parse(const uint8_t *msg, size_t len, struct dns_header *h, size_t sec[4]);

/* EDNS0 (RFC 6891): looks for an OPT RR in the additional section (at
 * position ar, count arcount). Returns 1 with its UDP size (at least 512)
 * in *udp_size, 0 when there is none, -1 when the section is malformed or
 * holds two OPT records (RFC 6891 6.1.1: FORMERR). */
int dns_find_opt(const uint8_t *msg, size_t len, size_t ar, unsigned arcount,
	unsigned *udp_size);

/* ---- names ---------------------------------------------------------------- */

/* 1 when two wire names are equal ignoring ASCII case. */
int dns_name_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* 1 when name equals zone or lies below it (case-insensitive). */
int dns_name_in(const uint8_t *name, size_t namelen, const uint8_t *zone, size_t zonelen);

/* Lower-cases the ASCII letters of a wire name in place. */
void dns_name_lower(uint8_t *name, size_t namelen);

/* Converts "www.example.com" or "www.example.com." (no escapes, labels
 * 1-63 bytes) to wire form. "." or "" is the root. Returns the length or -1. */
long dns_name_from_text(const char *text, uint8_t out[DNS_NAME_MAX]);

/* Converts a wire name to text ("www.example.com", "." for the root), with
 * bytes other than letters, digits, '-', '_' escaped as \DDD (RFC 1035 5.1).
 * Returns the text length, or -1 when cap is too small. */
long dns_name_to_text(const uint8_t *name, size_t namelen, char *out, size_t cap);

/* Number of labels of a wire name (the root not counted). */
int dns_name_labels(const uint8_t *name, size_t namelen);

/* ---- writing ---------------------------------------------------------------- */

struct dns_wbuf {
	uint8_t *b;
	size_t cap, len;
	int overflow;		/* sticky: a put did not fit */
};

void dns_wbuf_init(struct dns_wbuf *w, uint8_t *buf, size_t cap);
void dns_put_u8(struct dns_wbuf *w, unsigned v);
void dns_put_u16(struct dns_wbuf *w, unsigned v);
void dns_put_u32(struct dns_wbuf *w, uint32_t v);
void dns_put_bytes(struct dns_wbuf *w, const void *p, size_t n);
/* Stores v at offset off (already written) without moving len. */
void dns_patch_u16(struct dns_wbuf *w, size_t off, unsigned v);
void dns_put_header(struct dns_wbuf *w, const struct dns_header *h);
void dns_put_question(struct dns_wbuf *w, const struct dns_question *q);
/* Writes an RR's name, type, class and TTL, then rdlen and rdata. */
void dns_put_rr(struct dns_wbuf *w, const uint8_t *name, size_t namelen, unsigned type,
	uint32_t ttl, const void *rdata, size_t rdlen);
/* Writes an OPT RR advertising udp_size (RFC 6891 6.1.2). */
void dns_put_opt(struct dns_wbuf *w, unsigned udp_size);

/*
 * Copies an RR's rdata from msg into w, expanding the compressed names
 * inside the types whose rdata holds names (NS, CNAME, PTR, MX, SOA, SRV;
 * RFC 3597 4: others are copied as they are), preceded by the new rdlen.
 * The expanded names are lower-cased: a reply to a 0x20 query often
 * compresses them against our mixed-case question.
 * Returns 0, or -1 when the rdata is malformed.
 */
int dns_copy_rdata(struct dns_wbuf *w, const uint8_t *msg, size_t len, const struct dns_rr *rr);

#endif
