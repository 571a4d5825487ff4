/* test_queue.c - the outbound queue: spool, commit, envelope text, list,
 * remove, and recovery of what a crash can leave behind. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "queue.h"

static char root[256];

static int count_dir(const char *sub)
{
	char path[512];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof path, "%s/%s", root, sub);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void sample_env(struct queue_env *env)
{
	memset(env, 0, sizeof *env);
	env->created = 1700000000;
	strcpy(env->user, "alice");
	strcpy(env->from, "alice@example.com");
	env->nrcpt = 2;
	strcpy(env->rcpt[0].addr, "x@other.example");
	strcpy(env->rcpt[1].addr, "y@other.example");
	env->rcpt[1].state = QUEUE_FAILED;
	env->rcpt[1].attempts = 3;
	env->rcpt[1].next_attempt = 1700003600;
	strcpy(env->rcpt[1].reply, "550 5.1.1 no such\x01 user");
}

static int collect(const char *id, void *arg)
{
	char *ids = arg;

	strcat(ids, id);
	strcat(ids, ",");
	return 0;
}

static void t_spool_commit_list_remove(void)
{
	struct queue q;
	static struct queue_spool sp;
	static struct queue_env env, back;
	char buf[64] = "", ids[256] = "";
	int fd;

	CHECK_EQ(queue_open(&q, root), 0);
	CHECK_EQ(queue_spool_open(&q, &sp, 1700000000), 0);
	CHECK(queue_id_valid(sp.id));
	CHECK(strncmp(sp.id, "6553f100", 8) == 0);
	CHECK_EQ(queue_spool_write(&sp, "Subject: a\r\n\r\n", 14), 0);
	CHECK_EQ(queue_spool_write(&sp, "body\r\n", 6), 0);
	CHECK_EQ(queue_spool_finish(&sp), 0);
	CHECK_EQ(read(sp.fd, buf, sizeof buf), 20);   /* readable from 0 */
	CHECK_EQ(count_dir("tmp"), 1);
	CHECK_EQ(count_dir("env"), 0);
	sample_env(&env);
	CHECK_EQ(queue_spool_commit(&sp, &env), 0);
	memset(buf, 0, sizeof buf);
	CHECK_EQ(read(sp.fd, buf, sizeof buf), 20);   /* still open, at 0 */
	queue_spool_abort(&sp);                        /* closes; removes nothing */
	CHECK_EQ(count_dir("tmp"), 0);
	CHECK_EQ(count_dir("msg"), 1);
	CHECK_EQ(count_dir("env"), 1);
	CHECK_EQ(env.size, 20);
	CHECK_EQ(queue_env_load(&q, env.id, &back), 0);
	CHECK_STREQ(back.from, "alice@example.com");
	CHECK_STREQ(back.user, "alice");
	CHECK_EQ(back.size, 20);
	CHECK_EQ(back.nrcpt, 2);
	CHECK_EQ(back.rcpt[1].state, QUEUE_FAILED);
	CHECK_EQ(back.rcpt[1].attempts, 3);
	CHECK_EQ(back.rcpt[1].next_attempt, 1700003600);
	CHECK_STREQ(back.rcpt[1].reply, "550 5.1.1 no such? user");
	CHECK_STREQ(back.rcpt[0].reply, "");
	fd = queue_msg_open(&q, env.id);
	CHECK(fd >= 0);
	memset(buf, 0, sizeof buf);
	CHECK_EQ(read(fd, buf, sizeof buf), 20);
	CHECK_STREQ(buf, "Subject: a\r\n\r\nbody\r\n");
	close(fd);
	/* the relay's update */
	back.rcpt[0].state = QUEUE_SENT;
	CHECK_EQ(queue_env_save(&q, &back), 0);
	CHECK_EQ(queue_env_load(&q, env.id, &env), 0);
	CHECK_EQ(env.rcpt[0].state, QUEUE_SENT);
	CHECK_EQ(queue_list(&q, collect, ids), 0);
	CHECK(strlen(ids) == QUEUE_ID_LEN + 1);
	CHECK_EQ(queue_remove(&q, env.id), 0);
	CHECK_EQ(count_dir("msg"), 0);
	CHECK_EQ(count_dir("env"), 0);
	CHECK_EQ(queue_env_load(&q, env.id, &back), -1);
	CHECK_EQ(queue_msg_open(&q, "../../etc/passwd"), -1);
	queue_close(&q);
}

static void t_abort(void)
{
	struct queue q;
	static struct queue_spool sp;

	CHECK_EQ(queue_open(&q, root), 0);
	CHECK_EQ(queue_spool_open(&q, &sp, time(NULL)), 0);
	CHECK_EQ(queue_spool_write(&sp, "x", 1), 0);
	queue_spool_abort(&sp);
	queue_spool_abort(&sp);
	CHECK_EQ(count_dir("tmp"), 0);
	queue_close(&q);
}

