/*
 * fuzz_common.h - small helpers shared by the libFuzzer harnesses in
 * tests/fuzz/ (header only, every function static inline):
 *
 *   FZ_CHECK            abort() with a message when an oracle fails
 *   fz_buf_*            growable byte buffers (plain libc)
 *   fz_mem              a counting allocator: live blocks and octets, peak
 *                       above a base, an optional bound
 *   fz_replies          parse reply bytes into groups: syntax check,
 *                       group count, first/last code
 *   fz_next / fz_mix    xorshift64* and splitmix64
 *
 * Every harness defines LLVMFuzzerTestOneInput only; tests/fuzz/
 * replay_main.c supplies main() for the gcc/ctest replay of the corpora
 * and regression inputs, libFuzzer supplies it for fuzzing.
 */
#ifndef SMTPD_TESTS_FUZZ_COMMON_H
#define SMTPD_TESTS_FUZZ_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/smtpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#if defined(__GNUC__)
#define FZ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define FZ_UNUSED __attribute__((unused))
#else
#define FZ_PRINTF(a, b)
#define FZ_UNUSED
#endif

/* fz_fail - report an oracle violation and abort (libFuzzer keeps the
 * input as crash-<sha1>). */
FZ_PRINTF(3, 4)
static inline void fz_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: oracle failed: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

#define FZ_CHECK(cond, ...)                                                  \
  do {                                                                       \
    if (!(cond))                                                             \
      fz_fail(__FILE__, __LINE__, __VA_ARGS__);                              \
  } while (0)

/* fz_strict - FUZZ_STRICT is set: also fail on the known, reported core
 * bugs the harnesses otherwise step around (docs/fuzzing.md, "Known
 * bugs"; their reproducers are in tests/fuzz/pending/). */
static inline int fz_strict(void) {
  static int v = -1;
  if (v < 0)
    v = getenv("FUZZ_STRICT") != NULL;
  return v;
}

/* ---- PRNG ---------------------------------------------------------------- */

