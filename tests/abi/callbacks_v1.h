/*
 * callbacks_v1.h - a frozen copy of the callbacks struct as libsmtpd 0.1
 * declared it (SMTPD_CALLBACKS_VERSION 1): int-returning decisions and a
 * void on_starttls notification. tests/check_api.c compiles a 0.1-style
 * caller against it to prove that a 0.1 program keeps working when linked
 * with a newer library. Never edit this file: it is what 0.1 programs
 * were compiled with.
 */
#ifndef SMTPD_TEST_CALLBACKS_V1_H
#define SMTPD_TEST_CALLBACKS_V1_H

#include "smtpd/smtpd.h"

typedef struct smtpd_callbacks_v1 {
  unsigned version; /* 1 */
  /* decisions: return smtpd_verdict */
  int (*on_connect)(smtpd_session *s, void *ud);
  int (*on_helo)(smtpd_session *s, const smtpd_helo *helo, void *ud);
  int (*on_mail)(smtpd_session *s, const smtpd_mail *mail, void *ud);
  int (*on_rcpt)(smtpd_session *s, const smtpd_rcpt *rcpt, void *ud);
  int (*on_data)(smtpd_session *s, void *ud); /* DATA start */
  int (*on_data_complete)(smtpd_session *s, const smtpd_message *msg,
                          void *ud);
  int (*on_vrfy)(smtpd_session *s, const char *arg, void *ud); /* 252 */
  int (*on_body)(smtpd_session *s, const uint8_t *data, size_t len,
                 void *ud);
  /* notifications */
  void (*on_rset)(smtpd_session *s, void *ud);
  void (*on_quit)(smtpd_session *s, void *ud);
  void (*on_starttls)(smtpd_session *s, void *ud);
  void (*on_auth_ok)(smtpd_session *s, const smtpd_auth_result *r,
                     void *ud);
  void (*on_auth_fail)(smtpd_session *s, const smtpd_auth_result *r,
                       void *ud);
  void (*on_tls_required)(smtpd_session *s, const char *command, void *ud);
  void (*on_notice)(smtpd_session *s, const smtpd_notice *n, void *ud);
  void (*on_close)(smtpd_session *s, smtpd_close_reason reason, void *ud);
} smtpd_callbacks_v1;

#endif
