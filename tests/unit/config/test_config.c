/*
 * Unit tests for lib/config/config.c: parsing, defaults, every kind of error with
 * its "file:line:" prefix, and reading client secrets.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "t.h"

static char t_dir[64];
static char t_path[128];
static char errs[8192];

/* A fresh directory under /tmp for this run's files. */
static const char *
tmpdir(void)
{
	if (t_dir[0] == '\0') {
		snprintf(t_dir, sizeof(t_dir), "/tmp/test_config.XXXXXX");
		if (mkdtemp(t_dir) == NULL) {
			perror("mkdtemp");
			exit(2);
		}
	}
	return t_dir;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f;

	unlink(path);
	if ((f = fopen(path, "w")) == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

/* Writes text as bcdad.conf and loads it; errs holds the messages. */
static struct config *
load(const char *text)
{
	snprintf(t_path, sizeof(t_path), "%s/bcdad.conf", tmpdir());
	write_file(t_path, text, 0644);
	memset(errs, 'x', sizeof(errs));
	return config_load(t_path, errs, sizeof(errs));
}

static int
count_lines(const char *s)
{
	int n = 0;

	for (; *s != '\0'; s++)
		if (*s == '\n')
			n++;
	return n;
}

/* Checks that errs has the line "<conf>:<line>: <msg>". */
static int
has_error(int line, const char *msg)
{
	char want[1024];

	snprintf(want, sizeof(want), "%s:%d: %s\n", t_path, line, msg);
	return strstr(errs, want) != NULL;
}

#define T_ERR(line, msg) do { \
	if (!has_error(line, msg)) \
		T_FAIL("missing error %d: %s\n--- got:\n%s---", line, msg, \
		    errs); } while (0)

/* A config expected to fail with exactly n errors. */
#define T_FAILS(text, n) do { \
	struct config *c_ = load(text); \
	T_ASSERT(c_ == NULL); \
	config_free(c_); \
	if (count_lines(errs) != (n)) \
		T_FAIL("expected %d error lines, got:\n%s", (n), errs); \
	} while (0)

#define GOOD_PROFILE \
	"client_id = id\n" \
	"client_secret_file = /etc/bcdad/s\n"

T_TEST(test_full_valid)
{
	struct config *c;
	struct profile *p;

	c = load(
	    "; bcdad test configuration\n"
	    "[daemon]\n"
	    "state_dir = /srv/bcdad\n"
	    "runtime_dir = /run/x\n"
	    "storage_dir = /data/out\n"
	    "log_level = debug\n"
	    "max_downloads = 256\n"
	    "max_downloads_per_job = 64\n"
	    "connect_timeout = 600\n"
	    "low_speed_time = 1\n"
	    "poll_min = 20\n"
	    "poll_max = 20\n"
	    "retry_min = 7\n"
	    "retry_max = 70\n"
	    "\n"
	    "[profile A9994]\n"
	    "base_url = https://api.bcda.cms.gov/\n"
	    "api_version = v3\n"
	    "endpoint = group-runout\n"
	    "resource_types = Patient ,ExplanationOfBenefit,  Coverage\n"
	    "since = 2026-07-01T12:00:00.000-05:00\n"
	    "type_filter = ExplanationOfBenefit?_tag=https://bluebutton.cms"
	    ".gov/fhir/CodeSystem/System-Type|SharedSystem\n"
	    "client_id = 2462c96b-6427-4efb-aed7-118e20c2e997\n"
	    "client_secret_credential = A9994.secret\n"
	    "storage_dir = /data/A9994   ; inline comment\n"
	    "[profile SBXBM0002]\n"
	    "client_id: abc\n"
	    "client_secret_file = /etc/bcdad/SBXBM0002.secret\n"
	    "since = none\n"
	    "endpoint = patient\n"
	    "api_version = v1\n");
	T_ASSERT(c != NULL);
	if (c == NULL) {
		fprintf(stderr, "%s", errs);
		return;
	}
	T_EQ_STR(errs, "");
	T_EQ_STR(c->path, t_path);
	T_EQ_STR(c->state_dir, "/srv/bcdad");
	T_EQ_STR(c->runtime_dir, "/run/x");
	T_EQ_STR(c->storage_dir, "/data/out");
	T_EQ_INT(c->log_level, LOG_LVL_DEBUG);
	T_EQ_INT(c->max_downloads, 256);
	T_EQ_INT(c->max_downloads_per_job, 64);
	T_EQ_INT(c->connect_timeout, 600);
	T_EQ_INT(c->low_speed_time, 1);
	T_EQ_INT(c->poll_min, 20);
	T_EQ_INT(c->poll_max, 20);
	T_EQ_INT(c->retry_min, 7);
	T_EQ_INT(c->retry_max, 70);
	T_EQ_INT(c->nprofiles, 2);

	p = config_profile(c, "A9994");
	T_ASSERT(p != NULL);
	if (p != NULL) {
		T_EQ_STR(p->name, "A9994");
		T_EQ_STR(p->base_url, "https://api.bcda.cms.gov");
		T_EQ_INT(p->api_version, 3);
		T_EQ_INT(p->endpoint, EP_GROUP_RUNOUT);
		T_EQ_INT(p->ntypes, 3);
		T_EQ_STR(p->types[0], "Patient");
		T_EQ_STR(p->types[1], "ExplanationOfBenefit");
		T_EQ_STR(p->types[2], "Coverage");
		T_EQ_INT(p->since, SINCE_FIXED);
		T_EQ_STR(p->since_value, "2026-07-01T12:00:00.000-05:00");
		T_EQ_STR(p->type_filter, "ExplanationOfBenefit?_tag=https://"
		    "bluebutton.cms.gov/fhir/CodeSystem/System-Type|"
		    "SharedSystem");
		T_EQ_STR(p->client_id, "2462c96b-6427-4efb-aed7-118e20c2e997");
		T_ASSERT(p->secret_file == NULL);
		T_EQ_STR(p->secret_credential, "A9994.secret");
		T_EQ_STR(p->storage_dir, "/data/A9994");
		T_EQ_INT(p->line, 16);
	}
	p = config_profile(c, "SBXBM0002");
	T_ASSERT(p != NULL);
	if (p != NULL) {
		T_EQ_STR(p->client_id, "abc");
		T_EQ_STR(p->secret_file, "/etc/bcdad/SBXBM0002.secret");
		T_ASSERT(p->secret_credential == NULL);
		T_EQ_INT(p->since, SINCE_NONE);
		T_ASSERT(p->since_value == NULL);
		T_EQ_INT(p->endpoint, EP_PATIENT);
		T_EQ_INT(p->api_version, 1);
		T_EQ_STR(p->storage_dir, "/data/out");
		T_EQ_INT(p->line, 26);
	}
	T_ASSERT(config_profile(c, "A9995") == NULL);
	T_ASSERT(config_profile(c, "a9994") == NULL);
	config_free(c);
}

T_TEST(test_defaults)
{
	struct config *c;
	struct profile *p;

	c = load("[profile GUIDE-0001]\n" GOOD_PROFILE);
	T_ASSERT(c != NULL);
	if (c == NULL)
		return;
	T_EQ_STR(c->state_dir, "/var/lib/bcdad");
	T_EQ_STR(c->runtime_dir, "/run/bcdad");
	T_EQ_STR(c->storage_dir, "/var/lib/bcdad/exports");
	T_EQ_INT(c->log_level, LOG_LVL_INFO);
	T_EQ_INT(c->max_downloads, 16);
	T_EQ_INT(c->max_downloads_per_job, 4);
	T_EQ_INT(c->connect_timeout, 30);
	T_EQ_INT(c->low_speed_time, 60);
	T_EQ_INT(c->poll_min, 15);
	T_EQ_INT(c->poll_max, 300);
	T_EQ_INT(c->retry_min, 5);
	T_EQ_INT(c->retry_max, 900);
	T_EQ_INT(c->nprofiles, 1);
	p = c->profiles[0];
	T_EQ_STR(p->name, "GUIDE-0001");
	T_EQ_STR(p->base_url, "https://sandbox.bcda.cms.gov");
	T_EQ_INT(p->api_version, 2);
	T_EQ_INT(p->endpoint, EP_GROUP_ALL);
	T_EQ_INT(p->ntypes, 0);
	T_EQ_INT(p->since, SINCE_AUTO);
	T_ASSERT(p->since_value == NULL);
	T_ASSERT(p->type_filter == NULL);
	T_EQ_STR(p->storage_dir, "/var/lib/bcdad/exports");
	T_EQ_INT(p->line, 1);
	config_free(c);

	/* storage_dir follows state_dir. */
	c = load("[daemon]\nstate_dir = /s//\n");
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_STR(c->storage_dir, "/s/exports");
	config_free(c);
}

