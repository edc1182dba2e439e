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

/* the values of EPOLLIN, EPOLLOUT and EPOLLERR (and POLLIN, POLLOUT,
 * POLLERR on Linux), so the epoll version barely converts */
#define POLLER_IN 1u
#define POLLER_OUT 4u
#define POLLER_ERR 8u /* error or hang-up: read/write will tell which */

typedef struct poller poller;

/* One ready fd: poller_event_ptr gives what was given to poller_set,
 * poller_event_bits its POLLER_* bits. Under epoll it is the kernel's
 * own struct epoll_event, filled by epoll_wait and read in place. */
#if defined(__linux__) && !defined(SMTPD_EXAMPLE_USE_POLL)
#define POLLER_EPOLL 1
#include <sys/epoll.h>
typedef struct epoll_event poller_event;
static inline void *poller_event_ptr(const poller_event *e) {
  return e->data.ptr;
}
static inline unsigned poller_event_bits(const poller_event *e) {
  unsigned x = e->events; /* EPOLLHUP (2 * EPOLLERR) counts as ERR */
  return (x & (POLLER_IN | POLLER_OUT | POLLER_ERR)) | ((x & EPOLLHUP) >> 1);
}
#else
typedef struct poller_event {
  void *ptr;       /* what was given to poller_set */
  unsigned events; /* POLLER_* bits */
} poller_event;
static inline void *poller_event_ptr(const poller_event *e) {
  return e->ptr;
}
static inline unsigned poller_event_bits(const poller_event *e) {
  return e->events;
}
#endif

poller *poller_new(void);
void poller_del(poller *p);
int poller_set(poller *p, int fd, unsigned events, void *ptr);
int poller_add(poller *p, int fd, unsigned events, void *ptr);
int poller_remove(poller *p, int fd);
/* Returns the number of events written to ev (at most max), 0 on timeout
 * or EINTR, -1 on error. */
int poller_wait(poller *p, poller_event *ev, int max, int timeout_ms);

#endif
