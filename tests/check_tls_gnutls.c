/*
 * check_tls_gnutls.c - tests for the GnuTLS adapter (lib/tls/gnutls.c).
 *
 * The adapter is paired in-process with a real GnuTLS client session whose
 * push/pull functions use memory buffers, so every handshake is genuine
 * and nothing touches the network. Certificates (a self-signed server
 * certificate, a CA with an intermediate, client certificates) are made
 * at run time with GnuTLS's X.509 API.
 *
 *   helpers      client_*, pair_*, move_*, mkcert, tmp files
 *   tc_ctx       context setup and its errors, self-signed generation
 *   tc_hs        TLS 1.2 / 1.3 handshakes, info strings, data both ways,
 *                chains, 1-byte fragmentation, tickets, buffer bounds
 *   tc_bad       closes during the handshake, garbage, plaintext fed as
 *                ciphertext, truncated and tampered records, alerts
 *   tc_cert      client certificate request and verification
 *   tc_mem       allocator hook accounting and allocation failures
 *   tc_session   smtpd_tls_conn_pump with a real session: implicit TLS,
 *                STARTTLS and the injection cases; the STARTTLS decision
 *                (TEMPFAIL -> 454 and plaintext goes on, DEFER and
 *                resume); the end-of-session rule under TLS
 *                (smtpd_session_is_done + no ciphertext left), a paused
 *                session is never done
 *   tc_wrapped   smtpd_tls_session, the TLS-wrapped session, driven by a
 *                host loop that only feeds, writes and checks is_done:
 *                STARTTLS with injected bytes discarded (also deferred,
 *                with the bytes the host kept), implicit TLS, a paused
 *                session inside TLS, done only after close_notify, a bad
 *                record, a client alert, a tampered record, end of file,
 *                the client's close_notify answered, backpressure, prepare failing (454), plaintext only,
 *                timers, arguments, every allocation failing in turn;
 *                each scenario fed all at once, 1 and 7 octets per call
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "smtpd/received.h"
#include "smtpd/smtpd.h"
#include "smtpd/tls_gnutls.h"

/* the adapter's positive result keeps its 0.1 value */
_Static_assert(SMTPD_TLS_AGAIN == 1 && SMTPD_TLS_AGAIN == SMTPD_RESULT_TLS_AGAIN,
               "SMTPD_TLS_AGAIN");

#define PRIO_13 "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define PRIO_12 "NORMAL:-VERS-ALL:+VERS-TLS1.2"
#define SERVER_NAME "mx.example.org"

/* ---- byte buffers ---------------------------------------------------------- */

typedef struct buf {
  uint8_t *d;
  size_t off, len, cap;
} buf;

static void buf_add(buf *b, const void *p, size_t n)
{
  if (b->len + n > b->cap) {
    size_t nc = b->cap ? b->cap : 1024;
    while (nc < b->len + n)
      nc *= 2;
    b->d = realloc(b->d, nc);
    ck_assert_ptr_nonnull(b->d);
    b->cap = nc;
  }
  if (n)
    memcpy(b->d + b->len, p, n);
  b->len += n;
}

static size_t buf_pending(const buf *b) { return b->len - b->off; }

static void buf_free(buf *b)
{
  free(b->d);
  memset(b, 0, sizeof *b);
}

/* ---- a GnuTLS client over memory -------------------------------------------- */

typedef struct client {
  gnutls_session_t s;
  gnutls_certificate_credentials_t cred;
  buf in;          /* server -> client ciphertext */
  buf out;         /* client -> server ciphertext */
  size_t pull_max; /* 0: unlimited; 1: one octet per pull */
  int done;        /* handshake finished */
} client;

static ssize_t client_push(gnutls_transport_ptr_t p, const void *d, size_t n)
{
  client *c = p;
  buf_add(&c->out, d, n);
  return (ssize_t)n;
}

static ssize_t client_pull(gnutls_transport_ptr_t p, void *d, size_t n)
{
  client *c = p;
  size_t avail = buf_pending(&c->in);
  if (avail == 0) {
    gnutls_transport_set_errno(c->s, EAGAIN);
    return -1;
  }
  if (n > avail)
    n = avail;
  if (c->pull_max && n > c->pull_max)
    n = c->pull_max;
  memcpy(d, c->in.d + c->in.off, n);
  c->in.off += n;
  return (ssize_t)n;
}

static int client_pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
  client *c = p;
  (void)ms;
  return buf_pending(&c->in) > 0;
}

typedef struct pem {
  gnutls_datum_t cert, key;
} pem;

/* client_init - a client with priority prio; trust (PEM, may be NULL)
 * makes it verify the server for SERVER_NAME; mine (may be NULL) is its
 * own certificate + key. */
static void client_init(client *c, const char *prio, const gnutls_datum_t *trust,
                        const pem *mine)
{
  memset(c, 0, sizeof *c);
  ck_assert_int_eq(gnutls_certificate_allocate_credentials(&c->cred), 0);
  if (trust)
    ck_assert_int_gt(gnutls_certificate_set_x509_trust_mem(
                         c->cred, trust, GNUTLS_X509_FMT_PEM), 0);
  if (mine)
    ck_assert_int_ge(gnutls_certificate_set_x509_key_mem(
                         c->cred, &mine->cert, &mine->key, GNUTLS_X509_FMT_PEM),
                     0);
  ck_assert_int_eq(gnutls_init(&c->s, GNUTLS_CLIENT), 0);
  ck_assert_int_eq(gnutls_priority_set_direct(c->s, prio, NULL), 0);
  ck_assert_int_eq(
      gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, c->cred), 0);
  gnutls_server_name_set(c->s, GNUTLS_NAME_DNS, SERVER_NAME,
                         strlen(SERVER_NAME));
  if (trust)
    gnutls_session_set_verify_cert(c->s, SERVER_NAME, 0);
  gnutls_handshake_set_timeout(c->s, 0);
  gnutls_transport_set_ptr(c->s, c);
  gnutls_transport_set_push_function(c->s, client_push);
  gnutls_transport_set_pull_function(c->s, client_pull);
  gnutls_transport_set_pull_timeout_function(c->s, client_pull_timeout);
}

static void client_free(client *c)
{
  gnutls_deinit(c->s);
  gnutls_certificate_free_credentials(c->cred);
  buf_free(&c->in);
  buf_free(&c->out);
}

/* client_send - encrypt text into the client's output. */
static void client_send(client *c, const void *p, size_t n)
{
  size_t done = 0;
  while (done < n) {
    ssize_t r = gnutls_record_send(c->s, (const char *)p + done, n - done);
    ck_assert_int_gt(r, 0);
    done += (size_t)r;
  }
}

static void client_sends(client *c, const char *s)
{
  client_send(c, s, strlen(s));
}

/* client_recv - decrypt whatever the client has into out (appended);
 * returns the last gnutls_record_recv code (AGAIN, 0 at close_notify, or
 * an error). */
static ssize_t client_recv(client *c, buf *out)
{
  char tmp[4096];
  ssize_t r;
  for (;;) {
    r = gnutls_record_recv(c->s, tmp, sizeof tmp);
    if (r > 0) {
      buf_add(out, tmp, (size_t)r);
      continue;
    }
    if (r == GNUTLS_E_INTERRUPTED)
      continue;
    /* a post-handshake message (ticket) was handled: go on while input
     * remains */
    if (r == GNUTLS_E_AGAIN && buf_pending(&c->in) > 0)
      continue;
    return r;
  }
}

/* ---- moving bytes between client and server --------------------------------- */

typedef struct server {
  smtpd_tls_ctx *ctx;
  smtpd_tls_conn *conn;
} server;

/* move_c2s - feed the client's output to the server, step octets per feed
 * (0: as much as fits), running the server handshake after each feed when
 * hs is set. Returns the last handshake result (or 0). */
static int move_c2s(client *c, smtpd_tls_conn *conn, size_t step, int hs)
{
  int r = 0;
  while (buf_pending(&c->out) > 0) {
    size_t n = buf_pending(&c->out);
    ptrdiff_t f;
    if (step && n > step)
      n = step;
    f = smtpd_tls_conn_feed(conn, c->out.d + c->out.off, n);
    if (f < 0)
      return (int)f;
    c->out.off += (size_t)f;
    if (hs) {
      r = smtpd_tls_conn_handshake(conn);
      if (r < 0)
        return r;
    } else if (f == 0) {
      break; /* full; the caller drains it */
    }
  }
  return r;
}

/* move_s2c - the server's output into the client's input. */
static size_t move_s2c(smtpd_tls_conn *conn, client *c)
{
  const uint8_t *p;
  size_t n = smtpd_tls_conn_output(conn, &p), total = 0;
  while (n > 0) {
    buf_add(&c->in, p, n);
    ck_assert_int_eq(smtpd_tls_conn_consume(conn, n), 0);
    total += n;
    n = smtpd_tls_conn_output(conn, &p);
  }
  return total;
}

/* pair_handshake - run both handshakes to the end. Returns 0 when both
 * finished, the server's negative code when it failed, or 1 when the
 * client failed (client error in *cerr). */
static int pair_handshake(client *c, smtpd_tls_conn *conn, size_t step,
                          int *cerr)
{
  int rounds, rs = SMTPD_TLS_AGAIN;
  if (cerr)
    *cerr = 0;
  for (rounds = 0; rounds < 200; rounds++) {
    if (!c->done) {
      int rc = gnutls_handshake(c->s);
      if (rc == 0)
        c->done = 1;
      else if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED) {
        if (cerr)
          *cerr = rc;
        /* deliver the client's alert */
        (void)gnutls_alert_send_appropriate(c->s, rc);
        move_c2s(c, conn, step, 1);
        return 1;
      }
    }
    rs = move_c2s(c, conn, step, 1);
    if (rs == 0 && buf_pending(&c->out) == 0)
      rs = smtpd_tls_conn_handshake(conn);
    if (rs < 0)
      return rs;
    move_s2c(conn, c);
    if (c->done && rs == 0 && buf_pending(&c->out) == 0)
      return 0;
  }
  ck_abort_msg("handshake did not converge");
  return -1;
}

/* server_recv - everything the server can decrypt now, appended to out;
 * returns the last smtpd_tls_conn_read result. */
static ptrdiff_t server_recv(smtpd_tls_conn *conn, buf *out)
{
  char tmp[3000];
  ptrdiff_t r;
  while ((r = smtpd_tls_conn_read(conn, tmp, sizeof tmp)) > 0)
    buf_add(out, tmp, (size_t)r);
  return r;
}

/* ---- certificates ------------------------------------------------------------ */

typedef struct cred {
  gnutls_x509_privkey_t key;
  gnutls_x509_crt_t crt;
  pem pem;
} cred;

/* mkcert - a P-256 key and a certificate for cn, signed by issuer (NULL:
 * self-signed). ca: a CA certificate; otherwise a TLS server (server=1)
 * or client end-entity certificate with dns as its name. */
static void mkcert(cred *out, const char *cn, const cred *issuer, int ca,
                   int server)
{
  unsigned char serial[8];
  time_t now = time(NULL);
  memset(out, 0, sizeof *out);
  ck_assert_int_eq(gnutls_x509_privkey_init(&out->key), 0);
  ck_assert_int_eq(gnutls_x509_privkey_generate(
                       out->key, GNUTLS_PK_ECDSA,
                       GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                   0);
  ck_assert_int_eq(gnutls_x509_crt_init(&out->crt), 0);
  ck_assert_int_eq(gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial), 0);
  serial[0] = (unsigned char)((serial[0] & 0x7f) | 1);
  ck_assert_int_eq(gnutls_x509_crt_set_version(out->crt, 3), 0);
  ck_assert_int_eq(gnutls_x509_crt_set_serial(out->crt, serial, sizeof serial),
                   0);
  ck_assert_int_eq(gnutls_x509_crt_set_activation_time(out->crt, now - 600), 0);
  ck_assert_int_eq(gnutls_x509_crt_set_expiration_time(out->crt, now + 86400),
                   0);
  ck_assert_int_eq(gnutls_x509_crt_set_dn_by_oid(out->crt,
                                                 GNUTLS_OID_X520_COMMON_NAME, 0,
                                                 cn, (unsigned)strlen(cn)),
                   0);
  ck_assert_int_eq(gnutls_x509_crt_set_key(out->crt, out->key), 0);
  if (ca) {
    ck_assert_int_eq(gnutls_x509_crt_set_basic_constraints(out->crt, 1, -1), 0);
    ck_assert_int_eq(gnutls_x509_crt_set_key_usage(
                         out->crt, GNUTLS_KEY_KEY_CERT_SIGN |
                                       GNUTLS_KEY_CRL_SIGN),
                     0);
  } else {
    ck_assert_int_eq(gnutls_x509_crt_set_basic_constraints(out->crt, 0, -1), 0);
    ck_assert_int_eq(gnutls_x509_crt_set_key_usage(
                         out->crt, GNUTLS_KEY_DIGITAL_SIGNATURE),
                     0);
    ck_assert_int_eq(gnutls_x509_crt_set_key_purpose_oid(
                         out->crt,
                         server ? GNUTLS_KP_TLS_WWW_SERVER
                                : GNUTLS_KP_TLS_WWW_CLIENT,
                         0),
                     0);
    if (server)
      ck_assert_int_eq(gnutls_x509_crt_set_subject_alt_name(
                           out->crt, GNUTLS_SAN_DNSNAME, cn,
                           (unsigned)strlen(cn), GNUTLS_FSAN_SET),
                       0);
  }
  {
    unsigned char id[64];
    size_t idlen = sizeof id;
    ck_assert_int_eq(gnutls_x509_crt_get_key_id(out->crt, 0, id, &idlen), 0);
    ck_assert_int_eq(gnutls_x509_crt_set_subject_key_id(out->crt, id, idlen),
                     0);
  }
  if (issuer)
    ck_assert_int_eq(gnutls_x509_crt_sign2(out->crt, issuer->crt, issuer->key,
                                           GNUTLS_DIG_SHA256, 0),
                     0);
  else
    ck_assert_int_eq(gnutls_x509_crt_sign2(out->crt, out->crt, out->key,
                                           GNUTLS_DIG_SHA256, 0),
                     0);
  ck_assert_int_eq(
      gnutls_x509_crt_export2(out->crt, GNUTLS_X509_FMT_PEM, &out->pem.cert), 0);
  ck_assert_int_eq(gnutls_x509_privkey_export2_pkcs8(
                       out->key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN,
                       &out->pem.key),
                   0);
}

static void cred_free(cred *c)
{
  gnutls_x509_crt_deinit(c->crt);
  gnutls_x509_privkey_deinit(c->key);
  gnutls_free(c->pem.cert.data);
  gnutls_free(c->pem.key.data);
}

/* tmpfile_with - a temporary file holding a..b (b may be NULL); path in
 * out (PATH_MAX-ish). */
static void tmpfile_with(char *out, size_t cap, const gnutls_datum_t *a,
                         const gnutls_datum_t *b)
{
  const char *dir = getenv("TMPDIR");
  int fd;
  snprintf(out, cap, "%s/smtpd-tls-XXXXXX", dir && *dir ? dir : "/tmp");
  fd = mkstemp(out);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, a->data, a->size), (ssize_t)a->size);
  if (b)
    ck_assert_int_eq(write(fd, b->data, b->size), (ssize_t)b->size);
  close(fd);
}

/* ---- fixtures ------------------------------------------------------------------ */

/* One server certificate per test case (an unchecked fixture). */
static cred g_srv;

static void srv_setup(void) { mkcert(&g_srv, SERVER_NAME, NULL, 0, 1); }
static void srv_teardown(void) { cred_free(&g_srv); }

static void server_init(server *sv, const smtpd_mem *mem)
{
  memset(sv, 0, sizeof *sv);
  ck_assert_int_eq(smtpd_tls_ctx_new(&sv->ctx, mem), 0);
  ck_assert_int_eq(smtpd_tls_ctx_set_cert_mem(sv->ctx, g_srv.pem.cert.data,
                                              g_srv.pem.cert.size,
                                              g_srv.pem.key.data,
                                              g_srv.pem.key.size),
                   0);
  ck_assert_int_eq(smtpd_tls_conn_new(&sv->conn, sv->ctx), 0);
}

static void server_free(server *sv)
{
  smtpd_tls_conn_del(sv->conn);
  smtpd_tls_ctx_del(sv->ctx);
}

/* connect_pair - server + client with prio; full handshake. */
static void connect_pair(server *sv, client *c, const char *prio)
{
  server_init(sv, NULL);
  client_init(c, prio, &g_srv.pem.cert, NULL);
  ck_assert_int_eq(pair_handshake(c, sv->conn, 0, NULL), 0);
  ck_assert(smtpd_tls_conn_handshake_done(sv->conn));
}

/* ---- tc_ctx --------------------------------------------------------------------- */

