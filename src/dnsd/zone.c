/*
 * zone.c - the internal data dnsd answers with authority, generated from
 * the configuration: the internal zone (SOA, NS, the box's name, static
 * hosts, MX, RFC 6186 SRV), the reverse zones of the LAN prefixes (PTR),
 * and MX/SRV for the mail domain. Also the rebinding policy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "dnsd.h"

#define ZONE_REFRESH 3600	/* SOA timers (RFC 1035 3.3.13) */
#define ZONE_RETRY 600
#define ZONE_EXPIRE 86400
#define ZONE_MX_PREF 10
/* The canary that tells browsers to keep the network's resolver instead of
 * their own DNS-over-HTTPS (Mozilla's use-application-dns.net). */
#define ZONE_DOH_CANARY "use-application-dns.net"

/* RFC 6186 3: the services a mail client looks up, and our ports. */
static const struct { const char *label; unsigned port; } srv_services[] = {
	{ "_submission._tcp", 587 }, { "_imap._tcp", 143 }, { "_imaps._tcp", 993 },
};

/* A name's labels from the root down, each with its length byte: the
 * names below a name have its key as a prefix, so in key order they
 * follow it (RFC 4034 6.1's canonical order, near enough). Lower-case
 * names only. Returns the key's length. */
static size_t name_key(const uint8_t *name, size_t len, uint8_t key[DNS_NAME_MAX])
{
	size_t label[DNS_NAME_MAX / 2 + 1], k = 0;
	int n = 0;
	for (size_t pos = 0; pos < len && name[pos]; pos += 1u + name[pos])
		label[n++] = pos;
	while (n-- > 0) {
		size_t l = 1u + name[label[n]];
		memcpy(key + k, name + label[n], l);
		k += l;
	}
	return k;
}

static struct zone_rr *add_rr(struct zone *z, const uint8_t *owner, size_t ownerlen,
	unsigned type, const void *rdata, size_t rdlen)
{
	if (z->nrr >= DNSD_LOCAL_MAX || rdlen > sizeof z->rr[0].rdata)
		return NULL;
	struct zone_rr *r = &z->rr[z->nrr++];
	memcpy(r->owner, owner, ownerlen);
	r->ownerlen = ownerlen;
	dns_name_lower(r->owner, ownerlen);
	r->keylen = name_key(r->owner, ownerlen, r->key);
	r->type = (uint16_t)type;
	r->rdlen = (uint16_t)rdlen;
	memcpy(r->rdata, rdata, rdlen);
	return r;
}

/* "label" + "." + "domain" in wire form. */
static long join_name(const char *label, const char *domain, uint8_t out[DNS_NAME_MAX])
{
	char text[DNS_NAME_TEXT_MAX];
	if (snprintf(text, sizeof text, "%s.%s", label, domain) >= (int)sizeof text)
		return -1;
	return dns_name_from_text(text, out);
}

static int add_apex(struct zone *z, const uint8_t *apex, size_t apexlen,
	const uint8_t *box, size_t boxlen, const char *domain)
{
	uint8_t rd[2 * DNS_NAME_MAX + 20], rname[DNS_NAME_MAX];
	struct dns_wbuf w;
	long rl = join_name("hostmaster", domain, rname);
	if (z->napex >= DNSD_ZONES_MAX || rl < 0 || boxlen + (size_t)rl + 20 > sizeof rd)
		return -1;
	dns_wbuf_init(&w, rd, sizeof rd);
	dns_put_bytes(&w, box, boxlen);
	dns_put_bytes(&w, rname, (size_t)rl);
	dns_put_u32(&w, (uint32_t)time(NULL));	/* serial: the configuration's age */
	dns_put_u32(&w, ZONE_REFRESH);
	dns_put_u32(&w, ZONE_RETRY);
	dns_put_u32(&w, ZONE_EXPIRE);
	dns_put_u32(&w, DNSD_LOCAL_TTL);	/* RFC 2308 4: negative TTL */
	struct zone_apex *a = &z->apex[z->napex];
	memcpy(a->name, apex, apexlen);
	a->namelen = apexlen;
	dns_name_lower(a->name, apexlen);
	a->soa = z->nrr;
	if (!add_rr(z, apex, apexlen, DNS_T_SOA, rd, w.len) ||
	    !add_rr(z, apex, apexlen, DNS_T_NS, box, boxlen))
		return -1;
	z->napex++;
	return 0;
}

