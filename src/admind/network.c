/*
 * network.c - LAN/WAN/firewall changes applied to the running box without
 * a reboot (docs/web.md "Network changes"). admind runs the boot script
 * rootfs/usr/libexec/postern/network in two steps of the configuration
 * transaction (settings.h):
 *   check: before the file is saved, `network --check CANDIDATE`: the new
 *          configuration and its firewall rule set (iptables-restore
 *          --test); a refusal leaves everything as it was;
 *   after: once saved (the lock still held), `network --apply`: new LAN
 *          address next to the old, firewall loaded, old address removed,
 *          udhcpd, dnsd and the daemons bound to the LAN address
 *          restarted. When it fails, the script has undone its own steps
 *          and settings_config_edit puts the previous file back.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "admind.h"
#include "config.h"
#include "fsutil.h"

#define ADM_NET_OUT_MAX 2048      /* bytes of the script's output kept */
#define ADM_NET_TIMEOUT_S 45      /* the script's deadline (below the CGI's 60 s) */

/* Settings whose change must reach the interfaces, udhcpd or the firewall. */
static const char *const net_prefixes[] = { "lan.", "wan.", "firewall.", "internal-domain" };

int adm_network_keys(char *const *kv, int n, int step)
{
	for (int i = 0; i < n; i += step)
		for (size_t k = 0; k < sizeof net_prefixes / sizeof net_prefixes[0]; k++)
			if (strncmp(kv[i], net_prefixes[k], strlen(net_prefixes[k])) == 0)
				return 1;
	return 0;
}

/* Reads the child's output until it exits (its own children may hold the
 * pipe open) or the deadline. Returns 0 with *st set, or -1 on timeout. */
static int collect(pid_t pid, int fd, char *out, size_t cap, int *st)
{
	time_t deadline = time(NULL) + ADM_NET_TIMEOUT_S;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t len = 0;
	int done = 0;

	while (!done && time(NULL) < deadline) {
		int ready = poll(&p, 1, 200);
		done = waitpid(pid, st, WNOHANG) == pid;
		while (ready > 0 || done) {   /* after exit: drain what is left */
			char tmp[512];
			ssize_t n = read(fd, tmp, sizeof tmp);
			if (n <= 0)
				break;
			for (ssize_t i = 0; i < n && len + 1 < cap; i++)
				out[len++] = tmp[i];
			ready = poll(&p, 1, 0);
			if (ready <= 0 && !done)
				break;
		}
	}
	out[len] = '\0';
	while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' '))
		out[--len] = '\0';
	return done ? 0 : -1;
}

/* Runs the network script with a1 [a2]; stdout+stderr into out. Returns its
 * exit status, or -1 when it could not run or timed out (then killed). */
static int run_network(const char *prog, const char *a1, const char *a2, char *out, size_t cap)
{
	int pfd[2], st = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1), dup2(pfd[1], 2);
		setsid();   /* its own group: a timeout kills it and its children */
		execl(prog, prog, a1, a2, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	if (pid < 0) {
		close(pfd[0]);
		return -1;
	}
	if (collect(pid, pfd[0], out, cap, &st) < 0) {
		kill(-pid, SIGKILL);
		waitpid(pid, &st, 0);
		snprintf(out, cap, "the network script did not finish in %d s", ADM_NET_TIMEOUT_S);
		close(pfd[0]);
		return -1;
	}
	close(pfd[0]);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The script's last line without its "network: " tag (the reason). */
static const char *reason(char *out)
{
	char *nl = strrchr(out, '\n');
	char *s = nl ? nl + 1 : out;

	if (strncmp(s, "network: ", 9) == 0)
		s += 9;
	return *s ? s : "the network script failed";
}

int adm_network_present(const struct adm_opts *o)
{
	return o->network && *o->network && access(o->network, X_OK) == 0;
}

int adm_network_check(struct adm_req *r, struct config *cfg)
{
	static char text[CONFIG_FILE_MAX];
	char cand[ADM_PATH_MAX], out[ADM_NET_OUT_MAX];
	int n = config_format(cfg, text, sizeof text), rc;

	if (snprintf(cand, sizeof cand, "%s.check", r->o->conf) >= (int)sizeof cand ||
	    n < 0 || (size_t)n >= sizeof text ||
	    fs_write_atomic(cand, text, (size_t)n, 0644) < 0) {
		adm_error(r, "-", "cannot write the candidate configuration");
		return -1;
	}
	rc = run_network(r->o->network, "--check", cand, out, sizeof out);
	unlink(cand);
	if (rc != 0) {
		adm_error(r, "-", reason(out));
		return -1;
	}
	return 0;
}

int adm_network_apply(struct adm_req *r)
{
	char out[ADM_NET_OUT_MAX];
	int rc = run_network(r->o->network, "--apply", NULL, out, sizeof out);

	if (rc != 0) {
		syslog(LOG_ERR, "network change not applied: %s", out);
		adm_error(r, "-", reason(out));
		return -1;
	}
	syslog(LOG_NOTICE, "network change applied from the web page");
	return 0;
}
