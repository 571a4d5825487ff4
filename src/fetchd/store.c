/*
 * store.c - the spool file a message is retrieved into, and the hand-over
 * to local delivery.
 *
 * fetch_deliver is the fetcher's ONE call into local delivery: when
 * src/lib/deliver.h (the delivery path shared with the SMTP server, where
 * filtering hooks in) lands, its body becomes that call.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetchd.h"
#include "fsutil.h"
#include "maildir.h"

/* Opens an anonymous spool file in dir (on the data partition, so a large
 * message never sits in RAM). Returns the descriptor or -1. */
int spool_open(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != ENOENT))
		return fd;
	/* No O_TMPFILE on this file system: a named file, unlinked at once. */
	char p[FS_PATH_MAX];
	snprintf(p, sizeof p, "%s/spool.XXXXXX", dir);
	fd = mkostemp(p, O_CLOEXEC);
	if (fd >= 0)
		unlink(p);
	return fd;
}

/* Empties the spool for the next message. */
int spool_reset(int fd)
{
	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		return -1;
	return 0;
}

/* A pop3_reader sink writing to the spool descriptor *(int *)arg. */
int spool_sink(void *arg, const void *data, size_t len)
{
	int fd = *(int *)arg;
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The Maildir of user u into out. */
static int user_dir(const struct fetch_paths *p, const char *u, char *out, size_t cap)
{
	if (!fs_name_ok(u))
		return -1;
	int n = snprintf(out, cap, "%s/%s", p->mail, u);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int fetch_deliver(const struct fetch_paths *p, const char *const *users, size_t n,
	int fd, const char *key, char *err, size_t errlen)
{
	/* TODO(deliver.h): replace the body with the shared delivery call. */
	char (*dirs)[FS_PATH_MAX / 4] = calloc(n, sizeof *dirs);
	const char **dv = calloc(n, sizeof *dv);
	int rc = -1;
	if (!dirs || !dv) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (user_dir(p, users[i], dirs[i], sizeof dirs[i]) < 0) {
			snprintf(err, errlen, "bad user name");
			goto out;
		}
		struct stat st;
		if (stat(dirs[i], &st) < 0 && maildir_create(dirs[i]) < 0) {
			snprintf(err, errlen, "%s: %s", dirs[i], strerror(errno));
			goto out;
		}
		dv[i] = dirs[i];
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		snprintf(err, errlen, "spool: %s", strerror(errno));
		goto out;
	}
	rc = maildir_deliver_fd(dv, n, fd, key, err, errlen);
out:
	free(dirs);
	free(dv);
	return rc;
}

int fetch_forget_key(const struct fetch_paths *p, const char *const *users, size_t n,
	const char *key)
{
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		char d[FS_PATH_MAX / 4];
		if (user_dir(p, users[i], d, sizeof d) < 0 || maildir_key_forget(d, key) < 0)
			rc = -1;
	}
	return rc;
}
