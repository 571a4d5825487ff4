/*
 * postern-certtool - the box's TLS server certificate from the command line
 * (first boot, the daily `certs` service, administrators, tests).
 *
 *   postern-certtool init DIR --name HOST [--name NAME]... [--ip ADDR]...
 *       Creates the CA in DIR unless a valid one is there, and issues a
 *       server certificate for the names (the first becomes the CN).
 *   postern-certtool renew DIR [--force] [--name N]... [--ip A]...
 *       Reissues the server certificate from the local CA if it expires
 *       within 30 days, is missing, does not match its key, or was not issued
 *       by DIR/ca.pem (always with --force); without names it keeps the
 *       names of the current certificate (names are required when the
 *       current one is not from the local CA, e.g. after --revert). Never
 *       touches an admin-installed certificate (DIR/admin-installed
 *       exists), not even with --force.
 *       Prints one word on stdout, exit status 0:
 *         renewed          a new server.pem/server.key was written: restart
 *                          the daemons that serve it
 *         valid            nothing to do
 *         admin-installed  skipped: the administrator's certificate stays
 *   postern-certtool install DIR CERT.pem KEY.pem
 *       Installs an administrator's certificate chain (end-entity first) and
 *       key as DIR/server.pem and DIR/server.key (0600) after checking that
 *       the chain and the key parse, that the key belongs to the first
 *       certificate and that it is valid now; on any failure nothing in DIR
 *       changes. Writes the marker DIR/admin-installed, so renew leaves it.
 *       Prints "installed"; the daemons load it when they restart.
 *   postern-certtool install --revert DIR
 *       Removes the marker: the next renew reissues the box's own
 *       certificate (the administrator's was not issued by the local CA).
 *       Prints "reverted" (or "nothing to revert").
 *   postern-certtool expiry CERT.pem
 *       Prints "DAYS DATE" for the first certificate of CERT.pem: whole days
 *       left before it expires (negative once it has) and its notAfter
 *       (YYYY-MM-DDTHH:MM:SSZ).
 *   postern-certtool pin FILE
 *       Prints the SHA-256 SPKI pin of the first certificate in FILE.
 *
 * --now UNIXTIME replaces the clock (for tests). Exit status 0, or 100 on
 * bad usage or input (an install refused: the message says why), 111 on a
 * failure worth retrying (I/O).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "der.h"
#include "fsutil.h"
#include "localca.h"
#include "pem.h"
#include "tls.h"

#define EXIT_PERM 100
#define EXIT_TEMP 111
#define PROG "postern-certtool"
/* In DIR: the server certificate is the administrator's; renew skips. */
#define ADMIN_MARKER "admin-installed"
#define DAY_SECONDS 86400

struct certtool_opts {
	const char *names[LOCALCA_NAMES_MAX];
	size_t count;
	int force;
	int64_t now;
};

/* A certificate chain and key read for install (the key text is wiped). */
struct install_input {
	const char *cert_path, *key_path;
	char *cert;
	char *key;
	size_t cert_len, key_len;
};

static void usage(void)
{
	fprintf(stderr, "usage: " PROG " init DIR --name HOST [--name N]... [--ip A]...\n"
		"       " PROG " renew DIR [--force] [--name N]... [--ip A]...\n"
		"       " PROG " install DIR CERT.pem KEY.pem\n"
		"       " PROG " install --revert DIR\n"
		"       " PROG " expiry CERT.pem\n"
		"       " PROG " pin CERT.pem\n"
		"       (--now UNIXTIME replaces the clock)\n");
	exit(EXIT_PERM);
}

/* Options from argv[first] on. */
static void parse_opts(int argc, char **argv, int first, struct certtool_opts *o)
{
	int i;

	memset(o, 0, sizeof *o);
	o->now = (int64_t)time(NULL);
	for (i = first; i < argc; i++) {
		if (!strcmp(argv[i], "--force")) {
			o->force = 1;
		} else if ((!strcmp(argv[i], "--name") || !strcmp(argv[i], "--ip")) && i + 1 < argc) {
			if (o->count == LOCALCA_NAMES_MAX) {
				fprintf(stderr, PROG ": at most %d names\n", LOCALCA_NAMES_MAX);
				exit(EXIT_PERM);
			}
			if (!localca_name_ok(argv[++i])) {
				fprintf(stderr, PROG ": not a host name or IP address: \"%s\"\n",
					argv[i]);
				exit(EXIT_PERM);
			}
			o->names[o->count++] = argv[i];
		} else if (!strcmp(argv[i], "--now") && i + 1 < argc) {
			o->now = strtoll(argv[++i], NULL, 10);
		} else {
			usage();
		}
	}
}

