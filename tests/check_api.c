/*
 * check_api.c - the 0.2 extension API through the public interface:
 * host-declared MAIL/RCPT parameters, host-registered verbs (answered,
 * deferred, with effects), per-recipient end-of-data replies, the
 * STARTTLS decision, the DISCONNECT and ABORT verdicts, the
 * end-of-session rule, getters, and a 0.1 (version 1) callbacks struct
 * compiled against a frozen copy of its declaration.
 *
 * Every conversation is run with the input whole and one octet at a
 * time; both must give the same replies and events.
 */
#include <check.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi/callbacks_v1.h"
#include "smtpd/smtpd.h"

/* ---- a host that logs what it sees and answers from a script --------- */

typedef struct host {
  smtpd_session *s;
  char log[8192];
  size_t loglen;
  /* scripted answers: verdict for the Nth call of a kind */
  smtpd_verdict rcpt_data[8];
  smtpd_verdict command;
  unsigned effects;
  const char *command_reply;
  smtpd_verdict starttls;
  smtpd_verdict rcpt;
  int ncalls_rcpt_data;
  uint8_t body[256]; /* what on_body delivered (sink_body) */
  size_t bodylen;
} host;

static void logf_(host *h, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(h->log + h->loglen, sizeof h->log - h->loglen, fmt, ap);
  va_end(ap);
  ck_assert(n > 0 && (size_t)n < sizeof h->log - h->loglen);
  h->loglen += (size_t)n;
}

static smtpd_verdict on_rcpt(smtpd_session *s, const smtpd_rcpt *r,
                             void *ud) {
  host *h = ud;
  size_t i;
  (void)s;
  logf_(h, "rcpt <%s>", r->address);
  for (i = 0; i < r->nparams; i++)
    logf_(h, " %s%s%s", r->params[i].keyword, r->params[i].value ? "=" : "",
          r->params[i].value ? r->params[i].value : "");
  logf_(h, "\n");
  return h->rcpt;
}

static smtpd_verdict on_mail(smtpd_session *s, const smtpd_mail *m,
                             void *ud) {
  host *h = ud;
  size_t i;
  (void)s;
  logf_(h, "mail <%s>", m->address);
  for (i = 0; i < m->nparams; i++)
    logf_(h, " %s%s%s", m->params[i].keyword, m->params[i].value ? "=" : "",
          m->params[i].value ? m->params[i].value : "");
  logf_(h, "\n");
  return SMTPD_ACCEPT;
}

static smtpd_verdict on_command(smtpd_session *s, const smtpd_command *c,
                                void *ud) {
  host *h = ud;
  logf_(h, "command %s [%s]\n", c->verb, c->arg);
  if (h->effects)
    ck_assert_int_eq(smtpd_session_set_effects(s, h->effects), SMTPD_OK);
  if (h->command_reply)
    ck_assert_int_eq(smtpd_session_set_reply(s, 250, "2.0.0",
                                             h->command_reply),
                     SMTPD_OK);
  return h->command;
}

static smtpd_verdict on_rcpt_data(smtpd_session *s, const smtpd_message *m,
                                  size_t i, void *ud) {
  host *h = ud;
  char text[64];
  smtpd_verdict v = h->rcpt_data[i];
  logf_(h, "rcpt-data %zu <%s> of %zu\n", i, m->recipients[i],
        m->nrecipients);
  h->ncalls_rcpt_data++;
  snprintf(text, sizeof text, "<%s> delivered", m->recipients[i]);
  if (v == SMTPD_ACCEPT)
    ck_assert_int_eq(smtpd_session_set_reply(s, 250, "2.1.5", text),
                     SMTPD_OK);
  return v;
}

static smtpd_verdict on_starttls(smtpd_session *s, void *ud) {
  host *h = ud;
  (void)s;
  logf_(h, "starttls\n");
  return h->starttls;
}

static void on_close(smtpd_session *s, smtpd_close_reason r, void *ud) {
  (void)s;
  logf_(ud, "close %d\n", (int)r);
}

static smtpd_callbacks callbacks(void) {
  smtpd_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_mail = on_mail;
  cb.on_rcpt = on_rcpt;
  cb.on_command = on_command;
  cb.on_data_complete_rcpt = on_rcpt_data;
  cb.on_starttls = on_starttls;
  cb.on_close = on_close;
  return cb;
}

