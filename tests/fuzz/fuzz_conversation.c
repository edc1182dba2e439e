/*
 * fuzz_conversation.c - libFuzzer harness for the session engine with the
 * 0.2 extensions, the default error limit and inputs well past 64 KiB,
 * checked against three oracles. Each input is one conversation, run
 * three times:
 *
 *  1. whole: each packet in one smtpd_session_feed() call;
 *  2. split: the same packets cut at the fuzzer's split marks (and, when
 *     the seed says so, at pseudo-random points too). Replies and the
 *     host's event log must be byte-identical to run 1;
 *  3. lockstep: the client bytes re-framed by a reference framer that
 *     knows SMTP's framing (command lines, AUTH response lines, DATA
 *     bodies ending at <CRLF>.<CRLF>, BDAT chunks, the PROXY header) and
 *     fed one unit at a time, the replies drained after each. Each
 *     complete command line must get exactly one reply group (or one
 *     more when that is a 421), each body line none, the line that ends
 *     the body (and only it) the message's reply; the message the host
 *     receives must equal a reference dot-unstuffing of the body, and is
 *     accepted exactly when the reference says it is clean (no bare CR
 *     or LF under the reject policy, no over-long line under
 *     SMTPD_LONG_LINE_REJECT, not over the size limit, no "VIRUS" for
 *     the host to refuse); otherwise the refusal reply is the exact one
 *     the reference predicts. A 535 must come with a reply delay
 *     (tarpit); a half-received command line must have a line deadline,
 *     a body a message deadline.
 *
 * In every run: every reply line is well-formed (3 digits, ' '/'-',
 * printable ASCII, CRLF, <= 512 octets, multi-line groups keep their
 * code), nothing is queued once the session is closing, a 421/221 always
 * closes it, smtpd_session_status agrees with the single queries
 * (want_read, want_write, is_done, is_paused, is_closing, is_tls_wait,
 * output, timeout, deadline, reply_delay) after every call, engine
 * memory stays under a bound derived from the
 * configuration and is all freed at the end, strings in events are
 * within RFC limits and neutered/sanitised where promised, no API call
 * fails. Any violation calls abort().
 *
 * Input layout:
 *   byte 0  bits 0-1 line-ending policy (mod 3), 2 SYNC_ALLOW, 3 long
 *           lines REJECT, 4 CHUNKING + BINARYMIME, 5 LMTP, 6 DSN,
 *           7 XCLIENT
 *   byte 1  bits 0-1 front end: 1 PROXY header (smtpd_session_set_proxy),
 *           2 implicit TLS (smtpd_session_set_implicit_tls, handshake
 *           reported at the first packet boundary), 0/3 plain; 2
 *           STARTTLS offered; 3 built-in SASL backend (PLAIN/LOGIN,
 *           user "user" password "secret"); 4 AUTH without TLS; 5 small
 *           limits (300-octet messages, 3 recipients, 2 transactions,
 *           1 KiB output); 6 SMTPUTF8, REQUIRETLS, LIMITS; 7 one reply
 *           per recipient, a declared parameter X-TAG and a host verb
 *           XTEST
 *   byte 2  the host's seed: 0 accepts everything; otherwise decisions
 *           are refused, deferred (then resumed, timed out or closed) and
 *           given custom replies as a function of (seed, decision
 *           number), so they do not depend on the split; bit 0 also
 *           turns on extra pseudo-random split points
 *   rest    the client's bytes, with these control octets:
 *             0x01  packet boundary: the host drains replies and, if the
 *                   session waits for TLS, reports a handshake
 *             0x02  split mark (run 2 starts a new feed here)
 *             0x03 N1 N0 L B...  repeat: the L octets B..., N1*256+N0
 *                   times (how inputs get past 64 KiB; all data is
 *                   capped at 256 KiB)
 *             0x04  the host's timer fires here (and a packet boundary)
 *             0x05 X  the octet X itself (to send 0x01..0x06)
 *             0x06  a short write: the host writes only half of what
 *                   is queued (runs 1 and 2; the next feed appends to a
 *                   partly written buffer)
 *
 * When the seed's low three bits are all set, a fourth run makes the
 * N-th allocation after the session exists fail (N from the input): the
 * call that hit it returns SMTPD_ERR_NOMEM, the session is then closing,
 * done, wants neither read nor write, queues nothing more, and
 * everything is freed at the end.
 *
 * Speed (docs/fuzzing.md, "Speed"): configurations are built once per
 * option set and kept (cfg_slot), the harness's buffers are reused, the
 * calls on a NULL session are checked once per execution, and run 3
 * feeds what follows the close of a session as one unit up to the next
 * timer mark instead of line by line.
 *
 * Build: tests/fuzz.cmake (docs/fuzzing.md).
 */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "smtpd/sasl.h"

#define MAX_DATA (256u << 10)

/* ---- the program: client bytes and marks ---------------------------------- */

enum { MARK_PACKET = 1, MARK_SPLIT = 2, MARK_TIMEOUT = 4, MARK_SHORT = 8 };

typedef struct mark {
  size_t off;
  int kind;
} mark;

typedef struct prog {
  uint8_t o0, o1, seed;
  fz_buf data;
  mark *m;
  size_t nm, cm;
} prog;

static void add_mark(prog *p, int kind) {
  if (p->nm == p->cm) {
    p->cm = p->cm ? 2 * p->cm : 32;
    p->m = realloc(p->m, p->cm * sizeof *p->m);
    if (!p->m)
      abort();
  }
  p->m[p->nm].off = p->data.len;
  p->m[p->nm].kind = kind;
  p->nm++;
}

static void buf_take(fz_buf *b);

static int decode(prog *p, const uint8_t *d, size_t n) {
  size_t i;
  memset(p, 0, sizeof *p);
  if (n < 3)
    return -1;
  buf_take(&p->data);
  p->o0 = d[0];
  p->o1 = d[1];
  p->seed = d[2];
  for (i = 3; i < n; i++) {
    uint8_t c = d[i];
    if (c == 0x01 || c == 0x02 || c == 0x04 || c == 0x06) {
      add_mark(p, c == 0x01   ? MARK_PACKET
                  : c == 0x02 ? MARK_SPLIT
                  : c == 0x04 ? MARK_TIMEOUT
                              : MARK_SHORT);
    } else if (c == 0x03) {
      size_t count, len, k;
      if (i + 3 >= n)
        break;
      count = (size_t)d[i + 1] << 8 | d[i + 2];
      len = d[i + 3];
      if (i + 4 + len > n)
        len = n - i - 4;
      for (k = 0; k < count && len && p->data.len + len <= MAX_DATA; k++)
        fz_buf_put(&p->data, d + i + 4, len);
      i += 3 + len;
    } else if (c == 0x05) {
      if (i + 1 < n)
        fz_buf_byte(&p->data, d[++i]);
    } else {
      /* a run of plain octets (0x00, 0x07..0xff) in one append; octets
       * past MAX_DATA are dropped, the marks after them still count */
      size_t j = i + 1, take;
      while (j < n && (d[j] == 0 || d[j] > 0x06))
        j++;
      take = j - i;
      if (p->data.len >= MAX_DATA) /* (0x05 escapes are not capped) */
        take = 0;
      else if (take > MAX_DATA - p->data.len)
        take = MAX_DATA - p->data.len;
      if (take)
        fz_buf_put(&p->data, d + i, take);
      i = j - 1;
    }
  }
  return 0;
}

static void buf_give(fz_buf *b);

static void prog_free(prog *p) {
  buf_give(&p->data);
  free(p->m);
}

/* ---- configuration ----------------------------------------------------------- */

typedef struct conf {
  smtpd_line_ending le;
  int sync_allow, long_reject, chunking, lmtp, dsn, xclient;
  int front; /* 0 plain, 1 proxy, 2 implicit TLS */
  int starttls, sasl, plaintext, small, utf8, per_rcpt;
  uint8_t seed;
  uint64_t size_limit, rcpt_limit, out_limit, cmd_limit, auth_limit;
  uint64_t text_limit;
} conf;

static void conf_of(conf *c, const prog *p) {
  memset(c, 0, sizeof *c);
  c->le = (smtpd_line_ending)(p->o0 & 3 ? (p->o0 & 3) % 3 : 0);
  c->sync_allow = (p->o0 >> 2) & 1;
  c->long_reject = (p->o0 >> 3) & 1;
  c->chunking = (p->o0 >> 4) & 1;
  c->lmtp = (p->o0 >> 5) & 1;
  c->dsn = (p->o0 >> 6) & 1;
  c->xclient = (p->o0 >> 7) & 1;
  c->front = (p->o1 & 3) == 3 ? 0 : p->o1 & 3;
  c->starttls = (p->o1 >> 2) & 1;
  c->sasl = (p->o1 >> 3) & 1;
  c->plaintext = (p->o1 >> 4) & 1;
  c->small = (p->o1 >> 5) & 1;
  c->utf8 = (p->o1 >> 6) & 1;
  c->per_rcpt = (p->o1 >> 7) & 1;
  c->seed = p->seed;
  c->size_limit = c->small ? 300 : 10240000;
  c->rcpt_limit = c->small ? 3 : 1000;
  c->out_limit = c->small ? 1024 : 65536;
  c->cmd_limit = 512;
  c->auth_limit = 12288;
  c->text_limit = 1000;
}

/* The most engine memory one session may hold under c: the output buffer
 * (it doubles: twice the limit plus a burst of replies), the line and
 * AUTH buffers, the host reply buffer, the PROXY buffer, HELO copies, and
 * per recipient its path in the arena plus, with one reply per recipient,
 * a host reply each. */
static size_t mem_bound(const conf *c) {
  size_t per_rcpt = c->per_rcpt || c->lmtp ? 2048 + 320 : 320;
  return (size_t)(2 * (c->out_limit + 8192) + c->cmd_limit * 4 +
                  c->auth_limit + 67 + 2048 + 1040 + 16384 +
                  c->rcpt_limit * per_rcpt * 2);
}

