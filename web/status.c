/*
 * status.c - read-only pages: dashboard, certificates (CA download as PEM
 * and DER), mail queue, logs. What the web user may not read itself
 * (service state, the queue, the log, the CA in the secrets directory)
 * comes from admind's read-only operations.
 */
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "cgi.h"
#include "config.h"
#include "html.h"
#include "status.h"

#define WEB_LOG_LINES "200"        /* lines on the logs page */
#define WEB_DER_MAX (16 * 1024)
#define WEB_CHART_DAYS 14          /* days in the mail-per-day chart */
#define WEB_CHART_W 560            /* chart size, SVG user units */
#define WEB_CHART_H 160
#define WEB_CHART_BASE 20          /* room for the day labels */
#define WEB_BLOCKED_HOSTS 256      /* LAN hosts listed under blocked attempts */
#define WEB_BLOCKED_DESTS 200      /* (host, server, port) rows from admind */

static int count_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

static void services(struct cgi *c, int *down)
{
	const char *argv[] = { "status" };

	html_out(stdout, "<section><h2>Services</h2>");
	if (admind_call(c, argv, 1) < 0) {
		html_out(stdout, "<p class=\"error\">The settings helper is not answering.</p></section>\n");
		(*down)++;
		return;
	}
	html_out(stdout, "<ul class=\"services\">");
	for (char *l = strtok(c->rep.data, "\n"); l; l = strtok(NULL, "\n")) {
		char *sp = strchr(l, ' ');
		int up = sp && strcmp(sp + 1, "run") == 0;
		if (sp)
			*sp = '\0';
		html_out(stdout, "<li class=\"%R\">%s: %s</li>", up ? "up" : "down", l,
			 up ? "running" : (sp ? sp + 1 : "unknown"));
		*down += !up;
	}
	html_out(stdout, "</ul></section>\n");
}

/* The alerts in force: admind evaluates the rules of src/lib/alerts.h,
 * the ones that mail the admins (`postern alerts check`). */
static void alerts(struct cgi *c)
{
	const char *argv[] = { "alerts" };
	int n = 0;

	html_out(stdout, "<section aria-labelledby=\"alerts-h\"><h2 id=\"alerts-h\">Alerts</h2>");
	if (admind_call(c, argv, 1) < 0) {
		html_out(stdout, "<p class=\"error\">The alerts cannot be checked: the settings "
			 "helper is not answering.</p></section>\n");
		return;
	}
	html_out(stdout, "<ul class=\"alerts\">");
	for (char *l = strtok(c->rep.data, "\n"); l; l = strtok(NULL, "\n")) {
		char *tab = strchr(l, '\t');
		if (!tab)
			continue;
		*tab = '\0';
		html_out(stdout, "<li class=\"alert\" data-key=\"%s\">%s</li>", l, tab + 1);
		n++;
	}
	if (n == 0)
		html_out(stdout, "<li>No alerts.</li>");
	html_out(stdout, "</ul><p><small>Administrators get a mail when an alert starts and when "
		 "it ends.</small></p></section>\n");
}

/* "2026-11-29 05:10" of t, or "never" for 0. */
static const char *when(int64_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || !localtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M", &tm))
		snprintf(buf, cap, "never");
	return buf;
}

/* One provider account's last poll, from fetchd's status record. */
static void fetch_row(const struct config_account *a)
{
	struct status_rec r;
	char t1[32], t2[32];

	if (status_read(status_dir(), "fetch", a->h.name, &r) < 0) {
		html_out(stdout, "<tr><th scope=\"row\">%s</th><td>%s</td><td colspan=\"3\">no poll yet"
			 "</td></tr>\n", a->h.name, a->enabled ? "on" : "off");
		return;
	}
	html_out(stdout, "<tr class=\"%R\"><th scope=\"row\">%s</th><td>%s</td><td>%s</td>",
		 r.result == STATUS_OK ? "ok" : "failing", a->h.name, a->enabled ? "on" : "off",
		 when(r.time, t1, sizeof t1));
	if (r.result == STATUS_OK)
		html_out(stdout, "<td>%d messages fetched</td><td></td></tr>\n", (int)r.fetched);
	else
		html_out(stdout, "<td><strong>Failed: %s</strong><br><small>%s</small></td>"
			 "<td>%d failed polls in a row; last success: %s</td></tr>\n",
			 status_result_text(r.result), r.detail, (int)r.failures,
			 when(r.last_ok, t2, sizeof t2));
}

