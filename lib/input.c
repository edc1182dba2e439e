/*
 * input.c - input framing: command lines and AUTH response lines are
 * assembled in a bounded buffer, checked (line endings, NUL, UTF-8) and
 * handed to the dispatcher or the AUTH exchange; body octets go to the
 * body scanner, whose end of message is answered here. Also the
 * pipelining synchronisation check and output backpressure.
 *
 *   smtpd_i_input   take what the session can take of p..end
 */
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "internal.h"
#include "reply.h"
#include "parse.h"

/* The per-line steps, inlined into both the short-line and general ways. */
#if defined(__GNUC__)
#define LINE_STEP static inline __attribute__((always_inline))
#else
#define LINE_STEP static inline
#endif

/* What a command line holds that needs a closer look. */
#define LINE_NUL 1u  /* a NUL octet */
#define LINE_CR 2u   /* a CR octet */
#define LINE_HIGH 4u /* an octet >= 0x80 (then UTF-8 is checked) */

#if defined(__SSE2__)
/* LINE_* of p[0..n), sixteen octets at a time; the last block overlaps
 * the one before it. p is a line buffer: its first 16 octets are always
 * readable and defined (see line_scan), so a short line is one block
 * with the octets past n masked off. */
static unsigned line_flags(const char *p, size_t n) {
  __m128i acc = _mm_setzero_si128(), nul = _mm_setzero_si128();
  const __m128i cr = _mm_set1_epi8('\r'), zero = _mm_setzero_si128();
  size_t i;
  if (n < 16) {
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    const unsigned live = (1u << n) - 1u;
    unsigned f = 0;
    if ((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero)) & live)
      f |= LINE_NUL;
    if ((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, cr)) & live)
      f |= LINE_CR;
    if ((unsigned)_mm_movemask_epi8(v) & live)
      f |= LINE_HIGH;
    return f;
  }
  if (n <= 32) { /* two blocks, overlapping when n < 32 */
    const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
    const __m128i b =
        _mm_loadu_si128((const __m128i *)(const void *)(p + n - 16));
    acc = _mm_or_si128(a, b);
    nul = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(a, zero), _mm_cmpeq_epi8(a, cr)),
        _mm_or_si128(_mm_cmpeq_epi8(b, zero), _mm_cmpeq_epi8(b, cr)));
  } else {
    for (i = 0;; i += 16) {
      __m128i v;
      if (i + 16 > n)
        i = n - 16;
      v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
      /* acc: high bits as they are; nul: 0xff where NUL or CR */
      acc = _mm_or_si128(acc, v);
      nul = _mm_or_si128(nul, _mm_or_si128(_mm_cmpeq_epi8(v, zero),
                                           _mm_cmpeq_epi8(v, cr)));
      if (i + 16 >= n)
        break;
    }
  }
  if (!_mm_movemask_epi8(_mm_or_si128(acc, nul)))
    return 0;
  {
    unsigned f = _mm_movemask_epi8(acc) ? LINE_HIGH : 0;
    if (_mm_movemask_epi8(nul)) /* which one: rare, ask memchr */
      f |= (memchr(p, '\0', n) ? LINE_NUL : 0) |
           (memchr(p, '\r', n) ? LINE_CR : 0);
    return f;
  }
}
#else
static unsigned line_flags(const char *p, size_t n) {
  unsigned f = 0;
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == 0)
      f |= LINE_NUL;
    else if (c == '\r')
      f |= LINE_CR;
    else if (c >= 0x80)
      f |= LINE_HIGH;
  }
  return f;
}
#endif

/* Act on a line of len octets (its line ending cut off and a NUL put in
 * its place) whose LINE_* flags are known: an AUTH response, a refusal,
 * or a command. A line the checks refuse while an AUTH challenge is open
 * is a malformed response: it ends the exchange (RFC 4954 section 4) so
 * the next line is read as a command again, however the refused line was
 * split. bare_lf: it ended in a bare LF that the policy refuses (flags
 * are then 0, unread). */
