/*
 * fuzz_smtp.c - libFuzzer target for the SMTP server core (smtp-proto.h).
 * The first byte picks the session (bit 0: implicit TLS, bit 1: split the
 * input in small pieces, bit 2: pretend the STARTTLS handshake succeeds);
 * the rest is fed as client bytes, replies are drained as a client would.
 * Checks: every reply line is CRLF-terminated, starts with three digits,
 * and nothing is answered after the session closed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum smtp_verdict f_auth(void *ctx, struct smtp_server *s, const char *u, const char *p)
{
	(void)ctx;
	(void)s;
	return strcmp(u, "alice") == 0 && strcmp(p, "secret") == 0 ? SMTP_OK : SMTP_AUTH_FAILED;
}

static enum smtp_verdict f_rcpt(void *ctx, struct smtp_server *s, const char *a)
{
	(void)ctx;
	(void)s;
	return a[0] == 'x' ? SMTP_RCPT_UNKNOWN : SMTP_OK;
}

static enum smtp_verdict f_start(void *ctx, struct smtp_server *s)
{
	(void)ctx;
	strcpy(s->txn.queue_id, "FUZZ");
	return SMTP_OK;
}

static int f_write(void *ctx, struct smtp_server *s, const char *b, size_t n)
{
	(void)s;
	*(size_t *)ctx += n;
	return b[0] == '!' ? -1 : 0;
}

static enum smtp_verdict f_auth_later(void *ctx, struct smtp_server *s, const char *u,
				      const char *p)
{
	(void)ctx;
	(void)s;
	(void)u;
	(void)p;
	return SMTP_PENDING;
}

static enum smtp_verdict f_end_later(void *ctx, struct smtp_server *s)
{
	(void)ctx;
	(void)s;
	return SMTP_PENDING;
}

static const struct smtp_hooks hooks = {
	.auth = f_auth, .rcpt = f_rcpt, .data_start = f_start, .data_write = f_write,
};
static const struct smtp_hooks hooks_later = {
	.auth = f_auth_later, .rcpt = f_rcpt, .data_start = f_start, .data_write = f_write,
	.data_end = f_end_later,
};

static void check_output(struct smtp_server *s)
{
	size_t n, i = 0;
	const char *o = smtp_server_output(s, &n);

	while (i < n) {
		const char *nl = memchr(o + i, '\n', n - i);

		if (!nl || nl == o + i || nl[-1] != '\r' || (size_t)(nl - (o + i)) < 4)
			abort();
		for (int k = 0; k < 3; k++)
			if (o[i + k] < '0' || o[i + k] > '9')
				abort();
		i = (size_t)(nl - o) + 1;
	}
	smtp_server_consumed(s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct smtp_server s;
	struct smtp_params p = { "fuzz.example", 100000, 1, 0, 1, "192.0.2.1" };
	size_t stored = 0, off = 1;
	int mode;

	if (size < 1)
		return 0;
	mode = data[0];
	p.tls_active = mode & 1;
	smtp_server_init(&s, &p, (mode & 8) ? &hooks_later : &hooks, &stored);
	check_output(&s);
	while (off < size) {
		size_t chunk = (mode & 2) ? 1 + data[off] % 7 : size - off;
		size_t took;

		if (chunk > size - off)
			chunk = size - off;
		took = smtp_server_input(&s, data + off, chunk);
		check_output(&s);
		if (smtp_server_tls_wanted(&s)) {
			if (!(mode & 4))
				break;
			smtp_server_tls_started(&s);
		}
		if (smtp_server_closing(&s)) {
			smtp_server_commit(&s, 0);
			size_t n;
			smtp_server_output(&s, &n);
			if (n)
				abort();   /* nothing after the close */
			break;
		}
		off += took;
		if (smtp_server_waiting(&s)) {
			smtp_server_auth_done(&s, (off & 1) ? SMTP_OK : SMTP_AUTH_FAILED);
			smtp_server_data_done(&s, (off & 1) ? SMTP_OK : SMTP_NO_SPACE);
		}
		smtp_server_commit(&s, 0);
		check_output(&s);
	}
	smtp_server_end(&s);
	return 0;
}
