/*
 * builtin.c - the built-in AUTH backend: PLAIN (RFC 4616) and LOGIN,
 * checked by a host callback; no dependency beyond libc.
 *
 * The core frames the exchange (base64, 334, "*", limits, replies); this
 * file only parses the decoded client responses, validates the
 * identities, and asks the host's verify callback.
 *
 *   smtpd_sasl_builtin_new   create the backend (a function table)
 *   smtpd_sasl_builtin_del   free it (refuses tables it did not make)
 *   smtpd_sasl_backend_del   free any adapter-made backend via destroy
 *   smtpd_consttime_equal    compare secrets in length-only time
 *
 * Rules kept here (docs/sasl.md says the same in prose):
 * - Both mechanisms are offered and started only when the channel is
 *   encrypted or allows plaintext mechanisms; otherwise start() answers
 *   SMTPD_SASL_ENCRYPT and mechanisms() lists nothing.
 * - An identity (authcid, authzid) is 1..255 octets of well-formed UTF-8
 *   without controls (< 0x20, 0x7f); anything else is BADPROT and never
 *   reaches the verify callback. An empty authcid or password, a PLAIN
 *   message without exactly two NULs, a password over 1024 octets or
 *   containing NUL are BADPROT too (501 5.5.2): they are malformed
 *   messages, not wrong credentials.
 * - The password handed to the callback is a NUL-terminated copy that is
 *   wiped and freed as soon as the callback returns.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/sasl.h"

#define MAX_ID 255u      /* RFC 4616 2: servers may limit ids to 255 */
#define MAX_PASSWORD 1024u

enum mech { MECH_PLAIN = 1, MECH_LOGIN };

enum state {
  ST_PLAIN_WAIT = 1, /* PLAIN without initial response: want the message */
  ST_LOGIN_USER,     /* LOGIN: "Username:" sent */
  ST_LOGIN_PASS,     /* LOGIN: "Password:" sent */
  ST_VERIFYING,      /* verify callback deferred; waiting for resume() */
  ST_DONE            /* terminal answer given; nothing more accepted */
};

typedef struct builtin {
  smtpd_sasl_backend table; /* first: smtpd_sasl_backend * <-> builtin * */
  smtpd_mem mem;
  smtpd_sasl_verify_fn verify;
  void *verify_ctx;
} builtin;

typedef struct exchange {
  builtin *be;
  smtpd_session *session;
  enum mech mech;
  enum state state;
  char authcid[MAX_ID + 1];
  char authzid[MAX_ID + 1]; /* "" when none */
} exchange;

static const char REASON_FAILED[] = "authentication failure";
static const uint8_t CHALLENGE_USER[] = "Username:";
static const uint8_t CHALLENGE_PASS[] = "Password:";

/* ---- allocator ---------------------------------------------------------- */

/* wipe - zero n octets in a way the compiler may not drop. */
static void wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n--)
    *v++ = 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* smtpd_consttime_equal - 1 when equal; time depends on the lengths only. */
int smtpd_consttime_equal(const void *a, size_t alen, const void *b,
                          size_t blen) {
  const volatile unsigned char *x = a;
  const volatile unsigned char *y = b;
  size_t n = alen > blen ? alen : blen;
  unsigned diff = alen != blen;
  size_t i;

  if ((alen && !a) || (blen && !b))
    return 0;
  /* Walk the longer length; read the shorter string at a valid offset so
   * the loop does the same work whatever the contents are. */
  for (i = 0; i < n; i++) {
    unsigned char cx = alen ? x[i < alen ? i : alen - 1] : 0;
    unsigned char cy = blen ? y[i < blen ? i : blen - 1] : 0;
    diff |= (unsigned)(cx ^ cy);
  }
  return diff == 0;
}

/* utf8_next - length of the well-formed UTF-8 sequence at s (n octets
 * left), or 0 when malformed (overlong, surrogate, > U+10FFFF). */
static size_t utf8_next(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len, i;
  uint32_t cp;

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3fu);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
    return 0;
  return len;
}