/* ---- the host ------------------------------------------------------------------- */

typedef struct host {
  smtpd_session *s;
  smtpd_config *cfg;
  smtpd_sasl_backend *be;
  const conf *c;
  fz_mem *mem; /* the allocator of the configuration (cfg_slot) */
  fz_buf out;  /* every reply octet written */
  fz_buf ev;   /* event log (compared between runs 1 and 2) */
  fz_buf body; /* the message as on_body delivered it */
  uint64_t ndec;
  uint64_t local; /* split-dependent choices that must not show */
  int pause_decision, pause_kind, body_paused;
  int creds_ok; /* the AUTH being verified has the right password */
  int nomem;     /* run 4: an allocation fails on purpose */
  int dead;      /* ... and the session reported it */
  uint64_t pause_key;
  uint64_t discard;
  int closing_seen;
  size_t closing_at;
  int body_rejected;
  /* lockstep */
  int lockstep;
  int completes;     /* completion callbacks so far */
  const fz_buf *ref; /* expected body at completion, or NULL */
  fz_buf bdat_acc;   /* accepted chunks of the current BDAT message */
  const uint8_t *chunk;
  size_t chunk_len;
  int chunk_on_data; /* on_data ran for the chunk being fed */
} host;

static host *g_host; /* the run in progress (for api, verify) */

/* ---- harness buffers, kept across runs ---------------------------------------- */

/* The harness's own buffers (client data, replies, events, bodies) go
 * back to a pool after a run and are reused by the next one: fewer
 * mallocs under ASan. They are the harness's memory, not the engine's
 * (the engine allocates through fz_mem only), so nothing the sanitizers
 * check about the engine changes. */
static fz_buf g_spare[24];
static size_t g_nspare;

static void buf_take(fz_buf *b) {
  if (g_nspare) {
    *b = g_spare[--g_nspare];
    b->len = 0;
    b->p[0] = 0;
  } else {
    memset(b, 0, sizeof *b);
  }
}

static void buf_give(fz_buf *b) {
  if (b->p && b->cap <= (1u << 20) &&
      g_nspare < sizeof g_spare / sizeof g_spare[0])
    g_spare[g_nspare++] = *b;
  else
    fz_buf_free(b);
  memset(b, 0, sizeof *b);
}

