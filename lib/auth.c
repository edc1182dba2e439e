/*
 * auth.c - the AUTH exchange (RFC 4954) framed around a SASL backend.
 *
 *   smtpd_i_auth_command    "AUTH mech [initial-response]"
 *   smtpd_i_auth_response   one client line while a challenge is open
 *   smtpd_i_auth_malformed  a response line that cannot be one: 501, ended
 *   smtpd_i_auth_reset      dispose of any exchange in progress
 *   smtpd_i_auth_advertise  the EHLO AUTH line for this channel
 *   smtpd_i_sasl_channel    what the backend may know of the channel
 *
 * A deferred backend step is a decision whose resume lives here; replies,
 * notices and close come from the layers below (reply.c, state.c).
 *
 * The backend sees decoded bytes only; base64, "*", the line limit and
 * every reply are handled here. Each exchange gets fresh backend state and
 * loses it on any ending (the lesson of CVE-2011-1720).
 */
#include <string.h>

#include "internal.h"
#include "reply.h"
#include "parse.h"

void smtpd_i_sasl_channel(const smtpd_session *s, smtpd_sasl_channel *ch) {
  memset(ch, 0, sizeof *ch);
  ch->tls = s->tls;
  ch->allow_plaintext = s->cfg->options[SMTPD_OPT_AUTH_PLAINTEXT];
  ch->ssf = s->tls && s->tls_info.cipher_bits > 0
                ? (unsigned)s->tls_info.cipher_bits
                : 0;
  ch->external_id = s->tls && s->tls_info.client_cert_verified
                        ? s->tls_info.peer_subject
                        : NULL;
  ch->client_addr = s->client_addr;
}

/* The backend answers how long its list is (snprintf style): a list
 * longer than the stack buffer is fetched again into one that fits. */
int smtpd_i_auth_advertise(smtpd_session *s) {
  const smtpd_sasl_backend *b = s->cfg->sasl;
  smtpd_sasl_channel ch;
  char stackbuf[256], *buf = stackbuf;
  size_t cap = sizeof stackbuf, i;
  int n, rv = 0;
  if (!b)
    return 0;
  smtpd_i_sasl_channel(s, &ch);
  buf[0] = '\0';
  n = b->mechanisms(b->ctx, &ch, buf, cap);
  if (n > 0 && (size_t)n >= cap && (size_t)n < 65536) {
    cap = (size_t)n + 1;
    buf = smtpd_i_alloc(&s->cfg->mem, cap);
    if (!buf) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return SMTPD_ERR_NOMEM;
    }
    buf[0] = '\0';
    n = b->mechanisms(b->ctx, &ch, buf, cap);
  }
  if (n <= 0 || (size_t)n >= cap)
    goto out;
  for (i = 0; i < (size_t)n; i++) /* never let a backend break the reply */
    if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] > 0x7e)
      goto out;
  rv = smtpd_i_reply_n(s, 250, '-', NULL, 0, "AUTH ", 5, buf, (size_t)n);
out:
  if (buf != stackbuf)
    smtpd_i_free(&s->cfg->mem, buf);
  return rv;
}

static void auth_resume(smtpd_session *s, smtpd_verdict verdict);
static const smtpd_i_decision auth_decision = {K_AUTH, D_REPLY_NONE, NULL,
                                               auth_resume};

void smtpd_i_auth_reset(smtpd_session *s) {
  const smtpd_sasl_backend *b = s->cfg->sasl;
  if (s->sasl_exch && b)
    b->dispose(s->sasl_exch);
  s->sasl_exch = NULL;
  if (s->pending == &auth_decision)
    s->pending = NULL;
  if (s->state == ST_AUTH)
    s->state = ST_CMD;
}

