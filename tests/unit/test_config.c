/*
 * test_config.c - postern.conf: good files, every kind of error with its
 * line and message, round trips, config_set/get/unset, atomic save, and the
 * SIGHUP pattern (a broken file leaves the old model in place).
 */
#include "check.h"
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static struct config_errors errs;
static char out[CONFIG_FILE_MAX + 1];

static const char good[] =
	"# office box\n"
	"hostname   mailbox\n"
	"mail-domain example.com\n"
	"internal-domain office.lan\n"
	"\n"
	"[wan]\n"
	"mode static\n"
	"address 203.0.113.10/24\n"
	"gateway 203.0.113.1\n"
	"dns 203.0.113.53 2001:db8::53\n"
	"[lan]\n"
	"interface br0\n"
	"bridge-ports eth1 eth2\n"
	"address 192.168.10.1/24\n"
	"dhcp-range 192.168.10.100 192.168.10.199\n"
	"[smarthost]\n"
	"host smtp.provider.example   # the provider\n"
	"tls implicit\n"
	"user office@example.com\n"
	"password-file smarthost.pass\n"
	"give-up 2d\n"
	"[account anna]\n"
	"server pop.provider.example\n"
	"user anna@example.com\n"
	"password-file anna.pass\n"
	"deliver-to anna\n"
	"[account shared]\n"
	"server 192.0.2.7\n"
	"tls implicit\n"
	"verify pin\n"
	"pin 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
	"user domain@example.com\n"
	"password-file shared-pop.pass\n"
	"deliver-to multidrop\n"
	"catch-all office\n"
	"max-size 512K\n"
	"poll 90s\n"
	"[dns]\n"
	"upstream 9.9.9.9\n"
	"host printer 192.168.10.20\n"
	"host nas 192.168.10.30 fd00::30\n"
	"rebind-allow intranet.example.com\n"
	"[firewall]\n"
	"allow 192.168.10.50 25 587\n"
	"allow 192.168.10.64/28\n"
	"[filter]\n"
	"block-extensions exe scr\n"
	"[backup]\n"
	"enabled yes\n"
	"recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n"
	"time 23:45\n";

static struct config *parse(const char *text)
{
	return config_parse("postern.conf", text, strlen(text), &errs);
}

static void t_good(void)
{
	struct config *c = parse(good);
	const struct config_account *a;
	char buf[64];

	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "%s\n", errs.e[0].text);
		return;
	}
	CHECK_STREQ(c->global.hostname, "mailbox");
	CHECK_EQ(c->wan.mode, CONFIG_WAN_STATIC);
	CHECK_EQ(c->wan.address.len, 24);
	CHECK_EQ(c->wan.ndns, 2);
	CHECK_EQ(c->wan.dns[1].family, AF_INET6);
	CHECK_EQ(c->lan.nbridge_ports, 2);
	CHECK_STREQ(c->lan.bridge_ports[1], "eth2");
	CHECK_EQ(c->smarthost.port, 465);                 /* derived from tls implicit */
	CHECK_STREQ(c->smarthost.masquerade_domain, "example.com");
	CHECK_EQ(c->smarthost.give_up, 2 * 86400);
	CHECK_EQ(c->smarthost.delay_notice, 4 * 3600);    /* default */
	CHECK_EQ(c->naccounts, 2);
	a = config_account(c, "anna");
	CHECK(a && a->port == 110 && a->tls == CONFIG_POP_STLS && a->poll == 600);
	CHECK(a && a->max_size == 50ull << 20 && a->enabled && !a->keep);
	a = config_account(c, "shared");
	CHECK(a && a->port == 995 && a->verify == CONFIG_VERIFY_PIN);
	CHECK(a && a->pin.sha256[0] == 0 && a->pin.sha256[31] == 0x1f);
	CHECK(a && a->max_size == 512 * 1024 && a->poll == 90);
	CHECK(a && strcmp(a->password_file, "shared-pop.pass") == 0);
	CHECK(config_account(c, "nobody") == NULL);
	CHECK_EQ(c->dns.nhosts, 2);
	CHECK_STREQ(c->dns.hosts[1].name, "nas");
	CHECK_EQ(c->dns.hosts[1].naddr, 2);
	CHECK_EQ(c->dns.tls_port, 853);
	CHECK_EQ(c->firewall.nblocked_ports, 8);           /* default list */
	CHECK_EQ(c->firewall.nallow, 2);
	CHECK_EQ(c->firewall.allow[0].nports, 2);
	CHECK_EQ(c->firewall.allow[1].net.len, 28);
	CHECK_EQ(c->filter.nblock_extensions, 2);
	CHECK_STREQ(c->filter.block_extensions[0], "exe");
	CHECK_EQ(c->backup.time, 23 * 60 + 45);
	CHECK_EQ(config_get(c, "account.shared.port", buf, sizeof buf), 3);
	CHECK_STREQ(buf, "995");
	config_get(c, "dns.host", buf, sizeof buf);
	CHECK_STREQ(buf, "printer 192.168.10.20\nnas 192.168.10.30 fd00::30");
	config_get(c, "smtp.max-message-size", buf, sizeof buf);
	CHECK_STREQ(buf, "25M");
	config_get(c, "smarthost.pin", buf, sizeof buf);
	CHECK_STREQ(buf, "");
	CHECK_EQ(config_get(c, "smarthost.nope", buf, sizeof buf), -1);
	CHECK_EQ(config_get(c, "hostname", buf, 3), -1);  /* too small */
	config_free(c);
}

