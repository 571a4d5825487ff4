/* test_imap_index.c - stable UIDs: restarts, new mail, expunge, flag
 * renames, damaged and lost index files. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"
#include "imap-index.h"
#include "maildir.h"

static char root[512];

static void setup(const char *name)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(root, sizeof root, "%s/imapidx-%s-%d", tmp ? tmp : "/tmp", name, (int)getpid());
	CHECK_EQ(maildir_create(root), 0);
}

static void deliver(int n)
{
	const char *dirs[1] = { root };
	char err[128], msg[64];

	for (int i = 0; i < n; i++) {
		int len = snprintf(msg, sizeof msg, "Subject: %d\r\n\r\nbody\r\n", i);

		CHECK_EQ(maildir_deliver_buf(dirs, 1, msg, (size_t)len, NULL, err, sizeof err), 1);
	}
}

/* A fresh view of the mailbox, as a restarted daemon has. */
static void fresh_sync(struct imap_index *ix)
{
	char err[256];

	CHECK_EQ(imap_index_open(ix, root), 0);
	CHECK_EQ(imap_index_sync(ix, err, sizeof err), 0);
}

static void t_stable_across_restart(void)
{
	struct imap_index a, b;

	setup("restart");
	deliver(5);
	fresh_sync(&a);
	CHECK_EQ(a.n, 5);
	CHECK_EQ(a.uidnext, 6);
	CHECK(a.uidvalidity > 0);
	for (size_t i = 0; i < a.n; i++)
		CHECK_EQ(a.m[i].uid, i + 1);
	fresh_sync(&b);
	CHECK_EQ(b.uidvalidity, a.uidvalidity);
	CHECK_EQ(b.n, 5);
	for (size_t i = 0; i < b.n; i++) {
		CHECK_EQ(b.m[i].uid, a.m[i].uid);
		CHECK_STREQ(b.m[i].name, a.m[i].name);
	}
	CHECK(!b.repaired);
	imap_index_free(&a);
	imap_index_free(&b);
}

static void t_new_flags_expunge(void)
{
	struct imap_index a, b;
	char err[256], newname[300], path[1024];

	setup("changes");
	deliver(3);
	fresh_sync(&a);
	fresh_sync(&b);
	/* flags: a rename to cur/ keeps the UID */
	CHECK_EQ(maildir_set_flags(root, a.m[1].name, "FS", newname, sizeof newname), 0);
	/* expunge the first, deliver two more */
	CHECK_EQ(imap_index_path(&a, 0, path, sizeof path), 0);
	CHECK_EQ(unlink(path), 0);
	deliver(2);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK_EQ(a.n, 4);
	CHECK_EQ(a.m[0].uid, 2);
	CHECK_STREQ(a.m[0].flags, "FS");
	CHECK_EQ(a.m[0].in_new, 0);
	CHECK_EQ(a.m[1].uid, 3);
	CHECK_EQ(a.m[2].uid, 4);
	CHECK_EQ(a.m[3].uid, 5);
	CHECK_EQ(a.uidnext, 6);
	/* the other connection sees the same */
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	CHECK_EQ(b.n, 4);
	for (size_t i = 0; i < 4; i++)
		CHECK_EQ(b.m[i].uid, a.m[i].uid);
	/* expunging the highest UID never lets it be given again */
	CHECK_EQ(imap_index_path(&a, 3, path, sizeof path), 0);
	CHECK_EQ(unlink(path), 0);
	deliver(1);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK_EQ(a.m[a.n - 1].uid, 6);
	CHECK_EQ(imap_index_find(&a, 6), (long)a.n - 1);
	CHECK_EQ(imap_index_find(&a, 5), -1);
	imap_index_free(&a);
	imap_index_free(&b);
}

static void write_index(const char *text)
{
	char path[600];

	snprintf(path, sizeof path, "%s/" IMAP_INDEX_FILE, root);
	CHECK_EQ(fs_write_atomic(path, text, strlen(text), 0600), 0);
}

static char *read_index(void)
{
	static char buf[65536];
	char path[600];

	snprintf(path, sizeof path, "%s/" IMAP_INDEX_FILE, root);
	CHECK(fs_read_file(path, buf, sizeof buf - 1) >= 0);
	return buf;
}

