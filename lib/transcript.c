/*
 * transcript.c - canned-conversation driver: runs a transcript (see
 * include/smtpd/transcript.h and docs/transcripts.md) against a real
 * smtpd_session through the public API and reports the first difference.
 *
 *   smtpd_transcript_opts_default  default options
 *   smtpd_transcript_run_buffer    parse and run a transcript in memory
 *   smtpd_transcript_run_file      read a file, then run_buffer
 *   smtpd_transcript_split_name    printable name of a split mode
 *
 * Two passes: parse() turns the text into a flat list of items (and
 * rejects malformed files before anything runs), run() walks the items,
 * feeding packets, draining output at expectation groups and answering
 * the session's callbacks from the decision directives.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/smtpd.h"
#include "smtpd/transcript.h"
#include "smtpd/sasl.h"

#define MAX_FILE (16u * 1024u * 1024u)   /* transcript file size cap */
#define MAX_ITEM (16u * 1024u * 1024u)   /* unescaped bytes per line */
#define MAX_REPEAT 1048576ul             /* \{N:...} */
#define RUN_SHOW 16u                     /* runs shown as \{N:c} */

/* ---- allocation ---------------------------------------------------------- */

/* xmalloc / xrealloc / xfree - the smtpd_mem hook, or libc when NULL. */
static void *xmalloc(const smtpd_mem *m, size_t n) {
  return m ? m->malloc(n, m->ctx) : malloc(n);
}

static void *xrealloc(const smtpd_mem *m, void *p, size_t n) {
  return m ? m->realloc(p, n, m->ctx) : realloc(p, n);
}

static void xfree(const smtpd_mem *m, void *p) {
  if (p == NULL)
    return;
  if (m)
    m->free(p, m->ctx);
  else
    free(p);
}

/* buf - a growable byte buffer. */
typedef struct buf {
  unsigned char *p;
  size_t len, cap;
} buf;

/* buf_reserve - room for n more bytes; -1 when out of memory. */
static int buf_reserve(const smtpd_mem *m, buf *b, size_t n) {
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
  np = xrealloc(m, b->p, cap);
  if (np == NULL)
    return -1;
  b->p = np;
  b->cap = cap;
  return 0;
}

static int buf_add(const smtpd_mem *m, buf *b, const void *d, size_t n) {
  if (n == 0)
    return 0;
  if (buf_reserve(m, b, n) < 0)
    return -1;
  memcpy(b->p + b->len, d, n);
  b->len += n;
  return 0;
}

static int buf_addc(const smtpd_mem *m, buf *b, int c) {
  unsigned char ch = (unsigned char)c;
  return buf_add(m, b, &ch, 1);
}

