/*
 * main.c - smtpd-maildir: a single-threaded, non-blocking SMTP server on
 * libsmtpd that delivers into a Maildir (or throws mail away).
 *
 * Copy this file into your own MTA and change the delivery part. The
 * shape: one poller (epoll, or poll elsewhere), one smtpd_session per
 * connection, one shared read buffer. The library does the protocol; this
 * program only moves bytes, keeps timers and stores messages.
 *
 *   main              options, listeners, the event loop
 *   conn_pump         move bytes between socket and session, decide
 *                     what to wait for next, close finished connections
 *                     (conn_over: smtpd_session_is_done, and under TLS
 *                     no ciphertext left to write)
 *   on_* callbacks    policy and delivery (Maildir via maildir.c)
 *   shutdown_step     graceful stop on SIGINT/SIGTERM
 *
 * TLS (--cert/--key, --tls-listen) and AUTH (--users, --sasl cyrus) are
 * compiled in when the adapters are built (SMTPD_HAVE_GNUTLS,
 * SMTPD_HAVE_SASL_BUILTIN, SMTPD_HAVE_CYRUS).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "smtpd/smtpd.h"
#include "smtpd/sasl.h"
#ifdef SMTPD_HAVE_RECEIVED
#include "smtpd/received.h"
#endif
#include "adapters.h"
#include "maildir.h"
#include "poller.h"

#define READ_CHUNK 65536        /* one shared read buffer of this size */
#define MAX_LISTENERS 16
#define CLOSE_GRACE_MS 10000    /* a closing session's last words */
#define TICK_MS 250             /* timer scan granularity */

/* ---- objects --------------------------------------------------------- */

enum { OBJ_LISTENER = 1, OBJ_SIGNAL, OBJ_CONN };

typedef struct options {
  const char *listen[MAX_LISTENERS];
  int nlisten;
  const char *tls_listen[MAX_LISTENERS];
  int ntls_listen;
  const char *maildir;
  int discard;
  const char *hostname;
  uint64_t max_size;
  uint64_t max_rcpt;
  long max_sessions;
  long timeout_s;      /* 0: library defaults */
  long shutdown_s;     /* bound for in-flight transactions at shutdown */
  const char *cert, *key;
  int selfsigned;      /* STARTTLS with a generated certificate */
  const char *users;
  const char *sasl;
  const char *sasl_config_dir;
  int auth_plaintext;
  int quiet;           /* no per-message log lines (benchmarks) */
} options;

typedef struct listener {
  int type; /* OBJ_LISTENER */
  int fd;
  int implicit_tls;
} listener;

typedef struct server server;

typedef struct conn {
  int type; /* OBJ_CONN */
  struct conn *prev, *next;
  server *srv;
  int fd;
  smtpd_session *s;
  tls_conn *tls;         /* NULL for plaintext */
  unsigned char *pending; /* input the session did not take yet */
  size_t npending;
  uint64_t deadline;     /* monotonic ms; 0 = none */
  unsigned watched;      /* current POLLER_* mask */
  int eof;               /* the client closed its side */
  tls_conn *tls_next;    /* made by on_starttls; used once the 220 is out */
  int in_pump;
  maildir_msg msg;       /* open while a message is being received */
  char qid[40];
  unsigned long messages;
  const char *end_reason;
  char addr[64];         /* client address text, for logs */
} conn;

struct server {
  options opt;
  smtpd_config *cfg;
  smtpd_callbacks cb;
  poller *poll;
  maildir md;
  tls_server *tls;            /* NULL without --cert */
  smtpd_sasl_backend *sasl;   /* NULL without AUTH */
  listener listeners[2 * MAX_LISTENERS];
  int nlisteners;
  int listeners_paused;       /* EMFILE: accept paused until next tick */
  conn *conns;                /* every live connection */
  long nconns;
  unsigned char rbuf[READ_CHUNK];
  struct { int type; int fd; } sigpipe; /* read end of the self-pipe */
  int shutting_down;
  uint64_t shutdown_deadline;
  unsigned long queue_counter;
  long fault_tls_new;         /* test hook: fail this many STARTTLS TLS
                                 setups (-1: all); see read_faults */
};

/* The only global: where the signal handler writes (self-pipe trick). */
static int signal_write_fd = -1;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* log_safe - copy s for a log line: printable ASCII kept, the rest '?'. */
static const char *log_safe(char *buf, size_t cap, const char *s) {
  size_t i = 0;
  for (; s && s[i] && i + 1 < cap; i++)
    buf[i] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
  buf[i] = '\0';
  return buf;
}

static void logmsg(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if (n > (int)sizeof line - 2)
    n = (int)sizeof line - 2;
  line[n++] = '\n';
  /* one write per line: lines from one process never interleave */
  ssize_t w = write(STDERR_FILENO, line, (size_t)n);
  (void)w;
}

/* ---- the byte pipe: socket <-> (TLS) <-> session ---------------------- */

