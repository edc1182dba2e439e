/*
 * transaction.c - a fixed workload for valgrind --tool=callgrind: N whole
 * 1 KB transactions (new session, greeting, EHLO, MAIL, RCPT, DATA with a
 * 1066-octet body, QUIT, delete), one command per feed, output drained
 * after each. Run it for two N and divide the difference by the difference
 * of N to get instructions per transaction without start-up costs:
 *
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *     build/bench/smtpd-bench-transaction 1000     (and 2000)
 *
 * With a second argument "pipelined", all N transactions run in one
 * session (steady state: no allocation). A third argument R sends R
 * recipients, all RCPT commands in one feed (a pipelined group); the
 * cost of an extra pipelined RCPT is the difference between two R
 * divided by the difference of R (docs/benchmarks.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/smtpd.h"

static smtpd_verdict on_body(smtpd_session *s, const uint8_t *d, size_t n, void *ud) {
  (void)s, (void)d, (void)n, (void)ud;
  return SMTPD_ACCEPT;
}

static void drain(smtpd_session *s) {
  const uint8_t *p;
  smtpd_session_consume(s, smtpd_session_output(s, &p));
}

static void feed(smtpd_session *s, const char *d, size_t n) {
  while (n) {
    ptrdiff_t k = smtpd_session_feed(s, d, n);
    if (k < 0)
      abort();
    d += k;
    n -= (size_t)k;
    drain(s);
  }
}

#define FEED(s, lit) feed((s), (lit), sizeof(lit) - 1)

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000, i;
  int pipelined = argc > 2 && !strcmp(argv[2], "pipelined");
  long nrcpt = argc > 3 ? atol(argv[3]) : 1;
  char *rcpts;
  size_t rl = 0;
  smtpd_config *c;
  smtpd_session *s = NULL;
  smtpd_callbacks cb;
  char body[1200];
  size_t bl = 0;
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_body = on_body;
  if (smtpd_config_new(&c, NULL) || smtpd_config_set_hostname(c, "mx.example.org"))
    return 1;
  if (nrcpt < 1 || nrcpt > 1000 || !(rcpts = malloc((size_t)nrcpt * 40)))
    return 1;
  for (i = 0; i < nrcpt; i++)
    rl += (size_t)sprintf(rcpts + rl, "RCPT TO:<rcpt%ld@example.org>\r\n",
                          i);
  if (nrcpt == 1)
    rl = (size_t)sprintf(rcpts, "RCPT TO:<rcpt@example.org>\r\n");
  while (bl < 1024) {
    memcpy(body + bl,
           "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
           "0123456789abcd\r\n", 78);
    bl += 78;
  }
  for (i = 0; i < n; i++) {
    if (!s || !pipelined) {
      if (smtpd_session_new(&s, c, &cb, NULL) || smtpd_session_start(s))
        return 1;
      drain(s);
      FEED(s, "EHLO client.example.org\r\n");
    }
    FEED(s, "MAIL FROM:<sender@example.org> SIZE=1024\r\n");
    feed(s, rcpts, rl);
    FEED(s, "DATA\r\n");
    feed(s, body, bl);
    FEED(s, ".\r\n");
    if (!pipelined) {
      FEED(s, "QUIT\r\n");
      smtpd_session_del(s);
      s = NULL;
    }
  }
  smtpd_session_del(s);
  smtpd_config_del(c);
  free(rcpts);
  printf("%ld transactions\n", n);
  return 0;
}
