/*
 * session.c - the SMTP session: input framing, command dispatch, replies,
 * decisions and deferral, pipelining synchronisation, timeouts, close.
 *
 *   smtpd_session_new/del/start/feed/output/consume/resume/...
 *   smtpd_i_reply, smtpd_i_reply_host, smtpd_i_protocol_error, ...
 *
 * Input is consumed in order; a command line is assembled in a fixed
 * buffer, parsed in place (parse.c) and answered. A decision callback may
 * defer: the session then stops reading until smtpd_session_resume().
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "parse.h"

/* ------------------------------------------------------------------ */
/* arena: transaction strings, reset at RSET / end of transaction       */

#define ARENA_CHUNK 2048u

static void *arena_alloc(smtpd_session *s, size_t n) {
  arena_chunk *c = s->arena;
  const smtpd_mem *m = &s->cfg->mem;
  n = (n + 7u) & ~(size_t)7u;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
    arena_chunk *nc = smtpd_i_alloc(m, sizeof *nc + cap);
    if (!nc)
      return NULL;
    nc->cap = cap;
    nc->used = 0;
    nc->next = c;
    s->arena = c = nc;
  }
  c->used += n;
  return (char *)(c + 1) + c->used - n;
}

static char *arena_strdup(smtpd_session *s, const char *str) {
  size_t n = strlen(str) + 1;
  char *d = arena_alloc(s, n);
  if (d)
    memcpy(d, str, n);
  return d;
}

/* Keep the oldest chunk (the steady-state one), free the rest. */
static void arena_reset(smtpd_session *s) {
  arena_chunk *c = s->arena;
  while (c && c->next) {
    arena_chunk *next = c->next;
    smtpd_i_free(&s->cfg->mem, c);
    c = next;
  }
  if (c)
    c->used = 0;
  s->arena = c;
}

static void arena_free(smtpd_session *s) {
  arena_reset(s);
  smtpd_i_free(&s->cfg->mem, s->arena);
  s->arena = NULL;
}

/* ------------------------------------------------------------------ */
/* output                                                               */

void smtpd_i_fail(smtpd_session *s, int err) {
  if (!s->broken)
    s->broken = err;
  s->state = ST_CLOSED;
}

static int out_reserve(smtpd_session *s, size_t n) {
  size_t need;
  if (s->out_cap - s->out_start - s->out_len >= n)
    return 0;
  if (s->out_start) {
    memmove(s->out, s->out + s->out_start, s->out_len);
    s->out_start = 0;
    if (s->out_cap - s->out_len >= n)
      return 0;
  }
  need = s->out_cap ? s->out_cap : 256;
  while (need - s->out_len < n)
    need *= 2;
  {
    uint8_t *p = smtpd_i_realloc(&s->cfg->mem, s->out, need);
    if (!p) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return SMTPD_ERR_NOMEM;
    }
    s->out = p;
    s->out_cap = need;
  }
  return 0;
}

int smtpd_i_append(smtpd_session *s, const void *p, size_t n) {
  if (n == 0)
    return 0;
  if (out_reserve(s, n))
    return SMTPD_ERR_NOMEM;
  memcpy(s->out + s->out_start + s->out_len, p, n);
  s->out_len += n;
  s->out_total += n;
  return 0;
}

/* One reply line: "CCC" sep [enh " "] a b c CRLF. */
static int reply_line(smtpd_session *s, int code, char sep, const char *enh,
                      const char *a, const char *b, const char *c) {
  size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0,
         lc = c ? strlen(c) : 0, le = 0, n;
  uint8_t *w;
  if (enh && s->cfg->options[SMTPD_OPT_ENHANCEDSTATUSCODES])
    le = strlen(enh) + 1;
  n = 4 + le + la + lb + lc + 2;
  if (out_reserve(s, n))
    return SMTPD_ERR_NOMEM;
  w = s->out + s->out_start + s->out_len;
  w[0] = (uint8_t)('0' + code / 100);
  w[1] = (uint8_t)('0' + code / 10 % 10);
  w[2] = (uint8_t)('0' + code % 10);
  w[3] = (uint8_t)sep;
  w += 4;
  if (le) {
    memcpy(w, enh, le - 1);
    w[le - 1] = ' ';
    w += le;
  }
  if (la)
    memcpy(w, a, la), w += la;
  if (lb)
    memcpy(w, b, lb), w += lb;
  if (lc)
    memcpy(w, c, lc), w += lc;
  w[0] = '\r';
  w[1] = '\n';
  s->out_len += n;
  s->out_total += n;
  return 0;
}

int smtpd_i_reply_n(smtpd_session *s, int code, const char *enh, size_t elen,
                    const char *text, size_t tlen) {
  uint8_t *w;
  size_t n;
  if (!s->cfg->options[SMTPD_OPT_ENHANCEDSTATUSCODES])
    elen = 0;
  n = 4 + (elen ? elen + 1 : 0) + tlen + 2;
  if (out_reserve(s, n))
    return SMTPD_ERR_NOMEM;
  w = s->out + s->out_start + s->out_len;
  w[0] = (uint8_t)('0' + code / 100);
  w[1] = (uint8_t)('0' + code / 10 % 10);
  w[2] = (uint8_t)('0' + code % 10);
  w[3] = ' ';
  w += 4;
  if (elen) {
    memcpy(w, enh, elen);
    w[elen] = ' ';
    w += elen + 1;
  }
  memcpy(w, text, tlen);
  w[tlen] = '\r';
  w[tlen + 1] = '\n';
  s->out_len += n;
  s->out_total += n;
  return 0;
}

int smtpd_i_reply_host(smtpd_session *s, int code, const char *enh,
                       const char *text) {
  return reply_line(s, code, ' ', enh, s->cfg->hostname, " ", text);
}

void smtpd_i_set_sync_mark(smtpd_session *s) { s->sync_mark = s->out_total; }

/* ------------------------------------------------------------------ */
/* events                                                               */

void smtpd_i_notice(smtpd_session *s, smtpd_notice_type type, int code,
                    uint64_t count) {
  smtpd_notice n;
  char cmd[80];
  if (!s->cb.on_notice)
    return;
  n.type = type;
  n.code = code;
  n.count = count;
  n.command = NULL;
  if (type != SMTPD_NOTICE_STARTTLS_DISCARD && type != SMTPD_NOTICE_MESSAGE_ABORTED &&
      s->line_len) {
    size_t len = s->line_len;
    while (len && (s->line[len - 1] == '\n' || s->line[len - 1] == '\r' ||
                   s->line[len - 1] == '\0'))
      len--;
    smtpd_i_sanitize(cmd, sizeof cmd, s->line, len);
    n.command = cmd;
  }
  s->cb.on_notice(s, &n, s->ud);
}

