/*
 * firewall.c - configuration -> iptables-restore / ip6tables-restore input
 * (see firewall.h and docs/firewall.md for the policy).
 *
 * The output is built by a sticky-overflow writer (strbuf.h); each part of the
 * rule set is one small function, called from a table of steps per mode.
 * Nothing here touches the kernel.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firewall.h"
#include "strbuf.h"

#define FW_MULTIPORT_MAX 15          /* ports in one -m multiport (xt_multiport) */
#define FW_ICMP_LIMIT    "5/sec"     /* ICMP to the box */
#define FW_ICMP_BURST    20
#define FW_LOG_LIMIT     "6/min"     /* log lines for blocked attempts */
#define FW_LOG_BURST     10
#define FW_LOG_LEVEL     4           /* warning */
#define FW_NETSTR_MAX    (INET6_ADDRSTRLEN + 5)

/* The box's services on its LAN side (docs/ARCHITECTURE.md, processes):
 * DNS, submission 587 + 465, IMAP 143 + 993, the admin page 443 + 80. */
static const unsigned short lan_tcp_services[] = { 53, 80, 143, 443, 465, 587, 993 };

/* ---- generator context -------------------------------------------------- */

struct gen {
	const struct config *cfg;
	struct strbuf *o;
	int family;                  /* enum fw_family */
	int office;                  /* rules for the office router, not the box */
	const char *wan, *lan;       /* interface names in the rules */
	const char *icmp;            /* "icmp" or "ipv6-icmp" */
	const char *unreach;         /* REJECT type for non-TCP */
	const struct config_prefix *pfx;   /* the LAN prefix of this family, or NULL */
	char box[INET6_ADDRSTRLEN];  /* the box's LAN address ("" without one) */
	char net[FW_NETSTR_MAX];     /* the LAN prefix as text ("" without one) */
};

static int af_of(int family)
{
	return family == FW_IPV4 ? AF_INET : AF_INET6;
}

/* "192.168.10.0/24": the prefix with its host bits cleared. */
static void net_str(const struct config_prefix *p, char *buf, size_t cap)
{
	struct config_addr a = p->addr;
	int bytes = a.family == AF_INET ? 4 : 16;
	char s[INET6_ADDRSTRLEN];

	for (int i = 0; i < bytes; i++) {
		int keep = p->len - 8 * i;
		unsigned char mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
		a.a[i] &= mask;
	}
	snprintf(buf, cap, "%s/%d", config_addr_str(&a, s, sizeof s), p->len);
}

static int gen_init(struct gen *g, const struct config *cfg, struct strbuf *o, int family,
                    int office)
{
	const struct config_lan *l = &cfg->lan;

	memset(g, 0, sizeof *g);
	g->cfg = cfg;
	g->o = o;
	g->family = family;
	g->office = office;
	g->wan = office ? "WAN" : cfg->wan.interface;
	g->lan = office ? "LAN" : firewall_lan_if(cfg);
	g->icmp = family == FW_IPV4 ? "icmp" : "ipv6-icmp";
	g->unreach = family == FW_IPV4 ? "icmp-port-unreachable" : "icmp6-port-unreachable";
	if (l->address.addr.family == af_of(family))
		g->pfx = &l->address;
	else if (l->address6.addr.family == af_of(family))
		g->pfx = &l->address6;
	if (g->pfx) {
		config_addr_str(&g->pfx->addr, g->box, sizeof g->box);
		net_str(g->pfx, g->net, sizeof g->net);
	}
	return 0;
}

/* ---- port lists ----------------------------------------------------------- */

/* "-A chain <pre> -p tcp -m multiport --dports a,b,... -j target", split
 * into rules of at most FW_MULTIPORT_MAX ports. */
