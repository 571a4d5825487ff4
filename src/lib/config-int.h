/*
 * config-int.h - private to the configuration module (config*.c): the
 * section and key tables' types, the kept source lines, and the functions
 * the four parts share. Nothing outside src/lib/config*.c includes this;
 * the API is config.h.
 *
 *   config.c        tables, errors, instances, assigning values, the parser
 *   config-value.c  one parser and one formatter per value type
 *   config-check.c  validation across settings (config_validate)
 *   config-edit.c   serialisation that keeps comments, get/set/unset, save
 */
#ifndef POSTERN_CONFIG_INT_H
#define POSTERN_CONFIG_INT_H

#include <stddef.h>

#include "config.h"


#define CONFIG_LINES_MAX   20000                 /* lines in one file */
#define CONFIG_WRAP        72                    /* list lines wrap after this */
#define DURATION_MAX       (10u * 366 * 86400)   /* ten years, in seconds */
#define SIZE_MAX_BYTES     (1ull << 40)          /* 1T */
#define VALUE_MAX          1024                  /* one formatted value or item */
#define CONFIG_FILE_MODE   0644
#define DEFAULT_CA_FILE    "/etc/ssl/certs/ca-certificates.crt"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- types and tables ---------------------------------------------------- */

enum type {
	T_STR, T_LABEL, T_NAME, T_DOMAIN, T_HOST, T_PORT, T_BOOL, T_ENUM,
	T_DURATION, T_SIZE, T_INT, T_ADDR, T_PREFIX, T_NET, T_PIN, T_SECRET,
	T_PATH, T_USER, T_IFNAME, T_AGEKEY, T_TIME, T_EXT, T_RCPT, T_DNSHOST,
	T_ALLOW, T_RANGE,
};

enum kind { K_SCALAR, K_LIST, K_REPEAT };

#define F_DERIVED 1   /* when unset, config_validate computes the value */

struct key {
	const char *name;
	enum type type;
	enum kind kind;
	size_t off, size;        /* storage in the section; size of one item */
	size_t count_off;        /* K_LIST, K_REPEAT: the int count */
	int max;                 /* K_LIST, K_REPEAT: capacity */
	int lo, hi;              /* T_INT range */
	const char *const *words;/* T_ENUM */
	const char *def;         /* default, as text; NULL: none */
	int flags;
};

struct sect_desc {
	const char *name;        /* "" for the global settings */
	size_t off, size;        /* the (first) instance in struct config */
	int named;               /* [account NAME]: repeatable, in account[] */
	const struct key *keys;
	int nkeys;
};

enum { SD_GLOBAL, SD_WAN, SD_LAN, SD_SMTP, SD_SMARTHOST, SD_DNS, SD_FIREWALL,
       SD_FILTER, SD_BACKUP, SD_ACCOUNT, SD_COUNT };


/* Instances: the SD_ACCOUNT fixed ones, then one per account. */
#define INSTANCES (SD_ACCOUNT + CONFIG_ACCOUNTS_MAX)

/* ---- the kept source ----------------------------------------------------- */

enum line_type { LN_BLANK, LN_COMMENT, LN_HEADER, LN_KEY };

/* One source line; offsets point into config_doc.src, which is unchanged. */
struct line {
	enum line_type type;
	size_t off, len;         /* comment text, or a key's trailing comment */
	size_t raw_off, raw_len; /* the whole line */
	size_t voff, vlen;       /* LN_KEY: the value as written */
	int ind, pad, cpad;      /* LN_KEY: indent; value and comment columns */
	int sd, key;             /* LN_HEADER, LN_KEY */
	char name[CONFIG_NAME_MAX + 1];
};

struct config_doc {
	char *src;
	struct line *lines;
	int nlines;
};

/* A value parser's error: the message into err (cap bytes), and -1. */
#define PERR(...) (snprintf(err, cap, __VA_ARGS__), -1)

extern const struct sect_desc cfg_sects[SD_COUNT];

/* ---- shared between the parts (definitions say more) ---------------------- */

void cfg_err_clear(struct config_errors *errs);
int cfg_err_add(struct config_errors *errs, const char *name, int line,
                   int sd, const char *inst, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
struct config_sect *cfg_inst_at(const struct config *cfg, int sd, int idx);
int cfg_account_index(const struct config *cfg, const char *name);
struct config_sect *cfg_inst_find(const struct config *cfg, int sd, const char *name);
int cfg_inst_slot(const struct config *cfg, int sd, const char *name);
void *cfg_field(const struct config_sect *s, const struct key *k);
int *cfg_count_of(const struct config_sect *s, const struct key *k);
int cfg_key_index(int sd, const char *name);
int cfg_sect_index(const char *name);
int cfg_assign(const struct key *k, struct config_sect *s, const char *text,
                  int append, char *err, size_t cap);
void cfg_reset_key(const struct key *k, int ki, struct config_sect *s);
void cfg_init_section(int sd, struct config_sect *s, const char *name);
int cfg_account_name_ok(const char *s);
struct config_account *cfg_account_add(struct config *cfg, const char *name);
int cfg_doc_line(const struct config_doc *d, int sd, const char *name, int key);
char *cfg_trim(char *s);
int cfg_parse_item(const struct key *k, const char *s, void *out, char *err, size_t cap);
void cfg_format_item(const struct key *k, const void *v, char *buf, size_t cap);
void cfg_derive(struct config *cfg);

#endif
