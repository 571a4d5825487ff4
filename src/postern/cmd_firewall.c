/*
 * cmd_firewall.c - `postern firewall show|check|apply|blocked|env`
 * (docs/firewall.md).
 *
 *   show [--defaults] [FILE]    the IPv4 and IPv6 rule sets generated from
 *                               the configuration; in single-interface mode
 *                               also the rules for the office router
 *   check [--defaults] [FILE]   generate and run `iptables-restore --test`
 *   apply [--defaults] [FILE]   check, then load atomically: a failure at
 *                               any step leaves the previous rules in force;
 *                               the loaded rules are saved to
 *                               $POSTERN_FIREWALL_DIR/firewall.rules and
 *                               firewall6.rules (default /run/postern).
 *                               When no rule set of ours is in force (at
 *                               boot), a failure loads the fallback rule
 *                               set, or at worst sets DROP policies
 *                               (fail closed), says so loudly and records
 *                               it ($POSTERN_STATUS_DIR/firewall-rules)
 *   blocked                     blocked attempts per LAN host (counters)
 *   env [--defaults] [FILE]     the network settings as shell assignments
 *                               for the boot scripts
 *
 * Without a configuration file (an unconfigured box) or with --defaults the
 * built-in defaults are used, with the LAN as the bridge br-lan over every
 * port but the WAN. The tools are $POSTERN_IPTABLES-restore / -save
 * (default iptables) and $POSTERN_IP6TABLES-... (default ip6tables).
 * Exit status: 0, 1 usage or invalid configuration / rule set, 111 the
 * tools could not be run.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cmds.h"
#include "config.h"
#include "firewall.h"
#include "fsutil.h"
#include "status.h"

#define FW_STATE_DIR     "/run/postern"
#define FW_TOOL_OUT_MAX  (512 * 1024)    /* bytes kept of a tool's output */
#define FW_TOOL_NAME_MAX 256
#define FW_COUNTS_MAX    (FW_COUNT_HOSTS_MAX + 2)
#define FW_DEFAULT_BRIDGE "br-lan"
#define FW_ARGS_MAX      8               /* words of one last-resort command */
#define FW_WORDS_MAX     64              /* bytes of one last-resort command */

static const char fw_usage[] =
	"usage: postern firewall show|check|apply|env [--defaults] [FILE]\n"
	"       postern firewall blocked\n";

/* The rule sets of both families, generated once per command. */
struct ruleset {
	char v4[FW_RULES_MAX], v6[FW_RULES_MAX];
	int n4, n6;
};

static struct ruleset rs;            /* large: static, not on the stack */
static char tool_out[FW_TOOL_OUT_MAX];
static int tool_out_full;            /* tool_out was cut at FW_TOOL_OUT_MAX */
static char saved4[FW_TOOL_OUT_MAX], saved6[FW_TOOL_OUT_MAX];
static char first_err[FW_ERR_MAX];   /* the first failure of this apply */

/* Keeps the first line of the first failure, for the status record. */
static void note_err(const char *prefix, const char *text)
{
	if (!first_err[0])
		snprintf(first_err, sizeof first_err, "%s%.*s", prefix,
		         (int)strcspn(text, "\n"), text);
}

/* ---- the model ---------------------------------------------------------- */

/* The configuration at path, or the defaults of an unconfigured box when
 * the file does not exist or defaults is set. NULL after printing errors. */
static struct config *load_model(const char *path, int defaults, int *configured)
{
	static struct config_errors errs;
	struct config *cfg;
	struct stat st;

	*configured = 0;
	if (defaults || (stat(path, &st) < 0 && errno == ENOENT)) {
		cfg = config_new();
		if (cfg)
			snprintf(cfg->lan.interface, sizeof cfg->lan.interface, "%s", FW_DEFAULT_BRIDGE);
		else
			fprintf(stderr, "postern firewall: out of memory\n");
		return cfg;
	}
	cfg = config_load(path, &errs);
	if (!cfg) {
		for (int i = 0; i < errs.count; i++)
			fprintf(stderr, "%s\n", errs.e[i].text);
		fprintf(stderr, "postern firewall: %s is invalid\n", path);
		return NULL;
	}
	*configured = 1;
	return cfg;
}