static void buf_free(const smtpd_mem *m, buf *b) {
  xfree(m, b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- fixed-size text with truncation ------------------------------------- */

typedef struct tbuf {
  char *p;
  size_t cap, len;
  int full;
} tbuf;

static void tb_init(tbuf *t, char *p, size_t cap) {
  t->p = p;
  t->cap = cap;
  t->len = 0;
  t->full = 0;
  if (cap)
    p[0] = '\0';
}

/* tb_put - append n chars; once the buffer is full it ends in "...". */
static void tb_put(tbuf *t, const char *s, size_t n) {
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

static void tb_str(tbuf *t, const char *s) { tb_put(t, s, strlen(s)); }

/* tb_esc - append bytes with transcript escapes (inverse of unescape). */
static void tb_esc(tbuf *t, const unsigned char *b, size_t n) {
  size_t i = 0;
  char tmp[40];
  while (i < n && !t->full) {
    unsigned char c = b[i];
    size_t j = i;
    while (j < n && b[j] == c)
      j++;
    if (j - i >= RUN_SHOW && c > 0x20 && c < 0x7f && c != '\\' && c != '}') {
      snprintf(tmp, sizeof tmp, "\\{%lu:%c}", (unsigned long)(j - i), c);
      tb_str(t, tmp);
      i = j;
      continue;
    }
    switch (c) {
    case '\\': tb_str(t, "\\\\"); break;
    case '\r': tb_str(t, "\\r"); break;
    case '\n': tb_str(t, "\\n"); break;
    case '\t': tb_str(t, "\\t"); break;
    case 0: tb_str(t, "\\0"); break;
    default:
      if (c < 0x20 || c >= 0x7f || (c == ' ' && i + 1 == n)) {
        snprintf(tmp, sizeof tmp, "\\x%02X", c);
        tb_str(t, tmp);
      } else {
        tmp[0] = (char)c;
        tb_put(t, tmp, 1);
      }
    }
    i++;
  }
}

/* ---- parsed transcript --------------------------------------------------- */

enum item_type {
  IT_CFG = 1, IT_DECIDE, IT_EFFECTS, IT_C, IT_BREAK, IT_S, IT_NOTHING,
  IT_CLOSED, IT_E, IT_ENOT, IT_B, IT_T, IT_ACTION
};

enum cfg_kind {
  CFG_HOSTNAME = 1, CFG_BANNER, CFG_LIMIT, CFG_TIMEOUT, CFG_OPTION,
  CFG_LINE_ENDING, CFG_SYNC, CFG_LONG_LINE, CFG_EHLO_KEYWORD, CFG_CLIENT,
  CFG_IMPLICIT_TLS, CFG_SPLIT, CFG_SASL, CFG_PARAM, CFG_COMMAND
};

/* Decision events: the callbacks that return an smtpd_verdict. */
enum ev_kind {
  EV_CONNECT = 0, EV_HELO, EV_MAIL, EV_RCPT, EV_DATA, EV_DATA_COMPLETE,
  EV_VRFY, EV_BODY, EV_STARTTLS, EV_COMMAND, EV_DATA_COMPLETE_RCPT,
  EV_COUNT_
};
static const char *const ev_names[EV_COUNT_] = {
  "connect", "helo", "mail", "rcpt", "data", "data-complete", "vrfy", "body",
  "starttls", "command", "data-complete-rcpt"
};

/* @command flags and @effects flags, by name. */
typedef struct flag_name {
  const char *name;
  unsigned flag;
} flag_name;
static const flag_name cmd_flags[] = {
  {"ends-group", SMTPD_CMD_ENDS_GROUP},   {"before-tls", SMTPD_CMD_BEFORE_TLS},
  {"before-auth", SMTPD_CMD_BEFORE_AUTH}, {"needs-helo", SMTPD_CMD_NEEDS_HELO},
  {"needs-mail", SMTPD_CMD_NEEDS_MAIL},   {"needs-rcpt", SMTPD_CMD_NEEDS_RCPT},
  {"no-mail", SMTPD_CMD_NO_MAIL}
};
static const flag_name effect_flags[] = {
  {"reset-transaction", SMTPD_EFFECT_RESET_TRANSACTION},
  {"reset-helo", SMTPD_EFFECT_RESET_HELO},
  {"regreet", SMTPD_EFFECT_REGREET}
};

/* parse_flags - the words up to end as flags of table t; -1 for an
 * unknown word. */
static int parse_flags(const char *s, const char *end, const flag_name *t,
                       size_t nt, unsigned *out, size_t *count);

enum action_kind { ACT_TIMEOUT = 1, ACT_TLS, ACT_CLOSE, ACT_RESUME };

/* span - bytes in the parse payload buffer (offsets: it may move). */
typedef struct span {
  size_t off, len;
  int set;
} span;

/* reply - a host reply given by a directive: code, enh, text. */
typedef struct reply {
  int has;
  int code;
  span enh;
  span text; /* unescaped; LF separates the lines of a multi-line reply */
} reply;

typedef struct item {
  int type;
  unsigned line;
  int sub;         /* cfg_kind / ev_kind / action_kind / timeout kind */
  int a, b;        /* cfg arguments; decide: a = once, b = verdict */
  uint64_t num;
  span data;       /* C/S/B/E text, cfg strings, action strings */
  span data2;      /* second string (rdns, close text, tls cipher) */
  int defer;       /* decide: verdict is DEFER */
  int autoverdict; /* decide with defer: resume verdict, -1 = held */
  int raw;         /* C~ / B~: no CRLF implied */
  reply rep;
} item;

typedef struct parsed {
  const smtpd_mem *mem;
  item *items;
  size_t n, cap;
  buf pay;
  int pinned;            /* @split given */
  smtpd_transcript_split split;
  size_t chunk;
  int uses_vrfy;         /* an @on/@every vrfy exists: install on_vrfy */
  int uses_command;      /* an @on/@every command or @effects exists:
                            install on_command */
} parsed;

static const unsigned char *P(const parsed *p, span s) {
  return p->pay.p ? p->pay.p + s.off : (const unsigned char *)"";
}

/* perr - record a parse error (first one wins). */
static int perr(smtpd_transcript_result *res, unsigned line, const char *fmt,
                ...) {
  va_list ap;
  if (res == NULL)
    return SMTPD_ERR_INVALID_ARGUMENT;
  res->line = line;
  {
    char msg[SMTPD_TRANSCRIPT_TEXT_MAX - 32];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(res->message, sizeof res->message, "line %u: %s", line, msg);
  }
  return SMTPD_ERR_INVALID_ARGUMENT;
}

/* unescape - decode s[0..n) into the payload; err gets a reason. Returns
 * 0, -1 for a syntax error, -2 for out of memory. */
static int unescape(parsed *p, const char *s, size_t n, span *out,
                    const char **err) {
  size_t i = 0;
  buf *b = &p->pay;
  out->off = b->len;
  out->set = 1;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    if (c != '\\') {
      if (buf_addc(p->mem, b, c) < 0)
        return -2;
      i++;
      continue;
    }
    if (i + 1 >= n) {
      *err = "lone backslash at end of line (write \\\\)";
      return -1;
    }
    c = (unsigned char)s[i + 1];
    i += 2;
    switch (c) {
    case 'r': c = '\r'; break;
    case 'n': c = '\n'; break;
    case 't': c = '\t'; break;
    case '0': c = 0; break;
    case '\\': break;
    case 'x': {
      int k, v = 0;
      for (k = 0; k < 2; k++) {
        int d;
        char h = i < n ? s[i] : '\0';
        if (h >= '0' && h <= '9') d = h - '0';
        else if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
        else if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
        else {
          *err = "\\x needs two hex digits";
          return -1;
        }
        v = v * 16 + d;
        i++;
      }
      c = (unsigned char)v;
      break;
    }
    case '{': {
      unsigned long count = 0;
      size_t start, k, r;
      int digits = 0;
      while (i < n && s[i] >= '0' && s[i] <= '9') {
        count = count * 10 + (unsigned long)(s[i] - '0');
        if (count > MAX_REPEAT) {
          *err = "\\{N:...} count too large";
          return -1;
        }
        i++;
        digits++;
      }
      if (!digits || count == 0 || i >= n || s[i] != ':') {
        *err = "repeat escape is \\{N:chars} with N >= 1";
        return -1;
      }
      start = ++i;
      while (i < n && s[i] != '}') {
        if (s[i] == '\\' || (unsigned char)s[i] < 0x20 ||
            (unsigned char)s[i] >= 0x7f) {
          *err = "\\{N:chars} takes printable characters only";
          return -1;
        }
        i++;
      }
      if (i >= n || i == start) {
        *err = "unterminated or empty \\{N:chars}";
        return -1;
      }
      if ((i - start) * count > MAX_ITEM) {
        *err = "\\{N:chars} expands too far";
        return -1;
      }
      for (r = 0; r < count; r++)
        for (k = start; k < i; k++)
          if (buf_addc(p->mem, b, s[k]) < 0)
            return -2;
      i++; /* '}' */
      continue;
    }
    default:
      *err = "unknown escape (use \\r \\n \\t \\0 \\\\ \\xHH \\{N:chars})";
      return -1;
    }
    if (buf_addc(p->mem, b, c) < 0)
      return -2;
  }
  out->len = b->len - out->off;
  if (out->len > MAX_ITEM) {
    *err = "line expands to too many bytes";
    return -1;
  }
  return 0;
}

/* word - next space-separated word of [*s, end); returns its length. */
static size_t word(const char **s, const char *end, const char **w) {
  const char *q = *s;
  while (q < end && *q == ' ')
    q++;
  *w = q;
  while (q < end && *q != ' ')
    q++;
  *s = q;
  return (size_t)(q - *w);
}

static int weq(const char *w, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

/* rest_of - the text after the single space that follows the cursor. */
static void rest_of(const char **s, const char *end) {
  if (*s < end && **s == ' ')
    (*s)++;
}

static int parse_u64(const char *w, size_t n, uint64_t *out) {
  uint64_t v = 0;
  size_t i;
  if (n == 0 || n > 19)
    return -1;
  for (i = 0; i < n; i++) {
    if (w[i] < '0' || w[i] > '9')
      return -1;
    v = v * 10 + (uint64_t)(w[i] - '0');
  }
  *out = v;
  return 0;
}

static int parse_verdict(const char *w, size_t n) {
  if (weq(w, n, "accept")) return SMTPD_ACCEPT;
  if (weq(w, n, "reject")) return SMTPD_REJECT;
  if (weq(w, n, "tempfail")) return SMTPD_TEMPFAIL;
  if (weq(w, n, "defer")) return SMTPD_DEFER;
  if (weq(w, n, "disconnect")) return SMTPD_DISCONNECT;
  if (weq(w, n, "abort")) return SMTPD_ABORT;
  return -1;
}

static int parse_flags(const char *s, const char *end, const flag_name *t,
                       size_t nt, unsigned *out, size_t *count) {
  const char *w;
  size_t n, k;
  *out = 0;
  *count = 0;
  while ((n = word(&s, end, &w)) != 0) {
    for (k = 0; k < nt; k++)
      if (weq(w, n, t[k].name))
        break;
    if (k == nt)
      return -1;
    *out |= t[k].flag;
    (*count)++;
  }
  return 0;
}

static int is_enh(const char *w, size_t n) {
  size_t i, parts = 1, run = 0;
  if (n < 5)
    return 0;
  for (i = 0; i < n; i++) {
    if (w[i] == '.') {
      if (run == 0)
        return 0;
      parts++;
      run = 0;
    } else if (w[i] >= '0' && w[i] <= '9') {
      run++;
    } else {
      return 0;
    }
  }
  return parts == 3 && run > 0;
}

/* parse_reply - "CODE [ENH] [TEXT]" from the cursor to end. */
static int parse_reply(parsed *p, const char *s, const char *end, reply *r,
                       const char **err) {
  const char *w;
  size_t n = word(&s, end, &w);
  const char *save;
  uint64_t code;
  int rc;
  if (n == 0)
    return 0;
  if (n != 3 || parse_u64(w, n, &code) < 0) {
    *err = "reply must start with a three-digit code";
    return -1;
  }
  r->has = 1;
  r->code = (int)code;
  save = s;
  n = word(&s, end, &w);
  if (n && is_enh(w, n)) {
    r->enh.off = p->pay.len;
    r->enh.set = 1;
    if (buf_add(p->mem, &p->pay, w, n) < 0)
      return -2;
    r->enh.len = n;
  } else {
    s = save;
  }
  rest_of(&s, end);
  if (s < end) {
    rc = unescape(p, s, (size_t)(end - s), &r->text, err);
    if (rc < 0)
      return rc;
  }
  return 0;
}

static int push_item(parsed *p, const item *it) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 64;
    item *ni = xrealloc(p->mem, p->items, cap * sizeof *ni);
    if (ni == NULL)
      return -1;
    p->items = ni;
    p->cap = cap;
  }
  p->items[p->n++] = *it;
  return 0;
}

/* parse_directive - one "@..." line (without the '@'). */
static int parse_directive(parsed *p, item *it, const char *s,
                           const char *end, const char **err) {
  const char *w, *a;
  size_t n = word(&s, end, &w), an;
  int rc;

  if (weq(w, n, "on") || weq(w, n, "every")) {
    int k, v;
    it->type = IT_DECIDE;
    it->a = weq(w, n, "on");
    n = word(&s, end, &w);
    for (k = 0; k < EV_COUNT_; k++)
      if (weq(w, n, ev_names[k]))
        break;
    if (k == EV_COUNT_) {
      *err = "unknown event (connect helo mail rcpt data data-complete "
             "data-complete-rcpt vrfy body starttls command)";
      return -1;
    }
    it->sub = k;
    if (k == EV_VRFY)
      p->uses_vrfy = 1;
    if (k == EV_COMMAND)
      p->uses_command = 1;
    n = word(&s, end, &w);
    v = parse_verdict(w, n);
    if (v < 0) {
      *err = "verdict must be accept, reject, tempfail, defer, disconnect "
             "or abort";
      return -1;
    }
    it->b = v;
    it->autoverdict = -1;
    if (v == SMTPD_DEFER) {
      const char *save = s;
      it->defer = 1;
      n = word(&s, end, &w);
      if (n) {
        v = parse_verdict(w, n);
        if (v < 0 || v == SMTPD_DEFER) {
          *err = "after defer: accept, reject, tempfail, disconnect or "
                 "abort (or nothing)";
          return -1;
        }
        it->autoverdict = v;
      } else {
        s = save;
      }
    }
    if (it->defer && it->autoverdict < 0 && s < end) {
      const char *t;
      const char *q = s;
      if (word(&q, end, &t) != 0) {
        *err = "a held defer takes no reply; give it with !resume";
        return -1;
      }
    }
    return parse_reply(p, s, end, &it->rep, err);
  }

  if (weq(w, n, "effects")) {
    /* @effects FLAG...: smtpd_session_set_effects in the next command
     * decision */
    unsigned fl;
    size_t cnt;
    it->type = IT_EFFECTS;
    it->sub = EV_COMMAND;
    p->uses_command = 1;
    if (parse_flags(s, end, effect_flags,
                    sizeof effect_flags / sizeof effect_flags[0], &fl,
                    &cnt) < 0 || cnt == 0) {
      *err = "@effects takes reset-transaction, reset-helo and/or regreet";
      return -1;
    }
    it->a = (int)fl;
    return 0;
  }

  it->type = IT_CFG;
  if (weq(w, n, "command")) {
    /* @command VERB [flag...]: smtpd_config_add_command */
    unsigned fl;
    size_t cnt;
    it->sub = CFG_COMMAND;
    n = word(&s, end, &w);
    if (n == 0) {
      *err = "@command takes a verb and flags";
      return -1;
    }
    if ((rc = unescape(p, w, n, &it->data, err)) < 0)
      return rc;
    if (parse_flags(s, end, cmd_flags, sizeof cmd_flags / sizeof cmd_flags[0],
                    &fl, &cnt) < 0) {
      *err = "unknown @command flag (ends-group before-tls before-auth "
             "needs-helo needs-mail needs-rcpt no-mail)";
      return -1;
    }
    it->a = (int)fl;
    return 0;
  }
  if (weq(w, n, "param")) {
    /* @param mail|rcpt|both KEYWORD none|value|optional */
    it->sub = CFG_PARAM;
    n = word(&s, end, &w);
    if (weq(w, n, "mail")) it->a = (int)SMTPD_PARAM_MAIL;
    else if (weq(w, n, "rcpt")) it->a = (int)SMTPD_PARAM_RCPT;
    else if (weq(w, n, "both"))
      it->a = (int)(SMTPD_PARAM_MAIL | SMTPD_PARAM_RCPT);
    else {
      *err = "@param mail|rcpt|both KEYWORD none|value|optional";
      return -1;
    }
    n = word(&s, end, &w);
    if (n == 0) {
      *err = "@param mail|rcpt|both KEYWORD none|value|optional";
      return -1;
    }
    if ((rc = unescape(p, w, n, &it->data, err)) < 0)
      return rc;
    n = word(&s, end, &w);
    if (weq(w, n, "none")) it->b = SMTPD_PARAM_NO_VALUE;
    else if (weq(w, n, "value")) it->b = SMTPD_PARAM_VALUE;
    else if (weq(w, n, "optional")) it->b = SMTPD_PARAM_OPTIONAL_VALUE;
    else {
      *err = "@param value kind is none, value or optional";
      return -1;
    }
    if (word(&s, end, &w) != 0) {
      *err = "unexpected extra words";
      return -1;
    }
    return 0;
  }
  if (weq(w, n, "sasl")) {
    /* @sasl USER PASSWORD: the built-in PLAIN/LOGIN backend accepting
     * exactly this user (text after the first space is the password) */
    it->sub = CFG_SASL;
    rest_of(&s, end);
    if (s >= end || !memchr(s, ' ', (size_t)(end - s))) {
      *err = "@sasl takes a user and a password";
      return -1;
    }
    return unescape(p, s, (size_t)(end - s), &it->data, err);
  }
  if (weq(w, n, "hostname") || weq(w, n, "banner") ||
      weq(w, n, "ehlo-keyword")) {
    it->sub = weq(w, n, "hostname") ? CFG_HOSTNAME
            : weq(w, n, "banner") ? CFG_BANNER : CFG_EHLO_KEYWORD;
    rest_of(&s, end);
    if (s >= end) {
      *err = "missing argument";
      return -1;
    }
    return unescape(p, s, (size_t)(end - s), &it->data, err);
  }
  if (weq(w, n, "limit")) {
    static const char *const names[] = {
      "size", "recipients", "command-line", "text-line", "errors",
      "auth-failures", "auth-line", "output"
    };
    static const int ids[] = {
      SMTPD_LIMIT_MESSAGE_SIZE, SMTPD_LIMIT_RECIPIENTS,
      SMTPD_LIMIT_COMMAND_LINE, SMTPD_LIMIT_TEXT_LINE, SMTPD_LIMIT_ERRORS,
      SMTPD_LIMIT_AUTH_FAILURES, SMTPD_LIMIT_AUTH_LINE, SMTPD_LIMIT_OUTPUT
    };
    size_t k;
    it->sub = CFG_LIMIT;
    n = word(&s, end, &w);
    for (k = 0; k < sizeof ids / sizeof ids[0]; k++)
      if (weq(w, n, names[k]))
        break;
    if (k == sizeof ids / sizeof ids[0]) {
      *err = "unknown limit (size recipients command-line text-line errors "
             "auth-failures auth-line output)";
      return -1;
    }
    it->a = ids[k];
    n = word(&s, end, &w);
    if (parse_u64(w, n, &it->num) < 0) {
      *err = "limit needs a decimal number";
      return -1;
    }
  } else if (weq(w, n, "timeout")) {
    it->sub = CFG_TIMEOUT;
    n = word(&s, end, &w);
    if (weq(w, n, "command")) it->a = SMTPD_TIMEOUT_COMMAND;
    else if (weq(w, n, "data")) it->a = SMTPD_TIMEOUT_DATA;
    else {
      *err = "timeout kind is command or data";
      return -1;
    }
    n = word(&s, end, &w);
    if (parse_u64(w, n, &it->num) < 0 || it->num > 0xffffffffu) {
      *err = "timeout needs milliseconds";
      return -1;
    }
  } else if (weq(w, n, "option")) {
    static const char *const names[] = {
      "enhancedstatuscodes", "pipelining", "8bitmime", "size", "smtputf8",
      "vrfy", "starttls", "require-tls", "require-auth", "auth-plaintext",
      "reply-per-rcpt"
    };
    static const int ids[] = {
      SMTPD_OPT_ENHANCEDSTATUSCODES, SMTPD_OPT_PIPELINING,
      SMTPD_OPT_8BITMIME, SMTPD_OPT_SIZE, SMTPD_OPT_SMTPUTF8, SMTPD_OPT_VRFY,
      SMTPD_OPT_STARTTLS, SMTPD_OPT_REQUIRE_TLS, SMTPD_OPT_REQUIRE_AUTH,
      SMTPD_OPT_AUTH_PLAINTEXT, SMTPD_OPT_REPLY_PER_RCPT
    };
    size_t k;
    it->sub = CFG_OPTION;
    n = word(&s, end, &w);
    for (k = 0; k < sizeof ids / sizeof ids[0]; k++)
      if (weq(w, n, names[k]))
        break;
    if (k == sizeof ids / sizeof ids[0]) {
      *err = "unknown option";
      return -1;
    }
    it->a = ids[k];
    n = word(&s, end, &w);
    if (weq(w, n, "on")) it->b = 1;
    else if (weq(w, n, "off")) it->b = 0;
    else {
      *err = "option value is on or off";
      return -1;
    }
  } else if (weq(w, n, "line-ending")) {
    it->sub = CFG_LINE_ENDING;
    n = word(&s, end, &w);
    if (weq(w, n, "reject")) it->a = SMTPD_LINE_ENDING_REJECT;
    else if (weq(w, n, "normalize")) it->a = SMTPD_LINE_ENDING_NORMALIZE;
    else if (weq(w, n, "accept")) it->a = SMTPD_LINE_ENDING_ACCEPT;
    else {
      *err = "line-ending is reject, normalize or accept";
      return -1;
    }
  } else if (weq(w, n, "sync")) {
    it->sub = CFG_SYNC;
    n = word(&s, end, &w);
    if (weq(w, n, "reject")) it->a = SMTPD_SYNC_REJECT;
    else if (weq(w, n, "allow")) it->a = SMTPD_SYNC_ALLOW;
    else {
      *err = "sync is reject or allow";
      return -1;
    }
  } else if (weq(w, n, "long-line")) {
    it->sub = CFG_LONG_LINE;
    n = word(&s, end, &w);
    if (weq(w, n, "accept")) it->a = SMTPD_LONG_LINE_ACCEPT;
    else if (weq(w, n, "reject")) it->a = SMTPD_LONG_LINE_REJECT;
    else {
      *err = "long-line is accept or reject";
      return -1;
    }
  } else if (weq(w, n, "client")) {
    it->sub = CFG_CLIENT;
    n = word(&s, end, &w);
    an = word(&s, end, &a);
    if (n == 0) {
      *err = "client needs an address";
      return -1;
    }
    if ((rc = unescape(p, w, n, &it->data, err)) < 0)
      return rc;
    if (an && (rc = unescape(p, a, an, &it->data2, err)) < 0)
      return rc;
  } else if (weq(w, n, "implicit-tls")) {
    it->sub = CFG_IMPLICIT_TLS;
  } else if (weq(w, n, "split")) {
    it->sub = CFG_SPLIT;
    n = word(&s, end, &w);
    if (weq(w, n, "whole")) {
      p->split = SMTPD_TRANSCRIPT_SPLIT_WHOLE;
    } else if (weq(w, n, "byte")) {
      p->split = SMTPD_TRANSCRIPT_SPLIT_BYTE;
    } else if (parse_u64(w, n, &it->num) == 0 && it->num > 0 &&
               it->num < 1000000) {
      p->split = SMTPD_TRANSCRIPT_SPLIT_CHUNK;
      p->chunk = (size_t)it->num;
    } else {
      *err = "split is whole, byte or a chunk size";
      return -1;
    }
    p->pinned = 1;
  } else {
    *err = "unknown directive";
    return -1;
  }
  if (word(&s, end, &w) != 0) {
    *err = "unexpected extra words";
    return -1;
  }
  return 0;
}

/* parse_action - one "!..." line (without the '!'). */
static int parse_action(parsed *p, item *it, const char *s, const char *end,
                        const char **err) {
  const char *w;
  size_t n = word(&s, end, &w);
  int rc;
  it->type = IT_ACTION;
  if (weq(w, n, "timeout")) {
    it->sub = ACT_TIMEOUT;
  } else if (weq(w, n, "tls")) {
    const char *c;
    size_t cn;
    it->sub = ACT_TLS;
    n = word(&s, end, &w);
    cn = word(&s, end, &c);
    if (n && (rc = unescape(p, w, n, &it->data, err)) < 0)
      return rc;
    if (cn && (rc = unescape(p, c, cn, &it->data2, err)) < 0)
      return rc;
    n = word(&s, end, &w);
    it->num = 256;
    if (n && parse_u64(w, n, &it->num) < 0) {
      *err = "!tls [PROTOCOL [CIPHER [BITS]]]";
      return -1;
    }
  } else if (weq(w, n, "close")) {
    const char *save;
    it->sub = ACT_CLOSE;
    save = s;
    n = word(&s, end, &w);
    if (n && is_enh(w, n)) {
      if ((rc = unescape(p, w, n, &it->data, err)) < 0)
        return rc;
    } else {
      s = save;
    }
    rest_of(&s, end);
    if (s < end && (rc = unescape(p, s, (size_t)(end - s), &it->data2,
                                  err)) < 0)
      return rc;
    return 0;
  } else if (weq(w, n, "resume")) {
    int v;
    it->sub = ACT_RESUME;
    n = word(&s, end, &w);
    v = parse_verdict(w, n);
    if (v < 0 || v == SMTPD_DEFER) {
      *err = "!resume accept|reject|tempfail|disconnect|abort "
             "[CODE [ENH] TEXT]";
      return -1;
    }
    it->b = v;
    return parse_reply(p, s, end, &it->rep, err);
  } else {
    *err = "unknown action (!timeout !tls !close !resume)";
    return -1;
  }
  if (word(&s, end, &w) != 0) {
    *err = "unexpected extra words";
    return -1;
  }
  return 0;
}

/* parse - text into p->items; SMTPD_OK or an error with res filled. */
static int parse(parsed *p, const char *text, size_t len,
                 smtpd_transcript_result *res) {
  size_t pos = 0;
  unsigned line = 0;
  int conversation = 0; /* a non-config item was seen */

  while (pos < len) {
    const char *s = text + pos, *end, *nl;
    const char *err = "syntax error";
    size_t n;
    item it;
    int rc = 0, k;

    nl = memchr(s, '\n', len - pos);
    n = nl ? (size_t)(nl - s) : len - pos;
    pos += n + (nl ? 1 : 0);
    line++;
    if (n && s[n - 1] == '\r')
      n--;
    end = s + n;
    for (k = 0; k < (int)n; k++) {
      unsigned char c = (unsigned char)s[k];
      if ((c < 0x20 && c != '\t') || c == 0x7f)
        return perr(res, line, "raw control character 0x%02X; write it as "
                    "an escape (\\xHH)", c);
    }
    memset(&it, 0, sizeof it);
    it.line = line;
    if (n == 0) {
      it.type = IT_BREAK;
    } else if (s[0] == '#') {
      continue;
    } else if (n == 2 && s[0] == '-' && s[1] == '-') {
      it.type = IT_BREAK;
    } else if (s[0] == '@') {
      rc = parse_directive(p, &it, s + 1, end, &err);
    } else if (s[0] == '!') {
      rc = parse_action(p, &it, s + 1, end, &err);
    } else if (n == 7 && memcmp(s, "NOTHING", 7) == 0) {
      it.type = IT_NOTHING;
    } else if (n == 6 && memcmp(s, "CLOSED", 6) == 0) {
      it.type = IT_CLOSED;
    } else if (n >= 2 && (s[1] == ':' || s[1] == '~' || s[1] == '!')) {
      char tag[3] = { s[0], s[1], 0 };
      if (!strcmp(tag, "C:")) it.type = IT_C;
      else if (!strcmp(tag, "C~")) { it.type = IT_C; it.raw = 1; }
      else if (!strcmp(tag, "S:")) it.type = IT_S;
      else if (!strcmp(tag, "E:")) it.type = IT_E;
      else if (!strcmp(tag, "E!")) it.type = IT_ENOT;
      else if (!strcmp(tag, "B:")) it.type = IT_B;
      else if (!strcmp(tag, "B~")) { it.type = IT_B; it.raw = 1; }
      else if (!strcmp(tag, "T:")) it.type = IT_T;
      else
        return perr(res, line, "unknown tag \"%s\" (C: C~ S: E: E! B: B~ "
                    "T:)", tag);
      if (n > 2 && s[2] != ' ')
        return perr(res, line, "a space must follow \"%s\"", tag);
      if (it.type == IT_T) {
        const char *q = s + 2, *w;
        size_t wn = word(&q, end, &w);
        if (weq(w, wn, "none")) it.sub = SMTPD_TIMEOUT_NONE;
        else if (weq(w, wn, "command")) it.sub = SMTPD_TIMEOUT_COMMAND;
        else if (weq(w, wn, "data")) it.sub = SMTPD_TIMEOUT_DATA;
        else
          return perr(res, line, "T: none|command|data [MS]");
        wn = word(&q, end, &w);
        it.a = wn != 0;
        if (wn && parse_u64(w, wn, &it.num) < 0)
          return perr(res, line, "T: milliseconds must be a number");
        if (word(&q, end, &w))
          return perr(res, line, "T: unexpected extra words");
      } else {
        rc = unescape(p, s + (n > 2 ? 3 : 2), n > 2 ? n - 3 : 0, &it.data,
                      &err);
        if (rc == 0 && (it.type == IT_E || it.type == IT_ENOT) &&
            it.data.len == 0) {
          rc = -1;
          err = "E: needs an event";
        }
      }
    } else {
      return perr(res, line, "unrecognised line (expected a tag such as "
                  "C: or S:, a directive @..., an action !..., NOTHING, "
                  "CLOSED, -- or #)");
    }
    if (rc == -2)
      return SMTPD_ERR_NOMEM;
    if (rc < 0)
      return perr(res, line, "%s", err);
    if (it.type == IT_CFG && conversation)
      return perr(res, line, "configuration directives must come before the "
                  "conversation");
    if (it.type != IT_CFG && it.type != IT_DECIDE &&
        it.type != IT_EFFECTS && it.type != IT_BREAK)
      conversation = 1;
    if (it.type == IT_DECIDE && it.sub == EV_CONNECT && conversation)
      return perr(res, line, "@on/@every connect must come before the "
                  "conversation");
    if (push_item(p, &it) < 0)
      return SMTPD_ERR_NOMEM;
  }
  return SMTPD_OK;
}

/* ---- run ----------------------------------------------------------------- */

typedef struct linemark {
  size_t off;
  unsigned line;
} linemark;

typedef struct run {
  const smtpd_mem *mem;
  parsed *p;
  smtpd_transcript_result *res;
  const smtpd_transcript_opts *opts;
  smtpd_config *cfg;
  smtpd_session *s;
  smtpd_transcript_split split;
  size_t chunk;
  int status;             /* first failure; SMTPD_OK while running */

  buf q;                  /* client bytes, append-only */
  size_t qpos;            /* fed so far */
  size_t *bounds;         /* packet end offsets in q */
  size_t nbounds, capbounds;
  linemark *lm;           /* source line of each client line in q */
  size_t nlm, caplm;

  buf out;                /* server output read since the last check */
  buf ev;                 /* event log: records (uint32_t length, raw bytes) */
  size_t ev_mark;         /* start of the current check's window */
  buf body;               /* body of the message being received */
  buf last_body;          /* body of the last completed message */
  int have_last_body;

  size_t *pushed;         /* @on decisions in the order read */
  size_t npushed;
  unsigned char *used;    /* per item: @on decision consumed */
  long deflt[EV_COUNT_];  /* @every item per event, -1 none */

  smtpd_sasl_backend *sasl; /* @sasl: built-in backend */
  char *sasl_cred;        /* "user password" for it */
  int deferred;           /* a callback returned DEFER, not yet resumed */
  const item *defer_item;
  int abort_given;        /* a decision (or resume) answered ABORT */
  int aborted;            /* ... and the call returned CALLBACK_FAILURE:
                             the session is over, nothing more is fed */
  int closed_asserted;
  unsigned cur_line;      /* transcript line being executed */
} run;

/* fail - record the first difference. exp/act may be NULL. */
static void fail(run *r, unsigned line, const char *exp, const char *act,
                 const char *fmt, ...) {
  va_list ap;
  smtpd_transcript_result *res = r->res;
  if (r->status != SMTPD_OK)
    return;
  r->status = SMTPD_TRANSCRIPT_MISMATCH;
  if (res == NULL)
    return;
  res->line = line;
  va_start(ap, fmt);
  vsnprintf(res->message, sizeof res->message, fmt, ap);
  va_end(ap);
  snprintf(res->expected, sizeof res->expected, "%s", exp ? exp : "");
  snprintf(res->actual, sizeof res->actual, "%s", act ? act : "");
}

static void nomem(run *r) {
  if (r->status == SMTPD_OK) {
    r->status = SMTPD_ERR_NOMEM;
    if (r->res)
      snprintf(r->res->message, sizeof r->res->message, "out of memory");
  }
}

static void trace(run *r, const char *prefix, const unsigned char *b,
                  size_t n) {
  char line[1024];
  tbuf t;
  if (r->opts == NULL || r->opts->trace == NULL)
    return;
  tb_init(&t, line, sizeof line);
  tb_str(&t, prefix);
  tb_esc(&t, b, n);
  r->opts->trace(line, r->opts->trace_ctx);
}

/* log_event - append one event (raw bytes, no NUL) as a record: a
 * uint32_t length, then the bytes. */
static void log_event(run *r, const char *text) {
  uint32_t n = (uint32_t)strlen(text);
  if (buf_add(r->mem, &r->ev, &n, sizeof n) < 0 ||
      buf_add(r->mem, &r->ev, text, n) < 0)
    nomem(r);
  trace(r, "E: ", (const unsigned char *)text, n);
}

/* ev_next - the event record at *k: its bytes and length; advances *k. */
static const unsigned char *ev_next(const run *r, size_t *k, size_t *len) {
  uint32_t n;
  const unsigned char *e;
  memcpy(&n, r->ev.p + *k, sizeof n);
  e = r->ev.p + *k + sizeof n;
  *k += sizeof n + n;
  *len = n;
  return e;
}

static unsigned line_at(const run *r, size_t off) {
  size_t i;
  unsigned line = r->cur_line;
  for (i = 0; i < r->nlm && r->lm[i].off <= off; i++)
    line = r->lm[i].line;
  return line;
}

/* apply_reply - smtpd_session_set_reply(_lines) from a directive. */
static void apply_reply(run *r, const reply *rep) {
  const parsed *p = r->p;
  char enh[32];
  const char *enhp = NULL;
  char *text = NULL;
  const char *lines[64];
  size_t nlines = 0, i;
  int rc;
  if (!rep->has)
    return;
  if (rep->enh.set) {
    size_t n = rep->enh.len < sizeof enh - 1 ? rep->enh.len : sizeof enh - 1;
    memcpy(enh, P(p, rep->enh), n);
    enh[n] = '\0';
    enhp = enh;
  }
  if (rep->text.set && rep->text.len) {
    text = xmalloc(r->mem, rep->text.len + 1);
    if (text == NULL) {
      nomem(r);
      return;
    }
    memcpy(text, P(p, rep->text), rep->text.len);
    text[rep->text.len] = '\0';
    lines[nlines++] = text;
    for (i = 0; i < rep->text.len && nlines < 64; i++)
      if (text[i] == '\n') {
        text[i] = '\0';
        lines[nlines++] = text + i + 1;
      }
  }
  if (nlines > 1)
    rc = smtpd_session_set_reply_lines(r->s, rep->code, enhp, lines, nlines);
  else
    rc = smtpd_session_set_reply(r->s, rep->code, enhp,
                                 nlines ? lines[0] : NULL);
  /* A text the library refuses (CR, controls, bad code) is an event the
   * transcript can assert: the session then uses its default reply. */
  if (rc < 0)
    log_event(r, "reply-refused");
  xfree(r->mem, text);
}

/* decide - answer a decision callback from the directives. */
static smtpd_verdict decide(run *r, int kind) {
  const item *d = NULL;
  size_t i;
  if (r->deferred) {
    fail(r, r->cur_line, NULL, ev_names[kind],
         "callback \"%s\" ran while the session was paused for a deferred "
         "decision", ev_names[kind]);
    return SMTPD_ACCEPT;
  }
  for (i = 0; i < r->npushed; i++) {
    const item *it = &r->p->items[r->pushed[i]];
    if (it->type == IT_DECIDE && it->sub == kind && !r->used[r->pushed[i]]) {
      r->used[r->pushed[i]] = 1;
      d = it;
      break;
    }
  }
  if (d == NULL && r->deflt[kind] >= 0)
    d = &r->p->items[r->deflt[kind]];
  if (d == NULL)
    return SMTPD_ACCEPT;
  if (d->defer) {
    r->deferred = 1;
    r->defer_item = d;
    return SMTPD_DEFER;
  }
  apply_reply(r, &d->rep);
  if (d->b == SMTPD_ABORT)
    r->abort_given = 1;
  return (smtpd_verdict)d->b;
}

/* take_effects - the next unused @effects directive: its flags, or -1. */
static long take_effects(run *r) {
  size_t i;
  for (i = 0; i < r->npushed; i++) {
    const item *it = &r->p->items[r->pushed[i]];
    if (it->type == IT_EFFECTS && !r->used[r->pushed[i]]) {
      r->used[r->pushed[i]] = 1;
      return (long)(unsigned)it->a;
    }
  }
  return -1;
}

/* ---- callbacks ----------------------------------------------------------- */

static void ev_add(tbuf *t, const char *s) { tb_str(t, s); }

static void ev_params(tbuf *t, const smtpd_param *pa, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    tb_str(t, " ");
    ev_add(t, pa[i].keyword ? pa[i].keyword : "");
    if (pa[i].value) {
      tb_str(t, "=");
      ev_add(t, pa[i].value);
    }
  }
}

