/*
 * Tests of lib/aws/awscreds.c: the real code on a real uv loop with lib/util/http.c,
 * against tests/emulator/imds_fake.py (IMDSv2, ECS and STS on loopback),
 * started once as a child process.
 *
 * Every test begins with env_reset(): every AWS_* variable is removed and
 * HOME points to a fresh temporary directory, so the developer's own
 * ~/.aws and environment are never read, and the fake is reset.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <uv.h>

#include "t.h"
#include "aws/awscreds.h"
#include "util/http.h"
#include "util/log.h"

extern char **environ;

static uv_loop_t	 loop;
static struct http	*http;
static pid_t		 fake_pid = -1;
static char		 fake_url[64];
static char		 tmpdir[256];
static int		 home_seq;

struct result {
	int	 called;
	int	 sync;		/* called before awscreds_get returned */
	int	 transient;	/* the region's failure may heal */
	char	*key, *secret, *token, *err, *region;
	char	 source[32];
	int64_t	 exp;
};

static int in_call;

/* ---------------------------------------------------------------- */
/* The fake                                                         */
/* ---------------------------------------------------------------- */

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
	char **buf = arg;
	size_t old = *buf ? strlen(*buf) : 0, len = size * n;
	char *q;

	if ((q = realloc(*buf, old + len + 1)) == NULL)
		return 0;
	memcpy(q + old, p, len);
	q[old + len] = '\0';
	*buf = q;
	return len;
}

/* A blocking request to the fake (test control only); returns the body. */
static char *
fake_req(const char *method, const char *path, const char *body,
    const char *hdr, long *status)
{
	struct curl_slist *h = NULL;
	char url[256], *out = NULL;
	CURL *e;

	snprintf(url, sizeof(url), "%s%s", fake_url, path);
	if ((e = curl_easy_init()) == NULL)
		return NULL;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (body != NULL)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	else if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
	if (hdr != NULL)
		h = curl_slist_append(h, hdr);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
	if (curl_easy_perform(e) != CURLE_OK)
		T_FAIL("request to the fake %s failed", path);
	if (status != NULL)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	return out ? out : strdup("");
}

static void
fake_config(const char *json)
{
	long status = 0;

	free(fake_req("POST", "/_fake/config", json, NULL, &status));
	T_EQ_INT(status, 200);
}

static long long
fake_stat(const char *name)
{
	char *body = fake_req("GET", "/_fake/stats", NULL, NULL, NULL);
	json_t *j = json_loads(body ? body : "", 0, NULL);
	long long v = json_integer_value(json_object_get(j, name));

	json_decref(j);
	free(body);
	return v;
}

static char *
fake_stat_str(const char *name)
{
	char *body = fake_req("GET", "/_fake/stats", NULL, NULL, NULL);
	json_t *j = json_loads(body ? body : "", 0, NULL);
	const char *s = json_string_value(json_object_get(j, name));
	char *out = s ? strdup(s) : NULL;

	json_decref(j);
	free(body);
	return out;
}

static void
fake_stop(void)
{
	char cmd[300];
	int st;

	if (fake_pid > 0) {
		kill(fake_pid, SIGTERM);
		waitpid(fake_pid, &st, 0);
	}
	if (tmpdir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
	if (http != NULL) {
		http_free(http);
		uv_run(&loop, UV_RUN_DEFAULT);
		uv_loop_close(&loop);
	}
	curl_global_cleanup();
}

/* The fake's path: beside this file, or from BCDAD_SRCDIR. */
static void
fake_path(char *buf, size_t len)
{
	const char *src = getenv("BCDAD_SRCDIR");
	char *slash;

	if (src != NULL) {
		snprintf(buf, len, "%s/tests/emulator/imds_fake.py", src);
		return;
	}
	snprintf(buf, len, "%s", __FILE__);
	if ((slash = strrchr(buf, '/')) != NULL) {
		*slash = '\0';
		snprintf(slash, len - (size_t)(slash - buf),
		    "/../emulator/imds_fake.py");
	}
	if (access(buf, R_OK) != 0)
		snprintf(buf, len, "tests/emulator/imds_fake.py");
}

static void
setup_once(void)
{
	static char python[] = "/usr/bin/python3", port_opt[] = "--port",
	    zero[] = "0", portfile_opt[] = "--portfile";
	char script[512], portfile[300], buf[32];
	char *argv[] = { python, script, port_opt, zero, portfile_opt,
	    portfile, NULL };
	FILE *f;
	int i, port = 0;

	if (http != NULL)
		return;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_awscreds.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	fake_path(script, sizeof(script));
	snprintf(portfile, sizeof(portfile), "%s/port", tmpdir);
	if (posix_spawn(&fake_pid, argv[0], NULL, NULL, argv, environ) != 0) {
		perror("posix_spawn python3");
		exit(2);
	}
	for (i = 0; i < 500 && port == 0; i++) {
		if ((f = fopen(portfile, "r")) != NULL) {
			if (fgets(buf, sizeof(buf), f) != NULL)
				port = atoi(buf);
			fclose(f);
		}
		if (port == 0)
			usleep(10000);
	}
	if (port == 0) {
		fprintf(stderr, "imds_fake.py did not start (%s)\n", script);
		exit(2);
	}
	snprintf(fake_url, sizeof(fake_url), "http://127.0.0.1:%d", port);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	uv_loop_init(&loop);
	http = http_new(&loop, 2, 10);
	atexit(fake_stop);
	log_init(LOG_LVL_ERR, 0);
}

/* ---------------------------------------------------------------- */
/* Environment, files, running the loop                             */
/* ---------------------------------------------------------------- */

static void
env_reset(void)
{
	char names[64][128], home[300], *s;
	int n = 0, i;
	char **e;

	setup_once();
	for (e = environ; *e != NULL && n < 64; e++) {
		size_t len = strcspn(*e, "=");

		if (strncmp(*e, "AWS_", 4) == 0 && len < sizeof(names[0])) {
			memcpy(names[n], *e, len);
			names[n++][len] = '\0';
		}
	}
	for (i = 0; i < n; i++)
		unsetenv(names[i]);
	snprintf(home, sizeof(home), "%s/home%d", tmpdir, ++home_seq);
	mkdir(home, 0700);
	setenv("HOME", home, 1);
	/* Never reach for the real 169.254.169.254 from a test. */
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake_url, 1);
	/* A reset that did not arrive would leave the last test's settings. */
	if ((s = fake_req("POST", "/_fake/reset", "{}", NULL, NULL)) == NULL) {
		fprintf(stderr, "the IMDS fake did not take the reset\n");
		exit(1);
	}
	free(s);
}

