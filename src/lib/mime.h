/*
 * mime.h - a bounded push parser for the structure of an RFC 5322 message
 * with MIME parts (RFC 2045, 2046): the IMAP server's BODYSTRUCTURE,
 * ENVELOPE and BODY[section] stand on it (imap-proto.h renders them).
 *
 * Push: mime_feed() takes the message in chunks of any size (the daemon
 * reads the file in pieces, never the whole message at once), mime_finish()
 * ends it. Pull: the result is a tree of entities in m->parts, each with
 * byte offsets into the message, so a section is later read straight from
 * the file:
 *
 *     hdr_off          body_off                 end_off
 *     | header fields  | blank line | body ...   | (CRLF) --boundary
 *
 * An entity is the message itself (parts[0]), a body part of a multipart,
 * or the message encapsulated in a message/rfc822 part (the only child of
 * that part, is_message set). A body ends before the line break that
 * precedes its boundary delimiter (RFC 2046 5.1.1: that CRLF belongs to
 * the delimiter). Lines: the line feeds in the body (Dovecot's count).
 *
 * IMAP sends messages with CRLF line ends (RFC 3501 2.2) while a Maildir
 * file may hold bare LFs: every offset exists twice, raw (in the file) and
 * as sent (each bare LF counted as CRLF: the *_n fields). Sizes in
 * BODYSTRUCTURE and RFC822.SIZE are the second kind.
 *
 * Of each entity's header only the fields BODYSTRUCTURE and ENVELOPE use
 * are kept (Content-*, and on messages Date, Subject, From, Sender,
 * Reply-To, To, Cc, Bcc, In-Reply-To, Message-ID), line by line.
 *
 * Bounds (named below): lines are analysed up to MIME_LINE_KEEP bytes
 * (a longer line is counted, never a boundary), kept fields per entity and
 * in total are capped, and so are entities and nesting. Past a bound the
 * parser stops splitting or keeping and sets `truncated`; it never fails
 * on content, only on memory.
 */
#ifndef POSTERN_MIME_H
#define POSTERN_MIME_H

#include <stddef.h>
#include <stdint.h>

#define MIME_LINE_KEEP 8192          /* bytes of a line analysed */
#define MIME_PARTS_MAX 512           /* entities in one message */
#define MIME_DEPTH_MAX 32            /* nesting of multiparts and messages */
#define MIME_BOUNDARY_MAX 70         /* RFC 2046 5.1.1 */
#define MIME_FIELDS_MAX 65536        /* kept header bytes of one entity */
#define MIME_KEEP_MAX (1u << 20)     /* kept header bytes of one message */
#define MIME_TYPE_MAX 128            /* bytes of a type or subtype */
#define MIME_PARAMS_MAX 32           /* parameters of one Content-Type */
#define MIME_VALUE_MAX 8192          /* bytes of one unfolded field value */
#define MIME_ADDRS_MAX 1024          /* addresses in one field */

enum mime_kind { MIME_LEAF, MIME_MULTIPART, MIME_MESSAGE };

struct mime_part {
	int parent;                  /* index, -1 for the message */
	int first_child, last_child, next;   /* -1: none */
	int nchildren;
	enum mime_kind kind;         /* MIME_MESSAGE: message/rfc822, child = the message */
	int is_message;              /* a whole message (has RFC 5322 fields) */
	uint64_t hdr_off, body_off, end_off;         /* in the file */
	uint64_t hdr_n, body_n, end_n;               /* as sent, with CRLF */
	uint64_t lines;              /* line feeds in the body */
	size_t fields_off, fields_len;   /* kept header lines in m->keep */
	char type[MIME_TYPE_MAX], subtype[MIME_TYPE_MAX];   /* lower case, defaults applied */
	char boundary[MIME_BOUNDARY_MAX + 1];
	/* parser state */
	int in_header, closed, keeping;
	uint64_t closed_next;        /* where the line after the close-delimiter starts */
};

struct mime {
	struct mime_part *parts;     /* heap */
	int nparts, cap;
	char *keep;                  /* kept header lines, '\n' after each */
	size_t keeplen, keepcap;
	int stack[MIME_DEPTH_MAX + 1];   /* open entities, the message at 0 */
	int depth;
	uint64_t off, off_n;         /* bytes fed so far (raw, as sent) */
	char line[MIME_LINE_KEEP];
	size_t linekeep;             /* bytes of the current line in line[] */
	uint64_t linelen, linestart; /* its real length and offset */
	uint64_t linestart_n;
	int cr;                      /* the current line's last byte was CR */
	unsigned prev_tl;            /* terminator length of the previous line */
	int truncated;               /* a bound was reached */
	int oom;                     /* memory ran out: the tree is unusable */
	int finished;
};

/* Starts a parse (allocates the message entity). 0 or -1. */
int mime_init(struct mime *m);
/* Frees the tree. */
void mime_free(struct mime *m);
/* The next bytes of the message. 0, or -1 out of memory. */
int mime_feed(struct mime *m, const void *data, size_t len);
/* The end of the message: closes every open entity. 0 or -1. */
int mime_finish(struct mime *m);
/* 1 once the message's own header has ended (its blank line was fed):
 * from then on parts[0]'s header offsets and kept fields are final, so
 * ENVELOPE, BODY[HEADER] and HEADER.FIELDS can be answered without
 * feeding the body (the tree is otherwise incomplete: no mime_finish). */
int mime_header_done(const struct mime *m);
/* Parses a whole message held in memory (init + feed + finish). */
int mime_parse(struct mime *m, const void *data, size_t len);

/* The first field `name` of entity i, unfolded, leading and trailing
 * white space removed, into out (truncated to cap). Its length, or -1
 * when the entity has no such field. */
long mime_field(const struct mime *m, int i, const char *name, char *out, size_t cap);

/* ---- field syntax (RFC 2045 5.1, RFC 5322 3.4) --------------------------- */

struct mime_param {
	char name[MIME_TYPE_MAX];
	char value[1024];
};

/* "type/subtype; a=b; c="d"" or a disposition "attachment; filename=x"
 * (subtype NULL). Comments are skipped, quoted values unquoted; values too
 * long are truncated. Returns the number of parameters (at most max), or
 * -1 when not even the type can be read. */
int mime_parse_ctype(const char *value, char *type, size_t tcap, char *subtype, size_t scap,
		     struct mime_param *params, int max);

/* One address of an address list: a mailbox, or a group start (mailbox
 * set, host NULL: RFC 3501 7.4.2) or group end (both NULL). */
struct mime_addr {
	char *name, *route, *mailbox, *host;   /* NULL: NIL; point into the caller's copy */
};

/* Splits an address list (modified in place: `s` is the caller's copy)
 * into at most max addresses. Returns the count (0: none). Malformed
 * pieces become mailbox-only addresses rather than errors. */
int mime_parse_addresses(char *s, struct mime_addr *out, int max);

#endif
