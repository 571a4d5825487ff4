/*
 * queue.c - the durable outbound queue (see queue.h and docs/QUEUE.md).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "queue.h"
#include "strbuf.h"

static const char *const state_name[QUEUE_STATES] = { "pending", "sent", "failed", "bounced" };

/* ---- directories ---------------------------------------------------------- */

static int open_sub(const char *dir, const char *sub)
{
	char path[QUEUE_DIR_MAX + 8];

	snprintf(path, sizeof path, "%s/%s", dir, sub);
	if (fs_mkdir_p(path, FS_MAIL_DIR_MODE) < 0)
		return -1;
	return fs_open_nofollow(path, O_RDONLY | O_DIRECTORY, 0);
}

int queue_open(struct queue *q, const char *dir)
{
	memset(q, 0, sizeof *q);
	q->tmpfd = q->msgfd = q->envfd = -1;
	if (strlen(dir) >= sizeof q->dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(q->dir, dir);
	q->tmpfd = open_sub(dir, "tmp");
	q->msgfd = q->tmpfd < 0 ? -1 : open_sub(dir, "msg");
	q->envfd = q->msgfd < 0 ? -1 : open_sub(dir, "env");
	if (q->envfd < 0) {
		int e = errno;

		queue_close(q);
		errno = e;
		return -1;
	}
	return 0;
}

void queue_close(struct queue *q)
{
	if (q->tmpfd >= 0)
		close(q->tmpfd);
	if (q->msgfd >= 0)
		close(q->msgfd);
	if (q->envfd >= 0)
		close(q->envfd);
	q->tmpfd = q->msgfd = q->envfd = -1;
}

int queue_id_valid(const char *id)
{
	size_t i;

	for (i = 0; i < QUEUE_ID_LEN; i++)
		if (!isxdigit((unsigned char)id[i]) || isupper((unsigned char)id[i]))
			return 0;
	return id[i] == '\0';
}

int queue_new_id(char id[QUEUE_ID_LEN + 1], time_t now)
{
	uint32_t r;

	if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
		return -1;
	snprintf(id, QUEUE_ID_LEN + 1, "%08" PRIx32 "%08" PRIx32, (uint32_t)now, r);
	return 0;
}

/* ---- receiving a message ------------------------------------------------- */

int queue_spool_open(struct queue *q, struct queue_spool *sp, time_t now)
{
	sp->q = q;
	sp->size = 0;
	sp->buflen = 0;
	sp->err = 0;
	sp->committed = 0;
	sp->fd = -1;
	for (int tries = 0; tries < 8; tries++) {
		if (queue_new_id(sp->id, now) < 0)
			return -1;
		sp->fd = fs_openat_nofollow(q->tmpfd, sp->id, O_RDWR | O_CREAT | O_EXCL, FS_MAIL_FILE_MODE);
		if (sp->fd >= 0 || errno != EEXIST)
			break;
	}
	return sp->fd < 0 ? -1 : 0;
}

static int spool_flush(struct queue_spool *sp)
{
	size_t off = 0;

	while (off < sp->buflen && !sp->err) {
		ssize_t n = write(sp->fd, sp->buf + off, sp->buflen - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			sp->err = n < 0 ? errno : EIO;
		else
			off += (size_t)n;
	}
	sp->buflen = 0;
	if (sp->err) {
		errno = sp->err;
		return -1;
	}
	return 0;
}

int queue_spool_write(struct queue_spool *sp, const void *data, size_t len)
{
	const char *p = data;

	if (sp->fd < 0 || sp->err) {
		errno = sp->err ? sp->err : EBADF;
		return -1;
	}
	sp->size += len;
	while (len > 0) {
		size_t n = sizeof sp->buf - sp->buflen;

		if (n > len)
			n = len;
		memcpy(sp->buf + sp->buflen, p, n);
		sp->buflen += n;
		p += n;
		len -= n;
		if (sp->buflen == sizeof sp->buf && spool_flush(sp) < 0)
			return -1;
	}
	return 0;
}

int queue_spool_finish(struct queue_spool *sp)
{
	if (sp->fd < 0) {
		errno = EBADF;
		return -1;
	}
	if (spool_flush(sp) < 0)
		return -1;
	if (fsync(sp->fd) < 0 || lseek(sp->fd, 0, SEEK_SET) < 0) {
		sp->err = errno;
		return -1;
	}
	return 0;
}

int queue_spool_flush(struct queue_spool *sp)
{
	if (sp->fd < 0) {
		errno = EBADF;
		return -1;
	}
	if (spool_flush(sp) < 0)
		return -1;
	if (lseek(sp->fd, 0, SEEK_SET) < 0) {
		sp->err = errno;
		return -1;
	}
	return 0;
}

void queue_spool_abort(struct queue_spool *sp)
{
	if (sp->fd >= 0) {
		close(sp->fd);
		sp->fd = -1;
		if (!sp->committed)
			unlinkat(sp->q->tmpfd, sp->id, 0);
	}
}

int queue_spool_commit(struct queue_spool *sp, struct queue_env *env)
{
	int r = -1;

	if (sp->fd < 0 || sp->err) {
		errno = sp->err ? sp->err : EBADF;
		queue_spool_abort(sp);
		return -1;
	}
	memcpy(env->id, sp->id, sizeof env->id);
	env->size = sp->size;
	/* The text is durable (queue_spool_finish); make its name durable in
	 * msg/, then the envelope: from that instant it is queued. */
	if (renameat(sp->q->tmpfd, sp->id, sp->q->msgfd, sp->id) == 0) {
		if (fsync(sp->q->msgfd) == 0 && queue_env_save(sp->q, env) == 0)
			r = 0;
		else
			unlinkat(sp->q->msgfd, sp->id, 0);
	}
	if (r < 0) {
		int e = errno;

		queue_spool_abort(sp);
		errno = e;
		return -1;
	}
	sp->committed = 1;
	return lseek(sp->fd, 0, SEEK_SET) < 0 ? -1 : 0;
}

/* ---- envelope text ---------------------------------------------------------- */

/* An address in an envelope: printable ASCII, no blank. */
static int addr_ok(const char *a)
{
	for (; *a; a++)
		if (*a <= 0x20 || *a >= 0x7f)
			return 0;
	return 1;
}

int queue_env_format(const struct queue_env *env, char *buf, size_t cap)
{
	struct strbuf b;

	if (!queue_id_valid(env->id) || !addr_ok(env->from) || !addr_ok(env->user) ||
	    env->nrcpt < 0 || env->nrcpt > QUEUE_RCPTS_MAX) {
		errno = EINVAL;
		return -1;
	}
	strbuf_init(&b, buf, cap);
	strbuf_put(&b, "postern-queue %d\nid %s\ncreated %" PRId64 "\nuser %s\n"
		   "from %s\nsize %" PRIu64 "\n", QUEUE_VERSION, env->id, env->created,
		   env->user, env->from, env->size);
	if (env->notified)
		strbuf_put(&b, "notified 1\n");
	for (int i = 0; i < env->nrcpt; i++) {
		const struct queue_rcpt *r = &env->rcpt[i];
		char reply[QUEUE_REPLY_MAX + 1];
		size_t k;

		if (!r->addr[0] || !addr_ok(r->addr) || r->state < QUEUE_PENDING ||
		    r->state >= QUEUE_STATES) {
			errno = EINVAL;
			return -1;
		}
		/* The reply comes from a remote server: printable ASCII only. */
		for (k = 0; r->reply[k] && k < QUEUE_REPLY_MAX; k++)
			reply[k] = r->reply[k] >= 0x20 && r->reply[k] < 0x7f ? r->reply[k] : '?';
		reply[k] = '\0';
		strbuf_put(&b, "rcpt %s %u %" PRId64 " %s%s%s\n", state_name[r->state],
			   r->attempts, r->next_attempt, r->addr, k ? " " : "", reply);
	}
	if (strbuf_result(&b) < 0)
		errno = ENOSPC;
	return strbuf_result(&b);
}

/* Parses a decimal; 0 or -1. */
static int num(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (!isdigit((unsigned char)*s) && *s != '-')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || end == s)
		return -1;
	*out = v;
	return 0;
}

static int parse_rcpt(struct queue_env *env, char *rest)
{
	struct queue_rcpt *r;
	char *f[4], *save = NULL;
	int64_t v;

	if (env->nrcpt >= QUEUE_RCPTS_MAX)
		return -1;
	r = &env->rcpt[env->nrcpt];
	memset(r, 0, sizeof *r);
	for (int i = 0; i < 4; i++)
		if (!(f[i] = strtok_r(i ? NULL : rest, " ", &save)))
			return -1;
	r->state = -1;
	for (int s = 0; s < QUEUE_STATES; s++)
		if (strcmp(f[0], state_name[s]) == 0)
			r->state = s;
	if (r->state < 0 || num(f[1], &v) < 0 || v < 0 || v > 1000000)
		return -1;
	r->attempts = (unsigned)v;
	if (num(f[2], &r->next_attempt) < 0 || strlen(f[3]) > QUEUE_ADDR_MAX || !addr_ok(f[3]))
		return -1;
	strcpy(r->addr, f[3]);
	if ((rest = strtok_r(NULL, "", &save)))
		snprintf(r->reply, sizeof r->reply, "%s", rest);
	env->nrcpt++;
	return 0;
}

/* One "key value" line; 0 or -1. */
static int parse_line(struct queue_env *env, char *line, int *seen_version)
{
	char *sp = strchr(line, ' ');
	char *val = sp ? sp + 1 : line + strlen(line);
	int64_t v;

	if (sp)
		*sp = '\0';
	if (strcmp(line, "postern-queue") == 0) {
		*seen_version = 1;
		return num(val, &v) == 0 && v == QUEUE_VERSION ? 0 : -1;
	}
	if (!*seen_version)
		return -1;
	if (strcmp(line, "id") == 0) {
		if (!queue_id_valid(val))
			return -1;
		strcpy(env->id, val);
	} else if (strcmp(line, "created") == 0) {
		return num(val, &env->created);
	} else if (strcmp(line, "size") == 0) {
		if (num(val, &v) < 0 || v < 0)
			return -1;
		env->size = (uint64_t)v;
	} else if (strcmp(line, "from") == 0 || strcmp(line, "user") == 0) {
		char *dst = line[0] == 'f' ? env->from : env->user;
		size_t cap = line[0] == 'f' ? sizeof env->from : sizeof env->user;

		if (strlen(val) >= cap || !addr_ok(val))
			return -1;
		strcpy(dst, val);
	} else if (strcmp(line, "rcpt") == 0) {
		return parse_rcpt(env, val);
	} else if (strcmp(line, "notified") == 0) {
		env->notified = strcmp(val, "1") == 0;
	}
	/* Unknown keys are skipped: later versions may add lines. */
	return 0;
}

int queue_env_parse(struct queue_env *env, const char *buf, size_t len)
{
	char line[QUEUE_ADDR_MAX + QUEUE_REPLY_MAX + 64];
	int seen_version = 0;
	size_t i = 0;

	memset(env, 0, sizeof *env);
	while (i < len) {
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t n;

		if (!nl)
			goto bad;   /* a final line without LF: truncated */
		n = (size_t)(nl - (buf + i));
		if (n >= sizeof line || memchr(buf + i, '\0', n))
			goto bad;
		memcpy(line, buf + i, n);
		line[n] = '\0';
		if (parse_line(env, line, &seen_version) < 0)
			goto bad;
		i += n + 1;
	}
	if (!seen_version || !env->id[0] || env->nrcpt == 0)
		goto bad;
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

/* ---- queued messages ----------------------------------------------------- */

static int env_path(struct queue *q, const char *id, char *path, size_t cap)
{
	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	snprintf(path, cap, "%s/env/%s", q->dir, id);
	return 0;
}

int queue_env_load(struct queue *q, const char *id, struct queue_env *env)
{
	char path[QUEUE_DIR_MAX + 32];
	char *buf;
	ssize_t n;
	int r = -1;

	if (env_path(q, id, path, sizeof path) < 0)
		return -1;
	buf = malloc(QUEUE_ENV_MAX + 1);
	if (!buf)
		return -1;
	n = fs_read_file(path, buf, QUEUE_ENV_MAX);
	if (n >= 0 && queue_env_parse(env, buf, (size_t)n) == 0) {
		r = strcmp(env->id, id) == 0 ? 0 : -1;
		if (r < 0)
			errno = EINVAL;
	}
	free(buf);
	return r;
}

int queue_env_save(struct queue *q, const struct queue_env *env)
{
	char path[QUEUE_DIR_MAX + 32];
	char *buf;
	int n, r = -1;

	if (env_path(q, env->id, path, sizeof path) < 0)
		return -1;
	buf = malloc(QUEUE_ENV_MAX);
	if (!buf)
		return -1;
	n = queue_env_format(env, buf, QUEUE_ENV_MAX);
	if (n >= 0)
		r = fs_write_atomic(path, buf, (size_t)n, FS_MAIL_FILE_MODE);
	free(buf);
	return r;
}

int queue_msg_open(struct queue *q, const char *id)
{
	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	return fs_openat_nofollow(q->msgfd, id, O_RDONLY, 0);
}

int queue_lock(struct queue *q, const char *id)
{
	int fd = queue_msg_open(q, id);

	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 || faccessat(q->envfd, id, F_OK, 0) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int queue_remove(struct queue *q, const char *id)
{
	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if (unlinkat(q->envfd, id, 0) < 0 && errno != ENOENT)
		return -1;
	if (fsync(q->envfd) < 0)
		return -1;
	if (unlinkat(q->msgfd, id, 0) < 0 && errno != ENOENT)
		return -1;
	return fsync(q->msgfd);
}

int queue_batch_remove(struct queue *q, struct queue_batch *b, const char *id)
{
	if (!queue_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	if (b->n == QUEUE_BATCH_MAX && queue_batch_commit(q, b) < 0)
		return -1;
	if (unlinkat(q->envfd, id, 0) < 0 && errno != ENOENT)
		return -1;
	memcpy(b->id[b->n++], id, QUEUE_ID_LEN + 1);
	return 0;
}

int queue_batch_commit(struct queue *q, struct queue_batch *b)
{
	int n = b->n, r = 0;

	b->n = 0;
	if (n == 0)
		return 0;
	/* Envelopes first: a msg/ file must never vanish while its envelope
	 * could still come back after a crash. */
	if (fsync(q->envfd) < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (unlinkat(q->msgfd, b->id[i], 0) < 0 && errno != ENOENT)
			r = -1;   /* an orphan for queue_recover: go on */
	if (fsync(q->msgfd) < 0)
		r = -1;
	return r;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

/* The valid ids in directory fd, sorted, into a malloc'd array. */
static int read_ids(int fd, char (**ids)[QUEUE_ID_LEN + 1], size_t *n)
{
	int dfd = dup(fd);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	struct dirent *e;
	size_t cap = 0;

	*ids = NULL;
	*n = 0;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	rewinddir(d);
	while ((e = readdir(d))) {
		if (!queue_id_valid(e->d_name))
			continue;
		if (*n == cap) {
			void *p = realloc(*ids, (cap ? cap * 2 : 64) * sizeof **ids);

			if (!p) {
				closedir(d);
				free(*ids);
				*ids = NULL;
				return -1;
			}
			*ids = p;
			cap = cap ? cap * 2 : 64;
		}
		strcpy((*ids)[(*n)++], e->d_name);
	}
	closedir(d);
	if (*n)
		qsort(*ids, *n, sizeof **ids, cmp_id);
	return 0;
}

int queue_list(struct queue *q, int (*cb)(const char *id, void *arg), void *arg)
{
	char (*ids)[QUEUE_ID_LEN + 1];
	size_t n;
	int r = 0;

	if (read_ids(q->envfd, &ids, &n) < 0)
		return -1;
	for (size_t i = 0; i < n && r == 0; i++)
		r = cb(ids[i], arg);
	free(ids);
	return r;
}

/* Removes name in dirfd when older than min_age; 1 if removed. */
static int drop_old(int dirfd, const char *name, time_t now, time_t min_age)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return 0;
	if (min_age && now - st.st_mtime < min_age)
		return 0;
	return unlinkat(dirfd, name, 0) == 0;
}

int queue_recover(struct queue *q, time_t now, time_t min_age)
{
	int fds[3] = { q->tmpfd, q->msgfd, q->envfd }, count = 0;

	for (int k = 0; k < 3; k++) {
		int dfd = dup(fds[k]);
		DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
		struct dirent *e;

		if (!d) {
			if (dfd >= 0)
				close(dfd);
			return -1;
		}
		rewinddir(d);
		while ((e = readdir(d))) {
			struct stat st;

			if (k == 0 && e->d_name[0] != '.')
				count += drop_old(fds[k], e->d_name, now, min_age);
			else if (k == 1 && queue_id_valid(e->d_name) &&
				 fstatat(q->envfd, e->d_name, &st, 0) < 0 && errno == ENOENT)
				count += drop_old(fds[k], e->d_name, now, min_age);
			else if (k == 2 && e->d_name[0] == '.' && strstr(e->d_name, ".tmp-"))
				count += drop_old(fds[k], e->d_name, now, min_age);
		}
		closedir(d);
		if (fsync(fds[k]) < 0)
			return -1;
	}
	return count;
}
