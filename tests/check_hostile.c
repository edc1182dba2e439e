/*
 * check_hostile.c - the core against hostile input, through the public
 * API only (plus the built-in SASL backend, STARTTLS on): random byte
 * streams and grammar-aware random conversations fed whole, split at
 * random points and one octet at a time (replies and events must be
 * identical), deferral chaos, a failing-allocator sweep, and explicit
 * worst cases (endless lines, huge AUTH lines, 100k pipelined commands,
 * giant SIZE= values, 10,000 recipients, 8 MB bodies of CR / LF / dots).
 *
 * The host and the invariants live in tests/fuzz/hostile_host.h, shared
 * with the libFuzzer harness tests/fuzz/fuzz_session.c. Everything is
 * deterministic: a fixed-seed xorshift PRNG, no rand().
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/hostile_host.h"

/* ---- generators ---------------------------------------------------------- */

typedef struct conv {
  hh_buf data;
  size_t *pkt;
  size_t npkt, cap;
} conv;

static void conv_pkt(conv *c, size_t n) {
  if (c->npkt == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 64;
    c->pkt = realloc(c->pkt, c->cap * sizeof *c->pkt);
    ck_assert_ptr_nonnull(c->pkt);
  }
  c->pkt[c->npkt++] = n;
}

static void conv_free(conv *c) {
  hh_buf_free(&c->data);
  free(c->pkt);
  memset(c, 0, sizeof *c);
}

/* Packets: one per line (lockstep), or random runs of items. */
static void packetize_lines(conv *c) {
  size_t i, start = 0;
  c->npkt = 0;
  for (i = 0; i < c->data.len; i++)
    if (c->data.p[i] == '\n') {
      conv_pkt(c, i + 1 - start);
      start = i + 1;
    }
  if (start < c->data.len)
    conv_pkt(c, c->data.len - start);
}

