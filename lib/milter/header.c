/*
 * header.c - header sections for the Milter adapter: the bounded
 * streaming splitter, the edited header list, and the rewriter that
 * streams an original message into the edited one.
 *
 *   mlt_buf_*                      growable buffers
 *   mlt_hlist_*                    header list and Sendmail edit semantics
 *   smtpd_milter_hsplit_*          header section splitter (public)
 *   smtpd_milter_rewriter_*        original -> edited message (public)
 */
#include <string.h>

#include "mlt.h"

/* ---- buffers ---------------------------------------------------------------- */

int mlt_buf_reserve(const smtpd_mem *mem, mlt_buf *b, size_t more)
{
  size_t need, cap;
  uint8_t *p;

  if (b->off && b->off == b->len)
    b->off = b->len = 0;
  if (more > SIZE_MAX - b->len)
    return SMTPD_ERR_NOMEM;
  need = b->len + more;
  if (need <= b->cap)
    return 0;
  if (b->off) { /* compact first */
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    need = b->len + more;
    if (need <= b->cap)
      return 0;
  }
  cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = mem->realloc(b->p, cap, mem->ctx);
  if (!p)
    return SMTPD_ERR_NOMEM;
  b->p = p;
  b->cap = cap;
  return 0;
}

int mlt_buf_put(const smtpd_mem *mem, mlt_buf *b, const void *d, size_t n)
{
  int r;

  if (n == 0)
    return 0;
  r = mlt_buf_reserve(mem, b, n);
  if (r)
    return r;
  memcpy(b->p + b->len, d, n);
  b->len += n;
  return 0;
}

void mlt_buf_free(const smtpd_mem *mem, mlt_buf *b)
{
  if (b->p)
    mem->free(b->p, mem->ctx);
  memset(b, 0, sizeof *b);
}

size_t mlt_buf_avail(const mlt_buf *b) { return b->len - b->off; }

void mlt_buf_drop(mlt_buf *b, size_t n)
{
  b->off += n;
  if (b->off >= b->len)
    b->off = b->len = 0;
}

/* ---- header list -------------------------------------------------------------- */

static char *dup_n(const smtpd_mem *mem, const char *s, size_t n)
{
  char *d = mem->malloc(n + 1, mem->ctx);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static void hdr_free(const smtpd_mem *mem, mlt_hdr *h)
{
  if (!h)
    return;
  mem->free(h->name, mem->ctx);
  mem->free(h->value, mem->ctx);
  if (h->raw)
    mem->free(h->raw, mem->ctx);
  mem->free(h, mem->ctx);
}

static mlt_hdr *hdr_new(const smtpd_mem *mem, const char *name, size_t nlen,
                        const char *value, size_t vlen, const uint8_t *raw,
                        size_t rlen)
{
  mlt_hdr *h = mem->calloc(1, sizeof *h, mem->ctx);
  if (!h)
    return NULL;
  h->name = dup_n(mem, name, nlen);
  h->value = dup_n(mem, value, vlen);
  h->value_len = vlen;
  if (raw) {
    h->raw = mem->malloc(rlen ? rlen : 1, mem->ctx);
    if (h->raw)
      memcpy(h->raw, raw, rlen);
    h->raw_len = rlen;
  }
  if (!h->name || !h->value || (raw && !h->raw)) {
    hdr_free(mem, h);
    return NULL;
  }
  return h;
}

static int hlist_insert(const smtpd_mem *mem, mlt_hlist *l, size_t at,
                        mlt_hdr *h)
{
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    mlt_hdr **p = mem->realloc(l->h, cap * sizeof *p, mem->ctx);
    if (!p) {
      hdr_free(mem, h);
      return SMTPD_ERR_NOMEM;
    }
    l->h = p;
    l->cap = cap;
  }
  if (at > l->n)
    at = l->n;
  memmove(l->h + at + 1, l->h + at, (l->n - at) * sizeof *l->h);
  l->h[at] = h;
  l->n++;
  l->bytes += strlen(h->name) + h->value_len;
  return 0;
}

static void hlist_remove(const smtpd_mem *mem, mlt_hlist *l, size_t at)
{
  mlt_hdr *h = l->h[at];
  l->bytes -= strlen(h->name) + h->value_len;
  hdr_free(mem, h);
  memmove(l->h + at, l->h + at + 1, (l->n - at - 1) * sizeof *l->h);
  l->n--;
}

