/*
 * fuzz_smtp_client.c - libFuzzer target for the SMTP client core
 * (smtp-client.h). The first byte picks the options (AUTH or not, implicit
 * TLS, the piece size); the rest is what the server sent. The harness plays
 * the relay: it completes TLS when asked, starts a transaction in IDLE,
 * streams a body with dot lines, moves on after each result. Invariants:
 * nothing but EHLO/STARTTLS/QUIT leaves before TLS is up; every output line
 * ends in CRLF; results only for the recipients given.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const rcpts[] = { "a@x.test", "b@y.test" };
static const char body[] = "Subject: f\r\n\r\n.dot\r\nbare\nlf\rcr\r\n.\r\nend";

/* Checks and drops the pending output. */
static void drain(struct smtpc *c)
{
	size_t len;
	const char *out = smtpc_output(c, &len);

	if (!c->tls && len && (memmem(out, len, "AUTH", 4) || memmem(out, len, "MAIL", 4) ||
			      memmem(out, len, "RCPT", 4)))
		abort();
	if (len && (out[len - 1] != '\n' || (len > 1 && out[len - 2] != '\r')))
		if (c->state != SMTPC_S_BODY)
			abort();
	for (size_t i = 0; i < len; i++)
		if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
			abort();
	smtpc_consumed(c, len);
}

static void act(struct smtpc *c, int *txns)
{
	for (int guard = 0; guard < 8; guard++) {
		switch (smtpc_state(c)) {
		case SMTPC_S_TLS_WANTED:
			smtpc_tls_started(c, 1, NULL);
			break;
		case SMTPC_S_IDLE:
			if ((*txns)++ < 3)
				smtpc_begin(c, "s@example.com", rcpts, 2);
			else
				smtpc_quit(c);
			break;
		case SMTPC_S_BODY:
			smtpc_body(c, body, sizeof body - 1);
			drain(c);
			smtpc_body_end(c);
			break;
		case SMTPC_S_MSG_DONE:
			for (int i = 0; i < 2; i++)
				if (!smtpc_rcpt_result(c, i))
					abort();
			if (smtpc_rcpt_result(c, 2))
				abort();
			smtpc_next(c);
			break;
		default:
			return;
		}
		drain(c);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct smtpc c;
	struct smtpc_params p = { .ehlo_name = "box.example.com" };
	size_t piece, off = 1;
	int txns = 0;

	if (size < 1)
		return 0;
	p.tls_active = data[0] & 1;
	if (data[0] & 2) {
		p.user = "relay";
		p.password = "pw";
	}
	piece = (size_t)(data[0] >> 2) + 1;
	if (smtpc_init(&c, &p) < 0)
		abort();
	while (off < size) {
		size_t n = size - off < piece ? size - off : piece;

		smtpc_input(&c, data + off, n);   /* bytes it refuses are dropped */
		off += n;
		drain(&c);
		act(&c, &txns);
		if (smtpc_state(&c) == SMTPC_S_FAILED || smtpc_state(&c) == SMTPC_S_CLOSED)
			break;
	}
	smtpc_eof(&c);
	return 0;
}