T_TEST(test_empty_and_no_profiles)
{
	struct config *c;

	c = load("");
	T_ASSERT(c != NULL);
	T_EQ_STR(errs, "");
	if (c != NULL)
		T_EQ_INT(c->nprofiles, 0);
	config_free(c);

	c = load("# only comments\n; and blank lines\n\n[daemon]\n");
	T_ASSERT(c != NULL);
	T_EQ_STR(errs, "");
	config_free(c);
}

T_TEST(test_multiple_errors)
{
	T_FAILS("[profile A9994]\n"			/* 1 */
	    GOOD_PROFILE				/* 2, 3 */
	    "api_version = v4\n"			/* 4 */
	    "\n"					/* 5 */
	    "endpoint = group\n"			/* 6 */
	    "[daemon]\n"				/* 7 */
	    "log_level = loud\n", 3);			/* 8 */
	T_ERR(4, "api_version \"v4\" is not one of v1, v2, v3");
	T_ERR(6, "endpoint \"group\" is not one of patient, group-all, "
	    "group-runout");
	T_ERR(8, "log_level \"loud\" is not one of error, warning, info, "
	    "debug");

	/* Errors on lines 3, 5 and 9; sorted by line. */
	T_FAILS("[daemon]\n"
	    "max_downloads = 8\n"
	    "bogus = 1\n"
	    "poll_min = 10\n"
	    "poll_max = zero\n"
	    "[profile B]\n"
	    GOOD_PROFILE
	    "since = yesterday\n", 3);
	T_ERR(3, "unknown key \"bogus\" in [daemon]");
	T_ERR(5, "poll_max \"zero\" is not a whole number from 1 to 86400");
	T_ERR(9, "since \"yesterday\" is not auto, none or an instant with "
	    "a zone such as 2026-07-01T12:00:00.000-05:00 or "
	    "2026-07-01T17:00:00Z");
	T_ASSERT(strstr(errs, ":3: ") < strstr(errs, ":5: "));
	T_ASSERT(strstr(errs, ":5: ") < strstr(errs, ":9: "));
}

T_TEST(test_unknown_key_and_section)
{
	T_FAILS("[profile A9994]\n" GOOD_PROFILE "foo = bar\n", 1);
	T_ERR(4, "unknown key \"foo\" in [profile A9994]");

	T_FAILS("[daemon]\n[demon]\nstate_dir = /x\n[profile A]\n"
	    GOOD_PROFILE, 1);
	T_ERR(2, "unknown section [demon]; sections are [daemon], "
	    "[aws] and [profile NAME]");

	/* An empty unknown section is found too. */
	T_FAILS("[profiles]\n", 1);
	T_ERR(1, "unknown section [profiles]; sections are [daemon], "
	    "[aws] and [profile NAME]");

	T_FAILS("state_dir = /x\n", 1);
	T_ERR(1, "key \"state_dir\" is outside any section; put it under "
	    "[daemon], [aws] or [profile NAME]");

	/* A key of the other section kind. */
	T_FAILS("[daemon]\nclient_id = x\n", 1);
	T_ERR(2, "unknown key \"client_id\" in [daemon]");
}

T_TEST(test_resource_types)
{
	struct config *c;

	/* Types come before api_version: checked when the section ends. */
	T_FAILS("[profile A]\n"
	    "resource_types = Patient, Claim\n"
	    "api_version = v1\n"
	    GOOD_PROFILE, 1);
	T_ERR(2, "resource type \"Claim\" is not available in api_version "
	    "v1; allowed: Patient, Coverage, ExplanationOfBenefit");

	T_FAILS("[profile A]\n" GOOD_PROFILE "api_version = v3\n"
	    "resource_types = ClaimResponse\n", 1);
	T_ERR(5, "resource type \"ClaimResponse\" is not available in "
	    "api_version v3; allowed: Patient, Coverage, "
	    "ExplanationOfBenefit");

	c = load("[profile A]\n" GOOD_PROFILE
	    "resource_types = Claim,ClaimResponse\n");
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_INT(c->profiles[0]->ntypes, 2);
	config_free(c);

	c = load("[profile A]\n" GOOD_PROFILE "resource_types =\n");
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_INT(c->profiles[0]->ntypes, 0);
	config_free(c);

	T_FAILS("[profile A]\n" GOOD_PROFILE
	    "resource_types = Patient,Coverage,Patient\n", 1);
	T_ERR(4, "resource type \"Patient\" is listed twice");

	T_FAILS("[profile A]\n" GOOD_PROFILE
	    "resource_types = Patient,,Observation\n", 2);
	T_ERR(4, "resource_types \"Patient,,Observation\" has an empty "
	    "entry; list types separated by commas");
	T_ERR(4, "resource type \"Observation\" is not one of Patient, "
	    "Coverage, ExplanationOfBenefit, Claim, ClaimResponse");

	/* A bad api_version is reported once, not again for the types. */
	T_FAILS("[profile A]\n" GOOD_PROFILE "resource_types = Claim\n"
	    "api_version = 2\n", 1);
	T_ERR(5, "api_version \"2\" is not one of v1, v2, v3");
}

T_TEST(test_type_filter)
{
	struct config *c;

	T_FAILS("[profile A]\n"
	    "type_filter = ExplanationOfBenefit?outcome=complete\n"
	    GOOD_PROFILE, 1);
	T_ERR(2, "type_filter is only allowed with api_version v3 (this "
	    "profile uses v2)");

	T_FAILS("[profile A]\napi_version = v3\n"
	    "type_filter = Claim?outcome=complete\n" GOOD_PROFILE, 1);
	T_ERR(3, "type_filter \"Claim?outcome=complete\" must start with "
	    "\"ExplanationOfBenefit?\" followed by search parameters");

	T_FAILS("[profile A]\napi_version = v3\n"
	    "type_filter = ExplanationOfBenefit?\n" GOOD_PROFILE, 1);

	/* type_filter alone may go on over indented lines. */
	c = load("[profile A]\n"
	    "type_filter = ExplanationOfBenefit?_tag=https://bluebutton.cms"
	    ".gov/fhir/CodeSystem/System-Type|SharedSystem,\n"
	    "    https://bluebutton.cms.gov/fhir/CodeSystem/System-Type|"
	    "NationalClaimsHistory\n"
	    "\t&service-date=ge2026-01-01\n"
	    "api_version = v3\n" GOOD_PROFILE);
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_STR(c->profiles[0]->type_filter,
		    "ExplanationOfBenefit?_tag=https://bluebutton.cms.gov/fhir/"
		    "CodeSystem/System-Type|SharedSystem,https://bluebutton.cms"
		    ".gov/fhir/CodeSystem/System-Type|NationalClaimsHistory"
		    "&service-date=ge2026-01-01");
	config_free(c);

	T_FAILS("[profile A]\n" GOOD_PROFILE "  more\n", 1);
	T_ERR(4, "indented line continues the value of "
	    "\"client_secret_file\"; only type_filter may go on over "
	    "several lines, so remove the indentation");
}

