/*
 * bcdad's two programs, bcdad (cli.c: the client commands) and
 * bcdad-daemon (main.c: the daemon, -n, doctor): prototypes of daemon/,
 * grouped by file.
 */
#ifndef BCDAD_DAEMON_H
#define BCDAD_DAEMON_H

#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "config/config.h"
#include "engine/engine.h"

#define CTL_VERSION	1
#define CTL_MAX_MSG	(64 * 1024)	/* a request or reply line */
#define CTL_TIMEOUT_MS	5000		/* a client that says nothing */
#define CTL_EVICT_MS	250		/* silent this long: may be dropped */
#define CTL_PAGE_MAX	200		/* jobs in one status answer */
#define CTL_MAX_CONNS	64		/* open at once (at most); the oldest goes */
#define CTL_SOCKET_NAME	CONFIG_SOCKET_NAME

#define DEFAULT_CONFIG	"/etc/bcdad/bcdad.conf"

/* commands.c: what bcdad (cli.c) and bcdad-daemon (main.c) share */
struct cmd_opts {
	const char	*conf;		/* -c, $BCDAD_CONFIG or the default */
	const char	*sock;		/* -s, or NULL */
	int		 debug;		/* -d */
	int		 check;		/* -n */
	int		 argc;		/* the command and its arguments */
	char		**argv;
};

void	usage(FILE *);
int	command_help(int argc, char **argv);
/* -1 to go on, or the exit status (-h, -v, COMMAND --help, bad option). */
int	cmd_options(int argc, char **argv, struct cmd_opts *);
char	*socket_path(const struct config *);
/* A client command, over the socket from -s or the configuration. */
int	cmd_client(const struct cmd_opts *);

/* daemon.c */
int	daemon_run(struct config *, int debug);
int	daemon_check_dirs(const struct config *, char *errs, size_t errlen);

/* ctlreq.c: a control request, read */
enum ctl_cmd { CTL_STATUS, CTL_HISTORY, CTL_RUN, CTL_CANCEL, CTL_RETRY };

struct ctl_req {
	json_t		*json;		/* owns the strings below */
	enum ctl_cmd	 cmd;		/* "ping" is CTL_STATUS */
	int64_t		 job;		/* as given; 0: none */
	const char	*profile;	/* run; status filter */
	const char	*since;		/* run */
	int		 full;		/* run */
	struct job_page	 page;		/* status */
};

int	ctl_req_parse(const char *line, size_t len, struct ctl_req *,
	    const char **err);
void	ctl_req_free(struct ctl_req *);

/* control.c */
struct ctl;
struct ctl	*ctl_listen(uv_loop_t *, struct engine *, const char *path,
		    long gid, int maxconns, int fd);
void		 ctl_close(struct ctl *);

/* client.c */
int	client_main(const char *sock, int argc, char **argv);
json_t	*client_call(const char *sock, json_t *req);

/* status.c: the replies to status and history, and the metrics */
json_t	*status_jobs(struct engine *, const struct job_page *,
	    int64_t *next);
json_t	*status_job_one(struct engine *, int64_t id);
json_t	*status_job_detail(struct engine *, int64_t id);
json_t	*status_profiles(struct engine *);
char	*status_metrics(struct engine *);

/* doctor.c, doctor_net.c */
struct doctor {
	int	failed;
};

int	doctor_main(const struct config *, const char *sock,
	    const char *profile);
void	doctor_line(struct doctor *, int ok, const char *what,
	    const char *fix);
void	doctor_net(struct doctor *, const struct config *,
	    const struct profile *only);

#endif
