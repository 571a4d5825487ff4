/*
 * settings.c - table-driven settings pages (outbound mail, network, DNS,
 * firewall) and the provider accounts page. Each page lists its settings
 * by configuration key (docs/CONFIG.md); a POST sends admind only the
 * values that changed, in one transaction, and shows each error next to
 * its field. Passwords go to the secrets directory, never into the
 * configuration.
 */
#include <stdio.h>
#include <string.h>

#include "cgi.h"
#include "config.h"
#include "firewall.h"
#include "html.h"

#define WEB_VALUE_MAX 65536
#define WEB_PAIRS_MAX 96

struct setting {
	const char *key;        /* relative to the page's prefix */
	const char *label;
	const char *kind;       /* text, bool, select, list (textarea), secret */
	const char *const *opts;
	const char *help;
};

struct spage {
	const char *path, *title, *intro;
	const struct setting *s;
	int n;
	void (*extra)(struct cgi *c);   /* shown below the form, or NULL */
};

static void firewall_preview(struct cgi *c);

static const char *const yes_no[] = { "yes", "no", NULL };
static const char *const no_yes[] = { "no", "yes", NULL };
static const char *const smtp_tls[] = { "starttls", "implicit", NULL };
static const char *const pop_tls[] = { "stls", "implicit", NULL };
static const char *const verify[] = { "ca", "pin", NULL };
static const char *const masq[] = { "domain", "login", "off", NULL };
static const char *const wan_mode[] = { "dhcp", "static", NULL };
static const char *const dns_tr[] = { "udp", "tls", NULL };
static const char *const fdns[] = { "redirect", "reject", NULL };

static const struct setting smarthost[] = {
	{ "smarthost.host", "Provider's SMTP server", "text", NULL, "e.g. smtp.provider.example" },
	{ "smarthost.port", "Port", "text", NULL, "587 for STARTTLS, 465 for implicit TLS" },
	{ "smarthost.tls", "TLS", "select", smtp_tls, "never clear text" },
	{ "smarthost.verify", "Certificate check", "select", verify, "ca: trusted CA and host name; pin: the server key's fingerprint" },
	{ "smarthost.pin", "Pinned key (SHA-256)", "text", NULL, "64 hex digits, with verify pin" },
	{ "smarthost.user", "Login", "text", NULL, "" },
	{ "smarthost.password", "Password", "secret", NULL, "leave empty to keep the stored one" },
	{ "smarthost.masquerade", "Sender rewriting", "select", masq, "" },
};

static const struct setting network[] = {
	{ "lan.address", "LAN address and prefix", "text", NULL, "the box on the office network, e.g. 192.168.10.1/24" },
	{ "lan.dhcp", "DHCP server on the LAN", "bool", yes_no, "" },
	{ "lan.dhcp-range", "DHCP range", "text", NULL, "FIRST LAST, e.g. 192.168.10.128 192.168.10.254" },
	{ "lan.dhcp-lease", "DHCP lease time", "text", NULL, "e.g. 12h" },
	{ "wan.mode", "Internet (WAN) address", "select", wan_mode, "" },
	{ "wan.address", "WAN address and prefix", "text", NULL, "static mode only" },
	{ "wan.gateway", "WAN gateway", "text", NULL, "static mode only" },
	{ "wan.dns", "Provider's DNS servers", "text", NULL, "static mode only; addresses separated by blanks" },
};

static const struct setting dns[] = {
	{ "hostname", "The box's name", "text", NULL, "" },
	{ "internal-domain", "Internal domain", "text", NULL, "e.g. office.lan" },
	{ "dns.host", "Internal hosts", "list", NULL, "one per line: NAME ADDRESS, e.g. printer 192.168.10.20" },
	{ "dns.upstream", "Upstream resolvers", "text", NULL, "empty: the provider's (from the WAN)" },
	{ "dns.transport", "Upstream transport", "select", dns_tr, "tls: DNS over TLS" },
	{ "dns.tls-name", "DNS-over-TLS server name", "text", NULL, "" },
};

static const struct setting firewall[] = {
	{ "firewall.single-interface", "Single-interface mode", "bool", no_yes, "the box sits behind another router" },
	{ "firewall.blocked-ports", "Ports the LAN may not reach on the Internet", "text", NULL, "blank-separated" },
	{ "firewall.foreign-dns", "DNS to other servers", "select", fdns, "" },
	{ "firewall.allow", "Exceptions", "list", NULL, "one per line: HOST-OR-PREFIX [PORT...]" },
	{ "firewall.log-blocked", "Log blocked attempts", "bool", yes_no, "" },
};