static void t_damaged_lines(void)
{
	struct imap_index a, b;
	char text[8192], base[300];
	size_t len = 0;

	setup("damage");
	deliver(4);
	fresh_sync(&a);
	/* a garbled second entry, the trailer lost, a stale UIDNEXT */
	len += (size_t)snprintf(text + len, sizeof text - len, "postern-uids 1 %u 3\n", a.uidvalidity);
	for (size_t i = 0; i < a.n; i++) {
		snprintf(base, sizeof base, "%.*s", (int)a.m[i].baselen, a.m[i].name);
		len += (size_t)snprintf(text + len, sizeof text - len, i == 1 ? "2 x/y\n" : "%u %s\n",
					a.m[i].uid, base);
	}
	write_index(text);
	fresh_sync(&b);
	CHECK(b.repaired);
	CHECK_EQ(b.uidvalidity, a.uidvalidity);   /* kept */
	CHECK_EQ(b.n, 4);
	CHECK_EQ(b.m[0].uid, 1);
	CHECK_EQ(b.m[1].uid, 3);
	CHECK_EQ(b.m[2].uid, 4);
	CHECK_EQ(b.m[3].uid, 5);   /* lost its line: a new UID, never 2 again */
	CHECK_EQ(b.uidnext, 6);
	CHECK(strstr(read_index(), "\nend ") != NULL);   /* written back whole */
	imap_index_free(&b);
	fresh_sync(&b);
	CHECK(!b.repaired);
	CHECK_EQ(b.m[3].uid, 5);
	imap_index_free(&a);
	imap_index_free(&b);
}

static void t_header_lost(void)
{
	struct imap_index a, b;
	char *text;

	setup("header");
	deliver(3);
	fresh_sync(&a);
	/* only the header is garbled: the trailer still says UIDVALIDITY */
	text = strdup(read_index());
	memcpy(text, "XXXXXXX", 7);
	write_index(text);
	free(text);
	fresh_sync(&b);
	CHECK_EQ(b.uidvalidity, a.uidvalidity);
	for (size_t i = 0; i < 3; i++)
		CHECK_EQ(b.m[i].uid, a.m[i].uid);
	imap_index_free(&b);
	/* everything lost: new UIDVALIDITY, above the old one */
	write_index("garbage\n\x01\x02");
	CHECK_EQ(imap_index_sync(&a, (char[128]){ 0 }, 128), 0);
	CHECK(a.repaired);
	CHECK(a.uidvalidity > b.uidvalidity);
	CHECK_EQ(a.n, 3);
	CHECK_EQ(a.uidnext, 4);
	imap_index_free(&a);
}

static void t_symlinked_index_refused(void)
{
	struct imap_index a;
	char path[600], err[256];

	setup("symlink");
	deliver(1);
	snprintf(path, sizeof path, "%s/" IMAP_INDEX_LOCK, root);
	CHECK_EQ(symlink("/etc/passwd", path), 0);
	CHECK_EQ(imap_index_open(&a, root), 0);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), -1);   /* O_NOFOLLOW */
	CHECK(strstr(err, IMAP_INDEX_LOCK) != NULL);
	imap_index_free(&a);
}

static void t_many(void)
{
	struct imap_index a;
	char err[256];

	setup("many");
	deliver(500);
	fresh_sync(&a);
	CHECK_EQ(a.n, 500);
	for (size_t i = 0; i < a.n; i++)
		CHECK_EQ(a.m[i].uid, i + 1);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK_EQ(a.n, 500);
	imap_index_free(&a);
}

/* Another process renames a message (new/ -> cur/ with flags): relocate
 * finds it again in place, keeping positions; a deleted one is -1. */
static void t_relocate(void)
{
	struct imap_index a;
	char path[1024], to[1200];

	setup("relocate");
	deliver(3);
	fresh_sync(&a);
	CHECK_EQ(a.m[1].in_new, 1);
	snprintf(path, sizeof path, "%s/new/%s", root, a.m[1].name);
	snprintf(to, sizeof to, "%s/cur/%.*s:2,FS", root, (int)a.m[1].baselen, a.m[1].name);
	CHECK_EQ(rename(path, to), 0);
	CHECK_EQ(imap_index_relocate(&a, 1), 0);
	CHECK_EQ(a.m[1].in_new, 0);
	CHECK_STREQ(a.m[1].flags, "FS");
	CHECK_EQ(a.m[1].uid, 2);
	CHECK_EQ(imap_index_path(&a, 1, path, sizeof path), 0);
	CHECK_EQ(unlink(path), 0);
	CHECK_EQ(imap_index_relocate(&a, 1), -1);
	imap_index_free(&a);
}

/* The settled fast path: an unchanged mailbox is not listed again, and a
 * change (here a new delivery) is seen at the next sync. */
static void t_settled_fast_path(void)
{
	struct imap_index a;
	char err[256], path[1024];
	struct timespec old[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	static const char *const subs[] = { "new", "cur", IMAP_INDEX_FILE };

	setup("settled");
	deliver(2);
	fresh_sync(&a);
	for (int k = 0; k < 3; k++) {   /* as if nothing moved for a long time */
		snprintf(path, sizeof path, "%s/%s", root, subs[k]);
		CHECK_EQ(utimensat(AT_FDCWD, path, old, AT_SYMLINK_NOFOLLOW), 0);
	}
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);   /* full: stamps taken */
	CHECK(a.stamped);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);   /* fast */
	CHECK_EQ(a.n, 2);
	deliver(1);   /* new/ changes: its mtime is now */
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK_EQ(a.n, 3);
	CHECK(!a.stamped);   /* not settled yet: the next sync lists again */
	imap_index_free(&a);
}

