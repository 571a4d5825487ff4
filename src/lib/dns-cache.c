/*
 * dns-cache.c - TTL-honouring, memory-bounded LRU answer cache (see
 * dns-cache.h).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "dns-cache.h"

#define CACHE_BYTES_MIN 4096		/* smallest max_bytes accepted */
#define CACHE_BYTES_PER_BUCKET 256	/* one hash bucket per this much memory */
#define CACHE_BUCKETS_MIN 64
#define CACHE_BUCKETS_MAX (1u << 20)
#define CACHE_MALLOC_OVERHEAD 16	/* counted per entry: the allocator's header */

struct entry {
	struct entry *hnext;		/* hash chain */
	struct entry *prev, *next;	/* LRU list, most recent first */
	uint64_t hash;
	int64_t expire;			/* cache clock, seconds */
	uint16_t type, qclass;
	uint16_t ancount, nscount;
	uint8_t rcode;
	uint8_t namelen;		/* wire name length - 1 (max 254) */
	size_t len;			/* record bytes */
	uint8_t data[];			/* lower-cased name, then records */
};

struct dns_cache {
	struct entry **bucket;
	size_t nbuckets;		/* power of two */
	struct entry *head, *tail;
	size_t entries, bytes, max_bytes;
	uint32_t min_ttl, max_ttl;
	uint64_t seed;
};

static uint64_t random_seed(void)
{
	uint64_t s;
	if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s)
		return s;
	return (uint64_t)time(NULL) * 0x9e3779b97f4a7c15u ^ (uint64_t)getpid();
}

struct dns_cache *dns_cache_new(size_t max_bytes, uint32_t min_ttl, uint32_t max_ttl)
{
	if (max_bytes < CACHE_BYTES_MIN)
		return NULL;
	struct dns_cache *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	size_t nb = CACHE_BUCKETS_MIN;
	while (nb < max_bytes / CACHE_BYTES_PER_BUCKET && nb < CACHE_BUCKETS_MAX)
		nb *= 2;
	c->bucket = calloc(nb, sizeof *c->bucket);
	if (!c->bucket) {
		free(c);
		return NULL;
	}
	c->nbuckets = nb;
	c->bytes = sizeof *c + nb * sizeof *c->bucket;
	c->max_bytes = max_bytes;
	c->min_ttl = min_ttl;
	c->max_ttl = max_ttl < min_ttl ? min_ttl : max_ttl;
	c->seed = random_seed();
	return c;
}

void dns_cache_free(struct dns_cache *c)
{
	if (!c)
		return;
	for (struct entry *e = c->head, *n; e; e = n) {
		n = e->next;
		free(e);
	}
	free(c->bucket);
	free(c);
}

size_t dns_cache_entries(const struct dns_cache *c)
{
	return c->entries;
}

size_t dns_cache_bytes(const struct dns_cache *c)
{
	return c->bytes;
}

/* FNV-1a over the lower-cased name, type and class, keyed by the seed. */
static uint64_t key_hash(const struct dns_cache *c, const uint8_t *lname, size_t n,
	unsigned type, unsigned qclass)
{
	uint64_t h = 0xcbf29ce484222325u ^ c->seed;
	for (size_t i = 0; i < n; i++)
		h = (h ^ lname[i]) * 0x100000001b3u;
	h = (h ^ type) * 0x100000001b3u;
	h = (h ^ qclass) * 0x100000001b3u;
	return h ^ (h >> 29);
}

static size_t entry_size(const struct entry *e)
{
	return sizeof *e + (size_t)e->namelen + 1 + e->len + CACHE_MALLOC_OVERHEAD;
}

