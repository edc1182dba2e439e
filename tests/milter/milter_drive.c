/*
 * milter_drive.c - a minimal libsmtpd host with real Milter sockets, for
 * the real-filter tests (tests/milter/test_milter.py).
 *
 * One SMTP session, its client played from a file (sent one line at a
 * time, each after the replies before it were read); the filters are
 * reached over non-blocking inet or unix sockets in a poll(2) loop that
 * keeps each smtpd_milter's timeout with CLOCK_MONOTONIC. The message is
 * spooled in memory; the end-of-message hook writes the edited message
 * with the rewriter, and the edit list, to files.
 *
 *   milter_drive --in CONVERSATION [--milter SPEC]... [--default-action
 *                tempfail|accept|reject] [--timeout MS] [--out MESSAGE]
 *                [--replies FILE] [--edits FILE] [--client ADDR]
 *                [--client-name NAME]
 *
 * Exit 0 when the conversation ran to its end (whatever the replies).
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "smtpd/milter.h"

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p)
      abort();
  }
  memcpy(b->p + b->len, d, n);
  b->len += n;
  b->p[b->len] = '\0';
}

typedef struct drive {
  smtpd_session *s;
  smtpd_milter_chain *ch;
  int fd[16];
  int connecting[16];
  double deadline[16];
  buf spool, replies;
  const char *out_path, *edits_path;
} drive;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static smtpd_verdict on_connect(smtpd_session *s, void *ud)
{
  (void)s;
  return smtpd_milter_on_connect(((drive *)ud)->ch);
}
static smtpd_verdict on_helo(smtpd_session *s, const smtpd_helo *h, void *ud)
{
  (void)s;
  return smtpd_milter_on_helo(((drive *)ud)->ch, h);
}
static smtpd_verdict on_mail(smtpd_session *s, const smtpd_mail *m, void *ud)
{
  (void)s;
  return smtpd_milter_on_mail(((drive *)ud)->ch, m);
}
static smtpd_verdict on_rcpt(smtpd_session *s, const smtpd_rcpt *r, void *ud)
{
  (void)s;
  return smtpd_milter_on_rcpt(((drive *)ud)->ch, r);
}
static smtpd_verdict on_data(smtpd_session *s, void *ud)
{
  drive *d = ud;
  (void)s;
  d->spool.len = 0;
  return smtpd_milter_on_data(d->ch);
}
static smtpd_verdict on_body(smtpd_session *s, const uint8_t *p, size_t n,
                             void *ud)
{
  (void)s;
  put(&((drive *)ud)->spool, p, n);
  return SMTPD_ACCEPT;
}
static smtpd_verdict on_complete(smtpd_session *s, const smtpd_message *m,
                                 void *ud)
{
  (void)s;
  return smtpd_milter_on_data_complete(((drive *)ud)->ch, m);
}
static void on_rset(smtpd_session *s, void *ud)
{
  (void)s;
  smtpd_milter_on_rset(((drive *)ud)->ch);
}
static void on_close(smtpd_session *s, smtpd_close_reason r, void *ud)
{
  (void)s;
  (void)r;
  smtpd_milter_chain_quit(((drive *)ud)->ch);
}

static ptrdiff_t reader(void *ctx, uint64_t off, void *out, size_t cap)
{
  drive *d = ctx;
  size_t n;
  if (off >= d->spool.len)
    return 0;
  n = d->spool.len - (size_t)off;
  if (n > cap)
    n = cap;
  memcpy(out, d->spool.p + off, n);
  return (ptrdiff_t)n;
}

static smtpd_verdict eom(smtpd_milter_chain *ch, smtpd_verdict v, void *ctx)
{
  drive *d = ctx;
  const smtpd_milter_edit *e;
  size_t n = smtpd_milter_chain_edits(ch, &e), i;
  FILE *f;

  if (d->edits_path && (f = fopen(d->edits_path, "a"))) {
    fprintf(f, "verdict %d discard %d\n", (int)v,
            smtpd_milter_chain_discard(ch));
    for (i = 0; i < n; i++) {
      if (e[i].kind == SMTPD_MILTER_EDIT_REPLBODY)
        fprintf(f, "%c %zu body %zu\n", (char)e[i].kind, e[i].milter,
                e[i].len);
      else
        fprintf(f, "%c %zu %u [%s] [%s]\n", (char)e[i].kind, e[i].milter,
                e[i].index, e[i].name ? e[i].name : "",
                e[i].value ? e[i].value : "");
    }
    fclose(f);
  }
  if (v == SMTPD_ACCEPT && !smtpd_milter_chain_discard(ch) && d->out_path) {
    smtpd_milter_rewriter *rw;
    size_t off = 0;
    const uint8_t *p;
    f = fopen(d->out_path, "wb");
    if (!f || smtpd_milter_rewriter_new(&rw, NULL, e, n, 0, 0)) {
      if (f)
        fclose(f);
      return SMTPD_TEMPFAIL;
    }
    for (;;) {
      ptrdiff_t t = 0;
      size_t k;
      if (off < d->spool.len)
        t = smtpd_milter_rewriter_feed(rw, d->spool.p + off,
                                       d->spool.len - off);
      else
        smtpd_milter_rewriter_finish(rw);
      if (t < 0)
        break;
      off += (size_t)t;
      while ((k = smtpd_milter_rewriter_output(rw, &p)) > 0) {
        fwrite(p, 1, k, f);
        smtpd_milter_rewriter_consume(rw, k);
      }
      if (off >= d->spool.len && t == 0)
        break;
    }
    smtpd_milter_rewriter_del(rw);
    fclose(f);
  }
  return v;
}

static int open_milter(const char *spec, int *connecting)
{
  char host[256], port_s[8];
  int fam, fd = -1, r;
  uint16_t port;
  if (smtpd_milter_parse_address(spec, &fam, host, sizeof host, &port))
    return -1;
  if (fam == 'U') {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(host) >= sizeof sa.sun_path)
      return -1;
    strcpy(sa.sun_path, host);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
      return -1;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  } else {
    struct addrinfo hints, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port_s, sizeof port_s, "%u", (unsigned)port);
    if (getaddrinfo(host, port_s, &hints, &ai))
      return -1;
    fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd >= 0) {
      fcntl(fd, F_SETFL, O_NONBLOCK);
      r = connect(fd, ai->ai_addr, ai->ai_addrlen);
    } else {
      r = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
      return -1;
  }
  if (r == 0) {
    *connecting = 0;
    return fd;
  }
  if (errno == EINPROGRESS || errno == EAGAIN) {
    *connecting = 1;
    return fd;
  }
  close(fd);
  return -1;
}

/* the session's replies are read at once, as a client would */
static void drain_session(drive *d)
{
  const uint8_t *p;
  size_t n;
  while ((n = smtpd_session_output(d->s, &p)) > 0) {
    put(&d->replies, p, n);
    smtpd_session_consume(d->s, n);
  }
}

