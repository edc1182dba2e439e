/*
 * util.c - allocator hook, error strings, version, name neutering.
 *
 *   smtpd_version, smtpd_strerror, smtpd_is_fatal, smtpd_neuter,
 *   smtpd_mem_default
 *   smtpd_i_alloc/calloc/realloc/free/strdup, smtpd_i_default_mem
 */
#include <stdlib.h>
#include <string.h>

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

void smtpd_i_copy_neutered(char *restrict dst, char *restrict safe,
                           const char *restrict src,
                           size_t n) {
  size_t i;
  for (i = 0; i + 1 < n; i++) {
    unsigned char c = (unsigned char)src[i];
    dst[i] = (char)c;
    safe[i] = (char)neuter_map[c];
  }
  dst[i] = safe[i] = '\0';
}
