/*
 * session.c - the public session API: life cycle, feed / output /
 * consume, replies and resume for deferred decisions, timeouts, close,
 * TLS, and the accessors. The top layer: it calls the modules below it
 * (input.c for the bytes, decide.c and each decision's resume for the
 * verdicts) and is called by none of them.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "internal.h"
#include "reply.h"

size_t smtpd_callbacks_size(unsigned version) {
  switch (version) {
  case 1:
    return offsetof(smtpd_callbacks, on_command);
  case 2:
    return offsetof(smtpd_callbacks, on_xclient);
  case 3:
    return sizeof(smtpd_callbacks);
  default:
    return 0;
  }
}

int smtpd_session_new(smtpd_session **out, const smtpd_config *cfg,
                      const smtpd_callbacks *cb, void *user_data) {
  smtpd_session *s;
  if (!out || !cfg)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (cb && cb->version > SMTPD_CALLBACKS_VERSION)
    return SMTPD_ERR_UNSUPPORTED;
  if (cb && cb->version < 1)
    return SMTPD_ERR_INVALID_ARGUMENT;
  /* the output and command-line buffers come when first needed
   * (reply.c, input.c): a greeted idle session is this block alone */
  s = smtpd_i_alloc(&cfg->mem, sizeof *s);
  if (!s)
    return SMTPD_ERR_NOMEM;
  /* everything after the callbacks is zeroed here, they are copied */
  memset((char *)s + offsetof(smtpd_session, cb_version), 0,
         sizeof *s - offsetof(smtpd_session, cb_version));
  s->cfg = cfg;
  if (cb && cb->version == SMTPD_CALLBACKS_VERSION) {
    s->cb = *cb;
    s->cb_version = cb->version;
  } else if (cb) {
    /* only the members the caller's version had; the rest stay NULL */
    memset(&s->cb, 0, sizeof s->cb);
    memcpy(&s->cb, cb, smtpd_callbacks_size(cb->version));
    s->cb_version = cb->version;
  } else {
    memset(&s->cb, 0, sizeof s->cb);
    s->cb_version = SMTPD_CALLBACKS_VERSION;
  }
  s->ud = user_data;
  s->line_cap = (size_t)cfg->limits[SMTPD_LIMIT_COMMAND_LINE];
  *out = s;
  return 0;
}

/* most of these are NULL when a session ends: no call for those */
static void release(const smtpd_mem *m, void *p) {
  if (p)
    smtpd_i_free(m, p);
}

void smtpd_session_del(smtpd_session *s) {
  const smtpd_mem *m;
  if (!s)
    return;
  m = &s->cfg->mem;
  if (s->sasl_exch)
    smtpd_i_auth_reset(s);
  if (s->arena)
    smtpd_i_arena_free(s);
  release(m, s->authbuf);
  if (s->out_cap && s->out != smtpd_i_out_first(s))
    smtpd_i_free(m, s->out);
  release(m, s->cmdbuf);
  release(m, s->reply);
  if (s->helo != smtpd_i_helo_first(s))
    release(m, s->helo);
  release(m, s->scratch);
  release(m, s->proxybuf);
  release(m, s->client_addr);
  release(m, s->client_rdns);
  release(m, s->tls_strings);
  release(m, s->auth_user);
  smtpd_i_free(m, s);
}

void *smtpd_session_user_data(const smtpd_session *s) {
  return s ? s->ud : NULL;
}

void smtpd_session_set_user_data(smtpd_session *s, void *ud) {
  if (s)
    s->ud = ud;
}

int smtpd_session_set_client(smtpd_session *s, const char *addr,
                             const char *rdns) {
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  return smtpd_i_set_client(s, addr, rdns);
}

int smtpd_session_set_proxy(smtpd_session *s) {
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->started || s->implicit_tls)
    return SMTPD_ERR_INVALID_STATE;
  if (!s->proxybuf) {
    s->proxybuf = smtpd_i_alloc(&s->cfg->mem, SMTPD_I_PROXY_MAX);
    if (!s->proxybuf)
      return SMTPD_ERR_NOMEM;
  }
  s->proxy = 1;
  return 0;
}

