/*
 * config.h - the box's one configuration file (postern.conf): parser,
 * in-memory model, validation, serialisation and atomic save. The format is
 * documented in docs/CONFIG.md; in short:
 *
 *     # comment
 *     hostname postern                 global settings: "key value"
 *     mail-domain example.com
 *     [smarthost]                      a section
 *     host smtp.provider.example
 *     port 587
 *     [account acme]                   a named section (repeatable kind)
 *     server pop.provider.example
 *
 * Users are not in this file (see the users file), nor secrets: settings
 * such as "password-file acme.pass" name a file under the secrets directory.
 *
 * Memory: a struct config is one heap block plus the list of source lines
 * (kept so that saving preserves comments and order). No function here
 * exits, aborts or prints; errors are collected in a struct config_errors.
 *
 * Daemons re-read on SIGHUP and keep the old model when the new file is
 * invalid:
 *
 *     static struct config *cfg;      // the model in use
 *     static volatile sig_atomic_t hup;
 *     ...in the event loop, after SIGHUP set hup:
 *     struct config_errors errs;
 *     struct config *fresh = config_load(path, &errs);
 *     if (fresh) { config_free(cfg); cfg = fresh; apply(cfg); }
 *     else for (int i = 0; i < errs.count; i++)
 *         syslog(LOG_ERR, "%s (keeping the previous configuration)", errs.e[i].text);
 *
 * The web page and the command line change settings with config_set /
 * config_unset (each value validated by the parser's own code), then call
 * config_validate for the cross-checks, then config_save.
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* ---- limits ------------------------------------------------------------- */
#define CONFIG_FILE_MAX      (256 * 1024) /* bytes in postern.conf */
#define CONFIG_LINE_MAX      1024         /* bytes in one line, without the newline */
#define CONFIG_ERRORS_MAX    50           /* errors kept; the rest are counted */
#define CONFIG_ERROR_LEN     256          /* bytes in one error message */
#define CONFIG_ACCOUNTS_MAX  16           /* [account NAME] sections */
#define CONFIG_NAME_MAX      32           /* account names, local user names */
#define CONFIG_HOST_MAX      253          /* host and domain names */
#define CONFIG_STR_MAX       255          /* free strings (login names) */
#define CONFIG_PATH_MAX      255          /* file paths and secret references */
#define CONFIG_IFNAME_MAX    15           /* network interface names */
#define CONFIG_ADDRS_MAX     4            /* addresses in a list (dns, upstream) */
#define CONFIG_PORTS_MAX     32           /* ports in a list */
#define CONFIG_BRIDGE_MAX    8            /* bridge ports of the LAN */
#define CONFIG_NETS_MAX      32           /* hosts/prefixes in a list */
#define CONFIG_RCPTS_MAX     32           /* port-25 recipients */
#define CONFIG_DOMAINS_MAX   32           /* rebinding exceptions */
#define CONFIG_EXTS_MAX      64           /* blocked attachment extensions */
#define CONFIG_EXT_MAX       15           /* bytes in one extension */
#define CONFIG_DNSHOSTS_MAX  256          /* static DNS hosts */
#define CONFIG_HOSTADDRS_MAX 2            /* addresses per static host */
#define CONFIG_ALLOWS_MAX    32           /* firewall exceptions */
#define CONFIG_AGEKEY_MAX    100          /* bytes in an age recipient */

/* ---- value types ---------------------------------------------------------- */

/* An IPv4 (family AF_INET, 4 bytes used) or IPv6 (AF_INET6) address. */
struct config_addr {
	int family;
	unsigned char a[16];
};

/* An address with a prefix length (/0-32 or /0-128). */
struct config_prefix {
	struct config_addr addr;
	int len;
};

/* A SHA-256 of a server's SubjectPublicKeyInfo (written as 64 hex digits or
 * base64; saved as hex). */
struct config_pin {
	unsigned char sha256[32];
};

