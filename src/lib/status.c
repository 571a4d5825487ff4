/*
 * status.c - status records of the daemons (status.h): format, bounded
 * parse, atomic write, list.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "status.h"

#define STATUS_PATH_MAX 1024
#define STATUS_NUM_MAX 4102444800LL   /* 2100-01-01: larger times are refused */
#define STATUS_COUNT_MAX 100000000LL  /* fetched, failures */

static const struct {
	const char *token, *text;
} results[STATUS_NRESULTS] = {
	[STATUS_OK] = { "ok", "fetched" },
	[STATUS_UNREACHABLE] = { "unreachable", "server unreachable" },
	[STATUS_TLS_PIN] = { "tls-pin", "certificate does not match the pin" },
	[STATUS_TLS_NAME] = { "tls-name", "certificate is for another server name" },
	[STATUS_TLS_CA] = { "tls-ca", "certificate not trusted or expired" },
	[STATUS_TLS] = { "tls", "secure connection failed" },
	[STATUS_NO_STLS] = { "no-stls", "server offers no secure connection" },
	[STATUS_LOGIN] = { "login", "wrong user name or password" },
	[STATUS_PASSWORD] = { "password", "no password stored on the box" },
	[STATUS_DISK_FULL] = { "disk-full", "data disk full" },
	[STATUS_DELIVERY] = { "delivery", "delivery into the mailboxes failed" },
	[STATUS_PROTOCOL] = { "protocol", "server broke off the conversation" },
	[STATUS_FAILED] = { "failed", "failed" },
};

const char *status_dir(void)
{
	const char *d = getenv("POSTERN_STATUS_DIR");

	return d && *d ? d : STATUS_DIR_DEFAULT;
}

const char *status_result_token(int result)
{
	return result >= 0 && result < STATUS_NRESULTS ? results[result].token : "failed";
}

const char *status_result_text(int result)
{
	return result >= 0 && result < STATUS_NRESULTS ? results[result].text : "failed";
}

int status_result_parse(const char *token)
{
	for (int i = 0; i < STATUS_NRESULTS; i++)
		if (strcmp(results[i].token, token) == 0)
			return i;
	return -1;
}

int status_tls_result(const char *e)
{
	if (strstr(e, "pin"))
		return STATUS_TLS_PIN;
	if (strstr(e, "server name"))
		return STATUS_TLS_NAME;
	if (strstr(e, "not trusted") || strstr(e, "expired") || strstr(e, "unknown_ca"))
		return STATUS_TLS_CA;
	return STATUS_TLS;
}

int status_classify(const char *w)
{
	if (strstr(w, "connect to ") || strstr(w, "(connect)") || strstr(w, "cannot resolve") ||
	    strstr(w, "unreachable"))
		return STATUS_UNREACHABLE;
	if (strstr(w, "does not offer STARTTLS") || strstr(w, "STARTTLS:"))
		return STATUS_NO_STLS;
	if (strstr(w, "TLS") || strstr(w, "certificate") || strstr(w, "pin"))
		return status_tls_result(w);
	if (strstr(w, "AUTH"))
		return STATUS_LOGIN;
	if (strstr(w, "password"))
		return STATUS_PASSWORD;
	if (strstr(w, "closed by the server") || strstr(w, "timeout") || strstr(w, "reply"))
		return STATUS_PROTOCOL;
	return STATUS_FAILED;
}

/* ---- text ---- */

int status_format(const struct status_rec *r, char *buf, size_t cap)
{
	char detail[STATUS_DETAIL_MAX + 1];
	size_t i;
	int n;

	for (i = 0; r->detail[i] && i < STATUS_DETAIL_MAX; i++)
		detail[i] = (unsigned char)r->detail[i] < 0x20 || r->detail[i] == 0x7f ?
			    ' ' : r->detail[i];
	detail[i] = '\0';
	n = snprintf(buf, cap, "kind=%s\nname=%s\ntime=%" PRId64 "\nresult=%s\nfetched=%u\n"
		     "failures=%u\nlast-ok=%" PRId64 "\ndetail=%s\n", r->kind, r->name, r->time,
		     status_result_token(r->result), r->fetched, r->failures, r->last_ok, detail);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* A decimal number in [0, max]; -1 when v is not one. */
static long long number(const char *v, long long max)
{
	long long n = 0;

	if (!*v || strlen(v) > 12)
		return -1;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return -1;
		n = n * 10 + (*v - '0');
	}
	return n <= max ? n : -1;
}

