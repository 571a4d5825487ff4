/*
 * pem.c - PEM certificate chains, private keys and trust anchors.
 * See pem.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pem.h"

/* Longest distinguished name kept for a trust anchor. */
#define PEM_DN_MAX 1024

static void pem_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void pem_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- PEM framing ------------------------------------------------------ */

struct pem_buf {
	unsigned char *data;
	size_t len, cap;
	int overflow;
};

static void pem_buf_append(void *ctx, const void *src, size_t len)
{
	struct pem_buf *b = ctx;

	if (len > b->cap - b->len) {
		b->overflow = 1;
		return;
	}
	memcpy(b->data + b->len, src, len);
	b->len += len;
}

static size_t pem_count_lines(const unsigned char *p, size_t n)
{
	size_t lines = 0;

	while (n-- > 0)
		lines += *p++ == '\n';
	return lines;
}

/* Hands one finished object to fn; returns 0 or -1. */
static int pem_emit(struct pem_buf *b, const char *name, pem_object_fn fn,
	void *arg, char *err, size_t errlen)
{
	if (b->overflow) {
		pem_err(err, errlen, "PEM object %s is larger than %d bytes",
			name, PEM_OBJECT_MAX);
		return -1;
	}
	if (fn(arg, name, b->data, b->len) < 0)
		return -1;
	b->len = 0;
	return 0;
}

int pem_decode(const void *text, size_t len, pem_object_fn fn, void *arg,
	char *err, size_t errlen)
{
	br_pem_decoder_context pc;
	struct pem_buf b = { 0 };
	const unsigned char *p = text;
	size_t line = 1;
	char name[sizeof pc.name];
	int inobj = 0, extra_nl = 1, count = 0;

	/* Decoded bytes never outnumber the text. */
	b.cap = len < PEM_OBJECT_MAX ? len : PEM_OBJECT_MAX;
	b.data = malloc(b.cap + 1);
	if (!b.data) {
		pem_err(err, errlen, "out of memory");
		return -1;
	}
	br_pem_decoder_init(&pc);
	while (len > 0) {
		size_t n = br_pem_decoder_push(&pc, p, len);

		line += pem_count_lines(p, n);
		p += n;
		len -= n;
		switch (br_pem_decoder_event(&pc)) {
		case BR_PEM_BEGIN_OBJ:
			snprintf(name, sizeof name, "%s", br_pem_decoder_name(&pc));
			br_pem_decoder_setdest(&pc, pem_buf_append, &b);
			b.len = 0;
			b.overflow = 0;
			inobj = 1;
			break;
		case BR_PEM_END_OBJ:
			if (inobj && pem_emit(&b, name, fn, arg, err, errlen) < 0)
				goto fail;
			count += inobj;
			inobj = 0;
			break;
		case BR_PEM_ERROR:
			/* The decoder stops after the newline ending the bad line. */
			if (n > 0 && p[-1] == '\n' && line > 1)
				line--;
			pem_err(err, errlen, "invalid PEM encoding on line %zu", line);
			goto fail;
		}
		/* Accept a file whose last line lacks its newline. */
		if (len == 0 && extra_nl) {
			extra_nl = 0;
			p = (const unsigned char *)"\n";
			len = 1;
		}
	}
	if (inobj) {
		pem_err(err, errlen, "unterminated PEM object %s", name);
		goto fail;
	}
	free(b.data);
	return count;
fail:
	free(b.data);
	return -1;
}

