/*
 * users.c - the users page: users with their roles, aliases; add, delete,
 * change role, reset a password, add and remove aliases. Read from the
 * users file directly; every change through admind (users_* + users_save,
 * then the mail daemons reload: a new user can log in to IMAP at once).
 */
#include <stdio.h>
#include <string.h>

#include "cgi.h"
#include "html.h"

static const char *const roles[] = { "user", "admin", NULL };

static void user_row(struct cgi *c, const struct users_entry *e, const struct users_db *db)
{
	html_out(stdout, "<tr><td>%s</td><td>%s%s</td><td>", e->name,
		 e->role == USERS_ROLE_ADMIN ? "admin" : "user",
		 strcmp(e->hash, "!") == 0 ? " (login disabled)" : "");
	for (size_t k = 0; k < db->n; k++)
		if (db->e[k].kind == USERS_KIND_ALIAS && strcmp(db->e[k].owner, e->name) == 0)
			html_out(stdout, "%s ", db->e[k].name);
	html_out(stdout, "</td><td>");
	if (strcmp(e->name, c->s.user) != 0)
		button_form(c, "/users", "Delete", "name", e->name, "delete");
	html_out(stdout, "</td></tr>\n");
}

static int has_alias(const struct users_db *db)
{
	for (size_t i = 0; i < db->n; i++)
		if (db->e[i].kind == USERS_KIND_ALIAS)
			return 1;
	return 0;
}

static void user_table(struct cgi *c)
{
	struct users_db db;
	char err[256];

	if (users_load(&db, c->users, err, sizeof err) < 0) {
		html_out(stdout, "<p class=\"error\">%s</p>\n", err);
		return;
	}
	html_out(stdout, "<table><caption>Users</caption><thead><tr><th scope=\"col\">Name</th>"
		 "<th scope=\"col\">Role</th><th scope=\"col\">Aliases</th><th scope=\"col\">Actions</th>"
		 "</tr></thead><tbody>\n");
	for (size_t i = 0; i < db.n; i++)
		if (db.e[i].kind == USERS_KIND_USER)
			user_row(c, &db.e[i], &db);
	html_out(stdout, "</tbody></table>\n<h2>Aliases</h2><ul>\n");
	if (!has_alias(&db))
		html_out(stdout, "<li>No aliases yet.</li>\n");
	for (size_t i = 0; i < db.n; i++)
		if (db.e[i].kind == USERS_KIND_ALIAS) {
			html_out(stdout, "<li>%s &rarr; %s ", db.e[i].name, db.e[i].owner);
			button_form(c, "/users", "Remove", "alias", db.e[i].name, "alias-del");
			html_out(stdout, "</li>\n");
		}
	html_out(stdout, "</ul>\n<h2>Distribution lists</h2><ul>\n");
	for (size_t i = 0; i < db.n; i++)
		if (db.e[i].kind == USERS_KIND_LIST) {
			html_out(stdout, "<li>%s: %s ", db.e[i].name, db.e[i].text ? db.e[i].text : "");
			button_form(c, "/users", "Remove", "list", db.e[i].name, "list-del");
			html_out(stdout, "</li>\n");
		}
	html_out(stdout, "</ul>\n");
	users_free(&db);
}

/* One POST: op add | delete | role | passwd | alias-add | alias-del. */
static int users_post(struct cgi *c)
{
	const char *op = form(c, "op"), *name = form(c, "name");

	if (strcmp(op, "add") == 0) {
		if (strcmp(form(c, "password"), form(c, "password2")) != 0) {
			add_error(c, "password2", "The two passwords differ.");
			return -1;
		}
		const char *argv[] = { "user-add", name, form(c, "role"), form(c, "password") };
		return admind_call(c, argv, 4);
	}
	if (strcmp(op, "delete") == 0) {
		if (strcmp(name, c->s.user) == 0) {
			add_error(c, "-", "You cannot delete yourself.");
			return -1;
		}
		const char *argv[] = { "user-del", name };
		return admind_call(c, argv, 2);
	}
	if (strcmp(op, "alias-add") == 0) {
		const char *argv[] = { "alias-add", form(c, "alias"), form(c, "owner") };
		return admind_call(c, argv, 3);
	}
	if (strcmp(op, "list-set") == 0) {
		const char *argv[] = { "list-set", form(c, "list"), form(c, "members") };
		return admind_call(c, argv, 3);
	}
	if (strcmp(op, "list-del") == 0) {
		const char *argv[] = { "list-del", form(c, "list") };
		return admind_call(c, argv, 2);
	}
	if (strcmp(op, "alias-del") == 0) {
		const char *argv[] = { "alias-del", form(c, "alias") };
		return admind_call(c, argv, 2);
	}
	add_error(c, "-", "Unknown action.");
	return -1;
}

void pg_users(struct cgi *c)
{
	const char *op = form(c, "op");
	int again = 0;

	if (c->post) {
		if (users_post(c) == 0) {
			redirect(c, "/users?saved=1");
			return;
		}
		again = 1;
	}
	page_begin(c, again ? 400 : 200, "Users and aliases");
	page_notice(c);
	page_errors(c, (const char *[]){ "name", "role", "password", "password2", "alias", "owner",
		"list", "members" }, 8);
	user_table(c);
	html_out(stdout, "<h2>Add a user</h2>\n");
	form_open(c, "/users");
	html_out(stdout, "<input type=\"hidden\" name=\"op\" value=\"add\">");
	field_input(c, "name", "User name", "text", strcmp(op, "add") == 0 ? form(c, "name") : "",
		    "lower-case letters, digits, '.', '-', '_'; the mail address is NAME@your domain");
	field_select(c, "role", "Role", strcmp(op, "add") == 0 ? form(c, "role") : "user", roles,
		     "admins may use this administration page");
	field_input(c, "password", "Password", "password", "", "");
	field_input(c, "password2", "Password again", "password", "", "");
	form_close("Add user");
	html_out(stdout, "<h2>Add an alias</h2>\n");
	form_open(c, "/users");
	html_out(stdout, "<input type=\"hidden\" name=\"op\" value=\"alias-add\">");
	field_input(c, "alias", "Alias", "text", strcmp(op, "alias-add") == 0 ? form(c, "alias") : "", "e.g. sales");
	field_input(c, "owner", "Delivered to user", "text", strcmp(op, "alias-add") == 0 ? form(c, "owner") : "", "");
	form_close("Add alias");
	html_out(stdout, "<h2>Create or replace a list</h2>\n");
	form_open(c, "/users");
	html_out(stdout, "<input type=\"hidden\" name=\"op\" value=\"list-set\">");
	field_input(c, "list", "List name", "text", strcmp(op, "list-set") == 0 ? form(c, "list") : "",
		    "e.g. all: mail to all@ goes to every member");
	field_input(c, "members", "Members", "text", strcmp(op, "list-set") == 0 ? form(c, "members") : "",
		    "users or aliases, separated by blanks or commas");
	form_close("Save list");
	page_end(c);
}