static int has_controls(const char *p) {
  if (!p)
    return 0;
  for (; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
      return 1;
  return 0;
}

static void fire(smtpd_session *s, int ok, const char *authcid,
                 const char *authzid, const char *reason, int code) {
  smtpd_auth_result r;
  r.mechanism = s->sasl_mech;
  r.authcid = authcid;
  r.authzid = authzid;
  r.reason = reason;
  r.code = code;
  if (ok && s->cb.on_auth_ok)
    s->cb.on_auth_ok(s, &r, s->ud);
  else if (!ok && s->cb.on_auth_fail)
    s->cb.on_auth_fail(s, &r, s->ud);
}

static void end_exchange(smtpd_session *s) {
  smtpd_i_auth_reset(s);
  s->state = ST_CMD;
}

static void failed(smtpd_session *s, const char *reason, const char *who) {
  char text[200], safe[120];
  const char *pre = "Error: authentication failed: ";
  size_t k;
  if (!reason || !*reason)
    reason = "authentication failure";
  smtpd_i_sanitize(safe, sizeof safe, reason, strlen(reason));
  k = strlen(pre);
  memcpy(text, pre, k);
  memcpy(text + k, safe, strlen(safe) + 1);
  smtpd_i_reply(s, 535, "5.7.8", text);
  fire(s, 0, who && !has_controls(who) ? who : NULL, NULL, safe, 535);
  end_exchange(s);
  smtpd_i_tarpit(s); /* the next guess waits */
  if (++s->auth_failures >= s->cfg->limits[SMTPD_LIMIT_AUTH_FAILURES]) {
    smtpd_i_reply_host(s, 421, "4.7.0",
                       "Error: too many failed authentication attempts");
    smtpd_i_close(s, SMTPD_CLOSE_AUTH_FAILURES);
  }
}

/* 334 <base64 challenge> */
static void challenge(smtpd_session *s, const smtpd_sasl_out *out) {
  smtpd_i_reply_base64(s, 334, out->challenge, out->challenge_len);
  s->state = ST_AUTH;
  smtpd_i_set_sync_mark(s);
}

static void handle(smtpd_session *s, int st, const smtpd_sasl_out *out) {
  switch (st) {
  case SMTPD_SASL_OK: {
    char *user;
    if (!out->authcid || !*out->authcid || strlen(out->authcid) > 255 ||
        has_controls(out->authcid) || has_controls(out->authzid)) {
      failed(s, "invalid identity", NULL);
      return;
    }
    user = smtpd_i_strdup(&s->cfg->mem, out->authcid);
    if (!user) {
      smtpd_i_fail(s, SMTPD_ERR_NOMEM);
      return;
    }
    smtpd_i_free(&s->cfg->mem, s->auth_user);
    s->auth_user = user;
    s->auth_mech = s->sasl_mech;
    smtpd_i_reply(s, 235, "2.7.0", "Authentication successful");
    fire(s, 1, out->authcid, out->authzid, NULL, 235);
    end_exchange(s);
    return;
  }
  case SMTPD_SASL_CONTINUE:
    challenge(s, out);
    return;
  case SMTPD_SASL_FAIL:
    failed(s, out->reason, out->authcid);
    return;
  case SMTPD_SASL_NOMECH:
    end_exchange(s);
    smtpd_i_protocol_error(s, 504, "5.5.4",
                           "Unsupported authentication mechanism", 0);
    return;
  case SMTPD_SASL_ENCRYPT:
    end_exchange(s);
    smtpd_i_reply(s, 504, "5.5.4",
                  "Encryption required for requested authentication "
                  "mechanism");
    if (s->cb.on_tls_required)
      s->cb.on_tls_required(s, "AUTH", s->ud);
    return;
  case SMTPD_SASL_BADPROT:
    fire(s, 0, NULL, NULL, "malformed response", 501);
    end_exchange(s);
    smtpd_i_protocol_error(s, 501, "5.5.2",
                           "Error: malformed authentication response", 0);
    return;
  case SMTPD_SASL_DEFER:
    if (s->pending == NULL && s->sasl_exch) {
      s->pending = &auth_decision;
      return;
    }
    /* DEFER without state to resume, or twice: a backend bug */
    /* fall through */
  case SMTPD_SASL_TEMPFAIL:
  default:
    smtpd_i_reply(s, 454, "4.7.0", "Temporary authentication failure");
    fire(s, 0, NULL, NULL, "temporary failure", 454);
    end_exchange(s);
    return;
  }
}

/* Zero n octets in a way the compiler keeps. */
static void wipe(char *p, size_t n) {
  volatile char *v = p;
  while (n--)
    *v++ = 0;
}

static int mech_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_';
}

