/*
 * tls_gnutls.h - libsmtpd GnuTLS adapter: a memory-only TLS transport.
 *
 * The adapter sits between the host's socket and an smtpd_session. It does
 * no I/O: the host feeds it the ciphertext it read and pulls the
 * ciphertext it must write, with the same output/consume shape as
 * smtpd_session_output/consume, so one event loop serves plain and
 * encrypted connections alike. This header does not include GnuTLS's.
 *
 *   smtpd_tls_ctx      server credentials and settings, shared by many
 *                      connections (and threads, once configured)
 *   smtpd_tls_conn     one TLS connection (STARTTLS or implicit TLS), the
 *                      building block
 *   smtpd_tls_session  one client connection: an smtpd_session with TLS
 *                      composed in front of it, driven with the same
 *                      feed/output/consume/want/done calls as a plain
 *                      session, so one host loop serves plaintext,
 *                      STARTTLS and implicit TLS
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

/* ---- the TLS-wrapped session ---------------------------------------------
 *
 * An smtpd_tls_session sits between the socket and an smtpd_session and
 * does everything docs/tls.md describes for a host that drives TLS by
 * hand: plaintext before STARTTLS, the switch to TLS once the "220 Ready
 * to start TLS" was written, the handshake and its report to the session
 * (smtpd_session_tls_established), encryption of the replies,
 * close_notify after the last one (or in answer to the client's), and
 * the end-of-session rule under TLS.
 * Its calls have the shape of the session's: the host feeds it the raw
 * socket bytes (plaintext or ciphertext, it need not know which), writes
 * what smtpd_tls_session_output gives, and closes the connection when
 * smtpd_tls_session_is_done() says so. Without a TLS context it is a
 * plain session with the same calls.
 *
 * Ownership: the wrapper borrows the session and the context (both must
 * outlive it) and owns the TLS connection it makes. Delete it with
 * smtpd_tls_session_del before or after the session, but make no call on
 * it once the session is gone. Its own memory comes from the context's
 * smtpd_mem (libc without a context): before TLS one small allocation,
 * no buffers (the TLS connection is made by prepare, at the switch or,
 * for implicit TLS, by new); on plaintext every call passes straight
 * through to the session's. One thread at a time, like the
 * session. Do not call feed, eof, output or timeout_expired from inside
 * a callback of the session (when the wrapper itself ran it, feed, eof
 * and timeout_expired return SMTPD_ERR_INVALID_STATE and output moves
 * nothing); smtpd_tls_session_prepare is meant to be called from
 * on_starttls. See docs/tls.md, "The TLS-wrapped session". */

typedef struct smtpd_tls_session smtpd_tls_session;

typedef enum smtpd_tls_mode {
  SMTPD_TLS_STARTTLS = 0, /* plaintext first; TLS after an accepted
                             STARTTLS (ctx may be NULL: plaintext only) */
  SMTPD_TLS_IMPLICIT      /* TLS from the first byte (RFC 8314, port 465) */
} smtpd_tls_mode;

/* smtpd_tls_session_new - wrap session s, made with smtpd_session_new;
 * start it after this call (required for implicit TLS, which must be set
 * before start). ctx: the credentials for this connection's TLS, NULL
 * for none (then only SMTPD_TLS_STARTTLS, and STARTTLS must stay off in
 * the config). SMTPD_TLS_IMPLICIT calls smtpd_session_set_implicit_tls(s)
 * and makes the TLS connection now. *out and s are untouched on failure
 * (SMTPD_ERR_INVALID_ARGUMENT; SMTPD_ERR_INVALID_STATE when ctx has no
 * certificate, or for implicit TLS when s was already started;
 * SMTPD_ERR_NOMEM). */
SMTPD_API int smtpd_tls_session_new(smtpd_tls_session **out, smtpd_session *s,
                                    smtpd_tls_ctx *ctx, smtpd_tls_mode mode);
/* smtpd_tls_session_del - free the wrapper and its TLS connection (NULL
 * is a no-op). The session is not touched. Sends nothing. */
SMTPD_API void smtpd_tls_session_del(smtpd_tls_session *ts);

/* smtpd_tls_session_session - the wrapped session (for smtpd_session_*
 * calls: start, resume, close, set_reply, the accessors). */
SMTPD_API smtpd_session *smtpd_tls_session_session(const smtpd_tls_session *ts);

/* smtpd_tls_session_prepare - STARTTLS is about to be accepted: make the
 * TLS connection now, so that a failure can still be answered. Call it
 * from on_starttls (or while that decision is deferred, before resuming)
 * and return SMTPD_TEMPFAIL when it fails: the client gets "454 4.7.0
 * TLS not available due to local problem" and the session goes on in
 * plaintext. 0 when the connection is ready (also when it already was);
 * SMTPD_ERR_INVALID_STATE without a context or once TLS is running;
 * SMTPD_ERR_NOMEM. A STARTTLS accepted without it gets its connection
 * made at the switch; if that fails the client has its 220 already, so
 * the connection ends (smtpd_tls_session_error says why). An object
 * prepared for a STARTTLS that was then refused is freed. */
