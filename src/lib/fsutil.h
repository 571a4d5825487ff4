/*
 * fsutil.h - small file utilities shared by every program: durable atomic
 * writes, bounded reads of small files, mkdir -p, and opens that refuse to
 * follow symbolic links.
 *
 * Every function returns -1 and sets errno on failure; none of them prints,
 * exits or aborts. Callers format the error with strerror(errno).
 */
#ifndef POSTERN_FSUTIL_H
#define POSTERN_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Longest path fsutil builds for itself (temp names, parents). */
#define FS_PATH_MAX 4096

/*
 * Modes of the mail store and the queue (/data/mail, /data/queue): shared by
 * the group "mail" (smtpd, imapd, fetchd, relayd each run as their own user,
 * see privdrop.h), closed to everyone else. Directories carry the set-group-ID
 * bit so that what any of them creates stays in the group. Daemons run with
 * umask 007 so these modes reach the disk as written.
 */
#define FS_MAIL_DIR_MODE 02770
#define FS_MAIL_FILE_MODE 0660

/*
 * Opens path with O_NOFOLLOW|O_CLOEXEC added to flags: if the last component
 * is a symbolic link the open fails (ELOOP). mode is used with O_CREAT.
 * Returns the descriptor or -1.
 */
int fs_open_nofollow(const char *path, int flags, mode_t mode);

/*
 * Like fs_open_nofollow, relative to the directory dirfd, for a name that
 * must be a single safe component (see fs_name_ok): names from outside
 * (mailbox names, UIDLs, account names) cannot climb out of dirfd.
 * Returns the descriptor, or -1 (EINVAL for a bad name).
 */
int fs_openat_nofollow(int dirfd, const char *name, int flags, mode_t mode);

/*
 * 1 when name is usable as one path component: non-empty, at most 255
 * bytes, no '/', no NUL, not "." or "..", and not starting with '.'
 * (hidden names are reserved for temp files). 0 otherwise.
 */
int fs_name_ok(const char *name);

/*
 * Reads the whole regular file at path (not following a final symlink) into
 * buf, which holds cap bytes, and NUL-terminates it: buf needs cap + 1
 * bytes. Returns the length, or -1 (EFBIG when the file is larger than cap,
 * EINVAL when it is not a regular file).
 */
ssize_t fs_read_file(const char *path, char *buf, size_t cap);

/*
 * Replaces the file at path with data, durably and atomically: writes a
 * temp file ".<name>.tmp-XXXXXX" in the same directory, fchmods it to mode,
 * fsyncs it, renames it over path and fsyncs the directory. A reader sees
 * either the old file or the new one, never a part; after a crash at most a
 * stray temp file is left, which readers ignore (fs_clean_temps removes
 * them). Returns 0, or -1 (the temp file is removed).
 */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* fs_write_atomic without the fsyncs: readers still see the old file or
 * the new one, never a part, but a crash may bring the old one back. For
 * state that can be rebuilt (imap-index's flag modseqs). 0 or -1. */
int fs_write_replace(const char *path, const void *data, size_t len, mode_t mode);

/* fs_write_atomic, and the temp file is fchown'ed to uid:gid before anything
 * is written to it ((uid_t)-1 / (gid_t)-1 leave that part unchanged). */
int fs_write_atomic_owned(const char *path, const void *data, size_t len, mode_t mode,
			  uid_t uid, gid_t gid);

/* fsyncs the directory dir (after a create, rename or unlink in it). */
int fs_fsync_dir(const char *dir);

/* fsyncs the directory that contains path ("." for a bare name). */
int fs_fsync_parent(const char *path);

/*
 * Removes the temp files fs_write_atomic may have left in path's directory
 * after a crash (".<name>.tmp-*" for path's own name only). Returns the
 * number removed, or -1.
 */
int fs_clean_temps(const char *path);

/*
 * Creates path and any missing parents with mode (like mkdir -p; existing
 * directories are left as they are). Fails with ENOTDIR when a component
 * exists and is not a directory. Returns 0 or -1.
 */
int fs_mkdir_p(const char *path, mode_t mode);

#endif
