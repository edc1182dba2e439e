/*
 * smtpd.h - libsmtpd core: a sans-I/O SMTP server session engine.
 *
 * The library parses what a client sends, keeps the protocol state and
 * builds the replies; the host owns sockets, clocks, storage and policy.
 *
 *   smtpd_config   shared, read-only settings (hostname, limits, policies)
 *   smtpd_session  one SMTP conversation; feed it bytes, pull reply bytes
 *
 * All functions returning int give 0 (SMTPD_OK) or a negative smtpd_error.
 * See docs/API.md for the contracts (ownership, lifetimes, pausing,
 * threading) in prose.
 */
#ifndef SMTPD_SMTPD_H
#define SMTPD_SMTPD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  if defined(SMTPD_BUILDING)
#    define SMTPD_API __declspec(dllexport)
#  elif defined(SMTPD_SHARED)
#    define SMTPD_API __declspec(dllimport)
#  else
#    define SMTPD_API
#  endif
#elif defined(__GNUC__)
#  define SMTPD_API __attribute__((visibility("default")))
#else
#  define SMTPD_API
#endif

/* ---- version ---------------------------------------------------------- */

#define SMTPD_VERSION_MAJOR 0
#define SMTPD_VERSION_MINOR 3
#define SMTPD_VERSION_PATCH 0
#define SMTPD_VERSION_STRING "0.3.0"
/* 0xMMmmpp */
#define SMTPD_VERSION_NUM \
  ((SMTPD_VERSION_MAJOR << 16) | (SMTPD_VERSION_MINOR << 8) | SMTPD_VERSION_PATCH)

/* smtpd_version - version of the library actually linked; *num (may be
 * NULL) receives its SMTPD_VERSION_NUM. */
SMTPD_API const char *smtpd_version(int *num);

/* ---- errors ----------------------------------------------------------- */

/* X(name, value, description). Values at or below SMTPD_ERR_FATAL mean
 * the session can no longer be used and should be deleted. Every code is
 * returned somewhere:
 *  ERR_INVALID_ARGUMENT  a NULL object, an out-of-range value, a reply
 *                        that would not be valid SMTP
 *  ERR_INVALID_STATE     the call is not allowed now (inside a callback,
 *                        resume with nothing deferred, set after start)
 *  ERR_CLOSED            the TLS peer closed (adapters)
 *  ERR_UNSUPPORTED       a versioned struct newer than this library
 *  ERR_TLS, ERR_SASL     the adapter's library failed
 *  ERR_IO                a file could not be read or written (adapters)
 *  ERR_NOMEM             an allocation failed (fatal for a session)
 *  ERR_CALLBACK_FAILURE  a decision callback answered SMTPD_ABORT
 * Adapters' positive results (SMTPD_TLS_AGAIN, SMTPD_TRANSCRIPT_MISMATCH)
 * are not errors; their values are listed beside this table. */
#define SMTPD_ERROR_TABLE(X)                                                  \
  X(OK, 0, "success")                                                         \
  X(ERR_INVALID_ARGUMENT, -1, "invalid argument")                             \
  X(ERR_INVALID_STATE, -2, "not allowed in the current session state")        \
  X(ERR_CLOSED, -4, "session is closed")                                      \
  X(ERR_UNSUPPORTED, -5, "not supported by this build or version")            \
  X(ERR_TLS, -6, "TLS error")                                                 \
  X(ERR_SASL, -7, "SASL backend error")                                       \
  X(ERR_IO, -8, "I/O error")                                                  \
  X(ERR_NOMEM, -901, "out of memory")                                         \
  X(ERR_CALLBACK_FAILURE, -902, "a callback asked to abort the session")

typedef enum smtpd_error {
#define SMTPD_ERROR_ENUM_(name, value, text) SMTPD_##name = value,
  SMTPD_ERROR_TABLE(SMTPD_ERROR_ENUM_)
#undef SMTPD_ERROR_ENUM_
  SMTPD_ERROR_END_ = 1
} smtpd_error;

/* Not a code any call returns: the threshold at or below which a code is
 * fatal (smtpd_is_fatal). */
#define SMTPD_ERR_FATAL (-900)

/* Positive results of adapter calls, beside the error table (never
 * negative, never returned by the core): */
#define SMTPD_RESULT_TLS_AGAIN 1           /* tls_gnutls.h: SMTPD_TLS_AGAIN */
#define SMTPD_RESULT_TRANSCRIPT_MISMATCH 2 /* transcript.h */

/* smtpd_strerror - a static English description of an error code. */
SMTPD_API const char *smtpd_strerror(int err);
/* smtpd_is_fatal - non-zero when err means the object is unusable. */
SMTPD_API int smtpd_is_fatal(int err);

/* ---- allocator -------------------------------------------------------- */

/* Every allocation of the library and its adapters goes through one of
 * these. All four functions are required; ctx is passed back as is. The
 * struct is copied, ctx must stay valid while any object made with it
 * lives. NULL wherever an smtpd_mem is taken means libc. */
typedef struct smtpd_mem {
  void *ctx;
  void *(*malloc)(size_t size, void *ctx);
  void (*free)(void *ptr, void *ctx);
  void *(*calloc)(size_t nmemb, size_t size, void *ctx);
  void *(*realloc)(void *ptr, size_t size, void *ctx);
} smtpd_mem;

/* smtpd_mem_default - the libc allocator used wherever NULL is passed
 * (static; never freed). */
SMTPD_API const smtpd_mem *smtpd_mem_default(void);

/* ---- verdicts --------------------------------------------------------- */

