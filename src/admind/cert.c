/*
 * cert.c - an administrator's own TLS certificate, installed from the web
 * page (docs/web.md "Custom certificate"):
 *
 *   cert-install CHAIN KEY   PEM texts, end-entity first. admind checks the
 *       sizes, that both parse (BearSSL, pem.h), the key kind (RSA of at
 *       least ADM_RSA_BITS_MIN bits, or EC P-256/P-384), then hands them to
 *       `postern-certtool install`, the command line's own code: every
 *       certificate decodes, the key belongs to the leaf, the leaf is valid
 *       now; it writes the marker, server.key (root 0600) and server.pem
 *       atomically, and on any failure nothing in the TLS directory
 *       changes. A leaf that does not name the box (hostname, or
 *       hostname.internal-domain) is installed with a warning: clients that
 *       connect by that name will complain. Then smtpd, imapd and webd are
 *       restarted (`sv restart`: they load the key as root before dropping
 *       privileges, so SIGHUP cannot reload it).
 *   cert-revert   back to the box's own certificate: the marker goes, the
 *       renewal hook (firstboot-certs) reissues from the local CA, and the
 *       daemons restart.
 *   cert-info     "source admin|box" and "expires DATE" of server.pem.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "admind.h"
#include "config.h"
#include "der.h"
#include "fsutil.h"
#include "localca.h"
#include "pem.h"

#define ADM_CERT_CHAIN_MAX (32 * 1024)  /* bytes of a pasted chain */
#define ADM_CERT_KEY_MAX (16 * 1024)    /* bytes of a pasted key */
#define ADM_RSA_BITS_MIN 2048
#define ADM_CERT_OUT_MAX 2048           /* bytes of certtool's messages kept */
#define ADM_CERT_MARKER "admin-installed"

/* Daemons that serve the certificate: restarted after a change. */
static const char *const cert_services[] = { "smtpd", "imapd", "webd" };

/* ---- checks admind makes itself ---- */

static int check_key_kind(struct adm_req *r, const struct pem_key *k)
{
	const br_rsa_private_key *rsa = pem_key_rsa(k);
	const br_ec_private_key *ec = pem_key_ec(k);

	if (rsa && rsa->n_bitlen < ADM_RSA_BITS_MIN) {
		char msg[128];
		snprintf(msg, sizeof msg, "the RSA key has %u bits: at least %d are needed",
			 (unsigned)rsa->n_bitlen, ADM_RSA_BITS_MIN);
		adm_error(r, "key", msg);
		return -1;
	}
	if (ec && ec->curve != BR_EC_secp256r1 && ec->curve != BR_EC_secp384r1) {
		adm_error(r, "key", "the EC key is not on curve P-256 or P-384");
		return -1;
	}
	return 0;
}

/* Parses both texts and checks the key kind; nothing is written. */
static int precheck(struct adm_req *r, const char *chain, const char *key)
{
	static struct pem_key k;
	struct pem_chain c;
	char err[256], msg[320];

	if (strlen(chain) > ADM_CERT_CHAIN_MAX || strlen(key) > ADM_CERT_KEY_MAX) {
		snprintf(msg, sizeof msg, "too large: a chain has at most %d KiB, a key %d KiB",
			 ADM_CERT_CHAIN_MAX / 1024, ADM_CERT_KEY_MAX / 1024);
		adm_error(r, strlen(chain) > ADM_CERT_CHAIN_MAX ? "chain" : "key", msg);
		return -1;
	}
	if (pem_chain_parse(&c, chain, strlen(chain), err, sizeof err) < 0) {
		snprintf(msg, sizeof msg, "not a PEM certificate chain (-----BEGIN CERTIFICATE-----): %s", err);
		adm_error(r, "chain", msg);
		return -1;
	}
	pem_chain_free(&c);
	if (pem_key_parse(&k, key, strlen(key), err, sizeof err) < 0) {
		snprintf(msg, sizeof msg, "not a PEM private key (-----BEGIN PRIVATE KEY-----): %s", err);
		adm_error(r, "key", msg);
		return -1;
	}
	int rc = check_key_kind(r, &k);
	pem_key_wipe(&k);
	return rc;
}

/* 1 when the leaf names name (BearSSL's own matching: SAN dNSName,
 * wildcards), 0 when not, -1 when it cannot be told. The leaf is run alone
 * through br_x509_minimal: the name is checked at the end of the end-entity
 * certificate, before trust is judged, so BR_ERR_X509_BAD_SERVER_NAME means
 * a mismatch and any later verdict (NOT_TRUSTED: there is no anchor for
 * it here) means the name matched. */
