/*
 * check_body_scan.c - Check suite for the body scanner's vector paths.
 *
 * lib/body.c skips clean text with AVX2 when the CPU has it and with SSE2
 * otherwise (smtpd_config.body_avx2, set at config creation). Both must
 * give the same body octets, replies and notices as each other, for every
 * line-ending and long-line policy, whatever the split of the input. The
 * bodies are random mixtures of the octets the scanner cares about (CR,
 * LF, '.', long runs of text) from a fixed-seed generator, so a failure
 * is reproducible; each is also checked against a reference: with the
 * ACCEPT policies, the host must receive the body with dot-stuffing
 * undone and nothing else changed.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct run {
  uint8_t *body; /* what on_body received */
  size_t body_len, body_cap;
  char *out; /* every reply, in order */
  size_t out_len, out_cap;
  unsigned notices;
} run;

static void grow(void *pp, size_t *cap, size_t need) {
  uint8_t **p = pp;
  if (need <= *cap)
    return;
  while (*cap < need)
    *cap = *cap ? *cap * 2 : 4096;
  *p = realloc(*p, *cap);
  ck_assert_ptr_nonnull(*p);
}

static smtpd_verdict on_body(smtpd_session *s, const uint8_t *d, size_t n,
                             void *ud) {
  run *r = ud;
  (void)s;
  grow(&r->body, &r->body_cap, r->body_len + n);
  memcpy(r->body + r->body_len, d, n);
  r->body_len += n;
  return SMTPD_ACCEPT;
}

static void on_notice(smtpd_session *s, const smtpd_notice *n, void *ud) {
  run *r = ud;
  (void)s;
  r->notices = r->notices * 31u + (unsigned)n->type * 7u + (unsigned)n->code;
}

static void drain(smtpd_session *s, run *r) {
  const uint8_t *p;
  size_t n = smtpd_session_output(s, &p);
  grow(&r->out, &r->out_cap, r->out_len + n + 1);
  memcpy(r->out + r->out_len, p, n);
  r->out_len += n;
  r->out[r->out_len] = '\0';
  smtpd_session_consume(s, n);
}

static void feed_all(smtpd_session *s, run *r, const uint8_t *d, size_t n,
                     size_t step) {
  while (n) {
    size_t k = n < step ? n : step;
    ptrdiff_t t = smtpd_session_feed(s, d, k);
    ck_assert_int_ge(t, 0);
    d += t;
    n -= (size_t)t;
    drain(s, r);
  }
}

/* One session: envelope, DATA, the wire body (ending in CRLF.CRLF), QUIT. */
static void session_run(run *r, int avx2, smtpd_line_ending le,
                        smtpd_long_line ll, const uint8_t *wire, size_t n,
                        size_t step) {
  smtpd_config *c;
  smtpd_session *s;
  smtpd_callbacks cb;
  static const char *const env[] = {"EHLO c.example\r\n",
                                    "MAIL FROM:<a@example.org>\r\n",
                                    "RCPT TO:<b@example.org>\r\n", "DATA\r\n"};
  size_t i;
  memset(r, 0, sizeof *r);
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_body = on_body;
  cb.on_notice = on_notice;
  ck_assert_int_eq(smtpd_config_new(&c, NULL), 0);
  ck_assert_int_eq(smtpd_config_set_line_ending(c, le), 0);
  ck_assert_int_eq(smtpd_config_set_long_line(c, ll), 0);
  ck_assert_int_eq(
      smtpd_config_set_limit(c, SMTPD_LIMIT_TEXT_LINE, 1000), 0);
  c->body_avx2 = (unsigned char)(avx2 && smtpd_i_body_avx2_usable());
  ck_assert_int_eq(smtpd_session_new(&s, c, &cb, r), 0);
  ck_assert_int_eq(smtpd_session_start(s), 0);
  drain(s, r);
  for (i = 0; i < 4; i++) /* EHLO and DATA end a group: one at a time */
    feed_all(s, r, (const uint8_t *)env[i], strlen(env[i]), 100);
  ck_assert_ptr_nonnull(strstr(r->out, "\r\n354 "));
  feed_all(s, r, wire, n, step);
  feed_all(s, r, (const uint8_t *)"QUIT\r\n", 6, 6);
  smtpd_session_del(s);
  smtpd_config_del(c);
}

static void run_free(run *r) {
  free(r->body);
  free(r->out);
}

/* xorshift64*: a fixed sequence */
static uint64_t next(uint64_t *x) {
  *x ^= *x >> 12;
  *x ^= *x << 25;
  *x ^= *x >> 27;
  return *x * UINT64_C(2685821657736338717);
}

/* A random body of about n octets in dst (room for 2n + 8), in the form
 * kind picks, ended by CRLF.CRLF; the unstuffed text (what the host
 * must see under the ACCEPT policies) goes to ref. Returns the length. */
