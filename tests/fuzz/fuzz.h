/*
 * What the fuzz targets share (each includes this once): quiet logs, the
 * input as a NUL-terminated string (the parsers that take C strings get
 * one without reading past the input), and as an HTTP answer's body.
 */
#ifndef BCDAD_FUZZ_H
#define BCDAD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/http.h"
#include "util/log.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int	LLVMFuzzerInitialize(int *argc, char ***argv);

/* Warnings about the input would flood the run: errors only. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init(LOG_LVL_ERR, 0);
	return 0;
}

static inline char *
fuzz_str(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s != NULL) {
		memcpy(s, data, size);
		s[size] = '\0';
	}
	return s;
}

/* An HTTP answer whose body is the input, with status. */
static inline struct http_resp
fuzz_resp(long status, char *body, size_t len)
{
	struct http_resp r;

	memset(&r, 0, sizeof(r));
	r.result = CURLE_OK;
	r.status = status;
	r.body = body;
	r.body_len = len;
	return r;
}

#endif
