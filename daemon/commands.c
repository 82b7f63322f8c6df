/*
 * What both of bcdad's programs share: the commands, their help, and the
 * options before the command.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bcdad.h"

/* The client commands: synopsis, a line for -h, and their --help. */
static const struct command {
	const char	*name;
	const char	*synopsis;
	const char	*summary;
	const char	*help;
} commands[] = {
	{ "status", "status [JOB|PROFILE] [--profiles] [--json] [--watch]\n"
	  "                                         [--limit N] [--before JOB]",
	  "jobs with state, progress, files, bytes, age and last error,\n"
	  "             then each profile's watermark (its next _since), when it\n"
	  "             last moved, and credential warnings (--profiles: only those);\n"
	  "             JOB or PROFILE narrows it; --watch redraws every 2 s",
	  "The newest jobs (50, or --limit N up to 200; older ones with --before\n"
	  "JOB, which the table's last line gives): id, profile, state, progress,\n"
	  "files done and total, bytes, age and the last error.  Then each\n"
	  "profile's watermark (the transactionTime that becomes the next _since),\n"
	  "when it last moved, and credential warnings.  JOB shows one job;\n"
	  "PROFILE that profile's jobs.  --json prints the jobs as JSON (with\n"
	  "--profiles, the profiles); --watch redraws every 2 seconds.\n"
	  "Members of the control socket's group (bcdad-ctl) may run it.\n"
	  "Exits 0, 1 when the daemon cannot be reached or refuses." },
	{ "run", "run PROFILE [--since TIME | --full] [--wait]",
	  "start an export of PROFILE now; --since TIME (RFC 3339) or\n"
	  "             --full overrides its _since once; --wait follows the job and\n"
	  "             exits 0 DONE, 3 FAILED, 4 CANCELLED, 5 SKIPPED",
	  "Starts an export of PROFILE now and prints its job number.  --since\n"
	  "TIME (RFC 3339, with a zone) or --full (no _since) overrides the\n"
	  "profile's _since for this job only.  --wait follows the job to its end\n"
	  "and exits with its outcome: 0 DONE, 3 FAILED, 4 CANCELLED, 5 SKIPPED\n"
	  "(January: no attribution yet), 1 when the daemon cannot be reached;\n"
	  "the nightly bcdad-run@PROFILE.service runs it so.\n"
	  "Needs root, the bcdad user or its group." },
	{ "cancel", "cancel JOB",
	  "cancel JOB (and its BCDA job, if one is pending)",
	  "Cancels JOB: its transfers stop, its BCDA job is deleted (found in\n"
	  "BCDA's job list when the kickoff's answer was lost), its open S3\n"
	  "uploads are aborted, and it ends CANCELLED.  A job announcing its\n"
	  "outcome (NOTIFY) is complete and cannot be cancelled.\n"
	  "Needs root, the bcdad user or its group." },
	{ "retry", "retry JOB [--wait]",
	  "resume FAILED JOB in the state it failed in, its files'\n"
	  "             attempts renewed; --wait as for run",
	  "Resumes FAILED JOB in the state it failed in, with the same BCDA job\n"
	  "while its files are still there, its files' and uploads' attempts\n"
	  "renewed, and a failed HealthLake import started again under a new\n"
	  "ClientToken.  The new outcome is announced.  --wait as for run.\n"
	  "Needs root, the bcdad user or its group." },
	{ "history", "history JOB [--json]",
	  "JOB's every change of state with its reason, and its files",
	  "Every change of state of JOB with its time and reason, then its\n"
	  "files with their states, sizes, attempts and S3 states.  --json prints\n"
	  "the same as one JSON object." },
	{ "doctor", "doctor [PROFILE]",
	  "check the configuration, secrets, directories, free space,\n"
	  "             BCDA (reachable, a token, attribution_status), AWS (credentials\n"
	  "             and their source, a test object in the bucket with its KMS key,\n"
	  "             the HealthLake datastore ACTIVE, the SNS topic), the daemon and\n"
	  "             credential expiry, for every profile or PROFILE; exits 1 if any\n"
	  "             check fails",
	  "Checks what would break the night, one PASS or FAIL line each with\n"
	  "what to do: the configuration; the state and storage directories,\n"
	  "writable with 1 GiB free; each client secret, readable and 0600 (or\n"
	  "read from Secrets Manager); BCDA reachable (a failed connection asks\n"
	  "about BCDA's IP allow-list), a token, attribution_status; AWS\n"
	  "credentials and their source; a test object put in the bucket with\n"
	  "the KMS key and deleted; the HealthLake datastore ACTIVE; the SNS\n"
	  "topic; the daemon; credentials expiring within 14 days.  For every\n"
	  "profile, or PROFILE.  Run it as the bcdad user with the unit's AWS\n"
	  "environment to see what the daemon sees.\n"
	  "Exits 0 when every check passed, 1 when one failed, 2 for an\n"
	  "unknown profile." },
};
#define NCOMMANDS	(sizeof(commands) / sizeof(commands[0]))

void
usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: bcdad [-dnv] [-c file]\n");
	for (i = 0; i < NCOMMANDS; i++)
		fprintf(f, "       bcdad [-c file] [-s socket] %s\n",
		    commands[i].synopsis);
	fprintf(f,
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
"  -h         this help (bcdad COMMAND --help: that command's)\n"
"\n"
"Commands talk to the running daemon over its control socket:\n");
	for (i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name,
		    commands[i].summary);
	fprintf(f, "\nSee bcdad(8) and bcdad.conf(5).\n");
}

/* bcdad COMMAND --help (or -h): 1 when it was asked and answered. */
int
command_help(int argc, char **argv)
{
	size_t i;
	int k;

	for (k = 1; k < argc; k++)
		if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0)
			break;
	if (k == argc)
		return 0;
	for (i = 0; i < NCOMMANDS; i++) {
		if (strcmp(argv[0], commands[i].name) != 0)
			continue;
		printf("usage: bcdad [-c file] [-s socket] %s\n\n%s\n",
		    commands[i].synopsis, commands[i].help);
		return 1;
	}
	return 0;
}

int
cmd_options(int argc, char **argv, struct cmd_opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	if ((o->conf = getenv("BCDAD_CONFIG")) == NULL)
		o->conf = DEFAULT_CONFIG;
	while ((ch = getopt(argc, argv, "+c:dhns:v")) != -1) {
		switch (ch) {
		case 'c':
			o->conf = optarg;
			break;
		case 'd':
			o->debug = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'n':
			o->check = 1;
			break;
		case 's':
			o->sock = optarg;
			break;
		case 'v':
			printf("bcdad %s\n", BCDAD_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	o->argc = argc - optind;
	o->argv = argv + optind;
	if (o->argc > 0 && command_help(o->argc, o->argv))
		return 0;
	return -1;
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
cmd_client(const struct cmd_opts *o)
{
	char errs[16384], *path = NULL;
	const char *sock = o->sock;
	struct config *c;
	int rc;

	/* Client commands need only the socket path from the file. */
	c = config_load(o->conf, errs, sizeof(errs));
	if (sock == NULL && c != NULL)
		sock = path = socket_path(c);
	if (sock == NULL) {
		sock = "/run/bcdad/" CTL_SOCKET_NAME;
		fprintf(stderr, "bcdad: %s could not be read, so trying %s "
		    "(use -s to name the socket)\n", o->conf, sock);
	}
	rc = client_main(sock, o->argc, o->argv);
	free(path);
	config_free(c);
	return rc;
}
