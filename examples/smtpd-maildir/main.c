/*
 * main.c - smtpd-maildir: a non-blocking SMTP server on libsmtpd, one
 * event loop, that delivers into a Maildir (or throws mail away); the
 * disk flushes of delivery run on threads of deliver.c.
 *
 * Copy this file into your own MTA and change the delivery part. The
 * shape: one poller (epoll, or poll elsewhere), one smtpd_session per
 * connection, one shared read buffer. The library does the protocol; this
 * program only moves bytes, keeps timers and stores messages.
 *
 *   main              options, listeners, the event loop
 *   conn_pump         move bytes between socket and connection, decide
 *                     what to wait for next, close finished connections
 *                     (smtpd_tls_session_is_done: the one rule)
 *   on_* callbacks    policy and delivery (Maildir via maildir.c; at the
 *                     end of data the session pauses while deliver.c
 *                     fsyncs and commits, deliveries_done answers it)
 *   shutdown_step     graceful stop on SIGINT/SIGTERM
 *
 * Every connection, plaintext, STARTTLS or implicit TLS, is an
 * smtpd_session inside an smtpd_tls_session (the GnuTLS adapter's
 * TLS-wrapped session, include/smtpd/tls_gnutls.h): the loop below feeds
 * it socket bytes and writes what it gives back, and never needs to know
 * whether they are encrypted. Without --cert/--selfsigned it has no TLS
 * context and is a plain session with the same calls. AUTH (--users,
 * --sasl cyrus) is compiled in when its backend is built
 * (SMTPD_HAVE_SASL_BUILTIN, SMTPD_HAVE_CYRUS).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "smtpd/smtpd.h"
#include "smtpd/sasl.h"
#include "smtpd/tls_gnutls.h"
#ifdef SMTPD_HAVE_RECEIVED
#include "smtpd/received.h"
#endif
#ifdef SMTPD_HAVE_CYRUS
#include "smtpd/sasl_cyrus.h"
#endif
#include "fmt.h"
#include "log.h"
#include "maildir.h"
#include "deliver.h"
#include "poller.h"
#include "milter_glue.h"
#include "queue_id.h"
#include "workers.h"
#include "defences.h"
#include "tmp_sweep.h"
#include "sysio.h"

#define READ_CHUNK 65536        /* one shared read buffer of this size */
#define MAX_LISTENERS 16
#define CLOSE_GRACE_MS 10000    /* a closing session's last words */
#define TICK_MS 250             /* timer scan granularity */
#define DELIVERY_THREADS_DEFAULT 4 /* --delivery-threads (deliver.c) */

/* ---- objects --------------------------------------------------------- */

enum { OBJ_LISTENER = 1, OBJ_SIGNAL, OBJ_CONN, OBJ_DELIVER };

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
  int lmtp;            /* --lmtp: LHLO, one reply per recipient */
  int workers;         /* --workers N: processes (0 or 1: this one) */
  int delivery_threads; /* --delivery-threads N: commit workers */
  const char *reject_rcpt[MAX_LISTENERS]; /* --reject-rcpt ADDR */
  int nreject_rcpt;
  const char *xclient_from; /* --xclient-from NETS */
  const char *proxy_from;   /* --proxy-from NETS */
  mg_options milter;        /* --milter* (milter_glue.c) */
  /* defences (docs/example-server.md, "Defences"; defaults set in
   * parse_options) */
  long line_deadline_s, message_deadline_s, tarpit_ms;
  long max_per_client;
  long auth_fail_limit, auth_fail_window_s, auth_fail_delay_ms;
  long max_buffer;          /* --max-buffer: kept input + unsent output */
  long long min_free;       /* --min-free: storage kept free */
} options;

/* A CIDR network of --xclient-from / --proxy-from. */
typedef struct netmask {
  int family;                /* AF_INET or AF_INET6 */
  unsigned char addr[16];
  unsigned bits;
} netmask;
#define MAX_NETS 32

typedef struct listener {
  int type; /* OBJ_LISTENER */
  int fd;
  int implicit_tls;
  const char *unix_path; /* --listen unix:PATH: removed at shutdown */
} listener;

typedef struct server server;

/* A connection's transaction state: made at its first MAIL (at once with
 * --milter, whose glue keeps a pointer to msg) and kept until the
 * connection ends, so an idle or merely greeted connection carries none
 * of it (docs/example-server.md, "How it is built"). */
typedef struct conn_txn {
  maildir_msg msg;       /* open while a message is being received */
  char qid[QUEUE_ID_MAX];
  unsigned char qid_len; /* strlen(qid) */
  /* the transaction's envelope extras, written as X-Envelope-* fields */
  smtpd_dsn_ret dsn_ret;
  int requiretls;
  char *dsn_envid;       /* xtext-encoded ENVID, or NULL */
  struct rcpt_info *rcpts; /* by recipient index */
  size_t nrcpts, rcpts_cap;
  uint64_t done_size;    /* the message being committed: size, */
  size_t done_nrcpt;     /* ... recipients (its log line) */
  int lmtp_stored;       /* LMTP: the message reached new/ (1) or not (-1) */
  struct conn_txn *next_spare; /* in srv->spare_txns */
} conn_txn;

typedef struct conn {
  int type; /* OBJ_CONN */
  int fd;
  struct conn *prev, *next;
  server *srv;
  smtpd_session *s;
  smtpd_tls_session *ts; /* the session behind its (optional) TLS, made
                            when TLS can matter (see "The session's
                            I/O"); NULL: the session is driven directly */
  unsigned char *pending; /* input ts did not take yet */
  size_t npending;
  uint64_t deadline;     /* monotonic ms; 0 = none */
  conn_txn *tx;          /* NULL until the first MAIL (or --milter) */
  deliver_job *job;      /* its commit, while the delivery threads have it */
  unsigned long messages;
  const char *end_reason;
  mg_conn *mg;           /* its --milter filters, or NULL */
  /* defences */
  def_addr *da;          /* its entry in srv->defs (its address text:
                            def_addr_text), or NULL */
  unsigned long from_ip; /* connections from that address when this one
                            came */
  uint64_t dl_epoch, dl_at; /* the library's deadline: epoch, when (ms) */
  uint64_t delay_epoch;  /* the last reply delay seen */
  uint64_t hold_until;   /* write nothing before this (ms), 0 = none */
  size_t unsent;         /* TLS output left unwritten at the last flush */
  uint64_t auth_resume_at; /* a deferred --users check answers then (ms) */
  smtpd_verdict auth_verdict; /* ... with this verdict */
  /* small fields together: the struct stays one malloc size class down */
  unsigned char watched; /* current POLLER_* mask */
  unsigned char polled;  /* its fd was given to the poller */
  unsigned char restart; /* input arrived: conn_pump restarts the timer */
  unsigned char eof;     /* the client closed its side: read no more */
  unsigned char addr_stale; /* XCLIENT may have changed the client: addr
                               is made again (session_client_text) */
  unsigned char auth_penalized; /* this AUTH was delayed already
                                   (on_auth_fail) */
  unsigned char unwrapped; /* its wrapper could not be made (out of
                              memory): the connection ends */
  unsigned char addr_len; /* strlen(addr) */
  union {                /* the socket's peer (trust decisions) */
    struct sockaddr sa;  /* sa_family AF_UNIX: no address */
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
  } peer;
  char addr[64];         /* client address text, for logs */
} conn;

typedef struct rcpt_info {
  unsigned notify;       /* SMTPD_DSN_NOTIFY_* */
  char *orcpt;           /* "type;xtext", or NULL */
  int refused;           /* --reject-rcpt in LMTP mode: refused at the end */
} rcpt_info;

struct server {
  options opt;
  smtpd_config *cfg;
  smtpd_callbacks cb;
  poller *poll;
  maildir md;
  smtpd_tls_ctx *tls;         /* NULL without --cert / --selfsigned */
  smtpd_sasl_backend *sasl;   /* NULL without AUTH */
  mg_server *mg;              /* NULL without --milter */
  listener listeners[2 * MAX_LISTENERS];
  int nlisteners;
  int listeners_paused;       /* EMFILE: accept paused until next tick */
  conn *conns;                /* every live connection */
  long nconns;
  unsigned char rbuf[READ_CHUNK];
  struct { int type; int fd; } sigpipe; /* read end of the self-pipe */
  deliverer *dl;              /* the delivery threads (NULL: --discard) */
  struct { int type; int fd; } dlpipe;  /* its wake-up pipe */
  long fault_slow_fsync;      /* test hook: ms before every fsync */
  int shutting_down;
  uint64_t shutdown_deadline;
  queue_ids qids;             /* queue_id.c */
  uint64_t now;                /* now_ms() once per loop pass, after the wait */
  time_t tz_time;             /* Received: the local offset at tz_time */
  int tz_offset_min;
  long fault_tls_new;         /* test hook: fail this many STARTTLS TLS
                                 setups (-1: all); see read_faults */
  netmask xclient_nets[MAX_NETS], proxy_nets[MAX_NETS];
  int nxclient_nets, nproxy_nets;
  def_table *defs;            /* per-address counts (defences.c) */
  int fault_enospc;           /* test hook: message writes fail, ENOSPC */
  long long fault_free;       /* test hook: free space at MAIL, -1: real */
  /* objects of ended connections kept for the next (SPARE_MAX each):
   * a new connection costs no calloc/free of them */
  conn *spare_conns;          /* linked by next */
  conn_txn *spare_txns;       /* linked by next_spare, rcpts kept */
  int nspare_conns, nspare_txns;
};
#define SPARE_MAX 64

static int parse_num(const char *s, uint64_t *out);
struct conn;
static int net_match(const struct conn *c, const netmask *nets, int n);

/* The only global: where the signal handler writes (self-pipe trick). */
static int signal_write_fd = -1;

