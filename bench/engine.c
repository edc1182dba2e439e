/*
 * engine.c - libsmtpd engine benchmark (a program, not a test).
 *
 * Runs whole SMTP transactions through in-memory sessions, no sockets:
 *   1. lockstep: one command, read the reply, next command (EHLO, MAIL,
 *      RCPT, DATA + 1 KB body, QUIT), a fresh session per transaction
 *   2. pipelined: 100 transactions per session fed in one stream
 *   3. a 64 MB body fed in 64 KB pieces, next to memchr over the same
 *      bytes (the floor any line scanner must pay)
 *   4. bytes of library state per idle session (after the greeting and
 *      after EHLO), counted through the smtpd_mem allocator hook
 *
 *   usage: smtpd-bench-engine [lockstep_count [pipelined_sessions]]
 *          smtpd-bench-engine body-messages N
 *
 * The second form only sends N messages of 1 MiB (76-letter lines) in
 * one session, in 64 KB pieces: run it under callgrind for two N and
 * divide the difference by the difference of MiB to get the engine's
 * instructions per body octet (docs/benchmarks.md):
 *
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *     build/bench/smtpd-bench-engine body-messages 8      (and 16)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtpd/smtpd.h"

/* ---- a counting allocator ------------------------------------------- */

typedef struct counter {
  size_t live, peak, calls;
} counter;

/* Each block carries its size in a 16-byte header. */
static void *c_malloc(size_t n, void *ctx) {
  counter *c = ctx;
  unsigned char *p = malloc(n + 16);
  if (p == NULL)
    return NULL;
  memcpy(p, &n, sizeof n);
  c->live += n;
  c->calls++;
  if (c->live > c->peak)
    c->peak = c->live;
  return p + 16;
}
static void c_free(void *ptr, void *ctx) {
  counter *c = ctx;
  if (ptr == NULL)
    return;
  unsigned char *p = (unsigned char *)ptr - 16;
  size_t n;
  memcpy(&n, p, sizeof n);
  c->live -= n;
  free(p);
}
static void *c_calloc(size_t k, size_t n, void *ctx) {
  if (n && k > SIZE_MAX / n)
    return NULL;
  void *p = c_malloc(k * n, ctx);
  if (p)
    memset(p, 0, k * n);
  return p;
}
static void *c_realloc(void *ptr, size_t n, void *ctx) {
  if (ptr == NULL)
    return c_malloc(n, ctx);
  counter *c = ctx;
  unsigned char *p = (unsigned char *)ptr - 16;
  size_t old;
  memcpy(&old, p, sizeof old);
  unsigned char *q = realloc(p, n + 16);
  if (q == NULL)
    return NULL;
  memcpy(q, &n, sizeof n);
  c->live = c->live - old + n;
  c->calls++;
  if (c->live > c->peak)
    c->peak = c->live;
  return q + 16;
}

/* ---- helpers ---------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct sink {
  uint64_t body;     /* body octets delivered */
  uint64_t messages; /* data-complete events */
} sink;

static smtpd_verdict on_body(smtpd_session *s, const uint8_t *d, size_t n, void *ud) {
  (void)s;
  (void)d;
  ((sink *)ud)->body += n;
  return 0;
}
static smtpd_verdict on_done(smtpd_session *s, const smtpd_message *m, void *ud) {
  (void)s;
  (void)m;
  ((sink *)ud)->messages++;
  return SMTPD_ACCEPT;
}

/* Drain the replies; returns the octets read, remembers the last code. */
static size_t drain(smtpd_session *s, int *last_code) {
  const uint8_t *p;
  size_t n, total = 0;
  while ((n = smtpd_session_output(s, &p)) > 0) {
    if (last_code && n >= 5 && p[n - 1] == '\n') {
      size_t i = n - 2; /* start of the last complete line */
      while (i > 0 && p[i - 1] != '\n')
        i--;
      *last_code = (p[i] - '0') * 100 + (p[i + 1] - '0') * 10 + (p[i + 2] - '0');
    }
    total += n;
    smtpd_session_consume(s, n);
  }
  return total;
}

/* Feed everything, draining output whenever the session stops taking. */
static int feed_all(smtpd_session *s, const char *d, size_t n, int *code) {
  while (n > 0) {
    ptrdiff_t k = smtpd_session_feed(s, d, n);
    if (k < 0)
      return -1;
    d += k;
    n -= (size_t)k;
    size_t out = drain(s, code);
    if (k == 0 && out == 0)
      return -1; /* stuck */
  }
  drain(s, code);
  return 0;
}

static int send_cmd(smtpd_session *s, const char *line, int want) {
  int code = 0;
  if (feed_all(s, line, strlen(line), &code) != 0 || code != want) {
    fprintf(stderr, "bench: %.*s -> %d (want %d)\n",
            (int)strcspn(line, "\r"), line, code, want);
    return -1;
  }
  return 0;
}

