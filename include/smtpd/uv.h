/*
 * uv.h - libsmtpd-uv: serve SMTP on a libuv loop.
 *
 * An optional adapter (library smtpd-uv, CMake target smtpd::uv, pkg-config
 * libsmtpd-uv) that does the host's loop for it: it listens on TCP (IPv4,
 * IPv6) and UNIX sockets, accepts connections, makes one smtpd_session per
 * connection wrapped in an smtpd_tls_session (plaintext, STARTTLS or
 * implicit TLS), and drives it: input the session did not take is kept and
 * fed again, replies are written in batches, backpressure works both ways,
 * pauses are honoured, the session's timeouts, deadlines and reply delays
 * run as uv timers, and a finished connection is closed cleanly. It also
 * enforces a maximum number of sessions and a per-client-address cap, and
 * shuts down gracefully. See docs/uv.md.
 *
 * The host keeps its policy in the ordinary smtpd_callbacks. Each callback
 * gets the connection's own user data (smtpd_uv_hooks.on_accept makes it)
 * as its last argument; the session's user_data slot belongs to the
 * adapter: use smtpd_uv_conn_of(session) to get from a session (in a SASL
 * verify function, say) to its connection and smtpd_uv_conn_data() to the
 * host's data.
 *
 * One thread: every function here must be called on the loop's thread.
 * Functions returning int give 0 or a negative smtpd_error (uv errors are
 * mapped to SMTPD_ERR_IO; smtpd_uv_last_uv_error() keeps the uv code).
 * This header includes <uv.h>.
 */
#ifndef SMTPD_UV_H
#define SMTPD_UV_H

/* <uv.h> needs POSIX declarations (pthread_rwlock_t, ...). A strict ISO C
 * build (-std=c11) that chose no feature-test macro gets POSIX 2008 here,
 * which takes effect when this is the first header included; otherwise
 * define _DEFAULT_SOURCE or _POSIX_C_SOURCE before any #include. */
#if defined(__STRICT_ANSI__) && !defined(_POSIX_C_SOURCE) &&               \
    !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) &&                       \
    !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <uv.h>

#include "smtpd/smtpd.h"

