/*
 * users.c - the users file: parser, writer, password hashes, verification
 * with a credential cache, address resolution. Format: users.h and
 * docs/USERS.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bearssl.h>

#include "config.h"
#include "fsutil.h"
#include "pbkdf2.h"
#include "users.h"

#define USERS_FILE_MAX (1024 * 1024)   /* bytes in a users file */
#define USERS_LINE_MAX 8192            /* bytes in one line */
#define USERS_ENTRIES_MAX 20000        /* lines in a users file */
#define USERS_FIELDS_MAX 1024          /* fields on one line (list members) */
#define USERS_HASH_LEN 32              /* PBKDF2 output bytes */
#define USERS_SALT_MIN 8               /* shortest salt accepted */
#define USERS_SALT_MAX 64              /* longest salt accepted */
#define USERS_ITER_MAX 100000000u      /* most PBKDF2 rounds accepted */
#define USERS_HASH_PREFIX "$pbkdf2-sha256$i="

/* Costs the same KDF work as a real hash; matches no password in practice. */
static const char users_dummy_hash[] = "$pbkdf2-sha256$i=310000$"
	"AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- base64 without padding ------------------------------------------- */

static size_t b64_encode(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t k = n - i < 3 ? n - i : 3;

		if (k > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (k > 2)
			v |= in[i + 2];
		for (size_t j = 0; j <= k; j++)
			out[o++] = b64_alphabet[(v >> (18 - 6 * j)) & 63];
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64_alphabet, c) : NULL;

	return p ? (int)(p - b64_alphabet) : -1;
}

/* Strict decoder: returns the byte count, or -1 (bad char, bad length,
 * non-zero trailing bits, more than `cap` bytes). */
static int b64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return -1;
	return (int)o;
}

/* ---- password hashes --------------------------------------------------- */

struct users_phash {
	uint32_t iterations;
	unsigned char salt[USERS_SALT_MAX];
	size_t saltlen;
	unsigned char hash[USERS_HASH_LEN];
};

/* Split "$pbkdf2-sha256$i=N$SALT$HASH". Returns 0 or -1 with a reason. */
static int phash_parse(const char *s, struct users_phash *ph, const char **why)
{
	size_t plen = strlen(USERS_HASH_PREFIX);
	const char *p, *salt, *hash;
	unsigned long n = 0;
	int r;

	if (strncmp(s, USERS_HASH_PREFIX, plen) != 0) {
		*why = "password hash must start with " USERS_HASH_PREFIX;
		return -1;
	}
	for (p = s + plen; *p >= '0' && *p <= '9' && n <= USERS_ITER_MAX; p++)
		n = n * 10 + (unsigned long)(*p - '0');
	if (p == s + plen || *p != '$' || n > USERS_ITER_MAX) {
		*why = "bad iteration count in password hash";
		return -1;
	}
	if (n < USERS_KDF_MIN_ITERATIONS) {
		*why = "password hash has fewer than 200000 iterations";
		return -1;
	}
	salt = p + 1;
	hash = strchr(salt, '$');
	if (!hash) {
		*why = "password hash has no hash part";
		return -1;
	}
	r = b64_decode(salt, (size_t)(hash - salt), ph->salt, sizeof ph->salt);
	if (r < USERS_SALT_MIN) {
		*why = "bad salt in password hash";
		return -1;
	}
	ph->saltlen = (size_t)r;
	hash++;
	if (b64_decode(hash, strlen(hash), ph->hash, sizeof ph->hash) != USERS_HASH_LEN) {
		*why = "bad hash part in password hash (need 32 bytes, base64)";
		return -1;
	}
	ph->iterations = (uint32_t)n;
	return 0;
}

/* 1 if `hash` is a well-formed hash or "!", else 0 (reason in *why). */
static int hash_field_valid(const char *hash, const char **why)
{
	struct users_phash ph;

	if (strcmp(hash, "!") == 0)
		return 1;
	if (strlen(hash) > USERS_HASH_MAX) {
		*why = "password hash too long";
		return 0;
	}
	return phash_parse(hash, &ph, why) == 0;
}

