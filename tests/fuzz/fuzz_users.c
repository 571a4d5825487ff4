/*
 * fuzz_users.c - libFuzzer target for the users-file parser (users.h):
 * parse, and for a valid file also format, re-parse (must succeed with the
 * same text) and resolve a few addresses.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const struct users_db *db)
{
	struct users_db db2;
	char err[256], out[8][USERS_NAME_MAX + 1];
	size_t need = users_format(db, NULL, 0);
	char *a = malloc(need + 1), *b;

	if (!a)
		return;
	users_format(db, a, need + 1);
	if (users_parse(&db2, a, need, err, sizeof err) != 0)
		abort();   /* what we write, we must read back */
	b = malloc(need + 1);
	if (!b || users_format(&db2, b, need + 1) != need || memcmp(a, b, need) != 0)
		abort();
	for (size_t i = 0; i < db2.n && i < 8; i++)
		if (db2.e[i].kind != USERS_KIND_TEXT) {
			char addr[USERS_NAME_MAX + 32];

			strcpy(addr, db2.e[i].name);
			strcat(addr, "@example.com");
			(void)users_resolve(&db2, addr, "example.com", out, 8);
			(void)users_owns(&db2, db2.e[0].name, addr, "example.com");
		}
	users_free(&db2);
	free(a);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct users_db db;
	char err[256];

	if (users_parse(&db, (const char *)data, size, err, sizeof err) == 0) {
		roundtrip(&db);
		users_free(&db);
	} else if (err[0] == '\0') {
		abort();   /* every error has a message */
	}
	return 0;
}
