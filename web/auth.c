/*
 * auth.c - sign-in, sign-out, the own-password page and the first-boot
 * setup wizard. Failed sign-ins and wrong setup codes are throttled per
 * (name, address) through the shared throttle file (throttle.h), the same
 * one the mail daemons use.
 */
#include <stdio.h>
#include <string.h>

#include "cgi.h"
#include "html.h"
#include "throttle.h"

#define WEB_SETUP_THROTTLE_KEY "#setup-code"   /* throttle "user" for setup codes */

/* ---- sign-in ---- */

static void login_form(struct cgi *c, int status, const char *user)
{
	page_begin(c, status, "Sign in");
	page_errors(c, NULL, 0);
	form_open(c, "/login");
	field_input(c, "user", "User name", "text", user, "");
	field_input(c, "password", "Password", "password", "", "");
	form_close("Sign in");
	page_end(c);
}

/* Returns 1 when user/password are right; errors added otherwise. */
static int check_login(struct cgi *c, const char *user, const char *pw, int *admin)
{
	struct users_db db;
	char err[256], msg[128];
	const struct users_entry *e;
	long wait = throttle_check(c->throttle, user, c->remote, c->now);
	int ok;

	if (wait > 0) {
		snprintf(msg, sizeof msg, "Too many failed attempts: wait %ld seconds, then try again.", wait);
		add_error(c, "-", msg);
		return 0;
	}
	if (wait < 0) {   /* no rate limit, no sign-in: fail closed */
		add_error(c, "-", "Sign-in is unavailable: the login throttle file cannot be used.");
		return 0;
	}
	if (users_load(&db, c->users, err, sizeof err) < 0) {
		add_error(c, "-", "The users file cannot be read.");
		return 0;
	}
	ok = users_verify(&db, user, pw) == 1;
	e = ok ? users_find(&db, user) : NULL;
	*admin = e && e->role == USERS_ROLE_ADMIN;
	users_free(&db);
	if (ok) {
		throttle_success(c->throttle, user, c->remote, c->now);
		return 1;
	}
	throttle_fail(c->throttle, user, c->remote, c->now);
	add_error(c, "-", "Wrong user name or password.");
	return 0;
}

void pg_login(struct cgi *c)
{
	const char *user = form(c, "user");
	int admin = 0;

	if (!c->post) {
		login_form(c, 200, "");
		return;
	}
	if (!pre_ok(c)) {
		page_forbidden(c, "The sign-in form has expired (CSRF check failed). Reload the page.");
		return;
	}
	if (!check_login(c, user, form(c, "password"), &admin)) {
		login_form(c, c->rep.err[0].msg[0] == 'T' ? 429 :
			   c->rep.err[0].msg[0] == 'S' ? 503 : 401, user);
		return;
	}
	if (session_start(c, user, admin) < 0) {
		add_error(c, "-", "Cannot start a session (the box's /run is not writable?).");
		login_form(c, 500, user);
		return;
	}
	redirect(c, admin ? "/" : "/password");
}

void pg_logout(struct cgi *c)
{
	if (!c->post) {
		redirect(c, "/");
		return;
	}
	session_end(c);
	redirect(c, "/login");
}

/* ---- own password ---- */

void pg_password(struct cgi *c)
{
	struct users_db db;
	char err[256];
	int saved = 0;

	if (c->post) {
		const char *cur = form(c, "current"), *pw = form(c, "password");
		int ok = 0;
		if (users_load(&db, c->users, err, sizeof err) == 0) {
			ok = users_verify(&db, c->s.user, cur) == 1;
			users_free(&db);
		}
		if (!ok)
			add_error(c, "current", "This is not your current password.");
		else if (strcmp(pw, form(c, "password2")) != 0)
			add_error(c, "password2", "The two new passwords differ.");
		else {
			const char *argv[] = { "user-passwd", c->s.user, pw };
			saved = admind_call(c, argv, 3) == 0;
		}
		if (saved) {
			redirect(c, "/password?saved=1");
			return;
		}
	}
	page_begin(c, c->post ? 400 : 200, "My password");
	page_notice(c);
	page_errors(c, (const char *[]){ "current", "password", "password2" }, 3);
	html_out(stdout, "<p>Signed in as <strong>%s</strong>. The password serves mail "
		 "(SMTP, IMAP) and this page.</p>\n", c->s.user);
	form_open(c, "/password");
	field_input(c, "current", "Current password", "password", "", "");
	field_input(c, "password", "New password", "password", "", "");
	field_input(c, "password2", "New password again", "password", "", "");
	form_close("Change password");
	page_end(c);
}

/* ---- first-boot setup wizard ---- */

static const char *const wan_modes[] = { "dhcp", "static", NULL };
static const char *const smtp_tls[] = { "starttls", "implicit", NULL };
static const char *const pop_tls[] = { "stls", "implicit", NULL };

