/*
 * policy.c - the policy's callbacks (see policy.h).
 *
 *   on_mail           blocked sender domains; the size the client declares
 *   on_rcpt           the allow-list; directory recipients deferred
 *   on_data_complete  the real size; the queue id in the reply
 */
#include <stdio.h>
#include <string.h>

#include "policy.h"

/* ieq - a and b are equal without regard to ASCII case. */
static int ieq(const char *a, const char *b) {
  for (;; a++, b++) {
    int x = *a >= 'A' && *a <= 'Z' ? *a + 32 : *a;
    int y = *b >= 'A' && *b <= 'Z' ? *b + 32 : *b;
    if (x != y)
      return 0;
    if (x == 0)
      return 1;
  }
}

/* listed - s is one of the NULL-ended list, without regard to case. */
static int listed(const char *const *list, const char *s) {
  for (; list && *list; list++)
    if (ieq(*list, s))
      return 1;
  return 0;
}

static smtpd_verdict on_mail(smtpd_session *s, const smtpd_mail *m,
                             void *ud) {
  policy_session *ps = ud;
  char text[400];
  if (listed(ps->p->blocked_domains, m->domain)) {
    snprintf(text, sizeof text, "<%s>: Sender address rejected: Access "
             "denied", m->address);
    smtpd_session_set_reply(s, 550, "5.7.1", text);
    return SMTPD_REJECT;
  }
  if (ps->p->max_size && m->has_size && m->size > ps->p->max_size) {
    smtpd_session_set_reply(s, 552, "5.3.4",
                            "Message size exceeds fixed limit");
    return SMTPD_REJECT;
  }
  return SMTPD_ACCEPT;
}

static smtpd_verdict on_rcpt(smtpd_session *s, const smtpd_rcpt *r,
                             void *ud) {
  policy_session *ps = ud;
  char text[400];
  if (ps->p->directory_domain &&
      ieq(r->domain, ps->p->directory_domain) &&
      strlen(r->address) < sizeof ps->pending) {
    strcpy(ps->pending, r->address);
    return SMTPD_DEFER; /* the host resumes with policy_lookup_done */
  }
  if (listed(ps->p->local_users, r->address))
    return SMTPD_ACCEPT;
  snprintf(text, sizeof text, "<%s>: Recipient address rejected: User "
           "unknown", r->address);
  smtpd_session_set_reply(s, 550, "5.1.1", text);
  return SMTPD_REJECT;
}

static smtpd_verdict on_data_complete(smtpd_session *s,
                                      const smtpd_message *msg, void *ud) {
  policy_session *ps = ud;
  char text[64];
  if (ps->p->max_size && msg->size > ps->p->max_size) {
    smtpd_session_set_reply(s, 552, "5.3.4",
                            "Message size exceeds fixed limit");
    return SMTPD_REJECT;
  }
  ps->queued++;
  snprintf(text, sizeof text, "Ok: queued as %04lX%04lX", ps->id & 0xffff,
           ps->queued & 0xffff);
  smtpd_session_set_reply(s, 250, "2.0.0", text);
  return SMTPD_ACCEPT;
}

void policy_callbacks(smtpd_callbacks *cb) {
  memset(cb, 0, sizeof *cb);
  cb->version = SMTPD_CALLBACKS_VERSION;
  cb->on_mail = on_mail;
  cb->on_rcpt = on_rcpt;
  cb->on_data_complete = on_data_complete;
}

void policy_session_init(policy_session *ps, const policy *p,
                         unsigned long id) {
  memset(ps, 0, sizeof *ps);
  ps->p = p;
  ps->id = id;
}

const char *policy_pending(const policy_session *ps) {
  return ps->pending[0] ? ps->pending : NULL;
}

smtpd_verdict policy_lookup_done(policy_session *ps, smtpd_session *s,
                                 int found) {
  char text[400];
  if (found) {
    ps->pending[0] = '\0';
    return SMTPD_ACCEPT;
  }
  snprintf(text, sizeof text, "<%s>: Recipient address rejected: not in "
           "the directory", ps->pending);
  ps->pending[0] = '\0';
  smtpd_session_set_reply(s, 550, "5.1.1", text);
  return SMTPD_REJECT;
}
