/*
 * gnutls.c - the GnuTLS adapter: server-side TLS over memory buffers.
 *
 * GnuTLS never touches a socket here: its push function appends
 * ciphertext to the connection's output buffer and its pull function
 * reads from a bounded input buffer the host fills, answering EAGAIN when
 * it is empty. Nothing is surfaced as plaintext unless GnuTLS decrypted
 * and authenticated it after the handshake, so bytes fed before the
 * handshake (such as pipelined plaintext after STARTTLS) either make the
 * handshake fail or are never seen.
 *
 *   smtpd_tls_ctx_new / _del               credentials + settings
 *   smtpd_tls_ctx_set_cert_files / _mem    server certificate and key
 *   smtpd_tls_ctx_set_selfsigned           generated key + certificate
 *   smtpd_tls_ctx_set_priority             GnuTLS priority string
 *   smtpd_tls_ctx_set_client_verify        client certificate policy
 *   smtpd_tls_ctx_set_tickets              resumption tickets on/off
 *   smtpd_tls_ctx_error                    last setup failure
 *   smtpd_tls_generate_selfsigned          key + certificate PEM files
 *   smtpd_tls_conn_new / _del              one connection
 *   smtpd_tls_conn_feed / _eof             ciphertext in
 *   smtpd_tls_conn_handshake / _done       drive the handshake
 *   smtpd_tls_conn_read / _write           plaintext out / in
 *   smtpd_tls_conn_output / _consume       ciphertext out
 *   smtpd_tls_conn_want_read / _write      event loop hints
 *   smtpd_tls_conn_bye                     close_notify
 *   smtpd_tls_conn_error / _info           reason, parameters
 *   smtpd_tls_conn_pump                    connection <-> session
 *   smtpd_tls_session_*                    the TLS-wrapped session: one
 *                                          feed/output/consume/done loop
 *                                          for plaintext, STARTTLS and
 *                                          implicit TLS (the switch, the
 *                                          pump, the end-of-session rule)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "smtpd/tls_gnutls.h"

#define PLAIN_CAP 16384u                          /* one record's payload */
#define RECORD_MAX 16384u                         /* plaintext per record */
#define OUTPUT_HARD_MAX (SMTPD_TLS_OUTPUT_CAP + 262144u) /* push ceiling */
#define REASON_CAP 256u

struct smtpd_tls_ctx {
  smtpd_mem mem;
  gnutls_certificate_credentials_t cred;
  gnutls_priority_t prio;
  gnutls_datum_t ticket_key;
  int tickets;
  int have_cert;
  smtpd_tls_client_verify verify;
  char err[REASON_CAP];
};

struct smtpd_tls_conn {
  smtpd_tls_ctx *ctx;
  gnutls_session_t session;
  uint8_t *in;        /* SMTPD_TLS_INPUT_CAP octets */
  size_t in_off, in_len;
  uint8_t *out;       /* grows up to OUTPUT_HARD_MAX */
  size_t out_off, out_len, out_cap;
  uint8_t *plain;     /* pump: decrypted bytes the session did not take */
  size_t plain_off, plain_len;
  unsigned hs_done : 1, failed : 1, eof : 1, bye_sent : 1,
      peer_closed : 1, reported : 1;
  int cert_requested, cert_verified;
  char *subject, *issuer;
  char protocol[16];
  char cipher[96];
  int bits;
  char reason[REASON_CAP];
};

/* ---- allocation ---------------------------------------------------------- */

/* xstrdup_n - copy n octets of s into a NUL-terminated string from mem. */
static char *xstrdup_n(const smtpd_mem *mem, const char *s, size_t n)
{
  char *d = mem->malloc(n + 1, mem->ctx);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* ---- context --------------------------------------------------------------- */

/* ctx_fail - remember why a setup call failed; returns code. */
static int ctx_fail(smtpd_tls_ctx *ctx, int code, const char *what, int gerr)
{
  if (gerr)
    snprintf(ctx->err, sizeof ctx->err, "%s: %s", what, gnutls_strerror(gerr));
  else
    snprintf(ctx->err, sizeof ctx->err, "%s", what);
  return code;
}

/* gnutls_code - map a GnuTLS error from a setup call to an smtpd_error. */
static int gnutls_code(int gerr)
{
  switch (gerr) {
  case GNUTLS_E_MEMORY_ERROR:
    return SMTPD_ERR_NOMEM;
  case GNUTLS_E_FILE_ERROR:
    return SMTPD_ERR_IO;
  default:
    return SMTPD_ERR_TLS;
  }
}

int smtpd_tls_ctx_new(smtpd_tls_ctx **out, const smtpd_mem *mem)
{
  smtpd_tls_ctx *ctx;
  const char *errpos = NULL;
  int r;

  if (!out)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!mem)
    mem = smtpd_mem_default();
  if (!mem->malloc || !mem->free || !mem->calloc || !mem->realloc)
    return SMTPD_ERR_INVALID_ARGUMENT;
  ctx = mem->calloc(1, sizeof *ctx, mem->ctx);
  if (!ctx)
    return SMTPD_ERR_NOMEM;
  ctx->mem = *mem;
  ctx->tickets = 1;
  if (gnutls_certificate_allocate_credentials(&ctx->cred) < 0) {
    ctx->cred = NULL;
    smtpd_tls_ctx_del(ctx);
    return SMTPD_ERR_NOMEM;
  }
  /* RFC 7919 groups for DHE suites, chosen by the key's strength. */
  gnutls_certificate_set_known_dh_params(ctx->cred, GNUTLS_SEC_PARAM_MEDIUM);
  r = gnutls_priority_init(&ctx->prio, SMTPD_TLS_DEFAULT_PRIORITY, &errpos);
  if (r < 0) {
    ctx->prio = NULL;
    smtpd_tls_ctx_del(ctx);
    return r == GNUTLS_E_MEMORY_ERROR ? SMTPD_ERR_NOMEM : SMTPD_ERR_TLS;
  }
  if (gnutls_session_ticket_key_generate(&ctx->ticket_key) < 0) {
    ctx->ticket_key.data = NULL;
    smtpd_tls_ctx_del(ctx);
    return SMTPD_ERR_NOMEM;
  }
  *out = ctx;
  return SMTPD_OK;
}

void smtpd_tls_ctx_del(smtpd_tls_ctx *ctx)
{
  smtpd_mem mem;

  if (!ctx)
    return;
  mem = ctx->mem;
  if (ctx->cred)
    gnutls_certificate_free_credentials(ctx->cred);
  if (ctx->prio)
    gnutls_priority_deinit(ctx->prio);
  if (ctx->ticket_key.data) {
    gnutls_memset(ctx->ticket_key.data, 0, ctx->ticket_key.size);
    gnutls_free(ctx->ticket_key.data);
  }
  mem.free(ctx, mem.ctx);
}

int smtpd_tls_ctx_set_cert_files(smtpd_tls_ctx *ctx, const char *cert_pem,
                                 const char *key_pem)
{
  int r;

  if (!ctx || !cert_pem || !key_pem)
    return SMTPD_ERR_INVALID_ARGUMENT;
  r = gnutls_certificate_set_x509_key_file(ctx->cred, cert_pem, key_pem,
                                           GNUTLS_X509_FMT_PEM);
  if (r < 0)
    return ctx_fail(ctx, gnutls_code(r), "cannot load certificate/key", r);
  ctx->have_cert = 1;
  ctx->err[0] = '\0';
  return SMTPD_OK;
}

