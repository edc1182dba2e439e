/* uv-testd.c - the libsmtpd-uv test server driven by tests/uv/test_uv.py.
 *
 * Options: --defer-rcpt MS (every RCPT is deferred and resumed from a uv
 * timer after MS; "deny@..." is then refused), --max-sessions N,
 * --max-per-addr N, --timeout MS (command and data timeouts),
 * --line-deadline MS (SMTPD_TIMEOUT_LINE),
 * --shutdown-ms MS (SIGTERM: graceful shutdown with that deadline),
 * --unix PATH, --implicit (also an implicit-TLS listener), --ipv6 (listen
 * on ::1 as well), --async-body FILE (each body chunk is appended to FILE
 * with uv_fs_write, the session deferred until it is written), --bench (messages discarded unread, nothing printed per
 * message: bench/uv-callgrind.sh). Prints "port N", "implicit N", "ipv6 N" and "ready" on
 * stdout, then one line per event: "delivered SIZE FROM RCPTS",
 * "closed ADDR", "shutdown done". Messages are counted, not stored (the
 * body's octets are checksummed: "sum" in the delivered line). */
#define _DEFAULT_SOURCE 1
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <smtpd/tls_gnutls.h>
#include <smtpd/uv.h>

typedef struct conn_data {
  uint64_t sum;
  uv_timer_t timer; /* deferred RCPT */
  int timer_init;
  smtpd_verdict pending;
  smtpd_uv_conn *c;
  uv_fs_t fsreq; /* --async-body: the chunk being written */
  uint8_t *copy;
  size_t copylen;
} conn_data;

static unsigned defer_ms;
static int bench; /* --bench: no checksum, no line per message */
static uv_file body_fd = -1; /* --async-body FILE: bodies appended there */
static smtpd_uv_server *srv;
static uint32_t shutdown_ms = 5000;

static void resume_cb(uv_timer_t *t) {
  conn_data *d = t->data;
  smtpd_uv_conn_resume(d->c, d->pending); /* re-drives the connection */
}

static smtpd_verdict on_rcpt(smtpd_session *s, const smtpd_rcpt *r, void *ud) {
  conn_data *d = ud;
  int deny = strncmp(r->address, "deny@", 5) == 0;
  (void)s;
  if (defer_ms == 0)
    return deny ? SMTPD_REJECT : SMTPD_ACCEPT;
  d->pending = deny ? SMTPD_REJECT : SMTPD_ACCEPT;
  uv_timer_start(&d->timer, resume_cb, defer_ms, 0);
  return SMTPD_DEFER;
}

static smtpd_verdict on_data(smtpd_session *s, void *ud) {
  (void)s;
  ((conn_data *)ud)->sum = 0;
  return SMTPD_ACCEPT;
}

/* --async-body: the chunk was written by a uv_fs_write; resume reading */
static void body_written(uv_fs_t *req) {
  conn_data *d = req->data;
  int ok = req->result == (ssize_t)d->copylen;
  uv_fs_req_cleanup(req);
  free(d->copy);
  d->copy = NULL;
  smtpd_uv_conn_resume(d->c, ok ? SMTPD_ACCEPT : SMTPD_TEMPFAIL);
}

static smtpd_verdict on_body(smtpd_session *s, const uint8_t *p, size_t n,
                             void *ud) {
  conn_data *d = ud;
  uv_buf_t b;
  (void)s;
  for (size_t i = 0; i < n; i++)
    d->sum = d->sum * 31 + p[i];
  if (body_fd < 0)
    return SMTPD_ACCEPT;
  /* the bytes are valid during the call only: copy, write, defer */
  if (!(d->copy = malloc(n ? n : 1)))
    return SMTPD_TEMPFAIL;
  memcpy(d->copy, p, n);
  d->copylen = n;
  d->fsreq.data = d;
  b = uv_buf_init((char *)d->copy, (unsigned)n);
  if (uv_fs_write(smtpd_uv_server_loop(srv), &d->fsreq, body_fd, &b, 1, -1,
                  body_written) != 0) {
    free(d->copy);
    d->copy = NULL;
    return SMTPD_TEMPFAIL;
  }
  return SMTPD_DEFER;
}

static smtpd_verdict on_data_complete(smtpd_session *s, const smtpd_message *m,
                                      void *ud) {
  conn_data *d = ud;
  (void)s;
  if (bench)
    return SMTPD_ACCEPT;
  printf("delivered %llu %s %zu sum=%llu\n", (unsigned long long)m->size,
         m->sender[0] ? m->sender : "<>", m->nrecipients,
         (unsigned long long)d->sum);
  fflush(stdout);
  return SMTPD_ACCEPT;
}

static smtpd_verdict on_accept(smtpd_uv_conn *c, void **ud, void *sud) {
  conn_data *d = calloc(1, sizeof *d);
  (void)sud;
  if (!d)
    return SMTPD_DISCONNECT;
  d->c = c;
  uv_timer_init(smtpd_uv_server_loop(srv), &d->timer);
  d->timer.data = d;
  d->timer_init = 1;
  *ud = d;
  return SMTPD_ACCEPT;
}

static void free_closed(uv_handle_t *h) { free(h->data); }

static void on_conn_close(smtpd_uv_conn *c, void *ud, void *sud) {
  conn_data *d = ud;
  (void)sud;
  const char *addr = smtpd_session_client_addr(smtpd_uv_conn_session(c));
  printf("closed %s\n", addr ? addr : "unix");
  fflush(stdout);
  if (d)
    uv_close((uv_handle_t *)&d->timer, free_closed);
}