/* RFC 7162: every delivery, flag change (by anyone) and expunge raises
 * HIGHESTMODSEQ; a sync that finds nothing new leaves it. */
static void t_modseq(void)
{
	struct imap_index a, b;
	char err[256], newname[300], path[1024];
	uint64_t h0, h1, h2, h3;

	setup("modseq");
	deliver(3);
	fresh_sync(&a);
	h0 = a.highestmodseq;
	CHECK(h0 >= 1);
	for (size_t i = 0; i < a.n; i++)
		CHECK(a.m[i].modseq >= 1 && a.m[i].modseq <= h0);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK_EQ(a.highestmodseq, h0);   /* nothing changed */
	/* another process changes flags: the next sync notices */
	CHECK_EQ(maildir_set_flags(root, a.m[1].name, "S", newname, sizeof newname), 0);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	h1 = a.highestmodseq;
	CHECK(h1 > h0);
	/* from the clock: above anything given before a crash lost the index */
	CHECK(h1 >= (uint64_t)(time(NULL) - 60) * 1000000u);
	CHECK_EQ(a.m[1].modseq, h1);
	CHECK(a.m[0].modseq <= h0 && a.m[2].modseq <= h0);
	/* a delivery */
	deliver(1);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	h2 = a.highestmodseq;
	CHECK(h2 > h1);
	CHECK_EQ(a.m[3].modseq, h2);
	CHECK_EQ(a.m[1].modseq, h1);
	/* an expunge */
	CHECK_EQ(imap_index_path(&a, 0, path, sizeof path), 0);
	CHECK_EQ(unlink(path), 0);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	h3 = a.highestmodseq;
	CHECK(h3 > h2);
	/* kept across restarts */
	fresh_sync(&b);
	CHECK_EQ(b.highestmodseq, h3);
	CHECK_EQ(b.n, a.n);
	for (size_t i = 0; i < b.n; i++)
		CHECK_EQ(b.m[i].modseq, a.m[i].modseq);
	imap_index_free(&a);
	imap_index_free(&b);
}

/* A version 1 index is upgraded: same UIDVALIDITY and UIDs, modseqs
 * start, the file is rewritten as version 2. */
static void t_upgrade_v1(void)
{
	struct imap_index a;
	char text[8192], base[300];
	size_t len = 0;

	setup("upgrade");
	deliver(3);
	/* the UIDs an old imapd gave: 7, 9, 12 */
	struct imap_index tmp;
	fresh_sync(&tmp);
	len += (size_t)snprintf(text + len, sizeof text - len, "postern-uids 1 4242 20\n");
	for (size_t i = 0; i < tmp.n; i++) {
		snprintf(base, sizeof base, "%.*s", (int)tmp.m[i].baselen, tmp.m[i].name);
		len += (size_t)snprintf(text + len, sizeof text - len, "%u %s\n",
					i == 0 ? 7 : i == 1 ? 9 : 12, base);
	}
	len += (size_t)snprintf(text + len, sizeof text - len, "end 4242 20\n");
	imap_index_free(&tmp);
	write_index(text);
	fresh_sync(&a);
	CHECK_EQ(a.uidvalidity, 4242);
	CHECK_EQ(a.uidnext, 20);
	CHECK(!a.repaired);
	CHECK_EQ(a.n, 3);
	CHECK_EQ(a.m[0].uid, 7);
	CHECK_EQ(a.m[1].uid, 9);
	CHECK_EQ(a.m[2].uid, 12);
	for (size_t i = 0; i < a.n; i++)
		CHECK_EQ(a.m[i].modseq, 1);
	CHECK(strncmp(read_index(), "postern-uids 3 4242 20 ", 23) == 0);
	imap_index_free(&a);
	fresh_sync(&a);   /* and read back as version 2 */
	CHECK_EQ(a.uidvalidity, 4242);
	CHECK_EQ(a.m[2].uid, 12);
	CHECK_EQ(a.m[2].modseq, 1);
	imap_index_free(&a);
}

