/*
 * The shared AWS files (~/.aws/credentials and ~/.aws/config): the first
 * line is the profile's name, the rest is the file's text, parsed both as
 * a credentials file ("[NAME]") and as a config file ("[profile NAME]").
 */
#include <errno.h>

#include "aws/awscreds_int.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ac_profile p;
	const uint8_t *nl;
	char *name, *text;
	size_t len;
	int config, rc;

	if ((nl = memchr(data, '\n', size)) == NULL)
		return 0;
	len = size - (size_t)(nl - data) - 1;
	/* The text alone, unterminated, so reading past it is caught. */
	if ((text = malloc(len)) == NULL)
		return 0;
	memcpy(text, nl + 1, len);
	if ((name = fuzz_str(data, (size_t)(nl - data))) == NULL) {
		free(text);
		return 0;
	}
	for (config = 0; config <= 1; config++) {
		rc = ac_profile_parse(text, len, name, config, &p);
		if (rc != 0 && rc != -ENOMEM)
			abort();
		ac_profile_clear(&p);
	}
	free(name);
	free(text);
	return 0;
}
