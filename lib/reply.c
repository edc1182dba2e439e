/*
 * reply.c - the one reply formatter, the output queue and the default
 * reply table. The bottom layer of the session: it calls nothing of the
 * session's above it.
 *
 *   smtpd_i_format_line     "CCC" sep [enh " "] text CRLF, anywhere
 *   smtpd_i_append / smtpd_i_reply_n / smtpd_i_reply_host / smtpd_i_greet
 *   smtpd_i_default_reply   what each decision answers by default
 */
#include <string.h>

#include "internal.h"
#include "reply.h"
#include "parse.h"

void smtpd_i_fail(smtpd_session *s, int err) {
  if (!s->broken)
    s->broken = err;
  s->state = ST_CLOSED;
}

/* The output queue has no buffer of its own until a reply needs one:
 * out_cap 0 means s->out is NULL or borrows the config's greeting (read
 * only; the config outlives the session and does not change under it). */
static int out_reserve(smtpd_session *s, size_t n) {
  size_t need;
  uint8_t *p;
  if (s->out_start + s->out_len + n <= s->out_cap)
    return 0;
  if (s->out_cap && s->out_start) {
    memmove(s->out, s->out + s->out_start, s->out_len);
    s->out_start = 0;
    if (s->out_cap - s->out_len >= n)
      return 0;
  }
  /* out_len may exceed the first size: a borrowed greeting can be longer */
  need = s->out_cap ? s->out_cap : SMTPD_I_OUT_FIRST;
  while (need < s->out_len || need - s->out_len < n)
    need *= 2;
  if (s->out_cap && s->out != smtpd_i_out_first(s)) {
    p = smtpd_i_realloc(&s->cfg->mem, s->out, need);
  } else {
    /* a buffer of its own; what is queued (a borrowed greeting, or the
     * contents of the buffer after the command line) moves into it */
    p = smtpd_i_alloc(&s->cfg->mem, need);
    if (p && s->out_len)
      memcpy(p, s->out + s->out_start, s->out_len);
  }
  if (!p) {
    smtpd_i_fail(s, SMTPD_ERR_NOMEM);
    return SMTPD_ERR_NOMEM;
  }
  s->out = p;
  s->out_start = 0;
  s->out_cap = need;
  return 0;
}

int smtpd_i_append_grow(smtpd_session *s, const void *p, size_t n) {
  if (n == 0)
    return 0;
  if (out_reserve(s, n))
    return SMTPD_ERR_NOMEM;
  memcpy(s->out + s->out_start + s->out_len, p, n);
  s->out_len += n;
  s->out_total += n;
  return 0;
}

void smtpd_i_out_adopt(smtpd_session *s) {
  uint8_t *area = smtpd_i_out_first(s);
  if (s->out_cap || s->out_len > SMTPD_I_OUT_FIRST)
    return;
  if (s->out_len)
    memcpy(area, s->out + s->out_start, s->out_len);
  s->out = area;
  s->out_start = 0;
  s->out_cap = SMTPD_I_OUT_FIRST;
}

int smtpd_i_reply_n(smtpd_session *s, int code, char sep, const char *enh,
                    size_t elen, const char *a, size_t la, const char *b,
                    size_t lb) {
  size_t n;
  if (!s->cfg->options[SMTPD_OPT_ENHANCEDSTATUSCODES])
    elen = 0;
  n = smtpd_i_line_size(elen, la, lb);
  if (out_reserve(s, n))
    return SMTPD_ERR_NOMEM;
  smtpd_i_format_line((char *)s->out + s->out_start + s->out_len, code, sep,
                      enh, elen, a, la, b, lb);
  s->out_len += n;
  s->out_total += n;
  return 0;
}

/* "code enh <hostname> text": the hostname and a space are one part. */
int smtpd_i_reply_host(smtpd_session *s, int code, const char *enh,
                       const char *text) {
  const char *h = s->cfg->hostname;
  size_t hl = strlen(h), tl = strlen(text);
  char buf[700]; /* hostname <= 255; texts are ours or <= 400 */
  if (hl + 1 + tl > sizeof buf)
    tl = sizeof buf - hl - 1;
  memcpy(buf, h, hl);
  buf[hl] = ' ';
  memcpy(buf + hl + 1, text, tl);
  return smtpd_i_reply_n(s, code, ' ', enh, smtpd_i_slen(enh), buf,
                         hl + 1 + tl, NULL, 0);
}

/* With nothing queued and no buffer yet (the usual case: the greeting
 * is the first output) the queue borrows the config's greeting instead of
 * a copy, so a greeted idle session holds no output buffer. */
int smtpd_i_greet(smtpd_session *s) {
  if (!s->out_cap && !s->out_len) {
    s->out = (uint8_t *)s->cfg->greeting;
    s->out_start = 0;
    s->out_len = s->cfg->greeting_len;
    s->out_total += s->cfg->greeting_len;
    return 0;
  }
  return smtpd_i_append(s, s->cfg->greeting, s->cfg->greeting_len);
}