static char *make_body(size_t size, size_t *len) {
  /* lines of 76 letters + CRLF, then the end-of-data dot */
  char *b = malloc(size + 8);
  size_t i = 0;
  for (size_t line = 0; i + 78 <= size; line++) {
    for (size_t k = 0; k < 76; k++)
      b[i + k] = (char)('a' + (k + line) % 26);
    i += 76;
    b[i++] = '\r';
    b[i++] = '\n';
  }
  while (i + 2 < size)
    b[i++] = 'z';
  b[i++] = '\r';
  b[i++] = '\n';
  *len = i;
  return b;
}

/* ---- the benchmarks ---------------------------------------------------- */

static smtpd_config *make_config(counter *cnt, int sync_allow) {
  smtpd_mem mem = {cnt, c_malloc, c_free, c_calloc, c_realloc};
  smtpd_config *cfg;
  if (smtpd_config_new(&cfg, &mem) != 0)
    exit(1);
  smtpd_config_set_hostname(cfg, "bench.example");
  smtpd_config_set_limit(cfg, SMTPD_LIMIT_MESSAGE_SIZE, 0);
  if (sync_allow)
    smtpd_config_set_sync_policy(cfg, SMTPD_SYNC_ALLOW);
  return cfg;
}

static smtpd_session *open_session(smtpd_config *cfg, sink *sk) {
  smtpd_callbacks cb = {0};
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_body = on_body;
  cb.on_data_complete = on_done;
  smtpd_session *s;
  if (smtpd_session_new(&s, cfg, &cb, sk) != 0)
    exit(1);
  smtpd_session_set_client(s, "192.0.2.1", NULL);
  smtpd_session_start(s);
  drain(s, NULL);
  return s;
}

static void bench_lockstep(long count) {
  counter cnt = {0};
  smtpd_config *cfg = make_config(&cnt, 0);
  sink sk = {0};
  size_t blen;
  char *body = make_body(1024, &blen);
  char *data = malloc(blen + 4);
  memcpy(data, body, blen);
  memcpy(data + blen, ".\r\n", 3);
  double t0 = now_s();
  for (long i = 0; i < count; i++) {
    smtpd_session *s = open_session(cfg, &sk);
    int code = 0;
    if (send_cmd(s, "EHLO client.example\r\n", 250) ||
        send_cmd(s, "MAIL FROM:<a@example.org> SIZE=1024\r\n", 250) ||
        send_cmd(s, "RCPT TO:<b@example.org>\r\n", 250) ||
        send_cmd(s, "DATA\r\n", 354) ||
        feed_all(s, data, blen + 3, &code) || code != 250 ||
        send_cmd(s, "QUIT\r\n", 221)) {
      fprintf(stderr, "bench: lockstep transaction failed\n");
      exit(1);
    }
    smtpd_session_del(s);
  }
  double dt = now_s() - t0;
  if (sk.messages != (uint64_t)count || sk.body < (uint64_t)count * 1024) {
    fprintf(stderr, "bench: lockstep delivered %llu messages\n",
            (unsigned long long)sk.messages);
    exit(1);
  }
  printf("lockstep   %8ld transactions (new session each)  %10.0f tx/s  "
         "%6.2f us/tx  %zu allocations/tx\n",
         count, count / dt, dt / count * 1e6, cnt.calls / (size_t)count);
  free(data);
  free(body);
  smtpd_config_del(cfg);
}

static void bench_pipelined(long sessions) {
  counter cnt = {0};
  smtpd_config *cfg = make_config(&cnt, 1);
  sink sk = {0};
  size_t blen;
  char *body = make_body(1024, &blen);
  /* one transaction as a pipelining client sends it */
  const char *head = "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
                     "DATA\r\n";
  size_t hlen = strlen(head), tlen = hlen + blen + 3;
  char *stream = malloc(100 * tlen + 32), *p = stream;
  for (int i = 0; i < 100; i++) {
    memcpy(p, head, hlen);
    memcpy(p + hlen, body, blen);
    memcpy(p + hlen + blen, ".\r\n", 3);
    p += tlen;
  }
  double t0 = now_s();
  for (long i = 0; i < sessions; i++) {
    smtpd_session *s = open_session(cfg, &sk);
    if (send_cmd(s, "EHLO client.example\r\n", 250) ||
        feed_all(s, stream, (size_t)(p - stream), NULL) ||
        send_cmd(s, "QUIT\r\n", 221)) {
      fprintf(stderr, "bench: pipelined session failed\n");
      exit(1);
    }
    smtpd_session_del(s);
  }
  double dt = now_s() - t0;
  long tx = sessions * 100;
  if (sk.messages != (uint64_t)tx) {
    fprintf(stderr, "bench: %llu messages, want %ld\n",
            (unsigned long long)sk.messages, tx);
    exit(1);
  }
  printf("pipelined  %8ld transactions (100 per session)    %10.0f tx/s  "
         "%6.2f us/tx\n", tx, tx / dt, dt / tx * 1e6);
  free(stream);
  free(body);
  smtpd_config_del(cfg);
}

