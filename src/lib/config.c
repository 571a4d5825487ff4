/*
 * config.c - postern.conf: parser, model, validation, serialisation, save.
 * The format and every setting are documented in docs/CONFIG.md; the API in
 * config.h.
 *
 * Shape: a table of sections, each with a table of keys (name, type,
 * storage offset, default). One value parser and one formatter per type
 * serve the file parser, config_set, config_get and the serialiser alike, so
 * a value the web page sets is checked by exactly the code that checks the
 * file. The source lines are kept (struct config_doc) so that saving keeps
 * comments and order.
 */
#include "config.h"
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

#define CONFIG_LINES_MAX   20000                 /* lines in one file */
#define CONFIG_WRAP        72                    /* list lines wrap after this */
#define DURATION_MAX       (10u * 366 * 86400)   /* ten years, in seconds */
#define SIZE_MAX_BYTES     (1ull << 40)          /* 1T */
#define VALUE_MAX          1024                  /* one formatted value or item */
#define CONFIG_FILE_MODE   0644
#define DEFAULT_CA_FILE    "/etc/ssl/certs/ca-certificates.crt"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- types and tables ---------------------------------------------------- */

enum type {
	T_STR, T_LABEL, T_NAME, T_DOMAIN, T_HOST, T_PORT, T_BOOL, T_ENUM,
	T_DURATION, T_SIZE, T_INT, T_ADDR, T_PREFIX, T_NET, T_PIN, T_SECRET,
	T_PATH, T_USER, T_IFNAME, T_AGEKEY, T_TIME, T_EXT, T_RCPT, T_DNSHOST,
	T_ALLOW, T_RANGE,
};

enum kind { K_SCALAR, K_LIST, K_REPEAT };

#define F_DERIVED 1   /* when unset, config_validate computes the value */

struct key {
	const char *name;
	enum type type;
	enum kind kind;
	size_t off, size;        /* storage in the section; size of one item */
	size_t count_off;        /* K_LIST, K_REPEAT: the int count */
	int max;                 /* K_LIST, K_REPEAT: capacity */
	int lo, hi;              /* T_INT range */
	const char *const *words;/* T_ENUM */
	const char *def;         /* default, as text; NULL: none */
	int flags;
};

#define FSIZE(S, f) sizeof(((S *)0)->f)
#define SCALAR(S, n, T, f, d) { .name = n, .type = T, .kind = K_SCALAR, \
	.off = offsetof(S, f), .size = FSIZE(S, f), .def = d }
#define DERIVED(S, n, T, f) { .name = n, .type = T, .kind = K_SCALAR, \
	.off = offsetof(S, f), .size = FSIZE(S, f), .flags = F_DERIVED }
#define ENUMK(S, n, f, w, d) { .name = n, .type = T_ENUM, .kind = K_SCALAR, \
	.off = offsetof(S, f), .size = FSIZE(S, f), .words = w, .def = d }
#define INTK(S, n, f, l, h, d) { .name = n, .type = T_INT, .kind = K_SCALAR, \
	.off = offsetof(S, f), .size = FSIZE(S, f), .lo = l, .hi = h, .def = d }
#define MULTI(K, S, n, T, f, c, d) { .name = n, .type = T, .kind = K, \
	.off = offsetof(S, f), .size = FSIZE(S, f[0]), .count_off = offsetof(S, c), \
	.max = (int)(FSIZE(S, f) / FSIZE(S, f[0])), .def = d }
#define LIST(S, n, T, f, c, d) MULTI(K_LIST, S, n, T, f, c, d)
#define REPEAT(S, n, T, f, c) MULTI(K_REPEAT, S, n, T, f, c, NULL)

static const char *const w_wan[] = { "dhcp", "static", NULL };
static const char *const w_pop[] = { "stls", "implicit", NULL };
static const char *const w_smtp[] = { "starttls", "implicit", NULL };
static const char *const w_verify[] = { "ca", "pin", NULL };
static const char *const w_unknown[] = { "reject", "relay", NULL };
static const char *const w_masq[] = { "domain", "login", "off", NULL };
static const char *const w_transport[] = { "udp", "tls", NULL };
static const char *const w_intercept[] = { "redirect", "reject", NULL };
static const char *const w_action[] = { "reject", "quarantine", NULL };
static const char *const w_spam[] = { "off", "tag", "quarantine", NULL };
static const char *const w_sched[] = { "daily", "weekly", NULL };

#define G struct config_global
static const struct key k_global[] = {
	SCALAR(G, "hostname", T_LABEL, hostname, "postern"),
	SCALAR(G, "mail-domain", T_DOMAIN, mail_domain, NULL),
	SCALAR(G, "internal-domain", T_DOMAIN, internal_domain, "office.lan"),
};
#undef G
#define W struct config_wan
static const struct key k_wan[] = {
	SCALAR(W, "interface", T_IFNAME, interface, "eth0"),
	ENUMK(W, "mode", mode, w_wan, "dhcp"),
	SCALAR(W, "address", T_PREFIX, address, NULL),
	SCALAR(W, "gateway", T_ADDR, gateway, NULL),
	LIST(W, "dns", T_ADDR, dns, ndns, NULL),
};
#undef W
#define L struct config_lan
static const struct key k_lan[] = {
	SCALAR(L, "interface", T_IFNAME, interface, "eth1"),
	LIST(L, "bridge-ports", T_IFNAME, bridge_ports, nbridge_ports, NULL),
	SCALAR(L, "address", T_PREFIX, address, "192.168.10.1/24"),
	SCALAR(L, "address6", T_PREFIX, address6, NULL),
	SCALAR(L, "gateway", T_ADDR, gateway, NULL),
	SCALAR(L, "dhcp", T_BOOL, dhcp, "yes"),
	SCALAR(L, "dhcp-range", T_RANGE, dhcp_range, NULL),
	SCALAR(L, "dhcp-lease", T_DURATION, dhcp_lease, "12h"),
};
#undef L
#define S struct config_smtp
static const struct key k_smtp[] = {
	SCALAR(S, "max-message-size", T_SIZE, max_message_size, "25M"),
	SCALAR(S, "port25", T_BOOL, port25, "no"),
	LIST(S, "port25-hosts", T_NET, port25_hosts, nport25_hosts, NULL),
	LIST(S, "port25-recipients", T_RCPT, port25_recipients, nport25_recipients, NULL),
	ENUMK(S, "unknown-recipients", unknown_recipients, w_unknown, "reject"),
};
#undef S
#define H struct config_smarthost
static const struct key k_smarthost[] = {
	SCALAR(H, "host", T_HOST, host, NULL),
	DERIVED(H, "port", T_PORT, port),
	ENUMK(H, "tls", tls, w_smtp, "starttls"),
	ENUMK(H, "verify", verify, w_verify, "ca"),
	SCALAR(H, "pin", T_PIN, pin, NULL),
	SCALAR(H, "ca-file", T_PATH, ca_file, DEFAULT_CA_FILE),
	SCALAR(H, "user", T_STR, user, NULL),
	SCALAR(H, "password-file", T_SECRET, password_file, NULL),
	ENUMK(H, "masquerade", masquerade, w_masq, "domain"),
	DERIVED(H, "masquerade-domain", T_DOMAIN, masquerade_domain),
	SCALAR(H, "give-up", T_DURATION, give_up, "4d"),
	SCALAR(H, "delay-notice", T_DURATION, delay_notice, "4h"),
};
#undef H
#define A struct config_account
static const struct key k_account[] = {
	SCALAR(A, "server", T_HOST, server, NULL),
	DERIVED(A, "port", T_PORT, port),
	ENUMK(A, "tls", tls, w_pop, "stls"),
	ENUMK(A, "verify", verify, w_verify, "ca"),
	SCALAR(A, "pin", T_PIN, pin, NULL),
	SCALAR(A, "ca-file", T_PATH, ca_file, DEFAULT_CA_FILE),
	SCALAR(A, "user", T_STR, user, NULL),
	SCALAR(A, "password-file", T_SECRET, password_file, NULL),
	SCALAR(A, "deliver-to", T_USER, deliver_to, NULL),
	SCALAR(A, "catch-all", T_USER, catch_all, NULL),
	SCALAR(A, "keep", T_BOOL, keep, "no"),
	SCALAR(A, "poll", T_DURATION, poll, "10m"),
	SCALAR(A, "max-size", T_SIZE, max_size, "50M"),
	SCALAR(A, "enabled", T_BOOL, enabled, "yes"),
};
#undef A
#define D struct config_dns
static const struct key k_dns[] = {
	LIST(D, "upstream", T_ADDR, upstream, nupstream, NULL),
	ENUMK(D, "transport", transport, w_transport, "udp"),
	SCALAR(D, "tls-name", T_NAME, tls_name, NULL),
	SCALAR(D, "tls-pin", T_PIN, tls_pin, NULL),
	SCALAR(D, "tls-port", T_PORT, tls_port, "853"),
	SCALAR(D, "cache-size", T_SIZE, cache_size, "4M"),
	SCALAR(D, "min-ttl", T_DURATION, min_ttl, "0s"),
	SCALAR(D, "max-ttl", T_DURATION, max_ttl, "1d"),
	LIST(D, "rebind-allow", T_NAME, rebind_allow, nrebind_allow, NULL),
	INTK(D, "rate-limit", rate_limit, 1, 100000, "200"),
	REPEAT(D, "host", T_DNSHOST, hosts, nhosts),
};
#undef D
#define F struct config_firewall
static const struct key k_firewall[] = {
	SCALAR(F, "single-interface", T_BOOL, single_interface, "no"),
	LIST(F, "blocked-ports", T_PORT, blocked_ports, nblocked_ports,
	     "25 465 587 2525 110 995 143 993"),
	ENUMK(F, "foreign-dns", foreign_dns, w_intercept, "redirect"),
	REPEAT(F, "allow", T_ALLOW, allow, nallow),
	SCALAR(F, "log-blocked", T_BOOL, log_blocked, "yes"),
};
#undef F
#define X struct config_filter
static const struct key k_filter[] = {
	LIST(X, "block-extensions", T_EXT, block_extensions, nblock_extensions,
	     "exe com scr pif bat cmd vbs vbe js jse wsf wsh msi msp hta cpl lnk jar ps1 reg scf"),
	ENUMK(X, "attachment-action", attachment_action, w_action, "quarantine"),
	ENUMK(X, "spam", spam, w_spam, "tag"),
	INTK(X, "spam-threshold", spam_threshold, 1, 100, "50"),
};
#undef X
#define B struct config_backup
static const struct key k_backup[] = {
	SCALAR(B, "enabled", T_BOOL, enabled, "no"),
	SCALAR(B, "recipient", T_AGEKEY, recipient, NULL),
	ENUMK(B, "schedule", schedule, w_sched, "daily"),
	SCALAR(B, "time", T_TIME, time, "03:00"),
	INTK(B, "keep", keep, 1, 365, "7"),
	SCALAR(B, "destination", T_PATH, destination, "/data/backup"),
};
#undef B