static smtpd_verdict cb_connect(smtpd_session *s, void *ud) {
  run *r = ud;
  (void)s;
  log_event(r, "connect");
  return decide(r, EV_CONNECT);
}

static smtpd_verdict cb_helo(smtpd_session *s, const smtpd_helo *h, void *ud) {
  run *r = ud;
  char line[1200];
  tbuf t;
  (void)s;
  tb_init(&t, line, sizeof line);
  tb_str(&t, h->esmtp ? "ehlo " : "helo ");
  ev_add(&t, h->name ? h->name : "");
  log_event(r, line);
  return decide(r, EV_HELO);
}

static smtpd_verdict cb_mail(smtpd_session *s, const smtpd_mail *m, void *ud) {
  run *r = ud;
  char line[1200];
  tbuf t;
  (void)s;
  tb_init(&t, line, sizeof line);
  tb_str(&t, "mail <");
  ev_add(&t, m->address ? m->address : "");
  tb_str(&t, ">");
  ev_params(&t, m->params, m->nparams);
  log_event(r, line);
  return decide(r, EV_MAIL);
}

static smtpd_verdict cb_rcpt(smtpd_session *s, const smtpd_rcpt *rc, void *ud) {
  run *r = ud;
  char line[1200];
  tbuf t;
  (void)s;
  tb_init(&t, line, sizeof line);
  tb_str(&t, "rcpt <");
  ev_add(&t, rc->address ? rc->address : "");
  tb_str(&t, ">");
  ev_params(&t, rc->params, rc->nparams);
  log_event(r, line);
  return decide(r, EV_RCPT);
}

