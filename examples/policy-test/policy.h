/*
 * policy.h - a small mail policy for a server built on libsmtpd: who may
 * send, who may receive, how big a message may be. It is only callbacks;
 * the server (sockets, the event loop, storage) is the host's.
 *
 *   policy_callbacks     the smtpd_callbacks that apply the policy
 *   policy_session_init  per-connection state, the callbacks' user data
 *   policy_pending       the address a deferred lookup waits for
 *   policy_lookup_done   the lookup's answer: the verdict to resume with
 *
 * Recipients in the directory domain are looked up asynchronously: on_rcpt
 * answers SMTPD_DEFER, the host runs the lookup, then calls
 *   smtpd_session_resume(s, policy_lookup_done(ps, s, found));
 * examples/policy-test/policy_test.c tests all of it with transcripts.
 */
#ifndef POLICY_H
#define POLICY_H

#include <stdint.h>

#include <smtpd/smtpd.h>

typedef struct policy {
  const char *const *local_users;     /* recipients accepted, NULL-ended */
  const char *const *blocked_domains; /* sender domains refused, NULL-ended */
  uint64_t max_size;                  /* message size cap; 0: none */
  const char *directory_domain;       /* recipients here need a lookup */
} policy;

typedef struct policy_session {
  const policy *p;
  unsigned long id;     /* connection number, for queue ids */
  unsigned long queued; /* messages accepted on this connection */
  char pending[256];    /* address being looked up; "" when none */
} policy_session;

/* policy_callbacks - fill cb (version set) with the policy's on_mail,
 * on_rcpt and on_data_complete; their user data is a policy_session. */
void policy_callbacks(smtpd_callbacks *cb);

/* policy_session_init - state for one connection under policy p. */
void policy_session_init(policy_session *ps, const policy *p,
                         unsigned long id);

/* policy_pending - the recipient whose lookup the session waits for, or
 * NULL when no decision is deferred. */
const char *policy_pending(const policy_session *ps);

/* policy_lookup_done - the directory answered for policy_pending(ps):
 * sets the reply and returns the verdict to give smtpd_session_resume. */
smtpd_verdict policy_lookup_done(policy_session *ps, smtpd_session *s,
                                 int found);

#endif
