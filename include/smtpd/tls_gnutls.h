/*
 * tls_gnutls.h - libsmtpd GnuTLS adapter: a memory-only TLS transport.
 *
 * The adapter sits between the host's socket and an smtpd_session. It does
 * no I/O: the host feeds it the ciphertext it read and pulls the
 * ciphertext it must write, with the same output/consume shape as
 * smtpd_session_output/consume, so one event loop serves plain and
 * encrypted connections alike. This header does not include GnuTLS's.
 *
 *   smtpd_tls_ctx   server credentials and settings, shared by many
 *                   connections (and threads, once configured)
 *   smtpd_tls_conn  one TLS connection (STARTTLS or implicit TLS)
 *
 * Functions returning int give 0 (SMTPD_OK), a positive SMTPD_TLS_AGAIN
 * where stated, or a negative smtpd_error. See docs/tls.md for the host
 * loop, the STARTTLS injection guarantees and the defaults.
 */
#ifndef SMTPD_TLS_GNUTLS_H
#define SMTPD_TLS_GNUTLS_H

#include "smtpd/smtpd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returned (positive) by smtpd_tls_conn_handshake: not finished, feed more
 * ciphertext (after writing out whatever smtpd_tls_conn_output holds).
 * Not an error: the adapters' positive results are listed beside the
 * error table in smtpd.h (SMTPD_RESULT_*), which keeps their values
 * apart from each other and from every smtpd_error. */
#define SMTPD_TLS_AGAIN SMTPD_RESULT_TLS_AGAIN

/* The default GnuTLS priority string: TLS 1.2 and 1.3 only, GnuTLS's
 * NORMAL cipher and group choices otherwise. */
#define SMTPD_TLS_DEFAULT_PRIORITY \
  "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"

/* Limits of one connection's buffers (octets). Ciphertext input holds two
 * maximal TLS records plus slack; smtpd_tls_conn_feed takes fewer bytes
 * when it is full. smtpd_tls_conn_write takes no more plaintext while
 * this much ciphertext waits to be written. */
#define SMTPD_TLS_INPUT_CAP (2u * (16384u + 2048u + 5u) + 1024u)
#define SMTPD_TLS_OUTPUT_CAP 65536u

/* ---- context ---------------------------------------------------------- */

typedef struct smtpd_tls_ctx smtpd_tls_ctx;
typedef struct smtpd_tls_conn smtpd_tls_conn;

/* Client certificate policy for smtpd_tls_ctx_set_client_verify. */
typedef enum smtpd_tls_client_verify {
  SMTPD_TLS_VERIFY_NONE = 0,  /* default: no certificate is requested */
  SMTPD_TLS_VERIFY_OPTIONAL,  /* requested; the handshake succeeds without
                                 one or with one that does not verify,
                                 smtpd_tls_info says which */
  SMTPD_TLS_VERIFY_REQUIRED   /* requested; the handshake fails unless the
                                 client presents a certificate that
                                 verifies against the CA file */
} smtpd_tls_client_verify;

/* smtpd_tls_ctx_new - a context with the default priority, session
 * tickets on (a fresh random ticket key) and no certificate yet. mem may
 * be NULL (libc); GnuTLS's own allocations use GnuTLS's allocator. *out
 * is untouched on failure. Configure the context before making
 * connections with it; after that it is read-only and may be shared by
 * connections in several threads. It must outlive its connections. */
SMTPD_API int smtpd_tls_ctx_new(smtpd_tls_ctx **out, const smtpd_mem *mem);
/* smtpd_tls_ctx_del - free the context (NULL is a no-op). */
SMTPD_API void smtpd_tls_ctx_del(smtpd_tls_ctx *ctx);

/* smtpd_tls_ctx_set_cert_files - server certificate and private key from
 * PEM files. cert_pem may hold a chain: the server certificate first,
 * then its intermediates. May be called again to add a certificate of
 * another key type (RSA and ECDSA side by side). */
SMTPD_API int smtpd_tls_ctx_set_cert_files(smtpd_tls_ctx *ctx,
                                           const char *cert_pem,
                                           const char *key_pem);
/* smtpd_tls_ctx_set_cert_mem - the same from PEM text in memory (copied;
 * need not be NUL-terminated). */
