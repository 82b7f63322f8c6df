/*
 * AWS Signature Version 4 signing.  See sigv4.h.
 *
 * sigv4_sign builds, in order:
 *
 *	canonical request  method, canonical URI, canonical query,
 *			   canonical headers, signed headers, payload
 *			   hash
 *	string to sign	   "AWS4-HMAC-SHA256", date, scope, hex
 *			   SHA-256 of the canonical request
 *	signing key	   HMAC chain over "AWS4" + secret, date, region,
 *			   service, "aws4_request"
 *
 * and the Authorization value from the scope, the signed headers and the
 * HMAC of the string to sign.  The rules follow the official test suite
 * (fixtures/sigv4-test-suite) and botocore, which tests/unit/test_sigv4.c
 * checks byte for byte.  Every secret-derived buffer is wiped before it
 * goes out of scope.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sigv4.h"

#define SIGV4_ALGORITHM	"AWS4-HMAC-SHA256"

/* A growing string; after a failed append, appending does nothing. */
struct sbuf {
	char	*p;
	size_t	 len;
	size_t	 cap;
	int	 err;
};

/* One query parameter, both halves already in canonical encoding. */
struct qparam {
	char	*key;
	char	*value;
};

/* One header to sign; name lowercased, value trimmed and collapsed. */
struct chdr {
	char	*name;
	char	*value;
	size_t	 order;		/* position in the request */
};

static const char hexdig_lower[] = "0123456789abcdef";
static const char hexdig_upper[] = "0123456789ABCDEF";

/*
 * Appends len bytes to b, keeping it NUL-terminated.  Sets b->err to
 * -ENOMEM and leaves b as it was when memory runs out.
 */
static void
sbuf_add(struct sbuf *b, const char *s, size_t len)
{
	char *np;
	size_t ncap;

	if (b->err)
		return;
	if (b->len + len + 1 > b->cap) {
		ncap = b->cap ? b->cap : 256;
		while (ncap < b->len + len + 1)
			ncap *= 2;
		if ((np = realloc(b->p, ncap)) == NULL) {
			b->err = -ENOMEM;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, len);
	b->len += len;
	b->p[b->len] = '\0';
}

static void
sbuf_adds(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

static void
sbuf_addc(struct sbuf *b, char c)
{
	sbuf_add(b, &c, 1);
}

/*
 * Returns the finished string (the empty string for an empty buffer) and
 * hands its ownership to the caller, or NULL after an allocation failure.
 */
static char *
sbuf_take(struct sbuf *b)
{
	char *s;

	if (!b->err && b->p == NULL)
		sbuf_add(b, "", 0);
	if (b->err) {
		free(b->p);
		b->p = NULL;
		return NULL;
	}
	s = b->p;
	b->p = NULL;
	b->len = b->cap = 0;
	return s;
}

/* RFC 3986 unreserved characters, the only ones AWS leaves unencoded. */
static int
is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == '~';
}

/*
 * Appends s[0..len) to b, percent-encoding every byte outside the
 * unreserved set (and '/' when encode_slash).
 */
static void
sbuf_uri_encode(struct sbuf *b, const char *s, size_t len, int encode_slash)
{
	char esc[3];
	size_t i, run;

	for (i = 0; i < len; i += run) {
		for (run = 0; i + run < len; run++) {
			unsigned char c = (unsigned char)s[i + run];

			if (!is_unreserved(c) && (c != '/' || encode_slash))
				break;
		}
		if (run > 0) {
			sbuf_add(b, s + i, run);
			continue;
		}
		esc[0] = '%';
		esc[1] = hexdig_upper[(unsigned char)s[i] >> 4];
		esc[2] = hexdig_upper[(unsigned char)s[i] & 0xf];
		sbuf_add(b, esc, 3);
		run = 1;
	}
}

char *
sigv4_uri_encode(const char *s, size_t len, int encode_slash)
{
	struct sbuf b = { 0 };

	sbuf_uri_encode(&b, s, len, encode_slash);
	return sbuf_take(&b);
}

char *
sigv4_s3_path(const char *bucket, const char *key)
{
	struct sbuf b = { 0 };

	sbuf_addc(&b, '/');
	if (bucket != NULL) {
		sbuf_uri_encode(&b, bucket, strlen(bucket), 1);
		sbuf_addc(&b, '/');
	}
	sbuf_uri_encode(&b, key, strlen(key), 0);
	return sbuf_take(&b);
}

void
sigv4_hex(const unsigned char *p, size_t n, char *hex)
{
	size_t i;

	for (i = 0; i < n; i++) {
		hex[2 * i] = hexdig_lower[p[i] >> 4];
		hex[2 * i + 1] = hexdig_lower[p[i] & 0xf];
	}
	hex[2 * n] = '\0';
}

int
sigv4_sha256_hex(const void *buf, size_t len, char hex[SIGV4_SIG_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) ||
	    mdlen != 32)
		return -EIO;
	sigv4_hex(md, mdlen, hex);
	return 0;
}

