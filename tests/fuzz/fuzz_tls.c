/*
 * fuzz_tls.c - libFuzzer harness for the GnuTLS adapter
 * (include/smtpd/tls_gnutls.h): arbitrary records fed to a server
 * connection before any handshake, and, after a real in-memory handshake
 * with a GnuTLS client (TLS 1.2 or 1.3), interleaved with the client's
 * genuine records: injected bytes, corrupted records, KeyUpdate,
 * renegotiation attempts, close_notify, end of file, server writes; read
 * directly (smtpd_tls_conn_read) or pumped into an SMTP session with
 * implicit TLS (smtpd_tls_conn_pump).
 *
 * Oracles:
 *  - nothing that is not the client's genuine, in-order plaintext ever
 *    comes out: what the server decrypts (read, or what the session was
 *    fed) is always a prefix of what the client encrypted;
 *  - before the handshake completes read and write refuse
 *    (SMTPD_ERR_INVALID_STATE) and nothing reaches the session (no
 *    greeting, no event); garbage never completes a handshake;
 *  - once failed, always failed: feed, handshake and read keep returning
 *    SMTPD_ERR_TLS and no plaintext surfaces afterwards;
 *  - feed never takes more than offered or than SMTPD_TLS_INPUT_CAP
 *    holds; consume refuses more than is queued;
 *  - every reply the client decrypts from the session is well-formed SMTP.
 *  Leaks and memory errors: ASan/LSan.
 *
 * A third mode drives the TLS-wrapped session (smtpd_tls_session_*): a
 * plaintext SMTP conversation whose STARTTLS the host accepts with
 * smtpd_tls_session_prepare, the switch once the 220 is written, the
 * client's handshake over the same stream (or implicit TLS from the first
 * octet), then the same ops. Its oracles: every reply the client reads,
 * plaintext or decrypted, is well-formed; a HELO name the session sees
 * under TLS was sent by the client encrypted (plaintext pipelined after
 * STARTTLS never surfaces as a protected command); is_done never holds
 * while the session is paused.
 *
 * Input: byte 0 flags (bit 0 handshake first, bit 1 TLS 1.2 instead of
 * 1.3 (wrapper: implicit TLS), bit 2 pump into a session, bits 3 and 4
 * both set: the wrapper mode, bits 3-7 feed piece sizes); then ops:
 *   0x00 L B..  client sends L octets of plaintext
 *   0x01 L B..  L raw octets injected into the server's input
 *   0x02 K      flip bit K%8 of octet K of the client's pending records
 *   0x03        deliver the client's records to the server and process
 *   0x04 L B..  the server writes L octets (client decrypts them)
 *   0x05        client close_notify      0x06  end of file at the server
 *   0x07        client KeyUpdate (1.3)   0x08  client renegotiates (1.2)
 * Without a handshake every op's octets are raw ciphertext.
 *
 * Speed: the client resumes a session (a TLS 1.2 or 1.3 session of a full
 * handshake made at start-up and every ten minutes, with the server
 * context's tickets) unless the flag byte picks a full handshake (one
 * flag value in eight, in every mode): the certificate, its signature
 * and the key exchange were most of an execution's time. Build:
 * tests/fuzz.cmake.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz_common.h"
#include "smtpd/tls_gnutls.h"

static smtpd_tls_ctx *g_ctx;

static int printable_reason(const char *p) {
  if (!p)
    return 0;
  for (; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
      return 0;
  return 1;
}

static void init_once(void);

/* ---- the client ------------------------------------------------------------- */

typedef struct client {
  gnutls_session_t s;
  gnutls_certificate_credentials_t cred;
  fz_buf in;  /* server -> client ciphertext */
  size_t in_off;
  fz_buf out; /* client -> server ciphertext not yet delivered */
  int done;
} client;

static ssize_t c_push(gnutls_transport_ptr_t p, const void *d, size_t n) {
  client *c = p;
  fz_buf_put(&c->out, d, n);
  return (ssize_t)n;
}

static ssize_t c_pull(gnutls_transport_ptr_t p, void *d, size_t n) {
  client *c = p;
  size_t avail = c->in.len - c->in_off;
  if (!avail) {
    gnutls_transport_set_errno(c->s, EAGAIN);
    return -1;
  }
  if (n > avail)
    n = avail;
  memcpy(d, c->in.p + c->in_off, n);
  c->in_off += n;
  return (ssize_t)n;
}