/* "code <base64 of data>" (AUTH challenges). */
int smtpd_i_reply_base64(smtpd_session *s, int code, const uint8_t *data,
                         size_t len) {
  size_t enc = ((len + 2) / 3) * 4, n = smtpd_i_line_size(0, enc, 0);
  char *w;
  if (out_reserve(s, n + 1)) /* the encoder writes a NUL */
    return SMTPD_ERR_NOMEM;
  w = (char *)s->out + s->out_start + s->out_len;
  smtpd_i_format_line(w, code, ' ', NULL, 0, NULL, 0, NULL, 0);
  smtpd_i_base64_encode(data, len, w + 4, enc + 1);
  w[4 + enc] = '\r';
  w[5 + enc] = '\n';
  s->out_len += n;
  s->out_total += n;
  return 0;
}


/* ------------------------------------------------------------------ */
/* default replies: [kind][0 accept, 1 reject, 2 tempfail]              */

/* Each entry also holds its whole line, with and without the enhanced
 * code, so writing a default reply is one copy. */
#define DR(code, enh, text, host)                                            \
  {code,  enh,  sizeof enh - 1,                                              \
   text,  sizeof text - 1,                                                   \
   host,  #code " " enh " " text "\r\n",                                     \
   sizeof #code " " enh " " text "\r\n" - 1,                                 \
   #code " " text "\r\n", sizeof #code " " text "\r\n" - 1}
#define DRN(code, text, host)                                                \
  {code, "", 0, text, sizeof text - 1, host, #code " " text "\r\n",          \
   sizeof #code " " text "\r\n" - 1, #code " " text "\r\n",                  \
   sizeof #code " " text "\r\n" - 1}

const smtpd_i_dreply smtpd_i_defaults[K_COUNT_][3] = {
    [K_CONNECT] = {DRN(220, "", 0),
                   DR(554, "5.7.1", "No SMTP service here", 1),
                   DR(421, "4.3.2", "Service not available, closing transmission channel", 1)},
    [K_HELO] = {DRN(250, "", 0),
                DR(550, "5.7.1", "Helo command rejected", 0),
                DR(450, "4.7.1", "Helo command rejected: try again later", 0)},
    [K_MAIL] = {DR(250, "2.1.0", "Ok", 0),
                DR(550, "5.7.1", "Sender address rejected", 0),
                DR(450, "4.7.1", "Sender address rejected: try again later", 0)},
    [K_RCPT] = {DR(250, "2.1.5", "Ok", 0),
                DR(550, "5.7.1", "Recipient address rejected", 0),
                DR(450, "4.7.1", "Recipient address rejected: try again later", 0)},
    [K_DATA] = {DRN(354, "End data with <CR><LF>.<CR><LF>", 0),
                DR(554, "5.7.1", "Data command rejected", 0),
                DR(451, "4.3.0", "Data command rejected: try again later", 0)},
    [K_DATA_COMPLETE] = {DR(250, "2.0.0", "Ok: queued", 0),
                         DR(554, "5.7.1", "Message rejected", 0),
                         DR(451, "4.3.0", "Message deferred: try again later", 0)},
    [K_RCPT_DATA] = {DR(250, "2.0.0", "Ok: delivered", 0),
                     DR(554, "5.7.1", "Message rejected", 0),
                     DR(451, "4.3.0", "Message deferred: try again later", 0)},
    [K_VRFY] = {DR(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt "
                 "delivery", 0),
                DR(550, "5.1.1", "Recipient address rejected", 0),
                DR(450, "4.1.1", "Recipient address rejected: try again later", 0)},
    [K_STARTTLS] = {DR(220, "2.0.0", "Ready to start TLS", 0),
                    DR(554, "5.7.3", "TLS not available", 0),
                    DR(454, "4.7.0", "TLS not available due to local problem", 0)},
    [K_COMMAND] = {DR(250, "2.0.0", "Ok", 0),
                   DR(550, "5.7.1", "Command rejected", 0),
                   DR(450, "4.7.1", "Command rejected: try again later", 0)},
    [K_BODY] = {DR(250, "2.0.0", "Ok: queued", 0),
                DR(554, "5.7.1", "Message rejected", 0),
                DR(451, "4.3.0", "Error: queue file write error", 0)},
    [K_XCLIENT] = {DRN(220, "", 0),
                   DR(550, "5.7.0", "Error: insufficient authorization", 0),
                   DR(450, "4.7.0",
                      "Error: insufficient authorization: try again later",
                      0)},
    [K_AUTH] = {DR(235, "2.7.0", "Authentication successful", 0),
                DR(535, "5.7.8", "Error: authentication failed", 0),
                DR(454, "4.7.0", "Temporary authentication failure", 0)},
};

const smtpd_i_dreply smtpd_i_host_close =
    DR(421, "4.3.2", "Service shutting down", 1);

int smtpd_i_write_dreply_other(smtpd_session *s, const smtpd_i_dreply *d) {
  if (!d->tlen && d->code == 220)
    return smtpd_i_greet(s);
  if (!d->tlen) {
    const char *h = s->cfg->hostname;
    return smtpd_i_reply_n(s, d->code, ' ', NULL, 0, h, strlen(h), NULL, 0);
  }
  if (d->with_host)
    return smtpd_i_reply_host(s, d->code, d->elen ? d->enh : NULL, d->text);
  return smtpd_i_reply_n(s, d->code, ' ', d->enh, d->elen, d->text, d->tlen,
                         NULL, 0);
}
