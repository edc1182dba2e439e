/*
 * tr_internal.h - libsmtpd-transcript internals, shared by its files.
 * The driver uses only the public headers of the core (smtpd.h, sasl.h);
 * it never includes lib/internal.h.
 *
 *   text.c    allocation through smtpd_mem, growable buffers, escaped text
 *   format.c  the transcript format: escapes, directives, actions, tags
 *   result.c  what a run reports: first mismatch, out of memory, trace
 *   events.c  the session's callbacks: event log, scripted decisions, and
 *             the chain to the host's own callbacks
 *   run.c     driving the session: packets, feeding, pausing, actions,
 *             configuration
 *   check.c   expectation groups: server lines, EHLO keywords, wildcards,
 *             events, bodies, timeouts; reading the session's output
 *   api.c     the public functions: options by version, files, reports
 *
 * Calls run one way, top down: api.c, run.c, check.c, events.c, then
 * format.c and result.c, then text.c; no file calls one above it.
 *
 * Functions shared between the files are named smtpd_tr_* (hidden, but a
 * static archive shares one namespace with the test program that links
 * it: Check itself defines a tr_free).
 */
#ifndef SMTPD_TR_INTERNAL_H
#define SMTPD_TR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "smtpd/sasl.h"
#include "smtpd/smtpd.h"
#include "smtpd/transcript.h"

#define TR_MAX_FILE (16u * 1024u * 1024u) /* transcript file size cap */
#define TR_MAX_ITEM (16u * 1024u * 1024u) /* unescaped bytes per line */

/* ---- text.c ---------------------------------------------------------- */

/* smtpd_tr_malloc / smtpd_tr_realloc / smtpd_tr_free - through m (never NULL:
 * api.c puts smtpd_mem_default() there when the caller gave none). */
void *smtpd_tr_malloc(const smtpd_mem *m, size_t n);
void *smtpd_tr_realloc(const smtpd_mem *m, void *p, size_t n);
void smtpd_tr_free(const smtpd_mem *m, void *p);

/* buf - a growable byte buffer. */
typedef struct tr_buf {
  unsigned char *p;
  size_t len, cap;
} tr_buf;

int smtpd_tr_buf_reserve(const smtpd_mem *m, tr_buf *b, size_t n); /* 0 / -1 */
int smtpd_tr_buf_add(const smtpd_mem *m, tr_buf *b, const void *d, size_t n);
int smtpd_tr_buf_addc(const smtpd_mem *m, tr_buf *b, int c);
void smtpd_tr_buf_free(const smtpd_mem *m, tr_buf *b);

/* tbuf - fixed-size text that ends in "..." when it overflows. */
typedef struct tr_tbuf {
  char *p;
  size_t cap, len;
  int full;
} tr_tbuf;

void smtpd_tr_tb_init(tr_tbuf *t, char *p, size_t cap);
void smtpd_tr_tb_put(tr_tbuf *t, const char *s, size_t n);
void smtpd_tr_tb_str(tr_tbuf *t, const char *s);
/* smtpd_tr_tb_esc - bytes with the transcript escapes (the inverse of the
 * format's unescaping, so an actual line can be pasted back). */
void smtpd_tr_tb_esc(tr_tbuf *t, const unsigned char *b, size_t n);
/* smtpd_tr_tb_pat - an encoded pattern (see format.c: TR_WILD), wildcards
 * shown as \* */
void smtpd_tr_tb_pat(tr_tbuf *t, const unsigned char *b, size_t n);

/* Patterns: S: and E: text with at least one \* is stored encoded: the
 * byte 0 starts a pair, 0 0 for a literal NUL and 0 '*' for a wildcard
 * (one or more bytes other than a space). Items without a wildcard are
 * stored as plain bytes. */
#define TR_WILD '*'

/* ---- the parsed transcript (format.c) --------------------------------- */

