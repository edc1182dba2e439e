/*
 * parse.h - internal: allocation-free parsers for SMTP command arguments.
 *
 * Every parser works in place on a mutable, NUL-terminated command line
 * (the session's line buffer) and returns pointers into it. None of them
 * allocates. Names carry the smtpd_i_ prefix: internal, not exported
 * (hidden visibility), but linkable from tests through the static library.
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
#ifndef SMTPD_LIB_PARSE_H
#define SMTPD_LIB_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "smtpd/smtpd.h"

#define SMTPD_I_MAX_LOCAL 64u    /* RFC 5321 4.5.3.1.1 */
#define SMTPD_I_MAX_DOMAIN 255u  /* RFC 5321 4.5.3.1.2 */
#define SMTPD_I_MAX_PATH 256u    /* RFC 5321 4.5.3.1.3, incl. < > */

typedef enum smtpd_i_path_status {
  SMTPD_I_PATH_OK = 0,
  SMTPD_I_PATH_SYNTAX,         /* malformed path */
  SMTPD_I_PATH_LOCAL_TOO_LONG, /* local part over 64 octets */
  SMTPD_I_PATH_DOMAIN_TOO_LONG,/* domain over 255 octets */
  SMTPD_I_PATH_TOO_LONG        /* path over 256 octets */
} smtpd_i_path_status;

typedef struct smtpd_i_path {
  char *address;   /* NUL-terminated: "" (null path), "Postmaster",
                      or local@domain; the source route is dropped */
  size_t address_len; /* strlen(address) */
  char *local;     /* local part as sent (quotes kept), in scratch */
  char *domain;    /* the end of address, or "" in scratch when none */
} smtpd_i_path;

/* Flags for smtpd_i_parse_path. */
#define SMTPD_I_PATH_ALLOW_NULL 1u       /* "<>" allowed (MAIL FROM) */
#define SMTPD_I_PATH_ALLOW_POSTMASTER 2u /* "<Postmaster>" (RCPT TO) */
#define SMTPD_I_PATH_UTF8 4u             /* RFC 6531 UTF-8 in local/domain */

/*
 * smtpd_i_parse_path - parse "<path>" at the start of s (leading spaces
 * already skipped by the caller; one space after "FROM:" tolerated by the
 * caller). Accepts: the null path "<>" (with ALLOW_NULL); "<Postmaster>"
 * case-insensitively (with ALLOW_POSTMASTER, address "Postmaster", domain
 * ""); an optional source route "@a,@b:" which is dropped; a dot-string or
 * quoted-string local part (quotes and backslash pairs kept verbatim in
 * address/local); a domain of dot-separated labels (letters, digits,
 * hyphens; not starting or ending with '-') or an address literal
 * "[192.0.2.1]" / "[IPv6:2001:db8::1]" (validated) / general literal
 * "[tag:content]". With SMTPD_I_PATH_UTF8, octets >= 0x80 forming valid
 * UTF-8 are also allowed in local parts and labels; otherwise they are a
 * syntax error. Controls (< 0x20, 0x7f) are always a syntax error.
 *
 * On SMTPD_I_PATH_OK: out->address is written in place in s (a NUL
 * replaces the closing '>' and the source route is skipped, so address
 * points inside s); out->local and out->domain are NUL-terminated copies
 * written into scratch (at least SMTPD_I_PATH_SCRATCH bytes). *rest
 * points just after the closing '>' (the parameters, usually
 * " KEY=VAL ...", or ""). No allocation.
 */
#define SMTPD_I_PATH_SCRATCH (SMTPD_I_MAX_PATH + 4u)
smtpd_i_path_status smtpd_i_parse_path(char *s, unsigned flags,
                                       char *scratch, smtpd_i_path *out,
                                       char **rest);

/*
 * smtpd_i_parse_params - split " KEY[=VALUE] KEY2..." (s may start with
 * spaces; one or more spaces separate parameters) in place into at most
 * max entries. Keywords (esmtp-keyword: ALPHA/DIGIT then ALPHA/DIGIT/'-')
 * are upper-cased in place; values (esmtp-value: octets 33..126 except
 * '=', plus valid UTF-8 when utf8 is non-zero) are left as sent; value is
 * NULL without '='. Returns the count, -1 on syntax error, -2 when there
 * are more than max.
 */
int smtpd_i_parse_params(char *s, smtpd_param *out, size_t max, int utf8);

/* smtpd_i_parse_u64 - decimal digits only (1..20 digits), no sign, no
 * spaces; 0 on success, -1 on syntax error or overflow past UINT64_MAX. */
int smtpd_i_parse_u64(const char *s, uint64_t *out);

/* smtpd_i_xtext_decode - RFC 3461 xtext ("+HH" hex escapes, upper-case
 * hex only per the RFC, but lower-case accepted; other octets 33..126
 * except '+' and '=') decoded in place, NUL-terminated. Returns the
 * decoded length, or -1 when malformed or when it decodes to anything
 * but printable US-ASCII and space (a control, NUL, DEL or an octet
 * 0x80-0xff: RFC 3461 4.4, RFC 4954 5). */
long smtpd_i_xtext_decode(char *s);

/* smtpd_i_base64_decode - strict RFC 4648: alphabet A-Z a-z 0-9 + /,
 * '=' padding only at the end and only as needed, length a multiple of
 * 4 (so 4n+1, 4n+2, 4n+3 are errors), no spaces. Writes at most cap
 * octets to out (out may equal in: decoding in place works). Returns the
 * decoded length or -1. Empty input decodes to length 0. */
long smtpd_i_base64_decode(const char *in, size_t len, uint8_t *out,
                           size_t cap);

/* smtpd_i_base64_encode - writes 4*ceil(len/3) chars plus NUL into out
 * when cap allows; returns that length (without NUL) or -1 if cap is too
 * small. */
long smtpd_i_base64_encode(const uint8_t *in, size_t len, char *out,
                           size_t cap);

/* smtpd_i_utf8_valid - 1 when s[0..len) is well-formed UTF-8 (no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
int smtpd_i_utf8_valid(const uint8_t *s, size_t len);

/* smtpd_i_sanitize - copy at most len octets of s into dst (cap > 0,
 * NUL-terminated), replacing octets outside 0x20..0x7e by '?', truncating
 * to fit. Returns the number of chars written (without NUL). */
size_t smtpd_i_sanitize(char *dst, size_t cap, const char *s, size_t len);

/* smtpd_i_ip_valid - p (NUL-terminated) is an IPv4 dotted quad, or (v6)
 * an IPv6 address in RFC 5321 4.1.3 form. */
int smtpd_i_ip_valid(const char *p, int v6);

#endif /* SMTPD_LIB_PARSE_H */
