/*
 * uv.c - libsmtpd-uv: an smtpd_tls_session per connection on a libuv loop.
 * Public headers only (smtpd.h, tls_gnutls.h, uv.h). See docs/uv.md.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE 1
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "smtpd/smtpd.h"
#include "smtpd/tls_gnutls.h"
#include "smtpd/uv.h"

#define UV_IN_CAP 16384u /* socket read buffer, per connection */

typedef struct listener {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
  } h;
  smtpd_uv_server *srv;
  smtpd_uv_tls mode;
  int is_unix;
  struct listener *next;
} listener;

struct smtpd_uv_conn {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
  } h;
  uv_timer_t idle, deadline, tarpit;
  uv_write_t wreq;
  smtpd_uv_server *srv;
  smtpd_session *s;
  smtpd_tls_session *ts;
  void *ud;
  struct smtpd_uv_conn *prev, *next;
  char addr[64];
  smtpd_verdict accept_verdict;
  /* input kept: in[off..len) */
  uint8_t in[UV_IN_CAP];
  size_t off, len;
  /* output in flight (copied: the wrapper's pointer is short-lived) */
  uint8_t *wbuf;
  size_t wcap;
  uint32_t idle_ms, last_idle_ms;
  smtpd_timeout idle_kind;
  uint64_t dl_epoch, delay_epoch;
  int handles_open;
  unsigned reading : 1, writing : 1, eof : 1, eof_fed : 1, write_dead : 1,
      fatal : 1, closing : 1, holding : 1, starttls_deferred : 1,
      draining : 1, driving : 1, redrive : 1, in_list : 1, lingering : 1,
      hooked : 1; /* on_accept ran: on_conn_close is owed */
};

struct smtpd_uv_server {
  uv_loop_t *loop;
  const smtpd_config *cfg;
  smtpd_callbacks host_cb; /* the host's */
  smtpd_callbacks cb;      /* the trampolines */
  smtpd_uv_hooks hooks;
  void *ud;
  smtpd_mem mem;
  struct smtpd_tls_ctx *tls;
  uint64_t limits[SMTPD_UV_LIMIT_COUNT_];
  listener *listeners;
  smtpd_uv_conn *conns;
  size_t nconns;
  int open_handles;  /* listeners closing, shutdown timer, dropped sockets */
  size_t closing_conns; /* closed, handles not yet released */
  int uv_err;
  uv_timer_t shutdown_timer;
  int shutdown_timer_init;
  void (*done)(smtpd_uv_server *, void *);
  unsigned shutting_down : 1, expired : 1, done_called : 1;
};

static void conn_drive(smtpd_uv_conn *c);

/* ---- small helpers -------------------------------------------------------- */

static void report(smtpd_uv_server *srv, smtpd_uv_conn *c, const char *what) {
  if (srv->hooks.on_error)
    srv->hooks.on_error(c, what, srv->ud);
}

static int uv_fail(smtpd_uv_server *srv, int err) {
  srv->uv_err = err;
  return SMTPD_ERR_IO;
}

static void shutdown_timer_closed(uv_handle_t *h);

static void maybe_done(smtpd_uv_server *srv) {
  if (!srv->shutting_down || srv->done_called || srv->nconns > 0 ||
      srv->closing_conns > 0 || srv->listeners)
    return;
  if (srv->shutdown_timer_init) { /* closing the timer is the last step */
    if (!uv_is_closing((uv_handle_t *)&srv->shutdown_timer))
      uv_close((uv_handle_t *)&srv->shutdown_timer, shutdown_timer_closed);
    return;
  }
  if (srv->open_handles > 0)
    return;
  srv->done_called = 1;
  if (srv->done)
    srv->done(srv, srv->ud);
}

/* ---- trampolines: the host's callbacks with the connection's ud ------------ */

#define CONN(s) ((smtpd_uv_conn *)smtpd_session_user_data(s))
#define HOST(s) (CONN(s)->srv->host_cb)

