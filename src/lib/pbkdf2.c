/*
 * pbkdf2.c - PBKDF2-HMAC-SHA256 (RFC 8018 section 5.2).
 *
 * The HMAC key schedule (inner and outer padded key blocks) is computed once
 * per password, so each iteration costs two SHA-256 compressions.
 */
#include <string.h>

#include <bearssl.h>

#include "pbkdf2.h"

#define PBKDF2_HLEN 32          /* SHA-256 output length */

/* One output block T_i = U_1 ^ U_2 ^ ... ^ U_c (RFC 8018, F function). */
static void pbkdf2_block(const br_hmac_key_context *kc, const void *salt,
			 size_t saltlen, uint32_t iterations, uint32_t index,
			 unsigned char t[PBKDF2_HLEN])
{
	br_hmac_context hc;
	unsigned char u[PBKDF2_HLEN];
	unsigned char be[4] = { (unsigned char)(index >> 24),
		(unsigned char)(index >> 16), (unsigned char)(index >> 8),
		(unsigned char)index };

	br_hmac_init(&hc, kc, 0);
	br_hmac_update(&hc, salt, saltlen);
	br_hmac_update(&hc, be, sizeof be);
	br_hmac_out(&hc, u);
	memcpy(t, u, PBKDF2_HLEN);
	for (uint32_t i = 1; i < iterations; i++) {
		br_hmac_init(&hc, kc, 0);
		br_hmac_update(&hc, u, PBKDF2_HLEN);
		br_hmac_out(&hc, u);
		for (size_t j = 0; j < PBKDF2_HLEN; j++)
			t[j] ^= u[j];
	}
	memset(u, 0, sizeof u);
	memset(&hc, 0, sizeof hc);
}

int pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt, size_t saltlen,
		  uint32_t iterations, void *out, size_t outlen)
{
	br_hmac_key_context kc;
	unsigned char t[PBKDF2_HLEN];
	unsigned char *o = out;

	if (iterations == 0 || outlen == 0 || outlen > PBKDF2_OUT_MAX ||
	    (pwlen && !pw) || (saltlen && !salt) || !out)
		return -1;
	br_hmac_key_init(&kc, &br_sha256_vtable, pw, pwlen);
	for (uint32_t i = 1; outlen > 0; i++) {
		size_t n = outlen < PBKDF2_HLEN ? outlen : PBKDF2_HLEN;

		pbkdf2_block(&kc, salt, saltlen, iterations, i, t);
		memcpy(o, t, n);
		o += n;
		outlen -= n;
	}
	memset(t, 0, sizeof t);
	memset(&kc, 0, sizeof kc);
	return 0;
}
