/*
 * cmd_fetch.c - `postern fetch [ACCOUNT]`: one poll of the provider
 * accounts by hand. The fetcher is its own program (it runs with the
 * fetcher's privileges and secrets), so this only executes `fetchd --once`,
 * which prints one line per account saying what it did. Run as root on the
 * box, it has fetchd drop to its own user first (files it writes must stay
 * the fetcher's, and only that user can read the provider passwords).
 */
#include <pwd.h>
#include <stdio.h>
#include <unistd.h>

#include "cmds.h"

int cmd_fetch(int argc, char **argv)
{
	char *args[6] = { "fetchd", "--once", NULL, NULL, NULL, NULL };
	int n = 2;

	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: postern fetch [ACCOUNT]\n");
		return 1;
	}
	if (geteuid() == 0 && getpwnam("fetchd")) {
		args[n++] = "-u";
		args[n++] = "fetchd";
	}
	if (argc == 2)
		args[n] = argv[1];
	execvp(args[0], args);
	perror("postern fetch: cannot run fetchd");
	return 111;
}