static void on_error(smtpd_uv_conn *c, const char *what, void *sud) {
  (void)c, (void)sud;
  fprintf(stderr, "uv-testd: %s\n", what);
}

static void on_done(smtpd_uv_server *s, void *sud) {
  (void)s, (void)sud;
  printf("shutdown done\n");
  fflush(stdout);
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  uv_close((uv_handle_t *)sig, NULL);
  smtpd_uv_server_shutdown(srv, shutdown_ms, on_done);
}

int main(int argc, char **argv) {
  smtpd_config *cfg;
  smtpd_tls_ctx *tls;
  uv_loop_t *loop = uv_default_loop();
  uv_signal_t sig;
  unsigned port = 0, max_sessions = 1000, per_addr = 0, timeout = 0,
           line_deadline = 0;
  const char *unix_path = NULL;
  int implicit = 0, ipv6 = 0, rc;
  smtpd_callbacks cb = {.version = SMTPD_CALLBACKS_VERSION,
                        .on_rcpt = on_rcpt, .on_data = on_data,
                        .on_body = on_body,
                        .on_data_complete = on_data_complete};
  smtpd_uv_hooks hooks = {.version = SMTPD_UV_HOOKS_VERSION,
                          .on_accept = on_accept,
                          .on_conn_close = on_conn_close,
                          .on_error = on_error};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
    if (!strcmp(a, "--defer-rcpt"))
      defer_ms = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--max-sessions"))
      max_sessions = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--max-per-addr"))
      per_addr = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--timeout"))
      timeout = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--line-deadline"))
      line_deadline = (unsigned)atoi(v), i++;
    else if (!strcmp(a, "--shutdown-ms"))
      shutdown_ms = (uint32_t)atoi(v), i++;
    else if (!strcmp(a, "--unix"))
      unix_path = v, i++;
    else if (!strcmp(a, "--implicit"))
      implicit = 1;
    else if (!strcmp(a, "--ipv6"))
      ipv6 = 1;
    else if (!strcmp(a, "--async-body")) {
      uv_fs_t req;
      body_fd = uv_fs_open(NULL, &req, v, UV_FS_O_WRONLY | UV_FS_O_CREAT |
                           UV_FS_O_APPEND | UV_FS_O_TRUNC, 0600, NULL);
      uv_fs_req_cleanup(&req);
      if (body_fd < 0)
        return fprintf(stderr, "uv-testd: cannot open %s\n", v), 1;
      i++;
    } else if (!strcmp(a, "--bench"))
      bench = 1, cb.on_body = NULL;
    else
      return fprintf(stderr, "uv-testd: unknown option %s\n", a), 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (smtpd_config_new(&cfg, NULL) != 0 || smtpd_tls_ctx_new(&tls, NULL) != 0 ||
      smtpd_tls_ctx_set_selfsigned(tls, "mx.example.org") != 0)
    return 1;
  smtpd_config_set_hostname(cfg, "mx.example.org");
  smtpd_config_set_option(cfg, SMTPD_OPT_STARTTLS, 1);
  smtpd_config_set_option(cfg, SMTPD_OPT_CHUNKING, 1);
  if (timeout) {
    smtpd_config_set_timeout(cfg, SMTPD_TIMEOUT_COMMAND, timeout);
    smtpd_config_set_timeout(cfg, SMTPD_TIMEOUT_DATA, timeout);
  }
  if (line_deadline)
    smtpd_config_set_timeout(cfg, SMTPD_TIMEOUT_LINE, line_deadline);
  if (smtpd_uv_server_new(&srv, loop, cfg, &cb, &hooks, NULL, NULL) != 0)
    return 1;
  smtpd_uv_server_set_tls(srv, tls);
  smtpd_uv_server_set_limit(srv, SMTPD_UV_MAX_SESSIONS, max_sessions);
  smtpd_uv_server_set_limit(srv, SMTPD_UV_MAX_PER_ADDR, per_addr);
  if ((rc = smtpd_uv_listen_tcp(srv, "127.0.0.1", 0, SMTPD_UV_PLAIN, &port)))
    return fprintf(stderr, "listen: %s\n", smtpd_strerror(rc)), 1;
  printf("port %u\n", port);
  if (implicit) {
    if (smtpd_uv_listen_tcp(srv, "127.0.0.1", 0, SMTPD_UV_IMPLICIT, &port))
      return 1;
    printf("implicit %u\n", port);
  }
  if (ipv6) {
    if (smtpd_uv_listen_tcp(srv, "::1", 0, SMTPD_UV_PLAIN, &port) == 0)
      printf("ipv6 %u\n", port);
    else
      printf("ipv6 none\n");
  }
  if (unix_path && smtpd_uv_listen_unix(srv, unix_path, SMTPD_UV_PLAIN))
    return fprintf(stderr, "listen %s failed\n", unix_path), 1;
  printf("ready\n");
  fflush(stdout);
  uv_signal_init(loop, &sig);
  uv_signal_start(&sig, on_signal, SIGTERM);
  rc = uv_run(loop, UV_RUN_DEFAULT);
  if (smtpd_uv_server_del(srv) != 0)
    return fprintf(stderr, "server still busy\n"), 1;
  if (body_fd >= 0) {
    uv_fs_t req;
    uv_fs_close(NULL, &req, body_fd, NULL);
    uv_fs_req_cleanup(&req);
  }
  uv_loop_close(loop);
  smtpd_config_del(cfg);
  smtpd_tls_ctx_del(tls);
  return rc != 0;
}
