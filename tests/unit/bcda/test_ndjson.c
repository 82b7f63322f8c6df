/*
 * Unit tests for lib/bcda/ndjson.c: streaming NDJSON validation.
 */
#include <errno.h>
#include <stdint.h>

#include "bcda/ndjson.h"
#include "t.h"

#define SHA256_EMPTY \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* What the line callback saw. */
struct seen {
	uint64_t	 calls;
	uint64_t	 fail_at;	/* 1-based call that fails, or 0 */
	int		 fail_rc;
	const char	*want_type;	/* checked on every object if set */
	int		 bad_type;
	json_t		*kept;		/* first object, json_incref'd */
};

static int
on_line(json_t *obj, void *arg)
{
	struct seen *s = arg;
	const char *rt;

	s->calls++;
	if (s->fail_at != 0 && s->calls == s->fail_at)
		return s->fail_rc;
	rt = json_string_value(json_object_get(obj, "resourceType"));
	if (s->want_type != NULL && (rt == NULL ||
	    strcmp(rt, s->want_type) != 0))
		s->bad_type++;
	if (s->kept == NULL)
		s->kept = json_incref(obj);
	return 0;
}

/*
 * Feeds len bytes in chunks of chunk (0 = all at once) to a validator
 * expecting type, then finishes.  Returns the first error; *out keeps the
 * validator for the caller to inspect and free.
 */
static int
run(const char *type, const void *in, size_t len, size_t chunk,
    struct seen *s, struct ndjson **out)
{
	const char *p = in;
	struct ndjson *nd;
	size_t off = 0, n;
	int rc = 0, frc;

	*out = NULL;
	if ((nd = ndjson_new(type, on_line, s)) == NULL) {
		T_FAIL("ndjson_new failed");
		return -ENOMEM;
	}
	if (chunk == 0)
		chunk = len ? len : 1;
	while (off < len) {
		n = len - off < chunk ? len - off : chunk;
		if ((rc = ndjson_feed(nd, p + off, n)) < 0)
			break;
		off += n;
	}
	frc = ndjson_finish(nd);
	/* finish reports the same sticky error feed did. */
	if (rc != 0)
		T_EQ_INT(frc, rc);
	*out = nd;
	return frc;
}

/* Runs a string through a validator; returns the error and its line. */
static int
check(const char *type, const char *in, size_t chunk, uint64_t *line,
    uint64_t *lines)
{
	struct seen s = { 0 };
	struct ndjson *nd;
	int rc;

	rc = run(type, in, strlen(in), chunk, &s, &nd);
	if (nd == NULL)
		return rc;
	*line = ndjson_error_line(nd);
	*lines = ndjson_lines(nd);
	T_EQ_INT(s.calls, ndjson_lines(nd));
	/* Feeding stops at the first error. */
	if (rc == 0)
		T_EQ_INT(ndjson_bytes(nd), strlen(in));
	else
		T_ASSERT(ndjson_bytes(nd) <= strlen(in));
	json_decref(s.kept);
	ndjson_free(nd);
	return rc;
}

struct fixture {
	const char	*path;
	const char	*type;
	uint64_t	 lines;
	uint64_t	 bytes;
	const char	*sha;
};

static const struct fixture fixtures[] = {
	{ "bcda/Patient.ndjson", "Patient", 100, 106838,
	  "5c6db963aa27241bd3a6add7e82e35cca55984795c89890e7cb4c68b11871307" },
	{ "bcda/Coverage.ndjson", "Coverage", 400, 3202488,
	  "2d59218068aa8d567b60eb73e24765af0896b006f24c1250d4cd09a3e7852887" },
	{ "bfd-v2/ExplanationOfBenefit.ndjson", "ExplanationOfBenefit", 8,
	  140240,
	  "a90273327e519181ce76489d0d3d8ea860a16bb6cff62c9635259e152aa2ec7e" },
	{ "bfd-v2/Patient.ndjson", "Patient", 1, 6559,
	  "2ea779e0f6eea0f415f1a54abe6c477c5d28750aa0f2dfc573319ddd416e0740" },
	{ "bfd-v2/Coverage.ndjson", "Coverage", 4, 48013,
	  "eb883a9c46868ad0aaf8b4cb7a0eec06c52e077b8aa3bc2b216c914efc67fe0d" },
	{ "bfd-v2/Claim.ndjson", "Claim", 2, 9804,
	  "0d631acdd070087dcd9a46adbc6b7d433e956aa2072158f3ac2b492f3e939972" },
	{ "bfd-v2/ClaimResponse.ndjson", "ClaimResponse", 2, 4237,
	  "fc3b229b9ac9463afc8d45cc5e2da1bd0a5ebf048bac76f6ac4ef725344fd9f7" },
	/* One Claim line with no final newline. */
	{ "bcda/gzip/test_no_encoding.ndjson", "Claim", 1, 2967,
	  "6a0f9ee6a9dc1764a718f6c509d5758c315789ad5e4cfba5c39a3343fe6eca8f" },
};

