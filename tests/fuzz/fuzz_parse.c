/*
 * fuzz_parse.c - libFuzzer harness for the core's parsers (lib/parse.h,
 * linkable from the static library) and smtpd_proxy_parse, each checked
 * against an independent reference or an algebraic property:
 *
 *   base64    decode == a small reference decoder (strict RFC 4648,
 *             canonical); a decoded string re-encodes to the very input;
 *             encode(any bytes) == the reference encoder and decodes back;
 *             decoding in place and with a short cap behave as documented
 *   xtext     decode == a reference decoder (RFC 3461, no controls, no
 *             8-bit octets);
 *             reference-encoding the result decodes back to it
 *   path      deterministic; nothing written unless OK; an accepted path
 *             is within RFC 5321 limits, has no controls (no 8-bit without
 *             the UTF-8 flag), address == local@domain, and "<address>"
 *             parses again to the same parts (idempotent)
 *   params    keywords are upper-cased esmtp-keywords, values esmtp-value;
 *             joining them again parses to the same list; "too many" (-2)
 *             exactly when the count passes max
 *   u64       == a reference (1-20 digits, no overflow)
 *   utf8      == a reference decoder (no overlongs, surrogates, > 10FFFF)
 *   ip        smtpd_i_ip_valid == a reference of RFC 5321 4.1.3's IPv4 and
 *             IPv6 grammar
 *   sanitize  smtpd_i_sanitize / smtpd_neuter == their one-line
 *             definitions, always NUL-terminated within cap
 *   config    random setter calls: a setter succeeds exactly when its
 *             documented rule says (printable hostname without spaces,
 *             at most 255 octets; banner and EHLO keywords printable, at
 *             most 400; limits in their ranges; verbs and keywords; at
 *             most 16 keywords, 32 verbs, 32 parameters), the getters
 *             return what was set, a refused call changes nothing; a
 *             session on the result greets and answers EHLO with
 *             well-formed replies (lines <= 512 octets) carrying every
 *             keyword; smtpd_strerror/smtpd_is_fatal/smtpd_version agree
 *             with the error table
 *   proxy     smtpd_proxy_parse never reads past len (the input is an
 *             exact-size copy), returns <= len, is deterministic, and is
 *             monotone: every proper prefix of a valid header gives 0 (or
 *             the same header), an invalid one stays invalid when more
 *             octets follow, a valid one is unchanged by them; v2 address
 *             text equals inet_ntop's (RFC 5952) where that is pure hex
 *
 * Input: byte 0 picks the parser (mod 10), byte 1 its flags, the rest is
 * the text. Any violation calls abort(). Build: tests/fuzz.cmake.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "parse.h"

/* ---- references -------------------------------------------------------------- */

static int b64v(uint8_t c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

static long ref_b64_decode(const uint8_t *in, size_t len, uint8_t *out) {
  size_t i, o = 0;
  if (len == 0)
    return 0;
  if (len % 4)
    return -1;
  for (i = 0; i < len; i += 4) {
    int v[4], j, pad = 0, last = i + 4 == len;
    for (j = 0; j < 4; j++) {
      if (in[i + j] == '=') {
        /* only in the last group: "xx==" or "xxx=" */
        if (!last || j < 2 || (j == 2 && in[i + 3] != '='))
          return -1;
        v[j] = 0;
        pad++;
      } else {
        if (pad)
          return -1;
        v[j] = b64v(in[i + j]);
        if (v[j] < 0)
          return -1;
      }
    }
    if ((pad == 2 && (v[1] & 15)) || (pad == 1 && (v[2] & 3)))
      return -1;
    out[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
    if (pad < 2)
      out[o++] = (uint8_t)((v[1] & 15) << 4 | v[2] >> 2);
    if (pad < 1)
      out[o++] = (uint8_t)((v[2] & 3) << 6 | v[3]);
  }
  return (long)o;
}

static size_t ref_b64_encode(const uint8_t *in, size_t len, char *out) {
  static const char a[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i, o = 0;
  for (i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len)
      v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len)
      v |= in[i + 2];
    out[o++] = a[v >> 18 & 63];
    out[o++] = a[v >> 12 & 63];
    out[o++] = i + 1 < len ? a[v >> 6 & 63] : '=';
    out[o++] = i + 2 < len ? a[v & 63] : '=';
  }
  out[o] = 0;
  return o;
}

static int hexv(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* xtext = *( xchar / hexchar ), xchar 33..126 except '+' '='; hexchar
 * "+HH" (either case accepted); a decoded control, DEL or 8-bit octet
 * refused (the values are printable US-ASCII: RFC 3461 4.4) */
static long ref_xtext(const char *s, char *out) {
  size_t o = 0;
  while (*s) {
    if (*s == '+') {
      int a = hexv(s[1]), b = a < 0 ? -1 : hexv(s[2]), v;
      if (a < 0 || b < 0)
        return -1;
      v = a * 16 + b;
      if (v < 0x20 || v >= 0x7f)
        return -1;
      out[o++] = (char)v;
      s += 3;
    } else if ((unsigned char)*s >= 33 && (unsigned char)*s <= 126 &&
               *s != '=') {
      out[o++] = *s++;
    } else {
      return -1;
    }
  }
  out[o] = 0;
  return (long)o;
}

static size_t ref_xtext_encode(const char *s, char *out) {
  size_t o = 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 33 && c <= 126 && c != '+' && c != '=')
      out[o++] = (char)c;
    else
      o += (size_t)sprintf(out + o, "+%02X", c);
  }
  out[o] = 0;
  return o;
}