/* copy_identity - validate an identity (1..255 octets, UTF-8, no
 * controls) and copy it NUL-terminated into dst[MAX_ID + 1]. allow_empty
 * lets an empty authzid through. Returns 0 or -1. */
static int copy_identity(char *dst, const uint8_t *src, size_t len,
                         int allow_empty) {
  size_t i = 0;

  if (len == 0 && !allow_empty)
    return -1;
  if (len > MAX_ID)
    return -1;
  while (i < len) {
    size_t step;
    if (src[i] < 0x20 || src[i] == 0x7f)
      return -1;
    step = utf8_next(src + i, len - i);
    if (step == 0)
      return -1;
    i += step;
  }
  if (len)
    memcpy(dst, src, len);
  dst[len] = '\0';
  return 0;
}

static void out_clear(smtpd_sasl_out *out) {
  memset(out, 0, sizeof *out);
}

static int finish(exchange *x, int status, smtpd_sasl_out *out) {
  out_clear(out);
  x->state = ST_DONE;
  switch (status) {
  case SMTPD_SASL_OK:
    out->authcid = x->authcid;
    out->authzid = x->authzid[0] ? x->authzid : NULL;
    break;
  case SMTPD_SASL_FAIL:
    /* The identity passed validation, so it is safe for the event. */
    out->authcid = x->authcid[0] ? x->authcid : NULL;
    out->authzid = x->authzid[0] ? x->authzid : NULL;
    out->reason = REASON_FAILED;
    break;
  default:
    break;
  }
  return status;
}

/* verdict_status - what a verify verdict means for the exchange (resume
 * passes the host's verdict as an int: anything unknown is REJECT). */
static int verdict_status(int verdict) {
  switch (verdict) {
  case SMTPD_ACCEPT:
    return SMTPD_SASL_OK;
  case SMTPD_TEMPFAIL:
    return SMTPD_SASL_TEMPFAIL;
  case SMTPD_REJECT:
  default:
    return SMTPD_SASL_FAIL;
  }
}

/* check - hand the identities and a NUL-terminated, wiped-after-use copy
 * of the password to the host. */
static int check(exchange *x, const uint8_t *pw, size_t pwlen,
                 smtpd_sasl_out *out) {
  builtin *be = x->be;
  const char *mech = x->mech == MECH_PLAIN ? "PLAIN" : "LOGIN";
  char *copy;
  smtpd_verdict verdict;

  if (pwlen == 0 || pwlen > MAX_PASSWORD || memchr(pw, 0, pwlen))
    return finish(x, SMTPD_SASL_BADPROT, out);
  copy = be->mem.malloc(pwlen + 1, be->mem.ctx);
  if (!copy)
    return finish(x, SMTPD_SASL_TEMPFAIL, out);
  memcpy(copy, pw, pwlen);
  copy[pwlen] = '\0';
  verdict = be->verify(x->session, mech, x->authcid,
                       x->authzid[0] ? x->authzid : NULL, copy, pwlen,
                       be->verify_ctx);
  wipe(copy, pwlen + 1);
  be->mem.free(copy, be->mem.ctx);
  if (verdict == SMTPD_DEFER) {
    out_clear(out);
    x->state = ST_VERIFYING;
    return SMTPD_SASL_DEFER;
  }
  return finish(x, verdict_status(verdict), out);
}

