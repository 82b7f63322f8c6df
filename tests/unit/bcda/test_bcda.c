/*
 * Tests of the BCDA protocol module (lib/bcda/bcda.c), without I/O: token
 * bodies, X-Progress, FHIR instants, kickoff URLs, manifests,
 * OperationOutcomes, the jobs-list Bundle used to find a lost job, and
 * which URLs may receive the bearer token.  The bodies are the shapes
 * BCDA's source (CMSgov/bcda-app) writes.
 */
#include <errno.h>

#include "t.h"
#include "bcda/bcda.h"
#include "config/config.h"

#define S(lit)	(lit), (sizeof(lit) - 1)

/* ---- tokens ---------------------------------------------------------- */

T_TEST(test_token_string_expires)
{
	struct bcda_token t;

	T_EQ_INT(bcda_parse_token(S("{\"access_token\": \"eyJ.a.b\", "
	    "\"expires_in\": \"1200\", \"token_type\":\"bearer\"}"), &t), 0);
	T_EQ_STR(t.access_token, "eyJ.a.b");
	T_EQ_INT(t.expires_in, 1200);
	bcda_token_clear(&t);
	T_ASSERT(t.access_token == NULL);
	T_EQ_INT(t.expires_in, 0);
}

T_TEST(test_token_number_expires)
{
	struct bcda_token t;

	T_EQ_INT(bcda_parse_token(S("{\"access_token\":\"tok\","
	    "\"expires_in\":300,\"token_type\":\"bearer\"}"), &t), 0);
	T_EQ_STR(t.access_token, "tok");
	T_EQ_INT(t.expires_in, 300);
	bcda_token_clear(&t);
}

T_TEST(test_token_missing_expires)
{
	struct bcda_token t;

	/* BCDA's lifetime is fixed at 20 minutes. */
	T_EQ_INT(bcda_parse_token(S("{\"access_token\":\"tok\"}"), &t), 0);
	T_EQ_STR(t.access_token, "tok");
	T_EQ_INT(t.expires_in, 1200);
	bcda_token_clear(&t);
}

T_TEST(test_token_bad)
{
	static const char *const bad[] = {
		"{\"access_token\":\"tok\",\"expires_in\":\"12x\"}",
		"{\"access_token\":\"tok\",\"expires_in\":\"\"}",
		"{\"access_token\":\"tok\",\"expires_in\":\"x12\"}",
		"{\"access_token\":\"tok\",\"expires_in\":\"-5\"}",
		"{\"access_token\":\"tok\",\"expires_in\":-5}",
		"{\"access_token\":\"tok\",\"expires_in\":0}",
		"{\"access_token\":\"tok\",\"expires_in\":\"99999999999999999999999\"}",
		"{\"access_token\":\"tok\",\"expires_in\":1.5}",
		"{\"access_token\":\"tok\",\"expires_in\":null}",
		"{\"access_token\":\"tok\",\"expires_in\":[1200]}",
		"{\"access_token\":\"\",\"expires_in\":\"1200\"}",
		"{\"access_token\":null,\"expires_in\":\"1200\"}",
		"{\"access_token\":42,\"expires_in\":\"1200\"}",
		"{\"expires_in\":\"1200\"}",
		"[\"access_token\"]",
		"Unauthorized",
		"",
		"{\"access_token\":\"tok\",\"expires_in\":\"1200\"",
	};
	struct bcda_token t;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = bcda_parse_token(bad[i], strlen(bad[i]), &t);

		if (rc >= 0)
			T_FAIL("bcda_parse_token(%s) = %d, expected an error",
			    bad[i], rc);
		if (t.access_token != NULL)
			T_FAIL("bcda_parse_token(%s) left a token", bad[i]);
		bcda_token_clear(&t);
	}
}

/* ---- X-Progress -------------------------------------------------------- */

T_TEST(test_progress)
{
	T_EQ_INT(bcda_parse_progress("Pending"), -1);
	T_EQ_INT(bcda_parse_progress("In Progress (42%)"), 42);
	T_EQ_INT(bcda_parse_progress("In Progress, 80%"), 80);
	T_EQ_INT(bcda_parse_progress("In Progress (0%)"), 0);
	T_EQ_INT(bcda_parse_progress("7%"), 7);
	T_EQ_INT(bcda_parse_progress("100%"), 100);
	T_EQ_INT(bcda_parse_progress("101%"), -1);
	T_EQ_INT(bcda_parse_progress("1000%"), -1);
	T_EQ_INT(bcda_parse_progress("%"), -1);
	T_EQ_INT(bcda_parse_progress("In Progress (%)"), -1);
	T_EQ_INT(bcda_parse_progress(""), -1);
	T_EQ_INT(bcda_parse_progress(NULL), -1);
}

/* ---- instants -------------------------------------------------------- */

