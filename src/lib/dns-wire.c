/*
 * dns-wire.c - bounded DNS message reader and writer (see dns-wire.h).
 */
#include <string.h>

#include "dns-wire.h"

/* Record count of one section a message may claim before we stop trusting
 * it; a 64 KiB message cannot hold more RRs (11 bytes each at least). */
#define DNS_SECTION_MAX 6000
/* Top two bits of a length byte: 00 label, 11 pointer (RFC 1035 4.1.4);
 * 01 and 10 are extended label types (RFC 6891 5), rejected. */
#define DNS_PTR_MASK 0xc0u

static unsigned get16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

long dns_read_header(const uint8_t *msg, size_t len, struct dns_header *h)
{
	if (len < DNS_HEADER_LEN)
		return -1;
	h->id = get16(msg);
	h->flags = get16(msg + 2);
	h->qdcount = get16(msg + 4);
	h->ancount = get16(msg + 6);
	h->nscount = get16(msg + 8);
	h->arcount = get16(msg + 10);
	return DNS_HEADER_LEN;
}

/*
 * The name reader. A pointer must point strictly below the start of every
 * part of the name read so far: this rules out self and forward pointers
 * and any cycle, and the hop counter caps the work anyway.
 */
long dns_read_name(const uint8_t *msg, size_t len, size_t pos,
	uint8_t out[DNS_NAME_MAX], size_t *outlen)
{
	size_t n = 0, limit = pos;
	long end = -1;
	int hops = 0;

	for (;;) {
		if (pos >= len)
			return -1;
		unsigned c = msg[pos];
		if ((c & DNS_PTR_MASK) == DNS_PTR_MASK) {
			if (pos + 1 >= len || ++hops > DNS_PTR_HOPS_MAX)
				return -1;
			size_t target = (c & 0x3fu) << 8 | msg[pos + 1];
			if (end < 0)
				end = (long)pos + 2;
			if (target >= limit)
				return -1;
			pos = limit = target;
			continue;
		}
		if (c & DNS_PTR_MASK)
			return -1;
		if (pos + 1 + c > len || n + 1 + c > DNS_NAME_MAX)
			return -1;
		memcpy(out + n, msg + pos, 1 + c);
		n += 1 + c;
		pos += 1 + c;
		if (c == 0)
			break;
	}
	*outlen = n;
	return end >= 0 ? end : (long)pos;
}

long dns_skip_name(const uint8_t *msg, size_t len, size_t pos)
{
	uint8_t tmp[DNS_NAME_MAX];
	size_t n;
	return dns_read_name(msg, len, pos, tmp, &n);
}

long dns_read_question(const uint8_t *msg, size_t len, size_t pos, struct dns_question *q)
{
	long p = dns_read_name(msg, len, pos, q->name, &q->namelen);
	if (p < 0 || (size_t)p + 4 > len)
		return -1;
	q->type = get16(msg + p);
	q->qclass = get16(msg + p + 2);
	return p + 4;
}

long dns_read_rr(const uint8_t *msg, size_t len, size_t pos, struct dns_rr *rr)
{
	long p = dns_read_name(msg, len, pos, rr->name, &rr->namelen);
	if (p < 0 || (size_t)p + 10 > len)
		return -1;
	rr->type = get16(msg + p);
	rr->rclass = get16(msg + p + 2);
	rr->ttl = get32(msg + p + 4);
	rr->rdlen = get16(msg + p + 8);
	rr->rdpos = (size_t)p + 10;
	if (rr->rdpos + rr->rdlen > len)
		return -1;
	return (long)(rr->rdpos + rr->rdlen);
}

static long skip_rrs(const uint8_t *msg, size_t len, long pos, unsigned count)
{
	struct dns_rr rr;
	if (count > DNS_SECTION_MAX)
		return -1;
	for (unsigned i = 0; i < count && pos >= 0; i++)
		pos = dns_read_rr(msg, len, (size_t)pos, &rr);
	return pos;
}

int dns_parse(const uint8_t *msg, size_t len, struct dns_header *h, size_t sec[4])
{
	struct dns_question q;
	long pos = dns_read_header(msg, len, h);
	if (pos < 0 || h->qdcount > DNS_SECTION_MAX)
		return -1;
	sec[0] = (size_t)pos;
	for (unsigned i = 0; i < h->qdcount && pos >= 0; i++)
		pos = dns_read_question(msg, len, (size_t)pos, &q);
	unsigned counts[3] = { h->ancount, h->nscount, h->arcount };
	for (int s = 0; s < 3; s++) {
		if (pos < 0)
			return -1;
		sec[s + 1] = (size_t)pos;
		pos = skip_rrs(msg, len, pos, counts[s]);
	}
	return pos == (long)len ? 0 : -1;
}

