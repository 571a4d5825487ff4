/*
 * test_pem.c - PEM chains, keys and anchors, and SPKI pins against openssl.
 *
 * The certificates and keys below were made with
 *   openssl ecparam -name prime256v1 -genkey -noout -out ec.key
 *   openssl req -x509 -new -key ec.key -subj /CN=ec.test -days 3650 -out ec.pem
 *   openssl genrsa -out rsa.key 2048; openssl req -x509 ... /CN=rsa.test
 *   openssl pkcs8 -topk8 -nocrypt ...; openssl rsa -traditional ...
 * and the pins with
 *   openssl x509 -in C -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "der.h"
#include "pem.h"

/* Generated with openssl (see the comment in test_pem.c). */
static const char EC_CERT[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBeTCCAR+gAwIBAgIUXYZjY+Q9QKhQTwWqp7QLGMvn/ukwCgYIKoZIzj0EAwIw\n"
	"EjEQMA4GA1UEAwwHZWMudGVzdDAeFw0yNjExMjgyMzMzMDNaFw0zNjExMjUyMzMz\n"
	"MDNaMBIxEDAOBgNVBAMMB2VjLnRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n"
	"AAQmQyqqpeTXekmKUiwvD5LgV9z4DHng63FDZ3vMqv7gV0ciFSP54S96vqdc6bYI\n"
	"VLJR+Gk5s7+JTUgsO6VlWv4Jo1MwUTAdBgNVHQ4EFgQUwh0jdLWItpw7g0jovSOH\n"
	"G5DUMeAwHwYDVR0jBBgwFoAUwh0jdLWItpw7g0jovSOHG5DUMeAwDwYDVR0TAQH/\n"
	"BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAtMhROXpZ6VwW0TBUFKlckW1ji7sq\n"
	"QqMVNnIL4gOTvUQCICPq1XDDm783FAJA52weOknZhsF0cqGqtDMKXB9kG+xW\n"
	"-----END CERTIFICATE-----\n";
static const char EC_KEY[] =
	"-----BEGIN EC PRIVATE KEY-----\n"
	"MHcCAQEEIDDwv85qFJLyBgq9FYA00enfsTAvs/DHsfkNqldzOz6RoAoGCCqGSM49\n"
	"AwEHoUQDQgAEJkMqqqXk13pJilIsLw+S4Ffc+Ax54OtxQ2d7zKr+4FdHIhUj+eEv\n"
	"er6nXOm2CFSyUfhpObO/iU1ILDulZVr+CQ==\n"
	"-----END EC PRIVATE KEY-----\n";
static const char EC_KEY_PKCS8[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMPC/zmoUkvIGCr0V\n"
	"gDTR6d+xMC+z8Mex+Q2qV3M7PpGhRANCAAQmQyqqpeTXekmKUiwvD5LgV9z4DHng\n"
	"63FDZ3vMqv7gV0ciFSP54S96vqdc6bYIVLJR+Gk5s7+JTUgsO6VlWv4J\n"
	"-----END PRIVATE KEY-----\n";
static const char RSA_CERT[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIDBzCCAe+gAwIBAgIUC7mfk8P8iJssgIcVHgNZFfx+yF0wDQYJKoZIhvcNAQEL\n"
	"BQAwEzERMA8GA1UEAwwIcnNhLnRlc3QwHhcNMjYxMTI4MjMzMzAzWhcNMzYxMTI1\n"
	"MjMzMzAzWjATMREwDwYDVQQDDAhyc2EudGVzdDCCASIwDQYJKoZIhvcNAQEBBQAD\n"
	"ggEPADCCAQoCggEBALXH/Ab0C3LEmhcJoQVCt3LZ9v/xiNJiJmcgBGF/Zow9PRp5\n"
	"7X8zo7DLW4orNtO6j9c4yXt4RMy6aUh2swUHCLbqNgCAIiZmu+FfZEmvc8XnKHVX\n"
	"Dn7xVX54W/VOLDU6ri54bcwss2NkwsvUuAl4yFO/mtADnEYqFTvu/VoX1KKLUset\n"
	"CduhRIgilv0z1HQFrr47yxroXMlUadp0TIqry6Oojhh4ZEBUcf9pjBi8DTrd9FIy\n"
	"fMizEaFQr8QnPNY9afwLLNmXuQgEWN8o1b2Wb+UxE34CFuV349b+EDJGjZKfDioN\n"
	"kVq/CQrkvhaPHIMmmloL11Cbjh0pioLtduibgA8CAwEAAaNTMFEwHQYDVR0OBBYE\n"
	"FOLI9oPCp5hNO2RA63G+gjAaPaZUMB8GA1UdIwQYMBaAFOLI9oPCp5hNO2RA63G+\n"
	"gjAaPaZUMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQELBQADggEBAFqiQH4y\n"
	"MEcGzHv6LUN4dpcuj9Gz04epVXO3lU3FImOIm0pOkQ6GZaj1EuJFx2C3xTrfUp0t\n"
	"/kTLZhxuzExNhU9HAN/cIA5j7T0yyrYpnsOiRStJF2I5/6OO4UhBK+LhWX83psRr\n"
	"Xil0IA+gvCM4misglxk+QX6OIADqhOb6rVJ1cdst71i17UdTMeW7MuL/oIQ/w85g\n"
	"c3wAaa3Y/gtsDv1Tn+/EEq/SvDMl+BeV+3pMEwtu/sw1bqTcKcoywOKTByQkp/eh\n"
	"bQssaS9+3S02QBlaZMxnFS60m+kGE3kXq5xfOkDiXMJXgPUazJ7FNE7cVynY40El\n"
	"gqmnMnxomlsVo+4=\n"
	"-----END CERTIFICATE-----\n";
static const char RSA_KEY_PKCS8[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIIEugIBADANBgkqhkiG9w0BAQEFAASCBKQwggSgAgEAAoIBAQC1x/wG9AtyxJoX\n"
	"CaEFQrdy2fb/8YjSYiZnIARhf2aMPT0aee1/M6Owy1uKKzbTuo/XOMl7eETMumlI\n"
	"drMFBwi26jYAgCImZrvhX2RJr3PF5yh1Vw5+8VV+eFv1Tiw1Oq4ueG3MLLNjZMLL\n"
	"1LgJeMhTv5rQA5xGKhU77v1aF9Sii1LHrQnboUSIIpb9M9R0Ba6+O8sa6FzJVGna\n"
	"dEyKq8ujqI4YeGRAVHH/aYwYvA063fRSMnzIsxGhUK/EJzzWPWn8CyzZl7kIBFjf\n"
	"KNW9lm/lMRN+Ahbld+PW/hAyRo2Snw4qDZFavwkK5L4WjxyDJppaC9dQm44dKYqC\n"
	"7Xbom4APAgMBAAECgf8IwBHEJGmEPEkmszxEK/H7agSNeMglKSoCyN5pLaUYtK6e\n"
	"wvje65Ge9PfVi2Ju5ljqpMFkxcu1WgDa2qS/faMBcfX8L7DH2awd5kZrnEGT9m0b\n"
	"pyjYRjAKj9BjTUxVcuAixtx6TjpUYy6mqQzYRG5Mhgwk26kcVRGkyQuQairpx47v\n"
	"hyeRFmNRxeF6yCoLc78kYavUKe4Rv+X6Svx6UPyTtOQEBW8HRJT4ryOFq8J0xWX4\n"
	"2d4pqOw0N3mRMkiB2q6k3h2Dhss7XvuWhVpL/zyUL6WDulKFYpFSHtig/lzapPlZ\n"
	"f2e6g0j63aSs+leN7VMqORq39V9qrVQ68ZcONQECgYEA4mbB95rdT03eo9Qy1vvL\n"
	"wlE45vS1hXHRu9diz2BxK6gauXORBGg56xHU6hXx8EbKtnXEJDipeV+Tjn9gZgth\n"
	"IYQDiAzyOpNVymlm4ftzRXMfBgAbeT52kyQIOXW/Gl3AywORbzIMFPtugYAVl4LZ\n"
	"eh1R+XKX5Ptc1NZTcZjbwYECgYEAzYvepn9+RFh66reFrA680bLl2bVKtbwhO9Oh\n"
	"GWs2us7KbW3YSRSidnNmPTTD8MP6I+AzB7yvnF00nuMYkYXY/JmrzhgpfWa1mi2c\n"
	"gzWZM5N5twaVT0tJTOckOjmf6hDssyJwSeIsHjzoK+faT2+vg6PCp3gIy4Zl94UO\n"
	"5Gi86Y8CgYAg0Xx0hAJoqIUJgo0MFNvogxWYhQh7G5CnhgVQwk4lYezdzR7MYL9k\n"
	"j+UpOZ0kk153LIMOLRiD+5LMKTK0GBowXY6VfiruysS43qaHQ4fmHVX17LYO0Tsn\n"
	"ASYgDi1xiP2VcCL412xg7kGKjCKVH+aeiPmFC1NxYe6G+7qE0P+qAQKBgEnaw/mX\n"
	"PctY73F+16zm7rl6SlRba6i5HEfe1rfHajbdLqb7HQfFPkrJVCcR2oWcJTjWyf8x\n"
	"sPfCFbIxbxZ6vWil3rGCxQWl7gKj+OS8UXvStZ0p5GRFbOUQ+FdjdS4pPqNu8GHb\n"
	"vnZu9A0ylaKNQsdOBBcgbiiS9fhl+t/fMmHJAoGAOSKxwAL26bJwXD6R332i3FyV\n"
	"3wIGDO0PcZRpxfkNRJitxivLSOdWdrJuFVKUieMeSmP+ws63XjBJP11O7BoGnr9e\n"
	"acGgyu/+EIDGd5lsOxxZdoO/4HQQ3Qvz1fPnfhUf3FTNgRUsrVaNhzYuTtns5j7f\n"
	"i1D1S317FBZYN1J4M/8=\n"
	"-----END PRIVATE KEY-----\n";
static const char RSA_KEY[] =
	"-----BEGIN RSA PRIVATE KEY-----\n"
	"MIIEoAIBAAKCAQEAtcf8BvQLcsSaFwmhBUK3ctn2//GI0mImZyAEYX9mjD09Gnnt\n"
	"fzOjsMtbiis207qP1zjJe3hEzLppSHazBQcItuo2AIAiJma74V9kSa9zxecodVcO\n"
	"fvFVfnhb9U4sNTquLnhtzCyzY2TCy9S4CXjIU7+a0AOcRioVO+79WhfUootSx60J\n"
	"26FEiCKW/TPUdAWuvjvLGuhcyVRp2nRMiqvLo6iOGHhkQFRx/2mMGLwNOt30UjJ8\n"
	"yLMRoVCvxCc81j1p/Ass2Ze5CARY3yjVvZZv5TETfgIW5Xfj1v4QMkaNkp8OKg2R\n"
	"Wr8JCuS+Fo8cgyaaWgvXUJuOHSmKgu126JuADwIDAQABAoH/CMARxCRphDxJJrM8\n"
	"RCvx+2oEjXjIJSkqAsjeaS2lGLSunsL43uuRnvT31YtibuZY6qTBZMXLtVoA2tqk\n"
	"v32jAXH1/C+wx9msHeZGa5xBk/ZtG6co2EYwCo/QY01MVXLgIsbcek46VGMupqkM\n"
	"2ERuTIYMJNupHFURpMkLkGoq6ceO74cnkRZjUcXhesgqC3O/JGGr1CnuEb/l+kr8\n"
	"elD8k7TkBAVvB0SU+K8jhavCdMVl+NneKajsNDd5kTJIgdqupN4dg4bLO177loVa\n"
	"S/88lC+lg7pShWKRUh7YoP5c2qT5WX9nuoNI+t2krPpXje1TKjkat/Vfaq1UOvGX\n"
	"DjUBAoGBAOJmwfea3U9N3qPUMtb7y8JROOb0tYVx0bvXYs9gcSuoGrlzkQRoOesR\n"
	"1OoV8fBGyrZ1xCQ4qXlfk45/YGYLYSGEA4gM8jqTVcppZuH7c0VzHwYAG3k+dpMk\n"
	"CDl1vxpdwMsDkW8yDBT7boGAFZeC2XodUflyl+T7XNTWU3GY28GBAoGBAM2L3qZ/\n"
	"fkRYeuq3hawOvNGy5dm1SrW8ITvToRlrNrrOym1t2EkUonZzZj00w/DD+iPgMwe8\n"
	"r5xdNJ7jGJGF2PyZq84YKX1mtZotnIM1mTOTebcGlU9LSUznJDo5n+oQ7LMicEni\n"
	"LB486Cvn2k9vr4Ojwqd4CMuGZfeFDuRovOmPAoGAINF8dIQCaKiFCYKNDBTb6IMV\n"
	"mIUIexuQp4YFUMJOJWHs3c0ezGC/ZI/lKTmdJJNedyyDDi0Yg/uSzCkytBgaMF2O\n"
	"lX4q7srEuN6mh0OH5h1V9ey2DtE7JwEmIA4tcYj9lXAi+NdsYO5BiowilR/mnoj5\n"
	"hQtTcWHuhvu6hND/qgECgYBJ2sP5lz3LWO9xftes5u65ekpUW2uouRxH3ta3x2o2\n"
	"3S6m+x0HxT5KyVQnEdqFnCU41sn/MbD3whWyMW8Wer1opd6xgsUFpe4Co/jkvFF7\n"
	"0rWdKeRkRWzlEPhXY3UuKT6jbvBh2752bvQNMpWijULHTgQXIG4okvX4Zfrf3zJh\n"
	"yQKBgDkiscAC9umycFw+kd99otxcld8CBgztD3GUacX5DUSYrcYry0jnVnaybhVS\n"
	"lInjHkpj/sLOt14wST9dTuwaBp6/XmnBoMrv/hCAxneZbDscWXaDv+B0EN0L89Xz\n"
	"534VH9xUzYEVLK1WjYc2Lk7Z7OY+34tQ9Ut9exQWWDdSeDP/\n"
	"-----END RSA PRIVATE KEY-----\n";

static const char EC_PIN[] = "8f0542967efd3616283e32824647de749916d2043c847b42ff60d5e552a3b8a8";
static const char RSA_PIN[] = "a06c255128372807ac36a03bbe36bdd1e56061dcad6b99167c89b56a15c6144a";

static char err[256];

/* SHA-256 of the SPKI re-encoded from the certificate's decoded key, as hex. */
static void spki_pin(const br_x509_certificate *c, char hex[65])
{
	br_x509_decoder_context dc;
	unsigned char spki[DER_SPKI_MAX], h[32];
	br_sha256_context sc;
	int n, i;

	hex[0] = '\0';
	br_x509_decoder_init(&dc, NULL, NULL);
	br_x509_decoder_push(&dc, c->data, c->data_len);
	CHECK(br_x509_decoder_get_pkey(&dc) != NULL);
	if (!br_x509_decoder_get_pkey(&dc))
		return;
	n = der_spki(br_x509_decoder_get_pkey(&dc), spki, sizeof spki);
	CHECK(n > 0);
	if (n <= 0)
		return;
	br_sha256_init(&sc);
	br_sha256_update(&sc, spki, (size_t)n);
	br_sha256_out(&sc, h);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
}

static void t_chain(void)
{
	char both[8192];
	struct pem_chain ch;
	char pin[65];

	snprintf(both, sizeof both, "junk before\n%sbetween\n%s", EC_CERT, RSA_CERT);
	CHECK_EQ(pem_chain_parse(&ch, both, strlen(both), err, sizeof err), 2);
	CHECK_EQ(ch.count, 2);
	spki_pin(&ch.certs[0], pin);
	CHECK_STREQ(pin, EC_PIN);
	spki_pin(&ch.certs[1], pin);
	CHECK_STREQ(pin, RSA_PIN);
	pem_chain_free(&ch);
	CHECK(ch.certs == NULL);
}

static void t_chain_no_final_newline(void)
{
	struct pem_chain ch;
	size_t n = strlen(EC_CERT) - 1;	/* drop the last '\n' */

	CHECK_EQ(pem_chain_parse(&ch, EC_CERT, n, err, sizeof err), 1);
	pem_chain_free(&ch);
}

static void t_chain_errors(void)
{
	struct pem_chain ch;
	char bad[8192];

	CHECK_EQ(pem_chain_parse(&ch, EC_KEY, strlen(EC_KEY), err, sizeof err), -1);
	CHECK(strstr(err, "no CERTIFICATE") != NULL);
	/* Cut in the middle: unterminated object. */
	CHECK_EQ(pem_chain_parse(&ch, EC_CERT, 100, err, sizeof err), -1);
	CHECK(strstr(err, "unterminated") != NULL || strstr(err, "invalid") != NULL);
	/* A bad base64 character on line 3. */
	snprintf(bad, sizeof bad, "%s", EC_CERT);
	bad[strlen("-----BEGIN CERTIFICATE-----\n") + 65 + 3] = '*';
	CHECK_EQ(pem_chain_parse(&ch, bad, strlen(bad), err, sizeof err), -1);
	CHECK(strstr(err, "invalid PEM encoding on line 3") != NULL);
	CHECK_EQ(pem_chain_parse(&ch, "", 0, err, sizeof err), -1);
	/* BEGIN without END. */
	snprintf(bad, sizeof bad, "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n");
	CHECK_EQ(pem_chain_parse(&ch, bad, strlen(bad), err, sizeof err), -1);
	CHECK(strstr(err, "unterminated PEM object CERTIFICATE") != NULL);
}

static void t_keys(void)
{
	static struct pem_key k;

	CHECK_EQ(pem_key_parse(&k, EC_KEY, strlen(EC_KEY), err, sizeof err), 0);
	CHECK_EQ(k.type, BR_KEYTYPE_EC);
	CHECK(pem_key_ec(&k) != NULL && pem_key_ec(&k)->curve == BR_EC_secp256r1);
	CHECK(pem_key_rsa(&k) == NULL);
	CHECK_EQ(pem_key_parse(&k, EC_KEY_PKCS8, strlen(EC_KEY_PKCS8), err, sizeof err), 0);
	CHECK_EQ(k.type, BR_KEYTYPE_EC);
	CHECK_EQ(pem_key_parse(&k, RSA_KEY, strlen(RSA_KEY), err, sizeof err), 0);
	CHECK_EQ(k.type, BR_KEYTYPE_RSA);
	CHECK(pem_key_rsa(&k) != NULL && pem_key_rsa(&k)->n_bitlen == 2048);
	CHECK_EQ(pem_key_parse(&k, RSA_KEY_PKCS8, strlen(RSA_KEY_PKCS8), err, sizeof err), 0);
	CHECK_EQ(k.type, BR_KEYTYPE_RSA);
	CHECK_EQ(pem_key_parse(&k, EC_CERT, strlen(EC_CERT), err, sizeof err), -1);
	CHECK(strstr(err, "no PRIVATE KEY") != NULL);
	CHECK_EQ(pem_key_parse(&k, "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
			       67, err, sizeof err), -1);
	CHECK(strstr(err, "cannot decode") != NULL);
	pem_key_wipe(&k);
}

static void t_anchors(void)
{
	char both[8192];
	struct pem_anchors a;

	snprintf(both, sizeof both, "%s%s", EC_CERT, RSA_CERT);
	CHECK_EQ(pem_anchors_parse(&a, both, strlen(both), err, sizeof err), 2);
	CHECK_EQ(a.ta[0].pkey.key_type, BR_KEYTYPE_EC);
	CHECK_EQ(a.ta[1].pkey.key_type, BR_KEYTYPE_RSA);
	CHECK(a.ta[0].flags & BR_X509_TA_CA);	/* openssl req -x509 sets CA:TRUE */
	CHECK(a.ta[0].dn.len > 10);
	pem_anchors_free(&a);
	/* A certificate whose body is not a certificate. */
	CHECK_EQ(pem_anchors_parse(&a, "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",
				   64, err, sizeof err), -1);
	CHECK(strstr(err, "certificate 1") != NULL);
}

static void t_files(void)
{
	char path[] = "pemtestXXXXXX";
	struct pem_chain ch;
	static struct pem_key k;
	struct pem_anchors a;
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK(write(fd, EC_CERT, strlen(EC_CERT)) == (ssize_t)strlen(EC_CERT));
	CHECK(write(fd, EC_KEY, strlen(EC_KEY)) == (ssize_t)strlen(EC_KEY));
	close(fd);
	CHECK_EQ(pem_chain_load(&ch, path, err, sizeof err), 1);
	pem_chain_free(&ch);
	CHECK_EQ(pem_key_load(&k, path, err, sizeof err), 0);
	CHECK_EQ(pem_anchors_load(&a, path, err, sizeof err), 1);
	pem_anchors_free(&a);
	unlink(path);
	CHECK_EQ(pem_chain_load(&ch, "/nonexistent/x.pem", err, sizeof err), -1);
	CHECK(strstr(err, "/nonexistent/x.pem") != NULL);
	CHECK_EQ(pem_key_load(&k, "/nonexistent/x.key", err, sizeof err), -1);
	CHECK_EQ(pem_anchors_load(&a, "/", err, sizeof err), -1);
}

int main(void)
{
	RUN(t_chain);
	RUN(t_chain_no_final_newline);
	RUN(t_chain_errors);
	RUN(t_keys);
	RUN(t_anchors);
	RUN(t_files);
	return check_done();
}