T_TEST(test_instant_valid)
{
	static const struct {
		const char	*s;
		long long	 t;
	} ok[] = {
		{ "2026-07-01T12:00:00Z", 1782907200LL },
		{ "2026-07-01T12:00:00+00:00", 1782907200LL },
		{ "2026-07-01T12:00:00-05:00", 1782925200LL },
		{ "2026-07-01T12:00:00.000-05:00", 1782925200LL },
		{ "2026-07-01T17:00:00+05:00", 1782907200LL },
		{ "2026-12-09T20:44:01.705398Z", 1796849041LL },
		{ "2026-12-09T20:44:01.7Z", 1796849041LL },
		{ "2026-12-09T20:44:01.123456789Z", 1796849041LL },
		{ "2026-12-09T20:44:01.123456789+00:00", 1796849041LL },
		{ "1970-01-01T00:00:00Z", 0LL },
		{ "2024-02-29T23:59:59Z", 1709251199LL },
		{ "2000-02-29T00:00:00Z", 951782400LL },
		{ "2026-07-01T00:00:00+14:00", 1782864000LL - 14 * 3600 },
	};
	time_t t;
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		t = 12345;
		if (bcda_parse_instant(ok[i].s, &t) != 0)
			T_FAIL("bcda_parse_instant(%s) failed", ok[i].s);
		else if ((long long)t != ok[i].t)
			T_FAIL("bcda_parse_instant(%s) = %lld, expected %lld",
			    ok[i].s, (long long)t, ok[i].t);
	}
}

T_TEST(test_instant_invalid)
{
	static const char *const bad[] = {
		"2026-07-01",				/* date only */
		"2026-07-01T12:00:00",			/* no zone */
		"2026-07-01T12:00:00.123",		/* no zone */
		"2026-07-01T12:00",			/* no seconds */
		"2026-13-01T12:00:00Z",			/* month 13 */
		"2026-00-01T12:00:00Z",			/* month 0 */
		"2026-07-32T12:00:00Z",			/* day 32 */
		"2026-07-00T12:00:00Z",
		"2026-02-29T12:00:00Z",			/* not a leap year */
		"2026-04-31T12:00:00Z",
		"2100-02-29T12:00:00Z",
		"2026-07-01T24:00:00Z",
		"2026-07-01T12:60:00Z",
		"2026-07-01 12:00:00Z",			/* no T */
		"2026-07-01t12:00:00Z",			/* Go wants 'T' */
		"2026-07-01T12:00:00z",			/* and 'Z' */
		"2026-07-01T12:00:00.Z",		/* empty fraction */
		"2026-07-01T12:00:00ZZ",
		"2026-07-01T12:00:00+0500",		/* no colon */
		"2026-07-01T12:00:00+05",
		"2026-07-01T12:00:00+05:00x",
		"2026-07-01T12:00:00+24:00",
		"2026-07-01T12:00:00 UTC",
		"2026-7-1T12:00:00Z",
		"+2026-07-01T12:00:00Z",
		"yesterday",
		"garbage garbage garbage",
		"",
	};
	time_t t;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = 12345;
		if (bcda_parse_instant(bad[i], &t) != -EINVAL)
			T_FAIL("bcda_parse_instant(%s) accepted", bad[i]);
		else if (t != 12345)
			T_FAIL("bcda_parse_instant(%s) wrote *out", bad[i]);
	}
}

/* ---- kickoff URLs -------------------------------------------------- */

static void
profile_init(struct profile *p, int version, enum bcda_endpoint ep)
{
	memset(p, 0, sizeof(*p));
	p->name = (char *)"A9994";
	p->base_url = (char *)"https://sandbox.bcda.cms.gov";
	p->api_version = version;
	p->endpoint = ep;
}

static void
check_url(const struct profile *p, const char *since, const char *want)
{
	char *url = bcda_kickoff_url(p, p->endpoint, since);

	T_EQ_STR(url, want);
	free(url);
}

