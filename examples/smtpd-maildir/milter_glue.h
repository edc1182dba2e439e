/*
 * milter_glue.h - smtpd-maildir: Milter filters (OpenDKIM, rspamd, ...)
 * through libsmtpd-milter (include/smtpd/milter.h), without ever blocking
 * the event loop.
 *
 *   mg_option          --milter, --milter-default-action, --milter-timeout
 *   mg_server_new/del  the filter list (addresses resolved once, at start)
 *   mg_conn_new/del    one session's chain: a non-blocking socket per
 *                      filter, registered with the example's poller
 *   mg_on_*            called from the session callbacks of that name;
 *                      they return the session's verdict (DEFER while the
 *                      filters are asked). They never do I/O themselves.
 *   mg_event           a filter socket is ready (poller events whose
 *                      object type is MG_OBJ_MILTER)
 *   mg_tick            filter timers (the milter objects' timeout values)
 *   mg_next            after every loop round: settle the connections
 *                      whose filters moved (write, close, re-arm) and
 *                      hand them back to be pumped (conn_pump)
 *
 * At the end of the message the chain's edit list is applied to the
 * spooled message with the library's streaming rewriter; the edited copy
 * replaces the spool and the server's normal delivery commits it.
 *
 * Without the Milter adapter (SMTPD_HAVE_MILTER undefined) every function
 * is a stub: --milter is refused, the rest does nothing.
 */
#ifndef SMTPD_MAILDIR_MILTER_GLUE_H
#define SMTPD_MAILDIR_MILTER_GLUE_H

#include <sys/socket.h>

#include "smtpd/smtpd.h"
#include "maildir.h"
#include "poller.h"

#define MG_OBJ_MILTER 0x4d47 /* poller object type of a filter socket */
#define MG_MAX 16            /* filters at most (the library's limit) */

enum { MG_OPT_MILTER = 0, MG_OPT_ACTION, MG_OPT_TIMEOUT };

typedef struct mg_options {
  const char *spec[MG_MAX]; /* inet:HOST:PORT, unix:PATH, ... in order */
  int n;
  int action;               /* 0 tempfail (default), 1 accept, 2 reject */
  long timeout_s;           /* 0: library defaults (30 s / 300 s) */
} mg_options;

typedef struct mg_server mg_server;
typedef struct mg_conn mg_conn;

/* The server's delivery: commits the spooled message (*msg) and answers. */
typedef smtpd_verdict (*mg_deliver_fn)(smtpd_session *s,
                                       const smtpd_message *m, void *owner);

/* mg_option - one command-line option (MG_OPT_*). 0 or -1. */
int mg_option(mg_options *o, int which, const char *arg);
/* mg_server_new - *out is NULL when no filter is configured. conflict:
 * the name of a given option filters cannot work with (--discard: no
 * spool; --lmtp: one verdict per recipient is not wired), or NULL.
 * 0 or -1 (message printed). */
int mg_server_new(mg_server **out, const mg_options *o, const char *conflict);
void mg_server_del(mg_server *ms);

/* mg_conn_new - *out NULL when ms is NULL. Starts connecting every filter;
 * call before smtpd_session_start. msg/md: the connection's spool. */
int mg_conn_new(mg_conn **out, mg_server *ms, poller *p, smtpd_session *s,
                const struct sockaddr *client, maildir *md, maildir_msg *msg,
                mg_deliver_fn deliver, void *owner);
/* mg_conn_del - QUIT (best effort), close, forget. Not from inside a
 * session callback. NULL: no-op. */
void mg_conn_del(mg_conn *mc);

/* Decisions (mc may be NULL: SMTPD_ACCEPT). */
smtpd_verdict mg_on_connect(mg_conn *mc);
smtpd_verdict mg_on_helo(mg_conn *mc, const smtpd_helo *h);
smtpd_verdict mg_on_mail(mg_conn *mc, const smtpd_mail *m);
smtpd_verdict mg_on_rcpt(mg_conn *mc, const smtpd_rcpt *r);
smtpd_verdict mg_on_data(mg_conn *mc, const char *queue_id);
/* the filters see the spool, then the deliver function runs with the
 * edited message in place (or the message is dropped: refused, DISCARD) */
smtpd_verdict mg_on_data_complete(mg_conn *mc, const smtpd_message *m);
void mg_on_rset(mg_conn *mc);
void mg_on_close(mg_conn *mc);

void mg_event(void *obj, unsigned events);
void mg_tick(mg_server *ms, uint64_t now_ms);
/* mg_next - the owner of the next connection to pump, or NULL. */
void *mg_next(mg_server *ms);

#endif
