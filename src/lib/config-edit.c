/*
 * config-edit.c - writing postern.conf back: serialisation that keeps the
 * file's comments, order and layout, config_get / config_set / config_unset
 * by key ("section.setting", "account.NAME.setting"), and the atomic save.
 */
#include "config.h"
#include "config-int.h"
#include "fsutil.h"
#include "strbuf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- serialisation --------------------------------------------------------- */

static int get_value(const struct key *k, const struct config_sect *s, int ki,
                     char *buf, size_t cap);

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
static void emit_line(struct strbuf *e, const char *key, const char *value,
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

	strbuf_put(e, "%.*s%-*s%s", ind, l ? lay->d->src + l->raw_off : "", pad, key, value);
	if (l && l->len && ind + width + 1 + (int)l->len <= CONFIG_LINE_MAX)
		strbuf_put(e, "%*s%.*s", l->cpad > width ? l->cpad - width : 1, "",
		     (int)l->len, lay->d->src + l->off);
	strbuf_put(e, "\n");
}

static void emit_list(struct strbuf *e, const struct key *k, const struct config_sect *s,
                      const struct layout *lay)
{
	char line[VALUE_MAX], v[VALUE_MAX];
	struct strbuf b;
	int count = *cfg_count_of(s, k);

	strbuf_init(&b, line, sizeof line);
	for (int i = 0; i < count; i++) {
		cfg_format_item(k, (char *)cfg_field(s, k) + (size_t)i * k->size, v, sizeof v);
		if (b.len > 0 && b.len + 1 + strlen(v) > CONFIG_WRAP) {
			emit_line(e, k->name, line, lay);
			lay = NULL;
			strbuf_init(&b, line, sizeof line);
		}
		strbuf_put(&b, "%s%s", b.len ? " " : "", v);   /* fits: CONFIG_WRAP < VALUE_MAX */
	}
	if (b.len > 0)
		emit_line(e, k->name, line, lay);
}