static int c_pull_timeout(gnutls_transport_ptr_t p, unsigned ms) {
  client *c = p;
  (void)ms;
  return c->in.len > c->in_off;
}

/* Kept across executions (docs/fuzzing.md, "Speed"): the client's
 * (empty) certificate credentials, and per protocol version the session
 * data of a full handshake with the server context, with which most
 * executions resume instead of doing a full handshake again. */
static gnutls_certificate_credentials_t g_ccred;
static gnutls_datum_t g_resume[2]; /* [tls12] */
static int g_resume_on = 1;        /* 0 while init_once makes them */

/* The handshake of this execution resumes (most do; a full handshake,
 * with the server's certificate and signature, when the flags say so:
 * one flag value in eight, spread over every mode). */
static int g_resume_now;

static int resume_wanted(uint8_t fl) {
  return (fz_mix((uint64_t)fl ^ 0x7e5u) & 7) != 0;
}

static void client_init(client *c, int tls12) {
  memset(c, 0, sizeof *c);
  c->cred = g_ccred;
  FZ_CHECK(gnutls_init(&c->s, GNUTLS_CLIENT | GNUTLS_NONBLOCK) == 0, "init");
  FZ_CHECK(gnutls_priority_set_direct(
               c->s,
               tls12 ? "NORMAL:-VERS-ALL:+VERS-TLS1.2"
                     : "NORMAL:-VERS-ALL:+VERS-TLS1.3",
               NULL) == 0,
           "priority");
  FZ_CHECK(gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, c->cred) == 0,
           "credentials");
  gnutls_handshake_set_timeout(c->s, 0);
  gnutls_transport_set_ptr(c->s, c);
  gnutls_transport_set_push_function(c->s, c_push);
  gnutls_transport_set_pull_function(c->s, c_pull);
  gnutls_transport_set_pull_timeout_function(c->s, c_pull_timeout);
  if (g_resume_on && g_resume_now && g_resume[tls12 ? 1 : 0].size)
    FZ_CHECK(gnutls_session_set_data(c->s, g_resume[tls12 ? 1 : 0].data,
                                     g_resume[tls12 ? 1 : 0].size) == 0,
             "session_set_data");
}

static void client_free(client *c) {
  gnutls_deinit(c->s);
  fz_buf_free(&c->in);
  fz_buf_free(&c->out);
}

/* ---- the server side and the oracle state ------------------------------------- */

typedef struct world {
  smtpd_tls_conn *conn;
  smtpd_session *sess;
  smtpd_config *cfg;
  client cl;
  int pump, failed, hs;
  uint64_t st;       /* feed piece sizes */
  fz_buf sent;       /* plaintext the client encrypted, in order */
  fz_buf got;        /* plaintext the server decrypted (read or session) */
  fz_buf replies;    /* session replies the client decrypted */
  fz_buf srv_sent;   /* plaintext the server wrote */
  fz_buf cl_got;     /* plaintext the client decrypted from the server */
} world;

static void got_prefix(world *w) {
  FZ_CHECK(w->got.len <= w->sent.len &&
               fz_same(w->got.p, w->got.len, w->sent.p, w->got.len),
           "server plaintext (%zu octets) is not a prefix of what the client "
           "sent (%zu)",
           w->got.len, w->sent.len);
}

static void note_result(world *w, long r) {
  if (r == SMTPD_ERR_TLS)
    w->failed = 1;
  else if (w->failed)
    FZ_CHECK(r < 0, "a failed connection came back (%ld)", r);
}

/* Pumped into a session, the plaintext is not seen directly: a HELO
 * name the session reports must be one the client really sent, and only
 * after the handshake. */
static smtpd_verdict on_helo(smtpd_session *s, const smtpd_helo *h, void *ud) {
  world *w = ud;
  size_t n = strlen(h->name), i;
  int found = 0;
  (void)s;
  FZ_CHECK(smtpd_tls_conn_handshake_done(w->conn),
           "HELO reached the session before the handshake");
  for (i = 0; !found && n && i + n <= w->sent.len; i++)
    found = !memcmp(w->sent.p + i, h->name, n);
  FZ_CHECK(found || !n, "HELO name [%s] was never sent by the client",
           h->name);
  return SMTPD_ACCEPT;
}