/* Form fields named as configuration keys go to admind as they are. */
static const char *const setup_keys[] = {
	"hostname", "mail-domain", "internal-domain", "lan.address",
	"wan.mode", "wan.address", "wan.gateway", "wan.dns",
	"smarthost.host", "smarthost.port", "smarthost.tls", "smarthost.user",
};

/* What a wizard field shows: what was typed, else the configuration's
 * value (a provisioned box), else dflt. */
static const char *wv(struct cgi *c, const char *key, const char *dflt)
{
	const char *v = c->post ? form(c, key) : conf_value(c, key);

	return *v ? v : dflt;
}

static void setup_form(struct cgi *c, int status)
{
	const char *v;

	page_begin(c, status, "Set up this box");
	page_errors(c, (const char *[]){ "code", "admin", "password", "password2", "mail-domain",
		"internal-domain", "hostname", "lan.address", "wan.mode", "wan.address",
		"wan.gateway", "wan.dns", "account.name", "account.server", "account.tls",
		"account.user", "account.password", "smarthost.host", "smarthost.port",
		"smarthost.tls", "smarthost.user", "smarthost.password" }, 22);
	html_out(stdout, "<p>Welcome. Fill in what you know; everything can be changed later.</p>\n");
	form_open(c, "/setup");
	html_out(stdout, "<fieldset><legend>1. Prove you are at the box</legend>\n");
	field_input(c, "code", "Setup code", "text", form(c, "code"),
		    "shown on the box's console (screen or serial), or written in the provisioning file");
	html_out(stdout, "</fieldset><fieldset><legend>2. Administrator</legend>\n");
	v = form(c, "admin");
	field_input(c, "admin", "Administrator's user name", "text", *v ? v : "admin", "also a mailbox");
	field_input(c, "password", "Password", "password", "", "");
	field_input(c, "password2", "Password again", "password", "", "");
	html_out(stdout, "</fieldset><fieldset><legend>3. Company</legend>\n");
	field_input(c, "mail-domain", "Company mail domain", "text", wv(c, "mail-domain", ""), "e.g. example.com");
	field_input(c, "internal-domain", "Internal domain", "text", wv(c, "internal-domain", "office.lan"), "names of the office network");
	field_input(c, "hostname", "The box's name", "text", wv(c, "hostname", "postern"), "");
	html_out(stdout, "</fieldset><fieldset><legend>4. Provider mailbox (POP3)</legend>\n");
	field_input(c, "account.name", "Account name", "text", form(c, "account.name"), "leave empty to add accounts later");
	field_input(c, "account.server", "POP3 server", "text", form(c, "account.server"), "");
	field_select(c, "account.tls", "TLS", form(c, "account.tls"), pop_tls, "");
	field_input(c, "account.user", "Login", "text", form(c, "account.user"), "");
	field_input(c, "account.password", "Password", "password", "", "");
	html_out(stdout, "</fieldset><fieldset><legend>5. Outbound mail (smart host)</legend>\n");
	field_input(c, "smarthost.host", "Provider's SMTP server", "text", wv(c, "smarthost.host", ""), "leave empty to set up later");
	field_input(c, "smarthost.port", "Port", "text", form(c, "smarthost.port"), "");
	field_select(c, "smarthost.tls", "TLS", form(c, "smarthost.tls"), smtp_tls, "");
	field_input(c, "smarthost.user", "Login", "text", form(c, "smarthost.user"), "");
	field_input(c, "smarthost.password", "Password", "password", "", "");
	html_out(stdout, "</fieldset><fieldset><legend>6. Network</legend>\n");
	field_input(c, "lan.address", "LAN address and prefix", "text", wv(c, "lan.address", "192.168.10.1/24"), "");
	field_select(c, "wan.mode", "Internet (WAN)", wv(c, "wan.mode", "dhcp"), wan_modes, "");
	field_input(c, "wan.address", "WAN address and prefix", "text", form(c, "wan.address"), "static only");
	field_input(c, "wan.gateway", "WAN gateway", "text", form(c, "wan.gateway"), "static only");
	field_input(c, "wan.dns", "Provider's DNS servers", "text", form(c, "wan.dns"), "static only");
	html_out(stdout, "</fieldset>\n");
	form_close("Set up");
	page_end(c);
}

static void push(const char **argv, int *argc, const char *k, const char *v)
{
	argv[(*argc)++] = k;
	argv[(*argc)++] = v;
}