struct sect_desc {
	const char *name;        /* "" for the global settings */
	size_t off, size;        /* the (first) instance in struct config */
	int named;               /* [account NAME]: repeatable, in account[] */
	const struct key *keys;
	int nkeys;
};

enum { SD_GLOBAL, SD_WAN, SD_LAN, SD_SMTP, SD_SMARTHOST, SD_DNS, SD_FIREWALL,
       SD_FILTER, SD_BACKUP, SD_ACCOUNT, SD_COUNT };

#define SECT(n, f, k, named) { n, offsetof(struct config, f), \
	sizeof(((struct config *)0)->f), named, k, (int)LEN(k) }
static const struct sect_desc sects[SD_COUNT] = {
	SECT("", global, k_global, 0),
	SECT("wan", wan, k_wan, 0),
	SECT("lan", lan, k_lan, 0),
	SECT("smtp", smtp, k_smtp, 0),
	SECT("smarthost", smarthost, k_smarthost, 0),
	SECT("dns", dns, k_dns, 0),
	SECT("firewall", firewall, k_firewall, 0),
	SECT("filter", filter, k_filter, 0),
	SECT("backup", backup, k_backup, 0),
	{ "account", offsetof(struct config, account), sizeof(struct config_account),
	  1, k_account, (int)LEN(k_account) },
};

/* Instances: the SD_ACCOUNT fixed ones, then one per account. */
#define INSTANCES (SD_ACCOUNT + CONFIG_ACCOUNTS_MAX)

/* ---- the kept source ----------------------------------------------------- */

enum line_type { LN_BLANK, LN_COMMENT, LN_HEADER, LN_KEY };

/* One source line; offsets point into config_doc.src, which is unchanged. */
struct line {
	enum line_type type;
	size_t off, len;         /* comment text, or a key's trailing comment */
	size_t raw_off, raw_len; /* the whole line */
	size_t voff, vlen;       /* LN_KEY: the value as written */
	int ind, pad, cpad;      /* LN_KEY: indent; value and comment columns */
	int sd, key;             /* LN_HEADER, LN_KEY */
	char name[CONFIG_NAME_MAX + 1];
};

struct config_doc {
	char *src;
	struct line *lines;
	int nlines;
};

/* ---- errors --------------------------------------------------------------- */

static void err_clear(struct config_errors *errs)
{
	errs->count = 0;
	errs->dropped = 0;
}

