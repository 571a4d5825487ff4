/*
 * session.c - sign-in sessions and CSRF tokens (docs/web.md, "Sessions").
 *
 * A session id is 256 random bits (hex) in the cookie __Host-sid (Secure,
 * HttpOnly, SameSite=Strict). The server keeps one file per session in the
 * state directory, named by SHA-256 of the id (a directory listing gives
 * no usable id), holding "user admin csrf created last". An id the server
 * did not issue is never adopted (no session fixation): sign-in always
 * makes a new one. A session ends after WEB_SESSION_IDLE seconds without a
 * request or WEB_SESSION_MAX_AGE seconds in all.
 *
 * Before sign-in, the login and setup forms use a double-submit token: a
 * random value both in the cookie __Host-pre and in the form.
 */
#include <bearssl.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cgi.h"
#include "fsutil.h"
#include "http.h"

#define WEB_SESSION_FILE_MAX 512

int random_hex(char *out, size_t n)
{
	unsigned char b[64];

	if (n > sizeof b || getrandom(b, n, 0) != (ssize_t)n)
		return -1;
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	return 0;
}

int token_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = la != lb;

	for (size_t i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0 && la > 0;
}

static int hex_token_ok(const char *s)
{
	if (strlen(s) != WEB_TOKEN_HEX)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

/* state/<sha256(id) in hex> */
static void session_path(const struct cgi *c, const char *id, char *out, size_t cap)
{
	br_sha256_context h;
	unsigned char d[32];
	char hex[65];

	br_sha256_init(&h);
	br_sha256_update(&h, id, strlen(id));
	br_sha256_out(&h, d);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	snprintf(out, cap, "%s/%s", c->state, hex);
}

static int session_save(const struct cgi *c)
{
	char p[FS_PATH_MAX], text[WEB_SESSION_FILE_MAX];
	int n = snprintf(text, sizeof text, "%s %d %s %lld %lld\n", c->s.user, c->s.admin,
			 c->s.csrf, (long long)c->s.created, (long long)c->s.last);

	session_path(c, c->s.id, p, sizeof p);
	fs_mkdir_p(c->state, 0700);
	return fs_write_atomic(p, text, (size_t)n, 0600);
}

static void add_cookie(struct cgi *c, const char *name, const char *value, int max_age)
{
	if (c->ncookies >= 3)
		return;
	snprintf(c->set_cookie[c->ncookies++], sizeof c->set_cookie[0],
		 "%s=%s; Path=/; Secure; HttpOnly; SameSite=Strict%s", name, value,
		 max_age == 0 ? "; Max-Age=0" : "");
}

/* 1 when the user still exists and may sign in with the same role. */
static int user_still_valid(struct cgi *c)
{
	struct users_db db;
	char err[256];
	const struct users_entry *e;
	int ok;

	if (users_load(&db, c->users, err, sizeof err) < 0)
		return 0;
	e = users_find(&db, c->s.user);
	ok = e && e->kind == USERS_KIND_USER && strcmp(e->hash, "!") != 0;
	if (ok)
		c->s.admin = e->role == USERS_ROLE_ADMIN;
	users_free(&db);
	return ok;
}

int session_load(struct cgi *c)
{
	char id[WEB_TOKEN_HEX + 2], p[FS_PATH_MAX], text[WEB_SESSION_FILE_MAX];
	long long created, last;

	if (http_cookie_get(c->cookie, WEB_COOKIE_SID, id, sizeof id) < 0 || !hex_token_ok(id))
		return 0;
	session_path(c, id, p, sizeof p);
	if (fs_read_file(p, text, sizeof text - 1) < 0)
		return 0;
	if (sscanf(text, "%64s %d %64s %lld %lld", c->s.user, &c->s.admin, c->s.csrf,
		   &created, &last) != 5)
		return 0;
	if (c->now - last > WEB_SESSION_IDLE || c->now - created > WEB_SESSION_MAX_AGE ||
	    !user_still_valid(c)) {
		unlink(p);
		return 0;
	}
	memcpy(c->s.id, id, sizeof c->s.id);
	c->s.created = (time_t)created;
	c->s.last = c->now;
	session_save(c);
	c->logged_in = 1;
	return 1;
}

int session_start(struct cgi *c, const char *user, int admin)
{
	char old[WEB_TOKEN_HEX + 2], p[FS_PATH_MAX];

	/* whatever session the browser had (or was given) is dropped */
	if (http_cookie_get(c->cookie, WEB_COOKIE_SID, old, sizeof old) > 0 && hex_token_ok(old)) {
		session_path(c, old, p, sizeof p);
		unlink(p);
	}
	memset(&c->s, 0, sizeof c->s);
	if (random_hex(c->s.id, WEB_TOKEN_BYTES) < 0 || random_hex(c->s.csrf, WEB_TOKEN_BYTES) < 0)
		return -1;
	snprintf(c->s.user, sizeof c->s.user, "%s", user);
	c->s.admin = admin;
	c->s.created = c->s.last = c->now;
	if (session_save(c) < 0)
		return -1;
	add_cookie(c, WEB_COOKIE_SID, c->s.id, -1);
	add_cookie(c, WEB_COOKIE_PRE, "", 0);
	c->logged_in = 1;
	return 0;
}

void session_end(struct cgi *c)
{
	char p[FS_PATH_MAX];

	if (c->logged_in) {
		session_path(c, c->s.id, p, sizeof p);
		unlink(p);
	}
	c->logged_in = 0;
	add_cookie(c, WEB_COOKIE_SID, "", 0);
}

int csrf_ok(struct cgi *c)
{
	return c->logged_in && token_eq(form(c, "csrf"), c->s.csrf);
}

const char *pre_token(struct cgi *c)
{
	static char tok[WEB_TOKEN_HEX + 2];

	if (tok[0])
		return tok;   /* made or read earlier in this request */
	if (http_cookie_get(c->cookie, WEB_COOKIE_PRE, tok, sizeof tok) > 0 && hex_token_ok(tok))
		return tok;
	if (random_hex(tok, WEB_TOKEN_BYTES) < 0)
		return "";
	add_cookie(c, WEB_COOKIE_PRE, tok, -1);
	return tok;
}

int pre_ok(struct cgi *c)
{
	char tok[WEB_TOKEN_HEX + 2];

	return http_cookie_get(c->cookie, WEB_COOKIE_PRE, tok, sizeof tok) > 0 &&
	       hex_token_ok(tok) && token_eq(form(c, "csrf"), tok);
}
