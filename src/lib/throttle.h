/*
 * throttle.h - failed-login throttling shared by every daemon and the web
 * page.
 *
 * State lives in one file (the caller gives its path, normally under
 * /run/postern/), locked with flock() for each operation, so every process
 * sees the same counts. Records are keyed by the (user, source address) pair
 * together: failures from one address never delay the same user logging in
 * from another, so nobody can lock a user out from elsewhere.
 *
 * After THROTTLE_FREE_FAILS failures, each further failure makes the next
 * attempt wait 1, 2, 4, ... seconds (capped at THROTTLE_DELAY_MAX) counted
 * from the last failure. A record is forgotten THROTTLE_EXPIRE seconds after
 * its last failure, or at once on success. The file holds at most
 * THROTTLE_ENTRIES_MAX records; when full, the oldest is evicted.
 *
 * Time is passed in (`now`, seconds), so tests need no sleeping. User names
 * are compared case-insensitively. The file holds SHA-256 digests of the
 * pairs, not the names.
 */
#ifndef POSTERN_THROTTLE_H
#define POSTERN_THROTTLE_H

#include <time.h>

#define THROTTLE_FREE_FAILS 3        /* failures with no delay */
#define THROTTLE_DELAY_MAX 300       /* longest wait, seconds */
#define THROTTLE_EXPIRE 3600         /* seconds after the last failure */
#define THROTTLE_ENTRIES_MAX 4096    /* records in the state file */

/*
 * Seconds `user` from `addr` must still wait before a login attempt may be
 * checked (0: may try now), or -1 if the state file cannot be used.
 * Callers refuse the attempt without checking the password while this is
 * positive.
 */
long throttle_check(const char *path, const char *user, const char *addr, time_t now);

/* Record a failed attempt. Returns the wait now due (as throttle_check), or -1. */
long throttle_fail(const char *path, const char *user, const char *addr, time_t now);

/* Record a successful login: the pair's record is cleared. Returns 0 or -1. */
int throttle_success(const char *path, const char *user, const char *addr, time_t now);

/* Failures currently counted for the pair (0 if none), or -1. */
long throttle_failures(const char *path, const char *user, const char *addr, time_t now);

/* The wait due after `fails` failures (THROTTLE_FREE_FAILS free, then doubling). */
long throttle_delay(unsigned long fails);

#endif