static void
check_fixture(const struct fixture *f, const char *type, size_t chunk)
{
	struct seen s = { 0 };
	struct ndjson *nd;
	char *data;
	size_t len = 0;
	int before = t_failed_checks;

	if ((data = t_read_fixture(f->path, &len)) == NULL)
		return;
	s.want_type = f->type;
	T_EQ_INT(run(type, data, len, chunk, &s, &nd), 0);
	if (nd != NULL) {
		T_EQ_INT(ndjson_lines(nd), f->lines);
		T_EQ_INT(ndjson_bytes(nd), f->bytes);
		T_EQ_STR(ndjson_sha256(nd), f->sha);
		T_EQ_INT(ndjson_error_line(nd), 0);
		ndjson_free(nd);
	}
	T_EQ_INT(s.calls, f->lines);
	T_EQ_INT(s.bad_type, 0);
	if (t_failed_checks != before)
		fprintf(stderr, "  (%s, chunk %zu)\n", f->path, chunk);
	json_decref(s.kept);
	free(data);
}

T_TEST(test_fixtures_whole)
{
	size_t i;

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		check_fixture(&fixtures[i], fixtures[i].type, 0);
}

T_TEST(test_fixtures_4096)
{
	size_t i;

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		check_fixture(&fixtures[i], fixtures[i].type, 4096);
}

T_TEST(test_fixtures_7)
{
	size_t i;

	/* Lines of up to 32 KiB arrive in thousands of 7-byte pieces. */
	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		check_fixture(&fixtures[i], fixtures[i].type, 7);
}

T_TEST(test_fixtures_1)
{
	size_t i;

	/* Byte at a time, for the smaller files. */
	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		if (fixtures[i].bytes < 200000)
			check_fixture(&fixtures[i], fixtures[i].type, 1);
}

T_TEST(test_any_type)
{
	/* NULL accepts any resourceType. */
	check_fixture(&fixtures[2], NULL, 4096);
	check_fixture(&fixtures[6], NULL, 0);
}

T_TEST(test_wrong_fixture_type)
{
	struct seen s = { 0 };
	struct ndjson *nd;
	char *data;
	size_t len = 0;

	if ((data = t_read_fixture("bcda/Patient.ndjson", &len)) == NULL)
		return;
	T_EQ_INT(run("Coverage", data, len, 4096, &s, &nd), NDJSON_ETYPE);
	if (nd != NULL) {
		T_EQ_INT(ndjson_error_line(nd), 1);
		T_EQ_INT(ndjson_lines(nd), 0);
		/* Bytes and digest still cover everything fed. */
		T_EQ_INT(ndjson_bytes(nd), 4096);
		T_EQ_INT(strlen(ndjson_sha256(nd)), 64);
		ndjson_free(nd);
	}
	T_EQ_INT(s.calls, 0);
	free(data);
}

T_TEST(test_empty_input)
{
	struct seen s = { 0 };
	struct ndjson *nd;

	T_EQ_INT(run("Patient", "", 0, 0, &s, &nd), 0);
	if (nd == NULL)
		return;
	T_EQ_INT(ndjson_lines(nd), 0);
	T_EQ_INT(ndjson_bytes(nd), 0);
	T_EQ_STR(ndjson_sha256(nd), SHA256_EMPTY);
	T_EQ_INT(ndjson_error_line(nd), 0);
	/* Finishing twice is harmless. */
	T_EQ_INT(ndjson_finish(nd), 0);
	T_EQ_STR(ndjson_sha256(nd), SHA256_EMPTY);
	ndjson_free(nd);
	ndjson_free(NULL);
}

#define P	"{\"resourceType\":\"Patient\",\"id\":\"x\"}"
#define C	"{\"resourceType\":\"Coverage\",\"id\":\"y\"}"