#ifdef __cplusplus
extern "C" {
#endif

struct smtpd_tls_ctx; /* include/smtpd/tls_gnutls.h */
struct smtpd_tls_session;

typedef struct smtpd_uv_server smtpd_uv_server;
typedef struct smtpd_uv_conn smtpd_uv_conn;

/* How a listener's connections start. */
typedef enum smtpd_uv_tls {
  SMTPD_UV_PLAIN = 0, /* plaintext; STARTTLS offered when the server has a
                         TLS context and SMTPD_OPT_STARTTLS is on */
  SMTPD_UV_IMPLICIT   /* TLS from the first byte (port 465, RFC 8314);
                         needs a TLS context */
} smtpd_uv_tls;

/* Server limits (smtpd_uv_server_set_limit). */
typedef enum smtpd_uv_limit {
  SMTPD_UV_MAX_SESSIONS = 0, /* open connections; default 1000. One more is
                                answered "421 4.7.0 Error: too many
                                sessions" and closed; beyond that margin
                                (1/16 more) a socket is closed unanswered */
  SMTPD_UV_MAX_PER_ADDR,     /* per client address; default 0 (no cap).
                                Over it: "421 4.7.0 Error: too many
                                connections from ADDR" */
  SMTPD_UV_BACKLOG,          /* listen(2) backlog; default 128 */
  SMTPD_UV_LIMIT_COUNT_
} smtpd_uv_limit;

/* Host hooks around each connection; every member is optional. */
#define SMTPD_UV_HOOKS_VERSION 1
typedef struct smtpd_uv_hooks {
  unsigned version; /* SMTPD_UV_HOOKS_VERSION */
  /* on_accept - a connection was accepted and its session made, before it
   * starts (smtpd_uv_conn_session works; the client address is set).
   * Set *conn_ud: it is passed to every callback of the session as ud.
   * Return SMTPD_ACCEPT, or SMTPD_REJECT to refuse the client (the
   * default 554, then closed) or SMTPD_DISCONNECT (421); for a reply text
   * of your own decide in the on_connect callback instead. NULL: conn_ud
   * is the server's user data. */
  smtpd_verdict (*on_accept)(smtpd_uv_conn *c, void **conn_ud,
                             void *server_ud);
  /* on_conn_close - the connection is closed; the session is about to be
   * deleted (still valid here). Free conn_ud. Called once for every
   * connection that was offered to on_accept (whatever it answered), and
   * never for one whose session could not be made. */
  void (*on_conn_close)(smtpd_uv_conn *c, void *conn_ud, void *server_ud);
  /* on_error - something worth a log line that the session cannot say:
   * a TLS failure, a socket error, a fatal session error. what is static
   * or valid during the call. c may be NULL (listener errors). */
  void (*on_error)(smtpd_uv_conn *c, const char *what, void *server_ud);
} smtpd_uv_hooks;

/* smtpd_uv_server_new - a server on loop. cfg is borrowed (must outlive
 * the server, read-only); cb is copied (its version as for
 * smtpd_session_new; NULL: no callbacks); hooks is copied (NULL: none);
 * server_ud is passed to the hooks. mem may be NULL (libc). */
SMTPD_API int smtpd_uv_server_new(smtpd_uv_server **out, uv_loop_t *loop,
                                  const smtpd_config *cfg,
                                  const smtpd_callbacks *cb,
                                  const smtpd_uv_hooks *hooks,
                                  void *server_ud, const smtpd_mem *mem);
/* smtpd_uv_server_set_tls - the TLS credentials for STARTTLS and implicit
 * TLS (borrowed; must outlive the server). Before the first listen. */
SMTPD_API int smtpd_uv_server_set_tls(smtpd_uv_server *srv,
                                      struct smtpd_tls_ctx *ctx);
SMTPD_API int smtpd_uv_server_set_limit(smtpd_uv_server *srv,
                                        smtpd_uv_limit which, uint64_t value);

/* smtpd_uv_listen_tcp - listen on addr ("127.0.0.1", "::", "0.0.0.0";
 * NULL: "::" dual-stack) and port (0: any; *bound_port, may be NULL,
 * receives the port bound). IPv4-mapped peers on a dual-stack socket are
 * reported in IPv4 form. */
SMTPD_API int smtpd_uv_listen_tcp(smtpd_uv_server *srv, const char *addr,
                                  unsigned port, smtpd_uv_tls mode,
                                  unsigned *bound_port);
/* smtpd_uv_listen_unix - listen on a UNIX socket path (an existing socket
 * file there is removed first). Its clients' address is "unix". */
SMTPD_API int smtpd_uv_listen_unix(smtpd_uv_server *srv, const char *path,
                                   smtpd_uv_tls mode);

/* smtpd_uv_server_shutdown - stop accepting (listeners closed) and end
 * every connection: one outside a transaction at once with "421 4.3.2
 * <host> Service shutting down"; one inside a transaction (after MAIL,
 * also during DATA) when the transaction ends, so what is acknowledged is
 * acknowledged; at deadline_ms (0: at once) every connection still open
 * gets the 421 (a paused one right after the host resumes it). done (may
 * be NULL) runs once every connection and listener is closed; then the
 * server may be deleted. Calling it again only shortens the deadline. */
SMTPD_API int smtpd_uv_server_shutdown(smtpd_uv_server *srv,
                                       uint32_t deadline_ms,
                                       void (*done)(smtpd_uv_server *srv,
                                                    void *server_ud));
/* smtpd_uv_server_del - free a server whose shutdown is complete (or that
 * never listened). SMTPD_ERR_INVALID_STATE (nothing freed) while a handle
 * is open. NULL is a no-op. */
SMTPD_API int smtpd_uv_server_del(smtpd_uv_server *srv);

/* smtpd_uv_server_sessions - open connections now. */
SMTPD_API size_t smtpd_uv_server_sessions(const smtpd_uv_server *srv);
SMTPD_API uv_loop_t *smtpd_uv_server_loop(const smtpd_uv_server *srv);
SMTPD_API void *smtpd_uv_server_data(const smtpd_uv_server *srv);
/* smtpd_uv_last_uv_error - the libuv error code behind the last
 * SMTPD_ERR_IO returned by a server call (0: none). */
SMTPD_API int smtpd_uv_last_uv_error(const smtpd_uv_server *srv);

/* ---- connections -------------------------------------------------------- */

/* smtpd_uv_conn_of - the connection whose session s is (NULL when s is not
 * one of the adapter's). Works inside callbacks and SASL verify
 * functions. */
SMTPD_API smtpd_uv_conn *smtpd_uv_conn_of(const smtpd_session *s);
SMTPD_API smtpd_session *smtpd_uv_conn_session(const smtpd_uv_conn *c);
SMTPD_API struct smtpd_tls_session *
smtpd_uv_conn_tls_session(const smtpd_uv_conn *c);
SMTPD_API void *smtpd_uv_conn_data(const smtpd_uv_conn *c);
SMTPD_API void smtpd_uv_conn_set_data(smtpd_uv_conn *c, void *conn_ud);
SMTPD_API smtpd_uv_server *smtpd_uv_conn_server(const smtpd_uv_conn *c);

/* smtpd_uv_conn_resume - the answer to a decision a callback deferred
 * (SMTPD_DEFER): smtpd_session_resume(), then the connection is driven
 * (replies written, kept input fed, timers set). Call it from any loop
 * callback (a uv timer, a uv_work_t's after_work, another socket's read),
 * never from inside one of this session's callbacks. A paused connection
 * stays open until it is resumed, even when its client went away. For a
 * deferred STARTTLS, ACCEPT makes the TLS connection first (TEMPFAIL when
 * that fails). Returns what smtpd_session_resume returned. */
SMTPD_API int smtpd_uv_conn_resume(smtpd_uv_conn *c, smtpd_verdict verdict);
/* smtpd_uv_conn_close - end the connection with a 421 (smtpd_session_close
 * with enh/text; NULL for defaults) and drive it. Not from a callback. */
SMTPD_API int smtpd_uv_conn_close(smtpd_uv_conn *c, const char *enh,
                                  const char *text);
/* smtpd_uv_conn_drive - run the connection's loop step now (after the host
 * changed something from outside the session's callbacks, such as
 * smtpd_session_set_reply while paused). resume and close call it. */
SMTPD_API void smtpd_uv_conn_drive(smtpd_uv_conn *c);

#ifdef __cplusplus
}
#endif
#endif /* SMTPD_UV_H */
