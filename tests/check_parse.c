/*
 * check_parse.c - Check suite for lib/parse.c (internal parsers).
 *
 * Table-driven tests for every parser: RFC 5321 paths (null path,
 * Postmaster, source routes, dot-string and quoted local parts, domains,
 * IPv4/IPv6/general address literals, UTF-8, every length boundary and
 * the order of length verdicts), ESMTP parameters, decimal numbers,
 * xtext, strict base64 (vectors, canonical padding, round trips, in-place
 * decoding, capacity limits), UTF-8 validation against an independent
 * reference decoder, and sanitising. The fast path of smtpd_i_parse_path
 * is also checked against a reference copy of the plain grammar
 * (ref_parse_path) on generated paths. Inputs are copied into exactly
 * sized heap buffers so AddressSanitizer/valgrind catch any read past the
 * NUL or write past scratch.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

#define N_ SMTPD_I_PATH_ALLOW_NULL
#define P_ SMTPD_I_PATH_ALLOW_POSTMASTER
#define U_ SMTPD_I_PATH_UTF8

#define OK_ SMTPD_I_PATH_OK
#define SYN SMTPD_I_PATH_SYNTAX
#define LTL SMTPD_I_PATH_LOCAL_TOO_LONG
#define DTL SMTPD_I_PATH_DOMAIN_TOO_LONG
#define PTL SMTPD_I_PATH_TOO_LONG

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---------------------------------------------------------- */

/* xdup - exact-size heap copy of n octets plus NUL, so any read past the
 * NUL is a heap overflow that ASan/valgrind report. */
static char *xdup(const char *s, size_t n) {
  char *p = malloc(n + 1);
  ck_assert_ptr_nonnull(p);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* show - printable rendering of s for failure messages (static buffer is
 * fine: tests are single-threaded and use one result at a time). */
static const char *show(const char *s) {
  static char buf[200];
  size_t o = 0;

  for (; *s != '\0' && o + 5 < sizeof buf; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c < 0x7f && c != '\\')
      buf[o++] = (char)c;
    else
      o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", c);
  }
  buf[o] = '\0';
  return buf;
}

/* rnd - small deterministic PRNG (xorshift32). */
static uint32_t rnd(uint32_t *st) {
  uint32_t x = *st;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *st = x;
}

/* run_path - parse a heap copy of in (exact size) with a scratch buffer of
 * exactly SMTPD_I_PATH_SCRATCH bytes; checks that nothing is touched on
 * failure and the basic invariants on success. Results are copied out. */
typedef struct path_result {
  smtpd_i_path_status st;
  char address[600], local[600], domain[600], rest[600];
} path_result;

static void run_path(const char *in, size_t n, unsigned flags,
                     path_result *r) {
  char *s = xdup(in, n);
  char *copy = xdup(in, n);
  char *scratch = malloc(SMTPD_I_PATH_SCRATCH);
  char sentinel[1];
  smtpd_i_path out = {sentinel, 0, sentinel, sentinel};
  char *rest = sentinel;

  ck_assert_ptr_nonnull(scratch);
  memset(scratch, 'Z', SMTPD_I_PATH_SCRATCH);
  r->st = smtpd_i_parse_path(s, flags, scratch, &out, &rest);
  r->address[0] = r->local[0] = r->domain[0] = r->rest[0] = '\0';
  if (r->st != SMTPD_I_PATH_OK) {
    ck_assert_msg(memcmp(s, copy, n + 1) == 0, "input modified on error: %s",
                  show(copy));
    ck_assert_ptr_eq(out.address, sentinel);
    ck_assert_ptr_eq(out.local, sentinel);
    ck_assert_ptr_eq(out.domain, sentinel);
    ck_assert_ptr_eq(rest, sentinel);
  } else {
    size_t alen;

    /* address lives in s, local in scratch, domain at the end of the
     * address (or "" in scratch), rest just after '>' */
    ck_assert(out.address > s && out.address < s + n);
    alen = strlen(out.address);
    ck_assert_uint_eq(out.address_len, alen);
    ck_assert_ptr_eq(rest, out.address + alen + 1);
    ck_assert(rest <= s + n);
    ck_assert_int_eq(copy[rest - s - 1], '>');
    ck_assert_str_eq(rest, copy + (rest - s));
    ck_assert(out.local >= scratch && out.local < scratch + SMTPD_I_PATH_SCRATCH);
    if (out.domain[0] != '\0')
      ck_assert_ptr_eq(out.domain, out.address + alen - strlen(out.domain));
    else
      ck_assert(out.domain >= scratch &&
                out.domain < scratch + SMTPD_I_PATH_SCRATCH);
    ck_assert_uint_le(strlen(out.local), SMTPD_I_MAX_LOCAL);
    ck_assert_uint_le(strlen(out.domain), SMTPD_I_MAX_DOMAIN);
    ck_assert_uint_le((size_t)(rest - s), SMTPD_I_MAX_PATH);
    if (out.domain[0] != '\0') {
      size_t ll = strlen(out.local);
      ck_assert_uint_eq(alen, ll + 1 + strlen(out.domain));
      ck_assert(memcmp(out.address, out.local, ll) == 0);
      ck_assert_int_eq(out.address[ll], '@');
      ck_assert_str_eq(out.address + ll + 1, out.domain);
    } else {
      ck_assert_str_eq(out.address, out.local);
    }
    strcpy(r->address, out.address);
    strcpy(r->local, out.local);
    strcpy(r->domain, out.domain);
    snprintf(r->rest, sizeof r->rest, "%s", rest);
  }
  free(s);
  free(copy);
  free(scratch);
}

/* ---- paths: table ----------------------------------------------------- */

typedef struct path_case {
  const char *in;
  unsigned flags;
  smtpd_i_path_status st;
  const char *address, *local, *domain, *rest; /* when st == OK */
} path_case;