/* "host NAME ADDRESS [ADDRESS]" in [dns]. */
struct config_dnshost {
	char name[CONFIG_HOST_MAX + 1];
	struct config_addr addr[CONFIG_HOSTADDRS_MAX];
	int naddr;
};

/* "allow HOST|PREFIX [PORT...]" in [firewall]: no ports = all blocked ports. */
struct config_allow {
	struct config_prefix net;
	uint16_t ports[CONFIG_PORTS_MAX];
	int nports;
};

/* "dhcp-range FIRST LAST" in [lan]. */
struct config_range {
	struct config_addr first, last;
};

enum config_tls_pop { CONFIG_POP_STLS, CONFIG_POP_IMPLICIT };
enum config_tls_smtp { CONFIG_SMTP_STARTTLS, CONFIG_SMTP_IMPLICIT };
enum config_verify { CONFIG_VERIFY_CA, CONFIG_VERIFY_PIN };
enum config_wan_mode { CONFIG_WAN_DHCP, CONFIG_WAN_STATIC };
enum config_unknown { CONFIG_UNKNOWN_REJECT, CONFIG_UNKNOWN_RELAY };
enum config_masq { CONFIG_MASQ_DOMAIN, CONFIG_MASQ_LOGIN, CONFIG_MASQ_OFF };
enum config_dns_transport { CONFIG_DNS_UDP, CONFIG_DNS_TLS };
enum config_intercept { CONFIG_INTERCEPT_REDIRECT, CONFIG_INTERCEPT_REJECT };
enum config_att_action { CONFIG_ATT_REJECT, CONFIG_ATT_QUARANTINE };
enum config_spam { CONFIG_SPAM_OFF, CONFIG_SPAM_TAG, CONFIG_SPAM_QUARANTINE };
enum config_schedule { CONFIG_SCHED_DAILY, CONFIG_SCHED_WEEKLY };

/*
 * Every section starts with this header. set has bit i when the section's
 * i-th setting (in docs/CONFIG.md order) was given explicitly; unset
 * settings hold their defaults. Durations are in seconds, sizes in bytes.
 */
struct config_sect {
	uint64_t set;
	char name[CONFIG_NAME_MAX + 1];   /* account name; "" for the others */
};

struct config_global {
	struct config_sect h;
	char hostname[CONFIG_HOST_MAX + 1];        /* one label: "postern" */
	char mail_domain[CONFIG_HOST_MAX + 1];     /* "example.com" (required) */
	char internal_domain[CONFIG_HOST_MAX + 1]; /* "office.lan" */
	uint64_t mailbox_quota;                    /* bytes per user, 0: no limit */
};

struct config_wan {
	struct config_sect h;
	char interface[CONFIG_IFNAME_MAX + 1];
	int mode;                                  /* enum config_wan_mode */
	struct config_prefix address;              /* static mode */
	struct config_addr gateway;                /* static mode */
	struct config_addr dns[CONFIG_ADDRS_MAX];  /* static mode */
	int ndns;
};

struct config_lan {
	struct config_sect h;
	char interface[CONFIG_IFNAME_MAX + 1];
	char bridge_ports[CONFIG_BRIDGE_MAX][CONFIG_IFNAME_MAX + 1];
	int nbridge_ports;
	struct config_prefix address;
	struct config_prefix address6;             /* optional */
	struct config_addr gateway;                /* single-interface mode */
	int dhcp;                                  /* bool */
	struct config_range dhcp_range;            /* see config_dhcp_range() */
	unsigned dhcp_lease;
};

struct config_smtp {
	struct config_sect h;
	uint64_t max_message_size;
	int port25;                                /* bool */
	struct config_prefix port25_hosts[CONFIG_NETS_MAX];
	int nport25_hosts;
	char port25_recipients[CONFIG_RCPTS_MAX][CONFIG_STR_MAX + 1];
	int nport25_recipients;
	int unknown_recipients;                    /* enum config_unknown */
};

