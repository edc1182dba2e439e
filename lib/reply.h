/*
 * reply.h - internal: the reply module's interface (reply.c): the one
 * reply formatter, the output queue and the default reply table. Its fast
 * paths are inline here, so a module that queues output includes this
 * header; it stands on internal.h and calls only reply.c.
 */
#ifndef SMTPD_LIB_REPLY_H
#define SMTPD_LIB_REPLY_H

#include "internal.h"

/* The one reply formatter: a reply line "CCC" sep [enh " "] a b CRLF
 * into dst (room for smtpd_i_line_size octets); returns its length.
 * Inline: it is on every command's path. */
static inline size_t smtpd_i_line_size(size_t elen, size_t la, size_t lb) {
  return 4 + (elen ? elen + 1 : 0) + la + lb + 2;
}
static inline size_t smtpd_i_format_line(char *dst, int code, char sep,
                                         const char *enh, size_t elen,
                                         const char *a, size_t la,
                                         const char *b, size_t lb) {
  char *w = dst;
  w[0] = (char)('0' + code / 100);
  w[1] = (char)('0' + code / 10 % 10);
  w[2] = (char)('0' + code % 10);
  w[3] = sep;
  w += 4;
  if (elen) {
    memcpy(w, enh, elen);
    w[elen] = ' ';
    w += elen + 1;
  }
  if (la)
    memcpy(w, a, la), w += la;
  if (lb)
    memcpy(w, b, lb), w += lb;
  w[0] = '\r';
  w[1] = '\n';
  return (size_t)(w + 2 - dst);
}
void smtpd_i_fail(smtpd_session *s, int err);
int smtpd_i_append_grow(smtpd_session *s, const void *p, size_t n);
/* Queue n octets of output. Inline for the usual case, room in the
 * buffer: every reply goes through here. */
static inline int smtpd_i_append(smtpd_session *s, const void *p, size_t n) {
  if (n && s->out_start + s->out_len + n <= s->out_cap) {
    smtpd_i_copy(s->out + s->out_start + s->out_len, p, n);
    s->out_len += n;
    s->out_total += n;
    return 0;
  }
  return smtpd_i_append_grow(s, p, n);
}
/* use smtpd_i_out_first(s) as the output buffer, if there is none yet */
void smtpd_i_out_adopt(smtpd_session *s);
/* smtpd_i_reply is a macro so that strlen of literal texts folds at the
 * call site: replies are on every command's path. */
int smtpd_i_reply_n(smtpd_session *s, int code, char sep, const char *enh,
                    size_t elen, const char *a, size_t la, const char *b,
                    size_t lb);
static inline size_t smtpd_i_slen(const char *p) {
  return p ? strlen(p) : 0;
}
/* A reply whose code, enhanced code and text are string literals: the
 * whole line is built by the compiler, with and without the enhanced
 * code, and only copied. */
#define smtpd_i_reply_lit(s, code, enh, text)                               \
  ((s)->cfg->options[SMTPD_OPT_ENHANCEDSTATUSCODES]                          \
       ? smtpd_i_append((s), code " " enh " " text "\r\n",                   \
                        sizeof(code " " enh " " text "\r\n") - 1)            \
       : smtpd_i_append((s), code " " text "\r\n",                           \
                        sizeof(code " " text "\r\n") - 1))
#define smtpd_i_reply(s, code, enh, text)                                   \
  smtpd_i_reply_n((s), (code), ' ', (enh), smtpd_i_slen(enh), (text),      \
                  strlen(text), NULL, 0)
/* reply "code enh <hostname> text" */
int smtpd_i_reply_host(smtpd_session *s, int code, const char *enh,
                       const char *text);
int smtpd_i_greet(smtpd_session *s);
int smtpd_i_reply_base64(smtpd_session *s, int code, const uint8_t *data,
                         size_t len);
/* replies queued so far must be read before more input is taken */
static inline void smtpd_i_set_sync_mark(smtpd_session *s) {
  s->sync_mark = s->out_total;
}

typedef struct smtpd_i_dreply {
  int code;
  const char *enh;  /* "" when none */
  unsigned char elen;
  const char *text; /* "" with 220: the greeting; with 250: hostname */
  unsigned char tlen;
  unsigned char with_host; /* "code enh <hostname> text" */
  const char *line;        /* the whole line, CRLF included */
  size_t line_len;         /* unused without text (greeting, hostname) */
  const char *plain;       /* the same without the enhanced code */
  size_t plain_len;
} smtpd_i_dreply;
/* the default reply table: [kind][0 accept, 1 reject, 2 tempfail] */
extern const smtpd_i_dreply smtpd_i_defaults[K_COUNT_][3];
extern const smtpd_i_dreply smtpd_i_host_close; /* 421 4.3.2 */
/* the default reply of a decision kind for verdict v (ACCEPT, REJECT,
 * TEMPFAIL; DISCONNECT and ABORT give the 421) */
static inline const smtpd_i_dreply *smtpd_i_default_reply(smtpd_i_kind kind,
                                                          int v) {
  if (v == SMTPD_DISCONNECT || v == SMTPD_ABORT)
    return &smtpd_i_host_close;
  return &smtpd_i_defaults[kind][v == SMTPD_ACCEPT   ? 0
                                 : v == SMTPD_REJECT ? 1
                                                     : 2];
}
int smtpd_i_write_dreply_other(smtpd_session *s, const smtpd_i_dreply *d);
/* Queue default reply d: a ready-made line for most of them. */
static inline int smtpd_i_write_dreply(smtpd_session *s,
                                       const smtpd_i_dreply *d) {
  if (d->tlen && !d->with_host)
    return s->cfg->options[SMTPD_OPT_ENHANCEDSTATUSCODES]
               ? smtpd_i_append(s, d->line, d->line_len)
               : smtpd_i_append(s, d->plain, d->plain_len);
  return smtpd_i_write_dreply_other(s, d);
}

#endif /* SMTPD_LIB_REPLY_H */
