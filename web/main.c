/*
 * main.c - admin.cgi: reads the CGI request, finds the page in the route
 * table, enforces sign-in, the CSRF token on every POST and the admin role,
 * then runs the page (docs/web.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgi.h"
#include "http.h"

enum access { PUBLIC, SIGNED_IN, ADMIN };

struct route {
	const char *path;
	void (*run)(struct cgi *c);
	enum access access;
};

static const struct route routes[] = {
	{ "/login", pg_login, PUBLIC },
	{ "/setup", pg_setup, PUBLIC },
	{ "/logout", pg_logout, SIGNED_IN },
	{ "/password", pg_password, SIGNED_IN },
	{ "/", pg_dashboard, ADMIN },
	{ "/users", pg_users, ADMIN },
	{ "/accounts", pg_accounts, ADMIN },
	{ "/smarthost", pg_settings, ADMIN },
	{ "/network", pg_settings, ADMIN },
	{ "/dns", pg_settings, ADMIN },
	{ "/firewall", pg_settings, ADMIN },
	{ "/certs", pg_certs, ADMIN },
	{ "/certs/ca.pem", pg_certs, ADMIN },
	{ "/certs/ca.der", pg_certs, ADMIN },
	{ "/certs/install", pg_cert_install, ADMIN },
	{ "/queue", pg_queue, ADMIN },
	{ "/logs", pg_logs, ADMIN },
	{ "/probe", pg_probe, ADMIN },     /* connection tests with progress (probe.c) */
};

/* ---- per-request arena: decoded fields live until the process ends ---- */

static char arena[WEB_ARENA];
static size_t arena_used;

static char *arena_alloc(size_t n)
{
	if (n > WEB_ARENA - arena_used)
		return NULL;
	arena_used += n;
	return arena + arena_used - n;
}

char *arena_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = arena_alloc(n);

	if (!p)
		return (char *)"";
	memcpy(p, s, n);
	return p;
}

static const char *decode_field(const char *src, size_t len, const char *name)
{
	static char tmp[HTTP_BODY_MAX + 1];
	int n = http_form_get(src, len, name, tmp, sizeof tmp);

	return n < 0 ? "" : arena_strdup(tmp);
}

const char *form(struct cgi *c, const char *name)
{
	return c->post ? decode_field(c->body, c->body_len, name) : "";
}

const char *param(struct cgi *c, const char *name)
{
	return decode_field(c->query, strlen(c->query), name);
}

void redirect(struct cgi *c, const char *location)
{
	printf("Status: 303 See Other\r\nLocation: %s\r\nCache-Control: no-store\r\n", location);
	for (int i = 0; i < c->ncookies; i++)
		printf("Set-Cookie: %s\r\n", c->set_cookie[i]);
	printf("Content-Type: text/plain; charset=utf-8\r\n\r\nSee %s\n", location);
}

/* ---- request ---- */

static const char *env(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v && *v ? v : dflt;
}

static void read_body(struct cgi *c)
{
	static char body[HTTP_BODY_MAX + 1];
	long want = atol(env("CONTENT_LENGTH", "0"));
	size_t got = 0;

	if (want < 0 || want > HTTP_BODY_MAX)
		want = 0;
	while (got < (size_t)want) {
		ssize_t n = read(0, body + got, (size_t)want - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	body[got] = '\0';
	c->body = body;
	c->body_len = got;
}

static void init(struct cgi *c)
{
	memset(c, 0, sizeof *c);
	c->method = env("REQUEST_METHOD", "GET");
	c->path = env("PATH_INFO", "/");
	c->query = env("QUERY_STRING", "");
	c->remote = env("REMOTE_ADDR", "unknown");
	c->cookie = env("HTTP_COOKIE", "");
	c->post = strcmp(c->method, "POST") == 0;
	c->conf = env("POSTERN_CONF", "/data/etc/postern.conf");
	c->users = env("POSTERN_USERS", "/data/etc/users");
	c->throttle = env("POSTERN_THROTTLE", "/run/postern/throttle");
	c->state = env("POSTERN_WEB_STATE", "/run/postern/web");
	c->sock = env("POSTERN_ADMIND", "/run/postern/admind.sock");
	c->data = env("POSTERN_DATA", "/data");
	c->now = time(NULL);
	if (c->post)
		read_body(c);
}

static const struct route *find_route(const char *path)
{
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
		if (strcmp(routes[i].path, path) == 0)
			return &routes[i];
	return NULL;
}

/* Sign-in, CSRF and role checks; 0 when the page may run. */
static int allowed(struct cgi *c, const struct route *r)
{
	if (r->access == PUBLIC)
		return 0;
	if (!session_load(c)) {
		redirect(c, "/login");
		return -1;
	}
	if (c->post && !csrf_ok(c)) {
		page_forbidden(c, "The form has expired or did not come from this page "
			       "(CSRF check failed). Reload the page and try again.");
		return -1;
	}
	if (r->access == ADMIN && !c->s.admin) {
		page_forbidden(c, "This page is for administrators. You can change your "
			       "own password.");
		return -1;
	}
	return 0;
}

int main(void)
{
	static struct cgi c;
	const struct route *r;

	init(&c);
	r = find_route(c.path);
	if (!r) {
		page_not_found(&c);
	} else if (strcmp(c.method, "GET") && strcmp(c.method, "HEAD") && !c.post) {
		page_not_found(&c);
	} else if (r->access != PUBLIC && setup_needed(&c)) {
		redirect(&c, "/setup");
	} else if (allowed(&c, r) == 0) {
		r->run(&c);
	}
	fflush(stdout);
	return 0;
}
