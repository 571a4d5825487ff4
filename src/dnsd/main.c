/*
 * main.c - dnsd: the office DNS resolver (docs/dnsd.8.md).
 *
 *   dnsd [-f] [-c CONF] [--listen ADDR:PORT] [--upstream-port PORT] [--ready-fd N]
 *        [--user NAME] [--wan-dns FILE] [--leases FILE] [--tls-ca FILE]
 *        [--rate-limit N]
 *
 * Listens on UDP and TCP port 53 of the LAN address ([lan] address) unless
 * --listen says otherwise, as root, then becomes the dnsd user (--user).
 * Forwards to [dns] upstream, else the WAN's DHCP servers (--wan-dns), else
 * [wan] dns, on port 53 (853 for DNS-over-TLS), or --upstream-port (tests).
 * SIGHUP re-reads the configuration (zone, upstreams, rebinding exceptions;
 * the cache is kept), SIGTERM and SIGINT stop.
 *
 * Exit status: 0 on SIGTERM/SIGINT, 100 for a permanent problem (usage,
 * configuration), 111 for a temporary one (the port is taken).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dnsd.h"
#include "privdrop.h"
#include "server.h"

#define EXIT_TEMP 111
#define EXIT_PERM 100
#define DNSD_PORT 53
#define DNSD_USER "dnsd"
#define DNSD_WAN_DNS "/run/postern/wan-dns"
#define DNSD_LEASES "/run/postern/udhcpd.leases"

static const char usage_text[] =
	"usage: dnsd [-f] [-c CONF] [--listen ADDR:PORT] [--upstream-port PORT] [--ready-fd N]\n"
	"            [--user NAME] [--wan-dns FILE] [--leases FILE] [--tls-ca FILE]\n"
	"            [--rate-limit N]\n";

struct opts {
	const char *conf;
	const char *listen;
	const char *user, *wan_dns, *leases, *tls_ca;
	int upstream_port;
	int rate_limit;		/* -1: [dns] rate-limit; 0: off (benchmarks) */
	int ready_fd;
	int foreground;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "config", 1, NULL, 'c' }, { "listen", 1, NULL, 'l' },
		{ "upstream-port", 1, NULL, 'u' }, { "ready-fd", 1, NULL, 'r' },
		{ "foreground", 0, NULL, 'f' }, { "user", 1, NULL, 'U' },
		{ "wan-dns", 1, NULL, 'w' }, { "leases", 1, NULL, 'L' },
		{ "tls-ca", 1, NULL, 'C' }, { "rate-limit", 1, NULL, 'R' }, { NULL, 0, NULL, 0 }
	};
	int ch;
	*o = (struct opts){ .conf = "/data/etc/postern.conf", .upstream_port = 0,
		.ready_fd = -1, .rate_limit = -1, .user = DNSD_USER, .wan_dns = DNSD_WAN_DNS,
		.leases = DNSD_LEASES, .tls_ca = NULL };
	while ((ch = getopt_long(argc, argv, "fc:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->conf = optarg; break;
		case 'l': o->listen = optarg; break;
		case 'u': o->upstream_port = atoi(optarg); break;
		case 'r': o->ready_fd = atoi(optarg); break;
		case 'f': o->foreground = 1; break;
		case 'U': o->user = optarg; break;
		case 'w': o->wan_dns = optarg; break;
		case 'L': o->leases = optarg; break;
		case 'C': o->tls_ca = optarg; break;
		case 'R': o->rate_limit = atoi(optarg); break;
		default: return -1;
		}
	}
	if (optind != argc || o->upstream_port < 0 || o->upstream_port > 65535 ||
	    o->rate_limit < -1)
		return -1;
	return 0;
}

/* Fills ss from an address and port (IPv4 or IPv6). */
static socklen_t make_sockaddr(struct sockaddr_storage *ss, const struct config_addr *a, int port)
{
	memset(ss, 0, sizeof *ss);
	if (a->family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)port);
		memcpy(&s->sin_addr, a->a, 4);
		return sizeof *s;
	}
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
	s->sin6_family = AF_INET6;
	s->sin6_port = htons((uint16_t)port);
	memcpy(&s->sin6_addr, a->a, 16);
	return sizeof *s;
}

/* "127.0.0.1:5353" or "[::1]:5353". */
static int parse_listen(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	struct config_addr a = { 0 };
	if (!colon || (size_t)(colon - text) >= sizeof host)
		return -1;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = 0;
	char *h = host;
	if (h[0] == '[' && h[strlen(h) - 1] == ']') {
		h[strlen(h) - 1] = 0;
		h++;
	}
	int port = atoi(colon + 1);
	if (port < 1 || port > 65535)
		return -1;
	if (inet_pton(AF_INET, h, a.a) == 1)
		a.family = AF_INET;
	else if (inet_pton(AF_INET6, h, a.a) == 1)
		a.family = AF_INET6;
	else
		return -1;
	*len = make_sockaddr(ss, &a, port);
	return 0;
}

void dnsd_set_upstreams(struct dnsd *d)
{
	const struct config *cfg = d->cfg;
	const struct config_addr *ups = cfg->dns.upstream;
	int n = cfg->dns.nupstream;
	if (n == 0 && d->nwan_dns) {
		ups = d->wan_dns;
		n = d->nwan_dns;
	} else if (n == 0) {
		ups = cfg->wan.dns;
		n = cfg->wan.ndns;
	}
	int port = d->upstream_port ? d->upstream_port
		: cfg->dns.transport == CONFIG_DNS_TLS ? cfg->dns.tls_port : DNSD_PORT;
	for (int i = 0; i < n; i++)
		d->uplen[i] = make_sockaddr(&d->up[i], &ups[i], port);
	d->nup = n;
	if (n == 0)
		log_msg(LOG_WARNING, NULL, "no upstream resolver known yet: only the internal zone is served");
	dot_close_all(d);	/* DoT connections to the old addresses */
}

