/*
 * fuzz_linebuf.c - libFuzzer target for the line reader.
 *
 * Input: byte 0 picks line_max and the buffer size, byte 1 seeds the chunk
 * sizes; the rest is the stream. Pass 1 feeds the stream in varying chunks
 * and compares every result with a reference that splits the whole stream
 * at once (chunking must never change the lines). Pass 2 does the same with
 * raw-byte requests (literals) and discards interleaved, checking bounds
 * and byte accounting only.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Isrc/lib \
 *         tests/fuzz/fuzz_linebuf.c src/lib/linebuf.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linebuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_LINE_MAX_TOP 64	/* line_max in 1..64 */
#define FZ_EXTRA_TOP 8		/* buffer slack beyond the minimum */

static char store[FZ_LINE_MAX_TOP + LINEBUF_SLACK + FZ_EXTRA_TOP];

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_linebuf: %s\n", what);
	abort();
}

/* The reference: the next result from s[*pos..len) as a whole. */
static int ref_next(const char *s, size_t len, size_t *pos, size_t line_max,
	size_t *line_start, size_t *line_len, int *term)
{
	for (size_t i = *pos; i < len; i++) {
		size_t skip = 1;

		if (s[i] == '\n')
			*term = LINEBUF_TERM_LF;
		else if (s[i] != '\r')
			continue;
		else if (i + 1 == len)
			return LINEBUF_NEED;
		else if (s[i + 1] == '\n') {
			*term = LINEBUF_TERM_CRLF;
			skip = 2;
		} else
			*term = LINEBUF_TERM_CR;
		*line_start = *pos;
		*line_len = i - *pos;
		*pos = i + skip;
		return *line_len > line_max ? LINEBUF_TOOLONG : LINEBUF_LINE;
	}
	return LINEBUF_NEED;
}

static size_t chunk_size(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return 1 + (*seed >> 16) % 23;
}

/* Checks one linebuf result against the reference. */
static void compare(const char *s, size_t len, size_t *rpos, size_t line_max,
	int r, const struct linebuf_line *ln)
{
	size_t start = 0, llen = 0;
	int term = 0, want = ref_next(s, len, rpos, line_max, &start, &llen, &term);

	if (r != want)
		fail("result differs from the reference");
	if (term != ln->term)
		fail("terminator differs");
	if (r == LINEBUF_LINE && (ln->len != llen || memcmp(ln->data, s + start, llen) != 0 ||
	    ln->data[llen] != '\0'))
		fail("line differs");
}

static void pass_lines(const char *s, size_t len, size_t line_max, size_t cap,
	unsigned seed)
{
	struct linebuf lb;
	struct linebuf_line ln;
	size_t off = 0, rpos = 0;

	if (linebuf_init(&lb, store, cap, line_max) < 0)
		fail("init");
	while (off < len) {
		size_t n = chunk_size(&seed), took;
		int r;

		if (n > len - off)
			n = len - off;
		took = linebuf_push(&lb, s + off, n);
		if (took == 0)
			fail("no room after LINEBUF_NEED");
		off += took;
		while ((r = linebuf_next(&lb, &ln)) != LINEBUF_NEED)
			compare(s, off, &rpos, line_max, r, &ln);
		/* the reference must agree that nothing more is complete */
		size_t st, ll;
		int t;
		if (ref_next(s, off, &rpos, line_max, &st, &ll, &t) != LINEBUF_NEED)
			fail("linebuf missed a line");
	}
}

static void pass_raw(const char *s, size_t len, size_t line_max, size_t cap,
	unsigned seed)
{
	struct linebuf lb;
	struct linebuf_line ln;
	size_t off = 0;

	if (linebuf_init(&lb, store, cap, line_max) < 0)
		fail("init");
	while (off < len) {
		size_t n = chunk_size(&seed);
		int r;

		if (n > len - off)
			n = len - off;
		off += linebuf_push(&lb, s + off, n);
		while ((r = linebuf_next(&lb, &ln)) != LINEBUF_NEED) {
			if (r == LINEBUF_LINE && (ln.len > line_max || memchr(ln.data, '\n', ln.len) ||
			    memchr(ln.data, '\r', ln.len)))
				fail("bad line");
			if (r == LINEBUF_RAW && ln.len == 0)
				fail("empty raw chunk");
			if (r == LINEBUF_LINE && ln.len && (unsigned char)ln.data[0] % 7 == 0)
				linebuf_raw(&lb, (unsigned char)ln.data[0]);
		}
		if (linebuf_pending(&lb) > cap)
			fail("pending beyond the buffer");
		if ((seed >> 8) % 97 == 0)
			linebuf_discard(&lb);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t line_max, cap;

	if (size < 2)
		return 0;
	line_max = 1 + data[0] % FZ_LINE_MAX_TOP;
	cap = line_max + LINEBUF_SLACK + (data[0] / FZ_LINE_MAX_TOP) % FZ_EXTRA_TOP;
	pass_lines((const char *)data + 2, size - 2, line_max, cap, data[1]);
	pass_raw((const char *)data + 2, size - 2, line_max, cap, data[1]);
	return 0;
}
