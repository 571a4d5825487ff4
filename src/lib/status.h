/*
 * status.h - small status records that daemons publish for the dashboard
 * and the alerts (docs/web.md "Status records").
 *
 * One file per subject under a run-time directory (STATUS_DIR_DEFAULT, or
 * $POSTERN_STATUS_DIR): "KIND-NAME", e.g. fetch-acme for the provider
 * account acme. The file is replaced atomically (fs_write_atomic), so a
 * reader sees the old record or the new one, never a part. Its text is
 * "key=value" lines:
 *
 *   kind=fetch
 *   name=acme
 *   time=1764393000         when the poll ended (seconds since the epoch)
 *   result=login            a token of enum status_result
 *   fetched=3               messages delivered by that poll
 *   failures=2              consecutive failed polls (0 after a success)
 *   last-ok=1764392400      the last successful poll (0: never)
 *   detail=...              the daemon's own words (one line, for the log)
 *
 * Readers (admind, the CGI, `postern alerts`) run with other privileges
 * than the writer, so the parser is bounded: at most STATUS_FILE_MAX bytes,
 * lines of at most STATUS_LINE_MAX, unknown keys skipped, control bytes in
 * values refused, numbers range-checked.
 */
#ifndef POSTERN_STATUS_H
#define POSTERN_STATUS_H

#include <stddef.h>
#include <stdint.h>

#define STATUS_DIR_DEFAULT "/run/postern/status"
#define STATUS_FILE_MAX 4096       /* bytes of one record */
#define STATUS_LINE_MAX 512        /* bytes of one line, newline included */
#define STATUS_KIND_MAX 15
#define STATUS_NAME_MAX 63         /* an account name (config.h: CONFIG_NAME_MAX) */
#define STATUS_DETAIL_MAX 300
#define STATUS_GROUP "mail"        /* group that may write the directory */

/* The outcome of one poll (or one delivery attempt for the relay). */
enum status_result {
	STATUS_OK,
	STATUS_UNREACHABLE,   /* name lookup or connect failed, or timed out */
	STATUS_TLS_PIN,       /* the server key does not match the pin */
	STATUS_TLS_NAME,      /* the certificate is for another host name */
	STATUS_TLS_CA,        /* certificate not trusted or expired */
	STATUS_TLS,           /* any other TLS failure */
	STATUS_NO_STLS,       /* the server offers no STLS / STARTTLS */
	STATUS_LOGIN,         /* the server refused the user name or password */
	STATUS_PASSWORD,      /* the password is not stored on the box */
	STATUS_DISK_FULL,     /* the data partition is (nearly) full */
	STATUS_DELIVERY,      /* delivery into the mail store failed */
	STATUS_PROTOCOL,      /* the server broke the protocol or hung up */
	STATUS_FAILED,        /* anything else */
	STATUS_NRESULTS
};

struct status_rec {
	char kind[STATUS_KIND_MAX + 1];
	char name[STATUS_NAME_MAX + 1];
	int64_t time;
	int result;                    /* enum status_result */
	unsigned fetched;
	unsigned failures;
	int64_t last_ok;
	char detail[STATUS_DETAIL_MAX + 1];
};

/* The directory of the records: $POSTERN_STATUS_DIR or the default. */
const char *status_dir(void);

/* The stable token of a result ("ok", "login", ...), "failed" when out of
 * range. */
const char *status_result_token(int result);

/* The result named by token, or -1. */
int status_result_parse(const char *token);

/* The result in plain words for the office manager ("wrong password",
 * "certificate does not match the pin", "server unreachable", ...). */
const char *status_result_text(int result);

/* Classifies a TLS error text of tls.h (pin, host name, trust). */
int status_tls_result(const char *tls_err);

/* Classifies the reason an SMTP client session failed, as relayd words it
 * (smtp-client.h errors, "connect to ...", "cannot resolve ...", TLS
 * errors): a result other than STATUS_OK (STATUS_FAILED when unknown). */
int status_classify(const char *why);

/* The record's text into buf (cap bytes, NUL-terminated); control bytes of
 * detail become blanks. Returns the length, or -1 when it does not fit. */
int status_format(const struct status_rec *r, char *buf, size_t cap);

/* Parses a record's text (len bytes, need not be NUL-terminated). Returns 0,
 * or -1 (too long, a line too long or without '=', a bad number or result,
 * a control byte, kind or name missing or not a safe file name). */
int status_parse(const char *text, size_t len, struct status_rec *r);

/* Reads dir/KIND-NAME (no symlinks). Returns 0, or -1 (errno ENOENT when
 * there is no record yet, EINVAL when it does not parse). */
int status_read(const char *dir, const char *kind, const char *name, struct status_rec *r);

