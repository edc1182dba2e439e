/*
 * events.c - the callbacks the driver gives the session. Each one logs
 * its event (the text E: lines match, docs/transcripts.md "Events"), then
 * decides:
 *  - scripted mode: from the transcript's @on / @every / @effects
 *    directives (decide, take_effects);
 *  - host mode: by calling the host's own callback (opts.callbacks) with
 *    opts.user_data, and noting what it answered (a DEFER pauses the run
 *    until opts.on_paused resumes it; an ABORT must make the call fail).
 * Body chunks are collected for B: lines either way.
 *
 *   smtpd_tr_log_event       append one event to the log
 *   smtpd_tr_apply_reply     a directive's reply (set_reply)
 *   smtpd_tr_callbacks       the table given to smtpd_session_new
 *   smtpd_tr_host_callbacks  copy the host's table by its version
 *   smtpd_tr_sasl_verify     the @sasl backend's password check
 */
#include <stdio.h>
#include <string.h>

#include "tr_internal.h"

/* A new member of smtpd_callbacks needs a wrapper here (host mode calls
 * the host's callbacks through the driver's, never directly). */
_Static_assert(sizeof(smtpd_callbacks) ==
                   offsetof(smtpd_callbacks, on_xclient) +
                       sizeof(((smtpd_callbacks *)0)->on_xclient),
               "smtpd_callbacks grew: chain the new callback in "
               "lib/transcript/events.c");

void smtpd_tr_log_event(tr_run *r, const char *text) {
  uint32_t n = (uint32_t)strlen(text);
  if (smtpd_tr_buf_add(r->mem, &r->ev, &n, sizeof n) < 0 ||
      smtpd_tr_buf_add(r->mem, &r->ev, text, n) < 0)
    smtpd_tr_nomem(r);
  smtpd_tr_trace(r, "E: ", (const unsigned char *)text, n);
}

const unsigned char *smtpd_tr_ev_next(const tr_run *r, size_t *k, size_t *len) {
  uint32_t n;
  const unsigned char *e;
  memcpy(&n, r->ev.p + *k, sizeof n);
  e = r->ev.p + *k + sizeof n;
  *k += sizeof n + n;
  *len = n;
  return e;
}

void smtpd_tr_apply_reply(tr_run *r, const tr_reply *rep) {
  const tr_parsed *p = r->p;
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
    memcpy(enh, smtpd_tr_P(p, rep->enh), n);
    enh[n] = '\0';
    enhp = enh;
  }
  if (rep->text.set && rep->text.len) {
    text = smtpd_tr_malloc(r->mem, rep->text.len + 1);
    if (text == NULL) {
      smtpd_tr_nomem(r);
      return;
    }
    memcpy(text, smtpd_tr_P(p, rep->text), rep->text.len);
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
    smtpd_tr_log_event(r, "reply-refused");
  smtpd_tr_free(r->mem, text);
}

/* paused_call - a callback ran while the session was paused for a
 * deferred decision: the core must never do that. */
static int paused_call(tr_run *r, const char *what) {
  if (!r->deferred)
    return 0;
  smtpd_tr_fail(r, r->cur_line, NULL, what,
                "callback \"%s\" ran while the "
                "session was paused for a deferred decision",
                what);
  return 1;
}

/* decide - scripted mode: answer a decision callback from the
 * directives. */