int smtpd_session_set_implicit_tls(smtpd_session *s) {
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->started || s->proxy)
    return SMTPD_ERR_INVALID_STATE;
  s->implicit_tls = 1;
  return 0;
}

static int connect_decision(smtpd_session *s) {
  smtpd_i_connect(s);
  return s->broken;
}

int smtpd_session_start(smtpd_session *s) {
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->started || s->callback_running)
    return SMTPD_ERR_INVALID_STATE;
  s->started = 1;
  if (s->implicit_tls && !s->tls) {
    s->state = ST_TLS_WAIT;
    return 0;
  }
  if (s->proxy) {
    s->state = ST_PROXY; /* the greeting follows the header */
    return 0;
  }
  return connect_decision(s);
}

ptrdiff_t smtpd_session_feed(smtpd_session *s, const void *data, size_t len) {
  const uint8_t *p;
  if (!s || (!data && len))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->callback_running || !s->started)
    return SMTPD_ERR_INVALID_STATE;
  if (s->broken)
    return s->broken;
  if (s->state == ST_CLOSED)
    return (ptrdiff_t)len; /* nothing more is read: discard */
  p = smtpd_i_input(s, data, (const uint8_t *)data + len);
  if (s->broken)
    return s->broken;
  if (s->state == ST_CLOSED)
    return (ptrdiff_t)len;
  return (ptrdiff_t)(p - (const uint8_t *)data);
}

size_t smtpd_session_output(smtpd_session *s, const uint8_t **data) {
  if (!s) {
    if (data)
      *data = NULL;
    return 0;
  }
  if (data)
    *data = s->out ? s->out + s->out_start : NULL;
  return s->out_len;
}

int smtpd_session_consume(smtpd_session *s, size_t n) {
  if (!s || n > s->out_len)
    return SMTPD_ERR_INVALID_ARGUMENT;
  s->out_start += n;
  s->out_len -= n;
  s->out_consumed += n;
  if (!s->out_len)
    s->out_start = 0;
  return 0;
}

/* An aborted session's 421 may still be written; after any other
 * failure nothing will be. */
static int output_dead(const smtpd_session *s) {
  return s->broken && s->broken != SMTPD_ERR_CALLBACK_FAILURE;
}

/* The state queries for a session that exists; the public functions
 * below add the NULL check, smtpd_session_status asks them all at once
 * (static, so they inline there: the public ones may be interposed). */
static int q_want_read(const smtpd_session *s) {
  if (s->broken || !s->started || s->state == ST_CLOSED || s->pending)
    return 0;
  return s->out_len < s->cfg->limits[SMTPD_LIMIT_OUTPUT];
}

static int q_want_write(const smtpd_session *s) {
  return !output_dead(s) && s->out_len > 0;
}

static int q_is_done(const smtpd_session *s) {
  if (output_dead(s))
    return 1;
  return s->state == ST_CLOSED && !s->pending && s->out_len == 0;
}

static int q_is_tls_wait(const smtpd_session *s) {
  return !s->broken && s->state == ST_TLS_WAIT;
}

static int q_is_closing(const smtpd_session *s) {
  return s->state == ST_CLOSED || s->broken;
}

int smtpd_session_want_read(const smtpd_session *s) {
  return s && q_want_read(s);
}

int smtpd_session_want_write(const smtpd_session *s) {
  return s && q_want_write(s);
}

int smtpd_session_is_paused(const smtpd_session *s) {
  return s && s->pending;
}

int smtpd_session_is_done(const smtpd_session *s) {
  return !s || q_is_done(s);
}

int smtpd_session_is_tls_wait(const smtpd_session *s) {
  return s && q_is_tls_wait(s);
}

int smtpd_session_is_closing(const smtpd_session *s) {
  return s && q_is_closing(s);
}

