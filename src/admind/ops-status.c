/*
 * ops-status.c - admind's read-only operations for the dashboard
 * (docs/web.md): blocked firewall attempts per LAN host and per server
 * port, and the alerts (src/lib/alerts.h, the same rules that mail the
 * admins). Registered in ops.c's table.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admind.h"
#include "alerts.h"
#include "firewall.h"
#include "fsutil.h"
#include "status.h"

#define ADM_TOOL_OUT_MAX (1024 * 1024)   /* bytes of iptables-save output read */
#define ADM_TOOL_TIMEOUT_MS 10000        /* iptables-save must answer within */
#define ADM_FW_HOSTS_MAX (FW_COUNT_HOSTS_MAX + 2)
#define ADM_FW_DESTS_MAX 200             /* (host, server, port) rows answered */
#define ADM_TOOL_NAME_MAX 256

/* $POSTERN_IPTABLES-save (or ip6tables), as `postern firewall` names it. */
static void save_tool(char *buf, size_t cap, int family)
{
	const char *env = getenv(family == FW_IPV4 ? "POSTERN_IPTABLES" : "POSTERN_IP6TABLES");
	const char *base = env && *env ? env : family == FW_IPV4 ? "iptables" : "ip6tables";

	snprintf(buf, cap, "%s-save", base);
}

/* Reads fd into out (cap bytes, NUL-terminated) until EOF or the deadline. */
static size_t read_until(int fd, char *out, size_t cap, int64_t deadline_ms)
{
	size_t n = 0;

	for (;;) {
		struct timespec ts;
		struct pollfd p = { fd, POLLIN, 0 };
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int64_t left = deadline_ms - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		ssize_t r = read(fd, out + n, cap - 1 - n);
		if (r <= 0 || (n += (size_t)r) >= cap - 1)
			break;
	}
	out[n] = '\0';
	return n;
}

/* `TOOL -c -t filter` into out; 0, or -1 when it could not be run or failed. */
static int run_save(int family, char *out, size_t cap)
{
	char name[ADM_TOOL_NAME_MAX];
	struct timespec ts;
	int p[2], st = 0;
	pid_t pid;

	save_tool(name, sizeof name, family);
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0), dup2(p[1], 1), dup2(null, 2);
		execlp(name, name, "-c", "-t", "filter", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (pid > 0)
		read_until(p[0], out, cap, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
			   ADM_TOOL_TIMEOUT_MS);
	close(p[0]);
	if (pid < 0)
		return -1;
	kill(pid, SIGKILL);   /* done or too slow: either way it ends now */
	waitpid(pid, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void put_counts(struct adm_req *r, int family, int *failed)
{
	static char text[ADM_TOOL_OUT_MAX];
	static struct fw_count c[ADM_FW_HOSTS_MAX];
	int n;

	if (run_save(family, text, sizeof text) < 0) {
		(*failed)++;
		return;
	}
	n = firewall_parse_counts(text, c, ADM_FW_HOSTS_MAX);
	for (int i = 0; i < n; i++)
		fprintf(r->out, "host %s %llu\n", c[i].host, c[i].packets);
}

/*
 * blocked: the firewall's per-host counters (both families) as
 * "host ADDR PACKETS" lines, then what the rate-limited log says about
 * where they went, "dest SRC DST PROTO PORT COUNT [TIME]" lines, and
 * "counters unavailable" when iptables-save could not be read (the page
 * then still shows the log's part).
 */
void adm_op_blocked(struct adm_req *r)
{
	static char text[ADM_LOG_READ_MAX + 1];
	static struct status_blocked b[ADM_FW_DESTS_MAX];
	int failed = 0, n;
	size_t len;

	fputs("ok\n", r->out);
	put_counts(r, FW_IPV4, &failed);
	put_counts(r, FW_IPV6, &failed);
	if (failed == 2)
		fputs("counters unavailable\n", r->out);
	len = adm_read_log_tail(r->o->log, text);
	n = status_blocked_parse(text, len, b, ADM_FW_DESTS_MAX);
	for (int i = 0; i < n; i++)
		fprintf(r->out, "dest %s %s %s %u %llu %s\n", b[i].src, b[i].dst, b[i].proto,
			b[i].port, b[i].count, b[i].last);
}

/* alerts: the alerts in force, "KEY\tTEXT" lines: the same rules and
 * measurements as `postern alerts check` (alerts.h), so the dashboard and
 * the mails agree. Root reads what the web user may not (the queue, the
 * certificate, runit's state). */
void adm_op_alerts(struct adm_req *r)
{
	static struct alert_facts f;
	static struct alert a[ALERT_MAX];
	char cert[ADM_TOOL_NAME_MAX * 4];
	struct alert_paths p = { r->o->mail, r->o->queue, r->o->conf, status_dir(), cert,
				 r->o->service_dir };
	int n;

	snprintf(cert, sizeof cert, "%s/server.pem", r->o->tls_dir);
	alerts_gather(&p, (int64_t)time(NULL), &f);
	n = alerts_eval(&f, a, ALERT_MAX);
	fputs("ok\n", r->out);
	for (int i = 0; i < n; i++)
		fprintf(r->out, "%s\t%s\n", a[i].key, a[i].text);
}
