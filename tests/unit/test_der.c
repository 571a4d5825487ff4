/* test_der.c - the DER writer against known encodings. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "der.h"

static unsigned char out[4096];

/* Runs one writer step on a fresh buffer and compares the encoding. */
#define ENC(stmt, ...) do { static const unsigned char want_[] = { __VA_ARGS__ }; \
	struct der w_; size_t n_ = 0; der_init(&w_, out, sizeof out); \
	{ struct der *w = &w_; stmt; } \
	CHECK_EQ(der_finish(&w_, &n_), 0); CHECK_EQ(n_, sizeof want_); \
	if (n_ == sizeof want_) CHECK_MEMEQ(out, want_, n_); } while (0)

static void t_integers(void)
{
	ENC(der_int_u64(w, 0), 0x02, 0x01, 0x00);
	ENC(der_int_u64(w, 127), 0x02, 0x01, 0x7f);
	ENC(der_int_u64(w, 128), 0x02, 0x02, 0x00, 0x80);
	ENC(der_int_u64(w, 256), 0x02, 0x02, 0x01, 0x00);
	ENC(der_int_u64(w, 65537), 0x02, 0x03, 0x01, 0x00, 0x01);
	ENC(der_int_bytes(w, "\x00\x00\xff", 3), 0x02, 0x02, 0x00, 0xff);
	ENC(der_int_bytes(w, "", 0), 0x02, 0x01, 0x00);
}

static void t_simple(void)
{
	ENC(der_bool(w, 1), 0x01, 0x01, 0xff);
	ENC(der_bool(w, 0), 0x01, 0x01, 0x00);
	ENC(der_null(w), 0x05, 0x00);
	ENC(der_octets(w, "ab", 2), 0x04, 0x02, 'a', 'b');
	ENC(der_utf8(w, "h\xc3\xa9"), 0x0c, 0x03, 'h', 0xc3, 0xa9);
	ENC(der_printable(w, "Ab 1"), 0x13, 0x04, 'A', 'b', ' ', '1');
	ENC(der_ia5(w, "a.b"), 0x16, 0x03, 'a', '.', 'b');
	ENC(der_prim(w, DER_CTX_PRIM(7), "\x7f\0\0\1", 4), 0x87, 0x04, 0x7f, 0, 0, 1);
	ENC(der_bit_string(w, "\x80", 1, 7), 0x03, 0x02, 0x07, 0x80);
}

static void t_oids(void)
{
	ENC(der_oid(w, "1.2.840.113549"), 0x06, 0x06, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d);
	ENC(der_oid(w, "2.5.29.17"), 0x06, 0x03, 0x55, 0x1d, 0x11);
	ENC(der_oid(w, "1.2.840.10045.4.3.2"),
	    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02);
	ENC(der_oid(w, "1.3.6.1.5.5.7.3.1"),
	    0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01);
	ENC(der_oid(w, "2.999.3"), 0x06, 0x03, 0x88, 0x37, 0x03);
}

static void t_bad_oids(void)
{
	static const char *const bad[] = { "", "1", "3.1", "1.40", "1..2", "01.2",
		"1.2.", "1.2a", "1.99999999999999999999999" };
	size_t i, n;
	struct der w;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		der_init(&w, out, sizeof out);
		der_oid(&w, bad[i]);
		CHECK_EQ(der_finish(&w, &n), -1);
	}
}

static void t_named_bits(void)
{
	ENC(der_named_bits(w, 1u << 0), 0x03, 0x02, 0x07, 0x80);       /* digitalSignature */
	ENC(der_named_bits(w, (1u << 5) | (1u << 6)), 0x03, 0x02, 0x01, 0x06); /* keyCertSign, cRLSign */
	ENC(der_named_bits(w, (1u << 0) | (1u << 2)), 0x03, 0x02, 0x05, 0xa0);
	ENC(der_named_bits(w, 1u << 8), 0x03, 0x03, 0x07, 0x00, 0x80);  /* decipherOnly */
	ENC(der_named_bits(w, 0), 0x03, 0x01, 0x00);
}

