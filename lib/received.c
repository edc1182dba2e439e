/*
 * received.c - the Received: trace header field (RFC 5321 4.4) with the
 * RFC 3848 / RFC 6531 transmission types, laid out as Postfix writes it.
 *
 * Every text that goes into the field is sanitised on the way in: only
 * printable ASCII ever reaches the output, comment text has "(", ")",
 * "\" and '"' escaped as quoted-pairs, domains and atoms keep only the
 * characters their grammar allows, and the "for" path can never hold an
 * angle bracket. The field is first built as "logical lines" (one per
 * Postfix line) in a bounded scratch buffer, then written out folded at
 * spaces so that lines stay within 78 octets where a fold point exists.
 * A clause keyword and its value ("from x", "by x", "with x", "id x",
 * "for <x>"), a quoted local part and the date are never split.
 *
 *   smtpd_received_init          zero a description, set the defaults
 *   smtpd_received_from_session  fill a description from a session
 *   smtpd_received_format        write the field, snprintf semantics
 *   smtpd_received_protocol      the "with" transmission type
 */
#include <string.h>

#include "smtpd/received.h"

#define LINE_LIMIT 78        /* RFC 5322 2.1.1 SHOULD, excluding CRLF */
#define SCRATCH_SIZE 1024    /* one logical line; bounded by the limits */
#define MAX_ADDR 64          /* client IP text (IPv6 with zone fits) */
#define HARD_SPACE '\001'    /* a space that must not become a fold */
#define HARD_SPACE_S "\001"

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

/* ---- logical lines ---------------------------------------------------- */

typedef struct line {
  char b[SCRATCH_SIZE];
  size_t n;
} line;

/* lput - append one octet (silently dropped if the scratch is full,
 * which the per-text limits make impossible). */
static void lput(line *l, char c)
{
  if (l->n < sizeof l->b)
    l->b[l->n++] = c;
}

/* lputs - append a trusted constant string. */
static void lputs(line *l, const char *s)
{
  while (*s != '\0')
    lput(l, *s++);
}

/* lput_uint - append v in decimal, at least width digits. */
static void lput_uint(line *l, uint64_t v, int width)
{
  char tmp[24];
  int n = 0;

  do {
    tmp[n++] = (char)('0' + (int)(v % 10u));
    v /= 10u;
  } while (v != 0u);
  while (n < width && n < (int)sizeof tmp)
    tmp[n++] = '0';
  while (n > 0)
    lput(l, tmp[--n]);
}

static int is_alnum(unsigned char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9');
}

/* is_atext - RFC 5322 3.2.3 atext. */
static int is_atext(unsigned char c)
{
  return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* put_domain - a domain or "[literal]" (helo, rdns, our name, the
 * recipient's domain). A dot-atom keeps atext and dots; a literal keeps
 * its brackets and letters, digits and ".:-_" inside. Anything else
 * becomes '?'. At most SMTPD_RECEIVED_MAX_TEXT octets. */
static void put_domain(line *l, const char *s)
{
  size_t n = strlen(s), i;

  if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
    lput(l, '[');
    for (i = 1; i + 1 < n && i <= SMTPD_RECEIVED_MAX_TEXT - 2; i++) {
      unsigned char c = (unsigned char)s[i];
      lput(l, is_alnum(c) || (c != '\0' && strchr(".:-_", c)) ? (char)c
                                                             : '?');
    }
    lput(l, ']');
    return;
  }
  for (i = 0; i < n && i < SMTPD_RECEIVED_MAX_TEXT; i++) {
    unsigned char c = (unsigned char)s[i];
    lput(l, is_atext(c) || c == '.' ? (char)c : '?');
  }
}

/* put_domain_or - put_domain, or fallback when s is NULL or empty. */
static void put_domain_or(line *l, const char *s, const char *fallback)
{
  if (s == NULL || *s == '\0')
    lputs(l, fallback);
  else
    put_domain(l, s);
}

/* put_atom - RFC 5322 atom: atext only (the queue id). */
static void put_atom(line *l, const char *s)
{
  size_t i;

  for (i = 0; s[i] != '\0' && i < SMTPD_RECEIVED_MAX_TEXT; i++) {
    unsigned char c = (unsigned char)s[i];
    lput(l, is_atext(c) ? (char)c : '?');
  }
}

/* put_comment - text inside a comment: printable ASCII; "(", ")", "\"
 * and '"' become quoted-pairs; runs of spaces collapse to one, leading
 * and trailing spaces go; other octets become '?'. At most
 * SMTPD_RECEIVED_MAX_TEXT octets, never splitting a pair. Returns the
 * octets written. */
static size_t put_comment(line *l, const char *s)
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
      lput(l, ' ');
    if (esc)
      lput(l, '\\');
    lput(l, (char)c);
    out += need;
    space = 0;
  }
  return out;
}