int smtpd_tls_ctx_set_cert_mem(smtpd_tls_ctx *ctx, const void *cert,
                               size_t certlen, const void *key, size_t keylen)
{
  gnutls_datum_t c, k;
  int r;

  if (!ctx || !cert || !key || certlen == 0 || keylen == 0 ||
      certlen > UINT32_MAX || keylen > UINT32_MAX)
    return SMTPD_ERR_INVALID_ARGUMENT;
  /* GnuTLS only reads the datums; it copies what it keeps. */
  c.data = (unsigned char *)(uintptr_t)cert;
  c.size = (unsigned)certlen;
  k.data = (unsigned char *)(uintptr_t)key;
  k.size = (unsigned)keylen;
  r = gnutls_certificate_set_x509_key_mem(ctx->cred, &c, &k,
                                          GNUTLS_X509_FMT_PEM);
  if (r < 0)
    return ctx_fail(ctx, gnutls_code(r), "cannot load certificate/key", r);
  ctx->have_cert = 1;
  ctx->err[0] = '\0';
  return SMTPD_OK;
}

int smtpd_tls_ctx_set_priority(smtpd_tls_ctx *ctx, const char *priority)
{
  gnutls_priority_t p;
  const char *errpos = NULL;
  int r;

  if (!ctx)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!priority)
    priority = SMTPD_TLS_DEFAULT_PRIORITY;
  r = gnutls_priority_init(&p, priority, &errpos);
  if (r < 0) {
    if (r == GNUTLS_E_MEMORY_ERROR)
      return ctx_fail(ctx, SMTPD_ERR_NOMEM, "priority string", r);
    if (errpos && errpos >= priority) {
      snprintf(ctx->err, sizeof ctx->err,
               "invalid priority string at offset %ld: \"%.40s\"",
               (long)(errpos - priority), errpos);
      return SMTPD_ERR_INVALID_ARGUMENT;
    }
    return ctx_fail(ctx, SMTPD_ERR_INVALID_ARGUMENT, "invalid priority string",
                    r);
  }
  gnutls_priority_deinit(ctx->prio);
  ctx->prio = p;
  ctx->err[0] = '\0';
  return SMTPD_OK;
}

/* verify_cb - credentials' verification hook, run by GnuTLS when a client
 * certificate arrives: under SMTPD_TLS_VERIFY_REQUIRED a certificate that
 * does not verify ends the handshake (GnuTLS then sends an alert). */
static int verify_cb(gnutls_session_t session)
{
  smtpd_tls_conn *c = gnutls_session_get_ptr(session);
  unsigned status = 0;
  int r;

  if (!c || c->ctx->verify != SMTPD_TLS_VERIFY_REQUIRED)
    return 0;
  r = gnutls_certificate_verify_peers2(session, &status);
  if (r < 0 || status != 0) {
    gnutls_datum_t txt = {NULL, 0};
    if (r >= 0 &&
        gnutls_certificate_verification_status_print(
            status, GNUTLS_CRT_X509, &txt, 0) >= 0 && txt.data) {
      snprintf(c->reason, sizeof c->reason,
               "client certificate rejected: %s", (const char *)txt.data);
      gnutls_free(txt.data);
    } else {
      snprintf(c->reason, sizeof c->reason,
               "client certificate rejected: %s",
               r < 0 ? gnutls_strerror(r) : "not trusted");
    }
    return -1;
  }
  return 0;
}

int smtpd_tls_ctx_set_client_verify(smtpd_tls_ctx *ctx, const char *cafile,
                                    smtpd_tls_client_verify mode)
{
  int r;

  if (!ctx)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (mode == SMTPD_TLS_VERIFY_NONE) {
    ctx->verify = mode;
    return SMTPD_OK;
  }
  if (!cafile || (mode != SMTPD_TLS_VERIFY_OPTIONAL &&
                  mode != SMTPD_TLS_VERIFY_REQUIRED))
    return SMTPD_ERR_INVALID_ARGUMENT;
  r = gnutls_certificate_set_x509_trust_file(ctx->cred, cafile,
                                             GNUTLS_X509_FMT_PEM);
  if (r < 0)
    return ctx_fail(ctx, gnutls_code(r), "cannot load client CA file", r);
  if (r == 0)
    return ctx_fail(ctx, SMTPD_ERR_INVALID_ARGUMENT,
                    "no certificate in client CA file", 0);
  gnutls_certificate_set_verify_function(ctx->cred, verify_cb);
  ctx->verify = mode;
  ctx->err[0] = '\0';
  return SMTPD_OK;
}

int smtpd_tls_ctx_set_tickets(smtpd_tls_ctx *ctx, int on)
{
  if (!ctx)
    return SMTPD_ERR_INVALID_ARGUMENT;
  ctx->tickets = on ? 1 : 0;
  return SMTPD_OK;
}

const char *smtpd_tls_ctx_error(const smtpd_tls_ctx *ctx)
{
  return ctx ? ctx->err : "";
}

/* ---- self-signed certificates ------------------------------------------------ */

/* hostname_ok - a plausible DNS name: letters, digits, '-', '.', '_'. */
static int hostname_ok(const char *h)
{
  size_t n = strlen(h), i;

  if (n == 0 || n > 253)
    return 0;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)h[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
      return 0;
  }
  return 1;
}

/* make_selfsigned - a fresh P-256 key and self-signed server certificate
 * for host, both PEM, allocated by GnuTLS (gnutls_free them). */
static int make_selfsigned(const char *host, gnutls_datum_t *cert,
                           gnutls_datum_t *key)
{
  gnutls_x509_privkey_t pk = NULL;
  gnutls_x509_crt_t crt = NULL;
  unsigned char serial[16];
  unsigned char keyid[64];
  size_t keyid_len = sizeof keyid;
  time_t now = time(NULL);
  int r;

  cert->data = key->data = NULL;
  if ((r = gnutls_x509_privkey_init(&pk)) < 0)
    goto done;
  r = gnutls_x509_privkey_generate(
      pk, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
  if (r < 0)
    goto done;
  if ((r = gnutls_x509_crt_init(&crt)) < 0)
    goto done;
  if ((r = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial)) < 0)
    goto done;
  serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x01); /* positive */
  if ((r = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
      (r = gnutls_x509_crt_set_serial(crt, serial, sizeof serial)) < 0 ||
      (r = gnutls_x509_crt_set_activation_time(crt, now - 3600)) < 0 ||
      (r = gnutls_x509_crt_set_expiration_time(crt, now + 365L * 86400L)) < 0 ||
      (r = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                         host, (unsigned)strlen(host))) < 0 ||
      (r = gnutls_x509_crt_set_subject_alt_name(
           crt, GNUTLS_SAN_DNSNAME, host, (unsigned)strlen(host),
           GNUTLS_FSAN_SET)) < 0 ||
      (r = gnutls_x509_crt_set_key(crt, pk)) < 0 ||
      (r = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
      (r = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) <
          0 ||
      (r = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER,
                                               0)) < 0)
    goto done;
  if (gnutls_x509_crt_get_key_id(crt, 0, keyid, &keyid_len) >= 0 &&
      (r = gnutls_x509_crt_set_subject_key_id(crt, keyid, keyid_len)) < 0)
    goto done;
  if ((r = gnutls_x509_crt_sign2(crt, crt, pk, GNUTLS_DIG_SHA256, 0)) < 0)
    goto done;
  if ((r = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, cert)) < 0)
    goto done;
  r = gnutls_x509_privkey_export2_pkcs8(pk, GNUTLS_X509_FMT_PEM, NULL,
                                        GNUTLS_PKCS_PLAIN, key);
