/*
 * imap-proto.h - the IMAP4rev1 command core (RFC 3501, 7888, 4466): it
 * assembles one whole command out of lines and literals, then tokenizes it.
 * Nothing here touches a socket or a file, so unit tests and the fuzzer
 * drive it from byte arrays; src/imapd/ moves the bytes.
 *
 * 1. Assembly (struct imap_cmd). The daemon reads lines with linebuf and
 *    gives each to imap_cmd_line(). A line ending in a literal announcement
 *    "{n}" or "{n+}" (LITERAL+, RFC 7888) returns IMAP_CMD_LITERAL: the
 *    caller switches the linebuf to raw mode for imap_cmd_literal_left()
 *    bytes, sends "+ " first when imap_cmd_sync() says the client waits for
 *    it, and hands the raw chunks to imap_cmd_raw(). A line without one
 *    finishes the command (IMAP_CMD_DONE): imap_cmd_text() is then the
 *    command as it came on the wire (lines with CRLF, literal bytes in
 *    place), ready for the tokenizer.
 *
 *    Limits are sticky per command (OpenSMTPD's transaction error): a line
 *    over IMAP_LINE_MAX, a command over IMAP_CMD_MAX, a literal over the
 *    limit make the command fail, but its remaining lines and
 *    non-synchronizing literals are still read and dropped (RFC 7888 4), so
 *    the answer is one tagged BAD in order: IMAP_CMD_FAILED with
 *    imap_cmd_error(). A synchronizing literal that is too large is
 *    refused at once (IMAP_CMD_FAILED): the client never sends it
 *    (RFC 3501 7.5: the server answers BAD instead of "+").
 *    Only APPEND may carry literals larger than IMAP_CMD_MAX (up to
 *    IMAP_APPEND_MAX, advertised as APPENDLIMIT).
 *
 * 2. Tokens (struct imap_parser): a cursor over the assembled text. Every
 *    function returns 0 and advances, or -1 leaving an error text (for the
 *    tagged BAD) in p->err; the cursor never passes the end.
 *
 * 3. Sequence sets (RFC 3501 9, "sequence-set"): ranges, '*' as
 *    IMAP_SEQ_STAR, resolved against the mailbox's largest number.
 *
 * 5. FETCH renderings (RFC 3501 7.4.2) over a mime.h tree: ENVELOPE,
 *    BODY and BODYSTRUCTURE (with extension data), and the resolution of
 *    a BODY[section] spec to an entity and a byte range of the message,
 *    written into a growable struct imap_buf.
 *
 * 4. Mailbox names in modified UTF-7 (RFC 3501 5.1.3): strict decoding to
 *    UTF-8 (printable ASCII must not be encoded, "&" is "&-", base64 runs
 *    end in '-', leftover bits are zero, UTF-16 surrogates pair up) and
 *    encoding of UTF-8.
 */
#ifndef POSTERN_IMAP_PROTO_H
#define POSTERN_IMAP_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "mime.h"

#define IMAP_LINE_MAX 8192            /* one line of a command, CRLF not counted */
#define IMAP_CMD_MAX 65536            /* a whole command, small literals included */
#define IMAP_APPEND_MAX (32u << 20)   /* an APPEND message literal (APPENDLIMIT) */
#define IMAP_CMD_KEEP 4096            /* buffer kept between commands */
#define IMAP_TAG_MAX 64               /* bytes in a tag */
#define IMAP_ATOM_MAX 1024            /* bytes in an atom token */
#define IMAP_LITERALS_MAX 64          /* literals in one command */
#define IMAP_SEQ_STAR UINT32_MAX      /* '*' in a sequence set */
#define IMAP_SEQSET_MAX 65536         /* ranges in one sequence set */
#define IMAP_ERR_MAX 96               /* bytes of an error text */
#define IMAP_MODSEQ_MAX ((UINT64_C(1) << 63) - 1)   /* RFC 7162 7: 63-bit mod-sequences */

/* ---- 1. assembly ----------------------------------------------------------- */

enum imap_cmd_result {
	IMAP_CMD_MORE = 0,     /* keep feeding lines */
	IMAP_CMD_LITERAL = 1,  /* raw bytes follow: see imap_cmd_literal_left/_sync */
	IMAP_CMD_DONE = 2,     /* a whole command: imap_cmd_text */
	IMAP_CMD_FAILED = 3    /* the command is over and refused: imap_cmd_error */
};