/*
 * Values must be UTF-8: they reach job rows and status's JSON, which
 * cannot carry other bytes.  A file saved in Latin-1 is refused with the
 * line of each bad value, a continuation line included.
 */
T_TEST(test_utf8_values)
{
	struct config *c;

	T_FAILS("[daemon]\nstorage_dir = /data/caf\xe9\n"
	    "[profile A]\napi_version = v3\n"
	    "type_filter = ExplanationOfBenefit?_tag=S\xe9\n"
	    "  ,more\xff\n" GOOD_PROFILE, 3);
	T_ERR(2, "the value of \"storage_dir\" is not valid UTF-8; save the "
	    "file as UTF-8");
	T_ERR(5, "the value of \"type_filter\" is not valid UTF-8; save the "
	    "file as UTF-8");
	T_ERR(6, "the value of \"type_filter\" is not valid UTF-8; save the "
	    "file as UTF-8");

	/* UTF-8 is kept as written, in values and comments alike. */
	c = load("; caf\xc3\xa9\n[daemon]\nstorage_dir = /data/caf\xc3\xa9 "
	    "\xf0\x9f\x98\x80\n[profile A]\n" GOOD_PROFILE);
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_STR(c->storage_dir, "/data/caf\xc3\xa9 \xf0\x9f\x98\x80");
	config_free(c);

	T_EQ_INT(config_utf8_valid("ab\xc3\xa9", 4), 4);
	T_EQ_INT(config_utf8_valid("ab\xc3", 3), 2);		/* cut */
	T_EQ_INT(config_utf8_valid("ab\xe2\x82", 4), 2);	/* cut */
	T_EQ_INT(config_utf8_valid("a\xc0\xaf", 3), 1);	/* overlong */
	T_EQ_INT(config_utf8_valid("a\xe0\x80\xaf", 4), 1);	/* overlong */
	T_EQ_INT(config_utf8_valid("a\xed\xa0\x80", 4), 1);	/* surrogate */
	T_EQ_INT(config_utf8_valid("a\xf4\x90\x80\x80", 5), 1); /* > U+10FFFF */
	T_EQ_INT(config_utf8_valid("a\xf4\x8f\xbf\xbf", 5), 5); /* U+10FFFF */
	T_EQ_INT(config_utf8_valid("a\xe9z", 3), 1);		/* Latin-1 */
	T_EQ_INT(config_utf8_valid("a\x80", 2), 1);		/* stray */
}

T_TEST(test_since)
{
	static const char *const good[] = {
		"2026-07-01T12:00:00.000-05:00", "2026-07-01T12:00:00Z",
		"2024-02-29T00:00:00+00:00", "2026-12-31T23:59:59.123456789Z",
		"auto", "none",
	};
	static const char *const bad[] = {
		"2026-07-01", "2026-07-01T12:00:00", "2026-07-01 12:00:00Z",
		"2026-07-01t12:00:00Z", "2026-13-01T12:00:00Z",
		"2025-02-29T12:00:00Z", "2026-07-01T24:00:00Z",
		"2026-07-01T12:00:00.Z", "2026-07-01T12:00:00+0500",
		"2026-07-01T12:00:00.0000000000Z", "2026-7-1T12:00:00Z",
		"2026-07-01T12:00:00Zjunk", "AUTO", "2026-07-01T12:00:60Z",
	};
	char buf[256];
	struct config *c;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "since = %s\n", good[i]);
		c = load(buf);
		if (c == NULL)
			T_FAIL("since %s refused: %s", good[i], errs);
		config_free(c);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "since = %s\n", bad[i]);
		c = load(buf);
		snprintf(buf, sizeof(buf), ":4: since \"%s\" is not", bad[i]);
		if (c != NULL || strstr(errs, buf) == NULL ||
		    count_lines(errs) != 1)
			T_FAIL("since %s accepted or misreported: %s", bad[i],
			    errs);
		config_free(c);
	}
}

T_TEST(test_base_url)
{
	static const struct {
		const char	*in, *out;
	} good[] = {
		{ "http://127.0.0.1:8080", "http://127.0.0.1:8080" },
		{ "http://127.1.2.3/", "http://127.1.2.3" },
		{ "http://localhost:9999/", "http://localhost:9999" },
		{ "http://[::1]:8443", "http://[::1]:8443" },
		{ "https://sandbox.bcda.cms.gov/", "https://sandbox.bcda.cms.gov" },
		{ "https://10.0.0.5:8443", "https://10.0.0.5:8443" },
		{ "https://[2001:db8::1]", "https://[2001:db8::1]" },
	};
	static const char *const bad[] = {
		"ftp://sandbox.bcda.cms.gov", "https://", "https://host/api/v2",
		"https://host?x=1", "https://host#frag", "https://u:p@host",
		"https://host:0", "https://host:65536", "https://host:",
		"https://[::1", "https://[nothex]", "sandbox.bcda.cms.gov",
		"https://host//",
	};
	char buf[256];
	struct config *c;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "base_url = %s\n", good[i].in);
		c = load(buf);
		T_ASSERT(c != NULL);
		if (c == NULL) {
			T_FAIL("base_url %s refused: %s", good[i].in, errs);
			continue;
		}
		T_EQ_STR(c->profiles[0]->base_url, good[i].out);
		config_free(c);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "base_url = %s\n", bad[i]);
		snprintf(buf + 200, 56, "base_url \"%s\" must be", bad[i]);
		c = load(buf);
		if (c != NULL || count_lines(errs) != 1 ||
		    strstr(errs, buf + 200) == NULL)
			T_FAIL("base_url %s accepted or misreported: %s",
			    bad[i], errs);
		config_free(c);
	}

	T_FAILS("[profile A]\n" GOOD_PROFILE
	    "base_url = http://sandbox.bcda.cms.gov\n", 1);
	T_ERR(4, "base_url \"http://sandbox.bcda.cms.gov\" uses http:// to "
	    "a host that is not loopback; use https:// (http:// is only for "
	    "127.0.0.1, ::1 or localhost)");
	T_FAILS("[profile A]\n" GOOD_PROFILE
	    "base_url = http://128.0.0.1:8080\n", 1);
	T_FAILS("[profile A]\n" GOOD_PROFILE
	    "base_url = http://[::2]:8080\n", 1);
	T_FAILS("[profile A]\n" GOOD_PROFILE
	    "base_url = https://h/x\n", 1);
	T_ERR(4, "base_url \"https://h/x\" must be https://host[:port] with "
	    "no path or query");
}