static const struct setting account[] = {
	{ "server", "POP3 server", "text", NULL, "e.g. pop.provider.example" },
	{ "port", "Port", "text", NULL, "110 for STLS, 995 for implicit TLS" },
	{ "tls", "TLS", "select", pop_tls, "never clear text" },
	{ "verify", "Certificate check", "select", verify, "" },
	{ "pin", "Pinned key (SHA-256)", "text", NULL, "with verify pin" },
	{ "user", "Login", "text", NULL, "" },
	{ "password", "Password", "secret", NULL, "leave empty to keep the stored one" },
	{ "deliver-to", "Deliver to", "text", NULL, "a local user, or multidrop" },
	{ "keep", "Keep messages on the server", "bool", no_yes, "" },
	{ "poll", "Poll every", "text", NULL, "e.g. 10m" },
	{ "enabled", "Enabled", "bool", yes_no, "" },
};

#define N(a) ((int)(sizeof a / sizeof a[0]))
static const struct spage pages[] = {
	{ "/smarthost", "Outbound mail (smart host)", "External mail leaves through the provider's SMTP server over verified TLS.", smarthost, N(smarthost), NULL },
	{ "/network", "Network and DHCP", "Changes apply at once, without a restart: the new firewall rules are checked first, and if the new LAN address cannot be brought up the old one stays. When the LAN address changes, this page moves to the new address: your browser's connection to the old one ends, and your computer may need a new DHCP lease (reconnect its network cable or Wi-Fi) before it can reach the new one.", network, N(network), NULL },
	{ "/dns", "DNS and internal hosts", "Names the box answers for the office.", dns, N(dns), NULL },
	{ "/firewall", "Firewall", "Desktops may not speak mail protocols or DNS to the Internet; only the box may.", firewall, N(firewall), firewall_preview },
};

/* ---- configuration access ---- */

static struct config *model(struct cgi *c)
{
	static struct config *cfg;
	static struct config_errors errs;

	if (!cfg)
		cfg = config_load(c->conf, &errs);
	if (!cfg)
		cfg = config_new();
	return cfg;
}

const char *conf_value(struct cgi *c, const char *key)
{
	static char buf[WEB_VALUE_MAX];

	if (config_get(model(c), key, buf, sizeof buf) < 0)
		return "";
	return arena_strdup(buf);
}

int conf_accounts(struct cgi *c)
{
	return model(c)->naccounts;
}

int setup_needed(struct cgi *c)
{
	struct users_db db;
	char err[256];
	int needed = 1;

	if (users_load(&db, c->users, err, sizeof err) < 0)
		return 0;
	for (size_t i = 0; i < db.n; i++)
		if (db.e[i].kind == USERS_KIND_USER && db.e[i].role == USERS_ROLE_ADMIN &&
		    strcmp(db.e[i].hash, "!") != 0)
			needed = 0;
	users_free(&db);
	return needed;
}

/* ---- rendering ---- */

static const char *full_key(const char *prefix, const char *key)
{
	static char k[256];

	snprintf(k, sizeof k, "%s%s", prefix, key);
	return arena_strdup(k);
}

/* Form text of a list: CRLF to LF, trailing blank lines dropped. */
static const char *clean_list(const char *v)
{
	char *out = arena_strdup(v), *o = out;

	for (const char *p = v; *p; p++)
		if (*p != '\r')
			*o++ = *p;
	*o = '\0';
	while (o > out && (o[-1] == '\n' || o[-1] == ' '))
		*--o = '\0';
	return out;
}

static void render_one(struct cgi *c, const char *prefix, const struct setting *s, int again)
{
	const char *key = full_key(prefix, s->key);
	const char *v = again ? form(c, s->key) : conf_value(c, key);

	if (strcmp(s->kind, "secret") == 0)
		field_input(c, s->key, s->label, "password", "", s->help);
	else if (strcmp(s->kind, "list") == 0)
		field_textarea(c, s->key, s->label, v, s->help);
	else if (s->opts)
		field_select(c, s->key, s->label, v, s->opts, s->help);
	else
		field_input(c, s->key, s->label, "text", v, s->help);
}

static void render_fields(struct cgi *c, const char *prefix, const struct setting *s, int n,
			  int again)
{
	for (int i = 0; i < n; i++)
		render_one(c, prefix, &s[i], again);
}

static void show_errors(struct cgi *c, const struct setting *s, int n)
{
	const char *shown[WEB_PAIRS_MAX];

	for (int i = 0; i < n && i < WEB_PAIRS_MAX; i++)
		shown[i] = s[i].key;
	page_errors(c, shown, n);
}

/* ---- saving ---- */

