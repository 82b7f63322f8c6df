/*
 * Configuration: reads bcdad.conf with libinih and validates every value.
 * See config.h and bcdad.conf(5).
 *
 * libinih does the INI syntax.  Our reader hands it one whole line per
 * call and counts lines, so every handler call knows its line number (the
 * Debian build has INI_HANDLER_LINENO 0).  The reader also notices section
 * headers, so that empty sections, repeated sections and profile names
 * longer than libinih's 50-byte section buffer are seen too.  Every problem
 * is collected with its line and parsing goes on; config_load() then
 * returns NULL with all of them, sorted by line.
 */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"

#define DEFAULT_STATE_DIR	"/var/lib/bcdad"
#define DEFAULT_RUNTIME_DIR	"/run/bcdad"
#define DEFAULT_BASE_URL	"https://sandbox.bcda.cms.gov"
#define PROFILE_NAME_MAX	64
#define SECRET_MAX		4096

enum sect_kind {
	SECT_NONE,		/* keys before any section header */
	SECT_DAEMON,
	SECT_PROFILE,
	SECT_IGNORE,		/* a bad or repeated section: keys skipped */
};

enum daemon_key {
	DK_STATE_DIR,
	DK_RUNTIME_DIR,
	DK_STORAGE_DIR,
	DK_LOG_LEVEL,
	DK_MAX_DOWNLOADS,
	DK_MAX_DOWNLOADS_PER_JOB,
	DK_CONNECT_TIMEOUT,
	DK_LOW_SPEED_TIME,
	DK_POLL_MIN,
	DK_POLL_MAX,
	DK_RETRY_MIN,
	DK_RETRY_MAX,
	DK__COUNT
};

enum profile_key {
	PK_BASE_URL,
	PK_API_VERSION,
	PK_ENDPOINT,
	PK_RESOURCE_TYPES,
	PK_SINCE,
	PK_TYPE_FILTER,
	PK_CLIENT_ID,
	PK_SECRET_FILE,
	PK_SECRET_CREDENTIAL,
	PK_STORAGE_DIR,
	PK__COUNT
};

#define KEY_MAX		16
_Static_assert(DK__COUNT <= KEY_MAX && PK__COUNT <= KEY_MAX, "KEY_MAX");

static const char *const daemon_keys[DK__COUNT] = {
	[DK_STATE_DIR] = "state_dir",
	[DK_RUNTIME_DIR] = "runtime_dir",
	[DK_STORAGE_DIR] = "storage_dir",
	[DK_LOG_LEVEL] = "log_level",
	[DK_MAX_DOWNLOADS] = "max_downloads",
	[DK_MAX_DOWNLOADS_PER_JOB] = "max_downloads_per_job",
	[DK_CONNECT_TIMEOUT] = "connect_timeout",
	[DK_LOW_SPEED_TIME] = "low_speed_time",
	[DK_POLL_MIN] = "poll_min",
	[DK_POLL_MAX] = "poll_max",
	[DK_RETRY_MIN] = "retry_min",
	[DK_RETRY_MAX] = "retry_max",
};

static const char *const profile_keys[PK__COUNT] = {
	[PK_BASE_URL] = "base_url",
	[PK_API_VERSION] = "api_version",
	[PK_ENDPOINT] = "endpoint",
	[PK_RESOURCE_TYPES] = "resource_types",
	[PK_SINCE] = "since",
	[PK_TYPE_FILTER] = "type_filter",
	[PK_CLIENT_ID] = "client_id",
	[PK_SECRET_FILE] = "client_secret_file",
	[PK_SECRET_CREDENTIAL] = "client_secret_credential",
	[PK_STORAGE_DIR] = "storage_dir",
};

/*
 * The integer keys of [daemon].  The lower bounds of poll_max and
 * retry_max are checked against poll_min and retry_min once the section
 * is complete.
 */
static const struct int_key {
	enum daemon_key	 key;
	size_t		 off;
	int		 min, max, def;
} int_keys[] = {
	{ DK_MAX_DOWNLOADS, offsetof(struct config, max_downloads),
	    1, 256, 16 },
	{ DK_MAX_DOWNLOADS_PER_JOB,
	    offsetof(struct config, max_downloads_per_job), 1, 64, 4 },
	{ DK_CONNECT_TIMEOUT, offsetof(struct config, connect_timeout),
	    1, 600, 30 },
	{ DK_LOW_SPEED_TIME, offsetof(struct config, low_speed_time),
	    1, 3600, 60 },
	{ DK_POLL_MIN, offsetof(struct config, poll_min), 1, 3600, 15 },
	{ DK_POLL_MAX, offsetof(struct config, poll_max), 1, 86400, 300 },
	{ DK_RETRY_MIN, offsetof(struct config, retry_min), 1, 86400, 5 },
	{ DK_RETRY_MAX, offsetof(struct config, retry_max), 1, 86400, 900 },
};

