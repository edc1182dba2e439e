/*
 * fuzz_cyrus.c - libFuzzer harness for the Cyrus SASL adapter
 * (include/smtpd/sasl_cyrus.h) through the session's AUTH: arbitrary
 * client responses to PLAIN, LOGIN, CRAM-MD5 (and whatever mechanism
 * name the input gives) reach a real libsasl2 with a sasldb made by
 * saslpasswd2 at start-up. Now and then the harness answers correctly
 * (PLAIN/LOGIN with the real password, CRAM-MD5 through libsasl2's own
 * client), so the success path is exercised too.
 *
 * Oracles:
 *  - lock step: every AUTH line and every response line gets exactly one
 *    reply group (one more when it is the 421 after too many failures);
 *    every reply is well-formed; a 334 carries valid base64;
 *  - 235 (and the auth-ok event) only after the harness sent the right
 *    password for "user" (or the right CRAM-MD5 digest), and then the
 *    session's auth user is "user" (with or without the realm);
 *  - events carry printable texts; every allocation of the session is
 *    freed (counting allocator), LSan for libsasl2's own;
 *  - then one more exchange on the backend's table itself, on a channel
 *    the input's last octet picks (client address forms, TLS, a client
 *    certificate identity, the backend that refuses plaintext
 *    mechanisms without TLS, a resume): plaintext mechanisms are neither
 *    offered nor successful where refused, OK only after the password,
 *    a resume ends the exchange (see direct());
 *  - once per process: the API's argument checks, a second backend
 *    sharing libsasl2's initialisation, one with other process-wide
 *    options refused, deletes of copies refused (api_once()).
 *
 * Input: byte 0 flags (bits 0-1 mechanism: PLAIN, LOGIN, CRAM-MD5, the
 * name in the first response; bit 2 initial response on the AUTH line;
 * bit 3 answer correctly; bit 4 base64-encode the responses (else they
 * go as sent); bits 5-7 '*' cancel at that response), then responses
 * separated by 0x0a. Build: tests/fuzz.cmake.
 */
#define _POSIX_C_SOURCE 200809L
#include <sasl/sasl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "parse.h"
#include "smtpd/sasl_cyrus.h"

#define APPNAME "smtpd-fuzz"
#define REALM "example.org"
#define FQDN "mx.example.org"
#define USER "user"
#define PASSWORD "correct horse"

/* No LeakSanitizer suppressions: the adapter keeps from libsasl2 the user
 * names its LOGIN plugin and its canonicaliser would leak (docs/fuzzing.md,
 * third-party findings), so any leak is a finding. */

static smtpd_sasl_backend *g_be;
static smtpd_sasl_backend *g_strict; /* same libsasl2 init, plaintext
                                        mechanisms only under TLS */
static char g_dir[64];

static void quiet(int level, const char *msg, void *ctx) {
  (void)level;
  (void)msg;
  (void)ctx;
}

/* the sasldb, its lock and the conf go when the process ends */
static void cleanup(void) {
  static const char *const files[] = {"sasldb2", "sasldb2-lock",
                                      APPNAME ".conf"};
  char path[256];
  size_t i;
  for (i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", g_dir, files[i]);
    unlink(path);
  }
  rmdir(g_dir);
}

/* The backend's API, once per process: argument checks, a second backend
 * sharing libsasl2's initialisation (g_strict, kept), one that may not
 * (different process-wide options), and deletes that must refuse. */
