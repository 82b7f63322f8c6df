/*
 * AWS credentials from the network, sources 3 and 4: web identity (an
 * unsigned STS AssumeRoleWithWebIdentity with the token file's contents)
 * and ECS container credentials.  Each sends one request and continues
 * the chain from its done callback.  See awscreds_int.h.
 */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <expat.h>

#include "awscreds_int.h"
#include "util/log.h"
#include "util/wipe.h"

#define ECS_HOST		"http://169.254.170.2"
#define ECS_TIMEOUT		5
#define STS_TIMEOUT		10
#define TOKEN_FILE_MAX		(64 * 1024)
#define XML_FIELD_MAX		(64 * 1024)

/* ---------------------------------------------------------------- */
/* Token files                                                      */
/* ---------------------------------------------------------------- */

/*
 * Reads a small secret file (a token) into a NUL-terminated string with
 * trailing whitespace removed.  Returns NULL with errno set on failure.
 */
static char *
read_secret_file(const char *path)
{
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	if ((buf = malloc(TOKEN_FILE_MAX + 1)) == NULL) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	while (len < TOKEN_FILE_MAX &&
	    (n = read(fd, buf + len, TOKEN_FILE_MAX - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			saved = errno;
			explicit_bzero(buf, len);
			free(buf);
			close(fd);
			errno = saved;
			return NULL;
		}
		len += (size_t)n;
	}
	close(fd);
	if (len == TOKEN_FILE_MAX) {
		explicit_bzero(buf, len);
		free(buf);
		errno = EFBIG;
		return NULL;
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		explicit_bzero(buf, len);
		free(buf);
		errno = EINVAL;
		return NULL;
	}
	ac_rtrim(buf);
	return buf;
}

/* ---------------------------------------------------------------- */
/* 3. Web identity (STS AssumeRoleWithWebIdentity)                  */
/* ---------------------------------------------------------------- */

enum { X_KEY, X_SECRET, X_TOKEN, X_EXP, X_CODE, X_MESSAGE, X_N };

static const char *const xml_names[X_N] = {
	[X_KEY] = "AccessKeyId",
	[X_SECRET] = "SecretAccessKey",
	[X_TOKEN] = "SessionToken",
	[X_EXP] = "Expiration",
	[X_CODE] = "Code",
	[X_MESSAGE] = "Message",
};

struct sts_xml {
	char	*val[X_N];	/* text of the first element of each name */
	int	 cur;		/* field being captured, or -1 */
	size_t	 len;
	int	 toolong;
};

static void XMLCALL
xml_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
	struct sts_xml *x = arg;
	int i;

	(void)attrs;
	x->cur = -1;
	for (i = 0; i < X_N; i++) {
		if (strcmp(name, xml_names[i]) == 0 && x->val[i] == NULL) {
			if ((x->val[i] = calloc(1, 1)) == NULL)
				return;
			x->cur = i;
			x->len = 0;
			return;
		}
	}
}

static void XMLCALL
xml_end(void *arg, const XML_Char *name)
{
	struct sts_xml *x = arg;

	(void)name;
	x->cur = -1;
}

static void XMLCALL
xml_text(void *arg, const XML_Char *s, int len)
{
	struct sts_xml *x = arg;
	char *p;

	if (x->cur < 0 || len <= 0)
		return;
	if (x->len + (size_t)len > XML_FIELD_MAX) {
		x->toolong = 1;
		return;
	}
	if ((p = realloc(x->val[x->cur], x->len + (size_t)len + 1)) == NULL)
		return;
	memcpy(p + x->len, s, (size_t)len);
	x->len += (size_t)len;
	p[x->len] = '\0';
	x->val[x->cur] = p;
}

static void
sts_xml_free(struct sts_xml *x)
{
	int i;

	for (i = 0; i < X_N; i++)
		wipe_free(x->val[i]);
}

