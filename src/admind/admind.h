/*
 * admind.h - the privileged validating helper of the web page (docs/web.md).
 *
 * admind runs as root and listens on a unix socket that only the web user
 * (and root) may use (SO_PEERCRED). Each connection carries one request:
 * NUL-separated fields (the operation, then its arguments), ended by the
 * client's shutdown(SHUT_WR). The answer is text: "ok\n" followed by data
 * lines, or "error\n" followed by "FIELD\tMESSAGE\n" lines (FIELD names the
 * form field or setting at fault, "-" when none) so that the page can show
 * each message next to its field.
 *
 * Changes go through the same library code as the `postern` command line
 * (the lock -> load -> change -> validate -> save transaction of
 * src/lib/settings.h, secret_write), then the running daemons are told with
 * `sv hup NAME`; network settings run the network script (network.c), a
 * custom certificate restarts the daemons that serve it (cert.c), so
 * nothing needs a reboot.
 */
#ifndef POSTERN_ADMIND_H
#define POSTERN_ADMIND_H

#include <stddef.h>
#include <stdio.h>

#define ADM_REQUEST_MAX (128 * 1024)  /* bytes in one request */
#define ADM_ARGS_MAX 256              /* fields in one request */
#define ADM_TIMEOUT_S 10              /* seconds a client may take to send */
#define ADM_ERR_MAX 512
#define ADM_PATH_MAX 4096
#define ADM_LOG_READ_MAX (1024 * 1024) /* tail of the log read (logs page, blocked attempts) */

struct adm_opts {
	const char *socket;      /* /run/postern/admind.sock */
	const char *allow_user;  /* web */
	long allow_uid;          /* -1: from allow_user */
	const char *conf;        /* /data/etc/postern.conf */
	const char *users;       /* /data/etc/users */
	const char *secrets;     /* /data/secrets */
	const char *tls_dir;     /* /data/secrets/tls (ca.pem) */
	const char *setup_code;  /* /data/etc/setup-code */
	const char *console;     /* /dev/console: where the setup code is shown */
	const char *sv;          /* sv (runit) */
	const char *service_dir; /* /run/service: the enabled services */
	const char *log;         /* /data/log/messages */
	const char *queue;       /* /data/queue */
	const char *mail;        /* /data/mail (mail-days) */
	const char *users_group; /* group that reads the users file: auth */
	const char *network;     /* /usr/libexec/postern/network ("" or absent: none) */
	const char *certtool;    /* postern-certtool */
	const char *cert_renew;  /* /usr/libexec/postern/firstboot-certs */
	int ready_fd;            /* written once listening (tests), -1: none */
};

struct queue;
struct config;

/* One request: out collects the answer ("ok\n..." or "error\n..."). */
struct adm_req {
	const struct adm_opts *o;
	int argc;
	char **argv;             /* argv[0] is the operation */
	FILE *out;
	int failed;              /* "error" already written */
	struct queue *q;         /* queue operations: the open queue */
};

/* Runs one request (dispatch table in ops.c). */
void adm_dispatch(struct adm_req *r);

/* Reports an error for field (may be called several times). */
void adm_error(struct adm_req *r, const char *field, const char *msg);

/* Tells the running daemons to re-read the configuration and users. */
void adm_apply(const struct adm_opts *o);

/* ---- setup.c ---- */

/* 1 when the users file has no admin yet (the setup wizard is open). */
int adm_setup_needed(const struct adm_opts *o);

/* On start: when setup is needed, make sure a setup code exists (from the
 * provisioning file's "# setup-code CODE" line, else random) and show it on
 * the console. */
void adm_setup_code_init(const struct adm_opts *o);

/* 1 when code matches the stored setup code (constant time, case and
 * dashes ignored). */
int adm_setup_code_ok(const struct adm_opts *o, const char *code);

/* ---- cert.c: the administrator's own TLS certificate ---- */

/* cert-install CHAIN KEY: validate, install atomically, restart the
 * daemons that serve it; a name mismatch is a "warning" line of the answer. */
void adm_op_cert_install(struct adm_req *r);
/* cert-revert: back to the box's own certificate. */
void adm_op_cert_revert(struct adm_req *r);
/* cert-info: "source admin|box", "expires DATE". */
void adm_op_cert_info(struct adm_req *r);

/* ---- network.c ---- */

/* 1 when one of the keys (kv[0], kv[step], ...) is a LAN, WAN, firewall or
 * internal-domain setting: the change must be applied to the network. */
int adm_network_keys(char *const *kv, int n, int step);

/* 1 when the network script exists (on the box; tests may leave it out:
 * then network changes apply at the next boot). */
int adm_network_present(const struct adm_opts *o);

/* `network --check` on cfg written to a candidate file: 0, or -1 with the
 * reason reported. Nothing on the box changes. */
int adm_network_check(struct adm_req *r, struct config *cfg);

/* `network --apply` on the saved file: 0, or -1 with the reason reported
 * (the script has undone its own steps). */
int adm_network_apply(struct adm_req *r);

/* The log's last ADM_LOG_READ_MAX bytes into text (room for one more, the
 * NUL), never following a symlink; returns the length (0 if unreadable). */
size_t adm_read_log_tail(const char *path, char *text);

/* ---- ops-status.c: read-only operations of the dashboard ---- */

/* blocked: firewall counters per LAN host and the log's (host, server,
 * port) attempts. */
void adm_op_blocked(struct adm_req *r);

/* alerts: the alerts in force (src/lib/alerts.h), "KEY\tTEXT" lines. */
void adm_op_alerts(struct adm_req *r);

#endif