static int valid_enh(const char *e, int cls) {
  int i, digits;
  if (e[0] != (char)('0' + cls) || e[1] != '.')
    return 0;
  e += 2;
  for (i = 0; i < 2; i++) {
    for (digits = 0; *e >= '0' && *e <= '9'; e++)
      digits++;
    if (digits < 1 || digits > 3)
      return 0;
    if (i == 0 && *e++ != '.')
      return 0;
  }
  return *e == '\0';
}

/* The length of a reply text line, or SIZE_MAX when it holds an octet
 * outside 0x20..0x7e or is longer than 500 octets. */
static size_t reply_text_len(const char *t) {
  size_t n = strlen(t), i;
  if (n > 500)
    return SIZE_MAX;
#if defined(__SSE2__)
  if (n >= 16) {
    /* sixteen at a time, the last block overlapping; as signed octets,
     * 0x80..0xff are below 0x20 too */
    const __m128i lo = _mm_set1_epi8(0x20), hi = _mm_set1_epi8(0x7e);
    for (i = 0;; i += 16) {
      __m128i v;
      if (i + 16 > n)
        i = n - 16;
      v = _mm_loadu_si128((const __m128i *)(const void *)(t + i));
      if (_mm_movemask_epi8(
              _mm_or_si128(_mm_cmplt_epi8(v, lo), _mm_cmpgt_epi8(v, hi))))
        return SIZE_MAX;
      if (i + 16 >= n)
        return n;
    }
  }
#endif
  for (i = 0; i < n; i++)
    if ((unsigned char)((unsigned char)t[i] - 0x20u) > 0x5eu)
      return SIZE_MAX;
  return n;
}

int smtpd_session_set_reply_lines(smtpd_session *s, int code, const char *enh,
                                  const char *const *lines, size_t nlines) {
  const smtpd_i_decision *d;
  size_t i, total = 0, el = 0, w = 0;
  size_t len[32];
  char *buf;
  static const char *const none[1] = {NULL};
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  d = s->callback_running ? s->in_cb : s->pending;
  if (!d || (d->flags & D_REPLY_NONE))
    return SMTPD_ERR_INVALID_STATE;
  if (code < 200 || code > 599)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (code / 100 == 3 && !(code == 354 && (d->flags & D_REPLY_354)))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (((d->flags & D_REPLY_354) && code / 100 == 2) ||
      ((d->flags & D_REPLY_FAIL) && code < 400) ||
      ((d->flags & D_REPLY_NO_2XX) && code / 100 == 2 && code != 220))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (enh && (code / 100 == 3 || !valid_enh(enh, code / 100)))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!lines || !nlines) {
    lines = none;
    nlines = 1;
  }
  if (nlines > 32)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!enh && code / 100 != 3)
    enh = code / 100 == 2 ? "2.0.0" : code / 100 == 4 ? "4.0.0" : "5.0.0";
  if (enh)
    el = strlen(enh);
  /* the size limit counts the enhanced code even when it is not sent */
  for (i = 0; i < nlines; i++) {
    len[i] = lines[i] ? reply_text_len(lines[i]) : 0;
    if (len[i] == SIZE_MAX)
      return SMTPD_ERR_INVALID_ARGUMENT;
    total += smtpd_i_line_size(el, len[i], 0);
  }
  if (!s->cfg->options[SMTPD_OPT_ENHANCEDSTATUSCODES])
    el = 0;
  if (total > SMTPD_I_REPLY_MAX)
    return SMTPD_ERR_INVALID_ARGUMENT;
  buf = s->reply;
  if (!buf) {
    buf = smtpd_i_alloc(&s->cfg->mem, SMTPD_I_REPLY_MAX);
    if (!buf)
      return SMTPD_ERR_NOMEM;
    s->reply = buf;
  }
  for (i = 0; i < nlines; i++)
    w += smtpd_i_format_line(buf + w, code, i + 1 < nlines ? '-' : ' ', enh,
                             el, lines[i], len[i], NULL, 0);
  s->reply_len = w;
  s->reply_code = code;
  s->reply_set = 1;
  return 0;
}

