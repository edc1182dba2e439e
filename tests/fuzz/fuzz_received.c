/*
 * fuzz_received.c - libFuzzer harness for the Received: formatter
 * (include/smtpd/received.h), with every text of the description taken
 * from the input, directly or through a real session
 * (smtpd_received_from_session after EHLO/MAIL/RCPT/TLS with those texts).
 *
 * Oracles, for every description:
 *  - one header field: "Received: from " ... CRLF, nothing after; every
 *    line ends in CRLF (no bare CR or LF), every line after the first
 *    starts with a tab (a fold), no line is empty or over 998 octets; every
 *    other octet is printable ASCII (no NUL: strlen == the length);
 *  - no injection: unfolded, the field parses as comments (balanced, with
 *    quoted-pairs), quoted strings and words into exactly
 *    "from X by Y with PROTO [id Q] [for <P>] ; DATE" with PROTO ==
 *    smtpd_received_protocol(), "id" exactly when a queue id was given,
 *    "for" exactly when a recipient was, one ';' outside comments and
 *    quotes, one '<' and '>' (the path's) outside them;
 *  - the date is "Www, D Mmm YYYY HH:MM:SS +ZZZZ" and, away from the
 *    clamped ends, equals gmtime_r(time + offset) (offsets outside
 *    -1439..1439 give "-0000" and UTC);
 *  - snprintf semantics: the same length for every cap, the output a
 *    NUL-terminated prefix; deterministic; an invalid base gives "" / 0.
 *
 * Input: 16 octets of numbers and flags, then up to 12 texts separated by
 * NUL (helo, rdns, addr, hostname, software, auth user, queue id,
 * recipient, TLS protocol, cipher, peer subject, issuer); a text "\x7f"
 * is NULL. Build: tests/fuzz.cmake.
 */
#define _GNU_SOURCE /* timegm-free gmtime_r on 64-bit time_t */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz_common.h"
#include "smtpd/received.h"

#define NTEXT 12

static void check_date(const char *d, int64_t t, int offset) {
  static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed",
                                   "Thu", "Fri", "Sat"};
  static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr",
                                    "May", "Jun", "Jul", "Aug",
                                    "Sep", "Oct", "Nov", "Dec"};
  char w[4], m[4], sign;
  int day, year, hh, mm, ss, zone, n = 0, known = offset >= -1439 &&
                                                offset <= 1439;
  FZ_CHECK(sscanf(d, "%3[A-Za-z], %d %3[A-Za-z] %d %d:%d:%d %c%4d%n", w, &day,
                  m, &year, &hh, &mm, &ss, &sign, &zone, &n) == 9 &&
               d[n] == 0,
           "date '%s'", d);
  FZ_CHECK(strlen(d) >= 30 && d[3] == ',' && (sign == '+' || sign == '-'),
           "date layout '%s'", d);
  if (!known)
    FZ_CHECK(sign == '-' && zone == 0, "unknown zone is not -0000: %s", d);
  else
    FZ_CHECK(zone == abs(offset) / 60 * 100 + abs(offset) % 60 &&
                 (offset < 0 ? sign == '-' : sign == '+'),
             "zone %c%04d for offset %d", sign, zone, offset);
  /* away from the clamped range ends: the calendar is gmtime's */
  if (t > INT64_C(-2208988800) + 2 * 86400 &&
      t < INT64_C(253402300799) - 2 * 86400) {
    time_t tt = (time_t)(t + (known ? offset : 0) * 60);
    struct tm tm;
    FZ_CHECK(gmtime_r(&tt, &tm) != NULL, "gmtime_r");
    FZ_CHECK(!strcmp(w, wd[tm.tm_wday]) && day == tm.tm_mday &&
                 !strcmp(m, mon[tm.tm_mon]) && year == tm.tm_year + 1900 &&
                 hh == tm.tm_hour && mm == tm.tm_min && ss == tm.tm_sec,
             "date '%s' for %lld%+d: gmtime says %s, %d %s %d %02d:%02d:%02d",
             d, (long long)t, offset, wd[tm.tm_wday], tm.tm_mday,
             mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
  }
}

