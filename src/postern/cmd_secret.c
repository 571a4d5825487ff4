/*
 * cmd_secret.c - `postern secret`: the files under the secrets directory
 * (src/lib/secret.h), each readable only by the service that uses it.
 *
 *   postern secret set NAME   store NAME's value, read from stdin (no echo on
 *                             a terminal), owned by the service that the
 *                             configuration says uses it
 *   postern secret list       each secret, its owner, mode and user
 *   postern secret fix        repair owners and modes (boot, after a change)
 *
 * $POSTERN_SECRETS overrides the directory (tests); the configuration is
 * found as by `postern check`.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pwd.h>

#include "cmds.h"
#include "config.h"
#include "fsutil.h"
#include "secret.h"

static const char secret_usage[] =
	"usage: postern secret set NAME   (the value on stdin)\n"
	"       postern secret list\n"
	"       postern secret fix\n";

static const char *secret_dir(void)
{
	const char *env = getenv("POSTERN_SECRETS");

	return env && *env ? env : SECRET_DIR;
}

static struct config *load_conf(void)
{
	static struct config_errors errs;
	const char *path = postern_conf_path(NULL);
	struct config *cfg = config_load(path, &errs);

	if (!cfg) {
		fprintf(stderr, "postern secret: %s is invalid (see `postern check`)\n", path);
		for (int i = 0; i < errs.count && i < 3; i++)
			fprintf(stderr, "  %s\n", errs.e[i].text);
	}
	return cfg;
}

static int secret_set(const struct config *cfg, const char *name)
{
	char val[SECRET_MAX + 2], err[256];
	const char *owner = secret_owner(cfg, name, err, sizeof err);
	int r;

	if (!owner) {
		fprintf(stderr, "postern secret: %s\n", err);
		return 1;
	}
	r = read_hidden_line("Value: ", val, sizeof val);
	if (r != 0 || val[0] == '\0') {
		fprintf(stderr, "postern secret: %s\n", r == -2 ?
			"value longer than the limit" : "no value on stdin");
		return 1;
	}
	r = secret_write(secret_dir(), name, val, strlen(val), owner, err, sizeof err);
	memset(val, 0, sizeof val);
	if (r < 0) {
		fprintf(stderr, "postern secret: %s\n", err);
		return 111;
	}
	printf("%s: stored, readable by %s only\n", name, owner);
	return 0;
}

static int secret_list(const struct config *cfg)
{
	const char *dir = secret_dir();
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d) {
		perror(dir);
		return 111;
	}
	while ((de = readdir(d))) {
		char path[FS_PATH_MAX], err[256];
		const char *want;
		struct passwd *pw;
		struct stat st;

		if (de->d_name[0] == '.' ||
		    (size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path ||
		    lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		want = secret_owner(cfg, de->d_name, err, sizeof err);
		pw = getpwuid(st.st_uid);
		printf("%-24s owner %-8s mode %04o  for %s\n", de->d_name,
		       pw ? pw->pw_name : "?", (unsigned)(st.st_mode & 07777),
		       want ? want : err);
	}
	closedir(d);
	return 0;
}

static void print_line(const char *line, void *arg)
{
	(void)arg;
	printf("%s\n", line);
}

int cmd_secret(int argc, char **argv)
{
	struct config *cfg;
	char err[256];
	int r;

	if (argc < 2 || (strcmp(argv[1], "set") == 0) != (argc == 3) ||
	    (strcmp(argv[1], "set") != 0 && argc != 2)) {
		fputs(secret_usage, stderr);
		return 1;
	}
	if (!(cfg = load_conf()))
		return 1;
	if (strcmp(argv[1], "set") == 0)
		r = secret_set(cfg, argv[2]);
	else if (strcmp(argv[1], "list") == 0)
		r = secret_list(cfg);
	else if (strcmp(argv[1], "fix") == 0) {
		r = secret_fix(secret_dir(), cfg, print_line, NULL, err, sizeof err);
		if (r < 0)
			fprintf(stderr, "postern secret: %s\n", err);
		r = r == 0 ? 0 : 111;
	} else {
		fputs(secret_usage, stderr);
		r = 1;
	}
	config_free(cfg);
	return r;
}