char *pem_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		pem_err(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > PEM_FILE_MAX) {
		pem_err(err, errlen, "%s: not a regular file of at most %d bytes",
			path, PEM_FILE_MAX);
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		pem_err(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			pem_err(err, errlen, "%s: read: %s", path,
				n < 0 ? strerror(errno) : "file shrank");
			goto fail;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	*len = got;
	return buf;
fail:
	free(buf);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* ---- certificate chains -------------------------------------------------- */

static int pem_is_cert(const char *name)
{
	return strcmp(name, "CERTIFICATE") == 0
	    || strcmp(name, "X509 CERTIFICATE") == 0;
}

struct pem_chain_ctx {
	struct pem_chain *chain;
	char *err;
	size_t errlen;
};

static int pem_chain_add(void *arg, const char *name,
	const unsigned char *der, size_t len)
{
	struct pem_chain_ctx *c = arg;
	br_x509_certificate *cert;

	if (!pem_is_cert(name))
		return 0;
	if (c->chain->count >= PEM_CHAIN_MAX) {
		pem_err(c->err, c->errlen, "more than %d certificates in the chain",
			PEM_CHAIN_MAX);
		return -1;
	}
	cert = &c->chain->certs[c->chain->count];
	cert->data = malloc(len ? len : 1);
	if (!cert->data) {
		pem_err(c->err, c->errlen, "out of memory");
		return -1;
	}
	memcpy(cert->data, der, len);
	cert->data_len = len;
	c->chain->count++;
	return 0;
}

int pem_chain_parse(struct pem_chain *chain, const void *text, size_t len,
	char *err, size_t errlen)
{
	struct pem_chain_ctx c = { chain, err, errlen };

	chain->count = 0;
	chain->certs = calloc(PEM_CHAIN_MAX, sizeof *chain->certs);
	if (!chain->certs) {
		pem_err(err, errlen, "out of memory");
		return -1;
	}
	if (pem_decode(text, len, pem_chain_add, &c, err, errlen) < 0)
		goto fail;
	if (chain->count == 0) {
		pem_err(err, errlen, "no CERTIFICATE found");
		goto fail;
	}
	return (int)chain->count;
fail:
	pem_chain_free(chain);
	return -1;
}

void pem_chain_free(struct pem_chain *chain)
{
	size_t i;

	for (i = 0; chain->certs && i < chain->count; i++)
		free(chain->certs[i].data);
	free(chain->certs);
	chain->certs = NULL;
	chain->count = 0;
}

/* Prefixes err with the file name after a parse failure. */
static void pem_err_path(char *err, size_t errlen, const char *path)
{
	char tmp[256];

	if (!err || errlen == 0)
		return;
	snprintf(tmp, sizeof tmp, "%s", err);
	pem_err(err, errlen, "%s: %s", path, tmp);
}

int pem_chain_load(struct pem_chain *chain, const char *path,
	char *err, size_t errlen)
{
	size_t len;
	char *text = pem_read_file(path, &len, err, errlen);
	int r;

	chain->certs = NULL;
	chain->count = 0;
	if (!text)
		return -1;
	r = pem_chain_parse(chain, text, len, err, errlen);
	if (r < 0)
		pem_err_path(err, errlen, path);
	free(text);
	return r;
}

/* ---- private keys -------------------------------------------------------- */

static int pem_is_key(const char *name)
{
	return strcmp(name, "EC PRIVATE KEY") == 0
	    || strcmp(name, "RSA PRIVATE KEY") == 0
	    || strcmp(name, "PRIVATE KEY") == 0;
}

struct pem_key_ctx {
	struct pem_key *key;
	int found;
	char *err;
	size_t errlen;
};

static int pem_key_add(void *arg, const char *name,
	const unsigned char *der, size_t len)
{
	struct pem_key_ctx *c = arg;
	int e;

	if (c->found || !pem_is_key(name))
		return 0;
	br_skey_decoder_init(&c->key->dc);
	br_skey_decoder_push(&c->key->dc, der, len);
	e = br_skey_decoder_last_error(&c->key->dc);
	if (e != 0) {
		pem_err(c->err, c->errlen, "%s: cannot decode the key (BearSSL error %d)",
			name, e);
		return -1;
	}
	c->key->type = br_skey_decoder_key_type(&c->key->dc);
	if (c->key->type != BR_KEYTYPE_EC && c->key->type != BR_KEYTYPE_RSA) {
		pem_err(c->err, c->errlen, "%s: unsupported key type", name);
		return -1;
	}
	c->found = 1;
	return 0;
}

int pem_key_parse(struct pem_key *key, const void *text, size_t len,
	char *err, size_t errlen)
{
	struct pem_key_ctx c = { key, 0, err, errlen };

	memset(key, 0, sizeof *key);
	if (pem_decode(text, len, pem_key_add, &c, err, errlen) < 0) {
		pem_key_wipe(key);
		return -1;
	}
	if (!c.found) {
		pem_err(err, errlen, "no PRIVATE KEY found");
		return -1;
	}
	return 0;
}

int pem_key_load(struct pem_key *key, const char *path, char *err, size_t errlen)
{
	size_t len;
	char *text = pem_read_file(path, &len, err, errlen);
	int r;

	memset(key, 0, sizeof *key);
	if (!text)
		return -1;
	r = pem_key_parse(key, text, len, err, errlen);
	if (r < 0)
		pem_err_path(err, errlen, path);
	explicit_bzero(text, len);
	free(text);
	return r;
}

const br_ec_private_key *pem_key_ec(const struct pem_key *key)
{
	return key->type == BR_KEYTYPE_EC ? br_skey_decoder_get_ec(&key->dc) : NULL;
}

const br_rsa_private_key *pem_key_rsa(const struct pem_key *key)
{
	return key->type == BR_KEYTYPE_RSA ? br_skey_decoder_get_rsa(&key->dc) : NULL;
}

void pem_key_wipe(struct pem_key *key)
{
	explicit_bzero(key, sizeof *key);
}

/* ---- trust anchors ------------------------------------------------------- */

struct pem_dn {
	unsigned char data[PEM_DN_MAX];
	size_t len;
	int overflow;
};

static void pem_dn_append(void *ctx, const void *buf, size_t len)
{
	struct pem_dn *dn = ctx;

	if (len > PEM_DN_MAX - dn->len) {
		dn->overflow = 1;
		return;
	}
	memcpy(dn->data + dn->len, buf, len);
	dn->len += len;
}

/* Size of the key material of pk. */
static size_t pem_pkey_size(const br_x509_pkey *pk)
{
	if (pk->key_type == BR_KEYTYPE_RSA)
		return pk->key.rsa.nlen + pk->key.rsa.elen;
	return pk->key.ec.qlen;
}

/* Fills ta from the decoded certificate: one heap block holds DN and key. */
static int pem_anchor_fill(br_x509_trust_anchor *ta, const struct pem_dn *dn,
	const br_x509_pkey *pk, int is_ca)
{
	unsigned char *blk = malloc(dn->len + pem_pkey_size(pk) + 1);
	unsigned char *p;

	if (!blk)
		return -1;
	memcpy(blk, dn->data, dn->len);
	ta->dn.data = blk;
	ta->dn.len = dn->len;
	ta->flags = is_ca ? BR_X509_TA_CA : 0;
	ta->pkey = *pk;
	p = blk + dn->len;
	if (pk->key_type == BR_KEYTYPE_RSA) {
		memcpy(p, pk->key.rsa.n, pk->key.rsa.nlen);
		ta->pkey.key.rsa.n = p;
		p += pk->key.rsa.nlen;
		memcpy(p, pk->key.rsa.e, pk->key.rsa.elen);
		ta->pkey.key.rsa.e = p;
	} else {
		memcpy(p, pk->key.ec.q, pk->key.ec.qlen);
		ta->pkey.key.ec.q = p;
	}
	return 0;
}

struct pem_anchors_ctx {
	struct pem_anchors *anchors;
	char *err;
	size_t errlen;
	size_t cap;
};

/* Doubles the anchor array (a bundle holds about 150). */
static int pem_anchors_grow(struct pem_anchors_ctx *c)
{
	size_t cap = c->cap ? 2 * c->cap : 16;
	br_x509_trust_anchor *ta;

	if (cap > PEM_ANCHORS_MAX)
		cap = PEM_ANCHORS_MAX;
	ta = realloc(c->anchors->ta, cap * sizeof *ta);
	if (!ta)
		return -1;
	c->anchors->ta = ta;
	c->cap = cap;
	return 0;
}

static int pem_anchor_add(void *arg, const char *name,
	const unsigned char *der, size_t len)
{
	struct pem_anchors_ctx *c = arg;
	br_x509_decoder_context dc;
	const br_x509_pkey *pk;
	struct pem_dn dn;
	size_t n = c->anchors->count;

	if (!pem_is_cert(name))
		return 0;
	if (n >= PEM_ANCHORS_MAX) {
		pem_err(c->err, c->errlen, "more than %d certificates", PEM_ANCHORS_MAX);
		return -1;
	}
	if (n == c->cap && pem_anchors_grow(c) < 0) {
		pem_err(c->err, c->errlen, "out of memory");
		return -1;
	}
	dn.len = 0;
	dn.overflow = 0;
	br_x509_decoder_init(&dc, pem_dn_append, &dn);
	br_x509_decoder_push(&dc, der, len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (!pk || dn.overflow) {
		pem_err(c->err, c->errlen, "certificate %zu: cannot decode it (BearSSL error %d)",
			n + 1, br_x509_decoder_last_error(&dc));
		return -1;
	}
	if (pem_anchor_fill(&c->anchors->ta[n], &dn, pk, br_x509_decoder_isCA(&dc)) < 0) {
		pem_err(c->err, c->errlen, "out of memory");
		return -1;
	}
	c->anchors->count++;
	return 0;
}

int pem_anchors_parse(struct pem_anchors *anchors, const void *text, size_t len,
	char *err, size_t errlen)
{
	struct pem_anchors_ctx c = { anchors, err, errlen, 0 };

	anchors->count = 0;
	anchors->ta = NULL;
	if (pem_decode(text, len, pem_anchor_add, &c, err, errlen) < 0)
		goto fail;
	if (anchors->count == 0) {
		pem_err(err, errlen, "no CERTIFICATE found");
		goto fail;
	}
	return (int)anchors->count;
fail:
	pem_anchors_free(anchors);
	return -1;
}

int pem_anchors_load(struct pem_anchors *anchors, const char *path,
	char *err, size_t errlen)
{
	size_t len;
	char *text = pem_read_file(path, &len, err, errlen);
	int r;

	anchors->ta = NULL;
	anchors->count = 0;
	if (!text)
		return -1;
	r = pem_anchors_parse(anchors, text, len, err, errlen);
	if (r < 0)
		pem_err_path(err, errlen, path);
	free(text);
	return r;
}

void pem_anchors_free(struct pem_anchors *anchors)
{
	size_t i;

	for (i = 0; anchors->ta && i < anchors->count; i++)
		free(anchors->ta[i].dn.data);
	free(anchors->ta);
	anchors->ta = NULL;
	anchors->count = 0;
}