void smtpd_i_close(smtpd_session *s, smtpd_close_reason why) {
  if (s->state == ST_CLOSED)
    return;
  if (s->state == ST_DATA && s->doom == DOOM_NONE)
    smtpd_i_notice(s, SMTPD_NOTICE_MESSAGE_ABORTED, 0, 0);
  s->state = ST_CLOSED;
  s->pending = PEND_NONE;
  if (s->cb.on_close)
    s->cb.on_close(s, why, s->ud);
}

void smtpd_i_bump_errors(smtpd_session *s) {
  if (++s->errors >= s->cfg->limits[SMTPD_LIMIT_ERRORS] &&
      s->state != ST_CLOSED) {
    smtpd_i_reply_host(s, 421, "4.7.0", "Error: too many errors");
    smtpd_i_close(s, SMTPD_CLOSE_TOO_MANY_ERRORS);
  }
}

/* A reply caused by a client mistake: reply, notice, count. */
void smtpd_i_protocol_error(smtpd_session *s, int code, const char *enh,
                            const char *text, int with_host) {
  if (with_host)
    smtpd_i_reply_host(s, code, enh, text);
  else
    smtpd_i_reply(s, code, enh, text);
  smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, code, 0);
  smtpd_i_bump_errors(s);
}

void smtpd_i_reset_transaction(smtpd_session *s) {
  s->in_mail = 0;
  s->smtputf8 = 0;
  s->sender = NULL;
  s->nrcpts = 0;
  s->body_type = SMTPD_BODY_UNSPECIFIED;
  arena_reset(s);
}

/* ------------------------------------------------------------------ */
/* decisions                                                            */

typedef struct {
  int code;
  const char *enh;
  const char *text;
} dreply;

/* Default replies: [kind][0 accept, 1 reject, 2 tempfail]. */
static dreply default_reply(smtpd_i_pending kind, int v) {
  static const dreply table[][3] = {
      [PEND_CONNECT] = {{220, NULL, NULL},
                        {554, "5.7.1", "No SMTP service here"},
                        {421, "4.3.2",
                         "Service not available, closing transmission channel"}},
      [PEND_HELO] = {{250, NULL, NULL},
                     {550, "5.7.1", "Helo command rejected"},
                     {450, "4.7.1", "Helo command rejected: try again later"}},
      [PEND_MAIL] = {{250, "2.1.0", "Ok"},
                     {550, "5.7.1", "Sender address rejected"},
                     {450, "4.7.1", "Sender address rejected: try again later"}},
      [PEND_RCPT] = {{250, "2.1.5", "Ok"},
                     {550, "5.7.1", "Recipient address rejected"},
                     {450, "4.7.1",
                      "Recipient address rejected: try again later"}},
      [PEND_DATA] = {{354, NULL, "End data with <CR><LF>.<CR><LF>"},
                     {554, "5.7.1", "Data command rejected"},
                     {451, "4.3.0", "Data command rejected: try again later"}},
      [PEND_DATA_COMPLETE] = {{250, "2.0.0", "Ok: queued"},
                              {554, "5.7.1", "Message rejected"},
                              {451, "4.3.0",
                               "Message deferred: try again later"}},
      [PEND_VRFY] = {{252, "2.0.0",
                      "Cannot VRFY user, but will accept message and attempt "
                      "delivery"},
                     {550, "5.1.1", "Recipient address rejected"},
                     {450, "4.1.1", "Recipient address rejected: try again later"}},
  };
  int i = v == SMTPD_ACCEPT ? 0 : v == SMTPD_REJECT ? 1 : 2;
  return table[kind][i];
}

static int store_helo(smtpd_session *s, const char *name, int esmtp) {
  size_t n = strlen(name) + 1;
  if (s->helo_cap < 2 * n) {
    char *p = smtpd_i_realloc(&s->cfg->mem, s->helo, 2 * n);
    if (!p) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return SMTPD_ERR_NOMEM;
    }
    s->helo = p;
    s->helo_cap = 2 * n;
  }
  memcpy(s->helo, name, n);
  s->helo_safe = s->helo + n;
  smtpd_neuter(s->helo_safe, n, name);
  s->esmtp = esmtp ? 1 : 0;
  s->helo_seen = 1;
  return 0;
}

static void ehlo_reply(smtpd_session *s);

static void greet(smtpd_session *s) {
  const smtpd_config *c = s->cfg;
  reply_line(s, 220, ' ', NULL, c->hostname, " ", c->banner);
}

static int add_rcpt(smtpd_session *s, const char *addr) {
  char *d;
  if (s->nrcpts == s->rcpts_cap) {
    size_t cap = s->rcpts_cap ? s->rcpts_cap * 2 : 8;
    char **p = smtpd_i_realloc(&s->cfg->mem, s->rcpts, (cap + 1) * sizeof *p);
    if (!p)
      goto nomem;
    s->rcpts = p;
    s->rcpts_cap = cap;
  }
  d = arena_strdup(s, addr);
  if (!d)
    goto nomem;
  s->rcpts[s->nrcpts++] = d;
  s->rcpts[s->nrcpts] = NULL;
  return 0;
nomem:
  smtpd_i_fail(s, SMTPD_ERR_NOMEM);
  return SMTPD_ERR_NOMEM;
}

void smtpd_i_apply(smtpd_session *s, smtpd_i_pending kind, int v) {
  int code, accepted;
  if (v != SMTPD_ACCEPT && v != SMTPD_REJECT)
    v = SMTPD_TEMPFAIL;
  /* a host reply that contradicts the verdict is ignored: the verdict
   * decides, so a REJECT can never turn into an accepted command */
  if (s->reply_set && (s->reply_code < 400) != (v == SMTPD_ACCEPT))
    s->reply_set = 0;
  if (s->reply_set) {
    code = s->reply_code;
    accepted = code < 400;
    /* the core writes its own EHLO/HELO success reply */
    if (!(accepted && kind == PEND_HELO))
      smtpd_i_append(s, s->reply, s->reply_len);
  } else {
    dreply d = default_reply(kind, v);
    code = d.code;
    accepted = v == SMTPD_ACCEPT;
    if (kind == PEND_CONNECT && accepted)
      greet(s);
    else if (kind == PEND_CONNECT) /* 554 / 421 name the host */
      smtpd_i_reply_host(s, code, d.enh, d.text);
    else if (!(accepted && kind == PEND_HELO))
      smtpd_i_reply(s, code, d.enh, d.text);
  }
  s->reply_set = 0;
  s->pending = PEND_NONE;

  switch (kind) {
  case PEND_CONNECT:
    s->state = accepted ? ST_CMD : ST_REJECTED;
    smtpd_i_set_sync_mark(s);
    break;
  case PEND_HELO:
    if (accepted) {
      smtpd_i_reset_transaction(s);
      if (store_helo(s, s->pend.str, s->pend.esmtp))
        return;
      if (s->esmtp)
        ehlo_reply(s);
      else
        smtpd_i_reply(s, 250, NULL, s->cfg->hostname);
    }
    smtpd_i_set_sync_mark(s);
    break;
  case PEND_MAIL:
    if (accepted) {
      s->sender = arena_strdup(s, s->pend.str);
      if (!s->sender) {
        smtpd_i_fail(s, SMTPD_ERR_NOMEM);
        return;
      }
      s->in_mail = 1;
    } else {
      s->smtputf8 = 0;
      s->body_type = SMTPD_BODY_UNSPECIFIED;
    }
    break;
  case PEND_RCPT:
    if (accepted && add_rcpt(s, s->pend.str))
      return;
    break;
  case PEND_DATA:
    if (accepted) {
      s->state = ST_DATA;
      smtpd_i_data_begin(s);
    }
    smtpd_i_set_sync_mark(s);
    break;
  case PEND_DATA_COMPLETE:
    smtpd_i_reset_transaction(s);
    break;
  case PEND_VRFY:
    smtpd_i_set_sync_mark(s);
    break;
  default:
    break;
  }
  if (code == 421)
    smtpd_i_close(s, kind == PEND_CONNECT ? SMTPD_CLOSE_REJECTED
                                          : SMTPD_CLOSE_HOST);
}