static void t_defaults(void)
{
	struct config *c = parse("mail-domain example.com\n");
	struct config_range r;
	char a[64], b[64];

	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_STREQ(c->global.hostname, "postern");
	CHECK_STREQ(c->global.internal_domain, "office.lan");
	CHECK_EQ(c->wan.mode, CONFIG_WAN_DHCP);
	CHECK_EQ(c->lan.dhcp, 1);
	CHECK_EQ(c->lan.dhcp_lease, 12 * 3600);
	CHECK_EQ(c->smtp.max_message_size, 25ull << 20);
	CHECK_EQ(c->smarthost.port, 587);
	CHECK_EQ(c->firewall.blocked_ports[3], 2525);
	CHECK_EQ(c->dns.rate_limit, 200);
	CHECK_EQ(c->dns.cache_size, 4ull << 20);
	CHECK_EQ(config_dhcp_range(c, &r), 0);
	CHECK_STREQ(config_addr_str(&r.first, a, sizeof a), "192.168.10.128");
	CHECK_STREQ(config_addr_str(&r.last, b, sizeof b), "192.168.10.254");
	CHECK_EQ(config_format(c, out, sizeof out), (int)strlen("mail-domain example.com\n"));
	CHECK_STREQ(out, "mail-domain example.com\n");
	config_free(c);
}