/* What the session (or the TLS layer in front of it) takes from the wire. */
static ptrdiff_t io_feed(conn *c, const unsigned char *p, size_t n) {
  if (c->tls)
    return tls_conn_feed(c->tls, p, n);
  return smtpd_session_feed(c->s, p, n);
}
static size_t io_output(conn *c, const uint8_t **p) {
  if (c->tls)
    return tls_conn_output(c->tls, p);
  return smtpd_session_output(c->s, p);
}
static void io_consume(conn *c, size_t n) {
  if (c->tls)
    tls_conn_consume(c->tls, n);
  else
    smtpd_session_consume(c->s, n);
}
static int io_want_read(conn *c) {
  return c->tls ? tls_conn_want_read(c->tls) : smtpd_session_want_read(c->s);
}
static int io_want_write(conn *c) {
  return c->tls ? tls_conn_want_write(c->tls)
                : smtpd_session_want_write(c->s);
}

/* ---- connections ------------------------------------------------------ */

static void msg_abort(conn *c) {
  maildir_abort(&c->srv->md, &c->msg);
}

static void conn_destroy(conn *c) {
  server *srv = c->srv;
  msg_abort(c); /* a half-received message never reaches new/ */
  const char *why = c->end_reason ? c->end_reason : tls_conn_error(c->tls);
  logmsg("smtpd-maildir: session end client=%s reason=%s messages=%lu",
         c->addr, why ? why : "disconnect", c->messages);
  poller_remove(srv->poll, c->fd);
  close(c->fd);
  tls_conn_del(c->tls);
  tls_conn_del(c->tls_next);
  smtpd_session_del(c->s);
  free(c->pending);
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  srv->nconns--;
  free(c);
}

/* Restart the client timer after input, as the session's state says. */
static void restart_timer(conn *c) {
  uint32_t ms = smtpd_session_timeout(c->s, NULL);
  c->deadline = ms ? now_ms() + ms : 0;
}

/* Feed the kept input. Returns -1 when the session failed fatally. */
static int feed_pending(conn *c) {
  ptrdiff_t took = io_feed(c, c->pending, c->npending);
  if (took < 0)
    return smtpd_is_fatal((int)took) ? -1 : 0;
  if (took > 0) {
    memmove(c->pending, c->pending + took, c->npending - (size_t)took);
    c->npending -= (size_t)took;
    restart_timer(c);
  }
  if (c->npending == 0) {
    free(c->pending);
    c->pending = NULL;
  }
  return 0;
}

/* Write what is queued. Returns -1 when the connection is dead. */
static int flush_output(conn *c) {
  const uint8_t *p;
  size_t n;
  while ((n = io_output(c, &p)) > 0) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      return -1;
    }
    io_consume(c, (size_t)w);
  }
  return 0;
}

/* The connection has nothing left to do. The one rule: the session is
 * done (closing or failed, every reply consumed) and, under TLS, every
 * octet of ciphertext, close_notify last, is written. Besides: the TLS
 * layer ended (failure, the client's close_notify), or the client went
 * away, and nothing is left to write. A paused session is never over:
 * it wants neither to read nor to write while it waits for
 * smtpd_session_resume(). */
static int conn_over(conn *c) {
  if (smtpd_session_is_paused(c->s))
    return 0;
  int ww = io_want_write(c);
  if (smtpd_session_is_done(c->s))
    return !ww;
  if (c->tls && tls_conn_ended(c->tls))
    return !ww;
  return c->eof && c->npending == 0 && !ww;
}

/* A session that holds no transaction may be closed at shutdown. */
static int conn_idle(const conn *c) {
  return smtpd_session_sender(c->s) == NULL && c->msg.fd < 0 &&
         !smtpd_session_is_paused(c->s);
}

/*
 * conn_pump - after anything happened on a connection: feed kept input,
 * write replies, switch to TLS after an accepted STARTTLS, and either
 * destroy the connection (conn_over) or tell the poller what to wait
 * for. Returns -1 when c was destroyed.
 */
static int conn_pump(conn *c) {
  server *srv = c->srv;
  for (int round = 0; round < 64; round++) {
    if (c->npending > 0 && io_want_read(c) && feed_pending(c) != 0) {
      c->end_reason = "session error";
      conn_destroy(c);
      return -1;
    }
    if (flush_output(c) != 0) {
      conn_destroy(c);
      return -1;
    }
    /* STARTTLS accepted (on_starttls made the TLS object) and the 220
     * is out: from now on the wire carries TLS. Bytes the client sent
     * before seeing the 220 are plaintext injection attempts: the
     * session discards them, and so do we. */
    if (c->tls_next && smtpd_session_is_tls_wait(c->s) && !io_want_write(c)) {
      c->tls = c->tls_next;
      c->tls_next = NULL;
      free(c->pending);
      c->pending = NULL;
      c->npending = 0;
      continue;
    }
    /* at shutdown, a session whose transaction just ended says goodbye */
    if (srv->shutting_down && !smtpd_session_is_closing(c->s) &&
        conn_idle(c)) {
      smtpd_session_close(c->s, NULL, NULL);
      continue;
    }
    /* writing may have let the session read again: go round once more */
    if (c->npending > 0 && io_want_read(c))
      continue;
    break;
  }
  if (conn_over(c)) {
    conn_destroy(c);
    return -1;
  }
  int wr = io_want_read(c), ww = io_want_write(c);
  if (smtpd_session_is_closing(c->s) && !c->end_reason)
    c->end_reason = "closing";
  if (smtpd_session_is_closing(c->s) &&
      (c->deadline == 0 || c->deadline > now_ms() + CLOSE_GRACE_MS))
    c->deadline = now_ms() + CLOSE_GRACE_MS; /* bound the last flush */
  else if (c->deadline == 0)
    restart_timer(c);
  unsigned want = 0;
  if (wr && c->npending == 0 && !c->eof && !c->tls_next)
    want |= POLLER_IN;
  if (ww)
    want |= POLLER_OUT;
  if (want != c->watched) {
    poller_set(srv->poll, c->fd, want, c);
    c->watched = want;
  }
  return 0;
}