/* Adds "name:line: context: key: message". name may be NULL, line 0. */
static int err_add(struct config_errors *errs, const char *name, int line,
                   int sd, const char *inst, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

static int err_add(struct config_errors *errs, const char *name, int line,
                    int sd, const char *inst, const char *key, const char *fmt, ...)
{
	char *t;
	size_t cap = CONFIG_ERROR_LEN, n = 0;
	va_list ap;

	if (errs->count >= CONFIG_ERRORS_MAX) {
		errs->dropped++;
		return -1;
	}
	errs->e[errs->count].line = line;
	t = errs->e[errs->count++].text;
	t[0] = '\0';
	if (name && line > 0)
		n += (size_t)snprintf(t, cap, "%s:%d: ", name, line);
	else if (name)
		n += (size_t)snprintf(t, cap, "%s: ", name);
	if (sd > SD_GLOBAL && n < cap)
		n += (size_t)(sects[sd].named
			? snprintf(t + n, cap - n, "%s \"%s\": ", sects[sd].name, inst)
			: snprintf(t + n, cap - n, "%s: ", sects[sd].name));
	if (key && n < cap)
		n += (size_t)snprintf(t + n, cap - n, "%s: ", key);
	if (n < cap) {
		va_start(ap, fmt);
		vsnprintf(t + n, cap - n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* ---- instances ------------------------------------------------------------ */

static struct config_sect *inst_at(const struct config *cfg, int sd, int idx)
{
	size_t off = sects[sd].off + (size_t)idx * sects[sd].size;
	return (struct config_sect *)((char *)cfg + off);
}

/* Index of the account named name, or -1. */
static int account_index(const struct config *cfg, const char *name)
{
	for (int i = 0; i < cfg->naccounts; i++)
		if (strcmp(cfg->account[i].h.name, name) == 0)
			return i;
	return -1;
}

/* The instance of section sd named name (fixed sections: name ignored). */
static struct config_sect *inst_find(const struct config *cfg, int sd, const char *name)
{
	int i = 0;

	if (sects[sd].named && (i = account_index(cfg, name)) < 0)
		return NULL;
	return inst_at(cfg, sd, i);
}

/* A slot number 0..INSTANCES-1 for bookkeeping, or -1. */
static int inst_slot(const struct config *cfg, int sd, const char *name)
{
	int i;

	if (!sects[sd].named)
		return sd;
	i = account_index(cfg, name);
	return i < 0 ? -1 : SD_ACCOUNT + i;
}

static void *field(const struct config_sect *s, const struct key *k)
{
	return (char *)s + k->off;
}

static int *count_of(const struct config_sect *s, const struct key *k)
{
	return (int *)((char *)s + k->count_off);
}

static int key_index(int sd, const char *name)
{
	for (int i = 0; i < sects[sd].nkeys; i++)
		if (strcmp(sects[sd].keys[i].name, name) == 0)
			return i;
	return -1;
}

static int sect_index(const char *name)
{
	for (int i = SD_GLOBAL + 1; i < SD_COUNT; i++)
		if (strcmp(sects[i].name, name) == 0)
			return i;
	return -1;
}

/* ---- value parsers: text -> storage, or -1 with a message --------------- */

#define PERR(...) (snprintf(err, cap, __VA_ARGS__), -1)

static int set_str(const struct key *k, const char *s, void *out, char *err, size_t cap)
{
	if (strlen(s) >= k->size)
		return PERR("value is too long (at most %zu bytes)", k->size - 1);
	snprintf(out, k->size, "%s", s);
	return 0;
}

static int label_ok(const char *s, size_t n)
{
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return 0;
	return 1;
}

/* Host name of one or more labels; returns the number of labels or 0. */
static int name_labels(const char *s)
{
	int labels = 0;
	size_t len = strlen(s);

	if (len == 0 || len > CONFIG_HOST_MAX)
		return 0;
	for (;;) {
		const char *dot = strchr(s, '.');
		size_t n = dot ? (size_t)(dot - s) : strlen(s);
		if (!label_ok(s, n))
			return 0;
		labels++;
		if (!dot)
			return labels;
		s = dot + 1;
	}
}

static int parse_addr_text(const char *s, struct config_addr *a)
{
	memset(a, 0, sizeof *a);
	if (inet_pton(AF_INET, s, a->a) == 1) {
		a->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, a->a) == 1) {
		a->family = AF_INET6;
		return 0;
	}
	return -1;
}

static int parse_prefix_text(const char *s, struct config_prefix *p, int need_len)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	char *end;
	long len;
	size_t n = slash ? (size_t)(slash - s) : strlen(s);

	if (n >= sizeof buf || (need_len && !slash))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (parse_addr_text(buf, &p->addr) < 0)
		return -1;
	p->len = p->addr.family == AF_INET ? 32 : 128;
	if (!slash)
		return 0;
	if (!isdigit((unsigned char)slash[1]))
		return -1;
	errno = 0;
	len = strtol(slash + 1, &end, 10);
	if (*end || errno || len < 0 || len > p->len)
		return -1;
	p->len = (int)len;
	return 0;
}

/* Reads a decimal number with an optional one-letter unit; -1 if malformed. */
static int number_unit(const char *s, unsigned long long *num, char *unit)
{
	unsigned long long v = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		if (v > (1ull << 50))
			return -1;
		v = v * 10 + (unsigned)(*s - '0');
	}
	*num = v;
	*unit = *s;
	return *s && s[1] ? -1 : 0;
}

static const struct { char c; unsigned long long mul; } dur_units[] = {
	{ 'w', 604800 }, { 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 },
};
static const struct { char c; unsigned long long mul; } size_units[] = {
	{ 'T', 1ull << 40 }, { 'G', 1ull << 30 }, { 'M', 1ull << 20 }, { 'K', 1ull << 10 },
};

static int parse_duration(const char *s, unsigned *out)
{
	unsigned long long v, mul = 0;
	char u;

	if (number_unit(s, &v, &u) < 0)
		return -1;
	for (size_t i = 0; i < LEN(dur_units); i++)
		if (u == dur_units[i].c)
			mul = dur_units[i].mul;
	if (u == '\0')
		mul = 1;
	if (mul == 0 || v > DURATION_MAX / mul)
		return -1;
	*out = (unsigned)(v * mul);
	return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
	unsigned long long v, mul = 0;
	char u;

	if (number_unit(s, &v, &u) < 0)
		return -1;
	for (size_t i = 0; i < LEN(size_units); i++)
		if (toupper((unsigned char)u) == size_units[i].c)
			mul = size_units[i].mul;
	if (u == '\0')
		mul = 1;
	if (mul == 0 || v > SIZE_MAX_BYTES / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int b64val(int c)
{
	static const char a[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(a, c) : NULL;
	return p ? (int)(p - a) : -1;
}

/* 64 hex digits, or 44 characters of base64 ("...=") of 32 bytes. */
static int parse_pin(const char *s, unsigned char out[32])
{
	size_t n = strlen(s);
	unsigned bits = 0, acc = 0, o = 0;

	if (n == 64) {
		for (size_t i = 0; i < 32; i++) {
			int h = hexval((unsigned char)s[2 * i]), l = hexval((unsigned char)s[2 * i + 1]);
			if (h < 0 || l < 0)
				return -1;
			out[i] = (unsigned char)(h << 4 | l);
		}
		return 0;
	}
	if (n != 44 || s[43] != '=')
		return -1;
	for (size_t i = 0; i < 43; i++) {
		int v = b64val((unsigned char)s[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* 43 * 6 = 258 bits: 32 bytes and 2 bits that must be zero. */
	return o == 32 && (acc & 3) == 0 ? 0 : -1;
}

/* One file name in the secrets directory (secret.h): no '/', no leading
 * '.', so a setting can never name a file elsewhere, a temp file or tls/. */
static int secret_ok(const char *s)
{
	if (!*s || strlen(s) > CONFIG_PATH_MAX || *s == '.' || strcmp(s, "tls") == 0)
		return 0;
	for (const char *c = s; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._-", *c))
			return 0;
	return 1;
}

/* Absolute path without "." or ".." components or odd characters. */
static int path_ok(const char *s)
{
	if (s[0] != '/' || strlen(s) > CONFIG_PATH_MAX || strstr(s, "//"))
		return 0;
	for (const char *c = s; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._-/+", *c))
			return 0;
	return !strstr(s, "/./") && !strstr(s, "/../") &&
	       strcmp(s + strlen(s) - 2, "/.") != 0 &&
	       (strlen(s) < 3 || strcmp(s + strlen(s) - 3, "/..") != 0);
}

static int user_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_NAME_MAX || !isalnum((unsigned char)s[0]))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
		      strchr("._-", s[i])))
			return 0;
	return 1;
}

static int ifname_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_IFNAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return 0;
	return 1;
}

static int agekey_ok(const char *s)
{
	static const char bech32[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

	if (strncmp(s, "age1", 4) != 0 || strlen(s) != 62)
		return 0;
	for (s += 4; *s; s++)
		if (!strchr(bech32, *s))
			return 0;
	return 1;
}

/* "user" (a local user) or "local@domain". */
static int rcpt_ok(const char *s)
{
	const char *at = strchr(s, '@');

	if (!at)
		return user_ok(s);
	if (at == s || at - s > 64 || name_labels(at + 1) < 2)
		return 0;
	for (const char *c = s; c < at; c++)
		if (!isalnum((unsigned char)*c) && !strchr(".!#$%&'*+/=?^_`{|}~-", *c))
			return 0;
	return 1;
}

static int str_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* Splits s in place at blanks into at most max words; -1 if more. */
static int split_words(char *s, char **w, int max)
{
	int n = 0;
	char *save = NULL;

	for (char *t = strtok_r(s, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		if (n == max)
			return -1;
		w[n++] = t;
	}
	return n;
}

static int parse_port(const char *s, uint16_t *out)
{
	unsigned long long v;
	char u;

	if (number_unit(s, &v, &u) < 0 || u || v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

static int parse_enum(const struct key *k, const char *s, int *out, char *err, size_t cap)
{
	size_t n;

	for (int i = 0; k->words[i]; i++)
		if (strcmp(s, k->words[i]) == 0) {
			*out = i;
			return 0;
		}
	n = (size_t)snprintf(err, cap, "%.80s is not one of:", s);
	for (int i = 0; k->words[i] && n < cap; i++)
		n += (size_t)snprintf(err + n, cap - n, "%s %s", i ? "," : "", k->words[i]);
	return -1;
}

static int parse_int(const struct key *k, const char *s, int *out, char *err, size_t cap)
{
	unsigned long long v;
	char u;

	if (number_unit(s, &v, &u) < 0 || u || v < (unsigned long long)k->lo ||
	    v > (unsigned long long)k->hi)
		return PERR("%.80s is not a number from %d to %d", s, k->lo, k->hi);
	*out = (int)v;
	return 0;
}

static int parse_time(const char *s, int *out)
{
	if (strlen(s) != 5 || s[2] != ':' || !isdigit((unsigned char)s[0]) ||
	    !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[3]) ||
	    !isdigit((unsigned char)s[4]))
		return -1;
	int h = (s[0] - '0') * 10 + s[1] - '0', m = (s[3] - '0') * 10 + s[4] - '0';
	if (h > 23 || m > 59)
		return -1;
	*out = h * 60 + m;
	return 0;
}

static int parse_ext(const char *s, char *out, size_t size)
{
	size_t n;

	if (*s == '.')
		s++;
	n = strlen(s);
	if (n == 0 || n >= size)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]))
			return -1;
		out[i] = (char)tolower((unsigned char)s[i]);
	}
	out[n] = '\0';
	return 0;
}

static int parse_dnshost(const char *s, struct config_dnshost *h, char *err, size_t cap)
{
	char buf[VALUE_MAX], *w[1 + CONFIG_HOSTADDRS_MAX];
	int n;

	snprintf(buf, sizeof buf, "%s", s);
	n = split_words(buf, w, (int)LEN(w));
	if (n < 2)
		return PERR("expected NAME ADDRESS [ADDRESS], got %.80s", s);
	if (!name_labels(w[0]) || strlen(w[0]) >= sizeof h->name)
		return PERR("%.80s is not a host name", w[0]);
	snprintf(h->name, sizeof h->name, "%s", w[0]);
	h->naddr = n - 1;
	for (int i = 1; i < n; i++)
		if (parse_addr_text(w[i], &h->addr[i - 1]) < 0)
			return PERR("%.80s is not an IP address", w[i]);
	return 0;
}

static int parse_allow(const char *s, struct config_allow *a, char *err, size_t cap)
{
	char buf[VALUE_MAX], *w[1 + CONFIG_PORTS_MAX];
	int n;

	snprintf(buf, sizeof buf, "%s", s);
	n = split_words(buf, w, (int)LEN(w));
	if (n < 1)
		return PERR("expected HOST [PORT...], got %.80s", s);
	if (parse_prefix_text(w[0], &a->net, 0) < 0)
		return PERR("%.80s is not an IP address or prefix", w[0]);
	a->nports = n - 1;
	for (int i = 1; i < n; i++)
		if (parse_port(w[i], &a->ports[i - 1]) < 0)
			return PERR("%.80s is not a port number (1-65535)", w[i]);
	return 0;
}

static int parse_range(const char *s, struct config_range *r, char *err, size_t cap)
{
	char buf[VALUE_MAX], *w[2];
	struct config_addr *a[2] = { &r->first, &r->last };

	snprintf(buf, sizeof buf, "%s", s);
	if (split_words(buf, w, 2) != 2)
		return PERR("expected FIRST LAST (two IPv4 addresses), got %.80s", s);
	for (int i = 0; i < 2; i++)
		if (parse_addr_text(w[i], a[i]) < 0 || a[i]->family != AF_INET)
			return PERR("%.80s is not an IPv4 address", w[i]);
	if (memcmp(r->first.a, r->last.a, 4) > 0)
		return PERR("the range starts after it ends");
	return 0;
}

/* Checks text s against a string type; 1 when valid. */
static int string_ok(enum type t, const char *s)
{
	switch (t) {
	case T_STR: return *s && str_ok(s);
	case T_LABEL: return name_labels(s) == 1;
	case T_NAME: return name_labels(s) > 0;
	case T_DOMAIN: return name_labels(s) > 1;
	case T_SECRET: return secret_ok(s);
	case T_PATH: return path_ok(s);
	case T_USER: return user_ok(s);
	case T_IFNAME: return ifname_ok(s);
	case T_AGEKEY: return agekey_ok(s);
	case T_RCPT: return rcpt_ok(s);
	case T_HOST: {
		struct config_addr a;
		return name_labels(s) > 0 || parse_addr_text(s, &a) == 0;
	}
	default: return 0;
	}
}

static const char *const string_msg[] = {
	[T_STR] = "contains a control character",
	[T_LABEL] = "is not a host name (one label of letters, digits and '-')",
	[T_NAME] = "is not a host name",
	[T_DOMAIN] = "is not a domain name (like example.com)",
	[T_HOST] = "is not a host name or IP address",
	[T_SECRET] = "is not a file name under the secrets directory (like acme.pass)",
	[T_PATH] = "is not an absolute path",
	[T_USER] = "is not a user name (lower-case letters, digits, '.', '_', '-')",
	[T_IFNAME] = "is not an interface name",
	[T_AGEKEY] = "is not an age public key (age1 followed by 58 characters)",
	[T_RCPT] = "is not a user name or mail address",
};

/* Parses one item of key k's type from s into out. */
static int parse_item(const struct key *k, const char *s, void *out, char *err, size_t cap)
{
	switch (k->type) {
	case T_PORT:
		return parse_port(s, out) < 0 ? PERR("%.80s is not a port number (1-65535)", s) : 0;
	case T_BOOL:
		if (strcmp(s, "yes") && strcmp(s, "no"))
			return PERR("%.80s is not yes or no", s);
		*(int *)out = strcmp(s, "yes") == 0;
		return 0;
	case T_ENUM: return parse_enum(k, s, out, err, cap);
	case T_INT: return parse_int(k, s, out, err, cap);
	case T_DURATION:
		return parse_duration(s, out) < 0
			? PERR("%.80s is not a duration (like 30s, 10m, 4h, 4d, 1w)", s) : 0;
	case T_SIZE:
		return parse_size(s, out) < 0 ? PERR("%.80s is not a size (like 512K, 25M, 1G)", s) : 0;
	case T_ADDR:
		return parse_addr_text(s, out) < 0 ? PERR("%.80s is not an IP address", s) : 0;
	case T_PREFIX:
		return parse_prefix_text(s, out, 1) < 0 ? PERR("%.80s is not an address with a "
			"prefix length (like 192.168.10.1/24)", s) : 0;
	case T_NET:
		return parse_prefix_text(s, out, 0) < 0
			? PERR("%.80s is not an IP address or prefix", s) : 0;
	case T_PIN:
		return parse_pin(s, out) < 0 ? PERR("%.80s is not a SHA-256 pin (64 hex digits "
			"or 44 characters of base64)", s) : 0;
	case T_TIME:
		return parse_time(s, out) < 0 ? PERR("%.80s is not a time of day (HH:MM)", s) : 0;
	case T_EXT:
		return parse_ext(s, out, k->size) < 0 ? PERR("%.80s is not a file extension "
			"(letters and digits, like exe)", s) : 0;
	case T_DNSHOST: return parse_dnshost(s, out, err, cap);
	case T_ALLOW: return parse_allow(s, out, err, cap);
	case T_RANGE: return parse_range(s, out, err, cap);
	default:
		if (!string_ok(k->type, s))
			return PERR("%.80s %s", s, string_msg[k->type]);
		return set_str(k, s, out, err, cap);
	}
}

/* ---- value formatters: storage -> text ----------------------------------- */

const char *config_addr_str(const struct config_addr *a, char *buf, size_t cap)
{
	if (!a->family || !inet_ntop(a->family, a->a, buf, (socklen_t)cap))
		snprintf(buf, cap, "%s", "");
	return buf;
}

static void fmt_prefix(const struct config_prefix *p, int short_host, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	int full = p->addr.family == AF_INET ? 32 : 128;

	config_addr_str(&p->addr, a, sizeof a);
	if (short_host && p->len == full)
		snprintf(buf, cap, "%s", a);
	else
		snprintf(buf, cap, "%s/%d", a, p->len);
}

static void fmt_scaled(unsigned long long v, int dur, char *buf, size_t cap)
{
	size_t n = dur ? LEN(dur_units) : LEN(size_units);

	for (size_t i = 0; i < n && v; i++) {
		unsigned long long mul = dur ? dur_units[i].mul : size_units[i].mul;
		char c = dur ? dur_units[i].c : size_units[i].c;
		if (v % mul == 0) {
			if (mul == 1)
				break;
			snprintf(buf, cap, "%llu%c", v / mul, c);
			return;
		}
	}
	snprintf(buf, cap, dur ? "%llus" : "%llu", v);
}

/* Appends to buf (cap bytes) at *n. */
static void cat(char *buf, size_t cap, size_t *n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void cat(char *buf, size_t cap, size_t *n, const char *fmt, ...)
{
	va_list ap;

	if (*n >= cap)
		return;
	va_start(ap, fmt);
	*n += (size_t)vsnprintf(buf + *n, cap - *n, fmt, ap);
	va_end(ap);
}

static void fmt_dnshost(const struct config_dnshost *h, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	size_t n = 0;

	cat(buf, cap, &n, "%s", h->name);
	for (int i = 0; i < h->naddr; i++)
		cat(buf, cap, &n, " %s", config_addr_str(&h->addr[i], a, sizeof a));
}

static void fmt_allow(const struct config_allow *al, char *buf, size_t cap)
{
	size_t n;

	fmt_prefix(&al->net, 1, buf, cap);
	n = strlen(buf);
	for (int i = 0; i < al->nports; i++)
		cat(buf, cap, &n, " %u", al->ports[i]);
}

static void format_item(const struct key *k, const void *v, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	const struct config_range *r = v;
	const unsigned char *pin = v;

	switch (k->type) {
	case T_PORT: snprintf(buf, cap, "%u", *(const uint16_t *)v); break;
	case T_BOOL: snprintf(buf, cap, "%s", *(const int *)v ? "yes" : "no"); break;
	case T_ENUM: snprintf(buf, cap, "%s", k->words[*(const int *)v]); break;
	case T_INT: snprintf(buf, cap, "%d", *(const int *)v); break;
	case T_DURATION: fmt_scaled(*(const unsigned *)v, 1, buf, cap); break;
	case T_SIZE: fmt_scaled(*(const uint64_t *)v, 0, buf, cap); break;
	case T_ADDR: config_addr_str(v, buf, cap); break;
	case T_PREFIX: fmt_prefix(v, 0, buf, cap); break;
	case T_NET: fmt_prefix(v, 1, buf, cap); break;
	case T_TIME: snprintf(buf, cap, "%02d:%02d", *(const int *)v / 60, *(const int *)v % 60); break;
	case T_DNSHOST: fmt_dnshost(v, buf, cap); break;
	case T_ALLOW: fmt_allow(v, buf, cap); break;
	case T_RANGE:
		snprintf(buf, cap, "%s %s", config_addr_str(&r->first, a, sizeof a),
		         config_addr_str(&r->last, b, sizeof b));
		break;
	case T_PIN:
		for (size_t i = 0; i < 32 && 2 * i + 2 < cap; i++)
			snprintf(buf + 2 * i, 3, "%02x", pin[i]);
		break;
	default: snprintf(buf, cap, "%s", (const char *)v); break;
	}
}

/* ---- assigning values ----------------------------------------------------- */

union scratch {
	unsigned char b[VALUE_MAX];
	uint64_t u;
	struct config_range r;
};

static int assign_scalar(const struct key *k, struct config_sect *s, const char *text,
                         char *err, size_t cap)
{
	union scratch tmp;

	memset(&tmp, 0, sizeof tmp);
	if (parse_item(k, text, &tmp, err, cap) < 0)
		return -1;
	memcpy(field(s, k), &tmp, k->size);
	return 0;
}

static int assign_one(const struct key *k, struct config_sect *s, const char *text,
                      char *err, size_t cap)
{
	int *count = count_of(s, k);
	char *item = (char *)field(s, k) + (size_t)*count * k->size;

	if (*count >= k->max)
		return PERR("too many %s (at most %d)",
		            k->kind == K_LIST ? "values" : "entries", k->max);
	memset(item, 0, k->size);
	if (parse_item(k, text, item, err, cap) < 0)
		return -1;
	(*count)++;
	return 0;
}

/*
 * Parses text into key k of section s: a scalar replaces, a list takes the
 * words of text, a repeatable key one entry. With append 0 a list or
 * repeatable key is emptied first.
 */
static int assign(const struct key *k, struct config_sect *s, const char *text,
                  int append, char *err, size_t cap)
{
	char buf[CONFIG_LINE_MAX + 1], *save = NULL;

	if (k->kind == K_SCALAR)
		return assign_scalar(k, s, text, err, cap);
	if (!append)
		*count_of(s, k) = 0;
	if (k->kind == K_REPEAT)
		return assign_one(k, s, text, err, cap);
	snprintf(buf, sizeof buf, "%s", text);
	for (char *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
		if (assign_one(k, s, w, err, cap) < 0)
			return -1;
	return 0;
}

/* Puts key k of s back to its default and marks it unset. */
static void reset_key(const struct key *k, int ki, struct config_sect *s)
{
	char err[CONFIG_ERROR_LEN];

	if (k->kind == K_SCALAR) {
		memset(field(s, k), 0, k->size);
	} else {
		memset(field(s, k), 0, k->size * (size_t)k->max);
		*count_of(s, k) = 0;
	}
	if (k->def)
		(void)assign(k, s, k->def, 0, err, sizeof err);  /* defaults are valid */
	s->set &= ~(1ull << ki);
}

static void init_section(int sd, struct config_sect *s, const char *name)
{
	memset(s, 0, sects[sd].size);
	snprintf(s->name, sizeof s->name, "%s", name);
	for (int i = 0; i < sects[sd].nkeys; i++)
		reset_key(&sects[sd].keys[i], i, s);
}

struct config *config_new(void)
{
	struct config *cfg = calloc(1, sizeof *cfg);

	if (!cfg)
		return NULL;
	for (int sd = 0; sd < SD_ACCOUNT; sd++)
		init_section(sd, inst_at(cfg, sd, 0), "");
	return cfg;
}

static void doc_free(struct config_doc *d)
{
	if (!d)
		return;
	free(d->src);
	free(d->lines);
	free(d);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	doc_free(cfg->doc);
	free(cfg);
}

/* Valid account name: letters, digits, '.', '_', '-'; at most 32. */
static int account_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return 0;
	return 1;
}

/* Appends a new account with defaults; NULL when full. */
static struct config_account *account_add(struct config *cfg, const char *name)
{
	struct config_account *a;

	if (cfg->naccounts >= CONFIG_ACCOUNTS_MAX)
		return NULL;
	a = &cfg->account[cfg->naccounts++];
	init_section(SD_ACCOUNT, &a->h, name);
	return a;
}

/* ---- the parser ------------------------------------------------------------ */

struct parser {
	struct config *cfg;
	const char *name;             /* the file, for messages */
	struct config_errors *errs;
	int line;                     /* 1-based */
	int sd;                       /* current section; -1: skipping a bad one */
	struct config_sect *s;
	int seen[SD_ACCOUNT];         /* line of each fixed section's header */
};

/* Line number of the first source line for (sd, name, key); key -1: the
 * header. 0 when there is none. */
static int doc_line(const struct config_doc *d, int sd, const char *name, int key)
{
	if (!d)
		return 0;
	for (int i = 0; i < d->nlines; i++) {
		const struct line *l = &d->lines[i];
		if (l->type == (key < 0 ? LN_HEADER : LN_KEY) && l->sd == sd &&
		    (key < 0 || l->key == key) && strcmp(l->name, name) == 0)
			return i + 1;
	}
	return 0;
}

#define PFAIL(p, sd, key, ...) err_add((p)->errs, (p)->name, (p)->line, sd, \
	(p)->s ? (p)->s->name : "", key, __VA_ARGS__)

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}

/* Cuts a trailing " # comment" off s; returns the comment or NULL. */
static char *cut_comment(char *s)
{
	for (char *c = s + 1; *s && *c; c++)
		if (*c == '#' && (c[-1] == ' ' || c[-1] == '\t')) {
			c[-1] = '\0';
			return c;
		}
	return NULL;
}

/* Records where a trailing comment (at c in the line copy buf) lies in src. */
static void note_comment(struct line *l, const char *buf, const char *c)
{
	if (!c)
		return;
	l->off = l->raw_off + (size_t)(c - buf);
	l->len = strlen(c);
}

/* Opens a named section instance; returns it or NULL after an error. */
static struct config_sect *open_named(struct parser *p, int sd, const char *name)
{
	int i;
	struct config_account *a;

	if (!*name)
		return PFAIL(p, 0, NULL, "[%s] needs a name: [%s NAME]", sects[sd].name,
		             sects[sd].name), NULL;
	if (!account_name_ok(name))
		return PFAIL(p, 0, NULL, "%s name %.40s: use letters, digits, '.', '_' and '-' "
		             "(at most %d)", sects[sd].name, name, CONFIG_NAME_MAX), NULL;
	if ((i = account_index(p->cfg, name)) >= 0) {
		p->s = &p->cfg->account[i].h;
		return PFAIL(p, sd, NULL, "defined twice (first on line %d)",
		             doc_line(p->cfg->doc, sd, name, -1)), NULL;
	}
	if (!(a = account_add(p->cfg, name)))
		return PFAIL(p, 0, NULL, "too many accounts (at most %d)", CONFIG_ACCOUNTS_MAX), NULL;
	return &a->h;
}

/* Opens a fixed section; NULL after an error. */
static struct config_sect *open_fixed(struct parser *p, int sd, const char *name)
{
	if (*name)
		return PFAIL(p, 0, NULL, "[%s] takes no name", sects[sd].name), NULL;
	if (p->seen[sd])
		return PFAIL(p, 0, NULL, "section [%s] appears twice (first on line %d)",
		             sects[sd].name, p->seen[sd]), NULL;
	p->seen[sd] = p->line;
	return inst_at(p->cfg, sd, 0);
}

static int parse_header(struct parser *p, struct line *l, char *buf, char *text)
{
	char *close = strchr(text, ']'), *rest, *kind, *name;
	int sd;

	p->sd = -1;
	p->s = NULL;
	if (!close)
		return PFAIL(p, 0, NULL, "section header needs a closing ]");
	*close = '\0';
	rest = close + 1;
	note_comment(l, buf, cut_comment(rest));
	if (*trim(rest))
		return PFAIL(p, 0, NULL, "unexpected text after ]: %.40s", trim(rest));
	kind = trim(text + 1);
	name = kind + strcspn(kind, " \t");
	if (*name)
		*name++ = '\0';
	name = trim(name);
	if ((sd = sect_index(kind)) < 0)
		return PFAIL(p, 0, NULL, "unknown section [%.40s]", kind);
	p->s = sects[sd].named ? open_named(p, sd, name) : open_fixed(p, sd, name);
	if (!p->s)
		return -1;
	p->sd = sd;
	l->type = LN_HEADER;
	l->sd = sd;
	snprintf(l->name, sizeof l->name, "%s", p->s->name);
	return 0;
}

static int parse_setting(struct parser *p, struct line *l, char *buf, char *text)
{
	char err[CONFIG_ERROR_LEN], *value, *comment;
	const struct key *k;
	int ki, sd = p->sd;

	if (sd < 0)
		return -1;                   /* inside a broken header: already reported */
	comment = cut_comment(text);
	note_comment(l, buf, comment);
	value = text + strcspn(text, " \t");
	if (*value)
		*value++ = '\0';
	value = trim(value);
	l->ind = (int)(text - buf);
	l->pad = (int)(value - text);
	l->cpad = comment ? (int)(comment - text) : 0;
	l->voff = l->raw_off + (size_t)(value - buf);
	l->vlen = strlen(value);
	if ((ki = key_index(sd, text)) < 0)
		return PFAIL(p, sd, NULL, "unknown setting \"%.40s\"", text);
	k = &sects[sd].keys[ki];
	if (!*value)
		return PFAIL(p, sd, k->name, "needs a value");
	if (k->kind == K_SCALAR && (p->s->set >> ki & 1))
		return PFAIL(p, sd, k->name, "set twice (first on line %d)",
		                   doc_line(p->cfg->doc, sd, p->s->name, ki));
	if (assign(k, p->s, value, (int)(p->s->set >> ki & 1), err, sizeof err) < 0)
		return PFAIL(p, sd, k->name, "%s", err);
	p->s->set |= 1ull << ki;
	l->type = LN_KEY;
	l->sd = sd;
	l->key = ki;
	snprintf(l->name, sizeof l->name, "%s", p->s->name);
	return 0;
}

/* Parses the line of n bytes at src + off (src itself is left unchanged). */
static int parse_line(struct parser *p, struct line *l, const char *src, size_t off, size_t n)
{
	char buf[CONFIG_LINE_MAX + 1], *t;

	l->type = LN_BLANK;
	l->raw_off = off;
	l->raw_len = n;
	if (n > CONFIG_LINE_MAX)
		return PFAIL(p, 0, NULL, "line is too long (more than %d bytes)",
		             CONFIG_LINE_MAX);
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)src[off + i] < 0x20 && src[off + i] != '\t') ||
		    src[off + i] == 0x7f)
			return PFAIL(p, 0, NULL, "line contains a control character");
	memcpy(buf, src + off, n);
	buf[n] = '\0';
	t = trim(buf);
	if (*t == '\0')
		return 0;
	if (*t == '[')
		return parse_header(p, l, buf, t);
	if (*t != '#')
		return parse_setting(p, l, buf, t);
	l->type = LN_COMMENT;
	l->off = off + (size_t)(t - buf);
	l->len = strlen(t);
	return 0;
}

