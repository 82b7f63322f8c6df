/*
 * A control request, read: one JSON object on one line, with "version": 1
 * and a known "cmd", and each command's arguments of the right type.
 * Nothing here touches the engine, so the fuzz target (tests/fuzz/
 * fuzz_control.c) reads requests exactly as the daemon does.
 */
#include <string.h>

#include <jansson.h>

#include "bcdad.h"

static const struct {
	const char	*name;
	enum ctl_cmd	 cmd;
} cmds[] = {
	{ "status",	CTL_STATUS },
	{ "ping",	CTL_STATUS },
	{ "history",	CTL_HISTORY },
	{ "run",	CTL_RUN },
	{ "cancel",	CTL_CANCEL },
	{ "retry",	CTL_RETRY },
};

/*
 * Reads the request in line[0..len).  Returns 0 with *r filled (its
 * strings live until ctl_req_free), or -1 with *err saying what is wrong.
 */
int
ctl_req_parse(const char *line, size_t len, struct ctl_req *r,
    const char **err)
{
	json_t *v;
	const char *cmd;
	size_t i;

	memset(r, 0, sizeof(*r));
	/* Duplicate keys are refused: which "cmd" would be meant? */
	if ((r->json = json_loadb(line, len, JSON_REJECT_DUPLICATES,
	    NULL)) == NULL || !json_is_object(r->json)) {
		*err = "request is not a JSON object";
		goto fail;
	}
	v = json_object_get(r->json, "version");
	if (!json_is_integer(v) || json_integer_value(v) != CTL_VERSION) {
		*err = "unsupported protocol version (this daemon speaks "
		    "version 1)";
		goto fail;
	}
	if ((cmd = json_string_value(json_object_get(r->json, "cmd"))) ==
	    NULL) {
		*err = "request has no \"cmd\"";
		goto fail;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmd, cmds[i].name) == 0)
			break;
	if (i == sizeof(cmds) / sizeof(cmds[0])) {
		*err = "unknown command";
		goto fail;
	}
	r->cmd = cmds[i].cmd;
	/* As given: cancel -1 is answered about job -1, not job 0. */
	v = json_object_get(r->json, "job");
	r->job = json_is_integer(v) ? json_integer_value(v) : 0;
	r->profile = json_string_value(json_object_get(r->json, "profile"));
	r->since = json_string_value(json_object_get(r->json, "since"));
	r->full = json_is_true(json_object_get(r->json, "full"));
	/* A page: "limit" (1 to CTL_PAGE_MAX), "before", "profile". */
	v = json_object_get(r->json, "limit");
	r->page.limit = !json_is_integer(v) || json_integer_value(v) < 1 ?
	    50 : json_integer_value(v) > CTL_PAGE_MAX ? CTL_PAGE_MAX :
	    (int)json_integer_value(v);
	v = json_object_get(r->json, "before");
	r->page.before = json_is_integer(v) && json_integer_value(v) > 0 ?
	    json_integer_value(v) : 0;
	r->page.profile = r->profile;
	switch (r->cmd) {
	case CTL_RUN:
		if (r->profile == NULL) {
			*err = "run needs \"profile\"";
			goto fail;
		}
		break;
	case CTL_HISTORY:
	case CTL_CANCEL:
	case CTL_RETRY:
		if (!json_is_integer(json_object_get(r->json, "job"))) {
			*err = r->cmd == CTL_HISTORY ? "history needs an "
			    "integer \"job\"" : "cancel and retry need an "
			    "integer \"job\"";
			goto fail;
		}
		break;
	case CTL_STATUS:
		break;
	}
	return 0;
fail:
	ctl_req_free(r);
	return -1;
}

void
ctl_req_free(struct ctl_req *r)
{
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}
