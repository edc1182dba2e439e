/*
 * commands.c - what each command does: argument checks, the event handed
 * to the host, and the effect of its decision (the apply functions the
 * command-table rows carry). Also the connect decision and the end of a
 * message, one reply or one per recipient.
 *
 * Session-wide checks (TLS or AUTH required, HELO/MAIL/RCPT first,
 * pipelining groups) are made by dispatch.c from the row's flags before a
 * handler runs.
 */
#include <string.h>

#include "decide.h"
#include "internal.h"
#include "reply.h"
#include "parse.h"

/* Kept out of the handlers' common paths (a RCPT without parameters). */
#if defined(__GNUC__)
#define OUT_OF_LINE __attribute__((noinline))
#else
#define OUT_OF_LINE
#endif

static char *skip_spaces(char *p) {
  while (*p == ' ')
    p++;
  return p;
}

/* Drop trailing spaces; returns the length left. */
static size_t trim_right(char *p) {
  size_t n;
  if (!*p)
    return 0;
  n = strlen(p);
  while (n && p[n - 1] == ' ')
    p[--n] = '\0';
  return n;
}

/* ------------------------------------------------------------------ */
/* connect                                                              */

static void apply_connect(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  s->state = accepted ? ST_CMD : ST_REJECTED;
}

const smtpd_i_decision smtpd_i_dec_connect = {K_CONNECT, D_REPLY_NO_2XX,
                                              apply_connect, NULL};

void smtpd_i_connect(smtpd_session *s) {
  s->state = ST_CMD;
  SMTPD_I_DECIDE(s, &smtpd_i_dec_connect, SMTPD_CMD_ENDS_GROUP, on_connect,
                 s->ud);
}

/* ------------------------------------------------------------------ */
/* HELO / EHLO                                                          */

/* name: len octets and a NUL */
static int store_helo(smtpd_session *s, const char *name, size_t len,
                      int esmtp) {
  size_t n = len + 1;
  if (s->helo_cap < 2 * n) {
    /* the area after the command buffer while both copies fit, then a
     * buffer of its own (the old contents are not kept) */
    char *first = smtpd_i_helo_first(s), *p;
    size_t cap = 2 * n;
    if (first && cap <= SMTPD_I_HELO_FIRST && !s->helo) {
      p = first;
      cap = SMTPD_I_HELO_FIRST;
    } else if (!s->helo || s->helo == first) {
      p = smtpd_i_alloc(&s->cfg->mem, cap);
    } else {
      p = smtpd_i_realloc(&s->cfg->mem, s->helo, cap);
    }
    if (!p) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return SMTPD_ERR_NOMEM;
    }
    s->helo = p;
    s->helo_cap = cap;
  }
  s->helo_safe = s->helo + n;
  smtpd_i_copy_neutered(s->helo, s->helo_safe, name, n);
  s->esmtp = esmtp ? 1 : 0;
  s->helo_seen = 1;
  return 0;
}

static void ehlo_reply(smtpd_session *s) {
  const smtpd_config *c = s->cfg;
  if (!(c->options[SMTPD_OPT_STARTTLS] && !s->tls) &&
      !(c->options[SMTPD_OPT_REQUIRETLS] && s->tls) &&
      !(c->sasl && !s->auth_user)) {
    /* nothing between the fixed parts: the whole reply, ready made */
    smtpd_i_append(s, c->ehlo_all, c->ehlo_all_len);
    return;
  }
  smtpd_i_append(s, c->ehlo_pre, c->ehlo_pre_len);
  if (c->options[SMTPD_OPT_STARTTLS] && !s->tls)
    smtpd_i_reply_n(s, 250, '-', NULL, 0, "STARTTLS", 8, NULL, 0);
  if (c->options[SMTPD_OPT_REQUIRETLS] && s->tls)
    smtpd_i_reply_n(s, 250, '-', NULL, 0, "REQUIRETLS", 10, NULL, 0);
  if (c->sasl && !s->auth_user)
    smtpd_i_auth_advertise(s);
  smtpd_i_append(s, c->ehlo_post, c->ehlo_post_len);
  if (s->broken || c->ehlo_post_len) /* ehlo_post ends in the final line */
    return;
  /* the last line written becomes the final one: '-' -> ' ' */
  {
    uint8_t *base = s->out + s->out_start;
    size_t b = s->out_len - 2;
    while (b > 0 && base[b - 1] != '\n')
      b--;
    base[b + 3] = ' ';
  }
}

static void apply_helo(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  if (!accepted)
    return;
  smtpd_i_reset_transaction(s);
  if (store_helo(s, s->pend.str, s->pend.len, s->pend.esmtp))
    return;
  if (s->esmtp)
    ehlo_reply(s);
  else
    smtpd_i_write_dreply(s, smtpd_i_default_reply(K_HELO, SMTPD_ACCEPT));
}

const smtpd_i_decision smtpd_i_dec_helo = {K_HELO, D_OWN_SUCCESS, apply_helo,
                                           NULL};

