/*
 * tls.h - TLS 1.2 on BearSSL's engine, non-blocking, for servers and
 * verifying clients.
 *
 * Policy (fixed): TLS 1.2 only, ECDHE key exchange with AEAD suites only
 * (AES-GCM, ChaCha20-Poly1305), ECDSA or RSA certificates.
 *
 * Three layers, each usable alone:
 *
 * 1. The engine core, which never touches a socket (tests and fuzzers drive
 *    it from byte arrays): tls_feed() gives it ciphertext that arrived,
 *    tls_drain() takes ciphertext to send, tls_read()/tls_write() move
 *    plaintext.
 * 2. tls_pump(): moves ciphertext between the engine and a non-blocking
 *    socket as far as possible without blocking, and says which poll events
 *    it waits for. An event loop drives many connections with it.
 * 3. Blocking helpers with deadlines (tls_handshake, tls_read_fd,
 *    tls_write_fd, tls_close_fd) for simple clients such as the POP3
 *    fetcher. They poll() on the non-blocking fd until the deadline.
 *
 * Client verification: against a CA bundle plus the host name
 * (br_x509_minimal, validity dates checked against the clock), or against a
 * pinned SHA-256 of the server's SubjectPublicKeyInfo (the value of
 * `openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum`),
 * or both. A pin checks the key only (dates and names are not looked at: the
 * key is what was pinned). Verification happens inside the handshake, so a
 * rejected server never receives an application byte; the error text then
 * names the SPKI fingerprint the server presented.
 *
 * Memory: a struct tls_conn holds everything for one connection (no heap).
 * It points into itself: never copy it after starting it. Configurations
 * are shared read-only by all connections. Sizes on x86_64 (BearSSL 0.6,
 * gcc and musl alike; docs/TLS.md has the table):
 *
 *   tls_server_start / tls_client_start     sizeof(struct tls_conn) 42080
 *     built-in buffer of TLS_BUF_BIDI (33178 bytes), full duplex
 *   tls_*_start_buf, TLS_BUF_MONO           TLS_CONN_SIZE(16709)    25605
 *     half duplex: one record in flight, either way, at a time
 *   tls_*_start_buf, TLS_BUF_SMALL_BIDI     TLS_CONN_SIZE(17306)    26202
 *     full duplex, outgoing records of at most 512 bytes
 *
 * TLS_CONN_BASE_SIZE (8896) is the part before the built-in buffer.
 */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <bearssl.h>

#include "pem.h"

/* Longest error text kept per connection. */
#define TLS_ERR_MAX 320
/* Record buffer per connection: full-size records both ways. */
#define TLS_IOBUF_SIZE BR_SSL_BUFSIZE_BIDI
/* Record buffer sizes for tls_server_start_buf / tls_client_start_buf.
 * Incoming records may be 16 KB whatever we ask (a server cannot make a
 * client send less), so TLS_BUF_MONO is the least that works with any
 * peer. From TLS_BUF_SMALL_BIDI on, the buffer is split: 16709 bytes for
 * incoming records, the rest for outgoing ones (full duplex). */
#define TLS_BUF_MONO BR_SSL_BUFSIZE_MONO
#define TLS_BUF_BIDI BR_SSL_BUFSIZE_BIDI
#define TLS_BUF_OUT_MIN (512 + 85)	/* a 512-byte record and its overhead */
#define TLS_BUF_SMALL_BIDI (BR_SSL_BUFSIZE_INPUT + TLS_BUF_OUT_MIN)
/* A SHA-256 pin in hex, with its NUL. */
#define TLS_PIN_HEX 65

/* Server certificate chain and key, loaded once, shared by connections. */
struct tls_server_config {
	struct pem_chain chain;
	struct pem_key key;
	unsigned issuer_key_type;	/* BR_KEYTYPE_EC or _RSA: who signed the cert */
};

/* Loads the PEM chain (end-entity first) and key (EC or RSA); checks that
 * the key belongs to the first certificate. Returns 0, or -1 with err. */
int tls_server_config_load(struct tls_server_config *cfg, const char *cert_path,
	const char *key_path, char *err, size_t errlen);

/* The same from PEM text in memory. */
int tls_server_config_parse(struct tls_server_config *cfg, const char *cert_pem,
	size_t cert_len, const char *key_pem, size_t key_len, char *err, size_t errlen);

/* Frees the chain and wipes the key. */
void tls_server_config_free(struct tls_server_config *cfg);

/* Client verification settings. At least one of anchors and pin is needed. */
struct tls_client_config {
	const br_x509_trust_anchor *anchors;	/* CA bundle (pem_anchors) or NULL */
	size_t anchor_count;
	int have_pin;
	unsigned char pin[32];			/* SHA-256 of the server's SPKI */
	int64_t now;				/* Unix time for date checks; 0: the clock */
};