int dns_find_opt(const uint8_t *msg, size_t len, size_t ar, unsigned arcount,
	unsigned *udp_size)
{
	struct dns_rr rr;
	long pos = (long)ar;
	int found = 0;
	for (unsigned i = 0; i < arcount; i++) {
		pos = dns_read_rr(msg, len, (size_t)pos, &rr);
		if (pos < 0)
			return -1;
		if (rr.type != DNS_T_OPT)
			continue;
		/* RFC 6891 6.1.1: one OPT, owned by the root. */
		if (found || rr.namelen != 1)
			return -1;
		found = 1;
		*udp_size = rr.rclass < DNS_UDP_PLAIN ? DNS_UDP_PLAIN : rr.rclass;
	}
	return found;
}

/* ---- names ---------------------------------------------------------------- */

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

int dns_name_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	if (alen != blen)
		return 0;
	for (size_t i = 0; i < alen; i++)
		if (lower(a[i]) != lower(b[i]))
			return 0;
	return 1;
}

int dns_name_in(const uint8_t *name, size_t namelen, const uint8_t *zone, size_t zonelen)
{
	size_t pos = 0;
	/* Walk label boundaries only, so "xoffice.lan" is not in "office.lan". */
	while (pos < namelen) {
		if (namelen - pos == zonelen)
			return dns_name_eq(name + pos, zonelen, zone, zonelen);
		if (name[pos] == 0)
			break;
		pos += 1u + name[pos];
	}
	return 0;
}

void dns_name_lower(uint8_t *name, size_t namelen)
{
	size_t pos = 0;
	while (pos < namelen && name[pos]) {
		size_t l = name[pos];
		for (size_t i = pos + 1; i <= pos + l && i < namelen; i++)
			name[i] = lower(name[i]);
		pos += 1 + l;
	}
}

long dns_name_from_text(const char *text, uint8_t out[DNS_NAME_MAX])
{
	size_t n = 0;
	const char *p = text;
	if (p[0] == '.' && p[1] == 0)
		p++;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (l == 0 || l > DNS_LABEL_MAX || n + 1 + l + 1 > DNS_NAME_MAX)
			return -1;
		out[n++] = (uint8_t)l;
		memcpy(out + n, p, l);
		n += l;
		p += l;
		if (*p == '.')
			p++;
	}
	out[n++] = 0;
	return (long)n;
}

/* Writes \DDD (RFC 1035 5.1) for a byte that is not plain; 4 bytes. */
static size_t put_escape(char *out, uint8_t c)
{
	out[0] = '\\';
	out[1] = (char)('0' + c / 100);
	out[2] = (char)('0' + c / 10 % 10);
	out[3] = (char)('0' + c % 10);
	return 4;
}

static int plain_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

long dns_name_to_text(const uint8_t *name, size_t namelen, char *out, size_t cap)
{
	size_t n = 0, pos = 0;
	if (cap < 2)
		return -1;
	if (namelen <= 1) {
		memcpy(out, ".", 2);
		return 1;
	}
	while (pos < namelen && name[pos]) {
		size_t l = name[pos++];
		if (n && n + 1 < cap)
			out[n++] = '.';
		for (size_t i = 0; i < l && pos < namelen; i++, pos++) {
			if (n + 5 > cap)
				return -1;
			if (plain_char(name[pos]))
				out[n++] = (char)name[pos];
			else
				n += put_escape(out + n, name[pos]);
		}
	}
	out[n] = 0;
	return (long)n;
}

int dns_name_labels(const uint8_t *name, size_t namelen)
{
	int labels = 0;
	for (size_t pos = 0; pos < namelen && name[pos]; pos += 1u + name[pos])
		labels++;
	return labels;
}

/* ---- writing ---------------------------------------------------------------- */

void dns_wbuf_init(struct dns_wbuf *w, uint8_t *buf, size_t cap)
{
	w->b = buf;
	w->cap = cap;
	w->len = 0;
	w->overflow = 0;
}

void dns_put_bytes(struct dns_wbuf *w, const void *p, size_t n)
{
	if (w->overflow || n > w->cap - w->len) {
		w->overflow = 1;
		return;
	}
	if (n)
		memcpy(w->b + w->len, p, n);
	w->len += n;
}

void dns_put_u8(struct dns_wbuf *w, unsigned v)
{
	uint8_t b = (uint8_t)v;
	dns_put_bytes(w, &b, 1);
}