int smtpd_session_set_reply(smtpd_session *s, int code, const char *enh,
                            const char *text) {
  const char *lines[1];
  lines[0] = text;
  return smtpd_session_set_reply_lines(s, code, enh, text ? lines : NULL,
                                       text ? 1 : 0);
}

int smtpd_session_resume(smtpd_session *s, smtpd_verdict verdict) {
  const smtpd_i_decision *d;
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->callback_running || !s->pending)
    return SMTPD_ERR_INVALID_STATE;
  if (verdict != SMTPD_ACCEPT && verdict != SMTPD_REJECT &&
      verdict != SMTPD_TEMPFAIL && verdict != SMTPD_DISCONNECT &&
      verdict != SMTPD_ABORT)
    return SMTPD_ERR_INVALID_ARGUMENT;
  d = s->pending;
  if (d->resume)
    d->resume(s, verdict);
  else
    smtpd_i_apply(s, d, verdict);
  if (!s->broken)
    smtpd_i_input_settle(s);
  return s->broken;
}

int smtpd_session_set_effects(smtpd_session *s, unsigned effects) {
  const smtpd_i_decision *d;
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  d = s->callback_running ? s->in_cb : s->pending;
  if (d != &smtpd_i_dec_command)
    return SMTPD_ERR_INVALID_STATE;
  if (effects & ~(SMTPD_EFFECT_RESET_TRANSACTION | SMTPD_EFFECT_RESET_HELO |
                  SMTPD_EFFECT_REGREET))
    return SMTPD_ERR_INVALID_ARGUMENT;
  s->effects = effects;
  return 0;
}

static uint32_t q_timeout(const smtpd_session *s, smtpd_timeout *kind) {
  smtpd_timeout k = SMTPD_TIMEOUT_COMMAND;
  if (s->pending || s->broken || !s->started)
    k = SMTPD_TIMEOUT_NONE;
  else if (s->state == ST_DATA || s->state == ST_BDAT)
    k = SMTPD_TIMEOUT_DATA;
  else if (s->state == ST_CLOSED)
    k = s->out_len ? SMTPD_TIMEOUT_COMMAND : SMTPD_TIMEOUT_NONE;
  if (kind)
    *kind = k;
  return k == SMTPD_TIMEOUT_NONE ? 0 : s->cfg->timeouts[k];
}

uint32_t smtpd_session_timeout(const smtpd_session *s, smtpd_timeout *kind) {
  if (!s) {
    if (kind)
      *kind = SMTPD_TIMEOUT_NONE;
    return 0;
  }
  return q_timeout(s, kind);
}

static uint32_t q_deadline(const smtpd_session *s, smtpd_timeout *kind,
                           uint64_t *epoch) {
  smtpd_timeout k = SMTPD_TIMEOUT_NONE;
  uint64_t e = 0;
  if (!s->pending && !s->broken && s->started && s->state != ST_CLOSED) {
    if (s->msg_epoch)
      k = SMTPD_TIMEOUT_MESSAGE, e = s->msg_epoch;
    else if (s->state < ST_BDAT && (s->line_len || s->skipping))
      k = SMTPD_TIMEOUT_LINE, e = s->lines << 1 | 1; /* odd: never a
                                                         message's */
  }
  if (k != SMTPD_TIMEOUT_NONE && !s->cfg->timeouts[k])
    k = SMTPD_TIMEOUT_NONE, e = 0;
  if (kind)
    *kind = k;
  if (epoch)
    *epoch = e;
  return k == SMTPD_TIMEOUT_NONE ? 0 : s->cfg->timeouts[k];
}

uint32_t smtpd_session_deadline(const smtpd_session *s, smtpd_timeout *kind,
                                uint64_t *epoch) {
  if (!s) {
    if (kind)
      *kind = SMTPD_TIMEOUT_NONE;
    if (epoch)
      *epoch = 0;
    return 0;
  }
  return q_deadline(s, kind, epoch);
}