/* relayd's last session with the smart host (status record relay-smarthost). */
static void relay_row(void)
{
	struct status_rec r;
	char t1[32], t2[32];

	if (status_read(status_dir(), "relay", "smarthost", &r) < 0)
		return;
	html_out(stdout, "<p class=\"%R\">Smart host (outgoing mail), last session %s: ",
		 r.result == STATUS_OK ? "ok" : "failing", when(r.time, t1, sizeof t1));
	if (r.result == STATUS_OK)
		html_out(stdout, "%d messages sent.</p>\n", (int)r.fetched);
	else
		html_out(stdout, "<strong>failed: %s</strong> <small>%s</small> (%d failed sessions in "
			 "a row; last success: %s; see the <a href=\"/queue\">queue</a>).</p>\n",
			 status_result_text(r.result), r.detail, (int)r.failures,
			 when(r.last_ok, t2, sizeof t2));
}

/* The last fetch result per provider account (docs/web.md). */
static void fetch_results(struct cgi *c)
{
	static struct config_errors errs;
	struct config *cfg = config_load(c->conf, &errs);

	html_out(stdout, "<section><h2>Provider accounts</h2>");
	relay_row();
	if (!cfg || cfg->naccounts == 0) {
		html_out(stdout, "<p>No provider account is set up (<a href=\"/accounts\">add one</a>)."
			 "</p></section>\n");
		config_free(cfg);
		return;
	}
	html_out(stdout, "<table class=\"fetch\"><caption>Last fetch of each account</caption><thead>"
		 "<tr><th scope=\"col\">Account</th><th scope=\"col\">Enabled</th><th scope=\"col\">"
		 "Last poll</th><th scope=\"col\">Result</th><th scope=\"col\">History</th></tr>"
		 "</thead><tbody>\n");
	for (int i = 0; i < cfg->naccounts; i++)
		fetch_row(&cfg->account[i]);
	html_out(stdout, "</tbody></table></section>\n");
	config_free(cfg);
}

/* ---- blocked attempts ---- */

struct blocked_host {
	char addr[64];
	unsigned long long packets;        /* the firewall's counter; 0: only in the log */
};

struct blocked_dest {
	char src[64], dst[64], proto[8], last[16];
	unsigned port;
	unsigned long long count;
};

/* What a desktop was trying to do, from the port it was refused. */
static const char *port_name(unsigned port)
{
	static const struct { unsigned port; const char *name; } names[] = {
		{ 25, "sending mail (SMTP)" }, { 465, "sending mail (SMTPS)" },
		{ 587, "sending mail (submission)" }, { 2525, "sending mail (SMTP)" },
		{ 110, "fetching mail (POP3)" }, { 995, "fetching mail (POP3S)" },
		{ 143, "reading mail (IMAP)" }, { 993, "reading mail (IMAPS)" },
		{ 53, "foreign DNS" }, { 853, "DNS over TLS" },
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].port == port)
			return names[i].name;
	return "a blocked port";
}

static int host_index(struct blocked_host *h, int *nh, const char *addr)
{
	for (int i = 0; i < *nh; i++)
		if (strcmp(h[i].addr, addr) == 0)
			return i;
	if (*nh >= WEB_BLOCKED_HOSTS)
		return -1;
	snprintf(h[*nh].addr, sizeof h[*nh].addr, "%s", addr);
	h[*nh].packets = 0;
	return (*nh)++;
}

/* admind's "host ADDR N" and "dest SRC DST PROTO PORT N [TIME]" lines. */
static int blocked_parse(char *data, struct blocked_host *h, int *nh, struct blocked_dest *d,
			 int *nd, int *no_counters)
{
	for (char *l = strtok(data, "\n"); l; l = strtok(NULL, "\n")) {
		char addr[64];
		unsigned long long n;
		struct blocked_dest *x = &d[*nd];
		int i;
		if (sscanf(l, "host %63s %llu", addr, &n) == 2 && (i = host_index(h, nh, addr)) >= 0)
			h[i].packets += n;
		else if (*nd < WEB_BLOCKED_DESTS && sscanf(l, "dest %63s %63s %7s %u %llu %15[^\n]",
				x->src, x->dst, x->proto, &x->port, &x->count, x->last) >= 5) {
			host_index(h, nh, x->src);
			(*nd)++;
		} else if (strcmp(l, "counters unavailable") == 0)
			*no_counters = 1;
	}
	return 0;
}