static inline uint64_t now_ms(void) {
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

/* The log (log.c): logmsg for rare lines; the lines of every session
 * and message are put together by hand, and everything is written once
 * per loop pass. */

/* ---- connections ------------------------------------------------------ */

static void msg_abort(conn *c) {
  if (c->tx)
    maildir_abort(&c->srv->md, &c->tx->msg);
}

/* txn_get - c's transaction state, made the first time; NULL when out of
 * memory. */
static conn_txn *txn_get(conn *c) {
  server *srv = c->srv;
  if (c->tx != NULL)
    return c->tx;
  if (srv->spare_txns != NULL) { /* as new, its rcpts array kept */
    conn_txn *t = srv->spare_txns;
    srv->spare_txns = t->next_spare;
    srv->nspare_txns--;
    rcpt_info *r = t->rcpts;
    size_t cap = t->rcpts_cap;
    memset(t, 0, sizeof *t);
    t->rcpts = r;
    t->rcpts_cap = cap;
    c->tx = t;
  } else if ((c->tx = calloc(1, sizeof *c->tx)) == NULL) {
    return NULL;
  }
  c->tx->msg.fd = -1;
  return c->tx;
}

/* Forget the transaction's DSN / REQUIRETLS details. */
static void envelope_clear(conn *c) {
  conn_txn *t = c->tx;
  if (t == NULL)
    return;
  free(t->dsn_envid);
  t->dsn_envid = NULL;
  t->dsn_ret = SMTPD_DSN_RET_UNSPECIFIED;
  t->requiretls = 0;
  for (size_t i = 0; i < t->nrcpts; i++)
    if (t->rcpts[i].orcpt) /* ORCPT is rare: no call for the others */
      free(t->rcpts[i].orcpt);
  t->nrcpts = 0;
}

static void conn_destroy(conn *c) {
  server *srv = c->srv;
  msg_abort(c); /* a half-received message never reaches new/ */
  if (c->job) /* its commit goes on; the completion finds no one */
    c->job->owner = NULL;
  envelope_clear(c);
  if (c->tx && srv->nspare_txns < SPARE_MAX) {
    c->tx->next_spare = srv->spare_txns;
    srv->spare_txns = c->tx;
    srv->nspare_txns++;
  } else if (c->tx) {
    free(c->tx->rcpts);
    free(c->tx);
  }
  const char *tls_why = smtpd_tls_session_error(c->ts);
  const char *why = c->end_reason ? c->end_reason
                    : *tls_why    ? tls_why
                                  : "disconnect";
  if (!srv->opt.quiet) { /* --quiet: no line per session either */
    log_begin();
    LOG_LIT("session end client=");
    log_str(c->addr);
    LOG_LIT(" reason=");
    log_str(why);
    LOG_LIT(" messages=");
    log_u64(c->messages);
    log_end();
  }
  def_conn_close(srv->defs, c->da);
  poller_remove(srv->poll, c->fd);
  close(c->fd);
  mg_conn_del(c->mg); /* before the session its chain borrows */
  smtpd_tls_session_del(c->ts);
  smtpd_session_del(c->s);
  free(c->pending);
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  srv->nconns--;
  if (srv->nspare_conns < SPARE_MAX) {
    c->next = srv->spare_conns;
    srv->spare_conns = c;
    srv->nspare_conns++;
  } else {
    free(c);
  }
}

/* ---- the session's I/O ------------------------------------------------
 *
 * Bytes go through the TLS wrapper (c->ts, include/smtpd/tls_gnutls.h)
 * once TLS or its bookkeeping can matter: from the start on an implicit
 * TLS listener, and on a plaintext one from the moment the client asks
 * for STARTTLS, the socket reaches end of file or the timer runs out
 * (conn_wrap, from on_starttls, conn_stop_reading and conn_expire).
 * Before that a wrapper would hold no TLS connection and each of its
 * calls would be exactly the session's own (the plaintext paths of
 * lib/tls/gnutls.c), so the connection has none: the loop asks the
 * session directly, which saves the wrapper's allocation per connection
 * and a call and its checks per question, several times per loop pass.
 * The wrapper made later starts in the state the one made at accept
 * would be in, so nothing differs but the cost. */

/* conn_wrap - c's wrapper, made now if it has none. 0, or -1 when out of
 * memory: STARTTLS is refused then; at end of file or a timeout the
 * connection ends instead (conn_unwrapped). */
static int conn_wrap(conn *c) {
  if (c->ts == NULL &&
      smtpd_tls_session_new(&c->ts, c->s, c->srv->tls, SMTPD_TLS_STARTTLS) !=
          0) {
    c->ts = NULL;
    return -1;
  }
  return 0;
}

static void conn_unwrapped(conn *c) {
  c->unwrapped = 1;
  if (!c->end_reason)
    c->end_reason = "out of memory";
}

static ptrdiff_t io_feed(conn *c, const void *p, size_t n) {
  return c->ts ? smtpd_tls_session_feed(c->ts, p, n)
               : smtpd_session_feed(c->s, p, n);
}

static size_t io_output(conn *c, const uint8_t **p) {
  return c->ts ? smtpd_tls_session_output(c->ts, p)
               : smtpd_session_output(c->s, p);
}

static void io_consume(conn *c, size_t n) {
  if (c->ts)
    smtpd_tls_session_consume(c->ts, n);
  else
    smtpd_session_consume(c->s, n);
}

static int io_want_read(const conn *c) {
  return c->ts ? smtpd_tls_session_want_read(c->ts)
               : !c->unwrapped && smtpd_session_want_read(c->s);
}

/* What conn_pump asks once a pass is over, from the wrapper or, without
 * one, from one smtpd_session_status call. done is the one rule that
 * ends a connection (the wrapper's: the session is done and not paused,
 * every octet written). */
typedef struct io_state {
  int done, want_read, want_write, closing;
  uint32_t timeout, deadline; /* ms, 0: none */
  uint64_t deadline_epoch;
} io_state;

static void io_state_get(const conn *c, io_state *st) {
  if (c->ts) {
    st->done = smtpd_tls_session_is_done(c->ts);
    st->want_read = smtpd_tls_session_want_read(c->ts);
    st->want_write = smtpd_tls_session_want_write(c->ts);
    st->closing = smtpd_session_is_closing(c->s);
    st->timeout = smtpd_tls_session_timeout(c->ts, NULL);
    st->deadline = smtpd_session_deadline(c->s, NULL, &st->deadline_epoch);
  } else if (c->unwrapped) {
    memset(st, 0, sizeof *st);
    st->done = 1;
  } else {
    smtpd_status ss;
    smtpd_session_status(c->s, &ss);
    st->done = (ss.flags & SMTPD_STATUS_DONE) &&
               !(ss.flags & SMTPD_STATUS_PAUSED);
    st->want_read = (ss.flags & SMTPD_STATUS_WANT_READ) != 0;
    st->want_write = (ss.flags & SMTPD_STATUS_WANT_WRITE) != 0;
    st->closing = (ss.flags & SMTPD_STATUS_CLOSING) != 0;
    st->timeout = ss.timeout;
    st->deadline = ss.deadline;
    st->deadline_epoch = ss.deadline_epoch;
  }
}

/* Input arrived: the client timer restarts, as the session's state says
 * once conn_pump has run (it reads the timeout with the rest). */
static void restart_timer(conn *c) {
  c->restart = 1;
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

/* Tarpitting: a new reply delay of the session (after a failed AUTH, or
 * an error beyond SMTPD_LIMIT_SOFT_ERRORS) holds back what is queued now
 * until its time; so does an AUTH penalty (on_auth_fail). Only writing
 * waits: the loop goes on, and the tick writes the reply. */
static int conn_holding_as(conn *c, uint32_t d, uint64_t epoch) {
  uint64_t now = c->srv->now;
  if (epoch != c->delay_epoch) {
    c->delay_epoch = epoch;
    if (d > 0 && now + d > c->hold_until)
      c->hold_until = now + d;
  }
  if (c->hold_until > now)
    return 1;
  c->hold_until = 0;
  return 0;
}

/* conn_holding_as with the session's reply delay now */
static int conn_holding(conn *c) {
  uint64_t epoch = 0;
  uint32_t d = smtpd_session_reply_delay(c->s, &epoch);
  return conn_holding_as(c, d, epoch);
}

/* What this connection keeps in memory for a client that does not read:
 * input not fed yet, the session's reply queue and, under TLS, ciphertext
 * not written. Reading stops above --max-buffer. */
static size_t conn_buffered(conn *c) {
  size_t n = c->npending + smtpd_session_output(c->s, NULL);
  if (c->ts && smtpd_tls_session_is_tls(c->ts))
    n += c->unsent;
  return n;
}

/* The library's absolute deadlines (a command line, a message's data):
 * one timer per epoch, not restarted by input, so trickling cannot
 * extend it. The tick calls conn_expire when it is due. */
static void conn_deadline(conn *c, uint32_t d, uint64_t epoch) {
  if (d == 0)
    c->dl_at = 0; /* none now (also while paused): re-armed later */
  else if (epoch != c->dl_epoch || c->dl_at == 0) {
    c->dl_epoch = epoch;
    c->dl_at = c->srv->now + d;
  }
}

/* Write what is queued. Returns -1 when the connection is dead, 1 when
 * it wrote all it could (c->unsent: what is left of the last output),
 * 0 when a tarpit holds the reply back. */
static int flush_output(conn *c) {
  const uint8_t *p;
  size_t n;
  if (conn_holding(c))
    return 0; /* tarpit: the reply waits (the tick writes it) */
  c->unsent = 0;
  while ((n = io_output(c, &p)) > 0) {
    ssize_t w = sys_send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->unsent = n;
        return 1;
      }
      return -1;
    }
    io_consume(c, (size_t)w);
    if ((size_t)w == n && c->ts == NULL)
      break; /* the session's whole queue went out: nothing is left */
  }
  return 1;
}

/* A session that holds no transaction may be closed at shutdown. */
static int conn_idle(const conn *c) {
  return smtpd_session_sender(c->s) == NULL &&
         (c->tx == NULL || c->tx->msg.fd < 0) &&
         !smtpd_session_is_paused(c->s);
}

/*
 * conn_pump - after anything happened on a connection: feed kept input,
 * write replies, and either destroy the connection or tell the poller
 * what to wait for. The end is the one rule, smtpd_tls_session_is_done:
 * the session is done (or the client went away, or TLS ended) and every
 * octet, close_notify last, is written; never while the session is
 * paused. The TLS-wrapped session switches to TLS by itself once the 220
 * to STARTTLS is written; what the client sent after STARTTLS in the
 * clear is fed before that (the loop feeds before it writes) and
 * discarded by the session. Returns -1 when c was destroyed.
 */
/* Watch c's socket for want (POLLER_IN/OUT), telling the poller only
 * when it changes. */
static inline void conn_watch(conn *c, unsigned want) {
  if (want != c->watched) {
    if (c->polled)
      poller_set(c->srv->poll, c->fd, want, c);
    else
      poller_add(c->srv->poll, c->fd, want, c);
    c->polled = 1;
    c->watched = want;
  }
}

/* The session is closing: its last replies get CLOSE_GRACE_MS to go out
 * (after a held reply's time), not the whole command timeout. */
static inline void conn_closing_grace(conn *c) {
  if (!c->end_reason)
    c->end_reason = "closing";
  uint64_t grace =
      (c->hold_until ? c->hold_until : c->srv->now) + CLOSE_GRACE_MS;
  if (c->deadline == 0 || c->deadline > grace)
    c->deadline = grace;
}

static int conn_pump_plain(conn *c);
static int conn_pump_any(conn *c);

static inline int conn_pump(conn *c) {
  if (c->ts == NULL && c->npending == 0 && !c->unwrapped &&
      !c->srv->shutting_down)
    return conn_pump_plain(c); /* the common case, below */
  return conn_pump_any(c);
}

