/*
 * Tests of the pure part of lib/util/http.c: http_retry_after, which reads a
 * Retry-After header (delta-seconds or an HTTP-date, RFC 9110 10.2.3)
 * relative to a given now.  BCDA sends "0" on its duplicate-job 429 and
 * "1" on 503s; "0" or nothing means "use your own backoff" to the caller.
 */
#include "t.h"
#include "util/http.h"

/* Fri, 15 Jan 2027 08:00:00 GMT */
#define NOW	((time_t)1800000000)

T_TEST(test_delta_seconds)
{
	T_EQ_INT(http_retry_after("0", NOW), 0);
	T_EQ_INT(http_retry_after("1", NOW), 1);
	T_EQ_INT(http_retry_after("120", NOW), 120);
	T_EQ_INT(http_retry_after("300", NOW), 300);
	T_EQ_INT(http_retry_after("86400", NOW), 86400);
}

T_TEST(test_absent_or_bad)
{
	T_EQ_INT(http_retry_after(NULL, NOW), -1);
	T_EQ_INT(http_retry_after("", NOW), -1);
	T_EQ_INT(http_retry_after("-1", NOW), -1);
	T_EQ_INT(http_retry_after("-120", NOW), -1);
	T_EQ_INT(http_retry_after("abc", NOW), -1);
	T_EQ_INT(http_retry_after("soon", NOW), -1);
}

T_TEST(test_http_date)
{
	/* RFC 9110's preferred IMF-fixdate. */
	T_EQ_INT(http_retry_after("Fri, 15 Jan 2027 08:02:00 GMT", NOW), 120);
	T_EQ_INT(http_retry_after("Fri, 15 Jan 2027 09:00:00 GMT", NOW), 3600);
	T_EQ_INT(http_retry_after("Sat, 16 Jan 2027 08:00:00 GMT", NOW),
	    86400);
	/* Now and the past mean "now": 0, not a negative delay. */
	T_EQ_INT(http_retry_after("Fri, 15 Jan 2027 08:00:00 GMT", NOW), 0);
	T_EQ_INT(http_retry_after("Fri, 15 Jan 2027 07:59:00 GMT", NOW), 0);
	T_EQ_INT(http_retry_after("Tue, 14 Nov 2023 22:13:20 GMT", NOW), 0);
	/* The obsolete forms a recipient must still accept. */
	T_EQ_INT(http_retry_after("Friday, 15-Jan-27 08:02:00 GMT", NOW), 120);
	T_EQ_INT(http_retry_after("Fri Jan 15 08:02:00 2027", NOW), 120);
}

T_MAIN("http",
    T_CASE(test_delta_seconds),
    T_CASE(test_absent_or_bad),
    T_CASE(test_http_date))