SMTPD_API int smtpd_tls_ctx_set_cert_mem(smtpd_tls_ctx *ctx,
                                         const void *cert, size_t certlen,
                                         const void *key, size_t keylen);
/* smtpd_tls_ctx_set_selfsigned - generate a fresh ECDSA P-256 key and a
 * self-signed certificate for hostname (NULL: "localhost"), valid for a
 * year, and use them. For tests and out-of-the-box examples. */
SMTPD_API int smtpd_tls_ctx_set_selfsigned(smtpd_tls_ctx *ctx,
                                           const char *hostname);
/* smtpd_tls_ctx_set_priority - a GnuTLS priority string (copied into
 * GnuTLS's parsed form); NULL restores SMTPD_TLS_DEFAULT_PRIORITY.
 * SMTPD_ERR_INVALID_ARGUMENT when GnuTLS rejects it;
 * smtpd_tls_ctx_error() then names the offending part. */
SMTPD_API int smtpd_tls_ctx_set_priority(smtpd_tls_ctx *ctx,
                                         const char *priority);
/* smtpd_tls_ctx_set_client_verify - request client certificates and
 * verify them against the PEM CA certificates in cafile (NULL allowed
 * only with SMTPD_TLS_VERIFY_NONE). */
SMTPD_API int smtpd_tls_ctx_set_client_verify(smtpd_tls_ctx *ctx,
                                              const char *cafile,
                                              smtpd_tls_client_verify mode);
/* smtpd_tls_ctx_set_tickets - session resumption tickets (RFC 5077, TLS
 * 1.3 PSK tickets) on (default) or off. */
SMTPD_API int smtpd_tls_ctx_set_tickets(smtpd_tls_ctx *ctx, int on);
/* smtpd_tls_ctx_error - why the last failing smtpd_tls_ctx_* call failed
 * (static English text; "" when none). */
SMTPD_API const char *smtpd_tls_ctx_error(const smtpd_tls_ctx *ctx);

/* smtpd_tls_generate_selfsigned - write a fresh ECDSA P-256 key (file
 * mode 0600) and a self-signed certificate for hostname (NULL:
 * "localhost") as PEM files, replacing existing ones. */
SMTPD_API int smtpd_tls_generate_selfsigned(const char *cert_path,
                                            const char *key_path,
                                            const char *hostname);

/* ---- connection ------------------------------------------------------- */

/* smtpd_tls_conn_new - a server-side connection awaiting the client's
 * first handshake message. ctx is borrowed and must outlive it. */
SMTPD_API int smtpd_tls_conn_new(smtpd_tls_conn **out, smtpd_tls_ctx *ctx);
/* smtpd_tls_conn_del - free the connection (NULL is a no-op). Sends
 * nothing: call smtpd_tls_conn_bye and write the output first for an
 * orderly close. */
SMTPD_API void smtpd_tls_conn_del(smtpd_tls_conn *c);

/* smtpd_tls_conn_feed - ciphertext read from the socket. Returns how many
 * octets were buffered (fewer than len, possibly 0, when the input buffer
 * is full: process with handshake/read/pump, then feed the rest), or a
 * negative error (SMTPD_ERR_TLS after a failure, SMTPD_ERR_INVALID_STATE
 * after smtpd_tls_conn_eof). */
SMTPD_API ptrdiff_t smtpd_tls_conn_feed(smtpd_tls_conn *c, const void *cipher,
                                        size_t len);
/* smtpd_tls_conn_eof - the socket reached end of file: no more input will
 * come. A handshake or record still incomplete then fails with a reason
 * ("closed during the handshake", truncation) instead of waiting. */
SMTPD_API int smtpd_tls_conn_eof(smtpd_tls_conn *c);

/* smtpd_tls_conn_handshake - advance the handshake with the input fed so
 * far. 0: complete (also on every later call); SMTPD_TLS_AGAIN: write the
 * output and feed more input; negative (SMTPD_ERR_TLS): failed for good,
 * smtpd_tls_conn_error() says why, and the output may hold an alert for
 * the client: write it, then close the socket. */
SMTPD_API int smtpd_tls_conn_handshake(smtpd_tls_conn *c);
/* smtpd_tls_conn_handshake_done - non-zero once the handshake succeeded
 * (and nothing failed since). */
SMTPD_API int smtpd_tls_conn_handshake_done(const smtpd_tls_conn *c);

