/*
 * config-check.c - config_validate: the checks across settings (required
 * settings, a static WAN's gateway inside its prefix, the DHCP range inside
 * the LAN, TLS verification needs, ...) and the values derived from others.
 * Errors name file, line, section and setting (docs/CONFIG.md "Errors").
 */
#include "config.h"
#include "config-int.h"
#include "fsutil.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- validation ------------------------------------------------------------ */

struct vctx {
	struct config *cfg;
	const char *name;
	struct config_errors *errs;
};

/*
 * Reports an error about key (NULL: the section) of section s, on the line
 * of the setting at (or of key, or of the section header, in that order).
 */
static void vfail_at(struct vctx *v, int sd, const struct config_sect *s, const char *at,
                     const char *key, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void vfail_at(struct vctx *v, int sd, const struct config_sect *s, const char *at,
                     const char *key, const char *fmt, ...)
{
	char msg[CONFIG_ERROR_LEN];
	const char *try[2] = { at, key };
	int line = 0;
	va_list ap;

	for (int i = 0; i < 2 && !line; i++)
		if (try[i] && cfg_key_index(sd, try[i]) >= 0)
			line = cfg_doc_line(v->cfg->doc, sd, s->name, cfg_key_index(sd, try[i]));
	if (!line)
		line = cfg_doc_line(v->cfg->doc, sd, s->name, -1);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cfg_err_add(v->errs, v->name, line, sd, s->name, key, "%s", msg);
}

#define vfail(v, sd, s, key, ...) vfail_at(v, sd, s, NULL, key, __VA_ARGS__)

static int is_set(const struct config_sect *s, int sd, const char *key)
{
	return (int)(s->set >> cfg_key_index(sd, key) & 1);
}

/* 1 when a lies inside prefix p. */
static int prefix_has(const struct config_prefix *p, const struct config_addr *a)
{
	int full = p->len / 8, rest = p->len % 8;

	if (a->family != p->addr.family)
		return 0;
	if (memcmp(a->a, p->addr.a, (size_t)full) != 0)
		return 0;
	return rest == 0 || ((a->a[full] ^ p->addr.a[full]) & (0xff << (8 - rest))) == 0;
}

void cfg_derive(struct config *cfg)
{
	struct config_smarthost *h = &cfg->smarthost;

	if (!is_set(&h->h, SD_SMARTHOST, "port"))
		h->port = h->tls == CONFIG_SMTP_IMPLICIT ? 465 : 587;
	if (!is_set(&h->h, SD_SMARTHOST, "masquerade-domain"))
		snprintf(h->masquerade_domain, sizeof h->masquerade_domain, "%s",
		         cfg->global.mail_domain);
	for (int i = 0; i < cfg->naccounts; i++) {
		struct config_account *a = &cfg->account[i];
		if (!is_set(&a->h, SD_ACCOUNT, "port"))
			a->port = a->tls == CONFIG_POP_IMPLICIT ? 995 : 110;
	}
}

/* key must be set; cause (may be NULL) is the setting that demands it. */
static void check_required(struct vctx *v, int sd, const struct config_sect *s,
                           const char *key, const char *cause, const char *why)
{
	if (!is_set(s, sd, key))
		vfail_at(v, sd, s, cause, key, "required%s", why);
}

static void check_wan(struct vctx *v)
{
	const struct config_wan *w = &v->cfg->wan;
	char a[INET6_ADDRSTRLEN];

	if (v->cfg->firewall.single_interface || w->mode != CONFIG_WAN_STATIC)
		return;
	check_required(v, SD_WAN, &w->h, "address", "mode", " with mode static");
	check_required(v, SD_WAN, &w->h, "gateway", "mode", " with mode static");
	if (is_set(&w->h, SD_WAN, "address") && is_set(&w->h, SD_WAN, "gateway") &&
	    !prefix_has(&w->address, &w->gateway))
		vfail(v, SD_WAN, &w->h, "gateway", "%s is not inside the WAN prefix",
		      config_addr_str(&w->gateway, a, sizeof a));
}

static void check_lan_range(struct vctx *v)
{
	const struct config_lan *l = &v->cfg->lan;
	const struct config_range *r = &l->dhcp_range;
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];

	if (!is_set(&l->h, SD_LAN, "dhcp-range"))
		return;
	if (!prefix_has(&l->address, &r->first) || !prefix_has(&l->address, &r->last))
		vfail(v, SD_LAN, &l->h, "dhcp-range", "%s-%s is not inside the LAN prefix",
		      config_addr_str(&r->first, a, sizeof a), config_addr_str(&r->last, b, sizeof b));
	else if (memcmp(r->first.a, l->address.addr.a, 4) <= 0 &&
	         memcmp(l->address.addr.a, r->last.a, 4) <= 0)
		vfail(v, SD_LAN, &l->h, "dhcp-range", "the range holds the box's own address %s",
		      config_addr_str(&l->address.addr, a, sizeof a));
}