static smtpd_verdict on_connect(smtpd_session *s, void *ud) {
  world *w = ud;
  FZ_CHECK(smtpd_tls_conn_handshake_done(w->conn) && smtpd_session_tls(s),
           "greeting before the handshake");
  return SMTPD_ACCEPT;
}

/* ---- the TLS-wrapped session ------------------------------------------------------ */

typedef struct wworld {
  smtpd_tls_session *ts;
  smtpd_session *s;
  smtpd_config *cfg;
  client cl;
  int client_tls; /* the client speaks TLS now */
  uint64_t st;
  fz_buf plain_out; /* replies before the switch */
  fz_buf replies;   /* replies decrypted by the client */
  fz_buf sent;      /* plaintext the client encrypted */
} wworld;

static smtpd_verdict w_starttls(smtpd_session *s, void *ud) {
  wworld *w = ud;
  (void)s;
  return smtpd_tls_session_prepare(w->ts) == 0 ? SMTPD_ACCEPT : SMTPD_TEMPFAIL;
}

static smtpd_verdict w_helo(smtpd_session *s, const smtpd_helo *h, void *ud) {
  wworld *w = ud;
  size_t n = strlen(h->name), i;
  int found = 0;
  if (!smtpd_session_tls(s))
    return SMTPD_ACCEPT;
  for (i = 0; !found && n && i + n <= w->sent.len; i++)
    found = !memcmp(w->sent.p + i, h->name, n);
  FZ_CHECK(found || !n, "HELO [%s] under TLS was not sent encrypted",
           h->name);
  return SMTPD_ACCEPT;
}

static void w_switch_client(wworld *w, int tls12) {
  client_init(&w->cl, tls12);
  w->client_tls = 1;
  (void)gnutls_handshake(w->cl.s);
}

/* move bytes both ways until nothing moves */
static void w_deliver(wworld *w, int tls12) {
  int rounds;
  for (rounds = 0; rounds < 30; rounds++) {
    size_t moved = 0, off = 0;
    const uint8_t *p;
    size_t n;
    fz_buf b = w->cl.out;
    memset(&w->cl.out, 0, sizeof w->cl.out);
    while (off < b.len) {
      size_t k = b.len - off, want = 1 + (size_t)(fz_next(&w->st) % 1500);
      ptrdiff_t took;
      if (k > want)
        k = want;
      took = smtpd_tls_session_feed(w->ts, b.p + off, k);
      if (took < 0)
        break;
      FZ_CHECK((size_t)took <= k, "wrapper feed took too much");
      if (took == 0) {
        break; /* not reading now: the rest stays with the client */
      }
      off += (size_t)took;
      moved += (size_t)took;
    }
    if (off < b.len) /* keep what was not taken, in front */
      fz_buf_put(&w->cl.out, b.p + off, b.len - off);
    fz_buf_free(&b);
    n = smtpd_tls_session_output(w->ts, &p);
    if (n) {
      if (!w->client_tls) {
        size_t before = w->plain_out.len;
        fz_buf_put(&w->plain_out, p, n);
        FZ_CHECK(smtpd_tls_session_consume(w->ts, n) == 0, "consume");
        if (memmem(w->plain_out.p + (before > 40 ? before - 40 : 0),
                   w->plain_out.len - (before > 40 ? before - 40 : 0),
                   "220 2.0.0 Ready to start TLS\r\n", 30))
          w_switch_client(w, tls12);
      } else {
        fz_buf_put(&w->cl.in, p, n);
        FZ_CHECK(smtpd_tls_session_consume(w->ts, n) == 0, "consume");
      }
      moved += n;
    }
    if (w->client_tls) {
      char tmp[4096];
      ssize_t r;
      if (!w->cl.done && gnutls_handshake(w->cl.s) == 0)
        w->cl.done = 1;
      while (w->cl.done) {
        r = gnutls_record_recv(w->cl.s, tmp, sizeof tmp);
        if (r > 0) {
          fz_buf_put(&w->replies, tmp, (size_t)r);
          continue;
        }
        if (r == GNUTLS_E_AGAIN && w->cl.in.len > w->cl.in_off)
          continue;
        if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_WARNING_ALERT_RECEIVED)
          continue;
        break;
      }
      if (w->cl.out.len)
        moved += 1;
    }
    FZ_CHECK(!smtpd_tls_session_is_done(w->ts) ||
                 !smtpd_session_is_paused(w->s),
             "wrapper done while the session is paused");
    if (!moved)
      break;
  }
}

