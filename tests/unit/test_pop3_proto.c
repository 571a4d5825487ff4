/*
 * test_pop3_proto.c - the POP3 client protocol core: status lines, the
 * multi-line reader (dot-unstuffing, byte exactness, split feeds, limits),
 * CAPA / UIDL / LIST lines, AUTH PLAIN.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "pop3-proto.h"

struct buf {
	char d[65536];
	size_t n;
	int fail_after;	/* >0: the sink fails on that call */
	int calls;
};

static int buf_sink(void *arg, const void *data, size_t len)
{
	struct buf *b = arg;
	b->calls++;
	if (b->fail_after && b->calls >= b->fail_after)
		return -1;
	if (b->n + len > sizeof b->d)
		return -1;
	memcpy(b->d + b->n, data, len);
	b->n += len;
	return 0;
}

/* Feeds text in pieces of step bytes; returns the final result and *used
 * (total bytes of text used). */
static int feed_steps(struct pop3_reader *r, const char *text, size_t len, size_t step,
	size_t *used_total)
{
	size_t pos = 0;
	int rc = POP3_NEED;
	while (pos < len) {
		size_t k = len - pos < step ? len - pos : step, used;
		rc = pop3_reader_feed(r, text + pos, k, &used);
		pos += used;
		if (rc != POP3_NEED)
			break;
	}
	*used_total = pos;
	return rc;
}

static struct pop3_reader rd;	/* large: keep it off the stack */

static void t_status(void)
{
	const char *t;
	CHECK_EQ(pop3_status_parse("+OK ready", 9, &t), 1);
	CHECK_STREQ(t, "ready");
	CHECK_EQ(pop3_status_parse("+OK", 3, &t), 1);
	CHECK_STREQ(t, "");
	CHECK_EQ(pop3_status_parse("-ERR [IN-USE] locked", 20, &t), 0);
	CHECK_STREQ(t, "[IN-USE] locked");
	CHECK_EQ(pop3_status_parse("+OKAY", 5, &t), -1);
	CHECK_EQ(pop3_status_parse("+ok", 3, &t), -1);
	CHECK_EQ(pop3_status_parse("", 0, &t), -1);
	CHECK_EQ(pop3_status_parse("* OK imap", 9, &t), -1);
	char code[32];
	CHECK_EQ(pop3_resp_code("[SYS/TEMP] try later", code, sizeof code), 1);
	CHECK_STREQ(code, "SYS/TEMP");
	CHECK_EQ(pop3_resp_code("no code", code, sizeof code), 0);
	CHECK_EQ(pop3_resp_code("[unterminated", code, sizeof code), 0);
}

static void t_single_line(void)
{
	size_t used;
	const char *in = "+OK POP3 ready\r\n+OK next";
	pop3_reader_start(&rd, 0, 1, 0, NULL, NULL);
	CHECK_EQ(pop3_reader_feed(&rd, in, strlen(in), &used), POP3_DONE);
	CHECK_EQ(used, 16);
	CHECK_EQ(rd.ok, 1);
	CHECK_STREQ(rd.status, "+OK POP3 ready");
	/* -ERR on a multi-line command has no body (RFC 1939 section 3). */
	struct buf b = { .n = 0 };
	in = "-ERR no such message\r\n.\r\n";
	pop3_reader_start(&rd, 1, 1, 0, buf_sink, &b);
	CHECK_EQ(pop3_reader_feed(&rd, in, strlen(in), &used), POP3_DONE);
	CHECK_EQ(rd.ok, 0);
	CHECK_EQ(used, 22);
	CHECK_EQ(b.n, 0);
	/* Bare LF after the status is tolerated. */
	pop3_reader_start(&rd, 0, 1, 0, NULL, NULL);
	CHECK_EQ(pop3_reader_feed(&rd, "+OK\n", 4, &used), POP3_DONE);
	/* Garbage, and an over-long status line. */
	pop3_reader_start(&rd, 0, 1, 0, NULL, NULL);
	CHECK_EQ(pop3_reader_feed(&rd, "HTTP/1.1 200\r\n", 14, &used), POP3_EMALFORMED);
	char *big = malloc(POP3_STATUS_MAX + 10);
	memset(big, 'A', POP3_STATUS_MAX + 10);
	memcpy(big, "+OK ", 4);
	pop3_reader_start(&rd, 0, 1, 0, NULL, NULL);
	CHECK_EQ(pop3_reader_feed(&rd, big, POP3_STATUS_MAX + 10, &used), POP3_ETOOLONG);
	free(big);
}

