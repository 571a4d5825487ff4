/*
 * page.c - the page frame (head, navigation, footer) and accessible form
 * pieces: every input has a <label>, its help text and its error are tied
 * to it with aria-describedby, and the error sits right below the field.
 */
#include <stdio.h>
#include <string.h>

#include "cgi.h"
#include "html.h"

struct nav { const char *path, *label; int admin; };

static const struct nav nav[] = {
	{ "/", "Dashboard", 1 }, { "/users", "Users", 1 }, { "/accounts", "Provider accounts", 1 },
	{ "/smarthost", "Outbound mail", 1 }, { "/network", "Network", 1 }, { "/dns", "DNS", 1 },
	{ "/firewall", "Firewall", 1 }, { "/certs", "Certificates", 1 }, { "/queue", "Queue", 1 },
	{ "/logs", "Logs", 1 }, { "/password", "My password", 0 },
};

void add_error(struct cgi *c, const char *field, const char *msg)
{
	if (c->rep.nerr < WEB_ERRORS_MAX) {
		c->rep.err[c->rep.nerr].field = arena_strdup(field);
		c->rep.err[c->rep.nerr++].msg = arena_strdup(msg);
	}
}

static void headers(struct cgi *c, int status)
{
	printf("Status: %d\r\nContent-Type: text/html; charset=utf-8\r\n"
	       "Cache-Control: no-store\r\n", status);
	for (int i = 0; i < c->ncookies; i++)
		printf("Set-Cookie: %s\r\n", c->set_cookie[i]);
	printf("\r\n");
}

static void navigation(struct cgi *c)
{
	html_out(stdout, "<nav aria-label=\"Main\"><ul>\n");
	for (size_t i = 0; i < sizeof nav / sizeof nav[0]; i++) {
		if (nav[i].admin && !c->s.admin)
			continue;
		html_out(stdout, "<li><a href=\"%s\"%R>%s</a></li>\n", nav[i].path,
			 strcmp(c->path, nav[i].path) == 0 ? " aria-current=\"page\"" : "",
			 nav[i].label);
	}
	html_out(stdout, "</ul><form method=\"post\" action=\"/logout\" class=\"signout\">"
		 "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
		 "<span>%s</span> <button type=\"submit\">Sign out</button></form></nav>\n",
		 c->s.csrf, c->s.user);
}

void page_begin(struct cgi *c, int status, const char *title)
{
	if (!c->logged_in)
		pre_token(c);   /* the forms' token cookie must go out with the headers */
	headers(c, status);
	html_out(stdout, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
		 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
		 "<title>%s - Postern</title><link rel=\"stylesheet\" href=\"/static/style.css\">"
		 "</head>\n<body><header><span class=\"brand\">Postern</span></header>\n", title);
	if (c->logged_in)
		navigation(c);
	html_out(stdout, "<main><h1>%s</h1>\n", title);
}

void page_end(struct cgi *c)
{
	(void)c;
	html_out(stdout, "</main></body></html>\n");
}

void page_errors(struct cgi *c, const char *const *shown, int nshown)
{
	int any = 0;

	for (int i = 0; i < c->rep.nerr; i++) {
		int is_shown = 0;
		for (int k = 0; k < nshown; k++)
			if (strcmp(c->rep.err[i].field, shown[k]) == 0)
				is_shown = 1;
		if (is_shown)
			continue;
		if (!any++)
			html_out(stdout, "<div class=\"error\" role=\"alert\"><p>Not saved:</p><ul>");
		html_out(stdout, "<li>%s</li>", c->rep.err[i].msg);
	}
	if (any)
		html_out(stdout, "</ul></div>\n");
	else if (c->rep.nerr)
		html_out(stdout, "<div class=\"error\" role=\"alert\"><p>Not saved: please "
			 "correct the fields marked below.</p></div>\n");
}

void page_notice(struct cgi *c)
{
	if (strcmp(param(c, "saved"), "1") == 0)
		html_out(stdout, "<p class=\"notice\" role=\"status\">Saved. The change is in "
			 "effect.</p>\n");
}

/* The id of a field: "f-" and its name with odd characters made '-'. */
static const char *field_id(const char *name)
{
	static char id[80];
	size_t i = 0;

	id[i++] = 'f', id[i++] = '-';
	for (; *name && i < sizeof id - 1; name++)
		id[i++] = (*name >= 'a' && *name <= 'z') || (*name >= '0' && *name <= '9') ? *name : '-';
	id[i] = '\0';
	return arena_strdup(id);
}

