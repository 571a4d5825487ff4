/*
 * dns-cache.h - the resolver's answer cache.
 *
 * Keyed by question (name without regard to case, type, class), an entry
 * holds the rcode and the records to answer with: the answer section (the
 * question's records and the CNAME chain leading to them) and, for a
 * negative answer, the SOA that bounds its life (RFC 2308 5). Records are
 * stored uncompressed in wire form; on a hit every TTL is rewritten to the
 * time the entry has left, so clients see TTLs count down.
 *
 * Bounded: the entries, their records and the hash table together stay
 * under max_bytes; the least recently used entries are evicted first. TTLs
 * are clamped to [min_ttl, max_ttl] (docs/CONFIG.md [dns] min-ttl,
 * max-ttl). The clock is the caller's (seconds, any epoch), so tests need
 * no sleeping. Hashing is keyed with a random seed so clients cannot aim
 * names at one bucket.
 *
 * dns_cache_extract() is the filter between an upstream reply and the
 * cache: only the question's answer and its CNAME chain, and for negative
 * answers the zone's SOA, survive; unrelated answer, authority and
 * additional records are dropped (they are how cache poisoning works).
 */
#ifndef POSTERN_DNS_CACHE_H
#define POSTERN_DNS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "dns-wire.h"

#define DNS_CACHE_ENTRY_MAX 8192	/* record bytes of one entry; larger answers are not cached */
#define DNS_CNAME_MAX 8			/* CNAME links followed in one answer */

struct dns_cache;

/* What dns_cache_extract keeps of a reply, ready for dns_cache_put. */
struct dns_answer {
	int rcode;			/* DNS_R_NOERROR or DNS_R_NXDOMAIN */
	unsigned ancount, nscount;	/* records in rr[]: answers first */
	uint32_t ttl;			/* lowest TTL among them (negative: RFC 2308 5) */
	int cacheable;			/* 0: a negative answer without SOA */
	size_t len;
	uint8_t rr[DNS_CACHE_ENTRY_MAX];
};

/* A record the caller may veto before it is kept (rebinding protection):
 * return 1 to keep, 0 to drop. rdata points into the reply. */
typedef int (*dns_rr_filter)(void *arg, const struct dns_rr *rr, const uint8_t *rdata);

/* A new empty cache holding at most max_bytes. NULL when out of memory or
 * max_bytes is too small for the table. */
struct dns_cache *dns_cache_new(size_t max_bytes, uint32_t min_ttl, uint32_t max_ttl);

void dns_cache_free(struct dns_cache *c);

/*
 * Extracts the cacheable part of a reply (msg, len) to question q: the RRs
 * of the answer section on q's name, or on the names its CNAMEs lead to
 * (at most DNS_CNAME_MAX links, each link must start where the last ended),
 * of q's type (or CNAMEs); when that ends without data (NXDOMAIN or NODATA)
 * the SOA of the authority section that encloses the last name. filter may
 * drop records (NULL keeps all). Returns 0, or -1 when the reply is
 * malformed, too big, or has an rcode other than NOERROR / NXDOMAIN.
 */
int dns_cache_extract(const uint8_t *msg, size_t len, const struct dns_question *q,
	dns_rr_filter filter, void *arg, struct dns_answer *out);

/* Stores a (clamped) copy of a under q at time now, replacing an older
 * entry. Answers that are not cacheable or have a TTL of 0 after clamping
 * are not stored. Returns 0 (stored or skipped), -1 out of memory. */
int dns_cache_put(struct dns_cache *c, const struct dns_question *q,
	const struct dns_answer *a, int64_t now);

/* A cache hit: valid until the next call on the cache. */
struct dns_cache_hit {
	int rcode;
	unsigned ancount, nscount;
	uint32_t ttl_left;
	const uint8_t *rr;
	size_t len;
};

/* Looks q up at time now; expired entries are dropped. Returns 1 with hit,
 * 0 on a miss. */
int dns_cache_get(struct dns_cache *c, const struct dns_question *q, int64_t now,
	struct dns_cache_hit *hit);

/* Writes count stored records (rr, len) into w with every TTL set to ttl.
 * Returns 0, or -1 when they are malformed. */
int dns_rrs_put(struct dns_wbuf *w, const uint8_t *rr, size_t len, unsigned count, uint32_t ttl);

/* Entries and bytes in use (table included). */
size_t dns_cache_entries(const struct dns_cache *c);
size_t dns_cache_bytes(const struct dns_cache *c);

#endif