/* Record what a decision callback answered: defer or apply now. */
static void decided(smtpd_session *s, smtpd_i_pending kind, int v) {
  if (s->broken)
    return;
  if (v == SMTPD_DEFER)
    s->pending = kind;
  else
    smtpd_i_apply(s, kind, v);
}

#define CALL_DECISION(s, kind, fn, ...)                                      \
  do {                                                                       \
    int v_ = SMTPD_ACCEPT;                                                   \
    s->reply_set = 0;                                                        \
    if (s->cb.fn) {                                                          \
      s->in_cb = kind;                                                       \
      s->callback_running = 1;                                               \
      v_ = s->cb.fn(s, __VA_ARGS__);                                         \
      s->callback_running = 0;                                               \
      s->in_cb = PEND_NONE;                                                  \
    }                                                                        \
    decided(s, kind, v_);                                                    \
  } while (0)

/* ------------------------------------------------------------------ */
/* commands                                                             */

static int ieq(const char *a, const char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'a' && x <= 'z')
      x = (unsigned char)(x - 32);
    if (x != y)
      return 0;
  }
  return 1;
}

static char *skip_spaces(char *p) {
  while (*p == ' ')
    p++;
  return p;
}

static void trim_right(char *p) {
  size_t n = strlen(p);
  while (n && p[n - 1] == ' ')
    p[--n] = '\0';
}

static void ehlo_reply(smtpd_session *s) {
  const smtpd_config *c = s->cfg;
  char mechs[512];
  size_t k;
  smtpd_i_append(s, c->ehlo_pre, c->ehlo_pre_len);
  if (c->options[SMTPD_OPT_STARTTLS] && !s->tls)
    reply_line(s, 250, '-', NULL, "STARTTLS", NULL, NULL);
  if (c->sasl && !s->auth_user) {
    k = smtpd_i_auth_mechanisms(s, mechs, sizeof mechs);
    if (k > 0 && k < sizeof mechs)
      reply_line(s, 250, '-', NULL, "AUTH ", mechs, NULL);
  }
  smtpd_i_append(s, c->ehlo_post, c->ehlo_post_len);
  if (s->broken)
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

static void cmd_helo(smtpd_session *s, char *arg, int esmtp) {
  char safe[600];
  smtpd_helo h;
  arg = skip_spaces(arg);
  trim_right(arg);
  if (!*arg) {
    smtpd_i_protocol_error(s, 501, "5.5.4",
                           esmtp ? "Syntax: EHLO hostname"
                                 : "Syntax: HELO hostname",
                           0);
    return;
  }
  if (s->cb.on_helo)
    smtpd_neuter(safe, sizeof safe, arg);
  s->pend.str = arg;
  s->pend.esmtp = esmtp;
  h.name = arg;
  h.safe_name = safe;
  h.esmtp = esmtp;
  CALL_DECISION(s, PEND_HELO, on_helo, &h, s->ud);
}

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

/* "FROM:" / "TO:" then optional spaces; returns the path start or NULL. */
static char *after_keyword(char *arg, const char *kw, size_t kwlen) {
  if (*arg != ' ')
    return NULL;
  arg++;
  if (!ieq(arg, kw, kwlen))
    return NULL;
  return skip_spaces(arg + kwlen);
}

static void cmd_mail(smtpd_session *s, char *arg) {
  const smtpd_config *c = s->cfg;
  char scratch[SMTPD_I_PATH_SCRATCH];
  smtpd_param params[SMTPD_I_MAX_PARAMS];
  smtpd_i_path path;
  smtpd_mail m;
  char *p, *rest;
  int n, i, utf8 = c->options[SMTPD_OPT_SMTPUTF8];
  smtpd_i_path_status st;

  if (!s->helo_seen) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: send HELO/EHLO first", 0);
    return;
  }
  if (s->in_mail) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: nested MAIL command", 0);
    return;
  }
  p = after_keyword(arg, "FROM:", 5);
  if (!p) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>", 0);
    return;
  }
  if (c->options[SMTPD_OPT_REQUIRE_TLS] && !s->tls) {
    smtpd_i_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
    if (s->cb.on_tls_required)
      s->cb.on_tls_required(s, "MAIL", s->ud);
    return;
  }
  if (c->options[SMTPD_OPT_REQUIRE_AUTH] && !s->auth_user) {
    smtpd_i_reply(s, 530, "5.7.0", "Authentication required");
    return;
  }
  st = smtpd_i_parse_path(p, SMTPD_I_PATH_ALLOW_NULL |
                                 (utf8 ? SMTPD_I_PATH_UTF8 : 0),
                          scratch, &path, &rest);
  if (st != SMTPD_I_PATH_OK) {
    path_error(s, st, 1);
    return;
  }
  if (*rest && *rest != ' ') {
    path_error(s, SMTPD_I_PATH_SYNTAX, 1);
    return;
  }
  trim_right(rest);
  n = smtpd_i_parse_params(rest, params, SMTPD_I_MAX_PARAMS, utf8);
  if (n < 0) {
    smtpd_i_protocol_error(s, 501, "5.5.4",
                           n == -2 ? "Error: too many parameters"
                                   : "Syntax: MAIL FROM:<address> [parameters]",
                           0);
    return;
  }
  memset(&m, 0, sizeof m);
  m.address = path.address;
  m.local = path.local;
  m.domain = path.domain;
  for (i = 0; i < n; i++) {
    const char *k = params[i].keyword, *v = params[i].value;
    if (!strcmp(k, "SIZE") && c->options[SMTPD_OPT_SIZE]) {
      if (!v || smtpd_i_parse_u64(v, &m.size)) {
        smtpd_i_protocol_error(s, 501, "5.5.4", "Bad message size syntax", 0);
        return;
      }
      m.has_size = 1;
    } else if (!strcmp(k, "BODY") && c->options[SMTPD_OPT_8BITMIME]) {
      if (v && ieq(v, "7BIT", 5))
        m.body = SMTPD_BODY_7BIT;
      else if (v && ieq(v, "8BITMIME", 9))
        m.body = SMTPD_BODY_8BITMIME;
      else {
        smtpd_i_protocol_error(s, 501, "5.5.4", "Bad BODY keyword syntax", 0);
        return;
      }
    } else if (!strcmp(k, "SMTPUTF8") && utf8 && !v) {
      m.smtputf8 = 1;
    } else if (!strcmp(k, "AUTH") && c->sasl) {
      long dl;
      if (!v || (dl = smtpd_i_xtext_decode((char *)v)) < 0) {
        smtpd_i_protocol_error(s, 501, "5.5.4", "Bad AUTH parameter syntax", 0);
        return;
      }
      m.auth = v;
      m.auth_trusted = s->auth_user != NULL;
    } else {
      smtpd_i_protocol_error(s, 555, "5.5.4", "Unsupported option", 0);
      return;
    }
  }
  if (has_8bit(path.address) && !m.smtputf8) {
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
  s->smtputf8 = m.smtputf8 ? 1 : 0;
  s->body_type = m.body;
  CALL_DECISION(s, PEND_MAIL, on_mail, &m, s->ud);
}

