/*
 * milter.h - libsmtpd Milter adapter: a sans-I/O Milter (protocol 6)
 * client that plugs the Sendmail/Postfix filter ecosystem (OpenDKIM,
 * rspamd, ...) into an smtpd_session's decisions.
 *
 *   smtpd_milter_conf   the filters (in order), their failure policy,
 *                       timeouts, macros and limits; shared, read-only
 *                       once chains use it
 *   smtpd_milter_chain  one SMTP session's conversations with every
 *                       filter of the conf; its decision functions are
 *                       called from the session's callbacks and answer
 *                       with a verdict (DEFER while filters are asked)
 *   smtpd_milter        one filter connection: the host connects the
 *                       socket and moves bytes with feed / output /
 *                       consume, exactly like a session; timeouts are
 *                       values the host reads
 *   smtpd_milter_hsplit a bounded streaming header-section splitter
 *   smtpd_milter_rewriter  streams the original message into the edited
 *                       one (header edits applied, body replaced)
 *
 * Nothing here does I/O, reads a clock or keeps global state. The only
 * host code the library calls is the message reader the host registers
 * (smtpd_milter_chain_set_reader) and the end-of-message hook. Functions
 * returning int give 0 or a negative smtpd_error. See docs/milter.md.
 */
#ifndef SMTPD_MILTER_H
#define SMTPD_MILTER_H

#include "smtpd/smtpd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- protocol constants (the values libmilter's mfdef.h uses) ---------- */

#define SMTPD_MILTER_VERSION 6 /* protocol version offered */

/* actions a filter may ask for (SMFIF_*) */
#define SMTPD_MILTER_ACT_ADDHDRS 0x001u
#define SMTPD_MILTER_ACT_CHGBODY 0x002u
#define SMTPD_MILTER_ACT_ADDRCPT 0x004u
#define SMTPD_MILTER_ACT_DELRCPT 0x008u
#define SMTPD_MILTER_ACT_CHGHDRS 0x010u
#define SMTPD_MILTER_ACT_QUARANTINE 0x020u
#define SMTPD_MILTER_ACT_CHGFROM 0x040u
#define SMTPD_MILTER_ACT_ADDRCPT_PAR 0x080u
#define SMTPD_MILTER_ACT_SETSYMLIST 0x100u
#define SMTPD_MILTER_ACT_ALL 0x1ffu

/* protocol flags (SMFIP_*): NO* skip a stage, NR_* mean the filter will
 * not reply to that command */
#define SMTPD_MILTER_P_NOCONNECT 0x00000001u
#define SMTPD_MILTER_P_NOHELO 0x00000002u
#define SMTPD_MILTER_P_NOMAIL 0x00000004u
#define SMTPD_MILTER_P_NORCPT 0x00000008u
#define SMTPD_MILTER_P_NOBODY 0x00000010u
#define SMTPD_MILTER_P_NOHDRS 0x00000020u
#define SMTPD_MILTER_P_NOEOH 0x00000040u
#define SMTPD_MILTER_P_NR_HDR 0x00000080u
#define SMTPD_MILTER_P_NOUNKNOWN 0x00000100u
#define SMTPD_MILTER_P_NODATA 0x00000200u
#define SMTPD_MILTER_P_SKIP 0x00000400u
#define SMTPD_MILTER_P_RCPT_REJ 0x00000800u
#define SMTPD_MILTER_P_NR_CONN 0x00001000u
#define SMTPD_MILTER_P_NR_HELO 0x00002000u
#define SMTPD_MILTER_P_NR_MAIL 0x00004000u
#define SMTPD_MILTER_P_NR_RCPT 0x00008000u
#define SMTPD_MILTER_P_NR_DATA 0x00010000u
#define SMTPD_MILTER_P_NR_UNKN 0x00020000u
#define SMTPD_MILTER_P_NR_EOH 0x00040000u
#define SMTPD_MILTER_P_NR_BODY 0x00080000u
#define SMTPD_MILTER_P_HDR_LEADSPC 0x00100000u
/* what this client can do: every flag above except RCPT_REJ (rejected
 * recipients are never shown to filters) and UNKNOWN commands */