/* What a decision callback (and smtpd_session_resume) answers.
 *  ACCEPT      the command succeeds; default or smtpd_session_set_reply
 *              text
 *  REJECT      permanent refusal (default 5xx, or the reply set)
 *  TEMPFAIL    temporary refusal (default 4xx, or the reply set)
 *  DEFER       pause: the session stops reading input and waits for
 *              smtpd_session_resume(); only valid as a callback's return
 *  DISCONNECT  end the session: 421 (the reply set when it is a 421, else
 *              "421 4.3.2 <host> Service shutting down"), on_close with
 *              SMTPD_CLOSE_HOST; feed goes on normally
 *  ABORT       the same, and the call that ran the callback (feed,
 *              resume, start) returns SMTPD_ERR_CALLBACK_FAILURE: the
 *              host cannot go on with this session */
typedef enum smtpd_verdict {
  SMTPD_ACCEPT = 0,
  SMTPD_REJECT = 1,
  SMTPD_TEMPFAIL = 2,
  SMTPD_DEFER = 3,
  SMTPD_DISCONNECT = 4,
  SMTPD_ABORT = 5
} smtpd_verdict;

/* ---- configuration ---------------------------------------------------- */

typedef struct smtpd_config smtpd_config;
typedef struct smtpd_session smtpd_session;
struct smtpd_sasl_backend; /* include/smtpd/sasl.h */

typedef enum smtpd_limit {
  SMTPD_LIMIT_MESSAGE_SIZE,  /* body octets; 0 = unlimited; default 10240000 */
  SMTPD_LIMIT_RECIPIENTS,    /* per transaction; default 1000 */
  SMTPD_LIMIT_COMMAND_LINE,  /* octets incl. CRLF; default 512 (min 512) */
  SMTPD_LIMIT_TEXT_LINE,     /* body line octets incl. CRLF; default 1000 */
  SMTPD_LIMIT_ERRORS,        /* client errors before 421; default 20 */
  SMTPD_LIMIT_AUTH_FAILURES, /* failed AUTH before 421; default 3 */
  SMTPD_LIMIT_AUTH_LINE,     /* AUTH response line octets; default 12288 */
  SMTPD_LIMIT_OUTPUT,        /* queued reply octets before input stops
                                being read; default 65536 */
  SMTPD_LIMIT_TRANSACTIONS,  /* MAIL commands accepted per session; 0 =
                                unlimited (default); LIMITS MAILMAX */
  SMTPD_LIMIT_SOFT_ERRORS,   /* client errors after which each error
                                reply is delayed (SMTPD_TIMEOUT_TARPIT);
                                default 10 */
  SMTPD_LIMIT_COUNT_
} smtpd_limit;

typedef enum smtpd_timeout {
  SMTPD_TIMEOUT_NONE = 0,    /* no client timeout applies (host is busy) */
  SMTPD_TIMEOUT_COMMAND,     /* waiting for a command; default 300 s */
  SMTPD_TIMEOUT_DATA,        /* waiting for body data; default 180 s */
  /* deadlines (smtpd_session_deadline), absolute, so trickling does not
   * extend them: */
  SMTPD_TIMEOUT_LINE,        /* one command line, from its first octet to
                                its end; default 60 s */
  SMTPD_TIMEOUT_MESSAGE,     /* one message's data, from DATA (or the
                                first BDAT) to its end; default 1800 s */
  /* not a client timeout: how long an error reply is held back
   * (smtpd_session_reply_delay) after a failed AUTH and after each error
   * beyond SMTPD_LIMIT_SOFT_ERRORS; default 1000 ms, 0 = never */
  SMTPD_TIMEOUT_TARPIT,
  SMTPD_TIMEOUT_COUNT_
} smtpd_timeout;

typedef enum smtpd_option {
  SMTPD_OPT_ENHANCEDSTATUSCODES, /* default on: RFC 2034 codes everywhere */
  SMTPD_OPT_PIPELINING,          /* default on: advertise RFC 2920 */
  SMTPD_OPT_8BITMIME,            /* default on: advertise RFC 6152 */
  SMTPD_OPT_SIZE,                /* default on: advertise RFC 1870 SIZE */
  SMTPD_OPT_SMTPUTF8,            /* default off: advertise RFC 6531 */
  SMTPD_OPT_VRFY,                /* default on: VRFY answered (252/host) */
  SMTPD_OPT_STARTTLS,            /* default off: host can do TLS */
  SMTPD_OPT_REQUIRE_TLS,         /* default off: MAIL needs TLS (530) */
  SMTPD_OPT_REQUIRE_AUTH,        /* default off: MAIL needs AUTH (530) */
  SMTPD_OPT_AUTH_PLAINTEXT,      /* default off: plaintext SASL mechanisms
                                    allowed without TLS */
  SMTPD_OPT_REPLY_PER_RCPT,      /* default off: the end of a message is
                                    answered once per accepted recipient,
                                    in order (LMTP, RFC 2033 4.2) */
  SMTPD_OPT_CHUNKING,            /* default off: BDAT (RFC 3030) */
  SMTPD_OPT_BINARYMIME,          /* default off: BODY=BINARYMIME with BDAT
                                    (RFC 3030; needs CHUNKING) */
  SMTPD_OPT_DSN,                 /* default off: RET, ENVID, NOTIFY, ORCPT
                                    (RFC 3461) decoded and validated */
  SMTPD_OPT_REQUIRETLS,          /* default off: REQUIRETLS (RFC 8689),
                                    advertised and accepted under TLS */
  SMTPD_OPT_LIMITS,              /* default off: advertise LIMITS (RFC
                                    9422) from the limits enforced */
  SMTPD_OPT_LMTP,                /* default off: LMTP (RFC 2033): LHLO, no
                                    HELO/EHLO, one reply per recipient */
  SMTPD_OPT_XCLIENT,             /* default off: the XCLIENT command
                                    (decided by on_xclient) */
  SMTPD_OPT_COUNT_
} smtpd_option;

