/* privdrop: see privdrop.h. */
#include "privdrop.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int priv_drop(const char *user, char *err, size_t errlen)
{
	struct passwd *pw;

	umask(007);
	if (getuid() != 0 && geteuid() != 0)
		return 0;
	if (!user) {
		snprintf(err, errlen, "refusing to run as root: give a service user");
		return -1;
	}
	errno = 0;
	if (!(pw = getpwnam(user))) {
		snprintf(err, errlen, "no such user: %s", user);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		snprintf(err, errlen, "cannot become %s: %s", user, strerror(errno));
		return -1;
	}
	/* A process that can setuid(0) again has not dropped anything. */
	if (setuid(0) == 0 || getegid() != pw->pw_gid) {
		snprintf(err, errlen, "cannot become %s: root could be regained", user);
		return -1;
	}
	return 0;
}
