/*
 * poller.h - smtpd-maildir: a tiny readiness API over epoll (Linux) or
 * poll(2) (everywhere else, or with -DSMTPD_EXAMPLE_USE_POLL).
 *
 *   poller_new / poller_del   create / free
 *   poller_set                add, change or (events 0) mute an fd
 *   poller_add                add an fd not added yet (under epoll one
 *                             system call, where poller_set first tries
 *                             to change it)
 *   poller_remove             forget an fd
 *   poller_wait               wait up to timeout_ms, report ready fds
 *
 * Level-triggered: an fd is reported for as long as it stays ready.
 */
#ifndef SMTPD_MAILDIR_POLLER_H
#define SMTPD_MAILDIR_POLLER_H

#define POLLER_IN 1u
#define POLLER_OUT 2u
#define POLLER_ERR 4u /* error or hang-up: read/write will tell which */

typedef struct poller poller;

typedef struct poller_event {
  void *ptr;       /* what was given to poller_set */
  unsigned events; /* POLLER_* bits */
} poller_event;

poller *poller_new(void);
void poller_del(poller *p);
int poller_set(poller *p, int fd, unsigned events, void *ptr);
int poller_add(poller *p, int fd, unsigned events, void *ptr);
int poller_remove(poller *p, int fd);
/* Returns the number of events written to ev (at most max), 0 on timeout
 * or EINTR, -1 on error. */
int poller_wait(poller *p, poller_event *ev, int max, int timeout_ms);

#endif