T_TEST(test_kickoff_url)
{
	struct profile p;

	/* Nothing set: no query at all. */
	profile_init(&p, 2, EP_GROUP_ALL);
	check_url(&p, NULL, "https://sandbox.bcda.cms.gov/api/v2/"
	    "Group/all/$export");
	profile_init(&p, 1, EP_PATIENT);
	check_url(&p, NULL, "https://sandbox.bcda.cms.gov/api/v1/"
	    "Patient/$export");
	profile_init(&p, 3, EP_GROUP_RUNOUT);
	check_url(&p, NULL, "https://sandbox.bcda.cms.gov/api/v3/"
	    "Group/runout/$export");

	/* One comma-joined _type, never repeated _type parameters. */
	profile_init(&p, 2, EP_GROUP_ALL);
	p.types[0] = (char *)"Patient";
	p.types[1] = (char *)"Coverage";
	p.types[2] = (char *)"ExplanationOfBenefit";
	p.ntypes = 3;
	check_url(&p, NULL, "https://sandbox.bcda.cms.gov/api/v2/"
	    "Group/all/$export?_type=Patient%2CCoverage%2C"
	    "ExplanationOfBenefit");
	p.ntypes = 1;
	check_url(&p, NULL, "https://sandbox.bcda.cms.gov/api/v2/"
	    "Group/all/$export?_type=Patient");

	/* _since URL-encoded: ':' and '+' escaped. */
	check_url(&p, "2026-07-01T12:00:00.000+05:00",
	    "https://sandbox.bcda.cms.gov/api/v2/Group/all/$export"
	    "?_type=Patient&_since=2026-07-01T12%3A00%3A00.000%2B05%3A00");
	p.ntypes = 0;
	check_url(&p, "2026-12-09T20:44:01.705398Z",
	    "https://sandbox.bcda.cms.gov/api/v2/Group/all/$export"
	    "?_since=2026-12-09T20%3A44%3A01.705398Z");

	/* _typeFilter only on v3. */
	p.type_filter = (char *)"ExplanationOfBenefit?_tag=https://"
	    "bluebutton.cms.gov/fhir/CodeSystem/System-Type|SharedSystem";
	check_url(&p, NULL, "https://sandbox.bcda.cms.gov/api/v2/"
	    "Group/all/$export");
	p.api_version = 1;
	check_url(&p, NULL, "https://sandbox.bcda.cms.gov/api/v1/"
	    "Group/all/$export");
	p.api_version = 3;
	p.types[0] = (char *)"ExplanationOfBenefit";
	p.ntypes = 1;
	check_url(&p, "2026-07-01T12:00:00-05:00",
	    "https://sandbox.bcda.cms.gov/api/v3/Group/all/$export"
	    "?_type=ExplanationOfBenefit"
	    "&_since=2026-07-01T12%3A00%3A00-05%3A00"
	    "&_typeFilter=ExplanationOfBenefit%3F_tag%3Dhttps%3A%2F%2F"
	    "bluebutton.cms.gov%2Ffhir%2FCodeSystem%2FSystem-Type%7C"
	    "SharedSystem");

	/*
	 * BCDA decodes _typeFilter twice: '+' (an offset) is encoded once
	 * more, so the second decoding gives '+' back, not a space.
	 */
	p.ntypes = 0;
	p.type_filter = (char *)"ExplanationOfBenefit?service-date="
	    "ge2024-01-01T00:00:00+05:00";
	check_url(&p, NULL, "https://sandbox.bcda.cms.gov/api/v3/Group/all/"
	    "$export?_typeFilter=ExplanationOfBenefit%3Fservice-date%3D"
	    "ge2024-01-01T00%3A00%3A00%252B05%3A00");
	p.type_filter = NULL;

	/* The January fallback: same profile, /Group/runout. */
	profile_init(&p, 2, EP_GROUP_ALL);
	{
		char *u = bcda_kickoff_url(&p, EP_GROUP_RUNOUT, NULL);

		T_EQ_STR(u, "https://sandbox.bcda.cms.gov/api/v2/"
		    "Group/runout/$export");
		free(u);
	}

	/* A loopback test server keeps its port. */
	profile_init(&p, 2, EP_PATIENT);
	p.base_url = (char *)"http://127.0.0.1:8080";
	check_url(&p, NULL, "http://127.0.0.1:8080/api/v2/Patient/$export");
}

/* Texts from bcda-app requests.go and its response writers. */
#define OO(code, diag) "{\"resourceType\":\"OperationOutcome\",\"issue\":" \
	"[{\"severity\":\"error\",\"code\":\"" code "\",\"details\":" \
	"{\"text\":\"" diag "\"},\"diagnostics\":\"" diag "\"}]}"

T_TEST(test_job_failed_vs_hiccup)
{
	struct bcda_outcome o;

	bcda_parse_outcome(S(OO("exception", "Service encountered numerous "
	    "errors. Job failed to complete.")), &o);
	T_EQ_INT(bcda_job_failed(500, &o), 1);
	T_EQ_INT(bcda_job_failed(503, &o), 0);
	/* BCDA's own hiccups have the same shape: not terminal. */
	bcda_parse_outcome(S(OO("exception", "Error trying to fetch job. "
	    "Please try again.")), &o);
	T_EQ_INT(bcda_job_failed(500, &o), 0);
	bcda_parse_outcome(S(OO("exception", "")), &o);
	T_EQ_INT(bcda_job_failed(500, &o), 0);
	bcda_parse_outcome(S("Internal Server Error"), &o);
	T_EQ_INT(bcda_job_failed(500, &o), 0);
}

T_TEST(test_kickoff_404)
{
	struct bcda_outcome o;

	bcda_parse_outcome(S(OO("not-found", "unable to perform export "
	    "operations for this Group. No up-to-date attribution information "
	    "is available for ACOID 'A9994'. Usually this is due to awaiting "
	    "new attribution information at the beginning of a Performance "
	    "Year")), &o);
	T_EQ_INT(bcda_kickoff_404(&o), BCDA_404_ATTRIBUTION);
	bcda_parse_outcome(S(OO("not-found", "runout data is no longer "
	    "available. Runout data expires 180 days after ingestion")), &o);
	T_EQ_INT(bcda_kickoff_404(&o), BCDA_404_RUNOUT_EXPIRED);
	bcda_parse_outcome(S(OO("not-found", "failed to start job; "
	    "attribution file not found for given _since parameter.")), &o);
	T_EQ_INT(bcda_kickoff_404(&o), BCDA_404_SINCE);
	bcda_parse_outcome(S(OO("not-found", "failed to start job; "
	    "attribution file not found")), &o);
	T_EQ_INT(bcda_kickoff_404(&o), BCDA_404_OTHER);
	bcda_parse_outcome(S("404 page not found\n"), &o);
	T_EQ_INT(bcda_kickoff_404(&o), BCDA_404_OTHER);
}

