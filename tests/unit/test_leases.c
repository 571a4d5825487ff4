/*
 * test_leases.c - BusyBox udhcpd lease files (leases.h): the header and
 * 36-byte records, expiry relative to written_at, skipped empty and
 * expired records, partial records, host names cleaned into DNS labels,
 * the clock sanity check, leases_load on real files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "leases.h"

#define NOW 1700000000

struct file {
	uint8_t b[LEASES_HEADER_LEN + 16 * LEASES_RECORD_LEN];
	size_t len;
};

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void file_start(struct file *f, int64_t written_at)
{
	memset(f, 0, sizeof *f);
	put_be(f->b, (uint64_t)written_at, 8);
	f->len = LEASES_HEADER_LEN;
}

/* One struct dyn_lease: expires (seconds left), nip, mac, hostname, pad. */
static void file_add(struct file *f, uint32_t left, const uint8_t ip[4], const char *name)
{
	uint8_t *r = f->b + f->len;
	put_be(r, left, 4);
	memcpy(r + 4, ip, 4);
	static const uint8_t mac[6] = { 2, 0, 0, 0, 0, 1 };
	memcpy(r + 8, mac, 6);
	memcpy(r + 14, name, strnlen(name, LEASES_HOSTNAME_RAW));
	f->len += LEASES_RECORD_LEN;
}

static void t_parse(void)
{
	struct file f;
	struct lease l[8];
	static const uint8_t a1[4] = { 192, 168, 10, 100 }, a2[4] = { 192, 168, 10, 101 },
		zero[4];
	file_start(&f, NOW - 10);
	file_add(&f, 3600, a1, "DeskPC");
	file_add(&f, 5, a2, "gone");		/* ended 5 s ago */
	file_add(&f, 0, a2, "expired");		/* udhcpd writes 0 for expired */
	file_add(&f, 3600, zero, "noaddr");
	file_add(&f, 60, a2, "laptop-7");
	CHECK_EQ(leases_parse(f.b, f.len, NOW, l, 8), 2);
	CHECK_STREQ(l[0].name, "deskpc");
	CHECK_EQ(l[0].expires, NOW - 10 + 3600);
	CHECK_MEMEQ(l[0].addr, a1, 4);
	CHECK_STREQ(l[1].name, "laptop-7");
	/* a partial record at the end is not read */
	CHECK_EQ(leases_parse(f.b, f.len - 1, NOW, l, 8), 1);
	/* max is respected */
	CHECK_EQ(leases_parse(f.b, f.len, NOW, l, 1), 1);
}

static void t_header(void)
{
	struct file f;
	struct lease l[2];
	file_start(&f, NOW);
	CHECK_EQ(leases_parse(f.b, 7, NOW, l, 2), -1);
	CHECK_EQ(leases_parse(f.b, 8, NOW, l, 2), 0);
	file_start(&f, NOW + 2 * 86400);	/* written in the future: bad clock */
	CHECK_EQ(leases_parse(f.b, f.len, NOW, l, 2), -1);
	file_start(&f, -1);			/* 0xffff...: absurd */
	CHECK_EQ(leases_parse(f.b, f.len, NOW, l, 2), -1);
}

static void t_clean_name(void)
{
	char out[LEASES_HOSTNAME_RAW + 1];
	CHECK_EQ(leases_clean_name("Host-1", 20, out), 6);
	CHECK_STREQ(out, "host-1");
	/* exactly 20 bytes without NUL */
	CHECK_EQ(leases_clean_name("abcdefghijklmnopqrstUVW", 20, out), 20);
	CHECK_STREQ(out, "abcdefghijklmnopqrst");
	static const char *bad[] = { "", "www.google.com", "a_b", "-x", "x-", "a b", "\xc3\xa9t\xc3\xa9",
		"x\n" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK_EQ(leases_clean_name(bad[i], strlen(bad[i]) + 1, out), 0);
		CHECK_STREQ(out, "");
	}
}

static void t_load(void)
{
	char path[] = "/tmp/test_leases.XXXXXX";
	struct lease l[4];
	struct file f;
	static const uint8_t a1[4] = { 192, 168, 10, 100 };
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK_EQ(leases_load(path, NOW, l, 4), -1);	/* empty: being rewritten */
	file_start(&f, NOW);
	file_add(&f, 600, a1, "printer2");
	CHECK_EQ(write(fd, f.b, f.len), (ssize_t)f.len);
	close(fd);
	CHECK_EQ(leases_load(path, NOW, l, 4), 1);
	CHECK_STREQ(l[0].name, "printer2");
	char link[sizeof path + 8];
	snprintf(link, sizeof link, "%s.link", path);
	CHECK_EQ(symlink(path, link), 0);
	CHECK_EQ(leases_load(link, NOW, l, 4), -1);	/* O_NOFOLLOW */
	unlink(link);
	unlink(path);
	CHECK_EQ(leases_load(path, NOW, l, 4), 0);	/* missing: no leases */
}

int main(void)
{
	RUN(t_parse);
	RUN(t_header);
	RUN(t_clean_name);
	RUN(t_load);
	return check_done();
}
