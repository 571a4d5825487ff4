/*
 * cmd_user.c - `postern user ...`: manage the users file (docs/USERS.md).
 *
 *   postern user add NAME [--admin]     password read from stdin
 *   postern user del NAME
 *   postern user passwd NAME            password read from stdin
 *   postern user role NAME user|admin
 *   postern user list
 *   postern user alias-add ALIAS OWNER
 *   postern user alias-del ALIAS
 *   postern user list-set LIST MEMBER...
 *   postern user list-del LIST
 *
 * The file is $POSTERN_USERS, default /data/etc/users. Changes hold an
 * exclusive lock on FILE.lock across read, change and atomic save
 * (src/lib/settings.h, the same transaction as the web page's admind), so
 * the web page and the command line cannot lose each other's edits. A password
 * is never taken from argv: it is read from stdin, without echo (and twice)
 * when stdin is a terminal.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cmds.h"
#include "settings.h"
#include "users.h"

#define USER_DEFAULT_PATH "/data/etc/users"
#define USER_ERR_MAX 512

static const char user_usage[] =
	"usage: postern user add NAME [--admin] | del NAME | passwd NAME |\n"
	"       role NAME user|admin | list | alias-add ALIAS OWNER |\n"
	"       alias-del ALIAS | list-set LIST MEMBER... | list-del LIST\n"
	"The password is read from stdin. File: $POSTERN_USERS or " USER_DEFAULT_PATH "\n";

static const char *users_path(void)
{
	const char *p = getenv("POSTERN_USERS");

	return p && *p ? p : USER_DEFAULT_PATH;
}

/* Lower-case copy of a name from the command line; 0, or -1 if invalid. */
static int take_name(const char *arg, char out[USERS_NAME_MAX + 1])
{
	size_t n = strlen(arg);

	if (n > USERS_NAME_MAX)
		n = USERS_NAME_MAX + 1;   /* fails validation below */
	for (size_t i = 0; i < n && i <= USERS_NAME_MAX; i++)
		out[i] = (char)tolower((unsigned char)arg[i]);
	out[n > USERS_NAME_MAX ? USERS_NAME_MAX : n] = '\0';
	if (n > USERS_NAME_MAX || !users_name_valid(out)) {
		fprintf(stderr, "postern user: invalid name '%s' (lower-case letters, "
			"digits, '.', '-', '_'; at most %d bytes)\n", arg, USERS_NAME_MAX);
		return -1;
	}
	return 0;
}

/* One line from stdin without its newline; echo off on a terminal (cmds.h). */
int read_hidden_line(const char *prompt, char *buf, size_t cap)
{
	struct termios old, quiet;
	int tty = isatty(STDIN_FILENO), r = 0;
	size_t n;

	if (tty) {
		fputs(prompt, stderr);
		if (tcgetattr(STDIN_FILENO, &old) == 0) {
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
		}
	}
	if (!fgets(buf, (int)cap, stdin))
		r = -1;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (r < 0)
		return -1;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] != '\n' && !feof(stdin))
		return -2;   /* longer than the buffer */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return 0;
}

/* Read a new password and hash it into `hash`. Returns 0 or -1. */
static int new_password_hash(char *hash, size_t hashlen)
{
	char pw[USERS_PASSWORD_MAX + 2], again[USERS_PASSWORD_MAX + 2];
	int r = -1;

	if (read_hidden_line("New password: ", pw, sizeof pw) != 0) {
		fprintf(stderr, "postern user: no password on stdin (or longer than %d bytes)\n",
			USERS_PASSWORD_MAX);
		return -1;
	}
	if (pw[0] == '\0')
		fprintf(stderr, "postern user: empty password refused\n");
	else if (isatty(STDIN_FILENO) &&
		 (read_hidden_line("Again: ", again, sizeof again) != 0 || strcmp(pw, again) != 0))
		fprintf(stderr, "postern user: passwords do not match\n");
	else if (users_hash_password(pw, hash, hashlen) < 0)
		fprintf(stderr, "postern user: cannot hash the password (no randomness?)\n");
	else
		r = 0;
	memset(pw, 0, sizeof pw);
	memset(again, 0, sizeof again);
	return r;
}

static void print_db(const struct users_db *db)
{
	for (size_t i = 0; i < db->n; i++) {
		const struct users_entry *e = &db->e[i];

		if (e->kind == USERS_KIND_USER)
			printf("user  %-20s %s%s\n", e->name,
			       e->role == USERS_ROLE_ADMIN ? "admin" : "user",
			       strcmp(e->hash, "!") == 0 ? " (login disabled)" : "");
		else if (e->kind == USERS_KIND_ALIAS)
			printf("alias %-20s -> %s\n", e->name, e->owner);
		else if (e->kind == USERS_KIND_LIST)
			printf("list  %-20s -> %s\n", e->name, e->text);
	}
}