/* Readable: one read into the shared buffer, hand it over, keep the rest. */
static void conn_read(conn *c) {
  server *srv = c->srv;
  ssize_t r = recv(c->fd, srv->rbuf, sizeof srv->rbuf, 0);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return;
    c->end_reason = "read error";
    c->eof = 1;
    return;
  }
  if (r == 0) {
    c->eof = 1; /* replies to what we hold may still be written */
    if (c->tls)
      tls_conn_eof(c->tls);
    return;
  }
  ptrdiff_t took = io_feed(c, srv->rbuf, (size_t)r);
  if (took < 0) {
    if (smtpd_is_fatal((int)took)) {
      c->end_reason = "session error";
      c->eof = 1;
      return;
    }
    took = 0;
  }
  if (took > 0)
    restart_timer(c);
  if ((size_t)took < (size_t)r) {
    size_t rest = (size_t)r - (size_t)took;
    unsigned char *np = realloc(c->pending, c->npending + rest);
    if (np == NULL) {
      c->end_reason = "out of memory";
      c->eof = 1;
      return;
    }
    memcpy(np + c->npending, srv->rbuf + took, rest);
    c->pending = np;
    c->npending += rest;
  }
}

static void conn_event(conn *c, unsigned events) {
  if ((events & (POLLER_IN | POLLER_ERR)) && c->npending == 0 && !c->eof) {
    conn_read(c);
  } else if (events & POLLER_ERR) {
    /* reset or hang-up while we hold unread input: the client is gone */
    free(c->pending);
    c->pending = NULL;
    c->npending = 0;
    c->eof = 1;
  }
  conn_pump(c);
}

/* The timer of c ran out. */
static void conn_expire(conn *c) {
  if (smtpd_session_is_paused(c->s)) { /* we are the slow side: no 421 */
    c->deadline = 0;
    return;
  }
  if (smtpd_session_is_closing(c->s)) { /* client never read the goodbye */
    c->end_reason = c->end_reason ? c->end_reason : "timeout";
    conn_destroy(c);
    return;
  }
  c->end_reason = "timeout";
  msg_abort(c);
  smtpd_session_timeout_expired(c->s);
  c->deadline = 0;
  conn_pump(c);
}

static void format_addr(const struct sockaddr *sa, char *host, size_t hcap,
                        char *both, size_t bcap) {
  char port[16];
  if (getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in),
                  host, (socklen_t)hcap, port, sizeof port,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    snprintf(host, hcap, "unknown");
    snprintf(port, sizeof port, "0");
  }
  snprintf(both, bcap, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
           port);
}

static void conn_new(server *srv, listener *l, int fd,
                     const struct sockaddr *sa) {
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    return;
  }
  c->type = OBJ_CONN;
  c->srv = srv;
  c->fd = fd;
  c->msg.fd = -1;
  char host[INET6_ADDRSTRLEN + 1];
  format_addr(sa, host, sizeof host, c->addr, sizeof c->addr);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (smtpd_session_new(&c->s, srv->cfg, &srv->cb, c) != 0) {
    close(fd);
    free(c);
    return;
  }
  smtpd_session_set_client(c->s, host, NULL);
  c->next = srv->conns;
  if (c->next)
    c->next->prev = c;
  srv->conns = c;
  srv->nconns++;
  if (l->implicit_tls) {
    if (srv->tls == NULL || tls_conn_new(&c->tls, srv->tls, c->s, 1) != 0) {
      c->end_reason = "tls setup failed";
      conn_destroy(c);
      return;
    }
    smtpd_session_set_implicit_tls(c->s);
  }
  smtpd_session_start(c->s); /* on_connect runs, the greeting is queued */
  conn_pump(c);
}

static void accept_some(server *srv, listener *l) {
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        /* out of descriptors: stop accepting until the next tick */
        for (int k = 0; k < srv->nlisteners; k++)
          poller_set(srv->poll, srv->listeners[k].fd, 0,
                     &srv->listeners[k]);
        srv->listeners_paused = 1;
      }
      return; /* EAGAIN, ECONNABORTED, ...: try later */
    }
    conn_new(srv, l, fd, (struct sockaddr *)&ss);
  }
}

/* ---- session callbacks: policy and delivery --------------------------- */

static smtpd_verdict on_connect(smtpd_session *s, void *ud) {
  conn *c = ud;
  if (c->srv->opt.max_sessions > 0 && c->srv->nconns > c->srv->opt.max_sessions) {
    c->end_reason = "too many sessions";
    smtpd_session_set_reply(s, 421, "4.3.2",
                            "Too many sessions, try again later");
    return SMTPD_TEMPFAIL;
  }
  return SMTPD_ACCEPT;
}