/* How a CR or LF that is not part of CRLF is treated, in commands and in
 * the body alike. End of data is <CRLF>.<CRLF> under every policy. */
typedef enum smtpd_line_ending {
  SMTPD_LINE_ENDING_REJECT = 0, /* default: 500 for a command; a body is
                                   read to its end then refused (550) */
  SMTPD_LINE_ENDING_NORMALIZE,  /* bare LF is a line end (body: becomes
                                   CRLF); bare CR is kept as data */
  SMTPD_LINE_ENDING_ACCEPT      /* bytes pass through unchanged */
} smtpd_line_ending;

/* What happens when a client talks before it may (before the greeting was
 * written, or after a command that must end a pipelined group). Either
 * way an SMTPD_NOTICE_SYNC_VIOLATION notice is fired. */
typedef enum smtpd_sync_policy {
  SMTPD_SYNC_REJECT = 0, /* default: 554 5.5.0 ... synchronization; close */
  SMTPD_SYNC_ALLOW       /* report only */
} smtpd_sync_policy;

/* Body text lines longer than SMTPD_LIMIT_TEXT_LINE. */
typedef enum smtpd_long_line {
  SMTPD_LONG_LINE_ACCEPT = 0, /* default: passed through unchanged */
  SMTPD_LONG_LINE_REJECT      /* message read to its end, then refused */
} smtpd_long_line;

/* smtpd_config_new - a configuration with safe defaults. mem may be NULL.
 * Sessions borrow the config: it must outlive them and not be changed
 * while they use it; it may be shared by sessions in several threads. */
SMTPD_API int smtpd_config_new(smtpd_config **out, const smtpd_mem *mem);
SMTPD_API void smtpd_config_del(smtpd_config *cfg);

/* smtpd_config_set_hostname - our name in the greeting, EHLO and error
 * replies (copied; printable ASCII, no spaces). Default "localhost". */
SMTPD_API int smtpd_config_set_hostname(smtpd_config *cfg, const char *name);
/* smtpd_config_set_banner - greeting text after the hostname (copied).
 * Default "ESMTP". The greeting line, "220 <hostname> <banner>" CRLF,
 * must fit in 512 octets (RFC 5321 4.5.3.1.5): a hostname or banner that
 * would make it longer is refused with SMTPD_ERR_INVALID_ARGUMENT. */
SMTPD_API int smtpd_config_set_banner(smtpd_config *cfg, const char *text);
SMTPD_API int smtpd_config_set_limit(smtpd_config *cfg, smtpd_limit which,
                                     uint64_t value);
/* smtpd_config_get_limit - *value receives the limit; 0 or
 * SMTPD_ERR_INVALID_ARGUMENT (then *value is untouched). */
SMTPD_API int smtpd_config_get_limit(const smtpd_config *cfg,
                                     smtpd_limit which, uint64_t *value);
/* smtpd_config_set_timeout - milliseconds reported by
 * smtpd_session_timeout() for that state. */
SMTPD_API int smtpd_config_set_timeout(smtpd_config *cfg, smtpd_timeout which,
                                       uint32_t ms);
SMTPD_API int smtpd_config_set_option(smtpd_config *cfg, smtpd_option opt,
                                      int on);
/* smtpd_config_get_option - *on receives 1 or 0; returns 0 or
 * SMTPD_ERR_INVALID_ARGUMENT (then *on is untouched). */
SMTPD_API int smtpd_config_get_option(const smtpd_config *cfg,
                                      smtpd_option opt, int *on);
SMTPD_API int smtpd_config_set_line_ending(smtpd_config *cfg,
                                           smtpd_line_ending policy);
SMTPD_API int smtpd_config_set_sync_policy(smtpd_config *cfg,
                                           smtpd_sync_policy policy);
SMTPD_API int smtpd_config_set_long_line(smtpd_config *cfg,
                                         smtpd_long_line policy);
/* smtpd_config_add_ehlo_keyword - an extra EHLO line such as "DSN" or
 * "XCLIENT NAME ADDR" (copied; printable ASCII). At most 16. */
SMTPD_API int smtpd_config_add_ehlo_keyword(smtpd_config *cfg,
                                            const char *keyword);
/* Flags of a command-table row, for the core's verbs and the host's.
 * A verb without BEFORE_TLS is answered "530 5.7.0 Must issue a STARTTLS
 * command first" while SMTPD_OPT_REQUIRE_TLS holds and the session is
 * not encrypted; one without BEFORE_AUTH "530 5.7.0 Authentication
 * required" while SMTPD_OPT_REQUIRE_AUTH holds and the client has not
 * authenticated. NEEDS_* refuse the verb with 503 5.5.1 until HELO/EHLO,
 * MAIL, RCPT succeeded; NO_MAIL refuses it inside a transaction.
 * ENDS_GROUP: input after it is a synchronisation violation until its
 * reply was consumed (RFC 2920 3.1). */