/* The provider account's fields, keyed account.NAME.*, and its secret. */
static void setup_account(struct cgi *c, const char **argv, int *argc, const char *admin)
{
	const char *name = form(c, "account.name");
	char k[128], secret[80];

	if (!*name)
		return;
	static const char *const f[] = { "server", "tls", "user" };
	for (int i = 0; i < 3; i++) {
		snprintf(k, sizeof k, "account.%s.%s", name, f[i]);
		char t[64];
		snprintf(t, sizeof t, "account.%s", f[i]);
		push(argv, argc, arena_strdup(k), form(c, arena_strdup(t)));
	}
	snprintf(k, sizeof k, "account.%s.password-file", name);
	snprintf(secret, sizeof secret, "%s.pass", name);
	push(argv, argc, arena_strdup(k), arena_strdup(secret));
	snprintf(k, sizeof k, "account.%s.deliver-to", name);
	push(argv, argc, arena_strdup(k), admin);
	snprintf(k, sizeof k, "secret:%s.pass", name);
	push(argv, argc, arena_strdup(k), form(c, "account.password"));
}

/* A wizard field goes to admind when filled in and its section is in use:
 * the smart host only with a host, WAN addresses only in static mode
 * (selects always send a value, which would create the section). */
static int setup_key_wanted(struct cgi *c, const char *key)
{
	if (!*form(c, key) || strcmp(form(c, key), conf_value(c, key)) == 0)
		return 0;
	if (strncmp(key, "smarthost.", 10) == 0)
		return *form(c, "smarthost.host") != '\0';
	if (strncmp(key, "wan.", 4) == 0 && strcmp(key, "wan.mode") != 0)
		return strcmp(form(c, "wan.mode"), "static") == 0;
	return 1;
}

static int setup_submit(struct cgi *c)
{
	const char *argv[80], *admin = form(c, "admin");
	int argc = 0;

	if (strcmp(form(c, "password"), form(c, "password2")) != 0) {
		add_error(c, "password2", "The two passwords differ.");
		return -1;
	}
	argv[argc++] = "setup";
	argv[argc++] = form(c, "code");
	argv[argc++] = admin;
	argv[argc++] = form(c, "password");
	for (size_t i = 0; i < sizeof setup_keys / sizeof setup_keys[0]; i++)
		if (setup_key_wanted(c, setup_keys[i]))
			push(argv, &argc, setup_keys[i], form(c, setup_keys[i]));
	if (*form(c, "smarthost.host") && *form(c, "smarthost.user")) {
		push(argv, &argc, "smarthost.password-file", "smarthost.pass");
		push(argv, &argc, "secret:smarthost.pass", form(c, "smarthost.password"));
	}
	setup_account(c, argv, &argc, admin);
	return admind_call(c, argv, argc);
}

/* Errors keyed account.NAME.x are shown at account.x. */
static void map_account_errors(struct cgi *c)
{
	const char *name = form(c, "account.name");
	char pre[80];

	snprintf(pre, sizeof pre, "account.%s.", name);
	for (int i = 0; *name && i < c->rep.nerr; i++) {
		const char *f = c->rep.err[i].field;
		if (strncmp(f, pre, strlen(pre)) == 0) {
			char k[96];
			snprintf(k, sizeof k, "account.%s", f + strlen(pre));
			c->rep.err[i].field = arena_strdup(strcmp(k, "account.password-file") ? k : "account.password");
		} else if (strncmp(f, "secret:", 7) == 0) {
			c->rep.err[i].field = strstr(f, "smarthost") ? "smarthost.password" : "account.password";
		}
	}
}

void pg_setup(struct cgi *c)
{
	long wait;

	if (!setup_needed(c)) {
		redirect(c, "/login");
		return;
	}
	if (!c->post) {
		setup_form(c, 200);
		return;
	}
	if (!pre_ok(c)) {
		page_forbidden(c, "The setup form has expired (CSRF check failed). Reload the page.");
		return;
	}
	wait = throttle_check(c->throttle, WEB_SETUP_THROTTLE_KEY, c->remote, c->now);
	if (wait < 0) {
		add_error(c, "code", "Setup is unavailable: the throttle file cannot be used.");
		setup_form(c, 503);
		return;
	}
	if (wait > 0) {
		char msg[128];
		snprintf(msg, sizeof msg, "Too many wrong setup codes: wait %ld seconds.", wait);
		add_error(c, "code", msg);
		setup_form(c, 429);
		return;
	}
	if (setup_submit(c) == 0) {
		throttle_success(c->throttle, WEB_SETUP_THROTTLE_KEY, c->remote, c->now);
		session_start(c, form(c, "admin"), 1);
		if (!lan_moved(c, "Set up this box", "/login"))
			redirect(c, "/?saved=1");
		return;
	}
	if (field_error(c, "code"))
		throttle_fail(c->throttle, WEB_SETUP_THROTTLE_KEY, c->remote, c->now);
	map_account_errors(c);
	setup_form(c, 400);
}