/* Errors come back keyed "account.NAME.server": show them as "server". */
static void strip_prefix(struct cgi *c, const char *prefix)
{
	size_t n = strlen(prefix);

	for (int i = 0; n && i < c->rep.nerr; i++)
		if (strncmp(c->rep.err[i].field, prefix, n) == 0)
			c->rep.err[i].field += n;
}

/* Sends the changed settings (and the secret) to admind. */
static int save_fields(struct cgi *c, const char *prefix, const struct setting *s, int n,
		       const char *secret_name)
{
	const char *argv[2 * WEB_PAIRS_MAX + 1], *secret = "";
	int argc = 0;

	argv[argc++] = "config";
	for (int i = 0; i < n; i++) {
		const char *key = full_key(prefix, s[i].key);
		const char *v = strcmp(s[i].kind, "list") == 0 ? clean_list(form(c, s[i].key))
							       : form(c, s[i].key);
		if (strcmp(s[i].kind, "secret") == 0) {
			secret = v;
			key = full_key(prefix, strcmp(prefix, "") ? "password-file" : "smarthost.password-file");
			if (!*v)
				continue;
			v = secret_name;
		}
		if (strcmp(v, conf_value(c, key)) != 0) {
			argv[argc++] = key;
			argv[argc++] = v;
		}
	}
	if (argc > 1 && admind_call(c, argv, argc) < 0) {
		strip_prefix(c, prefix);
		return -1;
	}
	if (*secret) {
		const char *sv[] = { "secret", secret_name, secret };
		if (admind_call(c, sv, 3) < 0) {
			for (int i = 0; i < c->rep.nerr; i++)
				c->rep.err[i].field = strcmp(prefix, "") ? "password" : "smarthost.password";
			return -1;
		}
	}
	return 0;
}

/* ---- "Test connection" (a job on /probe, probe.c) and "Pin this key" ---- */

/* prefix "smarthost." or "account.NAME.": verify pin, pin as confirmed. */
static int pin_key(struct cgi *c, const char *prefix)
{
	const char *argv[] = { "config", full_key(prefix, "verify"), "pin",
			       full_key(prefix, "pin"), form(c, "pin") };

	return admind_call(c, argv, 5);
}

/* The test runs as a job whose page refreshes itself until the result is
 * there (probe.c); its "Pin this key" posts back to the settings page. */
static void test_button(struct cgi *c, const char *kind, const char *name)
{
	html_out(stdout, "<form method=\"post\" action=\"/probe\"><input type=\"hidden\" "
		 "name=\"csrf\" value=\"%s\"><input type=\"hidden\" name=\"kind\" value=\"%s\">"
		 "<input type=\"hidden\" name=\"name\" value=\"%s\"><button type=\"submit\">"
		 "Test connection</button> <small>uses the saved settings</small></form>\n",
		 c->s.csrf, kind, name);
}

static const struct spage *find_page(const char *path)
{
	for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++)
		if (strcmp(pages[i].path, path) == 0)
			return &pages[i];
	return NULL;
}

/* The LAN address moved (admind answered "lan-address ADDR"): the old
 * address is gone, so a redirect would not reach us; say where to go
 * (https://ADDR + next). Returns 1 when it showed that page. */
int lan_moved(struct cgi *c, const char *title, const char *next)
{
	const char *d = c->rep.ok && c->rep.data ? strstr(c->rep.data, "lan-address ") : NULL;
	char addr[64];

	if (!d || sscanf(d + 12, "%63[0-9.]", addr) != 1)
		return 0;
	page_begin(c, 200, title);
	html_out(stdout, "<section role=\"status\"><h2>The LAN address has changed</h2>"
		 "<p class=\"notice\">The box now answers at <strong>%s</strong>. The old "
		 "address no longer works, so this page ends here: continue at "
		 "<a href=\"https://%s%s\">https://%s/</a>.</p><p>If your computer took "
		 "its address from the box, it needs a new lease in the new network first "
		 "(reconnect its cable or Wi-Fi, or restart it).</p></section>\n",
		 addr, addr, next, addr);
	page_end(c);
	return 1;
}