/* put_comment_or - put_comment, or fallback when nothing is left. */
static void put_comment_or(line *l, const char *s, const char *fallback)
{
  if (s == NULL || put_comment(l, s) == 0)
    lputs(l, fallback);
}

/* put_addr - the client IP inside brackets' content: "IPv6:" prefixed
 * when it holds a ':', letters, digits and ".:%" kept. */
static void put_addr(line *l, const char *s)
{
  size_t i;

  if (s == NULL || *s == '\0') {
    lputs(l, "unknown");
    return;
  }
  if (strchr(s, ':') != NULL &&
      !(strlen(s) >= 5 && (s[0] == 'I' || s[0] == 'i') &&
        (s[1] == 'P' || s[1] == 'p') && (s[2] == 'v' || s[2] == 'V') &&
        s[3] == '6' && s[4] == ':'))
    lputs(l, "IPv6:");
  for (i = 0; s[i] != '\0' && i < MAX_ADDR; i++) {
    unsigned char c = (unsigned char)s[i];
    lput(l, is_alnum(c) || c == '.' || c == ':' || c == '%' ? (char)c : '?');
  }
}

/* is_dot_atom - RFC 5322 3.2.3 dot-atom-text. */
static int is_dot_atom(const char *s, size_t n)
{
  size_t i;

  if (n == 0 || s[0] == '.' || s[n - 1] == '.')
    return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '.') {
      if (i + 1 < n && s[i + 1] == '.')
        return 0;
    } else if (!is_atext(c)) {
      return 0;
    }
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

/* put_path - the "for" path "<local@domain>": the local part is unquoted,
 * sanitised (controls, non-ASCII, '<' and '>' become '?'), cut to the
 * text limit and written as a dot-atom when it is one, else as a quoted
 * string (its spaces never fold). The domain goes through put_domain. */
static void put_path(line *l, const char *s)
{
  char raw[SMTPD_RECEIVED_MAX_TEXT];
  size_t llen, rn = 0, i, used;
  const char *dom;

  split_path(s, &llen, &dom);
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
  lput(l, '<');
  if (is_dot_atom(raw, rn)) {
    for (i = 0; i < rn; i++)
      lput(l, raw[i]);
  } else {
    lput(l, '"');
    used = 2; /* both quotes */
    for (i = 0; i < rn; i++) {
      int esc = raw[i] == '"' || raw[i] == '\\';
      if (used + (size_t)esc + 1u > SMTPD_RECEIVED_MAX_TEXT)
        break;
      if (esc)
        lput(l, '\\');
      lput(l, raw[i] == ' ' ? HARD_SPACE : raw[i]);
      used += (size_t)esc + 1u;
    }
    lput(l, '"');
  }
  if (dom != NULL && *dom != '\0') {
    lput(l, '@');
    put_domain(l, dom);
  }
  lput(l, '>');
}

/* put_date - RFC 5322 3.3 date-time, one unfoldable word:
 * "Tue, 24 Nov 2026 19:40:00 +0000". */
