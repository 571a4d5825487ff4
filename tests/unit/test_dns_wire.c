/*
 * test_dns_wire.c - the DNS message reader and writer: names with
 * compression and every bound (label 63, name 255, pointer hops, no
 * forward/self/cyclic pointers), questions, RRs, whole messages, EDNS0 OPT.
 */
#include <string.h>

#include "check.h"
#include "dns-wire.h"

static uint8_t msg[1024];

/* A message of 12 zero header bytes followed by body. */
static size_t with_body(const void *body, size_t n)
{
	memset(msg, 0, DNS_HEADER_LEN);
	memcpy(msg + DNS_HEADER_LEN, body, n);
	return DNS_HEADER_LEN + n;
}

static void t_header(void)
{
	static const uint8_t h[12] = { 0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 3, 0, 4 };
	struct dns_header hd;
	CHECK_EQ(dns_read_header(h, 12, &hd), 12);
	CHECK_EQ(hd.id, 0x1234);
	CHECK(hd.flags & DNS_F_QR);
	CHECK_EQ(DNS_RCODE(hd.flags), 0);
	CHECK_EQ(hd.qdcount, 1);
	CHECK_EQ(hd.arcount, 4);
	CHECK_EQ(dns_read_header(h, 11, &hd), -1);
}

static void t_name_plain_and_pointer(void)
{
	/* 12: www.example.com, 29: mail + pointer to 16 (example.com) */
	static const uint8_t b[] = "\3www\7example\3com\0\4mail\xc0\x10";
	size_t len = with_body(b, sizeof b - 1);
	uint8_t name[DNS_NAME_MAX];
	size_t n;
	char text[DNS_NAME_TEXT_MAX];
	CHECK_EQ(dns_read_name(msg, len, 12, name, &n), 29);
	CHECK_EQ(n, 17);
	CHECK_EQ(dns_read_name(msg, len, 29, name, &n), 36);
	CHECK_EQ(dns_name_to_text(name, n, text, sizeof text), 16);
	CHECK_STREQ(text, "mail.example.com");
	/* cut short: the pointer's second byte missing */
	CHECK_EQ(dns_read_name(msg, len - 1, 29, name, &n), -1);
	/* cut inside a label */
	CHECK_EQ(dns_read_name(msg, 20, 12, name, &n), -1);
	CHECK_EQ(dns_skip_name(msg, len, 29), 36);
}

static void t_name_bad_pointers(void)
{
	uint8_t name[DNS_NAME_MAX];
	size_t n;
	/* self pointer at 12 */
	size_t len = with_body("\xc0\x0c", 2);
	CHECK_EQ(dns_read_name(msg, len, 12, name, &n), -1);
	/* forward pointer 12 -> 14 */
	len = with_body("\xc0\x0e\0", 3);
	CHECK_EQ(dns_read_name(msg, len, 12, name, &n), -1);
	/* a cycle: 12 "a" + pointer to 16, 16 "b" + pointer to 12 */
	len = with_body("\1a\xc0\x10\1b\xc0\x0c", 8);
	/* from 16: "b", pointer to 12 (below 16): "a", pointer to 16: not
	 * below 12, rejected rather than looping */
	CHECK_EQ(dns_read_name(msg, len, 16, name, &n), -1);
	/* extended label types 01/10 (RFC 6891 5) */
	len = with_body("\x41" "a\0", 3);
	CHECK_EQ(dns_read_name(msg, len, 12, name, &n), -1);
	len = with_body("\x81" "a\0", 3);
	CHECK_EQ(dns_read_name(msg, len, 12, name, &n), -1);
}

/* A chain of hops pointers, each to the one before, ending at a root. */
static size_t pointer_chain(int hops)
{
	uint8_t b[200];
	size_t n = 0;
	b[n++] = 0;
	for (int i = 0; i < hops; i++) {
		unsigned target = (unsigned)(DNS_HEADER_LEN + (i == 0 ? 0 : 1 + 2 * (i - 1)));
		b[n++] = (uint8_t)(0xc0 | target >> 8);
		b[n++] = (uint8_t)target;
	}
	return with_body(b, n);
}

static void t_name_hop_cap(void)
{
	uint8_t name[DNS_NAME_MAX];
	size_t n;
	size_t len = pointer_chain(DNS_PTR_HOPS_MAX);
	CHECK_EQ(dns_read_name(msg, len, len - 2, name, &n), (long)len);
	CHECK_EQ(n, 1);
	len = pointer_chain(DNS_PTR_HOPS_MAX + 1);
	CHECK_EQ(dns_read_name(msg, len, len - 2, name, &n), -1);
}