static int conn_pump_any(conn *c) {
  server *srv = c->srv;
  int flushed = 0;
  for (int round = 0; round < 64; round++) {
    if (c->npending > 0 && io_want_read(c) && feed_pending(c) != 0) {
      c->end_reason = "session error";
      conn_destroy(c);
      return -1;
    }
    if ((flushed = flush_output(c)) < 0) {
      conn_destroy(c);
      return -1;
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
  io_state st;
  io_state_get(c, &st);
  if (st.done) {
    conn_destroy(c);
    return -1;
  }
  int wr = st.want_read;
  int ww = st.want_write;
  if (c->restart || c->deadline == 0) { /* after input, or none running */
    c->restart = 0;
    c->deadline = st.timeout ? srv->now + st.timeout : 0;
  }
  if (st.closing)
    conn_closing_grace(c);
  conn_deadline(c, st.deadline, st.deadline_epoch);
  unsigned want = 0;
  /* without a wrapper, what the flush left unsent is the reply queue */
  if (wr && c->npending == 0 && !c->eof &&
      (c->ts == NULL && flushed ? c->unsent : conn_buffered(c)) <
          (size_t)srv->opt.max_buffer)
    want |= POLLER_IN;
  if (ww && !c->hold_until)
    want |= POLLER_OUT;
  conn_watch(c, want);
  return 0;
}

/* conn_pump_plain - conn_pump for a connection without a wrapper, no
 * input kept and no shutdown under way (every pass of a plaintext
 * session but rare ones): the same steps with nothing to feed and no
 * second round, the session's state read once with smtpd_session_status
 * and used as it is (no wrapper: its output count is what
 * conn_buffered counts). */
static int conn_pump_plain(conn *c) {
  server *srv = c->srv;
  smtpd_session *s = c->s;
  uint64_t epoch;
  uint32_t delay = smtpd_session_reply_delay(s, &epoch);
  /* conn_holding's question, asked only when a delay is new or held */
  if ((epoch == c->delay_epoch && c->hold_until == 0) ||
      !conn_holding_as(c, delay, epoch)) { /* flush_output, no wrapper */
    const uint8_t *p;
    size_t n;
    c->unsent = 0;
    while ((n = smtpd_session_output(s, &p)) > 0) {
      ssize_t w = sys_send(c->fd, p, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          c->unsent = n;
          break;
        }
        conn_destroy(c);
        return -1;
      }
      smtpd_session_consume(s, (size_t)w);
      if ((size_t)w == n)
        break; /* the session's whole queue went out */
    }
  }
  smtpd_status ss;
  smtpd_session_status(s, &ss);
  unsigned f = ss.flags;
  if ((f & (SMTPD_STATUS_DONE | SMTPD_STATUS_PAUSED)) == SMTPD_STATUS_DONE) {
    conn_destroy(c);
    return -1;
  }
  if (c->restart || c->deadline == 0) { /* after input, or none running */
    c->restart = 0;
    c->deadline = ss.timeout ? srv->now + ss.timeout : 0;
  }
  if (f & SMTPD_STATUS_CLOSING)
    conn_closing_grace(c);
  if (ss.deadline != 0 || c->dl_at != 0)
    conn_deadline(c, ss.deadline, ss.deadline_epoch);
  unsigned want = 0;
  if ((f & SMTPD_STATUS_WANT_READ) && !c->eof &&
      ss.output < (size_t)srv->opt.max_buffer)
    want |= POLLER_IN;
  if ((f & SMTPD_STATUS_WANT_WRITE) && !c->hold_until)
    want |= POLLER_OUT;
  conn_watch(c, want);
  return 0;
}

/* The client is gone or must not be read any more: tell the wrapper,
 * which then ends the connection once the rest is written. */
static void conn_stop_reading(conn *c, const char *why) {
  if (why && !c->end_reason)
    c->end_reason = why;
  if (!c->eof) {
    c->eof = 1;
    if (conn_wrap(c) == 0) /* the wrapper keeps the end of file */
      smtpd_tls_session_eof(c->ts);
    else
      conn_unwrapped(c);
  }
}

/* Readable: one read into the shared buffer, hand it over, keep the rest
 * (only read with nothing kept, so end of file comes after all input was
 * fed, as smtpd_tls_session_eof wants). */
static void conn_read(conn *c) {
  server *srv = c->srv;
  /* no more than --max-buffer may be kept: read only what fits */
  size_t held = conn_buffered(c), cap = sizeof srv->rbuf;
  size_t room = held < (size_t)srv->opt.max_buffer
                    ? (size_t)srv->opt.max_buffer - held
                    : 1;
  ssize_t r = sys_recv(c->fd, srv->rbuf, room < cap ? room : cap, 0);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return;
    conn_stop_reading(c, "read error");
    return;
  }
  if (r == 0) {
    conn_stop_reading(c, NULL); /* replies to what we fed may follow */
    return;
  }
  ptrdiff_t took = io_feed(c, srv->rbuf, (size_t)r);
  if (took < 0) {
    if (smtpd_is_fatal((int)took)) {
      conn_stop_reading(c, "session error");
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
      conn_stop_reading(c, "out of memory");
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
    conn_stop_reading(c, NULL);
  }
  conn_pump(c);
}

/* The timer of c ran out: the client gets 421 4.4.2, or, when it does
 * not even read what we have to say (closing, or TLS ended), the wrapper
 * gives up and is done. */
static void conn_expire(conn *c) {
  if (smtpd_session_is_paused(c->s)) { /* we are the slow side: no 421 */
    c->deadline = 0;
    return;
  }
  if (!c->end_reason)
    c->end_reason = "timeout";
  msg_abort(c);
  if (conn_wrap(c) == 0) /* the wrapper decides whether it gives up */
    smtpd_tls_session_timeout_expired(c->ts);
  else
    conn_unwrapped(c);
  c->deadline = 0;
  conn_pump(c);
}

/* The deadline of the epoch the timer was set for ran out: if that
 * period is still on (the line or message not finished), the client gets
 * 421 4.4.2 as for the idle timeout. */
static void conn_deadline_due(conn *c) {
  uint64_t epoch = 0;
  if (smtpd_session_deadline(c->s, NULL, &epoch) > 0 &&
      epoch == c->dl_epoch) {
    if (!c->end_reason)
      c->end_reason = "deadline";
    conn_expire(c);
    return;
  }
  c->dl_at = 0;
  conn_pump(c);
}

/* "addr" and "addr:port" / "[v6addr]:port" (fmt.c, no getnameinfo),
 * cut to the buffers given. */
static void format_addr(const struct sockaddr *sa, char *host, size_t hcap,
                        char *both, size_t bcap) {
  char h[FMT_IP_MAX], b[FMT_IP_MAX + 8];
  fmt_sockaddr(sa, h, b);
  size_t hl = strlen(h), bl = strlen(b);
  hl = hl < hcap ? hl : hcap - 1;
  bl = bl < bcap ? bl : bcap - 1;
  memcpy(host, h, hl);
  host[hl] = '\0';
  memcpy(both, b, bl);
  both[bl] = '\0';
}

static smtpd_verdict on_data_complete_inline(smtpd_session *s,
                                             const smtpd_message *m,
                                             void *ud);

static void conn_new(server *srv, listener *l, int fd,
                     const struct sockaddr *sa) {
  conn *c = srv->spare_conns;
  if (c != NULL) {
    srv->spare_conns = c->next;
    srv->nspare_conns--;
    memset(c, 0, sizeof *c);
  } else if ((c = calloc(1, sizeof *c)) == NULL) {
    close(fd);
    return;
  }
  c->type = OBJ_CONN;
  c->srv = srv;
  c->fd = fd;
  char host[INET6_ADDRSTRLEN + 1];
  int is_unix = sa->sa_family == AF_UNIX;
  if (is_unix) { /* --listen unix:PATH: no address to give the session */
    snprintf(c->addr, sizeof c->addr, "unix");
    c->addr_len = 4;
    c->peer.sa.sa_family = AF_UNIX;
  } else {
    format_addr(sa, host, sizeof host, c->addr, sizeof c->addr);
    c->addr_len = (unsigned char)strlen(c->addr);
    memcpy(&c->peer, sa, sa->sa_family == AF_INET6
                             ? sizeof(struct sockaddr_in6)
                             : sizeof(struct sockaddr_in));
    c->da = def_conn_open(srv->defs, host, &c->from_ip);
  }
  int one = 1;
  if (!is_unix)
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (smtpd_session_new(&c->s, srv->cfg, &srv->cb, c) != 0) {
    def_conn_close(srv->defs, c->da);
    close(fd);
    free(c);
    return;
  }
  if (!is_unix) {
    smtpd_session_set_client(c->s, host, NULL);
    smtpd_session_set_client_port(
        c->s, ntohs(sa->sa_family == AF_INET6
                        ? ((const struct sockaddr_in6 *)sa)->sin6_port
                        : ((const struct sockaddr_in *)sa)->sin_port));
  }
  /* --proxy-from: these peers must begin with a PROXY header (not on an
   * implicit-TLS listener, where the header would precede the TLS) */
  if (!l->implicit_tls &&
      net_match(c, srv->proxy_nets, srv->nproxy_nets) &&
      smtpd_session_set_proxy(c->s) != 0) {
    def_conn_close(srv->defs, c->da);
    close(fd);
    smtpd_session_del(c->s);
    free(c);
    return;
  }
  c->next = srv->conns;
  if (c->next)
    c->next->prev = c;
  srv->conns = c;
  srv->nconns++;
  /* TLS from the first byte: the wrapper at once (plaintext listeners
   * make it when TLS can matter, conn_wrap) */
  if (l->implicit_tls &&
      smtpd_tls_session_new(&c->ts, c->s, srv->tls, SMTPD_TLS_IMPLICIT) != 0) {
    c->ts = NULL;
    c->end_reason = "tls setup failed";
    conn_destroy(c);
    return;
  }
  /* --milter: start connecting the filters (on_connect waits for them) */
  if (srv->mg && txn_get(c) == NULL) {
    c->end_reason = "out of memory";
    conn_destroy(c);
    return;
  }
  if (mg_conn_new(&c->mg, srv->mg, srv->poll, c->s, sa, &srv->md,
                  c->tx ? &c->tx->msg : NULL,
                  on_data_complete_inline, c) != 0) {
    c->end_reason = "milter setup failed";
    conn_destroy(c);
    return;
  }
  /* on_connect runs; the greeting is queued (implicit TLS: after the
   * handshake) */
  smtpd_session_start(c->s);
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

/* ---- trusted networks (--xclient-from, --proxy-from) ------------------ */

/* parse_nets - "127.0.0.1/32,::1,10.0.0.0/8" into nets; 0 or -1. */
static int parse_nets(const char *spec, netmask *nets, int *n) {
  char buf[128];
  *n = 0;
  while (*spec) {
    size_t len = strcspn(spec, ", ");
    if (len == 0) {
      spec++;
      continue;
    }
    if (len >= sizeof buf || *n == MAX_NETS)
      return -1;
    memcpy(buf, spec, len);
    buf[len] = '\0';
    spec += len;
    netmask *m = &nets[*n];
    char *slash = strchr(buf, '/');
    if (slash)
      *slash++ = '\0';
    if (inet_pton(AF_INET, buf, m->addr) == 1) {
      m->family = AF_INET;
      m->bits = 32;
    } else if (inet_pton(AF_INET6, buf, m->addr) == 1) {
      m->family = AF_INET6;
      m->bits = 128;
    } else {
      return -1;
    }
    if (slash) {
      uint64_t b;
      if (parse_num(slash, &b) != 0 || b > m->bits)
        return -1;
      m->bits = (unsigned)b;
    }
    (*n)++;
  }
  return *n > 0 ? 0 : -1;
}

/* net_match - the connection's peer is inside one of nets (IPv4-mapped
 * IPv6 peers are compared as IPv4; a UNIX socket peer never matches). */
static int net_match(const conn *c, const netmask *nets, int n) {
  const unsigned char *a;
  int family;
  unsigned char v4[4];
  if (n == 0)
    return 0; /* no such networks configured (the usual case) */
  if (c->peer.sa.sa_family == AF_INET) {
    a = (const unsigned char *)&c->peer.in.sin_addr;
    family = AF_INET;
  } else if (c->peer.sa.sa_family == AF_INET6) {
    const struct in6_addr *a6 = &c->peer.in6.sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
      memcpy(v4, a6->s6_addr + 12, 4);
      a = v4;
      family = AF_INET;
    } else {
      a = a6->s6_addr;
      family = AF_INET6;
    }
  } else {
    return 0;
  }
  for (int i = 0; i < n; i++) {
    const netmask *m = &nets[i];
    if (m->family != family)
      continue;
    unsigned full = m->bits / 8, rest = m->bits % 8;
    if (memcmp(a, m->addr, full) != 0)
      continue;
    if (rest && ((a[full] ^ m->addr[full]) & (0xFFu << (8 - rest)) & 0xFFu))
      continue;
    return 1;
  }
  return 0;
}

/* The client as the session knows it now (after PROXY or XCLIENT), for
 * logs: "addr:port" or "addr". */
static void session_client_text(conn *c) {
  const char *a = smtpd_session_client_addr(c->s);
  unsigned port = smtpd_session_client_port(c->s);
  if (a == NULL || *a == '\0')
    return;
  char safe[64], num[FMT_U64_MAX];
  log_safe(safe, sizeof safe, a);
  size_t n = strlen(safe), cap = sizeof c->addr - 1, o = 0;
  int v6 = port && memchr(safe, ':', n) != NULL;
  char *d = c->addr; /* as "[%s]:%u" / "%s:%u" / "%s", cut to cap */
  if (v6 && o < cap)
    d[o++] = '[';
  for (size_t i = 0; i < n && o < cap; i++)
    d[o++] = safe[i];
  if (v6 && o < cap)
    d[o++] = ']';
  if (port) {
    size_t k = fmt_u64(num, port);
    if (o < cap)
      d[o++] = ':';
    for (size_t i = 0; i < k && o < cap; i++)
      d[o++] = num[i];
  }
  d[o] = '\0';
  c->addr_len = (unsigned char)o;
}

/* xtext (RFC 3461 4): what is not printable ASCII, '+' and '=' as +HH.
 * The result is safe in a header field. NULL when out of memory. */
static char *xtext_encode(const char *v) {
  size_t n = strlen(v);
  char *out = malloc(3 * n + 1), *o = out;
  if (out == NULL)
    return NULL;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    if (*p < 33 || *p > 126 || *p == '+' || *p == '=')
      o += sprintf(o, "+%02X", *p);
    else
      *o++ = (char)*p;
  }
  *o = '\0';
  return out;
}

