/*
 * fuzz_pop3.c - libFuzzer target for the POP3 client protocol core
 * (pop3-proto.h). The first byte picks the options (multi-line, CRLF
 * translation, a body limit, the piece size); the rest is what a server
 * sent. The responses are read one after another, once whole and once in
 * pieces: both runs must give the same results and the same body bytes
 * (the parser state may not depend on how TCP cut the stream). Body lines
 * also go through the CAPA, UIDL and LIST line parsers.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Body bytes kept for the comparison. */
#define FUZZ_OUT_MAX (1 << 20)

struct out {
	unsigned char *d;
	size_t n;
};

static int sink(void *arg, const void *p, size_t len)
{
	struct out *o = arg;
	if (o->n + len > FUZZ_OUT_MAX)
		return -1;
	memcpy(o->d + o->n, p, len);
	o->n += len;
	return 0;
}

static int on_line(void *arg, const char *line, size_t len)
{
	unsigned no;
	uint64_t sz;
	char uid[POP3_UIDL_MAX + 1];
	struct pop3_capa c;
	(void)arg;
	if (pop3_uidl_line(line, len, &no, uid) == 0 && (!pop3_uid_valid(uid) || no == 0))
		abort();
	(void)pop3_list_line(line, len, &no, &sz);
	pop3_capa_parse(line, len, &c);
	return 0;
}

static struct pop3_reader rd;

/* Reads every response in data with pieces of step bytes; records each
 * result into res (up to 64) and returns how many. */
static int run(const uint8_t *data, size_t size, uint8_t opt, size_t step,
	struct out *o, int res[64])
{
	size_t pos = 0;
	int nres = 0;
	while (pos < size && nres < 64) {
		pop3_reader_start(&rd, opt & 1, (opt >> 1) & 1, (opt & 4) ? 300 : 0, sink, o);
		int rc = POP3_NEED;
		while (pos < size) {
			size_t k = size - pos < step ? size - pos : step, used;
			rc = pop3_reader_feed(&rd, data + pos, k, &used);
			if (used > k)
				abort();
			pos += used;
			if (rc != POP3_NEED)
				break;
		}
		res[nres++] = rc * 4 + rd.ok * 2 + rd.too_big;
		if (rc < 0)
			break;
	}
	return nres;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t opt = data[0];
	size_t step = 1 + (opt >> 3);
	data++;
	size--;
	static unsigned char da[FUZZ_OUT_MAX], db[FUZZ_OUT_MAX];
	struct out a = { da, 0 }, b = { db, 0 };
	int ra[64], rb[64];
	int na = run(data, size, opt, size ? size : 1, &a, ra);
	int nb = run(data, size, opt, step, &b, rb);
	if (na != nb || memcmp(ra, rb, (size_t)na * sizeof ra[0]) != 0 || a.n != b.n ||
	    memcmp(a.d, b.d, a.n) != 0)
		abort();
	struct pop3_lines *l = malloc(sizeof *l);
	if (l) {
		pop3_lines_init(l, on_line, NULL);
		if (pop3_lines_sink(l, a.d, a.n) == 0)
			pop3_lines_end(l);
		free(l);
	}
	const char *text;
	(void)pop3_status_parse((const char *)data, size, &text);
	return 0;
}
