/* A program built only against an installed libsmtpd. */
#include <smtpd/smtpd.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  smtpd_config *c;
  smtpd_session *s;
  const uint8_t *out;
  size_t n;
  if (smtpd_config_new(&c, NULL) || smtpd_config_set_hostname(c, "mx.test") ||
      smtpd_session_new(&s, c, NULL, NULL) || smtpd_session_start(s))
    return 1;
  n = smtpd_session_output(s, &out);
  if (n != strlen("220 mx.test ESMTP\r\n") || memcmp(out, "220 mx.test ESMTP\r\n", n))
    return 2;
  printf("%s ok\n", smtpd_version(NULL));
  smtpd_session_del(s);
  smtpd_config_del(c);
  return 0;
}
