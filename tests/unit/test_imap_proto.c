/* test_imap_proto.c - the IMAP command core: assembly with literals, tokens,
 * sequence sets, modified UTF-7. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "imap-proto.h"

/* Feeds a wire text through the assembler as the daemon would (lines and
 * raw chunks); returns the last result. "+" continuations are counted. */
static int feed(struct imap_cmd *c, const char *wire, int *plus)
{
	size_t len = strlen(wire), i = 0;
	int r = IMAP_CMD_MORE;

	*plus = 0;
	while (i < len) {
		if (imap_cmd_literal_left(c) > 0) {
			size_t n = (size_t)imap_cmd_literal_left(c);

			if (n > len - i)
				n = len - i;
			r = imap_cmd_raw(c, wire + i, n);
			i += n;
			continue;
		}
		const char *eol = strstr(wire + i, "\r\n");
		size_t ll = eol ? (size_t)(eol - (wire + i)) : len - i;

		r = imap_cmd_line(c, wire + i, ll, ll > IMAP_LINE_MAX);
		i += ll + 2;
		if (r == IMAP_CMD_LITERAL && imap_cmd_sync(c))
			(*plus)++;
		if (r == IMAP_CMD_DONE || r == IMAP_CMD_FAILED)
			break;
	}
	return r;
}

static void t_assemble_simple(void)
{
	struct imap_cmd c;
	int plus;
	size_t len;

	imap_cmd_init(&c);
	CHECK_EQ(feed(&c, "a1 NOOP\r\n", &plus), IMAP_CMD_DONE);
	CHECK_STREQ(imap_cmd_tag(&c), "a1");
	char *t = imap_cmd_text(&c, &len);
	CHECK_EQ(len, 9);
	CHECK(memcmp(t, "a1 NOOP\r\n", 9) == 0);
	imap_cmd_reset(&c);
	CHECK_EQ(feed(&c, "a2 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n", &plus), IMAP_CMD_DONE);
	CHECK_EQ(plus, 1);   /* only the synchronizing literal waits for "+" */
	CHECK_STREQ(imap_cmd_tag(&c), "a2");
	t = imap_cmd_text(&c, &len);
	CHECK_EQ(len, strlen("a2 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n"));
	imap_cmd_free(&c);
}

static void t_assemble_limits(void)
{
	struct imap_cmd c;
	int plus;
	char wire[256];

	imap_cmd_init(&c);
	/* a too-large synchronizing literal is refused at once, no "+" */
	snprintf(wire, sizeof wire, "x LOGIN {%u}\r\n", IMAP_CMD_MAX + 1);
	CHECK_EQ(feed(&c, wire, &plus), IMAP_CMD_FAILED);
	CHECK_EQ(plus, 0);
	CHECK(strstr(imap_cmd_error(&c), "literal") != NULL);
	CHECK_STREQ(imap_cmd_tag(&c), "x");
	/* a too-large non-synchronizing one is read and dropped, then BAD */
	imap_cmd_reset(&c);
	snprintf(wire, sizeof wire, "y LOGIN {%u+}", IMAP_CMD_MAX + 1);
	CHECK_EQ(imap_cmd_line(&c, wire, strlen(wire), 0), IMAP_CMD_LITERAL);
	CHECK_EQ(imap_cmd_literal_left(&c), IMAP_CMD_MAX + 1);
	char *junk = calloc(1, IMAP_CMD_MAX + 1);
	imap_cmd_raw(&c, junk, IMAP_CMD_MAX + 1);
	free(junk);
	CHECK_EQ(imap_cmd_line(&c, " pw", 3, 0), IMAP_CMD_FAILED);
	/* APPEND may carry a big literal */
	imap_cmd_reset(&c);
	snprintf(wire, sizeof wire, "z APPEND INBOX {%u}", IMAP_CMD_MAX * 4);
	CHECK_EQ(imap_cmd_line(&c, wire, strlen(wire), 0), IMAP_CMD_LITERAL);
	imap_cmd_reset(&c);
	snprintf(wire, sizeof wire, "z APPEND INBOX {%u}", IMAP_APPEND_MAX + 1);
	CHECK_EQ(imap_cmd_line(&c, wire, strlen(wire), 0), IMAP_CMD_FAILED);
	/* an over-long line */
	imap_cmd_reset(&c);
	CHECK_EQ(imap_cmd_line(&c, "", 0, 1), IMAP_CMD_FAILED);
	CHECK_STREQ(imap_cmd_tag(&c), "*");
	imap_cmd_free(&c);
}

