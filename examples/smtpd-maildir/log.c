/*
 * log.c - the buffered, printf-free log of smtpd-maildir (see log.h).
 */
#define _GNU_SOURCE /* syscall(2), through sysio.h */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fmt.h"
#include "sysio.h"

#define PREFIX "smtpd-maildir: "

log_buffer log_state; /* log.h: the one buffer of this process */
#define lg log_state

static size_t room(void) { /* what the current line may still take */
  size_t used = lg.len - lg.line;
  return used < LOG_LINE_MAX ? LOG_LINE_MAX - used : 0;
}

void log_begin(void) {
  if (sizeof lg.buf - lg.len < LOG_LINE_MAX + 1)
    log_flush();
  lg.line = lg.len;
  log_mem(PREFIX, sizeof PREFIX - 1);
}

void log_mem(const char *s, size_t n) {
  size_t r = room();
  if (n > r)
    n = r;
  memcpy(lg.buf + lg.len, s, n);
  lg.len += n;
}

void log_str(const char *s) { log_mem(s, strlen(s)); }

/* what each octet becomes in a log line: 0x21..0x7e itself, else '?' */
#define SAFE1(c) ((c) > 0x20 && (c) < 0x7f ? (c) : '?')
#define SAFE4(b) SAFE1(b), SAFE1((b) + 1), SAFE1((b) + 2), SAFE1((b) + 3)
#define SAFE16(b) SAFE4(b), SAFE4((b) + 4), SAFE4((b) + 8), SAFE4((b) + 12)
#define SAFE64(b) SAFE16(b), SAFE16((b) + 16), SAFE16((b) + 32), SAFE16((b) + 48)
static const unsigned char safe_octet[256] = {SAFE64(0), SAFE64(64),
                                              SAFE64(128), SAFE64(192)};

/* An octet of w outside 0x21..0x7e: below 0x21 (the "has less"
 * test, exact for every octet) or above 0x7e (adding 0x01 sets the high
 * bit of an octet 0x7f..0xff, and one already 0x80.. has it). */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
static int word_unsafe(uint64_t w) {
  return (((w - 0x21 * ONES) & ~w) | ((w + ONES) | w)) & HIGHS ? 1 : 0;
}

/* Eight octets at a time (an address is ASCII nearly always): copied
 * whole when all are safe, else one by one through the table. */
size_t log_copy_safe(char *o, const char *s, size_t max) {
  size_t n = strnlen(s, max), i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    if (!word_unsafe(w)) {
      memcpy(o + i, &w, 8);
      continue;
    }
    for (size_t k = i; k < i + 8; k++)
      o[k] = (char)safe_octet[(unsigned char)s[k]];
  }
  if (i < n && n >= 8) { /* the last 1..7: the last eight again */
    uint64_t w;
    memcpy(&w, s + n - 8, 8);
    if (!word_unsafe(w)) {
      memcpy(o + n - 8, &w, 8);
      return n;
    }
  }
  for (; i < n; i++)
    o[i] = (char)safe_octet[(unsigned char)s[i]];
  return n;
}

void log_text(const char *s, size_t max) {
  size_t r = room();
  if (s == NULL)
    return;
  if (max > r)
    max = r;
  lg.len += log_copy_safe(lg.buf + lg.len, s, max);
}

void log_u64(uint64_t v) {
  char d[FMT_U64_MAX];
  log_mem(d, fmt_u64(d, v));
}

void log_end(void) {
  lg.buf[lg.len++] = '\n'; /* room() kept one byte for it */
  lg.line = lg.len;
}

char *log_line(size_t max) {
  if (sizeof lg.buf - lg.len < max + 1)
    log_flush();
  lg.line = lg.len;
  memcpy(lg.buf + lg.len, PREFIX, sizeof PREFIX - 1);
  return lg.buf + lg.len + sizeof PREFIX - 1;
}

void log_line_end(char *end) {
  lg.len = (size_t)(end - lg.buf);
  log_end();
}

void vlogmsg(const char *fmt, va_list ap) {
  if (sizeof lg.buf - lg.len < LOG_LINE_MAX + 1)
    log_flush();
  lg.line = lg.len;
  int n = vsnprintf(lg.buf + lg.len, LOG_LINE_MAX + 1, fmt, ap);
  if (n < 0)
    return;
  lg.len += (size_t)n > LOG_LINE_MAX ? LOG_LINE_MAX : (size_t)n;
  log_end();
}

void logmsg(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlogmsg(fmt, ap);
  va_end(ap);
}

void log_flush(void) {
  size_t off = 0;
  while (off < lg.len) {
    size_t n = lg.len - off;
    if (n > PIPE_BUF) { /* whole lines only, so writes stay atomic */
      n = PIPE_BUF;
      while (n > 0 && lg.buf[off + n - 1] != '\n')
        n--;
      if (n == 0)
        n = PIPE_BUF < lg.len - off ? PIPE_BUF : lg.len - off;
    }
    ssize_t w = sys_write(STDERR_FILENO, lg.buf + off, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break; /* stderr closed or full: the lines are dropped */
    off += (size_t)w;
  }
  lg.len = lg.line = 0;
}