T_TEST(test_line_endings)
{
	static const size_t chunks[] = { 0, 1, 2, 5 };
	uint64_t line = 99, lines = 99;
	size_t i;

	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		T_EQ_INT(check("Patient", P, chunks[i], &line, &lines), 0);
		T_EQ_INT(lines, 1);
		T_EQ_INT(check("Patient", P "\n", chunks[i], &line, &lines), 0);
		T_EQ_INT(lines, 1);
		T_EQ_INT(check("Patient", P "\n" P, chunks[i], &line, &lines),
		    0);
		T_EQ_INT(lines, 2);
		T_EQ_INT(check("Patient", P "\r\n" P "\r\n", chunks[i], &line,
		    &lines), 0);
		T_EQ_INT(lines, 2);
		/* Whitespace around the value is still one value. */
		T_EQ_INT(check("Patient", " " P "\t\n", chunks[i], &line,
		    &lines), 0);
		T_EQ_INT(lines, 1);
	}
}

T_TEST(test_empty_lines)
{
	uint64_t line = 0, lines = 0;

	T_EQ_INT(check("Patient", "\n", 0, &line, &lines), NDJSON_EEMPTY);
	T_EQ_INT(line, 1);
	T_EQ_INT(check("Patient", P "\n\n" P "\n", 0, &line, &lines),
	    NDJSON_EEMPTY);
	T_EQ_INT(line, 2);
	T_EQ_INT(lines, 1);
	T_EQ_INT(check("Patient", P "\n" P "\n\n", 1, &line, &lines),
	    NDJSON_EEMPTY);
	T_EQ_INT(line, 3);
	T_EQ_INT(lines, 2);
	T_EQ_INT(check("Patient", "\n" P, 3, &line, &lines), NDJSON_EEMPTY);
	T_EQ_INT(line, 1);
	/* A line of only a carriage return or blanks is not JSON. */
	T_EQ_INT(check("Patient", P "\n\r\n", 0, &line, &lines), NDJSON_EJSON);
	T_EQ_INT(line, 2);
	T_EQ_INT(check("Patient", P "\n   \n", 0, &line, &lines),
	    NDJSON_EJSON);
	T_EQ_INT(line, 2);
}

T_TEST(test_wrong_type)
{
	static const size_t chunks[] = { 0, 1, 3, 4096 };
	uint64_t line = 0, lines = 0;
	size_t i;

	for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		T_EQ_INT(check("Patient", P "\n" P "\n" C "\n" P "\n",
		    chunks[i], &line, &lines), NDJSON_ETYPE);
		T_EQ_INT(line, 3);
		T_EQ_INT(lines, 2);
		/* A wrong last line without a newline, found at finish. */
		T_EQ_INT(check("Patient", P "\n" C, chunks[i], &line, &lines),
		    NDJSON_ETYPE);
		T_EQ_INT(line, 2);
	}
	/* Missing, non-string, nested-only, or a prefix of the type. */
	T_EQ_INT(check("Patient", "{\"id\":\"x\"}", 0, &line, &lines),
	    NDJSON_ETYPE);
	T_EQ_INT(check("Patient", "{\"resourceType\":7}", 0, &line, &lines),
	    NDJSON_ETYPE);
	T_EQ_INT(check("Patient", "{\"resourceType\":null}", 0, &line,
	    &lines), NDJSON_ETYPE);
	T_EQ_INT(check("Patient", "{\"a\":{\"resourceType\":\"Patient\"}}", 0,
	    &line, &lines), NDJSON_ETYPE);
	T_EQ_INT(check("Patient", "{\"resourceType\":\"Patien\"}", 0, &line,
	    &lines), NDJSON_ETYPE);
	T_EQ_INT(check("Patient", "{\"resourceType\":\"patient\"}", 0, &line,
	    &lines), NDJSON_ETYPE);
	/* With no expected type a string is still required. */
	T_EQ_INT(check(NULL, P "\n" C "\n", 0, &line, &lines), 0);
	T_EQ_INT(lines, 2);
	T_EQ_INT(check(NULL, P "\n{\"id\":1}\n", 0, &line, &lines),
	    NDJSON_ETYPE);
	T_EQ_INT(line, 2);
}

