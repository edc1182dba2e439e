/*
 * hostile_host.h - a test host that drives real libsmtpd sessions through
 * the public API and checks the robustness invariants; shared by
 * tests/check_hostile.c (Check suite) and tests/fuzz/fuzz_session.c
 * (libFuzzer harness). Header only: every function is static inline.
 *
 *   hh_next / hh_mix          xorshift64* PRNG and a 64-bit mixer
 *   hh_mem, hh_make_mem       counting / failing / bounded allocator
 *   hh_buf_*                  growable byte buffers (host side, libc)
 *   hh_check_replies          reply syntax: codes, separators, CRLF,
 *                             printable ASCII, 512 octets, groups
 *   hh_conf, hh_conf_random   a session configuration and its memory bound
 *   hh_run                    one conversation, fed with a split pattern,
 *                             with an optional chaotic host; returns the
 *                             reply bytes, the event log and any violation
 *
 * Invariants checked by hh_run (a violation sets res->fail and res->why):
 *  - every reply line is "DDD" + ' ' or '-' + printable ASCII + CRLF, at
 *    most 512 octets, and lines of one multi-line reply share the code;
 *  - live engine memory never exceeds hh_bound(conf), all of it is freed
 *    when the session, config and backend are deleted;
 *  - once the session says it is closing, it never queues another octet;
 *    a 421 or 221 reply always means the session is closing;
 *  - in lockstep mode (one line per packet, output drained after each),
 *    each command line is answered by exactly one reply group (two when
 *    the second is a 421), body lines by none until the real <CRLF>.<CRLF>;
 *  - strings in events are within RFC limits and neutered where promised;
 *    a completed message's size equals the octets delivered to on_body.
 * The caller compares res->out and res->ev across split patterns.
 */
#ifndef SMTPD_TESTS_HOSTILE_HOST_H
#define SMTPD_TESTS_HOSTILE_HOST_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/sasl.h"
#include "smtpd/smtpd.h"

/* ---- PRNG ---------------------------------------------------------------- */

/* hh_next - xorshift64*; *st must not be 0. */
static inline uint64_t hh_next(uint64_t *st) {
  uint64_t x = *st;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *st = x;
  return x * UINT64_C(2685821657736338717);
}