static int ct_equal(const unsigned char *a, const unsigned char *b, size_t n)
{
	unsigned char d = 0;

	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

int users_hash_password_with(const char *password, const unsigned char *salt,
			     size_t saltlen, unsigned iterations,
			     char *out, size_t outlen)
{
	unsigned char dk[USERS_HASH_LEN];
	char s64[USERS_SALT_MAX * 2], h64[USERS_HASH_LEN * 2];
	size_t pwlen = strlen(password);
	int n;

	if (pwlen > USERS_PASSWORD_MAX || saltlen < USERS_SALT_MIN ||
	    saltlen > USERS_SALT_MAX || iterations < USERS_KDF_MIN_ITERATIONS ||
	    iterations > USERS_ITER_MAX)
		return -1;
	if (pbkdf2_sha256(password, pwlen, salt, saltlen, iterations, dk, sizeof dk) < 0)
		return -1;
	b64_encode(salt, saltlen, s64);
	b64_encode(dk, sizeof dk, h64);
	memset(dk, 0, sizeof dk);
	n = snprintf(out, outlen, "%s%u$%s$%s", USERS_HASH_PREFIX, iterations, s64, h64);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int users_hash_password(const char *password, char *out, size_t outlen)
{
	unsigned char salt[USERS_SALT_LEN];

	if (random_bytes(salt, sizeof salt) < 0)
		return -1;
	return users_hash_password_with(password, salt, sizeof salt,
					USERS_KDF_ITERATIONS, out, outlen);
}

int users_check_hash(const char *hash, const char *password)
{
	struct users_phash ph;
	unsigned char dk[USERS_HASH_LEN];
	const char *why;
	size_t pwlen = strlen(password);
	int ok;

	if (phash_parse(hash, &ph, &why) < 0)
		return -1;
	if (pwlen > USERS_PASSWORD_MAX)
		pwlen = USERS_PASSWORD_MAX;   /* same work; cannot match anyway */
	if (pbkdf2_sha256(password, pwlen, ph.salt, ph.saltlen, ph.iterations,
			  dk, sizeof dk) < 0)
		return -1;
	ok = ct_equal(dk, ph.hash, sizeof dk);
	memset(dk, 0, sizeof dk);
	return ok && strlen(password) <= USERS_PASSWORD_MAX;
}

/* ---- names and the database ------------------------------------------- */

int users_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > USERS_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '.' && c != '-' && c != '_')))
			return 0;
		if (c == '.' && (name[i + 1] == '.' || name[i + 1] == '\0'))
			return 0;
	}
	return 1;
}

void users_init(struct users_db *db)
{
	db->e = NULL;
	db->n = db->cap = 0;
}

void users_free(struct users_db *db)
{
	for (size_t i = 0; i < db->n; i++)
		free(db->e[i].text);
	free(db->e);
	users_init(db);
}

static struct users_entry *find_mut(const struct users_db *db, const char *name)
{
	for (size_t i = 0; i < db->n; i++)
		if (db->e[i].kind != USERS_KIND_TEXT && strcasecmp(db->e[i].name, name) == 0)
			return &db->e[i];
	return NULL;
}

const struct users_entry *users_find(const struct users_db *db, const char *name)
{
	return find_mut(db, name);
}

/* A new zeroed entry at the end, or NULL when full or out of memory. */
static struct users_entry *append(struct users_db *db)
{
	struct users_entry *e;

	if (db->n >= USERS_ENTRIES_MAX)
		return NULL;
	if (db->n == db->cap) {
		size_t cap = db->cap ? db->cap * 2 : 16;

		e = realloc(db->e, cap * sizeof *e);
		if (!e)
			return NULL;
		db->e = e;
		db->cap = cap;
	}
	e = &db->e[db->n++];
	memset(e, 0, sizeof *e);
	return e;
}

static void remove_at(struct users_db *db, size_t i)
{
	free(db->e[i].text);
	memmove(&db->e[i], &db->e[i + 1], (db->n - i - 1) * sizeof db->e[0]);
	db->n--;
}

/* ---- parser ------------------------------------------------------------- */

struct users_line {
	char *f[USERS_FIELDS_MAX];
	size_t n;
};