void dns_put_u16(struct dns_wbuf *w, unsigned v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	dns_put_bytes(w, b, 2);
}

void dns_put_u32(struct dns_wbuf *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	dns_put_bytes(w, b, 4);
}

void dns_patch_u16(struct dns_wbuf *w, size_t off, unsigned v)
{
	if (w->overflow || off + 2 > w->len)
		return;
	w->b[off] = (uint8_t)(v >> 8);
	w->b[off + 1] = (uint8_t)v;
}

void dns_put_header(struct dns_wbuf *w, const struct dns_header *h)
{
	dns_put_u16(w, h->id);
	dns_put_u16(w, h->flags);
	dns_put_u16(w, h->qdcount);
	dns_put_u16(w, h->ancount);
	dns_put_u16(w, h->nscount);
	dns_put_u16(w, h->arcount);
}

void dns_put_question(struct dns_wbuf *w, const struct dns_question *q)
{
	dns_put_bytes(w, q->name, q->namelen);
	dns_put_u16(w, q->type);
	dns_put_u16(w, q->qclass);
}

void dns_put_rr(struct dns_wbuf *w, const uint8_t *name, size_t namelen, unsigned type,
	uint32_t ttl, const void *rdata, size_t rdlen)
{
	if (rdlen > 0xffff) {
		w->overflow = 1;
		return;
	}
	dns_put_bytes(w, name, namelen);
	dns_put_u16(w, type);
	dns_put_u16(w, DNS_C_IN);
	dns_put_u32(w, ttl);
	dns_put_u16(w, (unsigned)rdlen);
	dns_put_bytes(w, rdata, rdlen);
}

void dns_put_opt(struct dns_wbuf *w, unsigned udp_size)
{
	dns_put_u8(w, 0);		/* root owner */
	dns_put_u16(w, DNS_T_OPT);
	dns_put_u16(w, udp_size);	/* class: requestor's UDP payload size */
	dns_put_u32(w, 0);		/* extended rcode, version 0, no DO bit */
	dns_put_u16(w, 0);		/* no options */
}

/* Expands one name of rdata at *pos (bounded by end) into w. */
static int copy_name(struct dns_wbuf *w, const uint8_t *msg, size_t end, size_t *pos)
{
	uint8_t name[DNS_NAME_MAX];
	size_t n;
	long p = dns_read_name(msg, end, *pos, name, &n);
	if (p < 0)
		return -1;
	dns_name_lower(name, n);
	dns_put_bytes(w, name, n);
	*pos = (size_t)p;
	return 0;
}

/* Copies n fixed bytes of rdata. */
static int copy_fixed(struct dns_wbuf *w, const uint8_t *msg, size_t end, size_t *pos, size_t n)
{
	if (*pos + n > end)
		return -1;
	dns_put_bytes(w, msg + *pos, n);
	*pos += n;
	return 0;
}

/* The layout of the rdata that holds names: fixed bytes before the first
 * name, names, fixed bytes after (RFC 1035 3.3, RFC 2782). */
static int rdata_layout(unsigned type, size_t *pre, int *names, size_t *post)
{
	*pre = 0, *names = 1, *post = 0;
	switch (type) {
	case DNS_T_NS: case DNS_T_CNAME: case DNS_T_PTR: return 1;
	case DNS_T_MX: *pre = 2; return 1;
	case DNS_T_SRV: *pre = 6; return 1;
	case DNS_T_SOA: *names = 2; *post = 20; return 1;
	default: return 0;
	}
}

int dns_copy_rdata(struct dns_wbuf *w, const uint8_t *msg, size_t len, const struct dns_rr *rr)
{
	size_t pre, post, pos = rr->rdpos, end = rr->rdpos + rr->rdlen;
	int names;
	if (end > len)
		return -1;
	if (!rdata_layout(rr->type, &pre, &names, &post)) {
		dns_put_u16(w, rr->rdlen);
		dns_put_bytes(w, msg + pos, rr->rdlen);
		return 0;
	}
	size_t lenoff = w->len;
	dns_put_u16(w, 0);
	/* Names may point anywhere earlier in the message, but must not run
	 * past the end of this rdata (RFC 1035 4.1.4). */
	if (copy_fixed(w, msg, end, &pos, pre) < 0)
		return -1;
	for (int i = 0; i < names; i++)
		if (copy_name(w, msg, end, &pos) < 0)
			return -1;
	if (copy_fixed(w, msg, end, &pos, post) < 0 || pos != end)
		return -1;
	dns_patch_u16(w, lenoff, (unsigned)(w->len - lenoff - 2));
	return 0;
}