static void blocked_host_row(const struct blocked_host *h, const struct blocked_dest *d, int nd)
{
	int shown = 0;

	if (h->packets)
		html_out(stdout, "<tr><th scope=\"row\">%s</th><td>%l</td><td><ul>", h->addr,
			 (long)h->packets);
	else
		html_out(stdout, "<tr><th scope=\"row\">%s</th><td>-</td><td><ul>", h->addr);
	for (int i = 0; i < nd; i++) {
		if (strcmp(d[i].src, h->addr))
			continue;
		html_out(stdout, "<li>%s port %d (%s, %s): %l logged%s%s</li>", d[i].dst, (int)d[i].port,
			 d[i].proto, port_name(d[i].port), (long)d[i].count, d[i].last[0] ? ", last " : "",
			 d[i].last);
		shown++;
	}
	if (!shown)
		html_out(stdout, "<li>not in the recent log</li>");
	html_out(stdout, "</ul></td></tr>\n");
}

/* Which desktop still tries to reach which server port (docs/firewall.md
 * "Blocked attempts per host"). */
static void blocked(struct cgi *c)
{
	static struct blocked_host h[WEB_BLOCKED_HOSTS];
	static struct blocked_dest d[WEB_BLOCKED_DESTS];
	const char *argv[] = { "blocked" };
	int nh = 0, nd = 0, no_counters = 0;

	html_out(stdout, "<section><h2>Blocked attempts</h2>");
	if (admind_call(c, argv, 1) < 0) {
		html_out(stdout, "<p class=\"error\">The firewall counters cannot be read.</p></section>\n");
		return;
	}
	blocked_parse(c->rep.data, h, &nh, d, &nd, &no_counters);
	if (no_counters)
		html_out(stdout, "<p class=\"error\">The firewall counters cannot be read; "
			 "the log's part follows.</p>");
	if (nh == 0) {
		html_out(stdout, "<p>No desktop tried to reach a blocked mail or DNS server since the "
			 "firewall rules were loaded.</p></section>\n");
		return;
	}
	html_out(stdout, "<p>These desktops tried to reach mail or DNS servers on the Internet "
		 "directly, which the firewall refuses: set them up to use the box instead.</p>"
		 "<table class=\"blocked\"><caption>Blocked attempts per desktop</caption><thead><tr>"
		 "<th scope=\"col\">Desktop</th><th scope=\"col\">Attempts</th><th scope=\"col\">"
		 "Servers it tried (from the log)</th></tr></thead><tbody>\n");
	for (int i = 0; i < nh; i++)
		blocked_host_row(&h[i], d, nd);
	html_out(stdout, "</tbody></table></section>\n");
}

/* Messages per day as an inline SVG bar chart (no script; each bar has a
 * <title>, and the figures are repeated in a table for screen readers). */
static void mail_chart(struct cgi *c)
{
	const char *argv[] = { "mail-days", "14" };
	char day[WEB_CHART_DAYS][16];
	long n[WEB_CHART_DAYS], max = 1;
	int k = 0, bw = WEB_CHART_W / WEB_CHART_DAYS;

	if (admind_call(c, argv, 2) < 0)
		return;
	for (char *l = strtok(c->rep.data, "\n"); l && k < WEB_CHART_DAYS; l = strtok(NULL, "\n"))
		if (sscanf(l, "%15s %ld", day[k], &n[k]) == 2)
			max = n[k] > max ? n[k] : max, k++;
	html_out(stdout, "<section><h2>Mail received per day</h2><svg class=\"chart\" viewBox=\"0 0 %d %d\" "
		 "role=\"img\" aria-labelledby=\"chart-t\"><title id=\"chart-t\">Messages received in "
		 "the last %d days</title>", WEB_CHART_W, WEB_CHART_H, k);
	for (int i = 0; i < k; i++) {
		int h = (int)((WEB_CHART_H - WEB_CHART_BASE - 14) * n[i] / max);
		html_out(stdout, "<g><title>%s: %l</title><rect x=\"%d\" y=\"%d\" width=\"%d\" "
			 "height=\"%d\" fill=\"#1f5f9e\"></rect><text x=\"%d\" y=\"%d\" "
			 "font-size=\"10\" text-anchor=\"middle\">%l</text><text x=\"%d\" y=\"%d\" "
			 "font-size=\"10\" text-anchor=\"middle\">%s</text></g>", day[i], n[i],
			 i * bw + 4, WEB_CHART_H - WEB_CHART_BASE - h, bw - 8, h, i * bw + bw / 2,
			 WEB_CHART_H - WEB_CHART_BASE - h - 3, n[i], i * bw + bw / 2, WEB_CHART_H - 6,
			 day[i] + 5);
	}
	html_out(stdout, "</svg><details><summary>Figures</summary><table><thead><tr><th scope=\"col\">"
		 "Day</th><th scope=\"col\">Messages</th></tr></thead><tbody>");
	for (int i = 0; i < k; i++)
		html_out(stdout, "<tr><td>%s</td><td>%l</td></tr>", day[i], n[i]);
	html_out(stdout, "</tbody></table></details></section>\n");
}

