/* uv-hello.c - a complete SMTP server on libsmtpd-uv: mail for
 * @example.org (or anywhere, once authenticated) is delivered to a
 * Maildir; STARTTLS with the given certificate (or a self-signed one);
 * AUTH PLAIN/LOGIN under TLS for $UV_HELLO_USER / $UV_HELLO_PASS.
 * Usage: uv-hello PORT MAILDIR [CERT.pem KEY.pem]. See docs/uv.md. */
#define _DEFAULT_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <smtpd/sasl.h>
#include <smtpd/tls_gnutls.h>
#include <smtpd/uv.h>

static const char *maildir;
typedef struct msg { FILE *f; char tmp[512]; } msg; /* per connection */

static smtpd_verdict on_rcpt(smtpd_session *s, const smtpd_rcpt *r, void *ud) {
  (void)ud;
  if (strcasecmp(r->domain, "example.org") == 0 || smtpd_session_auth_user(s))
    return SMTPD_ACCEPT;
  smtpd_session_set_reply(s, 554, "5.7.1", "Relay access denied");
  return SMTPD_REJECT;
}
static void drop(msg *m) { /* an unfinished message (refused, cut) */
  if (m->f) fclose(m->f), unlink(m->tmp), m->f = NULL;
}
static smtpd_verdict on_data(smtpd_session *s, void *ud) {
  static unsigned long seq;
  msg *m = ud;
  (void)s;
  drop(m);
  snprintf(m->tmp, sizeof m->tmp, "%s/tmp/%ld.%ld_%lu.uv-hello", maildir,
           (long)time(NULL), (long)getpid(), ++seq);
  return (m->f = fopen(m->tmp, "wb")) ? SMTPD_ACCEPT : SMTPD_TEMPFAIL;
}
static smtpd_verdict on_body(smtpd_session *s, const uint8_t *p, size_t n,
                             void *ud) {
  msg *m = ud;
  (void)s;
  return fwrite(p, 1, n, m->f) == n ? SMTPD_ACCEPT : SMTPD_TEMPFAIL;
}
static smtpd_verdict on_data_complete(smtpd_session *s, const smtpd_message *x,
                                      void *ud) {
  msg *m = ud;
  char dst[512];
  int ok = fclose(m->f) == 0;
  (void)s, (void)x;
  m->f = NULL;
  snprintf(dst, sizeof dst, "%s/new/%s", maildir, strrchr(m->tmp, '/') + 1);
  if (ok && rename(m->tmp, dst) == 0)
    return SMTPD_ACCEPT;
  unlink(m->tmp);
  return SMTPD_TEMPFAIL;
}
static smtpd_verdict on_accept(smtpd_uv_conn *c, void **ud, void *srv_ud) {
  (void)c, (void)srv_ud;
  return (*ud = calloc(1, sizeof(msg))) ? SMTPD_ACCEPT : SMTPD_DISCONNECT;
}
static void on_conn_close(smtpd_uv_conn *c, void *ud, void *srv_ud) {
  (void)c, (void)srv_ud;
  if (ud) drop(ud), free(ud);
}
static smtpd_verdict verify(smtpd_session *s, const char *mech, const char *user,
                            const char *authz, const char *pw, size_t len,
                            void *ctx) {
  const char *u = getenv("UV_HELLO_USER"), *p = getenv("UV_HELLO_PASS");
  (void)s, (void)mech, (void)authz, (void)ctx;
  return u && p && strcmp(user, u) == 0 && smtpd_consttime_equal(pw, len, p, strlen(p))
             ? SMTPD_ACCEPT : SMTPD_REJECT;
}
static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  uv_close((uv_handle_t *)sig, NULL);
  smtpd_uv_server_shutdown(sig->data, 10000, NULL); /* 10 s to finish */
}

int main(int argc, char **argv) {
  smtpd_config *cfg;
  smtpd_tls_ctx *tls;
  smtpd_sasl_backend *sasl;
  smtpd_uv_server *srv;
  uv_signal_t sig;
  unsigned port;
  int rc;
  smtpd_callbacks cb = {.version = SMTPD_CALLBACKS_VERSION, .on_rcpt = on_rcpt,
                        .on_data = on_data, .on_body = on_body,
                        .on_data_complete = on_data_complete};
  smtpd_uv_hooks hooks = {.version = SMTPD_UV_HOOKS_VERSION,
                          .on_accept = on_accept, .on_conn_close = on_conn_close};
  if ((argc != 3 && argc != 5) || smtpd_config_new(&cfg, NULL) != 0)
    return fprintf(stderr, "usage: %s PORT MAILDIR [CERT KEY]\n", argv[0]), 2;
  maildir = argv[2];
  smtpd_config_set_hostname(cfg, "mx.example.org");
  smtpd_config_set_option(cfg, SMTPD_OPT_STARTTLS, 1);
  if (smtpd_tls_ctx_new(&tls, NULL) != 0 ||
      (argc == 5 ? smtpd_tls_ctx_set_cert_files(tls, argv[3], argv[4])
                 : smtpd_tls_ctx_set_selfsigned(tls, "mx.example.org")) != 0)
    return fprintf(stderr, "TLS: %s\n", smtpd_tls_ctx_error(tls)), 1;
  if (smtpd_sasl_builtin_new(&sasl, NULL, verify, NULL) != 0 ||
      smtpd_config_set_sasl(cfg, sasl) != 0)
    return fprintf(stderr, "cannot set up AUTH\n"), 1;
  if (smtpd_uv_server_new(&srv, uv_default_loop(), cfg, &cb, &hooks, NULL,
                          NULL) != 0 || smtpd_uv_server_set_tls(srv, tls) != 0 ||
      (rc = smtpd_uv_listen_tcp(srv, "127.0.0.1", (unsigned)atoi(argv[1]),
                                SMTPD_UV_PLAIN, &port)) != 0)
    return fprintf(stderr, "cannot listen on port %s\n", argv[1]), 1;
  fprintf(stderr, "listening on 127.0.0.1:%u\n", port);
  uv_signal_init(uv_default_loop(), &sig);
  sig.data = srv;
  uv_signal_start(&sig, on_signal, SIGTERM);
  rc = uv_run(uv_default_loop(), UV_RUN_DEFAULT); /* until shut down */
  smtpd_uv_server_del(srv);
  smtpd_config_del(cfg), smtpd_sasl_builtin_del(sasl), smtpd_tls_ctx_del(tls);
  return rc != 0;
}