T_TEST(test_profile_names)
{
	char buf[512];
	struct config *c;

	T_FAILS("[profile A 1]\n" GOOD_PROFILE, 1);
	T_ERR(1, "profile name \"A 1\" must be 1 to 64 characters of A-Z, "
	    "a-z, 0-9, '_', '.' and '-'");
	T_FAILS("[profile ../etc]\n" GOOD_PROFILE, 1);
	T_FAILS("[profile]\n" GOOD_PROFILE, 1);
	T_ERR(1, "profile name \"\" must be 1 to 64 characters of A-Z, "
	    "a-z, 0-9, '_', '.' and '-'");
	T_FAILS("[profileA]\n" GOOD_PROFILE, 1);
	T_ERR(1, "unknown section [profileA]; sections are [daemon], "
	    "[aws] and [profile NAME]");

	/* 64 characters: longer than libinih's own section buffer. */
	snprintf(buf, sizeof(buf), "[profile %s]\n" GOOD_PROFILE,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.");
	c = load(buf);
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_STR(c->profiles[0]->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz0123456789_.");
	config_free(c);
	snprintf(buf, sizeof(buf), "[profile %s]\n" GOOD_PROFILE,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-");
	T_FAILS(buf, 1);
}

T_TEST(test_required_keys)
{
	T_FAILS("[profile A9994]\nclient_secret_file = /etc/s\n", 1);
	T_ERR(1, "[profile A9994] has no client_id; it is required");

	T_FAILS("[profile A9994]\nclient_id = x\n", 1);
	T_ERR(1, "[profile A9994] needs client_secret_file or "
	    "client_secret_credential");

	T_FAILS("[profile A9994]\nclient_secret_file = /etc/s\n"
	    "client_id = x\nclient_secret_credential = A9994\n", 1);
	T_ERR(4, "[profile A9994] sets both client_secret_file (line 2) and "
	    "client_secret_credential (line 4); use exactly one");

	/* An empty profile section: both required keys are missing. */
	T_FAILS("[profile A]\n[profile B]\n" GOOD_PROFILE, 2);
	T_ERR(1, "[profile A] has no client_id; it is required");

	T_FAILS("[profile A]\nclient_id =\nclient_secret_file = s\n", 2);
	T_ERR(2, "client_id in [profile A] has no value");
	T_ERR(3, "client_secret_file \"s\" is not an absolute path");

	T_FAILS("[profile A]\nclient_id = a:b\n"
	    "client_secret_credential = a/b\n", 2);
	T_ERR(2, "client_id \"a:b\" may not contain ':', spaces or control "
	    "characters");
	T_ERR(3, "client_secret_credential \"a/b\" is not a credential name "
	    "(a file name without '/' or spaces)");
}

T_TEST(test_duplicates)
{
	T_FAILS("[profile A]\n" GOOD_PROFILE "client_id = y\n", 1);
	T_ERR(4, "duplicate key \"client_id\" in [profile A] (first set at "
	    "line 2)");

	T_FAILS("[profile A]\n" GOOD_PROFILE "[profile B]\n" GOOD_PROFILE
	    "[profile A]\n" GOOD_PROFILE, 1);
	T_ERR(7, "profile \"A\" is defined twice (first at line 1)");

	T_FAILS("[daemon]\npoll_min = 5\n[daemon]\npoll_min = 6\n", 1);
	T_ERR(3, "[daemon] appears twice (first at line 1); merge them");

	T_FAILS("[daemon]\nlog_level = info\nlog_level = debug\n", 1);
	T_ERR(3, "duplicate key \"log_level\" in [daemon] (first set at "
	    "line 2)");
}

T_TEST(test_daemon_values)
{
	T_FAILS("[daemon]\n"
	    "max_downloads = 0\n"
	    "max_downloads_per_job = 65\n"
	    "connect_timeout = 12x\n"
	    "low_speed_time = -1\n"
	    "poll_min = +5\n"
	    "retry_min = 99999999999999999999\n"
	    "state_dir = var/lib\n"
	    "runtime_dir =\n", 8);
	T_ERR(2, "max_downloads \"0\" is not a whole number from 1 to 256");
	T_ERR(3, "max_downloads_per_job \"65\" is not a whole number from 1 "
	    "to 64");
	T_ERR(4, "connect_timeout \"12x\" is not a whole number from 1 to "
	    "600");
	T_ERR(5, "low_speed_time \"-1\" is not a whole number from 1 to "
	    "3600");
	T_ERR(6, "poll_min \"+5\" is not a whole number from 1 to 3600");
	T_ERR(8, "state_dir \"var/lib\" is not an absolute path");
	T_ERR(9, "runtime_dir in [daemon] has no value");
}

/*
 * The control socket <runtime_dir>/bcdad.sock must fit the 107 bytes of a
 * Unix socket path: runtime_dir may have 96 (trailing slashes aside).
 */
T_TEST(test_runtime_dir_length)
{
	struct config *c;
	char buf[512], want[512], dir[128];

	snprintf(dir, sizeof(dir), "/%0*d", 95, 0);
	snprintf(buf, sizeof(buf), "[daemon]\nruntime_dir = %s//\n"
	    "[profile A]\n" GOOD_PROFILE, dir);
	c = load(buf);
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_INT(strlen(c->runtime_dir), 96);
	config_free(c);
	snprintf(dir, sizeof(dir), "/%0*d", 96, 0);
	snprintf(buf, sizeof(buf), "[daemon]\nruntime_dir = %s\n", dir);
	T_FAILS(buf, 1);
	snprintf(want, sizeof(want), "runtime_dir \"%s\" is too long (97 "
	    "bytes): the control socket's path, runtime_dir + \"/bcdad.sock\", "
	    "must fit the 107 bytes of a Unix socket path; use at most 96 "
	    "bytes", dir);
	T_ERR(2, want);

	T_FAILS("[daemon]\npoll_max = 10\npoll_min = 20\n"
	    "retry_max = 4\n", 2);
	T_ERR(2, "poll_max 10 is less than poll_min 20; poll_max must be "
	    "from poll_min to 86400");
	T_ERR(4, "retry_max 4 is less than retry_min 5; retry_max must be "
	    "from retry_min to 86400");

	/* Only poll_min set, above the default poll_max: its line. */
	T_FAILS("[daemon]\npoll_min = 3600\nretry_min = 1000\n", 2);
	T_ERR(2, "poll_max 300 is less than poll_min 3600; poll_max must be "
	    "from poll_min to 86400");
	T_ERR(3, "retry_max 900 is less than retry_min 1000; retry_max must "
	    "be from retry_min to 86400");
}

T_TEST(test_syntax_errors)
{
	/* Every line without '=' is reported, not only libinih's first. */
	T_FAILS("[profile A]\n" GOOD_PROFILE "oops\n\nalso wrong\n", 2);
	T_ERR(4, "syntax error: expected \"key = value\", a [section] header "
	    "or a comment");
	T_ERR(6, "syntax error: expected \"key = value\", a [section] header "
	    "or a comment");

	T_FAILS("[profile A\n" GOOD_PROFILE, 1);
	T_ERR(1, "syntax error: section header has no closing ']'");

	/* Last line without a newline. */
	T_FAILS("[profile A]\n" GOOD_PROFILE "bad", 1);
	T_ERR(4, "syntax error: expected \"key = value\", a [section] header "
	    "or a comment");
}

T_TEST(test_long_lines)
{
	char buf[4096], *p = buf;
	int i;

	p += sprintf(p, "[profile A]\n");				/* 1 */
	p += sprintf(p, "; ");						/* 2 */
	for (i = 0; i < 500; i++)
		*p++ = 'c';
	*p++ = '\n';
	p += sprintf(p, "storage_dir = /");				/* 3 */
	for (i = 0; i < 300; i++)
		*p++ = 'i';
	*p++ = '\n';
	p += sprintf(p, GOOD_PROFILE);					/* 4, 5 */
	p += sprintf(p, "foo = 1\n");					/* 6 */
	p += sprintf(p, "api_version = v9\n");				/* 7 */
	*p = '\0';
	T_FAILS(buf, 3);
	T_ERR(3, "line is longer than 198 characters");
	T_ERR(6, "unknown key \"foo\" in [profile A]");
	T_ERR(7, "api_version \"v9\" is not one of v1, v2, v3");

	/* 198 characters fit, 199 do not. */
	snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
	    "storage_dir = /%0*d\nfoo = 1\n", 198 - 15, 0);
	T_FAILS(buf, 1);
	T_ERR(5, "unknown key \"foo\" in [profile A]");
	snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
	    "storage_dir = /%0*d\nfoo = 1\n", 199 - 15, 0);
	T_FAILS(buf, 2);
	T_ERR(4, "line is longer than 198 characters");
	T_ERR(5, "unknown key \"foo\" in [profile A]");
}

/*
 * A NUL byte is reported with its line, not taken as the end of the value
 * (fgets and strlen cut it there, and the rest of a long line came back
 * as lines of its own, shifting the numbers of those after it).
 */
T_TEST(test_nul_bytes)
{
	char buf[1024], *p = buf;
	FILE *f;

	p += sprintf(p, "[profile A]\n");				/* 1 */
	p += sprintf(p, "storage_dir = /data");				/* 2 */
	*p++ = '\0';
	p += sprintf(p, "/../etc\n");
	p += sprintf(p, "; ");						/* 3 */
	*p++ = '\0';
	p += sprintf(p, " a comment too\n");
	p += sprintf(p, GOOD_PROFILE);					/* 4, 5 */
	p += sprintf(p, "s3_prefix = ");					/* 6 */
	*p++ = '\0';
	p += sprintf(p, "%0300d\n", 0);
	p += sprintf(p, "foo = 1\n");					/* 7 */

	snprintf(t_path, sizeof(t_path), "%s/bcdad.conf", tmpdir());
	if ((f = fopen(t_path, "w")) == NULL) {
		T_FAIL("cannot write %s", t_path);
		return;
	}
	fwrite(buf, 1, (size_t)(p - buf), f);
	fclose(f);
	memset(errs, 'x', sizeof(errs));
	T_ASSERT(config_load(t_path, errs, sizeof(errs)) == NULL);
	T_EQ_INT(count_lines(errs), 4);
	T_ERR(2, "line contains a NUL byte");
	T_ERR(3, "line contains a NUL byte");
	T_ERR(6, "line contains a NUL byte");
	T_ERR(7, "unknown key \"foo\" in [profile A]");
}

T_TEST(test_errs_buffer)
{
	struct config *c;
	char small[80];

	c = config_load("/nonexistent/bcdad.conf", small, sizeof(small));
	T_ASSERT(c == NULL);
	T_EQ_STR(small, "/nonexistent/bcdad.conf: cannot open: No such file "
	    "or directory\n");

	/* Lines that do not fit are left out whole. */
	load("[daemon]\na = 1\nb = 2\nc = 3\n");
	c = config_load(t_path, small, sizeof(small));
	T_ASSERT(c == NULL);
	T_EQ_INT(count_lines(small), 1);
	T_ASSERT(strlen(small) < sizeof(small));
	T_ASSERT(config_load(t_path, NULL, 0) == NULL);
}

T_TEST(test_endpoint_names)
{
	T_EQ_STR(config_endpoint_name(EP_PATIENT), "patient");
	T_EQ_STR(config_endpoint_name(EP_GROUP_ALL), "group-all");
	T_EQ_STR(config_endpoint_name(EP_GROUP_RUNOUT), "group-runout");
	T_EQ_STR(config_endpoint_name((enum bcda_endpoint)7), "unknown");
}

T_TEST(test_aws_full_valid)
{
	struct config *c;
	struct profile *p;

	c = load("[aws]\n"
	    "region = us-gov-west-1\n"
	    "s3_endpoint_url = http://127.0.0.1:4569/\n"
	    "sts_endpoint_url = https://sts.us-gov-west-1.amazonaws.com\n"
	    "healthlake_endpoint_url = http://localhost:4566\n"
	    "sns_endpoint_url = http://[::1]:4566\n"
	    "secretsmanager_endpoint_url = https://10.0.0.5:8443/\n"
	    "[profile A9994]\n"
	    "s3_bucket = my.claims-bucket1\n"
	    "s3_prefix = bcda/exports//\n"
	    "kms_key_id = arn:aws:kms:us-east-1:123456789012:key/"
	    "1234abcd-12ab-34cd-56ef-1234567890ab\n"
	    "multipart_threshold = 16M\n"
	    "keep_local = yes\n"
	    "healthlake_datastore_id = 0123456789abcdef0123456789abcdef\n"
	    "healthlake_role_arn = arn:aws:iam::123456789012:role/"
	    "HealthLakeImport\n"
	    "healthlake_output_uri = s3://my-bucket/out/\n"
	    "sns_topic_arn = arn:aws:sns:us-east-1:123456789012:"
	    "bcdad-events\n"
	    "bcda_secret_arn = arn:aws:secretsmanager:us-east-1:"
	    "123456789012:secret:bcda/A9994-AbCdEf\n");
	T_ASSERT(c != NULL);
	if (c == NULL) {
		fprintf(stderr, "%s", errs);
		return;
	}
	T_EQ_STR(errs, "");
	T_EQ_STR(c->aws_region, "us-gov-west-1");
	T_EQ_STR(c->s3_endpoint, "http://127.0.0.1:4569");
	T_EQ_STR(c->sts_endpoint, "https://sts.us-gov-west-1.amazonaws.com");
	T_EQ_STR(c->healthlake_endpoint, "http://localhost:4566");
	T_EQ_STR(c->sns_endpoint, "http://[::1]:4566");
	T_EQ_STR(c->secretsmanager_endpoint, "https://10.0.0.5:8443");
	p = c->profiles[0];
	T_EQ_STR(p->s3_bucket, "my.claims-bucket1");
	T_EQ_STR(p->s3_prefix, "bcda/exports/");
	T_EQ_STR(p->kms_key_id, "arn:aws:kms:us-east-1:123456789012:key/"
	    "1234abcd-12ab-34cd-56ef-1234567890ab");
	T_EQ_INT(p->multipart_threshold, 16 * 1024 * 1024);
	T_EQ_INT(p->keep_local, 1);
	T_EQ_STR(p->healthlake_datastore_id,
	    "0123456789abcdef0123456789abcdef");
	T_EQ_STR(p->healthlake_role_arn,
	    "arn:aws:iam::123456789012:role/HealthLakeImport");
	T_EQ_STR(p->healthlake_output_uri, "s3://my-bucket/out/");
	T_EQ_STR(p->sns_topic_arn,
	    "arn:aws:sns:us-east-1:123456789012:bcdad-events");
	T_EQ_STR(p->bcda_secret_arn, "arn:aws:secretsmanager:us-east-1:"
	    "123456789012:secret:bcda/A9994-AbCdEf");
	T_ASSERT(p->client_id == NULL);
	T_ASSERT(p->secret_file == NULL);
	T_ASSERT(p->secret_credential == NULL);
	config_free(c);
}

T_TEST(test_aws_defaults)
{
	struct config *c;
	struct profile *p;

	/* Nothing about AWS: files stay local. */
	c = load("[profile A]\n" GOOD_PROFILE);
	T_ASSERT(c != NULL);
	if (c != NULL) {
		T_ASSERT(c->aws_region == NULL);
		T_ASSERT(c->s3_endpoint == NULL);
		T_ASSERT(c->sts_endpoint == NULL);
		T_ASSERT(c->healthlake_endpoint == NULL);
		T_ASSERT(c->sns_endpoint == NULL);
		T_ASSERT(c->secretsmanager_endpoint == NULL);
		p = c->profiles[0];
		T_ASSERT(p->s3_bucket == NULL);
		T_EQ_STR(p->s3_prefix, "");
		T_ASSERT(p->kms_key_id == NULL);
		T_EQ_INT(p->multipart_threshold, 8388608);
		T_EQ_INT(p->keep_local, 1);
		T_ASSERT(p->healthlake_datastore_id == NULL);
		T_ASSERT(p->healthlake_role_arn == NULL);
		T_ASSERT(p->healthlake_output_uri == NULL);
		T_ASSERT(p->sns_topic_arn == NULL);
		T_ASSERT(p->bcda_secret_arn == NULL);
	}
	config_free(c);

	/* A bucket alone: uploads, and local copies are removed. */
	c = load("[aws]\n[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n");
	T_ASSERT(c != NULL);
	if (c != NULL) {
		p = c->profiles[0];
		T_EQ_STR(p->s3_bucket, "abc");
		T_EQ_STR(p->s3_prefix, "");
		T_EQ_INT(p->keep_local, 0);
		T_ASSERT(p->healthlake_output_uri == NULL);
	}
	config_free(c);

	/* The HealthLake output goes beside the exports. */
	c = load("[profile A]\n" GOOD_PROFILE "s3_bucket = claims\n"
	    "s3_prefix = exports\n"
	    "healthlake_datastore_id = ds1\n"
	    "healthlake_role_arn = arn:aws:iam::123456789012:role/r\n");
	T_ASSERT(c != NULL);
	if (c != NULL) {
		p = c->profiles[0];
		T_EQ_STR(p->s3_prefix, "exports/");
		T_EQ_STR(p->healthlake_output_uri,
		    "s3://claims/exports/healthlake-output/");
	}
	config_free(c);
	c = load("[profile A]\n" GOOD_PROFILE "s3_bucket = claims\n"
	    "healthlake_role_arn = arn:aws-us-gov:iam::123456789012:role/a/b\n"
	    "healthlake_datastore_id = DS1\n");
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_STR(c->profiles[0]->healthlake_output_uri,
		    "s3://claims/healthlake-output/");
	config_free(c);
}

T_TEST(test_aws_section)
{
	static const char *const regions[] = {
		"us-east-1", "us-gov-west-1", "cn-north-1", "eu-central-2",
		"us-iso-east-1", "us-isob-east-1", "ap-southeast-10",
	};
	static const char *const bad_regions[] = {
		"us-east", "US-EAST-1", "useast1", "us-east-1a", "u-east-1",
		"us--east-1", "us_east_1", "us-east-1 x",
	};
	char buf[256];
	struct config *c;
	size_t i;

	for (i = 0; i < sizeof(regions) / sizeof(regions[0]); i++) {
		snprintf(buf, sizeof(buf), "[aws]\nregion = %s\n", regions[i]);
		c = load(buf);
		if (c == NULL)
			T_FAIL("region %s refused: %s", regions[i], errs);
		config_free(c);
	}
	for (i = 0; i < sizeof(bad_regions) / sizeof(bad_regions[0]); i++) {
		snprintf(buf, sizeof(buf), "[aws]\nregion = %s\n",
		    bad_regions[i]);
		T_FAILS(buf, 1);
		snprintf(buf, sizeof(buf), "region \"%s\" is not an AWS region "
		    "such as us-east-1, us-gov-west-1 or cn-north-1",
		    bad_regions[i]);
		T_ERR(2, buf);
	}

	T_FAILS("[aws]\nregion = us-east-1\n[aws]\nregion = us-east-2\n", 1);
	T_ERR(3, "[aws] appears twice (first at line 1); merge them");
	T_FAILS("[aws]\nregion = us-east-1\nregion = us-east-2\n", 1);
	T_ERR(3, "duplicate key \"region\" in [aws] (first set at line 2)");
	T_FAILS("[aws]\naccess_key_id = AKIA\n", 1);
	T_ERR(2, "unknown key \"access_key_id\" in [aws]");
	T_FAILS("[aws]\nregion =\n", 1);
	T_ERR(2, "region in [aws] has no value");
	T_FAILS("[aws]\ns3_bucket = x\n", 1);
	T_ERR(2, "unknown key \"s3_bucket\" in [aws]");

	/* Endpoints follow base_url's rules. */
	T_FAILS("[aws]\n"
	    "s3_endpoint_url = http://s3.example.com\n"
	    "sts_endpoint_url = https://sts.example.com/v1\n"
	    "healthlake_endpoint_url = http://10.1.2.3:4566\n"
	    "sns_endpoint_url = ftp://localhost\n"
	    "secretsmanager_endpoint_url = https://h?x=1\n", 5);
	T_ERR(2, "s3_endpoint_url \"http://s3.example.com\" uses http:// to "
	    "a host that is not loopback; use https:// (http:// is only for "
	    "127.0.0.1, ::1 or localhost)");
	T_ERR(3, "sts_endpoint_url \"https://sts.example.com/v1\" must be "
	    "https://host[:port] with no path or query");
	T_ERR(4, "healthlake_endpoint_url \"http://10.1.2.3:4566\" uses "
	    "http:// to a host that is not loopback; use https:// (http:// "
	    "is only for 127.0.0.1, ::1 or localhost)");
	T_ERR(5, "sns_endpoint_url \"ftp://localhost\" must be "
	    "https://host[:port] with no path or query");
	T_ERR(6, "secretsmanager_endpoint_url \"https://h?x=1\" must be "
	    "https://host[:port] with no path or query");
}

T_TEST(test_s3_bucket)
{
	static const char *const good[] = {
		"abc", "my-bucket", "my.bucket.01", "0abc9", "a-b.c-d",
		"a2345678901234567890123456789012345678901234567890"
		    "1234567890123",
		"1.2.3",
	};
	static const char *const bad[] = {
		"ab", "My-Bucket", "-abc", "abc-", ".abc", "abc.", "a..b",
		"a_b", "192.168.5.4", "abc/def",
		"a2345678901234567890123456789012345678901234567890"
		    "12345678901234",
	};
	char buf[256], want[256];
	struct config *c;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "s3_bucket = %s\n", good[i]);
		c = load(buf);
		if (c == NULL)
			T_FAIL("s3_bucket %s refused: %s", good[i], errs);
		else
			T_EQ_STR(c->profiles[0]->s3_bucket, good[i]);
		config_free(c);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "s3_bucket = %s\n", bad[i]);
		T_FAILS(buf, 1);
		snprintf(want, sizeof(want), "s3_bucket \"%s\" is not an S3 "
		    "bucket name: 3 to 63 characters of a-z, 0-9, '.' and "
		    "'-', beginning and ending with a letter or digit, without "
		    "\"..\" and not an IP address", bad[i]);
		T_ERR(4, want);
	}
}