/* smtpd_tls_conn_read - decrypted application data, at most cap octets.
 * Returns the count, 0 when no complete record is buffered yet,
 * SMTPD_ERR_CLOSED once the client sent close_notify, SMTPD_ERR_TLS on a
 * failure (bad record, alert, truncation after eof), and
 * SMTPD_ERR_INVALID_STATE before the handshake is complete: nothing fed
 * before the handshake ended can surface here unless it arrived in
 * records protected by the negotiated keys. */
SMTPD_API ptrdiff_t smtpd_tls_conn_read(smtpd_tls_conn *c, void *buf,
                                        size_t cap);
/* smtpd_tls_conn_write - encrypt plaintext into the output. Returns how
 * many octets were taken: fewer than len (possibly 0) while
 * SMTPD_TLS_OUTPUT_CAP octets of ciphertext wait to be written. Negative:
 * SMTPD_ERR_INVALID_STATE before the handshake, SMTPD_ERR_CLOSED after
 * smtpd_tls_conn_bye, SMTPD_ERR_TLS after a failure. */
SMTPD_API ptrdiff_t smtpd_tls_conn_write(smtpd_tls_conn *c, const void *plain,
                                         size_t len);

/* smtpd_tls_conn_output - ciphertext to write to the socket: *data points
 * at it (valid until the next call on the connection), the count is
 * returned; 0 when nothing waits. smtpd_tls_conn_consume marks n octets
 * written (SMTPD_ERR_INVALID_ARGUMENT when n exceeds what waits). */
SMTPD_API size_t smtpd_tls_conn_output(smtpd_tls_conn *c,
                                       const uint8_t **data);
SMTPD_API int smtpd_tls_conn_consume(smtpd_tls_conn *c, size_t n);

/* smtpd_tls_conn_want_read - the connection can take more ciphertext and
 * is neither failed nor closed. smtpd_tls_conn_want_write - output waits. */
SMTPD_API int smtpd_tls_conn_want_read(const smtpd_tls_conn *c);
SMTPD_API int smtpd_tls_conn_want_write(const smtpd_tls_conn *c);

/* smtpd_tls_conn_bye - queue close_notify (once; later writes fail with
 * SMTPD_ERR_CLOSED). Before the handshake completed nothing is queued. */
SMTPD_API int smtpd_tls_conn_bye(smtpd_tls_conn *c);

/* smtpd_tls_conn_error - why the connection failed or closed, for logs
 * (e.g. "received fatal alert: handshake_failure (Handshake failed)");
 * "" when nothing went wrong. Valid while the connection lives. */
SMTPD_API const char *smtpd_tls_conn_error(const smtpd_tls_conn *c);

/* smtpd_tls_conn_info - the negotiated parameters, after the handshake:
 * protocol "TLSv1.3", cipher suite "TLS_AES_256_GCM_SHA384" (IANA name),
 * key bits, client certificate request/verification and the verified
 * client's subject and issuer DN (RFC 4514). The strings belong to the
 * connection and are valid while it lives. SMTPD_ERR_INVALID_STATE before
 * the handshake is complete. Pass *out to smtpd_session_tls_established
 * (which copies it) and to the Received: helper. */
SMTPD_API int smtpd_tls_conn_info(smtpd_tls_conn *c, smtpd_tls_info *out);

/* smtpd_tls_conn_pump - move data between the connection and a session:
 * advance the handshake and, when it completes, report it with
 * smtpd_session_tls_established(); queue the session's reply bytes
 * through smtpd_tls_conn_write (and consume them from the session); hand
 * decrypted bytes to smtpd_session_feed, keeping what the session did not
 * take (at most one record) for the next call; when the session is
 * closing and its output is all encrypted, queue close_notify. Loops
 * until nothing moves. The host loop is: feed ciphertext, pump, write
 * smtpd_tls_conn_output, repeat.
 * Returns 0, SMTPD_ERR_CLOSED once the client sent close_notify and every
 * byte before it went to the session, or another negative error (TLS
 * failure: write the output, which may hold an alert, and close; or what
 * a session call returned). */
SMTPD_API int smtpd_tls_conn_pump(smtpd_tls_conn *c, smtpd_session *s);

#ifdef __cplusplus
}
#endif
#endif /* SMTPD_TLS_GNUTLS_H */
