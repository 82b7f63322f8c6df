/*
 * bcdad: the daemon and its command-line client are one binary.
 *
 *   bcdad [-dnv] [-c file]            run the daemon in the foreground
 *   bcdad [-c file] status [--json]   and the other client commands
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "bcdad.h"
#include "util/log.h"

#define DEFAULT_CONFIG	"/etc/bcdad/bcdad.conf"

static void
usage(FILE *f)
{
	fprintf(f,
"usage: bcdad [-dnv] [-c file]\n"
"       bcdad [-c file] [-s socket] status [JOB|PROFILE] [--profiles] [--json]\n"
"                                         [--watch] [--limit N] [--before JOB]\n"
"       bcdad [-c file] [-s socket] run PROFILE [--since TIME | --full] [--wait]\n"
"       bcdad [-c file] [-s socket] cancel JOB\n"
"       bcdad [-c file] [-s socket] retry JOB [--wait]\n"
"       bcdad [-c file] [-s socket] history JOB [--json]\n"
"       bcdad [-c file] [-s socket] doctor [PROFILE]\n"
"\n"
"Exports Medicare claims from CMS BCDA (FHIR Bulk Data) and keeps each\n"
"export job's state in SQLite so that it resumes after any restart.\n"
"\n"
"  -c file    configuration (default $BCDAD_CONFIG or " DEFAULT_CONFIG ")\n"
"  -d         log debug messages\n"
"  -n         check the configuration and that its directories are\n"
"             writable, print every error, and exit\n"
"  -s socket  control socket (default <runtime_dir>/" CTL_SOCKET_NAME ")\n"
"  -v         print the version and exit\n"
"  -h         this help\n"
"\n"
"Commands talk to the running daemon over its control socket:\n"
"  status     jobs with state, progress, files, bytes, age and last error,\n"
"             then each profile's watermark (its next _since), when it\n"
"             last moved, and credential warnings (--profiles: only those);\n"
"             JOB or PROFILE narrows it; --watch redraws every 2 s\n"
"  run        start an export of PROFILE now; --since TIME (RFC 3339) or\n"
"             --full overrides its _since once; --wait follows the job and\n"
"             exits 0 DONE, 3 FAILED, 4 CANCELLED, 5 SKIPPED\n"
"  cancel     cancel JOB (and its BCDA job, if one is pending)\n"
"  retry      resume FAILED JOB in the state it failed in, its files'\n"
"             attempts renewed; --wait as for run\n"
"  history    JOB's every change of state with its reason, and its files\n"
"  doctor     check the configuration, secrets, directories, free space,\n"
"             BCDA (reachable, a token, attribution_status), AWS (credentials\n"
"             and their source, a test object in the bucket with its KMS key,\n"
"             the HealthLake datastore ACTIVE, the SNS topic), the daemon and\n"
"             credential expiry, for every profile or PROFILE; exits 1 if any\n"
"             check fails\n"
"\n"
"See bcdad(8) and bcdad.conf(5).\n");
}

char *
socket_path(const struct config *c)
{
	char *s;

	if (asprintf(&s, "%s/%s", c->runtime_dir, CTL_SOCKET_NAME) < 0)
		return NULL;
	return s;
}

int
main(int argc, char **argv)
{
	const char *conf = getenv("BCDAD_CONFIG"), *sock = NULL;
	char errs[16384], *path = NULL;
	struct config *c;
	int ch, check = 0, debug = 0, rc;

	if (conf == NULL)
		conf = DEFAULT_CONFIG;
	while ((ch = getopt(argc, argv, "+c:dhns:v")) != -1) {
		switch (ch) {
		case 'c':
			conf = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'n':
			check = 1;
			break;
		case 's':
			sock = optarg;
			break;
		case 'v':
			printf("bcdad %s\n", BCDAD_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;

	c = config_load(conf, errs, sizeof(errs));
	if (argc > 0) {
		/* Client commands need only the socket path from the file. */
		if (sock == NULL && c != NULL)
			sock = path = socket_path(c);
		if (sock == NULL) {
			sock = "/run/bcdad/" CTL_SOCKET_NAME;
			if (strcmp(argv[0], "doctor") != 0)
				fprintf(stderr, "bcdad: %s could not be read, so "
				    "trying %s (use -s to name the socket)\n",
				    conf, sock);
		}
		if (c == NULL && strcmp(argv[0], "doctor") == 0) {
			fputs(errs, stderr);
			return 1;
		}
		if (strcmp(argv[0], "doctor") == 0)
			rc = argc <= 2 ? doctor_main(c, sock, argv[1]) : 2;
		else
			rc = client_main(sock, argc, argv);
		free(path);
		config_free(c);
		return rc;
	}
	if (c == NULL) {
		fputs(errs, stderr);
		return 1;
	}
	if (check && daemon_check_dirs(c, errs, sizeof(errs)) != 0) {
		fprintf(stderr, "%s", errs);
		config_free(c);
		return 1;
	}
	if (check) {
		printf("%s: configuration OK (%d profile%s)\n", conf,
		    c->nprofiles, c->nprofiles == 1 ? "" : "s");
		config_free(c);
		return 0;
	}
	if (debug)
		c->log_level = LOG_LVL_DEBUG;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = daemon_run(c);
	curl_global_cleanup();
	config_free(c);
	return rc;
}