/* Options for commands that take only --now. */
static void parse_now_only(int argc, char **argv, int first, struct certtool_opts *o)
{
	parse_opts(argc, argv, first, o);
	if (o->count || o->force)
		usage();
}

/* dir + "/" + name into out (FS_PATH_MAX bytes). Returns 0 or -1. */
static int dir_path(char *out, const char *dir, const char *name)
{
	int n = snprintf(out, FS_PATH_MAX, "%s/%s", dir, name);

	if (n < 0 || n >= FS_PATH_MAX) {
		fprintf(stderr, PROG ": %s: path too long\n", dir);
		return -1;
	}
	return 0;
}

/* t as YYYY-MM-DDTHH:MM:SSZ. */
static const char *fmt_time(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "@%lld", (long long)t);
	return buf;
}

/* Decodes a DER certificate; the decoder then holds its key and dates. */
static int decode_cert(br_x509_decoder_context *dc, const br_x509_certificate *cert)
{
	br_x509_decoder_init(dc, NULL, NULL);
	br_x509_decoder_push(dc, cert->data, cert->data_len);
	return br_x509_decoder_get_pkey(dc) ? 0 : -1;
}

/* ---- pin, expiry ----------------------------------------------------------- */

static int cmd_pin(const char *path)
{
	struct pem_chain chain;
	br_x509_decoder_context dc;
	unsigned char pin[32];
	char hex[TLS_PIN_HEX], err[256];

	if (pem_chain_load(&chain, path, err, sizeof err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return EXIT_PERM;
	}
	if (decode_cert(&dc, &chain.certs[0]) < 0
	    || tls_pin_of_key(br_x509_decoder_get_pkey(&dc), pin) < 0) {
		fprintf(stderr, PROG ": %s: cannot read the public key\n", path);
		pem_chain_free(&chain);
		return EXIT_PERM;
	}
	tls_pin_format(pin, hex);
	printf("%s\n", hex);
	pem_chain_free(&chain);
	return 0;
}

static int cmd_expiry(int argc, char **argv)
{
	struct certtool_opts o;
	char err[512], date[32];
	int64_t not_after, left;

	parse_now_only(argc, argv, 3, &o);
	if (localca_expires_within(argv[2], o.now, 0, &not_after, err, sizeof err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return EXIT_PERM;
	}
	left = not_after - o.now;
	/* Whole days, rounded down: -1 as soon as it has expired. */
	left = left >= 0 ? left / DAY_SECONDS : -((-left + DAY_SECONDS - 1) / DAY_SECONDS);
	printf("%lld %s\n", (long long)left, fmt_time(not_after, date, sizeof date));
	return 0;
}

/* ---- renew ----------------------------------------------------------------- */

/* 1 when DIR/admin-installed exists, 0 when not, -1 on error. */
static int admin_installed(const char *dir)
{
	char path[FS_PATH_MAX];

	if (dir_path(path, dir, ADMIN_MARKER) < 0)
		return -1;
	if (access(path, F_OK) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
	return -1;
}

/* Verifies the first certificate of chain against the anchors at now. */
static unsigned verify_leaf(const struct pem_anchors *ca, const struct pem_chain *chain,
	int64_t now)
{
	static br_x509_minimal_context xc;
	const br_x509_class **vt = &xc.vtable;
	const br_x509_certificate *leaf = &chain->certs[0];
	uint32_t days, secs;

	br_x509_minimal_init_full(&xc, ca->ta, ca->count);
	der_time_to_br(now, &days, &secs);
	br_x509_minimal_set_time(&xc, days, secs);
	xc.vtable->start_chain(vt, NULL);
	xc.vtable->start_cert(vt, (uint32_t)leaf->data_len);
	xc.vtable->append(vt, leaf->data, leaf->data_len);
	xc.vtable->end_cert(vt);
	return xc.vtable->end_chain(vt);
}

/* 1 when DIR/server.pem verifies against DIR/ca.pem now, 0 when it does
 * not, -1 when either cannot be loaded (localca_renew then decides, and
 * reports the problem if it needs the file). */
static int issued_by_local_ca(const char *dir, int64_t now)
{
	char path[FS_PATH_MAX];
	struct pem_anchors ca;
	struct pem_chain chain;
	int r;

	if (dir_path(path, dir, LOCALCA_CA_CERT) < 0 || pem_anchors_load(&ca, path, NULL, 0) < 0)
		return -1;
	if (dir_path(path, dir, LOCALCA_SERVER_CERT) < 0
	    || pem_chain_load(&chain, path, NULL, 0) < 0) {
		pem_anchors_free(&ca);
		return -1;
	}
	r = verify_leaf(&ca, &chain, now) == 0;
	pem_chain_free(&chain);
	pem_anchors_free(&ca);
	return r;
}

static int cmd_renew(int argc, char **argv)
{
	struct certtool_opts o;
	const char *dir = argv[2];
	char err[512];
	int r;

	parse_opts(argc, argv, 3, &o);
	r = admin_installed(dir);
	if (r < 0)
		return EXIT_TEMP;
	if (r > 0) {
		printf("admin-installed\n");
		return 0;
	}
	/* After `install --revert` the administrator's certificate is still
	 * there, valid and matching its key: reissue it from our CA, for the
	 * box's names (not the administrator's). */
	if (issued_by_local_ca(dir, o.now) == 0) {
		if (o.count == 0) {
			fprintf(stderr, PROG ": %s/" LOCALCA_SERVER_CERT " was not issued by the "
				"local CA: give the box's names (--name, --ip) to reissue it\n", dir);
			return EXIT_PERM;
		}
		o.force = 1;
	}
	r = localca_renew(dir, o.names, o.count, o.now, o.force, err, sizeof err);
	if (r < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return EXIT_TEMP;
	}
	printf("%s\n", r ? "renewed" : "valid");
	return 0;
}

/* ---- install --------------------------------------------------------------- */

static void install_input_free(struct install_input *in)
{
	if (in->key) {
		explicit_bzero(in->key, in->key_len);
		free(in->key);
	}
	free(in->cert);
	in->cert = in->key = NULL;
}

/* Reads both files. Returns 0, or -1 after printing why. */
static int install_read(struct install_input *in)
{
	char err[512];

	in->cert = pem_read_file(in->cert_path, &in->cert_len, err, sizeof err);
	if (!in->cert) {
		fprintf(stderr, PROG ": cannot read the certificate: %s\n", err);
		return -1;
	}
	in->key = pem_read_file(in->key_path, &in->key_len, err, sizeof err);
	if (!in->key) {
		fprintf(stderr, PROG ": cannot read the private key: %s\n", err);
		return -1;
	}
	return 0;
}

/* Every certificate of the chain decodes. Returns 0, or -1 after printing. */
static int install_check_chain(const struct install_input *in, const struct pem_chain *chain)
{
	br_x509_decoder_context dc;
	size_t i;

	for (i = 0; i < chain->count; i++) {
		if (decode_cert(&dc, &chain->certs[i]) < 0) {
			fprintf(stderr, PROG ": %s: certificate %zu of the chain cannot be decoded "
				"(BearSSL error %d)\n", in->cert_path, i + 1,
				br_x509_decoder_last_error(&dc));
			return -1;
		}
	}
	return 0;
}

/* The end-entity certificate is valid at now. Returns 0, or -1 after printing. */
static int install_check_dates(const struct install_input *in, const br_x509_certificate *leaf,
	int64_t now)
{
	br_x509_decoder_context dc;
	int64_t nb, na;
	char t1[32], t2[32];

	if (decode_cert(&dc, leaf) < 0)
		return -1;
	nb = der_br_to_time(dc.notbefore_days, dc.notbefore_seconds);
	na = der_br_to_time(dc.notafter_days, dc.notafter_seconds);
	if (now < nb) {
		fprintf(stderr, PROG ": %s: the certificate is not valid yet: valid from %s "
			"(now %s); check the clock\n", in->cert_path,
			fmt_time(nb, t1, sizeof t1), fmt_time(now, t2, sizeof t2));
		return -1;
	}
	if (now > na) {
		fprintf(stderr, PROG ": %s: the certificate has expired: valid until %s "
			"(now %s)\n", in->cert_path,
			fmt_time(na, t1, sizeof t1), fmt_time(now, t2, sizeof t2));
		return -1;
	}
	return 0;
}

/* All the checks, nothing written. Returns 0, or -1 after printing why. */
static int install_validate(const struct install_input *in, int64_t now)
{
	static struct pem_key key;
	static struct tls_server_config cfg;
	struct pem_chain chain;
	char err[512];
	int r;

	if (pem_chain_parse(&chain, in->cert, in->cert_len, err, sizeof err) < 0) {
		fprintf(stderr, PROG ": %s: not a PEM certificate chain: %s\n", in->cert_path, err);
		return -1;
	}
	r = install_check_chain(in, &chain);
	if (r == 0)
		r = install_check_dates(in, &chain.certs[0], now);
	pem_chain_free(&chain);
	if (r < 0)
		return -1;
	if (pem_key_parse(&key, in->key, in->key_len, err, sizeof err) < 0) {
		fprintf(stderr, PROG ": %s: not a PEM private key: %s\n", in->key_path, err);
		return -1;
	}
	pem_key_wipe(&key);
	/* What smtpd and imapd will do with the installed files. */
	if (tls_server_config_parse(&cfg, in->cert, in->cert_len, in->key, in->key_len,
				    err, sizeof err) < 0) {
		fprintf(stderr, PROG ": %s is not the key of the certificate in %s (%s)\n",
			in->key_path, in->cert_path, err);
		return -1;
	}
	tls_server_config_free(&cfg);
	return 0;
}

/* Writes one file of DIR atomically. Returns 0, or -1 after printing. */
static int install_file(const char *dir, const char *name, const void *data, size_t len,
	mode_t mode)
{
	char path[FS_PATH_MAX];

	if (dir_path(path, dir, name) < 0)
		return -1;
	if (fs_write_atomic(path, data, len, mode) < 0) {
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The marker first, so that a renewal running meanwhile never replaces the
 * new certificate; then the key, then the chain. */
static int install_write(const char *dir, const struct install_input *in, int64_t now)
{
	char marker[FS_PATH_MAX + 128], date[32];
	int n;

	if (fs_mkdir_p(dir, 0700) < 0) {
		fprintf(stderr, PROG ": %s: %s\n", dir, strerror(errno));
		return -1;
	}
	n = snprintf(marker, sizeof marker, "installed %s from %s\n",
		fmt_time(now, date, sizeof date), in->cert_path);
	if (n < 0 || (size_t)n >= sizeof marker)
		n = (int)strlen(marker);
	if (install_file(dir, ADMIN_MARKER, marker, (size_t)n, 0644) < 0)
		return -1;
	if (install_file(dir, LOCALCA_SERVER_KEY, in->key, in->key_len, 0600) < 0)
		return -1;
	if (install_file(dir, LOCALCA_SERVER_CERT, in->cert, in->cert_len, 0644) < 0) {
		fprintf(stderr, PROG ": %s/" LOCALCA_SERVER_KEY " was replaced but not %s/"
			LOCALCA_SERVER_CERT ": run the install again\n", dir, dir);
		return -1;
	}
	return 0;
}

static int cmd_revert(const char *dir)
{
	char path[FS_PATH_MAX];

	if (dir_path(path, dir, ADMIN_MARKER) < 0)
		return EXIT_PERM;
	if (unlink(path) < 0) {
		if (errno == ENOENT) {
			printf("nothing to revert\n");
			fprintf(stderr, PROG ": %s: no admin-installed certificate\n", dir);
			return 0;
		}
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		return EXIT_TEMP;
	}
	if (fs_fsync_dir(dir) < 0) {
		fprintf(stderr, PROG ": %s: %s\n", dir, strerror(errno));
		return EXIT_TEMP;
	}
	printf("reverted\n");
	fprintf(stderr, PROG ": %s: the next renew reissues the server certificate "
		"from the local CA\n", dir);
	return 0;
}

static int cmd_install(int argc, char **argv)
{
	struct certtool_opts o;
	struct install_input in;
	int r = EXIT_PERM;

	if (!strcmp(argv[2], "--revert")) {
		if (argc != 4)
			usage();
		return cmd_revert(argv[3]);
	}
	if (argc < 5)
		usage();
	parse_now_only(argc, argv, 5, &o);
	memset(&in, 0, sizeof in);
	in.cert_path = argv[3];
	in.key_path = argv[4];
	if (install_read(&in) == 0 && install_validate(&in, o.now) == 0) {
		r = install_write(argv[2], &in, o.now) == 0 ? 0 : EXIT_TEMP;
		if (r == 0)
			printf("installed\n");
	}
	install_input_free(&in);
	return r;
}

/* ---- main ------------------------------------------------------------------ */

static int cmd_init(int argc, char **argv)
{
	struct certtool_opts o;
	char err[512];
	int r;

	parse_opts(argc, argv, 3, &o);
	if (o.count == 0)
		usage();
	r = admin_installed(argv[2]);
	if (r != 0) {
		if (r > 0)
			fprintf(stderr, PROG ": %s holds an admin-installed certificate: run `"
				PROG " install --revert %s` first\n", argv[2], argv[2]);
		return r > 0 ? EXIT_PERM : EXIT_TEMP;
	}
	if (localca_init(argv[2], o.names, o.count, o.now, err, sizeof err) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return EXIT_TEMP;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	if (!strcmp(argv[1], "pin") && argc == 3)
		return cmd_pin(argv[2]);
	if (!strcmp(argv[1], "expiry"))
		return cmd_expiry(argc, argv);
	if (!strcmp(argv[1], "init"))
		return cmd_init(argc, argv);
	if (!strcmp(argv[1], "renew"))
		return cmd_renew(argc, argv);
	if (!strcmp(argv[1], "install"))
		return cmd_install(argc, argv);
	usage();
	return EXIT_PERM;
}
