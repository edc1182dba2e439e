/*
 * fuzz_milter.c - libFuzzer harness for the Milter adapter: the reply
 * parser (every packet a filter can send, at every stage of a session)
 * and the header splitter / rewriter.
 *
 *   LLVMFuzzerTestOneInput   byte 0 chooses the target, the rest is input
 *
 * Target 0 (byte 0 even): a session with one filter; the input is what
 * the filter sends, cut into replies at 0x01 octets: each piece is fed
 * when the client's next command is waiting for the filter (negotiation,
 * CONNECT, HELO, MAIL, RCPT, DATA, each header, EOH, body, end of
 * message). Invariants: no crash or sanitizer report; the session is
 * never left paused once the filter failed or every piece was fed and
 * the filter's timeout fired; every SMTP reply line is 3 digits, ' ' or
 * '-', printable ASCII and CRLF.
 *
 * Target 1 (byte 0 odd): the input is a message. The header splitter
 * must give the same fields whole and one octet at a time; the rewriter
 * with no edits must reproduce the message exactly (fields ending in CRLF
 * or LF); with a CHGHEADER deleting the first field and an ADDHEADER it
 * must not crash and must end with the original body.
 *
 * Built and run for 30 s by ctest (milter_fuzz, tests/milter.cmake) when
 * CMake's compiler is clang with libFuzzer. By hand, from the top of the
 * tree: clang -g -O1 -fsanitize=fuzzer,address,undefined -I include
 * -I lib tests/fuzz/fuzz_milter.c lib/milter/milter.c lib/milter/header.c
 * plus every lib/[a-z]*.c and lib/sasl/builtin.c, -o fuzz_milter; then
 * ./fuzz_milter NEW_DIR tests/fuzz/corpus-milter
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/milter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                         \
  do {                                                                   \
    if (!(c)) {                                                          \
      fprintf(stderr, "fuzz_milter: check failed: %s (line %d)\n", #c,   \
              __LINE__);                                                 \
      abort();                                                           \
    }                                                                    \
  } while (0)

/* ---- target 0: replies ---------------------------------------------------- */

typedef struct fz {
  smtpd_session *s;
  smtpd_milter_chain *ch;
  uint8_t spool[256];
  size_t spool_len;
} fz;

static smtpd_verdict f_connect(smtpd_session *s, void *ud)
{
  (void)s;
  return smtpd_milter_on_connect(((fz *)ud)->ch);
}
static smtpd_verdict f_helo(smtpd_session *s, const smtpd_helo *h, void *ud)
{
  (void)s;
  return smtpd_milter_on_helo(((fz *)ud)->ch, h);
}
static smtpd_verdict f_mail(smtpd_session *s, const smtpd_mail *m, void *ud)
{
  (void)s;
  return smtpd_milter_on_mail(((fz *)ud)->ch, m);
}
static smtpd_verdict f_rcpt(smtpd_session *s, const smtpd_rcpt *r, void *ud)
{
  (void)s;
  return smtpd_milter_on_rcpt(((fz *)ud)->ch, r);
}
static smtpd_verdict f_data(smtpd_session *s, void *ud)
{
  (void)s;
  ((fz *)ud)->spool_len = 0;
  return smtpd_milter_on_data(((fz *)ud)->ch);
}
static smtpd_verdict f_body(smtpd_session *s, const uint8_t *d, size_t n,
                            void *ud)
{
  fz *f = ud;
  (void)s;
  if (n > sizeof f->spool - f->spool_len)
    n = sizeof f->spool - f->spool_len;
  memcpy(f->spool + f->spool_len, d, n);
  f->spool_len += n;
  return SMTPD_ACCEPT;
}
static smtpd_verdict f_complete(smtpd_session *s, const smtpd_message *m,
                                void *ud)
{
  (void)s;
  return smtpd_milter_on_data_complete(((fz *)ud)->ch, m);
}
static void f_rset(smtpd_session *s, void *ud)
{
  (void)s;
  smtpd_milter_on_rset(((fz *)ud)->ch);
}
static void f_close(smtpd_session *s, smtpd_close_reason r, void *ud)
{
  (void)s;
  (void)r;
  smtpd_milter_chain_quit(((fz *)ud)->ch);
}
static ptrdiff_t f_read(void *ctx, uint64_t off, void *buf, size_t cap)
{
  fz *f = ctx;
  size_t n;
  if (off >= f->spool_len)
    return 0;
  n = f->spool_len - (size_t)off;
  if (n > cap)
    n = cap;
  memcpy(buf, f->spool + off, n);
  return (ptrdiff_t)n;
}

