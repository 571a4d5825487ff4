/*
 * test_dns_cache.c - the answer cache: extraction of the question's answer
 * and CNAME chain only (poisoning attempts dropped), negative caching
 * (RFC 2308), TTL countdown and clamps, case-insensitive keys, the memory
 * bound with LRU eviction.
 */
#include <string.h>

#include "check.h"
#include "dns-cache.h"

static struct dns_answer ans;

static void question(struct dns_question *q, const char *name, unsigned type)
{
	q->namelen = (size_t)dns_name_from_text(name, q->name);
	q->type = (uint16_t)type;
	q->qclass = DNS_C_IN;
}

struct msg {
	uint8_t b[2048];
	struct dns_wbuf w;
	struct dns_header h;
};

static void msg_start(struct msg *m, const struct dns_question *q, int rcode)
{
	dns_wbuf_init(&m->w, m->b, sizeof m->b);
	m->h = (struct dns_header){ 1, (uint16_t)(DNS_F_QR | DNS_F_RA | rcode), 1, 0, 0, 0 };
	dns_put_header(&m->w, &m->h);
	dns_put_question(&m->w, q);
}

/* Adds an RR to section s (1 answer, 2 authority, 3 additional). */
static void msg_rr(struct msg *m, int s, const char *owner, unsigned type, uint32_t ttl,
	const void *rdata, size_t rdlen)
{
	uint8_t n[DNS_NAME_MAX];
	long nl = dns_name_from_text(owner, n);
	dns_put_rr(&m->w, n, (size_t)nl, type, ttl, rdata, rdlen);
	if (s == 1)
		m->h.ancount++;
	else if (s == 2)
		m->h.nscount++;
	else
		m->h.arcount++;
	dns_patch_u16(&m->w, 6, m->h.ancount);
	dns_patch_u16(&m->w, 8, m->h.nscount);
	dns_patch_u16(&m->w, 10, m->h.arcount);
}

static void msg_cname(struct msg *m, const char *owner, const char *target, uint32_t ttl)
{
	uint8_t t[DNS_NAME_MAX];
	long tl = dns_name_from_text(target, t);
	msg_rr(m, 1, owner, DNS_T_CNAME, ttl, t, (size_t)tl);
}

static void msg_soa(struct msg *m, const char *zone, uint32_t ttl, uint32_t minimum)
{
	uint8_t rd[300];
	struct dns_wbuf w;
	uint8_t n[DNS_NAME_MAX];
	dns_wbuf_init(&w, rd, sizeof rd);
	long nl = dns_name_from_text("ns.example", n);
	dns_put_bytes(&w, n, (size_t)nl);
	dns_put_bytes(&w, n, (size_t)nl);
	for (int i = 0; i < 4; i++)
		dns_put_u32(&w, 1000);
	dns_put_u32(&w, minimum);
	msg_rr(m, 2, zone, DNS_T_SOA, ttl, rd, w.len);
}

/* The A addresses kept in ans, as the last byte of each, in order. */
static int count_type(const struct dns_answer *a, unsigned type)
{
	size_t pos = 0;
	int n = 0;
	for (unsigned i = 0; i < a->ancount + a->nscount; i++) {
		while (a->rr[pos])
			pos += 1u + a->rr[pos];
		pos++;
		unsigned t = (unsigned)a->rr[pos] << 8 | a->rr[pos + 1];
		size_t rdlen = (size_t)a->rr[pos + 8] << 8 | a->rr[pos + 9];
		n += t == type;
		pos += 10 + rdlen;
	}
	return n;
}