static smtpd_verdict on_mail(smtpd_session *s, const smtpd_mail *m, void *ud) {
  conn *c = ud;
  (void)m;
  if (c->srv->shutting_down) {
    smtpd_session_set_reply(s, 421, "4.3.2", "Service shutting down");
    return SMTPD_TEMPFAIL;
  }
  return SMTPD_ACCEPT;
}

static void new_queue_id(conn *c) {
  /* short, unique within this process, roughly sortable by time */
  snprintf(c->qid, sizeof c->qid, "%" PRIX64 "%05lX",
           (uint64_t)time(NULL), ++c->srv->queue_counter & 0xFFFFFu);
}

/* The Received: line (RFC 5321 4.4) that goes on top of the message. */
static size_t make_received(conn *c, char *buf, size_t cap) {
  smtpd_session *s = c->s;
#ifdef SMTPD_HAVE_RECEIVED
  /* the library's formatter: sanitised, folded, RFC 3848 "with" types */
  smtpd_received r;
  smtpd_received_init(&r);
  if (smtpd_received_from_session(&r, s) == 0) {
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    r.software = "smtpd-maildir";
    r.queue_id = c->qid;
    r.time = (int64_t)t;
    r.utc_offset_minutes = (int)(tm.tm_gmtoff / 60);
    size_t n = smtpd_received_format(buf, cap, &r);
    if (n > 0 && n < cap)
      return n;
  }
#endif
  /* Minimal fallback: every client-supplied string is neutered. */
  const char *helo = smtpd_session_helo_safe(s);
  const smtpd_tls_info *tls = smtpd_session_tls(s);
  const char *user = smtpd_session_auth_user(s);
  const char *proto = !smtpd_session_is_esmtp(s) ? "SMTP"
                      : tls && user              ? "ESMTPSA"
                      : tls                      ? "ESMTPS"
                      : user                     ? "ESMTPA"
                                                 : "ESMTP";
  char date[64], rcpt[300] = "";
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  if (smtpd_session_recipient_count(s) == 1) {
    char safe[280];
    smtpd_neuter(safe, sizeof safe, smtpd_session_recipient(s, 0));
    snprintf(rcpt, sizeof rcpt, "\r\n\tfor <%s>", safe);
  }
  int n = snprintf(buf, cap,
                   "Received: from %s (unknown [%s])\r\n"
                   "\tby %s (smtpd-maildir) with %s id %s%s;\r\n\t%s\r\n",
                   helo ? helo : "unknown", smtpd_session_client_addr(s),
                   smtpd_session_hostname(s), proto, c->qid, rcpt, date);
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static int begin_message(conn *c) {
  new_queue_id(c);
  if (c->srv->opt.discard)
    return 0;
  char rec[2048];
  if (maildir_begin(&c->srv->md, &c->msg) != 0) {
    logmsg("smtpd-maildir: cannot create message file: %s", strerror(errno));
    return -1;
  }
  maildir_write(&c->msg, rec, make_received(c, rec, sizeof rec));
  c->msg.written = 0; /* count the body only */
  return 0;
}

static smtpd_verdict on_data(smtpd_session *s, void *ud) {
  conn *c = ud;
  if (begin_message(c) != 0) {
    smtpd_session_set_reply(s, 451, "4.3.0", "Error: cannot store message");
    return SMTPD_TEMPFAIL;
  }
  return SMTPD_ACCEPT;
}

static smtpd_verdict on_body(smtpd_session *s, const uint8_t *p, size_t n,
                             void *ud) {
  conn *c = ud;
  (void)s;
  if (c->srv->opt.discard)
    c->msg.written += n;
  else
    maildir_write(&c->msg, p, n);
  return SMTPD_ACCEPT;
}

static smtpd_verdict on_data_complete(smtpd_session *s,
                                      const smtpd_message *m, void *ud) {
  conn *c = ud;
  if (!c->srv->opt.discard) {
    if (c->msg.fd < 0 || maildir_commit(&c->srv->md, &c->msg) != 0) {
      logmsg("smtpd-maildir: %s: delivery failed: %s", c->qid,
             strerror(errno));
      smtpd_session_set_reply(s, 451, "4.3.0", "Error: cannot store message");
      return SMTPD_TEMPFAIL;
    }
  }
  c->msg.written = 0;
  c->messages++;
  if (!c->srv->opt.quiet) {
    char from[280];
    logmsg("smtpd-maildir: %s: from=<%s> nrcpt=%zu size=%" PRIu64
           " client=%s", c->qid, log_safe(from, sizeof from, m->sender),
           m->nrecipients, m->size, c->addr);
  }
  char text[80];
  snprintf(text, sizeof text, "Ok: queued as %s", c->qid);
  smtpd_session_set_reply(s, 250, "2.0.0", text);
  return SMTPD_ACCEPT;
}

static void on_rset(smtpd_session *s, void *ud) {
  (void)s;
  msg_abort(ud);
}

static void on_notice(smtpd_session *s, const smtpd_notice *n, void *ud) {
  (void)s;
  if (n->type == SMTPD_NOTICE_MESSAGE_ABORTED)
    msg_abort(ud); /* too big, bad line endings, ...: drop the tmp file */
}

static void on_close(smtpd_session *s, smtpd_close_reason r, void *ud) {
  conn *c = ud;
  static const char *const names[] = {
      "?",        "quit",   "rejected", "timeout",  "too many errors",
      "auth failures", "sync", "http", "shutdown", "resource"};
  (void)s;
  if (!c->end_reason || r != SMTPD_CLOSE_REJECTED)
    c->end_reason = (unsigned)r < sizeof names / sizeof *names ? names[r]
                                                                : "?";
  msg_abort(c);
}

/* STARTTLS is a decision: make this connection's TLS object now. If
 * that fails, the client hears "454 4.7.0 TLS not available due to local
 * problem" and may go on in plaintext. Otherwise the core queues the 220
 * and conn_pump switches to the new object once it is written. */
static smtpd_verdict on_starttls(smtpd_session *s, void *ud) {
  conn *c = ud;
  server *srv = c->srv;
  int fault = srv->fault_tls_new != 0;
  if (fault && srv->fault_tls_new > 0)
    srv->fault_tls_new--;
  if (c->tls || c->tls_next || srv->tls == NULL || fault ||
      tls_conn_new(&c->tls_next, srv->tls, s, 0) != 0) {
    logmsg("smtpd-maildir: STARTTLS refused client=%s: cannot set up TLS%s",
           c->addr, fault ? " (injected fault)" : "");
    return SMTPD_TEMPFAIL;
  }
  return SMTPD_ACCEPT;
}

/* ---- AUTH: --users FILE ----------------------------------------------- */

typedef struct user_table {
  char **lines; /* "user:password" with the ':' replaced by NUL */
  size_t n;
} user_table;

static int users_load(user_table *t, const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    char *colon = strchr(line, ':');
    if (line[0] == '#' || colon == NULL)
      continue;
    *colon = '\0';
    char **nl = realloc(t->lines, (t->n + 1) * sizeof *nl);
    size_t len = strlen(line) + 1 + strlen(colon + 1) + 1;
    char *copy = malloc(len);
    if (nl == NULL || copy == NULL) {
      free(copy);
      fclose(f);
      return -1;
    }
    memcpy(copy, line, len);
    t->lines = nl;
    t->lines[t->n++] = copy;
  }
  fclose(f);
  return 0;
}

