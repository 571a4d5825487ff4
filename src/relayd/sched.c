/*
 * sched.c - the queue runner's decisions: which message is due, what a
 * session's results mean for each recipient, backoff, the delay notice,
 * giving up, and the DSN (RFC 3464) to the local sender.
 *
 * A message leaves the queue only once no recipient is pending: each was
 * accepted by the smart host (250 after the final ".") or failed for good
 * (5xx, or given up) and the DSN for the failed ones is in the sender's
 * Maildir. A crash at any point repeats at most the last attempt.
 *
 * Times in envelopes are "queue time": Unix seconds, sped up by the time
 * scale (--time-scale, tests only), so backoff and give-up are testable
 * without waiting.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver.h"
#include "dsn.h"
#include "relayd.h"

/* Backoff after the n-th failure (issue 5): 5m, 15m, 30m, 1h, 2h, then 4h. */
static const int64_t backoff_s[] = { 300, 900, 1800, 3600, 7200, 14400 };
#define NBACKOFF ((unsigned)(sizeof backoff_s / sizeof backoff_s[0]))
/* A DSN that could not be delivered is tried again after this long. */
#define DSN_RETRY_S 300

int64_t relay_now(const struct relayd *d)
{
	int64_t ms = evl_clock_ms() - d->t0_mono;

	return d->t0_real + (int64_t)((double)ms * d->scale / 1000.0);
}

int64_t relay_backoff(unsigned attempts)
{
	return backoff_s[attempts == 0 ? 0 : attempts > NBACKOFF ? NBACKOFF - 1 : attempts - 1];
}

/* ---- the table of known messages ---------------------------------------- */

static struct relay_entry *find(struct relayd *d, const char *id)
{
	for (size_t i = 0; i < d->nent; i++)
		if (strcmp(d->ent[i].id, id) == 0)
			return &d->ent[i];
	return NULL;
}

static void drop(struct relayd *d, const char *id)
{
	struct relay_entry *e = find(d, id);

	if (e) {
		*e = d->ent[--d->nent];
	}
}

/* When the envelope wants its next attempt (0: now, nothing pending). */
static int64_t env_due(const struct queue_env *env)
{
	int64_t due = INT64_MAX;

	for (int i = 0; i < env->nrcpt; i++)
		if (env->rcpt[i].state == QUEUE_PENDING && env->rcpt[i].next_attempt < due)
			due = env->rcpt[i].next_attempt;
	return due == INT64_MAX ? 0 : due;
}

static struct relay_entry *add(struct relayd *d, const char *id)
{
	struct relay_entry *e = find(d, id);

	if (e)
		return e;
	if (d->nent == d->capent) {
		size_t cap = d->capent ? d->capent * 2 : 256;
		void *p = realloc(d->ent, cap * sizeof *d->ent);

		if (!p)
			return NULL;
		d->ent = p;
		d->capent = cap;
	}
	e = &d->ent[d->nent++];
	memset(e, 0, sizeof *e);
	memcpy(e->id, id, sizeof e->id);
	return e;
}

void sched_update(struct relayd *d, const char *id)
{
	struct queue_env *env;
	struct relay_entry *e = find(d, id);

	if (!queue_id_valid(id) || (e && e->busy))
		return;
	env = malloc(sizeof *env);
	if (!env)
		return;
	if (queue_env_load(&d->q, id, env) < 0) {
		if (errno == ENOENT)
			drop(d, id);
	} else {
		int known = e != NULL;

		if ((e = add(d, id))) {
			e->due = env_due(env);
			e->seen = 1;
			if (!known)
				log_msg(LOG_INFO, NULL, "queue=%s: from=<%s> %d recipient(s), next attempt "
					"in %llds", id, env->from, env->nrcpt,
					(long long)(e->due - relay_now(d)));
		}
	}
	free(env);
}

static int rescan_one(const char *id, void *arg)
{
	sched_update(arg, id);
	return 0;
}