/* Writes every line of key k; lay (may be NULL) is the source line it replaces. */
static void emit_key(struct strbuf *e, const struct key *k, const struct config_sect *s,
                     const struct layout *lay)
{
	char v[VALUE_MAX];

	if (k->kind == K_LIST) {
		emit_list(e, k, s, lay);
		return;
	}
	if (k->kind == K_SCALAR) {
		cfg_format_item(k, cfg_field(s, k), v, sizeof v);
		emit_line(e, k->name, v, lay);
		return;
	}
	for (int i = 0; i < *cfg_count_of(s, k); i++) {
		cfg_format_item(k, (char *)cfg_field(s, k) + (size_t)i * k->size, v, sizeof v);
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
static void emit_item(struct strbuf *e, const struct config_doc *d, const struct line *l,
                      const struct key *k, const char *v)
{
	struct layout lay = { d, l };

	if (strlen(v) == l->vlen && memcmp(v, d->src + l->voff, l->vlen) == 0)
		strbuf_put(e, "%.*s\n", (int)l->raw_len, d->src + l->raw_off);
	else
		emit_line(e, k->name, v, &lay);
}

/*
 * Writes key k of s where its first source line l was: lines whose value is
 * unchanged are copied as they were; entries of a repeatable setting reuse
 * the setting's source lines in order.
 */
static void emit_doc_key(struct strbuf *e, const struct config_doc *d, const struct line *l,
                         const struct key *k, const struct config_sect *s)
{
	char v[VALUE_MAX];
	struct layout lay = { d, l };
	struct line plain;

	if (k->kind != K_REPEAT) {
		if (get_value(k, s, l->key, v, sizeof v) >= 0 && strlen(v) == l->vlen &&
		    memcmp(v, d->src + l->voff, l->vlen) == 0)
			strbuf_put(e, "%.*s\n", (int)l->raw_len, d->src + l->raw_off);
		else
			emit_key(e, k, s, &lay);   /* lists wrap over several lines */
		return;
	}
	plain = *l;
	plain.len = 0;                   /* extra entries: l's columns, no comment */
	for (int i = 0; i < *cfg_count_of(s, k); i++) {
		cfg_format_item(k, (char *)cfg_field(s, k) + (size_t)i * k->size, v, sizeof v);
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
	struct strbuf e;
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
	return slot < SD_ACCOUNT ? cfg_inst_at(cfg, slot, 0) : cfg_inst_at(cfg, SD_ACCOUNT, slot - SD_ACCOUNT);
}

/* Writes the keys of slot that are set but not yet written. */
static void flush_missing(struct fmt_state *st, int slot)
{
	int sd = slot_sd(slot);
	const struct config_sect *s = slot_inst(st->cfg, slot);

	for (int ki = 0; ki < cfg_sects[sd].nkeys; ki++)
		if ((s->set >> ki & 1) && !(st->emitted[slot] >> ki & 1)) {
			emit_key(&st->e, &cfg_sects[sd].keys[ki], s, NULL);
			st->emitted[slot] |= 1ull << ki;
		}
}

static void emit_pending(struct fmt_state *st, int upto, int keep)
{
	for (int i = st->pending; keep && i >= 0 && i < upto; i++) {
		const struct line *l = &st->doc->lines[i];
		if (l->type == LN_COMMENT)
			strbuf_put(&st->e, "%.*s\n", (int)l->len, st->doc->src + l->off);
		else
			strbuf_put(&st->e, "\n");
	}
	st->pending = -1;
}

static void emit_header(struct strbuf *e, int slot, const struct config_sect *s,
                        const char *comment, size_t clen)
{
	int sd = slot_sd(slot);

	if (cfg_sects[sd].named)
		strbuf_put(e, "[%s %s]", cfg_sects[sd].name, s->name);
	else
		strbuf_put(e, "[%s]", cfg_sects[sd].name);
	if (comment)
		strbuf_put(e, " %.*s", (int)clen, comment);
	strbuf_put(e, "\n");
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
		slot = cfg_inst_slot(st->cfg, l->sd, l->name);
		st->cur = slot >= 0 && !st->header_done[slot] ? slot : -1;
		if (st->cur >= 0) {
			st->header_done[slot] = 1;
			emit_header(&st->e, slot, slot_inst(st->cfg, slot), comment, l->len);
		}
	} else if (st->cur >= 0) {
		const struct config_sect *s = slot_inst(st->cfg, st->cur);
		emit_pending(st, i, 1);
		if ((s->set >> l->key & 1) && !(st->emitted[st->cur] >> l->key & 1)) {
			emit_doc_key(&st->e, st->doc, l, &cfg_sects[l->sd].keys[l->key], s);
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
	strbuf_init(&st->e, buf, cap);
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
		if (st->e.len > 0)
			strbuf_put(&st->e, "\n");
		emit_header(&st->e, slot, s, NULL, 0);
		flush_missing(st, slot);
	}
	n = strbuf_result(&st->e);
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
		r->ki = cfg_key_index(SD_GLOBAL, key);
		return r->ki < 0 ? -1 : 0;
	}
	n = (size_t)(dot - key);
	if (n >= sizeof sect)
		return -1;
	memcpy(sect, key, n);
	sect[n] = '\0';
	if ((r->sd = cfg_sect_index(sect)) < 0)
		return -1;
	if (!cfg_sects[r->sd].named) {
		r->ki = cfg_key_index(r->sd, dot + 1);
		return r->ki < 0 ? -1 : 0;
	}
	if (last == dot)
		last = key + strlen(key);    /* "account.NAME" */
	n = (size_t)(last - dot - 1);
	if (n == 0 || n > CONFIG_NAME_MAX)
		return -1;
	memcpy(r->name, dot + 1, n);
	r->name[n] = '\0';
	r->ki = *last ? cfg_key_index(r->sd, last + 1) : -1;
	return *last && r->ki < 0 ? -1 : 0;
}

/* Text of key k in s: list items joined by spaces, entries by newlines. */
static int get_value(const struct key *k, const struct config_sect *s, int ki,
                     char *buf, size_t cap)
{
	char v[VALUE_MAX];
	struct strbuf b;

	strbuf_init(&b, buf, cap);
	if (k->kind == K_SCALAR) {
		if ((s->set >> ki & 1) || k->def || (k->flags & F_DERIVED))
			cfg_format_item(k, cfg_field(s, k), v, sizeof v);
		else
			v[0] = '\0';
		strbuf_put(&b, "%s", v);
	}
	for (int i = 0; k->kind != K_SCALAR && i < *cfg_count_of(s, k); i++) {
		cfg_format_item(k, (char *)cfg_field(s, k) + (size_t)i * k->size, v, sizeof v);
		strbuf_put(&b, "%s%s", i == 0 ? "" : k->kind == K_LIST ? " " : "\n", v);
	}
	return strbuf_result(&b);
}

int config_get(const struct config *cfg, const char *key, char *buf, size_t cap)
{
	struct keyref r;
	const struct config_sect *s;

	if (cap == 0 || resolve(key, &r) < 0 || r.ki < 0)
		return -1;
	s = cfg_inst_find(cfg, r.sd, r.name);
	if (!s)
		return -1;
	return get_value(&cfg_sects[r.sd].keys[r.ki], s, r.ki, buf, cap);
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
		       cfg_assign(k, tmp, value, 0, err, cap);
	*cfg_count_of(tmp, k) = 0;
	for (char *l = strtok_r(value, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (*cfg_trim(l) && cfg_assign(k, tmp, cfg_trim(l), 1, err, cap) < 0)
			return -1;
	return 0;
}

static int set_checked(struct config *cfg, const struct keyref *r, char *value,
                       struct config_errors *errs)
{
	const struct key *k = &cfg_sects[r->sd].keys[r->ki];
	struct config_sect *s = cfg_inst_find(cfg, r->sd, r->name), *tmp;
	char err[CONFIG_ERROR_LEN];
	size_t size = cfg_sects[r->sd].size;

	if (!s && (!cfg_account_name_ok(r->name) || cfg->naccounts >= CONFIG_ACCOUNTS_MAX))
		return cfg_err_add(errs, NULL, 0, 0, "", NULL, cfg_account_name_ok(r->name)
			? "too many accounts (at most %d)" : "account name: %d-byte name of "
			"letters, digits, '.', '_' and '-' expected", CONFIG_ACCOUNTS_MAX), -1;
	if (!(tmp = malloc(size)))
		return cfg_err_add(errs, NULL, 0, 0, "", NULL, "out of memory"), -1;
	if (s)
		memcpy(tmp, s, size);
	else
		cfg_init_section(r->sd, tmp, r->name);
	if (set_into(k, tmp, value, err, sizeof err) < 0) {
		cfg_err_add(errs, NULL, 0, r->sd, r->name, k->name, "%s", err);
		free(tmp);
		return -1;
	}
	tmp->set |= 1ull << r->ki;
	if (k->kind != K_SCALAR && *cfg_count_of(tmp, k) == 0)
		cfg_reset_key(k, r->ki, tmp);    /* only blank lines: back to the default */
	if (!s)
		s = &cfg_account_add(cfg, r->name)->h;
	memcpy(s, tmp, size);
	free(tmp);
	cfg_derive(cfg);
	return 0;
}

int config_set(struct config *cfg, const char *key, const char *value,
               struct config_errors *errs)
{
	struct keyref r;
	char *copy;
	int ret;

	cfg_err_clear(errs);
	if (resolve(key, &r) < 0 || r.ki < 0) {
		cfg_err_add(errs, NULL, 0, 0, "", NULL, "unknown setting \"%.80s\"", key);
		return -1;
	}
	if (!value_storable(value)) {
		cfg_err_add(errs, NULL, 0, r.sd, r.name, cfg_sects[r.sd].keys[r.ki].name,
		        "a value cannot hold '#' at its start or after a blank");
		return -1;
	}
	if (!(copy = strdup(value))) {
		cfg_err_add(errs, NULL, 0, 0, "", NULL, "out of memory");
		return -1;
	}
	if (*cfg_trim(copy) == '\0')
		ret = config_unset(cfg, key, errs) < 0 && cfg_inst_find(cfg, r.sd, r.name) ? -1 : 0;
	else
		ret = set_checked(cfg, &r, cfg_trim(copy), errs);
	free(copy);
	return ret;
}

int config_unset(struct config *cfg, const char *key, struct config_errors *errs)
{
	struct keyref r;
	struct config_sect *s;
	int i;

	cfg_err_clear(errs);
	if (resolve(key, &r) < 0 || (r.ki < 0 && !cfg_sects[r.sd].named)) {
		cfg_err_add(errs, NULL, 0, 0, "", NULL, "unknown setting \"%.80s\"", key);
		return -1;
	}
	if (!(s = cfg_inst_find(cfg, r.sd, r.name))) {
		cfg_err_add(errs, NULL, 0, 0, "", NULL, "no %s \"%s\"", cfg_sects[r.sd].name, r.name);
		return -1;
	}
	if (r.ki >= 0) {
		cfg_reset_key(&cfg_sects[r.sd].keys[r.ki], r.ki, s);
		cfg_derive(cfg);
		return 0;
	}
	i = cfg_account_index(cfg, r.name);
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
		n = *cfg_count_of(sa, k);
		if (n != *cfg_count_of(sb, k))
			return 0;
	}
	for (int i = 0; i < n; i++) {
		cfg_format_item(k, (char *)cfg_field(sa, k) + (size_t)i * k->size, va, sizeof va);
		cfg_format_item(k, (char *)cfg_field(sb, k) + (size_t)i * k->size, vb, sizeof vb);
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
	for (int ki = 0; ki < cfg_sects[sd].nkeys; ki++)
		if (!key_equal(&cfg_sects[sd].keys[ki], sa, sb))
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

	cfg_err_clear(errs);
	if (config_validate(cfg, path, errs) < 0)
		return -1;
	if (!(buf = malloc(CONFIG_FILE_MAX + 1)))
		return cfg_err_add(errs, path, 0, 0, "", NULL, "out of memory"), -1;
	n = config_format(cfg, buf, CONFIG_FILE_MAX + 1);
	if (n < 0 || n > CONFIG_FILE_MAX)
		cfg_err_add(errs, path, 0, 0, "", NULL, "the configuration is too large "
		        "(more than %d bytes)", CONFIG_FILE_MAX);
	else
		fresh = config_parse(path, buf, (size_t)n, errs);  /* must load again */
	if (fresh && fs_write_atomic(path, buf, (size_t)n, CONFIG_FILE_MODE) < 0)
		cfg_err_add(errs, path, 0, 0, "", NULL, "cannot save: %s", strerror(errno));
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
	int i = cfg_account_index(cfg, name);
	return i < 0 ? NULL : &cfg->account[i];
}

int config_dhcp_range(const struct config *cfg, struct config_range *out)
{
	const struct config_lan *l = &cfg->lan;
	uint32_t addr, mask, net, size;

	if (l->h.set >> cfg_key_index(SD_LAN, "dhcp-range") & 1) {
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