static void helo(smtpd_session *s, const smtpd_i_row *row, char *arg,
                 int esmtp) {
  smtpd_helo h;
  size_t len;
  arg = skip_spaces(arg);
  len = trim_right(arg);
  if (!len) {
    smtpd_i_protocol_error(s, 501, "5.5.4",
                           row->verb[0] == 'L' ? "Syntax: LHLO hostname"
                           : esmtp             ? "Syntax: EHLO hostname"
                                               : "Syntax: HELO hostname",
                           0);
    return;
  }
  h.safe_name = "";
  if (s->cb.on_helo) {
    /* the neutered copy is as long as the argument (at most a command
     * line), in a buffer that only grows */
    size_t n = len + 1;
    if (s->scratch_cap < n) {
      char *p = smtpd_i_realloc(&s->cfg->mem, s->scratch, n);
      if (!p) {
        smtpd_i_fail(s, SMTPD_ERR_NOMEM);
        return;
      }
      s->scratch = p;
      s->scratch_cap = n;
    }
    smtpd_neuter(s->scratch, n, arg);
    h.safe_name = s->scratch;
  }
  s->pend.str = arg;
  s->pend.len = (unsigned)len;
  s->pend.esmtp = esmtp;
  h.name = arg;
  h.esmtp = esmtp;
  SMTPD_I_DECIDE(s, row->decision, row->flags, on_helo, &h, s->ud);
}

void smtpd_i_cmd_helo(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  helo(s, row, arg, 0);
}

void smtpd_i_cmd_ehlo(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  helo(s, row, arg, 1);
}

void smtpd_i_cmd_lhlo(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  helo(s, row, arg, 1);
}

/* ------------------------------------------------------------------ */
/* MAIL / RCPT                                                          */

/* Map a path parse status to the reply. */
static void path_error(smtpd_session *s, smtpd_i_path_status st, int mail) {
  const char *enh = mail ? "5.1.7" : "5.1.3";
  const char *t;
  switch (st) {
  case SMTPD_I_PATH_LOCAL_TOO_LONG:
    t = mail ? "Bad sender address syntax: local part too long"
             : "Bad recipient address syntax: local part too long";
    break;
  case SMTPD_I_PATH_DOMAIN_TOO_LONG:
    t = mail ? "Bad sender address syntax: domain too long"
             : "Bad recipient address syntax: domain too long";
    break;
  case SMTPD_I_PATH_TOO_LONG:
    t = mail ? "Bad sender address syntax: path too long"
             : "Bad recipient address syntax: path too long";
    break;
  default:
    t = mail ? "Bad sender address syntax" : "Bad recipient address syntax";
    break;
  }
  smtpd_i_protocol_error(s, 501, enh, t, 0);
}

static int has_8bit(const char *p) {
  for (; *p; p++)
    if ((unsigned char)*p >= 0x80)
      return 1;
  return 0;
}

/* " FROM:" / " TO:" then optional spaces; returns the path start or
 * NULL. Clearing bit 5 upper-cases a letter and turns no other octet into
 * an upper-case letter, so " TO:" is one masked 4-octet compare. arg is
 * line + 4 in a line buffer whose first 16 octets are always defined
 * (input.c), so its first four are read at once even when the line ends
 * sooner. */
static char *after_keyword(char *arg, int mail) {
  static const unsigned char to[4] = {' ', 'T', 'O', ':'};
  static const unsigned char to_mask[4] = {0xFF, 0xDF, 0xDF, 0xFF};
  const unsigned char *a = (const unsigned char *)arg + 1;
  uint32_t w, want, mask;
  if (mail) {
    if (*arg != ' ' || (a[0] & 0xDFu) != 'F' || (a[1] & 0xDFu) != 'R' ||
        (a[2] & 0xDFu) != 'O' || (a[3] & 0xDFu) != 'M' || a[4] != ':')
      return NULL;
    return skip_spaces(arg + 6);
  }
  memcpy(&w, arg, 4);
  memcpy(&want, to, 4);
  memcpy(&mask, to_mask, 4);
  if ((w & mask) != want)
    return NULL;
  return skip_spaces(arg + 4);
}

/* The parameters after a path (rest is not empty); the count, or -1
 * after replying. */
OUT_OF_LINE static int params_after(smtpd_session *s, char *rest, int mail,
                                    int utf8, smtpd_param *params) {
  int n;
  trim_right(rest);
  n = smtpd_i_parse_params(rest, params, SMTPD_I_MAX_PARAMS, utf8);
  if (n < 0)
    smtpd_i_protocol_error(
        s, 501, "5.5.4",
        n == -2 ? "Error: too many parameters"
        : mail  ? "Syntax: MAIL FROM:<address> [parameters]"
                : "Syntax: RCPT TO:<address> [parameters]",
        0);
  return n;
}

/* No "FROM:" / "TO:" where it belongs; -1 after replying. */
OUT_OF_LINE static int keyword_error(smtpd_session *s, int mail) {
  smtpd_i_protocol_error(s, 501, "5.5.4",
                         mail ? "Syntax: MAIL FROM:<address>"
                              : "Syntax: RCPT TO:<address>",
                         0);
  return -1;
}

/* Parse "<path> [params]" after FROM:/TO:. Returns the parameter count,
 * or -1 after replying. Small enough to inline, the replies and the
 * parameters out of line: the common RCPT has none. */
static inline int path_and_params(smtpd_session *s, char *arg, int mail,
                                  unsigned flags, char *scratch,
                                  smtpd_i_path *path, smtpd_param *params) {
  char *p = after_keyword(arg, mail), *rest;
  smtpd_i_path_status st;
  if (!p)
    return keyword_error(s, mail);
  st = smtpd_i_parse_path(p, flags, scratch, path, &rest);
  if (st == SMTPD_I_PATH_OK && *rest && *rest != ' ')
    st = SMTPD_I_PATH_SYNTAX;
  if (st != SMTPD_I_PATH_OK) {
    path_error(s, st, mail);
    return -1;
  }
  if (!*rest) /* the common case: nothing follows the path */
    return 0;
  return params_after(s, rest, mail, (flags & SMTPD_I_PATH_UTF8) != 0,
                      params);
}