/* Splits the source into lines and parses each. */
static void parse_doc(struct parser *p, const struct config_doc *d, size_t len)
{
	size_t start = 0;

	for (int i = 0; i < d->nlines; i++) {
		const char *nl = memchr(d->src + start, '\n', len - start);
		size_t end = nl ? (size_t)(nl - d->src) : len, n = end - start;
		if (n > 0 && d->src[end - 1] == '\r')
			n--;
		p->line = i + 1;
		parse_line(p, &d->lines[i], d->src, start, n);
		start = end + 1;
	}
}

static int count_lines(const char *buf, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += buf[i] == '\n';
	if (len > 0 && buf[len - 1] != '\n')
		n++;
	return n > CONFIG_LINES_MAX ? -1 : (int)n;
}

static struct config_doc *doc_new(const char *buf, size_t len, int nlines)
{
	struct config_doc *d = calloc(1, sizeof *d);

	if (!d)
		return NULL;
	d->src = malloc(len + 1);
	d->lines = calloc((size_t)nlines + 1, sizeof *d->lines);
	if (!d->src || !d->lines) {
		doc_free(d);
		return NULL;
	}
	memcpy(d->src, buf, len);
	d->src[len] = '\0';
	d->nlines = nlines;
	return d;
}

struct config *config_parse(const char *name, const char *buf, size_t len,
                            struct config_errors *errs)
{
	struct parser p = { .name = name, .errs = errs };
	int nlines = len > CONFIG_FILE_MAX ? -1 : count_lines(buf, len);

