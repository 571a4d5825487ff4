/*
 * keywords.c - IMAP keywords (RFC 3501 2.3.2: flags without a backslash,
 * "$Forwarded", "Junk", ...) kept the way Dovecot keeps them in a Maildir,
 * so both servers on one store agree: a message's keywords are the lower
 * case letters a-z of its file name's info part, and the file
 * "dovecot-keywords" in the mailbox directory names each letter:
 *
 *     0 $Forwarded
 *     1 Junk                       letter 'a' + number
 *
 * A new keyword takes the next free letter; the file is re-read and
 * replaced atomically under the index lock, so connections and processes
 * adding keywords at once do not give one letter two names. At most
 * KW_MAX keywords per mailbox (the letters); more answer NO.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#include "fsutil.h"
#include "imapd.h"

#define KW_FILE "dovecot-keywords"
#define KW_FILE_MAX 4096       /* bytes of the keywords file */

int kw_load(const char *dir, struct kw *k)
{
	char path[IMAPD_PATH_MAX + 32], buf[KW_FILE_MAX + 1];
	ssize_t n;

	memset(k, 0, sizeof *k);
	snprintf(path, sizeof path, "%s/" KW_FILE, dir);
	n = fs_read_file(path, buf, KW_FILE_MAX);
	if (n < 0)
		return errno == ENOENT ? 0 : -1;
	buf[n] = '\0';
	for (char *s = buf, *e; *s; s = e ? e + 1 : s + strlen(s)) {
		char *sp, *end;
		long i;

		if ((e = strchr(s, '\n')))
			*e = '\0';
		i = strtol(s, &end, 10);
		sp = end;
		if (end == s || *sp != ' ' || i < 0 || i >= KW_MAX || !sp[1] ||
		    strlen(sp + 1) > KW_NAME_MAX)
			continue;   /* a line we cannot use: its letter stays unnamed */
		snprintf(k->name[i], sizeof k->name[i], "%s", sp + 1);
		if (i + 1 > k->n)
			k->n = (int)i + 1;
		if (!e)
			break;
	}
	return 0;
}

static int kw_save(const char *dir, const struct kw *k)
{
	char path[IMAPD_PATH_MAX + 32], buf[KW_MAX * (KW_NAME_MAX + 8)];
	size_t n = 0;

	for (int i = 0; i < k->n; i++)
		if (k->name[i][0])
			n += (size_t)snprintf(buf + n, sizeof buf - n, "%d %s\n", i, k->name[i]);
	snprintf(path, sizeof path, "%s/" KW_FILE, dir);
	return fs_write_atomic(path, buf, n, FS_MAIL_FILE_MODE);
}

static char kw_find(const struct kw *k, const char *name)
{
	for (int i = 0; i < k->n; i++)
		if (k->name[i][0] && strcasecmp(k->name[i], name) == 0)
			return (char)('a' + i);
	return 0;
}

/* A keyword must be an atom without the characters flags may not hold. */
static int kw_valid(const char *name)
{
	return name[0] && name[0] != '\\' && strlen(name) <= KW_NAME_MAX &&
	       !strpbrk(name, "(){%*\"\\] ");
}

char kw_letter(const char *dir, struct kw *k, const char *name, int create)
{
	char path[IMAPD_PATH_MAX + 32], l = kw_find(k, name);
	int fd, i;

	if (l || !create || !kw_valid(name))
		return l;
	snprintf(path, sizeof path, "%s/" IMAP_INDEX_LOCK, dir);
	if ((fd = fs_open_nofollow(path, O_RDWR | O_CREAT, FS_MAIL_FILE_MODE)) < 0)
		return 0;
	if (flock(fd, LOCK_EX) == 0 && kw_load(dir, k) == 0 && !(l = kw_find(k, name))) {
		for (i = 0; i < KW_MAX && k->name[i][0]; i++)
			;
		if (i < KW_MAX) {
			snprintf(k->name[i], sizeof k->name[i], "%s", name);
			if (i + 1 > k->n)
				k->n = i + 1;
			l = kw_save(dir, k) == 0 ? (char)('a' + i) : 0;
		}
	}
	close(fd);
	return l;
}

void kw_imap(const struct kw *k, const char *letters, char *out, size_t cap)
{
	size_t n = strlen(out);

	if (n == 0 || out[n - 1] != ')')
		return;
	n--;   /* before the closing parenthesis */
	for (const char *l = letters; *l; l++) {
		int i = *l - 'a';

		if (i < 0 || i >= k->n || !k->name[i][0])
			continue;
		n += (size_t)snprintf(out + n, cap > n ? cap - n : 0, "%s%s",
				      out[n - 1] == '(' ? "" : " ", k->name[i]);
		if (n >= cap)
			return;
	}
	snprintf(out + n, cap - n, ")");
}