static void put_date(line *l, int64_t t, int offset)
{
  static const char wdays[] = "SunMonTueWedThuFriSat";
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  int zone_known = offset >= -1439 && offset <= 1439;
  int64_t days, secs, era, doe, yoe, doy, mp, year, month, mday, wday;

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

  days = t / 86400;
  secs = t % 86400;
  if (secs < 0) {
    secs += 86400;
    days -= 1;
  }
  wday = ((days % 7) + 11) % 7; /* 1970-01-01 was a Thursday (4) */

  /* Civil date from a day count, with years starting on 1 March so the
   * leap day falls last: 400-year eras of 146097 days. */
  days += 719468; /* 0000-03-01 to 1970-01-01 */
  era = (days >= 0 ? days : days - 146096) / 146097;
  doe = days - era * 146097;                                    /* 0..146096 */
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  /* 0..399 */
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                /* 0..365 */
  mp = (5 * doy + 2) / 153;                                     /* 0..11 */
  mday = doy - (153 * mp + 2) / 5 + 1;                          /* 1..31 */
  month = mp < 10 ? mp + 3 : mp - 9;                            /* 1..12 */
  year = yoe + era * 400 + (month <= 2);

  lput(l, wdays[wday * 3]);
  lput(l, wdays[wday * 3 + 1]);
  lput(l, wdays[wday * 3 + 2]);
  lput(l, ',');
  lput(l, HARD_SPACE);
  lput_uint(l, (uint64_t)mday, 1);
  lput(l, HARD_SPACE);
  lput(l, months[(month - 1) * 3]);
  lput(l, months[(month - 1) * 3 + 1]);
  lput(l, months[(month - 1) * 3 + 2]);
  lput(l, HARD_SPACE);
  lput_uint(l, (uint64_t)year, 4);
  lput(l, HARD_SPACE);
  lput_uint(l, (uint64_t)(secs / 3600), 2);
  lput(l, ':');
  lput_uint(l, (uint64_t)(secs / 60 % 60), 2);
  lput(l, ':');
  lput_uint(l, (uint64_t)(secs % 60), 2);
  lput(l, HARD_SPACE);
  if (!zone_known) {
    lputs(l, "-0000");
  } else {
    lput(l, offset < 0 ? '-' : '+');
    if (offset < 0)
      offset = -offset;
    lput_uint(l, (uint64_t)(offset / 60), 2);
    lput_uint(l, (uint64_t)(offset % 60), 2);
  }
}

/* ---- output ----------------------------------------------------------- */

typedef struct sink {
  char *buf;
  size_t cap;
  size_t len; /* octets of the full field so far */
  size_t col; /* octets on the current output line */
} sink;

/* sink_put - one octet: stored only while it fits before the NUL. */
static void sink_put(sink *o, char c)
{
  if (o->len + 1 < o->cap)
    o->buf[o->len] = c;
  o->len++;
  o->col++;
}

static void sink_fold(sink *o)
{
  sink_put(o, '\r');
  sink_put(o, '\n');
  o->col = 0;
  sink_put(o, '\t');
}

/* emit - write a logical line, on a new continuation line unless it is
 * the first. Words are separated by single spaces; before a word that
 * would push the line past LINE_LIMIT the space becomes CRLF TAB. */
static void emit(sink *o, const line *l, int first)
{
  size_t i = 0, j, k;
  int start = 1;

  if (!first)
    sink_fold(o);
  while (i < l->n) {
    for (j = i; j < l->n && l->b[j] != ' '; j++)
      ;
    if (j > i) {
      if (!start) {
        if (o->col + 1 + (j - i) > LINE_LIMIT)
          sink_fold(o);
        else
          sink_put(o, ' ');
      }
      for (k = i; k < j; k++)
        sink_put(o, l->b[k] == HARD_SPACE ? ' ' : l->b[k]);
      start = 0;
    }
    i = j + 1;
  }
}