/* plain_message - authzid NUL authcid NUL passwd (RFC 4616 2). */
static int plain_message(exchange *x, const uint8_t *m, size_t len,
                         smtpd_sasl_out *out) {
  const uint8_t *nul1, *nul2, *pw;
  size_t zlen, clen, pwlen;

  nul1 = len ? memchr(m, 0, len) : NULL;
  if (!nul1)
    return finish(x, SMTPD_SASL_BADPROT, out);
  zlen = (size_t)(nul1 - m);
  nul2 = memchr(nul1 + 1, 0, len - zlen - 1);
  if (!nul2)
    return finish(x, SMTPD_SASL_BADPROT, out);
  clen = (size_t)(nul2 - nul1 - 1);
  pw = nul2 + 1;
  pwlen = len - zlen - clen - 2;
  /* A third NUL is caught by check() (NUL inside the password). */
  if (copy_identity(x->authzid, m, zlen, 1) != 0 ||
      copy_identity(x->authcid, nul1 + 1, clen, 0) != 0) {
    x->authcid[0] = x->authzid[0] = '\0';
    return finish(x, SMTPD_SASL_BADPROT, out);
  }
  return check(x, pw, pwlen, out);
}

static int login_user(exchange *x, const uint8_t *u, size_t len,
                      smtpd_sasl_out *out) {
  if (copy_identity(x->authcid, u, len, 0) != 0) {
    x->authcid[0] = '\0';
    return finish(x, SMTPD_SASL_BADPROT, out);
  }
  out_clear(out);
  out->challenge = CHALLENGE_PASS;
  out->challenge_len = sizeof CHALLENGE_PASS - 1;
  x->state = ST_LOGIN_PASS;
  return SMTPD_SASL_CONTINUE;
}

static int offered(const smtpd_sasl_channel *ch) {
  return ch->tls || ch->allow_plaintext;
}

static int mech_of(const char *name) {
  static const char *const names[] = {"PLAIN", "LOGIN"};
  size_t i, j;

  for (i = 0; i < 2; i++) {
    const char *n = names[i];
    for (j = 0; n[j]; j++) {
      char c = name[j];
      if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
      if (c != n[j])
        break;
    }
    if (!n[j] && !name[j])
      return i == 0 ? MECH_PLAIN : MECH_LOGIN;
  }
  return 0;
}

/* ---- the function table ------------------------------------------------- */

static int b_mechanisms(void *ctx, const smtpd_sasl_channel *ch, char *buf,
                        size_t cap) {
  const char *list;
  size_t n;

  (void)ctx;
  if (!ch || (cap && !buf))
    return SMTPD_ERR_INVALID_ARGUMENT;
  list = offered(ch) ? "PLAIN LOGIN" : "";
  n = strlen(list);
  if (cap) {
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(buf, list, k);
    buf[k] = '\0';
  }
  return (int)n;
}

static int b_start(void *ctx, smtpd_session *s, const smtpd_sasl_channel *ch,
                   const char *mech, const uint8_t *resp, size_t len,
                   int has_resp, void **exch, smtpd_sasl_out *out) {
  builtin *be = ctx;
  exchange *x;
  int m;

  if (!out)
    return SMTPD_SASL_TEMPFAIL;
  out_clear(out);
  if (!be || !ch || !mech || !exch || (len && !resp))
    return SMTPD_SASL_TEMPFAIL;
  *exch = NULL;
  m = mech_of(mech);
  if (!m)
    return SMTPD_SASL_NOMECH;
  if (!offered(ch))
    return SMTPD_SASL_ENCRYPT;
  x = be->mem.calloc(1, sizeof *x, be->mem.ctx);
  if (!x)
    return SMTPD_SASL_TEMPFAIL;
  x->be = be;
  x->session = s;
  x->mech = (enum mech)m;
  *exch = x;

  if (x->mech == MECH_PLAIN) {
    if (!has_resp) {
      /* RFC 4954 4: an empty challenge asks for the message. */
      x->state = ST_PLAIN_WAIT;
      out->challenge = (const uint8_t *)"";
      out->challenge_len = 0;
      return SMTPD_SASL_CONTINUE;
    }
    return plain_message(x, resp, len, out);
  }
  /* LOGIN: an initial response (some clients send one) is the user. */
  if (has_resp)
    return login_user(x, resp, len, out);
  x->state = ST_LOGIN_USER;
  out->challenge = CHALLENGE_USER;
  out->challenge_len = sizeof CHALLENGE_USER - 1;
  return SMTPD_SASL_CONTINUE;
}