#define BTASK(id, status, url, start) "{\"resource\":{\"resourceType\":" \
	"\"Task\",\"identifier\":[{\"system\":\"https://h/api/v2/jobs\"," \
	"\"value\":\"" id "\"}],\"status\":\"" status "\",\"input\":[{" \
	"\"valueString\":\"GET " url "\"}],\"executionPeriod\":{\"start\":" \
	"\"" start "\"}}}"

T_TEST(test_find_blocker)
{
	char id[16] = "";
	time_t start = 0;

	/* The oldest live job of the same version; finished ones never. */
	T_EQ_INT(bcda_find_blocker(S("{\"resourceType\":\"Bundle\","
	    "\"entry\":["
	    BTASK("7", "completed", "https://h/api/v2/Patient/$export",
	    "2026-01-01T00:00:00Z") ","
	    BTASK("9", "in-progress", "https://h/api/v2/Group/runout/$export",
	    "2026-01-02T10:00:00Z") ","
	    BTASK("8", "accepted", "https://h/api/v2/Group/all/$export",
	    "2026-01-02T09:00:00Z") ","
	    BTASK("6", "in-progress", "https://h/api/v3/Group/all/$export",
	    "2026-01-01T09:00:00Z") "]}"), 2, &start, id, sizeof(id)), 0);
	T_EQ_STR(id, "8");
	T_EQ_INT((long long)start, 1767344400LL);
	T_EQ_INT(bcda_find_blocker(S("{\"resourceType\":\"Bundle\","
	    "\"entry\":["
	    BTASK("7", "completed", "https://h/api/v2/Patient/$export",
	    "2026-01-01T00:00:00Z") "]}"), 2, &start, id, sizeof(id)),
	    -ENOENT);
	T_EQ_INT(bcda_find_blocker(S("not json"), 2, &start, id,
	    sizeof(id)), -ENOENT);
}

T_TEST(test_other_urls)
{
	struct profile p;
	char *u;

	profile_init(&p, 2, EP_GROUP_ALL);
	u = bcda_jobs_url(&p);
	T_EQ_STR(u, "https://sandbox.bcda.cms.gov/api/v2/jobs"
	    "?_status=Pending,In%20Progress,Completed");
	free(u);
	u = bcda_token_url(&p);
	T_EQ_STR(u, "https://sandbox.bcda.cms.gov/auth/token");
	free(u);
}

/* ---- manifests -------------------------------------------------------- */

#define MANIFEST_A4 \
	"{\"transactionTime\":\"2026-12-09T20:44:01.705398Z\"," \
	"\"request\":\"https://host/api/v3/Group/all/$export\"," \
	"\"requiresAccessToken\":true," \
	"\"output\":[{\"type\":\"ExplanationOfBenefit\"," \
	"\"url\":\"https://host/data/42/a1.ndjson\"}," \
	"{\"type\":\"Patient\",\"url\":\"https://host/data/42/b2.ndjson\"}]," \
	"\"error\":[{\"type\":\"OperationOutcome\"," \
	"\"url\":\"https://host/data/42/a1-error.ndjson\"}," \
	"{\"type\":\"OperationOutcome\"," \
	"\"url\":\"https://host/data/42/warnings-and-info.ndjson\"}]," \
	"\"JobID\":42}"

T_TEST(test_manifest_bcda)
{
	struct bcda_manifest m;

	T_EQ_INT(bcda_parse_manifest(S(MANIFEST_A4), &m), 0);
	T_EQ_STR(m.transaction_time, "2026-12-09T20:44:01.705398Z");
	T_EQ_INT(m.requires_token, 1);
	T_EQ_INT(m.nfiles, 4);
	if (m.nfiles == 4) {
		T_EQ_INT(m.files[0].kind, FILE_OUTPUT);
		T_EQ_STR(m.files[0].type, "ExplanationOfBenefit");
		T_EQ_STR(m.files[0].url, "https://host/data/42/a1.ndjson");
		T_EQ_INT(m.files[1].kind, FILE_OUTPUT);
		T_EQ_STR(m.files[1].type, "Patient");
		T_EQ_INT(m.files[2].kind, FILE_ERROR);
		T_EQ_STR(m.files[2].type, "OperationOutcome");
		T_EQ_STR(m.files[2].url,
		    "https://host/data/42/a1-error.ndjson");
		T_EQ_INT(m.files[3].kind, FILE_ERROR);
		T_EQ_STR(m.files[3].url,
		    "https://host/data/42/warnings-and-info.ndjson");
	}
	bcda_manifest_clear(&m);
	T_EQ_INT(m.nfiles, 0);
	T_ASSERT(m.files == NULL && m.transaction_time == NULL);
}