static int ref_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  size_t i;
  for (i = 0; s[i]; i++) {
    unsigned d;
    if (s[i] < '0' || s[i] > '9' || i >= 20)
      return -1;
    d = (unsigned)(s[i] - '0');
    if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && d > UINT64_MAX % 10))
      return -1;
    v = v * 10 + d;
  }
  if (!i)
    return -1;
  *out = v;
  return 0;
}

static int ref_utf8(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t k, j;
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xe0) == 0xc0)
      k = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
      k = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
      k = 4, cp = c & 0x07;
    else
      return 0;
    if (i + k > n)
      return 0;
    for (j = 1; j < k; j++) {
      if ((s[i + j] & 0xc0) != 0x80)
        return 0;
      cp = cp << 6 | (s[i + j] & 0x3f);
    }
    if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) ||
        (k == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += k;
  }
  return 1;
}

/* Snum 3("." Snum), Snum = 1*3DIGIT with a value <= 255 */
static int ref_ipv4(const char *s, size_t n) {
  size_t i = 0;
  int part;
  for (part = 0; part < 4; part++) {
    unsigned v = 0, d = 0;
    if (part) {
      if (i >= n || s[i] != '.')
        return 0;
      i++;
    }
    while (i < n && s[i] >= '0' && s[i] <= '9' && d < 4) {
      v = v * 10 + (unsigned)(s[i] - '0');
      i++;
      d++;
    }
    if (d == 0 || d > 3 || v > 255)
      return 0;
  }
  return i == n;
}

/* colon-separated groups of s[0..n): 1..4 hex digits each, the last one
 * may be an IPv4 literal when v4ok. Returns the hex group count or -1;
 * *v4 set when the IPv4 tail is there. */
static int ref_groups(const char *s, size_t n, int v4ok, int *v4) {
  size_t i = 0;
  int groups = 0;
  *v4 = 0;
  if (n == 0)
    return 0;
  for (;;) {
    size_t j = i, k;
    while (j < n && s[j] != ':')
      j++;
    if (memchr(s + i, '.', j - i)) {
      if (!v4ok || j != n || !ref_ipv4(s + i, j - i))
        return -1;
      *v4 = 1;
      return groups;
    }
    if (j == i || j - i > 4)
      return -1;
    for (k = i; k < j; k++)
      if (hexv(s[k]) < 0)
        return -1;
    groups++;
    if (j == n)
      return groups;
    i = j + 1;
    if (i == n)
      return -1; /* a trailing single colon */
  }
}

/* RFC 5321 4.1.3 IPv6-addr */
static int ref_ipv6(const char *s) {
  size_t n = strlen(s);
  const char *dc = strstr(s, "::");
  int v4l, v4r, l, r;
  if (!dc) {
    l = ref_groups(s, n, 1, &v4l);
    return v4l ? l == 6 : l == 8;
  }
  if (strstr(dc + 2, "::") || (dc + 2 < s + n && dc[2] == ':'))
    return 0;
  l = ref_groups(s, (size_t)(dc - s), 0, &v4l);
  r = ref_groups(dc + 2, n - (size_t)(dc + 2 - s), 1, &v4r);
  if (l < 0 || r < 0)
    return 0;
  return v4r ? l + r <= 4 : l + r <= 6;
}

/* ---- targets ------------------------------------------------------------------- */