static void users_free(user_table *t) {
  for (size_t i = 0; i < t->n; i++)
    free(t->lines[i]);
  free(t->lines);
}

#ifdef SMTPD_HAVE_SASL_BUILTIN
static smtpd_verdict users_verify(smtpd_session *s, const char *mech,
                                  const char *authcid, const char *authzid,
                                  const char *pw, size_t pwlen, void *ctx) {
  const user_table *t = ctx;
  (void)s;
  (void)mech;
  if (authzid && *authzid && strcmp(authzid, authcid) != 0)
    return SMTPD_REJECT; /* no proxy authorisation in this example */
  for (size_t i = 0; i < t->n; i++) {
    const char *u = t->lines[i], *p = u + strlen(u) + 1;
    if (strcmp(u, authcid) == 0)
      return smtpd_consttime_equal(p, strlen(p), pw, pwlen) ? SMTPD_ACCEPT
                                                             : SMTPD_REJECT;
  }
  return SMTPD_REJECT;
}
#endif

/* ---- listeners, signals, shutdown ------------------------------------- */

static int listen_on(server *srv, const char *spec, int implicit_tls) {
  char host[256];
  const char *port;
  if (spec[0] == '[') { /* [v6]:port */
    const char *end = strchr(spec, ']');
    if (end == NULL || end[1] != ':' || (size_t)(end - spec) > sizeof host)
      return -1;
    memcpy(host, spec + 1, (size_t)(end - spec - 1));
    host[end - spec - 1] = '\0';
    port = end + 2;
  } else {
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
      return -1;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    port = colon + 1;
  }
  struct addrinfo hints = {0}, *ai;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if (getaddrinfo(host[0] ? host : NULL, port, &hints, &ai) != 0)
    return -1;
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
      listen(fd, 1024) != 0) {
    if (fd >= 0)
      close(fd);
    freeaddrinfo(ai);
    return -1;
  }
  freeaddrinfo(ai);
  /* say where we listen (port 0 picks a free one; tests read this) */
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char h[INET6_ADDRSTRLEN + 1], both[96];
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  format_addr((struct sockaddr *)&ss, h, sizeof h, both, sizeof both);
  logmsg("smtpd-maildir: listening on %s%s", both,
         implicit_tls ? " (implicit TLS)" : "");
  listener *l = &srv->listeners[srv->nlisteners++];
  l->type = OBJ_LISTENER;
  l->fd = fd;
  l->implicit_tls = implicit_tls;
  return 0;
}

static void on_signal(int sig) {
  unsigned char b = (unsigned char)sig;
  int saved = errno;
  ssize_t w = write(signal_write_fd, &b, 1);
  (void)w;
  errno = saved;
}

static void begin_shutdown(server *srv) {
  if (srv->shutting_down)
    return;
  srv->shutting_down = 1;
  srv->shutdown_deadline = now_ms() + (uint64_t)srv->opt.shutdown_s * 1000u;
  logmsg("smtpd-maildir: shutting down, %ld sessions open", srv->nconns);
  for (int i = 0; i < srv->nlisteners; i++) {
    poller_remove(srv->poll, srv->listeners[i].fd);
    close(srv->listeners[i].fd);
  }
  srv->nlisteners = 0;
  /* idle sessions get 421 now; busy ones when their transaction ends */
  for (conn *c = srv->conns, *next; c; c = next) {
    next = c->next;
    conn_pump(c);
  }
}

