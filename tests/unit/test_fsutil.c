/* test_fsutil.c - atomic write, bounded read, mkdir -p, no-follow opens. */
#include "check.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void path_in(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/%s", dir, name);
}

static void t_write_read(void)
{
	char p[512], buf[64];
	struct stat st;

	path_in(p, sizeof p, "a.txt");
	CHECK_EQ(fs_write_atomic(p, "hello\n", 6, 0640), 0);
	CHECK_EQ(fs_read_file(p, buf, sizeof buf - 1), 6);
	CHECK_STREQ(buf, "hello\n");
	CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0640);
	/* Replaced whole: shorter content, new mode. */
	CHECK_EQ(fs_write_atomic(p, "hi", 2, 0600), 0);
	CHECK_EQ(fs_read_file(p, buf, sizeof buf - 1), 2);
	CHECK_STREQ(buf, "hi");
	CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600);
	CHECK_EQ(fs_write_atomic(p, "", 0, 0600), 0);
	CHECK_EQ(fs_read_file(p, buf, sizeof buf - 1), 0);
	CHECK_STREQ(buf, "");
}

static void t_read_limits(void)
{
	char p[512], buf[8];

	path_in(p, sizeof p, "big");
	CHECK_EQ(fs_write_atomic(p, "12345678", 8, 0600), 0);
	CHECK_EQ(fs_read_file(p, buf, 7), 7 - 8);  /* -1: one byte too many */
	CHECK_EQ(errno, EFBIG);
	CHECK_EQ(fs_write_atomic(p, "1234567", 7, 0600), 0);
	CHECK_EQ(fs_read_file(p, buf, 7), 7);       /* exactly cap fits */
	CHECK_STREQ(buf, "1234567");
	path_in(p, sizeof p, "missing");
	CHECK_EQ(fs_read_file(p, buf, 7), -1);
	CHECK_EQ(errno, ENOENT);
	CHECK_EQ(fs_read_file(dir, buf, 7), -1);    /* a directory */
	CHECK_EQ(errno, EINVAL);
	path_in(p, sizeof p, "fifo");
	CHECK_EQ(mkfifo(p, 0600), 0);
	CHECK_EQ(fs_read_file(p, buf, 7), -1);      /* a FIFO: refused, no hang */
	CHECK_EQ(errno, EINVAL);
}

static void t_nofollow(void)
{
	char p[512], l[512], buf[16];
	int fd;

	path_in(p, sizeof p, "target");
	path_in(l, sizeof l, "link");
	CHECK_EQ(fs_write_atomic(p, "x", 1, 0600), 0);
	CHECK_EQ(symlink(p, l), 0);
	CHECK_EQ(fs_read_file(l, buf, sizeof buf - 1), -1);
	CHECK_EQ(errno, ELOOP);
	CHECK_EQ(fs_open_nofollow(l, O_RDONLY, 0), -1);
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0);
	CHECK_EQ(fs_openat_nofollow(fd, "link", O_RDONLY, 0), -1);
	CHECK_EQ(fs_openat_nofollow(fd, "../etc", O_RDONLY, 0), -1);
	CHECK_EQ(errno, EINVAL);
	CHECK_EQ(fs_openat_nofollow(fd, "..", O_RDONLY, 0), -1);
	{
		int t = fs_openat_nofollow(fd, "target", O_RDONLY, 0);
		CHECK(t >= 0);
		if (t >= 0)
			close(t);
	}
	close(fd);
	CHECK_EQ(fs_name_ok("ok.name"), 1);
	CHECK_EQ(fs_name_ok(""), 0);
	CHECK_EQ(fs_name_ok(".hidden"), 0);
	CHECK_EQ(fs_name_ok("a/b"), 0);
}

static void t_temps(void)
{
	char p[512], t[512], other[512], buf[16];

	path_in(p, sizeof p, "conf");
	path_in(t, sizeof t, ".conf.tmp-AbC123");       /* left by a crash */
	path_in(other, sizeof other, ".confx.tmp-AbC123"); /* not ours */
	CHECK_EQ(fs_write_atomic(t, "half", 4, 0600), 0);
	CHECK_EQ(fs_write_atomic(other, "x", 1, 0600), 0);
	CHECK_EQ(fs_write_atomic(p, "new", 3, 0600), 0);
	CHECK_EQ(fs_read_file(p, buf, sizeof buf - 1), 3);
	CHECK_STREQ(buf, "new");
	CHECK_EQ(fs_clean_temps(p), 1);
	CHECK(access(t, F_OK) != 0);
	CHECK(access(other, F_OK) == 0);
	/* A failed write leaves the old file and no temp behind. */
	path_in(p, sizeof p, "nodir/conf");
	CHECK_EQ(fs_write_atomic(p, "x", 1, 0600), -1);
	CHECK_EQ(errno, ENOENT);
}

static void t_mkdir(void)
{
	char p[512], f[512];
	struct stat st;

	path_in(p, sizeof p, "m/a//b/c/");
	CHECK_EQ(fs_mkdir_p(p, 0750), 0);
	CHECK_EQ(fs_mkdir_p(p, 0750), 0);           /* exists: fine */
	path_in(p, sizeof p, "m/a/b/c");
	CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode));
	path_in(f, sizeof f, "m/file");
	CHECK_EQ(fs_write_atomic(f, "x", 1, 0600), 0);
	path_in(p, sizeof p, "m/file/sub");
	CHECK_EQ(fs_mkdir_p(p, 0750), -1);
	CHECK_EQ(errno, ENOTDIR);
	CHECK_EQ(fs_mkdir_p("", 0750), -1);
	CHECK_EQ(fs_fsync_dir(dir), 0);
	CHECK_EQ(fs_fsync_parent(f), 0);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof dir, "%s/fsutil-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(t_write_read);
	RUN(t_read_limits);
	RUN(t_nofollow);
	RUN(t_temps);
	RUN(t_mkdir);
	return check_done();
}
