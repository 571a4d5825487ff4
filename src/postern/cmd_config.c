/*
 * cmd_config.c - `postern config get KEY`, `postern config set KEY VALUE`,
 * `postern config unset KEY`: read or change one setting of the
 * configuration file ($POSTERN_CONF, default /data/etc/postern.conf).
 *
 * Changes go through the same code as the web page: config_set/unset
 * validate the value with the parser's own rules, config_save validates the
 * whole model (cross-checks included) and replaces the file atomically,
 * keeping its comments and layout. On any error the file is unchanged and
 * the exit status is 1. A lock file beside the configuration serialises
 * concurrent changes. Daemons pick the change up on SIGHUP.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cmds.h"
#include "config.h"

#define CONFIG_VALUE_MAX 65536

static const char config_usage[] =
	"usage: postern config get KEY\n"
	"       postern config set KEY VALUE\n"
	"       postern config unset KEY\n"
	"KEY is a setting (hostname), section.setting (smarthost.port)\n"
	"or account.NAME.setting; see docs/CONFIG.md.\n";

static void print_errors(const struct config_errors *errs)
{
	for (int i = 0; i < errs->count; i++)
		fprintf(stderr, "%s\n", errs->e[i].text);
}

/* The model to change: the file's, or an empty one when there is no file. */
static struct config *load_for_change(const char *path, struct config_errors *errs)
{
	if (access(path, F_OK) != 0 && errno == ENOENT)
		return config_new();
	return config_load(path, errs);
}

static int lock_config(const char *path)
{
	char lock[4096];
	int fd;

	if (snprintf(lock, sizeof lock, "%s.lock", path) >= (int)sizeof lock)
		return -1;
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 || flock(fd, LOCK_EX) != 0) {
		perror(lock);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int config_read(const char *path, const char *key)
{
	static struct config_errors errs;
	static char value[CONFIG_VALUE_MAX];
	struct config *cfg = config_load(path, &errs);
	int n;

	if (!cfg) {
		print_errors(&errs);
		return 1;
	}
	n = config_get(cfg, key, value, sizeof value);
	config_free(cfg);
	if (n < 0) {
		fprintf(stderr, "postern config: %s: unknown setting\n", key);
		return 1;
	}
	printf("%s\n", value);
	return 0;
}

static int config_change(const char *path, const char *key, const char *value)
{
	static struct config_errors errs;
	struct config *cfg;
	int fd = lock_config(path), rc = 1;

	if (fd < 0)
		return 111;
	cfg = load_for_change(path, &errs);
	if (!cfg) {
		fprintf(stderr, "postern config: %s must be valid before it can be changed:\n", path);
		print_errors(&errs);
	} else if ((value ? config_set(cfg, key, value, &errs)
	                  : config_unset(cfg, key, &errs)) != 0 ||
	           config_save(cfg, path, &errs) != 0) {
		print_errors(&errs);
	} else {
		rc = 0;
	}
	config_free(cfg);
	close(fd);
	return rc;
}

int cmd_config(int argc, char **argv)
{
	const char *path = postern_conf_path(NULL);

	if (argc == 3 && strcmp(argv[1], "get") == 0)
		return config_read(path, argv[2]);
	if (argc == 4 && strcmp(argv[1], "set") == 0)
		return config_change(path, argv[2], argv[3]);
	if (argc == 3 && strcmp(argv[1], "unset") == 0)
		return config_change(path, argv[2], NULL);
	fputs(config_usage, stderr);
	return 1;
}
