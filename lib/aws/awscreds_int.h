/*
 * The private parts of lib/awscreds*.c, the credentials chain split by
 * concern: awscreds.c (the chain, the cache and its refresh windows, the
 * waiters, the environment, region resolution), awscreds_profile.c (the
 * shared credentials and config files), awscreds_remote.c (web identity
 * through STS, ECS container credentials) and awscreds_imds.c (the IMDSv2
 * client and the instance role).  Nothing outside lib/awscreds*.c
 * includes this but the fuzz targets (tests/fuzz/), which call the
 * parsers of outside input directly.
 */
#ifndef BCDAD_AWSCREDS_INT_H
#define BCDAD_AWSCREDS_INT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "awscreds.h"
#include "util/http.h"
#include "sigv4.h"

#define WHY_MAX			2048

enum fetch_step {
	STEP_ENV,
	STEP_PROFILE,
	STEP_WEB_IDENTITY,
	STEP_CONTAINER,
	STEP_IMDS,
	STEP_END,
};

struct waiter {
	awscreds_cb		 cb;
	awscreds_region_cb	 rcb;
	void			*arg;
	struct waiter		*next;
};

struct imds_call;
typedef void (*imds_done_cb)(struct imds_call *, const char *body,
    const char *error);

/* One IMDS GET with the IMDSv2 token handling around it. */
struct imds_call {
	struct awscreds	*ac;
	struct http_req	*req;
	char		*path;		/* "/latest/meta-data/..." */
	char		*endpoint;	/* without a trailing '/' */
	int		 getting;	/* 0: token PUT in flight, 1: GET */
	int		 retried;	/* already got a new token after 401 */
	int		 transient;	/* the failure may heal (see imds_end) */
	imds_done_cb	 done;
};

struct awscreds {
	uv_loop_t	*loop;
	struct http	*http;
	char		*opt_region;
	char		*opt_sts;

	/* What awscreds_get hands out. */
	struct aws_creds creds;
	int		 have_creds;
	const char	*source;
	int64_t		 retry_at;	/* no refresh before (after a failure) */

	/* The fetch in flight. */
	int		 fetching;
	enum fetch_step	 step;
	struct waiter	*waiters, **waiters_tail;
	struct waiter	*calling;	/* waiters being called back now */
	struct http_req	*req;		/* STS or ECS */
	struct imds_call imds;
	struct aws_creds fetched;
	char		*role_arn;	/* web identity, for messages */
	char		 why[WHY_MAX];

	/* IMDSv2 session token. */
	char		*imds_token;
	char		*imds_token_ep;
	int64_t		 imds_token_exp;

	/* Region. */
	char		*region;
	int		 region_fetching;
	struct waiter	*rwaiters, **rwaiters_tail;
	struct imds_call rimds;
};

/* What one shared credentials or config file says about one profile. */
struct ac_profile {
	char		*key, *secret, *token, *region;	/* NULL: absent */
	const char	*unsupported;	/* first unsupported key seen */
	int		 long_line;	/* first line too long to parse, or 0 */
	int		 error_line;	/* first syntax error, or 0 */
};

/* awscreds.c */
void	ac_chain_next(struct awscreds *ac);
int	ac_creds_from_json(struct awscreds *ac, const char *label,
	    const char *body, int strict);
const char	*ac_env(const char *name);
void	ac_fetch_ok(struct awscreds *ac, const char *source);
int	ac_fetched_set(struct awscreds *ac, const char *id, const char *secret,
	    const char *token, int64_t expiration);
int64_t	ac_now_unix(void);
char	*ac_region_local(struct awscreds *ac);
void	ac_rtrim(char *s);
void	ac_why_add(struct awscreds *ac, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* awscreds_profile.c */
int	ac_from_profile(struct awscreds *ac);
int	ac_profile_parse(const char *text, size_t len, const char *name,
	    int config, struct ac_profile *out);
void	ac_profile_clear(struct ac_profile *p);
char	*ac_profile_region(struct awscreds *ac);

/* awscreds_remote.c */
int	ac_creds_from_sts(struct awscreds *ac, const char *url,
	    const struct http_resp *resp);
int	ac_from_container(struct awscreds *ac);
int	ac_from_web_identity(struct awscreds *ac);

/* awscreds_imds.c */
void	ac_from_imds(struct awscreds *ac);
void	ac_imds_call_free(struct awscreds *ac, struct imds_call *c);
void	ac_imds_get(struct imds_call *c, const char *path, imds_done_cb done);
void	ac_imds_token_drop(struct awscreds *ac);

#endif