	err_clear(errs);
	if (nlines < 0) {
		err_add(errs, name, 0, 0, "", NULL, "file is too large (more than %d bytes or "
		        "%d lines)", CONFIG_FILE_MAX, CONFIG_LINES_MAX);
		return NULL;
	}
	p.cfg = config_new();
	if (!p.cfg || !(p.cfg->doc = doc_new(buf, len, nlines))) {
		err_add(errs, name, 0, 0, "", NULL, "out of memory");
		config_free(p.cfg);
		return NULL;
	}
	p.s = &p.cfg->global.h;
	parse_doc(&p, p.cfg->doc, len);
	if (errs->count == 0 && errs->dropped == 0)
		config_validate(p.cfg, name, errs);
	if (errs->count || errs->dropped) {
		config_free(p.cfg);
		return NULL;
	}
	return p.cfg;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
	char *buf = malloc(CONFIG_FILE_MAX + 1);
	struct config *cfg;
	ssize_t n;

	err_clear(errs);
	if (!buf) {
		err_add(errs, path, 0, 0, "", NULL, "out of memory");
		return NULL;
	}
	n = fs_read_file(path, buf, CONFIG_FILE_MAX);
	if (n < 0) {
		err_add(errs, path, 0, 0, "", NULL, "cannot read: %s",
		        errno == EFBIG ? "file is too large" : strerror(errno));
		free(buf);
		return NULL;
	}
	cfg = config_parse(path, buf, (size_t)n, errs);
	free(buf);
	return cfg;
}

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
		if (try[i] && key_index(sd, try[i]) >= 0)
			line = doc_line(v->cfg->doc, sd, s->name, key_index(sd, try[i]));
	if (!line)
		line = doc_line(v->cfg->doc, sd, s->name, -1);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	err_add(v->errs, v->name, line, sd, s->name, key, "%s", msg);
}