#define SMTPD_MILTER_P_SUPPORTED 0x001ff7ffu

#define SMTPD_MILTER_CHUNK 65535u      /* largest BODY chunk sent */
#define SMTPD_MILTER_MAX_PACKET 262144u /* largest reply packet accepted */

/* ---- configuration --------------------------------------------------------- */

typedef struct smtpd_milter_conf smtpd_milter_conf;
typedef struct smtpd_milter_chain smtpd_milter_chain;
typedef struct smtpd_milter smtpd_milter;

/* What the session does when a filter cannot be reached, times out,
 * closes or breaks the protocol (Postfix's milter_default_action). The
 * filter is not asked again in that session. */
typedef enum smtpd_milter_action {
  SMTPD_MILTER_TEMPFAIL = 0, /* default: this and every later decision it
                                would have been asked: 451 4.7.1 */
  SMTPD_MILTER_ACCEPT,       /* go on as if the filter were not there */
  SMTPD_MILTER_REJECT        /* 550 5.7.1 Command rejected */
} smtpd_milter_action;

/* Macro stages (SMFIM_*): the list of macro names sent before each
 * command. */
typedef enum smtpd_milter_stage {
  SMTPD_MILTER_STAGE_CONNECT = 0,
  SMTPD_MILTER_STAGE_HELO = 1,
  SMTPD_MILTER_STAGE_MAIL = 2,
  SMTPD_MILTER_STAGE_RCPT = 3,
  SMTPD_MILTER_STAGE_DATA = 4,
  SMTPD_MILTER_STAGE_EOM = 5,
  SMTPD_MILTER_STAGE_EOH = 6,
  SMTPD_MILTER_STAGE_COUNT_
} smtpd_milter_stage;

/* Timeouts, as Postfix's milter_{connect,command,content}_timeout. */
typedef enum smtpd_milter_timeout_kind {
  SMTPD_MILTER_TIMEOUT_NONE = 0, /* idle: nothing is awaited */
  SMTPD_MILTER_TIMEOUT_CONNECT,  /* until smtpd_milter_connected; 30 s */
  SMTPD_MILTER_TIMEOUT_COMMAND,  /* negotiation, envelope commands; 30 s */
  SMTPD_MILTER_TIMEOUT_CONTENT,  /* headers, body, end of message; 300 s */
  SMTPD_MILTER_TIMEOUT_COUNT_
} smtpd_milter_timeout_kind;

typedef enum smtpd_milter_limit {
  SMTPD_MILTER_LIMIT_HEADER,       /* one header field incl. folds, octets;
                                      default 65000 (fits a packet) */
  SMTPD_MILTER_LIMIT_HEADERS,      /* the header section; default 1 MiB */
  SMTPD_MILTER_LIMIT_REPLBODY,     /* a replacement body; default 64 MiB */
  SMTPD_MILTER_LIMIT_EDITS,        /* edits per message; default 10000 */
  SMTPD_MILTER_LIMIT_COUNT_
} smtpd_milter_limit;

/* smtpd_milter_conf_new - an empty list of filters; mem may be NULL. */
SMTPD_API int smtpd_milter_conf_new(smtpd_milter_conf **out,
                                    const smtpd_mem *mem);
SMTPD_API void smtpd_milter_conf_del(smtpd_milter_conf *conf);
/* smtpd_milter_conf_add - append a filter. name is what the host uses to
 * reach it ("inet:127.0.0.1:8891", "unix:/run/f.sock"; copied, not
 * interpreted: see smtpd_milter_parse_address). At most 16. */
SMTPD_API int smtpd_milter_conf_add(smtpd_milter_conf *conf, const char *name,
                                    smtpd_milter_action on_failure);
SMTPD_API size_t smtpd_milter_conf_count(const smtpd_milter_conf *conf);
SMTPD_API const char *smtpd_milter_conf_name(const smtpd_milter_conf *conf,
                                             size_t i);
/* smtpd_milter_conf_set_timeout - milliseconds reported by
 * smtpd_milter_timeout() for that kind, for every filter. */