/* A parameter the core does not know: declared by the host (and its
 * value as declared), or 555. Returns 0 when it may pass. */
static int host_param(smtpd_session *s, const smtpd_param *p,
                      unsigned where) {
  const smtpd_config *c = s->cfg;
  size_t i;
  char text[128];
  for (i = 0; i < c->nparams; i++) {
    const smtpd_i_param_decl *d = &c->params[i];
    if (!(d->where & where) || strcmp(d->keyword, p->keyword))
      continue;
    if ((d->value == SMTPD_PARAM_NO_VALUE && p->value) ||
        (d->value == SMTPD_PARAM_VALUE && (!p->value || !*p->value))) {
      size_t k = strlen(p->keyword);
      memcpy(text, "Bad ", 4);
      memcpy(text + 4, p->keyword, k);
      memcpy(text + 4 + k, " parameter syntax", 18);
      smtpd_i_protocol_error(s, 501, "5.5.4", text, 0);
      return -1;
    }
    return 0;
  }
  smtpd_i_protocol_error(s, 555, "5.5.4", "Unsupported option", 0);
  return -1;
}

/* "Bad <KW> parameter syntax" / "Duplicate <KW> parameter": 501. */
static void param_error(smtpd_session *s, const char *kw, int duplicate) {
  char text[96];
  size_t k = strlen(kw);
  if (k > 60)
    k = 60;
  if (duplicate) {
    memcpy(text, "Duplicate ", 10);
    memcpy(text + 10, kw, k);
    memcpy(text + 10 + k, " parameter", 11);
  } else {
    memcpy(text, "Bad ", 4);
    memcpy(text + 4, kw, k);
    memcpy(text + 4 + k, " parameter syntax", 18);
  }
  smtpd_i_protocol_error(s, 501, "5.5.4", text, 0);
}

/* A keyword given twice on one line. */
static int repeated(const smtpd_param *params, int i) {
  int j;
  for (j = 0; j < i; j++)
    if (!strcmp(params[j].keyword, params[i].keyword))
      return 1;
  return 0;
}

/* xtext value decoded in place; -1 when malformed, empty, or not
 * printable US-ASCII once decoded (RFC 3461 4.4 for ENVID; ORCPT too). */
static int xtext(const char *v, size_t max) {
  long n, i;
  if (!v || !*v)
    return -1;
  n = smtpd_i_xtext_decode((char *)v);
  if (n <= 0 || (size_t)n > max)
    return -1;
  for (i = 0; i < n; i++)
    if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
      return -1;
  return 0;
}

/* NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY, each once. */
static unsigned parse_notify(const char *v) {
  static const char *const names[] = {"NEVER", "SUCCESS", "FAILURE",
                                      "DELAY"};
  unsigned bits = 0, i;
  if (!v || !*v)
    return 0;
  for (;;) {
    size_t n = strcspn(v, ",");
    unsigned bit = 0;
    for (i = 0; i < 4; i++)
      if (strlen(names[i]) == n && smtpd_i_ieq(v, names[i], n))
        bit = 1u << i;
    if (!bit || (bits & bit))
      return 0;
    bits |= bit;
    if (!v[n])
      break;
    v += n + 1;
  }
  if ((bits & SMTPD_DSN_NOTIFY_NEVER) && bits != SMTPD_DSN_NOTIFY_NEVER)
    return 0;
  return bits;
}

/* ORCPT=addr-type;xtext: type an atom, the address decoded in place. */
static int parse_orcpt(char *v, smtpd_rcpt *r) {
  char *semi = v ? strchr(v, ';') : NULL, *t;
  if (!semi || semi == v)
    return -1;
  for (t = v; t < semi; t++)
    if (!((*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z') ||
          (*t >= '0' && *t <= '9') || *t == '-'))
      return -1;
  *semi = '\0';
  if (xtext(semi + 1, 500))
    return -1;
  r->dsn_orcpt_type = v;
  r->dsn_orcpt = semi + 1;
  return 0;
}

static void apply_mail(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  if (accepted) {
    s->transactions++;
    s->sender = smtpd_i_arena_memdup(s, s->pend.str, s->pend.len);
    if (!s->sender) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return;
    }
    s->in_mail = 1;
  } else {
    s->smtputf8 = 0;
    s->requiretls = 0;
    s->body_type = SMTPD_BODY_UNSPECIFIED;
  }
}

const smtpd_i_decision smtpd_i_dec_mail = {K_MAIL, 0, apply_mail, NULL};