/* Split `s` in place on blanks. Returns 0, or -1 with too many fields. */
static int split_fields(char *s, struct users_line *l)
{
	l->n = 0;
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			return 0;
		if (l->n == USERS_FIELDS_MAX)
			return -1;
		l->f[l->n++] = s;
		while (*s && *s != ' ' && *s != '\t')
			s++;
		if (*s)
			*s++ = '\0';
	}
}

static int check_new_name(const struct users_db *db, const char *name,
			  char *err, size_t errlen)
{
	const struct users_entry *old;

	if (!users_name_valid(name)) {
		seterr(err, errlen, "invalid name '%.*s' (lower-case letters, digits, "
		       "'.', '-', '_'; at most %d bytes)", USERS_NAME_MAX, name,
		       USERS_NAME_MAX);
		return -1;
	}
	old = users_find(db, name);
	if (old) {
		if (old->line)
			seterr(err, errlen, "name '%s' already used on line %u", name, old->line);
		else
			seterr(err, errlen, "name '%s' already exists", name);
		return -1;
	}
	return 0;
}

/* The optional fifth field of a user record: quota=SIZE (config syntax). */
static int parse_quota(const char *name, const char *f, struct users_entry *e,
		       char *err, size_t errlen)
{
	if (strncmp(f, "quota=", 6) != 0 || config_parse_size(f + 6, &e->quota) < 0) {
		seterr(err, errlen, "user '%s': '%.40s' is not quota=SIZE (like quota=2G)",
		       name, f);
		return -1;
	}
	e->quota_set = 1;
	return 0;
}

static int parse_user(struct users_line *l, struct users_entry *e,
		      char *err, size_t errlen)
{
	const char *why = "";

	if (l->n != 4 && l->n != 5) {
		seterr(err, errlen, "'user' needs NAME ROLE HASH [quota=SIZE]");
		return -1;
	}
	if (l->n == 5 && parse_quota(l->f[1], l->f[4], e, err, errlen) < 0)
		return -1;
	if (strcmp(l->f[2], "user") == 0)
		e->role = USERS_ROLE_USER;
	else if (strcmp(l->f[2], "admin") == 0)
		e->role = USERS_ROLE_ADMIN;
	else {
		seterr(err, errlen, "user '%s': role must be 'user' or 'admin', not '%.32s'",
		       l->f[1], l->f[2]);
		return -1;
	}
	if (!hash_field_valid(l->f[3], &why)) {
		seterr(err, errlen, "user '%s': %s", l->f[1], why);
		return -1;
	}
	e->kind = USERS_KIND_USER;
	strcpy(e->hash, l->f[3]);
	return 0;
}

static int parse_alias(struct users_line *l, struct users_entry *e,
		       char *err, size_t errlen)
{
	if (l->n != 3) {
		seterr(err, errlen, "'alias' needs NAME OWNER");
		return -1;
	}
	if (!users_name_valid(l->f[2])) {
		seterr(err, errlen, "alias '%s': invalid owner name", l->f[1]);
		return -1;
	}
	e->kind = USERS_KIND_ALIAS;
	strcpy(e->owner, l->f[2]);
	return 0;
}

/* Members joined by single spaces into a new string. */
static char *join_members(char **f, size_t n)
{
	size_t len = 0;
	char *s, *p;

	for (size_t i = 0; i < n; i++)
		len += strlen(f[i]) + 1;
	s = malloc(len + 1);
	if (!s)
		return NULL;
	p = s;
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, i ? " %s" : "%s", f[i]);
	*p = '\0';
	return s;
}