/* The unfolded field's structure (see the top). */
static void check_structure(const char *f, const smtpd_received *r) {
  /* words outside comments; quoted strings and <...> kept in one word */
  char words[32][1100];
  size_t nw = 0, i, k = 0;
  int depth = 0, semis = 0, lt = 0, gt = 0, in_q = 0, in_angle = 0;
  const char *semi = NULL, *proto;
  size_t w0;
  memset(words[0], 0, 1);
  for (i = 0; f[i]; i++) {
    char c = f[i];
    if (depth) {
      if (c == '\\' && f[i + 1]) {
        i++;
        continue;
      }
      if (c == '(')
        depth++;
      else if (c == ')')
        depth--;
      continue;
    }
    if (in_q) {
      if (c == '\\' && f[i + 1]) {
        FZ_CHECK(nw < 32 && k + 2 < sizeof words[0], "word too long");
        words[nw][k++] = c;
        words[nw][k++] = f[++i];
        continue;
      }
      if (c == '"')
        in_q = 0;
      FZ_CHECK(nw < 32 && k + 1 < sizeof words[0], "word too long");
      words[nw][k++] = c;
      continue;
    }
    if (c == '(') {
      depth = 1;
      continue;
    }
    FZ_CHECK(c != ')', "')' outside a comment at %zu: %s", i, f);
    if (c == '"')
      in_q = 1;
    if (c == '<')
      lt++, in_angle = 1;
    if (c == '>')
      gt++, in_angle = 0;
    if (c == ';' && !in_angle) {
      semis++;
      semi = f + i;
      if (k) {
        words[nw][k] = 0;
        nw++;
        k = 0;
      }
      break; /* the date follows */
    }
    if (c == ' ') {
      if (k) {
        words[nw][k] = 0;
        nw++;
        k = 0;
      }
      continue;
    }
    FZ_CHECK(nw < 32 && k + 1 < sizeof words[0], "too many words: %s", f);
    words[nw][k++] = c;
  }
  FZ_CHECK(!in_q && !depth, "unterminated quote or comment: %s", f);
  FZ_CHECK(semi && semis == 1, "no ';' before the date: %s", f);
  FZ_CHECK(!strchr(semi + 1, ';'), "second ';': %s", f);
  FZ_CHECK(lt == gt && lt == (r->recipient && *r->recipient ? 1 : 0),
           "angle brackets %d/%d: %s", lt, gt, f);
  /* Received: from X by Y with PROTO [id Q] [for <P>] */
  FZ_CHECK(nw >= 7 && !strcmp(words[0], "Received:") &&
               !strcmp(words[1], "from") && !strcmp(words[3], "by") &&
               !strcmp(words[5], "with"),
           "clauses: %s", f);
  proto = smtpd_received_protocol(r->base, r->is_helo, r->utf8, r->tls != NULL,
                                  r->auth_user != NULL);
  FZ_CHECK(proto && !strcmp(words[6], proto), "with %s, expected %s",
           words[6], proto ? proto : "-");
  w0 = 7;
  if (r->queue_id && *r->queue_id) {
    FZ_CHECK(nw > w0 + 1 && !strcmp(words[w0], "id"), "no id: %s", f);
    w0 += 2;
  }
  if (r->recipient && *r->recipient) {
    FZ_CHECK(nw == w0 + 2 && !strcmp(words[w0], "for") &&
                 words[w0 + 1][0] == '<' &&
                 words[w0 + 1][strlen(words[w0 + 1]) - 1] == '>',
             "for clause: %s", f);
    w0 += 2;
  }
  FZ_CHECK(nw == w0, "extra words (%zu, expected %zu): %s", nw, w0, f);
  while (*++semi == ' ')
    ;
  check_date(semi, r->time, r->utc_offset_minutes);
}