static void t_base64(const uint8_t *d, size_t n, uint8_t fl) {
  uint8_t *out = malloc(n + 1), *ref = malloc(n + 1), *inplace = malloc(n + 1);
  char *enc = malloc(n / 3 * 4 + 8), *enc2 = malloc(n / 3 * 4 + 8);
  long r, rr, k;
  size_t e;
  if (!out || !ref || !inplace || !enc || !enc2)
    abort();
  r = smtpd_i_base64_decode((const char *)d, n, out, n);
  rr = ref_b64_decode(d, n, ref);
  FZ_CHECK(r == rr, "base64 decode %ld, reference %ld", r, rr);
  if (r >= 0) {
    FZ_CHECK(fz_same(out, (size_t)r, ref, (size_t)rr), "base64 bytes differ");
    /* canonical: re-encoding gives the input back */
    k = smtpd_i_base64_encode(out, (size_t)r, enc, n / 3 * 4 + 8);
    FZ_CHECK(k >= 0 && fz_same(enc, (size_t)k, d, n),
             "decoded base64 does not re-encode to its input");
    /* in place, and a cap one short of the length */
    if (n)
      memcpy(inplace, d, n);
    FZ_CHECK(smtpd_i_base64_decode((const char *)inplace, n, inplace, n) == r &&
                 fz_same(inplace, (size_t)r, out, (size_t)r),
             "in-place decode differs");
    if (r > 0)
      FZ_CHECK(smtpd_i_base64_decode((const char *)d, n, inplace,
                                     (size_t)r - 1) == -1,
               "decode wrote past a short cap");
  }
  /* any bytes encode like the reference and decode back */
  e = ref_b64_encode(d, n, enc2);
  k = smtpd_i_base64_encode(d, n, enc, n / 3 * 4 + 8);
  FZ_CHECK(k >= 0 && (size_t)k == e && !memcmp(enc, enc2, e + 1),
           "base64 encode differs from the reference");
  FZ_CHECK(smtpd_i_base64_encode(d, n, enc, e) == -1,
           "encode without room for the NUL");
  r = smtpd_i_base64_decode(enc, e, out, n);
  FZ_CHECK(r == (long)n && fz_same(out, n, d, n), "round trip failed");
  (void)fl;
  free(out);
  free(ref);
  free(inplace);
  free(enc);
  free(enc2);
}

static void t_xtext(const char *s) {
  size_t n = strlen(s);
  char *a = malloc(n + 1), *ref = malloc(n + 1), *enc = malloc(3 * n + 1);
  long r, rr;
  if (!a || !ref || !enc)
    abort();
  memcpy(a, s, n + 1);
  r = smtpd_i_xtext_decode(a);
  rr = ref_xtext(s, ref);
  FZ_CHECK(r == rr, "xtext decode %ld, reference %ld", r, rr);
  if (r >= 0) {
    FZ_CHECK(!strcmp(a, ref) && strlen(a) == (size_t)r, "xtext text differs");
    ref_xtext_encode(a, enc);
    memcpy(ref, a, (size_t)r + 1);
    FZ_CHECK(smtpd_i_xtext_decode(enc) == r && !strcmp(enc, ref),
             "xtext round trip");
  }
  free(a);
  free(ref);
  free(enc);
}

static int ctl_or_8bit(const char *p, int allow8) {
  for (; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f ||
        (!allow8 && (unsigned char)*p >= 0x80))
      return 1;
  return 0;
}

static void t_path(const char *s, uint8_t fl) {
  unsigned flags = fl & 7u;
  size_t n = strlen(s);
  char *a = malloc(n + 1), *b = malloc(n + 1), *again = malloc(SMTPD_I_MAX_PATH + 8);
  char scratch[SMTPD_I_PATH_SCRATCH], scratch2[SMTPD_I_PATH_SCRATCH];
  smtpd_i_path p, p2;
  char *rest = NULL, *rest2;
  smtpd_i_path_status st, st2;
  if (!a || !b || !again)
    abort();
  memcpy(a, s, n + 1);
  memcpy(b, s, n + 1);
  memset(scratch, 0x55, sizeof scratch);
  st = smtpd_i_parse_path(a, flags, scratch, &p, &rest);
  st2 = smtpd_i_parse_path(b, flags, scratch2, &p2, &rest2);
  FZ_CHECK(st == st2, "parse_path not deterministic");
  if (st != SMTPD_I_PATH_OK) {
    size_t i;
    FZ_CHECK(!memcmp(a, s, n + 1), "parse_path wrote into a refused path");
    for (i = 0; i < sizeof scratch; i++)
      FZ_CHECK(scratch[i] == 0x55, "parse_path wrote scratch on failure");
    goto out;
  }
  FZ_CHECK(rest > a && rest <= a + n && rest[-1] == '\0',
           "rest not after the path");
  FZ_CHECK(strlen(p.local) <= SMTPD_I_MAX_LOCAL &&
               strlen(p.domain) <= SMTPD_I_MAX_DOMAIN &&
               strlen(p.address) + 2 <= SMTPD_I_MAX_PATH,
           "accepted path over the limits");
  FZ_CHECK(!ctl_or_8bit(p.address, flags & SMTPD_I_PATH_UTF8) &&
               !ctl_or_8bit(p.local, flags & SMTPD_I_PATH_UTF8) &&
               !ctl_or_8bit(p.domain, flags & SMTPD_I_PATH_UTF8),
           "controls or 8-bit octets in an accepted path");
  if (!*p.address) {
    FZ_CHECK(flags & SMTPD_I_PATH_ALLOW_NULL, "null path not allowed");
  } else if (!strcmp(p.address, "Postmaster")) {
    FZ_CHECK(!*p.domain, "Postmaster domain");
  } else {
    size_t ll = strlen(p.local);
    FZ_CHECK(!strncmp(p.address, p.local, ll) && p.address[ll] == '@' &&
                 !strcmp(p.address + ll + 1, p.domain) && *p.domain,
             "address is not local@domain");
    FZ_CHECK(!(flags & SMTPD_I_PATH_UTF8) || ref_utf8((const uint8_t *)p.address,
                                                      strlen(p.address)),
             "accepted path is not UTF-8");
  }
  /* idempotent: "<address>" parses to the same parts */
  {
    char l[SMTPD_I_PATH_SCRATCH], dm[SMTPD_I_PATH_SCRATCH], ad[SMTPD_I_MAX_PATH + 4];
    snprintf(l, sizeof l, "%s", p.local);
    snprintf(dm, sizeof dm, "%s", p.domain);
    snprintf(ad, sizeof ad, "%s", p.address);
    snprintf(again, SMTPD_I_MAX_PATH + 8, "<%s> X", ad);
    st2 = smtpd_i_parse_path(again, flags, scratch2, &p2, &rest2);
    FZ_CHECK(st2 == SMTPD_I_PATH_OK && !strcmp(p2.address, ad) &&
                 !strcmp(p2.local, l) && !strcmp(p2.domain, dm) &&
                 !strcmp(rest2, " X"),
             "re-parsing <%s> gave %d", ad, (int)st2);
  }
out:
  free(a);
  free(b);
  free(again);
}