static smtpd_verdict cb_data(smtpd_session *s, void *ud) {
  run *r = ud;
  (void)s;
  log_event(r, "data");
  r->body.len = 0;
  return decide(r, EV_DATA);
}

static smtpd_verdict cb_body(smtpd_session *s, const uint8_t *data,
                             size_t len, void *ud) {
  run *r = ud;
  (void)s;
  if (r->deferred) {
    fail(r, r->cur_line, NULL, "body", "on_body ran while the session was "
         "paused for a deferred decision");
    return SMTPD_ACCEPT;
  }
  if (buf_add(r->mem, &r->body, data, len) < 0) {
    nomem(r);
    return SMTPD_ACCEPT;
  }
  return decide(r, EV_BODY);
}

/* message_done - the message's body is complete: check the size the
 * session reports against what on_body delivered and keep the body for
 * B: checks. */
static void message_done(run *r, const smtpd_message *m) {
  buf tmp;
  if (m->size != (uint64_t)r->body.len) {
    char exp[64], act[64];
    snprintf(exp, sizeof exp, "size=%lu", (unsigned long)r->body.len);
    snprintf(act, sizeof act, "size=%llu", (unsigned long long)m->size);
    fail(r, r->cur_line, exp, act, "data-complete reports a size that "
         "differs from the octets on_body delivered");
  }
  /* keep the body for B: checks */
  tmp = r->last_body;
  r->last_body = r->body;
  r->body = tmp;
  r->body.len = 0;
  r->have_last_body = 1;
}