/* Writes content to $HOME-relative or absolute path; returns the path. */
static const char *
write_file(const char *name, const char *content)
{
	static char path[512];
	FILE *f;

	if (name[0] == '/')
		snprintf(path, sizeof(path), "%s", name);
	else
		snprintf(path, sizeof(path), "%s/%s", getenv("HOME"), name);
	if ((f = fopen(path, "w")) == NULL) {
		T_FAIL("cannot write %s", path);
		return path;
	}
	fputs(content, f);
	fclose(f);
	return path;
}

static int timed_out;

static void
on_timeout(uv_timer_t *t)
{
	(void)t;
	timed_out = 1;
}

/* Runs the loop until *flag (or !busy when flag is NULL), at most 5 s. */
static void
run_until(int *flag, struct awscreds *ac)
{
	uv_timer_t timer;

	timed_out = 0;
	uv_timer_init(&loop, &timer);
	uv_timer_start(&timer, on_timeout, 20000, 0);
	while (!timed_out && (flag ? !*flag : awscreds_busy(ac)))
		uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&timer);
	uv_close((uv_handle_t *)&timer, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	if (timed_out)
		T_FAIL("timed out after 5 s");
}

static void
result_clear(struct result *r)
{
	free(r->key);
	free(r->secret);
	free(r->token);
	free(r->err);
	free(r->region);
	memset(r, 0, sizeof(*r));
}

static struct awscreds *creds_owner;

static void
creds_cb(void *arg, const struct aws_creds *c, const char *err)
{
	struct result *r = arg;
	const char *src;

	r->called++;
	r->sync = in_call;
	if (c != NULL) {
		r->key = strdup(c->access_key_id);
		r->secret = strdup(c->secret_access_key);
		r->token = c->session_token ? strdup(c->session_token) : NULL;
		r->exp = c->expiration;
		src = awscreds_source(creds_owner);
		snprintf(r->source, sizeof(r->source), "%s", src ? src : "");
	}
	if (err != NULL)
		r->err = strdup(err);
}

static void
get(struct awscreds *ac, struct result *r)
{
	result_clear(r);
	creds_owner = ac;
	in_call = 1;
	awscreds_get(ac, creds_cb, r);
	in_call = 0;
	run_until(&r->called, ac);
	T_EQ_INT(r->called, 1);
}

static void
region_cb(void *arg, const char *region, const char *err, int transient)
{
	struct result *r = arg;

	r->called++;
	r->transient = transient;
	r->sync = in_call;
	r->region = region ? strdup(region) : NULL;
	r->err = err ? strdup(err) : NULL;
}

static void
get_region(struct awscreds *ac, struct result *r)
{
	result_clear(r);
	in_call = 1;
	awscreds_region(ac, region_cb, r);
	in_call = 0;
	run_until(&r->called, ac);
	T_EQ_INT(r->called, 1);
}

static struct awscreds *
new_ac(const char *region, const char *sts)
{
	struct awscreds_opts o = { .region = region, .sts_endpoint = sts };
	struct awscreds *ac = awscreds_new(&loop, http, &o);

	T_ASSERT(ac != NULL);
	return ac;
}

#define T_CONTAINS(hay, needle) do { \
	const char *t_h_ = (hay), *t_n_ = (needle); \
	if (t_h_ == NULL || strstr(t_h_, t_n_) == NULL) \
		T_FAIL("%s == \"%s\" lacks \"%s\"", #hay, \
		    t_h_ ? t_h_ : "(null)", t_n_); \
	} while (0)