/* The resource types BCDA knows, with the API versions that serve them. */
#define V(n)	(1 << (n))
static const struct {
	const char	*name;
	int		 versions;
} resource_types[] = {
	{ "Patient",			V(1) | V(2) | V(3) },
	{ "Coverage",			V(1) | V(2) | V(3) },
	{ "ExplanationOfBenefit",	V(1) | V(2) | V(3) },
	{ "Claim",			V(2) },
	{ "ClaimResponse",		V(2) },
};
#define NRESOURCE_TYPES	(sizeof(resource_types) / sizeof(resource_types[0]))
_Static_assert(NRESOURCE_TYPES <= CONFIG_MAX_TYPES, "CONFIG_MAX_TYPES");

static const char *const endpoint_names[] = {
	[EP_PATIENT] = "patient",
	[EP_GROUP_ALL] = "group-all",
	[EP_GROUP_RUNOUT] = "group-runout",
};

struct conf_error {
	int		 line;		/* 0: about the whole file */
	size_t		 seq;		/* keeps the sort stable */
	char		*msg;
};

struct parse_state {
	struct config	*conf;
	const char	*path;
	FILE		*fp;
	int		 line;		/* the line libinih is working on */
	int		 cont;		/* it continues the previous value */
	int		 have_prev;	/* a key was seen in this section */
	int		 pending;	/* key line not yet seen by handler */

	enum sect_kind	 kind;
	char		*sect_name;	/* as written between [ and ] */
	int		 sect_line;
	struct profile	*prof;
	int		 keyline[KEY_MAX];	/* 0: not set in this section */
	int		 keybad[KEY_MAX];	/* set, but the value was bad */
	int		 last_key;		/* -1 if none */
	int		 daemon_line;		/* first [daemon], 0 if none */

	struct conf_error *errs;
	size_t		 nerrs, errcap;
	int		 oom;
};

static void	conf_error(struct parse_state *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));

/*
 * Records one problem at a line.  Running out of memory here is remembered
 * and reported once at the end.
 */
static void
conf_error(struct parse_state *ps, int line, const char *fmt, ...)
{
	struct conf_error *e;
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1) {
		va_end(ap);
		ps->oom = 1;
		return;
	}
	va_end(ap);
	if (ps->nerrs == ps->errcap) {
		size_t ncap = ps->errcap ? ps->errcap * 2 : 16;

		e = reallocarray(ps->errs, ncap, sizeof(*e));
		if (e == NULL) {
			free(msg);
			ps->oom = 1;
			return;
		}
		ps->errs = e;
		ps->errcap = ncap;
	}
	e = &ps->errs[ps->nerrs];
	e->line = line;
	e->seq = ps->nerrs;
	e->msg = msg;
	ps->nerrs++;
}

static int
error_has_line(const struct parse_state *ps, int line)
{
	size_t i;

	for (i = 0; i < ps->nerrs; i++)
		if (ps->errs[i].line == line)
			return 1;
	return 0;
}

static int
error_cmp(const void *a, const void *b)
{
	const struct conf_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Writes the collected problems to errs, sorted by line, as whole
 * "file:line: message" lines while they fit.
 */
static void
errors_format(struct parse_state *ps, char *errs, size_t errlen)
{
	size_t i, used = 0;
	int n;

	if (errs == NULL || errlen == 0)
		return;
	errs[0] = '\0';
	qsort(ps->errs, ps->nerrs, sizeof(ps->errs[0]), error_cmp);
	for (i = 0; i < ps->nerrs; i++) {
		if (ps->errs[i].line > 0)
			n = snprintf(errs + used, errlen - used, "%s:%d: %s\n",
			    ps->path, ps->errs[i].line, ps->errs[i].msg);
		else
			n = snprintf(errs + used, errlen - used, "%s: %s\n",
			    ps->path, ps->errs[i].msg);
		if (n < 0 || (size_t)n >= errlen - used) {
			/* Drop the partial line rather than cut it. */
			errs[used] = '\0';
			break;
		}
		used += (size_t)n;
	}
	if (ps->oom && used + sizeof(": out of memory\n") +
	    strlen(ps->path) <= errlen)
		snprintf(errs + used, errlen - used, "%s: out of memory\n",
		    ps->path);
}

static char *
xstrdup(struct parse_state *ps, const char *s)
{
	char *d;

	if ((d = strdup(s)) == NULL)
		ps->oom = 1;
	return d;
}

/* Replaces *dst with a copy of s. */
static void
set_str(struct parse_state *ps, char **dst, const char *s)
{
	free(*dst);
	*dst = xstrdup(ps, s);
}

/* Like set_str() for a directory, without trailing slashes. */
static void
set_dir(struct parse_state *ps, char **dst, const char *s)
{
	size_t len = strlen(s);

	while (len > 1 && s[len - 1] == '/')
		len--;
	free(*dst);
	if ((*dst = strndup(s, len)) == NULL)
		ps->oom = 1;
}

static const char *
sect_label(const struct parse_state *ps)
{
	return ps->kind == SECT_DAEMON ? "daemon" : ps->sect_name;
}

/*
 * Profile names become directory names and log fields, so they are kept
 * to a safe alphabet: ACO ids such as A9994, SBXBM0002 and GUIDE-0001.
 */
static int
valid_profile_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > PROFILE_NAME_MAX)
		return 0;
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("_.-", *s) == NULL)
			return 0;
	return 1;
}