static void t_extract_chain_only(void)
{
	struct dns_question q;
	struct msg m;
	question(&q, "www.example.com", DNS_T_A);
	msg_start(&m, &q, 0);
	msg_cname(&m, "www.example.com", "web.example.net", 300);
	msg_rr(&m, 1, "web.example.net", DNS_T_A, 120, "\xc0\0\2\1", 4);
	/* poisoning attempts: an unrelated name in the answer section, an
	 * authority NS and a glue A for another name */
	msg_rr(&m, 1, "bank.example", DNS_T_A, 9999, "\6\6\6\6", 4);
	msg_rr(&m, 2, "example.com", DNS_T_NS, 9999, "\2ns\4evil\0", 10);
	msg_rr(&m, 3, "ns.evil", DNS_T_A, 9999, "\6\6\6\6", 4);
	CHECK(!m.w.overflow);
	CHECK_EQ(dns_cache_extract(m.b, m.w.len, &q, NULL, NULL, &ans), 0);
	CHECK_EQ(ans.rcode, DNS_R_NOERROR);
	CHECK_EQ(ans.ancount, 2);
	CHECK_EQ(ans.nscount, 0);
	CHECK_EQ(ans.ttl, 120);
	CHECK(ans.cacheable);
	CHECK_EQ(count_type(&ans, DNS_T_CNAME), 1);
	CHECK_EQ(count_type(&ans, DNS_T_A), 1);
	CHECK(memmem(ans.rr, ans.len, "\6\6\6\6", 4) == NULL);
}

static void t_extract_cname_loop(void)
{
	struct dns_question q;
	struct msg m;
	question(&q, "a.example", DNS_T_A);
	msg_start(&m, &q, 0);
	msg_cname(&m, "a.example", "b.example", 60);
	msg_cname(&m, "b.example", "a.example", 60);
	CHECK_EQ(dns_cache_extract(m.b, m.w.len, &q, NULL, NULL, &ans), 0);
	CHECK(!ans.cacheable);	/* no data, no SOA */
	CHECK_EQ(ans.ancount, DNS_CNAME_MAX + 1);	/* bounded, then given up */
}

static void t_extract_negative(void)
{
	struct dns_question q;
	struct msg m;
	question(&q, "nx.example.com", DNS_T_A);
	msg_start(&m, &q, DNS_R_NXDOMAIN);
	msg_soa(&m, "example.com", 3600, 300);
	msg_soa(&m, "other.org", 3600, 300);	/* not enclosing: dropped */
	CHECK_EQ(dns_cache_extract(m.b, m.w.len, &q, NULL, NULL, &ans), 0);
	CHECK_EQ(ans.rcode, DNS_R_NXDOMAIN);
	CHECK_EQ(ans.nscount, 1);
	CHECK_EQ(ans.ttl, 300);	/* RFC 2308 5: min(SOA TTL, MINIMUM) */
	CHECK(ans.cacheable);
	/* NXDOMAIN without SOA: answered, never cached */
	msg_start(&m, &q, DNS_R_NXDOMAIN);
	CHECK_EQ(dns_cache_extract(m.b, m.w.len, &q, NULL, NULL, &ans), 0);
	CHECK(!ans.cacheable);
	/* SERVFAIL is not for the cache */
	msg_start(&m, &q, DNS_R_SERVFAIL);
	CHECK_EQ(dns_cache_extract(m.b, m.w.len, &q, NULL, NULL, &ans), -1);
	/* malformed */
	CHECK_EQ(dns_cache_extract(m.b, 5, &q, NULL, NULL, &ans), -1);
}

static int drop_private(void *arg, const struct dns_rr *rr, const uint8_t *rdata)
{
	(void)arg;
	return !(rr->type == DNS_T_A && rdata[0] == 10);
}

static void t_extract_filter(void)
{
	struct dns_question q;
	struct msg m;
	question(&q, "rebind.example", DNS_T_A);
	msg_start(&m, &q, 0);
	msg_rr(&m, 1, "rebind.example", DNS_T_A, 60, "\x0a\0\0\1", 4);
	msg_rr(&m, 1, "rebind.example", DNS_T_A, 60, "\xc0\0\2\7", 4);
	CHECK_EQ(dns_cache_extract(m.b, m.w.len, &q, drop_private, NULL, &ans), 0);
	CHECK_EQ(ans.ancount, 1);
	CHECK(memmem(ans.rr, ans.len, "\xc0\0\2\7", 4) != NULL);
}

static void fill_answer(const char *name, uint32_t ttl, struct dns_question *q)
{
	struct msg m;
	question(q, name, DNS_T_A);
	msg_start(&m, q, 0);
	msg_rr(&m, 1, name, DNS_T_A, ttl, "\xc0\0\2\1", 4);
	CHECK_EQ(dns_cache_extract(m.b, m.w.len, q, NULL, NULL, &ans), 0);
}