void sched_rescan(struct relayd *d)
{
	/* Reload every envelope, then forget what is no longer queued (busy
	 * entries stay: their session settles them). */
	size_t k = 0;

	d->last_rescan = evl_clock_ms();
	for (size_t i = 0; i < d->nent; i++)
		d->ent[i].seen = 0;
	if (queue_list(&d->q, rescan_one, d) < 0) {
		log_msg(LOG_ERR, NULL, "cannot list the queue %s: %m", d->p.queue);
		return;
	}
	for (size_t i = 0; i < d->nent; i++)
		if (d->ent[i].busy || d->ent[i].seen)
			d->ent[k++] = d->ent[i];
	d->nent = k;
}

void sched_flush(struct relayd *d)
{
	log_msg(LOG_INFO, NULL, "flush: every queued message is due now");
	for (size_t i = 0; i < d->nent; i++)
		d->ent[i].due = 0;
}

/* ---- DSN ---------------------------------------------------------------- */

/* The original header of the queued message (malloc'd). */
static char *read_header(int fd, size_t *len)
{
	char *buf = malloc(DSN_HEADERS_MAX);
	ssize_t n = buf ? pread(fd, buf, DSN_HEADERS_MAX, 0) : -1;

	*len = n > 0 ? dsn_header_len(buf, (size_t)n) : 0;
	return buf;
}