SMTPD_API int smtpd_milter_conf_set_timeout(smtpd_milter_conf *conf,
                                            smtpd_milter_timeout_kind which,
                                            uint32_t ms);
SMTPD_API int smtpd_milter_conf_set_limit(smtpd_milter_conf *conf,
                                          smtpd_milter_limit which,
                                          uint64_t value);
/* smtpd_milter_conf_set_macros - the macro names sent at a stage,
 * separated by spaces ("i {auth_type}"; copied). A filter may replace
 * the list for itself with SETSYMLIST. The defaults (docs/milter.md)
 * follow Postfix: CONNECT "j _ {daemon_name} {client_addr} {client_port}
 * {client_name} {client_ptr}", HELO "{tls_version} {cipher} {cipher_bits}
 * {cert_subject} {cert_issuer}", MAIL "i {auth_type} {auth_authen}
 * {auth_author} {mail_addr}", RCPT "i {rcpt_addr}", DATA, EOH, EOM "i". */
SMTPD_API int smtpd_milter_conf_set_macros(smtpd_milter_conf *conf,
                                           smtpd_milter_stage stage,
                                           const char *names);
/* smtpd_milter_conf_set_protocol - the actions and protocol flags
 * offered in negotiation (default SMTPD_MILTER_ACT_ALL and
 * SMTPD_MILTER_P_SUPPORTED; anything outside those is refused). */
SMTPD_API int smtpd_milter_conf_set_protocol(smtpd_milter_conf *conf,
                                             uint32_t actions,
                                             uint32_t flags);

/* smtpd_milter_parse_address - split "inet:HOST:PORT", "inet6:HOST:PORT",
 * "[inet:]PORT@HOST" or "unix:PATH" / "local:PATH". *family receives 4, 6
 * (numeric IPv6 host or inet6:) or 'U'; host receives the host or the
 * path (NUL-terminated, cap octets), *port the port (0 for unix). */
SMTPD_API int smtpd_milter_parse_address(const char *spec, int *family,
                                         char *host, size_t cap,
                                         uint16_t *port);

/* ---- edits ------------------------------------------------------------------ */

typedef enum smtpd_milter_edit_kind {
  SMTPD_MILTER_EDIT_ADDHEADER = 'h',  /* name, value: append */
  SMTPD_MILTER_EDIT_INSHEADER = 'i',  /* index (0 = first), name, value */
  SMTPD_MILTER_EDIT_CHGHEADER = 'm',  /* index (1 = first of that name),
                                         name, value ("" deletes) */
  SMTPD_MILTER_EDIT_CHGFROM = 'e',    /* name = sender, value = ESMTP
                                         args or NULL */
  SMTPD_MILTER_EDIT_ADDRCPT = '+',    /* name = recipient */
  SMTPD_MILTER_EDIT_ADDRCPT_PAR = '2',/* name = recipient, value = args */
  SMTPD_MILTER_EDIT_DELRCPT = '-',    /* name = recipient */
  SMTPD_MILTER_EDIT_REPLBODY = 'b',   /* data/len: the whole new body */
  SMTPD_MILTER_EDIT_QUARANTINE = 'q'  /* name = reason */
} smtpd_milter_edit_kind;

/* One edit. Header values are exactly what follows the colon when the
 * header is written: the client puts back the space a filter without
 * HDR_LEADSPC expects, and line breaks inside are "\r\n" once written by
 * the rewriter (filters fold with "\n"). */
typedef struct smtpd_milter_edit {
  smtpd_milter_edit_kind kind;
  size_t milter;       /* index of the filter in the conf */
  uint32_t index;
  const char *name;
  const char *value;
  const uint8_t *data;
  size_t len;
} smtpd_milter_edit;

/* ---- chain: one SMTP session's filters ------------------------------------ */

/* The message as filters will see it at the end of DATA: the host reads
 * it back from its spool (dot-unstuffed, CRLF lines, exactly what on_body
 * delivered, plus anything it prepended such as a Received: line).
 * Return the octets copied (0 at the end), or a negative value on error
 * (the chain then answers TEMPFAIL). Called only from the chain's own
 * calls (on_data_complete, feed, consume), never from another thread. */
