/*
 * check_received.c - tests for the Received: field helper (received.h).
 *
 * Exact strings for every transmission type and layout variant, dates
 * against gmtime_r, folding limits, snprintf-style truncation at every
 * buffer size, an injection table, a structural "one header field"
 * check applied to every output, and smtpd_received_from_session on a
 * live session.
 */
#define _POSIX_C_SOURCE 200809L /* gmtime_r */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtpd/received.h"
#include "smtpd/smtpd.h"

#define T_2026 INT64_C(1795549200) /* Tue, 24 Nov 2026 19:40:00 +0000 */

static const smtpd_tls_info tls13 = {
  "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, 256, 0, 0, NULL, NULL
};

/* A description with every field set, as in the issue's example. */
static void base_desc(smtpd_received *r)
{
  smtpd_received_init(r);
  r->helo = "helo.example";
  r->rdns = "rdns.example";
  r->addr = "192.0.2.1";
  r->hostname = "mx.example";
  r->queue_id = "QID";
  r->recipient = "rcpt@example.org";
  r->time = T_2026;
  r->utc_offset_minutes = 0;
}

/* check_one_field - the output is exactly one well-formed header field:
 * "Received:" name, only CRLF line ends, ends in CRLF, every later line
 * starts with a tab or space and has something besides whitespace, all
 * octets printable ASCII or tab, no line over 998 octets, comments
 * balanced, quoted strings closed, the "for" path ends at its '>'. */
static void check_one_field(const char *s, size_t n)
{
  size_t i, linestart = 0;
  int depth = 0, inquote = 0;
  const char *forp, *p;

  ck_assert_uint_eq(strlen(s), n);
  ck_assert_msg(strncmp(s, "Received: from ", 15) == 0, "name: %s", s);
  ck_assert_msg(n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n',
                "no final CRLF: %s", s);
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\r') {
      ck_assert_msg(i + 1 < n && s[i + 1] == '\n', "bare CR at %zu", i);
      ck_assert_msg(i - linestart <= 998, "line over 998 octets");
      i++;
      linestart = i + 1;
      if (linestart < n) {
        size_t k = linestart;
        ck_assert_msg(s[k] == '\t' || s[k] == ' ',
                      "line not folded at %zu: %s", k, s);
        while (k < n && (s[k] == '\t' || s[k] == ' '))
          k++;
        ck_assert_msg(k < n && s[k] != '\r', "blank continuation: %s", s);
      }
      continue;
    }
    ck_assert_msg(c != '\n', "bare LF at %zu", i);
    ck_assert_msg((c >= 0x20 && c <= 0x7e) || c == '\t',
                  "octet %02x at %zu", c, i);
    /* RFC 5322 comments and quoted strings with quoted-pairs */
    if (c == '\\' && (depth > 0 || inquote)) {
      i++;
      ck_assert_msg(i < n && s[i] >= 0x20 && s[i] <= 0x7e,
                    "bad quoted-pair");
      continue;
    }
    if (inquote) {
      if (c == '"')
        inquote = 0;
    } else if (c == '(') {
      depth++;
    } else if (c == ')') {
      depth--;
      ck_assert_msg(depth >= 0, "unbalanced ')' at %zu: %s", i, s);
    } else if (c == '"' && depth == 0) {
      inquote = 1;
    }
  }
  ck_assert_msg(depth == 0, "unclosed comment: %s", s);
  ck_assert_msg(!inquote, "unclosed quoted string: %s", s);
  /* the for clause is the last "for <" (only the date follows it) */
  forp = NULL;
  for (p = strstr(s, "for <"); p != NULL; p = strstr(p + 1, "for <"))
    forp = p;
  if (forp != NULL) {
    const char *gt = strchr(forp, '>');
    ck_assert_ptr_nonnull(gt);
    ck_assert_msg(gt[1] == ';', "path does not end at '>': %s", s);
    ck_assert_msg(memchr(forp + 6, '<', (size_t)(gt - forp - 6)) == NULL,
                  "'<' inside path");
  }
}

/* fmt - format into buf (cap 4096) and run the structural check. */
static size_t fmt(char *buf, const smtpd_received *r)
{
  size_t n = smtpd_received_format(buf, 4096, r);
  ck_assert_uint_gt(n, 0);
  ck_assert_uint_lt(n, 4096);
  check_one_field(buf, n);
  return n;
}

/* ---- transmission types -------------------------------------------- */

