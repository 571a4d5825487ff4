/*
 * html.c - escaping HTML output (see html.h).
 */
#include <stdarg.h>
#include <string.h>

#include "html.h"

/* The entity for c, or NULL when c is written as it is. */
static const char *entity(char c)
{
	switch (c) {
	case '&': return "&amp;";
	case '<': return "&lt;";
	case '>': return "&gt;";
	case '"': return "&quot;";
	case '\'': return "&#39;";
	default: return NULL;
	}
}

void html_escape(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		const char *e = entity(*s);

		if (e)
			fputs(e, f);
		else
			fputc(*s, f);
	}
}

int html_escape_buf(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	for (; *s; s++) {
		const char *e = entity(*s);
		size_t n = e ? strlen(e) : 1;

		if (o + n >= cap) {
			if (cap)
				out[0] = '\0';
			return -1;
		}
		memcpy(out + o, e ? e : s, n);
		o += n;
	}
	if (cap == 0)
		return -1;
	out[o] = '\0';
	return (int)o;
}

void html_urlencode(FILE *f, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~", c))
			fputc(c, f);
		else
			fprintf(f, "%%%c%c", hex[c >> 4], hex[c & 15]);
	}
}

/* One conversion; returns 0, or -1 for an unknown one. */
static int convert(FILE *f, char conv, va_list *ap)
{
	switch (conv) {
	case 's': html_escape(f, va_arg(*ap, const char *)); return 0;
	case 'u': html_urlencode(f, va_arg(*ap, const char *)); return 0;
	case 'R': fputs(va_arg(*ap, const char *), f); return 0;
	case 'd': fprintf(f, "%d", va_arg(*ap, int)); return 0;
	case 'l': fprintf(f, "%ld", va_arg(*ap, long)); return 0;
	case 'z': fprintf(f, "%zu", va_arg(*ap, size_t)); return 0;
	case '%': fputc('%', f); return 0;
	default: return -1;
	}
}

void html_out(FILE *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	for (const char *p = fmt; *p; p++) {
		if (*p != '%' || !p[1]) {
			fputc(*p, f);
			continue;
		}
		p++;
		if (convert(f, *p, &ap) < 0) {
			fputc('%', f);
			fputc(*p, f);
		}
	}
	va_end(ap);
}
