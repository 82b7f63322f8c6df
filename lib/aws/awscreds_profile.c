/*
 * AWS credentials, source 2: the shared credentials and config files
 * (profile AWS_PROFILE, else "default"; static keys only), and the
 * profile's region from the config file.  See awscreds_int.h.
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

#define INI_LINE_MAX		65536

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

struct profile {
	const char	*name;
	int		 config;	/* sections are "profile NAME" */
	const char	*path;
	int		 found;
	int		 line, long_line;
	FILE		*fp;
	char		*key, *secret, *token, *region;
	const char	*unsupported;	/* first unsupported key seen */
};

static const char *const unsupported_keys[] = {
	"role_arn", "source_profile", "credential_source",
	"credential_process", "web_identity_token_file", "sso_session",
	"sso_start_url",
};

static void
profile_clear(struct profile *p)
{
	ac_wipe_free(p->key);
	ac_wipe_free(p->secret);
	ac_wipe_free(p->token);
	free(p->region);
	p->key = p->secret = p->token = p->region = NULL;
}

static int
section_matches(const struct profile *p, const char *section)
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
	struct profile *p = arg;
	char **slot = NULL;
	size_t i;

	if (!section_matches(p, section))
		return 1;
	p->found = 1;
	if (strcmp(name, "aws_access_key_id") == 0)
		slot = &p->key;
	else if (strcmp(name, "aws_secret_access_key") == 0)
		slot = &p->secret;
	else if (strcmp(name, "aws_session_token") == 0)
		slot = &p->token;
	else if (strcmp(name, "region") == 0)
		slot = &p->region;
	if (slot != NULL) {
		ac_wipe_free(*slot);
		if ((*slot = strdup(value)) == NULL)
			return 0;
		return 1;
	}
	for (i = 0; i < sizeof(unsupported_keys) / sizeof(*unsupported_keys);
	    i++)
		if (p->unsupported == NULL &&
		    strcmp(name, unsupported_keys[i]) == 0)
			p->unsupported = unsupported_keys[i];
	return 1;
}

/*
 * The libinih reader: fgets that notices a line longer than the buffer
 * libinih gave, drops the rest of it and hands libinih an empty line, so
 * a token is never cut silently.
 */
static char *
profile_reader(char *buf, int size, void *arg)
{
	struct profile *p = arg;
	size_t len;
	int c;

	if (size < 2 || fgets(buf, size, p->fp) == NULL)
		return NULL;
	p->line++;
	len = strlen(buf);
	if (len == (size_t)size - 1 && buf[len - 1] != '\n') {
		while ((c = getc(p->fp)) != EOF && c != '\n')
			;
		if (p->long_line == 0)
			p->long_line = p->line;
		buf[0] = '\n';
		buf[1] = '\0';
	}
	return buf;
}

/*
 * Reads the profile's keys from one file.  A missing file is no error
 * (the SDKs ignore it too).  Returns 0, or -1 with a reason in ac->why.
 */
static int
profile_load(struct awscreds *ac, struct profile *p)
{
	bool stack = false, realloc_ok = false;
	int max_line = 0, initial = 0, rc;

	if ((p->fp = fopen(p->path, "re")) == NULL) {
		if (errno != ENOENT)
			ac_why_add(ac, "shared files: cannot read %s: %s",
			    p->path, strerror(errno));
		else
			log_debug("AWS %s file %s does not exist",
			    p->config ? "config" : "credentials", p->path);
		return errno == ENOENT ? 0 : -1;
	}
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
	rc = ini_parse_stream(profile_reader, p, profile_handler, p);
	if (&ini_max_line != NULL && &ini_use_stack != NULL &&
	    &ini_allow_realloc != NULL && &ini_initial_alloc != NULL) {
		ini_use_stack = stack;
		ini_allow_realloc = realloc_ok;
		ini_max_line = max_line;
		ini_initial_alloc = initial;
	}
	fclose(p->fp);
	p->fp = NULL;
	if (rc < 0) {
		ac_why_add(ac, "shared files: out of memory reading %s", p->path);
		return -1;
	}
	if (p->long_line) {
		ac_why_add(ac, "shared files: %s line %d is too long for the INI "
		    "parser", p->path, p->long_line);
		return -1;
	}
	if (rc > 0)
		log_debug("AWS %s file %s: syntax error at line %d",
		    p->config ? "config" : "credentials", p->path, rc);
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
	struct profile cf = { .name = profile_name(), .config = 1 };
	char *path, *region = NULL, saved[WHY_MAX];

	if ((path = file_path("AWS_CONFIG_FILE", "config")) == NULL)
		return NULL;
	cf.path = path;
	/* Only the region matters here: keep the fetch's reasons intact. */
	memcpy(saved, ac->why, sizeof(saved));
	if (profile_load(ac, &cf) == 0 && cf.region != NULL && *cf.region) {
		region = cf.region;
		cf.region = NULL;
	}
	memcpy(ac->why, saved, sizeof(saved));
	profile_clear(&cf);
	free(path);
	return region;
}

int
ac_from_profile(struct awscreds *ac)
{
	struct profile cr = { .name = profile_name(), .config = 0 };
	struct profile cf = { .name = profile_name(), .config = 1 };
	struct profile *use = NULL;
	char *crpath = NULL, *cfpath = NULL;
	int rc = 0;

	crpath = file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
	cfpath = file_path("AWS_CONFIG_FILE", "config");
	cr.path = crpath;
	cf.path = cfpath;
	if ((crpath && profile_load(ac, &cr) != 0) ||
	    (cfpath && profile_load(ac, &cf) != 0)) {
		rc = -1;
		goto out;
	}
	if (cr.key != NULL || cr.secret != NULL)
		use = &cr;
	else if (cf.key != NULL || cf.secret != NULL)
		use = &cf;
	if (use != NULL) {
		if (use->key == NULL || use->secret == NULL) {
			ac_why_add(ac, "shared files: profile \"%s\" in %s has %s "
			    "but no %s", use->name, use->path,
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
			    use->name, use->path);
			rc = 1;
		}
	} else if (cr.unsupported || cf.unsupported) {
		const char *k = cr.unsupported ? cr.unsupported :
		    cf.unsupported;

		log_debug("AWS profile \"%s\" uses %s, which bcdad does not "
		    "support; trying the next source", cr.name, k);
		ac_why_add(ac, "shared files: profile \"%s\" uses %s, which "
		    "bcdad does not support (give it static keys, or use "
		    "web identity or an instance role)", cr.name, k);
		rc = -1;
	} else if (ac_env("AWS_PROFILE") != NULL) {
		ac_why_add(ac, "shared files: profile \"%s\" has no keys in %s "
		    "or %s", cr.name, crpath ? crpath : "(no HOME)",
		    cfpath ? cfpath : "(no HOME)");
		rc = -1;
	}
out:
	profile_clear(&cr);
	profile_clear(&cf);
	free(crpath);
	free(cfpath);
	return rc;
}
