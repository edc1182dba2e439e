/*
 * sasl.h - the AUTH mechanism backend interface (RFC 4954) and the
 * built-in PLAIN/LOGIN backend.
 *
 * The core frames the exchange (AUTH line, 334 challenges, base64, "*"
 * cancel, line limits, replies, events); a backend only sees raw decoded
 * bytes and answers with an smtpd_sasl_status. Cyrus SASL is one backend
 * (sasl_cyrus.h), the built-in one below is another, a host may write its
 * own.
 */
#ifndef SMTPD_SASL_H
#define SMTPD_SASL_H

#include "smtpd/smtpd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a backend step answers; the core turns it into the reply.
 *  OK        235 2.7.0 Authentication successful (out->authcid set)
 *  CONTINUE  334 <base64 of out->challenge>
 *  FAIL      535 5.7.8 Error: authentication failed: <out->reason>
 *  TEMPFAIL  454 4.7.0 Temporary authentication failure
 *  NOMECH    504 5.5.4 Unsupported authentication mechanism
 *  ENCRYPT   504 5.5.4 Encryption required for requested authentication
 *            mechanism (and the tls-required event)
 *  BADPROT   501 5.5.2 malformed client response
 *  DEFER     the answer comes later: the session pauses until the host
 *            calls smtpd_session_resume(); the core then calls resume(). */
typedef enum smtpd_sasl_status {
  SMTPD_SASL_OK = 0,
  SMTPD_SASL_CONTINUE,
  SMTPD_SASL_FAIL,
  SMTPD_SASL_TEMPFAIL,
  SMTPD_SASL_NOMECH,
  SMTPD_SASL_ENCRYPT,
  SMTPD_SASL_BADPROT,
  SMTPD_SASL_DEFER
} smtpd_sasl_status;

/* What the backend may know of the channel. Valid during the call. */
typedef struct smtpd_sasl_channel {
  int tls;                 /* the session is encrypted */
  int allow_plaintext;     /* SMTPD_OPT_AUTH_PLAINTEXT is on */
  unsigned ssf;            /* TLS effective key bits, 0 without TLS */
  const char *external_id; /* verified client certificate subject, or NULL */
  const char *client_addr; /* smtpd_session_client_addr(), or NULL */
} smtpd_sasl_channel;

/* Filled by start/step/resume. Pointers stay valid until the next call
 * on the same exchange or its dispose. */
typedef struct smtpd_sasl_out {
  const uint8_t *challenge; /* CONTINUE: raw bytes, the core encodes */
  size_t challenge_len;
  const char *authcid;      /* OK: authentication identity */
  const char *authzid;      /* OK: authorisation identity, or NULL */
  const char *reason;       /* FAIL: short text for the 535 reply */
} smtpd_sasl_out;

/* Version 2 added destroy at the end. smtpd_config_set_sasl still accepts
 * version 1 tables (without destroy): the core copies the table by the
 * size of the version it declares. */
#define SMTPD_SASL_BACKEND_VERSION 2

/* A backend: a table of functions and their context. The core borrows it
 * (smtpd_config_set_sasl); it must outlive every session using it and be
 * safe to call from every thread those sessions run in. Whoever made it
 * frees it: the adapter's own del, or smtpd_sasl_backend_del() for any
 * adapter-made table; a host-owned table is the host's to free. */
typedef struct smtpd_sasl_backend {
  unsigned version; /* SMTPD_SASL_BACKEND_VERSION */
  void *ctx;
  /* mechanisms - space-separated upper-case names offered on this channel
   * (only those allowed on it), NUL-terminated in buf. Returns the length
   * it needs (snprintf style), or a negative smtpd_error. */
  int (*mechanisms)(void *ctx, const smtpd_sasl_channel *ch, char *buf,
                    size_t cap);
  /* start - begin an exchange for mech (upper-cased by the core). resp
   * is the decoded initial response when has_resp (len may be 0 for "=").
   * Sets *exch to per-exchange state (may stay NULL for NOMECH/ENCRYPT).
   * Returns an smtpd_sasl_status. */
  int (*start)(void *ctx, smtpd_session *s, const smtpd_sasl_channel *ch,
               const char *mech, const uint8_t *resp, size_t len,
               int has_resp, void **exch, smtpd_sasl_out *out);
  /* step - the client's decoded answer to the last challenge. */
  int (*step)(void *exch, const uint8_t *resp, size_t len,
              smtpd_sasl_out *out);
  /* resume - after DEFER, the verdict the host passed to
   * smtpd_session_resume(). Returns OK, FAIL or TEMPFAIL. */
  int (*resume)(void *exch, int verdict, smtpd_sasl_out *out);
  /* dispose - end of the exchange, whatever its outcome (also on cancel,
   * session reset and smtpd_session_del). Never reused afterwards. */
  void (*dispose)(void *exch);
  /* destroy - frees the backend; set by the adapter that made it; NULL for
   * a host-owned table. Call it through smtpd_sasl_backend_del(), after
   * the last session using the backend is gone. (Version 2.) */
  void (*destroy)(struct smtpd_sasl_backend *backend);
} smtpd_sasl_backend;

/* smtpd_sasl_backend_del - frees any adapter-made backend through its
 * destroy; NULL or a table without destroy (host-owned, or version 1):
 * nothing happens. A copy of an adapter's table is not its object either:
 * nothing happens. */
SMTPD_API void smtpd_sasl_backend_del(smtpd_sasl_backend *backend);

/* ---- built-in PLAIN / LOGIN backend ----------------------------------- */

/* The host's password check. Returns an smtpd_verdict: ACCEPT, REJECT,
 * TEMPFAIL, or DEFER (then answer later with smtpd_session_resume); any
 * other value counts as REJECT. password is a NUL-terminated copy of
 * password_len octets (never containing a NUL), wiped and freed when the
 * callback returns: a host that defers copies what it needs. */
typedef smtpd_verdict (*smtpd_sasl_verify_fn)(smtpd_session *s,
                                              const char *mechanism,
                                              const char *authcid,
                                              const char *authzid,
                                              const char *password,
                                              size_t password_len, void *ctx);

/* smtpd_sasl_builtin_new - PLAIN and LOGIN, offered only under TLS unless
 * the channel allows plaintext (SMTPD_OPT_AUTH_PLAINTEXT). */
SMTPD_API int smtpd_sasl_builtin_new(smtpd_sasl_backend **out,
                                     const smtpd_mem *mem,
                                     smtpd_sasl_verify_fn verify, void *ctx);

/* smtpd_sasl_builtin_del - free a backend made by smtpd_sasl_builtin_new
 * (NULL is a no-op). Returns 0, or SMTPD_ERR_INVALID_ARGUMENT and frees
 * nothing when the table is not one it made (another adapter's, a host's,
 * a copy). */
SMTPD_API int smtpd_sasl_builtin_del(smtpd_sasl_backend *backend);

/* smtpd_consttime_equal - 1 when the two byte strings are equal. Time
 * depends only on the lengths, not on where they differ. */
SMTPD_API int smtpd_consttime_equal(const void *a, size_t alen,
                                    const void *b, size_t blen);

#ifdef __cplusplus
}
#endif
#endif /* SMTPD_SASL_H */
