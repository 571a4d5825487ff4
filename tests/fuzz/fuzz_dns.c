/*
 * fuzz_dns.c - libFuzzer target for the DNS message reader (dns-wire.h)
 * and the cache's reply filter (dns-cache.h). The input is a message as a
 * client or an upstream could send it: every question and RR is read, each
 * rdata copied with its names expanded, names turned to text; then, when
 * it has a question, it goes through dns_cache_extract, into a small cache
 * and back out with dns_rrs_put. Nothing may read out of bounds, loop or
 * leak, whatever the compression pointers do.
 */
#include <stddef.h>
#include <stdint.h>

#include "dns-cache.h"
#include "dns-wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CACHE_BYTES (64 * 1024)

static void walk(const uint8_t *data, size_t size, const struct dns_header *h, const size_t sec[4])
{
	static uint8_t out[DNS_MSG_MAX];
	char text[DNS_NAME_TEXT_MAX];
	struct dns_wbuf w;
	struct dns_rr rr;
	long pos = (long)sec[1];
	unsigned total = (unsigned)h->ancount + h->nscount + h->arcount;
	dns_wbuf_init(&w, out, sizeof out);
	for (unsigned i = 0; i < total && pos >= 0; i++) {
		pos = dns_read_rr(data, size, (size_t)pos, &rr);
		if (pos < 0)
			break;
		(void)dns_copy_rdata(&w, data, size, &rr);
		(void)dns_name_to_text(rr.name, rr.namelen, text, sizeof text);
	}
	unsigned udp;
	(void)dns_find_opt(data, size, sec[3], h->arcount, &udp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dns_answer ans;
	static uint8_t out[DNS_MSG_MAX];
	struct dns_header h;
	struct dns_question q;
	size_t sec[4];
	if (dns_parse(data, size, &h, sec) < 0) {
		/* still exercise the name reader on arbitrary positions */
		uint8_t name[DNS_NAME_MAX];
		size_t n;
		for (size_t p = 0; p < size && p < 64; p++)
			(void)dns_read_name(data, size, p, name, &n);
		return 0;
	}
	walk(data, size, &h, sec);
	if (h.qdcount == 0 || dns_read_question(data, size, sec[0], &q) < 0)
		return 0;
	if (dns_cache_extract(data, size, &q, NULL, NULL, &ans) < 0)
		return 0;
	struct dns_cache *c = dns_cache_new(FUZZ_CACHE_BYTES, 0, 86400);
	struct dns_cache_hit hit;
	struct dns_wbuf w;
	if (!c)
		return 0;
	ans.cacheable = 1;
	if (ans.ttl == 0)
		ans.ttl = 1;
	if (dns_cache_put(c, &q, &ans, 0) == 0 && dns_cache_get(c, &q, 0, &hit)) {
		dns_wbuf_init(&w, out, sizeof out);
		if (dns_rrs_put(&w, hit.rr, hit.len, hit.ancount + hit.nscount, hit.ttl_left) < 0)
			__builtin_trap();	/* what extract wrote must read back */
	}
	dns_cache_free(c);
	return 0;
}
