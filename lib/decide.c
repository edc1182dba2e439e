/*
 * decide.c - decisions: record what a callback answered, defer it, or
 * apply it: write the host's reply or the default one, then let the
 * decision's own apply() change the session. It never names a command:
 * every command-table row carries its decision.
 *
 *   smtpd_i_apply, smtpd_i_end_by_host (running a callback: decide.h)
 */
#include <string.h>

#include "internal.h"
#include "reply.h"

void smtpd_i_end_by_host(smtpd_session *s, smtpd_verdict v) {
  if (s->state == ST_CLOSED)
    return;
  if (s->reply_set && s->reply_code == 421)
    smtpd_i_append(s, s->reply, s->reply_len);
  else
    smtpd_i_write_dreply(s, smtpd_i_default_reply(K_COMMAND, v));
  s->reply_set = 0;
  s->pending = NULL;
  smtpd_i_close(s, SMTPD_CLOSE_HOST);
  if (v == SMTPD_ABORT)
    smtpd_i_fail(s, SMTPD_ERR_CALLBACK_FAILURE);
}

void smtpd_i_apply(smtpd_session *s, const smtpd_i_decision *d,
                   smtpd_verdict v) {
  int code, accepted, host_reply;
  s->pending = NULL;
  if (v == SMTPD_DISCONNECT || v == SMTPD_ABORT) {
    smtpd_i_end_by_host(s, v);
    return;
  }
  if (v != SMTPD_ACCEPT && v != SMTPD_REJECT)
    v = SMTPD_TEMPFAIL;
  accepted = v == SMTPD_ACCEPT;
  /* a host reply that contradicts the verdict is ignored: the verdict
   * decides, so a REJECT can never turn into an accepted command */
  if (s->reply_set && (s->reply_code < 400) != accepted)
    s->reply_set = 0;
  host_reply = s->reply_set;
  s->reply_set = 0;
  if (accepted && (d->flags & D_OWN_SUCCESS)) {
    code = 200;
  } else if (host_reply) {
    code = s->reply_code;
    smtpd_i_append(s, s->reply, s->reply_len);
  } else {
    const smtpd_i_dreply *r = smtpd_i_default_reply(d->kind, v);
    code = r->code;
    smtpd_i_write_dreply(s, r);
  }
  if (d->apply)
    d->apply(s, accepted, host_reply);
  if (s->broken)
    return;
  if (s->dec_flags & SMTPD_CMD_ENDS_GROUP)
    smtpd_i_set_sync_mark(s);
  if (code == 421)
    smtpd_i_close(s, d->kind == K_CONNECT ? SMTPD_CLOSE_REJECTED
                                          : SMTPD_CLOSE_HOST);
}
