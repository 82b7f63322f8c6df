/*
 * AWS credentials, source 2: the shared credentials and config files
 * (profile AWS_PROFILE, else "default"; static keys only), and the
 * profile's region from the config file.  A file is read whole, then
 * ac_profile_parse, which does no I/O, finds the profile in its text.
 * See awscreds_int.h.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "awscreds_int.h"
#include "util/log.h"
#include "util/wipe.h"

#define INI_LINE_MAX		65536
#define READ_CHUNK		8192

/*
 * The Debian build of libinih lets a program raise its 200-byte line limit
 * at run time; session tokens are longer than that.  Where the library
 * has no such knobs the symbols are absent and long lines are reported.
 */
extern bool ini_use_stack __attribute__((weak));
extern bool ini_allow_realloc __attribute__((weak));
extern int ini_max_line __attribute__((weak));
extern int ini_initial_alloc __attribute__((weak));

/* ---------------------------------------------------------------- */
/* 2. Shared credentials and config files                           */
/* ---------------------------------------------------------------- */

/* One text being parsed: libinih reads it a line at a time. */
struct profile_text {
	const char		*name;
	int			 config;	/* "[profile NAME]" sections */
	const char		*pos, *end;	/* what is left to read */
	int			 line;
	struct ac_profile	*out;
};

static const char *const unsupported_keys[] = {
	"role_arn", "source_profile", "credential_source",
	"credential_process", "web_identity_token_file", "sso_session",
	"sso_start_url",
};

void
ac_profile_clear(struct ac_profile *p)
{
	wipe_free(p->key);
	wipe_free(p->secret);
	wipe_free(p->token);
	free(p->region);
	memset(p, 0, sizeof(*p));
}

static int
section_matches(const struct profile_text *p, const char *section)
{
	if (!p->config)
		return strcmp(section, p->name) == 0;
	if (strcmp(p->name, "default") == 0 && strcmp(section, "default") == 0)
		return 1;
	if (strncmp(section, "profile", 7) != 0 ||
	    !isspace((unsigned char)section[7]))
		return 0;
	section += 7;
	while (isspace((unsigned char)*section))
		section++;
	return strcmp(section, p->name) == 0;
}

static int
profile_handler(void *arg, const char *section, const char *name,
    const char *value)
{
	struct profile_text *p = arg;
	struct ac_profile *out = p->out;
	char **slot = NULL;
	size_t i;

	if (!section_matches(p, section))
		return 1;
	if (strcmp(name, "aws_access_key_id") == 0)
		slot = &out->key;
	else if (strcmp(name, "aws_secret_access_key") == 0)
		slot = &out->secret;
	else if (strcmp(name, "aws_session_token") == 0)
		slot = &out->token;
	else if (strcmp(name, "region") == 0)
		slot = &out->region;
	if (slot != NULL) {
		wipe_free(*slot);
		if ((*slot = strdup(value)) == NULL)
			return 0;
		return 1;
	}
	for (i = 0; i < sizeof(unsupported_keys) / sizeof(*unsupported_keys);
	    i++)
		if (out->unsupported == NULL &&
		    strcmp(name, unsupported_keys[i]) == 0)
			out->unsupported = unsupported_keys[i];
	return 1;
}

/*
 * The libinih reader: the next line as fgets would give it, except that a
 * line longer than the buffer libinih gave is dropped whole and libinih
 * gets an empty line instead, so a token is never cut silently.
 */
static char *
text_reader(char *buf, int size, void *arg)
{
	struct profile_text *p = arg;
	const char *nl;
	size_t n, len;

	if (size < 2 || p->pos >= p->end)
		return NULL;
	n = (size_t)(p->end - p->pos);
	if (n > (size_t)size - 1)
		n = (size_t)size - 1;
	if ((nl = memchr(p->pos, '\n', n)) != NULL)
		n = (size_t)(nl - p->pos) + 1;
	memcpy(buf, p->pos, n);
	buf[n] = '\0';
	p->pos += n;
	p->line++;
	len = strlen(buf);
	if (len == (size_t)size - 1 && buf[len - 1] != '\n') {
		nl = memchr(p->pos, '\n', (size_t)(p->end - p->pos));
		p->pos = nl != NULL ? nl + 1 : p->end;
		if (p->out->long_line == 0)
			p->out->long_line = p->line;
		buf[0] = '\n';
		buf[1] = '\0';
	}
	return buf;
}

