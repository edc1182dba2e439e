/*
 * check_defences.c - defences against slow, greedy and guessing clients,
 * through the public API: the overlong-line error count that once
 * depended on how the input was split (with and without SASL, whole,
 * split at every offset of the first 64 KiB, byte by byte), absolute
 * deadlines for a command line and a message, the reply delay after
 * failed AUTH and after errors past the soft limit, and recipients past
 * the limit counted as errors.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/sasl.h"
#include "smtpd/smtpd.h"

static smtpd_verdict never(smtpd_session *s, const char *mech,
                           const char *authcid, const char *authzid,
                           const char *pw, size_t pwlen, void *ctx) {
  (void)s, (void)mech, (void)authcid, (void)authzid, (void)pw, (void)pwlen;
  (void)ctx;
  return SMTPD_REJECT;
}

typedef struct rig {
  smtpd_config *cfg;
  smtpd_sasl_backend *sasl;
} rig;

static void rig_new(rig *r, int with_sasl) {
  memset(r, 0, sizeof *r);
  ck_assert_int_eq(smtpd_config_new(&r->cfg, NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_hostname(r->cfg, "mx.example"), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_option(r->cfg, SMTPD_OPT_AUTH_PLAINTEXT, 1),
                   SMTPD_OK);
  if (with_sasl) {
    ck_assert_int_eq(smtpd_sasl_builtin_new(&r->sasl, NULL, never, NULL),
                     SMTPD_OK);
    ck_assert_int_eq(smtpd_config_set_sasl(r->cfg, r->sasl), SMTPD_OK);
  }
}

static void rig_del(rig *r) {
  smtpd_config_del(r->cfg);
  smtpd_sasl_backend_del(r->sasl);
}

/* A session after the greeting (consumed). */
static smtpd_session *open_session(const rig *r) {
  smtpd_session *s;
  const uint8_t *p;
  ck_assert_int_eq(smtpd_session_new(&s, r->cfg, NULL, NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_start(s), SMTPD_OK);
  smtpd_session_consume(s, smtpd_session_output(s, &p));
  return s;
}

/* Feed in[0..n) in pieces of the given sizes (the last repeats), reading
 * replies as they come, into out (NUL-terminated). */
static void feed_pieces(smtpd_session *s, const char *in, size_t n,
                        size_t first, size_t rest, char *out, size_t cap) {
  size_t off = 0, o = 0;
  while (off < n) {
    size_t k = off == 0 ? first : rest;
    const uint8_t *p;
    size_t m;
    ptrdiff_t took;
    if (k > n - off)
      k = n - off;
    took = smtpd_session_feed(s, in + off, k);
    ck_assert_int_ge(took, 0);
    if (took == 0 && !smtpd_session_want_read(s) &&
        !smtpd_session_want_write(s))
      break;
    off += (size_t)took;
    m = smtpd_session_output(s, &p);
    ck_assert_uint_lt(o + m, cap);
    memcpy(out + o, p, m);
    o += m;
    smtpd_session_consume(s, m);
  }
  out[o] = '\0';
}

/* ---- the overlong line (issue: error counting depended on the split) --- */

static void overlong_line(int with_sasl) {
  enum { LINE = 622130 };
  static char in[LINE + 16];
  char want[256], out[1024];
  rig r;
  size_t n, k;
  smtpd_session *s;
  rig_new(&r, with_sasl);
  memset(in, 'X', LINE - 2);
  memcpy(in + LINE - 2, "\r\nQUIT\r\n", 8);
  n = LINE + 6;
  /* 622,130 octets: one 500, then an error per 32 KiB skipped: 19 in
   * all, under the limit of 20, so the session is still there for QUIT */
  strcpy(want, "500 5.5.2 mx.example Error: command too long\r\n"
               "221 2.0.0 Bye\r\n");
  s = open_session(&r);
  feed_pieces(s, in, n, n, n, out, sizeof out);
  ck_assert_str_eq(out, want);
  smtpd_session_del(s);
  for (k = 1; k <= 65536; k++) {
    s = open_session(&r);
    feed_pieces(s, in, n, k, n, out, sizeof out);
    ck_assert_msg(!strcmp(out, want), "split at %zu: %s", k, out);
    smtpd_session_del(s);
  }
  s = open_session(&r);
  feed_pieces(s, in, n, 1, 1, out, sizeof out);
  ck_assert_str_eq(out, want);
  smtpd_session_del(s);
  rig_del(&r);
}

START_TEST(test_overlong_line_without_sasl) { overlong_line(0); }
END_TEST

START_TEST(test_overlong_line_with_sasl) { overlong_line(1); }
END_TEST

/* ---- deadlines --------------------------------------------------------- */

START_TEST(test_line_deadline_trickle) {
  rig r;
  smtpd_session *s;
  smtpd_timeout kind;
  uint64_t epoch, first;
  const char *cmd = "MAIL FROM:<a@example.org>\r\n";
  const uint8_t *p;
  size_t i;
  rig_new(&r, 0);
  ck_assert_int_eq(smtpd_config_set_timeout(r.cfg, SMTPD_TIMEOUT_LINE, 5000),
                   SMTPD_OK);
  s = open_session(&r);
  ck_assert_uint_eq(smtpd_session_deadline(s, &kind, &epoch), 0);
  ck_assert_int_eq(kind, SMTPD_TIMEOUT_NONE);
  ck_assert_int_eq(smtpd_session_feed(s, "HELO c\r\n", 8), 8);
  smtpd_session_consume(s, smtpd_session_output(s, &p));
  ck_assert_uint_eq(smtpd_session_deadline(s, NULL, NULL), 0);
  /* one octet at a time: the same deadline, never restarted */
  ck_assert_int_eq(smtpd_session_feed(s, cmd, 1), 1);
  ck_assert_uint_eq(smtpd_session_deadline(s, &kind, &first), 5000);
  ck_assert_int_eq(kind, SMTPD_TIMEOUT_LINE);
  for (i = 1; i + 2 < strlen(cmd); i++) {
    ck_assert_int_eq(smtpd_session_feed(s, cmd + i, 1), 1);
    ck_assert_uint_eq(smtpd_session_deadline(s, &kind, &epoch), 5000);
    ck_assert(epoch == first);
    /* the per-read timeout would restart on every octet; the deadline
     * is what stops a trickler */
    ck_assert_uint_eq(smtpd_session_timeout(s, NULL), 300000);
  }
  /* the host's deadline fires: 421, closed */
  ck_assert_int_eq(smtpd_session_timeout_expired(s), SMTPD_OK);
  ck_assert(smtpd_session_is_closing(s));
  ck_assert_uint_eq(smtpd_session_output(s, &p), 46);
  ck_assert(!memcmp(p, "421 4.4.2 mx.example Error: timeout exceeded\r\n", 46));
  ck_assert_uint_eq(smtpd_session_deadline(s, NULL, NULL), 0);
  smtpd_session_del(s);
  /* a complete line ends its deadline; the next line starts a new one */
  s = open_session(&r);
  ck_assert_int_eq(smtpd_session_feed(s, "RSET\r\nRS", 8), 8);
  ck_assert_uint_eq(smtpd_session_deadline(s, &kind, &first), 5000);
  smtpd_session_consume(s, smtpd_session_output(s, &p));
  ck_assert_int_eq(smtpd_session_feed(s, "ET\r\n", 4), 4);
  ck_assert_uint_eq(smtpd_session_deadline(s, NULL, NULL), 0);
  smtpd_session_consume(s, smtpd_session_output(s, &p));
  ck_assert_int_eq(smtpd_session_feed(s, "R", 1), 1);
  ck_assert_uint_eq(smtpd_session_deadline(s, NULL, &epoch), 5000);
  ck_assert(epoch != first);
  smtpd_session_del(s);
  rig_del(&r);
}
END_TEST

#define TXN "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"

START_TEST(test_message_deadline) {
  rig r;
  smtpd_session *s;
  smtpd_timeout kind;
  uint64_t epoch, first;
  const uint8_t *p;
  int i;
  rig_new(&r, 0);
  ck_assert_int_eq(smtpd_config_set_timeout(r.cfg, SMTPD_TIMEOUT_MESSAGE,
                                            60000),
                   SMTPD_OK);
  s = open_session(&r);
  ck_assert_int_eq(smtpd_session_feed(s, "HELO c\r\n", 8), 8);
  smtpd_session_consume(s, smtpd_session_output(s, &p));
  ck_assert_int_eq(smtpd_session_feed(s, TXN, strlen(TXN)),
                   (ptrdiff_t)strlen(TXN));
  smtpd_session_consume(s, smtpd_session_output(s, &p));
  ck_assert_uint_eq(smtpd_session_deadline(s, &kind, &first), 60000);
  ck_assert_int_eq(kind, SMTPD_TIMEOUT_MESSAGE);
  for (i = 0; i < 100; i++) {
    ck_assert_int_eq(smtpd_session_feed(s, "line\r\n", 6), 6);
    ck_assert_uint_eq(smtpd_session_deadline(s, NULL, &epoch), 60000);
    ck_assert(epoch == first);
  }
  ck_assert_int_eq(smtpd_session_feed(s, ".\r\n", 3), 3);
  ck_assert_uint_eq(smtpd_session_deadline(s, NULL, NULL), 0);
  smtpd_session_consume(s, smtpd_session_output(s, &p));
  /* 0 disables it */
  ck_assert_int_eq(smtpd_config_set_timeout(r.cfg, SMTPD_TIMEOUT_MESSAGE, 0),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_session_feed(s, TXN, strlen(TXN)),
                   (ptrdiff_t)strlen(TXN));
  ck_assert_uint_eq(smtpd_session_deadline(s, &kind, NULL), 0);
  ck_assert_int_eq(kind, SMTPD_TIMEOUT_NONE);
  smtpd_session_del(s);
  rig_del(&r);
}
END_TEST

/* ---- tarpit ------------------------------------------------------------ */

START_TEST(test_tarpit_auth_and_errors) {
  rig r;
  smtpd_session *s;
  uint64_t e1, e2;
  const uint8_t *p;
  int i;
  rig_new(&r, 1);
  ck_assert_int_eq(smtpd_config_set_timeout(r.cfg, SMTPD_TIMEOUT_TARPIT, 750),
                   SMTPD_OK);
  s = open_session(&r);
  ck_assert_int_eq(smtpd_session_feed(s, "EHLO c\r\n", 8), 8);
  smtpd_session_consume(s, smtpd_session_output(s, &p));
  ck_assert_uint_eq(smtpd_session_reply_delay(s, NULL), 0);
  /* a failed guess: its 535 is held back 750 ms */
  ck_assert_int_eq(smtpd_session_feed(s, "AUTH PLAIN AHUAcHc=\r\n", 21), 21);
  ck_assert_uint_eq(smtpd_session_reply_delay(s, &e1), 750);
  ck_assert_uint_gt(smtpd_session_output(s, &p), 0);
  ck_assert(!memcmp(p, "535 ", 4));
  smtpd_session_consume(s, smtpd_session_output(s, &p));
  ck_assert_uint_eq(smtpd_session_reply_delay(s, NULL), 0); /* written */
  ck_assert_int_eq(smtpd_session_feed(s, "AUTH PLAIN AHUAcHc=\r\n", 21), 21);
  ck_assert_uint_eq(smtpd_session_reply_delay(s, &e2), 750);
  ck_assert(e2 != e1);
  smtpd_session_del(s);
  /* errors: none delayed up to the soft limit, each one after it */
  s = open_session(&r);
  for (i = 1; i <= 12; i++) {
    ck_assert_int_eq(smtpd_session_feed(s, "BOGUS\r\n", 7), 7);
    if (i <= 10)
      ck_assert_msg(smtpd_session_reply_delay(s, NULL) == 0, "error %d", i);
    else
      ck_assert_msg(smtpd_session_reply_delay(s, NULL) == 750, "error %d", i);
    smtpd_session_consume(s, smtpd_session_output(s, &p));
  }
  smtpd_session_del(s);
  rig_del(&r);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("defences");
  TCase *tc = tcase_create("defences");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_overlong_line_without_sasl);
  tcase_add_test(tc, test_overlong_line_with_sasl);
  tcase_add_test(tc, test_line_deadline_trickle);
  tcase_add_test(tc, test_message_deadline);
  tcase_add_test(tc, test_tarpit_auth_and_errors);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  int failed;
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