static void put_ports(struct gen *g, const char *chain, const char *pre,
                      const uint16_t *ports, int n, const char *target)
{
	for (int i = 0; i < n; i += FW_MULTIPORT_MAX) {
		strbuf_put(g->o, "-A %s %s-p tcp -m multiport --dports ", chain, pre);
		for (int j = i; j < n && j < i + FW_MULTIPORT_MAX; j++)
			strbuf_put(g->o, "%s%u", j > i ? "," : "", (unsigned)ports[j]);
		strbuf_put(g->o, " -j %s\n", target);
	}
}

/* ---- filter: INPUT ------------------------------------------------------ */

static void input_common(struct gen *g)
{
	const char *type = g->family == FW_IPV4 ? "--icmp-type" : "--icmpv6-type";

	strbuf_put(g->o, "-A INPUT -i lo -j ACCEPT\n");
	/* Echo requests are limited before the conntrack accept: once the box
	 * has answered one, conntrack calls the next with the same identifier
	 * (RFC 792, RFC 4443 s. 4.1) ESTABLISHED, and a flood would pass. */
	strbuf_put(g->o, "-A INPUT -p %s %s echo-request -m limit --limit %s --limit-burst %d "
	           "-j ACCEPT\n", g->icmp, type, FW_ICMP_LIMIT, FW_ICMP_BURST);
	strbuf_put(g->o, "-A INPUT -p %s %s echo-request -j DROP\n", g->icmp, type);
	strbuf_put(g->o, "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n");
	strbuf_put(g->o, "-A INPUT -m conntrack --ctstate INVALID -j DROP\n");
	/* IPv6 does not work without neighbour discovery (RFC 4861 s. 4):
	 * router solicitation/advertisement, neighbour solicitation/advertisement. */
	if (g->family == FW_IPV6)
		for (int t = 133; t <= 136; t++)
			strbuf_put(g->o, "-A INPUT -p ipv6-icmp --icmpv6-type %d -j ACCEPT\n", t);
	strbuf_put(g->o, "-A INPUT -p %s -m limit --limit %s --limit-burst %d -j ACCEPT\n",
	    g->icmp, FW_ICMP_LIMIT, FW_ICMP_BURST);
}

static void input_lan(struct gen *g)
{
	/* DHCP requests come from 0.0.0.0 to 255.255.255.255 (RFC 2131 s. 4.1). */
	if (g->family == FW_IPV4 && g->cfg->lan.dhcp && !g->cfg->firewall.single_interface)
		strbuf_put(g->o, "-A INPUT -i %s -p udp --sport 68 --dport 67 -j ACCEPT\n", g->lan);
	if (g->cfg->firewall.single_interface) {
		/* Behind another router the box accepts its services only from
		 * the office prefix; without one (IPv6 unset) from nobody. */
		if (g->pfx)
			strbuf_put(g->o, "-A INPUT -i %s -s %s -j postern-in-lan\n", g->lan, g->net);
	} else {
		strbuf_put(g->o, "-A INPUT -i %s -j postern-in-lan\n", g->lan);
	}
}

static void in_lan_chain(struct gen *g)
{
	const struct config_smtp *s = &g->cfg->smtp;
	char n[FW_NETSTR_MAX];
	uint16_t ports[sizeof lan_tcp_services / sizeof lan_tcp_services[0]];
	int np = 0;

	for (size_t i = 0; i < sizeof lan_tcp_services / sizeof lan_tcp_services[0]; i++)
		ports[np++] = lan_tcp_services[i];
	strbuf_put(g->o, "-A postern-in-lan -p udp --dport %d -j ACCEPT\n", FW_DNS_PORT);
	put_ports(g, "postern-in-lan", "", ports, np, "ACCEPT");
	/* Port 25 takes mail without a login: only from the listed devices. */
	for (int i = 0; s->port25 && i < s->nport25_hosts; i++) {
		if (s->port25_hosts[i].addr.family != af_of(g->family))
			continue;
		net_str(&s->port25_hosts[i], n, sizeof n);
		strbuf_put(g->o, "-A postern-in-lan -s %s -p tcp --dport 25 -j ACCEPT\n", n);
	}
	strbuf_put(g->o, "-A postern-in-lan -p tcp -j REJECT --reject-with tcp-reset\n");
	strbuf_put(g->o, "-A postern-in-lan -p udp -j REJECT --reject-with %s\n", g->unreach);
}