/* After the bound: close whatever is still open, and give every closing
 * session one more second to flush its last reply. */
static void shutdown_step(server *srv, uint64_t now) {
  if (!srv->shutting_down || now < srv->shutdown_deadline)
    return;
  for (conn *c = srv->conns, *next; c; c = next) {
    next = c->next;
    if (!smtpd_session_is_closing(c->s)) {
      msg_abort(c); /* never answered 250: the client will retry */
      smtpd_session_close(c->s, NULL, NULL);
      if (conn_pump(c) != 0)
        continue;
    }
    if (c->deadline == 0 || c->deadline > now + 1000)
      c->deadline = now + 1000;
  }
}

/* ---- setup and the loop ----------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
"usage: smtpd-maildir [options]\n"
"  --listen ADDR:PORT     listen for SMTP (repeatable; default 127.0.0.1:2525;\n"
"                         IPv6 as [::1]:2525; port 0 picks a free port)\n"
"  --maildir DIR          deliver into the Maildir DIR (default ./mail)\n"
"  --discard              accept and throw away every message (benchmarks)\n"
"  --hostname NAME        our name in the greeting and Received: lines\n"
"  --max-size BYTES       largest message accepted (default 10240000)\n"
"  --max-recipients N     recipients per message (default 1000)\n"
"  --max-sessions N       concurrent sessions; more get 421 4.3.2\n"
"  --timeout SECONDS      client idle timeout (default 300, 180 in DATA)\n"
"  --shutdown-timeout S   at SIGINT/SIGTERM, wait this long for open\n"
"                         transactions (default 10)\n"
"  --quiet                no log line per message\n"
"  --cert FILE --key FILE offer STARTTLS with this certificate and key%s\n"
"  --selfsigned           offer STARTTLS with a fresh self-signed certificate\n"
"  --tls-listen ADDR:PORT listen for implicit TLS (RFC 8314)%s\n"
"  --users FILE           AUTH PLAIN/LOGIN against user:password lines%s\n"
"  --sasl cyrus[:APP]     AUTH through Cyrus SASL (APP.conf, default smtpd)%s\n"
"  --sasl-config-dir DIR  where APP.conf is (default: libsasl2's path)\n"
"  --auth-plaintext       allow AUTH without TLS (testing only)\n"
"  --help                 this text\n",
          tls_available() ? "" : " (not built)",
          tls_available() ? "" : " (not built)",
#ifdef SMTPD_HAVE_SASL_BUILTIN
          "",
#else
          " (not built)",
#endif
#ifdef SMTPD_HAVE_CYRUS
          ""
#else
          " (not built)"
#endif
  );
}

static int parse_num(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-')
    return -1;
  *out = v;
  return 0;
}

/* Test hook, for the interop tests only: SMTPD_MAILDIR_FAULT in the
 * environment makes a named step fail on purpose. Not an option, so it
 * stays out of --help and out of real configurations; an unknown value
 * is refused. Known faults:
 *   starttls-setup[:N]  the TLS object for STARTTLS cannot be made (the
 *                       first N times; always without :N), so the client
 *                       gets 454 and stays in plaintext */
static int read_faults(server *srv) {
  const char *f = getenv("SMTPD_MAILDIR_FAULT");
  if (f == NULL || *f == '\0')
    return 0;
  static const char name[] = "starttls-setup";
  size_t len = sizeof name - 1;
  if (strncmp(f, name, len) != 0 || (f[len] != '\0' && f[len] != ':'))
    goto bad;
  srv->fault_tls_new = -1;
  if (f[len] == ':') {
    uint64_t n;
    if (parse_num(f + len + 1, &n) != 0 || n == 0 || n > 1000000)
      goto bad;
    srv->fault_tls_new = (long)n;
  }
  logmsg("smtpd-maildir: test fault injection: %s", f);
  return 0;
bad:
  fprintf(stderr, "smtpd-maildir: unknown SMTPD_MAILDIR_FAULT=%s\n", f);
  return -1;
}