static int
parse_int(const char *s, long min, long max, int *out)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int
digits(const char **p, int n, int *out)
{
	int v = 0;

	while (n-- > 0) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	*out = v;
	return 0;
}

/*
 * An RFC 3339 instant with a zone, as BCDA's time.RFC3339Nano parse wants:
 * YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm).
 */
static int
valid_instant(const char *s)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
	    31, 30, 31 };
	int y, mo, d, h, mi, sec, zh, zm, dim, nfrac = 0;

	if (digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) ||
	    *s++ != '-' || digits(&s, 2, &d) || *s++ != 'T' ||
	    digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi) ||
	    *s++ != ':' || digits(&s, 2, &sec))
		return 0;
	if (*s == '.') {
		for (s++; isdigit((unsigned char)*s); s++)
			nfrac++;
		if (nfrac < 1 || nfrac > 9)
			return 0;
	}
	if (*s == 'Z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		s++;
		if (digits(&s, 2, &zh) || *s++ != ':' || digits(&s, 2, &zm) ||
		    zh > 23 || zm > 59)
			return 0;
	} else
		return 0;
	if (*s != '\0' || mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 59)
		return 0;
	dim = mdays[mo - 1];
	if (mo == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
		dim = 29;
	return d >= 1 && d <= dim;
}

static int
is_loopback(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return 0;
}

/*
 * Checks base_url and returns a copy without the trailing slash, or NULL.
 * Accepted: https://host[:port][/], and http:// only to a loopback host
 * (test servers).  No user info, path, query or fragment.
 */
static char *
parse_base_url(struct parse_state *ps, const char *url, const char **why)
{
	char host[256];
	const char *p, *h, *hend;
	size_t hlen, len;
	int https, port;
	char *out;

	*why = "must be https://host[:port] with no path or query";
	if (strncmp(url, "https://", 8) == 0) {
		https = 1;
		p = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		https = 0;
		p = url + 7;
	} else
		return NULL;

	if (*p == '[') {
		h = p + 1;
		if ((hend = strchr(h, ']')) == NULL)
			return NULL;
		p = hend + 1;
	} else {
		h = p;
		while (isalnum((unsigned char)*p) || *p == '.' || *p == '-')
			p++;
		hend = p;
	}
	hlen = (size_t)(hend - h);
	if (hlen == 0 || hlen >= sizeof(host))
		return NULL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (h[-1] == '[' && inet_pton(AF_INET6, host, &(struct in6_addr){0})
	    != 1)
		return NULL;

	if (*p == ':') {
		const char *ps0 = ++p;

		while (isdigit((unsigned char)*p))
			p++;
		if (p == ps0 || p - ps0 > 5)
			return NULL;
		port = atoi(ps0);
		if (port < 1 || port > 65535)
			return NULL;
	}
	if (*p == '/')
		p++;
	if (*p != '\0')
		return NULL;

	if (!https && !is_loopback(host)) {
		*why = "uses http:// to a host that is not loopback; "
		    "use https:// (http:// is only for 127.0.0.1, ::1 or "
		    "localhost)";
		return NULL;
	}
	len = strlen(url);
	if (url[len - 1] == '/')
		len--;
	if ((out = strndup(url, len)) == NULL)
		ps->oom = 1;
	return out;
}

