/*
 * AWS credentials chain and region.  See awscreds.h.
 *
 * One fetch at a time walks the chain from the top: each source is a step
 * that either finds credentials (fetch_ok), is not configured (the next
 * step), or fails with a reason kept for the final error (why_add, then
 * the next step).  The environment and the shared files are read at once;
 * web identity, ECS and IMDS send one request (IMDS a few) and continue
 * from the request's done callback.  Callers that arrive meanwhile wait in
 * one queue and are all answered by fetch_finish.
 *
 * IMDS requests go through imds_call, which adds the IMDSv2 session token:
 * it PUTs for a token when none is cached, sends the GET, and on a 401
 * drops the token and tries once more with a new one.
 */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <expat.h>
#include <ini.h>
#include <jansson.h>

#include "awscreds.h"
#include "iso8601.h"
#include "log.h"

#define IMDS_DEFAULT_ENDPOINT	"http://169.254.169.254"
#define IMDS_TOKEN_TTL		21600
#define IMDS_TIMEOUT		2	/* seconds, whole request */
#define ECS_HOST		"http://169.254.170.2"
#define ECS_TIMEOUT		5
#define STS_TIMEOUT		10
#define TOKEN_FILE_MAX		(64 * 1024)
#define INI_LINE_MAX		65536
#define WHY_MAX			2048
#define XML_FIELD_MAX		(64 * 1024)

/*
 * The Debian build of libinih lets a program raise its 200-byte line limit
 * at run time; session tokens are longer than that.  Where the library
 * has no such knobs the symbols are absent and long lines are reported.
 */
extern bool ini_use_stack __attribute__((weak));
extern bool ini_allow_realloc __attribute__((weak));
extern int ini_max_line __attribute__((weak));
extern int ini_initial_alloc __attribute__((weak));

enum fetch_step {
	STEP_ENV,
	STEP_PROFILE,
	STEP_WEB_IDENTITY,
	STEP_CONTAINER,
	STEP_IMDS,
	STEP_END,
};

struct waiter {
	awscreds_cb		 cb;
	awscreds_region_cb	 rcb;
	void			*arg;
	struct waiter		*next;
};

struct imds_call;
typedef void (*imds_done_cb)(struct imds_call *, const char *body,
    const char *error);

/* One IMDS GET with the IMDSv2 token handling around it. */
struct imds_call {
	struct awscreds	*ac;
	struct http_req	*req;
	char		*path;		/* "/latest/meta-data/..." */
	char		*endpoint;	/* without a trailing '/' */
	int		 getting;	/* 0: token PUT in flight, 1: GET */
	int		 retried;	/* already got a new token after 401 */
	imds_done_cb	 done;
};

struct awscreds {
	uv_loop_t	*loop;
	struct http	*http;
	char		*opt_region;
	char		*opt_sts;

	/* What awscreds_get hands out. */
	struct aws_creds creds;
	int		 have_creds;
	const char	*source;
	int64_t		 retry_at;	/* no refresh before (after a failure) */

	/* The fetch in flight. */
	int		 fetching;
	enum fetch_step	 step;
	struct waiter	*waiters, **waiters_tail;
	struct http_req	*req;		/* STS or ECS */
	struct imds_call imds;
	struct aws_creds fetched;
	char		*role_arn;	/* web identity, for messages */
	char		 why[WHY_MAX];

	/* IMDSv2 session token. */
	char		*imds_token;
	char		*imds_token_ep;
	int64_t		 imds_token_exp;

	/* Region. */
	char		*region;
	int		 region_fetching;
	struct waiter	*rwaiters, **rwaiters_tail;
	struct imds_call rimds;
};

static void	chain_next(struct awscreds *);
static void	imds_send(struct imds_call *);

/* ---------------------------------------------------------------- */
/* Small helpers                                                    */
/* ---------------------------------------------------------------- */

static void
wipe_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static void
creds_clear(struct aws_creds *c)
{
	wipe_free(c->access_key_id);
	wipe_free(c->secret_access_key);
	wipe_free(c->session_token);
	memset(c, 0, sizeof(*c));
}

/* Frees a finished request, wiping its response body (credentials). */
static void
req_free(struct http_req *r)
{
	const struct http_resp *resp;

	if (r == NULL)
		return;
	resp = http_req_resp(r);
	if (resp->body != NULL)
		explicit_bzero(resp->body, resp->body_len);
	http_req_free(r);
}

static const char *
env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? v : NULL;
}

static int
env_true(const char *name)
{
	const char *v = env(name);

	return v != NULL && strcasecmp(v, "true") == 0;
}

/* Appends one reason, "label: text", to the fetch's list of failures. */
static void __attribute__((format(printf, 2, 3)))
why_add(struct awscreds *ac, const char *fmt, ...)
{
	size_t len = strlen(ac->why);
	va_list ap;

	if (len > 0 && len + 2 < sizeof(ac->why)) {
		memcpy(ac->why + len, "; ", 3);
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(ac->why + len, sizeof(ac->why) - len, fmt, ap);
	va_end(ap);
}

static void
rtrim(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
}

/* "~/x" → "$HOME/x"; other paths are copied. */
static char *
expand_home(const char *path)
{
	const char *home;
	char *out;

	if (path[0] != '~' || (path[1] != '/' && path[1] != '\0'))
		return strdup(path);
	if ((home = env("HOME")) == NULL)
		return NULL;
	if (asprintf(&out, "%s%s", home, path + 1) < 0)
		return NULL;
	return out;
}

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
	rtrim(buf);
	return buf;
}