/* One multi-line case: wire text, expected output with and without CRLF
 * translation. Fed whole, byte by byte and in 7-byte pieces. */
static void multi_case(const char *wire, const char *want_lf, const char *want_crlf)
{
	size_t steps[] = { 100000, 1, 7 };
	for (int t = 0; t < 2; t++) {
		const char *want = t ? want_crlf : want_lf;
		for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
			struct buf *b = calloc(1, sizeof *b);
			size_t used;
			pop3_reader_start(&rd, 1, !t, 0, buf_sink, b);
			int rc = feed_steps(&rd, wire, strlen(wire), steps[s], &used);
			CHECK_EQ(rc, POP3_DONE);
			CHECK_EQ(used, strlen(wire) - strlen("TAIL"));
			CHECK_EQ(b->n, strlen(want));
			CHECK(b->n == strlen(want) && memcmp(b->d, want, b->n) == 0);
			CHECK_EQ(rd.body_len, strlen(want));
			free(b);
		}
	}
}

static void t_multi(void)
{
	/* Plain body. */
	multi_case("+OK 2 octets\r\nline1\r\nline2\r\n.\r\nTAIL",
		"line1\nline2\n", "line1\r\nline2\r\n");
	/* Empty body. */
	multi_case("+OK\r\n.\r\nTAIL", "", "");
	/* Dot-stuffed lines: "..x" -> ".x", ".." -> ".", "..." -> "..". */
	multi_case("+OK\r\n..x\r\n..\r\n...\r\nmid.dle\r\n.\r\nTAIL",
		".x\n.\n..\nmid.dle\n", ".x\r\n.\r\n..\r\nmid.dle\r\n");
	/* A bare LF or CR is data (only CRLF ends a line); a "." after a bare
	 * LF is not at the start of a line and stays. */
	multi_case("+OK\r\na\nb\rc\r\n\n.x\r\n.\r\nTAIL",
		"a\nb\rc\n\n.x\n", "a\nb\rc\r\n\n.x\r\n");
	/* CR CR LF: one bare CR then a line end. */
	multi_case("+OK\r\nx\r\r\n.\r\nTAIL", "x\r\n", "x\r\r\n");
	/* ".\rX": the dot was stuffing, the CR is data. */
	multi_case("+OK\r\n.\rX\r\n.\r\nTAIL", "\rX\n", "\rX\r\n");
	/* Binary bytes pass unchanged. */
	multi_case("+OK\r\n\x01\xff\x80\t\r\n.\r\nTAIL", "\x01\xff\x80\t\n", "\x01\xff\x80\t\r\n");
}

static void t_large_and_limit(void)
{
	/* 1 MB body in many lines: the sink sees chunks of at most POP3_CHUNK. */
	size_t lines = 20000, ll = 50;
	size_t cap = lines * (ll + 2) + 64;
	char *wire = malloc(cap);
	size_t n = (size_t)snprintf(wire, cap, "+OK\r\n");
	for (size_t i = 0; i < lines; i++) {
		memset(wire + n, 'a' + (int)(i % 26), ll);
		n += ll;
		wire[n++] = '\r';
		wire[n++] = '\n';
	}
	memcpy(wire + n, ".\r\n", 3);
	n += 3;
	size_t used;
	pop3_reader_start(&rd, 1, 1, 0, NULL, NULL);
	CHECK_EQ(pop3_reader_feed(&rd, wire, n, &used), POP3_DONE);
	CHECK_EQ(rd.body_len, lines * (ll + 1));
	CHECK_EQ(rd.too_big, 0);
	/* With a limit: parsed to the end, too_big set, sink stops receiving. */
	struct buf *b = calloc(1, sizeof *b);
	pop3_reader_start(&rd, 1, 1, 1000, buf_sink, b);
	CHECK_EQ(pop3_reader_feed(&rd, wire, n, &used), POP3_DONE);
	CHECK_EQ(used, n);
	CHECK_EQ(rd.too_big, 1);
	CHECK(b->n <= 1000);
	/* A failing sink fails the response. */
	memset(b, 0, sizeof *b);
	b->fail_after = 1;
	pop3_reader_start(&rd, 1, 1, 0, buf_sink, b);
	CHECK_EQ(pop3_reader_feed(&rd, wire, n, &used), POP3_ESINK);
	CHECK_EQ(pop3_reader_feed(&rd, wire, n, &used), POP3_ESINK);
	free(b);
	free(wire);
}

