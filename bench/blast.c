/*
 * blast.c - a light SMTP load client for measuring a server's own limit
 * (bench/workers.sh): one thread, one epoll loop, S sessions, each
 * sending its transactions in batches with PIPELINING and CHUNKING
 * (RFC 2920, RFC 3030): "MAIL FROM", "RCPT TO" and "BDAT 1024 LAST" with
 * the 1 KiB message, B transactions per write, then the replies of the
 * batch read before the next. No command waits for a reply of its own
 * transaction, so the client spends a few instructions and a fraction of
 * a system call per message, and the server, not the client, is what
 * runs out of CPU first (Postfix's smtp-source waits for every reply and
 * costs about as much per message as the server it measures).
 *
 *   smtpd-bench-blast ADDR:PORT SESSIONS MESSAGES [BATCH]   (BATCH 16)
 *
 * Prints the messages, the wall time and messages per second. Any reply
 * that is not 2xx (after the greeting and EHLO, which must be 220/250),
 * a closed connection or a server without CHUNKING ends it with status 1.
 * A benchmark program, not a test: it reads the clock.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY 1024
#define TX_HEAD "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n" \
                "BDAT 1024 LAST\r\n"

enum phase { GREETING, EHLO, RUN, DONE };

typedef struct sess {
  int fd;
  enum phase phase;
  long waiting;      /* final replies still due for the last batch */
  char in[8192];     /* the start of a reply line not complete yet */
  size_t in_len;
  int chunking;      /* EHLO listed CHUNKING */
} sess;

static char *batch_buf;
static size_t tx_len;
static long messages_left, replies_total;

static void die(const char *what, const sess *s) {
  fprintf(stderr, "blast: %s (session fd %d)\n", what, s ? s->fd : -1);
  exit(1);
}

static void send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) { /* the batch is small: wait for room */
        struct timespec t = {0, 100000};
        nanosleep(&t, NULL);
        continue;
      }
      die("send failed", NULL);
    }
    p += w, n -= (size_t)w;
  }
}

/* Start the next batch of the session, or QUIT when none is left. */
static void next_batch(sess *s, long batch) {
  long k = messages_left < batch ? messages_left : batch;
  if (k <= 0) {
    send_all(s->fd, "QUIT\r\n", 6);
    s->phase = DONE;
    return;
  }
  messages_left -= k;
  s->waiting = 3 * k;
  send_all(s->fd, batch_buf, (size_t)k * tx_len);
}

/* One complete reply line. */
static void on_line(sess *s, const char *l, size_t n, long batch) {
  int final = n >= 4 && l[3] == ' ';
  if (n < 4 || (l[3] != ' ' && l[3] != '-'))
    die("malformed reply", s);
  switch (s->phase) {
  case GREETING:
    if (memcmp(l, "220", 3))
      die("greeting is not 220", s);
    if (final) {
      send_all(s->fd, "EHLO blast.example\r\n", 20);
      s->phase = EHLO;
    }
    break;
  case EHLO:
    if (memcmp(l, "250", 3))
      die("EHLO refused", s);
    if (n >= 12 && !memcmp(l + 4, "CHUNKING", 8))
      s->chunking = 1;
    if (final) {
      if (!s->chunking)
        die("the server does not offer CHUNKING", s);
      s->phase = RUN;
      next_batch(s, batch);
    }
    break;
  case RUN:
    if (l[0] != '2')
      die("a transaction was refused", s);
    if (final) {
      replies_total++;
      if (--s->waiting == 0)
        next_batch(s, batch);
    }
    break;
  case DONE:
    break;
  }
}