static int
type_index(const char *name)
{
	size_t i;

	for (i = 0; i < NRESOURCE_TYPES; i++)
		if (strcmp(resource_types[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* "Patient, Coverage, ExplanationOfBenefit" for one API version. */
static void
types_for_version(int version, char *buf, size_t len)
{
	size_t i, used = 0;
	int n;

	buf[0] = '\0';
	for (i = 0; i < NRESOURCE_TYPES && used < len; i++) {
		if ((resource_types[i].versions & V(version)) == 0)
			continue;
		n = snprintf(buf + used, len - used, "%s%s",
		    used > 0 ? ", " : "", resource_types[i].name);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/*
 * Splits a comma list of resource types into the profile.  Whitespace
 * around names is allowed.  The API version is checked later, once the
 * whole section is known.
 */
static int
parse_types(struct parse_state *ps, struct profile *p, const char *value)
{
	char all[128], *copy, *tok, *save = NULL;
	int i, j, rc = 0;

	for (i = 0; i < p->ntypes; i++)
		free(p->types[i]);
	p->ntypes = 0;
	if (value[0] == '\0')
		return 0;
	if ((copy = xstrdup(ps, value)) == NULL)
		return -ENOMEM;
	types_for_version(2, all, sizeof(all));
	/* strtok_r would skip empty entries, which we want to report. */
	for (tok = copy; tok != NULL; tok = save) {
		char *end;

		if ((save = strchr(tok, ',')) != NULL)
			*save++ = '\0';
		while (isspace((unsigned char)*tok))
			tok++;
		end = tok + strlen(tok);
		while (end > tok && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (*tok == '\0') {
			conf_error(ps, ps->line, "resource_types \"%s\" has an "
			    "empty entry; list types separated by commas",
			    value);
			rc = -EINVAL;
			continue;
		}
		if (type_index(tok) == -1) {
			conf_error(ps, ps->line, "resource type \"%s\" is not "
			    "one of %s", tok, all);
			rc = -EINVAL;
			continue;
		}
		for (j = 0; j < p->ntypes; j++)
			if (strcmp(p->types[j], tok) == 0)
				break;
		if (j < p->ntypes) {
			conf_error(ps, ps->line, "resource type \"%s\" is "
			    "listed twice", tok);
			rc = -EINVAL;
			continue;
		}
		if ((p->types[p->ntypes] = xstrdup(ps, tok)) == NULL) {
			rc = -ENOMEM;
			break;
		}
		p->ntypes++;
	}
	free(copy);
	return rc;
}

/* A systemd credential name: a plain file name. */
static int
valid_credential_name(const char *s)
{
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strlen(s) > 255)
		return 0;
	for (; *s != '\0'; s++)
		if (*s == '/' || !isgraph((unsigned char)*s))
			return 0;
	return 1;
}

/*
 * Handles one key of [daemon].  Returns 0, or -EINVAL after recording the
 * problem.
 */
static int
daemon_key(struct parse_state *ps, int key, const char *value)
{
	struct config *c = ps->conf;
	const char *name = daemon_keys[key];
	size_t i;

	switch (key) {
	case DK_STATE_DIR:
	case DK_RUNTIME_DIR:
	case DK_STORAGE_DIR:
		if (value[0] != '/') {
			conf_error(ps, ps->line, "%s \"%s\" is not an absolute "
			    "path", name, value);
			return -EINVAL;
		}
		set_dir(ps, key == DK_STATE_DIR ? &c->state_dir :
		    key == DK_RUNTIME_DIR ? &c->runtime_dir : &c->storage_dir,
		    value);
		return 0;
	case DK_LOG_LEVEL:
		if (log_level_parse(value, &c->log_level) != 0) {
			conf_error(ps, ps->line, "log_level \"%s\" is not one "
			    "of error, warning, info, debug", value);
			return -EINVAL;
		}
		return 0;
	}
	for (i = 0; i < sizeof(int_keys) / sizeof(int_keys[0]); i++) {
		const struct int_key *ik = &int_keys[i];

		if ((int)ik->key != key)
			continue;
		if (parse_int(value, ik->min, ik->max,
		    (int *)(void *)((char *)c + ik->off)) != 0) {
			conf_error(ps, ps->line, "%s \"%s\" is not a whole "
			    "number from %d to %d", name, value, ik->min,
			    ik->max);
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

/*
 * Handles one key of a [profile NAME] section.  Checks that depend on
 * other keys wait for profile_finish().
 */
static int
profile_key(struct parse_state *ps, int key, const char *value)
{
	struct profile *p = ps->prof;
	const char *why, *q;
	char *s;

	switch (key) {
	case PK_BASE_URL:
		if ((s = parse_base_url(ps, value, &why)) == NULL) {
			if (!ps->oom)
				conf_error(ps, ps->line, "base_url \"%s\" %s",
				    value, why);
			return -EINVAL;
		}
		free(p->base_url);
		p->base_url = s;
		return 0;
	case PK_API_VERSION:
		if (strcmp(value, "v1") == 0)
			p->api_version = 1;
		else if (strcmp(value, "v2") == 0)
			p->api_version = 2;
		else if (strcmp(value, "v3") == 0)
			p->api_version = 3;
		else {
			conf_error(ps, ps->line, "api_version \"%s\" is not "
			    "one of v1, v2, v3", value);
			return -EINVAL;
		}
		return 0;
	case PK_ENDPOINT:
		if (strcmp(value, "patient") == 0)
			p->endpoint = EP_PATIENT;
		else if (strcmp(value, "group-all") == 0)
			p->endpoint = EP_GROUP_ALL;
		else if (strcmp(value, "group-runout") == 0)
			p->endpoint = EP_GROUP_RUNOUT;
		else {
			conf_error(ps, ps->line, "endpoint \"%s\" is not one "
			    "of patient, group-all, group-runout", value);
			return -EINVAL;
		}
		return 0;
	case PK_RESOURCE_TYPES:
		return parse_types(ps, p, value);
	case PK_SINCE:
		free(p->since_value);
		p->since_value = NULL;
		if (strcmp(value, "auto") == 0)
			p->since = SINCE_AUTO;
		else if (strcmp(value, "none") == 0)
			p->since = SINCE_NONE;
		else if (valid_instant(value)) {
			p->since = SINCE_FIXED;
			p->since_value = xstrdup(ps, value);
		} else {
			conf_error(ps, ps->line, "since \"%s\" is not auto, "
			    "none or an instant with a zone such as "
			    "2026-07-01T12:00:00.000-05:00 or "
			    "2026-07-01T17:00:00Z", value);
			return -EINVAL;
		}
		return 0;
	case PK_TYPE_FILTER:
		if (strncmp(value, "ExplanationOfBenefit?", 21) != 0 ||
		    value[21] == '\0') {
			conf_error(ps, ps->line, "type_filter \"%s\" must "
			    "start with \"ExplanationOfBenefit?\" followed by "
			    "search parameters", value);
			return -EINVAL;
		}
		set_str(ps, &p->type_filter, value);
		return 0;
	case PK_CLIENT_ID:
		for (q = value; *q != '\0'; q++)
			if (*q == ':' || !isgraph((unsigned char)*q))
				break;
		if (*q != '\0') {
			conf_error(ps, ps->line, "client_id \"%s\" may not "
			    "contain ':', spaces or control characters",
			    value);
			return -EINVAL;
		}
		set_str(ps, &p->client_id, value);
		return 0;
	case PK_SECRET_FILE:
	case PK_STORAGE_DIR:
		if (value[0] != '/') {
			conf_error(ps, ps->line, "%s \"%s\" is not an absolute "
			    "path", profile_keys[key], value);
			return -EINVAL;
		}
		if (key == PK_SECRET_FILE)
			set_str(ps, &p->secret_file, value);
		else
			set_dir(ps, &p->storage_dir, value);
		return 0;
	case PK_SECRET_CREDENTIAL:
		if (!valid_credential_name(value)) {
			conf_error(ps, ps->line, "client_secret_credential "
			    "\"%s\" is not a credential name (a file name "
			    "without '/' or spaces)", value);
			return -EINVAL;
		}
		set_str(ps, &p->secret_credential, value);
		return 0;
	}
	return -EINVAL;
}

static void
daemon_finish(struct parse_state *ps)
{
	struct config *c = ps->conf;
	int line;

	if (c->poll_max < c->poll_min && !ps->keybad[DK_POLL_MAX] &&
	    !ps->keybad[DK_POLL_MIN]) {
		line = ps->keyline[DK_POLL_MAX] ? ps->keyline[DK_POLL_MAX] :
		    ps->keyline[DK_POLL_MIN];
		conf_error(ps, line, "poll_max %d is less than poll_min %d; "
		    "poll_max must be from poll_min to 86400", c->poll_max,
		    c->poll_min);
	}
	if (c->retry_max < c->retry_min && !ps->keybad[DK_RETRY_MAX] &&
	    !ps->keybad[DK_RETRY_MIN]) {
		line = ps->keyline[DK_RETRY_MAX] ? ps->keyline[DK_RETRY_MAX] :
		    ps->keyline[DK_RETRY_MIN];
		conf_error(ps, line, "retry_max %d is less than retry_min %d; "
		    "retry_max must be from retry_min to 86400", c->retry_max,
		    c->retry_min);
	}
}

/*
 * Runs when a profile section is complete: required keys, exactly one
 * secret source, and the checks that depend on api_version, reported at
 * the line of the offending key.
 */
static void
profile_finish(struct parse_state *ps)
{
	struct profile *p = ps->prof;
	const int *kl = ps->keyline;
	char allowed[128];
	int i, v = p->api_version;

	if (!kl[PK_CLIENT_ID])
		conf_error(ps, ps->sect_line, "[%s] has no client_id; it is "
		    "required", ps->sect_name);
	if (!kl[PK_SECRET_FILE] && !kl[PK_SECRET_CREDENTIAL])
		conf_error(ps, ps->sect_line, "[%s] needs client_secret_file "
		    "or client_secret_credential", ps->sect_name);
	if (kl[PK_SECRET_FILE] && kl[PK_SECRET_CREDENTIAL])
		conf_error(ps, kl[PK_SECRET_FILE] > kl[PK_SECRET_CREDENTIAL] ?
		    kl[PK_SECRET_FILE] : kl[PK_SECRET_CREDENTIAL],
		    "[%s] sets both client_secret_file (line %d) and "
		    "client_secret_credential (line %d); use exactly one",
		    ps->sect_name, kl[PK_SECRET_FILE],
		    kl[PK_SECRET_CREDENTIAL]);
	if (ps->keybad[PK_API_VERSION])
		return;

	types_for_version(v, allowed, sizeof(allowed));
	for (i = 0; i < p->ntypes; i++) {
		if (resource_types[type_index(p->types[i])].versions & V(v))
			continue;
		conf_error(ps, kl[PK_RESOURCE_TYPES], "resource type \"%s\" "
		    "is not available in api_version v%d; allowed: %s",
		    p->types[i], v, allowed);
	}
	if (kl[PK_TYPE_FILTER] && v != 3)
		conf_error(ps, kl[PK_TYPE_FILTER], "type_filter is only "
		    "allowed with api_version v3 (this profile uses v%d)", v);
}

/* Called when a section ends: at the next header and at end of file. */
static void
section_finish(struct parse_state *ps)
{
	if (ps->kind == SECT_DAEMON)
		daemon_finish(ps);
	else if (ps->kind == SECT_PROFILE)
		profile_finish(ps);
	ps->kind = SECT_NONE;
	ps->prof = NULL;
	free(ps->sect_name);
	ps->sect_name = NULL;
}

static struct profile *
profile_new(struct parse_state *ps, const char *name, int line)
{
	struct profile *p;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		ps->oom = 1;
		return NULL;
	}
	p->name = xstrdup(ps, name);
	p->base_url = xstrdup(ps, DEFAULT_BASE_URL);
	p->api_version = 2;
	p->endpoint = EP_GROUP_ALL;
	p->since = SINCE_AUTO;
	p->line = line;
	return p;
}

/*
 * Starts a section at a header line.  name is the text between [ and ],
 * or NULL when the header has no closing bracket.
 */
static void
section_begin(struct parse_state *ps, const char *name, int line)
{
	struct config *c = ps->conf;
	const char *pname;
	int i;

	section_finish(ps);
	memset(ps->keyline, 0, sizeof(ps->keyline));
	memset(ps->keybad, 0, sizeof(ps->keybad));
	ps->last_key = -1;
	ps->sect_line = line;
	ps->kind = SECT_IGNORE;
	if (name == NULL) {
		conf_error(ps, line, "syntax error: section header has no "
		    "closing ']'");
		return;
	}
	if ((ps->sect_name = xstrdup(ps, name)) == NULL)
		return;

	if (strcmp(name, "daemon") == 0) {
		if (ps->daemon_line) {
			conf_error(ps, line, "[daemon] appears twice (first "
			    "at line %d); merge them", ps->daemon_line);
			return;
		}
		ps->daemon_line = line;
		ps->kind = SECT_DAEMON;
		return;
	}
	if (strncmp(name, "profile", 7) != 0 ||
	    (name[7] != '\0' && name[7] != ' ' && name[7] != '\t')) {
		conf_error(ps, line, "unknown section [%s]; sections are "
		    "[daemon] and [profile NAME]", name);
		return;
	}
	for (pname = name + 7; *pname == ' ' || *pname == '\t'; pname++)
		;
	if (!valid_profile_name(pname)) {
		conf_error(ps, line, "profile name \"%s\" must be 1 to %d "
		    "characters of A-Z, a-z, 0-9, '_', '.' and '-'", pname,
		    PROFILE_NAME_MAX);
		return;
	}
	for (i = 0; i < c->nprofiles; i++) {
		if (strcmp(c->profiles[i]->name, pname) == 0) {
			conf_error(ps, line, "profile \"%s\" is defined twice "
			    "(first at line %d)", pname, c->profiles[i]->line);
			return;
		}
	}
	if (c->nprofiles == CONFIG_MAX_PROFILES) {
		conf_error(ps, line, "too many profiles; at most %d are "
		    "allowed", CONFIG_MAX_PROFILES);
		return;
	}
	if ((ps->prof = profile_new(ps, pname, line)) == NULL)
		return;
	c->profiles[c->nprofiles++] = ps->prof;
	ps->kind = SECT_PROFILE;
}

/*
 * Looks at a line before libinih does, to follow section headers the way
 * libinih will see them: a line whose first non-blank is '[' is a header
 * unless it is indented right after a key (then libinih continues that
 * key's value with it).  It also notes lines that must reach the handler,
 * so that every syntax error is reported, not only libinih's first one.
 */
static void
line_scan(struct parse_state *ps, char *buf)
{
	char *s = buf, *e;
	int indented;

	if (ps->line == 1 && (unsigned char)s[0] == 0xEF &&
	    (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
		s += 3;
	indented = (*s == ' ' || *s == '\t');
	while (isspace((unsigned char)*s))
		s++;
	ps->cont = 0;
	if (*s == '\0' || *s == ';' || *s == '#')
		return;
	if (indented && ps->have_prev) {
		ps->cont = 1;
		return;
	}
	if (*s != '[') {
		ps->pending = ps->line;
		return;
	}
	/* libinih ends the name at ']' or at an inline " ;" comment. */
	for (e = s + 1; *e != '\0' && *e != ']'; e++)
		if (*e == ';' && isspace((unsigned char)e[-1]))
			break;
	ps->have_prev = 0;
	if (*e != ']') {
		section_begin(ps, NULL, ps->line);
		return;
	}
	*e = '\0';
	section_begin(ps, s + 1, ps->line);
	*e = ']';
}

/*
 * A line that should have reached the handler did not: libinih found no
 * '=' or ':' in it.  Noticed when the next line is read, or at the end.
 */
static void
pending_flush(struct parse_state *ps)
{
	if (ps->pending) {
		conf_error(ps, ps->pending, "syntax error: expected "
		    "\"key = value\", a [section] header or a comment");
		ps->pending = 0;
	}
}

/*
 * The libinih reader: fgets that counts lines.  A line longer than
 * libinih's buffer would arrive in pieces, and libinih would silently
 * cut the value; so the rest of it is read and dropped here, the line is
 * reported (unless it is a comment), and libinih is handed an empty line.
 * Thus libinih's own line count always equals ours.
 */
static char *
conf_reader(char *buf, int size, void *arg)
{
	struct parse_state *ps = arg;
	size_t len;
	int c;

	pending_flush(ps);
	if (size < 2 || fgets(buf, size, ps->fp) == NULL)
		return NULL;
	ps->line++;
	len = strlen(buf);
	if (len == (size_t)size - 1 && buf[len - 1] != '\n') {
		const char *s = buf;

		while ((c = getc(ps->fp)) != EOF && c != '\n')
			;
		while (isspace((unsigned char)*s))
			s++;
		if (*s != ';' && *s != '#')
			conf_error(ps, ps->line, "line is longer than %d "
			    "characters", size - 2);
		buf[0] = '\n';
		buf[1] = '\0';
		ps->cont = 0;
		return buf;
	}
	line_scan(ps, buf);
	return buf;
}

static int
key_lookup(const char *const *names, int n, const char *name)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/*
 * The libinih handler, once per key (and per continuation line).  It
 * always returns 1: problems are recorded here with their line, so
 * libinih's return value only carries its own syntax errors.
 */
static int
conf_handler(void *arg, const char *section, const char *name,
    const char *value)
{
	struct parse_state *ps = arg;
	int key, n;

	(void)section;	/* libinih truncates it; ps->sect_name is whole */
	ps->pending = 0;
	ps->have_prev = 1;
	if (ps->cont) {
		if (ps->kind == SECT_IGNORE)
			return 1;
		if (ps->kind == SECT_PROFILE &&
		    ps->last_key == PK_TYPE_FILTER) {
			char *s;

			if (ps->keybad[PK_TYPE_FILTER] ||
			    ps->prof->type_filter == NULL)
				return 1;
			if (asprintf(&s, "%s%s", ps->prof->type_filter,
			    value) == -1) {
				ps->oom = 1;
				return 1;
			}
			free(ps->prof->type_filter);
			ps->prof->type_filter = s;
			return 1;
		}
		conf_error(ps, ps->line, "indented line continues the value "
		    "of \"%s\"; only type_filter may go on over several "
		    "lines, so remove the indentation", name);
		return 1;
	}

	switch (ps->kind) {
	case SECT_IGNORE:
		return 1;
	case SECT_NONE:
		conf_error(ps, ps->line, "key \"%s\" is outside any section; "
		    "put it under [daemon] or [profile NAME]", name);
		return 1;
	case SECT_DAEMON:
		key = key_lookup(daemon_keys, DK__COUNT, name);
		break;
	case SECT_PROFILE:
		key = key_lookup(profile_keys, PK__COUNT, name);
		break;
	default:
		return 1;
	}
	ps->last_key = key;
	if (key == -1) {
		conf_error(ps, ps->line, "unknown key \"%s\" in [%s]", name,
		    sect_label(ps));
		return 1;
	}
	if (ps->keyline[key]) {
		conf_error(ps, ps->line, "duplicate key \"%s\" in [%s] (first "
		    "set at line %d)", name, sect_label(ps), ps->keyline[key]);
		ps->last_key = -1;
		return 1;
	}
	ps->keyline[key] = ps->line;
	/* An empty resource_types means the server's default set. */
	if (value[0] == '\0' &&
	    !(ps->kind == SECT_PROFILE && key == PK_RESOURCE_TYPES)) {
		conf_error(ps, ps->line, "%s in [%s] has no value", name,
		    sect_label(ps));
		ps->keybad[key] = 1;
		return 1;
	}
	if (ps->kind == SECT_DAEMON)
		n = daemon_key(ps, key, value);
	else
		n = profile_key(ps, key, value);
	if (n != 0)
		ps->keybad[key] = 1;
	return 1;
}

void
config_free(struct config *c)
{
	struct profile *p;
	int i, j;

	if (c == NULL)
		return;
	for (i = 0; i < c->nprofiles; i++) {
		p = c->profiles[i];
		free(p->name);
		free(p->base_url);
		for (j = 0; j < p->ntypes; j++)
			free(p->types[j]);
		free(p->since_value);
		free(p->type_filter);
		free(p->client_id);
		free(p->secret_file);
		free(p->secret_credential);
		free(p->storage_dir);
		free(p);
	}
	free(c->path);
	free(c->state_dir);
	free(c->runtime_dir);
	free(c->storage_dir);
	free(c);
}

static struct config *
config_new(struct parse_state *ps, const char *path)
{
	struct config *c;
	size_t i;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	ps->conf = c;
	c->path = xstrdup(ps, path);
	c->state_dir = xstrdup(ps, DEFAULT_STATE_DIR);
	c->runtime_dir = xstrdup(ps, DEFAULT_RUNTIME_DIR);
	c->log_level = LOG_LVL_INFO;
	for (i = 0; i < sizeof(int_keys) / sizeof(int_keys[0]); i++)
		*(int *)(void *)((char *)c + int_keys[i].off) = int_keys[i].def;
	return c;
}

/*
 * Fills in what defaults to other values: [daemon] storage_dir to
 * <state_dir>/exports, and each profile's storage_dir to [daemon]'s.
 */
static void
config_resolve(struct parse_state *ps)
{
	struct config *c = ps->conf;
	int i;

	if (c->storage_dir == NULL && c->state_dir != NULL &&
	    asprintf(&c->storage_dir, "%s/exports", c->state_dir) == -1) {
		c->storage_dir = NULL;
		ps->oom = 1;
	}
	for (i = 0; i < c->nprofiles; i++)
		if (c->profiles[i]->storage_dir == NULL && c->storage_dir)
			c->profiles[i]->storage_dir =
			    xstrdup(ps, c->storage_dir);
}

struct config *
config_load(const char *path, char *errs, size_t errlen)
{
	struct parse_state ps;
	struct config *c = NULL;
	size_t i;
	int rc;

	memset(&ps, 0, sizeof(ps));
	ps.path = path;
	ps.last_key = -1;
	if (errs != NULL && errlen > 0)
		errs[0] = '\0';
	if ((c = config_new(&ps, path)) == NULL) {
		ps.oom = 1;
		goto fail;
	}
	if ((ps.fp = fopen(path, "re")) == NULL) {
		conf_error(&ps, 0, "cannot open: %s", strerror(errno));
		goto fail;
	}
	rc = ini_parse_stream(conf_reader, &ps, conf_handler, &ps);
	pending_flush(&ps);
	if (ferror(ps.fp))
		conf_error(&ps, 0, "read error after line %d", ps.line);
	section_finish(&ps);
	if (rc > 0 && !error_has_line(&ps, rc))
		conf_error(&ps, rc, "syntax error");
	else if (rc < 0)
		ps.oom = 1;
	config_resolve(&ps);
	if (ps.nerrs > 0 || ps.oom)
		goto fail;
	fclose(ps.fp);
	free(ps.errs);
	return c;

fail:
	errors_format(&ps, errs, errlen);
	if (ps.fp != NULL)
		fclose(ps.fp);
	section_finish(&ps);
	for (i = 0; i < ps.nerrs; i++)
		free(ps.errs[i].msg);
	free(ps.errs);
	config_free(c);
	return NULL;
}

struct profile *
config_profile(const struct config *c, const char *name)
{
	int i;

	for (i = 0; i < c->nprofiles; i++)
		if (strcmp(c->profiles[i]->name, name) == 0)
			return c->profiles[i];
	return NULL;
}

const char *
config_endpoint_name(enum bcda_endpoint ep)
{
	if ((unsigned)ep >= sizeof(endpoint_names) / sizeof(endpoint_names[0]))
		return "unknown";
	return endpoint_names[ep];
}

/*
 * Reads the secret for a profile at start-up and whenever a token is
 * needed.  The file must be a regular file owned by our effective uid and
 * closed to group and others.  The secret itself never reaches err.
 */
char *
config_read_secret(const struct profile *p, char *err, size_t errlen)
{
	char buf[SECRET_MAX + 1], path[4096], what[4200];
	const char *dir;
	struct stat st;
	char *secret = NULL;
	size_t len = 0;
	ssize_t n;
	int fd = -1;

	if (p->secret_file != NULL) {
		snprintf(path, sizeof(path), "%s", p->secret_file);
		snprintf(what, sizeof(what), "client_secret_file %s", path);
	} else if (p->secret_credential != NULL) {
		dir = getenv("CREDENTIALS_DIRECTORY");
		if (dir == NULL || dir[0] == '\0') {
			snprintf(err, errlen, "profile %s: "
			    "client_secret_credential %s needs "
			    "$CREDENTIALS_DIRECTORY, which is not set; run "
			    "bcdad under systemd with LoadCredential= or "
			    "LoadCredentialEncrypted=, or use "
			    "client_secret_file", p->name,
			    p->secret_credential);
			return NULL;
		}
		snprintf(path, sizeof(path), "%s/%s", dir,
		    p->secret_credential);
		snprintf(what, sizeof(what), "client_secret_credential %s (%s)",
		    p->secret_credential, path);
	} else {
		snprintf(err, errlen, "profile %s has no client secret source",
		    p->name);
		return NULL;
	}

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		snprintf(err, errlen, "%s: cannot open: %s%s", what,
		    strerror(errno), errno == ELOOP ?
		    " (symbolic links are refused)" : "");
		goto fail;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", what, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", what);
		goto fail;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "%s is %s by group or others "
		    "(mode %04o); chmod 600 it", what,
		    (st.st_mode & 044) ? "readable" : "accessible",
		    (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s is owned by uid %u, not by bcdad's "
		    "uid %u; chown it", what, (unsigned)st.st_uid,
		    (unsigned)geteuid());
		goto fail;
	}
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "%s: read: %s", what,
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > SECRET_MAX) {
		snprintf(err, errlen, "%s is larger than %d bytes; it must "
		    "hold only the secret", what, SECRET_MAX);
		goto fail;
	}
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		len--;
	if (len == 0) {
		snprintf(err, errlen, "%s is empty", what);
		goto fail;
	}
	if (memchr(buf, '\0', len) != NULL) {
		snprintf(err, errlen, "%s contains a NUL byte", what);
		goto fail;
	}
	if ((secret = strndup(buf, len)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", what);
		goto fail;
	}

fail:
	explicit_bzero(buf, sizeof(buf));
	if (fd != -1)
		close(fd);
	return secret;
}