static int64_t
now_unix(void)
{
	return (int64_t)time(NULL);
}

static void
fmt_time(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL)
		snprintf(buf, len, "never");
	else
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
awscreds_parse_time(const char *s, int64_t *out)
{
	time_t t;
	int rc;

	if ((rc = iso8601_parse(s, ISO8601_LENIENT, &t)) == 0)
		*out = (int64_t)t;
	return rc;
}

/* ---------------------------------------------------------------- */
/* Waiters and the end of a fetch                                   */
/* ---------------------------------------------------------------- */

static int
creds_valid(const struct awscreds *ac, int64_t now)
{
	return ac->have_creds &&
	    (ac->creds.expiration == 0 || ac->creds.expiration > now);
}

/*
 * Ends the fetch: on success the fetched credentials replace the cached
 * ones; on failure the cached ones stay while they are valid.  Then every
 * waiter is answered, in arrival order.
 */
static void
fetch_finish(struct awscreds *ac, const char *source, const char *error)
{
	struct waiter *w, *list;
	int64_t now = now_unix();
	char exp[32], *err = NULL;

	ac->fetching = 0;
	free(ac->role_arn);
	ac->role_arn = NULL;
	if (error == NULL && ac->fetched.expiration != 0 &&
	    ac->fetched.expiration <= now) {
		fmt_time(ac->fetched.expiration, exp, sizeof(exp));
		if (asprintf(&err, "AWS credentials from %s expired at %s "
		    "already: is the system clock right?", source, exp) < 0)
			err = NULL;
		error = err ? err : "AWS credentials already expired";
		creds_clear(&ac->fetched);
	}
	if (error == NULL) {
		creds_clear(&ac->creds);
		ac->creds = ac->fetched;
		memset(&ac->fetched, 0, sizeof(ac->fetched));
		ac->have_creds = 1;
		ac->source = source;
		ac->retry_at = 0;
		fmt_time(ac->creds.expiration, exp, sizeof(exp));
		log_info("AWS credentials from %s, expiring %s", ac->source,
		    exp);
		if (ac->creds.expiration != 0 &&
		    ac->creds.expiration - now <= AWSCREDS_MANDATORY)
			log_warnx("AWS credentials from %s expire in %lld s, "
			    "less than the %d s refresh margin", ac->source,
			    (long long)(ac->creds.expiration - now),
			    AWSCREDS_MANDATORY);
	} else {
		creds_clear(&ac->fetched);
		if (creds_valid(ac, now)) {
			ac->retry_at = now + AWSCREDS_RETRY;
			log_warnx("refreshing AWS credentials failed: %s; "
			    "keeping those from %s (valid for %lld s more), "
			    "retrying in %d s", error, ac->source,
			    (long long)(ac->creds.expiration - now),
			    AWSCREDS_RETRY);
		} else {
			log_warnx("%s", error);
		}
		/* Copy: a waiter may start a fetch that rewrites ac->why. */
		if (err == NULL && (err = strdup(error)) != NULL)
			error = err;
	}
	list = ac->waiters;
	ac->waiters = NULL;
	ac->waiters_tail = &ac->waiters;
	while ((w = list) != NULL) {
		list = w->next;
		if (creds_valid(ac, now))
			w->cb(w->arg, &ac->creds, NULL);
		else
			w->cb(w->arg, NULL, error);
		free(w);
	}
	free(err);
}

static void
fetch_ok(struct awscreds *ac, const char *source)
{
	fetch_finish(ac, source, NULL);
}

static void
fetch_start(struct awscreds *ac)
{
	ac->fetching = 1;
	ac->step = STEP_ENV;
	ac->why[0] = '\0';
	creds_clear(&ac->fetched);
	chain_next(ac);
}