/* smtpd_received_format - the whole field, folded, CRLF-terminated. */
size_t smtpd_received_format(char *buf, size_t cap, const smtpd_received *r)
{
  sink o;
  line l;
  const char *proto;
  const smtpd_tls_info *tls;
  int auth;

  if (buf == NULL)
    cap = 0;
  if (cap > 0)
    buf[0] = '\0';
  if (r == NULL || r->version != SMTPD_RECEIVED_VERSION)
    return 0;
  tls = r->tls;
  auth = r->auth_user != NULL;
  proto = smtpd_received_protocol(r->base, r->is_helo, r->utf8,
                                  tls != NULL, auth);
  if (proto == NULL)
    return 0;
  o.buf = buf;
  o.cap = cap;
  o.len = 0;
  o.col = 0;

  /* from helo (rdns [addr]) */
  l.n = 0;
  lputs(&l, "Received:" HARD_SPACE_S "from" HARD_SPACE_S);
  if (r->helo != NULL && *r->helo != '\0')
    put_domain(&l, r->helo);
  else
    put_domain_or(&l, r->rdns, "unknown");
  lputs(&l, " (");
  put_domain_or(&l, r->rdns, "unknown");
  lputs(&l, " [");
  put_addr(&l, r->addr);
  lputs(&l, "])");
  emit(&o, &l, 1);

  if (tls != NULL) {
    /* (using TLSv1.3 with cipher X (256/256 bits)) */
    l.n = 0;
    lputs(&l, "(using ");
    put_comment_or(&l, tls->protocol, "TLS");
    if (tls->cipher != NULL && *tls->cipher != '\0') {
      lputs(&l, " with cipher ");
      put_comment_or(&l, tls->cipher, "unknown");
    }
    if (tls->cipher_bits > 0 || tls->alg_bits > 0) {
      lputs(&l, " (");
      lput_uint(&l, tls->cipher_bits > 0 ? (uint64_t)tls->cipher_bits : 0u,
                1);
      lput(&l, '/');
      lput_uint(&l, tls->alg_bits > 0 ? (uint64_t)tls->alg_bits : 0u, 1);
      lputs(&l, " bits)");
    }
    lput(&l, ')');
    emit(&o, &l, 0);

    /* what became of the client certificate */
    l.n = 0;
    if (!tls->client_cert_requested) {
      lputs(&l, "(No client certificate requested)");
    } else if (!tls->client_cert_verified) {
      lputs(&l, "(Client certificate requested but not verified)");
    } else if (tls->peer_subject == NULL) {
      lputs(&l, "(Client certificate verified)");
    } else {
      lputs(&l, "(Client certificate verified: subject \"");
      put_comment(&l, tls->peer_subject);
      lput(&l, '"');
      if (tls->peer_issuer != NULL) {
        lputs(&l, ", issuer \"");
        put_comment(&l, tls->peer_issuer);
        lput(&l, '"');
      }
      lput(&l, ')');
    }
    emit(&o, &l, 0);
  }

  if (auth && r->show_auth) {
    l.n = 0;
    lputs(&l, "(Authenticated sender: ");
    put_comment_or(&l, r->auth_user, "unknown");
    lput(&l, ')');
    emit(&o, &l, 0);
  }

  /* by host (software) with PROTO id QID */
  l.n = 0;
  lputs(&l, "by" HARD_SPACE_S);
  put_domain_or(&l, r->hostname, "localhost");
  if (r->software != NULL) {
    lputs(&l, " (");
    put_comment_or(&l, r->software, "unknown");
    lput(&l, ')');
  }
  lputs(&l, " with" HARD_SPACE_S);
  lputs(&l, proto);
  if (r->queue_id != NULL && *r->queue_id != '\0') {
    lputs(&l, " id" HARD_SPACE_S);
    put_atom(&l, r->queue_id);
  }
  if (r->recipient == NULL || *r->recipient == '\0')
    lput(&l, ';');
  emit(&o, &l, 0);

  /* [for <rcpt>;] date */
  l.n = 0;
  if (r->recipient != NULL && *r->recipient != '\0') {
    lputs(&l, "for" HARD_SPACE_S);
    put_path(&l, r->recipient);
    lputs(&l, "; ");
  }
  put_date(&l, r->time, r->utc_offset_minutes);
  emit(&o, &l, 0);

  sink_put(&o, '\r');
  sink_put(&o, '\n');
  if (cap > 0)
    buf[o.len < cap ? o.len : cap - 1] = '\0';
  return o.len;
}