/* A version this code does not know is never read as one it knows. */
static void t_unknown_version(void)
{
	struct imap_index a;

	setup("version");
	deliver(1);
	write_index("postern-uids 9 4242 20 5 x\n7 1 -S 123.M1P1.host\nend 4242 20 5 x 1\n");
	fresh_sync(&a);
	CHECK(a.repaired);
	CHECK(a.uidvalidity != 4242);
	CHECK_EQ(a.m[0].uid, 1);
	imap_index_free(&a);
	/* version 2 lines under a version 1 header: damage, not a misread */
	setup("mixed");
	deliver(1);
	fresh_sync(&a);
	imap_index_free(&a);
	{
		char text[1024], *line2 = strchr(read_index(), '\n') + 1;

		snprintf(text, sizeof text, "postern-uids 1 4242 20\n%.*send 4242 20\n",
			 (int)(strchr(line2, '\n') + 1 - line2), line2);
		write_index(text);
	}
	fresh_sync(&a);
	CHECK_EQ(a.uidvalidity, 4242);
	CHECK(a.repaired);
	CHECK_EQ(a.m[0].uid, 20);   /* its line unreadable: a new UID, none reused */
	imap_index_free(&a);
}

/* This process's own changes: one transaction, one new modseq, recorded so
 * the next sync does not count them again; UNCHANGEDSINCE sees renames by
 * others that the file has not recorded yet. */
static void t_txn(void)
{
	struct imap_index a, b;
	struct imap_index_txn *t;
	char err[256], nn[300];
	uint64_t h0, ms;

	setup("txn");
	deliver(3);
	fresh_sync(&a);
	h0 = a.highestmodseq;
	CHECK((t = imap_index_begin(&a, err, sizeof err)) != NULL);
	CHECK_EQ(imap_index_txn_modseq(t, &a, 0), a.m[0].modseq);
	CHECK_EQ(maildir_set_flags(root, a.m[0].name, "F", nn, sizeof nn), 0);
	free(a.m[0].name);
	a.m[0].name = strdup(nn);
	a.m[0].in_new = 0;
	strcpy(a.m[0].flags, "F");
	imap_index_txn_touch(t, &a, 0);
	ms = a.m[0].modseq;
	CHECK(ms > h0);
	CHECK_EQ(imap_index_txn_modseq(t, &a, 0), ms);
	CHECK_EQ(imap_index_commit(&a, t, err, sizeof err), 0);
	CHECK_EQ(a.highestmodseq, ms);
	fresh_sync(&b);
	CHECK_EQ(b.highestmodseq, ms);   /* not counted twice */
	CHECK_EQ(b.m[0].modseq, ms);
	CHECK_STREQ(b.m[0].flags, "F");
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK_EQ(a.highestmodseq, ms);
	/* b renames message 1; a's transaction must see it as changed */
	CHECK_EQ(maildir_set_flags(root, b.m[1].name, "S", nn, sizeof nn), 0);
	CHECK_EQ(imap_index_relocate(&a, 1), 0);
	CHECK((t = imap_index_begin(&a, err, sizeof err)) != NULL);
	CHECK(imap_index_txn_modseq(t, &a, 1) > ms);
	CHECK_EQ(imap_index_commit(&a, t, err, sizeof err), 0);
	imap_index_free(&a);
	imap_index_free(&b);
}

/* APPEND's shortcut: the next UID and a new modseq without a listing; a
 * later sync agrees; a name already indexed keeps its UID. */
static void t_add(void)
{
	struct imap_index a, b;
	char path[1024], name[] = "1800000000.M1P1Q1.test,S=5:2,S";
	uint32_t uid = 0, v = 0, uid2 = 0;
	int fd;

	setup("add");
	deliver(2);
	fresh_sync(&a);
	snprintf(path, sizeof path, "%s/cur/%s", root, name);
	CHECK((fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600)) >= 0);
	CHECK_EQ(write(fd, "x\r\n\r\n", 5), 5);
	close(fd);
	CHECK_EQ(imap_index_add(root, name, &uid, &v), 0);
	CHECK_EQ(uid, 3);
	CHECK_EQ(v, a.uidvalidity);
	CHECK_EQ(imap_index_add(root, name, &uid2, &v), 0);
	CHECK_EQ(uid2, 3);
	fresh_sync(&b);
	CHECK_EQ(b.n, 3);
	CHECK_EQ(b.m[2].uid, 3);
	CHECK_STREQ(b.m[2].flags, "S");
	CHECK_EQ(b.m[2].modseq, b.highestmodseq);
	CHECK(b.highestmodseq > a.highestmodseq);
	CHECK_EQ(b.uidnext, 4);
	imap_index_free(&a);
	imap_index_free(&b);
	/* an old-version file: refused, a full sync must do it */
	write_index("postern-uids 1 4242 20\nend 4242 20\n");
	CHECK_EQ(imap_index_add(root, name, &uid, &v), -1);
	CHECK_EQ(uid, 0);
}


/* ---- the journal (version 3) ------------------------------------------------------ */