static const struct {
  smtpd_received_base base;
  int is_helo, utf8, tls, auth;
  const char *with;
} types[] = {
  { SMTPD_RECEIVED_SMTP, 0, 0, 0, 0, "SMTP" },
  { SMTPD_RECEIVED_SMTP, 0, 0, 1, 1, "SMTP" },
  { SMTPD_RECEIVED_SMTP, 1, 1, 1, 1, "SMTP" },
  { SMTPD_RECEIVED_ESMTP, 1, 0, 0, 0, "SMTP" },
  { SMTPD_RECEIVED_ESMTP, 1, 0, 1, 0, "SMTP" },
  { SMTPD_RECEIVED_ESMTP, 1, 0, 0, 1, "SMTP" },
  { SMTPD_RECEIVED_ESMTP, 1, 0, 1, 1, "SMTP" },
  { SMTPD_RECEIVED_ESMTP, 1, 1, 1, 1, "SMTP" },
  { SMTPD_RECEIVED_ESMTP, 0, 0, 0, 0, "ESMTP" },
  { SMTPD_RECEIVED_ESMTP, 0, 0, 1, 0, "ESMTPS" },
  { SMTPD_RECEIVED_ESMTP, 0, 0, 0, 1, "ESMTPA" },
  { SMTPD_RECEIVED_ESMTP, 0, 0, 1, 1, "ESMTPSA" },
  { SMTPD_RECEIVED_ESMTP, 0, 1, 0, 0, "UTF8SMTP" },
  { SMTPD_RECEIVED_ESMTP, 0, 1, 1, 0, "UTF8SMTPS" },
  { SMTPD_RECEIVED_ESMTP, 0, 1, 0, 1, "UTF8SMTPA" },
  { SMTPD_RECEIVED_ESMTP, 0, 1, 1, 1, "UTF8SMTPSA" },
  { SMTPD_RECEIVED_LMTP, 0, 0, 0, 0, "LMTP" },
  { SMTPD_RECEIVED_LMTP, 0, 0, 1, 0, "LMTPS" },
  { SMTPD_RECEIVED_LMTP, 0, 0, 0, 1, "LMTPA" },
  { SMTPD_RECEIVED_LMTP, 0, 0, 1, 1, "LMTPSA" },
  { SMTPD_RECEIVED_LMTP, 0, 1, 0, 0, "UTF8LMTP" },
  { SMTPD_RECEIVED_LMTP, 0, 1, 1, 0, "UTF8LMTPS" },
  { SMTPD_RECEIVED_LMTP, 0, 1, 0, 1, "UTF8LMTPA" },
  { SMTPD_RECEIVED_LMTP, 0, 1, 1, 1, "UTF8LMTPSA" },
  { SMTPD_RECEIVED_LMTP, 1, 0, 1, 1, "LMTPSA" }, /* no HELO in LMTP */
};

START_TEST(test_protocol_table)
{
  const char *p = smtpd_received_protocol(types[_i].base, types[_i].is_helo,
                                          types[_i].utf8, types[_i].tls,
                                          types[_i].auth);
  ck_assert_ptr_nonnull(p);
  ck_assert_str_eq(p, types[_i].with);
}
END_TEST

START_TEST(test_protocol_invalid)
{
  smtpd_received r;
  char buf[64];

  ck_assert_ptr_null(smtpd_received_protocol((smtpd_received_base)3, 0, 0,
                                             0, 0));
  ck_assert_ptr_null(smtpd_received_protocol((smtpd_received_base)-1, 0, 0,
                                             0, 0));
  /* the flags are booleans: any non-zero value counts */
  ck_assert_str_eq(smtpd_received_protocol(SMTPD_RECEIVED_ESMTP, 0, 7, 2,
                                           -1),
                   "UTF8SMTPSA");
  base_desc(&r);
  r.base = (smtpd_received_base)9;
  memset(buf, 'Z', sizeof buf);
  ck_assert_uint_eq(smtpd_received_format(buf, sizeof buf, &r), 0);
  ck_assert_str_eq(buf, "");
  base_desc(&r);
  r.version = 0; /* not initialised */
  memset(buf, 'Z', sizeof buf);
  ck_assert_uint_eq(smtpd_received_format(buf, sizeof buf, &r), 0);
  ck_assert_str_eq(buf, "");
  ck_assert_uint_eq(smtpd_received_format(buf, sizeof buf, NULL), 0);
  ck_assert_uint_eq(smtpd_received_format(NULL, 0, NULL), 0);
}
END_TEST

/* The whole field for every type: the TLS and AUTH comments follow the
 * facts, the "with" clause follows the table. */
START_TEST(test_types_full)
{
  smtpd_received r;
  char buf[4096], want[1024];
  size_t n;

  base_desc(&r);
  r.base = types[_i].base;
  r.is_helo = types[_i].is_helo;
  r.utf8 = types[_i].utf8;
  r.tls = types[_i].tls ? &tls13 : NULL;
  r.auth_user = types[_i].auth ? "user" : NULL;
  r.show_auth = 1;
  snprintf(want, sizeof want,
           "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
           "%s%s"
           "\tby mx.example (libsmtpd) with %s id QID\r\n"
           "\tfor <rcpt@example.org>; Tue, 24 Nov 2026 19:40:00 +0000\r\n",
           types[_i].tls ? "\t(using TLSv1.3 with cipher "
                           "TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
                           "\t(No client certificate requested)\r\n"
                         : "",
           types[_i].auth ? "\t(Authenticated sender: user)\r\n" : "",
           types[_i].with);
  n = fmt(buf, &r);
  ck_assert_str_eq(buf, want);
  ck_assert_uint_eq(n, strlen(want));
}
END_TEST

/* The four seed cases, written out in full. */
START_TEST(test_seed_helo_stays_smtp)
{
  smtpd_received r;
  char buf[4096];

  base_desc(&r);
  r.base = SMTPD_RECEIVED_SMTP;
  r.tls = &tls13;
  r.auth_user = "user";
  r.show_auth = 1;
  fmt(buf, &r);
  ck_assert_str_eq(buf,
    "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
    "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
    "\t(No client certificate requested)\r\n"
    "\t(Authenticated sender: user)\r\n"
    "\tby mx.example (libsmtpd) with SMTP id QID\r\n"
    "\tfor <rcpt@example.org>; Tue, 24 Nov 2026 19:40:00 +0000\r\n");
  /* the same through is_helo on an ESMTP base */
  r.base = SMTPD_RECEIVED_ESMTP;
  r.is_helo = 1;
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(buf, " with SMTP id QID\r\n"));
}
END_TEST

START_TEST(test_seed_esmtps)
{
  smtpd_received r;
  char buf[4096];

  base_desc(&r);
  r.tls = &tls13;
  fmt(buf, &r);
  ck_assert_str_eq(buf,
    "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
    "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
    "\t(No client certificate requested)\r\n"
    "\tby mx.example (libsmtpd) with ESMTPS id QID\r\n"
    "\tfor <rcpt@example.org>; Tue, 24 Nov 2026 19:40:00 +0000\r\n");
}
END_TEST

