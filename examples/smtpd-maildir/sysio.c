/*
 * sysio.c - smtpd-maildir: the one flag sysio.h's calls read.
 */
#define _GNU_SOURCE
#include "sysio.h"

#if defined(__linux__)
int sysio_threaded; /* the process runs the delivery threads */
#endif