/* 0, or -1 when the body is not well-formed XML. */
static int
sts_xml_parse(const char *body, size_t len, struct sts_xml *x)
{
	XML_Parser p;
	int rc = 0;

	memset(x, 0, sizeof(*x));
	x->cur = -1;
	if ((p = XML_ParserCreate(NULL)) == NULL)
		return -1;
	XML_SetUserData(p, x);
	XML_SetElementHandler(p, xml_start, xml_end);
	XML_SetCharacterDataHandler(p, xml_text);
	if (XML_Parse(p, body, (int)len, 1) == XML_STATUS_ERROR || x->toolong)
		rc = -1;
	XML_ParserFree(p);
	return rc;
}

/*
 * Fills ac->fetched from STS's answer to AssumeRoleWithWebIdentity (url
 * for messages).  Returns 0, or -1 with a reason in ac->why.
 */
int
ac_creds_from_sts(struct awscreds *ac, const char *url,
    const struct http_resp *resp)
{
	struct sts_xml x;
	int64_t exp = 0;
	int rc = -1;

	if (sts_xml_parse(resp->body ? resp->body : "", resp->body_len,
	    &x) != 0) {
		ac_why_add(ac, "web identity: STS at %s answered HTTP %ld with a "
		    "body that is not XML", url, resp->status);
		sts_xml_free(&x);
		return -1;
	}
	if (resp->status != 200 || x.val[X_CODE] != NULL) {
		ac_why_add(ac, "web identity: STS AssumeRoleWithWebIdentity for "
		    "%s failed: HTTP %ld %s%s%s", ac->role_arn, resp->status,
		    x.val[X_CODE] ? x.val[X_CODE] : "(no error code)",
		    x.val[X_MESSAGE] ? ": " : "",
		    x.val[X_MESSAGE] ? x.val[X_MESSAGE] : "");
	} else if (x.val[X_KEY] == NULL || x.val[X_SECRET] == NULL ||
	    x.val[X_TOKEN] == NULL || x.val[X_EXP] == NULL) {
		ac_why_add(ac, "web identity: STS answer lacks AccessKeyId, "
		    "SecretAccessKey, SessionToken or Expiration");
	} else if (awscreds_parse_time(x.val[X_EXP], &exp) != 0) {
		ac_why_add(ac, "web identity: STS Expiration \"%s\" is not ISO "
		    "8601", x.val[X_EXP]);
	} else if (ac_fetched_set(ac, x.val[X_KEY], x.val[X_SECRET],
	    x.val[X_TOKEN], exp) != 0) {
		ac_why_add(ac, "web identity: out of memory");
	} else {
		rc = 0;
	}
	sts_xml_free(&x);
	return rc;
}

static void
sts_done(struct http_req *r, void *arg)
{
	struct awscreds *ac = arg;
	const struct http_resp *resp = http_req_resp(r);
	int ok = 0;

	ac->req = NULL;
	if (resp->result != CURLE_OK)
		ac_why_add(ac, "web identity: STS at %s: %s", http_req_url(r),
		    resp->error);
	else if (ac_creds_from_sts(ac, http_req_url(r), resp) == 0)
		ok = 1;
	http_req_wipe_free(r);
	if (ok)
		ac_fetch_ok(ac, "web-identity");
	else
		ac_chain_next(ac);
}

/* Appends "&name=escaped(value)" to *body; 0 or -ENOMEM. */
static int
form_add(char **body, const char *name, const char *value)
{
	char *esc, *out;
	int rc;

	if ((esc = curl_easy_escape(NULL, value, 0)) == NULL)
		return -ENOMEM;
	rc = asprintf(&out, "%s&%s=%s", *body, name, esc);
	explicit_bzero(esc, strlen(esc));
	curl_free(esc);
	if (rc < 0)
		return -ENOMEM;
	wipe_free(*body);
	*body = out;
	return 0;
}

