/*
 * received.c - the Received: trace header field (RFC 5321 4.4) with the
 * RFC 3848 / RFC 6531 transmission types, laid out as Postfix writes it.
 *
 * Every text that goes into the field is sanitised on the way in: only
 * printable ASCII ever reaches the output, comment text has "(", ")",
 * "\" and '"' escaped as quoted-pairs, domains and atoms keep only the
 * characters their grammar allows, and the "for" path can never hold an
 * angle bracket. The field is written in one pass straight into the
 * caller's buffer, span by span (a text that needs no change is checked
 * with a table and copied whole): one "logical line" per Postfix line,
 * its words separated by spaces whose offsets are noted as fold points.
 * When a logical line ends within 78 octets (the usual case) nothing more
 * is done; else, from left to right, a fold point whose next word would
 * end past 78 becomes CRLF TAB and the rest of the line moves two octets
 * on (the only octets written twice). A clause keyword and its value
 * ("from x", "by x", "with x", "id x", "for <x>"), a quoted local part
 * and the date hold no fold point, so they are never split.
 *
 *   smtpd_received_init          zero a description, set the defaults
 *   smtpd_received_from_session  fill a description from a session
 *   smtpd_received_format        write the field, snprintf semantics
 *   smtpd_received_protocol      the "with" transmission type
 */
#include <string.h>

#include "smtpd/received.h"

#define LINE_LIMIT 78        /* RFC 5322 2.1.1 SHOULD, excluding CRLF */
#define MAX_ADDR 64          /* client IP text (IPv6 with zone fits) */
#define MAX_PATH 520         /* "<" quoted local (255) "@" domain (255) ">" */
#define SPILL_SIZE 1024      /* one span that does not fit in the buffer */
#define MAX_SOFT 272         /* fold points on one logical line (<= 260:
                                two comments of <= 127 spaces each and
                                the constants' few) */

/* The earliest and latest instants RFC 5322 dates can carry here:
 * 1900-01-01T00:00:00 and 9999-12-31T23:59:59. */
#define DATE_MIN INT64_C(-2208988800)
#define DATE_MAX INT64_C(253402300799)

/* ---- transmission types ----------------------------------------------- */

/* [base][utf8][tls][auth] */
static const char *const proto_names[3][2][2][2] = {
  { { { "SMTP", "SMTP" }, { "SMTP", "SMTP" } },
    { { "SMTP", "SMTP" }, { "SMTP", "SMTP" } } },
  { { { "ESMTP", "ESMTPA" }, { "ESMTPS", "ESMTPSA" } },
    { { "UTF8SMTP", "UTF8SMTPA" }, { "UTF8SMTPS", "UTF8SMTPSA" } } },
  { { { "LMTP", "LMTPA" }, { "LMTPS", "LMTPSA" } },
    { { "UTF8LMTP", "UTF8LMTPA" }, { "UTF8LMTPS", "UTF8LMTPSA" } } },
};

/* smtpd_received_protocol - the "with" type for a session. */
const char *smtpd_received_protocol(smtpd_received_base base, int is_helo,
                                    int utf8, int tls, int auth)
{
  unsigned b = (unsigned)base;

  if (b > (unsigned)SMTPD_RECEIVED_LMTP)
    return NULL;
  if (b == (unsigned)SMTPD_RECEIVED_ESMTP && is_helo)
    b = (unsigned)SMTPD_RECEIVED_SMTP;
  return proto_names[b][utf8 != 0][tls != 0][auth != 0];
}

/* ---- description ------------------------------------------------------ */

/* smtpd_received_init - zero a description and set its defaults. */
void smtpd_received_init(smtpd_received *r)
{
  if (r == NULL)
    return;
  memset(r, 0, sizeof *r);
  r->version = SMTPD_RECEIVED_VERSION;
  r->software = "libsmtpd";
  r->base = SMTPD_RECEIVED_ESMTP;
}

/* smtpd_received_from_session - borrow the session's state into r. */
int smtpd_received_from_session(smtpd_received *r, const smtpd_session *s)
{
  int esmtp;

  if (r == NULL || s == NULL || r->version != SMTPD_RECEIVED_VERSION)
    return SMTPD_ERR_INVALID_ARGUMENT;
  esmtp = smtpd_session_is_esmtp(s) != 0;
  r->helo = smtpd_session_helo(s);
  r->rdns = smtpd_session_client_rdns(s);
  r->addr = smtpd_session_client_addr(s);
  r->hostname = smtpd_session_hostname(s);
  if (r->base == SMTPD_RECEIVED_LMTP) {
    r->is_helo = 0;
  } else {
    r->base = esmtp ? SMTPD_RECEIVED_ESMTP : SMTPD_RECEIVED_SMTP;
    r->is_helo = !esmtp;
  }
  r->utf8 = smtpd_session_smtputf8(s) != 0;
  r->tls = smtpd_session_tls(s);
  r->auth_user = smtpd_session_auth_user(s);
  r->recipient = smtpd_session_recipient_count(s) == 1
                     ? smtpd_session_recipient(s, 0)
                     : NULL;
  return SMTPD_OK;
}