/* Whom the per-address defences count this connection against: a
 * trusted XCLIENT peer (a proxy in front) not at all; behind a PROXY
 * header, the client it names; otherwise the socket's peer (conn_new). */
static void defences_key(conn *c) {
  server *srv = c->srv;
  if (c->da == NULL)
    return;
  if (net_match(c, srv->xclient_nets, srv->nxclient_nets)) {
    def_conn_close(srv->defs, c->da);
    c->da = NULL;
    return;
  }
  const char *a = smtpd_session_client_addr(c->s);
  if (net_match(c, srv->proxy_nets, srv->nproxy_nets) && a && *a &&
      strlen(a) < 64 && strcmp(a, def_addr_text(c->da)) != 0) {
    def_conn_close(srv->defs, c->da);
    c->da = def_conn_open(srv->defs, a, &c->from_ip);
  }
}

static smtpd_verdict on_connect(smtpd_session *s, void *ud) {
  conn *c = ud;
  if (c->srv->nproxy_nets) /* a PROXY header may have named the client */
    session_client_text(c);
  defences_key(c);
  if (c->srv->opt.max_per_client > 0 && c->da &&
      c->from_ip > (unsigned long)c->srv->opt.max_per_client) {
    char text[128];
    snprintf(text, sizeof text, "Error: too many connections from %s",
             def_addr_text(c->da));
    c->end_reason = "too many connections from client";
    smtpd_session_set_reply(s, 421, "4.7.0", text);
    return SMTPD_TEMPFAIL;
  }
  if (c->srv->opt.max_sessions > 0 && c->srv->nconns > c->srv->opt.max_sessions) {
    c->end_reason = "too many sessions";
    smtpd_session_set_reply(s, 421, "4.3.2",
                            "Too many sessions, try again later");
    return SMTPD_TEMPFAIL;
  }
  return mg_on_connect(c->mg);
}

/* The Maildir's free space (statvfs, or the test hook's figure) is less
 * than need plus --min-free. */
static int storage_short(server *srv, uint64_t need) {
  if (srv->opt.discard)
    return 0;
  unsigned long long avail;
  if (srv->fault_free >= 0) {
    avail = (unsigned long long)srv->fault_free;
  } else {
    struct statvfs vfs;
    if (statvfs(srv->opt.maildir, &vfs) != 0)
      return 0; /* unknown: the write will tell */
    avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
  }
  return need > avail ||
         avail - need < (unsigned long long)srv->opt.min_free;
}

/* A write or fsync of the message failed for want of space. */
static int storage_full(const maildir_msg *m) {
  return m->failed && (m->err == ENOSPC || m->err == EDQUOT);
}

static smtpd_verdict reply_storage(smtpd_session *s) {
  smtpd_session_set_reply(s, 452, "4.3.1", "Insufficient system storage");
  return SMTPD_TEMPFAIL;
}

static smtpd_verdict on_mail(smtpd_session *s, const smtpd_mail *m, void *ud) {
  conn *c = ud;
  if (c->srv->shutting_down) {
    smtpd_session_set_reply(s, 421, "4.3.2", "Service shutting down");
    return SMTPD_TEMPFAIL;
  }
  /* SIZE=n (RFC 1870 6.1): refused at once when the disk cannot take it */
  if (storage_short(c->srv, m->has_size ? m->size : 0)) {
    logmsg("smtpd-maildir: MAIL refused client=%s: insufficient storage "
           "for SIZE=%" PRIu64, c->addr, m->has_size ? m->size : 0);
    return reply_storage(s);
  }
  if (txn_get(c) == NULL) /* out of memory */
    return SMTPD_TEMPFAIL;
  envelope_clear(c); /* a new transaction */
  c->tx->dsn_ret = m->dsn_ret;
  c->tx->requiretls = m->requiretls;
  if (m->dsn_envid && (c->tx->dsn_envid = xtext_encode(m->dsn_envid)) == NULL)
    return SMTPD_TEMPFAIL;
  return mg_on_mail(c->mg, m);
}

static int rcpt_refused(const server *srv, const char *addr) {
  for (int i = 0; i < srv->opt.nreject_rcpt; i++)
    if (strcasecmp(srv->opt.reject_rcpt[i], addr) == 0)
      return 1;
  return 0;
}

/* rcpt_keep - the entry of recipient r->index: entries are kept by
 * index, only for recipients with something to keep (NOTIFY, ORCPT, an
 * LMTP refusal); one without, or past the last entry, reads as the
 * defaults. Drops what a later refusal of an earlier try at this index
 * left behind. Returns -1 when out of memory. */
static int rcpt_keep(conn_txn *t, const smtpd_rcpt *r, int refused) {
  char *orcpt = NULL;
  while (t->nrcpts > r->index) /* an entry a later refusal left behind */
    free(t->rcpts[--t->nrcpts].orcpt);
  if (!refused && !r->dsn_notify && !r->dsn_orcpt)
    return 0; /* nothing to keep */
  if (r->index >= t->rcpts_cap) {
    size_t cap = t->rcpts_cap ? 2 * t->rcpts_cap : 8;
    while (cap <= r->index)
      cap *= 2;
    rcpt_info *n = realloc(t->rcpts, cap * sizeof *n);
    if (n == NULL)
      return -1;
    t->rcpts = n;
    t->rcpts_cap = cap;
  }
  if (r->dsn_orcpt) {
    char *x = xtext_encode(r->dsn_orcpt);
    const char *type = r->dsn_orcpt_type ? r->dsn_orcpt_type : "rfc822";
    size_t len = x ? strlen(type) + 1 + strlen(x) + 1 : 0;
    orcpt = x ? malloc(len) : NULL;
    if (orcpt == NULL) {
      free(x);
      return -1;
    }
    snprintf(orcpt, len, "%s;%s", type, x);
    free(x);
  }
  while (t->nrcpts < r->index) /* the recipients before it: defaults */
    memset(&t->rcpts[t->nrcpts++], 0, sizeof *t->rcpts);
  rcpt_info *ri = &t->rcpts[t->nrcpts++];
  ri->notify = r->dsn_notify;
  ri->orcpt = orcpt;
  ri->refused = refused;
  return 0;
}

/* RCPT: --reject-rcpt refuses here (SMTP) or at the end of the message
 * (LMTP, one reply per recipient); NOTIFY and ORCPT are kept by the
 * recipient's index for the X-Envelope-To field (rcpt_keep). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static smtpd_verdict rcpt_checked(smtpd_session *s, const smtpd_rcpt *r,
                                  conn *c) {
  conn_txn *t = c->tx;
  int refused = c->srv->opt.nreject_rcpt && rcpt_refused(c->srv, r->address);
  if (refused && !c->srv->opt.lmtp) {
    smtpd_session_set_reply(s, 550, "5.1.1", "Recipient address rejected");
    return SMTPD_REJECT;
  }
  if ((refused || r->dsn_notify || r->dsn_orcpt || t->nrcpts > r->index) &&
      rcpt_keep(t, r, refused) < 0)
    return SMTPD_TEMPFAIL;
  return c->mg ? mg_on_rcpt(c->mg, r) : SMTPD_ACCEPT;
}

/* The common recipient (no --reject-rcpt, no DSN fields, no milter, no
 * entry kept before it) is accepted here; the rest in rcpt_checked. */
static smtpd_verdict on_rcpt(smtpd_session *s, const smtpd_rcpt *r,
                             void *ud) {
  conn *c = ud;
  if (!c->srv->opt.nreject_rcpt && !r->dsn_notify && !r->dsn_orcpt &&
      c->tx->nrcpts <= r->index && !c->mg)
    return SMTPD_ACCEPT;
  return rcpt_checked(s, r, c);
}

/* XCLIENT: only from --xclient-from networks; the core then takes the
 * attributes. Others get the core's 550 5.7.0. */
static smtpd_verdict on_xclient(smtpd_session *s, const smtpd_xclient *x,
                                void *ud) {
  conn *c = ud;
  char a[64], n[64];
  (void)s;
  if (!net_match(c, c->srv->xclient_nets, c->srv->nxclient_nets)) {
    logmsg("smtpd-maildir: XCLIENT refused client=%s", c->addr);
    return SMTPD_REJECT;
  }
  logmsg("smtpd-maildir: XCLIENT client=%s name=%s addr=%s", c->addr,
         log_safe(n, sizeof n, x->name ? x->name : "-"),
         log_safe(a, sizeof a, x->addr ? x->addr : "-"));
  c->addr_stale = 1;
  return SMTPD_ACCEPT;
}

static void new_queue_id(conn *c) {
  /* unique, in arrival order; no clock read, no printf (queue_id.c) */
  c->tx->qid_len = (unsigned char)queue_id_next(&c->srv->qids, c->tx->qid);
}

/* The Received: line (RFC 5321 4.4) that goes on top of the message. */
static size_t make_received(conn *c, char *buf, size_t cap) {
  smtpd_session *s = c->s;
#ifdef SMTPD_HAVE_RECEIVED
  /* the library's formatter: sanitised, folded, RFC 3848 "with" types */
  smtpd_received r;
  smtpd_received_init(&r);
  /* the session's protocol: LHLO, or what XCLIENT PROTO= forwarded */
  const char *sproto = smtpd_session_protocol(s);
  if (sproto && strcmp(sproto, "LMTP") == 0)
    r.base = SMTPD_RECEIVED_LMTP; /* "with LMTP" / "UTF8LMTP" */
  if (smtpd_received_from_session(&r, s) == 0) {
    if (sproto && strcasecmp(sproto, "SMTP") == 0) {
      r.base = SMTPD_RECEIVED_SMTP;
      r.is_helo = 1;
    } else if (sproto && strcasecmp(sproto, "ESMTP") == 0) {
      r.base = SMTPD_RECEIVED_ESMTP;
      r.is_helo = 0;
    }
    time_t t = time(NULL);
    if (t != c->srv->tz_time) { /* the zone's offset, once a second */
      struct tm tm;
      localtime_r(&t, &tm);
      c->srv->tz_time = t;
      c->srv->tz_offset_min = (int)(tm.tm_gmtoff / 60);
    }
    r.software = "smtpd-maildir";
    r.queue_id = c->tx->qid;
    r.time = (int64_t)t;
    r.utc_offset_minutes = c->srv->tz_offset_min;
    size_t n = smtpd_received_format(buf, cap, &r);
    if (n > 0 && n < cap)
      return n;
  }
#endif
  /* Minimal fallback: every client-supplied string is neutered. */
  const char *helo = smtpd_session_helo_safe(s);
  const smtpd_tls_info *tls = smtpd_session_tls(s);
  const char *user = smtpd_session_auth_user(s);
  const char *proto = c->srv->opt.lmtp            ? "LMTP"
                      : !smtpd_session_is_esmtp(s) ? "SMTP"
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
                   smtpd_session_hostname(s), proto, c->tx->qid, rcpt, date);
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The envelope where a delivery agent finds it: X-Envelope-From (with
 * RET= and ENVID= when given), one X-Envelope-To per recipient delivered
 * (with NOTIFY= and ORCPT=), X-Envelope-RequireTLS: yes (RFC 8689).
 * In addresses, controls and angle brackets become '?' (UTF-8 is kept,
 * RFC 6532), so a field stays one line; ENVID and ORCPT are xtext.
 * The fields are put together in a staging buffer and handed to
 * maildir_write in one piece (more only when they are long). */
typedef struct env_out {
  maildir_msg *m;
  size_t n;
  char b[2048];
} env_out;

static void env_mem(env_out *e, const char *p, size_t n) {
  if (e->n + n > sizeof e->b) {
    maildir_write(e->m, e->b, e->n);
    e->n = 0;
    if (n > sizeof e->b) {
      maildir_write(e->m, p, n);
      return;
    }
  }
  memcpy(e->b + e->n, p, n);
  e->n += n;
}

/* ENV_LIT - a piece of an X-Envelope-* field, a string literal */
#define ENV_LIT(e, lit) env_mem((e), "" lit, sizeof(lit) - 1)

/* env_addr - an address as header_safe had it: at most 599 octets,
 * controls, DEL and angle brackets as '?'. Returns its length. Copied
 * whole, then checked eight octets at a time (one such octet is rare). */
