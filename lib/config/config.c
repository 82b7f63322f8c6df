/*
 * Configuration: reads bcdad.conf with libinih, follows its sections and
 * collects the problems.  What each key means is in config_keys.c, checks
 * of single values in config_check.c.  See config.h and bcdad.conf(5).
 *
 * libinih does the INI syntax.  Our reader hands it one whole line per
 * call and counts lines, so every handler call knows its line number (the
 * Debian build has INI_HANDLER_LINENO 0).  The reader also notices section
 * headers, so that empty sections, repeated sections and profile names
 * longer than libinih's 50-byte section buffer are seen too.  Every problem
 * is collected with its line and parsing goes on; config_load() then
 * returns NULL with all of them, sorted by line.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "config_parse.h"

/*
 * Records one problem at a line.  Running out of memory here is remembered
 * and reported once at the end.
 */
void
conf_error(struct parse_state *ps, int line, const char *fmt, ...)
{
	struct conf_error *e;
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1) {
		va_end(ap);
		ps->oom = 1;
		return;
	}
	va_end(ap);
	if (ps->nerrs == ps->errcap) {
		size_t ncap = ps->errcap ? ps->errcap * 2 : 16;

		e = reallocarray(ps->errs, ncap, sizeof(*e));
		if (e == NULL) {
			free(msg);
			ps->oom = 1;
			return;
		}
		ps->errs = e;
		ps->errcap = ncap;
	}
	e = &ps->errs[ps->nerrs];
	e->line = line;
	e->seq = ps->nerrs;
	e->msg = msg;
	ps->nerrs++;
}

static int
error_has_line(const struct parse_state *ps, int line)
{
	size_t i;

	for (i = 0; i < ps->nerrs; i++)
		if (ps->errs[i].line == line)
			return 1;
	return 0;
}