T_TEST(test_s3_prefix)
{
	struct config *c;

	c = load("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "s3_prefix = exports\n");
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_STR(c->profiles[0]->s3_prefix, "exports/");
	config_free(c);
	c = load("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "s3_prefix = a/b.c/..d///\n");
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_STR(c->profiles[0]->s3_prefix, "a/b.c/..d/");
	config_free(c);

	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "s3_prefix = /x\n", 1);
	T_ERR(5, "s3_prefix \"/x\" must not begin with '/'; write the prefix "
	    "as dir/subdir");
	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "s3_prefix = a/../b\n", 1);
	T_ERR(5, "s3_prefix \"a/../b\" must not contain a \"..\" segment");
	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "s3_prefix = ..\n", 1);
	T_ERR(5, "s3_prefix \"..\" must not contain a \"..\" segment");
	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "s3_prefix = a\tb\n", 1);
	T_ERR(5, "s3_prefix \"a\tb\" must not contain control characters");
}

T_TEST(test_multipart_and_keep_local)
{
	static const struct {
		const char	*in;
		long long	 out;
	} good[] = {
		{ "8M", 8388608 }, { "5M", 5242880 }, { "5242880", 5242880 },
		{ "5120K", 5242880 }, { "5G", 5368709120LL },
		{ "1g", 1073741824 }, { "100m", 104857600 },
	};
	static const char *const bad[] = {
		"4M", "6G", "5242879", "8MB", "8 M", "-8M", "M", "8X",
		"99999999999999999999", "9999999999999999G", "0x800000",
	};
	char buf[256], want[256];
	struct config *c;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "s3_bucket = abc\nmultipart_threshold = %s\n", good[i].in);
		c = load(buf);
		if (c == NULL) {
			T_FAIL("multipart_threshold %s refused: %s",
			    good[i].in, errs);
			continue;
		}
		T_EQ_INT(c->profiles[0]->multipart_threshold, good[i].out);
		config_free(c);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "s3_bucket = abc\nmultipart_threshold = %s\n", bad[i]);
		T_FAILS(buf, 1);
		snprintf(want, sizeof(want), "multipart_threshold \"%s\" is "
		    "not a size from 5M to 5G; write a number of bytes, or a "
		    "number followed by K, M or G", bad[i]);
		T_ERR(5, want);
	}

	c = load("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "keep_local = true\n[profile B]\n" GOOD_PROFILE
	    "s3_bucket = abc\nkeep_local = 0\n");
	T_ASSERT(c != NULL);
	if (c != NULL) {
		T_EQ_INT(c->profiles[0]->keep_local, 1);
		T_EQ_INT(c->profiles[1]->keep_local, 0);
	}
	config_free(c);
	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "keep_local = maybe\n", 1);
	T_ERR(5, "keep_local \"maybe\" is not one of yes, no, true, false, "
	    "1, 0");
}