static void check_replies(const uint8_t *p, size_t n)
{
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && p[j] != '\n')
      j++;
    CHECK(j < n && j - i >= 5 && p[j - 1] == '\r');
    CHECK(p[i] >= '2' && p[i] <= '5' && p[i + 1] >= '0' && p[i + 1] <= '9' &&
          p[i + 2] >= '0' && p[i + 2] <= '9');
    CHECK(p[i + 3] == ' ' || p[i + 3] == '-');
    for (size_t k = i; k < j - 1; k++)
      CHECK(p[k] >= 32 && p[k] < 127);
    i = j + 1;
  }
}

static void drain(fz *f, smtpd_milter *m)
{
  const uint8_t *p;
  size_t n;
  while ((n = smtpd_session_output(f->s, &p)) > 0) {
    check_replies(p, n);
    smtpd_session_consume(f->s, n);
  }
  while ((n = smtpd_milter_output(m, &p)) > 0)
    smtpd_milter_consume(m, n);
}

static void fuzz_replies(const uint8_t *data, size_t size, uint8_t opt)
{
  static const char *const client =
      "EHLO c.example\r\nMAIL FROM:<a@x.example> SIZE=10\r\n"
      "RCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\nDATA\r\n"
      "From: a\r\nSubject: s\r\n x\r\n\r\nbody\r\n.\r\n"
      "MAIL FROM:<d@x.example>\r\nRSET\r\nQUIT\r\n";
  smtpd_config *cfg;
  smtpd_milter_conf *mc;
  smtpd_callbacks cb = {.version = SMTPD_CALLBACKS_VERSION,
                        .on_connect = f_connect,
                        .on_helo = f_helo,
                        .on_mail = f_mail,
                        .on_rcpt = f_rcpt,
                        .on_data = f_data,
                        .on_body = f_body,
                        .on_data_complete = f_complete,
                        .on_rset = f_rset,
                        .on_close = f_close};
  fz f;
  smtpd_milter *m;
  size_t in_off = 0, in_len = strlen(client), pos = 0;
  int rounds;

  memset(&f, 0, sizeof f);
  if (smtpd_config_new(&cfg, NULL))
    return;
  smtpd_milter_conf_new(&mc, NULL);
  smtpd_milter_conf_add(mc, "inet:127.0.0.1:1",
                        (smtpd_milter_action)(opt % 3));
  smtpd_session_new(&f.s, cfg, &cb, &f);
  smtpd_session_set_client(f.s, "192.0.2.1", NULL);
  smtpd_milter_chain_new(&f.ch, mc, f.s);
  smtpd_milter_chain_set_reader(f.ch, f_read, &f);
  m = smtpd_milter_chain_get(f.ch, 0);
  smtpd_milter_connected(m);
  smtpd_session_start(f.s);
  for (rounds = 0; rounds < 10000 && !smtpd_session_is_done(f.s); rounds++) {
    drain(&f, m);
    if (smtpd_session_want_read(f.s) && in_off < in_len) {
      const char *nl = memchr(client + in_off, '\n', in_len - in_off);
      size_t len = (size_t)(nl - (client + in_off)) + 1;
      ptrdiff_t t = smtpd_session_feed(f.s, client + in_off, len);
      CHECK(t >= 0);
      in_off += (size_t)t;
      continue;
    }
    if (smtpd_session_is_paused(f.s)) {
      if (pos < size) { /* the filter's next reply piece */
        const uint8_t *e = memchr(data + pos, 0x01, size - pos);
        size_t n = e ? (size_t)(e - (data + pos)) : size - pos;
        CHECK(smtpd_milter_feed(m, data + pos, n) >= 0);
        pos += n + (e ? 1 : 0);
      } else {
        smtpd_milter_timeout_expired(m); /* out of replies: it is silent */
        CHECK(!smtpd_session_is_paused(f.s) || !smtpd_milter_is_failed(m));
        if (smtpd_session_is_paused(f.s))
          smtpd_milter_fail(m, "fuzz: silent");
        CHECK(!smtpd_session_is_paused(f.s));
      }
      continue;
    }
    if (in_off >= in_len)
      break;
  }
  drain(&f, m);
  smtpd_milter_chain_del(f.ch);
  smtpd_session_del(f.s);
  smtpd_milter_conf_del(mc);
  smtpd_config_del(cfg);
}