/* Each bad file gets exactly one error, with this text. */
static const struct { const char *text; int line; const char *msg; } bad[] = {
	{ "mail-domain example.com\n[account acme]\nserver pop.x\nport 70000\n", 4,
	  "postern.conf:4: account \"acme\": port: 70000 is not a port number (1-65535)" },
	{ "mail-domain example.com\n[smarthost]\nhost -bad-.example\n", 3,
	  "postern.conf:3: smarthost: host: -bad-.example is not a host name or IP address" },
	{ "mail-domain example\n", 1,
	  "postern.conf:1: mail-domain: example is not a domain name (like example.com)" },
	{ "hostname postern\n", 0,
	  "postern.conf: mail-domain: required (the company's mail domain, like example.com)" },
	{ "mail-domain example.com\n\n[lan]\naddress 192.168.10.1\n", 4,
	  "postern.conf:4: lan: address: 192.168.10.1 is not an address with a prefix length "
	  "(like 192.168.10.1/24)" },
	{ "mail-domain example.com\n[lan]\ndhcp-range 192.168.11.10 192.168.11.20\n", 3,
	  "postern.conf:3: lan: dhcp-range: 192.168.11.10-192.168.11.20 is not inside the LAN prefix" },
	{ "mail-domain example.com\n[lan]\ndhcp-range 192.168.10.20 192.168.10.10\n", 3,
	  "postern.conf:3: lan: dhcp-range: the range starts after it ends" },
	{ "mail-domain example.com\n[lan]\ndhcp-range 192.168.10.1 192.168.10.10\n", 3,
	  "postern.conf:3: lan: dhcp-range: the range holds the box's own address 192.168.10.1" },
	{ "mail-domain example.com\n[account acme]\nserver pop.x\nuser a\npassword-file a.pass\n"
	  "deliver-to multidrop\n", 6,
	  "postern.conf:6: account \"acme\": catch-all: required when deliver-to is multidrop" },
	{ "mail-domain example.com\n[account acme]\nserver pop.x\nuser a\npassword-file a.pass\n"
	  "deliver-to anna\nverify pin\n", 7,
	  "postern.conf:7: account \"acme\": pin: required with verify pin" },
	{ "mail-domain example.com\n[smarthost]\nhost h.example\npin 12ab\n", 4,
	  "postern.conf:4: smarthost: pin: 12ab is not a SHA-256 pin (64 hex digits or 44 "
	  "characters of base64)" },
	{ "mail-domain example.com\n[smarthost]\nhost h.example\ngive-up 4 days\n", 4,
	  "postern.conf:4: smarthost: give-up: 4 days is not a duration (like 30s, 10m, 4h, 4d, 1w)" },
	{ "mail-domain example.com\n[smtp]\nmax-message-size 25X\n", 3,
	  "postern.conf:3: smtp: max-message-size: 25X is not a size (like 512K, 25M, 1G)" },
	{ "mail-domain example.com\n[smarthost]\ntls stls\n", 3,
	  "postern.conf:3: smarthost: tls: stls is not one of: starttls, implicit" },
	{ "mail-domain example.com\n[smarthost]\nhost h.example\npassword-file ../etc/shadow\n", 4,
	  "postern.conf:4: smarthost: password-file: ../etc/shadow is not a file name under the "
	  "secrets directory (like acme.pass)" },
	{ "mail-domain example.com\n[wan]\nprot 5\n", 3,
	  "postern.conf:3: wan: unknown setting \"prot\"" },
	{ "mail-domain example.com\n[wlan]\nport 5\n", 2, "postern.conf:2: unknown section [wlan]" },
	{ "mail-domain example.com\n[wan\n", 2,
	  "postern.conf:2: section header needs a closing ]" },
	{ "mail-domain example.com\n[wan]\n[wan]\n", 3,
	  "postern.conf:3: section [wan] appears twice (first on line 2)" },
	{ "mail-domain example.com\n[account a]\n[account a]\n", 3,
	  "postern.conf:3: account \"a\": defined twice (first on line 2)" },
	{ "mail-domain example.com\n[account]\n", 2,
	  "postern.conf:2: [account] needs a name: [account NAME]" },
	{ "mail-domain example.com\nhostname a\nhostname b\n", 3,
	  "postern.conf:3: hostname: set twice (first on line 2)" },
	{ "mail-domain example.com\n[wan]\nmode\n", 3, "postern.conf:3: wan: mode: needs a value" },
	{ "mail-domain example.com\n[wan]\nmode static\naddress 198.51.100.2/24\n", 3,
	  "postern.conf:3: wan: gateway: required with mode static" },
	{ "mail-domain example.com\n[wan]\nmode static\naddress 198.51.100.2/24\ngateway 10.0.0.1\n", 5,
	  "postern.conf:5: wan: gateway: 10.0.0.1 is not inside the WAN prefix" },
	{ "mail-domain example.com\n[dns]\ntransport tls\nupstream 9.9.9.9\n", 3,
	  "postern.conf:3: dns: transport: tls needs tls-name or tls-pin" },
	{ "mail-domain example.com\n[dns]\nhost a 10.0.0.1\nhost A 10.0.0.2\n", 3,
	  "postern.conf:3: dns: host: A is defined twice" },
	{ "mail-domain example.com\n[backup]\nenabled yes\n", 3,
	  "postern.conf:3: backup: recipient: required when enabled is yes" },
	{ "mail-domain example.com\n[backup]\nrecipient age1abc\n", 3,
	  "postern.conf:3: backup: recipient: age1abc is not an age public key (age1 followed by "
	  "58 characters)" },
	{ "mail-domain example.com\n[firewall]\nallow 192.168.10.5 25 x\n", 3,
	  "postern.conf:3: firewall: allow: x is not a port number (1-65535)" },
	{ "mail-domain example.com\n[smtp]\nport25 yes\n", 3,
	  "postern.conf:3: smtp: port25-hosts: required when port25 is yes" },
	{ "mail-domain example.com\n[lan]\ndhcp maybe\n", 3, "postern.conf:3: lan: dhcp: maybe is not yes or no" },
	{ "mail-domain example.com\n[dns]\nrate-limit 0\n", 3,
	  "postern.conf:3: dns: rate-limit: 0 is not a number from 1 to 100000" },
	{ "mail-domain example.com\n[account x]\ndeliver-to Anna\n", 3,
	  "postern.conf:3: account \"x\": deliver-to: Anna is not a user name (lower-case letters, "
	  "digits, '.', '_', '-')" },
	{ "mail-domain example.com\nhostname a\x01\n", 2, "postern.conf:2: line contains a control character" },
	{ "mail-domain example.com\n[dns]\nupstream 1.1.1.1 1.0.0.1 8.8.8.8 8.8.4.4 9.9.9.9\n", 3,
	  "postern.conf:3: dns: upstream: too many values (at most 4)" },
};