static void ev(host *h, const char *fmt, ...) FZ_PRINTF(2, 3);
static void ev(host *h, const char *fmt, ...) {
  char tmp[1400];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  fz_buf_put(&h->ev, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
  fz_buf_byte(&h->ev, '\n');
}

static int printable(const char *p) {
  if (!p)
    return 1;
  for (; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
      return 0;
  return 1;
}

/* No control octet (C0, DEL); 8-bit octets allowed (SASL identities,
 * docs/fuzzing.md). xtext-decoded values (ENVID, ORCPT, AUTH=, XCLIENT)
 * must be printable() instead: the decoder refuses controls and 8-bit
 * octets alike (RFC 3461 4.4, RFC 4954 5). */
static int no_controls(const char *p) {
  if (!p)
    return 1;
  for (; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
      return 0;
  return 1;
}

static uint32_t fnv(const uint8_t *p, size_t n) {
  uint32_t x = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++)
    x = (x ^ p[i]) * 16777619u;
  return x;
}

enum { K_PLAIN = 0, K_CONNECT, K_DATA, K_OWN, K_AUTH };

/* A reply for the decision in progress (or paused): valid, so it must be
 * taken; now and then an injection attempt, which must be refused. */
static void maybe_reply(host *h, uint64_t r, smtpd_verdict v, int kind) {
  static const char *const texts[] = {"custom text", "", "queued as ABC123",
                                      "multi word reply text"};
  int code, rv;
  const char *enh = NULL;
  char enhbuf[16];
  if (kind == K_AUTH || (r & 3) != 0)
    return;
  r >>= 2;
  if ((r & 15) == 0) {
    rv = smtpd_session_set_reply(h->s, v == SMTPD_ACCEPT ? 250 : 550, NULL,
                                 "a\r\n250 injected");
    FZ_CHECK(rv == SMTPD_ERR_INVALID_ARGUMENT, "reply injection taken: %d",
             rv);
    return;
  }
  r >>= 4;
  if (v == SMTPD_ACCEPT)
    code = kind == K_DATA ? 354 : kind == K_CONNECT ? 220 : 250;
  else if (v == SMTPD_REJECT)
    code = (r & 7) == 0 ? 421 : (r & 1) ? 554 : 550;
  else
    code = (r & 7) == 0 ? 421 : (r & 1) ? 451 : 450;
  r >>= 3;
  if (code != 354 && (r & 1)) {
    snprintf(enhbuf, sizeof enhbuf, "%d.1.2", code / 100);
    enh = enhbuf;
  }
  r >>= 1;
  if (r & 1) {
    const char *lines[3] = {"line one", texts[(r >> 1) & 3], "line three"};
    rv = smtpd_session_set_reply_lines(h->s, code, enh, lines, 3);
  } else {
    rv = smtpd_session_set_reply(h->s, code, enh, texts[(r >> 1) & 3]);
  }
  /* on_data also decides the first BDAT chunk, where 354 is no reply:
   * the host cannot tell the two apart, so with CHUNKING on a 354 may be
   * refused (see docs/fuzzing.md) */
  if (code == 354 && h->c->chunking && rv == SMTPD_ERR_INVALID_ARGUMENT)
    return;
  if (rv == SMTPD_ERR_NOMEM && h->nomem && h->mem->failed)
    return; /* run 4: the reply buffer could not be allocated */
  FZ_CHECK(rv == 0, "valid reply %d refused: %d", code, rv);
  ev(h, "reply %d", code);
}

static smtpd_verdict decide(host *h, const char *what, int kind) {
  uint64_t k = h->ndec++;
  uint64_t r = fz_mix(((uint64_t)h->c->seed << 40) ^
                      (k * UINT64_C(0x100000001b3)) ^ UINT64_C(0x5bd1e995));
  smtpd_verdict v = SMTPD_ACCEPT;
  if (h->c->seed == 0) {
    ev(h, "%s #%llu accept", what, (unsigned long long)k);
    return SMTPD_ACCEPT;
  }
  switch (r % 16) {
  case 0:
    v = kind == K_CONNECT && (r & 0x30) ? SMTPD_ACCEPT : SMTPD_REJECT;
    break;
  case 1:
    v = kind == K_CONNECT && (r & 0x30) ? SMTPD_ACCEPT : SMTPD_TEMPFAIL;
    break;
  case 2:
  case 3:
    h->pause_decision = 1;
    h->pause_kind = kind;
    h->pause_key = fz_mix(r);
    ev(h, "%s #%llu defer", what, (unsigned long long)k);
    return SMTPD_DEFER;
  default:
    break;
  }
  maybe_reply(h, r >> 8, v, kind);
  ev(h, "%s #%llu -> %d", what, (unsigned long long)k, (int)v);
  return v;
}

static smtpd_verdict on_connect(smtpd_session *s, void *ud) {
  host *h = ud;
  FZ_CHECK(smtpd_session_hostname(s) != NULL, "no hostname");
  ev(h, "connect [%s] port %u", smtpd_session_client_addr(s)
                                    ? smtpd_session_client_addr(s)
                                    : "-",
     smtpd_session_client_port(s));
  return decide(h, "connect", K_CONNECT);
}

static smtpd_verdict on_helo(smtpd_session *s, const smtpd_helo *x, void *ud) {
  host *h = ud;
  const char *q;
  (void)s;
  FZ_CHECK(x->name && x->safe_name, "helo without name");
  for (q = x->safe_name; *q; q++)
    FZ_CHECK((unsigned char)*q > 0x20 && (unsigned char)*q < 0x7f &&
                 !strchr("<>()\\\";@", *q),
             "helo safe_name not neutered: %s", x->safe_name);
  FZ_CHECK(strlen(x->name) == strlen(x->safe_name), "neutered length");
  ev(h, "helo %d [%s]", x->esmtp, x->safe_name);
  return decide(h, "helo", K_OWN);
}

static void check_params(const smtpd_param *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    const char *k;
    FZ_CHECK(p[i].keyword && *p[i].keyword, "empty parameter keyword");
    for (k = p[i].keyword; *k; k++)
      FZ_CHECK((*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
                   *k == '-',
               "keyword not upper-cased esmtp-keyword: %s", p[i].keyword);
    FZ_CHECK(!p[i].value || *p[i].value, "empty parameter value");
  }
}

static smtpd_verdict on_mail(smtpd_session *s, const smtpd_mail *m, void *ud) {
  host *h = ud;
  (void)s;
  FZ_CHECK(m->address && m->local && m->domain, "mail strings");
  FZ_CHECK(strlen(m->address) <= 256 && strlen(m->local) <= 64 &&
               strlen(m->domain) <= 255,
           "mail address over RFC limits");
  FZ_CHECK(printable(m->auth), "AUTH= not decoded to text");
  FZ_CHECK(!m->dsn_envid ||
               (printable(m->dsn_envid) && strlen(m->dsn_envid) <= 100),
           "ENVID not printable/limited");
  FZ_CHECK(!m->requiretls || smtpd_session_tls(s), "REQUIRETLS w/o TLS");
  FZ_CHECK(m->body != SMTPD_BODY_BINARYMIME || h->c->chunking,
           "BINARYMIME without CHUNKING");
  check_params(m->params, m->nparams);
  ev(h, "mail [%s] size %llu/%d body %d utf8 %d ret %d envid [%s] n %zu",
     m->address, (unsigned long long)m->size, m->has_size, (int)m->body,
     m->smtputf8, (int)m->dsn_ret, m->dsn_envid ? m->dsn_envid : "-",
     m->nparams);
  return decide(h, "mail", K_PLAIN);
}

static smtpd_verdict on_rcpt(smtpd_session *s, const smtpd_rcpt *r, void *ud) {
  host *h = ud;
  FZ_CHECK(r->address && r->local && r->domain, "rcpt strings");
  FZ_CHECK(strlen(r->address) <= 256 && strlen(r->local) <= 64 &&
               strlen(r->domain) <= 255,
           "rcpt address over RFC limits");
  FZ_CHECK(r->index == smtpd_session_recipient_count(s), "rcpt index");
  FZ_CHECK(r->index < h->c->rcpt_limit, "rcpt beyond the limit asked");
  FZ_CHECK(!(r->dsn_notify & SMTPD_DSN_NOTIFY_NEVER) ||
               r->dsn_notify == SMTPD_DSN_NOTIFY_NEVER,
           "NOTIFY=NEVER with others");
  FZ_CHECK(!r->dsn_orcpt || (printable(r->dsn_orcpt) && r->dsn_orcpt_type),
           "ORCPT");
  check_params(r->params, r->nparams);
  ev(h, "rcpt [%s] idx %zu notify %u orcpt [%s]", r->address, r->index,
     r->dsn_notify, r->dsn_orcpt ? r->dsn_orcpt : "-");
  return decide(h, "rcpt", K_PLAIN);
}

static smtpd_verdict on_data(smtpd_session *s, void *ud) {
  host *h = ud;
  (void)s;
  h->body.len = 0;
  h->body_rejected = 0;
  h->chunk_on_data = 1;
  h->bdat_acc.len = 0; /* a new message: its first chunk is being read */
  return decide(h, "data", K_DATA);
}

static void check_message(host *h, const smtpd_message *m) {
  size_t i;
  FZ_CHECK(m->size == h->body.len, "message size %llu but %zu delivered",
           (unsigned long long)m->size, h->body.len);
  FZ_CHECK(m->nrecipients >= 1 &&
               m->nrecipients == smtpd_session_recipient_count(h->s) &&
               m->nrecipients <= h->c->rcpt_limit,
           "message with %zu recipients", m->nrecipients);
  FZ_CHECK(!h->c->size_limit || m->size <= h->c->size_limit,
           "message over the size limit accepted");
  FZ_CHECK(!h->body_rejected, "message the host refused was completed");
  for (i = 0; i < m->nrecipients; i++)
    FZ_CHECK(m->recipients[i] != NULL, "NULL recipient");
  FZ_CHECK(m->recipients[m->nrecipients] == NULL, "recipients not NULL-ended");
  if (h->lockstep && h->ref && !m->chunked) {
    FZ_CHECK(fz_same(h->ref->p, h->ref->len, h->body.p, h->body.len),
             "delivered body differs from the reference unstuffing "
             "(%zu vs %zu octets)",
             h->body.len, h->ref->len);
  }
  if (h->lockstep && m->chunked) {
    FZ_CHECK(h->body.len == h->bdat_acc.len + h->chunk_len &&
                 fz_same(h->body.p, h->bdat_acc.len, h->bdat_acc.p,
                         h->bdat_acc.len) &&
                 fz_same(h->body.p ? h->body.p + h->bdat_acc.len : NULL,
                         h->chunk_len, h->chunk, h->chunk_len),
             "BDAT body differs from the chunks sent (%zu vs %zu+%zu)",
             h->body.len, h->bdat_acc.len, h->chunk_len);
  }
}

static smtpd_verdict on_complete(smtpd_session *s, const smtpd_message *m,
                                 void *ud) {
  host *h = ud;
  (void)s;
  FZ_CHECK(!h->c->per_rcpt && !h->c->lmtp, "on_data_complete per recipient");
  check_message(h, m);
  ev(h, "complete size %llu rcpts %zu chunked %d hash %08x",
     (unsigned long long)m->size, m->nrecipients, m->chunked,
     fnv(h->body.p, h->body.len));
  h->completes++;
  return decide(h, "complete", K_PLAIN);
}

static smtpd_verdict on_complete_rcpt(smtpd_session *s, const smtpd_message *m,
                                      size_t index, void *ud) {
  host *h = ud;
  (void)s;
  FZ_CHECK(h->c->per_rcpt || h->c->lmtp, "per-recipient callback");
  FZ_CHECK(index < m->nrecipients, "rcpt index %zu of %zu", index,
           m->nrecipients);
  if (index == 0) {
    check_message(h, m);
    h->completes++;
  }
  ev(h, "complete-rcpt %zu size %llu hash %08x", index,
     (unsigned long long)m->size, fnv(h->body.p, h->body.len));
  return decide(h, "complete-rcpt", K_PLAIN);
}

static smtpd_verdict on_vrfy(smtpd_session *s, const char *arg, void *ud) {
  host *h = ud;
  (void)s;
  FZ_CHECK(arg && *arg, "empty VRFY");
  ev(h, "vrfy [%zu]", strlen(arg));
  return decide(h, "vrfy", K_PLAIN);
}

static int has_virus(const fz_buf *b, size_t n) {
  size_t from = b->len > n + 4 ? b->len - n - 4 : 0, i;
  for (i = from; i + 5 <= b->len; i++)
    if (!memcmp(b->p + i, "VIRUS", 5))
      return 1;
  return 0;
}

/* A host that refuses on content must not see a split-dependent world,
 * under every policy: the text before a bare CR/LF or the end of an
 * over-long line reaches on_body before the core dooms the message
 * (bug 4 of docs/fuzzing.md, fixed; regressions/conversation/
 * body-before-bare-lf-split). */
static int host_scans(const conf *c) { return c->seed != 0; }

static smtpd_verdict on_body(smtpd_session *s, const uint8_t *d, size_t n,
                             void *ud) {
  host *h = ud;
  (void)s;
  FZ_CHECK(n > 0, "empty body chunk");
  FZ_CHECK(!h->body_rejected, "on_body after the host refused the body");
  fz_buf_put(&h->body, d, n);
  if (host_scans(h->c) && has_virus(&h->body, n)) {
    h->body_rejected = 1;
    return SMTPD_REJECT;
  }
  if (h->c->seed && (fz_next(&h->local) & 3) == 0) {
    h->body_paused = 1;
    return SMTPD_DEFER;
  }
  return SMTPD_ACCEPT;
}

static void on_rset(smtpd_session *s, void *ud) {
  (void)s;
  ev(ud, "rset");
}

static void on_quit(smtpd_session *s, void *ud) {
  (void)s;
  ev(ud, "quit");
}

static smtpd_verdict on_starttls(smtpd_session *s, void *ud) {
  host *h = ud;
  FZ_CHECK(!smtpd_session_tls(s), "STARTTLS asked under TLS");
  return decide(h, "starttls", K_OWN);
}

static void on_auth_ok(smtpd_session *s, const smtpd_auth_result *r,
                       void *ud) {
  host *h = ud;
  (void)s;
  FZ_CHECK(r->authcid && printable(r->authcid) && printable(r->authzid) &&
               printable(r->mechanism),
           "auth-ok strings");
  FZ_CHECK(!strcmp(r->authcid, "user"), "auth-ok for %s", r->authcid);
  ev(h, "auth-ok %s [%s] %d", r->mechanism, r->authcid, r->code);
}

static void on_auth_fail(smtpd_session *s, const smtpd_auth_result *r,
                         void *ud) {
  host *h = ud;
  (void)s;
  /* identities: no controls (docs/security.md); the built-in backend
   * passes 8-bit octets, even invalid UTF-8, through (docs/fuzzing.md) */
  FZ_CHECK(no_controls(r->authcid) && printable(r->reason),
           "auth-fail strings");
  ev(h, "auth-fail %s %d [%s]", r->mechanism, r->code,
     r->reason ? r->reason : "-");
}

static void on_tls_required(smtpd_session *s, const char *cmd, void *ud) {
  (void)s;
  ev(ud, "tls-required %s", cmd ? cmd : "-");
}

static void on_notice(smtpd_session *s, const smtpd_notice *n, void *ud) {
  host *h = ud;
  (void)s;
  if (n->type == SMTPD_NOTICE_STARTTLS_DISCARD) {
    h->discard += n->count; /* per notice split-dependent; summed */
    return;
  }
  FZ_CHECK(printable(n->command) && (!n->command || strlen(n->command) < 80),
           "notice command not sanitised");
  if (n->type == SMTPD_NOTICE_MESSAGE_ABORTED)
    h->body.len = 0;
  ev(h, "notice %d %d [%s]", (int)n->type, n->code,
     n->command ? n->command : "-");
}

static void on_close(smtpd_session *s, smtpd_close_reason r, void *ud) {
  host *h = ud;
  (void)s;
  h->body.len = 0;
  ev(h, "close %d", (int)r);
}

static smtpd_verdict on_command(smtpd_session *s, const smtpd_command *cmd,
                                void *ud) {
  host *h = ud;
  smtpd_verdict v;
  FZ_CHECK(!strcmp(cmd->verb, "XTEST") && cmd->arg, "host verb");
  ev(h, "command %s [%zu]", cmd->verb, strlen(cmd->arg));
  v = decide(h, "command", K_OWN);
  if (v == SMTPD_ACCEPT || v == SMTPD_DEFER) {
    unsigned fx = (unsigned)(fz_mix(h->ndec ^ h->c->seed) & 7);
    FZ_CHECK(smtpd_session_set_effects(s, fx) == 0, "set_effects");
  }
  return v;
}

static smtpd_verdict on_xclient(smtpd_session *s, const smtpd_xclient *x,
                                void *ud) {
  host *h = ud;
  (void)s;
  FZ_CHECK(printable(x->name) && printable(x->addr) &&
               printable(x->helo) && printable(x->login) &&
               printable(x->proto) && printable(x->port),
           "xclient attributes not decoded to text");
  ev(h, "xclient name [%zu] addr [%s] helo [%zu] login [%zu]",
     x->name ? strlen(x->name) : 0, x->addr ? x->addr : "-",
     x->helo ? strlen(x->helo) : 0, x->login ? strlen(x->login) : 0);
  return decide(h, "xclient", K_OWN);
}

static smtpd_verdict verify(smtpd_session *s, const char *mech,
                            const char *authcid, const char *authzid,
                            const char *password, size_t password_len,
                            void *ctx) {
  host *h = g_host; /* the backend is cached: ctx is the slot */
  smtpd_verdict v;
  (void)s;
  (void)ctx;
  FZ_CHECK(mech && authcid && password, "verify without strings");
  ev(h, "verify %s [%s] [%s] %zu", mech, authcid, authzid ? authzid : "-",
     password_len);
  h->creds_ok = !strcmp(authcid, "user") &&
                smtpd_consttime_equal(password, password_len, "secret", 6);
  v = decide(h, "verify", K_AUTH);
  if (v == SMTPD_ACCEPT && !h->creds_ok)
    v = SMTPD_REJECT;
  return v;
}

/* ---- one session --------------------------------------------------------------- */

/* ---- configurations, cached across executions ------------------------------- */

/* Building a configuration (some twenty setters, each rebuilding the EHLO
 * reply) cost more than a short conversation, three or four times per
 * execution. A configuration depends only on the option bits, never on
 * the session (the core never changes it), so each one is built once and
 * kept in a small table of slots keyed by those bits, with the built-in
 * SASL backend. A slot's fz_mem is the allocator of the configuration,
 * its backend and every session made on it: a run checks that its
 * session frees exactly what it allocated (the slot's blocks and octets
 * are back to what the configuration holds), and when a slot is reused
 * for other options the old configuration and backend are deleted and
 * must free everything; so must every one left at exit. */
typedef struct cfg_slot {
  int used;
  unsigned key;
  fz_mem mem;
  smtpd_config *cfg;
  smtpd_sasl_backend *be;
  long live;    /* blocks the configuration and backend hold */
  size_t bytes; /* and their octets */
} cfg_slot;

static cfg_slot g_slots[64];

static unsigned conf_key(const conf *c) {
  return (unsigned)c->le | (unsigned)c->sync_allow << 2 |
         (unsigned)c->long_reject << 3 | (unsigned)c->chunking << 4 |
         (unsigned)c->lmtp << 5 | (unsigned)c->dsn << 6 |
         (unsigned)c->xclient << 7 | (unsigned)c->starttls << 8 |
         (unsigned)c->sasl << 9 | (unsigned)c->plaintext << 10 |
         (unsigned)c->small << 11 | (unsigned)c->utf8 << 12 |
         (unsigned)c->per_rcpt << 13;
}

static void slot_drop(cfg_slot *sl) {
  if (!sl->used)
    return;
  smtpd_config_del(sl->cfg);
  FZ_CHECK(smtpd_sasl_builtin_del(sl->be) == 0, "builtin_del");
  FZ_CHECK(sl->mem.live == 0, "configuration: %ld blocks (%zu octets) leaked",
           sl->mem.live, sl->mem.bytes_live);
  memset(sl, 0, sizeof *sl);
}

static void slots_drop_all(void) {
  size_t i;
  for (i = 0; i < sizeof g_slots / sizeof g_slots[0]; i++)
    slot_drop(&g_slots[i]);
}

static void slot_build(cfg_slot *sl, const conf *c) {
  static int at_exit;
  smtpd_mem m;
  smtpd_config *cfg;
  int rv = 0;
  if (!at_exit) {
    at_exit = 1;
    atexit(slots_drop_all);
  }
  memset(sl, 0, sizeof *sl);
  m = fz_make_mem(&sl->mem);
  FZ_CHECK(smtpd_config_new(&sl->cfg, &m) == 0, "config_new");
  cfg = sl->cfg;
  rv |= smtpd_config_set_hostname(cfg, "mx.example.org");
  rv |= smtpd_config_set_line_ending(cfg, c->le);
  rv |= smtpd_config_set_sync_policy(cfg, c->sync_allow ? SMTPD_SYNC_ALLOW
                                                        : SMTPD_SYNC_REJECT);
  rv |= smtpd_config_set_long_line(cfg, c->long_reject
                                            ? SMTPD_LONG_LINE_REJECT
                                            : SMTPD_LONG_LINE_ACCEPT);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_STARTTLS, c->starttls);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_AUTH_PLAINTEXT, c->plaintext);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_CHUNKING, c->chunking);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_BINARYMIME, c->chunking);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_LMTP, c->lmtp);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_DSN, c->dsn);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_XCLIENT, c->xclient);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_SMTPUTF8, c->utf8);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_REQUIRETLS, c->utf8);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_LIMITS, c->utf8);
  rv |= smtpd_config_set_option(cfg, SMTPD_OPT_REPLY_PER_RCPT, c->per_rcpt);
  if (c->per_rcpt) {
    rv |= smtpd_config_add_param(cfg, SMTPD_PARAM_MAIL | SMTPD_PARAM_RCPT,
                                 "X-TAG", SMTPD_PARAM_OPTIONAL_VALUE);
    rv |= smtpd_config_add_command(cfg, "XTEST",
                                   SMTPD_CMD_NEEDS_HELO | SMTPD_CMD_ENDS_GROUP);
    rv |= smtpd_config_add_ehlo_keyword(cfg, "XTEST");
  }
  if (c->small) {
    rv |= smtpd_config_set_limit(cfg, SMTPD_LIMIT_MESSAGE_SIZE, c->size_limit);
    rv |= smtpd_config_set_limit(cfg, SMTPD_LIMIT_RECIPIENTS, c->rcpt_limit);
    rv |= smtpd_config_set_limit(cfg, SMTPD_LIMIT_TRANSACTIONS, 2);
    rv |= smtpd_config_set_limit(cfg, SMTPD_LIMIT_OUTPUT, c->out_limit);
  }
  FZ_CHECK(rv == 0, "config setters");
  if (c->sasl) {
    FZ_CHECK(smtpd_sasl_builtin_new(&sl->be, &m, verify, sl) == 0, "builtin");
    FZ_CHECK(smtpd_config_set_sasl(cfg, sl->be) == 0, "set_sasl");
  }
  sl->used = 1;
  sl->key = conf_key(c);
  sl->live = sl->mem.live;
  sl->bytes = sl->mem.bytes_live;
}

