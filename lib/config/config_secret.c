/*
 * Configuration: reading a profile's BCDA client secret from a file or a
 * systemd credential (see config.h).  The secret is never stored in struct
 * config and never reaches an error message.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define SECRET_MAX		4096

/*
 * Reads the secret for a profile at start-up and whenever a token is
 * needed.  The file must be a regular file owned by our effective uid and
 * closed to group and others.  The secret itself never reaches err.
 */
char *
config_read_secret(const struct profile *p, char *err, size_t errlen)
{
	char buf[SECRET_MAX + 1], path[4096], what[4200];
	const char *dir;
	struct stat st;
	char *secret = NULL;
	size_t len = 0;
	ssize_t n;
	int fd = -1;

	if (p->secret_file != NULL) {
		snprintf(path, sizeof(path), "%s", p->secret_file);
		snprintf(what, sizeof(what), "client_secret_file %s", path);
	} else if (p->secret_credential != NULL) {
		dir = getenv("CREDENTIALS_DIRECTORY");
		if (dir == NULL || dir[0] == '\0') {
			snprintf(err, errlen, "profile %s: "
			    "client_secret_credential %s needs "
			    "$CREDENTIALS_DIRECTORY, which is not set; run "
			    "bcdad under systemd with LoadCredential= or "
			    "LoadCredentialEncrypted=, or use "
			    "client_secret_file", p->name,
			    p->secret_credential);
			return NULL;
		}
		snprintf(path, sizeof(path), "%s/%s", dir,
		    p->secret_credential);
		snprintf(what, sizeof(what), "client_secret_credential %s (%s)",
		    p->secret_credential, path);
	} else if (p->bcda_secret_arn != NULL) {
		snprintf(err, errlen, "profile %s takes its BCDA credentials "
		    "from Secrets Manager (bcda_secret_arn %s), not from a "
		    "file", p->name, p->bcda_secret_arn);
		return NULL;
	} else {
		snprintf(err, errlen, "profile %s has no client secret source",
		    p->name);
		return NULL;
	}

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		snprintf(err, errlen, "%s: cannot open: %s%s", what,
		    strerror(errno), errno == ELOOP ?
		    " (symbolic links are refused)" : "");
		goto fail;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", what, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", what);
		goto fail;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "%s is %s by group or others "
		    "(mode %04o); chmod 600 it", what,
		    (st.st_mode & 044) ? "readable" : "accessible",
		    (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s is owned by uid %u, not by bcdad's "
		    "uid %u; chown it", what, (unsigned)st.st_uid,
		    (unsigned)geteuid());
		goto fail;
	}
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "%s: read: %s", what,
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > SECRET_MAX) {
		snprintf(err, errlen, "%s is larger than %d bytes; it must "
		    "hold only the secret", what, SECRET_MAX);
		goto fail;
	}
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		len--;
	if (len == 0) {
		snprintf(err, errlen, "%s is empty", what);
		goto fail;
	}
	if (memchr(buf, '\0', len) != NULL) {
		snprintf(err, errlen, "%s contains a NUL byte", what);
		goto fail;
	}
	if ((secret = strndup(buf, len)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", what);
		goto fail;
	}

fail:
	explicit_bzero(buf, sizeof(buf));
	if (fd != -1)
		close(fd);
	return secret;
}