static void t_errors(void)
{
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct config *c = parse(bad[i].text);
		CHECK(c == NULL);
		config_free(c);
		CHECK_EQ(errs.count, 1);
		CHECK_EQ(errs.e[0].line, bad[i].line);
		CHECK_STREQ(errs.e[0].text, bad[i].msg);
	}
}

static void t_many_errors(void)
{
	char big[CONFIG_LINE_MAX + 40];
	struct config *c;

	c = parse("mail-domain example.com\n[lan]\ndhcp x\ndhcp-lease y\n[bogus]\nfoo 1\n[dns]\nbar 2\n");
	CHECK(c == NULL);
	CHECK_EQ(errs.count, 4);              /* keys under a bad section are skipped */
	CHECK_EQ(errs.e[0].line, 3);
	CHECK_EQ(errs.e[1].line, 4);
	CHECK_EQ(errs.e[2].line, 5);
	CHECK_EQ(errs.e[3].line, 8);
	memset(big, 'a', sizeof big);
	memcpy(big, "hostname ", 9);
	big[sizeof big - 1] = '\0';
	c = parse(big);
	CHECK(c == NULL);
	CHECK_STREQ(errs.e[0].text, "postern.conf:1: line is too long (more than 1024 bytes)");
	{
		char *many = malloc(CONFIG_FILE_MAX);
		size_t n = 0;
		n += (size_t)sprintf(many + n, "mail-domain example.com\n");
		for (int i = 0; i <= CONFIG_ACCOUNTS_MAX; i++)
			n += (size_t)sprintf(many + n, "[account a%d]\n", i);
		c = config_parse("p", many, n, &errs);
		CHECK(c == NULL);
		CHECK_STREQ(errs.e[0].text, "p:18: too many accounts (at most 16)");
		n += (size_t)sprintf(many + n, "[wan]\n");
		for (int i = 0; i < 200; i++)
			n += (size_t)sprintf(many + n, "bad line %d\n", i);
		c = config_parse("p", many, n, &errs);
		CHECK(c == NULL);
		CHECK_EQ(errs.count, CONFIG_ERRORS_MAX);
		CHECK(errs.dropped > 100);
		c = config_parse("p", many, CONFIG_FILE_MAX + 1, &errs);  /* length checked first */
		CHECK(c == NULL);
		CHECK_STREQ(errs.e[0].text, "p: file is too large (more than 262144 bytes or 20000 lines)");
		free(many);
	}
}