void pg_settings(struct cgi *c)
{
	const struct spage *p = find_page(c->path);
	int again = 0;

	const char *op = form(c, "op");

	if (c->post && strcmp(p->path, "/smarthost") == 0 && strcmp(op, "pin") == 0) {
		if (pin_key(c, "smarthost.") == 0) {
			redirect(c, "/smarthost?saved=1");
			return;
		}
		again = 1;
	} else if (c->post) {
		if (save_fields(c, "", p->s, p->n, "smarthost.pass") == 0) {
			char loc[64];
			if (lan_moved(c, "Network and DHCP", "/network"))
				return;
			snprintf(loc, sizeof loc, "%s?saved=1", p->path);
			redirect(c, loc);
			return;
		}
		again = 1;
	}
	page_begin(c, again ? 400 : 200, p->title);
	page_notice(c);
	show_errors(c, p->s, p->n);
	html_out(stdout, "<p>%s</p>\n", p->intro);
	form_open(c, p->path);
	render_fields(c, "", p->s, p->n, again);
	form_close("Save");
	if (strcmp(p->path, "/smarthost") == 0)
		test_button(c, "smarthost", "");
	if (p->extra)
		p->extra(c);
	page_end(c);
}

/* The rules generated from the saved configuration (src/lib/firewall.h):
 * the box's own, or in single-interface mode those the office router
 * should carry. */
static void firewall_preview(struct cgi *c)
{
	static char rules[FW_RULES_MAX];
	char err[FW_ERR_MAX];
	const struct config *cfg = model(c);
	int single = cfg->firewall.single_interface;
	int n = single ? firewall_office_rules(cfg, rules, sizeof rules, err, sizeof err)
		       : firewall_rules(cfg, FW_IPV4, rules, sizeof rules, err, sizeof err);

	html_out(stdout, "<h2>%s</h2>\n", single ? "Rules for the office router"
		 : "Rules preview (IPv4)");
	if (n < 0)
		html_out(stdout, "<p class=\"error\">%s</p>\n", err);
	else
		html_out(stdout, "<pre class=\"log\">%s</pre>\n", rules);
}

/* ---- provider accounts ---- */

static void account_list(struct cgi *c)
{
	struct config *cfg = model(c);

	if (cfg->naccounts == 0) {
		html_out(stdout, "<p>No provider account yet.</p>\n");
		return;
	}
	html_out(stdout, "<table><caption>Provider POP3 accounts</caption><thead><tr><th scope=\"col\">Name</th>"
		 "<th scope=\"col\">Server</th><th scope=\"col\">Login</th><th scope=\"col\">Delivers to</th>"
		 "<th scope=\"col\">Actions</th></tr></thead><tbody>\n");
	for (int i = 0; i < cfg->naccounts; i++) {
		const struct config_account *a = &cfg->account[i];
		html_out(stdout, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>"
			 "<a href=\"/accounts?name=%u\">Edit</a> ", a->h.name, a->server, a->user,
			 a->deliver_to, a->h.name);
		button_form(c, "/accounts", "Delete", "name", a->h.name, "delete");
		html_out(stdout, "</td></tr>\n");
	}
	html_out(stdout, "</tbody></table>\n");
}

static int account_post(struct cgi *c, const char *name)
{
	char prefix[64], secret[64];

	if (strcmp(form(c, "op"), "pin") == 0) {
		char pre[64];
		snprintf(pre, sizeof pre, "account.%s.", name);
		return pin_key(c, arena_strdup(pre));
	}
	if (strcmp(form(c, "op"), "delete") == 0) {
		const char *argv[] = { "config-unset", full_key("account.", name) };
		return admind_call(c, argv, 2);
	}
	if (!*name) {
		add_error(c, "name", "give the account a name (letters, digits, '.', '_', '-')");
		return -1;
	}
	snprintf(prefix, sizeof prefix, "account.%s.", name);
	snprintf(secret, sizeof secret, "%s.pass", name);
	return save_fields(c, prefix, account, N(account), secret);
}

static void account_errors(struct cgi *c)
{
	const char *shown[N(account) + 1];

	for (int i = 0; i < N(account); i++)
		shown[i] = account[i].key;
	shown[N(account)] = "name";
	page_errors(c, shown, N(account) + 1);
}

void pg_accounts(struct cgi *c)
{
	const char *name = c->post ? form(c, "name") : param(c, "name");
	char prefix[64];
	int again = 0;

	if (c->post) {
		if (account_post(c, name) == 0) {
			redirect(c, "/accounts?saved=1");
			return;
		}
		again = 1;
	}
	snprintf(prefix, sizeof prefix, "account.%s.", name);
	page_begin(c, again ? 400 : 200, "Provider accounts");
	page_notice(c);
	account_errors(c);
	account_list(c);
	html_out(stdout, "<h2>%s</h2>\n", *name && !again ? "Edit account" : "Add or change an account");
	form_open(c, "/accounts");
	field_input(c, "name", "Account name", "text", name, "letters, digits, '.', '_', '-'");
	render_fields(c, *name ? prefix : "account.-.", account, N(account), again);
	form_close("Save account");
	if (*name && config_account(model(c), name))
		test_button(c, "account", name);
	page_end(c);
}
