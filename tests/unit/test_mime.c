/*
 * test_mime.c - the MIME structure parser (mime.h) and the IMAP renderings
 * on it (imap-proto.h section 5): known structures with the answers
 * Dovecot 2.3 gives for the same messages (also compared live in
 * tests/integration/test_imap_mime.py), chunked feeding, bounds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "imap-proto.h"
#include "mime.h"

static const char nested[] =
	"From: a@b.example\r\n"
	"To: team: c@d.example, \"E F\" <e@f.example>;, g@h.example\r\n"
	"Subject: hi\r\n"
	"Content-Type: multipart/mixed; boundary=\"outer b\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--outer b\r\n"
	"Content-Type: multipart/alternative; boundary=inner\r\n"
	"\r\n"
	"--inner\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"one\r\n"
	"two\r\n"
	"--inner--\r\n"
	"--outer b\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"Subject: inner\r\n"
	"\r\n"
	"inner text\r\n"
	"--outer b--\r\n";

static char *render(const struct mime *m, int ext)
{
	struct imap_buf b = { 0 };

	imap_bodystructure(&b, m, 0, ext);
	return b.p;
}

static void t_nested_structure(void)
{
	struct mime m;
	char *s;

	CHECK(mime_parse(&m, nested, sizeof nested - 1) == 0);
	CHECK_EQ(m.nparts, 5);   /* message, alternative, plain, rfc822, inner message */
	CHECK_EQ(m.parts[0].kind, MIME_MULTIPART);
	CHECK_STREQ(m.parts[0].boundary, "outer b");
	CHECK_EQ(m.parts[2].lines, 1);   /* "one\r\ntwo": one line feed (Dovecot's count) */
	CHECK_EQ(m.parts[2].end_off - m.parts[2].body_off, 8);
	s = render(&m, 0);
	CHECK_STREQ(s, "(((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 8 1) \"alternative\")"
		       "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 28 (NIL \"inner\" NIL NIL NIL NIL NIL "
		       "NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0) 2)"
		       " \"mixed\")");
	free(s);
	mime_free(&m);
}

static void t_envelope_groups(void)
{
	struct mime m;
	struct imap_buf b = { 0 };

	CHECK(mime_parse(&m, nested, sizeof nested - 1) == 0);
	imap_envelope(&b, &m, 0);
	CHECK_STREQ(b.p, "(NIL \"hi\" ((NIL NIL \"a\" \"b.example\")) ((NIL NIL \"a\" \"b.example\")) "
			 "((NIL NIL \"a\" \"b.example\")) ((NIL NIL \"team\" NIL)(NIL NIL \"c\" "
			 "\"d.example\")(\"E F\" NIL \"e\" \"f.example\")(NIL NIL NIL NIL)(NIL NIL \"g\" "
			 "\"h.example\")) NIL NIL NIL NIL)");
	imap_buf_free(&b);
	mime_free(&m);
}

static void t_sections(void)
{
	struct mime m;
	struct imap_section s;

	CHECK(mime_parse(&m, nested, sizeof nested - 1) == 0);
	CHECK(imap_section_resolve(&m, "1.1", &s) == 0);
	CHECK_MEMEQ(nested + s.off, "one\r\ntwo", 8);
	CHECK_EQ(s.len, 8);
	CHECK(imap_section_resolve(&m, "2.HEADER", &s) == 0);
	CHECK_MEMEQ(nested + s.off, "Subject: inner\r\n\r\n", s.len);
	CHECK(imap_section_resolve(&m, "2.TEXT", &s) == 0);
	CHECK_MEMEQ(nested + s.off, "inner text", s.len);
	CHECK(imap_section_resolve(&m, "2.1", &s) == 0 && s.len == 10);   /* the CRLF is the delimiter's */
	CHECK(imap_section_resolve(&m, "2.MIME", &s) == 0);
	CHECK_MEMEQ(nested + s.off, "Content-Type: message/rfc822\r\n\r\n", s.len);
	CHECK(imap_section_resolve(&m, "3", &s) == 0 && s.part == -1);
	CHECK(imap_section_resolve(&m, "1.1.TEXT", &s) == 0 && s.part == -1);
	CHECK(imap_section_check("1.2.3.HEADER.FIELDS (A B)") == 0);
	CHECK(imap_section_check("HEADER.FIELDS.NOT (X)") == 0);
	CHECK(imap_section_check("MIME") < 0);        /* MIME needs a part number */
	CHECK(imap_section_check("1.") < 0);
	CHECK(imap_section_check("0") < 0);
	CHECK(imap_section_check("TEXT.1") < 0);
	CHECK(imap_section_check("HEADER.FIELDS ()") < 0);
	CHECK(imap_fields_has("(From SUBJECT)", "subject : x", 11));
	CHECK(!imap_fields_has("(From SUBJECT)", "Subjects: x", 11));
	mime_free(&m);
}