static void field_after(struct cgi *c, const char *id, const char *name, const char *help)
{
	const char *err = field_error(c, name);

	if (help && *help)
		html_out(stdout, "<small id=\"%s-help\">%s</small>", id, help);
	if (err)
		html_out(stdout, "<p class=\"field-error\" id=\"%s-err\">%s</p>", id, err);
	html_out(stdout, "</div>\n");
}

static void field_before(struct cgi *c, const char *id, const char *name, const char *label,
			 const char *help)
{
	const char *err = field_error(c, name);

	html_out(stdout, "<div class=\"field%R\"><label for=\"%s\">%s</label>",
		 err ? " invalid" : "", id, label);
	(void)help;
}

static void described(const char *id, const char *help, const char *err)
{
	if (help && *help && err)
		html_out(stdout, " aria-describedby=\"%s-help %s-err\" aria-invalid=\"true\"", id, id);
	else if (err)
		html_out(stdout, " aria-describedby=\"%s-err\" aria-invalid=\"true\"", id);
	else if (help && *help)
		html_out(stdout, " aria-describedby=\"%s-help\"", id);
}

void field_input(struct cgi *c, const char *name, const char *label, const char *type,
		 const char *value, const char *help)
{
	const char *id = field_id(name);

	field_before(c, id, name, label, help);
	html_out(stdout, "<input type=\"%s\" id=\"%s\" name=\"%s\" value=\"%s\"", type, id, name,
		 strcmp(type, "password") == 0 ? "" : value);
	described(id, help, field_error(c, name));
	html_out(stdout, "%R>", strcmp(type, "password") == 0 ? " autocomplete=\"new-password\"" : "");
	field_after(c, id, name, help);
}

void field_select(struct cgi *c, const char *name, const char *label, const char *value,
		  const char *const *options, const char *help)
{
	const char *id = field_id(name);

	field_before(c, id, name, label, help);
	html_out(stdout, "<select id=\"%s\" name=\"%s\"", id, name);
	described(id, help, field_error(c, name));
	html_out(stdout, ">");
	for (; *options; options++)
		html_out(stdout, "<option%R>%s</option>",
			 strcmp(*options, value) == 0 ? " selected" : "", *options);
	html_out(stdout, "</select>");
	field_after(c, id, name, help);
}

void field_textarea(struct cgi *c, const char *name, const char *label, const char *value,
		    const char *help)
{
	const char *id = field_id(name);

	field_before(c, id, name, label, help);
	html_out(stdout, "<textarea id=\"%s\" name=\"%s\" rows=\"4\"", id, name);
	described(id, help, field_error(c, name));
	html_out(stdout, ">%s</textarea>", value);
	field_after(c, id, name, help);
}

void form_open(struct cgi *c, const char *action)
{
	html_out(stdout, "<form method=\"post\" action=\"%s\" novalidate>"
		 "<input type=\"hidden\" name=\"csrf\" value=\"%s\">\n", action,
		 c->logged_in ? c->s.csrf : pre_token(c));
}

void form_close(const char *button)
{
	html_out(stdout, "<div class=\"actions\"><button type=\"submit\">%s</button></div></form>\n",
		 button);
}

void button_form(struct cgi *c, const char *action, const char *label, const char *name,
		 const char *value, const char *op)
{
	html_out(stdout, "<form method=\"post\" action=\"%s\" class=\"inline\">"
		 "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
		 "<input type=\"hidden\" name=\"op\" value=\"%s\">"
		 "<input type=\"hidden\" name=\"%s\" value=\"%s\">"
		 "<button type=\"submit\" aria-label=\"%s %s\">%s</button></form>",
		 action, c->s.csrf, op, name, value, label, value, label);
}

void page_forbidden(struct cgi *c, const char *why)
{
	page_begin(c, 403, "Not allowed");
	html_out(stdout, "<p class=\"error\" role=\"alert\">%s</p>\n", why);
	html_out(stdout, "<p><a href=\"%s\">Back</a></p>\n", c->s.admin ? "/" : "/password");
	page_end(c);
}

void page_not_found(struct cgi *c)
{
	page_begin(c, 404, "Not found");
	html_out(stdout, "<p>There is no such page. <a href=\"/\">Dashboard</a></p>\n");
	page_end(c);
}
