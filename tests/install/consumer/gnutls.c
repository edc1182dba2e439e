/* gnutls.c - a program built only against an installed libsmtpd-gnutls: a
 * TLS context with a fresh self-signed certificate, a connection on it,
 * and a session that offers and accepts STARTTLS. */
#include <smtpd/tls_gnutls.h>
#include "talk.h"

int main(void) {
  smtpd_tls_ctx *ctx;
  smtpd_tls_conn *conn;
  smtpd_config *c;
  smtpd_session *s;
  if (smtpd_tls_ctx_new(&ctx, NULL) ||
      smtpd_tls_ctx_set_selfsigned(ctx, "mx.test")) {
    fprintf(stderr, "consumer: TLS context: %s\n", smtpd_tls_ctx_error(ctx));
    return 1;
  }
  if (smtpd_tls_conn_new(&conn, ctx) || !smtpd_tls_conn_want_read(conn))
    return 2; /* a fresh server connection waits for the ClientHello */
  if (smtpd_config_new(&c, NULL) || smtpd_config_set_hostname(c, "mx.test") ||
      smtpd_config_set_option(c, SMTPD_OPT_STARTTLS, 1) ||
      smtpd_session_new(&s, c, NULL, NULL) || smtpd_session_start(s))
    return 3;
  expect("greeting", talk_take(s), "220 mx.test ESMTP\r\n");
  expect_has("EHLO", talk(s, "EHLO client.test"), "250-STARTTLS\r\n");
  expect("STARTTLS", talk(s, "STARTTLS"), "220 2.0.0 Ready to start TLS\r\n");
  if (!smtpd_session_is_tls_wait(s)) return 4;
  printf("gnutls: ok\n");
  smtpd_session_del(s);
  smtpd_config_del(c);
  smtpd_tls_conn_del(conn);
  smtpd_tls_ctx_del(ctx);
  return 0;
}
