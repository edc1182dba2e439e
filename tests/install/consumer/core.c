/* core.c - a program built only against an installed libsmtpd: a session
 * greets, answers EHLO, authenticates with the built-in PLAIN backend and
 * ends on QUIT. */
#include <smtpd/sasl.h>
#include "talk.h"

static smtpd_verdict verify(smtpd_session *s, const char *mech,
                            const char *authcid, const char *authzid,
                            const char *pw, size_t pwlen, void *ctx) {
  (void)s, (void)mech, (void)authzid, (void)ctx;
  return strcmp(authcid, "demo") == 0 && pwlen == 2 && memcmp(pw, "pw", 2) == 0
             ? SMTPD_ACCEPT
             : SMTPD_REJECT;
}

int main(void) {
  smtpd_config *c;
  smtpd_session *s;
  smtpd_sasl_backend *auth;
  if (smtpd_config_new(&c, NULL) || smtpd_config_set_hostname(c, "mx.test") ||
      smtpd_config_set_option(c, SMTPD_OPT_AUTH_PLAINTEXT, 1) ||
      smtpd_sasl_builtin_new(&auth, NULL, verify, NULL) ||
      smtpd_config_set_sasl(c, auth) ||
      smtpd_session_new(&s, c, NULL, NULL) || smtpd_session_start(s))
    return 1;
  expect("greeting", talk_take(s), "220 mx.test ESMTP\r\n");
  expect("EHLO", talk(s, "EHLO client.test"), "250-mx.test\r\n");
  expect_has("EHLO", talk_reply, "250-PIPELINING\r\n");
  expect_has("EHLO", talk_reply, "AUTH PLAIN LOGIN\r\n");
  /* "\0demo\0pw" */
  expect("AUTH", talk(s, "AUTH PLAIN AGRlbW8AcHc="), "235 2.7.0 ");
  if (!smtpd_session_auth_user(s) || strcmp(smtpd_session_auth_user(s), "demo"))
    return 2;
  expect("QUIT", talk(s, "QUIT"), "221 2.0.0 ");
  if (!smtpd_session_is_done(s)) return 3;
  printf("core: %s ok\n", smtpd_version(NULL));
  smtpd_session_del(s);
  smtpd_config_del(c);
  smtpd_sasl_builtin_del(auth);
  return 0;
}
