/*
 * The control socket's request line, read as the daemon reads it
 * (daemon/ctlreq.c): whatever comes in is a request or a clear error.
 */
#include <stdlib.h>
#include <string.h>

#include "bcdad.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_req r;
	const char *err = NULL;

	if (ctl_req_parse((const char *)data, size, &r, &err) != 0) {
		if (err == NULL || r.json != NULL)
			abort();
		return 0;
	}
	if (r.page.limit < 1 || r.page.limit > CTL_PAGE_MAX ||
	    r.page.before < 0 ||
	    (r.cmd == CTL_RUN && r.profile == NULL))
		abort();
	ctl_req_free(&r);
	return 0;
}
