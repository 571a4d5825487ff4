/*
 * session.c - one fetch of one provider account (RFC 1939, RFC 2449,
 * RFC 2595, RFC 5034), following the exactly-once steps of uidl.h:
 *
 *   connect -> [implicit TLS] -> greeting -> CAPA -> [STLS, handshake,
 *   CAPA again] -> AUTH PLAIN or USER/PASS -> UIDL, LIST -> for each new
 *   message: RETR into a spool file, deliver (keyed), record the UIDL,
 *   DELE (delete mode) -> QUIT (commits the deletions).
 *
 * The password is sent only on a connection whose TLS handshake completed
 * with the server verified (tls.h fails closed inside the handshake).
 */
#include <errno.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <bearssl.h>

#include "deliver.h"
#include "fetchd.h"
#include "fsutil.h"
#include "maildir.h"
#include "pem.h"
#include "uidl.h"

/* Bytes of a message searched for its Message-ID (no-UIDL servers). */
#define GUARD_HEAD_MAX 65536
/* Local users one message may go to (multidrop). */
#define TARGETS_MAX 64
/* Longest command line we send: RFC 2449 section 4 allows 255 octets,
 * but PASS and AUTH PLAIN lines carry a password of up to FETCH_PASS_MAX. */
#define CMD_MAX (2 * FETCH_PASS_MAX + 512)
/* Messages retrieved, delivered and committed together (group commit:
 * one Maildir commit and one UIDL fdatasync per batch); the first batches
 * of a session are smaller (1, 2, 4, ...). */
#define FETCH_BATCH_MSGS 64
/* Bytes (by LIST sizes) one batch stages in tmp/ before its commit. */
#define FETCH_BATCH_BYTES (8ULL * 1024 * 1024)
/* Longest Maildir path. */
#define FETCH_USERDIR_MAX 1024

struct msg {
	unsigned no;
	uint64_t size;
	int have_size;
	int dup;			/* its UIDL is listed twice: left alone */
	char uid[UIDL_ID_MAX + 1];
};

/* A message of the current batch. */
struct item {
	const struct msg *m;
	char id[UIDL_ID_MAX + 1];	/* its UIDL, or its guard */
	char key[UIDL_KEY_MAX];
	int delivered;			/* staged in the Maildir batch */
	int again;			/* delivered before a crash */
	uint64_t bytes;
	size_t ntargets;
	char targets[TARGETS_MAX][USERS_NAME_MAX + 1];
};

struct batch {
	size_t n, ndele;
	uint64_t bytes;
	unsigned retr[FETCH_BATCH_MSGS];
	unsigned dele[2 * FETCH_BATCH_MSGS];
	struct item it[FETCH_BATCH_MSGS];	/* last: select_batch clears the rest */
};

struct sess {
	const struct fetch_paths *p;
	const struct config *cfg;
	const struct config_account *a;
	struct fetch_stats *st;
	int multidrop;
	struct users_db users;		/* multidrop: the users file */
	char targets[TARGETS_MAX][USERS_NAME_MAX + 1];
	const char *tv[TARGETS_MAX];
	size_t ntargets;
	struct log_fields lf;
	struct conn *c;
	struct pop3_reader *r;
	struct pop3_lines *lines;
	struct uidl_store store;
	struct pop3_capa capa;
	struct pem_anchors anchors;
	struct tls_client_config tcfg;
	struct msg *m;
	size_t nm, capm;
	struct msg **sorted;		/* m by UIDL, for pruning */
	int no_uidl;
	int spool;
	struct maildir_batch *mb;	/* staged deliveries of the batch */
	struct batch *batch;
	size_t batch_max;		/* slow start up to FETCH_BATCH_MSGS */
	char capa_buf[POP3_CAPA_MAX];
	size_t capa_len;
};

/* ---- commands ------------------------------------------------------------ */

/* Notes why the session failed for the status record (fetch_stats.result);
 * the first cause wins: later errors are consequences. */
static void note(struct sess *s, int result, const char *detail)
{
	if (s->st->result != STATUS_OK)
		return;
	s->st->result = result;
	snprintf(s->st->detail, sizeof s->st->detail, "%s", detail);
}

/* Reads the reply to a command (what: for the log). multi: a multi-line
 * body goes to sink. Returns 1 for +OK, 0 for -ERR, -1 when the
 * connection failed (logged). */
