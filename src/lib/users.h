/*
 * users.h - the users file: accounts, roles, password hashes, aliases and
 * distribution lists, shared by SMTP, IMAP and the web page.
 *
 * The file is text, one record per line (full reference: docs/USERS.md):
 *
 *   # comment (kept when the file is rewritten)
 *   user  NAME ROLE HASH [quota=SIZE]
 *                               ROLE is user|admin; HASH as below, or "!"
 *                               (login disabled, mail still delivered);
 *                               quota= overrides the global mailbox-quota
 *   alias NAME OWNER            NAME@domain delivers to OWNER, and OWNER may
 *                               send as NAME@domain
 *   list  NAME MEMBER...        NAME@domain delivers to every MEMBER (users
 *                               or aliases; lists do not nest)
 *
 * Names are lower case: [a-z0-9] then [a-z0-9._-], at most USERS_NAME_MAX
 * bytes, and share one name space (a name is a user, an alias or a list).
 * Addresses are matched case-insensitively and a "+tag" suffix of the local
 * part is ignored (alice+news@ goes to alice).
 *
 * Password hashes are self-describing:
 *   $pbkdf2-sha256$i=ITERATIONS$SALT$HASH
 * with SALT (16 random bytes) and HASH (32 bytes of PBKDF2-HMAC-SHA256) in
 * base64 without padding; ITERATIONS >= USERS_KDF_MIN_ITERATIONS.
 *
 * The database is parsed from a byte buffer (users_parse) into a
 * caller-owned struct users_db that must be released with users_free().
 */
#ifndef POSTERN_USERS_H
#define POSTERN_USERS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define USERS_NAME_MAX 64            /* bytes in a user, alias or list name */
#define USERS_HASH_MAX 160           /* bytes in a password hash string */
#define USERS_ADDR_MAX 320           /* bytes in an address to resolve */
#define USERS_PASSWORD_MAX 1024      /* bytes in a password */
#define USERS_KDF_ITERATIONS 310000  /* PBKDF2 rounds for new hashes */
#define USERS_KDF_MIN_ITERATIONS 200000 /* fewer are rejected by the parser */
#define USERS_SALT_LEN 16            /* random salt bytes in new hashes */
#define USERS_CACHE_SLOTS 32         /* verified credentials kept in memory */
#define USERS_CACHE_TTL 300          /* seconds a cached credential is valid */

enum users_kind {
	USERS_KIND_TEXT,   /* comment or blank line, kept verbatim */
	USERS_KIND_USER,
	USERS_KIND_ALIAS,
	USERS_KIND_LIST,
};

enum users_role { USERS_ROLE_USER, USERS_ROLE_ADMIN };

struct users_entry {
	enum users_kind kind;
	unsigned line;                    /* line in the parsed file, 0 if added */
	char name[USERS_NAME_MAX + 1];    /* user, alias, list */
	enum users_role role;             /* user */
	char hash[USERS_HASH_MAX + 1];    /* user: hash, or "!" when disabled */
	char owner[USERS_NAME_MAX + 1];   /* alias: the owning user */
	char *text;                       /* list: members separated by one
					     space; text: the whole line */
	int quota_set;                    /* user: a quota= field was given */
	uint64_t quota;                   /* user: its mailbox quota in bytes
					     (0: no limit), overriding the
					     global mailbox-quota */
};

struct users_db {
	struct users_entry *e;
	size_t n, cap;
};

/* A cache of verified credentials (see users_verify_cached). */
struct users_cache {
	int ready;                        /* 0: no random key, cache unused */
	unsigned char key[32];
	pthread_mutex_t mu;               /* the slots, never held during a KDF */
	struct {
		unsigned char tag[32];
		time_t expires;
	} slot[USERS_CACHE_SLOTS];
};

/* An empty database. */
void users_init(struct users_db *db);

/* Release everything a database holds; it is empty afterwards. */
void users_free(struct users_db *db);

/*
 * Parse `len` bytes of users-file text into `db` (initialised by this call).
 * Returns 0, or -1 with a message naming the line in `err` (and `db` empty).
 */
int users_parse(struct users_db *db, const char *buf, size_t len,
		char *err, size_t errlen);

/*
 * Read and parse the file at `path`. A missing file is an empty database.
 * Returns 0, or -1 with a message in `err`.
 */
int users_load(struct users_db *db, const char *path, char *err, size_t errlen);