uint32_t smtpd_session_reply_delay(const smtpd_session *s, uint64_t *epoch) {
  int on = s && s->delay_epoch && s->out_consumed < s->delay_mark;
  if (epoch)
    *epoch = on ? s->delay_epoch : 0;
  return on ? s->delay_ms : 0;
}

int smtpd_session_status(const smtpd_session *s, smtpd_status *st) {
  /* the predicates of the queries above, each read once; keep in step */
  unsigned f = 0;
  int broken, pending, closed, on;
  size_t out;
  if (!s || !st)
    return SMTPD_ERR_INVALID_ARGUMENT;
  broken = s->broken != 0;
  pending = s->pending != NULL;
  closed = s->state == ST_CLOSED;
  out = s->out_len;
  if (!broken && s->started && !closed && !pending &&
      out < s->cfg->limits[SMTPD_LIMIT_OUTPUT])
    f |= SMTPD_STATUS_WANT_READ;
  if (output_dead(s))
    f |= SMTPD_STATUS_DONE;
  else if (out)
    f |= SMTPD_STATUS_WANT_WRITE;
  else if (closed && !pending)
    f |= SMTPD_STATUS_DONE;
  if (pending)
    f |= SMTPD_STATUS_PAUSED;
  if (closed || broken)
    f |= SMTPD_STATUS_CLOSING;
  if (!broken && s->state == ST_TLS_WAIT)
    f |= SMTPD_STATUS_TLS_WAIT;
  st->flags = f;
  st->output = out;
  st->timeout = q_timeout(s, NULL);
  st->deadline = 0;
  st->deadline_epoch = 0;
  if (s->msg_epoch || s->line_len || s->skipping)
    st->deadline = q_deadline(s, NULL, &st->deadline_epoch);
  on = s->delay_epoch && s->out_consumed < s->delay_mark;
  st->reply_delay = on ? s->delay_ms : 0;
  st->reply_delay_epoch = on ? s->delay_epoch : 0;
  return 0;
}

int smtpd_session_timeout_expired(smtpd_session *s) {
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->callback_running)
    return SMTPD_ERR_INVALID_STATE;
  if (s->state == ST_CLOSED)
    return 0;
  smtpd_i_auth_reset(s);
  s->pending = NULL;
  smtpd_i_reply_host(s, 421, "4.4.2", "Error: timeout exceeded");
  smtpd_i_close(s, SMTPD_CLOSE_TIMEOUT);
  return s->broken;
}

int smtpd_session_close(smtpd_session *s, const char *enh, const char *text) {
  size_t i;
  if (!s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->callback_running)
    return SMTPD_ERR_INVALID_STATE;
  if (enh && !valid_enh(enh, 4))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (text) {
    for (i = 0; text[i]; i++)
      if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e ||
          i > 400)
        return SMTPD_ERR_INVALID_ARGUMENT;
    /* "421 " enh " " host " " text CRLF within 512 octets */
    if (4 + (enh ? strlen(enh) : 5) + 1 + strlen(s->cfg->hostname) + 1 + i +
            2 >
        512)
      return SMTPD_ERR_INVALID_ARGUMENT;
  }
  if (s->state == ST_CLOSED)
    return 0;
  smtpd_i_auth_reset(s);
  s->pending = NULL;
  smtpd_i_reply_host(s, 421, enh ? enh : "4.3.2",
                     text ? text : "Service shutting down");
  smtpd_i_close(s, SMTPD_CLOSE_HOST);
  return s->broken;
}

