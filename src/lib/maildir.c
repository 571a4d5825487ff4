/*
 * maildir.c - Maildir++ store: creation, durable (and exactly-once)
 * delivery, listing, flags, quota and free-space checks. Design: maildir.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

#include <bearssl.h>

#include "fsutil.h"
#include "maildir.h"

#define MAILDIR_HOST_MAX 64          /* bytes of the host name in file names */
#define MAILDIR_IO_BUF 32768         /* bytes copied per read */
#define MAILDIR_KEY_HEX 32           /* hex digits of SHA-256(key) in names */
#define MAILDIR_KEYS_DIR "postern-keys"
#define MAILDIR_DIR_MODE FS_MAIL_DIR_MODE
#define MAILDIR_FILE_MODE FS_MAIL_FILE_MODE

const char *const maildir_default_folders[] = {
	"Sent", "Drafts", "Trash", "Junk", "Archive", NULL
};

static unsigned long maildir_counter;   /* Q part of unique names */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- names ------------------------------------------------------------- */

/* A message name from outside: one component, not hidden, bounded. */
static int msg_name_ok(const char *name)
{
	size_t n = strnlen(name, MAILDIR_NAME_MAX + 1);

	return n > 0 && n <= MAILDIR_NAME_MAX && name[0] != '.' && !strchr(name, '/');
}

int maildir_folder_valid(const char *folder)
{
	size_t n = strnlen(folder, MAILDIR_FOLDER_MAX + 1);

	if (n == 0 || n > MAILDIR_FOLDER_MAX || folder[0] == '.' || folder[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)folder[i];

		if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
			return 0;
		if (c == '.' && folder[i + 1] == '.')
			return 0;
	}
	return 1;
}

