/*
 * Configuration, private to lib/config*.c: the state of one parse, shared
 * by the reader (config.c) and the keys (config_keys.c).  Other modules
 * use config.h only.
 */
#ifndef BCDAD_CONFIG_PARSE_H
#define BCDAD_CONFIG_PARSE_H

#include <stdio.h>

#include "config.h"

#define CONF_KEY_MAX	24	/* keys in the largest section */

enum sect_kind {
	SECT_NONE,		/* keys before any section header */
	SECT_DAEMON,
	SECT_AWS,
	SECT_PROFILE,
	SECT_IGNORE,		/* a bad or repeated section: keys skipped */
};

struct conf_error {
	int		 line;		/* 0: about the whole file */
	size_t		 seq;		/* keeps the sort stable */
	char		*msg;
};

struct parse_state {
	struct config	*conf;
	const char	*path;
	FILE		*fp;
	char		*lbuf;		/* getline's, the whole line */
	size_t		 lcap;
	int		 line;		/* the line libinih is working on */
	int		 cont;		/* it continues the previous value */
	int		 have_prev;	/* a key was seen in this section */
	int		 pending;	/* key line not yet seen by handler */

	enum sect_kind	 kind;
	char		*sect_name;	/* as written between [ and ] */
	int		 sect_line;
	struct profile	*prof;
	int		 keyline[CONF_KEY_MAX];	/* 0: not set in this section */
	int		 keybad[CONF_KEY_MAX];	/* set, but the value was bad */
	int		 last_key;		/* -1 if none */
	int		 daemon_line;		/* first [daemon], 0 if none */
	int		 aws_line;		/* first [aws], 0 if none */

	struct conf_error *errs;
	size_t		 nerrs, errcap;
	int		 oom;
};

/* config.c */
void		 conf_error(struct parse_state *, int line, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
char		*conf_strdup(struct parse_state *, const char *);
const char	*conf_sect_label(const struct parse_state *);

/* config_keys.c */
int		 conf_key_lookup(enum sect_kind, const char *name);
void		 conf_key_set(struct parse_state *, int key, const char *name,
		    const char *value);
void		 conf_key_continue(struct parse_state *, const char *name,
		    const char *value);
void		 conf_section_done(struct parse_state *);
struct profile	*conf_profile_new(struct parse_state *, const char *name,
		    int line);
void		 conf_defaults(struct parse_state *);
void		 conf_resolve(struct parse_state *);

#endif