#define CHAIN_ERR "no AWS credentials: set AWS_ACCESS_KEY_ID/" \
	"AWS_SECRET_ACCESS_KEY, a shared credentials profile, web identity, " \
	"or run on EC2 with an instance role ("

/* ---------------------------------------------------------------- */
/* Tests                                                            */
/* ---------------------------------------------------------------- */

T_TEST(test_parse_time)
{
	int64_t t = 0;

	T_EQ_INT(awscreds_parse_time("2017-05-17T15:09:54Z", &t), 0);
	T_EQ_INT(t, 1495033794);
	T_EQ_INT(awscreds_parse_time("2017-05-17T15:09:54.123456Z", &t), 0);
	T_EQ_INT(t, 1495033794);
	T_EQ_INT(awscreds_parse_time("2017-05-17T17:09:54+02:00", &t), 0);
	T_EQ_INT(t, 1495033794);
	T_EQ_INT(awscreds_parse_time("2017-05-17T10:09:54.5-0500", &t), 0);
	T_EQ_INT(t, 1495033794);
	T_EQ_INT(awscreds_parse_time("2017-05-17t15:09:54z", &t), 0);
	T_EQ_INT(t, 1495033794);
	T_EQ_INT(awscreds_parse_time("1970-01-01T00:00:00Z", &t), 0);
	T_EQ_INT(t, 0);
	T_EQ_INT(awscreds_parse_time("2024-02-29T00:00:00Z", &t), 0);
	T_EQ_INT(t, 1709164800);
	T_EQ_INT(awscreds_parse_time("2017-05-17T15:09:54", &t), -EINVAL);
	T_EQ_INT(awscreds_parse_time("2017-05-17 15:09Z", &t), -EINVAL);
	T_EQ_INT(awscreds_parse_time("2017-13-17T15:09:54Z", &t), -EINVAL);
	T_EQ_INT(awscreds_parse_time("2017-05-17T15:09:54Zjunk", &t), -EINVAL);
	T_EQ_INT(awscreds_parse_time("2017-05-17T15:09:54.Z", &t), -EINVAL);
	T_EQ_INT(awscreds_parse_time("", &t), -EINVAL);
	T_EQ_INT(awscreds_parse_time(NULL, &t), -EINVAL);
	T_EQ_INT(awscreds_parse_time("1495033794", &t), -EINVAL);
}