/*
 * Write the database as users-file text into `buf` (`cap` bytes, NUL
 * terminated when it fits). Returns the length the text needs (without NUL):
 * if that is >= cap, the output was truncated.
 */
size_t users_format(const struct users_db *db, char *buf, size_t cap);

/*
 * Save atomically to `path` (temp file, fsync, rename, fsync of the
 * directory; mode 0640). Returns 0, or -1 with a message in `err`.
 */
int users_save(const struct users_db *db, const char *path, char *err, size_t errlen);

/* 1 if `name` is a valid (lower-case) name, else 0. */
int users_name_valid(const char *name);

/* The entry named `name` (any kind, case-insensitive), or NULL. */
const struct users_entry *users_find(const struct users_db *db, const char *name);

/*
 * Changes. Each returns 0, or -1 with the reason in `err` and the database
 * unchanged. `hash` comes from users_hash_password() (or is "!").
 *   users_add:      a new user.
 *   users_set_hash: a new password hash for an existing user.
 *   users_set_role: a new role for an existing user.
 *   users_del:      a user, with the aliases it owns and its list
 *                   memberships (lists left empty are removed too).
 *   users_alias_add: alias `name` owned by user `owner`.
 *   users_list_set: list `name` (created or replaced) with `members`,
 *                   names separated by spaces or commas.
 *   users_remove:   an alias or a list.
 */
int users_add(struct users_db *db, const char *name, enum users_role role,
	      const char *hash, char *err, size_t errlen);
int users_set_hash(struct users_db *db, const char *name, const char *hash,
		   char *err, size_t errlen);
int users_set_role(struct users_db *db, const char *name, enum users_role role,
		   char *err, size_t errlen);
int users_del(struct users_db *db, const char *name, char *err, size_t errlen);
int users_alias_add(struct users_db *db, const char *name, const char *owner,
		    char *err, size_t errlen);
int users_list_set(struct users_db *db, const char *name, const char *members,
		   char *err, size_t errlen);
int users_remove(struct users_db *db, const char *name, char *err, size_t errlen);

/*
 * Hash `password` with a fresh random salt (getrandom) and
 * USERS_KDF_ITERATIONS rounds into `out` (USERS_HASH_MAX + 1 bytes is
 * enough). Returns 0, or -1 (no randomness, password too long, small buffer).
 */
int users_hash_password(const char *password, char *out, size_t outlen);

/* The same with a given salt and round count (tests, migrations). */
int users_hash_password_with(const char *password, const unsigned char *salt,
			     size_t saltlen, unsigned iterations,
			     char *out, size_t outlen);

/*
 * 1 if `password` matches `hash`, 0 if not, -1 if `hash` is malformed.
 * The comparison is constant-time.
 */
int users_check_hash(const char *hash, const char *password);

/*
 * 1 if `user` (case-insensitive) exists, may log in and `password` is right,
 * else 0. Unknown and disabled users cost the same KDF work as known ones.
 */
int users_verify(const struct users_db *db, const char *user, const char *password);

/* Prepare a cache with a random key; without randomness it stays unused. */
void users_cache_init(struct users_cache *c);

/*
 * users_verify() with a cache: a credential verified in the last
 * USERS_CACHE_TTL seconds (clock `now`) is accepted without the KDF. The
 * cache keeps only HMAC-SHA256(random key, user, stored hash, password),
 * never the password; a changed password hash invalidates the entry.
 * Failures are never cached. Safe to call from several threads at once:
 * the cache locks only its slot table, so the KDFs of several logins run
 * in parallel (the caller keeps db unchanged meanwhile).
 */
int users_verify_cached(const struct users_db *db, struct users_cache *c,
			const char *user, const char *password, time_t now);

/*
 * 1 if `address` (local@domain, or a bare local part) belongs to `domain`
 * (case-insensitive), else 0.
 */
int users_is_local(const char *address, const char *domain);

/*
 * Local users an address delivers to: users, aliases and lists of `domain`,
 * with duplicates removed, written to `out` (at most `max` names). Returns
 * the count (0: not local, or no such name), or -1 if the address is
 * malformed or expands to more than `max` users.
 */
int users_resolve(const struct users_db *db, const char *address, const char *domain,
		  char out[][USERS_NAME_MAX + 1], size_t max);

/*
 * 1 if `user` may use `address` as its sender (MAIL FROM): the address is
 * in `domain` and its local part is the user's own name or an alias the
 * user owns. Else 0.
 */
int users_owns(const struct users_db *db, const char *user, const char *address,
	       const char *domain);

#endif