static int is_kw(const char *k) {
  const char *p = k;
  if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
    return 0;
  for (p++; *p; p++)
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-'))
      return 0;
  return 1;
}

static void t_params(const char *s, uint8_t fl) {
  size_t n = strlen(s), i, max = fl & 15, j;
  int utf8 = (fl >> 4) & 1, c, c2, call;
  char *a = malloc(n + 1), *b = malloc(n + 1), *join = malloc(n + 2);
  smtpd_param p[16], q[16], all[1024];
  if (!a || !b || !join)
    abort();
  memcpy(a, s, n + 1);
  memcpy(b, s, n + 1);
  c = smtpd_i_parse_params(a, p, max, utf8);
  call = smtpd_i_parse_params(b, all, 1024, utf8);
  FZ_CHECK(c >= -2, "params result %d", c);
  if (c == -1) {
    FZ_CHECK(call == -1, "syntax error depends on max");
    goto out;
  }
  if (call == -2) { /* over 1024 parameters: too many for any max here */
    FZ_CHECK(c == -2, "more than 1024 parameters but %d with max %zu", c,
             max);
    goto out;
  }
  FZ_CHECK(call >= 0, "valid with max %zu but %d with 1024", max, call);
  FZ_CHECK(c == -2 ? (size_t)call > max : c == call,
           "count %d vs %d (max %zu)", c, call, max);
  join[0] = 0;
  j = 0;
  for (i = 0; i < (size_t)call; i++) {
    const char *v = all[i].value, *k = all[i].keyword;
    FZ_CHECK(is_kw(k), "keyword %s", k);
    if (v) {
      const char *t;
      FZ_CHECK(*v, "empty value");
      for (t = v; *t; t++)
        FZ_CHECK(((unsigned char)*t >= 33 && (unsigned char)*t <= 126 &&
                  *t != '=') ||
                     (utf8 && (unsigned char)*t >= 0x80),
                 "value octet %02x", (unsigned char)*t);
      FZ_CHECK(!utf8 || ref_utf8((const uint8_t *)v, strlen(v)),
               "value not UTF-8");
    }
    j += (size_t)sprintf(join + j, "%s%s%s%s", i ? " " : "", k, v ? "=" : "",
                         v ? v : "");
  }
  c2 = smtpd_i_parse_params(join, q, 16, utf8);
  FZ_CHECK(c2 == (call > 16 ? -2 : call), "re-parse count %d vs %d", c2, call);
  for (i = 0; c2 > 0 && i < (size_t)c2; i++)
    FZ_CHECK(!strcmp(q[i].keyword, all[i].keyword) &&
                 !q[i].value == !all[i].value &&
                 (!q[i].value || !strcmp(q[i].value, all[i].value)),
             "re-parse differs at %zu", i);
out:
  free(a);
  free(b);
  free(join);
}

static void t_u64(const char *s) {
  uint64_t a = 7, b = 7;
  int r = smtpd_i_parse_u64(s, &a), rr = ref_u64(s, &b);
  FZ_CHECK(r == rr && (r || a == b), "u64 %s: %d/%llu vs %d/%llu", s, r,
           (unsigned long long)a, rr, (unsigned long long)b);
  FZ_CHECK(!r || a == 7, "u64 wrote on failure");
}

static void t_utf8(const uint8_t *d, size_t n) {
  int a = smtpd_i_utf8_valid(d, n), b = ref_utf8(d, n);
  FZ_CHECK(a == b, "utf8_valid %d, reference %d", a, b);
}