static smtpd_verdict t_connect(smtpd_session *s, void *ud) {
  smtpd_uv_conn *c = ud;
  smtpd_uv_server *srv = c->srv;
  if (c->accept_verdict != SMTPD_ACCEPT)
    return c->accept_verdict;
  if (srv->nconns > srv->limits[SMTPD_UV_MAX_SESSIONS]) {
    smtpd_session_set_reply(s, 421, "4.7.0", "Error: too many sessions");
    return SMTPD_DISCONNECT;
  }
  if (srv->limits[SMTPD_UV_MAX_PER_ADDR] > 0) {
    uint64_t n = 0;
    for (smtpd_uv_conn *o = srv->conns; o; o = o->next)
      if (o != c && !o->closing && strcmp(o->addr, c->addr) == 0)
        n++;
    if (n >= srv->limits[SMTPD_UV_MAX_PER_ADDR]) {
      char text[128];
      snprintf(text, sizeof text, "Error: too many connections from %s",
               c->addr);
      smtpd_session_set_reply(s, 421, "4.7.0", text);
      return SMTPD_DISCONNECT;
    }
  }
  if (srv->shutting_down) {
    smtpd_session_set_reply(s, 421, "4.3.2", "Service shutting down");
    return SMTPD_DISCONNECT;
  }
  return srv->host_cb.on_connect ? srv->host_cb.on_connect(s, c->ud)
                                 : SMTPD_ACCEPT;
}

static smtpd_verdict t_starttls(smtpd_session *s, void *ud) {
  smtpd_uv_conn *c = ud;
  smtpd_verdict v = c->srv->host_cb.on_starttls
                        ? c->srv->host_cb.on_starttls(s, c->ud)
                        : SMTPD_ACCEPT;
  if (v == SMTPD_DEFER) {
    c->starttls_deferred = 1;
    return v;
  }
  if (v == SMTPD_ACCEPT && smtpd_tls_session_prepare(c->ts) != 0)
    return SMTPD_TEMPFAIL;
  return v;
}

#define T_DECIDE(name, params, args)                                        \
  static smtpd_verdict t_##name params {                                    \
    smtpd_uv_conn *c = ud;                                                  \
    return c->srv->host_cb.on_##name args;                                  \
  }
#define T_NOTIFY(name, params, args)                                        \
  static void t_##name params {                                             \
    smtpd_uv_conn *c = ud;                                                  \
    c->srv->host_cb.on_##name args;                                         \
  }

T_DECIDE(helo, (smtpd_session * s, const smtpd_helo *h, void *ud),
         (s, h, c->ud))
T_DECIDE(mail, (smtpd_session * s, const smtpd_mail *m, void *ud),
         (s, m, c->ud))
T_DECIDE(rcpt, (smtpd_session * s, const smtpd_rcpt *r, void *ud),
         (s, r, c->ud))
T_DECIDE(data, (smtpd_session * s, void *ud), (s, c->ud))
T_DECIDE(data_complete,
         (smtpd_session * s, const smtpd_message *m, void *ud),
         (s, m, c->ud))
T_DECIDE(vrfy, (smtpd_session * s, const char *a, void *ud), (s, a, c->ud))
T_DECIDE(body,
         (smtpd_session * s, const uint8_t *p, size_t n, void *ud),
         (s, p, n, c->ud))
T_DECIDE(command, (smtpd_session * s, const smtpd_command *x, void *ud),
         (s, x, c->ud))
T_DECIDE(data_complete_rcpt,
         (smtpd_session * s, const smtpd_message *m, size_t i, void *ud),
         (s, m, i, c->ud))
T_DECIDE(xclient, (smtpd_session * s, const smtpd_xclient *x, void *ud),
         (s, x, c->ud))
T_NOTIFY(rset, (smtpd_session * s, void *ud), (s, c->ud))
T_NOTIFY(quit, (smtpd_session * s, void *ud), (s, c->ud))
T_NOTIFY(auth_ok,
         (smtpd_session * s, const smtpd_auth_result *r, void *ud),
         (s, r, c->ud))
T_NOTIFY(auth_fail,
         (smtpd_session * s, const smtpd_auth_result *r, void *ud),
         (s, r, c->ud))
T_NOTIFY(tls_required, (smtpd_session * s, const char *x, void *ud),
         (s, x, c->ud))
T_NOTIFY(notice, (smtpd_session * s, const smtpd_notice *n, void *ud),
         (s, n, c->ud))
T_NOTIFY(close, (smtpd_session * s, smtpd_close_reason r, void *ud),
         (s, r, c->ud))

