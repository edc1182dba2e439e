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
 *
 * Inside a line the scanner first skips clean text 64 octets at a time
 * (skip_clean, with SSE2; skip_clean_avx2 when the CPU has AVX2, as
 * smtpd_config.body_avx2 records): text where every CR is followed by LF,
 * every LF follows a CR and no LF is followed by a dot needs no state. The state
 * machine below takes over at the first octet where that does not hold
 * and for the last few octets of the input.
 *
 * When the message is doomed mid-way (a bare CR or LF under the reject
 * policy, an over-long line under SMTPD_LONG_LINE_REJECT), the text
 * before the offending octet is handed to the host first, so a host that
 * refuses on content sees the same text however the input was split.
 */
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
/* AVX2 for the clean-text skip when the compiler can target it per
 * function and the CPU has it (checked once, at config creation) */
#if defined(__SSE2__) && defined(__x86_64__) &&                           \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 5))
#define BODY_AVX2 1
#include <immintrin.h>
#endif

#include "internal.h"

#if defined(__SSE2__)
/* One block of 16 octets at p (reading p[0..16]) is clean: no CR without
 * an LF right after it, no LF without a CR right before it, no LF followed
 * by a dot. Returns the mask of offending positions. */
static inline __m128i block_bad(const uint8_t *p) {
  const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
  const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 1));
  const __m128i lf_a = _mm_cmpeq_epi8(a, _mm_set1_epi8('\n'));
  const __m128i cr_a = _mm_cmpeq_epi8(a, _mm_set1_epi8('\r'));
  const __m128i lf_b = _mm_cmpeq_epi8(b, _mm_set1_epi8('\n'));
  const __m128i dot_b = _mm_cmpeq_epi8(b, _mm_set1_epi8('.'));
  return _mm_or_si128(_mm_xor_si128(cr_a, lf_b), _mm_and_si128(lf_a, dot_b));
}

/* The end of the clean text starting at p, inside a line with p[0] not an
 * LF: every octet before the returned position is plain line text or a
 * CRLF followed by something other than a dot, and it is < end (at least
 * one octet is left for the state machine). */
static const uint8_t *skip_clean(const uint8_t *p, const uint8_t *end) {
  while (end - p > 64) {
    __m128i bad = _mm_or_si128(_mm_or_si128(block_bad(p), block_bad(p + 16)),
                               _mm_or_si128(block_bad(p + 32),
                                            block_bad(p + 48)));
    if (_mm_movemask_epi8(bad))
      break;
    p += 64;
  }
  while (end - p > 16 && !_mm_movemask_epi8(block_bad(p)))
    p += 16;
  return p;
}

#if defined(BODY_AVX2)
/* skip_clean, 64 octets per step with two 32-octet blocks; the last
 * octets go through the SSE2 loop. */
__attribute__((target("avx2"))) static const uint8_t *
skip_clean_avx2(const uint8_t *p, const uint8_t *end) {
  const __m256i lf = _mm256_set1_epi8('\n'), cr = _mm256_set1_epi8('\r'),
                dot = _mm256_set1_epi8('.');
  while (end - p > 64) {
    const __m256i a0 = _mm256_loadu_si256((const __m256i *)(const void *)p);
    const __m256i b0 =
        _mm256_loadu_si256((const __m256i *)(const void *)(p + 1));
    const __m256i a1 =
        _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
    const __m256i b1 =
        _mm256_loadu_si256((const __m256i *)(const void *)(p + 33));
    const __m256i bad0 = _mm256_or_si256(
        _mm256_xor_si256(_mm256_cmpeq_epi8(a0, cr), _mm256_cmpeq_epi8(b0, lf)),
        _mm256_and_si256(_mm256_cmpeq_epi8(a0, lf),
                         _mm256_cmpeq_epi8(b0, dot)));
    const __m256i bad1 = _mm256_or_si256(
        _mm256_xor_si256(_mm256_cmpeq_epi8(a1, cr), _mm256_cmpeq_epi8(b1, lf)),
        _mm256_and_si256(_mm256_cmpeq_epi8(a1, lf),
                         _mm256_cmpeq_epi8(b1, dot)));
    if (_mm256_movemask_epi8(_mm256_or_si256(bad0, bad1)))
      break;
    p += 64;
  }
  return skip_clean(p, end);
}

int smtpd_i_body_avx2_usable(void) {
  return __builtin_cpu_supports("avx2") ? 1 : 0;
}
#else
int smtpd_i_body_avx2_usable(void) {
  return 0;
}
#endif
#else
/* No vector unit assumed: the state machine reads every line. */
static const uint8_t *skip_clean(const uint8_t *p, const uint8_t *end) {
  (void)end;
  return p;
}

int smtpd_i_body_avx2_usable(void) {
  return 0;
}
#endif


