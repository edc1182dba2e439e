/*
 * check_sasl_builtin.c - the built-in PLAIN/LOGIN backend (lib/sasl/builtin.c),
 * driven directly through its smtpd_sasl_backend function table, and
 * smtpd_consttime_equal.
 *
 * A tracking allocator counts allocations, checks that nothing leaks and
 * that no freed block still holds the password; a failing variant fails
 * the Nth allocation.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/sasl.h"

/* ---- tracking allocator ------------------------------------------------- */

typedef struct tracker {
  long live;         /* blocks not yet freed */
  long count;        /* allocations attempted */
  long fail_at;      /* fail the allocation with this number (1-based) */
  int saw_secret;    /* a freed block still contained `secret` */
  const char *secret;
} tracker;

#define HDR 16 /* keeps the user block aligned; holds the size */

static void *t_malloc(size_t size, void *ctx) {
  tracker *t = ctx;
  unsigned char *p;
  t->count++;
  if (t->fail_at && t->count == t->fail_at)
    return NULL;
  p = malloc(size + HDR);
  if (!p)
    return NULL;
  memcpy(p, &size, sizeof size);
  t->live++;
  return p + HDR;
}

static void t_free(void *ptr, void *ctx) {
  tracker *t = ctx;
  unsigned char *p;
  size_t size, n;
  if (!ptr)
    return;
  p = (unsigned char *)ptr - HDR;
  memcpy(&size, p, sizeof size);
  if (t->secret) {
    n = strlen(t->secret);
    for (size_t i = 0; n && i + n <= size; i++)
      if (memcmp(p + HDR + i, t->secret, n) == 0)
        t->saw_secret = 1;
  }
  t->live--;
  free(p);
}

static void *t_calloc(size_t n, size_t size, void *ctx) {
  void *p;
  if (size && n > SIZE_MAX / size)
    return NULL;
  p = t_malloc(n * size, ctx);
  if (p)
    memset(p, 0, n * size);
  return p;
}

static void *t_realloc(void *ptr, size_t size, void *ctx) {
  void *q;
  size_t old;
  if (!ptr)
    return t_malloc(size, ctx);
  q = t_malloc(size, ctx);
  if (!q)
    return NULL;
  memcpy(&old, (unsigned char *)ptr - HDR, sizeof old);
  memcpy(q, ptr, old < size ? old : size);
  t_free(ptr, ctx);
  return q;
}

static smtpd_mem tracked(tracker *t) {
  smtpd_mem m = {t, t_malloc, t_free, t_calloc, t_realloc};
  return m;
}

/* ---- verify callback ---------------------------------------------------- */

typedef struct vstate {
  int calls;
  int verdict;              /* what to answer */
  smtpd_session *session;   /* as received */
  char mech[16];
  char authcid[300];
  char authzid[300];
  int had_authzid;
  char password[2048];
  size_t password_len;
  int nul_terminated;
} vstate;

static smtpd_verdict verify(smtpd_session *s, const char *mechanism,
                            const char *authcid, const char *authzid,
                            const char *password, size_t password_len,
                            void *ctx) {
  vstate *v = ctx;
  v->calls++;
  v->session = s;
  snprintf(v->mech, sizeof v->mech, "%s", mechanism);
  snprintf(v->authcid, sizeof v->authcid, "%s", authcid);
  v->had_authzid = authzid != NULL;
  snprintf(v->authzid, sizeof v->authzid, "%s", authzid ? authzid : "");
  v->password_len = password_len;
  if (password_len < sizeof v->password)
    memcpy(v->password, password, password_len);
  v->nul_terminated = password[password_len] == '\0';
  if (v->verdict != SMTPD_ACCEPT)
    return (smtpd_verdict)v->verdict; /* may be out of range on purpose */
  return strcmp(authcid, "user") == 0 &&
                 smtpd_consttime_equal(password, password_len, "secret", 6)
             ? SMTPD_ACCEPT
             : SMTPD_REJECT;
}

/* ---- fixture ------------------------------------------------------------ */

static tracker T;
static smtpd_mem M;
static vstate V;
static smtpd_sasl_backend *B;
static int session_token;
#define SESSION ((smtpd_session *)&session_token)