/* 1: request started, 0: not configured, -1: failed (why). */
int
ac_from_web_identity(struct awscreds *ac)
{
	const char *file = ac_env("AWS_WEB_IDENTITY_TOKEN_FILE");
	const char *role = ac_env("AWS_ROLE_ARN");
	const char *session = ac_env("AWS_ROLE_SESSION_NAME");
	char *token = NULL, *body = NULL, *url = NULL, *region = NULL;
	char sname[32];
	struct http_req *r = NULL;
	int rc = -1;

	if (file == NULL && role == NULL)
		return 0;
	if (file == NULL || role == NULL) {
		ac_why_add(ac, "web identity: %s is set but %s is not",
		    file ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN",
		    file ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE");
		return -1;
	}
	if ((token = read_secret_file(file)) == NULL) {
		ac_why_add(ac, "web identity: cannot read the token file %s: %s",
		    file, strerror(errno));
		return -1;
	}
	if (*token == '\0') {
		ac_why_add(ac, "web identity: the token file %s is empty", file);
		goto out;
	}
	if (session == NULL) {
		snprintf(sname, sizeof(sname), "bcdad-%ld", (long)getpid());
		session = sname;
	}
	if (ac->opt_sts != NULL) {
		url = strdup(ac->opt_sts);
	} else if ((region = ac_region_local(ac)) != NULL) {
		if (asprintf(&url, "https://sts.%s.amazonaws.com", region) < 0)
			url = NULL;
	} else {
		url = strdup("https://sts.amazonaws.com");
	}
	if (url == NULL || (body = strdup("Action=AssumeRoleWithWebIdentity"
	    "&Version=2011-06-15")) == NULL ||
	    form_add(&body, "RoleArn", role) != 0 ||
	    form_add(&body, "RoleSessionName", session) != 0 ||
	    form_add(&body, "WebIdentityToken", token) != 0) {
		ac_why_add(ac, "web identity: out of memory");
		goto out;
	}
	/* The endpoint is a base URL: the action is POSTed to "/". */
	if (url[strlen(url) - 1] != '/') {
		char *u;

		if (asprintf(&u, "%s/", url) < 0) {
			ac_why_add(ac, "web identity: out of memory");
			goto out;
		}
		free(url);
		url = u;
	}
	if ((r = http_req_new("POST", url)) == NULL ||
	    http_req_header(r, "Content-Type: application/x-www-form-"
	    "urlencoded; charset=utf-8") != 0 ||
	    http_req_header(r, "Accept: text/xml") != 0 ||
	    /* No "Expect: 100-continue" wait for a small form. */
	    http_req_header(r, "Expect:") != 0 ||
	    http_req_body(r, body, strlen(body)) != 0 ||
	    (ac->role_arn = strdup(role)) == NULL) {
		ac_why_add(ac, "web identity: out of memory");
		goto out;
	}
	http_req_timeout(r, STS_TIMEOUT);
	if (http_start(ac->http, r, sts_done, ac) != 0) {
		ac_why_add(ac, "web identity: cannot start a request to %s", url);
		goto out;
	}
	log_debug("AWS credentials: AssumeRoleWithWebIdentity %s at %s",
	    role, url);
	ac->req = r;
	r = NULL;
	rc = 1;
out:
	http_req_free(r);
	wipe_free(token);
	wipe_free(body);
	free(url);
	free(region);
	return rc;
}

/* ---------------------------------------------------------------- */
/* 4. ECS container credentials                                     */
/* ---------------------------------------------------------------- */

/* http:// is allowed only to the addresses of the container agents. */
static int
ecs_host_allowed(const char *host)
{
	struct in_addr a4;
	char h[64];
	size_t n = strlen(host);

	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(h)) {
		memcpy(h, host + 1, n - 2);
		h[n - 2] = '\0';
		host = h;
	}
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127 ||
		    strcmp(host, "169.254.170.2") == 0 ||
		    strcmp(host, "169.254.170.23") == 0;
	{
		struct in6_addr a6, lo6, eks;

		if (inet_pton(AF_INET6, host, &a6) != 1)
			return 0;
		inet_pton(AF_INET6, "::1", &lo6);
		inet_pton(AF_INET6, "fd00:ec2::23", &eks);
		return memcmp(&a6, &lo6, sizeof(a6)) == 0 ||
		    memcmp(&a6, &eks, sizeof(a6)) == 0;
	}
}

