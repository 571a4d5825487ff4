/*
 * server.h - plumbing shared by the network servers (smtpd, imapd): the
 * options every server takes, listening sockets from "ADDR:PORT" or
 * "[V6]:PORT", and the readiness notification (s6 style: a newline on a
 * descriptor once listening, so tests and supervisors wait for it instead
 * of sleeping).
 *
 *   struct server_opts so;
 *   server_opts_defaults(&so);
 *   while ((ch = getopt_long(argc, argv, SERVER_SHORTOPTS, longopts, NULL)) != -1)
 *           if (!server_opt(&so, ch, optarg)) ... the server's own options ...
 *   fd = server_listen("192.168.1.1:587", SERVER_BACKLOG);
 *   ... priv_drop(so.run_user, ...) ...
 *   server_ready(&so.ready_fd);
 */
#ifndef POSTERN_SERVER_H
#define POSTERN_SERVER_H

#include <stddef.h>

#include "config.h"

#define SERVER_BACKLOG 64              /* listen() backlog */
#define SERVER_SPEC_MAX 128            /* bytes in "ADDR:PORT" */

/* The options every server takes (defaults: the box's paths). */
struct server_opts {
	const char *config;            /* --config, -c: /data/etc/postern.conf */
	const char *users;             /* --users, -u: /data/etc/users */
	const char *throttle;          /* --throttle: /run/postern/throttle */
	const char *cert, *key;        /* --cert, --key: /data/secrets/tls/server.{crt,key} */
	const char *run_user;          /* --user: whom to become after binding */
	const char *hostname;          /* --hostname: NULL = from the configuration */
	int foreground;                /* -f, --foreground: log to stderr */
	int ready_fd;                  /* --ready-fd: -1 = none */
};

/* getopt_long values of the long-only common options. */
enum {
	SERVER_OPT_THROTTLE = 0x100, SERVER_OPT_CERT, SERVER_OPT_KEY, SERVER_OPT_USER,
	SERVER_OPT_HOSTNAME, SERVER_OPT_READY_FD,
};

/* The short options of server_opt, to start a server's getopt string. */
#define SERVER_SHORTOPTS "fc:u:"

/* The common entries of a getopt_long table (put first, end the table
 * with the server's own entries and a zero entry). */
#define SERVER_LONGOPTS \
	{ "config", 1, NULL, 'c' }, { "users", 1, NULL, 'u' }, \
	{ "foreground", 0, NULL, 'f' }, { "throttle", 1, NULL, SERVER_OPT_THROTTLE }, \
	{ "cert", 1, NULL, SERVER_OPT_CERT }, { "key", 1, NULL, SERVER_OPT_KEY }, \
	{ "user", 1, NULL, SERVER_OPT_USER }, { "hostname", 1, NULL, SERVER_OPT_HOSTNAME }, \
	{ "ready-fd", 1, NULL, SERVER_OPT_READY_FD }

/* Fills o with the defaults. */
void server_opts_defaults(struct server_opts *o);

/* Stores option ch (from getopt_long) with its argument: 1 when ch is a
 * common option, 0 when it is not (the server's own, or unknown). */
int server_opt(struct server_opts *o, int ch, const char *arg);

/*
 * A bound, listening, non-blocking (close-on-exec, SO_REUSEADDR) socket for
 * spec "ADDR:PORT" or "[V6ADDR]:PORT" (numeric only). Returns the
 * descriptor, or -1 with errno (EINVAL: malformed spec).
 */
int server_listen(const char *spec, int backlog);

/* The spec "ADDR:PORT" (or "[ADDR]:PORT" for IPv6) of addr and port into
 * out. 0, or -1 if it does not fit. */
int server_spec(const struct config_addr *addr, int port, char *out, size_t cap);

/* Readiness: writes a newline to *fd and closes it (nothing when < 0). */
void server_ready(int *fd);

#endif