static void make_trampolines(smtpd_uv_server *srv) {
  const smtpd_callbacks *h = &srv->host_cb;
  smtpd_callbacks *t = &srv->cb;
  memset(t, 0, sizeof *t);
  t->version = SMTPD_CALLBACKS_VERSION;
  t->on_connect = t_connect;
  t->on_starttls = t_starttls;
#define SET(name)                                                           \
  if (h->on_##name)                                                         \
    t->on_##name = t_##name;
  SET(helo) SET(mail) SET(rcpt) SET(data) SET(data_complete) SET(vrfy)
  SET(body) SET(rset) SET(quit) SET(auth_ok) SET(auth_fail)
  SET(tls_required) SET(notice) SET(close) SET(command)
  SET(data_complete_rcpt) SET(xclient)
#undef SET
}

/* ---- server ---------------------------------------------------------------- */

int smtpd_uv_server_new(smtpd_uv_server **out, uv_loop_t *loop,
                        const smtpd_config *cfg, const smtpd_callbacks *cb,
                        const smtpd_uv_hooks *hooks, void *server_ud,
                        const smtpd_mem *mem) {
  smtpd_uv_server *srv;
  if (!out || !loop || !cfg)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (cb && cb->version > SMTPD_CALLBACKS_VERSION)
    return SMTPD_ERR_UNSUPPORTED;
  if (hooks && hooks->version > SMTPD_UV_HOOKS_VERSION)
    return SMTPD_ERR_UNSUPPORTED;
  if (!mem)
    mem = smtpd_mem_default();
  srv = mem->calloc(1, sizeof *srv, mem->ctx);
  if (!srv)
    return SMTPD_ERR_NOMEM;
  srv->mem = *mem;
  srv->loop = loop;
  srv->cfg = cfg;
  srv->ud = server_ud;
  if (cb) {
    /* copy by version: version 1 tables lack the version 2 members */
    size_t n = cb->version >= 2 ? sizeof *cb
                                : offsetof(smtpd_callbacks, on_command);
    memcpy(&srv->host_cb, cb, n);
  }
  if (hooks)
    srv->hooks = *hooks;
  srv->limits[SMTPD_UV_MAX_SESSIONS] = 1000;
  srv->limits[SMTPD_UV_MAX_PER_ADDR] = 0;
  srv->limits[SMTPD_UV_BACKLOG] = 128;
  make_trampolines(srv);
  *out = srv;
  return 0;
}

int smtpd_uv_server_set_tls(smtpd_uv_server *srv, struct smtpd_tls_ctx *ctx) {
  if (!srv)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (srv->listeners)
    return SMTPD_ERR_INVALID_STATE;
  srv->tls = ctx;
  return 0;
}

int smtpd_uv_server_set_limit(smtpd_uv_server *srv, smtpd_uv_limit which,
                              uint64_t value) {
  if (!srv || (unsigned)which >= SMTPD_UV_LIMIT_COUNT_)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (which == SMTPD_UV_BACKLOG && (value == 0 || value > 65535))
    return SMTPD_ERR_INVALID_ARGUMENT;
  srv->limits[which] = value;
  return 0;
}

size_t smtpd_uv_server_sessions(const smtpd_uv_server *srv) {
  return srv ? srv->nconns : 0;
}
uv_loop_t *smtpd_uv_server_loop(const smtpd_uv_server *srv) {
  return srv ? srv->loop : NULL;
}
void *smtpd_uv_server_data(const smtpd_uv_server *srv) {
  return srv ? srv->ud : NULL;
}
int smtpd_uv_last_uv_error(const smtpd_uv_server *srv) {
  return srv ? srv->uv_err : 0;
}

/* ---- connections: closing ------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h) {
  smtpd_uv_conn *c = h->data;
  smtpd_uv_server *srv = c->srv;
  if (--c->handles_open > 0)
    return;
  if (c->hooked && srv->hooks.on_conn_close)
    srv->hooks.on_conn_close(c, c->ud, srv->ud);
  smtpd_tls_session_del(c->ts);
  smtpd_session_del(c->s);
  if (c->wbuf)
    srv->mem.free(c->wbuf, srv->mem.ctx);
  srv->mem.free(c, srv->mem.ctx);
  srv->closing_conns--;
  maybe_done(srv);
}

static void conn_close(smtpd_uv_conn *c) {
  smtpd_uv_server *srv = c->srv;
  if (c->closing)
    return;
  c->closing = 1;
  srv->closing_conns++;
  if (c->in_list) {
    if (c->prev)
      c->prev->next = c->next;
    else
      srv->conns = c->next;
    if (c->next)
      c->next->prev = c->prev;
    c->in_list = 0;
    srv->nconns--;
  }
  uv_close(&c->h.handle, conn_handle_closed);
  uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
  uv_close((uv_handle_t *)&c->deadline, conn_handle_closed);
  uv_close((uv_handle_t *)&c->tarpit, conn_handle_closed);
}

/* ---- connections: I/O -------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  smtpd_uv_conn *c = h->data;
  (void)hint;
  if (c->off < c->len) { /* still keeping input: read nothing */
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  c->off = c->len = 0;
  buf->base = (char *)c->in;
  buf->len = sizeof c->in;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  smtpd_uv_conn *c = st->data;
  (void)buf;
  if (n > 0) {
    c->len = (size_t)n;
  } else if (n == UV_ENOBUFS) {
    uv_read_stop(st);
    c->reading = 0;
  } else if (n < 0) {
    if (n != UV_EOF) {
      report(c->srv, c, uv_strerror((int)n));
      c->write_dead = 1;
    }
    c->eof = 1;
    uv_read_stop(st);
    c->reading = 0;
  }
  conn_drive(c);
}