static int copy(char *dst, size_t cap, const char *v)
{
	size_t n = strlen(v);

	if (n >= cap)
		return -1;
	memcpy(dst, v, n + 1);
	return 0;
}

/* One "key=value" (value NUL-terminated, no control bytes). 0 or -1. */
static int field(struct status_rec *r, const char *key, size_t klen, const char *v)
{
	long long n = 0;

#define KEY(s) (klen == sizeof s - 1 && memcmp(key, s, klen) == 0)
	if (KEY("kind"))
		return copy(r->kind, sizeof r->kind, v);
	if (KEY("name"))
		return copy(r->name, sizeof r->name, v);
	if (KEY("detail"))
		return copy(r->detail, sizeof r->detail, v);
	if (KEY("result"))
		return (r->result = status_result_parse(v)) < 0 ? -1 : 0;
	if (KEY("time") || KEY("last-ok"))
		n = number(v, STATUS_NUM_MAX);
	else if (KEY("fetched") || KEY("failures"))
		n = number(v, STATUS_COUNT_MAX);
	else
		return 0;   /* unknown keys: a newer writer */
	if (n < 0)
		return -1;
	if (KEY("time"))
		r->time = n;
	else if (KEY("last-ok"))
		r->last_ok = n;
	else if (KEY("fetched"))
		r->fetched = (unsigned)n;
	else
		r->failures = (unsigned)n;
	return 0;
#undef KEY
}

static int line(struct status_rec *r, const char *p, size_t n)
{
	char v[STATUS_LINE_MAX];
	const char *eq = memchr(p, '=', n);
	size_t vl;

	if (n == 0)
		return 0;
	if (!eq || eq == p)
		return -1;
	vl = n - (size_t)(eq + 1 - p);
	for (size_t i = 0; i < vl; i++)
		if ((unsigned char)eq[1 + i] < 0x20 || eq[1 + i] == 0x7f)
			return -1;
	memcpy(v, eq + 1, vl);
	v[vl] = '\0';
	return field(r, p, (size_t)(eq - p), v);
}

#define STATUS_NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

/* A name: letters, digits, '.', '_', '-', a safe file name. */
static int name_ok(const char *s)
{
	return fs_name_ok(s) && strspn(s, STATUS_NAME_CHARS) == strlen(s);
}

/* A kind: a name without '-' (the file name KIND-NAME splits at the first). */
static int kind_ok(const char *s)
{
	return name_ok(s) && !strchr(s, '-');
}

int status_parse(const char *text, size_t len, struct status_rec *r)
{
	memset(r, 0, sizeof *r);
	r->result = STATUS_FAILED;
	if (len > STATUS_FILE_MAX)
		return -1;
	for (size_t i = 0; i < len; ) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
		if (n + 1 > STATUS_LINE_MAX || line(r, text + i, n) < 0)
			return -1;
		i += n + 1;
	}
	return kind_ok(r->kind) && name_ok(r->name) ? 0 : -1;
}

/* ---- files ---- */