struct config_smarthost {
	struct config_sect h;
	char host[CONFIG_HOST_MAX + 1];
	uint16_t port;
	int tls;                                   /* enum config_tls_smtp */
	int verify;                                /* enum config_verify */
	struct config_pin pin;
	char ca_file[CONFIG_PATH_MAX + 1];
	char user[CONFIG_STR_MAX + 1];
	char password_file[CONFIG_PATH_MAX + 1];
	int masquerade;                            /* enum config_masq */
	char masquerade_domain[CONFIG_HOST_MAX + 1];
	unsigned give_up;
	unsigned delay_notice;
};

struct config_account {
	struct config_sect h;                      /* h.name: the account name */
	char server[CONFIG_HOST_MAX + 1];
	uint16_t port;
	int tls;                                   /* enum config_tls_pop */
	int verify;                                /* enum config_verify */
	struct config_pin pin;
	char ca_file[CONFIG_PATH_MAX + 1];
	char user[CONFIG_STR_MAX + 1];
	char password_file[CONFIG_PATH_MAX + 1];
	char deliver_to[CONFIG_NAME_MAX + 1];      /* a local user or "multidrop" */
	char catch_all[CONFIG_NAME_MAX + 1];
	int keep;                                  /* bool */
	unsigned poll;
	uint64_t max_size;
	int enabled;                               /* bool */
};

struct config_dns {
	struct config_sect h;
	struct config_addr upstream[CONFIG_ADDRS_MAX]; /* none: from WAN DHCP */
	int nupstream;
	int transport;                             /* enum config_dns_transport */
	char tls_name[CONFIG_HOST_MAX + 1];
	struct config_pin tls_pin;
	uint16_t tls_port;
	char ca_file[CONFIG_PATH_MAX + 1];         /* DoT: CA bundle for tls-name */
	uint64_t cache_size;
	unsigned min_ttl, max_ttl;
	char rebind_allow[CONFIG_DOMAINS_MAX][CONFIG_HOST_MAX + 1];
	int nrebind_allow;
	int rate_limit;                            /* queries per second per client */
	struct config_dnshost hosts[CONFIG_DNSHOSTS_MAX];
	int nhosts;
};

struct config_firewall {
	struct config_sect h;
	int single_interface;                      /* bool */
	uint16_t blocked_ports[CONFIG_PORTS_MAX];
	int nblocked_ports;
	int foreign_dns;                           /* enum config_intercept */
	struct config_allow allow[CONFIG_ALLOWS_MAX];
	int nallow;
	int log_blocked;                           /* bool */
};

struct config_filter {
	struct config_sect h;
	char block_extensions[CONFIG_EXTS_MAX][CONFIG_EXT_MAX + 1];
	int nblock_extensions;
	int attachment_action;                     /* enum config_att_action */
	int spam;                                  /* enum config_spam */
	int spam_threshold;
};

struct config_backup {
	struct config_sect h;
	int enabled;                               /* bool */
	char recipient[CONFIG_AGEKEY_MAX + 1];     /* age1... */
	int schedule;                              /* enum config_schedule */
	int time;                                  /* minutes after midnight */
	int keep;                                  /* backups kept */
	char destination[CONFIG_PATH_MAX + 1];
};

struct config_doc;   /* the source lines (private) */

struct config {
	struct config_global global;
	struct config_wan wan;
	struct config_lan lan;
	struct config_smtp smtp;
	struct config_smarthost smarthost;
	struct config_dns dns;
	struct config_firewall firewall;
	struct config_filter filter;
	struct config_backup backup;
	struct config_account account[CONFIG_ACCOUNTS_MAX];
	int naccounts;
	struct config_doc *doc;
};

/* One error: line is 0 when it is not tied to a line. */
struct config_errors {
	int count;        /* entries in e[] */
	int dropped;      /* errors beyond CONFIG_ERRORS_MAX */
	struct {
		int line;
		char text[CONFIG_ERROR_LEN];
	} e[CONFIG_ERRORS_MAX];
};

/* ---- loading ------------------------------------------------------------- */

/* A new model holding only defaults, or NULL when out of memory. */
struct config *config_new(void);

/* Frees a model (NULL is fine). */
void config_free(struct config *cfg);