void smtpd_i_cmd_mail(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  const smtpd_config *c = s->cfg;
  char scratch[SMTPD_I_PATH_SCRATCH];
  smtpd_param params[SMTPD_I_MAX_PARAMS];
  smtpd_i_path path;
  smtpd_mail m;
  int n, i, utf8 = c->options[SMTPD_OPT_SMTPUTF8];

  n = path_and_params(s, arg, 1,
                      SMTPD_I_PATH_ALLOW_NULL | (utf8 ? SMTPD_I_PATH_UTF8 : 0),
                      scratch, &path, params);
  if (n < 0)
    return;
  memset(&m, 0, sizeof m);
  m.address = path.address;
  m.local = path.local;
  m.domain = path.domain;
  if (s->transactions >= c->limits[SMTPD_LIMIT_TRANSACTIONS] &&
      c->limits[SMTPD_LIMIT_TRANSACTIONS]) {
    smtpd_i_reply(s, 452, "4.5.3", "Error: too many transactions");
    smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, 452, 0);
    return;
  }
  for (i = 0; i < n; i++) {
    const char *k = params[i].keyword, *v = params[i].value;
    if (i && repeated(params, i)) {
      param_error(s, k, 1);
      return;
    }
    if (!strcmp(k, "SIZE") && c->options[SMTPD_OPT_SIZE]) {
      if (!v || smtpd_i_parse_u64(v, &m.size)) {
        smtpd_i_protocol_error(s, 501, "5.5.4", "Bad message size syntax", 0);
        return;
      }
      m.has_size = 1;
    } else if (!strcmp(k, "BODY") && c->options[SMTPD_OPT_8BITMIME]) {
      if (v && smtpd_i_ieq(v, "7BIT", 5))
        m.body = SMTPD_BODY_7BIT;
      else if (v && smtpd_i_ieq(v, "8BITMIME", 9))
        m.body = SMTPD_BODY_8BITMIME;
      else if (v && smtpd_i_ieq(v, "BINARYMIME", 11) &&
               c->options[SMTPD_OPT_BINARYMIME] &&
               c->options[SMTPD_OPT_CHUNKING])
        m.body = SMTPD_BODY_BINARYMIME;
      else {
        smtpd_i_protocol_error(s, 501, "5.5.4", "Bad BODY keyword syntax", 0);
        return;
      }
    } else if (!strcmp(k, "SMTPUTF8") && utf8 && !v) {
      m.smtputf8 = 1;
    } else if (!strcmp(k, "AUTH") && c->sasl) {
      if (!v || smtpd_i_xtext_decode((char *)v) < 0) {
        smtpd_i_protocol_error(s, 501, "5.5.4", "Bad AUTH parameter syntax", 0);
        return;
      }
      m.auth = v;
      m.auth_trusted = s->auth_user != NULL;
    } else if (!strcmp(k, "RET") && c->options[SMTPD_OPT_DSN]) {
      if (v && smtpd_i_ieq(v, "FULL", 5))
        m.dsn_ret = SMTPD_DSN_RET_FULL;
      else if (v && smtpd_i_ieq(v, "HDRS", 5))
        m.dsn_ret = SMTPD_DSN_RET_HDRS;
      else {
        param_error(s, k, 0);
        return;
      }
    } else if (!strcmp(k, "ENVID") && c->options[SMTPD_OPT_DSN]) {
      if (xtext(v, 100)) {
        param_error(s, k, 0);
        return;
      }
      m.dsn_envid = v;
    } else if (!strcmp(k, "REQUIRETLS") && c->options[SMTPD_OPT_REQUIRETLS]) {
      if (v) {
        param_error(s, k, 0);
        return;
      }
      if (!s->tls) {
        smtpd_i_protocol_error(s, 530, "5.7.10",
                               "REQUIRETLS needs an encrypted connection", 0);
        return;
      }
      m.requiretls = 1;
    } else if (host_param(s, &params[i], SMTPD_PARAM_MAIL)) {
      return;
    }
  }
  /* an address has 8-bit octets only when its command line has */
  if (s->line_high && has_8bit(path.address) && !m.smtputf8) {
    smtpd_i_protocol_error(s, 553, "5.6.7",
                           "Must declare SMTPUTF8 to send non-ASCII addresses",
                           0);
    return;
  }
  if (m.has_size && c->limits[SMTPD_LIMIT_MESSAGE_SIZE] &&
      m.size > c->limits[SMTPD_LIMIT_MESSAGE_SIZE]) {
    smtpd_i_reply(s, 552, "5.3.4", "Message size exceeds fixed limit");
    smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, 552, 0);
    return;
  }
  m.params = params;
  m.nparams = (size_t)n;
  s->pend.str = path.address;
  s->pend.len = (unsigned)path.address_len;
  s->smtputf8 = m.smtputf8 ? 1 : 0;
  s->requiretls = m.requiretls ? 1 : 0;
  s->body_type = m.body;
  SMTPD_I_DECIDE(s, row->decision, row->flags, on_mail, &m, s->ud);
}

static void apply_rcpt(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  if (accepted)
    smtpd_i_add_rcpt(s, s->pend.str, s->pend.len);
}

const smtpd_i_decision smtpd_i_dec_rcpt = {K_RCPT, 0, apply_rcpt, NULL};

/* RCPT's parameters (n > 0): the DSN fields of *r, the host's declared
 * ones, or an error. Returns non-zero after replying. */
OUT_OF_LINE static int rcpt_params(smtpd_session *s, const smtpd_param *params,
                                   int n, smtpd_rcpt *r) {
  int i;
  r->dsn_notify = 0;
  r->dsn_orcpt_type = r->dsn_orcpt = NULL;
  for (i = 0; i < n; i++) {
    const char *k = params[i].keyword;
    int dsn = s->cfg->options[SMTPD_OPT_DSN];
    if (i && repeated(params, i)) {
      param_error(s, k, 1);
      return 1;
    }
    if (dsn && !strcmp(k, "NOTIFY")) {
      if (!(r->dsn_notify = parse_notify(params[i].value))) {
        param_error(s, k, 0);
        return 1;
      }
    } else if (dsn && !strcmp(k, "ORCPT")) {
      if (parse_orcpt((char *)params[i].value, r)) {
        param_error(s, k, 0);
        return 1;
      }
    } else if (host_param(s, &params[i], SMTPD_PARAM_RCPT)) {
      return 1;
    }
  }
  return 0;
}

/* The on_rcpt event; its DSN fields are set already when n > 0. */
static const smtpd_rcpt *rcpt_event(smtpd_rcpt *r, const smtpd_i_path *path,
                                    const smtpd_param *params, int n,
                                    size_t index) {
  if (!n) {
    r->dsn_notify = 0;
    r->dsn_orcpt_type = r->dsn_orcpt = NULL;
  }
  r->address = path->address;
  r->local = path->local;
  r->domain = path->domain;
  r->params = params;
  r->nparams = (size_t)n;
  r->index = index;
  return r;
}

