/*
 * format.c - the transcript format (docs/transcripts.md): one item per
 * line, escapes, configuration and decision directives, host actions and
 * expectation tags. smtpd_tr_parse() turns the whole text into a flat list of
 * items and rejects a malformed file, or one that does not fit the mode
 * (scripted decisions with host callbacks, configuration directives with
 * the host's config), before anything runs.
 *
 *   unescape         the escape language (\r \n \t \0 \\ \xHH \{N:c} \*)
 *   parse_directive  @hostname @option ... @on @every @effects
 *   parse_action     !timeout !tls !close !resume
 *   smtpd_tr_parse         lines, tags, order rules
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tr_internal.h"

#define MAX_REPEAT 1048576ul /* \{N:...} */

const char *const smtpd_tr_ev_names[EV_COUNT_] = {
  "connect", "helo", "mail", "rcpt", "data", "data-complete", "vrfy", "body",
  "starttls", "command", "data-complete-rcpt", "xclient"
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

const unsigned char *smtpd_tr_P(const tr_parsed *p, tr_span s) {
  return p->pay.p ? p->pay.p + s.off : (const unsigned char *)"";
}

int smtpd_tr_perr(smtpd_transcript_result *res, unsigned line, const char *fmt,
                  ...) {
  va_list ap;
  char msg[SMTPD_TRANSCRIPT_TEXT_MAX - 32];
  if (res == NULL)
    return SMTPD_ERR_INVALID_ARGUMENT;
  res->line = line;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (line)
    snprintf(res->message, sizeof res->message, "line %u: %s", line, msg);
  else
    snprintf(res->message, sizeof res->message, "%s", msg);
  return SMTPD_ERR_INVALID_ARGUMENT;
}

/* add_lit - one literal byte; in a pattern a NUL is written 0 0. */
static int add_lit(tr_parsed *p, unsigned char c, int pattern) {
  if (pattern && c == 0 && smtpd_tr_buf_addc(p->mem, &p->pay, 0) < 0)
    return -1;
  return smtpd_tr_buf_addc(p->mem, &p->pay, c);
}

/* unescape - decode s[0..n) into the payload; err gets a reason. With
 * wild (S: and E: lines) "\*" is a wildcard: the text is then stored as
 * a pattern and *wild set to 1 (else left plain, *wild 0); elsewhere "\*"
 * is an error. Returns 0, -1 for a syntax error, -2 for out of memory. */
static int unescape_w(tr_parsed *p, const char *s, size_t n, tr_span *out,
                      const char **err, int *wild) {
  size_t i = 0;
  tr_buf *b = &p->pay;
  int pattern = wild != NULL, seen = 0;
  out->off = b->len;
  out->set = 1;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    if (c != '\\') {
      if (add_lit(p, c, pattern) < 0)
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
    case '*':
      if (!pattern) {
        *err = "\\* (a wildcard) is only allowed in S: and E: lines";
        return -1;
      }
      if (smtpd_tr_buf_addc(p->mem, b, 0) < 0 ||
          smtpd_tr_buf_addc(p->mem, b, TR_WILD) < 0)
        return -2;
      seen = 1;
      continue;
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
      if ((i - start) * count > TR_MAX_ITEM) {
        *err = "\\{N:chars} expands too far";
        return -1;
      }
      /* the whole expansion reserved once, then the unit copied into
       * it, doubling (a byte at a time made fuzz_transcript spend most
       * of its time here) */
      k = i - start;
      if (smtpd_tr_buf_reserve(p->mem, b, k * count) < 0)
        return -2;
      memcpy(b->p + b->len, s + start, k);
      for (r = k; r < k * count; r *= 2)
        memcpy(b->p + b->len + r, b->p + b->len,
               r <= k * count - r ? r : k * count - r);
      b->len += k * count;
      i++; /* '}' */
      continue;
    }
    default:
      *err = pattern ? "unknown escape (use \\r \\n \\t \\0 \\\\ \\xHH "
                       "\\{N:chars} \\*)"
                     : "unknown escape (use \\r \\n \\t \\0 \\\\ \\xHH "
                       "\\{N:chars})";
      return -1;
    }
    if (add_lit(p, c, pattern) < 0)
      return -2;
  }
  if (pattern && !seen) {
    /* no wildcard after all: store the plain bytes (0 0 -> 0) */
    size_t rd = out->off, wr = out->off;
    while (rd < b->len) {
      b->p[wr++] = b->p[rd];
      rd += b->p[rd] == 0 ? 2 : 1;
    }
    b->len = wr;
  }
  if (wild)
    *wild = seen;
  out->len = b->len - out->off;
  if (out->len > TR_MAX_ITEM) {
    *err = "line expands to too many bytes";
    return -1;
  }
  return 0;
}

