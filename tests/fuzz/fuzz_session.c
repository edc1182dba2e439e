/*
 * fuzz_session.c - libFuzzer harness for the libsmtpd session engine.
 *
 *   LLVMFuzzerTestOneInput   one conversation, run whole and split
 *
 * Input layout: byte 0 chooses options (line ending, sync policy, long
 * lines, SASL, AUTH without TLS, STARTTLS, a small size limit, chaos),
 * byte 1 the split pattern and the host's decision seed, the rest is the
 * client's bytes; an 0x01 octet in it marks a packet boundary (the host
 * drains replies and completes a STARTTLS handshake there) and is not
 * fed. The conversation runs with whole packets and again split (random
 * pieces or one octet at a time); replies and events must be identical,
 * and every invariant of tests/fuzz/hostile_host.h must hold. Any
 * violation calls abort(). Build: see tests/fuzz/README.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostile_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void conf_from(hh_conf *c, uint8_t o) {
  hh_conf_default(c);
  c->line_ending = (smtpd_line_ending)(o % 3);
  c->sync = (o & 4) ? SMTPD_SYNC_ALLOW : SMTPD_SYNC_REJECT;
  c->long_line = (o & 8) ? SMTPD_LONG_LINE_REJECT : SMTPD_LONG_LINE_ACCEPT;
  c->with_sasl = !(o & 16);
  c->opt[SMTPD_OPT_AUTH_PLAINTEXT] = (o & 32) != 0;
  c->limit[SMTPD_LIMIT_ERRORS] = 1000; /* go deep */
  if (o & 64) {
    c->limit[SMTPD_LIMIT_MESSAGE_SIZE] = 200;
    c->limit[SMTPD_LIMIT_RECIPIENTS] = 3;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  hh_conf cf;
  hh_result ref, r;
  uint8_t *buf;
  size_t *pkt, npkt = 0, n = 0, i, start = 0;
  uint8_t o, sp;
  int flags, mode;
  char why[600];
  if (size < 2 || size > 200000)
    return 0;
  o = data[0];
  sp = data[1];
  conf_from(&cf, o);
  flags = (o & 128) ? HH_CHAOS_DEFER | HH_CHAOS_PACKET : 0;
  buf = malloc(size + 1);
  pkt = malloc((size + 1) * sizeof *pkt);
  if (!buf || !pkt)
    abort();
  for (i = 2; i < size; i++) {
    if (data[i] == 0x01) {
      if (n > start)
        pkt[npkt++] = n - start;
      start = n;
    } else {
      buf[n++] = data[i];
    }
  }
  if (n > start)
    pkt[npkt++] = n - start;
  hh_run(&cf, buf, pkt, npkt, HH_SPLIT_WHOLE, 1, sp, flags, 0, &ref);
  if (ref.fail) {
    fprintf(stderr, "invariant (whole): %s\n", ref.why);
    abort();
  }
  mode = (sp & 1) && n < 20000 ? HH_SPLIT_BYTES : HH_SPLIT_RANDOM;
  hh_run(&cf, buf, pkt, npkt, mode, (uint64_t)sp * 7919 + size, sp, flags, 0,
         &r);
  if (r.fail) {
    fprintf(stderr, "invariant (split): %s\n", r.why);
    abort();
  }
  if (hh_same(&ref, &r, why, sizeof why)) {
    fprintf(stderr, "split mismatch: %s\n", why);
    abort();
  }
  hh_result_free(&ref);
  hh_result_free(&r);
  free(buf);
  free(pkt);
  return 0;
}
