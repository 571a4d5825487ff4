/*
 * fuzz_leases.c - libFuzzer target for the udhcpd lease file reader
 * (leases.h): any bytes as a lease file, at a fixed "now"; every lease it
 * returns must carry a clean DNS label (or none) and an expiry after now.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "leases.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW 1700000000
#define FUZZ_LEASES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct lease l[FUZZ_LEASES];
	int n = leases_parse(data, size, FUZZ_NOW, l, FUZZ_LEASES);
	if (n > FUZZ_LEASES)
		abort();
	for (int i = 0; i < n; i++) {
		size_t len = strlen(l[i].name);
		if (l[i].expires <= FUZZ_NOW || len > LEASES_HOSTNAME_RAW ||
		    strspn(l[i].name, "abcdefghijklmnopqrstuvwxyz0123456789-") != len)
			abort();
	}
	return 0;
}
