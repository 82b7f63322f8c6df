/*
 * One pass over a JSON text (RFC 8259) that checks it without building
 * it: no allocation, no copy, each byte looked at once.  The NDJSON
 * validator runs it on every line of an export, where building a tree
 * per line (jansson) was most of bcdad's CPU.
 *
 * Strict as the RFC: one value and whitespace around it; strings with
 * valid escapes (surrogates paired) and valid UTF-8 (no overlong forms,
 * no encoded surrogates, nothing past U+10FFFF), no control characters;
 * numbers and literals as the grammar says; at most JSONSCAN_DEPTH
 * nested arrays and objects.  Unlike jansson, "\u0000" in a string is
 * accepted, as the RFC allows.
 */
#ifndef BCDAD_JSONSCAN_H
#define BCDAD_JSONSCAN_H

#include <stddef.h>

#define JSONSCAN_DEPTH	2048		/* jansson's limit too */

enum jsonscan {
	JSONSCAN_OBJECT,		/* valid, an object */
	JSONSCAN_OTHER,			/* valid, not an object */
	JSONSCAN_INVALID,		/* not JSON */
};

/*
 * Checks s[0..n).  For an object, *rt and *rtlen are set to the raw text
 * (between the quotes, escapes not decoded) of its last top-level
 * "resourceType" member when that is a string, else *rt is NULL.
 */
enum jsonscan	jsonscan(const char *s, size_t n, const char **rt,
		    size_t *rtlen);

#endif
