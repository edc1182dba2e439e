/*
 * decide.h - internal: running a decision callback, for the modules that
 * ask the host (commands.c). Separate from internal.h so that only the
 * layers above decide.c see code that calls into it.
 */
#ifndef SMTPD_LIB_DECIDE_H
#define SMTPD_LIB_DECIDE_H

#include "internal.h"

/* Record what a decision callback answered: defer, or apply now. */
static inline void smtpd_i_decided(smtpd_session *s,
                                   const smtpd_i_decision *d,
                                   smtpd_verdict v) {
  if (s->broken)
    return;
  if (v == SMTPD_DEFER)
    s->pending = d;
  else
    smtpd_i_apply(s, d, v);
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