static int path_of(char *out, size_t cap, const char *dir, const char *kind, const char *name)
{
	int n;

	if (!kind_ok(kind) || !name_ok(name))
		return -1;
	n = snprintf(out, cap, "%s/%s-%s", dir, kind, name);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int status_read(const char *dir, const char *kind, const char *name, struct status_rec *r)
{
	char path[STATUS_PATH_MAX], text[STATUS_FILE_MAX + 1];
	ssize_t n;

	if (path_of(path, sizeof path, dir, kind, name) < 0) {
		errno = EINVAL;
		return -1;
	}
	n = fs_read_file(path, text, STATUS_FILE_MAX);
	if (n < 0)
		return -1;
	if (status_parse(text, (size_t)n, r) < 0 || strcmp(r->kind, kind) || strcmp(r->name, name)) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

int status_write(const char *dir, const struct status_rec *r)
{
	char path[STATUS_PATH_MAX], text[STATUS_FILE_MAX + 1];
	int n;

	if (path_of(path, sizeof path, dir, r->kind, r->name) < 0 ||
	    (n = status_format(r, text, sizeof text)) < 0) {
		errno = EINVAL;
		return -1;
	}
	return fs_write_atomic(path, text, (size_t)n, 0644);
}

int status_record(const char *dir, const char *kind, const char *name, int64_t now,
		  int result, unsigned fetched, const char *detail)
{
	struct status_rec prev, r;

	if (status_read(dir, kind, name, &prev) < 0)
		memset(&prev, 0, sizeof prev);
	memset(&r, 0, sizeof r);
	if (copy(r.kind, sizeof r.kind, kind) < 0 || copy(r.name, sizeof r.name, name) < 0) {
		errno = EINVAL;
		return -1;
	}
	r.time = now;
	r.result = result;
	r.fetched = fetched;
	r.failures = result == STATUS_OK ? 0 : prev.failures + 1;
	r.last_ok = result == STATUS_OK ? now : prev.last_ok;
	snprintf(r.detail, sizeof r.detail, "%s", detail ? detail : "");
	return status_write(dir, &r);
}

int status_dir_init(const char *dir)
{
	struct group *g;
	struct stat st;

	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;   /* made before (an earlier start, or the tests): keep it */
	if (mkdir(dir, 0775) < 0)
		return -1;  /* no parents: a host without /run/postern gets nothing */
	if (geteuid() != 0)
		return 0;
	g = getgrnam(STATUS_GROUP);
	if (!g || chown(dir, 0, g->gr_gid) < 0 || chmod(dir, 0775) < 0)
		return -1;
	return 0;
}

int status_list(const char *dir, const char *kind, int max,
		void (*fn)(const struct status_rec *r, void *arg), void *arg)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int seen = 0;

	if (!d)
		return -1;
	while (seen < max && (e = readdir(d))) {
		char path[STATUS_PATH_MAX], text[STATUS_FILE_MAX + 1];
		struct status_rec r;
		ssize_t n;
		if (e->d_name[0] == '.' || (kind && (strncmp(e->d_name, kind, strlen(kind)) ||
						     e->d_name[strlen(kind)] != '-')))
			continue;
		if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
			continue;
		n = fs_read_file(path, text, STATUS_FILE_MAX);
		if (n < 0 || status_parse(text, (size_t)n, &r) < 0)
			continue;
		fn(&r, arg);
		seen++;
	}
	closedir(d);
	return seen;
}

/* ---- the firewall's log ---- */

/* The value of the first "KEY=" that starts a word of line[0..len) into
 * out (cap bytes). 0 or -1. */
static int log_field(const char *line, size_t len, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key), n = 0;

	for (size_t i = 1; i + kl <= len; i++) {
		if (line[i - 1] != ' ' || memcmp(line + i, key, kl) != 0)
			continue;
		for (i += kl; i + n < len && line[i + n] != ' '; n++)
			if ((unsigned char)line[i + n] < 0x20 || line[i + n] == 0x7f)
				return -1;   /* NUL or a control byte: not the kernel's */
		if (n == 0 || n >= cap)
			return -1;
		memcpy(out, line + i, n);
		out[n] = '\0';
		return 0;
	}
	return -1;
}

