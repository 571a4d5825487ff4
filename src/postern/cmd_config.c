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
 * concurrent changes (the transaction is src/lib/settings.h, shared with
 * the web page's admind). Daemons pick the change up on SIGHUP.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "config.h"
#include "settings.h"

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

/* The change of one setting: set (value) or unset (value NULL). */
struct one_change {
	const char *key, *value;
};

static int change_one(struct config *cfg, void *arg, struct config_errors *errs)
{
	const struct one_change *c = arg;

	return c->value ? config_set(cfg, c->key, c->value, errs)
			: config_unset(cfg, c->key, errs);
}

/* Lock, load, change, validate, save: settings.h, as the web page does. */
static int config_change(const char *path, const char *key, const char *value)
{
	static const struct settings_config_ops ops = { change_one, NULL, NULL };
	static struct config_errors errs;
	struct one_change c = { key, value };
	int rc = settings_config_edit(path, &ops, &c, &errs);

	if (rc == SETTINGS_ELOCK) {
		fprintf(stderr, "postern config: %s.lock: %s\n", path, strerror(errno));
		return 111;
	}
	if (rc == SETTINGS_ELOAD)
		fprintf(stderr, "postern config: %s must be valid before it can be changed:\n", path);
	print_errors(&errs);
	return rc == SETTINGS_OK ? 0 : 1;
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