static void lru_unlink(struct dns_cache *c, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct dns_cache *c, struct entry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

static void entry_remove(struct dns_cache *c, struct entry *e)
{
	struct entry **pp = &c->bucket[e->hash & (c->nbuckets - 1)];
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	lru_unlink(c, e);
	c->entries--;
	c->bytes -= entry_size(e);
	free(e);
}

static struct entry *entry_find(struct dns_cache *c, const uint8_t *lname, size_t n,
	unsigned type, unsigned qclass, uint64_t h)
{
	for (struct entry *e = c->bucket[h & (c->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && e->type == type && e->qclass == qclass &&
		    (size_t)e->namelen + 1 == n && memcmp(e->data, lname, n) == 0)
			return e;
	return NULL;
}

static uint32_t clamp_ttl(const struct dns_cache *c, uint32_t ttl)
{
	if (ttl < c->min_ttl)
		return c->min_ttl;
	return ttl > c->max_ttl ? c->max_ttl : ttl;
}

int dns_cache_put(struct dns_cache *c, const struct dns_question *q,
	const struct dns_answer *a, int64_t now)
{
	uint8_t lname[DNS_NAME_MAX];
	uint32_t ttl = clamp_ttl(c, a->ttl);
	if (!a->cacheable || ttl == 0 || q->namelen == 0 || q->namelen > DNS_NAME_MAX ||
	    a->len > DNS_CACHE_ENTRY_MAX)
		return 0;
	memcpy(lname, q->name, q->namelen);
	dns_name_lower(lname, q->namelen);
	uint64_t h = key_hash(c, lname, q->namelen, q->type, q->qclass);
	struct entry *old = entry_find(c, lname, q->namelen, q->type, q->qclass, h);
	if (old)
		entry_remove(c, old);
	size_t need = sizeof(struct entry) + q->namelen + a->len + CACHE_MALLOC_OVERHEAD;
	if (need > c->max_bytes / 2)
		return 0;	/* one entry may not take half the cache */
	while (c->tail && c->bytes + need > c->max_bytes)
		entry_remove(c, c->tail);
	if (c->bytes + need > c->max_bytes)
		return 0;
	struct entry *e = malloc(sizeof *e + q->namelen + a->len);
	if (!e)
		return -1;
	e->hash = h;
	e->expire = now + ttl;
	e->type = q->type;
	e->qclass = q->qclass;
	e->ancount = (uint16_t)a->ancount;
	e->nscount = (uint16_t)a->nscount;
	e->rcode = (uint8_t)a->rcode;
	e->namelen = (uint8_t)(q->namelen - 1);
	e->len = a->len;
	memcpy(e->data, lname, q->namelen);
	memcpy(e->data + q->namelen, a->rr, a->len);
	size_t b = h & (c->nbuckets - 1);
	e->hnext = c->bucket[b];
	c->bucket[b] = e;
	lru_push(c, e);
	c->entries++;
	c->bytes += entry_size(e);
	return 0;
}

int dns_cache_get(struct dns_cache *c, const struct dns_question *q, int64_t now,
	struct dns_cache_hit *hit)
{
	uint8_t lname[DNS_NAME_MAX];
	if (q->namelen == 0 || q->namelen > DNS_NAME_MAX)
		return 0;
	memcpy(lname, q->name, q->namelen);
	dns_name_lower(lname, q->namelen);
	uint64_t h = key_hash(c, lname, q->namelen, q->type, q->qclass);
	struct entry *e = entry_find(c, lname, q->namelen, q->type, q->qclass, h);
	if (!e)
		return 0;
	if (e->expire <= now) {
		entry_remove(c, e);
		return 0;
	}
	lru_unlink(c, e);
	lru_push(c, e);
	hit->rcode = e->rcode;
	hit->ancount = e->ancount;
	hit->nscount = e->nscount;
	hit->ttl_left = (uint32_t)(e->expire - now);
	hit->rr = e->data + e->namelen + 1;
	hit->len = e->len;
	return 1;
}

/* ---- stored records ------------------------------------------------------------ */

/* Skips an uncompressed stored name; returns the position after it or -1. */
static long skip_plain_name(const uint8_t *p, size_t len, size_t pos)
{
	size_t start = pos;
	while (pos < len && p[pos]) {
		if (p[pos] > DNS_LABEL_MAX)
			return -1;
		pos += 1u + p[pos];
	}
	if (pos >= len || pos + 1 - start > DNS_NAME_MAX)
		return -1;
	return (long)pos + 1;
}

int dns_rrs_put(struct dns_wbuf *w, const uint8_t *rr, size_t len, unsigned count, uint32_t ttl)
{
	size_t pos = 0;
	for (unsigned i = 0; i < count; i++) {
		long p = skip_plain_name(rr, len, pos);
		if (p < 0 || (size_t)p + 10 > len)
			return -1;
		size_t rdlen = (size_t)rr[p + 8] << 8 | rr[p + 9];
		size_t end = (size_t)p + 10 + rdlen;
		if (end > len)
			return -1;
		dns_put_bytes(w, rr + pos, (size_t)p + 4 - pos);	/* name, type, class */
		dns_put_u32(w, ttl);
		dns_put_bytes(w, rr + p + 8, 2 + rdlen);
		pos = end;
	}
	return 0;
}

/* ---- extraction from a reply ------------------------------------------------------ */

struct extract {
	const uint8_t *msg;
	size_t len;
	struct dns_wbuf w;
	struct dns_answer *out;
	dns_rr_filter filter;
	void *arg;
};

/* Appends one RR of the reply (owner lower-cased, rdata names expanded). */
static int keep_rr(struct extract *x, struct dns_rr *rr)
{
	if (x->filter && !x->filter(x->arg, rr, x->msg + rr->rdpos))
		return 0;
	dns_name_lower(rr->name, rr->namelen);
	dns_put_bytes(&x->w, rr->name, rr->namelen);
	dns_put_u16(&x->w, rr->type);
	dns_put_u16(&x->w, rr->rclass);
	dns_put_u32(&x->w, rr->ttl);
	if (dns_copy_rdata(&x->w, x->msg, x->len, rr) < 0 || x->w.overflow)
		return -1;
	if (rr->ttl < x->out->ttl)
		x->out->ttl = rr->ttl;
	return 1;
}

/*
 * One pass over the answer section for the name target: keeps its records
 * of the question's type, and its first CNAME (whose target goes to next).
 * Returns the number of records of the question's type kept, 0, or -1.
 */
static int chain_pass(struct extract *x, size_t an, unsigned ancount,
	const struct dns_question *q, const uint8_t *target, size_t tlen,
	uint8_t next[DNS_NAME_MAX], size_t *nextlen)
{
	struct dns_rr rr;
	long pos = (long)an;
	int data = 0, k;
	*nextlen = 0;
	for (unsigned i = 0; i < ancount; i++) {
		if ((pos = dns_read_rr(x->msg, x->len, (size_t)pos, &rr)) < 0)
			return -1;
		if (rr.rclass != q->qclass || !dns_name_eq(rr.name, rr.namelen, target, tlen))
			continue;
		if (rr.type == q->type || q->type == DNS_T_ANY) {
			if ((k = keep_rr(x, &rr)) < 0)
				return -1;
			x->out->ancount += (unsigned)k;
			data += k;
		} else if (rr.type == DNS_T_CNAME && *nextlen == 0) {
			if (dns_read_name(x->msg, rr.rdpos + rr.rdlen, rr.rdpos, next, nextlen) < 0)
				return -1;
			if ((k = keep_rr(x, &rr)) < 0)
				return -1;
			x->out->ancount += (unsigned)k;
		}
	}
	return data;
}

/* RFC 2308 3 and 5: a negative answer is cached for min(SOA TTL, SOA
 * MINIMUM), with the SOA of a zone that encloses the name. */
static int keep_soa(struct extract *x, size_t ns, unsigned nscount,
	const uint8_t *target, size_t tlen)
{
	struct dns_rr rr;
	long pos = (long)ns;
	for (unsigned i = 0; i < nscount; i++) {
		if ((pos = dns_read_rr(x->msg, x->len, (size_t)pos, &rr)) < 0)
			return -1;
		if (rr.type != DNS_T_SOA || rr.rdlen < 22 ||
		    !dns_name_in(target, tlen, rr.name, rr.namelen))
			continue;
		const uint8_t *m = x->msg + rr.rdpos + rr.rdlen - 4;
		uint32_t minimum = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
		if (minimum < rr.ttl)
			rr.ttl = minimum;
		int k = keep_rr(x, &rr);
		if (k < 0)
			return -1;
		x->out->nscount += (unsigned)k;
		x->out->cacheable = k;
		return 0;
	}
	return 0;
}

int dns_cache_extract(const uint8_t *msg, size_t len, const struct dns_question *q,
	dns_rr_filter filter, void *arg, struct dns_answer *out)
{
	struct dns_header h;
	size_t sec[4];
	uint8_t name[2][DNS_NAME_MAX];
	size_t nlen[2];
	struct extract x = { .msg = msg, .len = len, .out = out, .filter = filter, .arg = arg };

	if (dns_parse(msg, len, &h, sec) < 0)
		return -1;
	out->rcode = DNS_RCODE(h.flags);
	if (out->rcode != DNS_R_NOERROR && out->rcode != DNS_R_NXDOMAIN)
		return -1;
	out->ancount = out->nscount = 0;
	out->ttl = UINT32_MAX;
	out->cacheable = 1;
	dns_wbuf_init(&x.w, out->rr, sizeof out->rr);
	memcpy(name[0], q->name, q->namelen);
	nlen[0] = q->namelen;
	int cur = 0, data = 0;
	for (int hop = 0; hop <= DNS_CNAME_MAX; hop++) {
		data = chain_pass(&x, sec[1], h.ancount, q, name[cur], nlen[cur],
			name[!cur], &nlen[!cur]);
		if (data < 0)
			return -1;
		if (data > 0 || nlen[!cur] == 0)
			break;
		cur = !cur;
	}
	if (data == 0) {
		out->cacheable = 0;
		if (keep_soa(&x, sec[2], h.nscount, name[cur], nlen[cur]) < 0)
			return -1;
	}
	out->len = x.w.len;
	if (out->ttl == UINT32_MAX)
		out->ttl = 0;
	return 0;
}