/*
 * Parses len bytes of configuration text (need not be NUL-terminated) and
 * validates it (config_validate). name is used in messages
 * ("postern.conf:12: account \"acme\": port: 70000 is not a port number
 * (1-65535)"). Returns a new model, or NULL with every error found in errs
 * (an out-of-memory is reported there too).
 */
struct config *config_parse(const char *name, const char *buf, size_t len,
                            struct config_errors *errs);

/*
 * Reads the file at path (at most CONFIG_FILE_MAX bytes, no symlink as the
 * last component) and parses it as config_parse, naming it by path.
 * Returns a new model or NULL with the errors in errs.
 */
struct config *config_load(const char *path, struct config_errors *errs);

/*
 * Cross-checks a model (required settings, DHCP range inside the LAN
 * prefix, pins present where verify is pin, multidrop needs catch-all, ...)
 * and fills in derived defaults (an account's port from its tls mode, the
 * masquerade domain from mail-domain). Messages carry the line of the
 * setting when the model came from a file. Returns 0, or -1 with errs.
 */
int config_validate(struct config *cfg, const char *name, struct config_errors *errs);

/* ---- changing and saving ------------------------------------------------- */

/*
 * Sets one setting from its text form, validated by the parser's code.
 * key is "setting" (global), "section.setting" ("smarthost.port") or
 * "account.NAME.setting" (creates the account when missing). For list
 * settings value holds the whole list ("25 110 143"); for repeatable
 * settings (dns.host, firewall.allow) one entry per line ("\n"). An empty
 * value resets the setting to its default. On error nothing changes.
 * Returns 0, or -1 with a message in errs. Run config_validate before
 * saving.
 */
int config_set(struct config *cfg, const char *key, const char *value,
               struct config_errors *errs);

/*
 * Resets a setting to its default ("smarthost.pin"), or with
 * "account.NAME" removes that account. Returns 0, or -1 (unknown key or
 * account) with a message in errs.
 */
int config_unset(struct config *cfg, const char *key, struct config_errors *errs);

/*
 * Writes a setting's value in its text form into buf (cap bytes, always
 * NUL-terminated); repeatable settings give one entry per line, unset
 * settings their default ("" when there is none). Returns the length, or
 * -1 for an unknown key or a too small buffer.
 */
int config_get(const struct config *cfg, const char *key, char *buf, size_t cap);

/*
 * Serialises the model into buf (cap bytes, NUL-terminated): the source's
 * comments, blank lines and order are kept, changed settings are rewritten
 * in place, new ones are added at the end of their section, removed ones
 * dropped. Only explicitly set settings are written. Returns the length,
 * or -1 when cap is too small.
 */
int config_format(const struct config *cfg, char *buf, size_t cap);

/*
 * Validates the model and saves it to path atomically (temp file, fsync,
 * rename, fsync of the directory) with mode 0644. Returns 0, or -1 with
 * the validation or I/O errors in errs; the file is unchanged then.
 */
int config_save(struct config *cfg, const char *path, struct config_errors *errs);

/* 1 when both models hold the same settings (source lines are ignored). */
int config_equal(const struct config *a, const struct config *b);

/* ---- helpers for daemons ----------------------------------------------- */

/* The account named name, or NULL. */
const struct config_account *config_account(const struct config *cfg, const char *name);

/*
 * The LAN's DHCP range: dhcp-range when set, else the upper half of the
 * LAN's IPv4 prefix minus its broadcast address. Returns 0 or -1 when the
 * LAN prefix has no room.
 */
int config_dhcp_range(const struct config *cfg, struct config_range *out);

/* Parses a size ("0", "512K", "25M", "1G"; config syntax) into bytes.
 * Returns 0, or -1 when s is not a size or too large. */
int config_parse_size(const char *s, uint64_t *out);

/* Formats an address ("192.0.2.1", "2001:db8::1") into buf; returns buf. */
const char *config_addr_str(const struct config_addr *a, char *buf, size_t cap);

#endif