/* parse -> format -> parse gives the same model, and the text is stable. */
static void t_round_trip(void)
{
	struct config *a = parse(good), *b;
	char *again = malloc(sizeof out);
	int n;

	CHECK(a != NULL);
	if (!a || !again)
		return;
	n = config_format(a, out, sizeof out);
	CHECK_EQ(n, (int)strlen(good));
	CHECK_STREQ(out, good);                   /* unchanged: byte for byte */
	b = config_parse("again", out, (size_t)n, &errs);
	CHECK(b && config_equal(a, b));
	config_free(b);
	/* A model built by config_set alone formats to a canonical file. */
	b = config_new();
	CHECK_EQ(config_set(b, "mail-domain", "example.org", &errs), 0);
	CHECK_EQ(config_set(b, "account.x.server", "pop.example.org", &errs), 0);
	CHECK_EQ(config_set(b, "account.x.user", "x", &errs), 0);
	CHECK_EQ(config_set(b, "account.x.password-file", "x.pass", &errs), 0);
	CHECK_EQ(config_set(b, "account.x.deliver-to", "x", &errs), 0);
	CHECK_EQ(config_set(b, "dns.host", "a 10.0.0.1\n\n  b 10.0.0.2 \n", &errs), 0);
	CHECK_EQ(config_set(b, "filter.block-extensions",
	         "exe com scr pif bat cmd vbs vbe js jse wsf wsh msi msp hta cpl lnk jar ps1", &errs), 0);
	CHECK_EQ(config_validate(b, "x", &errs), 0);
	n = config_format(b, out, sizeof out);
	CHECK_STREQ(out, "mail-domain example.org\n\n[dns]\nhost a 10.0.0.1\nhost b 10.0.0.2\n\n"
	            "[filter]\nblock-extensions exe com scr pif bat cmd vbs vbe js jse wsf wsh msi "
	            "msp hta cpl lnk jar\nblock-extensions ps1\n\n[account x]\nserver pop.example.org\n"
	            "user x\npassword-file x.pass\ndeliver-to x\n");
	config_free(a);
	a = config_parse("again", out, (size_t)n, &errs);
	CHECK(a && config_equal(a, b));
	CHECK(a && config_format(a, again, sizeof out) == n && strcmp(again, out) == 0);
	CHECK_EQ(config_format(b, out, 10), -1);   /* too small */
	config_free(a);
	config_free(b);
	free(again);
}

/* Every buffer size from 0 to one past the fit: -1 until the text and its NUL
 * fit, never a byte written past cap, and a text cut only between items. */
static void t_small_buffers(void)
{
	const char *host = "printer 192.168.10.20\nnas 192.168.10.30 fd00::30";
	struct config *c = parse(good);
	char buf[128];
	int n;

	CHECK(c != NULL);
	if (!c)
		return;
	n = (int)strlen(host);
	for (int cap = 0; cap <= n + 1; cap++) {
		memset(buf, 'Z', sizeof buf);
		CHECK_EQ(config_get(c, "dns.host", buf, (size_t)cap), cap > n ? n : -1);
		CHECK_EQ(buf[cap], 'Z');
		if (cap > 0 && cap <= n)
			CHECK(strcmp(buf, "") == 0 || strcmp(buf, "printer 192.168.10.20") == 0);
	}
	n = config_format(c, out, sizeof out);
	CHECK_EQ(n, (int)strlen(good));
	for (int cap = n - 300; cap <= n + 1; cap++) {
		memset(out, 'Z', (size_t)n + 2);
		CHECK_EQ(config_format(c, out, (size_t)cap), cap > n ? n : -1);
		CHECK_EQ(out[cap], 'Z');
		CHECK(strncmp(out, good, strlen(out)) == 0);   /* a prefix, never garbage */
	}
	config_free(c);
}

/* Changes keep comments, order and columns; new settings join their section. */
static void t_edit_keeps_layout(void)
{
	static const char src[] =
		"# top\n"
		"mail-domain  example.com   # ours\n"
		"\n"
		"# outbound\n"
		"[smarthost]\n"
		"host         smtp.old.example   # was changed in 2024\n"
		"port 587\n"
		"\n"
		"# the old provider\n"
		"[account old]\n"
		"server pop.old.example\n"
		"user a\n"
		"password-file a.pass\n"
		"deliver-to anna\n"
		"# trailing comment\n";
	static const char want[] =
		"# top\n"
		"mail-domain  example.com   # ours\n"
		"hostname box\n"
		"\n"
		"# outbound\n"
		"[smarthost]\n"
		"host         smtp.new.example   # was changed in 2024\n"
		"tls implicit\n"
		"\n"
		"# the old provider\n"
		"\n"
		"[account new]\n"
		"server pop.new.example\n";
	struct config *c = parse(src);
	char buf[64];

	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_EQ(config_set(c, "smarthost.host", "smtp.new.example", &errs), 0);
	CHECK_EQ(config_set(c, "smarthost.tls", "implicit", &errs), 0);
	CHECK_EQ(config_unset(c, "smarthost.port", &errs), 0);
	CHECK_EQ(c->smarthost.port, 465);                    /* derived again */
	CHECK_EQ(config_set(c, "hostname", "box", &errs), 0);
	CHECK_EQ(config_unset(c, "account.old", &errs), 0);
	CHECK_EQ(config_set(c, "account.new.server", "pop.new.example", &errs), 0);
	CHECK_EQ(config_format(c, out, sizeof out), (int)strlen(want));
	CHECK_STREQ(out, want);
	CHECK_EQ(config_get(c, "account.new.tls", buf, sizeof buf), 4);
	CHECK_STREQ(buf, "stls");
	/* The new account lacks required settings: validation says which. */
	CHECK_EQ(config_validate(c, "p", &errs), -1);
	CHECK_EQ(errs.count, 3);
	CHECK_STREQ(errs.e[0].text, "p: account \"new\": user: required");
	config_free(c);
}