static smtpd_verdict decide(tr_run *r, int kind) {
  const tr_item *d = NULL;
  size_t i;
  if (paused_call(r, smtpd_tr_ev_names[kind]))
    return SMTPD_ACCEPT;
  for (i = 0; i < r->npushed; i++) {
    const tr_item *it = &r->p->items[r->pushed[i]];
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
  smtpd_tr_apply_reply(r, &d->rep);
  if (d->b == SMTPD_ABORT)
    r->abort_given = 1;
  return (smtpd_verdict)d->b;
}

/* take_effects - the next unused @effects directive: its flags, or -1. */
static long take_effects(tr_run *r) {
  size_t i;
  for (i = 0; i < r->npushed; i++) {
    const tr_item *it = &r->p->items[r->pushed[i]];
    if (it->type == IT_EFFECTS && !r->used[r->pushed[i]]) {
      r->used[r->pushed[i]] = 1;
      return (long)(unsigned)it->a;
    }
  }
  return -1;
}

/* host_after - after one of the host's callbacks: the session's user data
 * must still be the driver's; note a DEFER or an ABORT. */
static smtpd_verdict host_after(tr_run *r, smtpd_session *s, const char *what,
                                smtpd_verdict v) {
  if (smtpd_session_user_data(s) != (void *)r) {
    smtpd_session_set_user_data(s, r);
    smtpd_tr_fail(r, r->cur_line, NULL, what,
                  "the host's %s callback changed the "
                  "session's user data; with host callbacks it belongs to the "
                  "driver (use the ud argument, opts.user_data)",
                  what);
  }
  if (v == SMTPD_DEFER) {
    r->deferred = 1;
    r->hook_asked = 0;
  } else if (v == SMTPD_ABORT) {
    r->abort_given = 1;
  }
  return v;
}

/* HOST_DECIDE - host mode: call the host's decision callback NAME (accept
 * when it has none). */
#define HOST_DECIDE(r, s, what, name, ...)                                   \
  (paused_call((r), (what))                                                  \
       ? SMTPD_ACCEPT                                                        \
       : host_after((r), (s), (what),                                        \
                    (r)->hcb.name ? (r)->hcb.name((s), __VA_ARGS__,          \
                                                  (r)->opts->user_data)      \
                                  : SMTPD_ACCEPT))
/* HOST_DECIDE0 - the same for a callback without an argument. */
#define HOST_DECIDE0(r, s, what, name)                                       \
  (paused_call((r), (what))                                                  \
       ? SMTPD_ACCEPT                                                        \
       : host_after((r), (s), (what),                                        \
                    (r)->hcb.name ? (r)->hcb.name((s), (r)->opts->user_data) \
                                  : SMTPD_ACCEPT))
/* HOST_NOTIFY - host mode: pass a notification on. */
#define HOST_NOTIFY(r, s, what, name, ...)                                   \
  do {                                                                       \
    if ((r)->host && (r)->hcb.name) {                                        \
      (r)->hcb.name((s), __VA_ARGS__, (r)->opts->user_data);                 \
      (void)host_after((r), (s), (what), SMTPD_ACCEPT);                      \
    }                                                                        \
  } while (0)

/* ---- events -------------------------------------------------------------- */

static void ev_params(tr_tbuf *t, const smtpd_param *pa, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    smtpd_tr_tb_str(t, " ");
    smtpd_tr_tb_str(t, pa[i].keyword ? pa[i].keyword : "");
    if (pa[i].value) {
      smtpd_tr_tb_str(t, "=");
      smtpd_tr_tb_str(t, pa[i].value);
    }
  }
}

static smtpd_verdict cb_connect(smtpd_session *s, void *ud) {
  tr_run *r = ud;
  smtpd_tr_log_event(r, "connect");
  if (r->host)
    return HOST_DECIDE0(r, s, "connect", on_connect);
  return decide(r, EV_CONNECT);
}

static smtpd_verdict cb_helo(smtpd_session *s, const smtpd_helo *h,
                             void *ud) {
  tr_run *r = ud;
  char line[1200];
  tr_tbuf t;
  smtpd_tr_tb_init(&t, line, sizeof line);
  smtpd_tr_tb_str(&t, h->esmtp ? "ehlo " : "helo ");
  smtpd_tr_tb_str(&t, h->name ? h->name : "");
  smtpd_tr_log_event(r, line);
  if (r->host)
    return HOST_DECIDE(r, s, "helo", on_helo, h);
  return decide(r, EV_HELO);
}

static smtpd_verdict cb_mail(smtpd_session *s, const smtpd_mail *m,
                             void *ud) {
  tr_run *r = ud;
  char line[1200];
  tr_tbuf t;
  smtpd_tr_tb_init(&t, line, sizeof line);
  smtpd_tr_tb_str(&t, "mail <");
  smtpd_tr_tb_str(&t, m->address ? m->address : "");
  smtpd_tr_tb_str(&t, ">");
  ev_params(&t, m->params, m->nparams);
  smtpd_tr_log_event(r, line);
  if (r->host)
    return HOST_DECIDE(r, s, "mail", on_mail, m);
  return decide(r, EV_MAIL);
}

