/* leases.c - BusyBox udhcpd lease files: see leases.h. */
#include "leases.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"

#define LEASES_CLOCK_SLACK 86400	/* written_at this far ahead of now: refused */

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static int is_letter_digit(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

size_t leases_clean_name(const char *raw, size_t n, char out[LEASES_HOSTNAME_RAW + 1])
{
	size_t len = 0;
	out[0] = 0;
	while (len < n && len < LEASES_HOSTNAME_RAW && raw[len])
		len++;
	if (len == 0 || len > LEASES_LABEL_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = raw[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		/* RFC 952 / RFC 1123 2.1: letters, digits, hyphens inside */
		if (!is_letter_digit(c) && !(c == '-' && i > 0 && i + 1 < len)) {
			out[0] = 0;
			return 0;
		}
		out[i] = c;
	}
	out[len] = 0;
	return len;
}

static int parse_record(const uint8_t *r, int64_t written_at, int64_t now, struct lease *l)
{
	uint32_t left = (uint32_t)get_be(r, 4);
	static const uint8_t zero[4];
	if (left == 0 || memcmp(r + 4, zero, 4) == 0)
		return 0;
	l->expires = written_at + (int64_t)left;
	if (l->expires <= now)
		return 0;
	memcpy(l->addr, r + 4, 4);
	memcpy(l->mac, r + 8, 6);
	leases_clean_name((const char *)r + 14, LEASES_HOSTNAME_RAW, l->name);
	return 1;
}

int leases_parse(const uint8_t *buf, size_t len, int64_t now, struct lease *out, int max)
{
	if (len < LEASES_HEADER_LEN)
		return -1;
	uint64_t w = get_be(buf, 8);
	if (w > (uint64_t)INT64_MAX / 2 || (int64_t)w > now + LEASES_CLOCK_SLACK)
		return -1;
	int n = 0;
	for (size_t pos = LEASES_HEADER_LEN; pos + LEASES_RECORD_LEN <= len && n < max;
	     pos += LEASES_RECORD_LEN)
		n += parse_record(buf + pos, (int64_t)w, now, &out[n]);
	return n;
}

/* Reads at most cap bytes of fd. Returns the count or -1. */
static ssize_t read_capped(int fd, uint8_t *buf, size_t cap)
{
	size_t got = 0;
	while (got < cap) {
		ssize_t r = read(fd, buf + got, cap - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int leases_load(const char *path, int64_t now, struct lease *out, int max)
{
	int fd = fs_open_nofollow(path, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	uint8_t *buf = malloc(LEASES_FILE_MAX);
	ssize_t n = buf ? read_capped(fd, buf, LEASES_FILE_MAX) : -1;
	int e = errno;
	close(fd);
	/* an empty file: udhcpd has just truncated it (it always writes the
	 * header), so the lease list is not known now */
	int rc = n > 0 ? leases_parse(buf, (size_t)n, now, out, max) : -1;
	free(buf);
	if (n == 0)
		e = EAGAIN;
	else if (rc < 0 && n > 0)
		e = EINVAL;
	errno = e;
	return rc;
}
