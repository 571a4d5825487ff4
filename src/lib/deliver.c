/*
 * deliver.c - the one local delivery path (see deliver.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver.h"

typedef char deliver_name[USERS_NAME_MAX + 1];

enum deliver_verdict deliver_filter_none(void *arg, int fd, const struct deliver_env *env,
					 char *why, size_t whylen)
{
	(void)arg;
	(void)fd;
	(void)env;
	if (whylen)
		why[0] = '\0';
	return DELIVER_ACCEPT;
}

enum deliver_verdict deliver_filter(const struct deliver_ctx *c, int fd,
				    const struct deliver_env *env, char *why, size_t whylen)
{
	deliver_filter_fn f = c->filter ? c->filter : deliver_filter_none;
	enum deliver_verdict v;

	if (lseek(fd, 0, SEEK_SET) < 0) {
		snprintf(why, whylen, "rewinding the message: %s", strerror(errno));
		return DELIVER_TEMPFAIL;
	}
	v = f(c->filter_arg, fd, env, why, whylen);
	if (lseek(fd, 0, SEEK_SET) < 0) {
		snprintf(why, whylen, "rewinding the message: %s", strerror(errno));
		return DELIVER_TEMPFAIL;
	}
	return v;
}

int deliver_maildir_path(const char *mail_root, const char *user, char *out, size_t cap)
{
	int n;

	if (!users_name_valid(user))
		return -1;
	n = snprintf(out, cap, "%s/%s", mail_root, user);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

uint64_t deliver_quota_of(const struct deliver_ctx *c, const char *user)
{
	const struct users_entry *e;

	if (!c->quota_check)
		return 0;
	e = c->db ? users_find(c->db, user) : NULL;
	if (e && e->kind == USERS_KIND_USER && e->quota_set)
		return e->quota;
	return c->quota;
}

int deliver_quota_check(const struct deliver_ctx *c, const char *user, uint64_t incoming)
{
	uint64_t limit = deliver_quota_of(c, user);
	unsigned long long used = 0;
	unsigned long count;
	char dir[DELIVER_PATH_MAX];

	if (limit == 0)
		return 0;
	if (deliver_maildir_path(c->mail_root, user, dir, sizeof dir) < 0) {
		errno = EINVAL;
		return -1;
	}
	if (maildir_usage(dir, &used, &count) < 0 && errno != ENOENT)
		return -1;
	return used + incoming > limit || used + incoming < used ? 1 : 0;
}

/* DELIVER_ERR_QUOTA when a user is over quota with the message in fd,
 * DELIVER_ERR_TEMP when that cannot be told, else 0. */
static int check_quotas(const struct deliver_ctx *c, const char *const *users, size_t n,
			int fd, char *err, size_t errlen)
{
	struct stat st;

	if (!c->quota_check)
		return 0;
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "message size: %s", strerror(errno));
		return DELIVER_ERR_TEMP;
	}
	for (size_t i = 0; i < n; i++) {
		int q = deliver_quota_check(c, users[i], (uint64_t)st.st_size);

		if (q < 0) {
			snprintf(err, errlen, "%.100s: reading the mailbox usage: %s", users[i],
				 strerror(errno));
			return DELIVER_ERR_TEMP;
		}
		if (q > 0) {
			snprintf(err, errlen, "%.100s: mailbox full (quota %llu bytes)", users[i],
				 (unsigned long long)deliver_quota_of(c, users[i]));
			return DELIVER_ERR_QUOTA;
		}
	}
	return 0;
}

/* Adds the users addr resolves to into names[*n], skipping duplicates. */
static int expand(const struct deliver_ctx *c, const char *addr, deliver_name *names,
		  size_t *n, deliver_name *tmp)
{
	int k = users_resolve(c->db, addr, c->domain, tmp, DELIVER_USERS_MAX);

	if (k <= 0)
		return -1;
	for (int i = 0; i < k; i++) {
		size_t j;

		for (j = 0; j < *n; j++)
			if (strcmp(names[j], tmp[i]) == 0)
				break;
		if (j < *n)
			continue;
		if (*n >= DELIVER_USERS_MAX)
			return -1;
		strcpy(names[(*n)++], tmp[i]);
	}
	return 0;
}

