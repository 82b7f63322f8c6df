/*
 * Small filesystem helpers shared by the download path and the daemon.
 * Each returns 0 or a negative errno.
 */
#ifndef BCDAD_FS_H
#define BCDAD_FS_H

#include <stddef.h>

/* Writes all of buf to fd, going on after short writes and EINTR. */
int	fs_write_all(int fd, const void *buf, size_t len);
/* fsyncs directory dir, so that a rename in it is durable. */
int	fs_fsync_dir(const char *dir);
/* Replaces path with buf: path.tmp written, fsynced, renamed, dir fsynced. */
int	fs_write_atomic(const char *path, const void *buf, size_t len);
/* Creates path and its missing parents (mode 0750). */
int	fs_mkdir_p(const char *path);

#endif