int maildir_folder_path(const char *root, const char *folder, char *out, size_t outlen)
{
	int n;

	if (!maildir_folder_valid(folder)) {
		errno = EINVAL;
		return -1;
	}
	n = snprintf(out, outlen, "%s/.%s", root, folder);
	if (n < 0 || (size_t)n >= outlen) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* The host name with '/', ':' and ',' escaped as the spec asks. */
static void host_part(char *out, size_t cap)
{
	char h[MAILDIR_HOST_MAX + 1];
	size_t o = 0;

	if (gethostname(h, sizeof h) < 0)
		strcpy(h, "localhost");
	h[MAILDIR_HOST_MAX] = '\0';
	for (const char *p = h; *p && o + 5 < cap; p++) {
		if (*p == '/' || *p == ':' || *p == ',')
			o += (size_t)snprintf(out + o, cap - o, "\\%03o", (unsigned char)*p);
		else
			out[o++] = *p;
	}
	out[o] = '\0';
}

/* "TIME.M<usec>P<pid>Q<n>R<rand>.HOST" (or "TIME.K<hex>.HOST" for a key). */
static int unique_base(char *out, size_t cap, const char *keyhex)
{
	char host[MAILDIR_HOST_MAX * 4 + 1];
	struct timeval tv;
	uint64_t rnd = 0;
	int n;

	gettimeofday(&tv, NULL);
	host_part(host, sizeof host);
	if (keyhex)
		n = snprintf(out, cap, "%lld.K%s.%s", (long long)tv.tv_sec, keyhex, host);
	else {
		if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
			rnd = 0;   /* usec, pid and counter still make it unique */
		n = snprintf(out, cap, "%lld.M%ldP%ldQ%luR%016llx.%s", (long long)tv.tv_sec,
			     (long)tv.tv_usec, (long)getpid(), ++maildir_counter,
			     (unsigned long long)rnd, host);
	}
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static void key_hex(const char *key, char hex[MAILDIR_KEY_HEX + 1])
{
	br_sha256_context c;
	unsigned char d[32];

	br_sha256_init(&c);
	br_sha256_update(&c, key, strlen(key));
	br_sha256_out(&c, d);
	for (int i = 0; i < MAILDIR_KEY_HEX / 2; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

int maildir_parse_name(const char *name, struct maildir_info *info)
{
	const char *colon, *s;

	if (!msg_name_ok(name))
		return -1;
	memset(info, 0, sizeof *info);
	colon = strchr(name, ':');
	info->baselen = colon ? (size_t)(colon - name) : strlen(name);
	for (s = strstr(name, ",S="); s && s < name + info->baselen; s = strstr(s + 1, ",S=")) {
		const char *p = s + 3;
		unsigned long long v = 0;

		if (*p < '0' || *p > '9')
			continue;
		while (*p >= '0' && *p <= '9' && v < (1ULL << 60))
			v = v * 10 + (unsigned long long)(*p++ - '0');
		info->size = v;
		info->has_size = 1;
		break;
	}
	if (colon && strncmp(colon, ":2,", 3) == 0) {
		size_t k = 0;

		for (s = colon + 3; *s && k < MAILDIR_FLAGS_MAX; s++)
			if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
				info->flags[k++] = *s;
		info->flags[k] = '\0';
	}
	return 0;
}

int maildir_name_with_flags(const char *name, const char *flags, char *out, size_t outlen)
{
	struct maildir_info info;
	char seen[128] = { 0 }, sorted[MAILDIR_FLAGS_MAX + 1];
	size_t k = 0;
	int n;

	if (maildir_parse_name(name, &info) < 0)
		return -1;
	for (const char *p = flags; *p; p++) {
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
			return -1;
		seen[(unsigned char)*p] = 1;
	}
	for (int c = 'A'; c <= 'z'; c++)
		if (seen[c])
			sorted[k++] = (char)c;
	sorted[k] = '\0';
	n = snprintf(out, outlen, "%.*s:2,%s", (int)info.baselen, name, sorted);
	if (n < 0 || (size_t)n >= outlen || (size_t)n > MAILDIR_NAME_MAX)
		return -1;
	return 0;
}

/* ---- creating Maildirs -------------------------------------------------- */

static int mkdirat_ok(int dfd, const char *name)
{
	return mkdirat(dfd, name, MAILDIR_DIR_MODE) == 0 || errno == EEXIST ? 0 : -1;
}

static int open_dir(const char *path)
{
	return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static int open_subdir(int dfd, const char *name)
{
	return openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* tmp/ new/ cur/ inside `path` (which exists); fsync of `path`. */
static int make_subdirs(const char *path)
{
	int dfd = open_dir(path), r = -1;

	if (dfd < 0)
		return -1;
	if (mkdirat_ok(dfd, "tmp") == 0 && mkdirat_ok(dfd, "new") == 0 &&
	    mkdirat_ok(dfd, "cur") == 0 && fsync(dfd) == 0)
		r = 0;
	close(dfd);
	return r;
}

int maildir_create_folder(const char *root, const char *folder)
{
	char path[FS_PATH_MAX];
	int fd;

	if (maildir_folder_path(root, folder, path, sizeof path) < 0)
		return -1;
	if ((mkdir(path, MAILDIR_DIR_MODE) < 0 && errno != EEXIST) || make_subdirs(path) < 0)
		return -1;
	fd = open_dir(path);
	if (fd < 0)
		return -1;
	{
		int f = openat(fd, "maildirfolder", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
			       MAILDIR_FILE_MODE);

		if (f >= 0)
			close(f);
		if (f < 0 || fsync(fd) < 0) {
			close(fd);
			return -1;
		}
	}
	close(fd);
	return fs_fsync_dir(root);
}

int maildir_create(const char *root)
{
	if (fs_mkdir_p(root, MAILDIR_DIR_MODE) < 0 || make_subdirs(root) < 0)
		return -1;
	for (size_t i = 0; maildir_default_folders[i]; i++)
		if (maildir_create_folder(root, maildir_default_folders[i]) < 0)
			return -1;
	return fs_fsync_parent(root);
}

/* ---- delivery ----------------------------------------------------------- */

struct target {
	const char *path;
	int dfd, tmpfd, newfd, keysfd;
	int skip;          /* already has the key */
	int linked;        /* new/<final> created by us */
	int tmp_copy;      /* tmp/<tmpname> created by us */
	int marked;        /* postern-keys/<hex> created by us */
};

struct delivery {
	struct target *t;
	size_t n;
	const char *key;
	char hex[MAILDIR_KEY_HEX + 1];
	char tmpname[MAILDIR_NAME_MAX + 1];
	char final[MAILDIR_NAME_MAX + 1];
	size_t src;                  /* index of the target holding the tmp file */
	unsigned long long size;
	char *err;
	size_t errlen;
};

static void close_target(struct target *t)
{
	int *fds[] = { &t->dfd, &t->tmpfd, &t->newfd, &t->keysfd };

	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
}

static int open_target(struct delivery *d, struct target *t, const char *path)
{
	memset(t, 0, sizeof *t);
	t->path = path;
	t->tmpfd = t->newfd = t->keysfd = -1;
	t->dfd = open_dir(path);
	if (t->dfd >= 0)
		t->tmpfd = open_subdir(t->dfd, "tmp");
	if (t->tmpfd >= 0)
		t->newfd = open_subdir(t->dfd, "new");
	if (t->newfd < 0) {
		seterr(d->err, d->errlen, "%s: not a Maildir: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* 1 if directory `sub` of t holds a message named *.K<hex>.*, 0 if not, -1. */
static int scan_for_key(struct target *t, const char *sub, const char *hex)
{
	char pat[MAILDIR_KEY_HEX + 4];
	int fd = open_subdir(t->dfd, sub), found = 0;
	DIR *dir;
	struct dirent *de;

	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -1;
	}
	snprintf(pat, sizeof pat, ".K%s.", hex);
	while (!found && (de = readdir(dir)) != NULL)
		found = de->d_name[0] != '.' && strstr(de->d_name, pat) != NULL;
	closedir(dir);
	return found;
}

static int open_keys(struct target *t)
{
	if (t->keysfd >= 0)
		return 0;
	if (mkdirat(t->dfd, MAILDIR_KEYS_DIR, MAILDIR_DIR_MODE) == 0) {
		if (fsync(t->dfd) < 0)
			return -1;
	} else if (errno != EEXIST)
		return -1;
	t->keysfd = open_subdir(t->dfd, MAILDIR_KEYS_DIR);
	return t->keysfd < 0 ? -1 : 0;
}

/* Create the marker postern-keys/<hex> (content: the message name). */
static int make_marker(struct target *t, const char *hex, const char *msg)
{
	int fd;

	if (open_keys(t) < 0)
		return -1;
	fd = openat(t->keysfd, hex, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    MAILDIR_FILE_MODE);
	if (fd < 0)
		return errno == EEXIST ? 0 : -1;
	t->marked = 1;
	if (write(fd, msg, strlen(msg)) < 0 || close(fd) < 0)
		return -1;
	return 0;
}

/* Already delivered with this key? 1 yes (marker repaired), 0 no, -1 error. */
static int key_present(struct target *t, const char *hex)
{
	struct stat st;
	int r;

	if (open_keys(t) < 0)
		return -1;
	if (fstatat(t->keysfd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	if (errno != ENOENT)
		return -1;
	r = scan_for_key(t, "new", hex);
	if (r == 0)
		r = scan_for_key(t, "cur", hex);
	if (r == 1 && (make_marker(t, hex, "repaired") < 0 || fsync(t->keysfd) < 0))
		return -1;
	t->marked = 0;   /* a repaired marker stays even if this delivery fails */
	return r;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;

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

/* Copy everything readable from `in` to `out`, counting bytes. */
static int copy_fd(int in, int out, unsigned long long *size)
{
	char buf[MAILDIR_IO_BUF];

	for (;;) {
		ssize_t r = read(in, buf, sizeof buf);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (write_all(out, buf, (size_t)r) < 0)
			return -1;
		*size += (unsigned long long)r;
	}
}

/* Write the message into tmp/ of target `s`; fsync it. */
static int write_tmp(struct delivery *d, struct target *s, int src_fd,
		     const void *buf, size_t len)
{
	int fd, r;

	if (unique_base(d->tmpname, sizeof d->tmpname, NULL) < 0)
		return -1;
	fd = openat(s->tmpfd, d->tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    MAILDIR_FILE_MODE);
	if (fd < 0)
		return -1;
	s->tmp_copy = 1;
	d->size = 0;
	if (src_fd >= 0)
		r = copy_fd(src_fd, fd, &d->size);
	else {
		r = write_all(fd, buf, len);
		d->size = len;
	}
	if (r == 0)
		r = fsync(fd);
	if (close(fd) < 0)
		r = -1;
	return r;
}

/* Copy the source tmp file into tmp/ of `t` (another file system). */
static int copy_tmp(struct delivery *d, struct target *t)
{
	struct target *s = &d->t[d->src];
	unsigned long long n = 0;
	int in, out, r;

	in = openat(s->tmpfd, d->tmpname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return -1;
	out = openat(t->tmpfd, d->tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		     MAILDIR_FILE_MODE);
	if (out < 0) {
		close(in);
		return -1;
	}
	t->tmp_copy = 1;
	r = copy_fd(in, out, &n);
	if (r == 0)
		r = fsync(out);
	close(in);
	if (close(out) < 0)
		r = -1;
	return r;
}

/* Link the message into new/ of `t`. 0 done, 1 same key raced in, -1. */
static int link_into(struct delivery *d, struct target *t)
{
	struct target *s = &d->t[d->src];

	if (linkat(s->tmpfd, d->tmpname, t->newfd, d->final, 0) == 0) {
		t->linked = 1;
		return 0;
	}
	if (errno == EEXIST && d->key)
		return 1;
	if (errno != EXDEV && errno != EPERM)
		return -1;
	if (copy_tmp(d, t) < 0 || linkat(t->tmpfd, d->tmpname, t->newfd, d->final, 0) < 0)
		return -1;
	t->linked = 1;
	return 0;
}

/* Undo what this delivery created, newest first. */
static void rollback(struct delivery *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct target *t = &d->t[i];

		if (t->marked && unlinkat(t->keysfd, d->hex, 0) == 0)
			fsync(t->keysfd);
		if (t->linked && unlinkat(t->newfd, d->final, 0) == 0)
			fsync(t->newfd);
		t->marked = t->linked = 0;
	}
}

static void drop_tmp(struct delivery *d)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->t[i].tmp_copy) {
			unlinkat(d->t[i].tmpfd, d->tmpname, 0);
			d->t[i].tmp_copy = 0;
		}
}

/* Link into every target, then make every new/ (and marker) durable. */
static int commit(struct delivery *d)
{
	int made = 0;

	for (size_t i = 0; i < d->n; i++) {
		struct target *t = &d->t[i];
		int r;

		if (t->skip)
			continue;
		r = link_into(d, t);
		if (r < 0) {
			seterr(d->err, d->errlen, "%s: delivery: %s", t->path, strerror(errno));
			return -1;
		}
		if (r == 1)
			t->skip = 1;
	}
	for (size_t i = 0; i < d->n; i++) {
		struct target *t = &d->t[i];

		if (!t->linked)
			continue;
		if (fsync(t->newfd) < 0 || (d->key && (make_marker(t, d->hex, d->final) < 0 ||
						       fsync(t->keysfd) < 0))) {
			seterr(d->err, d->errlen, "%s: sync: %s", t->path, strerror(errno));
			return -1;
		}
		made++;
	}
	return made;
}

/* Mark targets that already hold the key. Returns how many remain, or -1. */
static int check_keys(struct delivery *d)
{
	int left = 0;

	for (size_t i = 0; i < d->n; i++) {
		int r = 0;

		if (d->key)
			r = key_present(&d->t[i], d->hex);
		if (r < 0) {
			seterr(d->err, d->errlen, "%s: delivery key: %s", d->t[i].path,
			       strerror(errno));
			return -1;
		}
		d->t[i].skip = r;
		left += !r;
	}
	return left;
}

static int make_final_name(struct delivery *d)
{
	char base[MAILDIR_NAME_MAX + 1];
	int n;

	if (unique_base(base, sizeof base, d->key ? d->hex : NULL) < 0)
		return -1;
	n = snprintf(d->final, sizeof d->final, "%s,S=%llu", base, d->size);
	return n < 0 || (size_t)n >= sizeof d->final ? -1 : 0;
}

static int deliver(const char *const *dirs, size_t n, int src_fd, const void *buf,
		   size_t len, const char *key, char *err, size_t errlen)
{
	struct delivery d;
	int result = -1, left;

	memset(&d, 0, sizeof d);
	d.err = err;
	d.errlen = errlen;
	d.key = key;
	if (n == 0 || n > MAILDIR_TARGETS_MAX || (key && (!*key || strlen(key) > MAILDIR_KEY_MAX))) {
		seterr(err, errlen, "bad delivery: %zu targets, key of %zu bytes", n,
		       key ? strlen(key) : 0);
		return -1;
	}
	if (key)
		key_hex(key, d.hex);
	d.t = calloc(n, sizeof *d.t);
	if (!d.t) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	for (d.n = 0; d.n < n; d.n++)
		if (open_target(&d, &d.t[d.n], dirs[d.n]) < 0)
			goto out;
	left = check_keys(&d);
	if (left <= 0) {
		result = left;   /* 0: every target already has it */
		goto out;
	}
	while (d.t[d.src].skip)
		d.src++;
	if (write_tmp(&d, &d.t[d.src], src_fd, buf, len) < 0 || make_final_name(&d) < 0) {
		seterr(err, errlen, "%s: writing tmp/: %s", d.t[d.src].path, strerror(errno));
		goto out;
	}
	result = commit(&d);
	if (result < 0)
		rollback(&d);
out:
	drop_tmp(&d);
	for (size_t i = 0; i < d.n && i < n; i++)
		close_target(&d.t[i]);
	if (d.n < n)
		close_target(&d.t[d.n]);
	free(d.t);
	return result;
}

int maildir_deliver_fd(const char *const *dirs, size_t n, int fd, const char *key,
		       char *err, size_t errlen)
{
	if (fd < 0) {
		seterr(err, errlen, "bad file descriptor");
		return -1;
	}
	return deliver(dirs, n, fd, NULL, 0, key, err, errlen);
}

int maildir_deliver_buf(const char *const *dirs, size_t n, const void *buf, size_t len,
			const char *key, char *err, size_t errlen)
{
	return deliver(dirs, n, -1, buf ? buf : "", len, key, err, errlen);
}

int maildir_key_forget(const char *dir, const char *key)
{
	char hex[MAILDIR_KEY_HEX + 1], path[FS_PATH_MAX];

	key_hex(key, hex);
	if (snprintf(path, sizeof path, "%s/%s/%s", dir, MAILDIR_KEYS_DIR, hex) >= (int)sizeof path)
		return -1;
	if (unlink(path) < 0 && errno != ENOENT)
		return -1;
	snprintf(path, sizeof path, "%s/%s", dir, MAILDIR_KEYS_DIR);
	return fs_fsync_dir(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* ---- reading and flags -------------------------------------------------- */

/* rename `from`/`name` to cur/`newname` in Maildir `dir`. */
static int rename_in(const char *dir, const char *from, const char *name, const char *newname)
{
	int dfd = open_dir(dir), sfd = -1, cfd = -1, r = -1;

	if (dfd >= 0)
		sfd = open_subdir(dfd, from);
	if (sfd >= 0)
		cfd = open_subdir(dfd, "cur");
	if (cfd >= 0)
		r = renameat(sfd, name, cfd, newname);
	if (r == 0 && strcmp(name, newname) != 0)
		r = fsync(cfd);
	if (dfd >= 0)
		close(dfd);
	if (sfd >= 0)
		close(sfd);
	if (cfd >= 0)
		close(cfd);
	return r;
}

int maildir_set_flags(const char *dir, const char *name, const char *flags,
		      char *newname, size_t cap)
{
	if (maildir_name_with_flags(name, flags, newname, cap) < 0) {
		errno = EINVAL;
		return -1;
	}
	if (rename_in(dir, "cur", name, newname) == 0)
		return 0;
	if (errno != ENOENT)
		return -1;
	return rename_in(dir, "new", name, newname);
}

int maildir_move_to_cur(const char *dir, const char *name, char *newname, size_t cap)
{
	struct maildir_info info;

	if (maildir_parse_name(name, &info) < 0 ||
	    maildir_name_with_flags(name, info.flags, newname, cap) < 0) {
		errno = EINVAL;
		return -1;
	}
	return rename_in(dir, "new", name, newname);
}

/* Walk one subdirectory; see maildir_list. */
static int list_sub(int dfd, const char *sub,
		    int (*cb)(const char *, const char *, void *), void *arg)
{
	int fd = open_subdir(dfd, sub), r = 0;
	DIR *dir;
	struct dirent *de;

	if (fd < 0)
		return -1;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -1;
	}
	while (r == 0 && (de = readdir(dir)) != NULL)
		if (de->d_name[0] != '.' && msg_name_ok(de->d_name))
			r = cb(sub, de->d_name, arg);
	closedir(dir);
	return r;
}

int maildir_list(const char *dir, int (*cb)(const char *sub, const char *name, void *arg),
		 void *arg)
{
	int dfd = open_dir(dir), r;

	if (dfd < 0)
		return -1;
	r = list_sub(dfd, "new", cb, arg);
	if (r == 0)
		r = list_sub(dfd, "cur", cb, arg);
	close(dfd);
	return r;
}

/* ---- quota and space ---------------------------------------------------- */

struct usage {
	int dfd;                 /* the Maildir being summed */
	unsigned long long bytes;
	unsigned long count;
	int failed;
};

static int add_usage(const char *sub, const char *name, void *arg)
{
	struct usage *u = arg;
	struct maildir_info info;

	if (maildir_parse_name(name, &info) < 0)
		return 0;
	if (!info.has_size) {
		char rel[MAILDIR_NAME_MAX + 8];
		struct stat st;

		snprintf(rel, sizeof rel, "%s/%s", sub, name);
		if (fstatat(u->dfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return 0;   /* moved or expunged meanwhile */
		info.size = (unsigned long long)st.st_size;
	}
	u->bytes += info.size;
	u->count++;
	return 0;
}

static int usage_of(const char *dir, struct usage *u)
{
	int r;

	u->dfd = open_dir(dir);
	if (u->dfd < 0)
		return -1;
	r = maildir_list(dir, add_usage, u);
	close(u->dfd);
	return r;
}

int maildir_usage(const char *root, unsigned long long *bytes, unsigned long *count)
{
	struct usage u = { -1, 0, 0, 0 };
	char path[FS_PATH_MAX];
	DIR *dir;
	struct dirent *de;

	if (usage_of(root, &u) < 0)
		return -1;
	dir = opendir(root);
	if (!dir)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] != '.' || !maildir_folder_valid(de->d_name + 1))
			continue;
		if (snprintf(path, sizeof path, "%s/%s", root, de->d_name) >= (int)sizeof path)
			continue;
		if (usage_of(path, &u) < 0 && errno != ENOENT && errno != ENOTDIR &&
		    errno != ELOOP) {
			closedir(dir);
			return -1;
		}
	}
	closedir(dir);
	*bytes = u.bytes;
	*count = u.count;
	return 0;
}

int maildir_quota_check(const char *root, unsigned long long limit,
			unsigned long long incoming)
{
	unsigned long long used;
	unsigned long count;

	if (limit == 0)
		return 0;
	if (maildir_usage(root, &used, &count) < 0)
		return -1;
	return used + incoming > limit || used + incoming < used ? 1 : 0;
}

int maildir_fs_check(const char *path, unsigned long long need,
		     unsigned long long reserve)
{
	struct statvfs sv;
	unsigned long long avail;

	if (statvfs(path, &sv) < 0)
		return -1;
	avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
	if (avail < need || avail - need < reserve)
		return 1;
	if (sv.f_files > 0 && sv.f_favail < MAILDIR_MIN_FREE_INODES)
		return 1;
	return 0;
}

int maildir_clean_tmp(const char *dir, time_t now)
{
	int dfd = open_dir(dir), tfd, removed = 0;
	DIR *d;
	struct dirent *de;
	struct stat st;

	if (dfd < 0)
		return -1;
	tfd = open_subdir(dfd, "tmp");
	close(dfd);
	if (tfd < 0)
		return -1;
	d = fdopendir(tfd);
	if (!d) {
		close(tfd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(tfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    !S_ISDIR(st.st_mode) && st.st_mtime + MAILDIR_TMP_MAX_AGE < now &&
		    unlinkat(tfd, de->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}
