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
#include "parse.h"

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

static void ehlo_reply(smtpd_session *s) {
  const smtpd_config *c = s->cfg;
  smtpd_i_append(s, c->ehlo_pre, c->ehlo_pre_len);
  if (c->options[SMTPD_OPT_STARTTLS] && !s->tls)
    smtpd_i_reply_n(s, 250, '-', NULL, 0, "STARTTLS", 8, NULL, 0);
  if (c->sasl && !s->auth_user)
    smtpd_i_auth_advertise(s);
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

static void apply_helo(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  if (!accepted)
    return;
  smtpd_i_reset_transaction(s);
  if (store_helo(s, s->pend.str, s->pend.esmtp))
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
  arg = skip_spaces(arg);
  trim_right(arg);
  if (!*arg) {
    smtpd_i_protocol_error(s, 501, "5.5.4",
                           esmtp ? "Syntax: EHLO hostname"
                                 : "Syntax: HELO hostname",
                           0);
    return;
  }
  h.safe_name = "";
  if (s->cb.on_helo) {
    /* the neutered copy is as long as the argument (at most a command
     * line), in a buffer that only grows */
    size_t n = strlen(arg) + 1;
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

/* "FROM:" / "TO:" then optional spaces; returns the path start or NULL. */
static char *after_keyword(char *arg, const char *kw, size_t kwlen) {
  if (*arg != ' ')
    return NULL;
  arg++;
  if (!smtpd_i_ieq(arg, kw, kwlen))
    return NULL;
  return skip_spaces(arg + kwlen);
}

/* Parse "<path> [params]" after FROM:/TO:. Returns the parameter count,
 * or -1 after replying. */
static int path_and_params(smtpd_session *s, char *arg, int mail,
                           unsigned flags, char *scratch, smtpd_i_path *path,
                           smtpd_param *params) {
  char *p = after_keyword(arg, mail ? "FROM:" : "TO:", mail ? 5 : 3), *rest;
  smtpd_i_path_status st;
  int n;
  if (!p) {
    smtpd_i_protocol_error(s, 501, "5.5.4",
                           mail ? "Syntax: MAIL FROM:<address>"
                                : "Syntax: RCPT TO:<address>",
                           0);
    return -1;
  }
  st = smtpd_i_parse_path(p, flags, scratch, path, &rest);
  if (st == SMTPD_I_PATH_OK && *rest && *rest != ' ')
    st = SMTPD_I_PATH_SYNTAX;
  if (st != SMTPD_I_PATH_OK) {
    path_error(s, st, mail);
    return -1;
  }
  trim_right(rest);
  n = smtpd_i_parse_params(rest, params, SMTPD_I_MAX_PARAMS,
                           (flags & SMTPD_I_PATH_UTF8) != 0);
  if (n < 0)
    smtpd_i_protocol_error(
        s, 501, "5.5.4",
        n == -2 ? "Error: too many parameters"
        : mail  ? "Syntax: MAIL FROM:<address> [parameters]"
                : "Syntax: RCPT TO:<address> [parameters]",
        0);
  return n;
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

static void apply_mail(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  if (accepted) {
    s->sender = smtpd_i_arena_strdup(s, s->pend.str);
    if (!s->sender) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return;
    }
    s->in_mail = 1;
  } else {
    s->smtputf8 = 0;
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
  for (i = 0; i < n; i++) {
    const char *k = params[i].keyword, *v = params[i].value;
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
    } else if (host_param(s, &params[i], SMTPD_PARAM_MAIL)) {
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
  SMTPD_I_DECIDE(s, row->decision, row->flags, on_mail, &m, s->ud);
}

static void apply_rcpt(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  if (accepted)
    smtpd_i_add_rcpt(s, s->pend.str);
}

const smtpd_i_decision smtpd_i_dec_rcpt = {K_RCPT, 0, apply_rcpt, NULL};

void smtpd_i_cmd_rcpt(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  char scratch[SMTPD_I_PATH_SCRATCH];
  smtpd_param params[SMTPD_I_MAX_PARAMS];
  smtpd_i_path path;
  smtpd_rcpt r;
  int n, i;

  n = path_and_params(s, arg, 0,
                      SMTPD_I_PATH_ALLOW_POSTMASTER |
                          (s->smtputf8 ? SMTPD_I_PATH_UTF8 : 0),
                      scratch, &path, params);
  if (n < 0)
    return;
  for (i = 0; i < n; i++)
    if (host_param(s, &params[i], SMTPD_PARAM_RCPT))
      return;
  if (s->nrcpts >= s->cfg->limits[SMTPD_LIMIT_RECIPIENTS]) {
    smtpd_i_reply(s, 452, "4.5.3", "Error: too many recipients");
    smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, 452, 0);
    return;
  }
  r.address = path.address;
  r.local = path.local;
  r.domain = path.domain;
  r.params = params;
  r.nparams = (size_t)n;
  r.index = s->nrcpts;
  s->pend.str = path.address;
  SMTPD_I_DECIDE(s, row->decision, row->flags, on_rcpt, &r, s->ud);
}

/* ------------------------------------------------------------------ */
/* DATA and the end of a message                                        */

static void apply_data(smtpd_session *s, int accepted, int host_reply) {
  (void)host_reply;
  if (accepted) {
    s->state = ST_DATA;
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
  size_t i, n = s->cfg->options[SMTPD_OPT_REPLY_PER_RCPT] ? s->nrcpts : 1;
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
  if (s->cfg->options[SMTPD_OPT_REPLY_PER_RCPT]) {
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
  smtpd_i_reply(s, 221, "2.0.0", "Bye");
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
