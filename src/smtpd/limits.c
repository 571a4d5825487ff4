/*
 * limits.c - per-address connection limits: at most SMTPD_CONNS_PER_ADDR
 * simultaneous connections and SMTPD_RATE_PER_ADDR new connections per
 * SMTPD_RATE_WINDOW_S seconds from one client address. One misbehaving
 * desktop (or a script looping on connect) cannot take every slot of
 * SMTPD_CONNS_MAX from the rest of the office.
 *
 * A fixed table of SMTPD_ADDRS_MAX entries, searched linearly (the event
 * loop's thread only; accepts are rare next to commands). An entry is
 * reused once it has no connection and its window is over; when every
 * entry is busy, new addresses are refused (the table is larger than
 * SMTPD_CONNS_MAX, so that takes a rate burst from many addresses).
 */
#include <stdio.h>
#include <string.h>

#include "smtpd.h"

/* An entry with no connection and an expired window is free. */
static int entry_free(const struct smtpd_addr *e, time_t now)
{
	return e->conns == 0 && now - e->window >= SMTPD_RATE_WINDOW_S;
}

static struct smtpd_addr *find(struct smtpd *d, const char *addr, time_t now)
{
	struct smtpd_addr *spare = NULL;

	for (size_t i = 0; i < SMTPD_ADDRS_MAX; i++) {
		struct smtpd_addr *e = &d->addrs[i];

		if (e->addr[0] && strcmp(e->addr, addr) == 0)
			return e;
		if (!spare && (!e->addr[0] || entry_free(e, now)))
			spare = e;
	}
	if (spare) {
		memset(spare, 0, sizeof *spare);
		snprintf(spare->addr, sizeof spare->addr, "%s", addr);
		spare->window = now;
	}
	return spare;
}

const char *limits_admit(struct smtpd *d, const char *addr, time_t now)
{
	struct smtpd_addr *e = find(d, addr, now);

	if (!e)
		return "too many client addresses";
	if (now - e->window >= SMTPD_RATE_WINDOW_S) {
		e->window = now;
		e->recent = 0;
	}
	if (e->conns >= SMTPD_CONNS_PER_ADDR)
		return "too many connections from your address";
	if (e->recent >= SMTPD_RATE_PER_ADDR)
		return "too many new connections from your address, try again later";
	e->conns++;
	e->recent++;
	return NULL;
}

void limits_release(struct smtpd *d, const char *addr)
{
	for (size_t i = 0; i < SMTPD_ADDRS_MAX; i++) {
		struct smtpd_addr *e = &d->addrs[i];

		if (e->addr[0] && strcmp(e->addr, addr) == 0) {
			if (e->conns > 0)
				e->conns--;
			return;
		}
	}
}