static smtpd_verdict cb_rcpt(smtpd_session *s, const smtpd_rcpt *rc,
                             void *ud) {
  tr_run *r = ud;
  char line[1200];
  tr_tbuf t;
  smtpd_tr_tb_init(&t, line, sizeof line);
  smtpd_tr_tb_str(&t, "rcpt <");
  smtpd_tr_tb_str(&t, rc->address ? rc->address : "");
  smtpd_tr_tb_str(&t, ">");
  ev_params(&t, rc->params, rc->nparams);
  smtpd_tr_log_event(r, line);
  if (r->host)
    return HOST_DECIDE(r, s, "rcpt", on_rcpt, rc);
  return decide(r, EV_RCPT);
}

static smtpd_verdict cb_data(smtpd_session *s, void *ud) {
  tr_run *r = ud;
  smtpd_tr_log_event(r, "data");
  r->body.len = 0;
  if (r->host)
    return HOST_DECIDE0(r, s, "data", on_data);
  return decide(r, EV_DATA);
}

static smtpd_verdict cb_body(smtpd_session *s, const uint8_t *data,
                             size_t len, void *ud) {
  tr_run *r = ud;
  if (paused_call(r, "body"))
    return SMTPD_ACCEPT;
  if (smtpd_tr_buf_add(r->mem, &r->body, data, len) < 0) {
    smtpd_tr_nomem(r);
    return SMTPD_ACCEPT;
  }
  if (r->host)
    return HOST_DECIDE(r, s, "body", on_body, data, len);
  return decide(r, EV_BODY);
}

/* message_done - the message's body is complete: check the size the
 * session reports against what on_body delivered and keep the body for
 * B: checks. */
static void message_done(tr_run *r, const smtpd_message *m) {
  tr_buf tmp;
  if (m->size != (uint64_t)r->body.len) {
    char exp[64], act[64];
    snprintf(exp, sizeof exp, "size=%lu", (unsigned long)r->body.len);
    snprintf(act, sizeof act, "size=%llu", (unsigned long long)m->size);
    smtpd_tr_fail(r, r->cur_line, exp, act,
                  "data-complete reports a size that "
                  "differs from the octets on_body delivered");
  }
  tmp = r->last_body;
  r->last_body = r->body;
  r->body = tmp;
  r->body.len = 0;
  r->have_last_body = 1;
}

static smtpd_verdict cb_data_complete(smtpd_session *s,
                                      const smtpd_message *m, void *ud) {
  tr_run *r = ud;
  char line[2048], num[32];
  tr_tbuf t;
  size_t i;
  smtpd_tr_tb_init(&t, line, sizeof line);
  snprintf(num, sizeof num, "%llu", (unsigned long long)m->size);
  smtpd_tr_tb_str(&t, "data-complete size=");
  smtpd_tr_tb_str(&t, num);
  smtpd_tr_tb_str(&t, " from=<");
  smtpd_tr_tb_str(&t, m->sender ? m->sender : "");
  smtpd_tr_tb_str(&t, "> to=");
  for (i = 0; i < m->nrecipients; i++) {
    smtpd_tr_tb_str(&t, i ? ",<" : "<");
    smtpd_tr_tb_str(&t, m->recipients[i] ? m->recipients[i] : "");
    smtpd_tr_tb_str(&t, ">");
  }
  smtpd_tr_log_event(r, line);
  message_done(r, m);
  if (r->host)
    return HOST_DECIDE(r, s, "data-complete", on_data_complete, m);
  return decide(r, EV_DATA_COMPLETE);
}

/* cb_data_complete_rcpt - SMTPD_OPT_REPLY_PER_RCPT: one decision per
 * recipient, index 0, 1, ... (the body is complete at index 0). */