/* Parses a pin: 64 hex digits (colons allowed between bytes), optionally
 * prefixed "sha256:", or "sha256//" + base64 (the HPKP / curl form).
 * Returns 0 or -1. */
int tls_pin_parse(const char *text, unsigned char pin[32]);

/* Formats a pin as 64 lower-case hex digits. */
void tls_pin_format(const unsigned char pin[32], char out[TLS_PIN_HEX]);

/* Computes the pin of a public key (SHA-256 of its SPKI DER). Returns 0 or
 * -1 for an unsupported key. */
int tls_pin_of_key(const br_x509_pkey *pk, unsigned char pin[32]);

/* Verifying X.509 engine for the client (internal; embedded in tls_conn). */
struct tls_x509 {
	const br_x509_class *vtable;
	br_x509_minimal_context minimal;
	br_x509_decoder_context ee;	/* decodes the end-entity certificate */
	const struct tls_client_config *cfg;
	unsigned cert_index;
	int seen;			/* the server's key was decoded */
	unsigned char seen_pin[32];
	int pin_mismatch;
};

struct tls_conn {
	union {
		br_ssl_server_context srv;
		br_ssl_client_context cli;
	} u;
	br_ssl_engine_context *eng;
	struct tls_x509 x509;
	int is_client;
	int established;	/* the handshake completed */
	int transport_eof;	/* the socket reported end of file */
	int failed;
	int unflushed;		/* tls_write queued data not yet in a record */
	int close_pending;	/* tls_close waits for queued records */
	char err[TLS_ERR_MAX];
	size_t buf_len;		/* the record buffer in use (iobuf or the caller's) */
	int half_duplex;	/* one buffer for both directions */
	int send_error;		/* errno of a failed send; reading goes on */
	/* Must stay last: a connection started with a caller's buffer never
	 * touches it (see TLS_CONN_SIZE). */
	unsigned char iobuf[TLS_IOBUF_SIZE];
};

/* Bytes of a struct tls_conn before its built-in buffer. */
#define TLS_CONN_BASE_SIZE offsetof(struct tls_conn, iobuf)
/* Memory for a connection whose buffer of buflen bytes follows it in one
 * allocation: c = malloc(TLS_CONN_SIZE(n)), buffer (unsigned char *)c +
 * TLS_CONN_BASE_SIZE. Such a short struct tls_conn must come from malloc
 * (never a declared object) and be used through these functions only: a
 * compiler that sees the allocation rejects member accesses
 * (-Warray-bounds). */
#define TLS_CONN_SIZE(buflen) (TLS_CONN_BASE_SIZE + (buflen))

/* Starts a server connection (the caller then feeds the ClientHello).
 * Returns 0, or -1 with tls_error(). */
int tls_server_start(struct tls_conn *c, const struct tls_server_config *cfg);

/* Starts a client connection to server_name (sent as SNI and, with
 * anchors, matched against the certificate; may be NULL with a pin only).
 * cfg must outlive the connection. Returns 0, or -1 with tls_error(). */
int tls_client_start(struct tls_conn *c, const struct tls_client_config *cfg,
	const char *server_name);

/* The same with the caller's record buffer of len bytes instead of the
 * built-in one: len at least TLS_BUF_MONO; below TLS_BUF_SMALL_BIDI the
 * buffer serves both directions in turn (half duplex), from it on it is
 * split (full duplex; see TLS_BUF_*). buf must stay valid and unshared for
 * the life of the connection; iobuf is not used, so c may be allocated with
 * TLS_CONN_SIZE(0) bytes when buf is elsewhere. Returns 0, or -1 with
 * tls_error(). */
int tls_server_start_buf(struct tls_conn *c, const struct tls_server_config *cfg,
	void *buf, size_t len);
int tls_client_start_buf(struct tls_conn *c, const struct tls_client_config *cfg,
	const char *server_name, void *buf, size_t len);

/* The error text of a failed connection ("" while all is well). */
const char *tls_error(const struct tls_conn *c);

/* The SPKI fingerprint the server presented (client side), as hex in out;
 * returns 0, or -1 when no certificate was seen yet. */
int tls_peer_pin(const struct tls_conn *c, char out[TLS_PIN_HEX]);

/* 1 once the handshake has completed. */
int tls_established(struct tls_conn *c);

/* 1 when the connection is over: closed cleanly or failed. Decrypted data
 * may still wait for tls_read (see tls_app_pending). */
int tls_finished(struct tls_conn *c);

/* Nonzero when decrypted application bytes wait in the engine (BearSSL's
 * BR_SSL_RECVAPP): tls_read returns them at once. No socket event will
 * announce them, so an event loop must read now (or arm a zero-delay
 * timer) instead of waiting on the descriptor. On a started connection. */
int tls_app_pending(const struct tls_conn *c);

/* ---- 1. engine core: byte arrays in and out ----------------------------- */

