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
 *   fd = server_listen_io(&loop, &io, "192.168.1.1:587", on_accept, ctx);
 *   server_drop_or_die(so.run_user, 100);
 *   server_signals(&loop, on_signal, ctx);      (before any thread starts)
 *   server_ready(&so.ready_fd);
 *   ... on SIGHUP: server_config_reload(&cfg, so.config);
 *                  server_users_refresh(&db, &mtime, so.users) ...
 */
#ifndef POSTERN_SERVER_H
#define POSTERN_SERVER_H

#include <stddef.h>
#include <time.h>

#include "config.h"
#include "evloop.h"
#include "users.h"

#define SERVER_BACKLOG 64              /* listen() backlog */
#define SERVER_SPEC_MAX 128            /* bytes in "ADDR:PORT" */
#define SERVER_EXIT_USAGE 100          /* exit status of a usage error (permanent) */

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

/* The short options of server_opt, to start a server's getopt string;
 * SERVER_SHORTOPTS_BASE for a server without a configuration file. */
#define SERVER_SHORTOPTS_BASE "fu:"
#define SERVER_SHORTOPTS SERVER_SHORTOPTS_BASE "c:"

/* The common entries of a getopt_long table (put first, end the table
 * with the server's own entries and a zero entry). SERVER_LONGOPTS_BASE
 * is the subset for a server that reads no configuration file and takes
 * no host name (imapd): --users, --foreground, --throttle, --cert, --key,
 * --user, --ready-fd. */
#define SERVER_LONGOPTS_BASE \
	{ "users", 1, NULL, 'u' }, \
	{ "foreground", 0, NULL, 'f' }, { "throttle", 1, NULL, SERVER_OPT_THROTTLE }, \
	{ "cert", 1, NULL, SERVER_OPT_CERT }, { "key", 1, NULL, SERVER_OPT_KEY }, \
	{ "user", 1, NULL, SERVER_OPT_USER }, { "ready-fd", 1, NULL, SERVER_OPT_READY_FD }
#define SERVER_LONGOPTS \
	SERVER_LONGOPTS_BASE, { "config", 1, NULL, 'c' }, \
	{ "hostname", 1, NULL, SERVER_OPT_HOSTNAME }

/* A server's command line for server_parse_args. */
struct option;
struct server_args {
	const char *shortopts;         /* SERVER_SHORTOPTS(_BASE) and the server's own */
	const struct option *longopts; /* SERVER_LONGOPTS(_BASE), own entries, zero entry */
	const char *usage;             /* the usage text, printed on a usage error */
	/* The server's own option ch with its argument: 1 taken, 0 unknown. */
	int (*own)(void *ctx, int ch, const char *arg);
	void *ctx;
};

/* Fills o with the defaults. */
void server_opts_defaults(struct server_opts *o);

/* Stores option ch (from getopt_long) with its argument: 1 when ch is a
 * common option, 0 when it is not (the server's own, or unknown). */
int server_opt(struct server_opts *o, int ch, const char *arg);

/*
 * Fills o with the defaults, then parses argv (getopt_long from optind 1):
 * the common options into o, the others through a->own. An unknown
 * option or an operand prints a->usage on stderr and exits with status
 * 100 (a usage error of whoever started the server).
 */
void server_parse_args(struct server_opts *o, const struct server_args *a,
		       int argc, char **argv);

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

/*
 * A listener from spec (server_listen with SERVER_BACKLOG) registered in
 * loop for reading: io is initialised with callback cb and context ctx.
 * Returns the descriptor, or -1 with errno (nothing left open).
 */
int server_listen_io(struct evloop *loop, struct evl_io *io, const char *spec,
		     evl_io_cb cb, void *ctx);

/*
 * Reloads the users file path into *db when its modification time differs
 * from *mtime (zero it to force a reload; a missing file counts as time 0),
 * then records the new time. An unreadable or invalid file is logged and
 * the previous users kept. Returns 1 when reloaded, 0 when unchanged, -1
 * when kept after an error.
 */
int server_users_refresh(struct users_db *db, struct timespec *mtime, const char *path);

/* Network parsers never run as root (DESIGN.md): priv_drop to user after
 * binding, or log why not and exit with status code (a configuration
 * problem of the box, never something a client did). */
void server_drop_or_die(const char *user, int code);

/* Loads the configuration file path; when it is invalid, logs each error
 * ("file:line: section: setting: message") and returns NULL. */
struct config *server_config_load(const char *path);

/*
 * SIGHUP: replaces *cfg with a fresh load of path (the old model freed),
 * or keeps *cfg when the file is invalid (the errors logged). Returns 1
 * when reloaded, -1 when kept.
 */
int server_config_reload(struct config **cfg, const char *path);

/* The name a server announces: o->hostname (--hostname) when given, else
 * "HOSTNAME.INTERNAL-DOMAIN" of cfg, into out. 0, or -1 if it does not
 * fit in cap bytes. */
int server_hostname(const struct server_opts *o, const struct config *cfg,
		    char *out, size_t cap);

/* Routes SIGTERM, SIGINT and SIGHUP to cb on loop (evl_signal). Call it
 * before starting threads, so that they inherit the blocked signals and
 * every signal reaches the loop's signalfd. 0, or -1 with errno. */
int server_signals(struct evloop *loop, evl_signal_cb cb, void *ctx);

#endif
