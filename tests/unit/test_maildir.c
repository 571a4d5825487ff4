/* test_maildir.c - Maildir creation, delivery names, multi-target delivery,
 * flags, exactly-once keys, quota, free space, crash leftovers, symlinks. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "maildir.h"

static char top[512];

static void path_of(char *out, size_t cap, const char *rel)
{
	snprintf(out, cap, "%s/%s", top, rel);
}

static int exists(const char *rel)
{
	char p[1024];
	struct stat st;

	path_of(p, sizeof p, rel);
	return lstat(p, &st) == 0;
}

struct names {
	int n;
	char sub[8][8];
	char name[8][256];
};

static int collect(const char *sub, const char *name, void *arg)
{
	struct names *ns = arg;

	if (ns->n < 8) {
		snprintf(ns->sub[ns->n], sizeof ns->sub[0], "%s", sub);
		snprintf(ns->name[ns->n], sizeof ns->name[0], "%s", name);
	}
	ns->n++;
	return 0;
}

static struct names list(const char *rel)
{
	struct names ns;
	char p[1024];

	memset(&ns, 0, sizeof ns);
	path_of(p, sizeof p, rel);
	CHECK_EQ(maildir_list(p, collect, &ns), 0);
	return ns;
}

static int count_dir(const char *rel)
{
	struct names ns = list(rel);

	return ns.n;
}

static void make(const char *rel)
{
	char p[1024];

	path_of(p, sizeof p, rel);
	CHECK_EQ(maildir_create(p), 0);
}

/* Entries of directory dir whose name ends in suffix ("" = any). */
static int count_suffix(const char *dir, const char *suffix, char *last, size_t cap)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name), k = strlen(suffix);

		if (de->d_name[0] == '.' || l < k || strcmp(de->d_name + l - k, suffix) != 0)
			continue;
		if (last)
			snprintf(last, cap, "%s", de->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* A crash during the commit's phase C: the marker back to an intent. */
static int intent_from_marker(const char *keys)
{
	char name[300], from[1500], to[1500];

	if (count_suffix(keys, "", name, sizeof name) != 1)
		return -1;
	snprintf(from, sizeof from, "%s/%s", keys, name);
	snprintf(to, sizeof to, "%s/%s.p", keys, name);
	return rename(from, to);
}

static int has_intent(const char *keys)
{
	return count_suffix(keys, ".p", NULL, 0) > 0;
}

static int count_tmp(const char *rel)
{
	char p[1024];

	path_of(p, sizeof p, rel);
	strcat(p, "/tmp");
	return count_suffix(p, "", NULL, 0);
}

static void t_create(void)
{
	make("alice");
	CHECK(exists("alice/tmp") && exists("alice/new") && exists("alice/cur"));
	CHECK(exists("alice/.Sent/cur") && exists("alice/.Drafts/new"));
	CHECK(exists("alice/.Trash/tmp") && exists("alice/.Junk/cur"));
	CHECK(exists("alice/.Archive/maildirfolder"));
	make("alice");   /* idempotent */
	make("bob");
	make("carol");
}

static void t_folders(void)
{
	char p[1024], out[1024];

	CHECK(maildir_folder_valid("Sent"));
	CHECK(maildir_folder_valid("Work.Projects"));
	CHECK(maildir_folder_valid("Entw&APw-rfe"));
	CHECK(!maildir_folder_valid(""));
	CHECK(!maildir_folder_valid(".hidden"));
	CHECK(!maildir_folder_valid("a..b"));
	CHECK(!maildir_folder_valid("trailing."));
	CHECK(!maildir_folder_valid("../etc"));
	CHECK(!maildir_folder_valid("a/b"));
	CHECK(!maildir_folder_valid("tab\there"));
	path_of(p, sizeof p, "alice");
	CHECK_EQ(maildir_folder_path(p, "Work.Projects", out, sizeof out), 0);
	CHECK(strstr(out, "/alice/.Work.Projects") != NULL);
	CHECK_EQ(maildir_folder_path(p, "../x", out, sizeof out), -1);
	CHECK_EQ(maildir_create_folder(p, "Work.Projects"), 0);
	CHECK(exists("alice/.Work.Projects/new"));
}

/* TIME.M<usec>P<pid>Q<n>R<16 hex>.HOST,S=SIZE */
static int name_shape_ok(const char *name, size_t size)
{
	char host[256], tail[64];
	const char *p = name;

	while (*p >= '0' && *p <= '9')
		p++;
	if (p == name || strncmp(p, ".M", 2) != 0 || !strstr(p, "P") || !strstr(p, "Q"))
		return 0;
	p = strchr(p, 'R');
	if (!p || strspn(p + 1, "0123456789abcdef") != 16 || p[17] != '.')
		return 0;
	gethostname(host, sizeof host);
	snprintf(tail, sizeof tail, ",S=%zu", size);
	return strncmp(p + 18, host, strlen(host)) == 0 &&
	       strcmp(name + strlen(name) - strlen(tail), tail) == 0;
}

static void t_deliver_one(void)
{
	static const char msg[] = "Subject: hi\r\n\r\nhello\r\n";
	char p[1024], err[256], file[1400], got[64] = "";
	const char *dirs[1] = { p };
	struct names ns;
	int fd;

	path_of(p, sizeof p, "alice");
	CHECK_EQ(maildir_deliver_buf(dirs, 1, msg, strlen(msg), NULL, err, sizeof err), 1);
	ns = list("alice");
	CHECK_EQ(ns.n, 1);
	CHECK_STREQ(ns.sub[0], "new");
	CHECK(name_shape_ok(ns.name[0], strlen(msg)));
	snprintf(file, sizeof file, "%s/new/%s", p, ns.name[0]);
	fd = open(file, O_RDONLY);
	CHECK(fd >= 0 && read(fd, got, sizeof got) == (ssize_t)strlen(msg));
	close(fd);
	CHECK_STREQ(got, msg);
	CHECK_EQ(count_dir("alice"), 1);
	/* tmp/ was left empty: rmdir succeeds only on an empty directory. */
	snprintf(file, sizeof file, "%s/tmp", p);
	CHECK(rmdir(file) == 0 && mkdir(file, 0700) == 0);
}

static void t_deliver_many_from_fd(void)
{
	char a[1024], b[1024], c[1024], src[1024], err[256];
	const char *dirs[3] = { a, b, c };
	const char body[] = "From: x@example.com\r\n\r\nbody\r\n";
	int fd;

	path_of(a, sizeof a, "alice");
	path_of(b, sizeof b, "bob");
	path_of(c, sizeof c, "carol");
	path_of(src, sizeof src, "incoming.eml");
	fd = open(src, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, body, strlen(body)) == (ssize_t)strlen(body));
	lseek(fd, 0, SEEK_SET);
	CHECK_EQ(maildir_deliver_fd(dirs, 3, fd, NULL, err, sizeof err), 3);
	close(fd);
	CHECK_EQ(count_dir("alice"), 2);
	CHECK_EQ(count_dir("bob"), 1);
	CHECK_EQ(count_dir("carol"), 1);
	CHECK(name_shape_ok(list("bob").name[0], strlen(body)));
}

