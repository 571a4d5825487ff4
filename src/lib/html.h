/*
 * html.h - HTML output that escapes by default.
 *
 * html_out(f, fmt, ...) understands a small format language in which every
 * string argument is escaped unless the caller says otherwise:
 *
 *   %s   a string, HTML-escaped (& < > " ' become entities): safe in text
 *        and in quoted attribute values
 *   %u   a URL component, percent-encoded (for href="...?name=%u")
 *   %R   a raw string: trusted markup from the program itself only
 *   %d   an int          %l  a long        %z  a size_t
 *   %%   a percent sign
 *
 * There is deliberately no way to print an outside value unescaped except
 * %R, which reviewers can grep for.
 */
#ifndef POSTERN_HTML_H
#define POSTERN_HTML_H

#include <stddef.h>
#include <stdio.h>

/* Writes s HTML-escaped to f. */
void html_escape(FILE *f, const char *s);

/* Writes s percent-encoded (unreserved characters of RFC 3986 kept). */
void html_urlencode(FILE *f, const char *s);

/* Formats as described above. Unknown conversions are written literally. */
void html_out(FILE *f, const char *fmt, ...);

/* Escapes s into out (cap bytes, NUL-terminated). Returns the length, or -1
 * when it does not fit (out is then ""). */
int html_escape_buf(const char *s, char *out, size_t cap);

#endif