int mlt_hlist_add_raw(const smtpd_mem *mem, mlt_hlist *l,
                      const smtpd_milter_header *hd)
{
  mlt_hdr *h = hdr_new(mem, hd->name, hd->name_len, hd->value, hd->value_len,
                       hd->raw, hd->raw_len);
  if (!h)
    return SMTPD_ERR_NOMEM;
  return hlist_insert(mem, l, l->n, h);
}

static int ascii_casecmp(const char *a, const char *b)
{
  for (;; a++, b++) {
    int ca = (unsigned char)*a, cb = (unsigned char)*b;
    if (ca >= 'A' && ca <= 'Z')
      ca += 32;
    if (cb >= 'A' && cb <= 'Z')
      cb += 32;
    if (ca != cb || !ca)
      return ca - cb;
  }
}

/* Sendmail's semantics: ADDHEADER appends; INSHEADER inserts before the
 * field at position index (0 = first; past the end appends); CHGHEADER
 * changes the index-th field of that name (1-based, 0 taken as 1), an
 * empty value deletes it, and a missing one is appended unless the value
 * is empty. */
int mlt_hlist_apply(const smtpd_mem *mem, mlt_hlist *l,
                    const smtpd_milter_edit *e)
{
  mlt_hdr *h;
  size_t i, seen = 0, want;
  const char *v = e->value ? e->value : "";

  switch (e->kind) {
  case SMTPD_MILTER_EDIT_ADDHEADER:
  case SMTPD_MILTER_EDIT_INSHEADER:
    h = hdr_new(mem, e->name, strlen(e->name), v, strlen(v), NULL, 0);
    if (!h)
      return SMTPD_ERR_NOMEM;
    return hlist_insert(mem, l,
                        e->kind == SMTPD_MILTER_EDIT_ADDHEADER ? l->n
                                                               : e->index,
                        h);
  case SMTPD_MILTER_EDIT_CHGHEADER:
    want = e->index ? e->index : 1;
    for (i = 0; i < l->n; i++) {
      if (ascii_casecmp(l->h[i]->name, e->name) == 0 && ++seen == want)
        break;
    }
    if (i == l->n) {
      if (!*v)
        return 0;
      h = hdr_new(mem, e->name, strlen(e->name), v, strlen(v), NULL, 0);
      if (!h)
        return SMTPD_ERR_NOMEM;
      return hlist_insert(mem, l, l->n, h);
    }
    if (!*v) {
      hlist_remove(mem, l, i);
      return 0;
    }
    h = hdr_new(mem, l->h[i]->name, strlen(l->h[i]->name), v, strlen(v), NULL,
                0);
    if (!h)
      return SMTPD_ERR_NOMEM;
    l->bytes -= strlen(l->h[i]->name) + l->h[i]->value_len;
    hdr_free(mem, l->h[i]);
    l->h[i] = h;
    l->bytes += strlen(h->name) + h->value_len;
    return 0;
  default:
    return 0;
  }
}

void mlt_hlist_clear(const smtpd_mem *mem, mlt_hlist *l)
{
  size_t i;
  for (i = 0; i < l->n; i++)
    hdr_free(mem, l->h[i]);
  if (l->h)
    mem->free(l->h, mem->ctx);
  memset(l, 0, sizeof *l);
}

/* A filter's value: every line end (CRLF, LF, CR) becomes CRLF, and a
 * line after one that does not start with a blank gets a space, so a
 * value can never start a new header field. A final line end is
 * dropped. */
static int write_value(const smtpd_mem *mem, mlt_buf *b, const char *v,
                       size_t n)
{
  size_t i;
  int r = 0;
  while (n && (v[n - 1] == '\n' || v[n - 1] == '\r'))
    n--;
  for (i = 0; i < n && !r; i++) {
    if (v[i] == '\r' || v[i] == '\n') {
      if (v[i] == '\r' && i + 1 < n && v[i + 1] == '\n')
        i++;
      r = mlt_buf_put(mem, b, "\r\n", 2);
      if (!r && i + 1 < n && v[i + 1] != ' ' && v[i + 1] != '\t')
        r = mlt_buf_put(mem, b, " ", 1);
    } else {
      r = mlt_buf_put(mem, b, v + i, 1);
    }
  }
  return r;
}

