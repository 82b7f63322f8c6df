/*
 * Secrets (client secrets, bearer tokens, AWS keys) are wiped from memory
 * before it is freed.
 */
#ifndef BCDAD_WIPE_H
#define BCDAD_WIPE_H

/* explicit_bzero and free of a NUL-terminated string; NULL is nothing. */
void	wipe_free(char *);

#endif
