/*
 * proxy.c - the PROXY protocol header (HAProxy's proxy-protocol.txt,
 * versions 1 and 2): a pure parser, bounded, that never guesses. The
 * session reads the header through it before the greeting (input.c);
 * hosts that must read it before a TLS layer call it themselves.
 *
 *   smtpd_proxy_parse
 */
#include <string.h>

#include "internal.h"
#include "parse.h"

#define V1_MAX 107u   /* "PROXY" ... CRLF, the spec's worst case */
#define V2_MAX 1024u  /* address block and TLVs we accept */

static const uint8_t v2sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Decimal port 0..65535, no sign, 1..5 digits. */
static int parse_port(const char *p, size_t n, unsigned *out) {
  unsigned v = 0;
  size_t i;
  if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
    return -1;
  for (i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return -1;
    v = v * 10u + (unsigned)(p[i] - '0');
  }
  if (v > 65535u)
    return -1;
  *out = v;
  return 0;
}

/* "PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r\n" within buf[0..n) (n <= 107). */
static ptrdiff_t parse_v1(const char *buf, size_t len, smtpd_proxy_info *o) {
  const char *cr = NULL, *f[5];
  size_t fl[5], nf = 0, i, start = 6;
  char tmp[V1_MAX + 1];
  /* the CRLF must end within V1_MAX octets */
  for (i = 0; i + 1 < len && i + 2 <= V1_MAX; i++)
    if (buf[i] == '\r' && buf[i + 1] == '\n') {
      cr = buf + i;
      break;
    }
  if (!cr)
    return len >= V1_MAX ? SMTPD_ERR_INVALID_ARGUMENT : 0;
  memcpy(tmp, buf, (size_t)(cr - buf));
  tmp[cr - buf] = '\0';
  if (!strncmp(tmp + 6, "UNKNOWN", 7) && (tmp[13] == ' ' || !tmp[13])) {
    memset(o, 0, sizeof *o);
    o->version = 1;
    o->local = 1; /* the rest of the line is ignored, per the spec */
    return cr + 2 - buf;
  }
  /* fields separated by single spaces */
  for (i = start; i <= (size_t)(cr - buf); i++) {
    if (i == (size_t)(cr - buf) || tmp[i] == ' ') {
      if (i == start || nf == 5)
        return SMTPD_ERR_INVALID_ARGUMENT;
      f[nf] = tmp + start;
      fl[nf++] = i - start;
      tmp[i] = '\0';
      start = i + 1;
    }
  }
  memset(o, 0, sizeof *o);
  o->version = 1;
  if (nf != 5 || fl[0] != 4 || memcmp(f[0], "TCP", 3) ||
      (f[0][3] != '4' && f[0][3] != '6'))
    return SMTPD_ERR_INVALID_ARGUMENT;
  o->family = f[0][3] == '4' ? 4 : 6;
  if (fl[1] >= sizeof o->src_addr || fl[2] >= sizeof o->dst_addr ||
      !smtpd_i_ip_valid(f[1], o->family == 6) ||
      !smtpd_i_ip_valid(f[2], o->family == 6) ||
      parse_port(f[3], fl[3], &o->src_port) ||
      parse_port(f[4], fl[4], &o->dst_port))
    return SMTPD_ERR_INVALID_ARGUMENT;
  memcpy(o->src_addr, f[1], fl[1] + 1);
  memcpy(o->dst_addr, f[2], fl[2] + 1);
  return cr + 2 - buf;
}

static void format_v4(char *dst, const uint8_t *a) {
  char *w = dst;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned v = a[i];
    if (i)
      *w++ = '.';
    if (v >= 100)
      *w++ = (char)('0' + v / 100);
    if (v >= 10)
      *w++ = (char)('0' + v / 10 % 10);
    *w++ = (char)('0' + v % 10);
  }
  *w = '\0';
}

/* RFC 5952 text: lower-case hex, no leading zeros, the longest run of two
 * or more zero groups (the first of equal ones) as "::". */
static void format_v6(char *dst, const uint8_t *a) {
  static const char hex[] = "0123456789abcdef";
  unsigned g[8];
  int i, best = -1, bestlen = 1, run = 0;
  char *w = dst;
  for (i = 0; i < 8; i++)
    g[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
  for (i = 0; i < 8; i++) {
    run = g[i] == 0 ? run + 1 : 0;
    if (run > bestlen) {
      bestlen = run;
      best = i - run + 1;
    }
  }
  for (i = 0; i < 8; i++) {
    int shift, started = 0;
    if (i == best) {
      *w++ = ':';
      if (i == 0)
        *w++ = ':';
      i += bestlen - 1;
      continue;
    }
    for (shift = 12; shift >= 0; shift -= 4) {
      unsigned d = g[i] >> shift & 0xfu;
      if (d || started || shift == 0) {
        *w++ = hex[d];
        started = 1;
      }
    }
    if (i < 7)
      *w++ = ':';
  }
  *w = '\0';
}

static ptrdiff_t parse_v2(const uint8_t *b, size_t len, smtpd_proxy_info *o) {
  size_t total;
  unsigned cmd, fam;
  if (len < 16)
    return 0;
  total = 16u + ((size_t)b[14] << 8 | b[15]);
  cmd = b[12] & 0x0fu;
  fam = b[13] >> 4;
  if ((b[12] >> 4) != 2 || cmd > 1 || fam > 3 || (b[13] & 0x0fu) > 2 ||
      total - 16 > V2_MAX)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (len < total)
    return 0;
  memset(o, 0, sizeof *o);
  o->version = 2;
  if (cmd == 0 || fam == 0 || fam == 3) {
    o->local = 1; /* LOCAL, or no address we can use: TLVs skipped */
    return (ptrdiff_t)total;
  }
  if (fam == 1) {
    if (total - 16 < 12)
      return SMTPD_ERR_INVALID_ARGUMENT;
    o->family = 4;
    format_v4(o->src_addr, b + 16);
    format_v4(o->dst_addr, b + 20);
    o->src_port = (unsigned)b[24] << 8 | b[25];
    o->dst_port = (unsigned)b[26] << 8 | b[27];
  } else {
    if (total - 16 < 36)
      return SMTPD_ERR_INVALID_ARGUMENT;
    o->family = 6;
    format_v6(o->src_addr, b + 16);
    format_v6(o->dst_addr, b + 32);
    o->src_port = (unsigned)b[48] << 8 | b[49];
    o->dst_port = (unsigned)b[50] << 8 | b[51];
  }
  return (ptrdiff_t)total; /* TLVs after the addresses are skipped */
}

ptrdiff_t smtpd_proxy_parse(const void *buf, size_t len,
                            smtpd_proxy_info *out) {
  const uint8_t *b = buf;
  size_t n = len < 12 ? len : 12;
  if ((!buf && len) || !out)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (len == 0)
    return 0;
  if (len && b[0] == 'P') {
    size_t k = len < 6 ? len : 6;
    if (memcmp(b, "PROXY ", k))
      return SMTPD_ERR_INVALID_ARGUMENT;
    return len < 6 ? 0 : parse_v1((const char *)b, len, out);
  }
  if (memcmp(b, v2sig, n))
    return SMTPD_ERR_INVALID_ARGUMENT;
  return parse_v2(b, len, out);
}
