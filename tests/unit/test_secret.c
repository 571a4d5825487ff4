/*
 * test_secret.c - secrets: who owns which (from the configuration), reads
 * that refuse loose files, durable owned writes, and the boot-time repair.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "secret.h"

static char dir[] = "/tmp/secret-test-XXXXXX";

static struct config *conf(const char *extra)
{
	static struct config_errors errs;
	char text[2048];

	snprintf(text, sizeof text,
		 "mail-domain example.com\n"
		 "[smarthost]\nhost smtp.example.net\nuser office\npassword-file smart.pass\n"
		 "[account anna]\nserver pop.example.net\nuser anna\n"
		 "password-file anna.pass\ndeliver-to anna\n%s", extra);
	return config_parse("t.conf", text, strlen(text), &errs);
}

static void put(const char *name, const char *data, mode_t mode)
{
	char p[256];
	int fd;

	snprintf(p, sizeof p, "%s/%s", dir, name);
	unlink(p);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	CHECK(fd >= 0 && write(fd, data, strlen(data)) == (ssize_t)strlen(data));
	fchmod(fd, mode);
	close(fd);
}

static void t_owner(void)
{
	struct config *c = conf("");
	struct config *dup = conf("[account bob]\nserver pop.example.net\nuser bob\n"
				  "password-file smart.pass\ndeliver-to bob\n");
	char err[256];

	CHECK(c && dup);
	CHECK_STREQ(secret_owner(c, "anna.pass", err, sizeof err), "fetchd");
	CHECK_STREQ(secret_owner(c, "smart.pass", err, sizeof err), "relayd");
	CHECK_STREQ(secret_owner(c, "old.pass", err, sizeof err), "root");
	CHECK(secret_owner(dup, "smart.pass", err, sizeof err) == NULL);
	CHECK(strstr(err, "fetchd") && strstr(err, "relayd"));
	config_free(c);
	config_free(dup);
}

static void t_read(void)
{
	char buf[64], big[SECRET_MAX + 100], err[256];

	put("ok.pass", "s3cret\r\n", 0600);
	CHECK_EQ(secret_read(dir, "ok.pass", buf, sizeof buf, err, sizeof err), 6);
	CHECK_STREQ(buf, "s3cret");
	put("open.pass", "s3cret\n", 0640);
	CHECK_EQ(secret_read(dir, "open.pass", buf, sizeof buf, err, sizeof err), -1);
	CHECK(strstr(err, "open to others") && strstr(err, "0640"));
	put("empty.pass", "\n", 0600);
	CHECK_EQ(secret_read(dir, "empty.pass", buf, sizeof buf, err, sizeof err), -1);
	CHECK(strstr(err, "empty"));
	put("two.pass", "a\nb\n", 0600);
	CHECK_EQ(secret_read(dir, "two.pass", buf, sizeof buf, err, sizeof err), -1);
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	put("big.pass", big, 0600);
	CHECK_EQ(secret_read(dir, "big.pass", big, sizeof big, err, sizeof err), -1);
	CHECK(strstr(err, "larger"));
	char link[256];
	snprintf(link, sizeof link, "%s/link.pass", dir);
	CHECK_EQ(symlink("ok.pass", link), 0);
	CHECK_EQ(secret_read(dir, "link.pass", buf, sizeof buf, err, sizeof err), -1);
	CHECK(strstr(err, "symbolic link"));
	CHECK_EQ(secret_read(dir, "../etc/passwd", buf, sizeof buf, err, sizeof err), -1);
	CHECK_EQ(secret_read(dir, "missing", buf, sizeof buf, err, sizeof err), -1);
}

static void t_write(void)
{
	struct passwd *pw = getpwnam("nobody");
	char p[256], buf[64], err[256];
	struct stat st;

	CHECK_EQ(secret_write(dir, "w.pass", "pw1", 3, pw ? "nobody" : NULL, err, sizeof err), 0);
	snprintf(p, sizeof p, "%s/w.pass", dir);
	CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600);
	if (pw && geteuid() == 0)
		CHECK(st.st_uid == pw->pw_uid && st.st_gid == pw->pw_gid);
	CHECK_EQ(secret_read(dir, "w.pass", buf, sizeof buf, err, sizeof err), 3);
	CHECK_STREQ(buf, "pw1");
	CHECK_EQ(secret_write(dir, "w.pass", "a\nb", 3, NULL, err, sizeof err), -1);
	CHECK_EQ(secret_write(dir, "w.pass", "", 0, NULL, err, sizeof err), -1);
	CHECK_EQ(secret_write(dir, "../x", "a", 1, NULL, err, sizeof err), -1);
	CHECK_EQ(secret_write(dir, "tls", "a", 1, NULL, err, sizeof err), -1);
	CHECK_EQ(secret_write(dir, "x.pass", "a", 1, "no-such-user-here", err, sizeof err), -1);
	CHECK(strstr(err, "no such user"));
}

static int reports;
static void count(const char *line, void *arg)
{
	(void)line;
	(void)arg;
	reports++;
}

static void t_fix(void)
{
	struct config *c = conf("");
	char p[256], err[256];
	struct stat st;

	if (geteuid() != 0 || !getpwnam("nobody")) {
		fprintf(stderr, "skip t_fix: needs root\n");
		config_free(c);
		return;
	}
	put("anna.pass", "x\n", 0644);
	reports = 0;
	/* Not repaired: link.pass (a link), and anna.pass where this machine has
	 * no fetchd user (the box has one). */
	int nofetchd = getpwnam("fetchd") == NULL;
	CHECK_EQ(secret_fix(dir, c, count, NULL, err, sizeof err), 1 + nofetchd);
	snprintf(p, sizeof p, "%s/ok.pass", dir);
	CHECK(stat(p, &st) == 0 && st.st_uid == 0 && (st.st_mode & 07777) == 0600);
	snprintf(p, sizeof p, "%s/open.pass", dir);
	CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600);  /* repaired to root 0600 */
	CHECK(reports >= 2);
	reports = 0;
	secret_fix(dir, c, count, NULL, err, sizeof err);
	CHECK_EQ(reports, 1 + nofetchd);   /* second pass: only what cannot be fixed */
	CHECK_EQ(secret_fix("/nonexistent-dir", c, NULL, NULL, err, sizeof err), -1);
	config_free(c);
}

int main(void)
{
	CHECK(mkdtemp(dir) != NULL);
	RUN(t_owner);
	RUN(t_read);
	RUN(t_write);
	RUN(t_fix);
	if (system("rm -rf /tmp/secret-test-*") != 0)
		fprintf(stderr, "cleanup failed\n");
	return check_done();
}