void smtpd_i_cmd_rcpt(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  char scratch[SMTPD_I_PATH_SCRATCH];
  smtpd_param params[SMTPD_I_MAX_PARAMS];
  smtpd_i_path path;
  smtpd_rcpt r;
  int n;

  n = path_and_params(s, arg, 0,
                      SMTPD_I_PATH_ALLOW_POSTMASTER |
                          (s->smtputf8 ? SMTPD_I_PATH_UTF8 : 0),
                      scratch, &path, params);
  if (n < 0 || (n && rcpt_params(s, params, n, &r)))
    return;
  if (s->nrcpts >= s->cfg->limits[SMTPD_LIMIT_RECIPIENTS]) {
    /* a client that keeps going past the limit is making errors: it
     * ends in 421 like any other (issue: 100,000 pipelined RCPTs) */
    smtpd_i_protocol_error(s, 452, "4.5.3", "Error: too many recipients", 0);
    return;
  }
  s->pend.str = path.address;
  s->pend.len = (unsigned)path.address_len;
  /* the event is filled only when there is a callback to see it */
  SMTPD_I_DECIDE(s, row->decision, row->flags, on_rcpt,
                 rcpt_event(&r, &path, params, n, s->nrcpts), s->ud);
}

/* ------------------------------------------------------------------ */
/* DATA and the end of a message                                        */

static void apply_data(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  if (accepted) {
    s->state = ST_DATA;
    s->msg_epoch = (s->epochs += 2);
    smtpd_i_body_begin(s);
  }
}

const smtpd_i_decision smtpd_i_dec_data = {K_DATA, D_REPLY_354, apply_data,
                                           NULL};

void smtpd_i_cmd_data(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  if (*skip_spaces(arg)) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: DATA", 0);
    return;
  }
  if (s->chunked) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: DATA after BDAT", 0);
    return;
  }
  if (s->body_type == SMTPD_BODY_BINARYMIME) {
    smtpd_i_protocol_error(s, 503, "5.5.1",
                           "Error: BODY=BINARYMIME requires BDAT", 0);
    return;
  }
  SMTPD_I_DECIDE(s, row->decision, row->flags, on_data, s->ud);
}

static void apply_data_complete(smtpd_session *s, int accepted,
                                int host_reply) {
  (void)accepted;
  (void)host_reply;
  smtpd_i_reset_transaction(s);
}

static const smtpd_i_decision dec_data_complete = {
    K_DATA_COMPLETE, 0, apply_data_complete, NULL};

static void message_of(const smtpd_session *s, smtpd_message *msg) {
  msg->size = s->body_size;
  msg->sender = s->sender;
  msg->recipients = (const char *const *)s->rcpts;
  msg->nrecipients = s->nrcpts;
  msg->chunked = s->chunked;
  msg->body = s->body_type;
}

static int per_rcpt(const smtpd_session *s) {
  return s->cfg->options[SMTPD_OPT_REPLY_PER_RCPT] ||
         s->cfg->options[SMTPD_OPT_LMTP];
}

/* One reply per recipient (SMTPD_OPT_REPLY_PER_RCPT): ask for recipient
 * rcpt_reply, apply, go on until one is deferred or all are answered. */
static void rcpt_replies(smtpd_session *s);

static void apply_rcpt_data(smtpd_session *s, int accepted, int host_reply) {
  (void)accepted;
  (void)host_reply;
  if (++s->rcpt_reply >= s->nrcpts)
    smtpd_i_reset_transaction(s);
}

static void resume_rcpt_data(smtpd_session *s, smtpd_verdict v);
static const smtpd_i_decision dec_rcpt_data = {K_RCPT_DATA, 0,
                                               apply_rcpt_data,
                                               resume_rcpt_data};

static void rcpt_replies(smtpd_session *s) {
  smtpd_message msg;
  while (s->in_mail && s->rcpt_reply < s->nrcpts && !s->pending &&
         s->state != ST_CLOSED && !s->broken) {
    message_of(s, &msg);
    SMTPD_I_DECIDE(s, &dec_rcpt_data, 0, on_data_complete_rcpt, &msg,
                   s->rcpt_reply, s->ud);
  }
}

static void resume_rcpt_data(smtpd_session *s, smtpd_verdict v) {
  smtpd_i_apply(s, &dec_rcpt_data, v);
  rcpt_replies(s);
}

/* The core refused the message: the same reply for every recipient
 * under REPLY_PER_RCPT. */
static void refuse_message(smtpd_session *s) {
  size_t i, n = per_rcpt(s) ? s->nrcpts : 1;
  for (i = 0; i < n; i++) {
    switch (s->doom) {
    case DOOM_SIZE:
      smtpd_i_reply(s, 552, "5.3.4", "Error: message file too big");
      break;
    case DOOM_BARE_LF:
      smtpd_i_reply_host(s, 550, "5.5.2", "Error: bare <LF> received");
      break;
    case DOOM_BARE_CR:
      smtpd_i_reply_host(s, 550, "5.5.2", "Error: bare <CR> received");
      break;
    case DOOM_LONG_LINE:
      smtpd_i_reply_host(s, 550, "5.5.2", "Error: message line too long");
      break;
    default:
      if (s->reply_set)
        smtpd_i_append(s, s->reply, s->reply_len);
      else
        smtpd_i_write_dreply(
            s, smtpd_i_default_reply(K_BODY, s->doom == DOOM_HOST_REJECT
                                                 ? SMTPD_REJECT
                                                 : SMTPD_TEMPFAIL));
      break;
    }
  }
}