#define SMTPD_CMD_ENDS_GROUP 0x01u
#define SMTPD_CMD_BEFORE_TLS 0x02u
#define SMTPD_CMD_BEFORE_AUTH 0x04u
#define SMTPD_CMD_NEEDS_HELO 0x08u
#define SMTPD_CMD_NEEDS_MAIL 0x10u
#define SMTPD_CMD_NEEDS_RCPT 0x20u
#define SMTPD_CMD_NO_MAIL 0x40u

/* smtpd_config_add_command - a verb the host answers (on_command), such
 * as "XCLIENT" or "ETRN": 1..16 letters, digits or '-', matched without
 * regard to case; flags as above. A verb the core implements is refused
 * with SMTPD_ERR_INVALID_STATE, a second registration of the same verb
 * replaces its flags. At most 32. */
SMTPD_API int smtpd_config_add_command(smtpd_config *cfg, const char *verb,
                                       unsigned flags);

/* Where a declared ESMTP parameter may appear, and what it takes. */
#define SMTPD_PARAM_MAIL 0x1u
#define SMTPD_PARAM_RCPT 0x2u
typedef enum smtpd_param_value {
  SMTPD_PARAM_NO_VALUE = 0,  /* "KEYWORD" only; "KEYWORD=x" gets 501 */
  SMTPD_PARAM_VALUE,         /* "KEYWORD=value" only; bare gets 501 */
  SMTPD_PARAM_OPTIONAL_VALUE /* either */
} smtpd_param_value;

/* smtpd_config_add_param - accept the MAIL and/or RCPT parameter keyword
 * (esmtp-keyword, matched without regard to case) and hand it to on_mail /
 * on_rcpt in params. A declared keyword given with a value it may not
 * have, or without one it needs, gets "501 5.5.4 Bad KEYWORD parameter
 * syntax". Parameters neither declared nor known to the core (SIZE, BODY,
 * SMTPUTF8, AUTH, each when its option is on) are answered "555 5.5.4
 * Unsupported option". The core still validates the keywords it knows.
 * Declaring one again replaces it. At most 32. */
SMTPD_API int smtpd_config_add_param(smtpd_config *cfg, unsigned where,
                                     const char *keyword,
                                     smtpd_param_value value);

/* smtpd_config_set_sasl - the AUTH backend (NULL disables AUTH). The
 * table is copied by its version (a newer one: SMTPD_ERR_UNSUPPORTED);
 * the backend it points at (ctx) is borrowed and must outlive the
 * config. See include/smtpd/sasl.h. */
SMTPD_API int smtpd_config_set_sasl(smtpd_config *cfg,
                                    const struct smtpd_sasl_backend *backend);

/* ---- events ----------------------------------------------------------- */

/* All pointers inside event structs are valid only during the callback. */

typedef struct smtpd_helo {
  const char *name;      /* verbatim argument */
  const char *safe_name; /* neutered for logs and Received: lines */
  int esmtp;             /* 1 for EHLO */
} smtpd_helo;

typedef struct smtpd_param {
  const char *keyword; /* upper-cased */
  const char *value;   /* NULL when the parameter has no "=value" */
} smtpd_param;

typedef enum smtpd_body_type {
  SMTPD_BODY_UNSPECIFIED = 0,
  SMTPD_BODY_7BIT,
  SMTPD_BODY_8BITMIME,
  SMTPD_BODY_BINARYMIME  /* only with BDAT */
} smtpd_body_type;

/* RFC 3461 RET= and NOTIFY= (SMTPD_OPT_DSN). */
typedef enum smtpd_dsn_ret {
  SMTPD_DSN_RET_UNSPECIFIED = 0,
  SMTPD_DSN_RET_FULL,
  SMTPD_DSN_RET_HDRS
} smtpd_dsn_ret;
#define SMTPD_DSN_NOTIFY_NEVER 0x1u
#define SMTPD_DSN_NOTIFY_SUCCESS 0x2u
#define SMTPD_DSN_NOTIFY_FAILURE 0x4u
#define SMTPD_DSN_NOTIFY_DELAY 0x8u

typedef struct smtpd_mail {
  const char *address;   /* "" for the null reverse-path <> */
  const char *local;     /* local part as sent (quotes kept) */
  const char *domain;    /* "" when none */
  uint64_t size;         /* SIZE= value; 0 when absent */
  int has_size;
  smtpd_body_type body;
  int smtputf8;          /* SMTPUTF8 parameter given */
  const char *auth;      /* AUTH= value xtext-decoded, NULL if absent */
  int auth_trusted;      /* session is authenticated, so AUTH= may be used */
  const smtpd_param *params; /* every parameter, in order */
  size_t nparams;
  /* since 0.2 */
  smtpd_dsn_ret dsn_ret;  /* RET= */
  const char *dsn_envid;  /* ENVID= xtext-decoded, NULL if absent */
  int requiretls;         /* REQUIRETLS given (only accepted under TLS) */
} smtpd_mail;

typedef struct smtpd_rcpt {
  const char *address;   /* "Postmaster" for <Postmaster> */
  const char *local;
  const char *domain;    /* "" when none */
  const smtpd_param *params;
  size_t nparams;
  size_t index;          /* recipients already accepted in this transaction */
  /* since 0.2 */
  unsigned dsn_notify;        /* SMTPD_DSN_NOTIFY_* bits; 0 if absent */
  const char *dsn_orcpt_type; /* ORCPT= address type ("rfc822"), or NULL */
  const char *dsn_orcpt;      /* ORCPT= address, xtext-decoded, or NULL */
} smtpd_rcpt;

typedef struct smtpd_message {
  uint64_t size;           /* body octets after dot-unstuffing */
  const char *sender;      /* as in smtpd_mail.address */
  const char *const *recipients;
  size_t nrecipients;
  /* since 0.2 */
  int chunked;             /* received with BDAT */
  smtpd_body_type body;    /* MAIL's BODY= */
} smtpd_message;