static const path_case path_cases[] = {
    /* basics, rest */
    {"<a@b>", 0, OK_, "a@b", "a", "b", ""},
    {"<user@example.com>", 0, OK_, "user@example.com", "user", "example.com", ""},
    {"<user@example.com> SIZE=10", 0, OK_, "user@example.com", "user",
     "example.com", " SIZE=10"},
    {"<User.Name@EXAMPLE.Com>", 0, OK_, "User.Name@EXAMPLE.Com", "User.Name",
     "EXAMPLE.Com", ""},
    {"<a@b>>", 0, OK_, "a@b", "a", "b", ">"},
    {"<a@b>x", 0, OK_, "a@b", "a", "b", "x"},
    {"<a@b>", N_ | P_ | U_, OK_, "a@b", "a", "b", ""},
    /* null path */
    {"<>", N_, OK_, "", "", "", ""},
    {"<> BODY=8BITMIME", N_, OK_, "", "", "", " BODY=8BITMIME"},
    {"<>", N_ | P_, OK_, "", "", "", ""},
    {"<>", 0, SYN, 0, 0, 0, 0},
    {"<>", P_, SYN, 0, 0, 0, 0},
    {"<>", U_, SYN, 0, 0, 0, 0},
    {"< >", N_, SYN, 0, 0, 0, 0},
    {"<", N_, SYN, 0, 0, 0, 0},
    {"<<>>", N_, SYN, 0, 0, 0, 0},
    /* Postmaster */
    {"<Postmaster>", P_, OK_, "Postmaster", "Postmaster", "", ""},
    {"<postmaster>", P_, OK_, "Postmaster", "Postmaster", "", ""},
    {"<POSTMASTER> NOTIFY=NEVER", P_, OK_, "Postmaster", "Postmaster", "",
     " NOTIFY=NEVER"},
    {"<PoStMaStEr>", P_ | N_, OK_, "Postmaster", "Postmaster", "", ""},
    {"<Postmaster>", 0, SYN, 0, 0, 0, 0},
    {"<Postmaster>", N_, SYN, 0, 0, 0, 0},
    {"<Postmaster@example.com>", P_, OK_, "Postmaster@example.com",
     "Postmaster", "example.com", ""},
    {"<Postmaster@example.com>", 0, OK_, "Postmaster@example.com",
     "Postmaster", "example.com", ""},
    {"<postmaste>", P_, SYN, 0, 0, 0, 0},
    {"<postmasterx>", P_, SYN, 0, 0, 0, 0},
    {"<Postmaster >", P_, SYN, 0, 0, 0, 0},
    {"< Postmaster>", P_, SYN, 0, 0, 0, 0},
    {"<\"Postmaster\">", P_, SYN, 0, 0, 0, 0},
    {"<Postmaster", P_, SYN, 0, 0, 0, 0},
    {"<postmast\xc5\xbfr>", P_ | U_, SYN, 0, 0, 0, 0},
    {"<@a.example:Postmaster>", P_, SYN, 0, 0, 0, 0},
    /* source routes */
    {"<@a.example:u@b.example>", 0, OK_, "u@b.example", "u", "b.example", ""},
    {"<@a.example,@b.example:u@c.example> X=1", 0, OK_, "u@c.example", "u",
     "c.example", " X=1"},
    {"<@a,@b,@c,@d:u@e>", N_, OK_, "u@e", "u", "e", ""},
    {"<@a.example,b.example:u@c>", 0, SYN, 0, 0, 0, 0},
    {"<@a.example,bb.example:u@c>", 0, SYN, 0, 0, 0, 0},
    {"<@a.example,,@b:u@c>", 0, SYN, 0, 0, 0, 0},
    {"<@a.example:>", N_, SYN, 0, 0, 0, 0},
    {"<@a.example>", 0, SYN, 0, 0, 0, 0},
    {"<@:u@b>", 0, SYN, 0, 0, 0, 0},
    {"<@a.example,@:u@b>", 0, SYN, 0, 0, 0, 0},
    {"<@a.example,:u@b>", 0, SYN, 0, 0, 0, 0},
    {"<@a.example;u@b>", 0, SYN, 0, 0, 0, 0},
    {"<@a.example::u@b>", 0, SYN, 0, 0, 0, 0},
    {"<@[192.0.2.1]:u@b>", 0, SYN, 0, 0, 0, 0},
    {"<@-a:u@b>", 0, SYN, 0, 0, 0, 0},
    {"<@a :u@b>", 0, SYN, 0, 0, 0, 0},
    {"<@@a:u@b>", 0, SYN, 0, 0, 0, 0},
    /* dot-string local parts */
    {"<first.last@x.y>", 0, OK_, "first.last@x.y", "first.last", "x.y", ""},
    {"<a.b.c.d@x>", 0, OK_, "a.b.c.d@x", "a.b.c.d", "x", ""},
    {"<!#$%&'*+-/=?^_`{|}~@x>", 0, OK_, "!#$%&'*+-/=?^_`{|}~@x",
     "!#$%&'*+-/=?^_`{|}~", "x", ""},
    {"<0@x>", 0, OK_, "0@x", "0", "x", ""},
    {"<.a@x>", 0, SYN, 0, 0, 0, 0},
    {"<a.@x>", 0, SYN, 0, 0, 0, 0},
    {"<a..b@x>", 0, SYN, 0, 0, 0, 0},
    {"<.@x>", 0, SYN, 0, 0, 0, 0},
    {"<a(b)@x>", 0, SYN, 0, 0, 0, 0},
    {"<a,b@x>", 0, SYN, 0, 0, 0, 0},
    {"<a;b@x>", 0, SYN, 0, 0, 0, 0},
    {"<a:b@x>", 0, SYN, 0, 0, 0, 0},
    {"<a[b@x>", 0, SYN, 0, 0, 0, 0},
    {"<a]b@x>", 0, SYN, 0, 0, 0, 0},
    {"<a\\b@x>", 0, SYN, 0, 0, 0, 0},
    {"<a\"b@x>", 0, SYN, 0, 0, 0, 0},
    {"<a<b@x>", 0, SYN, 0, 0, 0, 0},
    {"<a b@x>", 0, SYN, 0, 0, 0, 0},
    {"<a\tb@x>", 0, SYN, 0, 0, 0, 0},
    /* missing pieces, spaces, brackets */
    {"", 0, SYN, 0, 0, 0, 0},
    {"<", 0, SYN, 0, 0, 0, 0},
    {">", 0, SYN, 0, 0, 0, 0},
    {"a@x", 0, SYN, 0, 0, 0, 0},
    {"<a@x", 0, SYN, 0, 0, 0, 0},
    {"a@x>", 0, SYN, 0, 0, 0, 0},
    {" <a@x>", 0, SYN, 0, 0, 0, 0},
    {"< a@x>", 0, SYN, 0, 0, 0, 0},
    {"<a@x >", 0, SYN, 0, 0, 0, 0},
    {"<a @x>", 0, SYN, 0, 0, 0, 0},
    {"<a@ x>", 0, SYN, 0, 0, 0, 0},
    {"<a>", 0, SYN, 0, 0, 0, 0},
    {"<a>", N_ | P_, SYN, 0, 0, 0, 0},
    {"<a@>", 0, SYN, 0, 0, 0, 0},
    {"<@x>", 0, SYN, 0, 0, 0, 0},
    {"<a@@x>", 0, SYN, 0, 0, 0, 0},
    {"<a@x@y>", 0, SYN, 0, 0, 0, 0},
    {"<<a@x>>", 0, SYN, 0, 0, 0, 0},
    {"<a@<x>>", 0, SYN, 0, 0, 0, 0},
    {"<@@@@>", N_ | P_, SYN, 0, 0, 0, 0},
    {"<@>", N_, SYN, 0, 0, 0, 0},
    {"<\"\">", N_, SYN, 0, 0, 0, 0},
    /* quoted local parts: kept verbatim */
    {"<\"a b\"@x>", 0, OK_, "\"a b\"@x", "\"a b\"", "x", ""},
    {"<\"\"@x>", 0, OK_, "\"\"@x", "\"\"", "x", ""},
    {"<\"a\\\"b\"@x>", 0, OK_, "\"a\\\"b\"@x", "\"a\\\"b\"", "x", ""},
    {"<\"a\\\\\"@x>", 0, OK_, "\"a\\\\\"@x", "\"a\\\\\"", "x", ""},
    {"<\"a\\ b\"@x>", 0, OK_, "\"a\\ b\"@x", "\"a\\ b\"", "x", ""},
    {"<\"a@b\"@x>", 0, OK_, "\"a@b\"@x", "\"a@b\"", "x", ""},
    {"<\"a>b\"@x>", 0, OK_, "\"a>b\"@x", "\"a>b\"", "x", ""},
    {"<\"<>()[]:;,.\"@x>", 0, OK_, "\"<>()[]:;,.\"@x", "\"<>()[]:;,.\"", "x", ""},
    {"<@r:\"q q\"@x>", 0, OK_, "\"q q\"@x", "\"q q\"", "x", ""},
    {"<\"abc@x>", 0, SYN, 0, 0, 0, 0},
    {"<\"abc", 0, SYN, 0, 0, 0, 0},
    {"<\"abc\\", 0, SYN, 0, 0, 0, 0},
    {"<\"abc\\\"@x>", 0, SYN, 0, 0, 0, 0},
    {"<\"", 0, SYN, 0, 0, 0, 0},
    {"<\"a\"b@x>", 0, SYN, 0, 0, 0, 0},
    {"<\"a\".b@x>", 0, SYN, 0, 0, 0, 0},
    {"<a.\"b\"@x>", 0, SYN, 0, 0, 0, 0},
    {"<\"a\"\"b\"@x>", 0, SYN, 0, 0, 0, 0},
    {"<\"a\tb\"@x>", 0, SYN, 0, 0, 0, 0},
    {"<\"a\\\tb\"@x>", 0, SYN, 0, 0, 0, 0},
    {"<\"a\x7f\"@x>", 0, SYN, 0, 0, 0, 0},
    {"<\"a\\\x7f\"@x>", 0, SYN, 0, 0, 0, 0},
    {"<\"a\r\"@x>", 0, SYN, 0, 0, 0, 0},
    {"<\"a\"@x", 0, SYN, 0, 0, 0, 0},
    {"<\"a\">", P_, SYN, 0, 0, 0, 0},
    /* domains */
    {"<a@x-y.example>", 0, OK_, "a@x-y.example", "a", "x-y.example", ""},
    {"<a@a--b>", 0, OK_, "a@a--b", "a", "a--b", ""},
    {"<a@123>", 0, OK_, "a@123", "a", "123", ""},
    {"<a@1.2.3.4>", 0, OK_, "a@1.2.3.4", "a", "1.2.3.4", ""},
    {"<a@x1.y2.z3>", 0, OK_, "a@x1.y2.z3", "a", "x1.y2.z3", ""},
    {"<a@-x.example>", 0, SYN, 0, 0, 0, 0},
    {"<a@x-.example>", 0, SYN, 0, 0, 0, 0},
    {"<a@x.-y>", 0, SYN, 0, 0, 0, 0},
    {"<a@x.y->", 0, SYN, 0, 0, 0, 0},
    {"<a@->", 0, SYN, 0, 0, 0, 0},
    {"<a@x..y>", 0, SYN, 0, 0, 0, 0},
    {"<a@.x>", 0, SYN, 0, 0, 0, 0},
    {"<a@x.>", 0, SYN, 0, 0, 0, 0},
    {"<a@.>", 0, SYN, 0, 0, 0, 0},
    {"<a@x_y>", 0, SYN, 0, 0, 0, 0},
    {"<a@x,y>", 0, SYN, 0, 0, 0, 0},
    {"<a@x:y>", 0, SYN, 0, 0, 0, 0},
    {"<a@x/y>", 0, SYN, 0, 0, 0, 0},
    {"<a@\"x\">", 0, SYN, 0, 0, 0, 0},
    /* IPv4 literals */
    {"<a@[192.0.2.1]>", 0, OK_, "a@[192.0.2.1]", "a", "[192.0.2.1]", ""},
    {"<a@[0.0.0.0]>", 0, OK_, "a@[0.0.0.0]", "a", "[0.0.0.0]", ""},
    {"<a@[255.255.255.255]> X", 0, OK_, "a@[255.255.255.255]", "a",
     "[255.255.255.255]", " X"},
    {"<a@[01.002.3.4]>", 0, OK_, "a@[01.002.3.4]", "a", "[01.002.3.4]", ""},
    {"<a@[256.0.0.1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1.2.3.300]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1.2.3]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1.2.3.4.5]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1.2.3.4]x>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1.2.3.4].x>", 0, SYN, 0, 0, 0, 0},
    {"<a@[ 1.2.3.4]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1.2.3.4 ]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[x1.2.3.4]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[-1.2.3.4]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1.2.3.]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[.1.2.3]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1..2.3]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1234.1.1.1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[0001.1.1.1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1.2.3.4>", 0, SYN, 0, 0, 0, 0},
    {"<a@[1.2.3.4", 0, SYN, 0, 0, 0, 0},
    {"<a@1.2.3.4]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[>", 0, SYN, 0, 0, 0, 0},
    {"<a@[[1.2.3.4]]>", 0, SYN, 0, 0, 0, 0},
    {"<a@x[1.2.3.4]>", 0, SYN, 0, 0, 0, 0},
    /* IPv6 literals */
    {"<a@[IPv6:2001:db8::1]>", 0, OK_, "a@[IPv6:2001:db8::1]", "a",
     "[IPv6:2001:db8::1]", ""},
    {"<a@[IPv6:::1]>", 0, OK_, "a@[IPv6:::1]", "a", "[IPv6:::1]", ""},
    {"<a@[IPv6:::]>", 0, OK_, "a@[IPv6:::]", "a", "[IPv6:::]", ""},
    {"<a@[IPv6:1:2:3:4:5:6:7:8]>", 0, OK_, "a@[IPv6:1:2:3:4:5:6:7:8]", "a",
     "[IPv6:1:2:3:4:5:6:7:8]", ""},
    {"<a@[ipv6:1:2:3:4:5:6:7:8]>", 0, OK_, "a@[ipv6:1:2:3:4:5:6:7:8]", "a",
     "[ipv6:1:2:3:4:5:6:7:8]", ""},
    {"<a@[IPV6:ABCD:ef01:2345:6789:abcd:EF01:2345:6789]>", 0, OK_,
     "a@[IPV6:ABCD:ef01:2345:6789:abcd:EF01:2345:6789]", "a",
     "[IPV6:ABCD:ef01:2345:6789:abcd:EF01:2345:6789]", ""},
    {"<a@[IPv6:0:0:0:0:0:0:0:0]>", 0, OK_, "a@[IPv6:0:0:0:0:0:0:0:0]", "a",
     "[IPv6:0:0:0:0:0:0:0:0]", ""},
    {"<a@[IPv6:1::]>", 0, OK_, "a@[IPv6:1::]", "a", "[IPv6:1::]", ""},
    {"<a@[IPv6:1::2]>", 0, OK_, "a@[IPv6:1::2]", "a", "[IPv6:1::2]", ""},
    {"<a@[IPv6:1:2:3:4:5:6::]>", 0, OK_, "a@[IPv6:1:2:3:4:5:6::]", "a",
     "[IPv6:1:2:3:4:5:6::]", ""},
    {"<a@[IPv6:::1:2:3:4:5:6]>", 0, OK_, "a@[IPv6:::1:2:3:4:5:6]", "a",
     "[IPv6:::1:2:3:4:5:6]", ""},
    {"<a@[IPv6:1:2:3::4:5:6]>", 0, OK_, "a@[IPv6:1:2:3::4:5:6]", "a",
     "[IPv6:1:2:3::4:5:6]", ""},
    {"<a@[IPv6:ffff:ffff::ffff]>", 0, OK_, "a@[IPv6:ffff:ffff::ffff]", "a",
     "[IPv6:ffff:ffff::ffff]", ""},
    {"<a@[IPv6:::ffff:192.0.2.1]>", 0, OK_, "a@[IPv6:::ffff:192.0.2.1]", "a",
     "[IPv6:::ffff:192.0.2.1]", ""},
    {"<a@[IPv6:1:2:3:4:5:6:192.0.2.1]>", 0, OK_,
     "a@[IPv6:1:2:3:4:5:6:192.0.2.1]", "a", "[IPv6:1:2:3:4:5:6:192.0.2.1]", ""},
    {"<a@[IPv6:1:2:3:4::192.0.2.1]>", 0, OK_, "a@[IPv6:1:2:3:4::192.0.2.1]",
     "a", "[IPv6:1:2:3:4::192.0.2.1]", ""},
    {"<a@[IPv6:::192.0.2.1]>", 0, OK_, "a@[IPv6:::192.0.2.1]", "a",
     "[IPv6:::192.0.2.1]", ""},
    {"<a@[IPv6:1::2:3:192.0.2.1]>", 0, OK_, "a@[IPv6:1::2:3:192.0.2.1]", "a",
     "[IPv6:1::2:3:192.0.2.1]", ""},
    {"<a@[IPv6:1:2:3:4:5:6:7]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1:2:3:4:5:6:7:8:9]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1:2:3:4:5:6:7::]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:::1:2:3:4:5:6:7]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1::2:3:4:5:6:7]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1:2:3:4:5:6:7:8::]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1::2::3]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:::1::]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1:::2]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6::::]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6::1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1:]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1:2:3:4:5:6:7:8:]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:12345::1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:g::1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1:2:3:4:5:192.0.2.1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1:2:3:4:5:6:7:192.0.2.1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1:2:3:4:5::192.0.2.1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:192.0.2.1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:::192.0.2.256]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:::1.2.3]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1.2.3.4::]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:::ffff:1.2.3.4:5]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:::ffff:1.2.3.4::]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6 :::1]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:::1 ]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:::1>", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:1:2:3:4:5:6:7:8", 0, SYN, 0, 0, 0, 0},
    {"<a@[IPv6:::%eth0]>", 0, SYN, 0, 0, 0, 0},
    /* general address literals */
    {"<a@[x-tag:foo]>", 0, OK_, "a@[x-tag:foo]", "a", "[x-tag:foo]", ""},
    {"<a@[tag:a>b]>", 0, OK_, "a@[tag:a>b]", "a", "[tag:a>b]", ""},
    {"<a@[tag:a:b@c!~]>", 0, OK_, "a@[tag:a:b@c!~]", "a", "[tag:a:b@c!~]", ""},
    {"<a@[123:abc]>", 0, OK_, "a@[123:abc]", "a", "[123:abc]", ""},
    {"<a@[IPv4:1.2.3.4]>", 0, OK_, "a@[IPv4:1.2.3.4]", "a", "[IPv4:1.2.3.4]", ""},
    {"<a@[tag:]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[:foo]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[tag-:foo]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[ta_g:foo]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[tag]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[tag:a]b]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[tag:a[b]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[tag:a\\]b]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[tag:a b]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[tag:a\x7f]>", 0, SYN, 0, 0, 0, 0},
    {"<a@[tag:a]", 0, SYN, 0, 0, 0, 0},
    {"<a@[tag:a", 0, SYN, 0, 0, 0, 0},
    /* controls anywhere */
    {"<a\x01@x>", N_ | P_ | U_, SYN, 0, 0, 0, 0},
    {"<a@x\x01>", N_ | P_ | U_, SYN, 0, 0, 0, 0},
    {"<a@x\r>", 0, SYN, 0, 0, 0, 0},
    {"<a@x\n>", 0, SYN, 0, 0, 0, 0},
    {"<a\x7f@x>", U_, SYN, 0, 0, 0, 0},
    {"<@a\x1b:b@c>", 0, SYN, 0, 0, 0, 0},
    {"\x01<a@b>", 0, SYN, 0, 0, 0, 0},
    /* 8-bit: only UTF-8, only with the flag */
    {"<\xc3\xa9@x>", 0, SYN, 0, 0, 0, 0},
    {"<\xc3\xa9@x>", U_, OK_, "\xc3\xa9@x", "\xc3\xa9", "x", ""},
    {"<a@\xc3\xa9.example>", 0, SYN, 0, 0, 0, 0},
    {"<a@\xc3\xa9.example>", U_, OK_, "a@\xc3\xa9.example", "a",
     "\xc3\xa9.example", ""},
    {"<\xe2\x82\xac.\xe2\x82\xac@x>", U_, OK_, "\xe2\x82\xac.\xe2\x82\xac@x",
     "\xe2\x82\xac.\xe2\x82\xac", "x", ""},
    {"<\xf0\x9f\x98\x80@\xe4\xbe\x8b\xe3\x81\x88>", U_, OK_,
     "\xf0\x9f\x98\x80@\xe4\xbe\x8b\xe3\x81\x88", "\xf0\x9f\x98\x80",
     "\xe4\xbe\x8b\xe3\x81\x88", ""},
    {"<\"\xc3\xa9 x\"@x>", U_, OK_, "\"\xc3\xa9 x\"@x", "\"\xc3\xa9 x\"", "x", ""},
    {"<\"\xc3\xa9\"@x>", 0, SYN, 0, 0, 0, 0},
    {"<a@x-\xc3\xa9>", U_, OK_, "a@x-\xc3\xa9", "a", "x-\xc3\xa9", ""},
    {"<a@\xc3\xa9-x>", U_, OK_, "a@\xc3\xa9-x", "a", "\xc3\xa9-x", ""},
    {"<@\xc3\xa9:a@b>", U_, OK_, "a@b", "a", "b", ""},
    {"<@\xc3\xa9:a@b>", 0, SYN, 0, 0, 0, 0},
    {"<a@\xc3\xa9->", U_, SYN, 0, 0, 0, 0},
    {"<\xc3@x>", U_, SYN, 0, 0, 0, 0},
    {"<\xc3", U_, SYN, 0, 0, 0, 0},
    {"<\xe2\x82", U_, SYN, 0, 0, 0, 0},
    {"<a@\xf0\x9f\x98", U_, SYN, 0, 0, 0, 0},
    {"<\xc0\xaf@x>", U_, SYN, 0, 0, 0, 0},
    {"<\xe0\x80\xaf@x>", U_, SYN, 0, 0, 0, 0},
    {"<\xed\xa0\x80@x>", U_, SYN, 0, 0, 0, 0},
    {"<\xf4\x90\x80\x80@x>", U_, SYN, 0, 0, 0, 0},
    {"<\x80@x>", U_, SYN, 0, 0, 0, 0},
    {"<a@\xff>", U_, SYN, 0, 0, 0, 0},
    {"<\"\xc3\"@x>", U_, SYN, 0, 0, 0, 0},
    {"<\"\\\xc3\xa9\"@x>", U_, SYN, 0, 0, 0, 0},
    {"<a@[\xc3\xa9:x]>", U_, SYN, 0, 0, 0, 0},
    {"<a@[tag:\xc3\xa9]>", U_, SYN, 0, 0, 0, 0},
};

START_TEST(test_path_table) {
  size_t i;

  for (i = 0; i < COUNT(path_cases); i++) {
    const path_case *c = &path_cases[i];
    path_result r;

    run_path(c->in, strlen(c->in), c->flags, &r);
    ck_assert_msg(r.st == c->st, "case %zu <%s> flags %u: status %d, want %d",
                  i, show(c->in), c->flags, (int)r.st, (int)c->st);
    if (c->st == SMTPD_I_PATH_OK) {
      ck_assert_msg(strcmp(r.address, c->address) == 0,
                    "case %zu: address %s", i, show(r.address));
      ck_assert_msg(strcmp(r.local, c->local) == 0, "case %zu: local %s", i,
                    show(r.local));
      ck_assert_msg(strcmp(r.domain, c->domain) == 0, "case %zu: domain %s",
                    i, show(r.domain));
      ck_assert_msg(strcmp(r.rest, c->rest) == 0, "case %zu: rest %s", i,
                    show(r.rest));
    }
  }
}
END_TEST

/* A path embedded in a longer line: address and rest point into it. */
START_TEST(test_path_in_place) {
  char line[] = "<@r.example:joe@example.com> SIZE=5";
  char scratch[SMTPD_I_PATH_SCRATCH];
  smtpd_i_path p;
  char *rest = NULL;

  ck_assert_int_eq(smtpd_i_parse_path(line, 0, scratch, &p, &rest),
                   SMTPD_I_PATH_OK);
  ck_assert_ptr_eq(p.address, line + 12);
  ck_assert_str_eq(p.address, "joe@example.com");
  ck_assert_ptr_eq(rest, line + 28);
  ck_assert_str_eq(rest, " SIZE=5");
  ck_assert_int_eq(line[27], '\0');
  ck_assert_str_eq(p.local, "joe");
  ck_assert_str_eq(p.domain, "example.com");
  ck_assert_ptr_eq(p.local, scratch);
}
END_TEST

/* ---- paths: lengths --------------------------------------------------- */

/* make_domain - a valid domain of exactly n octets (n >= 1): labels of up
 * to 63 'd's joined by dots, never ending with a dot. */
static void make_domain(char *dst, size_t n) {
  size_t o = 0;

  while (o < n) {
    size_t left = n - o, lab = left > 63 ? 63 : left;
    if (lab < left && left - lab == 1)
      lab--; /* avoid leaving a lone trailing dot */
    memset(dst + o, 'd', lab);
    o += lab;
    if (o < n)
      dst[o++] = '.';
  }
  dst[o] = '\0';
}

/* path_of - "<" route local "@" domain ">" rest with given part lengths;
 * quoted: local is a quoted string of exactly llen octets (quotes
 * included). Returns the status; fills r. */
static smtpd_i_path_status path_of(const char *route, size_t llen,
                                   int quoted, size_t dlen, int literal,
                                   path_result *r) {
  char buf[2048], dom[1024];
  size_t o = 0;

  ck_assert_uint_lt(llen + dlen + 64, sizeof dom);
  buf[o++] = '<';
  memcpy(buf + o, route, strlen(route));
  o += strlen(route);
  if (quoted) {
    ck_assert_uint_ge(llen, 2);
    buf[o++] = '"';
    memset(buf + o, ' ', llen - 2);
    o += llen - 2;
    buf[o++] = '"';
  } else {
    memset(buf + o, 'l', llen);
    o += llen;
  }
  buf[o++] = '@';
  if (literal) { /* "[x:ccc...]" */
    ck_assert_uint_ge(dlen, 5);
    memcpy(dom, "[x:", 3);
    memset(dom + 3, 'c', dlen - 4);
    dom[dlen - 1] = ']';
    dom[dlen] = '\0';
  } else {
    make_domain(dom, dlen);
  }
  ck_assert_uint_eq(strlen(dom), dlen);
  memcpy(buf + o, dom, dlen);
  o += dlen;
  buf[o++] = '>';
  memcpy(buf + o, " X=1", 4);
  o += 4;
  run_path(buf, o, 0, r);
  if (r->st == SMTPD_I_PATH_OK) {
    ck_assert_uint_eq(strlen(r->local), llen);
    ck_assert_str_eq(r->domain, dom);
    ck_assert_str_eq(r->rest, " X=1");
  }
  return r->st;
}

typedef struct len_case {
  const char *route;
  size_t llen;
  int quoted;
  size_t dlen;
  int literal;
  smtpd_i_path_status st;
} len_case;

/* path length = 1 + route + llen + 1 + dlen + 1 */
static const len_case len_cases[] = {
    /* local 64 / 65 */
    {"", 64, 0, 11, 0, OK_},
    {"", 65, 0, 11, 0, LTL},
    {"", 64, 1, 11, 0, OK_},
    {"", 65, 1, 11, 0, LTL},
    {"", 1, 0, 1, 0, OK_},
    {"", 200, 0, 11, 0, LTL},
    /* path 256 / 257 with local 64 */
    {"", 64, 0, 189, 0, OK_},
    {"", 64, 0, 190, 0, PTL},
    {"", 64, 0, 189, 1, OK_},
    {"", 64, 0, 190, 1, PTL},
    {"", 1, 0, 252, 0, OK_},
    {"", 1, 0, 253, 0, PTL},
    {"", 2, 0, 251, 0, OK_},
    {"", 2, 0, 252, 0, PTL},
    /* domain 255 / 256: 255 passes the domain limit but not the path one */
    {"", 1, 0, 255, 0, PTL},
    {"", 1, 0, 256, 0, DTL},
    {"", 1, 0, 255, 1, PTL},
    {"", 1, 0, 256, 1, DTL},
    {"", 1, 0, 600, 0, DTL},
    /* the source route counts towards the path */
    {"@r.example:", 1, 0, 241, 0, OK_},
    {"@r.example:", 1, 0, 242, 0, PTL},
    {"@r.example:", 64, 0, 178, 0, OK_},
    {"@r.example:", 64, 0, 179, 0, PTL},
    /* verdict order: local, then domain, then path */
    {"", 65, 0, 256, 0, LTL},
    {"", 65, 0, 200, 0, LTL},
    {"", 64, 0, 256, 0, DTL},
    {"", 64, 0, 255, 0, PTL},
};

START_TEST(test_path_lengths) {
  size_t i;

  for (i = 0; i < COUNT(len_cases); i++) {
    const len_case *c = &len_cases[i];
    path_result r;
    smtpd_i_path_status st =
        path_of(c->route, c->llen, c->quoted, c->dlen, c->literal, &r);
    ck_assert_msg(st == c->st, "len case %zu: status %d, want %d", i, (int)st,
                  (int)c->st);
  }
}
END_TEST

/* Every local length 1..80 and domain length 1..300 around the limits. */
START_TEST(test_path_length_sweep) {
  size_t l, d;

  for (l = 1; l <= 80; l += 1) {
    for (d = 1; d <= 300; d += (d > 170 && d < 260) ? 1 : 7) {
      path_result r;
      smtpd_i_path_status want, st = path_of("", l, 0, d, 0, &r);

      if (l > 64)
        want = LTL;
      else if (d > 255)
        want = DTL;
      else if (l + d + 3 > 256)
        want = PTL;
      else
        want = OK_;
      ck_assert_msg(st == want, "local %zu domain %zu: %d want %d", l, d,
                    (int)st, (int)want);
    }
  }
}
END_TEST

/* A syntax error wins over any length verdict. */
START_TEST(test_path_syntax_before_length) {
  char buf[1200];
  path_result r;

  memset(buf, 'a', sizeof buf);
  buf[0] = '<';
  memcpy(buf + 100, "..", 2); /* local part of 300 with a doubled dot */
  memcpy(buf + 300, "@x>", 3);
  run_path(buf, 303, 0, &r);
  ck_assert_int_eq(r.st, SYN);

  memcpy(buf, "<a@", 3); /* domain of 700 ending in '-' */
  memset(buf + 3, 'b', 700);
  buf[702] = '-';
  buf[703] = '>';
  run_path(buf, 704, 0, &r);
  ck_assert_int_eq(r.st, SYN);
  buf[702] = 'b';
  run_path(buf, 704, 0, &r);
  ck_assert_int_eq(r.st, DTL);
}
END_TEST

/* ---- paths: hostile input --------------------------------------------- */

static char *repeat(const char *pre, const char *unit, size_t times,
                    const char *post, size_t *n) {
  size_t pl = strlen(pre), ul = strlen(unit), ql = strlen(post), i;
  char *b = malloc(pl + ul * times + ql + 1);

  ck_assert_ptr_nonnull(b);
  memcpy(b, pre, pl);
  for (i = 0; i < times; i++)
    memcpy(b + pl + i * ul, unit, ul);
  memcpy(b + pl + ul * times, post, ql);
  *n = pl + ul * times + ql;
  b[*n] = '\0';
  return b;
}

typedef struct hostile_case {
  const char *pre, *unit;
  size_t times;
  const char *post;
  unsigned flags;
  smtpd_i_path_status st;
} hostile_case;

static const hostile_case hostile_cases[] = {
    {"", "@", 100000, "", N_ | P_ | U_, SYN},
    {"<", "@", 100000, ">", N_ | P_ | U_, SYN},
    {"<", "a", 100000, "", N_ | P_ | U_, SYN},
    {"<", "a", 100000, ">", N_ | P_ | U_, SYN},
    {"<", "a", 100000, "@x>", 0, LTL},
    {"<a@", "a.", 50000, "x>", 0, DTL},
    {"<a@", "a.", 50000, "x", 0, SYN},
    {"<\"", "a", 100000, "", 0, SYN},
    {"<\"", "\\", 100001, "", 0, SYN},
    {"<\"", "\\\"", 50000, "", 0, SYN},
    {"<\"", "\\\"", 50000, "\"@x>", 0, LTL},
    {"<", "[", 10000, "", 0, SYN},
    {"<a@", "[", 10000, ">", 0, SYN},
    {"<a@[", "1.", 10000, "1]>", 0, SYN},
    {"<a@[IPv6:", "1:", 10000, "1]>", 0, SYN},
    {"<a@[IPv6:", "::", 10000, "]>", 0, SYN},
    {"<a@[x:", "c", 10000, "]>", 0, DTL},
    {"<a@[x:", "c", 10000, "", 0, SYN},
    {"", "<", 10000, "", N_, SYN},
    {"", "<>", 10000, "", N_, OK_},
    {"<", "@a,", 10000, "@a:u@b>", 0, PTL},
    {"<", "@a,", 10000, "@a:u@b", 0, SYN},
    {"<", "@a,", 10000, "", 0, SYN},
    {"<", "a.", 10000, "", 0, SYN},
    {"<", "\xc3\xa9", 10000, "", U_, SYN},
    {"<", "\xc3\xa9", 10000, "@x>", U_, LTL},
    {"<", "\xc3", 10000, "", U_, SYN},
    {"<", "\"\"", 10000, "@x>", 0, SYN},
    {"<a@", "-", 10000, ">", 0, SYN},
    {"<postmaster", ">", 10000, "", P_, OK_},
};

START_TEST(test_path_hostile) {
  size_t i;

  for (i = 0; i < COUNT(hostile_cases); i++) {
    const hostile_case *c = &hostile_cases[i];
    size_t n;
    char *b = repeat(c->pre, c->unit, c->times, c->post, &n);
    path_result r;

    run_path(b, n, c->flags, &r);
    ck_assert_msg(r.st == c->st, "hostile %zu: %d want %d", i, (int)r.st,
                  (int)c->st);
    free(b);
  }
}
END_TEST

/* Random mutations of valid paths: no crash, no overflow (ASan), and
 * every accepted result re-parses to itself. */
static const char *const seeds[] = {
    "<a@b>",
    "<>",
    "<Postmaster>",
    "<@a.example,@b.example:u.v@c.example> X=1",
    "<\"q \\\" q\"@x.example>",
    "<u@[192.0.2.1]>",
    "<u@[IPv6:2001:db8::ffff:192.0.2.1]>",
    "<u@[IPv6:1:2:3:4:5:6:7:8]>",
    "<u@[tag:a>b]>",
    "<\xc3\xa9@\xe4\xbe\x8b.example>",
};

START_TEST(test_path_fuzz) {
  static const char alphabet[] = "<>@.:,[]\"\\ -aZ09:IPv6\x01\x7f\x80\xc3\xa9";
  uint32_t st = 0x12345678u;
  unsigned ok = 0, iter;

  for (iter = 0; iter < 40000; iter++) {
    char buf[128], again[sizeof(((path_result *)0)->address) + 3];
    const char *seed = seeds[rnd(&st) % COUNT(seeds)];
    size_t n = strlen(seed), k, muts = 1 + rnd(&st) % 3;
    unsigned flags = rnd(&st) & 7u;
    path_result r, r2;

    memcpy(buf, seed, n);
    for (k = 0; k < muts; k++) {
      size_t pos = n ? rnd(&st) % n : 0;
      char c = alphabet[rnd(&st) % (sizeof alphabet - 1)];
      switch (rnd(&st) % 3) {
      case 0: /* replace */
        if (n)
          buf[pos] = c;
        break;
      case 1: /* insert */
        if (n + 1 < sizeof buf) {
          memmove(buf + pos + 1, buf + pos, n - pos);
          buf[pos] = c;
          n++;
        }
        break;
      default: /* delete */
        if (n) {
          memmove(buf + pos, buf + pos + 1, n - pos - 1);
          n--;
        }
        break;
      }
    }
    buf[n] = '\0';
    run_path(buf, n, flags, &r);
    if (r.st != SMTPD_I_PATH_OK)
      continue;
    ok++;
    snprintf(again, sizeof again, "<%s>", r.address);
    run_path(again, strlen(again), flags, &r2);
    ck_assert_msg(r2.st == SMTPD_I_PATH_OK, "re-parse of %s", show(again));
    ck_assert_str_eq(r2.address, r.address);
    ck_assert_str_eq(r2.local, r.local);
    ck_assert_str_eq(r2.domain, r.domain);
  }
  ck_assert_uint_gt(ok, 1000); /* the mutations did exercise success paths */
}
END_TEST

/* ---- paths: reference implementation -------------------------------- */

/*
 * REFERENCE COPY of smtpd_i_parse_path as it was before the fast path
 * (lib/parse.c of 0.3.x, the plain octet-by-octet grammar), renamed
 * ref_*, kept verbatim otherwise. test_path_differential checks that the
 * library's smtpd_i_parse_path agrees with it on generated paths. Do not
 * "fix" it together with the library: it is the oracle.
 */
#define REF_C_ATEXT 0x0001u  /* RFC 5321 atext */
#define REF_C_LETDIG 0x0002u /* ALPHA / DIGIT */
#define REF_C_LDH 0x0004u    /* ALPHA / DIGIT / "-" */
#define REF_C_QTEXT 0x0008u  /* qtextSMTP: %d32-33 / %d35-91 / %d93-126 */
#define REF_C_DCONT 0x0010u  /* dcontent: %d33-90 / %d94-126 */
#define REF_C_XCHAR 0x0020u  /* xtext xchar: %d33-126 except "+" and "=" */
#define REF_C_VALUE 0x0040u  /* esmtp-value char: %d33-126 except "=" */
#define REF_C_HEX 0x0080u    /* HEXDIG, either case */
#define REF_C_DIGIT 0x0100u  /* DIGIT */
#define REF_C_PRINT 0x0200u  /* %d32-126 (also quoted-pairSMTP's 2nd octet) */
#define REF_C_LOWER 0x0400u  /* a-z */

#define REF_IN(c, a, b) ((c) >= (a) && (c) <= (b))
#define REF_IS_ALPHA(c) (REF_IN(c, 'A', 'Z') || REF_IN(c, 'a', 'z'))
#define REF_IS_DIGIT(c) REF_IN(c, '0', '9')
#define REF_IS_ASPECIAL(c)                                                       \
  ((c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' ||     \
   (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '/' ||    \
   (c) == '=' || (c) == '?' || (c) == '^' || (c) == '_' || (c) == '`' ||     \
   (c) == '{' || (c) == '|' || (c) == '}' || (c) == '~')

#define REF_CLS(c)                                                               \
  (((REF_IS_ALPHA(c) || REF_IS_DIGIT(c) || REF_IS_ASPECIAL(c)) ? REF_C_ATEXT : 0u) |         \
   ((REF_IS_ALPHA(c) || REF_IS_DIGIT(c)) ? REF_C_LETDIG : 0u) |                          \
   ((REF_IS_ALPHA(c) || REF_IS_DIGIT(c) || (c) == '-') ? REF_C_LDH : 0u) |               \
   ((REF_IN(c, 32, 33) || REF_IN(c, 35, 91) || REF_IN(c, 93, 126)) ? REF_C_QTEXT : 0u) |     \
   ((REF_IN(c, 33, 90) || REF_IN(c, 94, 126)) ? REF_C_DCONT : 0u) |                      \
   ((REF_IN(c, 33, 126) && (c) != '+' && (c) != '=') ? REF_C_XCHAR : 0u) |           \
   ((REF_IN(c, 33, 126) && (c) != '=') ? REF_C_VALUE : 0u) |                         \
   ((REF_IS_DIGIT(c) || REF_IN(c, 'A', 'F') || REF_IN(c, 'a', 'f')) ? REF_C_HEX : 0u) |      \
   (REF_IS_DIGIT(c) ? REF_C_DIGIT : 0u) | (REF_IN(c, 32, 126) ? REF_C_PRINT : 0u) |          \
   (REF_IN(c, 'a', 'z') ? REF_C_LOWER : 0u))

#define REF_R4(f, b) f(b), f((b) + 1), f((b) + 2), f((b) + 3)
#define REF_R16(f, b) REF_R4(f, b), REF_R4(f, (b) + 4), REF_R4(f, (b) + 8), REF_R4(f, (b) + 12)
#define REF_R64(f, b) REF_R16(f, b), REF_R16(f, (b) + 16), REF_R16(f, (b) + 32), REF_R16(f, (b) + 48)
#define REF_R256(f) REF_R64(f, 0), REF_R64(f, 64), REF_R64(f, 128), REF_R64(f, 192)

#define REF_CLS16(c) ((uint16_t)REF_CLS(c))
static const uint16_t ref_cls[256] = {REF_R256(REF_CLS16)};

#define REF_IS(c, k) ((ref_cls[(unsigned char)(c)] & (k)) != 0)

static inline size_t ref_utf8_seq(const unsigned char *p, size_t avail) {
  unsigned c = p[0];
  unsigned lo = 0x80, hi = 0xbf;

  if (c < 0xc2) /* ASCII, stray continuation, overlong C0/C1 */
    return 0;
  if (c < 0xe0)
    return (avail >= 2 && REF_IN(p[1], 0x80, 0xbf)) ? 2 : 0;
  if (c < 0xf0) {
    if (c == 0xe0)
      lo = 0xa0; /* overlong */
    else if (c == 0xed)
      hi = 0x9f; /* surrogates */
    return (avail >= 3 && REF_IN(p[1], lo, hi) && REF_IN(p[2], 0x80, 0xbf)) ? 3 : 0;
  }
  if (c < 0xf5) {
    if (c == 0xf0)
      lo = 0x90; /* overlong */
    else if (c == 0xf4)
      hi = 0x8f; /* above U+10FFFF */
    return (avail >= 4 && REF_IN(p[1], lo, hi) && REF_IN(p[2], 0x80, 0xbf) &&
            REF_IN(p[3], 0x80, 0xbf))
               ? 4
               : 0;
  }
  return 0;
}

/* ref_u8len - UTF-8 sequence length at p when allowed by flags, else 0. */
static inline size_t ref_u8len(const char *p, unsigned flags) {
  if (!(flags & SMTPD_I_PATH_UTF8))
    return 0;
  return ref_utf8_seq((const unsigned char *)p, SIZE_MAX);
}

/*
 * ref_scan_domain - Domain = sub-domain *("." sub-domain), sub-domain =
 * Let-dig [Ldh-str] (or a U-label with SMTPD_I_PATH_UTF8: non-ASCII
 * UTF-8 sequences count as letters). Returns the end, or NULL.
 */
static const char *ref_scan_domain(const char *p, unsigned flags) {
  for (;;) {
    size_t n;

    /* first octet: Let-dig or UTF-8 */
    if (REF_IS(*p, REF_C_LETDIG))
      p++;
    else if ((n = ref_u8len(p, flags)) != 0)
      p += n;
    else
      return NULL;
    /* runs of LDH octets, between them UTF-8 sequences (only an octet
     * >= 0x80 can start one) */
    for (;;) {
      while (REF_IS(*p, REF_C_LDH))
        p++;
      if (!((unsigned char)*p & 0x80u) || (n = ref_u8len(p, flags)) == 0)
        break;
      p += n;
    }
    /* the last octet taken: a '-' ends no sub-domain (after a UTF-8
     * sequence it is a continuation octet, after the first a Let-dig) */
    if (p[-1] == '-')
      return NULL;
    if (*p != '.')
      return p;
    p++;
  }
}

/* ref_scan_snum - Snum (1*3DIGIT, value 0..255); end or NULL. */
static const char *ref_scan_snum(const char *p) {
  unsigned v = 0;
  int i;

  for (i = 0; i < 3 && REF_IS(p[i], REF_C_DIGIT); i++)
    v = v * 10u + (unsigned)(p[i] - '0');
  if (i == 0 || v > 255 || REF_IS(p[i], REF_C_DIGIT))
    return NULL;
  return p + i;
}

/* ref_scan_ipv4 - IPv4-address-literal: Snum 3("." Snum); end or NULL. */
static const char *ref_scan_ipv4(const char *p) {
  int i;

  for (i = 0; i < 4; i++) {
    if (i > 0) {
      if (*p != '.')
        return NULL;
      p++;
    }
    if ((p = ref_scan_snum(p)) == NULL)
      return NULL;
  }
  return p;
}

/*
 * ref_scan_ipv6 - IPv6-addr of RFC 5321 4.1.3 (after "IPv6:"); end or NULL.
 * Group counts follow RFC 5321 literally: 8 groups without "::", at most
 * 6 explicit groups with "::" (which stands for at least two zero
 * groups); with an IPv4 tail 6 and at most 4. At most one "::".
 */
static const char *ref_scan_ipv6(const char *p) {
  unsigned groups = 0;
  int dcolon = 0, v4 = 0;

  if (p[0] == ':') {
    if (p[1] != ':')
      return NULL;
    dcolon = 1;
    p += 2;
    if (!REF_IS(*p, REF_C_HEX)) /* "::" alone (or "::" + junk, caught below) */
      goto counted;
  }
  for (;;) {
    const char *q = p;
    int i;

    /* a run of up to 3 digits followed by '.' starts an IPv4 tail */
    while (q - p < 3 && REF_IS(*q, REF_C_DIGIT))
      q++;
    if (q != p && *q == '.') { /* (count checks reject a bare IPv4) */
      if ((p = ref_scan_ipv4(p)) == NULL)
        return NULL;
      v4 = 1;
      break;
    }
    for (i = 0; i < 4 && REF_IS(p[i], REF_C_HEX); i++)
      ;
    if (i == 0)
      return NULL;
    p += i;
    groups++;
    if (groups > 8)
      return NULL;
    if (*p != ':')
      break;
    if (p[1] == ':') {
      if (dcolon)
        return NULL;
      dcolon = 1;
      p += 2;
      if (!REF_IS(*p, REF_C_HEX))
        break; /* trailing "::" */
    } else {
      p++;
    }
  }
counted:
  if (v4) {
    if (dcolon ? groups > 4 : groups != 6)
      return NULL;
  } else {
    if (dcolon ? groups > 6 : groups != 8)
      return NULL;
  }
  return p;
}

/* ref_is_ipv6_tag - the tag at p is "IPv6" (any case) followed by ':'. */
static int ref_is_ipv6_tag(const char *p) {
  return (p[0] | 0x20) == 'i' && (p[1] | 0x20) == 'p' &&
         (p[2] | 0x20) == 'v' && p[3] == '6' && p[4] == ':';
}

/*
 * ref_scan_literal - address-literal, p at '['. IPv4 first; a tag "IPv6"
 * (case-insensitive, as ABNF strings are) must carry a valid IPv6-addr;
 * any other Standardized-tag (Ldh-str) ":" 1*dcontent is a general
 * literal. Returns the end (after ']') or NULL.
 */
static const char *ref_scan_literal(const char *p) {
  const char *q;

  p++;
  if ((q = ref_scan_ipv4(p)) != NULL && *q == ']')
    return q + 1;
  if (ref_is_ipv6_tag(p)) {
    if ((q = ref_scan_ipv6(p + 5)) != NULL && *q == ']')
      return q + 1;
    return NULL;
  }
  /* Standardized-tag = Ldh-str: LDH octets, the last one a Let-dig */
  for (q = p; REF_IS(*q, REF_C_LDH); q++)
    ;
  if (q == p || q[-1] == '-' || *q != ':')
    return NULL;
  p = ++q;
  while (REF_IS(*q, REF_C_DCONT))
    q++;
  if (q == p || *q != ']')
    return NULL;
  return q + 1;
}

/* ref_scan_local - Dot-string or Quoted-string local part; end or NULL. */
static const char *ref_scan_local(const char *p, unsigned flags) {
  size_t n;

  if (*p == '"') {
    p++;
    for (;;) {
      if (*p == '"')
        return p + 1;
      if (*p == '\\') {
        if (!REF_IS(p[1], REF_C_PRINT))
          return NULL; /* includes a backslash before the NUL */
        p += 2;
      } else if (REF_IS(*p, REF_C_QTEXT)) {
        p++;
      } else if ((n = ref_u8len(p, flags)) != 0) {
        p += n;
      } else {
        return NULL; /* controls, unterminated string */
      }
    }
  }
  for (;;) {
    const char *atom = p;

    for (;;) {
      while (REF_IS(*p, REF_C_ATEXT))
        p++;
      if (!((unsigned char)*p & 0x80u) || (n = ref_u8len(p, flags)) == 0)
        break;
      p += n;
    }
    if (p == atom)
      return NULL; /* empty atom: leading, trailing or doubled dot */
    if (*p != '.')
      return p;
    p++;
  }
}

/* ref_is_postmaster - "Postmaster>" in any case at p. */
static int ref_is_postmaster(const char *p) {
  static const char pm[] = "postmaster";
  size_t i;

  for (i = 0; i < sizeof pm - 1; i++)
    if ((p[i] | 0x20) != pm[i]) /* stops at the NUL: (0 | 0x20) is ' ' */
      return 0;
  return p[i] == '>';
}

/*
 * smtpd_i_parse_path - see parse.h.
 *
 * Order of verdicts (deterministic): first the whole path is checked for
 * syntax (any malformation is SMTPD_I_PATH_SYNTAX whatever its length);
 * then the limits, most specific first: local part over 64 octets
 * (LOCAL_TOO_LONG), then domain over 255 octets (DOMAIN_TOO_LONG), then
 * the path over 256 octets counted from '<' to '>' inclusive, source
 * route included (TOO_LONG). Checking the path first would make
 * DOMAIN_TOO_LONG unreachable (a 256-octet domain never fits in a
 * 256-octet path), so the element limits come first. Nothing in s,
 * scratch, *out or *rest is written unless the result is OK.
 */
static smtpd_i_path_status ref_parse_path(char *s, unsigned flags,
                                       char *scratch, smtpd_i_path *out,
                                       char **rest) {
  const char *p, *addr, *local_end, *dom, *end;
  size_t llen, dlen;
  char *gt;

  if (s[0] != '<')
    return SMTPD_I_PATH_SYNTAX;
  p = s + 1;

  if (*p == '>') { /* null reverse-path */
    if (!(flags & SMTPD_I_PATH_ALLOW_NULL))
      return SMTPD_I_PATH_SYNTAX;
    gt = s + 1;
    *gt = '\0';
    scratch[0] = '\0';
    scratch[1] = '\0';
    out->address = gt;
    out->address_len = 0;
    out->local = scratch;
    out->domain = scratch + 1;
    *rest = gt + 1;
    return SMTPD_I_PATH_OK;
  }

  if ((flags & SMTPD_I_PATH_ALLOW_POSTMASTER) && ref_is_postmaster(p)) {
    gt = s + 11;
    memcpy(s + 1, "Postmaster", 10);
    *gt = '\0';
    memcpy(scratch, "Postmaster", 11);
    scratch[11] = '\0';
    out->address = s + 1;
    out->address_len = 10;
    out->local = scratch;
    out->domain = scratch + 11;
    *rest = gt + 1;
    return SMTPD_I_PATH_OK;
  }

  /* A-d-l ":" : "@" Domain *("," "@" Domain) ":", dropped */
  if (*p == '@') {
    for (;;) {
      if ((p = ref_scan_domain(p + 1, flags)) == NULL)
        return SMTPD_I_PATH_SYNTAX;
      if (*p == ':')
        break;
      if (p[0] != ',' || p[1] != '@')
        return SMTPD_I_PATH_SYNTAX;
      p++;
    }
    p++;
  }

  addr = p;
  if ((local_end = ref_scan_local(addr, flags)) == NULL || *local_end != '@')
    return SMTPD_I_PATH_SYNTAX;
  dom = local_end + 1;
  if (*dom == '[')
    end = ref_scan_literal(dom);
  else
    end = ref_scan_domain(dom, flags);
  if (end == NULL || *end != '>')
    return SMTPD_I_PATH_SYNTAX;

  llen = (size_t)(local_end - addr);
  dlen = (size_t)(end - dom);
  if (llen > SMTPD_I_MAX_LOCAL)
    return SMTPD_I_PATH_LOCAL_TOO_LONG;
  if (dlen > SMTPD_I_MAX_DOMAIN)
    return SMTPD_I_PATH_DOMAIN_TOO_LONG;
  if ((size_t)(end - s) + 1 > SMTPD_I_MAX_PATH)
    return SMTPD_I_PATH_TOO_LONG;

  /* llen <= 64: the local part fits in SMTPD_I_PATH_SCRATCH; the domain
   * stays in s, ended by the NUL that replaces '>' */
  memcpy(scratch, addr, llen);
  scratch[llen] = '\0';

  gt = s + (end - s);
  *gt = '\0';
  out->address = s + (addr - s);
  out->address_len = (size_t)(end - addr);
  out->local = scratch;
  out->domain = s + (dom - s);
  *rest = gt + 1;
  return SMTPD_I_PATH_OK;
}


/* ---- paths: differential test against the reference ------------------ */

/* gen_label - append a domain label of n octets: mostly LDH, sometimes a
 * U-label octet pair (é) when utf8 (the caller decides on validity). */
static size_t gen_put(char *b, size_t o, size_t cap, const char *pool,
                      size_t n, uint32_t *st) {
  size_t plen = strlen(pool), k;

  for (k = 0; k < n && o + 1 < cap; k++)
    b[o++] = pool[rnd(st) % plen];
  return o;
}

/* gen_path - a generated path in b (NUL-terminated, length returned):
 * mostly well-formed shapes (dot-atom or quoted local parts, LDH or
 * UTF-8 labels, literals, source routes, Postmaster, null path) with
 * lengths drawn around the 16/32/48/64 copy sizes and the 64/255/256
 * limits, then 0..3 octets replaced by arbitrary ones or by specials. */
static size_t gen_path(char *b, size_t cap, uint32_t *st) {
  static const char *const atext =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
      "!#$%&'*+-/=?^_`{|}~";
  static const char *const letdig = "abcxyzABCXYZ0189";
  static const char *const ldh = "abcxyzABCXYZ0189---";
  static const char *const special[] = {
      ".", "@", "-", ">", "<", "\"", "\\", ":", ",", "[", "]", " ",
      "\x7f", "\x01", "\x80", "\xc3", "\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
      "\xc3\xa9", "..", ".@", "@.", "-.", ".-", "\xed\xa0\x80", "\xc0\xaf"};
  static const size_t sizes[] = {1,  2,  3,  4,  7,  8,  9,  12, 13, 14,
                                 15, 16, 17, 31, 32, 33, 47, 48, 49, 63,
                                 64, 65, 66};
  static const size_t dsizes[] = {1,   2,   3,   5,   11,  12,  60,  63,
                                  64,  127, 189, 190, 191, 192, 193, 250,
                                  253, 254, 255, 256, 257};
  size_t o = 0, llen, dlen, k, muts;
  unsigned shape = rnd(st) % 16;

  b[o++] = (rnd(st) % 64) ? '<' : 'x';
  if (shape == 0) { /* null path or Postmaster */
    const char *w = (rnd(st) & 1) ? "" : ((rnd(st) & 1) ? "Postmaster" : "pOsTmAsTeR");
    memcpy(b + o, w, strlen(w));
    o += strlen(w);
    if (rnd(st) & 1)
      b[o++] = '@', o = gen_put(b, o, cap, letdig, 3, st);
  } else {
    if (shape == 1) { /* source route */
      unsigned hops = 1 + rnd(st) % 3;
      while (hops--) {
        b[o++] = '@';
        o = gen_put(b, o, cap, letdig, 1 + rnd(st) % 8, st);
        b[o++] = hops ? ',' : ':';
      }
    }
    llen = sizes[rnd(st) % COUNT(sizes)];
    if (shape == 2) { /* quoted */
      b[o++] = '"';
      o = gen_put(b, o, cap, "ab c\\\"@.x", llen > 2 ? llen - 2 : 0, st);
      b[o++] = '"';
    } else { /* dot-atom, dots sprinkled in */
      for (k = 0; k < llen; k++)
        b[o++] = (k > 0 && k + 1 < llen && rnd(st) % 6 == 0)
                     ? '.'
                     : atext[rnd(st) % strlen(atext)];
      if (shape == 3 && o + 2 < cap) { /* UTF-8 in the local part */
        memcpy(b + o, "\xc3\xa9", 2);
        o += 2;
      }
    }
    b[o++] = '@';
    if (shape == 4) {
      const char *lits[] = {"[192.0.2.1]", "[IPv6:2001:db8::1]",
                            "[x-tag:abc]", "[256.1.1.1]", "[IPv6:::]"};
      const char *w = lits[rnd(st) % COUNT(lits)];
      memcpy(b + o, w, strlen(w));
      o += strlen(w);
    } else {
      dlen = dsizes[rnd(st) % COUNT(dsizes)];
      for (k = 0; k < dlen && o + 4 < cap; k++) {
        int edge = k == 0 || k + 1 == dlen || b[o - 1] == '.';
        if (!edge && rnd(st) % 7 == 0 && k + 2 < dlen) {
          if (b[o - 1] == '-' && rnd(st) % 8)
            b[o - 1] = 'q'; /* mostly valid label ends */
          b[o++] = '.';
        }
        else if (shape == 5 && rnd(st) % 5 == 0)
          memcpy(b + o, "\xc3\xa9", 2), o += 2, k++;
        else
          b[o++] = edge ? letdig[rnd(st) % strlen(letdig)]
                        : ldh[rnd(st) % strlen(ldh)];
      }
    }
  }
  b[o++] = (rnd(st) % 32) ? '>' : '.';
  if (rnd(st) & 1) {
    memcpy(b + o, " SIZE=1", 7);
    o += 7;
  }
  b[o] = '\0';
  /* mutations at any position, including the '<' and past the '>' */
  muts = (rnd(st) & 1) ? 0 : 1 + rnd(st) % 3;
  for (k = 0; k < muts && o > 0; k++) {
    size_t pos = rnd(st) % o;
    if (rnd(st) & 1) {
      b[pos] = (char)(1 + rnd(st) % 255);
    } else {
      const char *w = special[rnd(st) % COUNT(special)];
      size_t wl = strlen(w);
      if (pos + wl <= o)
        memcpy(b + pos, w, wl);
    }
  }
  return o;
}

/* diff_one - run the library and the reference on exact-size copies of
 * in[0..n] and compare verdicts, outputs and the buffers afterwards
 * (scratch on the stack, exactly SMTPD_I_PATH_SCRATCH: redzones under
 * ASan). Returns the verdict. */
static smtpd_i_path_status diff_one(const char *in, size_t n,
                                    unsigned flags) {
  char *s1 = xdup(in, n), *s2 = xdup(in, n);
  char k1[SMTPD_I_PATH_SCRATCH], k2[SMTPD_I_PATH_SCRATCH];
  smtpd_i_path o1, o2;
  char *r1 = NULL, *r2 = NULL;
  smtpd_i_path_status a, b;

  memset(&o1, 0, sizeof o1);
  memset(&o2, 0, sizeof o2);
  a = smtpd_i_parse_path(s1, flags, k1, &o1, &r1);
  b = ref_parse_path(s2, flags, k2, &o2, &r2);
  ck_assert_msg(a == b, "verdict %d, reference %d, flags %u: %s", (int)a,
                (int)b, flags, show(in));
  ck_assert_msg(memcmp(s1, s2, n + 1) == 0, "buffer differs: %s", show(in));
  if (a == SMTPD_I_PATH_OK) {
    ck_assert_msg(o1.address - s1 == o2.address - s2, "address: %s",
                  show(in));
    ck_assert_uint_eq(o1.address_len, o2.address_len);
    ck_assert_msg(r1 - s1 == r2 - s2, "rest: %s", show(in));
    ck_assert_ptr_eq(o1.local, k1);
    ck_assert_ptr_eq(o2.local, k2);
    ck_assert_msg(strcmp(o1.local, o2.local) == 0, "local %s", show(in));
    if (o2.domain >= s2 && o2.domain <= s2 + n)
      ck_assert_msg(o1.domain - s1 == o2.domain - s2, "domain: %s",
                    show(in));
    else
      ck_assert(o1.domain - k1 == o2.domain - k2);
  } else {
    ck_assert_ptr_null(r1);
    ck_assert_ptr_null(o1.address);
  }
  free(s1);
  free(s2);
  return a;
}

START_TEST(test_path_differential) {
  uint32_t st = 0x9e3779b9u;
  unsigned long iter, verdicts[5] = {0}, iters = 60000;
  /* deeper runs: SMTPD_PATH_DIFF_ITERS=400000 CK_TIMEOUT_MULTIPLIER=20 */
  const char *e = getenv("SMTPD_PATH_DIFF_ITERS");

  /* 60,000 by default: the sanitized suite runs on loaded CI machines */
  if (e && strtoul(e, NULL, 10) > 0)
    iters = strtoul(e, NULL, 10);
  for (iter = 0; iter < iters; iter++) {
    char buf[700];
    size_t n = gen_path(buf, sizeof buf - 8, &st);
    unsigned flags = rnd(&st) & 7u;

    verdicts[diff_one(buf, n, flags)]++;
    /* the same path cut at a random point (a NUL anywhere) */
    if (n > 0 && (iter & 7) == 0)
      diff_one(buf, rnd(&st) % n, flags);
  }
  /* every verdict well represented: the generator reaches all of them */
  if (getenv("SMTPD_TEST_VERBOSE"))
    printf("differential: ok %lu syntax %lu local %lu domain %lu path %lu\n",
           verdicts[0], verdicts[1], verdicts[2], verdicts[3], verdicts[4]);
  ck_assert_uint_gt(verdicts[SMTPD_I_PATH_OK], iters / 8);
  for (iter = 1; iter < 5; iter++)
    ck_assert_msg(verdicts[iter] > iters / 600, "verdict %lu only %lu times",
                  iter, verdicts[iter]);
}
END_TEST

/* ---- ESMTP parameters -------------------------------------------------- */

typedef struct param_case {
  const char *in;
  size_t max;
  int utf8;
  int ret;
  const char *kv[8]; /* keyword, value ("\x01" for NULL), ... */
} param_case;

#define NV "\x01"

static const param_case param_cases[] = {
    {"", 8, 0, 0, {0}},
    {"   ", 8, 0, 0, {0}},
    {" SIZE=1000 BODY=8BITMIME", 8, 0, 2, {"SIZE", "1000", "BODY", "8BITMIME"}},
    {"size=10", 8, 0, 1, {"SIZE", "10"}},
    {"  bOdY=8bitmime   smtputf8  ", 8, 0, 2,
     {"BODY", "8bitmime", "SMTPUTF8", NV}},
    {" A", 8, 0, 1, {"A", NV}},
    {" 9", 8, 0, 1, {"9", NV}},
    {" a-b-=c", 8, 0, 1, {"A-B-", "c"}},
    {" X-Y=!\"#$%&'()*+,-./:;<>?@[\\]^_`{|}~", 8, 0, 1,
     {"X-Y", "!\"#$%&'()*+,-./:;<>?@[\\]^_`{|}~"}},
    {" AUTH=<> SIZE=0", 8, 0, 2, {"AUTH", "<>", "SIZE", "0"}},
    {" A=1 B=2 C=3", 3, 0, 3, {"A", "1", "B", "2", "C", "3"}},
    {" A=1 B=2 C=3", 2, 0, -2, {0}},
    {" A", 0, 0, -2, {0}},
    {"", 0, 0, 0, {0}},
    {" A=1 B=2 C=3 =", 2, 0, -1, {0}},
    {" A=", 8, 0, -1, {0}},
    {" A= B", 8, 0, -1, {0}},
    {" =x", 8, 0, -1, {0}},
    {" -A", 8, 0, -1, {0}},
    {" A_B", 8, 0, -1, {0}},
    {" A.B=1", 8, 0, -1, {0}},
    {" A=b=c", 8, 0, -1, {0}},
    {" A==", 8, 0, -1, {0}},
    {" A=\x01", 8, 0, -1, {0}},
    {" A=x\x7f", 8, 0, -1, {0}},
    {" A=1\tB=2", 8, 0, -1, {0}},
    {"\tA=1", 8, 0, -1, {0}},
    {" A=1\r", 8, 0, -1, {0}},
    {" A=\xc3\xa9", 8, 0, -1, {0}},
    {" A=\xc3\xa9", 8, 1, 1, {"A", "\xc3\xa9"}},
    {" A=x\xe2\x82\xacy B", 8, 1, 2, {"A", "x\xe2\x82\xacy", "B", NV}},
    {" A=\xc3", 8, 1, -1, {0}},
    {" A=\xc0\x80", 8, 1, -1, {0}},
    {" A=\xed\xa0\x80", 8, 1, -1, {0}},
    {" \xc3\xa9=1", 8, 1, -1, {0}},
    {" A=1 \x80", 8, 1, -1, {0}},
};

START_TEST(test_params_table) {
  size_t i;

  for (i = 0; i < COUNT(param_cases); i++) {
    const param_case *c = &param_cases[i];
    size_t n = strlen(c->in);
    char *s = xdup(c->in, n);
    smtpd_param out[8];
    int ret, k;

    ret = smtpd_i_parse_params(s, out, c->max, c->utf8);
    ck_assert_msg(ret == c->ret, "params case %zu (%s): %d want %d", i,
                  show(c->in), ret, c->ret);
    for (k = 0; k < ret; k++) {
      const char *kw = c->kv[2 * k], *v = c->kv[2 * k + 1];
      ck_assert(out[k].keyword >= s && out[k].keyword < s + n);
      ck_assert_str_eq(out[k].keyword, kw);
      if (strcmp(v, NV) == 0) {
        ck_assert_ptr_null(out[k].value);
      } else {
        ck_assert_ptr_nonnull(out[k].value);
        ck_assert(out[k].value > s && out[k].value < s + n);
        ck_assert_str_eq(out[k].value, v);
      }
    }
    free(s);
  }
}
END_TEST

/* Many parameters: count exact, no write past max. */
START_TEST(test_params_many) {
  size_t n;
  char *s = repeat("", " K=v", 1000, "", &n);
  smtpd_param out[4];
  smtpd_param big[1000];

  ck_assert_int_eq(smtpd_i_parse_params(s, out, 3, 0), -2);
  free(s);
  s = repeat("", " K=v", 1000, "", &n);
  ck_assert_int_eq(smtpd_i_parse_params(s, big, 1000, 0), 1000);
  ck_assert_str_eq(big[999].keyword, "K");
  ck_assert_str_eq(big[999].value, "v");
  free(s);
}
END_TEST

/* ---- numbers ---------------------------------------------------------- */

typedef struct u64_case {
  const char *in;
  int ret;
  uint64_t v;
} u64_case;

static const u64_case u64_cases[] = {
    {"0", 0, 0},
    {"1", 0, 1},
    {"00", 0, 0},
    {"007", 0, 7},
    {"10240000", 0, 10240000u},
    {"4294967295", 0, 4294967295u},
    {"4294967296", 0, UINT64_C(4294967296)},
    {"18446744073709551615", 0, UINT64_MAX},
    {"18446744073709551614", 0, UINT64_MAX - 1},
    {"09999999999999999999", 0, UINT64_C(9999999999999999999)},
    {"18446744073709551616", -1, 0},
    {"18446744073709551620", -1, 0},
    {"19999999999999999999", -1, 0},
    {"99999999999999999999", -1, 0},
    {"100000000000000000000", -1, 0},
    {"000000000000000000001", -1, 0},
    {"00000000000000000001", 0, 1},
    {"", -1, 0},
    {"+1", -1, 0},
    {"-1", -1, 0},
    {"1 ", -1, 0},
    {" 1", -1, 0},
    {"1a", -1, 0},
    {"0x10", -1, 0},
    {"1.5", -1, 0},
    {"1e3", -1, 0},
    {"\xd9\xa1", -1, 0},
};

START_TEST(test_u64_table) {
  size_t i;

  for (i = 0; i < COUNT(u64_cases); i++) {
    const u64_case *c = &u64_cases[i];
    char *s = xdup(c->in, strlen(c->in));
    uint64_t v = 0xdeadbeefu;
    int ret = smtpd_i_parse_u64(s, &v);

    ck_assert_msg(ret == c->ret, "u64 case %zu (%s): %d", i, show(c->in), ret);
    if (ret == 0)
      ck_assert_msg(v == c->v, "u64 case %zu: value", i);
    else
      ck_assert_msg(v == 0xdeadbeefu, "u64 case %zu: out written on error", i);
    free(s);
  }
}
END_TEST

/* Round trip of many values through snprintf. */
START_TEST(test_u64_roundtrip) {
  uint32_t st = 99;
  int i;

  for (i = 0; i < 10000; i++) {
    uint64_t x = ((uint64_t)rnd(&st) << 32 | rnd(&st)) >> (rnd(&st) % 64), y;
    char buf[32];

    snprintf(buf, sizeof buf, "%llu", (unsigned long long)x);
    ck_assert_int_eq(smtpd_i_parse_u64(buf, &y), 0);
    ck_assert(x == y);
  }
}
END_TEST

/* ---- xtext ------------------------------------------------------------ */

typedef struct xtext_case {
  const char *in;
  long ret;
  const char *out;
} xtext_case;

static const xtext_case xtext_cases[] = {
    {"", 0, ""},
    {"abc", 3, "abc"},
    {"<>", 2, "<>"},
    {"joe+40example.com", 15, "joe@example.com"},
    {"+41", 1, "A"},
    {"+2B", 1, "+"},
    {"+2b+3D+3d", 3, "+=="},
    {"a+20b", 3, "a b"},
    {"+7E", 1, "~"},
    {"!\"#$%&'()*,-./:;<>?@[\\]^_`{|}~", 30,
     "!\"#$%&'()*,-./:;<>?@[\\]^_`{|}~"},
    {"+00", -1, 0},
    {"+0a", -1, 0},
    {"+0D+0A", -1, 0},
    {"+1F", -1, 0},
    {"+1f", -1, 0},
    {"+7F", -1, 0},
    /* 8-bit octets are refused like controls (RFC 3461 4.4, RFC 4954 5) */
    {"+80", -1, 0},
    {"+C3+A9", -1, 0},
    {"a+ff", -1, 0},
    {"+FF", -1, 0},
    {"+", -1, 0},
    {"a+", -1, 0},
    {"+4", -1, 0},
    {"a+4", -1, 0},
    {"+G1", -1, 0},
    {"+1G", -1, 0},
    {"+ 41", -1, 0},
    {"a b", -1, 0},
    {"a=b", -1, 0},
    {"a\tb", -1, 0},
    {"\x7f", -1, 0},
    {"\xc3\xa9", -1, 0},
    {"a\r\n", -1, 0},
};

START_TEST(test_xtext_table) {
  size_t i;

  for (i = 0; i < COUNT(xtext_cases); i++) {
    const xtext_case *c = &xtext_cases[i];
    char *s = xdup(c->in, strlen(c->in));
    long ret = smtpd_i_xtext_decode(s);
    const char *want = c->out;

    ck_assert_msg(ret == c->ret, "xtext case %zu (%s): %ld want %ld", i,
                  show(c->in), ret, c->ret);
    if (ret >= 0) {
      ck_assert_uint_eq(strlen(want), (size_t)ret);
      ck_assert_msg(memcmp(s, want, (size_t)ret + 1) == 0,
                    "xtext case %zu: got %s", i, show(s));
    }
    free(s);
  }
}
END_TEST

/* xtext_encode - test-side RFC 3461 encoder; lower: lower-case hex. */
static size_t xtext_encode(const unsigned char *in, size_t n, char *out,
                           int lower) {
  size_t o = 0, i;

  for (i = 0; i < n; i++) {
    if (in[i] >= 33 && in[i] <= 126 && in[i] != '+' && in[i] != '=')
      out[o++] = (char)in[i];
    else
      o += (size_t)sprintf(out + o, lower ? "+%02x" : "+%02X", in[i]);
  }
  out[o] = '\0';
  return o;
}

START_TEST(test_xtext_roundtrip) {
  unsigned char raw[256];
  char enc[1024];
  size_t n = 0, len;
  unsigned c;
  uint32_t st = 7;
  int iter;

  /* every octet that may appear decoded (printable US-ASCII and space),
   * in one string */
  for (c = 0x20; c < 0x7f; c++)
    raw[n++] = (unsigned char)c;
  len = xtext_encode(raw, n, enc, 0);
  ck_assert_uint_gt(len, n);
  ck_assert_int_eq(smtpd_i_xtext_decode(enc), (long)n);
  ck_assert(memcmp(enc, raw, n) == 0);
  ck_assert_int_eq(enc[n], '\0');

  /* random strings, lower-case hex too */
  for (iter = 0; iter < 2000; iter++) {
    size_t k, m = rnd(&st) % 40;
    char *s;

    for (k = 0; k < m; k++) {
      do
        raw[k] = (unsigned char)rnd(&st);
      while (raw[k] < 0x20 || raw[k] >= 0x7f);
    }
    len = xtext_encode(raw, m, enc, iter & 1);
    s = xdup(enc, len);
    ck_assert_int_eq(smtpd_i_xtext_decode(s), (long)m);
    ck_assert(memcmp(s, raw, m) == 0);
    free(s);
  }

  /* every control, DEL and every 8-bit octet decodes to an error */
  for (c = 0; c <= 0xff; c++) {
    char b[4];
    if (c >= 0x20 && c < 0x7f)
      continue;
    snprintf(b, sizeof b, "+%02X", c);
    ck_assert_int_eq(smtpd_i_xtext_decode(b), -1);
  }
}
END_TEST

/* ---- base64 ----------------------------------------------------------- */

typedef struct b64_case {
  const char *raw;
  const char *enc;
} b64_case;

static const b64_case b64_vectors[] = { /* RFC 4648 section 10 and more */
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
    {"\0user\0pass", "AHVzZXIAcGFzcw=="},
    {"\xff\xff\xff", "////"},
    {"\xfb\xef\xbe", "++++"},
    {"A", "QQ=="},
    {"AB", "QUI="},
};

static const size_t b64_vector_len[] = {0, 1, 2, 3, 4, 5, 6, 10, 3, 3, 1, 2};

START_TEST(test_base64_vectors) {
  size_t i;

  for (i = 0; i < COUNT(b64_vectors); i++) {
    const b64_case *c = &b64_vectors[i];
    size_t rl = b64_vector_len[i], el = strlen(c->enc);
    char enc[64];
    uint8_t dec[64];

    ck_assert_int_eq(smtpd_i_base64_encode((const uint8_t *)c->raw, rl, enc,
                                           sizeof enc),
                     (long)el);
    ck_assert_str_eq(enc, c->enc);
    ck_assert_int_eq(smtpd_i_base64_decode(c->enc, el, dec, sizeof dec),
                     (long)rl);
    ck_assert(memcmp(dec, c->raw, rl) == 0);
  }
}
END_TEST

static const char *const b64_bad[] = {
    "Q",      "QQ",       "QQ=",      "QUJ",      "QUJDR",    "QUJDRA",
    "QUJDRA=", "Q===",    "====",     "=QQQ",     "Q=QQ",     "QQ=Q",
    "QQ==QUJD", "QUI=QUJD", "QUJD====", "QU I",   " QUI",     "QUI ",
    "QUI\n",  "QUJD\r\n", "QU-_",     "QU.=",     "QUJ*",
    "QR==",   "QUJ=",     "Zm9=",     "Zh==",     "Zm9vYh==", "Zm9vYmF=",
    "QUI==",  "QUJDQ===", "\xc3\xa9QQ",
};

START_TEST(test_base64_invalid) {
  size_t i;

  for (i = 0; i < COUNT(b64_bad); i++) {
    const char *e = b64_bad[i];
    uint8_t out[64];

    ck_assert_msg(smtpd_i_base64_decode(e, strlen(e), out, sizeof out) == -1,
                  "base64 bad %zu (%s) accepted", i, show(e));
  }
  {
    /* NUL octets inside the counted length are not base64 */
    uint8_t out[8];
    ck_assert_int_eq(smtpd_i_base64_decode("QUJD\0\0\0\0", 8, out, 8), -1);
    ck_assert_int_eq(smtpd_i_base64_decode("QUI=\0\0\0\0", 8, out, 8), -1);
    ck_assert_int_eq(smtpd_i_base64_decode("QUJDQQ\0=", 8, out, 8), -1);
  }
}
END_TEST

/* Each of the 256 octets in each position of a 4-char group: accepted
 * exactly when it is in the alphabet. */
START_TEST(test_base64_alphabet) {
  static const char alpha[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  unsigned c, pos, accepted = 0;

  for (pos = 0; pos < 8; pos++) {
    for (c = 0; c < 256; c++) {
      char in[8];
      uint8_t out[8];
      int in_alpha = c != 0 && strchr(alpha, (int)c) != NULL;
      long r;

      memcpy(in, "QUJDRUZH", 8);
      in[pos] = (char)c;
      r = smtpd_i_base64_decode(in, 8, out, sizeof out);
      ck_assert_msg((r == 6) == in_alpha, "pos %u octet %u: %ld", pos, c, r);
      accepted += r == 6;
    }
  }
  ck_assert_uint_eq(accepted, 8 * 64);
}
END_TEST

/* Canonical padding: of "QQ?=" only 16 last chars (low 2 bits zero) and
 * of "Q?==" only 4 (low 4 bits zero) are accepted. */
START_TEST(test_base64_canonical) {
  static const char alpha[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  unsigned i, one = 0, two = 0;

  for (i = 0; i < 64; i++) {
    char a[5] = "QQ?=", b[5] = "Q?==";
    uint8_t out[4];
    long r;

    a[2] = alpha[i];
    b[1] = alpha[i];
    r = smtpd_i_base64_decode(a, 4, out, sizeof out);
    ck_assert(r == ((i & 3) == 0 ? 2 : -1));
    one += r == 2;
    r = smtpd_i_base64_decode(b, 4, out, sizeof out);
    ck_assert(r == ((i & 15) == 0 ? 1 : -1));
    two += r == 1;
  }
  ck_assert_uint_eq(one, 16);
  ck_assert_uint_eq(two, 4);
}
END_TEST

/* Round trips over lengths 0..64 with pseudo-random bytes: encode,
 * decode into a separate buffer, decode in place, cap exact and one
 * short (nothing written past cap), encode cap exact and one short. */
START_TEST(test_base64_roundtrip) {
  uint32_t st = 0xc0ffeeu;
  size_t len;

  for (len = 0; len <= 64; len++) {
    int rep;
    for (rep = 0; rep < 8; rep++) {
      uint8_t raw[64], dec[64 + 8];
      char enc[96], *inplace;
      size_t i, el = (len + 2) / 3 * 4;
      long r;

      for (i = 0; i < len; i++)
        raw[i] = (uint8_t)(rep == 0 ? 0xff : rep == 1 ? 0 : rnd(&st));

      /* encode: cap one short fails and writes nothing */
      memset(enc, '#', sizeof enc);
      ck_assert_int_eq(smtpd_i_base64_encode(raw, len, enc, el), -1);
      for (i = 0; i < sizeof enc; i++)
        ck_assert_int_eq(enc[i], '#');
      ck_assert_int_eq(smtpd_i_base64_encode(raw, len, enc, el + 1), (long)el);
      ck_assert_uint_eq(strlen(enc), el);
      ck_assert_int_eq(enc[el + 1], '#');

      /* decode, exact cap; guard bytes after untouched */
      memset(dec, 0xa5, sizeof dec);
      r = smtpd_i_base64_decode(enc, el, dec, len);
      ck_assert_int_eq(r, (long)len);
      ck_assert(memcmp(dec, raw, len) == 0);
      for (i = len; i < sizeof dec; i++)
        ck_assert_uint_eq(dec[i], 0xa5);

      /* one short: refused, nothing written */
      if (len > 0) {
        memset(dec, 0xa5, sizeof dec);
        ck_assert_int_eq(smtpd_i_base64_decode(enc, el, dec, len - 1), -1);
        for (i = 0; i < sizeof dec; i++)
          ck_assert_uint_eq(dec[i], 0xa5);
      }

      /* in place, in an exact-size heap buffer */
      inplace = xdup(enc, el);
      r = smtpd_i_base64_decode(inplace, el, (uint8_t *)inplace, el);
      ck_assert_int_eq(r, (long)len);
      ck_assert(memcmp(inplace, raw, len) == 0);
      free(inplace);

      /* a truncated encoding is always rejected */
      if (el > 0)
        for (i = 1; i < 4 && i <= el; i++)
          ck_assert_int_eq(smtpd_i_base64_decode(enc, el - i, dec, sizeof dec),
                           -1);
    }
  }
}
END_TEST

START_TEST(test_base64_large) {
  static uint8_t raw[3000], dec[3000];
  static char enc[4100];
  uint32_t st = 5;
  size_t i;

  for (i = 0; i < sizeof raw; i++)
    raw[i] = (uint8_t)rnd(&st);
  ck_assert_int_eq(smtpd_i_base64_encode(raw, sizeof raw, enc, sizeof enc),
                   4000);
  ck_assert_int_eq(smtpd_i_base64_decode(enc, 4000, dec, sizeof dec), 3000);
  ck_assert(memcmp(raw, dec, sizeof raw) == 0);
  ck_assert_int_eq(smtpd_i_base64_decode(enc, 4000, (uint8_t *)enc, 4000),
                   3000);
  ck_assert(memcmp(raw, enc, sizeof raw) == 0);
  /* empty input decodes to 0 even with cap 0 */
  ck_assert_int_eq(smtpd_i_base64_decode("", 0, dec, 0), 0);
  ck_assert_int_eq(smtpd_i_base64_encode(raw, 0, enc, 1), 0);
  ck_assert_str_eq(enc, "");
  ck_assert_int_eq(smtpd_i_base64_encode(raw, 0, enc, 0), -1);
}
END_TEST

/* ---- UTF-8 ------------------------------------------------------------ */

typedef struct utf8_case {
  const char *s;
  size_t len; /* 0: strlen */
  int ok;
} utf8_case;

static const utf8_case utf8_cases[] = {
    {"", 0, 1},
    {"hello", 0, 1},
    {"a\0b", 3, 1},
    {"\x7f", 0, 1},
    {"\xc2\x80", 0, 1},
    {"\xc3\xa9", 0, 1},
    {"\xdf\xbf", 0, 1},
    {"\xe0\xa0\x80", 0, 1},
    {"\xe2\x82\xac", 0, 1},
    {"\xed\x9f\xbf", 0, 1},
    {"\xee\x80\x80", 0, 1},
    {"\xef\xbf\xbf", 0, 1},
    {"\xf0\x90\x80\x80", 0, 1},
    {"\xf0\x9f\x98\x80", 0, 1},
    {"\xf3\xbf\xbf\xbf", 0, 1},
    {"\xf4\x8f\xbf\xbf", 0, 1},
    {"a\xc3\xa9z\xe2\x82\xac\xf0\x9f\x98\x80!", 0, 1},
    {"\xc0\x80", 0, 0},
    {"\xc0\xaf", 0, 0},
    {"\xc1\xbf", 0, 0},
    {"\xe0\x80\x80", 0, 0},
    {"\xe0\x9f\xbf", 0, 0},
    {"\xed\xa0\x80", 0, 0},
    {"\xed\xbf\xbf", 0, 0},
    {"\xed\xa0\x80\xed\xb0\x80", 0, 0},
    {"\xf0\x80\x80\x80", 0, 0},
    {"\xf0\x8f\xbf\xbf", 0, 0},
    {"\xf4\x90\x80\x80", 0, 0},
    {"\xf5\x80\x80\x80", 0, 0},
    {"\xf7\xbf\xbf\xbf", 0, 0},
    {"\xf8\x88\x80\x80\x80", 0, 0},
    {"\xfc\x84\x80\x80\x80\x80", 0, 0},
    {"\xfe", 0, 0},
    {"\xff", 0, 0},
    {"\x80", 0, 0},
    {"\xbf", 0, 0},
    {"a\x80", 0, 0},
    {"\xc3\xa9\x80", 0, 0},
    {"\xc3", 0, 0},
    {"\xe2\x82", 0, 0},
    {"\xf0\x9f\x98", 0, 0},
    {"\xc3\xa9\xc3", 0, 0},
    {"\xc3\x28", 0, 0},
    {"\xc3\xc3\xa9", 0, 0},
    {"\xe2\x28\xa1", 0, 0},
    {"\xe2\x82\x28", 0, 0},
    {"\xf0\x28\x8c\xbc", 0, 0},
    {"\xf0\x90\x28\xbc", 0, 0},
    {"\xf0\x90\x8c\x28", 0, 0},
    {"\xc3\xa9", 1, 0},          /* len cuts the sequence */
    {"\xe2\x82\xac", 2, 0},
    {"\xf0\x9f\x98\x80", 3, 0},
    {"\xc3\x00", 2, 0},
};

START_TEST(test_utf8_table) {
  size_t i;

  for (i = 0; i < COUNT(utf8_cases); i++) {
    const utf8_case *c = &utf8_cases[i];
    size_t n = c->len ? c->len : strlen(c->s);
    uint8_t *b = malloc(n ? n : 1); /* exact size: no read past len */

    ck_assert_ptr_nonnull(b);
    memcpy(b, c->s, n);
    ck_assert_msg(smtpd_i_utf8_valid(b, n) == c->ok, "utf8 case %zu (%s)", i,
                  show(c->s));
    free(b);
  }
}
END_TEST

/* ref_utf8 - independent reference: decode with the generic bit
 * patterns, then reject overlongs, surrogates and > U+10FFFF. */
static int ref_utf8(const uint8_t *s, size_t n) {
  size_t i = 0;

  while (i < n) {
    uint32_t cp, min;
    size_t k, need;
    uint8_t c = s[i];

    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      need = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      need = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      need = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    if (i + need >= n) /* truncated */
      return 0;
    for (k = 1; k <= need; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return 0;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += need + 1;
  }
  return 1;
}

/* All 1- and 2-octet strings, all 3-octet strings with a lead byte
 * >= 0xc0, and 4-octet strings over lead F0..F7 with every second octet
 * and a few third/fourth octets, compared with the reference. */
START_TEST(test_utf8_exhaustive) {
  static const uint8_t tails[] = {0x00, 0x41, 0x7f, 0x80, 0x9f,
                                  0xa0, 0xbf, 0xc0, 0xe0, 0xff};
  uint8_t b[4];
  unsigned x, y, z, w;
  unsigned long valid3 = 0, checked = 0, mismatches = 0, first = 0;

  /* plain comparisons in the loops (a Check assertion per input would
   * dominate the run time); one assertion at the end names the first
   * mismatch as bytes packed into an integer */
#define CMP(n)                                                               \
  do {                                                                       \
    int v_ = smtpd_i_utf8_valid(b, n);                                       \
    checked++;                                                               \
    if (v_ != ref_utf8(b, n) && mismatches++ == 0)                           \
      first = (unsigned long)b[0] << 24 | (unsigned long)b[1] << 16 |        \
              (unsigned long)b[2] << 8 | b[3];                               \
    if ((n) == 3 && v_ && b[0] >= 0xe0 && b[0] < 0xf0)                       \
      valid3++;                                                              \
  } while (0)

  memset(b, 0, sizeof b);
  for (x = 0; x < 256; x++) {
    b[0] = (uint8_t)x;
    CMP(1);
    for (y = 0; y < 256; y++) {
      b[1] = (uint8_t)y;
      CMP(2);
    }
  }
  for (x = 0xc0; x < 256; x++)
    for (y = 0; y < 256; y++)
      for (z = 0; z < 256; z++) {
        b[0] = (uint8_t)x, b[1] = (uint8_t)y, b[2] = (uint8_t)z;
        CMP(3);
      }
  for (x = 0xf0; x < 0xf8; x++)
    for (y = 0; y < 256; y++)
      for (z = 0; z < COUNT(tails); z++)
        for (w = 0; w < COUNT(tails); w++) {
          b[0] = (uint8_t)x, b[1] = (uint8_t)y;
          b[2] = tails[z], b[3] = tails[w];
          CMP(4);
        }
#undef CMP
  ck_assert_msg(mismatches == 0, "%lu mismatches, first %08lx", mismatches,
                first);
  ck_assert_uint_eq(checked, 256 + 65536 + 64ul * 65536 + 8ul * 256 * 100);
  /* three-octet scalars: U+0800..U+FFFF minus 2048 surrogates */
  ck_assert_uint_eq(valid3, 0x10000 - 0x800 - 0x800);
}
END_TEST

/* ---- sanitize --------------------------------------------------------- */

typedef struct san_case {
  const char *s;
  size_t len, cap;
  const char *out;
} san_case;

static const san_case san_cases[] = {
    {"abc", 3, 10, "abc"},
    {"abc", 3, 4, "abc"},
    {"abcdef", 6, 4, "abc"},
    {"abc", 3, 1, ""},
    {"abc", 0, 10, ""},
    {"abc", 2, 10, "ab"},
    {"a\r\nb", 4, 10, "a??b"},
    {"a\tb\x7f", 4, 10, "a?b?"},
    {"\xc3\xa9", 2, 10, "??"},
    {"a\0b", 3, 10, "a?b"},
    {" ~", 2, 10, " ~"},
    {"\x1f\x20\x7e\x7f\x80\xff", 6, 10, "? ~???"},
    {"<script>", 8, 10, "<script>"},
};

START_TEST(test_sanitize) {
  size_t i;

  for (i = 0; i < COUNT(san_cases); i++) {
    const san_case *c = &san_cases[i];
    char *dst = malloc(c->cap); /* exact: no write past cap */
    size_t r;

    ck_assert_ptr_nonnull(dst);
    r = smtpd_i_sanitize(dst, c->cap, c->s, c->len);
    ck_assert_msg(r == strlen(c->out), "sanitize %zu: %zu", i, r);
    ck_assert_msg(strcmp(dst, c->out) == 0, "sanitize %zu: %s", i, show(dst));
    free(dst);
  }
  /* all 256 octets */
  {
    char src[256], dst[300];
    unsigned k;
    for (k = 0; k < 256; k++)
      src[k] = (char)k;
    ck_assert_uint_eq(smtpd_i_sanitize(dst, sizeof dst, src, 256), 256);
    for (k = 0; k < 256; k++)
      ck_assert_int_eq(dst[k], (k >= 0x20 && k < 0x7f) ? (int)k : '?');
    ck_assert_int_eq(dst[256], '\0');
  }
}
END_TEST

/* ---- suite ------------------------------------------------------------ */

static Suite *parse_suite(void) {
  Suite *s = suite_create("parse");
  TCase *tc = tcase_create("path");

  tcase_add_test(tc, test_path_table);
  tcase_add_test(tc, test_path_in_place);
  tcase_add_test(tc, test_path_lengths);
  tcase_add_test(tc, test_path_length_sweep);
  tcase_add_test(tc, test_path_syntax_before_length);
  tcase_add_test(tc, test_path_hostile);
  tcase_add_test(tc, test_path_fuzz);
  tcase_add_test(tc, test_path_differential);
  suite_add_tcase(s, tc);

  tc = tcase_create("params");
  tcase_add_test(tc, test_params_table);
  tcase_add_test(tc, test_params_many);
  tcase_add_test(tc, test_u64_table);
  tcase_add_test(tc, test_u64_roundtrip);
  suite_add_tcase(s, tc);

  tc = tcase_create("encodings");
  tcase_add_test(tc, test_xtext_table);
  tcase_add_test(tc, test_xtext_roundtrip);
  tcase_add_test(tc, test_base64_vectors);
  tcase_add_test(tc, test_base64_invalid);
  tcase_add_test(tc, test_base64_alphabet);
  tcase_add_test(tc, test_base64_canonical);
  tcase_add_test(tc, test_base64_roundtrip);
  tcase_add_test(tc, test_base64_large);
  tcase_add_test(tc, test_utf8_table);
  tcase_add_test(tc, test_utf8_exhaustive);
  tcase_add_test(tc, test_sanitize);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(parse_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