#define ENV_ADDR_MAX 599u
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
#define HAS_ZERO(x) (((x) - ONES) & ~(x) & HIGHS)
static int env_word_bad(uint64_t w) {
  return (((w - 0x20 * ONES) & ~w & HIGHS) /* an octet below 0x20 */ |
          HAS_ZERO(w ^ (0x7f * ONES)) | HAS_ZERO(w ^ ('<' * ONES)) |
          HAS_ZERO(w ^ ('>' * ONES))) != 0;
}

static size_t env_addr(env_out *e, const char *src) {
  if (e->n + ENV_ADDR_MAX > sizeof e->b) {
    maildir_write(e->m, e->b, e->n);
    e->n = 0;
  }
  char *o = e->b + e->n;
  size_t n = strnlen(src, ENV_ADDR_MAX), i = 0;
  memcpy(o, src, n);
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, o + i, 8);
    if (!env_word_bad(w))
      continue;
    for (size_t k = i; k < i + 8; k++) {
      unsigned char ch = (unsigned char)o[k];
      if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>')
        o[k] = '?';
    }
  }
  if (i < n) { /* the last 1..7 octets, padded with harmless ones */
    uint64_t w = 'a' * ONES;
    memcpy(&w, o + i, n - i);
    if (env_word_bad(w))
      for (; i < n; i++) {
        unsigned char ch = (unsigned char)o[i];
        if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>')
          o[i] = '?';
      }
  }
  e->n += n;
  return n;
}

/* RFC 5322 2.1.1: a line is at most 998 octets before its CRLF. */
#define ENV_LINE_MAX 998u

/* env_param - "; NAME=value" on the field's current line (*col octets
 * long), or folded onto a line of its own when it would pass 998
 * octets. A value that cannot fit even a line of its own (an ORCPT
 * whose every octet was xtext-escaped under a raised command-line limit)
 * is left out rather than written over the limit. */
static void env_param(env_out *e, size_t *col, const char *name,
                      const char *value) {
  size_t n = strlen(name), v = strlen(value);
  if (1 + n + 1 + v + 1 > ENV_LINE_MAX)
    return;
  if (*col + 2 + n + 1 + v + 1 > ENV_LINE_MAX) { /* +1: ';' of a next one */
    ENV_LIT(e, ";\r\n\t");
    *col = 1;
  } else {
    ENV_LIT(e, "; ");
    *col += 2;
  }
  env_mem(e, name, n);
  ENV_LIT(e, "=");
  env_mem(e, value, v);
  *col += n + 1 + v;
}

static void write_envelope(conn *c) {
  smtpd_session *s = c->s;
  env_out e;
  e.m = &c->tx->msg;
  e.n = 0;
  const char *sender = smtpd_session_sender(s);
  ENV_LIT(&e, "X-Envelope-From: <");
  size_t col = sizeof "X-Envelope-From: <>" - 1 +
               env_addr(&e, sender ? sender : "");
  ENV_LIT(&e, ">");
  if (c->tx->dsn_ret != SMTPD_DSN_RET_UNSPECIFIED)
    env_param(&e, &col, "RET",
              c->tx->dsn_ret == SMTPD_DSN_RET_FULL ? "FULL" : "HDRS");
  if (c->tx->dsn_envid)
    env_param(&e, &col, "ENVID", c->tx->dsn_envid);
  ENV_LIT(&e, "\r\n");
  size_t nr = smtpd_session_recipient_count(s);
  for (size_t i = 0; i < nr; i++) {
    const rcpt_info *ri = i < c->tx->nrcpts ? &c->tx->rcpts[i] : NULL;
    if (ri && ri->refused)
      continue;
    char notify[64] = "";
    if (ri && ri->notify) {
      static const struct { unsigned bit; const char *name; } names[] = {
          {SMTPD_DSN_NOTIFY_NEVER, "NEVER"},
          {SMTPD_DSN_NOTIFY_SUCCESS, "SUCCESS"},
          {SMTPD_DSN_NOTIFY_FAILURE, "FAILURE"},
          {SMTPD_DSN_NOTIFY_DELAY, "DELAY"}};
      int first = 1;
      for (size_t k = 0; k < sizeof names / sizeof *names; k++)
        if (ri->notify & names[k].bit) {
          if (!first)
            strcat(notify, ",");
          strcat(notify, names[k].name);
          first = 0;
        }
    }
    ENV_LIT(&e, "X-Envelope-To: <");
    col = sizeof "X-Envelope-To: <>" - 1 +
          env_addr(&e, smtpd_session_recipient(s, i));
    ENV_LIT(&e, ">");
    if (*notify)
      env_param(&e, &col, "NOTIFY", notify);
    if (ri && ri->orcpt)
      env_param(&e, &col, "ORCPT", ri->orcpt);
    ENV_LIT(&e, "\r\n");
  }
  if (c->tx->requiretls)
    ENV_LIT(&e, "X-Envelope-RequireTLS: yes\r\n");
  maildir_write(e.m, e.b, e.n);
}

static int begin_message(conn *c) {
  new_queue_id(c);
  if (c->srv->opt.discard)
    return 0;
  char rec[2048];
  if (maildir_begin(&c->srv->md, &c->tx->msg) != 0) {
    logmsg("smtpd-maildir: cannot create message file: %s", strerror(errno));
    return -1;
  }
  maildir_write(&c->tx->msg, rec, make_received(c, rec, sizeof rec));
  write_envelope(c);
  c->tx->msg.written = 0; /* count the body only */
  return 0;
}

static smtpd_verdict on_data(smtpd_session *s, void *ud) {
  conn *c = ud;
  msg_abort(c); /* the spool of a DATA a filter refused */
  if (begin_message(c) != 0) {
    smtpd_session_set_reply(s, 451, "4.3.0", "Error: cannot store message");
    return SMTPD_TEMPFAIL;
  }
  return mg_on_data(c->mg, c->tx->qid);
}

static smtpd_verdict on_body(smtpd_session *s, const uint8_t *p, size_t n,
                             void *ud) {
  conn *c = ud;
  (void)s;
  if (c->srv->opt.discard) {
    c->tx->msg.written += n;
    return SMTPD_ACCEPT;
  }
  maildir_write(&c->tx->msg, p, n);
  if (c->srv->fault_enospc && c->tx->msg.fd >= 0) { /* test hook */
    c->tx->msg.failed = 1;
    c->tx->msg.err = ENOSPC;
  }
  if (storage_full(&c->tx->msg)) { /* the rest is read and dropped */
    logmsg("smtpd-maildir: %s: message refused: %s", c->tx->qid,
           strerror(c->tx->msg.err));
    return reply_storage(s);
  }
  return SMTPD_ACCEPT;
}

/* "QID: from=<SENDER> nrcpt=N size=N client=ADDR" (the message whose
 * commit ended: the session still holds its envelope, paused or not) */
#define PUT_LIT(o, lit) (memcpy((o), "" lit, sizeof(lit) - 1), (o) + sizeof(lit) - 1)
static void log_from_line(conn *c) {
  /* written in place, at most 15 + 40 + 8 + 279 + 8 + 20 + 6 + 20 + 8 +
   * 64 octets: well within LOG_LINE_MAX, so nothing is ever cut */
  char *o = log_line(480);
  const char *from = smtpd_session_sender(c->s);
  size_t n = c->tx->qid_len;
  memcpy(o, c->tx->qid, sizeof c->tx->qid); /* whole: a fixed-size copy */
  o = PUT_LIT(o + n, ": from=<");
  if (from)
    o += log_copy_safe(o, from, 279);
  o = PUT_LIT(o, "> nrcpt=");
  o += fmt_u64(o, c->tx->done_nrcpt);
  o = PUT_LIT(o, " size=");
  o += fmt_u64(o, c->tx->done_size);
  o = PUT_LIT(o, " client=");
  memcpy(o, c->addr, sizeof c->addr); /* whole, as the queue id */
  log_line_end(o + c->addr_len);
}

/* 250 2.0.0 TEXT QID (TEXT a string literal) */
#define reply_with_qid(c, text) reply_with_qid_n((c), "" text, sizeof(text) - 1)
static void reply_with_qid_n(conn *c, const char *text, size_t n) {
  char buf[40 + sizeof c->tx->qid];
  memcpy(buf, text, n); /* n < 40: the callers' literals */
  memcpy(buf + n, c->tx->qid, sizeof c->tx->qid); /* the NUL within */
  /* enh NULL: the library's default for 250, "2.0.0", without the
   * check a given one needs */
  smtpd_session_set_reply(c->s, 250, NULL, buf);
}

/* The answer to a message whose commit ended (rc 0: durable in new/,
 * else err says why): 250 with its queue id, 452 4.3.1 when the disk or
 * quota is full, 451 4.3.0 otherwise. */
static smtpd_verdict delivery_reply(conn *c, int rc, int err) {
  smtpd_session *s = c->s;
  if (rc != 0) {
    logmsg("smtpd-maildir: %s: delivery failed: %s", c->tx->qid, strerror(err));
    if (err == ENOSPC || err == EDQUOT)
      return reply_storage(s);
    smtpd_session_set_reply(s, 451, "4.3.0", "Error: cannot store message");
    return SMTPD_TEMPFAIL;
  }
  c->tx->msg.written = 0;
  c->messages++;
  if (!c->srv->opt.quiet) {
    if (c->addr_stale) /* after XCLIENT: the forwarded client */
      session_client_text(c);
    log_from_line(c);
  }
  reply_with_qid(c, "Ok: queued as ");
  return SMTPD_ACCEPT;
}

/* The errno of a failed inline commit (or of a message never opened). */
static int msg_errno(const conn *c, int e) {
  return c->tx->msg.err ? c->tx->msg.err : e ? e : EIO;
}

/* commit_async - hand the received message to the delivery threads; the
 * session pauses (SMTPD_DEFER) until deliveries_done answers it. 0, or
 * -1 when it could not be queued (then the message is dropped). */
static int commit_async(conn *c) {
  c->job = deliver_submit(c->srv->dl, &c->tx->msg, c);
  return c->job ? 0 : -1;
}

static smtpd_verdict on_data_complete(smtpd_session *s,
                                      const smtpd_message *m, void *ud) {
  conn *c = ud;
  (void)s;
  c->tx->done_size = m->size;
  c->tx->done_nrcpt = m->nrecipients;
  if (c->srv->opt.discard)
    return delivery_reply(c, 0, 0);
  if (c->tx->msg.fd < 0)
    return delivery_reply(c, -1, msg_errno(c, 0));
  if (commit_async(c) == 0)
    return SMTPD_DEFER; /* the threads fsync; deliveries_done answers */
  return delivery_reply(c, -1, ENOMEM);
}

/* --milter: the chain's end-of-message hook cannot defer (milter.h), so
 * the edited message is committed here, on the loop, as before the
 * delivery threads existed (docs/example-server.md, "Delivery pipeline"). */
static smtpd_verdict on_data_complete_inline(smtpd_session *s,
                                             const smtpd_message *m,
                                             void *ud) {
  conn *c = ud;
  (void)s;
  c->tx->done_size = m->size;
  c->tx->done_nrcpt = m->nrecipients;
  if (c->srv->opt.discard)
    return delivery_reply(c, 0, 0);
  if (c->tx->msg.fd < 0 || maildir_commit(&c->srv->md, &c->tx->msg) != 0)
    return delivery_reply(c, -1, msg_errno(c, errno));
  return delivery_reply(c, 0, 0);
}

/* --milter: the filters are asked first (HELO only for them); at the end
 * of the message they see the spool, and their end-of-message hook
 * (milter_glue.c) delivers the edited message through on_data_complete. */
static smtpd_verdict on_helo_milter(smtpd_session *s, const smtpd_helo *h,
                                    void *ud) {
  (void)s;
  return mg_on_helo(((conn *)ud)->mg, h);
}

static smtpd_verdict on_data_complete_milter(smtpd_session *s,
                                             const smtpd_message *m,
                                             void *ud) {
  (void)s;
  return mg_on_data_complete(((conn *)ud)->mg, m);
}