/* XCLIENT attributes (Postfix XCLIENT_README), xtext-decoded; NULL when
 * not given; "[UNAVAILABLE]" / "[TEMPUNAVAIL]" are passed as they are. */
typedef struct smtpd_xclient {
  const char *name, *addr, *port, *proto, *helo, *login, *destaddr,
      *destport;
} smtpd_xclient;

/* A host-registered verb (smtpd_config_add_command). */
typedef struct smtpd_command {
  const char *verb; /* as the host registered it */
  const char *arg;  /* the rest of the line after one space; "" if none */
} smtpd_command;

typedef struct smtpd_auth_result {
  const char *mechanism;
  const char *authcid;     /* authentication identity; may be NULL */
  const char *authzid;     /* authorisation identity; NULL when none */
  const char *reason;      /* auth-fail only */
  int code;                /* reply code sent (235, 535, 454, ...) */
} smtpd_auth_result;

typedef enum smtpd_notice_type {
  SMTPD_NOTICE_PROTOCOL_ERROR = 1, /* a 4xx/5xx reply caused by the client */
  SMTPD_NOTICE_SYNC_VIOLATION,     /* talked before its turn */
  SMTPD_NOTICE_STARTTLS_DISCARD,   /* plaintext after STARTTLS dropped */
  SMTPD_NOTICE_HTTP_COMMAND,       /* an HTTP or header line as command */
  SMTPD_NOTICE_MESSAGE_ABORTED     /* a streamed body will not be accepted:
                                      drop what on_body delivered */
} smtpd_notice_type;

typedef struct smtpd_notice {
  smtpd_notice_type type;
  int code;            /* reply code sent, 0 if none */
  const char *command; /* offending command, sanitised; may be NULL */
  uint64_t count;      /* octets discarded (STARTTLS_DISCARD) */
} smtpd_notice;

typedef enum smtpd_close_reason {
  SMTPD_CLOSE_QUIT = 1,
  SMTPD_CLOSE_REJECTED,    /* connect decision refused the client */
  SMTPD_CLOSE_TIMEOUT,
  SMTPD_CLOSE_TOO_MANY_ERRORS,
  SMTPD_CLOSE_AUTH_FAILURES,
  SMTPD_CLOSE_SYNC,        /* early talker / pipelining violation */
  SMTPD_CLOSE_HTTP,        /* HTTP or header line as command */
  SMTPD_CLOSE_HOST,        /* smtpd_session_close() */
  SMTPD_CLOSE_RESOURCE,    /* out of memory */
  SMTPD_CLOSE_PROTOCOL,    /* input that cannot be framed (a bad BDAT) */
  SMTPD_CLOSE_PROXY        /* PROXY header missing or malformed */
} smtpd_close_reason;

/* TLS parameters the host reports after a handshake (strings copied). */
typedef struct smtpd_tls_info {
  const char *protocol;     /* "TLSv1.3" */
  const char *cipher;       /* "TLS_AES_256_GCM_SHA384" */
  int cipher_bits;          /* effective key bits, e.g. 256 */
  int alg_bits;             /* algorithm key bits, e.g. 256 */
  int client_cert_requested;
  int client_cert_verified;
  const char *peer_subject; /* verified client subject, or NULL */
  const char *peer_issuer;  /* or NULL */
} smtpd_tls_info;

/* Callbacks. Every one is optional (NULL: accept / ignore). Each gets the
 * session first and the session's user_data last. A decision callback
 * returns an smtpd_verdict; before returning REJECT/TEMPFAIL/ACCEPT it
 * may call smtpd_session_set_reply() to choose the reply text. No
 * callback may call smtpd_session_feed/resume/del on its own session.
 *
 * Versioning: set version to SMTPD_CALLBACKS_VERSION. The library copies
 * as many members as that version had (older programs keep working; the
 * newer members are NULL for them) and refuses a newer version with
 * SMTPD_ERR_UNSUPPORTED. Members are only ever added at the end.
 *  version 1 (0.1): on_connect .. on_close; on_starttls was a
 *                   notification (void) fired after the 220 was queued
 *  version 2 (0.2): on_command, on_data_complete_rcpt; on_starttls is a
 *                   decision
 *  version 3 (0.3): on_xclient */