static size_t make_body(uint64_t *x, uint8_t *dst, uint8_t *ref,
                        size_t *ref_len, size_t n) {
  size_t w = 0, rl = 0, line = 0;
  int bare = (int)(next(x) % 3); /* 0: CRLF only, 1: some bare CR/LF */
  while (w < n) {
    uint64_t r = next(x);
    unsigned what = (unsigned)(r % 100);
    if (line == 0 && what < 8) { /* a line starting with a dot: stuffed */
      dst[w++] = '.';
      dst[w++] = '.';
      ref[rl++] = '.';
      line = 1;
    } else if (what < 14) { /* end of line */
      dst[w++] = '\r';
      dst[w++] = '\n';
      ref[rl++] = '\r';
      ref[rl++] = '\n';
      line = 0;
    } else if (bare && what < 16) { /* a bare CR or LF, not before a dot */
      uint8_t c = (r >> 8) & 1 ? '\r' : '\n';
      dst[w++] = c;
      ref[rl++] = c;
      dst[w++] = 'x';
      ref[rl++] = 'x';
      line = 1;
    } else if (what < 20) { /* a long run, past SIMD blocks and limits */
      size_t k = 40 + (size_t)((r >> 8) % 1300), i;
      for (i = 0; i < k && w < n; i++) {
        uint8_t c = (uint8_t)('a' + (r >> (i % 40)) % 26);
        dst[w++] = c;
        ref[rl++] = c;
      }
      line += k;
    } else {
      static const char pool[] = "ab.cdefg hijk.lmn\t0123-456";
      uint8_t c = (uint8_t)pool[(r >> 8) % (sizeof pool - 1)];
      if (line == 0 && c == '.')
        dst[w++] = '.'; /* stuffed */
      dst[w++] = c;
      ref[rl++] = c;
      line++;
    }
  }
  if (dst[w - 1] == '\r') { /* no CR right before the final CRLF */
    dst[w++] = 'z';
    ref[rl++] = 'z';
  }
  memcpy(dst + w, "\r\n.\r\n", 5);
  memcpy(ref + rl, "\r\n", 2);
  *ref_len = rl + 2;
  return w + 5;
}

START_TEST(test_avx2_and_sse2_agree) {
  static const smtpd_line_ending les[] = {SMTPD_LINE_ENDING_REJECT,
                                          SMTPD_LINE_ENDING_NORMALIZE,
                                          SMTPD_LINE_ENDING_ACCEPT};
  static const smtpd_long_line lls[] = {SMTPD_LONG_LINE_ACCEPT,
                                        SMTPD_LONG_LINE_REJECT};
  static const size_t steps[] = {1 << 20, 1, 7, 63, 64, 65, 1000};
  uint64_t x = UINT64_C(0x9e3779b97f4a7c15);
  uint8_t *wire = malloc(2 * 70000 + 16), *ref = malloc(2 * 70000 + 16);
  int i;
  ck_assert_ptr_nonnull(wire);
  ck_assert_ptr_nonnull(ref);
  for (i = 0; i < 60; i++) {
    size_t ref_len, want = 1 + (size_t)(next(&x) % (i < 50 ? 3000 : 70000));
    size_t n = make_body(&x, wire, ref, &ref_len, want), e, l, k;
    for (e = 0; e < sizeof les / sizeof les[0]; e++)
      for (l = 0; l < sizeof lls / sizeof lls[0]; l++) {
        run a, b;
        session_run(&a, 1, les[e], lls[l], wire, n, steps[0]);
        if (les[e] == SMTPD_LINE_ENDING_ACCEPT &&
            lls[l] == SMTPD_LONG_LINE_ACCEPT) {
          ck_assert_uint_eq(a.body_len, ref_len);
          ck_assert(memcmp(a.body, ref, ref_len) == 0);
        }
        for (k = 0; k < sizeof steps / sizeof steps[0]; k++) {
          if (steps[k] == 1 && n > 5000)
            continue; /* byte by byte only for the shorter bodies */
          session_run(&b, 0, les[e], lls[l], wire, n, steps[k]);
          ck_assert_uint_eq(a.body_len, b.body_len);
          ck_assert(memcmp(a.body, b.body, a.body_len) == 0);
          ck_assert_str_eq(a.out, b.out);
          ck_assert_uint_eq(a.notices, b.notices);
          run_free(&b);
        }
        run_free(&a);
      }
  }
  free(wire);
  free(ref);
}
END_TEST

/* A body whose only irregularity sits at each offset of a 64-octet
 * stride in turn: the vector loops must stop at it wherever it is. */
START_TEST(test_irregularity_at_every_offset) {
  static const char *const odd[] = {"\r", "\n", "\r\n.x", "\n."};
  size_t off, j;
  uint8_t wire[600];
  for (j = 0; j < 4; j++)
    for (off = 0; off < 200; off++) {
      run a, b;
      size_t n = 0, i, ol = strlen(odd[j]);
      for (i = 0; i < 300; i++)
        wire[n++] = (uint8_t)('a' + i % 26);
      memcpy(wire + 10 + off, odd[j], ol);
      memcpy(wire + n, "\r\n.\r\n", 5);
      n += 5;
      session_run(&a, 1, SMTPD_LINE_ENDING_REJECT, SMTPD_LONG_LINE_ACCEPT,
                  wire, n, n);
      session_run(&b, 0, SMTPD_LINE_ENDING_REJECT, SMTPD_LONG_LINE_ACCEPT,
                  wire, n, n);
      ck_assert_uint_eq(a.body_len, b.body_len);
      ck_assert(memcmp(a.body, b.body, a.body_len) == 0);
      ck_assert_str_eq(a.out, b.out);
      /* a bare CR or LF is refused under REJECT; "\r\n.x" is a line
       * whose leading dot is taken as stuffing: plain text */
      if (j == 2)
        ck_assert_ptr_nonnull(strstr(a.out, "250 2.0.0 Ok: queued"));
      else
        ck_assert_ptr_nonnull(strstr(a.out, "550 5.5.2 "));
      run_free(&a);
      run_free(&b);
    }
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("body_scan");
  TCase *t = tcase_create("vector paths");
  tcase_set_timeout(t, 300);
  tcase_add_test(t, test_avx2_and_sse2_agree);
  tcase_add_test(t, test_irregularity_at_every_offset);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  SRunner *r = srunner_create(suite());
  int failed;
  srunner_run_all(r, CK_NORMAL);
  failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