static int parse_options(options *o, int argc, char **argv) {
  enum { O_LISTEN = 256, O_MAILDIR, O_DISCARD, O_HOSTNAME, O_MAXSIZE,
         O_MAXRCPT, O_MAXSESS, O_TIMEOUT, O_SHUTDOWN, O_QUIET, O_CERT, O_KEY,
         O_TLSLISTEN, O_USERS, O_SASL, O_AUTHPLAIN, O_SELFSIGNED, O_SASLDIR, O_HELP };
  static const struct option longopts[] = {
      {"listen", required_argument, NULL, O_LISTEN},
      {"maildir", required_argument, NULL, O_MAILDIR},
      {"discard", no_argument, NULL, O_DISCARD},
      {"hostname", required_argument, NULL, O_HOSTNAME},
      {"max-size", required_argument, NULL, O_MAXSIZE},
      {"max-recipients", required_argument, NULL, O_MAXRCPT},
      {"max-sessions", required_argument, NULL, O_MAXSESS},
      {"timeout", required_argument, NULL, O_TIMEOUT},
      {"shutdown-timeout", required_argument, NULL, O_SHUTDOWN},
      {"quiet", no_argument, NULL, O_QUIET},
      {"cert", required_argument, NULL, O_CERT},
      {"key", required_argument, NULL, O_KEY},
      {"tls-listen", required_argument, NULL, O_TLSLISTEN},
      {"users", required_argument, NULL, O_USERS},
      {"sasl", required_argument, NULL, O_SASL},
      {"auth-plaintext", no_argument, NULL, O_AUTHPLAIN},
      {"selfsigned", no_argument, NULL, O_SELFSIGNED},
      {"sasl-config-dir", required_argument, NULL, O_SASLDIR},
      {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0}};
  o->maildir = "./mail";
  o->shutdown_s = 10;
  int ch;
  uint64_t v;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
    case O_LISTEN:
    case O_TLSLISTEN: {
      int tls = ch == O_TLSLISTEN;
      int *n = tls ? &o->ntls_listen : &o->nlisten;
      if (*n == MAX_LISTENERS)
        return -1;
      (tls ? o->tls_listen : o->listen)[(*n)++] = optarg;
      break;
    }
    case O_MAILDIR: o->maildir = optarg; break;
    case O_DISCARD: o->discard = 1; break;
    case O_HOSTNAME: o->hostname = optarg; break;
    case O_MAXSIZE:
      if (parse_num(optarg, &o->max_size)) return -1;
      break;
    case O_MAXRCPT:
      if (parse_num(optarg, &o->max_rcpt)) return -1;
      break;
    case O_MAXSESS:
      if (parse_num(optarg, &v)) return -1;
      o->max_sessions = (long)v;
      break;
    case O_TIMEOUT:
      if (parse_num(optarg, &v) || v == 0 || v > 86400) return -1;
      o->timeout_s = (long)v;
      break;
    case O_SHUTDOWN:
      if (parse_num(optarg, &v) || v > 86400) return -1;
      o->shutdown_s = (long)v;
      break;
    case O_QUIET: o->quiet = 1; break;
    case O_CERT: o->cert = optarg; break;
    case O_KEY: o->key = optarg; break;
    case O_USERS: o->users = optarg; break;
    case O_SASL: o->sasl = optarg; break;
    case O_AUTHPLAIN: o->auth_plaintext = 1; break;
    case O_SELFSIGNED: o->selfsigned = 1; break;
    case O_SASLDIR: o->sasl_config_dir = optarg; break;
    case O_HELP: usage(stdout); exit(0);
    default: return -1;
    }
  }
  if (optind != argc || (!o->cert != !o->key) ||
      (o->ntls_listen && !o->cert && !o->selfsigned) ||
      (o->cert && o->selfsigned))
    return -1;
  if (o->nlisten == 0 && o->ntls_listen == 0)
    o->listen[o->nlisten++] = "127.0.0.1:2525";
  return 0;
}

static int configure(server *srv) {
  options *o = &srv->opt;
  if (smtpd_config_new(&srv->cfg, NULL) != 0)
    return -1;
  if (o->hostname && smtpd_config_set_hostname(srv->cfg, o->hostname) != 0) {
    fprintf(stderr, "smtpd-maildir: bad --hostname\n");
    return -1;
  }
  if (o->max_size)
    smtpd_config_set_limit(srv->cfg, SMTPD_LIMIT_MESSAGE_SIZE, o->max_size);
  if (o->max_rcpt)
    smtpd_config_set_limit(srv->cfg, SMTPD_LIMIT_RECIPIENTS, o->max_rcpt);
  if (o->timeout_s) {
    smtpd_config_set_timeout(srv->cfg, SMTPD_TIMEOUT_COMMAND,
                             (uint32_t)o->timeout_s * 1000u);
    smtpd_config_set_timeout(srv->cfg, SMTPD_TIMEOUT_DATA,
                             (uint32_t)o->timeout_s * 1000u);
  }
  if (o->cert || o->selfsigned) {
    if (tls_server_new(&srv->tls, o->cert, o->key,
                       o->hostname) != 0) {
      fprintf(stderr, "smtpd-maildir: cannot set up TLS%s%s%s%s\n",
              o->cert ? " with " : "", o->cert ? o->cert : "",
              o->cert ? " and " : "", o->cert ? o->key : "");
      return -1;
    }
    smtpd_config_set_option(srv->cfg, SMTPD_OPT_STARTTLS, 1);
  }
  if (o->auth_plaintext)
    smtpd_config_set_option(srv->cfg, SMTPD_OPT_AUTH_PLAINTEXT, 1);
  if (!o->discard && maildir_open(&srv->md, o->maildir) != 0) {
    fprintf(stderr, "smtpd-maildir: cannot use maildir %s: %s\n", o->maildir,
            strerror(errno));
    return -1;
  }
  memset(&srv->cb, 0, sizeof srv->cb);
  srv->cb.version = SMTPD_CALLBACKS_VERSION;
  srv->cb.on_connect = on_connect;
  srv->cb.on_mail = on_mail;
  srv->cb.on_data = on_data;
  srv->cb.on_body = on_body;
  srv->cb.on_data_complete = on_data_complete;
  srv->cb.on_rset = on_rset;
  srv->cb.on_notice = on_notice;
  srv->cb.on_close = on_close;
  srv->cb.on_starttls = on_starttls;
  return 0;
}