/* The terminating <CRLF>.<CRLF> was read. */
void smtpd_i_end_of_data(smtpd_session *s) {
  smtpd_message msg;
  uint64_t limit = s->cfg->limits[SMTPD_LIMIT_MESSAGE_SIZE];
  s->state = ST_CMD;
  s->msg_epoch = 0; /* the data is in: its deadline is over */
  /* an oversized body is refused as such whatever else was wrong with
   * it, so the reply does not depend on how the input was split */
  if (limit && s->body_size > limit)
    s->doom = DOOM_SIZE;
  if (s->doom != DOOM_NONE) {
    int host = s->doom == DOOM_HOST_REJECT || s->doom == DOOM_HOST_TEMPFAIL;
    int close_after = host && s->reply_set && s->reply_code == 421;
    refuse_message(s);
    s->reply_set = 0;
    if (!host)
      smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR,
                     s->doom == DOOM_SIZE ? 552 : 550, 0);
    s->doom = DOOM_NONE;
    smtpd_i_reset_transaction(s);
    if (close_after)
      smtpd_i_close(s, SMTPD_CLOSE_HOST);
    return;
  }
  if (per_rcpt(s)) {
    s->rcpt_reply = 0;
    rcpt_replies(s);
    return;
  }
  message_of(s, &msg);
  SMTPD_I_DECIDE(s, &dec_data_complete, 0, on_data_complete, &msg, s->ud);
}

/* ------------------------------------------------------------------ */
/* the rest                                                             */

void smtpd_i_cmd_rset(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  (void)row;
  if (*skip_spaces(arg)) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: RSET", 0);
    return;
  }
  smtpd_i_reset_transaction(s);
  if (s->cb.on_rset)
    s->cb.on_rset(s, s->ud);
  smtpd_i_reply(s, 250, "2.0.0", "Ok");
}

void smtpd_i_cmd_noop(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  (void)row;
  (void)arg;
  smtpd_i_reply(s, 250, "2.0.0", "Ok");
}

void smtpd_i_cmd_quit(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  (void)row;
  (void)arg;
  if (s->cb.on_quit && s->state != ST_REJECTED)
    s->cb.on_quit(s, s->ud);
  smtpd_i_reply_lit(s, "221", "2.0.0", "Bye");
  smtpd_i_close(s, SMTPD_CLOSE_QUIT);
}

const smtpd_i_decision smtpd_i_dec_vrfy = {K_VRFY, 0, NULL, NULL};

void smtpd_i_cmd_vrfy(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  arg = skip_spaces(arg);
  trim_right(arg);
  if (!s->cfg->options[SMTPD_OPT_VRFY]) {
    smtpd_i_protocol_error(s, 502, "5.5.1", "VRFY command is disabled", 0);
    return;
  }
  if (!*arg) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: VRFY address", 0);
    return;
  }
  SMTPD_I_DECIDE(s, row->decision, row->flags, on_vrfy, arg, s->ud);
}

void smtpd_i_cmd_expn(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  (void)row;
  (void)arg;
  smtpd_i_protocol_error(s, 502, "5.5.1", "Error: command not implemented",
                         0);
}

void smtpd_i_cmd_help(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  (void)row;
  (void)arg;
  smtpd_i_reply(s, 214, "2.0.0",
                "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY "
                "HELP STARTTLS AUTH");
}

void smtpd_i_cmd_auth(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  (void)row;
  smtpd_i_auth_command(s, arg);
}

static void apply_starttls(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  if (!accepted)
    return;
  smtpd_i_write_dreply(s, smtpd_i_default_reply(K_STARTTLS, SMTPD_ACCEPT));
  s->state = ST_TLS_WAIT;
}

const smtpd_i_decision smtpd_i_dec_starttls = {K_STARTTLS, D_OWN_SUCCESS,
                                               apply_starttls, NULL};

void smtpd_i_cmd_starttls(smtpd_session *s, const smtpd_i_row *row,
                          char *arg) {
  if (*skip_spaces(arg)) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: STARTTLS", 0);
    return;
  }
  if (s->tls) {
    smtpd_i_protocol_error(s, 554, "5.5.1", "Error: TLS already active", 0);
    return;
  }
  if (!s->cfg->options[SMTPD_OPT_STARTTLS]) {
    smtpd_i_protocol_error(s, 502, "5.5.1", "Error: command not implemented",
                           0);
    return;
  }
  if (s->cb_version < 2) {
    /* version 1: a notification after the 220 was queued */
    /* the member held a void function in version 1: call it as one */
    void (*notify)(smtpd_session *, void *) =
        (void (*)(smtpd_session *, void *))(void (*)(void))s->cb.on_starttls;
    s->reply_set = 0;
    s->dec_flags = row->flags;
    smtpd_i_apply(s, row->decision, SMTPD_ACCEPT);
    if (notify)
      notify(s, s->ud);
    return;
  }
  SMTPD_I_DECIDE(s, row->decision, row->flags, on_starttls, s->ud);
}

/* ------------------------------------------------------------------ */
/* host-registered verbs                                                */

static void apply_command(smtpd_session *s, int accepted, int host_reply) {
  unsigned fx = s->effects;
  s->effects = 0;
  if (!accepted)
    return;
  if (fx & (SMTPD_EFFECT_RESET_TRANSACTION | SMTPD_EFFECT_RESET_HELO))
    smtpd_i_reset_transaction(s);
  if (fx & SMTPD_EFFECT_RESET_HELO) {
    s->helo_seen = 0;
    s->esmtp = 0;
  }
  if (fx & SMTPD_EFFECT_REGREET)
    smtpd_i_greet(s);
  else if (host_reply)
    smtpd_i_append(s, s->reply, s->reply_len);
  else
    smtpd_i_write_dreply(s, smtpd_i_default_reply(K_COMMAND, SMTPD_ACCEPT));
}