static void on_written(uv_write_t *req, int status) {
  smtpd_uv_conn *c = req->data;
  c->writing = 0;
  if (c->closing)
    return;
  if (status < 0) {
    if (status != UV_ECANCELED)
      report(c->srv, c, uv_strerror(status));
    c->write_dead = 1;
  }
  conn_drive(c);
}

/* One write step: what the wrapper has, tried at once, the rest copied and
 * written asynchronously. Returns 1 when something moved. */
static int conn_write(smtpd_uv_conn *c) {
  const uint8_t *p;
  size_t n;
  uv_buf_t b;
  int r;
  if (c->writing || c->holding)
    return 0;
  n = smtpd_tls_session_output(c->ts, &p);
  if (n == 0)
    return 0;
  if (c->write_dead) { /* nobody to write to: discard */
    smtpd_tls_session_consume(c->ts, n);
    return 1;
  }
  b = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
  r = uv_try_write(&c->h.stream, &b, 1);
  if (r == (int)n) {
    smtpd_tls_session_consume(c->ts, n);
    return 1;
  }
  if (r < 0 && r != UV_EAGAIN) {
    report(c->srv, c, uv_strerror(r));
    c->write_dead = 1;
    smtpd_tls_session_consume(c->ts, n);
    return 1;
  }
  if (r < 0)
    r = 0;
  /* copy the rest; consume it: the stream now owns its delivery. The
   * session's output cap bounds what waits behind it. */
  if (c->wcap < n - (size_t)r) {
    uint8_t *nb = c->srv->mem.realloc(c->wbuf, n - (size_t)r, c->srv->mem.ctx);
    if (!nb) {
      if (r > 0)
        smtpd_tls_session_consume(c->ts, (size_t)r);
      c->fatal = 1;
      return r > 0;
    }
    c->wbuf = nb;
    c->wcap = n - (size_t)r;
  }
  memcpy(c->wbuf, p + r, n - (size_t)r);
  b = uv_buf_init((char *)c->wbuf, (unsigned)(n - (size_t)r));
  smtpd_tls_session_consume(c->ts, n);
  c->wreq.data = c;
  r = uv_write(&c->wreq, &c->h.stream, &b, 1, on_written);
  if (r < 0) {
    report(c->srv, c, uv_strerror(r));
    c->write_dead = 1;
  } else {
    c->writing = 1;
  }
  return 1;
}

static void on_idle_timer(uv_timer_t *t) {
  smtpd_uv_conn *c = t->data;
  if (c->lingering) { /* the client did not read its last reply */
    report(c->srv, c, "client did not read");
    conn_close(c);
    return;
  }
  if (smtpd_session_is_closing(c->s))
    c->write_dead = 1; /* the wrapper gives up: so does the pending write */
  smtpd_tls_session_timeout_expired(c->ts);
  conn_drive(c);
}

static void on_deadline_timer(uv_timer_t *t) {
  smtpd_uv_conn *c = t->data;
  uint64_t epoch = 0;
  if (smtpd_session_deadline(c->s, NULL, &epoch) > 0 && epoch == c->dl_epoch)
    smtpd_tls_session_timeout_expired(c->ts);
  conn_drive(c);
}

static void on_tarpit_timer(uv_timer_t *t) {
  smtpd_uv_conn *c = t->data;
  c->holding = 0;
  conn_drive(c);
}

