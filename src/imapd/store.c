/*
 * store.c - STORE (RFC 3501 6.4.6, RFC 7162 3.1.3 UNCHANGEDSINCE).
 *
 * A flag change renames the message file (maildir_set_flags) and fsyncs
 * cur/, so it survives a crash once answered. Those fsyncs stalled every
 * connection when the loop made them, so STORE runs in three parts:
 * the loop parses the command and picks the messages; a worker (auth.c's
 * pool) takes the index lock, renames and records the new modseqs
 * (store_work), the connection waiting meanwhile (c->busy: no command is
 * read, nothing is sent); then the loop writes the untagged FETCHes and
 * the tagged answer (store_done), so a connection's responses stay in
 * order. The index lock is taken and released by the worker within its
 * job: the loop never waits for a lock a parked connection holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "imapd.h"
#include "maildir.h"

/* What one STORE asks for, and what the worker did. */
struct store_job {
	char letters[MAILDIR_FLAGS_MAX + 1];
	int mode, silent, uid;
	uint64_t unchanged;           /* UNCHANGEDSINCE, or UINT64_MAX */
	size_t *pos, n;               /* the messages (positions in c->ix) */
	signed char *changed;         /* out: per message 1, 0, or -1 refused */
};

/* The flags STORE wants message m to have (mode: 0 FLAGS, 1 +FLAGS,
 * -1 -FLAGS); \Recent ('P' here) is never the client's to set. */
static void store_want(const struct imap_msg *m, const char *letters, int mode, char *want)
{
	size_t k = 0;

	for (const char *f = "DFPRSTabcdefghijklmnopqrstuvwxyz"; *f; f++) {
		int has = strchr(m->flags, *f) != NULL, in = strchr(letters, *f) != NULL;

		if (mode == 0 ? (in || (has && *f == 'P')) : mode > 0 ? (has || in) : (has && !in))
			want[k++] = *f;
	}
	want[k] = '\0';
}

/* STORE on message i: 1 changed, 0 not, -1 refused by UNCHANGEDSINCE. */
static int store_one(struct imapd_conn *c, size_t i, const struct store_job *q)
{
	struct imap_msg *m = &c->ix.m[i];
	char want[MAILDIR_FLAGS_MAX + 1], nn[300];

	msg_locate(c, i);   /* renamed by another client meanwhile? */
	if (q->unchanged != UINT64_MAX &&
	    (!c->txn || imap_index_txn_modseq(c->txn, &c->ix, i) > q->unchanged))
		return -1;
	store_want(m, q->letters, q->mode, want);
	if (strcmp(want, m->flags) == 0 ||
	    maildir_set_flags(c->ix.dir, m->name, want, nn, sizeof nn) < 0)
		return 0;
	free(m->name);
	m->name = strdup(nn);
	m->in_new = 0;
	strcpy(m->flags, want);
	if (c->txn)
		imap_index_txn_touch(c->txn, &c->ix, i);
	return 1;
}

/* STORE's arguments after the set: [SP "(UNCHANGEDSINCE n)"] SP item SP
 * flags. 0, -1 syntax (answered BAD by the caller), -2 no keyword room. */
static int store_args(struct imap_req *r, struct store_job *q)
{
	struct imapd_conn *c = r->c;
	char item[32];
	int rc;

	q->unchanged = UINT64_MAX;
	if (imap_sp(&r->p) < 0)
		return -1;
	if (imap_peek(&r->p) == '(') {
		if (imap_modifier(&r->p, "UNCHANGEDSINCE", &q->unchanged) < 0 || imap_sp(&r->p) < 0)
			return -1;
		c->condstore = 1;   /* RFC 7162 3.1: an enabling command */
	}
	if (imap_atom(&r->p, item, sizeof item) < 0 || imap_sp(&r->p) < 0 ||
	    (rc = flags_parse(&r->p, c->ix.dir, c->readonly ? NULL : &c->kw, q->letters,
			      sizeof q->letters)) == -1 || imap_eol(&r->p) < 0)
		return -1;
	q->mode = item[0] == '+' ? 1 : item[0] == '-' ? -1 : 0;
	q->silent = strcasestr(item, ".SILENT") != NULL;
	if (strncasecmp(item + (q->mode != 0), "FLAGS", 5) != 0) {
		r->p.err = "expected FLAGS, +FLAGS or -FLAGS";
		return -1;
	}
	return rc;
}