#define SMTPD_CALLBACKS_VERSION 3
typedef struct smtpd_callbacks {
  unsigned version; /* SMTPD_CALLBACKS_VERSION */
  /* decisions */
  smtpd_verdict (*on_connect)(smtpd_session *s, void *ud);
  smtpd_verdict (*on_helo)(smtpd_session *s, const smtpd_helo *helo,
                           void *ud);
  smtpd_verdict (*on_mail)(smtpd_session *s, const smtpd_mail *mail,
                           void *ud);
  smtpd_verdict (*on_rcpt)(smtpd_session *s, const smtpd_rcpt *rcpt,
                           void *ud);
  smtpd_verdict (*on_data)(smtpd_session *s, void *ud); /* DATA start */
  /* the message ended: one verdict for all recipients (unless
   * SMTPD_OPT_REPLY_PER_RCPT, see on_data_complete_rcpt) */
  smtpd_verdict (*on_data_complete)(smtpd_session *s,
                                    const smtpd_message *msg, void *ud);
  smtpd_verdict (*on_vrfy)(smtpd_session *s, const char *arg,
                           void *ud); /* default 252 */
  /* body: dot-unstuffed bytes, valid during the call only. ACCEPT goes
   * on; DEFER stops reading after this chunk until resume; REJECT or
   * TEMPFAIL refuse the message (read to its end, then answered);
   * DISCONNECT / ABORT end the session. */
  smtpd_verdict (*on_body)(smtpd_session *s, const uint8_t *data,
                           size_t len, void *ud);
  /* notifications */
  void (*on_rset)(smtpd_session *s, void *ud);
  void (*on_quit)(smtpd_session *s, void *ud);
  /* STARTTLS: ACCEPT queues "220 2.0.0 Ready to start TLS" and the host
   * starts the handshake once it is written (smtpd_session_is_tls_wait);
   * TEMPFAIL answers "454 4.7.0 TLS not available due to local problem"
   * and the session goes on in plaintext (REJECT: "554 5.7.3 TLS not
   * available"). NULL: accept. */
  smtpd_verdict (*on_starttls)(smtpd_session *s, void *ud);
  void (*on_auth_ok)(smtpd_session *s, const smtpd_auth_result *r,
                     void *ud);
  void (*on_auth_fail)(smtpd_session *s, const smtpd_auth_result *r,
                       void *ud);
  void (*on_tls_required)(smtpd_session *s, const char *command, void *ud);
  void (*on_notice)(smtpd_session *s, const smtpd_notice *n, void *ud);
  void (*on_close)(smtpd_session *s, smtpd_close_reason reason, void *ud);
  /* ---- version 2 ---- */
  /* a host-registered verb: default replies 250 2.0.0 Ok / 550 5.7.1
   * Command rejected / 450 4.7.1 Command rejected: try again later. May
   * call smtpd_session_set_effects(). NULL: every registered verb gets
   * "502 5.5.1 Error: command not implemented". */
  smtpd_verdict (*on_command)(smtpd_session *s, const smtpd_command *cmd,
                              void *ud);
  /* with SMTPD_OPT_REPLY_PER_RCPT: called for recipient msg->recipients
   * [index], index 0, 1, ... in order, each answered (or deferred and
   * resumed) before the next is asked; on_data_complete is not called.
   * NULL: every recipient is accepted. */
  smtpd_verdict (*on_data_complete_rcpt)(smtpd_session *s,
                                         const smtpd_message *msg,
                                         size_t index, void *ud);
  /* ---- version 3 ---- */
  /* XCLIENT (SMTPD_OPT_XCLIENT): ACCEPT only for trusted clients; the
   * core then takes the attributes (client address and name, HELO, AUTH
   * login), forgets HELO and the transaction, and greets again. Default
   * and NULL: "550 5.7.0 Error: insufficient authorization". */
  smtpd_verdict (*on_xclient)(smtpd_session *s, const smtpd_xclient *x,
                              void *ud);
} smtpd_callbacks;

/* smtpd_callbacks_size - how many octets of smtpd_callbacks a version had
 * (0 for a version this library does not know): for code that copies or
 * wraps a host's callbacks as the session does. */
SMTPD_API size_t smtpd_callbacks_size(unsigned version);

/* ---- session ---------------------------------------------------------- */

/* smtpd_session_new - a session in its initial state; no callback runs
 * and nothing is queued until smtpd_session_start(). cb is copied by its
 * version (NULL: no callbacks; a version newer than this library:
 * SMTPD_ERR_UNSUPPORTED); cfg is borrowed. *out is untouched on
 * failure. */
SMTPD_API int smtpd_session_new(smtpd_session **out, const smtpd_config *cfg,
                                const smtpd_callbacks *cb, void *user_data);
/* smtpd_session_del - free the session (NULL is a no-op). No callback. */
SMTPD_API void smtpd_session_del(smtpd_session *s);

SMTPD_API void *smtpd_session_user_data(const smtpd_session *s);
SMTPD_API void smtpd_session_set_user_data(smtpd_session *s, void *ud);

/* smtpd_session_set_client - the client's address text (e.g. "192.0.2.1"
 * or "2001:db8::1") and verified reverse name (NULL: unknown), copied.
 * Used by SASL backends and the Received: helper. Usually called before
 * start; also allowed later (XCLIENT, a PROXY header), which invalidates
 * the strings smtpd_session_client_addr/rdns returned before. */
SMTPD_API int smtpd_session_set_client(smtpd_session *s, const char *addr,
                                       const char *rdns);
/* smtpd_session_set_implicit_tls - the connection is TLS from the first
 * byte (RFC 8314): the greeting waits for smtpd_session_tls_established().
 * Call before start. */
SMTPD_API int smtpd_session_set_implicit_tls(smtpd_session *s);

/* smtpd_session_set_proxy - the connection comes through a proxy that
 * sends a PROXY protocol header (v1 or v2, HAProxy's spec) first. The
 * session reads it before anything else; its source address and port
 * become the client's (smtpd_session_client_addr/port), then the greeting
 * is queued. A connection whose first octets are not a valid header
 * (missing, malformed, truncated by EOF, v1 over 107 octets, v2 over 1024)
 * is closed without a reply (SMTPD_CLOSE_PROXY). Call before start. */
SMTPD_API int smtpd_session_set_proxy(smtpd_session *s);

/* smtpd_session_start - run on_connect and queue the greeting (or 554 and
 * close when rejected). May leave the session paused. */
SMTPD_API int smtpd_session_start(smtpd_session *s);