done:
  if (r < 0) {
    gnutls_free(cert->data);
    if (key->data) {
      gnutls_memset(key->data, 0, key->size);
      gnutls_free(key->data);
    }
    cert->data = key->data = NULL;
  }
  if (crt)
    gnutls_x509_crt_deinit(crt);
  if (pk)
    gnutls_x509_privkey_deinit(pk);
  return r;
}

/* free_key_pem - wipe and free a generated private key. */
static void free_key_pem(gnutls_datum_t *key)
{
  if (key->data) {
    gnutls_memset(key->data, 0, key->size);
    gnutls_free(key->data);
    key->data = NULL;
  }
}

int smtpd_tls_ctx_set_selfsigned(smtpd_tls_ctx *ctx, const char *hostname)
{
  gnutls_datum_t cert, key;
  int r;

  if (!ctx)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!hostname)
    hostname = "localhost";
  if (!hostname_ok(hostname))
    return ctx_fail(ctx, SMTPD_ERR_INVALID_ARGUMENT, "invalid hostname", 0);
  r = make_selfsigned(hostname, &cert, &key);
  if (r < 0)
    return ctx_fail(ctx, gnutls_code(r), "cannot generate certificate", r);
  r = smtpd_tls_ctx_set_cert_mem(ctx, cert.data, cert.size, key.data,
                                 key.size);
  gnutls_free(cert.data);
  free_key_pem(&key);
  return r;
}

/* write_file - replace path with len octets of data, created with mode. */
static int write_file(const char *path, const void *data, size_t len,
                      mode_t mode)
{
  const unsigned char *p = data;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

  if (fd < 0)
    return SMTPD_ERR_IO;
  if (fchmod(fd, mode) < 0) {
    close(fd);
    return SMTPD_ERR_IO;
  }
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      close(fd);
      return SMTPD_ERR_IO;
    }
    p += w;
    len -= (size_t)w;
  }
  return close(fd) < 0 ? SMTPD_ERR_IO : SMTPD_OK;
}

int smtpd_tls_generate_selfsigned(const char *cert_path, const char *key_path,
                                  const char *hostname)
{
  gnutls_datum_t cert, key;
  int r;

  if (!cert_path || !key_path)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!hostname)
    hostname = "localhost";
  if (!hostname_ok(hostname))
    return SMTPD_ERR_INVALID_ARGUMENT;
  r = make_selfsigned(hostname, &cert, &key);
  if (r < 0)
    return gnutls_code(r);
  r = write_file(key_path, key.data, key.size, 0600);
  if (r == SMTPD_OK)
    r = write_file(cert_path, cert.data, cert.size, 0644);
  gnutls_free(cert.data);
  free_key_pem(&key);
  return r;
}

/* ---- memory transport ------------------------------------------------------- */

/* pull - GnuTLS wants ciphertext: hand out what was fed, EAGAIN when
 * nothing is buffered, 0 (end of stream) after smtpd_tls_conn_eof. */
static ssize_t pull(gnutls_transport_ptr_t ptr, void *buf, size_t size)
{
  smtpd_tls_conn *c = ptr;
  size_t n = c->in_len - c->in_off;

  if (n == 0) {
    if (c->eof)
      return 0;
    gnutls_transport_set_errno(c->session, EAGAIN);
    return -1;
  }
  if (n > size)
    n = size;
  memcpy(buf, c->in + c->in_off, n);
  c->in_off += n;
  if (c->in_off == c->in_len)
    c->in_off = c->in_len = 0;
  return (ssize_t)n;
}

/* pull_timeout - whether pull would return data (or end of stream) now;
 * the adapter never waits, so the timeout is ignored. */
static int pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms)
{
  smtpd_tls_conn *c = ptr;

  (void)ms;
  return (c->in_len > c->in_off || c->eof) ? 1 : 0;
}

/* push - GnuTLS produced ciphertext: append it to the output buffer.
 * Fails (ENOMEM) only past OUTPUT_HARD_MAX or when allocation fails;
 * smtpd_tls_conn_write keeps ordinary traffic under SMTPD_TLS_OUTPUT_CAP. */
static ssize_t push(gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
  smtpd_tls_conn *c = ptr;
  size_t pending;

  if (c->out_off > 0) {
    pending = c->out_len - c->out_off;
    memmove(c->out, c->out + c->out_off, pending);
    c->out_off = 0;
    c->out_len = pending;
  }
  if (len > OUTPUT_HARD_MAX - c->out_len) {
    gnutls_transport_set_errno(c->session, ENOMEM);
    return -1;
  }
  if (c->out_len + len > c->out_cap) {
    size_t ncap = c->out_cap ? c->out_cap : 4096u;
    uint8_t *n;
    while (ncap < c->out_len + len)
      ncap *= 2;
    if (ncap > OUTPUT_HARD_MAX)
      ncap = OUTPUT_HARD_MAX;
    n = c->ctx->mem.realloc(c->out, ncap, c->ctx->mem.ctx);
    if (!n) {
      gnutls_transport_set_errno(c->session, ENOMEM);
      return -1;
    }
    c->out = n;
    c->out_cap = ncap;
  }
  memcpy(c->out + c->out_len, data, len);
  c->out_len += len;
  return (ssize_t)len;
}

/* ---- connection ---------------------------------------------------------------- */

int smtpd_tls_conn_new(smtpd_tls_conn **out, smtpd_tls_ctx *ctx)
{
  smtpd_tls_conn *c;
  const smtpd_mem *mem;
  unsigned flags = GNUTLS_SERVER;

  if (!out || !ctx)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!ctx->have_cert)
    return SMTPD_ERR_INVALID_STATE;
  mem = &ctx->mem;
  c = mem->calloc(1, sizeof *c, mem->ctx);
  if (!c)
    return SMTPD_ERR_NOMEM;
  c->ctx = ctx;
  c->in = mem->malloc(SMTPD_TLS_INPUT_CAP, mem->ctx);
  if (!c->in)
    goto nomem;
  if (!ctx->tickets)
    flags |= GNUTLS_NO_TICKETS;
  if (gnutls_init(&c->session, flags) < 0) {
    c->session = NULL;
    goto nomem;
  }
  if (gnutls_priority_set(c->session, ctx->prio) < 0 ||
      gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, ctx->cred) <
          0)
    goto nomem;
  if (ctx->tickets &&
      gnutls_session_ticket_enable_server(c->session, &ctx->ticket_key) < 0)
    goto nomem;
  if (ctx->verify == SMTPD_TLS_VERIFY_REQUIRED)
    gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_REQUIRE);
  else if (ctx->verify == SMTPD_TLS_VERIFY_OPTIONAL)
    gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_REQUEST);
  /* The host owns timers; GnuTLS must not read the clock to give up. */
  gnutls_handshake_set_timeout(c->session, 0);
  gnutls_session_set_ptr(c->session, c);
  gnutls_transport_set_ptr(c->session, c);
  gnutls_transport_set_push_function(c->session, push);
  gnutls_transport_set_pull_function(c->session, pull);
  gnutls_transport_set_pull_timeout_function(c->session, pull_timeout);
  *out = c;
  return SMTPD_OK;