static int
error_cmp(const void *a, const void *b)
{
	const struct conf_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Writes the collected problems to errs, sorted by line, as whole
 * "file:line: message" lines while they fit.
 */
static void
errors_format(struct parse_state *ps, char *errs, size_t errlen)
{
	size_t i, used = 0;
	int n;

	if (errs == NULL || errlen == 0)
		return;
	errs[0] = '\0';
	qsort(ps->errs, ps->nerrs, sizeof(ps->errs[0]), error_cmp);
	for (i = 0; i < ps->nerrs; i++) {
		if (ps->errs[i].line > 0)
			n = snprintf(errs + used, errlen - used, "%s:%d: %s\n",
			    ps->path, ps->errs[i].line, ps->errs[i].msg);
		else
			n = snprintf(errs + used, errlen - used, "%s: %s\n",
			    ps->path, ps->errs[i].msg);
		if (n < 0 || (size_t)n >= errlen - used) {
			/* Drop the partial line rather than cut it. */
			errs[used] = '\0';
			break;
		}
		used += (size_t)n;
	}
	if (ps->oom && used + sizeof(": out of memory\n") +
	    strlen(ps->path) <= errlen)
		snprintf(errs + used, errlen - used, "%s: out of memory\n",
		    ps->path);
}

char *
conf_strdup(struct parse_state *ps, const char *s)
{
	char *d;

	if ((d = strdup(s)) == NULL)
		ps->oom = 1;
	return d;
}

const char *
conf_sect_label(const struct parse_state *ps)
{
	return ps->kind == SECT_DAEMON ? "daemon" : ps->kind == SECT_AWS ?
	    "aws" : ps->sect_name;
}

/* Called when a section ends: at the next header and at end of file. */
static void
section_finish(struct parse_state *ps)
{
	conf_section_done(ps);
	ps->kind = SECT_NONE;
	ps->prof = NULL;
	free(ps->sect_name);
	ps->sect_name = NULL;
}

/*
 * Starts a section at a header line.  name is the text between [ and ],
 * or NULL when the header has no closing bracket.
 */
static void
section_begin(struct parse_state *ps, const char *name, int line)
{
	struct config *c = ps->conf;
	const char *pname;
	int i;

	section_finish(ps);
	memset(ps->keyline, 0, sizeof(ps->keyline));
	memset(ps->keybad, 0, sizeof(ps->keybad));
	ps->last_key = -1;
	ps->sect_line = line;
	ps->kind = SECT_IGNORE;
	if (name == NULL) {
		conf_error(ps, line, "syntax error: section header has no "
		    "closing ']'");
		return;
	}
	if ((ps->sect_name = conf_strdup(ps, name)) == NULL)
		return;

	if (strcmp(name, "daemon") == 0 || strcmp(name, "aws") == 0) {
		int *first = name[0] == 'd' ? &ps->daemon_line : &ps->aws_line;

		if (*first) {
			conf_error(ps, line, "[%s] appears twice (first at "
			    "line %d); merge them", name, *first);
			return;
		}
		*first = line;
		ps->kind = name[0] == 'd' ? SECT_DAEMON : SECT_AWS;
		return;
	}
	if (strncmp(name, "profile", 7) != 0 ||
	    (name[7] != '\0' && name[7] != ' ' && name[7] != '\t')) {
		conf_error(ps, line, "unknown section [%s]; sections are "
		    "[daemon], [aws] and [profile NAME]", name);
		return;
	}
	for (pname = name + 7; *pname == ' ' || *pname == '\t'; pname++)
		;
	if (!config_valid_profile_name(pname)) {
		conf_error(ps, line, "profile name \"%s\" must be 1 to %d "
		    "characters of A-Z, a-z, 0-9, '_', '.' and '-'", pname,
		    CONFIG_PROFILE_NAME_MAX);
		return;
	}
	for (i = 0; i < c->nprofiles; i++) {
		if (strcmp(c->profiles[i]->name, pname) == 0) {
			conf_error(ps, line, "profile \"%s\" is defined twice "
			    "(first at line %d)", pname, c->profiles[i]->line);
			return;
		}
	}
	if (c->nprofiles == CONFIG_MAX_PROFILES) {
		conf_error(ps, line, "too many profiles; at most %d are "
		    "allowed", CONFIG_MAX_PROFILES);
		return;
	}
	if ((ps->prof = conf_profile_new(ps, pname, line)) == NULL)
		return;
	c->profiles[c->nprofiles++] = ps->prof;
	ps->kind = SECT_PROFILE;
}

/*
 * Looks at a line before libinih does, to follow section headers the way
 * libinih will see them: a line whose first non-blank is '[' is a header
 * unless it is indented right after a key (then libinih continues that
 * key's value with it).  It also notes lines that must reach the handler,
 * so that every syntax error is reported, not only libinih's first one.
 */
static void
line_scan(struct parse_state *ps, char *buf)
{
	char *s = buf, *e;
	int indented;

	if (ps->line == 1 && (unsigned char)s[0] == 0xEF &&
	    (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
		s += 3;
	indented = (*s == ' ' || *s == '\t');
	while (isspace((unsigned char)*s))
		s++;
	ps->cont = 0;
	if (*s == '\0' || *s == ';' || *s == '#')
		return;
	if (indented && ps->have_prev) {
		ps->cont = 1;
		return;
	}
	if (*s != '[') {
		ps->pending = ps->line;
		return;
	}
	/* libinih ends the name at ']' or at an inline " ;" comment. */
	for (e = s + 1; *e != '\0' && *e != ']'; e++)
		if (*e == ';' && isspace((unsigned char)e[-1]))
			break;
	ps->have_prev = 0;
	if (*e != ']') {
		section_begin(ps, NULL, ps->line);
		return;
	}
	*e = '\0';
	section_begin(ps, s + 1, ps->line);
	*e = ']';
}

/*
 * A line that should have reached the handler did not: libinih found no
 * '=' or ':' in it.  Noticed when the next line is read, or at the end.
 */
static void
pending_flush(struct parse_state *ps)
{
	if (ps->pending) {
		conf_error(ps, ps->pending, "syntax error: expected "
		    "\"key = value\", a [section] header or a comment");
		ps->pending = 0;
	}
}

/*
 * The libinih reader: getline that counts lines.  A line longer than
 * libinih's buffer would arrive in pieces, and libinih would silently
 * cut the value; a NUL byte would end it early just as silently (fgets
 * and strlen did so, and shifted the lines after it).  Such a line is
 * reported (a long comment excepted), and libinih is handed an empty line
 * in its place.  Thus libinih's own line count always equals ours.
 */
static char *
conf_reader(char *buf, int size, void *arg)
{
	struct parse_state *ps = arg;
	const char *s;
	size_t len;
	ssize_t n;

	pending_flush(ps);
	if (size < 2 || (n = getline(&ps->lbuf, &ps->lcap, ps->fp)) == -1)
		return NULL;
	ps->line++;
	len = (size_t)n;
	if (len > 0 && ps->lbuf[len - 1] == '\n')
		len--;
	if (memchr(ps->lbuf, '\0', len) != NULL) {
		conf_error(ps, ps->line, "line contains a NUL byte");
		goto empty;
	}
	if (len > (size_t)size - 2) {
		for (s = ps->lbuf; isspace((unsigned char)*s); s++)
			;
		if (*s != ';' && *s != '#')
			conf_error(ps, ps->line, "line is longer than %d "
			    "characters", size - 2);
		goto empty;
	}
	memcpy(buf, ps->lbuf, (size_t)n);
	buf[n] = '\0';
	line_scan(ps, buf);
	return buf;
empty:
	buf[0] = '\n';
	buf[1] = '\0';
	ps->cont = 0;
	return buf;
}

/*
 * A value must be UTF-8: it reaches job rows and the JSON of status, which
 * cannot carry other bytes (a file saved in Latin-1, say).  Returns 1 when
 * it is, or 0 after recording the problem.
 */
static int
value_utf8(struct parse_state *ps, const char *name, const char *value)
{
	if (config_utf8_valid(value, strlen(value)) == strlen(value))
		return 1;
	conf_error(ps, ps->line, "the value of \"%s\" is not valid UTF-8; "
	    "save the file as UTF-8", name);
	return 0;
}

/*
 * The libinih handler, once per key (and per continuation line).  It
 * always returns 1: problems are recorded here with their line, so
 * libinih's return value only carries its own syntax errors.
 */
static int
conf_handler(void *arg, const char *section, const char *name,
    const char *value)
{
	struct parse_state *ps = arg;
	int key;

	(void)section;	/* libinih truncates it; ps->sect_name is whole */
	ps->pending = 0;
	ps->have_prev = 1;
	if (ps->cont) {
		if (ps->kind == SECT_IGNORE)
			return 1;
		if (value_utf8(ps, name, value))
			conf_key_continue(ps, name, value);
		else if (ps->last_key != -1)
			ps->keybad[ps->last_key] = 1;
		return 1;
	}

	switch (ps->kind) {
	case SECT_IGNORE:
		return 1;
	case SECT_NONE:
		conf_error(ps, ps->line, "key \"%s\" is outside any section; "
		    "put it under [daemon], [aws] or [profile NAME]", name);
		return 1;
	case SECT_DAEMON:
	case SECT_AWS:
	case SECT_PROFILE:
		break;
	}
	ps->last_key = key = conf_key_lookup(ps->kind, name);
	if (key == -1) {
		conf_error(ps, ps->line, "unknown key \"%s\" in [%s]", name,
		    conf_sect_label(ps));
		return 1;
	}
	if (ps->keyline[key]) {
		conf_error(ps, ps->line, "duplicate key \"%s\" in [%s] (first "
		    "set at line %d)", name, conf_sect_label(ps),
		    ps->keyline[key]);
		ps->last_key = -1;
		return 1;
	}
	ps->keyline[key] = ps->line;
	if (!value_utf8(ps, name, value)) {
		ps->keybad[key] = 1;
		return 1;
	}
	conf_key_set(ps, key, name, value);
	return 1;
}

static struct config *
config_new(struct parse_state *ps, const char *path)
{
	struct config *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	ps->conf = c;
	c->path = conf_strdup(ps, path);
	conf_defaults(ps);
	return c;
}

struct config *
config_load(const char *path, char *errs, size_t errlen)
{
	struct parse_state ps;
	struct config *c = NULL;
	size_t i;
	int rc;

	memset(&ps, 0, sizeof(ps));
	ps.path = path;
	ps.last_key = -1;
	if (errs != NULL && errlen > 0)
		errs[0] = '\0';
	if ((c = config_new(&ps, path)) == NULL) {
		ps.oom = 1;
		goto fail;
	}
	if ((ps.fp = fopen(path, "re")) == NULL) {
		conf_error(&ps, 0, "cannot open: %s", strerror(errno));
		goto fail;
	}
	rc = ini_parse_stream(conf_reader, &ps, conf_handler, &ps);
	pending_flush(&ps);
	if (ferror(ps.fp))
		conf_error(&ps, 0, "read error after line %d", ps.line);
	section_finish(&ps);
	if (rc > 0 && !error_has_line(&ps, rc))
		conf_error(&ps, rc, "syntax error");
	else if (rc < 0)
		ps.oom = 1;
	conf_resolve(&ps);
	if (ps.nerrs > 0 || ps.oom)
		goto fail;
	fclose(ps.fp);
	free(ps.lbuf);
	free(ps.errs);
	return c;

fail:
	errors_format(&ps, errs, errlen);
	if (ps.fp != NULL)
		fclose(ps.fp);
	free(ps.lbuf);
	section_finish(&ps);
	for (i = 0; i < ps.nerrs; i++)
		free(ps.errs[i].msg);
	free(ps.errs);
	config_free(c);
	return NULL;
}

struct profile *
config_profile(const struct config *c, const char *name)
{
	int i;

	for (i = 0; i < c->nprofiles; i++)
		if (strcmp(c->profiles[i]->name, name) == 0)
			return c->profiles[i];
	return NULL;
}

