/*
 * mbox.c - mailboxes: names to directories, LIST/LSUB, CREATE, DELETE,
 * RENAME, SUBSCRIBE, SELECT/EXAMINE, STATUS, APPEND, EXPUNGE, CLOSE,
 * COPY/MOVE, and the untagged updates of the selected mailbox.
 *
 * Isolation: a mailbox name is an mUTF-7 string (RFC 3501 5.1.3), checked
 * strictly, then a Maildir++ folder name (maildir_folder_valid: no '/',
 * '\\', control characters, empty levels or "..") that becomes the single
 * directory "<root>/.<name>", opened without following symbolic links. So
 * no name reaches outside the user's own Maildir.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "fsutil.h"
#include "imapd.h"
#include "maildir.h"

#define MBOX_NAME_MAX MAILDIR_FOLDER_MAX   /* bytes of a mailbox name */
#define LIST_MAX 1000                      /* folders listed */
#define SUBS_FILE "postern-subscriptions"
#define SUBS_MAX (256u << 10)                /* bytes of the subscriptions file */
#define COPYUID_MAX 10000                    /* messages a COPYUID names (RFC 4315: optional) */

static unsigned long name_counter;

/* "INBOX" (any case) is the Maildir itself; others are validated folders. */
int mbox_dir(struct imapd_conn *c, const char *name, char *out, size_t cap)
{
	struct stat st;

	if (strcasecmp(name, "INBOX") == 0) {
		snprintf(out, cap, "%s", c->root);
		return 0;
	}
	if (strlen(name) > MBOX_NAME_MAX || !imap_mutf7_valid(name) || !maildir_folder_valid(name) ||
	    strncasecmp(name, "INBOX.", 6) == 0 || maildir_folder_path(c->root, name, out, cap) < 0)
		return -1;
	if (lstat(out, &st) == 0 && !S_ISDIR(st.st_mode))
		return -1;   /* a symbolic link or a file where a folder should be */
	return 0;
}

static int exists(const char *dir)
{
	struct stat st;
	char cur[IMAPD_PATH_MAX + 8];

	snprintf(cur, sizeof cur, "%s/cur", dir);
	return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && lstat(cur, &st) == 0 &&
	       S_ISDIR(st.st_mode);
}

/* " mailbox" (a space, then a mailbox name): 1 with the name and its
 * directory; 0 when the command has been answered (BAD or NO), with the
 * command's return value in *rc. */
static int sp_mailbox_arg(struct imap_req *r, char *name, char *dir, int *rc)
{
	size_t n;

	if (imap_sp(&r->p) < 0 || imap_astring(&r->p, name, IMAP_ATOM_MAX, &n) < 0) {
		*rc = bad_args(r);
		return 0;
	}
	if (mbox_dir(r->c, name, dir, IMAPD_PATH_MAX) < 0) {
		*rc = reply(r, "NO", "[CANNOT] Invalid mailbox name");
		return 0;
	}
	return 1;
}

/* sp_mailbox_arg for commands whose only argument is the mailbox. */
static int only_mailbox_arg(struct imap_req *r, char *name, char *dir, int *rc)
{
	if (!sp_mailbox_arg(r, name, dir, rc))
		return 0;
	if (imap_eol(&r->p) < 0) {
		*rc = bad_args(r);
		return 0;
	}
	return 1;
}

/* ---- updates of the selected mailbox ----------------------------------------- */

struct old { uint32_t uid; uint64_t modseq; char flags[MAILDIR_FLAGS_MAX + 1]; };

int mbox_update(struct imapd_conn *c, int expunges)
{
	struct old *o;
	size_t n = c->ix.n, j = 0;
	char err[256], fl[FLAGS_TEXT_MAX];

	if (c->state != ST_SELECTED)
		return 0;
	if (!expunges)
		return 0;   /* RFC 3501 7.4.1: the view stays until an allowed moment */
	o = malloc((n + 1) * sizeof *o);
	if (!o)
		return -1;
	for (size_t i = 0; i < n; i++) {
		o[i].uid = c->ix.m[i].uid;
		o[i].modseq = c->ix.m[i].modseq;
		strcpy(o[i].flags, c->ix.m[i].flags);
	}
	if (imap_index_sync(&c->ix, err, sizeof err) < 0) {
		log_msg(LOG_ERR, &c->lf, "%s", err);
		free(o);
		return -1;
	}
	kw_load(c->ix.dir, &c->kw);   /* another client may have named a letter */
	/* From the end, so the sequence numbers of earlier messages hold. */
	for (size_t i = n; i-- > 0;)
		if (imap_index_find(&c->ix, o[i].uid) < 0)
			out_fmt(c, "* %zu EXPUNGE\r\n", i + 1);
	for (size_t i = 0; i < n; i++) {
		long k = imap_index_find(&c->ix, o[i].uid);

		if (k < 0)
			continue;
		j++;
		/* RFC 7162 3.2: with CONDSTORE, a new modseq alone is news too */
		if (strcmp(c->ix.m[k].flags, o[i].flags) != 0 ||
		    (c->condstore && c->ix.m[k].modseq != o[i].modseq)) {
			flags_imap(c->ix.m[k].flags, &c->kw, fl, sizeof fl);
			out_fmt(c, "* %ld FETCH (UID %u FLAGS %s", k + 1, o[i].uid, fl);
			out_condstore(c, (size_t)k);
			out_fmt(c, ")\r\n");
		}
	}
	if (c->ix.n != j || c->ix.n != n)
		out_fmt(c, "* %zu EXISTS\r\n", c->ix.n);
	free(o);
	return 0;
}