static smtpd_verdict cb_data_complete(smtpd_session *s,
                                      const smtpd_message *m, void *ud) {
  run *r = ud;
  char line[2048], num[32];
  tbuf t;
  size_t i;
  (void)s;
  tb_init(&t, line, sizeof line);
  snprintf(num, sizeof num, "%llu", (unsigned long long)m->size);
  tb_str(&t, "data-complete size=");
  tb_str(&t, num);
  tb_str(&t, " from=<");
  ev_add(&t, m->sender ? m->sender : "");
  tb_str(&t, "> to=");
  for (i = 0; i < m->nrecipients; i++) {
    tb_str(&t, i ? ",<" : "<");
    ev_add(&t, m->recipients[i] ? m->recipients[i] : "");
    tb_str(&t, ">");
  }
  log_event(r, line);
  message_done(r, m);
  return decide(r, EV_DATA_COMPLETE);
}

/* cb_data_complete_rcpt - SMTPD_OPT_REPLY_PER_RCPT: one decision per
 * recipient, index 0, 1, ... (the body is complete at index 0). */
static smtpd_verdict cb_data_complete_rcpt(smtpd_session *s,
                                           const smtpd_message *m,
                                           size_t index, void *ud) {
  run *r = ud;
  char line[1200], num[32];
  tbuf t;
  (void)s;
  tb_init(&t, line, sizeof line);
  snprintf(num, sizeof num, "%lu <", (unsigned long)index);
  tb_str(&t, "data-complete-rcpt ");
  tb_str(&t, num);
  ev_add(&t, index < m->nrecipients && m->recipients[index]
                 ? m->recipients[index] : "");
  tb_str(&t, ">");
  log_event(r, line);
  if (index == 0)
    message_done(r, m);
  return decide(r, EV_DATA_COMPLETE_RCPT);
}

/* cb_command - a host-registered verb (@command): "command VERB [ARG]";
 * the next @effects, if any, is given to smtpd_session_set_effects. */
static smtpd_verdict cb_command(smtpd_session *s, const smtpd_command *c,
                                void *ud) {
  run *r = ud;
  char line[1200];
  tbuf t;
  long fx;
  smtpd_verdict v;
  tb_init(&t, line, sizeof line);
  tb_str(&t, "command ");
  ev_add(&t, c->verb ? c->verb : "");
  if (c->arg && c->arg[0]) {
    tb_str(&t, " ");
    ev_add(&t, c->arg);
  }
  log_event(r, line);
  fx = take_effects(r);
  v = decide(r, EV_COMMAND);
  if (fx >= 0 && smtpd_session_set_effects(s, (unsigned)fx) < 0)
    log_event(r, "effects-refused");
  return v;
}

static smtpd_verdict cb_vrfy(smtpd_session *s, const char *arg, void *ud) {
  run *r = ud;
  char line[1200];
  tbuf t;
  (void)s;
  tb_init(&t, line, sizeof line);
  tb_str(&t, "vrfy ");
  ev_add(&t, arg ? arg : "");
  log_event(r, line);
  return decide(r, EV_VRFY);
}

static void cb_rset(smtpd_session *s, void *ud) {
  (void)s;
  log_event(ud, "rset");
}

static void cb_quit(smtpd_session *s, void *ud) {
  (void)s;
  log_event(ud, "quit");
}

static smtpd_verdict cb_starttls(smtpd_session *s, void *ud) {
  (void)s;
  log_event(ud, "starttls");
  return decide(ud, EV_STARTTLS);
}

static void cb_auth(run *r, const char *what, const smtpd_auth_result *a) {
  char line[1200], num[16];
  tbuf t;
  tb_init(&t, line, sizeof line);
  tb_str(&t, what);
  ev_add(&t, a->mechanism ? a->mechanism : "");
  snprintf(num, sizeof num, " %d ", a->code);
  tb_str(&t, num);
  ev_add(&t, a->authcid ? a->authcid : "");
  log_event(r, line);
}

static void cb_auth_ok(smtpd_session *s, const smtpd_auth_result *a,
                       void *ud) {
  (void)s;
  cb_auth(ud, "auth-ok ", a);
}

static void cb_auth_fail(smtpd_session *s, const smtpd_auth_result *a,
                         void *ud) {
  (void)s;
  cb_auth(ud, "auth-fail ", a);
}

static void cb_tls_required(smtpd_session *s, const char *cmd, void *ud) {
  char line[1200];
  tbuf t;
  (void)s;
  tb_init(&t, line, sizeof line);
  tb_str(&t, "tls-required ");
  ev_add(&t, cmd ? cmd : "");
  log_event(ud, line);
}

static void cb_notice(smtpd_session *s, const smtpd_notice *n, void *ud) {
  run *r = ud;
  char line[1200], num[16];
  const char *name = "unknown";
  tbuf t;
  (void)s;
  switch (n->type) {
  case SMTPD_NOTICE_PROTOCOL_ERROR: name = "protocol-error"; break;
  case SMTPD_NOTICE_SYNC_VIOLATION: name = "sync-violation"; break;
  case SMTPD_NOTICE_STARTTLS_DISCARD: name = "starttls-discard"; break;
  case SMTPD_NOTICE_HTTP_COMMAND: name = "http-command"; break;
  case SMTPD_NOTICE_MESSAGE_ABORTED: name = "message-aborted"; break;
  }
  tb_init(&t, line, sizeof line);
  tb_str(&t, "notice ");
  tb_str(&t, name);
  snprintf(num, sizeof num, " %d", n->code);
  tb_str(&t, num);
  if (n->command) {
    tb_str(&t, " ");
    ev_add(&t, n->command);
  }
  if (n->type == SMTPD_NOTICE_MESSAGE_ABORTED)
    r->body.len = 0;
  log_event(r, line);
}

static void cb_close(smtpd_session *s, smtpd_close_reason why, void *ud) {
  const char *name = "unknown";
  char line[64];
  (void)s;
  switch (why) {
  case SMTPD_CLOSE_QUIT: name = "quit"; break;
  case SMTPD_CLOSE_REJECTED: name = "rejected"; break;
  case SMTPD_CLOSE_TIMEOUT: name = "timeout"; break;
  case SMTPD_CLOSE_TOO_MANY_ERRORS: name = "too-many-errors"; break;
  case SMTPD_CLOSE_AUTH_FAILURES: name = "auth-failures"; break;
  case SMTPD_CLOSE_SYNC: name = "sync"; break;
  case SMTPD_CLOSE_HTTP: name = "http"; break;
  case SMTPD_CLOSE_HOST: name = "host"; break;
  case SMTPD_CLOSE_RESOURCE: name = "resource"; break;
  }
  snprintf(line, sizeof line, "close %s", name);
  log_event(ud, line);
}

/* ---- driving the session ------------------------------------------------- */

/* drain - read and consume all queued output (byte by byte in the byte
 * split, which also exercises partial consumption). Returns bytes read. */
static size_t drain(run *r) {
  size_t total = 0;
  for (;;) {
    const uint8_t *d = NULL;
    size_t n = smtpd_session_output(r->s, &d), take;
    if (n == 0)
      break;
    if (d == NULL) {
      fail(r, r->cur_line, NULL, NULL, "smtpd_session_output returned %lu "
           "bytes and a NULL pointer", (unsigned long)n);
      break;
    }
    take = r->split == SMTPD_TRANSCRIPT_SPLIT_BYTE ? 1 : n;
    if (buf_add(r->mem, &r->out, d, take) < 0) {
      nomem(r);
      break;
    }
    if (smtpd_session_consume(r->s, take) < 0) {
      fail(r, r->cur_line, NULL, NULL, "smtpd_session_consume failed");
      break;
    }
    total += take;
  }
  return total;
}

/* after_call - check what a call that may run decision callbacks
 * (start, feed, resume) returned against the ABORT verdicts given: after
 * ABORT it must return SMTPD_ERR_CALLBACK_FAILURE, which ends the session
 * for the driver (logged as the driver event "aborted"; client bytes not
 * yet fed are dropped, as a host closing the connection would). Returns 1
 * when the caller must stop (aborted or failed), else 0. */
static int after_call(run *r, long rc, const char *what) {
  char act[64];
  if (r->abort_given && !r->aborted) {
    if (rc == SMTPD_ERR_CALLBACK_FAILURE) {
      r->aborted = 1;
      r->qpos = r->q.len;
      log_event(r, "aborted");
      return 1;
    }
    if (rc < 0)
      snprintf(act, sizeof act, "%s", smtpd_strerror((int)rc));
    else
      snprintf(act, sizeof act, "%ld", rc);
    fail(r, r->cur_line, smtpd_strerror(SMTPD_ERR_CALLBACK_FAILURE), act,
         "a decision answered abort but %s did not return "
         "SMTPD_ERR_CALLBACK_FAILURE", what);
    return 1;
  }
  if (rc < 0) {
    fail(r, r->cur_line, NULL, smtpd_strerror((int)rc), "%s failed: %s%s",
         what, smtpd_strerror((int)rc),
         rc == SMTPD_ERR_CALLBACK_FAILURE ? " (no decision answered abort)"
                                          : "");
    return 1;
  }
  return 0;
}