START_TEST(test_seed_esmtpa)
{
  smtpd_received r;
  char buf[4096];

  base_desc(&r);
  r.auth_user = "user";
  /* default: the authenticated name is not shown (as Postfix) */
  fmt(buf, &r);
  ck_assert_str_eq(buf,
    "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
    "\tby mx.example (libsmtpd) with ESMTPA id QID\r\n"
    "\tfor <rcpt@example.org>; Tue, 24 Nov 2026 19:40:00 +0000\r\n");
  r.show_auth = 1;
  fmt(buf, &r);
  ck_assert_str_eq(buf,
    "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
    "\t(Authenticated sender: user)\r\n"
    "\tby mx.example (libsmtpd) with ESMTPA id QID\r\n"
    "\tfor <rcpt@example.org>; Tue, 24 Nov 2026 19:40:00 +0000\r\n");
}
END_TEST

START_TEST(test_seed_esmtpsa)
{
  smtpd_received r;
  char buf[4096];

  base_desc(&r);
  r.tls = &tls13;
  r.auth_user = "user";
  r.show_auth = 1;
  fmt(buf, &r);
  ck_assert_str_eq(buf,
    "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
    "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
    "\t(No client certificate requested)\r\n"
    "\t(Authenticated sender: user)\r\n"
    "\tby mx.example (libsmtpd) with ESMTPSA id QID\r\n"
    "\tfor <rcpt@example.org>; Tue, 24 Nov 2026 19:40:00 +0000\r\n");
}
END_TEST

/* ---- layout variants ------------------------------------------------ */

START_TEST(test_client_cert_variants)
{
  smtpd_received r;
  char buf[4096];
  smtpd_tls_info t = tls13;

  base_desc(&r);
  r.tls = &t;
  t.client_cert_requested = 1;
  fmt(buf, &r);
  ck_assert_ptr_nonnull(
      strstr(buf, "\r\n\t(Client certificate requested but not verified)"
                  "\r\n\tby "));
  t.client_cert_verified = 1;
  fmt(buf, &r);
  ck_assert_ptr_nonnull(
      strstr(buf, "\r\n\t(Client certificate verified)\r\n\tby "));
  t.peer_subject = "CN=client.example";
  t.peer_issuer = "CN=CA";
  fmt(buf, &r);
  ck_assert_ptr_nonnull(
      strstr(buf, "\r\n\t(Client certificate verified: subject "
                  "\"CN=client.example\", issuer \"CN=CA\")"
                  "\r\n\tby "));
  ck_assert_ptr_null(strstr(buf, "No client certificate"));
  t.peer_issuer = NULL;
  fmt(buf, &r);
  ck_assert_ptr_nonnull(
      strstr(buf, "\t(Client certificate verified: subject "
                  "\"CN=client.example\")\r\n"));
  /* minimal TLS facts: no cipher, no bits */
  t.protocol = NULL;
  t.cipher = NULL;
  t.cipher_bits = 0;
  t.alg_bits = 0;
  t.client_cert_requested = 0;
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(buf, "\r\n\t(using TLS)\r\n"));
  t.protocol = "TLSv1.2";
  t.cipher = "ECDHE-RSA-AES128-GCM-SHA256";
  t.cipher_bits = 128;
  t.alg_bits = 128;
  fmt(buf, &r);
  ck_assert_ptr_nonnull(
      strstr(buf, "\r\n\t(using TLSv1.2 with cipher "
                  "ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits))\r\n"));
}
END_TEST

START_TEST(test_ipv6_and_unknown)
{
  smtpd_received r;
  char buf[4096];

  base_desc(&r);
  r.addr = "2001:db8::1";
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(
      buf, "Received: from helo.example (rdns.example [IPv6:2001:db8::1])"
           "\r\n\tby "));
  r.addr = "IPv6:2001:db8::2"; /* already tagged: not doubled */
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(buf, " [IPv6:2001:db8::2])\r\n"));
  r.addr = "::ffff:192.0.2.7";
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(buf, " [IPv6:::ffff:192.0.2.7])\r\n"));

  base_desc(&r);
  r.rdns = NULL;
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(
      buf, "Received: from helo.example (unknown [192.0.2.1])\r\n"));
  r.rdns = "";
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(buf, " (unknown [192.0.2.1])\r\n"));
  /* no HELO at all: the client's name stands in, as Postfix does */
  r.helo = NULL;
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(
      buf, "Received: from unknown (unknown [192.0.2.1])\r\n"));
  r.rdns = "rdns.example";
  r.helo = "";
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(
      buf, "Received: from rdns.example (rdns.example [192.0.2.1])\r\n"));
  r.addr = NULL;
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(buf, "(rdns.example [unknown])\r\n"));
  /* address literal HELO */
  r.helo = "[192.0.2.1]";
  fmt(buf, &r);
  ck_assert_ptr_nonnull(
      strstr(buf, "Received: from [192.0.2.1] (rdns.example [unknown])"));
  r.helo = "[IPv6:2001:db8::1]";
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(buf, "from [IPv6:2001:db8::1] (rdns"));
}
END_TEST