static void conn_timers(smtpd_uv_conn *c, int took_input) {
  smtpd_timeout kind = SMTPD_TIMEOUT_NONE;
  uint32_t ms = smtpd_tls_session_timeout(c->ts, &kind);
  uint64_t epoch = 0;
  uint32_t d;
  if (took_input || ms != c->idle_ms || kind != c->idle_kind ||
      (ms > 0 && !uv_is_active((uv_handle_t *)&c->idle))) {
    c->idle_ms = ms;
    c->idle_kind = kind;
    if (ms > 0)
      c->last_idle_ms = ms;
    if (ms > 0)
      uv_timer_start(&c->idle, on_idle_timer, ms, 0);
    else
      uv_timer_stop(&c->idle);
  }
  d = smtpd_session_deadline(c->s, NULL, &epoch);
  if (d == 0) {
    uv_timer_stop(&c->deadline);
  } else if (epoch != c->dl_epoch || !uv_is_active((uv_handle_t *)&c->deadline)) {
    if (epoch != c->dl_epoch) {
      c->dl_epoch = epoch;
      uv_timer_start(&c->deadline, on_deadline_timer, d, 0);
    }
  }
}

/* graceful shutdown: is this connection free to be told 421 now? */
static void conn_shutdown_check(smtpd_uv_conn *c) {
  if (!c->draining || smtpd_session_is_paused(c->s) ||
      smtpd_session_is_closing(c->s))
    return;
  if (c->srv->expired || !smtpd_session_sender(c->s))
    smtpd_session_close(c->s, "4.3.2", NULL);
}

static void conn_drive(smtpd_uv_conn *c) {
  int took = 0;
  if (c->closing)
    return;
  if (c->lingering) {
    if (!c->writing || c->write_dead)
      conn_close(c);
    return;
  }
  if (c->driving) { /* re-entered from a hook: run again afterwards */
    c->redrive = 1;
    return;
  }
  c->driving = 1;
  do {
    int moved;
    c->redrive = 0;
    do {
      moved = 0;
      conn_shutdown_check(c);
      if (c->off < c->len && !c->fatal &&
          smtpd_tls_session_want_read(c->ts)) {
        ptrdiff_t r =
            smtpd_tls_session_feed(c->ts, c->in + c->off, c->len - c->off);
        if (r < 0) {
          report(c->srv, c, smtpd_strerror((int)r));
          c->fatal = 1;
          c->off = c->len = 0;
        } else if (r > 0) {
          c->off += (size_t)r;
          if (c->off == c->len)
            c->off = c->len = 0;
          took = moved = 1;
        }
      }
      /* tarpitting: hold back the output queued with a new delay */
      if (!c->holding) {
        uint64_t epoch = 0;
        uint32_t delay = smtpd_session_reply_delay(c->s, &epoch);
        if (epoch != c->delay_epoch) {
          c->delay_epoch = epoch;
          if (delay > 0) {
            c->holding = 1;
            uv_timer_start(&c->tarpit, on_tarpit_timer, delay, 0);
          }
        }
      }
      if (conn_write(c))
        moved = 1;
      if (c->eof && !c->eof_fed && (c->off == c->len || c->fatal)) {
        c->eof_fed = 1;
        smtpd_tls_session_eof(c->ts);
        moved = 1;
      }
    } while (moved);
  } while (c->redrive);
  c->driving = 0;

  if (smtpd_tls_session_is_done(c->ts) ||
      (c->fatal && !smtpd_session_is_paused(c->s) &&
       smtpd_tls_session_output(c->ts, &(const uint8_t *){NULL}) == 0)) {
    if (c->writing && !c->write_dead) {
      /* the last bytes are still on their way: linger until they are
       * written (on_written drives again) or the client does not read
       * them within the idle timeout */
      if (!c->lingering) {
        c->lingering = 1;
        if (c->reading) {
          uv_read_stop(&c->h.stream);
          c->reading = 0;
        }
        uv_timer_stop(&c->deadline);
        uv_timer_start(&c->idle, on_idle_timer,
                       c->last_idle_ms ? c->last_idle_ms : 300000, 0);
      }
      return;
    }
    {
      const char *e = smtpd_tls_session_error(c->ts);
      if (e && *e)
        report(c->srv, c, e);
    }
    conn_close(c);
    return;
  }
  /* read only when nothing is kept and the session wants input */
  if (!c->eof && c->off == c->len && !c->fatal &&
      smtpd_tls_session_want_read(c->ts)) {
    if (!c->reading && uv_read_start(&c->h.stream, on_alloc, on_read) == 0)
      c->reading = 1;
  } else if (c->reading) {
    uv_read_stop(&c->h.stream);
    c->reading = 0;
  }
  conn_timers(c, took);
}