static void t_deliver_rollback(void)
{
	char a[1024], bad[1024], err[256];
	const char *dirs[2] = { a, bad };

	path_of(a, sizeof a, "bob");
	path_of(bad, sizeof bad, "no-such-maildir");
	CHECK_EQ(maildir_deliver_buf(dirs, 2, "x", 1, NULL, err, sizeof err), -1);
	CHECK(strstr(err, "no-such-maildir: not a Maildir") != NULL);
	CHECK_EQ(count_dir("bob"), 1);   /* nothing left behind in bob */
}

/* A failure at the second target removes the first target's copy again.
 * The failure: new/ made immutable (root ignores permissions); skipped
 * where chattr does not work. */
static void t_deliver_rollback_late(void)
{
	char a[1024], imm[1024], cmd[4400], err[256];
	const char *dirs[2] = { a, imm };
	int before = count_dir("bob");

	path_of(a, sizeof a, "bob");
	make("immutable");
	path_of(imm, sizeof imm, "immutable");
	snprintf(cmd, sizeof cmd, "chattr +i '%s/new' 2>/dev/null", imm);
	if (system(cmd) != 0) {
		fprintf(stderr, "skipped: chattr +i not available\n");
		return;
	}
	CHECK_EQ(maildir_deliver_buf(dirs, 2, "y", 1, NULL, err, sizeof err), -1);
	CHECK(strstr(err, "immutable: delivery:") != NULL);
	CHECK_EQ(count_dir("bob"), before);
	snprintf(cmd, sizeof cmd, "chattr -i '%s/new'", imm);
	CHECK_EQ(system(cmd), 0);
	CHECK_EQ(count_dir("immutable"), 0);
	/* Neither tmp/ holds a leftover. */
	snprintf(cmd, sizeof cmd, "rmdir '%s/tmp' '%s/tmp' && mkdir '%s/tmp' '%s/tmp'",
		 a, imm, a, imm);
	CHECK_EQ(system(cmd), 0);
}

