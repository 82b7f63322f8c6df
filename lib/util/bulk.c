/*
 * Lower priority for the thread pool's bulk work.  See bulk.h.
 */
#include <sys/resource.h>
#include <unistd.h>

#include "bulk.h"

void
bulk_thread(void)
{
	static _Thread_local int done;

	if (done)
		return;
	done = 1;
	/*
	 * On Linux a nice value belongs to the thread (its tid); raising it
	 * needs no privilege.  Failing, the work runs at the usual priority.
	 */
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(),
	    getpriority(PRIO_PROCESS, 0) + BULK_NICE);
}
