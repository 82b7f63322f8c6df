/*
 * A minimal unit-test harness.  Each test file defines its tests with
 * T_TEST(name) and lists them in T_MAIN(...).  Every test runs even after
 * another fails; the binary prints one line per failure and a closing
 * "N passed, N failed" line, and exits non-zero when anything failed.
 */
#ifndef T_H
#define T_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failed_checks;

#define T_FAIL(...) do { \
	fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); \
	t_failed_checks++; } while (0)

#define T_ASSERT(c) do { if (!(c)) T_FAIL("assertion failed: %s", #c); } while (0)

#define T_EQ_INT(a, b) do { \
	long long t_a_ = (long long)(a), t_b_ = (long long)(b); \
	if (t_a_ != t_b_) T_FAIL("%s == %lld, expected %s == %lld", \
	    #a, t_a_, #b, t_b_); } while (0)

#define T_EQ_STR(a, b) do { \
	const char *t_a_ = (a), *t_b_ = (b); \
	if (t_a_ == NULL || t_b_ == NULL || strcmp(t_a_, t_b_) != 0) \
		T_FAIL("%s == \"%s\", expected \"%s\"", #a, \
		    t_a_ ? t_a_ : "(null)", t_b_ ? t_b_ : "(null)"); \
	} while (0)

#define T_TEST(name) static void name(void)

struct t_case { const char *name; void (*fn)(void); };

#define T_CASE(fn) { #fn, fn }

static inline int
t_run(const char *suite, const struct t_case *cases, size_t n)
{
	int passed = 0, failed = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		int before = t_failed_checks;

		cases[i].fn();
		if (t_failed_checks == before) {
			passed++;
		} else {
			failed++;
			fprintf(stderr, "FAIL %s.%s\n", suite, cases[i].name);
		}
	}
	printf("%s: %d passed, %d failed\n", suite, passed, failed);
	return failed ? 1 : 0;
}

#define T_MAIN(suite, ...) \
	int main(void) { \
		static const struct t_case t_cases_[] = { __VA_ARGS__ }; \
		return t_run(suite, t_cases_, \
		    sizeof(t_cases_) / sizeof(t_cases_[0])); \
	}

/* Directory of tests/fixtures, from BCDAD_FIXTURES or the default. */
static inline const char *
t_fixtures(void)
{
	const char *d = getenv("BCDAD_FIXTURES");

	return d ? d : "tests/fixtures";
}

/*
 * The bytes of fixture rel (under t_fixtures()), NUL-terminated, with
 * *len set; NULL after a failed check when it cannot be read.
 */
static inline void *
t_read_fixture(const char *rel, size_t *len)
{
	char path[4096], *p = NULL;
	long n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", t_fixtures(), rel);
	if ((f = fopen(path, "rb")) == NULL) {
		T_FAIL("cannot open fixture %s", path);
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 &&
	    (p = malloc((size_t)n + 1)) != NULL) {
		if (fread(p, 1, (size_t)n, f) == (size_t)n) {
			p[n] = '\0';
			*len = (size_t)n;
		} else {
			free(p);
			p = NULL;
		}
	}
	fclose(f);
	if (p == NULL)
		T_FAIL("cannot read fixture %s", path);
	return p;
}

#endif