static int unescape(tr_parsed *p, const char *s, size_t n, tr_span *out,
                    const char **err) {
  return unescape_w(p, s, n, out, err, NULL);
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
static int parse_reply(tr_parsed *p, const char *s, const char *end,
                       tr_reply *r, const char **err) {
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
    if (smtpd_tr_buf_add(p->mem, &p->pay, w, n) < 0)
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

static int push_item(tr_parsed *p, const tr_item *it) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 64;
    tr_item *ni = smtpd_tr_realloc(p->mem, p->items, cap * sizeof *ni);
    if (ni == NULL)
      return -1;
    p->items = ni;
    p->cap = cap;
  }
  p->items[p->n++] = *it;
  return 0;
}

/* parse_directive - one "@..." line (without the '@'). */
static int parse_directive(tr_parsed *p, tr_item *it, const char *s,
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
      if (weq(w, n, smtpd_tr_ev_names[k]))
        break;
    if (k == EV_COUNT_) {
      *err = "unknown event (connect helo mail rcpt data data-complete "
             "data-complete-rcpt vrfy body starttls command xclient)";
      return -1;
    }
    it->sub = k;
    if (k == EV_VRFY)
      p->uses_vrfy = 1;
    if (k == EV_COMMAND)
      p->uses_command = 1;
    if (k == EV_XCLIENT)
      p->uses_xclient = 1;
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
      "auth-failures", "auth-line", "output", "transactions"
    };
    static const int ids[] = {
      SMTPD_LIMIT_MESSAGE_SIZE, SMTPD_LIMIT_RECIPIENTS,
      SMTPD_LIMIT_COMMAND_LINE, SMTPD_LIMIT_TEXT_LINE, SMTPD_LIMIT_ERRORS,
      SMTPD_LIMIT_AUTH_FAILURES, SMTPD_LIMIT_AUTH_LINE, SMTPD_LIMIT_OUTPUT,
      SMTPD_LIMIT_TRANSACTIONS
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
      "reply-per-rcpt", "chunking", "binarymime", "dsn", "requiretls",
      "limits", "lmtp", "xclient"
    };
    static const int ids[] = {
      SMTPD_OPT_ENHANCEDSTATUSCODES, SMTPD_OPT_PIPELINING,
      SMTPD_OPT_8BITMIME, SMTPD_OPT_SIZE, SMTPD_OPT_SMTPUTF8, SMTPD_OPT_VRFY,
      SMTPD_OPT_STARTTLS, SMTPD_OPT_REQUIRE_TLS, SMTPD_OPT_REQUIRE_AUTH,
      SMTPD_OPT_AUTH_PLAINTEXT, SMTPD_OPT_REPLY_PER_RCPT,
      SMTPD_OPT_CHUNKING, SMTPD_OPT_BINARYMIME, SMTPD_OPT_DSN,
      SMTPD_OPT_REQUIRETLS, SMTPD_OPT_LIMITS, SMTPD_OPT_LMTP,
      SMTPD_OPT_XCLIENT
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
  } else if (weq(w, n, "proxy")) {
    it->sub = CFG_PROXY;
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
static int parse_action(tr_parsed *p, tr_item *it, const char *s,
                        const char *end, const char **err) {
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
    if (n == 0 && p->host_callbacks)
      return 0; /* host mode: ask opts.on_paused again */
    if (n != 0 && p->host_callbacks) {
      *err = "with host callbacks (opts.callbacks) the host resumes, in "
             "opts.on_paused: write !resume alone, without a verdict";
      return -1;
    }
    v = parse_verdict(w, n);
    if (v < 0 || v == SMTPD_DEFER) {
      *err = "!resume accept|reject|tempfail|disconnect|abort "
             "[CODE [ENH] TEXT]";
      return -1;
    }
    it->a = 1;
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

int smtpd_tr_parse(tr_parsed *p, const char *text, size_t len,
             smtpd_transcript_result *res) {
  size_t pos = 0;
  unsigned line = 0;
  int conversation = 0; /* a non-config tr_item was seen */

  while (pos < len) {
    const char *s = text + pos, *end, *nl;
    const char *err = "syntax error";
    size_t n;
    tr_item it;
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
        return smtpd_tr_perr(res, line,
                             "raw control character 0x%02X; write it as "
                             "an escape (\\xHH)",
                             c);
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
    } else if (n >= 2 && (s[1] == ':' || s[1] == '~' || s[1] == '!' ||
                          s[1] == '+' || s[1] == '-')) {
      char tag[3] = { s[0], s[1], 0 };
      if (!strcmp(tag, "C:")) it.type = IT_C;
      else if (!strcmp(tag, "C~")) { it.type = IT_C; it.raw = 1; }
      else if (!strcmp(tag, "S:")) it.type = IT_S;
      else if (!strcmp(tag, "E:")) it.type = IT_E;
      else if (!strcmp(tag, "E!")) it.type = IT_ENOT;
      else if (!strcmp(tag, "B:")) it.type = IT_B;
      else if (!strcmp(tag, "B~")) { it.type = IT_B; it.raw = 1; }
      else if (!strcmp(tag, "T:")) it.type = IT_T;
      else if (!strcmp(tag, "S+")) { it.type = IT_SKW; it.a = 1; }
      else if (!strcmp(tag, "S-")) { it.type = IT_SKW; it.a = 0; }
      else
        return smtpd_tr_perr(res, line,
                             "unknown tag \"%s\" (C: C~ S: S+ S- E: E! "
                             "B: B~ T:)",
                             tag);
      if (n > 2 && s[2] != ' ')
        return smtpd_tr_perr(res, line, "a space must follow \"%s\"", tag);
      if (it.type == IT_T) {
        const char *q = s + 2, *w;
        size_t wn = word(&q, end, &w);
        if (weq(w, wn, "none")) it.sub = SMTPD_TIMEOUT_NONE;
        else if (weq(w, wn, "command")) it.sub = SMTPD_TIMEOUT_COMMAND;
        else if (weq(w, wn, "data")) it.sub = SMTPD_TIMEOUT_DATA;
        else
          return smtpd_tr_perr(res, line, "T: none|command|data [MS]");
        wn = word(&q, end, &w);
        it.a = wn != 0;
        if (wn && parse_u64(w, wn, &it.num) < 0)
          return smtpd_tr_perr(res, line, "T: milliseconds must be a number");
        if (word(&q, end, &w))
          return smtpd_tr_perr(res, line, "T: unexpected extra words");
      } else {
        int pat = it.type == IT_S || it.type == IT_E || it.type == IT_ENOT;
        rc = unescape_w(p, s + (n > 2 ? 3 : 2), n > 2 ? n - 3 : 0, &it.data,
                        &err, pat ? &it.wild : NULL);
        if (rc == 0 && (it.type == IT_E || it.type == IT_ENOT) &&
            it.data.len == 0) {
          rc = -1;
          err = "E: needs an event";
        }
        if (rc == 0 && it.type == IT_SKW) {
          const unsigned char *kw = smtpd_tr_P(p, it.data);
          size_t i;
          for (i = 0; i < it.data.len && kw[i] == ' '; i++)
            ;
          if (i == it.data.len) {
            rc = -1;
            err = "S+ / S- need an EHLO keyword (e.g. S+ STARTTLS, "
                  "S- AUTH PLAIN)";
          }
          for (i = 0; rc == 0 && i < it.data.len; i++)
            if (kw[i] < 0x20 || kw[i] >= 0x7f) {
              rc = -1;
              err = "S+ / S- take printable words";
            }
        }
      }
    } else {
      return smtpd_tr_perr(
          res, line,
          "unrecognised line (expected a tag such as "
          "C: or S:, a directive @..., an action !..., NOTHING, "
          "CLOSED, -- or #)");
    }
    if (rc == -2)
      return SMTPD_ERR_NOMEM;
    if (rc < 0)
      return smtpd_tr_perr(res, line, "%s", err);
    if (p->host_callbacks &&
        (it.type == IT_DECIDE || it.type == IT_EFFECTS))
      return smtpd_tr_perr(
          res, line,
          "%s scripts a host decision, but the run "
          "uses the host's callbacks (opts.callbacks): remove the "
          "@on/@every/@effects lines, or run without callbacks",
          it.type == IT_EFFECTS ? "@effects"
          : it.a                ? "@on"
                                : "@every");
    if (p->host_config && it.type == IT_CFG && it.sub != CFG_CLIENT &&
        it.sub != CFG_IMPLICIT_TLS && it.sub != CFG_SPLIT &&
        it.sub != CFG_PROXY)
      return smtpd_tr_perr(
          res, line,
          "a configuration directive, but the run uses "
          "the host's configuration (opts.config) as it is: set "
          "it there, or run without opts.config");
    if (it.type == IT_CFG && conversation)
      return smtpd_tr_perr(res, line,
                           "configuration directives must come before the "
                           "conversation");
    if (it.type != IT_CFG && it.type != IT_DECIDE &&
        it.type != IT_EFFECTS && it.type != IT_BREAK)
      conversation = 1;
    if (it.type == IT_DECIDE && it.sub == EV_CONNECT && conversation)
      return smtpd_tr_perr(res, line,
                           "@on/@every connect must come before the "
                           "conversation");
    if (push_item(p, &it) < 0)
      return SMTPD_ERR_NOMEM;
  }
  return SMTPD_OK;
}