/* Fills ac->fetched from strings; 0 or -ENOMEM. */
static int
fetched_set(struct awscreds *ac, const char *id, const char *secret,
    const char *token, int64_t expiration)
{
	creds_clear(&ac->fetched);
	ac->fetched.access_key_id = strdup(id);
	ac->fetched.secret_access_key = strdup(secret);
	if (token != NULL)
		ac->fetched.session_token = strdup(token);
	ac->fetched.expiration = expiration;
	if (ac->fetched.access_key_id == NULL ||
	    ac->fetched.secret_access_key == NULL ||
	    (token != NULL && ac->fetched.session_token == NULL)) {
		creds_clear(&ac->fetched);
		return -ENOMEM;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* 1. Environment                                                   */
/* ---------------------------------------------------------------- */

/* 1: found, 0: not configured, -1: configured but unusable (why). */
static int
from_env(struct awscreds *ac)
{
	const char *id = env("AWS_ACCESS_KEY_ID");
	const char *secret = env("AWS_SECRET_ACCESS_KEY");
	const char *exp = env("AWS_CREDENTIAL_EXPIRATION");
	int64_t expiration = 0;

	if (id == NULL && secret == NULL)
		return 0;
	if (id == NULL || secret == NULL) {
		why_add(ac, "environment: %s is set but %s is not",
		    id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
		    id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		return -1;
	}
	if (exp != NULL && awscreds_parse_time(exp, &expiration) != 0) {
		why_add(ac, "environment: AWS_CREDENTIAL_EXPIRATION \"%s\" is "
		    "not an ISO 8601 time such as 2030-01-02T03:04:05Z", exp);
		return -1;
	}
	if (fetched_set(ac, id, secret, env("AWS_SESSION_TOKEN"),
	    expiration) != 0) {
		why_add(ac, "environment: out of memory");
		return -1;
	}
	return 1;
}

/* ---------------------------------------------------------------- */
/* 2. Shared credentials and config files                           */
/* ---------------------------------------------------------------- */

struct profile {
	const char	*name;
	int		 config;	/* sections are "profile NAME" */
	const char	*path;
	int		 found;
	int		 line, long_line;
	FILE		*fp;
	char		*key, *secret, *token, *region;
	const char	*unsupported;	/* first unsupported key seen */
};

static const char *const unsupported_keys[] = {
	"role_arn", "source_profile", "credential_source",
	"credential_process", "web_identity_token_file", "sso_session",
	"sso_start_url",
};

static void
profile_clear(struct profile *p)
{
	wipe_free(p->key);
	wipe_free(p->secret);
	wipe_free(p->token);
	free(p->region);
	p->key = p->secret = p->token = p->region = NULL;
}

static int
section_matches(const struct profile *p, const char *section)
{
	if (!p->config)
		return strcmp(section, p->name) == 0;
	if (strcmp(p->name, "default") == 0 && strcmp(section, "default") == 0)
		return 1;
	if (strncmp(section, "profile", 7) != 0 ||
	    !isspace((unsigned char)section[7]))
		return 0;
	section += 7;
	while (isspace((unsigned char)*section))
		section++;
	return strcmp(section, p->name) == 0;
}

static int
profile_handler(void *arg, const char *section, const char *name,
    const char *value)
{
	struct profile *p = arg;
	char **slot = NULL;
	size_t i;

	if (!section_matches(p, section))
		return 1;
	p->found = 1;
	if (strcmp(name, "aws_access_key_id") == 0)
		slot = &p->key;
	else if (strcmp(name, "aws_secret_access_key") == 0)
		slot = &p->secret;
	else if (strcmp(name, "aws_session_token") == 0)
		slot = &p->token;
	else if (strcmp(name, "region") == 0)
		slot = &p->region;
	if (slot != NULL) {
		wipe_free(*slot);
		if ((*slot = strdup(value)) == NULL)
			return 0;
		return 1;
	}
	for (i = 0; i < sizeof(unsupported_keys) / sizeof(*unsupported_keys);
	    i++)
		if (p->unsupported == NULL &&
		    strcmp(name, unsupported_keys[i]) == 0)
			p->unsupported = unsupported_keys[i];
	return 1;
}

/*
 * The libinih reader: fgets that notices a line longer than the buffer
 * libinih gave, drops the rest of it and hands libinih an empty line, so
 * a token is never cut silently.
 */
static char *
profile_reader(char *buf, int size, void *arg)
{
	struct profile *p = arg;
	size_t len;
	int c;

	if (size < 2 || fgets(buf, size, p->fp) == NULL)
		return NULL;
	p->line++;
	len = strlen(buf);
	if (len == (size_t)size - 1 && buf[len - 1] != '\n') {
		while ((c = getc(p->fp)) != EOF && c != '\n')
			;
		if (p->long_line == 0)
			p->long_line = p->line;
		buf[0] = '\n';
		buf[1] = '\0';
	}
	return buf;
}

/*
 * Reads the profile's keys from one file.  A missing file is no error
 * (the SDKs ignore it too).  Returns 0, or -1 with a reason in ac->why.
 */
static int
profile_load(struct awscreds *ac, struct profile *p)
{
	bool stack = false, realloc_ok = false;
	int max_line = 0, initial = 0, rc;

	if ((p->fp = fopen(p->path, "re")) == NULL) {
		if (errno != ENOENT)
			why_add(ac, "shared files: cannot read %s: %s",
			    p->path, strerror(errno));
		else
			log_debug("AWS %s file %s does not exist",
			    p->config ? "config" : "credentials", p->path);
		return errno == ENOENT ? 0 : -1;
	}
	if (&ini_max_line != NULL && &ini_use_stack != NULL &&
	    &ini_allow_realloc != NULL && &ini_initial_alloc != NULL) {
		stack = ini_use_stack;
		realloc_ok = ini_allow_realloc;
		max_line = ini_max_line;
		initial = ini_initial_alloc;
		ini_use_stack = false;
		ini_allow_realloc = false;
		ini_max_line = INI_LINE_MAX;
		ini_initial_alloc = INI_LINE_MAX;
	}
	rc = ini_parse_stream(profile_reader, p, profile_handler, p);
	if (&ini_max_line != NULL && &ini_use_stack != NULL &&
	    &ini_allow_realloc != NULL && &ini_initial_alloc != NULL) {
		ini_use_stack = stack;
		ini_allow_realloc = realloc_ok;
		ini_max_line = max_line;
		ini_initial_alloc = initial;
	}
	fclose(p->fp);
	p->fp = NULL;
	if (rc < 0) {
		why_add(ac, "shared files: out of memory reading %s", p->path);
		return -1;
	}
	if (p->long_line) {
		why_add(ac, "shared files: %s line %d is too long for the INI "
		    "parser", p->path, p->long_line);
		return -1;
	}
	if (rc > 0)
		log_debug("AWS %s file %s: syntax error at line %d",
		    p->config ? "config" : "credentials", p->path, rc);
	return 0;
}

static char *
file_path(const char *var, const char *dflt)
{
	const char *v = env(var), *home;
	char *out;

	if (v != NULL)
		return expand_home(v);
	if ((home = env("HOME")) == NULL)
		return NULL;
	if (asprintf(&out, "%s/.aws/%s", home, dflt) < 0)
		return NULL;
	return out;
}

static const char *
profile_name(void)
{
	const char *p = env("AWS_PROFILE");

	return p ? p : "default";
}

/* The selected profile's region from the config file, or NULL. */
static char *
profile_region(struct awscreds *ac)
{
	struct profile cf = { .name = profile_name(), .config = 1 };
	char *path, *region = NULL, saved[WHY_MAX];

	if ((path = file_path("AWS_CONFIG_FILE", "config")) == NULL)
		return NULL;
	cf.path = path;
	/* Only the region matters here: keep the fetch's reasons intact. */
	memcpy(saved, ac->why, sizeof(saved));
	if (profile_load(ac, &cf) == 0 && cf.region != NULL && *cf.region) {
		region = cf.region;
		cf.region = NULL;
	}
	memcpy(ac->why, saved, sizeof(saved));
	profile_clear(&cf);
	free(path);
	return region;
}

static int
from_profile(struct awscreds *ac)
{
	struct profile cr = { .name = profile_name(), .config = 0 };
	struct profile cf = { .name = profile_name(), .config = 1 };
	struct profile *use = NULL;
	char *crpath = NULL, *cfpath = NULL;
	int rc = 0;

	crpath = file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
	cfpath = file_path("AWS_CONFIG_FILE", "config");
	cr.path = crpath;
	cf.path = cfpath;
	if ((crpath && profile_load(ac, &cr) != 0) ||
	    (cfpath && profile_load(ac, &cf) != 0)) {
		rc = -1;
		goto out;
	}
	if (cr.key != NULL || cr.secret != NULL)
		use = &cr;
	else if (cf.key != NULL || cf.secret != NULL)
		use = &cf;
	if (use != NULL) {
		if (use->key == NULL || use->secret == NULL) {
			why_add(ac, "shared files: profile \"%s\" in %s has %s "
			    "but no %s", use->name, use->path,
			    use->key ? "aws_access_key_id" :
			    "aws_secret_access_key",
			    use->key ? "aws_secret_access_key" :
			    "aws_access_key_id");
			rc = -1;
		} else if (fetched_set(ac, use->key, use->secret, use->token,
		    0) != 0) {
			why_add(ac, "shared files: out of memory");
			rc = -1;
		} else {
			log_debug("AWS credentials: profile \"%s\" from %s",
			    use->name, use->path);
			rc = 1;
		}
	} else if (cr.unsupported || cf.unsupported) {
		const char *k = cr.unsupported ? cr.unsupported :
		    cf.unsupported;

		log_debug("AWS profile \"%s\" uses %s, which bcdad does not "
		    "support; trying the next source", cr.name, k);
		why_add(ac, "shared files: profile \"%s\" uses %s, which "
		    "bcdad does not support (give it static keys, or use "
		    "web identity or an instance role)", cr.name, k);
		rc = -1;
	} else if (env("AWS_PROFILE") != NULL) {
		why_add(ac, "shared files: profile \"%s\" has no keys in %s "
		    "or %s", cr.name, crpath ? crpath : "(no HOME)",
		    cfpath ? cfpath : "(no HOME)");
		rc = -1;
	}
out:
	profile_clear(&cr);
	profile_clear(&cf);
	free(crpath);
	free(cfpath);
	return rc;
}

/* ---------------------------------------------------------------- */
/* Region without the network                                       */
/* ---------------------------------------------------------------- */

static char *
region_local(struct awscreds *ac)
{
	const char *r;

	if (ac->opt_region != NULL)
		return strdup(ac->opt_region);
	if ((r = env("AWS_REGION")) != NULL ||
	    (r = env("AWS_DEFAULT_REGION")) != NULL)
		return strdup(r);
	return profile_region(ac);
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

static void
sts_done(struct http_req *r, void *arg)
{
	struct awscreds *ac = arg;
	const struct http_resp *resp = http_req_resp(r);
	struct sts_xml x;
	int64_t exp = 0;
	int ok = 0;

	ac->req = NULL;
	if (resp->result != CURLE_OK) {
		why_add(ac, "web identity: STS at %s: %s", http_req_url(r),
		    resp->error);
		goto next;
	}
	if (sts_xml_parse(resp->body ? resp->body : "", resp->body_len,
	    &x) != 0) {
		why_add(ac, "web identity: STS at %s answered HTTP %ld with a "
		    "body that is not XML", http_req_url(r), resp->status);
		sts_xml_free(&x);
		goto next;
	}
	if (resp->status != 200 || x.val[X_CODE] != NULL) {
		why_add(ac, "web identity: STS AssumeRoleWithWebIdentity for "
		    "%s failed: HTTP %ld %s%s%s", ac->role_arn, resp->status,
		    x.val[X_CODE] ? x.val[X_CODE] : "(no error code)",
		    x.val[X_MESSAGE] ? ": " : "",
		    x.val[X_MESSAGE] ? x.val[X_MESSAGE] : "");
	} else if (x.val[X_KEY] == NULL || x.val[X_SECRET] == NULL ||
	    x.val[X_TOKEN] == NULL || x.val[X_EXP] == NULL) {
		why_add(ac, "web identity: STS answer lacks AccessKeyId, "
		    "SecretAccessKey, SessionToken or Expiration");
	} else if (awscreds_parse_time(x.val[X_EXP], &exp) != 0) {
		why_add(ac, "web identity: STS Expiration \"%s\" is not ISO "
		    "8601", x.val[X_EXP]);
	} else if (fetched_set(ac, x.val[X_KEY], x.val[X_SECRET],
	    x.val[X_TOKEN], exp) != 0) {
		why_add(ac, "web identity: out of memory");
	} else {
		ok = 1;
	}
	sts_xml_free(&x);
next:
	req_free(r);
	if (ok)
		fetch_ok(ac, "web-identity");
	else
		chain_next(ac);
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
static int
from_web_identity(struct awscreds *ac)
{
	const char *file = env("AWS_WEB_IDENTITY_TOKEN_FILE");
	const char *role = env("AWS_ROLE_ARN");
	const char *session = env("AWS_ROLE_SESSION_NAME");
	char *token = NULL, *body = NULL, *url = NULL, *region = NULL;
	char sname[32];
	struct http_req *r = NULL;
	int rc = -1;

	if (file == NULL && role == NULL)
		return 0;
	if (file == NULL || role == NULL) {
		why_add(ac, "web identity: %s is set but %s is not",
		    file ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN",
		    file ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE");
		return -1;
	}
	if ((token = read_secret_file(file)) == NULL) {
		why_add(ac, "web identity: cannot read the token file %s: %s",
		    file, strerror(errno));
		return -1;
	}
	if (*token == '\0') {
		why_add(ac, "web identity: the token file %s is empty", file);
		goto out;
	}
	if (session == NULL) {
		snprintf(sname, sizeof(sname), "bcdad-%ld", (long)getpid());
		session = sname;
	}
	if (ac->opt_sts != NULL) {
		url = strdup(ac->opt_sts);
	} else if ((region = region_local(ac)) != NULL) {
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
		why_add(ac, "web identity: out of memory");
		goto out;
	}
	/* The endpoint is a base URL: the action is POSTed to "/". */
	if (url[strlen(url) - 1] != '/') {
		char *u;

		if (asprintf(&u, "%s/", url) < 0) {
			why_add(ac, "web identity: out of memory");
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
		why_add(ac, "web identity: out of memory");
		goto out;
	}
	http_req_timeout(r, STS_TIMEOUT);
	if (http_start(ac->http, r, sts_done, ac) != 0) {
		why_add(ac, "web identity: cannot start a request to %s", url);
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
/* 4, 5. ECS and IMDS answers (the same JSON)                       */
/* ---------------------------------------------------------------- */

/*
 * Fills ac->fetched from a container or instance-role JSON answer.
 * Returns 0, or -1 with a reason (label first) in ac->why.
 */
static int
creds_from_json(struct awscreds *ac, const char *label, const char *body,
    int strict)
{
	const char *id, *secret, *token, *exp, *code, *msg;
	json_error_t jerr;
	json_t *j;
	int64_t expiration = 0;
	int rc = -1;

	if ((j = json_loads(body ? body : "", 0, &jerr)) == NULL ||
	    !json_is_object(j)) {
		why_add(ac, "%s: the answer is not a JSON object", label);
		goto out;
	}
	id = json_string_value(json_object_get(j, "AccessKeyId"));
	secret = json_string_value(json_object_get(j, "SecretAccessKey"));
	token = json_string_value(json_object_get(j, "Token"));
	exp = json_string_value(json_object_get(j, "Expiration"));
	code = json_string_value(json_object_get(j, "Code"));
	msg = json_string_value(json_object_get(j, "Message"));
	if (code != NULL && strcmp(code, "Success") != 0) {
		why_add(ac, "%s: %s%s%s", label, code, msg ? ": " : "",
		    msg ? msg : "");
		goto out;
	}
	if (id == NULL || secret == NULL || (strict && (token == NULL ||
	    exp == NULL))) {
		why_add(ac, "%s: the answer lacks AccessKeyId, "
		    "SecretAccessKey%s", label, strict ?
		    ", Token or Expiration" : "");
		goto out;
	}
	if (exp != NULL && awscreds_parse_time(exp, &expiration) != 0) {
		why_add(ac, "%s: Expiration \"%s\" is not ISO 8601", label,
		    exp);
		goto out;
	}
	if (fetched_set(ac, id, secret, token, expiration) != 0) {
		why_add(ac, "%s: out of memory", label);
		goto out;
	}
	rc = 0;
out:
	json_decref(j);
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
		why_add(ac, "ECS: out of memory");
		return -1;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		why_add(ac, "ECS: AWS_CONTAINER_CREDENTIALS_FULL_URI \"%s\" "
		    "is not a URL", url);
		goto out;
	}
	if (strcasecmp(scheme, "https") == 0 ||
	    (strcasecmp(scheme, "http") == 0 && ecs_host_allowed(host)))
		rc = 0;
	else
		why_add(ac, "ECS: AWS_CONTAINER_CREDENTIALS_FULL_URI \"%s\" "
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
		why_add(ac, "ECS: GET %s: %s", http_req_url(r), resp->error);
	else if (resp->status != 200)
		why_add(ac, "ECS: GET %s answered HTTP %ld%s", http_req_url(r),
		    resp->status, resp->status == 401 || resp->status == 403 ?
		    " (check the container authorization token)" : "");
	else if (creds_from_json(ac, "ECS", resp->body, 0) == 0)
		ok = 1;
	req_free(r);
	/* ECS and IMDS exclude each other: after ECS the chain ends. */
	if (ok)
		fetch_ok(ac, "ecs");
	else
		chain_next(ac);
}

/* 1: request started, 0: not configured, -1: failed (why). */
static int
from_container(struct awscreds *ac)
{
	const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *tfile = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	char *url = NULL, *token = NULL, *hdr = NULL;
	struct http_req *r = NULL;
	int rc = -1;

	if (rel == NULL && full == NULL)
		return 0;
	if (rel != NULL) {
		if (asprintf(&url, "%s%s%s", ECS_HOST, rel[0] == '/' ? "" :
		    "/", rel) < 0) {
			why_add(ac, "ECS: out of memory");
			return -1;
		}
	} else {
		if (ecs_check_full_uri(ac, full) != 0)
			return -1;
		if ((url = strdup(full)) == NULL) {
			why_add(ac, "ECS: out of memory");
			return -1;
		}
	}
	if (tfile != NULL) {
		if ((token = read_secret_file(tfile)) == NULL) {
			why_add(ac, "ECS: cannot read "
			    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s: %s",
			    tfile, strerror(errno));
			goto out;
		}
	} else if (env("AWS_CONTAINER_AUTHORIZATION_TOKEN") != NULL) {
		token = strdup(env("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
	}
	if (token != NULL && strpbrk(token, "\r\n") != NULL) {
		why_add(ac, "ECS: the container authorization token contains "
		    "a line break");
		goto out;
	}
	if ((r = http_req_new("GET", url)) == NULL ||
	    http_req_header(r, "Accept: application/json") != 0 ||
	    (token != NULL && (asprintf(&hdr, "Authorization: %s",
	    token) < 0 || http_req_header(r, hdr) != 0))) {
		why_add(ac, "ECS: out of memory");
		goto out;
	}
	http_req_timeout(r, ECS_TIMEOUT);
	if (http_start(ac->http, r, ecs_done, ac) != 0) {
		why_add(ac, "ECS: cannot start a request to %s", url);
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

/* ---------------------------------------------------------------- */
/* IMDSv2 requests                                                  */
/* ---------------------------------------------------------------- */

static char *
imds_endpoint(void)
{
	const char *e = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	char *out;
	size_t n;

	if ((out = strdup(e ? e : IMDS_DEFAULT_ENDPOINT)) == NULL)
		return NULL;
	n = strlen(out);
	while (n > 0 && out[n - 1] == '/')
		out[--n] = '\0';
	return out;
}

static void
imds_token_drop(struct awscreds *ac)
{
	wipe_free(ac->imds_token);
	free(ac->imds_token_ep);
	ac->imds_token = ac->imds_token_ep = NULL;
	ac->imds_token_exp = 0;
}

/* Reports the call's end and frees its request afterwards. */
static void
imds_end(struct imds_call *c, struct http_req *r, const char *body,
    const char *error)
{
	c->req = NULL;
	c->done(c, body, error);
	req_free(r);
}

static void
imds_http_done(struct http_req *r, void *arg)
{
	struct imds_call *c = arg;
	struct awscreds *ac = c->ac;
	const struct http_resp *resp = http_req_resp(r);
	char err[512];

	if (resp->result != CURLE_OK) {
		snprintf(err, sizeof(err), "%s %s: %s (not running on EC2?)",
		    c->getting ? "GET" : "PUT", http_req_url(r), resp->error);
		imds_end(c, r, NULL, err);
		return;
	}
	if (!c->getting) {
		if (resp->status != 200 || resp->body == NULL) {
			snprintf(err, sizeof(err), "token request PUT %s "
			    "answered HTTP %ld%s", http_req_url(r),
			    resp->status, resp->status == 403 ?
			    " (IMDS disabled for this instance?)" : "");
			imds_end(c, r, NULL, err);
			return;
		}
		imds_token_drop(ac);
		ac->imds_token = strdup(resp->body);
		ac->imds_token_ep = strdup(c->endpoint);
		if (ac->imds_token == NULL || ac->imds_token_ep == NULL) {
			imds_token_drop(ac);
			imds_end(c, r, NULL, "out of memory");
			return;
		}
		rtrim(ac->imds_token);
		ac->imds_token_exp = now_unix() + IMDS_TOKEN_TTL;
		c->req = NULL;
		req_free(r);
		imds_send(c);
		return;
	}
	if (resp->status == 401 && !c->retried) {
		/* The token expired or IMDS restarted: get a new one, once. */
		log_debug("IMDS: 401 on GET %s; getting a new token",
		    http_req_url(r));
		c->retried = 1;
		imds_token_drop(ac);
		c->req = NULL;
		req_free(r);
		imds_send(c);
		return;
	}
	if (resp->status != 200) {
		snprintf(err, sizeof(err), "GET %s answered HTTP %ld%s",
		    http_req_url(r), resp->status, resp->status == 404 ?
		    " (no IAM role attached to the instance?)" : "");
		imds_end(c, r, NULL, err);
		return;
	}
	imds_end(c, r, resp->body ? resp->body : "", NULL);
}

/* Sends the token PUT or the GET, whichever comes next. */
static void
imds_send(struct imds_call *c)
{
	struct awscreds *ac = c->ac;
	struct http_req *r = NULL;
	char *url = NULL, *hdr = NULL;
	int ok;

	ok = ac->imds_token != NULL && ac->imds_token_ep != NULL &&
	    strcmp(ac->imds_token_ep, c->endpoint) == 0 &&
	    ac->imds_token_exp > now_unix() + 60;
	c->getting = ok;
	if (asprintf(&url, "%s%s", c->endpoint, ok ? c->path :
	    "/latest/api/token") < 0) {
		url = NULL;
		goto oom;
	}
	if ((r = http_req_new(ok ? "GET" : "PUT", url)) == NULL)
		goto oom;
	if (ok) {
		if (asprintf(&hdr, "X-aws-ec2-metadata-token: %s",
		    ac->imds_token) < 0) {
			hdr = NULL;
			goto oom;
		}
	} else if (asprintf(&hdr, "X-aws-ec2-metadata-token-ttl-seconds: %d",
	    IMDS_TOKEN_TTL) < 0) {
		hdr = NULL;
		goto oom;
	}
	if (http_req_header(r, hdr) != 0)
		goto oom;
	http_req_timeout(r, IMDS_TIMEOUT);
	if (http_start(ac->http, r, imds_http_done, c) != 0) {
		http_req_free(r);
		free(url);
		wipe_free(hdr);
		c->done(c, NULL, "cannot start a request");
		return;
	}
	c->req = r;
	free(url);
	wipe_free(hdr);
	return;
oom:
	http_req_free(r);
	free(url);
	wipe_free(hdr);
	c->done(c, NULL, "out of memory");
}

/* Starts GET path on IMDS; done runs once, possibly before this returns. */
static void
imds_get(struct imds_call *c, const char *path, imds_done_cb done)
{
	free(c->path);
	free(c->endpoint);
	c->path = strdup(path);
	c->endpoint = imds_endpoint();
	c->retried = 0;
	c->done = done;
	if (c->path == NULL || c->endpoint == NULL) {
		done(c, NULL, "out of memory");
		return;
	}
	imds_send(c);
}

static void
imds_call_free(struct awscreds *ac, struct imds_call *c)
{
	if (c->req != NULL) {
		http_cancel(ac->http, c->req);
		req_free(c->req);
	}
	free(c->path);
	free(c->endpoint);
	memset(c, 0, sizeof(*c));
}

/* ---------------------------------------------------------------- */
/* 5. IMDS instance role                                            */
/* ---------------------------------------------------------------- */

static void
imds_creds_done(struct imds_call *c, const char *body, const char *error)
{
	struct awscreds *ac = c->ac;

	if (error != NULL) {
		why_add(ac, "IMDS: %s", error);
		chain_next(ac);
	} else if (creds_from_json(ac, "IMDS", body, 1) != 0) {
		chain_next(ac);
	} else {
		fetch_ok(ac, "imds");
	}
}

static void
imds_role_done(struct imds_call *c, const char *body, const char *error)
{
	struct awscreds *ac = c->ac;
	char *role = NULL, *esc = NULL, *path = NULL;
	size_t n;

	if (error != NULL) {
		why_add(ac, "IMDS: %s", error);
		chain_next(ac);
		return;
	}
	n = strcspn(body, "\r\n");
	if (n == 0 || (role = strndup(body, n)) == NULL ||
	    (esc = curl_easy_escape(NULL, role, 0)) == NULL ||
	    asprintf(&path, "/latest/meta-data/iam/security-credentials/%s",
	    esc) < 0) {
		if (n == 0)
			why_add(ac, "IMDS: no IAM role is attached to the "
			    "instance");
		else
			why_add(ac, "IMDS: out of memory");
		free(role);
		curl_free(esc);
		chain_next(ac);
		return;
	}
	log_debug("AWS credentials: IMDS instance role %s", role);
	free(role);
	curl_free(esc);
	imds_get(c, path, imds_creds_done);
	free(path);
}

/* ---------------------------------------------------------------- */
/* The chain                                                        */
/* ---------------------------------------------------------------- */

static void
chain_error(struct awscreds *ac)
{
	char msg[WHY_MAX + 256];

	snprintf(msg, sizeof(msg), "no AWS credentials: set AWS_ACCESS_KEY_ID/"
	    "AWS_SECRET_ACCESS_KEY, a shared credentials profile, web "
	    "identity, or run on EC2 with an instance role (%s)",
	    ac->why[0] ? ac->why : "nothing configured");
	fetch_finish(ac, NULL, msg);
}

/*
 * Tries the sources from ac->step on, until one finds credentials, one
 * has started a request (its done callback calls chain_next again), or
 * none is left.
 */
static void
chain_next(struct awscreds *ac)
{
	int rc;

	for (;;) {
		switch (ac->step++) {
		case STEP_ENV:
			if (from_env(ac) == 1) {
				fetch_ok(ac, "environment");
				return;
			}
			break;
		case STEP_PROFILE:
			if (from_profile(ac) == 1) {
				fetch_ok(ac, "shared-credentials-file");
				return;
			}
			break;
		case STEP_WEB_IDENTITY:
			if (from_web_identity(ac) == 1)
				return;
			break;
		case STEP_CONTAINER:
			rc = from_container(ac);
			if (rc != 0) {
				/* When ECS is configured IMDS is not tried. */
				ac->step = STEP_END;
				if (rc == 1)
					return;
			}
			break;
		case STEP_IMDS:
			if (env_true("AWS_EC2_METADATA_DISABLED")) {
				why_add(ac, "IMDS: disabled by "
				    "AWS_EC2_METADATA_DISABLED=true");
				break;
			}
			ac->imds.ac = ac;
			imds_get(&ac->imds,
			    "/latest/meta-data/iam/security-credentials/",
			    imds_role_done);
			return;
		case STEP_END:
		default:
			ac->step = STEP_END;
			chain_error(ac);
			return;
		}
	}
}

/* ---------------------------------------------------------------- */
/* Public interface                                                 */
/* ---------------------------------------------------------------- */

struct awscreds *
awscreds_new(uv_loop_t *loop, struct http *http,
    const struct awscreds_opts *opts)
{
	struct awscreds *ac;

	if ((ac = calloc(1, sizeof(*ac))) == NULL)
		return NULL;
	ac->loop = loop;
	ac->http = http;
	ac->waiters_tail = &ac->waiters;
	ac->rwaiters_tail = &ac->rwaiters;
	ac->imds.ac = ac;
	ac->rimds.ac = ac;
	if (opts != NULL && opts->region != NULL && *opts->region &&
	    (ac->opt_region = strdup(opts->region)) == NULL)
		goto fail;
	if (opts != NULL && opts->sts_endpoint != NULL &&
	    *opts->sts_endpoint &&
	    (ac->opt_sts = strdup(opts->sts_endpoint)) == NULL)
		goto fail;
	return ac;
fail:
	awscreds_free(ac);
	return NULL;
}

static void
waiters_free(struct waiter *w)
{
	struct waiter *next;

	for (; w != NULL; w = next) {
		next = w->next;
		free(w);
	}
}

void
awscreds_free(struct awscreds *ac)
{
	if (ac == NULL)
		return;
	if (ac->req != NULL) {
		http_cancel(ac->http, ac->req);
		req_free(ac->req);
	}
	imds_call_free(ac, &ac->imds);
	imds_call_free(ac, &ac->rimds);
	waiters_free(ac->waiters);
	waiters_free(ac->rwaiters);
	creds_clear(&ac->creds);
	creds_clear(&ac->fetched);
	imds_token_drop(ac);
	free(ac->role_arn);
	free(ac->region);
	free(ac->opt_region);
	free(ac->opt_sts);
	free(ac);
}

void
awscreds_get(struct awscreds *ac, awscreds_cb cb, void *arg)
{
	int64_t now = now_unix(), left;
	struct waiter *w;

	left = ac->creds.expiration - now;
	if (ac->have_creds && (ac->creds.expiration == 0 ||
	    left > AWSCREDS_MANDATORY)) {
		if (ac->creds.expiration != 0 && left <= AWSCREDS_ADVISORY &&
		    !ac->fetching && now >= ac->retry_at) {
			log_debug("AWS credentials from %s expire in %lld s: "
			    "refreshing in the background", ac->source,
			    (long long)left);
			fetch_start(ac);
		}
		cb(arg, &ac->creds, NULL);
		return;
	}
	if (!ac->fetching && creds_valid(ac, now) && now < ac->retry_at) {
		/* A refresh failed moments ago: the old ones still work. */
		cb(arg, &ac->creds, NULL);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		cb(arg, NULL, "out of memory");
		return;
	}
	w->cb = cb;
	w->arg = arg;
	*ac->waiters_tail = w;
	ac->waiters_tail = &w->next;
	if (!ac->fetching)
		fetch_start(ac);
}

void
awscreds_invalidate(struct awscreds *ac)
{
	creds_clear(&ac->creds);
	ac->have_creds = 0;
	ac->source = NULL;
	ac->retry_at = 0;
}

const char *
awscreds_source(const struct awscreds *ac)
{
	return ac->have_creds ? ac->source : NULL;
}

int
awscreds_busy(const struct awscreds *ac)
{
	return ac->fetching || ac->region_fetching;
}

const char *
awscreds_region_cached(const struct awscreds *ac)
{
	return ac->region;
}

static void
region_answer(struct awscreds *ac, const char *error)
{
	struct waiter *w, *list = ac->rwaiters;

	ac->rwaiters = NULL;
	ac->rwaiters_tail = &ac->rwaiters;
	while ((w = list) != NULL) {
		list = w->next;
		w->rcb(w->arg, error ? NULL : ac->region, error);
		free(w);
	}
}

static void
region_imds_done(struct imds_call *c, const char *body, const char *error)
{
	struct awscreds *ac = c->ac;
	char msg[768];
	char *r = NULL;

	ac->region_fetching = 0;
	if (error == NULL) {
		if ((r = strndup(body, strcspn(body, "\r\n"))) != NULL)
			rtrim(r);
		if (r == NULL || *r == '\0') {
			free(r);
			r = NULL;
			error = "IMDS placement/region is empty";
		}
	}
	if (r != NULL) {
		free(ac->region);
		ac->region = r;
		log_info("AWS region %s (from IMDS)", r);
		region_answer(ac, NULL);
		return;
	}
	snprintf(msg, sizeof(msg), "no AWS region: set region in bcdad.conf, "
	    "AWS_REGION or AWS_DEFAULT_REGION (IMDS: %s)", error);
	log_warnx("%s", msg);
	region_answer(ac, msg);
}

void
awscreds_region(struct awscreds *ac, awscreds_region_cb cb, void *arg)
{
	struct waiter *w;
	char *r;

	if (ac->region != NULL) {
		cb(arg, ac->region, NULL);
		return;
	}
	if ((r = region_local(ac)) != NULL) {
		ac->region = r;
		cb(arg, ac->region, NULL);
		return;
	}
	if (env_true("AWS_EC2_METADATA_DISABLED")) {
		cb(arg, NULL, "no AWS region: set region in bcdad.conf, "
		    "AWS_REGION or AWS_DEFAULT_REGION (IMDS is disabled by "
		    "AWS_EC2_METADATA_DISABLED=true)");
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		cb(arg, NULL, "out of memory");
		return;
	}
	w->rcb = cb;
	w->arg = arg;
	*ac->rwaiters_tail = w;
	ac->rwaiters_tail = &w->next;
	if (!ac->region_fetching) {
		ac->region_fetching = 1;
		imds_get(&ac->rimds, "/latest/meta-data/placement/region",
		    region_imds_done);
	}
}