/* Gives ciphertext received from the peer to the engine. Returns how many
 * bytes it took (0: it cannot take any now; call tls_read first), or -1
 * when the connection is finished. */
ssize_t tls_feed(struct tls_conn *c, const void *data, size_t len);

/* Takes ciphertext the engine wants sent, up to cap bytes. Returns the
 * count (0: nothing to send), or -1 when the connection is finished and
 * nothing is left to send. */
ssize_t tls_drain(struct tls_conn *c, void *out, size_t cap);

/* Reads decrypted application data. Returns the count; 0 at the end of the
 * stream (close_notify, or the transport closed after the handshake);
 * -1 with errno EAGAIN when nothing is available yet, or -1 with errno
 * EPROTO on failure (see tls_error). */
ssize_t tls_read(struct tls_conn *c, void *buf, size_t cap);

/* Queues application data; tls_drain / tls_pump turn it into a record.
 * Returns the count taken (maybe less than len), or -1 with errno EAGAIN
 * (handshake not done, or a record waits to be sent: drain or pump, then
 * retry) or EPROTO/EPIPE. Never sends before the handshake, so nothing
 * reaches a server that failed verification. */
ssize_t tls_write(struct tls_conn *c, const void *buf, size_t len);

/* Sends close_notify after what is queued (tls_drain / tls_pump do it). */
void tls_close(struct tls_conn *c);

/* ---- 2. non-blocking socket pump --------------------------------------- */

/* Moves ciphertext between the engine and the non-blocking socket fd until
 * either would block. Returns the poll() events to wait for (POLLIN and/or
 * POLLOUT; 0 when the engine waits for the application: read or write
 * plaintext), or -1 when the connection is finished (clean close: tls_error
 * is "").
 *
 * Contract for an event loop (no decrypted byte is ever lost):
 * - After each tls_pump, call tls_read until it returns -1 with EAGAIN (or
 *   0 / -1 EPROTO: the end). While tls_app_pending(c), tls_pump never
 *   returns -1, even once the transport hit EOF or failed: it returns 0 (or
 *   POLLOUT if the socket is full), meaning "read first".
 * - If the application cannot take more now (its buffer is full), the
 *   bytes stay in the engine: when there is room again, call tls_read
 *   without waiting for the descriptor (tls_app_pending says so).
 * - -1 therefore means: nothing is left to read; tls_read now returns 0
 *   (end of stream) or -1 with EPROTO (tls_error says why). Close then. */
int tls_pump(struct tls_conn *c, int fd);

/*
 * Non-blocking application I/O for a server connection that is either TLS
 * (c non-NULL) or still plain text (c NULL, before STARTTLS): the same
 * contract as recv/send. -1 with EAGAIN while the handshake runs or no
 * data/room is ready. tls_conn_send flushes a record waiting in the engine
 * and retries once; -1 with EAGAIN means wait for the socket.
 */
ssize_t tls_conn_recv(struct tls_conn *c, int fd, void *buf, size_t cap);
ssize_t tls_conn_send(struct tls_conn *c, int fd, const void *buf, size_t len);

/*
 * A server connection whose last reply has been queued and sent: may its
 * socket be closed now? c NULL or not established (plain): yes. Otherwise the
 * first call (*closing 0) queues close_notify and pumps it; 1 once nothing
 * is left to send (or the peer is gone), 0 while it waits for POLLOUT. want
 * is what the caller's last tls_pump returned.
 */
int tls_conn_close_ready(struct tls_conn *c, int fd, int *closing, int want);

/* ---- 3. blocking helpers with deadlines -------------------------------- */

/* Current CLOCK_MONOTONIC time in milliseconds; deadlines are in these.
 * The same clock as evl_clock_ms() (it calls it). */
int64_t tls_now_ms(void);

/* Runs the handshake on fd (made non-blocking) until done or deadline.
 * Returns 0, or -1 with tls_error (errno ETIMEDOUT on timeout). */
int tls_handshake(struct tls_conn *c, int fd, int64_t deadline_ms);

/* Reads application data, waiting until some arrives or the deadline.
 * Returns the count, 0 at end of stream, or -1 (ETIMEDOUT, EPROTO...).
 * A timeout, here as in the other helpers, fails the connection for good
 * (tls_error: "timeout during ..."): close it. */
ssize_t tls_read_fd(struct tls_conn *c, int fd, void *buf, size_t cap,
	int64_t deadline_ms);

/* Writes all of buf and pushes it onto the socket before the deadline.
 * Returns 0 or -1. */
int tls_write_fd(struct tls_conn *c, int fd, const void *buf, size_t len,
	int64_t deadline_ms);

/* Sends close_notify and pushes it out before the deadline (does not wait
 * for the peer's). Returns 0 or -1. */
int tls_close_fd(struct tls_conn *c, int fd, int64_t deadline_ms);

#endif
