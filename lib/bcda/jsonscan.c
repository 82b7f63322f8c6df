/*
 * JSON checked in one pass: see jsonscan.h.  An iterative parser with a
 * stack of one byte per open array or object; strings are skipped with a
 * table of the bytes that need no thought.
 */
#include <stdint.h>
#include <string.h>

#include "jsonscan.h"

#define RT	"resourceType"

/* 1: a byte a string may hold as it is (printable ASCII but " and \). */
static const unsigned char plain[256] = {
	['\x20'] = 1, ['\x21'] = 1, ['\x23'] = 1, ['\x24'] = 1, ['\x25'] = 1,
	['\x26'] = 1, ['\x27'] = 1, ['\x28'] = 1, ['\x29'] = 1, ['\x2a'] = 1,
	['\x2b'] = 1, ['\x2c'] = 1, ['\x2d'] = 1, ['\x2e'] = 1, ['\x2f'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
	['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, [':'] = 1, [';'] = 1,
	['<'] = 1, ['='] = 1, ['>'] = 1, ['?'] = 1, ['@'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
	['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
	['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
	['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
	['Y'] = 1, ['Z'] = 1, ['['] = 1, [']'] = 1, ['^'] = 1, ['_'] = 1,
	['`'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1,
	['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,
	['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1,
	['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1,
	['x'] = 1, ['y'] = 1, ['z'] = 1, ['{'] = 1, ['|'] = 1, ['}'] = 1,
	['~'] = 1, ['\x7f'] = 1,
};

static const unsigned char *
ws(const unsigned char *p, const unsigned char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' ||
	    *p == '\r'))
		p++;
	return p;
}

static int
hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
	unsigned v = 0;
	int i, c;

	if (end - p < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			v |= (unsigned)((c | 0x20) - 'a' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* One UTF-8 sequence of two to four bytes at p (Unicode table 3-7). */
static const unsigned char *
utf8(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = *p, lo = 0x80, hi = 0xbf;
	int n;

	if (c >= 0xc2 && c <= 0xdf)
		n = 1;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return NULL;
	if (end - p <= n || p[1] < lo || p[1] > hi)
		return NULL;
	for (p += 2; --n > 0; p++)
		if (*p < 0x80 || *p > 0xbf)
			return NULL;
	return p;
}

/*
 * Past the plain bytes at p, eight at a time while none of them needs a
 * look: no '"', no '\\', nothing below 0x20 or above 0x7f (SWAR: a byte
 * of the 64-bit word that is zero after the XOR, or that the subtraction
 * takes below zero, sets its top bit).
 */
static const unsigned char *
plain_run(const unsigned char *p, const unsigned char *end)
{
	const uint64_t ones = 0x0101010101010101ull, high = ones * 0x80;
	uint64_t v, q, b;

	while (end - p >= 8) {
		memcpy(&v, p, 8);
		q = v ^ (ones * '"');
		b = v ^ (ones * '\\');
		if (((q - ones) & ~q & high) | ((b - ones) & ~b & high) |
		    ((v - ones * 0x20) & ~v & high) | (v & high))
			break;
		p += 8;
	}
	while (p < end && plain[*p])
		p++;
	return p;
}

/* The rest of a string after its opening quote; past its closing one. */
static const unsigned char *
string(const unsigned char *p, const unsigned char *end)
{
	unsigned u, lo;

	for (;;) {
		p = plain_run(p, end);
		if (p >= end)
			return NULL;
		if (*p == '"')
			return p + 1;
		if (*p >= 0x80) {
			if ((p = utf8(p, end)) == NULL)
				return NULL;
			continue;
		}
		if (*p != '\\' || ++p >= end)
			return NULL;	/* a control character, or a cut */
		switch (*p) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n':
		case 'r': case 't':
			p++;
			continue;
		case 'u':
			break;
		default:
			return NULL;
		}
		if (hex4(p + 1, end, &u) != 0)
			return NULL;
		p += 5;
		if (u >= 0xdc00 && u <= 0xdfff)
			return NULL;	/* a low surrogate alone */
		if (u >= 0xd800 && u <= 0xdbff) {
			if (end - p < 2 || p[0] != '\\' || p[1] != 'u' ||
			    hex4(p + 2, end, &lo) != 0 || lo < 0xdc00 ||
			    lo > 0xdfff)
				return NULL;
			p += 6;
		}
	}
}

static const unsigned char *
digits(const unsigned char *p, const unsigned char *end)
{
	const unsigned char *q = p;

	while (q < end && *q >= '0' && *q <= '9')
		q++;
	return q > p ? q : NULL;
}

static const unsigned char *
number(const unsigned char *p, const unsigned char *end)
{
	if (*p == '-' && ++p >= end)
		return NULL;
	if (*p == '0')
		p++;
	else if ((p = digits(p, end)) == NULL)
		return NULL;
	if (p < end && *p == '.' && (p = digits(p + 1, end)) == NULL)
		return NULL;
	if (p < end && (*p == 'e' || *p == 'E')) {
		if (++p < end && (*p == '+' || *p == '-'))
			p++;
		if ((p = digits(p, end)) == NULL)
			return NULL;
	}
	return p;
}

static const unsigned char *
literal(const unsigned char *p, const unsigned char *end, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(end - p) < n || memcmp(p, word, n) != 0)
		return NULL;
	return p + n;
}

enum jsonscan
jsonscan(const char *s, size_t n, const char **rt, size_t *rtlen)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n, *q;
	unsigned char stack[JSONSCAN_DEPTH];	/* '{' or '[' */
	int depth = 0, is_rt = 0, object;

	*rt = NULL;
	*rtlen = 0;
	p = ws(p, end);
	object = p < end && *p == '{';
value:
	p = ws(p, end);
	if (p >= end)
		return JSONSCAN_INVALID;
	switch (*p) {
	case '{':
	case '[':
		if (depth == JSONSCAN_DEPTH)
			return JSONSCAN_INVALID;
		if (is_rt)
			*rt = NULL;	/* the last one counts: no string */
		is_rt = 0;
		stack[depth++] = *p;
		p = ws(p + 1, end);
		if (p < end && *p == (stack[depth - 1] == '{' ? '}' : ']')) {
			depth--;
			p++;
			goto after;
		}
		if (stack[depth - 1] == '{')
			goto key;
		goto value;
	case '"':
		if ((q = string(p + 1, end)) == NULL)
			return JSONSCAN_INVALID;
		if (is_rt) {
			*rt = (const char *)p + 1;
			*rtlen = (size_t)(q - p - 2);
		}
		p = q;
		goto after;
	case 't':
		p = literal(p, end, "true");
		break;
	case 'f':
		p = literal(p, end, "false");
		break;
	case 'n':
		p = literal(p, end, "null");
		break;
	default:
		p = (*p == '-' || (*p >= '0' && *p <= '9')) ?
		    number(p, end) : NULL;
		break;
	}
	if (p == NULL)
		return JSONSCAN_INVALID;
	if (is_rt)
		*rt = NULL;		/* the last one counts, and is no string */
after:
	is_rt = 0;
	p = ws(p, end);
	if (depth == 0)
		return p == end ? (object ? JSONSCAN_OBJECT : JSONSCAN_OTHER) :
		    JSONSCAN_INVALID;
	if (p >= end)
		return JSONSCAN_INVALID;
	if (*p == ',') {
		p++;
		if (stack[depth - 1] == '[')
			goto value;
		goto key;
	}
	if (*p != (stack[depth - 1] == '{' ? '}' : ']'))
		return JSONSCAN_INVALID;
	depth--;
	p++;
	goto after;
key:
	p = ws(p, end);
	if (p >= end || *p != '"' || (q = string(p + 1, end)) == NULL)
		return JSONSCAN_INVALID;
	is_rt = depth == 1 && q - p - 2 == (long)strlen(RT) &&
	    memcmp(p + 1, RT, strlen(RT)) == 0;
	p = ws(q, end);
	if (p >= end || *p != ':')
		return JSONSCAN_INVALID;
	p++;
	goto value;
}