/* Join argv[from..] with spaces into buf. */
static int join_args(int argc, char **argv, int from, char *buf, size_t cap)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (int i = from; i < argc; i++) {
		int n = snprintf(buf + pos, cap - pos, "%s%s", i > from ? " " : "", argv[i]);

		if (n < 0 || (size_t)n >= cap - pos)
			return -1;
		pos += (size_t)n;
	}
	return 0;
}

/* Apply one changing subcommand to db. Returns an exit status. */
static int apply(struct users_db *db, int argc, char **argv)
{
	char name[USERS_NAME_MAX + 1], other[USERS_NAME_MAX + 1];
	char hash[USERS_HASH_MAX + 1], err[USER_ERR_MAX];
	const char *cmd = argv[1];
	int r;

	if (argc < 3) {
		fputs(user_usage, stderr);
		return 1;
	}
	if (take_name(argv[2], name) < 0)
		return 1;
	if (strcmp(cmd, "add") == 0 && (argc == 3 || (argc == 4 && strcmp(argv[3], "--admin") == 0))) {
		if (users_find(db, name)) {
			fprintf(stderr, "postern user: name '%s' already exists\n", name);
			return 1;
		}
		if (new_password_hash(hash, sizeof hash) < 0)
			return 1;
		r = users_add(db, name, argc == 4 ? USERS_ROLE_ADMIN : USERS_ROLE_USER,
			      hash, err, sizeof err);
	} else if (strcmp(cmd, "del") == 0 && argc == 3) {
		r = users_del(db, name, err, sizeof err);
	} else if (strcmp(cmd, "passwd") == 0 && argc == 3) {
		const struct users_entry *e = users_find(db, name);

		if (!e || e->kind != USERS_KIND_USER) {
			fprintf(stderr, "postern user: no user named '%s'\n", name);
			return 1;
		}
		if (new_password_hash(hash, sizeof hash) < 0)
			return 1;
		r = users_set_hash(db, name, hash, err, sizeof err);
	} else if (strcmp(cmd, "role") == 0 && argc == 4 &&
		   (strcmp(argv[3], "user") == 0 || strcmp(argv[3], "admin") == 0)) {
		r = users_set_role(db, name, argv[3][0] == 'a' ? USERS_ROLE_ADMIN :
				   USERS_ROLE_USER, err, sizeof err);
	} else if (strcmp(cmd, "alias-add") == 0 && argc == 4) {
		if (take_name(argv[3], other) < 0)
			return 1;
		r = users_alias_add(db, name, other, err, sizeof err);
	} else if ((strcmp(cmd, "alias-del") == 0 || strcmp(cmd, "list-del") == 0) && argc == 3) {
		r = users_remove(db, name, err, sizeof err);
	} else if (strcmp(cmd, "list-set") == 0 && argc >= 4) {
		static char members[USERS_NAME_MAX * 1024];

		if (join_args(argc, argv, 3, members, sizeof members) < 0) {
			fprintf(stderr, "postern user: too many members\n");
			return 1;
		}
		for (char *p = members; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		r = users_list_set(db, name, members, err, sizeof err);
	} else {
		fputs(user_usage, stderr);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "postern user: %s\n", err);
		return 1;
	}
	return 0;
}

/* The command line of a changing subcommand, for settings_users_edit. */
struct user_cmd {
	int argc;
	char **argv;
	int status;        /* apply()'s exit status */
};

static int change_users(struct users_db *db, void *arg, char *err, size_t n)
{
	struct user_cmd *c = arg;

	(void)err, (void)n;   /* apply() prints its own messages */
	c->status = apply(db, c->argc, c->argv);
	return c->status == 0 ? 0 : -1;
}

static int list_users(const char *path)
{
	struct users_db db;
	char err[USER_ERR_MAX];

	if (users_load(&db, path, err, sizeof err) < 0) {
		fprintf(stderr, "postern user: %s\n", err);
		return 1;
	}
	print_db(&db);
	users_free(&db);
	return 0;
}

int cmd_user(int argc, char **argv)
{
	struct user_cmd c = { argc, argv, 0 };
	char err[USER_ERR_MAX];
	const char *path = users_path();
	int rc;

	if (argc < 2) {
		fputs(user_usage, stderr);
		return 1;
	}
	if (strcmp(argv[1], "list") == 0 && argc == 2)
		return list_users(path);
	/* lock, load, change, save: settings.h, as the web page does */
	rc = settings_users_edit(path, change_users, &c, -1, err, sizeof err);
	if (rc == SETTINGS_ECHANGE)
		return c.status;
	if (rc != SETTINGS_OK)
		fprintf(stderr, "postern user: %s\n", err);
	return rc == SETTINGS_OK ? 0 : rc == SETTINGS_ELOAD ? 1 : 111;
}