T_TEST(test_bad_json)
{
	static const char *const bad[] = {
		"{",
		"{\"resourceType\":\"Patient\"",
		"{\"resourceType\":\"Patient\",}",
		"{'resourceType':'Patient'}",
		"resourceType",
		P P,
		P " " P,
		P ",",
		P "x",
		"{\"resourceType\":\"Pat\x01ient\"}",
		"{\"resourceType\":\"Patient\",\"x\":\"\xff\"}",
	};
	uint64_t line = 0, lines = 0;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char in[512];

		snprintf(in, sizeof(in), "%s\n%s\n%s\n", P, bad[i], P);
		if (check("Patient", in, 0, &line, &lines) != NDJSON_EJSON)
			T_FAIL("bad line %zu accepted or misreported", i);
		T_EQ_INT(line, 2);
		T_EQ_INT(lines, 1);
	}
	/* A NUL byte inside a line. */
	{
		static const char in[] =
		    P "\n{\"resourceType\":\"Patient\"}\0\n";
		struct seen s = { 0 };
		struct ndjson *nd;

		T_EQ_INT(run("Patient", in, sizeof(in) - 1, 0, &s, &nd),
		    NDJSON_EJSON);
		if (nd != NULL) {
			T_EQ_INT(ndjson_error_line(nd), 2);
			ndjson_free(nd);
		}
		json_decref(s.kept);
	}
}

T_TEST(test_not_object)
{
	static const char *const bad[] = {
		"[" P "]", "[]", "\"Patient\"", "1", "null", "true",
	};
	uint64_t line = 0, lines = 0;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (check("Patient", bad[i], 0, &line, &lines) !=
		    NDJSON_ENOTOBJ)
			T_FAIL("line %zu not reported as non-object", i);
		T_EQ_INT(line, 1);
	}
}

T_TEST(test_callback_error)
{
	struct seen s = { 0 };
	struct ndjson *nd;
	const char *in = P "\n" P "\n" P "\n" P "\n";

	s.fail_at = 3;
	s.fail_rc = -ECANCELED;
	T_EQ_INT(run("Patient", in, strlen(in), 0, &s, &nd), -ECANCELED);
	if (nd == NULL)
		return;
	T_EQ_INT(ndjson_error_line(nd), 3);
	T_EQ_INT(ndjson_lines(nd), 2);
	T_EQ_INT(s.calls, 3);
	/* Sticky: later input is not looked at. */
	T_EQ_INT(ndjson_feed(nd, P "\n", strlen(P) + 1), -ECANCELED);
	T_EQ_INT(ndjson_finish(nd), -ECANCELED);
	T_EQ_INT(s.calls, 3);
	ndjson_free(nd);
	json_decref(s.kept);
}

T_TEST(test_kept_object)
{
	struct seen s = { 0 };
	struct ndjson *nd;
	const char *in = "{\"resourceType\":\"Patient\",\"id\":\"first\"}\n" P;

	/* A callback may keep an object with json_incref. */
	T_EQ_INT(run("Patient", in, strlen(in), 4, &s, &nd), 0);
	ndjson_free(nd);
	T_ASSERT(s.kept != NULL);
	T_EQ_STR(json_string_value(json_object_get(s.kept, "id")), "first");
	json_decref(s.kept);
}

T_TEST(test_too_long)
{
	struct ndjson *nd;
	char *chunk;
	size_t sz = 1024 * 1024, fed = 0;
	int rc = 0;

	/* A line that never ends is refused once it passes the cap. */
	if ((chunk = malloc(sz)) == NULL)
		abort();
	memset(chunk, ' ', sz);
	if ((nd = ndjson_new("Patient", NULL, NULL)) == NULL) {
		T_FAIL("ndjson_new");
		free(chunk);
		return;
	}
	while (fed <= NDJSON_MAX_LINE && rc == 0) {
		rc = ndjson_feed(nd, chunk, sz);
		fed += sz;
	}
	T_EQ_INT(rc, NDJSON_ELONG);
	T_EQ_INT(fed, NDJSON_MAX_LINE + sz);
	T_EQ_INT(ndjson_error_line(nd), 1);
	T_EQ_INT(ndjson_finish(nd), NDJSON_ELONG);
	ndjson_free(nd);
	free(chunk);
}

T_TEST(test_strerror)
{
	static const int codes[] = {
		NDJSON_EJSON, NDJSON_ENOTOBJ, NDJSON_ETYPE, NDJSON_EEMPTY,
		NDJSON_ELONG,
	};
	size_t i, j;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		T_ASSERT(ndjson_strerror(codes[i]) != NULL);
		for (j = 0; j < i; j++)
			T_ASSERT(strcmp(ndjson_strerror(codes[i]),
			    ndjson_strerror(codes[j])) != 0);
	}
	T_EQ_STR(ndjson_strerror(-ENOMEM), strerror(ENOMEM));
}

static json_t *
parse(const char *s)
{
	json_error_t jerr;
	json_t *j = json_loads(s, 0, &jerr);

	if (j == NULL)
		T_FAIL("test JSON does not parse: %s", jerr.text);
	return j;
}

