/*
 * cmd_check.c - `postern check [-q] [FILE]`: validates the configuration.
 *
 * FILE defaults to $POSTERN_CONF, then /data/etc/postern.conf. Every error
 * is printed to stderr as "FILE:LINE: section: setting: message" and the
 * exit status is 1; a valid file prints "FILE: ok" (nothing with -q) and
 * exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "config.h"

#define CHECK_DEFAULT_PATH "/data/etc/postern.conf"

static const char check_usage[] = "usage: postern check [-q] [FILE]\n";

const char *postern_conf_path(const char *arg)
{
	const char *env = getenv("POSTERN_CONF");

	if (arg)
		return arg;
	return env && *env ? env : CHECK_DEFAULT_PATH;
}

int cmd_check(int argc, char **argv)
{
	static struct config_errors errs;   /* large: keep it off the stack */
	struct config *cfg;
	const char *path;
	int quiet = argc > 1 && strcmp(argv[1], "-q") == 0;

	if (argc - quiet > 2 || (argc - quiet == 2 && argv[1 + quiet][0] == '-')) {
		fputs(check_usage, stderr);
		return 1;
	}
	path = postern_conf_path(argc - quiet == 2 ? argv[1 + quiet] : NULL);
	cfg = config_load(path, &errs);
	if (!cfg) {
		for (int i = 0; i < errs.count; i++)
			fprintf(stderr, "%s\n", errs.e[i].text);
		if (errs.dropped)
			fprintf(stderr, "%s: ... and %d more errors\n", path, errs.dropped);
		return 1;
	}
	config_free(cfg);
	if (!quiet)
		printf("%s: ok\n", path);
	return 0;
}