/* resume - give the verdict for the deferred decision. */
static void resume(run *r, int verdict, const reply *rep, unsigned line) {
  int rc;
  r->cur_line = line;
  if (!smtpd_session_is_paused(r->s)) {
    fail(r, line, "paused", "not paused", "a callback returned DEFER but "
         "the session is not paused");
    return;
  }
  r->deferred = 0;
  r->defer_item = NULL;
  apply_reply(r, rep);
  if (verdict == SMTPD_ABORT)
    r->abort_given = 1;
  rc = smtpd_session_resume(r->s, (smtpd_verdict)verdict);
  after_call(r, rc, "smtpd_session_resume");
}

/* pump - feed queued client bytes while the session reads them. */
static void pump(run *r) {
  size_t b = 0;
  while (r->status == SMTPD_OK) {
    size_t end, n;
    ptrdiff_t got;
    if (r->deferred) {
      const item *d = r->defer_item;
      if (d->autoverdict < 0) {
        if (!smtpd_session_is_paused(r->s))
          fail(r, r->cur_line, "paused", "not paused", "a callback returned "
               "DEFER but the session is not paused");
        return; /* held until !resume */
      }
      resume(r, d->autoverdict, &d->rep, r->cur_line);
      continue;
    }
    if (r->qpos >= r->q.len)
      return;
    if (r->aborted || smtpd_session_is_closing(r->s)) {
      r->qpos = r->q.len; /* the client's bytes are never read */
      return;
    }
    while (b < r->nbounds && r->bounds[b] <= r->qpos)
      b++;
    end = b < r->nbounds ? r->bounds[b] : r->q.len;
    n = end - r->qpos;
    if (r->split == SMTPD_TRANSCRIPT_SPLIT_BYTE)
      n = 1;
    else if (r->split == SMTPD_TRANSCRIPT_SPLIT_CHUNK && n > r->chunk)
      n = r->chunk;
    r->cur_line = line_at(r, r->qpos);
    got = smtpd_session_feed(r->s, r->q.p + r->qpos, n);
    if (r->status != SMTPD_OK)
      return;
    if ((got < 0 || r->abort_given) &&
        after_call(r, (long)got, "smtpd_session_feed"))
      return;
    if ((size_t)got > n) {
      fail(r, r->cur_line, NULL, NULL, "smtpd_session_feed took more bytes "
           "than given");
      return;
    }
    r->qpos += (size_t)got;
    if ((size_t)got < n && !r->deferred && !smtpd_session_is_closing(r->s)) {
      size_t drained;
      if (smtpd_session_is_paused(r->s)) {
        fail(r, r->cur_line, NULL, NULL, "the session paused though no "
             "decision was deferred");
        return;
      }
      /* output backlog: a real client reads it, then the host feeds on */
      drained = drain(r);
      if (got == 0 && drained == 0) {
        if (!smtpd_session_want_read(r->s)) {
          r->qpos = end; /* e.g. waiting for a TLS handshake: unread */
        } else {
          fail(r, r->cur_line, NULL, NULL, "smtpd_session_feed took no "
               "input although the session wants to read");
          return;
        }
      }
    }
  }
}

/* end_packet - the packet being built is complete: feed it. */
static void end_packet(run *r, int *open) {
  if (!*open)
    return;
  *open = 0;
  if (r->nbounds == r->capbounds) {
    size_t cap = r->capbounds ? r->capbounds * 2 : 32;
    size_t *nb = xrealloc(r->mem, r->bounds, cap * sizeof *nb);
    if (nb == NULL) {
      nomem(r);
      return;
    }
    r->bounds = nb;
    r->capbounds = cap;
  }
  r->bounds[r->nbounds++] = r->q.len;
  pump(r);
}

static void add_client(run *r, const item *it) {
  const parsed *p = r->p;
  if (r->nlm == r->caplm) {
    size_t cap = r->caplm ? r->caplm * 2 : 32;
    linemark *nl = xrealloc(r->mem, r->lm, cap * sizeof *nl);
    if (nl == NULL) {
      nomem(r);
      return;
    }
    r->lm = nl;
    r->caplm = cap;
  }
  r->lm[r->nlm].off = r->q.len;
  r->lm[r->nlm].line = it->line;
  r->nlm++;
  trace(r, it->raw ? "C~ " : "C: ", P(p, it->data), it->data.len);
  if (buf_add(r->mem, &r->q, P(p, it->data), it->data.len) < 0 ||
      (!it->raw && buf_add(r->mem, &r->q, "\r\n", 2) < 0))
    nomem(r);
}

/* show_line - "S: text" for the server line at out[pos..), its length in
 * *adv (up to and including CRLF; the rest when there is no CRLF). */
static void show_line(const unsigned char *b, size_t len, size_t pos,
                      char *dst, size_t cap, size_t *adv) {
  tbuf t;
  size_t i = pos;
  while (i + 1 < len && !(b[i] == '\r' && b[i + 1] == '\n'))
    i++;
  tb_init(&t, dst, cap);
  if (i + 1 < len) {
    tb_str(&t, "S: ");
    tb_esc(&t, b + pos, i - pos);
    *adv = i + 2 - pos;
  } else {
    tb_str(&t, "S~ ");
    tb_esc(&t, b + pos, len - pos);
    *adv = len - pos;
  }
}

static void show_item(const run *r, const item *it, const char *tag,
                      char *dst, size_t cap) {
  tbuf t;
  tb_init(&t, dst, cap);
  tb_str(&t, tag);
  tb_esc(&t, P(r->p, it->data), it->data.len);
}

/* ev_match - event line e matches pattern: equal, or pattern + ' ' ... */
static int ev_match(const unsigned char *e, size_t en, const unsigned char *pt,
                    size_t pn) {
  if (en < pn || memcmp(e, pt, pn) != 0)
    return 0;
  return en == pn || e[pn] == ' ';
}

/* window_text - the events of the current window for messages. */
static void window_text(const run *r, char *dst, size_t cap) {
  tbuf t;
  size_t i;
  tb_init(&t, dst, cap);
  if (r->ev.len == r->ev_mark) {
    tb_str(&t, "(no events)");
    return;
  }
  tb_str(&t, "events: ");
  for (i = r->ev_mark; i < r->ev.len;) {
    size_t n;
    const unsigned char *e = ev_next(r, &i, &n);
    tb_esc(&t, e, n);
    if (i < r->ev.len)
      tb_str(&t, "; ");
  }
}

static const char *timeout_name(int k) {
  return k == SMTPD_TIMEOUT_COMMAND ? "command"
       : k == SMTPD_TIMEOUT_DATA ? "data" : "none";
}

/* check_group - items [from, to) are one expectation group. */
static void check_group(run *r, size_t from, size_t to) {
  const parsed *p = r->p;
  const item *items = p->items;
  size_t i, apos = 0, ecur = r->ev_mark, bpos = 0;
  unsigned last_line = items[from].line, closed_line = 0, last_s = 0;
  unsigned first_b = 0, last_b = 0;
  int nb = 0;
  char exp[SMTPD_TRANSCRIPT_TEXT_MAX], act[SMTPD_TRANSCRIPT_TEXT_MAX];
  int closing;

  r->cur_line = items[from].line;
  drain(r);
  if (r->status != SMTPD_OK)
    return;
  /* trace what the server said */
  for (i = 0; i < r->out.len;) {
    size_t adv;
    show_line(r->out.p, r->out.len, i, act, sizeof act, &adv);
    if (r->opts && r->opts->trace)
      r->opts->trace(act, r->opts->trace_ctx);
    i += adv;
  }

  for (i = from; i < to && r->status == SMTPD_OK; i++) {
    const item *it = &items[i];
    if (it->type == IT_DECIDE || it->type == IT_EFFECTS ||
        it->type == IT_BREAK)
      continue;
    last_line = it->line;
    if (it->type == IT_S) {
      size_t adv = 0;
      const unsigned char *e = P(p, it->data);
      last_s = it->line;
      show_item(r, it, "S: ", exp, sizeof exp);
      if (apos >= r->out.len) {
        fail(r, it->line, exp, "(nothing)", "the server sent nothing more");
        break;
      }
      show_line(r->out.p, r->out.len, apos, act, sizeof act, &adv);
      if (adv != it->data.len + 2 ||
          memcmp(r->out.p + apos, e, it->data.len) != 0 ||
          memcmp(r->out.p + apos + it->data.len, "\r\n", 2) != 0) {
        fail(r, it->line, exp, act, "server reply differs");
        break;
      }
      apos += adv;
    } else if (it->type == IT_CLOSED) {
      closed_line = it->line;
    } else if (it->type == IT_B) {
      if (!nb++)
        first_b = it->line;
      last_b = it->line;
    }
  }
  if (r->status != SMTPD_OK)
    return;
  if (apos < r->out.len) {
    size_t adv;
    show_line(r->out.p, r->out.len, apos, act, sizeof act, &adv);
    fail(r, last_s ? last_s : items[from].line, "(no more output)", act,
         "unexpected server output");
    return;
  }

  /* close state (an aborted session is over too) */
  closing = r->aborted || smtpd_session_is_closing(r->s);
  if (closed_line) {
    if (!closing) {
      fail(r, closed_line, "CLOSED", "(session open)", "the session is not "
           "closing");
      return;
    }
    if (smtpd_session_want_read(r->s) || smtpd_session_want_write(r->s)) {
      fail(r, closed_line, "CLOSED", "(still wants I/O)", "the session is "
           "closing but still wants to read or write");
      return;
    }
    if (!smtpd_session_is_done(r->s)) {
      fail(r, closed_line, "CLOSED", "(not done)", "the session is closing "
           "and its output was read, but smtpd_session_is_done() is false");
      return;
    }
    r->closed_asserted = 1;
  } else if (closing && !r->closed_asserted) {
    fail(r, last_line, "(session open)", "CLOSED", "the session is closing "
         "here (write CLOSED if that is expected)");
    return;
  }

  /* events and bodies, in file order */
  for (i = from; i < to && r->status == SMTPD_OK; i++) {
    const item *it = &items[i];
    const unsigned char *pt = P(p, it->data);
    if (it->type == IT_E || it->type == IT_ENOT) {
      size_t k = it->type == IT_E ? ecur : r->ev_mark;
      int found = 0;
      while (k < r->ev.len) {
        size_t en;
        const unsigned char *e = ev_next(r, &k, &en);
        if (ev_match(e, en, pt, it->data.len)) {
          found = 1;
          if (it->type == IT_E)
            ecur = k;
          break;
        }
      }
      if (it->type == IT_E && !found) {
        show_item(r, it, "E: ", exp, sizeof exp);
        window_text(r, act, sizeof act);
        fail(r, it->line, exp, act, ecur == r->ev_mark
             ? "event did not fire" : "event did not fire (after the events "
             "matched above)");
      } else if (it->type == IT_ENOT && found) {
        show_item(r, it, "E! ", exp, sizeof exp);
        window_text(r, act, sizeof act);
        fail(r, it->line, exp, act, "event fired but must not");
      }
    } else if (it->type == IT_B) {
      const unsigned char *lb = r->last_body.p;
      size_t want = it->data.len + (it->raw ? 0 : 2);
      if (!r->have_last_body) {
        show_item(r, it, it->raw ? "B~ " : "B: ", exp, sizeof exp);
        fail(r, first_b, exp, "(no message)", "no message was completed "
             "(data-complete) since the previous check");
        return;
      }
      if (bpos + want > r->last_body.len ||
          (it->data.len && memcmp(lb + bpos, pt, it->data.len) != 0) ||
          (!it->raw && memcmp(lb + bpos + it->data.len, "\r\n", 2) != 0)) {
        tbuf t;
        size_t e = bpos;
        while (e < r->last_body.len && lb[e] != '\n')
          e++;
        if (e < r->last_body.len)
          e++;
        show_item(r, it, it->raw ? "B~ " : "B: ", exp, sizeof exp);
        tb_init(&t, act, sizeof act);
        if (bpos >= r->last_body.len) {
          tb_str(&t, "(end of body)");
        } else {
          tb_str(&t, "B~ ");
          tb_esc(&t, lb + bpos, e - bpos);
        }
        fail(r, it->line, exp, act, "message body differs");
        return;
      }
      bpos += want;
    } else if (it->type == IT_T) {
      smtpd_timeout kind = SMTPD_TIMEOUT_NONE;
      uint32_t ms = smtpd_session_timeout(r->s, &kind);
      if ((int)kind != it->sub || (it->a && (uint64_t)ms != it->num)) {
        snprintf(exp, sizeof exp, "T: %s %llu", timeout_name(it->sub),
                 (unsigned long long)it->num);
        snprintf(act, sizeof act, "T: %s %lu", timeout_name((int)kind),
                 (unsigned long)ms);
        fail(r, it->line, exp, act, "timeout differs");
      }
    }
  }
  if (r->status == SMTPD_OK && nb && bpos < r->last_body.len) {
    tbuf t;
    size_t e = bpos;
    while (e < r->last_body.len && r->last_body.p[e] != '\n')
      e++;
    if (e < r->last_body.len)
      e++;
    tb_init(&t, act, sizeof act);
    tb_str(&t, "B~ ");
    tb_esc(&t, r->last_body.p + bpos, e - bpos);
    fail(r, last_b, "(end of body)", act, "message body has more data");
  }
  /* next window */
  r->out.len = 0;
  r->ev_mark = r->ev.len;
  r->have_last_body = 0;
}