T_TEST(test_kms_key_id)
{
	static const char *const good[] = {
		"1234abcd-12ab-34cd-56ef-1234567890ab",
		"key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"alias/bcdad", "alias/aws/s3",
		"arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab",
		"arn:aws-us-gov:kms:us-gov-west-1:123456789012:alias/x_y",
		"arn:aws-cn:kms:cn-north-1:123456789012:alias/a:b",
	};
	static const char *const bad[] = {
		"alias/", "alias/a b", "arn:aws:kms:us-east-1:123:key/x",
		"arn:aws:s3:::bucket", "key/a.b", "arn:aws-xx:kms:us-east-1:"
		"123456789012:key/k",
	};
	char buf[256], want[256];
	struct config *c;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "s3_bucket = abc\nkms_key_id = %s\n", good[i]);
		c = load(buf);
		if (c == NULL)
			T_FAIL("kms_key_id %s refused: %s", good[i], errs);
		else
			T_EQ_STR(c->profiles[0]->kms_key_id, good[i]);
		config_free(c);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "s3_bucket = abc\nkms_key_id = %s\n", bad[i]);
		T_FAILS(buf, 1);
		snprintf(want, sizeof(want), "kms_key_id \"%s\" is not a KMS "
		    "key id, key ARN, alias/NAME or alias ARN", bad[i]);
		T_ERR(5, want);
	}
}