T_TEST(test_env_basic)
{
	struct awscreds *ac;
	struct result r = { 0 };

	env_reset();
	setenv("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envSecret", 1);
	ac = new_ac(NULL, NULL);
	T_ASSERT(awscreds_source(ac) == NULL);
	get(ac, &r);
	T_EQ_STR(r.key, "AKIAENVEXAMPLE");
	T_EQ_STR(r.secret, "envSecret");
	T_ASSERT(r.token == NULL);
	T_EQ_INT(r.exp, 0);
	T_EQ_STR(r.source, "environment");
	T_EQ_STR(awscreds_source(ac), "environment");
	T_EQ_INT(r.sync, 1);
	/* Cached: the second answer comes at once. */
	get(ac, &r);
	T_EQ_INT(r.sync, 1);
	T_EQ_STR(r.key, "AKIAENVEXAMPLE");
	T_EQ_INT(fake_stat("token_puts"), 0);
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_env_session_token)
{
	struct awscreds *ac;
	struct result r = { 0 };

	env_reset();
	setenv("AWS_ACCESS_KEY_ID", "ASIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envSecret2", 1);
	setenv("AWS_SESSION_TOKEN", "envSessionToken", 1);
	setenv("AWS_CREDENTIAL_EXPIRATION", "2099-01-02T03:04:05Z", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.key, "ASIAENV");
	T_EQ_STR(r.token, "envSessionToken");
	T_EQ_INT(r.exp, 4071006245LL);
	T_EQ_STR(r.source, "environment");
	result_clear(&r);
	awscreds_free(ac);

	/* A bad expiration is reported, not ignored. */
	env_reset();
	setenv("AWS_ACCESS_KEY_ID", "ASIAENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envSecret2", 1);
	setenv("AWS_CREDENTIAL_EXPIRATION", "tomorrow", 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_CONTAINS(r.err, "AWS_CREDENTIAL_EXPIRATION");
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_env_partial)
{
	struct awscreds *ac;
	struct result r = { 0 };

	env_reset();
	setenv("AWS_ACCESS_KEY_ID", "AKIAONLYID", 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_ASSERT(r.key == NULL);
	T_ASSERT(r.err != NULL && strncmp(r.err, CHAIN_ERR,
	    strlen(CHAIN_ERR)) == 0);
	T_CONTAINS(r.err, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY "
	    "is not");
	T_CONTAINS(r.err, "IMDS: disabled by AWS_EC2_METADATA_DISABLED=true");
	T_ASSERT(awscreds_source(ac) == NULL);
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_profile_select)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char cred[4096], longtok[1601], cpath[600], fpath[600];

	env_reset();
	memset(longtok, 'T', sizeof(longtok) - 1);
	longtok[sizeof(longtok) - 1] = '\0';
	snprintf(cred, sizeof(cred),
	    "# shared credentials\n"
	    "[default]\n"
	    "aws_access_key_id = AKIADEFAULT\n"
	    "aws_secret_access_key = defaultSecret\n"
	    "\n"
	    "[work]\n"
	    "aws_access_key_id=AKIAWORK\n"
	    "aws_secret_access_key=work/Secret+key\n"
	    "aws_session_token = %s\n", longtok);
	snprintf(cpath, sizeof(cpath), "%s/creds.ini", tmpdir);
	snprintf(fpath, sizeof(fpath), "%s/config.ini", tmpdir);
	write_file(cpath, cred);
	write_file(fpath,
	    "[default]\nregion = us-east-2\n"
	    "[profile work]\nregion = eu-west-3\n"
	    "s3 =\n  max_concurrent_requests = 20\n");
	setenv("AWS_SHARED_CREDENTIALS_FILE", cpath, 1);
	setenv("AWS_CONFIG_FILE", fpath, 1);
	setenv("AWS_PROFILE", "work", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.key, "AKIAWORK");
	T_EQ_STR(r.secret, "work/Secret+key");
	T_EQ_STR(r.token, longtok);
	T_EQ_INT(r.exp, 0);
	T_EQ_STR(r.source, "shared-credentials-file");
	get_region(ac, &r);
	T_EQ_STR(r.region, "eu-west-3");
	T_EQ_INT(r.sync, 1);
	result_clear(&r);
	awscreds_free(ac);

	/* Without AWS_PROFILE: the default profile and its region. */
	unsetenv("AWS_PROFILE");
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.key, "AKIADEFAULT");
	T_ASSERT(r.token == NULL);
	get_region(ac, &r);
	T_EQ_STR(r.region, "us-east-2");
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_profile_home_and_config)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char dir[400];

	env_reset();
	snprintf(dir, sizeof(dir), "%s/.aws", getenv("HOME"));
	mkdir(dir, 0700);
	write_file(".aws/credentials",
	    "[default]\naws_access_key_id = AKIAHOME\n"
	    "aws_secret_access_key = homeSecret\n");
	/* Keys may also sit in the config file, under [profile NAME]. */
	write_file(".aws/config",
	    "[profile cfgonly]\naws_access_key_id = AKIACFG\n"
	    "aws_secret_access_key = cfgSecret\n");
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.key, "AKIAHOME");
	T_EQ_STR(r.source, "shared-credentials-file");
	result_clear(&r);
	awscreds_free(ac);

	setenv("AWS_PROFILE", "cfgonly", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.key, "AKIACFG");
	T_EQ_STR(r.secret, "cfgSecret");
	result_clear(&r);
	awscreds_free(ac);

	/* A named profile that does not exist is a reason in the error. */
	setenv("AWS_PROFILE", "nosuch", 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_CONTAINS(r.err, "profile \"nosuch\" has no keys");
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_env_over_files)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char dir[400];

	env_reset();
	snprintf(dir, sizeof(dir), "%s/.aws", getenv("HOME"));
	mkdir(dir, 0700);
	write_file(".aws/credentials",
	    "[default]\naws_access_key_id = AKIAFILE\n"
	    "aws_secret_access_key = fileSecret\n");
	setenv("AWS_ACCESS_KEY_ID", "AKIAENVWINS", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envSecret", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.key, "AKIAENVWINS");
	T_EQ_STR(r.source, "environment");
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_profile_unsupported)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char dir[400];

	env_reset();
	snprintf(dir, sizeof(dir), "%s/.aws", getenv("HOME"));
	mkdir(dir, 0700);
	write_file(".aws/config",
	    "[profile assume]\nrole_arn = arn:aws:iam::1:role/x\n"
	    "source_profile = default\n");
	setenv("AWS_PROFILE", "assume", 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_ASSERT(r.key == NULL);
	T_CONTAINS(r.err, CHAIN_ERR);
	T_CONTAINS(r.err, "profile \"assume\" uses role_arn, which bcdad "
	    "does not support");
	result_clear(&r);
	awscreds_free(ac);

	/* Unsupported, but the chain goes on: IMDS answers. */
	unsetenv("AWS_EC2_METADATA_DISABLED");
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.source, "imds");
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_web_identity)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char tok[400], want[64], *s;

	env_reset();
	snprintf(tok, sizeof(tok), "%s/webtoken", tmpdir);
	write_file(tok, "web-identity-token-1\n");
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bcdad-web", 1);
	ac = new_ac("us-east-1", fake_url);
	get(ac, &r);
	T_EQ_INT(r.sync, 0);
	T_ASSERT(strncmp(r.key ? r.key : "", "ASIAFAKE", 8) == 0);
	T_ASSERT(r.secret != NULL && r.token != NULL);
	T_ASSERT(r.exp > time(NULL) + 21000 && r.exp <= time(NULL) + 21600);
	T_EQ_STR(r.source, "web-identity");
	T_EQ_INT(fake_stat("sts_calls"), 1);
	T_EQ_INT(fake_stat("token_puts"), 0);
	s = fake_stat_str("sts_last_token");
	T_EQ_STR(s, "web-identity-token-1");
	free(s);
	snprintf(want, sizeof(want), "bcdad-%ld", (long)getpid());
	s = fake_stat_str("sts_last_session");
	T_EQ_STR(s, want);
	free(s);
	result_clear(&r);
	awscreds_free(ac);

	/* AWS_ROLE_SESSION_NAME is sent as given. */
	setenv("AWS_ROLE_SESSION_NAME", "my session", 1);
	ac = new_ac("us-east-1", fake_url);
	get(ac, &r);
	T_EQ_STR(r.source, "web-identity");
	s = fake_stat_str("sts_last_session");
	T_EQ_STR(s, "my session");
	free(s);
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_web_identity_reread)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char tok[400], *first, *s;

	env_reset();
	fake_config("{\"cred_ttl\": 240}");
	snprintf(tok, sizeof(tok), "%s/webtoken2", tmpdir);
	write_file(tok, "web-identity-token-1");
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bcdad-web", 1);
	ac = new_ac(NULL, fake_url);
	get(ac, &r);
	T_EQ_STR(r.source, "web-identity");
	first = r.key ? strdup(r.key) : NULL;
	/* The token rotates; the expiring credentials force a new call. */
	write_file(tok, "web-identity-token-2");
	fake_config("{\"sts_token\": \"web-identity-token-2\"}");
	get(ac, &r);
	T_EQ_INT(r.sync, 0);
	T_ASSERT(r.key != NULL && first != NULL && strcmp(r.key, first) != 0);
	T_EQ_INT(fake_stat("sts_calls"), 2);
	s = fake_stat_str("sts_last_token");
	T_EQ_STR(s, "web-identity-token-2");
	free(s);
	free(first);
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_web_identity_rejected)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char tok[400];

	env_reset();
	snprintf(tok, sizeof(tok), "%s/badtoken", tmpdir);
	write_file(tok, "not-the-right-token");
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bcdad-web", 1);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	ac = new_ac(NULL, fake_url);
	get(ac, &r);
	T_ASSERT(r.key == NULL);
	T_CONTAINS(r.err, CHAIN_ERR);
	T_CONTAINS(r.err, "HTTP 400 InvalidIdentityToken: Incorrect token "
	    "audience");
	T_CONTAINS(r.err, "arn:aws:iam::123456789012:role/bcdad-web");
	result_clear(&r);
	awscreds_free(ac);

	/* A wrong role: AccessDenied; a missing token file: named. */
	write_file(tok, "web-identity-token-1");
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/other", 1);
	ac = new_ac(NULL, fake_url);
	get(ac, &r);
	T_CONTAINS(r.err, "HTTP 403 AccessDenied");
	result_clear(&r);
	awscreds_free(ac);
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token", 1);
	ac = new_ac(NULL, fake_url);
	get(ac, &r);
	T_CONTAINS(r.err, "cannot read the token file /nonexistent/token");
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_ecs)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char uri[128], tok[400];

	env_reset();
	snprintf(uri, sizeof(uri), "%s/ecs/creds", fake_url);
	snprintf(tok, sizeof(tok), "%s/ecstoken", tmpdir);
	write_file(tok, "ecs-auth-token\n");
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tok, 1);
	/* The file wins over the variable. */
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.source, "ecs");
	T_ASSERT(strncmp(r.key ? r.key : "", "ASIAFAKE", 8) == 0);
	T_ASSERT(r.token != NULL);
	T_ASSERT(r.exp > time(NULL) + 21000);
	T_EQ_INT(fake_stat("ecs_gets"), 1);
	T_EQ_INT(fake_stat("token_puts"), 0);
	result_clear(&r);
	awscreds_free(ac);

	/* A wrong token: ECS fails and IMDS is not tried. */
	unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_CONTAINS(r.err, CHAIN_ERR);
	T_CONTAINS(r.err, "HTTP 401");
	T_EQ_INT(fake_stat("ecs_rejected"), 1);
	T_EQ_INT(fake_stat("token_puts"), 0);
	result_clear(&r);
	awscreds_free(ac);

	/* The token from the variable. */
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth-token", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.source, "ecs");
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_ecs_rejected_config)
{
	struct awscreds *ac;
	struct result r = { 0 };

	env_reset();
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
	    "http://example.com/creds", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_CONTAINS(r.err, "must use https, or http to a loopback address");
	T_EQ_INT(fake_stat("token_puts"), 0);
	result_clear(&r);
	awscreds_free(ac);

	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
	    "http://127.0.0.1:1/creds", 1);
	setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "abc\r\nX-Evil: 1", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_CONTAINS(r.err, "contains a line break");
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_imds)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char *first;

	env_reset();
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_INT(r.sync, 0);
	T_EQ_STR(r.source, "imds");
	T_EQ_STR(awscreds_source(ac), "imds");
	T_ASSERT(strncmp(r.key ? r.key : "", "ASIAFAKE", 8) == 0);
	T_ASSERT(r.secret != NULL && r.token != NULL);
	T_ASSERT(r.exp > time(NULL) + 21500 && r.exp <= time(NULL) + 21600);
	T_EQ_INT(fake_stat("token_puts"), 1);
	T_EQ_INT(fake_stat("role_gets"), 1);
	T_EQ_INT(fake_stat("cred_gets"), 1);
	first = r.key ? strdup(r.key) : NULL;
	/* Fresh credentials come from the cache, at once. */
	get(ac, &r);
	T_EQ_INT(r.sync, 1);
	T_EQ_STR(r.key, first);
	T_EQ_INT(awscreds_busy(ac), 0);
	T_EQ_INT(fake_stat("cred_gets"), 1);
	/* Invalidated: fetched again with the cached IMDS token. */
	awscreds_invalidate(ac);
	T_ASSERT(awscreds_source(ac) == NULL);
	get(ac, &r);
	T_EQ_INT(r.sync, 0);
	T_ASSERT(r.key != NULL && first != NULL && strcmp(r.key, first) != 0);
	T_EQ_INT(fake_stat("token_puts"), 1);
	T_EQ_INT(fake_stat("cred_gets"), 2);
	free(first);
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_imds_coalescing)
{
	struct awscreds *ac;
	struct result r[3];
	int i, all = 0;

	env_reset();
	memset(r, 0, sizeof(r));
	ac = new_ac(NULL, NULL);
	creds_owner = ac;
	for (i = 0; i < 3; i++)
		awscreds_get(ac, creds_cb, &r[i]);
	T_EQ_INT(awscreds_busy(ac), 1);
	for (i = 0; i < 3; i++)
		T_EQ_INT(r[i].called, 0);
	run_until(NULL, ac);
	for (i = 0; i < 3; i++) {
		T_EQ_INT(r[i].called, 1);
		T_EQ_STR(r[i].key, r[0].key);
		all += r[i].called;
	}
	T_EQ_INT(all, 3);
	T_EQ_INT(fake_stat("token_puts"), 1);
	T_EQ_INT(fake_stat("cred_gets"), 1);
	for (i = 0; i < 3; i++)
		result_clear(&r[i]);
	awscreds_free(ac);
}

