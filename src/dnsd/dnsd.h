/*
 * dnsd.h - the office DNS resolver (docs/dnsd.8.md): shared state of
 * main.c (set-up, signals), zone.c (the authoritative internal data),
 * server.c (clients over UDP and TCP) and upstream.c (forwarding with
 * anti-spoofing).
 */
#ifndef POSTERN_DNSD_H
#define POSTERN_DNSD_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "dns-cache.h"
#include "dns-wire.h"
#include "evloop.h"
#include "leases.h"
#include "log.h"
#include "pem.h"
#include "tls.h"

#define DNSD_PENDING_MAX 512		/* upstream queries in flight */
#define DNSD_WAITERS_MAX 32		/* clients waiting on one upstream query */
#define DNSD_TCP_MAX 64			/* TCP clients at once */
#define DNSD_TIMERS_MAX (DNSD_PENDING_MAX + DNSD_TCP_MAX + 16)
#define DNSD_QUERY_MAX 1232		/* bytes of a client query we read */
#define DNSD_TCP_IDLE_MS 10000		/* RFC 7766 6.2.3: idle TCP clients closed */
#define DNSD_UPSTREAM_TIMEOUT_MS 1500	/* per upstream try */
#define DNSD_DOT_TIMEOUT_MS 4000	/* per DNS-over-TLS try (a handshake included) */
#define DNSD_TRIES_MAX 4		/* tries of one question, over the upstreams */
#define DNSD_LOCAL_TTL 300		/* TTL of the internal zone's records */
#define DNSD_LOCAL_MAX 2048		/* records of the internal zone */
#define DNSD_ZONES_MAX 4		/* zones we are authoritative for */
#define DNSD_RATE_SLOTS 4096		/* clients tracked by the rate limit */
#define DNSD_UDP_BATCH 64		/* datagrams read per wake-up */
#define DNSD_UDP_VEC 16			/* datagrams per recvmmsg / sendmmsg call */
#define DNSD_PEND_BUCKETS 1024		/* hash buckets of the in-flight table */
#define DNSD_LEASES_MAX 1024		/* DHCP leases read from udhcpd's file */
#define DNSD_WATCH_RETRY_MS 5000	/* re-try watching a missing directory */

/* One record of the internal data (owner lower-cased, rdata uncompressed). */
struct zone_rr {
	uint8_t owner[DNS_NAME_MAX];
	size_t ownerlen;
	uint8_t key[DNS_NAME_MAX];	/* the owner's labels from the root down */
	size_t keylen;
	uint16_t type;
	uint16_t rdlen;
	uint8_t rdata[DNS_NAME_MAX + 8];
};

struct zone_apex {
	uint8_t name[DNS_NAME_MAX];
	size_t namelen;
	int soa;			/* index of its SOA in rr[] */
};

struct zone {
	struct zone_rr *rr;		/* DNSD_LOCAL_MAX entries */
	int nrr;
	struct zone_apex apex[DNSD_ZONES_MAX];
	int napex;
	int *outside;			/* indexes of records outside every apex */
	int noutside;
	const struct zone_rr **order;	/* every record, sorted by key (zone_index) */
	uint8_t allow[CONFIG_DOMAINS_MAX + 1][DNS_NAME_MAX];	/* rebinding exceptions */
	size_t allowlen[CONFIG_DOMAINS_MAX + 1];
	int nallow;
};

/* Who asked: a UDP address, or a TCP slot and its generation. */
struct client {
	int tcp;			/* -1: UDP */
	uint32_t gen;
	struct sockaddr_storage addr;
	socklen_t alen;
};

/* A parsed client query. */
struct query {
	struct client from;
	uint16_t id, flags;
	struct dns_question q;		/* as the client wrote it */
	int edns;
	unsigned udp_size;		/* largest UDP reply the client takes */
};

/* An answer ready to write: rcode, records, TTL to give them. */
struct reply {
	int rcode, aa;
	unsigned ancount, nscount;
	uint32_t ttl;			/* every record's TTL; ~0u: keep theirs */
	const uint8_t *rr;
	size_t len;
};

struct pending;
struct dot_conn;

struct tcp_client {
	struct dnsd *d;
	int fd;				/* -1: free */
	uint32_t gen;
	struct evl_io io;
	struct evl_timer idle;
	struct sockaddr_storage addr;
	socklen_t alen;
	uint8_t in[2 + DNSD_QUERY_MAX];
	size_t inlen;
	uint8_t *out;			/* replies waiting to be written */
	size_t outlen, outcap;
	int waiting;			/* upstream answers still owed */
};

struct rate_slot {
	uint8_t addr[16];
	int64_t last_ms;
	double tokens;
};

