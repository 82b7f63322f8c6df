/*
 * The data path of a download: gzip (or not) then the NDJSON validator,
 * fed in pieces whose sizes come from the input, as the network would.
 */
#include "bcda/gz.h"
#include "bcda/ndjson.h"
#include "fuzz.h"

static int
to_ndjson(const void *buf, size_t len, void *arg)
{
	return ndjson_feed(arg, buf, len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ndjson *nd;
	struct gz *gz;
	size_t off, step;
	int rc = 0;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 64 + 1;
	if ((nd = ndjson_new(data[0] & 0x80 ? "Patient" : NULL, NULL,
	    NULL)) == NULL)
		return 0;
	if ((gz = gz_new(to_ndjson, nd)) == NULL) {
		ndjson_free(nd);
		return 0;
	}
	for (off = 1; off < size && rc == 0; off += step)
		rc = gz_feed(gz, data + off, size - off < step ? size - off :
		    step);
	if (rc == 0 && gz_finish(gz) == 0)
		ndjson_finish(nd);
	gz_free(gz);
	ndjson_free(nd);
	return 0;
}