static void t_tokens(void)
{
	char s[] = "t1 LOGIN \"al\\\"ice\" {3}\r\npw1 atom] (A B) 1:3,5,*:7 BODY.PEEK[HEADER.FIELDS (From To)]<0.10>\r\n";
	struct imap_parser p;
	char buf[128];
	size_t n;
	uint32_t v;

	imap_parser_init(&p, s, strlen(s));
	CHECK_EQ(imap_tag(&p, buf, sizeof buf), 0);
	CHECK_STREQ(buf, "t1");
	CHECK_EQ(imap_sp(&p), 0);
	CHECK_EQ(imap_atom(&p, buf, sizeof buf), 0);
	CHECK_STREQ(buf, "LOGIN");
	CHECK_EQ(imap_sp(&p), 0);
	CHECK_EQ(imap_astring(&p, buf, sizeof buf, &n), 0);
	CHECK_STREQ(buf, "al\"ice");
	CHECK_EQ(imap_sp(&p), 0);
	CHECK_EQ(imap_astring(&p, buf, sizeof buf, &n), 0);
	CHECK_STREQ(buf, "pw1");
	CHECK_EQ(imap_sp(&p), 0);
	CHECK_EQ(imap_astring(&p, buf, sizeof buf, &n), 0);
	CHECK_STREQ(buf, "atom]");
	CHECK_EQ(imap_sp(&p), 0);
	CHECK(imap_take(&p, '('));
	CHECK_EQ(imap_atom(&p, buf, sizeof buf), 0);
	CHECK_EQ(imap_sp(&p), 0);
	CHECK_EQ(imap_atom(&p, buf, sizeof buf), 0);
	CHECK(imap_take(&p, ')'));
	CHECK_EQ(imap_sp(&p), 0);
	struct imap_seqset set;
	CHECK_EQ(imap_seqset(&p, &set), 0);
	CHECK_EQ(set.n, 3);
	CHECK(imap_seqset_has(&set, 2, 10));
	CHECK(!imap_seqset_has(&set, 4, 10));
	CHECK(imap_seqset_has(&set, 9, 10));    /* *:7 is 7:10 */
	CHECK(!imap_seqset_has(&set, 6, 10));
	imap_seqset_free(&set);
	CHECK_EQ(imap_sp(&p), 0);
	CHECK_EQ(imap_fetch_token(&p, buf, sizeof buf), 0);
	CHECK_STREQ(buf, "BODY.PEEK[HEADER.FIELDS (From To)]<0.10>");
	CHECK_EQ(imap_eol(&p), 0);
	(void)v;
}

static void t_token_errors(void)
{
	const char *bad[] = { "\"unterminated", "{5}\r\nabc", "{x}\r\n", "\"bad\\q\"", "{2}\r\na\0",
			      "(", "" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char s[32], out[16];
		size_t n, len = i == 4 ? 7 : strlen(bad[i]);
		struct imap_parser p;

		memcpy(s, bad[i], len);
		imap_parser_init(&p, s, len);
		CHECK_EQ(imap_astring(&p, out, sizeof out, &n), -1);
		CHECK(p.err != NULL);
	}
	char big[] = "\"0123456789abcdefghij\"";
	struct imap_parser p;
	char out[8];
	size_t n;
	imap_parser_init(&p, big, strlen(big));
	CHECK_EQ(imap_astring(&p, out, sizeof out, &n), -1);
	char num[] = "4294967296";
	uint32_t v;
	imap_parser_init(&p, num, strlen(num));
	CHECK_EQ(imap_number(&p, &v), -1);
	char tag[] = "a+b";
	imap_parser_init(&p, tag, 3);
	CHECK_EQ(imap_tag(&p, out, sizeof out), 0);
	CHECK_STREQ(out, "a");   /* '+' is not a tag character */
}

static void t_seqset(void)
{
	struct imap_seqset s;
	const char *bad[] = { "", "0", "1:", ",1", "1,,2", "a", "1:0", "4294967295", "1:*:" };

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK_EQ(imap_seqset_parse(bad[i], &s), -1);
	CHECK_EQ(imap_seqset_parse("*", &s), 0);
	CHECK(imap_seqset_has(&s, 5, 5));
	CHECK(!imap_seqset_has(&s, 4, 5));
	imap_seqset_free(&s);
	CHECK_EQ(imap_seqset_parse("5:*", &s), 0);
	CHECK(imap_seqset_has(&s, 3, 3));   /* RFC 3501 9: 5:* with 3 messages is 3:5 */
	imap_seqset_free(&s);
}

