/*
 * settings.h - changing the configuration file or the users file the one
 * way the command line (`postern config`, `postern user`) and the web
 * page's helper (admind) share: take the file's lock (FILE.lock, flock
 * exclusive), load, change in memory, validate, save atomically (temp,
 * fsync, rename, fsync dir), unlock. On any failure the file is left as it
 * was and the caller is told which step failed, with the library's own
 * messages, so both front ends report the same errors.
 *
 *     static int change(struct config *cfg, void *arg, struct config_errors *e)
 *     { return config_set(cfg, "smarthost.port", arg, e); }
 *     struct settings_config_ops ops = { .change = change };
 *     int rc = settings_config_edit(path, &ops, "465", &errs);
 *     if (rc != 0) puts(settings_strerror(rc));   // + errs.e[i].text
 */
#ifndef POSTERN_SETTINGS_H
#define POSTERN_SETTINGS_H

#include <stddef.h>

#include "config.h"
#include "users.h"

/* Results of the edit functions: 0, or the step that failed (< 0). */
enum settings_rc {
	SETTINGS_OK = 0,
	SETTINGS_ELOCK = -1,    /* FILE.lock could not be opened or locked */
	SETTINGS_ELOAD = -2,    /* the current file is invalid or unreadable */
	SETTINGS_ECHANGE = -3,  /* the change was refused */
	SETTINGS_EVALID = -4,   /* the changed model failed config_validate */
	SETTINGS_ECHECK = -5,   /* the caller's check refused the new model */
	SETTINGS_ESAVE = -6,    /* writing the file failed */
	SETTINGS_EAFTER = -7,   /* the caller's after step failed: file restored */
};

/* A short English phrase for rc ("the configuration is invalid", ...). */
const char *settings_strerror(int rc);

/* Opens path.lock (created 0600, no symlink) and locks it exclusively.
 * Returns the descriptor (close it to unlock), or -1 with errno. */
int settings_lock(const char *path);

/* The model to change: the file's, or an empty one when path does not
 * exist. NULL with errs filled when the file is invalid. */
struct config *settings_config_load(const char *path, struct config_errors *errs);

/*
 * The steps of a configuration change. Each returns 0, or -1 with messages
 * in errs (or reported by the caller itself through arg; errs may then stay
 * empty). change is required; check and after may be NULL.
 *   change  edits the loaded model (config_set/config_unset);
 *   check   runs on the validated model before it is saved (e.g. the
 *           firewall rules it implies, the setup wizard's other writes);
 *   after   runs once the file is saved, still under the lock (e.g. apply
 *           it to the running box); when it fails, the previous file text
 *           is written back and SETTINGS_EAFTER returned.
 */
struct settings_config_ops {
	int (*change)(struct config *cfg, void *arg, struct config_errors *errs);
	int (*check)(struct config *cfg, void *arg, struct config_errors *errs);
	int (*after)(struct config *cfg, void *arg, struct config_errors *errs);
};

/* Lock, load, change, validate, check, save, after, unlock. errs is
 * cleared first. Returns SETTINGS_OK or the failed step. */
int settings_config_edit(const char *path, const struct settings_config_ops *ops, void *arg,
			 struct config_errors *errs);

/* Changes the loaded users database; 0, or -1 with a message in err. */
typedef int (*settings_users_fn)(struct users_db *db, void *arg, char *err, size_t errlen);

/* Lock, users_load, change, users_save, unlock. When gid >= 0 the saved
 * file is given to root:gid (the daemons' group auth reads it; only root
 * may do so, others leave it as users_save made it). Returns SETTINGS_OK,
 * SETTINGS_ELOCK, SETTINGS_ELOAD, SETTINGS_ECHANGE or SETTINGS_ESAVE with
 * a message in err. */
int settings_users_edit(const char *path, settings_users_fn change, void *arg, long gid,
			char *err, size_t errlen);

#endif