static cfg_slot *slot_for(const conf *c) {
  unsigned key = conf_key(c);
  cfg_slot *sl = &g_slots[(uint32_t)fz_mix(key) % 64];
  if (sl->used && sl->key == key)
    return sl;
  slot_drop(sl);
  slot_build(sl, c);
  return sl;
}

/* ---- one session --------------------------------------------------------------- */

static void setup(host *h, const conf *c) {
  smtpd_callbacks cb;
  cfg_slot *sl;
  memset(h, 0, sizeof *h);
  g_host = h;
  h->c = c;
  h->local = fz_mix(c->seed) | 1;
  buf_take(&h->out);
  buf_take(&h->ev);
  buf_take(&h->body);
  buf_take(&h->bdat_acc);
  sl = slot_for(c);
  h->cfg = sl->cfg;
  h->be = sl->be;
  h->mem = &sl->mem;
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_connect = on_connect;
  cb.on_helo = on_helo;
  cb.on_mail = on_mail;
  cb.on_rcpt = on_rcpt;
  cb.on_data = on_data;
  cb.on_data_complete = on_complete;
  cb.on_vrfy = on_vrfy;
  cb.on_body = on_body;
  cb.on_rset = on_rset;
  cb.on_quit = on_quit;
  cb.on_starttls = on_starttls;
  cb.on_auth_ok = on_auth_ok;
  cb.on_auth_fail = on_auth_fail;
  cb.on_tls_required = on_tls_required;
  cb.on_notice = on_notice;
  cb.on_close = on_close;
  cb.on_command = on_command;
  cb.on_data_complete_rcpt = on_complete_rcpt;
  cb.on_xclient = on_xclient;
  /* this run's accounting on the slot's allocator */
  h->mem->fail_at = 0;
  h->mem->failed = 0;
  h->mem->peak = 0;
  h->mem->over = 0;
  h->mem->base = h->mem->bytes_live;
  h->mem->bound = mem_bound(c);
  FZ_CHECK(smtpd_session_new(&h->s, h->cfg, &cb, h) == 0, "session_new");
  FZ_CHECK(smtpd_session_set_client(h->s, "192.0.2.7", NULL) == 0,
           "set_client");
  if (c->front == 1)
    FZ_CHECK(smtpd_session_set_proxy(h->s) == 0, "set_proxy");
  else if (c->front == 2)
    FZ_CHECK(smtpd_session_set_implicit_tls(h->s) == 0, "implicit tls");
}

static void teardown(host *h) {
  cfg_slot *sl = slot_for(h->c);
  FZ_CHECK(!h->mem->over, "engine memory %zu over the bound %zu",
           h->mem->peak, h->mem->bound);
  smtpd_session_del(h->s);
  h->s = NULL;
  FZ_CHECK(h->mem == &sl->mem && h->mem->live == sl->live &&
               h->mem->bytes_live == sl->bytes,
           "%ld blocks (%zu octets) leaked", h->mem->live - sl->live,
           h->mem->bytes_live - sl->bytes);
  h->mem->fail_at = 0;
  h->mem->bound = 0;
  buf_give(&h->body);
  buf_give(&h->bdat_acc);
}

static void api(int rv, const char *what) {
  if (rv == SMTPD_ERR_NOMEM && g_host && g_host->nomem &&
      g_host->mem->failed) {
    g_host->dead = 1;
    return;
  }
  FZ_CHECK(rv >= 0, "%s returned %d", what, rv);
}

/* smtpd_session_status answers what the single queries answer, taken at
 * the same moment. */
