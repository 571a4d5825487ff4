/*
 * fuzz_config.c - libFuzzer target for the postern.conf parser: parse,
 * serialise, parse again; the second model must equal the first, and
 * serialising it again must give the same text.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Isrc/lib tests/fuzz/fuzz_config.c \
 *         src/lib/config.c src/lib/fsutil.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct config_errors errs;
static char out[2 * CONFIG_FILE_MAX], out2[2 * CONFIG_FILE_MAX];

static void fail(const char *what, const char *text)
{
	fprintf(stderr, "fuzz_config: %s\n", what);
	for (int i = 0; i < errs.count; i++)
		fprintf(stderr, "  %s\n", errs.e[i].text);
	fprintf(stderr, "--- serialised:\n%s---\n", text);
	abort();
}

/* config_get on every kind of key must stay within its buffer. */
static void probe(const struct config *c)
{
	static const char *const keys[] = { "hostname", "lan.dhcp-range", "dns.host",
		"firewall.allow", "filter.block-extensions", "smarthost.pin", "backup.time" };
	char small[8], big[4096];

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		(void)config_get(c, keys[i], small, sizeof small);
		(void)config_get(c, keys[i], big, sizeof big);
	}
	if (c->naccounts > 0) {
		snprintf(big, sizeof big, "account.%s.port", c->account[0].h.name);
		if (config_get(c, big, small, sizeof small) < 0)
			fail("config_get of an account port failed", "");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *a, *b;
	int n, n2;

	a = config_parse("fuzz", (const char *)data, size, &errs);
	if (!a)
		return 0;
	probe(a);
	n = config_format(a, out, sizeof out);
	if (n < 0)
		fail("config_format overflowed", "");
	if (n > CONFIG_FILE_MAX) {           /* grew past the limit: not comparable */
		config_free(a);
		return 0;
	}
	b = config_parse("again", out, (size_t)n, &errs);
	if (!b)
		fail("the serialised model does not parse", out);
	if (!config_equal(a, b))
		fail("the re-parsed model differs", out);
	n2 = config_format(b, out2, sizeof out2);
	if (n2 != n || memcmp(out, out2, (size_t)n) != 0)
		fail("serialising twice gives different text", out);
	config_free(a);
	config_free(b);
	return 0;
}
