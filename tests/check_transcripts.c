/*
 * check_transcripts.c - runs every tests/transcripts/NAME.txt against the
 * engine, whole and split one byte at a time, and tests the transcript
 * driver itself (so it cannot pass everything): wrong transcripts are
 * mismatches at the right line, malformed ones are clear errors, and a
 * failing allocator gives clean errors without leaks.
 *
 *   run_all          every transcript file with one split
 *   run_text         an inline transcript
 *   transcripts_suite
 */
#include <check.h>
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/transcript.h"

#ifndef SMTPD_TRANSCRIPT_DIR
#error "SMTPD_TRANSCRIPT_DIR must be defined"
#endif

/* A mismatch is a positive result beside the error table (smtpd.h). */
_Static_assert(SMTPD_TRANSCRIPT_MISMATCH == SMTPD_RESULT_TRANSCRIPT_MISMATCH,
               "SMTPD_TRANSCRIPT_MISMATCH is the value smtpd.h lists");
_Static_assert(SMTPD_TRANSCRIPT_MISMATCH > 0,
               "SMTPD_TRANSCRIPT_MISMATCH is not an error");

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* run_all - every *.txt with the given split; returns files run, and
 * prints each failure. */
static int run_all(smtpd_transcript_split split, int *failures) {
  DIR *d = opendir(SMTPD_TRANSCRIPT_DIR);
  struct dirent *e;
  char *names[1024];
  int n = 0, i;
  *failures = 0;
  ck_assert_msg(d != NULL, "cannot open %s", SMTPD_TRANSCRIPT_DIR);
  while ((e = readdir(d)) != NULL && n < 1024) {
    size_t len = strlen(e->d_name);
    if (len > 4 && strcmp(e->d_name + len - 4, ".txt") == 0)
    {
      names[n] = malloc(len + 1);
      ck_assert_ptr_nonnull(names[n]);
      memcpy(names[n++], e->d_name, len + 1);
    }
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], cmp_names);
  for (i = 0; i < n; i++) {
    char path[4096];
    smtpd_transcript_opts opts;
    smtpd_transcript_result res;
    int rc;
    snprintf(path, sizeof path, "%s/%s", SMTPD_TRANSCRIPT_DIR, names[i]);
    smtpd_transcript_opts_default(&opts);
    opts.split = split;
    opts.chunk = 7;
    rc = smtpd_transcript_run_file(path, &opts, &res);
    if (rc != SMTPD_OK) {
      (*failures)++;
      fprintf(stderr, "FAIL %s:%u (split %s): %s\n  - %s\n  + %s\n",
              names[i], res.line, res.split, res.message, res.expected,
              res.actual);
    }
    ck_assert_int_eq(res.status, rc);
    free(names[i]);
  }
  return n;
}

START_TEST(test_all_whole) {
  int failures, n = run_all(SMTPD_TRANSCRIPT_SPLIT_WHOLE, &failures);
  ck_assert_int_ge(n, 70);
  ck_assert_msg(failures == 0, "%d of %d transcripts failed (whole)",
                failures, n);
}
END_TEST

START_TEST(test_all_bytewise) {
  int failures, n = run_all(SMTPD_TRANSCRIPT_SPLIT_BYTE, &failures);
  ck_assert_int_ge(n, 70);
  ck_assert_msg(failures == 0, "%d of %d transcripts failed (byte split)",
                failures, n);
}
END_TEST

START_TEST(test_all_chunk7) {
  int failures, n = run_all(SMTPD_TRANSCRIPT_SPLIT_CHUNK, &failures);
  ck_assert_int_ge(n, 70);
  ck_assert_msg(failures == 0, "%d of %d transcripts failed (7-byte split)",
                failures, n);
}
END_TEST

static int run_text(const char *text, smtpd_transcript_split split,
                    smtpd_transcript_result *res) {
  smtpd_transcript_opts opts;
  smtpd_transcript_opts_default(&opts);
  opts.split = split;
  opts.chunk = 7;
  return smtpd_transcript_run_buffer(text, strlen(text), &opts, res);
}

#define HDR "@hostname mx.example\nS: 220 mx.example ESMTP\n"

static const char good[] =
    HDR "C: HELO client.example\n"
        "S: 250 mx.example\n"
        "E: helo client.example\n"
        "C: MAIL FROM:<a@b.example>\n"
        "S: 250 2.1.0 Ok\n"
        "C: QUIT\n"
        "S: 221 2.0.0 Bye\n"
        "CLOSED\n";

