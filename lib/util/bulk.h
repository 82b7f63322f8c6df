/*
 * Bulk work on libuv's thread pool (inflating, validating, hashing) runs
 * at a lower priority than the event loop, so that a busy export never
 * slows the loop's answers to the control socket, the watchdog's pings,
 * or the short-lived `bcdad status` client beside it.
 */
#ifndef BCDAD_BULK_H
#define BCDAD_BULK_H

/* Nice of the pool threads, relative to the process's. */
#define BULK_NICE	10

/* Lowers the calling pool thread's priority, once per thread. */
void	bulk_thread(void);

#endif