static smtpd_config *config(void) {
  smtpd_config *c;
  ck_assert_int_eq(smtpd_config_new(&c, NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_hostname(c, "mx.example"), SMTPD_OK);
  return c;
}

/* Feed text (whole, or one octet per call when bytewise), consuming the
 * output as a client reads it, into out. Returns what feed last gave. */
static ptrdiff_t talk(host *h, const char *text, int bytewise, char *out,
                      size_t cap) {
  size_t len = strlen(text), off = 0, o = strlen(out);
  ptrdiff_t r = 0;
  while (off < len) {
    size_t n = bytewise ? 1 : len - off;
    const uint8_t *p;
    size_t k;
    r = smtpd_session_feed(h->s, text + off, n);
    if (r < 0)
      break;
    off += (size_t)r;
    k = smtpd_session_output(h->s, &p);
    ck_assert(o + k < cap);
    memcpy(out + o, p, k);
    o += k;
    out[o] = '\0';
    smtpd_session_consume(h->s, k);
    if (r == 0)
      break; /* paused or full: the caller resumes */
  }
  return r;
}

static void drain(host *h, char *out, size_t cap) {
  const uint8_t *p;
  size_t k = smtpd_session_output(h->s, &p), o = strlen(out);
  ck_assert(o + k < cap);
  memcpy(out + o, p, k);
  out[o + k] = '\0';
  smtpd_session_consume(h->s, k);
}

static void start(host *h, const smtpd_config *c, const smtpd_callbacks *cb,
                  char *out, size_t cap) {
  ck_assert_int_eq(smtpd_session_new(&h->s, c, cb, h), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_start(h->s), SMTPD_OK);
  out[0] = '\0';
  drain(h, out, cap);
}

/* ---- declared parameters ---------------------------------------------- */

static void run_params(int bytewise) {
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  host h;
  char out[4096];
  memset(&h, 0, sizeof h);
  ck_assert_int_eq(smtpd_config_add_param(c, SMTPD_PARAM_RCPT, "notify",
                                          SMTPD_PARAM_VALUE),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_config_add_param(c, SMTPD_PARAM_MAIL | SMTPD_PARAM_RCPT,
                                          "XFLAG", SMTPD_PARAM_NO_VALUE),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_config_add_param(c, SMTPD_PARAM_MAIL, "ENVID",
                                          SMTPD_PARAM_OPTIONAL_VALUE),
                   SMTPD_OK);
  start(&h, c, &cb, out, sizeof out);
  talk(&h,
       "EHLO c.example\r\n", bytewise, out, sizeof out);
  out[0] = '\0';
  talk(&h,
       "MAIL FROM:<a@c.example> ENVID=x1 XFLAG\r\n"
       "RCPT TO:<b@mx.example> NOTIFY=SUCCESS,FAILURE XFLAG\r\n"
       "RCPT TO:<c@mx.example> ORCPT=rfc822;c@mx.example\r\n"
       "RCPT TO:<d@mx.example> XFLAG=1\r\n"
       "RCPT TO:<e@mx.example> NOTIFY\r\n"
       "RCPT TO:<f@mx.example> ENVID=x\r\n",
       bytewise, out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.0 Ok\r\n"
                        "250 2.1.5 Ok\r\n"
                        "555 5.5.4 Unsupported option\r\n"
                        "501 5.5.4 Bad XFLAG parameter syntax\r\n"
                        "501 5.5.4 Bad NOTIFY parameter syntax\r\n"
                        "555 5.5.4 Unsupported option\r\n");
  ck_assert_str_eq(h.log, "mail <a@c.example> ENVID=x1 XFLAG\n"
                          "rcpt <b@mx.example> NOTIFY=SUCCESS,FAILURE XFLAG\n");
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}

START_TEST(test_declared_params) {
  run_params(0);
  run_params(1);
}
END_TEST

START_TEST(test_declare_errors) {
  smtpd_config *c = config();
  ck_assert_int_eq(smtpd_config_add_param(c, 0, "X", SMTPD_PARAM_VALUE),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_config_add_param(c, SMTPD_PARAM_RCPT, "-X",
                                          SMTPD_PARAM_VALUE),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_config_add_param(c, SMTPD_PARAM_RCPT, "A=B",
                                          SMTPD_PARAM_VALUE),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_config_add_command(c, "MAIL", 0),
                   SMTPD_ERR_INVALID_STATE);
  ck_assert_int_eq(smtpd_config_add_command(c, "starttls", 0),
                   SMTPD_ERR_INVALID_STATE);
  ck_assert_int_eq(smtpd_config_add_command(c, "X CLIENT", 0),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_config_add_command(c, "XAVERYLONGVERBNAME1", 0),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_config_add_command(c, "XCLIENT", 0x8000),
                   SMTPD_ERR_INVALID_ARGUMENT);
  smtpd_config_del(c);
}
END_TEST

/* ---- registered verbs ------------------------------------------------- */

static void run_command(int bytewise) {
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  host h;
  char out[4096];
  memset(&h, 0, sizeof h);
  ck_assert_int_eq(smtpd_config_add_command(
                       c, "xclient",
                       SMTPD_CMD_BEFORE_TLS | SMTPD_CMD_NO_MAIL |
                           SMTPD_CMD_ENDS_GROUP),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_config_add_command(c, "ETRN", SMTPD_CMD_NEEDS_HELO),
                   SMTPD_OK);
  start(&h, c, &cb, out, sizeof out);
  out[0] = '\0';
  /* answered by the host with its own reply */
  h.command = SMTPD_ACCEPT;
  h.command_reply = "Queue run started";
  talk(&h, "ETRN example.org\r\n", bytewise, out, sizeof out);
  ck_assert_str_eq(out, "503 5.5.1 Error: send HELO/EHLO first\r\n");
  out[0] = '\0';
  talk(&h, "EHLO c.example\r\n", bytewise, out, sizeof out);
  out[0] = '\0';
  talk(&h, "etrn example.org\r\n", bytewise, out, sizeof out);
  ck_assert_str_eq(out, "250 2.0.0 Queue run started\r\n");
  /* refused by the host: the default 550 */
  out[0] = '\0';
  h.command = SMTPD_REJECT;
  h.command_reply = NULL;
  talk(&h, "XCLIENT ADDR=192.0.2.7\r\n", bytewise, out, sizeof out);
  ck_assert_str_eq(out, "550 5.7.1 Command rejected\r\n");
  /* deferred, then resumed: nothing is read past it meanwhile */
  out[0] = '\0';
  h.command = SMTPD_DEFER;
  ck_assert_int_eq(talk(&h, "XCLIENT NAME=x.example\r\nNOOP\r\n", bytewise,
                        out, sizeof out),
                   0);
  ck_assert_str_eq(out, "");
  ck_assert(smtpd_session_is_paused(h.s));
  ck_assert(!smtpd_session_want_read(h.s));
  ck_assert(!smtpd_session_is_done(h.s));
  ck_assert_int_eq(smtpd_session_set_effects(h.s, SMTPD_EFFECT_REGREET |
                                                      SMTPD_EFFECT_RESET_HELO),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_session_resume(h.s, SMTPD_ACCEPT), SMTPD_OK);
  drain(&h, out, sizeof out);
  ck_assert_str_eq(out, "220 mx.example ESMTP\r\n");
  ck_assert_ptr_null(smtpd_session_helo(h.s)); /* must greet again */
  out[0] = '\0';
  talk(&h, "RSET\r\nMAIL FROM:<a@c.example>\r\n", bytewise, out, sizeof out);
  ck_assert_str_eq(out, "250 2.0.0 Ok\r\n"
                        "503 5.5.1 Error: send HELO/EHLO first\r\n");
  /* the flags: NO_MAIL inside a transaction */
  out[0] = '\0';
  talk(&h, "HELO c.example\r\n", bytewise, out, sizeof out);
  out[0] = '\0';
  talk(&h, "MAIL FROM:<a@c.example>\r\nXCLIENT ADDR=1\r\n", bytewise, out,
       sizeof out);
  ck_assert_str_eq(out, "250 2.1.0 Ok\r\n"
                        "503 5.5.1 Error: MAIL transaction in progress\r\n");
  /* an unknown verb is still 500 */
  out[0] = '\0';
  talk(&h, "XFORWARD NAME=x\r\n", bytewise, out, sizeof out);
  ck_assert_str_eq(out, "500 5.5.2 Error: command not recognized\r\n");
  ck_assert_str_eq(h.log, "command ETRN [example.org]\n"
                          "command XCLIENT [ADDR=192.0.2.7]\n"
                          "command XCLIENT [NAME=x.example]\n"
                          "mail <a@c.example>\n");
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}

START_TEST(test_registered_verb) {
  run_command(0);
  run_command(1);
}
END_TEST

START_TEST(test_registered_verb_without_handler) {
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  host h;
  char out[1024];
  memset(&h, 0, sizeof h);
  cb.on_command = NULL;
  ck_assert_int_eq(smtpd_config_add_command(c, "XCLIENT", SMTPD_CMD_BEFORE_TLS),
                   SMTPD_OK);
  start(&h, c, &cb, out, sizeof out);
  out[0] = '\0';
  talk(&h, "XCLIENT A=1\r\n", 0, out, sizeof out);
  ck_assert_str_eq(out, "502 5.5.1 Error: command not implemented\r\n");
  /* effects are only for a host command's decision */
  ck_assert_int_eq(smtpd_session_set_effects(h.s, SMTPD_EFFECT_REGREET),
                   SMTPD_ERR_INVALID_STATE);
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}
END_TEST

/* ---- one reply per recipient ------------------------------------------ */

static void run_per_rcpt(int bytewise) {
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  host h;
  char out[4096];
  memset(&h, 0, sizeof h);
  ck_assert_int_eq(smtpd_config_set_option(c, SMTPD_OPT_REPLY_PER_RCPT, 1),
                   SMTPD_OK);
  h.rcpt_data[0] = SMTPD_ACCEPT;
  h.rcpt_data[1] = SMTPD_DEFER;
  h.rcpt_data[2] = SMTPD_REJECT;
  start(&h, c, &cb, out, sizeof out);
  talk(&h, "HELO c.example\r\n", bytewise, out, sizeof out);
  talk(&h, "MAIL FROM:<a@c.example>\r\n", bytewise, out, sizeof out);
  talk(&h, "RCPT TO:<r1@mx.example>\r\nRCPT TO:<r2@mx.example>\r\n"
           "RCPT TO:<r3@mx.example>\r\n",
       bytewise, out, sizeof out);
  talk(&h, "DATA\r\n", bytewise, out, sizeof out);
  out[0] = '\0';
  ck_assert_int_eq(talk(&h, "Subject: x\r\n\r\nhi\r\n.\r\nNOOP\r\n", bytewise,
                        out, sizeof out),
                   0);
  /* the first is answered, the second awaits the host */
  ck_assert_str_eq(out, "250 2.1.5 <r1@mx.example> delivered\r\n");
  ck_assert(smtpd_session_is_paused(h.s));
  ck_assert_int_eq(h.ncalls_rcpt_data, 2);
  ck_assert_int_eq(smtpd_session_set_reply(h.s, 451, "4.2.0",
                                           "<r2@mx.example> mailbox busy"),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_session_resume(h.s, SMTPD_TEMPFAIL), SMTPD_OK);
  drain(&h, out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.5 <r1@mx.example> delivered\r\n"
                        "451 4.2.0 <r2@mx.example> mailbox busy\r\n"
                        "554 5.7.1 Message rejected\r\n");
  ck_assert(!smtpd_session_is_paused(h.s));
  ck_assert_uint_eq(smtpd_session_recipient_count(h.s), 0);
  out[0] = '\0';
  talk(&h, "NOOP\r\n", bytewise, out, sizeof out);
  ck_assert_str_eq(out, "250 2.0.0 Ok\r\n");
  ck_assert_int_eq(h.ncalls_rcpt_data, 3);
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}

START_TEST(test_per_rcpt_replies) {
  run_per_rcpt(0);
  run_per_rcpt(1);
}
END_TEST

/* A message the core refuses gets the refusal once per recipient. */
START_TEST(test_per_rcpt_refused_body) {
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  host h;
  char out[4096];
  memset(&h, 0, sizeof h);
  ck_assert_int_eq(smtpd_config_set_option(c, SMTPD_OPT_REPLY_PER_RCPT, 1),
                   SMTPD_OK);
  start(&h, c, &cb, out, sizeof out);
  talk(&h, "HELO c.example\r\n", 0, out, sizeof out);
  talk(&h, "MAIL FROM:<a@c.example>\r\n"
           "RCPT TO:<r1@mx.example>\r\nRCPT TO:<r2@mx.example>\r\nDATA\r\n",
       0, out, sizeof out);
  out[0] = '\0';
  talk(&h, "bare\nLF\r\n.\r\n", 0, out, sizeof out);
  ck_assert_str_eq(out,
                   "550 5.5.2 mx.example Error: bare <LF> received\r\n"
                   "550 5.5.2 mx.example Error: bare <LF> received\r\n");
  ck_assert_int_eq(h.ncalls_rcpt_data, 0);
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}
END_TEST

/* ---- STARTTLS decision ------------------------------------------------ */

START_TEST(test_starttls_decision) {
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  host h;
  char out[4096];
  memset(&h, 0, sizeof h);
  ck_assert_int_eq(smtpd_config_set_option(c, SMTPD_OPT_STARTTLS, 1),
                   SMTPD_OK);
  start(&h, c, &cb, out, sizeof out);
  out[0] = '\0';
  h.starttls = SMTPD_TEMPFAIL;
  talk(&h, "STARTTLS\r\n", 0, out, sizeof out);
  ck_assert_str_eq(out, "454 4.7.0 TLS not available due to local problem\r\n");
  ck_assert(!smtpd_session_is_tls_wait(h.s));
  out[0] = '\0';
  talk(&h, "NOOP\r\n", 0, out, sizeof out);
  ck_assert_str_eq(out, "250 2.0.0 Ok\r\n");
  out[0] = '\0';
  h.starttls = SMTPD_ACCEPT;
  talk(&h, "STARTTLS\r\nEHLO injected\r\n", 0, out, sizeof out);
  ck_assert_str_eq(out, "220 2.0.0 Ready to start TLS\r\n");
  ck_assert(smtpd_session_is_tls_wait(h.s));
  smtpd_session_del(h.s);
  /* switched off: 502, the host is not asked */
  ck_assert_int_eq(smtpd_config_set_option(c, SMTPD_OPT_STARTTLS, 0),
                   SMTPD_OK);
  memset(&h, 0, sizeof h);
  start(&h, c, &cb, out, sizeof out);
  out[0] = '\0';
  talk(&h, "STARTTLS\r\n", 0, out, sizeof out);
  ck_assert_str_eq(out, "502 5.5.1 Error: command not implemented\r\n");
  ck_assert_str_eq(h.log, "");
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}
END_TEST

/* ---- DISCONNECT and ABORT --------------------------------------------- */

START_TEST(test_disconnect_and_abort) {
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  host h;
  char out[4096];
  memset(&h, 0, sizeof h);
  start(&h, c, &cb, out, sizeof out);
  out[0] = '\0';
  h.rcpt = SMTPD_DISCONNECT;
  talk(&h, "HELO c.example\r\n", 0, out, sizeof out);
  talk(&h, "MAIL FROM:<a@c.example>\r\n", 0, out, sizeof out);
  out[0] = '\0';
  ck_assert_int_eq(talk(&h, "RCPT TO:<b@mx.example>\r\nNOOP\r\n", 0, out,
                        sizeof out),
                   (ptrdiff_t)strlen("RCPT TO:<b@mx.example>\r\nNOOP\r\n"));
  ck_assert_str_eq(out, "421 4.3.2 mx.example Service shutting down\r\n");
  ck_assert(smtpd_session_is_closing(h.s));
  ck_assert(smtpd_session_is_done(h.s));
  ck_assert(strstr(h.log, "close 8\n") != NULL); /* SMTPD_CLOSE_HOST */
  smtpd_session_del(h.s);

  /* ABORT: the same 421 and on_close, and feed fails */
  memset(&h, 0, sizeof h);
  start(&h, c, &cb, out, sizeof out);
  h.rcpt = SMTPD_ABORT;
  talk(&h, "HELO c.example\r\n", 0, out, sizeof out);
  talk(&h, "MAIL FROM:<a@c.example>\r\n", 0, out, sizeof out);
  ck_assert_int_eq(smtpd_session_feed(h.s, "RCPT TO:<b@mx.example>\r\n", 24),
                   SMTPD_ERR_CALLBACK_FAILURE);
  ck_assert(smtpd_is_fatal(SMTPD_ERR_CALLBACK_FAILURE));
  ck_assert(strstr(h.log, "close 8\n") != NULL);
  /* the 421 is still there to write; done once it is */
  ck_assert(smtpd_session_want_write(h.s));
  ck_assert(!smtpd_session_want_read(h.s));
  ck_assert(!smtpd_session_is_done(h.s));
  out[0] = '\0';
  drain(&h, out, sizeof out);
  ck_assert_str_eq(out, "421 4.3.2 mx.example Service shutting down\r\n");
  ck_assert(smtpd_session_is_done(h.s));
  ck_assert_int_eq(smtpd_session_feed(h.s, "NOOP\r\n", 6),
                   SMTPD_ERR_CALLBACK_FAILURE);
  smtpd_session_del(h.s);

  /* ABORT through resume */
  memset(&h, 0, sizeof h);
  start(&h, c, &cb, out, sizeof out);
  h.rcpt = SMTPD_DEFER;
  talk(&h, "HELO c.example\r\n", 0, out, sizeof out);
  talk(&h, "MAIL FROM:<a@c.example>\r\nRCPT TO:<b@mx.example>\r\n", 0, out,
       sizeof out);
  ck_assert(smtpd_session_is_paused(h.s));
  ck_assert_int_eq(smtpd_session_resume(h.s, SMTPD_ABORT),
                   SMTPD_ERR_CALLBACK_FAILURE);
  drain(&h, out, sizeof out);
  ck_assert(smtpd_session_is_done(h.s));
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}
END_TEST

/* ---- the end-of-session rule ------------------------------------------ */

START_TEST(test_end_of_session_rule) {
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  host h;
  char out[4096];
  const uint8_t *p;
  memset(&h, 0, sizeof h);
  h.rcpt = SMTPD_DEFER;
  ck_assert_int_eq(smtpd_session_new(&h.s, c, &cb, &h), SMTPD_OK);
  ck_assert(!smtpd_session_is_done(h.s)); /* not started */
  ck_assert_int_eq(smtpd_session_start(h.s), SMTPD_OK);
  out[0] = '\0';
  drain(&h, out, sizeof out);
  talk(&h, "HELO c.example\r\n", 0, out, sizeof out);
  talk(&h, "MAIL FROM:<a@c.example>\r\nRCPT TO:<b@mx.example>\r\n", 0, out,
       sizeof out);
  /* paused: wants neither to read nor to write, and is not over */
  ck_assert(smtpd_session_is_paused(h.s));
  ck_assert(!smtpd_session_want_read(h.s));
  ck_assert(!smtpd_session_want_write(h.s));
  ck_assert(!smtpd_session_is_done(h.s));
  ck_assert_int_eq(smtpd_session_resume(h.s, SMTPD_ACCEPT), SMTPD_OK);
  ck_assert(!smtpd_session_is_done(h.s));
  drain(&h, out, sizeof out);
  /* closing: done only once the last reply was consumed */
  ck_assert_int_eq(smtpd_session_feed(h.s, "QUIT\r\n", 6), 6);
  ck_assert(smtpd_session_is_closing(h.s));
  ck_assert(!smtpd_session_is_done(h.s));
  ck_assert_uint_eq(smtpd_session_output(h.s, &p), 15);
  ck_assert_int_eq(smtpd_session_consume(h.s, 10), SMTPD_OK);
  ck_assert(!smtpd_session_is_done(h.s));
  ck_assert_int_eq(smtpd_session_consume(h.s, 5), SMTPD_OK);
  ck_assert(smtpd_session_is_done(h.s));
  smtpd_session_del(h.s);
  /* a session waiting for its TLS handshake is not over */
  ck_assert_int_eq(smtpd_session_new(&h.s, c, &cb, &h), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_set_implicit_tls(h.s), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_start(h.s), SMTPD_OK);
  ck_assert(smtpd_session_is_tls_wait(h.s));
  ck_assert(!smtpd_session_is_done(h.s));
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}
END_TEST

/* ---- getters ---------------------------------------------------------- */

START_TEST(test_getters) {
  smtpd_config *c = config();
  int on = 7;
  uint64_t v = 7;
  ck_assert_int_eq(smtpd_config_get_option(c, SMTPD_OPT_STARTTLS, &on),
                   SMTPD_OK);
  ck_assert_int_eq(on, 0);
  ck_assert_int_eq(smtpd_config_get_option(c, SMTPD_OPT_PIPELINING, &on),
                   SMTPD_OK);
  ck_assert_int_eq(on, 1);
  on = 7;
  ck_assert_int_eq(smtpd_config_get_option(c, SMTPD_OPT_COUNT_, &on),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(on, 7);
  ck_assert_int_eq(smtpd_config_get_option(NULL, SMTPD_OPT_SIZE, &on),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_config_get_limit(c, SMTPD_LIMIT_COMMAND_LINE, &v),
                   SMTPD_OK);
  ck_assert_uint_eq(v, 512);
  ck_assert_int_eq(smtpd_config_set_limit(c, SMTPD_LIMIT_MESSAGE_SIZE, 0),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_config_get_limit(c, SMTPD_LIMIT_MESSAGE_SIZE, &v),
                   SMTPD_OK);
  ck_assert_uint_eq(v, 0); /* unlimited, and told apart from an error */
  ck_assert_int_eq(smtpd_config_get_limit(c, SMTPD_LIMIT_COUNT_, &v),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_str_eq(smtpd_strerror(SMTPD_ERR_UNSUPPORTED),
                   "not supported by this build or version");
  ck_assert_str_ne(smtpd_strerror(SMTPD_RESULT_TLS_AGAIN), "unknown error");
  ck_assert_str_ne(smtpd_strerror(SMTPD_RESULT_TRANSCRIPT_MISMATCH),
                   smtpd_strerror(SMTPD_RESULT_TLS_AGAIN));
  smtpd_config_del(c);
}
END_TEST

/* ---- a 0.1 program: version-1 callbacks ------------------------------- */

typedef struct v1host {
  int starttls, rcpts;
  size_t out_at_starttls;
  smtpd_session *s;
} v1host;

static int v1_rcpt(smtpd_session *s, const smtpd_rcpt *r, void *ud) {
  v1host *h = ud;
  h->rcpts++;
  if (!strcmp(r->address, "nobody@mx.example")) {
    smtpd_session_set_reply(s, 550, "5.1.1", "No such user");
    return SMTPD_REJECT;
  }
  return SMTPD_ACCEPT;
}

static void v1_starttls(smtpd_session *s, void *ud) {
  v1host *h = ud;
  const uint8_t *p;
  /* a notification: the 220 is already queued */
  h->starttls++;
  h->out_at_starttls = smtpd_session_output(s, &p);
}

START_TEST(test_version1_callbacks) {
  smtpd_config *c = config();
  smtpd_callbacks_v1 v1;
  v1host vh;
  host h;
  char out[4096];
  memset(&v1, 0, sizeof v1);
  memset(&vh, 0, sizeof vh);
  memset(&h, 0, sizeof h);
  v1.version = 1;
  v1.on_rcpt = v1_rcpt;
  v1.on_starttls = v1_starttls;
  ck_assert_int_eq(smtpd_config_set_option(c, SMTPD_OPT_STARTTLS, 1),
                   SMTPD_OK);
  /* what a 0.1 program passes: its own, smaller struct */
  ck_assert_int_eq(smtpd_session_new(&h.s, c, (const smtpd_callbacks *)&v1,
                                     &vh),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_session_start(h.s), SMTPD_OK);
  out[0] = '\0';
  drain(&h, out, sizeof out);
  out[0] = '\0';
  talk(&h, "HELO c.example\r\n", 0, out, sizeof out);
  out[0] = '\0';
  talk(&h, "MAIL FROM:<a@c.example>\r\nRCPT TO:<nobody@mx.example>\r\n"
           "RCPT TO:<b@mx.example>\r\nRSET\r\n",
       0, out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n"
                        "250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n");
  ck_assert_int_eq(vh.rcpts, 2);
  out[0] = '\0';
  talk(&h, "STARTTLS\r\n", 0, out, sizeof out);
  ck_assert_str_eq(out, "220 2.0.0 Ready to start TLS\r\n");
  ck_assert_int_eq(vh.starttls, 1);
  ck_assert_uint_eq(vh.out_at_starttls, 30);
  ck_assert(smtpd_session_is_tls_wait(h.s));
  smtpd_session_del(h.s);
  /* a version newer than the library's is refused */
  v1.version = SMTPD_CALLBACKS_VERSION + 1;
  h.s = NULL;
  ck_assert_int_eq(smtpd_session_new(&h.s, c, (const smtpd_callbacks *)&v1,
                                     &vh),
                   SMTPD_ERR_UNSUPPORTED);
  ck_assert_ptr_null(h.s);
  smtpd_config_del(c);
}
END_TEST


/* ---- XCLIENT ----------------------------------------------------------- */

static smtpd_verdict on_xclient(smtpd_session *s, const smtpd_xclient *x,
                                void *ud) {
  host *h = ud;
  (void)s;
  logf_(h, "xclient name=%s addr=%s port=%s helo=%s login=%s\n",
        x->name ? x->name : "-", x->addr ? x->addr : "-",
        x->port ? x->port : "-", x->helo ? x->helo : "-",
        x->login ? x->login : "-");
  return h->command;
}

START_TEST(test_xclient) {
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  host h;
  char out[4096];
  int bytewise;
  ck_assert_int_eq(smtpd_config_set_option(c, SMTPD_OPT_XCLIENT, 1), SMTPD_OK);
  cb.on_xclient = on_xclient;
  for (bytewise = 0; bytewise < 2; bytewise++) {
    memset(&h, 0, sizeof h);
    start(&h, c, &cb, out, sizeof out);
    ck_assert_int_eq(smtpd_session_set_client(h.s, "10.0.0.1", NULL),
                     SMTPD_OK);
    talk(&h, "EHLO proxy.example\r\n", bytewise, out, sizeof out);
    ck_assert(strstr(out, "XCLIENT NAME ADDR PORT PROTO HELO LOGIN "
                          "DESTADDR DESTPORT\r\n") != NULL);
    /* an untrusted client: the default refusal */
    out[0] = '\0';
    h.command = SMTPD_REJECT;
    talk(&h, "XCLIENT ADDR=192.0.2.9\r\n", bytewise, out, sizeof out);
    ck_assert_str_eq(out, "550 5.7.0 Error: insufficient authorization\r\n");
    ck_assert_str_eq(smtpd_session_client_addr(h.s), "10.0.0.1");
    /* malformed: unknown attribute, bad xtext, bad address */
    out[0] = '\0';
    talk(&h, "XCLIENT FOO=1\r\n", bytewise, out, sizeof out);
    talk(&h, "XCLIENT NAME=a+zz\r\n", bytewise, out, sizeof out);
    talk(&h, "XCLIENT ADDR=1.2.3\r\n", bytewise, out, sizeof out);
    ck_assert_str_eq(out, "501 5.5.4 Error: bad XCLIENT attribute name\r\n"
                          "501 5.5.4 Error: bad XCLIENT attribute value\r\n"
                          "501 5.5.4 Error: bad XCLIENT ADDR value\r\n");
    /* trusted: the session takes the client and greets again */
    out[0] = '\0';
    h.command = SMTPD_ACCEPT;
    talk(&h,
         "XCLIENT NAME=client.example ADDR=IPV6:2001:db8::7 PORT=4711 "
         "HELO=c+2Eexample LOGIN=[UNAVAILABLE] PROTO=ESMTP\r\n",
         bytewise, out, sizeof out);
    ck_assert_str_eq(out, "220 mx.example ESMTP\r\n");
    ck_assert_str_eq(smtpd_session_client_addr(h.s), "2001:db8::7");
    ck_assert_str_eq(smtpd_session_client_rdns(h.s), "client.example");
    ck_assert_uint_eq(smtpd_session_client_port(h.s), 4711);
    ck_assert_ptr_null(smtpd_session_auth_user(h.s));
    ck_assert_str_eq(smtpd_session_protocol(h.s), "ESMTP");
    /* inside a transaction: 503 */
    out[0] = '\0';
    talk(&h, "EHLO c.example\r\n", bytewise, out, sizeof out);
    out[0] = '\0';
    talk(&h, "MAIL FROM:<a@c.example>\r\nXCLIENT ADDR=192.0.2.1\r\n",
         bytewise, out, sizeof out);
    ck_assert_str_eq(out, "250 2.1.0 Ok\r\n"
                          "503 5.5.1 Error: MAIL transaction in progress\r\n");
    ck_assert(strstr(h.log, "xclient name=client.example addr=2001:db8::7 "
                            "port=4711 helo=c.example login=[UNAVAILABLE]\n"));
    smtpd_session_del(h.s);
  }
  /* without on_xclient every XCLIENT is refused */
  cb.on_xclient = NULL;
  memset(&h, 0, sizeof h);
  start(&h, c, &cb, out, sizeof out);
  out[0] = '\0';
  talk(&h, "XCLIENT ADDR=192.0.2.9\r\n", 0, out, sizeof out);
  ck_assert_str_eq(out, "550 5.7.0 Error: insufficient authorization\r\n");
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}
END_TEST

/* ---- PROXY protocol ---------------------------------------------------- */

static const uint8_t v2_ipv4[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    0x21, 0x11, 0x00, 0x0c, 192,  0,    2,    33,   198,  51,   100,  7,
    0x1f, 0x90, 0x00, 0x19};

/* RFC 5321 4.5.3.1.5: the greeting line fits in 512 octets, however the
 * hostname (up to 255) and banner (up to 400) are combined. */
START_TEST(test_greeting_bound) {
  smtpd_config *c;
  smtpd_session *s;
  char host[256], banner[401];
  const uint8_t *o;
  size_t n;
  ck_assert_int_eq(smtpd_config_new(&c, NULL), SMTPD_OK);
  memset(host, 'h', 255);
  host[255] = '\0';
  memset(banner, 'b', 400);
  banner[400] = '\0';
  ck_assert_int_eq(smtpd_config_set_hostname(c, host), SMTPD_OK);
  /* "220 " 255 " " 250 CRLF = 512 */
  ck_assert_int_eq(smtpd_config_set_banner(c, banner),
                   SMTPD_ERR_INVALID_ARGUMENT);
  banner[251] = '\0';
  ck_assert_int_eq(smtpd_config_set_banner(c, banner),
                   SMTPD_ERR_INVALID_ARGUMENT);
  banner[250] = '\0';
  ck_assert_int_eq(smtpd_config_set_banner(c, banner), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_new(&s, c, NULL, NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_start(s), SMTPD_OK);
  n = smtpd_session_output(s, &o);
  ck_assert_uint_eq(n, 512);
  ck_assert(!memcmp(o, "220 hhh", 7) && !memcmp(o + 510, "\r\n", 2));
  smtpd_session_del(s);
  /* the other order: a long banner leaves less room for the hostname */
  ck_assert_int_eq(smtpd_config_set_hostname(c, "mx.example"), SMTPD_OK);
  memset(banner, 'b', 400);
  banner[400] = '\0';
  ck_assert_int_eq(smtpd_config_set_banner(c, banner), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_hostname(c, host),
                   SMTPD_ERR_INVALID_ARGUMENT);
  host[105] = '\0'; /* 4 + 105 + 1 + 400 + 2 = 512 */
  ck_assert_int_eq(smtpd_config_set_hostname(c, host), SMTPD_OK);
  host[105] = 'h';
  host[106] = '\0';
  ck_assert_int_eq(smtpd_config_set_hostname(c, host),
                   SMTPD_ERR_INVALID_ARGUMENT);
  smtpd_config_del(c);
}
END_TEST

START_TEST(test_proxy_parse) {
  smtpd_proxy_info pi;
  const char *v1 = "PROXY TCP4 192.0.2.7 198.51.100.1 40001 25\r\n";
  size_t n = strlen(v1), i;
  uint8_t big[1100];
  /* complete headers, and every prefix of them asks for more */
  ck_assert_int_eq(smtpd_proxy_parse(v1, n, &pi), (ptrdiff_t)n);
  ck_assert_str_eq(pi.src_addr, "192.0.2.7");
  ck_assert_uint_eq(pi.src_port, 40001);
  ck_assert_uint_eq(pi.dst_port, 25);
  for (i = 0; i < n; i++)
    ck_assert_int_eq(smtpd_proxy_parse(v1, i, &pi), 0);
  ck_assert_int_eq(smtpd_proxy_parse(v2_ipv4, sizeof v2_ipv4, &pi),
                   (ptrdiff_t)sizeof v2_ipv4);
  ck_assert_int_eq(pi.version, 2);
  ck_assert_str_eq(pi.src_addr, "192.0.2.33");
  ck_assert_str_eq(pi.dst_addr, "198.51.100.7");
  ck_assert_uint_eq(pi.src_port, 8080);
  for (i = 0; i < sizeof v2_ipv4; i++)
    ck_assert_int_eq(smtpd_proxy_parse(v2_ipv4, i, &pi), 0);
  /* the header's length only: what follows is the client's */
  ck_assert_int_eq(smtpd_proxy_parse("PROXY UNKNOWN\r\nEHLO x\r\n", 23, &pi),
                   15);
  ck_assert(pi.local);
  /* malformed */
  {
    static const char *const bad[] = {
        "EHLO x\r\n",
        "PROXY TCP5 192.0.2.7 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.777 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 65536\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
        "PROXY TCP4 192.0.2.7  198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n",
        "PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",
        "proxy TCP4 192.0.2.7 198.51.100.1 1 2\r\n"};
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
      ck_assert_msg(smtpd_proxy_parse(bad[i], strlen(bad[i]), &pi) ==
                        SMTPD_ERR_INVALID_ARGUMENT,
                    "accepted %s", bad[i]);
  }
  /* a v1 line with no end within 107 octets */
  memset(big, 'x', sizeof big);
  memcpy(big, "PROXY TCP4 ", 11);
  ck_assert_int_eq(smtpd_proxy_parse(big, 107, &pi),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_proxy_parse(big, 106, &pi), 0);
  /* 107 octets is the limit, CRLF included: 108 is refused whole too */
  memset(big, 'x', sizeof big);
  memcpy(big, "PROXY UNKNOWN ", 14);
  big[105] = '\r', big[106] = '\n';
  ck_assert_int_eq(smtpd_proxy_parse(big, 107, &pi), 107);
  big[105] = 'x', big[106] = '\r', big[107] = '\n';
  ck_assert_int_eq(smtpd_proxy_parse(big, 108, &pi),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_proxy_parse(big, 107, &pi),
                   SMTPD_ERR_INVALID_ARGUMENT);
  /* no octets yet, even through a NULL pointer: more is needed */
  ck_assert_int_eq(smtpd_proxy_parse(NULL, 0, &pi), 0);
  ck_assert_int_eq(smtpd_proxy_parse(NULL, 1, &pi),
                   SMTPD_ERR_INVALID_ARGUMENT);
  /* v2: a length beyond the bound, a bad version, too short for IPv4 */
  memcpy(big, v2_ipv4, sizeof v2_ipv4);
  big[14] = 0x04, big[15] = 0x01; /* 1025 */
  ck_assert_int_eq(smtpd_proxy_parse(big, 16, &pi),
                   SMTPD_ERR_INVALID_ARGUMENT);
  big[14] = 0x00, big[15] = 0x0c, big[12] = 0x31;
  ck_assert_int_eq(smtpd_proxy_parse(big, sizeof v2_ipv4, &pi),
                   SMTPD_ERR_INVALID_ARGUMENT);
  big[12] = 0x21, big[15] = 0x08;
  ck_assert_int_eq(smtpd_proxy_parse(big, 24, &pi),
                   SMTPD_ERR_INVALID_ARGUMENT);
  /* v2 LOCAL: no address */
  big[12] = 0x20, big[15] = 0x00;
  ck_assert_int_eq(smtpd_proxy_parse(big, 16, &pi), 16);
  ck_assert(pi.local);
}
END_TEST

START_TEST(test_proxy_session) {
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  host h;
  char out[1024];
  const uint8_t *p;
  size_t split;
  /* the header split at every offset; the client talks after the
   * greeting (before it would be an early talker) */
  for (split = 1; split <= sizeof v2_ipv4; split++) {
    uint8_t in[64];
    size_t off = 0, len = sizeof v2_ipv4 + 6;
    memcpy(in, v2_ipv4, sizeof v2_ipv4);
    memcpy(in + sizeof v2_ipv4, "NOOP\r\n", 6);
    memset(&h, 0, sizeof h);
    ck_assert_int_eq(smtpd_session_new(&h.s, c, &cb, &h), SMTPD_OK);
    ck_assert_int_eq(smtpd_session_set_proxy(h.s), SMTPD_OK);
    ck_assert_int_eq(smtpd_session_set_implicit_tls(h.s),
                     SMTPD_ERR_INVALID_STATE);
    ck_assert_int_eq(smtpd_session_start(h.s), SMTPD_OK);
    ck_assert_uint_eq(smtpd_session_output(h.s, &p), 0); /* no greeting */
    ck_assert_int_eq(smtpd_session_feed(h.s, in, split), (ptrdiff_t)split);
    off = split;
    if (off < sizeof v2_ipv4)
      ck_assert_int_eq(smtpd_session_feed(h.s, in + off,
                                          sizeof v2_ipv4 - off),
                       (ptrdiff_t)(sizeof v2_ipv4 - off));
    out[0] = '\0';
    drain(&h, out, sizeof out);
    ck_assert_str_eq(out, "220 mx.example ESMTP\r\n");
    ck_assert_str_eq(smtpd_session_client_addr(h.s), "192.0.2.33");
    ck_assert_uint_eq(smtpd_session_client_port(h.s), 8080);
    ck_assert_int_eq(smtpd_session_feed(h.s, in + sizeof v2_ipv4,
                                        len - sizeof v2_ipv4),
                     6);
    out[0] = '\0';
    drain(&h, out, sizeof out);
    ck_assert_str_eq(out, "250 2.0.0 Ok\r\n");
    smtpd_session_del(h.s);
  }
  /* garbage instead of a header: closed, nothing written, input bounded */
  memset(&h, 0, sizeof h);
  ck_assert_int_eq(smtpd_session_new(&h.s, c, &cb, &h), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_set_proxy(h.s), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_start(h.s), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_feed(h.s, "GET / HTTP/1.0\r\n", 16), 16);
  ck_assert(smtpd_session_is_done(h.s));
  ck_assert_uint_eq(smtpd_session_output(h.s, &p), 0);
  ck_assert(strstr(h.log, "close 11\n") != NULL); /* SMTPD_CLOSE_PROXY */
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}
END_TEST

/* ---- BDAT: a binary body, pipelined in chunks, at every split ---------- */

static smtpd_verdict sink_body(smtpd_session *s, const uint8_t *d, size_t n,
                               void *ud) {
  host *h = ud;
  (void)s;
  ck_assert(h->bodylen + n <= sizeof h->body);
  memcpy(h->body + h->bodylen, d, n);
  h->bodylen += n;
  return SMTPD_ACCEPT;
}

START_TEST(test_bdat_binary_every_split) {
  static const uint8_t body1[] = "a\0b\rc\nd\r\n.\r\n";
  static const uint8_t body2[] = "\r\n.\r\nQUIT\r\n\0\xff";
  smtpd_config *c = config();
  smtpd_callbacks cb = callbacks();
  uint8_t in[512];
  size_t n = 0, split;
  char hdr[64];
  ck_assert_int_eq(smtpd_config_set_option(c, SMTPD_OPT_CHUNKING, 1), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_option(c, SMTPD_OPT_BINARYMIME, 1),
                   SMTPD_OK);
  cb.on_body = sink_body;
#define PUT(p, l) (memcpy(in + n, p, l), n += l)
  {
    const char *cmds = "MAIL FROM:<a@c.example> BODY=BINARYMIME\r\n"
                       "RCPT TO:<b@mx.example>\r\n";
    PUT(cmds, strlen(cmds));
  }
  snprintf(hdr, sizeof hdr, "BDAT %zu\r\n", sizeof body1 - 1);
  PUT(hdr, strlen(hdr));
  PUT(body1, sizeof body1 - 1);
  snprintf(hdr, sizeof hdr, "BDAT %zu LAST\r\n", sizeof body2 - 1);
  PUT(hdr, strlen(hdr));
  PUT(body2, sizeof body2 - 1);
  PUT("RSET\r\n", 6);
#undef PUT
  for (split = 1; split <= n; split++) {
    host h;
    char out[1024];
    size_t off = 0;
    memset(&h, 0, sizeof h);
    start(&h, c, &cb, out, sizeof out);
    talk(&h, "EHLO c.example\r\n", 0, out, sizeof out);
    out[0] = '\0';
    while (off < n) {
      size_t k = n - off < split ? n - off : split;
      ck_assert_int_eq(smtpd_session_feed(h.s, in + off, k), (ptrdiff_t)k);
      off += k;
    }
    drain(&h, out, sizeof out);
    ck_assert_str_eq(out, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                          "250 2.0.0 Ok: 12 octets received\r\n"
                          "250 2.0.0 Ok: queued\r\n250 2.0.0 Ok\r\n");
    ck_assert_uint_eq(h.bodylen, sizeof body1 - 1 + sizeof body2 - 1);
    ck_assert(!memcmp(h.body, body1, sizeof body1 - 1));
    ck_assert(!memcmp(h.body + sizeof body1 - 1, body2, sizeof body2 - 1));
    smtpd_session_del(h.s);
  }
  smtpd_config_del(c);
}
END_TEST

/* A 0.2 program's callbacks (version 2) end before on_xclient: the
 * library must not read past them (ASan sees an over-read of this exact
 * allocation), and XCLIENT is then refused as without a callback. */
START_TEST(test_version2_callbacks_exact_size) {
  smtpd_config *c = config();
  size_t n = smtpd_callbacks_size(2);
  smtpd_callbacks full;
  void *cb2;
  host h;
  char out[1024];
  ck_assert_uint_eq(n, offsetof(smtpd_callbacks, on_xclient));
  ck_assert_uint_eq(smtpd_callbacks_size(1),
                    offsetof(smtpd_callbacks, on_command));
  ck_assert_uint_eq(smtpd_callbacks_size(3), sizeof(smtpd_callbacks));
  ck_assert_uint_eq(smtpd_callbacks_size(4), 0);
  memset(&full, 0, sizeof full);
  full.version = 2;
  full.on_rcpt = on_rcpt;
  cb2 = malloc(n);
  ck_assert_ptr_nonnull(cb2);
  memcpy(cb2, &full, n);
  ck_assert_int_eq(smtpd_config_set_option(c, SMTPD_OPT_XCLIENT, 1), SMTPD_OK);
  memset(&h, 0, sizeof h);
  start(&h, c, (const smtpd_callbacks *)cb2, out, sizeof out);
  free(cb2); /* copied: the session no longer needs it */
  out[0] = '\0';
  talk(&h, "XCLIENT ADDR=192.0.2.1\r\n", 0, out, sizeof out);
  ck_assert_str_eq(out, "550 5.7.0 Error: insufficient authorization\r\n");
  smtpd_session_del(h.s);
  smtpd_config_del(c);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("api");
  TCase *tc = tcase_create("extensions");
  tcase_add_test(tc, test_declared_params);
  tcase_add_test(tc, test_declare_errors);
  tcase_add_test(tc, test_registered_verb);
  tcase_add_test(tc, test_registered_verb_without_handler);
  tcase_add_test(tc, test_per_rcpt_replies);
  tcase_add_test(tc, test_per_rcpt_refused_body);
  tcase_add_test(tc, test_starttls_decision);
  tcase_add_test(tc, test_disconnect_and_abort);
  tcase_add_test(tc, test_end_of_session_rule);
  tcase_add_test(tc, test_getters);
  tcase_add_test(tc, test_version1_callbacks);
  tcase_add_test(tc, test_xclient);
  tcase_add_test(tc, test_greeting_bound);
  tcase_add_test(tc, test_proxy_parse);
  tcase_add_test(tc, test_proxy_session);
  tcase_add_test(tc, test_bdat_binary_every_split);
  tcase_add_test(tc, test_version2_callbacks_exact_size);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  int failed;
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