static void check_lan(struct vctx *v)
{
	const struct config_lan *l = &v->cfg->lan;
	char a[INET6_ADDRSTRLEN];

	if (l->address.addr.family != AF_INET)
		{ vfail(v, SD_LAN, &l->h, "address", "must be an IPv4 prefix "
		             "(an IPv6 one goes in address6)"); return; }
	if (l->address.len > 30 || l->address.len < 8)
		{ vfail(v, SD_LAN, &l->h, "address", "the prefix length must be /8 to /30"); return; }
	if (is_set(&l->h, SD_LAN, "address6") && l->address6.addr.family != AF_INET6)
		vfail(v, SD_LAN, &l->h, "address6", "must be an IPv6 prefix");
	check_lan_range(v);
	if (!v->cfg->firewall.single_interface)
		return;
	check_required(v, SD_LAN, &l->h, "gateway", NULL, " in single-interface mode");
	if (is_set(&l->h, SD_LAN, "gateway") && !prefix_has(&l->address, &l->gateway))
		vfail(v, SD_LAN, &l->h, "gateway", "%s is not inside the LAN prefix",
		      config_addr_str(&l->gateway, a, sizeof a));
}

/* Rules shared by accounts and the smart host: pin and credentials. */
static void check_tls_auth(struct vctx *v, int sd, const struct config_sect *s, int verify)
{
	if (verify == CONFIG_VERIFY_PIN)
		check_required(v, sd, s, "pin", "verify", " with verify pin");
	if (is_set(s, sd, "user") && !is_set(s, sd, "password-file"))
		vfail_at(v, sd, s, "user", "password-file", "required when user is set");
	if (is_set(s, sd, "password-file") && !is_set(s, sd, "user"))
		vfail_at(v, sd, s, "password-file", "user", "required when password-file is set");
}

static void check_smarthost(struct vctx *v)
{
	const struct config_smarthost *h = &v->cfg->smarthost;

	if (h->h.set == 0)
		return;                  /* no smart host: outbound mail stays queued */
	check_required(v, SD_SMARTHOST, &h->h, "host", NULL, "");
	check_tls_auth(v, SD_SMARTHOST, &h->h, h->verify);
	if (h->masquerade == CONFIG_MASQ_LOGIN && !is_set(&h->h, SD_SMARTHOST, "user"))
		vfail(v, SD_SMARTHOST, &h->h, "masquerade", "login needs user");
	if (h->masquerade == CONFIG_MASQ_DOMAIN && !h->masquerade_domain[0])
		vfail(v, SD_SMARTHOST, &h->h, "masquerade-domain", "required (or set mail-domain)");
}

static void check_account(struct vctx *v, const struct config_account *a)
{
	static const char *const req[] = { "server", "user", "password-file", "deliver-to" };

	for (size_t i = 0; i < LEN(req); i++)
		check_required(v, SD_ACCOUNT, &a->h, req[i], NULL, "");
	check_tls_auth(v, SD_ACCOUNT, &a->h, a->verify);
	if (strcmp(a->deliver_to, "multidrop") == 0 && !a->catch_all[0])
		vfail_at(v, SD_ACCOUNT, &a->h, "deliver-to", "catch-all",
		         "required when deliver-to is multidrop");
}

static void check_dns(struct vctx *v)
{
	const struct config_dns *d = &v->cfg->dns;

	if (d->transport == CONFIG_DNS_TLS) {
		check_required(v, SD_DNS, &d->h, "upstream", "transport", " with transport tls");
		if (!d->tls_name[0] && !is_set(&d->h, SD_DNS, "tls-pin"))
			vfail(v, SD_DNS, &d->h, "transport", "tls needs tls-name or tls-pin");
	}
	if (d->min_ttl > d->max_ttl)
		vfail(v, SD_DNS, &d->h, "min-ttl", "is larger than max-ttl");
	for (int i = 0; i < d->nhosts; i++)
		for (int j = 0; j < i; j++)
			if (strcasecmp(d->hosts[i].name, d->hosts[j].name) == 0) {
				vfail(v, SD_DNS, &d->h, "host", "%s is defined twice", d->hosts[i].name);
				j = i;
			}
}

int config_validate(struct config *cfg, const char *name, struct config_errors *errs)
{
	struct vctx v = { cfg, name, errs };
	int before = errs->count + errs->dropped;

	cfg_derive(cfg);
	check_required(&v, SD_GLOBAL, &cfg->global.h, "mail-domain", NULL,
	               " (the company's mail domain, like example.com)");
	check_wan(&v);
	check_lan(&v);
	if (cfg->smtp.port25 && cfg->smtp.nport25_hosts == 0)
		vfail_at(&v, SD_SMTP, &cfg->smtp.h, "port25", "port25-hosts",
		         "required when port25 is yes");
	check_smarthost(&v);
	for (int i = 0; i < cfg->naccounts; i++)
		check_account(&v, &cfg->account[i]);
	check_dns(&v);
	if (cfg->backup.enabled)
		check_required(&v, SD_BACKUP, &cfg->backup.h, "recipient", "enabled",
		               " when enabled is yes");
	return errs->count + errs->dropped > before ? -1 : 0;
}