void mbox_unselect(struct imapd_conn *c)
{
	if (c->state == ST_SELECTED) {
		imap_index_free(&c->ix);
		c->state = ST_AUTH;
	}
}

/* ---- SELECT, EXAMINE, STATUS ------------------------------------------------- */

/* RFC 4466 2.1 select-params: only "(CONDSTORE)" (RFC 7162 3.1.8), which
 * enables CONDSTORE; then the end of the command. */
static int select_params(struct imap_req *r)
{
	char param[32];

	if (imap_take(&r->p, ' ')) {
		if (!imap_take(&r->p, '(') || imap_atom(&r->p, param, sizeof param) < 0 ||
		    strcasecmp(param, "CONDSTORE") != 0 || !imap_take(&r->p, ')')) {
			r->p.err = "unknown SELECT parameter";
			return -1;
		}
		r->c->condstore = 1;
	}
	return imap_eol(&r->p);
}

int cmd_select(struct imap_req *r)
{
	struct imapd_conn *c = r->c;
	char name[IMAP_ATOM_MAX], dir[IMAPD_PATH_MAX], err[256], fl[FLAGS_TEXT_MAX];
	size_t unseen = 0;
	int rc = 0;

	mbox_unselect(c);   /* RFC 3501 6.3.1: even when this SELECT fails */
	if (!sp_mailbox_arg(r, name, dir, &rc))
		return rc;
	if (select_params(r) < 0)
		return bad_args(r);
	if (!exists(dir))
		return reply(r, "NO", "[NONEXISTENT] No such mailbox");
	if (imap_index_open(&c->ix, dir) < 0 || imap_index_sync(&c->ix, err, sizeof err) < 0) {
		log_msg(LOG_ERR, &c->lf, "%s", err);
		imap_index_free(&c->ix);
		return reply(r, "NO", "[UNAVAILABLE] Cannot open the mailbox");
	}
	if (c->ix.repaired)
		log_msg(LOG_WARNING, &c->lf, "%s: %s", dir, c->ix.repair);
	c->state = ST_SELECTED;
	c->readonly = strncasecmp(r->p.s + strlen(r->tag) + 1, "EXAMINE", 7) == 0;
	snprintf(c->mbox, sizeof c->mbox, "%s", name);
	for (size_t i = 0; i < c->ix.n; i++)
		if (!strchr(c->ix.m[i].flags, 'S') && !unseen)
			unseen = i + 1;
	kw_load(dir, &c->kw);
	flags_imap("DFRST", &c->kw, fl, sizeof fl);
	kw_imap(&c->kw, "abcdefghijklmnopqrstuvwxyz", fl, sizeof fl);
	out_fmt(c, "* FLAGS %s\r\n", fl);
	/* RFC 3501 7.1: \* when keywords can be created; none past KW_MAX. */
	fl[strlen(fl) - 1] = '\0';
	out_fmt(c, "* OK [PERMANENTFLAGS %s%s)] Flags allowed\r\n", c->readonly ? "(" : fl,
		c->readonly ? "" : c->kw.n < KW_MAX ? " \\*" : "");
	out_fmt(c, "* %zu EXISTS\r\n* 0 RECENT\r\n", c->ix.n);
	if (unseen)
		out_fmt(c, "* OK [UNSEEN %zu] First unseen\r\n", unseen);
	out_fmt(c, "* OK [UIDVALIDITY %u] UIDs valid\r\n* OK [UIDNEXT %u] Predicted next UID\r\n",
		c->ix.uidvalidity, c->ix.uidnext);
	/* RFC 7162 3.1.2.1: every mailbox keeps modseqs, so never NOMODSEQ. */
	out_fmt(c, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
		(unsigned long long)c->ix.highestmodseq);
	return reply(r, "OK", "[%s] %s completed", c->readonly ? "READ-ONLY" : "READ-WRITE",
		     c->readonly ? "EXAMINE" : "SELECT");
}

/* RFC 7162 3.1.6: STATUS HIGHESTMODSEQ, a CONDSTORE enabling command. */
static void status_modseq(struct imapd_conn *c, const struct imap_index *ix)
{
	c->condstore = 1;
	out_fmt(c, "HIGHESTMODSEQ %llu", (unsigned long long)ix->highestmodseq);
}

