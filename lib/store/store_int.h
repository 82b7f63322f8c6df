/*
 * The store's private parts, shared by store.c (the connection,
 * migrations, transactions, jobs, files and history) and marks.c
 * (watermarks and the metrics summaries): the statement helpers.  Nothing
 * outside lib/store/ includes this.
 */
#ifndef BCDAD_STORE_INT_H
#define BCDAD_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store.h"

struct store {
	sqlite3		*db;
	char		*path;
	int		 version;	/* user_version after store_open */
	int		 depth;		/* open store_begin() levels */
};

/*
 * Binds parameters left to right, remembering the first failure, so a
 * statement's binds read like its column list.  Strings are bound
 * SQLITE_STATIC: they outlive the step that uses them.
 */
struct binder {
	sqlite3_stmt	*stmt;
	int		 idx;
	int		 rc;
};


/* Reads columns left to right; a NULL column reads as NULL or 0. */
struct reader {
	sqlite3_stmt	*stmt;
	int		 idx;
	int		 nomem;
};


/* Logs what SQLite said about what; returns it as a negative errno. */
int	sq_db_fail(struct store *, const char *what);
/* Prepares sql, or logs why not; returns 0 or a negative errno. */
int	sq_prep(struct store *, const char *sql, sqlite3_stmt **,
	    const char *what);
/* Steps a statement that returns no row, and finalizes it. */
int	sq_step_done(struct store *, sqlite3_stmt *, const char *what);
void	sq_b_text(struct binder *, const char *);
void	sq_b_int(struct binder *, int64_t);
int	sq_b_done(struct store *, struct binder *, const char *what);
char	*sq_r_text(struct reader *);
int64_t	sq_r_int(struct reader *);
/*
 * Steps stmt to its end reading each row with read into a growing array
 * and finalizes it; no caller callback runs while it is live.
 */
int	sq_rows_collect(struct store *, sqlite3_stmt *,
	    int (*read)(sqlite3_stmt *, void *), size_t size, void **rows,
	    size_t *n, const char *what);

#endif
