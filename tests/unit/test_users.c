/* test_users.c - users file: parsing, hashes, verify, cache, resolve, owns. */
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "users.h"

static char alice_hash[USERS_HASH_MAX + 1];   /* password "wonderland" */
static char bob_hash[USERS_HASH_MAX + 1];     /* password "builder" */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A users file with the two hashes, an alias and a list. */
static int sample(struct users_db *db)
{
	char buf[2048], err[256];

	snprintf(buf, sizeof buf,
		 "# office users\n"
		 "user alice admin %s\n"
		 "\n"
		 "user bob user %s\n"
		 "user carol user !\n"
		 "alias sales alice\n"
		 "alias info bob\n"
		 "list all alice bob carol sales\n",
		 alice_hash, bob_hash);
	return users_parse(db, buf, strlen(buf), err, sizeof err);
}

static void t_hash_format(void)
{
	static const unsigned char salt[16] = "0123456789abcdef";
	char h[USERS_HASH_MAX + 1], h2[USERS_HASH_MAX + 1];

	CHECK_EQ(users_hash_password_with("x", salt, 16, 200000, h, sizeof h), 0);
	CHECK(strncmp(h, "$pbkdf2-sha256$i=200000$MDEyMzQ1Njc4OWFiY2RlZg$", 47) == 0);
	CHECK_EQ(strlen(h), 47 + 43);
	CHECK_EQ(users_hash_password_with("x", salt, 16, 1000, h2, sizeof h2), -1);
	CHECK_EQ(users_check_hash(h, "x"), 1);
	CHECK_EQ(users_check_hash(h, "y"), 0);
	CHECK_EQ(users_check_hash("$pbkdf2-sha256$i=1000$MDEyMzQ1Njc4OWFiY2RlZg$AAAA", "x"), -1);
	CHECK_EQ(users_check_hash("plain", "x"), -1);
	/* Fresh hashes are salted randomly and use the default rounds. */
	CHECK_EQ(users_hash_password("wonderland", alice_hash, sizeof alice_hash), 0);
	CHECK_EQ(users_hash_password("builder", bob_hash, sizeof bob_hash), 0);
	CHECK(strncmp(alice_hash, "$pbkdf2-sha256$i=310000$", 24) == 0);
	CHECK(strcmp(alice_hash + 24, bob_hash + 24) != 0);
}

static void t_parse_good(void)
{
	struct users_db db;
	const struct users_entry *e;
	size_t need;
	char *out;

	CHECK_EQ(sample(&db), 0);
	e = users_find(&db, "ALICE");
	CHECK(e && e->kind == USERS_KIND_USER && e->role == USERS_ROLE_ADMIN);
	CHECK(e && e->line == 2);
	e = users_find(&db, "sales");
	CHECK(e && e->kind == USERS_KIND_ALIAS && strcmp(e->owner, "alice") == 0);
	e = users_find(&db, "all");
	CHECK(e && e->kind == USERS_KIND_LIST);
	CHECK(users_find(&db, "nobody") == NULL);
	/* Formatting reproduces the input, comments and blank lines included. */
	need = users_format(&db, NULL, 0);
	out = malloc(need + 1);
	users_format(&db, out, need + 1);
	CHECK(strstr(out, "# office users\nuser alice admin $pbkdf2") == out);
	CHECK(strstr(out, "\n\nuser bob user ") != NULL);
	CHECK(strstr(out, "list all alice bob carol sales\n") != NULL);
	free(out);
	users_free(&db);
}

struct bad_case {
	const char *text;
	const char *msg;   /* expected prefix of the error */
};

static void t_parse_bad(void)
{
	static const struct bad_case cases[] = {
		{ "user a user !\nfrobnicate x\n", "line 2: unknown record" },
		{ "user a user !\nuser a user !\n", "line 2: name 'a' already used on line 1" },
		{ "user Alice user !\n", "line 1: invalid name" },
		{ "user a boss !\n", "line 1: user 'a': role must be" },
		{ "\n\nuser a user $md5$x\n", "line 3: user 'a': password hash must start" },
		{ "user a user $pbkdf2-sha256$i=1000$MDEyMzQ1Njc4OWFiY2RlZg$AAAA\n",
		  "line 1: user 'a': password hash has fewer" },
		{ "user a user\n", "line 1: 'user' needs NAME ROLE HASH" },
		{ "alias x nobody\n", "line 1: alias 'x': owner 'nobody' is not a user" },
		{ "user a user !\nlist l a ghost\n", "line 2: list 'l': member 'ghost'" },
		{ "user a user !\nlist l a\nlist m l\n", "line 3: list 'm': member 'l'" },
		{ "list l\n", "line 1: 'list' needs NAME" },
		{ "user a user !\nuser b user !\0\n", "line 2: contains a NUL" },
	};
	struct users_db db;
	char err[256];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len = strlen(cases[i].text);

		if (i == sizeof cases / sizeof cases[0] - 1)
			len += 2;   /* include the embedded NUL */
		err[0] = '\0';
		CHECK_EQ(users_parse(&db, cases[i].text, len, err, sizeof err), -1);
		if (strncmp(err, cases[i].msg, strlen(cases[i].msg)) != 0)
			fprintf(stderr, "case %zu: got \"%s\"\n", i, err);
		CHECK(strncmp(err, cases[i].msg, strlen(cases[i].msg)) == 0);
		CHECK_EQ(db.n, 0);
	}
}