/* ---- accepting ----------------------------------------------------------- */

static void peer_name(smtpd_uv_conn *c, unsigned *port) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  *port = 0;
  snprintf(c->addr, sizeof c->addr, "unknown");
  if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, c->addr, sizeof c->addr);
    *port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    *port = ntohs(a->sin6_port);
    if (memcmp(a->sin6_addr.s6_addr, mapped, 12) == 0) {
      const uint8_t *b = a->sin6_addr.s6_addr + 12;
      snprintf(c->addr, sizeof c->addr, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
    } else {
      uv_ip6_name(a, c->addr, sizeof c->addr);
    }
  }
}

static void drop_closed(uv_handle_t *h) {
  smtpd_uv_server *srv = h->data;
  srv->mem.free(h, srv->mem.ctx);
  srv->open_handles--;
  maybe_done(srv);
}

static void on_connection(uv_stream_t *server, int status) {
  listener *l = server->data;
  smtpd_uv_server *srv = l->srv;
  smtpd_uv_conn *c;
  unsigned port = 0;
  int r;
  if (status < 0) {
    report(srv, NULL, uv_strerror(status));
    return;
  }
  if (srv->nconns >= srv->limits[SMTPD_UV_MAX_SESSIONS] +
                         srv->limits[SMTPD_UV_MAX_SESSIONS] / 16 + 1) {
    /* far over the limit: accept and close unanswered */
    union { uv_tcp_t tcp; uv_pipe_t pipe; } *t =
        srv->mem.malloc(sizeof *t, srv->mem.ctx);
    if (t && (l->is_unix ? uv_pipe_init(srv->loop, &t->pipe, 0)
                         : uv_tcp_init(srv->loop, &t->tcp)) == 0) {
      ((uv_handle_t *)t)->data = srv;
      srv->open_handles++;
      uv_accept(server, (uv_stream_t *)t);
      uv_close((uv_handle_t *)t, drop_closed);
    } else if (t) {
      srv->mem.free(t, srv->mem.ctx);
    }
    return;
  }
  c = srv->mem.calloc(1, sizeof *c, srv->mem.ctx);
  if (!c) {
    report(srv, NULL, "out of memory");
    return;
  }
  c->srv = srv;
  r = l->is_unix ? uv_pipe_init(srv->loop, &c->h.pipe, 0)
                 : uv_tcp_init(srv->loop, &c->h.tcp);
  if (r != 0) {
    srv->mem.free(c, srv->mem.ctx);
    return;
  }
  c->h.handle.data = c;
  uv_timer_init(srv->loop, &c->idle);
  uv_timer_init(srv->loop, &c->deadline);
  uv_timer_init(srv->loop, &c->tarpit);
  c->idle.data = c->deadline.data = c->tarpit.data = c;
  c->handles_open = 4;
  /* in the list from now on: conn_close unlinks it */
  c->in_list = 1;
  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  srv->nconns++;
  c->ud = srv->ud;
  if (uv_accept(server, &c->h.stream) != 0) {
    conn_close(c);
    return;
  }
  if (l->is_unix) {
    snprintf(c->addr, sizeof c->addr, "unix");
  } else {
    peer_name(c, &port);
    uv_tcp_nodelay(&c->h.tcp, 1);
  }
  if (smtpd_session_new(&c->s, srv->cfg, &srv->cb, c) != 0) {
    report(srv, c, "cannot make a session");
    conn_close(c);
    return;
  }
  if (!l->is_unix) {
    smtpd_session_set_client(c->s, c->addr, NULL);
    smtpd_session_set_client_port(c->s, port);
  }
  r = smtpd_tls_session_new(&c->ts, c->s, srv->tls,
                            l->mode == SMTPD_UV_IMPLICIT ? SMTPD_TLS_IMPLICIT
                                                         : SMTPD_TLS_STARTTLS);
  if (r != 0) {
    report(srv, c, smtpd_strerror(r));
    conn_close(c);
    return;
  }
  c->accept_verdict = SMTPD_ACCEPT;
  c->hooked = 1;
  if (srv->hooks.on_accept) {
    smtpd_verdict v = srv->hooks.on_accept(c, &c->ud, srv->ud);
    if (v == SMTPD_REJECT || v == SMTPD_TEMPFAIL || v == SMTPD_DISCONNECT)
      c->accept_verdict = v;
  }
  if (srv->shutting_down)
    c->draining = 1;
  r = smtpd_session_start(c->s);
  if (r < 0 && smtpd_is_fatal(r))
    c->fatal = 1;
  conn_drive(c);
}