/* Feeding in any chunking gives the same tree. */
static void t_chunked(void)
{
	struct mime a, b;
	char *sa, *sb;

	CHECK(mime_parse(&a, nested, sizeof nested - 1) == 0);
	for (size_t step = 1; step < 40; step += 7) {
		CHECK(mime_init(&b) == 0);
		for (size_t i = 0; i < sizeof nested - 1; i += step)
			mime_feed(&b, nested + i, i + step < sizeof nested - 1 ? step : sizeof nested - 1 - i);
		CHECK(mime_finish(&b) == 0);
		sa = render(&a, 1);
		sb = render(&b, 1);
		CHECK_STREQ(sa, sb);
		free(sa);
		free(sb);
		mime_free(&b);
	}
	mime_free(&a);
}

/* Bare LFs count as CRLF in sizes; lines are line feeds. */
static void t_bare_lf(void)
{
	static const char msg[] = "Subject: x\n\nline one\nline two";
	struct mime m;

	CHECK(mime_parse(&m, msg, sizeof msg - 1) == 0);
	CHECK_EQ(m.parts[0].end_n, sizeof msg - 1 + 3);
	CHECK_EQ(m.parts[0].body_n - m.parts[0].hdr_n, 14);
	CHECK_EQ(m.parts[0].lines, 1);
	CHECK_STREQ(m.parts[0].type, "text");
	mime_free(&m);
}

static void t_ctype_and_addresses(void)
{
	char t[64], st[64], v[256];
	struct mime_param p[4];
	struct mime_addr a[8];

	CHECK_EQ(mime_parse_ctype("Text/Plain (c) ; charset = \"utf\\\"8\" ; format=flowed", t,
				  sizeof t, st, sizeof st, p, 4), 2);
	CHECK_STREQ(t, "Text");
	CHECK_STREQ(st, "Plain");
	CHECK_STREQ(p[0].value, "utf\"8");
	CHECK_STREQ(p[1].name, "format");
	CHECK(mime_parse_ctype("/x", t, sizeof t, st, sizeof st, p, 4) < 0);
	snprintf(v, sizeof v, "\"Last, First\" <f.l@x.example> (c), <@r.example:u@d.example>, bare");
	CHECK_EQ(mime_parse_addresses(v, a, 8), 3);
	CHECK_STREQ(a[0].name, "Last, First");
	CHECK_STREQ(a[0].host, "x.example");
	CHECK_STREQ(a[1].route, "@r.example");
	CHECK_STREQ(a[1].mailbox, "u");
	CHECK_STREQ(a[2].mailbox, "bare");
	snprintf(v, sizeof v, "undisclosed-recipients:;");
	CHECK_EQ(mime_parse_addresses(v, a, 8), 2);
	CHECK(a[0].host == NULL && a[1].mailbox == NULL);
}

/* Nesting, parts and line lengths beyond the bounds: truncated, no harm. */
static void t_bounds(void)
{
	size_t cap = 1u << 20, n = 0;
	char *big = malloc(cap);
	struct mime m;
	char *s;

	for (int d = 0; d < MIME_DEPTH_MAX + 10; d++)
		n += (size_t)snprintf(big + n, cap - n, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", d, d);
	n += (size_t)snprintf(big + n, cap - n, "\r\ndeep\r\n");
	CHECK(mime_parse(&m, big, n) == 0);
	CHECK(m.truncated);
	s = render(&m, 1);
	CHECK(s != NULL);
	free(s);
	mime_free(&m);
	n = (size_t)snprintf(big, cap, "Content-Type: multipart/mixed; boundary=x\r\n\r\n");
	for (int i = 0; i < MIME_PARTS_MAX + 50 && n + 64 < cap; i++)
		n += (size_t)snprintf(big + n, cap - n, "--x\r\n\r\np%d\r\n", i);
	CHECK(mime_parse(&m, big, n) == 0);
	CHECK(m.truncated && m.nparts == MIME_PARTS_MAX);
	mime_free(&m);
	memset(big, 'a', cap);
	memcpy(big, "Subject: ", 9);
	CHECK(mime_parse(&m, big, cap) == 0);
	CHECK_EQ(m.parts[0].body_off, cap);   /* a header without its end */
	mime_free(&m);
	free(big);
}

int main(void)
{
	RUN(t_nested_structure);
	RUN(t_envelope_groups);
	RUN(t_sections);
	RUN(t_chunked);
	RUN(t_bare_lf);
	RUN(t_ctype_and_addresses);
	RUN(t_bounds);
	return check_done();
}