/*
 * Finds profile name in the text of a credentials file (config 0:
 * sections "[NAME]") or of a config file (config 1: "[profile NAME]", and
 * "[default]"), len bytes that need no NUL, and fills out, which is
 * overwritten.  Does no I/O.  Returns 0, or -ENOMEM; out is to be
 * cleared with ac_profile_clear either way.
 */
int
ac_profile_parse(const char *text, size_t len, const char *name, int config,
    struct ac_profile *out)
{
	struct profile_text p = { .name = name, .config = config,
	    .pos = text, .end = text + len, .out = out };
	bool stack = false, realloc_ok = false;
	int max_line = 0, initial = 0, rc;

	memset(out, 0, sizeof(*out));
	if (&ini_max_line != NULL && &ini_use_stack != NULL &&
	    &ini_allow_realloc != NULL && &ini_initial_alloc != NULL) {
		stack = ini_use_stack;
		realloc_ok = ini_allow_realloc;
		max_line = ini_max_line;
		initial = ini_initial_alloc;
		ini_use_stack = false;
		ini_allow_realloc = false;
		ini_max_line = INI_LINE_MAX;
		ini_initial_alloc = INI_LINE_MAX;
	}
	rc = ini_parse_stream(text_reader, &p, profile_handler, &p);
	if (&ini_max_line != NULL && &ini_use_stack != NULL &&
	    &ini_allow_realloc != NULL && &ini_initial_alloc != NULL) {
		ini_use_stack = stack;
		ini_allow_realloc = realloc_ok;
		ini_max_line = max_line;
		ini_initial_alloc = initial;
	}
	if (rc < 0)
		return -ENOMEM;
	out->error_line = rc;
	return 0;
}

/*
 * The whole file as a NUL-terminated string of *lenp bytes, or NULL with
 * errno set.  A read error ends the text where it happened, as it ended
 * libinih's line-by-line reading before (a directory reads as empty).
 * The text may hold keys: every buffer that held it is wiped.
 */
static char *
read_text(const char *path, size_t *lenp)
{
	FILE *fp;
	char *buf = NULL, *p;
	size_t len = 0, size = 0, n;

	if ((fp = fopen(path, "re")) == NULL)
		return NULL;
	for (;;) {
		if (size - len < 2) {
			if ((p = malloc(size ? size * 2 : READ_CHUNK)) == NULL)
				goto nomem;
			if (buf != NULL) {
				memcpy(p, buf, len);
				explicit_bzero(buf, len);
				free(buf);
			}
			buf = p;
			size = size ? size * 2 : READ_CHUNK;
		}
		if ((n = fread(buf + len, 1, size - len - 1, fp)) == 0)
			break;
		len += n;
	}
	fclose(fp);
	buf[len] = '\0';
	*lenp = len;
	return buf;
nomem:
	if (buf != NULL) {
		explicit_bzero(buf, len);
		free(buf);
	}
	fclose(fp);
	errno = ENOMEM;
	return NULL;
}

/*
 * Reads what one file says about profile name into out.  A missing file
 * is no error (the SDKs ignore it too).  Returns 0, or -1 with a reason in
 * ac->why.
 */
static int
profile_load(struct awscreds *ac, const char *path, const char *name,
    int config, struct ac_profile *out)
{
	const char *what = config ? "config" : "credentials";
	char *text;
	size_t len;
	int rc, saved;

	if ((text = read_text(path, &len)) == NULL) {
		saved = errno;
		if (saved == ENOENT)
			log_debug("AWS %s file %s does not exist", what, path);
		else if (saved == ENOMEM)
			ac_why_add(ac, "shared files: out of memory reading %s",
			    path);
		else
			ac_why_add(ac, "shared files: cannot read %s: %s",
			    path, strerror(saved));
		return saved == ENOENT ? 0 : -1;
	}
	rc = ac_profile_parse(text, len, name, config, out);
	explicit_bzero(text, len);
	free(text);
	if (rc != 0) {
		ac_why_add(ac, "shared files: out of memory reading %s", path);
		return -1;
	}
	if (out->long_line) {
		ac_why_add(ac, "shared files: %s line %d is too long for the INI "
		    "parser", path, out->long_line);
		return -1;
	}
	if (out->error_line > 0)
		log_debug("AWS %s file %s: syntax error at line %d", what, path,
		    out->error_line);
	return 0;
}

