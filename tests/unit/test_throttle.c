/* test_throttle.c - login throttling: growing delays, per-address keys,
 * expiry, success clears, bounded file, locking across processes. */
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "throttle.h"

static char path[512];

static void fresh(const char *name)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(path, sizeof path, "%s/%s", tmp ? tmp : "/tmp", name);
	unlink(path);
}

static void t_delay_table(void)
{
	CHECK_EQ(throttle_delay(0), 0);
	CHECK_EQ(throttle_delay(3), 0);
	CHECK_EQ(throttle_delay(4), 1);
	CHECK_EQ(throttle_delay(5), 2);
	CHECK_EQ(throttle_delay(6), 4);
	CHECK_EQ(throttle_delay(12), 256);
	CHECK_EQ(throttle_delay(13), 300);
	CHECK_EQ(throttle_delay(1000000), 300);
}

static void t_growing(void)
{
	time_t now = 1000000;

	fresh("throttle.grow");
	CHECK_EQ(throttle_check(path, "alice", "10.0.0.9", now), 0);
	CHECK_EQ(throttle_fail(path, "alice", "10.0.0.9", now), 0);
	CHECK_EQ(throttle_fail(path, "alice", "10.0.0.9", now), 0);
	CHECK_EQ(throttle_fail(path, "alice", "10.0.0.9", now), 0);
	CHECK_EQ(throttle_check(path, "alice", "10.0.0.9", now), 0);
	CHECK_EQ(throttle_fail(path, "alice", "10.0.0.9", now), 1);
	CHECK_EQ(throttle_check(path, "alice", "10.0.0.9", now), 1);
	CHECK_EQ(throttle_check(path, "alice", "10.0.0.9", now + 1), 0);
	CHECK_EQ(throttle_fail(path, "alice", "10.0.0.9", now + 1), 2);
	CHECK_EQ(throttle_fail(path, "ALICE", "10.0.0.9", now + 3), 4);   /* case-insensitive */
	CHECK_EQ(throttle_check(path, "alice", "10.0.0.9", now + 5), 2);
	CHECK_EQ(throttle_failures(path, "alice", "10.0.0.9", now + 5), 6);
	for (int i = 0; i < 20; i++)
		throttle_fail(path, "alice", "10.0.0.9", now + 10);
	CHECK_EQ(throttle_check(path, "alice", "10.0.0.9", now + 10), THROTTLE_DELAY_MAX);
	/* Success clears the record. */
	CHECK_EQ(throttle_success(path, "alice", "10.0.0.9", now + 10), 0);
	CHECK_EQ(throttle_check(path, "alice", "10.0.0.9", now + 10), 0);
	CHECK_EQ(throttle_failures(path, "alice", "10.0.0.9", now + 10), 0);
}

static void t_keyed_per_address(void)
{
	time_t now = 2000000;

	fresh("throttle.addr");
	for (int i = 0; i < 10; i++)
		throttle_fail(path, "bob", "203.0.113.7", now);
	CHECK(throttle_check(path, "bob", "203.0.113.7", now) > 0);
	/* The same user from another address, another user from the same one. */
	CHECK_EQ(throttle_check(path, "bob", "10.0.0.20", now), 0);
	CHECK_EQ(throttle_check(path, "carol", "203.0.113.7", now), 0);
	/* No ambiguity in the pair encoding. */
	CHECK_EQ(throttle_check(path, "bob2", "03.0.113.7", now), 0);
}

static void t_expiry(void)
{
	time_t now = 3000000;

	fresh("throttle.expire");
	for (int i = 0; i < 8; i++)
		throttle_fail(path, "dave", "10.1.1.1", now);
	CHECK(throttle_check(path, "dave", "10.1.1.1", now) > 0);
	CHECK_EQ(throttle_failures(path, "dave", "10.1.1.1", now + THROTTLE_EXPIRE - 1), 8);
	CHECK_EQ(throttle_failures(path, "dave", "10.1.1.1", now + THROTTLE_EXPIRE), 0);
	/* After expiry the free failures start over. */
	CHECK_EQ(throttle_fail(path, "dave", "10.1.1.1", now + THROTTLE_EXPIRE), 0);
}

static void t_bounded(void)
{
	time_t now = 4000000;
	char addr[32];
	struct stat st;

	fresh("throttle.full");
	for (int i = 0; i < 5; i++)
		throttle_fail(path, "victim", "192.0.2.1", now);
	for (int i = 0; i < THROTTLE_ENTRIES_MAX + 100; i++) {
		snprintf(addr, sizeof addr, "198.51.%d.%d", i / 256, i % 256);
		throttle_fail(path, "spray", addr, now + 1 + i / 1000);
	}
	CHECK_EQ(stat(path, &st), 0);
	CHECK(st.st_size <= 16 + THROTTLE_ENTRIES_MAX * 48);
	/* The oldest record was evicted; a recent one is still there. */
	CHECK_EQ(throttle_failures(path, "victim", "192.0.2.1", now + 10), 0);
	CHECK_EQ(throttle_failures(path, "spray", "198.51.16.99", now + 10), 1);
}

static void t_garbage_file(void)
{
	FILE *f;

	fresh("throttle.garbage");
	f = fopen(path, "w");
	fputs("not a throttle file at all\n", f);
	fclose(f);
	CHECK_EQ(throttle_check(path, "x", "1.2.3.4", 5000000), 0);
	CHECK_EQ(throttle_fail(path, "x", "1.2.3.4", 5000000), 0);
	CHECK_EQ(throttle_failures(path, "x", "1.2.3.4", 5000000), 1);
	CHECK_EQ(throttle_check("/nonexistent-dir/t", "x", "1.2.3.4", 1), -1);
}

/* Two processes hammer the same pair; the lock loses no update. */
static void t_two_processes(void)
{
	time_t now = 6000000;
	int per = 400, status;
	pid_t pid;

	int go[2];
	char c;

	fresh("throttle.fork");
	CHECK_EQ(pipe(go), 0);
	pid = fork();
	if (pid == 0) {
		close(go[1]);
		if (read(go[0], &c, 1) != 0)   /* start together: wait for EOF */
			_exit(1);
		for (int i = 0; i < per; i++)
			throttle_fail(path, "eve", "10.9.9.9", now);
		_exit(0);
	}
	close(go[0]);
	close(go[1]);
	for (int i = 0; i < per; i++)
		throttle_fail(path, "eve", "10.9.9.9", now);
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ(throttle_failures(path, "eve", "10.9.9.9", now), 2 * per);
}

int main(void)
{
	RUN(t_delay_table);
	RUN(t_growing);
	RUN(t_keyed_per_address);
	RUN(t_expiry);
	RUN(t_bounded);
	RUN(t_garbage_file);
	RUN(t_two_processes);
	return check_done();
}
