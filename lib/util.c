/*
 * util.c - allocator hook, error strings, version, name neutering.
 *
 *   smtpd_version, smtpd_strerror, smtpd_is_fatal, smtpd_neuter,
 *   smtpd_mem_default
 *   smtpd_i_alloc/calloc/realloc/free/strdup, smtpd_i_default_mem
 */
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "internal.h"

static void *libc_malloc(size_t n, void *ctx) { (void)ctx; return malloc(n); }
static void libc_free(void *p, void *ctx) { (void)ctx; free(p); }
static void *libc_calloc(size_t a, size_t b, void *ctx) {
  (void)ctx;
  return calloc(a, b);
}
static void *libc_realloc(void *p, size_t n, void *ctx) {
  (void)ctx;
  return realloc(p, n);
}

static const smtpd_mem libc_mem = {NULL, libc_malloc, libc_free, libc_calloc,
                                   libc_realloc};

const smtpd_mem *smtpd_i_default_mem(void) { return &libc_mem; }
const smtpd_mem *smtpd_mem_default(void) { return &libc_mem; }

void *smtpd_i_alloc(const smtpd_mem *m, size_t n) {
  return m->malloc(n ? n : 1, m->ctx);
}
void *smtpd_i_calloc(const smtpd_mem *m, size_t n, size_t size) {
  return m->calloc(n ? n : 1, size ? size : 1, m->ctx);
}
void *smtpd_i_realloc(const smtpd_mem *m, void *p, size_t n) {
  return m->realloc(p, n ? n : 1, m->ctx);
}
void smtpd_i_free(const smtpd_mem *m, void *p) {
  if (p)
    m->free(p, m->ctx);
}
char *smtpd_i_strdup(const smtpd_mem *m, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = smtpd_i_alloc(m, n);
  if (d)
    memcpy(d, s, n);
  return d;
}

const char *smtpd_version(int *num) {
  if (num)
    *num = SMTPD_VERSION_NUM;
  return SMTPD_VERSION_STRING;
}

const char *smtpd_strerror(int err) {
  switch (err) {
#define SMTPD_ERROR_CASE_(name, value, text) \
  case value:                                \
    return text;
    SMTPD_ERROR_TABLE(SMTPD_ERROR_CASE_)
#undef SMTPD_ERROR_CASE_
  case SMTPD_RESULT_TLS_AGAIN:
    return "TLS handshake in progress: write the output, feed more input";
  case SMTPD_RESULT_TRANSCRIPT_MISMATCH:
    return "the session did not follow the transcript";
  default:
    return "unknown error";
  }
}

int smtpd_is_fatal(int err) { return err <= SMTPD_ERR_FATAL; }

/* What smtpd_neuter makes of each octet: printable ASCII except
 * ` <>()\\";@` stays, anything else becomes '?'. */
static const unsigned char neuter_map[256] = {
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 33, 63, 35,
    36, 37, 38, 39, 63, 63, 42, 43, 44, 45, 46, 47,
    48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 63,
    63, 61, 63, 63, 63, 65, 66, 67, 68, 69, 70, 71,
    72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83,
    84, 85, 86, 87, 88, 89, 90, 91, 63, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107,
    108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119,
    120, 121, 122, 123, 124, 125, 126, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63,
};

size_t smtpd_neuter(char *dst, size_t cap, const char *src) {
  size_t n, i, m;
  if (!src)
    src = "";
  n = strlen(src);
  if (!dst || !cap)
    return n;
  m = n < cap ? n : cap - 1;
  for (i = 0; i < m; i++)
    dst[i] = (char)neuter_map[(unsigned char)src[i]];
  dst[m] = '\0';
  return n;
}

#if defined(__SSE2__)
/* The octets of v that neuter_map changes: below '!' or above '~' (as
 * signed octets, 0x80..0xff are below '!' too) and `"();<>@\`. */
static int unsafe16(__m128i v) {
  __m128i bad = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x21)),
                             _mm_cmpgt_epi8(v, _mm_set1_epi8(0x7e)));
  /* ( and ) are 0x28/0x29, < and > 0x3c/0x3e */
  bad = _mm_or_si128(bad, _mm_cmpeq_epi8(_mm_or_si128(v, _mm_set1_epi8(1)),
                                         _mm_set1_epi8(0x29)));
  bad = _mm_or_si128(bad, _mm_cmpeq_epi8(_mm_or_si128(v, _mm_set1_epi8(2)),
                                         _mm_set1_epi8(0x3e)));
  bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8(0x22)));
  bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8(0x3b)));
  bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8(0x40)));
  bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8(0x5c)));
  return _mm_movemask_epi8(bad);
}
#endif

void smtpd_i_copy_neutered(char *restrict dst, char *restrict safe,
                           const char *restrict src, size_t n) {
  size_t i = 0;
#if defined(__SSE2__)
  /* sixteen at a time, the last block overlapping; a block with an octet
   * to neuter, and what follows it, goes through the table below */
  if (n > 16) {
    for (;; i += 16) {
      __m128i v;
      if (i + 16 > n - 1)
        i = n - 1 - 16;
      v = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
      if (unsafe16(v))
        break;
      _mm_storeu_si128((__m128i *)(void *)(dst + i), v);
      _mm_storeu_si128((__m128i *)(void *)(safe + i), v);
      if (i + 16 >= n - 1) {
        i = n - 1;
        break;
      }
    }
  }
#endif
  for (; i + 1 < n; i++) {
    unsigned char c = (unsigned char)src[i];
    dst[i] = (char)c;
    safe[i] = (char)neuter_map[c];
  }
  dst[i] = safe[i] = '\0';
}