#define vfail(v, sd, s, key, ...) vfail_at(v, sd, s, NULL, key, __VA_ARGS__)

static int is_set(const struct config_sect *s, int sd, const char *key)
{
	return (int)(s->set >> key_index(sd, key) & 1);
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

static void derive(struct config *cfg)
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

	derive(cfg);
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

/* ---- serialisation --------------------------------------------------------- */

static int get_value(const struct key *k, const struct config_sect *s, int ki,
                     char *buf, size_t cap);

struct emitter {
	char *buf;
	size_t cap, n;
};

static void emit(struct emitter *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct emitter *e, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (e->n >= e->cap)
		return;
	va_start(ap, fmt);
	r = vsnprintf(e->buf + e->n, e->cap - e->n, fmt, ap);
	va_end(ap);
	e->n += r < 0 ? e->cap : (size_t)r;
}

/*
 * Where a rewritten setting goes: the source line it replaces (its indent,
 * value column and trailing comment are kept) or none (a new line).
 */
struct layout {
	const struct config_doc *d;
	const struct line *l;
};

/* Writes "key value"; with a layout, in the old line's columns and with
 * its comment, unless the line would get too long. */
static void emit_line(struct emitter *e, const char *key, const char *value,
                      const struct layout *lay)
{
	const struct line *l = lay ? lay->l : NULL;
	int klen = (int)strlen(key), pad = l && l->pad > klen ? l->pad : klen + 1;
	int width = pad + (int)strlen(value), ind = l ? l->ind : 0;

	if (ind + width > CONFIG_LINE_MAX) {   /* the old columns do not fit */
		ind = 0;
		pad = klen + 1;
		width = pad + (int)strlen(value);
	}

	emit(e, "%.*s%-*s%s", ind, l ? lay->d->src + l->raw_off : "", pad, key, value);
	if (l && l->len && ind + width + 1 + (int)l->len <= CONFIG_LINE_MAX)
		emit(e, "%*s%.*s", l->cpad > width ? l->cpad - width : 1, "",
		     (int)l->len, lay->d->src + l->off);
	emit(e, "\n");
}

static void emit_list(struct emitter *e, const struct key *k, const struct config_sect *s,
                      const struct layout *lay)
{
	char line[VALUE_MAX], v[VALUE_MAX];
	size_t n = 0;
	int count = *count_of(s, k);

	for (int i = 0; i < count; i++) {
		format_item(k, (char *)field(s, k) + (size_t)i * k->size, v, sizeof v);
		if (n > 0 && n + 1 + strlen(v) > CONFIG_WRAP) {
			emit_line(e, k->name, line, lay);
			lay = NULL;
			n = 0;
		}
		n += (size_t)snprintf(line + n, sizeof line - n, "%s%s", n ? " " : "", v);
	}
	if (n > 0)
		emit_line(e, k->name, line, lay);
}

/* Writes every line of key k; lay (may be NULL) is the source line it replaces. */
static void emit_key(struct emitter *e, const struct key *k, const struct config_sect *s,
                     const struct layout *lay)
{
	char v[VALUE_MAX];

	if (k->kind == K_LIST) {
		emit_list(e, k, s, lay);
		return;
	}
	if (k->kind == K_SCALAR) {
		format_item(k, field(s, k), v, sizeof v);
		emit_line(e, k->name, v, lay);
		return;
	}
	for (int i = 0; i < *count_of(s, k); i++) {
		format_item(k, (char *)field(s, k) + (size_t)i * k->size, v, sizeof v);
		emit_line(e, k->name, v, i == 0 ? lay : NULL);
	}
}

/* The next source line after l for the same setting, or NULL. */
static const struct line *next_same(const struct config_doc *d, const struct line *l)
{
	for (const struct line *n = l + 1; n < d->lines + d->nlines; n++)
		if (n->type == LN_KEY && n->sd == l->sd && n->key == l->key &&
		    strcmp(n->name, l->name) == 0)
			return n;
	return NULL;
}

/* Writes line l's text when it still says v, else "key v" in l's columns. */
static void emit_item(struct emitter *e, const struct config_doc *d, const struct line *l,
                      const struct key *k, const char *v)
{
	struct layout lay = { d, l };

	if (strlen(v) == l->vlen && memcmp(v, d->src + l->voff, l->vlen) == 0)
		emit(e, "%.*s\n", (int)l->raw_len, d->src + l->raw_off);
	else
		emit_line(e, k->name, v, &lay);
}

/*
 * Writes key k of s where its first source line l was: lines whose value is
 * unchanged are copied as they were; entries of a repeatable setting reuse
 * the setting's source lines in order.
 */
static void emit_doc_key(struct emitter *e, const struct config_doc *d, const struct line *l,
                         const struct key *k, const struct config_sect *s)
{
	char v[VALUE_MAX];
	struct layout lay = { d, l };
	struct line plain;

	if (k->kind != K_REPEAT) {
		if (get_value(k, s, l->key, v, sizeof v) >= 0 && strlen(v) == l->vlen &&
		    memcmp(v, d->src + l->voff, l->vlen) == 0)
			emit(e, "%.*s\n", (int)l->raw_len, d->src + l->raw_off);
		else
			emit_key(e, k, s, &lay);   /* lists wrap over several lines */
		return;
	}
	plain = *l;
	plain.len = 0;                   /* extra entries: l's columns, no comment */
	for (int i = 0; i < *count_of(s, k); i++) {
		format_item(k, (char *)field(s, k) + (size_t)i * k->size, v, sizeof v);
		if (l) {
			emit_item(e, d, l, k, v);
			l = next_same(d, l);
		} else {
			lay.l = &plain;
			emit_line(e, k->name, v, &lay);
		}
	}
}

struct fmt_state {
	struct emitter e;
	const struct config *cfg;
	const struct config_doc *doc;
	uint64_t emitted[INSTANCES];
	int header_done[INSTANCES];
	int cur;                 /* slot of the current section; -1: removed */
	int pending;             /* first unwritten comment/blank line; -1: none */
};

static int slot_sd(int slot)
{
	return slot < SD_ACCOUNT ? slot : SD_ACCOUNT;
}

static const struct config_sect *slot_inst(const struct config *cfg, int slot)
{
	return slot < SD_ACCOUNT ? inst_at(cfg, slot, 0) : inst_at(cfg, SD_ACCOUNT, slot - SD_ACCOUNT);
}

/* Writes the keys of slot that are set but not yet written. */
static void flush_missing(struct fmt_state *st, int slot)
{
	int sd = slot_sd(slot);
	const struct config_sect *s = slot_inst(st->cfg, slot);

	for (int ki = 0; ki < sects[sd].nkeys; ki++)
		if ((s->set >> ki & 1) && !(st->emitted[slot] >> ki & 1)) {
			emit_key(&st->e, &sects[sd].keys[ki], s, NULL);
			st->emitted[slot] |= 1ull << ki;
		}
}

static void emit_pending(struct fmt_state *st, int upto, int keep)
{
	for (int i = st->pending; keep && i >= 0 && i < upto; i++) {
		const struct line *l = &st->doc->lines[i];
		if (l->type == LN_COMMENT)
			emit(&st->e, "%.*s\n", (int)l->len, st->doc->src + l->off);
		else
			emit(&st->e, "\n");
	}
	st->pending = -1;
}

static void emit_header(struct emitter *e, int slot, const struct config_sect *s,
                        const char *comment, size_t clen)
{
	int sd = slot_sd(slot);

	if (sects[sd].named)
		emit(e, "[%s %s]", sects[sd].name, s->name);
	else
		emit(e, "[%s]", sects[sd].name);
	if (comment)
		emit(e, " %.*s", (int)clen, comment);
	emit(e, "\n");
}

static void fmt_line(struct fmt_state *st, int i)
{
	const struct line *l = &st->doc->lines[i];
	const char *comment = l->len ? st->doc->src + l->off : NULL;
	int slot;

	if (l->type == LN_BLANK || l->type == LN_COMMENT) {
		if (st->pending < 0)
			st->pending = i;
	} else if (l->type == LN_HEADER) {
		if (st->cur >= 0)
			flush_missing(st, st->cur);
		emit_pending(st, i, st->cur >= 0);
		slot = inst_slot(st->cfg, l->sd, l->name);
		st->cur = slot >= 0 && !st->header_done[slot] ? slot : -1;
		if (st->cur >= 0) {
			st->header_done[slot] = 1;
			emit_header(&st->e, slot, slot_inst(st->cfg, slot), comment, l->len);
		}
	} else if (st->cur >= 0) {
		const struct config_sect *s = slot_inst(st->cfg, st->cur);
		emit_pending(st, i, 1);
		if ((s->set >> l->key & 1) && !(st->emitted[st->cur] >> l->key & 1)) {
			emit_doc_key(&st->e, st->doc, l, &sects[l->sd].keys[l->key], s);
			st->emitted[st->cur] |= 1ull << l->key;
		}
	} else {
		st->pending = -1;        /* a setting of a removed section */
	}
}

int config_format(const struct config *cfg, char *buf, size_t cap)
{
	struct fmt_state *st = calloc(1, sizeof *st);
	int nslots = SD_ACCOUNT + cfg->naccounts, n;

	if (!st || cap == 0) {
		free(st);
		return -1;
	}
	st->e = (struct emitter){ buf, cap, 0 };
	st->cfg = cfg;
	st->doc = cfg->doc;
	st->pending = -1;
	st->cur = SD_GLOBAL;
	st->header_done[SD_GLOBAL] = 1;
	for (int i = 0; st->doc && i < st->doc->nlines; i++)
		fmt_line(st, i);
	if (st->cur >= 0)
		flush_missing(st, st->cur);
	emit_pending(st, st->doc ? st->doc->nlines : 0, st->cur >= 0);
	for (int slot = 0; slot < nslots; slot++) {
		const struct config_sect *s = slot_inst(cfg, slot);
		if (st->header_done[slot] || (slot < SD_ACCOUNT && !s->set))
			continue;
		if (st->e.n > 0)
			emit(&st->e, "\n");
		emit_header(&st->e, slot, s, NULL, 0);
		flush_missing(st, slot);
	}
	n = st->e.n < cap ? (int)st->e.n : -1;
	free(st);
	return n;
}

/* ---- get, set, unset ------------------------------------------------------ */

struct keyref {
	int sd, ki;                          /* ki -1: the section itself */
	char name[CONFIG_NAME_MAX + 1];
};

/* Resolves "key", "section.key", "account.NAME" or "account.NAME.key". */
static int resolve(const char *key, struct keyref *r)
{
	const char *dot = strchr(key, '.'), *last = strrchr(key, '.');
	char sect[16];
	size_t n;

	memset(r, 0, sizeof *r);
	if (!dot) {
		r->ki = key_index(SD_GLOBAL, key);
		return r->ki < 0 ? -1 : 0;
	}
	n = (size_t)(dot - key);
	if (n >= sizeof sect)
		return -1;
	memcpy(sect, key, n);
	sect[n] = '\0';
	if ((r->sd = sect_index(sect)) < 0)
		return -1;
	if (!sects[r->sd].named) {
		r->ki = key_index(r->sd, dot + 1);
		return r->ki < 0 ? -1 : 0;
	}
	if (last == dot)
		last = key + strlen(key);    /* "account.NAME" */
	n = (size_t)(last - dot - 1);
	if (n == 0 || n > CONFIG_NAME_MAX)
		return -1;
	memcpy(r->name, dot + 1, n);
	r->name[n] = '\0';
	r->ki = *last ? key_index(r->sd, last + 1) : -1;
	return *last && r->ki < 0 ? -1 : 0;
}

/* Text of key k in s: list items joined by spaces, entries by newlines. */
static int get_value(const struct key *k, const struct config_sect *s, int ki,
                     char *buf, size_t cap)
{
	char v[VALUE_MAX];
	size_t n = 0;

	buf[0] = '\0';
	if (k->kind == K_SCALAR) {
		if ((s->set >> ki & 1) || k->def || (k->flags & F_DERIVED))
			format_item(k, field(s, k), v, sizeof v);
		else
			v[0] = '\0';
		cat(buf, cap, &n, "%s", v);
	}
	for (int i = 0; k->kind != K_SCALAR && i < *count_of(s, k); i++) {
		format_item(k, (char *)field(s, k) + (size_t)i * k->size, v, sizeof v);
		cat(buf, cap, &n, "%s%s", i == 0 ? "" : k->kind == K_LIST ? " " : "\n", v);
	}
	return n < cap ? (int)n : -1;
}

int config_get(const struct config *cfg, const char *key, char *buf, size_t cap)
{
	struct keyref r;
	const struct config_sect *s;

	if (cap == 0 || resolve(key, &r) < 0 || r.ki < 0)
		return -1;
	s = inst_find(cfg, r.sd, r.name);
	if (!s)
		return -1;
	return get_value(&sects[r.sd].keys[r.ki], s, r.ki, buf, cap);
}

/* A value the file could not hold: " #" would start a comment. */
static int value_storable(const char *v)
{
	if (*v == '#')
		return 0;
	for (const char *c = v + 1; *v && *c; c++)
		if (*c == '#' && (c[-1] == ' ' || c[-1] == '\t' || c[-1] == '\n'))
			return 0;
	return 1;
}

/* Parses value into the section copy tmp. */
static int set_into(const struct key *k, struct config_sect *tmp, char *value,
                    char *err, size_t cap)
{
	char *save = NULL;

	if (k->kind != K_REPEAT)
		return strchr(value, '\n') ? PERR("value spans several lines") :
		       assign(k, tmp, value, 0, err, cap);
	*count_of(tmp, k) = 0;
	for (char *l = strtok_r(value, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (*trim(l) && assign(k, tmp, trim(l), 1, err, cap) < 0)
			return -1;
	return 0;
}

static int set_checked(struct config *cfg, const struct keyref *r, char *value,
                       struct config_errors *errs)
{
	const struct key *k = &sects[r->sd].keys[r->ki];
	struct config_sect *s = inst_find(cfg, r->sd, r->name), *tmp;
	char err[CONFIG_ERROR_LEN];
	size_t size = sects[r->sd].size;

	if (!s && (!account_name_ok(r->name) || cfg->naccounts >= CONFIG_ACCOUNTS_MAX))
		return err_add(errs, NULL, 0, 0, "", NULL, account_name_ok(r->name)
			? "too many accounts (at most %d)" : "account name: %d-byte name of "
			"letters, digits, '.', '_' and '-' expected", CONFIG_ACCOUNTS_MAX), -1;
	if (!(tmp = malloc(size)))
		return err_add(errs, NULL, 0, 0, "", NULL, "out of memory"), -1;
	if (s)
		memcpy(tmp, s, size);
	else
		init_section(r->sd, tmp, r->name);
	if (set_into(k, tmp, value, err, sizeof err) < 0) {
		err_add(errs, NULL, 0, r->sd, r->name, k->name, "%s", err);
		free(tmp);
		return -1;
	}
	tmp->set |= 1ull << r->ki;
	if (k->kind != K_SCALAR && *count_of(tmp, k) == 0)
		reset_key(k, r->ki, tmp);    /* only blank lines: back to the default */
	if (!s)
		s = &account_add(cfg, r->name)->h;
	memcpy(s, tmp, size);
	free(tmp);
	derive(cfg);
	return 0;
}

int config_set(struct config *cfg, const char *key, const char *value,
               struct config_errors *errs)
{
	struct keyref r;
	char *copy;
	int ret;

	err_clear(errs);
	if (resolve(key, &r) < 0 || r.ki < 0) {
		err_add(errs, NULL, 0, 0, "", NULL, "unknown setting \"%.80s\"", key);
		return -1;
	}
	if (!value_storable(value)) {
		err_add(errs, NULL, 0, r.sd, r.name, sects[r.sd].keys[r.ki].name,
		        "a value cannot hold '#' at its start or after a blank");
		return -1;
	}
	if (!(copy = strdup(value))) {
		err_add(errs, NULL, 0, 0, "", NULL, "out of memory");
		return -1;
	}
	if (*trim(copy) == '\0')
		ret = config_unset(cfg, key, errs) < 0 && inst_find(cfg, r.sd, r.name) ? -1 : 0;
	else
		ret = set_checked(cfg, &r, trim(copy), errs);
	free(copy);
	return ret;
}

int config_unset(struct config *cfg, const char *key, struct config_errors *errs)
{
	struct keyref r;
	struct config_sect *s;
	int i;

	err_clear(errs);
	if (resolve(key, &r) < 0 || (r.ki < 0 && !sects[r.sd].named)) {
		err_add(errs, NULL, 0, 0, "", NULL, "unknown setting \"%.80s\"", key);
		return -1;
	}
	if (!(s = inst_find(cfg, r.sd, r.name))) {
		err_add(errs, NULL, 0, 0, "", NULL, "no %s \"%s\"", sects[r.sd].name, r.name);
		return -1;
	}
	if (r.ki >= 0) {
		reset_key(&sects[r.sd].keys[r.ki], r.ki, s);
		derive(cfg);
		return 0;
	}
	i = account_index(cfg, r.name);
	memmove(&cfg->account[i], &cfg->account[i + 1],
	        (size_t)(cfg->naccounts - i - 1) * sizeof cfg->account[0]);
	cfg->naccounts--;
	return 0;
}

/* ---- comparing and saving ------------------------------------------------- */

/* 1 when key k holds the same value in sa and sb (compared as text). */
static int key_equal(const struct key *k, const struct config_sect *sa,
                     const struct config_sect *sb)
{
	char va[VALUE_MAX], vb[VALUE_MAX];
	int n = 1;

	if (k->kind != K_SCALAR) {
		n = *count_of(sa, k);
		if (n != *count_of(sb, k))
			return 0;
	}
	for (int i = 0; i < n; i++) {
		format_item(k, (char *)field(sa, k) + (size_t)i * k->size, va, sizeof va);
		format_item(k, (char *)field(sb, k) + (size_t)i * k->size, vb, sizeof vb);
		if (strcmp(va, vb) != 0)
			return 0;
	}
	return 1;
}

static int inst_equal(const struct config *a, const struct config *b, int slot)
{
	int sd = slot_sd(slot);
	const struct config_sect *sa = slot_inst(a, slot), *sb = slot_inst(b, slot);

	if (sa->set != sb->set || strcmp(sa->name, sb->name) != 0)
		return 0;
	for (int ki = 0; ki < sects[sd].nkeys; ki++)
		if (!key_equal(&sects[sd].keys[ki], sa, sb))
			return 0;
	return 1;
}

int config_equal(const struct config *a, const struct config *b)
{
	if (a->naccounts != b->naccounts)
		return 0;
	for (int slot = 0; slot < SD_ACCOUNT + a->naccounts; slot++)
		if (!inst_equal(a, b, slot))
			return 0;
	return 1;
}

int config_save(struct config *cfg, const char *path, struct config_errors *errs)
{
	char *buf;
	int n;
	struct config *fresh = NULL;
	struct config_doc *d;

	err_clear(errs);
	if (config_validate(cfg, path, errs) < 0)
		return -1;
	if (!(buf = malloc(CONFIG_FILE_MAX + 1)))
		return err_add(errs, path, 0, 0, "", NULL, "out of memory"), -1;
	n = config_format(cfg, buf, CONFIG_FILE_MAX + 1);
	if (n < 0 || n > CONFIG_FILE_MAX)
		err_add(errs, path, 0, 0, "", NULL, "the configuration is too large "
		        "(more than %d bytes)", CONFIG_FILE_MAX);
	else
		fresh = config_parse(path, buf, (size_t)n, errs);  /* must load again */
	if (fresh && fs_write_atomic(path, buf, (size_t)n, CONFIG_FILE_MODE) < 0)
		err_add(errs, path, 0, 0, "", NULL, "cannot save: %s", strerror(errno));
	free(buf);
	if (errs->count || errs->dropped) {
		config_free(fresh);
		return -1;
	}
	/* Line numbers in later messages should match the file as saved. */
	d = cfg->doc;
	cfg->doc = fresh->doc;
	fresh->doc = d;
	config_free(fresh);
	return 0;
}

/* ---- helpers --------------------------------------------------------------- */

const struct config_account *config_account(const struct config *cfg, const char *name)
{
	int i = account_index(cfg, name);
	return i < 0 ? NULL : &cfg->account[i];
}

int config_dhcp_range(const struct config *cfg, struct config_range *out)
{
	const struct config_lan *l = &cfg->lan;
	uint32_t addr, mask, net, size;

	if (l->h.set >> key_index(SD_LAN, "dhcp-range") & 1) {
		*out = l->dhcp_range;
		return 0;
	}
	if (l->address.addr.family != AF_INET || l->address.len > 30 || l->address.len < 1)
		return -1;
	memcpy(&addr, l->address.addr.a, 4);
	addr = ntohl(addr);
	mask = 0xffffffffu << (32 - l->address.len);
	net = addr & mask;
	size = ~mask + 1;
	memset(out, 0, sizeof *out);
	out->first.family = out->last.family = AF_INET;
	addr = htonl(net + size / 2);
	memcpy(out->first.a, &addr, 4);
	addr = htonl(net + size - 2);
	memcpy(out->last.a, &addr, 4);
	return 0;
}