static int add_addr(struct zone *z, const uint8_t *name, size_t namelen,
	const struct config_addr *a)
{
	int v4 = a->family == AF_INET;
	return add_rr(z, name, namelen, v4 ? DNS_T_A : DNS_T_AAAA, a->a, v4 ? 4 : 16) ? 0 : -1;
}

/* The reverse name of an address: "d.c.b.a.in-addr.arpa" or the nibbles
 * under ip6.arpa (RFC 3596 2.5); only the first bits bits when bits >= 0
 * (a zone apex, rounded down to whole octets / nibbles). */
static long reverse_name(const struct config_addr *a, int bits, uint8_t out[DNS_NAME_MAX])
{
	char text[DNS_NAME_TEXT_MAX];
	size_t n = 0;
	if (a->family == AF_INET) {
		int k = bits < 0 ? 4 : bits / 8;
		for (int i = k - 1; i >= 0; i--)
			n += (size_t)snprintf(text + n, sizeof text - n, "%u.", a->a[i]);
		snprintf(text + n, sizeof text - n, "in-addr.arpa");
	} else {
		int k = bits < 0 ? 32 : bits / 4;
		for (int i = k - 1; i >= 0; i--)
			n += (size_t)snprintf(text + n, sizeof text - n, "%x.",
				(unsigned)(i % 2 ? a->a[i / 2] & 0xf : a->a[i / 2] >> 4));
		snprintf(text + n, sizeof text - n, "ip6.arpa");
	}
	return dns_name_from_text(text, out);
}

static int add_ptr(struct zone *z, const struct config_addr *a, const uint8_t *name, size_t namelen)
{
	uint8_t rev[DNS_NAME_MAX];
	long rl = reverse_name(a, -1, rev);
	return rl > 0 && add_rr(z, rev, (size_t)rl, DNS_T_PTR, name, namelen) ? 0 : -1;
}

static int add_reverse_zone(struct zone *z, const struct config_prefix *p,
	const uint8_t *box, size_t boxlen, const char *domain)
{
	uint8_t apex[DNS_NAME_MAX];
	int unit = p->addr.family == AF_INET ? 8 : 4;
	int bits = p->len < unit ? unit : p->len;
	long al = reverse_name(&p->addr, bits, apex);
	return al > 0 ? add_apex(z, apex, (size_t)al, box, boxlen, domain) : -1;
}

/* MX and the RFC 6186 SRV records of a domain, all pointing at the box. */
static int add_mail_records(struct zone *z, const char *domain, const uint8_t *box, size_t boxlen)
{
	uint8_t name[DNS_NAME_MAX], rd[DNS_NAME_MAX + 6];
	long nl = dns_name_from_text(domain, name);
	if (nl < 0)
		return -1;
	rd[0] = 0;
	rd[1] = ZONE_MX_PREF;
	memcpy(rd + 2, box, boxlen);
	if (!add_rr(z, name, (size_t)nl, DNS_T_MX, rd, 2 + boxlen))
		return -1;
	for (size_t i = 0; i < sizeof srv_services / sizeof srv_services[0]; i++) {
		nl = join_name(srv_services[i].label, domain, name);
		/* priority 0, weight 1, port, target (RFC 2782) */
		uint8_t srv[6] = { 0, 0, 0, 1, (uint8_t)(srv_services[i].port >> 8),
			(uint8_t)srv_services[i].port };
		memcpy(rd, srv, 6);
		memcpy(rd + 6, box, boxlen);
		if (nl < 0 || !add_rr(z, name, (size_t)nl, DNS_T_SRV, rd, 6 + boxlen))
			return -1;
	}
	return 0;
}