static void t_flags(void)
{
	char p[1024], nn[300], nn2[300];
	struct maildir_info info;
	struct names ns;

	path_of(p, sizeof p, "bob");
	ns = list("bob");
	CHECK_EQ(maildir_parse_name(ns.name[0], &info), 0);
	CHECK(info.has_size && info.size == 29);
	CHECK_EQ(maildir_move_to_cur(p, ns.name[0], nn, sizeof nn), 0);
	CHECK(strcmp(nn + strlen(nn) - 3, ":2,") == 0);
	ns = list("bob");
	CHECK_STREQ(ns.sub[0], "cur");
	CHECK_EQ(maildir_set_flags(p, nn, "SRFS", nn2, sizeof nn2), 0);
	CHECK(strcmp(nn2 + strlen(nn2) - 6, ":2,FRS") == 0);
	CHECK_EQ(maildir_parse_name(nn2, &info), 0);
	CHECK_STREQ(info.flags, "FRS");
	CHECK_EQ(info.size, 29);
	CHECK_EQ(maildir_set_flags(p, nn2, "Ta", nn, sizeof nn), 0);
	CHECK(strcmp(nn + strlen(nn) - 5, ":2,Ta") == 0);
	CHECK_EQ(maildir_set_flags(p, nn, "S1", nn2, sizeof nn2), -1);
	CHECK_EQ(maildir_set_flags(p, "../../etc/passwd", "S", nn2, sizeof nn2), -1);
	CHECK_EQ(maildir_set_flags(p, "nonexistent", "S", nn2, sizeof nn2), -1);
	CHECK_EQ(maildir_name_with_flags("1.2.h,S=5:2,S", "", nn2, sizeof nn2), 0);
	CHECK_STREQ(nn2, "1.2.h,S=5:2,");
	/* A message delivered to new/ can get flags directly (moved to cur/). */
	path_of(p, sizeof p, "carol");
	ns = list("carol");
	CHECK_EQ(maildir_set_flags(p, ns.name[0], "S", nn, sizeof nn), 0);
	ns = list("carol");
	CHECK_STREQ(ns.sub[0], "cur");
}

/* Maildirs on two file systems: the second copy is copied, not linked. */
static void t_cross_device(void)
{
	char a[1024], shm[] = "/dev/shm/postern-md-XXXXXX", err[256];
	const char *dirs[2] = { a, shm };
	struct names ns;
	struct stat s1, s2;

	path_of(a, sizeof a, "bob");
	if (!mkdtemp(shm) || stat(shm, &s2) < 0 || stat(a, &s1) < 0 || s1.st_dev == s2.st_dev) {
		fprintf(stderr, "skipped: no second file system\n");
		return;
	}
	CHECK_EQ(maildir_create(shm), 0);
	CHECK_EQ(maildir_deliver_buf(dirs, 2, "cross", 5, NULL, err, sizeof err), 2);
	memset(&ns, 0, sizeof ns);
	CHECK_EQ(maildir_list(shm, collect, &ns), 0);
	CHECK_EQ(ns.n, 1);
	{
		char cmd[200];

		snprintf(cmd, sizeof cmd, "rm -rf '%s'", shm);
		CHECK_EQ(system(cmd), 0);
	}
}