static void t_ttl_countdown_and_case(void)
{
	struct dns_cache *c = dns_cache_new(1 << 16, 0, 86400);
	struct dns_question q, Q;
	struct dns_cache_hit hit;
	fill_answer("www.example.com", 100, &q);
	CHECK_EQ(dns_cache_put(c, &q, &ans, 1000), 0);
	question(&Q, "WWW.Example.Com", DNS_T_A);
	CHECK_EQ(dns_cache_get(c, &Q, 1030, &hit), 1);
	CHECK_EQ(hit.ttl_left, 70);
	CHECK_EQ(hit.ancount, 1);
	/* the records come back with the remaining TTL */
	uint8_t out[256];
	struct dns_wbuf w;
	dns_wbuf_init(&w, out, sizeof out);
	CHECK_EQ(dns_rrs_put(&w, hit.rr, hit.len, hit.ancount, hit.ttl_left), 0);
	CHECK_EQ(w.len, hit.len);
	CHECK_MEMEQ(out + 17 + 4, "\0\0\0\x46", 4);
	/* another type is another key */
	Q.type = DNS_T_AAAA;
	CHECK_EQ(dns_cache_get(c, &Q, 1030, &hit), 0);
	CHECK_EQ(dns_cache_get(c, &q, 1100, &hit), 0);	/* expired and dropped */
	CHECK_EQ(dns_cache_entries(c), 0);
	dns_cache_free(c);
}

static void t_clamps(void)
{
	struct dns_cache *c = dns_cache_new(1 << 16, 60, 3600);
	struct dns_question q;
	struct dns_cache_hit hit;
	fill_answer("short.example", 5, &q);
	dns_cache_put(c, &q, &ans, 0);
	CHECK_EQ(dns_cache_get(c, &q, 0, &hit), 1);
	CHECK_EQ(hit.ttl_left, 60);
	fill_answer("long.example", 999999, &q);
	dns_cache_put(c, &q, &ans, 0);
	CHECK_EQ(dns_cache_get(c, &q, 0, &hit), 1);
	CHECK_EQ(hit.ttl_left, 3600);
	dns_cache_free(c);
	/* TTL 0 with no minimum: not cached */
	c = dns_cache_new(1 << 16, 0, 3600);
	fill_answer("zero.example", 0, &q);
	dns_cache_put(c, &q, &ans, 0);
	CHECK_EQ(dns_cache_entries(c), 0);
	dns_cache_free(c);
}

static void t_memory_bound_lru(void)
{
	const size_t max = 32 * 1024;
	struct dns_cache *c = dns_cache_new(max, 0, 86400);
	struct dns_question q, first;
	struct dns_cache_hit hit;
	char name[64];
	fill_answer("keep.example", 1000, &first);
	dns_cache_put(c, &first, &ans, 0);
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof name, "host%d.example", i);
		fill_answer(name, 1000, &q);
		CHECK_EQ(dns_cache_put(c, &q, &ans, 0), 0);
		CHECK(dns_cache_bytes(c) <= max);
		/* touching "keep" keeps it the most recently used */
		CHECK_EQ(dns_cache_get(c, &first, 0, &hit), 1);
	}
	CHECK(dns_cache_entries(c) > 50);
	CHECK(dns_cache_entries(c) < 2000);
	question(&q, "host0.example", DNS_T_A);
	CHECK_EQ(dns_cache_get(c, &q, 0, &hit), 0);	/* evicted */
	question(&q, "host1999.example", DNS_T_A);
	CHECK_EQ(dns_cache_get(c, &q, 0, &hit), 1);
	/* replacing an entry does not grow the cache */
	size_t n = dns_cache_entries(c);
	dns_cache_put(c, &q, &ans, 0);
	CHECK_EQ(dns_cache_entries(c), n);
	dns_cache_free(c);
	CHECK(dns_cache_new(100, 0, 1) == NULL);
}

int main(void)
{
	RUN(t_extract_chain_only);
	RUN(t_extract_cname_loop);
	RUN(t_extract_negative);
	RUN(t_extract_filter);
	RUN(t_ttl_countdown_and_case);
	RUN(t_clamps);
	RUN(t_memory_bound_lru);
	return check_done();
}
