/*
 * Configuration: checks of single values (see config.h).  Nothing here
 * allocates or knows about sections and lines; config.c calls these and
 * reports what they say with the key, the value and the line.
 *
 * The AWS checks follow the constraints of the services' API models (see
 * the reference notes on AWS): an identifier the service would refuse
 * is refused at start-up, when `bcdad -n` can still say so.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "util/iso8601.h"

#define PREFIX_MAX		512	/* leaves room for the key names */

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

/*
 * Whether s matches the POSIX extended regular expression re, which is
 * anchored at both ends.  Every caller first checks that s is printable
 * ASCII, so the locale cannot change what the bracket ranges match.
 */
static int
matches(const char *re, const char *s)
{
	regex_t rx;
	int rc;

	if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) != 0)
		return 0;
	rc = regexec(&rx, s, 0, NULL, 0);
	regfree(&rx);
	return rc == 0;
}

/* Printable ASCII without spaces, from min to max bytes long. */
static int
graph_ascii(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s > 0x7e || !isgraph((unsigned char)*s))
			return 0;
	return 1;
}

size_t
config_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned long cp;
	size_t i = 0, n, k;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if (p[i] >= 0xc2 && p[i] <= 0xdf)
			n = 1;
		else if ((p[i] & 0xf0) == 0xe0)
			n = 2;
		else if (p[i] >= 0xf0 && p[i] <= 0xf4)
			n = 3;
		else
			break;
		if (len - i <= n)
			break;
		cp = p[i] & (0x3f >> n);
		for (k = 1; k <= n && (p[i + k] & 0xc0) == 0x80; k++)
			cp = cp << 6 | (p[i + k] & 0x3f);
		if (k <= n || (n == 2 && (cp < 0x800 ||
		    (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			break;
		i += n + 1;
	}
	return i;
}

/*
 * Profile names become directory names and log fields, so they are kept
 * to a safe alphabet: ACO ids such as A9994, SBXBM0002 and GUIDE-0001.
 */
int
config_valid_profile_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_PROFILE_NAME_MAX)
		return 0;
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("_.-", *s) == NULL)
			return 0;
	return 1;
}

/* A systemd credential name: a plain file name. */
int
config_valid_credential_name(const char *s)
{
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strlen(s) > 255)
		return 0;
	for (; *s != '\0'; s++)
		if (*s == '/' || !isgraph((unsigned char)*s))
			return 0;
	return 1;
}

int
config_parse_int(const char *s, long min, long max, int *out)
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

/*
 * A byte count: digits, optionally followed by K, M or G (KiB, MiB, GiB;
 * lower case is accepted too), from min to max.
 */