T_TEST(test_needs_s3_bucket)
{
	T_FAILS("[profile A]\n" GOOD_PROFILE		/* 1-3 */
	    "kms_key_id = alias/bcdad\n"		/* 4 */
	    "s3_prefix = x\n"				/* 5 */
	    "multipart_threshold = 8M\n"		/* 6 */
	    "keep_local = no\n"				/* 7 */
	    "healthlake_datastore_id = ds\n"		/* 8 */
	    "healthlake_role_arn = arn:aws:iam::123456789012:role/r\n"
	    "healthlake_output_uri = s3://abc/out/\n"	/* 10 */
	    "sns_topic_arn = arn:aws:sns:us-east-1:123456789012:t\n", 7);
	T_ERR(4, "kms_key_id needs s3_bucket; set s3_bucket in [profile A] "
	    "or remove kms_key_id");
	T_ERR(5, "s3_prefix needs s3_bucket; set s3_bucket in [profile A] "
	    "or remove s3_prefix");
	T_ERR(6, "multipart_threshold needs s3_bucket; set s3_bucket in "
	    "[profile A] or remove multipart_threshold");
	T_ERR(7, "keep_local needs s3_bucket; set s3_bucket in [profile A] "
	    "or remove keep_local");
	T_ERR(8, "healthlake_datastore_id needs s3_bucket; set s3_bucket in "
	    "[profile A] or remove healthlake_datastore_id");
	T_ERR(9, "healthlake_role_arn needs s3_bucket; set s3_bucket in "
	    "[profile A] or remove healthlake_role_arn");
	T_ERR(10, "healthlake_output_uri needs s3_bucket; set s3_bucket in "
	    "[profile A] or remove healthlake_output_uri");

	T_FAILS("[profile A]\n" GOOD_PROFILE "kms_key_id = alias/k\n", 1);
	T_ERR(4, "kms_key_id needs s3_bucket; set s3_bucket in [profile A] "
	    "or remove kms_key_id");

	/* A bad value is reported once, without its need for a bucket. */
	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_prefix = /x\n", 1);
	T_ERR(4, "s3_prefix \"/x\" must not begin with '/'; write the prefix "
	    "as dir/subdir");

	/* A bad bucket is reported once, not again for the other keys. */
	T_FAILS("[profile A]\n" GOOD_PROFILE "kms_key_id = alias/k\n"
	    "s3_bucket = A\n", 1);
	T_ERR(5, "s3_bucket \"A\" is not an S3 bucket name: 3 to 63 "
	    "characters of a-z, 0-9, '.' and '-', beginning and ending with "
	    "a letter or digit, without \"..\" and not an IP address");
}

T_TEST(test_healthlake)
{
	struct config *c;

	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "healthlake_datastore_id = ds1\n", 1);
	T_ERR(5, "healthlake_datastore_id needs healthlake_role_arn, the "
	    "role HealthLake assumes to read the bucket");
	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "healthlake_role_arn = arn:aws:iam::123456789012:role/r\n", 1);
	T_ERR(5, "healthlake_role_arn needs healthlake_datastore_id, the "
	    "datastore to import into");
	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "healthlake_output_uri = s3://abc/out/\n", 1);
	T_ERR(5, "healthlake_output_uri needs healthlake_datastore_id and "
	    "healthlake_role_arn");

	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "healthlake_datastore_id = ds-1\n"
	    "healthlake_role_arn = arn:aws:iam::12345678901:role/r\n"
	    "healthlake_output_uri = https://abc/out/\n", 3);
	T_ERR(5, "healthlake_datastore_id \"ds-1\" is not a HealthLake "
	    "datastore id (1 to 32 letters and digits)");
	T_ERR(6, "healthlake_role_arn \"arn:aws:iam::12345678901:role/r\" is "
	    "not an IAM role ARN such as arn:aws:iam::123456789012:role/NAME");
	T_ERR(7, "healthlake_output_uri \"https://abc/out/\" is not an S3 URI "
	    "such as s3://bucket/prefix/");

	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "healthlake_datastore_id = 0123456789abcdef0123456789abcdef0\n"
	    "healthlake_role_arn = arn:aws:iam::123456789012:role/\n"
	    "healthlake_output_uri = s3://Abc/out/\n", 3);
	T_FAILS("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "healthlake_datastore_id = d\n"
	    "healthlake_role_arn = arn:aws:iam::123456789012:user/u\n"
	    "healthlake_output_uri = s3://ab\n", 2);

	c = load("[profile A]\n" GOOD_PROFILE "s3_bucket = abc\n"
	    "healthlake_datastore_id = d\n"
	    "healthlake_role_arn = arn:aws:iam::123456789012:role/r\n"
	    "healthlake_output_uri = s3://other.bucket\n");
	T_ASSERT(c != NULL);
	if (c != NULL)
		T_EQ_STR(c->profiles[0]->healthlake_output_uri,
		    "s3://other.bucket");
	config_free(c);
}

T_TEST(test_sns_topic_arn)
{
	static const char *const good[] = {
		"arn:aws:sns:us-east-1:123456789012:bcdad-events",
		"arn:aws:sns:us-east-1:123456789012:bcdad_events.fifo",
		"arn:aws-us-gov:sns:us-gov-west-1:123456789012:T",
		"arn:aws-cn:sns:cn-north-1:123456789012:x",
	};
	static const char *const bad[] = {
		"arn:aws:sqs:us-east-1:123456789012:q",
		"arn:aws:sns:us-east-1:12345678901:t",
		"arn:aws:sns:us-east-1:123456789012:",
		"arn:aws:sns:us-east-1:123456789012:a.b",
		"arn:aws:sns:us-east-1:123456789012:a.fifo.fifo",
		"arn:aws:sns:useast1:123456789012:t",
		"arn:aws:sns::123456789012:t", "bcdad-events",
	};
	char buf[256], want[512];
	struct config *c;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "sns_topic_arn = %s\n", good[i]);
		c = load(buf);
		if (c == NULL)
			T_FAIL("sns_topic_arn %s refused: %s", good[i], errs);
		else
			T_EQ_STR(c->profiles[0]->sns_topic_arn, good[i]);
		config_free(c);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "[profile A]\n" GOOD_PROFILE
		    "sns_topic_arn = %s\n", bad[i]);
		T_FAILS(buf, 1);
		snprintf(want, sizeof(want), "sns_topic_arn \"%s\" is not an "
		    "SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:"
		    "NAME (NAME: 1 to 256 of A-Z, a-z, 0-9, '_' and '-', "
		    "optionally ending in .fifo)", bad[i]);
		T_ERR(4, want);
	}
}