static void w_check(const fz_buf *b, const char *what) {
  fz_replies r;
  char why[200];
  size_t n = b->len;
  while (n && b->p[n - 1] != '\n')
    n--;
  FZ_CHECK(!fz_parse_replies(b->p, n, &r, why, sizeof why), "%s: %s", what,
           why);
}

static void wrapper(const uint8_t *data, size_t size) {
  wworld w;
  smtpd_callbacks cb;
  uint8_t fl = data[0];
  int implicit = (fl >> 1) & 1;
  size_t i = 1;
  memset(&w, 0, sizeof w);
  w.st = fz_mix(fl) | 1;
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_starttls = w_starttls;
  cb.on_helo = w_helo;
  FZ_CHECK(smtpd_config_new(&w.cfg, NULL) == 0, "config");
  FZ_CHECK(smtpd_config_set_option(w.cfg, SMTPD_OPT_STARTTLS, 1) == 0, "opt");
  FZ_CHECK(smtpd_session_new(&w.s, w.cfg, &cb, &w) == 0, "session");
  FZ_CHECK(smtpd_tls_session_new(&w.ts, w.s, g_ctx,
                                 implicit ? SMTPD_TLS_IMPLICIT
                                          : SMTPD_TLS_STARTTLS) == 0,
           "tls_session_new");
  FZ_CHECK(smtpd_tls_session_session(w.ts) == w.s, "wrapped session");
  FZ_CHECK(smtpd_session_start(w.s) == 0, "start");
  if (implicit)
    w_switch_client(&w, 0);
  w_deliver(&w, 0);
  while (i < size && !smtpd_tls_session_is_done(w.ts)) {
    uint8_t op = data[i++] % 9;
    size_t l = 0;
    if (op <= 1) {
      l = i < size ? data[i++] : 0;
      if (l > size - i)
        l = size - i;
    }
    switch (op) {
    case 0:
      if (w.client_tls && w.cl.done) {
        size_t off = 0;
        while (off < l) {
          ssize_t r = gnutls_record_send(w.cl.s, data + i + off, l - off);
          if (r <= 0)
            break;
          fz_buf_put(&w.sent, data + i + off, (size_t)r);
          off += (size_t)r;
        }
      } else if (!w.client_tls) {
        fz_buf_put(&w.cl.out, data + i, l); /* plaintext */
      }
      i += l;
      break;
    case 1:
      fz_buf_put(&w.cl.out, data + i, l);
      i += l;
      break;
    case 2:
      if (i < size) {
        size_t k = data[i++];
        if (w.cl.out.len)
          w.cl.out.p[k % w.cl.out.len] ^= (uint8_t)(1u << (k % 8));
      }
      break;
    case 4:
      (void)smtpd_tls_session_timeout(w.ts, NULL);
      FZ_CHECK(smtpd_tls_session_timeout_expired(w.ts) >= 0 ||
                   smtpd_session_is_closing(w.s),
               "timeout_expired");
      break;
    case 5:
      if (w.client_tls)
        gnutls_bye(w.cl.s, GNUTLS_SHUT_WR);
      break;
    case 6:
      (void)smtpd_tls_session_eof(w.ts);
      break;
    case 7:
      if (w.client_tls && w.cl.done)
        gnutls_session_key_update(w.cl.s, GNUTLS_KU_PEER);
      break;
    default:
      break;
    }
    w_deliver(&w, 0);
  }
  w_deliver(&w, 0);
  w_check(&w.plain_out, "plaintext replies");
  w_check(&w.replies, "replies under TLS");
  FZ_CHECK(printable_reason(smtpd_tls_session_error(w.ts)), "error text");
  if (getenv("FUZZ_DEBUG"))
    fprintf(stderr, "wrapper: tls %d done %d [%s]\n%.*s---\n%.*s",
            smtpd_tls_session_is_tls(w.ts), smtpd_tls_session_is_done(w.ts),
            smtpd_tls_session_error(w.ts), (int)w.plain_out.len,
            (const char *)w.plain_out.p, (int)w.replies.len,
            (const char *)w.replies.p);
  smtpd_tls_session_del(w.ts);
  smtpd_session_del(w.s);
  smtpd_config_del(w.cfg);
  if (w.client_tls)
    client_free(&w.cl);
  else {
    fz_buf_free(&w.cl.in);
    fz_buf_free(&w.cl.out);
  }
  fz_buf_free(&w.plain_out);
  fz_buf_free(&w.replies);
  fz_buf_free(&w.sent);
}