nomem:
  smtpd_tls_conn_del(c);
  return SMTPD_ERR_NOMEM;
}

void smtpd_tls_conn_del(smtpd_tls_conn *c)
{
  smtpd_mem mem;

  if (!c)
    return;
  mem = c->ctx->mem;
  if (c->session)
    gnutls_deinit(c->session);
  mem.free(c->in, mem.ctx);
  mem.free(c->out, mem.ctx);
  mem.free(c->plain, mem.ctx);
  mem.free(c->subject, mem.ctx);
  mem.free(c->issuer, mem.ctx);
  mem.free(c, mem.ctx);
}

/* alert_name - the RFC name of an alert ("user_canceled"), derived from
 * GnuTLS's symbol ("GNUTLS_A_USER_CANCELED"); "alert_N" when unknown. */
static void alert_name(gnutls_alert_description_t a, char *out, size_t cap)
{
  const char *sym = gnutls_alert_get_strname(a);
  size_t i;

  if (!sym) {
    snprintf(out, cap, "alert_%d", (int)a);
    return;
  }
  if (strncmp(sym, "GNUTLS_A_", 9) == 0)
    sym += 9;
  for (i = 0; sym[i] && i + 1 < cap; i++)
    out[i] = (char)(sym[i] >= 'A' && sym[i] <= 'Z' ? sym[i] - 'A' + 'a'
                                                   : sym[i]);
  out[i] = '\0';
}

/* conn_fail - mark the connection failed with a reason (the first reason
 * recorded wins) and queue the alert that fits gerr, if any. */
static int conn_fail(smtpd_tls_conn *c, const char *what, int gerr)
{
  int alert_received = gerr == GNUTLS_E_FATAL_ALERT_RECEIVED ||
                       gerr == GNUTLS_E_WARNING_ALERT_RECEIVED;

  if (!c->reason[0]) {
    if (alert_received) {
      gnutls_alert_description_t a = gnutls_alert_get(c->session);
      const char *ln = gnutls_alert_get_name(a);
      char sn[64];
      alert_name(a, sn, sizeof sn);
      snprintf(c->reason, sizeof c->reason, "%s: received %s alert: %s (%s)",
               what,
               gerr == GNUTLS_E_FATAL_ALERT_RECEIVED ? "fatal" : "warning", sn,
               ln ? ln : "unknown");
    } else if (c->eof && (gerr == GNUTLS_E_PREMATURE_TERMINATION ||
                          gerr == GNUTLS_E_UNEXPECTED_PACKET_LENGTH)) {
      snprintf(c->reason, sizeof c->reason,
               "%s: connection closed by the client%s", what,
               c->hs_done ? " without close_notify (truncated)" : "");
    } else {
      snprintf(c->reason, sizeof c->reason, "%s: %s", what,
               gnutls_strerror(gerr));
    }
  }
  if (!alert_received && !c->failed && !c->eof &&
      gerr != GNUTLS_E_PUSH_ERROR)
    (void)gnutls_alert_send_appropriate(c->session, gerr);
  c->failed = 1;
  return SMTPD_ERR_TLS;
}

ptrdiff_t smtpd_tls_conn_feed(smtpd_tls_conn *c, const void *cipher,
                              size_t len)
{
  size_t room;

  if (!c || (!cipher && len))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (c->failed)
    return SMTPD_ERR_TLS;
  if (c->eof)
    return SMTPD_ERR_INVALID_STATE;
  if (c->in_off > 0 && c->in_len + len > SMTPD_TLS_INPUT_CAP) {
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
  }
  room = SMTPD_TLS_INPUT_CAP - c->in_len;
  if (len > room)
    len = room;
  if (len > PTRDIFF_MAX)
    len = PTRDIFF_MAX;
  if (len)
    memcpy(c->in + c->in_len, cipher, len);
  c->in_len += len;
  return (ptrdiff_t)len;
}

int smtpd_tls_conn_eof(smtpd_tls_conn *c)
{
  if (!c)
    return SMTPD_ERR_INVALID_ARGUMENT;
  c->eof = 1;
  return SMTPD_OK;
}

/* set_tls_info - record protocol, cipher suite and bits after the
 * handshake, and the client certificate's verification and names. */
static int set_tls_info(smtpd_tls_conn *c)
{
  gnutls_protocol_t v = gnutls_protocol_get_version(c->session);
  const char *name = NULL;
  const gnutls_datum_t *peers;
  unsigned npeers = 0;

  switch (v) {
  case GNUTLS_TLS1_3: name = "TLSv1.3"; break;
  case GNUTLS_TLS1_2: name = "TLSv1.2"; break;
  case GNUTLS_TLS1_1: name = "TLSv1.1"; break;
  case GNUTLS_TLS1_0: name = "TLSv1"; break;
  default: name = gnutls_protocol_get_name(v); break;
  }
  snprintf(c->protocol, sizeof c->protocol, "%s", name ? name : "unknown");

#if GNUTLS_VERSION_NUMBER >= 0x030703
  name = gnutls_ciphersuite_get(c->session);
#else
  name = gnutls_cipher_suite_get_name(gnutls_kx_get(c->session),
                                      gnutls_cipher_get(c->session),
                                      gnutls_mac_get(c->session));
  if (!name)
    name = gnutls_cipher_get_name(gnutls_cipher_get(c->session));
#endif
  snprintf(c->cipher, sizeof c->cipher, "%s", name ? name : "unknown");
  c->bits = (int)gnutls_cipher_get_key_size(gnutls_cipher_get(c->session)) * 8;

  c->cert_requested = c->ctx->verify != SMTPD_TLS_VERIFY_NONE;
  c->cert_verified = 0;
  if (!c->cert_requested)
    return SMTPD_OK;
  peers = gnutls_certificate_get_peers(c->session, &npeers);
  if (peers && npeers > 0 &&
      gnutls_certificate_type_get(c->session) == GNUTLS_CRT_X509) {
    unsigned status = 0;
    if (gnutls_certificate_verify_peers2(c->session, &status) >= 0 &&
        status == 0) {
      gnutls_x509_crt_t crt;
      gnutls_datum_t dn = {NULL, 0}, idn = {NULL, 0};
      int r = SMTPD_OK;
      if (gnutls_x509_crt_init(&crt) < 0)
        return SMTPD_ERR_NOMEM;
      if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) >= 0 &&
          gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0 &&
          gnutls_x509_crt_get_issuer_dn3(crt, &idn, 0) >= 0) {
        c->subject = xstrdup_n(&c->ctx->mem, (const char *)dn.data, dn.size);
        c->issuer = xstrdup_n(&c->ctx->mem, (const char *)idn.data, idn.size);
        if (c->subject && c->issuer)
          c->cert_verified = 1;
        else
          r = SMTPD_ERR_NOMEM;
      }
      gnutls_free(dn.data);
      gnutls_free(idn.data);
      gnutls_x509_crt_deinit(crt);
      if (r < 0)
        return r;
    }
  }
  return SMTPD_OK;
}