static void t_ip(const char *s) {
  int a4 = smtpd_i_ip_valid(s, 0), a6 = smtpd_i_ip_valid(s, 1);
  int r4 = ref_ipv4(s, strlen(s)), r6 = ref_ipv6(s);
  FZ_CHECK(a4 == r4, "ipv4 %s: %d vs reference %d", s, a4, r4);
  FZ_CHECK(a6 == r6, "ipv6 %s: %d vs reference %d", s, a6, r6);
}

static void t_sanitize(const uint8_t *d, size_t n, uint8_t fl) {
  size_t cap = (size_t)fl % 64, i, w, nl;
  char dst[64 + 8], *src = malloc(n + 1);
  if (!src)
    abort();
  memset(dst, 'Z', sizeof dst);
  w = smtpd_i_sanitize(dst, cap, (const char *)d, n);
  if (cap == 0) {
    FZ_CHECK(w == 0 && dst[0] == 'Z', "sanitize with cap 0 wrote");
  } else {
    FZ_CHECK(w == (n < cap - 1 ? n : cap - 1) && dst[w] == 0 &&
                 dst[cap] == 'Z',
             "sanitize length/termination");
    for (i = 0; i < w; i++)
      FZ_CHECK(dst[i] == (d[i] >= 0x20 && d[i] <= 0x7e ? (char)d[i] : '?'),
               "sanitize octet %zu", i);
  }
  /* smtpd_neuter: a C string; cap > 0 */
  if (n)
    memcpy(src, d, n);
  src[n] = 0;
  nl = strlen(src);
  memset(dst, 'Z', sizeof dst);
  if (cap == 0)
    cap = 1;
  w = smtpd_neuter(dst, cap, src);
  FZ_CHECK(w == nl, "neuter returned %zu for %zu", w, nl);
  for (i = 0; i < cap - 1 && i < nl; i++) {
    unsigned char c = (unsigned char)src[i];
    char want = c < 0x21 || c > 0x7e || strchr("<>()\\\";@", c) ? '?'
                                                                 : (char)c;
    FZ_CHECK(dst[i] == want, "neuter octet %zu: %02x -> %02x", i, c,
             (unsigned char)dst[i]);
  }
  FZ_CHECK(dst[i] == 0 && dst[cap] == 'Z', "neuter termination");
  free(src);
}

/* ---- config API ---------------------------------------------------------------- */

static int pr(const char *s, int spaces, size_t max) {
  size_t n = 0;
  for (; *s; s++, n++)
    if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e ||
        (*s == ' ' && !spaces) || n >= max)
      return 0;
  return 1;
}

static int kw_ok(const char *s, size_t max) {
  size_t i;
  for (i = 0; s[i]; i++) {
    char c = s[i];
    if (i + 1 >= max)
      return 0;
    if (c >= 'a' && c <= 'z')
      c = (char)(c - 32);
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          (c == '-' && i > 0)))
      return 0;
  }
  return i > 0;
}

static int core_verb(const char *v) {
  static const char *const core[] = {"HELO", "EHLO", "MAIL", "RCPT", "DATA",
                                     "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
                                     "HELP", "AUTH", "STARTTLS"};
  size_t i, k;
  char up[40];
  for (k = 0; v[k] && k < sizeof up - 1; k++)
    up[k] = (char)(v[k] >= 'a' && v[k] <= 'z' ? v[k] - 32 : v[k]);
  up[k] = 0;
  for (i = 0; i < sizeof core / sizeof core[0]; i++)
    if (!strcmp(up, core[i]))
      return 1;
  return 0;
}