int cmd_status(struct imap_req *r)
{
	char name[IMAP_ATOM_MAX], dir[IMAPD_PATH_MAX], item[32], err[256];
	struct imap_index ix;
	size_t unseen = 0;
	int rc = 0, first = 1;

	if (!sp_mailbox_arg(r, name, dir, &rc))
		return rc;
	if (imap_sp(&r->p) < 0 || !imap_take(&r->p, '('))
		return bad_args(r);
	if (!exists(dir))
		return reply(r, "NO", "[NONEXISTENT] No such mailbox");
	if (imap_index_open(&ix, dir) < 0 || imap_index_sync(&ix, err, sizeof err) < 0) {
		imap_index_free(&ix);
		return reply(r, "NO", "[UNAVAILABLE] Cannot open the mailbox");
	}
	for (size_t i = 0; i < ix.n; i++)
		unseen += !strchr(ix.m[i].flags, 'S');
	out_fmt(r->c, "* STATUS ");
	out_string(r->c, name, strlen(name));
	out_fmt(r->c, " (");
	while (!imap_take(&r->p, ')')) {
		if ((!first && imap_sp(&r->p) < 0) || imap_atom(&r->p, item, sizeof item) < 0) {
			imap_index_free(&ix);
			out_fmt(r->c, ")\r\n");
			return bad_args(r);
		}
		out_fmt(r->c, first ? "" : " ");
		first = 0;
		if (!strcasecmp(item, "MESSAGES")) out_fmt(r->c, "MESSAGES %zu", ix.n);
		else if (!strcasecmp(item, "RECENT")) out_fmt(r->c, "RECENT 0");
		else if (!strcasecmp(item, "UIDNEXT")) out_fmt(r->c, "UIDNEXT %u", ix.uidnext);
		else if (!strcasecmp(item, "UIDVALIDITY")) out_fmt(r->c, "UIDVALIDITY %u", ix.uidvalidity);
		else if (!strcasecmp(item, "UNSEEN")) out_fmt(r->c, "UNSEEN %zu", unseen);
		else if (!strcasecmp(item, "HIGHESTMODSEQ")) status_modseq(r->c, &ix);
		else out_fmt(r->c, "%s NIL", item);
	}
	out_fmt(r->c, ")\r\n");
	imap_index_free(&ix);
	return reply(r, "OK", "STATUS completed");
}

/* Subscriptions (RFC 3501 6.3.6): one mUTF-7 name a line in
 * <root>/postern-subscriptions, replaced atomically. A name may stay
 * subscribed after its mailbox is gone (RFC 3501 6.3.6 allows it). */