/* Writes r to dir/KIND-NAME atomically and durably, mode 0644. 0 or -1. */
int status_write(const char *dir, const struct status_rec *r);

/* Records the end of one poll of kind/name: result, messages fetched and
 * detail; failures counts on from the previous record (reset by a
 * success), last-ok is kept or set. Returns 0 or -1. */
int status_record(const char *dir, const char *kind, const char *name, int64_t now,
		  int result, unsigned fetched, const char *detail);

/* Creates dir (0775) when missing (not its parents: /run/postern is made
 * at boot) and, when running as root, gives the new directory to group
 * STATUS_GROUP so the unprivileged daemons can write their records. An
 * existing directory is left as it is. Returns 0 or -1. */
int status_dir_init(const char *dir);

/* Calls fn for every record in dir of the given kind (NULL: all), in
 * directory order, at most max records. Returns the number seen, -1 when
 * dir cannot be read. Files that do not parse are skipped. */
int status_list(const char *dir, const char *kind, int max,
		void (*fn)(const struct status_rec *r, void *arg), void *arg);

/* ---- blocked attempts from the firewall's log (docs/firewall.md) ---- */

#define STATUS_FW_PREFIX "postern-fw blocked: "   /* firewall.h FW_LOG_PREFIX */
#define STATUS_FW_ADDR_MAX 63

/* Attempts of one LAN host to one server port, as logged. */
struct status_blocked {
	char src[STATUS_FW_ADDR_MAX + 1];   /* the LAN host */
	char dst[STATUS_FW_ADDR_MAX + 1];   /* the server it tried */
	char proto[8];                      /* "TCP", "UDP" */
	unsigned port;                      /* DPT */
	unsigned long long count;           /* log lines (the log is rate-limited) */
	char last[16];                      /* syslog time of the last one, or "" */
};

/*
 * Scans syslog text (len bytes) for the firewall's blocked-attempt lines
 * (STATUS_FW_PREFIX ... SRC=a DST=b ... PROTO=p ... DPT=n) and counts them
 * per (SRC, DST, PROTO, DPT) into out (max entries; further pairs are
 * dropped). Lines without every field, or with a field too long, are
 * skipped. Returns the number of entries, in order of first appearance.
 */
int status_blocked_parse(const char *text, size_t len, struct status_blocked *out, int max);

/* ---- services that keep restarting (docs/web.md "Service states") ---- */

/*
 * runsv runs a service's ./finish with the exit code of ./run (-1: killed)
 * and the signal; /usr/libexec/postern/svc-finish (as root) appends "TIME
 * CODE SIGNAL" to DIR/exits-NAME, DIR being STATUS_SVC_DIR_DEFAULT (or
 * $POSTERN_SVC_DIR): root's own 0755 directory, not the status records'
 * one, which the daemons' group may write (a planted symlink there would
 * make root append to any file). It keeps the last STATUS_SVC_KEEP lines. A service
 * that ended more than STATUS_SVC_RESTARTS times within STATUS_SVC_WINDOW_S
 * is "restarting": runsv starts it again each time, so runit's stat alone
 * shows it as running.
 */
#define STATUS_SVC_DIR_DEFAULT "/run/postern/svc"
#define STATUS_SVC_RESTARTS 3          /* more exits than this within the window */
#define STATUS_SVC_WINDOW_S 600        /* the window: 10 minutes */
#define STATUS_SVC_KEEP 16             /* lines svc-finish keeps */
#define STATUS_SVC_LINE_MAX 64         /* bytes of one line (longer ones are skipped) */

struct status_svc {
	int exits;                     /* exits in the window before now */
	int64_t last_time;             /* the last exit; 0: none recorded */
	int last_code;                 /* its exit code; -1: killed by last_signal */
	int last_signal;
};

/* The directory of the exit lines: $POSTERN_SVC_DIR or the default. */
const char *status_svc_dir(void);

/* Parses the exit lines of text (len bytes; malformed lines, ones from the
 * future and ones too long are skipped) into s, counting the exits within
 * STATUS_SVC_WINDOW_S before now. */
void status_svc_parse(const char *text, size_t len, int64_t now, struct status_svc *s);

/* Reads dir/exits-NAME (no symlinks; only its last STATUS_FILE_MAX bytes)
 * into s. A missing file is no exits. 0, or -1 (a bad name, unreadable). */
int status_svc_read(const char *dir, const char *name, int64_t now, struct status_svc *s);

/* 1 when s shows a service that keeps restarting, else 0. */
int status_svc_restarting(const struct status_svc *s);

/* The last exit in words into buf: "exit code 3", "killed by signal 11",
 * or "" when none was recorded. */
void status_svc_exit_text(const struct status_svc *s, char *buf, size_t cap);

#endif