START_TEST(test_recipients)
{
  smtpd_received r;
  char buf[4096];

  base_desc(&r);
  r.recipient = NULL; /* several recipients, or none */
  fmt(buf, &r);
  ck_assert_str_eq(buf,
    "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
    "\tby mx.example (libsmtpd) with ESMTP id QID;\r\n"
    "\tTue, 24 Nov 2026 19:40:00 +0000\r\n");
  r.recipient = "";
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(buf, " id QID;\r\n\tTue, 24 Nov"));
  r.recipient = "Postmaster";
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(
      buf, "\tfor <Postmaster>; Tue, 24 Nov 2026 19:40:00 +0000\r\n"));
  /* no queue id, no software comment, our name unset */
  base_desc(&r);
  r.queue_id = NULL;
  r.software = NULL;
  r.hostname = NULL;
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(buf, "\r\n\tby localhost with ESMTP\r\n"
                                    "\tfor <rcpt@example.org>; Tue"));
  r.software = "ExampleMTA 2.0";
  fmt(buf, &r);
  ck_assert_ptr_nonnull(
      strstr(buf, "\tby localhost (ExampleMTA 2.0) with ESMTP\r\n"));
}
END_TEST

/* ---- dates ---------------------------------------------------------- */

static const struct {
  int64_t t;
  int off;
  const char *date;
} dates[] = {
  { 0, 0, "Thu, 1 Jan 1970 00:00:00 +0000" },
  { 0, 60, "Thu, 1 Jan 1970 01:00:00 +0100" },
  { 0, -330, "Wed, 31 Dec 1969 18:30:00 -0530" },
  { -1, 0, "Wed, 31 Dec 1969 23:59:59 +0000" },
  { INT64_C(1709208000), 0, "Thu, 29 Feb 2024 12:00:00 +0000" },
  { INT64_C(951868800), 0, "Wed, 1 Mar 2000 00:00:00 +0000" },
  { INT64_C(978307199), 0, "Sun, 31 Dec 2000 23:59:59 +0000" },
  { INT64_C(4107542400), 0, "Mon, 1 Mar 2100 00:00:00 +0000" },
  { T_2026, -300, "Tue, 24 Nov 2026 14:40:00 -0500" },
  { T_2026, 345, "Wed, 25 Nov 2026 01:25:00 +0545" },
  { T_2026, 1439, "Wed, 25 Nov 2026 19:39:00 +2359" },
  { T_2026, 1440, "Tue, 24 Nov 2026 19:40:00 -0000" }, /* zone unknown */
  { T_2026, -100000, "Tue, 24 Nov 2026 19:40:00 -0000" },
  { INT64_C(253402300799), 0, "Fri, 31 Dec 9999 23:59:59 +0000" },
  { INT64_MAX, 0, "Fri, 31 Dec 9999 23:59:59 +0000" },
  { INT64_MAX, 1439, "Fri, 31 Dec 9999 23:59:59 +2359" },
  { INT64_C(-2208988800), 0, "Mon, 1 Jan 1900 00:00:00 +0000" },
  { INT64_MIN, -1439, "Mon, 1 Jan 1900 00:00:00 -2359" },
};

START_TEST(test_date_table)
{
  smtpd_received r;
  char buf[4096], want[128];

  base_desc(&r);
  r.time = dates[_i].t;
  r.utc_offset_minutes = dates[_i].off;
  fmt(buf, &r);
  snprintf(want, sizeof want, "<rcpt@example.org>; %s\r\n", dates[_i].date);
  ck_assert_msg(strstr(buf, want) != NULL, "want %s in %s", want, buf);
}
END_TEST

/* The civil-date arithmetic against the C library over 1901..9999. */
START_TEST(test_date_vs_gmtime)
{
  static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed",
                                    "Thu", "Fri", "Sat" };
  static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr",
                                    "May", "Jun", "Jul", "Aug",
                                    "Sep", "Oct", "Nov", "Dec" };
  smtpd_received r;
  char buf[4096], want[128];
  int64_t t;
  unsigned count = 0;

  base_desc(&r);
  r.recipient = NULL;
  for (t = INT64_C(-2177452800); t < INT64_C(253402214400);
       t += INT64_C(86400) * 1237 + 4321) {
    struct tm tm;
    time_t tt = (time_t)t;
    ck_assert_ptr_nonnull(gmtime_r(&tt, &tm));
    snprintf(want, sizeof want, ";\r\n\t%s, %d %s %04d %02d:%02d:%02d +0000\r\n",
             wd[tm.tm_wday], tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    r.time = t;
    smtpd_received_format(buf, sizeof buf, &r);
    ck_assert_msg(strstr(buf, want) != NULL, "t=%lld want %s got %s",
                  (long long)t, want, buf);
    count++;
  }
  ck_assert_uint_gt(count, 2000);
}
END_TEST

/* ---- folding -------------------------------------------------------- */

/* Every line over 78 octets (CRLF excluded) is one unit without a fold
 * point: a tab and one word, or a clause keyword and its value ("from",
 * "by", "id", "for"). With quoted_ok, the value may be the "for" path
 * whose quoted local part holds spaces (never folded). */
static void check_folds_q(const char *s, int quoted_ok)
{
  static const char *const units[] = { "Received: from ", "\tby ", "\tid ",
                                       "\tfor ", "\t" };
  const char *line = s;

  while (*line != '\0') {
    const char *end = strstr(line, "\r\n");
    size_t len;
    ck_assert_ptr_nonnull(end);
    len = (size_t)(end - line);
    ck_assert_uint_le(len, 998);
    if (len > 78) {
      int ok = 0;
      size_t u;
      for (u = 0; u < sizeof units / sizeof units[0] && !ok; u++) {
        size_t pl = strlen(units[u]);
        if (strncmp(line, units[u], pl) != 0)
          continue;
        ok = memchr(line + pl, ' ', len - pl) == NULL;
        if (!ok && quoted_ok)
          ok = strncmp(line, "\tfor <\"", 7) == 0 &&
               line[len - 1] == ';' && line[len - 2] == '>';
      }
      ck_assert_msg(ok, "foldable line of %zu octets: %.*s", len, (int)len,
                    line);
    }
    line = end + 2;
  }
}

