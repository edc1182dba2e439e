/*
 * tls_session.c - what the TLS-wrapped session (smtpd_tls_session) costs
 * on a plaintext connection, beside the bare smtpd_session it wraps.
 *
 * Instructions: N whole 1 KiB transactions in memory, one connection each
 * (greeting, EHLO, MAIL, RCPT, DATA, 1066-octet body, ".", QUIT), driven
 * the way smtpd-maildir's loop drives a connection: after every read it
 * feeds, restarts the timer, writes with output/consume until nothing is
 * left, then asks is_done, want_read and want_write. Run it under
 * valgrind --tool=callgrind for N and 2N; (Ir(2N) - Ir(N)) / N is the
 * cost of one message, and the difference between "wrapped" and "bare"
 * is the wrapper's:
 *
 *   smtpd-bench-tls-session N bare|wrapped lockstep|pipelined [starttls]
 *
 * lockstep feeds one command at a time; pipelined feeds MAIL+RCPT+DATA
 * in one read and body+"."+QUIT in another. "starttls" turns STARTTLS on
 * in the config and gives the wrapper a TLS context (self-signed): the
 * plaintext path of a STARTTLS-capable listener (the client never says
 * STARTTLS).
 *
 * Memory: "idle K [starttls]" makes K greeted plaintext sessions, then
 * wraps each, and prints what the wrappers took: bytes requested from the
 * context's allocator (starttls) and the heap's in-use growth
 * (mallinfo2, glibc: requested bytes plus malloc's per-chunk overhead).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/smtpd.h"
#include "smtpd/tls_gnutls.h"

#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
#include <malloc.h>
#define HEAP_IN_USE() ((double)mallinfo2().uordblks)
#else
#define HEAP_IN_USE() 0.0 /* no portable heap statistics */
#endif

/* ---- counting allocator (the TLS context's smtpd_mem) -------------------- */

typedef struct {
  size_t live, calls;
} counter;

static void *c_malloc(size_t n, void *ctx) {
  counter *k = ctx;
  size_t *p = malloc(n + sizeof(size_t) * 2);
  if (!p)
    return NULL;
  p[0] = n;
  k->live += n;
  k->calls++;
  return p + 2;
}

static void c_free(void *ptr, void *ctx) {
  counter *k = ctx;
  size_t *p = ptr;
  if (!p)
    return;
  k->live -= p[-2];
  free(p - 2);
}

static void *c_calloc(size_t m, size_t n, void *ctx) {
  void *p = (n && m > (size_t)-1 / 2 / n) ? NULL : c_malloc(m * n, ctx);
  if (p)
    memset(p, 0, m * n);
  return p;
}

static void *c_realloc(void *ptr, size_t n, void *ctx) {
  size_t *old = ptr;
  void *p;
  if (!old)
    return c_malloc(n, ctx);
  p = c_malloc(n, ctx);
  if (!p)
    return NULL;
  memcpy(p, old, old[-2] < n ? old[-2] : n);
  c_free(old, ctx);
  return p;
}

/* ---- one connection, driven like smtpd-maildir's loop ------------------- */

typedef struct {
  smtpd_session *s;
  smtpd_tls_session *ts; /* NULL: bare */
  uint32_t timer;
  int done;
} conn;

static ptrdiff_t c_feed(conn *c, const void *d, size_t n) {
  return c->ts ? smtpd_tls_session_feed(c->ts, d, n)
               : smtpd_session_feed(c->s, d, n);
}

static void c_timer(conn *c) {
  c->timer = c->ts ? smtpd_tls_session_timeout(c->ts, NULL)
                   : smtpd_session_timeout(c->s, NULL);
}

/* flush, then what the poller would be told */
static void c_pump(conn *c) {
  const uint8_t *p;
  size_t n;
  int wr, ww;
  if (c->ts) {
    while ((n = smtpd_tls_session_output(c->ts, &p)) > 0)
      smtpd_tls_session_consume(c->ts, n);
    c->done = smtpd_tls_session_is_done(c->ts);
    wr = smtpd_tls_session_want_read(c->ts);
    ww = smtpd_tls_session_want_write(c->ts);
  } else {
    while ((n = smtpd_session_output(c->s, &p)) > 0)
      smtpd_session_consume(c->s, n);
    c->done = smtpd_session_is_done(c->s);
    wr = smtpd_session_want_read(c->s);
    ww = smtpd_session_want_write(c->s);
  }
  if (ww || (!wr && !c->done))
    abort(); /* everything was written; a plain session always reads */
}

/* one read's worth of input */
static void c_read(conn *c, const char *d, size_t n) {
  while (n) {
    ptrdiff_t k = c_feed(c, d, n);
    if (k < 0)
      abort();
    if (k > 0)
      c_timer(c);
    d += k;
    n -= (size_t)k;
    c_pump(c);
  }
}

#define READ(c, lit) c_read((c), (lit), sizeof(lit) - 1)

static smtpd_verdict on_body(smtpd_session *s, const uint8_t *d, size_t n,
                             void *ud) {
  (void)s, (void)d, (void)n, (void)ud;
  return SMTPD_ACCEPT;
}