/* --lmtp: the end of a message is answered once per accepted recipient
 * (RFC 2033 4.2). The file is stored once, when recipient 0 is asked,
 * if any recipient is to get it (its X-Envelope-To fields name exactly
 * those); a --reject-rcpt recipient gets 550 5.1.1 here. Recipient 0
 * waits for its commit (lmtp_stored_set from deliveries_done);
 * the others are answered from its outcome at once. */
static smtpd_verdict lmtp_answer(conn *c, size_t index) {
  smtpd_session *s = c->s;
  int refused = index < c->tx->nrcpts && c->tx->rcpts[index].refused;
  if (!c->srv->opt.quiet) {
    char to[280];
    log_safe(to, sizeof to, smtpd_session_recipient(s, index));
    log_begin();
    log_str(c->tx->qid);
    LOG_LIT(": to=<");
    log_str(to);
    LOG_LIT("> status=");
    log_str(refused                ? "refused"
             : c->tx->lmtp_stored == 1 ? "delivered"
                                   : "deferred");
    log_end();
  }
  if (refused) {
    smtpd_session_set_reply(s, 550, "5.1.1", "Recipient address rejected");
    return SMTPD_REJECT;
  }
  if (c->tx->lmtp_stored == -2)
    return reply_storage(s);
  if (c->tx->lmtp_stored != 1) {
    smtpd_session_set_reply(s, 451, "4.3.0", "Error: cannot store message");
    return SMTPD_TEMPFAIL;
  }
  reply_with_qid(c, "Ok: delivered as ");
  return SMTPD_ACCEPT;
}

/* The message's fate is known (stored 1, not wanted 0, failed -1, disk
 * full -2): counted and logged once. */
static void lmtp_stored_set(conn *c, int stored, int err) {
  c->tx->lmtp_stored = stored;
  if (stored < 0)
    logmsg("smtpd-maildir: %s: delivery failed: %s", c->tx->qid, strerror(err));
  c->tx->msg.written = 0;
  if (stored == 1)
    c->messages++;
  if (!c->srv->opt.quiet) {
    if (c->addr_stale)
      session_client_text(c);
    log_from_line(c);
  }
}

static smtpd_verdict on_data_complete_rcpt(smtpd_session *s,
                                           const smtpd_message *m,
                                           size_t index, void *ud) {
  conn *c = ud;
  (void)s;
  if (index == 0) {
    int wanted = 0;
    for (size_t i = 0; i < m->nrecipients; i++)
      wanted += !(i < c->tx->nrcpts && c->tx->rcpts[i].refused);
    c->tx->done_size = m->size;
    c->tx->done_nrcpt = m->nrecipients;
    if (!wanted) {
      msg_abort(c);
      lmtp_stored_set(c, 0, 0);
    } else if (c->srv->opt.discard) {
      lmtp_stored_set(c, 1, 0);
    } else if (c->tx->msg.fd >= 0 && commit_async(c) == 0) {
      return SMTPD_DEFER; /* deliveries_done answers recipient 0 */
    } else {
      int e = msg_errno(c, c->tx->msg.fd >= 0 ? ENOMEM : 0);
      lmtp_stored_set(c, e == ENOSPC || e == EDQUOT ? -2 : -1, e);
    }
  }
  return lmtp_answer(c, index);
}

/* ---- the delivery threads' completions -------------------------------- */

/* The loop was woken: answer every session whose commit ended, and let
 * it read on (it may have pipelined the next command). A job whose
 * connection went meanwhile only needs freeing: the file is in new/ (or
 * not), and the client, which never saw a 250, will send it again. */
static void deliveries_done(server *srv) {
  deliver_job *j = deliver_take(srv->dl);
  while (j) {
    deliver_job *next = j->next;
    conn *c = j->owner;
    int rc = j->rc, err = j->err;
    deliver_job_free(srv->dl, j);
    j = next;
    if (c == NULL)
      continue;
    c->job = NULL;
    smtpd_verdict v;
    if (srv->opt.lmtp) {
      lmtp_stored_set(c, rc == 0                        ? 1
                         : err == ENOSPC || err == EDQUOT ? -2
                                                          : -1,
                      err);
      v = lmtp_answer(c, 0);
    } else {
      v = delivery_reply(c, rc, err);
    }
    int r = smtpd_session_resume(c->s, v);
    if (r != 0 && smtpd_is_fatal(r))
      c->end_reason = "session error";
    conn_pump(c);
  }
}

static void on_rset(smtpd_session *s, void *ud) {
  (void)s;
  msg_abort(ud);
  mg_on_rset(((conn *)ud)->mg);
}

static void on_notice(smtpd_session *s, const smtpd_notice *n, void *ud) {
  (void)s;
  if (n->type == SMTPD_NOTICE_MESSAGE_ABORTED) {
    msg_abort(ud); /* too big, bad line endings, ...: drop the tmp file */
    mg_on_rset(((conn *)ud)->mg);
  }
}

static void on_close(smtpd_session *s, smtpd_close_reason r, void *ud) {
  conn *c = ud;
  static const char *const names[] = {
      "?",        "quit",   "rejected", "timeout",  "too many errors",
      "auth failures", "sync", "http", "shutdown", "resource",
      "protocol", "proxy"};
  (void)s;
  if (!c->end_reason || r != SMTPD_CLOSE_REJECTED)
    c->end_reason = (unsigned)r < sizeof names / sizeof *names ? names[r]
                                                                : "?";
  msg_abort(c);
  mg_on_close(c->mg);
}

/* A failed AUTH counts against the client's address across connections
 * (defences.c). Once it failed --auth-fail-limit times within
 * --auth-fail-window, every further AUTH answer to that address waits
 * --auth-fail-delay (on top of the session's own tarpit): with --users
 * the check itself is deferred (users_verify), so a right password waits
 * as long as a wrong one; with other backends the 535 is held back. */
static void on_auth_fail(smtpd_session *s, const smtpd_auth_result *r,
                         void *ud) {
  conn *c = ud;
  server *srv = c->srv;
  uint64_t now = srv->now;
  (void)s;
  (void)r;
  if (c->auth_penalized) { /* users_verify delayed it already */
    c->auth_penalized = 0;
  } else if (def_auth_penalized(srv->defs, c->da, now)) {
    uint64_t until = now + (uint64_t)srv->opt.auth_fail_delay_ms;
    if (until > c->hold_until)
      c->hold_until = until;
    logmsg("smtpd-maildir: AUTH failure client=%s: address over "
           "--auth-fail-limit, reply delayed %ld ms", c->addr,
           srv->opt.auth_fail_delay_ms);
  }
  def_auth_failed(srv->defs, c->da, now);
}

/* STARTTLS is a decision: make this connection's TLS object now
 * (smtpd_tls_session_prepare). If that fails, the client hears "454 4.7.0
 * TLS not available due to local problem" and may go on in plaintext.
 * Otherwise the core queues the 220 and the wrapper switches to TLS by
 * itself once it is written. */
static smtpd_verdict on_starttls(smtpd_session *s, void *ud) {
  conn *c = ud;
  server *srv = c->srv;
  int fault = srv->fault_tls_new != 0;
  (void)s;
  if (fault && srv->fault_tls_new > 0)
    srv->fault_tls_new--;
  /* the wrapper takes over from here: it switches after the 220 */
  if (fault || conn_wrap(c) != 0 || smtpd_tls_session_prepare(c->ts) != 0) {
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
  smtpd_verdict v = SMTPD_REJECT;
  if (!(authzid && *authzid && strcmp(authzid, authcid) != 0))
    for (size_t i = 0; i < t->n; i++) { /* no proxy authorisation here */
      const char *u = t->lines[i], *p = u + strlen(u) + 1;
      if (strcmp(u, authcid) == 0) {
        v = smtpd_consttime_equal(p, strlen(p), pw, pwlen) ? SMTPD_ACCEPT
                                                           : SMTPD_REJECT;
        break;
      }
    }
  /* an address over --auth-fail-limit waits --auth-fail-delay for every
   * answer, right or wrong (Dovecot's auth penalty): the session pauses,
   * the tick resumes it */
  conn *c = smtpd_session_user_data(s);
  uint64_t now = c ? c->srv->now : now_ms();
  if (c && c->srv->opt.auth_fail_delay_ms > 0 &&
      def_auth_penalized(c->srv->defs, c->da, now)) {
    c->auth_verdict = v;
    c->auth_resume_at = now + (uint64_t)c->srv->opt.auth_fail_delay_ms;
    c->auth_penalized = 1;
    logmsg("smtpd-maildir: AUTH client=%s: address over --auth-fail-limit, "
           "answer delayed %ld ms", c->addr, c->srv->opt.auth_fail_delay_ms);
    return SMTPD_DEFER;
  }
  return v;
}
#endif

/* ---- listeners, signals, shutdown ------------------------------------- */

/* listen_unix - "unix:PATH": a stream socket at PATH (an old socket file
 * there is replaced), mode 0666 so a local MTA can connect. */
static int listen_unix(server *srv, const char *spec, int implicit_tls) {
  struct sockaddr_un sun;
  const char *path = spec + 5;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  if (*path == '\0' || strlen(path) >= sizeof sun.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(sun.sun_path, path, strlen(path));
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
    unlink(path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 ||
      chmod(path, 0666) != 0 || listen(fd, 1024) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  logmsg("smtpd-maildir: listening on unix:%s%s", path,
         implicit_tls ? " (implicit TLS)" : "");
  listener *l = &srv->listeners[srv->nlisteners++];
  l->type = OBJ_LISTENER;
  l->fd = fd;
  l->implicit_tls = implicit_tls;
  l->unix_path = path;
  return 0;
}

static int listen_on(server *srv, const char *spec, int implicit_tls) {
  char host[256];
  const char *port;
  if (strncmp(spec, "unix:", 5) == 0)
    return listen_unix(srv, spec, implicit_tls);
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
    /* --workers: every worker gets a socket of its own on this address */
    if (srv->opt.workers > 1)
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
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

/* --workers, in workers 1..N-1: a socket of this worker's own for each
 * TCP listener, on the same address (SO_REUSEPORT: the kernel spreads
 * new connections over the workers' sockets); the inherited one is
 * closed, so it belongs to worker 0 alone. UNIX sockets stay shared. */
static int listeners_own(server *srv) {
  for (int i = 0; i < srv->nlisteners; i++) {
    listener *l = &srv->listeners[i];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int one = 1;
    if (l->unix_path)
      continue;
    if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) != 0)
      return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    if (fd < 0)
      return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 1024) != 0) {
      close(fd);
      return -1;
    }
    close(l->fd);
    l->fd = fd;
  }
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
    if (srv->listeners[i].unix_path)
      unlink(srv->listeners[i].unix_path);
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
"                         IPv6 as [::1]:2525; port 0 picks a free port;\n"
"                         unix:PATH for a UNIX socket)\n"
"  --lmtp                 speak LMTP (RFC 2033): LHLO, one reply per recipient\n"
"  --reject-rcpt ADDR     refuse this recipient (550 5.1.1; with --lmtp at the\n"
"                         end of the message); repeatable\n"
"  --xclient-from NETS    accept XCLIENT from these networks (CIDR, comma-\n"
"                         separated, e.g. 127.0.0.1/32,::1)\n"
"  --proxy-from NETS      connections from these networks must start with a\n"
"                         PROXY protocol v1/v2 header\n"
"  --maildir DIR          deliver into the Maildir DIR (default ./mail)\n"
"  --discard              accept and throw away every message (benchmarks)\n"
"  --hostname NAME        our name in the greeting and Received: lines\n"
"  --max-size BYTES       largest message accepted (default 10240000)\n"
"  --max-recipients N     recipients per message (default 1000)\n"
"  --max-sessions N       concurrent sessions; more get 421 4.3.2 (default\n"
"                         5000, less when the descriptor limit is lower)\n"
"  --max-per-client N     concurrent sessions from one address; more get\n"
"                         421 4.7.0 (default 20; 0: no limit)\n"
"  --timeout SECONDS      client idle timeout (default 300, 180 in DATA)\n"
"  --line-deadline S      one command line, first octet to end (default 60;\n"
"                         0: none)\n"
"  --message-deadline S   one message's data, DATA/BDAT to end (default\n"
"                         1800; 0: none)\n"
"  --tarpit MS            hold error replies after a failed AUTH or too many\n"
"                         errors this long (default 1000; 0: never)\n"
"  --auth-fail-limit N    AUTH failures from one address (default 5; 0: off)\n"
"  --auth-fail-window S   ... counted over this window (default 3600)\n"
"  --auth-fail-delay MS   ... then every further AUTH answer waits this\n"
"                         long (default 5000)\n"
"  --max-buffer BYTES     stop reading a client whose kept input and unsent\n"
"                         replies exceed this (default 131072)\n"
"  --min-free BYTES       storage kept free: MAIL (with SIZE=n: n more) gets\n"
"                         452 4.3.1 below it (default 16777216)\n"
"  --shutdown-timeout S   at SIGINT/SIGTERM, wait this long for open\n"
"                         transactions (default 10)\n"
"  --quiet                no log line per message\n"
"  --cert FILE --key FILE offer STARTTLS with this certificate and key\n"
"  --selfsigned           offer STARTTLS with a fresh self-signed certificate\n"
"  --tls-listen ADDR:PORT listen for implicit TLS (RFC 8314)\n"
"  --users FILE           AUTH PLAIN/LOGIN against user:password lines%s\n"
"  --sasl cyrus[:APP]     AUTH through Cyrus SASL (APP.conf, default smtpd)%s\n"
"  --sasl-config-dir DIR  where APP.conf is (default: libsasl2's path)\n"
"  --auth-plaintext       allow AUTH without TLS (testing only)\n"
"  --milter SPEC          ask this Milter filter (inet:HOST:PORT, unix:PATH;\n"
"                         repeatable, asked in order)\n"
"  --milter-default-action accept|tempfail|reject\n"
"                         when a filter is down or fails (default tempfail)\n"
"  --milter-timeout S     filter connect/command/content timeout (default\n"
"                         30/30/300)\n"
"  --workers N            N processes, each with its own loop and its own\n"
"                         SO_REUSEPORT sockets (default 1)\n"
"  --delivery-threads N   threads that fsync and commit messages off the\n"
"                         event loop, in batches (default 4, at most 16)\n"
"  --help                 this text\n",
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
 * is refused. A comma-separated list of:
 *   starttls-setup[:N]  the TLS object for STARTTLS cannot be made (the
 *                       first N times; always without :N), so the client
 *                       gets 454 and stays in plaintext
 *   enospc              every write of a message body fails with ENOSPC
 *   free-space:BYTES    the Maildir's file system has BYTES free (the
 *                       check at MAIL FROM)
 *   slow-fsync:MS       the delivery threads sleep MS before every fsync
 *                       (file and new/): a slow disk, off the loop */