static smtpd_verdict cb_data_complete_rcpt(smtpd_session *s,
                                           const smtpd_message *m,
                                           size_t index, void *ud) {
  tr_run *r = ud;
  char line[1200], num[32];
  tr_tbuf t;
  smtpd_tr_tb_init(&t, line, sizeof line);
  snprintf(num, sizeof num, "%lu <", (unsigned long)index);
  smtpd_tr_tb_str(&t, "data-complete-rcpt ");
  smtpd_tr_tb_str(&t, num);
  smtpd_tr_tb_str(&t, index < m->nrecipients && m->recipients[index]
                          ? m->recipients[index]
                          : "");
  smtpd_tr_tb_str(&t, ">");
  smtpd_tr_log_event(r, line);
  if (index == 0)
    message_done(r, m);
  if (r->host)
    return HOST_DECIDE(r, s, "data-complete-rcpt", on_data_complete_rcpt, m,
                       index);
  return decide(r, EV_DATA_COMPLETE_RCPT);
}

/* cb_command - a host-registered verb: "command VERB [ARG]"; scripted,
 * the next @effects, if any, is given to smtpd_session_set_effects. */
static smtpd_verdict cb_command(smtpd_session *s, const smtpd_command *c,
                                void *ud) {
  tr_run *r = ud;
  char line[1200];
  tr_tbuf t;
  long fx;
  smtpd_verdict v;
  smtpd_tr_tb_init(&t, line, sizeof line);
  smtpd_tr_tb_str(&t, "command ");
  smtpd_tr_tb_str(&t, c->verb ? c->verb : "");
  if (c->arg && c->arg[0]) {
    smtpd_tr_tb_str(&t, " ");
    smtpd_tr_tb_str(&t, c->arg);
  }
  smtpd_tr_log_event(r, line);
  if (r->host)
    return HOST_DECIDE(r, s, "command", on_command, c);
  fx = take_effects(r);
  v = decide(r, EV_COMMAND);
  if (fx >= 0 && smtpd_session_set_effects(s, (unsigned)fx) < 0)
    smtpd_tr_log_event(r, "effects-refused");
  return v;
}

static smtpd_verdict cb_vrfy(smtpd_session *s, const char *arg, void *ud) {
  tr_run *r = ud;
  char line[1200];
  tr_tbuf t;
  smtpd_tr_tb_init(&t, line, sizeof line);
  smtpd_tr_tb_str(&t, "vrfy ");
  smtpd_tr_tb_str(&t, arg ? arg : "");
  smtpd_tr_log_event(r, line);
  if (r->host)
    return HOST_DECIDE(r, s, "vrfy", on_vrfy, arg);
  return decide(r, EV_VRFY);
}

/* cb_xclient - "xclient NAME=... ADDR=..." with the attributes given;
 * decided by the host's on_xclient or scripted with @on xclient. */
static smtpd_verdict cb_xclient(smtpd_session *s, const smtpd_xclient *x,
                                void *ud) {
  tr_run *r = ud;
  const char *const names[] = {"NAME",  "ADDR",  "PORT",     "PROTO",
                               "HELO",  "LOGIN", "DESTADDR", "DESTPORT"};
  const char *const vals[] = {x->name, x->addr,  x->port,     x->proto,
                              x->helo, x->login, x->destaddr, x->destport};
  char line[1200];
  tr_tbuf t;
  size_t i;
  smtpd_tr_tb_init(&t, line, sizeof line);
  smtpd_tr_tb_str(&t, "xclient");
  for (i = 0; i < sizeof names / sizeof names[0]; i++)
    if (vals[i]) {
      smtpd_tr_tb_str(&t, " ");
      smtpd_tr_tb_str(&t, names[i]);
      smtpd_tr_tb_str(&t, "=");
      smtpd_tr_tb_str(&t, vals[i]);
    }
  smtpd_tr_log_event(r, line);
  if (r->host)
    return HOST_DECIDE(r, s, "xclient", on_xclient, x);
  return decide(r, EV_XCLIENT);
}

static void cb_rset(smtpd_session *s, void *ud) {
  tr_run *r = ud;
  smtpd_tr_log_event(r, "rset");
  if (r->host && r->hcb.on_rset) {
    r->hcb.on_rset(s, r->opts->user_data);
    (void)host_after(r, s, "rset", SMTPD_ACCEPT);
  }
}

