/*
 * store.c - the spool file a message is retrieved into. Delivery from it
 * goes through src/lib/deliver.h (deliver_users), the one local delivery
 * path shared with the SMTP server, where filtering hooks in.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetchd.h"
#include "fsutil.h"

/* Opens an anonymous spool file in dir (on the data partition, so a large
 * message never sits in RAM). Returns the descriptor or -1. */
int spool_open(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != ENOENT))
		return fd;
	/* No O_TMPFILE on this file system: a named file, unlinked at once. */
	char p[FS_PATH_MAX];
	snprintf(p, sizeof p, "%s/spool.XXXXXX", dir);
	fd = mkostemp(p, O_CLOEXEC);
	if (fd >= 0)
		unlink(p);
	return fd;
}

/* Empties the spool for the next message. */
int spool_reset(int fd)
{
	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		return -1;
	return 0;
}

/* A pop3_reader sink writing to the spool descriptor *(int *)arg. */
int spool_sink(void *arg, const void *data, size_t len)
{
	int fd = *(int *)arg;
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
