/*
 * test_settings.c - the configuration and users transactions (settings.h):
 * each failing step leaves the file byte for byte as it was.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"
#include "settings.h"

static char dir[] = "/tmp/test-settings-XXXXXX";
static char conf[256], users[256];
static char buf[CONFIG_FILE_MAX + 1];
static int after_calls;

static const char *slurp(const char *path)
{
	ssize_t n = fs_read_file(path, buf, CONFIG_FILE_MAX);

	buf[n > 0 ? n : 0] = '\0';
	return n < 0 ? NULL : buf;
}

static int set_port(struct config *cfg, void *arg, struct config_errors *errs)
{
	return config_set(cfg, "smarthost.port", arg, errs);
}

static int refuse(struct config *cfg, void *arg, struct config_errors *errs)
{
	(void)cfg, (void)arg, (void)errs;
	return -1;
}

static int after_fails(struct config *cfg, void *arg, struct config_errors *errs)
{
	char v[32];

	(void)arg, (void)errs;
	after_calls++;
	/* saved before the after step runs */
	CHECK(config_get(cfg, "smarthost.port", v, sizeof v) >= 0 && strcmp(v, "2525") == 0);
	CHECK(strstr(slurp(conf), "2525") != NULL);
	return -1;
}

static const char *const start_text = "# the office box\nmail-domain example.com\n"
	"[smarthost]\nhost smtp.example.com\nport 587\n";

static void reset(void)
{
	CHECK_EQ(fs_write_atomic(conf, start_text, strlen(start_text), 0644), 0);
}

static void t_config_ok(void)
{
	struct settings_config_ops ops = { set_port, NULL, NULL };
	struct config_errors errs;

	reset();
	CHECK_EQ(settings_config_edit(conf, &ops, "465", &errs), SETTINGS_OK);
	CHECK(strstr(slurp(conf), "port 465") != NULL);
	CHECK(strstr(buf, "# the office box") != NULL);   /* comments kept */
}

static void t_config_refused(void)
{
	struct settings_config_ops bad = { set_port, NULL, NULL };
	struct settings_config_ops check = { set_port, refuse, NULL };
	struct settings_config_ops after = { set_port, NULL, after_fails };
	struct config_errors errs;

	reset();
	CHECK_EQ(settings_config_edit(conf, &bad, "70000", &errs), SETTINGS_ECHANGE);
	CHECK(errs.count > 0);
	CHECK_STREQ(slurp(conf), start_text);
	CHECK_EQ(settings_config_edit(conf, &check, "2525", &errs), SETTINGS_ECHECK);
	CHECK_STREQ(slurp(conf), start_text);
	CHECK_EQ(settings_config_edit(conf, &after, "2525", &errs), SETTINGS_EAFTER);
	CHECK_EQ(after_calls, 1);
	CHECK_STREQ(slurp(conf), start_text);             /* restored */
}

static void t_config_invalid_file(void)
{
	struct settings_config_ops ops = { set_port, NULL, NULL };
	struct config_errors errs;
	const char *broken = "[smarthost]\nport seventy\n";

	CHECK_EQ(fs_write_atomic(conf, broken, strlen(broken), 0644), 0);
	CHECK_EQ(settings_config_edit(conf, &ops, "465", &errs), SETTINGS_ELOAD);
	CHECK(errs.count > 0);
	CHECK_STREQ(slurp(conf), broken);
	unlink(conf);   /* no file: an empty model, validated like any other */
	CHECK_EQ(settings_config_edit(conf, &ops, "465", &errs), SETTINGS_EVALID);
	CHECK(errs.count > 0);
	CHECK(access(conf, F_OK) != 0);                  /* nothing created */
}

static int add_bob(struct users_db *db, void *arg, char *err, size_t n)
{
	(void)arg;
	return users_add(db, "bob", USERS_ROLE_USER, "!", err, n);
}

static void t_users(void)
{
	char err[256];

	CHECK_EQ(fs_write_atomic(users, "", 0, 0640), 0);
	CHECK_EQ(settings_users_edit(users, add_bob, NULL, -1, err, sizeof err), SETTINGS_OK);
	CHECK(strstr(slurp(users), "bob") != NULL);
	/* a second add is refused with the library's message; file unchanged */
	static char before[CONFIG_FILE_MAX + 1];
	memcpy(before, buf, sizeof before);
	CHECK_EQ(settings_users_edit(users, add_bob, NULL, -1, err, sizeof err), SETTINGS_ECHANGE);
	CHECK(err[0] != '\0');
	CHECK_STREQ(slurp(users), before);
	CHECK(access(strcat(strcpy(err, users), ".lock"), F_OK) == 0);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	snprintf(conf, sizeof conf, "%s/postern.conf", dir);
	snprintf(users, sizeof users, "%s/users", dir);
	RUN(t_config_ok);
	RUN(t_config_refused);
	RUN(t_config_invalid_file);
	RUN(t_users);
	unlink(conf), unlink(users);
	strcat(strcpy(buf, conf), ".lock"), unlink(buf);
	strcat(strcpy(buf, users), ".lock"), unlink(buf);
	rmdir(dir);
	return check_done();
}
