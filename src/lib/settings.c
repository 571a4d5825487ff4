/*
 * settings.c - the lock -> load -> change -> validate -> save transaction
 * of the configuration and users files (settings.h), shared by `postern`
 * and admind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "settings.h"

#define SETTINGS_PATH_MAX 4096
#define SETTINGS_CONFIG_MODE 0644   /* as config_save writes postern.conf */

const char *settings_strerror(int rc)
{
	switch (rc) {
	case SETTINGS_OK: return "saved";
	case SETTINGS_ELOCK: return "the file cannot be locked";
	case SETTINGS_ELOAD: return "the current file is invalid; fix it first";
	case SETTINGS_ECHANGE: return "the change was refused";
	case SETTINGS_EVALID: return "the changed settings are inconsistent";
	case SETTINGS_ECHECK: return "the new settings cannot be applied; nothing changed";
	case SETTINGS_ESAVE: return "the file could not be saved";
	case SETTINGS_EAFTER: return "the change could not be applied; the previous settings were restored";
	default: return "unknown error";
	}
}

int settings_lock(const char *path)
{
	char lp[SETTINGS_PATH_MAX];
	int fd, e;

	if (snprintf(lp, sizeof lp, "%s.lock", path) >= (int)sizeof lp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
		e = errno;
		close(fd);
		errno = e;
		fd = -1;
	}
	return fd;
}

struct config *settings_config_load(const char *path, struct config_errors *errs)
{
	if (access(path, F_OK) != 0 && errno == ENOENT)
		return config_new();
	return config_load(path, errs);
}

/* The file's current text (NULL when there is none) to restore after a
 * failed after step. */
static char *snapshot(const char *path, ssize_t *len)
{
	char *buf = malloc(CONFIG_FILE_MAX + 1);

	*len = buf ? fs_read_file(path, buf, CONFIG_FILE_MAX) : -1;
	if (*len < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Puts back what snapshot read, or removes a file that did not exist. */
static void restore(const char *path, const char *old, ssize_t len)
{
	if (old)
		(void)fs_write_atomic(path, old, (size_t)len, SETTINGS_CONFIG_MODE);
	else
		(void)unlink(path);
}

/* Everything between load and unlock. */
static int edit_model(const char *path, struct config *cfg,
		      const struct settings_config_ops *ops, void *arg,
		      struct config_errors *errs)
{
	char *old = NULL;
	ssize_t oldlen = 0;
	int rc = SETTINGS_OK;

	if (ops->change(cfg, arg, errs) != 0)
		return SETTINGS_ECHANGE;
	if (config_validate(cfg, "postern.conf", errs) != 0)
		return SETTINGS_EVALID;
	if (ops->check && ops->check(cfg, arg, errs) != 0)
		return SETTINGS_ECHECK;
	if (ops->after)
		old = snapshot(path, &oldlen);
	if (config_save(cfg, path, errs) != 0)
		rc = SETTINGS_ESAVE;
	else if (ops->after && ops->after(cfg, arg, errs) != 0) {
		restore(path, old, oldlen);
		rc = SETTINGS_EAFTER;
	}
	free(old);
	return rc;
}

int settings_config_edit(const char *path, const struct settings_config_ops *ops, void *arg,
			 struct config_errors *errs)
{
	struct config *cfg;
	int fd, rc;

	memset(errs, 0, sizeof *errs);
	fd = settings_lock(path);
	if (fd < 0)
		return SETTINGS_ELOCK;
	cfg = settings_config_load(path, errs);
	rc = cfg ? edit_model(path, cfg, ops, arg, errs) : SETTINGS_ELOAD;
	config_free(cfg);
	close(fd);
	return rc;
}

int settings_users_edit(const char *path, settings_users_fn change, void *arg, long gid,
			char *err, size_t errlen)
{
	struct users_db db;
	int fd, rc = SETTINGS_OK;

	err[0] = '\0';
	fd = settings_lock(path);
	if (fd < 0) {
		snprintf(err, errlen, "%s.lock: %s", path, strerror(errno));
		return SETTINGS_ELOCK;
	}
	if (users_load(&db, path, err, errlen) < 0) {
		close(fd);
		return SETTINGS_ELOAD;
	}
	if (change(&db, arg, err, errlen) < 0)
		rc = SETTINGS_ECHANGE;
	else if (users_save(&db, path, err, errlen) < 0)
		rc = SETTINGS_ESAVE;
	else if (gid >= 0 && chown(path, 0, (gid_t)gid) < 0)
		snprintf(err, errlen, "%s saved, but not given to its group: %s", path,
			 strerror(errno));   /* saved: not a failure of the change */
	users_free(&db);
	close(fd);
	return rc;
}
