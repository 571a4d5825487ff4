/*
 * linebuf.h - a line reader with hard limits over a caller-provided fixed
 * buffer, for line protocols (SMTP, IMAP, POP3, HTTP headers).
 *
 * Bytes go in (linebuf_push, or linebuf_space + recv + linebuf_commit with
 * no copy), complete lines come out (linebuf_next). Nothing is allocated.
 *
 * Terminators: a line ends at LF, CRLF or a bare CR (a CR followed by
 * anything but LF). Each line says which it had, so the SMTP server can
 * refuse bare CR and bare LF in DATA (SMTP smuggling: only CRLF.CRLF ends a
 * message). A CR that is the last byte buffered waits for the next byte.
 *
 * Limits: a line longer than line_max bytes (terminator not counted) is an
 * error for that line only. Its bytes are dropped as they arrive (the
 * buffer never fills up with it), and when its terminator finally comes
 * linebuf_next reports LINEBUF_TOOLONG once; the following lines are read
 * normally. So a server answers "500 line too long" in order, even with
 * pipelining, and carries on (the sticky per-line error of OpenSMTPD).
 *
 * Raw bytes: linebuf_raw(lb, n) makes the next n bytes come out as
 * LINEBUF_RAW chunks, not lines, whatever they contain (IMAP literals);
 * line reading resumes after them.
 *
 * STARTTLS: linebuf_discard drops everything buffered (what a client
 * pipelined in clear after STARTTLS must never be read as if it came
 * through TLS).
 *
 * Usage, on a readable non-blocking socket:
 *
 *     size_t room; void *p = linebuf_space(&lb, &room);
 *     ssize_t n = recv(fd, p, room, 0);
 *     if (n > 0) linebuf_commit(&lb, n);
 *     struct linebuf_line ln;
 *     int r;
 *     while ((r = linebuf_next(&lb, &ln)) != LINEBUF_NEED) ...
 *
 * linebuf_next must be called until LINEBUF_NEED before more bytes are
 * added; then there is always room for at least one more byte.
 */
#ifndef POSTERN_LINEBUF_H
#define POSTERN_LINEBUF_H

#include <stddef.h>

/* Smallest line_max accepted. */
#define LINEBUF_LINE_MIN 1
/* Bytes the buffer needs beyond line_max: a CR and an LF. */
#define LINEBUF_SLACK 2

/* linebuf_next results. */
enum {
	LINEBUF_NEED = 0,	/* no complete line buffered: add bytes */
	LINEBUF_LINE = 1,	/* a line: data, len, term */
	LINEBUF_TOOLONG = 2,	/* a line over line_max ended (its bytes are gone); term set */
	LINEBUF_RAW = 3		/* a chunk of raw bytes (data, len; term NONE) */
};

/* Line terminators. */
enum {
	LINEBUF_TERM_NONE = 0,	/* raw chunk */
	LINEBUF_TERM_CRLF = 1,
	LINEBUF_TERM_LF = 2,	/* bare LF */
	LINEBUF_TERM_CR = 3	/* bare CR */
};

struct linebuf {
	char *buf;		/* the caller's storage */
	size_t cap;
	size_t line_max;
	size_t start;		/* first unread byte */
	size_t scan;		/* bytes before this (from start) hold no terminator */
	size_t end;		/* one past the last buffered byte */
	size_t raw_left;	/* raw bytes still to hand out */
	int overlong;		/* the current line passed line_max: dropping */
};

/* One result of linebuf_next. data points into the buffer and stays valid
 * until the next linebuf_space / linebuf_push / linebuf_discard; a line is
 * NUL-terminated at data[len] (it may also contain NUL bytes: use len). */
struct linebuf_line {
	char *data;
	size_t len;
	int term;
};

/* Sets lb up over buf (cap bytes) for lines of at most line_max bytes.
 * Returns 0, or -1 when cap < line_max + LINEBUF_SLACK or line_max is 0. */
int linebuf_init(struct linebuf *lb, void *buf, size_t cap, size_t line_max);

/* Free room after the buffered bytes (compacting first): returns where to
 * write and sets *room (0 only when linebuf_next has not been called until
 * LINEBUF_NEED). */
void *linebuf_space(struct linebuf *lb, size_t *room);

/* Records that n bytes were written at linebuf_space (n <= room). */
void linebuf_commit(struct linebuf *lb, size_t n);

/* Copies up to len bytes in; returns how many it took (less than len when
 * the buffer is full: pull lines, then push the rest). */
size_t linebuf_push(struct linebuf *lb, const void *data, size_t len);

/* Takes the next line or raw chunk out; see LINEBUF_* results. */
int linebuf_next(struct linebuf *lb, struct linebuf_line *out);

/* The next n bytes are raw (LINEBUF_RAW chunks), then lines again. */
void linebuf_raw(struct linebuf *lb, size_t n);

/* Raw bytes still expected (0 when reading lines). */
size_t linebuf_raw_left(const struct linebuf *lb);

/* Bytes buffered and not yet taken out (a partial line included). */
size_t linebuf_pending(const struct linebuf *lb);

/* Drops everything buffered, the over-long state and raw mode; returns the
 * number of bytes dropped. */
size_t linebuf_discard(struct linebuf *lb);

#endif
