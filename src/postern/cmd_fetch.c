/*
 * cmd_fetch.c - `postern fetch [ACCOUNT]`: one poll of the provider
 * accounts by hand. The fetcher is its own program (it runs with the
 * fetcher's privileges and secrets), so this only executes `fetchd --once`,
 * which prints one line per account saying what it did.
 */
#include <stdio.h>
#include <unistd.h>

#include "cmds.h"

int cmd_fetch(int argc, char **argv)
{
	char *args[4] = { "fetchd", "--once", NULL, NULL };

	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: postern fetch [ACCOUNT]\n");
		return 1;
	}
	if (argc == 2)
		args[2] = argv[1];
	execvp(args[0], args);
	perror("postern fetch: cannot run fetchd");
	return 111;
}
