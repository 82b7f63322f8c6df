/*
 * Logging to stderr or journald.  See log.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <systemd/sd-journal.h>

#include "log.h"

enum log_level log_level_max = LOG_LVL_INFO;
static int log_journal;

static const int level_prio[] = {
	[LOG_LVL_ERR] = LOG_ERR,
	[LOG_LVL_WARN] = LOG_WARNING,
	[LOG_LVL_INFO] = LOG_INFO,
	[LOG_LVL_DEBUG] = LOG_DEBUG,
};

/*
 * Called once at start-up, before any other log function.
 */
void
log_init(enum log_level max, int use_journal)
{
	log_level_max = max;
	log_journal = use_journal;
}

/* SIGHUP: a new log_level. */
void
log_set_level(enum log_level max)
{
	log_level_max = max;
}

static void
log_write(enum log_level lvl, int64_t job, const char *profile,
    const char *state, const char *msg)
{
	char stamp[32];
	struct timespec ts;
	struct tm tm;

	/*
	 * The identifier is named: the process runs as bcdad-daemon, but
	 * `journalctl -t bcdad` should find it.
	 */
	if (log_journal) {
		if (job > 0)
			sd_journal_send("MESSAGE=%s", msg,
			    "PRIORITY=%d", level_prio[lvl],
			    "SYSLOG_IDENTIFIER=bcdad",
			    "BCDAD_JOB=%lld", (long long)job,
			    "BCDAD_PROFILE=%s", profile ? profile : "",
			    "BCDAD_STATE=%s", state ? state : "",
			    NULL);
		else
			sd_journal_send("MESSAGE=%s", msg,
			    "PRIORITY=%d", level_prio[lvl],
			    "SYSLOG_IDENTIFIER=bcdad", NULL);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s: %s\n", stamp, ts.tv_nsec / 1000000,
	    log_level_name(lvl), msg);
}

void
log_emit(enum log_level lvl, int with_errno, const char *fmt, ...)
{
	char msg[2048];
	int saved = errno;
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (with_errno) {
		n = strlen(msg);
		snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(saved));
	}
	log_strip_controls(msg);
	log_write(lvl, 0, NULL, NULL, msg);
	errno = saved;
}

void
log_job(enum log_level lvl, int64_t job, const char *profile,
    const char *state, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	int n;

	if (!log_enabled(lvl))
		return;
	n = snprintf(msg, sizeof(msg), "job %lld %s: ", (long long)job, state);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	log_strip_controls(msg);
	log_write(lvl, job, profile, state, msg);
}

void
log_sanitize(char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if (*s < 0x20 || *s >= 0x7f)
			*s = '?';
}

void
log_strip_controls(char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}