static void server_process(world *w) {
  char tmp[4096];
  ptrdiff_t r;
  int h;
  if (w->pump) {
    r = smtpd_tls_conn_pump(w->conn, w->sess);
    FZ_CHECK(r == 0 || r == SMTPD_ERR_CLOSED || r == SMTPD_ERR_TLS ||
                 r == SMTPD_ERR_INVALID_STATE,
             "pump returned %td", r);
    note_result(w, r);
    if (smtpd_tls_conn_handshake_done(w->conn))
      w->hs = 1;
    return;
  }
  h = smtpd_tls_conn_handshake(w->conn);
  note_result(w, h);
  if (h == 0)
    w->hs = 1;
  if (h != 0) {
    r = smtpd_tls_conn_read(w->conn, tmp, sizeof tmp);
    FZ_CHECK(r == SMTPD_ERR_INVALID_STATE || r == SMTPD_ERR_TLS ||
                 r == SMTPD_ERR_CLOSED,
             "read before the handshake returned %td", r);
    r = smtpd_tls_conn_write(w->conn, "x", 1);
    FZ_CHECK(r < 0, "write before the handshake took %td", r);
    return;
  }
  for (;;) {
    r = smtpd_tls_conn_read(w->conn, tmp, sizeof tmp);
    note_result(w, r);
    if (r <= 0)
      break;
    FZ_CHECK(!w->failed, "plaintext after a failure");
    fz_buf_put(&w->got, tmp, (size_t)r);
    got_prefix(w);
  }
}

/* ciphertext into the server, in pieces */
static void server_feed(world *w, const uint8_t *p, size_t n) {
  size_t off = 0;
  int spins = 0;
  while (off < n) {
    size_t k = n - off, want = 1 + (size_t)(fz_next(&w->st) % 1500);
    ptrdiff_t took;
    if (k > want)
      k = want;
    took = smtpd_tls_conn_feed(w->conn, p + off, k);
    note_result(w, took);
    if (took < 0)
      return;
    FZ_CHECK((size_t)took <= k, "feed took %td of %zu", took, k);
    off += (size_t)took;
    server_process(w);
    if (took == 0 && ++spins > 100)
      return; /* the input buffer stays full: the connection is stuck */
  }
}

/* the server's output to the client; the client decrypts what it can */
static void server_to_client(world *w) {
  const uint8_t *p;
  size_t n;
  char tmp[4096];
  ssize_t r;
  if (w->pump) {
    /* the session's replies go out through the connection */
    server_process(w);
  }
  n = smtpd_tls_conn_output(w->conn, &p);
  if (n) {
    fz_buf_put(&w->cl.in, p, n);
    FZ_CHECK(smtpd_tls_conn_consume(w->conn, n + 1) ==
                 SMTPD_ERR_INVALID_ARGUMENT,
             "consume took more than was queued");
    FZ_CHECK(smtpd_tls_conn_consume(w->conn, n) == 0, "consume");
  }
  if (!w->cl.done) {
    int rc = gnutls_handshake(w->cl.s);
    if (rc == 0)
      w->cl.done = 1;
    return;
  }
  for (;;) {
    r = gnutls_record_recv(w->cl.s, tmp, sizeof tmp);
    if (r > 0) {
      fz_buf_put(w->pump ? &w->replies : &w->cl_got, tmp, (size_t)r);
      continue;
    }
    if (r == GNUTLS_E_AGAIN && w->cl.in.len > w->cl.in_off)
      continue;
    if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_WARNING_ALERT_RECEIVED)
      continue;
    break;
  }
}

static void deliver(world *w) {
  fz_buf b = w->cl.out;
  memset(&w->cl.out, 0, sizeof w->cl.out);
  if (b.len)
    server_feed(w, b.p, b.len);
  else
    server_process(w);
  fz_buf_free(&b);
  server_to_client(w);
}

