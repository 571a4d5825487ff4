/*
 * throttle.c - failed-login throttling in one flock()ed state file.
 *
 * The file: a 16-byte header ("PTHROT1\n", record count as uint32, 4 zero
 * bytes) and fixed-size records in host byte order (the file lives in
 * /run and never leaves the machine). A file with a bad header or size is
 * treated as empty: throttling state is soft and rebuilt by new failures.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bearssl.h>

#include "throttle.h"

#define THROTTLE_MAGIC "PTHROT1\n"
#define THROTTLE_HEADER 16
#define THROTTLE_KEY_INPUT_MAX 512   /* bytes of user and address hashed */

struct throttle_rec {
	unsigned char key[32];   /* SHA-256(lower(user) NUL addr) */
	uint32_t fails;
	uint32_t zero;
	int64_t last;            /* time of the last failure */
};

struct throttle_table {
	struct throttle_rec r[THROTTLE_ENTRIES_MAX];
	size_t n;
};

enum throttle_op { OP_CHECK, OP_FAIL, OP_SUCCESS, OP_COUNT };

long throttle_delay(unsigned long fails)
{
	unsigned long k;

	if (fails <= THROTTLE_FREE_FAILS)
		return 0;
	k = fails - THROTTLE_FREE_FAILS - 1;
	if (k >= 20)
		return THROTTLE_DELAY_MAX;
	return (1L << k) < THROTTLE_DELAY_MAX ? (1L << k) : THROTTLE_DELAY_MAX;
}

static void make_key(const char *user, const char *addr, unsigned char key[32])
{
	br_sha256_context c;
	unsigned char lc[THROTTLE_KEY_INPUT_MAX];
	size_t n = strnlen(user, sizeof lc);

	for (size_t i = 0; i < n; i++)
		lc[i] = (unsigned char)tolower((unsigned char)user[i]);
	br_sha256_init(&c);
	br_sha256_update(&c, lc, n);
	br_sha256_update(&c, "", 1);
	br_sha256_update(&c, addr, strnlen(addr, THROTTLE_KEY_INPUT_MAX));
	br_sha256_out(&c, key);
}

/* ---- the in-memory table (no I/O) -------------------------------------- */

static void drop_expired(struct throttle_table *t, time_t now)
{
	size_t w = 0;

	for (size_t i = 0; i < t->n; i++)
		if (t->r[i].last + THROTTLE_EXPIRE > (int64_t)now && t->r[i].last <= (int64_t)now + THROTTLE_EXPIRE)
			t->r[w++] = t->r[i];
	t->n = w;
}

static struct throttle_rec *lookup(struct throttle_table *t, const unsigned char key[32])
{
	for (size_t i = 0; i < t->n; i++)
		if (memcmp(t->r[i].key, key, 32) == 0)
			return &t->r[i];
	return NULL;
}

/* A free record: appended, or the oldest one reused when full. */
static struct throttle_rec *make_room(struct throttle_table *t)
{
	size_t oldest = 0;

	if (t->n < THROTTLE_ENTRIES_MAX)
		return &t->r[t->n++];
	for (size_t i = 1; i < t->n; i++)
		if (t->r[i].last < t->r[oldest].last)
			oldest = i;
	return &t->r[oldest];
}

static long wait_for(const struct throttle_rec *r, time_t now)
{
	int64_t until;

	if (!r)
		return 0;
	until = r->last + throttle_delay(r->fails);
	return until > (int64_t)now ? (long)(until - (int64_t)now) : 0;
}