static void cb_quit(smtpd_session *s, void *ud) {
  tr_run *r = ud;
  smtpd_tr_log_event(r, "quit");
  if (r->host && r->hcb.on_quit) {
    r->hcb.on_quit(s, r->opts->user_data);
    (void)host_after(r, s, "quit", SMTPD_ACCEPT);
  }
}

static smtpd_verdict cb_starttls(smtpd_session *s, void *ud) {
  tr_run *r = ud;
  smtpd_tr_log_event(r, "starttls");
  if (r->host)
    return HOST_DECIDE0(r, s, "starttls", on_starttls);
  return decide(r, EV_STARTTLS);
}

/* v1_starttls - a version-1 host's on_starttls: a notification fired
 * after the 220 was queued (the core calls it that way). */
typedef void (*tr_v1_notify)(smtpd_session *s, void *ud);
static void cb_starttls_v1(smtpd_session *s, void *ud) {
  tr_run *r = ud;
  smtpd_tr_log_event(r, "starttls");
  if (r->hcb.on_starttls) {
    tr_v1_notify f = (tr_v1_notify)(void (*)(void))r->hcb.on_starttls;
    f(s, r->opts->user_data);
    (void)host_after(r, s, "starttls", SMTPD_ACCEPT);
  }
}

static void auth_event(tr_run *r, const char *what,
                       const smtpd_auth_result *a) {
  char line[1200], num[16];
  tr_tbuf t;
  smtpd_tr_tb_init(&t, line, sizeof line);
  smtpd_tr_tb_str(&t, what);
  smtpd_tr_tb_str(&t, a->mechanism ? a->mechanism : "");
  snprintf(num, sizeof num, " %d ", a->code);
  smtpd_tr_tb_str(&t, num);
  smtpd_tr_tb_str(&t, a->authcid ? a->authcid : "");
  smtpd_tr_log_event(r, line);
}

static void cb_auth_ok(smtpd_session *s, const smtpd_auth_result *a,
                       void *ud) {
  tr_run *r = ud;
  auth_event(r, "auth-ok ", a);
  HOST_NOTIFY(r, s, "auth-ok", on_auth_ok, a);
}

static void cb_auth_fail(smtpd_session *s, const smtpd_auth_result *a,
                         void *ud) {
  tr_run *r = ud;
  auth_event(r, "auth-fail ", a);
  HOST_NOTIFY(r, s, "auth-fail", on_auth_fail, a);
}

static void cb_tls_required(smtpd_session *s, const char *cmd, void *ud) {
  tr_run *r = ud;
  char line[1200];
  tr_tbuf t;
  smtpd_tr_tb_init(&t, line, sizeof line);
  smtpd_tr_tb_str(&t, "tls-required ");
  smtpd_tr_tb_str(&t, cmd ? cmd : "");
  smtpd_tr_log_event(r, line);
  HOST_NOTIFY(r, s, "tls-required", on_tls_required, cmd);
}

static void cb_notice(smtpd_session *s, const smtpd_notice *n, void *ud) {
  tr_run *r = ud;
  char line[1200], num[16];
  const char *name = "unknown";
  tr_tbuf t;
  switch (n->type) {
  case SMTPD_NOTICE_PROTOCOL_ERROR: name = "protocol-error"; break;
  case SMTPD_NOTICE_SYNC_VIOLATION: name = "sync-violation"; break;
  case SMTPD_NOTICE_STARTTLS_DISCARD: name = "starttls-discard"; break;
  case SMTPD_NOTICE_HTTP_COMMAND: name = "http-command"; break;
  case SMTPD_NOTICE_MESSAGE_ABORTED: name = "message-aborted"; break;
  }
  smtpd_tr_tb_init(&t, line, sizeof line);
  smtpd_tr_tb_str(&t, "notice ");
  smtpd_tr_tb_str(&t, name);
  snprintf(num, sizeof num, " %d", n->code);
  smtpd_tr_tb_str(&t, num);
  if (n->command) {
    smtpd_tr_tb_str(&t, " ");
    smtpd_tr_tb_str(&t, n->command);
  }
  if (n->type == SMTPD_NOTICE_MESSAGE_ABORTED)
    r->body.len = 0;
  smtpd_tr_log_event(r, line);
  HOST_NOTIFY(r, s, "notice", on_notice, n);
}