static void cmd_rcpt(smtpd_session *s, char *arg) {
  const smtpd_config *c = s->cfg;
  char scratch[SMTPD_I_PATH_SCRATCH];
  smtpd_param params[SMTPD_I_MAX_PARAMS];
  smtpd_i_path path;
  smtpd_rcpt r;
  char *p, *rest;
  int n;
  smtpd_i_path_status st;

  if (!s->in_mail) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: need MAIL command", 0);
    return;
  }
  p = after_keyword(arg, "TO:", 3);
  if (!p) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: RCPT TO:<address>", 0);
    return;
  }
  st = smtpd_i_parse_path(p, SMTPD_I_PATH_ALLOW_POSTMASTER |
                                 (s->smtputf8 ? SMTPD_I_PATH_UTF8 : 0),
                          scratch, &path, &rest);
  if (st != SMTPD_I_PATH_OK) {
    path_error(s, st, 0);
    return;
  }
  if (*rest && *rest != ' ') {
    path_error(s, SMTPD_I_PATH_SYNTAX, 0);
    return;
  }
  trim_right(rest);
  n = smtpd_i_parse_params(rest, params, SMTPD_I_MAX_PARAMS, s->smtputf8);
  if (n < 0) {
    smtpd_i_protocol_error(s, 501, "5.5.4",
                           n == -2 ? "Error: too many parameters"
                                   : "Syntax: RCPT TO:<address> [parameters]",
                           0);
    return;
  }
  if (n > 0) {
    smtpd_i_protocol_error(s, 555, "5.5.4", "Unsupported option", 0);
    return;
  }
  if (s->nrcpts >= c->limits[SMTPD_LIMIT_RECIPIENTS]) {
    smtpd_i_reply(s, 452, "4.5.3", "Error: too many recipients");
    smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, 452, 0);
    return;
  }
  r.address = path.address;
  r.local = path.local;
  r.domain = path.domain;
  r.params = params;
  r.nparams = 0;
  r.index = s->nrcpts;
  s->pend.str = path.address;
  CALL_DECISION(s, PEND_RCPT, on_rcpt, &r, s->ud);
}

static void cmd_data(smtpd_session *s, char *arg) {
  if (*skip_spaces(arg)) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: DATA", 0);
    return;
  }
  if (!s->in_mail) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: need MAIL command", 0);
    return;
  }
  if (!s->nrcpts) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: need RCPT command", 0);
    return;
  }
  CALL_DECISION(s, PEND_DATA, on_data, s->ud);
}

/* The terminating <CRLF>.<CRLF> was read (data.c). */
void smtpd_i_end_of_data(smtpd_session *s) {
  smtpd_message msg;
  uint64_t limit = s->cfg->limits[SMTPD_LIMIT_MESSAGE_SIZE];
  int close_after = 0;
  s->state = ST_CMD;
  /* an oversized body is refused as such whatever else was wrong with
   * it, so the reply does not depend on how the input was split */
  if (limit && s->body_size > limit)
    s->doom = DOOM_SIZE;
  switch (s->doom) {
  case DOOM_NONE:
    break;
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
  case DOOM_HOST_REJECT:
  case DOOM_HOST_TEMPFAIL:
    if (s->reply_set) {
      smtpd_i_append(s, s->reply, s->reply_len);
      close_after = s->reply_code == 421;
    } else if (s->doom == DOOM_HOST_REJECT)
      smtpd_i_reply(s, 554, "5.7.1", "Message rejected");
    else
      smtpd_i_reply(s, 451, "4.3.0", "Error: queue file write error");
    s->reply_set = 0;
    break;
  }
  if (s->doom != DOOM_NONE) {
    if (s->doom != DOOM_HOST_REJECT && s->doom != DOOM_HOST_TEMPFAIL)
      smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR,
                     s->doom == DOOM_SIZE ? 552 : 550, 0);
    s->doom = DOOM_NONE;
    smtpd_i_reset_transaction(s);
    if (close_after)
      smtpd_i_close(s, SMTPD_CLOSE_HOST);
    return;
  }
  msg.size = s->body_size;
  msg.sender = s->sender;
  msg.recipients = (const char *const *)s->rcpts;
  msg.nrecipients = s->nrcpts;
  CALL_DECISION(s, PEND_DATA_COMPLETE, on_data_complete, &msg, s->ud);
}

static void cmd_rset(smtpd_session *s, char *arg) {
  if (*skip_spaces(arg)) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: RSET", 0);
    return;
  }
  smtpd_i_reset_transaction(s);
  if (s->cb.on_rset)
    s->cb.on_rset(s, s->ud);
  smtpd_i_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_vrfy(smtpd_session *s, char *arg) {
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
  CALL_DECISION(s, PEND_VRFY, on_vrfy, arg, s->ud);
}

static void cmd_starttls(smtpd_session *s, char *arg) {
  if (*skip_spaces(arg)) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: STARTTLS", 0);
    return;
  }
  if (s->tls) {
    smtpd_i_protocol_error(s, 554, "5.5.1", "Error: TLS already active", 0);
    return;
  }
  if (!s->cfg->options[SMTPD_OPT_STARTTLS]) {
    smtpd_i_reply(s, 454, "4.7.0", "TLS not available due to local problem");
    return;
  }
  if (s->in_mail) {
    smtpd_i_protocol_error(s, 503, "5.5.1",
                           "Error: MAIL transaction in progress", 0);
    return;
  }
  smtpd_i_reply(s, 220, "2.0.0", "Ready to start TLS");
  s->state = ST_TLS_WAIT;
  if (s->cb.on_starttls)
    s->cb.on_starttls(s, s->ud);
}