int mlt_hlist_write(const smtpd_mem *mem, const mlt_hlist *l, mlt_buf *b)
{
  size_t i;
  int r = 0;
  for (i = 0; i < l->n && !r; i++) {
    const mlt_hdr *h = l->h[i];
    if (h->raw) {
      r = mlt_buf_put(mem, b, h->raw, h->raw_len);
      if (!r && (h->raw_len == 0 || h->raw[h->raw_len - 1] != '\n'))
        r = mlt_buf_put(mem, b, "\r\n", 2);
    } else {
      r = mlt_buf_put(mem, b, h->name, strlen(h->name));
      if (!r)
        r = mlt_buf_put(mem, b, ":", 1);
      if (!r)
        r = write_value(mem, b, h->value, h->value_len);
      if (!r)
        r = mlt_buf_put(mem, b, "\r\n", 2);
    }
  }
  return r;
}

int mlt_value_for_filter(const smtpd_mem *mem, const char *v, size_t len,
                         int leadspc, mlt_buf *b)
{
  size_t i = 0;
  int r = 0;
  if (!leadspc)
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
      i++;
  for (; i < len && !r; i++) {
    if (v[i] == '\r' && i + 1 < len && v[i + 1] == '\n')
      continue;
    r = mlt_buf_put(mem, b, v + i, 1);
  }
  if (!r)
    r = mlt_buf_put(mem, b, "", 1);
  return r;
}

/* ---- splitter ----------------------------------------------------------------- */

enum { L_START = 0, L_NAME, L_NAME_WSP, L_VALUE, L_CONT, L_BLANK_CR };

struct smtpd_milter_hsplit {
  smtpd_mem mem;
  size_t max_field, max_section;
  mlt_buf f;          /* the current field, every line so far */
  size_t name_len;    /* octets of the name */
  size_t colon;       /* offset of the colon */
  int ls;             /* line state */
  uint64_t section;   /* octets of fields completed and the blank line */
  int blank_lf;       /* the blank line was a bare LF */
  smtpd_milter_hsplit_end end;
};

int smtpd_milter_hsplit_new(smtpd_milter_hsplit **out, const smtpd_mem *mem,
                            size_t max_field, size_t max_section)
{
  smtpd_milter_hsplit *h;
  if (!out)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!mem)
    mem = smtpd_mem_default();
  h = mem->calloc(1, sizeof *h, mem->ctx);
  if (!h)
    return SMTPD_ERR_NOMEM;
  h->mem = *mem;
  h->max_field = max_field ? max_field : MLT_DEFAULT_HEADER;
  h->max_section = max_section ? max_section : MLT_DEFAULT_HEADERS;
  *out = h;
  return 0;
}

void smtpd_milter_hsplit_del(smtpd_milter_hsplit *h)
{
  if (!h)
    return;
  mlt_buf_free(&h->mem, &h->f);
  h->mem.free(h, h->mem.ctx);
}

static void emit(smtpd_milter_hsplit *h, smtpd_milter_header_fn fn, void *ctx)
{
  smtpd_milter_header hd;
  size_t end = h->f.len;
  const char *p = (const char *)h->f.p;
  if (end && p[end - 1] == '\n') {
    end--;
    if (end > h->colon && p[end - 1] == '\r')
      end--;
  }
  hd.name = p;
  hd.name_len = h->name_len;
  hd.value = p + h->colon + 1;
  hd.value_len = end - h->colon - 1;
  hd.raw = h->f.p;
  hd.raw_len = h->f.len;
  if (fn)
    fn(ctx, &hd);
  h->section += h->f.len;
  h->f.len = 0;
}

static int is_name_char(int c) { return c > 32 && c < 127 && c != ':'; }