/* ---- target 1: headers ------------------------------------------------------ */

typedef struct hlog {
  uint8_t text[65536];
  size_t len;
} hlog;

static void on_h(void *ctx, const smtpd_milter_header *h)
{
  hlog *l = ctx;
  size_t need = h->raw_len + 1;
  CHECK(h->name_len > 0 && h->name_len < h->raw_len);
  CHECK(h->value >= h->name && h->value + h->value_len <= h->name + h->raw_len);
  if (l->len + need <= sizeof l->text) {
    memcpy(l->text + l->len, h->raw, h->raw_len);
    l->text[l->len + h->raw_len] = 0xff;
    l->len += need;
  }
}

static void split_log(const uint8_t *d, size_t n, size_t piece, hlog *l,
                      uint64_t *body)
{
  smtpd_milter_hsplit *h;
  size_t off = 0;
  l->len = 0;
  if (smtpd_milter_hsplit_new(&h, NULL, 200, 2000))
    abort();
  while (off < n) {
    size_t w = n - off < piece ? n - off : piece;
    ptrdiff_t t = smtpd_milter_hsplit_feed(h, d + off, w, on_h, l);
    CHECK(t >= 0);
    off += (size_t)t;
    if ((size_t)t < w)
      break;
  }
  smtpd_milter_hsplit_finish(h, on_h, l);
  CHECK(smtpd_milter_hsplit_state(h) != SMTPD_MILTER_HS_MORE);
  *body = smtpd_milter_hsplit_body_offset(h);
  CHECK(*body <= n);
  smtpd_milter_hsplit_del(h);
}

static void rewrite(const uint8_t *d, size_t n, const smtpd_milter_edit *e,
                    size_t ne, uint8_t *out, size_t cap, size_t *outlen)
{
  smtpd_milter_rewriter *rw;
  size_t off = 0, k;
  const uint8_t *p;
  *outlen = 0;
  if (smtpd_milter_rewriter_new(&rw, NULL, e, ne, 200, 2000))
    abort();
  for (;;) {
    ptrdiff_t t = 0;
    if (off < n)
      t = smtpd_milter_rewriter_feed(rw, d + off, n - off);
    else
      CHECK(smtpd_milter_rewriter_finish(rw) == 0);
    CHECK(t >= 0);
    off += (size_t)t;
    while ((k = smtpd_milter_rewriter_output(rw, &p)) > 0) {
      CHECK(*outlen + k <= cap);
      memcpy(out + *outlen, p, k);
      *outlen += k;
      smtpd_milter_rewriter_consume(rw, k);
    }
    if (off >= n && t == 0)
      break;
  }
  smtpd_milter_rewriter_del(rw);
}

static void fuzz_headers(const uint8_t *d, size_t n)
{
  static hlog a, b;
  static uint8_t out[3 * 70000];
  uint64_t ba, bb;
  size_t outlen, i, ends_ok = 1;
  smtpd_milter_edit e[2] = {
      {SMTPD_MILTER_EDIT_CHGHEADER, 0, 1, "From", "", NULL, 0},
      {SMTPD_MILTER_EDIT_ADDHEADER, 0, 0, "X-Fuzz", " a\nb", NULL, 0}};

  if (n > 60000)
    return;
  split_log(d, n, n ? n : 1, &a, &ba);
  split_log(d, n, 1, &b, &bb);
  CHECK(ba == bb && a.len == b.len && !memcmp(a.text, b.text, a.len));
  /* identity: exact unless a header field lacks its final line end */
  for (i = 0; i < a.len; i++)
    if (a.text[i] == 0xff && (i == 0 || a.text[i - 1] != '\n'))
      ends_ok = 0;
  rewrite(d, n, NULL, 0, out, sizeof out, &outlen);
  if (ends_ok)
    CHECK(outlen == n && !memcmp(out, d, n));
  rewrite(d, n, e, 2, out, sizeof out, &outlen);
  CHECK(outlen >= n - ba && !memcmp(out + outlen - (n - ba), d + ba, n - ba));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1 || size > 100000)
    return 0;
  if (data[0] & 1)
    fuzz_headers(data + 1, size - 1);
  else
    fuzz_replies(data + 1, size - 1, data[0] >> 1);
  return 0;
}
