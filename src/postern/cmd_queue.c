/*
 * cmd_queue.c - `postern queue [list] | show ID | flush | delete ID`: the
 * outbound queue (docs/QUEUE.md).
 *
 *   list   one line per message: id, age, size, sender, then one indented
 *          line per recipient: state, attempts, next attempt, address,
 *          last reply
 *   show   the envelope record of ID as stored
 *   flush  asks relayd to try every queued message now: creates the file
 *          QUEUE/flush, which relayd notices (inotify) and removes; a
 *          relayd that is not running finds it when it starts
 *   delete removes message ID without a bounce; refused while relayd is
 *          sending it (the relay's lock, queue_lock): try again
 *
 * The queue directory is $POSTERN_QUEUE, else /data/queue. Exit status:
 * 0, 1 usage, 111 the queue cannot be read.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmds.h"
#include "queue.h"

#define QUEUE_DEFAULT_DIR "/data/queue"

static const char queue_usage[] = "usage: postern queue [list] | show ID | flush | delete ID\n";

struct list_state {
	struct queue *q;
	struct queue_env env;
	time_t now;
	int count;
};

static const char *const state_word[QUEUE_STATES] = { "pending", "sent", "failed", "bounced" };

static int print_one(const char *id, void *arg)
{
	struct list_state *st = arg;
	struct queue_env *e = &st->env;

	if (queue_env_load(st->q, id, e) < 0) {
		printf("%s  (unreadable envelope: %s)\n", id, strerror(errno));
		return 0;
	}
	st->count++;
	printf("%s  %6llds ago  %10llu bytes  <%s>  user=%s\n", e->id,
	       (long long)(st->now - e->created), (unsigned long long)e->size, e->from,
	       e->user[0] ? e->user : "-");
	for (int i = 0; i < e->nrcpt; i++) {
		const struct queue_rcpt *r = &e->rcpt[i];

		printf("    %-7s %3u tries  next in %6llds  <%s>%s%s\n", state_word[r->state],
		       r->attempts, (long long)(r->next_attempt - st->now), r->addr,
		       r->reply[0] ? "  " : "", r->reply);
	}
	return 0;
}

static int flush(const char *dir)
{
	char path[QUEUE_DIR_MAX + 16];
	int fd;

	snprintf(path, sizeof path, "%s/flush", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0660);
	if (fd < 0) {
		fprintf(stderr, "postern queue flush: %s: %s\n", path, strerror(errno));
		return 111;
	}
	close(fd);
	printf("flush requested: relayd retries every queued message now\n");
	return 0;
}

static int delete(struct queue *q, const char *id)
{
	int fd = queue_id_valid(id) ? queue_lock(q, id) : -1;

	if (fd < 0) {
		fprintf(stderr, "postern queue delete: %s: %s\n", id,
			errno == EWOULDBLOCK ? "being relayed right now, try again" : "not queued");
		return errno == EWOULDBLOCK ? 111 : 1;
	}
	if (queue_remove(q, id) < 0) {
		fprintf(stderr, "postern queue delete: %s: %s\n", id, strerror(errno));
		close(fd);
		return 111;
	}
	close(fd);
	printf("%s deleted\n", id);
	return 0;
}

/* 1 when argv is a valid command line. */
static int args_ok(int argc, char **argv)
{
	if (argc == 1)
		return 1;
	if (strcmp(argv[1], "list") == 0 || strcmp(argv[1], "flush") == 0)
		return argc == 2;
	if (strcmp(argv[1], "show") == 0 || strcmp(argv[1], "delete") == 0)
		return argc == 3;
	return 0;
}

int cmd_queue(int argc, char **argv)
{
	static struct list_state st;
	const char *dir = getenv("POSTERN_QUEUE");
	struct queue q;
	struct stat sb;
	int r;

	if (!dir || !*dir)
		dir = QUEUE_DEFAULT_DIR;
	if (!args_ok(argc, argv)) {
		fputs(queue_usage, stderr);
		return 1;
	}
	if (argc == 2 && strcmp(argv[1], "flush") == 0)
		return flush(dir);
	if (stat(dir, &sb) < 0 && errno == ENOENT) {
		printf("queue is empty\n");
		return 0;
	}
	if (queue_open(&q, dir) < 0) {
		fprintf(stderr, "postern queue: %s: %s\n", dir, strerror(errno));
		return 111;
	}
	st.q = &q;
	st.now = time(NULL);
	st.count = 0;
	if (argc == 3 && strcmp(argv[1], "delete") == 0) {
		r = delete(&q, argv[2]);
		queue_close(&q);
		return r;
	}
	if (argc == 3) {
		char buf[QUEUE_ENV_MAX];
		int n;

		if (!queue_id_valid(argv[2]) || queue_env_load(&q, argv[2], &st.env) < 0 ||
		    (n = queue_env_format(&st.env, buf, sizeof buf)) < 0) {
			fprintf(stderr, "postern queue: %s: not queued\n", argv[2]);
			queue_close(&q);
			return 1;
		}
		fwrite(buf, 1, (size_t)n, stdout);
		queue_close(&q);
		return 0;
	}
	r = queue_list(&q, print_one, &st);
	queue_close(&q);
	if (r < 0) {
		fprintf(stderr, "postern queue: %s: %s\n", dir, strerror(errno));
		return 111;
	}
	if (st.count == 0)
		printf("queue is empty\n");
	return 0;
}