static void check_folds(const char *s)
{
  check_folds_q(s, 0);
}

static void fill(char *dst, char c, size_t n)
{
  memset(dst, c, n);
  dst[n] = '\0';
}

START_TEST(test_fold_exact)
{
  smtpd_received r;
  char buf[4096], helo[41], rdns[41];

  fill(helo, 'h', 40);
  fill(rdns, 'r', 40);
  base_desc(&r);
  r.helo = helo;
  r.rdns = rdns;
  r.auth_user = "a long authenticated name with several words in it, "
                "long enough to need a fold";
  r.show_auth = 1;
  fmt(buf, &r);
  ck_assert_str_eq(buf,
    "Received: from hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh\r\n"
    "\t(rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr [192.0.2.1])\r\n"
    "\t(Authenticated sender: a long authenticated name with several words"
    " in it,\r\n\tlong enough to need a fold)\r\n"
    "\tby mx.example (libsmtpd) with ESMTPA id QID\r\n"
    "\tfor <rcpt@example.org>; Tue, 24 Nov 2026 19:40:00 +0000\r\n");
  check_folds(buf);
}
END_TEST

START_TEST(test_fold_long_names)
{
  smtpd_received r;
  smtpd_tls_info t = tls13;
  char buf[8192], big[2000], words[2000], rcpt[1300];
  size_t i, n;

  fill(big, 'x', sizeof big - 1);
  for (i = 0; i + 1 < sizeof words; i++)
    words[i] = (i % 7 == 6) ? ' ' : 'w';
  words[sizeof words - 1] = '\0';
  fill(rcpt, 'l', 600);
  memcpy(rcpt + 600, "@", 2);
  strcat(rcpt, big + 1400); /* 599-octet domain */

  t.protocol = big;
  t.cipher = words;
  t.client_cert_requested = 1;
  t.client_cert_verified = 1;
  t.peer_subject = words;
  t.peer_issuer = big;
  base_desc(&r);
  r.helo = big;
  r.rdns = big;
  r.addr = big;
  r.hostname = big;
  r.software = words;
  r.queue_id = big;
  r.auth_user = words;
  r.show_auth = 1;
  r.recipient = rcpt;
  r.tls = &t;
  n = smtpd_received_format(buf, sizeof buf, &r);
  ck_assert_uint_lt(n, sizeof buf);
  check_one_field(buf, n);
  check_folds(buf);
  /* every client text was cut to the limit */
  ck_assert_uint_lt(n, 4000);
  {
    /* the queue id (2000 x's) was cut to SMTPD_RECEIVED_MAX_TEXT */
    const char *id = strstr(buf, "\tid x");
    ck_assert_ptr_nonnull(id);
    ck_assert_uint_eq(strspn(id + 4, "x"), SMTPD_RECEIVED_MAX_TEXT);
    ck_assert_int_eq(id[4 + SMTPD_RECEIVED_MAX_TEXT], '\r');
  }
}
END_TEST

/* Each long text alone: the limit holds for every single field too. */
START_TEST(test_fold_each_field)
{
  smtpd_received r;
  smtpd_tls_info t = tls13;
  char buf[8192], big[1500], spaced[1500];
  size_t i, n;

  fill(big, 'y', sizeof big - 1);
  for (i = 0; i + 1 < sizeof spaced; i++)
    spaced[i] = (i % 13 == 12) ? ' ' : 's';
  spaced[sizeof spaced - 1] = '\0';
  for (i = 0; i < 2; i++) {
    const char *v = i ? spaced : big;
    int f;
    for (f = 0; f < 11; f++) {
      base_desc(&r);
      t = tls13;
      r.tls = &t;
      r.auth_user = "u";
      r.show_auth = 1;
      switch (f) {
      case 0: r.helo = v; break;
      case 1: r.rdns = v; break;
      case 2: r.addr = v; break;
      case 3: r.hostname = v; break;
      case 4: r.software = v; break;
      case 5: r.queue_id = v; break;
      case 6: r.auth_user = v; break;
      case 7: r.recipient = v; break;
      case 8: t.protocol = v; break;
      case 9: t.cipher = v; break;
      default:
        t.client_cert_requested = t.client_cert_verified = 1;
        t.peer_subject = v;
        t.peer_issuer = v;
        break;
      }
      n = smtpd_received_format(buf, sizeof buf, &r);
      ck_assert_uint_lt(n, 3000);
      check_one_field(buf, n);
      check_folds_q(buf, f == 7);
    }
  }
}
END_TEST

/* ---- snprintf semantics --------------------------------------------- */

START_TEST(test_truncation_every_cap)
{
  smtpd_received r;
  char full[4096], buf[4096 + 16];
  size_t need, cap;

  base_desc(&r);
  r.tls = &tls13;
  r.auth_user = "user";
  r.show_auth = 1;
  need = fmt(full, &r);
  ck_assert_uint_eq(smtpd_received_format(NULL, 0, &r), need);
  for (cap = 0; cap <= need + 2; cap++) {
    size_t got, k = cap, end;
    memset(buf, 'Z', sizeof buf);
    got = smtpd_received_format(buf, cap, &r);
    ck_assert_uint_eq(got, need);
    while (k < sizeof buf && buf[k] == 'Z') /* (one assertion, not one */
      k++;                                  /* per octet: they are slow) */
    ck_assert_msg(k == sizeof buf, "wrote past cap %zu at %zu", cap, k);
    if (cap == 0)
      continue;
    end = need < cap ? need : cap - 1;
    ck_assert_int_eq(buf[end], '\0');
    ck_assert_msg(memcmp(buf, full, end) == 0, "not a prefix at cap %zu",
                  cap);
  }
}
END_TEST