/* smtpd_session_feed - hand received plaintext to the session. Returns
 * how many octets were taken (0..len), or a negative error. Fewer than
 * len means the session stopped reading: it is paused for a deferred
 * decision, its queued output is over SMTPD_LIMIT_OUTPUT, or it is
 * closing. Keep the rest and feed it again when smtpd_session_want_read()
 * says so. Any split of the input gives the same result. */
SMTPD_API ptrdiff_t smtpd_session_feed(smtpd_session *s, const void *data,
                                       size_t len);

/* smtpd_session_output - queued reply bytes: *data points at them (valid
 * until the next call on the session), the count is returned; 0 when
 * nothing is queued. smtpd_session_consume marks n of them written. */
SMTPD_API size_t smtpd_session_output(smtpd_session *s, const uint8_t **data);
SMTPD_API int smtpd_session_consume(smtpd_session *s, size_t n);

/* smtpd_session_want_read / want_write - whether the host should read
 * from the client now / has bytes to write. Neither says the session is
 * over: a paused session wants neither while it waits for resume. */
SMTPD_API int smtpd_session_want_read(const smtpd_session *s);
SMTPD_API int smtpd_session_want_write(const smtpd_session *s);
/* smtpd_session_is_done - the one end-of-session rule: the session is
 * closing and every reply octet was consumed (a session that failed with
 * SMTPD_ERR_NOMEM is done at once; one a callback aborted keeps its 421
 * to write). Then close the connection and delete the session. Never
 * true while paused. Under TLS the connection is over when this holds and
 * the TLS connection has no ciphertext left to write (docs/API.md). */
SMTPD_API int smtpd_session_is_done(const smtpd_session *s);
/* smtpd_session_is_paused - a decision was deferred and awaits resume. */
SMTPD_API int smtpd_session_is_paused(const smtpd_session *s);
/* smtpd_session_is_closing - the session will not read again; it ends
 * when the output is written. */
SMTPD_API int smtpd_session_is_closing(const smtpd_session *s);
/* smtpd_session_is_tls_wait - STARTTLS was accepted (or the connection is
 * implicit TLS) and the handshake has not been reported yet: once the
 * queued output is written, the host runs the handshake. */
SMTPD_API int smtpd_session_is_tls_wait(const smtpd_session *s);

/* smtpd_session_status - what an event loop asks after each pass, in one
 * call: the answers of want_read, want_write, is_done, is_paused,
 * is_closing, is_tls_wait (flags), output's count, timeout, deadline and
 * reply_delay, all taken at the same moment. Cheaper than asking each;
 * the single functions stay for the rest. Returns 0, or
 * SMTPD_ERR_INVALID_ARGUMENT when s or st is NULL. */
#define SMTPD_STATUS_WANT_READ 0x01u
#define SMTPD_STATUS_WANT_WRITE 0x02u
#define SMTPD_STATUS_DONE 0x04u
#define SMTPD_STATUS_PAUSED 0x08u
#define SMTPD_STATUS_CLOSING 0x10u
#define SMTPD_STATUS_TLS_WAIT 0x20u
typedef struct smtpd_status {
  unsigned flags;             /* SMTPD_STATUS_* */
  size_t output;              /* queued reply octets */
  uint32_t timeout;           /* ms, as smtpd_session_timeout; 0: none */
  uint32_t deadline;          /* ms, as smtpd_session_deadline; 0: none */
  uint64_t deadline_epoch;    /* its epoch */
  uint32_t reply_delay;       /* ms, as smtpd_session_reply_delay */
  uint64_t reply_delay_epoch; /* its epoch */
} smtpd_status;
SMTPD_API int smtpd_session_status(const smtpd_session *s, smtpd_status *st);

/* smtpd_session_set_reply - inside a decision callback, or while paused
 * before resume: the reply to send. code 200..599 (354 for DATA start);
 * enh "x.y.z" whose class matches code (NULL: a default); text printable
 * (no CR, LF or other controls), NULL for a default. Copied. */
SMTPD_API int smtpd_session_set_reply(smtpd_session *s, int code,
                                      const char *enh, const char *text);
/* smtpd_session_set_reply_lines - the same with several text lines. */
SMTPD_API int smtpd_session_set_reply_lines(smtpd_session *s, int code,
                                            const char *enh,
                                            const char *const *lines,
                                            size_t nlines);
/* smtpd_session_resume - the decision for a deferred callback (ACCEPT,
 * REJECT, TEMPFAIL, DISCONNECT or ABORT). Never call it from inside a
 * callback. Returns 0, SMTPD_ERR_CALLBACK_FAILURE after ABORT, or
 * another error. */
SMTPD_API int smtpd_session_resume(smtpd_session *s, smtpd_verdict verdict);

/* What an accepted host command does to the session, besides its reply
 * (smtpd_session_set_effects, during on_command or while it is deferred):
 *  RESET_TRANSACTION  forget MAIL and RCPT, as RSET (on_rset not fired)
 *  RESET_HELO         also forget HELO/EHLO: the client must greet again
 *  REGREET            the success reply is the greeting, "220 <host>
 *                     <banner>", instead of 250 (what XCLIENT answers) */
#define SMTPD_EFFECT_RESET_TRANSACTION 0x1u
#define SMTPD_EFFECT_RESET_HELO 0x2u
#define SMTPD_EFFECT_REGREET 0x4u
SMTPD_API int smtpd_session_set_effects(smtpd_session *s, unsigned effects);

/* smtpd_session_timeout - which client timeout applies now and its length
 * in milliseconds (0 with SMTPD_TIMEOUT_NONE). Restart the timer whenever
 * input arrives. kind may be NULL. */
SMTPD_API uint32_t smtpd_session_timeout(const smtpd_session *s,
                                         smtpd_timeout *kind);
