/*
 * postern-certtool - the local CA from the command line (first boot, tests).
 *
 *   postern-certtool init DIR --name HOST [--name NAME]... [--ip ADDR]...
 *       Creates the CA in DIR unless a valid one is there, and issues a
 *       server certificate for the names (the first becomes the CN).
 *   postern-certtool renew DIR [--force] [--name N]... [--ip A]...
 *       Reissues the server certificate if it expires within 30 days (or is
 *       missing, or does not match its key); without names it keeps the
 *       names of the current certificate. Prints "renewed" or "valid".
 *   postern-certtool pin FILE
 *       Prints the SHA-256 SPKI pin of the first certificate in FILE.
 *
 * --now UNIXTIME replaces the clock (for tests). Exit status 0, or 100 on
 * bad usage or input, 111 on a failure worth retrying (I/O).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "localca.h"
#include "pem.h"
#include "tls.h"

#define EXIT_PERM 100
#define EXIT_TEMP 111

struct certtool_opts {
	const char *names[LOCALCA_NAMES_MAX];
	size_t count;
	int force;
	int64_t now;
};

static void usage(void)
{
	fprintf(stderr, "usage: postern-certtool init DIR --name HOST [--name N]... [--ip A]...\n"
		"       postern-certtool renew DIR [--force] [--name N]... [--ip A]...\n"
		"       postern-certtool pin CERT.pem\n"
		"       (--now UNIXTIME replaces the clock)\n");
	exit(EXIT_PERM);
}

static void parse_opts(int argc, char **argv, struct certtool_opts *o)
{
	int i;

	memset(o, 0, sizeof *o);
	o->now = (int64_t)time(NULL);
	for (i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--force")) {
			o->force = 1;
		} else if ((!strcmp(argv[i], "--name") || !strcmp(argv[i], "--ip")) && i + 1 < argc) {
			if (o->count == LOCALCA_NAMES_MAX) {
				fprintf(stderr, "postern-certtool: at most %d names\n",
					LOCALCA_NAMES_MAX);
				exit(EXIT_PERM);
			}
			if (!localca_name_ok(argv[++i])) {
				fprintf(stderr, "postern-certtool: not a host name or IP address: \"%s\"\n",
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

static int cmd_pin(const char *path)
{
	struct pem_chain chain;
	br_x509_decoder_context dc;
	unsigned char pin[32];
	char hex[TLS_PIN_HEX], err[256];
	const br_x509_pkey *pk;

	if (pem_chain_load(&chain, path, err, sizeof err) < 0) {
		fprintf(stderr, "postern-certtool: %s\n", err);
		return EXIT_PERM;
	}
	br_x509_decoder_init(&dc, NULL, NULL);
	br_x509_decoder_push(&dc, chain.certs[0].data, chain.certs[0].data_len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (!pk || tls_pin_of_key(pk, pin) < 0) {
		fprintf(stderr, "postern-certtool: %s: cannot read the public key\n", path);
		pem_chain_free(&chain);
		return EXIT_PERM;
	}
	tls_pin_format(pin, hex);
	printf("%s\n", hex);
	pem_chain_free(&chain);
	return 0;
}

int main(int argc, char **argv)
{
	struct certtool_opts o;
	char err[512];
	int r;

	if (argc < 3)
		usage();
	if (!strcmp(argv[1], "pin") && argc == 3)
		return cmd_pin(argv[2]);
	parse_opts(argc, argv, &o);
	if (!strcmp(argv[1], "init")) {
		if (o.count == 0)
			usage();
		if (localca_init(argv[2], o.names, o.count, o.now, err, sizeof err) < 0) {
			fprintf(stderr, "postern-certtool: %s\n", err);
			return EXIT_TEMP;
		}
		return 0;
	}
	if (!strcmp(argv[1], "renew")) {
		r = localca_renew(argv[2], o.names, o.count, o.now, o.force, err, sizeof err);
		if (r < 0) {
			fprintf(stderr, "postern-certtool: %s\n", err);
			return EXIT_TEMP;
		}
		printf("%s\n", r ? "renewed" : "valid");
		return 0;
	}
	usage();
	return EXIT_PERM;
}