static int parse_list(struct users_line *l, struct users_entry *e,
		      char *err, size_t errlen)
{
	if (l->n < 3) {
		seterr(err, errlen, "'list' needs NAME and at least one MEMBER");
		return -1;
	}
	for (size_t i = 2; i < l->n; i++)
		if (!users_name_valid(l->f[i])) {
			seterr(err, errlen, "list '%s': invalid member name '%.*s'",
			       l->f[1], USERS_NAME_MAX, l->f[i]);
			return -1;
		}
	e->kind = USERS_KIND_LIST;
	e->text = join_members(l->f + 2, l->n - 2);
	if (!e->text) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* One record line (not blank, not a comment), already NUL-terminated. */
static int parse_record(struct users_db *db, char *s, unsigned lineno,
			char *err, size_t errlen)
{
	struct users_line l;
	struct users_entry *e;
	int r;

	if (split_fields(s, &l) < 0) {
		seterr(err, errlen, "too many fields (at most %d)", USERS_FIELDS_MAX);
		return -1;
	}
	if (strcmp(l.f[0], "user") != 0 && strcmp(l.f[0], "alias") != 0 &&
	    strcmp(l.f[0], "list") != 0) {
		seterr(err, errlen, "unknown record '%.32s' (expected user, alias or list)",
		       l.f[0]);
		return -1;
	}
	if (l.n < 2) {
		seterr(err, errlen, "'%s' needs a name", l.f[0]);
		return -1;
	}
	if (check_new_name(db, l.f[1], err, errlen) < 0)
		return -1;
	e = append(db);
	if (!e) {
		seterr(err, errlen, "too many entries (at most %d) or out of memory",
		       USERS_ENTRIES_MAX);
		return -1;
	}
	strcpy(e->name, l.f[1]);
	e->line = lineno;
	if (l.f[0][0] == 'u')
		r = parse_user(&l, e, err, errlen);
	else if (l.f[0][0] == 'a')
		r = parse_alias(&l, e, err, errlen);
	else
		r = parse_list(&l, e, err, errlen);
	if (r < 0)
		remove_at(db, db->n - 1);
	return r;
}

static int add_text(struct users_db *db, const char *s, size_t n)
{
	struct users_entry *e = append(db);

	if (!e)
		return -1;
	e->kind = USERS_KIND_TEXT;
	e->text = strndup(s, n);
	if (!e->text) {
		db->n--;
		return -1;
	}
	return 0;
}

/* Cross-references: alias owners are users, list members users or aliases. */
static int check_refs(const struct users_db *db, char *err, size_t errlen)
{
	for (size_t i = 0; i < db->n; i++) {
		const struct users_entry *e = &db->e[i], *t;

		if (e->kind == USERS_KIND_ALIAS) {
			t = users_find(db, e->owner);
			if (!t || t->kind != USERS_KIND_USER) {
				seterr(err, errlen, "line %u: alias '%s': owner '%s' is not a user",
				       e->line, e->name, e->owner);
				return -1;
			}
		} else if (e->kind == USERS_KIND_LIST) {
			char m[USERS_NAME_MAX + 1];
			const char *p = e->text;

			while (*p) {
				size_t k = strcspn(p, " ");

				snprintf(m, sizeof m, "%.*s", (int)k, p);
				t = users_find(db, m);
				if (!t || t->kind == USERS_KIND_LIST) {
					seterr(err, errlen, "line %u: list '%s': member '%s' is "
					       "not a user or alias", e->line, e->name, m);
					return -1;
				}
				p += k + (p[k] == ' ');
			}
		}
	}
	return 0;
}

static int parse_line(struct users_db *db, const char *s, size_t n, unsigned lineno,
		      char *err, size_t errlen)
{
	char line[USERS_LINE_MAX + 1];
	char msg[256];
	size_t i = 0;

	while (n > 0 && s[n - 1] == '\r')   /* CRLF files; trailing CRs */
		n--;
	if (n > USERS_LINE_MAX) {
		seterr(err, errlen, "line %u: too long (at most %d bytes)", lineno,
		       USERS_LINE_MAX);
		return -1;
	}
	if (memchr(s, '\0', n)) {
		seterr(err, errlen, "line %u: contains a NUL byte", lineno);
		return -1;
	}
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i == n || s[i] == '#') {
		if (add_text(db, s, n) < 0) {
			seterr(err, errlen, "line %u: too many lines or out of memory", lineno);
			return -1;
		}
		return 0;
	}
	memcpy(line, s, n);
	line[n] = '\0';
	if (parse_record(db, line, lineno, msg, sizeof msg) < 0) {
		seterr(err, errlen, "line %u: %s", lineno, msg);
		return -1;
	}
	return 0;
}