static void t_env_text(void)
{
	static struct queue_env env, back;
	char buf[4096];
	int n;
	static const char *const bad[] = {
		"",
		"postern-queue 2\nid 0123456789abcdef\nfrom a@b\nrcpt pending 0 0 c@d\n",
		"postern-queue 1\nid 0123456789ABCDEF\nfrom a@b\nrcpt pending 0 0 c@d\n",
		"postern-queue 1\nid 0123456789abcdef\nfrom a@b\n",
		"postern-queue 1\nid 0123456789abcdef\nfrom a@b\nrcpt pending 0 0 c@d",
		"postern-queue 1\nid 0123456789abcdef\nfrom a@b\nrcpt done 0 0 c@d\n",
		"postern-queue 1\nid 0123456789abcdef\nfrom a@b\nrcpt pending x 0 c@d\n",
		"postern-queue 1\nid 0123456789abcdef\nfrom a@b\nrcpt pending 0 0\n",
		"id 0123456789abcdef\npostern-queue 1\nrcpt pending 0 0 c@d\n",
	};

	sample_env(&env);
	strcpy(env.id, "0123456789abcdef");
	n = queue_env_format(&env, buf, sizeof buf);
	CHECK(n > 0);
	CHECK(strstr(buf, "postern-queue 1\nid 0123456789abcdef\ncreated 1700000000\n"
			  "user alice\nfrom alice@example.com\nsize 0\n"
			  "rcpt pending 0 0 x@other.example\n"
			  "rcpt failed 3 1700003600 y@other.example 550 5.1.1 no such? user\n") == buf);
	CHECK_EQ(queue_env_parse(&back, buf, (size_t)n), 0);
	CHECK_EQ(back.nrcpt, 2);
	CHECK_EQ(queue_env_format(&env, buf, 40), -1);
	CHECK_EQ(errno, ENOSPC);
	/* the exact fit (text and NUL) is accepted, one byte less is not, and the
	 * bytes past cap are never touched */
	memset(buf, 'Z', sizeof buf);
	CHECK_EQ(queue_env_format(&env, buf, (size_t)n + 1), n);
	CHECK_EQ(buf[n], '\0');
	CHECK_EQ(buf[n + 1], 'Z');
	memset(buf, 'Z', sizeof buf);
	CHECK_EQ(queue_env_format(&env, buf, (size_t)n), -1);
	CHECK_EQ(buf[n], 'Z');
	CHECK_EQ(queue_env_format(&env, buf, 0), -1);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int r = queue_env_parse(&back, bad[i], strlen(bad[i]));

		CHECK_EQ(r, -1);
		if (r != -1)
			fprintf(stderr, "  accepted bad envelope %zu\n", i);
	}
	/* null sender, unknown keys are skipped */
	strcpy(buf, "postern-queue 1\nid 0123456789abcdef\nfrom \nfuture x\nrcpt pending 0 0 c@d\n");
	CHECK_EQ(queue_env_parse(&back, buf, strlen(buf)), 0);
	CHECK_STREQ(back.from, "");
	strcpy(env.rcpt[0].addr, "a b@c");
	CHECK_EQ(queue_env_format(&env, buf, sizeof buf), -1);
}

static void t_recover(void)
{
	struct queue q;
	static struct queue_spool sp;
	static struct queue_env env;
	char path[512];
	int fd;

	CHECK_EQ(queue_open(&q, root), 0);
	/* a complete message */
	CHECK_EQ(queue_spool_open(&q, &sp, time(NULL)), 0);
	CHECK_EQ(queue_spool_write(&sp, "a\r\n", 3), 0);
	CHECK_EQ(queue_spool_finish(&sp), 0);
	sample_env(&env);
	CHECK_EQ(queue_spool_commit(&sp, &env), 0);
	queue_spool_abort(&sp);
	/* a crash while receiving: tmp/ID */
	CHECK_EQ(queue_spool_open(&q, &sp, time(NULL)), 0);
	close(sp.fd);
	/* a crash between rename and envelope: msg/ID without env/ID */
	snprintf(path, sizeof path, "%s/msg/00000001deadbeef", root);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	/* a crash inside fs_write_atomic */
	snprintf(path, sizeof path, "%s/env/.00000001deadbeef.tmp-abc123", root);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	CHECK_EQ(queue_recover(&q, time(NULL), 3600), 0);   /* all too young */
	CHECK_EQ(queue_recover(&q, time(NULL), 0), 3);
	CHECK_EQ(count_dir("tmp"), 0);
	CHECK_EQ(count_dir("msg"), 1);
	CHECK_EQ(count_dir("env"), 1);
	CHECK_EQ(access(path, F_OK), -1);
	CHECK_EQ(queue_remove(&q, env.id), 0);
	queue_close(&q);
}