const smtpd_i_decision smtpd_i_dec_command = {K_COMMAND, D_OWN_SUCCESS,
                                              apply_command, NULL};

/* row->verb is the registered spelling; arg starts at the space. */
void smtpd_i_cmd_host(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  smtpd_command c;
  if (!s->cb.on_command) {
    smtpd_i_protocol_error(s, 502, "5.5.1", "Error: command not implemented",
                           0);
    return;
  }
  c.verb = row->verb;
  c.arg = *arg == ' ' ? arg + 1 : arg;
  s->effects = 0;
  SMTPD_I_DECIDE(s, row->decision, row->flags, on_command, &c, s->ud);
}

/* ------------------------------------------------------------------ */
/* BDAT (RFC 3030)                                                      */

/* Read the chunk's octets, handing them to the host or discarding them. */
static void read_chunk(smtpd_session *s, int discard) {
  s->bdat_discard = discard ? 1 : 0;
  s->state = ST_BDAT;
  if (s->bdat_left == 0)
    smtpd_i_bdat_chunk_done(s);
}

static void apply_bdat(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  if (!accepted) /* the refusal was written; the chunk is still read */
    s->bdat_failed = 1;
  read_chunk(s, !accepted);
}

/* The first BDAT of a message asks on_data, like DATA. */
static const smtpd_i_decision dec_bdat = {K_DATA, D_OWN_SUCCESS, apply_bdat,
                                          NULL};

void smtpd_i_cmd_bdat(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  char *p = arg, *num;
  size_t n = 0;
  int last = 0;
  uint64_t size;
  (void)row;
  /* "BDAT" SP chunk-size [SP "LAST"]: anything else cannot be framed */
  if (*p == ' ')
    p++;
  num = p;
  while (p[n] >= '0' && p[n] <= '9')
    n++;
  if (n > 0 && p[n] == ' ' && smtpd_i_ieq(p + n + 1, "LAST", 4) &&
      p[n + 5] == '\0')
    last = 1;
  else if (n == 0 || p[n] != '\0') {
    n = 0;
  }
  if (n > 0) {
    char save = p[n];
    p[n] = '\0';
    if (smtpd_i_parse_u64(num, &size))
      n = 0;
    p[n ? n : 0] = save;
  }
  if (n == 0 || *arg != ' ') {
    smtpd_i_reply(s, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
    smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, 501, 0);
    smtpd_i_close(s, SMTPD_CLOSE_PROTOCOL);
    return;
  }
  s->bdat_left = s->bdat_size = size;
  s->bdat_last = last ? 1 : 0;
  if (!s->in_mail || !s->nrcpts || s->bdat_failed ||
      (size == 0 && !last)) {
    smtpd_i_protocol_error(
        s, 503, "5.5.1",
        !s->in_mail      ? "Error: need MAIL command"
        : !s->nrcpts     ? "Error: need RCPT command"
        : s->bdat_failed ? "Error: a previous BDAT chunk failed; send RSET"
                         : "Error: BDAT 0 needs LAST",
        0);
    if (s->state != ST_CLOSED)
      read_chunk(s, 1);
    return;
  }
  if (!s->chunked) {
    s->chunked = 1;
    s->msg_epoch = (s->epochs += 2);
    smtpd_i_body_begin(s);
    SMTPD_I_DECIDE(s, &dec_bdat, 0, on_data, s->ud);
    return;
  }
  read_chunk(s, 0);
}

void smtpd_i_bdat_chunk_done(smtpd_session *s) {
  char text[64];
  size_t k;
  uint64_t v;
  s->state = ST_CMD;
  if (s->bdat_discard) {
    s->bdat_discard = 0;
    /* a refused LAST chunk ends what is left of the transaction */
    if (s->bdat_last && s->in_mail && s->chunked) {
      s->doom = DOOM_NONE;
      smtpd_i_reset_transaction(s);
    }
    return;
  }
  if (s->bdat_last) {
    smtpd_i_end_of_data(s);
    return;
  }
  if (s->doom != DOOM_NONE ||
      (s->cfg->limits[SMTPD_LIMIT_MESSAGE_SIZE] &&
       s->body_size > s->cfg->limits[SMTPD_LIMIT_MESSAGE_SIZE])) {
    /* the message is refused at this chunk; later chunks get 503 */
    if (s->doom == DOOM_NONE)
      s->doom = DOOM_SIZE;
    s->bdat_failed = 1;
    if (s->doom == DOOM_SIZE)
      smtpd_i_reply(s, 552, "5.3.4", "Error: message file too big");
    else if (s->reply_set)
      smtpd_i_append(s, s->reply, s->reply_len);
    else
      smtpd_i_write_dreply(
          s, smtpd_i_default_reply(K_BODY, s->doom == DOOM_HOST_REJECT
                                               ? SMTPD_REJECT
                                               : SMTPD_TEMPFAIL));
    s->reply_set = 0;
    smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, 552, 0);
    return;
  }
  /* "250 2.0.0 Ok: <n> octets received" */
  memcpy(text, "Ok: ", 4);
  k = 4;
  {
    char num[24], *w = num + sizeof num;
    v = s->bdat_size;
    do {
      *--w = (char)('0' + v % 10);
      v /= 10;
    } while (v);
    memcpy(text + k, w, (size_t)(num + sizeof num - w));
    k += (size_t)(num + sizeof num - w);
  }
  memcpy(text + k, " octets received", 17);
  smtpd_i_reply(s, 250, "2.0.0", text);
}