/* Folds move the rest of a line two octets on: also when the buffer ends
 * inside the moved part, in a fold's CRLF TAB or in a span that is built
 * aside (a long path), every cap gives a prefix of the full field. */
START_TEST(test_truncation_every_cap_folded)
{
  smtpd_received r;
  smtpd_tls_info t = tls13;
  char full[4096], buf[4096 + 16], helo[61], subject[200];
  size_t need, cap, i, folds = 0;

  fill(helo, 'h', 60);
  for (i = 0; i + 4 < sizeof subject; i += 4)
    memcpy(subject + i, "ab (", 4);
  subject[i] = '\0';
  base_desc(&r);
  r.helo = helo;
  t.client_cert_requested = 1;
  t.client_cert_verified = 1;
  t.peer_subject = subject;
  t.peer_issuer = "CN=Some Issuing Authority, O=Example, C=XX";
  r.tls = &t;
  r.auth_user = "a long authenticated name with several words in it";
  r.show_auth = 1;
  r.recipient = "\"a quoted local part with spaces that is long\""
                "@a-rather-long-recipient-domain.example.org";
  need = fmt(full, &r);
  for (i = 0; i + 1 < need; i++)
    folds += full[i] == '\n' && full[i + 1] == '\t';
  ck_assert_uint_gt(folds, 8); /* word folds besides the 6 line starts */
  for (cap = 0; cap <= need + 2; cap++) {
    size_t got, k = cap, end = need < cap ? need : cap - 1;
    memset(buf, 'Z', sizeof buf);
    got = smtpd_received_format(cap ? buf : NULL, cap, &r);
    while (k < sizeof buf && buf[k] == 'Z')
      k++;
    /* one assertion per cap (each costs a message to the runner) */
    ck_assert_msg(got == need && k == sizeof buf &&
                      (cap == 0 ||
                       (buf[end] == '\0' && memcmp(buf, full, end) == 0)),
                  "cap %zu: length %zu of %zu, first write past cap at %zu "
                  "or not a NUL-terminated prefix",
                  cap, got, need, k);
  }
}
END_TEST

/* ---- injection ------------------------------------------------------ */

enum field { F_HELO, F_RDNS, F_ADDR, F_HOST, F_SOFT, F_QID, F_USER,
             F_RCPT, F_PROTO, F_CIPHER, F_SUBJECT };

static const struct {
  enum field f;
  const char *value;
  const char *want; /* must appear in the output */
} inject[] = {
  { F_HELO, "a\r\nBcc: x", "Received: from a??Bcc??x (rdns.example" },
  { F_HELO, "a\nX-Evil: 1", "from a?X-Evil??1 (" },
  { F_HELO, "foo(bar)", "from foo?bar? (rdns.example" },
  { F_HELO, "foo (bar", "from foo??bar (rdns.example" },
  { F_HELO, "h\xc3\xa9llo.example", "from h??llo.example (" },
  { F_HELO, "<x@y>;\"q\"", "from ?x?y???q? (" },
  { F_HELO, "[1.2.3.4]]", "from [1.2.3.4?] (" },
  { F_HELO, "[1.2\r\n.3]", "from [1.2??.3] (" },
  { F_RDNS, "evil\0.example", "(evil [192.0.2.1])" },
  { F_RDNS, "r\x01\x7f(x)", "(r???x? [192.0.2.1])" },
  { F_RDNS, "a [1.1.1.1]) by x", "(a??1.1.1.1???by?x [192.0.2.1])" },
  { F_ADDR, "192.0.2.1]\r\nX: y", "[IPv6:192.0.2.1???X:?y])" },
  { F_HOST, "mx example\r\n", "\tby mx?example?? (libsmtpd)" },
  { F_SOFT, "lib(smtpd)\\", "\tby mx.example (lib\\(smtpd\\)\\\\) with" },
  { F_QID, "Q\r\nX(1)", " id Q??X?1?\r\n" },
  { F_QID, "Q.1 2", " id Q?1?2\r\n" },
  { F_USER, "j\xc3\xb6rg", "\t(Authenticated sender: j??rg)\r\n" },
  { F_USER, "a)b(c\\d\"e", "(Authenticated sender: a\\)b\\(c\\\\d\\\"e)" },
  { F_USER, "x)\r\nBcc: y", "(Authenticated sender: x\\)??Bcc: y)\r\n" },
  { F_USER, "  spaced   out  ", "(Authenticated sender: spaced out)\r\n" },
  { F_USER, "", "(Authenticated sender: unknown)\r\n" },
  { F_USER, "\t\x80", "(Authenticated sender: ?\?)\r\n" },
  { F_RCPT, "\"john \\\"q\\\" doe\"@example.org",
    "\tfor <\"john \\\"q\\\" doe\"@example.org>; Tue" },
  { F_RCPT, "john doe@example.org", "for <\"john doe\"@example.org>; Tue" },
  { F_RCPT, "a>b@example.org", "for <a?b@example.org>; Tue" },
  { F_RCPT, "ab@example.org>; x", "for <ab@example.org???x>; Tue" },
  { F_RCPT, "\"a>\r\nBcc: x\"@example.org",
    "for <\"a???Bcc: x\"@example.org>; Tue" },
  { F_RCPT, "\"simple\"@example.org", "for <simple@example.org>; Tue" },
  { F_RCPT, "\"a@b\"@example.org", "for <\"a@b\"@example.org>; Tue" },
  { F_RCPT, "\"a\\\\b\"@example.org", "for <\"a\\\\b\"@example.org>; Tue" },
  { F_RCPT, "\"unclosed@example.org", "for <\"\\\"unclosed\"@example.org>" },
  { F_RCPT, ".dot.@example.org", "for <\".dot.\"@example.org>; Tue" },
  { F_RCPT, "a..b@example.org", "for <\"a..b\"@example.org>; Tue" },
  { F_RCPT, "@example.org", "for <\"\"@example.org>; Tue" },
  { F_RCPT, "user@[192.0.2.1]", "for <user@[192.0.2.1]>; Tue" },
  { F_RCPT, "user@[1.2>3]", "for <user@[1.2?3]>; Tue" },
  { F_RCPT, "us\xc3\xa9r@ex\xc3\xa4mple.org",
    "for <us??r@ex??mple.org>; Tue" },
  { F_RCPT, "user@", "for <user>; Tue" },
  { F_PROTO, "TLSv1.3)\r\n(x", "(using TLSv1.3\\)??\\(x with cipher" },
  { F_CIPHER, "X)\r\n", "with cipher X\\)?? (256/256 bits))\r\n" },
  { F_SUBJECT, "CN=a\"b), O=c",
    "(Client certificate verified: subject \"CN=a\\\"b\\), O=c\")\r\n" },
};

