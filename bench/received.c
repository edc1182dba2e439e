/*
 * received.c - a fixed workload for valgrind --tool=callgrind: N calls of
 * smtpd_received_format() for each of two realistic descriptions (plain
 * ESMTP with a "for" clause; ESMTPSA with TLS parameters and the
 * authenticated sender shown), into a 4 KB buffer. Run it for two N and
 * divide the difference of the counts by the difference of the messages
 * (2 per N) to get instructions per Received: field without start-up:
 *
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *     build/bench/smtpd-bench-received 1000     (and 2000)
 *
 * A second argument "plain" or "tls" formats only that variant (one
 * field per N). The program prints the last field and a checksum so the
 * calls cannot be optimised away.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/received.h"

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000, i;
  const char *only = argc > 2 ? argv[2] : "";
  int do_plain = strcmp(only, "tls") != 0, do_tls = strcmp(only, "plain") != 0;
  static char buf[4096];
  smtpd_received plain, tls;
  smtpd_tls_info ti;
  unsigned long sum = 0;
  size_t len = 0;

  smtpd_received_init(&plain);
  plain.helo = "mail.example.com";
  plain.rdns = "mail.example.com";
  plain.addr = "192.0.2.25";
  plain.hostname = "mx.example.org";
  plain.queue_id = "4ZtK9q1xYbz3";
  plain.recipient = "alice@example.org";
  plain.time = INT64_C(1795635600); /* 2026-11-24 */
  plain.utc_offset_minutes = 60;

  memset(&ti, 0, sizeof ti);
  ti.protocol = "TLSv1.3";
  ti.cipher = "TLS_AES_256_GCM_SHA384";
  ti.cipher_bits = 256;
  ti.alg_bits = 256;
  smtpd_received_init(&tls);
  tls.helo = "[192.0.2.77]";
  tls.rdns = "client77.dsl.example.net";
  tls.addr = "192.0.2.77";
  tls.hostname = "submission.example.org";
  tls.tls = &ti;
  tls.auth_user = "bob@example.net";
  tls.show_auth = 1;
  tls.queue_id = "4ZtK9q2AbCd7";
  tls.recipient = "carol.smith@example.com";
  tls.time = INT64_C(1795639242);
  tls.utc_offset_minutes = -300;

  for (i = 0; i < n; i++) {
    if (do_plain) {
      plain.time++;
      len = smtpd_received_format(buf, sizeof buf, &plain);
      sum += len + (unsigned char)buf[len / 2];
    }
    if (do_tls) {
      tls.time++;
      len = smtpd_received_format(buf, sizeof buf, &tls);
      sum += len + (unsigned char)buf[len / 2];
    }
  }
  fwrite(buf, 1, len, stdout);
  printf("%ld iterations, checksum %lu\n", n, sum);
  return 0;
}
