/*
 * pop3-proto.h - the POP3 client protocol core (RFC 1939, RFC 2449 CAPA,
 * RFC 2595 STLS, RFC 5034 AUTH PLAIN), without any I/O.
 *
 * A struct pop3_reader is a push parser for one server response: bytes go
 * in (pop3_reader_feed) exactly as they came off the connection, and it
 * says when the response is complete and how many bytes it used (the rest
 * belongs to the next response). It parses
 *
 *   - the status line: "+OK text" or "-ERR text" (RFC 1939 section 3),
 *     at most POP3_STATUS_MAX bytes;
 *   - for multi-line commands (RETR, TOP, UIDL, LIST, CAPA) after "+OK", the
 *     body up to the terminating ".CRLF", dot-unstuffed (a line starting
 *     with "." has that "." removed, RFC 1939 section 3), streamed to a sink
 *     callback in chunks of at most POP3_CHUNK bytes: never a whole message
 *     in memory.
 *
 * Byte exactness: only CRLF ends a line on the wire. With crlf_to_lf set
 * (the Maildir convention: messages are stored with LF line ends), each CRLF
 * becomes LF; every other byte, bare CR and bare LF included, reaches the
 * sink unchanged. Without it the sink sees CRLF as sent. The terminating
 * ".CRLF" is never passed on. A body larger than body_max is a sticky
 * error: the reader keeps parsing to the terminator (so the connection
 * stays in step) but passes on only the first body_max bytes, and sets
 * too_big (the caller discards the partial body).
 *
 * Helpers parse CAPA, UIDL and LIST lines, and build the AUTH PLAIN
 * initial response. A fuzzer drives all of it from byte arrays
 * (tests/fuzz/fuzz_pop3.c).
 */
#ifndef POSTERN_POP3_PROTO_H
#define POSTERN_POP3_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* RFC 2449 section 4: a response line is at most 512 octets with CRLF;
 * some servers send longer greetings, so allow twice that. */
#define POP3_STATUS_MAX 1024
/* Bytes handed to the sink at once. */
#define POP3_CHUNK 8192
/* RFC 1939 section 7: a unique-id is 1 to 70 characters 0x21-0x7E. */
#define POP3_UIDL_MAX 70
/* A line of a UIDL / LIST / CAPA listing. */
#define POP3_LISTLINE_MAX 512
/* The CAPA response kept for parsing. */
#define POP3_CAPA_MAX 4096

/* Results of pop3_reader_feed / pop3_reader_status. */
enum pop3_result {
	POP3_NEED = 0,		/* the response is not complete yet */
	POP3_DONE = 1,		/* complete: see ok, and too_big */
	POP3_EMALFORMED = -1,	/* the status line is neither +OK nor -ERR */
	POP3_ETOOLONG = -2,	/* the status line exceeds POP3_STATUS_MAX */
	POP3_ESINK = -3,	/* the sink returned -1 */
};

/* Receives body bytes; returns 0, or -1 to fail the response (POP3_ESINK;
 * the reader is then unusable: close the connection). */
typedef int (*pop3_sink_fn)(void *arg, const void *data, size_t len);

enum pop3_rstate {
	POP3_R_STATUS, POP3_R_BOL, POP3_R_DOT, POP3_R_DOTCR, POP3_R_MID,
	POP3_R_CR, POP3_R_DONE, POP3_R_FAILED
};

struct pop3_reader {
	/* settings (pop3_reader_start) */
	int multi;			/* a multi-line body follows +OK */
	int crlf_to_lf;
	uint64_t body_max;		/* 0: no limit */
	pop3_sink_fn sink;
	void *arg;
	/* results */
	int ok;				/* 1: +OK, 0: -ERR */
	int too_big;			/* the body exceeded body_max */
	uint64_t body_len;		/* bytes passed to the sink */
	uint64_t wire_len;		/* body bytes read off the wire */
	char status[POP3_STATUS_MAX + 1]; /* the status line, without CRLF */
	size_t status_len;
	/* private */
	enum pop3_rstate st;
	size_t out_len;
	unsigned char out[POP3_CHUNK];
};

