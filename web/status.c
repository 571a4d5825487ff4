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

#define WEB_DISK_ALERT_PCT 90      /* data partition use that raises an alert */
#define WEB_QUEUE_ALERT 50         /* queued messages that raise an alert */
#define WEB_LOG_LINES "200"        /* lines on the logs page */
#define WEB_DER_MAX (16 * 1024)
#define WEB_CHART_DAYS 14          /* days in the mail-per-day chart */
#define WEB_CHART_W 560            /* chart size, SVG user units */
#define WEB_CHART_H 160
#define WEB_CHART_BASE 20          /* room for the day labels */

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
	html_out(stdout, "<section><h2>Alerts</h2><ul>");
	if (pct >= WEB_DISK_ALERT_PCT)
		html_out(stdout, "<li class=\"alert\">The data disk is %d%% full.</li>", pct);
	if (queued >= WEB_QUEUE_ALERT)
		html_out(stdout, "<li class=\"alert\">%d messages wait in the queue.</li>", queued);
	if (pct < WEB_DISK_ALERT_PCT && queued < WEB_QUEUE_ALERT)
		html_out(stdout, "<li>No alerts.</li>");
	html_out(stdout, "</ul></section>\n");
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
		 "download>CA certificate (DER, .cer)</a> for Windows</li></ul>\n");
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