static ino_t index_ino(void)
{
	char path[600];
	struct stat st;

	snprintf(path, sizeof path, "%s/" IMAP_INDEX_FILE, root);
	CHECK_EQ(stat(path, &st), 0);
	return st.st_ino;
}

/* Lines of the index file that begin with `c` followed by a space. */
static int count_records(char c)
{
	const char *s = read_index();
	int n = 0;

	for (; s && *s; s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL)
		n += s[0] == c && s[1] == ' ';
	return n;
}

static void append_index(const char *text)
{
	char path[600];
	int fd;

	snprintf(path, sizeof path, "%s/" IMAP_INDEX_FILE, root);
	CHECK((fd = open(path, O_WRONLY | O_APPEND)) >= 0);
	CHECK_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Flags of message i changed through a transaction, as STORE does. */
static void store_flags(struct imap_index *ix, size_t i, const char *flags)
{
	struct imap_index_txn *t;
	char err[256], nn[300];

	CHECK((t = imap_index_begin(ix, err, sizeof err)) != NULL);
	CHECK_EQ(maildir_set_flags(root, ix->m[i].name, flags, nn, sizeof nn), 0);
	free(ix->m[i].name);
	ix->m[i].name = strdup(nn);
	ix->m[i].in_new = 0;
	snprintf(ix->m[i].flags, sizeof ix->m[i].flags, "%s", flags);
	imap_index_txn_touch(t, ix, i);
	CHECK_EQ(imap_index_commit(ix, t, err, sizeof err), 0);
}

/* A message written into cur/ and added as APPEND does. */
static uint32_t append_msg(int k, const char *flags)
{
	char name[128], path[1024];
	uint32_t uid = 0, v = 0;
	int fd;

	snprintf(name, sizeof name, "1800000000.M%dP1Q1.test,S=5:2,%s", k, flags);
	snprintf(path, sizeof path, "%s/cur/%s", root, name);
	CHECK((fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600)) >= 0);
	CHECK_EQ(write(fd, "x\r\n\r\n", 5), 5);
	close(fd);
	CHECK_EQ(imap_index_add(root, name, &uid, &v), 0);
	return uid;
}

static void same_view(const struct imap_index *a, const struct imap_index *b)
{
	CHECK_EQ(a->uidvalidity, b->uidvalidity);
	CHECK_EQ(a->uidnext, b->uidnext);
	CHECK_EQ(a->highestmodseq, b->highestmodseq);
	CHECK_EQ(a->n, b->n);
	for (size_t i = 0; i < a->n && i < b->n; i++) {
		CHECK_EQ(a->m[i].uid, b->m[i].uid);
		CHECK_EQ(a->m[i].modseq, b->m[i].modseq);
		CHECK_STREQ(a->m[i].flags, b->m[i].flags);
		CHECK_STREQ(a->m[i].name, b->m[i].name);
	}
}

/* Changes go into the journal of the same file (no new file per change),
 * and a fresh reader replays them to the same view. */
static void t_journal(void)
{
	struct imap_index a, b;
	char err[256], path[1024];
	ino_t ino;

	setup("journal");
	deliver(3);
	fresh_sync(&a);
	CHECK(strncmp(read_index(), "postern-uids 3 ", 15) == 0);
	ino = index_ino();
	store_flags(&a, 0, "S");
	CHECK_EQ(count_records('='), 1);
	CHECK_EQ(append_msg(1, "F"), 4);
	CHECK_EQ(count_records('+'), 1);
	CHECK_EQ(imap_index_path(&a, 1, path, sizeof path), 0);
	CHECK_EQ(unlink(path), 0);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK_EQ(count_records('-'), 1);
	CHECK_EQ(index_ino(), ino);   /* appended, not replaced */
	CHECK_EQ(a.n, 3);
	CHECK_EQ(a.m[2].uid, 4);
	CHECK(!a.repaired);
	fresh_sync(&b);
	same_view(&a, &b);
	CHECK(!b.repaired);
	CHECK_EQ(index_ino(), ino);   /* the replay wrote nothing */
	imap_index_free(&a);
	imap_index_free(&b);
}

/* Two views of one mailbox see each other's journalled changes. */
static void t_two_views(void)
{
	struct imap_index a, b;
	char err[256];

	setup("views");
	deliver(4);
	fresh_sync(&a);
	fresh_sync(&b);
	store_flags(&a, 1, "FS");
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	CHECK_STREQ(b.m[1].flags, "FS");
	CHECK_EQ(b.m[1].modseq, a.m[1].modseq);
	CHECK_EQ(b.highestmodseq, a.highestmodseq);
	store_flags(&b, 2, "R");
	CHECK_EQ(append_msg(2, ""), 5);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	same_view(&a, &b);
	CHECK_STREQ(a.m[2].flags, "R");
	CHECK_EQ(a.m[4].uid, 5);
	imap_index_free(&a);
	imap_index_free(&b);
}