struct imap_cmd {
	char *buf;             /* heap, grows up to the command's limit */
	size_t len, cap;
	uint64_t lit_left;     /* literal bytes still expected */
	int lit_sync;          /* the current literal wants "+ " first */
	int nlits;
	int append;            /* the command is APPEND (big literals allowed) */
	int failed;            /* sticky: drop the rest of this command */
	char err[IMAP_ERR_MAX];
	char tag[IMAP_TAG_MAX + 1];   /* as far as it could be read, else "*" */
};

/* An empty assembler (no memory yet). */
void imap_cmd_init(struct imap_cmd *c);
/* Frees the buffer. */
void imap_cmd_free(struct imap_cmd *c);
/* Forgets the finished command; keeps at most IMAP_CMD_KEEP bytes of buffer. */
void imap_cmd_reset(struct imap_cmd *c);
/* One line without its terminator (toolong: linebuf dropped it). */
int imap_cmd_line(struct imap_cmd *c, const char *line, size_t len, int toolong);
/* A chunk of literal bytes (at most imap_cmd_literal_left). */
int imap_cmd_raw(struct imap_cmd *c, const char *data, size_t len);
uint64_t imap_cmd_literal_left(const struct imap_cmd *c);
/* 1 when the client waits for a "+" continuation before the literal. */
int imap_cmd_sync(const struct imap_cmd *c);
/* The assembled command (valid after IMAP_CMD_DONE until the next reset). */
char *imap_cmd_text(struct imap_cmd *c, size_t *len);
const char *imap_cmd_error(const struct imap_cmd *c);
/* The command's tag for a reply ("*" if it had none readable). */
const char *imap_cmd_tag(const struct imap_cmd *c);

/* ---- 2. tokens ------------------------------------------------------------ */

struct imap_parser {
	char *s;               /* the assembled command (literals in place) */
	size_t len, pos;
	const char *err;       /* why the last call failed */
};

void imap_parser_init(struct imap_parser *p, char *s, size_t len);
/* The next byte without taking it (-1 at the end of the line). */
int imap_peek(const struct imap_parser *p);
/* One space. */
int imap_sp(struct imap_parser *p);
/* Takes `ch` if it is next: 1 taken, 0 not. */
int imap_take(struct imap_parser *p, int ch);
/* The end of the command (CRLF, or the end of the text). */
int imap_eol(struct imap_parser *p);
/* A tag: 1..IMAP_TAG_MAX astring characters except '+' (RFC 3501 9). */
int imap_tag(struct imap_parser *p, char *out, size_t cap);
/* An atom (ATOM-CHAR+), copied NUL-terminated. */
int imap_atom(struct imap_parser *p, char *out, size_t cap);
/* A fetch-att style token: atom characters plus '[' ... ']' sections
 * with their contents (BODY.PEEK[HEADER.FIELDS (A B)]<0.100>): up to the
 * next space outside brackets or ')'. */
int imap_fetch_token(struct imap_parser *p, char *out, size_t cap);
/* A number (RFC 3501 9 "number", 32 bits) / nz-number. */
int imap_number(struct imap_parser *p, uint32_t *out);
int imap_nznumber(struct imap_parser *p, uint32_t *out);
/* An RFC 7162 mod-sequence-valzer (0 .. IMAP_MODSEQ_MAX); callers that
 * need a mod-sequence-value check for 0. */
int imap_modseq(struct imap_parser *p, uint64_t *out);
/* A one-item modifier list "(NAME value)" as RFC 7162 adds to FETCH
 * (CHANGEDSINCE) and STORE (UNCHANGEDSINCE), NAME matched without case. */
int imap_modifier(struct imap_parser *p, const char *name, uint64_t *out);
/* A string (quoted or literal), astring (also an atom with ']'), nstring
 * (also NIL: *out_len = SIZE_MAX), copied NUL-terminated into out. A NUL
 * byte is refused. */
int imap_string(struct imap_parser *p, char *out, size_t cap, size_t *out_len);
int imap_astring(struct imap_parser *p, char *out, size_t cap, size_t *out_len);
/* A LIST/LSUB pattern: an astring that may also hold '%' and '*'. */
int imap_list_mailbox(struct imap_parser *p, char *out, size_t cap, size_t *out_len);
/* A literal left in place (APPEND's message): *data points into p->s. */
int imap_literal_ref(struct imap_parser *p, const char **data, size_t *len);