T_TEST(test_manifest_concatenated)
{
	struct bcda_manifest m;

	T_EQ_INT(bcda_parse_manifest(S(MANIFEST_A4 "{\"resourceType\":"
	    "\"OperationOutcome\",\"issue\":[]}"), &m), 0);
	T_EQ_INT(m.nfiles, 4);
	bcda_manifest_clear(&m);
	T_EQ_INT(bcda_parse_manifest(S(MANIFEST_A4 "\n" MANIFEST_A4), &m), 0);
	T_EQ_INT(m.nfiles, 4);
	bcda_manifest_clear(&m);
}

T_TEST(test_manifest_optional)
{
	struct bcda_manifest m;

	/* No error[], no requiresAccessToken (which then means true). */
	T_EQ_INT(bcda_parse_manifest(S("{\"transactionTime\":"
	    "\"2026-07-01T12:00:00-05:00\",\"output\":[{\"type\":\"Patient\","
	    "\"url\":\"https://h/data/1/p.ndjson\"}]}"), &m), 0);
	T_EQ_INT(m.nfiles, 1);
	T_EQ_INT(m.requires_token, 1);
	bcda_manifest_clear(&m);

	/* An empty export is a valid one. */
	T_EQ_INT(bcda_parse_manifest(S("{\"transactionTime\":"
	    "\"2026-07-01T12:00:00Z\",\"output\":[],\"error\":[]}"), &m), 0);
	T_EQ_INT(m.nfiles, 0);
	bcda_manifest_clear(&m);

	T_EQ_INT(bcda_parse_manifest(S("{\"transactionTime\":"
	    "\"2026-07-01T12:00:00Z\",\"requiresAccessToken\":false,"
	    "\"output\":[]}"), &m), 0);
	T_EQ_INT(m.requires_token, 0);
	bcda_manifest_clear(&m);
	T_EQ_INT(bcda_parse_manifest(S("{\"transactionTime\":"
	    "\"2026-07-01T12:00:00Z\",\"requiresAccessToken\":true,"
	    "\"output\":[]}"), &m), 0);
	T_EQ_INT(m.requires_token, 1);
	bcda_manifest_clear(&m);
}

T_TEST(test_manifest_bad)
{
	static const char *const bad[] = {
		/* no transactionTime */
		"{\"output\":[{\"type\":\"Patient\",\"url\":\"https://h/p\"}]}",
		/* transactionTime not an instant */
		"{\"transactionTime\":\"2026-07-01\",\"output\":[]}",
		"{\"transactionTime\":1782907200,\"output\":[]}",
		/* an output entry without url, or without type */
		"{\"transactionTime\":\"2026-07-01T12:00:00Z\",\"output\":"
		    "[{\"type\":\"Patient\",\"url\":\"https://h/p\"},"
		    "{\"type\":\"Patient\"}]}",
		"{\"transactionTime\":\"2026-07-01T12:00:00Z\",\"output\":"
		    "[{\"url\":\"https://h/p\"}]}",
		"{\"transactionTime\":\"2026-07-01T12:00:00Z\",\"output\":"
		    "[{\"type\":\"Patient\",\"url\":42}]}",
		/* an error entry without url */
		"{\"transactionTime\":\"2026-07-01T12:00:00Z\",\"output\":[],"
		    "\"error\":[{\"type\":\"OperationOutcome\"}]}",
		/* output missing or not an array, error not an array */
		"{\"transactionTime\":\"2026-07-01T12:00:00Z\"}",
		"{\"transactionTime\":\"2026-07-01T12:00:00Z\",\"output\":{}}",
		"{\"transactionTime\":\"2026-07-01T12:00:00Z\",\"output\":[],"
		    "\"error\":{}}",
		"[]",
		"",
		"not json",
		"{\"transactionTime\":\"2026-07-01T12:00:00Z\",\"output\":[",
	};
	struct bcda_manifest m;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = bcda_parse_manifest(bad[i], strlen(bad[i]), &m);

		if (rc >= 0)
			T_FAIL("bcda_parse_manifest(%s) accepted", bad[i]);
		if (m.nfiles != 0 || m.files != NULL ||
		    m.transaction_time != NULL)
			T_FAIL("bcda_parse_manifest(%s) left data", bad[i]);
		bcda_manifest_clear(&m);
	}
}

/* ---- OperationOutcomes ------------------------------------------------ */