static void cb_close(smtpd_session *s, smtpd_close_reason why, void *ud) {
  tr_run *r = ud;
  const char *name = "unknown";
  char line[64];
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
  case SMTPD_CLOSE_PROTOCOL: name = "protocol"; break;
  case SMTPD_CLOSE_PROXY: name = "proxy"; break;
  }
  snprintf(line, sizeof line, "close %s", name);
  smtpd_tr_log_event(r, line);
  HOST_NOTIFY(r, s, "close", on_close, why);
}

/* ---- the tables ---------------------------------------------------------- */

int smtpd_tr_host_callbacks(tr_run *r, const smtpd_callbacks *cb) {
  size_t size;
  if (cb->version == 0)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (cb->version > SMTPD_CALLBACKS_VERSION)
    return SMTPD_ERR_UNSUPPORTED;
  /* as smtpd_session_new: the members the caller's version had */
  size = smtpd_callbacks_size(cb->version);
  memset(&r->hcb, 0, sizeof r->hcb);
  memcpy(&r->hcb, cb, size);
  r->host = 1;
  return SMTPD_OK;
}

void smtpd_tr_callbacks(const tr_run *r, smtpd_callbacks *cb) {
  memset(cb, 0, sizeof *cb);
  cb->version = SMTPD_CALLBACKS_VERSION;
  cb->on_connect = cb_connect;
  cb->on_helo = cb_helo;
  cb->on_mail = cb_mail;
  cb->on_rcpt = cb_rcpt;
  cb->on_data = cb_data;
  cb->on_data_complete = cb_data_complete;
  cb->on_body = cb_body;
  cb->on_rset = cb_rset;
  cb->on_quit = cb_quit;
  cb->on_starttls = cb_starttls;
  cb->on_auth_ok = cb_auth_ok;
  cb->on_auth_fail = cb_auth_fail;
  cb->on_tls_required = cb_tls_required;
  cb->on_notice = cb_notice;
  cb->on_close = cb_close;
  cb->on_data_complete_rcpt = cb_data_complete_rcpt;
  /* Callbacks whose absence means something (VRFY answered 252, a
   * registered verb 502, XCLIENT refused) are installed only when the
   * transcript scripts them, or the host has them. */
  if (r->host) {
    cb->on_vrfy = r->hcb.on_vrfy ? cb_vrfy : NULL;
    cb->on_command = r->hcb.on_command ? cb_command : NULL;
    cb->on_xclient = r->hcb.on_xclient ? cb_xclient : NULL;
    if (r->hcb.version == 1) {
      /* the core calls a version-1 table the 0.1 way */
      cb->version = 1;
      cb->on_starttls =
          (smtpd_verdict(*)(smtpd_session *, void *))(void (*)(void))
              cb_starttls_v1;
    }
  } else {
    cb->on_vrfy = r->p->uses_vrfy ? cb_vrfy : NULL;
    cb->on_command = r->p->uses_command ? cb_command : NULL;
    cb->on_xclient = r->p->uses_xclient ? cb_xclient : NULL;
  }
}

smtpd_verdict smtpd_tr_sasl_verify(smtpd_session *s, const char *mech,
                             const char *authcid, const char *authzid,
                             const char *password, size_t password_len,
                             void *ctx) {
  const tr_run *r = ctx;
  const char *sp = strchr(r->sasl_cred, ' ');
  size_t ul = (size_t)(sp - r->sasl_cred);
  (void)s, (void)mech, (void)authzid;
  if (strlen(authcid) == ul && !memcmp(authcid, r->sasl_cred, ul) &&
      smtpd_consttime_equal(password, password_len, sp + 1, strlen(sp + 1)))
    return SMTPD_ACCEPT;
  return SMTPD_REJECT;
}
