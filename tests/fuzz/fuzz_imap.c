/*
 * fuzz_imap.c - libFuzzer target for the IMAP command core (imap-proto.h).
 * The input is what a client sent: it is cut into lines and literals as
 * the daemon does, each whole command is tokenized the way the commands
 * read their arguments (tag, name, then strings, lists, sequence sets and
 * fetch attributes until the end), and every string token is also tried
 * as a modified UTF-7 mailbox name: a name that decodes must re-encode to
 * a name that decodes to the same UTF-8.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_TOKEN_MAX 4096

static void mailbox_roundtrip(const char *name)
{
	char u1[FUZZ_TOKEN_MAX * 2], m[FUZZ_TOKEN_MAX * 4], u2[FUZZ_TOKEN_MAX * 2];

	if (strlen(name) >= FUZZ_TOKEN_MAX || imap_mutf7_decode(name, u1, sizeof u1) < 0)
		return;
	if (imap_mutf7_encode(u1, m, sizeof m) < 0 || imap_mutf7_decode(m, u2, sizeof u2) < 0 ||
	    strcmp(u1, u2) != 0)
		abort();
}

static void tokens(char *s, size_t len)
{
	struct imap_parser p;
	char tok[FUZZ_TOKEN_MAX];
	size_t n;

	imap_parser_init(&p, s, len);
	if (imap_tag(&p, tok, sizeof tok) < 0 || imap_sp(&p) < 0 || imap_atom(&p, tok, sizeof tok) < 0)
		return;
	for (int guard = 0; guard < 1000 && imap_eol(&p) < 0; guard++) {
		size_t before = p.pos;
		struct imap_seqset set;
		const char *lit;

		if (imap_sp(&p) < 0 && !imap_take(&p, '(') && !imap_take(&p, ')'))
			return;
		if (imap_peek(&p) == '(' && (p.pos & 2)) {   /* RFC 7162 modifiers */
			uint64_t ms;

			if (imap_modifier(&p, (p.pos & 4) ? "UNCHANGEDSINCE" : "CHANGEDSINCE", &ms) == 0 &&
			    ms > IMAP_MODSEQ_MAX)
				abort();
		} else if (imap_peek(&p) >= '0' && imap_peek(&p) <= '9' && (p.pos & 2)) {
			uint64_t ms;

			if (imap_modseq(&p, &ms) == 0 && ms > IMAP_MODSEQ_MAX)
				abort();
		} else if (imap_peek(&p) == '{' && (p.pos & 1)) {
			if (imap_literal_ref(&p, &lit, &n) < 0)
				return;
		} else if (imap_seqset(&p, &set) == 0) {
			(void)imap_seqset_has(&set, 7, 9);
			imap_seqset_free(&set);
		} else if (imap_list_mailbox(&p, tok, sizeof tok, &n) == 0) {
			mailbox_roundtrip(tok);
		} else if (imap_fetch_token(&p, tok, sizeof tok) < 0 && p.pos == before) {
			return;
		}
		if (p.pos > p.len)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_cmd c;
	size_t i = 0;

	imap_cmd_init(&c);
	while (i < size) {
		int r;

		if (imap_cmd_literal_left(&c) > 0) {
			size_t n = (size_t)imap_cmd_literal_left(&c);

			if (n > size - i)
				n = size - i;
			imap_cmd_raw(&c, (const char *)data + i, n);
			i += n;
			continue;
		}
		const uint8_t *eol = memchr(data + i, '\n', size - i);
		size_t ll = eol ? (size_t)(eol - (data + i)) : size - i;
		size_t take = ll + (eol ? 1 : 0);

		if (ll && data[i + ll - 1] == '\r')
			ll--;
		r = imap_cmd_line(&c, (const char *)data + i, ll, ll > IMAP_LINE_MAX);
		i += take;
		if (r == IMAP_CMD_DONE) {
			size_t len;
			char *t = imap_cmd_text(&c, &len);

			tokens(t, len);
		}
		if (r == IMAP_CMD_DONE || r == IMAP_CMD_FAILED)
			imap_cmd_reset(&c);
	}
	imap_cmd_free(&c);
	return 0;
}