static void api_once(const smtpd_sasl_cyrus_options *good) {
  smtpd_sasl_cyrus_options o = *good;
  smtpd_sasl_backend *b = NULL, copy;
  smtpd_sasl_channel ch;
  smtpd_sasl_out out;
  smtpd_mem half;
  fz_mem nomem;
  char buf[8];
  void *x = NULL;
  FZ_CHECK(smtpd_sasl_cyrus_new(NULL, NULL, &o) == SMTPD_ERR_INVALID_ARGUMENT,
           "new without out");
  memset(&half, 0, sizeof half);
  memset(&nomem, 0, sizeof nomem);
  FZ_CHECK(smtpd_sasl_cyrus_new(&b, &half, &o) == SMTPD_ERR_INVALID_ARGUMENT &&
               !b,
           "new with an incomplete allocator");
  o.version = 99;
  FZ_CHECK(smtpd_sasl_cyrus_new(&b, NULL, &o) == SMTPD_ERR_INVALID_ARGUMENT &&
               !b,
           "new with a bad options version");
  o = *good;
  o.service = "";
  FZ_CHECK(smtpd_sasl_cyrus_new(&b, NULL, &o) == SMTPD_ERR_INVALID_ARGUMENT &&
               !b,
           "new with an empty service name");
  o = *good;
  o.appname = "bad\tname";
  FZ_CHECK(smtpd_sasl_cyrus_new(&b, NULL, &o) == SMTPD_ERR_INVALID_ARGUMENT &&
               !b,
           "new with a control in the appname");
  half = fz_make_mem(&nomem);
  nomem.fail_at = 1; /* the first allocation fails */
  FZ_CHECK(smtpd_sasl_cyrus_new(&b, &half, good) == SMTPD_ERR_NOMEM && !b &&
               nomem.live == 0,
           "new without memory");
  smtpd_sasl_cyrus_options_init(NULL);
  o = *good;
  o.local_addr = "not an address";
  FZ_CHECK(smtpd_sasl_cyrus_new(&b, NULL, &o) == SMTPD_ERR_INVALID_ARGUMENT &&
               !b,
           "new with a bad local address");
  /* libsasl2 is initialised once per process: other process-wide
   * options (the defaults' appname "smtpd") are refused */
  FZ_CHECK(smtpd_sasl_cyrus_new(&b, NULL, NULL) == SMTPD_ERR_INVALID_STATE &&
               !b,
           "new with other process-wide options");
  o = *good;
  o.allow_plaintext = 0;
  FZ_CHECK(smtpd_sasl_cyrus_new(&g_strict, NULL, &o) == 0, "second backend");
  o.allow_plaintext = 1;
  FZ_CHECK(smtpd_sasl_cyrus_new(&b, NULL, &o) == 0, "third backend");
  copy = *b;
  FZ_CHECK(smtpd_sasl_cyrus_del(&copy) == SMTPD_ERR_INVALID_ARGUMENT,
           "del of a copy");
  copy.version = 1; /* a version 1 table has no destroy to compare */
  FZ_CHECK(smtpd_sasl_cyrus_del(&copy) == SMTPD_ERR_INVALID_ARGUMENT,
           "del of a version 1 table");
  copy.version = b->version;
  smtpd_sasl_backend_del(&copy); /* not the adapter's object: nothing */
  FZ_CHECK(smtpd_sasl_cyrus_del(NULL) == 0, "del NULL");
  FZ_CHECK(smtpd_sasl_cyrus_del(b) == 0, "del"); /* g_be stays usable */
  memset(&ch, 0, sizeof ch);
  FZ_CHECK(g_be->mechanisms(NULL, &ch, buf, sizeof buf) ==
                   SMTPD_ERR_INVALID_ARGUMENT &&
               g_be->mechanisms(g_be->ctx, NULL, buf, sizeof buf) ==
                   SMTPD_ERR_INVALID_ARGUMENT &&
               g_be->mechanisms(g_be->ctx, &ch, NULL, 4) ==
                   SMTPD_ERR_INVALID_ARGUMENT,
           "mechanisms arguments");
  /* a buffer too small: snprintf style, the length it needs */
  FZ_CHECK(g_be->mechanisms(g_be->ctx, &ch, buf, sizeof buf) >
                   (int)sizeof buf &&
               strlen(buf) == sizeof buf - 1,
           "mechanisms truncation");
  FZ_CHECK(g_be->start(g_be->ctx, NULL, &ch, "PLAIN", NULL, 0, 0, &x, NULL) ==
                   SMTPD_SASL_TEMPFAIL &&
               g_be->start(g_be->ctx, NULL, &ch, NULL, NULL, 0, 0, &x, &out) ==
                   SMTPD_SASL_TEMPFAIL &&
               g_be->start(g_be->ctx, NULL, &ch, "PLAIN", NULL, 3, 1, &x,
                           &out) == SMTPD_SASL_TEMPFAIL &&
               g_be->start(g_be->ctx, NULL, &ch, "plain", NULL, 0, 0, &x,
                           &out) == SMTPD_SASL_NOMECH &&
               !x,
           "start arguments");
  FZ_CHECK(g_be->step(NULL, NULL, 0, &out) == SMTPD_SASL_TEMPFAIL &&
               g_be->step(NULL, NULL, 0, NULL) == SMTPD_SASL_TEMPFAIL &&
               g_be->resume(NULL, 0, NULL) == SMTPD_SASL_TEMPFAIL,
           "step and resume arguments");
  g_be->dispose(NULL);
}

