/*
 * ISO 8601 / RFC 3339 date-times, the one parser for every timestamp bcdad
 * reads: BCDA's _since and transactionTime, the configuration's since, and
 * AWS credential expirations.
 */
#ifndef BCDAD_ISO8601_H
#define BCDAD_ISO8601_H

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

#endif
