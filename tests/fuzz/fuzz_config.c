/* The configuration file: written to a memfd, read by its path. */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c;
	char path[64], err[4096];
	int fd;

	if ((fd = memfd_create("bcdad.conf", 0)) < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if ((c = config_load(path, err, sizeof(err))) != NULL)
			config_free(c);
	}
	close(fd);
	return 0;
}