static void bench_body(void) {
  counter cnt = {0};
  smtpd_config *cfg = make_config(&cnt, 0);
  sink sk = {0};
  size_t blen;
  const size_t size = 64u << 20, piece = 64u << 10;
  char *body = make_body(size, &blen);
  smtpd_session *s = open_session(cfg, &sk);
  if (send_cmd(s, "EHLO client.example\r\n", 250) ||
      send_cmd(s, "MAIL FROM:<a@example.org>\r\n", 250) ||
      send_cmd(s, "RCPT TO:<b@example.org>\r\n", 250) ||
      send_cmd(s, "DATA\r\n", 354))
    exit(1);
  double t0 = now_s();
  for (size_t off = 0; off < blen; off += piece) {
    size_t n = blen - off < piece ? blen - off : piece;
    if (feed_all(s, body + off, n, NULL) != 0)
      exit(1);
  }
  double dt = now_s() - t0;
  int code = 0;
  feed_all(s, ".\r\n", 3, &code);
  if (code != 250 || sk.body != blen) {
    fprintf(stderr, "bench: body %llu of %zu, reply %d\n",
            (unsigned long long)sk.body, blen, code);
    exit(1);
  }
  /* memchr over the same bytes, same pieces: find every LF */
  size_t lines = 0;
  double m0 = now_s();
  for (int rep = 0; rep < 4; rep++)
    for (size_t off = 0; off < blen; off += piece) {
      size_t n = blen - off < piece ? blen - off : piece;
      const char *q = body + off, *end = q + n;
      while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
        lines++;
        q++;
      }
    }
  double mt = (now_s() - m0) / 4;
  printf("body       %8zu MB in 64 KB pieces               %10.2f GB/s  "
         "(memchr for LF: %.2f GB/s, %zu lines; scan/memchr speed %.2f)\n",
         blen >> 20, blen / dt / 1e9, blen / mt / 1e9, lines / 4, mt / dt);
  smtpd_session_del(s);
  free(body);
  smtpd_config_del(cfg);
}

static void bench_idle(void) {
  enum { N = 1000 };
  counter cnt = {0};
  smtpd_config *cfg = make_config(&cnt, 0);
  sink sk = {0};
  static smtpd_session *ss[N];
  size_t base = cnt.live;
  for (int i = 0; i < N; i++)
    ss[i] = open_session(cfg, &sk);
  size_t greeted = cnt.live - base;
  for (int i = 0; i < N; i++)
    if (send_cmd(ss[i], "EHLO client.example\r\n", 250))
      exit(1);
  size_t ehlo = cnt.live - base;
  for (int i = 0; i < N; i++)
    smtpd_session_del(ss[i]);
  printf("idle       %8d sessions: %zu bytes each after the greeting, "
         "%zu after EHLO (allocator-counted)\n",
         N, greeted / N, ehlo / N);
  if (cnt.live != base)
    printf("           LEAK: %zu bytes not freed\n", cnt.live - base);
  smtpd_config_del(cfg);
}

/* N messages of 1 MiB in one session, nothing timed: for callgrind. */
static int body_messages(long n) {
  counter cnt = {0};
  smtpd_config *cfg = make_config(&cnt, 0);
  sink sk = {0};
  size_t blen;
  const size_t piece = 64u << 10;
  char *body = make_body(1u << 20, &blen);
  smtpd_session *s = open_session(cfg, &sk);
  if (send_cmd(s, "EHLO client.example\r\n", 250))
    return 1;
  for (long i = 0; i < n; i++) {
    int code = 0;
    if (send_cmd(s, "MAIL FROM:<a@example.org>\r\n", 250) ||
        send_cmd(s, "RCPT TO:<b@example.org>\r\n", 250) ||
        send_cmd(s, "DATA\r\n", 354))
      return 1;
    for (size_t off = 0; off < blen; off += piece) {
      size_t k = blen - off < piece ? blen - off : piece;
      if (feed_all(s, body + off, k, NULL) != 0)
        return 1;
    }
    if (feed_all(s, ".\r\n", 3, &code) || code != 250)
      return 1;
  }
  smtpd_session_del(s);
  smtpd_config_del(cfg);
  free(body);
  printf("%ld messages of %zu octets\n", n, blen);
  return sk.messages == (uint64_t)n ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc > 2 && !strcmp(argv[1], "body-messages"))
    return body_messages(atol(argv[2]));
  long lockstep = argc > 1 ? atol(argv[1]) : 200000;
  long pipelined = argc > 2 ? atol(argv[2]) : 2000;
  printf("libsmtpd %s engine benchmark\n", smtpd_version(NULL));
  bench_idle();
  bench_lockstep(lockstep);
  bench_pipelined(pipelined);
  bench_body();
  return 0;
}
