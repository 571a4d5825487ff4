/*
 * der.c - a small DER writer and SubjectPublicKeyInfo encoding.
 * See der.h.
 */
#include <string.h>

#include "der.h"

/* Longest OID text der_oid() accepts, and most arcs in one OID. */
#define DER_OID_ARCS_MAX 32
/* Days between 0000-01-01 (BearSSL's origin) and 1970-01-01. */
#define DER_DAYS_0_TO_1970 719528

static const char *const der_curve_oid[] = {
	[BR_EC_secp256r1] = "1.2.840.10045.3.1.7",
	[BR_EC_secp384r1] = "1.3.132.0.34",
	[BR_EC_secp521r1] = "1.3.132.0.35",
};

void der_init(struct der *w, void *buf, size_t cap)
{
	memset(w, 0, sizeof *w);
	w->buf = buf;
	w->cap = cap;
}

static int der_room(struct der *w, size_t n)
{
	if (w->err)
		return 0;
	if (n > w->cap - w->len) {
		w->err = 1;
		return 0;
	}
	return 1;
}

void der_bytes(struct der *w, const void *data, size_t len)
{
	if (!der_room(w, len))
		return;
	if (len)
		memcpy(w->buf + w->len, data, len);
	w->len += len;
}

static void der_byte(struct der *w, unsigned b)
{
	unsigned char c = (unsigned char)b;

	der_bytes(w, &c, 1);
}

static void der_len(struct der *w, size_t len)
{
	unsigned char tmp[sizeof(size_t) + 1];
	size_t n = 0, l;

	if (len < 0x80) {
		der_byte(w, (unsigned)len);
		return;
	}
	for (l = len; l; l >>= 8)
		n++;
	tmp[0] = (unsigned char)(0x80 | n);
	for (l = 0; l < n; l++)
		tmp[n - l] = (unsigned char)(len >> (8 * l));
	der_bytes(w, tmp, n + 1);
}

void der_prim(struct der *w, unsigned tag, const void *data, size_t len)
{
	der_byte(w, tag);
	der_len(w, len);
	der_bytes(w, data, len);
}

void der_begin(struct der *w, unsigned tag)
{
	if (w->err)
		return;
	if (w->depth >= DER_DEPTH_MAX) {
		w->err = 1;
		return;
	}
	w->open[w->depth++] = w->len;
	der_byte(w, tag);
	der_byte(w, 0);		/* length placeholder, fixed by der_end() */
}

void der_end(struct der *w)
{
	size_t start, clen, n = 0, l;

	if (w->err)
		return;
	if (w->depth == 0) {
		w->err = 1;
		return;
	}
	start = w->open[--w->depth] + 2;
	clen = w->len - start;
	if (clen < 0x80) {
		w->buf[start - 1] = (unsigned char)clen;
		return;
	}
	for (l = clen; l; l >>= 8)
		n++;
	if (!der_room(w, n))
		return;
	memmove(w->buf + start + n, w->buf + start, clen);
	w->buf[start - 1] = (unsigned char)(0x80 | n);
	for (l = 0; l < n; l++)
		w->buf[start + n - 1 - l] = (unsigned char)(clen >> (8 * l));
	w->len += n;
}

void der_int_bytes(struct der *w, const void *be, size_t len)
{
	const unsigned char *p = be;

	while (len > 0 && p[0] == 0) {
		p++;
		len--;
	}
	der_byte(w, DER_INTEGER);
	if (len == 0) {
		der_len(w, 1);
		der_byte(w, 0);
		return;
	}
	der_len(w, len + (p[0] >= 0x80));
	if (p[0] >= 0x80)
		der_byte(w, 0);
	der_bytes(w, p, len);
}

void der_int_u64(struct der *w, uint64_t v)
{
	unsigned char be[8];
	int i;

	for (i = 7; i >= 0; i--) {
		be[i] = (unsigned char)v;
		v >>= 8;
	}
	der_int_bytes(w, be, sizeof be);
}

void der_bool(struct der *w, int v)
{
	unsigned char b = v ? 0xff : 0x00;

	der_prim(w, DER_BOOLEAN, &b, 1);
}

void der_null(struct der *w)
{
	der_prim(w, DER_NULL, NULL, 0);
}

/* Parses dotted OID text into arcs; returns the count or -1. */
static int der_oid_parse(const char *s, uint64_t *arcs)
{
	int n = 0;

	for (;;) {
		uint64_t v = 0;
		const char *start = s;

		if (n >= DER_OID_ARCS_MAX)
			return -1;
		while (*s >= '0' && *s <= '9') {
			if (v > (UINT64_MAX - 9) / 10)
				return -1;
			v = v * 10 + (uint64_t)(*s++ - '0');
		}
		if (s == start || (s - start > 1 && *start == '0'))
			return -1;
		arcs[n++] = v;
		if (*s == '\0')
			break;
		if (*s++ != '.')
			return -1;
	}
	if (n < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] > 39)
	    || arcs[1] > UINT64_MAX - 80)
		return -1;
	return n;
}

static size_t der_base128(uint64_t v, unsigned char *out)
{
	unsigned char tmp[10];
	size_t n = 0, i;

	do {
		tmp[n++] = (unsigned char)(v & 0x7f);
		v >>= 7;
	} while (v);
	for (i = 0; i < n; i++)
		out[i] = (unsigned char)(tmp[n - 1 - i] | (i + 1 < n ? 0x80 : 0));
	return n;
}

void der_oid(struct der *w, const char *dotted)
{
	uint64_t arcs[DER_OID_ARCS_MAX];
	unsigned char enc[DER_OID_ARCS_MAX * 10];
	size_t len;
	int n, i;

	n = der_oid_parse(dotted, arcs);
	if (n < 0) {
		w->err = 1;
		return;
	}
	len = der_base128(arcs[0] * 40 + arcs[1], enc);
	for (i = 2; i < n; i++)
		len += der_base128(arcs[i], enc + len);
	der_prim(w, DER_OID, enc, len);
}