/*
 * out = HMAC-SHA256(key, data); out must hold 32 bytes.  Returns 0 or
 * -EIO if libcrypto fails.
 */
static int
hmac_sha256(const unsigned char *key, size_t keylen, const char *data,
    size_t datalen, unsigned char out[32])
{
	unsigned int outlen = 0;

	if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data,
	    datalen, out, &outlen) == NULL || outlen != 32)
		return -EIO;
	return 0;
}

/* Value of one hex digit, or -1. */
static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decodes the %XX escapes of s[0..len) and returns the result encoded
 * again with the unreserved set ('/' encoded too), in *out.  Returns 0,
 * -EINVAL for a '%' not followed by two hex digits, or -ENOMEM.
 */
static int
query_recode(const char *s, size_t len, char **out)
{
	struct sbuf b = { 0 };
	char *dec = NULL;
	size_t i, n = 0;
	int hi, lo, rc;

	if ((dec = malloc(len + 1)) == NULL)
		return -ENOMEM;
	for (i = 0; i < len; i++) {
		if (s[i] != '%') {
			dec[n++] = s[i];
			continue;
		}
		if (len - i < 3 || (hi = hexval(s[i + 1])) < 0 ||
		    (lo = hexval(s[i + 2])) < 0) {
			rc = -EINVAL;
			goto fail;
		}
		dec[n++] = (char)(hi << 4 | lo);
		i += 2;
	}
	sbuf_uri_encode(&b, dec, n, 1);
	if ((*out = sbuf_take(&b)) == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	free(dec);
	return 0;
fail:
	free(dec);
	return rc;
}

/* Orders query parameters by encoded key, then encoded value. */
static int
qparam_cmp(const void *a, const void *b)
{
	const struct qparam *x = a, *y = b;
	int c;

	if ((c = strcmp(x->key, y->key)) != 0)
		return c;
	return strcmp(x->value, y->value);
}

/*
 * Appends the canonical query of q (NULL = none) to b: parameters split on
 * '&' (empty pieces dropped), each key and value decoded and re-encoded,
 * "key=" for a key without '=' or value, sorted, joined with '&'.
 */
static int
canonical_query(struct sbuf *b, const char *q)
{
	struct qparam *params = NULL;
	const char *p, *amp, *eq;
	size_t n = 0, max = 1, i;
	int rc;

	if (q == NULL || *q == '\0')
		return 0;
	for (p = q; *p != '\0'; p++)
		if (*p == '&')
			max++;
	if ((params = calloc(max, sizeof(*params))) == NULL)
		return -ENOMEM;
	for (p = q; *p != '\0'; p = *amp ? amp + 1 : amp) {
		amp = p + strcspn(p, "&");
		if (amp == p)
			continue;
		eq = memchr(p, '=', (size_t)(amp - p));
		if (eq == NULL)
			eq = amp;
		if ((rc = query_recode(p, (size_t)(eq - p),
		    &params[n].key)) < 0)
			goto fail;
		if (eq == amp)
			rc = query_recode("", 0, &params[n].value);
		else
			rc = query_recode(eq + 1, (size_t)(amp - eq - 1),
			    &params[n].value);
		n++;
		if (rc < 0)
			goto fail;
	}
	qsort(params, n, sizeof(*params), qparam_cmp);
	for (i = 0; i < n; i++) {
		if (i > 0)
			sbuf_addc(b, '&');
		sbuf_adds(b, params[i].key);
		sbuf_addc(b, '=');
		sbuf_adds(b, params[i].value);
	}
	rc = b->err;
fail:
	for (i = 0; i < n; i++) {
		free(params[i].key);
		free(params[i].value);
	}
	free(params);
	return rc;
}

/*
 * Appends the canonical URI of path to b.  S3: the path unchanged.
 * Others: the path with empty and "." segments dropped and ".." removing
 * the segment before it (unless no_normalize), then encoded again; a
 * trailing '/' survives when any segment does.  This is botocore's
 * remove_dot_segments, which the suite's normalize cases agree with.
 */
static int
canonical_uri(struct sbuf *b, const struct sigv4_request *req)
{
	const char *path = req->path, *p, *seg;
	const char **segs = NULL;
	size_t *lens = NULL;
	size_t n = 0, max = 1, len, i;

	if (path == NULL || *path == '\0')
		path = "/";
	if (path[0] != '/')
		return -EINVAL;
	if (req->s3) {
		sbuf_adds(b, path);
		return b->err;
	}
	if (req->no_normalize) {
		sbuf_uri_encode(b, path, strlen(path), 0);
		return b->err;
	}
	for (p = path; *p != '\0'; p++)
		if (*p == '/')
			max++;
	segs = calloc(max, sizeof(*segs));
	lens = calloc(max, sizeof(*lens));
	if (segs == NULL || lens == NULL) {
		free(segs);
		free(lens);
		return -ENOMEM;
	}
	for (seg = path; ; seg += len + 1) {
		len = strcspn(seg, "/");
		if (len == 2 && seg[0] == '.' && seg[1] == '.') {
			if (n > 0)
				n--;
		} else if (len > 0 && !(len == 1 && seg[0] == '.')) {
			segs[n] = seg;
			lens[n] = len;
			n++;
		}
		if (seg[len] == '\0')
			break;
	}
	sbuf_addc(b, '/');
	for (i = 0; i < n; i++) {
		if (i > 0)
			sbuf_addc(b, '/');
		sbuf_uri_encode(b, segs[i], lens[i], 1);
	}
	if (n > 0 && path[strlen(path) - 1] == '/')
		sbuf_addc(b, '/');
	free(segs);
	free(lens);
	return b->err;
}

/*
 * Returns in *out a copy of value with leading and trailing whitespace
 * removed and each inner run of whitespace (space, tab, CR, LF: obsolete
 * line folding included) replaced by one space.  -EINVAL for any other
 * control character, -ENOMEM.
 */
static int
header_value(const char *value, char **out)
{
	char *v, *w;
	const char *p;
	int space = 0;

	if ((v = malloc(strlen(value) + 1)) == NULL)
		return -ENOMEM;
	w = v;
	for (p = value; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = 1;
			continue;
		}
		if (c < 0x20 || c == 0x7f) {
			free(v);
			return -EINVAL;
		}
		if (space && w != v)
			*w++ = ' ';
		space = 0;
		*w++ = (char)c;
	}
	*w = '\0';
	*out = v;
	return 0;
}

