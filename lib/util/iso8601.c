/*
 * ISO 8601 / RFC 3339 date-times.  See iso8601.h.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "iso8601.h"

/* Reads n digits at *p, advancing it.  Returns 0 or -1. */
static int
digits(const char **p, int n, int *out)
{
	int v = 0;

	for (; n > 0; n--, (*p)++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

static int
days_in(int y, int mo)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
	    30, 31 };

	if (mo == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
		return 29;
	return mdays[mo - 1];
}

int
iso8601_parse(const char *s, int flags, time_t *out)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 1, nfrac = 0;
	int lenient = flags & ISO8601_LENIENT;
	struct tm tm;
	time_t t;

	if (s == NULL || digits(&s, 4, &y) || *s++ != '-' ||
	    digits(&s, 2, &mo) || *s++ != '-' || digits(&s, 2, &d))
		return -EINVAL;
	/* BCDA's Go parser takes 'T' and 'Z' only; AWS may write others. */
	if (*s != 'T' && !(lenient && (*s == 't' || *s == ' ')))
		return -EINVAL;
	s++;
	if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi) ||
	    *s++ != ':' || digits(&s, 2, &sec))
		return -EINVAL;
	if (*s == '.' || (lenient && *s == ',')) {
		for (s++; isdigit((unsigned char)*s); s++)
			nfrac++;
		if (nfrac < 1 || nfrac > 9)
			return -EINVAL;
	}
	if (*s == 'Z' || (lenient && *s == 'z')) {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s++ == '-' ? -1 : 1;
		if (digits(&s, 2, &oh))
			return -EINVAL;
		if (*s == ':')
			s++;
		else if (!lenient)
			return -EINVAL;
		if (digits(&s, 2, &om))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*s != '\0' || mo < 1 || mo > 12 || d < 1 || d > days_in(y, mo) ||
	    h > 23 || mi > 59 || sec > 59 || oh > 23 || om > 59)
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -EINVAL;
	if (out != NULL)
		*out = t - sign * (oh * 3600 + om * 60);
	return 0;
}

int
iso8601_utc(const char *s, char *out, size_t len)
{
	const char *frac, *end;
	char day[32];
	struct tm tm;
	time_t t;
	int n;

	if (iso8601_parse(s, 0, &t) != 0)
		return -EINVAL;
	/* The fraction, if any, runs from the '.' to the zone. */
	frac = s + 19;
	for (end = frac; *end == '.' || isdigit((unsigned char)*end); end++)
		;
	gmtime_r(&t, &tm);
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(out, len, "%s%.*sZ", day, (int)(end - frac), frac);
	return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}