enum tr_item_type {
  IT_CFG = 1, IT_DECIDE, IT_EFFECTS, IT_C, IT_BREAK, IT_S, IT_NOTHING,
  IT_CLOSED, IT_E, IT_ENOT, IT_B, IT_T, IT_ACTION,
  IT_SKW /* S+ / S-: an EHLO keyword present / absent */
};

enum tr_cfg_kind {
  CFG_HOSTNAME = 1, CFG_BANNER, CFG_LIMIT, CFG_TIMEOUT, CFG_OPTION,
  CFG_LINE_ENDING, CFG_SYNC, CFG_LONG_LINE, CFG_EHLO_KEYWORD, CFG_CLIENT,
  CFG_IMPLICIT_TLS, CFG_SPLIT, CFG_SASL, CFG_PARAM, CFG_COMMAND, CFG_PROXY
};

/* Decision events: the callbacks that return an smtpd_verdict. */
enum tr_ev_kind {
  EV_CONNECT = 0, EV_HELO, EV_MAIL, EV_RCPT, EV_DATA, EV_DATA_COMPLETE,
  EV_VRFY, EV_BODY, EV_STARTTLS, EV_COMMAND, EV_DATA_COMPLETE_RCPT,
  EV_XCLIENT, EV_COUNT_
};
extern const char *const smtpd_tr_ev_names[EV_COUNT_];

enum tr_action_kind { ACT_TIMEOUT = 1, ACT_TLS, ACT_CLOSE, ACT_RESUME };

/* span - bytes in the parse payload buffer (offsets: it may move). */
typedef struct tr_span {
  size_t off, len;
  int set;
} tr_span;

/* reply - a host reply given by a directive: code, enh, text. */
typedef struct tr_reply {
  int has;
  int code;
  tr_span enh;
  tr_span text; /* unescaped; LF separates the lines of a multi-line reply */
} tr_reply;

typedef struct tr_item {
  int type;
  unsigned line;
  int sub;         /* cfg_kind / ev_kind / action_kind / timeout kind */
  int a, b;        /* cfg arguments; decide: a = once, b = verdict;
                      S+/S-: a = 1 present, 0 absent; !resume: a = 1
                      when a verdict was given */
  uint64_t num;
  tr_span data;    /* C/S/B/E text, cfg strings, action strings */
  tr_span data2;   /* second string (rdns, close text, tls cipher) */
  int defer;       /* decide: verdict is DEFER */
  int autoverdict; /* decide with defer: resume verdict, -1 = held */
  int raw;         /* C~ / B~: no CRLF implied */
  int wild;        /* S: / E: / E!: data is an encoded pattern */
  tr_reply rep;
} tr_item;

typedef struct tr_parsed {
  const smtpd_mem *mem;
  tr_item *items;
  size_t n, cap;
  tr_buf pay;
  int pinned;            /* @split given */
  smtpd_transcript_split split;
  size_t chunk;
  int uses_vrfy;         /* an @on/@every vrfy exists: install on_vrfy */
  int uses_xclient;      /* an @on/@every xclient exists: on_xclient is
                            installed (without it XCLIENT is refused) */
  int uses_command;      /* an @on/@every command or @effects exists:
                            install on_command */
  /* set by the caller before smtpd_tr_parse: what the mode refuses */
  int host_callbacks;    /* opts.callbacks: no scripted decisions */
  int host_config;       /* opts.config: no configuration directives */
} tr_parsed;

const unsigned char *smtpd_tr_P(const tr_parsed *p, tr_span s);

/* smtpd_tr_parse - text into p->items; SMTPD_OK, SMTPD_ERR_NOMEM, or
 * SMTPD_ERR_INVALID_ARGUMENT with res->line and res->message set. */
int smtpd_tr_parse(tr_parsed *p, const char *text, size_t len,
             smtpd_transcript_result *res);
