/*
 * test_maildir_fmt.c - smtpd-maildir's hand-written formatters and log
 * buffer (examples/smtpd-maildir/fmt.c, log.c, queue_id.c) against what
 * they replace: inet_ntop, printf, one write per line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fmt.h"
#include "log.h"
#include "queue_id.h"

static int failed, passed;

static void check(int ok, const char *what, const char *got,
                  const char *want) {
  if (ok) {
    passed++;
    return;
  }
  if (failed++ < 20)
    printf("FAIL %s: got \"%s\", want \"%s\"\n", what, got, want);
}

static uint64_t rng = 88172645463325252u; /* xorshift64: repeatable */
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void test_ip(void) {
  static const char *fixed[] = {
      "::", "::1", "1::", "::ffff:1.2.3.4", "::1.2.3.4", "1:0:0:1::",
      "1:0:0:2:0:0:0:3", "1:0:1:0:1:0:1:0", "fe80::1", "2001:db8::ff00:42:8329",
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "0:0:1::", "::ffff:0:0"};
  unsigned char a[16];
  char got[FMT_IP_MAX], want[INET6_ADDRSTRLEN];
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
    inet_pton(AF_INET6, fixed[i], a);
    fmt_ip(got, AF_INET6, a);
    inet_ntop(AF_INET6, a, want, sizeof want);
    check(strcmp(got, want) == 0, "fixed IPv6", got, want);
  }
  for (int k = 0; k < 200000; k++) {
    uint64_t r1 = next(), r2 = next();
    for (int i = 0; i < 16; i++) { /* many zero and 0xff octets */
      unsigned sel = (unsigned)((r1 >> (2 * i)) & 3);
      a[i] = sel < 2 ? 0 : sel == 2 ? 0xff : (unsigned char)(r2 >> (4 * (i % 16)));
    }
    if (k % 5 == 0) { /* IPv4-mapped */
      memset(a, 0, 10);
      a[10] = a[11] = 0xff;
    }
    fmt_ip(got, AF_INET6, a);
    inet_ntop(AF_INET6, a, want, sizeof want);
    check(strcmp(got, want) == 0, "IPv6", got, want);
    fmt_ip(got, AF_INET, a + 12);
    inet_ntop(AF_INET, a + 12, want, sizeof want);
    check(strcmp(got, want) == 0, "IPv4", got, want);
  }
}

static void test_sockaddr(void) {
  struct sockaddr_in s4 = {0};
  struct sockaddr_in6 s6 = {0};
  char host[FMT_IP_MAX], both[FMT_IP_MAX + 8];
  s4.sin_family = AF_INET;
  s4.sin_port = htons(40272);
  inet_pton(AF_INET, "127.0.0.1", &s4.sin_addr);
  fmt_sockaddr((struct sockaddr *)&s4, host, both);
  check(strcmp(host, "127.0.0.1") == 0, "v4 host", host, "127.0.0.1");
  check(strcmp(both, "127.0.0.1:40272") == 0, "v4 both", both,
        "127.0.0.1:40272");
  s6.sin6_family = AF_INET6;
  s6.sin6_port = htons(25);
  inet_pton(AF_INET6, "::1", &s6.sin6_addr);
  fmt_sockaddr((struct sockaddr *)&s6, host, both);
  check(strcmp(both, "[::1]:25") == 0, "v6 both", both, "[::1]:25");
  s6.sin6_scope_id = 999999; /* no such interface: the number */
  inet_pton(AF_INET6, "fe80::1", &s6.sin6_addr);
  fmt_sockaddr((struct sockaddr *)&s6, host, both);
  check(strcmp(host, "fe80::1%999999") == 0, "v6 scope", host,
        "fe80::1%999999");
}

