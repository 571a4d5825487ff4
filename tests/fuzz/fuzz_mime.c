/*
 * fuzz_mime.c - libFuzzer target for the MIME structure parser (mime.h)
 * and the IMAP renderings on it (imap-proto.h section 5). The input is a
 * message: it is parsed whole and again in chunks whose sizes come from
 * the input's first byte (the trees must render the same), then rendered
 * (ENVELOPE of every message entity, BODYSTRUCTURE and BODY) and a set of
 * section specs is resolved; every range must lie inside the message.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap-proto.h"
#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const specs[] = {
	"", "HEADER", "TEXT", "1", "1.MIME", "2", "1.1", "1.2.3", "2.HEADER", "2.TEXT",
	"3.1.MIME", "1.1.1.1", "HEADER.FIELDS (From To)", "2.HEADER.FIELDS.NOT (Subject)",
};

static char *render(const struct mime *m)
{
	struct imap_buf b = { 0 };

	imap_bodystructure(&b, m, 0, 1);
	imap_bodystructure(&b, m, 0, 0);
	for (int i = 0; i < m->nparts; i++)
		if (m->parts[i].is_message)
			imap_envelope(&b, m, i);
	if (b.oom)
		abort();
	return b.p;
}

static void check_tree(const struct mime *m, size_t size)
{
	for (int i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];

		if (p->hdr_off > p->body_off || p->body_off > p->end_off || p->end_off > size ||
		    p->hdr_n > p->body_n || p->body_n > p->end_n)
			abort();
	}
	for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
		struct imap_section s;

		if (imap_section_resolve(m, specs[k], &s) < 0)
			abort();   /* every spec in the list is valid */
		if (s.part >= 0 && (s.off > size || s.len > size - s.off || s.len > s.len_n))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime a, b;
	size_t step = size ? (size_t)data[0] % 61 + 1 : 1;
	char *ra, *rb;

	if (mime_parse(&a, data, size) < 0)
		return 0;
	check_tree(&a, size);
	if (mime_init(&b) < 0) {
		mime_free(&a);
		return 0;
	}
	for (size_t i = 0; i < size; i += step)
		mime_feed(&b, data + i, i + step < size ? step : size - i);
	mime_finish(&b);
	ra = render(&a);
	rb = render(&b);
	if (!ra || !rb || strcmp(ra, rb) != 0)
		abort();
	free(ra);
	free(rb);
	mime_free(&a);
	mime_free(&b);
	return 0;
}
