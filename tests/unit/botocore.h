/*
 * The botocore side of the request-shape cross-checks, shared by the test
 * files that have tests/sigv4_botocore.py sign or serialize requests again.
 * Include after t.h.
 *
 *   take()/taken_free()/hdr()  a built struct http_req taken apart into
 *                              method, URL, header lines and memory body
 *   botocore_shape()           the script's JSON form of a taken request
 *   botocore_run()             runs the script (BCDAD_PYTHON, else
 *   botocore_run_file()        /usr/bin/python3) on a JSON array; its
 *                              stdout lines, one a shape
 *   botocore_split()           a signing line cut at its tab
 *   botocore_crosscheck()      every request of a test file signed again
 *                              by botocore: the same Authorization
 */
#ifndef BOTOCORE_H
#define BOTOCORE_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "util/http.h"
#include "aws/sigv4.h"
#include "t.h"

#define BOTOCORE_SCRIPT	"tests/sigv4_botocore.py"

/* A built request, taken apart. */
#define MAXHDR	16

struct taken {
	const char	*method;
	const char	*url;
	char		*name[MAXHDR];
	char		*value[MAXHDR];
	size_t		 n;
	int		 nexpect;	/* "Expect:" lines */
	int		 bad;		/* a line without ": " */
	const char	*body;		/* memory body (or what the file set) */
	size_t		 body_len;
};

static inline void
take(struct http_req *r, struct taken *t)
{
	const struct curl_slist *l;
	const char *colon;

	memset(t, 0, sizeof(*t));
	t->method = http_req_method(r);
	t->url = http_req_url(r);
	for (l = http_req_headers(r); l != NULL; l = l->next) {
		if (strcmp(l->data, "Expect:") == 0) {
			t->nexpect++;
			continue;
		}
		if ((colon = strstr(l->data, ": ")) == NULL ||
		    t->n == MAXHDR) {
			t->bad++;
			continue;
		}
		t->name[t->n] = strndup(l->data, (size_t)(colon - l->data));
		t->value[t->n] = strdup(colon + 2);
		t->n++;
	}
	t->body = http_req_body_mem(r, &t->body_len);
}

static inline void
taken_free(struct taken *t)
{
	size_t i;

	for (i = 0; i < t->n; i++) {
		free(t->name[i]);
		free(t->value[i]);
	}
	memset(t, 0, sizeof(*t));
}

/* The value of the header named name (any case), or NULL. */
static inline const char *
hdr(const struct taken *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (strcasecmp(t->name[i], name) == 0)
			return t->value[i];
	return NULL;
}

/*
 * The signing shape of a taken request for the script: its headers but
 * X-Amz-Date and Authorization (botocore adds its own), the body in hex,
 * and c's keys (and token, if any) at time stamp.
 */
static inline json_t *
botocore_shape(const struct taken *t, const char *region,
    const char *service, const char *stamp, const struct aws_creds *c,
    int s3)
{
	json_t *h = json_array(), *o;
	char *hex;
	size_t i;

	for (i = 0; i < t->n; i++) {
		if (strcasecmp(t->name[i], "Authorization") == 0 ||
		    strcasecmp(t->name[i], "X-Amz-Date") == 0)
			continue;
		json_array_append_new(h, json_pack("[ss]", t->name[i],
		    t->value[i]));
	}
	if ((hex = malloc(2 * t->body_len + 1)) == NULL)
		abort();
	sigv4_hex((const unsigned char *)(t->body ? t->body : ""),
	    t->body_len, hex);
	o = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:s, s:s, s:o, "
	    "s:b}",
	    "method", t->method, "url", t->url, "headers", h,
	    "body_hex", hex, "region", region, "service", service,
	    "time", stamp, "access_key_id", c->access_key_id,
	    "secret_access_key", c->secret_access_key,
	    "token", c->session_token ? json_string(c->session_token) :
	    json_null(), "s3", s3);
	if (o == NULL)
		abort();
	if (s3)
		json_object_set_new(o, "unsigned_payload", json_false());
	free(hex);
	return o;
}

/*
 * Runs the script with arg ("" for none) on the JSON array in the file at
 * path: its stdout lines, at most max of them (more is a failure), in
 * *nlines.  NULL (and *nlines 0) when it could not run.
 */