/* "~/x" → "$HOME/x"; other paths are copied. */
static char *
expand_home(const char *path)
{
	const char *home;
	char *out;

	if (path[0] != '~' || (path[1] != '/' && path[1] != '\0'))
		return strdup(path);
	if ((home = ac_env("HOME")) == NULL)
		return NULL;
	if (asprintf(&out, "%s%s", home, path + 1) < 0)
		return NULL;
	return out;
}

static char *
file_path(const char *var, const char *dflt)
{
	const char *v = ac_env(var), *home;
	char *out;

	if (v != NULL)
		return expand_home(v);
	if ((home = ac_env("HOME")) == NULL)
		return NULL;
	if (asprintf(&out, "%s/.aws/%s", home, dflt) < 0)
		return NULL;
	return out;
}

static const char *
profile_name(void)
{
	const char *p = ac_env("AWS_PROFILE");

	return p ? p : "default";
}

/* The selected profile's region from the config file, or NULL. */
char *
ac_profile_region(struct awscreds *ac)
{
	struct ac_profile cf = { 0 };
	char *path, *region = NULL, saved[WHY_MAX];

	if ((path = file_path("AWS_CONFIG_FILE", "config")) == NULL)
		return NULL;
	/* Only the region matters here: keep the fetch's reasons intact. */
	memcpy(saved, ac->why, sizeof(saved));
	if (profile_load(ac, path, profile_name(), 1, &cf) == 0 &&
	    cf.region != NULL && *cf.region) {
		region = cf.region;
		cf.region = NULL;
	}
	memcpy(ac->why, saved, sizeof(saved));
	ac_profile_clear(&cf);
	free(path);
	return region;
}

int
ac_from_profile(struct awscreds *ac)
{
	struct ac_profile cr = { 0 }, cf = { 0 }, *use = NULL;
	const char *name = profile_name(), *usepath = NULL;
	char *crpath = NULL, *cfpath = NULL;
	int rc = 0;

	crpath = file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
	cfpath = file_path("AWS_CONFIG_FILE", "config");
	if ((crpath && profile_load(ac, crpath, name, 0, &cr) != 0) ||
	    (cfpath && profile_load(ac, cfpath, name, 1, &cf) != 0)) {
		rc = -1;
		goto out;
	}
	if (cr.key != NULL || cr.secret != NULL) {
		use = &cr;
		usepath = crpath;
	} else if (cf.key != NULL || cf.secret != NULL) {
		use = &cf;
		usepath = cfpath;
	}
	if (use != NULL) {
		if (use->key == NULL || use->secret == NULL) {
			ac_why_add(ac, "shared files: profile \"%s\" in %s has %s "
			    "but no %s", name, usepath,
			    use->key ? "aws_access_key_id" :
			    "aws_secret_access_key",
			    use->key ? "aws_secret_access_key" :
			    "aws_access_key_id");
			rc = -1;
		} else if (ac_fetched_set(ac, use->key, use->secret, use->token,
		    0) != 0) {
			ac_why_add(ac, "shared files: out of memory");
			rc = -1;
		} else {
			log_debug("AWS credentials: profile \"%s\" from %s",
			    name, usepath);
			rc = 1;
		}
	} else if (cr.unsupported || cf.unsupported) {
		const char *k = cr.unsupported ? cr.unsupported :
		    cf.unsupported;

		log_debug("AWS profile \"%s\" uses %s, which bcdad does not "
		    "support; trying the next source", name, k);
		ac_why_add(ac, "shared files: profile \"%s\" uses %s, which "
		    "bcdad does not support (give it static keys, or use "
		    "web identity or an instance role)", name, k);
		rc = -1;
	} else if (ac_env("AWS_PROFILE") != NULL) {
		ac_why_add(ac, "shared files: profile \"%s\" has no keys in %s "
		    "or %s", name, crpath ? crpath : "(no HOME)",
		    cfpath ? cfpath : "(no HOME)");
		rc = -1;
	}
out:
	ac_profile_clear(&cr);
	ac_profile_clear(&cf);
	free(crpath);
	free(cfpath);
	return rc;
}