static void t_long_line(void)
{
	size_t n = 20000;
	char *buf = malloc(n + 1);
	struct users_db db;
	char err[256];

	memset(buf, 'x', n);
	memcpy(buf, "# ", 2);
	CHECK_EQ(users_parse(&db, buf, n, err, sizeof err), -1);
	CHECK(strncmp(err, "line 1: too long", 16) == 0);
	free(buf);
}

static void t_verify(void)
{
	struct users_db db;
	double t0, t_known, t_unknown;

	CHECK_EQ(sample(&db), 0);
	CHECK_EQ(users_verify(&db, "alice", "wonderland"), 1);
	CHECK_EQ(users_verify(&db, "Alice", "wonderland"), 1);
	t0 = now_s();
	CHECK_EQ(users_verify(&db, "alice", "wonderland!"), 0);
	t_known = now_s() - t0;
	t0 = now_s();
	CHECK_EQ(users_verify(&db, "mallory", "wonderland"), 0);
	t_unknown = now_s() - t0;
	/* Unknown users pay the KDF too (not dramatically faster). */
	CHECK(t_unknown > t_known / 4);
	CHECK_EQ(users_verify(&db, "carol", ""), 0);         /* disabled */
	CHECK_EQ(users_verify(&db, "sales", "wonderland"), 0); /* alias: no login */
	users_free(&db);
}

static void t_cache(void)
{
	struct users_db db;
	struct users_cache c;
	double t0, t_first, t_second;
	char err[256];

	CHECK_EQ(sample(&db), 0);
	users_cache_init(&c);
	CHECK(c.ready);
	t0 = now_s();
	CHECK_EQ(users_verify_cached(&db, &c, "bob", "builder", 1000), 1);
	t_first = now_s() - t0;
	t0 = now_s();
	CHECK_EQ(users_verify_cached(&db, &c, "bob", "builder", 1010), 1);
	t_second = now_s() - t0;
	CHECK(t_second * 20 < t_first);
	fprintf(stderr, "verify: first %.4f s, cached %.6f s\n", t_first, t_second);
	/* Wrong passwords still fail; the cache never holds the password. */
	CHECK_EQ(users_verify_cached(&db, &c, "bob", "builder2", 1010), 0);
	CHECK(memmem(&c, sizeof c, "builder", 7) == NULL);
	/* Expired: the KDF runs again (and succeeds). */
	t0 = now_s();
	CHECK_EQ(users_verify_cached(&db, &c, "bob", "builder", 1000 + USERS_CACHE_TTL + 1), 1);
	CHECK(now_s() - t0 > t_second * 20);
	/* A changed password invalidates the cached entry. */
	CHECK_EQ(users_set_hash(&db, "bob", alice_hash, err, sizeof err), 0);
	CHECK_EQ(users_verify_cached(&db, &c, "bob", "builder", 1400), 0);
	CHECK_EQ(users_verify_cached(&db, &c, "bob", "wonderland", 1400), 1);
	users_free(&db);
}

