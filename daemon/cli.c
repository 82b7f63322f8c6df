/*
 * bcdad: the command users type.  The client commands (status, run,
 * cancel, retry, history) are answered here, by a small program that
 * loads only libc, jansson and inih: it starts in about a millisecond, so
 * `bcdad status` stays quick while an export keeps the machine busy.  The
 * daemon, -n and doctor need the rest (curl, libuv, SQLite, OpenSSL,
 * ISA-L, libsystemd): for them this process becomes bcdad-daemon (execv,
 * same pid, so systemd's notify socket, watchdog and socket activation
 * see no difference).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bcdad.h"

#ifndef BCDAD_LIBEXECDIR
#define BCDAD_LIBEXECDIR	"/usr/libexec"
#endif
#define DAEMON_NAME		"bcdad-daemon"

/*
 * Beside this program first (a build tree), then where make install
 * puts it.
 */
static void
exec_daemon(char **argv)
{
	char self[PATH_MAX], path[PATH_MAX + sizeof(DAEMON_NAME) + 1];
	ssize_t n;

	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0) {
		self[n] = '\0';
		snprintf(path, sizeof(path), "%s/" DAEMON_NAME,
		    dirname(self));
		if (access(path, X_OK) == 0)
			execv(path, argv);
	}
	snprintf(path, sizeof(path), "%s/bcdad/" DAEMON_NAME,
	    BCDAD_LIBEXECDIR);
	execv(path, argv);
	fprintf(stderr, "bcdad: cannot run %s: %s\n", path, strerror(errno));
}

int
main(int argc, char **argv)
{
	struct cmd_opts o;
	int rc;

	if ((rc = cmd_options(argc, argv, &o)) >= 0)
		return rc;
	if (o.argc > 0 && strcmp(o.argv[0], "doctor") != 0)
		return cmd_client(&o);
	exec_daemon(argv);
	return 1;
}