static void t_mutf7(void)
{
	static const struct { const char *utf8, *mutf7; } kat[] = {
		{ "INBOX", "INBOX" },
		{ "A&B", "A&-B" },
		{ "Entw\xc3\xbcrfe", "Entw&APw-rfe" },
		{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
		  "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },   /* RFC 3501 5.1.3 */
		{ "\xf0\x9f\x98\x80", "&2D3eAA-" },   /* U+1F600: a surrogate pair */
		{ "Gel\xc3\xb6scht & Co", "Gel&APY-scht &- Co" },
	};
	char out[128];

	for (size_t i = 0; i < sizeof kat / sizeof *kat; i++) {
		CHECK(imap_mutf7_encode(kat[i].utf8, out, sizeof out) >= 0);
		CHECK_STREQ(out, kat[i].mutf7);
		CHECK(imap_mutf7_decode(kat[i].mutf7, out, sizeof out) >= 0);
		CHECK_STREQ(out, kat[i].utf8);
		CHECK(imap_mutf7_valid(kat[i].mutf7));
	}
	static const char *const bad[] = {
		"&", "&AGE", "&AGE-" /* 'a' encoded */, "&-&", "&2D3-" /* lone high */,
		"&3gA-" /* lone low */, "&APx-" /* nonzero pad bits */, "&APwA-" /* extra char */,
		"a\x01", "caf\xc3\xa9" /* raw 8-bit */, "&AAk-" /* TAB encoded */, "&,,,,-",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK_EQ(imap_mutf7_decode(bad[i], out, sizeof out), -1);
	static const char *const bad8[] = { "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\tb",
					   "\xe2\x82" };
	for (size_t i = 0; i < sizeof bad8 / sizeof *bad8; i++)
		CHECK_EQ(imap_mutf7_encode(bad8[i], out, sizeof out), -1);
	CHECK_EQ(imap_mutf7_encode("Entw\xc3\xbcrfe", out, 8), -1);   /* small buffer */
}

/* RFC 7162: 63-bit mod-sequences and the one-item modifier lists of
 * FETCH (CHANGEDSINCE) and STORE (UNCHANGEDSINCE). */
static void t_modseq(void)
{
	struct imap_parser p;
	uint64_t v = 7;
	char max[] = "9223372036854775807", over[] = "9223372036854775808", zero[] = "0";
	char mod[] = "(changedsince 12345678901)", other[] = "(UNCHANGEDSINCE 5)";
	char noval[] = "(CHANGEDSINCE)", open[] = "(CHANGEDSINCE 5", huge[] = "(CHANGEDSINCE 99999999999999999999)";

	imap_parser_init(&p, max, strlen(max));
	CHECK_EQ(imap_modseq(&p, &v), 0);
	CHECK_EQ(v, IMAP_MODSEQ_MAX);
	imap_parser_init(&p, over, strlen(over));
	CHECK_EQ(imap_modseq(&p, &v), -1);
	imap_parser_init(&p, zero, strlen(zero));
	CHECK_EQ(imap_modseq(&p, &v), 0);   /* mod-sequence-valzer */
	CHECK_EQ(v, 0);
	imap_parser_init(&p, mod, strlen(mod));
	CHECK_EQ(imap_modifier(&p, "CHANGEDSINCE", &v), 0);
	CHECK_EQ(v, 12345678901ull);
	CHECK_EQ(p.pos, strlen(mod));
	imap_parser_init(&p, other, strlen(other));
	CHECK_EQ(imap_modifier(&p, "CHANGEDSINCE", &v), -1);
	CHECK(p.err != NULL);
	imap_parser_init(&p, noval, strlen(noval));
	CHECK_EQ(imap_modifier(&p, "CHANGEDSINCE", &v), -1);
	imap_parser_init(&p, open, strlen(open));
	CHECK_EQ(imap_modifier(&p, "CHANGEDSINCE", &v), -1);
	imap_parser_init(&p, huge, strlen(huge));
	CHECK_EQ(imap_modifier(&p, "CHANGEDSINCE", &v), -1);
	CHECK(p.pos <= p.len);
}

int main(void)
{
	RUN(t_assemble_simple);
	RUN(t_assemble_limits);
	RUN(t_tokens);
	RUN(t_token_errors);
	RUN(t_seqset);
	RUN(t_mutf7);
	RUN(t_modseq);
	return check_done();
}