static void t_exactly_once(void)
{
	char a[1024], b[1024], c[1024], err[256], keys[1100];
	const char *dirs[3] = { a, b, c };
	const char *key = "provider-acct\nUIDL-0001";
	struct names ns;
	char file[1400];

	path_of(a, sizeof a, "ka");
	path_of(b, sizeof b, "kb");
	path_of(c, sizeof c, "kc");
	make("ka");
	make("kb");
	make("kc");
	CHECK_EQ(maildir_deliver_buf(dirs, 2, "m1", 2, key, err, sizeof err), 2);
	CHECK_EQ(maildir_deliver_buf(dirs, 2, "m1", 2, key, err, sizeof err), 0);
	CHECK_EQ(count_dir("ka"), 1);
	/* A third target gets its copy, the first two are not repeated. */
	CHECK_EQ(maildir_deliver_buf(dirs, 3, "m1", 2, key, err, sizeof err), 1);
	CHECK_EQ(count_dir("ka"), 1);
	CHECK_EQ(count_dir("kc"), 1);
	/* Another key is another message. */
	CHECK_EQ(maildir_deliver_buf(dirs, 1, "m2", 2, "provider-acct\nUIDL-0002", err,
				     sizeof err), 1);
	CHECK_EQ(count_dir("ka"), 2);
	/* The user deletes the message: the marker still stops a redelivery. */
	ns = list("kb");
	snprintf(file, sizeof file, "%s/%s/%s", b, ns.sub[0], ns.name[0]);
	CHECK(strstr(ns.name[0], "K") != NULL);
	CHECK_EQ(unlink(file), 0);
	CHECK_EQ(maildir_deliver_buf(dirs + 1, 1, "m1", 2, key, err, sizeof err), 0);
	CHECK_EQ(count_dir("kb"), 0);
	/* Crash between link and marker (phase C): the intent is left, the
	 * message in new/ is found, the intent becomes the marker. */
	snprintf(keys, sizeof keys, "%s/postern-keys", c);
	CHECK_EQ(intent_from_marker(keys), 0);
	CHECK_EQ(maildir_deliver_buf(dirs + 2, 1, "m1", 2, key, err, sizeof err), 0);
	CHECK_EQ(count_dir("kc"), 1);
	CHECK_EQ(has_intent(keys), 0);
	/* Crash before the link was durable (intent, no message): delivered. */
	ns = list("kc");
	snprintf(file, sizeof file, "%s/%s/%s", c, ns.sub[0], ns.name[0]);
	CHECK_EQ(unlink(file), 0);
	CHECK_EQ(intent_from_marker(keys), 0);
	CHECK_EQ(maildir_deliver_buf(dirs + 2, 1, "m1", 2, key, err, sizeof err), 1);
	CHECK_EQ(count_dir("kc"), 1);
	CHECK_EQ(has_intent(keys), 0);
	/* Forgotten marker (the caller recorded it elsewhere): delivered again
	 * without a scan of new/ and cur/. */
	CHECK_EQ(maildir_key_forget(c, key), 0);
	CHECK_EQ(maildir_deliver_buf(dirs + 2, 1, "m1", 2, key, err, sizeof err), 1);
	CHECK_EQ(count_dir("kc"), 2);
	/* The intent check searches cur/ as well (flags changed after the crash). */
	ns = list("kc");
	{
		char nn[300];

		CHECK_EQ(maildir_set_flags(c, ns.name[0], "S", nn, sizeof nn), 0);
		CHECK_EQ(maildir_set_flags(c, ns.name[1], "S", nn, sizeof nn), 0);
	}
	CHECK_EQ(intent_from_marker(keys), 0);
	CHECK_EQ(maildir_deliver_buf(dirs + 2, 1, "m1", 2, key, err, sizeof err), 0);
	CHECK_EQ(count_dir("kc"), 2);
}