void smtpd_i_body_begin(smtpd_session *s) {
  s->dstate = DS_LINE_START;
  s->doom = DOOM_NONE;
  s->body_size = 0;
  s->text_line = 0;
  s->pend_crlf = 0;
  s->pend_doom = DOOM_NONE;
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

static int settle_held(smtpd_session *s);

/* The host answered a paused on_body: its verdict, then what the pause
 * held back (settle_held), at once: whether more input follows must not
 * decide whether the message is doomed. */
static void body_resume(smtpd_session *s, smtpd_verdict v) {
  s->pending = NULL;
  body_verdict(s, v);
  if (s->state == ST_DATA && !s->pending)
    settle_held(s);
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

/* A line ended after `n` more octets of it: 1 when it was too long under
 * SMTPD_LONG_LINE_REJECT. */
static int line_long(smtpd_session *s, uint64_t n) {
  uint64_t len = s->text_line + n;
  s->text_line = 0;
  return len > s->cfg->limits[SMTPD_LIMIT_TEXT_LINE] &&
         s->cfg->long_line == SMTPD_LONG_LINE_REJECT;
}

/* Doom the message for `why` after handing the host the text from *run
 * up to `upto` (bug 4 of docs/fuzzing.md: the split must not decide what
 * the host saw). Returns 1 when the host paused or ended the session;
 * after a pause the doom waits for the next scan, so that it follows the
 * host's verdict on that text as it does when the host answers at once. */
static int doom_after(smtpd_session *s, const uint8_t **run,
                      const uint8_t *upto, smtpd_i_doom why) {
  if (s->doom == DOOM_NONE) {
    int paused = emit(s, *run, (size_t)(upto - *run));
    *run = upto;
    if (paused) {
      if (s->pending)
        s->pend_doom = why;
      return 1;
    }
  }
  doom(s, why);
  return 0;
}

/* What a pause of on_body held back: the CRLF of a normalized bare LF,
 * then a doom decided after the paused text. Returns 1 when the host
 * paused again (on that CRLF) or ended the session. */
static int settle_held(smtpd_session *s) {
  if (s->pend_crlf) {
    s->pend_crlf = 0;
    if (emit(s, (const uint8_t *)"\r\n", 2))
      return 1;
  }
  if (s->pend_doom != DOOM_NONE) {
    smtpd_i_doom why = (smtpd_i_doom)s->pend_doom;
    s->pend_doom = DOOM_NONE;
    doom(s, why);
  }
  return 0;
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
  const int fast = s->cfg->long_line != SMTPD_LONG_LINE_REJECT;
  const uint8_t *run = p; /* start of text not yet handed to the host */
  int paused = 0;

  if (settle_held(s))
    return p;

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
      paused = emit(s, (const uint8_t *)"\r", 1);
      if (le == SMTPD_LINE_ENDING_REJECT) {
        if (!paused)
          doom(s, DOOM_BARE_CR);
        else if (s->pending)
          s->pend_doom = DOOM_BARE_CR;
      }
      s->text_line++;
      run = p;
      s->dstate = DS_TEXT;
      continue;

    case DS_CR:
      if (*p == '\n') {
        p++;
        s->dstate = DS_LINE_START;
        if (line_long(s, 1))
          paused = doom_after(s, &run, p, DOOM_LONG_LINE);
        continue;
      }
      if (le == SMTPD_LINE_ENDING_REJECT)
        doom(s, DOOM_BARE_CR); /* the CR went to the host with its text */
      s->dstate = DS_TEXT;
      continue;

    case DS_TEXT: {
      const uint8_t *lf, *lim;
      if (fast && *p != '\n') {
#if defined(BODY_AVX2)
        const uint8_t *q =
            s->cfg->body_avx2 ? skip_clean_avx2(p, end) : skip_clean(p, end);
#else
        const uint8_t *q = skip_clean(p, end);
#endif
        if (q != p && *q == '\n') {
          /* q[-1] is its CR: a line ends here */
          p = q + 1;
          s->dstate = DS_LINE_START;
          continue;
        }
        p = q;
      }
      lf = memchr(p, '\n', (size_t)(end - p));
      lim = lf ? lf : end;
      /* a CR is fine only right before the LF (or as the last octet we
       * have, when the LF may still come) */
      if (le == SMTPD_LINE_ENDING_REJECT && s->doom == DOOM_NONE &&
          lim > p) {
        const uint8_t *cr = memchr(p, '\r', (size_t)(lim - p - 1));
        if (cr && doom_after(s, &run, cr + 1, DOOM_BARE_CR)) {
          s->text_line += (uint64_t)(cr + 1 - p);
          p = cr + 1;
          paused = 1;
          continue;
        }
      }
      if (!lf) {
        s->text_line += (uint64_t)(end - p);
        if (end[-1] == '\r')
          s->dstate = DS_CR;
        p = end;
        continue;
      }
      if (lf > p && lf[-1] == '\r') {
        const uint8_t *next = lf + 1;
        if (line_long(s, (uint64_t)(next - p)))
          paused = doom_after(s, &run, next, DOOM_LONG_LINE);
        p = next;
        s->dstate = DS_LINE_START;
        continue;
      }
      /* bare LF: never a line start, never part of an end of data */
      if (le == SMTPD_LINE_ENDING_REJECT) {
        if (doom_after(s, &run, lf, DOOM_BARE_LF)) {
          /* paused before the LF: the next scan applies the doom,
           * then reads the LF again */
          s->text_line += (uint64_t)(lf - p);
          p = lf;
          paused = 1;
          continue;
        }
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
      if (line_long(s, (uint64_t)(lf + 1 - p))) {
        if (!paused)
          paused = doom_after(s, &run, lf + 1, DOOM_LONG_LINE);
        else if (s->pending && s->doom == DOOM_NONE)
          s->pend_doom = DOOM_LONG_LINE;
      }
      p = lf + 1;
      continue;
    }
    }
  }
  if (!paused && s->state == ST_DATA)
    emit(s, run, (size_t)(p - run));
  return p;
}