static inline char **
botocore_run_file(const char *arg, const char *path, size_t max,
    size_t *nlines)
{
	const char *py = getenv("BCDAD_PYTHON");
	char cmd[1024], **lines = NULL, *line = NULL;
	size_t cap = 0;
	ssize_t len;
	FILE *p;
	int status;

	*nlines = 0;
	if (py == NULL || *py == '\0')
		py = "/usr/bin/python3";
	if (access(BOTOCORE_SCRIPT, R_OK) != 0) {
		T_FAIL("%s not found: run the test from the repository root",
		    BOTOCORE_SCRIPT);
		return NULL;
	}
	snprintf(cmd, sizeof(cmd), "'%s' %s%s%s < %s", py, BOTOCORE_SCRIPT,
	    *arg != '\0' ? " " : "", arg, path);
	if ((p = popen(cmd, "r")) == NULL) {
		T_FAIL("popen %s: %s", cmd, strerror(errno));
		return NULL;
	}
	while ((len = getline(&line, &cap, p)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (*nlines >= max) {
			T_FAIL("botocore printed more lines than shapes");
			break;
		}
		if ((lines = realloc(lines, (*nlines + 1) * sizeof(*lines)))
		    == NULL)
			abort();
		lines[(*nlines)++] = strdup(line);
	}
	free(line);
	status = pclose(p);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		T_FAIL("%s failed (status %d): /usr/bin/python3 needs "
		    "python3-botocore (make deps), or set BCDAD_PYTHON", cmd,
		    status);
	return lines;
}

/* botocore_run_file() on the JSON array arr, written to a temporary file. */
static inline char **
botocore_run(const char *arg, json_t *arr, size_t max, size_t *nlines)
{
	char tmp[] = "/tmp/bcdad_botocore.json.XXXXXX", **lines;
	int fd;

	*nlines = 0;
	if ((fd = mkstemp(tmp)) < 0 || json_dumpfd(arr, fd, 0) != 0) {
		T_FAIL("write %s: %s", tmp, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		return NULL;
	}
	close(fd);
	lines = botocore_run_file(arg, tmp, max, nlines);
	unlink(tmp);
	return lines;
}

static inline void
botocore_lines_free(char **lines, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
}

/*
 * Cuts a signing line at its tab: the line keeps botocore's Authorization,
 * the rest (its canonical request) is returned, or NULL without a tab.
 */
static inline char *
botocore_split(char *line)
{
	char *tab;

	if ((tab = strchr(line, '\t')) != NULL)
		*tab++ = '\0';
	return tab;
}

/* How request i of a cross-check is signed. */
struct botocore_sig {
	const char	*name;		/* of the case, for messages */
	const char	*region;
	const char	*service;
	int		 token;		/* with the session token */
	int		 s3;		/* S3SigV4Auth */
};

/*
 * Builds request i of a cross-check: sets *sig, and returns the request
 * taken apart into *t, or NULL if it could not be built.
 */
typedef struct http_req *botocore_build_fn(size_t i, struct taken *t,
    struct botocore_sig *sig);

/*
 * Every one of n requests signed again by botocore, with c's keys (its
 * token where sig.token) at time stamp, from the method, URL, headers and
 * body it carries: the Authorization headers must be equal.
 */
static inline void
botocore_crosscheck(size_t n, botocore_build_fn *build,
    const struct aws_creds *c, const char *stamp)
{
	struct taken *t = calloc(n, sizeof(*t));
	struct http_req **r = calloc(n, sizeof(*r));
	const char **name = calloc(n, sizeof(*name));
	json_t *arr = json_array();
	char **lines, *tab;
	size_t i, nlines;

	if (t == NULL || r == NULL || name == NULL)
		abort();
	for (i = 0; i < n; i++) {
		struct botocore_sig sig = { NULL, NULL, NULL, 0, 0 };
		struct aws_creds ci = *c;

		r[i] = build(i, &t[i], &sig);
		name[i] = sig.name;
		if (r[i] == NULL) {
			T_FAIL("%s: not built", name[i]);
			memset(&t[i], 0, sizeof(t[i]));
			json_array_append_new(arr, json_null());
			continue;
		}
		if (!sig.token)
			ci.session_token = NULL;
		json_array_append_new(arr, botocore_shape(&t[i], sig.region,
		    sig.service, stamp, &ci, sig.s3));
	}
	lines = botocore_run("", arr, n, &nlines);
	for (i = 0; i < nlines; i++) {
		const char *mine = hdr(&t[i], "Authorization");

		tab = botocore_split(lines[i]);
		if (mine == NULL || strcmp(lines[i], mine) != 0)
			T_FAIL("%s (%s %s): Authorization differs\n"
			    "  botocore %s\n  bcdad    %s\n"
			    "  botocore canonical request %s", name[i],
			    t[i].method, t[i].url, lines[i],
			    mine ? mine : "(null)", tab ? tab : "?");
	}
	T_EQ_INT(nlines, n);
	botocore_lines_free(lines, nlines);
	json_decref(arr);
	for (i = 0; i < n; i++) {
		taken_free(&t[i]);
		http_req_free(r[i]);
	}
	free(name);
	free(r);
	free(t);
}

#endif