static int add_hosts(struct zone *z, const struct config *cfg)
{
	const struct config_dns *dc = &cfg->dns;
	for (int i = 0; i < dc->nhosts; i++) {
		uint8_t name[DNS_NAME_MAX];
		const char *hn = dc->hosts[i].name;
		long nl = strchr(hn, '.') ? dns_name_from_text(hn, name)
			: join_name(hn, cfg->global.internal_domain, name);
		if (nl < 0)
			return -1;
		for (int k = 0; k < dc->hosts[i].naddr; k++)
			if (add_addr(z, name, (size_t)nl, &dc->hosts[i].addr[k]) < 0 ||
			    add_ptr(z, &dc->hosts[i].addr[k], name, (size_t)nl) < 0)
				return -1;
	}
	return 0;
}

static int add_rebind_allow(struct zone *z, const char *domain)
{
	long n = dns_name_from_text(domain, z->allow[z->nallow]);
	if (n < 0)
		return -1;
	z->allowlen[z->nallow++] = (size_t)n;
	return 0;
}

static const struct zone_apex *apex_of(const struct zone *z, const uint8_t *name, size_t len)
{
	const struct zone_apex *best = NULL;
	for (int i = 0; i < z->napex; i++)
		if (dns_name_in(name, len, z->apex[i].name, z->apex[i].namelen) &&
		    (!best || z->apex[i].namelen > best->namelen))
			best = &z->apex[i];
	return best;
}

/* Notes the records outside every apex (the mail domain's MX and SRV,
 * static hosts with names elsewhere): a question that is neither under an
 * apex nor one of these owners is not ours, without a scan. */
static int index_outside(struct zone *z)
{
	free(z->outside);
	z->noutside = 0;
	z->outside = calloc(DNSD_LOCAL_MAX, sizeof *z->outside);
	if (!z->outside)
		return -1;
	for (int i = 0; i < z->nrr; i++)
		if (!apex_of(z, z->rr[i].owner, z->rr[i].ownerlen))
			z->outside[z->noutside++] = i;
	return 0;
}

static int ours(const struct zone *z, const struct dns_question *q)
{
	if (apex_of(z, q->name, q->namelen))
		return 1;
	for (int i = 0; i < z->noutside; i++) {
		const struct zone_rr *r = &z->rr[z->outside[i]];
		if (dns_name_eq(r->owner, r->ownerlen, q->name, q->namelen))
			return 1;
	}
	return 0;
}

int zone_build(struct zone *z, const struct config *cfg)
{
	const char *dom = cfg->global.internal_domain;
	uint8_t apex[DNS_NAME_MAX], box[DNS_NAME_MAX];
	memset(z, 0, sizeof *z);
	z->rr = calloc(DNSD_LOCAL_MAX, sizeof *z->rr);
	long al = dns_name_from_text(dom, apex);
	long bl = join_name(cfg->global.hostname, dom, box);
	if (!z->rr || al < 0 || bl < 0)
		return -1;
	const struct config_lan *lan = &cfg->lan;
	int v6 = lan->address6.addr.family == AF_INET6;
	if (add_apex(z, apex, (size_t)al, box, (size_t)bl, dom) < 0 ||
	    add_reverse_zone(z, &lan->address, box, (size_t)bl, dom) < 0 ||
	    (v6 && add_reverse_zone(z, &lan->address6, box, (size_t)bl, dom) < 0) ||
	    add_addr(z, box, (size_t)bl, &lan->address.addr) < 0 ||
	    add_ptr(z, &lan->address.addr, box, (size_t)bl) < 0 ||
	    (v6 && (add_addr(z, box, (size_t)bl, &lan->address6.addr) < 0 ||
		    add_ptr(z, &lan->address6.addr, box, (size_t)bl) < 0)) ||
	    add_mail_records(z, dom, box, (size_t)bl) < 0 ||
	    (strcmp(cfg->global.mail_domain, dom) != 0 &&
	     add_mail_records(z, cfg->global.mail_domain, box, (size_t)bl) < 0) ||
	    add_hosts(z, cfg) < 0 || add_rebind_allow(z, dom) < 0)
		return -1;
	for (int i = 0; i < cfg->dns.nrebind_allow; i++)
		if (add_rebind_allow(z, cfg->dns.rebind_allow[i]) < 0)
			return -1;
	return 0;
}