static int b_step(void *exch, const uint8_t *resp, size_t len,
                  smtpd_sasl_out *out) {
  exchange *x = exch;

  if (!out)
    return SMTPD_SASL_TEMPFAIL;
  out_clear(out);
  if (!x || (len && !resp))
    return SMTPD_SASL_TEMPFAIL;
  switch (x->state) {
  case ST_PLAIN_WAIT:
    return plain_message(x, resp, len, out);
  case ST_LOGIN_USER:
    return login_user(x, resp, len, out);
  case ST_LOGIN_PASS:
    return check(x, resp, len, out);
  case ST_VERIFYING:
  case ST_DONE:
  default:
    /* No answer is expected now: the core misused the exchange. */
    return finish(x, SMTPD_SASL_BADPROT, out);
  }
}

static int b_resume(void *exch, int verdict, smtpd_sasl_out *out) {
  exchange *x = exch;

  if (!out)
    return SMTPD_SASL_TEMPFAIL;
  out_clear(out);
  if (!x)
    return SMTPD_SASL_TEMPFAIL;
  if (x->state != ST_VERIFYING)
    return finish(x, SMTPD_SASL_FAIL, out);
  return finish(x, verdict_status(verdict), out);
}

static void b_dispose(void *exch) {
  exchange *x = exch;
  smtpd_mem mem;

  if (!x)
    return;
  mem = x->be->mem;
  wipe(x, sizeof *x);
  mem.free(x, mem.ctx);
}

/* ---- constructor and destructor ----------------------------------------- */

static void b_destroy(smtpd_sasl_backend *backend);

/* own - the builtin behind backend, or NULL when the table is not one
 * smtpd_sasl_builtin_new made: another adapter's or a host's (destroy is
 * not ours), or a copy of ours (not the table inside its builtin). */
static builtin *own(smtpd_sasl_backend *backend) {
  builtin *be;

  /* A version 1 table ends before destroy: do not read it. */
  if (!backend || backend->version < 2 || backend->destroy != b_destroy)
    return NULL;
  be = backend->ctx;
  return be && &be->table == backend ? be : NULL;
}

static void b_destroy(smtpd_sasl_backend *backend) {
  builtin *be = own(backend);
  smtpd_mem mem;

  if (!be)
    return; /* a copy: the original is freed through itself */
  mem = be->mem;
  wipe(be, sizeof *be);
  mem.free(be, mem.ctx);
}

int smtpd_sasl_builtin_new(smtpd_sasl_backend **out, const smtpd_mem *mem,
                           smtpd_sasl_verify_fn verify, void *ctx) {
  builtin *be;

  if (!out || !verify)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (mem && (!mem->malloc || !mem->free || !mem->calloc || !mem->realloc))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!mem)
    mem = smtpd_mem_default();
  be = mem->calloc(1, sizeof *be, mem->ctx);
  if (!be)
    return SMTPD_ERR_NOMEM;
  be->mem = *mem;
  be->verify = verify;
  be->verify_ctx = ctx;
  be->table.version = SMTPD_SASL_BACKEND_VERSION;
  be->table.ctx = be;
  be->table.mechanisms = b_mechanisms;
  be->table.start = b_start;
  be->table.step = b_step;
  be->table.resume = b_resume;
  be->table.dispose = b_dispose;
  be->table.destroy = b_destroy;
  *out = &be->table;
  return SMTPD_OK;
}

int smtpd_sasl_builtin_del(smtpd_sasl_backend *backend) {
  if (!backend)
    return SMTPD_OK;
  if (!own(backend))
    return SMTPD_ERR_INVALID_ARGUMENT; /* not ours: refuse to free it */
  b_destroy(backend);
  return SMTPD_OK;
}

/* smtpd_sasl_backend_del - any adapter's backend, through its destroy
 * (which checks the table is really its own). */
void smtpd_sasl_backend_del(smtpd_sasl_backend *backend) {
  if (backend && backend->version >= 2 && backend->destroy)
    backend->destroy(backend);
}