START_TEST(ctx_errors)
{
  smtpd_tls_ctx *ctx = NULL;
  smtpd_tls_conn *conn = (smtpd_tls_conn *)&conn;
  const char junk[] = "-----BEGIN CERTIFICATE-----\nnot base64\n";

  smtpd_tls_ctx_del(NULL);
  smtpd_tls_conn_del(NULL);
  ck_assert_int_eq(smtpd_tls_ctx_new(NULL, NULL), SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_ctx_new(&ctx, NULL), 0);
  ck_assert_str_eq(smtpd_tls_ctx_error(ctx), "");
  /* no certificate yet: no connection, *out untouched */
  ck_assert_int_eq(smtpd_tls_conn_new(&conn, ctx), SMTPD_ERR_INVALID_STATE);
  ck_assert_ptr_eq(conn, (smtpd_tls_conn *)&conn);

  ck_assert_int_eq(smtpd_tls_ctx_set_priority(ctx, "NORMAL:+NO-SUCH-THING"),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(smtpd_tls_ctx_error(ctx), "NO-SUCH-THING"));
  ck_assert_int_eq(smtpd_tls_ctx_set_priority(ctx, PRIO_13), 0);
  ck_assert_str_eq(smtpd_tls_ctx_error(ctx), "");
  ck_assert_int_eq(smtpd_tls_ctx_set_priority(ctx, NULL), 0);

  ck_assert_int_lt(smtpd_tls_ctx_set_cert_files(ctx, "/nonexistent/c.pem",
                                                "/nonexistent/k.pem"),
                   0);
  ck_assert_str_ne(smtpd_tls_ctx_error(ctx), "");
  ck_assert_int_lt(smtpd_tls_ctx_set_cert_mem(ctx, junk, sizeof junk - 1,
                                              junk, sizeof junk - 1),
                   0);
  ck_assert_int_eq(smtpd_tls_ctx_set_cert_mem(ctx, NULL, 0, junk, 1),
                   SMTPD_ERR_INVALID_ARGUMENT);
  /* a certificate with somebody else's key */
  {
    cred other;
    mkcert(&other, "other.example.org", NULL, 0, 1);
    ck_assert_int_lt(smtpd_tls_ctx_set_cert_mem(
                         ctx, g_srv.pem.cert.data, g_srv.pem.cert.size,
                         other.pem.key.data, other.pem.key.size),
                     0);
    cred_free(&other);
  }
  ck_assert_int_eq(smtpd_tls_conn_new(&conn, ctx), SMTPD_ERR_INVALID_STATE);

  ck_assert_int_eq(smtpd_tls_ctx_set_client_verify(ctx, NULL,
                                                   SMTPD_TLS_VERIFY_NONE),
                   0);
  ck_assert_int_eq(smtpd_tls_ctx_set_client_verify(ctx, NULL,
                                                   SMTPD_TLS_VERIFY_OPTIONAL),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_lt(smtpd_tls_ctx_set_client_verify(ctx, "/nonexistent/ca",
                                                   SMTPD_TLS_VERIFY_REQUIRED),
                   0);
  ck_assert_int_eq(smtpd_tls_ctx_set_selfsigned(ctx, "bad host"),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_ctx_set_selfsigned(ctx, ""),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_generate_selfsigned(NULL, "/tmp/x", NULL),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_generate_selfsigned("/nonexistent/c",
                                                 "/nonexistent/k", NULL),
                   SMTPD_ERR_IO);
  ck_assert_int_eq(smtpd_tls_ctx_set_tickets(NULL, 1),
                   SMTPD_ERR_INVALID_ARGUMENT);

  /* the self-signed helper gives a usable context */
  ck_assert_int_eq(smtpd_tls_ctx_set_selfsigned(ctx, NULL), 0);
  conn = NULL;
  ck_assert_int_eq(smtpd_tls_conn_new(&conn, ctx), 0);
  ck_assert_ptr_nonnull(conn);
  /* nothing before the handshake */
  {
    smtpd_tls_info info;
    char b[8];
    ck_assert_int_eq(smtpd_tls_conn_info(conn, &info), SMTPD_ERR_INVALID_STATE);
    ck_assert_int_eq(smtpd_tls_conn_read(conn, b, sizeof b),
                     SMTPD_ERR_INVALID_STATE);
    ck_assert_int_eq(smtpd_tls_conn_write(conn, "x", 1),
                     SMTPD_ERR_INVALID_STATE);
    ck_assert_int_eq(smtpd_tls_conn_handshake(conn), SMTPD_TLS_AGAIN);
    ck_assert_int_eq(smtpd_tls_conn_output(conn, NULL), 0);
    ck_assert(smtpd_tls_conn_want_read(conn));
    ck_assert(!smtpd_tls_conn_want_write(conn));
    ck_assert(!smtpd_tls_conn_handshake_done(conn));
    ck_assert_str_eq(smtpd_tls_conn_error(conn), "");
    ck_assert_int_eq(smtpd_tls_conn_consume(conn, 1),
                     SMTPD_ERR_INVALID_ARGUMENT);
  }
  smtpd_tls_conn_del(conn);
  smtpd_tls_ctx_del(ctx);
}
END_TEST

START_TEST(selfsigned_files)
{
  char dir[] = "/tmp/smtpd-tls-dirXXXXXX";
  char cpath[128], kpath[128];
  struct stat st;
  server sv;
  client c;
  gnutls_datum_t certpem = {NULL, 0};
  buf got = {0};

  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(cpath, sizeof cpath, "%s/cert.pem", dir);
  snprintf(kpath, sizeof kpath, "%s/key.pem", dir);
  ck_assert_int_eq(smtpd_tls_generate_selfsigned(cpath, kpath, SERVER_NAME),
                   0);
  ck_assert_int_eq(stat(kpath, &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0600);
  ck_assert_int_eq(gnutls_load_file(cpath, &certpem), 0);

  memset(&sv, 0, sizeof sv);
  ck_assert_int_eq(smtpd_tls_ctx_new(&sv.ctx, NULL), 0);
  ck_assert_int_eq(smtpd_tls_ctx_set_cert_files(sv.ctx, cpath, kpath), 0);
  ck_assert_int_eq(smtpd_tls_conn_new(&sv.conn, sv.ctx), 0);
  /* the client verifies the generated certificate for its name */
  client_init(&c, PRIO_13, &certpem, NULL);
  ck_assert_int_eq(pair_handshake(&c, sv.conn, 0, NULL), 0);
  client_sends(&c, "ping");
  move_c2s(&c, sv.conn, 0, 0);
  ck_assert_int_eq(server_recv(sv.conn, &got), 0);
  ck_assert_int_eq(got.len, 4);
  ck_assert_int_eq(memcmp(got.d, "ping", 4), 0);

  buf_free(&got);
  client_free(&c);
  server_free(&sv);
  gnutls_free(certpem.data);
  unlink(cpath);
  unlink(kpath);
  rmdir(dir);
}
END_TEST

/* ---- tc_hs ---------------------------------------------------------------------- */

/* check_info - the info strings agree with what the client negotiated. */
static void check_info(smtpd_tls_conn *conn, client *c, const char *proto)
{
  smtpd_tls_info info;
  char line[256];
  int bits = (int)gnutls_cipher_get_key_size(gnutls_cipher_get(c->s)) * 8;

  ck_assert_int_eq(smtpd_tls_conn_info(conn, &info), 0);
  ck_assert_str_eq(info.protocol, proto);
#if GNUTLS_VERSION_NUMBER >= 0x030703
  ck_assert_str_eq(info.cipher, gnutls_ciphersuite_get(c->s));
#endif
  ck_assert_int_eq(strncmp(info.cipher, "TLS_", 4), 0);
  ck_assert_int_eq(info.cipher_bits, bits);
  ck_assert_int_eq(info.alg_bits, bits);
  ck_assert(bits == 128 || bits == 256);
  ck_assert_int_eq(info.client_cert_requested, 0);
  ck_assert_int_eq(info.client_cert_verified, 0);
  ck_assert_ptr_null(info.peer_subject);
  ck_assert_ptr_null(info.peer_issuer);
  if (strcmp(proto, "TLSv1.3") == 0) {
    ck_assert_int_eq(gnutls_protocol_get_version(c->s), GNUTLS_TLS1_3);
    ck_assert(strcmp(info.cipher, "TLS_AES_256_GCM_SHA384") == 0 ||
              strcmp(info.cipher, "TLS_AES_128_GCM_SHA256") == 0 ||
              strcmp(info.cipher, "TLS_CHACHA20_POLY1305_SHA256") == 0 ||
              strcmp(info.cipher, "TLS_AES_128_CCM_SHA256") == 0);
  } else {
    ck_assert_int_eq(gnutls_protocol_get_version(c->s), GNUTLS_TLS1_2);
    /* the server certificate is ECDSA */
    ck_assert_int_eq(strncmp(info.cipher, "TLS_ECDHE_ECDSA_WITH_", 21), 0);
  }
  /* what a Received: line would say */
  snprintf(line, sizeof line, "%s with cipher %s (%d/%d bits)", info.protocol,
           info.cipher, info.cipher_bits, info.alg_bits);
  ck_assert_int_eq(strncmp(line, proto, strlen(proto)), 0);
  ck_assert_ptr_nonnull(strstr(line, " with cipher TLS_"));
}

/* exchange - data both ways; the server sees exactly what was sent. */
static void exchange(server *sv, client *c, size_t step)
{
  static const char up[] = "EHLO client.example.org\r\nMAIL FROM:<a@b>\r\n";
  char down[5000];
  buf got = {0}, cgot = {0};
  size_t i;
  ptrdiff_t r;

  client_sends(c, "EHLO client.example.org\r\n");
  client_sends(c, "MAIL FROM:<a@b>\r\n");
  if (step == 0) {
    move_c2s(c, sv->conn, 0, 0);
    ck_assert_int_eq(server_recv(sv->conn, &got), 0);
  } else {
    while (buf_pending(&c->out) > 0) {
      ck_assert_int_eq(smtpd_tls_conn_feed(sv->conn, c->out.d + c->out.off, 1),
                       1);
      c->out.off++;
      r = server_recv(sv->conn, &got);
      ck_assert_int_eq(r, 0);
    }
  }
  ck_assert_uint_eq(got.len, sizeof up - 1);
  ck_assert_int_eq(memcmp(got.d, up, got.len), 0);

  for (i = 0; i < sizeof down; i++)
    down[i] = (char)('a' + i % 26);
  ck_assert_int_eq(smtpd_tls_conn_write(sv->conn, down, sizeof down),
                   (ptrdiff_t)sizeof down);
  move_s2c(sv->conn, c);
  c->pull_max = step;
  ck_assert_int_eq(client_recv(c, &cgot), GNUTLS_E_AGAIN);
  ck_assert_uint_eq(cgot.len, sizeof down);
  ck_assert_int_eq(memcmp(cgot.d, down, sizeof down), 0);
  buf_free(&got);
  buf_free(&cgot);
}

START_TEST(handshake_tls13)
{
  server sv;
  client c;
  connect_pair(&sv, &c, PRIO_13);
  check_info(sv.conn, &c, "TLSv1.3");
  ck_assert_str_eq(smtpd_tls_conn_error(sv.conn), "");
  exchange(&sv, &c, 0);
  /* the handshake result is sticky */
  ck_assert_int_eq(smtpd_tls_conn_handshake(sv.conn), 0);
  client_free(&c);
  server_free(&sv);
}
END_TEST

START_TEST(handshake_tls12)
{
  server sv;
  client c;
  connect_pair(&sv, &c, PRIO_12);
  check_info(sv.conn, &c, "TLSv1.2");
  exchange(&sv, &c, 0);
  client_free(&c);
  server_free(&sv);
}
END_TEST

START_TEST(default_priority_refuses_tls11)
{
  server sv;
  client c;
  int cerr = 0, r;
  server_init(&sv, NULL);
  client_init(&c, "NORMAL:-VERS-ALL:+VERS-TLS1.1:+VERS-TLS1.0", NULL, NULL);
  r = pair_handshake(&c, sv.conn, 0, &cerr);
  ck_assert(r < 0 || r == 1);
  ck_assert_int_eq(smtpd_tls_conn_handshake(sv.conn), SMTPD_ERR_TLS);
  ck_assert_str_ne(smtpd_tls_conn_error(sv.conn), "");
  client_free(&c);
  server_free(&sv);
}
END_TEST

START_TEST(custom_priority)
{
  server sv;
  client c;
  smtpd_tls_info info;
  memset(&sv, 0, sizeof sv);
  ck_assert_int_eq(smtpd_tls_ctx_new(&sv.ctx, NULL), 0);
  ck_assert_int_eq(smtpd_tls_ctx_set_cert_mem(sv.ctx, g_srv.pem.cert.data,
                                              g_srv.pem.cert.size,
                                              g_srv.pem.key.data,
                                              g_srv.pem.key.size),
                   0);
  ck_assert_int_eq(smtpd_tls_ctx_set_priority(
                       sv.ctx, "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:"
                               "+AES-128-GCM"),
                   0);
  ck_assert_int_eq(smtpd_tls_conn_new(&sv.conn, sv.ctx), 0);
  client_init(&c, "NORMAL", &g_srv.pem.cert, NULL);
  ck_assert_int_eq(pair_handshake(&c, sv.conn, 0, NULL), 0);
  ck_assert_int_eq(smtpd_tls_conn_info(sv.conn, &info), 0);
  ck_assert_str_eq(info.protocol, "TLSv1.2");
  ck_assert_str_eq(info.cipher, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
  ck_assert_int_eq(info.cipher_bits, 128);
  client_free(&c);
  server_free(&sv);
}
END_TEST

START_TEST(chain_file)
{
  cred root, inter, leaf;
  char cpath[256], kpath[256];
  server sv;
  client c;
  int cerr = 0;

  mkcert(&root, "Test Root CA", NULL, 1, 0);
  mkcert(&inter, "Test Intermediate CA", &root, 1, 0);
  mkcert(&leaf, SERVER_NAME, &inter, 0, 1);
  tmpfile_with(cpath, sizeof cpath, &leaf.pem.cert, &inter.pem.cert);
  tmpfile_with(kpath, sizeof kpath, &leaf.pem.key, NULL);

  memset(&sv, 0, sizeof sv);
  ck_assert_int_eq(smtpd_tls_ctx_new(&sv.ctx, NULL), 0);
  ck_assert_int_eq(smtpd_tls_ctx_set_cert_files(sv.ctx, cpath, kpath), 0);
  ck_assert_int_eq(smtpd_tls_conn_new(&sv.conn, sv.ctx), 0);
  /* the client trusts only the root: it needs the intermediate */
  client_init(&c, PRIO_13, &root.pem.cert, NULL);
  ck_assert_int_eq(pair_handshake(&c, sv.conn, 0, &cerr), 0);
  ck_assert_int_eq(cerr, 0);
  {
    unsigned n = 0;
    ck_assert_ptr_nonnull(gnutls_certificate_get_peers(c.s, &n));
    ck_assert_uint_eq(n, 2);
  }
  client_free(&c);
  server_free(&sv);

  /* leaf alone: the same client cannot verify */
  tmpfile_with(cpath + 0, sizeof cpath, &leaf.pem.cert, NULL);
  memset(&sv, 0, sizeof sv);
  ck_assert_int_eq(smtpd_tls_ctx_new(&sv.ctx, NULL), 0);
  ck_assert_int_eq(smtpd_tls_ctx_set_cert_files(sv.ctx, cpath, kpath), 0);
  ck_assert_int_eq(smtpd_tls_conn_new(&sv.conn, sv.ctx), 0);
  client_init(&c, PRIO_13, &root.pem.cert, NULL);
  ck_assert_int_eq(pair_handshake(&c, sv.conn, 0, &cerr), 1);
  ck_assert_int_ne(cerr, 0);
  /* the client's alert ends the server's handshake with a reason */
  ck_assert_int_eq(smtpd_tls_conn_handshake(sv.conn), SMTPD_ERR_TLS);
  ck_assert_ptr_nonnull(strstr(smtpd_tls_conn_error(sv.conn), "alert"));
  client_free(&c);
  server_free(&sv);

  unlink(cpath);
  unlink(kpath);
  cred_free(&leaf);
  cred_free(&inter);
  cred_free(&root);
}
END_TEST

/* one_byte - the whole handshake and the data with single-octet feeds in
 * both directions. */
static void one_byte(const char *prio, const char *proto)
{
  server sv;
  client c;
  server_init(&sv, NULL);
  client_init(&c, prio, &g_srv.pem.cert, NULL);
  c.pull_max = 1;
  ck_assert_int_eq(pair_handshake(&c, sv.conn, 1, NULL), 0);
  check_info(sv.conn, &c, proto);
  exchange(&sv, &c, 1);
  client_free(&c);
  server_free(&sv);
}

START_TEST(fragment_tls13) { one_byte(PRIO_13, "TLSv1.3"); }
END_TEST

START_TEST(fragment_tls12) { one_byte(PRIO_12, "TLSv1.2"); }
END_TEST

/* resume - a second connection with the first one's ticket. */
static int resume(const char *prio, int tickets)
{
  smtpd_tls_ctx *ctx;
  smtpd_tls_conn *a, *b;
  client c1, c2;
  gnutls_datum_t data = {NULL, 0};
  buf junk = {0};
  int resumed;

  ck_assert_int_eq(smtpd_tls_ctx_new(&ctx, NULL), 0);
  ck_assert_int_eq(smtpd_tls_ctx_set_cert_mem(ctx, g_srv.pem.cert.data,
                                              g_srv.pem.cert.size,
                                              g_srv.pem.key.data,
                                              g_srv.pem.key.size),
                   0);
  ck_assert_int_eq(smtpd_tls_ctx_set_tickets(ctx, tickets), 0);
  ck_assert_int_eq(smtpd_tls_conn_new(&a, ctx), 0);
  client_init(&c1, prio, &g_srv.pem.cert, NULL);
  ck_assert_int_eq(pair_handshake(&c1, a, 0, NULL), 0);
  /* let the client see a NewSessionTicket (TLS 1.3 sends it late) */
  ck_assert_int_eq(client_recv(&c1, &junk), GNUTLS_E_AGAIN);
  ck_assert_uint_eq(junk.len, 0);
  ck_assert_int_eq(gnutls_session_get_data2(c1.s, &data), 0);

  ck_assert_int_eq(smtpd_tls_conn_new(&b, ctx), 0);
  client_init(&c2, prio, &g_srv.pem.cert, NULL);
  ck_assert_int_eq(gnutls_session_set_data(c2.s, data.data, data.size), 0);
  ck_assert_int_eq(pair_handshake(&c2, b, 0, NULL), 0);
  resumed = gnutls_session_is_resumed(c2.s);
  exchange(&(server){ctx, b}, &c2, 0);

  gnutls_free(data.data);
  buf_free(&junk);
  client_free(&c1);
  client_free(&c2);
  smtpd_tls_conn_del(a);
  smtpd_tls_conn_del(b);
  smtpd_tls_ctx_del(ctx);
  return resumed;
}

START_TEST(tickets_tls13)
{
  ck_assert_int_ne(resume(PRIO_13, 1), 0);
  ck_assert_int_eq(resume(PRIO_13, 0), 0);
}
END_TEST

START_TEST(tickets_tls12)
{
  ck_assert_int_ne(resume(PRIO_12, 1), 0);
  ck_assert_int_eq(resume(PRIO_12, 0), 0);
}
END_TEST

START_TEST(output_bounded)
{
  server sv;
  client c;
  size_t total = 1u << 20, sent = 0, maxout = 0;
  unsigned char *big = malloc(total);
  buf got = {0};
  size_t i;

  ck_assert_ptr_nonnull(big);
  for (i = 0; i < total; i++)
    big[i] = (unsigned char)(i * 7 + (i >> 11));
  connect_pair(&sv, &c, PRIO_13);
  while (sent < total) {
    ptrdiff_t w = smtpd_tls_conn_write(sv.conn, big + sent, total - sent);
    size_t out;
    ck_assert_int_ge(w, 0);
    out = smtpd_tls_conn_output(sv.conn, NULL);
    if (out > maxout)
      maxout = out;
    /* never far beyond the cap */
    ck_assert_uint_le(out, SMTPD_TLS_OUTPUT_CAP + 16384 + 1024);
    /* refuses more until drained */
    if (sent + (size_t)w < total)
      ck_assert_int_eq(smtpd_tls_conn_write(sv.conn, big, 1), 0);
    sent += (size_t)w;
    move_s2c(sv.conn, &c);
    ck_assert_int_eq(client_recv(&c, &got), GNUTLS_E_AGAIN);
  }
  ck_assert_uint_ge(maxout, SMTPD_TLS_OUTPUT_CAP);
  ck_assert_uint_eq(got.len, total);
  ck_assert_int_eq(memcmp(got.d, big, total), 0);
  buf_free(&got);
  free(big);
  client_free(&c);
  server_free(&sv);
}
END_TEST

START_TEST(input_bounded)
{
  server sv;
  client c;
  size_t total = 300000, i;
  unsigned char *big = malloc(total);
  buf got = {0};

  ck_assert_ptr_nonnull(big);
  for (i = 0; i < total; i++)
    big[i] = (unsigned char)(i * 13 + 5);
  connect_pair(&sv, &c, PRIO_12);
  client_send(&c, big, total);
  ck_assert_uint_gt(buf_pending(&c.out), SMTPD_TLS_INPUT_CAP);
  while (buf_pending(&c.out) > 0) {
    size_t before = buf_pending(&c.out);
    ptrdiff_t f = smtpd_tls_conn_feed(sv.conn, c.out.d + c.out.off, before);
    ck_assert_int_ge(f, 0);
    ck_assert_uint_le((size_t)f, SMTPD_TLS_INPUT_CAP);
    c.out.off += (size_t)f;
    if (buf_pending(&c.out) > 0) {
      ck_assert(!smtpd_tls_conn_want_read(sv.conn));
      ck_assert_int_eq(smtpd_tls_conn_feed(sv.conn, c.out.d + c.out.off, 1), 0);
    }
    ck_assert_int_eq(server_recv(sv.conn, &got), 0);
  }
  ck_assert_uint_eq(got.len, total);
  ck_assert_int_eq(memcmp(got.d, big, total), 0);
  buf_free(&got);
  free(big);
  client_free(&c);
  server_free(&sv);
}
END_TEST

START_TEST(close_notify_both_ways)
{
  server sv;
  client c;
  buf got = {0};
  char b[16];

  connect_pair(&sv, &c, PRIO_13);
  /* client: data then close_notify in one flight */
  client_sends(&c, "QUIT\r\n");
  ck_assert_int_eq(gnutls_bye(c.s, GNUTLS_SHUT_WR), 0);
  move_c2s(&c, sv.conn, 0, 0);
  ck_assert_int_eq(server_recv(sv.conn, &got), SMTPD_ERR_CLOSED);
  ck_assert_uint_eq(got.len, 6);
  ck_assert_int_eq(memcmp(got.d, "QUIT\r\n", 6), 0);
  ck_assert_int_eq(smtpd_tls_conn_read(sv.conn, b, sizeof b), SMTPD_ERR_CLOSED);
  ck_assert_ptr_nonnull(strstr(smtpd_tls_conn_error(sv.conn), "close_notify"));
  ck_assert(!smtpd_tls_conn_want_read(sv.conn));
  /* server: a last reply, then close_notify */
  ck_assert_int_eq(smtpd_tls_conn_write(sv.conn, "221 bye\r\n", 9), 9);
  ck_assert_int_eq(smtpd_tls_conn_bye(sv.conn), 0);
  ck_assert_int_eq(smtpd_tls_conn_bye(sv.conn), 0);
  ck_assert_int_eq(smtpd_tls_conn_write(sv.conn, "x", 1), SMTPD_ERR_CLOSED);
  ck_assert(smtpd_tls_conn_want_write(sv.conn));
  move_s2c(sv.conn, &c);
  buf_free(&got);
  ck_assert_int_eq(client_recv(&c, &got), 0);
  ck_assert_uint_eq(got.len, 9);
  ck_assert_int_eq(memcmp(got.d, "221 bye\r\n", 9), 0);
  buf_free(&got);
  client_free(&c);
  server_free(&sv);
}
END_TEST

START_TEST(renegotiation_refused)
{
  server sv;
  client c;
  buf got = {0};
  ptrdiff_t r;
  int rc, i;

  connect_pair(&sv, &c, PRIO_12);
  /* The client asks for a new handshake. The server never renegotiates:
   * GnuTLS either reports it (the adapter answers no_renegotiation and
   * goes on) or treats the ClientHello as unexpected (the connection
   * fails with an alert). A new handshake must never complete. */
  rc = gnutls_handshake(c.s);
  ck_assert_int_eq(rc, GNUTLS_E_AGAIN);
  move_c2s(&c, sv.conn, 0, 0);
  r = server_recv(sv.conn, &got);
  ck_assert_uint_eq(got.len, 0);
  move_s2c(sv.conn, &c);
  for (i = 0; i < 3; i++) {
    rc = gnutls_handshake(c.s);
    if (rc != GNUTLS_E_AGAIN)
      break;
  }
  ck_assert_int_ne(rc, 0);
  if (r == 0) {
    ck_assert_int_eq(rc, GNUTLS_E_WARNING_ALERT_RECEIVED);
    ck_assert_int_eq(gnutls_alert_get(c.s), GNUTLS_A_NO_RENEGOTIATION);
  } else {
    ck_assert_int_eq(r, SMTPD_ERR_TLS);
    ck_assert(rc == GNUTLS_E_FATAL_ALERT_RECEIVED ||
              (rc == GNUTLS_E_WARNING_ALERT_RECEIVED &&
               gnutls_alert_get(c.s) == GNUTLS_A_NO_RENEGOTIATION));
    ck_assert_str_ne(smtpd_tls_conn_error(sv.conn), "");
  }
  buf_free(&got);
  client_free(&c);
  server_free(&sv);
}
END_TEST

/* ---- tc_bad ---------------------------------------------------------------------- */

/* assert_dead - a failed connection refuses everything, cleanly. */
static void assert_dead(smtpd_tls_conn *conn, int code)
{
  char b[16];
  smtpd_tls_info info;
  ck_assert_int_eq(smtpd_tls_conn_handshake(conn), code);
  ck_assert_int_eq(smtpd_tls_conn_feed(conn, "x", 1), SMTPD_ERR_TLS);
  ck_assert_int_lt(smtpd_tls_conn_read(conn, b, sizeof b), 0);
  ck_assert_int_lt(smtpd_tls_conn_write(conn, "x", 1), 0);
  ck_assert_int_eq(smtpd_tls_conn_info(conn, &info), SMTPD_ERR_INVALID_STATE);
  ck_assert(!smtpd_tls_conn_handshake_done(conn));
  ck_assert(!smtpd_tls_conn_want_read(conn));
  ck_assert_str_ne(smtpd_tls_conn_error(conn), "");
  ck_assert_int_eq(smtpd_tls_conn_bye(conn), 0);
}

START_TEST(eof_before_anything)
{
  server sv;
  server_init(&sv, NULL);
  ck_assert_int_eq(smtpd_tls_conn_handshake(sv.conn), SMTPD_TLS_AGAIN);
  ck_assert_int_eq(smtpd_tls_conn_eof(sv.conn), 0);
  ck_assert_int_eq(smtpd_tls_conn_feed(sv.conn, "x", 1),
                   SMTPD_ERR_INVALID_STATE);
  ck_assert_int_eq(smtpd_tls_conn_handshake(sv.conn), SMTPD_ERR_TLS);
  ck_assert_ptr_nonnull(strstr(smtpd_tls_conn_error(sv.conn), "closed"));
  assert_dead(sv.conn, SMTPD_ERR_TLS);
  server_free(&sv);
}
END_TEST

/* close_mid_handshake - the client goes away after its first flight
 * (ClientHello), or after reading the server's flight (with its own
 * second flight half sent). */
static void close_mid_handshake(const char *prio, int late)
{
  server sv;
  client c;
  server_init(&sv, NULL);
  client_init(&c, prio, &g_srv.pem.cert, NULL);
  ck_assert_int_eq(gnutls_handshake(c.s), GNUTLS_E_AGAIN);
  ck_assert_int_eq(move_c2s(&c, sv.conn, 0, 1), SMTPD_TLS_AGAIN);
  ck_assert_uint_gt(move_s2c(sv.conn, &c), 0);
  if (late) {
    int rc;
    do
      rc = gnutls_handshake(c.s);
    while (rc == GNUTLS_E_INTERRUPTED);
    ck_assert_uint_gt(buf_pending(&c.out), 2);
    c.out.len -= 2; /* the last record is cut short */
    ck_assert_int_eq(move_c2s(&c, sv.conn, 0, 1), SMTPD_TLS_AGAIN);
  }
  ck_assert_int_eq(smtpd_tls_conn_eof(sv.conn), 0);
  ck_assert_int_eq(smtpd_tls_conn_handshake(sv.conn), SMTPD_ERR_TLS);
  ck_assert_ptr_nonnull(strstr(smtpd_tls_conn_error(sv.conn), "closed"));
  assert_dead(sv.conn, SMTPD_ERR_TLS);
  client_free(&c);
  server_free(&sv);
}

START_TEST(close_during_handshake)
{
  close_mid_handshake(PRIO_13, 0);
  close_mid_handshake(PRIO_13, 1);
  close_mid_handshake(PRIO_12, 0);
  close_mid_handshake(PRIO_12, 1);
}
END_TEST

START_TEST(client_alert_during_handshake)
{
  server sv;
  client c;

  /* TLS 1.2: the client reads the server's first flight and gives up */
  server_init(&sv, NULL);
  client_init(&c, PRIO_12, &g_srv.pem.cert, NULL);
  ck_assert_int_eq(gnutls_handshake(c.s), GNUTLS_E_AGAIN);
  ck_assert_int_eq(move_c2s(&c, sv.conn, 0, 1), SMTPD_TLS_AGAIN);
  ck_assert_uint_gt(move_s2c(sv.conn, &c), 0);
  ck_assert_int_eq(gnutls_alert_send(c.s, GNUTLS_AL_FATAL,
                                     GNUTLS_A_USER_CANCELED),
                   0);
  ck_assert_int_eq(move_c2s(&c, sv.conn, 0, 1), SMTPD_ERR_TLS);
  ck_assert_str_eq(smtpd_tls_conn_error(sv.conn),
                   "TLS handshake failed: received fatal alert: "
                   "user_canceled (User canceled)");
  assert_dead(sv.conn, SMTPD_ERR_TLS);
  client_free(&c);
  server_free(&sv);

  /* an alert instead of a ClientHello */
  server_init(&sv, NULL);
  client_init(&c, PRIO_13, &g_srv.pem.cert, NULL);
  ck_assert_int_eq(gnutls_alert_send(c.s, GNUTLS_AL_FATAL,
                                     GNUTLS_A_HANDSHAKE_FAILURE),
                   0);
  ck_assert_int_eq(move_c2s(&c, sv.conn, 0, 1), SMTPD_ERR_TLS);
  /* GnuTLS calls a record other than a handshake one here unexpected */
  ck_assert_int_eq(strncmp(smtpd_tls_conn_error(sv.conn),
                           "TLS handshake failed: ", 22),
                   0);
  assert_dead(sv.conn, SMTPD_ERR_TLS);
  client_free(&c);
  server_free(&sv);
}
END_TEST

/* garbage_in - feed bytes that are not a ClientHello: the handshake
 * fails with a reason (at once when now is set, else at the latest when
 * the input ends), possibly an alert goes out, nothing surfaces. */
static void garbage_in(const void *g, size_t n, size_t step, int now)
{
  server sv;
  size_t off = 0;
  int r = SMTPD_TLS_AGAIN;
  server_init(&sv, NULL);
  while (off < n && r == SMTPD_TLS_AGAIN) {
    size_t k = step && n - off > step ? step : n - off;
    ck_assert_int_eq(smtpd_tls_conn_feed(sv.conn, (const char *)g + off, k),
                     (ptrdiff_t)k);
    off += k;
    r = smtpd_tls_conn_handshake(sv.conn);
  }
  if (!now && r == SMTPD_TLS_AGAIN) {
    ck_assert_int_eq(smtpd_tls_conn_eof(sv.conn), 0);
    r = smtpd_tls_conn_handshake(sv.conn);
  }
  ck_assert_int_eq(r, SMTPD_ERR_TLS);
  ck_assert_int_eq(strncmp(smtpd_tls_conn_error(sv.conn),
                           "TLS handshake failed: ", 22),
                   0);
  assert_dead(sv.conn, SMTPD_ERR_TLS);
  server_free(&sv);
}

START_TEST(garbage_client_hello)
{
  static const unsigned char bad_len[] = {0x16, 0x03, 0x01, 0xff, 0xff};
  static const unsigned char bad_body[] = {0x16, 0x03, 0x01, 0x00, 0x06,
                                           0x01, 0x00, 0x00, 0x02, 0xde,
                                           0xad};
  static const unsigned char zeros[64] = {0};
  unsigned char rnd[512];
  int i;

  garbage_in("EHLO x\r\n", 8, 0, 1);
  garbage_in("EHLO x\r\n", 8, 1, 1);
  garbage_in("GET / HTTP/1.0\r\n\r\n", 18, 0, 1);
  garbage_in(bad_len, sizeof bad_len, 0, 1);
  garbage_in(bad_body, sizeof bad_body, 0, 1);
  garbage_in(zeros, sizeof zeros, 0, 1);
  for (i = 0; i < 40; i++) {
    ck_assert_int_eq(gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd), 0);
    if (i % 2) { /* a plausible record header, a random handshake body */
      rnd[0] = 0x16;
      rnd[1] = 0x03;
      rnd[2] = 0x01;
      rnd[3] = 0x01;
      rnd[4] = 0xfb;
    }
    garbage_in(rnd, sizeof rnd, (size_t)(i % 3 == 0 ? 7 : 0), 0);
  }
}
END_TEST

/* plaintext_before_hello - the host mistakenly feeds plaintext that came
 * after STARTTLS to the TLS connection, before or after the ClientHello:
 * the handshake fails and none of it surfaces. */
static void plaintext_injected(const char *prio, const char *plain,
                               int after_hello)
{
  server sv;
  client c;
  int r;
  char b[256];
  server_init(&sv, NULL);
  client_init(&c, prio, &g_srv.pem.cert, NULL);
  ck_assert_int_eq(gnutls_handshake(c.s), GNUTLS_E_AGAIN);
  if (!after_hello)
    ck_assert_int_eq(smtpd_tls_conn_feed(sv.conn, plain, strlen(plain)),
                     (ptrdiff_t)strlen(plain));
  ck_assert_int_gt(move_c2s(&c, sv.conn, 0, 0), -1);
  if (after_hello)
    ck_assert_int_eq(smtpd_tls_conn_feed(sv.conn, plain, strlen(plain)),
                     (ptrdiff_t)strlen(plain));
  r = smtpd_tls_conn_handshake(sv.conn);
  if (after_hello && r == SMTPD_TLS_AGAIN) {
    /* the server answered the hello; the plaintext is the next record */
    move_s2c(sv.conn, &c);
    r = smtpd_tls_conn_handshake(sv.conn);
  }
  ck_assert_int_eq(r, SMTPD_ERR_TLS);
  ck_assert_int_lt(smtpd_tls_conn_read(sv.conn, b, sizeof b), 0);
  ck_assert_str_ne(smtpd_tls_conn_error(sv.conn), "");
  client_free(&c);
  server_free(&sv);
}

START_TEST(plaintext_fed_as_ciphertext)
{
  static const char *inj[] = {
      "RSET\r\n", "EHLO x\r\n",
      ("MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>\r\n"
       "DATA\r\nSubject: injected\r\n\r\nhi\r\n.\r\n"),
      "AUTH PLAIN AGpvZQBzZWNyZXQ=\r\n"};
  size_t i;
  for (i = 0; i < sizeof inj / sizeof inj[0]; i++) {
    plaintext_injected(PRIO_13, inj[i], 0);
    plaintext_injected(PRIO_13, inj[i], 1);
    plaintext_injected(PRIO_12, inj[i], 0);
    plaintext_injected(PRIO_12, inj[i], 1);
  }
}
END_TEST

START_TEST(plaintext_after_handshake)
{
  server sv;
  client c;
  buf got = {0};
  connect_pair(&sv, &c, PRIO_13);
  ck_assert_int_eq(smtpd_tls_conn_feed(sv.conn, "RSET\r\n", 6), 6);
  ck_assert_int_eq(server_recv(sv.conn, &got), SMTPD_ERR_TLS);
  ck_assert_uint_eq(got.len, 0);
  ck_assert_int_eq(strncmp(smtpd_tls_conn_error(sv.conn), "TLS read failed: ",
                           17),
                   0);
  /* an alert for the client */
  ck_assert_uint_gt(smtpd_tls_conn_output(sv.conn, NULL), 0);
  buf_free(&got);
  client_free(&c);
  server_free(&sv);
}
END_TEST

START_TEST(truncated_record)
{
  server sv;
  client c;
  buf got = {0};
  connect_pair(&sv, &c, PRIO_13);
  client_sends(&c, "RSET\r\n");
  c.out.len -= 1; /* the last octet never arrives */
  move_c2s(&c, sv.conn, 0, 0);
  ck_assert_int_eq(server_recv(sv.conn, &got), 0);
  ck_assert_uint_eq(got.len, 0);
  ck_assert_int_eq(smtpd_tls_conn_eof(sv.conn), 0);
  ck_assert_int_eq(server_recv(sv.conn, &got), SMTPD_ERR_TLS);
  ck_assert_uint_eq(got.len, 0);
  ck_assert_ptr_nonnull(strstr(smtpd_tls_conn_error(sv.conn), "truncated"));
  buf_free(&got);
  client_free(&c);
  server_free(&sv);
}
END_TEST

START_TEST(eof_without_close_notify)
{
  server sv;
  client c;
  buf got = {0};
  connect_pair(&sv, &c, PRIO_12);
  client_sends(&c, "QUIT\r\n");
  move_c2s(&c, sv.conn, 0, 0);
  ck_assert_int_eq(smtpd_tls_conn_eof(sv.conn), 0);
  ck_assert_int_eq(server_recv(sv.conn, &got), SMTPD_ERR_TLS);
  ck_assert_uint_eq(got.len, 6); /* complete records still count */
  ck_assert_ptr_nonnull(strstr(smtpd_tls_conn_error(sv.conn), "truncated"));
  buf_free(&got);
  client_free(&c);
  server_free(&sv);
}
END_TEST

static void tampered(const char *prio)
{
  server sv;
  client c;
  buf got = {0};
  ssize_t rc;
  connect_pair(&sv, &c, prio);
  client_sends(&c, "RCPT TO:<a@b>\r\n");
  c.out.d[c.out.len - 3] ^= 0x40;
  move_c2s(&c, sv.conn, 0, 0);
  ck_assert_int_eq(server_recv(sv.conn, &got), SMTPD_ERR_TLS);
  ck_assert_uint_eq(got.len, 0);
  ck_assert_str_ne(smtpd_tls_conn_error(sv.conn), "");
  /* the client learns why */
  ck_assert_uint_gt(move_s2c(sv.conn, &c), 0);
  rc = client_recv(&c, &got);
  ck_assert_int_eq(rc, GNUTLS_E_FATAL_ALERT_RECEIVED);
  ck_assert_int_eq(gnutls_alert_get(c.s), GNUTLS_A_BAD_RECORD_MAC);
  buf_free(&got);
  client_free(&c);
  server_free(&sv);
}

START_TEST(tampered_record)
{
  tampered(PRIO_13);
  tampered(PRIO_12);
}
END_TEST

/* ---- tc_cert --------------------------------------------------------------------- */

static cred g_ca, g_rogue, g_client, g_badclient;
static char g_cafile[256];

static void certs_setup(void)
{
  mkcert(&g_ca, "Test CA", NULL, 1, 0);
  /* same name as the real CA, other key: the client offers its
   * certificate, the server must still reject the signature */
  mkcert(&g_rogue, "Test CA", NULL, 1, 0);
  mkcert(&g_client, "client.example.org", &g_ca, 0, 0);
  mkcert(&g_badclient, "client.example.org", &g_rogue, 0, 0);
  tmpfile_with(g_cafile, sizeof g_cafile, &g_ca.pem.cert, NULL);
}

static void certs_teardown(void)
{
  unlink(g_cafile);
  cred_free(&g_badclient);
  cred_free(&g_client);
  cred_free(&g_rogue);
  cred_free(&g_ca);
}

/* cert_case - handshake under mode with the client presenting mine (or
 * nothing); returns the pair_handshake result, info filled on success. */
static int cert_case(const char *prio, smtpd_tls_client_verify mode,
                     const cred *mine, smtpd_tls_info *info, char *subject,
                     char *issuer, char *reason)
{
  server sv;
  client c;
  int r;

  memset(&sv, 0, sizeof sv);
  ck_assert_int_eq(smtpd_tls_ctx_new(&sv.ctx, NULL), 0);
  ck_assert_int_eq(smtpd_tls_ctx_set_cert_mem(sv.ctx, g_srv.pem.cert.data,
                                              g_srv.pem.cert.size,
                                              g_srv.pem.key.data,
                                              g_srv.pem.key.size),
                   0);
  ck_assert_int_eq(smtpd_tls_ctx_set_client_verify(
                       sv.ctx, mode == SMTPD_TLS_VERIFY_NONE ? NULL : g_cafile,
                       mode),
                   0);
  ck_assert_int_eq(smtpd_tls_conn_new(&sv.conn, sv.ctx), 0);
  client_init(&c, prio, &g_srv.pem.cert, mine ? &mine->pem : NULL);
  r = pair_handshake(&c, sv.conn, 0, NULL);
  subject[0] = issuer[0] = reason[0] = '\0';
  if (r == 0) {
    ck_assert_int_eq(smtpd_tls_conn_info(sv.conn, info), 0);
    if (info->peer_subject)
      snprintf(subject, 256, "%s", info->peer_subject);
    if (info->peer_issuer)
      snprintf(issuer, 256, "%s", info->peer_issuer);
  } else if (smtpd_tls_conn_handshake(sv.conn) == SMTPD_TLS_AGAIN) {
    /* the client failed first; its alert is in flight */
    move_c2s(&c, sv.conn, 0, 1);
  }
  snprintf(reason, 256, "%s", smtpd_tls_conn_error(sv.conn));
  client_free(&c);
  server_free(&sv);
  return r;
}

START_TEST(client_cert_not_requested)
{
  smtpd_tls_info info;
  char subj[256], iss[256], why[256];
  ck_assert_int_eq(cert_case(PRIO_13, SMTPD_TLS_VERIFY_NONE, &g_client, &info,
                             subj, iss, why),
                   0);
  ck_assert_int_eq(info.client_cert_requested, 0);
  ck_assert_int_eq(info.client_cert_verified, 0);
  ck_assert_ptr_null(info.peer_subject);
  ck_assert_ptr_null(info.peer_issuer);
}
END_TEST

static void client_cert_optional(const char *prio)
{
  smtpd_tls_info info;
  char subj[256], iss[256], why[256];

  /* a good certificate: verified, with names */
  ck_assert_int_eq(cert_case(prio, SMTPD_TLS_VERIFY_OPTIONAL, &g_client, &info,
                             subj, iss, why),
                   0);
  ck_assert_int_eq(info.client_cert_requested, 1);
  ck_assert_int_eq(info.client_cert_verified, 1);
  ck_assert_str_eq(subj, "CN=client.example.org");
  ck_assert_str_eq(iss, "CN=Test CA");
  /* none: still fine, not verified */
  ck_assert_int_eq(cert_case(prio, SMTPD_TLS_VERIFY_OPTIONAL, NULL, &info,
                             subj, iss, why),
                   0);
  ck_assert_int_eq(info.client_cert_requested, 1);
  ck_assert_int_eq(info.client_cert_verified, 0);
  ck_assert_ptr_null(info.peer_subject);
  /* from another CA: fine, not verified, no names */
  ck_assert_int_eq(cert_case(prio, SMTPD_TLS_VERIFY_OPTIONAL, &g_badclient,
                             &info, subj, iss, why),
                   0);
  ck_assert_int_eq(info.client_cert_requested, 1);
  ck_assert_int_eq(info.client_cert_verified, 0);
  ck_assert_ptr_null(info.peer_subject);
  ck_assert_ptr_null(info.peer_issuer);
}

START_TEST(client_cert_optional_13) { client_cert_optional(PRIO_13); }
END_TEST

START_TEST(client_cert_optional_12) { client_cert_optional(PRIO_12); }
END_TEST

static void client_cert_required(const char *prio)
{
  smtpd_tls_info info;
  char subj[256], iss[256], why[256];

  ck_assert_int_eq(cert_case(prio, SMTPD_TLS_VERIFY_REQUIRED, &g_client, &info,
                             subj, iss, why),
                   0);
  ck_assert_int_eq(info.client_cert_verified, 1);
  ck_assert_str_eq(subj, "CN=client.example.org");
  /* no certificate: refused */
  ck_assert_int_ne(cert_case(prio, SMTPD_TLS_VERIFY_REQUIRED, NULL, &info,
                             subj, iss, why),
                   0);
  ck_assert_str_ne(why, "");
  /* untrusted certificate: refused, and the reason says so */
  ck_assert_int_ne(cert_case(prio, SMTPD_TLS_VERIFY_REQUIRED, &g_badclient,
                             &info, subj, iss, why),
                   0);
  ck_assert_ptr_nonnull(strstr(why, "client certificate rejected"));
}

START_TEST(client_cert_required_13) { client_cert_required(PRIO_13); }
END_TEST

START_TEST(client_cert_required_12) { client_cert_required(PRIO_12); }
END_TEST

/* ---- tc_mem ------------------------------------------------------------------------ */

typedef struct counting {
  long live;     /* allocations not yet freed */
  long calls;    /* allocation calls so far */
  long fail_at;  /* the call number that fails; -1 never */
} counting;

static int should_fail(counting *k)
{
  return k->fail_at >= 0 && k->calls++ == k->fail_at;
}

static void *cm_malloc(size_t n, void *ctx)
{
  counting *k = ctx;
  void *p;
  if (should_fail(k))
    return NULL;
  if (k->fail_at < 0)
    k->calls++;
  p = malloc(n);
  if (p)
    k->live++;
  return p;
}

static void *cm_calloc(size_t n, size_t m, void *ctx)
{
  counting *k = ctx;
  void *p;
  if (should_fail(k))
    return NULL;
  if (k->fail_at < 0)
    k->calls++;
  p = calloc(n, m);
  if (p)
    k->live++;
  return p;
}

static void *cm_realloc(void *old, size_t n, void *ctx)
{
  counting *k = ctx;
  void *p;
  if (should_fail(k))
    return NULL;
  if (k->fail_at < 0)
    k->calls++;
  p = realloc(old, n);
  if (p && !old)
    k->live++;
  return p;
}

static void cm_free(void *p, void *ctx)
{
  counting *k = ctx;
  if (p)
    k->live--;
  free(p);
}

/* mem_scenario - ctx + conn + handshake + data + bye with allocator k.
 * Returns 0 when it all worked, a negative code when an allocation
 * failure stopped it (cleanly). */
static int mem_scenario(counting *k, cred *clientcert)
{
  smtpd_mem mem = {k, cm_malloc, cm_free, cm_calloc, cm_realloc};
  smtpd_tls_ctx *ctx = NULL;
  smtpd_tls_conn *conn = NULL;
  client c;
  buf got = {0};
  int r;
  ptrdiff_t w;

  r = smtpd_tls_ctx_new(&ctx, &mem);
  if (r < 0) {
    ck_assert_int_eq(r, SMTPD_ERR_NOMEM);
    return r;
  }
  r = smtpd_tls_ctx_set_cert_mem(ctx, g_srv.pem.cert.data, g_srv.pem.cert.size,
                                 g_srv.pem.key.data, g_srv.pem.key.size);
  ck_assert_int_eq(r, 0);
  ck_assert_int_eq(smtpd_tls_ctx_set_client_verify(ctx, g_cafile,
                                                   SMTPD_TLS_VERIFY_OPTIONAL),
                   0);
  r = smtpd_tls_conn_new(&conn, ctx);
  if (r < 0) {
    ck_assert_int_eq(r, SMTPD_ERR_NOMEM);
    ck_assert_ptr_null(conn);
    smtpd_tls_ctx_del(ctx);
    return r;
  }
  client_init(&c, PRIO_13, &g_srv.pem.cert, &clientcert->pem);
  r = pair_handshake(&c, conn, 0, NULL);
  if (r == 0) {
    smtpd_tls_info info;
    r = smtpd_tls_conn_info(conn, &info);
    if (r == 0) {
      /* the names were copied through the hook (or the handshake failed) */
      ck_assert_int_eq(info.client_cert_verified, 1);
      ck_assert_ptr_nonnull(info.peer_subject);
    }
  }
  if (r == 0) {
    client_sends(&c, "DATA\r\n");
    move_c2s(&c, conn, 0, 0);
    ck_assert_int_eq(server_recv(conn, &got), 0);
    w = smtpd_tls_conn_write(conn, "354 go\r\n", 8);
    r = w < 0 ? (int)w : 0;
    if (r == 0)
      r = smtpd_tls_conn_bye(conn);
  }
  buf_free(&got);
  client_free(&c);
  smtpd_tls_conn_del(conn);
  smtpd_tls_ctx_del(ctx);
  return r > 0 ? -1 : r;
}

START_TEST(allocator_hook)
{
  counting k = {0, 0, -1};
  long n, total;
  ck_assert_int_eq(mem_scenario(&k, &g_client), 0);
  ck_assert_int_eq(k.live, 0);
  total = k.calls;
  ck_assert_int_gt(total, 3);
  /* fail each allocation in turn: a clean error, nothing leaked */
  for (n = 0; n < total; n++) {
    counting f = {0, 0, n};
    int r = mem_scenario(&f, &g_client);
    ck_assert_int_lt(r, 0);
    ck_assert_int_eq(f.live, 0);
  }
}
END_TEST

/* ---- tc_session ------------------------------------------------------------------- */

typedef struct slog {
  int starttls, helo, mail, rcpt, data, complete;
  uint64_t discarded;
  char helo_name[64], sender[128];
  char received[1024];
  /* what on_starttls answers the 1st, 2nd, ... time (0: ACCEPT) */
  smtpd_verdict starttls_verdict[4];
  int rcpt_defer; /* on_rcpt answers DEFER */
  /* the wrapped session: on_starttls prepares its TLS connection (unless
   * no_prepare) and answers TEMPFAIL when that fails */
  smtpd_tls_session *ts;
  int no_prepare, prepare_failed;
} slog;

static smtpd_verdict cb_starttls(smtpd_session *s, void *ud)
{
  slog *l = ud;
  int n = l->starttls++;
  smtpd_verdict v = n < 4 ? l->starttls_verdict[n] : SMTPD_ACCEPT;
  (void)s;
  if (v == SMTPD_ACCEPT && l->ts && !l->no_prepare &&
      smtpd_tls_session_prepare(l->ts) != 0) {
    l->prepare_failed++;
    return SMTPD_TEMPFAIL;
  }
  return v;
}

static smtpd_verdict cb_helo(smtpd_session *s, const smtpd_helo *h, void *ud)
{
  slog *l = ud;
  (void)s;
  l->helo++;
  snprintf(l->helo_name, sizeof l->helo_name, "%s", h->name);
  return SMTPD_ACCEPT;
}

static smtpd_verdict cb_mail(smtpd_session *s, const smtpd_mail *m, void *ud)
{
  slog *l = ud;
  (void)s;
  l->mail++;
  snprintf(l->sender, sizeof l->sender, "%s", m->address);
  return SMTPD_ACCEPT;
}

static smtpd_verdict cb_rcpt(smtpd_session *s, const smtpd_rcpt *r, void *ud)
{
  slog *l = ud;
  (void)s;
  (void)r;
  l->rcpt++;
  return l->rcpt_defer ? SMTPD_DEFER : SMTPD_ACCEPT;
}

static smtpd_verdict cb_data(smtpd_session *s, void *ud)
{
  (void)s;
  ((slog *)ud)->data++;
  return SMTPD_ACCEPT;
}

static smtpd_verdict cb_complete(smtpd_session *s, const smtpd_message *m, void *ud)
{
  slog *l = ud;
  smtpd_received r;
  (void)m;
  l->complete++;
  smtpd_received_init(&r);
  ck_assert_int_eq(smtpd_received_from_session(&r, s), 0);
  smtpd_received_format(l->received, sizeof l->received, &r);
  return SMTPD_ACCEPT;
}

static void cb_notice(smtpd_session *s, const smtpd_notice *n, void *ud)
{
  (void)s;
  if (n->type == SMTPD_NOTICE_STARTTLS_DISCARD)
    ((slog *)ud)->discarded += n->count;
}

typedef struct sess {
  smtpd_config *cfg;
  smtpd_session *s;
  slog log;
  server sv;
  client c;
} sess;

/* sess_init - a session with STARTTLS on (or implicit TLS), started;
 * sync_allow: pipelining violations are only reported. */
static void sess_init2(sess *x, int implicit, int sync_allow)
{
  smtpd_callbacks cb;
  memset(x, 0, sizeof *x);
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_starttls = cb_starttls;
  cb.on_helo = cb_helo;
  cb.on_mail = cb_mail;
  cb.on_rcpt = cb_rcpt;
  cb.on_data = cb_data;
  cb.on_data_complete = cb_complete;
  cb.on_notice = cb_notice;
  ck_assert_int_eq(smtpd_config_new(&x->cfg, NULL), 0);
  ck_assert_int_eq(smtpd_config_set_hostname(x->cfg, SERVER_NAME), 0);
  ck_assert_int_eq(smtpd_config_set_option(x->cfg, SMTPD_OPT_STARTTLS, 1), 0);
  ck_assert_int_eq(smtpd_session_new(&x->s, x->cfg, &cb, &x->log), 0);
  ck_assert_int_eq(smtpd_session_set_client(x->s, "192.0.2.7", NULL), 0);
  if (sync_allow)
    ck_assert_int_eq(smtpd_config_set_sync_policy(x->cfg, SMTPD_SYNC_ALLOW),
                     0);
  if (implicit)
    ck_assert_int_eq(smtpd_session_set_implicit_tls(x->s), 0);
  ck_assert_int_eq(smtpd_session_start(x->s), 0);
  server_init(&x->sv, NULL);
}

static void sess_init(sess *x, int implicit) { sess_init2(x, implicit, 0); }

static void sess_free(sess *x)
{
  client_free(&x->c);
  server_free(&x->sv);
  smtpd_session_del(x->s);
  smtpd_config_del(x->cfg);
}

/* plain_out - the session's plaintext output, consumed, as a string. */
static void plain_out(smtpd_session *s, char *out, size_t cap)
{
  const uint8_t *p;
  size_t n, len = 0;
  while ((n = smtpd_session_output(s, &p)) > 0) {
    ck_assert_uint_lt(len + n, cap);
    memcpy(out + len, p, n);
    len += n;
    ck_assert_int_eq(smtpd_session_consume(s, n), 0);
  }
  out[len] = '\0';
}

/* tls_round - the client's output to the server, pump, the server's
 * output to the client; returns the pump result. */
static int tls_round(sess *x)
{
  int r;
  move_c2s(&x->c, x->sv.conn, 0, 0);
  r = smtpd_tls_conn_pump(x->sv.conn, x->s);
  move_s2c(x->sv.conn, &x->c);
  return r;
}

/* tls_handshake_pumped - the client handshakes with the session's TLS
 * connection driven by smtpd_tls_conn_pump alone. */
static void tls_handshake_pumped(sess *x, const char *prio)
{
  int rounds, rc;
  client_init(&x->c, prio, &g_srv.pem.cert, NULL);
  for (rounds = 0; rounds < 50; rounds++) {
    if (!x->c.done) {
      rc = gnutls_handshake(x->c.s);
      if (rc == 0)
        x->c.done = 1;
      else
        ck_assert_int_eq(rc, GNUTLS_E_AGAIN);
    }
    ck_assert_int_eq(tls_round(x), 0);
    if (x->c.done && smtpd_tls_conn_handshake_done(x->sv.conn) &&
        buf_pending(&x->c.out) == 0)
      break;
  }
  ck_assert(smtpd_tls_conn_handshake_done(x->sv.conn));
  ck_assert_ptr_nonnull(smtpd_session_tls(x->s));
}

/* tls_say - client sends text inside TLS; returns what the server
 * answered (decrypted) in out. */
static void tls_say(sess *x, const char *text, char *out, size_t cap)
{
  buf got = {0};
  if (text)
    client_sends(&x->c, text);
  ck_assert_int_ge(tls_round(x), SMTPD_ERR_CLOSED);
  client_recv(&x->c, &got);
  ck_assert_uint_lt(got.len, cap);
  if (got.len)
    memcpy(out, got.d, got.len);
  out[got.len] = '\0';
  buf_free(&got);
}

/* starttls_case - the client sends packets (plaintext, each one feed,
 * the host writing the output after each; split: one octet per feed)
 * whose STARTTLS is followed by injected commands. After the handshake
 * the server says nothing and the session is fresh. sync_allow: EHLO and
 * STARTTLS may share a packet (RFC 2920 wants EHLO last in a group, so
 * by default that is a synchronization error). */
static void starttls_case(const char *const *packets, size_t npackets,
                          int split, const char *prio, int sync_allow)
{
  char got[8192] = "";
  sess x;
  char out[8192], all[1024] = "";
  size_t i, expect;
  const char *st;

  for (i = 0; i < npackets; i++)
    strcat(all, packets[i]);
  st = strstr(all, "STARTTLS\r\n");
  ck_assert_ptr_nonnull(st);
  expect = strlen(all) - (size_t)(st + 10 - all);

  sess_init2(&x, 0, sync_allow);
  plain_out(x.s, out, sizeof out);
  ck_assert_int_eq(strncmp(out, "220 " SERVER_NAME " ", 5 + strlen(SERVER_NAME)),
                   0);
  for (i = 0; i < npackets; i++) {
    const char *p = packets[i];
    size_t len = strlen(p), off = 0;
    while (off < len) {
      size_t k = split ? 1 : len - off;
      /* the session takes (or discards) every octet */
      ck_assert_int_eq(smtpd_session_feed(x.s, p + off, k), (ptrdiff_t)k);
      off += k;
    }
    plain_out(x.s, out, sizeof out);
    ck_assert_uint_lt(strlen(got) + strlen(out), sizeof got);
    strcat(got, out);
  }
  ck_assert_int_eq(x.log.starttls, 1);
  /* everything after STARTTLS was discarded and reported */
  ck_assert_uint_eq(x.log.discarded, expect);
  ck_assert_ptr_null(strstr(got, "554 "));
  ck_assert_ptr_null(strstr(got, "250 2.0.0")); /* no RSET reply */
  st = strstr(got, "220 2.0.0 Ready to start TLS\r\n");
  ck_assert_ptr_nonnull(st);
  ck_assert_str_eq(st, "220 2.0.0 Ready to start TLS\r\n"); /* last */
  ck_assert_int_eq(x.log.mail, 0);
  {
    int helos_before = x.log.helo;

    /* the host now routes socket bytes to the TLS connection */
    tls_handshake_pumped(&x, prio);
    ck_assert_str_eq(smtpd_session_tls(x.s)->protocol,
                     strcmp(prio, PRIO_12) == 0 ? "TLSv1.2" : "TLSv1.3");
    /* the server says nothing until the client speaks */
    tls_say(&x, NULL, out, sizeof out);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(smtpd_session_output(x.s, NULL), 0);
    ck_assert_int_eq(x.log.mail + x.log.rcpt + x.log.data, 0);
    ck_assert_int_eq(x.log.helo, helos_before);
    ck_assert_ptr_null(smtpd_session_helo(x.s));

    /* the session is fresh: EHLO needed, no STARTTLS offered */
    tls_say(&x, "MAIL FROM:<good@example.org>\r\n", out, sizeof out);
    ck_assert_int_eq(strncmp(out, "503 5.5.1", 9), 0);
    ck_assert_int_eq(x.log.mail, 0);
    tls_say(&x, "EHLO inside.example.org\r\n", out, sizeof out);
    ck_assert_int_eq(strncmp(out, "250-" SERVER_NAME, 4 + strlen(SERVER_NAME)),
                     0);
    ck_assert_ptr_null(strstr(out, "STARTTLS"));
    ck_assert_str_eq(x.log.helo_name, "inside.example.org");
    tls_say(&x, "STARTTLS\r\n", out, sizeof out);
    ck_assert_str_eq(out, "554 5.5.1 Error: TLS already active\r\n");
    tls_say(&x,
            "MAIL FROM:<good@example.org>\r\nRCPT TO:<rcpt@example.org>\r\n"
            "DATA\r\n",
            out, sizeof out);
    ck_assert_int_eq(x.log.mail, 1);
    ck_assert_str_eq(x.log.sender, "good@example.org");
    ck_assert_int_eq(x.log.rcpt, 1);
    ck_assert_ptr_nonnull(strstr(out, "354 "));
    tls_say(&x, "Subject: t\r\n\r\nhello\r\n.\r\n", out, sizeof out);
    ck_assert_int_eq(strncmp(out, "250 ", 4), 0);
    ck_assert_int_eq(x.log.complete, 1);
    ck_assert_ptr_nonnull(strstr(x.log.received, "with ESMTPS"));
    ck_assert_ptr_nonnull(strstr(x.log.received, " with cipher TLS_"));
    ck_assert_ptr_nonnull(strstr(x.log.received, "bits)"));
    /* QUIT: 221, then close_notify from the pump */
    tls_say(&x, "QUIT\r\n", out, sizeof out);
    ck_assert_int_eq(strncmp(out, "221 ", 4), 0);
    {
      buf got = {0};
      ck_assert_int_eq(client_recv(&x.c, &got), 0); /* close_notify seen */
      buf_free(&got);
    }
    ck_assert(!smtpd_session_want_read(x.s));
    ck_assert(!smtpd_session_want_write(x.s));
    ck_assert(!smtpd_tls_conn_want_write(x.sv.conn));
  }
  sess_free(&x);
}

START_TEST(starttls_rset_injection)
{
  static const char *const p1[] = {"STARTTLS\r\nRSET\r\n"};
  static const char *const p2[] = {"EHLO x\r\n", "STARTTLS\r\nRSET\r\n"};
  static const char *const p3[] = {"EHLO x\r\nSTARTTLS\r\nRSET\r\n"};
  starttls_case(p1, 1, 0, PRIO_13, 0);
  starttls_case(p1, 1, 1, PRIO_13, 0);
  starttls_case(p2, 2, 0, PRIO_13, 0);
  starttls_case(p2, 2, 0, PRIO_12, 0);
  starttls_case(p3, 1, 0, PRIO_13, 1);
  starttls_case(p3, 1, 1, PRIO_12, 1);
}
END_TEST

START_TEST(starttls_ehlo_injection)
{
  static const char *const p1[] = {"STARTTLS\r\nEHLO x\r\n"};
  starttls_case(p1, 1, 0, PRIO_13, 0);
  starttls_case(p1, 1, 1, PRIO_13, 0);
  starttls_case(p1, 1, 0, PRIO_12, 0);
}
END_TEST

START_TEST(starttls_transaction_injection)
{
  static const char *const p1[] = {
      "EHLO x\r\n",
      "STARTTLS\r\nAUTH PLAIN AGpvZQBzZWNyZXQ=\r\n"
      "MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>\r\n"
      "DATA\r\nSubject: injected\r\n\r\nhi\r\n.\r\nQUIT\r\n"};
  static const char *const p2[] = {
      "EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@example.org>\r\n"
      "RCPT TO:<victim@example.org>\r\nDATA\r\n.\r\n"};
  starttls_case(p1, 2, 0, PRIO_13, 0);
  starttls_case(p1, 2, 1, PRIO_12, 0);
  starttls_case(p2, 1, 0, PRIO_13, 1);
}
END_TEST

START_TEST(starttls_injection_split_feeds)
{
  /* the injected bytes arrive in later packets, before the handshake */
  static const char *const p1[] = {"EHLO x\r\n", "STARTTLS\r\nMA",
                                   "IL FROM:<evil@example.org>\r\n",
                                   "RCPT TO:<victim@example.org>\r\n"};
  static const char *const p2[] = {"EHLO x\r\n", "STA", "RTTLS\r",
                                   "\nRSET\r\n", "EHLO y\r\n"};
  starttls_case(p1, 4, 0, PRIO_13, 0);
  starttls_case(p2, 5, 0, PRIO_13, 0);
  starttls_case(p2, 5, 1, PRIO_12, 0);
}
END_TEST

START_TEST(implicit_tls)
{
  sess x;
  char out[4096];

  sess_init(&x, 1);
  /* no greeting before the handshake */
  ck_assert_int_eq(smtpd_session_output(x.s, NULL), 0);
  tls_handshake_pumped(&x, PRIO_13);
  /* the greeting comes through TLS, unasked */
  tls_say(&x, NULL, out, sizeof out);
  ck_assert_int_eq(strncmp(out, "220 " SERVER_NAME " ", 5 + strlen(SERVER_NAME)),
                   0);
  tls_say(&x, "EHLO c.example.org\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250-", 4), 0);
  ck_assert_ptr_null(strstr(out, "STARTTLS"));
  /* the client closes with close_notify after its QUIT */
  client_sends(&x.c, "QUIT\r\n");
  ck_assert_int_eq(gnutls_bye(x.c.s, GNUTLS_SHUT_WR), 0);
  tls_say(&x, NULL, out, sizeof out);
  ck_assert_int_eq(strncmp(out, "221 ", 4), 0);
  ck_assert(smtpd_session_is_closing(x.s));
  sess_free(&x);
}
END_TEST

START_TEST(pump_peer_close)
{
  sess x;
  char out[4096];
  sess_init(&x, 1);
  tls_handshake_pumped(&x, PRIO_12);
  tls_say(&x, NULL, out, sizeof out);
  ck_assert_int_eq(strncmp(out, "220 ", 4), 0);
  /* a command then close_notify: the command is served, then CLOSED */
  client_sends(&x.c, "NOOP\r\n");
  ck_assert_int_eq(gnutls_bye(x.c.s, GNUTLS_SHUT_WR), 0);
  move_c2s(&x.c, x.sv.conn, 0, 0);
  ck_assert_int_eq(smtpd_tls_conn_pump(x.sv.conn, x.s), SMTPD_ERR_CLOSED);
  move_s2c(x.sv.conn, &x.c);
  tls_say(&x, NULL, out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250 ", 4), 0);
  sess_free(&x);
}
END_TEST

START_TEST(pump_handshake_failure)
{
  sess x;
  sess_init(&x, 0);
  plain_out(x.s, (char[512]){0}, 512);
  ck_assert_int_eq(smtpd_session_feed(x.s, "STARTTLS\r\n", 10), 10);
  plain_out(x.s, (char[512]){0}, 512);
  /* a broken host passes plaintext on: the handshake fails, the session
   * never sees it */
  ck_assert_int_eq(smtpd_tls_conn_feed(x.sv.conn, "RSET\r\nQUIT\r\n", 12), 12);
  ck_assert_int_eq(smtpd_tls_conn_pump(x.sv.conn, x.s), SMTPD_ERR_TLS);
  ck_assert_int_eq(smtpd_tls_conn_pump(x.sv.conn, x.s), SMTPD_ERR_TLS);
  ck_assert_ptr_null(smtpd_session_tls(x.s));
  ck_assert_int_eq(smtpd_session_output(x.s, NULL), 0);
  client_init(&x.c, PRIO_13, NULL, NULL); /* for sess_free */
  sess_free(&x);
}
END_TEST

/* ---- STARTTLS decisions and the end of a TLS session ------------------------------ */

#define REPLY_454 "454 4.7.0 TLS not available due to local problem\r\n"
#define REPLY_220 "220 2.0.0 Ready to start TLS\r\n"

/* plain_say - plaintext for the session (all of it taken); its plaintext
 * answer, consumed, in out. */
static void plain_say(sess *x, const char *text, char *out, size_t cap)
{
  size_t n = strlen(text);
  ck_assert_int_eq(smtpd_session_feed(x->s, text, n), (ptrdiff_t)n);
  plain_out(x->s, out, cap);
}

/* offers_starttls - an EHLO reply lists STARTTLS. */
static int offers_starttls(const char *ehlo)
{
  return strstr(ehlo, "250-STARTTLS\r\n") != NULL ||
         strstr(ehlo, "250 STARTTLS\r\n") != NULL;
}

/* tls_over - the end-of-connection rule under TLS (smtpd.h): the session
 * is done and the TLS connection has no ciphertext left to write. */
static int tls_over(sess *x)
{
  return smtpd_session_is_done(x->s) &&
         !smtpd_tls_conn_want_write(x->sv.conn);
}

/* move_s2c_upto - at most max octets of the server's output to the
 * client (a socket that takes only so much). */
static size_t move_s2c_upto(smtpd_tls_conn *conn, client *c, size_t max)
{
  const uint8_t *p;
  size_t n = smtpd_tls_conn_output(conn, &p);
  if (n > max)
    n = max;
  if (n > 0) {
    buf_add(&c->in, p, n);
    ck_assert_int_eq(smtpd_tls_conn_consume(conn, n), 0);
  }
  return n;
}

/* tls_mail_and_quit - right after the handshake: the session is fresh, a
 * message goes through over TLS, QUIT gets 221 and then close_notify,
 * and only then is the connection over. */
static void tls_mail_and_quit(sess *x)
{
  char out[4096];
  int complete = x->log.complete;
  buf got = {0};

  tls_say(x, NULL, out, sizeof out);
  ck_assert_str_eq(out, ""); /* the server speaks only when spoken to */
  tls_say(x, "EHLO inside.example.org\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250-" SERVER_NAME, 4 + strlen(SERVER_NAME)),
                   0);
  ck_assert(!offers_starttls(out));
  tls_say(x, "MAIL FROM:<tls@example.org>\r\n", out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.0 Ok\r\n");
  ck_assert_str_eq(x->log.sender, "tls@example.org");
  tls_say(x, "RCPT TO:<rcpt@example.org>\r\n", out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.5 Ok\r\n");
  tls_say(x, "DATA\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "354 ", 4), 0);
  tls_say(x, "Subject: t\r\n\r\nover TLS\r\n.\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250 ", 4), 0);
  ck_assert_int_eq(x->log.complete, complete + 1);
  ck_assert_ptr_nonnull(strstr(x->log.received, "with ESMTPS"));
  ck_assert(!tls_over(x));
  tls_say(x, "QUIT\r\n", out, sizeof out);
  ck_assert_str_eq(out, "221 2.0.0 Bye\r\n");
  ck_assert_int_eq(client_recv(&x->c, &got), 0); /* close_notify came */
  ck_assert_uint_eq(got.len, 0);
  buf_free(&got);
  ck_assert(tls_over(x));
}

/* on_starttls answers TEMPFAIL: the client gets exactly the 454, no
 * handshake starts, the plaintext session goes on (EHLO still offers
 * STARTTLS, a message is delivered); a second STARTTLS is accepted and a
 * real handshake follows. */
START_TEST(starttls_tempfail_then_accept)
{
  sess x;
  char out[4096];
  smtpd_tls_info fake;

  sess_init(&x, 0);
  x.log.starttls_verdict[0] = SMTPD_TEMPFAIL;
  plain_out(x.s, out, sizeof out);
  plain_say(&x, "EHLO client.example.org\r\n", out, sizeof out);
  ck_assert(offers_starttls(out));

  plain_say(&x, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, REPLY_454); /* byte for byte, and nothing else */
  ck_assert_int_eq(x.log.starttls, 1);
  /* no handshake: the session does not wait for TLS and refuses a
   * handshake report; it reads plaintext on */
  ck_assert(!smtpd_session_is_tls_wait(x.s));
  memset(&fake, 0, sizeof fake);
  fake.protocol = "TLSv1.3";
  fake.cipher = "TLS_AES_128_GCM_SHA256";
  fake.cipher_bits = fake.alg_bits = 128;
  ck_assert_int_eq(smtpd_session_tls_established(x.s, &fake),
                   SMTPD_ERR_INVALID_STATE);
  ck_assert_ptr_null(smtpd_session_tls(x.s));
  ck_assert(smtpd_session_want_read(x.s));
  ck_assert(!smtpd_session_is_closing(x.s));
  ck_assert(!smtpd_session_is_done(x.s));

  /* the greeting survives: MAIL works without a new EHLO */
  plain_say(&x, "MAIL FROM:<plain@example.org>\r\n", out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.0 Ok\r\n");
  ck_assert_str_eq(x.log.sender, "plain@example.org");
  plain_say(&x, "RSET\r\n", out, sizeof out);
  ck_assert_str_eq(out, "250 2.0.0 Ok\r\n");
  /* EHLO again: STARTTLS still offered; a whole message in plaintext */
  plain_say(&x, "EHLO client.example.org\r\n", out, sizeof out);
  ck_assert(offers_starttls(out));
  plain_say(&x, "MAIL FROM:<plain2@example.org>\r\n", out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.0 Ok\r\n");
  plain_say(&x, "RCPT TO:<rcpt@example.org>\r\n", out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.5 Ok\r\n");
  plain_say(&x, "DATA\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "354 ", 4), 0);
  plain_say(&x, "Subject: p\r\n\r\nplain\r\n.\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250 ", 4), 0);
  ck_assert_int_eq(x.log.complete, 1);
  ck_assert_ptr_null(strstr(x.log.received, "ESMTPS"));
  ck_assert_uint_eq(x.log.discarded, 0);
  /* the host never touched its TLS connection */
  ck_assert(!smtpd_tls_conn_handshake_done(x.sv.conn));
  ck_assert(!smtpd_tls_conn_want_write(x.sv.conn));

  /* the second STARTTLS is accepted: 220, TLS-wait, a real handshake */
  plain_say(&x, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, REPLY_220);
  ck_assert_int_eq(x.log.starttls, 2);
  ck_assert(smtpd_session_is_tls_wait(x.s));
  ck_assert(!smtpd_session_want_write(x.s));
  tls_handshake_pumped(&x, PRIO_13);
  ck_assert(!smtpd_session_is_tls_wait(x.s));
  ck_assert_str_eq(smtpd_session_tls(x.s)->protocol, "TLSv1.3");
  tls_mail_and_quit(&x);
  ck_assert_uint_eq(x.log.discarded, 0);
  sess_free(&x);
}
END_TEST

/* on_starttls answers DEFER: nothing is said while paused; resumed with
 * TEMPFAIL the client gets the 454, resumed with ACCEPT the 220, and a
 * real handshake follows. A command pipelined behind the deferred
 * STARTTLS is held back, and discarded once TLS was accepted. */
START_TEST(starttls_deferred_resume)
{
  sess x;
  char out[4096];

  sess_init(&x, 0);
  x.log.starttls_verdict[0] = SMTPD_DEFER;
  x.log.starttls_verdict[1] = SMTPD_DEFER;
  plain_out(x.s, out, sizeof out);
  plain_say(&x, "EHLO client.example.org\r\n", out, sizeof out);

  /* deferred, resumed with TEMPFAIL: 454, plaintext goes on */
  plain_say(&x, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, "");
  ck_assert_int_eq(x.log.starttls, 1);
  ck_assert(smtpd_session_is_paused(x.s));
  ck_assert(!smtpd_session_is_tls_wait(x.s));
  ck_assert(!smtpd_session_want_read(x.s));
  ck_assert(!smtpd_session_is_done(x.s));
  ck_assert_int_eq(smtpd_session_resume(x.s, SMTPD_TEMPFAIL), 0);
  plain_out(x.s, out, sizeof out);
  ck_assert_str_eq(out, REPLY_454);
  ck_assert(!smtpd_session_is_paused(x.s));
  ck_assert(!smtpd_session_is_tls_wait(x.s));
  plain_say(&x, "NOOP\r\n", out, sizeof out);
  ck_assert_str_eq(out, "250 2.0.0 Ok\r\n");

  /* deferred again, with RSET pipelined behind it: only the STARTTLS
   * line is taken while paused */
  ck_assert_int_eq(smtpd_session_feed(x.s, "STARTTLS\r\nRSET\r\n", 16), 10);
  plain_out(x.s, out, sizeof out);
  ck_assert_str_eq(out, "");
  ck_assert_int_eq(x.log.starttls, 2);
  ck_assert(smtpd_session_is_paused(x.s));
  ck_assert_int_eq(smtpd_session_resume(x.s, SMTPD_ACCEPT), 0);
  plain_out(x.s, out, sizeof out);
  ck_assert_str_eq(out, REPLY_220);
  ck_assert(!smtpd_session_is_paused(x.s));
  ck_assert(smtpd_session_is_tls_wait(x.s));
  /* the held RSET, fed now, is discarded (and reported), never answered */
  ck_assert_int_eq(smtpd_session_feed(x.s, "RSET\r\n", 6), 6);
  ck_assert_uint_eq(x.log.discarded, 6);
  plain_out(x.s, out, sizeof out);
  ck_assert_str_eq(out, "");

  tls_handshake_pumped(&x, PRIO_12);
  ck_assert(!smtpd_session_is_tls_wait(x.s));
  ck_assert_str_eq(smtpd_session_tls(x.s)->protocol, "TLSv1.2");
  ck_assert_ptr_null(smtpd_session_helo(x.s));
  tls_mail_and_quit(&x);
  sess_free(&x);
}
END_TEST

/* starttls_up - greeting, EHLO and an accepted STARTTLS in plaintext,
 * the handshake through the pump, EHLO inside TLS. */
static void starttls_up(sess *x, const char *prio)
{
  char out[4096];
  plain_out(x->s, out, sizeof out);
  plain_say(x, "EHLO client.example.org\r\n", out, sizeof out);
  plain_say(x, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, REPLY_220);
  tls_handshake_pumped(x, prio);
  tls_say(x, "EHLO inside.example.org\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250-", 4), 0);
  ck_assert(!smtpd_session_is_done(x->s));
  ck_assert(!tls_over(x));
}

/* QUIT over TLS, driven step by step: the session is done only once its
 * 221 was consumed; the connection is over only once the TLS output,
 * close_notify last, was all written. */
START_TEST(tls_done_after_quit)
{
  sess x;
  char tmp[64];
  const uint8_t *p;
  size_t n, before;
  buf got = {0};

  sess_init(&x, 0);
  starttls_up(&x, PRIO_13);

  /* the host decrypts QUIT and hands it to the session itself */
  client_sends(&x.c, "QUIT\r\n");
  move_c2s(&x.c, x.sv.conn, 0, 0);
  ck_assert_int_eq(smtpd_tls_conn_read(x.sv.conn, tmp, sizeof tmp), 6);
  ck_assert_int_eq(smtpd_session_feed(x.s, tmp, 6), 6);
  /* closing, its 221 unconsumed: not done */
  ck_assert(smtpd_session_is_closing(x.s));
  ck_assert(!smtpd_session_want_read(x.s));
  ck_assert(!smtpd_session_is_done(x.s));
  n = smtpd_session_output(x.s, &p);
  ck_assert_uint_eq(n, 15);
  ck_assert_int_eq(memcmp(p, "221 2.0.0 Bye\r\n", 15), 0);
  /* encrypted and consumed in two parts: done only after the last */
  ck_assert_int_eq(smtpd_tls_conn_write(x.sv.conn, p, 3), 3);
  ck_assert_int_eq(smtpd_session_consume(x.s, 3), 0);
  ck_assert(!smtpd_session_is_done(x.s));
  n = smtpd_session_output(x.s, &p);
  ck_assert_uint_eq(n, 12);
  ck_assert_int_eq(smtpd_tls_conn_write(x.sv.conn, p, n), (ptrdiff_t)n);
  ck_assert_int_eq(smtpd_session_consume(x.s, n), 0);
  ck_assert(smtpd_session_is_done(x.s));
  /* done, but the 221 is still ciphertext in the TLS output: not over */
  ck_assert(smtpd_tls_conn_want_write(x.sv.conn));
  ck_assert(!tls_over(&x));

  /* the pump adds close_notify behind the 221 */
  before = smtpd_tls_conn_output(x.sv.conn, &p);
  ck_assert_int_eq(smtpd_tls_conn_pump(x.sv.conn, x.s), 0);
  n = smtpd_tls_conn_output(x.sv.conn, &p);
  ck_assert_uint_gt(n, before);
  /* all but the last octet written: still not over, and the client has
   * its 221 but not yet the close_notify */
  ck_assert_uint_eq(move_s2c_upto(x.sv.conn, &x.c, n - 1), n - 1);
  ck_assert(smtpd_tls_conn_want_write(x.sv.conn));
  ck_assert(smtpd_session_is_done(x.s));
  ck_assert(!tls_over(&x));
  ck_assert_int_eq(client_recv(&x.c, &got), GNUTLS_E_AGAIN);
  ck_assert_uint_eq(got.len, 15);
  ck_assert_int_eq(memcmp(got.d, "221 2.0.0 Bye\r\n", 15), 0);
  /* the last octet: over, and the client sees close_notify */
  ck_assert_uint_eq(move_s2c_upto(x.sv.conn, &x.c, n), 1);
  ck_assert(tls_over(&x));
  ck_assert_int_eq(client_recv(&x.c, &got), 0);
  ck_assert_uint_eq(got.len, 15);
  /* over stays over: another pump queues nothing */
  ck_assert_int_eq(smtpd_tls_conn_pump(x.sv.conn, x.s), 0);
  ck_assert(tls_over(&x));
  buf_free(&got);
  sess_free(&x);
}
END_TEST

/* The same rule with a slow socket: 12,000 pipelined RSETs and a QUIT,
 * the host writing 4 KiB per round. The session is closing for a while
 * before it is done (its replies wait for room in the TLS output), done
 * for a while before the connection is over, and when the rule says
 * over the client has every reply and the close_notify. */
START_TEST(tls_done_waits_for_output)
{
  enum { NRSET = 12000 };
  sess x;
  buf got = {0};
  char *blob;
  size_t i, nok = 0;
  int rounds, closing_not_done = 0, done_not_over = 0;
  const char *q;

  sess_init(&x, 0);
  starttls_up(&x, PRIO_13);
  blob = malloc(NRSET * 6 + 7);
  ck_assert_ptr_nonnull(blob);
  for (i = 0; i < NRSET; i++)
    memcpy(blob + 6 * i, "RSET\r\n", 6);
  memcpy(blob + 6 * NRSET, "QUIT\r\n", 7);
  client_send(&x.c, blob, 6 * NRSET + 6);
  free(blob);

  for (rounds = 0; rounds < 20000 && !tls_over(&x); rounds++) {
    move_c2s(&x.c, x.sv.conn, 0, 0);
    ck_assert_int_eq(smtpd_tls_conn_pump(x.sv.conn, x.s), 0);
    if (smtpd_session_is_done(x.s)) {
      ck_assert(smtpd_session_is_closing(x.s));
      ck_assert_uint_eq(smtpd_session_output(x.s, NULL), 0);
      if (smtpd_tls_conn_want_write(x.sv.conn))
        done_not_over = 1;
    } else if (smtpd_session_is_closing(x.s)) {
      ck_assert_uint_gt(smtpd_session_output(x.s, NULL), 0);
      closing_not_done = 1;
    }
    move_s2c_upto(x.sv.conn, &x.c, 4096);
    /* the client reads as it goes */
    (void)client_recv(&x.c, &got);
  }
  ck_assert(tls_over(&x));
  ck_assert(closing_not_done);
  ck_assert(done_not_over);
  ck_assert_int_eq(client_recv(&x.c, &got), 0); /* close_notify, last */
  for (q = (const char *)got.d;
       (size_t)(q - (const char *)got.d) + 14 <= got.len &&
       memcmp(q, "250 2.0.0 Ok\r\n", 14) == 0;
       q += 14)
    nok++;
  ck_assert_uint_eq(nok, NRSET);
  ck_assert_uint_eq(got.len, 14 * NRSET + 15);
  ck_assert_int_eq(memcmp(q, "221 2.0.0 Bye\r\n", 15), 0);
  buf_free(&got);
  sess_free(&x);
}
END_TEST

/* A paused TLS session (RCPT deferred, QUIT pipelined behind it) neither
 * reads nor writes, yet it is not done and the connection is not over;
 * pumping it sends no close_notify. Resumed, it answers RCPT, then the
 * held QUIT, and ends by the rule. */
START_TEST(tls_paused_not_done)
{
  sess x;
  char out[4096];
  buf got = {0};

  sess_init(&x, 0);
  starttls_up(&x, PRIO_12);
  tls_say(&x, "MAIL FROM:<a@example.org>\r\n", out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.0 Ok\r\n");
  x.log.rcpt_defer = 1;
  tls_say(&x, "RCPT TO:<r@example.org>\r\nQUIT\r\n", out, sizeof out);
  ck_assert_str_eq(out, "");
  ck_assert_int_eq(x.log.rcpt, 1);
  ck_assert(smtpd_session_is_paused(x.s));
  ck_assert(!smtpd_session_want_read(x.s));
  ck_assert(!smtpd_session_want_write(x.s));
  ck_assert(!smtpd_tls_conn_want_write(x.sv.conn));
  ck_assert(!smtpd_session_is_closing(x.s));
  ck_assert(!smtpd_session_is_done(x.s));
  ck_assert(!tls_over(&x));
  /* pumping a paused session changes nothing: no close_notify */
  ck_assert_int_eq(smtpd_tls_conn_pump(x.sv.conn, x.s), 0);
  ck_assert(!smtpd_tls_conn_want_write(x.sv.conn));
  ck_assert(!smtpd_session_is_done(x.s));
  ck_assert(smtpd_session_is_paused(x.s));

  ck_assert_int_eq(smtpd_session_resume(x.s, SMTPD_ACCEPT), 0);
  ck_assert(!smtpd_session_is_done(x.s));
  ck_assert(!tls_over(&x));
  tls_say(&x, NULL, out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.5 Ok\r\n221 2.0.0 Bye\r\n");
  ck_assert(smtpd_session_is_done(x.s));
  ck_assert(tls_over(&x));
  ck_assert_int_eq(client_recv(&x.c, &got), 0); /* close_notify came */
  buf_free(&got);
  sess_free(&x);
}
END_TEST

/* ---- tc_wrapped: the TLS-wrapped session ------------------------------------------ */

/* A host that knows only smtpd_tls_session_* (plus the session's own
 * resume), and a real GnuTLS client, joined by two byte streams as a
 * socket would join them. The client speaks plaintext until it starts
 * TLS; the host never knows which it is handed. step: the host feeds,
 * and writes, at most step octets per call (0: all it can); max_write
 * bounds what the socket takes per round (0: no bound). Everything the
 * client reads (decrypted under TLS) is appended to seen, so that runs
 * with different steps can be compared. */
typedef struct wire {
  smtpd_config *cfg;
  smtpd_session *s;
  smtpd_tls_ctx *ctx;
  smtpd_tls_session *ts;
  slog log;
  client c;
  int tls;          /* the client speaks TLS (c is initialised) */
  buf c2s, s2c;     /* the socket, each way */
  size_t step, max_write;
  buf seen;
  smtpd_tls_mode mode;
  int fatal;        /* a fatal error feed returned (allocation tests) */
} wire;

/* wire_init2 - config (STARTTLS on unless no_starttls), a context with
 * the server certificate through mem (none when !with_ctx), a session
 * and its wrapper in mode, started. */
static void wire_init2(wire *w, smtpd_tls_mode mode, size_t step,
                       const smtpd_mem *mem, int with_ctx, int starttls)
{
  smtpd_callbacks cb;
  memset(w, 0, sizeof *w);
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_starttls = cb_starttls;
  cb.on_helo = cb_helo;
  cb.on_mail = cb_mail;
  cb.on_rcpt = cb_rcpt;
  cb.on_data = cb_data;
  cb.on_data_complete = cb_complete;
  cb.on_notice = cb_notice;
  ck_assert_int_eq(smtpd_config_new(&w->cfg, NULL), 0);
  ck_assert_int_eq(smtpd_config_set_hostname(w->cfg, SERVER_NAME), 0);
  ck_assert_int_eq(
      smtpd_config_set_option(w->cfg, SMTPD_OPT_STARTTLS, starttls), 0);
  if (with_ctx) {
    ck_assert_int_eq(smtpd_tls_ctx_new(&w->ctx, mem), 0);
    ck_assert_int_eq(smtpd_tls_ctx_set_cert_mem(
                         w->ctx, g_srv.pem.cert.data, g_srv.pem.cert.size,
                         g_srv.pem.key.data, g_srv.pem.key.size),
                     0);
  }
  ck_assert_int_eq(smtpd_session_new(&w->s, w->cfg, &cb, &w->log), 0);
  ck_assert_int_eq(smtpd_session_set_client(w->s, "192.0.2.9", NULL), 0);
  ck_assert_int_eq(smtpd_tls_session_new(&w->ts, w->s, w->ctx, mode), 0);
  ck_assert_ptr_eq(smtpd_tls_session_session(w->ts), w->s);
  w->log.ts = w->ts;
  ck_assert_int_eq(smtpd_session_start(w->s), 0);
  w->step = step;
  w->mode = mode;
}

static void wire_init(wire *w, smtpd_tls_mode mode, size_t step)
{
  wire_init2(w, mode, step, NULL, 1, 1);
}

static void wire_free(wire *w)
{
  if (w->tls)
    client_free(&w->c);
  smtpd_tls_session_del(w->ts);
  smtpd_session_del(w->s);
  smtpd_tls_ctx_del(w->ctx);
  smtpd_config_del(w->cfg);
  buf_free(&w->c2s);
  buf_free(&w->s2c);
  buf_free(&w->seen);
}

/* host_round - what a host's event loop does when the socket is ready:
 * feed what it read (keeping what was not taken) while the wrapper wants
 * input, write what the wrapper has, until nothing moves. Then the loop's
 * two promises hold: nothing more to write (want_write is 0), and input
 * is left over only while the wrapper does not want it. */
static void host_round(wire *w)
{
  size_t written = 0;
  int moved;
  do {
    moved = 0;
    while (buf_pending(&w->c2s) > 0 && smtpd_tls_session_want_read(w->ts)) {
      size_t n = buf_pending(&w->c2s);
      ptrdiff_t f;
      if (w->step && n > w->step)
        n = w->step;
      f = smtpd_tls_session_feed(w->ts, w->c2s.d + w->c2s.off, n);
      if (f < 0) { /* fatal: the host reads no more, writes what is left */
        ck_assert(smtpd_is_fatal((int)f));
        w->fatal = (int)f;
        w->c2s.off = w->c2s.len;
        break;
      }
      ck_assert_uint_le((size_t)f, n);
      if (f == 0)
        break;
      w->c2s.off += (size_t)f;
      moved = 1;
    }
    while (!w->max_write || written < w->max_write) {
      const uint8_t *p;
      size_t n = smtpd_tls_session_output(w->ts, &p);
      if (n == 0)
        break;
      ck_assert_ptr_nonnull(p);
      if (w->step && n > w->step)
        n = w->step;
      if (w->max_write && n > w->max_write - written)
        n = w->max_write - written;
      buf_add(&w->s2c, p, n);
      ck_assert_int_eq(smtpd_tls_session_consume(w->ts, n), 0);
      written += n;
      moved = 1;
    }
  } while (moved && (!w->max_write || written < w->max_write));
  if (!w->max_write || written < w->max_write) { /* not cut short */
    ck_assert(!smtpd_tls_session_want_write(w->ts));
    if (buf_pending(&w->c2s) > 0)
      ck_assert(!smtpd_tls_session_want_read(w->ts));
  }
}

/* cli_flush - the client's ciphertext onto the socket. */
static void cli_flush(wire *w)
{
  if (w->tls && buf_pending(&w->c.out) > 0) {
    buf_add(&w->c2s, w->c.out.d + w->c.out.off, buf_pending(&w->c.out));
    w->c.out.off = w->c.out.len;
  }
}

static void cli_send(wire *w, const char *text)
{
  if (w->tls) {
    client_sends(&w->c, text);
    cli_flush(w);
  } else {
    buf_add(&w->c2s, text, strlen(text));
  }
}

/* cli_take - what the socket brought the client so far, into its TLS
 * input. */
static void cli_take(wire *w)
{
  buf_add(&w->c.in, w->s2c.d + w->s2c.off, buf_pending(&w->s2c));
  w->s2c.off = w->s2c.len;
}

/* cli_recv - what the client can read now, as text in out (and appended
 * to seen). Under TLS returns the last client_recv code (GNUTLS_E_AGAIN;
 * 0 once close_notify came); 1 in plaintext. */
static ssize_t cli_recv(wire *w, char *out, size_t cap)
{
  buf got = {0};
  ssize_t rc = 1;
  if (w->tls) {
    cli_take(w);
    rc = client_recv(&w->c, &got);
  } else {
    buf_add(&got, w->s2c.d + w->s2c.off, buf_pending(&w->s2c));
    w->s2c.off = w->s2c.len;
  }
  ck_assert_uint_lt(got.len, cap);
  if (got.len)
    memcpy(out, got.d, got.len);
  out[got.len] = '\0';
  buf_add(&w->seen, got.d, got.len);
  buf_free(&got);
  return rc;
}

/* wsay - the client sends text (NULL: nothing), the host runs, the
 * client reads the answer into out. */
static ssize_t wsay(wire *w, const char *text, char *out, size_t cap)
{
  if (text)
    cli_send(w, text);
  host_round(w);
  return cli_recv(w, out, cap);
}

/* cli_tls_start - the client starts TLS (after the 220, or at once for
 * implicit TLS); the host only runs its loop. */
static void cli_tls_start(wire *w, const char *prio)
{
  int rounds, rc;
  client_init(&w->c, prio, &g_srv.pem.cert, NULL);
  w->tls = 1;
  for (rounds = 0; rounds < 200; rounds++) {
    if (!w->c.done) {
      rc = gnutls_handshake(w->c.s);
      if (rc == 0)
        w->c.done = 1;
      else
        ck_assert_int_eq(rc, GNUTLS_E_AGAIN);
    }
    cli_flush(w);
    host_round(w);
    cli_take(w);
    if (w->c.done && smtpd_tls_session_is_tls(w->ts) &&
        buf_pending(&w->c2s) == 0)
      break;
  }
  ck_assert(w->c.done);
  ck_assert(smtpd_tls_session_is_tls(w->ts));
  ck_assert_ptr_nonnull(smtpd_session_tls(w->s));
  ck_assert_str_eq(smtpd_session_tls(w->s)->protocol,
                   strcmp(prio, PRIO_12) == 0 ? "TLSv1.2" : "TLSv1.3");
}

/* wire_tls_up - TLS as the wrapper's mode has it: greeting, EHLO and
 * STARTTLS in plaintext then the handshake, or the handshake then the
 * greeting. The client then needs to EHLO. */
static void wire_tls_up(wire *w, const char *prio)
{
  char out[4096];
  if (w->mode == SMTPD_TLS_STARTTLS) {
    wsay(w, NULL, out, sizeof out);
    wsay(w, "EHLO client.example.org\r\n", out, sizeof out);
    wsay(w, "STARTTLS\r\n", out, sizeof out);
    ck_assert_str_eq(out, REPLY_220);
    cli_tls_start(w, prio);
  } else {
    cli_tls_start(w, prio);
    wsay(w, NULL, out, sizeof out);
  }
  ck_assert_int_eq(strncmp(out, "220 ", 4), 0);
}

/* assert_over - the connection is over by the one rule, and stays so */
static void assert_over(wire *w)
{
  const uint8_t *p;
  ck_assert(smtpd_tls_session_is_done(w->ts));
  ck_assert(!smtpd_tls_session_want_read(w->ts));
  ck_assert(!smtpd_tls_session_want_write(w->ts));
  ck_assert_uint_eq(smtpd_tls_session_output(w->ts, &p), 0);
  ck_assert(smtpd_tls_session_is_done(w->ts));
}

/* wire_mail_and_quit - inside TLS, after EHLO: a message, then QUIT:
 * 221, close_notify, done. */
static void wire_mail_and_quit(wire *w)
{
  char out[4096];
  int complete = w->log.complete;
  ck_assert_int_eq(wsay(w,
                        "MAIL FROM:<a@example.org>\r\n"
                        "RCPT TO:<b@example.org>\r\nDATA\r\n",
                        out, sizeof out),
                   GNUTLS_E_AGAIN);
  ck_assert_str_eq(out, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                        "354 End data with <CR><LF>.<CR><LF>\r\n");
  wsay(w, "Subject: w\r\n\r\nwrapped\r\n.\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250 2.0.0 Ok", 12), 0);
  ck_assert_int_eq(w->log.complete, complete + 1);
  ck_assert_ptr_nonnull(strstr(w->log.received, "with ESMTPS"));
  ck_assert(!smtpd_tls_session_is_done(w->ts));
  /* QUIT: the 221, then close_notify; done */
  ck_assert_int_eq(wsay(w, "QUIT\r\n", out, sizeof out), 0);
  ck_assert_str_eq(out, "221 2.0.0 Bye\r\n");
  ck_assert(smtpd_session_is_done(w->s));
  assert_over(w);
  ck_assert_str_eq(smtpd_tls_session_error(w->ts), "");
}

typedef void (*wscenario)(wire *w, const char *prio);

/* across_steps - run scenario f with the host feeding and writing all at
 * once, one octet per call and seven per call: each run passes the
 * scenario's own checks and the client sees the same text each time. */
static void across_steps(wscenario f, smtpd_tls_mode mode, const char *prio)
{
  static const size_t steps[] = {0, 1, 7};
  char *first = NULL;
  size_t i;
  for (i = 0; i < sizeof steps / sizeof *steps; i++) {
    wire w;
    char *seen;
    wire_init(&w, mode, steps[i]);
    f(&w, prio);
    seen = strndup(w.seen.len ? (const char *)w.seen.d : "", w.seen.len);
    ck_assert_ptr_nonnull(seen);
    if (!first)
      first = seen;
    else {
      ck_assert_str_eq(seen, first);
      free(seen);
    }
    wire_free(&w);
  }
  free(first);
}

/* STARTTLS with commands pipelined behind it: the session discards them,
 * the wrapper switches once the 220 is written, the client handshakes,
 * the session is fresh, a message goes through, QUIT ends it. */
static void sc_starttls_injection(wire *w, const char *prio)
{
  static const char inject[] = "RSET\r\nMAIL FROM:<evil@example.org>\r\n"
                               "RCPT TO:<victim@example.org>\r\n";
  char out[4096];
  ck_assert(!smtpd_tls_session_is_done(w->ts));
  wsay(w, NULL, out, sizeof out);
  ck_assert_str_eq(out, "220 " SERVER_NAME " ESMTP\r\n");
  wsay(w, "EHLO client.example.org\r\n", out, sizeof out);
  ck_assert(offers_starttls(out));
  cli_send(w, "STARTTLS\r\n");
  cli_send(w, inject);
  wsay(w, NULL, out, sizeof out);
  ck_assert_str_eq(out, REPLY_220);
  ck_assert_int_eq(w->log.prepare_failed, 0);
  ck_assert_uint_eq(w->log.discarded, strlen(inject));
  ck_assert_int_eq(w->log.mail + w->log.rcpt, 0);
  /* switched, waiting for the ClientHello */
  ck_assert(smtpd_session_is_tls_wait(w->s));
  ck_assert(!smtpd_tls_session_is_tls(w->ts));
  ck_assert(smtpd_tls_session_want_read(w->ts));
  ck_assert(!smtpd_tls_session_want_write(w->ts));
  ck_assert(!smtpd_tls_session_is_done(w->ts));
  cli_tls_start(w, prio);
  ck_assert(!smtpd_session_is_tls_wait(w->s));
  /* nothing is said until the client speaks; EHLO is needed again */
  wsay(w, NULL, out, sizeof out);
  ck_assert_str_eq(out, "");
  ck_assert_ptr_null(smtpd_session_helo(w->s));
  wsay(w, "EHLO inside.example.org\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250-" SERVER_NAME, 4 + strlen(SERVER_NAME)),
                   0);
  ck_assert(!offers_starttls(out));
  ck_assert_str_eq(w->log.helo_name, "inside.example.org");
  wsay(w, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, "554 5.5.1 Error: TLS already active\r\n");
  wire_mail_and_quit(w);
  ck_assert_str_eq(w->log.sender, "a@example.org");
}

START_TEST(wrapped_starttls_injection)
{
  across_steps(sc_starttls_injection, SMTPD_TLS_STARTTLS, PRIO_13);
  across_steps(sc_starttls_injection, SMTPD_TLS_STARTTLS, PRIO_12);
}
END_TEST

/* STARTTLS deferred, with RSET pipelined behind it: feed takes only the
 * STARTTLS line, the host keeps RSET. The host prepares TLS and resumes;
 * its loop feeds what it kept (discarded: TLS-wait) and writes the 220,
 * and only then does the wire carry TLS. */
static void sc_deferred_starttls(wire *w, const char *prio)
{
  char out[4096];
  w->log.starttls_verdict[0] = SMTPD_DEFER;
  wsay(w, NULL, out, sizeof out);
  wsay(w, "EHLO client.example.org\r\n", out, sizeof out);
  wsay(w, "STARTTLS\r\nRSET\r\n", out, sizeof out);
  ck_assert_str_eq(out, "");
  ck_assert(smtpd_session_is_paused(w->s));
  ck_assert_uint_eq(buf_pending(&w->c2s), 6); /* the host kept RSET */
  ck_assert(!smtpd_tls_session_want_read(w->ts));
  ck_assert(!smtpd_tls_session_want_write(w->ts));
  ck_assert(!smtpd_tls_session_is_done(w->ts));
  ck_assert_uint_eq(smtpd_tls_session_timeout(w->ts, NULL), 0);
  /* the host decides: TLS can be done */
  ck_assert_int_eq(smtpd_tls_session_prepare(w->ts), 0);
  ck_assert_int_eq(smtpd_session_resume(w->s, SMTPD_ACCEPT), 0);
  wsay(w, NULL, out, sizeof out);
  ck_assert_str_eq(out, REPLY_220);
  ck_assert_uint_eq(w->log.discarded, 6);
  ck_assert_uint_eq(buf_pending(&w->c2s), 0);
  cli_tls_start(w, prio);
  wsay(w, "EHLO inside.example.org\r\n", out, sizeof out);
  ck_assert(!offers_starttls(out));
  wire_mail_and_quit(w);
}

START_TEST(wrapped_deferred_starttls)
{
  across_steps(sc_deferred_starttls, SMTPD_TLS_STARTTLS, PRIO_13);
}
END_TEST

/* Implicit TLS: nothing before the handshake, the greeting encrypted. */
static void sc_implicit(wire *w, const char *prio)
{
  char out[4096];
  host_round(w);
  ck_assert_uint_eq(buf_pending(&w->s2c), 0);
  ck_assert(smtpd_tls_session_want_read(w->ts));
  ck_assert(!smtpd_tls_session_want_write(w->ts));
  ck_assert(!smtpd_tls_session_is_done(w->ts));
  ck_assert(!smtpd_tls_session_is_tls(w->ts));
  cli_tls_start(w, prio);
  ck_assert_int_eq(wsay(w, NULL, out, sizeof out), GNUTLS_E_AGAIN);
  ck_assert_str_eq(out, "220 " SERVER_NAME " ESMTP\r\n");
  wsay(w, "EHLO c.example.org\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250-", 4), 0);
  ck_assert(!offers_starttls(out));
  wire_mail_and_quit(w);
  ck_assert_int_eq(w->log.starttls, 0);
}

START_TEST(wrapped_implicit)
{
  across_steps(sc_implicit, SMTPD_TLS_IMPLICIT, PRIO_13);
  across_steps(sc_implicit, SMTPD_TLS_IMPLICIT, PRIO_12);
}
END_TEST

/* A paused session inside TLS: RCPT deferred with QUIT in the same
 * record, and the client closes its side. The wrapper neither reads nor
 * writes, sends no close_notify, is not done; resumed, the decrypted
 * QUIT it kept is answered, close_notify follows, and it is done. */
static void sc_paused(wire *w, const char *prio)
{
  char out[4096];
  smtpd_timeout kind;
  wire_tls_up(w, prio);
  wsay(w, "EHLO c.example.org\r\n", out, sizeof out);
  wsay(w, "MAIL FROM:<a@example.org>\r\n", out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.0 Ok\r\n");
  w->log.rcpt_defer = 1;
  ck_assert_int_eq(wsay(w, "RCPT TO:<r@example.org>\r\nQUIT\r\n", out,
                        sizeof out),
                   GNUTLS_E_AGAIN);
  ck_assert_str_eq(out, "");
  ck_assert(smtpd_session_is_paused(w->s));
  /* the client has said all it will */
  ck_assert_int_eq(smtpd_tls_session_eof(w->ts), 0);
  host_round(w);
  ck_assert_uint_eq(buf_pending(&w->s2c), 0); /* no close_notify */
  ck_assert(!smtpd_tls_session_want_read(w->ts));
  ck_assert(!smtpd_tls_session_want_write(w->ts));
  ck_assert(!smtpd_tls_session_is_done(w->ts));
  ck_assert(!smtpd_session_is_closing(w->s));
  ck_assert_uint_eq(smtpd_tls_session_timeout(w->ts, &kind), 0);
  ck_assert_int_eq(kind, SMTPD_TIMEOUT_NONE);
  /* a timer firing now changes nothing: the host is the slow side */
  ck_assert_int_eq(smtpd_tls_session_timeout_expired(w->ts), 0);
  ck_assert(!smtpd_tls_session_is_done(w->ts));
  ck_assert_int_eq(w->log.rcpt, 1);

  ck_assert_int_eq(smtpd_session_resume(w->s, SMTPD_ACCEPT), 0);
  ck_assert(!smtpd_tls_session_is_done(w->ts));
  ck_assert(smtpd_tls_session_want_write(w->ts));
  ck_assert_int_eq(wsay(w, NULL, out, sizeof out), 0); /* close_notify */
  ck_assert_str_eq(out, "250 2.1.5 Ok\r\n221 2.0.0 Bye\r\n");
  assert_over(w);
}

START_TEST(wrapped_paused)
{
  across_steps(sc_paused, SMTPD_TLS_IMPLICIT, PRIO_12);
  across_steps(sc_paused, SMTPD_TLS_STARTTLS, PRIO_13);
}
END_TEST

/* done only after close_notify is out: the host writes the last
 * ciphertext octet by octet, calling output() between writes. */
static void done_after_close_notify(const char *prio)
{
  wire w;
  char out[4096];
  const uint8_t *p;
  size_t n, i;
  buf got = {0};

  wire_init(&w, SMTPD_TLS_IMPLICIT, 0);
  cli_tls_start(&w, prio);
  wsay(&w, NULL, out, sizeof out);
  wsay(&w, "EHLO c.example.org\r\n", out, sizeof out);
  cli_send(&w, "QUIT\r\n");
  ck_assert_int_eq(smtpd_tls_session_feed(w.ts, w.c2s.d + w.c2s.off,
                                          buf_pending(&w.c2s)),
                   (ptrdiff_t)buf_pending(&w.c2s));
  w.c2s.off = w.c2s.len;
  /* the session is done (its 221 was taken and encrypted), the
   * connection is not: the 221 and close_notify are still to write */
  ck_assert(smtpd_session_is_done(w.s));
  ck_assert(!smtpd_tls_session_is_done(w.ts));
  ck_assert(smtpd_tls_session_want_write(w.ts));
  ck_assert(!smtpd_tls_session_want_read(w.ts));
  n = smtpd_tls_session_output(w.ts, &p);
  ck_assert_uint_gt(n, 15);
  for (i = 0; i < n; i++) {
    ck_assert(!smtpd_tls_session_is_done(w.ts));
    ck_assert_uint_eq(smtpd_tls_session_output(w.ts, &p), n - i);
    buf_add(&w.s2c, p, 1);
    ck_assert_int_eq(smtpd_tls_session_consume(w.ts, 1), 0);
    if (i + 2 == n) {
      /* all but the last octet: the client has the 221, not the end */
      cli_take(&w);
      ck_assert_int_eq(client_recv(&w.c, &got), GNUTLS_E_AGAIN);
      ck_assert_uint_eq(got.len, 15);
    }
  }
  ck_assert(smtpd_tls_session_is_done(w.ts));
  cli_take(&w);
  ck_assert_int_eq(client_recv(&w.c, &got), 0);
  ck_assert_uint_eq(got.len, 15);
  ck_assert_int_eq(memcmp(got.d, "221 2.0.0 Bye\r\n", 15), 0);
  assert_over(&w);
  buf_free(&got);
  wire_free(&w);
}

START_TEST(wrapped_done_after_close_notify)
{
  done_after_close_notify(PRIO_13);
  done_after_close_notify(PRIO_12);
}
END_TEST

/* The handshake fails on a record that is not TLS (a client that goes on
 * in plaintext after the 220): the wrapper takes the bytes, writes an
 * alert, and is done once the alert is out. The session never sees
 * them. */
static void sc_bad_record(wire *w, const char *prio)
{
  char out[4096];
  ptrdiff_t f;
  (void)prio;
  wsay(w, NULL, out, sizeof out);
  wsay(w, "EHLO client.example.org\r\n", out, sizeof out);
  wsay(w, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, REPLY_220);
  cli_send(w, "EHLO again.example.org\r\nMAIL FROM:<x@example.org>\r\n");
  host_round(w);
  /* the bytes of the failing feed were taken; later ones are not read */
  ck_assert(!smtpd_tls_session_want_read(w->ts));
  /* an alert record went out */
  ck_assert_uint_ge(buf_pending(&w->s2c), 7);
  ck_assert_uint_eq(w->s2c.d[w->s2c.off], 21);
  w->s2c.off = w->s2c.len;
  ck_assert_int_eq(strncmp(smtpd_tls_session_error(w->ts),
                           "TLS handshake failed: ", 22),
                   0);
  ck_assert_int_eq(w->log.helo, 1);
  ck_assert_int_eq(w->log.mail, 0);
  ck_assert_ptr_null(smtpd_session_tls(w->s));
  ck_assert(!smtpd_session_is_done(w->s)); /* the session never ended */
  assert_over(w);
  /* what comes later is taken and dropped */
  f = smtpd_tls_session_feed(w->ts, "QUIT\r\n", 6);
  ck_assert_int_eq(f, 6);
  ck_assert_int_eq(w->log.helo, 1);
  assert_over(w);
}

START_TEST(wrapped_bad_record)
{
  across_steps(sc_bad_record, SMTPD_TLS_STARTTLS, PRIO_13);
}
END_TEST

/* The client sends a fatal alert during the handshake. TLS 1.2: it read
 * the server's flight and gives up: TLS failed, no alert goes back, the
 * wrapper is done at once. TLS 1.3: the alert comes in the clear where
 * the server expects encrypted records: the server's own alert goes
 * back, then it is done. */
static void sc_client_alert(wire *w, const char *prio)
{
  int tls13 = strcmp(prio, PRIO_13) == 0;
  client_init(&w->c, prio, &g_srv.pem.cert, NULL);
  w->tls = 1;
  ck_assert_int_eq(gnutls_handshake(w->c.s), GNUTLS_E_AGAIN);
  cli_flush(w);
  host_round(w);
  ck_assert_uint_gt(buf_pending(&w->s2c), 0); /* the server's flight */
  cli_take(w);
  ck_assert(!smtpd_tls_session_is_done(w->ts));
  ck_assert_int_eq(gnutls_alert_send(w->c.s, GNUTLS_AL_FATAL,
                                     GNUTLS_A_USER_CANCELED),
                   0);
  cli_flush(w);
  /* before the host writes anything: done unless an alert waits */
  while (buf_pending(&w->c2s) > 0 && smtpd_tls_session_want_read(w->ts)) {
    ptrdiff_t f = smtpd_tls_session_feed(w->ts, w->c2s.d + w->c2s.off,
                                         w->step ? 1 : buf_pending(&w->c2s));
    ck_assert_int_gt(f, 0);
    w->c2s.off += (size_t)f;
  }
  ck_assert_int_eq(smtpd_tls_session_is_done(w->ts), !tls13);
  host_round(w);
  if (tls13) {
    ck_assert_uint_gt(buf_pending(&w->s2c), 0);
    w->s2c.off = w->s2c.len;
    ck_assert_int_eq(strncmp(smtpd_tls_session_error(w->ts),
                             "TLS handshake failed: ", 22),
                     0);
  } else {
    ck_assert_uint_eq(buf_pending(&w->s2c), 0);
    ck_assert_str_eq(smtpd_tls_session_error(w->ts),
                     "TLS handshake failed: received fatal alert: "
                     "user_canceled (User canceled)");
  }
  ck_assert(!smtpd_tls_session_is_tls(w->ts));
  assert_over(w);
}

START_TEST(wrapped_client_alert)
{
  across_steps(sc_client_alert, SMTPD_TLS_IMPLICIT, PRIO_12);
  across_steps(sc_client_alert, SMTPD_TLS_IMPLICIT, PRIO_13);
}
END_TEST

/* A tampered record after the handshake: bad_record_mac goes to the
 * client, the command never reaches the session, done after the alert. */
static void sc_tampered(wire *w, const char *prio)
{
  buf got = {0};
  int helos;
  wire_tls_up(w, prio);
  helos = w->log.helo;
  client_sends(&w->c, "EHLO c.example.org\r\n");
  w->c.out.d[w->c.out.len - 3] ^= 0x40;
  cli_flush(w);
  host_round(w);
  ck_assert_int_eq(w->log.helo, helos);
  ck_assert_str_ne(smtpd_tls_session_error(w->ts), "");
  assert_over(w);
  cli_take(w);
  ck_assert_int_eq(client_recv(&w->c, &got), GNUTLS_E_FATAL_ALERT_RECEIVED);
  ck_assert_int_eq(gnutls_alert_get(w->c.s), GNUTLS_A_BAD_RECORD_MAC);
  ck_assert_uint_eq(got.len, 0);
  buf_free(&got);
}

START_TEST(wrapped_tampered)
{
  across_steps(sc_tampered, SMTPD_TLS_IMPLICIT, PRIO_13);
  across_steps(sc_tampered, SMTPD_TLS_STARTTLS, PRIO_12);
}
END_TEST

/* The client goes away: in the middle of the handshake (done at once,
 * reason "closed"), and inside TLS after a command without close_notify
 * (the command is still answered, then the truncation ends it). */
START_TEST(wrapped_eof)
{
  wire w;
  char out[4096];

  wire_init(&w, SMTPD_TLS_IMPLICIT, 0);
  client_init(&w.c, PRIO_13, &g_srv.pem.cert, NULL);
  w.tls = 1;
  ck_assert_int_eq(gnutls_handshake(w.c.s), GNUTLS_E_AGAIN);
  cli_flush(&w);
  host_round(&w);
  ck_assert_int_eq(smtpd_tls_session_eof(w.ts), 0);
  ck_assert_int_eq(smtpd_tls_session_feed(w.ts, "x", 1),
                   SMTPD_ERR_INVALID_STATE);
  ck_assert_ptr_nonnull(strstr(smtpd_tls_session_error(w.ts), "closed"));
  host_round(&w);
  assert_over(&w);
  wire_free(&w);

  wire_init(&w, SMTPD_TLS_IMPLICIT, 0);
  cli_tls_start(&w, PRIO_13);
  wsay(&w, NULL, out, sizeof out);
  cli_send(&w, "NOOP\r\n"); /* the whole record, then end of file */
  {
    ptrdiff_t f = smtpd_tls_session_feed(w.ts, w.c2s.d + w.c2s.off,
                                         buf_pending(&w.c2s));
    ck_assert_int_eq(f, (ptrdiff_t)buf_pending(&w.c2s));
    w.c2s.off = w.c2s.len;
  }
  ck_assert_int_eq(smtpd_tls_session_eof(w.ts), 0);
  ck_assert_int_eq(wsay(&w, NULL, out, sizeof out), GNUTLS_E_AGAIN);
  ck_assert_str_eq(out, "250 2.0.0 Ok\r\n");
  ck_assert_ptr_nonnull(strstr(smtpd_tls_session_error(w.ts),
                               "without close_notify"));
  assert_over(&w);
  wire_free(&w);
}
END_TEST

/* The client ends TLS with close_notify right after a command, without
 * QUIT: the command is answered, the wrapper answers with its own
 * close_notify, and is done once that is out. */
static void sc_peer_close(wire *w, const char *prio)
{
  char out[4096];
  wire_tls_up(w, prio);
  wsay(w, "EHLO c.example.org\r\n", out, sizeof out);
  client_sends(&w->c, "NOOP\r\n");
  ck_assert_int_eq(gnutls_bye(w->c.s, GNUTLS_SHUT_WR), 0);
  cli_flush(w);
  ck_assert_int_eq(wsay(w, NULL, out, sizeof out), 0); /* close_notify */
  ck_assert_str_eq(out, "250 2.0.0 Ok\r\n");
  ck_assert(!smtpd_session_is_closing(w->s));
  ck_assert_str_eq(smtpd_tls_session_error(w->ts),
                   "client closed the TLS session (close_notify)");
  assert_over(w);
  /* bytes after close_notify are taken and dropped */
  ck_assert_int_eq(smtpd_tls_session_feed(w->ts, "junk", 4), 4);
}

START_TEST(wrapped_peer_close)
{
  across_steps(sc_peer_close, SMTPD_TLS_IMPLICIT, PRIO_13);
  across_steps(sc_peer_close, SMTPD_TLS_STARTTLS, PRIO_12);
}
END_TEST

/* Backpressure: 40,000 pipelined RSETs and a QUIT in TLS, the socket
 * taking 4 KiB per round. The wrapper stops reading while replies wait,
 * delivers what it decrypted as the host writes, never stalls, and ends
 * with every reply and close_notify. */
static void backpressure(size_t step)
{
  enum { NRSET = 40000 }; /* more than every buffer on the way holds */
  wire w;
  char out[64];
  buf got = {0};
  char *blob;
  size_t i, nok = 0;
  int rounds, held = 0;
  const char *q;

  wire_init(&w, SMTPD_TLS_IMPLICIT, step);
  cli_tls_start(&w, PRIO_13);
  wsay(&w, NULL, out, sizeof out);
  blob = malloc(NRSET * 6 + 7);
  ck_assert_ptr_nonnull(blob);
  for (i = 0; i < NRSET; i++)
    memcpy(blob + 6 * i, "RSET\r\n", 6);
  memcpy(blob + 6 * NRSET, "QUIT\r\n", 7);
  client_send(&w.c, blob, 6 * NRSET + 6);
  free(blob);
  cli_flush(&w);
  w.max_write = 4096;
  for (rounds = 0; rounds < 100000 && !smtpd_tls_session_is_done(w.ts);
       rounds++) {
    host_round(&w);
    if (buf_pending(&w.c2s) > 0 && !smtpd_tls_session_want_read(w.ts))
      held = 1;
    cli_take(&w);
    (void)client_recv(&w.c, &got);
  }
  ck_assert(smtpd_tls_session_is_done(w.ts));
  ck_assert(held);
  ck_assert_int_eq(client_recv(&w.c, &got), 0); /* close_notify, last */
  for (q = (const char *)got.d;
       (size_t)(q - (const char *)got.d) + 14 <= got.len &&
       memcmp(q, "250 2.0.0 Ok\r\n", 14) == 0;
       q += 14)
    nok++;
  ck_assert_uint_eq(nok, NRSET);
  ck_assert_uint_eq(got.len, 14 * NRSET + 15);
  ck_assert_int_eq(memcmp(q, "221 2.0.0 Bye\r\n", 15), 0);
  buf_free(&got);
  wire_free(&w);
}

START_TEST(wrapped_backpressure)
{
  backpressure(0);
  backpressure(100); /* small feeds and writes (7 would take long here) */
}
END_TEST

/* STARTTLS whose TLS object cannot be made (the allocation fails): the
 * host's on_starttls answers TEMPFAIL, the client gets the exact 454,
 * plaintext goes on; the next STARTTLS works. Nothing leaks. */
START_TEST(wrapped_prepare_fails)
{
  counting k = {0, 0, -1};
  smtpd_mem mem = {&k, cm_malloc, cm_free, cm_calloc, cm_realloc};
  wire w;
  char out[4096];

  wire_init2(&w, SMTPD_TLS_STARTTLS, 0, &mem, 1, 1);
  wsay(&w, NULL, out, sizeof out);
  wsay(&w, "EHLO client.example.org\r\n", out, sizeof out);
  k.calls = 0;
  k.fail_at = 0; /* the next allocation through the context fails */
  wsay(&w, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, REPLY_454);
  ck_assert_int_eq(w.log.prepare_failed, 1);
  ck_assert(!smtpd_session_is_tls_wait(w.s));
  k.fail_at = -1;
  wsay(&w, "MAIL FROM:<plain@example.org>\r\n", out, sizeof out);
  ck_assert_str_eq(out, "250 2.1.0 Ok\r\n");
  wsay(&w, "RSET\r\n", out, sizeof out);
  wsay(&w, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, REPLY_220);
  cli_tls_start(&w, PRIO_13);
  wsay(&w, "EHLO inside.example.org\r\n", out, sizeof out);
  wire_mail_and_quit(&w);
  wire_free(&w);
  ck_assert_int_eq(k.live, 0);
}
END_TEST

/* Without a context: STARTTLS off, the wrapper is a plain session with
 * the same calls (and done at end of file); with STARTTLS on by mistake,
 * prepare fails (454), and a STARTTLS accepted without preparing ends
 * the connection after its 220. With a context and no prepare, the
 * object is made at the switch. */
START_TEST(wrapped_plain_and_lazy)
{
  wire w;
  char out[4096];
  size_t n;

  /* plaintext only: a message, QUIT, done after the last octet */
  wire_init2(&w, SMTPD_TLS_STARTTLS, 1, NULL, 0, 0);
  wsay(&w, NULL, out, sizeof out);
  ck_assert_str_eq(out, "220 " SERVER_NAME " ESMTP\r\n");
  wsay(&w, "EHLO c.example.org\r\n", out, sizeof out);
  ck_assert(!offers_starttls(out));
  wsay(&w, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, "502 5.5.1 Error: command not implemented\r\n");
  ck_assert_int_eq(smtpd_tls_session_prepare(w.ts), SMTPD_ERR_INVALID_STATE);
  wsay(&w,
       "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
       out, sizeof out);
  wsay(&w, "hi\r\n.\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250 2.0.0 Ok", 12), 0);
  ck_assert_ptr_nonnull(strstr(w.log.received, "with ESMTP"));
  ck_assert_ptr_null(strstr(w.log.received, "ESMTPS"));
  cli_send(&w, "QUIT\r\n");
  while (buf_pending(&w.c2s) > 0) {
    ck_assert_int_eq(smtpd_tls_session_feed(w.ts, w.c2s.d + w.c2s.off, 1), 1);
    w.c2s.off++;
  }
  n = smtpd_tls_session_output(w.ts, NULL);
  ck_assert_uint_eq(n, 15);
  ck_assert_int_eq(smtpd_tls_session_consume(w.ts, 14), 0);
  ck_assert(!smtpd_tls_session_is_done(w.ts));
  ck_assert_int_eq(smtpd_tls_session_consume(w.ts, 1), 0);
  assert_over(&w);
  ck_assert_int_eq(smtpd_tls_session_is_tls(w.ts), 0);
  wire_free(&w);

  /* plaintext, the client goes away: done once replies are out */
  wire_init2(&w, SMTPD_TLS_STARTTLS, 0, NULL, 0, 0);
  wsay(&w, NULL, out, sizeof out);
  cli_send(&w, "EHLO c.example.org\r\n");
  ck_assert_int_eq(smtpd_tls_session_feed(w.ts, w.c2s.d, w.c2s.len),
                   (ptrdiff_t)w.c2s.len);
  w.c2s.off = w.c2s.len;
  ck_assert_int_eq(smtpd_tls_session_eof(w.ts), 0);
  ck_assert(!smtpd_tls_session_is_done(w.ts)); /* the EHLO reply first */
  wsay(&w, NULL, out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250-", 4), 0);
  assert_over(&w);
  wire_free(&w);

  /* STARTTLS on without a context: prepare fails, 454 */
  wire_init2(&w, SMTPD_TLS_STARTTLS, 0, NULL, 0, 1);
  wsay(&w, NULL, out, sizeof out);
  wsay(&w, "EHLO c.example.org\r\n", out, sizeof out);
  wsay(&w, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, REPLY_454);
  /* ... and accepted without preparing: the 220 goes out, then the
   * connection cannot go on */
  w.log.no_prepare = 1;
  wsay(&w, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, REPLY_220);
  ck_assert_str_eq(smtpd_tls_session_error(w.ts),
                   "cannot set up TLS: no TLS context");
  assert_over(&w);
  ck_assert_int_eq(smtpd_tls_session_feed(w.ts, "\x16\x03\x01", 3), 3);
  wire_free(&w);

  /* with a context, accepted without preparing: made at the switch */
  wire_init(&w, SMTPD_TLS_STARTTLS, 0);
  w.log.no_prepare = 1;
  wsay(&w, NULL, out, sizeof out);
  wsay(&w, "EHLO c.example.org\r\n", out, sizeof out);
  wsay(&w, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, REPLY_220);
  cli_tls_start(&w, PRIO_12);
  wsay(&w, "EHLO inside.example.org\r\n", out, sizeof out);
  wire_mail_and_quit(&w);
  wire_free(&w);
}
END_TEST

/* A STARTTLS-capable wrapper on a plaintext connection holds one small
 * allocation from the context's allocator and nothing else until TLS is
 * prepared: no TLS connection, no buffers, whatever the traffic; the
 * connection prepare makes is freed when STARTTLS is refused after all,
 * and the error text composed at a failed switch is freed with the
 * wrapper. */
START_TEST(wrapped_plain_allocates_once)
{
  counting k = {0, 0, -1};
  smtpd_mem mem = {&k, cm_malloc, cm_free, cm_calloc, cm_realloc};
  smtpd_tls_session *t2;
  wire w;
  char out[4096];
  long base, calls;

  wire_init2(&w, SMTPD_TLS_STARTTLS, 0, &mem, 1, 1);
  smtpd_tls_session_del(w.ts); /* again, counted from a known base */
  base = k.live;
  calls = k.calls;
  ck_assert_int_eq(smtpd_tls_session_new(&t2, w.s, w.ctx, SMTPD_TLS_STARTTLS),
                   0);
  w.ts = w.log.ts = t2;
  ck_assert_int_eq(k.live, base + 1);
  ck_assert_int_eq(k.calls, calls + 1);
  wsay(&w, NULL, out, sizeof out);
  wsay(&w, "EHLO c.example.org\r\n", out, sizeof out);
  ck_assert(offers_starttls(out));
  wsay(&w,
       "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
       out, sizeof out);
  wsay(&w, "hi\r\n.\r\n", out, sizeof out);
  ck_assert_int_eq(strncmp(out, "250 2.0.0 Ok", 12), 0);
  ck_assert_uint_gt(smtpd_tls_session_timeout(w.ts, NULL), 0);
  ck_assert(smtpd_tls_session_want_read(w.ts));
  ck_assert(!smtpd_tls_session_want_write(w.ts));
  ck_assert(!smtpd_tls_session_is_done(w.ts));
  ck_assert_int_eq(k.live, base + 1);
  ck_assert_int_eq(k.calls, calls + 1);
  /* prepared, then the STARTTLS is refused: the connection goes again */
  ck_assert_int_eq(smtpd_tls_session_prepare(w.ts), 0);
  ck_assert_int_gt(k.live, base + 1);
  wsay(&w, "NOOP\r\n", out, sizeof out);
  ck_assert_int_eq(k.live, base + 1);
  wire_free(&w);
  ck_assert_int_eq(k.live, 0);

  /* STARTTLS on without a context: the composed reason is freed */
  wire_init2(&w, SMTPD_TLS_STARTTLS, 0, NULL, 0, 1);
  w.log.no_prepare = 1;
  wsay(&w, NULL, out, sizeof out);
  wsay(&w, "EHLO c.example.org\r\n", out, sizeof out);
  wsay(&w, "STARTTLS\r\n", out, sizeof out);
  ck_assert_str_eq(out, REPLY_220);
  ck_assert_str_eq(smtpd_tls_session_error(w.ts),
                   "cannot set up TLS: no TLS context");
  ck_assert(smtpd_tls_session_is_done(w.ts));
  wire_free(&w); /* the sanitizer runs check that nothing leaks */
}
END_TEST

/* Timers: the wrapper reports the session's timer; when it runs out the
 * client gets 421 4.4.2 (encrypted), and if the client does not read
 * that either, the next expiry gives up. Closed before the handshake:
 * done at once. */
START_TEST(wrapped_timeouts)
{
  wire w;
  char out[4096];
  smtpd_timeout kind;

  wire_init(&w, SMTPD_TLS_IMPLICIT, 0);
  ck_assert_int_eq(smtpd_config_set_timeout(w.cfg, SMTPD_TIMEOUT_COMMAND,
                                            1234),
                   0);
  cli_tls_start(&w, PRIO_13);
  wsay(&w, NULL, out, sizeof out);
  ck_assert_uint_eq(smtpd_tls_session_timeout(w.ts, &kind), 1234);
  ck_assert_int_eq(kind, SMTPD_TIMEOUT_COMMAND);
  ck_assert_int_eq(smtpd_tls_session_timeout_expired(w.ts), 0);
  /* the 421 waits encrypted: the client must still read it */
  ck_assert_uint_gt(smtpd_tls_session_output(w.ts, NULL), 0);
  ck_assert(smtpd_session_is_done(w.s));
  ck_assert(!smtpd_tls_session_is_done(w.ts));
  ck_assert_uint_eq(smtpd_tls_session_timeout(w.ts, &kind), 1234);
  ck_assert_int_eq(kind, SMTPD_TIMEOUT_COMMAND);
  /* it never does: the next expiry gives up */
  ck_assert_int_eq(smtpd_tls_session_timeout_expired(w.ts), 0);
  ck_assert(smtpd_tls_session_is_done(w.ts));
  ck_assert_str_eq(smtpd_tls_session_error(w.ts), "client did not read");
  ck_assert_uint_eq(smtpd_tls_session_output(w.ts, NULL), 0);
  wire_free(&w);

  /* the same, read: 421 then close_notify */
  wire_init(&w, SMTPD_TLS_IMPLICIT, 0);
  cli_tls_start(&w, PRIO_13);
  wsay(&w, NULL, out, sizeof out);
  ck_assert_int_eq(smtpd_tls_session_timeout_expired(w.ts), 0);
  ck_assert_int_eq(wsay(&w, NULL, out, sizeof out), 0);
  ck_assert_int_eq(strncmp(out, "421 4.4.2 " SERVER_NAME, 10 + strlen(SERVER_NAME)), 0);
  assert_over(&w);
  wire_free(&w);

  /* timed out before the handshake: nothing can be said */
  wire_init(&w, SMTPD_TLS_IMPLICIT, 0);
  ck_assert_uint_gt(smtpd_tls_session_timeout(w.ts, NULL), 0);
  ck_assert(!smtpd_tls_session_is_done(w.ts));
  ck_assert_int_eq(smtpd_tls_session_timeout_expired(w.ts), 0);
  host_round(&w);
  ck_assert_uint_eq(buf_pending(&w.s2c), 0);
  assert_over(&w);
  wire_free(&w);
}
END_TEST

/* Arguments and states refused; each allocation failing in turn during a
 * STARTTLS conversation ends it cleanly (454, or a connection that is
 * done), never hangs, never leaks. */
START_TEST(wrapped_api_and_allocation)
{
  counting k = {0, 0, -1};
  smtpd_mem mem = {&k, cm_malloc, cm_free, cm_calloc, cm_realloc};
  smtpd_config *cfg;
  smtpd_session *s;
  smtpd_tls_ctx *ctx, *nocert;
  smtpd_tls_session *ts = (smtpd_tls_session *)&k;
  long fail_at, base;
  int completed = 0;

  ck_assert_int_eq(smtpd_config_new(&cfg, NULL), 0);
  ck_assert_int_eq(smtpd_session_new(&s, cfg, NULL, NULL), 0);
  ck_assert_int_eq(smtpd_tls_ctx_new(&ctx, &mem), 0);
  ck_assert_int_eq(smtpd_tls_ctx_new(&nocert, NULL), 0);
  ck_assert_int_eq(smtpd_tls_ctx_set_cert_mem(ctx, g_srv.pem.cert.data,
                                              g_srv.pem.cert.size,
                                              g_srv.pem.key.data,
                                              g_srv.pem.key.size),
                   0);
  ck_assert_int_eq(smtpd_tls_session_new(NULL, s, ctx, SMTPD_TLS_STARTTLS),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_session_new(&ts, NULL, ctx, SMTPD_TLS_STARTTLS),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_session_new(&ts, s, NULL, SMTPD_TLS_IMPLICIT),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_session_new(&ts, s, ctx, (smtpd_tls_mode)7),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(
      smtpd_tls_session_new(&ts, s, nocert, SMTPD_TLS_STARTTLS),
      SMTPD_ERR_INVALID_STATE);
  base = k.live; /* the context */
  /* the wrapper, the TLS connection, its buffer: each failing leaves
   * *out and the session untouched (the greeting below is plaintext) */
  for (fail_at = 0; fail_at < 3; fail_at++) {
    k.calls = 0;
    k.fail_at = fail_at;
    ck_assert_int_eq(smtpd_tls_session_new(&ts, s, ctx, SMTPD_TLS_IMPLICIT),
                     SMTPD_ERR_NOMEM);
    ck_assert_ptr_eq(ts, (smtpd_tls_session *)&k);
    ck_assert_int_eq(k.live, base);
  }
  ck_assert_int_eq(smtpd_tls_session_new(&ts, s, ctx, SMTPD_TLS_STARTTLS),
                   0);
  k.fail_at = -1;
  ck_assert_ptr_ne(ts, (smtpd_tls_session *)&k);
  ck_assert_int_eq(smtpd_session_start(s), 0);
  /* implicit TLS needs a session not yet started */
  {
    smtpd_tls_session *t2 = NULL;
    ck_assert_int_eq(smtpd_tls_session_new(&t2, s, ctx, SMTPD_TLS_IMPLICIT),
                     SMTPD_ERR_INVALID_STATE);
    ck_assert_ptr_null(t2);
  }
  ck_assert_int_eq(smtpd_tls_session_feed(NULL, "x", 1),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_session_feed(ts, NULL, 1),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_session_consume(ts, 1000),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_session_consume(NULL, 0),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_uint_eq(smtpd_tls_session_output(NULL, NULL), 0);
  ck_assert(smtpd_tls_session_is_done(NULL));
  ck_assert(!smtpd_tls_session_want_read(NULL));
  ck_assert(!smtpd_tls_session_want_write(NULL));
  ck_assert_ptr_null(smtpd_tls_session_session(NULL));
  ck_assert_str_eq(smtpd_tls_session_error(NULL), "");
  ck_assert_int_eq(smtpd_tls_session_prepare(NULL),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_session_eof(NULL), SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_tls_session_timeout_expired(NULL),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_uint_eq(smtpd_tls_session_timeout(NULL, NULL), 0);
  /* prepared twice: one object; refused after all: freed */
  ck_assert_int_eq(smtpd_tls_session_prepare(ts), 0);
  ck_assert_int_eq(smtpd_tls_session_prepare(ts), 0);
  ck_assert_int_gt(k.live, base + 1);
  ck_assert_uint_gt(smtpd_tls_session_output(ts, NULL), 0); /* greeting */
  ck_assert_int_eq(k.live, base + 1); /* only the wrapper */
  smtpd_tls_session_del(ts);
  smtpd_tls_session_del(NULL);
  ck_assert_int_eq(k.live, base);
  smtpd_session_del(s);
  smtpd_config_del(cfg);
  smtpd_tls_ctx_del(nocert);

  /* each allocation of the conversation failing in turn */
  for (fail_at = 0; !completed && fail_at < 64; fail_at++) {
    wire w;
    char out[4096];
    int rounds, quit = 0;

    wire_init2(&w, SMTPD_TLS_STARTTLS, 0, &mem, 1, 1);
    k.calls = 0;
    k.fail_at = fail_at;
    wsay(&w, NULL, out, sizeof out);
    wsay(&w, "EHLO c.example.org\r\n", out, sizeof out);
    wsay(&w, "STARTTLS\r\n", out, sizeof out);
    if (strcmp(out, REPLY_454) == 0) {
      ck_assert_int_eq(w.log.prepare_failed, 1);
      wsay(&w, "QUIT\r\n", out, sizeof out);
      ck_assert_str_eq(out, "221 2.0.0 Bye\r\n");
    } else {
      ck_assert_str_eq(out, REPLY_220);
      client_init(&w.c, PRIO_13, &g_srv.pem.cert, NULL);
      w.tls = 1;
      for (rounds = 0; rounds < 100 && !smtpd_tls_session_is_done(w.ts);
           rounds++) {
        if (!w.c.done) {
          int rc = gnutls_handshake(w.c.s);
          if (rc == 0)
            w.c.done = 1;
          else if (rc != GNUTLS_E_AGAIN)
            break; /* the server's alert, or its silence */
        }
        cli_flush(&w);
        host_round(&w);
        cli_take(&w);
        if (w.c.done && smtpd_tls_session_is_tls(w.ts) && !quit) {
          buf got = {0};
          client_sends(&w.c, "QUIT\r\n");
          cli_flush(&w);
          host_round(&w);
          cli_take(&w);
          (void)client_recv(&w.c, &got);
          buf_free(&got);
          quit = 1;
        }
      }
      if (!smtpd_tls_session_is_done(w.ts)) {
        /* the client gave up: its socket closes */
        ck_assert_int_eq(smtpd_tls_session_eof(w.ts), 0);
        host_round(&w);
      }
    }
    ck_assert(smtpd_tls_session_is_done(w.ts));
    if (k.calls <= fail_at) {
      completed = 1; /* no allocation failed: the whole run worked */
      ck_assert_str_eq(smtpd_tls_session_error(w.ts), "");
    }
    k.fail_at = -1;
    wire_free(&w);
    ck_assert_int_eq(k.live, base);
  }
  ck_assert(completed);
  ck_assert_int_gt(fail_at, 3);
  smtpd_tls_ctx_del(ctx);
}
END_TEST

/* Paused with a complete command and a torn record behind it, then end
 * of file: once resumed, the kept command is answered (its reply is
 * encrypted before more input is decrypted) and only then does the
 * truncation end the connection. */
START_TEST(wrapped_paused_truncated)
{
  wire w;
  char out[4096];

  wire_init(&w, SMTPD_TLS_IMPLICIT, 0);
  wire_tls_up(&w, PRIO_13);
  wsay(&w, "EHLO c.example.org\r\n", out, sizeof out);
  wsay(&w, "MAIL FROM:<a@example.org>\r\n", out, sizeof out);
  w.log.rcpt_defer = 1;
  client_sends(&w.c, "RCPT TO:<r@example.org>\r\nNOOP\r\n");
  client_sends(&w.c, "RSET\r\n");
  w.c.out.len -= 3; /* the second record is torn */
  cli_flush(&w);
  host_round(&w);
  ck_assert(smtpd_session_is_paused(w.s));
  ck_assert_int_eq(smtpd_tls_session_eof(w.ts), 0);
  host_round(&w);
  ck_assert(!smtpd_tls_session_is_done(w.ts));
  ck_assert_str_eq(smtpd_tls_session_error(w.ts), "");
  ck_assert_int_eq(smtpd_session_resume(w.s, SMTPD_ACCEPT), 0);
  ck_assert_int_eq(wsay(&w, NULL, out, sizeof out), GNUTLS_E_AGAIN);
  ck_assert_str_eq(out, "250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n");
  ck_assert_ptr_nonnull(
      strstr(smtpd_tls_session_error(w.ts), "without close_notify"));
  assert_over(&w);
  wire_free(&w);
}
END_TEST

/* ---- main --------------------------------------------------------------------------- */

static Suite *tls_gnutls_suite(void)
{
  Suite *s = suite_create("tls_gnutls");
  TCase *tc;

  tc = tcase_create("ctx");
  tcase_add_test(tc, ctx_errors);
  tcase_add_test(tc, selfsigned_files);
  tcase_add_unchecked_fixture(tc, srv_setup, srv_teardown);
  suite_add_tcase(s, tc);

  tc = tcase_create("hs");
  tcase_add_test(tc, handshake_tls13);
  tcase_add_test(tc, handshake_tls12);
  tcase_add_test(tc, default_priority_refuses_tls11);
  tcase_add_test(tc, custom_priority);
  tcase_add_test(tc, chain_file);
  tcase_add_test(tc, fragment_tls13);
  tcase_add_test(tc, fragment_tls12);
  tcase_add_test(tc, tickets_tls13);
  tcase_add_test(tc, tickets_tls12);
  tcase_add_test(tc, output_bounded);
  tcase_add_test(tc, input_bounded);
  tcase_add_test(tc, close_notify_both_ways);
  tcase_add_test(tc, renegotiation_refused);
  tcase_add_unchecked_fixture(tc, srv_setup, srv_teardown);
  suite_add_tcase(s, tc);

  tc = tcase_create("bad");
  tcase_add_test(tc, eof_before_anything);
  tcase_add_test(tc, close_during_handshake);
  tcase_add_test(tc, client_alert_during_handshake);
  tcase_add_test(tc, garbage_client_hello);
  tcase_add_test(tc, plaintext_fed_as_ciphertext);
  tcase_add_test(tc, plaintext_after_handshake);
  tcase_add_test(tc, truncated_record);
  tcase_add_test(tc, eof_without_close_notify);
  tcase_add_test(tc, tampered_record);
  tcase_add_unchecked_fixture(tc, srv_setup, srv_teardown);
  suite_add_tcase(s, tc);

  tc = tcase_create("cert");
  tcase_add_unchecked_fixture(tc, certs_setup, certs_teardown);
  tcase_add_test(tc, client_cert_not_requested);
  tcase_add_test(tc, client_cert_optional_13);
  tcase_add_test(tc, client_cert_optional_12);
  tcase_add_test(tc, client_cert_required_13);
  tcase_add_test(tc, client_cert_required_12);
  tcase_add_unchecked_fixture(tc, srv_setup, srv_teardown);
  suite_add_tcase(s, tc);

  tc = tcase_create("mem");
  tcase_add_unchecked_fixture(tc, certs_setup, certs_teardown);
  tcase_add_test(tc, allocator_hook);
  tcase_add_unchecked_fixture(tc, srv_setup, srv_teardown);
  suite_add_tcase(s, tc);

  tc = tcase_create("session");
  tcase_add_test(tc, starttls_rset_injection);
  tcase_add_test(tc, starttls_ehlo_injection);
  tcase_add_test(tc, starttls_transaction_injection);
  tcase_add_test(tc, starttls_injection_split_feeds);
  tcase_add_test(tc, implicit_tls);
  tcase_add_test(tc, pump_peer_close);
  tcase_add_test(tc, pump_handshake_failure);
  tcase_add_test(tc, starttls_tempfail_then_accept);
  tcase_add_test(tc, starttls_deferred_resume);
  tcase_add_test(tc, tls_done_after_quit);
  tcase_add_test(tc, tls_done_waits_for_output);
  tcase_add_test(tc, tls_paused_not_done);
  tcase_add_unchecked_fixture(tc, srv_setup, srv_teardown);
  suite_add_tcase(s, tc);

  tc = tcase_create("wrapped");
  tcase_add_test(tc, wrapped_starttls_injection);
  tcase_add_test(tc, wrapped_deferred_starttls);
  tcase_add_test(tc, wrapped_implicit);
  tcase_add_test(tc, wrapped_paused);
  tcase_add_test(tc, wrapped_paused_truncated);
  tcase_add_test(tc, wrapped_done_after_close_notify);
  tcase_add_test(tc, wrapped_bad_record);
  tcase_add_test(tc, wrapped_client_alert);
  tcase_add_test(tc, wrapped_tampered);
  tcase_add_test(tc, wrapped_eof);
  tcase_add_test(tc, wrapped_peer_close);
  tcase_add_test(tc, wrapped_backpressure);
  tcase_add_test(tc, wrapped_prepare_fails);
  tcase_add_test(tc, wrapped_plain_and_lazy);
  tcase_add_test(tc, wrapped_plain_allocates_once);
  tcase_add_test(tc, wrapped_timeouts);
  tcase_add_test(tc, wrapped_api_and_allocation);
  tcase_add_unchecked_fixture(tc, srv_setup, srv_teardown);
  suite_add_tcase(s, tc);

  return s;
}

int main(void)
{
  SRunner *sr;
  int failed;

  sr = srunner_create(tls_gnutls_suite());
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