void der_bit_string(struct der *w, const void *data, size_t len, unsigned unused)
{
	if (unused > 7 || (len == 0 && unused != 0)) {
		w->err = 1;
		return;
	}
	der_byte(w, DER_BIT_STRING);
	der_len(w, len + 1);
	der_byte(w, unused);
	der_bytes(w, data, len);
}

void der_named_bits(struct der *w, uint32_t bits)
{
	unsigned char be[4];
	int last = -1, i;

	for (i = 0; i < 32; i++) {
		if (bits & ((uint32_t)1 << i))
			last = i;
	}
	memset(be, 0, sizeof be);
	for (i = 0; i <= last; i++) {
		if (bits & ((uint32_t)1 << i))
			be[i / 8] |= (unsigned char)(0x80 >> (i % 8));
	}
	if (last < 0)
		der_bit_string(w, NULL, 0, 0);
	else
		der_bit_string(w, be, (size_t)last / 8 + 1, 7 - (unsigned)last % 8);
}

void der_octets(struct der *w, const void *data, size_t len)
{
	der_prim(w, DER_OCTET_STRING, data, len);
}

void der_utf8(struct der *w, const char *s)
{
	der_prim(w, DER_UTF8STRING, s, strlen(s));
}

void der_ia5(struct der *w, const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++) {
		if ((unsigned char)s[i] >= 0x80)
			w->err = 1;
	}
	der_prim(w, DER_IA5STRING, s, i);
}

void der_printable(struct der *w, const char *s)
{
	static const char extra[] = " '()+,-./:=?";
	size_t i;

	for (i = 0; s[i]; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		      || (c >= '0' && c <= '9') || strchr(extra, c)))
			w->err = 1;
	}
	der_prim(w, DER_PRINTABLE, s, i);
}

/* Days since 1970-01-01 to a civil date (H. Hinnant's algorithm). */
static void der_civil(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	yoe = z - era * 146097;
	yoe = (yoe - yoe / 1460 + yoe / 36524 - yoe / 146096) / 365;
	doy = z - era * 146097 - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static void der_put2(char *p, unsigned v)
{
	p[0] = (char)('0' + v / 10 % 10);
	p[1] = (char)('0' + v % 10);
}

void der_time(struct der *w, int64_t t)
{
	char s[16];
	int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
	int64_t sec = t - days * 86400, y;
	unsigned m, d;
	size_t off;

	der_civil(days, &y, &m, &d);
	if (y < 0 || y > 9999) {
		w->err = 1;
		return;
	}
	off = (y >= 1950 && y < 2050) ? 0 : 2;
	if (off)
		der_put2(s, (unsigned)(y / 100));
	der_put2(s + off, (unsigned)(y % 100));
	der_put2(s + off + 2, m);
	der_put2(s + off + 4, d);
	der_put2(s + off + 6, (unsigned)(sec / 3600));
	der_put2(s + off + 8, (unsigned)(sec / 60 % 60));
	der_put2(s + off + 10, (unsigned)(sec % 60));
	s[off + 12] = 'Z';
	der_prim(w, off ? DER_GENTIME : DER_UTCTIME, s, off + 13);
}

int der_finish(struct der *w, size_t *len)
{
	if (w->err || w->depth != 0)
		return -1;
	*len = w->len;
	return 0;
}

static void der_spki_ec(struct der *w, const br_ec_public_key *ec)
{
	der_begin(w, DER_SEQUENCE);
	der_begin(w, DER_SEQUENCE);
	der_oid(w, "1.2.840.10045.2.1");
	der_oid(w, der_curve_oid[ec->curve]);
	der_end(w);
	der_bit_string(w, ec->q, ec->qlen, 0);
	der_end(w);
}

static void der_spki_rsa(struct der *w, const br_rsa_public_key *rsa)
{
	der_begin(w, DER_SEQUENCE);
	der_begin(w, DER_SEQUENCE);
	der_oid(w, "1.2.840.113549.1.1.1");
	der_null(w);
	der_end(w);
	der_begin(w, DER_BIT_STRING);
	der_byte(w, 0);
	der_begin(w, DER_SEQUENCE);
	der_int_bytes(w, rsa->n, rsa->nlen);
	der_int_bytes(w, rsa->e, rsa->elen);
	der_end(w);
	der_end(w);
	der_end(w);
}

int der_spki(const br_x509_pkey *pk, unsigned char *out, size_t cap)
{
	struct der w;
	size_t len;

	der_init(&w, out, cap);
	if (pk->key_type == BR_KEYTYPE_EC) {
		int c = pk->key.ec.curve;

		if (c < 0 || (size_t)c >= sizeof der_curve_oid / sizeof der_curve_oid[0]
		    || !der_curve_oid[c])
			return -1;
		der_spki_ec(&w, &pk->key.ec);
	} else if (pk->key_type == BR_KEYTYPE_RSA) {
		der_spki_rsa(&w, &pk->key.rsa);
	} else {
		return -1;
	}
	if (der_finish(&w, &len) < 0)
		return -1;
	return (int)len;
}

void der_time_to_br(int64_t t, uint32_t *days, uint32_t *seconds)
{
	int64_t d = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);

	*days = (uint32_t)(d + DER_DAYS_0_TO_1970);
	*seconds = (uint32_t)(t - d * 86400);
}

int64_t der_br_to_time(uint32_t days, uint32_t seconds)
{
	return ((int64_t)days - DER_DAYS_0_TO_1970) * 86400 + seconds;
}