static void blocked_line(const char *line, size_t len, struct status_blocked *out, int max, int *n)
{
	struct status_blocked b = { 0 };
	char port[8];
	long long p;
	const char *pre = memmem(line, len, STATUS_FW_PREFIX, sizeof STATUS_FW_PREFIX - 1);
	int i;

	size_t rl;
	const char *rest;

	if (!pre)
		return;
	rest = pre + sizeof STATUS_FW_PREFIX - 2;   /* from the prefix's blank on */
	rl = len - (size_t)(rest - line);
	if (log_field(rest, rl, "SRC=", b.src, sizeof b.src) < 0 ||
	    log_field(rest, rl, "DST=", b.dst, sizeof b.dst) < 0 ||
	    log_field(rest, rl, "PROTO=", b.proto, sizeof b.proto) < 0 ||
	    log_field(rest, rl, "DPT=", port, sizeof port) < 0 || (p = number(port, 65535)) < 0)
		return;
	b.port = (unsigned)p;
	if (pre - line >= 15 && line[3] == ' ')   /* BusyBox syslogd: "Nov 29 05:10:01 " */
		memcpy(b.last, line, 15);
	for (i = 0; i < *n; i++)
		if (!strcmp(out[i].src, b.src) && !strcmp(out[i].dst, b.dst) &&
		    !strcmp(out[i].proto, b.proto) && out[i].port == b.port)
			break;
	if (i == *n) {
		if (*n >= max)
			return;
		out[(*n)++] = b;
	}
	out[i].count++;
	memcpy(out[i].last, b.last, sizeof b.last);
}

int status_blocked_parse(const char *text, size_t len, struct status_blocked *out, int max)
{
	int n = 0;

	for (size_t i = 0; i < len; ) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t l = nl ? (size_t)(nl - (text + i)) : len - i;
		blocked_line(text + i, l, out, max, &n);
		i += l + 1;
	}
	return n;
}

/* ---- services that keep restarting ---- */

const char *status_svc_dir(void)
{
	const char *d = getenv("POSTERN_SVC_DIR");

	return d && *d ? d : STATUS_SVC_DIR_DEFAULT;
}

/* One line "TIME CODE SIGNAL" (n bytes, no newline). 0 or -1. */
static int svc_line(const char *l, size_t n, int64_t *t, int *code, int *sig)
{
	char buf[STATUS_SVC_LINE_MAX + 1], extra;
	long long tt;

	if (n == 0 || n > STATUS_SVC_LINE_MAX)
		return -1;
	memcpy(buf, l, n);
	buf[n] = '\0';
	if (sscanf(buf, "%lld %d %d %c", &tt, code, sig, &extra) != 3 || tt <= 0 ||
	    *code < -1 || *code > 255 || *sig < 0 || *sig > 128)
		return -1;
	*t = tt;
	return 0;
}

void status_svc_parse(const char *text, size_t len, int64_t now, struct status_svc *s)
{
	const char *p = text, *end = text + len;

	memset(s, 0, sizeof *s);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		int64_t t;
		int code, sig;

		if (svc_line(p, n, &t, &code, &sig) == 0 && t <= now) {
			s->exits += t > now - STATUS_SVC_WINDOW_S;
			if (t >= s->last_time) {
				s->last_time = t;
				s->last_code = code;
				s->last_signal = sig;
			}
		}
		p += n + 1;
	}
}

int status_svc_read(const char *dir, const char *name, int64_t now, struct status_svc *s)
{
	char path[STATUS_PATH_MAX], text[STATUS_FILE_MAX];
	struct stat st;
	off_t off;
	ssize_t n;
	int fd;

	memset(s, 0, sizeof *s);
	if (path_of(path, sizeof path, dir, "exits", name) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -1;
	}
	off = st.st_size > STATUS_FILE_MAX ? st.st_size - STATUS_FILE_MAX : 0;
	n = pread(fd, text, sizeof text, off);
	close(fd);
	if (n < 0)
		return -1;
	if (off > 0) {   /* the first line may be cut: start after it */
		const char *nl = memchr(text, '\n', (size_t)n);
		size_t skip = nl ? (size_t)(nl - text) + 1 : (size_t)n;
		status_svc_parse(text + skip, (size_t)n - skip, now, s);
	} else {
		status_svc_parse(text, (size_t)n, now, s);
	}
	return 0;
}

int status_svc_restarting(const struct status_svc *s)
{
	return s->exits > STATUS_SVC_RESTARTS;
}

void status_svc_exit_text(const struct status_svc *s, char *buf, size_t cap)
{
	if (!s->last_time)
		snprintf(buf, cap, "%s", "");
	else if (s->last_code < 0)
		snprintf(buf, cap, "killed by signal %d", s->last_signal);
	else
		snprintf(buf, cap, "exit code %d", s->last_code);
}
