/*
 * fuzz_pem.c - libFuzzer target for PEM and DER input: certificate chains,
 * private keys and trust-anchor bundles (pem.c), and the SPKI re-encoding
 * of whatever public key a decoded certificate holds (der.c, tls.c pins).
 * The input is tried both as PEM text and as one raw DER certificate.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "der.h"
#include "pem.h"
#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void pin_of_cert(const unsigned char *der, size_t len)
{
	br_x509_decoder_context dc;
	const br_x509_pkey *pk;
	unsigned char pin[32], spki[DER_SPKI_MAX];

	br_x509_decoder_init(&dc, NULL, NULL);
	br_x509_decoder_push(&dc, der, len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (!pk)
		return;
	if (der_spki(pk, spki, sizeof spki) >= 0 && tls_pin_of_key(pk, pin) != 0)
		abort();	/* both encode the same key: they must agree */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pem_key key;
	struct pem_chain chain;
	struct pem_anchors anchors;
	char err[256];
	size_t i;

	if (pem_chain_parse(&chain, data, size, err, sizeof err) > 0) {
		for (i = 0; i < chain.count; i++)
			pin_of_cert(chain.certs[i].data, chain.certs[i].data_len);
		pem_chain_free(&chain);
	}
	if (pem_key_parse(&key, data, size, err, sizeof err) == 0
	    && !pem_key_ec(&key) && !pem_key_rsa(&key))
		abort();
	pem_key_wipe(&key);
	if (pem_anchors_parse(&anchors, data, size, err, sizeof err) > 0)
		pem_anchors_free(&anchors);
	pin_of_cert(data, size);
	return 0;
}