static int is_http_or_header(const char *line, size_t verb_len) {
  static const char *const http[] = {"GET", "POST", "HEAD", "PUT",
                                     "CONNECT", "OPTIONS", "DELETE", "TRACE",
                                     "PATCH"};
  size_t i;
  for (i = 0; i < sizeof http / sizeof http[0]; i++)
    if (strlen(http[i]) == verb_len && ieq(line, http[i], verb_len))
      return 1;
  /* "Name:" header field: printable chars up to a colon, no space */
  if (verb_len >= 2 && line[verb_len - 1] == ':') {
    for (i = 0; i + 1 < verb_len; i++) {
      unsigned char ch = (unsigned char)line[i];
      if (ch < 0x21 || ch > 0x7e || ch == ':')
        return 0;
    }
    return 1;
  }
  return 0;
}

/* A complete command line (NUL-terminated, no CRLF). */
static void dispatch(smtpd_session *s, char *line) {
  size_t vl = 0;
  char *arg;
  while (line[vl] && line[vl] != ' ')
    vl++;
  arg = line + vl;

  if (s->state == ST_REJECTED) {
    if (vl == 4 && ieq(line, "QUIT", 4)) {
      smtpd_i_reply(s, 221, "2.0.0", "Bye");
      smtpd_i_close(s, SMTPD_CLOSE_QUIT);
    } else {
      smtpd_i_protocol_error(s, 503, "5.5.1", "Error: no SMTP service here",
                             0);
    }
    return;
  }

  switch (vl) {
  case 4:
    if (ieq(line, "MAIL", 4)) {
      cmd_mail(s, arg);
      return;
    }
    if (ieq(line, "RCPT", 4)) {
      cmd_rcpt(s, arg);
      return;
    }
    if (ieq(line, "DATA", 4)) {
      cmd_data(s, arg);
      return;
    }
    if (ieq(line, "EHLO", 4)) {
      cmd_helo(s, arg, 1);
      return;
    }
    if (ieq(line, "HELO", 4)) {
      cmd_helo(s, arg, 0);
      return;
    }
    if (ieq(line, "RSET", 4)) {
      cmd_rset(s, arg);
      return;
    }
    if (ieq(line, "NOOP", 4)) {
      smtpd_i_reply(s, 250, "2.0.0", "Ok");
      smtpd_i_set_sync_mark(s);
      return;
    }
    if (ieq(line, "QUIT", 4)) {
      if (s->cb.on_quit)
        s->cb.on_quit(s, s->ud);
      smtpd_i_reply(s, 221, "2.0.0", "Bye");
      smtpd_i_close(s, SMTPD_CLOSE_QUIT);
      return;
    }
    if (ieq(line, "VRFY", 4)) {
      cmd_vrfy(s, arg);
      return;
    }
    if (ieq(line, "EXPN", 4)) {
      smtpd_i_protocol_error(s, 502, "5.5.1",
                             "Error: command not implemented", 0);
      smtpd_i_set_sync_mark(s);
      return;
    }
    if (ieq(line, "HELP", 4)) {
      smtpd_i_reply(s, 214, "2.0.0",
                    "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY "
                    "HELP STARTTLS AUTH");
      return;
    }
    if (ieq(line, "AUTH", 4)) {
      smtpd_i_auth_command(s, arg);
      return;
    }
    if (ieq(line, "TURN", 4) || ieq(line, "ETRN", 4) || ieq(line, "BDAT", 4) ||
        ieq(line, "SEND", 4) || ieq(line, "SOML", 4) || ieq(line, "SAML", 4)) {
      smtpd_i_protocol_error(s, 502, "5.5.1",
                             "Error: command not implemented", 0);
      return;
    }
    break;
  case 8:
    if (ieq(line, "STARTTLS", 8)) {
      cmd_starttls(s, arg);
      return;
    }
    break;
  default:
    break;
  }
  if (is_http_or_header(line, vl)) {
    smtpd_i_reply(s, 221, "2.7.0", "Error: I can break rules, too. Goodbye.");
    smtpd_i_notice(s, SMTPD_NOTICE_HTTP_COMMAND, 221, 0);
    smtpd_i_close(s, SMTPD_CLOSE_HTTP);
    return;
  }
  smtpd_i_protocol_error(s, 500, "5.5.2", "Error: command not recognized", 0);
}

/* Any octet >= 0x80 in p[0..n), eight at a time. */
static int has_high_bit(const char *p, size_t n) {
  uint64_t acc = 0, w;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  for (; i < n; i++)
    acc |= (unsigned char)p[i];
  return (acc & UINT64_C(0x8080808080808080)) != 0;
}

/* Validate the raw line (octets before CRLF) then dispatch. */
static void process_line(smtpd_session *s) {
  char *line = s->line;
  size_t len = s->line_len; /* ends with '\n' */
  int crlf = len >= 2 && line[len - 2] == '\r';
  smtpd_line_ending le = s->cfg->line_ending;

  len -= crlf ? 2 : 1;
  line[len] = '\0';
  if (!crlf && le == SMTPD_LINE_ENDING_REJECT) {
    smtpd_i_protocol_error(s, 500, "5.5.2", "Error: bare <LF> received", 1);
    return;
  }
  if (memchr(line, '\0', len)) {
    smtpd_i_protocol_error(s, 500, "5.5.2", "Error: NUL character received",
                           0);
    return;
  }
  if (le == SMTPD_LINE_ENDING_REJECT && memchr(line, '\r', len)) {
    smtpd_i_protocol_error(s, 500, "5.5.2", "Error: bare <CR> received", 0);
    return;
  }
  if (has_high_bit(line, len) &&
      !smtpd_i_utf8_valid((const uint8_t *)line, len)) {
    smtpd_i_protocol_error(s, 500, "5.5.2", "Error: invalid UTF-8 in command",
                           0);
    return;
  }
  if (s->state == ST_AUTH) {
    smtpd_i_auth_response(s, line, len);
    return;
  }
  dispatch(s, line);
}

/* The rest of an overlong line is skipped; every further 32 KiB of it
 * counts as another error so an endless line ends in 421. */
#define SKIP_ERROR_EVERY 32768u

/* n more octets of an overlong line were skipped: one error for every
 * SKIP_ERROR_EVERY boundary crossed, however the input was split. */
static void skip_more(smtpd_session *s, uint64_t n) {
  uint64_t before = s->skipped / SKIP_ERROR_EVERY;
  s->skipped += n;
  while (before++ < s->skipped / SKIP_ERROR_EVERY && s->state != ST_CLOSED)
    smtpd_i_bump_errors(s);
}

static void line_too_long(smtpd_session *s) {
  if (s->state == ST_AUTH) {
    smtpd_i_reply(s, 500, "5.5.6", "SASL response limit exceeded");
    smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, 500, 0);
    smtpd_i_auth_reset(s);
    s->state = ST_CMD;
    smtpd_i_bump_errors(s);
  } else if (s->auth_big) {
    smtpd_i_reply(s, 500, "5.5.6", "SASL response limit exceeded");
    smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, 500, 0);
    smtpd_i_bump_errors(s);
  } else {
    smtpd_i_protocol_error(s, 500, "5.5.2", "Error: command too long", 1);
  }
}

