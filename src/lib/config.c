/*
 * config.c - postern.conf: the section and key tables, the model, and the
 * parser. The format and every setting are documented in docs/CONFIG.md;
 * the API in config.h.
 *
 * Shape: a table of sections, each with a table of keys (name, type,
 * storage offset, default). One value parser and one formatter per type
 * (config-value.c) serve the file parser, config_set, config_get and the
 * serialiser alike, so a value the web page sets is checked by exactly the
 * code that checks the file. The source lines are kept (struct config_doc)
 * so that saving (config-edit.c) keeps comments and order. Checks across
 * settings are in config-check.c; config-int.h is what the parts share.
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

/* ---- types and tables ---------------------------------------------------- */

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
	SCALAR(G, "mailbox-quota", T_SIZE, mailbox_quota, "0"),
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
	SCALAR(D, "ca-file", T_PATH, ca_file, DEFAULT_CA_FILE),
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

#define SECT(n, f, k, named) { n, offsetof(struct config, f), \
	sizeof(((struct config *)0)->f), named, k, (int)LEN(k) }
const struct sect_desc cfg_sects[SD_COUNT] = {
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
/* ---- errors --------------------------------------------------------------- */

void cfg_err_clear(struct config_errors *errs)
{
	errs->count = 0;
	errs->dropped = 0;
}

/* Adds "name:line: context: key: message". name may be NULL, line 0. */

int cfg_err_add(struct config_errors *errs, const char *name, int line,
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
		n += (size_t)(cfg_sects[sd].named
			? snprintf(t + n, cap - n, "%s \"%s\": ", cfg_sects[sd].name, inst)
			: snprintf(t + n, cap - n, "%s: ", cfg_sects[sd].name));
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

struct config_sect *cfg_inst_at(const struct config *cfg, int sd, int idx)
{
	size_t off = cfg_sects[sd].off + (size_t)idx * cfg_sects[sd].size;
	return (struct config_sect *)((char *)cfg + off);
}

/* Index of the account named name, or -1. */
int cfg_account_index(const struct config *cfg, const char *name)
{
	for (int i = 0; i < cfg->naccounts; i++)
		if (strcmp(cfg->account[i].h.name, name) == 0)
			return i;
	return -1;
}

/* The instance of section sd named name (fixed sections: name ignored). */
struct config_sect *cfg_inst_find(const struct config *cfg, int sd, const char *name)
{
	int i = 0;

	if (cfg_sects[sd].named && (i = cfg_account_index(cfg, name)) < 0)
		return NULL;
	return cfg_inst_at(cfg, sd, i);
}

/* A slot number 0..INSTANCES-1 for bookkeeping, or -1. */
int cfg_inst_slot(const struct config *cfg, int sd, const char *name)
{
	int i;

	if (!cfg_sects[sd].named)
		return sd;
	i = cfg_account_index(cfg, name);
	return i < 0 ? -1 : SD_ACCOUNT + i;
}

void *cfg_field(const struct config_sect *s, const struct key *k)
{
	return (char *)s + k->off;
}

int *cfg_count_of(const struct config_sect *s, const struct key *k)
{
	return (int *)((char *)s + k->count_off);
}

int cfg_key_index(int sd, const char *name)
{
	for (int i = 0; i < cfg_sects[sd].nkeys; i++)
		if (strcmp(cfg_sects[sd].keys[i].name, name) == 0)
			return i;
	return -1;
}

int cfg_sect_index(const char *name)
{
	for (int i = SD_GLOBAL + 1; i < SD_COUNT; i++)
		if (strcmp(cfg_sects[i].name, name) == 0)
			return i;
	return -1;
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
	if (cfg_parse_item(k, text, &tmp, err, cap) < 0)
		return -1;
	memcpy(cfg_field(s, k), &tmp, k->size);
	return 0;
}

static int assign_one(const struct key *k, struct config_sect *s, const char *text,
                      char *err, size_t cap)
{
	int *count = cfg_count_of(s, k);
	char *item = (char *)cfg_field(s, k) + (size_t)*count * k->size;

	if (*count >= k->max)
		return PERR("too many %s (at most %d)",
		            k->kind == K_LIST ? "values" : "entries", k->max);
	memset(item, 0, k->size);
	if (cfg_parse_item(k, text, item, err, cap) < 0)
		return -1;
	(*count)++;
	return 0;
}

/*
 * Parses text into key k of section s: a scalar replaces, a list takes the
 * words of text, a repeatable key one entry. With append 0 a list or
 * repeatable key is emptied first.
 */
int cfg_assign(const struct key *k, struct config_sect *s, const char *text,
                  int append, char *err, size_t cap)
{
	char buf[CONFIG_LINE_MAX + 1], *save = NULL;

	if (k->kind == K_SCALAR)
		return assign_scalar(k, s, text, err, cap);
	if (!append)
		*cfg_count_of(s, k) = 0;
	if (k->kind == K_REPEAT)
		return assign_one(k, s, text, err, cap);
	snprintf(buf, sizeof buf, "%s", text);
	for (char *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
		if (assign_one(k, s, w, err, cap) < 0)
			return -1;
	return 0;
}

/* Puts key k of s back to its default and marks it unset. */
void cfg_reset_key(const struct key *k, int ki, struct config_sect *s)
{
	char err[CONFIG_ERROR_LEN];

	if (k->kind == K_SCALAR) {
		memset(cfg_field(s, k), 0, k->size);
	} else {
		memset(cfg_field(s, k), 0, k->size * (size_t)k->max);
		*cfg_count_of(s, k) = 0;
	}
	if (k->def)
		(void)cfg_assign(k, s, k->def, 0, err, sizeof err);  /* defaults are valid */
	s->set &= ~(1ull << ki);
}

void cfg_init_section(int sd, struct config_sect *s, const char *name)
{
	memset(s, 0, cfg_sects[sd].size);
	snprintf(s->name, sizeof s->name, "%s", name);
	for (int i = 0; i < cfg_sects[sd].nkeys; i++)
		cfg_reset_key(&cfg_sects[sd].keys[i], i, s);
}

struct config *config_new(void)
{
	struct config *cfg = calloc(1, sizeof *cfg);

	if (!cfg)
		return NULL;
	for (int sd = 0; sd < SD_ACCOUNT; sd++)
		cfg_init_section(sd, cfg_inst_at(cfg, sd, 0), "");
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
int cfg_account_name_ok(const char *s)
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
struct config_account *cfg_account_add(struct config *cfg, const char *name)
{
	struct config_account *a;

	if (cfg->naccounts >= CONFIG_ACCOUNTS_MAX)
		return NULL;
	a = &cfg->account[cfg->naccounts++];
	cfg_init_section(SD_ACCOUNT, &a->h, name);
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
int cfg_doc_line(const struct config_doc *d, int sd, const char *name, int key)
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

#define PFAIL(p, sd, key, ...) cfg_err_add((p)->errs, (p)->name, (p)->line, sd, \
	(p)->s ? (p)->s->name : "", key, __VA_ARGS__)

char *cfg_trim(char *s)
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
		return PFAIL(p, 0, NULL, "[%s] needs a name: [%s NAME]", cfg_sects[sd].name,
		             cfg_sects[sd].name), NULL;
	if (!cfg_account_name_ok(name))
		return PFAIL(p, 0, NULL, "%s name %.40s: use letters, digits, '.', '_' and '-' "
		             "(at most %d)", cfg_sects[sd].name, name, CONFIG_NAME_MAX), NULL;
	if ((i = cfg_account_index(p->cfg, name)) >= 0) {
		p->s = &p->cfg->account[i].h;
		return PFAIL(p, sd, NULL, "defined twice (first on line %d)",
		             cfg_doc_line(p->cfg->doc, sd, name, -1)), NULL;
	}
	if (!(a = cfg_account_add(p->cfg, name)))
		return PFAIL(p, 0, NULL, "too many accounts (at most %d)", CONFIG_ACCOUNTS_MAX), NULL;
	return &a->h;
}

/* Opens a fixed section; NULL after an error. */
static struct config_sect *open_fixed(struct parser *p, int sd, const char *name)
{
	if (*name)
		return PFAIL(p, 0, NULL, "[%s] takes no name", cfg_sects[sd].name), NULL;
	if (p->seen[sd])
		return PFAIL(p, 0, NULL, "section [%s] appears twice (first on line %d)",
		             cfg_sects[sd].name, p->seen[sd]), NULL;
	p->seen[sd] = p->line;
	return cfg_inst_at(p->cfg, sd, 0);
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
	if (*cfg_trim(rest))
		return PFAIL(p, 0, NULL, "unexpected text after ]: %.40s", cfg_trim(rest));
	kind = cfg_trim(text + 1);
	name = kind + strcspn(kind, " \t");
	if (*name)
		*name++ = '\0';
	name = cfg_trim(name);
	if ((sd = cfg_sect_index(kind)) < 0)
		return PFAIL(p, 0, NULL, "unknown section [%.40s]", kind);
	p->s = cfg_sects[sd].named ? open_named(p, sd, name) : open_fixed(p, sd, name);
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
	value = cfg_trim(value);
	l->ind = (int)(text - buf);
	l->pad = (int)(value - text);
	l->cpad = comment ? (int)(comment - text) : 0;
	l->voff = l->raw_off + (size_t)(value - buf);
	l->vlen = strlen(value);
	if ((ki = cfg_key_index(sd, text)) < 0)
		return PFAIL(p, sd, NULL, "unknown setting \"%.40s\"", text);
	k = &cfg_sects[sd].keys[ki];
	if (!*value)
		return PFAIL(p, sd, k->name, "needs a value");
	if (k->kind == K_SCALAR && (p->s->set >> ki & 1))
		return PFAIL(p, sd, k->name, "set twice (first on line %d)",
		                   cfg_doc_line(p->cfg->doc, sd, p->s->name, ki));
	if (cfg_assign(k, p->s, value, (int)(p->s->set >> ki & 1), err, sizeof err) < 0)
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
	t = cfg_trim(buf);
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

	cfg_err_clear(errs);
	if (nlines < 0) {
		cfg_err_add(errs, name, 0, 0, "", NULL, "file is too large (more than %d bytes or "
		        "%d lines)", CONFIG_FILE_MAX, CONFIG_LINES_MAX);
		return NULL;
	}
	p.cfg = config_new();
	if (!p.cfg || !(p.cfg->doc = doc_new(buf, len, nlines))) {
		cfg_err_add(errs, name, 0, 0, "", NULL, "out of memory");
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

	cfg_err_clear(errs);
	if (!buf) {
		cfg_err_add(errs, path, 0, 0, "", NULL, "out of memory");
		return NULL;
	}
	n = fs_read_file(path, buf, CONFIG_FILE_MAX);
	if (n < 0) {
		cfg_err_add(errs, path, 0, 0, "", NULL, "cannot read: %s",
		        errno == EFBIG ? "file is too large" : strerror(errno));
		free(buf);
		return NULL;
	}
	cfg = config_parse(path, buf, (size_t)n, errs);
	free(buf);
	return cfg;
}
