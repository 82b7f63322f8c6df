/*
 * Tests of lib/bcda/jsonscan.c, the one-pass JSON check of every NDJSON
 * data line: what it accepts and refuses, and the resourceType it finds.
 * (tests/fuzz/fuzz_jsonscan.c holds it against jansson.)
 */
#include <string.h>

#include "t.h"
#include "bcda/jsonscan.h"

static enum jsonscan
scan(const char *s, char *rt, size_t rtlen)
{
	const char *p;
	size_t n;
	enum jsonscan r;

	r = jsonscan(s, strlen(s), &p, &n);
	if (p == NULL)
		snprintf(rt, rtlen, "(none)");
	else
		snprintf(rt, rtlen, "%.*s", (int)n, p);
	return r;
}

T_TEST(test_valid)
{
	const char *ok[] = {
		"{}", " {\"a\" : [ ] }\r", "{\"a\":[1,-0,0.5,-1.5e+10,2E-3,"
		"true,false,null,\"\",{}]}",
		"{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"}",
		"{\"u\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \x7f\"}",
		"{\"n\":\"\\u0000\"}",
	};
	char rt[64];
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		T_EQ_INT(scan(ok[i], rt, sizeof(rt)), JSONSCAN_OBJECT);
	T_EQ_INT(scan("[1]", rt, sizeof(rt)), JSONSCAN_OTHER);
	T_EQ_INT(scan(" \"x\" ", rt, sizeof(rt)), JSONSCAN_OTHER);
	T_EQ_INT(scan("42", rt, sizeof(rt)), JSONSCAN_OTHER);
}

T_TEST(test_invalid)
{
	const char *bad[] = {
		"", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]",
		"{a:1}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}",
		"{\"a\":1e}", "{\"a\":+1}", "{\"a\":tru}", "{\"a\":nul}",
		"{\"a\":\"\\x\"}", "{\"a\":\"\\u12G4\"}", "{\"a\":\"\\ud800\"}",
		"{\"a\":\"\\udc00\"}", "{\"a\":\"\\ud800\\u0041\"}",
		"{\"a\":\"tab\there\"}", "{\"a\":\"\xc0\xaf\"}",
		"{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}",
		"{\"a\":\"\xe2\x82\"}", "{\"a\":\"\x80\"}", "{\"a\":\"open",
		"{} {}", "{}x", "{\"a\":1}\"", "{\"a\" 1}",
	};
	char rt[64];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (scan(bad[i], rt, sizeof(rt)) != JSONSCAN_INVALID)
			T_FAIL("accepted: %s", bad[i]);
	}
}

T_TEST(test_depth)
{
	char s[2 * JSONSCAN_DEPTH + 8], rt[8];
	size_t i;

	memset(s, 0, sizeof(s));
	for (i = 0; i < JSONSCAN_DEPTH; i++) {
		s[i] = '[';
		s[2 * JSONSCAN_DEPTH - 1 - i] = ']';
	}
	T_EQ_INT(scan(s, rt, sizeof(rt)), JSONSCAN_OTHER);
	memmove(s + 1, s, strlen(s) + 1);
	s[0] = '[';
	strcat(s, "]");
	T_EQ_INT(scan(s, rt, sizeof(rt)), JSONSCAN_INVALID);
}

T_TEST(test_resource_type)
{
	char rt[64];

	T_EQ_INT(scan("{\"id\":\"1\",\"resourceType\":\"Patient\"}", rt,
	    sizeof(rt)), JSONSCAN_OBJECT);
	T_EQ_STR(rt, "Patient");
	/* Only the top level's counts, and the last one. */
	scan("{\"x\":{\"resourceType\":\"Claim\"}}", rt, sizeof(rt));
	T_EQ_STR(rt, "(none)");
	scan("{\"resourceType\":\"Claim\",\"resourceType\":\"Coverage\"}", rt,
	    sizeof(rt));
	T_EQ_STR(rt, "Coverage");
	scan("{\"resourceType\":\"Claim\",\"resourceType\":7}", rt, sizeof(rt));
	T_EQ_STR(rt, "(none)");
	scan("{\"resourceType\":{\"a\":\"Patient\"}}", rt, sizeof(rt));
	T_EQ_STR(rt, "(none)");
	scan("[{\"resourceType\":\"Patient\"}]", rt, sizeof(rt));
	T_EQ_STR(rt, "(none)");
	scan("{\"resourceTypeX\":\"Patient\"}", rt, sizeof(rt));
	T_EQ_STR(rt, "(none)");
}

T_MAIN("jsonscan",
    T_CASE(test_valid),
    T_CASE(test_invalid),
    T_CASE(test_depth),
    T_CASE(test_resource_type))
