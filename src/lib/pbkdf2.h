/*
 * pbkdf2.h - PBKDF2-HMAC-SHA256 (RFC 8018 section 5.2) on BearSSL's HMAC.
 *
 * Used for the password hashes in the users file (see users.h and
 * docs/USERS.md). Known-answer tests: tests/unit/test_pbkdf2.c (RFC 7914
 * section 11 vectors).
 */
#ifndef POSTERN_PBKDF2_H
#define POSTERN_PBKDF2_H

#include <stddef.h>
#include <stdint.h>

/* Largest derived key pbkdf2_sha256() produces, in bytes. */
#define PBKDF2_OUT_MAX 1024

/*
 * Derive `outlen` bytes (1..PBKDF2_OUT_MAX) from password `pw` and `salt`
 * with `iterations` (>= 1) rounds of HMAC-SHA256 into `out`.
 * Returns 0, or -1 if an argument is out of range.
 */
int pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt, size_t saltlen,
		  uint32_t iterations, void *out, size_t outlen);

#endif
