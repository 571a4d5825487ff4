/*
 * test_linebuf.c - the line reader: terminators, limits with the sticky
 * per-line error, split input, raw bytes (literals), discard (STARTTLS).
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "linebuf.h"

static char store[64];
static struct linebuf lb;
static struct linebuf_line ln;

static void setup(size_t cap, size_t line_max)
{
	CHECK_EQ(linebuf_init(&lb, store, cap, line_max), 0);
}

static void push_all(const char *s)
{
	CHECK_EQ(linebuf_push(&lb, s, strlen(s)), strlen(s));
}

/* Next result must be a line with this text and terminator. */
static void expect_line(const char *text, int term)
{
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_LINE);
	CHECK_EQ(ln.len, strlen(text));
	CHECK_STREQ(ln.data, text);
	CHECK_EQ(ln.term, term);
}

static void t_init_limits(void)
{
	CHECK_EQ(linebuf_init(&lb, store, 10, 9), -1);
	CHECK_EQ(linebuf_init(&lb, store, 10, 0), -1);
	CHECK_EQ(linebuf_init(&lb, NULL, 10, 4), -1);
	CHECK_EQ(linebuf_init(&lb, store, 10, 8), 0);
}

static void t_terminators(void)
{
	setup(64, 32);
	push_all("crlf\r\nlf\nbare\rcr\r\n\r\n\n");
	expect_line("crlf", LINEBUF_TERM_CRLF);
	expect_line("lf", LINEBUF_TERM_LF);
	expect_line("bare", LINEBUF_TERM_CR);
	expect_line("cr", LINEBUF_TERM_CRLF);
	expect_line("", LINEBUF_TERM_CRLF);
	expect_line("", LINEBUF_TERM_LF);
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_NEED);
	CHECK_EQ(linebuf_pending(&lb), 0);
}

/* A CR at the end of the input waits for the next byte. */
static void t_split_cr(void)
{
	setup(64, 32);
	push_all("abc\r");
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_NEED);
	push_all("\n");
	expect_line("abc", LINEBUF_TERM_CRLF);
	push_all("x\r");
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_NEED);
	push_all("y\n");
	expect_line("x", LINEBUF_TERM_CR);
	expect_line("y", LINEBUF_TERM_LF);
}

/* Byte-at-a-time input gives the same lines. */
static void t_bytewise(void)
{
	const char *in = "EHLO a\r\nMAIL FROM:<x>\r\n.\r\nbad\nend\r\n";
	const char *want[] = { "EHLO a", "MAIL FROM:<x>", ".", "bad", "end" };
	int terms[] = { 1, 1, 1, 2, 1 }, got = 0;

	setup(16, 14);
	for (size_t i = 0; in[i]; i++) {
		CHECK_EQ(linebuf_push(&lb, in + i, 1), 1);
		while (linebuf_next(&lb, &ln) == LINEBUF_LINE && got < 5) {
			CHECK_STREQ(ln.data, want[got]);
			CHECK_EQ(ln.term, terms[got]);
			got++;
		}
	}
	CHECK_EQ(got, 5);
}

/* Over-long line: reported once at its end, the next line is fine. */
static void t_too_long(void)
{
	setup(16, 8);
	push_all("12345678\r\n");
	expect_line("12345678", LINEBUF_TERM_CRLF);
	push_all("123456789\r\nok\r\n");
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_TOOLONG);
	CHECK_EQ(ln.term, LINEBUF_TERM_CRLF);
	expect_line("ok", LINEBUF_TERM_CRLF);
	/* much longer than the buffer, fed in pieces */
	for (int i = 0; i < 100; i++) {
		size_t room;

		CHECK_EQ(linebuf_push(&lb, "abcdefg", 7), 7);
		CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_NEED);
		linebuf_space(&lb, &room);
		CHECK(room >= 7);
	}
	push_all("\r");
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_NEED);
	push_all("\nnext\n");
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_TOOLONG);
	CHECK_EQ(ln.term, LINEBUF_TERM_CRLF);
	expect_line("next", LINEBUF_TERM_LF);
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_NEED);
}