static const smtpd_sasl_channel TLS = {1, 0, 256, NULL, "192.0.2.1"};
static const smtpd_sasl_channel PLAINCH = {0, 0, 0, NULL, "192.0.2.1"};
static const smtpd_sasl_channel ALLOWED = {0, 1, 0, NULL, NULL};

static void setup(void) {
  memset(&T, 0, sizeof T);
  memset(&V, 0, sizeof V);
  M = tracked(&T);
  V.verdict = SMTPD_ACCEPT;
  ck_assert_int_eq(smtpd_sasl_builtin_new(&B, &M, verify, &V), SMTPD_OK);
  ck_assert_ptr_nonnull(B);
}

static void teardown(void) {
  ck_assert_int_eq(smtpd_sasl_builtin_del(B), SMTPD_OK);
  B = NULL;
  ck_assert_int_eq(T.live, 0);
}

/* start_ir - start with an initial response of len octets. */
static int start_ir(const smtpd_sasl_channel *ch, const char *mech,
                    const void *resp, size_t len, void **x,
                    smtpd_sasl_out *out) {
  return B->start(B->ctx, SESSION, ch, mech, resp, len, 1, x, out);
}

static int step(void *x, const void *resp, size_t len, smtpd_sasl_out *out) {
  return B->step(x, resp, len, out);
}

/* plain - a one-shot PLAIN exchange; disposes of it; returns the status. */
static int plain(const smtpd_sasl_channel *ch, const void *msg, size_t len) {
  void *x = NULL;
  smtpd_sasl_out out;
  int st = start_ir(ch, "PLAIN", msg, len, &x, &out);
  B->dispose(x);
  return st;
}

