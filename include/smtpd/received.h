/*
 * received.h - the Received: trace header field (RFC 5321 4.4), with the
 * transmission types of RFC 3848 and RFC 6531, laid out as Postfix does.
 *
 *   smtpd_received                what one Received: field records
 *   smtpd_received_init           zero a description and set the defaults
 *   smtpd_received_from_session   fill it from a live session
 *   smtpd_received_format         write the field (snprintf semantics)
 *   smtpd_received_protocol       the "with" transmission type
 *
 * The formatter reads no clock, no locale, no environment and keeps no
 * state: the same description always gives the same bytes. Every text in
 * the description is treated as untrusted (see docs/received.md): no
 * input can add a header line or break a comment or the "for" path.
 */
#ifndef SMTPD_RECEIVED_H
#define SMTPD_RECEIVED_H

#include <stddef.h>
#include <stdint.h>

#include "smtpd/smtpd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol the client spoke, before the TLS/AUTH/UTF-8 variants. */
typedef enum smtpd_received_base {
  SMTPD_RECEIVED_SMTP = 0, /* HELO: always "with SMTP" */
  SMTPD_RECEIVED_ESMTP,    /* EHLO */
  SMTPD_RECEIVED_LMTP      /* LHLO (RFC 2033) */
} smtpd_received_base;

/* Each client text is cut to this many octets after sanitising. */
#define SMTPD_RECEIVED_MAX_TEXT 255

#define SMTPD_RECEIVED_VERSION 1

/*
 * What a Received: field records. Initialise with smtpd_received_init()
 * (fields may be added in later versions; init sets version and every
 * default). All pointers are borrowed: they must stay valid until the
 * call to smtpd_received_format() returns. NULL text means "not known /
 * not present" as described per field.
 */
typedef struct smtpd_received {
  unsigned version;         /* SMTPD_RECEIVED_VERSION (set by init) */
  const char *helo;         /* HELO/EHLO/LHLO argument as sent; NULL or
                               "": the rdns name (or "unknown") is used */
  const char *rdns;         /* verified reverse name; NULL: "unknown" */
  const char *addr;         /* client IP text without brackets:
                               "192.0.2.1" or "2001:db8::1" (written as
                               [IPv6:2001:db8::1]); NULL: "unknown" */
  const char *hostname;     /* our name after "by"; NULL: "localhost" */
  const char *software;     /* comment after our name; default
                               "libsmtpd"; NULL: no comment */
  smtpd_received_base base; /* default SMTPD_RECEIVED_ESMTP */
  int is_helo;              /* client said HELO: "with SMTP", no S/A/UTF8
                               (ignored for LMTP, which has no HELO) */
  int utf8;                 /* the transaction used SMTPUTF8 (RFC 6531) */
  const smtpd_tls_info *tls;/* NULL: not encrypted */
  const char *auth_user;    /* authenticated identity; NULL: none */
  int show_auth;            /* write "(Authenticated sender: user)";
                               default 0 (privacy, as Postfix) */
  const char *queue_id;     /* "id" clause; NULL: none */
  const char *recipient;    /* "for" clause when exactly one recipient
                               ("local@domain", local part as sent, may
                               be quoted); NULL or "": none */
  int64_t time;             /* arrival, seconds since the Unix epoch */
  int utc_offset_minutes;   /* local zone of the date: -1439..1439;
                               outside that range the zone is "-0000"
                               (RFC 5322 3.3: local zone unknown) */
} smtpd_received;

/* smtpd_received_init - zero *r and set version and defaults (base
 * ESMTP, software "libsmtpd", time 0, offset 0). NULL is ignored. */
SMTPD_API void smtpd_received_init(smtpd_received *r);

/*
 * smtpd_received_from_session - fill the session-derived fields of an
 * initialised *r: helo, rdns, addr, hostname, base and is_helo (from
 * EHLO vs HELO; a base of SMTPD_RECEIVED_LMTP already set is kept),
 * utf8, tls, auth_user and recipient (set only when the transaction has
 * exactly one recipient, else NULL). queue_id, time, utc_offset_minutes,
 * software and show_auth are left as they are.
 *
 * The strings and the tls pointer are borrowed from the session: they
 * stay valid only while the session is not fed, resumed or deleted, so
 * call smtpd_received_format() right away (e.g. in on_data_complete).
 * Returns 0, or SMTPD_ERR_INVALID_ARGUMENT when r or s is NULL or r was
 * not initialised (r->version != SMTPD_RECEIVED_VERSION).
 */
SMTPD_API int smtpd_received_from_session(smtpd_received *r,
                                          const smtpd_session *s);

/*
 * smtpd_received_format - write the whole field, "Received: from ..."
 * through the final CRLF, lines separated by CRLF and continuation lines
 * starting with a tab, ready to be prepended to a message.
 *
 * snprintf semantics: returns the length of the full field (without the
 * terminating NUL) whatever cap is; writes at most cap octets; when cap
 * > 0 the output is NUL-terminated, and truncated to cap - 1 octets
 * (a prefix of the full field) when it does not fit. buf may be NULL
 * when cap is 0. Lines are folded at 78 octets where a fold point
 * exists and never exceed 998. Returns 0 (and writes "" when cap > 0)
 * when r is NULL, r->version is not SMTPD_RECEIVED_VERSION or r->base is
 * not a valid smtpd_received_base; a real field is never empty.
 */
SMTPD_API size_t smtpd_received_format(char *buf, size_t cap,
                                       const smtpd_received *r);

/*
 * smtpd_received_protocol - the transmission type for the "with" clause
 * (a static string): "SMTP" for a HELO session (or base SMTP), else
 * ESMTP / LMTP, prefixed "UTF8" for utf8 (UTF8SMTP, UTF8LMTP) and
 * suffixed "S" for TLS, "A" for AUTH, "SA" for both (RFC 3848, RFC
 * 6531 4.3). NULL when base is not a valid smtpd_received_base.
 */
SMTPD_API const char *smtpd_received_protocol(smtpd_received_base base,
                                              int is_helo, int utf8,
                                              int tls, int auth);

#ifdef __cplusplus
}
#endif
#endif /* SMTPD_RECEIVED_H */