/* A crash during an append leaves a torn last line: it is ignored (not
 * damage), and the next append first cuts it off. */
static void t_torn_record(void)
{
	struct imap_index a, b;

	setup("torn");
	deliver(2);
	fresh_sync(&a);
	append_index("= 1 99999999999999 -S 17");
	fresh_sync(&b);
	CHECK(!b.repaired);
	same_view(&a, &b);
	imap_index_free(&b);
	CHECK_EQ(append_msg(1, "S"), 3);
	CHECK(strstr(read_index(), "99999999999999") == NULL);
	fresh_sync(&b);
	CHECK(!b.repaired);
	CHECK_EQ(b.n, 3);
	CHECK_EQ(b.m[2].uid, 3);
	CHECK_STREQ(b.m[2].flags, "S");
	imap_index_free(&a);
	imap_index_free(&b);
}

/* A damaged journal: unreadable records are damage; a message whose +
 * record is lost gets a new UID above any that record may have given, and
 * UIDVALIDITY stays. */
static void t_journal_damage(void)
{
	struct imap_index a, b;
	char *text, *rec;

	setup("jdamage");
	deliver(2);
	fresh_sync(&a);
	CHECK_EQ(append_msg(1, ""), 3);
	CHECK_EQ(append_msg(2, ""), 4);
	text = strdup(read_index());
	CHECK((rec = strstr(text, "\n+ 4 ")) != NULL);
	memcpy(rec + 1, "?x", 2);   /* the last record garbled, its newline kept */
	write_index(text);
	free(text);
	fresh_sync(&b);
	CHECK(b.repaired);
	CHECK_EQ(b.uidvalidity, a.uidvalidity);
	CHECK_EQ(b.n, 4);
	CHECK_EQ(b.m[2].uid, 3);
	CHECK(b.m[3].uid > 4);   /* 4 may have been seen: never again */
	imap_index_free(&b);
	fresh_sync(&b);   /* repaired: compacted, read back sound */
	CHECK(!b.repaired);
	CHECK_EQ(count_records('+'), 0);
	CHECK(b.m[3].uid > 4);
	/* a record that contradicts the entries (= for an unknown UID) */
	append_index("= 77 5 -S 1700000000.M9P9.nowhere\n");
	imap_index_free(&b);
	fresh_sync(&b);
	CHECK(b.repaired);
	CHECK_EQ(b.n, 4);
	imap_index_free(&a);
	imap_index_free(&b);
}

/* The journal is compacted now and then (a new file, the generation one
 * up); a view from before the compaction reads the new file right. */
static void t_compaction(void)
{
	struct imap_index a, b;
	char err[256];
	unsigned long long gen = 0;
	ino_t ino;
	int i;

	setup("compact");
	deliver(4);
	fresh_sync(&a);
	fresh_sync(&b);
	ino = index_ino();
	for (i = 0; i < 400 && index_ino() == ino; i++)
		store_flags(&a, (size_t)i % 4, i % 2 ? "S" : "F");
	CHECK(i < 400);              /* compacted */
	CHECK(i > 100);              /* but not at every change */
	CHECK(strncmp(read_index(), "postern-uids 3 ", 15) == 0);
	CHECK_EQ(sscanf(read_index(), "postern-uids 3 %*u %*u %*u %llu", &gen), 1);
	CHECK(gen >= 2);   /* created as 1, compacted at least once */
	CHECK_EQ(count_records('='), 0);
	store_flags(&a, 3, "D");
	CHECK_EQ(count_records('='), 1);
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	same_view(&a, &b);
	CHECK(!b.repaired);
	imap_index_free(&a);
	imap_index_free(&b);
}

/* A version 2 file (written by the previous imapd) is read with its UIDs
 * and modseqs and upgraded in place. */
static void t_upgrade_v2(void)
{
	struct imap_index a;
	char text[8192], base[300];
	size_t len = 0;
	struct imap_index tmp;

	setup("upgrade2");
	deliver(2);
	fresh_sync(&tmp);
	len += (size_t)snprintf(text + len, sizeof text - len, "postern-uids 2 4343 30 77\n");
	for (size_t i = 0; i < tmp.n; i++) {
		snprintf(base, sizeof base, "%.*s", (int)tmp.m[i].baselen, tmp.m[i].name);
		len += (size_t)snprintf(text + len, sizeof text - len, "%u %u - %s\n",
					i ? 21u : 11u, i ? 70u : 60u, base);
	}
	snprintf(text + len, sizeof text - len, "end 4343 30 77\n");
	imap_index_free(&tmp);
	write_index(text);
	fresh_sync(&a);
	CHECK(!a.repaired);
	CHECK_EQ(a.uidvalidity, 4343);
	CHECK_EQ(a.uidnext, 30);
	CHECK_EQ(a.m[0].uid, 11);
	CHECK_EQ(a.m[1].uid, 21);
	CHECK_EQ(a.m[0].modseq, 60);
	CHECK_EQ(a.m[1].modseq, 70);
	CHECK_EQ(a.highestmodseq, 77);
	CHECK(strncmp(read_index(), "postern-uids 3 4343 30 77 ", 26) == 0);
	imap_index_free(&a);
}