static void check_field(const smtpd_received *r) {
  size_t cap = 16384, len, again, i, line = 0, ul = 0;
  char *buf = malloc(cap), *buf2 = malloc(cap), *unf = malloc(cap);
  int base_ok = (unsigned)r->base <= SMTPD_RECEIVED_LMTP;
  if (!buf || !buf2 || !unf)
    abort();
  len = smtpd_received_format(buf, cap, r);
  FZ_CHECK(len < cap, "field of %zu octets", len);
  if (!base_ok) {
    FZ_CHECK(len == 0 && buf[0] == 0, "invalid base gave a field");
    FZ_CHECK(!smtpd_received_protocol(r->base, 0, 0, 0, 0), "protocol");
    goto out;
  }
  FZ_CHECK(len > 0 && strlen(buf) == len, "length %zu, strlen %zu", len,
           strlen(buf));
  FZ_CHECK(!strncmp(buf, "Received: from ", 15), "start: %.40s", buf);
  FZ_CHECK(len >= 2 && buf[len - 2] == '\r' && buf[len - 1] == '\n',
           "no final CRLF");
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)buf[i];
    if (c == '\r') {
      FZ_CHECK(i + 1 < len && buf[i + 1] == '\n', "bare CR at %zu", i);
      FZ_CHECK(line > 0 && line <= 998, "line of %zu octets", line);
      FZ_CHECK(buf[i - 1] != '\t', "empty continuation line");
      i++;
      line = 0;
      if (i + 1 < len)
        FZ_CHECK(buf[i + 1] == '\t', "line %zu does not start with a tab",
                 i + 1);
      continue;
    }
    FZ_CHECK(c != '\n', "bare LF at %zu", i);
    if (c == '\t') {
      FZ_CHECK(line == 0 && i > 0, "tab inside a line at %zu", i);
    } else {
      FZ_CHECK(c >= 0x20 && c <= 0x7e, "octet 0x%02x at %zu", c, i);
      unf[ul++] = (char)c;
    }
    if (c == '\t')
      unf[ul++] = ' ';
    line++;
  }
  unf[ul] = 0;
  check_structure(unf, r);
  /* snprintf semantics and determinism */
  {
    size_t caps[6] = {0, 1, 2, len / 2, len, len + 1}, j;
    for (j = 0; j < 6; j++) {
      memset(buf2, 'Z', len + 2);
      again = smtpd_received_format(caps[j] ? buf2 : NULL, caps[j], r);
      FZ_CHECK(again == len, "cap %zu gave length %zu, full %zu", caps[j],
               again, len);
      if (caps[j]) {
        size_t k = caps[j] - 1 < len ? caps[j] - 1 : len;
        FZ_CHECK(!memcmp(buf2, buf, k) && buf2[k] == 0 &&
                     (caps[j] > len + 1 || buf2[caps[j]] == 'Z'),
                 "cap %zu: not a NUL-terminated prefix", caps[j]);
      }
    }
  }
out:
  free(buf);
  free(buf2);
  free(unf);
}

/* ---- a session that carries the texts ---------------------------------------- */

static void feed_line(smtpd_session *s, const char *a, const char *b) {
  char line[1200];
  const uint8_t *o;
  size_t n;
  snprintf(line, sizeof line, "%s%s\r\n", a, b);
  FZ_CHECK(smtpd_session_feed(s, line, strlen(line)) >= 0, "feed");
  n = smtpd_session_output(s, &o);
  smtpd_session_consume(s, n);
}

