/*
 * fmt.h - smtpd-maildir: the few number and address formats of its hot
 * paths, written by hand (no printf, no getnameinfo).
 *
 *   fmt_u64        decimal
 *   fmt_hex        upper-case hexadecimal, zero-padded to a width
 *   fmt_ip         an IPv4 or IPv6 address as inet_ntop(3) writes it
 *   fmt_sockaddr   "addr:port" / "[v6addr]:port" plus the bare address
 *
 * Each returns the length written; outputs are NUL-terminated.
 */
#ifndef SMTPD_MAILDIR_FMT_H
#define SMTPD_MAILDIR_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define FMT_U64_MAX 21 /* 20 digits and the NUL */
#define FMT_IP_MAX 64  /* an IPv6 address with a %scope, and the NUL */

size_t fmt_u64(char *out, uint64_t v);
/* fmt_hex - v in hex, at least width digits (width <= 16). out: 17 bytes */
size_t fmt_hex(char *out, uint64_t v, int width);
/* fmt_ip - family AF_INET (4 bytes at a) or AF_INET6 (16 bytes); out at
 * least FMT_IP_MAX bytes. IPv6 as RFC 5952 / glibc: lower case, the
 * longest run of two or more zero groups (the first of equals) as "::",
 * IPv4-mapped and IPv4-compatible addresses with a dotted tail. */
size_t fmt_ip(char *out, int family, const void *a);
/* fmt_sockaddr - an AF_INET / AF_INET6 address: host gets the address
 * (IPv6 with "%scope" when it has a scope id), both "host:port" or
 * "[host]:port". Other families: "unknown" and "unknown:0". host needs
 * FMT_IP_MAX bytes, both FMT_IP_MAX + 8. */
void fmt_sockaddr(const struct sockaddr *sa, char *host, char *both);

#endif