LINE_STEP void line_ready(smtpd_session *s, char *line, size_t len,
                       unsigned flags, int bare_lf) {
  smtpd_line_ending le = s->cfg->line_ending;
  const char *refused = NULL;
  if (bare_lf)
    refused = "Error: bare <LF> received";
  else if (flags & LINE_NUL)
    refused = "Error: NUL character received";
  else if (le == SMTPD_LINE_ENDING_REJECT && (flags & LINE_CR))
    refused = "Error: bare <CR> received";
  else if ((flags & LINE_HIGH) &&
           !smtpd_i_utf8_valid((const uint8_t *)line, len))
    refused = "Error: invalid UTF-8 in command";
  s->line_high = (flags & LINE_HIGH) != 0;
  if (s->state == ST_AUTH) {
    if (refused)
      smtpd_i_auth_malformed(s, line, len);
    else
      smtpd_i_auth_response(s, line, len);
    return;
  }
  if (refused) {
    /* only the bare-LF refusal names the host */
    smtpd_i_protocol_error(s, 500, "5.5.2", refused, bare_lf);
    return;
  }
  smtpd_i_dispatch(s, line);
}

/* Validate the raw line in the line buffer (octets up to and including
 * its LF) then act on it. */
static void process_line(smtpd_session *s) {
  char *line = s->line;
  size_t len = s->line_len; /* ends with '\n' */
  int crlf = len >= 2 && line[len - 2] == '\r';
  int bare_lf = !crlf && s->cfg->line_ending == SMTPD_LINE_ENDING_REJECT;

  len -= crlf ? 2 : 1;
  line[len] = '\0';
  line_ready(s, line, len, bare_lf ? 0u : line_flags(line, len), bare_lf);
}

/* The rest of an overlong line is skipped; every further 32 KiB of it
 * counts as another error so an endless line ends in 421. */
#define SKIP_ERROR_EVERY 32768u

/* n more octets of an overlong line were skipped: one error for every
 * SKIP_ERROR_EVERY boundary crossed, however the input was split. */
static void skip_more(smtpd_session *s, uint64_t n) {
  uint64_t before = s->skipped / SKIP_ERROR_EVERY;
  s->skipped += n;
  while (before++ < s->skipped / SKIP_ERROR_EVERY && s->state != ST_CLOSED)
    smtpd_i_bump_errors(s);
}

static void line_too_long(smtpd_session *s) {
  if (s->state == ST_AUTH) {
    smtpd_i_reply(s, 500, "5.5.6", "SASL response limit exceeded");
    smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, 500, 0);
    smtpd_i_auth_reset(s);
    s->state = ST_CMD;
    smtpd_i_bump_errors(s);
  } else if (s->auth_big) {
    smtpd_i_reply(s, 500, "5.5.6", "SASL response limit exceeded");
    smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, 500, 0);
    smtpd_i_bump_errors(s);
  } else {
    smtpd_i_protocol_error(s, 500, "5.5.2", "Error: command too long", 1);
  }
}

/* Room for the AUTH line limit plus CRLF and "AUTH MECHANISM ". */
static int use_auth_buffer(smtpd_session *s) {
  size_t limit = (size_t)s->cfg->limits[SMTPD_LIMIT_AUTH_LINE] + 2;
  size_t cap = s->state == ST_AUTH ? limit : limit + 64;
  if (!s->authbuf) {
    s->authbuf = smtpd_i_alloc(&s->cfg->mem, limit + 64 + 1);
    if (!s->authbuf) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return SMTPD_ERR_NOMEM;
    }
  }
  if (s->line != s->authbuf) {
    memcpy(s->authbuf, s->line, s->line_len);
    s->line = s->authbuf;
  }
  s->line_cap = cap;
  s->auth_big = 1;
  return 0;
}

static void use_command_buffer(smtpd_session *s) {
  s->line = s->cmdbuf;
  s->line_cap = (size_t)s->cfg->limits[SMTPD_LIMIT_COMMAND_LINE];
  s->auth_big = 0;
  if (s->authbuf) {
    smtpd_i_free(&s->cfg->mem, s->authbuf);
    s->authbuf = NULL;
  }
}

/* After a line was acted on: the next starts empty, in the command
 * buffer unless an AUTH exchange still needs the larger one. */
LINE_STEP void line_done(smtpd_session *s) {
  s->line_len = 0;
  s->lines++;
  if (s->auth_big && s->state != ST_AUTH)
    use_command_buffer(s);
}