/* ---- 3. sequence sets ------------------------------------------------------ */

struct imap_range {
	uint32_t lo, hi;       /* lo <= hi once resolved; IMAP_SEQ_STAR for '*' */
};

struct imap_seqset {
	struct imap_range *r;  /* heap */
	size_t n;
};

/* Parses a sequence-set token. Free with imap_seqset_free. */
int imap_seqset(struct imap_parser *p, struct imap_seqset *set);
int imap_seqset_parse(const char *s, struct imap_seqset *set);
void imap_seqset_free(struct imap_seqset *set);
/* 1 if n is in the set, '*' meaning `star` (the largest number in use). */
int imap_seqset_has(const struct imap_seqset *set, uint32_t n, uint32_t star);

/* ---- 4. modified UTF-7 mailbox names --------------------------------------- */

/* Decodes mUTF-7 `in` into UTF-8 `out` (NUL-terminated). Returns the length,
 * or -1 when `in` is not strictly valid or does not fit. */
long imap_mutf7_decode(const char *in, char *out, size_t cap);
/* Encodes UTF-8 `in` (validated: no overlongs, surrogates or > U+10FFFF)
 * into mUTF-7 `out`. Returns the length or -1. */
long imap_mutf7_encode(const char *in, char *out, size_t cap);
/* 1 if `in` is valid mUTF-7 (as a mailbox name must be), else 0. */
int imap_mutf7_valid(const char *in);

/* ---- 5. FETCH renderings ------------------------------------------------------ */

#define IMAP_QUOTED_MAX 1024          /* longer strings are sent as literals */
#define IMAP_SECTION_PARTS_MAX 32     /* numbers in a section spec "1.2.3" */

/* A growable output buffer; `oom` is sticky. */
struct imap_buf {
	char *p;
	size_t len, cap;
	int oom;
};

void imap_buf_add(struct imap_buf *b, const void *data, size_t len);
void imap_buf_puts(struct imap_buf *b, const char *s);
/* A string as a quoted string, or a literal when quoting cannot carry it
 * (8-bit, CR, LF, NUL, or longer than IMAP_QUOTED_MAX). */
void imap_buf_string(struct imap_buf *b, const char *s, size_t len);
/* A string, or NIL for NULL. */
void imap_buf_nstring(struct imap_buf *b, const char *s);
void imap_buf_free(struct imap_buf *b);

/* ENVELOPE of message entity i (the root, or the child of a message/rfc822
 * part): date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to,
 * message-id; sender and reply-to default to from (RFC 3501 7.4.2). */
void imap_envelope(struct imap_buf *b, const struct mime *m, int i);
/* BODYSTRUCTURE (ext = 1) or BODY (ext = 0) of entity i. */
void imap_bodystructure(struct imap_buf *b, const struct mime *m, int i, int ext);

enum imap_sect { IMAP_SECT_ALL, IMAP_SECT_HEADER, IMAP_SECT_TEXT, IMAP_SECT_MIME,
		 IMAP_SECT_FIELDS, IMAP_SECT_FIELDS_NOT };

struct imap_section {
	enum imap_sect what;
	int part;                  /* the entity whose bytes are meant, -1: none */
	uint64_t off, len;         /* the byte range in the file */
	uint64_t len_n;            /* its length as sent (bare LF -> CRLF) */
	const char *fields;        /* HEADER.FIELDS: "(A B)" inside the spec */
};

/* Checks a section spec (what is between "BODY[" and "]": "", "HEADER",
 * "1.2.TEXT", "3.MIME", "HEADER.FIELDS (A B)") without a message: 0, -1. */
int imap_section_check(const char *spec);
/* Resolves a spec against a message (RFC 3501 6.4.5): 0, or -1 when the
 * spec is invalid. A part number that does not exist gives an empty range
 * (the section is then sent as the empty string, as other servers do). */
int imap_section_resolve(const struct mime *m, const char *spec, struct imap_section *out);
/* 1 if header line `line` (a field's first line) names a field in the
 * list "(A B C)" of a HEADER.FIELDS spec, case-insensitively. */
int imap_fields_has(const char *list, const char *line, size_t len);

#endif
