/*
 * log.h - logging through syslog with consistent key=value fields.
 *
 * Every line a daemon writes about a connection carries the same fields, in
 * the same order, before the message:
 *
 *     session=3f2a9c01 peer=192.168.77.20:51234 user=alice queue=1A2B: accepted ...
 *
 * (empty fields are left out). The service name is the syslog tag
 * (openlog with LOG_PID), so syslogd adds "postern-smtpd[123]:".
 *
 * Forgery: whatever reaches a log line from outside (user names, addresses,
 * envelope data in the message) cannot start a new line or fake one. The
 * whole line is passed through log_sanitize: control characters (0x00-0x1f,
 * 0x7f) and bytes >= 0x80 become \xHH. Field values also have spaces and
 * '=' escaped, so a user name cannot add a fake "queue=" field, and are cut
 * at LOG_VALUE_MAX bytes; the line is cut at LOG_LINE_MAX. Cut text ends
 * with "...". Bound long values in the message with a precision ("%.100s").
 *
 * Foreground and tests: log_open(..., LOG_DEST_STDERR) writes the same
 * lines to stderr, prefixed "service[pid]: level: ".
 *
 * Memory: a struct log_fields is a fixed ~200 bytes kept per connection.
 * Nothing here allocates, exits or aborts.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#include <syslog.h>

#define LOG_LINE_MAX 1024	/* bytes in one line, fields included */
#define LOG_VALUE_MAX 64	/* bytes kept of one field value (with NUL) */
#define LOG_SESSION_LEN 8	/* hex digits in a session id */
#define LOG_PEER_MAX 56		/* "[v6 address]:port" with NUL */
#define LOG_SERVICE_MAX 32	/* bytes of the service name kept */

/* Destinations for log_open. */
enum { LOG_DEST_SYSLOG = 0, LOG_DEST_STDERR = 1 };

/* The fields of one session; all strings, "" when unknown. Set them with
 * the log_set_* functions (which sanitize), or at least NUL-terminate. */
struct log_fields {
	char session[LOG_SESSION_LEN + 1];
	char peer[LOG_PEER_MAX];
	char user[LOG_VALUE_MAX];
	char queue[LOG_VALUE_MAX];
};

/* Starts logging as `service` (the syslog tag: keep the string alive) to
 * facility (LOG_MAIL for mail daemons, LOG_DAEMON otherwise), to syslog or
 * stderr. May be called again (after a fork, or to switch destination). */
void log_open(const char *service, int facility, int dest);

/* Switches between LOG_DEST_SYSLOG and LOG_DEST_STDERR. */
void log_set_dest(int dest);

/* Drops messages less important than maxprio (LOG_INFO drops LOG_DEBUG).
 * The default keeps everything up to LOG_INFO. */
void log_set_level(int maxprio);

/* Closes the syslog connection. */
void log_close(void);

/* Logs one line at prio with the fields f (may be NULL) before the
 * message formatted from fmt. */
void log_msg(int prio, const struct log_fields *f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The same with a va_list. */
void log_vmsg(int prio, const struct log_fields *f, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/*
 * Start-up failures only (STYLE.md: fatal() at start-up or on a broken
 * invariant, never for what a client did): logs fmt at LOG_ERR and exits
 * with code (100 permanent, 111 temporary).
 */
void log_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Formats the line log_msg would write (fields, ": ", message; sanitized,
 * cut at cap - 1 bytes and at LOG_LINE_MAX) into out. Returns its length. */
size_t log_format(char *out, size_t cap, const struct log_fields *f,
	const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The same with a va_list. */
size_t log_vformat(char *out, size_t cap, const struct log_fields *f,
	const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

/* Copies len bytes of src into out (cap bytes, NUL-terminated), escaping
 * control characters and bytes >= 0x80 as \xHH, and, with field set, also
 * spaces and '='. Escapes are never split; text that does not fit is cut
 * and ends with "...". Returns the length written. Applying it twice
 * changes nothing more. */
size_t log_sanitize(char *out, size_t cap, const char *src, size_t len, int field);

/* Clears f and gives it a fresh random session id. */
void log_fields_init(struct log_fields *f);

/* Writes a new random session id (LOG_SESSION_LEN hex digits and a NUL).
 * Falls back to a counter mixed with the time and pid when the kernel has
 * no randomness to give, so ids stay distinct. */
void log_session_id(char out[LOG_SESSION_LEN + 1]);

/* Sets the peer field from a socket address (AF_INET "a.b.c.d:port",
 * AF_INET6 "[addr]:port", AF_UNIX "local"). Returns 0, or -1 (field "?"). */
int log_set_peer(struct log_fields *f, const struct sockaddr *sa, socklen_t salen);

/* Sets the user / queue field (sanitized, cut to LOG_VALUE_MAX; NULL clears). */
void log_set_user(struct log_fields *f, const char *user);
void log_set_queue(struct log_fields *f, const char *queue);

#endif
