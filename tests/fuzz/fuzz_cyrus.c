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
 *    freed (counting allocator), LSan for libsasl2's own.
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

/* Cyrus SASL's LOGIN plugin (2.1.28, Debian 12's libsasl2-modules)
 * leaks 18 octets when the username response is empty; reproduced with
 * libsasl2 alone (docs/fuzzing.md, third-party findings). Nothing else is
 * suppressed. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:liblogin.so\n";
}

static smtpd_sasl_backend *g_be;
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
  return 0;
}