/* ---- listening ------------------------------------------------------------ */

static int add_listener(smtpd_uv_server *srv, listener *l) {
  int r = uv_listen(&l->h.stream, (int)srv->limits[SMTPD_UV_BACKLOG],
                    on_connection);
  if (r != 0)
    return r;
  l->next = srv->listeners;
  srv->listeners = l;
  return 0;
}

static void listener_free_closed(uv_handle_t *h) {
  listener *l = h->data;
  smtpd_uv_server *srv = l->srv;
  srv->open_handles--;
  srv->mem.free(l, srv->mem.ctx);
  maybe_done(srv);
}

int smtpd_uv_listen_tcp(smtpd_uv_server *srv, const char *addr, unsigned port,
                        smtpd_uv_tls mode, unsigned *bound_port) {
  struct sockaddr_storage ss;
  listener *l;
  int r;
  if (!srv || port > 65535 || (mode != SMTPD_UV_PLAIN && mode != SMTPD_UV_IMPLICIT))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (mode == SMTPD_UV_IMPLICIT && !srv->tls)
    return SMTPD_ERR_INVALID_STATE;
  if (srv->shutting_down)
    return SMTPD_ERR_INVALID_STATE;
  if (!addr)
    addr = "::";
  memset(&ss, 0, sizeof ss);
  if (uv_ip4_addr(addr, (int)port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(addr, (int)port, (struct sockaddr_in6 *)&ss) != 0)
    return SMTPD_ERR_INVALID_ARGUMENT;
  l = srv->mem.calloc(1, sizeof *l, srv->mem.ctx);
  if (!l)
    return SMTPD_ERR_NOMEM;
  l->srv = srv;
  l->mode = mode;
  r = uv_tcp_init(srv->loop, &l->h.tcp);
  if (r != 0) {
    srv->mem.free(l, srv->mem.ctx);
    return uv_fail(srv, r);
  }
  l->h.handle.data = l;
  r = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0);
  if (r == 0)
    r = add_listener(srv, l);
  if (r != 0) {
    srv->open_handles++;
    uv_close(&l->h.handle, listener_free_closed);
    return uv_fail(srv, r);
  }
  if (bound_port) {
    struct sockaddr_storage b;
    int blen = sizeof b;
    *bound_port = 0;
    if (uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&b, &blen) == 0)
      *bound_port = ntohs(b.ss_family == AF_INET
                              ? ((struct sockaddr_in *)&b)->sin_port
                              : ((struct sockaddr_in6 *)&b)->sin6_port);
  }
  return 0;
}

int smtpd_uv_listen_unix(smtpd_uv_server *srv, const char *path,
                         smtpd_uv_tls mode) {
  listener *l;
  uv_fs_t req;
  int r;
  if (!srv || !path || (mode != SMTPD_UV_PLAIN && mode != SMTPD_UV_IMPLICIT))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (mode == SMTPD_UV_IMPLICIT && !srv->tls)
    return SMTPD_ERR_INVALID_STATE;
  if (srv->shutting_down)
    return SMTPD_ERR_INVALID_STATE;
  /* a socket left behind by an earlier run */
  if (uv_fs_lstat(NULL, &req, path, NULL) == 0 &&
      (req.statbuf.st_mode & S_IFMT) == S_IFSOCK) {
    uv_fs_req_cleanup(&req);
    uv_fs_unlink(NULL, &req, path, NULL);
  }
  uv_fs_req_cleanup(&req);
  l = srv->mem.calloc(1, sizeof *l, srv->mem.ctx);
  if (!l)
    return SMTPD_ERR_NOMEM;
  l->srv = srv;
  l->mode = mode;
  l->is_unix = 1;
  r = uv_pipe_init(srv->loop, &l->h.pipe, 0);
  if (r != 0) {
    srv->mem.free(l, srv->mem.ctx);
    return uv_fail(srv, r);
  }
  l->h.handle.data = l;
  r = uv_pipe_bind(&l->h.pipe, path);
  if (r == 0)
    r = add_listener(srv, l);
  if (r != 0) {
    srv->open_handles++;
    uv_close(&l->h.handle, listener_free_closed);
    return uv_fail(srv, r);
  }
  return 0;
}