static void t_name_lengths(void)
{
	uint8_t b[400], name[DNS_NAME_MAX];
	size_t n;
	/* a 63-byte label is fine, 64 is not (and 0x40 is an extended type) */
	memset(b, 'x', sizeof b);
	b[0] = 63;
	b[64] = 0;
	size_t len = with_body(b, 65);
	CHECK_EQ(dns_read_name(msg, len, 12, name, &n), 12 + 65);
	/* 255 bytes in all is the limit: 4 labels of 62 = 252 + 1 label of 1
	 * = 254 + root = 255; one more byte fails */
	size_t k = 0;
	for (int i = 0; i < 4; i++) {
		b[k++] = 62;
		memset(b + k, 'y', 62);
		k += 62;
	}
	b[k++] = 1;
	b[k++] = 'z';
	b[k++] = 0;
	len = with_body(b, k);
	CHECK_EQ(dns_read_name(msg, len, 12, name, &n), (long)len);
	CHECK_EQ(n, 255);
	b[k - 3] = 2;
	b[k - 1] = 'z';
	b[k] = 0;
	len = with_body(b, k + 1);
	CHECK_EQ(dns_read_name(msg, len, 12, name, &n), -1);
	/* the same limit through pointers */
	CHECK_EQ(dns_name_from_text("a.b", name), 5);
}

static void t_text(void)
{
	uint8_t name[DNS_NAME_MAX];
	char text[DNS_NAME_TEXT_MAX];
	long n = dns_name_from_text("Mail.Example.COM.", name);
	CHECK_EQ(n, 18);
	CHECK_EQ(dns_name_to_text(name, (size_t)n, text, sizeof text), 16);
	CHECK_STREQ(text, "Mail.Example.COM");
	CHECK_EQ(dns_name_from_text(".", name), 1);
	CHECK_EQ(dns_name_to_text(name, 1, text, sizeof text), 1);
	CHECK_STREQ(text, ".");
	CHECK_EQ(dns_name_from_text("a..b", name), -1);
	char big[80];
	memset(big, 'q', 64);
	big[64] = 0;
	CHECK_EQ(dns_name_from_text(big, name), -1);
	/* escapes */
	static const uint8_t odd[] = "\3a.b\1\n\0";
	CHECK(dns_name_to_text(odd, sizeof odd - 1, text, sizeof text) > 0);
	CHECK_STREQ(text, "a\\046b.\\010");
	CHECK_EQ(dns_name_to_text(odd, sizeof odd - 1, text, 6), -1);
	CHECK_EQ(dns_name_labels(name, (size_t)dns_name_from_text("x.y.z", name)), 3);
}

static void t_compare(void)
{
	uint8_t a[DNS_NAME_MAX], b[DNS_NAME_MAX], z[DNS_NAME_MAX];
	long an = dns_name_from_text("WwW.Office.LAN", a);
	long bn = dns_name_from_text("www.office.lan", b);
	long zn = dns_name_from_text("office.lan", z);
	CHECK(dns_name_eq(a, (size_t)an, b, (size_t)bn));
	CHECK(memcmp(a, b, (size_t)an) != 0);
	CHECK(dns_name_in(a, (size_t)an, z, (size_t)zn));
	CHECK(dns_name_in(z, (size_t)zn, z, (size_t)zn));
	long xn = dns_name_from_text("xoffice.lan", b);
	CHECK(!dns_name_in(b, (size_t)xn, z, (size_t)zn));
	uint8_t root[1] = { 0 };
	CHECK(dns_name_in(a, (size_t)an, root, 1));
	dns_name_lower(a, (size_t)an);
	CHECK_EQ(memcmp(a, "\3www\6office\3lan", 16), 0);
}

/* A reply: question www.example.com A, a CNAME, an A, an OPT. */
static size_t build_reply(uint8_t *buf, size_t cap, int two_opts)
{
	struct dns_wbuf w;
	struct dns_question q;
	uint8_t t[DNS_NAME_MAX];
	dns_wbuf_init(&w, buf, cap);
	struct dns_header h = { 7, DNS_F_QR | DNS_F_RD | DNS_F_RA, 1, 2, 0, (uint16_t)(1 + two_opts) };
	dns_put_header(&w, &h);
	q.namelen = (size_t)dns_name_from_text("www.example.com", q.name);
	q.type = DNS_T_A;
	q.qclass = DNS_C_IN;
	dns_put_question(&w, &q);
	long tn = dns_name_from_text("web.example.com", t);
	dns_put_rr(&w, q.name, q.namelen, DNS_T_CNAME, 300, t, (size_t)tn);
	dns_put_rr(&w, t, (size_t)tn, DNS_T_A, 60, "\xc0\x00\x02\x01", 4);
	dns_put_opt(&w, 4096);
	if (two_opts)
		dns_put_opt(&w, 1232);
	CHECK(!w.overflow);
	return w.len;
}

