/*
 * alerts.h - the alert rules, shared by the dashboard (admind's "alerts"
 * operation) and the alert mails (`postern alerts check`), so the page and
 * the mails always agree (docs/web.md "Alerts").
 *
 * Three steps, each testable alone:
 *   alerts_gather  measures the box (disk, queue, fetch status records,
 *                  the TLS certificate, runit's service state) into facts;
 *   alerts_eval    the rules: facts -> the alerts in force now, each with a
 *                  stable key ("disk", "fetch:acme", ...) and a sentence;
 *   alerts_merge   de-duplication against the state file: an alert is
 *                  mailed once when it starts and once when it clears,
 *                  never again while it lasts.
 *
 * State file (written atomically): one line per alert that is on, or whose
 * mail is still to be sent: "FLAG\tSINCE\tKEY\tTEXT" with FLAG
 *   S  started, the start mail not sent yet
 *   A  active, the start mail sent
 *   C  cleared, the clear mail not sent yet
 * A mail is sent only after the state saying it is due is on disk, and the
 * flag changes only after the mail is: a crash repeats nothing that was
 * delivered (the mails carry exactly-once keys, deliver.h) and loses none.
 */
#ifndef POSTERN_ALERTS_H
#define POSTERN_ALERTS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define ALERT_DISK_PCT 90                /* data partition use that raises an alert */
#define ALERT_QUEUE_MAX 50               /* queued messages: the queue is growing */
#define ALERT_QUEUE_STUCK_S (4 * 3600)   /* oldest message waiting longer: stuck */
#define ALERT_FETCH_FAILURES 3           /* failed polls in a row of one account */
#define ALERT_RELAY_FAILURES 3           /* failed smart-host sessions in a row */
#define ALERT_CERT_DAYS 14               /* the certificate expires within */
#define ALERT_FETCH_MAX 32               /* accounts looked at (config.h allows 32) */
#define ALERT_SVC_MAX 32                 /* services looked at */
#define ALERT_MAX 64                     /* alerts in force / in the state */
#define ALERT_KEY_MAX 80
#define ALERT_TEXT_MAX 400
#define ALERT_STATE_MAX 65536            /* bytes of the state file */

struct alert_fetch {
	char name[STATUS_NAME_MAX + 1];
	int have;                        /* a status record exists */
	int result;                      /* enum status_result */
	unsigned failures;
	int64_t last_ok;
};

struct alert_service {
	char name[32];
	int up;                          /* runit's stat says "run" */
	int restarting;                  /* not stopped, and status_svc_restarting */
	struct status_svc exits;         /* its recent exits (status.h) */
};

/* What alerts_gather measured; -1 / 0 where unknown. */
struct alert_facts {
	int64_t now;
	int disk_pct;                    /* -1: unknown */
	int queued;                      /* -1: unknown */
	int64_t oldest_queued;           /* created time of the oldest; 0: none */
	int nfetch;
	struct alert_fetch fetch[ALERT_FETCH_MAX];
	int64_t cert_not_after;          /* 0: unknown or no certificate */
	int nsvc;
	struct alert_service svc[ALERT_SVC_MAX];
	struct alert_fetch relay;        /* relayd's "relay-smarthost" record */
	char firewall[STATUS_DETAIL_MAX + 1]; /* firewall-rules record in fallback: its detail */
};

struct alert {
	char key[ALERT_KEY_MAX + 1];
	char text[ALERT_TEXT_MAX + 1];
};

/* Where alerts_gather looks (NULL: that part is skipped). */
struct alert_paths {
	const char *data;                /* statvfs: the data partition */
	const char *queue;               /* the outbound queue */
	const char *conf;                /* the configuration: the accounts */
	const char *status;              /* status records (status.h) */
	const char *cert;                /* the box's TLS certificate (PEM) */
	const char *service_dir;         /* enabled runit services */
};

/* Measures the box into f (now: the time of the check). Never fails:
 * what cannot be measured stays unknown. */
void alerts_gather(const struct alert_paths *p, int64_t now, struct alert_facts *f);

/* The rules: the alerts in force for f into out (at most max), in a fixed
 * order. Returns their number. */
int alerts_eval(const struct alert_facts *f, struct alert *out, int max);

/* ---- de-duplication ---- */

enum alert_flag { ALERT_STARTED = 'S', ALERT_ACTIVE = 'A', ALERT_CLEARED = 'C' };

struct alert_state {
	int n;
	struct alert_entry {
		int flag;                /* enum alert_flag */
		int64_t since;
		struct alert a;
	} e[ALERT_MAX];
};

/* Parses the state file's text (bounded: ALERT_STATE_MAX bytes, ALERT_MAX
 * lines, keys and texts within their sizes, no control bytes). 0 or -1. */
int alert_state_parse(const char *text, size_t len, struct alert_state *st);

/* The state's text into buf; its length, or -1 when it does not fit. */
int alert_state_format(const struct alert_state *st, char *buf, size_t cap);

/* Loads path (a missing file is an empty state). 0 or -1. */
int alert_state_load(const char *path, struct alert_state *st);

/* Saves st to path atomically and durably (0600). 0 or -1. */
int alert_state_save(const char *path, const struct alert_state *st);

/*
 * The next state from the previous one and the alerts in force now:
 *   new alert                 -> S (since now)
 *   S or A still in force     -> kept (text refreshed)
 *   C in force again          -> A (its clear mail was never sent)
 *   A no longer in force      -> C
 *   S no longer in force      -> dropped (its start mail was never sent)
 *   C no longer in force      -> kept until its mail is sent
 */
void alerts_merge(struct alert_state *st, const struct alert *cur, int ncur, int64_t now);

/* The exactly-once delivery key of entry e's pending mail. */
void alert_mail_key(const struct alert_entry *e, char *out, size_t cap);

/* The pending mail of entry e (flag S: started, C: cleared) as an RFC 5322
 * message (CRLF lines) for box (the host name) into buf. Its length or -1. */
int alert_mail_format(const struct alert_entry *e, const char *box, const char *to,
		      int64_t now, char *buf, size_t cap);

#endif