T_TEST(test_outcome)
{
	struct bcda_outcome o;

	bcda_parse_outcome(S("{\"resourceType\":\"OperationOutcome\","
	    "\"issue\":[{\"severity\":\"error\",\"code\":\"exception\","
	    "\"details\":{\"coding\":[{\"code\":\"Internal Error\"}],"
	    "\"text\":\"from details\"},\"diagnostics\":\"Service encountered "
	    "numerous errors. Job failed to complete.\"}]}"), &o);
	T_EQ_INT(o.present, 1);
	T_EQ_STR(o.code, "exception");
	T_EQ_STR(o.severity, "error");
	T_EQ_STR(o.text, "Service encountered numerous errors. Job failed to "
	    "complete.");

	/* details.text when there are no diagnostics */
	bcda_parse_outcome(S("{\"resourceType\":\"OperationOutcome\","
	    "\"issue\":[{\"severity\":\"warning\",\"code\":\"processing\","
	    "\"details\":{\"text\":\"Default System-Type behavior\"}}]}"), &o);
	T_EQ_INT(o.present, 1);
	T_EQ_STR(o.code, "processing");
	T_EQ_STR(o.severity, "warning");
	T_EQ_STR(o.text, "Default System-Type behavior");

	/* BCDA's 404 for an expired job: two objects, the first counts. */
	bcda_parse_outcome(S("{\"resourceType\":\"OperationOutcome\",\"issue\":"
	    "[{\"severity\":\"error\",\"code\":\"not-found\",\"diagnostics\":"
	    "\"Job Expired\"}]}{\"resourceType\":\"OperationOutcome\",\"issue\":"
	    "[{\"severity\":\"error\",\"code\":\"exception\",\"diagnostics\":"
	    "\"second\"}]}"), &o);
	T_EQ_INT(o.present, 1);
	T_EQ_STR(o.code, "not-found");
	T_EQ_STR(o.text, "Job Expired");

	/* No issue text at all. */
	bcda_parse_outcome(S("{\"resourceType\":\"OperationOutcome\","
	    "\"issue\":[{\"severity\":\"error\",\"code\":\"transient\"}]}"),
	    &o);
	T_EQ_INT(o.present, 1);
	T_EQ_STR(o.code, "transient");
	T_EQ_STR(o.text, "");
}

T_TEST(test_outcome_not_oo)
{
	static const char *const bad[] = {
		"{\"resourceType\":\"Bundle\",\"issue\":[{\"code\":\"x\"}]}",
		"{\"issue\":[{\"code\":\"x\"}]}",
		"{\"resourceType\":\"OperationOutcome\",\"issue\":[]}",
		"{\"resourceType\":\"OperationOutcome\"}",
		"Unauthorized",
		"404 page not found\n",
		"[]",
		"",
	};
	struct bcda_outcome o;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&o, 'x', sizeof(o));
		bcda_parse_outcome(bad[i], strlen(bad[i]), &o);
		if (o.present)
			T_FAIL("bcda_parse_outcome(%s) found an outcome",
			    bad[i]);
		if (o.text[0] != '\0' || o.code[0] != '\0')
			T_FAIL("bcda_parse_outcome(%s) left text", bad[i]);
	}
	bcda_parse_outcome(NULL, 0, &o);
	T_EQ_INT(o.present, 0);
}

T_TEST(test_outcome_sanitised)
{
	struct bcda_outcome o;
	size_t i;
	char big[600];
	int n;

	/* A server must not be able to forge log lines or terminal codes. */
	bcda_parse_outcome(S("{\"resourceType\":\"OperationOutcome\","
	    "\"issue\":[{\"severity\":\"err\\nor\",\"code\":\"a\\u001b[31m\","
	    "\"diagnostics\":\"line1\\nfake: log line\\r\\tx\\u007f"
	    "caf\\u00e9\"}]}"), &o);
	T_EQ_INT(o.present, 1);
	for (i = 0; o.text[i] != '\0'; i++)
		if (o.text[i] < 0x20 || o.text[i] >= 0x7f)
			T_FAIL("text[%zu] = 0x%02x", i, (unsigned char)o.text[i]);
	T_ASSERT(strchr(o.code, '\033') == NULL);
	T_ASSERT(strchr(o.severity, '\n') == NULL);
	T_ASSERT(strncmp(o.text, "line1?fake: log line??", 22) == 0);

	/* Long text is cut, NUL-terminated. */
	n = snprintf(big, sizeof(big), "{\"resourceType\":\"OperationOutcome\","
	    "\"issue\":[{\"code\":\"");
	for (i = 0; i < 100; i++)
		big[n++] = 'c';
	n += snprintf(big + n, sizeof(big) - (size_t)n, "\",\"diagnostics\":\"");
	for (i = 0; i < 300; i++)
		big[n++] = 'd';
	n += snprintf(big + n, sizeof(big) - (size_t)n, "\"}]}");
	bcda_parse_outcome(big, (size_t)n, &o);
	T_EQ_INT(o.present, 1);
	T_EQ_INT(strlen(o.code), sizeof(o.code) - 1);
	T_EQ_INT(strlen(o.text), sizeof(o.text) - 1);
}

/* ---- finding a lost job ----------------------------------------------- */

#define TASK(id, status, url) \
	"{\"fullUrl\":\"\",\"resource\":{\"resourceType\":\"Task\"," \
	"\"id\":\"" id "\",\"status\":\"" status "\",\"intent\":\"order\"," \
	"\"identifier\":[{\"use\":\"official\"," \
	"\"system\":\"https://sandbox.bcda.cms.gov/api/v2/jobs\"," \
	"\"value\":\"" id "\"}]," \
	"\"input\":[{\"type\":{\"text\":\"BULK FHIR Export\"}," \
	"\"valueString\":\"GET " url "\"}]," \
	"\"executionPeriod\":{\"start\":\"2026-12-09T20:44:01Z\"}}}"

