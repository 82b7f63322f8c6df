/*
 * Wiping secrets: see wipe.h.
 */
#include <stdlib.h>
#include <string.h>

#include "wipe.h"

void
wipe_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}
