/*
 * sasl_cyrus.h - an AUTH backend (include/smtpd/sasl.h) on Cyrus SASL
 * (libsasl2), built as libsmtpd-sasl-cyrus when SMTPD_WITH_CYRUS_SASL.
 *
 * Every mechanism libsasl2 offers (PLAIN, LOGIN, CRAM-MD5, DIGEST-MD5,
 * SCRAM-*, ...) becomes available to AUTH; <appname>.conf picks the
 * password check (pwcheck_method, auxprop_plugin, sasldb_path, ...) and
 * mech_list. Each AUTH exchange gets its own sasl_conn_t, disposed of when
 * the exchange ends whatever the outcome (never reused after a failure).
 *
 * Process-wide state: libsasl2 keeps its configuration, plugins and
 * callbacks in globals, so sasl_server_init() happens once per process.
 * The adapter counts its live backends: the first one initialises
 * libsasl2, the last smtpd_sasl_cyrus_del() calls sasl_server_done().
 * Further backends may coexist only with the same appname, config_dir and
 * log function (service, realm, FQDN, addresses may differ); otherwise
 * smtpd_sasl_cyrus_new() fails with SMTPD_ERR_INVALID_STATE. A host that
 * calls sasl_server_init() itself sets host_initialised. Calls into
 * libsasl2 are serialised by one process-wide mutex, since libsasl2's
 * default mutexes do nothing. See docs/sasl.md.
 */
#ifndef SMTPD_SASL_CYRUS_H
#define SMTPD_SASL_CYRUS_H

#include "smtpd/sasl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Log levels as libsasl2 reports them (SASL_LOG_ERR = 1 ... SASL_LOG_PASS
 * = 7); msg is libsasl2's text, valid during the call. */
typedef void (*smtpd_sasl_cyrus_log_fn)(int level, const char *msg,
                                        void *ctx);

#define SMTPD_SASL_CYRUS_OPTIONS_VERSION 1

typedef struct smtpd_sasl_cyrus_options {
  unsigned version;        /* SMTPD_SASL_CYRUS_OPTIONS_VERSION */
  /* process-wide (sasl_server_init) */
  const char *appname;     /* reads <appname>.conf; default "smtpd" */
  const char *config_dir;  /* directory of <appname>.conf (one directory,
                              given to libsasl2 by SASL_CB_GETCONFPATH);
                              NULL: libsasl2's default search path */
  smtpd_sasl_cyrus_log_fn log; /* NULL: libsasl2's default (syslog) */
  void *log_ctx;
  int host_initialised;    /* the host called sasl_server_init() itself:
                              appname, config_dir and log are ignored and
                              sasl_server_done() is left to the host */
  /* per connection (sasl_server_new) */
  const char *service;     /* registered service name; default "smtp" */
  const char *server_fqdn; /* NULL: libsasl2 asks gethostname() */
  const char *user_realm;  /* NULL: none (sasldb entries need the realm
                              they were created with, saslpasswd2 -u) */
  const char *local_addr;  /* "ip;port" of our end, or NULL */
  int allow_plaintext;     /* plaintext mechanisms (PLAIN, LOGIN) also
                              without TLS, whatever the session option */
} smtpd_sasl_cyrus_options;

/* smtpd_sasl_cyrus_options_init - defaults (version set, all else 0). */
SMTPD_API void smtpd_sasl_cyrus_options_init(smtpd_sasl_cyrus_options *o);

/* smtpd_sasl_cyrus_new - a backend for smtpd_config_set_sasl(). opts may
 * be NULL (defaults); its strings are copied. Its exchanges refuse the
 * client user names libsasl2 2.1.28 leaks memory on (over 768 octets;
 * LOGIN names empty or with white space at an end: BADPROT, docs/sasl.md)
 * and every "-PLUS" mechanism name (no channel binding: NOMECH). Returns 0, or
 * SMTPD_ERR_INVALID_ARGUMENT (bad version, empty or overlong names),
 * SMTPD_ERR_INVALID_STATE (another live backend initialised libsasl2
 * differently), SMTPD_ERR_SASL (sasl_server_init failed),
 * SMTPD_ERR_NOMEM. *out is untouched on failure. */
SMTPD_API int smtpd_sasl_cyrus_new(smtpd_sasl_backend **out,
                                   const smtpd_mem *mem,
                                   const smtpd_sasl_cyrus_options *opts);

/* smtpd_sasl_cyrus_del - free the backend (NULL is a no-op); the last one
 * calls sasl_server_done(). No session may use it any more. Returns 0, or
 * SMTPD_ERR_INVALID_ARGUMENT and frees nothing when the table is not one
 * smtpd_sasl_cyrus_new made (another adapter's, a host's, a copy).
 * smtpd_sasl_backend_del() frees it too. */
SMTPD_API int smtpd_sasl_cyrus_del(smtpd_sasl_backend *backend);

#ifdef __cplusplus
}
#endif
#endif /* SMTPD_SASL_CYRUS_H */