static void t_parse_message(void)
{
	uint8_t buf[512];
	struct dns_header h;
	size_t sec[4];
	unsigned udp = 0;
	size_t len = build_reply(buf, sizeof buf, 0);
	CHECK_EQ(dns_parse(buf, len, &h, sec), 0);
	CHECK_EQ(h.ancount, 2);
	CHECK_EQ(sec[0], 12);
	struct dns_question q;
	CHECK_EQ(dns_read_question(buf, len, sec[0], &q), (long)sec[1]);
	CHECK_EQ(q.type, DNS_T_A);
	struct dns_rr rr;
	long p = dns_read_rr(buf, len, sec[1], &rr);
	CHECK(p > 0);
	CHECK_EQ(rr.type, DNS_T_CNAME);
	CHECK_EQ(rr.ttl, 300);
	p = dns_read_rr(buf, len, (size_t)p, &rr);
	CHECK_EQ(rr.rdlen, 4);
	CHECK_EQ(dns_find_opt(buf, len, sec[3], h.arcount, &udp), 1);
	CHECK_EQ(udp, 4096);
	/* trailing garbage, truncation, and a count claiming more */
	CHECK_EQ(dns_parse(buf, len + 1, &h, sec), -1);
	CHECK_EQ(dns_parse(buf, len - 1, &h, sec), -1);
	buf[7] = 3;
	CHECK_EQ(dns_parse(buf, len, &h, sec), -1);
	/* two OPT records: FORMERR (RFC 6891 6.1.1) */
	len = build_reply(buf, sizeof buf, 1);
	CHECK_EQ(dns_parse(buf, len, &h, sec), 0);
	CHECK_EQ(dns_find_opt(buf, len, sec[3], h.arcount, &udp), -1);
	/* no OPT; small sizes mean 512 */
	CHECK_EQ(dns_find_opt(buf, len, sec[3], 0, &udp), 0);
	len = build_reply(buf, sizeof buf, 0);
	CHECK_EQ(dns_parse(buf, len, &h, sec), 0);
	buf[len - 8] = 0;	/* the OPT's class: its UDP size */
	buf[len - 7] = 100;
	CHECK_EQ(dns_find_opt(buf, len, sec[3], 1, &udp), 1);
	CHECK_EQ(udp, 512);
}

static void t_copy_rdata(void)
{
	/* 12: example.com; 25: MX rdata: pref 10, "mx" + pointer to 12 */
	static const uint8_t b[] = "\7example\3com\0" "\0\x0a\2mx\xc0\x0c";
	size_t len = with_body(b, sizeof b - 1);
	struct dns_rr rr = { .type = DNS_T_MX, .rdpos = 25, .rdlen = 7 };
	uint8_t out[64];
	struct dns_wbuf w;
	dns_wbuf_init(&w, out, sizeof out);
	CHECK_EQ(dns_copy_rdata(&w, msg, len, &rr), 0);
	CHECK_EQ(w.len, 2 + 2 + 16);
	CHECK_MEMEQ(out, "\0\x12\0\x0a\2mx\7example\3com\0", 20);
	/* a name running past its rdata */
	rr.rdlen = 5;
	dns_wbuf_init(&w, out, sizeof out);
	CHECK_EQ(dns_copy_rdata(&w, msg, len, &rr), -1);
	/* opaque types are copied as they are */
	rr.type = DNS_T_TXT;
	dns_wbuf_init(&w, out, sizeof out);
	CHECK_EQ(dns_copy_rdata(&w, msg, len, &rr), 0);
	CHECK_EQ(w.len, 7);
}

static void t_wbuf_overflow(void)
{
	uint8_t out[5];
	struct dns_wbuf w;
	dns_wbuf_init(&w, out, sizeof out);
	dns_put_u32(&w, 1);
	CHECK(!w.overflow);
	dns_put_u16(&w, 2);
	CHECK(w.overflow);
	dns_put_u8(&w, 3);	/* sticky: nothing more is written */
	CHECK_EQ(w.len, 4);
}

int main(void)
{
	RUN(t_header);
	RUN(t_name_plain_and_pointer);
	RUN(t_name_bad_pointers);
	RUN(t_name_hop_cap);
	RUN(t_name_lengths);
	RUN(t_text);
	RUN(t_compare);
	RUN(t_parse_message);
	RUN(t_copy_rdata);
	RUN(t_wbuf_overflow);
	return check_done();
}