T_TEST(test_imds_stale_token)
{
	struct awscreds *ac;
	struct result r = { 0 };

	env_reset();
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.source, "imds");
	T_EQ_INT(fake_stat("token_puts"), 1);
	free(fake_req("POST", "/_fake/expire_tokens", "{}", NULL, NULL));
	awscreds_invalidate(ac);
	get(ac, &r);
	T_EQ_STR(r.source, "imds");
	T_ASSERT(r.err == NULL);
	T_EQ_INT(fake_stat("unauthorized"), 1);
	T_EQ_INT(fake_stat("token_puts"), 2);
	T_EQ_INT(fake_stat("cred_gets"), 2);
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_imds_advisory_refresh)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char *first;

	env_reset();
	/* 10 min: inside the 15 min advisory window, outside the 5 min one. */
	fake_config("{\"cred_ttl\": 600}");
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.source, "imds");
	first = r.key ? strdup(r.key) : NULL;
	/* The old credentials come at once; a refresh runs behind. */
	get(ac, &r);
	T_EQ_INT(r.sync, 1);
	T_EQ_STR(r.key, first);
	T_EQ_INT(awscreds_busy(ac), 1);
	run_until(NULL, ac);
	T_EQ_INT(fake_stat("cred_gets"), 2);
	get(ac, &r);
	T_EQ_INT(r.sync, 1);
	T_ASSERT(r.key != NULL && first != NULL && strcmp(r.key, first) != 0);
	/* These expire in 10 min too: another refresh has started. */
	T_EQ_INT(awscreds_busy(ac), 1);
	run_until(NULL, ac);
	T_EQ_INT(fake_stat("cred_gets"), 3);
	free(first);
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_imds_advisory_failure)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char *first;

	env_reset();
	fake_config("{\"cred_ttl\": 600}");
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	first = r.key ? strdup(r.key) : NULL;
	fake_config("{\"fail_next\": 5}");
	get(ac, &r);
	T_EQ_INT(r.sync, 1);
	run_until(NULL, ac);
	T_EQ_INT(fake_stat("failed"), 1);
	/* The refresh failed: the old credentials stay, no retry yet. */
	get(ac, &r);
	T_EQ_INT(r.sync, 1);
	T_EQ_STR(r.key, first);
	T_ASSERT(r.err == NULL);
	T_EQ_INT(awscreds_busy(ac), 0);
	T_EQ_INT(fake_stat("failed"), 1);
	T_EQ_STR(awscreds_source(ac), "imds");
	free(first);
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_imds_mandatory_refresh)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char *first;

	env_reset();
	/* 4 min: inside the 5 min window, so never handed out from cache. */
	fake_config("{\"cred_ttl\": 240}");
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.source, "imds");
	first = r.key ? strdup(r.key) : NULL;
	get(ac, &r);
	T_EQ_INT(r.sync, 0);
	T_ASSERT(r.key != NULL && first != NULL && strcmp(r.key, first) != 0);
	T_EQ_INT(fake_stat("cred_gets"), 2);
	free(first);

	/* A failing mandatory refresh hands out the still-valid old ones. */
	first = r.key ? strdup(r.key) : NULL;
	fake_config("{\"fail_next\": 5}");
	get(ac, &r);
	T_EQ_INT(r.sync, 0);
	T_EQ_STR(r.key, first);
	T_ASSERT(r.err == NULL);
	T_EQ_INT(fake_stat("failed"), 1);
	free(first);
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_imds_errors)
{
	struct awscreds *ac;
	struct result r = { 0 };

	env_reset();
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_EQ_STR(r.err, CHAIN_ERR "IMDS: disabled by "
	    "AWS_EC2_METADATA_DISABLED=true)");
	T_EQ_INT(fake_stat("token_puts"), 0);
	result_clear(&r);
	awscreds_free(ac);

	env_reset();
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1/", 1);
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_CONTAINS(r.err, CHAIN_ERR "IMDS: PUT http://127.0.0.1:1/latest/"
	    "api/token: ");
	T_CONTAINS(r.err, "(not running on EC2?)");
	result_clear(&r);
	awscreds_free(ac);

	env_reset();
	fake_config("{\"code\": \"AssumeRoleUnauthorizedAccess\"}");
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_CONTAINS(r.err, "IMDS: AssumeRoleUnauthorizedAccess: the role "
	    "cannot be assumed by EC2");
	result_clear(&r);
	awscreds_free(ac);

	env_reset();
	fake_config("{\"role\": \"\"}");
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	T_CONTAINS(r.err, "IMDS: no IAM role is attached to the instance");
	result_clear(&r);
	awscreds_free(ac);
}