static void t_resolve(void)
{
	struct users_db db;
	char out[8][USERS_NAME_MAX + 1];

	CHECK_EQ(sample(&db), 0);
	CHECK_EQ(users_resolve(&db, "Alice@Example.COM", "example.com", out, 8), 1);
	CHECK_STREQ(out[0], "alice");
	CHECK_EQ(users_resolve(&db, "alice+news@example.com", "example.com", out, 8), 1);
	CHECK_EQ(users_resolve(&db, "SALES@example.com", "example.com", out, 8), 1);
	CHECK_STREQ(out[0], "alice");
	CHECK_EQ(users_resolve(&db, "info", "example.com", out, 8), 1);
	CHECK_STREQ(out[0], "bob");
	/* The list: alice, bob, carol, and sales (= alice again) deduplicated. */
	CHECK_EQ(users_resolve(&db, "all@example.com", "example.com", out, 8), 3);
	CHECK_STREQ(out[0], "alice");
	CHECK_STREQ(out[1], "bob");
	CHECK_STREQ(out[2], "carol");
	CHECK_EQ(users_resolve(&db, "all@example.com", "example.com", out, 2), -1);
	CHECK_EQ(users_resolve(&db, "alice@other.org", "example.com", out, 8), 0);
	CHECK_EQ(users_resolve(&db, "nobody@example.com", "example.com", out, 8), 0);
	CHECK_EQ(users_resolve(&db, "@example.com", "example.com", out, 8), -1);
	CHECK_EQ(users_is_local("x@EXAMPLE.com", "example.com"), 1);
	CHECK_EQ(users_is_local("x@example.org", "example.com"), 0);
	users_free(&db);
}

static void t_owns(void)
{
	struct users_db db;

	CHECK_EQ(sample(&db), 0);
	CHECK_EQ(users_owns(&db, "alice", "alice@example.com", "example.com"), 1);
	CHECK_EQ(users_owns(&db, "alice", "Sales@Example.com", "example.com"), 1);
	CHECK_EQ(users_owns(&db, "alice", "info@example.com", "example.com"), 0);
	CHECK_EQ(users_owns(&db, "bob", "info@example.com", "example.com"), 1);
	CHECK_EQ(users_owns(&db, "bob", "all@example.com", "example.com"), 0);
	CHECK_EQ(users_owns(&db, "alice", "alice@evil.org", "example.com"), 0);
	CHECK_EQ(users_owns(&db, "mallory", "mallory@example.com", "example.com"), 0);
	users_free(&db);
}

static void t_changes_and_save(void)
{
	struct users_db db, db2;
	char err[256], path[256];
	struct stat st;
	const char *tmp = getenv("TMPDIR");

	CHECK_EQ(sample(&db), 0);
	CHECK_EQ(users_add(&db, "dave", USERS_ROLE_USER, bob_hash, err, sizeof err), 0);
	CHECK_EQ(users_add(&db, "dave", USERS_ROLE_USER, bob_hash, err, sizeof err), -1);
	CHECK_STREQ(err, "name 'dave' already exists");
	CHECK_EQ(users_add(&db, "sales", USERS_ROLE_USER, bob_hash, err, sizeof err), -1);
	CHECK_EQ(users_add(&db, "e", USERS_ROLE_USER, "bogus", err, sizeof err), -1);
	CHECK_EQ(users_alias_add(&db, "support", "dave", err, sizeof err), 0);
	CHECK_EQ(users_alias_add(&db, "x", "sales", err, sizeof err), -1);
	CHECK_EQ(users_list_set(&db, "team", "dave, support,bob", err, sizeof err), 0);
	CHECK_EQ(users_list_set(&db, "bad", "dave all", err, sizeof err), -1);
	CHECK_EQ(users_set_role(&db, "dave", USERS_ROLE_ADMIN, err, sizeof err), 0);
	CHECK_EQ(users_del(&db, "bob", err, sizeof err), 0);
	CHECK(users_find(&db, "info") == NULL);   /* bob's alias went with him */
	CHECK_EQ(users_del(&db, "dave", err, sizeof err), 0);
	CHECK(users_find(&db, "team") == NULL);   /* emptied list removed */
	CHECK_EQ(users_remove(&db, "sales", err, sizeof err), 0);
	CHECK_EQ(users_remove(&db, "alice", err, sizeof err), -1);
	snprintf(path, sizeof path, "%s/users", tmp ? tmp : "/tmp");
	unlink(path);
	CHECK_EQ(users_save(&db, path, err, sizeof err), 0);
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_mode & 0777, 0640);
	CHECK_EQ(users_load(&db2, path, err, sizeof err), 0);
	CHECK(users_find(&db2, "alice") != NULL);
	CHECK(users_find(&db2, "bob") == NULL);
	{
		const struct users_entry *all = users_find(&db2, "all");

		CHECK(all && strcmp(all->text, "alice carol") == 0);
	}
	users_free(&db2);
	unlink(path);
	CHECK_EQ(users_load(&db2, path, err, sizeof err), 0);   /* missing: empty */
	CHECK_EQ(db2.n, 0);
	users_free(&db);
}

int main(void)
{
	RUN(t_hash_format);
	RUN(t_parse_good);
	RUN(t_parse_bad);
	RUN(t_long_line);
	RUN(t_verify);
	RUN(t_cache);
	RUN(t_resolve);
	RUN(t_owns);
	RUN(t_changes_and_save);
	return check_done();
}
