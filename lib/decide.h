/*
 * decide.h - internal: running a decision callback, for the modules that
 * ask the host (commands.c). Separate from internal.h so that only the
 * layers above decide.c see code that calls into it.
 */
#ifndef SMTPD_LIB_DECIDE_H
#define SMTPD_LIB_DECIDE_H

#include "internal.h"
#include "reply.h"

/* Record what a decision callback answered: defer, or apply now. The
 * usual answer, accepted without a reply of the host's, is applied here
 * inline (its default reply, the decision's apply, the pipelining mark:
 * what smtpd_i_apply does for it; an accepting default is never a 421);
 * every other answer goes to smtpd_i_apply. */
static inline void smtpd_i_decided(smtpd_session *s,
                                   const smtpd_i_decision *d,
                                   smtpd_verdict v) {
  if (s->broken)
    return;
  if (v == SMTPD_DEFER) {
    s->pending = d;
  } else if (v == SMTPD_ACCEPT && !s->reply_set) {
    s->pending = NULL;
    if (!(d->flags & D_OWN_SUCCESS))
      smtpd_i_write_dreply(s, &smtpd_i_defaults[d->kind][0]);
    if (d->apply)
      d->apply(s, 1, 0);
    if (!s->broken && (s->dec_flags & SMTPD_CMD_ENDS_GROUP))
      smtpd_i_set_sync_mark(s);
  } else {
    smtpd_i_apply(s, d, v);
  }
}

/* Run the decision callback cb.fn (NULL: accept) for decision d of a
 * command with the given table flags. */
#define SMTPD_I_DECIDE(s, d, flags, fn, ...)                                 \
  do {                                                                       \
    smtpd_verdict v_ = SMTPD_ACCEPT;                                         \
    (s)->reply_set = 0;                                                      \
    (s)->dec_flags = (flags);                                                \
    if ((s)->cb.fn) {                                                        \
      (s)->in_cb = (d);                                                      \
      (s)->callback_running = 1;                                             \
      v_ = (s)->cb.fn((s), __VA_ARGS__);                                     \
      (s)->callback_running = 0;                                             \
      (s)->in_cb = NULL;                                                     \
    }                                                                        \
    smtpd_i_decided((s), (d), v_);                                           \
  } while (0)

#endif /* SMTPD_LIB_DECIDE_H */
