/*
 * test_uidl.c - the per-account UIDL store: record, reload, torn appends,
 * locking, pruning, keys.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"
#include "uidl.h"

static char root[256];

static void setup(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(root, sizeof root, "%s/uidl-%d", t ? t : "/tmp", (int)getpid());
}

static void t_record_reload(void)
{
	struct uidl_store s;
	char err[256];
	CHECK_EQ(uidl_open(&s, root, "acme", err, sizeof err), 0);
	CHECK_EQ(s.n, 0);
	CHECK_EQ(uidl_record(&s, "uid-1", err, sizeof err), 0);
	CHECK_EQ(uidl_record(&s, "uid-2", err, sizeof err), 0);
	CHECK_EQ(uidl_record(&s, "uid-1", err, sizeof err), 0);	/* no-op */
	CHECK_EQ(uidl_record(&s, "bad uid", err, sizeof err), -1);
	CHECK_EQ(uidl_record(&s, "", err, sizeof err), -1);
	CHECK(uidl_has(&s, "uid-1") && uidl_has(&s, "uid-2") && !uidl_has(&s, "uid-3"));
	uidl_close(&s);
	CHECK_EQ(uidl_open(&s, root, "acme", err, sizeof err), 0);
	CHECK_EQ(s.n, 2);
	CHECK(uidl_has(&s, "uid-1") && uidl_has(&s, "uid-2"));
	uidl_close(&s);
	char p[512], buf[256];
	snprintf(p, sizeof p, "%s/acme/uidls", root);
	CHECK_EQ(fs_read_file(p, buf, sizeof buf - 1), 27);
	CHECK_STREQ(buf, "postern-uidl 1\nuid-1\nuid-2\n");
	CHECK_EQ(uidl_open(&s, root, "../x", err, sizeof err), -1);
}

/* A batch: one append, repeats and ids recorded before written once. */
static void t_record_many(void)
{
	struct uidl_store s;
	char err[256], p[512], buf[256];
	const char *ids[] = { "b-1", "b-2", "b-1", "b-3" }, *bad[] = { "b-4", "no good" };
	CHECK_EQ(uidl_open(&s, root, "batch", err, sizeof err), 0);
	CHECK_EQ(uidl_record(&s, "b-2", err, sizeof err), 0);
	CHECK_EQ(uidl_record_many(&s, ids, 4, err, sizeof err), 0);
	CHECK_EQ(uidl_record_many(&s, bad, 2, err, sizeof err), -1);
	CHECK(!uidl_has(&s, "b-4"));
	CHECK_EQ(s.n, 3);
	uidl_close(&s);
	snprintf(p, sizeof p, "%s/batch/uidls", root);
	CHECK(fs_read_file(p, buf, sizeof buf - 1) > 0);
	CHECK_STREQ(buf, "postern-uidl 1\nb-2\nb-1\nb-3\n");
	CHECK_EQ(uidl_open(&s, root, "batch", err, sizeof err), 0);
	CHECK(uidl_has(&s, "b-1") && uidl_has(&s, "b-3") && s.n == 3);
	uidl_close(&s);
}

static void t_torn(void)
{
	char p[512], buf[256], err[256];
	snprintf(p, sizeof p, "%s/torn/uidls", root);
	struct uidl_store s;
	CHECK_EQ(uidl_open(&s, root, "torn", err, sizeof err), 0);
	uidl_close(&s);
	/* A crash during an append left half a line. */
	const char *text = "postern-uidl 1\nA1\nA2\nA3-half";
	CHECK_EQ(fs_write_atomic(p, text, strlen(text), 0600), 0);
	CHECK_EQ(uidl_open(&s, root, "torn", err, sizeof err), 0);
	CHECK_EQ(s.n, 2);
	CHECK(!uidl_has(&s, "A3-half"));
	CHECK_EQ(uidl_record(&s, "A3", err, sizeof err), 0);
	uidl_close(&s);
	CHECK(fs_read_file(p, buf, sizeof buf - 1) > 0);
	CHECK_STREQ(buf, "postern-uidl 1\nA1\nA2\nA3\n");
	/* A torn header (crash while creating). */
	CHECK_EQ(fs_write_atomic(p, "postern-u", 9, 0600), 0);
	CHECK_EQ(uidl_open(&s, root, "torn", err, sizeof err), 0);
	CHECK_EQ(s.n, 0);
	uidl_close(&s);
	/* Not a store, or a corrupt line: refused (the account is not fetched). */
	CHECK_EQ(fs_write_atomic(p, "garbage\n", 8, 0600), 0);
	CHECK_EQ(uidl_open(&s, root, "torn", err, sizeof err), -1);
	CHECK(strstr(err, "bad header") != NULL);
	CHECK_EQ(fs_write_atomic(p, "postern-uidl 1\nok\nb a d\n", 24, 0600), 0);
	CHECK_EQ(uidl_open(&s, root, "torn", err, sizeof err), -1);
	CHECK(strstr(err, ":3:") != NULL);
}

static void t_lock(void)
{
	struct uidl_store a, b;
	char err[256];
	CHECK_EQ(uidl_open(&a, root, "locked", err, sizeof err), 0);
	/* flock locks belong to the open file description: a second open in
	 * the same process conflicts too, as another process would. */
	CHECK_EQ(uidl_open(&b, root, "locked", err, sizeof err), 1);
	uidl_close(&a);
	CHECK_EQ(uidl_open(&b, root, "locked", err, sizeof err), 0);
	uidl_close(&b);
}

static int keep_even(void *arg, const char *id)
{
	(void)arg;
	return (id[strlen(id) - 1] - '0') % 2 == 0;
}

static void t_prune(void)
{
	struct uidl_store s;
	char err[256], id[32];
	CHECK_EQ(uidl_open(&s, root, "prune", err, sizeof err), 0);
	for (int i = 0; i < 3000; i++) {
		snprintf(id, sizeof id, "msg%d", i);
		CHECK_EQ(uidl_record(&s, id, err, sizeof err), 0);
	}
	char guard[80] = "m:";
	memset(guard + 2, 'a', 64);
	guard[66] = '\0';
	CHECK(uidl_is_guard(guard));
	CHECK(!uidl_is_guard("m:abc"));
	CHECK_EQ(uidl_record(&s, guard, err, sizeof err), 0);
	CHECK_EQ(uidl_prune(&s, keep_even, NULL, err, sizeof err), 1500);
	CHECK_EQ(s.n, 1501);
	CHECK(uidl_has(&s, "msg2") && !uidl_has(&s, "msg3") && uidl_has(&s, guard));
	CHECK_EQ(uidl_record(&s, "after", err, sizeof err), 0);
	uidl_close(&s);
	CHECK_EQ(uidl_open(&s, root, "prune", err, sizeof err), 0);
	CHECK_EQ(s.n, 1502);
	CHECK(uidl_has(&s, "msg2998") && uidl_has(&s, "after") && !uidl_has(&s, "msg1"));
	uidl_close(&s);
}

static void t_key(void)
{
	char k[UIDL_KEY_MAX];
	CHECK_EQ(uidl_key("acme", "uid-1", k, sizeof k), 0);
	CHECK_STREQ(k, "acme\nuid-1");
	CHECK_EQ(uidl_key("acme", "uid-1", k, 5), -1);
}

int main(void)
{
	setup();
	RUN(t_record_reload);
	RUN(t_record_many);
	RUN(t_torn);
	RUN(t_lock);
	RUN(t_prune);
	RUN(t_key);
	return check_done();
}