int
config_parse_size(const char *s, long long min, long long max,
    long long *out)
{
	long long v, mult = 1;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'K': case 'k':
		mult = 1LL << 10;
		end++;
		break;
	case 'M': case 'm':
		mult = 1LL << 20;
		end++;
		break;
	case 'G': case 'g':
		mult = 1LL << 30;
		end++;
		break;
	default:
		return -EINVAL;
	}
	if (*end != '\0' || v > LLONG_MAX / mult)
		return -EINVAL;
	v *= mult;
	if (v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* yes, no, true, false, 1 or 0, in any case. */
int
config_parse_bool(const char *s, int *out)
{
	if (strcasecmp(s, "yes") == 0 || strcasecmp(s, "true") == 0 ||
	    strcmp(s, "1") == 0)
		*out = 1;
	else if (strcasecmp(s, "no") == 0 || strcasecmp(s, "false") == 0 ||
	    strcmp(s, "0") == 0)
		*out = 0;
	else
		return -EINVAL;
	return 0;
}

/* A calendar date YYYY-MM-DD, as midnight UTC in unix seconds. */
int
config_parse_date(const char *s, int64_t *out)
{
	char buf[32];
	time_t t;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%sT00:00:00Z", s);
	if (iso8601_parse(buf, 0, &t) != 0)
		return -EINVAL;
	*out = (int64_t)t;
	return 0;
}

/*
 * An RFC 3339 instant with a zone, as BCDA's time.RFC3339Nano parse wants:
 * YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm).
 */
int
config_valid_instant(const char *s)
{
	return iso8601_parse(s, 0, NULL) == 0;
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
 * A server URL: https://host[:port] with an optional trailing slash (the
 * caller drops it), and http:// only to a loopback host (test servers).
 * No user info, path, query or fragment.
 */
const char *
config_check_url(const char *url)
{
	static const char *const bad = "must be https://host[:port] with "
	    "no path or query";
	char host[256];
	const char *p, *h, *hend;
	size_t hlen;
	int https, port;

	if (strncmp(url, "https://", 8) == 0) {
		https = 1;
		p = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		https = 0;
		p = url + 7;
	} else
		return bad;

	if (*p == '[') {
		h = p + 1;
		if ((hend = strchr(h, ']')) == NULL)
			return bad;
		p = hend + 1;
	} else {
		h = p;
		while (isalnum((unsigned char)*p) || *p == '.' || *p == '-')
			p++;
		hend = p;
	}
	hlen = (size_t)(hend - h);
	if (hlen == 0 || hlen >= sizeof(host))
		return bad;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (h[-1] == '[' && inet_pton(AF_INET6, host, &(struct in6_addr){0})
	    != 1)
		return bad;

	if (*p == ':') {
		const char *p0 = ++p;

		while (isdigit((unsigned char)*p))
			p++;
		if (p == p0 || p - p0 > 5)
			return bad;
		port = atoi(p0);
		if (port < 1 || port > 65535)
			return bad;
	}
	if (*p == '/')
		p++;
	if (*p != '\0')
		return bad;
	if (!https && !is_loopback(host))
		return "uses http:// to a host that is not loopback; use "
		    "https:// (http:// is only for 127.0.0.1, ::1 or "
		    "localhost)";
	return NULL;
}

/* us-east-1, us-gov-west-1, cn-north-1, us-iso-east-1, us-isob-east-1. */
const char *
config_check_region(const char *s)
{
	if (graph_ascii(s, 1, 64) &&
	    matches("^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$", s))
		return NULL;
	return "is not an AWS region such as us-east-1, us-gov-west-1 or "
	    "cn-north-1";
}

/*
 * The S3 bucket naming rules that apply everywhere (general purpose
 * buckets): 3 to 63 characters of a-z, 0-9, '.' and '-', beginning and
 * ending with a letter or digit, no "..", and not an IPv4 address.
 */
const char *
config_check_bucket(const char *s)
{
	size_t i, n = strlen(s);
	struct in_addr a4;

	for (i = 0; i < n; i++)
		if (!islower((unsigned char)s[i]) &&
		    !isdigit((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '-')
			break;
	if (n < 3 || n > 63 || i < n || !isalnum((unsigned char)s[0]) ||
	    !isalnum((unsigned char)s[n - 1]) || strstr(s, "..") != NULL ||
	    inet_pton(AF_INET, s, &a4) == 1)
		return "is not an S3 bucket name: 3 to 63 characters of a-z, "
		    "0-9, '.' and '-', beginning and ending with a letter or "
		    "digit, without \"..\" and not an IP address";
	return NULL;
}

/*
 * A key prefix inside the bucket.  Keys are not normalised by S3, but a
 * leading '/' or a ".." segment is almost always a mistake and confuses
 * tools that treat keys as paths.
 */
const char *
config_check_prefix(const char *s)
{
	const char *seg;
	size_t n;

	if (s[0] == '/')
		return "must not begin with '/'; write the prefix as "
		    "dir/subdir";
	if (strlen(s) > PREFIX_MAX)
		return "is longer than 512 characters";
	for (seg = s; *seg != '\0'; seg += n + (seg[n] == '/')) {
		n = strcspn(seg, "/");
		if (n == 2 && seg[0] == '.' && seg[1] == '.')
			return "must not contain a \"..\" segment";
	}
	for (; *s != '\0'; s++)
		if (iscntrl((unsigned char)*s))
			return "must not contain control characters";
	return NULL;
}

/*
 * HealthLake's KmsKeyId pattern: a key id, key/ID, alias/NAME, or the
 * ARN of a key or an alias, 1 to 400 characters.
 */
const char *
config_check_kms_key_id(const char *s)
{
	if (graph_ascii(s, 1, 400) &&
	    matches("^(arn:aws(-us-gov|-iso|-iso-b|-cn)?:kms:)?"
	    "([a-z]{2}-[a-z]+(-[a-z]+)?-[0-9]:)?([0-9]{12}:)?"
	    "((key/)?[a-zA-Z0-9_-]+|alias/[a-zA-Z0-9:/_-]+)$", s))
		return NULL;
	return "is not a KMS key id, key ARN, alias/NAME or alias ARN";
}

const char *
config_check_datastore_id(const char *s)
{
	size_t n = strlen(s);

	if (n >= 1 && n <= 32 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789") == n)
		return NULL;
	return "is not a HealthLake datastore id (1 to 32 letters and "
	    "digits)";
}

/* DataAccessRoleArn: arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+, 20..2048. */
const char *
config_check_role_arn(const char *s)
{
	if (graph_ascii(s, 20, 2048) &&
	    matches("^arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+$", s))
		return NULL;
	return "is not an IAM role ARN such as "
	    "arn:aws:iam::123456789012:role/NAME";
}

/* HealthLake's S3Uri: s3://[a-z0-9][.a-z0-9-]{1,61}[a-z0-9](/.*)?. */
const char *
config_check_s3_uri(const char *s)
{
	if (graph_ascii(s, 1, 1024) &&
	    matches("^s3://[a-z0-9][.a-z0-9-]{1,61}[a-z0-9](/.*)?$", s))
		return NULL;
	return "is not an S3 URI such as s3://bucket/prefix/";
}

/*
 * arn:aws[-partition]:sns:REGION:ACCOUNT:NAME, NAME being 1 to 256 of
 * A-Z, a-z, 0-9, '_' and '-', ".fifo" included for a FIFO topic.
 */
const char *
config_check_sns_topic_arn(const char *s)
{
	const char *name = strrchr(s, ':');

	if (graph_ascii(s, 1, 1024) && name != NULL &&
	    strlen(name + 1) <= 256 &&
	    matches("^arn:aws[-a-z]*:sns:[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-"
	    "[0-9]+:[0-9]{12}:[A-Za-z0-9_-]+(\\.fifo)?$", s))
		return NULL;
	return "is not an SNS topic ARN such as "
	    "arn:aws:sns:us-east-1:123456789012:NAME (NAME: 1 to 256 of "
	    "A-Z, a-z, 0-9, '_' and '-', optionally ending in .fifo)";
}

/* Secrets Manager's SecretId: a name or an ARN, 1 to 2048 characters. */
const char *
config_check_secret_id(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 2048)
		return "is not a Secrets Manager secret name or ARN (1 to "
		    "2048 characters)";
	for (; *s != '\0'; s++)
		if (iscntrl((unsigned char)*s))
			return "must not contain control characters";
	return NULL;
}

int
config_type_index(const char *name)
{
	size_t i;

	for (i = 0; i < NRESOURCE_TYPES; i++)
		if (strcmp(resource_types[i].name, name) == 0)
			return (int)i;
	return -1;
}

int
config_type_in_version(const char *name, int version)
{
	int i = config_type_index(name);

	return i != -1 && (resource_types[i].versions & V(version)) != 0;
}

/*
 * "Patient, Coverage, ExplanationOfBenefit" for one API version; version
 * 0 lists every type.
 */
void
config_types_for_version(int version, char *buf, size_t len)
{
	size_t i, used = 0;
	int n;

	buf[0] = '\0';
	for (i = 0; i < NRESOURCE_TYPES && used < len; i++) {
		if (version != 0 && (resource_types[i].versions &
		    V(version)) == 0)
			continue;
		n = snprintf(buf + used, len - used, "%s%s",
		    used > 0 ? ", " : "", resource_types[i].name);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}
