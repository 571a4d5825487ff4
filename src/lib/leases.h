/*
 * leases.h - reader of BusyBox udhcpd's binary lease file (the LAN DHCP
 * server writes /run/postern/udhcpd.leases; dnsd turns the host names into
 * internal DNS names).
 *
 * The format (busybox networking/udhcp/dhcpd.c write_leases, dhcpd.h
 * struct dyn_lease, 1.35): an 8-byte big-endian Unix time, the moment the
 * file was written ("written_at"), then 36-byte records:
 *
 *   offset  0  uint32 BE  seconds the lease still had at written_at
 *                         (0: expired)
 *           4  4 bytes    the IPv4 address (network order)
 *           8  6 bytes    the client's MAC address
 *          14  20 bytes   host name, NUL-terminated when shorter (udhcpd
 *                         already turned characters outside [0-9A-Za-z._-]
 *                         into dots)
 *          34  2 bytes    padding
 *
 * udhcpd rewrites the file in place (O_TRUNC, no rename), so a reader can
 * see it half-written: a trailing partial record is ignored, and the next
 * change notification brings the rest.
 *
 * No allocation, no I/O in leases_parse: the unit test and the fuzzer
 * drive it from byte arrays.
 */
#ifndef POSTERN_LEASES_H
#define POSTERN_LEASES_H

#include <stddef.h>
#include <stdint.h>

#define LEASES_HEADER_LEN 8	/* written_at, int64 big-endian */
#define LEASES_RECORD_LEN 36	/* sizeof(struct dyn_lease), packed */
#define LEASES_HOSTNAME_RAW 20	/* the hostname field */
#define LEASES_LABEL_MAX 63	/* a DNS label (RFC 1035 2.3.4) */
/* Records read from one file; the file is read up to this many bytes. */
#define LEASES_FILE_MAX (LEASES_HEADER_LEN + 4096 * LEASES_RECORD_LEN)

struct lease {
	int64_t expires;		/* Unix time the lease ends */
	uint8_t addr[4];
	uint8_t mac[6];
	/* The host name as a DNS label (lower case, [a-z0-9-]), or "" when
	 * the client sent none or one that is not a clean label. */
	char name[LEASES_HOSTNAME_RAW + 1];
};

/*
 * Parses a lease file's bytes. Stores at most max leases that are still
 * running at now (Unix time): expires = written_at + remaining seconds.
 * Leases with address 0.0.0.0 are skipped. Returns the count, or -1 when
 * the header is missing or written_at lies more than a day after now (a
 * clock gone wrong: nothing in the file can be trusted to expire).
 */
int leases_parse(const uint8_t *buf, size_t len, int64_t now, struct lease *out, int max);

/*
 * Turns a raw host name field (n bytes, maybe without NUL) into a DNS label
 * in out: ASCII letters lower-cased, digits and '-' kept; anything else
 * (dots, '_', spaces, empty, a '-' at either end) refuses the name.
 * Returns the label's length, or 0 when refused (out is then "").
 */
size_t leases_clean_name(const char *raw, size_t n, char out[LEASES_HOSTNAME_RAW + 1]);

/*
 * Reads the file at path (O_NOFOLLOW, at most LEASES_FILE_MAX bytes) and
 * parses it as leases_parse. A missing file is no leases (0); an empty
 * one is being rewritten (-1, EAGAIN). Returns the count, or -1 with errno
 * (EINVAL: not a lease file).
 */
int leases_load(const char *path, int64_t now, struct lease *out, int max);

#endif
