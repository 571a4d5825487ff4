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

/* Q part of unique names: atomic, several worker threads deliver at once. */
static unsigned long maildir_counter;

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

/* "TIME.M<usec>P<pid>Q<n>R<rand>.HOST", or "TIME.M<usec>P<pid>Q<n>K<hex>.HOST"
 * for a key (the delivery check looks for "K<hex>." only after a crash). */
static int unique_base(char *out, size_t cap, const char *keyhex)
{
	char host[MAILDIR_HOST_MAX * 4 + 1], tail[MAILDIR_KEY_HEX + 20];
	struct timeval tv;
	uint64_t rnd = 0;
	int n;

	gettimeofday(&tv, NULL);
	host_part(host, sizeof host);
	if (keyhex)
		snprintf(tail, sizeof tail, "K%s", keyhex);
	else {
		if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
			rnd = 0;   /* usec, pid and counter still make it unique */
		snprintf(tail, sizeof tail, "R%016llx", (unsigned long long)rnd);
	}
	n = snprintf(out, cap, "%lld.M%ldP%ldQ%lu%s.%s", (long long)tv.tv_sec,
		     (long)tv.tv_usec, (long)getpid(),
		     __atomic_add_fetch(&maildir_counter, 1, __ATOMIC_RELAXED), tail, host);
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

/*
 * A batch (maildir.h): each added message is written into tmp/ (not yet
 * synced); maildir_batch_commit makes them all durable in three phases:
 *   A. fsync every tmp file and every postern-keys/ holding a new intent
 *      <hex>.p ("this key may be delivered", written before any link);
 *   B. link every tmp file into new/, fsync every new/;
 *   C. keyed copies: rename <hex>.p to the marker <hex>, fsync postern-keys/.
 * Each phase syncs a file system with syncfs() instead when more than
 * MAILDIR_SYNCFS_MIN descriptors of it are pending: one journal commit.
 */

#define MAILDIR_SYNCFS_MIN 4         /* more pending fds on one fs: syncfs() */
#define MAILDIR_INTENT ".p"          /* suffix of an intent in postern-keys/ */

struct mdir {                        /* one Maildir the batch writes to */
	char *path;
	int dfd, tmpfd, newfd, keysfd;
	dev_t dev;
	int dirty;                   /* its fd is in the current phase's sync */
};

struct copy {                        /* one message in one Maildir */
	size_t dir;
	size_t src;                  /* the copy whose tmp file is linked */
	int fd;                      /* own tmp file, open until phase A; or -1 */
	int ext;                     /* fd is the caller's file, linked itself */
	int tmp_made, linked, intent, marked, keyed;
	char hex[MAILDIR_KEY_HEX + 1];
	char tmpname[MAILDIR_NAME_MAX + 1];
	char final[MAILDIR_NAME_MAX + 1];
};

struct maildir_batch {
	struct mdir *d;
	size_t nd, capd;
	struct copy *c;
	size_t nc, capc;
	size_t nmsg;
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void mdir_close(struct mdir *m)
{
	close_fd(&m->dfd);
	close_fd(&m->tmpfd);
	close_fd(&m->newfd);
	close_fd(&m->keysfd);
	free(m->path);
	m->path = NULL;
}

static int mdir_open(struct mdir *m, const char *path, char *err, size_t errlen)
{
	struct stat st;

	memset(m, 0, sizeof *m);
	m->tmpfd = m->newfd = m->keysfd = -1;
	m->path = strdup(path);
	m->dfd = m->path ? open_dir(path) : -1;
	if (m->dfd >= 0)
		m->tmpfd = open_subdir(m->dfd, "tmp");
	if (m->tmpfd >= 0)
		m->newfd = open_subdir(m->dfd, "new");
	if (m->newfd < 0 || fstat(m->dfd, &st) < 0) {
		seterr(err, errlen, "%s: not a Maildir: %s", path, strerror(errno));
		mdir_close(m);
		return -1;
	}
	m->dev = st.st_dev;
	return 0;
}

/* The index of Maildir path in the batch, opened on first use; or -1. */
static long batch_dir(struct maildir_batch *b, const char *path, char *err, size_t errlen)
{
	for (size_t i = 0; i < b->nd; i++)
		if (strcmp(b->d[i].path, path) == 0)
			return (long)i;
	if (b->nd == b->capd) {
		size_t nc = b->capd ? 2 * b->capd : 8;
		struct mdir *n = realloc(b->d, nc * sizeof *n);

		if (!n) {
			seterr(err, errlen, "out of memory");
			return -1;
		}
		b->d = n;
		b->capd = nc;
	}
	if (mdir_open(&b->d[b->nd], path, err, errlen) < 0)
		return -1;
	return (long)b->nd++;
}

static int open_keys(struct mdir *m)
{
	if (m->keysfd >= 0)
		return 0;
	if (mkdirat(m->dfd, MAILDIR_KEYS_DIR, MAILDIR_DIR_MODE) == 0) {
		if (fsync(m->dfd) < 0)
			return -1;
	} else if (errno != EEXIST)
		return -1;
	m->keysfd = open_subdir(m->dfd, MAILDIR_KEYS_DIR);
	return m->keysfd < 0 ? -1 : 0;
}

/* 1 if directory `sub` of m holds a message named *K<hex>.*, 0 if not, -1. */
static int scan_for_key(struct mdir *m, const char *sub, const char *hex)
{
	char pat[MAILDIR_KEY_HEX + 4];
	int fd = open_subdir(m->dfd, sub), found = 0;
	DIR *dir;
	struct dirent *de;

	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -1;
	}
	snprintf(pat, sizeof pat, "K%s.", hex);
	while (!found && (de = readdir(dir)) != NULL)
		found = de->d_name[0] != '.' && strstr(de->d_name, pat) != NULL;
	closedir(dir);
	return found;
}

/*
 * A leftover intent: a crash fell between phase A and the end of phase C,
 * so the message may or may not be in new/ (or cur/ by now). Only this
 * rare case scans the Maildir. Found: the intent becomes the marker.
 */
static int repair_intent(struct mdir *m, const char *hex, const char *intent)
{
	int r = scan_for_key(m, "new", hex);

	if (r == 0)
		r = scan_for_key(m, "cur", hex);
	if (r == 1 && (renameat(m->keysfd, intent, m->keysfd, hex) < 0 || fsync(m->keysfd) < 0))
		return -1;
	return r;
}

/* Already delivered with this key? 1 yes, 0 no, -1 error. O(1) (two
 * stat calls) unless an intent was left by a crash. */
static int key_done(struct mdir *m, const char *hex)
{
	char intent[MAILDIR_KEY_HEX + sizeof MAILDIR_INTENT];
	struct stat st;

	if (open_keys(m) < 0)
		return -1;
	if (fstatat(m->keysfd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	if (errno != ENOENT)
		return -1;
	snprintf(intent, sizeof intent, "%s%s", hex, MAILDIR_INTENT);
	if (fstatat(m->keysfd, intent, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return repair_intent(m, hex, intent);
	return errno == ENOENT ? 0 : -1;
}

/* 1 if the batch already holds a copy of this key for Maildir dir. */
static int key_in_batch(const struct maildir_batch *b, size_t dir, const char *hex)
{
	for (size_t i = 0; i < b->nc; i++)
		if (b->c[i].keyed && b->c[i].dir == dir && strcmp(b->c[i].hex, hex) == 0)
			return 1;
	return 0;
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

static int open_tmp(struct maildir_batch *b, struct copy *c)
{
	c->fd = openat(b->d[c->dir].tmpfd, c->tmpname,
		       O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, MAILDIR_FILE_MODE);
	if (c->fd < 0)
		return -1;
	c->tmp_made = 1;
	return 0;
}

/* The message into tmp/ of copy c (not synced: phase A does it). */
static int write_tmp(struct maildir_batch *b, struct copy *c, int src_fd, const void *buf,
		     size_t len, unsigned long long *size)
{
	if (unique_base(c->tmpname, sizeof c->tmpname, NULL) < 0 || open_tmp(b, c) < 0)
		return -1;
	*size = 0;
	if (src_fd >= 0)
		return copy_fd(src_fd, c->fd, size);
	*size = len;
	return write_all(c->fd, buf, len);
}

/* A copy in another file system than its source: its own tmp file. */
static int copy_across(struct maildir_batch *b, struct copy *c, const struct copy *s)
{
	unsigned long long n = 0;

	memcpy(c->tmpname, s->tmpname, sizeof c->tmpname);
	if (open_tmp(b, c) < 0 || lseek(s->fd, 0, SEEK_SET) < 0)
		return -1;
	c->src = (size_t)(c - b->c);
	return copy_fd(s->fd, c->fd, &n);
}

static int make_intent(struct maildir_batch *b, struct copy *c)
{
	char intent[MAILDIR_KEY_HEX + sizeof MAILDIR_INTENT];
	int fd;

	snprintf(intent, sizeof intent, "%s%s", c->hex, MAILDIR_INTENT);
	fd = openat(b->d[c->dir].keysfd, intent,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, MAILDIR_FILE_MODE);
	if (fd < 0)
		return errno == EEXIST ? 0 : -1;   /* left by a crash: reused */
	c->intent = 1;
	return close(fd);
}

/* Undo what copy c created (before its link became durable). */
static void copy_undo(struct maildir_batch *b, struct copy *c)
{
	struct mdir *m = &b->d[c->dir];

	if (c->linked)
		unlinkat(m->newfd, c->final, 0);
	if (c->tmp_made)
		unlinkat(m->tmpfd, c->tmpname, 0);
	if (c->marked)
		unlinkat(m->keysfd, c->hex, 0);
	if (c->intent) {
		char intent[MAILDIR_KEY_HEX + sizeof MAILDIR_INTENT];

		snprintf(intent, sizeof intent, "%s%s", c->hex, MAILDIR_INTENT);
		unlinkat(m->keysfd, intent, 0);
	}
	close_fd(&c->fd);
	c->linked = c->tmp_made = c->intent = c->marked = 0;
}

static int grow_copies(struct maildir_batch *b, size_t more)
{
	size_t cap = b->capc ? b->capc : 16;
	struct copy *n;

	while (cap < b->nc + more)
		cap *= 2;
	if (cap == b->capc)
		return 0;
	n = realloc(b->c, cap * sizeof *n);
	if (!n)
		return -1;
	b->c = n;
	b->capc = cap;
	return 0;
}

/* One copy record per target still without the key. Returns how many. */
static long plan_copies(struct maildir_batch *b, const char *const *dirs, size_t n,
			const char *hex, char *err, size_t errlen)
{
	size_t first = b->nc;

	if (grow_copies(b, n) < 0) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		long di = batch_dir(b, dirs[i], err, errlen);
		int r = 0;

		if (di < 0)
			return -1;
		if (hex && !key_in_batch(b, (size_t)di, hex))
			r = key_done(&b->d[di], hex);
		else if (hex)
			r = 1;
		if (r < 0) {
			seterr(err, errlen, "%s: delivery key: %s", dirs[i], strerror(errno));
			return -1;
		}
		if (r == 1)
			continue;
		struct copy *c = &b->c[b->nc++];

		memset(c, 0, sizeof *c);
		c->dir = (size_t)di;
		c->src = first;
		c->fd = -1;
		c->keyed = hex != NULL;
		if (hex)
			memcpy(c->hex, hex, sizeof c->hex);
	}
	return (long)(b->nc - first);
}

/* The final name (shared by every copy of the message). */
static int final_name(struct copy *c, const char *hex, unsigned long long size)
{
	char base[MAILDIR_NAME_MAX + 1];
	int n;

	if (unique_base(base, sizeof base, hex) < 0)
		return -1;
	n = snprintf(c->final, sizeof c->final, "%s,S=%llu", base, size);
	return n < 0 || (size_t)n >= sizeof c->final ? -1 : 0;
}

/* Link mode: the caller's file itself becomes the copy when it is a
 * regular file on the target's file system and /proc/self/fd can name it
 * for linkat(). 1 yes (c->fd a duplicate of src_fd), 0 no, -1 error. */
static int adopt(struct maildir_batch *b, struct copy *c, int src_fd, unsigned long long *size)
{
	char proc[32];
	struct stat st, pst;

	snprintf(proc, sizeof proc, "/proc/self/fd/%d", src_fd);
	if (fstat(src_fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != b->d[c->dir].dev ||
	    stat(proc, &pst) < 0 || pst.st_ino != st.st_ino)
		return 0;
	if (unique_base(c->tmpname, sizeof c->tmpname, NULL) < 0)   /* for copies across */
		return -1;
	c->fd = fcntl(src_fd, F_DUPFD_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	c->ext = 1;
	*size = (unsigned long long)st.st_size;
	return 1;
}

/* Writes the message for copies [first, nc): one tmp file per file system
 * (link: the caller's file where it can be adopted). */
static int stage(struct maildir_batch *b, size_t first, int src_fd, const void *buf,
		 size_t len, const char *hex, int link)
{
	struct copy *s = &b->c[first];
	unsigned long long size;
	int r = link ? adopt(b, s, src_fd, &size) : 0;

	if (r < 0 || (r == 0 && write_tmp(b, s, src_fd, buf, len, &size) < 0) ||
	    final_name(s, hex, size) < 0)
		return -1;
	for (size_t i = first; i < b->nc; i++) {
		struct copy *c = &b->c[i];

		if (i > first) {
			memcpy(c->final, s->final, sizeof c->final);
			memcpy(c->tmpname, s->tmpname, sizeof c->tmpname);
		}
		if (i > first && b->d[c->dir].dev != b->d[s->dir].dev && copy_across(b, c, s) < 0)
			return -1;
		if (c->keyed && make_intent(b, c) < 0)
			return -1;
	}
	return 0;
}

static int batch_add(struct maildir_batch *b, const char *const *dirs, size_t n, int src_fd,
		     const void *buf, size_t len, const char *key, int link, char *err,
		     size_t errlen)
{
	char hex[MAILDIR_KEY_HEX + 1];
	size_t first = b->nc;
	long k;

	if (n == 0 || n > MAILDIR_TARGETS_MAX || (key && (!*key || strlen(key) > MAILDIR_KEY_MAX))) {
		seterr(err, errlen, "bad delivery: %zu targets, key of %zu bytes", n,
		       key ? strlen(key) : 0);
		return -1;
	}
	if (key)
		key_hex(key, hex);
	k = plan_copies(b, dirs, n, key ? hex : NULL, err, errlen);
	if (k > 0 && stage(b, first, src_fd, buf, len, key ? hex : NULL, link) < 0) {
		seterr(err, errlen, "%s: writing tmp/: %s", b->d[b->c[first].dir].path,
		       strerror(errno));
		k = -1;
	}
	if (k < 0) {
		for (size_t i = first; i < b->nc; i++)
			copy_undo(b, &b->c[i]);
		b->nc = first;
		return -1;
	}
	b->nmsg += k > 0;
	return (int)k;
}

/* ---- batch commit ------------------------------------------------------- */

/* fsync fds[0..n) (devs[i] their file systems); a file system with more
 * than MAILDIR_SYNCFS_MIN of them gets one syncfs() instead. */
static int sync_fds(const int *fds, const dev_t *devs, size_t n)
{
	char *done = calloc(n ? n : 1, 1);
	int r = done ? 0 : -1;

	for (size_t i = 0; i < n && r == 0; i++) {
		size_t same = 0;

		if (done[i])
			continue;
		for (size_t j = i; j < n; j++)
			same += devs[j] == devs[i];
		if (same <= MAILDIR_SYNCFS_MIN) {
			r = fsync(fds[i]);
			continue;
		}
		r = syncfs(fds[i]);
		for (size_t j = i; j < n; j++)
			done[j] |= devs[j] == devs[i];
	}
	free(done);
	return r;
}

/* The descriptors one commit phase syncs. */
struct syncset {
	int *fd;
	dev_t *dev;
	size_t n;
};

static void set_add(struct syncset *s, int fd, dev_t dev)
{
	s->fd[s->n] = fd;
	s->dev[s->n++] = dev;
}

static int set_run(struct syncset *s)
{
	int r = sync_fds(s->fd, s->dev, s->n);

	s->n = 0;
	return r;
}

/* Phase A: tmp files and the postern-keys/ holding new intents. */
static int phase_tmp(struct maildir_batch *b, struct syncset *s)
{
	for (size_t i = 0; i < b->nd; i++)
		b->d[i].dirty = 0;
	for (size_t i = 0; i < b->nc; i++) {
		struct copy *c = &b->c[i];

		if (c->fd >= 0)
			set_add(s, c->fd, b->d[c->dir].dev);
		if (c->intent && !b->d[c->dir].dirty++)
			set_add(s, b->d[c->dir].keysfd, b->d[c->dir].dev);
	}
	int r = set_run(s);

	for (size_t i = 0; i < b->nc; i++)
		if (!b->c[i].ext)
			close_fd(&b->c[i].fd);
	return r;
}

/* Links copy c into new/ of m: from the tmp file of src, or the adopted
 * file itself (by its /proc/self/fd name: linkat follows it). */
static int link_copy(struct maildir_batch *b, struct copy *c, struct mdir *src, struct mdir *m)
{
	const struct copy *sc = &b->c[c->src];
	char proc[32];

	if (!sc->ext)
		return linkat(src->tmpfd, c->tmpname, m->newfd, c->final, 0);
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", sc->fd);
	return linkat(AT_FDCWD, proc, m->newfd, c->final, AT_SYMLINK_FOLLOW);
}

/* Phase B: every copy linked into new/, every new/ synced. */
static int phase_link(struct maildir_batch *b, struct syncset *s, char *err, size_t errlen)
{
	for (size_t i = 0; i < b->nd; i++)
		b->d[i].dirty = 0;
	for (size_t i = 0; i < b->nc; i++) {
		struct copy *c = &b->c[i];
		struct mdir *m = &b->d[c->dir], *src = &b->d[b->c[c->src].dir];

		if (link_copy(b, c, src, m) < 0) {
			seterr(err, errlen, "%s: delivery: %s", m->path, strerror(errno));
			return -1;
		}
		c->linked = 1;
		if (!m->dirty++)
			set_add(s, m->newfd, m->dev);
	}
	if (set_run(s) < 0) {
		seterr(err, errlen, "sync of new/: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Phase C: intents become markers. */
static int phase_mark(struct maildir_batch *b, struct syncset *s)
{
	for (size_t i = 0; i < b->nd; i++)
		b->d[i].dirty = 0;
	for (size_t i = 0; i < b->nc; i++) {
		struct copy *c = &b->c[i];
		struct mdir *m = &b->d[c->dir];
		char intent[MAILDIR_KEY_HEX + sizeof MAILDIR_INTENT];

		if (!c->keyed)
			continue;
		snprintf(intent, sizeof intent, "%s%s", c->hex, MAILDIR_INTENT);
		if (renameat(m->keysfd, intent, m->keysfd, c->hex) < 0)
			return -1;
		c->marked = 1;
		if (!m->dirty++)
			set_add(s, m->keysfd, m->dev);
	}
	return set_run(s);
}

/* Forgets every copy and Maildir (tmp files are removed). */
static void batch_reset(struct maildir_batch *b)
{
	for (size_t i = 0; i < b->nc; i++) {
		struct copy *c = &b->c[i];

		close_fd(&c->fd);
		if (c->tmp_made)
			unlinkat(b->d[c->dir].tmpfd, c->tmpname, 0);
	}
	for (size_t i = 0; i < b->nd; i++)
		mdir_close(&b->d[i]);
	b->nc = b->nd = b->nmsg = 0;
}

/* A failed commit: links removed (and their new/ synced), intents dropped. */
static void batch_rollback(struct maildir_batch *b)
{
	for (size_t i = 0; i < b->nc; i++)
		copy_undo(b, &b->c[i]);
	for (size_t i = 0; i < b->nd; i++)
		fsync(b->d[i].newfd);
	b->nc = 0;
}

struct maildir_batch *maildir_batch_new(void)
{
	return calloc(1, sizeof(struct maildir_batch));
}

size_t maildir_batch_messages(const struct maildir_batch *b)
{
	return b->nmsg;
}

int maildir_batch_add_fd(struct maildir_batch *b, const char *const *dirs, size_t n, int fd,
			 const char *key, char *err, size_t errlen)
{
	if (fd < 0) {
		seterr(err, errlen, "bad file descriptor");
		return -1;
	}
	return batch_add(b, dirs, n, fd, NULL, 0, key, 0, err, errlen);
}

int maildir_batch_add_link(struct maildir_batch *b, const char *const *dirs, size_t n, int fd,
			   const char *key, char *err, size_t errlen)
{
	if (fd < 0) {
		seterr(err, errlen, "bad file descriptor");
		return -1;
	}
	return batch_add(b, dirs, n, fd, NULL, 0, key, 1, err, errlen);
}

int maildir_batch_add_buf(struct maildir_batch *b, const char *const *dirs, size_t n,
			  const void *buf, size_t len, const char *key, char *err, size_t errlen)
{
	return batch_add(b, dirs, n, -1, buf ? buf : "", len, key, 0, err, errlen);
}

int maildir_batch_commit(struct maildir_batch *b, char *err, size_t errlen)
{
	size_t cap = b->nc + b->nd + 1;
	struct syncset s = { malloc(cap * sizeof(int)), malloc(cap * sizeof(dev_t)), 0 };
	int r = -1;

	if (!s.fd || !s.dev)
		seterr(err, errlen, "out of memory");
	else if (phase_tmp(b, &s) < 0)
		seterr(err, errlen, "sync of tmp/: %s", strerror(errno));
	else if (phase_link(b, &s, err, errlen) < 0)
		;   /* err set */
	else if (phase_mark(b, &s) < 0)
		seterr(err, errlen, "delivery markers: %s", strerror(errno));
	else
		r = 0;
	if (r < 0)
		batch_rollback(b);
	batch_reset(b);
	free(s.fd);
	free(s.dev);
	return r;
}

void maildir_batch_free(struct maildir_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->nc; i++)
		copy_undo(b, &b->c[i]);
	b->nc = 0;
	batch_reset(b);
	free(b->d);
	free(b->c);
	free(b);
}

/* One message, one batch. */
static int deliver_one(const char *const *dirs, size_t n, int src_fd, const void *buf,
		       size_t len, const char *key, char *err, size_t errlen)
{
	struct maildir_batch *b = maildir_batch_new();
	int k;

	if (!b) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	k = batch_add(b, dirs, n, src_fd, buf, len, key, 0, err, errlen);
	if (k > 0 && maildir_batch_commit(b, err, errlen) < 0)
		k = -1;
	maildir_batch_free(b);
	return k;
}

int maildir_deliver_fd(const char *const *dirs, size_t n, int fd, const char *key,
		       char *err, size_t errlen)
{
	if (fd < 0) {
		seterr(err, errlen, "bad file descriptor");
		return -1;
	}
	return deliver_one(dirs, n, fd, NULL, 0, key, err, errlen);
}

int maildir_deliver_buf(const char *const *dirs, size_t n, const void *buf, size_t len,
			const char *key, char *err, size_t errlen)
{
	return deliver_one(dirs, n, -1, buf ? buf : "", len, key, err, errlen);
}

/* Unlinks postern-keys/<name> under dir. 0 (also when missing) or -1. */
static int unlink_key(const char *dir, const char *name)
{
	char path[FS_PATH_MAX];

	if (snprintf(path, sizeof path, "%s/%s/%s", dir, MAILDIR_KEYS_DIR, name) >= (int)sizeof path)
		return -1;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int maildir_key_forget(const char *dir, const char *key)
{
	char hex[MAILDIR_KEY_HEX + 1], intent[MAILDIR_KEY_HEX + sizeof MAILDIR_INTENT];

	key_hex(key, hex);
	snprintf(intent, sizeof intent, "%s%s", hex, MAILDIR_INTENT);
	/* Not synced: a marker that comes back after a crash only repeats
	 * what the caller's own record (the UIDL store) says. */
	return unlink_key(dir, hex) < 0 || unlink_key(dir, intent) < 0 ? -1 : 0;
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
