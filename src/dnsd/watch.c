/*
 * watch.c - files other programs write for dnsd, watched with inotify on
 * their directories (the files come and go; a directory watch sees a file
 * created, rewritten in place or renamed over):
 *
 * - the WAN DHCP client's DNS servers (/run/postern/wan-dns, one address a
 *   line, written atomically): the upstreams when [dns] upstream is empty;
 * - BusyBox udhcpd's lease file (/run/postern/udhcpd.leases, rewritten in
 *   place at each new lease): host names become name.internal-domain, A
 *   and PTR, until the lease expires (a timer drops it then).
 *
 * A directory that does not exist yet is watched again every
 * DNSD_WATCH_RETRY_MS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "dnsd.h"
#include "fsutil.h"

#define WATCH_FILE_MAX 4096	/* bytes of the wan-dns file read */
#define WATCH_EVENTS_BUF 4096	/* inotify events read at once */
#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM)

/* ---- wan-dns ------------------------------------------------------------------ */

/* Parses "addr\n" lines; bad lines are skipped. Returns the count. */
static int parse_wan_dns(char *text, struct config_addr *out)
{
	int n = 0;
	for (char *save = NULL, *line = strtok_r(text, "\r\n", &save); line && n < CONFIG_ADDRS_MAX;
	     line = strtok_r(NULL, "\r\n", &save)) {
		line += strspn(line, " \t");
		line[strcspn(line, " \t#")] = 0;
		if (inet_pton(AF_INET, line, out[n].a) == 1)
			out[n++].family = AF_INET;
		else if (inet_pton(AF_INET6, line, out[n].a) == 1)
			out[n++].family = AF_INET6;
	}
	return n;
}

static void load_wan_dns(struct dnsd *d)
{
	static char text[WATCH_FILE_MAX + 1];
	ssize_t len = fs_read_file(d->wan_dns_path, text, WATCH_FILE_MAX);
	struct config_addr a[CONFIG_ADDRS_MAX];
	int n = len < 0 ? 0 : parse_wan_dns(text, a);
	if (len < 0 && errno != ENOENT)
		log_msg(LOG_WARNING, NULL, "%s: %s", d->wan_dns_path, strerror(errno));
	if (n == d->nwan_dns && memcmp(a, d->wan_dns, (size_t)n * sizeof a[0]) == 0)
		return;
	memcpy(d->wan_dns, a, (size_t)n * sizeof a[0]);
	d->nwan_dns = n;
	log_msg(LOG_INFO, NULL, "%s: %d DNS server(s) from the WAN", d->wan_dns_path, n);
	dnsd_set_upstreams(d);
}

/* ---- leases ------------------------------------------------------------------- */

static void arm_expiry(struct dnsd *d)
{
	int64_t first = 0, now = (int64_t)time(NULL);
	for (int i = 0; i < d->nleases; i++)
		if (d->leases[i].name[0] && (!first || d->leases[i].expires < first))
			first = d->leases[i].expires;
	evl_timer_stop(&d->loop, &d->lease_expiry);
	if (first)
		evl_timer_start(&d->loop, &d->lease_expiry,
			(first > now ? first - now : 0) * 1000 + 100, 0);
}

static void load_leases(struct dnsd *d)
{
	int n = leases_load(d->leases_path, (int64_t)time(NULL), d->leases, DNSD_LEASES_MAX);
	if (n < 0) {
		/* half-written (udhcpd truncates, then writes): the next
		 * IN_CLOSE_WRITE brings the whole file */
		log_msg(LOG_INFO, NULL, "%s: %s (keeping the previous leases)", d->leases_path,
			strerror(errno));
		return;
	}
	d->nleases = n;
	if (dnsd_rebuild_zone(d, d->cfg) == 0)
		log_msg(LOG_INFO, NULL, "%s: %d lease(s)", d->leases_path, n);
	arm_expiry(d);
}

static void on_lease_expiry(struct evloop *l, struct evl_timer *t)
{
	struct dnsd *d = t->ctx;
	(void)l;
	load_leases(d);		/* leases_parse drops the expired ones */
}

/* ---- inotify ------------------------------------------------------------------ */

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* Watches the directory of path. Returns 0 or -1. */
static int watch_dir(struct dnsd *d, const char *path)
{
	char dir[PATH_MAX];
	const char *s = strrchr(path, '/');
	size_t n = s ? (size_t)(s - path) : 1;
	if (n == 0)
		n = 1;	/* "/file": the root */
	if (n >= sizeof dir)
		return -1;
	memcpy(dir, s ? path : ".", n);
	dir[n] = 0;
	return inotify_add_watch(d->ino_fd, dir, WATCH_MASK | IN_ONLYDIR) < 0 ? -1 : 0;
}

static void on_inotify(struct evloop *l, struct evl_io *io, unsigned events)
{
	struct dnsd *d = io->ctx;
	char buf[WATCH_EVENTS_BUF] __attribute__((aligned(__alignof__(struct inotify_event))));
	int wan = 0, leases = 0;
	(void)l;
	(void)events;
	ssize_t n;
	while ((n = read(d->ino_fd, buf, sizeof buf)) > 0)
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *e = (const void *)p;
			if (e->len && strcmp(e->name, base_name(d->wan_dns_path)) == 0)
				wan = 1;
			if (e->len && strcmp(e->name, base_name(d->leases_path)) == 0 &&
			    !(e->mask & IN_CREATE))	/* created empty: wait for the write */
				leases = 1;
			if (e->mask & IN_Q_OVERFLOW)
				wan = leases = 1;
			p += sizeof *e + e->len;
		}
	if (wan)
		load_wan_dns(d);
	if (leases)
		load_leases(d);
}

static void on_retry(struct evloop *l, struct evl_timer *t)
{
	struct dnsd *d = t->ctx;
	int ok = watch_dir(d, d->wan_dns_path) == 0 && watch_dir(d, d->leases_path) == 0;
	if (!ok) {	/* no directory yet, so no file either */
		evl_timer_start(l, t, DNSD_WATCH_RETRY_MS, 0);
		return;
	}
	load_wan_dns(d);
	load_leases(d);
}

int watch_open(struct dnsd *d)
{
	d->leases = calloc(DNSD_LEASES_MAX, sizeof *d->leases);
	d->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (!d->leases || d->ino_fd < 0)
		return -1;
	evl_io_init(&d->ino_io, d->ino_fd, on_inotify, d);
	evl_timer_init(&d->ino_retry, on_retry, d);
	evl_timer_init(&d->lease_expiry, on_lease_expiry, d);
	if (evl_io_set(&d->loop, &d->ino_io, EVL_READ) < 0)
		return -1;
	on_retry(&d->loop, &d->ino_retry);
	return 0;
}

void watch_close(struct dnsd *d)
{
	if (d->ino_fd >= 0) {
		evl_io_del(&d->loop, &d->ino_io);
		close(d->ino_fd);
		d->ino_fd = -1;
	}
	evl_timer_stop(&d->loop, &d->ino_retry);
	evl_timer_stop(&d->loop, &d->lease_expiry);
	free(d->leases);
	d->leases = NULL;
}