static int handshake(world *w) {
  int rounds;
  for (rounds = 0; rounds < 40; rounds++) {
    if (!w->cl.done) {
      int rc = gnutls_handshake(w->cl.s);
      if (rc == 0)
        w->cl.done = 1;
      else if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED)
        return -1;
    }
    deliver(w);
    if (w->cl.done && w->hs && !w->cl.out.len)
      return 0;
  }
  return -1;
}

static void client_send(world *w, const uint8_t *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    ssize_t r = gnutls_record_send(w->cl.s, p + off, n - off);
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
      continue;
    if (r <= 0)
      return;
    fz_buf_put(&w->sent, p + off, (size_t)r);
    off += (size_t)r;
  }
}

static void check_replies(world *w) {
  fz_replies r;
  char why[200];
  size_t n = w->replies.len;
  /* only complete lines */
  while (n && w->replies.p[n - 1] != '\n')
    n--;
  FZ_CHECK(!fz_parse_replies(w->replies.p, n, &r, why, sizeof why),
           "session replies through TLS: %s", why);
}

/* one full handshake with version tls12, keeping the client's session
 * data (for TLS 1.3 the ticket comes after the handshake) */
static void make_resume(int tls12) {
  world w;
  int k;
  gnutls_datum_t *d = &g_resume[tls12];
  memset(&w, 0, sizeof w);
  w.st = 1;
  if (d->data) {
    gnutls_free(d->data);
    d->data = NULL;
    d->size = 0;
  }
  FZ_CHECK(smtpd_tls_conn_new(&w.conn, g_ctx) == 0, "conn_new");
  client_init(&w.cl, tls12);
  FZ_CHECK(handshake(&w) == 0, "start-up handshake (TLS 1.%d)",
           tls12 ? 2 : 3);
  for (k = 0; k < 4 && !tls12 &&
              !(gnutls_session_get_flags(w.cl.s) & GNUTLS_SFLAGS_SESSION_TICKET);
       k++)
    deliver(&w);
  if (gnutls_session_get_data2(w.cl.s, d) < 0) {
    d->data = NULL;
    d->size = 0;
  }
  client_free(&w.cl);
  smtpd_tls_conn_del(w.conn);
  fz_buf_free(&w.sent);
  fz_buf_free(&w.got);
  fz_buf_free(&w.replies);
  fz_buf_free(&w.srv_sent);
  fz_buf_free(&w.cl_got);
}

