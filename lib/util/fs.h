/*
 * Small filesystem helpers shared by the download path and the daemon.
 * Each returns 0 or a negative errno.
 */
#ifndef BCDAD_FS_H
#define BCDAD_FS_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all of buf to fd, going on after short writes and EINTR. */
int	fs_write_all(int fd, const void *buf, size_t len);
/* fsyncs directory dir, so that a rename in it is durable. */
int	fs_fsync_dir(const char *dir);
/*
 * Replaces path with buf (a new file of mode): path.tmp written, fsynced,
 * renamed, dir fsynced.
 */
int	fs_write_atomic(const char *path, const void *buf, size_t len,
	    mode_t mode);
/* Creates path and its missing parents with mode (e.g. 0700). */
int	fs_mkdir_p(const char *path, mode_t mode);
/*
 * Creates directory path (its parent must exist) and syncs it into the
 * parent: 0.  -EEXIST if path exists and holds a file anywhere beneath
 * it; 1 if it exists holding none (only empty directories, or nothing).
 */
int	fs_mkdir_unused(const char *path, mode_t mode);
/*
 * Whether this process can write in directory path, or create it: path
 * itself when it exists, else its nearest existing parent.  A read-only
 * mount (systemd's ProtectSystem=) answers -EROFS.
 */
int	fs_writable(const char *path);
/* The number of descriptors this process has open, or -1. */
int	fs_open_fds(void);

#endif