static int read_faults(server *srv) {
  const char *f = getenv("SMTPD_MAILDIR_FAULT");
  srv->fault_free = -1;
  if (f == NULL || *f == '\0')
    return 0;
  const char *p = f;
  while (*p) {
    size_t len = strcspn(p, ",");
    char item[64];
    if (len == 0 || len >= sizeof item)
      goto bad;
    memcpy(item, p, len);
    item[len] = '\0';
    p += len + (p[len] == ',');
    char *arg = strchr(item, ':');
    if (arg)
      *arg++ = '\0';
    uint64_t n = 0;
    if (arg && (parse_num(arg, &n) != 0))
      goto bad;
    if (strcmp(item, "starttls-setup") == 0) {
      if (arg && (n == 0 || n > 1000000))
        goto bad;
      srv->fault_tls_new = arg ? (long)n : -1;
    } else if (strcmp(item, "enospc") == 0 && !arg) {
      srv->fault_enospc = 1;
    } else if (strcmp(item, "slow-fsync") == 0 && arg && n <= 600000) {
      srv->fault_slow_fsync = (long)n;
    } else if (strcmp(item, "free-space") == 0 && arg && n < (1ull << 62)) {
      srv->fault_free = (long long)n;
    } else {
      goto bad;
    }
  }
  logmsg("smtpd-maildir: test fault injection: %s", f);
  return 0;
bad:
  fprintf(stderr, "smtpd-maildir: unknown SMTPD_MAILDIR_FAULT=%s\n", f);
  return -1;
}

/* The descriptor budget: raise RLIMIT_NOFILE's soft limit to the hard
 * one, then size --max-sessions (unless given) so every session can hold
 * its socket, a message file and one socket per --milter filter, with a
 * reserve for listeners, logs and the like. */
#define MAX_SESSIONS_DEFAULT 5000
#define FD_RESERVE 64
static void size_sessions(options *o) {
  struct rlimit rl;
  long budget = MAX_SESSIONS_DEFAULT;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) {
      rlim_t want = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
      struct rlimit nl = {want, rl.rlim_max};
      if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
        rl.rlim_cur = want;
    }
    if (rl.rlim_cur != RLIM_INFINITY) {
      long per = 2 + o->milter.n;
      long fds = (long)(rl.rlim_cur > 1048576 ? 1048576 : rl.rlim_cur);
      budget = fds > FD_RESERVE + per ? (fds - FD_RESERVE) / per : 1;
    }
  }
  if (o->max_sessions < 0)
    o->max_sessions =
        budget < MAX_SESSIONS_DEFAULT ? budget : MAX_SESSIONS_DEFAULT;
  else if (o->max_sessions == 0 || o->max_sessions > budget)
    logmsg("smtpd-maildir: --max-sessions %ld: the descriptor limit allows "
           "about %ld", o->max_sessions, budget);
  logmsg("smtpd-maildir: max sessions %ld, per client %ld", o->max_sessions,
         o->max_per_client);
}

static int parse_options(options *o, int argc, char **argv) {
  enum { O_LISTEN = 256, O_MAILDIR, O_DISCARD, O_HOSTNAME, O_MAXSIZE,
         O_MAXRCPT, O_MAXSESS, O_TIMEOUT, O_SHUTDOWN, O_QUIET, O_CERT, O_KEY,
         O_TLSLISTEN, O_USERS, O_SASL, O_AUTHPLAIN, O_SELFSIGNED, O_SASLDIR, O_HELP,
         O_LMTP, O_REJECTRCPT, O_XCLIENTFROM, O_PROXYFROM,
         O_MILTER, O_MILTER_ACTION, O_MILTER_TIMEOUT, O_WORKERS,
         O_LINE_DL, O_MSG_DL, O_TARPIT, O_PER_CLIENT, O_AF_LIMIT,
         O_AF_WINDOW, O_AF_DELAY, O_MAXBUF, O_MINFREE, O_DLTHREADS };
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
      {"lmtp", no_argument, NULL, O_LMTP},
      {"reject-rcpt", required_argument, NULL, O_REJECTRCPT},
      {"xclient-from", required_argument, NULL, O_XCLIENTFROM},
      {"proxy-from", required_argument, NULL, O_PROXYFROM},
      {"milter", required_argument, NULL, O_MILTER},
      {"milter-default-action", required_argument, NULL, O_MILTER_ACTION},
      {"milter-timeout", required_argument, NULL, O_MILTER_TIMEOUT},
      {"workers", required_argument, NULL, O_WORKERS},
      {"line-deadline", required_argument, NULL, O_LINE_DL},
      {"message-deadline", required_argument, NULL, O_MSG_DL},
      {"tarpit", required_argument, NULL, O_TARPIT},
      {"max-per-client", required_argument, NULL, O_PER_CLIENT},
      {"auth-fail-limit", required_argument, NULL, O_AF_LIMIT},
      {"auth-fail-window", required_argument, NULL, O_AF_WINDOW},
      {"auth-fail-delay", required_argument, NULL, O_AF_DELAY},
      {"max-buffer", required_argument, NULL, O_MAXBUF},
      {"min-free", required_argument, NULL, O_MINFREE},
      {"delivery-threads", required_argument, NULL, O_DLTHREADS},
      {NULL, 0, NULL, 0}};
  o->maildir = "./mail";
  o->shutdown_s = 10;
  o->line_deadline_s = 60;       /* the library's defaults, said here */
  o->message_deadline_s = 1800;
  o->tarpit_ms = 1000;
  o->max_per_client = 20;
  o->auth_fail_limit = 5;
  o->auth_fail_window_s = 3600;
  o->auth_fail_delay_ms = 5000;
  o->max_buffer = 131072;
  o->max_sessions = -1; /* sized to the descriptor limit (main) */
  o->min_free = 16777216;
  o->delivery_threads = DELIVERY_THREADS_DEFAULT;
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
    case O_LMTP: o->lmtp = 1; break;
    case O_REJECTRCPT:
      if (o->nreject_rcpt == MAX_LISTENERS) return -1;
      o->reject_rcpt[o->nreject_rcpt++] = optarg;
      break;
    case O_XCLIENTFROM: o->xclient_from = optarg; break;
    case O_PROXYFROM: o->proxy_from = optarg; break;
    case O_MILTER: /* MG_OPT_MILTER, _ACTION, _TIMEOUT: the same order */
    case O_MILTER_ACTION:
    case O_MILTER_TIMEOUT:
      if (mg_option(&o->milter, ch - O_MILTER, optarg) != 0) return -1;
      break;
    case O_WORKERS:
      if (parse_num(optarg, &v) || v == 0 || v > WORKERS_MAX) return -1;
      o->workers = (int)v;
      break;
    case O_LINE_DL:
    case O_MSG_DL:
    case O_AF_WINDOW:
      if (parse_num(optarg, &v) || v > 86400) return -1;
      *(ch == O_LINE_DL  ? &o->line_deadline_s
        : ch == O_MSG_DL ? &o->message_deadline_s
                         : &o->auth_fail_window_s) = (long)v;
      break;
    case O_TARPIT:
    case O_AF_DELAY:
      if (parse_num(optarg, &v) || v > 600000) return -1;
      *(ch == O_TARPIT ? &o->tarpit_ms : &o->auth_fail_delay_ms) = (long)v;
      break;
    case O_PER_CLIENT:
    case O_AF_LIMIT:
      if (parse_num(optarg, &v) || v > 1000000 ||
          (ch == O_AF_LIMIT && v > DEF_MAX_AUTH_FAIL_LIMIT))
        return -1;
      *(ch == O_PER_CLIENT ? &o->max_per_client : &o->auth_fail_limit) =
          (long)v;
      break;
    case O_MAXBUF:
      if (parse_num(optarg, &v) || v < 1024 || v > (1u << 30)) return -1;
      o->max_buffer = (long)v;
      break;
    case O_DLTHREADS:
      if (parse_num(optarg, &v) || v == 0 || v > DELIVER_THREADS_MAX)
        return -1;
      o->delivery_threads = (int)v;
      break;
    case O_MINFREE:
      if (parse_num(optarg, &v) || v > (1ull << 62)) return -1;
      o->min_free = (long long)v;
      break;
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
  smtpd_config_set_timeout(srv->cfg, SMTPD_TIMEOUT_LINE,
                           (uint32_t)o->line_deadline_s * 1000u);
  smtpd_config_set_timeout(srv->cfg, SMTPD_TIMEOUT_MESSAGE,
                           (uint32_t)o->message_deadline_s * 1000u);
  smtpd_config_set_timeout(srv->cfg, SMTPD_TIMEOUT_TARPIT,
                           (uint32_t)o->tarpit_ms);
  if (def_table_new(&srv->defs, (unsigned)o->auth_fail_limit,
                    (uint64_t)o->auth_fail_window_s * 1000u) != 0)
    return -1;
  if (o->cert || o->selfsigned) {
    int rc = smtpd_tls_ctx_new(&srv->tls, NULL);
    if (rc == 0)
      rc = o->cert ? smtpd_tls_ctx_set_cert_files(srv->tls, o->cert, o->key)
                   : smtpd_tls_ctx_set_selfsigned(srv->tls, o->hostname);
    if (rc != 0) {
      fprintf(stderr, "smtpd-maildir: cannot set up TLS%s%s%s%s: %s\n",
              o->cert ? " with " : "", o->cert ? o->cert : "",
              o->cert ? " and " : "", o->cert ? o->key : "",
              srv->tls && *smtpd_tls_ctx_error(srv->tls)
                  ? smtpd_tls_ctx_error(srv->tls)
                  : smtpd_strerror(rc));
      return -1;
    }
    smtpd_config_set_option(srv->cfg, SMTPD_OPT_STARTTLS, 1);
  }
  if (o->auth_plaintext)
    smtpd_config_set_option(srv->cfg, SMTPD_OPT_AUTH_PLAINTEXT, 1);
  /* every extension this program can serve (SIZE, PIPELINING, 8BITMIME
   * and ENHANCEDSTATUSCODES are on by default): the message is stored as
   * it came, so binary bodies, UTF-8 addresses and DSN requests are kept;
   * REQUIRETLS is advertised only under TLS */
  smtpd_config_set_option(srv->cfg, SMTPD_OPT_SMTPUTF8, 1);
  smtpd_config_set_option(srv->cfg, SMTPD_OPT_CHUNKING, 1);
  smtpd_config_set_option(srv->cfg, SMTPD_OPT_BINARYMIME, 1);
  smtpd_config_set_option(srv->cfg, SMTPD_OPT_DSN, 1);
  smtpd_config_set_option(srv->cfg, SMTPD_OPT_LIMITS, 1);
  if (srv->tls)
    smtpd_config_set_option(srv->cfg, SMTPD_OPT_REQUIRETLS, 1);
  if (o->lmtp)
    smtpd_config_set_option(srv->cfg, SMTPD_OPT_LMTP, 1);
  if (o->xclient_from) {
    if (parse_nets(o->xclient_from, srv->xclient_nets,
                   &srv->nxclient_nets) != 0) {
      fprintf(stderr, "smtpd-maildir: bad --xclient-from %s\n",
              o->xclient_from);
      return -1;
    }
    smtpd_config_set_option(srv->cfg, SMTPD_OPT_XCLIENT, 1);
  }
  if (o->proxy_from &&
      parse_nets(o->proxy_from, srv->proxy_nets, &srv->nproxy_nets) != 0) {
    fprintf(stderr, "smtpd-maildir: bad --proxy-from %s\n", o->proxy_from);
    return -1;
  }
  if (!o->discard && maildir_open(&srv->md, o->maildir) != 0) {
    fprintf(stderr, "smtpd-maildir: cannot use maildir %s: %s\n", o->maildir,
            strerror(errno));
    return -1;
  }
  if (!o->discard) { /* what died in tmp/ before (tmp_sweep.h) */
    long swept = tmp_sweep(srv->md.tmpfd, TMP_SWEEP_AGE, time(NULL));
    if (swept != 0)
      logmsg("smtpd-maildir: tmp/ sweep: %ld stale file%s removed%s%s",
             swept < 0 ? 0 : swept, swept == 1 ? "" : "s",
             swept < 0 ? ": " : "", swept < 0 ? strerror(errno) : "");
  }
  memset(&srv->cb, 0, sizeof srv->cb);
  srv->cb.version = SMTPD_CALLBACKS_VERSION;
  srv->cb.on_connect = on_connect;
  srv->cb.on_mail = on_mail;
  srv->cb.on_rcpt = on_rcpt;
  srv->cb.on_xclient = on_xclient;
  if (o->lmtp)
    srv->cb.on_data_complete_rcpt = on_data_complete_rcpt;
  srv->cb.on_data = on_data;
  srv->cb.on_body = on_body;
  srv->cb.on_data_complete = on_data_complete;
  srv->cb.on_rset = on_rset;
  srv->cb.on_notice = on_notice;
  srv->cb.on_close = on_close;
  srv->cb.on_starttls = on_starttls;
  srv->cb.on_auth_fail = on_auth_fail;
  if (mg_server_new(&srv->mg, &o->milter, o->discard ? "--discard"
                                          : o->lmtp  ? "--lmtp"
                                                     : NULL) != 0)
    return -1;
  if (srv->mg) { /* --milter: the filters decide first */
    srv->cb.on_helo = on_helo_milter;
    srv->cb.on_data_complete = on_data_complete_milter;
  }
  return 0;
}