static int setup_auth(server *srv, user_table *users) {
  options *o = &srv->opt;
  if (o->users && o->sasl) {
    fprintf(stderr, "smtpd-maildir: --users and --sasl exclude each other\n");
    return -1;
  }
  if (o->users) {
#ifdef SMTPD_HAVE_SASL_BUILTIN
    if (users_load(users, o->users) != 0 ||
        smtpd_sasl_builtin_new(&srv->sasl, NULL, users_verify, users) != 0) {
      fprintf(stderr, "smtpd-maildir: cannot use %s\n", o->users);
      return -1;
    }
#else
    (void)users;
    fprintf(stderr, "smtpd-maildir: --users: not built\n");
    return -1;
#endif
  }
  if (o->sasl) {
    if (strncmp(o->sasl, "cyrus", 5) != 0 ||
        (o->sasl[5] != '\0' && o->sasl[5] != ':')) {
      fprintf(stderr, "smtpd-maildir: --sasl: only cyrus[:APP] is known\n");
      return -1;
    }
    const char *app = o->sasl[5] == ':' ? o->sasl + 6 : "smtpd";
    if (sasl_cyrus_backend(&srv->sasl, app, o->sasl_config_dir,
                           o->auth_plaintext) != 0) {
      fprintf(stderr, "smtpd-maildir: --sasl %s: not available\n", o->sasl);
      return -1;
    }
  }
  if (srv->sasl)
    smtpd_config_set_sasl(srv->cfg, srv->sasl);
  return 0;
}

int main(int argc, char **argv) {
  server *srv = calloc(1, sizeof *srv);
  user_table users = {0};
  if (srv == NULL)
    return 1;
  if (parse_options(&srv->opt, argc, argv) != 0) {
    usage(stderr);
    free(srv);
    return 2;
  }
  if (read_faults(srv) != 0) {
    free(srv);
    return 2;
  }
  if (configure(srv) != 0 || setup_auth(srv, &users) != 0)
    return 1;
  srv->poll = poller_new();
  if (srv->poll == NULL)
    return 1;
  for (int i = 0; i < srv->opt.nlisten; i++)
    if (listen_on(srv, srv->opt.listen[i], 0) != 0) {
      fprintf(stderr, "smtpd-maildir: cannot listen on %s: %s\n",
              srv->opt.listen[i], strerror(errno));
      return 1;
    }
  for (int i = 0; i < srv->opt.ntls_listen; i++)
    if (listen_on(srv, srv->opt.tls_listen[i], 1) != 0) {
      fprintf(stderr, "smtpd-maildir: cannot listen on %s: %s\n",
              srv->opt.tls_listen[i], strerror(errno));
      return 1;
    }
  for (int i = 0; i < srv->nlisteners; i++)
    poller_set(srv->poll, srv->listeners[i].fd, POLLER_IN,
               &srv->listeners[i]);

  /* SIGINT/SIGTERM -> a byte on the self-pipe -> graceful shutdown */
  int sp[2];
  if (pipe2(sp, O_NONBLOCK | O_CLOEXEC) != 0)
    return 1;
  signal_write_fd = sp[1];
  srv->sigpipe.type = OBJ_SIGNAL;
  srv->sigpipe.fd = sp[0];
  poller_set(srv->poll, sp[0], POLLER_IN, &srv->sigpipe);
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  poller_event ev[256];
  uint64_t next_tick = now_ms() + TICK_MS;
  int stop = 0;
  while (!srv->shutting_down || srv->nconns > 0) {
    uint64_t now = now_ms();
    int wait = next_tick > now ? (int)(next_tick - now) : 0;
    int n = poller_wait(srv->poll, ev, 256, wait);
    if (n < 0) {
      fprintf(stderr, "smtpd-maildir: poll: %s\n", strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int type = *(int *)ev[i].ptr;
      if (type == OBJ_LISTENER) {
        if (!srv->shutting_down)
          accept_some(srv, ev[i].ptr);
      } else if (type == OBJ_SIGNAL) {
        unsigned char b[16];
        while (read(srv->sigpipe.fd, b, sizeof b) > 0)
          ;
        stop = 1; /* after this batch: it may close connections that
                     still have events in it */
      } else {
        conn_event(ev[i].ptr, ev[i].events);
      }
    }
    if (stop)
      begin_shutdown(srv);
    now = now_ms();
    if (now >= next_tick) { /* coarse timers: scan every connection */
      next_tick = now + TICK_MS;
      for (conn *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->deadline && c->deadline <= now)
          conn_expire(c);
      }
      if (srv->listeners_paused && !srv->shutting_down) {
        for (int k = 0; k < srv->nlisteners; k++)
          poller_set(srv->poll, srv->listeners[k].fd, POLLER_IN,
                     &srv->listeners[k]);
        srv->listeners_paused = 0;
      }
      shutdown_step(srv, now);
    }
  }
  logmsg("smtpd-maildir: stopped");
  poller_del(srv->poll);
  close(sp[0]);
  close(sp[1]);
  if (!srv->opt.discard)
    maildir_close(&srv->md);
  tls_server_del(srv->tls);
  smtpd_sasl_backend_del(srv->sasl); /* whichever adapter made it */
  users_free(&users);
  smtpd_config_del(srv->cfg);
  free(srv);
  return 0;
}