struct dnsd {
	struct evloop loop;
	struct evl_timer *heap[DNSD_TIMERS_MAX];
	const char *conf_path;
	struct config *cfg;
	struct dns_cache *cache;
	struct zone zone;
	int udp_fd, tcp_fd;
	struct evl_io udp_io, tcp_io;
	struct sockaddr_storage listen;
	socklen_t listen_len;
	struct sockaddr_storage up[CONFIG_ADDRS_MAX];
	socklen_t uplen[CONFIG_ADDRS_MAX];
	int nup;
	int upstream_port;
	struct pending *pend[DNSD_PENDING_MAX];
	int npend;
	struct pending *bucket[DNSD_PEND_BUCKETS];	/* in flight, by question */
	uint64_t hash_seed;
	/* files written by others (watch.c) */
	const char *wan_dns_path, *leases_path;
	struct config_addr wan_dns[CONFIG_ADDRS_MAX];
	int nwan_dns;
	struct lease *leases;		/* DNSD_LEASES_MAX */
	int nleases;
	int ino_fd;
	struct evl_io ino_io;
	struct evl_timer ino_retry, lease_expiry;
	/* DNS-over-TLS (dot.c) */
	const char *tls_ca_path;
	struct pem_anchors tls_ca;
	struct tls_client_config tls_cfg;
	struct dot_conn *dot[CONFIG_ADDRS_MAX];	/* one connection per upstream */
	struct tcp_client tcp[DNSD_TCP_MAX];
	struct rate_slot rate[DNSD_RATE_SLOTS];
	int rate_limit_opt;		/* --rate-limit: -1 the configuration's, 0 off */
	uint64_t rate_seed;
	struct dns_answer ans;		/* scratch for upstream answers */
	uint8_t buf[DNS_MSG_MAX];	/* scratch for replies */
	/* UDP replies made while on_udp serves a batch, sent together by one
	 * sendmmsg at its end (server.c); replies made elsewhere go at once. */
	int tx_batching;
	unsigned txn;
	struct udp_tx {
		struct sockaddr_storage addr;
		socklen_t alen;
		size_t len;
		uint8_t msg[DNS_EDNS_UDP];
	} tx[DNSD_UDP_VEC];
	unsigned long spoofed;		/* upstream replies ignored */
};

/* main.c */
/* Chooses the upstreams: [dns] upstream, else the WAN's DHCP servers
 * (wan-dns file), else [wan] dns. */
void dnsd_set_upstreams(struct dnsd *d);
/* Rebuilds the internal zone from the configuration and the leases; keeps
 * the old zone when that fails. Returns 0 or -1. */
int dnsd_rebuild_zone(struct dnsd *d, const struct config *cfg);

/* zone.c */
int zone_build(struct zone *z, const struct config *cfg);
/* Adds the leases' names (name.internal-domain, A and PTR) that are
 * usable: a clean single label, an address in the LAN prefix, neither
 * name nor address already in the zone. Returns how many were added. */
int zone_add_leases(struct zone *z, const struct config *cfg, const struct lease *l, int n);
/* Indexes the records once all are added; zone_answer needs it.
 * Returns 0 or -1. */
int zone_index(struct zone *z);
void zone_free(struct zone *z);
/* Answers q from the internal data into r (records in buf). Returns 1
 * answered, 0 not ours (forward it). */
int zone_answer(const struct zone *z, const struct dns_question *q, struct reply *r,
	uint8_t *buf, size_t cap);
/* 1 when an address in an answer to name must be dropped (rebinding). */
int zone_rebind_blocked(const struct zone *z, const uint8_t *name, size_t namelen,
	const struct dns_rr *rr, const uint8_t *rdata);

/* server.c */
int server_open(struct dnsd *d);
void server_close(struct dnsd *d);
/* Sends r to the client of qr (UDP with truncation, or queued on TCP). */
void server_reply(struct dnsd *d, const struct query *qr, const struct reply *r);
/* The client's TCP slot is still the one that asked. */
int server_client_alive(const struct dnsd *d, const struct client *c);
void server_tcp_done_waiting(struct dnsd *d, const struct client *c);

/* watch.c: /run/postern/wan-dns and udhcpd's lease file, via inotify */
int watch_open(struct dnsd *d);
void watch_close(struct dnsd *d);

/* dot.c: DNS-over-TLS connections, one per upstream, queries pipelined */
/* Loads the verification settings (CA bundle for tls-name, the pin) and
 * closes every connection. Returns 0 or -1. */
int dot_configure(struct dnsd *d, const struct config *cfg, const char *ca_path);
/* Reserves a random ID for p on upstream up's connection. Returns 0 or -1. */
int dot_claim(struct dnsd *d, int up, struct pending *p, uint16_t *id);
/* Releases p's ID (its answer came, or it gave up). */
void dot_forget(struct dnsd *d, int up, uint16_t id, const struct pending *p);
/* Queues a framed query (2-byte length first), connecting when needed.
 * Returns 0 or -1. */
int dot_send(struct dnsd *d, int up, const uint8_t *q, size_t len);
/* Closes every connection; their queries go to their next try. */
void dot_close_all(struct dnsd *d);

/* upstream.c */
/* Forwards qr's question (or joins the query already in flight). */
void upstream_resolve(struct dnsd *d, const struct query *qr);
void upstream_close_all(struct dnsd *d);
/* For dot.c: a random 16-bit number; the ID of p's current try; an answer
 * that arrived for p's ID (checked against the question here); p's
 * connection failed (its next try starts now). */
unsigned upstream_random16(void);
uint16_t upstream_pending_id(const struct pending *p);
void upstream_dot_reply(struct pending *p, const uint8_t *msg, size_t len);
void upstream_dot_failed(struct pending *p);

#endif