ptrdiff_t smtpd_milter_hsplit_feed(smtpd_milter_hsplit *h, const void *data,
                                   size_t len, smtpd_milter_header_fn fn,
                                   void *ctx)
{
  const uint8_t *d = data;
  size_t i;

  if (!h || (!data && len))
    return SMTPD_ERR_INVALID_ARGUMENT;
  for (i = 0; i < len && h->end == SMTPD_MILTER_HS_MORE; i++) {
    int c = d[i];
    if (h->ls == L_START) {
      if (h->f.len && (c == ' ' || c == '\t')) {
        h->ls = L_CONT;
      } else {
        if (h->f.len)
          emit(h, fn, ctx);
        if (c == '\n') {
          h->section++;
          h->blank_lf = 1;
          h->end = SMTPD_MILTER_HS_BLANK;
          return (ptrdiff_t)(i + 1);
        }
        if (c == '\r') {
          h->ls = L_BLANK_CR;
        } else if (is_name_char(c)) {
          h->ls = L_NAME;
          h->name_len = 0;
        } else {
          h->end = SMTPD_MILTER_HS_NOT_HEADER;
          return (ptrdiff_t)i;
        }
      }
    } else if (h->ls == L_BLANK_CR) {
      if (c == '\n') {
        h->f.len = 0;
        h->section += 2;
        h->end = SMTPD_MILTER_HS_BLANK;
        return (ptrdiff_t)(i + 1);
      }
      h->end = SMTPD_MILTER_HS_NOT_HEADER; /* "\r" kept as pending */
      return (ptrdiff_t)i;
    } else if (h->ls == L_NAME || h->ls == L_NAME_WSP) {
      if (c == ':') {
        h->colon = h->f.len;
        if (h->ls == L_NAME)
          h->name_len = h->f.len;
        h->ls = L_VALUE;
      } else if (c == ' ' || c == '\t') {
        if (h->ls == L_NAME)
          h->name_len = h->f.len;
        h->ls = L_NAME_WSP;
      } else if (h->ls == L_NAME && is_name_char(c)) {
        /* part of the name */
      } else {
        h->end = SMTPD_MILTER_HS_NOT_HEADER;
        return (ptrdiff_t)i;
      }
    } else if (c == '\n') { /* L_VALUE, L_CONT */
      h->ls = L_START;
    }
    if (h->f.len + 1 > h->max_field ||
        h->section + h->f.len + 1 > h->max_section) {
      h->end = SMTPD_MILTER_HS_TOO_LONG;
      return (ptrdiff_t)i;
    }
    if (mlt_buf_put(&h->mem, &h->f, &d[i], 1))
      return SMTPD_ERR_NOMEM;
  }
  return (ptrdiff_t)i;
}

int smtpd_milter_hsplit_finish(smtpd_milter_hsplit *h,
                               smtpd_milter_header_fn fn, void *ctx)
{
  if (!h)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (h->end != SMTPD_MILTER_HS_MORE)
    return 0;
  if (h->f.len == 0) {
    h->end = SMTPD_MILTER_HS_EOF;
  } else if (h->ls == L_VALUE || h->ls == L_CONT || h->ls == L_START) {
    emit(h, fn, ctx);
    h->end = SMTPD_MILTER_HS_EOF;
  } else {
    h->end = SMTPD_MILTER_HS_NOT_HEADER;
  }
  return 0;
}

smtpd_milter_hsplit_end smtpd_milter_hsplit_state(const smtpd_milter_hsplit *h)
{
  return h ? h->end : SMTPD_MILTER_HS_MORE;
}

uint64_t smtpd_milter_hsplit_body_offset(const smtpd_milter_hsplit *h)
{
  return h ? h->section : 0;
}

size_t smtpd_milter_hsplit_pending(const smtpd_milter_hsplit *h,
                                   const uint8_t **data)
{
  if (!h || h->end == SMTPD_MILTER_HS_MORE) {
    if (data)
      *data = NULL;
    return 0;
  }
  if (data)
    *data = h->f.p;
  return h->f.len;
}

/* ---- rewriter ------------------------------------------------------------------ */

#define RW_OUT_CAP 65536u

struct smtpd_milter_rewriter {
  smtpd_mem mem;
  const smtpd_milter_edit *edits;
  size_t nedits;
  const smtpd_milter_edit *replbody;
  smtpd_milter_hsplit *hs;
  mlt_hlist hl;
  mlt_buf out;
  const uint8_t *direct;
  size_t direct_len;
  int headers_done;
  int nomem;
};

int smtpd_milter_rewriter_new(smtpd_milter_rewriter **out,
                              const smtpd_mem *mem,
                              const smtpd_milter_edit *edits, size_t nedits,
                              size_t max_field, size_t max_section)
{
  smtpd_milter_rewriter *rw;
  size_t i;
  int r;

  if (!out || (!edits && nedits))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!mem)
    mem = smtpd_mem_default();
  rw = mem->calloc(1, sizeof *rw, mem->ctx);
  if (!rw)
    return SMTPD_ERR_NOMEM;
  rw->mem = *mem;
  rw->edits = edits;
  rw->nedits = nedits;
  for (i = 0; i < nedits; i++)
    if (edits[i].kind == SMTPD_MILTER_EDIT_REPLBODY)
      rw->replbody = &edits[i];
  r = smtpd_milter_hsplit_new(&rw->hs, mem, max_field, max_section);
  if (r) {
    mem->free(rw, mem->ctx);
    return r;
  }
  *out = rw;
  return 0;
}