static void status_agrees(smtpd_session *s) {
  smtpd_status st;
  uint64_t e1 = 0, e2 = 0;
  unsigned f = 0;
  uint32_t dl, rd;
  FZ_CHECK(smtpd_session_status(s, &st) == 0, "status refused");
  f |= smtpd_session_want_read(s) ? SMTPD_STATUS_WANT_READ : 0u;
  f |= smtpd_session_want_write(s) ? SMTPD_STATUS_WANT_WRITE : 0u;
  f |= smtpd_session_is_done(s) ? SMTPD_STATUS_DONE : 0u;
  f |= smtpd_session_is_paused(s) ? SMTPD_STATUS_PAUSED : 0u;
  f |= smtpd_session_is_closing(s) ? SMTPD_STATUS_CLOSING : 0u;
  f |= smtpd_session_is_tls_wait(s) ? SMTPD_STATUS_TLS_WAIT : 0u;
  dl = smtpd_session_deadline(s, NULL, &e1);
  rd = smtpd_session_reply_delay(s, &e2);
  FZ_CHECK(st.flags == f && st.output == smtpd_session_output(s, NULL) &&
               st.timeout == smtpd_session_timeout(s, NULL) &&
               st.deadline == dl && st.deadline_epoch == e1 &&
               st.reply_delay == rd && st.reply_delay_epoch == e2,
           "status %#x out %zu t %u d %u/%llu r %u/%llu; single queries %#x "
           "d %u/%llu r %u/%llu",
           st.flags, st.output, (unsigned)st.timeout, (unsigned)st.deadline,
           (unsigned long long)st.deadline_epoch, (unsigned)st.reply_delay,
           (unsigned long long)st.reply_delay_epoch, f, (unsigned)dl,
           (unsigned long long)e1, (unsigned)rd, (unsigned long long)e2);
}

/* After every API call: nothing queued once closing; 421/221 close; the
 * one-call status agrees with the single queries. */
static void after(host *h) {
  size_t queued = smtpd_session_output(h->s, NULL);
  size_t total = h->out.len + queued;
  status_agrees(h->s);
  if (h->closing_seen)
    FZ_CHECK(total == h->closing_at, "output after close (%zu -> %zu)",
             h->closing_at, total);
  else if (smtpd_session_is_closing(h->s)) {
    h->closing_seen = 1;
    h->closing_at = total;
  }
  if (!smtpd_session_is_closing(h->s) && queued >= 6) {
    const uint8_t *p;
    size_t i;
    smtpd_session_output(h->s, &p);
    i = queued - 2;
    while (i > 0 && p[i - 1] != '\n')
      i--;
    FZ_CHECK(memcmp(p + i, "421 ", 4) && memcmp(p + i, "221 ", 4),
             "%.3s queued but the session is not closing", p + i);
  }
  FZ_CHECK(!smtpd_session_is_paused(h->s) || !smtpd_session_is_done(h->s),
           "done while paused");
}

static void drain(host *h) {
  const uint8_t *p;
  size_t n;
  if (h->dead)
    return;
  n = smtpd_session_output(h->s, &p);
  if (n) {
    FZ_CHECK(smtpd_session_want_write(h->s), "output but no want_write");
    fz_buf_put(&h->out, p, n);
    api(smtpd_session_consume(h->s, n), "consume");
  }
  FZ_CHECK(smtpd_session_reply_delay(h->s, NULL) == 0,
           "reply delay left after everything was written");
  if (smtpd_session_is_closing(h->s))
    FZ_CHECK(smtpd_session_is_done(h->s) || smtpd_session_is_paused(h->s),
             "closing and drained but not done");
}

static void answer_pause(host *h) {
  if (h->body_paused || !h->pause_decision) {
    h->body_paused = 0;
    api(smtpd_session_resume(h->s, SMTPD_ACCEPT), "resume body");
    return;
  }
  h->pause_decision = 0;
  {
    uint64_t r = h->pause_key;
    int v = (int)(r % 16);
    if (v == 0) {
      ev(h, "timeout while paused");
      api(smtpd_session_timeout_expired(h->s), "timeout_expired");
      FZ_CHECK(!smtpd_session_is_paused(h->s), "paused after timeout");
      return;
    }
    if (v == 1) {
      ev(h, "close while paused");
      api(smtpd_session_close(h->s, NULL, NULL), "close");
      FZ_CHECK(!smtpd_session_is_paused(h->s), "paused after close");
      return;
    }
    v = v == 2 ? SMTPD_DISCONNECT
        : v < 11 ? SMTPD_ACCEPT
        : v < 14 ? SMTPD_REJECT
                 : SMTPD_TEMPFAIL;
    if (v == SMTPD_ACCEPT && h->pause_kind == K_AUTH && !h->creds_ok)
      v = SMTPD_REJECT;
    if (v != SMTPD_DISCONNECT)
      maybe_reply(h, r >> 8, (smtpd_verdict)v, h->pause_kind);
    ev(h, "resume %d", v);
    api(smtpd_session_resume(h->s, (smtpd_verdict)v), "resume");
  }
}

/* Feed n octets as one write of the client. */
static void feed(host *h, const uint8_t *p, size_t n) {
  size_t off = 0;
  long spins = 0;
  while (off < n && !h->dead) {
    ptrdiff_t took = smtpd_session_feed(h->s, p + off, n - off);
    api((int)(took < 0 ? took : 0), "feed");
    if (h->dead)
      return;
    FZ_CHECK((size_t)took <= n - off, "feed took more than given");
    off += (size_t)took;
    after(h);
    if (off < n) {
      FZ_CHECK(!smtpd_session_is_closing(h->s), "closing session refused");
      if (smtpd_session_is_paused(h->s)) {
        FZ_CHECK(!smtpd_session_want_read(h->s), "paused but want_read");
        answer_pause(h);
      } else {
        FZ_CHECK(smtpd_session_output(h->s, NULL) >= h->c->out_limit,
                 "feed stopped without pause or full output");
        FZ_CHECK(!smtpd_session_want_read(h->s), "full output, want_read");
        drain(h);
      }
      after(h);
      FZ_CHECK(++spins < 10000000, "feed makes no progress");
    }
  }
  while (smtpd_session_is_paused(h->s) && !h->dead) {
    answer_pause(h);
    after(h);
  }
}

static void tls_now(host *h) {
  smtpd_tls_info ti;
  int rv;
  memset(&ti, 0, sizeof ti);
  ti.protocol = "TLSv1.3";
  ti.cipher = "TLS_AES_256_GCM_SHA384";
  ti.cipher_bits = 256;
  ti.alg_bits = 256;
  rv = smtpd_session_tls_established(h->s, &ti);
  api(rv, "tls_established");
  if (h->dead)
    return;
  ev(h, "tls discarded %llu", (unsigned long long)h->discard);
  h->discard = 0;
  FZ_CHECK(smtpd_session_tls(h->s) != NULL, "TLS not recorded");
  FZ_CHECK(smtpd_session_helo(h->s) == NULL &&
               smtpd_session_auth_user(h->s) == NULL &&
               smtpd_session_sender(h->s) == NULL,
           "state survived the TLS handshake");
  after(h);
}

/* Calls on a NULL session: refused, NULL or 0, whatever any session is
 * doing, so checked once per execution (poke used to repeat them after
 * every unit of the lock-step run). */
static void poke_null(void) {
  uint8_t junk[4];
  FZ_CHECK(smtpd_session_feed(NULL, junk, 1) == SMTPD_ERR_INVALID_ARGUMENT,
           "feed arguments");
  {
    const uint8_t *np = junk;
    FZ_CHECK(smtpd_session_output(NULL, &np) == 0 && np == NULL &&
                 smtpd_session_consume(NULL, 0) ==
                     SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_resume(NULL, SMTPD_ACCEPT) ==
                     SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_set_reply(NULL, 250, NULL, "x") ==
                     SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_set_effects(NULL, 0) ==
                     SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_timeout_expired(NULL) ==
                     SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_close(NULL, NULL, NULL) ==
                     SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_start(NULL) == SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_set_client(NULL, "x", NULL) ==
                     SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_set_proxy(NULL) == SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_set_implicit_tls(NULL) ==
                     SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_set_client_port(NULL, 1) ==
                     SMTPD_ERR_INVALID_ARGUMENT,
             "NULL arguments");
    FZ_CHECK(!smtpd_session_want_read(NULL) && !smtpd_session_want_write(NULL) &&
                 smtpd_session_is_done(NULL) && !smtpd_session_is_paused(NULL) &&
                 !smtpd_session_is_closing(NULL) &&
                 !smtpd_session_is_tls_wait(NULL) &&
                 !smtpd_session_hostname(NULL) && !smtpd_session_helo(NULL) &&
                 !smtpd_session_helo_safe(NULL) &&
                 !smtpd_session_is_esmtp(NULL) &&
                 !smtpd_session_client_addr(NULL) &&
                 !smtpd_session_client_rdns(NULL) && !smtpd_session_tls(NULL) &&
                 !smtpd_session_auth_user(NULL) &&
                 !smtpd_session_auth_mechanism(NULL) &&
                 !smtpd_session_sender(NULL) &&
                 !smtpd_session_recipient_count(NULL) &&
                 !smtpd_session_recipient(NULL, 0) &&
                 !smtpd_session_smtputf8(NULL) &&
                 !smtpd_session_requiretls(NULL) &&
                 !smtpd_session_client_port(NULL) &&
                 !smtpd_session_protocol(NULL) &&
                 !smtpd_session_user_data(NULL) &&
                 !smtpd_session_timeout(NULL, NULL) &&
                 !smtpd_session_deadline(NULL, NULL, NULL) &&
                 !smtpd_session_reply_delay(NULL, NULL) &&
                 smtpd_session_status(NULL, NULL) ==
                     SMTPD_ERR_INVALID_ARGUMENT,
             "NULL session accessors");
  }
}

/* The host looks at the session between packets: the accessors agree
 * with each other and with the configuration, and calls that are not
 * allowed now are refused without effect (nothing here changes the
 * session, so the runs stay comparable). */