static void via_session(const char *const *t, const uint8_t *h) {
  smtpd_config *cfg;
  smtpd_session *s;
  smtpd_received r;
  smtpd_tls_info ti;
  int rv;
  FZ_CHECK(smtpd_config_new(&cfg, NULL) == 0, "config");
  smtpd_config_set_option(cfg, SMTPD_OPT_SMTPUTF8, 1);
  smtpd_config_set_option(cfg, SMTPD_OPT_STARTTLS, 1);
  smtpd_config_set_option(cfg, SMTPD_OPT_XCLIENT, 1);
  if (t[3])
    smtpd_config_set_hostname(cfg, t[3]); /* refused when not valid */
  FZ_CHECK(smtpd_session_new(&s, cfg, NULL, NULL) == 0, "session");
  rv = smtpd_session_set_client(s, t[2], t[1]);
  FZ_CHECK(rv == 0 || rv == SMTPD_ERR_INVALID_ARGUMENT, "set_client %d", rv);
  smtpd_session_start(s);
  {
    const uint8_t *o;
    smtpd_session_consume(s, smtpd_session_output(s, &o));
  }
  if (h[0] & 0x80) {
    feed_line(s, "STARTTLS", "");
    memset(&ti, 0, sizeof ti);
    ti.protocol = t[8];
    ti.cipher = t[9];
    ti.peer_subject = t[10];
    ti.peer_issuer = t[11];
    ti.cipher_bits = h[11];
    ti.alg_bits = h[12];
    ti.client_cert_requested = h[13] & 1;
    ti.client_cert_verified = (h[13] >> 1) & 1;
    smtpd_session_tls_established(s, &ti);
  }
  feed_line(s, (h[0] & 8) ? "HELO " : "EHLO ", t[0] ? t[0] : "");
  feed_line(s, "MAIL FROM:<a@b.example>", (h[0] & 4) ? " SMTPUTF8" : "");
  feed_line(s, "RCPT TO:", t[7] ? t[7] : "<x@y>");
  smtpd_received_init(&r);
  FZ_CHECK(r.version == SMTPD_RECEIVED_VERSION &&
               r.base == SMTPD_RECEIVED_ESMTP && !strcmp(r.software, "libsmtpd"),
           "init defaults");
  if (h[0] & 2)
    r.base = SMTPD_RECEIVED_LMTP;
  FZ_CHECK(smtpd_received_from_session(&r, s) == 0, "from_session");
  r.queue_id = t[6];
  r.software = t[4];
  r.show_auth = 1;
  memcpy(&r.time, h + 1, 8);
  r.utc_offset_minutes = (int16_t)(h[9] | h[10] << 8);
  check_field(&r);
  smtpd_session_del(s);
  smtpd_config_del(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *copy;
  const char *t[NTEXT];
  const uint8_t *h = data;
  smtpd_received r;
  smtpd_tls_info ti;
  size_t i, k = 0;
  char *p;
  if (size < 16 || size > 8192)
    return 0;
  copy = malloc(size - 16 + 1);
  if (!copy)
    abort();
  memcpy(copy, data + 16, size - 16);
  copy[size - 16] = 0;
  for (i = 0; i < NTEXT; i++)
    t[i] = NULL;
  p = copy;
  for (i = 0; i < NTEXT && p <= copy + (size - 16); i++) {
    size_t n = strlen(p);
    t[i] = strcmp(p, "\x7f") ? p : NULL;
    p += n + 1;
    k++;
  }
  (void)k;
  if (h[15] & 1) {
    via_session(t, h);
  } else {
    smtpd_received_init(&r);
    r.helo = t[0];
    r.rdns = t[1];
    r.addr = t[2];
    r.hostname = t[3];
    r.software = t[4];
    r.auth_user = t[5];
    r.queue_id = t[6];
    r.recipient = t[7];
    r.base = (smtpd_received_base)(h[0] & 3);
    r.is_helo = (h[0] >> 2) & 1;
    r.utf8 = (h[0] >> 3) & 1;
    r.show_auth = (h[0] >> 4) & 1;
    memcpy(&r.time, h + 1, 8);
    r.utc_offset_minutes = (int16_t)(h[9] | h[10] << 8);
    if (h[0] & 0x20) {
      memset(&ti, 0, sizeof ti);
      ti.protocol = t[8];
      ti.cipher = t[9];
      ti.peer_subject = t[10];
      ti.peer_issuer = t[11];
      ti.cipher_bits = (int8_t)h[11];
      ti.alg_bits = (int8_t)h[12];
      ti.client_cert_requested = h[13] & 1;
      ti.client_cert_verified = (h[13] >> 1) & 1;
      r.tls = &ti;
    }
    if (h[0] & 0x40)
      r.version = h[14]; /* mostly not SMTPD_RECEIVED_VERSION */
    if (r.version != SMTPD_RECEIVED_VERSION) {
      char b[8] = "x";
      FZ_CHECK(smtpd_received_format(b, sizeof b, &r) == 0 && b[0] == 0,
               "a description of version %u was formatted", r.version);
    } else {
      check_field(&r);
    }
  }
  free(copy);
  return 0;
}