START_TEST(test_injection)
{
  smtpd_received r;
  smtpd_tls_info t = tls13;
  char buf[4096];
  const char *v = inject[_i].value;

  base_desc(&r);
  r.tls = &t;
  switch (inject[_i].f) {
  case F_HELO: r.helo = v; break;
  case F_RDNS: r.rdns = v; break;
  case F_ADDR: r.addr = v; break;
  case F_HOST: r.hostname = v; break;
  case F_SOFT: r.software = v; break;
  case F_QID: r.queue_id = v; break;
  case F_USER: r.auth_user = v; r.show_auth = 1; break;
  case F_RCPT: r.recipient = v; break;
  case F_PROTO: t.protocol = v; break;
  case F_CIPHER: t.cipher = v; break;
  case F_SUBJECT:
    t.client_cert_requested = t.client_cert_verified = 1;
    t.peer_subject = v;
    break;
  }
  fmt(buf, &r);
  ck_assert_msg(strstr(buf, inject[_i].want) != NULL, "want [%s] in [%s]",
                inject[_i].want, buf);
  /* nothing the client sent became a header line of its own */
  ck_assert_ptr_null(strstr(buf, "\nBcc"));
  ck_assert_ptr_null(strstr(buf, "\nX"));
}
END_TEST

/* Every octet value in every client text: still one field. */
START_TEST(test_all_octets)
{
  smtpd_received r;
  smtpd_tls_info t = tls13;
  char buf[4096], v[8];
  int c;

  for (c = 1; c < 256; c++) {
    v[0] = 'a';
    v[1] = (char)c;
    v[2] = '(';
    v[3] = (char)c;
    v[4] = '@';
    v[5] = (char)c;
    v[6] = 'z';
    v[7] = '\0';
    base_desc(&r);
    t.client_cert_requested = t.client_cert_verified = 1;
    t.peer_subject = v;
    t.peer_issuer = v;
    t.protocol = v;
    t.cipher = v;
    r.tls = &t;
    r.helo = v;
    r.rdns = v;
    r.addr = v;
    r.hostname = v;
    r.software = v;
    r.queue_id = v;
    r.auth_user = v;
    r.show_auth = 1;
    r.recipient = v;
    fmt(buf, &r);
  }
}
END_TEST

/* ---- from a live session -------------------------------------------- */

/* drain - take every queued reply; returns the first reply code. */
static int drain(smtpd_session *s)
{
  const uint8_t *data;
  size_t n;
  int code = 0;

  while ((n = smtpd_session_output(s, &data)) > 0) {
    if (code == 0 && n >= 3)
      code = (data[0] - '0') * 100 + (data[1] - '0') * 10 + (data[2] - '0');
    ck_assert_int_eq(smtpd_session_consume(s, n), SMTPD_OK);
  }
  return code;
}

/* feed_lines - one command at a time, each answered before the next;
 * every reply must be 2xx. */
static void feed_lines(smtpd_session *s, const char *script)
{
  while (*script != '\0') {
    const char *end = strstr(script, "\r\n");
    size_t len;
    int code;
    ck_assert_ptr_nonnull(end);
    len = (size_t)(end - script) + 2;
    ck_assert_int_eq(smtpd_session_feed(s, script, len), (ptrdiff_t)len);
    code = drain(s);
    ck_assert_msg(code >= 200 && code < 300, "reply %d to %.*s", code,
                  (int)len - 2, script);
    script += len;
  }
}

