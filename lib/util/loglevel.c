/*
 * Log level names, apart from log.c so that what reads the configuration
 * does not bring in the journal (libsystemd): the client, bcdad, loads
 * only libc, jansson and inih.
 */
#include <errno.h>
#include <string.h>

#include "log.h"

static const char *const level_names[] = {
	[LOG_LVL_ERR] = "error",
	[LOG_LVL_WARN] = "warning",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

const char *
log_level_name(enum log_level l)
{
	return level_names[l];
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}