static void t_times(void)
{
	ENC(der_time(w, 0), 0x17, 0x0d, '7', '0', '0', '1', '0', '1', '0', '0', '0', '0', '0', '0', 'Z');
	/* 2049-12-31 23:59:59 is the last UTCTime; 2050-01-01 is Generalized. */
	ENC(der_time(w, 2524607999LL),
	    0x17, 0x0d, '4', '9', '1', '2', '3', '1', '2', '3', '5', '9', '5', '9', 'Z');
	ENC(der_time(w, 2524608000LL), 0x18, 0x0f,
	    '2', '0', '5', '0', '0', '1', '0', '1', '0', '0', '0', '0', '0', '0', 'Z');
	ENC(der_time(w, -631152001LL), 0x18, 0x0f,
	    '1', '9', '4', '9', '1', '2', '3', '1', '2', '3', '5', '9', '5', '9', 'Z');
	/* 2024-02-29 12:34:56 (leap day). */
	ENC(der_time(w, 1709210096LL),
	    0x17, 0x0d, '2', '4', '0', '2', '2', '9', '1', '2', '3', '4', '5', '6', 'Z');
}

static void t_nesting(void)
{
	ENC((der_begin(w, DER_SEQUENCE), der_end(w)), 0x30, 0x00);
	ENC((der_begin(w, DER_SEQUENCE), der_begin(w, DER_SET), der_null(w), der_end(w),
	     der_begin(w, DER_CTX(3)), der_bool(w, 1), der_end(w), der_end(w)),
	    0x30, 0x09, 0x31, 0x02, 0x05, 0x00, 0xa3, 0x03, 0x01, 0x01, 0xff);
}

/* Long forms: 200 bytes of content need 0x81, 300 need 0x82, nested. */
static void t_long_lengths(void)
{
	static unsigned char zeros[300];
	struct der w;
	size_t n;

	der_init(&w, out, sizeof out);
	der_begin(&w, DER_SEQUENCE);
	der_begin(&w, DER_OCTET_STRING);
	der_bytes(&w, zeros, 300);
	der_end(&w);
	der_octets(&w, zeros, 200);
	der_end(&w);
	CHECK_EQ(der_finish(&w, &n), 0);
	CHECK_EQ(n, 4 + 4 + 300 + 3 + 200);
	CHECK_MEMEQ(out, "\x30\x82\x01\xfb\x04\x82\x01\x2c", 8);
	CHECK_MEMEQ(out + 308, "\x04\x81\xc8", 3);
}

static void t_errors(void)
{
	struct der w;
	size_t n = 99;

	der_init(&w, out, 3);
	der_octets(&w, "abcd", 4);
	CHECK_EQ(der_finish(&w, &n), -1);
	CHECK_EQ(n, 99);
	der_init(&w, out, sizeof out);
	der_begin(&w, DER_SEQUENCE);
	CHECK_EQ(der_finish(&w, &n), -1);	/* still open */
	der_init(&w, out, sizeof out);
	der_end(&w);
	CHECK_EQ(der_finish(&w, &n), -1);	/* nothing open */
	der_init(&w, out, sizeof out);
	der_printable(&w, "a@b");
	CHECK_EQ(der_finish(&w, &n), -1);
	/* A long form that no longer fits when der_end() inserts the length. */
	der_init(&w, out, 130);
	der_begin(&w, DER_SEQUENCE);
	der_bytes(&w, out + 200, 128);
	der_end(&w);
	CHECK_EQ(der_finish(&w, &n), -1);
}

static void t_br_time(void)
{
	uint32_t d, s;

	der_time_to_br(0, &d, &s);
	CHECK_EQ(d, 719528);
	CHECK_EQ(s, 0);
	der_time_to_br(1709210096LL, &d, &s);
	CHECK_EQ(der_br_to_time(d, s), 1709210096LL);
	CHECK_EQ(s, 12 * 3600 + 34 * 60 + 56);
}

int main(void)
{
	RUN(t_integers);
	RUN(t_simple);
	RUN(t_oids);
	RUN(t_bad_oids);
	RUN(t_named_bits);
	RUN(t_times);
	RUN(t_nesting);
	RUN(t_long_lengths);
	RUN(t_errors);
	RUN(t_br_time);
	return check_done();
}