static void packetize_random(conv *c, uint64_t *st, const size_t *ends,
                             size_t nends) {
  size_t i, start = 0;
  c->npkt = 0;
  for (i = 0; i < nends; i++) {
    if (i + 1 == nends || hh_below(st, 4) == 0) {
      conv_pkt(c, ends[i] - start);
      start = ends[i];
    }
  }
  if (start < c->data.len)
    conv_pkt(c, c->data.len - start);
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void put_b64(hh_buf *b, const void *src, size_t n) {
  const uint8_t *p = src;
  size_t i;
  for (i = 0; i + 2 < n; i += 3) {
    char q[4] = {b64chars[p[i] >> 2],
                 b64chars[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
                 b64chars[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)],
                 b64chars[p[i + 2] & 63]};
    hh_buf_put(b, q, 4);
  }
  if (n - i == 1) {
    char q[4] = {b64chars[p[i] >> 2], b64chars[(p[i] & 3) << 4], '=', '='};
    hh_buf_put(b, q, 4);
  } else if (n - i == 2) {
    char q[4] = {b64chars[p[i] >> 2],
                 b64chars[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
                 b64chars[(p[i + 1] & 15) << 2], '='};
    hh_buf_put(b, q, 4);
  }
}

static void put_rep(hh_buf *b, char ch, size_t n) {
  char tmp[256];
  memset(tmp, ch, sizeof tmp);
  while (n) {
    size_t k = n < sizeof tmp ? n : sizeof tmp;
    hh_buf_put(b, tmp, k);
    n -= k;
  }
}

static const char *const domains[] = {"example.org", "[192.0.2.1]",
                                      "[IPv6:2001:db8::1]", "xn--bcher-kva.example",
                                      "b\303\274cher.example", "a.b.c.d.e"};
static const char *const locals[] = {"a", "user.name+tag", "\"quoted local\"",
                                     "\"q\\\"x\"", "Postmaster", "j\xc3\xb6rg"};

static void put_addr(hh_buf *b, uint64_t *st) {
  uint64_t r = hh_below(st, 20);
  if (r == 0) {
    hh_buf_str(b, "<>");
    return;
  }
  if (r == 1) {
    hh_buf_str(b, "<Postmaster>");
    return;
  }
  if (r == 2) { /* local part over 64 */
    hh_buf_str(b, "<");
    put_rep(b, 'l', 60 + hh_below(st, 10));
    hh_buf_str(b, "@example.org>");
    return;
  }
  if (r == 3) { /* domain near/over 255 */
    hh_buf_str(b, "<a@");
    put_rep(b, 'd', 250 + hh_below(st, 12));
    hh_buf_str(b, ".org>");
    return;
  }
  if (r == 4) {
    hh_buf_str(b, "<@relay.example:a@example.org>");
    return;
  }
  if (r == 5) {
    hh_buf_str(b, "a@example.org"); /* no brackets */
    return;
  }
  hh_buf_printf(b, "<%s@%s>", locals[hh_below(st, 6)], domains[hh_below(st, 6)]);
}

/* A command line (with CRLF). Sets *data / *auth_wait for what follows. */
static void put_command(hh_buf *b, uint64_t *st, int *data, int *auth_wait) {
  static const char *const simple[] = {
      "RSET",       "NOOP",          "HELP",        "VRFY postmaster",
      "EXPN list",  "STARTTLS",      "STARTTLS now", "DATA",
      "TURN",       "BDAT 10 LAST",  "rset  x",      "NOOP hello",
      "VRFY",       "XYZZY",         "MAIL",        "RCPT",
      "QUIT",       "GET / HTTP/1.0", "Subject: hi", "mail from:<a@b>"};
  uint64_t r = hh_below(st, 22);
  *data = 0;
  *auth_wait = 0;
  switch (r) {
  case 0:
  case 1:
    hh_buf_printf(b, "%s %s", hh_below(st, 3) ? "EHLO" : "HELO",
                  hh_below(st, 4) ? "client.example" : "[192.0.2.9]");
    break;
  case 2:
  case 3:
  case 4: {
    static const char *const params[] = {
        "",  " SIZE=1000", " SIZE=99999999999", " SIZE=18446744073709551616",
        " BODY=8BITMIME", " BODY=7BIT", " BODY=BINARYMIME", " SMTPUTF8",
        " AUTH=<>", " AUTH=user+2Bx", " FOO=bar", " SIZE",  " SIZE=-1",
        " SIZE=12 SIZE=13"};
    hh_buf_str(b, hh_below(st, 2) ? "MAIL FROM:" : "mail from: ");
    put_addr(b, st);
    hh_buf_str(b, params[hh_below(st, 14)]);
    break;
  }
  case 5:
  case 6:
  case 7:
  case 8: {
    int k = (int)hh_below(st, 4) + 1;
    while (k--) {
      hh_buf_str(b, hh_below(st, 2) ? "RCPT TO:" : "rcpt to: ");
      put_addr(b, st);
      if (hh_below(st, 10) == 0)
        hh_buf_str(b, " NOTIFY=NEVER");
      if (k)
        hh_buf_str(b, "\r\n");
    }
    break;
  }
  case 9:
  case 10:
    hh_buf_str(b, "DATA");
    *data = 1;
    break;
  case 11:
  case 12: {
    uint64_t a = hh_below(st, 9);
    static const char plain_ok[] = "\0user\0secret";
    static const char plain_bad[] = "zid\0user\0wrong";
    if (a == 0) {
      hh_buf_str(b, "AUTH PLAIN ");
      put_b64(b, plain_ok, sizeof plain_ok - 1);
    } else if (a == 1) {
      hh_buf_str(b, "AUTH PLAIN ");
      put_b64(b, plain_bad, sizeof plain_bad - 1);
    } else if (a == 2) {
      hh_buf_str(b, "AUTH PLAIN");
      *auth_wait = 1;
    } else if (a == 3) {
      hh_buf_str(b, "AUTH LOGIN");
      *auth_wait = 2;
    } else if (a == 4) {
      hh_buf_str(b, "AUTH PLAIN ####");
    } else if (a == 5) {
      hh_buf_str(b, "AUTH PLAIN =");
    } else if (a == 6) {
      hh_buf_str(b, "AUTH CRAM-MD5");
    } else if (a == 7) {
      hh_buf_str(b, "AUTH LOGIN dXNlcg==");
      *auth_wait = 3;
    } else {
      hh_buf_str(b, "AUTH PLAIN ");
      put_rep(b, 'Q', 500 + hh_below(st, 14000));
    }
    break;
  }
  default: {
    uint64_t k = hh_below(st, 40);
    const char *t = simple[k % 20];
    /* QUIT, HTTP and header lines end the session: keep them rare */
    if ((k % 20 >= 16 && k % 20 <= 18) && hh_below(st, 8))
      t = "NOOP";
    hh_buf_str(b, t);
    if (!strcmp(t, "DATA"))
      *data = 1;
    break;
  }
  }
  hh_buf_str(b, "\r\n");
}

/* An AUTH response line for the challenge kind (1 PLAIN, 2/3 LOGIN). */
static void put_auth_response(hh_buf *b, uint64_t *st, int kind) {
  uint64_t r = hh_below(st, 8);
  static const char plain_ok[] = "\0user\0secret";
  if (r == 0) {
    hh_buf_str(b, "*\r\n");
    return;
  }
  if (r == 1) {
    hh_buf_str(b, "not base64!\r\n");
    return;
  }
  if (r == 2) {
    put_rep(b, 'A', 100 + hh_below(st, 15000));
    hh_buf_str(b, "\r\n");
    return;
  }
  if (r == 3) {
    hh_buf_str(b, "=\r\n");
    return;
  }
  if (kind == 1)
    put_b64(b, plain_ok, sizeof plain_ok - 1);
  else if (kind == 2)
    put_b64(b, "user", 4);
  else
    put_b64(b, r == 4 ? "wrong" : "secret", r == 4 ? 5 : 6);
  hh_buf_str(b, "\r\n");
  if (kind == 2) /* then the password */
    put_auth_response(b, st, 3);
}

/* A message body with smuggling vectors, usually ended by CRLF.CRLF. */
static void put_body(hh_buf *b, uint64_t *st) {
  static const char *const vec[] = {
      "\n.\n",     "\n.\r",       "\r.\n",        "\r.\r",
      "\n.\r\n",   "\r.\r\n",     "\r\n.\r",      "\r\n.\n",
      "\r\n\0.\r\n", "\r\n.\0\r\n", "\r\n.\r\r\n", "\r\n..\r\n",
      "\r\n.x\r\n", "\r\r\n",      "\n\n",         "\r\r\r"};
  static const size_t veclen[] = {3, 3, 3, 3, 4, 4, 4, 4, 6, 6, 6, 5,
                                  5, 3, 2, 3};
  int lines = (int)hh_below(st, 12);
  while (lines--) {
    uint64_t r = hh_below(st, 10);
    if (r < 4) {
      hh_buf_str(b, "Subject: some text\r\n");
    } else if (r == 4) {
      hh_buf_str(b, "..leading dot\r\n");
    } else if (r == 5) {
      size_t k = hh_below(st, 16);
      hh_buf_put(b, vec[k], veclen[k]);
      hh_buf_str(b, "MAIL FROM:<evil@example.net>\r\nRCPT TO:<v@example.org>"
                    "\r\nDATA\r\n");
    } else if (r == 6) {
      put_rep(b, 'x', 900 + hh_below(st, 3000));
      hh_buf_str(b, "\r\n");
    } else if (r == 7) {
      hh_buf_str(b, "8bit \xff\xfe\x80 and NUL");
      hh_buf_put(b, "\0tail\r\n", 7);
    } else if (r == 8) {
      hh_buf_str(b, hh_below(st, 2) ? ".\r\n" : "\r\n");
    } else {
      hh_buf_str(b, "\r\n");
    }
  }
  if (hh_below(st, 12) == 0)
    return; /* never ended: the rest is body */
  hh_buf_str(b, hh_below(st, 2) ? "\r\n.\r\n" : ".\r\n");
}

/* Mutations of the most recent line (from `from`). */
static void mutate(hh_buf *b, size_t from, uint64_t *st) {
  size_t n = b->len - from;
  uint64_t r = hh_below(st, 9);
  uint8_t *p = b->p + from;
  if (n < 3)
    return;
  switch (r) {
  case 0: /* case flip */
    p[hh_below(st, n - 2)] ^= 0x20;
    break;
  case 1: /* NUL inside */
    p[hh_below(st, n - 2)] = 0;
    break;
  case 2: /* bare CR inside */
    p[hh_below(st, n - 2)] = '\r';
    break;
  case 3: /* LF only */
    p[n - 2] = '\n';
    b->len--;
    break;
  case 4: /* CR only: the line runs into the next */
    b->len--;
    break;
  case 5: /* 8-bit junk */
    p[hh_below(st, n - 2)] = (uint8_t)(0x80 + hh_below(st, 128));
    break;
  case 6: { /* overlong */
    size_t k = 500 + hh_below(st, hh_below(st, 8) ? 1500 : 70000);
    b->len -= 2;
    put_rep(b, 'A', k);
    hh_buf_str(b, "\r\n");
    break;
  }
  case 7: /* truncated */
    b->len = from + hh_below(st, n - 2);
    hh_buf_str(b, "\r\n");
    break;
  default: /* random byte */
    p[hh_below(st, n - 2)] = (uint8_t)hh_below(st, 256);
    break;
  }
}

/* gen_conversation - about nitems items of valid, mutated and junk
 * commands, AUTH exchanges, bodies; item ends recorded in ends[]. */
static void gen_conversation(conv *c, uint64_t *st, size_t nitems,
                             size_t **ends, size_t *nends) {
  size_t i, cap = nitems * 4 + 8;
  *ends = malloc(cap * sizeof **ends);
  *nends = 0;
  ck_assert_ptr_nonnull(*ends);
  for (i = 0; i < nitems; i++) {
    size_t from = c->data.len;
    int data, auth;
    uint64_t r = hh_below(st, 30);
    if (r == 0) { /* random junk line */
      size_t k = hh_below(st, 80);
      while (k--) {
        uint8_t ch = (uint8_t)hh_below(st, 256);
        hh_buf_put(&c->data, &ch, 1);
      }
      hh_buf_str(&c->data, "\r\n");
      data = auth = 0;
    } else {
      put_command(&c->data, st, &data, &auth);
      if (hh_below(st, 6) == 0)
        mutate(&c->data, from, st);
    }
    (*ends)[(*nends)++] = c->data.len;
    if (data && hh_below(st, 10)) {
      put_body(&c->data, st);
      (*ends)[(*nends)++] = c->data.len;
    }
    if (auth) {
      put_auth_response(&c->data, st, auth);
      (*ends)[(*nends)++] = c->data.len;
    }
    if (*nends + 4 > cap) {
      cap *= 2;
      *ends = realloc(*ends, cap * sizeof **ends);
      ck_assert_ptr_nonnull(*ends);
    }
  }
}

/* Random octets biased towards what matters to the parser. */
static void gen_random_stream(conv *c, uint64_t *st, size_t n) {
  static const char *const frags[] = {
      "\r\n", "\n", "\r", ".", "\r\n.\r\n", "EHLO x\r\n", "MAIL FROM:<a@b>\r\n",
      "RCPT TO:<c@d>\r\n", "DATA\r\n", "AUTH PLAIN\r\n", "AUTH LOGIN\r\n", "*\r\n",
      "STARTTLS\r\n", "RSET\r\n", "\0", "\xff", "AAAA"};
  while (c->data.len < n) {
    uint64_t r = hh_below(st, 4);
    if (r == 0) {
      const char *f = frags[hh_below(st, 17)];
      hh_buf_put(&c->data, f, *f ? strlen(f) : 1);
    } else {
      uint8_t ch = (uint8_t)(r == 1 ? hh_below(st, 256) : 0x20 + hh_below(st, 95));
      hh_buf_put(&c->data, &ch, 1);
    }
  }
}

/* ---- comparing splits ---------------------------------------------------- */

/* Run c under every split; all must agree with the whole-packet run and
 * pass the invariants. */
static size_t total_feeds, total_octets;

static void run_splits(const hh_conf *cf, const conv *c, uint64_t host_seed,
                       int flags, int nrandom, int bytes, const char *label,
                       unsigned long iter) {
  hh_result ref, r;
  char why[600];
  int i;
  hh_run(cf, c->data.p, c->pkt, c->npkt, HH_SPLIT_WHOLE, 1, host_seed, flags,
         0, &ref);
  ck_assert_msg(!ref.fail, "%s #%lu whole: %s", label, iter, ref.why);
  for (i = 0; i < nrandom + bytes; i++) {
    int mode = i < nrandom ? HH_SPLIT_RANDOM : HH_SPLIT_BYTES;
    hh_run(cf, c->data.p, c->pkt, c->npkt, mode, hh_mix(iter * 31 + (unsigned)i),
           host_seed, flags, 0, &r);
    ck_assert_msg(!r.fail, "%s #%lu split %d: %s", label, iter, i, r.why);
    ck_assert_msg(!hh_same(&ref, &r, why, sizeof why), "%s #%lu split %d: %s",
                  label, iter, i, why);
    total_feeds += r.feeds;
    total_octets += c->data.len;
    hh_result_free(&r);
  }
  hh_result_free(&ref);
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_random_streams) {
  uint64_t st = 0x5eed0001;
  unsigned long it;
  for (it = 0; it < 2000; it++) {
    conv c;
    hh_conf cf;
    size_t *ends, nends, i;
    memset(&c, 0, sizeof c);
    hh_conf_random(&cf, &st);
    gen_random_stream(&c, &st, 100 + hh_below(&st, 3000));
    ends = malloc(c.data.len * sizeof *ends);
    ck_assert_ptr_nonnull(ends);
    for (i = 0, nends = 0; i < c.data.len; i++)
      if (hh_below(&st, 40) == 0 || i + 1 == c.data.len)
        ends[nends++] = i + 1;
    if (it % 2)
      packetize_lines(&c);
    else
      packetize_random(&c, &st, ends, nends);
    run_splits(&cf, &c, hh_mix(it), it % 2 ? HH_LOCKSTEP : 0, 2, 1, "random",
               it);
    free(ends);
    conv_free(&c);
  }
}
END_TEST

START_TEST(test_grammar_conversations) {
  uint64_t st = 0x5eed0002;
  unsigned long it;
  size_t peak = 0;
  for (it = 0; it < 4000; it++) {
    conv c;
    hh_conf cf;
    size_t *ends, nends;
    memset(&c, 0, sizeof c);
    if (it % 4 == 0)
      hh_conf_default(&cf);
    else
      hh_conf_random(&cf, &st);
    gen_conversation(&c, &st, 10 + hh_below(&st, 60), &ends, &nends);
    if (it % 2)
      packetize_lines(&c);
    else
      packetize_random(&c, &st, ends, nends);
    run_splits(&cf, &c, hh_mix(it + 1000), it % 2 ? HH_LOCKSTEP : 0, 2,
               c.data.len < 40000, "grammar", it);
    {
      hh_result r;
      hh_run(&cf, c.data.p, c.pkt, c.npkt, HH_SPLIT_WHOLE, 1, 7, 0, 0, &r);
      if (r.peak > peak)
        peak = r.peak;
      hh_result_free(&r);
    }
    free(ends);
    conv_free(&c);
  }
  fprintf(stderr,
          "grammar conversations: %zu feeds, %zu octets, peak engine memory "
          "%zu octets\n",
          total_feeds, total_octets, peak);
}
END_TEST

/* Decisions deferred and resumed with random verdicts (or a host close /
 * timeout instead), host closes at packet boundaries: still identical
 * across splits, since the pauses happen at the same logical points. */
START_TEST(test_deferral_chaos) {
  uint64_t st = 0x5eed0003;
  unsigned long it;
  for (it = 0; it < 3000; it++) {
    conv c;
    hh_conf cf;
    size_t *ends, nends;
    memset(&c, 0, sizeof c);
    hh_conf_random(&cf, &st);
    gen_conversation(&c, &st, 10 + hh_below(&st, 50), &ends, &nends);
    if (it % 2)
      packetize_lines(&c);
    else
      packetize_random(&c, &st, ends, nends);
    run_splits(&cf, &c, hh_mix(it + 5000),
               HH_CHAOS_DEFER | HH_CHAOS_PACKET | (it % 2 ? HH_LOCKSTEP : 0),
               2, c.data.len < 40000, "chaos", it);
    free(ends);
    conv_free(&c);
  }
}
END_TEST

/* Split-dependent chaos (host close / timeout between any two feeds,
 * on_body refusals and pauses): invariants only. */
START_TEST(test_wild_chaos) {
  uint64_t st = 0x5eed0004;
  unsigned long it;
  for (it = 0; it < 4000; it++) {
    conv c;
    hh_conf cf;
    hh_result r;
    size_t *ends, nends;
    memset(&c, 0, sizeof c);
    hh_conf_random(&cf, &st);
    gen_conversation(&c, &st, 10 + hh_below(&st, 50), &ends, &nends);
    packetize_random(&c, &st, ends, nends);
    hh_run(&cf, c.data.p, c.pkt, c.npkt, HH_SPLIT_RANDOM, hh_mix(it),
           hh_mix(it + 9000), HH_CHAOS_WILD | HH_CHAOS_DEFER | HH_CHAOS_PACKET,
           0, &r);
    ck_assert_msg(!r.fail, "wild #%lu: %s", it, r.why);
    hh_result_free(&r);
    free(ends);
    conv_free(&c);
  }
}
END_TEST

/* Fail the Nth allocation for every N until a run needs no failure. */
static void sweep(const hh_conf *cf, const conv *c, int flags,
                  const char *label) {
  long n;
  int done = 0;
  for (n = 1; n < 100000 && !done; n++) {
    hh_result r;
    hh_run(cf, c->data.p, c->pkt, c->npkt, HH_SPLIT_WHOLE, 1, 42, flags, n,
           &r);
    ck_assert_msg(!r.fail, "%s: failing allocation %ld: %s", label, n, r.why);
    if (!r.nomem)
      done = 1;
    else
      ck_assert_msg(r.setup_nomem || r.rv == SMTPD_ERR_NOMEM || r.rv == 0,
                    "%s: allocation %ld: rv %d", label, n, r.rv);
    hh_result_free(&r);
  }
  ck_assert_msg(done, "%s: never ran without a failure", label);
  fprintf(stderr, "%s: %ld allocation failures survived\n", label, n - 2);
}

START_TEST(test_failing_allocator_sweep) {
  uint64_t st = 0x5eed0005;
  int k;
  for (k = 0; k < 3; k++) {
    conv c;
    hh_conf cf;
    size_t *ends, nends;
    memset(&c, 0, sizeof c);
    hh_conf_default(&cf);
    cf.opt[SMTPD_OPT_AUTH_PLAINTEXT] = 1;
    cf.limit[SMTPD_LIMIT_ERRORS] = 1000;
    gen_conversation(&c, &st, 150, &ends, &nends);
    if (k == 1)
      packetize_random(&c, &st, ends, nends);
    else
      packetize_lines(&c);
    sweep(&cf, &c, k == 2 ? HH_CHAOS_DEFER | HH_LOCKSTEP : k ? 0 : HH_LOCKSTEP,
          k == 0 ? "sweep lockstep" : k == 1 ? "sweep pipelined"
                                             : "sweep deferred");
    free(ends);
    conv_free(&c);
  }
}
END_TEST

/* ---- explicit worst cases ------------------------------------------------ */

/* A conversation: head holds packets separated by '|', then one packet
 * of len octets of the pattern followed by tail. */
static void build(conv *c, const char *head, const char *pat, size_t patlen,
                  size_t len, const char *tail) {
  const char *h = head;
  memset(c, 0, sizeof *c);
  while (*h) {
    const char *bar = strchr(h, '|');
    size_t n = bar ? (size_t)(bar - h) : strlen(h);
    hh_buf_put(&c->data, h, n);
    conv_pkt(c, n);
    h += n + (bar ? 1 : 0);
  }
  {
    size_t from = c->data.len;
    while (len) {
      size_t k = len < patlen ? len : patlen;
      hh_buf_put(&c->data, pat, k);
      len -= k;
    }
    hh_buf_str(&c->data, tail);
    if (c->data.len > from)
      conv_pkt(c, c->data.len - from);
  }
}

/* Run c with every packet written in pieces of `piece` octets, by a host
 * that accepts every decision. */
static void run_pieces(const hh_conf *cf, conv *c, size_t piece,
                       hh_result *r) {
  hh_run(cf, c->data.p, c->pkt, c->npkt, HH_SPLIT_FIXED, piece, 3,
         HH_ACCEPT_ALL, 0, r);
  ck_assert_msg(!r->fail, "%s", r->why);
}

static const char *TOO_MANY = "421 4.7.0 mx.example.org Error: too many errors\r\n";

/* Occurrences of needle in b (no strstr: ASan makes that quadratic). */
static int count_str(const hh_buf *b, const char *needle) {
  size_t k = strlen(needle), i = 0;
  int n = 0;
  while (b->p && i + k <= b->len) {
    const uint8_t *q = memchr(b->p + i, needle[0], b->len - i);
    if (!q || (size_t)(q - b->p) + k > b->len)
      break;
    i = (size_t)(q - b->p);
    if (!memcmp(q, needle, k)) {
      n++;
      i += k;
    } else {
      i++;
    }
  }
  return n;
}

/* 10 MB of junk without a newline ends in 421 too many errors, whatever
 * the size of the client's writes. */
START_TEST(test_endless_line) {
  static const size_t pieces[] = {10u << 20, 1u << 20, 65536, 4096, 512, 1};
  hh_conf cf;
  conv c;
  size_t i;
  hh_conf_default(&cf);
  build(&c, "EHLO x\r\n|", "J", 1, 10u << 20, "");
  for (i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
    hh_result r;
    run_pieces(&cf, &c, pieces[i], &r);
    ck_assert_msg(strstr((char *)r.out.p, "500 5.5.2 mx.example.org Error: "
                                          "command too long\r\n"),
                  "piece %zu: %s", pieces[i], r.out.p);
    ck_assert_msg(strstr((char *)r.out.p, TOO_MANY), "piece %zu: no 421: %s",
                  pieces[i], r.out.p);
    ck_assert_int_eq(r.closed, 1);
    ck_assert_uint_lt(r.peak, 4096);
    hh_result_free(&r);
  }
  conv_free(&c);
}
END_TEST

/* The same endless line, split at every write size, gives the same bytes;
 * checks the error cadence: 20 errors = the first 500 + 19 more 32 KiB. */
START_TEST(test_endless_line_cadence) {
  hh_conf cf;
  conv c;
  hh_result a, b;
  char why[600];
  hh_conf_default(&cf);
  /* 512 + 19 * 32768 octets are not quite enough; a few more are */
  build(&c, "EHLO x\r\n|", "J", 1, 19u * 32768 - 8192, "\r\nNOOP\r\n");
  run_pieces(&cf, &c, 1000, &a);
  run_pieces(&cf, &c, 7, &b);
  ck_assert_msg(!hh_same(&a, &b, why, sizeof why), "%s", why);
  ck_assert_int_eq(count_str(&a.out, TOO_MANY), 0);
  ck_assert_int_eq(a.closed, 0);
  ck_assert(strstr((char *)a.out.p, "250 2.0.0 Ok\r\n"));
  hh_result_free(&a);
  hh_result_free(&b);
  conv_free(&c);
}
END_TEST

/* A 1 MB AUTH line, as the command and as a response to 334. */
START_TEST(test_huge_auth_line) {
  hh_conf cf;
  int k;
  hh_conf_default(&cf);
  cf.opt[SMTPD_OPT_AUTH_PLAINTEXT] = 1;
  cf.limit[SMTPD_LIMIT_ERRORS] = 100;
  for (k = 0; k < 2; k++) {
    conv c;
    hh_result r, r1;
    char why[600];
    build(&c, k ? "EHLO x\r\n|AUTH PLAIN\r\n|" : "EHLO x\r\n|AUTH PLAIN ", "QUFB",
          4, 1u << 20, "\r\nNOOP\r\n");
    run_pieces(&cf, &c, 4096, &r);
    run_pieces(&cf, &c, 1, &r1);
    ck_assert_msg(!hh_same(&r, &r1, why, sizeof why), "%s", why);
    ck_assert_msg(strstr((char *)r.out.p,
                         "500 5.5.6 SASL response limit exceeded\r\n"
                         "250 2.0.0 Ok\r\n"),
                  "%s", r.out.p);
    ck_assert_int_eq(r.closed, 0);
    ck_assert_uint_lt(r.peak, hh_bound(&cf));
    ck_assert_uint_lt(r.peak, 16384 + 12288 + 4096);
    hh_result_free(&r);
    hh_result_free(&r1);
    conv_free(&c);
  }
}
END_TEST

/* 100,000 pipelined RCPT lines in one buffer: feed stops taking input
 * while SMTPD_LIMIT_OUTPUT octets are queued, memory stays bounded. */
START_TEST(test_pipelined_flood) {
  hh_mem ms;
  smtpd_mem m;
  smtpd_config *cfg;
  smtpd_session *s;
  hh_buf in = {0}, out = {0};
  size_t off = 0, i, stops = 0;
  const uint8_t *p;
  memset(&ms, 0, sizeof ms);
  m = hh_make_mem(&ms);
  ck_assert_int_eq(smtpd_config_new(&cfg, &m), 0);
  /* the recipients past the limit would count as errors and end the
   * session (test_many_recipients); here the flood must run through */
  ck_assert_int_eq(smtpd_config_set_limit(cfg, SMTPD_LIMIT_ERRORS, 1000000),
                   0);
  ck_assert_int_eq(smtpd_config_set_timeout(cfg, SMTPD_TIMEOUT_TARPIT, 0), 0);
  ck_assert_int_eq(smtpd_session_new(&s, cfg, NULL, NULL), 0);
  ck_assert_int_eq(smtpd_session_start(s), 0);
  ck_assert_int_eq(smtpd_session_consume(s, smtpd_session_output(s, &p)), 0);
  ck_assert_int_eq(smtpd_session_feed(s, "EHLO x\r\n", 8), 8);
  ck_assert_int_eq(smtpd_session_consume(s, smtpd_session_output(s, &p)), 0);
  hh_buf_str(&in, "MAIL FROM:<a@example.org>\r\n");
  for (i = 0; i < 100000; i++)
    hh_buf_printf(&in, "RCPT TO:<u%zu@example.org>\r\n", i);
  hh_buf_str(&in, "QUIT\r\n");
  while (off < in.len) {
    ptrdiff_t took = smtpd_session_feed(s, in.p + off, in.len - off);
    size_t n;
    ck_assert_int_ge(took, 0);
    off += (size_t)took;
    ck_assert_uint_lt(ms.bytes_live, 2 * 65536 + 16384 + 1000 * 320);
    if (off < in.len) {
      stops++;
      ck_assert_int_eq(smtpd_session_want_read(s), 0);
      ck_assert_int_eq(smtpd_session_want_write(s), 1);
      ck_assert_uint_ge(smtpd_session_output(s, NULL), 65536);
      /* nothing more is taken until the output is drained */
      ck_assert_int_eq(smtpd_session_feed(s, in.p + off, in.len - off), 0);
    }
    n = smtpd_session_output(s, &p);
    ck_assert_uint_lt(n, 65536 + 512);
    hh_buf_put(&out, p, n);
    ck_assert_int_eq(smtpd_session_consume(s, n), 0);
  }
  {
    hh_replies r;
    char why[200];
    ck_assert_msg(!hh_check_replies(out.p, out.len, &r, why, sizeof why), "%s",
                  why);
    ck_assert_uint_eq(r.groups, 1 + 100000 + 1);
  }
  ck_assert_int_eq(count_str(&out, "250 2.1.5 Ok\r\n"), 1000);
  ck_assert_int_eq(count_str(&out, "452 4.5.3 Error: too many recipients\r\n"),
                   99000);
  ck_assert_uint_gt(stops, 40);
  ck_assert_int_eq(smtpd_session_is_closing(s), 1);
  smtpd_session_del(s);
  smtpd_config_del(cfg);
  ck_assert_int_eq(ms.live, 0);
  hh_buf_free(&in);
  hh_buf_free(&out);
}
END_TEST

/* Host that accepts everything and counts recipients. */
typedef struct simple {
  size_t nrcpt_complete;
  int completes;
  uint64_t body;
} simple;

static smtpd_verdict s_complete(smtpd_session *s, const smtpd_message *m, void *ud) {
  simple *x = ud;
  (void)s;
  x->nrcpt_complete = m->nrecipients;
  x->completes++;
  return SMTPD_ACCEPT;
}

static smtpd_verdict s_body(smtpd_session *s, const uint8_t *d, size_t n, void *ud) {
  simple *x = ud;
  (void)s, (void)d;
  x->body += n;
  return SMTPD_ACCEPT;
}

/* Run text through a fresh session (config tweak by line ending), fed in
 * pieces of `piece`, draining after every feed; returns the replies. */
static void simple_run(const char *head, const char *pat, size_t patlen,
                       size_t len, const char *tail, smtpd_line_ending le,
                       size_t piece, hh_buf *out, simple *x, size_t *peak) {
  hh_mem ms;
  smtpd_mem m;
  smtpd_config *cfg;
  smtpd_session *s;
  smtpd_callbacks cb;
  conv c;
  size_t off = 0;
  const uint8_t *p;
  memset(&ms, 0, sizeof ms);
  memset(x, 0, sizeof *x);
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_data_complete = s_complete;
  cb.on_body = s_body;
  m = hh_make_mem(&ms);
  build(&c, head, pat, patlen, len, tail);
  ck_assert_int_eq(smtpd_config_new(&cfg, &m), 0);
  ck_assert_int_eq(smtpd_config_set_line_ending(cfg, le), 0);
  ck_assert_int_eq(smtpd_config_set_sync_policy(cfg, SMTPD_SYNC_ALLOW), 0);
  ms.base = ms.bytes_live;
  ck_assert_int_eq(smtpd_session_new(&s, cfg, &cb, x), 0);
  ck_assert_int_eq(smtpd_session_start(s), 0);
  while (off < c.data.len) {
    size_t k = c.data.len - off < piece ? c.data.len - off : piece;
    ptrdiff_t took = smtpd_session_feed(s, c.data.p + off, k);
    size_t n;
    ck_assert_int_ge(took, 0);
    off += (size_t)took;
    n = smtpd_session_output(s, &p);
    hh_buf_put(out, p, n);
    ck_assert_int_eq(smtpd_session_consume(s, n), 0);
  }
  {
    size_t n = smtpd_session_output(s, &p);
    hh_buf_put(out, p, n);
    smtpd_session_consume(s, n);
  }
  *peak = ms.peak;
  smtpd_session_del(s);
  smtpd_config_del(cfg);
  ck_assert_int_eq(ms.live, 0);
  conv_free(&c);
}

START_TEST(test_size_values) {
  static const struct {
    const char *mail;
    const char *reply;
  } cases[] = {
      {"MAIL FROM:<a@example.org> SIZE=2147483648\r\n",
       "552 5.3.4 Message size exceeds fixed limit\r\n"},
      {"MAIL FROM:<a@example.org> SIZE=18446744073709551615\r\n",
       "552 5.3.4 Message size exceeds fixed limit\r\n"},
      {"MAIL FROM:<a@example.org> SIZE=18446744073709551616\r\n",
       "501 5.5.4 Bad message size syntax\r\n"},
      {"MAIL FROM:<a@example.org> SIZE=99999999999999999999\r\n",
       "501 5.5.4 Bad message size syntax\r\n"},
      /* RFC 1870: size-value = 1*20DIGIT */
      {"MAIL FROM:<a@example.org> SIZE=000000000000000000000000000001000\r\n",
       "501 5.5.4 Bad message size syntax\r\n"},
      {"MAIL FROM:<a@example.org> SIZE=00000000000000001000\r\n",
       "250 2.1.0 Ok\r\n"},
      {"MAIL FROM:<a@example.org> SIZE=10240000\r\n", "250 2.1.0 Ok\r\n"},
      {"MAIL FROM:<a@example.org> SIZE=10240001\r\n",
       "552 5.3.4 Message size exceeds fixed limit\r\n"},
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    hh_buf out = {0};
    simple x;
    size_t peak;
    char want[200];
    simple_run("EHLO x\r\n", "", 0, 0, cases[i].mail, SMTPD_LINE_ENDING_REJECT,
               1 << 20, &out, &x, &peak);
    snprintf(want, sizeof want, "\r\n%s", cases[i].reply);
    ck_assert_msg(strstr((char *)out.p, want), "case %zu: %s", i, out.p);
    hh_buf_free(&out);
  }
}
END_TEST

/* 10,000 recipients against the default limit of 1000: the overshoot
 * counts as errors, so the session ends in 421. */
START_TEST(test_many_recipients) {
  hh_buf out = {0}, head = {0};
  simple x;
  size_t i, peak;
  hh_conf cf;
  hh_conf_default(&cf);
  hh_buf_str(&head, "EHLO x\r\nMAIL FROM:<a@example.org>\r\n");
  for (i = 0; i < 10000; i++) {
    hh_buf_str(&head, "RCPT TO:<");
    put_rep(&head, 'r', 64);
    hh_buf_printf(&head, "@%05zu.", i);
    put_rep(&head, 'd', 160);
    hh_buf_str(&head, ".example>\r\n");
  }
  hh_buf_str(&head, "DATA\r\nhello\r\n.\r\n");
  simple_run((char *)head.p, "", 0, 0, "QUIT\r\n", SMTPD_LINE_ENDING_REJECT,
             65536, &out, &x, &peak);
  /* recipients past the limit are client errors: the default error
   * limit (20) ends the session long before the 10,000th */
  ck_assert_int_eq(count_str(&out, "250 2.1.5 Ok\r\n"), 1000);
  ck_assert_int_eq(count_str(&out, "452 4.5.3 Error: too many recipients\r\n"),
                   20);
  ck_assert(strstr((char *)out.p, "421 4.7.0 ") != NULL);
  ck_assert_int_eq(x.completes, 0);
  fprintf(stderr, "1000 recipients of 240 octets: peak %zu octets\n", peak);
  ck_assert_uint_lt(peak, hh_bound(&cf));
  hh_buf_free(&out);
  hh_buf_free(&head);
}
END_TEST

/* 8 MB bodies of CR, of LF, and of dot-line variations: never an early
 * end, never a second transaction, memory flat, the right final reply. */
START_TEST(test_huge_bodies) {
  static const struct {
    const char *pat;
    size_t patlen;
    smtpd_line_ending le;
    const char *reply;
    int completes;
  } cases[] = {
      {"\r", 1, SMTPD_LINE_ENDING_REJECT,
       "550 5.5.2 localhost Error: bare <CR> received\r\n", 0},
      {"\n", 1, SMTPD_LINE_ENDING_REJECT,
       "550 5.5.2 localhost Error: bare <LF> received\r\n", 0},
      {"\r", 1, SMTPD_LINE_ENDING_ACCEPT, "250 2.0.0 Ok: queued\r\n", 1},
      /* each LF becomes CRLF: 16 MB, over the 10240000 limit */
      {"\n", 1, SMTPD_LINE_ENDING_NORMALIZE,
       "552 5.3.4 Error: message file too big\r\n", 0},
      {"..\r\n", 4, SMTPD_LINE_ENDING_REJECT, "250 2.0.0 Ok: queued\r\n", 1},
      {".\r\r\n", 4, SMTPD_LINE_ENDING_REJECT,
       "550 5.5.2 localhost Error: bare <CR> received\r\n", 0},
      {"\n.\n", 3, SMTPD_LINE_ENDING_NORMALIZE,
       "552 5.3.4 Error: message file too big\r\n", 0},
      {"\n.\n", 3, SMTPD_LINE_ENDING_REJECT,
       "550 5.5.2 localhost Error: bare <LF> received\r\n", 0},
      {"\r.\r", 3, SMTPD_LINE_ENDING_ACCEPT, "250 2.0.0 Ok: queued\r\n", 1},
      {"\n.\r\n", 4, SMTPD_LINE_ENDING_ACCEPT, "250 2.0.0 Ok: queued\r\n", 1},
      {"\r\n.\r\r\n", 6, SMTPD_LINE_ENDING_ACCEPT, "250 2.0.0 Ok: queued\r\n",
       1},
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    /* whole, 64 KiB writes, and (on a 1 MB body) 1000-octet writes */
    static const size_t pieces[] = {8u << 20, 65536, 1000};
    size_t j;
    for (j = 0; j < 3; j++) {
      size_t blen = j == 2 ? 1u << 20 : 8u << 20;
      hh_buf out = {0};
      simple x;
      size_t peak;
      simple_run("EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>"
                 "\r\nDATA\r\nfirst\r\n",
                 cases[i].pat, cases[i].patlen, blen,
                 "\r\n.\r\nMAIL FROM:<c@example.org>\r\nQUIT\r\n", cases[i].le,
                 pieces[j], &out, &x, &peak);
      /* the normalised 1 MB bodies stay under the size limit */
      int small = j == 2 && cases[i].reply[2] == '2';
      ck_assert_msg(strstr((char *)out.p, "354 ") &&
                        strstr((char *)out.p, small ? "250 2.0.0 Ok: queued"
                                                    : cases[i].reply),
                    "case %zu/%zu: %s", i, j, out.p);
      ck_assert_int_eq(x.completes, small ? 1 : cases[i].completes);
      /* exactly one end of data, then the next MAIL is a command */
      ck_assert_int_eq(count_str(&out, "250 2.1.0 Ok\r\n"), 2);
      ck_assert_msg(strstr((char *)out.p, "221 2.0.0 Bye\r\n"), "%s", out.p);
      ck_assert_uint_lt(peak, 8192);
      if (cases[i].patlen == 4 && cases[i].pat[0] == '.' &&
          cases[i].pat[1] == '.')
        ck_assert_uint_eq(x.body, 7 + blen / 4 * 3 + 2);
      hh_buf_free(&out);
    }
  }
}
END_TEST

static Suite *hostile_suite(void) {
  Suite *s = suite_create("hostile");
  TCase *r = tcase_create("random");
  TCase *e = tcase_create("explicit");
  tcase_set_timeout(r, 300);
  tcase_set_timeout(e, 300);
  tcase_add_test(r, test_random_streams);
  tcase_add_test(r, test_grammar_conversations);
  tcase_add_test(r, test_deferral_chaos);
  tcase_add_test(r, test_wild_chaos);
  tcase_add_test(r, test_failing_allocator_sweep);
  tcase_add_test(e, test_endless_line);
  tcase_add_test(e, test_endless_line_cadence);
  tcase_add_test(e, test_huge_auth_line);
  tcase_add_test(e, test_pipelined_flood);
  tcase_add_test(e, test_size_values);
  tcase_add_test(e, test_many_recipients);
  tcase_add_test(e, test_huge_bodies);
  suite_add_tcase(s, r);
  suite_add_tcase(s, e);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(hostile_suite());
  int failed;
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
