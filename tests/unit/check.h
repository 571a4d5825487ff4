/*
 * check.h - the unit-test harness: one test program per tests/unit/test_*.c,
 * built against the host library with ASan+UBSan and run by
 * tests/unit/test_unit.py.
 *
 *   static void t_example(void) { CHECK(1 + 1 == 2); CHECK_STREQ("a", s); }
 *   int main(void) { RUN(t_example); return check_done(); }
 *
 * A failed CHECK prints file:line and the expression, and the program's exit
 * status is 1; the other checks still run.
 */
#ifndef POSTERN_CHECK_H
#define POSTERN_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(expr) do { check_count++; if (!(expr)) { check_failures++; \
	fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); } } while (0)

#define CHECK_EQ(a, b) do { long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
	check_count++; if (check_a_ != check_b_) { check_failures++; \
	fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", \
		__FILE__, __LINE__, #a, #b, check_a_, check_b_); } } while (0)

#define CHECK_STREQ(a, b) do { const char *check_a_ = (a), *check_b_ = (b); \
	check_count++; if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) { \
	check_failures++; fprintf(stderr, "%s:%d: CHECK_STREQ failed: %s == %s (\"%s\" != \"%s\")\n", \
		__FILE__, __LINE__, #a, #b, check_a_ ? check_a_ : "(null)", \
		check_b_ ? check_b_ : "(null)"); } } while (0)

#define CHECK_MEMEQ(a, b, n) do { check_count++; if (memcmp((a), (b), (n)) != 0) { \
	check_failures++; fprintf(stderr, "%s:%d: CHECK_MEMEQ failed: %s == %s\n", \
		__FILE__, __LINE__, #a, #b); } } while (0)

#define RUN(fn) do { int check_before_ = check_failures; fn(); \
	fprintf(stderr, "%s %s\n", check_failures == check_before_ ? "ok  " : "FAIL", #fn); } while (0)

static inline int check_done(void)
{
	fprintf(stderr, "%d checks, %d failed\n", check_count, check_failures);
	return check_failures ? 1 : 0;
}

#endif