/* ---- filter: FORWARD ----------------------------------------------------- */

static void forward_hook(struct gen *g)
{
	strbuf_put(g->o, "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n");
	strbuf_put(g->o, "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n");
	strbuf_put(g->o, "-A FORWARD -i %s -o %s -j postern-forward\n", g->lan, g->wan);
}

static void forward_allows(struct gen *g)
{
	const struct config_firewall *f = &g->cfg->firewall;
	char n[FW_NETSTR_MAX], pre[FW_NETSTR_MAX + 8];

	for (int i = 0; i < f->nallow; i++) {
		const struct config_allow *a = &f->allow[i];
		if (a->net.addr.family != af_of(g->family))
			continue;
		net_str(&a->net, n, sizeof n);
		snprintf(pre, sizeof pre, "-s %s ", n);
		if (a->nports)
			put_ports(g, "postern-forward", pre, a->ports, a->nports, "ACCEPT");
		else
			put_ports(g, "postern-forward", pre, f->blocked_ports, f->nblocked_ports, "ACCEPT");
	}
	/* The office router lets the box itself reach everything. */
	if (g->office && g->box[0])
		strbuf_put(g->o, "-A postern-forward -s %s -j ACCEPT\n", g->box);
}

static void forward_blocks(struct gen *g)
{
	const struct config_firewall *f = &g->cfg->firewall;

	put_ports(g, "postern-forward", "", f->blocked_ports, f->nblocked_ports, FW_CHAIN_BLOCK);
	/* DNS over TLS (RFC 7858 s. 3.1) and DNS over QUIC (RFC 9250) use 853. */
	strbuf_put(g->o, "-A postern-forward -p tcp --dport %d -j %s\n", FW_DOT_PORT, FW_CHAIN_BLOCK);
	strbuf_put(g->o, "-A postern-forward -p udp --dport %d -j %s\n", FW_DOT_PORT, FW_CHAIN_BLOCK);
	/* Plain DNS elsewhere: in redirect mode only what escaped the nat
	 * PREROUTING redirect gets here (IPv6 always: dnsd answers on IPv4). */
	strbuf_put(g->o, "-A postern-forward -p udp --dport %d -j %s\n", FW_DNS_PORT, FW_CHAIN_BLOCK);
	strbuf_put(g->o, "-A postern-forward -p tcp --dport %d -j %s\n", FW_DNS_PORT, FW_CHAIN_BLOCK);
	/* Only the office's own addresses leave (no spoofed sources). */
	if (g->net[0])
		strbuf_put(g->o, "-A postern-forward -s %s -j ACCEPT\n", g->net);
}

static void block_chain(struct gen *g)
{
	strbuf_put(g->o, "-A %s -j %s\n", FW_CHAIN_BLOCK, FW_CHAIN_COUNT);
	if (g->cfg->firewall.log_blocked)
		strbuf_put(g->o, "-A %s -m limit --limit %s --limit-burst %d -j LOG "
		    "--log-prefix \"%s\" --log-level %d\n", FW_CHAIN_BLOCK,
		    FW_LOG_LIMIT, FW_LOG_BURST, FW_LOG_PREFIX, FW_LOG_LEVEL);
	/* A reset makes the client fail at once instead of timing out. */
	strbuf_put(g->o, "-A %s -p tcp -j REJECT --reject-with tcp-reset\n", FW_CHAIN_BLOCK);
	strbuf_put(g->o, "-A %s -j REJECT --reject-with %s\n", FW_CHAIN_BLOCK, g->unreach);
}