typedef ptrdiff_t (*smtpd_milter_read_fn)(void *ctx, uint64_t offset,
                                          void *buf, size_t cap);

/* The filters' verdict on a message is known (at once, or from inside
 * smtpd_milter_feed/consume/timeout_expired/fail). The hook returns the
 * final verdict for the session: typically it writes the edited message
 * (smtpd_milter_chain_edits, the rewriter) and answers SMTPD_ACCEPT, or
 * SMTPD_TEMPFAIL when that failed. It may call smtpd_session_set_reply.
 * It must not return SMTPD_DEFER. Without a hook the filters' verdict is
 * the session's. */
typedef smtpd_verdict (*smtpd_milter_eom_fn)(smtpd_milter_chain *ch,
                                             smtpd_verdict verdict,
                                             void *ctx);

/* smtpd_milter_chain_new - the filters of conf for session s (both
 * borrowed; they must outlive the chain). Creates one smtpd_milter per
 * filter, each waiting for the host to connect it. */
SMTPD_API int smtpd_milter_chain_new(smtpd_milter_chain **out,
                                     const smtpd_milter_conf *conf,
                                     smtpd_session *s);
/* smtpd_milter_chain_del - free it and its connections (NULL: no-op).
 * Sends nothing: call smtpd_milter_chain_quit first for an orderly end. */
SMTPD_API void smtpd_milter_chain_del(smtpd_milter_chain *ch);
SMTPD_API size_t smtpd_milter_chain_count(const smtpd_milter_chain *ch);
SMTPD_API smtpd_milter *smtpd_milter_chain_get(smtpd_milter_chain *ch,
                                               size_t i);
SMTPD_API int smtpd_milter_chain_set_reader(smtpd_milter_chain *ch,
                                            smtpd_milter_read_fn fn,
                                            void *ctx);
SMTPD_API int smtpd_milter_chain_set_eom_hook(smtpd_milter_chain *ch,
                                              smtpd_milter_eom_fn fn,
                                              void *ctx);
/* smtpd_milter_chain_set_macro - a macro value the host knows ("i" the
 * queue id, "{daemon_name}", "v", "{auth_author}", ...; copied). It
 * overrides the value the chain derives from the session. NULL value
 * removes it. */
SMTPD_API int smtpd_milter_chain_set_macro(smtpd_milter_chain *ch,
                                           const char *name,
                                           const char *value);
/* smtpd_milter_chain_set_client - what CONNECT tells filters besides the
 * session's client address and name: family 4, 6, 'U' (unix) or 0
 * (unknown) and the client's port. */
SMTPD_API int smtpd_milter_chain_set_client(smtpd_milter_chain *ch,
                                            int family, uint16_t port);

/* Decisions: call each from the session callback of the same name and
 * return what it returns. SMTPD_DEFER means the filters are being asked;
 * the chain calls smtpd_session_resume itself (after
 * smtpd_session_set_reply when a filter chose the reply) from inside
 * smtpd_milter_feed / consume / timeout_expired / fail / connected. */
SMTPD_API smtpd_verdict smtpd_milter_on_connect(smtpd_milter_chain *ch);
SMTPD_API smtpd_verdict smtpd_milter_on_helo(smtpd_milter_chain *ch,
                                             const smtpd_helo *helo);
SMTPD_API smtpd_verdict smtpd_milter_on_mail(smtpd_milter_chain *ch,
                                             const smtpd_mail *mail);
SMTPD_API smtpd_verdict smtpd_milter_on_rcpt(smtpd_milter_chain *ch,
                                             const smtpd_rcpt *rcpt);
SMTPD_API smtpd_verdict smtpd_milter_on_data(smtpd_milter_chain *ch);
SMTPD_API smtpd_verdict smtpd_milter_on_data_complete(smtpd_milter_chain *ch,
                                                      const smtpd_message *m);
/* smtpd_milter_on_rset - the transaction ended without a message (RSET,
 * a new HELO, a refused message): ABORT to every filter inside one. */