static void restart_timer(drive *d, size_t i)
{
  uint32_t ms = smtpd_milter_timeout(smtpd_milter_chain_get(d->ch, i), NULL);
  d->deadline[i] = ms ? now() + ms / 1000.0 : 0;
}

int main(int argc, char **argv)
{
  smtpd_config *cfg;
  smtpd_milter_conf *mc;
  smtpd_callbacks cb = {.version = SMTPD_CALLBACKS_VERSION,
                        .on_connect = on_connect,
                        .on_helo = on_helo,
                        .on_mail = on_mail,
                        .on_rcpt = on_rcpt,
                        .on_data = on_data,
                        .on_body = on_body,
                        .on_data_complete = on_complete,
                        .on_rset = on_rset,
                        .on_close = on_close};
  drive d;
  const char *in_path = NULL, *replies_path = NULL, *client = "127.0.0.1";
  const char *client_name = "localhost";
  smtpd_milter_action act = SMTPD_MILTER_TEMPFAIL;
  const char *specs[16];
  size_t nspecs = 0, i, n, in_off = 0;
  uint32_t timeout = 0;
  buf in = {0};
  FILE *f;
  int a;
  char chunk[65536];
  double start = now();

  memset(&d, 0, sizeof d);
  for (a = 1; a + 1 < argc; a += 2) {
    if (!strcmp(argv[a], "--milter") && nspecs < 16)
      specs[nspecs++] = argv[a + 1];
    else if (!strcmp(argv[a], "--in"))
      in_path = argv[a + 1];
    else if (!strcmp(argv[a], "--out"))
      d.out_path = argv[a + 1];
    else if (!strcmp(argv[a], "--replies"))
      replies_path = argv[a + 1];
    else if (!strcmp(argv[a], "--edits"))
      d.edits_path = argv[a + 1];
    else if (!strcmp(argv[a], "--client"))
      client = argv[a + 1];
    else if (!strcmp(argv[a], "--client-name"))
      client_name = argv[a + 1];
    else if (!strcmp(argv[a], "--timeout"))
      timeout = (uint32_t)strtoul(argv[a + 1], NULL, 10);
    else if (!strcmp(argv[a], "--default-action"))
      act = !strcmp(argv[a + 1], "accept")   ? SMTPD_MILTER_ACCEPT
            : !strcmp(argv[a + 1], "reject") ? SMTPD_MILTER_REJECT
                                             : SMTPD_MILTER_TEMPFAIL;
    else {
      fprintf(stderr, "milter_drive: unknown option %s\n", argv[a]);
      return 2;
    }
  }
  if (!in_path || !(f = fopen(in_path, "rb"))) {
    fprintf(stderr, "milter_drive: --in FILE needed\n");
    return 2;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    put(&in, chunk, n);
  fclose(f);

  smtpd_config_new(&cfg, NULL);
  smtpd_config_set_hostname(cfg, "mx.example.org");
  smtpd_milter_conf_new(&mc, NULL);
  for (i = 0; i < nspecs; i++)
    smtpd_milter_conf_add(mc, specs[i], act);
  if (timeout) {
    smtpd_milter_conf_set_timeout(mc, SMTPD_MILTER_TIMEOUT_CONNECT, timeout);
    smtpd_milter_conf_set_timeout(mc, SMTPD_MILTER_TIMEOUT_COMMAND, timeout);
    smtpd_milter_conf_set_timeout(mc, SMTPD_MILTER_TIMEOUT_CONTENT, timeout);
  }
  smtpd_session_new(&d.s, cfg, &cb, &d);
  smtpd_session_set_client(d.s, client, client_name);
  smtpd_milter_chain_new(&d.ch, mc, d.s);
  smtpd_milter_chain_set_reader(d.ch, reader, &d);
  smtpd_milter_chain_set_eom_hook(d.ch, eom, &d);
  smtpd_milter_chain_set_client(d.ch, strchr(client, ':') ? 6 : 4, 41234);
  smtpd_milter_chain_set_macro(d.ch, "i", "4A2B3C");
  for (i = 0; i < nspecs; i++) {
    smtpd_milter *m = smtpd_milter_chain_get(d.ch, i);
    d.fd[i] = open_milter(specs[i], &d.connecting[i]);
    if (d.fd[i] < 0)
      smtpd_milter_fail(m, "cannot connect");
    else if (!d.connecting[i])
      smtpd_milter_connected(m);
    restart_timer(&d, i);
  }
  smtpd_session_start(d.s);

  while (!smtpd_session_is_done(d.s) && now() - start < 120) {
    struct pollfd pfd[16];
    double t = now(), wait = 1.0;
    int np = (int)nspecs;
    drain_session(&d);
    /* the client: one line at a time, once its replies were read */
    if (in_off < in.len && smtpd_session_want_read(d.s)) {
      char *nl = memchr(in.p + in_off, '\n', in.len - in_off);
      size_t len = nl ? (size_t)(nl - (in.p + in_off)) + 1 : in.len - in_off;
      ptrdiff_t took = smtpd_session_feed(d.s, in.p + in_off, len);
      if (took < 0)
        break;
      in_off += (size_t)took;
      continue;
    }
    if (in_off >= in.len && !smtpd_session_is_paused(d.s) &&
        !smtpd_session_want_write(d.s))
      break; /* the client has nothing more to say */
    for (i = 0; i < nspecs; i++) {
      smtpd_milter *m = smtpd_milter_chain_get(d.ch, i);
      pfd[i].fd = -1;
      pfd[i].events = 0;
      if (d.fd[i] < 0)
        continue;
      if (smtpd_milter_is_done(m)) {
        close(d.fd[i]);
        d.fd[i] = -1;
        continue;
      }
      pfd[i].fd = d.fd[i];
      if (d.connecting[i] || smtpd_milter_want_write(m))
        pfd[i].events |= POLLOUT;
      if (!d.connecting[i] && smtpd_milter_want_read(m))
        pfd[i].events |= POLLIN;
      if (d.deadline[i] > 0) {
        if (d.deadline[i] <= t) {
          smtpd_milter_timeout_expired(m);
          restart_timer(&d, i);
          wait = 0;
        } else if (d.deadline[i] - t < wait) {
          wait = d.deadline[i] - t;
        }
      }
    }
    if (poll(pfd, (nfds_t)np, (int)(wait * 1000) + 1) < 0 && errno != EINTR)
      break;
    for (i = 0; i < nspecs; i++) {
      smtpd_milter *m = smtpd_milter_chain_get(d.ch, i);
      int moved = 0;
      if (pfd[i].fd < 0 || !pfd[i].revents)
        continue;
      if (d.connecting[i]) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(d.fd[i], SOL_SOCKET, SO_ERROR, &err, &el);
        d.connecting[i] = 0;
        if (err)
          smtpd_milter_fail(m, strerror(err));
        else
          smtpd_milter_connected(m);
        restart_timer(&d, i);
        continue;
      }
      if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t r = read(d.fd[i], chunk, sizeof chunk);
        if (r > 0) {
          smtpd_milter_feed(m, chunk, (size_t)r);
          moved = 1;
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          smtpd_milter_fail(m, r == 0 ? "filter closed the connection"
                                      : strerror(errno));
          close(d.fd[i]);
          d.fd[i] = -1;
          continue;
        }
      }
      if (pfd[i].revents & POLLOUT) {
        const uint8_t *p;
        size_t k = smtpd_milter_output(m, &p);
        if (k) {
          ssize_t w = write(d.fd[i], p, k);
          if (w > 0) {
            smtpd_milter_consume(m, (size_t)w);
            moved = 1;
          } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            smtpd_milter_fail(m, strerror(errno));
          }
        }
      }
      if (moved)
        restart_timer(&d, i);
    }
  }
  drain_session(&d);
  /* let QUIT reach the filters */
  for (i = 0; i < nspecs; i++) {
    smtpd_milter *m = smtpd_milter_chain_get(d.ch, i);
    const uint8_t *p;
    size_t k;
    if (d.fd[i] < 0)
      continue;
    if (!smtpd_milter_is_done(m) && !smtpd_milter_is_failed(m))
      smtpd_milter_chain_quit(d.ch);
    while ((k = smtpd_milter_output(m, &p)) > 0) {
      ssize_t w = write(d.fd[i], p, k);
      if (w <= 0)
        break;
      smtpd_milter_consume(m, (size_t)w);
    }
    close(d.fd[i]);
  }
  if (replies_path && (f = fopen(replies_path, "wb"))) {
    fwrite(d.replies.p ? d.replies.p : "", 1, d.replies.len, f);
    fclose(f);
  }
  for (i = 0; i < nspecs; i++) {
    smtpd_milter *m = smtpd_milter_chain_get(d.ch, i);
    fprintf(stderr, "milter %zu actions 0x%x flags 0x%x\n", i,
            (unsigned)smtpd_milter_actions(m), (unsigned)smtpd_milter_flags(m));
    if (smtpd_milter_is_failed(m))
      fprintf(stderr, "milter %zu failed: %s\n", i, smtpd_milter_error(m));
  }
  smtpd_milter_chain_del(d.ch);
  smtpd_session_del(d.s);
  smtpd_milter_conf_del(mc);
  smtpd_config_del(cfg);
  free(in.p);
  free(d.spool.p);
  free(d.replies.p);
  return 0;
}
