/* sasl_cyrus.c - a program built only against an installed
 * libsmtpd-sasl-cyrus: a Cyrus SASL backend from a configuration written
 * here (mech_list PLAIN LOGIN) whose mechanisms a session advertises. */
#include <smtpd/sasl_cyrus.h>
#include "talk.h"

int main(int argc, char **argv) {
  char path[1024];
  const char *dir = argc > 1 ? argv[1] : ".";
  smtpd_sasl_cyrus_options o;
  smtpd_sasl_backend *auth;
  smtpd_config *c;
  smtpd_session *s;
  FILE *f;
  snprintf(path, sizeof path, "%s/smtpd-consumer.conf", dir);
  if (!(f = fopen(path, "w"))) return 1;
  fprintf(f, "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
             "sasldb_path: %s/sasldb\nmech_list: PLAIN LOGIN\n", dir);
  fclose(f);
  smtpd_sasl_cyrus_options_init(&o);
  o.appname = "smtpd-consumer";
  o.config_dir = dir;
  o.allow_plaintext = 1;
  if (smtpd_sasl_cyrus_new(&auth, NULL, &o)) return 2;
  if (smtpd_config_new(&c, NULL) || smtpd_config_set_hostname(c, "mx.test") ||
      smtpd_config_set_sasl(c, auth) ||
      smtpd_session_new(&s, c, NULL, NULL) || smtpd_session_start(s))
    return 3;
  expect("greeting", talk_take(s), "220 mx.test ESMTP\r\n");
  expect_has("EHLO", talk(s, "EHLO client.test"), "250-AUTH ");
  expect_has("EHLO", talk_reply, "PLAIN");
  expect("AUTH", talk(s, "AUTH CRAM-MD5"), "504 5.5.4 ");
  printf("sasl_cyrus: ok\n");
  smtpd_session_del(s);
  smtpd_config_del(c);
  smtpd_sasl_cyrus_del(auth);
  return 0;
}
