/*
 * adapters.c - smtpd-maildir: glue to the GnuTLS and Cyrus SASL adapters
 * (stubs that say "not built" when they are absent).
 *
 *   tls_available, tls_server_new, tls_server_del, tls_conn_new,
 *   tls_conn_del, tls_conn_feed, tls_conn_output, tls_conn_consume,
 *   tls_conn_want_read, tls_conn_want_write, tls_conn_ended,
 *   tls_conn_error, sasl_cyrus_backend
 */
#include "adapters.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef SMTPD_HAVE_GNUTLS
#include "smtpd/tls_gnutls.h"
#endif
#ifdef SMTPD_HAVE_CYRUS
#include "smtpd/sasl_cyrus.h"
#endif

/* ---- TLS ---------------------------------------------------------------- */

#ifdef SMTPD_HAVE_GNUTLS
struct tls_server {
  smtpd_tls_ctx *ctx;
};

struct tls_conn {
  smtpd_tls_conn *t;
  smtpd_session *s;
  int done;          /* failed, or the client sent close_notify */
  const char *error; /* why it ended */
};

int tls_available(void) { return 1; }

int tls_server_new(tls_server **out, const char *cert, const char *key,
                   const char *hostname) {
  tls_server *t = calloc(1, sizeof *t);
  if (t == NULL || smtpd_tls_ctx_new(&t->ctx, NULL) != 0) {
    free(t);
    return -1;
  }
  int rc = cert ? smtpd_tls_ctx_set_cert_files(t->ctx, cert, key)
                : smtpd_tls_ctx_set_selfsigned(t->ctx, hostname);
  if (rc != 0) {
    smtpd_tls_ctx_del(t->ctx);
    free(t);
    return -1;
  }
  *out = t;
  return 0;
}

void tls_server_del(tls_server *t) {
  if (t == NULL)
    return;
  smtpd_tls_ctx_del(t->ctx);
  free(t);
}

int tls_conn_new(tls_conn **out, tls_server *srv, smtpd_session *s,
                 int implicit) {
  (void)implicit; /* the session knows (smtpd_session_set_implicit_tls) */
  tls_conn *c = calloc(1, sizeof *c);
  if (c == NULL || smtpd_tls_conn_new(&c->t, srv->ctx) != 0) {
    free(c);
    return -1;
  }
  c->s = s;
  *out = c;
  return 0;
}

void tls_conn_del(tls_conn *c) {
  if (c == NULL)
    return;
  smtpd_tls_conn_del(c->t);
  free(c);
}

/* Let the adapter move bytes: handshake, decrypt into the session,
 * encrypt the session's replies, close_notify when the session closes. */
static void pump(tls_conn *c) {
  if (c->done)
    return;
  int rc = smtpd_tls_conn_pump(c->t, c->s);
  if (rc < 0) {
    c->done = 1;
    c->error = rc == SMTPD_ERR_CLOSED ? "client sent close_notify"
                                      : smtpd_tls_conn_error(c->t);
    if (c->error == NULL || *c->error == '\0')
      c->error = smtpd_strerror(rc);
  }
}

ptrdiff_t tls_conn_feed(tls_conn *c, const uint8_t *d, size_t n) {
  if (c->done)
    return (ptrdiff_t)n; /* nothing more is read; drop it */
  ptrdiff_t took = smtpd_tls_conn_feed(c->t, d, n);
  if (took < 0) {
    c->done = 1;
    c->error = smtpd_tls_conn_error(c->t);
    return (ptrdiff_t)n;
  }
  pump(c);
  return took;
}

void tls_conn_eof(tls_conn *c) {
  smtpd_tls_conn_eof(c->t);
  pump(c);
}

size_t tls_conn_output(tls_conn *c, const uint8_t **d) {
  size_t n = smtpd_tls_conn_output(c->t, d);
  if (n == 0 && !c->done && smtpd_session_want_write(c->s)) {
    pump(c); /* replies waiting for room in the ciphertext buffer */
    n = smtpd_tls_conn_output(c->t, d);
  }
  return n;
}

void tls_conn_consume(tls_conn *c, size_t n) {
  smtpd_tls_conn_consume(c->t, n);
}

int tls_conn_want_read(tls_conn *c) {
  return !c->done && smtpd_tls_conn_want_read(c->t) &&
         smtpd_session_want_read(c->s);
}

int tls_conn_want_write(tls_conn *c) {
  return smtpd_tls_conn_want_write(c->t) ||
         (!c->done && smtpd_session_want_write(c->s));
}

int tls_conn_ended(tls_conn *c) { return c->done; }

const char *tls_conn_error(tls_conn *c) {
  return c && c->error && *c->error ? c->error : NULL;
}
#endif

#ifndef SMTPD_HAVE_GNUTLS
int tls_available(void) { return 0; }
int tls_server_new(tls_server **out, const char *cert, const char *key,
                   const char *hostname) {
  (void)out; (void)cert; (void)key; (void)hostname;
  return -1;
}
void tls_server_del(tls_server *t) { (void)t; }
int tls_conn_new(tls_conn **out, tls_server *t, smtpd_session *s,
                 int implicit) {
  (void)out; (void)t; (void)s; (void)implicit;
  return -1;
}
void tls_conn_del(tls_conn *c) { (void)c; }
ptrdiff_t tls_conn_feed(tls_conn *c, const uint8_t *d, size_t n) {
  (void)c; (void)d; (void)n;
  return -1;
}
size_t tls_conn_output(tls_conn *c, const uint8_t **d) {
  (void)c; (void)d;
  return 0;
}
void tls_conn_consume(tls_conn *c, size_t n) { (void)c; (void)n; }
void tls_conn_eof(tls_conn *c) { (void)c; }
int tls_conn_want_read(tls_conn *c) { (void)c; return 0; }
int tls_conn_want_write(tls_conn *c) { (void)c; return 0; }
int tls_conn_ended(tls_conn *c) { (void)c; return 1; }
const char *tls_conn_error(tls_conn *c) { (void)c; return NULL; }
#endif

/* ---- SASL --------------------------------------------------------------- */

#ifdef SMTPD_HAVE_CYRUS
/* libsasl2's own messages (errors and warnings only) go to our log. */
static void cyrus_log(int level, const char *msg, void *ctx) {
  (void)ctx;
  if (level <= 2) /* SASL_LOG_ERR, SASL_LOG_FAIL */
    fprintf(stderr, "smtpd-maildir: sasl: %s\n", msg);
}
#endif

int sasl_cyrus_backend(smtpd_sasl_backend **out, const char *app,
                       const char *config_dir, int allow_plaintext) {
#ifdef SMTPD_HAVE_CYRUS
  smtpd_sasl_cyrus_options o;
  smtpd_sasl_cyrus_options_init(&o);
  o.appname = app;
  o.config_dir = config_dir;
  o.log = cyrus_log;
  o.allow_plaintext = allow_plaintext;
  return smtpd_sasl_cyrus_new(out, NULL, &o) == 0 ? 0 : -1;
#else
  (void)out; (void)app; (void)config_dir; (void)allow_plaintext;
  return -1;
#endif
}