static smtpd_session *make_session(smtpd_config **cfg, const char *script)
{
  smtpd_session *s = NULL;

  ck_assert_int_eq(smtpd_config_new(cfg, NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_config_set_hostname(*cfg, "mx.example"), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_new(&s, *cfg, NULL, NULL), SMTPD_OK);
  ck_assert_int_eq(smtpd_session_set_client(s, "192.0.2.1", "rdns.example"),
                   SMTPD_OK);
  ck_assert_int_eq(smtpd_session_start(s), SMTPD_OK);
  ck_assert_int_eq(drain(s), 220);
  feed_lines(s, script);
  return s;
}

START_TEST(test_from_session_esmtp)
{
  smtpd_config *cfg = NULL;
  smtpd_session *s;
  smtpd_received r;
  char buf[4096];

  s = make_session(&cfg, "EHLO helo.example\r\n"
                         "MAIL FROM:<a@example.org>\r\n"
                         "RCPT TO:<rcpt@example.org>\r\n");
  smtpd_received_init(&r);
  r.queue_id = "QID";
  r.time = T_2026;
  ck_assert_int_eq(smtpd_received_from_session(&r, s), SMTPD_OK);
  ck_assert_str_eq(r.queue_id, "QID"); /* host fields untouched */
  ck_assert_ptr_null(r.tls);
  ck_assert_ptr_null(r.auth_user);
  fmt(buf, &r);
  ck_assert_str_eq(buf,
    "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
    "\tby mx.example (libsmtpd) with ESMTP id QID\r\n"
    "\tfor <rcpt@example.org>; Tue, 24 Nov 2026 19:40:00 +0000\r\n");

  /* a second recipient: no "for" clause */
  feed_lines(s, "RCPT TO:<b@example.org>\r\n");
  ck_assert_int_eq(smtpd_received_from_session(&r, s), SMTPD_OK);
  ck_assert_ptr_null(r.recipient);
  fmt(buf, &r);
  ck_assert_ptr_nonnull(strstr(buf, " with ESMTP id QID;\r\n\tTue, 24 Nov"));

  /* an LMTP base set by the host is kept */
  r.base = SMTPD_RECEIVED_LMTP;
  ck_assert_int_eq(smtpd_received_from_session(&r, s), SMTPD_OK);
  ck_assert_int_eq(r.base, SMTPD_RECEIVED_LMTP);
  smtpd_session_del(s);
  smtpd_config_del(cfg);
}
END_TEST

START_TEST(test_from_session_helo)
{
  smtpd_config *cfg = NULL;
  smtpd_session *s;
  smtpd_received r;
  char buf[4096];

  s = make_session(&cfg, "HELO helo.example\r\n"
                         "MAIL FROM:<a@example.org>\r\n"
                         "RCPT TO:<\"john doe\"@example.org>\r\n");
  smtpd_received_init(&r);
  r.queue_id = "QID";
  r.time = T_2026;
  ck_assert_int_eq(smtpd_received_from_session(&r, s), SMTPD_OK);
  ck_assert_int_eq(r.is_helo || r.base == SMTPD_RECEIVED_SMTP, 1);
  fmt(buf, &r);
  ck_assert_str_eq(buf,
    "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
    "\tby mx.example (libsmtpd) with SMTP id QID\r\n"
    "\tfor <\"john doe\"@example.org>; Tue, 24 Nov 2026 19:40:00 +0000\r\n");
  smtpd_session_del(s);
  smtpd_config_del(cfg);
}
END_TEST

START_TEST(test_from_session_args)
{
  smtpd_config *cfg = NULL;
  smtpd_session *s;
  smtpd_received r;

  s = make_session(&cfg, "");
  smtpd_received_init(&r);
  ck_assert_int_eq(smtpd_received_from_session(NULL, s),
                   SMTPD_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(smtpd_received_from_session(&r, NULL),
                   SMTPD_ERR_INVALID_ARGUMENT);
  memset(&r, 0, sizeof r);
  ck_assert_int_eq(smtpd_received_from_session(&r, s),
                   SMTPD_ERR_INVALID_ARGUMENT);
  smtpd_session_del(s);
  smtpd_config_del(cfg);
}
END_TEST

START_TEST(test_init_defaults)
{
  smtpd_received r;

  memset(&r, 0x5a, sizeof r);
  smtpd_received_init(&r);
  ck_assert_uint_eq(r.version, SMTPD_RECEIVED_VERSION);
  ck_assert_str_eq(r.software, "libsmtpd");
  ck_assert_int_eq(r.base, SMTPD_RECEIVED_ESMTP);
  ck_assert_ptr_null(r.helo);
  ck_assert_ptr_null(r.tls);
  ck_assert_ptr_null(r.recipient);
  ck_assert_int_eq(r.show_auth, 0);
  ck_assert_int_eq(r.utf8, 0);
  ck_assert(r.time == 0);
  ck_assert_int_eq(r.utc_offset_minutes, 0);
  smtpd_received_init(NULL); /* no crash */
}
END_TEST

static Suite *received_suite(void)
{
  Suite *s = suite_create("received");
  TCase *tc = tcase_create("format");

  tcase_add_loop_test(tc, test_protocol_table, 0,
                      (int)(sizeof types / sizeof types[0]));
  tcase_add_test(tc, test_protocol_invalid);
  tcase_add_loop_test(tc, test_types_full, 0,
                      (int)(sizeof types / sizeof types[0]));
  tcase_add_test(tc, test_seed_helo_stays_smtp);
  tcase_add_test(tc, test_seed_esmtps);
  tcase_add_test(tc, test_seed_esmtpa);
  tcase_add_test(tc, test_seed_esmtpsa);
  tcase_add_test(tc, test_client_cert_variants);
  tcase_add_test(tc, test_ipv6_and_unknown);
  tcase_add_test(tc, test_recipients);
  tcase_add_loop_test(tc, test_date_table, 0,
                      (int)(sizeof dates / sizeof dates[0]));
  tcase_add_test(tc, test_date_vs_gmtime);
  tcase_add_test(tc, test_fold_exact);
  tcase_add_test(tc, test_fold_long_names);
  tcase_add_test(tc, test_fold_each_field);
  tcase_add_test(tc, test_truncation_every_cap);
  tcase_add_test(tc, test_truncation_every_cap_folded);
  tcase_add_loop_test(tc, test_injection, 0,
                      (int)(sizeof inject / sizeof inject[0]));
  tcase_add_test(tc, test_all_octets);
  tcase_add_test(tc, test_init_defaults);
  suite_add_tcase(s, tc);

  tc = tcase_create("session");
  tcase_add_test(tc, test_from_session_esmtp);
  tcase_add_test(tc, test_from_session_helo);
  tcase_add_test(tc, test_from_session_args);
  suite_add_tcase(s, tc);
  return s;
}

int main(void)
{
  SRunner *sr = srunner_create(received_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
