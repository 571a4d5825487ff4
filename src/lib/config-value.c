/*
 * config-value.c - one parser (text -> storage, or -1 with a message) and
 * one formatter (storage -> text) per value type of postern.conf
 * (docs/CONFIG.md "Value types"). Shared by the file parser, config_set and
 * the serialiser, so every path checks a value the same way.
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

/* ---- value parsers: text -> storage, or -1 with a message --------------- */


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

int config_parse_size(const char *s, uint64_t *out)
{
	return parse_size(s, out);
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
int cfg_parse_item(const struct key *k, const char *s, void *out, char *err, size_t cap)
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

static void fmt_dnshost(const struct config_dnshost *h, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	struct strbuf b;

	strbuf_init(&b, buf, cap);
	strbuf_put(&b, "%s", h->name);
	for (int i = 0; i < h->naddr; i++)
		strbuf_put(&b, " %s", config_addr_str(&h->addr[i], a, sizeof a));
}

static void fmt_allow(const struct config_allow *al, char *buf, size_t cap)
{
	char net[VALUE_MAX];
	struct strbuf b;

	fmt_prefix(&al->net, 1, net, sizeof net);
	strbuf_init(&b, buf, cap);
	strbuf_put(&b, "%s", net);
	for (int i = 0; i < al->nports; i++)
		strbuf_put(&b, " %u", al->ports[i]);
}

void cfg_format_item(const struct key *k, const void *v, char *buf, size_t cap)
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