/* Batches: nothing visible before the commit; one key twice in a batch is
 * one copy; an uncommitted batch leaves nothing behind. */
static void t_batch(void)
{
	char a[1024], b[1024], err[256];
	const char *dirs[2] = { a, b };
	struct maildir_batch *mb = maildir_batch_new();

	path_of(a, sizeof a, "ba");
	path_of(b, sizeof b, "bb");
	make("ba");
	make("bb");
	CHECK(mb != NULL);
	CHECK_EQ(maildir_batch_add_buf(mb, dirs, 2, "one", 3, "acct\nU1", err, sizeof err), 2);
	CHECK_EQ(maildir_batch_add_buf(mb, dirs, 2, "one", 3, "acct\nU1", err, sizeof err), 0);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(maildir_batch_add_buf(mb, dirs, 1, "many", 4, NULL, err, sizeof err), 1);
	CHECK_EQ(maildir_batch_messages(mb), 9);
	CHECK_EQ(count_dir("ba"), 0);
	CHECK_EQ(maildir_batch_commit(mb, err, sizeof err), 0);
	CHECK_EQ(count_dir("ba"), 9);
	CHECK_EQ(count_dir("bb"), 1);
	CHECK_EQ(maildir_batch_messages(mb), 0);
	CHECK_EQ(maildir_batch_add_buf(mb, dirs, 2, "one", 3, "acct\nU1", err, sizeof err), 0);
	CHECK_EQ(maildir_batch_add_buf(mb, dirs + 1, 1, "two", 3, "acct\nU2", err, sizeof err), 1);
	maildir_batch_free(mb);
	CHECK_EQ(count_dir("bb"), 1);
	CHECK_EQ(count_tmp("bb"), 0);
	{
		char keys[1100];

		snprintf(keys, sizeof keys, "%s/postern-keys", b);
		CHECK_EQ(has_intent(keys), 0);
	}
}

/* Link mode: the spool file itself is linked into new/ (same inode). */
static void t_batch_link(void)
{
	char a[1024], spool[1024], file[1400], err[256];
	const char *dirs[1] = { a };
	struct maildir_batch *mb = maildir_batch_new();
	struct names ns;
	struct stat s1, s2;
	int fd;

	path_of(a, sizeof a, "bl");
	make("bl");
	path_of(spool, sizeof spool, "spool-file");
	fd = open(spool, O_RDWR | O_CREAT | O_TRUNC, 0660);
	CHECK(fd >= 0 && write(fd, "linked\r\n", 8) == 8);
	CHECK_EQ(maildir_batch_add_link(mb, dirs, 1, fd, NULL, err, sizeof err), 1);
	CHECK_EQ(count_dir("bl"), 0);
	CHECK_EQ(count_tmp("bl"), 0);            /* no copy written */
	CHECK_EQ(maildir_batch_commit(mb, err, sizeof err), 0);
	ns = list("bl");
	CHECK_EQ(ns.n, 1);
	snprintf(file, sizeof file, "%s/new/%s", a, ns.name[0]);
	CHECK(stat(file, &s1) == 0 && fstat(fd, &s2) == 0 && s1.st_ino == s2.st_ino);
	CHECK(strstr(ns.name[0], ",S=8") != NULL);
	close(fd);
	unlink(spool);
	maildir_batch_free(mb);
}