int users_parse(struct users_db *db, const char *buf, size_t len,
		char *err, size_t errlen)
{
	size_t pos = 0;
	unsigned lineno = 0;

	users_init(db);
	if (len > USERS_FILE_MAX) {
		seterr(err, errlen, "users file too large (at most %d bytes)", USERS_FILE_MAX);
		return -1;
	}
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;

		if (parse_line(db, buf + pos, n, ++lineno, err, errlen) < 0)
			goto fail;
		pos += n + (nl != NULL);
	}
	if (check_refs(db, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	users_free(db);
	return -1;
}

int users_load(struct users_db *db, const char *path, char *err, size_t errlen)
{
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd, r;

	users_init(db);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	buf = malloc(USERS_FILE_MAX + 1);
	if (!buf) {
		close(fd);
		seterr(err, errlen, "out of memory");
		return -1;
	}
	while ((n = read(fd, buf + len, USERS_FILE_MAX + 1 - len)) > 0 ||
	       (n < 0 && errno == EINTR))
		if (n > 0)
			len += (size_t)n;
	r = errno;
	close(fd);
	if (n < 0) {
		seterr(err, errlen, "%s: %s", path, strerror(r));
		free(buf);
		return -1;
	}
	{
		char msg[512];

		r = users_parse(db, buf, len, msg, sizeof msg);
		if (r < 0)
			seterr(err, errlen, "%s: %s", path, msg);
	}
	free(buf);
	return r;
}

/* ---- writer ------------------------------------------------------------- */

static size_t put(char *buf, size_t cap, size_t pos, const char *s)
{
	size_t n = strlen(s);

	if (pos < cap) {
		size_t k = cap - pos - 1 < n ? cap - pos - 1 : n;

		memcpy(buf + pos, s, k);
		buf[pos + k] = '\0';
	}
	return pos + n;
}

/* " quota=BYTES" when the user has an override. */
static size_t put_quota(char *buf, size_t cap, size_t pos, const struct users_entry *e)
{
	char q[40];

	if (!e->quota_set)
		return pos;
	snprintf(q, sizeof q, " quota=%llu", (unsigned long long)e->quota);
	return put(buf, cap, pos, q);
}

size_t users_format(const struct users_db *db, char *buf, size_t cap)
{
	size_t pos = 0;

	if (cap > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < db->n; i++) {
		const struct users_entry *e = &db->e[i];

		switch (e->kind) {
		case USERS_KIND_TEXT:
			pos = put(buf, cap, pos, e->text);
			break;
		case USERS_KIND_USER:
			pos = put(buf, cap, pos, "user ");
			pos = put(buf, cap, pos, e->name);
			pos = put(buf, cap, pos, e->role == USERS_ROLE_ADMIN ? " admin " : " user ");
			pos = put(buf, cap, pos, e->hash);
			pos = put_quota(buf, cap, pos, e);
			break;
		case USERS_KIND_ALIAS:
			pos = put(buf, cap, pos, "alias ");
			pos = put(buf, cap, pos, e->name);
			pos = put(buf, cap, pos, " ");
			pos = put(buf, cap, pos, e->owner);
			break;
		case USERS_KIND_LIST:
			pos = put(buf, cap, pos, "list ");
			pos = put(buf, cap, pos, e->name);
			pos = put(buf, cap, pos, " ");
			pos = put(buf, cap, pos, e->text);
			break;
		}
		pos = put(buf, cap, pos, "\n");
	}
	return pos;
}

int users_save(const struct users_db *db, const char *path, char *err, size_t errlen)
{
	size_t need = users_format(db, NULL, 0);
	char *buf = malloc(need + 1);
	int r;

	if (!buf) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	users_format(db, buf, need + 1);
	r = fs_write_atomic(path, buf, need, 0640);
	if (r < 0)
		seterr(err, errlen, "%s: %s", path, strerror(errno));
	free(buf);
	return r;
}

/* ---- changes ------------------------------------------------------------ */

static struct users_entry *find_kind(struct users_db *db, const char *name,
				     enum users_kind kind, char *err, size_t errlen)
{
	struct users_entry *e = find_mut(db, name);

	if (!e || e->kind != kind) {
		seterr(err, errlen, "no %s named '%s'", kind == USERS_KIND_USER ? "user" :
		       kind == USERS_KIND_ALIAS ? "alias" : "list", name);
		return NULL;
	}
	return e;
}

static int check_hash_arg(const char *hash, char *err, size_t errlen)
{
	const char *why = "";

	if (!hash_field_valid(hash, &why)) {
		seterr(err, errlen, "%s", why);
		return -1;
	}
	return 0;
}

int users_add(struct users_db *db, const char *name, enum users_role role,
	      const char *hash, char *err, size_t errlen)
{
	struct users_entry *e;

	if (check_new_name(db, name, err, errlen) < 0 ||
	    check_hash_arg(hash, err, errlen) < 0)
		return -1;
	e = append(db);
	if (!e) {
		seterr(err, errlen, "too many entries or out of memory");
		return -1;
	}
	e->kind = USERS_KIND_USER;
	strcpy(e->name, name);
	e->role = role;
	strcpy(e->hash, hash);
	return 0;
}

int users_set_hash(struct users_db *db, const char *name, const char *hash,
		   char *err, size_t errlen)
{
	struct users_entry *e = find_kind(db, name, USERS_KIND_USER, err, errlen);

	if (!e || check_hash_arg(hash, err, errlen) < 0)
		return -1;
	strcpy(e->hash, hash);
	return 0;
}

int users_set_role(struct users_db *db, const char *name, enum users_role role,
		   char *err, size_t errlen)
{
	struct users_entry *e = find_kind(db, name, USERS_KIND_USER, err, errlen);

	if (!e)
		return -1;
	e->role = role;
	return 0;
}

/* Drop `name` from list member strings in place; remove emptied lists. */
static void drop_member(struct users_db *db, const char *name)
{
	for (size_t i = db->n; i-- > 0;) {
		struct users_entry *e = &db->e[i];
		char *r, *w;

		if (e->kind != USERS_KIND_LIST)
			continue;
		r = w = e->text;
		while (*r) {
			size_t k = strcspn(r, " ");
			int keep = !(strlen(name) == k && strncasecmp(r, name, k) == 0);

			if (keep) {
				if (w != e->text)
					*w++ = ' ';
				memmove(w, r, k);
				w += k;
			}
			r += k + (r[k] == ' ');
		}
		*w = '\0';
		if (!*e->text)
			remove_at(db, i);
	}
}

int users_del(struct users_db *db, const char *name, char *err, size_t errlen)
{
	struct users_entry *e = find_kind(db, name, USERS_KIND_USER, err, errlen);
	char victim[USERS_NAME_MAX + 1];

	if (!e)
		return -1;
	strcpy(victim, e->name);
	for (size_t i = db->n; i-- > 0;) {
		e = &db->e[i];
		if (e->kind == USERS_KIND_ALIAS && strcmp(e->owner, victim) == 0) {
			char alias[USERS_NAME_MAX + 1];

			strcpy(alias, e->name);
			remove_at(db, i);
			drop_member(db, alias);
		}
	}
	drop_member(db, victim);
	remove_at(db, (size_t)(find_mut(db, victim) - db->e));
	return 0;
}

int users_alias_add(struct users_db *db, const char *name, const char *owner,
		    char *err, size_t errlen)
{
	struct users_entry *o, *e;

	if (check_new_name(db, name, err, errlen) < 0)
		return -1;
	o = find_kind(db, owner, USERS_KIND_USER, err, errlen);
	if (!o)
		return -1;
	e = append(db);
	if (!e) {
		seterr(err, errlen, "too many entries or out of memory");
		return -1;
	}
	e->kind = USERS_KIND_ALIAS;
	strcpy(e->name, name);
	strcpy(e->owner, o->name);
	return 0;
}

/* Validate a member list into a joined string ("a b c"), or NULL. */
static char *members_join(const struct users_db *db, const char *members,
			  char *err, size_t errlen)
{
	char *copy = strdup(members), *save = NULL, *tok, *out;
	struct users_line l;
	const struct users_entry *t;

	if (!copy) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	l.n = 0;
	for (tok = strtok_r(copy, " ,\t", &save); tok; tok = strtok_r(NULL, " ,\t", &save)) {
		t = users_find(db, tok);
		if (!t || t->kind == USERS_KIND_LIST || !users_name_valid(tok)) {
			seterr(err, errlen, "member '%.*s' is not a user or alias",
			       USERS_NAME_MAX, tok);
			free(copy);
			return NULL;
		}
		if (l.n == USERS_FIELDS_MAX) {
			seterr(err, errlen, "too many members (at most %d)", USERS_FIELDS_MAX);
			free(copy);
			return NULL;
		}
		l.f[l.n++] = tok;
	}
	if (l.n == 0) {
		seterr(err, errlen, "a list needs at least one member");
		free(copy);
		return NULL;
	}
	out = join_members(l.f, l.n);
	free(copy);
	if (!out)
		seterr(err, errlen, "out of memory");
	return out;
}

int users_list_set(struct users_db *db, const char *name, const char *members,
		   char *err, size_t errlen)
{
	struct users_entry *e = find_mut(db, name);
	char *joined;

	if (e && e->kind != USERS_KIND_LIST) {
		seterr(err, errlen, "name '%s' is already a user or alias", name);
		return -1;
	}
	if (!e && check_new_name(db, name, err, errlen) < 0)
		return -1;
	joined = members_join(db, members, err, errlen);
	if (!joined)
		return -1;
	if (!e) {
		e = append(db);
		if (!e) {
			free(joined);
			seterr(err, errlen, "too many entries or out of memory");
			return -1;
		}
		e->kind = USERS_KIND_LIST;
		strcpy(e->name, name);
	}
	free(e->text);
	e->text = joined;
	return 0;
}

int users_remove(struct users_db *db, const char *name, char *err, size_t errlen)
{
	struct users_entry *e = find_mut(db, name);
	char victim[USERS_NAME_MAX + 1];

	if (!e || (e->kind != USERS_KIND_ALIAS && e->kind != USERS_KIND_LIST)) {
		seterr(err, errlen, "no alias or list named '%s'", name);
		return -1;
	}
	strcpy(victim, e->name);
	remove_at(db, (size_t)(e - db->e));
	drop_member(db, victim);
	return 0;
}

/* ---- verification and the cache ---------------------------------------- */

/* The user entry for a login name, or NULL (unknown, too long). */
static const struct users_entry *login_user(const struct users_db *db, const char *user)
{
	const struct users_entry *e;

	if (strlen(user) > USERS_NAME_MAX)
		return NULL;
	e = users_find(db, user);
	return e && e->kind == USERS_KIND_USER ? e : NULL;
}

int users_verify(const struct users_db *db, const char *user, const char *password)
{
	const struct users_entry *e = login_user(db, user);

	if (!e || strcmp(e->hash, "!") == 0) {
		(void)users_check_hash(users_dummy_hash, password);
		return 0;
	}
	return users_check_hash(e->hash, password) == 1;
}

void users_cache_init(struct users_cache *c)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->mu, NULL);
	c->ready = random_bytes(c->key, sizeof c->key) == 0;
}