static int open_conn(conn *c, const smtpd_config *cfg,
                     const smtpd_callbacks *cb, int wrapped,
                     smtpd_tls_ctx *ctx) {
  memset(c, 0, sizeof *c);
  if (smtpd_session_new(&c->s, cfg, cb, NULL))
    return -1;
  if (wrapped &&
      smtpd_tls_session_new(&c->ts, c->s, ctx, SMTPD_TLS_STARTTLS))
    return -1;
  if (smtpd_session_start(c->s))
    return -1;
  c_timer(c);
  c_pump(c);
  return 0;
}

static void close_conn(conn *c) {
  smtpd_tls_session_del(c->ts);
  smtpd_session_del(c->s);
}

static int idle(long k, const smtpd_config *cfg, const smtpd_callbacks *cb,
                smtpd_tls_ctx *ctx, const counter *cnt) {
  conn *v = calloc((size_t)k, sizeof *v);
  double a, b;
  size_t before = cnt->live;
  long i;
  if (!v)
    return 1;
  for (i = 0; i < k; i++) {
    if (smtpd_session_new(&v[i].s, cfg, cb, NULL) ||
        smtpd_session_start(v[i].s))
      return 1;
    c_pump(&v[i]);
  }
  a = HEAP_IN_USE();
  for (i = 0; i < k; i++) {
    if (smtpd_tls_session_new(&v[i].ts, v[i].s, ctx, SMTPD_TLS_STARTTLS))
      return 1;
    c_pump(&v[i]);
    c_timer(&v[i]);
  }
  b = HEAP_IN_USE();
  printf("idle wrappers: %ld, heap in use %.1f B each", k,
         (b - a) / (double)k);
  if (ctx)
    printf(", requested from the context's allocator %.1f B each",
           (double)(cnt->live - before) / (double)k);
  printf("\n");
  for (i = 0; i < k; i++)
    close_conn(&v[i]);
  free(v);
  return 0;
}

int main(int argc, char **argv) {
  int is_idle = argc > 1 && !strcmp(argv[1], "idle");
  long n = argc > 2 ? atol(argv[is_idle ? 2 : 1]) : 1000, i;
  int wrapped = !is_idle && argc > 2 && !strcmp(argv[2], "wrapped");
  int pipelined = argc > 3 && !strcmp(argv[3], "pipelined");
  int starttls = !strcmp(argv[argc - 1], "starttls");
  counter cnt = {0, 0};
  smtpd_mem mem = {&cnt, c_malloc, c_free, c_calloc, c_realloc};
  smtpd_tls_ctx *ctx = NULL;
  smtpd_config *cfg;
  smtpd_callbacks cb;
  char body[1200];
  size_t bl = 0;
  conn c;

  if (argc < 3) {
    fprintf(stderr, "usage: %s N bare|wrapped lockstep|pipelined [starttls]\n"
                    "       %s idle K [starttls]\n", argv[0], argv[0]);
    return 2;
  }
  memset(&cb, 0, sizeof cb);
  cb.version = SMTPD_CALLBACKS_VERSION;
  cb.on_body = on_body;
  if (smtpd_config_new(&cfg, NULL) ||
      smtpd_config_set_hostname(cfg, "mx.example.org"))
    return 1;
  if (starttls) {
    if (smtpd_config_set_option(cfg, SMTPD_OPT_STARTTLS, 1) ||
        smtpd_tls_ctx_new(&ctx, &mem) ||
        smtpd_tls_ctx_set_selfsigned(ctx, NULL))
      return 1;
  }
  if (is_idle)
    return idle(n, cfg, &cb, ctx, &cnt);
  while (bl < 1024) {
    memcpy(body + bl,
           "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
           "0123456789abcd\r\n", 78);
    bl += 78;
  }
  for (i = 0; i < n; i++) {
    if (open_conn(&c, cfg, &cb, wrapped, ctx))
      return 1;
    READ(&c, "EHLO client.example.org\r\n");
    if (pipelined) {
      READ(&c, "MAIL FROM:<sender@example.org> SIZE=1024\r\n"
               "RCPT TO:<rcpt@example.org>\r\nDATA\r\n");
      memcpy(body + bl, ".\r\nQUIT\r\n", 9);
      c_read(&c, body, bl + 9);
    } else {
      READ(&c, "MAIL FROM:<sender@example.org> SIZE=1024\r\n");
      READ(&c, "RCPT TO:<rcpt@example.org>\r\n");
      READ(&c, "DATA\r\n");
      c_read(&c, body, bl);
      READ(&c, ".\r\n");
      READ(&c, "QUIT\r\n");
    }
    if (!c.done)
      abort();
    close_conn(&c);
  }
  smtpd_tls_ctx_del(ctx);
  smtpd_config_del(cfg);
  printf("%ld transactions (%s, %s%s)\n", n, wrapped ? "wrapped" : "bare",
         pipelined ? "pipelined" : "lockstep", starttls ? ", starttls" : "");
  return 0;
}