/* The untagged FETCH of a stored message (RFC 3501 6.4.6; with
 * UNCHANGEDSINCE even when .SILENT, RFC 7162 3.1.3). */
static void store_reply(struct imapd_conn *c, size_t i, const struct store_job *q, int changed)
{
	char fl[FLAGS_TEXT_MAX];

	if (q->silent && !(changed && q->unchanged != UINT64_MAX))
		return;
	flags_imap(c->ix.m[i].flags, &c->kw, fl, sizeof fl);
	out_fmt(c, "* %zu FETCH (FLAGS %s", i + 1, fl);
	if (q->uid)
		out_fmt(c, " UID %u", c->ix.m[i].uid);
	out_condstore(c, i);
	out_fmt(c, ")\r\n");
}

void store_free(struct store_job *q)
{
	if (q) {
		free(q->pos);
		free(q->changed);
		free(q);
	}
}

void store_work(struct imapd_conn *c)
{
	struct store_job *q = c->store;

	txn_get(c);   /* the lock before the renames: modseqs in order with syncs */
	for (size_t i = 0; i < q->n; i++)
		q->changed[i] = (signed char)store_one(c, q->pos[i], q);
	txn_end(c);
}

void store_done(struct imapd_conn *c)
{
	struct store_job *q = c->store;
	struct imap_req r = { .c = c };
	struct imap_buf modified = { 0 };   /* RFC 7162 3.1.3: the MODIFIED set */
	char num[16];

	snprintf(r.tag, sizeof r.tag, "%s", c->job_tag);
	c->store = NULL;
	for (size_t i = 0; i < q->n; i++) {
		size_t k = q->pos[i];

		if (q->changed[i] >= 0) {
			store_reply(c, k, q, q->changed[i]);
			continue;
		}
		snprintf(num, sizeof num, "%s%u", modified.len ? "," : "",
			 q->uid ? c->ix.m[k].uid : (uint32_t)k + 1);
		imap_buf_puts(&modified, num);
	}
	store_free(q);
	if (modified.len && !modified.oom) {   /* may be longer than reply() takes */
		out_fmt(c, "%s OK [MODIFIED ", r.tag);
		out_raw(c, modified.p, modified.len);
		out_fmt(c, "] Conditional STORE failed\r\n");
	} else {
		reply(&r, "OK", "STORE completed");
	}
	imap_buf_free(&modified);
}

/* The renames go to a worker; without workers all runs here. */
static int store_start(struct imap_req *r, struct store_job *q)
{
	struct imapd_conn *c = r->c;

	c->store = q;
	c->job = JOB_STORE;
	snprintf(c->job_tag, sizeof c->job_tag, "%s", r->tag);
	if (q->n > 0 && pool_submit(c->d, c) == 0)
		return 0;
	store_work(c);
	store_done(c);
	return 0;
}

int cmd_store(struct imap_req *r)
{
	struct imapd_conn *c = r->c;
	struct imap_seqset set;
	struct store_job *q = calloc(1, sizeof *q);
	int rc;

	if (!q)
		return reply(r, "NO", "[SERVERBUG] Out of memory");
	q->uid = r->uid;
	if (imap_sp(&r->p) < 0 || imap_seqset(&r->p, &set) < 0) {
		store_free(q);
		return bad_args(r);
	}
	if ((rc = store_args(r, q)) < 0 || c->readonly) {
		imap_seqset_free(&set);
		store_free(q);
		return rc == -1 ? bad_args(r) : rc == -2
		       ? reply(r, "NO", "[LIMIT] No room for another keyword in this mailbox")
		       : reply(r, "NO", "[READ-ONLY] Mailbox is read-only");
	}
	rc = set_select(c, &set, r->uid, &q->pos, &q->n);
	imap_seqset_free(&set);
	if (rc < 0 || !(q->changed = calloc(q->n + 1, 1))) {
		store_free(q);
		return reply(r, "BAD", "Invalid message numbers");
	}
	return store_start(r, q);
}