/* ---- shutdown ------------------------------------------------------------- */

static void shutdown_timer_closed(uv_handle_t *h) {
  smtpd_uv_server *srv = h->data;
  srv->shutdown_timer_init = 0;
  srv->open_handles--;
  maybe_done(srv);
}

static void drain_all(smtpd_uv_server *srv) {
  smtpd_uv_conn *c = srv->conns, *next;
  for (; c; c = next) {
    next = c->next; /* conn_drive may unlink c */
    c->draining = 1;
    conn_drive(c);
  }
  maybe_done(srv);
}

static void on_shutdown_deadline(uv_timer_t *t) {
  smtpd_uv_server *srv = t->data;
  srv->expired = 1;
  drain_all(srv);
}

int smtpd_uv_server_shutdown(smtpd_uv_server *srv, uint32_t deadline_ms,
                             void (*done)(smtpd_uv_server *, void *)) {
  listener *l;
  if (!srv)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (done)
    srv->done = done;
  if (!srv->shutting_down) {
    srv->shutting_down = 1;
    while ((l = srv->listeners) != NULL) {
      srv->listeners = l->next;
      srv->open_handles++;
      uv_close(&l->h.handle, listener_free_closed);
    }
    if (uv_timer_init(srv->loop, &srv->shutdown_timer) == 0) {
      srv->shutdown_timer.data = srv;
      srv->shutdown_timer_init = 1;
      srv->open_handles++;
    }
  }
  if (deadline_ms == 0) {
    srv->expired = 1;
  } else if (srv->shutdown_timer_init &&
             !uv_is_closing((uv_handle_t *)&srv->shutdown_timer)) {
    uint64_t left = uv_is_active((uv_handle_t *)&srv->shutdown_timer)
                        ? uv_timer_get_due_in(&srv->shutdown_timer)
                        : UINT64_MAX;
    if (deadline_ms < left)
      uv_timer_start(&srv->shutdown_timer, on_shutdown_deadline, deadline_ms,
                     0);
  }
  drain_all(srv);
  return 0;
}

int smtpd_uv_server_del(smtpd_uv_server *srv) {
  if (!srv)
    return 0;
  if (srv->nconns > 0 || srv->closing_conns > 0 || srv->listeners ||
      srv->open_handles > 0)
    return SMTPD_ERR_INVALID_STATE;
  srv->mem.free(srv, srv->mem.ctx);
  return 0;
}

/* ---- connections: host calls --------------------------------------------- */

smtpd_uv_conn *smtpd_uv_conn_of(const smtpd_session *s) {
  return s ? smtpd_session_user_data(s) : NULL;
}
smtpd_session *smtpd_uv_conn_session(const smtpd_uv_conn *c) {
  return c ? c->s : NULL;
}
struct smtpd_tls_session *smtpd_uv_conn_tls_session(const smtpd_uv_conn *c) {
  return c ? c->ts : NULL;
}
void *smtpd_uv_conn_data(const smtpd_uv_conn *c) { return c ? c->ud : NULL; }
void smtpd_uv_conn_set_data(smtpd_uv_conn *c, void *conn_ud) {
  if (c)
    c->ud = conn_ud;
}
smtpd_uv_server *smtpd_uv_conn_server(const smtpd_uv_conn *c) {
  return c ? c->srv : NULL;
}

int smtpd_uv_conn_resume(smtpd_uv_conn *c, smtpd_verdict verdict) {
  int r;
  if (!c || c->closing)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (c->starttls_deferred) {
    c->starttls_deferred = 0;
    if (verdict == SMTPD_ACCEPT && smtpd_tls_session_prepare(c->ts) != 0)
      verdict = SMTPD_TEMPFAIL;
  }
  r = smtpd_session_resume(c->s, verdict);
  if (r < 0 && smtpd_is_fatal(r))
    c->fatal = 1;
  conn_drive(c);
  return r;
}

int smtpd_uv_conn_close(smtpd_uv_conn *c, const char *enh, const char *text) {
  int r;
  if (!c || c->closing)
    return SMTPD_ERR_INVALID_ARGUMENT;
  r = smtpd_session_close(c->s, enh, text);
  conn_drive(c);
  return r;
}

void smtpd_uv_conn_drive(smtpd_uv_conn *c) {
  if (c)
    conn_drive(c);
}