static void t_config(const uint8_t *d, size_t n) {
  static const uint64_t lo[SMTPD_LIMIT_COUNT_] = {0, 1, 512, 1000, 1, 1,
                                                  12288, 1024, 0, 0};
  static const uint64_t hi[SMTPD_LIMIT_COUNT_] = {
      UINT64_MAX, 1000000, 65536,   UINT64_MAX, 1000000,
      1000000,    1048576, UINT64_MAX, 1000000, 1000000};
  smtpd_config *c;
  char host[300] = "localhost", banner[450] = "ESMTP", kws[16][64];
  size_t nkw = 0, ncmd = 0, nparam = 0, i = 0;
  FZ_CHECK(smtpd_config_new(&c, NULL) == 0, "config_new");
  while (i + 2 <= n) {
    uint8_t op = d[i] % 10, a = d[i + 1];
    char str[450];
    size_t k = 0;
    int rv;
    i += 2;
    /* a string operand: up to the next 0x00 */
    while (i < n && d[i] && k < sizeof str - 1)
      str[k++] = (char)d[i++];
    str[k] = 0;
    if (i < n)
      i++;
    switch (op) {
    case 0: { /* limits: some value around the bounds */
      smtpd_limit w = (smtpd_limit)(a % (SMTPD_LIMIT_COUNT_ + 1));
      uint64_t v = 0, before = 0, after = 7;
      memcpy(&v, str, k < 8 ? k : 8);
      if (a & 0x80)
        v %= 70000;
      if ((unsigned)w < SMTPD_LIMIT_COUNT_)
        FZ_CHECK(smtpd_config_get_limit(c, w, &before) == 0, "get_limit");
      rv = smtpd_config_set_limit(c, w, v);
      if ((unsigned)w >= SMTPD_LIMIT_COUNT_) {
        FZ_CHECK(rv == SMTPD_ERR_INVALID_ARGUMENT &&
                     smtpd_config_get_limit(c, w, &after) ==
                         SMTPD_ERR_INVALID_ARGUMENT &&
                     after == 7,
                 "limit %d out of range", (int)w);
        break;
      }
      FZ_CHECK((rv == 0) == (v >= lo[w] && v <= hi[w]),
               "set_limit(%d, %llu) = %d", (int)w, (unsigned long long)v, rv);
      FZ_CHECK(smtpd_config_get_limit(c, w, &after) == 0 &&
                   after == (rv == 0 ? v : before),
               "get_limit after set");
      break;
    }
    case 1: {
      smtpd_option o = (smtpd_option)(a % (SMTPD_OPT_COUNT_ + 1));
      int on = 5;
      rv = smtpd_config_set_option(c, o, k & 1);
      FZ_CHECK((rv == 0) == ((unsigned)o < SMTPD_OPT_COUNT_), "set_option");
      if (rv == 0)
        FZ_CHECK(smtpd_config_get_option(c, o, &on) == 0 && on == (int)(k & 1),
                 "get_option");
      else
        FZ_CHECK(smtpd_config_get_option(c, o, &on) != 0 && on == 5,
                 "get_option out of range");
      break;
    }
    case 2:
      rv = smtpd_config_set_timeout(c, (smtpd_timeout)(a % 8), (uint32_t)k);
      FZ_CHECK((rv == 0) == (a % 8 >= 1 && a % 8 < SMTPD_TIMEOUT_COUNT_),
               "set_timeout");
      break;
    case 3:
      rv = smtpd_config_set_hostname(c, str);
      /* the greeting "220 host banner" CRLF must fit in 512 octets */
      FZ_CHECK((rv == 0) == (k > 0 && pr(str, 0, 255) &&
                             7 + strlen(str) + strlen(banner) <= 512),
               "set_hostname [%s]", str);
      if (!rv)
        snprintf(host, sizeof host, "%.255s", str);
      break;
    case 4:
      rv = smtpd_config_set_banner(c, str);
      FZ_CHECK((rv == 0) == (pr(str, 1, 400) &&
                             7 + strlen(host) + strlen(str) <= 512),
               "set_banner");
      if (!rv)
        snprintf(banner, sizeof banner, "%.400s", str);
      break;
    case 5:
      rv = smtpd_config_add_ehlo_keyword(c, str);
      if (k == 0 || str[0] == ' ' || !pr(str, 1, 400)) {
        FZ_CHECK(rv == SMTPD_ERR_INVALID_ARGUMENT, "add_ehlo_keyword [%s]",
                 str);
      } else if (nkw >= 16) {
        FZ_CHECK(rv == SMTPD_ERR_INVALID_STATE, "17th keyword");
      } else {
        FZ_CHECK(rv == 0, "add_ehlo_keyword refused [%s]", str);
        snprintf(kws[nkw++], sizeof kws[0], "%.60s", str);
      }
      break;
    case 6: {
      unsigned flags = (unsigned)a & (a & 0x80 ? 0xffu : 0x7fu);
      rv = smtpd_config_add_command(c, str, flags);
      if (!kw_ok(str, 17) || (flags & ~0x7fu))
        FZ_CHECK(rv == SMTPD_ERR_INVALID_ARGUMENT, "add_command [%s] %d", str,
                 rv);
      else if (core_verb(str))
        FZ_CHECK(rv == SMTPD_ERR_INVALID_STATE, "core verb [%s]", str);
      else
        FZ_CHECK(rv == 0 || (rv == SMTPD_ERR_INVALID_STATE && ncmd >= 32),
                 "add_command [%s] %d", str, rv);
      if (rv == 0 && ncmd < 64)
        ncmd++; /* an upper bound: re-registering replaces */
      break;
    }
    case 7: {
      unsigned where = a & 3;
      smtpd_param_value v = (smtpd_param_value)((a >> 2) & 3);
      rv = smtpd_config_add_param(c, where, str, v);
      if (!where || !kw_ok(str, 64) || (unsigned)v > SMTPD_PARAM_OPTIONAL_VALUE)
        FZ_CHECK(rv == SMTPD_ERR_INVALID_ARGUMENT, "add_param [%s]", str);
      else
        FZ_CHECK(rv == 0 || (rv == SMTPD_ERR_INVALID_STATE && nparam >= 32),
                 "add_param [%s] %d", str, rv);
      if (rv == 0 && nparam < 64)
        nparam++;
      break;
    }
    case 8:
      FZ_CHECK((smtpd_config_set_line_ending(c, (smtpd_line_ending)(a % 4)) ==
                0) == (a % 4 < 3),
               "line ending");
      FZ_CHECK((smtpd_config_set_sync_policy(c, (smtpd_sync_policy)(a % 3)) ==
                0) == (a % 3 < 2),
               "sync");
      FZ_CHECK((smtpd_config_set_long_line(c, (smtpd_long_line)(a % 3)) ==
                0) == (a % 3 < 2),
               "long line");
      break;
    default: {
      static const int codes[] = {SMTPD_OK,
                                  SMTPD_ERR_INVALID_ARGUMENT,
                                  SMTPD_ERR_INVALID_STATE,
                                  SMTPD_ERR_CLOSED,
                                  SMTPD_ERR_UNSUPPORTED,
                                  SMTPD_ERR_TLS,
                                  SMTPD_ERR_SASL,
                                  SMTPD_ERR_IO,
                                  SMTPD_ERR_NOMEM,
                                  SMTPD_ERR_CALLBACK_FAILURE,
                                  SMTPD_RESULT_TLS_AGAIN,
                                  SMTPD_RESULT_TRANSCRIPT_MISMATCH};
      int e = (a & 0x40) ? codes[a % (sizeof codes / sizeof codes[0])]
                         : (int)(int8_t)a * (a & 1 ? 1 : 8),
          num = 0;
      const char *t = smtpd_strerror(e);
      FZ_CHECK(t && *t && pr(t, 1, 200), "strerror(%d)", e);
      FZ_CHECK(smtpd_is_fatal(e) == (e <= SMTPD_ERR_FATAL), "is_fatal");
      FZ_CHECK(!strcmp(smtpd_version(&num), SMTPD_VERSION_STRING) &&
                   num == SMTPD_VERSION_NUM,
               "version");
      break;
    }
    }
  }
  /* the callbacks' version decides what smtpd_session_new takes */
  {
    smtpd_callbacks cb;
    smtpd_session *s = NULL;
    unsigned v = n ? d[0] % (SMTPD_CALLBACKS_VERSION + 2) : 1;
    int rv;
    memset(&cb, 0, sizeof cb);
    cb.version = v;
    rv = smtpd_session_new(&s, c, &cb, NULL);
    FZ_CHECK(rv == (v == 0 ? SMTPD_ERR_INVALID_ARGUMENT
                    : v > SMTPD_CALLBACKS_VERSION ? SMTPD_ERR_UNSUPPORTED
                                                  : 0),
             "callbacks version %u: %d", v, rv);
    FZ_CHECK(rv == 0 || s == NULL, "*out written on failure");
    FZ_CHECK(smtpd_session_new(NULL, c, &cb, NULL) ==
                     SMTPD_ERR_INVALID_ARGUMENT &&
                 smtpd_session_new(&s, NULL, &cb, NULL) ==
                     SMTPD_ERR_INVALID_ARGUMENT,
             "session_new arguments");
    smtpd_session_del(s);
    smtpd_session_del(NULL);
  }
  /* a session on this configuration: greeting and EHLO */
  {
    smtpd_session *s;
    const uint8_t *o;
    size_t on, j;
    fz_replies r;
    char why[200], want[800];
    /* LMTP would answer EHLO with 500 */
    FZ_CHECK(smtpd_config_set_option(c, SMTPD_OPT_LMTP, 0) == 0, "lmtp off");
    FZ_CHECK(smtpd_session_new(&s, c, NULL, NULL) == 0, "session");
    FZ_CHECK(smtpd_session_start(s) == 0, "start");
    on = smtpd_session_output(s, &o);
    snprintf(want, sizeof want, "220 %s %s\r\n", host, banner);
    FZ_CHECK(on == strlen(want) && !memcmp(o, want, on), "greeting");
    /* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets (the
     * configuration refuses a hostname and banner that would make more) */
    FZ_CHECK(on <= 512, "greeting of %zu octets", on);
    FZ_CHECK(!fz_parse_replies(o, on, &r, why, sizeof why) && r.groups == 1,
             "greeting: %s", why);
    smtpd_session_consume(s, on);
    FZ_CHECK(smtpd_session_feed(s, "EHLO x\r\n", 8) == 8, "feed");
    on = smtpd_session_output(s, &o);
    FZ_CHECK(!fz_parse_replies(o, on, &r, why, sizeof why) && r.groups == 1,
             "EHLO reply: %s", why);
    for (j = 0; j < nkw; j++) {
      FZ_CHECK(memmem(o, on, kws[j], strlen(kws[j])) != NULL,
               "keyword %s missing from EHLO", kws[j]);
    }
    smtpd_session_del(s);
  }
  smtpd_config_del(c);
}

