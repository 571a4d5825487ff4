/*
 * linebuf.c - line reader with hard limits over a caller's buffer.
 *
 * The unread bytes are buf[start, end). Bytes in [start, scan) are known to
 * hold no terminator, so each byte is examined once however the input is
 * split. A CR at end - 1 is left unexamined until the next byte shows
 * whether it is CRLF or a bare CR.
 */
#include <string.h>

#include "linebuf.h"

int linebuf_init(struct linebuf *lb, void *buf, size_t cap, size_t line_max)
{
	memset(lb, 0, sizeof *lb);
	if (!buf || line_max < LINEBUF_LINE_MIN || cap < line_max ||
	    cap - line_max < LINEBUF_SLACK)
		return -1;
	lb->buf = buf;
	lb->cap = cap;
	lb->line_max = line_max;
	return 0;
}

/* Moves the unread bytes to the front of the buffer. */
static void lb_compact(struct linebuf *lb)
{
	size_t n = lb->end - lb->start;

	if (lb->start == 0)
		return;
	if (n)
		memmove(lb->buf, lb->buf + lb->start, n);
	lb->scan -= lb->start;
	lb->end = n;
	lb->start = 0;
}

void *linebuf_space(struct linebuf *lb, size_t *room)
{
	lb_compact(lb);
	*room = lb->cap - lb->end;
	return lb->buf + lb->end;
}

void linebuf_commit(struct linebuf *lb, size_t n)
{
	if (n > lb->cap - lb->end)
		n = lb->cap - lb->end;
	lb->end += n;
}

size_t linebuf_push(struct linebuf *lb, const void *data, size_t len)
{
	size_t room;
	void *p = linebuf_space(lb, &room);

	if (len > room)
		len = room;
	if (len)
		memcpy(p, data, len);
	lb->end += len;
	return len;
}

void linebuf_raw(struct linebuf *lb, size_t n)
{
	lb->raw_left = n;
}

size_t linebuf_raw_left(const struct linebuf *lb)
{
	return lb->raw_left;
}

size_t linebuf_pending(const struct linebuf *lb)
{
	return lb->end - lb->start;
}

size_t linebuf_discard(struct linebuf *lb)
{
	size_t n = lb->end - lb->start;

	lb->start = lb->scan = lb->end = 0;
	lb->raw_left = 0;
	lb->overlong = 0;
	return n;
}

/* Hands out up to raw_left buffered bytes. */
static int lb_next_raw(struct linebuf *lb, struct linebuf_line *out)
{
	size_t n = lb->end - lb->start;

	if (n == 0)
		return LINEBUF_NEED;
	if (n > lb->raw_left)
		n = lb->raw_left;
	out->data = lb->buf + lb->start;
	out->len = n;
	out->term = LINEBUF_TERM_NONE;
	lb->start += n;
	lb->scan = lb->start;
	lb->raw_left -= n;
	return LINEBUF_RAW;
}

/* Finds the next terminator from scan. Returns its kind and sets *at to its
 * position, or returns LINEBUF_TERM_NONE with scan advanced as far as the
 * bytes allow. */
static int lb_find_term(struct linebuf *lb, size_t *at)
{
	size_t i;

	if (lb->scan < lb->start)
		lb->scan = lb->start;
	for (i = lb->scan; i < lb->end; i++) {
		char c = lb->buf[i];

		if (c == '\n') {
			*at = i;
			return LINEBUF_TERM_LF;
		}
		if (c != '\r')
			continue;
		if (i + 1 == lb->end)
			break;		/* CRLF or bare CR: the next byte says */
		*at = i;
		return lb->buf[i + 1] == '\n' ? LINEBUF_TERM_CRLF : LINEBUF_TERM_CR;
	}
	lb->scan = i;
	return LINEBUF_TERM_NONE;
}

/* No terminator buffered: if the partial line is already too long, drop
 * its bytes (keeping a trailing CR, still undecided). */
static int lb_no_line(struct linebuf *lb)
{
	if (lb->overlong || lb->scan - lb->start > lb->line_max) {
		lb->overlong = 1;
		lb->start = lb->scan;
	}
	return LINEBUF_NEED;
}

int linebuf_next(struct linebuf *lb, struct linebuf_line *out)
{
	size_t at = 0, len;
	int term;

	out->data = NULL;
	out->len = 0;
	out->term = LINEBUF_TERM_NONE;
	if (lb->raw_left)
		return lb_next_raw(lb, out);
	term = lb_find_term(lb, &at);
	if (term == LINEBUF_TERM_NONE)
		return lb_no_line(lb);
	len = at - lb->start;
	out->term = term;
	out->data = lb->buf + lb->start;
	lb->start = at + (term == LINEBUF_TERM_CRLF ? 2 : 1);
	lb->scan = lb->start;
	lb->buf[at] = '\0';
	if (lb->overlong || len > lb->line_max) {
		lb->overlong = 0;
		out->data = NULL;
		return LINEBUF_TOOLONG;
	}
	out->len = len;
	return LINEBUF_LINE;
}
