/*
 * Tests of lib/util/log.c's cleaning of text that may come from a server:
 * log_strip_controls (every log line and last_error) and log_sanitize
 * (AWS error codes and messages, BCDA diagnostics).
 */
#include <string.h>

#include "t.h"
#include "util/log.h"

T_TEST(test_strip_controls)
{
	char s[] = "Error\r\n2026-11-30T00:00:00Z info: forged\x1b[2J\x7f\tend";

	log_strip_controls(s);
	T_EQ_STR(s, "Error??2026-11-30T00:00:00Z info: forged?[2J??end");
	T_ASSERT(strchr(s, '\n') == NULL);
}

T_TEST(test_strip_controls_keeps_utf8)
{
	char s[] = "caf\xc3\xa9 \xe2\x80\xa6 ok";

	log_strip_controls(s);
	T_EQ_STR(s, "caf\xc3\xa9 \xe2\x80\xa6 ok");
	log_strip_controls(NULL);
}

T_TEST(test_sanitize_ascii_only)
{
	char s[] = "Acc\xc3\xa9ss\nDenied";

	log_sanitize(s);
	T_EQ_STR(s, "Acc??ss?Denied");
}

T_MAIN("log",
    T_CASE(test_strip_controls),
    T_CASE(test_strip_controls_keeps_utf8),
    T_CASE(test_sanitize_ascii_only))
