/*
 * text.c - the driver's small utilities: every allocation goes through
 * the smtpd_mem the caller gave (smtpd_mem_default() otherwise), growable
 * byte buffers, and fixed-size text with the transcript escapes.
 *
 *   smtpd_tr_malloc, _realloc, _free   through the allocator hook
 *   smtpd_tr_buf_*                     growable buffers
 *   smtpd_tr_tb_*                      truncating text, escaping, patterns
 */
#include <stdio.h>
#include <string.h>

#include "tr_internal.h"

#define RUN_SHOW 16u /* runs of one byte shown as \{N:c} */

void *smtpd_tr_malloc(const smtpd_mem *m, size_t n) {
  return m->malloc(n ? n : 1, m->ctx);
}

void *smtpd_tr_realloc(const smtpd_mem *m, void *p, size_t n) {
  return m->realloc(p, n ? n : 1, m->ctx);
}

void smtpd_tr_free(const smtpd_mem *m, void *p) {
  if (p != NULL)
    m->free(p, m->ctx);
}

int smtpd_tr_buf_reserve(const smtpd_mem *m, tr_buf *b, size_t n) {
  size_t want, cap;
  void *np;
  if (n > SIZE_MAX / 2 - b->len)
    return -1;
  want = b->len + n;
  if (want <= b->cap)
    return 0;
  cap = b->cap ? b->cap : 64;
  while (cap < want)
    cap *= 2;
  np = smtpd_tr_realloc(m, b->p, cap);
  if (np == NULL)
    return -1;
  b->p = np;
  b->cap = cap;
  return 0;
}

int smtpd_tr_buf_add(const smtpd_mem *m, tr_buf *b, const void *d, size_t n) {
  if (n == 0)
    return 0;
  if (smtpd_tr_buf_reserve(m, b, n) < 0)
    return -1;
  memcpy(b->p + b->len, d, n);
  b->len += n;
  return 0;
}

int smtpd_tr_buf_addc(const smtpd_mem *m, tr_buf *b, int c) {
  unsigned char ch = (unsigned char)c;
  return smtpd_tr_buf_add(m, b, &ch, 1);
}

void smtpd_tr_buf_free(const smtpd_mem *m, tr_buf *b) {
  smtpd_tr_free(m, b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

void smtpd_tr_tb_init(tr_tbuf *t, char *p, size_t cap) {
  t->p = p;
  t->cap = cap;
  t->len = 0;
  t->full = 0;
  if (cap)
    p[0] = '\0';
}

/* smtpd_tr_tb_put - append n chars; once the buffer is full it ends in "...".
 */
void smtpd_tr_tb_put(tr_tbuf *t, const char *s, size_t n) {
  if (t->full || t->cap < 4)
    return;
  if (n > t->cap - 1 - t->len) {
    size_t room = t->cap - 1 - t->len;
    memcpy(t->p + t->len, s, room);
    t->len += room;
    memcpy(t->p + t->cap - 4, "...", 3);
    t->p[t->cap - 1] = '\0';
    t->full = 1;
    return;
  }
  memcpy(t->p + t->len, s, n);
  t->len += n;
  t->p[t->len] = '\0';
}

void smtpd_tr_tb_str(tr_tbuf *t, const char *s) {
  smtpd_tr_tb_put(t, s, strlen(s));
}

/* esc - bytes with escapes; a space is escaped when it ends the line
 * (at_end), so a trailing space stays visible. */
static void esc(tr_tbuf *t, const unsigned char *b, size_t n, int at_end) {
  size_t i = 0;
  char tmp[40];
  while (i < n && !t->full) {
    unsigned char c = b[i];
    size_t j = i;
    while (j < n && b[j] == c)
      j++;
    if (j - i >= RUN_SHOW && c > 0x20 && c < 0x7f && c != '\\' && c != '}') {
      snprintf(tmp, sizeof tmp, "\\{%lu:%c}", (unsigned long)(j - i), c);
      smtpd_tr_tb_str(t, tmp);
      i = j;
      continue;
    }
    switch (c) {
    case '\\': smtpd_tr_tb_str(t, "\\\\"); break;
    case '\r': smtpd_tr_tb_str(t, "\\r"); break;
    case '\n': smtpd_tr_tb_str(t, "\\n"); break;
    case '\t': smtpd_tr_tb_str(t, "\\t"); break;
    case 0: smtpd_tr_tb_str(t, "\\0"); break;
    default:
      if (c < 0x20 || c >= 0x7f || (c == ' ' && at_end && i + 1 == n)) {
        snprintf(tmp, sizeof tmp, "\\x%02X", c);
        smtpd_tr_tb_str(t, tmp);
      } else {
        tmp[0] = (char)c;
        smtpd_tr_tb_put(t, tmp, 1);
      }
    }
    i++;
  }
}

void smtpd_tr_tb_esc(tr_tbuf *t, const unsigned char *b, size_t n) {
  esc(t, b, n, 1);
}

void smtpd_tr_tb_pat(tr_tbuf *t, const unsigned char *b, size_t n) {
  unsigned char lit[256];
  size_t i = 0, k = 0;
  while (i < n && !t->full) {
    if (b[i] == 0 && i + 1 < n && b[i + 1] == TR_WILD) {
      esc(t, lit, k, 0);
      k = 0;
      smtpd_tr_tb_str(t, "\\*");
      i += 2;
      continue;
    }
    lit[k++] = b[i];
    i += b[i] == 0 ? 2 : 1; /* 0 0: a literal NUL */
    if (k == sizeof lit) {
      esc(t, lit, k, i >= n);
      k = 0;
    }
  }
  esc(t, lit, k, 1);
}
