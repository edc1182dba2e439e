/*
 * fmt.c - hand-written number and address formatting (see fmt.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "fmt.h"

#include <net/if.h>
#include <netinet/in.h>
#include <string.h>

size_t fmt_u64(char *out, uint64_t v) {
  static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                              "25262728293031323334353637383940414243444546474849"
                              "50515253545556575859606162636465666768697071727374"
                              "75767778798081828384858687888990919293949596979899";
  if (v < 10) { /* counts of recipients, messages: often one digit */
    out[0] = (char)('0' + v);
    out[1] = '\0';
    return 1;
  }
  size_t n = 2; /* digits: counted first, then written from the right */
  for (uint64_t p = 100; n < 20 && v >= p; p *= 10)
    n++;
  size_t i = n;
  out[n] = '\0';
  while (v >= 100) { /* two digits a step */
    unsigned r = (unsigned)(v % 100);
    v /= 100;
    out[--i] = pairs[2 * r + 1];
    out[--i] = pairs[2 * r];
  }
  if (v >= 10) {
    out[--i] = pairs[2 * v + 1];
    out[--i] = pairs[2 * v];
  } else {
    out[--i] = (char)('0' + v);
  }
  return n;
}

size_t fmt_hex(char *out, uint64_t v, int width) {
  static const char digits[] = "0123456789ABCDEF";
  int n = 1;
  while (n < 16 && (v >> (4 * n)) != 0)
    n++;
  if (n < width)
    n = width;
  for (int i = n - 1; i >= 0; i--, v >>= 4)
    out[i] = digits[v & 15];
  out[n] = '\0';
  return (size_t)n;
}

static size_t fmt_v4(char *out, const unsigned char *a) {
  size_t n = 0;
  for (int i = 0; i < 4; i++) {
    unsigned v = a[i];
    if (i)
      out[n++] = '.';
    if (v >= 100)
      out[n++] = (char)('0' + v / 100);
    if (v >= 10)
      out[n++] = (char)('0' + v / 10 % 10);
    out[n++] = (char)('0' + v % 10);
  }
  out[n] = '\0';
  return n;
}

static size_t fmt_v6(char *out, const unsigned char *a) {
  static const char digits[] = "0123456789abcdef";
  unsigned w[8];
  for (int i = 0; i < 8; i++)
    w[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) { /* the first longest run of zero groups */
    if (w[i] != 0) {
      i++;
      continue;
    }
    int j = i;
    while (j < 8 && w[j] == 0)
      j++;
    if (j - i > best_len) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  if (best_len < 2)
    best = -1;
  size_t n = 0;
  for (int i = 0; i < 8; i++) {
    if (i == best) {
      out[n++] = ':';
      i += best_len - 1;
      if (i == 7)
        out[n++] = ':';
      continue;
    }
    if (i)
      out[n++] = ':';
    if (i == 6 && best == 0 &&
        (best_len == 6 || (best_len == 5 && w[5] == 0xffff)))
      return n + fmt_v4(out + n, a + 12);
    unsigned v = w[i];
    int started = 0;
    for (int sh = 12; sh >= 0; sh -= 4) {
      unsigned d = (v >> sh) & 15;
      if (d || started || sh == 0) {
        out[n++] = digits[d];
        started = 1;
      }
    }
  }
  out[n] = '\0';
  return n;
}

size_t fmt_ip(char *out, int family, const void *a) {
  return family == AF_INET ? fmt_v4(out, a) : fmt_v6(out, a);
}

void fmt_sockaddr(const struct sockaddr *sa, char *host, char *both) {
  size_t n, b = 0;
  unsigned port;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    n = fmt_v4(host, (const unsigned char *)&s4->sin_addr);
    port = ntohs(s4->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    n = fmt_v6(host, s6->sin6_addr.s6_addr);
    port = ntohs(s6->sin6_port);
    if (s6->sin6_scope_id) { /* as getnameinfo: the interface's name */
      char name[IF_NAMESIZE];
      host[n++] = '%';
      if (if_indextoname(s6->sin6_scope_id, name) != NULL) {
        size_t l = strlen(name);
        memcpy(host + n, name, l);
        n += l;
      } else {
        n += fmt_u64(host + n, s6->sin6_scope_id);
      }
      host[n] = '\0';
    }
    both[b++] = '[';
  } else {
    memcpy(host, "unknown", 8);
    memcpy(both, "unknown:0", 10);
    return;
  }
  memcpy(both + b, host, n);
  b += n;
  if (sa->sa_family == AF_INET6)
    both[b++] = ']';
  both[b++] = ':';
  fmt_u64(both + b, port);
}