/* No listing when the only changes are Postern's own, recorded in the
 * journal (STORE through a transaction, APPEND's record); one when
 * anything else changed new/ or cur/: a delivery right after a journalled
 * STORE, a rename by another program (Dovecot, a user), an unlink. */
static void t_listing_skipped(void)
{
	struct imap_index a, b;
	char err[256], nn[300], path[1024];

	setup("nolist");
	deliver(3);
	fresh_sync(&a);
	CHECK(a.listed);
	fresh_sync(&b);
	store_flags(&a, 0, "S");
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK(!a.listed);
	CHECK_STREQ(a.m[0].flags, "S");
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);   /* the other view, too */
	CHECK(!b.listed);
	same_view(&a, &b);
	CHECK_EQ(append_msg(1, "F"), 4);
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	CHECK(!b.listed);
	CHECK_EQ(b.n, 4);
	CHECK_EQ(b.m[3].uid, 4);
	CHECK_STREQ(b.m[3].flags, "F");
	CHECK_EQ(imap_index_path(&b, 3, path, sizeof path), 0);
	CHECK_EQ(access(path, F_OK), 0);   /* the name the file implies exists */
	/* a delivery into new/ right after a journalled STORE is still seen */
	store_flags(&a, 1, "R");
	deliver(1);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK(a.listed);
	CHECK_EQ(a.n, 5);
	CHECK_EQ(a.m[4].uid, 5);
	CHECK_STREQ(a.m[1].flags, "R");
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);   /* a recorded it: b needs no listing */
	CHECK(!b.listed);
	same_view(&a, &b);
	/* a rename by another program right after a journalled STORE */
	store_flags(&a, 2, "F");
	CHECK_EQ(maildir_set_flags(root, b.m[0].name, "ST", nn, sizeof nn), 0);
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	CHECK(b.listed);
	CHECK_STREQ(b.m[0].flags, "ST");
	CHECK_STREQ(b.m[2].flags, "F");
	CHECK(b.m[0].modseq > a.m[2].modseq);
	/* a file removed by anyone (imapd's EXPUNGE unlinks too) */
	CHECK_EQ(imap_index_path(&b, 3, path, sizeof path), 0);
	CHECK_EQ(unlink(path), 0);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK(a.listed);
	CHECK_EQ(a.n, 4);
	CHECK_EQ(imap_index_find(&a, 4), -1);
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	CHECK(!b.listed);
	same_view(&a, &b);
	imap_index_free(&b);
	/* a new view (SELECT) of a mailbox this process watches: the file alone */
	fresh_sync(&b);
	CHECK(!b.listed);
	same_view(&a, &b);
	for (size_t i = 0; i < b.n; i++) {
		CHECK_EQ(imap_index_path(&b, i, path, sizeof path), 0);
		CHECK_EQ(access(path, F_OK), 0);
	}
	imap_index_free(&b);
	deliver(1);
	fresh_sync(&b);
	CHECK(b.listed);
	CHECK_EQ(b.n, a.n + 1);
	imap_index_free(&a);
	imap_index_free(&b);
}

/* An external rename to the very name a journalled STORE just gave, and
 * one that undoes it: each view ends up with the disk's flags. */
static void t_rename_back(void)
{
	struct imap_index a, b;
	char err[256], nn[300], old[300];

	setup("renameback");
	deliver(2);
	fresh_sync(&a);
	fresh_sync(&b);
	CHECK_EQ(maildir_set_flags(root, a.m[0].name, "", old, sizeof old), 0);   /* to cur/ */
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK(a.listed);
	store_flags(&a, 0, "S");
	CHECK_EQ(maildir_set_flags(root, a.m[0].name, "", nn, sizeof nn), 0);   /* undone */
	CHECK_STREQ(nn, old);
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	CHECK(b.listed);
	CHECK_STREQ(b.m[0].flags, "");
	CHECK_STREQ(b.m[0].name, old);
	imap_index_free(&a);
	imap_index_free(&b);
}

/* A view caught up midway through the journal, then a compaction by
 * another: the view reads the new file whole and agrees with a fresh one. */