void zone_free(struct zone *z)
{
	free(z->rr);
	free(z->outside);
	free(z->order);
	z->rr = NULL;
	z->outside = NULL;
	z->order = NULL;
	z->nrr = z->noutside = 0;
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	return c ? c : (alen > blen) - (alen < blen);
}

/* Key order; records of one owner keep the order they were added in. */
static int order_cmp(const void *x, const void *y)
{
	const struct zone_rr *a = *(const struct zone_rr *const *)x;
	const struct zone_rr *b = *(const struct zone_rr *const *)y;
	int c = key_cmp(a->key, a->keylen, b->key, b->keylen);
	return c ? c : (a > b) - (a < b);
}

int zone_index(struct zone *z)
{
	free(z->order);
	z->order = calloc((size_t)z->nrr + 1, sizeof *z->order);
	if (!z->order)
		return -1;
	for (int i = 0; i < z->nrr; i++)
		z->order[i] = &z->rr[i];
	qsort(z->order, (size_t)z->nrr, sizeof *z->order, order_cmp);
	return index_outside(z);
}

/* The first record whose key is not below key (binary search). */
static int lower_bound(const struct zone *z, const uint8_t *key, size_t keylen)
{
	int lo = 0, hi = z->nrr;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		if (key_cmp(z->order[mid]->key, z->order[mid]->keylen, key, keylen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void put_local(struct dns_wbuf *w, const struct zone_rr *r)
{
	dns_put_rr(w, r->owner, r->ownerlen, r->type, DNSD_LOCAL_TTL, r->rdata, r->rdlen);
}

static const struct zone_apex *enclosing_apex(const struct zone *z, const struct dns_question *q)
{
	return apex_of(z, q->name, q->namelen);
}

int zone_answer(const struct zone *z, const struct dns_question *q, struct reply *r,
	uint8_t *buf, size_t cap)
{
	struct dns_wbuf w;
	uint8_t canary[DNS_NAME_MAX];
	long cl = dns_name_from_text(ZONE_DOH_CANARY, canary);
	memset(r, 0, sizeof *r);
	r->ttl = ~0u;
	if (dns_name_eq(q->name, q->namelen, canary, (size_t)cl)) {
		r->rcode = DNS_R_NXDOMAIN;
		return 1;
	}
	if (!z->order || !ours(z, q))
		return 0;
	uint8_t name[DNS_NAME_MAX], key[DNS_NAME_MAX];
	memcpy(name, q->name, q->namelen);
	dns_name_lower(name, q->namelen);
	size_t keylen = name_key(name, q->namelen, key);
	int i = lower_bound(z, key, keylen);
	/* a name with records below it exists (RFC 4592 2.2.2: empty
	 * non-terminals answer NODATA, not NXDOMAIN): they follow it */
	int exists = i < z->nrr && z->order[i]->keylen >= keylen &&
		memcmp(z->order[i]->key, key, keylen) == 0;
	dns_wbuf_init(&w, buf, cap);
	for (; i < z->nrr && key_cmp(z->order[i]->key, z->order[i]->keylen, key, keylen) == 0; i++) {
		const struct zone_rr *rr = z->order[i];
		if (rr->type != q->type && q->type != DNS_T_ANY)
			continue;
		put_local(&w, rr);
		r->ancount++;
	}
	const struct zone_apex *apex = enclosing_apex(z, q);
	if (r->ancount == 0 && !apex)
		return 0;
	r->aa = 1;
	if (r->ancount == 0) {
		/* RFC 2308 3: the SOA in the authority section */
		put_local(&w, &z->rr[apex->soa]);
		r->nscount = 1;
		r->rcode = exists ? DNS_R_NOERROR : DNS_R_NXDOMAIN;
	}
	r->rr = buf;
	r->len = w.overflow ? 0 : w.len;
	if (w.overflow)
		r->ancount = r->nscount = 0, r->rcode = DNS_R_SERVFAIL;
	return 1;
}

/* Addresses a public name must not resolve to: RFC 1918, loopback,
 * link-local, "this network", shared address space (RFC 6598), and for
 * IPv6 unspecified, loopback, ULA (RFC 4193), link-local, and v4-mapped
 * forms of the former. */
static int private_v4(const uint8_t *a)
{
	return a[0] == 0 || a[0] == 10 || a[0] == 127 || (a[0] == 169 && a[1] == 254) ||
	       (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168) ||
	       (a[0] == 100 && (a[1] & 0xc0) == 64);
}

static int private_v6(const uint8_t *a)
{
	static const uint8_t zero[15], mapped[12] = { [10] = 0xff, [11] = 0xff };
	if (memcmp(a, zero, 15) == 0)
		return a[15] <= 1;
	if (memcmp(a, mapped, 12) == 0)
		return private_v4(a + 12);
	return (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

int zone_rebind_blocked(const struct zone *z, const uint8_t *name, size_t namelen,
	const struct dns_rr *rr, const uint8_t *rdata)
{
	int priv = (rr->type == DNS_T_A && rr->rdlen == 4 && private_v4(rdata)) ||
		   (rr->type == DNS_T_AAAA && rr->rdlen == 16 && private_v6(rdata));
	if (!priv)
		return 0;
	for (int i = 0; i < z->nallow; i++)
		if (dns_name_in(name, namelen, z->allow[i], z->allowlen[i]))
			return 0;
	return 1;
}

/* ---- DHCP lease names ------------------------------------------------------------ */

/* 1 when a is inside the LAN prefix p. */
static int in_prefix(const uint8_t a[4], const struct config_prefix *p)
{
	if (p->addr.family != AF_INET)
		return 0;
	for (int bit = 0; bit < p->len && bit < 32; bit++) {
		uint8_t m = (uint8_t)(0x80 >> (bit % 8));
		if ((a[bit / 8] & m) != (p->addr.a[bit / 8] & m))
			return 0;
	}
	return 1;
}

/* 1 when name has records at or below it: a lease cannot take it. */
static int name_taken(const struct zone *z, const uint8_t *name, size_t namelen)
{
	for (int i = 0; i < z->nrr; i++)
		if (dns_name_in(z->rr[i].owner, z->rr[i].ownerlen, name, namelen))
			return 1;
	return 0;
}

/* Why a lease cannot have its name, or NULL when it can. */
static const char *lease_refused(const struct zone *z, const struct config *cfg,
	const struct lease *l, const uint8_t *name, long nl, const uint8_t *rev, long rl)
{
	if (!l->name[0])
		return "no usable host name";
	if (!in_prefix(l->addr, &cfg->lan.address))
		return "address outside the LAN prefix";
	if (nl < 0 || rl < 0)
		return "name too long";
	/* the box's own names, static hosts, SRV/MX owners, earlier leases */
	if (name_taken(z, name, (size_t)nl))
		return "name already in the zone";
	if (name_taken(z, rev, (size_t)rl))
		return "address already has a name";
	return NULL;
}

int zone_add_leases(struct zone *z, const struct config *cfg, const struct lease *l, int n)
{
	int added = 0;
	for (int i = 0; i < n; i++) {
		uint8_t name[DNS_NAME_MAX], rev[DNS_NAME_MAX];
		struct config_addr a = { .family = AF_INET };
		memcpy(a.a, l[i].addr, 4);
		long nl = l[i].name[0] ? join_name(l[i].name, cfg->global.internal_domain, name) : -1;
		long rl = reverse_name(&a, -1, rev);
		const char *why = lease_refused(z, cfg, &l[i], name, nl, rev, rl);
		if (why) {
			if (l[i].name[0])
				log_msg(LOG_NOTICE, NULL, "lease %s: %s", l[i].name, why);
			continue;
		}
		if (z->nrr + 2 > DNSD_LOCAL_MAX) {
			log_msg(LOG_WARNING, NULL, "internal zone full: lease names dropped");
			break;
		}
		add_addr(z, name, (size_t)nl, &a);
		add_rr(z, rev, (size_t)rl, DNS_T_PTR, name, (size_t)nl);
		added++;
	}
	return added;
}