T_TEST(test_region)
{
	struct awscreds *ac;
	struct result r = { 0 };

	env_reset();
	setenv("AWS_REGION", "eu-central-1", 1);
	setenv("AWS_DEFAULT_REGION", "eu-north-1", 1);
	ac = new_ac("ca-central-1", NULL);
	get_region(ac, &r);
	T_EQ_STR(r.region, "ca-central-1");
	T_EQ_INT(r.sync, 1);
	result_clear(&r);
	awscreds_free(ac);

	ac = new_ac(NULL, NULL);
	get_region(ac, &r);
	T_EQ_STR(r.region, "eu-central-1");
	T_EQ_STR(awscreds_region_cached(ac), "eu-central-1");
	result_clear(&r);
	awscreds_free(ac);

	unsetenv("AWS_REGION");
	ac = new_ac(NULL, NULL);
	get_region(ac, &r);
	T_EQ_STR(r.region, "eu-north-1");
	result_clear(&r);
	awscreds_free(ac);

	/* IMDS, asked once and cached; concurrent callers share it. */
	unsetenv("AWS_DEFAULT_REGION");
	fake_config("{\"region\": \"ap-south-1\"}");
	ac = new_ac(NULL, NULL);
	T_ASSERT(awscreds_region_cached(ac) == NULL);
	get_region(ac, &r);
	T_EQ_INT(r.sync, 0);
	T_EQ_STR(r.region, "ap-south-1");
	get_region(ac, &r);
	T_EQ_INT(r.sync, 1);
	T_EQ_STR(r.region, "ap-south-1");
	T_EQ_INT(fake_stat("region_gets"), 1);
	result_clear(&r);
	awscreds_free(ac);

	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	ac = new_ac(NULL, NULL);
	get_region(ac, &r);
	T_ASSERT(r.region == NULL);
	T_CONTAINS(r.err, "no AWS region: set region in bcdad.conf, "
	    "AWS_REGION or AWS_DEFAULT_REGION");
	T_EQ_INT(r.transient, 0);
	result_clear(&r);
	awscreds_free(ac);
}