/* 0 when url may be used for container credentials, else -1 (why). */
static int
ecs_check_full_uri(struct awscreds *ac, const char *url)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL;
	int rc = -1;

	if ((u = curl_url()) == NULL) {
		ac_why_add(ac, "ECS: out of memory");
		return -1;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		ac_why_add(ac, "ECS: AWS_CONTAINER_CREDENTIALS_FULL_URI \"%s\" "
		    "is not a URL", url);
		goto out;
	}
	if (strcasecmp(scheme, "https") == 0 ||
	    (strcasecmp(scheme, "http") == 0 && ecs_host_allowed(host)))
		rc = 0;
	else
		ac_why_add(ac, "ECS: AWS_CONTAINER_CREDENTIALS_FULL_URI \"%s\" "
		    "must use https, or http to a loopback address, "
		    "169.254.170.2, 169.254.170.23 or fd00:ec2::23", url);
out:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return rc;
}

static void
ecs_done(struct http_req *r, void *arg)
{
	struct awscreds *ac = arg;
	const struct http_resp *resp = http_req_resp(r);
	int ok = 0;

	ac->req = NULL;
	if (resp->result != CURLE_OK)
		ac_why_add(ac, "ECS: GET %s: %s", http_req_url(r), resp->error);
	else if (resp->status != 200)
		ac_why_add(ac, "ECS: GET %s answered HTTP %ld%s", http_req_url(r),
		    resp->status, resp->status == 401 || resp->status == 403 ?
		    " (check the container authorization token)" : "");
	else if (ac_creds_from_json(ac, "ECS", resp->body, 0) == 0)
		ok = 1;
	http_req_wipe_free(r);
	/* ECS and IMDS exclude each other: after ECS the chain ends. */
	if (ok)
		ac_fetch_ok(ac, "ecs");
	else
		ac_chain_next(ac);
}

/* 1: request started, 0: not configured, -1: failed (why). */
int
ac_from_container(struct awscreds *ac)
{
	const char *rel = ac_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = ac_env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *tfile = ac_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	char *url = NULL, *token = NULL, *hdr = NULL;
	struct http_req *r = NULL;
	int rc = -1;

	if (rel == NULL && full == NULL)
		return 0;
	if (rel != NULL) {
		if (asprintf(&url, "%s%s%s", ECS_HOST, rel[0] == '/' ? "" :
		    "/", rel) < 0) {
			ac_why_add(ac, "ECS: out of memory");
			return -1;
		}
	} else {
		if (ecs_check_full_uri(ac, full) != 0)
			return -1;
		if ((url = strdup(full)) == NULL) {
			ac_why_add(ac, "ECS: out of memory");
			return -1;
		}
	}
	if (tfile != NULL) {
		if ((token = read_secret_file(tfile)) == NULL) {
			ac_why_add(ac, "ECS: cannot read "
			    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s: %s",
			    tfile, strerror(errno));
			goto out;
		}
	} else if (ac_env("AWS_CONTAINER_AUTHORIZATION_TOKEN") != NULL) {
		token = strdup(ac_env("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
	}
	if (token != NULL && strpbrk(token, "\r\n") != NULL) {
		ac_why_add(ac, "ECS: the container authorization token contains "
		    "a line break");
		goto out;
	}
	if ((r = http_req_new("GET", url)) == NULL ||
	    http_req_header(r, "Accept: application/json") != 0 ||
	    (token != NULL && (asprintf(&hdr, "Authorization: %s",
	    token) < 0 || http_req_header(r, hdr) != 0))) {
		ac_why_add(ac, "ECS: out of memory");
		goto out;
	}
	http_req_timeout(r, ECS_TIMEOUT);
	if (http_start(ac->http, r, ecs_done, ac) != 0) {
		ac_why_add(ac, "ECS: cannot start a request to %s", url);
		goto out;
	}
	log_debug("AWS credentials: GET %s", url);
	ac->req = r;
	r = NULL;
	rc = 1;
out:
	http_req_free(r);
	wipe_free(token);
	wipe_free(hdr);
	free(url);
	return rc;
}
