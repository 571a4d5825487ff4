/*
 * fsutil.c - durable atomic writes, bounded reads, mkdir -p, no-follow
 * opens. See fsutil.h.
 */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_NAME_MAX 255            /* longest single path component */
#define FS_TEMP_SUFFIX ".tmp-"     /* temp files: ".<name>.tmp-XXXXXX" */
#define FS_TEMP_X "XXXXXX"

int fs_open_nofollow(const char *path, int flags, mode_t mode)
{
	return open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode);
}

int fs_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > FS_NAME_MAX || name[0] == '.')
		return 0;
	return strchr(name, '/') == NULL;
}

int fs_openat_nofollow(int dirfd, const char *name, int flags, mode_t mode)
{
	if (!fs_name_ok(name)) {
		errno = EINVAL;
		return -1;
	}
	return openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
}

/* Splits path into its directory (or ".") and last component. */
static int split_path(const char *path, char *dir, size_t dcap, const char **base)
{
	const char *slash = strrchr(path, '/');
	size_t dlen;

	if (!slash) {
		*base = path;
		snprintf(dir, dcap, ".");
		return 0;
	}
	*base = slash + 1;
	dlen = slash == path ? 1 : (size_t)(slash - path);
	if (dlen >= dcap || **base == '\0') {
		errno = dlen >= dcap ? ENAMETOOLONG : EISDIR;
		return -1;
	}
	memcpy(dir, path, dlen);
	dir[dlen] = '\0';
	return 0;
}

ssize_t fs_read_file(const char *path, char *buf, size_t cap)
{
	struct stat st;
	size_t len = 0;
	ssize_t r;
	/* O_NONBLOCK: opening a FIFO must not hang; regular files ignore it. */
	int fd = fs_open_nofollow(path, O_RDONLY | O_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int saved = errno;
		if (fstat(fd, &st) == 0)
			saved = EINVAL;  /* not a regular file */
		close(fd);
		errno = saved;
		return -1;
	}
	/* Read up to cap + 1 bytes: one byte too many means too big. */
	for (;;) {
		char extra;
		r = len < cap ? read(fd, buf + len, cap - len) : read(fd, &extra, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (len == cap) {
			close(fd);
			errno = EFBIG;
			return -1;
		}
		len += (size_t)r;
	}
	close(fd);
	if (r < 0)
		return -1;
	buf[len] = '\0';
	return (ssize_t)len;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int fs_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

int fs_fsync_parent(const char *path)
{
	char dir[FS_PATH_MAX];
	const char *base;

	if (split_path(path, dir, sizeof dir, &base) < 0)
		return -1;
	return fs_fsync_dir(dir);
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	return fs_write_atomic_owned(path, data, len, mode, (uid_t)-1, (gid_t)-1);
}

/* A new temp file next to path (its directory into dir, its name into
 * tmp): the descriptor, or -1. */
static int temp_beside(const char *path, char dir[FS_PATH_MAX], char tmp[FS_PATH_MAX])
{
	const char *base;
	int n;

	if (split_path(path, dir, FS_PATH_MAX, &base) < 0)
		return -1;
	n = snprintf(tmp, FS_PATH_MAX, "%s/.%s" FS_TEMP_SUFFIX FS_TEMP_X, dir, base);
	if (n < 0 || n >= FS_PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return mkstemp(tmp);
}

int fs_write_replace(const char *path, const void *data, size_t len, mode_t mode)
{
	char dir[FS_PATH_MAX], tmp[FS_PATH_MAX];
	int fd, saved;

	if ((fd = temp_beside(path, dir, tmp)) < 0)
		return -1;
	if (fchmod(fd, mode) < 0 || write_all(fd, data, len) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
	} else if (close(fd) == 0 && rename(tmp, path) == 0) {
		return 0;
	}
	saved = errno;
	unlink(tmp);
	errno = saved;
	return -1;
}

int fs_write_atomic_owned(const char *path, const void *data, size_t len, mode_t mode,
			  uid_t uid, gid_t gid)
{
	char dir[FS_PATH_MAX], tmp[FS_PATH_MAX];
	int fd, saved;

	fd = temp_beside(path, dir, tmp);
	if (fd < 0)
		return -1;
	/* Owner and mode are set before a byte is written: a secret is never
	 * readable by anyone else, not even while it is a temp file. */
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0)
		goto fail;
	if (fchmod(fd, mode) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	return fs_fsync_dir(dir);
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = saved;
	return -1;
}

/* 1 when entry is one of base's temp names ".<base>.tmp-XXXXXX". */
static int is_temp_of(const char *entry, const char *base)
{
	size_t blen = strlen(base), slen = strlen(FS_TEMP_SUFFIX);

	return entry[0] == '.' && strncmp(entry + 1, base, blen) == 0 &&
	       strncmp(entry + 1 + blen, FS_TEMP_SUFFIX, slen) == 0 &&
	       strlen(entry + 1 + blen + slen) == strlen(FS_TEMP_X);
}

int fs_clean_temps(const char *path)
{
	char dir[FS_PATH_MAX];
	const char *base;
	struct dirent *de;
	DIR *d;
	int removed = 0;

	if (split_path(path, dir, sizeof dir, &base) < 0)
		return -1;
	d = opendir(dir);
	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (is_temp_of(de->d_name, base) && unlinkat(dirfd(d), de->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

/* mkdir that accepts an existing directory. */
static int mkdir_one(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -1;
	if (stat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

int fs_mkdir_p(const char *path, mode_t mode)
{
	char buf[FS_PATH_MAX];
	size_t len = strlen(path);
	char *p;

	if (len == 0 || len >= sizeof buf) {
		errno = len ? ENAMETOOLONG : ENOENT;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (p = buf + 1; *p; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		if (mkdir_one(buf, mode) < 0)
			return -1;
		*p = '/';
	}
	return mkdir_one(buf, mode);
}