/* Room for the AUTH line limit plus CRLF and "AUTH MECHANISM ". */
static int use_auth_buffer(smtpd_session *s) {
  size_t limit = (size_t)s->cfg->limits[SMTPD_LIMIT_AUTH_LINE] + 2;
  size_t cap = s->state == ST_AUTH ? limit : limit + 64;
  if (!s->authbuf) {
    s->authbuf = smtpd_i_alloc(&s->cfg->mem, limit + 64 + 1);
    if (!s->authbuf) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return SMTPD_ERR_NOMEM;
    }
  }
  if (s->line != s->authbuf) {
    memcpy(s->authbuf, s->line, s->line_len);
    s->line = s->authbuf;
  }
  s->line_cap = cap;
  s->auth_big = 1;
  return 0;
}

static void use_command_buffer(smtpd_session *s) {
  s->line = s->cmdbuf;
  s->line_cap = (size_t)s->cfg->limits[SMTPD_LIMIT_COMMAND_LINE];
  s->auth_big = 0;
  if (s->authbuf) {
    smtpd_i_free(&s->cfg->mem, s->authbuf);
    s->authbuf = NULL;
  }
}

/* Command and AUTH-response input. */
static const uint8_t *line_scan(smtpd_session *s, const uint8_t *p,
                                const uint8_t *end) {
  const uint8_t *lf = memchr(p, '\n', (size_t)(end - p));
  const uint8_t *stop = lf ? lf + 1 : end;
  size_t n = (size_t)(stop - p);

  if (s->skipping) {
    skip_more(s, n);
    if (lf) {
      s->skipping = 0;
      s->skipped = 0;
    }
    return stop;
  }
  if (s->line_len + n > s->line_cap) {
    /* An AUTH response, or "AUTH mech initial-response", may be as long
     * as the AUTH line limit: fill the command buffer, then move to the
     * larger AUTH buffer when the line really is one of those. */
    if (!s->auth_big && s->cfg->sasl &&
        (s->state == ST_AUTH || s->state == ST_CMD)) {
      size_t take = s->line_cap - s->line_len;
      memcpy(s->line + s->line_len, p, take);
      s->line_len += take;
      if (s->state == ST_AUTH || ieq(s->line, "AUTH ", 5)) {
        if (use_auth_buffer(s))
          return end;
        return p + take;
      }
    }
    {
      size_t had = s->line_len;
      s->line_len = 0; /* the notice names no half-read command */
      line_too_long(s);
      s->skipped = 0;
      if (s->state != ST_CLOSED)
        skip_more(s, had + n);
      if (!lf && s->state != ST_CLOSED)
        s->skipping = 1;
      else
        s->skipped = 0;
    }
    if (s->auth_big && s->state != ST_AUTH)
      use_command_buffer(s);
    return stop;
  }
  memcpy(s->line + s->line_len, p, n);
  s->line_len += n;
  if (!lf)
    return end;
  process_line(s);
  s->line_len = 0;
  if (s->auth_big && s->state != ST_AUTH)
    use_command_buffer(s);
  return stop;
}

/* ------------------------------------------------------------------ */
/* public API                                                           */

int smtpd_session_new(smtpd_session **out, const smtpd_config *cfg,
                      const smtpd_callbacks *cb, void *user_data) {
  smtpd_session *s;
  size_t cap;
  if (!out || !cfg)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (cb && (cb->version < 1 || cb->version > SMTPD_CALLBACKS_VERSION))
    return SMTPD_ERR_INVALID_ARGUMENT;
  s = smtpd_i_calloc(&cfg->mem, 1, sizeof *s);
  if (!s)
    return SMTPD_ERR_NOMEM;
  s->cfg = cfg;
  if (cb)
    s->cb = *cb;
  s->ud = user_data;
  cap = (size_t)cfg->limits[SMTPD_LIMIT_COMMAND_LINE];
  s->cmdbuf = smtpd_i_alloc(&cfg->mem, cap + 1);
  if (!s->cmdbuf) {
    smtpd_i_free(&cfg->mem, s);
    return SMTPD_ERR_NOMEM;
  }
  s->line = s->cmdbuf;
  s->line_cap = cap;
  *out = s;
  return 0;
}

void smtpd_session_del(smtpd_session *s) {
  const smtpd_mem *m;
  if (!s)
    return;
  m = &s->cfg->mem;
  smtpd_i_auth_reset(s);
  arena_free(s);
  smtpd_i_free(m, s->cmdbuf);
  smtpd_i_free(m, s->authbuf);
  smtpd_i_free(m, s->out);
  smtpd_i_free(m, s->reply);
  smtpd_i_free(m, s->helo);
  smtpd_i_free(m, s->client_addr);
  smtpd_i_free(m, s->client_rdns);
  smtpd_i_free(m, s->tls_strings);
  smtpd_i_free(m, s->auth_user);
  smtpd_i_free(m, s->rcpts);
  smtpd_i_free(m, s);
}

void *smtpd_session_user_data(const smtpd_session *s) {
  return s ? s->ud : NULL;
}

void smtpd_session_set_user_data(smtpd_session *s, void *ud) {
  if (s)
    s->ud = ud;
}

int smtpd_session_set_client(smtpd_session *s, const char *addr,
                             const char *rdns) {
  char *a = NULL, *r = NULL;
  const smtpd_mem *m;
  if (!s || s->started)
    return s ? SMTPD_ERR_INVALID_STATE : SMTPD_ERR_INVALID_ARGUMENT;
  m = &s->cfg->mem;
  if ((addr && strlen(addr) > 255) || (rdns && strlen(rdns) > 255))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if ((addr && !(a = smtpd_i_strdup(m, addr))) ||
      (rdns && !(r = smtpd_i_strdup(m, rdns)))) {
    smtpd_i_free(m, a);
    return SMTPD_ERR_NOMEM;
  }
  smtpd_i_free(m, s->client_addr);
  smtpd_i_free(m, s->client_rdns);
  s->client_addr = a;
  s->client_rdns = r;
  return 0;
}

int smtpd_session_set_implicit_tls(smtpd_session *s) {
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->started)
    return SMTPD_ERR_INVALID_STATE;
  s->implicit_tls = 1;
  return 0;
}

static int connect_decision(smtpd_session *s) {
  s->state = ST_CMD;
  CALL_DECISION(s, PEND_CONNECT, on_connect, s->ud);
  return s->broken;
}

int smtpd_session_start(smtpd_session *s) {
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->started || s->callback_running)
    return SMTPD_ERR_INVALID_STATE;
  s->started = 1;
  if (s->implicit_tls && !s->tls) {
    s->state = ST_TLS_WAIT;
    return 0;
  }
  return connect_decision(s);
}