void smtpd_i_auth_command(smtpd_session *s, char *arg) {
  const smtpd_sasl_backend *b = s->cfg->sasl;
  smtpd_sasl_channel ch;
  smtpd_sasl_out out;
  char *mech, *resp = NULL;
  size_t ml = 0, enc_len = 0;
  long rl = 0;
  int has_resp = 0, st;
  void *exch = NULL;

  if (!b) {
    smtpd_i_protocol_error(s, 503, "5.5.1",
                           "Error: authentication not enabled", 0);
    return;
  }
  if (!s->helo_seen || !s->esmtp) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: send HELO/EHLO first", 0);
    return;
  }
  if (s->auth_user) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: already authenticated", 0);
    return;
  }
  mech = arg;
  if (*mech == ' ')
    mech++;
  while (mech_char((unsigned char)mech[ml]))
    ml++;
  if (ml == 0 || ml >= sizeof s->sasl_mech ||
      (mech[ml] != '\0' && mech[ml] != ' ')) {
    smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: AUTH mechanism", 0);
    return;
  }
  if (mech[ml] == ' ') {
    resp = mech + ml + 1;
    if (!*resp || strchr(resp, ' ')) {
      smtpd_i_protocol_error(s, 501, "5.5.4", "Syntax: AUTH mechanism", 0);
      return;
    }
  }
  {
    size_t i;
    for (i = 0; i < ml; i++) {
      char c = mech[i];
      s->sasl_mech[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    s->sasl_mech[ml] = '\0';
  }
  if (resp) {
    enc_len = strlen(resp);
    has_resp = 1;
    if (!strcmp(resp, "="))
      rl = 0;
    else if ((rl = smtpd_i_base64_decode(resp, strlen(resp), (uint8_t *)resp,
                                         strlen(resp))) < 0) {
      fire(s, 0, NULL, NULL, "cannot decode response", 501);
      smtpd_i_protocol_error(s, 501, "5.5.2", "Cannot decode response", 0);
      return;
    }
  }
  smtpd_i_sasl_channel(s, &ch);
  memset(&out, 0, sizeof out);
  st = b->start(b->ctx, s, &ch, s->sasl_mech, (const uint8_t *)resp,
                (size_t)rl, has_resp, &exch, &out);
  s->sasl_exch = exch;
  if (resp)
    wipe(resp, enc_len);
  handle(s, st, &out);
}

void smtpd_i_auth_malformed(smtpd_session *s, char *line, size_t len) {
  wipe(line, len);
  fire(s, 0, NULL, NULL, "cannot decode response", 501);
  end_exchange(s);
  smtpd_i_protocol_error(s, 501, "5.5.2", "Cannot decode response", 0);
}

void smtpd_i_auth_response(smtpd_session *s, char *line, size_t len) {
  const smtpd_sasl_backend *b = s->cfg->sasl;
  smtpd_sasl_out out;
  long n;
  int st;
  if (len == 1 && line[0] == '*') {
    smtpd_i_reply(s, 501, "5.7.0", "Authentication aborted");
    fire(s, 0, NULL, NULL, "aborted", 501);
    end_exchange(s);
    return;
  }
  n = smtpd_i_base64_decode(line, len, (uint8_t *)line, len);
  if (n < 0) {
    smtpd_i_auth_malformed(s, line, len);
    return;
  }
  if (!b || !b->step || !s->sasl_exch) {
    memset(&out, 0, sizeof out);
    handle(s, SMTPD_SASL_TEMPFAIL, &out);
    return;
  }
  memset(&out, 0, sizeof out);
  st = b->step(s->sasl_exch, (const uint8_t *)line, (size_t)n, &out);
  wipe(line, s->line_len); /* credentials must not linger in the buffer */
  handle(s, st, &out);
}

static void auth_resume(smtpd_session *s, smtpd_verdict verdict) {
  const smtpd_sasl_backend *b = s->cfg->sasl;
  smtpd_sasl_out out;
  int st;
  s->pending = NULL;
  if (verdict == SMTPD_DISCONNECT || verdict == SMTPD_ABORT) {
    smtpd_i_auth_reset(s);
    smtpd_i_end_by_host(s, verdict);
    return;
  }
  memset(&out, 0, sizeof out);
  if (!b || !b->resume || !s->sasl_exch)
    st = SMTPD_SASL_TEMPFAIL;
  else
    st = b->resume(s->sasl_exch, verdict, &out);
  if (st == SMTPD_SASL_DEFER || st == SMTPD_SASL_CONTINUE)
    st = SMTPD_SASL_TEMPFAIL;
  handle(s, st, &out);
}