int smtpd_tls_conn_handshake(smtpd_tls_conn *c)
{
  int r;

  if (!c)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (c->failed)
    return SMTPD_ERR_TLS;
  if (c->hs_done)
    return SMTPD_OK;
  if (c->bye_sent)
    return SMTPD_ERR_CLOSED;
  for (;;) {
    size_t before = c->in_len - c->in_off;
    r = gnutls_handshake(c->session);
    if (r == GNUTLS_E_SUCCESS)
      break;
    if (r == GNUTLS_E_AGAIN) {
      if (c->in_len - c->in_off > 0 && c->in_len - c->in_off < before)
        continue;
      return SMTPD_TLS_AGAIN;
    }
    if (r == GNUTLS_E_INTERRUPTED)
      continue;
    /* Any alert (even a warning), a malformed or non-TLS record, the
     * end of input: the handshake is over. */
    return conn_fail(c, "TLS handshake failed", r);
  }
  c->hs_done = 1;
  r = set_tls_info(c);
  if (r < 0) {
    c->failed = 1;
    snprintf(c->reason, sizeof c->reason, "out of memory");
    return r;
  }
  return SMTPD_OK;
}

int smtpd_tls_conn_handshake_done(const smtpd_tls_conn *c)
{
  return c && c->hs_done && !c->failed;
}

ptrdiff_t smtpd_tls_conn_read(smtpd_tls_conn *c, void *buf, size_t cap)
{
  ssize_t r;

  if (!c || (!buf && cap))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (c->failed)
    return SMTPD_ERR_TLS;
  if (!c->hs_done)
    return SMTPD_ERR_INVALID_STATE;
  if (c->peer_closed)
    return SMTPD_ERR_CLOSED;
  if (cap == 0)
    return 0;
  if (cap > PTRDIFF_MAX)
    cap = PTRDIFF_MAX;
  for (;;) {
    size_t before = c->in_len - c->in_off;
    r = gnutls_record_recv(c->session, buf, cap);
    if (r > 0)
      return (ptrdiff_t)r;
    if (r == 0) {
      c->peer_closed = 1;
      if (!c->reason[0])
        snprintf(c->reason, sizeof c->reason,
                 "client closed the TLS session (close_notify)");
      return SMTPD_ERR_CLOSED;
    }
    switch (r) {
    case GNUTLS_E_AGAIN:
      /* A post-handshake message (TLS 1.3 KeyUpdate, ...) was handled and
       * GnuTLS asks to be called again: do so while that made progress
       * and complete records may remain. */
      if (c->in_len - c->in_off > 0 && c->in_len - c->in_off < before)
        continue;
      return 0;
    case GNUTLS_E_INTERRUPTED:
    case GNUTLS_E_WARNING_ALERT_RECEIVED: /* e.g. user_canceled: go on */
      continue;
    case GNUTLS_E_REHANDSHAKE:
      /* Renegotiation is refused: a new handshake could change the
       * identity the session was reset for. */
      if (gnutls_alert_send(c->session, GNUTLS_AL_WARNING,
                            GNUTLS_A_NO_RENEGOTIATION) < 0)
        return conn_fail(c, "TLS alert failed", GNUTLS_E_PUSH_ERROR);
      continue;
    default:
      return conn_fail(c, "TLS read failed", (int)r);
    }
  }
}

/* out_pending - ciphertext octets waiting to be written. */
static size_t out_pending(const smtpd_tls_conn *c)
{
  return c->out_len - c->out_off;
}

ptrdiff_t smtpd_tls_conn_write(smtpd_tls_conn *c, const void *plain,
                               size_t len)
{
  const uint8_t *p = plain;
  size_t done = 0;

  if (!c || (!plain && len))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (c->failed)
    return SMTPD_ERR_TLS;
  if (!c->hs_done)
    return SMTPD_ERR_INVALID_STATE;
  if (c->bye_sent)
    return SMTPD_ERR_CLOSED;
  if (len > PTRDIFF_MAX)
    len = PTRDIFF_MAX;
  while (done < len && out_pending(c) < SMTPD_TLS_OUTPUT_CAP) {
    size_t chunk = len - done;
    ssize_t r;
    if (chunk > RECORD_MAX)
      chunk = RECORD_MAX;
    r = gnutls_record_send(c->session, p + done, chunk);
    if (r > 0) {
      done += (size_t)r;
      continue;
    }
    if (r == GNUTLS_E_INTERRUPTED)
      continue;
    /* push never reports EAGAIN, so anything else is fatal. */
    return conn_fail(c, "TLS write failed", r == 0 ? GNUTLS_E_INTERNAL_ERROR
                                                   : (int)r);
  }
  return (ptrdiff_t)done;
}

size_t smtpd_tls_conn_output(smtpd_tls_conn *c, const uint8_t **data)
{
  size_t n;

  if (!c)
    return 0;
  n = out_pending(c);
  if (data)
    *data = n ? c->out + c->out_off : NULL;
  return n;
}

int smtpd_tls_conn_consume(smtpd_tls_conn *c, size_t n)
{
  if (!c || n > out_pending(c))
    return SMTPD_ERR_INVALID_ARGUMENT;
  c->out_off += n;
  if (c->out_off == c->out_len)
    c->out_off = c->out_len = 0;
  return SMTPD_OK;
}

int smtpd_tls_conn_want_read(const smtpd_tls_conn *c)
{
  return c && !c->failed && !c->eof && !c->peer_closed && !c->bye_sent &&
         c->in_len - c->in_off < SMTPD_TLS_INPUT_CAP;
}

int smtpd_tls_conn_want_write(const smtpd_tls_conn *c)
{
  return c && out_pending(c) > 0;
}

int smtpd_tls_conn_bye(smtpd_tls_conn *c)
{
  int r;

  if (!c)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (c->bye_sent)
    return SMTPD_OK;
  c->bye_sent = 1;
  if (c->failed || !c->hs_done)
    return SMTPD_OK;
  do
    r = gnutls_bye(c->session, GNUTLS_SHUT_WR);
  while (r == GNUTLS_E_INTERRUPTED);
  if (r < 0)
    return conn_fail(c, "TLS close failed", r);
  return SMTPD_OK;
}

const char *smtpd_tls_conn_error(const smtpd_tls_conn *c)
{
  return c ? c->reason : "";
}

int smtpd_tls_conn_info(smtpd_tls_conn *c, smtpd_tls_info *out)
{
  if (!c || !out)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!c->hs_done || c->failed)
    return SMTPD_ERR_INVALID_STATE;
  memset(out, 0, sizeof *out);
  out->protocol = c->protocol;
  out->cipher = c->cipher;
  out->cipher_bits = c->bits;
  out->alg_bits = c->bits;
  out->client_cert_requested = c->cert_requested;
  out->client_cert_verified = c->cert_verified;
  out->peer_subject = c->cert_verified ? c->subject : NULL;
  out->peer_issuer = c->cert_verified ? c->issuer : NULL;
  return SMTPD_OK;
}

/* ---- pump ------------------------------------------------------------------------- */

