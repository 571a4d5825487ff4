/*
 * firewall.h - the packet filter's rule set, generated from the
 * configuration (docs/firewall.md). Pure functions over the config model:
 * they write iptables-restore / ip6tables-restore input into a caller's
 * buffer and never touch the kernel; `postern firewall apply` loads it.
 *
 * Router mode (the default): the WAN reaches nothing on the box but
 * replies and rate-limited ICMP; the LAN reaches the box's own services
 * only; LAN -> WAN is forwarded and masqueraded except the blocked mail
 * ports (TCP reset), foreign DNS (redirected to the box or rejected) and
 * DNS-over-TLS; per-host exceptions come from [firewall] allow. Blocked
 * attempts pass through the chain FW_CHAIN_COUNT (one counter per LAN
 * host) and a rate-limited LOG with FW_LOG_PREFIX.
 *
 * Single-interface mode ([firewall] single-interface yes): the box protects
 * only itself; firewall_office_rules() gives what the office router should
 * carry instead.
 */
#ifndef POSTERN_FIREWALL_H
#define POSTERN_FIREWALL_H

#include <stddef.h>

#include "config.h"

#define FW_RULES_MAX       (128 * 1024) /* bytes of one generated rule set */
#define FW_ERR_MAX         256          /* bytes of an error message */
#define FW_COUNT_HOSTS_MAX 1024         /* per-host counters: IPv4 up to /22, IPv6 ::1-::3ff */
#define FW_CHAIN_COUNT     "postern-count"
#define FW_CHAIN_BLOCK     "postern-block"
#define FW_LOG_PREFIX      "postern-fw blocked: "
#define FW_DNS_PORT        53
#define FW_DOT_PORT        853           /* DNS over TLS (RFC 7858) and QUIC (RFC 9250) */
#define FW_CHAIN_FALLBACK  "postern-fallback"
#define FW_STATUS_KIND     "firewall"    /* the status record (status.h) of the last */
#define FW_STATUS_NAME     "rules"       /* apply: result ok, or failed in fallback */

enum fw_family { FW_IPV4, FW_IPV6 };

/*
 * Writes the rule set for family (FW_IPV4: tables filter and nat;
 * FW_IPV6: filter) as iptables-restore input into buf (cap bytes,
 * NUL-terminated). The model must be valid (config_validate). Returns the
 * length, or -1 with a message in err (errcap bytes) when the model cannot
 * yield a rule set (WAN and LAN on one interface in router mode) or buf is
 * too small.
 */
int firewall_rules(const struct config *cfg, int family, char *buf, size_t cap,
                   char *err, size_t errcap);

/*
 * Single-interface mode: the rules the office router should carry, as
 * commented iptables-restore input (IPv4, tables filter and nat) with the
 * router's interfaces written WAN and LAN, the box as the only host allowed
 * to reach the blocked ports and foreign DNS, and foreign DNS redirected to
 * the box (hairpin NAT) or rejected. Returns the length, or -1 with err.
 */
int firewall_office_rules(const struct config *cfg, char *buf, size_t cap,
                          char *err, size_t errcap);

/*
 * The last-resort rule set, loaded when the generated one cannot be and no
 * rule set of ours is in force (docs/firewall.md "Fallback"): fixed text,
 * nothing from the configuration but the LAN interface's name. Nothing is
 * forwarded; the box accepts loopback, replies (conntrack) and, for IPv6,
 * neighbour discovery; from lan only the admin page (TCP 80, 443), DNS
 * (53) and, for IPv4, DHCP (67), so the admin can repair the
 * configuration. lan NULL, or not a plain interface name: the form without
 * names (nothing from the LAN either). Writes filter-table
 * iptables-restore input for family into buf; returns the length or -1
 * when cap is too small.
 */
int firewall_fallback_rules(int family, const char *lan, char *buf, size_t cap);

/* 1 when name is a plain interface name (1-15 bytes of [A-Za-z0-9._-]). */
int firewall_ifname_ok(const char *name);

/* One LAN host's blocked attempts, as counted by FW_CHAIN_COUNT. */
struct fw_count {
	char host[64];               /* "192.168.10.23", or a prefix for an aggregate */
	unsigned long long packets;
};

/*
 * Reads `iptables-save -c -t filter` (or ip6tables-save) output in text
 * (NUL-terminated) and stores the FW_CHAIN_COUNT counters with a non-zero
 * packet count into out (at most max entries), in rule order. Lines it
 * does not recognise are skipped. Returns the number stored.
 */
int firewall_parse_counts(const char *text, struct fw_count *out, int max);

/* The LAN interface the rules name: [lan] interface (the bridge's name
 * when bridge-ports are set). */
const char *firewall_lan_if(const struct config *cfg);

#endif