static ssize_t subs_read(struct imapd_conn *c, char *buf, size_t cap)
{
	char path[IMAPD_PATH_MAX + 32];
	ssize_t n;

	snprintf(path, sizeof path, "%s/" SUBS_FILE, c->root);
	n = fs_read_file(path, buf, cap - 1);
	if (n < 0 && errno == ENOENT)
		n = 0;
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

static int subs_change(struct imapd_conn *c, const char *name, int add)
{
	char *buf = malloc(SUBS_MAX + 1), *out = malloc(SUBS_MAX + IMAP_ATOM_MAX + 2);
	char path[IMAPD_PATH_MAX + 32];
	size_t n = 0, nl = strlen(name);
	int rc = -1;

	if (!buf || !out || subs_read(c, buf, SUBS_MAX + 1) < 0)
		goto out;
	for (char *s = buf; *s;) {   /* every other line as it was */
		char *e = strchr(s, '\n');
		size_t ll = e ? (size_t)(e - s) : strlen(s);

		if (ll && !(ll == nl && strncmp(s, name, nl) == 0)) {
			memcpy(out + n, s, ll);
			n += ll;
			out[n++] = '\n';
		}
		s += ll + (e != NULL);
	}
	if (add) {
		memcpy(out + n, name, nl);
		n += nl;
		out[n++] = '\n';
	}
	snprintf(path, sizeof path, "%s/" SUBS_FILE, c->root);
	rc = n > SUBS_MAX ? -1 : fs_write_atomic(path, out, n, FS_MAIL_FILE_MODE);
out:
	free(buf);
	free(out);
	return rc;
}

/* ---- LIST, LSUB --------------------------------------------------------------- */

/* RFC 3501 6.3.8: '*' matches anything, '%' anything but the delimiter. */
static int match(const char *pat, const char *name)
{
	if (!*pat)
		return !*name;
	if (*pat == '*' || *pat == '%') {
		for (const char *s = name;; s++) {
			if (match(pat + 1, s))
				return 1;
			if (!*s || (*pat == '%' && *s == '.'))
				return 0;
		}
	}
	return *pat == *name && match(pat + 1, name + 1);
}

static const char *special_use(const char *name)
{
	static const char *const su[][2] = { { "Sent", "\\Sent" }, { "Drafts", "\\Drafts" },
		{ "Trash", "\\Trash" }, { "Junk", "\\Junk" }, { "Archive", "\\Archive" } };

	for (size_t i = 0; i < sizeof su / sizeof *su; i++)
		if (strcmp(name, su[i][0]) == 0)
			return su[i][1];
	return NULL;
}

static int by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The user's folder names (sorted, heap), INBOX first. */
static size_t folders(struct imapd_conn *c, char **names)
{
	DIR *dir = opendir(c->root);
	struct dirent *de;
	size_t n = 0;

	names[n++] = strdup("INBOX");
	while (dir && (de = readdir(dir)) && n < LIST_MAX) {
		char path[IMAPD_PATH_MAX];

		if (de->d_name[0] != '.' || !maildir_folder_valid(de->d_name + 1) ||
		    !imap_mutf7_valid(de->d_name + 1))
			continue;
		if (snprintf(path, sizeof path, "%s/%s", c->root, de->d_name) >= (int)sizeof path ||
		    !exists(path))
			continue;
		names[n++] = strdup(de->d_name + 1);
	}
	if (dir)
		closedir(dir);
	qsort(names + 1, n - 1, sizeof *names, by_str);
	return n;
}

/* LSUB (RFC 3501 6.3.9): the subscribed names that match; a name whose
 * mailbox is gone is listed \Noselect. */
static int lsub_list(struct imap_req *r, const char *pat, char **names)
{
	char *buf = malloc(SUBS_MAX + 1), dir[IMAPD_PATH_MAX];

	free(names);
	if (!buf || subs_read(r->c, buf, SUBS_MAX + 1) < 0) {
		free(buf);
		return reply(r, "NO", "[SERVERBUG] Cannot read the subscriptions");
	}
	for (char *s = buf, *e; *s; s = e ? e + 1 : s + strlen(s)) {
		if ((e = strchr(s, '\n')))
			*e = '\0';
		if (!*s || !(strcmp(s, "INBOX") == 0 ? match(pat, "INBOX") || !strcasecmp(pat, "INBOX")
						   : match(pat, s)))
			continue;
		out_fmt(r->c, "* LSUB (%s) \".\" ", mbox_dir(r->c, s, dir, sizeof dir) == 0 &&
			exists(dir) ? "" : "\\Noselect");
		out_string(r->c, s, strlen(s));
		out_fmt(r->c, "\r\n");
		if (!e)
			break;
	}
	free(buf);
	return reply(r, "OK", "LSUB completed");
}

int cmd_list(struct imap_req *r)
{
	char ref[IMAP_ATOM_MAX], pat[IMAP_ATOM_MAX], full[2 * IMAP_ATOM_MAX];
	char **names = calloc(LIST_MAX, sizeof *names);
	int lsub = strncasecmp(r->p.s + strlen(r->tag) + 1, "LSUB", 4) == 0;
	size_t rl, pl, n;

	if (!names)
		return reply(r, "NO", "Out of memory");
	if (imap_sp(&r->p) < 0 || imap_astring(&r->p, ref, sizeof ref, &rl) < 0 ||
	    imap_sp(&r->p) < 0 || imap_list_mailbox(&r->p, pat, sizeof pat, &pl) < 0 ||
	    imap_eol(&r->p) < 0) {
		free(names);
		return bad_args(r);
	}
	if (pl == 0 && !lsub) {   /* RFC 3501 6.3.8: the delimiter and root */
		free(names);
		out_fmt(r->c, "* LIST (\\Noselect) \".\" \"\"\r\n");
		return reply(r, "OK", "LIST completed");
	}
	snprintf(full, sizeof full, "%s%s", ref, pat);
	if (lsub)
		return lsub_list(r, full, names);
	n = folders(r->c, names);
	for (size_t i = 0; i < n; i++) {
		const char *su;
		int children = 0;
		size_t len;

		if (!names[i])
			continue;
		len = strlen(names[i]);
		if (!(i == 0 ? match(full, "INBOX") || (strncasecmp(full, "INBOX", 5) == 0 &&
						      match(full + 5, "")) : match(full, names[i])))
			continue;
		for (size_t k = 1; k < n; k++)
			children |= names[k] && strncmp(names[k], names[i], len) == 0 &&
				    names[k][len] == '.';
		su = special_use(names[i]);
		out_fmt(r->c, "* %s (%s%s%s) \".\" ", lsub ? "LSUB" : "LIST",
			children ? "\\HasChildren" : "\\HasNoChildren", su ? " " : "", su ? su : "");
		out_string(r->c, names[i], len);
		out_fmt(r->c, "\r\n");
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return reply(r, "OK", "%s completed", lsub ? "LSUB" : "LIST");
}

/* ---- CREATE, DELETE, RENAME, SUBSCRIBE ---------------------------------------- */

int cmd_create(struct imap_req *r)
{
	char name[IMAP_ATOM_MAX], dir[IMAPD_PATH_MAX];
	int rc = 0;

	if (!only_mailbox_arg(r, name, dir, &rc))
		return rc;
	if (name[strlen(name) - 1] == '.')   /* RFC 3501 6.3.3: a trailing delimiter */
		name[strlen(name) - 1] = '\0';
	if (strcasecmp(name, "INBOX") == 0 || exists(dir))
		return reply(r, "NO", "[ALREADYEXISTS] Mailbox exists");
	if (maildir_create_folder(r->c->root, name) < 0)
		return reply(r, "NO", "[CANNOT] Cannot create the mailbox");
	return reply(r, "OK", "CREATE completed");
}

static int rm_tree_at(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;
	struct dirent *de;

	if (fd < 0)
		return unlinkat(dfd, name, 0);
	if (!(d = fdopendir(fd))) {
		close(fd);
		return -1;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rm_tree_at(dirfd(d), de->d_name);
	closedir(d);
	return unlinkat(dfd, name, AT_REMOVEDIR);
}

int cmd_delete(struct imap_req *r)
{
	char name[IMAP_ATOM_MAX], dir[IMAPD_PATH_MAX];
	int rc = 0, dfd;

	if (!only_mailbox_arg(r, name, dir, &rc))
		return rc;
	if (strcasecmp(name, "INBOX") == 0)
		return reply(r, "NO", "[CANNOT] INBOX cannot be deleted");
	if (!exists(dir))
		return reply(r, "NO", "[NONEXISTENT] No such mailbox");
	if (r->c->state == ST_SELECTED && strcmp(r->c->ix.dir, dir) == 0)
		mbox_unselect(r->c);
	dfd = open(r->c->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	rc = dfd < 0 ? -1 : rm_tree_at(dfd, strrchr(dir, '/') + 1);
	if (dfd >= 0)
		close(dfd);
	return rc < 0 ? reply(r, "NO", "[CANNOT] Cannot delete the mailbox")
		      : reply(r, "OK", "DELETE completed");
}

int cmd_rename(struct imap_req *r)
{
	char from[IMAP_ATOM_MAX], to[IMAP_ATOM_MAX], fdir[IMAPD_PATH_MAX], tdir[IMAPD_PATH_MAX];
	int rc = 0;

	if (!sp_mailbox_arg(r, from, fdir, &rc) || !only_mailbox_arg(r, to, tdir, &rc))
		return rc;
	if (strcasecmp(from, "INBOX") == 0)
		return reply(r, "NO", "[CANNOT] Renaming INBOX is not supported");
	if (!exists(fdir))
		return reply(r, "NO", "[NONEXISTENT] No such mailbox");
	if (strcasecmp(to, "INBOX") == 0 || exists(tdir))
		return reply(r, "NO", "[ALREADYEXISTS] Target exists");
	if (rename(fdir, tdir) < 0 || fs_fsync_dir(r->c->root) < 0)
		return reply(r, "NO", "[CANNOT] Cannot rename");
	return reply(r, "OK", "RENAME completed");
}

int cmd_subscribe(struct imap_req *r)
{
	char name[IMAP_ATOM_MAX], dir[IMAPD_PATH_MAX];
	int rc = 0, add = strncasecmp(r->p.s + strlen(r->tag) + 1, "SUBSCRIBE", 9) == 0;

	if (!only_mailbox_arg(r, name, dir, &rc))
		return rc;
	if (strcasecmp(name, "INBOX") == 0)
		strcpy(name, "INBOX");
	if (add && !exists(dir))   /* RFC 3501 6.3.6 lets a server refuse this */
		return reply(r, "NO", "[NONEXISTENT] No such mailbox");
	if (subs_change(r->c, name, add) < 0)
		return reply(r, "NO", "[SERVERBUG] Cannot save the subscriptions");
	return reply(r, "OK", "%s completed", add ? "SUBSCRIBE" : "UNSUBSCRIBE");
}

/* ---- writing messages: APPEND, COPY/MOVE, EXPUNGE ----------------------------- */

/* A fresh unique message name with `flags` into out. */
static void new_name(char *out, size_t cap, uint64_t size, const char *flags)
{
	struct timeval tv;
	char host[64];

	gettimeofday(&tv, NULL);
	if (gethostname(host, sizeof host) < 0 || strpbrk(host, "/:,"))
		strcpy(host, "postern");
	host[sizeof host - 1] = '\0';
	/* Workers write APPENDs too: the counter is shared. */
	snprintf(out, cap, "%lld.M%06ldP%dQ%lu.%s,S=%llu:2,%s", (long long)tv.tv_sec,
		 (long)tv.tv_usec, (int)getpid(), __atomic_add_fetch(&name_counter, 1, __ATOMIC_RELAXED),
		 host, (unsigned long long)size, flags);
}

/* Writes data as a new message in cur/ of dir (durably). 0 or -1. */
static int store_message(const char *dir, const char *data, size_t len, const char *flags,
			 time_t when, char *name, size_t cap)
{
	char tmp[IMAPD_PATH_MAX * 2], fin[IMAPD_PATH_MAX * 2], sub[IMAPD_PATH_MAX + 8];
	int fd;
	size_t off = 0;

	new_name(name, cap, len, flags);
	snprintf(tmp, sizeof tmp, "%s/tmp/%s", dir, name);
	snprintf(fin, sizeof fin, "%s/cur/%s", dir, name);
	if ((fd = fs_open_nofollow(tmp, O_WRONLY | O_CREAT | O_EXCL, FS_MAIL_FILE_MODE)) < 0)
		return -1;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (when > 0) {
		struct timespec ts[2] = { { when, 0 }, { when, 0 } };

		futimens(fd, ts);
	}
	if (off < len || fsync(fd) < 0 || close(fd) < 0 || rename(tmp, fin) < 0) {
		unlink(tmp);
		return -1;
	}
	snprintf(sub, sizeof sub, "%s/cur", dir);
	return fs_fsync_dir(sub);
}

/* The UID the index gave to message `name` in dir (0 if unknown). */
static uint32_t uid_of(const char *dir, const char *name, uint32_t *validity)
{
	struct imap_index ix;
	char err[256];
	uint32_t uid = 0;

	if (imap_index_open(&ix, dir) == 0 && imap_index_sync(&ix, err, sizeof err) == 0)
		for (size_t i = ix.n; i-- > 0 && !uid;)
			if (strcmp(ix.m[i].name, name) == 0)
				uid = ix.m[i].uid;
	*validity = ix.uidvalidity;
	imap_index_free(&ix);
	return uid;
}

/* RFC 3501 9 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz". */
static time_t parse_datetime(const char *s)
{
	static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	struct tm tm = { 0 };
	char m[4];
	int zone, sign;
	const char *q;

	if (sscanf(s, "%2d-%3s-%4d %2d:%2d:%2d %d", &tm.tm_mday, m, &tm.tm_year, &tm.tm_hour,
		   &tm.tm_min, &tm.tm_sec, &zone) != 7 || !(q = strstr(mon, m)) || strlen(m) != 3)
		return -1;
	tm.tm_mon = (int)(q - mon) / 3;
	tm.tm_year -= 1900;
	sign = zone < 0 ? -1 : 1;
	zone *= sign;
	return timegm(&tm) - sign * ((zone / 100) * 3600 + (zone % 100) * 60);
}

/* The durable write goes to a worker (auth.c), the answer comes from
 * append_done; without workers both run here. */
static int append_start(struct imap_req *r, const char *dir, const char *data, size_t len,
			const char *flags, time_t when)
{
	struct imapd_conn *c = r->c;
	struct append_job *j = calloc(1, sizeof *j);

	if (!j)
		return reply(r, "NO", "[SERVERBUG] Out of memory");
	snprintf(j->dir, sizeof j->dir, "%s", dir);
	snprintf(j->flags, sizeof j->flags, "%s", flags);
	j->data = data;
	j->len = len;
	j->when = when;
	c->append = j;
	c->job = JOB_APPEND;
	snprintf(c->job_tag, sizeof c->job_tag, "%s", r->tag);
	if (pool_submit(c->d, c) == 0)
		return 0;
	append_work(j);
	append_done(c);
	return 0;
}

/*
 * Would `incoming` more bytes put the user over quota (the user's quota=
 * in the users file, else mailbox-quota)? 1 over, 0 fits, -1 unknown.
 * The usage is the whole Maildir (every folder), read only when a limit
 * is set (deliver.h).
 */
static int over_quota(struct imapd_conn *c, uint64_t incoming)
{
	struct deliver_ctx dc = { .db = &c->d->users, .mail_root = c->d->o.mail_root,
				  .quota_check = 1, .quota = c->d->mailbox_quota };
	uint64_t limit = deliver_quota_of(&dc, c->user);
	unsigned long long used;
	unsigned long count;

	if (limit == 0)
		return 0;
	if (maildir_usage(c->root, &used, &count) < 0)
		return -1;
	return used + incoming > limit || used + incoming < used;
}

/* The refusal of RFC 9208 section 7 / RFC 5530 section 3: NO [OVERQUOTA]. */
static int quota_reply(struct imap_req *r, int over)
{
	if (over < 0)
		return reply(r, "NO", "[UNAVAILABLE] Cannot read the mailbox usage");
	return reply(r, "NO", "[OVERQUOTA] Mailbox quota exceeded");
}

int cmd_append(struct imap_req *r)
{
	char name[IMAP_ATOM_MAX], dir[IMAPD_PATH_MAX], flags[MAILDIR_FLAGS_MAX + 1] = "";
	char date[64];
	const char *data;
	size_t len, dl;
	time_t when = 0;
	int rc = 0;

	if (!sp_mailbox_arg(r, name, dir, &rc))
		return rc;
	if (imap_sp(&r->p) < 0)
		return bad_args(r);
	if (imap_peek(&r->p) == '(') {
		struct kw kw;

		kw_load(dir, &kw);
		rc = exists(dir) ? flags_parse(&r->p, dir, &kw, flags, sizeof flags)
				 : flags_parse(&r->p, NULL, NULL, flags, sizeof flags);
		if (rc == -1 || imap_sp(&r->p) < 0)
			return bad_args(r);
		if (rc == -2)
			return reply(r, "NO", "[LIMIT] No room for another keyword in this mailbox");
	}
	if (imap_peek(&r->p) == '"') {
		if (imap_string(&r->p, date, sizeof date, &dl) < 0 || imap_sp(&r->p) < 0)
			return bad_args(r);
		if ((when = parse_datetime(date)) < 0)
			return reply(r, "BAD", "Invalid date-time");
	}
	if (imap_literal_ref(&r->p, &data, &len) < 0 || imap_eol(&r->p) < 0)
		return bad_args(r);
	if (!exists(dir))
		return reply(r, "NO", "[TRYCREATE] No such mailbox");
	if ((rc = over_quota(r->c, len)) != 0)
		return quota_reply(r, rc);
	return append_start(r, dir, data, len, flags, when);
}

void append_work(struct append_job *j)
{
	j->rc = store_message(j->dir, j->data, j->len, j->flags, j->when, j->file, sizeof j->file);
	if (j->rc == 0 && imap_index_add(j->dir, j->file, &j->uid, &j->validity) < 0)
		j->uid = uid_of(j->dir, j->file, &j->validity);
}

void append_done(struct imapd_conn *c)
{
	struct append_job *j = c->append;
	struct imap_req r = { .c = c };

	snprintf(r.tag, sizeof r.tag, "%s", c->job_tag);
	c->append = NULL;
	if (j->rc < 0)
		reply(&r, "NO", "[SERVERBUG] Cannot store the message");
	else if (c->state == ST_SELECTED && strcmp(c->ix.dir, j->dir) == 0)
		mbox_update(c, 1);
	if (j->rc == 0 && j->uid)   /* RFC 4315 */
		reply(&r, "OK", "[APPENDUID %u %u] APPEND completed", j->validity, j->uid);
	else if (j->rc == 0)
		reply(&r, "OK", "APPEND completed");
	free(j);
}

int cmd_expunge(struct imap_req *r)
{
	struct imapd_conn *c = r->c;
	struct imap_seqset set = { 0 };
	char path[IMAPD_PATH_MAX * 2];

	if (r->uid && (imap_sp(&r->p) < 0 || imap_seqset(&r->p, &set) < 0))
		return bad_args(r);
	if (imap_eol(&r->p) < 0) {
		imap_seqset_free(&set);
		return bad_args(r);
	}
	if (c->readonly) {
		imap_seqset_free(&set);
		return reply(r, "NO", "[READ-ONLY] Mailbox is read-only");
	}
	for (size_t i = 0; i < c->ix.n; i++) {
		if (!strchr(c->ix.m[i].flags, 'T') ||
		    (r->uid && !imap_seqset_has(&set, c->ix.m[i].uid, c->ix.uidnext - 1)))
			continue;
		if (msg_locate(c, i) == 0 && imap_index_path(&c->ix, i, path, sizeof path) == 0)
			unlink(path);
	}
	imap_seqset_free(&set);
	mbox_update(c, 1);
	return reply(r, "OK", "EXPUNGE completed");
}

int cmd_close(struct imap_req *r)
{
	struct imapd_conn *c = r->c;
	char path[IMAPD_PATH_MAX * 2];

	if (imap_eol(&r->p) < 0)
		return bad_args(r);
	/* RFC 3501 6.4.2: expunge silently, unless read-only. */
	for (size_t i = 0; i < c->ix.n && !c->readonly; i++)
		if (strchr(c->ix.m[i].flags, 'T') && msg_locate(c, i) == 0 &&
		    imap_index_path(&c->ix, i, path, sizeof path) == 0)
			unlink(path);
	mbox_unselect(c);
	return reply(r, "OK", "CLOSE completed");
}


/* The UIDs the destination's index gave to the copied files (0: unknown). */
static void copied_uids(const char *dir, char (*names)[300], size_t n, uint32_t *uids,
			uint32_t *validity)
{
	struct imap_index ix;
	char err[256];

	memset(uids, 0, n * sizeof *uids);
	*validity = 0;
	if (imap_index_open(&ix, dir) < 0 || imap_index_sync(&ix, err, sizeof err) < 0) {
		imap_index_free(&ix);
		return;
	}
	for (size_t k = 0; k < n; k++)   /* new ones are at the end: search backwards */
		for (size_t i = ix.n; i-- > 0 && !uids[k];)
			if (strncmp(ix.m[i].name, names[k], ix.m[i].baselen) == 0)
				uids[k] = ix.m[i].uid;
	*validity = ix.uidvalidity;
	imap_index_free(&ix);
}

/* "[COPYUID v src dst]" (RFC 4315 3) as an untagged OK (MOVE, RFC 6851
 * 4.3) or the start of the tagged one; 0 when a UID is unknown. */
static int copyuid(struct imapd_conn *c, const char *prefix, uint32_t v, const uint32_t *src,
		   const uint32_t *dst, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (!dst[k])
			return 0;
	out_fmt(c, "%s[COPYUID %u ", prefix, v);
	for (int side = 0; side < 2; side++) {
		for (size_t k = 0; k < n; k++)
			out_fmt(c, "%s%u", k ? "," : "", side ? dst[k] : src[k]);
		out_fmt(c, side ? "]" : " ");
	}
	return 1;
}

/* Bytes of the n messages at positions pos of the selected mailbox. */
static uint64_t copy_size(const struct imapd_conn *c, const size_t *pos, size_t n)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += c->ix.m[pos[i]].size;
	return sum;
}

int cmd_copy(struct imap_req *r)
{
	struct imapd_conn *c = r->c;
	struct imap_seqset set;
	char name[IMAP_ATOM_MAX], dir[IMAPD_PATH_MAX], src[IMAPD_PATH_MAX * 2];
	char dst[IMAPD_PATH_MAX * 2], sub[IMAPD_PATH_MAX + 8];
	int move = strncasecmp(r->p.s + strlen(r->tag) + 1 + (r->uid ? 4 : 0), "MOVE", 4) == 0;
	size_t *pos = NULL, n = 0, done = 0;
	char (*files)[300] = NULL;
	uint32_t *uids = NULL, validity = 0;
	int rc = 0;

	if (imap_sp(&r->p) < 0 || imap_seqset(&r->p, &set) < 0)
		return bad_args(r);
	if (!only_mailbox_arg(r, name, dir, &rc)) {
		imap_seqset_free(&set);
		return rc;
	}
	if (!exists(dir) || (move && c->readonly)) {
		imap_seqset_free(&set);
		return reply(r, "NO", move && c->readonly ? "[READ-ONLY] Read-only mailbox"
							  : "[TRYCREATE] No such mailbox");
	}
	rc = set_select(c, &set, r->uid, &pos, &n);
	imap_seqset_free(&set);
	if (rc < 0)
		return reply(r, "BAD", "Invalid message numbers");
	/* COPY adds to the user's usage; MOVE within the one Maildir does not
	 * (link, then unlink), so a user over quota can still move mail out
	 * to Trash and expunge it (RFC 9208 section 7 concerns growth). */
	if (!move && (rc = over_quota(c, copy_size(c, pos, n))) != 0) {
		free(pos);
		return quota_reply(r, rc);
	}
	if (n <= COPYUID_MAX && n > 0) {
		files = calloc(n, sizeof *files);
		uids = calloc(2 * n, sizeof *uids);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct imap_msg *m = &c->ix.m[pos[i]];
		char file[300];

		new_name(file, sizeof file, m->size, m->flags);
		msg_locate(c, pos[i]);   /* renamed by someone else meanwhile? */
		imap_index_path(&c->ix, pos[i], src, sizeof src);
		snprintf(dst, sizeof dst, "%s/cur/%s", dir, file);
		rc = link(src, dst);
		if (rc == 0 && move)
			unlink(src);
		if (rc == 0 && files) {
			snprintf(files[done], sizeof files[done], "%s", file);
			uids[done++] = m->uid;
		}
	}
	snprintf(sub, sizeof sub, "%s/cur", dir);
	fs_fsync_dir(sub);
	free(pos);
	if (rc < 0) {
		free(files);
		free(uids);
		return reply(r, "NO", "[SERVERBUG] Copy failed");
	}
	if (files && done == n)
		copied_uids(dir, files, n, uids + n, &validity);
	if (move) {
		if (files && done == n && copyuid(c, "* OK ", validity, uids, uids + n, n))
			out_fmt(c, " Moved\r\n");
		mbox_update(c, 1);
		rc = reply(r, "OK", "MOVE completed");
	} else if (files && done == n) {
		out_fmt(c, "%s OK ", r->tag);
		if (copyuid(c, "", validity, uids, uids + n, n))
			out_fmt(c, " ");
		out_fmt(c, "COPY completed\r\n");
	} else {
		rc = reply(r, "OK", "COPY completed");
	}
	free(files);
	free(uids);
	return rc;
}