int smtpd_tls_conn_pump(smtpd_tls_conn *c, smtpd_session *s)
{
  int r;

  if (!c || !s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (c->failed)
    return SMTPD_ERR_TLS;
  if (!c->hs_done) {
    r = smtpd_tls_conn_handshake(c);
    if (r != SMTPD_OK)
      return r < 0 ? r : SMTPD_OK;
  }
  if (!c->reported) {
    smtpd_tls_info info;
    if ((r = smtpd_tls_conn_info(c, &info)) < 0)
      return r;
    c->reported = 1;
    if ((r = smtpd_session_tls_established(s, &info)) < 0)
      return r;
  }
  if (!c->plain) {
    c->plain = c->ctx->mem.malloc(PLAIN_CAP, c->ctx->mem.ctx);
    if (!c->plain)
      return SMTPD_ERR_NOMEM;
  }
  for (;;) {
    int progress = 0;
    const uint8_t *p;
    size_t n;

    /* 1. replies: session -> TLS */
    while (!c->bye_sent && (n = smtpd_session_output(s, &p)) > 0) {
      ptrdiff_t w = smtpd_tls_conn_write(c, p, n);
      if (w < 0)
        return (int)w;
      if (w == 0)
        break;
      if ((r = smtpd_session_consume(s, (size_t)w)) < 0)
        return r;
      progress = 1;
    }
    /* 2. decrypted bytes the session has not taken yet */
    if (c->plain_len > c->plain_off) {
      ptrdiff_t f = smtpd_session_feed(s, c->plain + c->plain_off,
                                       c->plain_len - c->plain_off);
      if (f < 0)
        return (int)f;
      if (f > 0) {
        c->plain_off += (size_t)f;
        progress = 1;
      }
      if (c->plain_off == c->plain_len)
        c->plain_off = c->plain_len = 0;
    }
    /* replies to what was just fed go out before more is decrypted: a
     * read that fails (truncation at end of file) then loses none */
    if (progress)
      continue;
    /* 3. decrypt more once the session took everything */
    if (c->plain_len == 0 && !c->peer_closed &&
        smtpd_session_want_read(s)) {
      ptrdiff_t got = smtpd_tls_conn_read(c, c->plain, PLAIN_CAP);
      if (got < 0 && got != SMTPD_ERR_CLOSED)
        return (int)got;
      if (got > 0) {
        c->plain_len = (size_t)got;
        progress = 1;
      }
    }
    if (!progress)
      break;
  }
  if (!c->bye_sent && smtpd_session_is_closing(s) &&
      !smtpd_session_want_write(s)) {
    if ((r = smtpd_tls_conn_bye(c)) < 0)
      return r;
  }
  if (c->peer_closed && c->plain_len == 0)
    return SMTPD_ERR_CLOSED;
  return SMTPD_OK;
}

/* ---- the TLS-wrapped session ----------------------------------------------------- */

/* The command timeout reported while only ciphertext is left to write,
 * until the session has reported its own (it always has by then). */
#define FALLBACK_COMMAND_MS 300000u

/*
 * Plaintext is the common case and costs little: the wrapper is 40
 * octets (one allocation, no buffers) until TLS is prepared or started,
 * and on a plaintext wire every call goes straight to the session's,
 * checking for the switch to TLS only when it can be due (STARTTLS
 * accepted and its 220 all written, which needs an empty reply queue).
 * The TLS connection, its buffers and a composed error text are
 * allocated when needed.
 */
struct smtpd_tls_session {
  smtpd_session *s;     /* borrowed */
  smtpd_tls_ctx *ctx;   /* borrowed; NULL: plaintext only */
  smtpd_tls_conn *conn; /* the TLS connection: made by prepare (waiting
                           for the switch) or in use (wire_tls) */
  const char *reason;   /* why it ended: NULL, static text, the TLS
                           connection's reason, or owned (reason_owned) */
  uint32_t command_ms;  /* the session's command timeout, last seen */
  unsigned wire_tls : 1, /* the wire is TLS: after the switch, or implicit */
      busy : 1,          /* inside a call that feeds the session */
      failed : 1,        /* TLS failed, or could not be set up */
      eof : 1,           /* the host reported end of file */
      gave_up : 1,       /* timed out while the client did not read */
      reason_owned : 1;  /* reason was allocated from ts_mem */
};

/* ts_mem - where the wrapper's own memory comes from. */
static const smtpd_mem *ts_mem(const smtpd_tls_session *ts)
{
  return ts->ctx ? &ts->ctx->mem : smtpd_mem_default();
}

/* ts_tls - the TLS connection the wire carries, NULL before the switch. */
static smtpd_tls_conn *ts_tls(const smtpd_tls_session *ts)
{
  return ts->wire_tls ? ts->conn : NULL;
}

/* ts_note - remember why the connection ends (the first reason wins):
 * what alone is kept by reference (it is static text or the TLS
 * connection's reason, which lives as long as the wrapper); "what: why"
 * is composed into an allocation, or shortened to what when there is no
 * memory for it. */
static void ts_note(smtpd_tls_session *ts, const char *what, const char *why)
{
  const smtpd_mem *mem;
  size_t a, b;
  char *r;

  if (ts->reason)
    return;
  if (!why || !*why) {
    if (*what)
      ts->reason = what;
    return;
  }
  mem = ts_mem(ts);
  a = strlen(what);
  b = strlen(why);
  if (a + b + 3 > REASON_CAP) /* as long as the text used to be at most */
    b = a + 3 < REASON_CAP ? REASON_CAP - 3 - a : 0;
  r = mem->malloc(a + b + 3, mem->ctx);
  if (!r) {
    ts->reason = what;
    return;
  }
  memcpy(r, what, a);
  memcpy(r + a, ": ", 2);
  memcpy(r + a + 2, why, b);
  r[a + 2 + b] = '\0';
  ts->reason = r;
  ts->reason_owned = 1;
}

/* ts_note_command_ms - remember the session's command timeout when it is
 * the one that applies now. */
static void ts_note_command_ms(smtpd_tls_session *ts)
{
  smtpd_timeout kind;
  uint32_t ms = smtpd_session_timeout(ts->s, &kind);

  if (kind == SMTPD_TIMEOUT_COMMAND && ms)
    ts->command_ms = ms;
}

/* ts_switch - STARTTLS was accepted and its 220 consumed: from now on the
 * wire carries TLS, through the connection prepared in on_starttls or,
 * failing that, one made now. */
static void ts_switch(smtpd_tls_session *ts)
{
  int r;

  if (ts->wire_tls || ts->failed || !smtpd_session_is_tls_wait(ts->s) ||
      smtpd_session_want_write(ts->s))
    return;
  ts_note_command_ms(ts);
  if (!ts->conn) {
    r = ts->ctx ? smtpd_tls_conn_new(&ts->conn, ts->ctx)
                : SMTPD_ERR_INVALID_STATE;
    if (r < 0) {
      ts->conn = NULL;
      ts->failed = 1;
      ts_note(ts, "cannot set up TLS",
              ts->ctx ? smtpd_strerror(r) : "no TLS context");
      return;
    }
  }
  ts->wire_tls = 1;
}

/* ts_plain_run - the plaintext part of ts_run: free a prepared connection
 * nobody will use, switch to TLS when due. */
static void ts_plain_run(smtpd_tls_session *ts)
{
  if (ts->conn && !smtpd_session_is_tls_wait(ts->s) &&
      !smtpd_session_is_paused(ts->s)) {
    smtpd_tls_conn_del(ts->conn); /* STARTTLS was refused after all */
    ts->conn = NULL;
  }
  ts_switch(ts);
}

/* ts_plain_due - whether ts_plain_run may have work: a prepared
 * connection, or a switch (which needs an empty reply queue). */
static int ts_plain_due(const smtpd_tls_session *ts)
{
  return ts->conn ||
         (smtpd_session_is_tls_wait(ts->s) && !smtpd_session_want_write(ts->s));
}

/* ts_peer_done - the client sent close_notify, the session took all
 * that came before it and answered it (and is not paused): ours is due. */
static int ts_peer_done(const smtpd_tls_session *ts)
{
  const smtpd_tls_conn *c = ts_tls(ts);

  return c && c->peer_closed && c->hs_done && !c->failed && !c->bye_sent &&
         c->plain_len == c->plain_off && !smtpd_session_is_paused(ts->s) &&
         !smtpd_session_want_write(ts->s);
}

/* ts_run - move what can move now. Plaintext: free a prepared connection
 * nobody will use, switch to TLS when due. TLS: the pump (handshake and
 * its report, decrypted input into the session, replies out,
 * close_notify), and close_notify in answer to the client's. Returns 0
 * or a fatal session error. */
static int ts_run(smtpd_tls_session *ts)
{
  smtpd_tls_conn *c;
  int r;

  if (!ts->wire_tls) {
    if (!ts->failed && !ts->gave_up)
      ts_plain_run(ts);
    return SMTPD_OK;
  }
  ts_note_command_ms(ts);
  if (ts->failed || ts->gave_up)
    return SMTPD_OK;
  c = ts->conn;
  r = smtpd_tls_conn_pump(c, ts->s);
  if (r == SMTPD_ERR_CLOSED)
    ts_note(ts, c->reason, NULL);
  if (ts_peer_done(ts))
    (void)smtpd_tls_conn_bye(c); /* a failure shows in c->failed */
  if (c->failed) {
    ts->failed = 1;
    ts_note(ts, c->reason[0] ? c->reason : "TLS failed", NULL);
    return SMTPD_OK;
  }
  if (r == SMTPD_OK || r == SMTPD_ERR_CLOSED)
    return SMTPD_OK;
  if (r == SMTPD_ERR_TLS) {
    ts->failed = 1;
    ts_note(ts, "TLS failed", NULL);
    return SMTPD_OK;
  }
  if (!smtpd_is_fatal(r))
    return SMTPD_OK; /* e.g. a handshake completed after the session closed */
  ts_note(ts, "session", smtpd_strerror(r));
  if (r == SMTPD_ERR_NOMEM)
    ts->failed = 1; /* the session or the adapter's buffer: either way over */
  return r;
}

int smtpd_tls_session_new(smtpd_tls_session **out, smtpd_session *s,
                          smtpd_tls_ctx *ctx, smtpd_tls_mode mode)
{
  const smtpd_mem *mem;
  smtpd_tls_session *ts;
  int r;

  if (!out || !s || (mode != SMTPD_TLS_STARTTLS && mode != SMTPD_TLS_IMPLICIT) ||
      (mode == SMTPD_TLS_IMPLICIT && !ctx))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (ctx && !ctx->have_cert)
    return SMTPD_ERR_INVALID_STATE;
  mem = ctx ? &ctx->mem : smtpd_mem_default();
  ts = mem->malloc(sizeof *ts, mem->ctx);
  if (!ts)
    return SMTPD_ERR_NOMEM;
  memset(ts, 0, sizeof *ts);
  ts->s = s;
  ts->ctx = ctx;
  if (mode == SMTPD_TLS_IMPLICIT) {
    /* the connection first: a failure leaves the session untouched */
    r = smtpd_tls_conn_new(&ts->conn, ctx);
    if (r == SMTPD_OK)
      r = smtpd_session_set_implicit_tls(s);
    if (r < 0) {
      smtpd_tls_conn_del(ts->conn);
      mem->free(ts, mem->ctx);
      return r;
    }
    ts->wire_tls = 1;
  }
  *out = ts;
  return SMTPD_OK;
}

void smtpd_tls_session_del(smtpd_tls_session *ts)
{
  const smtpd_mem *mem;

  if (!ts)
    return;
  mem = ts_mem(ts);
  smtpd_tls_conn_del(ts->conn);
  if (ts->reason_owned)
    mem->free((void *)(uintptr_t)ts->reason, mem->ctx);
  mem->free(ts, mem->ctx);
}

smtpd_session *smtpd_tls_session_session(const smtpd_tls_session *ts)
{
  return ts ? ts->s : NULL;
}

int smtpd_tls_session_prepare(smtpd_tls_session *ts)
{
  smtpd_tls_conn *c;
  int r;

  if (!ts)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!ts->ctx || ts->wire_tls || ts->failed)
    return SMTPD_ERR_INVALID_STATE;
  if (ts->conn)
    return SMTPD_OK;
  r = smtpd_tls_conn_new(&c, ts->ctx);
  if (r < 0)
    return r;
  ts->conn = c;
  return SMTPD_OK;
}