/* Delivers text to the local sender (or the submitting user). 0 or -1. */
static int deliver_dsn(struct relayd *d, const struct queue_env *env, const char *text, size_t len)
{
	/* A bounce is a small system message: never refused for quota. */
	struct deliver_ctx ctx = { .db = &d->users, .domain = d->cfg->global.mail_domain,
				   .mail_root = d->p.mail, .quota_check = 0 };
	const char *to[1] = { env->from };
	struct deliver_env de = { .from = "", .rcpts = to, .nrcpt = 1, .queue_id = env->id };
	char err[256];
	int fd = memfd_create("dsn", MFD_CLOEXEC), r = DELIVER_ERR_TEMP;

	if (fd < 0 || write(fd, text, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	r = deliver_local(&ctx, fd, &de, NULL, err, sizeof err);
	if (r == DELIVER_ERR_NOUSER && env->user[0]) {
		to[0] = env->user;   /* a foreign sender address: tell who submitted it */
		r = deliver_local(&ctx, fd, &de, NULL, err, sizeof err);
	}
	close(fd);
	if (r == DELIVER_ERR_NOUSER || r == DELIVER_ERR_REJECTED) {
		log_msg(LOG_WARNING, NULL, "queue=%s: DSN for <%s> dropped: %s", env->id, env->from, err);
		return 0;
	}
	if (r < 0)
		log_msg(LOG_ERR, NULL, "queue=%s: DSN delivery failed: %s", env->id, err);
	return r < 0 ? -1 : 0;
}

/* Sends a DSN for the recipients in state `which` (FAILED, or PENDING for
 * a delay notice). 0 (sent, or nothing to send) or -1 (try later). */
static int send_dsn(struct relayd *d, const struct queue_env *env, int fd, int which)
{
	struct dsn_rcpt r[QUEUE_RCPTS_MAX];
	struct dsn_info in = { .reporting_mta = d->ehlo, .domain = d->cfg->global.mail_domain,
			       .to = env->from, .queue_id = env->id,
			       .remote_mta = d->cfg->smarthost.host, .arrival = env->created,
			       .now = relay_now(d),
			       .retry_until = env->created + d->cfg->smarthost.give_up };
	int n = 0, len, rc = -1;
	size_t hlen;
	char *hdr, *out;

	for (int i = 0; i < env->nrcpt; i++)
		if (env->rcpt[i].state == which)
			r[n++] = (struct dsn_rcpt){ env->rcpt[i].addr,
				which == QUEUE_FAILED ? DSN_FAILED : DSN_DELAYED,
				env->rcpt[i].reply, relay_now(d) };
	/* RFC 3464 / RFC 5321 4.5.5: never a DSN about a DSN. */
	if (n == 0 || !env->from[0])
		return 0;
	hdr = read_header(fd, &hlen);
	out = malloc(RELAY_DSN_MAX);
	if (hdr && out && (len = dsn_format(&in, r, n, hdr, hlen, out, RELAY_DSN_MAX)) > 0)
		rc = deliver_dsn(d, env, out, (size_t)len);
	free(hdr);
	free(out);
	if (rc == 0)
		log_msg(LOG_NOTICE, NULL, "queue=%s: %s notice for %d recipient(s) sent to <%s>",
			env->id, which == QUEUE_FAILED ? "failure" : "delay", n, env->from);
	return rc;
}

/* ---- results ------------------------------------------------------------ */

static int pending_count(const struct queue_env *env)
{
	int n = 0;

	for (int i = 0; i < env->nrcpt; i++)
		n += env->rcpt[i].state == QUEUE_PENDING;
	return n;
}

static int has_state(const struct queue_env *env, int state)
{
	for (int i = 0; i < env->nrcpt; i++)
		if (env->rcpt[i].state == state)
			return 1;
	return 0;
}

/* A temporary failure of recipient r: backoff, or give up. */
static void defer(struct relayd *d, struct queue_env *env, struct queue_rcpt *r, const char *why)
{
	int64_t now = relay_now(d);

	r->attempts++;
	if (now - env->created >= (int64_t)d->cfg->smarthost.give_up) {
		char msg[QUEUE_REPLY_MAX + 1];

		snprintf(msg, sizeof msg, "gave up after %u attempts: %s", r->attempts, why);
		snprintf(r->reply, sizeof r->reply, "%s", msg);
		r->state = QUEUE_FAILED;
		return;
	}
	snprintf(r->reply, sizeof r->reply, "%s", why);
	r->next_attempt = now + relay_backoff(r->attempts);
}

void sched_commit(struct relayd *d)
{
	int n = d->done.n;

	evl_timer_stop(&d->loop, &d->commit);
	if (queue_batch_commit(&d->q, &d->done) < 0)
		log_msg(LOG_ERR, NULL, "queue %s: syncing %d removal(s) failed: %m", d->p.queue, n);
}

static void on_commit(struct evloop *l, struct evl_timer *t)
{
	(void)l;
	sched_commit(t->ctx);
}

/* A finished message leaves the queue: its envelope goes now, and the
 * removal becomes durable with the others finished within
 * RELAY_COMMIT_MS (a crash before that sends them again, never loses). */
static void remove_done(struct relayd *d, const char *id)
{
	if (queue_batch_remove(&d->q, &d->done, id) < 0) {
		log_msg(LOG_ERR, NULL, "queue=%s: cannot remove: %m", id);
		return;
	}
	log_msg(LOG_INFO, NULL, "queue=%s: done, removed from the queue", id);
	if (!evl_timer_armed(&d->commit))
		evl_timer_start(&d->loop, &d->commit, RELAY_COMMIT_MS, 0);
}

/* After an attempt: the delay notice, the bounce, then save or remove.
 * Closes the lock fd. */
static void settle(struct relayd *d, struct queue_env *env, int fd)
{
	int64_t now = relay_now(d);
	struct relay_entry *e;

	if (!env->notified && pending_count(env) > 0 &&
	    now - env->created >= (int64_t)d->cfg->smarthost.delay_notice &&
	    send_dsn(d, env, fd, QUEUE_PENDING) == 0)
		env->notified = 1;
	/* 5xx and give-ups are reported at once, even while others wait. */
	if (send_dsn(d, env, fd, QUEUE_FAILED) == 0)
		for (int i = 0; i < env->nrcpt; i++)
			if (env->rcpt[i].state == QUEUE_FAILED)
				env->rcpt[i].state = QUEUE_BOUNCED;
	if (pending_count(env) == 0 && !has_state(env, QUEUE_FAILED)) {
		remove_done(d, env->id);
		drop(d, env->id);
		close(fd);
		return;
	}
	if (queue_env_save(&d->q, env) < 0)
		log_msg(LOG_ERR, NULL, "queue=%s: cannot update the envelope: %m", env->id);
	close(fd);
	if ((e = find(d, env->id))) {
		e->busy = 0;
		e->due = pending_count(env) ? env_due(env) : now + DSN_RETRY_S;
	}
}

/* Loads and locks a due message into s. 1 taken; 0 skipped (locked by
 * someone else, unreadable: tried again at the next rescan); -1 the table
 * changed (the entry was dropped or finished): start over. */
static int take_one(struct relayd *d, struct relay_sess *s, struct relay_entry *e)
{
	int fd = queue_lock(&d->q, e->id);

	if (fd < 0 && errno == ENOENT) {
		drop(d, e->id);
		return -1;
	}
	if (fd < 0 || queue_env_load(&d->q, e->id, &s->env) < 0) {
		if (fd >= 0)
			close(fd);
		e->due = relay_now(d) + DSN_RETRY_S;
		return 0;
	}
	s->n = 0;
	for (int i = 0; i < s->env.nrcpt; i++)
		if (s->env.rcpt[i].state == QUEUE_PENDING) {
			s->idx[s->n] = i;
			s->rcpts[s->n++] = s->env.rcpt[i].addr;
		}
	e->busy = 1;
	if (s->n == 0) {   /* nothing left to send: finish (bounce, remove) */
		settle(d, &s->env, fd);
		return -1;
	}
	s->msgfd = fd;
	return 1;
}

int sched_take(struct relayd *d, struct relay_sess *s)
{
	int64_t now = relay_now(d);

	for (size_t i = 0; i < d->nent; i++) {
		struct relay_entry *e = &d->ent[i];

		int took;

		if (e->busy || e->due > now)
			continue;
		if ((took = take_one(d, s, e)) <= 0) {
			if (took < 0)
				i = (size_t)-1;   /* the table changed: start over */
			continue;
		}
		relay_masquerade(d->cfg, s->env.from, s->from, sizeof s->from);
		if (smtpc_begin(&s->c, s->from, s->rcpts, s->n) < 0) {
			for (int k = 0; k < s->n; k++) {
				struct queue_rcpt *r = &s->env.rcpt[s->idx[k]];

				r->state = QUEUE_FAILED;
				snprintf(r->reply, sizeof r->reply, "invalid envelope");
			}
			settle(d, &s->env, s->msgfd);
			i = (size_t)-1;
			continue;
		}
		s->have_msg = 1;
		s->chunk_len = s->chunk_off = 0;
		s->body_eof = 0;
		log_set_queue(&s->lf, s->env.id);
		return 1;
	}
	return 0;
}

void sched_done(struct relayd *d, struct relay_sess *s)
{
	int sent = 0;

	for (int k = 0; k < s->n; k++) {
		const struct smtpc_rcpt *res = smtpc_rcpt_result(&s->c, k);
		struct queue_rcpt *r = &s->env.rcpt[s->idx[k]];

		if (res->code / 100 == 2) {
			r->state = QUEUE_SENT;
			snprintf(r->reply, sizeof r->reply, "%s", res->text);
			sent++;
		} else if (res->code / 100 == 5) {
			r->state = QUEUE_FAILED;
			snprintf(r->reply, sizeof r->reply, "%s", res->text);
		} else {
			defer(d, &s->env, r, res->code ? res->text : "no reply");
		}
	}
	log_msg(LOG_INFO, &s->lf, "from=<%s> relayed as <%s>: %d of %d recipient(s) accepted",
		s->env.from, s->from, sent, s->n);
	s->have_msg = 0;
	settle(d, &s->env, s->msgfd);
	s->msgfd = -1;
	log_set_queue(&s->lf, NULL);
}

/* Defers every pending recipient of env with why. */
static void defer_all(struct relayd *d, struct queue_env *env, const char *why)
{
	for (int i = 0; i < env->nrcpt; i++)
		if (env->rcpt[i].state == QUEUE_PENDING)
			defer(d, env, &env->rcpt[i], why);
}

void sched_session_failed(struct relayd *d, struct relay_sess *s, const char *why)
{
	int64_t now = relay_now(d);

	log_msg(LOG_WARNING, &s->lf, "smart host %s: %s", d->cfg->smarthost.host, why);
	if (s->have_msg) {
		s->have_msg = 0;
		defer_all(d, &s->env, why);
		settle(d, &s->env, s->msgfd);
		s->msgfd = -1;
	}
	if (s->reached_idle)
		return;
	/* The smart host is unusable (down, TLS not verified, AUTH refused):
	 * every due message records why and backs off. */
	for (size_t i = 0; i < d->nent; i++) {
		struct relay_entry *e = &d->ent[i];
		int r;

		if (e->busy || e->due > now)
			continue;
		if ((r = take_one(d, s, e)) <= 0) {
			if (r < 0)
				i = (size_t)-1;
			continue;
		}
		defer_all(d, &s->env, why);
		settle(d, &s->env, s->msgfd);
		s->msgfd = -1;
		i = (size_t)-1;
	}
}

/* ---- scheduling --------------------------------------------------------- */

static void on_tick(struct evloop *l, struct evl_timer *t)
{
	struct relayd *d = t->ctx;

	(void)l;
	/* A safety net under inotify (an overflow is handled at once): every
	 * envelope is read again once a minute. */
	if (evl_clock_ms() - d->last_rescan >= RELAY_RESCAN_MS)
		sched_rescan(d);
	sched_kick(d);
}

void sched_init(struct relayd *d)
{
	evl_timer_init(&d->tick, on_tick, d);
	evl_timer_init(&d->commit, on_commit, d);
}

void sched_kick(struct relayd *d)
{
	int64_t now = relay_now(d), next = INT64_MAX;
	int due = 0, active = sess_count(d), waiting_pw = 0;

	if (!d->cfg->smarthost.host[0])
		return;   /* no smart host: mail waits (docs/CONFIG.md) */
	for (size_t i = 0; i < d->nent; i++) {
		if (d->ent[i].busy)
			continue;
		if (d->ent[i].due <= now)
			due++;
		else if (d->ent[i].due < next)
			next = d->ent[i].due;
	}
	if (d->pw_error[0] && due && relay_password_retry(d) < 0) {
		due = 0;   /* no password yet: nothing is sent, mail waits */
		waiting_pw = 1;
	}
	while (active < d->nsess_max && active < due && sess_start(d) == 0)
		active++;
	if (d->once && active == 0 && due == 0) {
		evl_stop(&d->loop, 0);
		return;
	}
	int64_t ms = waiting_pw ? RELAY_PASSWORD_RETRY_MS : RELAY_RESCAN_MS;

	if (next != INT64_MAX) {
		double w = (double)(next - now) * 1000.0 / d->scale;

		if (w < (double)ms)
			ms = w < 10 ? 10 : (int64_t)w;
	}
	evl_timer_start(&d->loop, &d->tick, ms, 0);
}

/* ---- masquerading -------------------------------------------------------- */

void relay_masquerade(const struct config *cfg, const char *from, char *out, size_t cap)
{
	const struct config_smarthost *sh = &cfg->smarthost;
	const char *at = strrchr(from, '@');

	/* The null sender stays null (RFC 5321 4.5.5). */
	if (!from[0] || sh->masquerade == CONFIG_MASQ_OFF)
		snprintf(out, cap, "%s", from);
	else if (sh->masquerade == CONFIG_MASQ_LOGIN && sh->user[0])
		snprintf(out, cap, "%s", sh->user);
	else if (sh->masquerade == CONFIG_MASQ_DOMAIN && sh->masquerade_domain[0])
		snprintf(out, cap, "%.*s@%s", at ? (int)(at - from) : (int)strlen(from), from,
			 sh->masquerade_domain);
	else
		snprintf(out, cap, "%s", from);
}