SMTPD_API void smtpd_milter_on_rset(smtpd_milter_chain *ch);
/* smtpd_milter_chain_quit - the session ended (on_close, or before
 * deleting it): QUIT to every connected filter. A decision still being
 * asked is abandoned (the session is not resumed). */
SMTPD_API void smtpd_milter_chain_quit(smtpd_milter_chain *ch);

/* Results of the last message, valid until the next MAIL/RSET/quit. */
SMTPD_API size_t smtpd_milter_chain_edits(const smtpd_milter_chain *ch,
                                          const smtpd_milter_edit **edits);
/* smtpd_milter_chain_discard - a filter said DISCARD: the client was told
 * the message was accepted; deliver nothing. */
SMTPD_API int smtpd_milter_chain_discard(const smtpd_milter_chain *ch);
/* smtpd_milter_chain_busy - a decision is waiting for filters. */
SMTPD_API int smtpd_milter_chain_busy(const smtpd_milter_chain *ch);

/* ---- one filter connection ------------------------------------------------- */

SMTPD_API size_t smtpd_milter_index(const smtpd_milter *m);
SMTPD_API const char *smtpd_milter_name(const smtpd_milter *m);
/* smtpd_milter_connected - the host's socket is connected: option
 * negotiation is queued. */
SMTPD_API int smtpd_milter_connected(smtpd_milter *m);
/* smtpd_milter_fail - the host could not connect, read or write, or the
 * filter closed the connection (reason for smtpd_milter_error; copied).
 * The failure policy applies. Returns what resuming the session returned. */
SMTPD_API int smtpd_milter_fail(smtpd_milter *m, const char *reason);
/* smtpd_milter_feed - bytes read from the filter. Takes them all (returns
 * len) or a negative error: what resuming the session returned. A
 * protocol error is not an error here: the failure policy applies and
 * smtpd_milter_is_failed() becomes true. */
SMTPD_API ptrdiff_t smtpd_milter_feed(smtpd_milter *m, const void *data,
                                      size_t len);
SMTPD_API size_t smtpd_milter_output(smtpd_milter *m, const uint8_t **data);
SMTPD_API int smtpd_milter_consume(smtpd_milter *m, size_t n);
SMTPD_API int smtpd_milter_want_read(const smtpd_milter *m);
SMTPD_API int smtpd_milter_want_write(const smtpd_milter *m);
/* smtpd_milter_timeout - the timeout that applies now, in ms (0 and
 * SMTPD_MILTER_TIMEOUT_NONE when nothing is awaited). Restart the timer
 * whenever bytes are read (a PROGRESS reply is bytes) or written. */
SMTPD_API uint32_t smtpd_milter_timeout(const smtpd_milter *m,
                                        smtpd_milter_timeout_kind *kind);
SMTPD_API int smtpd_milter_timeout_expired(smtpd_milter *m);
/* smtpd_milter_is_failed - the failure policy applies to this filter for
 * the rest of the session; close its socket. */
SMTPD_API int smtpd_milter_is_failed(const smtpd_milter *m);
/* smtpd_milter_is_done - failed, or QUIT written: close the socket. */
SMTPD_API int smtpd_milter_is_done(const smtpd_milter *m);
SMTPD_API const char *smtpd_milter_error(const smtpd_milter *m);
/* negotiated values (0 before negotiation) */
SMTPD_API uint32_t smtpd_milter_actions(const smtpd_milter *m);
SMTPD_API uint32_t smtpd_milter_flags(const smtpd_milter *m);

/* ---- header splitter ------------------------------------------------------- */

typedef struct smtpd_milter_hsplit smtpd_milter_hsplit;

/* One header field. raw is its octets as received (every line, with
 * their line ends); value is what follows the colon up to the last
 * line's end, folds included. */
typedef struct smtpd_milter_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
  const uint8_t *raw;
  size_t raw_len;
} smtpd_milter_header;

typedef void (*smtpd_milter_header_fn)(void *ctx,
                                       const smtpd_milter_header *h);

