/*
 * strbuf.c - the bounded sticky-overflow text builder (see strbuf.h).
 */
#include <limits.h>
#include <stdio.h>

#include "strbuf.h"

void strbuf_init(struct strbuf *b, char *buf, size_t cap)
{
	*b = (struct strbuf){ .buf = buf, .cap = cap, .full = cap == 0 };
	if (cap)
		buf[0] = '\0';
}

void strbuf_vput(struct strbuf *b, const char *fmt, va_list ap)
{
	int n;

	if (b->full)
		return;
	n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
	if (n < 0 || (size_t)n >= b->cap - b->len) {
		b->full = 1;
		b->buf[b->len] = '\0';   /* drop the part that vsnprintf cut */
		return;
	}
	b->len += (size_t)n;
}

void strbuf_put(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	strbuf_vput(b, fmt, ap);
	va_end(ap);
}

int strbuf_result(const struct strbuf *b)
{
	return b->full || b->len > INT_MAX ? -1 : (int)b->len;
}