T_TEST(test_severity)
{
	uint64_t c[4] = { 0, 0, 0, 0 };
	json_t *j;

	/* A BCDA error-file line (bcdaworker appendErrorToFile). */
	j = parse("{\"resourceType\":\"OperationOutcome\",\"issue\":"
	    "[{\"severity\":\"error\",\"code\":\"not-found\",\"diagnostics\":"
	    "\"Error retrieving ExplanationOfBenefit for beneficiary MBI "
	    "1S00E00AA00 in ACO 0c527d2e-2e8a-4808-b11d-0fa06baf8254\"}]}");
	ndjson_count_severity(j, c);
	json_decref(j);
	T_EQ_INT(c[0], 0);
	T_EQ_INT(c[1], 1);
	T_EQ_INT(c[2], 0);
	T_EQ_INT(c[3], 0);

	/* v3 warnings-and-info.ndjson; counts add up across lines. */
	j = parse("{\"resourceType\":\"OperationOutcome\",\"issue\":"
	    "[{\"severity\":\"warning\",\"code\":\"processing\",\"details\":"
	    "{\"text\":\"Default System-Type behavior includes only claims "
	    "from NCH and DDPS in this export.\"}}]}");
	ndjson_count_severity(j, c);
	json_decref(j);
	T_EQ_INT(c[1], 1);
	T_EQ_INT(c[2], 1);

	/* Several issues; unknown, missing and non-string ones ignored. */
	j = parse("{\"resourceType\":\"OperationOutcome\",\"issue\":["
	    "{\"severity\":\"fatal\"},{\"severity\":\"information\"},"
	    "{\"severity\":\"information\"},{\"severity\":\"Error\"},"
	    "{\"severity\":\"bogus\"},{\"code\":\"x\"},{\"severity\":1},"
	    "\"error\",{\"severity\":\"error\"}]}");
	ndjson_count_severity(j, c);
	json_decref(j);
	T_EQ_INT(c[0], 1);
	T_EQ_INT(c[1], 2);
	T_EQ_INT(c[2], 1);
	T_EQ_INT(c[3], 2);

	/* Not an OperationOutcome, or no issue array: nothing counted. */
	j = parse("{\"resourceType\":\"Patient\",\"issue\":"
	    "[{\"severity\":\"error\"}]}");
	ndjson_count_severity(j, c);
	json_decref(j);
	j = parse("{\"resourceType\":\"OperationOutcome\",\"issue\":"
	    "{\"severity\":\"error\"}}");
	ndjson_count_severity(j, c);
	json_decref(j);
	j = parse("[{\"severity\":\"error\"}]");
	ndjson_count_severity(j, c);
	json_decref(j);
	ndjson_count_severity(NULL, c);
	T_EQ_INT(c[0], 1);
	T_EQ_INT(c[1], 2);
	T_EQ_INT(c[2], 1);
	T_EQ_INT(c[3], 2);
}

T_TEST(test_severity_via_validator)
{
	static const char in[] =
	    "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":"
	    "\"error\",\"code\":\"not-found\"}]}\n"
	    "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":"
	    "\"error\",\"code\":\"exception\"},{\"severity\":\"fatal\"}]}\n";
	struct seen s = { 0 };
	struct ndjson *nd;
	uint64_t line = 0, lines = 0;

	T_EQ_INT(run("OperationOutcome", in, sizeof(in) - 1, 9, &s, &nd), 0);
	if (nd != NULL) {
		T_EQ_INT(ndjson_lines(nd), 2);
		ndjson_free(nd);
	}
	json_decref(s.kept);
	T_EQ_INT(check("Patient", in, 0, &line, &lines), NDJSON_ETYPE);
}

T_MAIN("ndjson",
    T_CASE(test_fixtures_whole),
    T_CASE(test_fixtures_4096),
    T_CASE(test_fixtures_7),
    T_CASE(test_fixtures_1),
    T_CASE(test_any_type),
    T_CASE(test_wrong_fixture_type),
    T_CASE(test_empty_input),
    T_CASE(test_line_endings),
    T_CASE(test_empty_lines),
    T_CASE(test_wrong_type),
    T_CASE(test_bad_json),
    T_CASE(test_not_object),
    T_CASE(test_callback_error),
    T_CASE(test_kept_object),
    T_CASE(test_too_long),
    T_CASE(test_strerror),
    T_CASE(test_severity),
    T_CASE(test_severity_via_validator))