/* The relay's additions: bounced state, the notified flag, the lock. */
static void t_relay_state_and_lock(void)
{
	struct queue q;
	static struct queue_spool sp;
	static struct queue_env env, back;
	static char text[QUEUE_ENV_MAX];
	int fd, fd2, n;

	CHECK_EQ(queue_open(&q, root), 0);
	CHECK_EQ(queue_spool_open(&q, &sp, 1700000000), 0);
	CHECK_EQ(queue_spool_write(&sp, "x\r\n", 3), 0);
	CHECK_EQ(queue_spool_finish(&sp), 0);
	sample_env(&env);
	env.rcpt[1].state = QUEUE_BOUNCED;
	env.notified = 1;
	CHECK_EQ(queue_spool_commit(&sp, &env), 0);
	queue_spool_abort(&sp);
	n = queue_env_format(&env, text, sizeof text);
	CHECK(n > 0 && strstr(text, "notified 1\n") && strstr(text, "rcpt bounced "));
	CHECK_EQ(queue_env_load(&q, env.id, &back), 0);
	CHECK_EQ(back.notified, 1);
	CHECK_EQ(back.rcpt[1].state, QUEUE_BOUNCED);
	fd = queue_lock(&q, env.id);
	CHECK(fd >= 0);
	fd2 = queue_lock(&q, env.id);   /* a second holder is refused at once */
	CHECK(fd2 < 0 && errno == EWOULDBLOCK);
	close(fd);
	fd2 = queue_lock(&q, env.id);
	CHECK(fd2 >= 0);
	CHECK_EQ(queue_remove(&q, env.id), 0);
	close(fd2);
	CHECK(queue_lock(&q, env.id) < 0 && errno == ENOENT);
	CHECK(queue_lock(&q, "../../etc/passwd") < 0);
	queue_close(&q);
}

/* Queues a one-line message; its id into id. */
static void queue_one(struct queue *q, char id[QUEUE_ID_LEN + 1])
{
	static struct queue_spool sp;
	static struct queue_env env;

	CHECK_EQ(queue_spool_open(q, &sp, time(NULL)), 0);
	CHECK_EQ(queue_spool_write(&sp, "x\r\n", 3), 0);
	CHECK_EQ(queue_spool_finish(&sp), 0);
	sample_env(&env);
	CHECK_EQ(queue_spool_commit(&sp, &env), 0);
	queue_spool_abort(&sp);
	memcpy(id, env.id, QUEUE_ID_LEN + 1);
}

/* Batched removal: the envelope goes at once (not queued, not lockable),
 * the text at the commit; a full batch commits itself. */
static void t_batch_remove(void)
{
	struct queue q;
	static struct queue_batch b;
	static struct queue_env env;
	static char ids[QUEUE_BATCH_MAX + 3][QUEUE_ID_LEN + 1];
	char list[4096] = "";
	int n = QUEUE_BATCH_MAX + 3;

	CHECK_EQ(queue_open(&q, root), 0);
	for (int i = 0; i < n; i++)
		queue_one(&q, ids[i]);
	CHECK_EQ(count_dir("env"), n);
	CHECK_EQ(queue_batch_remove(&q, &b, ids[0]), 0);
	CHECK_EQ(b.n, 1);
	CHECK_EQ(count_dir("env"), n - 1);
	CHECK_EQ(count_dir("msg"), n);            /* the text stays until the commit */
	CHECK_EQ(queue_env_load(&q, ids[0], &env), -1);
	CHECK(queue_lock(&q, ids[0]) < 0 && errno == ENOENT);
	CHECK_EQ(queue_batch_commit(&q, &b), 0);
	CHECK_EQ(b.n, 0);
	CHECK_EQ(count_dir("msg"), n - 1);
	CHECK_EQ(queue_batch_commit(&q, &b), 0);  /* empty: nothing to do */
	for (int i = 1; i <= QUEUE_BATCH_MAX + 1; i++)
		CHECK_EQ(queue_batch_remove(&q, &b, ids[i]), 0);
	CHECK_EQ(b.n, 1);                          /* the full batch was committed */
	CHECK_EQ(count_dir("msg"), n - 1 - QUEUE_BATCH_MAX);
	CHECK_EQ(count_dir("env"), 1);
	CHECK_EQ(queue_batch_remove(&q, &b, "../../etc/passwd"), -1);
	CHECK_EQ(b.n, 1);
	/* an envelope already gone (postern queue delete raced): no error */
	CHECK_EQ(queue_remove(&q, ids[n - 1]), 0);
	CHECK_EQ(queue_batch_remove(&q, &b, ids[n - 1]), 0);
	CHECK_EQ(queue_batch_commit(&q, &b), 0);
	CHECK_EQ(count_dir("msg"), 0);
	CHECK_EQ(count_dir("env"), 0);
	CHECK_EQ(queue_list(&q, collect, list), 0);
	CHECK_STREQ(list, "");
	queue_close(&q);
}

int main(void)
{
	const char *t = getenv("TMPDIR");

	snprintf(root, sizeof root, "%s/queue-%d", t ? t : "/tmp", (int)getpid());
	RUN(t_spool_commit_list_remove);
	RUN(t_abort);
	RUN(t_env_text);
	RUN(t_recover);
	RUN(t_relay_state_and_lock);
	RUN(t_batch_remove);
	return check_done();
}
