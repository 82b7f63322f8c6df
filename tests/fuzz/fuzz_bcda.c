/*
 * BCDA's answers: the first byte picks the parser (manifest, status
 * OperationOutcome, token response, jobs list, X-Progress, instants,
 * Expires, Retry-After, a manifest URL's origin); the rest is the input.
 */
#include <time.h>

#include "bcda/bcda.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bcda_manifest m;
	struct bcda_outcome oo;
	struct bcda_token t;
	char *s, *url, id[64];
	time_t when;
	size_t n;

	if (size < 1 || (s = fuzz_str(data + 1, size - 1)) == NULL)
		return 0;
	n = size - 1;
	switch (data[0] % 9) {
	case 0:
		if (bcda_parse_manifest(s, n, &m) == 0)
			bcda_manifest_clear(&m);
		break;
	case 1:
		bcda_parse_outcome(s, n, &oo);
		bcda_job_failed(500, &oo);
		bcda_kickoff_404(&oo);
		break;
	case 2:
		if (bcda_parse_token(s, n, &t) == 0)
			bcda_token_clear(&t);
		break;
	case 3:
		url = bcda_find_job(s, n, "https://api.bcda.cms.gov/api/v2/"
		    "Group/all/$export", 0);
		free(url);
		break;
	case 4:
		bcda_find_blocker(s, n, 2, &when, id, sizeof(id));
		break;
	case 5:
		bcda_parse_progress(s);
		break;
	case 6:
		bcda_parse_instant(s, &when);
		break;
	case 7:
		bcda_parse_expires(s, &when);
		http_retry_after(s, 1796000000);
		break;
	case 8:
		bcda_url_trusted("https://api.bcda.cms.gov", s);
		break;
	}
	free(s);
	return 0;
}