static size_t out_pending(const smtpd_session *s) { return s->out_len; }

/* Input arrived while a reply that must be seen first is still unwritten. */
static int sync_violation(smtpd_session *s) {
  smtpd_i_notice(s, SMTPD_NOTICE_SYNC_VIOLATION,
                 s->cfg->sync == SMTPD_SYNC_REJECT ? 554 : 0, 0);
  s->sync_mark = 0;
  if (s->cfg->sync == SMTPD_SYNC_REJECT) {
    smtpd_i_reply(s, 554, "5.5.0", "Error: SMTP protocol synchronization");
    if (s->state == ST_DATA)
      smtpd_i_notice(s, SMTPD_NOTICE_MESSAGE_ABORTED, 554, 0);
    s->state = ST_CMD; /* so close does not report the body twice */
    smtpd_i_close(s, SMTPD_CLOSE_SYNC);
    return 1;
  }
  return 0;
}

ptrdiff_t smtpd_session_feed(smtpd_session *s, const void *data, size_t len) {
  const uint8_t *p = data, *end;
  if (!s || (!data && len))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->callback_running || !s->started)
    return SMTPD_ERR_INVALID_STATE;
  if (s->broken)
    return s->broken;
  if (s->state == ST_CLOSED)
    return (ptrdiff_t)len; /* nothing more is read: discard */
  end = p + len;
  while (p < end) {
    if (s->pending != PEND_NONE || s->state == ST_CLOSED)
      break;
    if (s->state == ST_TLS_WAIT) {
      smtpd_i_notice(s, SMTPD_NOTICE_STARTTLS_DISCARD, 0,
                     (uint64_t)(end - p));
      p = end;
      break;
    }
    if (out_pending(s) >= s->cfg->limits[SMTPD_LIMIT_OUTPUT])
      break;
    if (s->out_consumed < s->sync_mark && sync_violation(s)) {
      p = end;
      break;
    }
    if (s->state == ST_DATA)
      p = smtpd_i_data_scan(s, p, end);
    else
      p = line_scan(s, p, end);
    if (s->broken)
      return s->broken;
  }
  if (s->state == ST_CLOSED)
    p = end;
  return (ptrdiff_t)(p - (const uint8_t *)data);
}

size_t smtpd_session_output(smtpd_session *s, const uint8_t **data) {
  if (!s) {
    if (data)
      *data = NULL;
    return 0;
  }
  if (data)
    *data = s->out ? s->out + s->out_start : NULL;
  return s->out_len;
}

int smtpd_session_consume(smtpd_session *s, size_t n) {
  if (!s || n > s->out_len)
    return SMTPD_ERR_INVALID_ARGUMENT;
  s->out_start += n;
  s->out_len -= n;
  s->out_consumed += n;
  if (!s->out_len)
    s->out_start = 0;
  return 0;
}

int smtpd_session_want_read(const smtpd_session *s) {
  if (!s || s->broken || !s->started || s->state == ST_CLOSED ||
      s->pending != PEND_NONE)
    return 0;
  return out_pending(s) < s->cfg->limits[SMTPD_LIMIT_OUTPUT];
}

int smtpd_session_want_write(const smtpd_session *s) {
  return s && !s->broken && s->out_len > 0;
}

int smtpd_session_is_paused(const smtpd_session *s) {
  return s && s->pending != PEND_NONE;
}

int smtpd_session_is_closing(const smtpd_session *s) {
  return s && (s->state == ST_CLOSED || s->broken);
}

static int valid_enh(const char *e, int cls) {
  int i, digits;
  if (e[0] != (char)('0' + cls) || e[1] != '.')
    return 0;
  e += 2;
  for (i = 0; i < 2; i++) {
    for (digits = 0; *e >= '0' && *e <= '9'; e++)
      digits++;
    if (digits < 1 || digits > 3)
      return 0;
    if (i == 0 && *e++ != '.')
      return 0;
  }
  return *e == '\0';
}

int smtpd_session_set_reply_lines(smtpd_session *s, int code, const char *enh,
                                  const char *const *lines, size_t nlines) {
  smtpd_i_pending kind;
  size_t i, total = 0;
  char *buf;
  static const char *const none[1] = {NULL};
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  kind = s->callback_running ? s->in_cb : s->pending;
  if (kind == PEND_NONE || kind == PEND_AUTH)
    return SMTPD_ERR_INVALID_STATE;
  if (code < 200 || code > 599)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (code / 100 == 3 && !(code == 354 && kind == PEND_DATA))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if ((kind == PEND_DATA && code / 100 == 2) ||
      (kind == PEND_BODY && code < 400) ||
      (kind == PEND_CONNECT && code / 100 == 2 && code != 220))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (enh && (code / 100 == 3 || !valid_enh(enh, code / 100)))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!lines || !nlines) {
    lines = none;
    nlines = 1;
  }
  if (nlines > 32)
    return SMTPD_ERR_INVALID_ARGUMENT;
  for (i = 0; i < nlines; i++) {
    const char *t = lines[i] ? lines[i] : "";
    size_t n = strlen(t), k;
    if (n > 500)
      return SMTPD_ERR_INVALID_ARGUMENT;
    for (k = 0; k < n; k++)
      if ((unsigned char)t[k] < 0x20 || (unsigned char)t[k] > 0x7e)
        return SMTPD_ERR_INVALID_ARGUMENT;
    total += 4 + (enh ? strlen(enh) + 1 : 0) + n + 2;
  }
  if (!enh && code / 100 != 3) {
    enh = code / 100 == 2 ? "2.0.0" : code / 100 == 4 ? "4.0.0" : "5.0.0";
    total += nlines * 6;
  }
  if (total > SMTPD_I_REPLY_MAX)
    return SMTPD_ERR_INVALID_ARGUMENT;
  buf = s->reply;
  if (!buf) {
    buf = smtpd_i_alloc(&s->cfg->mem, SMTPD_I_REPLY_MAX);
    if (!buf)
      return SMTPD_ERR_NOMEM;
    s->reply = buf;
  }
  /* format through the output writer into a scratch area */
  {
    size_t w = 0;
    int use_enh = enh && s->cfg->options[SMTPD_OPT_ENHANCEDSTATUSCODES];
    for (i = 0; i < nlines; i++) {
      const char *t = lines[i] ? lines[i] : "";
      size_t n = strlen(t);
      buf[w++] = (char)('0' + code / 100);
      buf[w++] = (char)('0' + code / 10 % 10);
      buf[w++] = (char)('0' + code % 10);
      buf[w++] = i + 1 < nlines ? '-' : ' ';
      if (use_enh) {
        size_t el = strlen(enh);
        memcpy(buf + w, enh, el);
        w += el;
        buf[w++] = ' ';
      }
      memcpy(buf + w, t, n);
      w += n;
      buf[w++] = '\r';
      buf[w++] = '\n';
    }
    s->reply_len = w;
  }
  s->reply_code = code;
  s->reply_set = 1;
  return 0;
}

