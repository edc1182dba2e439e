/*
 * check_sasl_session.c - AUTH through a real session (lib/session.c,
 * lib/auth.c) with the built-in PLAIN/LOGIN backend: the exact replies,
 * the events, deferral, and the same conversation split byte by byte.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/sasl.h"

/* ---- host --------------------------------------------------------------- */

typedef struct host {
  int verdict;       /* what verify answers for the right password */
  int verify_calls;
  int ok_events, fail_events, tls_required;
  char ok_authcid[300], ok_authzid[300], ok_mech[32];
  int fail_code;
  int fail_had_authcid;
  char fail_reason[200];
} host;

static host H;

static smtpd_verdict verify(smtpd_session *s, const char *mechanism,
                            const char *authcid, const char *authzid,
                            const char *password, size_t password_len,
                            void *ctx) {
  host *h = ctx;
  (void)s;
  (void)mechanism;
  (void)authzid;
  h->verify_calls++;
  if (strcmp(authcid, "user") != 0 ||
      !smtpd_consttime_equal(password, password_len, "secret", 6))
    return SMTPD_REJECT;
  return (smtpd_verdict)h->verdict;
}

static void on_auth_ok(smtpd_session *s, const smtpd_auth_result *r,
                       void *ud) {
  (void)s;
  (void)ud;
  H.ok_events++;
  snprintf(H.ok_mech, sizeof H.ok_mech, "%s", r->mechanism);
  snprintf(H.ok_authcid, sizeof H.ok_authcid, "%s",
           r->authcid ? r->authcid : "(null)");
  snprintf(H.ok_authzid, sizeof H.ok_authzid, "%s",
           r->authzid ? r->authzid : "(null)");
}

static void on_auth_fail(smtpd_session *s, const smtpd_auth_result *r,
                         void *ud) {
  (void)s;
  (void)ud;
  H.fail_events++;
  H.fail_code = r->code;
  H.fail_had_authcid = r->authcid != NULL;
  if (r->authcid)
    ck_assert(strpbrk(r->authcid, "\r\n") == NULL);
  snprintf(H.fail_reason, sizeof H.fail_reason, "%s",
           r->reason ? r->reason : "(null)");
}

static void on_tls_required(smtpd_session *s, const char *command,
                            void *ud) {
  (void)s;
  (void)command;
  (void)ud;
  H.tls_required++;
}

static smtpd_config *C;
static smtpd_sasl_backend *B;
static smtpd_session *S;