#ifdef SMTPD_HAVE_CYRUS
/* libsasl2's own messages (errors and warnings only) go to our log. */
static void cyrus_log(int level, const char *msg, void *ctx) {
  (void)ctx;
  if (level <= 2) /* SASL_LOG_ERR, SASL_LOG_FAIL */
    logmsg("smtpd-maildir: sasl: %s", msg);
}
#endif

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
#ifdef SMTPD_HAVE_CYRUS
    smtpd_sasl_cyrus_options co;
    smtpd_sasl_cyrus_options_init(&co);
    co.appname = app;
    co.config_dir = o->sasl_config_dir;
    co.log = cyrus_log;
    co.allow_plaintext = o->auth_plaintext;
    int rc = smtpd_sasl_cyrus_new(&srv->sasl, NULL, &co);
#else
    int rc = SMTPD_ERR_UNSUPPORTED;
    (void)app;
#endif
    if (rc != 0) {
      fprintf(stderr, "smtpd-maildir: --sasl %s: not available\n", o->sasl);
      return -1;
    }
  }
  if (srv->sasl)
    smtpd_config_set_sasl(srv->cfg, srv->sasl);
  return 0;
}

/* What main set up before the loop, freed after every connection is
 * gone (also in the --workers supervisor, which serves nothing). */
static void server_free(server *srv, user_table *users) {
  for (conn *c = srv->spare_conns, *n; c; c = n) {
    n = c->next;
    free(c);
  }
  for (conn_txn *t = srv->spare_txns, *n; t; t = n) {
    n = t->next_spare;
    free(t->rcpts);
    free(t);
  }
  if (!srv->opt.discard)
    maildir_close(&srv->md);
  smtpd_tls_ctx_del(srv->tls);
  smtpd_sasl_backend_del(srv->sasl); /* whichever adapter made it */
  users_free(users);
  mg_server_del(srv->mg);
  def_table_del(srv->defs);
  smtpd_config_del(srv->cfg);
  free(srv);
}

int main(int argc, char **argv) {
  server *srv = calloc(1, sizeof *srv);
  user_table users = {0};
  if (srv == NULL)
    return 1;
  atexit(log_flush); /* lines still pending when main returns early */
  if (parse_options(&srv->opt, argc, argv) != 0) {
    usage(stderr);
    free(srv);
    return 2;
  }
  if (read_faults(srv) != 0) {
    free(srv);
    return 2;
  }
  size_sessions(&srv->opt);
  if (configure(srv) != 0 || setup_auth(srv, &users) != 0)
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
  if (srv->opt.workers > 1) { /* fork here: each worker its own loop */
    log_flush();
    int w = workers_start(srv->opt.workers);
    if (w < 0) {
      fprintf(stderr, "smtpd-maildir: cannot start workers: %s\n",
              strerror(errno));
      return 1;
    }
    if (w == srv->opt.workers) { /* the supervisor serves nothing */
      for (int i = 0; i < srv->nlisteners; i++)
        close(srv->listeners[i].fd);
      int rc = workers_wait();
      log_flush();
      server_free(srv, &users);
      return rc;
    }
    if (w > 0 && listeners_own(srv) != 0) {
      fprintf(stderr, "smtpd-maildir: worker %d: cannot listen: %s\n", w,
              strerror(errno));
      return 1;
    }
    logmsg("smtpd-maildir: worker %d of %d ready, pid %ld", w,
           srv->opt.workers, (long)getpid());
  }
  srv->poll = poller_new(); /* after the fork: one per worker */
  if (srv->poll == NULL)
    return 1;
  queue_id_init(&srv->qids); /* its pid is part of the ids */
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
  workers_ready(); /* --workers: stop signals were held until here */

  /* the delivery worker thread (after the --workers fork: one each) */
  if (!srv->opt.discard) {
    if (deliver_new(&srv->dl, &srv->md, srv->opt.delivery_threads,
                    (unsigned)srv->fault_slow_fsync) != 0) {
      fprintf(stderr, "smtpd-maildir: cannot start the delivery thread: "
              "%s\n", strerror(errno));
      return 1;
    }
    srv->dlpipe.type = OBJ_DELIVER;
    srv->dlpipe.fd = deliver_fd(srv->dl);
    poller_set(srv->poll, srv->dlpipe.fd, POLLER_IN, &srv->dlpipe);
  }

  poller_event ev[256];
  srv->now = now_ms();
  uint64_t next_tick = srv->now + TICK_MS;
  int stop = 0, dl_ready = 0;
  while (!srv->shutting_down || srv->nconns > 0) {
    /* one clock read per pass: srv->now, read after the wait, serves the
     * pass's timers and the next wait (a pass is short against TICK_MS) */
    uint64_t now = srv->now;
    int wait = next_tick > now ? (int)(next_tick - now) : 0;
    log_flush_pass(); /* the pass's lines, in one write, before blocking */
    int n = poller_wait(srv->poll, ev, 256, wait);
    srv->now = now_ms();
    if (n < 0) {
      fprintf(stderr, "smtpd-maildir: poll: %s\n", strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; i++) {
      void *obj = poller_event_ptr(&ev[i]);
      int type = *(int *)obj;
      if (type == OBJ_CONN) { /* the common case first */
        conn_event(obj, poller_event_bits(&ev[i]));
      } else if (type == OBJ_LISTENER) {
        if (!srv->shutting_down)
          accept_some(srv, obj);
      } else if (type == OBJ_SIGNAL) {
        unsigned char b[16];
        while (read(srv->sigpipe.fd, b, sizeof b) > 0)
          ;
        stop = 1; /* after this batch: it may close connections that
                     still have events in it */
      } else if (type == OBJ_DELIVER) {
        dl_ready = 1; /* after this batch, as stop: answering a session
                         may close a connection with events in it */
      } else if (type == MG_OBJ_MILTER) {
        mg_event(obj, poller_event_bits(&ev[i])); /* its session:
                                                     mg_next below */
      }
    }
    if (dl_ready) { /* commits ended: answer their sessions */
      dl_ready = 0;
      deliveries_done(srv);
    }
    if (stop)
      begin_shutdown(srv);
    now = srv->now;
    if (now >= next_tick) { /* coarse timers: scan every connection */
      next_tick = now + TICK_MS;
      for (conn *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->deadline && c->deadline <= now)
          conn_expire(c);
        else if (c->dl_at && c->dl_at <= now)
          conn_deadline_due(c);
        else if (c->auth_resume_at && c->auth_resume_at <= now) {
          c->auth_resume_at = 0; /* the penalty is served: answer */
          smtpd_session_resume(c->s, c->auth_verdict);
          conn_pump(c);
        } else if (c->hold_until && c->hold_until <= now)
          conn_pump(c); /* the held reply may go now */
      }
      def_sweep(srv->defs, now);
      if (srv->listeners_paused && !srv->shutting_down) {
        for (int k = 0; k < srv->nlisteners; k++)
          poller_set(srv->poll, srv->listeners[k].fd, POLLER_IN,
                     &srv->listeners[k]);
        srv->listeners_paused = 0;
      }
      shutdown_step(srv, now);
      mg_tick(srv->mg, now);
    }
    /* sessions whose filters moved (or were asked): settle the filter
     * sockets, then the session, after every other event of the round */
    if (srv->mg != NULL)
      for (void *o; (o = mg_next(srv->mg)) != NULL;)
        conn_pump(o);
  }
  if (srv->dl) { /* commits still in flight finish before we go */
    deliver_stats st;
    poller_remove(srv->poll, srv->dlpipe.fd);
    deliver_del(srv->dl, &st);
    srv->dl = NULL;
    logmsg("smtpd-maildir: deliveries %" PRIu64 ", file fsyncs %" PRIu64
           ", directory fsyncs %" PRIu64 ", batches %" PRIu64,
           st.jobs, st.file_fsyncs, st.dir_fsyncs, st.batches);
  }
  logmsg("smtpd-maildir: stopped");
  log_flush();
  poller_del(srv->poll);
  close(sp[0]);
  close(sp[1]);
  server_free(srv, &users);
  return 0;
}
