/*
 * multidrop.c - distributing a domain-wide provider mailbox to local users
 * (deliver-to multidrop): recipients come from the envelope headers the
 * provider adds (Delivered-To, X-Original-To, Envelope-To, X-Envelope-To);
 * only when there is none, from To and Cc. Addresses of the mail domain
 * are resolved through the users file (users, aliases, lists); the rest,
 * and a message for nobody known, go to the catch-all user.
 *
 * Loop guard: a message with more than MD_HOPS_MAX Received: fields has
 * gone around in circles (RFC 5321 section 6.3); it goes to the catch-all
 * only, so a loop through a local forward cannot multiply it.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fetchd.h"
#include "users.h"

/* Received: fields before a message counts as looping. */
#define MD_HOPS_MAX 50
/* Addresses taken from one message. */
#define MD_ADDRS_MAX 100
/* Bytes of one unfolded header field looked at. */
#define MD_FIELD_MAX 8192
/* Nesting of RFC 5322 comments followed. */
#define MD_COMMENT_DEPTH 8

struct md {
	const struct users_db *db;
	const char *domain;
	char (*out)[USERS_NAME_MAX + 1];
	size_t max, n;
	int naddr;
};

static void add_user(struct md *m, const char *u)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->out[i], u) == 0)
			return;
	if (m->n < m->max)
		snprintf(m->out[m->n++], sizeof m->out[0], "%s", u);
}

static void add_address(struct md *m, const char *a, size_t len)
{
	char addr[USERS_ADDR_MAX + 1], users[16][USERS_NAME_MAX + 1];
	while (len > 0 && (*a == ' ' || *a == '\t')) {
		a++;
		len--;
	}
	while (len > 0 && (a[len - 1] == ' ' || a[len - 1] == '\t'))
		len--;
	if (len == 0 || len > USERS_ADDR_MAX || !memchr(a, '@', len) || m->naddr >= MD_ADDRS_MAX)
		return;
	m->naddr++;
	memcpy(addr, a, len);
	addr[len] = '\0';
	int k = users_resolve(m->db, addr, m->domain, users, 16);
	for (int i = 0; i < k; i++)
		add_user(m, users[i]);
}

/* Takes the addresses out of an address-list field value (RFC 5322
 * section 3.4): "<addr>" when present, else the bare word; quoted strings
 * and (comments) are skipped. */
static void parse_list(struct md *m, const char *v, size_t n)
{
	size_t i = 0, seg = 0;
	int angle = 0;
	while (i <= n) {
		char c = i < n ? v[i] : ',';
		if (c == '"') {
			for (i++; i < n && v[i] != '"'; i++)
				if (v[i] == '\\')
					i++;
		} else if (c == '(') {
			int depth = 1;
			for (i++; i < n && depth > 0 && depth < MD_COMMENT_DEPTH; i++)
				depth += v[i] == '(' ? 1 : v[i] == ')' ? -1 : 0;
			seg = i;
			continue;
		} else if (c == '<') {
			const char *e = memchr(v + i, '>', n - i);
			if (e) {
				add_address(m, v + i + 1, (size_t)(e - v) - i - 1);
				angle = 1;
				i = (size_t)(e - v);
			}
		} else if (c == ',' || c == ';') {
			if (!angle)
				add_address(m, v + seg, i - seg);
			angle = 0;
			seg = i + 1;
		}
		i++;
	}
}

/* Calls fn for each header field named in names (NULL-terminated),
 * unfolded (RFC 5322 section 2.2.3). Returns the Received: count. */
static int each_field(const char *h, size_t n, const char *const *names,
	void (*fn)(struct md *, const char *, size_t), struct md *m)
{
	char f[MD_FIELD_MAX];
	size_t i = 0;
	int hops = 0;
	while (i < n && h[i] != '\n') {
		size_t fl = 0;
		do {	/* one field with its continuation lines */
			const char *nl = memchr(h + i, '\n', n - i);
			size_t e = nl ? (size_t)(nl - h) : n;
			for (; i < e; i++)
				if (fl < sizeof f)
					f[fl++] = h[i] == '\t' ? ' ' : h[i];
			i = e < n ? e + 1 : n;
		} while (i < n && (h[i] == ' ' || h[i] == '\t'));
		const char *colon = memchr(f, ':', fl);
		if (!colon)
			continue;
		size_t nl = (size_t)(colon - f);
		if (nl == 8 && strncasecmp(f, "received", 8) == 0)
			hops++;
		for (const char *const *p = names; *p; p++)
			if (strlen(*p) == nl && strncasecmp(f, *p, nl) == 0)
				fn(m, colon + 1, fl - nl - 1);
	}
	return hops;
}

int multidrop_targets(const char *head, size_t n, const struct users_db *db,
	const char *domain, const char *catch_all, char out[][USERS_NAME_MAX + 1],
	size_t max, int *loop)
{
	static const char *const envelope[] = { "Delivered-To", "X-Original-To",
		"Envelope-To", "X-Envelope-To", NULL };
	static const char *const visible[] = { "To", "Cc", NULL };
	struct md m = { db, domain, out, max, 0, 0 };
	int hops = each_field(head, n, envelope, parse_list, &m);
	*loop = hops > MD_HOPS_MAX;
	if (*loop)
		m.n = 0;
	else if (m.naddr == 0)
		each_field(head, n, visible, parse_list, &m);
	if (m.n == 0 && max > 0)
		add_user(&m, catch_all);
	return (int)m.n;
}