/*
 * IMDS not answering yet (at boot), or answering a server error: the
 * region's failure is transient and not cached, so asking again finds
 * the region once IMDS answers.  An empty answer is not transient.
 */
T_TEST(test_region_imds_not_up_yet)
{
	struct awscreds *ac;
	struct result r = { 0 };

	env_reset();
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1", 1);
	fake_config("{\"region\": \"ap-south-1\"}");
	ac = new_ac(NULL, NULL);
	get_region(ac, &r);
	T_ASSERT(r.region == NULL);
	T_CONTAINS(r.err, "PUT http://127.0.0.1:1/latest/api/token: ");
	T_EQ_INT(r.transient, 1);
	T_ASSERT(awscreds_region_cached(ac) == NULL);
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake_url, 1);
	fake_config("{\"fail_next\": 1}");
	get_region(ac, &r);
	T_ASSERT(r.region == NULL);
	T_CONTAINS(r.err, "answered HTTP 500");
	T_EQ_INT(r.transient, 1);
	get_region(ac, &r);
	T_EQ_STR(r.region, "ap-south-1");
	T_EQ_INT(r.transient, 0);
	result_clear(&r);
	awscreds_free(ac);

	env_reset();
	fake_config("{\"region\": \"\"}");
	ac = new_ac(NULL, NULL);
	get_region(ac, &r);
	T_CONTAINS(r.err, "IMDS placement/region is empty");
	T_EQ_INT(r.transient, 0);
	result_clear(&r);
	awscreds_free(ac);
}