static void do_action(run *r, const item *it) {
  const parsed *p = r->p;
  int rc = 0;
  char a[256], b[256];
  r->cur_line = it->line;
  switch (it->sub) {
  case ACT_TIMEOUT:
    trace(r, "!timeout", NULL, 0);
    rc = smtpd_session_timeout_expired(r->s);
    break;
  case ACT_TLS: {
    smtpd_tls_info info;
    memset(&info, 0, sizeof info);
    snprintf(a, sizeof a, "%.*s", (int)it->data.len, it->data.set
             ? (const char *)P(p, it->data) : "");
    snprintf(b, sizeof b, "%.*s", (int)it->data2.len, it->data2.set
             ? (const char *)P(p, it->data2) : "");
    info.protocol = it->data.set ? a : "TLSv1.3";
    info.cipher = it->data2.set ? b : "TLS_AES_256_GCM_SHA384";
    info.cipher_bits = (int)it->num;
    info.alg_bits = (int)it->num;
    trace(r, "!tls", NULL, 0);
    rc = smtpd_session_tls_established(r->s, &info);
    break;
  }
  case ACT_CLOSE:
    snprintf(a, sizeof a, "%.*s", (int)it->data.len, it->data.set
             ? (const char *)P(p, it->data) : "");
    snprintf(b, sizeof b, "%.*s", (int)it->data2.len, it->data2.set
             ? (const char *)P(p, it->data2) : "");
    trace(r, "!close", NULL, 0);
    rc = smtpd_session_close(r->s, it->data.set ? a : NULL,
                             it->data2.set ? b : NULL);
    break;
  case ACT_RESUME:
    trace(r, "!resume", NULL, 0);
    if (!r->deferred) {
      fail(r, it->line, NULL, NULL, "!resume but no decision is deferred");
      return;
    }
    resume(r, it->b, &it->rep, it->line);
    break;
  }
  if (rc < 0) {
    fail(r, it->line, NULL, smtpd_strerror(rc), "host action failed: %s",
         smtpd_strerror(rc));
    return;
  }
  pump(r);
}

/* apply_config - the @ configuration items; SMTPD_OK or an error. */
/* sasl_verify - the @sasl backend's password check. */
static smtpd_verdict sasl_verify(smtpd_session *s, const char *mech,
                                 const char *authcid, const char *authzid,
                                 const char *password, size_t password_len,
                                 void *ctx) {
  const run *r = ctx;
  const char *sp = strchr(r->sasl_cred, ' ');
  size_t ul = (size_t)(sp - r->sasl_cred);
  (void)s, (void)mech, (void)authzid;
  if (strlen(authcid) == ul && !memcmp(authcid, r->sasl_cred, ul) &&
      smtpd_consttime_equal(password, password_len, sp + 1, strlen(sp + 1)))
    return SMTPD_ACCEPT;
  return SMTPD_REJECT;
}

static int apply_config(run *r) {
  const parsed *p = r->p;
  size_t i;
  char *s1 = NULL, *s2 = NULL;
  int rc = SMTPD_OK;
  for (i = 0; i < p->n && rc == SMTPD_OK; i++) {
    const item *it = &p->items[i];
    if (it->type != IT_CFG)
      continue;
    s1 = s2 = NULL;
    if (it->data.set) {
      s1 = xmalloc(r->mem, it->data.len + 1);
      if (s1 == NULL)
        return SMTPD_ERR_NOMEM;
      memcpy(s1, P(p, it->data), it->data.len);
      s1[it->data.len] = '\0';
    }
    if (it->data2.set) {
      s2 = xmalloc(r->mem, it->data2.len + 1);
      if (s2 == NULL) {
        xfree(r->mem, s1);
        return SMTPD_ERR_NOMEM;
      }
      memcpy(s2, P(p, it->data2), it->data2.len);
      s2[it->data2.len] = '\0';
    }
    switch (it->sub) {
    case CFG_SASL:
      if (r->sasl == NULL) {
        r->sasl_cred = s1;
        s1 = NULL;
        rc = smtpd_sasl_builtin_new(&r->sasl, r->mem, sasl_verify, r);
        if (rc == SMTPD_OK)
          rc = smtpd_config_set_sasl(r->cfg, r->sasl);
      }
      break;
    case CFG_HOSTNAME: rc = smtpd_config_set_hostname(r->cfg, s1); break;
    case CFG_BANNER: rc = smtpd_config_set_banner(r->cfg, s1); break;
    case CFG_EHLO_KEYWORD:
      rc = smtpd_config_add_ehlo_keyword(r->cfg, s1);
      break;
    case CFG_PARAM:
      rc = smtpd_config_add_param(r->cfg, (unsigned)it->a, s1,
                                  (smtpd_param_value)it->b);
      break;
    case CFG_COMMAND:
      rc = smtpd_config_add_command(r->cfg, s1, (unsigned)it->a);
      break;
    case CFG_LIMIT:
      rc = smtpd_config_set_limit(r->cfg, (smtpd_limit)it->a, it->num);
      break;
    case CFG_TIMEOUT:
      rc = smtpd_config_set_timeout(r->cfg, (smtpd_timeout)it->a,
                                    (uint32_t)it->num);
      break;
    case CFG_OPTION:
      rc = smtpd_config_set_option(r->cfg, (smtpd_option)it->a, it->b);
      break;
    case CFG_LINE_ENDING:
      rc = smtpd_config_set_line_ending(r->cfg, (smtpd_line_ending)it->a);
      break;
    case CFG_SYNC:
      rc = smtpd_config_set_sync_policy(r->cfg, (smtpd_sync_policy)it->a);
      break;
    case CFG_LONG_LINE:
      rc = smtpd_config_set_long_line(r->cfg, (smtpd_long_line)it->a);
      break;
    default:
      break; /* session-level items are applied later */
    }
    xfree(r->mem, s1);
    xfree(r->mem, s2);
    if (rc < 0 && rc != SMTPD_ERR_NOMEM) {
      if (r->res)
        snprintf(r->res->message, sizeof r->res->message,
                 "line %u: the configuration refused this setting: %s",
                 it->line, smtpd_strerror(rc));
      if (r->res)
        r->res->line = it->line;
      return SMTPD_ERR_INVALID_ARGUMENT;
    }
  }
  return rc;
}

static int apply_session_config(run *r) {
  const parsed *p = r->p;
  size_t i;
  int rc = SMTPD_OK;
  for (i = 0; i < p->n && rc == SMTPD_OK; i++) {
    const item *it = &p->items[i];
    char a[512], b[512];
    if (it->type != IT_CFG)
      continue;
    if (it->sub == CFG_CLIENT) {
      snprintf(a, sizeof a, "%.*s", (int)it->data.len,
               (const char *)P(p, it->data));
      snprintf(b, sizeof b, "%.*s", (int)it->data2.len,
               it->data2.set ? (const char *)P(p, it->data2) : "");
      rc = smtpd_session_set_client(r->s, a, it->data2.set ? b : NULL);
    } else if (it->sub == CFG_IMPLICIT_TLS) {
      rc = smtpd_session_set_implicit_tls(r->s);
    }
    if (rc < 0 && rc != SMTPD_ERR_NOMEM) {
      if (r->res) {
        r->res->line = it->line;
        snprintf(r->res->message, sizeof r->res->message,
                 "line %u: the session refused this setting: %s", it->line,
                 smtpd_strerror(rc));
      }
      return SMTPD_ERR_INVALID_ARGUMENT;
    }
  }
  return rc;
}

static void start(run *r, int *started, unsigned line) {
  int rc;
  if (*started)
    return;
  *started = 1;
  r->cur_line = line;
  rc = smtpd_session_start(r->s);
  if (r->status != SMTPD_OK)
    return;
  if ((rc < 0 || r->abort_given) &&
      after_call(r, rc, "smtpd_session_start") && !r->aborted)
    return;
  pump(r);
}

