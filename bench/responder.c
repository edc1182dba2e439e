/*
 * responder.c - the floor for a line-based server: an epoll loop that
 * answers smtp-source well enough to be measured beside smtpd-maildir and
 * smtp-sink (bench/callgrind.sh), and nothing more. It is not SMTP: no
 * parser, no state machine, no checks; every command line gets a fixed
 * reply chosen by its first four octets, and a message ends at the first
 * CRLF.CRLF after DATA (no dot-unstuffing, no limits).
 *
 *   smtpd-bench-responder [ADDR:PORT]     (default 127.0.0.1:2526)
 *
 * Replies: 220 on connect; EHLO/LHLO a two-line 250; DATA 354; the end
 * of the data 250; QUIT 221 and close; anything else 250. Replies pile up
 * in a small per-connection buffer written after each read, so pipelined
 * commands cost one send. A client that makes it queue more than
 * OUT_SIZE octets of replies without reading them is dropped. SIGTERM or
 * SIGINT ends the program with exit status 0 (so callgrind writes its
 * totals).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINE_SIZE 512  /* longer command lines are cut (their start counts) */
#define OUT_SIZE 1024  /* replies not yet written */

typedef struct conn {
  int fd;
  int in_data;       /* inside DATA: looking for CRLF.CRLF */
  int dot_state;     /* octets of "\r\n.\r\n" matched so far */
  int closing;       /* QUIT answered: close once written */
  size_t line_len;
  size_t out_len;
  char line[LINE_SIZE];
  char out[OUT_SIZE];
} conn;

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static int reply(conn *c, const char *s, size_t n) {
  if (c->out_len + n > OUT_SIZE)
    return -1;
  memcpy(c->out + c->out_len, s, n);
  c->out_len += n;
  return 0;
}
#define REPLY(c, lit) reply((c), (lit), sizeof(lit) - 1)

static int command(conn *c) {  /* one complete command line */
  const char *l = c->line;
  if (c->line_len >= 4) {
    if (!strncasecmp(l, "DATA", 4)) {
      c->in_data = 1;
      c->dot_state = 2;  /* the CRLF after DATA counts: ".\r\n" ends it */
      return REPLY(c, "354 go ahead\r\n");
    }
    if (!strncasecmp(l, "QUIT", 4)) {
      c->closing = 1;
      return REPLY(c, "221 bye\r\n");
    }
    if (!strncasecmp(l, "EHLO", 4) || !strncasecmp(l, "LHLO", 4))
      return REPLY(c, "250-responder\r\n250 PIPELINING\r\n");
  }
  return REPLY(c, "250 ok\r\n");
}

static int feed(conn *c, const char *p, size_t n) {
  static const char end[] = "\r\n.\r\n";
  for (size_t i = 0; i < n && !c->closing; i++) {
    char ch = p[i];
    if (c->in_data) {
      if (c->dot_state == 0) {  /* skip to the next CR at memchr speed */
        const char *cr = memchr(p + i, '\r', n - i);
        if (!cr)
          break;
        i = (size_t)(cr - p);
        ch = '\r';
      }
      if (ch == end[c->dot_state])
        c->dot_state++;
      else
        c->dot_state = ch == '\r' ? 1 : 0;
      if (c->dot_state == 5) {
        c->in_data = 0;
        if (REPLY(c, "250 accepted\r\n") != 0)
          return -1;
      }
      continue;
    }
    if (ch == '\n') {
      if (command(c) != 0)
        return -1;
      c->line_len = 0;
    } else if (c->line_len < LINE_SIZE) {
      c->line[c->line_len++] = ch;
    }
  }
  return 0;
}

static int flush(conn *c) {  /* 0: all written, 1: wait for EPOLLOUT */
  size_t off = 0;
  while (off < c->out_len) {
    ssize_t w = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno == EAGAIN)
      break;
    if (w <= 0)
      return -1;
    off += (size_t)w;
  }
  memmove(c->out, c->out + off, c->out_len - off);
  c->out_len -= off;
  return c->out_len ? 1 : 0;
}

static void drop(int ep, conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c);
}

static void serve(int ep, conn *c, uint32_t events) {
  static char buf[65536];
  if (events & EPOLLIN) {
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
      drop(ep, c);
      return;
    }
    if (r > 0 && feed(c, buf, (size_t)r) != 0) {
      drop(ep, c);
      return;
    }
  }
  int f = flush(c);
  if (f < 0 || (f == 0 && c->closing)) {
    drop(ep, c);
    return;
  }
  struct epoll_event ev = {.events = f ? EPOLLOUT : EPOLLIN, .data.ptr = c};
  if (f || (events & EPOLLOUT))
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void accept_one(int ep, int lfd) {
  int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0)
    return;
  conn *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return;
  }
  c->fd = fd;
  REPLY(c, "220 responder ESMTP\r\n");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    close(fd);
    free(c);
    return;
  }
  serve(ep, c, 0);
}

int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : "127.0.0.1:2526";
  char host[64];
  const char *colon = strrchr(addr, ':');
  if (!colon || (size_t)(colon - addr) >= sizeof host) {
    fprintf(stderr, "usage: %s [ADDR:PORT]\n", argv[0]);
    return 2;
  }
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(colon + 1))};
  int one = 1;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0 || inet_pton(AF_INET, host, &sin.sin_addr) != 1 ||
      setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(lfd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
      listen(lfd, 1024) != 0) {
    perror(addr);
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0) {
    perror("epoll");
    return 1;
  }
  struct epoll_event evs[64];
  while (!stop) {
    int n = epoll_wait(ep, evs, 64, -1);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL)
        accept_one(ep, lfd);
      else
        serve(ep, evs[i].data.ptr, evs[i].events);
    }
  }
  return 0;
}