static int reply(struct sess *s, const char *what, int multi, pop3_sink_fn sink, void *arg,
	uint64_t body_max, int64_t idle_ms)
{
	pop3_reader_start(s->r, multi, 1, body_max, sink, arg);
	if (conn_response(s->c, s->r, idle_ms) < 0) {
		log_msg(LOG_ERR, &s->lf, "%.20s: %s%s%.200s", what, s->c->err,
			s->r->status_len ? "; server said: " : "", s->r->status);
		note(s, STATUS_PROTOCOL, s->c->err);
		return -1;
	}
	return s->r->ok;
}

/* Sends line (CRLF added; "" sends nothing: the greeting) and reads the
 * reply as reply() does. secret: the line holds a credential, never
 * logged. */
static int cmd(struct sess *s, const char *line, int secret, int multi,
	pop3_sink_fn sink, void *arg, uint64_t body_max, int64_t idle_ms)
{
	char buf[CMD_MAX + 3];
	const char *what = secret ? "login" : line[0] ? line : "greeting";
	int n = snprintf(buf, sizeof buf, "%s\r\n", line);
	if (n < 0 || (size_t)n >= sizeof buf)
		return -1;
	int rc = line[0] ? conn_write(s->c, buf, (size_t)n, tls_now_ms() + FETCH_REPLY_MS) : 0;
	memset(buf, 0, sizeof buf);
	if (rc < 0) {
		log_msg(LOG_ERR, &s->lf, "%.20s: %s", what, s->c->err);
		return -1;
	}
	return reply(s, what, multi, sink, arg, body_max, idle_ms);
}

static int capa_sink(void *arg, const void *data, size_t len)
{
	struct sess *s = arg;
	if (s->capa_len + len > sizeof s->capa_buf)
		return 0;	/* RFC 2449: ignore what does not fit */
	memcpy(s->capa_buf + s->capa_len, data, len);
	s->capa_len += len;
	return 0;
}

static int get_capa(struct sess *s)
{
	s->capa_len = 0;
	int rc = cmd(s, "CAPA", 0, 1, capa_sink, s, 0, FETCH_REPLY_MS);
	memset(&s->capa, 0, sizeof s->capa);
	if (rc == 1)
		pop3_capa_parse(s->capa_buf, s->capa_len, &s->capa);
	return rc < 0 ? -1 : 0;
}

/* ---- TLS and login ------------------------------------------------------- */