void pg_dashboard(struct cgi *c)
{
	const char *q[] = { "queue" };
	struct statvfs vfs;
	int down = 0, queued = 0, pct = -1;

	page_begin(c, 200, "Dashboard");
	page_notice(c);
	if (admind_call(c, q, 1) == 0)
		queued = count_lines(c->rep.data);
	if (statvfs(c->data, &vfs) == 0 && vfs.f_blocks)
		pct = (int)(100 - (100 * (unsigned long long)vfs.f_bavail) / vfs.f_blocks);
	alerts(c);
	fetch_results(c);
	blocked(c);
	mail_chart(c);
	services(c, &down);
	html_out(stdout, "<section><h2>Mail</h2><dl><dt>Queue</dt><dd>%d messages</dd>"
		 "<dt>Data disk</dt><dd>%d%% used</dd><dt>Mail domain</dt><dd>%s</dd>"
		 "<dt>Provider accounts</dt><dd>%d (<a href=\"/accounts\">manage</a>)</dd></dl></section>\n",
		 queued, pct, conf_value(c, "mail-domain"), conf_accounts(c));
	page_end(c);
}

/* ---- certificates ---- */

static int b64val(int ch)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = ch ? strchr(t, ch) : NULL;

	return p ? (int)(p - t) : -1;
}

/* The DER of the first PEM block of pem into out; returns its length or -1. */
static int pem_to_der(const char *pem, unsigned char *out, size_t cap)
{
	const char *p = strstr(pem, "-----BEGIN CERTIFICATE-----"), *end;
	unsigned acc = 0;
	int bits = 0;
	size_t n = 0;

	if (!p || !(end = strstr(p, "-----END CERTIFICATE-----")))
		return -1;
	for (p += 27; p < end; p++) {
		int v = b64val((unsigned char)*p);
		if (v < 0)
			continue;   /* line breaks, padding */
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			if (n >= cap)
				return -1;
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return (int)n;
}

static void download(struct cgi *c, int der)
{
	static unsigned char buf[WEB_DER_MAX];
	const char *argv[] = { "ca" };
	int n;

	if (admind_call(c, argv, 1) < 0 ||
	    (der && (n = pem_to_der(c->rep.data, buf, sizeof buf)) < 0)) {
		page_begin(c, 404, "Certificates");
		html_out(stdout, "<p class=\"error\">The box has no CA certificate yet.</p>");
		page_end(c);
		return;
	}
	printf("Status: 200\r\nContent-Type: %s\r\nContent-Disposition: attachment; "
	       "filename=\"postern-ca.%s\"\r\n\r\n", der ? "application/pkix-cert" :
	       "application/x-pem-file", der ? "der" : "pem");
	if (der)
		fwrite(buf, 1, (size_t)n, stdout);
	else
		fputs(c->rep.data, stdout);
}

void pg_certs(struct cgi *c)
{
	if (strcmp(c->path, "/certs/ca.pem") == 0 || strcmp(c->path, "/certs/ca.der") == 0) {
		download(c, strcmp(c->path, "/certs/ca.der") == 0);
		return;
	}
	page_begin(c, 200, "Certificates");
	html_out(stdout, "<p>Desktops trust the box's mail and web services once they trust "
		 "its own certificate authority (CA). Install it once on every desktop:</p>"
		 "<ul><li><a href=\"/certs/ca.pem\" download>CA certificate (PEM)</a> for "
		 "Firefox, Thunderbird, macOS and Linux</li><li><a href=\"/certs/ca.der\" "
		 "download>CA certificate (DER, .cer)</a> for Windows</li></ul>\n"
		 "<p>Or give the box a certificate from a public or company CA: "
		 "<a href=\"/certs/install\">install your own certificate</a>.</p>\n");
	page_end(c);
}

/* ---- queue and logs ---- */

/* One queue line from admind: "ID CREATED SIZE FROM PENDING ATTEMPTS NEXT REPLY". */
static void queue_row(struct cgi *c, char *line)
{
	char id[32], from[300], when[32], next[32];
	long long created, nexttime;
	unsigned long long size;
	int pending, used = 0;
	unsigned attempts;
	time_t t;

	if (sscanf(line, "%31s %lld %llu %299s %d %u %lld %n", id, &created, &size, from,
		   &pending, &attempts, &nexttime, &used) < 7)
		return;
	t = (time_t)created;
	strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime(&t));
	t = (time_t)nexttime;
	if (nexttime > c->now)
		strftime(next, sizeof next, "%Y-%m-%d %H:%M", localtime(&t));
	else
		snprintf(next, sizeof next, "now");
	html_out(stdout, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%z KB</td><td>%d</td>"
		 "<td>%d</td><td>%s</td><td>%s</td><td>", id, when, from, (size_t)((size + 1023) / 1024),
		 pending, (int)attempts, next, used ? line + used : "");
	button_form(c, "/queue", "Retry", "id", id, "retry");
	button_form(c, "/queue", "Delete", "id", id, "delete");
	html_out(stdout, "</td></tr>\n");
}