/* execute - walk the items (config already applied). */
static void execute(run *r) {
  const parsed *p = r->p;
  size_t i, group = 0;
  int started = 0, packet = 0, in_group = 0;
  unsigned last_line = 0;

  for (i = 0; i < p->n && r->status == SMTPD_OK; i++) {
    const item *it = &p->items[i];
    last_line = it->line;
    switch (it->type) {
    case IT_CFG:
      break;
    case IT_DECIDE:
      if (it->a) {
        r->pushed[r->npushed++] = i;
      } else {
        r->deflt[it->sub] = (long)i;
      }
      break;
    case IT_EFFECTS:
      r->pushed[r->npushed++] = i;
      break;
    case IT_BREAK:
      end_packet(r, &packet);
      break;
    case IT_C:
      start(r, &started, it->line);
      if (in_group) {
        check_group(r, group, i);
        in_group = 0;
      }
      if (r->status != SMTPD_OK)
        break;
      packet = 1;
      add_client(r, it);
      break;
    case IT_ACTION:
      start(r, &started, it->line);
      end_packet(r, &packet);
      if (in_group) {
        check_group(r, group, i);
        in_group = 0;
      }
      if (r->status == SMTPD_OK)
        do_action(r, it);
      break;
    default: /* expectation */
      start(r, &started, it->line);
      end_packet(r, &packet);
      if (!in_group) {
        in_group = 1;
        group = i;
      }
      break;
    }
  }
  if (r->status != SMTPD_OK)
    return;
  start(r, &started, last_line);
  end_packet(r, &packet);
  if (in_group)
    check_group(r, group, p->n);
  if (r->status != SMTPD_OK)
    return;
  r->cur_line = last_line;
  drain(r);
  if (r->out.len) {
    char act[SMTPD_TRANSCRIPT_TEXT_MAX];
    size_t adv;
    show_line(r->out.p, r->out.len, 0, act, sizeof act, &adv);
    fail(r, last_line, "(end of transcript)", act, "server output after the "
         "last expectation (add S: lines)");
    return;
  }
  if (r->deferred) {
    fail(r, r->defer_item->line, "!resume", "(end of transcript)",
         "a deferred decision was never resumed");
    return;
  }
  for (i = 0; i < r->npushed; i++)
    if (!r->used[r->pushed[i]]) {
      const item *it = &p->items[r->pushed[i]];
      fail(r, it->line, ev_names[it->sub], "(no such event)",
           "this %s was never used: no \"%s\" event came after it",
           it->type == IT_EFFECTS ? "@effects" : "decision",
           ev_names[it->sub]);
      return;
    }
}

static int run_parsed(parsed *p, const smtpd_transcript_opts *opts,
                      smtpd_transcript_result *res) {
  run r;
  smtpd_callbacks cb;
  int rc, k;

  memset(&r, 0, sizeof r);
  r.mem = p->mem;
  r.p = p;
  r.res = res;
  r.opts = opts;
  r.split = opts ? opts->split : SMTPD_TRANSCRIPT_SPLIT_WHOLE;
  r.chunk = opts && opts->chunk ? opts->chunk : 1;
  if (p->pinned && !(opts && opts->ignore_pinned_split)) {
    r.split = p->split;
    r.chunk = p->chunk ? p->chunk : 1;
  }
  if (res)
    smtpd_transcript_split_name(r.split, r.chunk, res->split,
                                sizeof res->split);
  for (k = 0; k < EV_COUNT_; k++)
    r.deflt[k] = -1;
  r.pushed = xmalloc(r.mem, (p->n ? p->n : 1) * sizeof *r.pushed);
  r.used = xmalloc(r.mem, p->n ? p->n : 1);
  if (r.pushed == NULL || r.used == NULL) {
    rc = SMTPD_ERR_NOMEM;
    goto out;
  }
  memset(r.used, 0, p->n ? p->n : 1);

  rc = smtpd_config_new(&r.cfg, r.mem);
  if (rc < 0)
    goto out;
  rc = apply_config(&r);
  if (rc < 0)
    goto out;
  if (opts && opts->sasl) {
    rc = smtpd_config_set_sasl(r.cfg, opts->sasl);
    if (rc < 0)
      goto out;
  }
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_connect = cb_connect;
  cb.on_helo = cb_helo;
  cb.on_mail = cb_mail;
  cb.on_rcpt = cb_rcpt;
  cb.on_data = cb_data;
  cb.on_data_complete = cb_data_complete;
  cb.on_vrfy = p->uses_vrfy ? cb_vrfy : NULL;
  cb.on_body = cb_body;
  cb.on_rset = cb_rset;
  cb.on_quit = cb_quit;
  cb.on_starttls = cb_starttls;
  cb.on_auth_ok = cb_auth_ok;
  cb.on_auth_fail = cb_auth_fail;
  cb.on_tls_required = cb_tls_required;
  cb.on_notice = cb_notice;
  cb.on_close = cb_close;
  cb.on_command = p->uses_command ? cb_command : NULL;
  cb.on_data_complete_rcpt = cb_data_complete_rcpt;
  rc = smtpd_session_new(&r.s, r.cfg, &cb, &r);
  if (rc < 0)
    goto out;
  rc = apply_session_config(&r);
  if (rc < 0)
    goto out;
  execute(&r);
  rc = r.status;
out:
  smtpd_session_del(r.s);
  smtpd_config_del(r.cfg);
  buf_free(r.mem, &r.q);
  buf_free(r.mem, &r.out);
  buf_free(r.mem, &r.ev);
  buf_free(r.mem, &r.body);
  buf_free(r.mem, &r.last_body);
  smtpd_sasl_builtin_del(r.sasl);
  xfree(r.mem, r.sasl_cred);
  xfree(r.mem, r.bounds);
  xfree(r.mem, r.lm);
  xfree(r.mem, r.pushed);
  xfree(r.mem, r.used);
  if (rc == SMTPD_ERR_NOMEM && res && res->message[0] == '\0')
    snprintf(res->message, sizeof res->message, "out of memory");
  return rc;
}

/* ---- public -------------------------------------------------------------- */

void smtpd_transcript_opts_default(smtpd_transcript_opts *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof *opts);
  opts->version = SMTPD_TRANSCRIPT_OPTS_VERSION;
  opts->split = SMTPD_TRANSCRIPT_SPLIT_WHOLE;
  opts->chunk = 1;
}

const char *smtpd_transcript_split_name(smtpd_transcript_split split,
                                        size_t chunk, char *buf, size_t cap) {
  if (buf == NULL || cap == 0)
    return "";
  if (split == SMTPD_TRANSCRIPT_SPLIT_BYTE)
    snprintf(buf, cap, "byte");
  else if (split == SMTPD_TRANSCRIPT_SPLIT_CHUNK)
    snprintf(buf, cap, "%lu", (unsigned long)chunk);
  else
    snprintf(buf, cap, "whole");
  return buf;
}

int smtpd_transcript_run_buffer(const char *text, size_t len,
                                const smtpd_transcript_opts *opts,
                                smtpd_transcript_result *res) {
  parsed p;
  int rc;
  if (res) {
    memset(res, 0, sizeof *res);
    snprintf(res->split, sizeof res->split, "whole");
  }
  if (opts && opts->version > SMTPD_TRANSCRIPT_OPTS_VERSION) {
    if (res) {
      res->status = SMTPD_ERR_UNSUPPORTED;
      snprintf(res->message, sizeof res->message, "options version %u is "
               "newer than this library (%u)", opts->version,
               (unsigned)SMTPD_TRANSCRIPT_OPTS_VERSION);
    }
    return SMTPD_ERR_UNSUPPORTED;
  }
  if ((text == NULL && len) ||
      (opts && (opts->version == 0 ||
                (opts->split == SMTPD_TRANSCRIPT_SPLIT_CHUNK &&
                 opts->chunk == 0)))) {
    if (res) {
      res->status = SMTPD_ERR_INVALID_ARGUMENT;
      snprintf(res->message, sizeof res->message, "invalid arguments");
    }
    return SMTPD_ERR_INVALID_ARGUMENT;
  }
  memset(&p, 0, sizeof p);
  p.mem = opts ? opts->mem : NULL;
  if (len > MAX_FILE)
    rc = perr(res, 0, "transcript larger than %u bytes", MAX_FILE);
  else
    rc = parse(&p, text ? text : "", len, res);
  if (rc == SMTPD_OK)
    rc = run_parsed(&p, opts, res);
  else if (rc == SMTPD_ERR_NOMEM && res)
    snprintf(res->message, sizeof res->message, "out of memory");
  xfree(p.mem, p.items);
  buf_free(p.mem, &p.pay);
  if (res) {
    res->status = rc;
    res->passed = rc == SMTPD_OK;
  }
  return rc;
}

int smtpd_transcript_run_file(const char *path,
                              const smtpd_transcript_opts *opts,
                              smtpd_transcript_result *res) {
  const smtpd_mem *mem;
  FILE *f;
  buf b;
  int rc;
  memset(&b, 0, sizeof b);
  if (res)
    memset(res, 0, sizeof *res);
  /* bad opts (read nothing of a struct newer than this library) */
  if (opts && (opts->version == 0 ||
               opts->version > SMTPD_TRANSCRIPT_OPTS_VERSION))
    return smtpd_transcript_run_buffer("", 0, opts, res);
  if (path == NULL)
    return smtpd_transcript_run_buffer(NULL, 1, opts, res);
  mem = opts ? opts->mem : NULL;
  f = fopen(path, "rb");
  if (f == NULL) {
    if (res) {
      res->status = SMTPD_ERR_IO;
      snprintf(res->message, sizeof res->message, "cannot open %s", path);
    }
    return SMTPD_ERR_IO;
  }
  for (;;) {
    size_t got;
    if (buf_reserve(mem, &b, 65536) < 0) {
      fclose(f);
      buf_free(mem, &b);
      if (res) {
        res->status = SMTPD_ERR_NOMEM;
        snprintf(res->message, sizeof res->message, "out of memory");
      }
      return SMTPD_ERR_NOMEM;
    }
    got = fread(b.p + b.len, 1, 65536, f);
    b.len += got;
    if (got < 65536 || b.len > MAX_FILE)
      break;
  }
  if (ferror(f)) {
    fclose(f);
    buf_free(mem, &b);
    if (res) {
      res->status = SMTPD_ERR_IO;
      snprintf(res->message, sizeof res->message, "cannot read %s", path);
    }
    return SMTPD_ERR_IO;
  }
  fclose(f);
  rc = smtpd_transcript_run_buffer((const char *)b.p, b.len, opts, res);
  buf_free(mem, &b);
  return rc;
}
