/*
 * parse.c - allocation-free parsers for SMTP command arguments.
 *
 * Everything here is table driven (static const tables built at compile
 * time from the RFC character classes), allocates nothing, keeps no
 * mutable state and never reads past the terminating NUL of its input or
 * writes past the caller's buffer.
 *
 *   smtpd_i_parse_path      MAIL FROM / RCPT TO path (RFC 5321 4.1.2)
 *   smtpd_i_parse_params    ESMTP parameters (RFC 5321 4.1.2 esmtp-param)
 *   smtpd_i_parse_u64       decimal number without overflow (SIZE=)
 *   smtpd_i_xtext_decode    RFC 3461 4 xtext, in place (AUTH=)
 *   smtpd_i_base64_decode   RFC 4648 base64, strict (AUTH responses)
 *   smtpd_i_base64_encode   RFC 4648 base64 (334 challenges)
 *   smtpd_i_utf8_valid      well-formed UTF-8 (RFC 3629), no overlongs
 *   smtpd_i_sanitize        printable-ASCII copy for logs/notices
 */
#include "parse.h"

#include <limits.h>
#include <string.h>

/* ---- character classes ------------------------------------------------ */

/*
 * One 256-entry table of class bits, computed at compile time by CLS()
 * from the RFC ranges (so the table is the grammar, not a transcription
 * of it), one lookup per octet on the hot path. Character constants are
 * used as octet values: the tables assume an ASCII execution set.
 */
_Static_assert('A' == 65 && 'a' == 97 && '0' == 48 && '~' == 126,
               "ASCII execution character set");

#define C_ATEXT 0x0001u  /* RFC 5321 atext */
#define C_LETDIG 0x0002u /* ALPHA / DIGIT */
#define C_LDH 0x0004u    /* ALPHA / DIGIT / "-" */
#define C_QTEXT 0x0008u  /* qtextSMTP: %d32-33 / %d35-91 / %d93-126 */
#define C_DCONT 0x0010u  /* dcontent: %d33-90 / %d94-126 */
#define C_XCHAR 0x0020u  /* xtext xchar: %d33-126 except "+" and "=" */
#define C_VALUE 0x0040u  /* esmtp-value char: %d33-126 except "=" */
#define C_HEX 0x0080u    /* HEXDIG, either case */
#define C_DIGIT 0x0100u  /* DIGIT */
#define C_PRINT 0x0200u  /* %d32-126 (also quoted-pairSMTP's 2nd octet) */
#define C_LOWER 0x0400u  /* a-z */

