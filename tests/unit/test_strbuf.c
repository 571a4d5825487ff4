/* test_strbuf.c - the bounded sticky-overflow text builder. */
#include <string.h>

#include "check.h"
#include "strbuf.h"

/* Puts append; the result is the length. */
static void t_append(void)
{
	char buf[32];
	struct strbuf b;

	strbuf_init(&b, buf, sizeof buf);
	CHECK_STREQ(buf, "");
	CHECK_EQ(strbuf_result(&b), 0);
	strbuf_put(&b, "-A %s", "INPUT");
	strbuf_put(&b, " %d,%u", 25, 587u);
	strbuf_put(&b, "%c", '\n');
	CHECK_STREQ(buf, "-A INPUT 25,587\n");
	CHECK_EQ(strbuf_result(&b), 16);
	CHECK_EQ(b.len, strlen(buf));
}

/* Exactly full (7 characters + NUL in 8 bytes) still fits; one more
 * byte does not, and the text keeps only the whole puts. */
static void t_boundary(void)
{
	char buf[8];
	struct strbuf b;

	strbuf_init(&b, buf, sizeof buf);
	strbuf_put(&b, "abc");
	strbuf_put(&b, "defg");                       /* 7 + NUL = 8: fits */
	CHECK_EQ(strbuf_result(&b), 7);
	CHECK_STREQ(buf, "abcdefg");
	strbuf_put(&b, "%s", "");                     /* nothing to add: fits */
	CHECK_EQ(strbuf_result(&b), 7);
	strbuf_put(&b, "h");
	CHECK_EQ(strbuf_result(&b), -1);
	CHECK_STREQ(buf, "abcdefg");
}

/* After an overflow nothing is appended, even what would fit. */
static void t_sticky(void)
{
	char buf[10];
	struct strbuf b;

	strbuf_init(&b, buf, sizeof buf);
	strbuf_put(&b, "ab");
	strbuf_put(&b, "%s", "this is far too long");
	CHECK_STREQ(buf, "ab");                       /* the cut part is dropped */
	CHECK(b.full);
	strbuf_put(&b, "c");
	CHECK_STREQ(buf, "ab");
	CHECK_EQ(b.len, 2);
	CHECK_EQ(strbuf_result(&b), -1);
}

/* A zero-byte buffer is full from the start and never written. */
static void t_zero(void)
{
	char guard = 'x';
	struct strbuf b;

	strbuf_init(&b, &guard, 0);
	CHECK(b.full);
	strbuf_put(&b, "a");
	CHECK_EQ(guard, 'x');
	CHECK_EQ(strbuf_result(&b), -1);
}

int main(void)
{
	RUN(t_append);
	RUN(t_boundary);
	RUN(t_sticky);
	RUN(t_zero);
	return check_done();
}
