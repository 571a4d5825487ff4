/*
 * strbuf.h - a bounded text builder over a caller's buffer, with a sticky
 * overflow flag: build a whole text with many strbuf_put calls and check
 * once at the end whether it fitted.
 *
 *   struct strbuf b;
 *   strbuf_init(&b, buf, sizeof buf);
 *   strbuf_put(&b, "Subject: %s\r\n", subject);
 *   ...
 *   n = strbuf_result(&b);            (the length, or -1: did not fit)
 *
 * Never allocates; the text is always NUL-terminated (cap > 0). After an
 * overflow the buffer holds the text of the puts that fitted whole, and
 * every later put does nothing.
 */
#ifndef POSTERN_STRBUF_H
#define POSTERN_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
	char *buf;
	size_t cap;                  /* bytes in buf, the NUL included */
	size_t len;                  /* text so far, without the NUL */
	int full;                    /* sticky: a put did not fit (or cap == 0) */
};

/* Starts an empty text in buf (cap bytes; cap 0 is full at once). */
void strbuf_init(struct strbuf *b, char *buf, size_t cap);

/* Appends the printf-formatted text, whole or not at all: when it does not
 * fit, the text stays as it was and b->full is set for good. */
void strbuf_put(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* strbuf_put with a va_list. */
void strbuf_vput(struct strbuf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* The text's length, or -1 when some put did not fit. */
int strbuf_result(const struct strbuf *b);

#endif