/* IPv4: one RETURN rule per host address of the LAN prefix (prefixes up
 * to FW_COUNT_HOSTS_MAX addresses), so that iptables-save -c shows who
 * tried. */
static void count_hosts4(struct gen *g)
{
	uint32_t a, mask, net, size;

	if (g->pfx->len < 1 || g->pfx->len > 30)
		return;
	memcpy(&a, g->pfx->addr.a, 4);
	mask = 0xffffffffu << (32 - g->pfx->len);
	net = ntohl(a) & mask;
	size = ~mask + 1;
	for (uint32_t i = 1; size <= FW_COUNT_HOSTS_MAX && i + 1 < size; i++) {
		struct in_addr h = { htonl(net + i) };
		char s[INET_ADDRSTRLEN];
		strbuf_put(g->o, "-A %s -s %s/32 -j RETURN\n", FW_CHAIN_COUNT,
		    inet_ntop(AF_INET, &h, s, sizeof s));
	}
}

/* IPv6: one RETURN rule per full address (/128) for the prefix's first
 * FW_COUNT_HOSTS_MAX - 1 host numbers (all of a prefix of /118 or longer):
 * the box sends no router advertisements, so LAN hosts with an address of
 * [lan] address6 are numbered by hand, ::2 .. ::3ff. Other addresses (a /64
 * cannot be enumerated) count in the prefix's rule. The all-zero host
 * number is the subnet-router anycast address (RFC 4291 s. 2.6.1). */
static void count_hosts6(struct gen *g)
{
	int hostbits = 128 - g->pfx->len;
	unsigned n = hostbits >= 10 ? FW_COUNT_HOSTS_MAX : 1u << hostbits;
	struct config_addr h;
	char s[INET6_ADDRSTRLEN];

	for (unsigned i = 1; i < n; i++) {
		h = g->pfx->addr;
		for (int b = 0; b < 16; b++) {      /* clear the host bits */
			int keep = g->pfx->len - 8 * b;
			h.a[b] &= keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
		}
		h.a[14] |= (unsigned char)(i >> 8);
		h.a[15] |= (unsigned char)(i & 0xff);
		strbuf_put(g->o, "-A %s -s %s/128 -j RETURN\n", FW_CHAIN_COUNT,
		    config_addr_str(&h, s, sizeof s));
	}
}

/* One counter per LAN host, then one for the rest of the prefix and one
 * for anything else. */
static void count_chain(struct gen *g)
{
	if (g->pfx && g->family == FW_IPV4)
		count_hosts4(g);
	else if (g->pfx)
		count_hosts6(g);
	if (g->net[0])
		strbuf_put(g->o, "-A %s -s %s -j RETURN\n", FW_CHAIN_COUNT, g->net);
	strbuf_put(g->o, "-A %s -j RETURN\n", FW_CHAIN_COUNT);
}

/* ---- tables --------------------------------------------------------------- */

