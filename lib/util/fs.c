/*
 * Small filesystem helpers: whole writes, directory fsync, atomic file
 * replacement and mkdir -p.  See fs.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"

int
fs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, p, len)) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
fs_fsync_dir(const char *dir)
{
	int fd, rc = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

int
fs_write_atomic(const char *path, const void *buf, size_t len, mode_t mode)
{
	char *tmp = NULL, *dcopy = NULL;
	int fd = -1, rc;

	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return -ENOMEM;
	/* Exactly mode, whatever the umask. */
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    mode)) < 0 || fchmod(fd, mode) != 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = fs_write_all(fd, buf, len)) != 0)
		goto fail;
	if (fsync(fd) != 0) {
		rc = -errno;
		goto fail;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) != 0) {
		rc = -errno;
		goto fail;
	}
	if ((dcopy = strdup(path)) == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = fs_fsync_dir(dirname(dcopy));
	free(dcopy);
	free(tmp);
	return rc;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return rc;
}

/*
 * Each directory made is synced into its parent: files recorded as saved
 * under it must not vanish with it on a power loss.
 */
int
fs_mkdir_p(const char *path, mode_t mode)
{
	char *p, *q, *s;
	int rc = 0;

	if ((s = strdup(path)) == NULL)
		return -ENOMEM;
	for (p = s + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;

			*p = '\0';
			if (mkdir(s, mode) == 0) {
				q = strrchr(s, '/');
				if (q == s)
					rc = fs_fsync_dir("/");
				else if (q != NULL) {
					*q = '\0';
					rc = fs_fsync_dir(s);
					*q = '/';
				} else
					rc = fs_fsync_dir(".");
			} else if (errno != EEXIST)
				rc = -errno;
			if (rc != 0 || (*p = c) == '\0')
				break;
		}
	}
	free(s);
	return rc;
}

/* 1 if directory path holds a file anywhere beneath it, 0 if not. */
static int
holds_files(const char *path, int depth)
{
	struct dirent *de;
	char sub[4096];
	DIR *d;
	int rc = 0;

	if (depth > 8)
		return 1;
	if ((d = opendir(path)) == NULL)
		return -errno;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type != DT_DIR)
			rc = 1;
		else if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >=
		    (int)sizeof(sub))
			rc = -ENAMETOOLONG;
		else
			rc = holds_files(sub, depth + 1);
	}
	closedir(d);
	return rc;
}

int
fs_mkdir_unused(const char *path, mode_t mode)
{
	char *parent;
	int rc;

	if (mkdir(path, mode) != 0) {
		if (errno != EEXIST)
			return -errno;
		rc = holds_files(path, 0);
		return rc == 0 ? 1 : rc == 1 ? -EEXIST : rc;
	}
	if ((parent = strdup(path)) == NULL)
		return -ENOMEM;
	rc = fs_fsync_dir(dirname(parent));
	free(parent);
	return rc;
}

int
fs_writable(const char *path)
{
	struct stat st;
	char *s, *p;
	int rc = 0;

	if ((s = strdup(path)) == NULL)
		return -ENOMEM;
	while (rc == 0 && stat(s, &st) != 0) {
		if (errno != ENOENT || (p = strrchr(s, '/')) == NULL)
			rc = -errno;
		else
			p[p == s] = '\0';	/* "/a" goes to "/" */
	}
	if (rc == 0)
		rc = !S_ISDIR(st.st_mode) ? -ENOTDIR :
		    access(s, W_OK | X_OK) != 0 ? -errno : 0;
	free(s);
	return rc;
}

int
fs_open_fds(void)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1;	/* not the directory's own */
}