/* Apply one operation. Returns its result; *dirty when the table changed. */
static long apply(struct throttle_table *t, enum throttle_op op,
		  const unsigned char key[32], time_t now, int *dirty)
{
	struct throttle_rec *r;
	size_t before = t->n;

	drop_expired(t, now);
	*dirty = t->n != before;
	r = lookup(t, key);
	switch (op) {
	case OP_CHECK:
		return wait_for(r, now);
	case OP_COUNT:
		return r ? (long)r->fails : 0;
	case OP_SUCCESS:
		if (r) {
			*r = t->r[--t->n];
			*dirty = 1;
		}
		return 0;
	case OP_FAIL:
		if (!r) {
			r = make_room(t);
			memset(r, 0, sizeof *r);
			memcpy(r->key, key, 32);
		}
		if (r->fails < UINT32_MAX)
			r->fails++;
		r->last = now;
		*dirty = 1;
		return wait_for(r, now);
	}
	return -1;
}

/* ---- the file ----------------------------------------------------------- */

static int read_all(int fd, void *buf, size_t n, size_t *got)
{
	unsigned char *p = buf;

	*got = 0;
	while (*got < n) {
		ssize_t r = pread(fd, p + *got, n - *got, (off_t)*got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		*got += (size_t)r;
	}
	return 0;
}

static int load(int fd, struct throttle_table *t)
{
	unsigned char hdr[THROTTLE_HEADER];
	uint32_t count;
	size_t got;

	t->n = 0;
	if (read_all(fd, hdr, sizeof hdr, &got) < 0)
		return -1;
	if (got < sizeof hdr || memcmp(hdr, THROTTLE_MAGIC, 8) != 0)
		return 0;
	memcpy(&count, hdr + 8, 4);
	if (count > THROTTLE_ENTRIES_MAX)
		return 0;
	{
		size_t want = count * sizeof t->r[0];
		unsigned char *p = (unsigned char *)t->r;
		ssize_t r;

		got = 0;
		while (got < want) {
			r = pread(fd, p + got, want - got, (off_t)(THROTTLE_HEADER + got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		if (got != want)
			return 0;
	}
	t->n = count;
	return 0;
}

static int store(int fd, const struct throttle_table *t)
{
	unsigned char hdr[THROTTLE_HEADER] = THROTTLE_MAGIC;
	uint32_t count = (uint32_t)t->n;
	size_t len = t->n * sizeof t->r[0];
	const unsigned char *p = (const unsigned char *)t->r;
	size_t done = 0;

	memcpy(hdr + 8, &count, 4);
	if (pwrite(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
		return -1;
	while (done < len) {
		ssize_t w = pwrite(fd, p + done, len - done, (off_t)(THROTTLE_HEADER + done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return ftruncate(fd, (off_t)(THROTTLE_HEADER + len));
}

/* Open and lock the file, run `op`, write back if changed, unlock. */
static long run(const char *path, enum throttle_op op, const char *user,
		const char *addr, time_t now)
{
	struct throttle_table *t;
	unsigned char key[32];
	long result = -1;
	int fd, dirty = 0;

	if (!path || !user || !addr)
		return -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	t = malloc(sizeof *t);
	if (t && flock(fd, op == OP_CHECK || op == OP_COUNT ? LOCK_SH : LOCK_EX) == 0 &&
	    load(fd, t) == 0) {
		make_key(user, addr, key);
		result = apply(t, op, key, now, &dirty);
		/* Readers hold a shared lock: they never rewrite the file. */
		if (dirty && op != OP_CHECK && op != OP_COUNT && store(fd, t) < 0)
			result = -1;
	}
	free(t);
	close(fd);   /* releases the lock */
	return result;
}

long throttle_check(const char *path, const char *user, const char *addr, time_t now)
{
	return run(path, OP_CHECK, user, addr, now);
}

long throttle_fail(const char *path, const char *user, const char *addr, time_t now)
{
	return run(path, OP_FAIL, user, addr, now);
}

int throttle_success(const char *path, const char *user, const char *addr, time_t now)
{
	return run(path, OP_SUCCESS, user, addr, now) < 0 ? -1 : 0;
}

long throttle_failures(const char *path, const char *user, const char *addr, time_t now)
{
	return run(path, OP_COUNT, user, addr, now);
}
