/*
 * policy_test.c - the unit test of policy.c, written as a user of the
 * installed libraries would write it: Check for the test cases,
 * libsmtpd-transcript to run canned SMTP conversations (the *.txt files
 * beside this one) against the policy's real callbacks, with the
 * server's own configuration.
 *
 *   run           one transcript against the policy, in one split
 *   on_paused     the "event loop" of the test: answers deferred lookups
 *   test_*        one transcript each, whole, byte by byte and in
 *                 7-octet pieces; test_broken_transcript_reports checks the
 *                 report of a deliberately failing one
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <smtpd/smtpd.h>
#include <smtpd/transcript.h>

#include "policy.h"

#ifndef POLICY_TEST_DIR
#error "POLICY_TEST_DIR must name the directory of the transcripts"
#endif

static const char *const users[] = {"alice@example.org", "bob@example.org",
                                    NULL};
static const char *const blocked[] = {"spam.example", NULL};
static const policy the_policy = {users, blocked, 2000, "lists.example.org"};

/* The directory the deferred lookups ask. */
static int directory_has(const char *address) {
  return strcmp(address, "team@lists.example.org") == 0;
}

/* The test's connection: the policy's state plus how slow the directory
 * is (slow: the first time the session pauses, the lookup has not
 * answered yet). */
typedef struct conn {
  policy_session ps;
  int slow;
  int pauses;
} conn;

/* on_paused - the policy deferred a recipient: do what the server's event
 * loop does when the lookup completes. */
static int on_paused(smtpd_session *s, void *ud) {
  conn *c = ud;
  const char *address = policy_pending(&c->ps);
  if (address == NULL)
    return SMTPD_ERR_INVALID_STATE; /* paused, but not for a lookup */
  if (c->slow && c->pauses++ == 0)
    return SMTPD_TRANSCRIPT_HOLD; /* not answered yet: stay paused */
  return smtpd_session_resume(s,
                              policy_lookup_done(&c->ps, s,
                                                 directory_has(address)));
}

/* run - NAME.txt against the policy with the server's config; the
 * report goes to report (stderr, so a failure is readable in the test
 * log, or a file the test reads). */
static int run(const char *name, smtpd_transcript_split split, int slow,
               FILE *report, smtpd_transcript_result *res) {
  smtpd_config *cfg;
  smtpd_callbacks cb;
  smtpd_transcript_opts opts;
  conn c;
  char path[1024];
  int rc;

  ck_assert_int_eq(smtpd_config_new(&cfg, NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_hostname(cfg, "mx.example.org"),
                   SMTPD_OK);
  policy_callbacks(&cb);
  memset(&c, 0, sizeof c);
  policy_session_init(&c.ps, &the_policy, 1);
  c.slow = slow;

  smtpd_transcript_opts_default(&opts);
  opts.split = split;
  opts.chunk = 7;
  opts.callbacks = &cb;
  opts.user_data = &c;
  opts.config = cfg;
  opts.on_paused = on_paused;
  opts.report = report;
  snprintf(path, sizeof path, "%s/%s", POLICY_TEST_DIR, name);
  rc = smtpd_transcript_run_file(path, &opts, res);
  smtpd_config_del(cfg);
  return rc;
}

/* passes - NAME.txt passes whole, byte by byte and in 7-octet pieces. */
static void passes(const char *name, int slow) {
  int split;
  for (split = SMTPD_TRANSCRIPT_SPLIT_WHOLE;
       split <= SMTPD_TRANSCRIPT_SPLIT_CHUNK; split++) {
    smtpd_transcript_result res;
    int rc = run(name, (smtpd_transcript_split)split, slow, stderr, &res);
    ck_assert_msg(rc == SMTPD_OK, "%s (split %s) line %u: %s", name,
                  res.split, res.line, res.message);
  }
}

START_TEST(test_accept) { passes("accept.txt", 0); }
END_TEST

START_TEST(test_unknown_recipient) { passes("unknown-recipient.txt", 0); }
END_TEST

START_TEST(test_blocked_sender) { passes("blocked-sender.txt", 0); }
END_TEST

START_TEST(test_size_cap) { passes("size-cap.txt", 0); }
END_TEST

START_TEST(test_lookup) { passes("lookup.txt", 0); }
END_TEST

START_TEST(test_slow_lookup) { passes("lookup-slow.txt", 1); }
END_TEST

/* The transcripts test the policy, not a mock: a fast directory makes
 * the slow-lookup transcript fail where it expects nothing yet. */
START_TEST(test_policy_is_what_runs) {
  smtpd_transcript_result res;
  ck_assert_int_eq(run("lookup-slow.txt", SMTPD_TRANSCRIPT_SPLIT_WHOLE, 0,
                       NULL, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 11);
  ck_assert_str_eq(res.actual, "S: 250 2.1.5 Ok");
}
END_TEST

/* read_all - what was written to f. */
static void read_all(FILE *f, char *buf, size_t cap) {
  size_t n;
  rewind(f);
  n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
}

/* broken.txt expects carol@ to be accepted: the run fails at line 10,
 * and the report says where and what, readably. */
START_TEST(test_broken_transcript_reports) {
  smtpd_transcript_result res;
  char out[4096];
  FILE *f = tmpfile();
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(run("broken.txt", SMTPD_TRANSCRIPT_SPLIT_WHOLE, 0, f,
                       &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 10);
  ck_assert_str_eq(res.expected, "S: 250 2.1.5 Ok");
  ck_assert_str_eq(res.actual, "S: 550 5.1.1 <carol@example.org>: Recipient "
                               "address rejected: User unknown");
  read_all(f, out, sizeof out);
  fclose(f);
  fputs(out, stderr); /* shown in the test log, as a user would see it */
  ck_assert_ptr_nonnull(strstr(out, "FAIL " POLICY_TEST_DIR "/broken.txt:10 "
                                    "(split whole): server reply differs\n"));
  ck_assert_ptr_nonnull(strstr(out, "       9 | C: RCPT TO:<carol@example"
                                    ".org>\n"));
  ck_assert_ptr_nonnull(strstr(out, "  >   10 | S: 250 2.1.5 Ok\n"));
  ck_assert_ptr_nonnull(strstr(out, "\n  - S: 250 2.1.5 Ok\n"));
  ck_assert_ptr_nonnull(strstr(out, "\n  + S: 550 5.1.1 <carol@example.org>: "
                                    "Recipient address rejected: User "
                                    "unknown\n"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("policy");
  TCase *tc = tcase_create("transcripts");
  SRunner *sr;
  int failed;
  tcase_add_test(tc, test_accept);
  tcase_add_test(tc, test_unknown_recipient);
  tcase_add_test(tc, test_blocked_sender);
  tcase_add_test(tc, test_size_cap);
  tcase_add_test(tc, test_lookup);
  tcase_add_test(tc, test_slow_lookup);
  tcase_add_test(tc, test_policy_is_what_runs);
  tcase_add_test(tc, test_broken_transcript_reports);
  suite_add_tcase(s, tc);
  sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
