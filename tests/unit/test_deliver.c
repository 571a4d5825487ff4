/* test_deliver.c - the one local delivery path: resolution, duplicates,
 * the filter hook, exactly-once keys, and nothing left on failure. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "deliver.h"

static char root[256];
static struct users_db db;
static int filter_calls;
static off_t filter_pos;

static int count_new(const char *user)
{
	char path[512];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof path, "%s/%s/new", root, user);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int message_fd(void)
{
	char path[512];
	int fd;

	snprintf(path, sizeof path, "%s/msg", root);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(write(fd, "Subject: t\r\n\r\nhello\r\n", 21) == 21);   /* left at the end */
	return fd;
}

static enum deliver_verdict f_reject(void *arg, int fd, const struct deliver_env *env,
				     char *why, size_t whylen)
{
	(void)arg;
	(void)env;
	filter_calls++;
	filter_pos = lseek(fd, 0, SEEK_CUR);
	snprintf(why, whylen, "dangerous attachment");
	return DELIVER_REJECT;
}

static enum deliver_verdict f_read(void *arg, int fd, const struct deliver_env *env,
				   char *why, size_t whylen)
{
	char buf[8];

	(void)arg;
	(void)env;
	(void)why;
	(void)whylen;
	filter_calls++;
	CHECK(read(fd, buf, sizeof buf) == 8);   /* moves the offset: deliver rewinds */
	return DELIVER_ACCEPT;
}

static void t_local_with_lists(void)
{
	const char *rcpts[] = { "all@example.com", "Bob+x@example.com", "sales" };
	struct deliver_env env = { "alice@example.com", rcpts, 3, "q1", "alice" };
	struct deliver_ctx c = { &db, "example.com", root, f_read, NULL, 0 };
	char err[256] = "", path[1024], buf[64] = "";
	int fd = message_fd();
	DIR *d;
	struct dirent *e;

	filter_calls = 0;
	CHECK_EQ(deliver_local(&c, fd, &env, NULL, err, sizeof err), 3);   /* alice bob carol */
	CHECK_EQ(filter_calls, 1);
	CHECK_EQ(count_new("alice"), 1);
	CHECK_EQ(count_new("bob"), 1);
	CHECK_EQ(count_new("carol"), 1);
	snprintf(path, sizeof path, "%s/bob/new", root);
	d = opendir(path);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			int mfd;

			CHECK(strstr(e->d_name, ",S=21") != NULL);
			snprintf(path, sizeof path, "%s/bob/new/%s", root, e->d_name);
			mfd = open(path, O_RDONLY);
			CHECK(read(mfd, buf, sizeof buf) == 21);
			close(mfd);
		}
	closedir(d);
	CHECK_STREQ(buf, "Subject: t\r\n\r\nhello\r\n");
	close(fd);
}

static void t_unknown_and_reject(void)
{
	const char *rcpts[] = { "bob@example.com", "zed@example.com" };
	struct deliver_env env = { "alice@example.com", rcpts, 2, NULL, NULL };
	struct deliver_ctx c = { &db, "example.com", root, NULL, NULL, 0 };
	char err[256] = "";
	int fd = message_fd();
	int before = count_new("bob");

	CHECK_EQ(deliver_local(&c, fd, &env, NULL, err, sizeof err), DELIVER_ERR_NOUSER);
	CHECK(strstr(err, "zed@example.com"));
	CHECK_EQ(count_new("bob"), before);
	env.nrcpt = 1;
	c.filter = f_reject;
	filter_calls = 0;
	CHECK_EQ(deliver_local(&c, fd, &env, NULL, err, sizeof err), DELIVER_ERR_REJECTED);
	CHECK_EQ(filter_calls, 1);
	CHECK_EQ(filter_pos, 0);
	CHECK_STREQ(err, "dangerous attachment");
	CHECK_EQ(count_new("bob"), before);
	env.nrcpt = 0;
	CHECK_EQ(deliver_local(&c, fd, &env, NULL, err, sizeof err), DELIVER_ERR_TEMP);
	close(fd);
}

static void t_exactly_once(void)
{
	const char *rcpts[] = { "dave@example.com" };
	struct deliver_env env = { "", rcpts, 1, NULL, NULL };
	struct deliver_ctx c = { &db, "example.com", root, NULL, NULL, 0 };
	char err[256];
	int fd = message_fd();

	CHECK_EQ(deliver_local(&c, fd, &env, "acct\nUIDL1", err, sizeof err), 1);
	CHECK_EQ(deliver_local(&c, fd, &env, "acct\nUIDL1", err, sizeof err), 0);
	CHECK_EQ(count_new("dave"), 1);
	close(fd);
}

/* The fetcher's path: user names, the filter hook, a batch committed once. */
static void t_users_batch(void)
{
	const char *users[] = { "erin", "frank" };
	struct deliver_env env = { "", users, 2, NULL, NULL };
	struct deliver_ctx c = { NULL, "example.com", root, f_reject, NULL, 0 };
	struct maildir_batch *b = maildir_batch_new();
	char err[256];
	int fd = message_fd();

	filter_calls = 0;
	CHECK_EQ(deliver_users(&c, users, 2, fd, &env, "a\nU1", b, err, sizeof err),
		 DELIVER_ERR_REJECTED);
	CHECK_EQ(filter_calls, 1);
	c.filter = NULL;
	CHECK_EQ(deliver_users(&c, users, 2, fd, &env, "a\nU1", b, err, sizeof err), 2);
	CHECK_EQ(deliver_users(&c, users, 1, fd, &env, "a\nU2", b, err, sizeof err), 1);
	CHECK_EQ(deliver_users(&c, users, 1, fd, &env, "a\nU2", b, err, sizeof err), 0);
	CHECK_EQ(count_new("erin"), 0);          /* nothing visible before the commit */
	CHECK_EQ(maildir_batch_commit(b, err, sizeof err), 0);
	CHECK_EQ(count_new("erin"), 2);
	CHECK_EQ(count_new("frank"), 1);
	CHECK_EQ(deliver_users(&c, users, 2, fd, &env, "a\nU1", NULL, err, sizeof err), 0);
	CHECK_EQ(deliver_users(&c, (const char *[]){ "../x" }, 1, fd, &env, NULL, NULL, err,
			       sizeof err), DELIVER_ERR_TEMP);
	maildir_batch_free(b);
	close(fd);
}

static void t_paths(void)
{
	char out[64];

	CHECK_EQ(deliver_maildir_path("/data/mail", "bob", out, sizeof out), 0);
	CHECK_STREQ(out, "/data/mail/bob");
	CHECK_EQ(deliver_maildir_path("/data/mail", "../etc", out, sizeof out), -1);
	CHECK_EQ(deliver_maildir_path("/data/mail", "bob", out, 8), -1);
}

int main(void)
{
	static const char text[] = "user alice user !\nuser bob user !\nuser carol user !\n"
				   "user dave user !\nalias sales carol\nlist all alice bob\n";
	const char *t = getenv("TMPDIR");
	char err[128];

	snprintf(root, sizeof root, "%s/deliver-%d", t ? t : "/tmp", (int)getpid());
	mkdir(root, 0700);
	if (users_parse(&db, text, strlen(text), err, sizeof err) != 0)
		return 1;
	RUN(t_local_with_lists);
	RUN(t_unknown_and_reject);
	RUN(t_exactly_once);
	RUN(t_users_batch);
	RUN(t_paths);
	users_free(&db);
	return check_done();
}