static void poke(host *h) {
  smtpd_session *s = h->s;
  size_t n = smtpd_session_recipient_count(s), i;
  const char *helo = smtpd_session_helo(s), *safe = smtpd_session_helo_safe(s);
  const char *user = smtpd_session_auth_user(s);
  const char *proto = smtpd_session_protocol(s);
  const smtpd_tls_info *tls = smtpd_session_tls(s);
  for (i = 0; i < n; i++)
    FZ_CHECK(smtpd_session_recipient(s, i) != NULL, "recipient %zu", i);
  FZ_CHECK(smtpd_session_recipient(s, n) == NULL, "recipient past count");
  FZ_CHECK(n <= h->c->rcpt_limit, "%zu recipients over the limit", n);
  FZ_CHECK(n == 0 || smtpd_session_sender(s) != NULL, "recipients, no MAIL");
  FZ_CHECK(!helo == !safe && (!helo || strlen(helo) == strlen(safe)),
           "helo / helo_safe");
  FZ_CHECK(!user == !smtpd_session_auth_mechanism(s), "auth user/mechanism");
  FZ_CHECK(!user || h->c->sasl || h->c->xclient, "authenticated without AUTH");
  FZ_CHECK(proto && (h->c->lmtp ? !strcmp(proto, "LMTP")
                                : (!strcmp(proto, "SMTP") ||
                                   !strcmp(proto, "ESMTP"))),
           "protocol %s", proto ? proto : "-");
  FZ_CHECK(!tls || (tls->protocol && !strcmp(tls->protocol, "TLSv1.3") &&
                    tls->cipher_bits == 256),
           "tls info");
  FZ_CHECK(!smtpd_session_requiretls(s) || tls, "REQUIRETLS without TLS");
  FZ_CHECK(smtpd_session_client_addr(s) != NULL, "client address");
  FZ_CHECK(smtpd_session_client_port(s) <= 65535, "port");
  FZ_CHECK(!strcmp(smtpd_session_hostname(s), "mx.example.org"), "hostname");
  if (!smtpd_session_is_paused(s)) {
    FZ_CHECK(smtpd_session_set_reply(s, 250, NULL, "x") ==
                 SMTPD_ERR_INVALID_STATE,
             "set_reply outside a decision");
    FZ_CHECK(smtpd_session_resume(s, SMTPD_ACCEPT) == SMTPD_ERR_INVALID_STATE,
             "resume without a pause");
    FZ_CHECK(smtpd_session_set_effects(s, 0) == SMTPD_ERR_INVALID_STATE,
             "set_effects outside a command");
  }
  FZ_CHECK(smtpd_session_start(s) == SMTPD_ERR_INVALID_STATE, "start twice");
  FZ_CHECK(smtpd_session_set_proxy(s) == SMTPD_ERR_INVALID_STATE &&
               smtpd_session_set_implicit_tls(s) == SMTPD_ERR_INVALID_STATE,
           "front-end options after start");
  FZ_CHECK(smtpd_session_set_client_port(s, 70000) ==
               SMTPD_ERR_INVALID_ARGUMENT,
           "port 70000");
  FZ_CHECK(smtpd_session_consume(s, smtpd_session_output(s, NULL) + 1) ==
               SMTPD_ERR_INVALID_ARGUMENT,
           "consume past the output");
  if (!smtpd_session_is_tls_wait(s)) {
    smtpd_tls_info ti;
    memset(&ti, 0, sizeof ti);
    FZ_CHECK(smtpd_session_tls_established(s, &ti) == SMTPD_ERR_INVALID_STATE,
             "tls_established without STARTTLS");
  }
  FZ_CHECK(smtpd_session_feed(s, NULL, 1) == SMTPD_ERR_INVALID_ARGUMENT &&
               smtpd_session_tls_established(s, NULL) ==
                   SMTPD_ERR_INVALID_ARGUMENT,
           "feed / tls_established arguments");
  {
    static const char *const many[33] = {"x"};
    smtpd_session_set_user_data(NULL, h);
    smtpd_session_set_user_data(s, h);
    FZ_CHECK(smtpd_session_user_data(s) == h, "user data");
    if (!smtpd_session_is_paused(s))
      FZ_CHECK(smtpd_session_set_reply_lines(s, 250, NULL, many, 33) ==
                   SMTPD_ERR_INVALID_STATE,
               "set_reply_lines outside a decision");
    FZ_CHECK(smtpd_session_close(s, "5.0.0", NULL) ==
                     SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_close(s, NULL, "bad\r\ntext") ==
                     SMTPD_ERR_INVALID_ARGUMENT,
             "close with a bad reply");
  }
  if (smtpd_session_is_closing(s)) {
    smtpd_timeout k;
    FZ_CHECK(!smtpd_session_want_read(s), "closing but want_read");
    FZ_CHECK(smtpd_session_deadline(s, &k, NULL) == 0, "deadline closed");
    if (!smtpd_session_output(s, NULL))
      FZ_CHECK(smtpd_session_timeout(s, &k) == 0 && k == SMTPD_TIMEOUT_NONE,
               "timeout once closed and written");
  }
}

/* A packet boundary: drain, then a handshake the session waits for. */
static void boundary(host *h) {
  drain(h);
  after(h);
  if (h->dead) {
    FZ_CHECK(smtpd_session_is_closing(h->s) && smtpd_session_is_done(h->s) &&
                 !smtpd_session_want_read(h->s) &&
                 !smtpd_session_want_write(h->s),
             "a session that ran out of memory still wants I/O");
    return;
  }
  poke(h);
  if (smtpd_session_is_tls_wait(h->s)) {
    tls_now(h);
    while (smtpd_session_is_paused(h->s) && !h->dead) { /* implicit TLS */
      answer_pause(h);
      after(h);
    }
    drain(h); /* the greeting goes out before the client talks */
    after(h);
  }
}

static void start(host *h) {
  api(smtpd_session_start(h->s), "start");
  after(h);
  while (smtpd_session_is_paused(h->s) && !h->dead) {
    answer_pause(h);
    after(h);
  }
}

static void finish(host *h) {
  char why[200];
  fz_replies r;
  drain(h);
  after(h);
  if (h->dead) {
    FZ_CHECK(smtpd_session_is_closing(h->s) && smtpd_session_is_done(h->s) &&
                 !smtpd_session_want_read(h->s) &&
                 !smtpd_session_want_write(h->s),
             "a session that ran out of memory still wants I/O");
    return;
  }
  FZ_CHECK(!fz_parse_replies(h->out.p, h->out.len, &r, why, sizeof why),
           "replies: %s", why);
  FZ_CHECK(!smtpd_session_want_write(h->s), "want_write after draining");
  FZ_CHECK(!smtpd_session_is_closing(h->s) || !smtpd_session_want_read(h->s),
           "closing but want_read");
  ev(h, "end closing %d", smtpd_session_is_closing(h->s));
}

/* A short write: the host writes half of what is queued. */
static void short_write(host *h) {
  const uint8_t *p;
  size_t n;
  if (h->dead)
    return;
  n = smtpd_session_output(h->s, &p);
  if (n > 1) {
    fz_buf_put(&h->out, p, n / 2);
    api(smtpd_session_consume(h->s, n / 2), "consume");
    FZ_CHECK(smtpd_session_output(h->s, &p) == n - n / 2, "partial consume");
  }
}

/* Runs 1 and 2: packets, split at the marks (split != 0). Run 4: whole,
 * with allocation number fail_at (after setup) failing. */
static void run_packets(const prog *p, const conf *c, int split, host *h,
                        long fail_at) {
  size_t mi = 0, off = 0;
  uint64_t st = fz_mix(p->seed + 7) | 1;
  int extra = split && (p->seed & 1);
  setup(h, c);
  if (fail_at) {
    h->nomem = 1;
    h->mem->fail_at = h->mem->attempts + fail_at;
  }
  start(h);
  drain(h);
  after(h);
  while (off < p->data.len || mi < p->nm) {
    size_t next = p->data.len;
    int kind = 0;
    /* split marks cut only run 2; run 1 feeds each packet whole */
    while (!split && mi < p->nm && p->m[mi].kind == MARK_SPLIT)
      mi++;
    if (mi < p->nm) {
      next = p->m[mi].off;
      kind = p->m[mi].kind;
    }
    while (off < next) {
      size_t k = next - off;
      if (extra && !smtpd_session_is_closing(h->s)) {
        uint64_t x = fz_next(&st);
        size_t lim = (x & 3) == 0 ? 2 : (x & 3) == 1 ? 40 : 3000;
        size_t want = 1 + (size_t)((x >> 8) % lim);
        if (want < k)
          k = want;
      }
      feed(h, p->data.p + off, k);
      off += k;
    }
    if (mi < p->nm) {
      mi++;
      if (kind == MARK_SHORT)
        short_write(h);
      if (kind == MARK_PACKET || kind == MARK_TIMEOUT)
        boundary(h);
      if (kind == MARK_TIMEOUT && !h->dead) {
        ev(h, "host timer");
        api(smtpd_session_timeout_expired(h->s), "timeout_expired");
        after(h);
        drain(h);
      }
    }
  }
  finish(h);
}

/* the replies written from offset off on (never a NULL base) */
#define OUT(h, off) ((h)->out.p ? (h)->out.p + (off) : (const uint8_t *)"")

/* ---- run 3: the reference framer ----------------------------------------------- */

/* is the line p[0..n) (ending in LF, n <= command limit) a BDAT command
 * under the session's line checks? 0: no; 1: yes, *size, *last; 2: a
 * BDAT line that cannot be parsed. */