START_TEST(test_good_inline) {
  smtpd_transcript_result res;
  ck_assert_int_eq(run_text(good, SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_OK);
  ck_assert_int_eq(res.passed, 1);
  ck_assert_str_eq(res.split, "whole");
  ck_assert_int_eq(run_text(good, SMTPD_TRANSCRIPT_SPLIT_BYTE, &res),
                   SMTPD_OK);
  ck_assert_str_eq(res.split, "byte");
}
END_TEST

/* A wrong reply is a mismatch at its line, with both texts. */
START_TEST(test_wrong_reply_line) {
  static const char text[] =
      HDR "C: HELO client.example\n"      /* 3 */
          "S: 250 mx.example\n"           /* 4 */
          "C: MAIL FROM:<a@b.example>\n"  /* 5 */
          "S: 250 2.1.5 Ok\n";            /* 6: wrong, 2.1.0 */
  smtpd_transcript_result res;
  int s;
  for (s = 0; s < 3; s++) {
    int rc = run_text(text, (smtpd_transcript_split)s, &res);
    ck_assert_int_eq(rc, SMTPD_TRANSCRIPT_MISMATCH);
    ck_assert_int_eq(res.passed, 0);
    ck_assert_uint_eq(res.line, 6);
    ck_assert_str_eq(res.expected, "S: 250 2.1.5 Ok");
    ck_assert_str_eq(res.actual, "S: 250 2.1.0 Ok");
    ck_assert_ptr_nonnull(strstr(res.message, "differs"));
  }
}
END_TEST

START_TEST(test_missing_and_extra_output) {
  smtpd_transcript_result res;
  /* the server says more than written */
  ck_assert_int_eq(run_text(HDR "C: RSET\nC: RSET\nS: 250 2.0.0 Ok\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 5);
  ck_assert_str_eq(res.actual, "S: 250 2.0.0 Ok");
  /* the server says less than written */
  ck_assert_int_eq(run_text(HDR "C: NOOP\nS: 250 2.0.0 Ok\nS: 250 again\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 5);
  ck_assert_str_eq(res.actual, "(nothing)");
  /* NOTHING while there is output */
  ck_assert_int_eq(run_text(HDR "C: NOOP\nNOTHING\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 4);
  /* output left unchecked at the end */
  ck_assert_int_eq(run_text(HDR "C: NOOP\n", SMTPD_TRANSCRIPT_SPLIT_BYTE,
                            &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 3);
  /* the greeting must be written too */
  ck_assert_int_eq(run_text("C: NOOP\nS: 250 2.0.0 Ok\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 2);
}
END_TEST

START_TEST(test_escaped_actual) {
  smtpd_transcript_result res;
  ck_assert_int_eq(run_text(HDR "C: NOOP\nS: 250 2.0.0 Ok\\r\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_str_eq(res.expected, "S: 250 2.0.0 Ok\\r");
  ck_assert_str_eq(res.actual, "S: 250 2.0.0 Ok");
}
END_TEST

START_TEST(test_events_checked) {
  smtpd_transcript_result res;
  /* an event that did not fire */
  ck_assert_int_eq(run_text(HDR "C: HELO x\nS: 250 mx.example\nE: ehlo x\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 5);
  ck_assert_ptr_nonnull(strstr(res.actual, "helo x"));
  /* an event that must not fire */
  ck_assert_int_eq(run_text(HDR "C: HELO x\nS: 250 mx.example\nE! helo\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 5);
  /* order matters */
  ck_assert_int_eq(run_text(HDR "C: HELO x\nS: 250 mx.example\n"
                                "C: MAIL FROM:<a@b.example>\nC: RSET\n"
                                "S: 250 2.1.0 Ok\nS: 250 2.0.0 Ok\n"
                                "E: rset\nE: mail <a@b.example>\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 10);
  /* word prefix, not string prefix */
  ck_assert_int_eq(run_text(HDR "C: HELO x\nS: 250 mx.example\nE: hel\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_int_eq(run_text(HDR "C: HELO x\nS: 250 mx.example\nE: helo\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_OK);
}
END_TEST

static const char body_hdr[] =
    HDR "C: HELO x\nS: 250 mx.example\n"
        "C: MAIL FROM:<a@b.example>\nS: 250 2.1.0 Ok\n"
        "C: RCPT TO:<c@d.example>\nS: 250 2.1.5 Ok\n"
        "C: DATA\nS: 354 End data with <CR><LF>.<CR><LF>\n" /* line 10 */
        "C: one\nC: ..two\nC: .\nS: 250 2.0.0 Ok: queued\n"; /* 11-14 */

START_TEST(test_body_checked) {
  smtpd_transcript_result res;
  char text[1024];
  snprintf(text, sizeof text, "%sB: one\nB: .two\n", body_hdr);
  ck_assert_int_eq(run_text(text, SMTPD_TRANSCRIPT_SPLIT_BYTE, &res),
                   SMTPD_OK);
  snprintf(text, sizeof text, "%sB: one\nB: ..two\n", body_hdr);
  ck_assert_int_eq(run_text(text, SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 16);
  ck_assert_str_eq(res.actual, "B~ .two\\r\\n");
  snprintf(text, sizeof text, "%sB: one\n", body_hdr);
  ck_assert_int_eq(run_text(text, SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 15);
  ck_assert_ptr_nonnull(strstr(res.message, "more data"));
}
END_TEST

/* \{N:chars} expands to exactly N copies of chars: checked against the
 * literal text, for unit widths 1-5 and counts around the powers of two
 * the expansion doubles through. */
START_TEST(test_repeat_escape) {
  static const char *units[] = {"a", "xy", "abc", "wxyz", "01234"};
  static const unsigned counts[] = {1, 2, 3, 4, 5, 7, 8, 9, 31, 33};
  size_t u, k;
  for (u = 0; u < sizeof units / sizeof units[0]; u++)
    for (k = 0; k < sizeof counts / sizeof counts[0]; k++) {
      smtpd_transcript_result res;
      char text[2048], lit[256];
      size_t i, w = strlen(units[u]), o = 0;
      for (i = 0; i < counts[k]; i++, o += w)
        memcpy(lit + o, units[u], w);
      lit[o] = '\0';
      snprintf(text, sizeof text,
               HDR "C: HELO x\nS: 250 mx.example\n"
                   "C: MAIL FROM:<a@b.example>\nS: 250 2.1.0 Ok\n"
                   "C: RCPT TO:<c@d.example>\nS: 250 2.1.5 Ok\n"
                   "C: DATA\nS: 354 End data with <CR><LF>.<CR><LF>\n"
                   "C: <\\{%u:%s}>\nC: .\nS: 250 2.0.0 Ok: queued\n"
                   "B: <%s>\n",
               counts[k], units[u], lit);
      ck_assert_msg(run_text(text, SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res) ==
                            SMTPD_OK &&
                        res.passed,
                    "\\{%u:%s}: %s", counts[k], units[u], res.message);
      /* one more copy in the expectation is a mismatch */
      snprintf(text + strlen(text) - 2, sizeof text - strlen(text) + 2,
               "%s>\n", units[u]);
      ck_assert_int_eq(run_text(text, SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                       SMTPD_TRANSCRIPT_MISMATCH);
    }
}
END_TEST

START_TEST(test_closed_checked) {
  smtpd_transcript_result res;
  ck_assert_int_eq(run_text(HDR "C: NOOP\nS: 250 2.0.0 Ok\nCLOSED\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 5);
  ck_assert_int_eq(run_text(HDR "C: QUIT\nS: 221 2.0.0 Bye\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 4);
}
END_TEST

START_TEST(test_decisions) {
  smtpd_transcript_result res;
  /* a decision never used is reported at its line */
  ck_assert_int_eq(run_text(HDR "@on rcpt reject\nC: NOOP\nS: 250 2.0.0 Ok\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 3);
  /* a held defer never resumed */
  ck_assert_int_eq(run_text(HDR "@on helo defer\nC: HELO x\nNOTHING\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 3);
  /* an @effects no command used */
  ck_assert_int_eq(run_text(HDR "@effects regreet\nC: NOOP\n"
                                "S: 250 2.0.0 Ok\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 3);
  ck_assert_ptr_nonnull(strstr(res.message, "@effects"));
  /* resume with nothing deferred */
  ck_assert_int_eq(run_text(HDR "!resume accept\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 3);
  /* the host's reply text reaches the client */
  ck_assert_int_eq(run_text(HDR "C: HELO x\nS: 250 mx.example\n"
                                "@on mail reject 550 5.7.1 Go away\n"
                                "C: MAIL FROM:<a@b.example>\n"
                                "S: 550 5.7.1 Go away\n",
                            SMTPD_TRANSCRIPT_SPLIT_BYTE, &res),
                   SMTPD_OK);
}
END_TEST

/* New verdict words are accepted by @on, @every, defer and !resume (what
 * the engine does with them is for the transcript files). */
START_TEST(test_verdict_words) {
  static const char *const ok[] = {
      "@on rcpt disconnect\n",
      "@every mail abort 421 4.3.0 bye\n",
      "@on helo defer disconnect\n",
      "@on helo defer abort\n",
      "@every starttls tempfail\n",
      "@every command reject 550 5.7.1 no\n",
      "@every data-complete-rcpt defer accept\n",
      "@every body tempfail\n",
      "@effects reset-transaction reset-helo regreet\n",
      ("@command XCLIENT ends-group before-tls before-auth needs-helo "
       "needs-mail needs-rcpt\n"),
      "@command ETRN no-mail\n",
      "@param both XFLAG optional\n",
  };
  size_t i;
  for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    smtpd_transcript_result res;
    int rc = run_text(ok[i], SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res);
    /* it parses: whatever the run gives, it is not a syntax error */
    ck_assert_msg(rc != SMTPD_ERR_INVALID_ARGUMENT, "case %zu: %s", i,
                  res.message);
  }
}
END_TEST

/* ABORT: the call that ran the decision returns
 * SMTPD_ERR_CALLBACK_FAILURE; the driver logs "aborted", feeds nothing
 * more and reads the 421 the session queued, then sees it closed. From a
 * callback, from a held defer's !resume and from an automatic resume, in
 * every split. */
#define BYE "S: 421 4.3.2 mx.example Service shutting down\n"
START_TEST(test_abort) {
  static const char from_callback[] =
      HDR "C: HELO x\nS: 250 mx.example\n"
          "@on mail abort\n"
          "C: MAIL FROM:<a@b.example>\n"
          "C: NOOP\n" BYE
          "CLOSED\n"
          "E: mail <a@b.example>\n"
          "E: close host\n"
          "E: aborted\n";
  static const char from_resume[] =
      HDR "C: HELO x\nS: 250 mx.example\n"
          "@on mail defer\n"
          "C: MAIL FROM:<a@b.example>\n"
          "NOTHING\n"
          "E! aborted\n"
          "!resume abort\n" BYE
          "CLOSED\n"
          "E: close host\n"
          "E: aborted\n";
  static const char auto_resume[] =
      HDR "C: HELO x\nS: 250 mx.example\n"
          "@on rcpt defer abort\n"
          "C: MAIL FROM:<a@b.example>\n"
          "S: 250 2.1.0 Ok\n"
          "C: RCPT TO:<c@d.example>\n"
          "C: DATA\n" BYE
          "CLOSED\n"
          "E: rcpt <c@d.example>\n"
          "E: aborted\n"
          "E! data\n";
  static const char *const texts[] = {from_callback, from_resume,
                                      auto_resume};
  size_t i;
  int s;
  for (i = 0; i < sizeof texts / sizeof texts[0]; i++)
    for (s = 0; s < 3; s++) {
      smtpd_transcript_result res;
      int rc = run_text(texts[i], (smtpd_transcript_split)s, &res);
      ck_assert_msg(rc == SMTPD_OK, "case %zu split %d: rc %d line %u: %s "
                    "(%s / %s)", i, s, rc, res.line, res.message,
                    res.expected, res.actual);
    }
}
END_TEST

/* Options versions: 0 is invalid, a newer one unsupported. */
START_TEST(test_opts_version) {
  smtpd_transcript_opts opts;
  smtpd_transcript_result res;
  smtpd_transcript_opts_default(&opts);
  ck_assert_uint_eq(opts.version, SMTPD_TRANSCRIPT_OPTS_VERSION);
  opts.version = SMTPD_TRANSCRIPT_OPTS_VERSION + 1;
  ck_assert_int_eq(smtpd_transcript_run_buffer(good, strlen(good), &opts,
                                               &res),
                   SMTPD_ERR_UNSUPPORTED);
  ck_assert_int_eq(res.status, SMTPD_ERR_UNSUPPORTED);
  ck_assert_int_eq(res.passed, 0);
  ck_assert_int_eq(smtpd_transcript_run_file(SMTPD_TRANSCRIPT_DIR
                                             "/no-such-file.txt",
                                             &opts, &res),
                   SMTPD_ERR_UNSUPPORTED);
  opts.version = 0;
  ck_assert_int_eq(smtpd_transcript_run_buffer(good, strlen(good), &opts,
                                               &res),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_transcript_run_file(SMTPD_TRANSCRIPT_DIR
                                             "/no-such-file.txt",
                                             &opts, &res),
                   SMTPD_ERR_INVALID_ARGUMENT);
  smtpd_transcript_opts_default(&opts);
  opts.split = SMTPD_TRANSCRIPT_SPLIT_CHUNK;
  opts.chunk = 0;
  ck_assert_int_eq(smtpd_transcript_run_buffer(good, strlen(good), &opts,
                                               &res),
                   SMTPD_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_pinned_split) {
  smtpd_transcript_result res;
  smtpd_transcript_opts opts;
  static const char text[] = "@split 3\n" HDR "C: NOOP\nS: 250 2.0.0 Ok\n";
  ck_assert_int_eq(run_text(text, SMTPD_TRANSCRIPT_SPLIT_BYTE, &res),
                   SMTPD_OK);
  ck_assert_str_eq(res.split, "3");
  smtpd_transcript_opts_default(&opts);
  opts.split = SMTPD_TRANSCRIPT_SPLIT_BYTE;
  opts.ignore_pinned_split = 1;
  ck_assert_int_eq(smtpd_transcript_run_buffer(text, strlen(text), &opts,
                                               &res),
                   SMTPD_OK);
  ck_assert_str_eq(res.split, "byte");
}
END_TEST

/* Malformed transcripts: a clear error with the line, nothing run. */
START_TEST(test_malformed) {
  static const struct {
    const char *text;
    unsigned line;
    const char *needle;
  } cases[] = {
      {"@hostname mx\n@frobnicate yes\n", 2, "unknown directive"},
      {"S: 220 x\nC: HELO \\q\n", 2, "unknown escape"},
      {"C: \\x4\n", 1, "hex"},
      {"C: \\{0:a}\n", 1, "\\{N:chars}"},
      {"C: \\{3:}\n", 1, "\\{N:chars}"},
      {"C: abc\\\n", 1, "backslash"},
      {"S: 220 x\n@hostname late.example\n", 2, "before the conversation"},
      {"Q: what\n", 1, "unknown tag"},
      {"S:220\n", 1, "space must follow"},
      {"hello\n", 1, "unrecognised line"},
      {"C: raw\x01\n", 1, "raw control"},
      {"@on quux accept\n", 1, "unknown event"},
      {"@on rcpt maybe\n", 1, "verdict"},
      {"@on rcpt reject 55 x\n", 1, "three-digit"},
      {"@on rcpt defer defer\n", 1, "after defer"},
      {"@on rcpt defer\n@on rcpt defer tempfail 4\n", 2, "three-digit"},
      {"!resume later\n", 1, "resume"},
      {"@effects\n", 1, "@effects"},
      {"@effects regreet sometimes\n", 1, "@effects"},
      {"@command\n", 1, "@command"},
      {"@command XCLIENT ends-groups\n", 1, "@command flag"},
      {"@param mail\n", 1, "@param"},
      {"@param any NOTIFY value\n", 1, "@param"},
      {"@param rcpt NOTIFY maybe\n", 1, "none, value or optional"},
      {"@param rcpt NOTIFY value extra\n", 1, "extra"},
      {"@option reply-per-rcpt maybe\n", 1, "on or off"},
      {"@on xclient maybe\n", 1, "verdict"},
      {"S: 220 x\n@command XCLIENT\n", 2, "before the conversation"},
      {"S: 220 x\n@param rcpt NOTIFY value\n", 2,
       "before the conversation"},
      {"@limit bananas 3\n", 1, "unknown limit"},
      {"@option starttls maybe\n", 1, "on or off"},
      {"!explode\n", 1, "unknown action"},
      {"!resume defer\n", 1, "resume"},
      {"T: later\n", 1, "T:"},
      {"E:\n", 1, "event"},
      {"S: 220 x\n@on connect reject\n", 2, "connect"},
      {"S+\n", 1, "EHLO keyword"},
      {"S- \n", 1, "EHLO keyword"},
      {"S+ AUTH\\x01\n", 1, "printable"},
      {"S* AUTH\n", 1, "unrecognised line"},
      {"C: a\\*b\n", 1, "wildcard"},
      {"B: \\*\n", 1, "wildcard"},
      {"@on rcpt reject 550 5.1.1 \\*\n", 1, "wildcard"},
      {"!resume\n", 1, "resume"},
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    smtpd_transcript_result res;
    int rc = run_text(cases[i].text, SMTPD_TRANSCRIPT_SPLIT_WHOLE, &res);
    ck_assert_msg(rc == SMTPD_ERR_INVALID_ARGUMENT, "case %zu: rc %d", i,
                  rc);
    ck_assert_msg(res.line == cases[i].line, "case %zu: line %u", i,
                  res.line);
    ck_assert_msg(strstr(res.message, cases[i].needle) != NULL,
                  "case %zu: message \"%s\"", i, res.message);
  }
}
END_TEST

START_TEST(test_file_errors) {
  smtpd_transcript_result res;
  ck_assert_int_eq(smtpd_transcript_run_file(SMTPD_TRANSCRIPT_DIR
                                             "/no-such-file.txt",
                                             NULL, &res),
                   SMTPD_ERR_IO);
  ck_assert_int_eq(res.status, SMTPD_ERR_IO);
  ck_assert_ptr_nonnull(strstr(res.message, "no-such-file"));
  ck_assert_int_eq(smtpd_transcript_run_buffer(good, strlen(good), NULL,
                                               NULL),
                   SMTPD_OK);
}
END_TEST

/* A failing allocator: fail the Nth allocation for every N until the
 * run passes; each earlier run must end in a clean error (the sanitizer
 * build reports any leak). */
typedef struct failing {
  long countdown;
  long calls;
} failing;

static void *f_malloc(size_t n, void *ctx) {
  failing *f = ctx;
  f->calls++;
  if (f->countdown >= 0 && f->countdown-- == 0)
    return NULL;
  return malloc(n);
}
static void *f_calloc(size_t a, size_t b, void *ctx) {
  failing *f = ctx;
  f->calls++;
  if (f->countdown >= 0 && f->countdown-- == 0)
    return NULL;
  return calloc(a, b);
}
static void *f_realloc(void *p, size_t n, void *ctx) {
  failing *f = ctx;
  f->calls++;
  if (f->countdown >= 0 && f->countdown-- == 0)
    return NULL;
  return realloc(p, n);
}
static void f_free(void *p, void *ctx) {
  (void)ctx;
  free(p);
}

START_TEST(test_failing_allocator) {
  static const char text[] =
      HDR "@on data-complete defer\n"
          "C: EHLO client.example\n"
          "S: 250-mx.example\nS: 250-PIPELINING\nS: 250-SIZE 10240000\n"
          "S: 250-VRFY\nS: 250-ENHANCEDSTATUSCODES\nS: 250 8BITMIME\n"
          "C: MAIL FROM:<a@b.example>\nC: RCPT TO:<c@d.example>\n"
          "C: DATA\n"
          "S: 250 2.1.0 Ok\nS: 250 2.1.5 Ok\n"
          "S: 354 End data with <CR><LF>.<CR><LF>\n"
          "C: hello\nC: .\nNOTHING\nB: hello\n"
          "!resume accept 250 2.0.0 Ok: queued as X\n"
          "S: 250 2.0.0 Ok: queued as X\n";
  long n;
  int passed = 0;
  for (n = 0; n < 10000 && !passed; n++) {
    failing f = {n, 0};
    smtpd_mem mem = {&f, f_malloc, f_free, f_calloc, f_realloc};
    smtpd_transcript_opts opts;
    smtpd_transcript_result res;
    int rc;
    smtpd_transcript_opts_default(&opts);
    opts.mem = &mem;
    rc = smtpd_transcript_run_buffer(text, strlen(text), &opts, &res);
    if (rc == SMTPD_OK) {
      passed = 1;
      ck_assert_int_ge(f.calls, n);
    } else {
      /* out of memory in the driver, or the session reporting it */
      ck_assert_msg(rc == SMTPD_ERR_NOMEM ||
                        rc == SMTPD_TRANSCRIPT_MISMATCH,
                    "allocation %ld: rc %d (%s)", n, rc, res.message);
    }
  }
  ck_assert_msg(passed, "never passed");
  ck_assert_int_gt(n, 5);
}
END_TEST

/* ---- looser expectations: S+ / S- and \* ---------------------------- */

#define EHLO_HDR                                                             \
  "@hostname mx.example\n@option starttls on\n"                              \
  "S: 220 mx.example ESMTP\nC: EHLO client.example\n"

/* run_all_splits - the same result in every split. */
static int run_all_splits(const char *text, smtpd_transcript_result *res) {
  int s, rc = 0;
  for (s = 0; s < 3; s++) {
    int r = run_text(text, (smtpd_transcript_split)s, res);
    if (s > 0)
      ck_assert_msg(r == rc, "split %d: rc %d, whole gave %d (%s)", s, r, rc,
                    res->message);
    rc = r;
  }
  return rc;
}

START_TEST(test_ehlo_keywords) {
  smtpd_transcript_result res;
  /* present / absent, case-insensitive keyword, parameters as a set */
  ck_assert_int_eq(run_all_splits(EHLO_HDR "S+ starttls\nS+ SIZE 10240000\n"
                                           "S- AUTH\nS- VRFY 1\n", &res),
                   SMTPD_OK);
  /* after an S: line that began the reply, the rest of it */
  ck_assert_int_eq(run_all_splits(EHLO_HDR "S: 250-mx.example\n"
                                           "S: 250-PIPELINING\nS+ VRFY\n"
                                           "S- PIPELINING\n", &res),
                   SMTPD_OK);
}
END_TEST

/* A keyword that is not there, or is there but must not be, is a
 * mismatch at its line with a readable actual text. */
START_TEST(test_ehlo_keywords_mismatch) {
  smtpd_transcript_result res;
  ck_assert_int_eq(run_all_splits(EHLO_HDR "S+ STARTTLS\nS+ AUTH\n", &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 6);
  ck_assert_str_eq(res.expected, "S+ AUTH");
  ck_assert_str_eq(res.actual, "keywords: PIPELINING, SIZE 10240000, VRFY, "
                               "STARTTLS, ENHANCEDSTATUSCODES, 8BITMIME");
  ck_assert_ptr_nonnull(strstr(res.message, "does not have"));

  ck_assert_int_eq(run_all_splits(EHLO_HDR "S- STARTTLS\n", &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 5);
  ck_assert_str_eq(res.expected, "S- STARTTLS");
  ck_assert_str_eq(res.actual, "S: 250-STARTTLS");
  ck_assert_ptr_nonnull(strstr(res.message, "must not"));

  /* a parameter the keyword does not list */
  ck_assert_int_eq(run_all_splits(EHLO_HDR "S+ SIZE 999\n", &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 5);
  /* the greeting line is not a keyword */
  ck_assert_int_eq(run_all_splits(EHLO_HDR "S+ mx.example\n", &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  /* a one-line reply has no keywords */
  ck_assert_int_eq(run_all_splits("@hostname mx.example\n"
                                  "S: 220 mx.example ESMTP\nC: NOOP\n"
                                  "S+ PIPELINING\n", &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 4);
  ck_assert_str_eq(res.actual, "keywords: (none)");
  /* no reply at all */
  ck_assert_int_eq(run_all_splits("@hostname mx.example\n"
                                  "S: 220 mx.example ESMTP\n"
                                  "S+ PIPELINING\n", &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_str_eq(res.actual, "(nothing)");
  ck_assert_ptr_nonnull(strstr(res.message, "multi-line reply"));
  /* one S+ run reads one reply: the next is unexpected output */
  ck_assert_int_eq(run_all_splits("@hostname mx.example\n"
                                  "S: 220 mx.example ESMTP\nC: RSET\n"
                                  "C: EHLO x\nS+ PIPELINING\n", &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_uint_eq(res.line, 5);
}
END_TEST

START_TEST(test_wildcards) {
  smtpd_transcript_result res;
  ck_assert_int_eq(run_all_splits(HDR "C: HELO x\nS: 250 mx.example\n"
                                      "C: MAIL FROM:<a@b.example>\n"
                                      "S: 250 \\* Ok\n"
                                      "E: mail <\\*@b.\\*>\n"
                                      "E! mail <\\*@c.example>\n"
                                      "C: NOOP\nS: \\*\\x20\\*.0.0 O\\*\n",
                                  &res),
                   SMTPD_OK);
}
END_TEST

/* Wildcards do not match spaces nor nothing; a mismatch shows the
 * pattern as written. */
START_TEST(test_wildcards_mismatch) {
  static const struct {
    const char *exp;   /* S: line */
    const char *shown; /* res.expected */
  } cases[] = {
      {"250 \\*", "S: 250 \\*"},             /* not "2.1.0 Ok" */
      {"\\*", "S: \\*"},                     /* no spaces */
      {"250 2.1.0 Ok\\*", "S: 250 2.1.0 Ok\\*"}, /* one byte at least */
      {"250 2.1.\\*0 Ok", "S: 250 2.1.\\*0 Ok"},   /* ... in the middle */
      {"250 2.1.0\\* Ok\\x20", "S: 250 2.1.0\\* Ok\\x20"},
      {"251 \\* Ok", "S: 251 \\* Ok"},
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char text[512];
    smtpd_transcript_result res;
    snprintf(text, sizeof text, HDR "C: HELO x\nS: 250 mx.example\n"
             "C: MAIL FROM:<a@b.example>\nS: %s\n", cases[i].exp);
    ck_assert_msg(run_all_splits(text, &res) == SMTPD_TRANSCRIPT_MISMATCH,
                  "case %zu passed", i);
    ck_assert_uint_eq(res.line, 6);
    ck_assert_str_eq(res.expected, cases[i].shown);
    ck_assert_str_eq(res.actual, "S: 250 2.1.0 Ok");
  }
  {
    smtpd_transcript_result res;
    /* an event pattern that does not match, and one that must not */
    ck_assert_int_eq(run_all_splits(HDR "C: HELO x\nS: 250 mx.example\n"
                                        "C: MAIL FROM:<a@b.example>\n"
                                        "S: 250 2.1.0 Ok\n"
                                        "E: mail <\\*@c.example>\n",
                                    &res),
                     SMTPD_TRANSCRIPT_MISMATCH);
    ck_assert_uint_eq(res.line, 7);
    ck_assert_str_eq(res.expected, "E: mail <\\*@c.example>");
    ck_assert_int_eq(run_all_splits(HDR "C: HELO x\nS: 250 mx.example\n"
                                        "C: MAIL FROM:<a@b.example>\n"
                                        "S: 250 2.1.0 Ok\n"
                                        "E! mail <a@\\*>\n",
                                    &res),
                     SMTPD_TRANSCRIPT_MISMATCH);
    ck_assert_str_eq(res.expected, "E! mail <a@\\*>");
    ck_assert_ptr_nonnull(strstr(res.message, "must not"));
  }
}
END_TEST

/* ---- host callbacks ---------------------------------------------------- */

/* A small policy of the test's own: refuses nobody@, defers later@ until
 * the hook answers, aborts at abort@, counts what it saw. */
typedef struct host_ctx {
  int rcpts, mails, closes, starttls;
  int hook_calls;
  int hold_first;        /* the hook holds the first time it is asked */
  int hook_verdict;      /* what the hook resumes with */
  int hook_no_resume;    /* the hook returns 0 without resuming */
  int clobber_ud;        /* on_mail changes the session's user data */
  void *seen_ud;
} host_ctx;

static smtpd_verdict h_mail(smtpd_session *s, const smtpd_mail *m,
                            void *ud) {
  host_ctx *c = ud;
  c->mails++;
  c->seen_ud = ud;
  if (c->clobber_ud)
    smtpd_session_set_user_data(s, NULL);
  if (strcmp(m->address, "abort@b.example") == 0)
    return SMTPD_ABORT;
  return SMTPD_ACCEPT;
}

static smtpd_verdict h_rcpt(smtpd_session *s, const smtpd_rcpt *r,
                            void *ud) {
  host_ctx *c = ud;
  c->rcpts++;
  if (strncmp(r->address, "nobody@", 7) == 0) {
    smtpd_session_set_reply(s, 550, "5.1.1", "No such user here");
    return SMTPD_REJECT;
  }
  if (strncmp(r->address, "later@", 6) == 0)
    return SMTPD_DEFER;
  return SMTPD_ACCEPT;
}

static void h_close(smtpd_session *s, smtpd_close_reason why, void *ud) {
  host_ctx *c = ud;
  (void)s, (void)why;
  c->closes++;
}

static int h_paused(smtpd_session *s, void *ud) {
  host_ctx *c = ud;
  c->hook_calls++;
  if (c->hold_first && c->hook_calls == 1)
    return SMTPD_TRANSCRIPT_HOLD;
  if (c->hook_no_resume)
    return 0;
  if (c->hook_verdict == SMTPD_ACCEPT)
    smtpd_session_set_reply(s, 250, "2.1.5", "Found it later");
  return smtpd_session_resume(s, (smtpd_verdict)c->hook_verdict);
}

static const smtpd_callbacks host_cb = {
    .version = SMTPD_CALLBACKS_VERSION,
    .on_mail = h_mail,
    .on_rcpt = h_rcpt,
    .on_close = h_close,
};

static int run_host(const char *text, smtpd_transcript_split split,
                    host_ctx *c, smtpd_config *cfg,
                    smtpd_transcript_result *res) {
  smtpd_transcript_opts opts;
  smtpd_transcript_opts_default(&opts);
  opts.split = split;
  opts.chunk = 7;
  opts.callbacks = &host_cb;
  opts.user_data = c;
  opts.config = cfg;
  opts.on_paused = h_paused;
  return smtpd_transcript_run_buffer(text, strlen(text), &opts, res);
}

#define TXN                                                                  \
  "C: HELO x\nS: 250 mx.example\n"                                           \
  "C: MAIL FROM:<a@b.example>\nS: 250 2.1.0 Ok\nE: mail <a@b.example>\n"

START_TEST(test_host_callbacks) {
  static const char text[] =
      HDR TXN
      "C: RCPT TO:<nobody@b.example>\n"
      "C: RCPT TO:<c@b.example>\n"
      "S: 550 5.1.1 No such user here\nS: 250 2.1.5 Ok\n"
      "E: rcpt <nobody@b.example>\nE: rcpt <c@b.example>\n"
      "C: QUIT\nS: 221 2.0.0 Bye\nCLOSED\nE: close quit\n";
  int s;
  for (s = 0; s < 3; s++) {
    host_ctx c;
    smtpd_transcript_result res;
    int rc;
    memset(&c, 0, sizeof c);
    rc = run_host(text, (smtpd_transcript_split)s, &c, NULL, &res);
    ck_assert_msg(rc == SMTPD_OK, "split %d: %s (%s / %s)", s, res.message,
                  res.expected, res.actual);
    ck_assert_int_eq(c.mails, 1);
    ck_assert_int_eq(c.rcpts, 2);
    ck_assert_int_eq(c.closes, 1);
    ck_assert_ptr_eq(c.seen_ud, &c);
  }
  {
    /* the host's verdict is what the client sees: expecting the default
     * reply is a mismatch */
    host_ctx c;
    smtpd_transcript_result res;
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(run_host(HDR TXN "C: RCPT TO:<nobody@b.example>\n"
                                      "S: 250 2.1.5 Ok\n",
                              SMTPD_TRANSCRIPT_SPLIT_WHOLE, &c, NULL, &res),
                     SMTPD_TRANSCRIPT_MISMATCH);
    ck_assert_uint_eq(res.line, 9);
    ck_assert_str_eq(res.actual, "S: 550 5.1.1 No such user here");
  }
}
END_TEST

/* Scripted decisions cannot be mixed with the host's callbacks: a clear
 * error at the line, nothing run. */
START_TEST(test_host_refuses_scripted) {
  static const struct {
    const char *text;
    unsigned line;
    const char *needle;
  } cases[] = {
      {HDR "@on rcpt reject\n", 3, "@on scripts a host decision"},
      {HDR "@every mail accept\n", 3, "@every"},
      {"@effects regreet\n", 1, "@effects"},
      {HDR "!resume accept\n", 3, "!resume alone"},
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    host_ctx c;
    smtpd_transcript_result res;
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(run_host(cases[i].text, SMTPD_TRANSCRIPT_SPLIT_WHOLE, &c,
                              NULL, &res),
                     SMTPD_ERR_INVALID_ARGUMENT);
    ck_assert_uint_eq(res.line, cases[i].line);
    ck_assert_msg(strstr(res.message, cases[i].needle) != NULL, "case %zu: "
                  "%s", i, res.message);
    ck_assert_ptr_nonnull(strstr(res.message, "opts.callbacks"));
    ck_assert_int_eq(c.mails + c.rcpts + c.closes, 0);
  }
}
END_TEST

/* The host's own config is used as it is; directives that would change
 * it are refused. */
START_TEST(test_host_config) {
  smtpd_config *cfg;
  host_ctx c;
  smtpd_transcript_result res;
  smtpd_transcript_opts opts;
  ck_assert_int_eq(smtpd_config_new(&cfg, NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_hostname(cfg, "host.example"), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_option(cfg, SMTPD_OPT_VRFY, 0),
                   SMTPD_OK);
  memset(&c, 0, sizeof c);
  ck_assert_int_eq(run_host("@client 192.0.2.1\n"
                            "S: 220 host.example ESMTP\nC: EHLO x\n"
                            "S+ PIPELINING\nS- VRFY\n",
                            SMTPD_TRANSCRIPT_SPLIT_BYTE, &c, cfg, &res),
                   SMTPD_OK);
  ck_assert_int_eq(run_host("@hostname mx.example\n"
                            "S: 220 mx.example ESMTP\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &c, cfg, &res),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_uint_eq(res.line, 1);
  ck_assert_ptr_nonnull(strstr(res.message, "opts.config"));
  /* scripted decisions with the host's config are fine */
  {
    static const char text[] = "@on helo reject 550 5.7.1 Not you\n"
                               "S: 220 host.example ESMTP\nC: HELO x\n"
                               "S: 550 5.7.1 Not you\n";
    smtpd_transcript_opts_default(&opts);
    opts.config = cfg;
    ck_assert_int_eq(smtpd_transcript_run_buffer(text, strlen(text), &opts,
                                                 &res),
                     SMTPD_OK);
    /* a SASL backend belongs in the host's config */
    opts.sasl = (const struct smtpd_sasl_backend *)&opts;
    ck_assert_int_eq(smtpd_transcript_run_buffer(text, strlen(text), &opts,
                                                 &res),
                     SMTPD_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(res.message, "opts.sasl"));
  }
  /* the driver neither changed nor freed it: it still serves a run */
  memset(&c, 0, sizeof c);
  ck_assert_int_eq(run_host("S: 220 host.example ESMTP\nC: VRFY x\n"
                            "S: 502 5.5.1 VRFY command is disabled\n",
                            SMTPD_TRANSCRIPT_SPLIT_WHOLE, &c, cfg, &res),
                   SMTPD_OK);
  smtpd_config_del(cfg);
}
END_TEST

/* A deferral of the host's callback: the hook resumes it at once; or it
 * holds, the transcript checks that nothing was answered, and a bare
 * !resume asks the hook again. */
START_TEST(test_host_defer) {
  static const char now[] =
      HDR TXN
      "C: RCPT TO:<later@b.example>\n"
      "C: RCPT TO:<c@b.example>\n"
      "S: 250 2.1.5 Found it later\nS: 250 2.1.5 Ok\n"
      "E: rcpt <later@b.example>\nE: rcpt <c@b.example>\n";
  static const char held[] =
      HDR TXN
      "C: RCPT TO:<later@b.example>\n"
      "C: RCPT TO:<c@b.example>\n"
      "NOTHING\nE: rcpt <later@b.example>\nE! rcpt <c@b.example>\n"
      "!resume\n"
      "S: 250 2.1.5 Found it later\nS: 250 2.1.5 Ok\n"
      "E: rcpt <c@b.example>\n";
  int s;
  for (s = 0; s < 3; s++) {
    host_ctx c;
    smtpd_transcript_result res;
    memset(&c, 0, sizeof c);
    ck_assert_msg(run_host(now, (smtpd_transcript_split)s, &c, NULL, &res) ==
                      SMTPD_OK,
                  "split %d: %s", s, res.message);
    ck_assert_int_eq(c.hook_calls, 1);
    memset(&c, 0, sizeof c);
    c.hold_first = 1;
    ck_assert_msg(run_host(held, (smtpd_transcript_split)s, &c, NULL,
                           &res) == SMTPD_OK,
                  "split %d: %s (%s / %s)", s, res.message, res.expected,
                  res.actual);
    ck_assert_int_eq(c.hook_calls, 2);
  }
  {
    host_ctx c;
    smtpd_transcript_result res;
    /* held and never resumed */
    memset(&c, 0, sizeof c);
    c.hold_first = 1;
    ck_assert_int_eq(run_host(HDR TXN "C: RCPT TO:<later@b.example>\n"
                                      "NOTHING\n",
                              SMTPD_TRANSCRIPT_SPLIT_WHOLE, &c, NULL, &res),
                     SMTPD_TRANSCRIPT_MISMATCH);
    ck_assert_ptr_nonnull(strstr(res.message, "never resumed"));
    /* the hook says it resumed, but did not */
    memset(&c, 0, sizeof c);
    c.hook_no_resume = 1;
    ck_assert_int_eq(run_host(HDR TXN "C: RCPT TO:<later@b.example>\n"
                                      "NOTHING\n",
                              SMTPD_TRANSCRIPT_SPLIT_WHOLE, &c, NULL, &res),
                     SMTPD_TRANSCRIPT_MISMATCH);
    ck_assert_uint_eq(res.line, 8);
    ck_assert_ptr_nonnull(strstr(res.message, "still paused"));
    /* the hook resumes with ABORT: the driver sees the session end */
    memset(&c, 0, sizeof c);
    c.hook_verdict = SMTPD_ABORT;
    ck_assert_int_eq(run_host(HDR TXN "C: RCPT TO:<later@b.example>\n"
                                      "C: DATA\n" BYE "CLOSED\n"
                                      "E: aborted\nE! data\n",
                              SMTPD_TRANSCRIPT_SPLIT_BYTE, &c, NULL, &res),
                     SMTPD_OK);
  }
  {
    /* no hook: a deferral is a mismatch that says so */
    host_ctx c;
    smtpd_transcript_result res;
    smtpd_transcript_opts opts;
    static const char text[] = HDR TXN "C: RCPT TO:<later@b.example>\n"
                                       "NOTHING\n";
    memset(&c, 0, sizeof c);
    smtpd_transcript_opts_default(&opts);
    opts.callbacks = &host_cb;
    opts.user_data = &c;
    ck_assert_int_eq(smtpd_transcript_run_buffer(text, strlen(text), &opts,
                                                 &res),
                     SMTPD_TRANSCRIPT_MISMATCH);
    ck_assert_uint_eq(res.line, 8);
    ck_assert_ptr_nonnull(strstr(res.message, "on_paused"));
  }
}
END_TEST

START_TEST(test_host_abort_and_user_data) {
  host_ctx c;
  smtpd_transcript_result res;
  int s;
  for (s = 0; s < 3; s++) {
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(run_host(HDR "C: HELO x\nS: 250 mx.example\n"
                                  "C: MAIL FROM:<abort@b.example>\n"
                                  "C: NOOP\n" BYE "CLOSED\n"
                                  "E: close host\nE: aborted\n",
                              (smtpd_transcript_split)s, &c, NULL, &res),
                     SMTPD_OK);
    ck_assert_int_eq(c.closes, 1);
  }
  /* the session's user data belongs to the driver */
  memset(&c, 0, sizeof c);
  c.clobber_ud = 1;
  ck_assert_int_eq(run_host(HDR TXN, SMTPD_TRANSCRIPT_SPLIT_WHOLE, &c, NULL,
                            &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  ck_assert_ptr_nonnull(strstr(res.message, "user data"));
}
END_TEST

/* A 0.1-style (version 1) callbacks table: int decisions, a void
 * on_starttls notification after the 220. */
#include "abi/callbacks_v1.h"
static int v1_rcpt(smtpd_session *s, const smtpd_rcpt *r, void *ud) {
  (void)s, (void)r;
  ++*(int *)ud;
  return SMTPD_REJECT;
}
static void v1_starttls(smtpd_session *s, void *ud) {
  (void)s;
  *(int *)ud += 100;
}

START_TEST(test_host_callbacks_versions) {
  smtpd_callbacks_v1 v1;
  smtpd_callbacks bad = host_cb;
  smtpd_transcript_opts opts;
  smtpd_transcript_result res;
  int count = 0;
  static const char text[] =
      "@hostname mx.example\n@option starttls on\n"
      "S: 220 mx.example ESMTP\nC: HELO x\nS: 250 mx.example\n"
      "C: MAIL FROM:<a@b.example>\nS: 250 2.1.0 Ok\n"
      "C: RCPT TO:<c@b.example>\nS: 550 5.7.1 Recipient address rejected\n"
      "C: RSET\nS: 250 2.0.0 Ok\n"
      "C: STARTTLS\nS: 220 2.0.0 Ready to start TLS\nE: starttls\n";
  memset(&v1, 0, sizeof v1);
  v1.version = 1;
  v1.on_rcpt = v1_rcpt;
  v1.on_starttls = v1_starttls;
  smtpd_transcript_opts_default(&opts);
  opts.callbacks = (const smtpd_callbacks *)(const void *)&v1;
  opts.user_data = &count;
  ck_assert_msg(smtpd_transcript_run_buffer(text, strlen(text), &opts, &res) ==
                    SMTPD_OK,
                "%u: %s (%s / %s)", res.line, res.message, res.expected,
                res.actual);
  ck_assert_int_eq(count, 101);
  /* versions the library does not know */
  opts.callbacks = &bad;
  bad.version = 0;
  ck_assert_int_eq(smtpd_transcript_run_buffer(text, strlen(text), &opts,
                                               &res),
                   SMTPD_ERR_INVALID_ARGUMENT);
  bad.version = SMTPD_CALLBACKS_VERSION + 1;
  ck_assert_int_eq(smtpd_transcript_run_buffer(text, strlen(text), &opts,
                                               &res),
                   SMTPD_ERR_UNSUPPORTED);
}
END_TEST

/* A program built against options version 1 (0.2) passes a shorter
 * struct: the library reads no more of it than version 1 had (the
 * sanitizer build would catch a read past the allocation). A frozen copy
 * of the version-1 declaration, as 0.2 programs were compiled with: */
typedef struct transcript_opts_v1 {
  unsigned version;
  smtpd_transcript_split split;
  size_t chunk;
  int ignore_pinned_split;
  const smtpd_mem *mem;
  const struct smtpd_sasl_backend *sasl;
  void (*trace)(const char *line, void *ctx);
  void *trace_ctx;
} transcript_opts_v1;
_Static_assert(sizeof(transcript_opts_v1) ==
                   offsetof(smtpd_transcript_opts, callbacks),
               "version 2 only added members at the end");

START_TEST(test_opts_version1) {
  transcript_opts_v1 *o = malloc(sizeof *o);
  smtpd_transcript_result res;
  ck_assert_ptr_nonnull(o);
  memset(o, 0, sizeof *o);
  o->version = 1;
  o->split = SMTPD_TRANSCRIPT_SPLIT_BYTE;
  o->chunk = 1;
  ck_assert_int_eq(smtpd_transcript_run_buffer(
                       good, strlen(good),
                       (const smtpd_transcript_opts *)(const void *)o, &res),
                   SMTPD_OK);
  ck_assert_str_eq(res.split, "byte");
  free(o);
}
END_TEST

/* opts.report: the readable diff of a failed run, nothing for a pass. */
static void read_all(FILE *f, char *buf, size_t cap) {
  size_t n;
  rewind(f);
  n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
}

START_TEST(test_report) {
  static const char wrong[] =
      HDR "C: HELO client.example\n"      /* 3 */
          "S: 250 mx.example\n"           /* 4 */
          "C: MAIL FROM:<a@b.example>\n"  /* 5 */
          "S: 250 2.1.5 Ok\n"             /* 6: wrong, 2.1.0 */
          "C: QUIT\n";                    /* 7 */
  char out[4096];
  smtpd_transcript_opts opts;
  smtpd_transcript_result res;
  FILE *f = tmpfile();
  ck_assert_ptr_nonnull(f);
  smtpd_transcript_opts_default(&opts);
  opts.report = f;
  opts.name = "wrong.txt";
  ck_assert_int_eq(smtpd_transcript_run_buffer(good, strlen(good), &opts,
                                               &res),
                   SMTPD_OK);
  read_all(f, out, sizeof out);
  ck_assert_str_eq(out, "");
  ck_assert_int_eq(smtpd_transcript_run_buffer(wrong, strlen(wrong), &opts,
                                               &res),
                   SMTPD_TRANSCRIPT_MISMATCH);
  read_all(f, out, sizeof out);
  ck_assert_str_eq(out,
                   "FAIL wrong.txt:6 (split whole): server reply differs\n"
                   "       4 | S: 250 mx.example\n"
                   "       5 | C: MAIL FROM:<a@b.example>\n"
                   "  >    6 | S: 250 2.1.5 Ok\n"
                   "       7 | C: QUIT\n"
                   "  - S: 250 2.1.5 Ok\n"
                   "  + S: 250 2.1.0 Ok\n");
  fclose(f);
  /* a malformed transcript, and a file's path as its name */
  f = tmpfile();
  ck_assert_ptr_nonnull(f);
  opts.report = f;
  opts.name = NULL;
  ck_assert_int_eq(smtpd_transcript_run_buffer("S: 220 x\nQ: what\n", 17,
                                               &opts, &res),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_transcript_run_file(SMTPD_TRANSCRIPT_DIR
                                             "/no-such-file.txt",
                                             &opts, &res),
                   SMTPD_ERR_IO);
  read_all(f, out, sizeof out);
  ck_assert_ptr_nonnull(strstr(out, "ERROR transcript: line 2: unknown tag "
                                    "\"Q:\""));
  ck_assert_ptr_nonnull(strstr(out, "  >    2 | Q: what\n"));
  ck_assert_ptr_nonnull(strstr(out, "ERROR " SMTPD_TRANSCRIPT_DIR
                                    "/no-such-file.txt: cannot open"));
  fclose(f);
}
END_TEST

static Suite *transcripts_suite(void) {
  Suite *s = suite_create("transcripts");
  TCase *files = tcase_create("files");
  TCase *driver = tcase_create("driver");
  tcase_set_timeout(files, 120);
  tcase_add_test(files, test_all_whole);
  tcase_add_test(files, test_all_bytewise);
  tcase_add_test(files, test_all_chunk7);
  tcase_add_test(driver, test_good_inline);
  tcase_add_test(driver, test_wrong_reply_line);
  tcase_add_test(driver, test_missing_and_extra_output);
  tcase_add_test(driver, test_escaped_actual);
  tcase_add_test(driver, test_events_checked);
  tcase_add_test(driver, test_body_checked);
  tcase_add_test(driver, test_repeat_escape);
  tcase_add_test(driver, test_closed_checked);
  tcase_add_test(driver, test_decisions);
  tcase_add_test(driver, test_verdict_words);
  tcase_add_test(driver, test_abort);
  tcase_add_test(driver, test_opts_version);
  tcase_add_test(driver, test_pinned_split);
  tcase_add_test(driver, test_malformed);
  tcase_add_test(driver, test_file_errors);
  tcase_add_test(driver, test_failing_allocator);
  tcase_add_test(driver, test_ehlo_keywords);
  tcase_add_test(driver, test_ehlo_keywords_mismatch);
  tcase_add_test(driver, test_wildcards);
  tcase_add_test(driver, test_wildcards_mismatch);
  tcase_add_test(driver, test_host_callbacks);
  tcase_add_test(driver, test_host_refuses_scripted);
  tcase_add_test(driver, test_host_config);
  tcase_add_test(driver, test_host_defer);
  tcase_add_test(driver, test_host_abort_and_user_data);
  tcase_add_test(driver, test_host_callbacks_versions);
  tcase_add_test(driver, test_opts_version1);
  tcase_add_test(driver, test_report);
  suite_add_tcase(s, files);
  suite_add_tcase(s, driver);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(transcripts_suite());
  int failed;
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