T_TEST(test_bcda_secret_arn)
{
	struct config *c;
	struct profile *p;
	char err[512];

	/* Alone it is a whole set of BCDA credentials. */
	c = load("[profile A]\nbcda_secret_arn = bcda/A\n");
	T_ASSERT(c != NULL);
	if (c != NULL) {
		p = c->profiles[0];
		T_EQ_STR(p->bcda_secret_arn, "bcda/A");
		T_ASSERT(p->client_id == NULL);
		T_ASSERT(config_read_secret(p, err, sizeof(err)) == NULL);
		T_EQ_STR(err, "profile A takes its BCDA credentials from "
		    "Secrets Manager (bcda_secret_arn bcda/A), not from a "
		    "file");
	}
	config_free(c);

	T_FAILS("[profile A]\nbcda_secret_arn = bcda/A\nclient_id = x\n", 1);
	T_ERR(3, "bcda_secret_arn replaces client_id and client_secret_*; "
	    "remove them");
	T_FAILS("[profile A]\nclient_secret_credential = c\n"
	    "bcda_secret_arn = bcda/A\n", 1);
	T_ERR(2, "bcda_secret_arn replaces client_id and client_secret_*; "
	    "remove them");
	/* Reported once, at the first of them. */
	T_FAILS("[profile A]\nbcda_secret_arn = bcda/A\n" GOOD_PROFILE
	    "client_secret_credential = c\n", 1);
	T_ERR(3, "bcda_secret_arn replaces client_id and client_secret_*; "
	    "remove them");

	T_FAILS("[profile A]\nbcda_secret_arn = bcda\001A\n", 1);
	T_ERR(2, "bcda_secret_arn \"bcda\001A\" must not contain control "
	    "characters");
	/* An empty value is reported once, without the keys it replaces. */
	T_FAILS("[profile A]\nbcda_secret_arn =\n", 1);
	T_ERR(2, "bcda_secret_arn in [profile A] has no value");
}

static struct profile *
secret_profile(const char *file, const char *cred)
{
	static struct profile p;

	memset(&p, 0, sizeof(p));
	p.name = (char *)(uintptr_t)"A9994";
	p.secret_file = (char *)(uintptr_t)file;
	p.secret_credential = (char *)(uintptr_t)cred;
	return &p;
}

T_TEST(test_secret_file)
{
	char path[128], link[128], want[512], err[512];
	char *s;

	snprintf(path, sizeof(path), "%s/A9994.secret", tmpdir());
	write_file(path, "s3cr3t-value\n", 0644);
	s = config_read_secret(secret_profile(path, NULL), err, sizeof(err));
	T_ASSERT(s == NULL);
	snprintf(want, sizeof(want), "client_secret_file %s is readable by "
	    "group or others (mode 0644); chmod 600 it", path);
	T_EQ_STR(err, want);
	T_ASSERT(strstr(err, "s3cr3t") == NULL);

	chmod(path, 0620);
	s = config_read_secret(secret_profile(path, NULL), err, sizeof(err));
	T_ASSERT(s == NULL);
	T_ASSERT(strstr(err, "(mode 0620); chmod 600 it") != NULL);

	chmod(path, 0600);
	s = config_read_secret(secret_profile(path, NULL), err, sizeof(err));
	T_EQ_STR(s, "s3cr3t-value");
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}

	write_file(path, "  inner space \r\n\n", 0400);
	s = config_read_secret(secret_profile(path, NULL), err, sizeof(err));
	T_EQ_STR(s, "  inner space");
	free(s);

	write_file(path, "\n", 0600);
	s = config_read_secret(secret_profile(path, NULL), err, sizeof(err));
	T_ASSERT(s == NULL);
	snprintf(want, sizeof(want), "client_secret_file %s is empty", path);
	T_EQ_STR(err, want);

	/* Symbolic links are refused. */
	write_file(path, "x\n", 0600);
	snprintf(link, sizeof(link), "%s/link.secret", tmpdir());
	unlink(link);
	T_ASSERT(symlink(path, link) == 0);
	s = config_read_secret(secret_profile(link, NULL), err, sizeof(err));
	T_ASSERT(s == NULL);
	T_ASSERT(strstr(err, "(symbolic links are refused)") != NULL);
	unlink(link);

	s = config_read_secret(secret_profile("/nonexistent/s", NULL), err,
	    sizeof(err));
	T_ASSERT(s == NULL);
	T_EQ_STR(err, "client_secret_file /nonexistent/s: cannot open: No "
	    "such file or directory");

	/* Larger than 4 KiB. */
	{
		char big[5000];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		write_file(path, big, 0600);
		s = config_read_secret(secret_profile(path, NULL), err,
		    sizeof(err));
		T_ASSERT(s == NULL);
		T_ASSERT(strstr(err, "is larger than 4096 bytes") != NULL);
	}
	unlink(path);
}

T_TEST(test_secret_credential)
{
	char dir[128], path[160], want[512], err[512];
	char *s;

	snprintf(dir, sizeof(dir), "%s/creds", tmpdir());
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/A9994", dir);
	write_file(path, "cred-secret\n", 0400);

	unsetenv("CREDENTIALS_DIRECTORY");
	s = config_read_secret(secret_profile(NULL, "A9994"), err,
	    sizeof(err));
	T_ASSERT(s == NULL);
	T_EQ_STR(err, "profile A9994: client_secret_credential A9994 needs "
	    "$CREDENTIALS_DIRECTORY, which is not set; run bcdad under "
	    "systemd with LoadCredential= or LoadCredentialEncrypted=, or "
	    "use client_secret_file");

	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	s = config_read_secret(secret_profile(NULL, "A9994"), err,
	    sizeof(err));
	T_EQ_STR(s, "cred-secret");
	free(s);

	s = config_read_secret(secret_profile(NULL, "missing"), err,
	    sizeof(err));
	T_ASSERT(s == NULL);
	snprintf(want, sizeof(want), "client_secret_credential missing "
	    "(%s/missing): cannot open: No such file or directory", dir);
	T_EQ_STR(err, want);
	unsetenv("CREDENTIALS_DIRECTORY");
	unlink(path);
	rmdir(dir);
}

/* Runs last: removes what the tests left in the temporary directory. */
T_TEST(test_cleanup)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/bcdad.conf", tmpdir());
	unlink(path);
	T_ASSERT(rmdir(tmpdir()) == 0);
}

T_MAIN("config",
    T_CASE(test_full_valid),
    T_CASE(test_defaults),
    T_CASE(test_empty_and_no_profiles),
    T_CASE(test_multiple_errors),
    T_CASE(test_unknown_key_and_section),
    T_CASE(test_resource_types),
    T_CASE(test_type_filter),
    T_CASE(test_utf8_values),
    T_CASE(test_since),
    T_CASE(test_base_url),
    T_CASE(test_profile_names),
    T_CASE(test_required_keys),
    T_CASE(test_duplicates),
    T_CASE(test_daemon_values),
    T_CASE(test_runtime_dir_length),
    T_CASE(test_syntax_errors),
    T_CASE(test_long_lines),
    T_CASE(test_nul_bytes),
    T_CASE(test_errs_buffer),
    T_CASE(test_endpoint_names),
    T_CASE(test_aws_full_valid),
    T_CASE(test_aws_defaults),
    T_CASE(test_aws_section),
    T_CASE(test_s3_bucket),
    T_CASE(test_s3_prefix),
    T_CASE(test_multipart_and_keep_local),
    T_CASE(test_kms_key_id),
    T_CASE(test_needs_s3_bucket),
    T_CASE(test_healthlake),
    T_CASE(test_sns_topic_arn),
    T_CASE(test_bcda_secret_arn),
    T_CASE(test_secret_file),
    T_CASE(test_secret_credential),
    T_CASE(test_cleanup))