int smtpd_session_set_reply(smtpd_session *s, int code, const char *enh,
                            const char *text) {
  const char *lines[1];
  lines[0] = text;
  return smtpd_session_set_reply_lines(s, code, enh, text ? lines : NULL,
                                       text ? 1 : 0);
}

int smtpd_session_resume(smtpd_session *s, int verdict) {
  smtpd_i_pending kind;
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->callback_running || s->pending == PEND_NONE)
    return SMTPD_ERR_INVALID_STATE;
  if (verdict != SMTPD_ACCEPT && verdict != SMTPD_REJECT &&
      verdict != SMTPD_TEMPFAIL)
    return SMTPD_ERR_INVALID_ARGUMENT;
  kind = s->pending;
  if (kind == PEND_AUTH) {
    s->pending = PEND_NONE;
    smtpd_i_auth_resume(s, verdict);
  } else if (kind == PEND_BODY) {
    s->pending = PEND_NONE;
    smtpd_i_data_resume_body(s, verdict);
  } else {
    smtpd_i_apply(s, kind, verdict);
  }
  return s->broken;
}

uint32_t smtpd_session_timeout(const smtpd_session *s, smtpd_timeout *kind) {
  smtpd_timeout k = SMTPD_TIMEOUT_COMMAND;
  if (!s || s->pending != PEND_NONE || s->broken || !s->started)
    k = SMTPD_TIMEOUT_NONE;
  else if (s->state == ST_DATA)
    k = SMTPD_TIMEOUT_DATA;
  else if (s->state == ST_CLOSED)
    k = s->out_len ? SMTPD_TIMEOUT_COMMAND : SMTPD_TIMEOUT_NONE;
  if (kind)
    *kind = k;
  return k == SMTPD_TIMEOUT_NONE ? 0 : s->cfg->timeouts[k];
}

int smtpd_session_timeout_expired(smtpd_session *s) {
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->callback_running)
    return SMTPD_ERR_INVALID_STATE;
  if (s->state == ST_CLOSED)
    return 0;
  if (s->pending == PEND_AUTH || s->state == ST_AUTH)
    smtpd_i_auth_reset(s);
  s->pending = PEND_NONE;
  smtpd_i_reply_host(s, 421, "4.4.2", "Error: timeout exceeded");
  smtpd_i_close(s, SMTPD_CLOSE_TIMEOUT);
  return s->broken;
}

int smtpd_session_close(smtpd_session *s, const char *enh, const char *text) {
  size_t i;
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->callback_running)
    return SMTPD_ERR_INVALID_STATE;
  if (enh && !valid_enh(enh, 4))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (text)
    for (i = 0; text[i]; i++)
      if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e ||
          i > 400)
        return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->state == ST_CLOSED)
    return 0;
  if (s->pending == PEND_AUTH || s->state == ST_AUTH)
    smtpd_i_auth_reset(s);
  s->pending = PEND_NONE;
  smtpd_i_reply_host(s, 421, enh ? enh : "4.3.2",
                     text ? text : "Service shutting down");
  smtpd_i_close(s, SMTPD_CLOSE_HOST);
  return s->broken;
}

int smtpd_session_tls_established(smtpd_session *s,
                                  const smtpd_tls_info *info) {
  const smtpd_mem *m;
  size_t a, b, c, d;
  char *buf;
  if (!s || !info)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->callback_running || s->state != ST_TLS_WAIT)
    return SMTPD_ERR_INVALID_STATE;
  m = &s->cfg->mem;
  a = info->protocol ? strlen(info->protocol) + 1 : 0;
  b = info->cipher ? strlen(info->cipher) + 1 : 0;
  c = info->peer_subject ? strlen(info->peer_subject) + 1 : 0;
  d = info->peer_issuer ? strlen(info->peer_issuer) + 1 : 0;
  buf = smtpd_i_alloc(m, a + b + c + d + 1);
  if (!buf) {
    smtpd_i_fail(s, SMTPD_ERR_NOMEM);
    return SMTPD_ERR_NOMEM;
  }
  smtpd_i_free(m, s->tls_strings);
  s->tls_strings = buf;
  s->tls_info = *info;
  s->tls_info.protocol = a ? memcpy(buf, info->protocol, a) : NULL;
  s->tls_info.cipher = b ? memcpy(buf + a, info->cipher, b) : NULL;
  s->tls_info.peer_subject =
      c ? memcpy(buf + a + b, info->peer_subject, c) : NULL;
  s->tls_info.peer_issuer =
      d ? memcpy(buf + a + b + c, info->peer_issuer, d) : NULL;
  s->tls = 1;
  /* RFC 3207 4.2: forget everything learnt before the handshake */
  smtpd_i_reset_transaction(s);
  smtpd_i_auth_reset(s);
  s->helo_seen = 0;
  s->esmtp = 0;
  if (s->helo)
    s->helo[0] = '\0', s->helo_safe = s->helo;
  smtpd_i_free(m, s->auth_user);
  s->auth_user = NULL;
  s->auth_mech = NULL;
  s->line_len = 0;
  s->skipping = 0;
  s->sync_mark = s->out_total;
  if (s->implicit_tls && s->pending == PEND_NONE && s->out_total == 0 &&
      s->started)
    return connect_decision(s);
  s->state = ST_CMD;
  return 0;
}

/* ---- accessors ---- */

const char *smtpd_session_hostname(const smtpd_session *s) {
  return s ? s->cfg->hostname : NULL;
}
const char *smtpd_session_helo(const smtpd_session *s) {
  return s && s->helo_seen ? s->helo : NULL;
}
const char *smtpd_session_helo_safe(const smtpd_session *s) {
  return s && s->helo_seen ? s->helo_safe : NULL;
}
int smtpd_session_is_esmtp(const smtpd_session *s) { return s && s->esmtp; }
const char *smtpd_session_client_addr(const smtpd_session *s) {
  return s ? s->client_addr : NULL;
}
const char *smtpd_session_client_rdns(const smtpd_session *s) {
  return s ? s->client_rdns : NULL;
}
const smtpd_tls_info *smtpd_session_tls(const smtpd_session *s) {
  return s && s->tls ? &s->tls_info : NULL;
}
const char *smtpd_session_auth_user(const smtpd_session *s) {
  return s ? s->auth_user : NULL;
}
const char *smtpd_session_auth_mechanism(const smtpd_session *s) {
  return s && s->auth_user ? s->auth_mech : NULL;
}
const char *smtpd_session_sender(const smtpd_session *s) {
  return s && s->in_mail ? s->sender : NULL;
}
size_t smtpd_session_recipient_count(const smtpd_session *s) {
  return s ? s->nrcpts : 0;
}
const char *smtpd_session_recipient(const smtpd_session *s, size_t i) {
  return s && i < s->nrcpts ? s->rcpts[i] : NULL;
}
int smtpd_session_smtputf8(const smtpd_session *s) {
  return s && s->smtputf8;
}
