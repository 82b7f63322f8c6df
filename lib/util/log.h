/*
 * Logging.  Lines go to stderr, or to the journal with structured fields
 * when stderr is connected to journald.  Arguments are not evaluated when
 * the level is filtered out.  Never pass a secret, a bearer token or the
 * contents of a data or error file to these functions.
 */
#ifndef BCDAD_LOG_H
#define BCDAD_LOG_H

#include <stdint.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

extern enum log_level log_level_max;

void	log_init(enum log_level, int use_journal);
void	log_set_level(enum log_level);
/* loglevel.c: "error", "warning", "info", "debug" */
int	log_level_parse(const char *, enum log_level *);
const char *log_level_name(enum log_level);
void	log_emit(enum log_level, int with_errno, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
/* A job line: begins with "job N STATE:" and carries BCDAD_* fields. */
void	log_job(enum log_level, int64_t job, const char *profile,
	    const char *state, const char *fmt, ...)
	    __attribute__((format(printf, 5, 6)));

/*
 * Replaces every byte of s that is not printable ASCII with '?', so that
 * text from a server cannot forge log lines or break the status table.
 */
void	log_sanitize(char *s);
/*
 * Replaces control characters (newlines, escapes) with '?'.  Every log
 * line and every job's last_error passes through it, whatever it quotes.
 */
void	log_strip_controls(char *s);

#define log_enabled(l)		((l) <= log_level_max)
#define log_warn(...)		do { if (log_enabled(LOG_LVL_WARN)) \
	log_emit(LOG_LVL_WARN, 1, __VA_ARGS__); } while (0)
#define log_warnx(...)		do { if (log_enabled(LOG_LVL_WARN)) \
	log_emit(LOG_LVL_WARN, 0, __VA_ARGS__); } while (0)
#define log_errx(...)		log_emit(LOG_LVL_ERR, 0, __VA_ARGS__)
#define log_info(...)		do { if (log_enabled(LOG_LVL_INFO)) \
	log_emit(LOG_LVL_INFO, 0, __VA_ARGS__); } while (0)
#define log_debug(...)		do { if (log_enabled(LOG_LVL_DEBUG)) \
	log_emit(LOG_LVL_DEBUG, 0, __VA_ARGS__); } while (0)

#endif