static int is_ip(const char *h)
{
	unsigned char b[16];
	return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static int tls_setup(struct sess *s)
{
	char err[256];
	memset(&s->tcfg, 0, sizeof s->tcfg);
	if (s->a->verify == CONFIG_VERIFY_PIN) {
		s->tcfg.have_pin = 1;
		memcpy(s->tcfg.pin, s->a->pin.sha256, 32);
		return 0;
	}
	if (pem_anchors_load(&s->anchors, s->a->ca_file, err, sizeof err) < 0) {
		log_msg(LOG_ERR, &s->lf, "CA bundle %s: %s", s->a->ca_file, err);
		note(s, STATUS_FAILED, err);
		return -1;
	}
	s->tcfg.anchors = s->anchors.ta;
	s->tcfg.anchor_count = s->anchors.count;
	return 0;
}

static int start_tls(struct sess *s)
{
	/* SNI is a host name; an address literal is verified by pin only. */
	const char *name = is_ip(s->a->server) && s->tcfg.have_pin ? NULL : s->a->server;
	if (conn_starttls(s->c, &s->tcfg, name) < 0) {
		log_msg(LOG_ERR, &s->lf, "%s; not sending the password", s->c->err);
		note(s, status_tls_result(s->c->err), s->c->err);
		return -1;
	}
	return 0;
}

/* Greeting, CAPA, STLS (RFC 2595), CAPA again. 0 or -1. */
static int open_session(struct sess *s)
{
	if (conn_connect(s->c, s->a->server, s->a->port, &s->lf) < 0) {
		log_msg(LOG_ERR, &s->lf, "%s", s->c->err);
		note(s, STATUS_UNREACHABLE, s->c->err);
		return -1;
	}
	if (s->a->tls == CONFIG_POP_IMPLICIT && start_tls(s) < 0)
		return -1;
	if (cmd(s, "", 0, 0, NULL, NULL, 0, FETCH_REPLY_MS) != 1) {
		log_msg(LOG_ERR, &s->lf, "no +OK greeting: %.200s", s->r->status);
		note(s, STATUS_PROTOCOL, s->r->status);
		return -1;
	}
	if (get_capa(s) < 0)
		return -1;
	if (s->a->tls == CONFIG_POP_IMPLICIT)
		return 0;
	/* RFC 2595 section 4: STLS only when CAPA lists it; there is no
	 * clear-text fallback. */
	if (!s->capa.stls) {
		log_msg(LOG_ERR, &s->lf, "the server does not offer STLS; not sending the password");
		note(s, STATUS_NO_STLS, "the server does not offer STLS");
		return -1;
	}
	if (cmd(s, "STLS", 0, 0, NULL, NULL, 0, FETCH_REPLY_MS) != 1) {
		log_msg(LOG_ERR, &s->lf, "STLS refused: %.200s; not sending the password", s->r->status);
		note(s, STATUS_NO_STLS, s->r->status);
		return -1;
	}
	if (start_tls(s) < 0)
		return -1;
	/* RFC 2595 section 4: capabilities learnt in clear are discarded. */
	return get_capa(s);
}

static int read_password(struct sess *s, char *pw, size_t cap)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", s->p->secrets, s->a->password_file);
	ssize_t n = fs_read_file(path, pw, cap - 1);
	if (n < 0) {
		log_msg(LOG_ERR, &s->lf, "password file %s: %s", path, strerror(errno));
		note(s, STATUS_PASSWORD, strerror(errno));
		return -1;
	}
	while (n > 0 && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
		pw[--n] = '\0';
	return 0;
}

/* AUTH PLAIN (RFC 5034) when offered, else USER/PASS (RFC 1939). */
static int login(struct sess *s, const char *pw)
{
	char line[CMD_MAX];
	int rc;
	/* Belt and braces: the dialogue above cannot get here in clear. */
	if (!s->c->tls || !tls_established(s->c->tls)) {
		log_msg(LOG_CRIT, &s->lf, "refusing to send credentials without TLS");
		return -1;
	}
	if (s->capa.sasl_plain) {
		char b64[CMD_MAX - 16];
		if (pop3_auth_plain(s->a->user, pw, b64, sizeof b64) < 0)
			return -1;
		snprintf(line, sizeof line, "AUTH PLAIN %.*s", (int)(sizeof line - 12), b64);
		memset(b64, 0, sizeof b64);
		rc = cmd(s, line, 1, 0, NULL, NULL, 0, FETCH_REPLY_MS);
	} else {
		snprintf(line, sizeof line, "USER %.*s", CONFIG_STR_MAX, s->a->user);
		rc = cmd(s, line, 1, 0, NULL, NULL, 0, FETCH_REPLY_MS);
		if (rc == 1) {
			snprintf(line, sizeof line, "PASS %.*s", FETCH_PASS_MAX, pw);
			rc = cmd(s, line, 1, 0, NULL, NULL, 0, FETCH_REPLY_MS);
		}
	}
	memset(line, 0, sizeof line);
	if (rc == 0) {
		log_msg(LOG_ERR, &s->lf, "login as %.100s failed: %.200s", s->a->user, s->r->status);
		note(s, STATUS_LOGIN, s->r->status);
	}
	return rc == 1 ? 0 : -1;
}

/* ---- listings ------------------------------------------------------------ */

static struct msg *msg_add(struct sess *s, unsigned no)
{
	if (s->nm >= FETCH_MSGS_MAX)
		return NULL;
	if (s->nm == s->capm) {
		size_t nc = s->capm ? 2 * s->capm : 256;
		struct msg *n = realloc(s->m, nc * sizeof *n);
		if (!n)
			return NULL;
		s->m = n;
		s->capm = nc;
	}
	struct msg *m = &s->m[s->nm++];
	memset(m, 0, sizeof *m);
	m->no = no;
	return m;
}

static struct msg *msg_find(struct sess *s, unsigned no)
{
	size_t lo = 0, hi = s->nm;
	while (lo < hi) {	/* listings come in message-number order */
		size_t mid = (lo + hi) / 2;
		if (s->m[mid].no == no)
			return &s->m[mid];
		if (s->m[mid].no < no)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int on_uidl(void *arg, const char *line, size_t len)
{
	struct sess *s = arg;
	unsigned no;
	char uid[POP3_UIDL_MAX + 1];
	if (pop3_uidl_line(line, len, &no, uid) < 0 || (s->nm && s->m[s->nm - 1].no >= no))
		return -1;	/* malformed or out of order: trust none of it */
	struct msg *m = msg_add(s, no);
	if (!m)
		return -1;
	memcpy(m->uid, uid, sizeof m->uid);
	return 0;
}

static int on_list(void *arg, const char *line, size_t len)
{
	struct sess *s = arg;
	unsigned no;
	uint64_t size;
	if (pop3_list_line(line, len, &no, &size) < 0)
		return -1;
	struct msg *m = s->no_uidl ? msg_add(s, no) : msg_find(s, no);
	if (m) {
		m->size = size;
		m->have_size = 1;
	}
	return s->no_uidl && !m ? -1 : 0;
}

static int cmp_uid(const void *a, const void *b)
{
	const struct msg *const *x = a, *const *y = b;
	return strcmp((*x)->uid, (*y)->uid);
}

/* RFC 1939 section 7: unique-ids are unique within the maildrop. A server
 * listing one twice is broken: both are left on the server. */
static void mark_dups(struct sess *s)
{
	struct msg **v = malloc(s->nm * sizeof *v + 1);
	if (!v)
		return;
	s->sorted = v;
	for (size_t i = 0; i < s->nm; i++)
		v[i] = &s->m[i];
	qsort(v, s->nm, sizeof *v, cmp_uid);
	for (size_t i = 1; i < s->nm; i++)
		if (strcmp(v[i - 1]->uid, v[i]->uid) == 0)
			v[i - 1]->dup = v[i]->dup = 1;
}

static int listing(struct sess *s, const char *what, int (*fn)(void *, const char *, size_t))
{
	pop3_lines_init(s->lines, fn, s);
	int rc = cmd(s, what, 0, 1, pop3_lines_sink, s->lines, 0, FETCH_REPLY_MS);
	if (rc == 1 && pop3_lines_end(s->lines) < 0)
		rc = -1;
	if (rc < 0)
		log_msg(LOG_ERR, &s->lf, "%s listing malformed or connection lost", what);
	return rc;
}

static int keep_listed(void *arg, const char *id)
{
	struct sess *s = arg;
	size_t lo = 0, hi = s->nm;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(s->sorted[mid]->uid, id);
		if (c == 0)
			return 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

static int list_messages(struct sess *s)
{
	int rc = listing(s, "UIDL", on_uidl);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		s->no_uidl = 1;
		s->nm = 0;
		if (s->a->keep) {
			log_msg(LOG_ERR, &s->lf, "the server does not support UIDL: keep mode "
				"cannot tell old messages from new ones; set \"keep no\"");
			return -1;
		}
		log_msg(LOG_WARNING, &s->lf, "the server does not support UIDL; "
			"guarding against duplicates by Message-ID");
	}
	if (listing(s, "LIST", on_list) != 1)
		return -1;
	s->st->listed = (unsigned)s->nm;
	if (s->no_uidl)
		return 0;
	mark_dups(s);
	return 0;
}

/* Drops stored UIDLs the server no longer lists: they cannot come back
 * (RFC 1939 section 7: unique-ids are never reused). */
static void prune(struct sess *s)
{
	char err[256];
	if (!s->sorted)
		return;
	int n = uidl_prune(&s->store, keep_listed, s, err, sizeof err);
	if (n < 0)
		log_msg(LOG_WARNING, &s->lf, "pruning the UIDL store: %s", err);
}

/* ---- one message --------------------------------------------------------- */

static void hex32(const unsigned char *h, char *out)
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* Finds the Message-ID header value in the head of the message (up to
 * the blank line ending the header, RFC 5322 section 2.1). */
static int find_message_id(const char *h, size_t n, const char **v, size_t *vl)
{
	static const char name[] = "message-id:";
	size_t nl = sizeof name - 1;
	for (size_t i = 0; i < n; ) {
		if (h[i] == '\n')
			return -1;	/* end of the header */
		if (n - i > nl && strncasecmp(h + i, name, nl) == 0) {
			size_t b = i + nl, e;
			/* RFC 5322 section 2.2.3: skip blanks and folding. */
			while (b < n && (h[b] == ' ' || h[b] == '\t' ||
			       (h[b] == '\n' && b + 1 < n && (h[b + 1] == ' ' || h[b + 1] == '\t'))))
				b++;
			for (e = b; e < n && h[e] != '\n'; e++)
				;
			while (e > b && (h[e - 1] == ' ' || h[e - 1] == '\t' || h[e - 1] == '\r'))
				e--;
			if (e == b)
				return -1;
			*v = h + b;
			*vl = e - b;
			return 0;
		}
		const char *nx = memchr(h + i, '\n', n - i);
		if (!nx)
			return -1;
		i = (size_t)(nx - h) + 1;
	}
	return -1;
}

/* The guard of a message from a server without UIDL (uidl.h): SHA-256 of
 * its Message-ID, or of the whole message when it has none. */
static int guard_id(struct sess *s, char out[UIDL_ID_MAX + 1])
{
	br_sha256_context ctx;
	unsigned char h[32];
	char *head = malloc(GUARD_HEAD_MAX);
	if (!head)
		return -1;
	ssize_t n = pread(s->spool, head, GUARD_HEAD_MAX, 0);
	const char *v;
	size_t vl;
	br_sha256_init(&ctx);
	if (n >= 0 && find_message_id(head, (size_t)n, &v, &vl) == 0) {
		br_sha256_update(&ctx, "mid\n", 4);
		br_sha256_update(&ctx, v, vl);
	} else {
		br_sha256_update(&ctx, "body\n", 5);
		off_t off = 0;
		while ((n = pread(s->spool, head, GUARD_HEAD_MAX, off)) > 0) {
			br_sha256_update(&ctx, head, (size_t)n);
			off += n;
		}
	}
	free(head);
	if (n < 0)
		return -1;
	br_sha256_out(&ctx, h);
	memcpy(out, "m:", 2);
	hex32(h, out + 2);
	return 0;
}

/* The local users the spooled message goes to, into s->tv. 0 or -1. */
static int targets(struct sess *s)
{
	s->ntargets = 0;
	if (!s->multidrop) {
		s->tv[s->ntargets++] = s->a->deliver_to;
		return 0;
	}
	char *head = malloc(GUARD_HEAD_MAX);
	if (!head)
		return -1;
	ssize_t n = pread(s->spool, head, GUARD_HEAD_MAX, 0);
	int loop = 0, k = n < 0 ? -1 : multidrop_targets(head, (size_t)n, &s->users,
		s->cfg->global.mail_domain, s->a->catch_all, s->targets, TARGETS_MAX, &loop);
	free(head);
	if (k <= 0)
		return -1;
	if (loop)
		log_msg(LOG_WARNING, &s->lf, "mail loop suspected (too many Received: fields); "
			"delivering to the catch-all %s only", s->a->catch_all);
	for (int i = 0; i < k; i++)
		s->tv[s->ntargets++] = s->targets[i];
	return 0;
}

/* Checks the data partition; 0 go on, -1 stop (nothing is deleted). */
static int space_ok(struct sess *s, uint64_t bytes)
{
	int rc = maildir_fs_check(s->p->mail, bytes, FETCH_FS_RESERVE);
	if (rc == 0)
		return 0;
	log_msg(LOG_ERR, &s->lf, "data partition %s; fetching stopped, messages stay on the server",
		rc > 0 ? "nearly full" : "cannot be checked");
	note(s, STATUS_DISK_FULL, rc > 0 ? "data partition nearly full" : "data partition cannot be checked");
	return -1;
}

/* ---- batches -------------------------------------------------------------- */

/* Sends "VERB N" for each of nos[0..n) in one write: RFC 2449 section 6.6
 * (PIPELINING) lets the client send commands without waiting. 0 or -1. */
static int send_pipelined(struct sess *s, const char *verb, const unsigned *nos, size_t n)
{
	char *buf = malloc(n * 24 + 1);
	size_t len = 0;
	int rc = -1;
	if (!buf)
		return -1;
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(buf + len, "%s %u\r\n", verb, nos[i]);
	if (conn_write(s->c, buf, len, tls_now_ms() + FETCH_REPLY_MS) == 0)
		rc = 0;
	else
		log_msg(LOG_ERR, &s->lf, "%s: %s", verb, s->c->err);
	free(buf);
	return rc;
}

/* Sends "VERB N" for message i of n: all at once (pipelined) before the
 * first reply, or each just before its own reply. 0 or -1. */
static int send_nth(struct sess *s, const char *verb, const unsigned *nos, size_t n, size_t i)
{
	char line[32];
	if (s->capa.pipelining)
		return i == 0 ? send_pipelined(s, verb, nos, n) : 0;
	snprintf(line, sizeof line, "%s %u\r\n", verb, nos[i]);
	if (conn_write(s->c, line, strlen(line), tls_now_ms() + FETCH_REPLY_MS) == 0)
		return 0;
	log_msg(LOG_ERR, &s->lf, "%s: %s", verb, s->c->err);
	return -1;
}

/* DELE for every message of the batch's list. 0, or -1 (connection). */
static int dele_all(struct sess *s, struct batch *b)
{
	for (size_t i = 0; i < b->ndele; i++) {
		if (send_nth(s, "DELE", b->dele, b->ndele, i) < 0)
			return -1;
		int rc = reply(s, "DELE", 0, NULL, NULL, 0, FETCH_REPLY_MS);
		if (rc < 0)
			return -1;
		if (rc == 1)
			s->st->deleted++;
		else
			log_msg(LOG_WARNING, &s->lf, "DELE %u refused: %.200s", b->dele[i],
				s->r->status);
	}
	return 0;
}

/* Picks the next batch from message *i on: RETR for new messages, DELE
 * for those recorded before (delete mode). */
static void select_batch(struct sess *s, struct batch *b, size_t *i)
{
	memset(b, 0, offsetof(struct batch, it));
	for (; *i < s->nm; (*i)++) {
		const struct msg *m = &s->m[*i];
		if (b->n == s->batch_max || b->ndele == FETCH_BATCH_MSGS ||
		    (b->n && b->bytes + m->size > FETCH_BATCH_BYTES))
			break;
		if (m->dup) {
			log_msg(LOG_WARNING, &s->lf, "message %u: UIDL %.70s listed twice; "
				"left on the server", m->no, m->uid);
		} else if (!s->no_uidl && uidl_has(&s->store, m->uid)) {
			s->st->already++;
			if (!s->a->keep)
				b->dele[b->ndele++] = m->no;
		} else if (m->have_size && s->a->max_size && m->size > s->a->max_size) {
			log_msg(LOG_WARNING, &s->lf, "message %u: %llu bytes, over max-size; "
				"left on the server", m->no, (unsigned long long)m->size);
			s->st->skipped_big++;
		} else {
			struct item *it = &b->it[b->n];
			it->m = m;
			it->delivered = it->again = 0;
			it->ntargets = 0;
			b->retr[b->n++] = m->no;
			b->bytes += m->size;
		}
	}
	/* Slow start: a session that dies early loses little work. */
	if (s->batch_max < FETCH_BATCH_MSGS)
		s->batch_max *= 2;
}

/* Reads one RETR reply into the spool. 1 retrieved, 0 skip, -1 connection. */
static int read_retr(struct sess *s, const struct msg *m)
{
	if (spool_reset(s->spool) < 0) {
		log_msg(LOG_ERR, &s->lf, "spool: %s", strerror(errno));
		return -1;
	}
	int rc = reply(s, "RETR", 1, spool_sink, &s->spool, s->a->max_size, FETCH_IDLE_MS);
	if (rc < 0)
		return -1;	/* lost mid-RETR: nothing recorded, nothing deleted */
	if (rc == 0) {
		log_msg(LOG_WARNING, &s->lf, "RETR %u refused: %.200s", m->no, s->r->status);
		return 0;
	}
	if (s->r->too_big) {
		log_msg(LOG_WARNING, &s->lf, "message %u is larger than max-size %llu; "
			"left on the server", m->no, (unsigned long long)s->a->max_size);
		s->st->skipped_big++;
		return 0;
	}
	return 1;
}

/* A target user is over quota: the message stays on the server (not
 * recorded, not deleted) and the next poll tries again; the other
 * messages go on. The status record names the user. Returns 0. */
static int over_quota(struct sess *s, const struct item *it, const char *err)
{
	log_msg(LOG_WARNING, &s->lf, "message %u: %s; left on the server", it->m->no, err);
	if (s->st->over_quota++ == 0)
		snprintf(s->st->detail, sizeof s->st->detail, "%.300s", err);
	return 0;
}

/* Adds the spooled message to the Maildir batch through the one delivery
 * path (deliver.h), keyed by account and id. 0, or -1 (stop fetching). */
static int stage_item(struct sess *s, struct batch *b, struct item *it)
{
	char err[512];
	if (!s->no_uidl)
		memcpy(it->id, it->m->uid, sizeof it->id);
	else if (guard_id(s, it->id) < 0)
		return -1;
	if (s->no_uidl && uidl_has(&s->store, it->id)) {
		s->st->already++;
		b->dele[b->ndele++] = it->m->no;
		return 0;
	}
	if (uidl_key(s->a->h.name, it->id, it->key, sizeof it->key) < 0 || targets(s) < 0)
		return -1;
	struct deliver_ctx dc = { .db = &s->users, .mail_root = s->p->mail, .quota_check = 1,
		.quota = s->cfg->global.mailbox_quota };
	struct deliver_env env = { .from = "", .rcpts = s->tv, .nrcpt = s->ntargets };
	int n = deliver_users(&dc, s->tv, s->ntargets, s->spool, &env, it->key, s->mb, err,
		sizeof err);
	if (n == DELIVER_ERR_QUOTA)
		return over_quota(s, it, err);
	if (n < 0) {
		log_msg(LOG_ERR, &s->lf, "delivery to %s%s %s: %s; left on the server", s->tv[0],
			s->ntargets > 1 ? " and others" : "",
			n == DELIVER_ERR_REJECTED ? "refused" : "failed", err);
		if (n != DELIVER_ERR_REJECTED)
			note(s, STATUS_DELIVERY, err);
		return n == DELIVER_ERR_REJECTED ? 0 : -1;
	}
	it->delivered = 1;
	it->again = n == 0;
	it->bytes = s->r->body_len;
	it->ntargets = s->ntargets;
	for (size_t k = 0; k < s->ntargets; k++)
		snprintf(it->targets[k], sizeof it->targets[k], "%s", s->tv[k]);
	return 0;
}

/* After the UIDLs are recorded: markers dropped, counted, logged, DELE
 * queued. */
static void item_done(struct sess *s, struct batch *b, struct item *it)
{
	for (size_t k = 0; k < it->ntargets; k++) {
		char dir[FETCH_USERDIR_MAX];
		if (deliver_maildir_path(s->p->mail, it->targets[k], dir, sizeof dir) == 0)
			maildir_key_forget(dir, it->key);
	}
	s->st->fetched++;
	s->st->bytes += it->bytes;
	log_msg(LOG_INFO, &s->lf, "message %u uidl=%.70s: %llu bytes %s %s%s", it->m->no,
		it->id, (unsigned long long)it->bytes,
		it->again ? "delivered before a restart, to" : "delivered to",
		it->targets[0], it->ntargets > 1 ? " and others" : "");
	if (!s->a->keep)
		b->dele[b->ndele++] = it->m->no;
}

/* Group commit: every staged message durable (maildir_batch_commit), then
 * their UIDLs recorded with one fdatasync, and only then DELE (uidl.h
 * steps 3-6 for a whole batch). 0 or -1. */
static int commit_batch(struct sess *s, struct batch *b)
{
	char err[512];
	const char *ids[FETCH_BATCH_MSGS];
	size_t n = 0;
	if (maildir_batch_commit(s->mb, err, sizeof err) < 0) {
		log_msg(LOG_ERR, &s->lf, "delivery failed: %s; left on the server", err);
		note(s, STATUS_DELIVERY, err);
		return -1;
	}
	for (size_t i = 0; i < b->n; i++)
		if (b->it[i].delivered)
			ids[n++] = b->it[i].id;
	if (n && uidl_record_many(&s->store, ids, n, err, sizeof err) < 0) {
		log_msg(LOG_ERR, &s->lf, "recording UIDLs: %s; left on the server", err);
		note(s, STATUS_DELIVERY, err);
		return -1;
	}
	for (size_t i = 0; i < b->n; i++)
		if (b->it[i].delivered)
			item_done(s, b, &b->it[i]);
	return 0;
}

/* One batch: RETR (pipelined), stage, commit, record, DELE (pipelined).
 * Returns 0 to go on, -1 to stop the session. */
static int fetch_batch(struct sess *s, struct batch *b)
{
	int lost = 0, failed = 0;
	if (b->n && space_ok(s, b->bytes) < 0) {
		dele_all(s, b);		/* recorded before: still deleted */
		return -1;
	}
	for (size_t i = 0; i < b->n && !lost; i++) {
		if (failed && !s->capa.pipelining)
			break;
		if (send_nth(s, "RETR", b->retr, b->n, i) < 0) {
			lost = 1;
			break;
		}
		int rc = read_retr(s, b->it[i].m);
		if (rc < 0)
			lost = 1;
		/* After a failure the pipelined replies are still read, so
		 * the session stays in step for QUIT. */
		else if (rc == 1 && !failed && stage_item(s, b, &b->it[i]) < 0)
			failed = 1;
	}
	if (commit_batch(s, b) < 0)
		return -1;
	if (lost)
		return -1;
	return dele_all(s, b) < 0 || failed ? -1 : 0;
}

/* ---- the session ---------------------------------------------------------- */

static void quit(struct sess *s)
{
	/* RFC 1939 section 6: the deletions happen only now (UPDATE state). */
	if (cmd(s, "QUIT", 0, 0, NULL, NULL, 0, FETCH_REPLY_MS) == 1)
		s->st->committed = 1;
	else
		log_msg(LOG_WARNING, &s->lf, "QUIT not acknowledged: no message was deleted; "
			"they are deleted next time without being delivered twice");
}

static int run(struct sess *s)
{
	char pw[FETCH_PASS_MAX + 1], err[256];
	if (users_load(&s->users, s->p->users, err, sizeof err) < 0) {
		if (s->multidrop) {
			log_msg(LOG_ERR, &s->lf, "multidrop: %s", err);
			return -1;
		}
		/* Only per-user quota= overrides are lost: mailbox-quota holds. */
		log_msg(LOG_WARNING, &s->lf, "users file: %s; per-user quotas unknown", err);
		users_init(&s->users);
	}
	if (read_password(s, pw, sizeof pw) < 0 || tls_setup(s) < 0)
		return -1;
	int rc = open_session(s);
	if (rc == 0)
		rc = login(s, pw);
	memset(pw, 0, sizeof pw);
	if (rc == 0)
		rc = list_messages(s);
	if (rc < 0)
		return -1;
	if (!s->no_uidl)
		prune(s);
	s->spool = spool_open(s->store.dir);
	if (s->spool < 0) {
		log_msg(LOG_ERR, &s->lf, "spool in %s: %s", s->store.dir, strerror(errno));
		return -1;
	}
	s->batch_max = 1;
	for (size_t i = 0; i < s->nm && rc == 0; ) {
		select_batch(s, s->batch, &i);
		rc = fetch_batch(s, s->batch);
	}
	if (s->c->fd >= 0 && (rc == 0 || s->r->st == POP3_R_DONE))
		quit(s);
	return rc;
}

static int sess_alloc(struct sess *s)
{
	s->c = calloc(1, sizeof *s->c);
	s->r = calloc(1, sizeof *s->r);
	s->lines = calloc(1, sizeof *s->lines);
	s->batch = malloc(sizeof *s->batch);
	s->mb = maildir_batch_new();
	if (s->c)
		s->c->fd = -1;
	return s->c && s->r && s->lines && s->batch && s->mb ? 0 : -1;
}

static void sess_free(struct sess *s)
{
	if (s->c)
		conn_close(s->c);
	if (s->spool >= 0)
		close(s->spool);
	uidl_close(&s->store);
	if (s->tcfg.anchors)
		pem_anchors_free(&s->anchors);
	free(s->c);
	free(s->r);
	free(s->lines);
	free(s->batch);
	maildir_batch_free(s->mb);	/* anything not committed is removed */
	free(s->m);
	free(s->sorted);
	users_free(&s->users);
}

int fetch_account(const struct fetch_paths *p, const struct config *cfg,
	const struct config_account *a, struct fetch_stats *st)
{
	struct sess *s = calloc(1, sizeof *s);
	if (!s)
		return -1;
	memset(st, 0, sizeof *st);
	s->p = p;
	s->cfg = cfg;
	s->a = a;
	s->multidrop = strcmp(a->deliver_to, "multidrop") == 0;
	users_init(&s->users);
	s->st = st;
	s->spool = -1;
	s->store.fd = s->store.lockfd = -1;
	log_fields_init(&s->lf);
	log_set_user(&s->lf, a->h.name);
	snprintf(s->lf.peer, sizeof s->lf.peer, "%.40s:%u", a->server, (unsigned)a->port);
	char err[512];
	int rc = -1;
	if (sess_alloc(s) == 0) {
		rc = uidl_open(&s->store, p->fetch, a->h.name, err, sizeof err);
		if (rc < 0)
			log_msg(LOG_ERR, &s->lf, "fetch state: %s", err);
		else if (rc == 1)
			log_msg(LOG_INFO, &s->lf, "another fetch of this account is running");
		else
			rc = run(s);
	}
	sess_free(s);
	free(s);
	return rc;
}