static void t_capa(void)
{
	const char *body = "TOP\nuser\nSASL PLAIN LOGIN\nRESP-CODES\nPIPELINING\n"
		"UIDL\nstls\nIMPLEMENTATION Dovecot\n";
	struct pop3_capa c;
	pop3_capa_parse(body, strlen(body), &c);
	CHECK(c.top && c.user && c.sasl_plain && c.resp_codes && c.pipelining && c.uidl && c.stls);
	body = "SASL LOGIN CRAM-MD5\r\nSTLSX\r\n UIDL \r\n";
	pop3_capa_parse(body, strlen(body), &c);
	CHECK(!c.sasl_plain && !c.stls && c.uidl && !c.top);
	pop3_capa_parse("", 0, &c);
	CHECK(!c.stls && !c.uidl);
}

static void t_uidl_list(void)
{
	unsigned no;
	char uid[POP3_UIDL_MAX + 1];
	CHECK_EQ(pop3_uidl_line("1 whqtswO00WBw418f9t5JxYwZ", 26, &no, uid), 0);
	CHECK_EQ(no, 1);
	CHECK_STREQ(uid, "whqtswO00WBw418f9t5JxYwZ");
	CHECK_EQ(pop3_uidl_line("12 00000001.4f2b \r", 18, &no, uid), 0);
	CHECK_STREQ(uid, "00000001.4f2b");
	CHECK_EQ(pop3_uidl_line("0 abc", 5, &no, uid), -1);
	CHECK_EQ(pop3_uidl_line("1 a b", 5, &no, uid), -1);
	CHECK_EQ(pop3_uidl_line("1 ", 2, &no, uid), -1);
	CHECK_EQ(pop3_uidl_line("x abc", 5, &no, uid), -1);
	CHECK_EQ(pop3_uidl_line("99999999999 abc", 15, &no, uid), -1);
	CHECK_EQ(pop3_uidl_line("1 a\x01", 4, &no, uid), -1);
	char longl[100] = "1 ";
	memset(longl + 2, 'u', 71);
	CHECK_EQ(pop3_uidl_line(longl, 73, &no, uid), -1);
	CHECK_EQ(pop3_uidl_line(longl, 72, &no, uid), 0);
	uint64_t sz;
	CHECK_EQ(pop3_list_line("3 120", 5, &no, &sz), 0);
	CHECK_EQ(no, 3);
	CHECK_EQ(sz, 120);
	CHECK_EQ(pop3_list_line("3 120 extra", 11, &no, &sz), 0);
	CHECK_EQ(pop3_list_line("3 12x", 5, &no, &sz), -1);
	CHECK_EQ(pop3_list_line("3", 1, &no, &sz), -1);
	CHECK_EQ(pop3_list_line("3 99999999999999999999", 22, &no, &sz), -1);
}

static int count_line(void *arg, const char *line, size_t len)
{
	(void)line;
	size_t *c = arg;
	*c += len + 1000;
	return 0;
}

static void t_lines(void)
{
	struct pop3_lines *l = malloc(sizeof *l);
	size_t c = 0;
	pop3_lines_init(l, count_line, &c);
	CHECK_EQ(pop3_lines_sink(l, "ab\ncd", 5), 0);
	CHECK_EQ(pop3_lines_sink(l, "e\r\n", 3), 0);
	CHECK_EQ(c, 2 + 1000 + 3 + 1000);
	CHECK_EQ(pop3_lines_sink(l, "xyz", 3), 0);
	CHECK_EQ(pop3_lines_end(l), 0);
	CHECK_EQ(c, 2 + 1000 + 3 + 1000 + 3 + 1000);
	char big[POP3_LISTLINE_MAX + 2];
	memset(big, 'x', sizeof big);
	CHECK_EQ(pop3_lines_sink(l, big, sizeof big), -1);
	free(l);
}

static void t_auth_plain(void)
{
	char out[256];
	/* RFC 4616 section 4 example: "\0tim\0tanstaaftanstaaf". */
	CHECK_EQ(pop3_auth_plain("tim", "tanstaaftanstaaf", out, sizeof out), 28);
	CHECK_STREQ(out, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	CHECK_EQ(pop3_auth_plain("tim", "tanstaaftanstaaf", out, 10), -1);
}

int main(void)
{
	RUN(t_status);
	RUN(t_single_line);
	RUN(t_multi);
	RUN(t_large_and_limit);
	RUN(t_capa);
	RUN(t_uidl_list);
	RUN(t_lines);
	RUN(t_auth_plain);
	return check_done();
}