/* The Maildir path of each user, created when missing. */
static int make_dirs(const struct deliver_ctx *c, const char *const *names, size_t n,
		     char **dirs, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		char path[DELIVER_PATH_MAX + 8];
		struct stat st;

		dirs[i] = malloc(DELIVER_PATH_MAX);
		if (!dirs[i] || deliver_maildir_path(c->mail_root, names[i], dirs[i],
						     DELIVER_PATH_MAX) < 0) {
			snprintf(err, errlen, "%.100s: bad Maildir path", names[i]);
			return -1;
		}
		snprintf(path, sizeof path, "%s/new", dirs[i]);
		if (lstat(path, &st) < 0 && maildir_create(dirs[i]) < 0) {
			snprintf(err, errlen, "%s: creating the Maildir: %s", dirs[i],
				 strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* The copies into batch b, or durable now (a batch of one) when b is NULL. */
static int add_copies(const struct deliver_ctx *c, const char *const *dirs, size_t n, int fd,
		      const char *key, struct maildir_batch *b, char *err, size_t errlen)
{
	struct maildir_batch *own = b ? NULL : maildir_batch_new();
	int r;

	if (!b && !own) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (c->link_source)
		r = maildir_batch_add_link(b ? b : own, dirs, n, fd, key, err, errlen);
	else
		r = maildir_batch_add_fd(b ? b : own, dirs, n, fd, key, err, errlen);
	if (own && r > 0 && maildir_batch_commit(own, err, errlen) < 0)
		r = -1;
	maildir_batch_free(own);
	return r;
}

int deliver_users(const struct deliver_ctx *c, const char *const *users, size_t n, int fd,
		  const struct deliver_env *env, const char *key, struct maildir_batch *b,
		  char *err, size_t errlen)
{
	char **dirs = NULL;
	enum deliver_verdict v;
	int r = DELIVER_ERR_TEMP;

	if (n == 0 || n > DELIVER_USERS_MAX) {
		snprintf(err, errlen, "bad user count %zu", n);
		return DELIVER_ERR_TEMP;
	}
	r = check_quotas(c, users, n, fd, err, errlen);
	if (r < 0)
		return r;
	r = DELIVER_ERR_TEMP;
	v = deliver_filter(c, fd, env, err, errlen);
	if (v != DELIVER_ACCEPT)
		return v == DELIVER_REJECT ? DELIVER_ERR_REJECTED : DELIVER_ERR_TEMP;
	dirs = calloc(n, sizeof *dirs);
	if (!dirs)
		snprintf(err, errlen, "out of memory");
	else if (make_dirs(c, users, n, dirs, err, errlen) == 0)
		r = add_copies(c, (const char *const *)dirs, n, fd, key, b, err, errlen);
	if (r < 0)
		r = DELIVER_ERR_TEMP;
	for (size_t i = 0; dirs && i < n; i++)
		free(dirs[i]);
	free(dirs);
	return r;
}

int deliver_local(const struct deliver_ctx *c, int fd, const struct deliver_env *env,
		  const char *key, char *err, size_t errlen)
{
	return deliver_local_batch(c, fd, env, key, NULL, err, errlen);
}

int deliver_local_batch(const struct deliver_ctx *c, int fd, const struct deliver_env *env,
			const char *key, struct maildir_batch *b, char *err, size_t errlen)
{
	deliver_name *names = malloc(DELIVER_USERS_MAX * sizeof *names);
	deliver_name *tmp = malloc(DELIVER_USERS_MAX * sizeof *tmp);
	const char **pv = malloc(DELIVER_USERS_MAX * sizeof *pv);
	size_t n = 0;
	int r = DELIVER_ERR_TEMP;

	if (!names || !tmp || !pv || env->nrcpt == 0 || env->nrcpt > DELIVER_RCPTS_MAX) {
		snprintf(err, errlen, names && tmp && pv ? "bad recipient count %zu" :
			 "out of memory", env->nrcpt);
		goto out;
	}
	for (size_t i = 0; i < env->nrcpt; i++)
		if (expand(c, env->rcpts[i], names, &n, tmp) < 0) {
			snprintf(err, errlen, "%.200s: no such local recipient", env->rcpts[i]);
			r = DELIVER_ERR_NOUSER;
			goto out;
		}
	for (size_t i = 0; i < n; i++)
		pv[i] = names[i];
	r = deliver_users(c, pv, n, fd, env, key, b, err, errlen);
out:
	free(pv);
	free(names);
	free(tmp);
	return r;
}