static void make(int plaintext_allowed) {
  smtpd_callbacks cb;
  memset(&H, 0, sizeof H);
  H.verdict = SMTPD_ACCEPT;
  ck_assert_int_eq(smtpd_config_new(&C, NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_hostname(C, "mx.example.org"), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_option(C, SMTPD_OPT_STARTTLS, 1),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_option(C, SMTPD_OPT_AUTH_PLAINTEXT,
                                           plaintext_allowed),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_sasl_builtin_new(&B, NULL, verify, &H), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_sasl(C, B), SMTPD_OK);
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_auth_ok = on_auth_ok;
  cb.on_auth_fail = on_auth_fail;
  cb.on_tls_required = on_tls_required;
  ck_assert_int_eq(smtpd_session_new(&S, C, &cb, NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_set_client(S, "192.0.2.1", NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_start(S), SMTPD_OK);
}

static void teardown(void) {
  smtpd_session_del(S);
  S = NULL;
  smtpd_config_del(C);
  C = NULL;
  ck_assert_int_eq(smtpd_sasl_builtin_del(B), SMTPD_OK);
  B = NULL;
}

/* take - everything queued, as a string (consumed). */
static char out[16384];
static const char *take(void) {
  size_t n = 0;
  const uint8_t *p;
  size_t k;
  while ((k = smtpd_session_output(S, &p)) > 0) {
    ck_assert_uint_lt(n + k, sizeof out);
    memcpy(out + n, p, k);
    n += k;
    ck_assert_int_eq(smtpd_session_consume(S, k), SMTPD_OK);
  }
  out[n] = '\0';
  return out;
}

/* say - feed a line (CRLF added) and return the replies. When split, one
 * octet per feed. */
static int split_feed;
static const char *say(const char *line) {
  char buf[16384];
  size_t n = strlen(line);
  ck_assert_uint_lt(n + 2, sizeof buf);
  memcpy(buf, line, n);
  memcpy(buf + n, "\r\n", 2);
  n += 2;
  if (split_feed) {
    for (size_t i = 0; i < n; i++)
      ck_assert_int_eq(smtpd_session_feed(S, buf + i, 1), 1);
  } else {
    ck_assert_int_eq(smtpd_session_feed(S, buf, n), (ptrdiff_t)n);
  }
  return take();
}

static void ehlo(void) {
  take(); /* greeting */
  ck_assert_ptr_nonnull(strstr(say("EHLO client.example"), "250 "));
}

static void go_tls(void) {
  smtpd_tls_info info;
  ck_assert_str_eq(say("STARTTLS"), "220 2.0.0 Ready to start TLS\r\n");
  memset(&info, 0, sizeof info);
  info.protocol = "TLSv1.3";
  info.cipher = "TLS_AES_256_GCM_SHA384";
  info.cipher_bits = 256;
  info.alg_bits = 256;
  ck_assert_int_eq(smtpd_session_tls_established(S, &info), SMTPD_OK);
  take();
}

#define AUTH_OK "235 2.7.0 Authentication successful\r\n"
#define AUTH_FAILED \
  "535 5.7.8 Error: authentication failed: authentication failure\r\n"
#define NEED_TLS \
  "504 5.5.4 Encryption required for requested authentication mechanism\r\n"
#define ABORTED "501 5.7.0 Authentication aborted\r\n"

/* base64: "\0user\0secret" AHVzZXIAc2VjcmV0, "\0user\0wrong"
 * AHVzZXIAd3Jvbmc=, "user" dXNlcg==, "secret" c2VjcmV0 */

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_plain_channel_refuses) {
  const char *r;
  make(0);
  take();
  r = say("EHLO client.example");
  ck_assert_ptr_null(strstr(r, "AUTH"));
  ck_assert_ptr_nonnull(strstr(r, "STARTTLS"));
  ck_assert_str_eq(say("AUTH PLAIN AHVzZXIAc2VjcmV0"), NEED_TLS);
  ck_assert_str_eq(say("AUTH LOGIN"), NEED_TLS);
  ck_assert_int_eq(H.tls_required, 2);
  ck_assert_int_eq(H.verify_calls, 0);
  ck_assert_ptr_null(smtpd_session_auth_user(S));
  ck_assert_str_eq(say("AUTH CRAM-MD5"),
                   "504 5.5.4 Unsupported authentication mechanism\r\n");
}
END_TEST

START_TEST(test_plain_under_tls) {
  const char *r;
  make(0);
  ehlo();
  go_tls();
  r = say("EHLO client.example");
  ck_assert_ptr_nonnull(strstr(r, "250-AUTH PLAIN LOGIN\r\n"));
  ck_assert_str_eq(say("AUTH PLAIN AHVzZXIAc2VjcmV0"), AUTH_OK);
  ck_assert_int_eq(H.ok_events, 1);
  ck_assert_str_eq(H.ok_mech, "PLAIN");
  ck_assert_str_eq(H.ok_authcid, "user");
  ck_assert_str_eq(H.ok_authzid, "(null)");
  ck_assert_str_eq(smtpd_session_auth_user(S), "user");
  ck_assert_str_eq(smtpd_session_auth_mechanism(S), "PLAIN");
  ck_assert_str_eq(say("AUTH PLAIN AHVzZXIAc2VjcmV0"),
                   "503 5.5.1 Error: already authenticated\r\n");
}
END_TEST

START_TEST(test_wrong_password) {
  make(1);
  ehlo();
  ck_assert_str_eq(say("AUTH PLAIN AHVzZXIAd3Jvbmc="), AUTH_FAILED);
  ck_assert_int_eq(H.fail_events, 1);
  ck_assert_int_eq(H.fail_code, 535);
  ck_assert_str_eq(H.fail_reason, "authentication failure");
  /* the session stays usable */
  ck_assert_str_eq(say("AUTH PLAIN AHVzZXIAc2VjcmV0"), AUTH_OK);
}
END_TEST

START_TEST(test_login_and_cancel) {
  make(1);
  ehlo();
  ck_assert_str_eq(say("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
  ck_assert_str_eq(say("*"), ABORTED);
  ck_assert_int_eq(H.verify_calls, 0);
  ck_assert_str_eq(say("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
  ck_assert_str_eq(say("dXNlcg=="), "334 UGFzc3dvcmQ6\r\n");
  ck_assert_str_eq(say("*"), ABORTED);
  ck_assert_str_eq(say("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
  ck_assert_str_eq(say("dXNlcg=="), "334 UGFzc3dvcmQ6\r\n");
  ck_assert_str_eq(say("c2VjcmV0"), AUTH_OK);
  ck_assert_str_eq(H.ok_mech, "LOGIN");
  ck_assert_int_eq(H.verify_calls, 1);
}
END_TEST

START_TEST(test_plain_empty_challenge) {
  make(1);
  ehlo();
  ck_assert_str_eq(say("AUTH PLAIN"), "334 \r\n");
  ck_assert_str_eq(say("AHVzZXIAc2VjcmV0"), AUTH_OK);
}
END_TEST

START_TEST(test_malformed) {
  const char *r;
  make(1);
  ehlo();
  /* "user\0secret": one NUL */
  r = say("AUTH PLAIN dXNlcgBzZWNyZXQ=");
  ck_assert_msg(strncmp(r, "501 5.5.2 ", 10) == 0, "%s", r);
  /* "\0a\r\nReceived: x\0secret" */
  r = say("AUTH PLAIN AGENClJlY2VpdmVkOiB4AHNlY3JldA==");
  ck_assert_msg(strncmp(r, "501 5.5.2 ", 10) == 0, "%s", r);
  ck_assert_int_eq(H.fail_had_authcid, 0);
  ck_assert_int_eq(H.verify_calls, 0);
  ck_assert_int_eq(H.ok_events, 0);
  ck_assert_str_eq(say("AUTH PLAIN AHVzZXIAc2VjcmV0"), AUTH_OK);
}
END_TEST

START_TEST(test_deferred_verify) {
  const uint8_t *p;
  make(1);
  ehlo();
  H.verdict = SMTPD_DEFER;
  ck_assert_str_eq(say("AUTH PLAIN AHVzZXIAc2VjcmV0"), "");
  ck_assert(smtpd_session_is_paused(S));
  ck_assert_uint_eq(smtpd_session_output(S, &p), 0);
  ck_assert_int_eq(smtpd_session_resume(S, SMTPD_ACCEPT), SMTPD_OK);
  ck_assert_str_eq(take(), AUTH_OK);
  ck_assert_str_eq(smtpd_session_auth_user(S), "user");
}
END_TEST

START_TEST(test_deferred_reject) {
  make(1);
  ehlo();
  H.verdict = SMTPD_DEFER;
  ck_assert_str_eq(say("AUTH LOGIN dXNlcg=="), "334 UGFzc3dvcmQ6\r\n");
  ck_assert_str_eq(say("c2VjcmV0"), "");
  ck_assert_int_eq(smtpd_session_resume(S, SMTPD_REJECT), SMTPD_OK);
  ck_assert_str_eq(take(), AUTH_FAILED);
  ck_assert_ptr_null(smtpd_session_auth_user(S));
}
END_TEST

START_TEST(test_byte_by_byte) {
  make(1);
  split_feed = 1;
  ehlo();
  ck_assert_str_eq(say("AUTH PLAIN AHVzZXIAd3Jvbmc="), AUTH_FAILED);
  ck_assert_str_eq(say("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
  ck_assert_str_eq(say("*"), ABORTED);
  ck_assert_str_eq(say("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
  ck_assert_str_eq(say("dXNlcg=="), "334 UGFzc3dvcmQ6\r\n");
  ck_assert_str_eq(say("c2VjcmV0"), AUTH_OK);
  split_feed = 0;
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("sasl_session");
  TCase *tc = tcase_create("auth");
  tcase_add_checked_fixture(tc, NULL, teardown);
  tcase_add_test(tc, test_plain_channel_refuses);
  tcase_add_test(tc, test_plain_under_tls);
  tcase_add_test(tc, test_wrong_password);
  tcase_add_test(tc, test_login_and_cancel);
  tcase_add_test(tc, test_plain_empty_challenge);
  tcase_add_test(tc, test_malformed);
  tcase_add_test(tc, test_deferred_verify);
  tcase_add_test(tc, test_deferred_reject);
  tcase_add_test(tc, test_byte_by_byte);
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