int dnsd_rebuild_zone(struct dnsd *d, const struct config *cfg)
{
	struct zone z;
	if (zone_build(&z, cfg) < 0) {
		zone_free(&z);
		log_msg(LOG_ERR, NULL, "cannot build the internal zone (too many records?)");
		return -1;
	}
	if (d->leases)
		zone_add_leases(&z, cfg, d->leases, d->nleases);
	if (zone_index(&z) < 0) {
		zone_free(&z);
		log_msg(LOG_ERR, NULL, "cannot index the internal zone: out of memory");
		return -1;
	}
	zone_free(&d->zone);
	d->zone = z;
	return 0;
}

/* Takes the upstreams, zone and policy from cfg. Returns 0 or -1. */
static int apply_config(struct dnsd *d, struct config *cfg)
{
	/* --tls-ca (tests) overrides [dns] ca-file. */
	const char *ca = d->tls_ca_path ? d->tls_ca_path : cfg->dns.ca_file;

	if (dot_configure(d, cfg, ca) < 0 || dnsd_rebuild_zone(d, cfg) < 0)
		return -1;
	config_free(d->cfg);
	d->cfg = cfg;
	dnsd_set_upstreams(d);
	return 0;
}

static void on_signal(struct evloop *l, int signo, void *ctx)
{
	struct dnsd *d = ctx;
	if (signo != SIGHUP) {
		evl_stop(l, 0);
		return;
	}
	struct config *cfg = server_config_load(d->conf_path);
	if (cfg && apply_config(d, cfg) == 0)
		log_msg(LOG_INFO, NULL, "configuration reloaded");
	else
		log_msg(LOG_ERR, NULL, "keeping the previous configuration");
}

static int setup(struct dnsd *d, const struct opts *o)
{
	struct config *cfg = server_config_load(o->conf);
	if (!cfg || apply_config(d, cfg) < 0)
		return EXIT_PERM;
	if (o->listen) {
		if (parse_listen(o->listen, &d->listen, &d->listen_len) < 0) {
			log_msg(LOG_ERR, NULL, "--listen %s: not ADDR:PORT", o->listen);
			return EXIT_PERM;
		}
	} else {
		d->listen_len = make_sockaddr(&d->listen, &cfg->lan.address.addr, DNSD_PORT);
	}
	d->cache = dns_cache_new((size_t)cfg->dns.cache_size, cfg->dns.min_ttl, cfg->dns.max_ttl);
	if (!d->cache) {
		log_msg(LOG_ERR, NULL, "cache-size %llu: too small or out of memory",
			(unsigned long long)cfg->dns.cache_size);
		return EXIT_PERM;
	}
	if (evl_init(&d->loop, d->heap, DNSD_TIMERS_MAX) < 0 || server_open(d) < 0) {
		log_msg(LOG_ERR, NULL, "listen: %s", strerror(errno));
		return EXIT_TEMP;
	}
	/* port 53 is bound: the parsers never run as root (DESIGN.md) */
	char err[256];
	if (priv_drop(o->user, err, sizeof err) < 0) {
		log_msg(LOG_ERR, NULL, "%s", err);
		return EXIT_PERM;
	}
	if (watch_open(d) < 0) {
		log_msg(LOG_ERR, NULL, "inotify: %s", strerror(errno));
		return EXIT_TEMP;
	}
	if (evl_signal(&d->loop, SIGHUP, on_signal, d) < 0 ||
	    evl_signal(&d->loop, SIGTERM, on_signal, d) < 0 ||
	    evl_signal(&d->loop, SIGINT, on_signal, d) < 0)
		return EXIT_TEMP;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	static struct dnsd d;	/* large: scratch buffers and tables */
	if (parse_opts(argc, argv, &o) < 0) {
		fputs(usage_text, stderr);
		return EXIT_PERM;
	}
	log_open("dnsd", LOG_DAEMON, o.foreground ? LOG_DEST_STDERR : LOG_DEST_SYSLOG);
	d.conf_path = o.conf;
	d.upstream_port = o.upstream_port;
	d.udp_fd = d.tcp_fd = d.ino_fd = -1;
	d.wan_dns_path = o.wan_dns;
	d.leases_path = o.leases;
	d.tls_ca_path = o.tls_ca;
	d.rate_limit_opt = o.rate_limit;
	int rc = setup(&d, &o);
	if (rc)
		return rc;
	if (o.ready_fd >= 0) {
		(void)!write(o.ready_fd, "\n", 1);
		close(o.ready_fd);
	}
	log_msg(LOG_INFO, NULL, "ready, %d upstream(s), %d internal records", d.nup, d.zone.nrr);
	rc = evl_run(&d.loop);
	upstream_close_all(&d);
	watch_close(&d);
	dot_close_all(&d);
	pem_anchors_free(&d.tls_ca);
	server_close(&d);
	evl_free(&d.loop);
	dns_cache_free(d.cache);
	zone_free(&d.zone);
	config_free(d.cfg);
	log_msg(LOG_INFO, NULL, "stopped (%lu upstream replies ignored)", d.spoofed);
	return rc < 0 ? EXIT_TEMP : 0;
}
