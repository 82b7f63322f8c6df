/*
 * ISO 8601 / RFC 3339 date-times, the one parser for every timestamp bcdad
 * reads: BCDA's _since and transactionTime, the configuration's since, and
 * AWS credential expirations.
 */
#ifndef BCDAD_ISO8601_H
#define BCDAD_ISO8601_H

#include <stddef.h>
#include <time.h>

/*
 * Also accept 't' or ' ' between date and time, 'z', ',' before the
 * fraction and offsets without a colon (+0500), as AWS services may write
 * them.  Without it, only what BCDA's Go RFC 3339 parser takes.
 */
#define ISO8601_LENIENT	1

/*
 * Parses YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|+hh:mm|-hh:mm) into *out (may be
 * NULL to only check).  A zone is required; the date must exist (leap
 * years included); a leap second (:60) is refused, as BCDA's Go parser
 * refuses it.  Returns 0 or -EINVAL.
 */
int	iso8601_parse(const char *s, int flags, time_t *out);

/*
 * Writes the instant s (as iso8601_parse takes it, strictly) in UTC:
 * YYYY-MM-DDThh:mm:ss[.f]Z, its fraction digits kept as written, so that
 * "2024-07-24T08:08:33.779-04:00" names the same instant as
 * "2024-07-24T12:08:33.779Z" without a '+' or an offset.  Returns 0, or
 * -EINVAL for a bad instant or a buffer too small.
 */
int	iso8601_utc(const char *s, char *out, size_t len);

#endif
