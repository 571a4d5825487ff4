/*
 * main.c - the `postern` administration tool: finds the subcommand named by
 * argv[1] in a table and runs it (see cmds.h for the exit statuses).
 */
#include <stdio.h>
#include <string.h>

#include "cmds.h"

#ifndef POSTERN_VERSION
#define POSTERN_VERSION "unknown"
#endif

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "alerts", cmd_alerts, "alerts show|check   the dashboard's alerts; check mails the admins" },
	{ "check", cmd_check, "check [FILE]         validate the configuration" },
	{ "config", cmd_config, "config get|set|unset KEY [VALUE]   read or change one setting" },
	{ "firewall", cmd_firewall, "firewall show|check|apply|blocked|env   the packet filter" },
	{ "fetch", cmd_fetch, "fetch [ACCOUNT]      poll the provider accounts now" },
	{ "queue", cmd_queue, "queue [list] | show ID | flush | delete ID   the outbound queue" },
	{ "secret", cmd_secret, "secret set|list|fix [NAME]   provider passwords (value on stdin)" },
	{ "user", cmd_user, "user add|del|passwd|role|list|...  manage users" },
	{ "version", cmd_version, "version              print the firmware version" },
};

int cmd_version(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: postern version\n");
		return 1;
	}
	printf("postern %s\n", POSTERN_VERSION);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: postern COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %s\n", commands[i].summary);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "postern: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return 1;
}