/*
 * Returns in *out the lowercased copy of name; -EINVAL unless name is a
 * non-empty HTTP token, -ENOMEM.
 */
static int
header_name(const char *name, char **out)
{
	static const char tchar[] = "!#$%&'*+-.^_`|~";
	char *n;
	size_t i, len = strlen(name);

	if (len == 0)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!is_unreserved(c) && strchr(tchar, c) == NULL)
			return -EINVAL;
	}
	if ((n = malloc(len + 1)) == NULL)
		return -ENOMEM;
	/* ASCII only: the locale must not change what is signed. */
	for (i = 0; i <= len; i++)
		n[i] = name[i] >= 'A' && name[i] <= 'Z' ?
		    (char)(name[i] - 'A' + 'a') : name[i];
	*out = n;
	return 0;
}

/* Orders headers by name, then by position so duplicates keep their order. */
static int
chdr_cmp(const void *a, const void *b)
{
	const struct chdr *x = a, *y = b;
	int c;

	if ((c = strcmp(x->name, y->name)) != 0)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Adds header (name, value) as entry n of h; see header_name/value. */
static int
chdr_set(struct chdr *h, size_t n, const char *name, const char *value)
{
	int rc;

	h[n].order = n;
	if ((rc = header_name(name, &h[n].name)) < 0)
		return rc;
	return header_value(value, &h[n].value);
}

/*
 * Appends the canonical headers ("name:v1,v2\n" per distinct name, sorted)
 * to creq and the signed headers ("a;b;c") to signed_hdrs.  The caller's
 * headers come with X-Amz-Date and, when the credentials carry a session
 * token the caller did not list, X-Amz-Security-Token.
 */
static int
canonical_headers(struct sbuf *creq, struct sbuf *signed_hdrs,
    const struct sigv4_request *req, const struct aws_creds *creds,
    const char *amz_date)
{
	struct chdr *h = NULL;
	size_t n = 0, max, i;
	int rc = 0, have_token = 0;

	max = req->nheaders + 2;
	if ((h = calloc(max, sizeof(*h))) == NULL)
		return -ENOMEM;
	for (i = 0; i < req->nheaders; i++) {
		const struct sigv4_header *in = &req->headers[i];

		if (in->name == NULL || in->value == NULL) {
			rc = -EINVAL;
			goto fail;
		}
		rc = chdr_set(h, n++, in->name, in->value);
		if (rc < 0)
			goto fail;
		if (strcmp(h[n - 1].name, "x-amz-date") == 0 ||
		    strcmp(h[n - 1].name, "authorization") == 0) {
			rc = -EINVAL;
			goto fail;
		}
		if (strcmp(h[n - 1].name, "x-amz-security-token") == 0)
			have_token = 1;
	}
	if ((rc = chdr_set(h, n++, "x-amz-date", amz_date)) < 0)
		goto fail;
	if (creds->session_token != NULL && !have_token &&
	    (rc = chdr_set(h, n++, "x-amz-security-token",
	    creds->session_token)) < 0)
		goto fail;
	qsort(h, n, sizeof(*h), chdr_cmp);
	for (i = 0; i < n; i++) {
		if (i > 0 && strcmp(h[i].name, h[i - 1].name) == 0) {
			sbuf_addc(creq, ',');
		} else {
			if (i > 0) {
				sbuf_addc(creq, '\n');
				sbuf_addc(signed_hdrs, ';');
			}
			sbuf_adds(creq, h[i].name);
			sbuf_addc(creq, ':');
			sbuf_adds(signed_hdrs, h[i].name);
		}
		sbuf_adds(creq, h[i].value);
	}
	sbuf_addc(creq, '\n');
	rc = creq->err ? creq->err : signed_hdrs->err;
fail:
	for (i = 0; i < max; i++) {
		free(h[i].name);
		free(h[i].value);
	}
	free(h);
	return rc;
}

/*
 * Writes to sig the hex HMAC of sts under the key derived from secret,
 * date (YYYYMMDD), region and service.  The derived keys are wiped.
 */
static int
sign_string(const char *secret, const char *date, const char *region,
    const char *service, const char *sts, char sig[SIGV4_SIG_LEN + 1])
{
	unsigned char k[32], k2[32], mac[32];
	char *kinit = NULL;
	size_t slen = strlen(secret);
	int rc;

	if ((kinit = malloc(slen + 5)) == NULL)
		return -ENOMEM;
	memcpy(kinit, "AWS4", 4);
	memcpy(kinit + 4, secret, slen + 1);
	if ((rc = hmac_sha256((unsigned char *)kinit, slen + 4, date,
	    strlen(date), k)) < 0 ||
	    (rc = hmac_sha256(k, 32, region, strlen(region), k2)) < 0 ||
	    (rc = hmac_sha256(k2, 32, service, strlen(service), k)) < 0 ||
	    (rc = hmac_sha256(k, 32, "aws4_request", 12, k2)) < 0 ||
	    (rc = hmac_sha256(k2, 32, sts, strlen(sts), mac)) < 0)
		goto fail;
	sigv4_hex(mac, sizeof(mac), sig);
	rc = 0;
fail:
	explicit_bzero(kinit, slen + 4);
	free(kinit);
	explicit_bzero(k, sizeof(k));
	explicit_bzero(k2, sizeof(k2));
	explicit_bzero(mac, sizeof(mac));
	return rc;
}

/* Non-empty, and free of '/' and whitespace, as a scope element must be. */
static int
scope_part_ok(const char *s)
{
	return s != NULL && *s != '\0' && strcspn(s, "/ \t\r\n") == strlen(s);
}

int
sigv4_sign(const struct sigv4_request *req, const struct aws_creds *creds,
    struct sigv4_result *out)
{
	struct sbuf creq = { 0 }, sh = { 0 }, sts = { 0 }, auth = { 0 };
	char hash[SIGV4_SIG_LEN + 1], scope_date[9];
	struct tm tm;
	int rc;

	memset(out, 0, sizeof(*out));
	if (req->method == NULL || *req->method == '\0' ||
	    strcspn(req->method, " \t\r\n") != strlen(req->method) ||
	    req->payload_sha256 == NULL || *req->payload_sha256 == '\0' ||
	    strcspn(req->payload_sha256, "\r\n") !=
	    strlen(req->payload_sha256) ||
	    (req->nheaders > 0 && req->headers == NULL) ||
	    !scope_part_ok(req->region) || !scope_part_ok(req->service) ||
	    creds == NULL || !scope_part_ok(creds->access_key_id) ||
	    creds->secret_access_key == NULL)
		return -EINVAL;
	if (gmtime_r(&req->now, &tm) == NULL ||
	    strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ",
	    &tm) != SIGV4_DATE_LEN)
		return -EINVAL;
	memcpy(scope_date, out->amz_date, 8);
	scope_date[8] = '\0';

	sbuf_adds(&creq, req->method);
	sbuf_addc(&creq, '\n');
	if ((rc = canonical_uri(&creq, req)) < 0)
		goto fail;
	sbuf_addc(&creq, '\n');
	if ((rc = canonical_query(&creq, req->query)) < 0)
		goto fail;
	sbuf_addc(&creq, '\n');
	if ((rc = canonical_headers(&creq, &sh, req, creds,
	    out->amz_date)) < 0)
		goto fail;
	sbuf_addc(&creq, '\n');
	sbuf_add(&creq, sh.p, sh.len);
	sbuf_addc(&creq, '\n');
	sbuf_adds(&creq, req->payload_sha256);
	if ((rc = creq.err) < 0)
		goto fail;

	if ((rc = sigv4_sha256_hex(creq.p, creq.len, hash)) < 0)
		goto fail;
	sbuf_adds(&sts, SIGV4_ALGORITHM "\n");
	sbuf_adds(&sts, out->amz_date);
	sbuf_addc(&sts, '\n');
	sbuf_adds(&sts, scope_date);
	sbuf_addc(&sts, '/');
	sbuf_adds(&sts, req->region);
	sbuf_addc(&sts, '/');
	sbuf_adds(&sts, req->service);
	sbuf_adds(&sts, "/aws4_request\n");
	sbuf_adds(&sts, hash);
	if ((rc = sts.err) < 0)
		goto fail;

	if ((rc = sign_string(creds->secret_access_key, scope_date,
	    req->region, req->service, sts.p, out->signature)) < 0)
		goto fail;

	sbuf_adds(&auth, SIGV4_ALGORITHM " Credential=");
	sbuf_adds(&auth, creds->access_key_id);
	sbuf_addc(&auth, '/');
	sbuf_adds(&auth, scope_date);
	sbuf_addc(&auth, '/');
	sbuf_adds(&auth, req->region);
	sbuf_addc(&auth, '/');
	sbuf_adds(&auth, req->service);
	sbuf_adds(&auth, "/aws4_request, SignedHeaders=");
	sbuf_add(&auth, sh.p, sh.len);
	sbuf_adds(&auth, ", Signature=");
	sbuf_adds(&auth, out->signature);

	out->canonical_request = sbuf_take(&creq);
	out->string_to_sign = sbuf_take(&sts);
	out->authorization = sbuf_take(&auth);
	free(sh.p);
	if (out->canonical_request == NULL || out->string_to_sign == NULL ||
	    out->authorization == NULL) {
		sigv4_result_free(out);
		return -ENOMEM;
	}
	return 0;
fail:
	free(creq.p);
	free(sh.p);
	free(sts.p);
	free(auth.p);
	memset(out, 0, sizeof(*out));
	return rc;
}

void
sigv4_result_free(struct sigv4_result *r)
{
	if (r == NULL)
		return;
	free(r->authorization);
	free(r->canonical_request);
	free(r->string_to_sign);
	memset(r, 0, sizeof(*r));
}