int smtpd_session_tls_established(smtpd_session *s,
                                  const smtpd_tls_info *info) {
  const smtpd_mem *m;
  size_t a, b, c, d;
  char *buf;
  if (!s || !info)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (s->callback_running || s->state != ST_TLS_WAIT)
    return SMTPD_ERR_INVALID_STATE;
  m = &s->cfg->mem;
  a = info->protocol ? strlen(info->protocol) + 1 : 0;
  b = info->cipher ? strlen(info->cipher) + 1 : 0;
  c = info->peer_subject ? strlen(info->peer_subject) + 1 : 0;
  d = info->peer_issuer ? strlen(info->peer_issuer) + 1 : 0;
  buf = smtpd_i_alloc(m, a + b + c + d + 1);
  if (!buf) {
    smtpd_i_fail(s, SMTPD_ERR_NOMEM);
    return SMTPD_ERR_NOMEM;
  }
  smtpd_i_free(m, s->tls_strings);
  s->tls_strings = buf;
  s->tls_info = *info;
  s->tls_info.protocol = a ? memcpy(buf, info->protocol, a) : NULL;
  s->tls_info.cipher = b ? memcpy(buf + a, info->cipher, b) : NULL;
  s->tls_info.peer_subject =
      c ? memcpy(buf + a + b, info->peer_subject, c) : NULL;
  s->tls_info.peer_issuer =
      d ? memcpy(buf + a + b + c, info->peer_issuer, d) : NULL;
  s->tls = 1;
  /* RFC 3207 4.2: forget everything learnt before the handshake */
  smtpd_i_reset_transaction(s);
  smtpd_i_auth_reset(s);
  s->helo_seen = 0;
  s->esmtp = 0;
  if (s->helo)
    s->helo[0] = '\0', s->helo_safe = s->helo;
  smtpd_i_free(m, s->auth_user);
  s->auth_user = NULL;
  s->auth_mech = NULL;
  s->line_len = 0;
  s->skipping = 0;
  s->sync_mark = s->out_total;
  if (s->implicit_tls && !s->pending && s->out_total == 0 &&
      s->started)
    return connect_decision(s);
  s->state = ST_CMD;
  return 0;
}

/* ---- accessors ---- */

const char *smtpd_session_hostname(const smtpd_session *s) {
  return s ? s->cfg->hostname : NULL;
}
const char *smtpd_session_helo(const smtpd_session *s) {
  return s && s->helo_seen ? s->helo : NULL;
}
const char *smtpd_session_helo_safe(const smtpd_session *s) {
  return s && s->helo_seen ? s->helo_safe : NULL;
}
int smtpd_session_is_esmtp(const smtpd_session *s) { return s && s->esmtp; }
const char *smtpd_session_client_addr(const smtpd_session *s) {
  return s ? s->client_addr : NULL;
}
const char *smtpd_session_client_rdns(const smtpd_session *s) {
  return s ? s->client_rdns : NULL;
}
const smtpd_tls_info *smtpd_session_tls(const smtpd_session *s) {
  return s && s->tls ? &s->tls_info : NULL;
}
const char *smtpd_session_auth_user(const smtpd_session *s) {
  return s ? s->auth_user : NULL;
}
const char *smtpd_session_auth_mechanism(const smtpd_session *s) {
  return s && s->auth_user ? s->auth_mech : NULL;
}
const char *smtpd_session_sender(const smtpd_session *s) {
  return s && s->in_mail ? s->sender : NULL;
}
size_t smtpd_session_recipient_count(const smtpd_session *s) {
  return s ? s->nrcpts : 0;
}
const char *smtpd_session_recipient(const smtpd_session *s, size_t i) {
  return s && i < s->nrcpts ? s->rcpts[i] : NULL;
}
int smtpd_session_smtputf8(const smtpd_session *s) {
  return s && s->smtputf8;
}
int smtpd_session_requiretls(const smtpd_session *s) {
  return s && s->in_mail && s->requiretls;
}
unsigned smtpd_session_client_port(const smtpd_session *s) {
  return s ? s->client_port : 0;
}
int smtpd_session_set_client_port(smtpd_session *s, unsigned port) {
  if (!s || port > 65535)
    return SMTPD_ERR_INVALID_ARGUMENT;
  s->client_port = port;
  return 0;
}
const char *smtpd_session_protocol(const smtpd_session *s) {
  if (!s)
    return NULL;
  if (s->cfg->options[SMTPD_OPT_LMTP])
    return "LMTP";
  if (s->proto)
    return s->proto;
  return s->esmtp ? "ESMTP" : "SMTP";
}