static void t_quota(void)
{
	char p[1024], sent[1100], err[256];
	const char *d1[1] = { p }, *d2[1] = { sent };
	unsigned long long bytes = 0;
	unsigned long count = 0;
	char big[1000];

	make("q");
	path_of(p, sizeof p, "q");
	snprintf(sent, sizeof sent, "%s/.Sent", p);
	memset(big, 'x', sizeof big);
	CHECK_EQ(maildir_deliver_buf(d1, 1, big, 1000, NULL, err, sizeof err), 1);
	CHECK_EQ(maildir_deliver_buf(d1, 1, big, 500, NULL, err, sizeof err), 1);
	CHECK_EQ(maildir_deliver_buf(d2, 1, big, 250, NULL, err, sizeof err), 1);
	CHECK_EQ(maildir_usage(p, &bytes, &count), 0);
	CHECK_EQ(bytes, 1750);
	CHECK_EQ(count, 3);
	CHECK_EQ(maildir_quota_check(p, 2000, 250), 0);
	CHECK_EQ(maildir_quota_check(p, 2000, 251), 1);
	CHECK_EQ(maildir_quota_check(p, 0, 1ULL << 40), 0);   /* no limit */
}

static void t_fs_check(void)
{
	CHECK_EQ(maildir_fs_check(top, 0, 0), 0);
	CHECK_EQ(maildir_fs_check(top, 1ULL << 62, 0), 1);
	CHECK_EQ(maildir_fs_check(top, 0, 1ULL << 62), 1);
	CHECK_EQ(maildir_fs_check("/nonexistent/x", 0, 0), -1);
}

static void t_crash_leftover(void)
{
	char p[1024], f[1200];
	unsigned long long bytes;
	unsigned long count;
	struct stat st;
	int fd;

	make("crash");
	path_of(p, sizeof p, "crash");
	snprintf(f, sizeof f, "%s/tmp/1700000000.M1P1Q1R00.host", p);
	fd = open(f, O_WRONLY | O_CREAT, 0600);
	CHECK(fd >= 0 && write(fd, "half a mess", 11) == 11);
	close(fd);
	CHECK_EQ(count_dir("crash"), 0);
	CHECK_EQ(maildir_usage(p, &bytes, &count), 0);
	CHECK_EQ(count, 0);
	CHECK_EQ(stat(f, &st), 0);
	CHECK_EQ(maildir_clean_tmp(p, st.st_mtime + 60), 0);
	CHECK_EQ(maildir_clean_tmp(p, st.st_mtime + MAILDIR_TMP_MAX_AGE + 1), 1);
	CHECK(stat(f, &st) < 0);
}

static void t_symlinks(void)
{
	char p[1024], target[1024], link_new[1100], err[256];
	const char *dirs[1] = { p };

	make("sym");
	make("elsewhere");
	path_of(p, sizeof p, "sym");
	path_of(target, sizeof target, "elsewhere/new");
	snprintf(link_new, sizeof link_new, "%s/new", p);
	CHECK_EQ(rmdir(link_new), 0);
	CHECK_EQ(symlink(target, link_new), 0);
	CHECK_EQ(maildir_deliver_buf(dirs, 1, "x", 1, NULL, err, sizeof err), -1);
	CHECK_EQ(count_dir("elsewhere"), 0);
	/* A symlinked Maildir itself is refused too. */
	path_of(link_new, sizeof link_new, "symroot");
	path_of(target, sizeof target, "elsewhere");
	CHECK_EQ(symlink(target, link_new), 0);
	dirs[0] = link_new;
	CHECK_EQ(maildir_deliver_buf(dirs, 1, "x", 1, NULL, err, sizeof err), -1);
	CHECK_EQ(count_dir("elsewhere"), 0);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(top, sizeof top, "%s/maildir-test-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(top))
		return 1;
	RUN(t_create);
	RUN(t_folders);
	RUN(t_deliver_one);
	RUN(t_deliver_many_from_fd);
	RUN(t_deliver_rollback);
	RUN(t_deliver_rollback_late);
	RUN(t_flags);
	RUN(t_cross_device);
	RUN(t_exactly_once);
	RUN(t_batch);
	RUN(t_batch_link);
	RUN(t_quota);
	RUN(t_fs_check);
	RUN(t_crash_leftover);
	RUN(t_symlinks);
	return check_done();
}