/* Why the header section ended (smtpd_milter_hsplit_end). */
typedef enum smtpd_milter_hsplit_end {
  SMTPD_MILTER_HS_MORE = 0,      /* not yet */
  SMTPD_MILTER_HS_BLANK,         /* the empty line (part of the section) */
  SMTPD_MILTER_HS_NOT_HEADER,    /* a line that is no header field (no
                                    colon, bad name, a leading fold): it
                                    starts the body */
  SMTPD_MILTER_HS_TOO_LONG,      /* a field over LIMIT_HEADER or the
                                    section over LIMIT_HEADERS: that field
                                    starts the body */
  SMTPD_MILTER_HS_EOF            /* the message ended in its headers */
} smtpd_milter_hsplit_end;

/* smtpd_milter_hsplit_new - max_field: the longest field it buffers;
 * max_section: the longest header section. */
SMTPD_API int smtpd_milter_hsplit_new(smtpd_milter_hsplit **out,
                                      const smtpd_mem *mem, size_t max_field,
                                      size_t max_section);
SMTPD_API void smtpd_milter_hsplit_del(smtpd_milter_hsplit *h);
/* smtpd_milter_hsplit_feed - message octets; fn is called for each
 * complete field. Returns the octets taken (fewer than len once the
 * section ended: the rest is body) or SMTPD_ERR_NOMEM. */
SMTPD_API ptrdiff_t smtpd_milter_hsplit_feed(smtpd_milter_hsplit *h,
                                             const void *data, size_t len,
                                             smtpd_milter_header_fn fn,
                                             void *ctx);
/* smtpd_milter_hsplit_finish - the message ended. */
SMTPD_API int smtpd_milter_hsplit_finish(smtpd_milter_hsplit *h,
                                         smtpd_milter_header_fn fn,
                                         void *ctx);
SMTPD_API smtpd_milter_hsplit_end smtpd_milter_hsplit_state(
    const smtpd_milter_hsplit *h);
/* smtpd_milter_hsplit_body_offset - once ended: where the body starts in
 * the message (octets of header section, blank line included). */
SMTPD_API uint64_t smtpd_milter_hsplit_body_offset(
    const smtpd_milter_hsplit *h);
/* smtpd_milter_hsplit_pending - once ended: octets the splitter took
 * that belong to the body (the line that ended the section); they start
 * at body_offset. */
SMTPD_API size_t smtpd_milter_hsplit_pending(const smtpd_milter_hsplit *h,
                                             const uint8_t **data);

/* ---- rewriter ---------------------------------------------------------------- */

typedef struct smtpd_milter_rewriter smtpd_milter_rewriter;

/* smtpd_milter_rewriter_new - writes the message with the header and body
 * edits of edits[] applied in order (envelope edits and QUARANTINE are
 * the host's; they are ignored here). edits is borrowed. max_field,
 * max_section as for the splitter (0: the defaults). */
SMTPD_API int smtpd_milter_rewriter_new(smtpd_milter_rewriter **out,
                                        const smtpd_mem *mem,
                                        const smtpd_milter_edit *edits,
                                        size_t nedits, size_t max_field,
                                        size_t max_section);
SMTPD_API void smtpd_milter_rewriter_del(smtpd_milter_rewriter *rw);
/* smtpd_milter_rewriter_feed - original message octets. Returns how many
 * were taken (fewer while 64 KiB of output wait) or SMTPD_ERR_NOMEM. */
SMTPD_API ptrdiff_t smtpd_milter_rewriter_feed(smtpd_milter_rewriter *rw,
                                               const void *data, size_t len);
/* smtpd_milter_rewriter_finish - the original ended; then drain. */
SMTPD_API int smtpd_milter_rewriter_finish(smtpd_milter_rewriter *rw);
SMTPD_API size_t smtpd_milter_rewriter_output(smtpd_milter_rewriter *rw,
                                              const uint8_t **data);
SMTPD_API int smtpd_milter_rewriter_consume(smtpd_milter_rewriter *rw,
                                            size_t n);

#ifdef __cplusplus
}
#endif
#endif /* SMTPD_MILTER_H */