/* The buffer full of complete lines: push takes what fits. */
static void t_full(void)
{
	const char *in = "aaaa\nbbbb\ncccc\ndddd\n";

	setup(12, 6);
	CHECK_EQ(linebuf_push(&lb, in, 20), 12);
	expect_line("aaaa", LINEBUF_TERM_LF);
	expect_line("bbbb", LINEBUF_TERM_LF);
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_NEED);
	CHECK_EQ(linebuf_push(&lb, in + 12, 8), 8);
	expect_line("cccc", LINEBUF_TERM_LF);
	expect_line("dddd", LINEBUF_TERM_LF);
}

/* IMAP literal: raw bytes, CR and LF included, then lines again. */
static void t_raw(void)
{
	setup(32, 20);
	push_all("A1 LOGIN {5}\r\na\r\nb\n rest\r\n");
	expect_line("A1 LOGIN {5}", LINEBUF_TERM_CRLF);
	linebuf_raw(&lb, 5);
	CHECK_EQ(linebuf_raw_left(&lb), 5);
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_RAW);
	CHECK_EQ(ln.len, 5);
	CHECK_MEMEQ(ln.data, "a\r\nb\n", 5);
	CHECK_EQ(ln.term, LINEBUF_TERM_NONE);
	expect_line(" rest", LINEBUF_TERM_CRLF);
	/* a literal larger than the buffer comes out in chunks */
	linebuf_raw(&lb, 100);
	size_t got = 0;
	for (int i = 0; i < 10; i++) {
		char chunk[10];

		memset(chunk, 'z', sizeof chunk);
		CHECK_EQ(linebuf_push(&lb, chunk, 10), 10);
		while (linebuf_next(&lb, &ln) == LINEBUF_RAW)
			got += ln.len;
	}
	CHECK_EQ(got, 100);
	CHECK_EQ(linebuf_raw_left(&lb), 0);
	push_all("x\r\n");
	expect_line("x", LINEBUF_TERM_CRLF);
}

/* STARTTLS: what was pipelined in clear is dropped. */
static void t_discard(void)
{
	setup(64, 32);
	push_all("STARTTLS\r\nMAIL FROM:<evil>\r\nRCPT");
	expect_line("STARTTLS", LINEBUF_TERM_CRLF);
	CHECK_EQ(linebuf_discard(&lb), strlen("MAIL FROM:<evil>\r\nRCPT"));
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_NEED);
	push_all("EHLO x\r\n");
	expect_line("EHLO x", LINEBUF_TERM_CRLF);
	/* discard also ends an over-long line and raw mode */
	push_all("0123456789012345678901234567890123456789");
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_NEED);
	linebuf_raw(&lb, 3);
	linebuf_discard(&lb);
	CHECK_EQ(linebuf_raw_left(&lb), 0);
	push_all("ok\n");
	expect_line("ok", LINEBUF_TERM_LF);
}

/* Zero-copy input, NUL bytes in a line. */
static void t_space_commit(void)
{
	size_t room;
	char *p;

	setup(16, 10);
	p = linebuf_space(&lb, &room);
	CHECK_EQ(room, 16);
	memcpy(p, "a\0b\r\n", 5);
	linebuf_commit(&lb, 5);
	CHECK_EQ(linebuf_next(&lb, &ln), LINEBUF_LINE);
	CHECK_EQ(ln.len, 3);
	CHECK_MEMEQ(ln.data, "a\0b", 4);
}

int main(void)
{
	RUN(t_init_limits);
	RUN(t_terminators);
	RUN(t_split_cr);
	RUN(t_bytewise);
	RUN(t_too_long);
	RUN(t_full);
	RUN(t_raw);
	RUN(t_discard);
	RUN(t_space_commit);
	return check_done();
}