#if defined(__SSE2__)
/* short_line - the common pipelined case in one pass: nothing buffered,
 * and a whole line of at most 32 octets (LF included) among the next 32
 * of the input. Finds its LF, copies the 32 octets into the empty line
 * buffer (at least 512 octets) and takes the line's LINE_* flags from the
 * same two blocks. Reads only p[0..32), all input. Returns the octets
 * after the line, or NULL when the line is not of that kind (nothing
 * done). */
static const uint8_t *short_line(smtpd_session *s, const uint8_t *p) {
  const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
  const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
  const __m128i lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');
  const __m128i zero = _mm_setzero_si128();
  uint32_t m = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(a, lf)) |
               (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(b, lf)) << 16;
  uint32_t crs, live;
  size_t n, len;
  unsigned flags = 0;
  int bare_lf;
  char *line = s->line;
  if (!m)
    return NULL;
  n = (size_t)__builtin_ctz(m); /* the LF's offset */
  _mm_storeu_si128((__m128i *)(void *)line, a);
  _mm_storeu_si128((__m128i *)(void *)(line + 16), b);
  crs = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(a, cr)) |
        (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(b, cr)) << 16;
  /* n + 1 octets with the LF; a CR before it is part of the ending */
  len = n - ((crs << 1 >> n) & 1u);
  bare_lf = len == n && s->cfg->line_ending == SMTPD_LINE_ENDING_REJECT;
  line[len] = '\0';
  s->line_len = n + 1;
  live = (uint32_t)(((uint64_t)1 << len) - 1u); /* the octets before it */
  if (!bare_lf) {
    uint32_t nul = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(a, zero)) |
                   (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(b, zero))
                       << 16;
    uint32_t high = (uint32_t)_mm_movemask_epi8(a) |
                    (uint32_t)_mm_movemask_epi8(b) << 16;
    if ((nul | crs | high) & live)
      flags = ((nul & live) ? LINE_NUL : 0u) |
              ((crs & live) ? LINE_CR : 0u) | ((high & live) ? LINE_HIGH : 0u);
  }
  line_ready(s, line, len, flags, bare_lf);
  line_done(s);
  return p + n + 1;
}
#endif

/* Command and AUTH-response input. */
static const uint8_t *line_scan(smtpd_session *s, const uint8_t *p,
                                const uint8_t *end) {
  const uint8_t *lf, *stop;
  size_t n;
#if defined(__SSE2__)
  if (end - p >= 32 && !s->line_len && s->line && !s->skipping) {
    const uint8_t *next = short_line(s, p);
    if (next)
      return next;
  }
#endif
  lf = memchr(p, '\n', (size_t)(end - p));
  stop = lf ? lf + 1 : end;
  n = (size_t)(stop - p);

  if (s->skipping) {
    skip_more(s, n);
    if (lf) {
      s->skipping = 0;
      s->skipped = 0;
      s->lines++;
    }
    return stop;
  }
  if (!s->line) {
    /* the command buffer comes with the first command octet, and the
     * first output buffer after it in the same block */
    if (!s->cmdbuf) {
      s->cmdbuf = smtpd_i_alloc(&s->cfg->mem, smtpd_i_cmdbuf_size(s->cfg));
      if (!s->cmdbuf) {
        smtpd_i_fail(s, SMTPD_ERR_NOMEM);
        return end;
      }
      /* line_flags reads the first 16 octets of a short line whole */
      memset(s->cmdbuf, 0, 16);
      smtpd_i_out_adopt(s);
    }
    s->line = s->cmdbuf;
  }
  if (s->line_len + n > s->line_cap) {
    size_t take = 0;
    /* An AUTH response, or "AUTH mech initial-response", may be as long
     * as the AUTH line limit: fill the command buffer, then move to the
     * larger AUTH buffer when the line really is one of those. */
    if (!s->auth_big && s->cfg->sasl &&
        (s->state == ST_AUTH || s->state == ST_CMD)) {
      take = s->line_cap - s->line_len;
      memcpy(s->line + s->line_len, p, take);
      s->line_len += take;
      if (s->state == ST_AUTH || smtpd_i_ieq(s->line, "AUTH ", 5)) {
        if (use_auth_buffer(s))
          return end;
        return p + take;
      }
    }
    {
      /* the octets moved into the buffer above are counted once: they
       * are in line_len, not again in n - take */
      uint64_t had = s->line_len;
      s->line_len = 0; /* the notice names no half-read command */
      line_too_long(s);
      s->skipped = 0;
      if (s->state != ST_CLOSED)
        skip_more(s, had + n - take);
      if (!lf && s->state != ST_CLOSED)
        s->skipping = 1;
      else
        s->skipped = 0, s->lines++;
    }
    if (s->auth_big && s->state != ST_AUTH)
      use_command_buffer(s);
    return stop;
  }
  memcpy(s->line + s->line_len, p, n);
  s->line_len += n;
  if (!lf)
    return end;
  process_line(s);
  line_done(s);
  return stop;
}

