/*
 * log.c - syslog (or stderr) lines with sanitized key=value fields.
 *
 * One process logs as one service, so the destination is process state
 * (as openlog's is). Lines are built in a stack buffer of LOG_LINE_MAX.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_CUT_MARK "..."
#define LOG_ESC_LEN 4		/* "\xHH" */

static const char *log_service = "postern";
static int log_dest = LOG_DEST_SYSLOG;
static int log_maxprio = LOG_INFO;

void log_open(const char *service, int facility, int dest)
{
	if (service && *service)
		log_service = service;
	log_dest = dest;
	closelog();
	openlog(log_service, LOG_PID | LOG_NDELAY, facility);
}

void log_set_dest(int dest)
{
	log_dest = dest;
}

void log_set_level(int maxprio)
{
	log_maxprio = maxprio;
}

void log_close(void)
{
	closelog();
}

/* 1 when byte c must be written as \xHH. */
static int log_must_escape(unsigned char c, int field)
{
	if (c < 0x20 || c >= 0x7f)
		return 1;
	return field && (c == ' ' || c == '=');
}

/* Length of src once escaped. */
static size_t log_escaped_len(const char *src, size_t len, int field)
{
	size_t total = 0;

	for (size_t i = 0; i < len; i++)
		total += log_must_escape((unsigned char)src[i], field) ? LOG_ESC_LEN : 1;
	return total;
}

size_t log_sanitize(char *out, size_t cap, const char *src, size_t len, int field)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, mark = sizeof LOG_CUT_MARK - 1, limit;
	int cut;

	if (cap == 0)
		return 0;
	limit = cap - 1;
	/* the cut mark only when the text does not fit and the mark does */
	cut = log_escaped_len(src, len, field) > limit && limit >= mark;
	if (cut)
		limit -= mark;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];

		if (!log_must_escape(c, field)) {
			if (o + 1 > limit)
				break;
			out[o++] = (char)c;
			continue;
		}
		if (o + LOG_ESC_LEN > limit)
			break;
		out[o++] = '\\';
		out[o++] = 'x';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 15];
	}
	if (cut) {
		memcpy(out + o, LOG_CUT_MARK, mark);
		o += mark;
	}
	out[o] = '\0';
	return o;
}

/* Appends "key=value " for a non-empty value; returns the new length. */
static size_t log_put_field(char *out, size_t cap, size_t o, const char *key,
	const char *val, size_t valcap)
{
	char clean[LOG_VALUE_MAX];
	size_t vlen = strnlen(val, valcap);

	if (vlen == 0 || o >= cap)
		return o;
	log_sanitize(clean, sizeof clean, val, vlen, 1);
	int n = snprintf(out + o, cap - o, "%s%s=%s", o ? " " : "", key, clean);
	if (n < 0)
		return o;
	return (size_t)n >= cap - o ? cap - 1 : o + (size_t)n;
}

/* The fields part of a line (no trailing separator). */
static size_t log_put_fields(char *out, size_t cap, const struct log_fields *f)
{
	size_t o = 0;

	out[0] = '\0';
	if (!f)
		return 0;
	o = log_put_field(out, cap, o, "session", f->session, sizeof f->session);
	o = log_put_field(out, cap, o, "peer", f->peer, sizeof f->peer);
	o = log_put_field(out, cap, o, "user", f->user, sizeof f->user);
	o = log_put_field(out, cap, o, "queue", f->queue, sizeof f->queue);
	return o;
}

size_t log_vformat(char *out, size_t cap, const struct log_fields *f,
	const char *fmt, va_list ap)
{
	char raw[LOG_LINE_MAX + 2];	/* longer than any line: a cut shows */
	size_t o, rawlen;
	int n;

	if (cap == 0)
		return 0;
	if (cap > LOG_LINE_MAX)
		cap = LOG_LINE_MAX;
	o = log_put_fields(out, cap, f);
	if (o && o + 2 < cap) {
		memcpy(out + o, ": ", 2);
		o += 2;
		out[o] = '\0';
	}
	n = vsnprintf(raw, sizeof raw, fmt, ap);
	if (n < 0)
		n = 0;
	rawlen = (size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1;
	return o + log_sanitize(out + o, cap - o, raw, rawlen, 0);
}

size_t log_format(char *out, size_t cap, const struct log_fields *f,
	const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = log_vformat(out, cap, f, fmt, ap);
	va_end(ap);
	return n;
}

static const char *log_level_name(int prio)
{
	static const char *const names[] = { "emerg", "alert", "crit", "err",
		"warning", "notice", "info", "debug" };

	return names[LOG_PRI(prio) & 7];
}

void log_vmsg(int prio, const struct log_fields *f, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	int saved = errno;	/* %m and callers' errno survive */

	if (LOG_PRI(prio) > log_maxprio)
		return;
	errno = saved;
	log_vformat(line, sizeof line, f, fmt, ap);
	if (log_dest == LOG_DEST_STDERR)
		fprintf(stderr, "%.*s[%ld]: %s: %s\n", LOG_SERVICE_MAX, log_service,
			(long)getpid(), log_level_name(prio), line);
	else
		syslog(prio, "%s", line);
	errno = saved;
}

void log_msg(int prio, const struct log_fields *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(prio, f, fmt, ap);
	va_end(ap);
}

void log_session_id(char out[LOG_SESSION_LEN + 1])
{
	static uint32_t counter;
	uint32_t v;

	if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		v = (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 16) ^
			(++counter * 2654435761u);
	}
	snprintf(out, LOG_SESSION_LEN + 1, "%08x", (unsigned)v);
}

void log_fields_init(struct log_fields *f)
{
	memset(f, 0, sizeof *f);
	log_session_id(f->session);
}

int log_set_peer(struct log_fields *f, const struct sockaddr *sa, socklen_t salen)
{
	char a[INET6_ADDRSTRLEN];

	if (sa && sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
		snprintf(f->peer, sizeof f->peer, "%s:%u", a, ntohs(in->sin_port));
		return 0;
	}
	if (sa && sa->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
		snprintf(f->peer, sizeof f->peer, "[%s]:%u", a, ntohs(in6->sin6_port));
		return 0;
	}
	if (sa && sa->sa_family == AF_UNIX) {
		snprintf(f->peer, sizeof f->peer, "local");
		return 0;
	}
	snprintf(f->peer, sizeof f->peer, "?");
	return -1;
}

static void log_set_value(char *dst, size_t cap, const char *val)
{
	if (!val) {
		dst[0] = '\0';
		return;
	}
	log_sanitize(dst, cap, val, strlen(val), 1);
}

void log_set_user(struct log_fields *f, const char *user)
{
	log_set_value(f->user, sizeof f->user, user);
}

void log_set_queue(struct log_fields *f, const char *queue)
{
	log_set_value(f->queue, sizeof f->queue, queue);
}

void log_die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_ERR, NULL, fmt, ap);
	va_end(ap);
	exit(code);
}