static void t_set_errors(void)
{
	struct config *c = parse(good);
	char buf[128];

	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_EQ(config_set(c, "account.anna.port", "70000", &errs), -1);
	CHECK_STREQ(errs.e[0].text, "account \"anna\": port: 70000 is not a port number (1-65535)");
	CHECK_EQ(c->account[0].port, 110);                   /* unchanged */
	CHECK_EQ(config_set(c, "smarthost.prot", "1", &errs), -1);
	CHECK_STREQ(errs.e[0].text, "unknown setting \"smarthost.prot\"");
	CHECK_EQ(config_set(c, "dns.upstream", "1.1.1.1 nonsense", &errs), -1);
	CHECK_STREQ(errs.e[0].text, "dns: upstream: nonsense is not an IP address");
	CHECK_EQ(c->dns.nupstream, 1);                       /* unchanged */
	CHECK_EQ(config_set(c, "smarthost.user", "a #b", &errs), -1);
	CHECK_STREQ(errs.e[0].text, "smarthost: user: a value cannot hold '#' at its start or after a blank");
	CHECK_EQ(config_set(c, "smarthost.user", "a\nb", &errs), -1);
	CHECK_STREQ(errs.e[0].text, "smarthost: user: value spans several lines");
	CHECK_EQ(config_set(c, "account.a/b.server", "x.example", &errs), -1);
	CHECK_EQ(c->naccounts, 2);
	CHECK_EQ(config_unset(c, "account.zzz", &errs), -1);
	CHECK_STREQ(errs.e[0].text, "no account \"zzz\"");
	CHECK_EQ(config_set(c, "dns.upstream", "1.1.1.1 1.0.0.1", &errs), 0);
	CHECK_EQ(c->dns.nupstream, 2);
	CHECK_EQ(config_set(c, "dns.upstream", "  ", &errs), 0);   /* empty: default */
	CHECK_EQ(c->dns.nupstream, 0);
	CHECK_EQ(config_get(c, "dns.upstream", buf, sizeof buf), 0);
	/* Base64 and hex pins are the same pin. */
	CHECK_EQ(config_set(c, "smarthost.pin", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &errs), 0);
	config_get(c, "smarthost.pin", buf, sizeof buf);
	CHECK_STREQ(buf, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
	config_free(c);
}

static void path_in(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/%s", dir, name);
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* Atomic save; a crash's temp file is ignored; a broken file keeps the old model. */
static void t_save_and_reload(void)
{
	char p[512], tmp[512];
	struct config *cur, *fresh;
	struct stat st;

	path_in(p, sizeof p, "postern.conf");
	path_in(tmp, sizeof tmp, ".postern.conf.tmp-Ab12Cd");
	CHECK_EQ(write_file(p, good), 0);
	CHECK_EQ(write_file(tmp, "hostname half-written"), 0);  /* left by a crash */
	cur = config_load(p, &errs);
	CHECK(cur != NULL);
	if (!cur)
		return;
	CHECK_EQ(config_set(cur, "smarthost.port", "2465", &errs), 0);
	CHECK_EQ(config_save(cur, p, &errs), 0);
	CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0644);
	fresh = config_load(p, &errs);
	CHECK(fresh && fresh->smarthost.port == 2465 && config_equal(cur, fresh));
	config_free(fresh);
	/* An invalid model is not saved; the file stays as it was. */
	CHECK_EQ(config_set(cur, "account.anna.verify", "pin", &errs), 0);
	CHECK_EQ(config_save(cur, p, &errs), -1);
	CHECK(errs.count == 1 && strstr(errs.e[0].text, "pin: required with verify pin"));
	fresh = config_load(p, &errs);
	CHECK(fresh && fresh->account[0].verify == CONFIG_VERIFY_CA);
	config_free(fresh);
	config_unset(cur, "account.anna.verify", &errs);
	/* SIGHUP with a broken file: the daemon keeps its model. */
	CHECK_EQ(write_file(p, "mail-domain example.com\n[smarthost]\nport 99999\n"), 0);
	fresh = config_load(p, &errs);
	CHECK(fresh == NULL);
	CHECK_EQ(errs.count, 1);
	CHECK(strstr(errs.e[0].text, "postern.conf:3: smarthost: port: 99999 is not a port number") != NULL);
	if (fresh) {
		config_free(cur);
		cur = fresh;
	}
	CHECK_EQ(cur->smarthost.port, 2465);
	CHECK_STREQ(cur->smarthost.host, "smtp.provider.example");
	/* A rewritten line that no longer fits its old columns still loads. */
	{
		char wide[CONFIG_LINE_MAX + 1], name[256];
		memset(name, 'a', 250);
		memcpy(name + 60, ".", 1);
		memcpy(name + 120, ".", 1);
		memcpy(name + 180, ".", 1);
		memcpy(name + 240, ".", 1);
		name[250] = '\0';
		snprintf(wide, sizeof wide, "mail-domain example.com\n[smarthost]\nhost%900s\n", "h.example");
		path_in(p, sizeof p, "wide.conf");
		CHECK_EQ(write_file(p, wide), 0);
		fresh = config_load(p, &errs);
		CHECK(fresh != NULL);
		CHECK(fresh && config_set(fresh, "smarthost.host", name, &errs) == 0);
		CHECK(fresh && config_save(fresh, p, &errs) == 0);
		config_free(fresh);
		fresh = config_load(p, &errs);
		CHECK(fresh && strcmp(fresh->smarthost.host, name) == 0);
		config_free(fresh);
	}
	/* Missing file: one clear error. */
	path_in(p, sizeof p, "missing.conf");
	CHECK(config_load(p, &errs) == NULL);
	CHECK(errs.count == 1 && strstr(errs.e[0].text, "missing.conf: cannot read: No such file") != NULL);
	/* Saving into a missing directory fails cleanly. */
	path_in(p, sizeof p, "nodir/postern.conf");
	CHECK_EQ(config_save(cur, p, &errs), -1);
	CHECK(errs.count == 1 && strstr(errs.e[0].text, "cannot save") != NULL);
	config_free(cur);
}

static void t_crlf_and_comments(void)
{
	struct config *c = parse("mail-domain example.com\r\n\t[lan]  # the office\r\n"
	                         "\taddress 10.1.0.1/16 # x\r\ndhcp-range 10.1.5.1   10.1.5.9\r\n"
	                         "[filter]\nblock-extensions .EXE Scr\n");
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_EQ(c->lan.address.len, 16);
	CHECK_EQ(c->lan.dhcp_range.last.a[3], 9);
	CHECK_STREQ(c->filter.block_extensions[1], "scr");
	config_format(c, out, sizeof out);
	CHECK_STREQ(out, "mail-domain example.com\n[lan] # the office\n\taddress 10.1.0.1/16 # x\n"
	            "dhcp-range 10.1.5.1 10.1.5.9\n[filter]\nblock-extensions exe scr\n");
	config_free(c);
}

int main(void)
{
	const char *t = getenv("TMPDIR");

	snprintf(dir, sizeof dir, "%s/config-XXXXXX", t ? t : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(t_good);
	RUN(t_defaults);
	RUN(t_errors);
	RUN(t_many_errors);
	RUN(t_round_trip);
	RUN(t_small_buffers);
	RUN(t_edit_keeps_layout);
	RUN(t_set_errors);
	RUN(t_save_and_reload);
	RUN(t_crlf_and_comments);
	return check_done();
}
