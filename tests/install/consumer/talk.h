/* talk.h - helpers shared by the install-test consumers: feed one client
 * line to a session and take the reply it queued. Only the installed
 * public headers are used. */
#ifndef CONSUMER_TALK_H
#define CONSUMER_TALK_H
#include <smtpd/smtpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char talk_reply[4096];

/* the bytes the session has queued, as a C string in talk_reply */
static const char *talk_take(smtpd_session *s) {
  const uint8_t *out;
  size_t n = smtpd_session_output(s, &out);
  if (n >= sizeof talk_reply) n = sizeof talk_reply - 1;
  memcpy(talk_reply, out, n);
  talk_reply[n] = '\0';
  smtpd_session_consume(s, n);
  return talk_reply;
}

/* feed line (CRLF added), return the reply */
static const char *talk(smtpd_session *s, const char *line) {
  char buf[512];
  int len = snprintf(buf, sizeof buf, "%s\r\n", line);
  if (smtpd_session_feed(s, buf, (size_t)len) != len) {
    fprintf(stderr, "consumer: feed of \"%s\" not taken whole\n", line);
    exit(10);
  }
  return talk_take(s);
}

/* fail unless reply starts with want */
static void expect(const char *what, const char *reply, const char *want) {
  if (strncmp(reply, want, strlen(want)) != 0) {
    fprintf(stderr, "consumer: %s: expected \"%s...\", got \"%s\"\n", what,
            want, reply);
    exit(11);
  }
}

/* fail unless reply contains want */
static void expect_has(const char *what, const char *reply, const char *want) {
  if (!strstr(reply, want)) {
    fprintf(stderr, "consumer: %s: expected \"%s\" in \"%s\"\n", what, want,
            reply);
    exit(12);
  }
}
#endif