static void test_numbers(void) {
  char got[FMT_U64_MAX + 16], want[32];
  uint64_t edge[] = {0, 9, 10, 99, 100, 101, 999, 1000, 65535,
                     UINT64_MAX, UINT64_MAX - 1, 10000000000000000000u};
  for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) {
    fmt_u64(got, edge[i]);
    snprintf(want, sizeof want, "%" PRIu64, edge[i]);
    check(strcmp(got, want) == 0, "u64", got, want);
  }
  for (int k = 0; k < 200000; k++) {
    uint64_t v = next() >> (next() % 64);
    size_t n = fmt_u64(got, v);
    snprintf(want, sizeof want, "%" PRIu64, v);
    check(strcmp(got, want) == 0 && n == strlen(want), "u64", got, want);
    fmt_hex(got, v, 5);
    snprintf(want, sizeof want, "%05" PRIX64, v);
    check(strcmp(got, want) == 0, "hex", got, want);
  }
}

static void test_queue_ids(void) {
  queue_ids q;
  char prev[QUEUE_ID_MAX] = "", id[QUEUE_ID_MAX], pid[8];
  queue_id_init(&q);
  snprintf(pid, sizeof pid, "%06lX", (unsigned long)getpid() & 0xFFFFFFu);
  for (int i = 0; i < 1100000; i++) { /* past 5 hex digits of counter */
    size_t n = queue_id_next(&q, id);
    char want[QUEUE_ID_MAX]; /* the prefix, then the counter as %05X */
    snprintf(want, sizeof want, "%.*s%05X", (int)q.prefix_len, q.prefix,
             (unsigned)i + 1);
    int ok = n == strlen(id) && strlen(id) >= 19 && strcmp(id, want) == 0 &&
             memcmp(id + 8, pid, 6) == 0 &&
             strspn(id, "0123456789ABCDEF") == n &&
             (strlen(id) > strlen(prev) ||
              (strlen(id) == strlen(prev) && strcmp(id, prev) > 0));
    check(ok, "queue id after the last, with the pid", id, prev);
    memcpy(prev, id, sizeof id);
  }
}

/* the log: lines as printf wrote them, one write per flush */
static void test_log(void) {
  char path[] = "/tmp/test_maildir_fmt.XXXXXX";
  int fd = mkstemp(path);
  int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  log_begin();
  LOG_LIT("6B0F6AF80033BE00001: from=<");
  log_text("a b\x01\xc3\xa9@x", 279);
  LOG_LIT("> nrcpt=");
  log_u64(3);
  LOG_LIT(" size=");
  log_u64(18446744073709551615u);
  log_end();
  logmsg("smtpd-maildir: listening on %s%s", "127.0.0.1:2525", "");
  char *o = log_line(64); /* written in place after the prefix */
  memcpy(o, "in place", 8);
  log_line_end(o + 8);
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  log_begin(); /* cut at LOG_LINE_MAX, as vsnprintf into 1,023 was */
  log_str(big);
  log_end();
  logmsg("smtpd-maildir: %s", big);
  for (int i = 0; i < 100; i++) { /* more than the buffer holds */
    log_begin();
    log_str(big);
    log_end();
  }
  log_flush();
  dup2(saved, STDERR_FILENO);
  close(saved);
  FILE *f = fopen(path, "r");
  char line[4096];
  const char *want1 = "smtpd-maildir: 6B0F6AF80033BE00001: from=<a?b???@x> "
                      "nrcpt=3 size=18446744073709551615\n";
  if (fgets(line, sizeof line, f) == NULL)
    line[0] = '\0';
  check(strcmp(line, want1) == 0, "log line", line, want1);
  if (fgets(line, sizeof line, f) == NULL)
    line[0] = '\0';
  check(strcmp(line, "smtpd-maildir: listening on 127.0.0.1:2525\n") == 0,
        "logmsg line", line, "listening on");
  if (fgets(line, sizeof line, f) == NULL)
    line[0] = '\0';
  check(strcmp(line, "smtpd-maildir: in place\n") == 0, "log_line line", line,
        "in place");
  int lines = 0, cut = 1;
  while (fgets(line, sizeof line, f)) {
    lines++;
    cut &= strlen(line) == LOG_LINE_MAX + 1 && line[LOG_LINE_MAX] == '\n';
  }
  check(lines == 102, "every long line there", lines == 102 ? "102" : "other",
        "102");
  check(cut, "long lines cut at LOG_LINE_MAX", "", "");
  fclose(f);
  unlink(path);
}

int main(void) {
  test_ip();
  test_sockaddr();
  test_numbers();
  test_queue_ids();
  test_log();
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
