/* secret: see secret.h. */
#include "secret.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

#define SECRET_TLS_DIR "tls"         /* the TLS key's own directory */

/* Adds owner `who` for name to *found, or fails when another claimed it. */
static int claim(const char **found, const char *who, const char *name,
		 char *err, size_t errlen)
{
	if (*found && strcmp(*found, who) != 0) {
		snprintf(err, errlen, "secret %s is used by both %s and %s: give each its own file",
			 name, *found, who);
		return -1;
	}
	*found = who;
	return 0;
}

const char *secret_owner(const struct config *cfg, const char *name,
			 char *err, size_t errlen)
{
	const char *found = NULL;

	for (int i = 0; i < cfg->naccounts; i++)
		if (strcmp(cfg->account[i].password_file, name) == 0 &&
		    claim(&found, SECRET_OWNER_FETCH, name, err, errlen) < 0)
			return NULL;
	if (strcmp(cfg->smarthost.password_file, name) == 0 &&
	    claim(&found, SECRET_OWNER_RELAY, name, err, errlen) < 0)
		return NULL;
	return found ? found : "root";
}

/* Checks the open secret's type, size and mode. */
static int check_file(int fd, const char *name, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "secret %s: %s", name, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "secret %s is not a regular file", name);
		return -1;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "secret %s is open to others (mode %04o): "
			 "run `postern secret fix`", name, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	if (st.st_size > SECRET_MAX + 2) {
		snprintf(err, errlen, "secret %s is larger than %d bytes", name, SECRET_MAX);
		return -1;
	}
	return 0;
}

/* Drops one final LF or CRLF; refuses NUL, inner line breaks and empty. */
static int trim_value(char *buf, int n, const char *name, char *err, size_t errlen)
{
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (n == 0) {
		snprintf(err, errlen, "secret %s is empty", name);
		return -1;
	}
	if (memchr(buf, '\0', (size_t)n) || memchr(buf, '\n', (size_t)n) ||
	    memchr(buf, '\r', (size_t)n)) {
		snprintf(err, errlen, "secret %s holds a NUL or a line break", name);
		return -1;
	}
	return n;
}

int secret_read(const char *dir, const char *name, char *buf, size_t cap,
		char *err, size_t errlen)
{
	int dfd;
	ssize_t n;

	if (!fs_name_ok(name)) {
		snprintf(err, errlen, "secret name %s is not a plain file name", name);
		return -1;
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	n = secret_read_at(dfd, name, buf, cap, err, errlen);
	close(dfd);
	return (int)n;
}

int secret_read_at(int dirfd, const char *name, char *buf, size_t cap,
		   char *err, size_t errlen)
{
	int fd;
	ssize_t n;

	if (!fs_name_ok(name)) {
		snprintf(err, errlen, "secret name %s is not a plain file name", name);
		return -1;
	}
	fd = fs_openat_nofollow(dirfd, name, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "secret %s: %s", name,
			 errno == ELOOP ? "is a symbolic link" : strerror(errno));
		return -1;
	}
	if (check_file(fd, name, err, errlen) < 0 || cap < 2) {
		if (cap < 2)
			snprintf(err, errlen, "secret %s: no room", name);
		close(fd);
		return -1;
	}
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "secret %s: %s", name, strerror(errno));
		return -1;
	}
	return trim_value(buf, (int)n, name, err, errlen);
}

/* uid/gid of owner (NULL or "root": 0/0). */
static int owner_ids(const char *owner, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
	struct passwd *pw;

	if (!owner || strcmp(owner, "root") == 0) {
		*uid = 0;
		*gid = 0;
		return 0;
	}
	if (!(pw = getpwnam(owner))) {
		snprintf(err, errlen, "no such user: %s", owner);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

int secret_write(const char *dir, const char *name, const char *value, size_t len,
		 const char *owner, char *err, size_t errlen)
{
	char path[FS_PATH_MAX];
	uid_t uid;
	gid_t gid;

	if (!fs_name_ok(name) || strcmp(name, SECRET_TLS_DIR) == 0) {
		snprintf(err, errlen, "secret name %s is not a plain file name", name);
		return -1;
	}
	if (len == 0 || len > SECRET_MAX || memchr(value, '\0', len) ||
	    memchr(value, '\n', len) || memchr(value, '\r', len)) {
		snprintf(err, errlen, "a secret is 1 to %d bytes on one line", SECRET_MAX);
		return -1;
	}
	if (owner_ids(owner, &uid, &gid, err, errlen) < 0)
		return -1;
	if (geteuid() != 0)
		uid = (uid_t)-1, gid = (gid_t)-1;   /* stays ours */
	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
		snprintf(err, errlen, "secret %s: path too long", name);
		return -1;
	}
	if (fs_write_atomic_owned(path, value, len, SECRET_MODE, uid, gid) < 0) {
		snprintf(err, errlen, "cannot store secret %s: %s", name, strerror(errno));
		return -1;
	}
	return 0;
}

/* Sets one file's owner and mode; 1 when changed, 0 when right, -1. */
static int fix_one(int dfd, const char *name, const char *owner,
		   void (*report)(const char *, void *), void *arg)
{
	char line[512], e[128];
	struct stat st;
	uid_t uid;
	gid_t gid;
	int fd, rc = 0;

	if (owner_ids(owner, &uid, &gid, e, sizeof e) < 0) {
		snprintf(line, sizeof line, "%s: CANNOT repair: %s", name, e);
		rc = -1;
	} else if ((fd = fs_openat_nofollow(dfd, name, O_RDONLY | O_NONBLOCK, 0)) < 0) {
		/* A link is never a secret: nobody follows it (secret_read). */
		snprintf(line, sizeof line, "%s: %s", name, errno == ELOOP ?
			 "a symbolic link, not a secret: remove it" : strerror(errno));
		rc = -1;
	} else {
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_uid != uid || st.st_gid != gid ||
		     (st.st_mode & 07777) != SECRET_MODE)) {
			rc = fchown(fd, uid, gid) == 0 && fchmod(fd, SECRET_MODE) == 0 ? 1 : -1;
			snprintf(line, sizeof line, "%s: %s -> owner %s, mode 0600", name,
				 rc > 0 ? "repaired" : "CANNOT repair", owner);
		}
		close(fd);
	}
	if (rc != 0 && report)
		report(line, arg);
	return rc;
}

int secret_fix(const char *dir, const struct config *cfg,
	       void (*report)(const char *line, void *arg), void *arg,
	       char *err, size_t errlen)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int failed = 0;

	if (!d) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		const char *owner;
		char e[256];

		if (de->d_name[0] == '.' || strcmp(de->d_name, SECRET_TLS_DIR) == 0)
			continue;    /* ., .., fsutil temp files, the TLS key's own dir */
		if (!(owner = secret_owner(cfg, de->d_name, e, sizeof e))) {
			owner = "root";   /* claimed twice: nobody but root reads it */
			if (report)
				report(e, arg);
		}
		if (fix_one(dirfd(d), de->d_name, owner, report, arg) < 0)
			failed++;
	}
	closedir(d);
	return failed;
}