#define LIT(s) (s), (sizeof(s) - 1)

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_new_del_arguments) {
  smtpd_sasl_backend *b = (smtpd_sasl_backend *)&session_token;
  smtpd_mem bad = M;
  ck_assert_int_eq(smtpd_sasl_builtin_new(NULL, NULL, verify, NULL),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_sasl_builtin_new(&b, NULL, NULL, NULL),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_eq(b, (smtpd_sasl_backend *)&session_token); /* untouched */
  bad.calloc = NULL;
  ck_assert_int_eq(smtpd_sasl_builtin_new(&b, &bad, verify, NULL),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_sasl_builtin_del(NULL), SMTPD_OK);
  /* libc allocator */
  ck_assert_int_eq(smtpd_sasl_builtin_new(&b, NULL, verify, NULL), SMTPD_OK);
  ck_assert_uint_eq(b->version, SMTPD_SASL_BACKEND_VERSION);
  ck_assert_ptr_nonnull(b->mechanisms);
  ck_assert_ptr_nonnull(b->start);
  ck_assert_ptr_nonnull(b->step);
  ck_assert_ptr_nonnull(b->resume);
  ck_assert_ptr_nonnull(b->dispose);
  ck_assert_ptr_nonnull(b->destroy);
  ck_assert_int_eq(smtpd_sasl_builtin_del(b), SMTPD_OK);
}
END_TEST

START_TEST(test_backend_del) {
  char buf[64];
  smtpd_sasl_backend_del(NULL); /* nothing happens */
  ck_assert_int_eq(T.live, 1);
  ck_assert_int_eq(B->mechanisms(B->ctx, &TLS, buf, sizeof buf), 11);
  /* the generic del frees a builtin through its destroy */
  smtpd_sasl_backend_del(B);
  B = NULL;
  ck_assert_int_eq(T.live, 0);
  /* a second one, with libc memory (ASan checks this one) */
  ck_assert_int_eq(smtpd_sasl_builtin_new(&B, NULL, verify, &V), SMTPD_OK);
  smtpd_sasl_backend_del(B);
  B = NULL;
}
END_TEST

static int h_mechanisms(void *ctx, const smtpd_sasl_channel *ch, char *buf,
                        size_t cap) {
  (void)ctx;
  (void)ch;
  if (cap)
    buf[0] = '\0';
  return 0;
}

static void h_dispose(void *exch) {
  (void)exch;
}

START_TEST(test_del_refuses_foreign) {
  smtpd_sasl_backend copy = *B, host;
  char buf[64];
  /* a copy of a builtin table is not the builtin */
  ck_assert_int_eq(smtpd_sasl_builtin_del(&copy), SMTPD_ERR_INVALID_ARGUMENT);
  smtpd_sasl_backend_del(&copy);
  ck_assert_int_eq(T.live, 1);
  /* neither is a host's table pointing at itself, nor one whose destroy
   * is someone else's */
  memset(&host, 0, sizeof host);
  host.version = SMTPD_SASL_BACKEND_VERSION;
  host.ctx = &host;
  host.mechanisms = h_mechanisms;
  host.dispose = h_dispose;
  ck_assert_int_eq(smtpd_sasl_builtin_del(&host), SMTPD_ERR_INVALID_ARGUMENT);
  smtpd_sasl_backend_del(&host);
  ck_assert_int_eq(host.mechanisms(host.ctx, &TLS, buf, sizeof buf), 0);
  /* a version 1 table has no destroy, whatever follows it in memory */
  copy.version = 1;
  ck_assert_int_eq(smtpd_sasl_builtin_del(&copy), SMTPD_ERR_INVALID_ARGUMENT);
  B->version = 1;
  ck_assert_int_eq(smtpd_sasl_builtin_del(B), SMTPD_ERR_INVALID_ARGUMENT);
  smtpd_sasl_backend_del(B);
  B->version = SMTPD_SASL_BACKEND_VERSION;
  ck_assert_int_eq(T.live, 1);
  ck_assert_int_eq(B->mechanisms(B->ctx, &TLS, buf, sizeof buf), 11);
}
END_TEST

START_TEST(test_mechanisms) {
  char buf[64];
  memset(buf, 'x', sizeof buf);
  ck_assert_int_eq(B->mechanisms(B->ctx, &PLAINCH, buf, sizeof buf), 0);
  ck_assert_str_eq(buf, "");
  ck_assert_int_eq(B->mechanisms(B->ctx, &TLS, buf, sizeof buf), 11);
  ck_assert_str_eq(buf, "PLAIN LOGIN");
  ck_assert_int_eq(B->mechanisms(B->ctx, &ALLOWED, buf, sizeof buf), 11);
  ck_assert_str_eq(buf, "PLAIN LOGIN");
  /* snprintf style: truncated, still terminated, full length returned */
  ck_assert_int_eq(B->mechanisms(B->ctx, &TLS, buf, 6), 11);
  ck_assert_str_eq(buf, "PLAIN");
  ck_assert_int_eq(B->mechanisms(B->ctx, &TLS, NULL, 0), 11);
  ck_assert_int_eq(B->mechanisms(B->ctx, NULL, buf, sizeof buf),
                   SMTPD_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_plain_good) {
  void *x = NULL;
  smtpd_sasl_out out;
  ck_assert_int_eq(start_ir(&TLS, "PLAIN", LIT("\0user\0secret"), &x, &out),
                   SMTPD_SASL_OK);
  ck_assert_ptr_nonnull(x);
  ck_assert_str_eq(out.authcid, "user");
  ck_assert_ptr_null(out.authzid);
  ck_assert_ptr_null(out.reason);
  ck_assert_int_eq(V.calls, 1);
  ck_assert_ptr_eq(V.session, SESSION);
  ck_assert_str_eq(V.mech, "PLAIN");
  ck_assert_str_eq(V.authcid, "user");
  ck_assert_int_eq(V.had_authzid, 0);
  ck_assert_uint_eq(V.password_len, 6);
  ck_assert_int_eq(memcmp(V.password, "secret", 6), 0);
  ck_assert_int_eq(V.nul_terminated, 1);
  B->dispose(x);
  ck_assert_int_eq(T.live, 1); /* the backend alone */
}
END_TEST

START_TEST(test_plain_bad_password) {
  void *x = NULL;
  smtpd_sasl_out out;
  ck_assert_int_eq(start_ir(&TLS, "PLAIN", LIT("\0user\0secreT"), &x, &out),
                   SMTPD_SASL_FAIL);
  ck_assert_str_eq(out.reason, "authentication failure");
  ck_assert_str_eq(out.authcid, "user");
  ck_assert_int_eq(V.calls, 1);
  /* nothing more is accepted on a finished exchange */
  ck_assert_int_eq(step(x, LIT("\0user\0secret"), &out), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(V.calls, 1);
  B->dispose(x);
  ck_assert_int_eq(plain(&TLS, LIT("\0nobody\0secret")), SMTPD_SASL_FAIL);
}
END_TEST

START_TEST(test_plain_authzid) {
  void *x = NULL;
  smtpd_sasl_out out;
  ck_assert_int_eq(
      start_ir(&TLS, "PLAIN", LIT("admin\0user\0secret"), &x, &out),
      SMTPD_SASL_OK);
  ck_assert_str_eq(out.authcid, "user");
  ck_assert_str_eq(out.authzid, "admin");
  ck_assert_int_eq(V.had_authzid, 1);
  ck_assert_str_eq(V.authzid, "admin");
  B->dispose(x);
}
END_TEST

START_TEST(test_plain_nul_count) {
  ck_assert_int_eq(plain(&TLS, LIT("user\0secret")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, LIT("usersecret")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, LIT("\0user\0secret\0")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, LIT("a\0user\0sec\0ret")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, "", 0), SMTPD_SASL_BADPROT); /* "=" */
  ck_assert_int_eq(plain(&TLS, LIT("\0")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(V.calls, 0);
}
END_TEST

START_TEST(test_plain_empty_fields) {
  ck_assert_int_eq(plain(&TLS, LIT("\0\0secret")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, LIT("\0user\0")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, LIT("\0\0")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(V.calls, 0);
}
END_TEST

START_TEST(test_control_characters) {
  void *x = NULL;
  smtpd_sasl_out out;
  ck_assert_int_eq(
      start_ir(&TLS, "PLAIN", LIT("\0a\r\nReceived: x\0secret"), &x, &out),
      SMTPD_SASL_BADPROT);
  ck_assert_ptr_null(out.authcid);
  ck_assert_ptr_null(out.authzid);
  B->dispose(x);
  ck_assert_int_eq(plain(&TLS, LIT("\0us\ter\0secret")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, LIT("\0user\x7f\0secret")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, LIT("ad\nmin\0user\0secret")),
                   SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, LIT("\0\x1buser\0secret")), SMTPD_SASL_BADPROT);
  /* malformed UTF-8: stray continuation, overlong '/', surrogate */
  ck_assert_int_eq(plain(&TLS, LIT("\0us\x80r\0secret")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, LIT("\0\xc0\xafx\0secret")), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(plain(&TLS, LIT("\0\xed\xa0\x80x\0secret")),
                   SMTPD_SASL_BADPROT);
  /* LOGIN user name with a line break */
  x = NULL;
  ck_assert_int_eq(start_ir(&TLS, "LOGIN", LIT("us\r\ner"), &x, &out),
                   SMTPD_SASL_BADPROT);
  ck_assert_ptr_null(out.authcid);
  B->dispose(x);
  ck_assert_int_eq(V.calls, 0);
  /* a control byte in the password is the host's business */
  ck_assert_int_eq(plain(&TLS, LIT("\0user\0sec\tret")), SMTPD_SASL_FAIL);
  ck_assert_int_eq(V.calls, 1);
}
END_TEST

START_TEST(test_utf8_identity) {
  void *x = NULL;
  smtpd_sasl_out out;
  V.verdict = SMTPD_REJECT;
  ck_assert_int_eq(
      start_ir(&TLS, "PLAIN", LIT("\0j\xc3\xbcrgen\xf0\x9f\x93\xa7\0pw"), &x,
               &out),
      SMTPD_SASL_FAIL);
  ck_assert_str_eq(V.authcid, "j\xc3\xbcrgen\xf0\x9f\x93\xa7");
  B->dispose(x);
}
END_TEST

START_TEST(test_lengths) {
  uint8_t msg[2000];
  size_t n;
  /* authcid of 255 octets passes, 256 does not */
  V.verdict = SMTPD_REJECT;
  msg[0] = 0;
  memset(msg + 1, 'u', 255);
  msg[256] = 0;
  memcpy(msg + 257, "pw", 2);
  ck_assert_int_eq(plain(&TLS, msg, 259), SMTPD_SASL_FAIL);
  ck_assert_uint_eq(strlen(V.authcid), 255);
  memset(msg + 1, 'u', 256);
  msg[257] = 0;
  memcpy(msg + 258, "pw", 2);
  ck_assert_int_eq(plain(&TLS, msg, 260), SMTPD_SASL_BADPROT);
  /* authzid of 256 */
  memset(msg, 'z', 256);
  msg[256] = 0;
  memcpy(msg + 257, "u\0pw", 4);
  ck_assert_int_eq(plain(&TLS, msg, 261), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(V.calls, 1);
  /* password: 1024 octets pass, 1025 do not */
  memcpy(msg, "\0u\0", 3);
  memset(msg + 3, 'p', 1025);
  n = 3 + 1024;
  ck_assert_int_eq(plain(&TLS, msg, n), SMTPD_SASL_FAIL);
  ck_assert_uint_eq(V.password_len, 1024);
  ck_assert_int_eq(plain(&TLS, msg, n + 1), SMTPD_SASL_BADPROT);
  ck_assert_int_eq(V.calls, 2);
}
END_TEST

START_TEST(test_plain_no_initial_response) {
  void *x = NULL;
  smtpd_sasl_out out;
  ck_assert_int_eq(B->start(B->ctx, SESSION, &TLS, "PLAIN", NULL, 0, 0, &x,
                            &out),
                   SMTPD_SASL_CONTINUE);
  ck_assert_ptr_nonnull(out.challenge);
  ck_assert_uint_eq(out.challenge_len, 0);
  ck_assert_int_eq(V.calls, 0);
  ck_assert_int_eq(step(x, LIT("\0user\0secret"), &out), SMTPD_SASL_OK);
  ck_assert_str_eq(out.authcid, "user");
  B->dispose(x);
  /* the same with a malformed answer */
  x = NULL;
  ck_assert_int_eq(B->start(B->ctx, SESSION, &TLS, "PLAIN", NULL, 0, 0, &x,
                            &out),
                   SMTPD_SASL_CONTINUE);
  ck_assert_int_eq(step(x, LIT("user\0secret"), &out), SMTPD_SASL_BADPROT);
  B->dispose(x);
}
END_TEST

START_TEST(test_login_two_steps) {
  void *x = NULL;
  smtpd_sasl_out out;
  ck_assert_int_eq(B->start(B->ctx, SESSION, &TLS, "LOGIN", NULL, 0, 0, &x,
                            &out),
                   SMTPD_SASL_CONTINUE);
  ck_assert_uint_eq(out.challenge_len, 9);
  ck_assert_int_eq(memcmp(out.challenge, "Username:", 9), 0);
  ck_assert_int_eq(step(x, LIT("user"), &out), SMTPD_SASL_CONTINUE);
  ck_assert_uint_eq(out.challenge_len, 9);
  ck_assert_int_eq(memcmp(out.challenge, "Password:", 9), 0);
  ck_assert_int_eq(V.calls, 0);
  ck_assert_int_eq(step(x, LIT("secret"), &out), SMTPD_SASL_OK);
  ck_assert_str_eq(out.authcid, "user");
  ck_assert_ptr_null(out.authzid);
  ck_assert_str_eq(V.mech, "LOGIN");
  ck_assert_int_eq(V.nul_terminated, 1);
  B->dispose(x);

  /* wrong password */
  x = NULL;
  ck_assert_int_eq(B->start(B->ctx, SESSION, &TLS, "LOGIN", NULL, 0, 0, &x,
                            &out),
                   SMTPD_SASL_CONTINUE);
  ck_assert_int_eq(step(x, LIT("user"), &out), SMTPD_SASL_CONTINUE);
  ck_assert_int_eq(step(x, LIT("wrong"), &out), SMTPD_SASL_FAIL);
  ck_assert_str_eq(out.reason, "authentication failure");
  B->dispose(x);
}
END_TEST

START_TEST(test_login_initial_response_and_bad_input) {
  void *x = NULL;
  smtpd_sasl_out out;
  /* AUTH LOGIN dXNlcg== : the user comes first */
  ck_assert_int_eq(start_ir(&TLS, "LOGIN", LIT("user"), &x, &out),
                   SMTPD_SASL_CONTINUE);
  ck_assert_int_eq(memcmp(out.challenge, "Password:", 9), 0);
  ck_assert_int_eq(step(x, LIT("secret"), &out), SMTPD_SASL_OK);
  B->dispose(x);
  /* empty user, empty password, NUL inside the password */
  x = NULL;
  ck_assert_int_eq(start_ir(&TLS, "LOGIN", "", 0, &x, &out),
                   SMTPD_SASL_BADPROT);
  B->dispose(x);
  x = NULL;
  ck_assert_int_eq(start_ir(&TLS, "LOGIN", LIT("user"), &x, &out),
                   SMTPD_SASL_CONTINUE);
  ck_assert_int_eq(step(x, "", 0, &out), SMTPD_SASL_BADPROT);
  B->dispose(x);
  x = NULL;
  ck_assert_int_eq(start_ir(&TLS, "LOGIN", LIT("user"), &x, &out),
                   SMTPD_SASL_CONTINUE);
  ck_assert_int_eq(step(x, LIT("sec\0ret"), &out), SMTPD_SASL_BADPROT);
  B->dispose(x);
  ck_assert_int_eq(V.calls, 1);
}
END_TEST

START_TEST(test_channel_without_tls) {
  void *x = (void *)&session_token;
  smtpd_sasl_out out;
  ck_assert_int_eq(start_ir(&PLAINCH, "PLAIN", LIT("\0user\0secret"), &x,
                            &out),
                   SMTPD_SASL_ENCRYPT);
  ck_assert_ptr_null(x);
  ck_assert_int_eq(B->start(B->ctx, SESSION, &PLAINCH, "LOGIN", NULL, 0, 0,
                            &x, &out),
                   SMTPD_SASL_ENCRYPT);
  ck_assert_ptr_null(x);
  ck_assert_int_eq(V.calls, 0);
  ck_assert_int_eq(T.live, 1); /* the backend alone */
  /* an unknown mechanism is unknown whatever the channel */
  ck_assert_int_eq(B->start(B->ctx, SESSION, &PLAINCH, "CRAM-MD5", NULL, 0,
                            0, &x, &out),
                   SMTPD_SASL_NOMECH);
  ck_assert_int_eq(B->start(B->ctx, SESSION, &TLS, "CRAM-MD5", NULL, 0, 0,
                            &x, &out),
                   SMTPD_SASL_NOMECH);
  ck_assert_int_eq(B->start(B->ctx, SESSION, &TLS, "PLAINX", NULL, 0, 0, &x,
                            &out),
                   SMTPD_SASL_NOMECH);
  ck_assert_int_eq(B->start(B->ctx, SESSION, &TLS, "PLAI", NULL, 0, 0, &x,
                            &out),
                   SMTPD_SASL_NOMECH);
  ck_assert_ptr_null(x);
}
END_TEST

START_TEST(test_allow_plaintext) {
  ck_assert_int_eq(plain(&ALLOWED, LIT("\0user\0secret")), SMTPD_SASL_OK);
  /* case-insensitive mechanism name */
  {
    void *x = NULL;
    smtpd_sasl_out out;
    ck_assert_int_eq(start_ir(&ALLOWED, "plain", LIT("\0user\0secret"), &x,
                              &out),
                     SMTPD_SASL_OK);
    B->dispose(x);
  }
}
END_TEST

START_TEST(test_deferral) {
  static const int verdicts[] = {SMTPD_ACCEPT, SMTPD_REJECT, SMTPD_TEMPFAIL,
                                 SMTPD_DEFER, 42};
  static const int expect[] = {SMTPD_SASL_OK, SMTPD_SASL_FAIL,
                               SMTPD_SASL_TEMPFAIL, SMTPD_SASL_FAIL,
                               SMTPD_SASL_FAIL};
  for (size_t i = 0; i < sizeof verdicts / sizeof verdicts[0]; i++) {
    void *x = NULL;
    smtpd_sasl_out out;
    V.verdict = SMTPD_DEFER;
    ck_assert_int_eq(start_ir(&TLS, "PLAIN", LIT("admin\0user\0pw"), &x,
                              &out),
                     SMTPD_SASL_DEFER);
    ck_assert_ptr_null(out.authcid);
    /* no answer is expected while deferred */
    if (i == 0) {
      ck_assert_int_eq(step(x, LIT("\0user\0pw"), &out), SMTPD_SASL_BADPROT);
      B->dispose(x);
      continue;
    }
    ck_assert_int_eq(B->resume(x, verdicts[i], &out), expect[i]);
    if (expect[i] == SMTPD_SASL_OK) {
      ck_assert_str_eq(out.authcid, "user");
      ck_assert_str_eq(out.authzid, "admin");
    }
    if (expect[i] == SMTPD_SASL_FAIL)
      ck_assert_str_eq(out.reason, "authentication failure");
    /* a second resume finds nothing deferred */
    ck_assert_int_eq(B->resume(x, SMTPD_ACCEPT, &out), SMTPD_SASL_FAIL);
    B->dispose(x);
  }
  /* the accept case, after the misuse checks above */
  {
    void *x = NULL;
    smtpd_sasl_out out;
    ck_assert_int_eq(start_ir(&TLS, "PLAIN", LIT("admin\0user\0pw"), &x,
                              &out),
                     SMTPD_SASL_DEFER);
    ck_assert_int_eq(B->resume(x, SMTPD_ACCEPT, &out), SMTPD_SASL_OK);
    ck_assert_str_eq(out.authcid, "user");
    ck_assert_str_eq(out.authzid, "admin");
    B->dispose(x);
  }
  /* LOGIN deferred on its last step */
  {
    void *x = NULL;
    smtpd_sasl_out out;
    ck_assert_int_eq(start_ir(&TLS, "LOGIN", LIT("user"), &x, &out),
                     SMTPD_SASL_CONTINUE);
    ck_assert_int_eq(step(x, LIT("pw"), &out), SMTPD_SASL_DEFER);
    ck_assert_int_eq(B->resume(x, SMTPD_TEMPFAIL, &out), SMTPD_SASL_TEMPFAIL);
    B->dispose(x);
  }
  /* resume on an exchange that never deferred */
  {
    void *x = NULL;
    smtpd_sasl_out out;
    V.verdict = SMTPD_ACCEPT;
    ck_assert_int_eq(B->start(B->ctx, SESSION, &TLS, "LOGIN", NULL, 0, 0, &x,
                              &out),
                     SMTPD_SASL_CONTINUE);
    ck_assert_int_eq(B->resume(x, SMTPD_ACCEPT, &out), SMTPD_SASL_FAIL);
    B->dispose(x);
  }
  ck_assert_int_eq(T.live, 1); /* the backend alone */
}
END_TEST

START_TEST(test_verify_tempfail_and_garbage) {
  V.verdict = SMTPD_TEMPFAIL;
  ck_assert_int_eq(plain(&TLS, LIT("\0user\0secret")), SMTPD_SASL_TEMPFAIL);
  V.verdict = 42;
  ck_assert_int_eq(plain(&TLS, LIT("\0user\0secret")), SMTPD_SASL_FAIL);
  V.verdict = -1;
  ck_assert_int_eq(plain(&TLS, LIT("\0user\0secret")), SMTPD_SASL_FAIL);
}
END_TEST

START_TEST(test_password_wiped) {
  T.secret = "s3cr3t-pw";
  ck_assert_int_eq(plain(&TLS, LIT("\0user\0s3cr3t-pw")), SMTPD_SASL_FAIL);
  {
    void *x = NULL;
    smtpd_sasl_out out;
    ck_assert_int_eq(start_ir(&TLS, "LOGIN", LIT("user"), &x, &out),
                     SMTPD_SASL_CONTINUE);
    ck_assert_int_eq(step(x, LIT("s3cr3t-pw"), &out), SMTPD_SASL_FAIL);
    B->dispose(x);
  }
  ck_assert_int_eq(V.calls, 2);
  ck_assert_int_eq(memcmp(V.password, "s3cr3t-pw", 9), 0); /* it was seen */
  ck_assert_int_eq(T.saw_secret, 0);                       /* then wiped */
  ck_assert_int_gt(T.count, 0);
}
END_TEST

START_TEST(test_dispose_null_and_midway) {
  void *x = NULL;
  smtpd_sasl_out out;
  B->dispose(NULL);
  ck_assert_int_eq(B->start(B->ctx, SESSION, &TLS, "LOGIN", NULL, 0, 0, &x,
                            &out),
                   SMTPD_SASL_CONTINUE);
  ck_assert_int_eq(step(x, LIT("user"), &out), SMTPD_SASL_CONTINUE);
  ck_assert_int_eq(T.live, 2); /* backend + exchange */
  B->dispose(x); /* cancelled ("*") */
  ck_assert_int_eq(T.live, 1);
  ck_assert_int_eq(V.calls, 0);
}
END_TEST

START_TEST(test_consttime_equal) {
  ck_assert_int_eq(smtpd_consttime_equal("secret", 6, "secret", 6), 1);
  ck_assert_int_eq(smtpd_consttime_equal("secret", 6, "secreT", 6), 0);
  ck_assert_int_eq(smtpd_consttime_equal("secret", 6, "Secret", 6), 0);
  ck_assert_int_eq(smtpd_consttime_equal("secret", 6, "secret!", 7), 0);
  ck_assert_int_eq(smtpd_consttime_equal("secret!", 7, "secret", 6), 0);
  ck_assert_int_eq(smtpd_consttime_equal("secret", 6, "", 0), 0);
  ck_assert_int_eq(smtpd_consttime_equal("", 0, "", 0), 1);
  ck_assert_int_eq(smtpd_consttime_equal(NULL, 0, NULL, 0), 1);
  ck_assert_int_eq(smtpd_consttime_equal(NULL, 3, "abc", 3), 0);
  ck_assert_int_eq(smtpd_consttime_equal("a\0b", 3, "a\0c", 3), 0);
  ck_assert_int_eq(smtpd_consttime_equal("a\0b", 3, "a\0b", 3), 1);
  /* "aaa" vs "aa": the shorter one is not padded into equality */
  ck_assert_int_eq(smtpd_consttime_equal("aaa", 3, "aa", 2), 0);
}
END_TEST

/* Fail the Nth allocation of a whole scenario, for every N until the
 * scenario runs through: each failure is a clean error, nothing leaks. */
START_TEST(test_failing_allocator) {
  int saw_nomem = 0, saw_tempfail = 0, completed = 0;
  for (long n = 1; n < 20 && !completed; n++) {
    tracker t;
    smtpd_mem m;
    vstate v;
    smtpd_sasl_backend *b = NULL;
    void *x = NULL;
    smtpd_sasl_out out;
    int st, rc;
    memset(&t, 0, sizeof t);
    memset(&v, 0, sizeof v);
    t.fail_at = n;
    m = tracked(&t);
    rc = smtpd_sasl_builtin_new(&b, &m, verify, &v);
    if (rc != SMTPD_OK) {
      ck_assert_int_eq(rc, SMTPD_ERR_NOMEM);
      ck_assert_ptr_null(b);
      ck_assert_int_eq(t.live, 0);
      saw_nomem = 1;
      continue;
    }
    st = b->start(b->ctx, SESSION, &TLS, "LOGIN", (const uint8_t *)"user", 4,
                  1, &x, &out);
    if (st == SMTPD_SASL_CONTINUE)
      st = b->step(x, (const uint8_t *)"secret", 6, &out);
    if (st == SMTPD_SASL_TEMPFAIL) {
      saw_tempfail = 1;
      ck_assert_int_eq(v.calls, 0);
    } else {
      ck_assert_int_eq(st, SMTPD_SASL_OK);
      ck_assert_str_eq(out.authcid, "user");
      completed = 1;
    }
    b->dispose(x);
    ck_assert_int_eq(smtpd_sasl_builtin_del(b), SMTPD_OK);
    ck_assert_int_eq(t.live, 0);
  }
  ck_assert(saw_nomem);
  ck_assert(saw_tempfail);
  ck_assert(completed);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("sasl_builtin");
  TCase *tc = tcase_create("backend");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_new_del_arguments);
  tcase_add_test(tc, test_backend_del);
  tcase_add_test(tc, test_del_refuses_foreign);
  tcase_add_test(tc, test_mechanisms);
  tcase_add_test(tc, test_plain_good);
  tcase_add_test(tc, test_plain_bad_password);
  tcase_add_test(tc, test_plain_authzid);
  tcase_add_test(tc, test_plain_nul_count);
  tcase_add_test(tc, test_plain_empty_fields);
  tcase_add_test(tc, test_control_characters);
  tcase_add_test(tc, test_utf8_identity);
  tcase_add_test(tc, test_lengths);
  tcase_add_test(tc, test_plain_no_initial_response);
  tcase_add_test(tc, test_login_two_steps);
  tcase_add_test(tc, test_login_initial_response_and_bad_input);
  tcase_add_test(tc, test_channel_without_tls);
  tcase_add_test(tc, test_allow_plaintext);
  tcase_add_test(tc, test_deferral);
  tcase_add_test(tc, test_verify_tempfail_and_garbage);
  tcase_add_test(tc, test_password_wiped);
  tcase_add_test(tc, test_dispose_null_and_midway);
  tcase_add_test(tc, test_failing_allocator);
  suite_add_tcase(s, tc);
  tc = tcase_create("consttime");
  tcase_add_test(tc, test_consttime_equal);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  int failed;
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