/* ts_feed_plain - feed before the switch: straight into the session. */
static ptrdiff_t ts_feed_plain(smtpd_tls_session *ts, const void *data,
                               size_t len)
{
  ptrdiff_t f;

  ts->busy = 1;
  f = smtpd_session_feed(ts->s, data, len);
  if (f < 0 && smtpd_is_fatal((int)f))
    ts_note(ts, "session", smtpd_strerror((int)f));
  if (!ts->command_ms)
    ts_note_command_ms(ts);
  if (ts_plain_due(ts))
    ts_plain_run(ts);
  ts->busy = 0;
  return f;
}

ptrdiff_t smtpd_tls_session_feed(smtpd_tls_session *ts, const void *data,
                                 size_t len)
{
  const uint8_t *p = data;
  smtpd_tls_conn *c;
  size_t off = 0;
  ptrdiff_t f;
  int r = SMTPD_OK;

  if (ts && data && len <= PTRDIFF_MAX && !ts->wire_tls && !ts->busy &&
      !ts->eof && !ts->failed && !ts->gave_up)
    return ts_feed_plain(ts, data, len); /* plaintext: the common case */
  if (!ts || (!data && len))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (ts->busy || ts->eof)
    return SMTPD_ERR_INVALID_STATE;
  if (len > PTRDIFF_MAX)
    len = PTRDIFF_MAX;
  if (ts->failed || ts->gave_up)
    return (ptrdiff_t)len; /* nothing more is read: take and drop */
  if (!ts->wire_tls)
    return ts_feed_plain(ts, data, len);
  c = ts->conn;
  if (c->peer_closed)
    return (ptrdiff_t)len; /* as a closing session does */
  ts->busy = 1;
  for (;;) {
    f = smtpd_tls_conn_feed(c, p + off, len - off);
    if (f < 0) { /* the connection failed earlier */
      ts->failed = 1;
      ts_note(ts, c->reason[0] ? c->reason : "TLS failed", NULL);
      break;
    }
    off += (size_t)f;
    r = ts_run(ts);
    if (r < 0 || ts->failed || c->peer_closed)
      break;
    if (off == len || f == 0)
      break; /* all taken, or full while the session does not read */
  }
  ts->busy = 0;
  if (r < 0)
    return r;
  if (ts->failed || c->peer_closed)
    return (ptrdiff_t)len;
  return (ptrdiff_t)off;
}