static void t_compaction_reader(void)
{
	struct imap_index a, b, c;
	char err[256];
	ino_t ino;

	setup("compactread");
	deliver(5);
	fresh_sync(&a);
	fresh_sync(&b);
	for (int i = 0; i < 10; i++)
		store_flags(&a, (size_t)i % 5, i % 2 ? "S" : "D");
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	CHECK(!b.listed);
	ino = index_ino();
	for (int i = 0; i < 600 && index_ino() == ino; i++) {
		store_flags(&a, (size_t)i % 5, i % 2 ? "F" : "R");
		if (i % 20 == 0)   /* a's own syncs keep the events checked */
			CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	}
	CHECK(index_ino() != ino);
	store_flags(&a, 4, "T");
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	CHECK(!b.listed);   /* the new file read whole, no listing */
	same_view(&a, &b);
	fresh_sync(&c);
	same_view(&b, &c);
	CHECK(!b.repaired && !c.repaired);
	imap_index_free(&a);
	imap_index_free(&b);
	imap_index_free(&c);
}

/* EXPUNGE through a transaction: the file is unlinked under the lock and
 * recorded, the views drop it at their next sync without a listing. */
static void t_txn_expunge(void)
{
	struct imap_index a, b, c;
	struct imap_index_txn *t;
	char err[256], path[1024];
	uint64_t h0;

	setup("txnexp");
	deliver(3);
	fresh_sync(&a);
	fresh_sync(&b);
	h0 = a.highestmodseq;
	CHECK_EQ(imap_index_path(&a, 1, path, sizeof path), 0);
	CHECK((t = imap_index_begin(&a, err, sizeof err)) != NULL);
	CHECK_EQ(imap_index_txn_expunge(t, &a, 1), 0);
	CHECK_EQ(imap_index_txn_expunge(t, &a, 1), -1);   /* already gone */
	CHECK_EQ(imap_index_commit(&a, t, err, sizeof err), 0);
	CHECK_EQ(access(path, F_OK), -1);
	CHECK_EQ(a.n, 3);   /* until the next sync */
	CHECK_EQ(count_records('-'), 1);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK(!a.listed);
	CHECK_EQ(a.n, 2);
	CHECK_EQ(imap_index_find(&a, 2), -1);
	CHECK(a.highestmodseq > h0);
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	CHECK(!b.listed);
	same_view(&a, &b);
	fresh_sync(&c);
	same_view(&a, &c);
	imap_index_free(&a);
	imap_index_free(&b);
	imap_index_free(&c);
}

/* The index file removed while a view holds it: the journal cannot be
 * followed, the listing finds no file, and the mailbox gets a new
 * UIDVALIDITY above the old one (its UIDs are unknown now). */
static void t_index_removed(void)
{
	struct imap_index a;
	char err[256], path[600];
	uint32_t v;

	setup("removed");
	deliver(2);
	fresh_sync(&a);
	store_flags(&a, 0, "S");
	v = a.uidvalidity;
	snprintf(path, sizeof path, "%s/" IMAP_INDEX_FILE, root);
	CHECK_EQ(unlink(path), 0);
	CHECK_EQ(imap_index_sync(&a, err, sizeof err), 0);
	CHECK(a.listed);
	CHECK(a.repaired);
	CHECK(a.uidvalidity > v);
	CHECK_EQ(a.n, 2);
	imap_index_free(&a);
}

/* imap_index_forget: the next sync lists again (finding nothing new here:
 * the view stays the same); the one after trusts the watch again. */
static void t_forget(void)
{
	struct imap_index a, b;
	char err[256];

	setup("forget");
	deliver(2);
	fresh_sync(&a);
	fresh_sync(&b);
	CHECK(!b.listed);
	imap_index_forget(root);
	CHECK_EQ(imap_index_sync(&b, err, sizeof err), 0);
	CHECK(b.listed);
	same_view(&a, &b);
	imap_index_free(&b);
	fresh_sync(&b);   /* watched again */
	CHECK(!b.listed);
	imap_index_free(&a);
	imap_index_free(&b);
}

int main(void)
{
	RUN(t_stable_across_restart);
	RUN(t_new_flags_expunge);
	RUN(t_damaged_lines);
	RUN(t_header_lost);
	RUN(t_symlinked_index_refused);
	RUN(t_many);
	RUN(t_relocate);
	RUN(t_settled_fast_path);
	RUN(t_modseq);
	RUN(t_upgrade_v1);
	RUN(t_unknown_version);
	RUN(t_txn);
	RUN(t_add);
	RUN(t_journal);
	RUN(t_two_views);
	RUN(t_torn_record);
	RUN(t_journal_damage);
	RUN(t_compaction);
	RUN(t_upgrade_v2);
	RUN(t_listing_skipped);
	RUN(t_rename_back);
	RUN(t_compaction_reader);
	RUN(t_txn_expunge);
	RUN(t_index_removed);
	RUN(t_forget);
	return check_done();
}
