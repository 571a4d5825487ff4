/*
 * setup.c - the one-time setup code that guards the first-boot wizard
 * (docs/web.md): while the users file has no admin, whoever opens the page
 * must type the code shown on the console (physical access) or written in
 * the provisioning file ("# setup-code CODE"), so a stranger on the LAN
 * cannot claim a fresh box first.
 */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <unistd.h>

#include "admind.h"
#include "fsutil.h"
#include "users.h"

#define SETUP_CODE_LEN 10          /* random characters in a new code */
#define SETUP_CODE_MAX 64          /* bytes in a stored or typed code */
/* No 0/O, 1/I/L: read off a console by a person. */
static const char code_alphabet[] = "23456789ABCDEFGHJKMNPQRSTUVWXYZ";

int adm_setup_needed(const struct adm_opts *o)
{
	struct users_db db;
	char err[256];
	int needed = 1;

	if (users_load(&db, o->users, err, sizeof err) < 0)
		return 0;   /* an unreadable users file is not a fresh box */
	for (size_t i = 0; i < db.n; i++)
		if (db.e[i].kind == USERS_KIND_USER && db.e[i].role == USERS_ROLE_ADMIN &&
		    strcmp(db.e[i].hash, "!") != 0)
			needed = 0;
	users_free(&db);
	return needed;
}

/* Upper case without blanks and dashes, at most SETUP_CODE_MAX bytes. */
static void normalise(const char *in, char *out)
{
	size_t o = 0;

	for (; *in && o < SETUP_CODE_MAX; in++)
		if (*in != '-' && *in != ' ' && *in != '\t' && *in != '\n' && *in != '\r')
			out[o++] = (char)toupper((unsigned char)*in);
	out[o] = '\0';
}

/* "# setup-code CODE" in the (provisioned) configuration file. */
static int code_from_conf(const struct adm_opts *o, char *code)
{
	static char text[256 * 1024];
	ssize_t n = fs_read_file(o->conf, text, sizeof text - 1);

	if (n < 0)
		return -1;
	for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
		char word[SETUP_CODE_MAX + 1];
		if (sscanf(l, " # setup-code%*[: \t]%64s", word) == 1 ||
		    sscanf(l, " #setup-code%*[: \t]%64s", word) == 1) {
			normalise(word, code);
			return code[0] ? 0 : -1;
		}
	}
	return -1;
}

static int code_random(char *code)
{
	unsigned char rnd[SETUP_CODE_LEN];

	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		return -1;
	for (int i = 0; i < SETUP_CODE_LEN; i++)
		code[i] = code_alphabet[rnd[i] % (sizeof code_alphabet - 1)];
	code[SETUP_CODE_LEN] = '\0';
	return 0;
}

static void show(const struct adm_opts *o, const char *code)
{
	int fd = open(o->console, O_WRONLY | O_NOCTTY | O_APPEND | O_CLOEXEC | O_CREAT, 0600);

	if (fd >= 0) {
		dprintf(fd, "postern: web setup code: %s\n", code);
		close(fd);
	}
	syslog(LOG_NOTICE, "setup wizard open: the setup code is on the console");
}

void adm_setup_code_init(const struct adm_opts *o)
{
	char code[SETUP_CODE_MAX + 2];
	ssize_t n;

	if (!adm_setup_needed(o))
		return;
	n = fs_read_file(o->setup_code, code, SETUP_CODE_MAX);
	if (n > 0) {
		normalise(code, code);
	} else {
		if (code_from_conf(o, code) < 0 && code_random(code) < 0)
			return;
		if (fs_write_atomic(o->setup_code, code, strlen(code), 0600) < 0) {
			syslog(LOG_ERR, "cannot store the setup code in %s", o->setup_code);
			return;
		}
	}
	show(o, code);
}

int adm_setup_code_ok(const struct adm_opts *o, const char *typed)
{
	char want[SETUP_CODE_MAX + 2], got[SETUP_CODE_MAX + 1];
	unsigned char diff = 0;
	size_t wl, gl;

	if (fs_read_file(o->setup_code, want, SETUP_CODE_MAX) <= 0)
		return 0;
	normalise(want, want);
	normalise(typed, got);
	wl = strlen(want), gl = strlen(got);
	if (wl == 0)
		return 0;
	for (size_t i = 0; i < wl; i++)   /* constant time over the stored code */
		diff |= (unsigned char)(want[i] ^ (i < gl ? got[i] : 0));
	return diff == 0 && wl == gl;
}
