/*
 * fuzz_status.c - libFuzzer target for the status-record parser
 * (status.h), read by admind, the CGI and `postern alerts`: parse, and for
 * a record that parses, format it and parse the text again (must succeed
 * with the same fields); and the firewall-log scan (status_blocked_parse)
 * over the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct status_rec r, q;
	struct status_blocked b[8];
	char text[STATUS_FILE_MAX + 1];
	int n;

	n = status_blocked_parse((const char *)data, size, b, 8);
	for (int i = 0; i < n; i++)
		if (!b[i].count || !b[i].src[0] || !b[i].dst[0] || b[i].port > 65535)
			abort();
	if (status_parse((const char *)data, size, &r) != 0)
		return 0;
	n = status_format(&r, text, sizeof text);
	if (n < 0)
		abort();   /* every parsed record fits */
	if (status_parse(text, (size_t)n, &q) != 0 || strcmp(q.kind, r.kind) ||
	    strcmp(q.name, r.name) || q.time != r.time || q.result != r.result ||
	    q.fetched != r.fetched || q.failures != r.failures || q.last_ok != r.last_ok ||
	    strcmp(q.detail, r.detail))
		abort();
	(void)status_result_text(r.result);
	return 0;
}