#define IN(c, a, b) ((c) >= (a) && (c) <= (b))
#define IS_ALPHA(c) (IN(c, 'A', 'Z') || IN(c, 'a', 'z'))
#define IS_DIGIT(c) IN(c, '0', '9')
#define IS_ASPECIAL(c)                                                       \
  ((c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' ||     \
   (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '/' ||    \
   (c) == '=' || (c) == '?' || (c) == '^' || (c) == '_' || (c) == '`' ||     \
   (c) == '{' || (c) == '|' || (c) == '}' || (c) == '~')

#define CLS(c)                                                               \
  (((IS_ALPHA(c) || IS_DIGIT(c) || IS_ASPECIAL(c)) ? C_ATEXT : 0u) |         \
   ((IS_ALPHA(c) || IS_DIGIT(c)) ? C_LETDIG : 0u) |                          \
   ((IS_ALPHA(c) || IS_DIGIT(c) || (c) == '-') ? C_LDH : 0u) |               \
   ((IN(c, 32, 33) || IN(c, 35, 91) || IN(c, 93, 126)) ? C_QTEXT : 0u) |     \
   ((IN(c, 33, 90) || IN(c, 94, 126)) ? C_DCONT : 0u) |                      \
   ((IN(c, 33, 126) && (c) != '+' && (c) != '=') ? C_XCHAR : 0u) |           \
   ((IN(c, 33, 126) && (c) != '=') ? C_VALUE : 0u) |                         \
   ((IS_DIGIT(c) || IN(c, 'A', 'F') || IN(c, 'a', 'f')) ? C_HEX : 0u) |      \
   (IS_DIGIT(c) ? C_DIGIT : 0u) | (IN(c, 32, 126) ? C_PRINT : 0u) |          \
   (IN(c, 'a', 'z') ? C_LOWER : 0u))

#define R4(f, b) f(b), f((b) + 1), f((b) + 2), f((b) + 3)
#define R16(f, b) R4(f, b), R4(f, (b) + 4), R4(f, (b) + 8), R4(f, (b) + 12)
#define R64(f, b) R16(f, b), R16(f, (b) + 16), R16(f, (b) + 32), R16(f, (b) + 48)
#define R256(f) R64(f, 0), R64(f, 64), R64(f, 128), R64(f, 192)

#define CLS16(c) ((uint16_t)CLS(c))
static const uint16_t cls[256] = {R256(CLS16)};

#define IS(c, k) ((cls[(unsigned char)(c)] & (k)) != 0)

/* Base64 alphabet value, 0xff for anything else (including '='). */
#define B64V(c)                                                              \
  (IN(c, 'A', 'Z')   ? (c) - 'A'                                            \
   : IN(c, 'a', 'z') ? (c) - 'a' + 26                                       \
   : IN(c, '0', '9') ? (c) - '0' + 52                                       \
   : (c) == '+'      ? 62                                                   \
   : (c) == '/'      ? 63                                                   \
                     : 0xff)

#define B64V8(c) ((uint8_t)B64V(c)) /* unselected arms may be out of range */
static const uint8_t b64val[256] = {R256(B64V8)};

static const char b64chars[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* hexval - value of a character already known to be HEXDIG. */
static inline unsigned hexval(unsigned char c) {
  return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* ---- UTF-8 ------------------------------------------------------------ */

/*
 * utf8_seq - length (2..4) of the well-formed non-ASCII UTF-8 sequence at
 * p, of which at most avail octets may be read, or 0. Octets are examined
 * in order and each must match before the next is read, so with avail
 * SIZE_MAX it never reads past a NUL (a NUL is never a continuation).
 */
static inline size_t utf8_seq(const unsigned char *p, size_t avail) {
  unsigned c = p[0];
  unsigned lo = 0x80, hi = 0xbf;

  if (c < 0xc2) /* ASCII, stray continuation, overlong C0/C1 */
    return 0;
  if (c < 0xe0)
    return (avail >= 2 && IN(p[1], 0x80, 0xbf)) ? 2 : 0;
  if (c < 0xf0) {
    if (c == 0xe0)
      lo = 0xa0; /* overlong */
    else if (c == 0xed)
      hi = 0x9f; /* surrogates */
    return (avail >= 3 && IN(p[1], lo, hi) && IN(p[2], 0x80, 0xbf)) ? 3 : 0;
  }
  if (c < 0xf5) {
    if (c == 0xf0)
      lo = 0x90; /* overlong */
    else if (c == 0xf4)
      hi = 0x8f; /* above U+10FFFF */
    return (avail >= 4 && IN(p[1], lo, hi) && IN(p[2], 0x80, 0xbf) &&
            IN(p[3], 0x80, 0xbf))
               ? 4
               : 0;
  }
  return 0;
}

/* smtpd_i_utf8_valid - 1 when s[0..len) is well-formed UTF-8. */
int smtpd_i_utf8_valid(const uint8_t *s, size_t len) {
  size_t i = 0;

  while (i < len) {
    if (s[i] < 0x80) {
      i++;
    } else {
      size_t n = utf8_seq(s + i, len - i);
      if (n == 0)
        return 0;
      i += n;
    }
  }
  return 1;
}

/* ---- paths ------------------------------------------------------------ */

/* u8len - UTF-8 sequence length at p when allowed by flags, else 0. */
static inline size_t u8len(const char *p, unsigned flags) {
  if (!(flags & SMTPD_I_PATH_UTF8))
    return 0;
  return utf8_seq((const unsigned char *)p, SIZE_MAX);
}

/*
 * scan_domain - Domain = sub-domain *("." sub-domain), sub-domain =
 * Let-dig [Ldh-str] (or a U-label with SMTPD_I_PATH_UTF8: non-ASCII
 * UTF-8 sequences count as letters). Returns the end, or NULL.
 */
static const char *scan_domain(const char *p, unsigned flags) {
  for (;;) {
    size_t n;

    /* first octet: Let-dig or UTF-8 */
    if (IS(*p, C_LETDIG))
      p++;
    else if ((n = u8len(p, flags)) != 0)
      p += n;
    else
      return NULL;
    /* runs of LDH octets, between them UTF-8 sequences (only an octet
     * >= 0x80 can start one) */
    for (;;) {
      while (IS(*p, C_LDH))
        p++;
      if (!((unsigned char)*p & 0x80u) || (n = u8len(p, flags)) == 0)
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

/* scan_snum - Snum (1*3DIGIT, value 0..255); end or NULL. */
static const char *scan_snum(const char *p) {
  unsigned v = 0;
  int i;

  for (i = 0; i < 3 && IS(p[i], C_DIGIT); i++)
    v = v * 10u + (unsigned)(p[i] - '0');
  if (i == 0 || v > 255 || IS(p[i], C_DIGIT))
    return NULL;
  return p + i;
}

/* scan_ipv4 - IPv4-address-literal: Snum 3("." Snum); end or NULL. */
static const char *scan_ipv4(const char *p) {
  int i;

  for (i = 0; i < 4; i++) {
    if (i > 0) {
      if (*p != '.')
        return NULL;
      p++;
    }
    if ((p = scan_snum(p)) == NULL)
      return NULL;
  }
  return p;
}

/*
 * scan_ipv6 - IPv6-addr of RFC 5321 4.1.3 (after "IPv6:"); end or NULL.
 * Group counts follow RFC 5321 literally: 8 groups without "::", at most
 * 6 explicit groups with "::" (which stands for at least two zero
 * groups); with an IPv4 tail 6 and at most 4. At most one "::".
 */
static const char *scan_ipv6(const char *p) {
  unsigned groups = 0;
  int dcolon = 0, v4 = 0;

  if (p[0] == ':') {
    if (p[1] != ':')
      return NULL;
    dcolon = 1;
    p += 2;
    if (!IS(*p, C_HEX)) /* "::" alone (or "::" + junk, caught below) */
      goto counted;
  }
  for (;;) {
    const char *q = p;
    int i;

    /* a run of up to 3 digits followed by '.' starts an IPv4 tail */
    while (q - p < 3 && IS(*q, C_DIGIT))
      q++;
    if (q != p && *q == '.') { /* (count checks reject a bare IPv4) */
      if ((p = scan_ipv4(p)) == NULL)
        return NULL;
      v4 = 1;
      break;
    }
    for (i = 0; i < 4 && IS(p[i], C_HEX); i++)
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
      if (!IS(*p, C_HEX))
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

/* is_ipv6_tag - the tag at p is "IPv6" (any case) followed by ':'. */
static int is_ipv6_tag(const char *p) {
  return (p[0] | 0x20) == 'i' && (p[1] | 0x20) == 'p' &&
         (p[2] | 0x20) == 'v' && p[3] == '6' && p[4] == ':';
}

/*
 * scan_literal - address-literal, p at '['. IPv4 first; a tag "IPv6"
 * (case-insensitive, as ABNF strings are) must carry a valid IPv6-addr;
 * any other Standardized-tag (Ldh-str) ":" 1*dcontent is a general
 * literal. Returns the end (after ']') or NULL.
 */
static const char *scan_literal(const char *p) {
  const char *q;

  p++;
  if ((q = scan_ipv4(p)) != NULL && *q == ']')
    return q + 1;
  if (is_ipv6_tag(p)) {
    if ((q = scan_ipv6(p + 5)) != NULL && *q == ']')
      return q + 1;
    return NULL;
  }
  /* Standardized-tag = Ldh-str: LDH octets, the last one a Let-dig */
  for (q = p; IS(*q, C_LDH); q++)
    ;
  if (q == p || q[-1] == '-' || *q != ':')
    return NULL;
  p = ++q;
  while (IS(*q, C_DCONT))
    q++;
  if (q == p || *q != ']')
    return NULL;
  return q + 1;
}

/* scan_local - Dot-string or Quoted-string local part; end or NULL. */
static const char *scan_local(const char *p, unsigned flags) {
  size_t n;

  if (*p == '"') {
    p++;
    for (;;) {
      if (*p == '"')
        return p + 1;
      if (*p == '\\') {
        if (!IS(p[1], C_PRINT))
          return NULL; /* includes a backslash before the NUL */
        p += 2;
      } else if (IS(*p, C_QTEXT)) {
        p++;
      } else if ((n = u8len(p, flags)) != 0) {
        p += n;
      } else {
        return NULL; /* controls, unterminated string */
      }
    }
  }
  for (;;) {
    const char *atom = p;

    for (;;) {
      while (IS(*p, C_ATEXT))
        p++;
      if (!((unsigned char)*p & 0x80u) || (n = u8len(p, flags)) == 0)
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

/* is_postmaster - "Postmaster>" in any case at p. */
static int is_postmaster(const char *p) {
  static const char pm[] = "postmaster";
  size_t i;

  for (i = 0; i < sizeof pm - 1; i++)
    if ((p[i] | 0x20) != pm[i]) /* stops at the NUL: (0 | 0x20) is ' ' */
      return 0;
  return p[i] == '>';
}

/*
 * parse_path_grammar - the exact RFC 5321 path grammar behind
 * smtpd_i_parse_path (see parse.h), octet by octet; the reference that
 * the fast path below must agree with.
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
/* kept out of line so that the fast path (smtpd_i_parse_path) keeps few
 * registers live (another compiler may inline it: same behaviour) */
#if defined(__GNUC__) || defined(__clang__)
#define PATH_NOINLINE __attribute__((noinline))
#else
#define PATH_NOINLINE
#endif
PATH_NOINLINE
static smtpd_i_path_status parse_path_grammar(char *s, unsigned flags,
                                              char *scratch,
                                              smtpd_i_path *out,
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

  if ((flags & SMTPD_I_PATH_ALLOW_POSTMASTER) && is_postmaster(p)) {
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
      if ((p = scan_domain(p + 1, flags)) == NULL)
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
  if ((local_end = scan_local(addr, flags)) == NULL || *local_end != '@')
    return SMTPD_I_PATH_SYNTAX;
  dom = local_end + 1;
  if (*dom == '[')
    end = scan_literal(dom);
  else
    end = scan_domain(dom, flags);
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

/*
 * skip_class - the first octet at or after p outside class k. Four octets
 * a round (one add for four); never reads past that octet, so never past
 * a NUL (no class holds it).
 */
static inline const char *skip_class(const char *p, unsigned k) {
  for (;;) {
    if (!IS(p[0], k))
      return p;
    if (!IS(p[1], k))
      return p + 1;
    if (!IS(p[2], k))
      return p + 2;
    if (!IS(p[3], k))
      return p + 3;
    p += 4;
  }
}

/*
 * AT - the octet at p, read again from memory. The octet where a
 * skip_class stopped is tested again by the caller; without the fresh
 * read compilers keep every octet loaded by the scan in a second
 * register just for that test (one more instruction per octet).
 */
#define AT(p) (*(const volatile char *)(p))

/*
 * copy_local - scratch[0..n) = src[0..n) and a NUL, for the local part of
 * a path the fast path has scanned: src[0..avail) are its octets up to
 * the '>', so n + 3 <= avail ('@', a domain octet, '>') and n <= 64.
 * Fixed-size copies (plain loads and stores, no libc call) that read
 * nothing outside src[0..avail) and write nothing past scratch[64]
 * (octets after the local part are copied too when avail < 16: the NUL
 * written after n ends the local part).
 */
static inline void copy_local(char *scratch, const char *src, size_t n,
                              size_t avail) {
  if (avail >= 16) {
    /* [0,16) and [n-16,n); then [16,32) and [n-32,n-16); then [32,48):
     * together all of [0,n) for n <= 64, nothing outside it read */
    memcpy(scratch, src, 16);
    if (n > 16) {
      memcpy(scratch + n - 16, src + n - 16, 16);
      if (n > 32) {
        memcpy(scratch + 16, src + 16, 16);
        memcpy(scratch + n - 32, src + n - 32, 16);
        if (n > 48)
          memcpy(scratch + 32, src + 32, 16);
      }
    }
  } else if (avail >= 8) { /* all of src[0..avail), 8..15 octets */
    memcpy(scratch, src, 8);
    memcpy(scratch + avail - 8, src + avail - 8, 8);
  } else { /* all of src[0..avail), 4..7 octets */
    memcpy(scratch, src, 4);
    memcpy(scratch + avail - 4, src + avail - 4, 4);
  }
  scratch[n] = '\0';
}

/*
 * smtpd_i_parse_path - see parse.h.
 *
 * Fast path for the common shape "<dot-atom@ldh.labels>": ASCII atext
 * atoms separated by single dots, '@', LDH labels (a Let-dig first, no
 * '-' last) separated by single dots, '>', within every length limit.
 * Anything else (null path, Postmaster, source route, quoted local part,
 * address literal, UTF-8, any malformation, any limit exceeded) stops it
 * at the first octet it does not expect and hands the whole path to
 * parse_path_grammar, which decides. What the fast path accepts, the
 * grammar accepts with the same outputs: it takes the same octets with
 * the same classes and stops where the grammar would (an octet >= 0x80 is
 * never '.', '@' or '>', so UTF-8 always goes to the grammar); is_postmaster
 * needs '>' right after "postmaster", the fast path needs '@'. With
 * llen <= 64 and the whole path <= 256 octets the domain is <= 254, so
 * two comparisons cover the three limits. tests/check_parse.c compares
 * both against a copy of the grammar on generated paths.
 */
smtpd_i_path_status smtpd_i_parse_path(char *s, unsigned flags,
                                       char *scratch, smtpd_i_path *out,
                                       char **rest) {
  char *p = s + 1, *dom, c;

  if (s[0] != '<')
    return SMTPD_I_PATH_SYNTAX;
  /* local part: atext atoms, single dots between */
  for (;;) {
    if (!IS(*p, C_ATEXT))
      goto grammar;
    p = s + (skip_class(p + 1, C_ATEXT) - s);
    if ((c = AT(p)) != '.')
      break;
    p++;
  }
  /* the local part is s[1..p), at most 64 octets */
  if (c != '@' || (size_t)(p - s) > SMTPD_I_MAX_LOCAL + 1)
    goto grammar;
  dom = ++p;
  /* domain: labels of a Let-dig, then Let-digs (the common case), or
   * LDH octets from the first '-' on, not ending in '-'; single dots */
  for (;;) {
    if (!IS(*p, C_LETDIG))
      goto grammar;
    p = s + (skip_class(p + 1, C_LETDIG) - s);
    if ((c = AT(p)) == '-') {
      p = s + (skip_class(p + 1, C_LDH) - s);
      if (AT(p - 1) == '-')
        goto grammar;
      c = AT(p);
    }
    if (c != '.')
      break;
    p++;
  }
  /* '<' to '>' inclusive, (p - s) + 1 octets, at most 256 */
  if (c != '>' || (size_t)(p - s) > SMTPD_I_MAX_PATH - 1)
    goto grammar;

  copy_local(scratch, s + 1, (size_t)(dom - s) - 2, (size_t)(p - s));
  *p = '\0';
  out->address = s + 1;
  out->address_len = (size_t)(p - s) - 1;
  out->local = scratch;
  out->domain = dom;
  *rest = p + 1;
  return SMTPD_I_PATH_OK;

grammar:
  return parse_path_grammar(s, flags, scratch, out, rest);
}

/* ---- ESMTP parameters ------------------------------------------------- */

/* smtpd_i_parse_params - see parse.h. A syntax error anywhere wins over
 * "too many" (-1 before -2); entries past max are checked, not stored. */
int smtpd_i_parse_params(char *s, smtpd_param *out, size_t max, int utf8) {
  size_t n = 0;

  for (;;) {
    char *key, *val = NULL;

    while (*s == ' ')
      s++;
    if (*s == '\0')
      break;
    key = s;
    if (!IS(*s, C_LETDIG))
      return -1;
    do {
      if (IS(*s, C_LOWER))
        *s = (char)(*s - ('a' - 'A'));
      s++;
    } while (IS(*s, C_LDH));
    if (*s == '=') {
      *s++ = '\0';
      val = s;
      for (;;) {
        size_t k;

        while (IS(*s, C_VALUE))
          s++;
        if (utf8 && ((unsigned char)*s & 0x80u) &&
            (k = utf8_seq((unsigned char *)s, SIZE_MAX)) != 0)
          s += k;
        else
          break;
      }
      if (s == val)
        return -1; /* esmtp-value is 1*(...) */
    }
    if (*s == ' ')
      *s++ = '\0';
    else if (*s != '\0')
      return -1;
    if (n < max) {
      out[n].keyword = key;
      out[n].value = val;
    }
    if (n < (size_t)INT_MAX)
      n++;
  }
  if (n > max)
    return -2;
  return (int)n;
}

/* ---- numbers ---------------------------------------------------------- */

/* smtpd_i_parse_u64 - see parse.h. */
int smtpd_i_parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  size_t i;

  /* up to 19 digits cannot overflow; only the 20th needs the check */
  for (i = 0; s[i] != '\0'; i++) {
    unsigned d = (unsigned)(unsigned char)s[i] - '0';
    if (d > 9 || i >= 20)
      return -1;
    if (i == 19 && v > (UINT64_MAX - d) / 10u)
      return -1;
    v = v * 10u + d;
  }
  if (i == 0)
    return -1;
  *out = v;
  return 0;
}

/* ---- xtext ------------------------------------------------------------ */

/* smtpd_i_xtext_decode - see parse.h. On -1, s holds unspecified bytes
 * (still NUL-terminated within its original length). */
long smtpd_i_xtext_decode(char *s) {
  const char *r = s;
  char *w = s;

  while (*r != '\0') {
    if (*r == '+') {
      unsigned v;

      if (!IS(r[1], C_HEX) || !IS(r[2], C_HEX))
        return -1;
      v = hexval((unsigned char)r[1]) << 4 | hexval((unsigned char)r[2]);
      if (v < 0x20 || v >= 0x7f) /* controls, DEL, 8-bit: not text */
        return -1;
      *w++ = (char)(unsigned char)v;
      r += 3;
    } else if (IS(*r, C_XCHAR)) {
      *w++ = *r++;
    } else {
      return -1;
    }
  }
  *w = '\0';
  return (long)(w - s);
}

/* ---- base64 ----------------------------------------------------------- */

/*
 * smtpd_i_base64_decode - see parse.h. Strict beyond the header's list:
 * the unused bits of the last character before padding must be zero
 * (RFC 4648 3.5: canonical encoding), so every byte string has exactly
 * one accepted encoding. cap is checked before anything is written; in
 * place works because each 4-octet group is read before its 3 octets are
 * written at or before its start.
 */
long smtpd_i_base64_decode(const char *in, size_t len, uint8_t *out,
                           size_t cap) {
  const unsigned char *p = (const unsigned char *)in;
  size_t groups, olen, pad = 0, i;
  unsigned a, b, c, d;

  if (len == 0)
    return 0;
  if (len % 4 != 0 || len / 4 > (size_t)LONG_MAX / 3)
    return -1;
  if (p[len - 1] == '=')
    pad = p[len - 2] == '=' ? 2 : 1;
  groups = len / 4;
  olen = groups * 3 - pad;
  if (olen > cap)
    return -1;

  for (i = 0; i + 1 < groups; i++, p += 4, out += 3) {
    a = b64val[p[0]];
    b = b64val[p[1]];
    c = b64val[p[2]];
    d = b64val[p[3]];
    if ((a | b | c | d) & 0x80)
      return -1;
    out[0] = (uint8_t)(a << 2 | b >> 4);
    out[1] = (uint8_t)((b & 0x0f) << 4 | c >> 2);
    out[2] = (uint8_t)((c & 0x03) << 6 | d);
  }
  /* last group: "xxxx", "xxx=" or "xx==" */
  a = b64val[p[0]];
  b = b64val[p[1]];
  c = pad == 2 ? 0 : b64val[p[2]];
  d = pad >= 1 ? 0 : b64val[p[3]];
  if ((a | b | c | d) & 0x80)
    return -1;
  if ((pad == 2 && (b & 0x0f) != 0) || (pad == 1 && (c & 0x03) != 0))
    return -1; /* non-canonical: unused bits set */
  out[0] = (uint8_t)(a << 2 | b >> 4);
  if (pad < 2)
    out[1] = (uint8_t)((b & 0x0f) << 4 | c >> 2);
  if (pad < 1)
    out[2] = (uint8_t)((c & 0x03) << 6 | d);
  return (long)olen;
}

/* smtpd_i_base64_encode - see parse.h. */
long smtpd_i_base64_encode(const uint8_t *in, size_t len, char *out,
                           size_t cap) {
  size_t olen, i;

  if (len > (size_t)LONG_MAX / 4 * 3 - 3)
    return -1;
  olen = (len + 2) / 3 * 4;
  if (cap < olen + 1)
    return -1;
  for (i = 0; i + 3 <= len; i += 3, out += 4) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
    out[0] = b64chars[v >> 18];
    out[1] = b64chars[(v >> 12) & 0x3f];
    out[2] = b64chars[(v >> 6) & 0x3f];
    out[3] = b64chars[v & 0x3f];
  }
  if (len - i == 1) {
    unsigned v = (unsigned)in[i] << 16;
    out[0] = b64chars[v >> 18];
    out[1] = b64chars[(v >> 12) & 0x3f];
    out[2] = '=';
    out[3] = '=';
    out += 4;
  } else if (len - i == 2) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
    out[0] = b64chars[v >> 18];
    out[1] = b64chars[(v >> 12) & 0x3f];
    out[2] = b64chars[(v >> 6) & 0x3f];
    out[3] = '=';
    out += 4;
  }
  *out = '\0';
  return (long)olen;
}

/* ---- sanitising ------------------------------------------------------- */

/* smtpd_i_sanitize - see parse.h. cap == 0 writes nothing. */
size_t smtpd_i_sanitize(char *dst, size_t cap, const char *s, size_t len) {
  size_t i;

  if (cap == 0)
    return 0;
  if (len > cap - 1)
    len = cap - 1;
  for (i = 0; i < len; i++)
    dst[i] = IS(s[i], C_PRINT) ? s[i] : '?';
  dst[len] = '\0';
  return len;
}

int smtpd_i_ip_valid(const char *p, int v6) {
  const char *e = v6 ? scan_ipv6(p) : scan_ipv4(p);
  return e != NULL && *e == '\0';
}