/* ------------------------------------------------------------------ */
/* XCLIENT (Postfix XCLIENT_README)                                     */

static int unavailable(const char *v) {
  return !v || !strcmp(v, "[UNAVAILABLE]") || !strcmp(v, "[TEMPUNAVAIL]");
}

/* The attributes of the XCLIENT being decided (see smtpd_i_cmd_xclient). */
static smtpd_xclient *pending_xclient(smtpd_session *s) {
  return (smtpd_xclient *)(void *)s->pend.str;
}

static void apply_xclient(smtpd_session *s, int accepted, int host_reply) {
  smtpd_xclient xc = *pending_xclient(s);
  const smtpd_xclient *x = &xc;
  (void)host_reply;
  if (!accepted)
    return;
  if (x->addr || x->name)
    smtpd_i_set_client(
        s, x->addr && !unavailable(x->addr) ? x->addr : s->client_addr,
        x->name && !unavailable(x->name) ? x->name : NULL);
  if (x->port) {
    uint64_t port;
    s->client_port = !unavailable(x->port) &&
                             !smtpd_i_parse_u64(x->port, &port) &&
                             port <= 65535
                         ? (unsigned)port
                         : 0;
  }
  if (x->proto)
    s->proto = smtpd_i_ieq(x->proto, "ESMTP", 6) ? "ESMTP"
               : smtpd_i_ieq(x->proto, "SMTP", 5) ? "SMTP"
                                                   : s->proto;
  if (x->login) {
    char *user = unavailable(x->login) ? NULL
                                       : smtpd_i_strdup(&s->cfg->mem,
                                                        x->login);
    smtpd_i_free(&s->cfg->mem, s->auth_user);
    s->auth_user = user;
    s->auth_mech = user ? "XCLIENT" : NULL;
  }
  smtpd_i_reset_transaction(s);
  if (x->helo && !unavailable(x->helo) &&
      store_helo(s, x->helo, strlen(x->helo), 1))
    return;
  s->helo_seen = 0; /* the client greets again */
  s->esmtp = 0;
  smtpd_i_greet(s);
}

const smtpd_i_decision smtpd_i_dec_xclient = {K_XCLIENT, D_OWN_SUCCESS,
                                              apply_xclient, NULL};

void smtpd_i_cmd_xclient(smtpd_session *s, const smtpd_i_row *row,
                         char *arg) {
  static const char *const names[] = {"NAME",  "ADDR",     "PORT",
                                      "PROTO", "HELO",     "LOGIN",
                                      "DESTADDR", "DESTPORT"};
  smtpd_xclient x;
  const char **slot[8];
  char *p = skip_spaces(arg);
  size_t i;
  memset(&x, 0, sizeof x);
  slot[0] = &x.name, slot[1] = &x.addr, slot[2] = &x.port;
  slot[3] = &x.proto, slot[4] = &x.helo, slot[5] = &x.login;
  slot[6] = &x.destaddr, slot[7] = &x.destport;
  if (!*p) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: XCLIENT attribute=value",
                           0);
    return;
  }
  while (*p) {
    char *eq = strchr(p, '='), *end = strchr(p, ' ');
    if (!end)
      end = p + strlen(p);
    if (!eq || eq > end) {
      smtpd_i_protocol_error(s, 501, "5.5.4",
                             "Syntax: XCLIENT attribute=value", 0);
      return;
    }
    for (i = 0; i < 8; i++)
      if (strlen(names[i]) == (size_t)(eq - p) &&
          smtpd_i_ieq(p, names[i], (size_t)(eq - p)))
        break;
    if (i == 8) {
      smtpd_i_protocol_error(s, 501, "5.5.4",
                             "Error: bad XCLIENT attribute name", 0);
      return;
    }
    if (*end)
      *end++ = '\0';
    if (smtpd_i_xtext_decode(eq + 1) < 0) {
      smtpd_i_protocol_error(s, 501, "5.5.4",
                             "Error: bad XCLIENT attribute value", 0);
      return;
    }
    *slot[i] = eq + 1;
    p = skip_spaces(end);
  }
  if (x.addr && !unavailable(x.addr) &&
      !smtpd_i_ip_valid(x.addr, strchr(x.addr, ':') != NULL) &&
      !(smtpd_i_ieq(x.addr, "IPV6:", 5) && smtpd_i_ip_valid(x.addr + 5, 1))) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Error: bad XCLIENT ADDR value",
                           0);
    return;
  }
  if (x.addr && smtpd_i_ieq(x.addr, "IPV6:", 5))
    x.addr += 5;
  /* the strings stay in the line buffer, which is not reused while the
   * decision is pending; the struct goes to the arena (no transaction is
   * open: XCLIENT is refused inside one, so resetting it loses nothing
   * and repeated XCLIENTs do not grow it) */
  {
    smtpd_xclient *xp;
    smtpd_i_reset_transaction(s);
    xp = smtpd_i_arena_alloc(s, sizeof *xp);
    if (!xp) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return;
    }
    *xp = x;
    s->pend.str = (char *)(void *)xp;
  }
  if (!s->cb.on_xclient) {
    s->reply_set = 0;
    s->dec_flags = row->flags;
    smtpd_i_apply(s, row->decision, SMTPD_REJECT);
    return;
  }
  SMTPD_I_DECIDE(s, row->decision, row->flags, on_xclient,
                 pending_xclient(s), s->ud);
}