static int queue_post(struct cgi *c)
{
	const char *op = form(c, "op");
	const char *argv[] = { strcmp(op, "delete") == 0 ? "queue-del" : "queue-retry",
			       form(c, "id") };

	if (strcmp(op, "delete") && strcmp(op, "retry")) {
		add_error(c, "-", "Unknown action.");
		return -1;
	}
	return admind_call(c, argv, 2);
}

void pg_queue(struct cgi *c)
{
	const char *argv[] = { "queue" };
	int n = 0, failed = 0;

	if (c->post) {
		if (queue_post(c) == 0) {
			redirect(c, "/queue?saved=1");
			return;
		}
		failed = 1;
	}
	page_begin(c, failed ? 400 : 200, "Mail queue");
	page_notice(c);
	page_errors(c, NULL, 0);
	if (admind_call(c, argv, 1) < 0) {
		html_out(stdout, "<p class=\"error\">The queue cannot be read.</p>");
		page_end(c);
		return;
	}
	html_out(stdout, "<table><caption>Messages waiting to go out</caption><thead><tr>"
		 "<th scope=\"col\">Queue ID</th><th scope=\"col\">Queued</th><th scope=\"col\">From</th>"
		 "<th scope=\"col\">Size</th><th scope=\"col\">Recipients left</th>"
		 "<th scope=\"col\">Attempts</th><th scope=\"col\">Next try</th>"
		 "<th scope=\"col\">Last answer</th><th scope=\"col\">Actions</th></tr></thead><tbody>\n");
	for (char *l = strtok(c->rep.data, "\n"); l; l = strtok(NULL, "\n"), n++)
		queue_row(c, l);
	html_out(stdout, "</tbody></table><p>%d messages.</p>\n", n);
	page_end(c);
}

void pg_logs(struct cgi *c)
{
	const char *filter = param(c, "q");
	const char *argv[] = { "log", WEB_LOG_LINES, filter };

	page_begin(c, 200, "Logs");
	html_out(stdout, "<form method=\"get\" action=\"/logs\" role=\"search\"><div class=\"field\">"
		 "<label for=\"f-q\">Show lines containing</label><input type=\"search\" id=\"f-q\" "
		 "name=\"q\" value=\"%s\"></div><div class=\"actions\"><button type=\"submit\">Filter"
		 "</button></div></form>\n", filter);
	if (admind_call(c, argv, 3) < 0)
		html_out(stdout, "<p class=\"error\">The log cannot be read.</p>");
	else
		html_out(stdout, "<pre class=\"log\">%s</pre>\n", c->rep.data);
	page_end(c);
}