static void cache_tag(const struct users_cache *c, const struct users_entry *e,
		      const char *password, unsigned char tag[32])
{
	br_hmac_key_context kc;
	br_hmac_context hc;

	br_hmac_key_init(&kc, &br_sha256_vtable, c->key, sizeof c->key);
	br_hmac_init(&hc, &kc, 0);
	br_hmac_update(&hc, e->name, strlen(e->name) + 1);
	br_hmac_update(&hc, e->hash, strlen(e->hash) + 1);
	br_hmac_update(&hc, password, strlen(password));
	br_hmac_out(&hc, tag);
}

/* Is tag a live entry? Else *oldest: the slot to replace. Under c->mu. */
static int cache_find(struct users_cache *c, const unsigned char tag[32], time_t now,
		      size_t *oldest)
{
	*oldest = 0;
	for (size_t i = 0; i < USERS_CACHE_SLOTS; i++) {
		if (c->slot[i].expires > now && ct_equal(c->slot[i].tag, tag, 32))
			return 1;
		if (c->slot[i].expires < c->slot[*oldest].expires)
			*oldest = i;
	}
	return 0;
}

int users_verify_cached(const struct users_db *db, struct users_cache *c,
			const char *user, const char *password, time_t now)
{
	const struct users_entry *e = login_user(db, user);
	unsigned char tag[32];
	size_t oldest;
	int hit;

	if (!c->ready || !e || strcmp(e->hash, "!") == 0 ||
	    strlen(password) > USERS_PASSWORD_MAX)
		return users_verify(db, user, password);
	cache_tag(c, e, password, tag);
	pthread_mutex_lock(&c->mu);
	hit = cache_find(c, tag, now, &oldest);
	pthread_mutex_unlock(&c->mu);
	if (hit)
		return 1;
	if (users_check_hash(e->hash, password) != 1)   /* the KDF: unlocked */
		return 0;
	pthread_mutex_lock(&c->mu);
	if (!cache_find(c, tag, now, &oldest)) {        /* another thread may have */
		memcpy(c->slot[oldest].tag, tag, sizeof tag);
		c->slot[oldest].expires = now + USERS_CACHE_TTL;
	}
	pthread_mutex_unlock(&c->mu);
	return 1;
}