static void filter_box(struct gen *g)
{
	int router = !g->cfg->firewall.single_interface;

	strbuf_put(g->o, "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
	strbuf_put(g->o, ":postern-in-lan - [0:0]\n");
	if (router)
		strbuf_put(g->o, ":postern-forward - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n",
		    FW_CHAIN_BLOCK, FW_CHAIN_COUNT);
	input_common(g);
	input_lan(g);
	in_lan_chain(g);
	if (router) {
		forward_hook(g);
		forward_allows(g);
		forward_blocks(g);
		block_chain(g);
		count_chain(g);
	}
	strbuf_put(g->o, "COMMIT\n");
}

static void filter_office(struct gen *g)
{
	strbuf_put(g->o, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
	strbuf_put(g->o, ":postern-forward - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n",
	    FW_CHAIN_BLOCK, FW_CHAIN_COUNT);
	forward_hook(g);
	forward_allows(g);
	forward_blocks(g);
	block_chain(g);
	count_chain(g);
	strbuf_put(g->o, "COMMIT\n");
}

/* Foreign DNS to the box's resolver. On the office router the box and the
 * client share a segment, so the redirected query is also masqueraded
 * (hairpin NAT): otherwise the box answers the client directly, from an
 * address the client never asked. */
static void nat_redirect(struct gen *g)
{
	static const char *const protos[] = { "udp", "tcp" };

	for (int i = 0; i < 2; i++) {
		strbuf_put(g->o, "-A PREROUTING -i %s%s%s -p %s --dport %d ! -d %s "
		    "-j DNAT --to-destination %s:%d\n", g->lan, g->office ? " ! -s " : "",
		    g->office ? g->box : "", protos[i], FW_DNS_PORT, g->box, g->box, FW_DNS_PORT);
		if (g->office)
			strbuf_put(g->o, "-A POSTROUTING -o %s -s %s -d %s -p %s --dport %d -j MASQUERADE\n",
			    g->lan, g->net, g->box, protos[i], FW_DNS_PORT);
	}
}

static void nat_table(struct gen *g)
{
	strbuf_put(g->o, "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n"
	    ":OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
	if (g->office || !g->cfg->firewall.single_interface) {
		if (g->cfg->firewall.foreign_dns == CONFIG_INTERCEPT_REDIRECT)
			nat_redirect(g);
		strbuf_put(g->o, "-A POSTROUTING -o %s -s %s -j MASQUERADE\n", g->wan, g->net);
	}
	strbuf_put(g->o, "COMMIT\n");
}

/* ---- public --------------------------------------------------------------- */

const char *firewall_lan_if(const struct config *cfg)
{
	return cfg->lan.interface;
}

static int fail(char *err, size_t errcap, const char *msg)
{
	snprintf(err, errcap, "%s", msg);
	return -1;
}

static int finish(const struct strbuf *o, char *err, size_t errcap)
{
	if (o->full)
		return fail(err, errcap, "the rule set does not fit in its buffer");
	return (int)o->len;
}

int firewall_rules(const struct config *cfg, int family, char *buf, size_t cap,
                   char *err, size_t errcap)
{
	struct strbuf o;
	struct gen g;

	strbuf_init(&o, buf, cap);
	if (family != FW_IPV4 && family != FW_IPV6)
		return fail(err, errcap, "unknown address family");
	if (cfg->lan.address.addr.family != AF_INET)
		return fail(err, errcap, "lan: address: not an IPv4 prefix");
	if (!cfg->firewall.single_interface &&
	    strcmp(cfg->wan.interface, firewall_lan_if(cfg)) == 0)
		return fail(err, errcap, "wan: interface: the WAN and the LAN are both "
		            "on one interface (set [firewall] single-interface yes)");
	gen_init(&g, cfg, &o, family, 0);
	strbuf_put(&o, "# generated by postern from postern.conf (docs/firewall.md); do not edit\n");
	filter_box(&g);
	if (family == FW_IPV4)
		nat_table(&g);
	return finish(&o, err, errcap);
}

int firewall_office_rules(const struct config *cfg, char *buf, size_t cap,
                          char *err, size_t errcap)
{
	struct strbuf o;
	struct gen g;

	strbuf_init(&o, buf, cap);
	if (cfg->lan.address.addr.family != AF_INET)
		return fail(err, errcap, "lan: address: not an IPv4 prefix");
	gen_init(&g, cfg, &o, FW_IPV4, 1);
	strbuf_put(&o, "# Rules for the office router (iptables-restore input, IPv4), so that\n"
	    "# only this box (%s) reaches the mail ports and DNS on the Internet.\n"
	    "# Replace WAN and LAN with the router's interface names and merge these\n"
	    "# rules into its own rule set; have its DHCP server hand out %s as DNS.\n",
	    g.box, g.box);
	filter_office(&g);
	nat_table(&g);
	return finish(&o, err, errcap);
}

/* ---- the fallback ---------------------------------------------------------- */

#define FW_IFNAME_MAX 15             /* IFNAMSIZ - 1 */

int firewall_ifname_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > FW_IFNAME_MAX)
		return 0;
	return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	              "0123456789._-") == n;
}

