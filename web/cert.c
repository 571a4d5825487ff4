/*
 * cert.c - "Your own certificate" (/certs/install): install an
 * administrator's certificate chain and private key, or return to the
 * box's own certificate (docs/web.md "Custom certificate").
 *
 * The PEM texts are pasted into two text areas of a plain urlencoded form,
 * not uploaded as multipart/form-data: the one bounded, fuzzed form decoder
 * (src/lib/http.c) handles them, no multipart parser is needed, and a PEM
 * file is text an office manager can open and paste. webd bounds the body
 * (HTTP_BODY_MAX, 64 KiB); admind bounds each text and validates
 * everything (src/admind/cert.c). The key is never shown back.
 */
#include <stdio.h>
#include <string.h>

#include "cgi.h"
#include "html.h"

/* "source admin|box" and "expires DATE" from admind's cert-info. */
static void current(struct cgi *c, int *admin)
{
	const char *argv[] = { "cert-info" };
	char *exp;

	*admin = 0;
	if (admind_call(c, argv, 1) < 0 || !c->rep.data) {
		memset(&c->rep, 0, sizeof c->rep);
		return;
	}
	*admin = strstr(c->rep.data, "source admin") != NULL;
	exp = strstr(c->rep.data, "expires ");
	if (exp)
		exp[strcspn(exp, "\n")] = '\0';
	html_out(stdout, "<p>The box's mail services and this page now use %s%s%s.</p>\n",
		 *admin ? "a certificate installed by an administrator"
			: "the box's own certificate (from its own CA)",
		 exp ? "; it " : "", exp ? exp : "");
	memset(&c->rep, 0, sizeof c->rep);
}

/* After a successful install: admind's warning lines, if any. */
static void installed(struct cgi *c)
{
	char *d = arena_strdup(c->rep.data ? c->rep.data : ""), *save = NULL;

	html_out(stdout, "<p class=\"notice\" role=\"status\">Installed. The mail services and "
		 "this page restarted with the new certificate; reload the page to see it in "
		 "your browser.</p>\n");
	for (char *l = strtok_r(d, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (strncmp(l, "warning\t", 8) == 0)
			html_out(stdout, "<p class=\"error\" role=\"alert\">Warning: %s</p>\n", l + 8);
}

static void install_form(struct cgi *c, int again)
{
	static const char *const shown[] = { "chain", "key" };

	page_errors(c, shown, 2);
	html_out(stdout, "<h2>Install your own certificate</h2><p>For a certificate from a "
		 "public or company CA for the box's name. Paste the PEM texts (open the "
		 "files in a text editor). The box checks that the key belongs to the "
		 "certificate, that it is valid today and names the box, and that the key is "
		 "RSA of at least 2048 bits or EC P-256/P-384; nothing changes if it is "
		 "refused.</p>\n");
	form_open(c, "/certs/install");
	html_out(stdout, "<input type=\"hidden\" name=\"op\" value=\"install\">");
	field_textarea(c, "chain", "Certificate chain (PEM)", again ? form(c, "chain") : "",
		       "the server's certificate first, then the intermediate CA certificates");
	field_textarea(c, "key", "Private key (PEM)", "",
		       "unencrypted; stored readable by root only");
	form_close("Install certificate");
}

void pg_cert_install(struct cgi *c)
{
	const char *op = form(c, "op");
	int admin, ok = 0, again = 0;

	if (c->post && strcmp(op, "install") == 0) {
		const char *argv[] = { "cert-install", form(c, "chain"), form(c, "key") };
		ok = admind_call(c, argv, 3) == 0;
		again = !ok;
	} else if (c->post && strcmp(op, "revert") == 0) {
		const char *argv[] = { "cert-revert" };
		if (admind_call(c, argv, 1) == 0) {
			redirect(c, "/certs/install?saved=1");
			return;
		}
		again = 1;
	}
	page_begin(c, again ? 400 : 200, "Your own certificate");
	if (ok)
		installed(c);
	page_notice(c);
	struct reply rep = c->rep;
	current(c, &admin);
	c->rep = rep;
	install_form(c, again);
	if (admin)
		button_form(c, "/certs/install", "Return to the box's own certificate", "x", "1",
			    "revert");
	html_out(stdout, "<p><a href=\"/certs\">Certificates</a></p>\n");
	page_end(c);
}