/* ---- addresses ---------------------------------------------------------- */

/* Split an address into a lower-case local part without "+tag" and its
 * domain (NULL when bare). Returns 0, or -1 if malformed. */
static int split_address(const char *addr, char local[USERS_NAME_MAX + 1],
			 const char **domain)
{
	const char *at = strrchr(addr, '@');
	size_t n = at ? (size_t)(at - addr) : strlen(addr);
	size_t plus;

	if (strlen(addr) > USERS_ADDR_MAX || n == 0)
		return -1;
	plus = strcspn(addr, "+");
	if (plus < n)
		n = plus;
	if (n == 0 || n > USERS_NAME_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)addr[i];

		local[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
	}
	local[n] = '\0';
	*domain = at ? at + 1 : NULL;
	return 0;
}

int users_is_local(const char *address, const char *domain)
{
	char local[USERS_NAME_MAX + 1];
	const char *d;

	if (split_address(address, local, &d) < 0)
		return 0;
	return !d || (domain && strcasecmp(d, domain) == 0);
}

/* Append `name` to out[] unless present. Returns 0, or -1 when full. */
static int add_unique(char out[][USERS_NAME_MAX + 1], size_t *n, size_t max,
		      const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(out[i], name) == 0)
			return 0;
	if (*n >= max)
		return -1;
	snprintf(out[(*n)++], USERS_NAME_MAX + 1, "%s", name);
	return 0;
}