/* smtpd_session_deadline - the absolute deadline in force now, in
 * milliseconds (0: none), its kind (SMTPD_TIMEOUT_LINE while a command
 * line is being received, SMTPD_TIMEOUT_MESSAGE while a message's data
 * is) and *epoch, a number that changes whenever a new deadline period
 * begins. The host starts one timer when it sees a new epoch and does
 * not restart it on input; when it fires, it calls
 * smtpd_session_timeout_expired. kind and epoch may be NULL. */
SMTPD_API uint32_t smtpd_session_deadline(const smtpd_session *s,
                                          smtpd_timeout *kind,
                                          uint64_t *epoch);
/* smtpd_session_reply_delay - tarpitting: how long (ms) the host should
 * hold back the output queued now before writing it (0: write at once);
 * *epoch (may be NULL) changes with each new delay. Set after a failed
 * AUTH and after each error beyond SMTPD_LIMIT_SOFT_ERRORS; it never
 * blocks the session or other sessions, the host just waits to write. */
SMTPD_API uint32_t smtpd_session_reply_delay(const smtpd_session *s,
                                             uint64_t *epoch);

/* smtpd_session_timeout_expired - the host's timer ran out: queues
 * "421 4.4.2 <host> Error: timeout exceeded" and closes. */
SMTPD_API int smtpd_session_timeout_expired(smtpd_session *s);
/* smtpd_session_close - end the session with a 421 reply now (host
 * shutdown, resource limits). text NULL: "Service shutting down". */
SMTPD_API int smtpd_session_close(smtpd_session *s, const char *enh,
                                  const char *text);

/* smtpd_session_tls_established - the handshake that followed STARTTLS
 * (or implicit TLS) succeeded. Forgets HELO, MAIL, RCPT and AUTH state
 * (RFC 3207 4.2); with implicit TLS the greeting is queued now. */
SMTPD_API int smtpd_session_tls_established(smtpd_session *s,
                                            const smtpd_tls_info *info);

/* ---- session state for logs and Received: lines ----------------------- */

SMTPD_API const char *smtpd_session_hostname(const smtpd_session *s);
SMTPD_API const char *smtpd_session_helo(const smtpd_session *s); /* NULL */
SMTPD_API const char *smtpd_session_helo_safe(const smtpd_session *s);
SMTPD_API int smtpd_session_is_esmtp(const smtpd_session *s);
SMTPD_API const char *smtpd_session_client_addr(const smtpd_session *s);
SMTPD_API const char *smtpd_session_client_rdns(const smtpd_session *s);
/* the client's port: from a PROXY header, XCLIENT or
 * smtpd_session_set_client_port; 0 when unknown */
SMTPD_API unsigned smtpd_session_client_port(const smtpd_session *s);
SMTPD_API int smtpd_session_set_client_port(smtpd_session *s, unsigned port);
/* the protocol name for Received: "SMTP", "ESMTP" or "LMTP" (from the
 * greeting command; an XCLIENT PROTO= overrides) */
SMTPD_API const char *smtpd_session_protocol(const smtpd_session *s);
/* this transaction's MAIL asked for REQUIRETLS */
SMTPD_API int smtpd_session_requiretls(const smtpd_session *s);
/* NULL when the session is not encrypted. */
SMTPD_API const smtpd_tls_info *smtpd_session_tls(const smtpd_session *s);
/* NULL when not authenticated. */
SMTPD_API const char *smtpd_session_auth_user(const smtpd_session *s);
SMTPD_API const char *smtpd_session_auth_mechanism(const smtpd_session *s);
/* Current transaction: sender (NULL before MAIL) and recipients. */
SMTPD_API const char *smtpd_session_sender(const smtpd_session *s);
SMTPD_API size_t smtpd_session_recipient_count(const smtpd_session *s);
SMTPD_API const char *smtpd_session_recipient(const smtpd_session *s,
                                              size_t i);
/* smtpd_session_smtputf8 - the transaction asked for SMTPUTF8. */
SMTPD_API int smtpd_session_smtputf8(const smtpd_session *s);

/* ---- helpers ---------------------------------------------------------- */

/* A PROXY protocol header (smtpd_proxy_parse). */
typedef struct smtpd_proxy_info {
  int version;       /* 1 or 2 */
  int local;         /* v2 LOCAL / v1 UNKNOWN: no address to take */
  int family;        /* 4, 6 or 0 (unix or unspecified) */
  char src_addr[46]; /* text form, "" when local */
  char dst_addr[46];
  unsigned src_port, dst_port;
} smtpd_proxy_info;

/* smtpd_proxy_parse - parse a PROXY v1/v2 header at the start of buf.
 * Returns its length in octets (> 0) when complete and valid, 0 when more
 * input is needed (never more than 1024 + 16 octets in all), or
 * SMTPD_ERR_INVALID_ARGUMENT when it is malformed or too long. For hosts
 * that must read the header before anything else (implicit TLS);
 * smtpd_session_set_proxy uses it. */
SMTPD_API ptrdiff_t smtpd_proxy_parse(const void *buf, size_t len,
                                      smtpd_proxy_info *out);

/* smtpd_neuter - copy src into dst (cap > 0, always NUL-terminated),
 * replacing controls, non-ASCII and ` <>()\\";@` with '?'. Returns the
 * length src would need (snprintf style). */
SMTPD_API size_t smtpd_neuter(char *dst, size_t cap, const char *src);

#ifdef __cplusplus
}
#endif
#endif /* SMTPD_SMTPD_H */