/* With debug logging on, no secret key or session token reaches stderr. */
T_TEST(test_no_secrets_logged)
{
	struct awscreds *ac;
	struct result r = { 0 };
	char logpath[400], tok[400], *buf = NULL, *secrets[4] = { 0 };
	size_t len = 0;
	int fd, saved, n = 0, i;
	FILE *f;

	env_reset();
	snprintf(logpath, sizeof(logpath), "%s/stderr.log", tmpdir);
	snprintf(tok, sizeof(tok), "%s/webtoken3", tmpdir);
	write_file(tok, "web-identity-token-1");
	fflush(stderr);
	saved = dup(2);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
	log_init(LOG_LVL_DEBUG, 0);

	fake_config("{\"cred_ttl\": 600}");
	ac = new_ac(NULL, NULL);
	get(ac, &r);
	secrets[n++] = r.secret ? strdup(r.secret) : NULL;
	secrets[n++] = r.token ? strdup(r.token) : NULL;
	get(ac, &r);
	run_until(NULL, ac);
	awscreds_free(ac);
	setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bcdad-web", 1);
	ac = new_ac(NULL, fake_url);
	get(ac, &r);
	secrets[n++] = r.secret ? strdup(r.secret) : NULL;
	secrets[n++] = r.token ? strdup(r.token) : NULL;
	awscreds_free(ac);

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	log_init(LOG_LVL_ERR, 0);
	if ((f = fopen(logpath, "r")) != NULL) {
		if (getdelim(&buf, &len, '\0', f) < 0) {
			free(buf);
			buf = NULL;
		}
		fclose(f);
	}
	T_ASSERT(buf != NULL);
	T_CONTAINS(buf, "AWS credentials from imds");
	T_CONTAINS(buf, "AWS credentials from web-identity");
	for (i = 0; i < n; i++) {
		T_ASSERT(secrets[i] != NULL);
		if (buf != NULL && secrets[i] != NULL &&
		    strstr(buf, secrets[i]) != NULL)
			T_FAIL("secret %d appears in the log", i);
		free(secrets[i]);
	}
	if (buf != NULL && strstr(buf, "web-identity-token-1") != NULL)
		T_FAIL("the web identity token appears in the log");
	free(buf);
	result_clear(&r);
}

/* The fake itself keeps IMDSv2's rules (reference/aws.md 2.1). */
T_TEST(test_fake_imds_rules)
{
	long st = 0;
	char *tok;

	env_reset();
	free(fake_req("PUT", "/latest/api/token", NULL, NULL, &st));
	T_EQ_INT(st, 400);
	free(fake_req("PUT", "/latest/api/token", NULL,
	    "X-aws-ec2-metadata-token-ttl-seconds: 21601", &st));
	T_EQ_INT(st, 400);
	free(fake_req("PUT", "/2021-03-23/api/token", NULL,
	    "X-aws-ec2-metadata-token-ttl-seconds: 60", &st));
	T_EQ_INT(st, 403);
	free(fake_req("GET", "/latest/meta-data/placement/region", NULL,
	    NULL, &st));
	T_EQ_INT(st, 401);
	free(fake_req("GET", "/latest/meta-data/placement/region", NULL,
	    "X-aws-ec2-metadata-token: bogus", &st));
	T_EQ_INT(st, 401);
	tok = fake_req("PUT", "/latest/api/token", NULL,
	    "X-aws-ec2-metadata-token-ttl-seconds: 1", &st);
	T_EQ_INT(st, 200);
	T_ASSERT(tok != NULL && strlen(tok) > 10);
	free(tok);
	T_EQ_INT(fake_stat("token_puts"), 1);
	T_EQ_INT(fake_stat("token_rejected"), 2);
}

T_MAIN("awscreds",
    T_CASE(test_parse_time),
    T_CASE(test_env_basic),
    T_CASE(test_env_session_token),
    T_CASE(test_env_partial),
    T_CASE(test_profile_select),
    T_CASE(test_profile_home_and_config),
    T_CASE(test_env_over_files),
    T_CASE(test_profile_unsupported),
    T_CASE(test_web_identity),
    T_CASE(test_web_identity_reread),
    T_CASE(test_web_identity_rejected),
    T_CASE(test_ecs),
    T_CASE(test_ecs_rejected_config),
    T_CASE(test_imds),
    T_CASE(test_imds_coalescing),
    T_CASE(test_imds_stale_token),
    T_CASE(test_imds_advisory_refresh),
    T_CASE(test_imds_advisory_failure),
    T_CASE(test_imds_mandatory_refresh),
    T_CASE(test_imds_errors),
    T_CASE(test_region),
    T_CASE(test_region_imds_not_up_yet),
    T_CASE(test_no_secrets_logged),
    T_CASE(test_fake_imds_rules))
