/*
 * bcdad doctor [PROFILE]: what will break the night, checked from here,
 * each check a PASS or FAIL line with what to do, and a non-zero exit when
 * anything failed.  Here: the configuration, secrets, directories and free
 * space, and the daemon; doctor_net.c: BCDA and AWS, over the network.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <jansson.h>

#include "bcdad.h"

#define FREE_MIN	(1ULL << 30)	/* an export needs room: 1 GiB */

void
doctor_line(struct doctor *d, int ok, const char *what, const char *fix)
{
	printf("%s  %s%s%s\n", ok ? "PASS" : "FAIL", what,
	    ok || fix == NULL ? "" : "\n      fix: ", ok || fix == NULL ? "" :
	    fix);
	d->failed += !ok;
}

/* A directory bcdad writes to: writable, with room for an export. */
static void
check_dir(struct doctor *d, const char *name, const char *dir)
{
	struct statvfs vfs;
	char what[512], fix[512];
	unsigned long long avail;

	if (access(dir, W_OK | X_OK) != 0) {
		snprintf(what, sizeof(what), "%s %s is not writable: %s", name,
		    dir, strerror(errno));
		snprintf(fix, sizeof(fix), "create it for the bcdad user "
		    "(install -d -o bcdad -g bcdad -m 0700 %s), and under "
		    "systemd allow it with ReadWritePaths=", dir);
		doctor_line(d, 0, what, fix);
		return;
	}
	if (statvfs(dir, &vfs) != 0) {
		snprintf(what, sizeof(what), "%s %s: cannot read its free "
		    "space: %s", name, dir, strerror(errno));
		doctor_line(d, 0, what, NULL);
		return;
	}
	avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
	snprintf(what, sizeof(what), "%s %s is writable, %.1f GiB free", name,
	    dir, (double)avail / (double)(1ULL << 30));
	doctor_line(d, avail >= FREE_MIN, what, "free space there: a full-history "
	    "export can take tens of gigabytes");
}

static void
check_profile(struct doctor *d, const struct profile *p)
{
	char what[600], err[512], *secret;

	if (p->bcda_secret_arn != NULL) {
		snprintf(what, sizeof(what), "profile %s: BCDA credentials come "
		    "from Secrets Manager (%s), read by the daemon", p->name,
		    p->bcda_secret_arn);
		doctor_line(d, 1, what, NULL);
	} else if ((secret = config_read_secret(p, err, sizeof(err))) ==
	    NULL) {
		snprintf(what, sizeof(what), "profile %s: %s", p->name, err);
		doctor_line(d, 0, what, "write the client secret to that file, owned "
		    "by the bcdad user with mode 0600, or pass it with systemd's "
		    "LoadCredential=");
	} else {
		explicit_bzero(secret, strlen(secret));
		free(secret);
		snprintf(what, sizeof(what), "profile %s: client secret "
		    "readable and private", p->name);
		doctor_line(d, 1, what, NULL);
	}
	check_dir(d, "storage directory of", p->storage_dir);
}

/* Warnings the daemon has for each profile (credential expiry). */
static void
check_daemon(struct doctor *d, const char *sock)
{
	json_t *rep, *p;
	char what[600];
	const char *w;
	size_t i;

	rep = client_call(sock, json_pack("{s:s}", "cmd", "status"));
	if (rep == NULL || !json_is_true(json_object_get(rep, "ok"))) {
		snprintf(what, sizeof(what), "daemon: no answer on %s", sock);
		doctor_line(d, 0, what, "start it: systemctl enable --now bcdad");
		json_decref(rep);
		return;
	}
	snprintf(what, sizeof(what), "daemon: bcdad %s answering on %s",
	    json_string_value(json_object_get(rep, "daemon")), sock);
	doctor_line(d, 1, what, NULL);
	json_array_foreach(json_object_get(rep, "profiles"), i, p) {
		if ((w = json_string_value(json_object_get(p, "warning"))) ==
		    NULL)
			continue;
		snprintf(what, sizeof(what), "profile %s: %s",
		    json_string_value(json_object_get(p, "profile")), w);
		doctor_line(d, 0, what, NULL);
	}
	json_decref(rep);
}

int
doctor_main(const struct config *c, const char *sock, const char *profile)
{
	struct doctor d = { 0 };
	const struct profile *only = NULL;
	char what[512];
	int i;

	if (profile != NULL && (only = config_profile(c, profile)) == NULL) {
		fprintf(stderr, "bcdad: no profile named %s in %s\n", profile,
		    c->path);
		return 2;
	}
	snprintf(what, sizeof(what), "configuration %s: %d profile%s",
	    c->path, c->nprofiles, c->nprofiles == 1 ? "" : "s");
	doctor_line(&d, 1, what, NULL);
	check_dir(&d, "state directory", c->state_dir);
	for (i = 0; i < c->nprofiles; i++)
		if (only == NULL || c->profiles[i] == only)
			check_profile(&d, c->profiles[i]);
	doctor_net(&d, c, only);
	check_daemon(&d, sock);
	printf("%s\n", d.failed ? "some checks failed" : "all checks passed");
	return d.failed ? 1 : 0;
}