static int bdat_line(const conf *c, const uint8_t *p, size_t n,
                     uint64_t *size, int *last) {
  size_t len, i, digits;
  int crlf = n >= 2 && p[n - 2] == '\r';
  const uint8_t *a;
  uint64_t v = 0;
  if (!c->chunking || n > c->cmd_limit || n < 5)
    return 0;
  if (!crlf && c->le == SMTPD_LINE_ENDING_REJECT)
    return 0;
  len = n - (crlf ? 2 : 1);
  if (memchr(p, 0, len))
    return 0;
  if (c->le == SMTPD_LINE_ENDING_REJECT && memchr(p, '\r', len))
    return 0;
  for (i = 0; i < len; i++)
    if (p[i] >= 0x80)
      return 0; /* non-ASCII: 500 (invalid) or 501 (not a number): no chunk */
  if (len < 4 || (p[0] | 0x20) != 'b' || (p[1] | 0x20) != 'd' ||
      (p[2] | 0x20) != 'a' || (p[3] | 0x20) != 't' || (len > 4 && p[4] != ' '))
    return 0;
  if (len < 6)
    return 2;
  a = p + 5;
  len -= 5;
  for (digits = 0; digits < len && a[digits] >= '0' && a[digits] <= '9';
       digits++)
    ;
  if (digits == 0 || digits > 20)
    return 2;
  for (i = 0; i < digits; i++) {
    unsigned d = (unsigned)(a[i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return 2;
    v = v * 10 + d;
  }
  *last = 0;
  if (digits < len) {
    if (len - digits != 5 || a[digits] != ' ' ||
        (a[digits + 1] | 0x20) != 'l' || (a[digits + 2] | 0x20) != 'a' ||
        (a[digits + 3] | 0x20) != 's' || (a[digits + 4] | 0x20) != 't')
      return 2;
    *last = 1;
  }
  *size = v;
  return 1;
}

enum { DOOM_NONE = 0, DOOM_LF, DOOM_CR, DOOM_LONG };

/* The body as the host must receive it: raw[0..n) ends at the CRLF
 * before the terminating ".\r\n". Dot-unstuffing at line starts (after a
 * real CRLF only), bare LF to CRLF under normalize; *doom the first
 * reason the core must refuse it (in stream order), size aside, and
 * *doom_at how much of the body the host has been handed by then: the
 * text before a bare LF, through a bare CR, through an over-long line's
 * end. */
static void ref_body(const conf *c, const uint8_t *raw, size_t n, fz_buf *out,
                     int *doom, size_t *doom_at) {
  size_t i, line = 0;
  int ls = 1;
  *doom = DOOM_NONE;
  *doom_at = 0;
  out->len = 0;
  for (i = 0; i < n; i++) {
    uint8_t b = raw[i];
    if (ls && b == '.') {
      ls = 0;
      line = 1;
      continue;
    }
    ls = 0;
    if (b == '\r' && i + 1 < n && raw[i + 1] == '\n') {
      fz_buf_put(out, "\r\n", 2);
      line += 2;
      i++;
      if (c->long_reject && line > c->text_limit && !*doom)
        *doom = DOOM_LONG, *doom_at = out->len;
      line = 0;
      ls = 1;
    } else if (b == '\r') {
      fz_buf_byte(out, b);
      if (c->le == SMTPD_LINE_ENDING_REJECT && !*doom)
        *doom = DOOM_CR, *doom_at = out->len;
      line++;
    } else if (b == '\n') {
      if (c->le == SMTPD_LINE_ENDING_REJECT && !*doom)
        *doom = DOOM_LF, *doom_at = out->len;
      if (c->le == SMTPD_LINE_ENDING_NORMALIZE)
        fz_buf_put(out, "\r\n", 2);
      else
        fz_buf_byte(out, b);
      line++;
      if (c->long_reject && line > c->text_limit && !*doom)
        *doom = DOOM_LONG, *doom_at = out->len;
      line = 0;
    } else {
      fz_buf_byte(out, b);
      line++;
    }
  }
}

static int contains(const fz_buf *b, const char *t) {
  size_t k = strlen(t), i;
  for (i = 0; i + k <= b->len; i++)
    if (!memcmp(b->p + i, t, k))
      return 1;
  return 0;
}

/* The first line of the replies p[0..n) equals want (without CRLF). */
static int first_line_is(const uint8_t *p, size_t n, const char *want) {
  size_t k = strlen(want);
  return n >= k + 2 && !memcmp(p, want, k) && p[k] == '\r' && p[k + 1] == '\n';
}

enum { M_CMD, M_AUTH, M_DATA, M_REJECTED, M_CLOSED };

typedef struct lock {
  host *h;
  const conf *c;
  const prog *p;
  size_t mi; /* next timeout mark to apply */
  int mode;
  fz_buf raw; /* body bytes of the DATA message in progress */
  fz_buf ref;
  int raw_crlf; /* the last body unit ended in CRLF (or none yet) */
} lock;

/* Feed one unit; returns the replies it produced (parsed). */
static void unit(lock *L, const uint8_t *u, size_t n, fz_replies *r,
                 size_t *before) {
  host *h = L->h;
  char why[200];
  *before = h->out.len;
  feed(h, u, n);
  /* a failed AUTH is tarpitted: its reply waits */
  if (smtpd_session_output(h->s, NULL)) {
    const uint8_t *o;
    size_t k = smtpd_session_output(h->s, &o), i;
    for (i = 0; i + 4 <= k; i++)
      if ((i == 0 || o[i - 1] == '\n') && !memcmp(o + i, "535 ", 4)) {
        uint64_t e = 0;
        FZ_CHECK(smtpd_session_reply_delay(h->s, &e) == 1000 && e != 0,
                 "535 without a reply delay");
        break;
      }
  }
  drain(h);
  after(h);
  poke(h);
  FZ_CHECK(!fz_parse_replies(OUT(h, *before), h->out.len - *before, r, why,
                             sizeof why),
           "lockstep replies: %s", why);
  if (smtpd_session_is_tls_wait(h->s)) {
    FZ_CHECK(r->groups == 1 &&
                 first_line_is(OUT(h, *before), h->out.len - *before,
                               "220 2.0.0 Ready to start TLS"),
             "TLS wait without '220 2.0.0 Ready to start TLS'");
    tls_now(h);
  }
}

static void lock_mode(lock *L, const fz_replies *r) {
  host *h = L->h;
  if (smtpd_session_is_closing(h->s)) {
    L->mode = M_CLOSED;
    return;
  }
  if (L->mode == M_REJECTED)
    return;
  if (r->groups && r->last_code == 354) {
    L->mode = M_DATA;
    L->raw.len = 0;
    L->raw_crlf = 1;
    return;
  }
  L->mode = r->groups && r->last_code == 334 ? M_AUTH : M_CMD;
}

/* One complete or partial command line (not a BDAT). */
static void lock_line(lock *L, const uint8_t *u, size_t n) {
  host *h = L->h;
  fz_replies r;
  size_t before;
  int complete = u[n - 1] == '\n', was_closed = L->mode == M_CLOSED;
  if (n > 1 && L->mode != M_CLOSED) {
    /* a line's deadline runs from its first octet */
    uint64_t e = 0;
    smtpd_timeout k;
    unit(L, u, 1, &r, &before);
    FZ_CHECK(r.groups == 0, "reply to the first octet of a line");
    if (!smtpd_session_is_closing(h->s)) {
      FZ_CHECK(smtpd_session_deadline(h->s, &k, &e) > 0 && e != 0 &&
                   (k == SMTPD_TIMEOUT_LINE ||
                    (k == SMTPD_TIMEOUT_MESSAGE && L->c->chunking)),
               "no line deadline while a line is half received (kind %d)",
               (int)k);
    }
    u++;
    n--;
  }
  unit(L, u, n, &r, &before);
  if (was_closed) {
    FZ_CHECK(r.groups == 0, "reply after the session closed");
    return;
  }
  if (complete)
    FZ_CHECK(r.groups == 1 || (r.groups == 2 && r.last_code == 421),
             "command line got %zu reply groups (last %d) at out %zu",
             r.groups, r.last_code, before);
  else
    FZ_CHECK(r.groups <= 2, "partial line got %zu groups", r.groups);
  if (complete && !smtpd_session_is_closing(h->s) && !L->c->chunking) {
    smtpd_timeout k;
    uint32_t ms = smtpd_session_deadline(h->s, &k, NULL);
    FZ_CHECK(ms == 0 || (r.last_code == 354 && k == SMTPD_TIMEOUT_MESSAGE),
             "deadline %u kind %d after a complete line", ms, (int)k);
  }
  lock_mode(L, &r);
}

static void lock_bdat(lock *L, const uint8_t *u, size_t n, size_t linelen,
                      uint64_t size, int last) {
  host *h = L->h;
  fz_replies r;
  size_t before, nrcpt = smtpd_session_recipient_count(h->s);
  int whole = (uint64_t)(n - linelen) == size;
  h->chunk = u + linelen;
  h->chunk_len = n - linelen;
  h->chunk_on_data = 0;
  unit(L, u, n, &r, &before);
  if (whole) {
    size_t most = last && (L->c->per_rcpt || L->c->lmtp) && nrcpt > 1 ? nrcpt
                                                                        : 1;
    FZ_CHECK(r.groups >= 1 && (r.groups <= most ||
                               (r.groups == 2 && r.last_code == 421)),
             "BDAT %llu%s got %zu groups (rcpts %zu)",
             (unsigned long long)size, last ? " LAST" : "", r.groups, nrcpt);
  } else {
    FZ_CHECK(r.groups <= 2, "incomplete BDAT chunk got %zu groups", r.groups);
  }
  if (r.groups == 1 && r.first_code == 250 && !last) {
    /* "250 2.0.0 Ok: <n> octets received": an accepted chunk */
    char want[64];
    snprintf(want, sizeof want, "250 2.0.0 Ok: %llu octets received",
             (unsigned long long)size);
    FZ_CHECK(first_line_is(OUT(h, before), h->out.len - before, want),
             "BDAT chunk reply is not '%s'", want);
    fz_buf_put(&h->bdat_acc, h->chunk, h->chunk_len);
  }
  if (last)
    h->bdat_acc.len = 0;
  h->chunk = NULL;
  h->chunk_len = 0;
  lock_mode(L, &r);
}

static void lock_body_end(lock *L, const uint8_t *u, size_t n) {
  host *h = L->h;
  fz_replies r;
  size_t before, nrcpt = smtpd_session_recipient_count(h->s);
  int doom, completes = h->completes;
  const char *want = NULL;
  char wantbuf[128];
  size_t doom_at;
  fz_buf seen;
  ref_body(L->c, L->raw.p, L->raw.len, &L->ref, &doom, &doom_at);
  /* what the host had been handed when the core doomed the message */
  seen = L->ref;
  if (doom)
    seen.len = doom_at;
  h->ref = &L->ref;
  unit(L, u, n, &r, &before);
  h->ref = NULL;
  FZ_CHECK(r.groups >= 1 &&
               r.groups <= ((L->c->per_rcpt || L->c->lmtp) && nrcpt > 1
                                ? nrcpt
                                : 1),
           "end of data got %zu groups (rcpts %zu)", r.groups, nrcpt);
  if (L->c->size_limit && L->ref.len > L->c->size_limit)
    want = "552 5.3.4 Error: message file too big";
  else if (host_scans(L->c) && contains(&seen, "VIRUS"))
    want = "554 5.7.1 Message rejected";
  else if (doom == DOOM_LF)
    want = "550 5.5.2 mx.example.org Error: bare <LF> received";
  else if (doom == DOOM_CR)
    want = "550 5.5.2 mx.example.org Error: bare <CR> received";
  else if (doom == DOOM_LONG)
    want = "550 5.5.2 mx.example.org Error: message line too long";
  if (want) {
    snprintf(wantbuf, sizeof wantbuf, "%s", want);
    FZ_CHECK(first_line_is(OUT(h, before), h->out.len - before, wantbuf),
             "end of data: expected '%s', got '%.60s'", wantbuf,
             (const char *)OUT(h, before));
    FZ_CHECK(h->completes == completes, "refused message was completed");
  } else {
    FZ_CHECK(h->completes == completes + 1,
             "a clean message (%zu octets) was not completed: '%.60s'",
             L->ref.len, (const char *)OUT(h, before));
  }
  lock_mode(L, &r);
}

static void lock_body_line(lock *L, const uint8_t *u, size_t n) {
  host *h = L->h;
  fz_replies r;
  size_t before;
  smtpd_timeout k, tk;
  unit(L, u, n, &r, &before);
  FZ_CHECK(r.groups == 0, "a body line got a reply (%d) at out %zu",
           r.first_code, before);
  if (!smtpd_session_is_closing(h->s)) {
    FZ_CHECK(smtpd_session_deadline(h->s, &k, NULL) > 0 &&
                 k == SMTPD_TIMEOUT_MESSAGE,
             "no message deadline during DATA");
    FZ_CHECK(smtpd_session_timeout(h->s, &tk) > 0 && tk == SMTPD_TIMEOUT_DATA,
             "timeout during DATA is not the data timeout");
  }
  fz_buf_put(&L->raw, u, n);
  L->raw_crlf = n >= 2 && u[n - 2] == '\r' && u[n - 1] == '\n';
  if (smtpd_session_is_closing(h->s))
    L->mode = M_CLOSED;
}

static void lock_timeouts(lock *L, size_t off) {
  host *h = L->h;
  while (L->mi < L->p->nm && L->p->m[L->mi].off <= off) {
    if (L->p->m[L->mi].kind == MARK_TIMEOUT) {
      fz_replies r;
      char why[200];
      size_t before = h->out.len;
      int was = smtpd_session_is_closing(h->s);
      api(smtpd_session_timeout_expired(h->s), "timeout_expired");
      after(h);
      drain(h);
      FZ_CHECK(!fz_parse_replies(OUT(h, before), h->out.len - before, &r,
                                 why, sizeof why),
               "%s", why);
      FZ_CHECK(was ? r.groups == 0 : (r.groups == 1 && r.first_code == 421 &&
                                      smtpd_session_is_closing(h->s)),
               "timeout gave %zu groups", r.groups);
      L->mode = M_CLOSED;
    }
    L->mi++;
  }
}

static void run_lockstep(const prog *p, const conf *c, host *h) {
  lock L;
  /* (as before the buffer pool: no data is a NULL pointer) */
  const uint8_t *d = p->data.len ? p->data.p : NULL;
  size_t len = p->data.len, off = 0, before;
  fz_replies r;
  char why[200];
  memset(&L, 0, sizeof L);
  L.h = h;
  L.c = c;
  L.p = p;
  setup(h, c);
  h->lockstep = 1;
  start(h);
  drain(h);
  after(h);
  if (c->front == 2)
    tls_now(h);
  while (smtpd_session_is_paused(h->s)) {
    answer_pause(h);
    after(h);
  }
  drain(h);
  if (c->front == 1) {
    smtpd_proxy_info info;
    /* (NULL, 0) is "more", like any empty input */
    ptrdiff_t hl = smtpd_proxy_parse(d, len < 1040 ? len : 1040, &info);
    size_t take = hl > 0 ? (size_t)hl : len;
    FZ_CHECK(h->out.len == 0, "output before the PROXY header");
    unit(&L, d, take, &r, &before);
    FZ_CHECK(hl > 0 ? r.groups == 1 : r.groups == 0,
             "PROXY header (%td) gave %zu groups", hl, r.groups);
    FZ_CHECK(hl >= 0 || smtpd_session_is_closing(h->s),
             "a bad PROXY header did not close");
    if (hl > 0 && !info.local)
      FZ_CHECK(!strcmp(smtpd_session_client_addr(h->s), info.src_addr) &&
                   smtpd_session_client_port(h->s) == info.src_port,
               "PROXY source not taken");
    off = take;
  } else {
    FZ_CHECK(!fz_parse_replies(h->out.p, h->out.len, &r, why, sizeof why) &&
                 r.groups == 1,
             "greeting is not one reply group");
  }
  {
    fz_replies g;
    /* a refused connect (a greeting other than 220 that did not close)
     * leaves a session that answers everything but QUIT with 503 */
    if (!fz_parse_replies(h->out.p, h->out.len, &g, why, sizeof why) &&
        g.groups && g.first_code != 220)
      L.mode = M_REJECTED;
  }
  if (smtpd_session_is_closing(h->s))
    L.mode = M_CLOSED;
  lock_timeouts(&L, off);
  while (off < len) {
    const uint8_t *u = d + off;
    const uint8_t *lf = memchr(u, '\n', len - off);
    size_t n = lf ? (size_t)(lf - u) + 1 : len - off;
    if (L.mode == M_CLOSED) {
      /* The session is closing: it takes every octet and answers none.
       * Feed everything up to the next timer mark as one unit (a large
       * input that got its 421 early used to be fed here line by line,
       * most of the run's time); the checks are the same: no reply,
       * nothing queued after the close, the accessors of a closed
       * session (poke). */
      size_t end = len, k;
      for (k = L.mi; k < p->nm; k++)
        if (p->m[k].kind == MARK_TIMEOUT) {
          if (p->m[k].off < end)
            end = p->m[k].off;
          break;
        }
      if (end > off + n)
        n = end - off;
      lock_line(&L, u, n);
    } else if (L.mode == M_DATA) {
      if (L.raw_crlf && n == 3 && !memcmp(u, ".\r\n", 3))
        lock_body_end(&L, u, n);
      else
        lock_body_line(&L, u, n);
    } else if (L.mode == M_CMD && lf) {
      uint64_t size = 0;
      int last = 0, b = bdat_line(c, u, n, &size, &last);
      if (b == 1) {
        size_t linelen = n;
        uint64_t room = len - off - n;
        n += (size_t)(size < room ? size : room);
        lock_bdat(&L, u, n, linelen, size, last);
      } else {
        lock_line(&L, u, n);
        if (b == 2 && L.mode != M_CLOSED)
          fz_fail(__FILE__, __LINE__, "a malformed BDAT did not close");
      }
    } else {
      lock_line(&L, u, n);
    }
    off += n;
    lock_timeouts(&L, off);
  }
  lock_timeouts(&L, (size_t)-1);
  finish(h);
  buf_give(&L.raw);
  buf_give(&L.ref);
}

static void host_free(host *h) {
  buf_give(&h->out);
  buf_give(&h->ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prog p;
  conf c;
  host a, b, l;
  if (size > 100000 || decode(&p, data, size))
    return 0;
  poke_null();
  conf_of(&c, &p);
  run_packets(&p, &c, 0, &a, 0);
  teardown(&a);
  run_packets(&p, &c, 1, &b, 0);
  teardown(&b);
  if (!fz_same(a.out.p, a.out.len, b.out.p, b.out.len)) {
    size_t i;
    for (i = 0; i < a.out.len && i < b.out.len && a.out.p[i] == b.out.p[i];
         i++)
      ;
    fz_fail(__FILE__, __LINE__,
            "split changed the replies at %zu (%zu vs %zu): [%.80s] vs "
            "[%.80s]",
            i, a.out.len, b.out.len,
            i < a.out.len ? (const char *)a.out.p + i : "",
            i < b.out.len ? (const char *)b.out.p + i : "");
  }
  if (!fz_same(a.ev.p, a.ev.len, b.ev.p, b.ev.len)) {
    size_t i;
    for (i = 0; i < a.ev.len && i < b.ev.len && a.ev.p[i] == b.ev.p[i]; i++)
      ;
    fz_fail(__FILE__, __LINE__,
            "split changed the events at %zu: [%.100s] vs [%.100s]", i,
            i < a.ev.len ? (const char *)a.ev.p + i : "",
            i < b.ev.len ? (const char *)b.ev.p + i : "");
  }
  run_lockstep(&p, &c, &l);
  teardown(&l);
  if ((p.seed & 7) == 7) {
    host n;
    long k = 1 + (long)(fz_mix(p.seed ^ (p.data.len * 0x9e37u)) % 40);
    run_packets(&p, &c, 0, &n, k);
    teardown(&n);
    host_free(&n);
  }
  g_host = NULL;
  if (getenv("FUZZ_DEBUG")) {
    fprintf(stderr, "---- whole run: replies\n%.*s---- events\n%.*s",
            (int)a.out.len, (const char *)a.out.p, (int)a.ev.len,
            (const char *)a.ev.p);
    fprintf(stderr, "---- lockstep run: replies\n%.*s", (int)l.out.len,
            (const char *)l.out.p);
  }
  host_free(&a);
  host_free(&b);
  host_free(&l);
  prog_free(&p);
  return 0;
}