int smtpd_tls_session_eof(smtpd_tls_session *ts)
{
  int r = SMTPD_OK;

  if (!ts)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (ts->busy)
    return SMTPD_ERR_INVALID_STATE;
  if (ts->eof)
    return SMTPD_OK;
  ts->eof = 1;
  if (ts->wire_tls && !ts->failed) {
    smtpd_tls_conn_eof(ts->conn);
    ts->busy = 1;
    r = ts_run(ts);
    ts->busy = 0;
  }
  return r;
}

size_t smtpd_tls_session_output(smtpd_tls_session *ts, const uint8_t **data)
{
  /* plaintext, no prepared connection, and replies waiting or STARTTLS
   * not accepted: no switch can be due (it needs an empty reply queue),
   * nothing else to do (the common case) */
  if (ts && !ts->wire_tls && !ts->failed && !ts->gave_up && !ts->conn) {
    size_t n = smtpd_session_output(ts->s, data);
    if (n > 0 || ts->busy || !smtpd_session_is_tls_wait(ts->s))
      return n;
  }
  if (data)
    *data = NULL;
  if (!ts || ts->gave_up)
    return 0;
  if (!ts->wire_tls) {
    if (ts->failed)
      return 0;
    if (!ts->busy && ts_plain_due(ts)) {
      ts->busy = 1;
      ts_plain_run(ts);
      ts->busy = 0;
      if (ts->wire_tls)
        return smtpd_tls_conn_output(ts->conn, data);
      if (ts->failed)
        return 0;
    }
    return smtpd_session_output(ts->s, data);
  }
  if (!ts->busy) {
    ts->busy = 1;
    (void)ts_run(ts); /* a fatal session error ends it by the rule */
    ts->busy = 0;
  }
  return smtpd_tls_conn_output(ts->conn, data);
}

int smtpd_tls_session_consume(smtpd_tls_session *ts, size_t n)
{
  int r;

  /* plaintext, STARTTLS not accepted: no switch can follow (the common
   * case; consuming does not change the session's state) */
  if (ts && !ts->wire_tls && !ts->failed && !ts->gave_up &&
      !smtpd_session_is_tls_wait(ts->s))
    return smtpd_session_consume(ts->s, n);
  if (!ts)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (ts->wire_tls)
    return smtpd_tls_conn_consume(ts->conn, n);
  if (ts->failed || ts->gave_up)
    return n ? SMTPD_ERR_INVALID_ARGUMENT : SMTPD_OK;
  r = smtpd_session_consume(ts->s, n);
  if (r == SMTPD_OK && !ts->busy)
    ts_switch(ts); /* the last octet of the 220 went out */
  return r;
}

int smtpd_tls_session_want_read(const smtpd_tls_session *ts)
{
  const smtpd_tls_conn *c;

  if (ts && !ts->wire_tls && !ts->failed && !ts->eof && !ts->gave_up)
    return smtpd_session_want_read(ts->s); /* plaintext */
  if (!ts || ts->failed || ts->eof || ts->gave_up)
    return 0;
  c = ts->conn;
  if (c->plain_len > c->plain_off)
    return 0; /* decrypted input still waits for the session */
  return smtpd_tls_conn_want_read(c) && smtpd_session_want_read(ts->s);
}

int smtpd_tls_session_want_write(const smtpd_tls_session *ts)
{
  const smtpd_tls_conn *c;

  if (ts && !ts->wire_tls && !ts->failed && !ts->gave_up)
    return smtpd_session_want_write(ts->s); /* plaintext */
  if (!ts || ts->gave_up || !ts->wire_tls)
    return 0;
  c = ts->conn;
  if (smtpd_tls_conn_want_write(c))
    return 1;
  if (ts->failed || c->failed || !c->hs_done || c->bye_sent)
    return 0;
  /* replies to encrypt, close_notify due, or kept input the session
   * would take now: output() turns each into bytes */
  if (smtpd_session_want_write(ts->s) || smtpd_session_is_closing(ts->s) ||
      ts_peer_done(ts))
    return 1;
  return c->plain_len > c->plain_off && smtpd_session_want_read(ts->s);
}

int smtpd_tls_session_is_done(const smtpd_tls_session *ts)
{
  const smtpd_tls_conn *c;

  if (!ts)
    return 1;
  if (!ts->wire_tls && !ts->failed && !ts->gave_up && !ts->eof) {
    /* plaintext, nothing ended: the session's own rule (never true
     * while replies wait) */
    return !smtpd_session_is_paused(ts->s) && smtpd_session_is_done(ts->s);
  }
  if (smtpd_session_is_paused(ts->s))
    return 0;
  if (ts->gave_up || (ts->failed && !ts->wire_tls))
    return 1;
  if (!ts->wire_tls) {
    /* smtpd_session_is_done() is never true while replies wait */
    if (smtpd_session_is_done(ts->s))
      return 1;
    return ts->eof && !smtpd_session_want_write(ts->s);
  }
  c = ts->conn;
  if (smtpd_tls_conn_want_write(c))
    return 0; /* the last reply, close_notify or an alert */
  if (ts->failed)
    return 1;
  if (smtpd_tls_session_want_write(ts))
    return 0;
  if (smtpd_session_is_done(ts->s))
    return 1;
  /* closed (a timeout) before the handshake: nothing can be said */
  if (!c->hs_done && smtpd_session_is_closing(ts->s))
    return 1;
  return ts->eof || c->peer_closed;
}

uint32_t smtpd_tls_session_timeout(const smtpd_tls_session *ts,
                                   smtpd_timeout *kind)
{
  smtpd_timeout k = SMTPD_TIMEOUT_NONE;
  uint32_t ms = 0;

  if (ts && !ts->wire_tls)
    return smtpd_session_timeout(ts->s, kind); /* plaintext */
  if (ts) {
    ms = smtpd_session_timeout(ts->s, &k);
    if (k == SMTPD_TIMEOUT_NONE && ts->wire_tls && !ts->gave_up &&
        !smtpd_session_is_paused(ts->s) &&
        smtpd_tls_conn_want_write(ts->conn)) {
      k = SMTPD_TIMEOUT_COMMAND; /* the client must read the last bytes */
      ms = ts->command_ms ? ts->command_ms : FALLBACK_COMMAND_MS;
    }
  }
  if (kind)
    *kind = k;
  return ms;
}

int smtpd_tls_session_timeout_expired(smtpd_tls_session *ts)
{
  if (!ts)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (ts->busy)
    return SMTPD_ERR_INVALID_STATE;
  if (smtpd_session_is_paused(ts->s) || ts->gave_up)
    return SMTPD_OK; /* no client timer runs while the host decides */
  if (!smtpd_session_is_closing(ts->s) && !ts->failed && !ts->eof &&
      !(ts->wire_tls && ts->conn->peer_closed))
    return smtpd_session_timeout_expired(ts->s);
  ts->gave_up = 1; /* its last words were never read: stop */
  ts_note(ts, "client did not read", NULL);
  return SMTPD_OK;
}

int smtpd_tls_session_is_tls(const smtpd_tls_session *ts)
{
  return ts && ts->wire_tls && smtpd_tls_conn_handshake_done(ts->conn);
}

const char *smtpd_tls_session_error(const smtpd_tls_session *ts)
{
  return ts && ts->reason ? ts->reason : "";
}
