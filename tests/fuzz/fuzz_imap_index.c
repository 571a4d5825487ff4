/*
 * fuzz_imap_index.c - libFuzzer target for the IMAP UID index file
 * (imap-index.h), which a crash or a disk can damage. The input is an
 * index file for a Maildir holding three messages; an optional part after
 * a line "--" is appended as journal records once a view has read the
 * first part (the incremental path). Checked after every sync: UIDs
 * ascending and below UIDNEXT, every message indexed, modseqs within
 * HIGHESTMODSEQ; a fresh view then agrees on UIDVALIDITY and (without
 * the appended part) every UID: what was written back reads the same.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap-index.h"
#include "maildir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MSGS 3
static char root[256];

static void make_box(void)
{
	static const char *const files[MSGS] = {
		"new/1700000000.M1P1.fuzz,S=5",
		"cur/1700000001.M2P1.fuzz,S=5:2,S",
		"cur/1700000002.M3P1.fuzz:2,FT",
	};
	char path[512];

	snprintf(root, sizeof root, "%s/fuzz-imap-index-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
		 (int)getpid());
	if (maildir_create(root) < 0)
		abort();
	for (int i = 0; i < MSGS; i++) {
		int fd;

		snprintf(path, sizeof path, "%s/%s", root, files[i]);
		if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 || write(fd, "x\r\n\r\n", 5) != 5)
			abort();
		close(fd);
	}
}

static void put_file(const uint8_t *data, size_t len, int append)
{
	char path[512];
	int fd;

	snprintf(path, sizeof path, "%s/" IMAP_INDEX_FILE, root);
	fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0600);
	if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len))
		abort();
	close(fd);
}

/* A view read from the file alone (no listing: inotify saw nothing in
 * new/ or cur/) believes it, so after the appended part, which only the
 * harness writes, only the order is checked; after a listing every
 * message is there. */
static void sane(const struct imap_index *ix, int listed)
{
	if ((listed && ix->n != MSGS) || ix->uidvalidity == 0)
		abort();
	for (size_t i = 0; i < ix->n; i++)
		if (ix->m[i].uid == 0 || ix->m[i].uid >= ix->uidnext ||
		    (i && ix->m[i].uid <= ix->m[i - 1].uid) || ix->m[i].modseq > ix->highestmodseq)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = size >= 4 ? memmem(data, size, "\n--\n", 4) : NULL;
	size_t first = sep ? (size_t)(sep - data) + 1 : size;
	struct imap_index a, b;
	char err[256];

	if (!root[0])
		make_box();
	imap_index_forget(root);   /* each input starts from the disk, as after a restart */
	put_file(data, first, 0);
	if (imap_index_open(&a, root) < 0 || imap_index_sync(&a, err, sizeof err) < 0)
		abort();
	sane(&a, 1);
	if (sep) {
		put_file(sep + 4, size - first - 3, 1);
		if (imap_index_sync(&a, err, sizeof err) < 0)
			abort();
		sane(&a, a.listed);
	}
	if (imap_index_open(&b, root) < 0 || imap_index_sync(&b, err, sizeof err) < 0)
		abort();
	sane(&b, b.listed || !sep);
	if (b.uidvalidity != a.uidvalidity || b.uidnext < a.uidnext)
		abort();
	for (size_t i = 0; i < MSGS && !sep; i++)
		if (b.m[i].uid != a.m[i].uid)
			abort();
	imap_index_free(&a);
	imap_index_free(&b);
	return 0;
}