void smtpd_milter_rewriter_del(smtpd_milter_rewriter *rw)
{
  if (!rw)
    return;
  smtpd_milter_hsplit_del(rw->hs);
  mlt_hlist_clear(&rw->mem, &rw->hl);
  mlt_buf_free(&rw->mem, &rw->out);
  rw->mem.free(rw, rw->mem.ctx);
}

static void rw_header(void *ctx, const smtpd_milter_header *h)
{
  smtpd_milter_rewriter *rw = ctx;
  if (mlt_hlist_add_raw(&rw->mem, &rw->hl, h))
    rw->nomem = 1;
}

/* the header section ended: write it edited, then what starts the body */
static int rw_headers_done(smtpd_milter_rewriter *rw)
{
  size_t i, plen;
  const uint8_t *pend;
  smtpd_milter_hsplit_end end = smtpd_milter_hsplit_state(rw->hs);
  int r = 0;

  rw->headers_done = 1;
  for (i = 0; i < rw->nedits && !r; i++)
    r = mlt_hlist_apply(&rw->mem, &rw->hl, &rw->edits[i]);
  if (!r)
    r = mlt_hlist_write(&rw->mem, &rw->hl, &rw->out);
  if (!r && end == SMTPD_MILTER_HS_BLANK && rw->hs->blank_lf)
    r = mlt_buf_put(&rw->mem, &rw->out, "\n", 1); /* as it was */
  else if (!r && (end == SMTPD_MILTER_HS_BLANK || rw->replbody))
    r = mlt_buf_put(&rw->mem, &rw->out, "\r\n", 2);
  plen = smtpd_milter_hsplit_pending(rw->hs, &pend);
  if (!r && !rw->replbody)
    r = mlt_buf_put(&rw->mem, &rw->out, pend, plen);
  if (rw->replbody) {
    rw->direct = rw->replbody->data;
    rw->direct_len = rw->replbody->len;
  }
  mlt_hlist_clear(&rw->mem, &rw->hl);
  return r;
}

ptrdiff_t smtpd_milter_rewriter_feed(smtpd_milter_rewriter *rw,
                                     const void *data, size_t len)
{
  const uint8_t *d = data;
  size_t taken = 0, room;
  ptrdiff_t n;
  int r;

  if (!rw || (!data && len))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (rw->nomem)
    return SMTPD_ERR_NOMEM;
  if (!rw->headers_done) {
    n = smtpd_milter_hsplit_feed(rw->hs, d, len, rw_header, rw);
    if (n < 0 || rw->nomem)
      return SMTPD_ERR_NOMEM;
    taken = (size_t)n;
    if (smtpd_milter_hsplit_state(rw->hs) == SMTPD_MILTER_HS_MORE)
      return (ptrdiff_t)taken;
    r = rw_headers_done(rw);
    if (r)
      return r;
  }
  if (rw->replbody)
    return (ptrdiff_t)len; /* the original body is dropped */
  if (mlt_buf_avail(&rw->out) >= RW_OUT_CAP)
    return (ptrdiff_t)taken;
  room = RW_OUT_CAP - mlt_buf_avail(&rw->out);
  if (room > len - taken)
    room = len - taken;
  r = mlt_buf_put(&rw->mem, &rw->out, d + taken, room);
  if (r)
    return r;
  return (ptrdiff_t)(taken + room);
}

int smtpd_milter_rewriter_finish(smtpd_milter_rewriter *rw)
{
  if (!rw)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (rw->headers_done)
    return 0;
  smtpd_milter_hsplit_finish(rw->hs, rw_header, rw);
  if (rw->nomem)
    return SMTPD_ERR_NOMEM;
  return rw_headers_done(rw);
}

size_t smtpd_milter_rewriter_output(smtpd_milter_rewriter *rw,
                                    const uint8_t **data)
{
  if (!rw || !data)
    return 0;
  if (mlt_buf_avail(&rw->out)) {
    *data = rw->out.p + rw->out.off;
    return mlt_buf_avail(&rw->out);
  }
  *data = rw->direct;
  return rw->direct_len;
}

int smtpd_milter_rewriter_consume(smtpd_milter_rewriter *rw, size_t n)
{
  if (!rw)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (mlt_buf_avail(&rw->out)) {
    if (n > mlt_buf_avail(&rw->out))
      return SMTPD_ERR_INVALID_ARGUMENT;
    mlt_buf_drop(&rw->out, n);
    return 0;
  }
  if (n > rw->direct_len)
    return SMTPD_ERR_INVALID_ARGUMENT;
  rw->direct += n;
  rw->direct_len -= n;
  return 0;
}