static int leaf_names(const br_x509_certificate *leaf, const char *name)
{
	static br_x509_decoder_context dc;
	static br_x509_minimal_context xc;
	br_x509_trust_anchor ta = { .flags = 0 };   /* only to satisfy init */
	const br_x509_pkey *pk;
	const br_x509_class **vt = &xc.vtable;
	uint32_t days, secs;
	unsigned e;

	br_x509_decoder_init(&dc, NULL, NULL);
	br_x509_decoder_push(&dc, leaf->data, leaf->data_len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (!pk)
		return -1;
	ta.pkey = *pk;
	br_x509_minimal_init_full(&xc, &ta, 1);
	der_time_to_br((int64_t)time(NULL), &days, &secs);
	br_x509_minimal_set_time(&xc, days, secs);
	(*vt)->start_chain(vt, name);
	(*vt)->start_cert(vt, (uint32_t)leaf->data_len);
	(*vt)->append(vt, leaf->data, leaf->data_len);
	(*vt)->end_cert(vt);
	e = (*vt)->end_chain(vt);
	return e == BR_ERR_X509_BAD_SERVER_NAME ? 0 : e == 0 || e == BR_ERR_X509_NOT_TRUSTED ? 1 : -1;
}

/* The names clients use for the box: hostname.internal-domain, hostname. */
static void box_names(const struct adm_opts *o, char *fqdn, char *host, size_t cap)
{
	static struct config_errors errs;
	struct config *cfg = config_load(o->conf, &errs);
	char dom[256] = "";

	snprintf(host, cap, "postern");
	if (cfg) {
		config_get(cfg, "hostname", host, cap);
		config_get(cfg, "internal-domain", dom, sizeof dom);
		config_free(cfg);
	}
	snprintf(fqdn, cap, "%.120s.%.120s", host, dom[0] ? dom : "office.lan");
}

/* A warning line of the "ok" answer when the leaf names neither name. */
static void name_warning(struct adm_req *r, const char *chain)
{
	struct pem_chain c;
	char fqdn[256], host[256], err[128];
	int a, b;

	if (pem_chain_parse(&c, chain, strlen(chain), err, sizeof err) < 0)
		return;
	box_names(r->o, fqdn, host, sizeof host);
	a = leaf_names(&c.certs[0], fqdn);
	b = leaf_names(&c.certs[0], host);
	pem_chain_free(&c);
	if (a != 1 && b != 1)
		fprintf(r->out, "warning\tthe certificate does not name this box (%s): mail clients "
			"and browsers that connect by that name will warn\n", fqdn);
}

/* ---- running helpers ---- */

/* Runs argv; its stdout+stderr into out (NUL-terminated). Returns the exit
 * status, or -1 when it could not run. */
static int run_capture(char *const argv[], char *out, size_t cap)
{
	int pfd[2], st;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1), dup2(pfd[1], 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	while (pid > 0 && (n = read(pfd[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	close(pfd[0]);
	out[len] = '\0';
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* certtool's message for the page: without the program name, the private
 * upload paths named as what they are, on one line. */
static void tidy(char *msg, const char *chain_path, const char *key_path)
{
	static const char prog[] = "postern-certtool: ";
	char out[ADM_CERT_OUT_MAX], *o = out;
	const char *p = msg;

	while (*p && (size_t)(o - out) < sizeof out - 32) {
		if (strncmp(p, prog, sizeof prog - 1) == 0) {
			p += sizeof prog - 1;
		} else if (strncmp(p, chain_path, strlen(chain_path)) == 0) {
			o += sprintf(o, "the certificate");
			p += strlen(chain_path);
		} else if (strncmp(p, key_path, strlen(key_path)) == 0) {
			o += sprintf(o, "the key");
			p += strlen(key_path);
		} else {
			*o++ = *p == '\n' ? ' ' : *p;
			p++;
		}
	}
	*o = '\0';
	snprintf(msg, ADM_CERT_OUT_MAX, "%s", out);
}

static void restart_services(const struct adm_opts *o)
{
	char p[ADM_PATH_MAX], out[256];

	for (size_t i = 0; i < sizeof cert_services / sizeof cert_services[0]; i++) {
		snprintf(p, sizeof p, "%s/%s", o->service_dir, cert_services[i]);
		char *argv[] = { (char *)o->sv, "restart", p, NULL };
		if (access(p, F_OK) == 0 && run_capture(argv, out, sizeof out) != 0)
			syslog(LOG_ERR, "sv restart %s failed: it serves the old certificate", p);
	}
}

/* ---- operations ---- */

/* Writes one upload file into the private directory. */
static int put_upload(const char *path, const char *text, mode_t mode)
{
	return fs_write_atomic(path, text, strlen(text), mode);
}

/* certtool install through a private upload directory in the TLS dir. */
static int install(struct adm_req *r, const char *chain, const char *key)
{
	char dir[ADM_PATH_MAX - 16], cp[ADM_PATH_MAX], kp[ADM_PATH_MAX], out[ADM_CERT_OUT_MAX];
	int rc = -1;

	if (fs_mkdir_p(r->o->tls_dir, 0700) < 0 ||
	    snprintf(dir, sizeof dir, "%s/.upload-XXXXXX", r->o->tls_dir) >= (int)sizeof dir ||
	    !mkdtemp(dir)) {
		adm_error(r, "-", "cannot prepare the TLS directory");
		return -1;
	}
	snprintf(cp, sizeof cp, "%s/chain.pem", dir);
	snprintf(kp, sizeof kp, "%s/key.pem", dir);
	if (put_upload(cp, chain, 0600) == 0 && put_upload(kp, key, 0600) == 0) {
		char *argv[] = { (char *)r->o->certtool, "install", (char *)r->o->tls_dir, cp, kp, NULL };
		rc = run_capture(argv, out, sizeof out);
		if (rc != 0) {
			tidy(out, cp, kp);
			adm_error(r, strstr(out, "the key") ? "key" : "chain",
				  out[0] ? out : "postern-certtool could not be run");
		}
	} else
		adm_error(r, "-", "cannot write the upload");
	unlink(cp), unlink(kp), rmdir(dir);
	return rc == 0 ? 0 : -1;
}

/* Browsers send a text area's line breaks as CRLF (HTML "textarea
 * wrapping transformation"); PEM is read with LF, as the files are. */
static void crlf_to_lf(char *s)
{
	char *o = s;

	for (; *s; s++)
		if (!(s[0] == '\r' && s[1] == '\n'))
			*o++ = *s;
	*o = '\0';
}

/* cert-install CHAIN KEY */
void adm_op_cert_install(struct adm_req *r)
{
	crlf_to_lf(r->argv[1]);
	crlf_to_lf(r->argv[2]);
	if (precheck(r, r->argv[1], r->argv[2]) < 0 || install(r, r->argv[1], r->argv[2]) < 0)
		return;
	fputs("ok\n", r->out);
	name_warning(r, r->argv[1]);
	syslog(LOG_NOTICE, "custom TLS certificate installed from the web page");
	restart_services(r->o);
}

/* cert-revert: back to the box's own certificate. */
void adm_op_cert_revert(struct adm_req *r)
{
	char p[ADM_PATH_MAX], out[ADM_CERT_OUT_MAX];
	char *argv[] = { (char *)r->o->cert_renew, NULL };

	snprintf(p, sizeof p, "%s/" ADM_CERT_MARKER, r->o->tls_dir);
	if (unlink(p) < 0) {
		adm_error(r, "-", errno == ENOENT ? "the box already uses its own certificate"
			  : strerror(errno));
		return;
	}
	fs_fsync_dir(r->o->tls_dir);
	if (run_capture(argv, out, sizeof out) != 0) {
		adm_error(r, "-", "the box's own certificate could not be issued; the daemons "
			  "keep the installed one until the next renewal (see the log)");
		syslog(LOG_ERR, "cert-revert: %s failed: %s", r->o->cert_renew, out);
		return;
	}
	syslog(LOG_NOTICE, "back to the box's own TLS certificate (web page)");
	restart_services(r->o);
	fputs("ok\n", r->out);
}

/* cert-info: where server.pem comes from and when it expires. */
void adm_op_cert_info(struct adm_req *r)
{
	static br_x509_decoder_context dc;
	struct pem_chain c;
	char p[ADM_PATH_MAX], err[128], date[32];
	time_t t;
	struct tm tm;

	snprintf(p, sizeof p, "%s/" ADM_CERT_MARKER, r->o->tls_dir);
	fprintf(r->out, "ok\nsource %s\n", access(p, F_OK) == 0 ? "admin" : "box");
	snprintf(p, sizeof p, "%s/" LOCALCA_SERVER_CERT, r->o->tls_dir);
	if (pem_chain_load(&c, p, err, sizeof err) < 0)
		return;
	br_x509_decoder_init(&dc, NULL, NULL);
	br_x509_decoder_push(&dc, c.certs[0].data, c.certs[0].data_len);
	t = (time_t)der_br_to_time(dc.notafter_days, dc.notafter_seconds);
	if (gmtime_r(&t, &tm) && strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm))
		fprintf(r->out, "expires %s\n", date);
	pem_chain_free(&c);
}