SMTPD_API int smtpd_tls_session_prepare(smtpd_tls_session *ts);

/* smtpd_tls_session_feed - raw bytes read from the socket. Returns how
 * many were taken (keep the rest and feed it again when
 * smtpd_tls_session_want_read() says so), or a negative error: a fatal
 * one from the session (SMTPD_ERR_NOMEM, SMTPD_ERR_CALLBACK_FAILURE; its
 * 421 may still be written), or SMTPD_ERR_INVALID_ARGUMENT /
 * SMTPD_ERR_INVALID_STATE (after smtpd_tls_session_eof, inside a
 * callback). Before the switch the bytes go to smtpd_session_feed (after
 * an accepted STARTTLS the session discards them); after it they are
 * ciphertext: the handshake is driven, records are decrypted into the
 * session, its replies encrypted. A TLS failure is not an error of this
 * call: the bytes are taken and dropped, the output holds the alert, and
 * smtpd_tls_session_is_done() follows once it is written. */
SMTPD_API ptrdiff_t smtpd_tls_session_feed(smtpd_tls_session *ts,
                                           const void *data, size_t len);
/* smtpd_tls_session_eof - the socket reached end of file (read returned
 * 0): no more input. Call it once everything read before was fed (feed
 * refuses more afterwards with SMTPD_ERR_INVALID_STATE); a loop that
 * reads only when it keeps nothing does that. Under TLS an unfinished
 * handshake or record then fails. What was fed before is still answered;
 * once nothing is left to write the connection is done (never while the
 * session is paused). */
SMTPD_API int smtpd_tls_session_eof(smtpd_tls_session *ts);

/* smtpd_tls_session_output - bytes to write to the socket (plaintext
 * before the switch, ciphertext after): *data points at them (valid
 * until the next call on the wrapper or its session), the count is
 * returned, 0 when nothing waits. Under TLS it first moves what is
 * waiting inside: encrypts the session's replies, delivers decrypted
 * input the session could not take before (it may therefore run the
 * session's callbacks), queues close_notify. Call it after every event,
 * including smtpd_session_resume/close. smtpd_tls_session_consume marks n
 * octets written; the switch to TLS happens when the last octet of the
 * 220 is consumed. */
SMTPD_API size_t smtpd_tls_session_output(smtpd_tls_session *ts,
                                          const uint8_t **data);
SMTPD_API int smtpd_tls_session_consume(smtpd_tls_session *ts, size_t n);

/* smtpd_tls_session_want_read - read the socket now (the session wants
 * input and, under TLS, the connection has room and is still open).
 * smtpd_tls_session_want_write - call smtpd_tls_session_output and write:
 * there are bytes, or work that output() will turn into bytes. Neither
 * says the connection is over: a paused session wants neither. */
SMTPD_API int smtpd_tls_session_want_read(const smtpd_tls_session *ts);
SMTPD_API int smtpd_tls_session_want_write(const smtpd_tls_session *ts);

/* smtpd_tls_session_is_done - close the connection and delete the
 * wrapper and the session. True when nothing is left to write (under TLS:
 * the last reply and close_notify, or the alert, are out) and either the
 * session is done (smtpd_session_is_done), or TLS ended (failure, the
 * client's close_notify, the connection could not be made), or the
 * client's end of file was reported, or the session closed before its
 * TLS handshake, or smtpd_tls_session_timeout_expired gave up on a client
 * that does not read. Never true while the session is paused (resume it
 * first, whatever happened to the connection). */
SMTPD_API int smtpd_tls_session_is_done(const smtpd_tls_session *ts);

/* smtpd_tls_session_timeout - which timer applies now and its length in
 * milliseconds: the session's (smtpd_session_timeout), or, while only
 * ciphertext is left to write, SMTPD_TIMEOUT_COMMAND with the session's
 * command timeout. Restart the timer whenever input is taken. kind may be
 * NULL. smtpd_tls_session_timeout_expired - the timer ran out: the
 * session answers "421 4.4.2 ... timeout exceeded" and closes; if it was
 * closing already (the client does not read its last reply), or the
 * client went away or TLS ended (what is left cannot be delivered), the
 * wrapper gives up and is done at once. */
SMTPD_API uint32_t smtpd_tls_session_timeout(const smtpd_tls_session *ts,
                                             smtpd_timeout *kind);
SMTPD_API int smtpd_tls_session_timeout_expired(smtpd_tls_session *ts);

/* smtpd_tls_session_is_tls - the handshake completed: the session is
 * encrypted (smtpd_session_tls() then holds the parameters). */
SMTPD_API int smtpd_tls_session_is_tls(const smtpd_tls_session *ts);
/* smtpd_tls_session_error - why the connection ended other than by the
 * session's own rule, for logs: the TLS failure ("TLS handshake failed:
 * ..."), "client closed the TLS session (close_notify)", "cannot set up
 * TLS: ...", a fatal session error, "client did not read". "" when
 * nothing of the kind happened. Valid while the wrapper lives. */
SMTPD_API const char *smtpd_tls_session_error(const smtpd_tls_session *ts);

#ifdef __cplusplus
}
#endif
#endif /* SMTPD_TLS_GNUTLS_H */