static void init_once(void) {
  static time_t made;
  time_t now = time(NULL);
  if (!g_ctx) {
    FZ_CHECK(smtpd_tls_ctx_new(&g_ctx, NULL) == 0, "tls_ctx_new");
    FZ_CHECK(smtpd_tls_ctx_set_selfsigned(g_ctx, "mx.example.org") == 0,
             "selfsigned: %s", smtpd_tls_ctx_error(g_ctx));
    FZ_CHECK(gnutls_certificate_allocate_credentials(&g_ccred) == 0, "cred");
  }
  /* fresh session data every ten minutes, well within the tickets'
   * lifetime (a ticket the server no longer takes only means a full
   * handshake) */
  if (made && now - made < 600 && now >= made)
    return;
  made = now;
  g_resume_on = 0;
  make_resume(0);
  make_resume(1);
  g_resume_on = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  world w;
  size_t i = 1;
  uint8_t fl;
  smtpd_callbacks cb;
  if (size < 1 || size > 20000)
    return 0;
  init_once();
  g_resume_now = resume_wanted(data[0]);
  if ((data[0] & 0x18) == 0x18) {
    wrapper(data, size);
    return 0;
  }
  memset(&w, 0, sizeof w);
  fl = data[0];
  w.pump = (fl >> 2) & 1;
  w.st = fz_mix(fl) | 1;
  FZ_CHECK(smtpd_tls_conn_new(&w.conn, g_ctx) == 0, "conn_new");
  FZ_CHECK(!smtpd_tls_conn_handshake_done(w.conn), "fresh conn done");
  if (w.pump) {
    memset(&cb, 0, sizeof cb);
    cb.version = SMTPD_CALLBACKS_VERSION;
    cb.on_connect = on_connect;
    cb.on_helo = on_helo;
    FZ_CHECK(smtpd_config_new(&w.cfg, NULL) == 0, "config");
    FZ_CHECK(smtpd_session_new(&w.sess, w.cfg, &cb, &w) == 0, "session");
    FZ_CHECK(smtpd_session_set_implicit_tls(w.sess) == 0, "implicit");
    FZ_CHECK(smtpd_session_start(w.sess) == 0, "start");
  }
  if (!(fl & 1)) {
    /* garbage before any handshake: all of it is raw ciphertext */
    server_feed(&w, data + 1, size - 1);
    FZ_CHECK(!smtpd_tls_conn_handshake_done(w.conn) && !w.hs,
             "garbage completed a handshake");
    FZ_CHECK(smtpd_tls_conn_eof(w.conn) == 0, "eof");
    server_process(&w);
    FZ_CHECK(!w.hs, "handshake after eof");
    FZ_CHECK(smtpd_tls_conn_feed(w.conn, "x", 1) < 0, "feed after eof");
    if (w.pump)
      FZ_CHECK(smtpd_session_output(w.sess, NULL) == 0 &&
                   !smtpd_session_tls(w.sess),
               "the session spoke before any handshake");
    goto done;
  }
  client_init(&w.cl, (fl >> 1) & 1);
  if (handshake(&w)) {
    /* the server refused our client: possible (priorities), but then it
     * must say so */
    FZ_CHECK(w.failed || !smtpd_tls_conn_handshake_done(w.conn),
             "handshake mismatch");
    client_free(&w.cl);
    goto done;
  }
  {
    smtpd_tls_info ti;
    FZ_CHECK(smtpd_tls_conn_info(w.conn, &ti) == 0 && ti.protocol &&
                 ti.cipher && !strcmp(ti.protocol, (fl & 2) ? "TLSv1.2"
                                                             : "TLSv1.3"),
             "tls info");
  }
  while (i < size) {
    uint8_t op = data[i++] % 9;
    size_t l = 0;
    if (op <= 0x01 || op == 0x04) {
      l = i < size ? data[i++] : 0;
      if (l > size - i)
        l = size - i;
    }
    switch (op) {
    case 0:
      client_send(&w, data + i, l);
      i += l;
      break;
    case 1:
      fz_buf_put(&w.cl.out, data + i, l);
      i += l;
      break;
    case 2:
      if (i < size) {
        size_t k = data[i++];
        if (w.cl.out.len)
          w.cl.out.p[k % w.cl.out.len] ^= (uint8_t)(1u << (k % 8));
      }
      break;
    case 3:
      deliver(&w);
      break;
    case 4:
      if (!w.pump && !w.failed) {
        ptrdiff_t r = smtpd_tls_conn_write(w.conn, data + i, l);
        note_result(&w, r);
        if (r > 0)
          fz_buf_put(&w.srv_sent, data + i, (size_t)r);
      }
      i += l;
      server_to_client(&w);
      break;
    case 5:
      gnutls_bye(w.cl.s, GNUTLS_SHUT_WR);
      break;
    case 6:
      FZ_CHECK(smtpd_tls_conn_eof(w.conn) == 0, "eof");
      server_process(&w);
      break;
    case 7:
      if (!(fl & 2))
        gnutls_session_key_update(w.cl.s, GNUTLS_KU_PEER);
      break;
    default:
      if (fl & 2)
        (void)gnutls_handshake(w.cl.s); /* a renegotiation attempt */
      break;
    }
  }
  deliver(&w);
  got_prefix(&w);
  FZ_CHECK(w.cl_got.len <= w.srv_sent.len &&
               fz_same(w.cl_got.p, w.cl_got.len, w.srv_sent.p, w.cl_got.len),
           "the client got what the server did not write");
  if (w.pump)
    check_replies(&w);
  if (getenv("FUZZ_DEBUG"))
    fprintf(stderr,
            "tls: hs %d resumed %d failed %d sent %zu got %zu replies "
            "[%.*s]\n",
            w.hs, (int)gnutls_session_is_resumed(w.cl.s), w.failed,
            w.sent.len, w.got.len, (int)w.replies.len,
            (const char *)w.replies.p);
  client_free(&w.cl);
done:
  smtpd_tls_conn_del(w.conn);
  smtpd_session_del(w.sess);
  smtpd_config_del(w.cfg);
  fz_buf_free(&w.sent);
  fz_buf_free(&w.got);
  fz_buf_free(&w.replies);
  fz_buf_free(&w.srv_sent);
  fz_buf_free(&w.cl_got);
  return 0;
}
