/*
 * body.c - the DATA body scanner: end-of-data detection, dot-unstuffing,
 * line-ending policy, size and line limits, zero-copy delivery.
 *
 *   smtpd_i_body_begin, smtpd_i_body_scan
 *
 * The scanner reports the end of the message to its caller instead of
 * answering it, and on_body's verdicts only mark the message (or end the
 * session through decide.c): it calls nothing above decide.c.
 *
 * The end of a message is <CRLF>.<CRLF> and nothing else: a line start is
 * only ever the octet after a real CRLF (or the first body octet), so a
 * bare LF or bare CR can never start a line that ends the message, under
 * any policy and any split of the input. Runs of ordinary text are handed
 * to on_body as pointers into the caller's buffer; only an unstuffed dot,
 * a normalised bare LF or a CR held across a dot breaks a run.
 */
#include <string.h>

#include "internal.h"


void smtpd_i_body_begin(smtpd_session *s) {
  s->dstate = DS_LINE_START;
  s->doom = DOOM_NONE;
  s->body_size = 0;
  s->text_line = 0;
  s->pend_crlf = 0;
}

static void doom(smtpd_session *s, smtpd_i_doom why) {
  if (s->doom != DOOM_NONE)
    return;
  s->doom = why;
  smtpd_i_notice(s, SMTPD_NOTICE_MESSAGE_ABORTED, 0, 0);
}

/* on_body's verdict, now or after a DEFER. */
static void body_verdict(smtpd_session *s, smtpd_verdict v) {
  if (v == SMTPD_REJECT)
    doom(s, DOOM_HOST_REJECT);
  else if (v == SMTPD_DISCONNECT || v == SMTPD_ABORT)
    smtpd_i_end_by_host(s, v);
  else if (v != SMTPD_ACCEPT)
    doom(s, DOOM_HOST_TEMPFAIL);
}

static void body_resume(smtpd_session *s, smtpd_verdict v) {
  s->pending = NULL;
  body_verdict(s, v);
}

static const smtpd_i_decision body_decision = {K_BODY, D_REPLY_FAIL, NULL,
                                               body_resume};

/* Hand n octets to the host. Returns 1 when the host paused input or
 * ended the session. */
static int emit(smtpd_session *s, const uint8_t *a, size_t n) {
  uint64_t limit;
  smtpd_verdict v;
  if (!n)
    return 0;
  /* counted even for a doomed message: the final size decides the reply
   * (see smtpd_i_end_of_data) */
  limit = s->cfg->limits[SMTPD_LIMIT_MESSAGE_SIZE];
  s->body_size += n;
  if (limit && s->body_size > limit)
    doom(s, DOOM_SIZE);
  if (s->doom != DOOM_NONE)
    return 0;
  if (!s->cb.on_body)
    return 0;
  s->reply_set = 0;
  s->callback_running = 1;
  s->in_cb = &body_decision;
  v = s->cb.on_body(s, a, n, s->ud);
  s->in_cb = NULL;
  s->callback_running = 0;
  if (v == SMTPD_DEFER) {
    s->pending = &body_decision;
    return 1;
  }
  body_verdict(s, v);
  return s->state == ST_CLOSED;
}

/* A line ended with CRLF after `n` more octets of it. */
static void line_done(smtpd_session *s, uint64_t n) {
  uint64_t len = s->text_line + n;
  s->text_line = 0;
  if (len > s->cfg->limits[SMTPD_LIMIT_TEXT_LINE] &&
      s->cfg->long_line == SMTPD_LONG_LINE_REJECT)
    doom(s, DOOM_LONG_LINE);
}

const uint8_t *smtpd_i_body_raw(smtpd_session *s, const uint8_t *p,
                                const uint8_t *end) {
  size_t n = (size_t)(end - p);
  if (n > s->bdat_left)
    n = (size_t)s->bdat_left;
  s->bdat_left -= n;
  if (!s->bdat_discard)
    emit(s, p, n); /* a pause takes effect after this part */
  return p + n;
}

const uint8_t *smtpd_i_body_scan(smtpd_session *s, const uint8_t *p,
                                 const uint8_t *end, int *ended) {
  const smtpd_line_ending le = s->cfg->line_ending;
  const uint8_t *run = p; /* start of text not yet handed to the host */
  int paused = 0;

  if (s->pend_crlf) {
    s->pend_crlf = 0;
    if (emit(s, (const uint8_t *)"\r\n", 2))
      return p;
  }

  while (p < end && !paused) {
    switch (s->dstate) {
    case DS_LINE_START:
      if (*p == '.') {
        paused = emit(s, run, (size_t)(p - run));
        p++; /* the stuffed dot (or the terminator's dot) is dropped */
        run = p;
        s->text_line = 1;
        s->dstate = DS_DOT;
        continue;
      }
      s->dstate = DS_TEXT;
      continue;

    case DS_DOT:
      if (*p == '\r') {
        p++; /* hold the CR: it is part of the end if LF follows */
        run = p;
        s->dstate = DS_DOT_CR;
        continue;
      }
      s->dstate = DS_TEXT;
      continue;

    case DS_DOT_CR:
      if (*p == '\n') {
        p++;
        s->state = ST_CMD;
        *ended = 1;
        return p;
      }
      /* ".\r" + something else: the CR was a bare CR, and data */
      if (le == SMTPD_LINE_ENDING_REJECT)
        doom(s, DOOM_BARE_CR);
      paused = emit(s, (const uint8_t *)"\r", 1);
      s->text_line++;
      run = p;
      s->dstate = DS_TEXT;
      continue;

    case DS_CR:
      if (*p == '\n') {
        p++;
        line_done(s, 1);
        s->dstate = DS_LINE_START;
        continue;
      }
      if (le == SMTPD_LINE_ENDING_REJECT)
        doom(s, DOOM_BARE_CR);
      s->dstate = DS_TEXT;
      continue;

    case DS_TEXT: {
      const uint8_t *lf;
      lf = memchr(p, '\n', (size_t)(end - p));
      const uint8_t *lim = lf ? lf : end;
      /* a CR is fine only right before the LF (or as the last octet we
       * have, when the LF may still come) */
      if (le == SMTPD_LINE_ENDING_REJECT && s->doom == DOOM_NONE &&
          lim > p) {
        const uint8_t *cr = memchr(p, '\r', (size_t)(lim - p - 1));
        if (cr)
          doom(s, DOOM_BARE_CR);
      }
      if (!lf) {
        s->text_line += (uint64_t)(end - p);
        if (end[-1] == '\r')
          s->dstate = DS_CR;
        p = end;
        continue;
      }
      if (lf > p && lf[-1] == '\r') {
        line_done(s, (uint64_t)(lf + 1 - p));
        p = lf + 1;
        s->dstate = DS_LINE_START;
        continue;
      }
      /* bare LF: never a line start, never part of an end of data */
      if (le == SMTPD_LINE_ENDING_REJECT) {
        doom(s, DOOM_BARE_LF);
      } else if (le == SMTPD_LINE_ENDING_NORMALIZE) {
        /* the LF becomes CRLF; if the host pauses on the text before it,
         * the CRLF is delivered first thing on the next scan */
        paused = emit(s, run, (size_t)(lf - run));
        if (paused)
          s->pend_crlf = 1;
        else
          paused = emit(s, (const uint8_t *)"\r\n", 2);
        run = lf + 1;
      }
      line_done(s, (uint64_t)(lf + 1 - p));
      p = lf + 1;
      continue;
    }
    }
  }
  if (!paused && s->state == ST_DATA)
    emit(s, run, (size_t)(p - run));
  return p;
}