/* hh_mix - splitmix64 finalizer: a well-spread function of x. */
static inline uint64_t hh_mix(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* hh_below - a number in [0, n) (n > 0). */
static inline uint64_t hh_below(uint64_t *st, uint64_t n) {
  return hh_next(st) % n;
}

/* ---- allocator ----------------------------------------------------------- */

typedef struct hh_mem {
  long allocs;       /* successful allocations */
  long attempts;     /* allocation attempts */
  long live;         /* blocks not yet freed */
  long fail_at;      /* fail the Nth attempt (1-based); 0 = never */
  int failed;        /* an allocation was failed on purpose */
  size_t bytes_live; /* requested octets not yet freed */
  size_t base;       /* bytes_live when the bound starts to apply */
  size_t bound;      /* 0 = no bound */
  size_t peak;       /* max(bytes_live - base) */
  int over;          /* bound exceeded at some point */
} hh_mem;

typedef struct {
  size_t size;
  size_t pad;
} hh_hdr;

static inline void *hh_m_malloc(size_t n, void *ctx) {
  hh_mem *m = ctx;
  hh_hdr *h;
  m->attempts++;
  if (m->fail_at && m->attempts == m->fail_at) {
    m->failed = 1;
    return NULL;
  }
  h = malloc(sizeof *h + (n ? n : 1));
  if (!h)
    return NULL;
  h->size = n;
  m->allocs++;
  m->live++;
  m->bytes_live += n;
  if (m->bytes_live > m->base) {
    size_t used = m->bytes_live - m->base;
    if (used > m->peak)
      m->peak = used;
    if (m->bound && used > m->bound)
      m->over = 1;
  }
  return h + 1;
}

static inline void hh_m_free(void *p, void *ctx) {
  hh_mem *m = ctx;
  hh_hdr *h;
  if (!p)
    return;
  h = (hh_hdr *)p - 1;
  m->live--;
  m->bytes_live -= h->size;
  free(h);
}

static inline void *hh_m_calloc(size_t a, size_t b, void *ctx) {
  void *p;
  if (b && a > SIZE_MAX / b)
    return NULL;
  p = hh_m_malloc(a * b, ctx);
  if (p)
    memset(p, 0, a * b);
  return p;
}

static inline void *hh_m_realloc(void *p, size_t n, void *ctx) {
  hh_hdr *h;
  void *q;
  if (!p)
    return hh_m_malloc(n, ctx);
  h = (hh_hdr *)p - 1;
  q = hh_m_malloc(n, ctx);
  if (!q)
    return NULL;
  memcpy(q, p, h->size < n ? h->size : n);
  hh_m_free(p, ctx);
  return q;
}

static inline smtpd_mem hh_make_mem(hh_mem *st) {
  smtpd_mem m;
  m.ctx = st;
  m.malloc = hh_m_malloc;
  m.free = hh_m_free;
  m.calloc = hh_m_calloc;
  m.realloc = hh_m_realloc;
  return m;
}

/* ---- byte buffers (host memory, plain libc) ------------------------------ */

typedef struct hh_buf {
  uint8_t *p;
  size_t len, cap;
} hh_buf;

static inline void hh_buf_put(hh_buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    uint8_t *q;
    while (cap < b->len + n + 1)
      cap *= 2;
    q = realloc(b->p, cap);
    if (!q)
      abort();
    b->p = q;
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = 0;
}

static inline void hh_buf_str(hh_buf *b, const char *s) {
  hh_buf_put(b, s, strlen(s));
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static inline void hh_buf_printf(hh_buf *b, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  hh_buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static inline void hh_buf_free(hh_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- reply syntax -------------------------------------------------------- */

typedef struct hh_replies {
  size_t groups;   /* complete reply groups */
  int last_code;   /* code of the last complete group, 0 if none */
  int first_code;  /* code of the first complete group, 0 if none */
  int partial;     /* bytes after the last complete group */
} hh_replies;

/* hh_check_replies - parse reply bytes; 0 when well-formed, else -1 with
 * a reason in why (cap > 0). */
static inline int hh_check_replies(const uint8_t *p, size_t n, hh_replies *r,
                                   char *why, size_t cap) {
  size_t i = 0;
  int group_code = 0; /* code of the group in progress, 0 = none open */
  memset(r, 0, sizeof *r);
  while (i < n) {
    size_t start = i, k;
    int code;
    while (i < n && p[i] != '\n')
      i++;
    if (i == n) {
      /* no LF: only acceptable as nothing at all */
      snprintf(why, cap, "reply bytes without line end at %zu", start);
      return -1;
    }
    i++; /* past LF */
    k = i - start; /* line length with CRLF */
    if (k < 6 || p[i - 2] != '\r') {
      snprintf(why, cap, "short line or bare LF at %zu", start);
      return -1;
    }
    if (k > 512) {
      snprintf(why, cap, "reply line of %zu octets at %zu", k, start);
      return -1;
    }
    if (p[start] < '2' || p[start] > '5' || p[start + 1] < '0' ||
        p[start + 1] > '9' || p[start + 2] < '0' || p[start + 2] > '9') {
      snprintf(why, cap, "bad reply code at %zu", start);
      return -1;
    }
    if (p[start + 3] != ' ' && p[start + 3] != '-') {
      snprintf(why, cap, "bad separator at %zu", start);
      return -1;
    }
    {
      size_t j;
      for (j = start + 4; j < i - 2; j++)
        if (p[j] < 0x20 || p[j] > 0x7e) {
          snprintf(why, cap, "octet 0x%02x in reply at %zu", p[j], j);
          return -1;
        }
    }
    code = (p[start] - '0') * 100 + (p[start + 1] - '0') * 10 +
           (p[start + 2] - '0');
    if (group_code && code != group_code) {
      snprintf(why, cap, "multi-line reply changes code %d->%d at %zu",
               group_code, code, start);
      return -1;
    }
    if (p[start + 3] == '-') {
      group_code = code;
    } else {
      group_code = 0;
      r->groups++;
      if (!r->first_code)
        r->first_code = code;
      r->last_code = code;
    }
  }
  r->partial = group_code != 0;
  if (r->partial) {
    snprintf(why, cap, "unterminated multi-line reply");
    return -1;
  }
  return 0;
}

/* ---- configuration ------------------------------------------------------- */

typedef struct hh_conf {
  smtpd_line_ending line_ending;
  smtpd_sync_policy sync;
  smtpd_long_line long_line;
  int opt[SMTPD_OPT_COUNT_]; /* -1 = default */
  uint64_t limit[SMTPD_LIMIT_COUNT_]; /* 0 = default (except SIZE: see) */
  int size_unlimited;
  int with_sasl;
  int hostname_long; /* a 200-octet hostname */
} hh_conf;

static inline void hh_conf_default(hh_conf *c) {
  int i;
  memset(c, 0, sizeof *c);
  for (i = 0; i < SMTPD_OPT_COUNT_; i++)
    c->opt[i] = -1;
  c->opt[SMTPD_OPT_STARTTLS] = 1;
  c->with_sasl = 1;
}

/* hh_conf_random - a varied configuration drawn from *st. */
static inline void hh_conf_random(hh_conf *c, uint64_t *st) {
  int i;
  hh_conf_default(c);
  c->line_ending = (smtpd_line_ending)hh_below(st, 3);
  c->sync = hh_below(st, 3) == 0 ? SMTPD_SYNC_REJECT : SMTPD_SYNC_ALLOW;
  c->long_line = (smtpd_long_line)hh_below(st, 2);
  for (i = 0; i < SMTPD_OPT_COUNT_; i++)
    if (hh_below(st, 4) == 0)
      c->opt[i] = (int)hh_below(st, 2);
  /* options that change how replies pair with lines (BDAT chunks, one
   * reply per recipient, LHLO) are outside the lockstep model: tested by
   * tests/check_api.c and the transcripts instead */
  c->opt[SMTPD_OPT_CHUNKING] = c->opt[SMTPD_OPT_LMTP] = -1;
  c->opt[SMTPD_OPT_REPLY_PER_RCPT] = -1;
  c->opt[SMTPD_OPT_STARTTLS] = hh_below(st, 5) != 0;
  if (hh_below(st, 2))
    c->opt[SMTPD_OPT_AUTH_PLAINTEXT] = 1;
  if (hh_below(st, 2))
    c->limit[SMTPD_LIMIT_ERRORS] = 5 + hh_below(st, 1000);
  if (hh_below(st, 3) == 0)
    c->limit[SMTPD_LIMIT_RECIPIENTS] = 1 + hh_below(st, 50);
  if (hh_below(st, 3) == 0)
    c->limit[SMTPD_LIMIT_MESSAGE_SIZE] = 1 + hh_below(st, 4000);
  if (hh_below(st, 6) == 0)
    c->size_unlimited = 1;
  if (hh_below(st, 3) == 0)
    c->limit[SMTPD_LIMIT_TEXT_LINE] = 1000 + hh_below(st, 2000);
  if (hh_below(st, 3) == 0)
    c->limit[SMTPD_LIMIT_COMMAND_LINE] = 512 + hh_below(st, 2000);
  if (hh_below(st, 3) == 0)
    c->limit[SMTPD_LIMIT_AUTH_LINE] = 12288 + hh_below(st, 20000);
  if (hh_below(st, 3) == 0)
    c->limit[SMTPD_LIMIT_OUTPUT] = 1024 + hh_below(st, 100000);
  if (hh_below(st, 3) == 0)
    c->limit[SMTPD_LIMIT_AUTH_FAILURES] = 1 + hh_below(st, 20);
  c->with_sasl = hh_below(st, 6) != 0;
  c->hostname_long = hh_below(st, 8) == 0;
}

static inline uint64_t hh_limit(const hh_conf *c, smtpd_limit w) {
  static const uint64_t def[SMTPD_LIMIT_COUNT_] = {10240000, 1000, 512, 1000,
                                                   20,       3,    12288,
                                                   65536};
  return c->limit[w] ? c->limit[w] : def[w];
}

/* hh_bound - the most engine memory a session may hold under c: the
 * output buffer (it doubles, so up to twice the output limit plus one
 * reply), the command and AUTH line buffers, the host reply buffer, the
 * session itself, and 320 octets per recipient (a 256-octet path in the
 * arena, its pointer, arena slack). */
static inline size_t hh_bound(const hh_conf *c) {
  return (size_t)(2 * (hh_limit(c, SMTPD_LIMIT_OUTPUT) + 4096) +
                  hh_limit(c, SMTPD_LIMIT_COMMAND_LINE) +
                  hh_limit(c, SMTPD_LIMIT_AUTH_LINE) + 512 + 2048 + 8192 +
                  hh_limit(c, SMTPD_LIMIT_RECIPIENTS) * 320);
}

/* ---- the host ------------------------------------------------------------ */

enum {
  HH_CHAOS_DEFER = 1,  /* decisions defer; pauses end in random verdicts,
                          host close or timeout (split-invariant) */
  HH_CHAOS_PACKET = 2, /* host close / timeout at packet boundaries */
  HH_CHAOS_WILD = 4,   /* split-dependent chaos: close/timeout between
                          any two feeds, on_body rejects */
  HH_LOCKSTEP = 8,     /* check one reply group per command line */
  HH_ACCEPT_ALL = 16   /* every decision accepted, no host replies */
};

typedef struct hh_result {
  hh_buf out;      /* every reply octet the host wrote */
  hh_buf ev;       /* event log */
  int fail;        /* an invariant was violated */
  char why[512];
  int rv;          /* first negative return of an API call, else 0 */
  int setup_nomem; /* config/backend/session creation ran out of memory */
  int nomem;       /* an allocation was failed on purpose */
  size_t peak;     /* peak engine memory */
  size_t feeds;    /* feed calls made */
  int closed;      /* session ended closing */
  int completes;   /* messages accepted by on_data_complete */
} hh_result;

typedef struct hh_host {
  smtpd_session *s;
  hh_result *res;
  uint64_t seed;      /* decisions: verdict = f(seed, decision index) */
  uint64_t ndec;      /* decision index */
  uint64_t local;     /* split-dependent PRNG (body deferral, wild) */
  int flags;
  hh_buf body;        /* current message as delivered */
  uint64_t discard;   /* STARTTLS discard octets since last report */
  int tls_pending;    /* on_starttls fired; handshake at packet end */
  int last_dec_defer; /* the current pause came from a decision */
  uint64_t pause_key; /* the deferred decision's key */
  int body_paused;
  size_t rcpts;       /* recipients the host accepted in this transaction */
  size_t closing_at;  /* total queued octets when closing was first seen */
  int closing_seen;
} hh_host;

static inline void hh_fail(hh_host *h, const char *fmt, ...) {
  va_list ap;
  if (h->res->fail)
    return;
  h->res->fail = 1;
  va_start(ap, fmt);
  vsnprintf(h->res->why, sizeof h->res->why, fmt, ap);
  va_end(ap);
}

static inline void hh_ev(hh_host *h, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static inline void hh_ev(hh_host *h, const char *fmt, ...) {
  char tmp[1536];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  hh_buf_put(&h->res->ev, tmp,
             (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
  hh_buf_put(&h->res->ev, "\n", 1);
}

static inline uint32_t hh_fnv(const uint8_t *p, size_t n) {
  uint32_t x = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++)
    x = (x ^ p[i]) * 16777619u;
  return x;
}

static inline int hh_ends_with(const uint8_t *p, size_t n, const char *t) {
  size_t k = strlen(t);
  return n >= k && !memcmp(p + n - k, t, k);
}

static inline int hh_printable(const char *p) {
  if (!p)
    return 1;
  for (; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
      return 0;
  return 1;
}

/* A reply the host may set: valid, or invalid (then it must be refused). */
static inline void hh_maybe_set_reply(hh_host *h, uint64_t r, int verdict,
                                      int is_data) {
  static const int acc[] = {250, 251, 252};
  static const int rej[] = {550, 553, 554, 521, 421, 500};
  static const int tmp[] = {450, 451, 452, 421};
  static const char *const texts[] = {
      "custom text", "", "a\r\n250 injected", "tab\there", "8bit \xc3\xa9",
      "queued as ABC123"};
  int code, rv, bad_text, bad_enh = 0;
  const char *enh = NULL, *text;
  char enhbuf[16];
  if ((r & 3) != 0)
    return;
  r >>= 2;
  if (verdict == SMTPD_ACCEPT)
    code = is_data ? 354 : acc[r % 3];
  else if (verdict == SMTPD_REJECT)
    code = rej[r % 6];
  else
    code = tmp[r % 4];
  r >>= 3;
  text = texts[r % 6];
  bad_text = !hh_printable(text);
  r >>= 3;
  switch (r % 4) {
  case 0:
    enh = NULL;
    break;
  case 1:
    snprintf(enhbuf, sizeof enhbuf, "%d.1.2", code / 100);
    enh = code / 100 == 3 ? NULL : enhbuf;
    break;
  case 2:
    snprintf(enhbuf, sizeof enhbuf, "%d.1.2", code / 100 == 5 ? 4 : 5);
    enh = enhbuf;
    bad_enh = 1;
    break;
  default:
    enh = "x.y";
    bad_enh = 1;
    break;
  }
  r >>= 2;
  if (r % 3 == 0) {
    const char *lines[3];
    lines[0] = "line one";
    lines[1] = text;
    lines[2] = "line three";
    rv = smtpd_session_set_reply_lines(h->s, code, enh, lines, 3);
  } else {
    rv = smtpd_session_set_reply(h->s, code, enh, text);
  }
  if ((bad_text || bad_enh) && rv == 0)
    hh_fail(h, "set_reply accepted a bad reply (code %d enh %s) rv %d", code,
            enh ? enh : "-", rv);
  hh_ev(h, "set_reply %d %d", code, rv);
}

/* The verdict for decision number k (split-invariant). */
static inline smtpd_verdict hh_decide(hh_host *h, const char *what, int is_data) {
  uint64_t k = h->ndec++;
  uint64_t r = hh_mix(h->seed ^ (k * UINT64_C(0x100000001b3)));
  int v;
  (void)is_data;
  if (h->flags & HH_ACCEPT_ALL) {
    hh_ev(h, "%s #%llu -> 0", what, (unsigned long long)k);
    return SMTPD_ACCEPT;
  }
  if ((h->flags & HH_CHAOS_DEFER) && r % 3 == 0) {
    h->last_dec_defer = 1;
    h->pause_key = hh_mix(r);
    hh_ev(h, "%s #%llu defer", what, (unsigned long long)k);
    return SMTPD_DEFER;
  }
  r >>= 2;
  v = r % 8 == 0 ? SMTPD_REJECT : r % 8 == 1 ? SMTPD_TEMPFAIL : SMTPD_ACCEPT;
  hh_maybe_set_reply(h, r >> 3, v, is_data);
  hh_ev(h, "%s #%llu -> %d", what, (unsigned long long)k, v);
  return (smtpd_verdict)v;
}

static inline hh_host *hh_of(void *ud) { return ud; }

static inline smtpd_verdict hh_on_connect(smtpd_session *s, void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  return hh_decide(h, "connect", 0);
}

static inline smtpd_verdict hh_on_helo(smtpd_session *s, const smtpd_helo *x,
                             void *ud) {
  hh_host *h = hh_of(ud);
  const char *q;
  (void)s;
  if (!x->name || !x->safe_name)
    hh_fail(h, "helo without name");
  else {
    for (q = x->safe_name; *q; q++)
      if ((unsigned char)*q < 0x21 || (unsigned char)*q > 0x7e ||
          strchr("<>()\\\";@", *q))
        hh_fail(h, "helo safe_name not neutered: %s", x->safe_name);
    hh_ev(h, "helo %d [%s] [%s]", x->esmtp, x->name, x->safe_name);
  }
  return hh_decide(h, "helo", 0);
}

static inline smtpd_verdict hh_on_mail(smtpd_session *s, const smtpd_mail *m,
                             void *ud) {
  hh_host *h = hh_of(ud);
  int v;
  (void)s;
  if (!m->address || !m->local || !m->domain || strlen(m->address) > 256 ||
      strlen(m->local) > 64 || strlen(m->domain) > 255)
    hh_fail(h, "mail address out of limits");
  else
    hh_ev(h, "mail [%s] size %llu/%d body %d utf8 %d n %zu", m->address,
          (unsigned long long)m->size, m->has_size, (int)m->body, m->smtputf8,
          m->nparams);
  v = hh_decide(h, "mail", 0);
  h->rcpts = 0;
  return v;
}

static inline smtpd_verdict hh_on_rcpt(smtpd_session *s, const smtpd_rcpt *r,
                             void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  if (!r->address || !r->local || !r->domain || strlen(r->address) > 256 ||
      strlen(r->local) > 64 || strlen(r->domain) > 255)
    hh_fail(h, "rcpt address out of limits");
  else
    hh_ev(h, "rcpt [%s] idx %zu", r->address, r->index);
  return hh_decide(h, "rcpt", 0);
}

static inline smtpd_verdict hh_on_data(smtpd_session *s, void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  h->body.len = 0;
  return hh_decide(h, "data", 1);
}

static inline smtpd_verdict hh_on_complete(smtpd_session *s, const smtpd_message *m,
                                 void *ud) {
  hh_host *h = hh_of(ud);
  size_t i;
  if (m->size != h->body.len)
    hh_fail(h, "message size %llu but %zu octets delivered",
            (unsigned long long)m->size, h->body.len);
  if (m->nrecipients == 0 || m->nrecipients != smtpd_session_recipient_count(s))
    hh_fail(h, "message with %zu recipients", m->nrecipients);
  for (i = 0; i < m->nrecipients; i++)
    if (!m->recipients[i])
      hh_fail(h, "NULL recipient");
  hh_ev(h, "complete size %llu rcpts %zu hash %08x", (unsigned long long)m->size,
        m->nrecipients, hh_fnv(h->body.p, h->body.len));
  h->body.len = 0;
  h->res->completes++;
  return hh_decide(h, "complete", 0);
}

static inline smtpd_verdict hh_on_vrfy(smtpd_session *s, const char *arg, void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  hh_ev(h, "vrfy [%s]", arg);
  return hh_decide(h, "vrfy", 0);
}

static inline smtpd_verdict hh_on_body(smtpd_session *s, const uint8_t *d, size_t n,
                             void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  if (n == 0)
    hh_fail(h, "empty body chunk");
  hh_buf_put(&h->body, d, n);
  if (h->body.len > ((size_t)64 << 20))
    h->body.len = 0; /* explicit huge-body cases: keep host memory small */
  if ((h->flags & HH_CHAOS_WILD) && hh_below(&h->local, 64) == 0)
    return hh_below(&h->local, 2) ? SMTPD_REJECT : SMTPD_TEMPFAIL;
  if ((h->flags & (HH_CHAOS_DEFER | HH_CHAOS_WILD)) &&
      hh_below(&h->local, 4) == 0) {
    h->body_paused = 1;
    return SMTPD_DEFER;
  }
  return SMTPD_ACCEPT;
}

static inline void hh_on_rset(smtpd_session *s, void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  hh_ev(h, "rset");
}

static inline void hh_on_quit(smtpd_session *s, void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  hh_ev(h, "quit");
}

static inline smtpd_verdict hh_on_starttls(smtpd_session *s, void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  h->tls_pending = 1;
  hh_ev(h, "starttls");
  return SMTPD_ACCEPT;
}

static inline void hh_on_auth_ok(smtpd_session *s, const smtpd_auth_result *r,
                                 void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  if (!r->authcid || !hh_printable(r->mechanism) ||
      strpbrk(r->authcid, "\r\n"))
    hh_fail(h, "bad auth-ok event");
  else
    hh_ev(h, "auth-ok %s [%s] [%s] %d", r->mechanism, r->authcid,
          r->authzid ? r->authzid : "-", r->code);
}

static inline void hh_on_auth_fail(smtpd_session *s,
                                   const smtpd_auth_result *r, void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  if ((r->authcid && strpbrk(r->authcid, "\r\n")) || !hh_printable(r->reason))
    hh_fail(h, "bad auth-fail event");
  hh_ev(h, "auth-fail %s %d [%s]", r->mechanism, r->code,
        r->reason ? r->reason : "-");
}

static inline void hh_on_tls_required(smtpd_session *s, const char *cmd,
                                      void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  hh_ev(h, "tls-required %s", cmd ? cmd : "-");
}

static inline void hh_on_notice(smtpd_session *s, const smtpd_notice *n,
                                void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  if (n->type == SMTPD_NOTICE_STARTTLS_DISCARD) {
    h->discard += n->count; /* split-dependent per notice; summed */
    return;
  }
  if (!hh_printable(n->command))
    hh_fail(h, "notice command not sanitised");
  if (n->type == SMTPD_NOTICE_MESSAGE_ABORTED)
    h->body.len = 0;
  hh_ev(h, "notice %d %d [%s]", (int)n->type, n->code,
        n->command ? n->command : "-");
}

static inline void hh_on_close(smtpd_session *s, smtpd_close_reason r,
                               void *ud) {
  hh_host *h = hh_of(ud);
  (void)s;
  h->body.len = 0;
  hh_ev(h, "close %d", (int)r);
}

static inline smtpd_verdict hh_verify(smtpd_session *s, const char *mech,
                                      const char *authcid,
                                      const char *authzid,
                                      const char *password,
                                      size_t password_len, void *ctx) {
  hh_host *h = ctx;
  int v;
  (void)s;
  if (!mech || !authcid || !password)
    hh_fail(h, "verify without strings");
  hh_ev(h, "verify %s [%s] [%s] %zu", mech ? mech : "-",
        authcid ? authcid : "-", authzid ? authzid : "-", password_len);
  v = hh_decide(h, "verify", 0);
  if (v == SMTPD_ACCEPT &&
      !(authcid && !strcmp(authcid, "user") &&
        smtpd_consttime_equal(password, password_len, "secret", 6)))
    v = SMTPD_REJECT;
  return (smtpd_verdict)v;
}

static inline smtpd_callbacks hh_callbacks(void) {
  smtpd_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_connect = hh_on_connect;
  cb.on_helo = hh_on_helo;
  cb.on_mail = hh_on_mail;
  cb.on_rcpt = hh_on_rcpt;
  cb.on_data = hh_on_data;
  cb.on_data_complete = hh_on_complete;
  cb.on_vrfy = hh_on_vrfy;
  cb.on_body = hh_on_body;
  cb.on_rset = hh_on_rset;
  cb.on_quit = hh_on_quit;
  cb.on_starttls = hh_on_starttls;
  cb.on_auth_ok = hh_on_auth_ok;
  cb.on_auth_fail = hh_on_auth_fail;
  cb.on_tls_required = hh_on_tls_required;
  cb.on_notice = hh_on_notice;
  cb.on_close = hh_on_close;
  return cb;
}

/* ---- running a conversation ---------------------------------------------- */

static inline void hh_api(hh_host *h, const char *what, int rv) {
  if (rv < 0 && !h->res->rv)
    h->res->rv = rv;
  if (rv < 0 && rv != SMTPD_ERR_NOMEM && rv != SMTPD_ERR_INVALID_STATE)
    hh_fail(h, "%s returned %d", what, rv);
  if (rv == SMTPD_ERR_INVALID_STATE)
    hh_fail(h, "%s returned INVALID_STATE", what);
}

/* After every API call: the closing and 421/221 rules. */
static inline void hh_after(hh_host *h) {
  size_t queued = smtpd_session_output(h->s, NULL);
  size_t total = h->res->out.len + queued;
  if (h->closing_seen && total != h->closing_at)
    hh_fail(h, "output after the session closed (%zu -> %zu octets)",
            h->closing_at, total);
  if (!h->closing_seen && smtpd_session_is_closing(h->s)) {
    h->closing_seen = 1;
    h->closing_at = total;
  }
  if (!smtpd_session_is_closing(h->s) && queued >= 6) {
    const uint8_t *p;
    size_t i;
    smtpd_session_output(h->s, &p);
    /* start of the last line queued */
    i = queued - 2;
    while (i > 0 && p[i - 1] != '\n')
      i--;
    if ((!memcmp(p + i, "421 ", 4) || !memcmp(p + i, "221 ", 4)))
      hh_fail(h, "%.3s reply but the session is not closing", p + i);
  }
}

static inline void hh_drain(hh_host *h) {
  const uint8_t *p;
  size_t n = smtpd_session_output(h->s, &p);
  if (n) {
    if (!smtpd_session_want_write(h->s) && !h->res->rv)
      hh_fail(h, "output queued but want_write is 0");
    hh_buf_put(&h->res->out, p, n);
    hh_api(h, "consume", smtpd_session_consume(h->s, n));
  }
}

/* The session is paused: the host answers the way its seed says. */
static inline void hh_answer_pause(hh_host *h) {
  int rv;
  if (h->body_paused || !h->last_dec_defer) {
    h->body_paused = 0;
    rv = smtpd_session_resume(h->s, SMTPD_ACCEPT);
    hh_api(h, "resume", rv);
    return;
  }
  h->last_dec_defer = 0;
  {
    uint64_t r = h->pause_key;
    int v = (int)(r % 16);
    if (v == 0) {
      hh_ev(h, "host timeout while paused");
      rv = smtpd_session_timeout_expired(h->s);
      hh_api(h, "timeout_expired", rv);
      if (smtpd_session_is_paused(h->s))
        hh_fail(h, "still paused after timeout");
      return;
    }
    if (v == 1) {
      hh_ev(h, "host close while paused");
      rv = smtpd_session_close(h->s, NULL, NULL);
      hh_api(h, "close", rv);
      if (smtpd_session_is_paused(h->s))
        hh_fail(h, "still paused after close");
      return;
    }
    v = v < 11 ? SMTPD_ACCEPT : v < 14 ? SMTPD_REJECT : SMTPD_TEMPFAIL;
    hh_maybe_set_reply(h, r >> 8, v, 0);
    hh_ev(h, "resume %d", v);
    rv = smtpd_session_resume(h->s, v);
    hh_api(h, "resume", rv);
  }
}

/* Packet-boundary work: drain, finish a STARTTLS handshake. */
static inline void hh_boundary(hh_host *h) {
  hh_drain(h);
  hh_after(h);
  if (h->tls_pending) {
    smtpd_tls_info ti;
    int rv;
    h->tls_pending = 0;
    memset(&ti, 0, sizeof ti);
    ti.protocol = "TLSv1.3";
    ti.cipher = "TLS_AES_256_GCM_SHA384";
    ti.cipher_bits = 256;
    ti.alg_bits = 256;
    rv = smtpd_session_tls_established(h->s, &ti);
    /* INVALID_STATE: the session closed before the handshake finished */
    if (rv != SMTPD_ERR_INVALID_STATE || !smtpd_session_is_closing(h->s))
      hh_api(h, "tls_established", rv);
    hh_ev(h, "tls established %d discarded %llu", rv,
          (unsigned long long)h->discard);
    h->discard = 0;
    hh_after(h);
  }
}

/* Feed n octets as one write of the client; the host drains only when the
 * session stops reading because of its output limit. */
static inline int hh_feed_piece(hh_host *h, const uint8_t *p, size_t n) {
  size_t off = 0;
  int spins = 0;
  while (off < n) {
    ptrdiff_t took;
    if (h->res->rv)
      return -1;
    took = smtpd_session_feed(h->s, p + off, n - off);
    h->res->feeds++;
    if (took < 0) {
      hh_api(h, "feed", (int)took);
      return -1;
    }
    if ((size_t)took > n - off) {
      hh_fail(h, "feed took more than given");
      return -1;
    }
    off += (size_t)took;
    hh_after(h);
    if (off < n) {
      if (smtpd_session_is_paused(h->s)) {
        if (smtpd_session_want_read(h->s))
          hh_fail(h, "paused but want_read");
        hh_answer_pause(h);
        hh_after(h);
      } else if (smtpd_session_is_closing(h->s)) {
        hh_fail(h, "closing session refused input");
        return -1;
      } else {
        if (smtpd_session_output(h->s, NULL) == 0) {
          hh_fail(h, "feed stopped with nothing queued and no pause");
          return -1;
        }
        hh_drain(h);
        hh_after(h);
      }
      if (++spins > 10000000) {
        hh_fail(h, "feed makes no progress");
        return -1;
      }
    }
  }
  /* a decision deferred on the last octet of the piece */
  while (smtpd_session_is_paused(h->s) && !h->res->rv && !h->res->fail) {
    hh_answer_pause(h);
    hh_after(h);
  }
  return 0;
}

/* hh_setup / hh_teardown - config, backend, session under mem. */
typedef struct hh_world {
  hh_mem mem;
  smtpd_mem m;
  smtpd_config *cfg;
  smtpd_sasl_backend *be;
  hh_host host;
} hh_world;

static inline int hh_setup(hh_world *w, const hh_conf *c, hh_result *res) {
  smtpd_callbacks cb = hh_callbacks();
  int i, rv;
  w->m = hh_make_mem(&w->mem);
  w->host.res = res;
  if ((rv = smtpd_config_new(&w->cfg, &w->m)))
    return rv;
  if (c->hostname_long) {
    char name[201];
    memset(name, 'h', 200);
    name[200] = 0;
    name[0] = 'm', name[1] = 'x', name[2] = '.';
    if ((rv = smtpd_config_set_hostname(w->cfg, name)))
      return rv;
  } else if ((rv = smtpd_config_set_hostname(w->cfg, "mx.example.org"))) {
    return rv;
  }
  if ((rv = smtpd_config_set_line_ending(w->cfg, c->line_ending)) ||
      (rv = smtpd_config_set_sync_policy(w->cfg, c->sync)) ||
      (rv = smtpd_config_set_long_line(w->cfg, c->long_line)))
    return rv;
  for (i = 0; i < SMTPD_OPT_COUNT_; i++)
    if (c->opt[i] >= 0 &&
        (rv = smtpd_config_set_option(w->cfg, (smtpd_option)i, c->opt[i])))
      return rv;
  for (i = 0; i < SMTPD_LIMIT_COUNT_; i++)
    if (c->limit[i] &&
        (rv = smtpd_config_set_limit(w->cfg, (smtpd_limit)i, c->limit[i])))
      return rv;
  if (c->size_unlimited &&
      (rv = smtpd_config_set_limit(w->cfg, SMTPD_LIMIT_MESSAGE_SIZE, 0)))
    return rv;
  if (c->with_sasl) {
    if ((rv = smtpd_sasl_builtin_new(&w->be, &w->m, hh_verify, &w->host)))
      return rv;
    if ((rv = smtpd_config_set_sasl(w->cfg, w->be)))
      return rv;
  }
  w->mem.base = w->mem.bytes_live;
  w->mem.bound = hh_bound(c);
  if ((rv = smtpd_session_new(&w->host.s, w->cfg, &cb, &w->host)))
    return rv;
  return smtpd_session_set_client(w->host.s, "192.0.2.7", NULL);
}

static inline void hh_teardown(hh_world *w) {
  smtpd_session_del(w->host.s);
  w->host.s = NULL;
  smtpd_config_del(w->cfg);
  w->cfg = NULL;
  smtpd_sasl_builtin_del(w->be);
  w->be = NULL;
  hh_buf_free(&w->host.body);
}

/* Lockstep bookkeeping for one packet (one line). */
typedef struct hh_lock {
  int in_data;       /* the last group seen was 354 */
  int data_ls;       /* the next body octet starts a line */
} hh_lock;

static inline void hh_lock_check(hh_host *h, hh_lock *L, const uint8_t *pkt,
                                 size_t n, size_t out_before,
                                 int was_closing) {
  hh_replies r;
  char why[200];
  const uint8_t *o = h->res->out.p + out_before;
  size_t on = h->res->out.len - out_before;
  int ends_lf = n && pkt[n - 1] == '\n';
  if (hh_check_replies(o, on, &r, why, sizeof why)) {
    hh_fail(h, "lockstep: %s", why);
    return;
  }
  if (was_closing) {
    if (r.groups)
      hh_fail(h, "lockstep: reply after close");
    return;
  }
  if (L->in_data) {
    int end = L->data_ls && n == 3 && !memcmp(pkt, ".\r\n", 3);
    if (r.groups != (size_t)end) {
      hh_fail(h, "lockstep: body line gave %zu groups (end %d) at out %zu",
              r.groups, end, out_before);
      return;
    }
    L->data_ls = n >= 2 && pkt[n - 2] == '\r' && pkt[n - 1] == '\n';
    if (end)
      L->in_data = 0;
  } else if (ends_lf) {
    if (r.groups == 0 ||
        r.groups > 2 ||
        (r.groups == 2 && r.last_code != 421))
      hh_fail(h, "lockstep: command line gave %zu groups (last %d) at out %zu",
              r.groups, r.last_code, out_before);
  } else if (r.groups > 2) {
    hh_fail(h, "lockstep: partial line gave %zu groups", r.groups);
  }
  if (r.groups && r.last_code == 354 && !smtpd_session_is_closing(h->s)) {
    L->in_data = 1;
    L->data_ls = 1;
  }
}

/* Split patterns for hh_run. */
enum {
  HH_SPLIT_WHOLE = 0,  /* each packet in one feed */
  HH_SPLIT_BYTES = 1,  /* one octet per feed */
  HH_SPLIT_RANDOM = 2, /* random pieces drawn from split_seed */
  HH_SPLIT_FIXED = 3   /* pieces of split_seed octets */
};

/* hh_run - one conversation: packets pkt[i] of data, each fed according
 * to split; decisions from host_seed; flags HH_*. Always frees
 * everything and checks for leaks. mem_fail_at: fail that allocation. */
static inline void hh_run(const hh_conf *c, const uint8_t *data,
                          const size_t *pkt, size_t npkt, int split,
                          uint64_t split_seed, uint64_t host_seed, int flags,
                          long mem_fail_at, hh_result *res) {
  hh_world *w = calloc(1, sizeof *w);
  hh_host *h;
  uint64_t sst = split_seed | 1;
  size_t i, off = 0;
  int rv;
  hh_lock L;
  memset(res, 0, sizeof *res);
  memset(&L, 0, sizeof L);
  if (!w)
    abort();
  h = &w->host;
  h->seed = host_seed;
  h->local = hh_mix(split_seed) | 1;
  h->flags = flags;
  w->mem.fail_at = mem_fail_at;
  rv = hh_setup(w, c, res);
  if (rv) {
    if (rv != SMTPD_ERR_NOMEM || !w->mem.failed)
      hh_fail(h, "setup failed: %d", rv);
    res->setup_nomem = 1;
    goto done;
  }
  rv = smtpd_session_start(h->s);
  hh_api(h, "start", rv);
  hh_after(h);
  while (smtpd_session_is_paused(h->s) && !res->rv && !res->fail) {
    hh_answer_pause(h);
    hh_after(h);
  }
  hh_boundary(h);
  {
    hh_replies r;
    char why[200];
    if (!res->rv && (hh_check_replies(res->out.p, res->out.len, &r, why,
                                      sizeof why) ||
                     r.groups != 1))
      hh_fail(h, "greeting is not one reply group");
  }
  for (i = 0; i < npkt && !res->fail && !res->rv; i++) {
    const uint8_t *p = data + off;
    size_t n = pkt[i], done = 0, before;
    int was_closing;
    off += n;
    if ((flags & HH_CHAOS_PACKET) && i > 0) {
      uint64_t r = hh_mix(host_seed ^ hh_mix(i + 77));
      if (r % 97 == 0) {
        hh_ev(h, "host timeout at packet %zu", i);
        hh_api(h, "timeout_expired", smtpd_session_timeout_expired(h->s));
      } else if (r % 97 == 1) {
        hh_ev(h, "host close at packet %zu", i);
        hh_api(h, "close", smtpd_session_close(h->s, "4.3.0", "going away"));
      }
      hh_after(h);
      hh_boundary(h);
    }
    before = res->out.len;
    was_closing = smtpd_session_is_closing(h->s);
    while (done < n && !res->fail && !res->rv) {
      size_t k = n - done;
      if (smtpd_session_is_closing(h->s))
        ; /* closed: the rest in one write (it must all be discarded) */
      else if (split == HH_SPLIT_BYTES)
        k = 1;
      else if (split == HH_SPLIT_FIXED && split_seed < k)
        k = (size_t)split_seed;
      else if (split == HH_SPLIT_RANDOM) {
        uint64_t x = hh_next(&sst);
        size_t lim = (x & 3) == 0 ? 3 : (x & 3) == 1 ? 40 : 700;
        k = 1 + (size_t)((x >> 8) % lim);
        if (k > n - done)
          k = n - done;
      }
      if (hh_feed_piece(h, p + done, k))
        break;
      done += k;
      if ((flags & HH_CHAOS_WILD) && hh_below(&h->local, 200) == 0) {
        if (hh_below(&h->local, 2))
          hh_api(h, "timeout_expired", smtpd_session_timeout_expired(h->s));
        else
          hh_api(h, "close", smtpd_session_close(h->s, NULL, "bye"));
        hh_after(h);
      }
    }
    hh_boundary(h);
    if ((flags & HH_LOCKSTEP) && !res->fail && !res->rv)
      hh_lock_check(h, &L, p, n, before, was_closing);
  }
  if (!res->rv && !res->fail) {
    hh_replies r;
    char why[200];
    hh_boundary(h);
    if (hh_check_replies(res->out.p, res->out.len, &r, why, sizeof why))
      hh_fail(h, "%s", why);
    if (smtpd_session_want_write(h->s))
      hh_fail(h, "want_write after draining");
    if (smtpd_session_is_closing(h->s) && smtpd_session_want_read(h->s))
      hh_fail(h, "closing but want_read");
    res->closed = smtpd_session_is_closing(h->s);
    hh_ev(h, "end closing %d paused %d want_read %d", res->closed,
          smtpd_session_is_paused(h->s), smtpd_session_want_read(h->s));
  }
  if (res->rv) {
    if (!smtpd_session_is_closing(h->s) || smtpd_session_want_read(h->s) ||
        smtpd_session_want_write(h->s))
      hh_fail(h, "fatal error %d but the session still wants I/O", res->rv);
    if (res->rv != SMTPD_ERR_NOMEM || !w->mem.failed)
      hh_fail(h, "API error %d without an allocation failure", res->rv);
  }
done:
  res->peak = w->mem.peak;
  res->nomem = w->mem.failed;
  if (w->mem.over)
    hh_fail(h, "engine memory %zu over the bound %zu", w->mem.peak,
            w->mem.bound);
  hh_teardown(w);
  if (w->mem.live != 0)
    hh_fail(h, "%ld blocks (%zu octets) leaked", w->mem.live,
            w->mem.bytes_live);
  free(w);
}

static inline void hh_result_free(hh_result *r) {
  hh_buf_free(&r->out);
  hh_buf_free(&r->ev);
}

/* hh_same - 0 when two runs gave identical replies and events; otherwise
 * describes the first difference in why. */
static inline int hh_same(const hh_result *a, const hh_result *b, char *why,
                          size_t cap) {
  size_t i;
  if (a->out.len != b->out.len || memcmp(a->out.p, b->out.p, a->out.len)) {
    for (i = 0; i < a->out.len && i < b->out.len && a->out.p[i] == b->out.p[i];
         i++)
      ;
    snprintf(why, cap, "replies differ at %zu (%zu vs %zu): [%.60s] vs [%.60s]",
             i, a->out.len, b->out.len,
             i < a->out.len ? (const char *)a->out.p + i : "",
             i < b->out.len ? (const char *)b->out.p + i : "");
    return -1;
  }
  if (a->ev.len != b->ev.len || memcmp(a->ev.p, b->ev.p, a->ev.len)) {
    for (i = 0; i < a->ev.len && i < b->ev.len && a->ev.p[i] == b->ev.p[i];
         i++)
      ;
    snprintf(why, cap, "events differ at %zu: [%.80s] vs [%.80s]", i,
             i < a->ev.len ? (const char *)a->ev.p + i : "",
             i < b->ev.len ? (const char *)b->ev.p + i : "");
    return -1;
  }
  return 0;
}

#endif /* SMTPD_TESTS_HOSTILE_HOST_H */