/* Input arrived while a reply that must be seen first is still unwritten. */
static int sync_violation(smtpd_session *s) {
  smtpd_i_notice(s, SMTPD_NOTICE_SYNC_VIOLATION,
                 s->cfg->sync == SMTPD_SYNC_REJECT ? 554 : 0, 0);
  s->sync_mark = 0;
  if (s->cfg->sync == SMTPD_SYNC_REJECT) {
    smtpd_i_reply(s, 554, "5.5.0", "Error: SMTP protocol synchronization");
    if (s->state == ST_DATA)
      smtpd_i_notice(s, SMTPD_NOTICE_MESSAGE_ABORTED, 554, 0);
    s->state = ST_CMD; /* so close does not report the body twice */
    smtpd_i_close(s, SMTPD_CLOSE_SYNC);
    return 1;
  }
  return 0;
}

/* The PROXY header before the greeting: buffered (bounded) until it is
 * complete; anything invalid closes the session without a reply. */
static const uint8_t *proxy_header(smtpd_session *s, const uint8_t *p,
                                   const uint8_t *end) {
  smtpd_proxy_info info;
  size_t room = SMTPD_I_PROXY_MAX - s->proxy_len, n = (size_t)(end - p);
  ptrdiff_t r;
  if (n > room)
    n = room;
  memcpy(s->proxybuf + s->proxy_len, p, n);
  s->proxy_len += n;
  r = smtpd_proxy_parse(s->proxybuf, s->proxy_len, &info);
  if (r == 0 && s->proxy_len < SMTPD_I_PROXY_MAX)
    return p + n;
  if (r <= 0) {
    smtpd_i_close(s, SMTPD_CLOSE_PROXY);
    return end;
  }
  /* the header ended r octets into the buffer: the rest is input */
  p += n - (s->proxy_len - (size_t)r);
  if (!info.local) {
    if (smtpd_i_set_client(s, info.src_addr, NULL)) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return end;
    }
    s->client_port = info.src_port;
  }
  smtpd_i_free(&s->cfg->mem, s->proxybuf);
  s->proxybuf = NULL;
  smtpd_i_connect(s);
  return p;
}

void smtpd_i_input_settle(smtpd_session *s) {
  if (s->state == ST_BDAT && s->bdat_left == 0 && !s->pending)
    smtpd_i_bdat_chunk_done(s);
}

const uint8_t *smtpd_i_input(smtpd_session *s, const uint8_t *p,
                             const uint8_t *end) {
  while (p < end) {
    if (s->pending || s->state == ST_CLOSED)
      break;
    if (s->state == ST_TLS_WAIT) {
      smtpd_i_notice(s, SMTPD_NOTICE_STARTTLS_DISCARD, 0,
                     (uint64_t)(end - p));
      p = end;
      break;
    }
    if (s->out_len >= s->cfg->limits[SMTPD_LIMIT_OUTPUT])
      break;
    if (s->out_consumed < s->sync_mark && sync_violation(s)) {
      p = end;
      break;
    }
    if (s->state == ST_DATA) {
      int ended = 0;
      p = smtpd_i_body_scan(s, p, end, &ended);
      if (ended)
        smtpd_i_end_of_data(s);
    } else if (s->state < ST_BDAT) { /* ST_CMD, ST_AUTH, ST_REJECTED */
      p = line_scan(s, p, end);
    } else if (s->state == ST_BDAT) {
      p = smtpd_i_body_raw(s, p, end);
      smtpd_i_input_settle(s);
    } else { /* ST_PROXY: nothing was sent, so no sync mark is set */
      p = proxy_header(s, p, end);
    }
    if (s->broken)
      break;
  }
  return p;
}
