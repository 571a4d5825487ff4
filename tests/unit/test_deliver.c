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
	struct deliver_ctx c = { .db = &db, .domain = "example.com", .mail_root = root,
				 .filter = f_read };
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
	struct deliver_ctx c = { .db = &db, .domain = "example.com", .mail_root = root };
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
	struct deliver_ctx c = { .db = &db, .domain = "example.com", .mail_root = root };
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
	struct deliver_ctx c = { .domain = "example.com", .mail_root = root,
				 .filter = f_reject };
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

/* Quota (21-byte messages): exactly at the limit fits, one byte over
 * does not, and several users with one over get nothing. */
static void t_quota(void)
{
	const char *gina[] = { "gina" }, *both[] = { "hank", "gina" };
	struct deliver_env env = { "", gina, 1, NULL, NULL };
	struct deliver_ctx c = { .db = &db, .domain = "example.com", .mail_root = root,
				 .quota_check = 1, .quota = 63 };
	char err[256] = "";
	int fd = message_fd();

	for (int i = 0; i < 3; i++)   /* under, then exactly at 63 */
		CHECK_EQ(deliver_users(&c, gina, 1, fd, &env, NULL, NULL, err, sizeof err), 1);
	CHECK_EQ(count_new("gina"), 3);
	CHECK_EQ(deliver_users(&c, gina, 1, fd, &env, NULL, NULL, err, sizeof err),
		 DELIVER_ERR_QUOTA);
	CHECK(strstr(err, "gina: mailbox full") != NULL);
	CHECK_EQ(count_new("gina"), 3);
	CHECK_EQ(deliver_users(&c, both, 2, fd, &env, NULL, NULL, err, sizeof err),
		 DELIVER_ERR_QUOTA);
	CHECK_EQ(count_new("hank"), -1);          /* nothing, not even its Maildir */
	CHECK_EQ(deliver_users(&c, both, 1, fd, &env, NULL, NULL, err, sizeof err), 1);
	CHECK_EQ(deliver_quota_check(&c, "gina", 0), 0);   /* at the limit */
	CHECK_EQ(deliver_quota_check(&c, "gina", 1), 1);
	CHECK_EQ(deliver_quota_check(&c, "nomaildir", 63), 0);
	CHECK_EQ(deliver_quota_check(&c, "nomaildir", 64), 1);
	c.quota = 0;                               /* no limit */
	CHECK_EQ(deliver_users(&c, gina, 1, fd, &env, NULL, NULL, err, sizeof err), 1);
	c.quota = 63;
	c.quota_check = 0;                         /* system messages: exempt */
	CHECK_EQ(deliver_users(&c, gina, 1, fd, &env, NULL, NULL, err, sizeof err), 1);
	CHECK_EQ(count_new("gina"), 5);
	close(fd);
}

/* A user's quota= overrides mailbox-quota, also through lists. */
static void t_quota_override(void)
{
	const char *rcpts[] = { "team@example.com" };
	struct deliver_env env = { "", rcpts, 1, NULL, NULL };
	struct deliver_ctx c = { .db = &db, .domain = "example.com", .mail_root = root,
				 .quota_check = 1, .quota = 63 };
	char err[256] = "";
	int fd = message_fd();

	CHECK_EQ(deliver_quota_of(&c, "ivy"), 100);
	CHECK_EQ(deliver_quota_of(&c, "jack"), 0);      /* quota=0: no limit for him */
	CHECK_EQ(deliver_quota_of(&c, "gina"), 63);
	for (int i = 0; i < 4; i++)                      /* 84 of ivy's 100 */
		CHECK_EQ(deliver_local(&c, fd, &env, NULL, err, sizeof err), 2);
	CHECK_EQ(deliver_local(&c, fd, &env, NULL, err, sizeof err), DELIVER_ERR_QUOTA);
	CHECK(strstr(err, "ivy") != NULL);
	CHECK_EQ(count_new("ivy"), 4);
	CHECK_EQ(count_new("jack"), 4);
	c.quota_check = 0;
	CHECK_EQ(deliver_quota_of(&c, "ivy"), 0);
	close(fd);
}

/* The users file's quota= field: parsed, written back, errors named. */
static void t_quota_field(void)
{
	static const char ok[] = "user a user ! quota=2G\nuser b admin ! quota=512\n";
	struct users_db d;
	char err[128], out[256];

	CHECK_EQ(users_parse(&d, ok, strlen(ok), err, sizeof err), 0);
	CHECK_EQ(users_find(&d, "a")->quota, 2ULL << 30);
	CHECK_EQ(users_find(&d, "b")->quota_set, 1);
	users_format(&d, out, sizeof out);
	CHECK_STREQ(out, "user a user ! quota=2147483648\nuser b admin ! quota=512\n");
	users_free(&d);
	CHECK_EQ(users_parse(&d, "user a user ! quota=x\n", 22, err, sizeof err), -1);
	CHECK(strstr(err, "line 1") && strstr(err, "quota=SIZE"));
	CHECK_EQ(users_parse(&d, "user a user ! big\n", 18, err, sizeof err), -1);
	CHECK_EQ(users_parse(&d, "user a user ! quota=1 x\n", 24, err, sizeof err), -1);
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
				   "user dave user !\nalias sales carol\nlist all alice bob\n"
				   "user gina user !\nuser hank user !\nuser ivy user ! quota=100\n"
				   "user jack user ! quota=0\nlist team ivy jack\n";
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
	RUN(t_quota);
	RUN(t_quota_override);
	RUN(t_quota_field);
	RUN(t_paths);
	users_free(&db);
	return check_done();
}