static void init_once(void) {
  char path[256], cmd[512];
  FILE *f;
  smtpd_sasl_cyrus_options o;
  if (g_be)
    return;
  snprintf(g_dir, sizeof g_dir, "/tmp/smtpd-fuzz-sasl-XXXXXX");
  FZ_CHECK(mkdtemp(g_dir) != NULL, "mkdtemp");
  atexit(cleanup);
  snprintf(path, sizeof path, "%s/%s.conf", g_dir, APPNAME);
  f = fopen(path, "w");
  FZ_CHECK(f != NULL, "conf");
  fprintf(f,
          "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
          "sasldb_path: %s/sasldb2\nmech_list: PLAIN LOGIN CRAM-MD5\n",
          g_dir);
  fclose(f);
  snprintf(cmd, sizeof cmd, "saslpasswd2 -p -c -f '%s/sasldb2' -a %s -u %s %s",
           g_dir, APPNAME, REALM, USER);
  f = popen(cmd, "w");
  FZ_CHECK(f != NULL, "saslpasswd2");
  fputs(PASSWORD, f);
  FZ_CHECK(pclose(f) == 0, "saslpasswd2 failed");
  smtpd_sasl_cyrus_options_init(&o);
  o.appname = APPNAME;
  o.config_dir = g_dir;
  o.server_fqdn = FQDN;
  o.user_realm = REALM;
  o.local_addr = "127.0.0.1;25";
  o.allow_plaintext = 1;
  o.log = quiet;
  FZ_CHECK(smtpd_sasl_cyrus_new(&g_be, NULL, &o) == 0, "cyrus_new");
  FZ_CHECK(sasl_client_init(NULL) == SASL_OK, "sasl_client_init");
  api_once(&o);
}

/* ---- libsasl2's client, for a correct CRAM-MD5 ------------------------------- */

static int cl_simple(void *ctx, int id, const char **result, unsigned *len) {
  (void)ctx;
  if (id != SASL_CB_AUTHNAME && id != SASL_CB_USER)
    return SASL_BADPARAM;
  *result = USER;
  if (len)
    *len = (unsigned)strlen(USER);
  return SASL_OK;
}

static int cl_pass(sasl_conn_t *conn, void *ctx, int id, sasl_secret_t **out) {
  static union {
    sasl_secret_t s;
    unsigned char raw[sizeof(sasl_secret_t) + 64];
  } secret;
  (void)conn;
  (void)ctx;
  (void)id;
  secret.s.len = (unsigned long)strlen(PASSWORD);
  memcpy(secret.s.data, PASSWORD, strlen(PASSWORD) + 1);
  *out = &secret.s;
  return SASL_OK;
}

typedef int (*cb_fn)(void);
#define CB(f) ((cb_fn)(void (*)(void))(f))

/* ---- the session ---------------------------------------------------------------- */

typedef struct host {
  smtpd_session *s;
  fz_buf out;
  uint32_t delay; /* reply delay asked for the last line's replies */
  int correct;   /* the harness sent correct credentials in this exchange */
  int ok_events;
  sasl_conn_t *cc;
} host;

static void on_auth_ok(smtpd_session *s, const smtpd_auth_result *r,
                       void *ud) {
  host *h = ud;
  (void)s;
  FZ_CHECK(r->authcid && (!strcmp(r->authcid, USER) ||
                          !strcmp(r->authcid, USER "@" REALM)),
           "auth-ok for [%s]", r->authcid ? r->authcid : "-");
  FZ_CHECK(h->correct, "auth-ok without the right credentials (%s)",
           r->mechanism);
  h->ok_events++;
}

