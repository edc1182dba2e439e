/*
 * poller.c - smtpd-maildir: readiness notification, epoll or poll(2).
 *
 *   poller_new, poller_del, poller_set, poller_add, poller_remove,
 *   poller_wait
 *
 * The epoll version keeps nothing but the epoll fd. The poll version keeps
 * a dense pollfd array plus an fd -> slot index so every call but
 * poller_wait is O(1).
 */
#define _GNU_SOURCE
#include "poller.h" /* POLLER_EPOLL: which of the two */

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef POLLER_EPOLL
#include <sys/syscall.h>

#include "sysio.h"

struct poller {
  int epfd;
};

poller *poller_new(void) {
  poller *p = malloc(sizeof *p);
  if (p == NULL)
    return NULL;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) {
    free(p);
    return NULL;
  }
  return p;
}

void poller_del(poller *p) {
  if (p == NULL)
    return;
  close(p->epfd);
  free(p);
}

_Static_assert(POLLER_IN == EPOLLIN && POLLER_OUT == EPOLLOUT &&
                   POLLER_ERR == EPOLLERR && EPOLLHUP == 2 * EPOLLERR,
               "POLLER_* are the epoll bits");

static struct epoll_event event_of(unsigned events, void *ptr) {
  struct epoll_event ev;
  ev.events = events & (POLLER_IN | POLLER_OUT);
  ev.data.ptr = ptr;
  return ev;
}

int poller_set(poller *p, int fd, unsigned events, void *ptr) {
  struct epoll_event ev = event_of(events, ptr);
  if (epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
    return 0;
  if (errno != ENOENT)
    return -1;
  return epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int poller_add(poller *p, int fd, unsigned events, void *ptr) {
  struct epoll_event ev = event_of(events, ptr);
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
    return 0;
  return errno == EEXIST ? poller_set(p, fd, events, ptr) : -1;
}

int poller_remove(poller *p, int fd) {
  return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int poller_wait(poller *p, poller_event *ev, int max, int timeout_ms) {
  /* with the delivery threads running, not epoll_wait(3): glibc wraps
   * that cancellation point in bookkeeping this program never needs
   * (sysio.h); epoll_pwait with no mask is the same call. The events
   * stay as the kernel wrote them (poller_event_bits reads them). */
  int n = sysio_threaded ? (int)syscall(SYS_epoll_pwait, p->epfd, ev, max,
                                        timeout_ms, NULL, (size_t)8)
                         : epoll_wait(p->epfd, ev, max, timeout_ms);
  if (n < 0)
    return errno == EINTR ? 0 : -1;
  return n;
}

#else /* poll(2) */
#include <poll.h>

struct poller {
  struct pollfd *fds; /* dense: fds[0..n) */
  void **ptrs;        /* ptrs[i] belongs to fds[i] */
  int *slot;          /* fd -> index in fds, -1 when absent */
  int n, cap, slotcap;
};

poller *poller_new(void) {
  return calloc(1, sizeof(poller));
}

void poller_del(poller *p) {
  if (p == NULL)
    return;
  free(p->fds);
  free(p->ptrs);
  free(p->slot);
  free(p);
}

static int grow(poller *p, int fd) {
  if (fd >= p->slotcap) {
    int nc = p->slotcap ? p->slotcap : 64;
    while (nc <= fd)
      nc *= 2;
    int *ns = realloc(p->slot, (size_t)nc * sizeof *ns);
    if (ns == NULL)
      return -1;
    for (int i = p->slotcap; i < nc; i++)
      ns[i] = -1;
    p->slot = ns;
    p->slotcap = nc;
  }
  if (p->n == p->cap) {
    int nc = p->cap ? p->cap * 2 : 64;
    struct pollfd *nf = realloc(p->fds, (size_t)nc * sizeof *nf);
    if (nf == NULL)
      return -1;
    p->fds = nf;
    void **np = realloc(p->ptrs, (size_t)nc * sizeof *np);
    if (np == NULL)
      return -1;
    p->ptrs = np;
    p->cap = nc;
  }
  return 0;
}

int poller_set(poller *p, int fd, unsigned events, void *ptr) {
  short pe = 0;
  if (events & POLLER_IN)
    pe |= POLLIN;
  if (events & POLLER_OUT)
    pe |= POLLOUT;
  if (fd < p->slotcap && p->slot[fd] >= 0) {
    int i = p->slot[fd];
    p->fds[i].events = pe;
    p->ptrs[i] = ptr;
    return 0;
  }
  if (grow(p, fd) != 0)
    return -1;
  int i = p->n++;
  p->fds[i].fd = fd;
  p->fds[i].events = pe;
  p->fds[i].revents = 0;
  p->ptrs[i] = ptr;
  p->slot[fd] = i;
  return 0;
}

int poller_add(poller *p, int fd, unsigned events, void *ptr) {
  return poller_set(p, fd, events, ptr);
}

int poller_remove(poller *p, int fd) {
  if (fd >= p->slotcap || p->slot[fd] < 0) {
    errno = ENOENT;
    return -1;
  }
  int i = p->slot[fd], last = --p->n;
  p->slot[fd] = -1;
  if (i != last) { /* move the last entry into the hole */
    p->fds[i] = p->fds[last];
    p->ptrs[i] = p->ptrs[last];
    p->slot[p->fds[i].fd] = i;
  }
  return 0;
}

int poller_wait(poller *p, poller_event *out, int max, int timeout_ms) {
  int r = poll(p->fds, (nfds_t)p->n, timeout_ms);
  if (r < 0)
    return errno == EINTR ? 0 : -1;
  int k = 0;
  for (int i = 0; i < p->n && k < max && r > 0; i++) {
    short re = p->fds[i].revents;
    if (re == 0)
      continue;
    r--;
    unsigned e = 0;
    if (re & POLLIN)
      e |= POLLER_IN;
    if (re & POLLOUT)
      e |= POLLER_OUT;
    if (re & (POLLERR | POLLHUP | POLLNVAL))
      e |= POLLER_ERR;
    out[k].ptr = p->ptrs[i];
    out[k].events = e;
    k++;
  }
  return k;
}
#endif