/*
 * Prepares r for the next response. multi: the command has a multi-line
 * answer after +OK (RETR, TOP, UIDL and LIST without argument, CAPA).
 * sink may be NULL to discard the body.
 */
void pop3_reader_start(struct pop3_reader *r, int multi, int crlf_to_lf,
	uint64_t body_max, pop3_sink_fn sink, void *arg);

/*
 * Feeds len bytes. Returns POP3_NEED when all were used and more are
 * needed, POP3_DONE when the response ended (*used says how many bytes of
 * data were part of it), or a negative enum pop3_result. After POP3_DONE
 * or an error, pop3_reader_start must be called before feeding again.
 */
int pop3_reader_feed(struct pop3_reader *r, const void *data, size_t len, size_t *used);

/*
 * Parses one status line (without CRLF). Returns 1 for "+OK", 0 for
 * "-ERR", -1 otherwise. *text points after the indicator and its blank
 * (may be ""). RFC 1939 section 3: the indicator is upper case and is
 * followed by a blank or the end of the line.
 */
int pop3_status_parse(const char *line, size_t len, const char **text);

/* RFC 3206 / RFC 2449 section 8 response code at the start of a status
 * text: "[IN-USE]", "[AUTH]", "[SYS/TEMP]", "[SYS/PERM]", ... Returns 1
 * and copies the code (without brackets, at most cap-1 bytes) to out when
 * there is one, else 0. */
int pop3_resp_code(const char *text, char *out, size_t cap);

/* Capabilities from CAPA (RFC 2449 section 6; names are case-insensitive). */
struct pop3_capa {
	int stls;		/* RFC 2595 */
	int uidl;
	int top;
	int user;
	int sasl_plain;		/* "SASL ... PLAIN ..." (RFC 5034) */
	int pipelining;
	int resp_codes;
};

/*
 * Parses a CAPA body (the lines as the reader produced them, LF or CRLF
 * separated). Unknown capabilities are ignored. Returns 0 (never fails:
 * an empty or garbled body means no capabilities).
 */
int pop3_capa_parse(const char *body, size_t len, struct pop3_capa *capa);

/*
 * Parses a UIDL listing line "MSGNO UID" (RFC 1939 section 7): MSGNO a
 * decimal 1..2^31-1, UID 1..POP3_UIDL_MAX characters 0x21-0x7E. Trailing
 * blanks and CR are ignored. Returns 0, or -1 when malformed.
 */
int pop3_uidl_line(const char *line, size_t len, unsigned *msgno,
	char uid[POP3_UIDL_MAX + 1]);

/* 1 when uid (NUL-terminated) is a valid unique-id, else 0. */
int pop3_uid_valid(const char *uid);

/*
 * Parses a scan listing line "MSGNO OCTETS" (RFC 1939 section 5, LIST).
 * Extra text after the size is allowed (section 5 permits it). Returns 0,
 * or -1 when malformed.
 */
int pop3_list_line(const char *line, size_t len, unsigned *msgno, uint64_t *size);

/*
 * Builds the AUTH PLAIN initial response (RFC 4616: "\0user\0pass",
 * base64) into out (cap bytes, NUL-terminated). Returns its length, or -1
 * when it does not fit. The clear-text copy is wiped.
 */
int pop3_auth_plain(const char *user, const char *pass, char *out, size_t cap);

/*
 * Collects the lines of a listing body for a per-line callback: use
 * pop3_lines_sink as the reader's sink with a struct pop3_lines as arg.
 * Lines longer than POP3_LISTLINE_MAX make the sink fail (the listing is
 * not trustworthy). fn gets each line without its LF / CRLF; returning -1
 * fails the response. Call pop3_lines_end after POP3_DONE for a last line
 * without terminator.
 */
struct pop3_lines {
	int (*fn)(void *arg, const char *line, size_t len);
	void *arg;
	size_t len;
	char buf[POP3_LISTLINE_MAX + 1];
};

void pop3_lines_init(struct pop3_lines *l, int (*fn)(void *, const char *, size_t), void *arg);
int pop3_lines_sink(void *arg, const void *data, size_t len);
int pop3_lines_end(struct pop3_lines *l);

#endif
