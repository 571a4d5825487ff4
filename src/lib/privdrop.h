/*
 * privdrop: leave root for a service user, keeping its supplementary groups.
 *
 * Every service has its own user (rootfs/etc/passwd): smtpd, imapd, fetchd,
 * relayd, dnsd, web. The mail store and the queue belong to the group "mail",
 * of which smtpd, imapd, fetchd and relayd are members (rootfs/etc/group), so
 * each can reach the mail but none can read another's secrets (docs/USERS.md,
 * "Who can read what").
 */
#ifndef POSTERN_PRIVDROP_H
#define POSTERN_PRIVDROP_H

#include <stddef.h>

/*
 * Sets umask 007 (the mail store's modes, fsutil.h FS_MAIL_*), then, when
 * running as root, becomes `user`: initgroups (its groups from /etc/group), setgid, setuid, and
 * check that root cannot be regained. Not root: nothing to do, returns 0.
 * user NULL while root: refused (network parsers never run as root).
 * Returns 0, or -1 with a message in err.
 */
int priv_drop(const char *user, char *err, size_t errlen);

#endif