#define BUNDLE(...) \
	"{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":3," \
	"\"entry\":[" __VA_ARGS__ "]}"

#define KURL "https://sandbox.bcda.cms.gov/api/v2/Group/all/$export" \
	"?_type=Patient%2CCoverage&_since=2026-07-01T12%3A00%3A00.000%2B05%3A00"

T_TEST(test_find_job)
{
	char *u;

	/* A Pending job (Task status accepted). */
	u = bcda_find_job(S(BUNDLE(
	    TASK("40", "completed", KURL) ","
	    TASK("41", "in-progress", "https://sandbox.bcda.cms.gov/api/v2/"
	        "Patient/$export") ","
	    TASK("42", "accepted", KURL))), KURL, 0);
	T_EQ_STR(u, "https://sandbox.bcda.cms.gov/api/v2/jobs/42");
	free(u);

	/* An In Progress job, URL written unencoded by the server. */
	u = bcda_find_job(S(BUNDLE(
	    TASK("43", "in-progress", "https://sandbox.bcda.cms.gov/api/v2/"
	        "Group/all/$export?_type=Patient,Coverage"
	        "&_since=2026-07-01T12:00:00.000%2B05:00"))), KURL, 0);
	T_EQ_STR(u, "https://sandbox.bcda.cms.gov/api/v2/jobs/43");
	free(u);

	/* $export vs %24export */
	u = bcda_find_job(S(BUNDLE(
	    TASK("44", "accepted", "https://sandbox.bcda.cms.gov/api/v2/"
	        "Group/all/%24export?_type=Patient%2CCoverage"
	        "&_since=2026-07-01T12%3A00%3A00.000%2B05%3A00"))), KURL, 0);
	T_EQ_STR(u, "https://sandbox.bcda.cms.gov/api/v2/jobs/44");
	free(u);

	/* A completed job that started after the kickoff was sent is ours. */
	u = bcda_find_job(S(BUNDLE(
	    "{\"resource\":{\"status\":\"completed\",\"identifier\":[{"
	    "\"system\":\"https://sandbox.bcda.cms.gov/api/v2/jobs\","
	    "\"value\":\"52\"}],\"input\":[{\"valueString\":\"GET " KURL
	    "\"}],\"executionPeriod\":{\"start\":\"2026-11-26T05:00:00Z\"}}}")),
	    KURL, 1795669200);	/* 2026-11-26T05:00:00Z */
	T_EQ_STR(u, "https://sandbox.bcda.cms.gov/api/v2/jobs/52");
	free(u);
	/* The same, started before: an older export of the same URL. */
	u = bcda_find_job(S(BUNDLE(
	    "{\"resource\":{\"status\":\"completed\",\"identifier\":[{"
	    "\"system\":\"https://sandbox.bcda.cms.gov/api/v2/jobs\","
	    "\"value\":\"53\"}],\"input\":[{\"valueString\":\"GET " KURL
	    "\"}],\"executionPeriod\":{\"start\":\"2026-11-26T04:59:59Z\"}}}")),
	    KURL, 1795669200);
	T_ASSERT(u == NULL);
	free(u);

	/* Completed before our kickoff, failed or cancelled: not ours. */
	u = bcda_find_job(S(BUNDLE(
	    TASK("45", "completed", KURL) ","
	    TASK("46", "failed", KURL) ","
	    TASK("47", "cancelled", KURL))), KURL,
	    1800000000);	/* 2027, after the Tasks' start */
	T_ASSERT(u == NULL);
	free(u);

	/* Another request: no match. */
	u = bcda_find_job(S(BUNDLE(
	    TASK("48", "accepted", "https://sandbox.bcda.cms.gov/api/v2/"
	        "Group/all/$export?_type=Patient") ","
	    TASK("49", "accepted", "https://sandbox.bcda.cms.gov/api/v3/"
	        "Group/all/$export?_type=Patient%2CCoverage"
	        "&_since=2026-07-01T12%3A00%3A00.000%2B05%3A00"))), KURL, 0);
	T_ASSERT(u == NULL);
	free(u);

	/* Not "GET <url>" */
	u = bcda_find_job(S(BUNDLE(TASK("50", "accepted", "") ",")
	    "{\"resource\":{\"status\":\"accepted\",\"identifier\":[{"
	    "\"system\":\"https://sandbox.bcda.cms.gov/api/v2/jobs\","
	    "\"value\":\"51\"}],\"input\":[{\"valueString\":\"" KURL "\"}]}}]}"),
	    KURL, 0);
	T_ASSERT(u == NULL);
	free(u);

	/* Empty, garbage, no entries. */
	T_ASSERT(bcda_find_job(S(BUNDLE()), KURL, 0) == NULL);
	T_ASSERT(bcda_find_job(S("{\"resourceType\":\"Bundle\"}"), KURL, 0) ==
	    NULL);
	T_ASSERT(bcda_find_job(S("not json"), KURL, 0) == NULL);
	T_ASSERT(bcda_find_job(S(""), KURL, 0) == NULL);
	/* BCDA's 404 when there are no jobs at all is an OperationOutcome. */
	T_ASSERT(bcda_find_job(S("{\"resourceType\":\"OperationOutcome\","
	    "\"issue\":[]}"), KURL, 0) == NULL);
}