static int printable(const char *p) {
  if (!p)
    return 1;
  for (; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
      return 0;
  return 1;
}

static void on_auth_fail(smtpd_session *s, const smtpd_auth_result *r,
                         void *ud) {
  (void)s;
  (void)ud;
  FZ_CHECK(printable(r->reason) && printable(r->mechanism) &&
               (!r->authcid || !strpbrk(r->authcid, "\r\n")),
           "auth-fail texts");
}

/* Send one line; returns the reply groups and the last reply's first
 * line (into last, cap 1100). */
static size_t line(host *h, const char *text, size_t n, fz_replies *r) {
  const uint8_t *o;
  size_t k, before = h->out.len;
  char why[200];
  ptrdiff_t took = smtpd_session_feed(h->s, text, n);
  FZ_CHECK(took == (ptrdiff_t)n, "feed took %td of %zu", took, n);
  k = smtpd_session_output(h->s, &o);
  h->delay = smtpd_session_reply_delay(h->s, NULL);
  fz_buf_put(&h->out, o, k);
  smtpd_session_consume(h->s, k);
  FZ_CHECK(!fz_parse_replies(h->out.p ? h->out.p + before : o, h->out.len - before,
                             r, why, sizeof why),
           "%s", why);
  return before;
}

/* what the backend receives for a response line sent as is: its base64
 * decoding; the harness counts any that carries the password as a
 * correct answer (the fuzzer may find it) */
static int carries_password(const uint8_t *p, size_t n, int encoded) {
  uint8_t *d = malloc(n + 1);
  long k = encoded ? (long)n : smtpd_i_base64_decode((const char *)p, n, d, n);
  size_t i, pl = strlen(PASSWORD);
  int found = 0;
  if (!d)
    abort();
  if (encoded && n)
    memcpy(d, p, n);
  for (i = 0; k > 0 && !found && i + pl <= (size_t)k; i++)
    found = !memcmp(d + i, PASSWORD, pl);
  free(d);
  return found;
}

static void b64(const uint8_t *p, size_t n, fz_buf *dst) {
  char *e = malloc(n / 3 * 4 + 8);
  long k;
  if (!e)
    abort();
  k = smtpd_i_base64_encode(p, n, e, n / 3 * 4 + 8);
  FZ_CHECK(k >= 0, "encode");
  fz_buf_put(dst, e, (size_t)k);
  free(e);
}

/* ---- the backend's table, driven directly --------------------------------- */

static const char *next_line(const uint8_t **p, const uint8_t *end,
                             size_t *n) {
  const uint8_t *s = *p, *nl;
  if (s >= end)
    return NULL;
  nl = memchr(s, '\n', (size_t)(end - s));
  *n = (size_t)((nl ? nl : end) - s);
  *p = nl ? nl + 1 : end;
  return (const char *)s;
}

static int plaintext_mech(const char *m) {
  return !strcmp(m, "PLAIN") || !strcmp(m, "LOGIN");
}

/* One exchange on the backend's own table, on a channel the input's last
 * octet picks (bits 0-2 the client address: none, IPv4, the RFC 5321
 * IPv6 literal, "ip;port", or strings libsasl2 must never see; bit 3
 * TLS; bit 4 with a client certificate identity; bit 5 the backend that
 * refuses plaintext mechanisms without TLS; bit 6 an initial response;
 * bit 7 a resume, which this backend never asks for, before the last
 * step). The responses are the input's lines, decoded as they are; a
 * correct answer is sent when flag bit 3 says so. Oracles: statuses in
 * range; the offered list and the outcome keep plaintext mechanisms off
 * a channel that refuses them; OK only after the password went out, for
 * "user"; FAIL with a printable reason; a resume ends the exchange with
 * FAIL and a later step is BADPROT. */
static void direct(const uint8_t *data, size_t size, int mech, uint8_t fl) {
  static const char *const mechs[] = {"PLAIN", "LOGIN", "CRAM-MD5",
                                      "DIGEST-MD5"};
  static const char *const addrs[] = {NULL,
                                      "192.0.2.7",
                                      "IPv6:2001:db8::7",
                                      "2001:db8::7;2525",
                                      "192.0.2.7;99999",
                                      "IPv6:not-an-address",
                                      "192.0.2.7;",
                                      "a\tb"};
  static const char cred[] = "\0" USER "\0" PASSWORD;
  uint8_t v = data[size - 1];
  smtpd_sasl_backend *be = (v & 32) ? g_strict : g_be;
  smtpd_sasl_channel ch;
  smtpd_sasl_out out;
  const uint8_t *p = data + 1, *end = data + size - 1;
  const char *m = mechs[mech], *r;
  char list[128];
  void *x = NULL;
  size_t n = 0;
  int st, steps = 0, sent_pw = 0, refuses;
  memset(&ch, 0, sizeof ch);
  ch.client_addr = addrs[v & 7];
  ch.tls = (v & 8) != 0;
  ch.ssf = ch.tls ? 256 : 0;
  ch.external_id = (v & 16) ? "CN=client.example" : NULL;
  refuses = (v & 32) && !ch.tls;
  st = be->mechanisms(be->ctx, &ch, list, sizeof list);
  FZ_CHECK(st > 0 && (size_t)st < sizeof list, "mechanisms: %d", st);
  FZ_CHECK(!refuses || (!strstr(list, "PLAIN") && !strstr(list, "LOGIN")),
           "plaintext mechanisms offered on a channel that refuses them: %s",
           list);
  if ((v & 64) && (fl & 8) && !strcmp(m, "PLAIN")) {
    st = be->start(be->ctx, NULL, &ch, m, (const uint8_t *)cred,
                   sizeof cred - 1, 1, &x, &out);
    sent_pw = 1;
  } else if ((v & 64) && (r = next_line(&p, end, &n)) != NULL &&
             (n || strcmp(m, "LOGIN"))) { /* an empty one is no name */
    sent_pw = carries_password((const uint8_t *)r, n, 1);
    st = be->start(be->ctx, NULL, &ch, m, (const uint8_t *)r, n, 1, &x, &out);
  } else {
    st = be->start(be->ctx, NULL, &ch, m, NULL, 0, 0, &x, &out);
  }
  while (st == SMTPD_SASL_CONTINUE && steps++ < 4) {
    const uint8_t *resp;
    FZ_CHECK(x && (!out.challenge_len || out.challenge), "challenge");
    if ((v & 128) && steps == 2) {
      st = be->resume(x, 0, &out);
      FZ_CHECK(st == SMTPD_SASL_FAIL && out.reason && *out.reason,
               "resume: %d", st);
      st = be->step(x, (const uint8_t *)"x", 1, &out);
      FZ_CHECK(st == SMTPD_SASL_BADPROT, "step after the end: %d", st);
      break;
    }
    if ((fl & 8) && !strcmp(m, "LOGIN")) {
      int asks_user = out.challenge_len && (out.challenge[0] == 'U' ||
                                            out.challenge[0] == 'u');
      resp = (const uint8_t *)(asks_user ? USER : PASSWORD);
      n = strlen((const char *)resp);
      sent_pw |= !asks_user;
    } else if ((fl & 8) && !strcmp(m, "PLAIN")) {
      resp = (const uint8_t *)cred;
      n = sizeof cred - 1;
      sent_pw = 1;
    } else if ((r = next_line(&p, end, &n)) != NULL) {
      resp = (const uint8_t *)r;
      sent_pw |= carries_password(resp, n, 1);
    } else {
      break; /* out of lines: dispose of the unfinished exchange */
    }
    st = be->step(x, resp, n, &out);
  }
  FZ_CHECK(st >= SMTPD_SASL_OK && st <= SMTPD_SASL_BADPROT &&
               st != SMTPD_SASL_DEFER,
           "status %d", st);
  if (st == SMTPD_SASL_OK) {
    FZ_CHECK(sent_pw && out.authcid &&
                 (!strcmp(out.authcid, USER) ||
                  !strcmp(out.authcid, USER "@" REALM)),
             "OK without the password, or for [%s]",
             out.authcid ? out.authcid : "-");
    FZ_CHECK(!refuses || !plaintext_mech(m),
             "%s succeeded on a channel that refuses plaintext", m);
  }
  if (st == SMTPD_SASL_FAIL)
    FZ_CHECK(out.reason && printable(out.reason), "FAIL without a reason");
  if (x)
    be->dispose(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const mechs[] = {"PLAIN", "LOGIN", "CRAM-MD5"};
  smtpd_config *cfg;
  fz_mem mem;
  smtpd_mem m;
  smtpd_callbacks cb;
  host h;
  fz_replies r;
  uint8_t fl;
  const uint8_t *p, *end;
  size_t before, resp = 0;
  int mech, attempts = 0;
  if (size < 1 || size > 16384)
    return 0;
  init_once();
  fl = data[0];
  mech = fl & 3;
  p = data + 1;
  end = data + size;
  memset(&h, 0, sizeof h);
  memset(&mem, 0, sizeof mem);
  m = fz_make_mem(&mem);
  FZ_CHECK(smtpd_config_new(&cfg, &m) == 0, "config");
  smtpd_config_set_hostname(cfg, FQDN);
  smtpd_config_set_option(cfg, SMTPD_OPT_AUTH_PLAINTEXT, 1);
  FZ_CHECK(smtpd_config_set_sasl(cfg, g_be) == 0, "set_sasl");
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_auth_ok = on_auth_ok;
  cb.on_auth_fail = on_auth_fail;
  FZ_CHECK(smtpd_session_new(&h.s, cfg, &cb, &h) == 0, "session");
  smtpd_session_set_client(h.s, "192.0.2.7", NULL);
  smtpd_session_start(h.s);
  line(&h, "", 0, &r); /* the greeting */
  FZ_CHECK(r.groups == 1 && r.first_code == 220, "greeting");
  line(&h, "EHLO client.example\r\n", 21, &r);
  FZ_CHECK(r.groups == 1 && r.first_code == 250, "EHLO");
  while (p <= end && attempts < 4 && !smtpd_session_is_closing(h.s) &&
         !smtpd_session_auth_user(h.s)) {
    fz_buf cmd;
    int in_exchange;
    const char *mname = mechs[mech % 3];
    char mbuf[40];
    const uint8_t *nl;
    memset(&cmd, 0, sizeof cmd);
    h.correct = 0;
    attempts++;
    if (mech == 3) { /* the first response names the mechanism */
      nl = memchr(p, '\n', (size_t)(end - p));
      snprintf(mbuf, sizeof mbuf, "%.*s",
               (int)((nl ? nl : end) - p < 30 ? (nl ? nl : end) - p : 30),
               (const char *)p);
      mname = mbuf;
      p = nl ? nl + 1 : end;
    }
    fz_buf_str(&cmd, "AUTH ");
    fz_buf_str(&cmd, mname);
    if (h.cc) {
      sasl_dispose(&h.cc);
      h.cc = NULL;
    }
    if ((fl & 8) && !strcmp(mname, "CRAM-MD5")) {
      static sasl_callback_t cbs[] = {
          {SASL_CB_AUTHNAME, CB(cl_simple), NULL},
          {SASL_CB_USER, CB(cl_simple), NULL},
          {SASL_CB_PASS, CB(cl_pass), NULL},
          {SASL_CB_LIST_END, NULL, NULL}};
      const char *o, *chosen;
      unsigned ol;
      FZ_CHECK(sasl_client_new("smtp", FQDN, NULL, NULL, cbs, 0, &h.cc) ==
                   SASL_OK,
               "sasl_client_new");
      (void)sasl_client_start(h.cc, "CRAM-MD5", NULL, &o, &ol, &chosen);
    }
    if ((fl & 4) && !strcmp(mname, "PLAIN") && (fl & 8)) {
      static const char cred[] = "\0" USER "\0" PASSWORD;
      fz_buf_str(&cmd, " ");
      b64((const uint8_t *)cred, sizeof cred - 1, &cmd);
      h.correct = 1;
    } else if ((fl & 4) && p < end) {
      nl = memchr(p, '\n', (size_t)(end - p));
      fz_buf_str(&cmd, " ");
      if (carries_password(p, (size_t)((nl ? nl : end) - p), fl & 16))
        h.correct = 1;
      if (fl & 16)
        b64(p, (size_t)((nl ? nl : end) - p), &cmd);
      else
        fz_buf_put(&cmd, p, (size_t)((nl ? nl : end) - p));
      p = nl ? nl + 1 : end;
    }
    fz_buf_str(&cmd, "\r\n");
    before = line(&h, (const char *)cmd.p, cmd.len, &r);
    fz_buf_free(&cmd);
    in_exchange = 1;
    while (in_exchange) {
      const uint8_t *l = h.out.p + before;
      fz_buf rl;
      memset(&rl, 0, sizeof rl);
      FZ_CHECK(r.groups == 1 || (r.groups == 2 && r.last_code == 421) ||
                   smtpd_session_is_closing(h.s),
               "AUTH line got %zu reply groups", r.groups);
      if (r.groups != 1 || r.first_code != 334)
        break;
      /* a challenge: valid base64 */
      {
        size_t n = h.out.len - before - 6;
        uint8_t *chal = malloc(n + 1);
        long cl;
        if (!chal)
          abort();
        cl = smtpd_i_base64_decode((const char *)l + 4, n, chal, n);
        FZ_CHECK(cl >= 0, "334 without valid base64");
        resp++;
        if ((fl >> 5) && resp == (size_t)(fl >> 5)) {
          fz_buf_str(&rl, "*");
        } else if ((fl & 8) && !strcmp(mname, "LOGIN")) {
          const char *v = cl > 0 && (chal[0] == 'U' || chal[0] == 'u')
                              ? USER
                              : PASSWORD;
          b64((const uint8_t *)v, strlen(v), &rl);
          if (v[0] == 'c')
            h.correct = 1;
        } else if ((fl & 8) && !strcmp(mname, "PLAIN")) {
          static const char cred[] = "\0" USER "\0" PASSWORD;
          b64((const uint8_t *)cred, sizeof cred - 1, &rl);
          h.correct = 1;
        } else if (h.cc) {
          const char *o;
          unsigned ol;
          if (sasl_client_step(h.cc, (const char *)chal, (unsigned)cl, NULL, &o,
                               &ol) == SASL_OK) {
            b64((const uint8_t *)o, ol, &rl);
            h.correct = 1;
          }
          sasl_dispose(&h.cc);
          h.cc = NULL;
        } else if (p < end) {
          const uint8_t *nl2 = memchr(p, '\n', (size_t)(end - p));
          if (carries_password(p, (size_t)((nl2 ? nl2 : end) - p), fl & 16))
            h.correct = 1;
          if (fl & 16)
            b64(p, (size_t)((nl2 ? nl2 : end) - p), &rl);
          else
            fz_buf_put(&rl, p, (size_t)((nl2 ? nl2 : end) - p));
          p = nl2 ? nl2 + 1 : end;
        } else {
          fz_buf_str(&rl, "*");
        }
        free(chal);
      }
      fz_buf_str(&rl, "\r\n");
      before = line(&h, (const char *)rl.p, rl.len, &r);
      fz_buf_free(&rl);
    }
    if (r.groups >= 1 && r.first_code == 235) {
      FZ_CHECK(h.correct && h.ok_events == 1 &&
                   smtpd_session_auth_user(h.s) &&
                   !strncmp(smtpd_session_auth_user(h.s), USER, 4),
               "235 without the right credentials or the event");
    } else {
      FZ_CHECK(!smtpd_session_auth_user(h.s), "authenticated without 235");
    }
    if (r.groups >= 1 && r.first_code == 535)
      FZ_CHECK(h.delay == 1000, "a failed AUTH without the tarpit delay");
    if (p >= end)
      break;
  }
  if (h.cc)
    sasl_dispose(&h.cc);
  if (getenv("FUZZ_DEBUG"))
    fprintf(stderr, "---- cyrus\n%.*s", (int)h.out.len, (const char *)h.out.p);
  smtpd_session_del(h.s);
  smtpd_config_del(cfg);
  FZ_CHECK(mem.live == 0, "%ld blocks leaked", mem.live);
  fz_buf_free(&h.out);
  direct(data, size, fl & 3, fl);
  return 0;
}