int main(int argc, char **argv) {
  char host[64], *colon;
  struct sockaddr_in sa;
  long sessions, messages, batch, i, open_sessions;
  sess *ss;
  int ep;
  struct timespec t0, t1;
  double secs;

  if (argc < 4 || !(colon = strrchr(argv[1], ':')) ||
      (size_t)(colon - argv[1]) >= sizeof host) {
    fprintf(stderr, "usage: smtpd-bench-blast ADDR:PORT SESSIONS MESSAGES "
                    "[BATCH]\n");
    return 2;
  }
  memcpy(host, argv[1], (size_t)(colon - argv[1]));
  host[colon - argv[1]] = '\0';
  sessions = atol(argv[2]);
  messages = atol(argv[3]);
  batch = argc > 4 ? atol(argv[4]) : 16;
  if (sessions < 1 || messages < 1 || batch < 1 || batch > 1000) {
    fprintf(stderr, "blast: SESSIONS, MESSAGES >= 1, 1 <= BATCH <= 1000\n");
    return 2;
  }
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "blast: not an IPv4 address: %s\n", host);
    return 2;
  }

  /* one batch: B transactions, each the commands and the 1 KiB body */
  tx_len = sizeof TX_HEAD - 1 + BODY;
  batch_buf = malloc((size_t)batch * tx_len);
  ss = calloc((size_t)sessions, sizeof *ss);
  if (!batch_buf || !ss)
    die("out of memory", NULL);
  for (i = 0; i < batch; i++) {
    char *t = batch_buf + (size_t)i * tx_len, *b = t + sizeof TX_HEAD - 1;
    size_t j;
    memcpy(t, TX_HEAD, sizeof TX_HEAD - 1);
    memcpy(b, "Subject: blast\r\n\r\n", 18);
    for (j = 18; j < BODY - 2; j++)
      b[j] = (char)('a' + j % 26);
    for (j = 18 + 76; j < BODY - 2; j += 78) /* 78-octet lines */
      b[j] = '\r', b[j + 1] = '\n';
    b[BODY - 2] = '\r', b[BODY - 1] = '\n';
  }
  messages_left = messages;

  ep = epoll_create1(0);
  if (ep < 0)
    die("epoll_create1", NULL);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (i = 0; i < sessions; i++) {
    struct epoll_event ev;
    int one = 1;
    ss[i].fd = socket(AF_INET, SOCK_STREAM, 0);
    if (ss[i].fd < 0 || connect(ss[i].fd, (struct sockaddr *)&sa, sizeof sa))
      die("connect failed", &ss[i]);
    setsockopt(ss[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ev.events = EPOLLIN;
    ev.data.ptr = &ss[i];
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ss[i].fd, &ev))
      die("epoll_ctl", &ss[i]);
  }
  open_sessions = sessions;
  while (open_sessions) {
    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, -1), k;
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die("epoll_wait", NULL);
    }
    for (k = 0; k < n; k++) {
      sess *s = evs[k].data.ptr;
      char buf[65536];
      ssize_t r = recv(s->fd, buf, sizeof buf, 0);
      size_t off = 0;
      if (r <= 0) {
        if (r < 0 && errno == EINTR)
          continue;
        if (s->phase != DONE)
          die("the server closed the connection", s);
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        open_sessions--;
        continue;
      }
      while (off < (size_t)r) {
        char *lf = memchr(buf + off, '\n', (size_t)r - off);
        size_t take = lf ? (size_t)(lf - (buf + off)) + 1 : (size_t)r - off;
        if (s->in_len + take > sizeof s->in)
          die("reply line too long", s);
        if (!s->in_len && lf) { /* the whole line is in buf */
          on_line(s, buf + off, take, batch);
        } else {
          memcpy(s->in + s->in_len, buf + off, take);
          s->in_len += take;
          if (lf) {
            on_line(s, s->in, s->in_len, batch);
            s->in_len = 0;
          }
        }
        off += take;
      }
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  if (replies_total != 3 * messages)
    die("reply count does not match", NULL);
  printf("%ld messages in %.3f s: %.0f msgs/s\n", messages, secs,
         (double)messages / secs);
  free(batch_buf);
  free(ss);
  close(ep);
  return 0;
}