static inline uint64_t fz_mix(uint64_t x) {
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

static inline uint64_t fz_next(uint64_t *st) {
  uint64_t x = *st ? *st : UINT64_C(0x2545f4914f6cdd1d);
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *st = x;
  return x * UINT64_C(2685821657736338717);
}

/* ---- buffers --------------------------------------------------------------- */

typedef struct fz_buf {
  uint8_t *p;
  size_t len, cap;
} fz_buf;

static inline void fz_buf_put(fz_buf *b, const void *p, size_t n) {
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

static inline void fz_buf_byte(fz_buf *b, uint8_t c) { fz_buf_put(b, &c, 1); }

static inline void fz_buf_str(fz_buf *b, const char *s) {
  fz_buf_put(b, s, strlen(s));
}

FZ_PRINTF(2, 3)
static inline void fz_buf_printf(fz_buf *b, const char *fmt, ...) {
  char tmp[1200];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  fz_buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* fz_same - a[0..an) equals b[0..bn) (either may be NULL when empty). */
static inline int fz_same(const void *a, size_t an, const void *b, size_t bn) {
  static const uint8_t none[1] = {0};
  if (an != bn)
    return 0;
  /* never a NULL argument to memcmp, not even with a length of 0 (gcc
   * may turn "an == 0 ||" into the call itself) */
  return !memcmp(a ? a : none, b ? b : none, an);
}

static inline void fz_buf_free(fz_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- counting allocator ------------------------------------------------------ */

typedef struct fz_mem {
  long attempts;     /* allocation attempts */
  long fail_at;      /* fail the attempt with this number; 0: never */
  int failed;        /* an allocation was failed on purpose */
  long live;         /* blocks not yet freed */
  size_t bytes_live; /* requested octets not yet freed */
  size_t base;       /* bytes_live when the bound starts to apply */
  size_t bound;      /* 0: none */
  size_t peak;       /* max(bytes_live - base) */
  int over;          /* bound exceeded */
} fz_mem;

typedef struct {
  size_t size;
  size_t pad;
} fz_hdr;

static inline void *fz_m_malloc(size_t n, void *ctx) {
  fz_mem *m = ctx;
  fz_hdr *h;
  if (++m->attempts == m->fail_at) {
    m->failed = 1;
    return NULL;
  }
  h = malloc(sizeof *h + (n ? n : 1));
  if (!h)
    return NULL;
  h->size = n;
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

static inline void fz_m_free(void *p, void *ctx) {
  fz_mem *m = ctx;
  fz_hdr *h;
  if (!p)
    return;
  h = (fz_hdr *)p - 1;
  m->live--;
  m->bytes_live -= h->size;
  free(h);
}

static inline void *fz_m_calloc(size_t a, size_t b, void *ctx) {
  void *p;
  if (b && a > SIZE_MAX / b)
    return NULL;
  p = fz_m_malloc(a * b, ctx);
  if (p)
    memset(p, 0, a * b);
  return p;
}

static inline void *fz_m_realloc(void *p, size_t n, void *ctx) {
  fz_hdr *h;
  void *q;
  if (!p)
    return fz_m_malloc(n, ctx);
  h = (fz_hdr *)p - 1;
  q = fz_m_malloc(n, ctx);
  if (!q)
    return NULL;
  memcpy(q, p, h->size < n ? h->size : n);
  fz_m_free(p, ctx);
  return q;
}

static inline smtpd_mem fz_make_mem(fz_mem *st) {
  smtpd_mem m;
  m.ctx = st;
  m.malloc = fz_m_malloc;
  m.free = fz_m_free;
  m.calloc = fz_m_calloc;
  m.realloc = fz_m_realloc;
  return m;
}

/* ---- reply parsing ------------------------------------------------------------ */

typedef struct fz_replies {
  size_t groups;  /* complete reply groups */
  int first_code; /* code of the first group, 0 if none */
  int last_code;  /* code of the last group, 0 if none */
  int codes[8];   /* codes of the first 8 groups */
} fz_replies;

/* fz_parse_replies - 0 when p[0..n) is a sequence of well-formed reply
 * groups: every line "DDD" + ' ' or '-' + printable ASCII + CRLF, at
 * most 512 octets, a multi-line reply keeps its code and is terminated.
 * Otherwise -1 with a reason in why. */
static inline int fz_parse_replies(const uint8_t *p, size_t n, fz_replies *r,
                                   char *why, size_t cap) {
  size_t i = 0;
  int open = 0;
  memset(r, 0, sizeof *r);
  while (i < n) {
    size_t start = i, k, j;
    int code;
    while (i < n && p[i] != '\n')
      i++;
    if (i == n) {
      snprintf(why, cap, "reply bytes without line end at %zu", start);
      return -1;
    }
    i++;
    k = i - start;
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
    for (j = start + 4; j < i - 2; j++)
      if (p[j] < 0x20 || p[j] > 0x7e) {
        snprintf(why, cap, "octet 0x%02x in a reply at %zu", p[j], j);
        return -1;
      }
    code = (p[start] - '0') * 100 + (p[start + 1] - '0') * 10 +
           (p[start + 2] - '0');
    if (open && code != open) {
      snprintf(why, cap, "multi-line reply changes code %d -> %d at %zu",
               open, code, start);
      return -1;
    }
    if (p[start + 3] == '-') {
      open = code;
    } else {
      open = 0;
      if (r->groups < 8)
        r->codes[r->groups] = code;
      r->groups++;
      if (!r->first_code)
        r->first_code = code;
      r->last_code = code;
    }
  }
  if (open) {
    snprintf(why, cap, "unterminated multi-line reply");
    return -1;
  }
  return 0;
}

/* fz_has_code - one of the parsed groups (first 8) has this code. */
static inline int fz_has_code(const fz_replies *r, int code) {
  size_t i;
  for (i = 0; i < r->groups && i < 8; i++)
    if (r->codes[i] == code)
      return 1;
  return 0;
}

#endif /* SMTPD_TESTS_FUZZ_COMMON_H */