/* ---- where the token may go -------------------------------------------- */

T_TEST(test_url_trusted)
{
	static const struct {
		const char	*base, *url;
		int		 ok;
	} cases[] = {
#define B "https://sandbox.bcda.cms.gov"
		{ B, B "/api/v2/jobs/42", 1 },
		{ B, B "/data/42/a1.ndjson", 1 },
		{ B, "https://SANDBOX.bcda.cms.gov/data/42/a", 1 },
		{ B, "HTTPS://sandbox.bcda.cms.gov/data/42/a", 1 },
		{ B, "https://sandbox.bcda.cms.gov:443/data/42/a", 1 },
		{ "https://sandbox.bcda.cms.gov:443", B "/data/42/a", 1 },
		{ B, "https://api.bcda.cms.gov/data/42/a", 0 },
		{ B, "https://sandbox.bcda.cms.gov:8443/data/42/a", 0 },
		{ B, "http://sandbox.bcda.cms.gov/data/42/a", 0 },
		{ B, "http://sandbox.bcda.cms.gov:443/data/42/a", 0 },
		{ B, "https://sandbox.bcda.cms.gov.evil.example/x", 0 },
		{ B, "https://evil.example/sandbox.bcda.cms.gov/x", 0 },
		{ B, "https://sandbox.bcda.cms.gov@evil.example/x", 0 },
		{ B, "https://sandbox.bcda.cms.gov:443@evil.example/x", 0 },
		{ B, "https://user:pw@evil.example/x", 0 },
		{ B, "https://evil.example#@sandbox.bcda.cms.gov/x", 0 },
		{ B, "https://evil.example?@sandbox.bcda.cms.gov/x", 0 },
		{ B, "http://127.0.0.1/x", 0 },
		{ B, "ftp://sandbox.bcda.cms.gov/x", 0 },
		{ B, "//sandbox.bcda.cms.gov/x", 0 },
		{ B, "/data/42/a", 0 },
		{ B, "sandbox.bcda.cms.gov/data", 0 },
		{ B, "", 0 },
		{ B, "garbage", 0 },
		{ B, "https://", 0 },
#undef B
		/* http only to the same loopback origin */
		{ "http://127.0.0.1:8080", "http://127.0.0.1:8080/data/1", 1 },
		{ "http://127.0.0.1:8080", "http://127.0.0.1:8081/data/1", 0 },
		{ "http://127.0.0.1:8080", "http://127.0.0.2:8080/data/1", 0 },
		{ "http://127.0.0.1:8080", "https://127.0.0.1:8080/data/1", 0 },
		{ "http://127.0.0.1:8080", "http://evil.example:8080/data", 0 },
		{ "http://127.0.0.1:8080", "http://127.0.0.1:8080@evil.example/", 0 },
		{ "http://[::1]:8080", "http://[::1]:8080/data/1", 1 },
		{ "http://localhost:8080", "http://localhost:8080/data/1", 1 },
		{ "http://10.0.0.1:8080", "http://10.0.0.1:8080/data/1", 0 },
		{ "http://bcda.example", "http://bcda.example/data/1", 0 },
		/* a name is not an address, whatever it starts with */
		{ "http://127.0.0.1.nip.io", "http://127.0.0.1.nip.io/d", 0 },
		{ "https://127.0.0.1:8443", "https://127.0.0.1:8443/d", 1 },
		/* a bad base trusts nothing */
		{ "", "https://sandbox.bcda.cms.gov/x", 0 },
		{ "garbage", "https://sandbox.bcda.cms.gov/x", 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = bcda_url_trusted(cases[i].base, cases[i].url);

		if (got != cases[i].ok)
			T_FAIL("bcda_url_trusted(%s, %s) = %d, expected %d",
			    cases[i].base, cases[i].url, got, cases[i].ok);
	}
}

T_MAIN("bcda",
    T_CASE(test_token_string_expires),
    T_CASE(test_token_number_expires),
    T_CASE(test_token_missing_expires),
    T_CASE(test_token_bad),
    T_CASE(test_progress),
    T_CASE(test_instant_valid),
    T_CASE(test_instant_invalid),
    T_CASE(test_job_failed_vs_hiccup),
    T_CASE(test_kickoff_404),
    T_CASE(test_find_blocker),
    T_CASE(test_kickoff_url),
    T_CASE(test_other_urls),
    T_CASE(test_manifest_bcda),
    T_CASE(test_manifest_concatenated),
    T_CASE(test_manifest_optional),
    T_CASE(test_manifest_bad),
    T_CASE(test_outcome),
    T_CASE(test_outcome_not_oo),
    T_CASE(test_outcome_sanitised),
    T_CASE(test_find_job),
    T_CASE(test_url_trusted))
