/*
 * fuzz_http.c - libFuzzer target for the HTTP request parser and the form
 * and cookie decoders.
 *
 * Input: byte 0 seeds the chunk sizes, the rest is the stream. The stream
 * is parsed whole and in chunks; both must end in the same state, status
 * and request fields (chunking must never change the result). Then the
 * body, target and cookie are run through the decoders.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct http_req whole, split;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_http: %s\n", what);
	abort();
}

static void decoders(const struct http_req *r)
{
	char out[256], p[HTTP_TARGET_MAX + 1], q[HTTP_TARGET_MAX + 1];

	if (http_form_get(r->body, r->body_len, "a", out, sizeof out) >= (int)sizeof out)
		fail("form value too long");
	http_cookie_get(r->cookie, "sid", out, sizeof out);
	if (http_target_split(r->target, p, sizeof p, q, sizeof q) == 0 && strstr(p, "/../"))
		fail("dot segment accepted");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned seed;
	size_t off = 0, took_whole;

	if (size < 1)
		return 0;
	seed = data[0];
	data++, size--;
	http_req_init(&whole);
	took_whole = http_req_feed(&whole, (const char *)data, size);
	http_req_init(&split);
	while (off < size && (split.state != HTTP_DONE && split.state != HTTP_ERROR)) {
		seed = seed * 1103515245u + 12345u;
		size_t n = 1 + (seed >> 16) % 17;
		if (n > size - off)
			n = size - off;
		off += http_req_feed(&split, (const char *)data + off, n);
	}
	if (whole.state != split.state || whole.status != split.status || took_whole != off)
		fail("chunking changed the result");
	if (strcmp(whole.target, split.target) || whole.body_len != split.body_len ||
	    memcmp(whole.body, split.body, whole.body_len) || strcmp(whole.cookie, split.cookie))
		fail("chunking changed a field");
	decoders(&whole);
	return 0;
}