/* The user a user or alias name stands for, or NULL. */
static const struct users_entry *target_user(const struct users_db *db, const char *name)
{
	const struct users_entry *e = users_find(db, name);

	if (e && e->kind == USERS_KIND_ALIAS)
		e = users_find(db, e->owner);
	return e && e->kind == USERS_KIND_USER ? e : NULL;
}

int users_resolve(const struct users_db *db, const char *address, const char *domain,
		  char out[][USERS_NAME_MAX + 1], size_t max)
{
	char local[USERS_NAME_MAX + 1], m[USERS_NAME_MAX + 1];
	const struct users_entry *e, *t;
	const char *d, *p;
	size_t n = 0;

	if (split_address(address, local, &d) < 0)
		return -1;
	if (!users_is_local(address, domain) || !(e = users_find(db, local)))
		return 0;
	if (e->kind != USERS_KIND_LIST) {
		t = target_user(db, local);
		if (!t)
			return 0;
		return add_unique(out, &n, max, t->name) < 0 ? -1 : (int)n;
	}
	for (p = e->text; *p; p += strcspn(p, " ") + (p[strcspn(p, " ")] == ' ')) {
		snprintf(m, sizeof m, "%.*s", (int)strcspn(p, " "), p);
		t = target_user(db, m);
		if (t && add_unique(out, &n, max, t->name) < 0)
			return -1;
	}
	return (int)n;
}

int users_owns(const struct users_db *db, const char *user, const char *address,
	       const char *domain)
{
	char local[USERS_NAME_MAX + 1];
	const struct users_entry *u = login_user(db, user), *t;
	const char *d;

	if (!u || split_address(address, local, &d) < 0 || !d ||
	    !domain || strcasecmp(d, domain) != 0)
		return 0;
	t = users_find(db, local);
	if (!t || t->kind == USERS_KIND_LIST)
		return 0;
	return target_user(db, local) == u;
}
