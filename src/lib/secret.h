/*
 * secret: the files under the secrets directory (/data/secrets): provider
 * passwords and the like, each readable by the one service that uses it.
 *
 * The configuration refers to a secret by its file name ("password-file
 * anna.pass"); the name decides nothing else. Who may read it follows from
 * which setting refers to it:
 *
 *   [account NAME] password-file   -> fetchd (the POP3 fetcher)
 *   [smarthost] password-file      -> relayd (the outbound relay)
 *   not referred to                -> root only
 *
 * A name referred to by two services is an error (secret_owner says so),
 * since one of them would read the other's secret. Every secret file is
 * mode 0600, owned by its service user; the directory is root 0711 (enter,
 * not list). The TLS key lives apart, in tls/ (root 0700, see localca.h),
 * and is loaded by the daemons before they leave root.
 */
#ifndef POSTERN_SECRET_H
#define POSTERN_SECRET_H

#include <stddef.h>

#include "config.h"

#define SECRET_DIR "/data/secrets"
#define SECRET_MAX 1024              /* bytes in one secret value */
#define SECRET_MODE 0600
#define SECRET_OWNER_FETCH "fetchd"
#define SECRET_OWNER_RELAY "relayd"

/*
 * The service user that may read the secret `name` under cfg: "fetchd",
 * "relayd", or "root" when nothing refers to it. Returns NULL (message in
 * err) when two services refer to the same name.
 */
const char *secret_owner(const struct config *cfg, const char *name,
			 char *err, size_t errlen);

/*
 * Reads the secret `name` (a single file name, fs_name_ok) from dir into
 * buf (cap bytes, NUL-terminated), without its final line ending. Refused
 * with a clear message when the file is a symbolic link, not a regular file,
 * readable or writable by group or others (as ssh does with keys), larger
 * than SECRET_MAX, empty, or holds a NUL or an inner line break.
 * Returns the length, or -1 with a message in err.
 */
int secret_read(const char *dir, const char *name, char *buf, size_t cap,
		char *err, size_t errlen);

/*
 * secret_read relative to a directory descriptor: a daemon opens the
 * secrets directory (mode 0711: not readable by it) as root before it
 * drops privileges, e.g. with O_PATH | O_DIRECTORY, and can then read its
 * own secret again later (a retry, SIGHUP). Same checks and result.
 */
int secret_read_at(int dirfd, const char *name, char *buf, size_t cap,
		   char *err, size_t errlen);

/*
 * Stores value (len bytes, no line breaks, no NUL) as the secret `name` in
 * dir, atomically and durably (fsutil), mode 0600, owned by the user `owner`
 * (uid/gid from the passwords database; "root" or NULL: root). Only root
 * can give a file away; others get their own files. Returns 0 or -1 (err).
 */
int secret_write(const char *dir, const char *name, const char *value, size_t len,
		 const char *owner, char *err, size_t errlen);

/*
 * Repairs owner and mode of every secret file in dir (not tls/, not temp
 * files) to what cfg says: used at boot and after a configuration change.
 * report (may be NULL) is called for each file changed, with a line saying
 * what was done. Returns the number of files that could not be repaired,
 * or -1 (err) when dir cannot be read.
 */
int secret_fix(const char *dir, const struct config *cfg,
	       void (*report)(const char *line, void *arg), void *arg,
	       char *err, size_t errlen);

#endif