static int generate(const struct config *cfg)
{
	char err[FW_ERR_MAX];

	rs.n4 = firewall_rules(cfg, FW_IPV4, rs.v4, sizeof rs.v4, err, sizeof err);
	if (rs.n4 >= 0)
		rs.n6 = firewall_rules(cfg, FW_IPV6, rs.v6, sizeof rs.v6, err, sizeof err);
	if (rs.n4 < 0 || rs.n6 < 0) {
		fprintf(stderr, "postern firewall: %s\n", err);
		note_err("", err);
		return -1;
	}
	return 0;
}

/* ---- running iptables-restore / -save ------------------------------------ */

/* "iptables-restore": the tool's name, suffix NULL for the tool itself. */
static void tool_name(char *buf, size_t cap, int family, const char *suffix)
{
	const char *env = getenv(family == FW_IPV4 ? "POSTERN_IPTABLES" : "POSTERN_IP6TABLES");
	const char *base = env && *env ? env : family == FW_IPV4 ? "iptables" : "ip6tables";

	snprintf(buf, cap, "%s%s%s", base, suffix ? "-" : "", suffix ? suffix : "");
}

static void child(int in, int out, char **argv)
{
	dup2(in, 0);
	dup2(out, 1);
	dup2(out, 2);
	execvp(argv[0], argv);
	fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Reads what the child wrote (a temp file, so it never blocks) into
 * tool_out, NUL-terminated. */
static void collect(FILE *f)
{
	size_t n;

	rewind(f);
	n = fread(tool_out, 1, sizeof tool_out - 1, f);
	tool_out[n] = '\0';
	tool_out_full = n == sizeof tool_out - 1 && fgetc(f) != EOF;
	fclose(f);
}

/* Runs argv with input on its stdin; stdout and stderr land in tool_out.
 * Returns its exit status, or -1 when it could not be started. */
static int run_tool(char **argv, const char *input, size_t len)
{
	int p[2], st;
	FILE *f = tmpfile();
	pid_t pid;

	tool_out[0] = '\0';
	if (!f || pipe2(p, O_CLOEXEC) < 0) {
		if (f)
			fclose(f);
		return -1;
	}
	pid = fork();
	if (pid == 0)
		child(p[0], fileno(f), argv);
	close(p[0]);
	for (size_t off = 0; pid > 0 && off < len;) {
		ssize_t w = write(p[1], input + off, len - off);
		if (w <= 0 && errno != EINTR)
			break;       /* the tool stopped reading: its status says why */
		off += w > 0 ? (size_t)w : 0;
	}
	close(p[1]);
	if (pid < 0 || waitpid(pid, &st, 0) < 0) {
		fclose(f);
		return -1;
	}
	collect(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int restore(int family, const char *rules, size_t len, int test)
{
	char name[FW_TOOL_NAME_MAX];
	char *argv[] = { name, test ? "--test" : NULL, NULL };

	tool_name(name, sizeof name, family, "restore");
	return run_tool(argv, rules, len);
}

static const char *fam_name(int family)
{
	return family == FW_IPV4 ? "IPv4" : "IPv6";
}

/* The tables in force now (iptables-save), into out; "" when it fails. */
static void save_current(int family, char *out, size_t cap)
{
	char name[FW_TOOL_NAME_MAX];
	char *argv[] = { name, NULL };

	tool_name(name, sizeof name, family, "save");
	out[0] = '\0';
	if (run_tool(argv, "", 0) != 0 || tool_out_full) {
		fprintf(stderr, "postern firewall: cannot save the %s rules in force: "
		        "no roll-back possible\n", fam_name(family));
		return;
	}
	snprintf(out, cap, "%s", tool_out);
}

static void report_tool(int family, const char *what, int rc)
{
	fprintf(stderr, "postern firewall: %s %s failed (%s%d)%s", fam_name(family), what,
	        rc < 0 ? "not started, " : "status ", rc, tool_out[0] ? ":\n" : "\n");
	fputs(tool_out, stderr);
	if (!first_err[0]) {
		char pre[96];
		snprintf(pre, sizeof pre, "%s %s failed: ", fam_name(family), what);
		note_err(pre, tool_out[0] ? tool_out : "no output");
	}
}

static int test_both(void)
{
	int rc = restore(FW_IPV4, rs.v4, (size_t)rs.n4, 1);

	if (rc != 0) {
		report_tool(FW_IPV4, "rule set check", rc);
		return rc < 0 ? 111 : 1;
	}
	rc = restore(FW_IPV6, rs.v6, (size_t)rs.n6, 1);
	if (rc != 0) {
		report_tool(FW_IPV6, "rule set check", rc);
		return rc < 0 ? 111 : 1;
	}
	return 0;
}

/* Puts the saved tables back after a failed load. */
static void roll_back(int family, const char *saved)
{
	int rc;

	if (!saved[0])
		return;
	rc = restore(family, saved, strlen(saved), 0);
	if (rc != 0)
		report_tool(family, "restoring the previous rules", rc);
	else
		fprintf(stderr, "postern firewall: the previous %s rules stay in force\n",
		        fam_name(family));
}

static int load_both(void)
{
	int rc;

	save_current(FW_IPV4, saved4, sizeof saved4);
	save_current(FW_IPV6, saved6, sizeof saved6);
	rc = restore(FW_IPV4, rs.v4, (size_t)rs.n4, 0);
	if (rc != 0) {
		report_tool(FW_IPV4, "load", rc);
		roll_back(FW_IPV4, saved4);
		return rc < 0 ? 111 : 1;
	}
	rc = restore(FW_IPV6, rs.v6, (size_t)rs.n6, 0);
	if (rc != 0) {
		report_tool(FW_IPV6, "load", rc);
		roll_back(FW_IPV6, saved6);
		roll_back(FW_IPV4, saved4);
		return rc < 0 ? 111 : 1;
	}
	return 0;
}

static void save_state(void)
{
	const char *dir = getenv("POSTERN_FIREWALL_DIR");
	char p4[512], p6[512];

	if (!dir || !*dir)
		dir = FW_STATE_DIR;
	snprintf(p4, sizeof p4, "%s/firewall.rules", dir);
	snprintf(p6, sizeof p6, "%s/firewall6.rules", dir);
	if (fs_write_atomic(p4, rs.v4, (size_t)rs.n4, 0644) < 0 ||
	    fs_write_atomic(p6, rs.v6, (size_t)rs.n6, 0644) < 0)
		fprintf(stderr, "postern firewall: cannot save the rules under %s: %s\n",
		        dir, strerror(errno));
}

/* ---- failing closed --------------------------------------------------------- */

/* How far the fallback had to go (docs/firewall.md "Fallback"). */
enum fb_level { FB_NONE, FB_LAN, FB_CLOSED, FB_POLICY, FB_OPEN };

static const char *const fb_words[] = {
	[FB_NONE] = "",
	[FB_LAN] = "the fallback rule set is in force: from the LAN only the admin page, DNS "
	           "and DHCP; nothing forwarded; nothing from the WAN but replies",
	[FB_CLOSED] = "the fallback rule set without interface names is in force: nothing "
	              "reaches the box but replies, not even the admin page; nothing forwarded",
	[FB_POLICY] = "even the fallback rule set failed: the INPUT and FORWARD policies are "
	              "DROP, nothing reaches the box",
	[FB_OPEN] = "even the DROP policies could not be set: the box may be UNPROTECTED",
};

/* The last resort, plain iptables commands that need no module: the
 * policies first (that closes the box), then stale rules out, loopback in. */
static const char *const last_resort[] = {
	"-P INPUT DROP", "-P FORWARD DROP", "-F INPUT", "-F FORWARD", "-A INPUT -i lo -j ACCEPT",
};
#define FW_LAST_RESORT_POLICIES 2    /* the first entries that must succeed */

/* 1 when a rule set of ours (a chain postern-*) is in family's filter table. */
static int ours_in_force(int family)
{
	static char cur[FW_TOOL_OUT_MAX];

	save_current(family, cur, sizeof cur);
	return strstr(cur, "\n:postern-") != NULL;
}

static int run_words(int family, const char *words)
{
	char name[FW_TOOL_NAME_MAX], copy[FW_WORDS_MAX], *argv[FW_ARGS_MAX + 1], *save = NULL;
	int n = 0;

	tool_name(name, sizeof name, family, NULL);
	snprintf(copy, sizeof copy, "%s", words);
	argv[n++] = name;
	for (char *w = strtok_r(copy, " ", &save); w && n < FW_ARGS_MAX; w = strtok_r(NULL, " ", &save))
		argv[n++] = w;
	argv[n] = NULL;
	return run_tool(argv, "", 0);
}

static int drop_policies(int family)
{
	int ok = 1;

	for (size_t i = 0; i < sizeof last_resort / sizeof last_resort[0]; i++) {
		int rc = run_words(family, last_resort[i]);
		if (rc != 0) {
			report_tool(family, last_resort[i], rc);
			if (i < FW_LAST_RESORT_POLICIES)
				ok = 0;
		}
	}
	return ok ? FB_POLICY : FB_OPEN;
}

/* Loads the fallback for family: with the LAN's name, without names, and
 * at last the DROP policies. Returns the enum fb_level reached. */
static int load_fallback(int family, const char *lan)
{
	static char text[FW_RULES_MAX];
	const char *forms[] = { lan, NULL };

	for (int i = lan ? 0 : 1; i < 2; i++) {
		int n = firewall_fallback_rules(family, forms[i], text, sizeof text);
		int rc = n < 0 ? -1 : restore(family, text, (size_t)n, 0);
		if (rc == 0)
			return forms[i] ? FB_LAN : FB_CLOSED;
		report_tool(family, forms[i] ? "fallback load" : "fallback load without names", rc);
	}
	return drop_policies(family);
}

/* The LAN's name for the fallback, NULL when it would open the WAN too (in
 * router mode WAN and LAN on one port) or is not a plain name. */
static const char *fallback_lan_if(const struct config *cfg)
{
	const char *lan = firewall_lan_if(cfg);

	if (!cfg->firewall.single_interface && strcmp(lan, cfg->wan.interface) == 0)
		return NULL;
	return firewall_ifname_ok(lan) ? lan : NULL;
}

static void record(int result, const char *detail)
{
	const char *dir = status_dir();

	if (status_dir_init(dir) < 0 ||
	    status_record(dir, FW_STATUS_KIND, FW_STATUS_NAME, (int64_t)time(NULL), result, 0,
	                  detail) < 0)
		fprintf(stderr, "postern firewall: cannot write the status record under %s: %s\n",
		        dir, strerror(errno));
}

/* Loud: stderr (the console at boot, the page otherwise), syslog, and the
 * status record the dashboard's "firewall" alert reads. */
static void announce(int level)
{
	char detail[STATUS_DETAIL_MAX + 1];

	snprintf(detail, sizeof detail, "%s (%s)", fb_words[level],
	         first_err[0] ? first_err : "no rule set");
	fprintf(stderr, "postern firewall: FALLBACK: the rule set could not be loaded and no "
	        "previous one was in force: %s\n", detail);
	openlog("postern", LOG_PID, LOG_DAEMON);
	syslog(LOG_CRIT, "firewall FALLBACK: %s", detail);
	closelog();
	record(STATUS_FAILED, detail);
}

/* After a failed apply: every family with no rule set of ours in force
 * gets the fallback (fail closed). Returns the worst enum fb_level. */
static int fail_closed(const struct config *cfg)
{
	static const int fams[] = { FW_IPV4, FW_IPV6 };
	int worst = FB_NONE;

	for (int i = 0; i < 2; i++) {
		int level = ours_in_force(fams[i]) ? FB_NONE : load_fallback(fams[i], fallback_lan_if(cfg));
		worst = level > worst ? level : worst;
	}
	if (worst != FB_NONE)
		announce(worst);
	return worst;
}

/* ---- subcommands ---------------------------------------------------------- */

static int do_show(const struct config *cfg, int configured)
{
	(void)configured;
	static char office[FW_RULES_MAX];
	char err[FW_ERR_MAX];

	if (generate(cfg) < 0)
		return 1;
	printf("# ---- IPv4 (iptables-restore) ----\n%s", rs.v4);
	printf("# ---- IPv6 (ip6tables-restore) ----\n%s", rs.v6);
	if (!cfg->firewall.single_interface)
		return 0;
	if (firewall_office_rules(cfg, office, sizeof office, err, sizeof err) < 0) {
		fprintf(stderr, "postern firewall: %s\n", err);
		return 1;
	}
	printf("# ---- single-interface mode: for the office router ----\n%s", office);
	return 0;
}

static int do_check(const struct config *cfg, int configured)
{
	(void)configured;
	int rc;

	if (generate(cfg) < 0)
		return 1;
	rc = test_both();
	if (rc == 0)
		printf("firewall: rule set ok (%d + %d bytes)\n", rs.n4, rs.n6);
	return rc;
}

static int do_apply(const struct config *cfg, int configured)
{
	(void)configured;
	const char *mode = cfg->firewall.single_interface ? "single-interface" : "router";
	char detail[64];
	int rc = generate(cfg) < 0 ? 1 : test_both(), loaded = 0;

	if (rc == 0) {
		rc = load_both();
		loaded = 1;
	}
	if (rc != 0) {
		if (fail_closed(cfg) == FB_NONE && !loaded)
			fprintf(stderr, "postern firewall: nothing changed: the previous rules stay in force\n");
		return rc;
	}
	save_state();
	snprintf(detail, sizeof detail, "applied (%s mode)", mode);
	record(STATUS_OK, detail);
	printf("firewall: %s\n", detail);
	return 0;
}

static int print_counts(int family)
{
	static struct fw_count c[FW_COUNTS_MAX];
	char name[FW_TOOL_NAME_MAX];
	char *argv[] = { name, "-c", "-t", "filter", NULL };
	int rc, n;

	tool_name(name, sizeof name, family, "save");
	rc = run_tool(argv, "", 0);
	if (rc != 0) {
		report_tool(family, "reading the counters", rc);
		return 111;
	}
	n = firewall_parse_counts(tool_out, c, FW_COUNTS_MAX);
	for (int i = 0; i < n; i++)
		printf("%-40s %llu\n", c[i].host, c[i].packets);
	return 0;
}

static int do_blocked(void)
{
	int rc;

	printf("%-40s %s\n", "LAN host", "blocked attempts");
	rc = print_counts(FW_IPV4);
	return rc ? rc : print_counts(FW_IPV6);
}

static void env_addr(const char *name, const struct config_addr *a)
{
	char s[64];

	printf("%s='%s'\n", name, a->family ? config_addr_str(a, s, sizeof s) : "");
}

static void env_wan(const struct config *cfg)
{
	const struct config_wan *w = &cfg->wan;
	char s[64];

	printf("POSTERN_WAN_IF='%s'\n", w->interface);
	printf("POSTERN_WAN_MODE='%s'\n", w->mode == CONFIG_WAN_STATIC ? "static" : "dhcp");
	env_addr("POSTERN_WAN_ADDR", &w->address.addr);
	printf("POSTERN_WAN_PREFIX='%d'\n", w->address.len);
	env_addr("POSTERN_WAN_GW", &w->gateway);
	printf("POSTERN_WAN_DNS='");
	for (int i = 0; i < w->ndns; i++)
		printf("%s%s", i ? " " : "", config_addr_str(&w->dns[i], s, sizeof s));
	printf("'\n");
}

static void env_lan(const struct config *cfg, int configured)
{
	const struct config_lan *l = &cfg->lan;
	struct config_range r;
	char s[64];
	unsigned mask = l->address.len ? 0xffffffffu << (32 - l->address.len) : 0;

	printf("POSTERN_LAN_IF='%s'\n", l->interface);
	/* "*": every port but the WAN (an unconfigured box). */
	printf("POSTERN_LAN_PORTS='%s", configured ? "" : "*");
	for (int i = 0; configured && i < l->nbridge_ports; i++)
		printf("%s%s", i ? " " : "", l->bridge_ports[i]);
	printf("'\n");
	env_addr("POSTERN_LAN_ADDR", &l->address.addr);
	printf("POSTERN_LAN_PREFIX='%d'\n", l->address.len);
	printf("POSTERN_LAN_NETMASK='%u.%u.%u.%u'\n", mask >> 24, mask >> 16 & 255,
	       mask >> 8 & 255, mask & 255);
	if (l->address6.addr.family)
		printf("POSTERN_LAN_ADDR6='%s/%d'\n",
		       config_addr_str(&l->address6.addr, s, sizeof s), l->address6.len);
	else
		printf("POSTERN_LAN_ADDR6=''\n");
	env_addr("POSTERN_LAN_GW", &l->gateway);
	/* Behind another router, that router serves DHCP: two servers on one
	 * segment would hand out conflicting leases. */
	printf("POSTERN_DHCP='%s'\n", l->dhcp && !cfg->firewall.single_interface ? "yes" : "no");
	if (config_dhcp_range(cfg, &r) == 0) {
		env_addr("POSTERN_DHCP_START", &r.first);
		env_addr("POSTERN_DHCP_END", &r.last);
	}
	printf("POSTERN_DHCP_LEASE='%u'\n", l->dhcp_lease);
}

static int do_env(const struct config *cfg, int configured)
{
	printf("POSTERN_CONFIGURED='%s'\n", configured ? "yes" : "no");
	printf("POSTERN_NET_MODE='%s'\n", cfg->firewall.single_interface ? "single" : "router");
	printf("POSTERN_DOMAIN='%s'\n", cfg->global.internal_domain);
	env_wan(cfg);
	env_lan(cfg, configured);
	return 0;
}

struct fw_sub {
	const char *name;
	int (*run)(const struct config *cfg, int configured);
};

static const struct fw_sub fw_subs[] = {
	{ "show", do_show }, { "check", do_check }, { "apply", do_apply }, { "env", do_env },
};

static const struct fw_sub *find_sub(const char *name)
{
	for (size_t i = 0; i < sizeof fw_subs / sizeof fw_subs[0]; i++)
		if (strcmp(name, fw_subs[i].name) == 0)
			return &fw_subs[i];
	return NULL;
}

int cmd_firewall(int argc, char **argv)
{
	const struct fw_sub *sub = argc > 1 ? find_sub(argv[1]) : NULL;
	int defaults = argc > 2 && strcmp(argv[2], "--defaults") == 0;
	int rest = argc - 2 - defaults, configured, rc;
	struct config *cfg;

	if (argc == 2 && strcmp(argv[1], "blocked") == 0)
		return do_blocked();
	if (!sub || rest > 1 || (rest == 1 && argv[argc - 1][0] == '-')) {
		fputs(fw_usage, stderr);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	cfg = load_model(postern_conf_path(rest == 1 ? argv[argc - 1] : NULL), defaults, &configured);
	if (!cfg)
		return 1;
	rc = sub->run(cfg, configured);
	config_free(cfg);
	return rc;
}
