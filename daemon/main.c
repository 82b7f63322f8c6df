/*
 * bcdad-daemon: the daemon, its configuration check and its doctor.
 * `bcdad` (cli.c) runs this program for them, in the same process.
 *
 *   bcdad [-dnv] [-c file]            run the daemon in the foreground
 *   bcdad [-c file] doctor [PROFILE]  check what would break the night
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "bcdad.h"
#include "util/log.h"

int
main(int argc, char **argv)
{
	struct cmd_opts o;
	char errs[16384], *path = NULL;
	const char *sock;
	struct config *c;
	int rc;

	if ((rc = cmd_options(argc, argv, &o)) >= 0)
		return rc;
	if (o.argc > 0 && strcmp(o.argv[0], "doctor") != 0)
		return cmd_client(&o);
	if (o.argc > 2) {
		fprintf(stderr, "bcdad: doctor takes at most one profile; see "
		    "bcdad -h\n");
		return 2;
	}
	if ((c = config_load(o.conf, errs, sizeof(errs))) == NULL) {
		fputs(errs, stderr);
		return 1;
	}
	if (o.argc > 0) {
		if ((sock = o.sock) == NULL)
			sock = path = socket_path(c);
		if (sock != NULL) {
			rc = doctor_main(c, sock, o.argv[1]);
		} else {
			fputs("bcdad: out of memory\n", stderr);
			rc = 1;
		}
		free(path);
		config_free(c);
		return rc;
	}
	if (o.check && daemon_check_dirs(c, errs, sizeof(errs)) != 0) {
		fprintf(stderr, "%s", errs);
		config_free(c);
		return 1;
	}
	if (o.check) {
		printf("%s: configuration OK (%d profile%s)\n", o.conf,
		    c->nprofiles, c->nprofiles == 1 ? "" : "s");
		config_free(c);
		return 0;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = daemon_run(c, o.debug);
	curl_global_cleanup();
	config_free(c);
	return rc;
}