/* ---- character tables -------------------------------------------------- */

/* Each table maps an octet to itself when the grammar allows it there and
 * to '?' otherwise (map_*), or says whether it may be copied as it is
 * (plain_comment). Built from constant expressions, 256 entries each. */
#define C_ALNUM(c)                                                          \
  (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') ||             \
   ((c) >= '0' && (c) <= '9'))
#define C_ATEXT(c)                                                          \
  (C_ALNUM(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||   \
   (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' ||  \
   (c) == '/' || (c) == '=' || (c) == '?' || (c) == '^' || (c) == '_' ||   \
   (c) == '`' || (c) == '{' || (c) == '|' || (c) == '}' || (c) == '~')
#define C_PLAIN_COMMENT(c)                                                  \
  ((c) > 0x20 && (c) < 0x7f && (c) != '(' && (c) != ')' && (c) != '\\' &&  \
   (c) != '"')

#define M_DOMAIN(c) (C_ATEXT(c) || (c) == '.' ? (c) : '?')
#define M_LITERAL(c)                                                        \
  (C_ALNUM(c) || (c) == '.' || (c) == ':' || (c) == '-' || (c) == '_'       \
       ? (c) : '?')
#define M_ATOM(c) (C_ATEXT(c) ? (c) : '?')
#define M_ADDR(c)                                                           \
  (C_ALNUM(c) || (c) == '.' || (c) == ':' || (c) == '%' ? (c) : '?')
#define B_DOT_ATOM(c) (C_ATEXT(c) ? 1 : (c) == '.' ? 2 : 0)
#define X_COMMENT(c) (C_PLAIN_COMMENT(c) ? 0 : 1)
#define X_DOMAIN(c) (M_DOMAIN(c) == (c) ? 0 : 1)
#define X_ATOM(c) (M_ATOM(c) == (c) ? 0 : 1)
#define X_ADDR(c) (M_ADDR(c) == (c) ? 0 : 1)
#define X_LOCAL(c) (C_ATEXT(c) || (c) == '.' ? 0 : 1)

#define T4(f, b) f((b)), f((b) + 1), f((b) + 2), f((b) + 3)
#define T16(f, b) T4(f, b), T4(f, (b) + 4), T4(f, (b) + 8), T4(f, (b) + 12)
#define T64(f, b)                                                           \
  T16(f, b), T16(f, (b) + 16), T16(f, (b) + 32), T16(f, (b) + 48)
#define T256(f) T64(f, 0), T64(f, 64), T64(f, 128), T64(f, 192)

static const unsigned char map_domain[256] = { T256(M_DOMAIN) };
static const unsigned char map_literal[256] = { T256(M_LITERAL) };
static const unsigned char map_atom[256] = { T256(M_ATOM) };
static const unsigned char map_addr[256] = { T256(M_ADDR) };
/* 1: atext, 2: '.', 0: neither */
static const unsigned char cls_dot_atom[256] = { T256(B_DOT_ATOM) };
/* 1: the octet would change (or, in a comment, is a space) */
static const unsigned char odd_comment[256] = { T256(X_COMMENT) };
static const unsigned char odd_domain[256] = { T256(X_DOMAIN) };
static const unsigned char odd_atom[256] = { T256(X_ATOM) };
static const unsigned char odd_addr[256] = { T256(X_ADDR) };
static const unsigned char odd_local[256] = { T256(X_LOCAL) };

#define ODD4(t, u, i)                                                       \
  ((unsigned)((t)[(u)[(i)]] | (t)[(u)[(i) + 1]] | (t)[(u)[(i) + 2]] |       \
              (t)[(u)[(i) + 3]]))

/* any_odd - whether one of s[0..n) is marked in t. Blocks of eight (16
 * octets and more) or four, the last one overlapping: no tail loop. */
static inline int any_odd(const char *s, size_t n, const unsigned char *t)
{
  const unsigned char *u = (const unsigned char *)s;
  unsigned odd = 0;
  size_t i;

  if (n >= 16) {
    for (i = 0; i + 8 < n; i += 8)
      odd |= ODD4(t, u, i) | ODD4(t, u, i + 4);
    return (odd | ODD4(t, u, n - 8) | ODD4(t, u, n - 4)) != 0;
  }
  if (n >= 4) {
    for (i = 0; i + 4 < n; i += 4)
      odd |= ODD4(t, u, i);
    return (odd | ODD4(t, u, n - 4)) != 0;
  }
  for (i = 0; i < n; i++)
    odd |= t[u[i]];
  return odd != 0;
}

/* copy_span - memcpy, with the short spans of a header field done in at
 * most four moves. */
static inline void copy_span(char *d, const char *s, size_t n)
{
  if (n >= 16) {
    if (n <= 32) {
      memcpy(d, s, 16);
      memcpy(d + n - 16, s + n - 16, 16);
    } else {
      memcpy(d, s, n);
    }
  } else if (n >= 8) {
    memcpy(d, s, 8);
    memcpy(d + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    memcpy(d, s, 4);
    memcpy(d + n - 4, s + n - 4, 4);
  } else if (n > 0) {
    d[0] = s[0];
    d[n / 2] = s[n / 2];
    d[n - 1] = s[n - 1];
  }
}

/* map_copy - d[i] = t[s[i]] for n octets. */
static void map_copy(char *d, const char *s, size_t n,
                     const unsigned char *t)
{
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;

  for (; i + 4 <= n; i += 4) {
    d[i] = (char)t[u[i]];
    d[i + 1] = (char)t[u[i + 1]];
    d[i + 2] = (char)t[u[i + 2]];
    d[i + 3] = (char)t[u[i + 3]];
  }
  for (; i < n; i++)
    d[i] = (char)t[u[i]];
}

/* copy_mapped - s[0..n) through map into d: copied as it is when no
 * octet is marked in odd (the common case), else octet by octet. */
static inline void copy_mapped(char *d, const char *s, size_t n,
                               const unsigned char *map,
                               const unsigned char *odd)
{
  if (any_odd(s, n, odd))
    map_copy(d, s, n, map);
  else
    copy_span(d, s, n);
}

/* ---- output ------------------------------------------------------------ */

/* Everything that takes an out is inlined into smtpd_received_format, so
 * that len and the rest live in registers: nothing else may see the
 * address of an out (a store into the buffer could otherwise change them
 * as far as the compiler knows). */
#if defined(__GNUC__)
#define OUT_FN static inline __attribute__((always_inline))
#else
#define OUT_FN static inline
#endif

/* The field goes straight into the caller's buffer; len counts the whole
 * field whatever fits (snprintf semantics). A span that does not fit
 * whole is built in spill and its fitting prefix copied. */
typedef struct out {
  char *buf;
  size_t lim;        /* octets that may be stored: cap - 1, or 0 */
  size_t len;        /* octets of the full field so far */
  size_t line_start; /* offset of the current output line's first octet */
  size_t nsoft;      /* fold points (spaces) on the current logical line */
  size_t *soft;      /* [MAX_SOFT]: their offsets, before any fold */
  char *spill;       /* [SPILL_SIZE] */
} out;

/* room - where to write the next n (<= SPILL_SIZE) octets. */
OUT_FN char *room(out *o, size_t n)
{
  return o->len + n <= o->lim ? o->buf + o->len : o->spill;
}

/* commit - n octets were written at p (from room). */
OUT_FN void commit(out *o, const char *p, size_t n)
{
  if (p == o->spill && o->len < o->lim) {
    size_t k = o->lim - o->len;
    memcpy(o->buf + o->len, o->spill, k < n ? k : n);
  }
  o->len += n;
}

/* put_bytes - n octets as they are (a constant n becomes a few moves). */
OUT_FN void put_bytes(out *o, const char *s, size_t n)
{
  if (o->len + n <= o->lim)
    copy_span(o->buf + o->len, s, n);
  else if (o->len < o->lim)
    memcpy(o->buf + o->len, s, o->lim - o->len);
  o->len += n;
}

/* PUT_LIT - a trusted constant without fold points. */
#define PUT_LIT(o, lit) put_bytes((o), (lit), sizeof(lit) - 1)

OUT_FN void put_char(out *o, char c)
{
  if (o->len < o->lim)
    o->buf[o->len] = c;
  o->len++;
}

/* Where a logical line being folded stands. */
typedef struct line_pos {
  size_t len;        /* octets of the field */
  size_t line_start; /* offset of the current output line */
} line_pos;

/* fold_at - turn the space at p into CRLF TAB, moving what follows it
 * on the line (what fits of it in lim) two octets on. */
static line_pos fold_at(char *buf, size_t lim, line_pos at, size_t p)
{
  if (p + 3 < lim) {
    size_t end = at.len + 2 < lim ? at.len + 2 : lim;
    memmove(buf + p + 3, buf + p + 1, end - (p + 3));
  }
  if (p < lim)
    buf[p] = '\r';
  if (p + 1 < lim)
    buf[p + 1] = '\n';
  if (p + 2 < lim)
    buf[p + 2] = '\t';
  at.len += 2;
  at.line_start = p + 2;
  return at;
}

/* fold_line - the logical line just written ran past LINE_LIMIT: from
 * left to right, a fold point becomes CRLF TAB when the word after it
 * would end past LINE_LIMIT on its output line (the first word of a
 * logical line is never moved). Each fold shifts the rest by two. */
static line_pos fold_line(char *buf, size_t lim, line_pos at,
                          const size_t *soft, size_t nsoft)
{
  size_t i, shift = 0;

  for (i = 0; i < nsoft; i++) {
    size_t end = i + 1 < nsoft ? soft[i + 1] + shift : at.len;
    if (end - at.line_start > LINE_LIMIT) {
      at = fold_at(buf, lim, at, soft[i] + shift);
      shift += 2;
    }
  }
  return at;
}

/* mark_soft - the octet at offset at (a space) is a fold point. */
OUT_FN void mark_soft(out *o, size_t at)
{
  if (o->nsoft < MAX_SOFT) /* always: see MAX_SOFT */
    o->soft[o->nsoft++] = at;
}

/* soft_space - a fold point between two words. */
OUT_FN void soft_space(out *o)
{
  mark_soft(o, o->len);
  put_char(o, ' ');
}

/* SOFT_LIT - a fold point and the trusted constant after it: lit starts
 * with the space and holds no other fold point. */
#define SOFT_LIT(o, lit)                                                    \
  do {                                                                      \
    mark_soft((o), (o)->len);                                               \
    PUT_LIT(o, lit);                                                        \
  } while (0)

/* line_end - the logical line is complete: fold it if it is too long. */
OUT_FN void line_end(out *o)
{
  if (o->len - o->line_start > LINE_LIMIT) {
    line_pos at;
    at.len = o->len;
    at.line_start = o->line_start;
    at = fold_line(o->buf, o->lim, at, o->soft, o->nsoft);
    o->len = at.len;
    o->line_start = at.line_start;
  }
  o->nsoft = 0;
}

/* next_line - end the logical line and start the next on a continuation
 * line. */
OUT_FN void next_line(out *o)
{
  line_end(o);
  PUT_LIT(o, "\r\n\t");
  o->line_start = o->len - 1;
}

/* put_words - a trusted constant whose spaces are fold points. */
OUT_FN void put_words(out *o, const char *s)
{
  const char *sp;

  while ((sp = strchr(s, ' ')) != NULL) {
    put_bytes(o, s, (size_t)(sp - s));
    soft_space(o);
    s = sp + 1;
  }
  put_bytes(o, s, strlen(s));
}

/* uint_to - v in decimal into d (20 octets); returns the octets. */
static size_t uint_to(char *d, uint64_t v)
{
  char tmp[20];
  size_t n = sizeof tmp;

  if (v < 1000u) { /* key sizes */
    d[0] = (char)('0' + v / 100u);
    d[1] = (char)('0' + v / 10u % 10u);
    d[2] = (char)('0' + v % 10u);
    n = v >= 100u ? 0 : v >= 10u ? 1 : 2;
    if (n > 0)
      memmove(d, d + n, 3 - n);
    return 3 - n;
  }
  do {
    tmp[--n] = (char)('0' + (int)(v % 10u));
    v /= 10u;
  } while (v != 0u);
  memcpy(d, tmp + n, sizeof tmp - n);
  return sizeof tmp - n;
}

/* put_uint - v in decimal. */
OUT_FN void put_uint(out *o, uint64_t v)
{
  char *p = room(o, 20);

  commit(o, p, uint_to(p, v));
}

/* ---- sanitised texts --------------------------------------------------- */

/* domain_len - octets put_domain writes for s[0..n). */
static size_t domain_len(const char *s, size_t n, int *literal)
{
  *literal = n >= 2 && s[0] == '[' && s[n - 1] == ']';
  if (*literal)
    return (n - 2 < SMTPD_RECEIVED_MAX_TEXT - 2 ? n - 2
                                                : SMTPD_RECEIVED_MAX_TEXT - 2) +
           2;
  return n < SMTPD_RECEIVED_MAX_TEXT ? n : SMTPD_RECEIVED_MAX_TEXT;
}

/* domain_to - write a domain or "[literal]" (helo, rdns, our name, the
 * recipient's domain) to d, k = domain_len() octets. A dot-atom keeps
 * atext and dots; a literal keeps its brackets and letters, digits and
 * ".:-_" inside. Anything else becomes '?'. At most
 * SMTPD_RECEIVED_MAX_TEXT octets. */
static void domain_to(char *d, const char *s, size_t k, int literal)
{
  if (literal) {
    d[0] = '[';
    map_copy(d + 1, s + 1, k - 2, map_literal);
    d[k - 1] = ']';
  } else {
    copy_mapped(d, s, k, map_domain, odd_domain);
  }
}

/* put_domain - domain_to into the output; s is not empty. */
OUT_FN void put_domain(out *o, const char *s)
{
  int literal;
  size_t k = domain_len(s, strlen(s), &literal);
  char *p = room(o, k);

  domain_to(p, s, k, literal);
  commit(o, p, k);
}

/* put_domain_or - put_domain, or fallback when s is NULL or empty. */
OUT_FN void put_domain_or(out *o, const char *s, const char *fallback)
{
  if (s == NULL || *s == '\0')
    put_bytes(o, fallback, strlen(fallback));
  else
    put_domain(o, s);
}

/* put_mapped - the first min(strlen(s), max) octets of s through t. */
OUT_FN void put_mapped(out *o, const char *s, size_t max,
                       const unsigned char *t, const unsigned char *odd)
{
  size_t k = strlen(s);
  char *p;

  if (k > max)
    k = max;
  p = room(o, k);
  copy_mapped(p, s, k, t, odd);
  commit(o, p, k);
}

/* comment_to - text inside a comment, into d (SMTPD_RECEIVED_MAX_TEXT
 * octets): printable ASCII; "(", ")", "\" and '"' become quoted-pairs;
 * runs of spaces collapse to one, leading and trailing spaces go; other
 * octets become '?'. At most SMTPD_RECEIVED_MAX_TEXT octets, never
 * splitting a pair. Returns the octets written. */
static size_t comment_to(char *d, const char *s)
{
  size_t out = 0;
  int space = 0;

  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    size_t need;
    int esc = 0;

    if (c == ' ') {
      space = out > 0;
      continue;
    }
    if (c < 0x20 || c > 0x7e)
      c = '?';
    else if (c == '(' || c == ')' || c == '\\' || c == '"')
      esc = 1;
    need = (size_t)space + (size_t)esc + 1u;
    if (out + need > SMTPD_RECEIVED_MAX_TEXT)
      break;
    if (space)
      d[out++] = ' ';
    if (esc)
      d[out++] = '\\';
    d[out++] = (char)c;
    space = 0;
  }
  return out;
}

/* put_comment - comment_to into the output, its spaces fold points.
 * Returns the octets written. The common text (no space, nothing to
 * escape or replace, within the limit) is copied as it is. */
OUT_FN size_t put_comment(out *o, const char *s)
{
  char tmp[SMTPD_RECEIVED_MAX_TEXT];
  size_t n = strlen(s), i, w;

  if (n > SMTPD_RECEIVED_MAX_TEXT)
    n = SMTPD_RECEIVED_MAX_TEXT;
  if (n > 0 && !any_odd(s, n, odd_comment)) {
    put_bytes(o, s, n);
    return n;
  }
  n = comment_to(tmp, s);
  for (i = 0, w = 0; i < n; i++) {
    if (tmp[i] == ' ') {
      put_bytes(o, tmp + w, i - w);
      soft_space(o);
      w = i + 1;
    }
  }
  put_bytes(o, tmp + w, n - w);
  return n;
}

/* put_comment_or - put_comment, or fallback when nothing is left. */
OUT_FN void put_comment_or(out *o, const char *s, const char *fallback)
{
  if (s == NULL || put_comment(o, s) == 0)
    put_bytes(o, fallback, strlen(fallback));
}

/* put_addr - the client IP inside brackets' content: "IPv6:" prefixed
 * when it holds a ':', letters, digits and ".:%" kept. */
OUT_FN void put_addr(out *o, const char *s)
{
  size_t n;

  if (s == NULL || *s == '\0') {
    PUT_LIT(o, "unknown");
    return;
  }
  n = strlen(s);
  if (memchr(s, ':', n) != NULL &&
      !(n >= 5 && (s[0] == 'I' || s[0] == 'i') &&
        (s[1] == 'P' || s[1] == 'p') && (s[2] == 'v' || s[2] == 'V') &&
        s[3] == '6' && s[4] == ':'))
    PUT_LIT(o, "IPv6:");
  put_mapped(o, s, MAX_ADDR, map_addr, odd_addr);
}

/* is_dot_atom - RFC 5322 3.2.3 dot-atom-text. */
static int is_dot_atom(const char *s, size_t n)
{
  size_t i;
  unsigned prev = 2;

  if (n == 0 || s[n - 1] == '.')
    return 0;
  for (i = 0; i < n; i++) {
    unsigned c = cls_dot_atom[(unsigned char)s[i]];
    if (c == 0 || (c & prev & 2u) != 0)
      return 0; /* not atext, or a dot first or after a dot */
    prev = c;
  }
  return 1;
}

/* split_path - find the local part and domain of "local@domain" where
 * the local part may be a quoted string holding '@'. *dom is NULL when
 * there is no '@'. */
static void split_path(const char *s, size_t *llen, const char **dom)
{
  const char *at;

  if (s[0] == '"') {
    size_t i = 1;
    while (s[i] != '\0' && s[i] != '"')
      i += (s[i] == '\\' && s[i + 1] != '\0') ? 2u : 1u;
    if (s[i] == '"' && (s[i + 1] == '@' || s[i + 1] == '\0')) {
      *llen = i + 1;
      *dom = s[i + 1] == '@' ? s + i + 2 : NULL;
      return;
    }
    at = strrchr(s, '@'); /* malformed quoting: the last '@' */
  } else {
    at = strchr(s, '@');
  }
  *llen = at != NULL ? (size_t)(at - s) : strlen(s);
  *dom = at != NULL ? at + 1 : NULL;
}

/* local_to - "<" and the local part of the "for" path into d, the
 * general way: the local part is unquoted, sanitised (controls,
 * non-ASCII, '<' and '>' become '?'), cut to the text limit and written
 * as a dot-atom when it is one, else as a quoted string. Sets *dom as
 * split_path does. Returns the octets written. */
static size_t local_to(char *d, const char *s, const char **dom)
{
  char raw[SMTPD_RECEIVED_MAX_TEXT] = { 0 }; /* (zeroed: gcc cannot see
                                                that rn bounds the reads) */
  size_t llen, rn = 0, i, used, n = 0;

  split_path(s, &llen, dom);
  if (llen >= 2 && s[0] == '"' && s[llen - 1] == '"') {
    for (i = 1; i + 1 < llen && rn < sizeof raw; i++) {
      if (s[i] == '\\' && i + 2 < llen)
        i++;
      raw[rn++] = s[i];
    }
  } else {
    for (i = 0; i < llen && rn < sizeof raw; i++)
      raw[rn++] = s[i];
  }
  for (i = 0; i < rn; i++) {
    unsigned char c = (unsigned char)raw[i];
    if (c < 0x20 || c > 0x7e || c == '<' || c == '>')
      raw[i] = '?';
  }
  d[n++] = '<';
  if (is_dot_atom(raw, rn)) {
    memcpy(d + n, raw, rn);
    n += rn;
  } else {
    d[n++] = '"';
    used = 2; /* both quotes */
    for (i = 0; i < rn; i++) {
      int esc = raw[i] == '"' || raw[i] == '\\';
      if (used + (size_t)esc + 1u > SMTPD_RECEIVED_MAX_TEXT)
        break;
      if (esc)
        d[n++] = '\\';
      d[n++] = raw[i];
      used += (size_t)esc + 1u;
    }
    d[n++] = '"';
  }
  return n;
}

/* path_to - the "for" path "<local@domain>" into d (MAX_PATH octets), one
 * word (the spaces of a quoted local part are no fold points). The
 * common local part, an unquoted dot-atom, is checked while looking for
 * the '@' and copied as it is; any other goes through local_to. The
 * domain goes through domain_to. Returns the octets written. */
static size_t path_to(char *d, const char *s)
{
  const char *at = strchr(s, '@'), *dom, *dot;
  size_t llen = at != NULL ? (size_t)(at - s) : strlen(s), n;
  int simple = llen > 0 && llen <= SMTPD_RECEIVED_MAX_TEXT &&
               s[0] != '.' && s[llen - 1] != '.' &&
               !any_odd(s, llen, odd_local);

  /* ... and no ".." */
  for (dot = simple ? memchr(s, '.', llen) : NULL; dot != NULL;
       dot = memchr(dot + 1, '.', llen - (size_t)(dot + 1 - s)))
    if (dot[1] == '.')
      simple = 0, dot = s + llen - 1; /* (stops the search) */
  if (simple) { /* the first '@' ends a dot-atom local part */
    d[0] = '<';
    copy_span(d + 1, s, llen);
    n = llen + 1;
    dom = at != NULL ? at + 1 : NULL;
  } else {
    n = local_to(d, s, &dom);
  }
  if (dom != NULL && *dom != '\0') {
    int literal;
    size_t k = domain_len(dom, strlen(dom), &literal);
    d[n++] = '@';
    domain_to(d + n, dom, k, literal);
    n += k;
  }
  d[n++] = '>';
  return n;
}

/* put_path - path_to into the output. */
OUT_FN void put_path(out *o, const char *s)
{
  char *p = room(o, MAX_PATH);

  commit(o, p, path_to(p, s));
}

/* date_to - RFC 5322 3.3 date-time into d (32 octets), one word:
 * "Tue, 24 Nov 2026 19:40:00 +0000". Returns the octets written. */
static size_t date_to(char *d, int64_t t, int offset)
{
  static const char wdays[] = "Mon,Tue,Wed,Thu,Fri,Sat,Sun,";
  static const char months[] =
      " Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec";
  static const char digits2[] =
      "00010203040506070809101112131415161718192021222324"
      "25262728293031323334353637383940414243444546474849"
      "50515253545556575859606162636465666768697071727374"
      "75767778798081828384858687888990919293949596979899";
  int zone_known = offset >= -1439 && offset <= 1439;
  uint64_t u;
  uint32_t days, secs, hh, mm, z, era, doe, cen, doc, yoc, doy, mp, year,
      month, mday;
  char *q;

  if (!zone_known)
    offset = 0;
  if (t < DATE_MIN - 86400)
    t = DATE_MIN - 86400;
  if (t > DATE_MAX + 86400)
    t = DATE_MAX + 86400;
  t += (int64_t)offset * 60;
  if (t < DATE_MIN)
    t = DATE_MIN;
  if (t > DATE_MAX)
    t = DATE_MAX;

  u = (uint64_t)(t - DATE_MIN);   /* seconds since 1900-01-01 */
  days = (uint32_t)(u / 86400u);  /* 0..2958463 */
  secs = (uint32_t)(u % 86400u);

  /* Civil date from a day count, with years starting on 1 March so the
   * leap day falls last: 400-year eras of 146097 days, counted from
   * 0000-03-01 (693901 days before 1900-01-01); in an era, centuries of
   * 36524 days (the last one 36525); in a century, 4-year runs of 1461
   * days (the last one 1460 but in the last century). */
  z = days + 693901u;
  era = z / 146097u;
  doe = z - era * 146097u;                                     /* 0..146096 */
  cen = (4u * doe + 3u) / 146097u;                             /* 0..3 */
  doc = doe - 146097u * cen / 4u;                              /* 0..36524 */
  yoc = (4u * doc + 3u) / 1461u;                               /* 0..99 */
  doy = doc - 1461u * yoc / 4u;                                /* 0..365 */
  mp = (5u * doy + 2u) / 153u;                                 /* 0..11 */
  mday = doy - (153u * mp + 2u) / 5u + 1u;                     /* 1..31 */
  month = mp < 10u ? mp + 3u : mp - 9u;                        /* 1..12 */
  year = era * 400u + cen * 100u + yoc + (month <= 2u);        /* 1900..9999 */

  memcpy(d, wdays + days % 7u * 4u, 4); /* 1900-01-01 was a Monday */
  d[4] = ' ';
  if (mday >= 10u) {
    memcpy(d + 5, digits2 + mday * 2u, 2);
    q = d + 7;
  } else {
    d[5] = (char)('0' + mday);
    q = d + 6;
  }
  /* q: " Mmm YYYY HH:MM:SS +ZZZZ" (24 octets) */
  hh = secs / 3600u;
  secs -= hh * 3600u;
  mm = secs / 60u;
  secs -= mm * 60u;
  memcpy(q, months + (month - 1u) * 4u, 4);
  q[4] = ' ';
  memcpy(q + 5, digits2 + year / 100u * 2u, 2);
  memcpy(q + 7, digits2 + year % 100u * 2u, 2);
  q[9] = ' ';
  memcpy(q + 10, digits2 + hh * 2u, 2);
  q[12] = ':';
  memcpy(q + 13, digits2 + mm * 2u, 2);
  q[15] = ':';
  memcpy(q + 16, digits2 + secs * 2u, 2);
  q[18] = ' ';
  if (!zone_known) {
    memcpy(q + 19, "-0000", 5);
  } else {
    unsigned a = (unsigned)(offset < 0 ? -offset : offset);
    q[19] = offset < 0 ? '-' : '+';
    memcpy(q + 20, digits2 + a / 60u * 2u, 2);
    memcpy(q + 22, digits2 + a % 60u * 2u, 2);
  }
  return (size_t)(q + 24 - d);
}

/* put_date - date_to into the output. */
OUT_FN void put_date(out *o, int64_t t, int offset)
{
  char *p = room(o, 32);

  commit(o, p, date_to(p, t, offset));
}

/* ---- the field --------------------------------------------------------- */

/* put_fields - the field into o (see the top of this file). */
OUT_FN void put_fields(out *o, const smtpd_received *r,
                       const char *proto)
{
  const smtpd_tls_info *tls = r->tls;
  int auth = r->auth_user != NULL, rcpt;

  rcpt = r->recipient != NULL && *r->recipient != '\0';

  /* from helo (rdns [addr]) */
  PUT_LIT(o, "Received: from ");
  if (r->helo != NULL && *r->helo != '\0')
    put_domain(o, r->helo);
  else
    put_domain_or(o, r->rdns, "unknown");
  SOFT_LIT(o, " (");
  put_domain_or(o, r->rdns, "unknown");
  SOFT_LIT(o, " [");
  put_addr(o, r->addr);
  PUT_LIT(o, "])");

  if (tls != NULL) {
    /* (using TLSv1.3 with cipher X (256/256 bits)) */
    next_line(o);
    PUT_LIT(o, "(using");
    soft_space(o);
    put_comment_or(o, tls->protocol, "TLS");
    if (tls->cipher != NULL && *tls->cipher != '\0') {
      mark_soft(o, o->len);
      mark_soft(o, o->len + 5);
      mark_soft(o, o->len + 12);
      PUT_LIT(o, " with cipher ");
      put_comment_or(o, tls->cipher, "unknown");
    }
    if (tls->cipher_bits > 0 || tls->alg_bits > 0) {
      SOFT_LIT(o, " (");
      put_uint(o, tls->cipher_bits > 0 ? (uint64_t)tls->cipher_bits : 0u);
      put_char(o, '/');
      put_uint(o, tls->alg_bits > 0 ? (uint64_t)tls->alg_bits : 0u);
      SOFT_LIT(o, " bits))");
    } else {
      put_char(o, ')');
    }

    /* what became of the client certificate */
    next_line(o);
    if (!tls->client_cert_requested) {
      mark_soft(o, o->len + 3);
      mark_soft(o, o->len + 10);
      mark_soft(o, o->len + 22);
      PUT_LIT(o, "(No client certificate requested)");
    } else if (!tls->client_cert_verified) {
      put_words(o, "(Client certificate requested but not verified)");
    } else if (tls->peer_subject == NULL) {
      put_words(o, "(Client certificate verified)");
    } else {
      put_words(o, "(Client certificate verified: subject \"");
      put_comment(o, tls->peer_subject);
      put_char(o, '"');
      if (tls->peer_issuer != NULL) {
        put_words(o, ", issuer \"");
        put_comment(o, tls->peer_issuer);
        put_char(o, '"');
      }
      put_char(o, ')');
    }
  }

  if (auth && r->show_auth) {
    next_line(o);
    mark_soft(o, o->len + 14);
    mark_soft(o, o->len + 22);
    PUT_LIT(o, "(Authenticated sender: ");
    put_comment_or(o, r->auth_user, "unknown");
    put_char(o, ')');
  }

  /* by host (software) with PROTO id QID */
  next_line(o);
  PUT_LIT(o, "by ");
  put_domain_or(o, r->hostname, "localhost");
  if (r->software != NULL) {
    SOFT_LIT(o, " (");
    put_comment_or(o, r->software, "unknown");
    put_char(o, ')');
  }
  SOFT_LIT(o, " with ");
  put_bytes(o, proto, strlen(proto));
  if (r->queue_id != NULL && *r->queue_id != '\0') {
    SOFT_LIT(o, " id ");
    put_mapped(o, r->queue_id, SMTPD_RECEIVED_MAX_TEXT, map_atom,
               odd_atom);
  }
  if (!rcpt)
    put_char(o, ';');

  /* [for <rcpt>;] date */
  next_line(o);
  if (rcpt) {
    PUT_LIT(o, "for ");
    put_path(o, r->recipient);
    put_char(o, ';');
    soft_space(o);
  }
  put_date(o, r->time, r->utc_offset_minutes);
  line_end(o);

  PUT_LIT(o, "\r\n");
}

/* smtpd_received_format - the whole field, folded, CRLF-terminated. */
size_t smtpd_received_format(char *buf, size_t cap, const smtpd_received *r)
{
  size_t soft[MAX_SOFT];
  char spill[SPILL_SIZE];
  out o;
  const char *proto;

  if (buf == NULL)
    cap = 0;
  if (cap > 0)
    buf[0] = '\0';
  if (r == NULL || r->version != SMTPD_RECEIVED_VERSION)
    return 0;
  proto = smtpd_received_protocol(r->base, r->is_helo, r->utf8,
                                  r->tls != NULL, r->auth_user != NULL);
  if (proto == NULL)
    return 0;
  o.buf = cap > 0 ? buf : spill; /* (nothing is stored when cap is 0) */
  o.lim = cap > 0 ? cap - 1 : 0;
  o.len = 0;
  o.line_start = 0;
  o.nsoft = 0;
  o.soft = soft;
  o.spill = spill;
  put_fields(&o, r, proto);
  if (cap > 0)
    buf[o.len < cap ? o.len : cap - 1] = '\0';
  return o.len;
}