/* smtpd_tr_perr - record a format error (res may be NULL). */
int smtpd_tr_perr(smtpd_transcript_result *res, unsigned line, const char *fmt,
            ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- a run (run.c, events.c, check.c) ---------------------------------- */

typedef struct tr_linemark {
  size_t off;
  unsigned line;
} tr_linemark;

typedef struct tr_run {
  const smtpd_mem *mem;
  tr_parsed *p;
  smtpd_transcript_result *res;
  const smtpd_transcript_opts *opts; /* full current-version copy */
  smtpd_config *cfg;
  int own_cfg;            /* cfg made by the driver (else the host's) */
  smtpd_session *s;
  smtpd_transcript_split split;
  size_t chunk;
  int status;             /* first failure; SMTPD_OK while running */

  /* host mode: the host's callbacks, copied by their version */
  int host;
  smtpd_callbacks hcb;

  tr_buf q;               /* client bytes, append-only */
  size_t qpos;            /* fed so far */
  size_t *bounds;         /* packet end offsets in q */
  size_t nbounds, capbounds;
  tr_linemark *lm;        /* source line of each client line in q */
  size_t nlm, caplm;

  tr_buf out;             /* server output read since the last check */
  tr_buf ev;              /* event log: records (uint32_t length, bytes) */
  size_t ev_mark;         /* start of the current check's window */
  tr_buf body;            /* body of the message being received */
  tr_buf last_body;       /* body of the last completed message */
  int have_last_body;

  size_t *pushed;         /* @on decisions in the order read */
  size_t npushed;
  unsigned char *used;    /* per item: @on decision consumed */
  long deflt[EV_COUNT_];  /* @every item per event, -1 none */

  smtpd_sasl_backend *sasl; /* @sasl: built-in backend */
  char *sasl_cred;        /* "user password" for it */
  int deferred;           /* a callback returned DEFER, not yet resumed */
  const tr_item *defer_item; /* scripted mode: the decision that deferred */
  int hook_asked;         /* host mode: on_paused already asked for this
                             pause (ask again only at a bare !resume) */
  int abort_given;        /* a decision (or resume) answered ABORT */
  int aborted;            /* ... and the call returned CALLBACK_FAILURE:
                             the session is over, nothing more is fed */
  int closed_asserted;
  unsigned cur_line;      /* transcript line being executed */
} tr_run;

/* result.c */
void smtpd_tr_fail(tr_run *r, unsigned line, const char *exp, const char *act,
             const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
void smtpd_tr_nomem(tr_run *r);
void smtpd_tr_trace(tr_run *r, const char *prefix, const unsigned char *b,
              size_t n);

/* run.c */
int smtpd_tr_run_parsed(tr_parsed *p, const smtpd_transcript_opts *opts,
                  smtpd_transcript_result *res);

/* events.c */
void smtpd_tr_log_event(tr_run *r, const char *text);
const unsigned char *smtpd_tr_ev_next(const tr_run *r, size_t *k, size_t *len);
void smtpd_tr_apply_reply(tr_run *r, const tr_reply *rep);
/* smtpd_tr_callbacks - the callbacks the driver gives the session: scripted
 * decisions, or the chain to r->hcb in host mode. */
void smtpd_tr_callbacks(const tr_run *r, smtpd_callbacks *cb);
/* smtpd_tr_host_callbacks - copy the host's callbacks by their version into
 * r->hcb; SMTPD_OK, SMTPD_ERR_INVALID_ARGUMENT or SMTPD_ERR_UNSUPPORTED */
int smtpd_tr_host_callbacks(tr_run *r, const smtpd_callbacks *cb);
/* smtpd_tr_sasl_verify - the @sasl backend's password check (ctx: the run) */
smtpd_verdict smtpd_tr_sasl_verify(smtpd_session *s, const char *mech,
                             const char *authcid, const char *authzid,
                             const char *password, size_t password_len,
                             void *ctx);

/* check.c */
void smtpd_tr_show_line(const unsigned char *b, size_t len, size_t pos,
                        char *dst, size_t cap, size_t *adv);
void smtpd_tr_check_group(tr_run *r, size_t from, size_t to);
/* smtpd_tr_drain - read and consume all queued output into r->out */
size_t smtpd_tr_drain(tr_run *r);

#endif /* SMTPD_TR_INTERNAL_H */