static void check_info(const smtpd_proxy_info *a, const smtpd_proxy_info *b) {
  FZ_CHECK(a->version == b->version && a->local == b->local &&
               a->family == b->family && !strcmp(a->src_addr, b->src_addr) &&
               !strcmp(a->dst_addr, b->dst_addr) &&
               a->src_port == b->src_port && a->dst_port == b->dst_port,
           "PROXY info differs");
}

static void t_proxy(const uint8_t *d, size_t n) {
  smtpd_proxy_info a, b;
  ptrdiff_t r, r2;
  size_t k;
  uint8_t *copy;
  /* exact-size copies, so ASan catches any read past len */
  copy = malloc(n ? n : 1);
  if (!copy)
    abort();
  if (n)
    memcpy(copy, d, n);
  if (n == 0) /* not memcmp(NULL, sig, 0): "more", not an error */
    FZ_CHECK(smtpd_proxy_parse(NULL, 0, &a) == 0, "NULL, 0 is not 'more'");
  r = smtpd_proxy_parse(copy, n, &a);
  FZ_CHECK(r == SMTPD_ERR_INVALID_ARGUMENT || (r >= 0 && (size_t)r <= n),
           "PROXY parse returned %td for %zu octets", r, n);
  r2 = smtpd_proxy_parse(copy, n, &b);
  FZ_CHECK(r == r2, "PROXY parse not deterministic");
  if (r > 0) {
    check_info(&a, &b);
    /* a v1 line is at most 107 octets, CRLF included */
    FZ_CHECK(a.version == 1 ? r <= 107
                            : (a.version == 2 && r <= 1040),
             "v%d header of %td octets", a.version, r);
    FZ_CHECK(a.src_port <= 65535 && a.dst_port <= 65535, "ports");
    if (a.local)
      FZ_CHECK(!a.src_addr[0] && !a.dst_addr[0], "local header with address");
    else if (a.family == 4)
      FZ_CHECK(ref_ipv4(a.src_addr, strlen(a.src_addr)) &&
                   ref_ipv4(a.dst_addr, strlen(a.dst_addr)),
               "bad IPv4 text %s %s", a.src_addr, a.dst_addr);
    else
      FZ_CHECK(a.family == 6 && ref_ipv6(a.src_addr) && ref_ipv6(a.dst_addr),
               "bad IPv6 text %s %s", a.src_addr, a.dst_addr);
    if (a.version == 2 && !a.local) {
      /* the text is inet_ntop's where that has no dotted tail */
      char t[64];
      int fam = a.family == 4 ? AF_INET : AF_INET6;
      FZ_CHECK(inet_ntop(fam, copy + 16, t, sizeof t) != NULL, "ntop");
      if (!strchr(t, '.') || fam == AF_INET)
        FZ_CHECK(!strcmp(t, a.src_addr), "v2 source %s, inet_ntop %s",
                 a.src_addr, t);
    }
  }
  /* monotone in the length: prefixes */
  for (k = 0; k < n; k++) {
    uint8_t *pre = malloc(k ? k : 1);
    ptrdiff_t rp;
    if (!pre)
      abort();
    if (k)
      memcpy(pre, d, k);
    rp = smtpd_proxy_parse(pre, k, &b);
    free(pre);
    if (rp < 0)
      FZ_CHECK(r < 0, "prefix of %zu invalid (%td) but %zu octets give %td",
               k, rp, n, r);
    if (r > 0)
      FZ_CHECK(rp == 0 || rp == r, "prefix of %zu gives %td, whole %td", k,
               rp, r);
    if (rp > 0) {
      FZ_CHECK(rp == r, "complete at %zu (%td) but %td with more", k, rp, r);
      check_info(&a, &b);
    }
  }
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t which, fl;
  const uint8_t *d;
  size_t n;
  char *s;
  if (size < 2 || size > 4096)
    return 0;
  which = data[0] % 10;
  fl = data[1];
  d = data + 2;
  n = size - 2;
  s = malloc(n + 1);
  if (!s)
    abort();
  if (n)
    memcpy(s, d, n);
  s[n] = 0;
  switch (which) {
  case 0:
    t_base64(d, n, fl);
    break;
  case 1:
    t_xtext(s);
    break;
  case 2:
    t_path(s, fl);
    break;
  case 3:
    t_params(s, fl);
    break;
  case 4:
    t_u64(s);
    break;
  case 5:
    t_utf8(d, n);
    break;
  case 6:
    t_ip(s);
    break;
  case 7:
    t_sanitize(d, n, fl);
    break;
  case 8:
    /* nothing past 1040 octets is ever read: keep the prefix walk short */
    t_proxy(d, n < 1100 ? n : 1100);
    break;
  default:
    t_config(d, n);
    break;
  }
  free(s);
  return 0;
}