/* Only the simplest matches (tcp, udp, conntrack, icmpv6): the fewer
 * kernel features the fallback needs, the fewer ways it can fail. */
static void fallback_lan(struct strbuf *o, int family, const char *lan)
{
	static const unsigned short tcp[] = { 443, 80, FW_DNS_PORT };

	strbuf_put(o, "-A INPUT -i %s -j %s\n", lan, FW_CHAIN_FALLBACK);
	for (size_t i = 0; i < sizeof tcp / sizeof tcp[0]; i++)
		strbuf_put(o, "-A %s -p tcp --dport %u -j ACCEPT\n", FW_CHAIN_FALLBACK, tcp[i]);
	strbuf_put(o, "-A %s -p udp --dport %d -j ACCEPT\n", FW_CHAIN_FALLBACK, FW_DNS_PORT);
	/* DHCP requests come from 0.0.0.0 to 255.255.255.255 (RFC 2131 s. 4.1). */
	if (family == FW_IPV4)
		strbuf_put(o, "-A %s -p udp --sport 68 --dport 67 -j ACCEPT\n", FW_CHAIN_FALLBACK);
}

int firewall_fallback_rules(int family, const char *lan, char *buf, size_t cap)
{
	struct strbuf o;

	strbuf_init(&o, buf, cap);
	strbuf_put(&o, "# postern fallback rule set (docs/firewall.md): the generated one "
	           "could not be loaded\n*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n"
	           ":OUTPUT ACCEPT [0:0]\n:%s - [0:0]\n", FW_CHAIN_FALLBACK);
	strbuf_put(&o, "-A INPUT -i lo -j ACCEPT\n");
	strbuf_put(&o, "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n");
	/* Without neighbour discovery IPv6 does not work at all (RFC 4861 s. 4). */
	for (int t = 133; family == FW_IPV6 && t <= 136; t++)
		strbuf_put(&o, "-A INPUT -p ipv6-icmp --icmpv6-type %d -j ACCEPT\n", t);
	if (firewall_ifname_ok(lan))
		fallback_lan(&o, family, lan);
	strbuf_put(&o, "COMMIT\n");
	return strbuf_result(&o);
}

/* "[12:720] -A postern-count -s 192.168.10.5/32 -j RETURN" */
static int parse_count_line(const char *line, size_t len, struct fw_count *c)
{
	char chain[32], *end;
	const char *s;
	unsigned long long p;
	size_t n;

	if (len == 0 || line[0] != '[')
		return 0;
	p = strtoull(line + 1, &end, 10);
	if (*end != ':' || sscanf(end, ":%*u] -A %31s", chain) != 1 ||
	    strcmp(chain, FW_CHAIN_COUNT) != 0 || p == 0)
		return 0;
	c->packets = p;
	s = strstr(line, " -s ");
	if (!s || s > line + len) {
		snprintf(c->host, sizeof c->host, "other");
		return 1;
	}
	s += 4;
	n = strcspn(s, " \n");
	if (n >= sizeof c->host)
		return 0;
	memcpy(c->host, s, n);
	c->host[n] = '\0';
	if ((end = strstr(c->host, "/32")) && end[3] == '\0')
		*end = '\0';
	else if ((end = strstr(c->host, "/128")) && end[4] == '\0')
		*end = '\0';
	return 1;
}

int firewall_parse_counts(const char *text, struct fw_count *out, int max)
{
	int n = 0;

	while (*text && n < max) {
		size_t len = strcspn(text, "\n");
		n += parse_count_line(text, len, &out[n]);
		text += len;
		if (*text == '\n')
			text++;
	}
	return n;
}
