/*
 * adapters.h - smtpd-maildir: the optional TLS and SASL adapters behind
 * one small interface, so main.c reads the same with or without them.
 *
 *   tls_available                 built with the GnuTLS adapter?
 *   tls_server_new / _del         credentials from PEM cert + key files
 *   tls_conn_new / _del           TLS in front of one session (STARTTLS
 *                                 or implicit)
 *   tls_conn_feed/output/consume/eof/want_read/want_write
 *                                 the same contract as the session's
 *                                 feed/output/consume, in ciphertext
 *   tls_conn_ended                TLS failed or the client closed it
 *   sasl_cyrus_backend            AUTH through Cyrus SASL (APP.conf)
 *
 * Backends are freed with smtpd_sasl_backend_del (whichever made them).
 */
#ifndef SMTPD_MAILDIR_ADAPTERS_H
#define SMTPD_MAILDIR_ADAPTERS_H

#include <stddef.h>
#include <stdint.h>

#include "smtpd/smtpd.h"
#include "smtpd/sasl.h"

typedef struct tls_server tls_server;
typedef struct tls_conn tls_conn;

int tls_available(void);
/* cert NULL: a fresh self-signed certificate for hostname (tests, demos) */
int tls_server_new(tls_server **out, const char *cert, const char *key,
                   const char *hostname);
void tls_server_del(tls_server *t);
/* implicit: the connection is TLS from its first byte; otherwise it is
 * made inside on_starttls, before the core queues "220 Ready to start
 * TLS", and used once that reply went out in plaintext. */
int tls_conn_new(tls_conn **out, tls_server *t, smtpd_session *s,
                 int implicit);
void tls_conn_del(tls_conn *c);
ptrdiff_t tls_conn_feed(tls_conn *c, const uint8_t *data, size_t len);
size_t tls_conn_output(tls_conn *c, const uint8_t **data);
void tls_conn_consume(tls_conn *c, size_t n);
/* tls_conn_eof - the client closed the socket. */
void tls_conn_eof(tls_conn *c);
int tls_conn_want_read(tls_conn *c);
int tls_conn_want_write(tls_conn *c);
/* tls_conn_ended - the TLS layer failed or the client sent close_notify:
 * nothing more is read; write what is left, then close. */
int tls_conn_ended(tls_conn *c);
/* tls_conn_error - why the TLS layer ended the connection, or NULL. */
const char *tls_conn_error(tls_conn *c);

/* app: APP.conf is read (from config_dir, NULL: libsasl2's search path) */
int sasl_cyrus_backend(smtpd_sasl_backend **out, const char *app,
                       const char *config_dir, int allow_plaintext);

#endif
