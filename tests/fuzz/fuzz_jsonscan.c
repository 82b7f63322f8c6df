/*
 * The NDJSON line checker (lib/bcda/jsonscan.c) against jansson, the
 * parser it replaced on the data path: both must find the same lines
 * valid, the same objects, and the same resourceType.  jansson refuses a
 * few texts the RFC allows ("\u0000", integers past 64 bits, reals past
 * a double): there, only jsonscan accepting them is allowed.  And jansson
 * stops reading at a NUL byte, taking "21\0junk" for 21: jsonscan refuses
 * that, as it refuses every raw NUL.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bcda/jsonscan.h"
#include "fuzz.h"

static int
jansson_only_refuses(const json_error_t *e)
{
	return strstr(e->text, "\\u0000") != NULL ||
	    strstr(e->text, "NUL byte") != NULL ||
	    strstr(e->text, "too big") != NULL ||
	    strstr(e->text, "overflow") != NULL ||
	    strstr(e->text, "maximum parsing depth") != NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t err;
	enum jsonscan got;
	const char *rt, *v;
	size_t len;
	json_t *j;
	char *s;

	if ((s = fuzz_str(data, size)) == NULL)
		return 0;
	got = jsonscan(s, size, &rt, &len);
	j = json_loadb(s, size, JSON_DECODE_ANY, &err);
	if (j == NULL) {
		if (got != JSONSCAN_INVALID && !jansson_only_refuses(&err))
			abort();
	} else {
		if (got == JSONSCAN_INVALID && memchr(s, '\0', size) == NULL)
			abort();
		if (got == JSONSCAN_INVALID)
			goto out;
		if ((got == JSONSCAN_OBJECT) != json_is_object(j))
			abort();
		v = json_string_value(json_object_get(j, "resourceType"));
		if (got == JSONSCAN_OBJECT && (v == NULL) != (rt == NULL))
			abort();
		if (v != NULL && rt != NULL && memchr(rt, '\\', len) == NULL &&
		    (strlen(v) != len || memcmp(v, rt, len) != 0))
			abort();
	}
out:
	json_decref(j);
	free(s);
	return 0;
}
