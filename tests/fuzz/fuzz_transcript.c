/*
 * fuzz_transcript.c - libFuzzer harness for the transcript parser and
 * driver (include/smtpd/transcript.h, library smtpd_transcript): the
 * input is a transcript, run with smtpd_transcript_run_buffer through a
 * counting allocator, with a trace and a report stream.
 *
 * Oracles:
 *  - the result is OK, MISMATCH or INVALID_ARGUMENT (nothing else can
 *    happen with valid options and no allocation failure); res.status ==
 *    the return, res.passed == (return == OK);
 *  - every text field of the result is NUL-terminated within its size,
 *    expected/actual and every trace line printable ASCII (escaped);
 *  - a run that did not pass wrote a report starting "FAIL " or "ERROR ",
 *    a passing run wrote none;
 *  - every allocation is freed (the counting allocator ends at zero);
 *  - deterministic and split-invariant: the same transcript run again
 *    with another split (one octet per feed, or 7-octet pieces) gives the
 *    same verdict, and a malformed transcript the same line and message
 *    (it is refused before anything runs), unless the file pins @split
 *    or scripts on_body answers that depend on the number of on_body
 *    calls, which the split decides (body_count_matters).
 *
 * Input: byte 0: bits 0-1 the first run's split (0, 3 whole, 1 one
 * octet per feed, 2 chunks of byte/16+1 octets); bit 2 host-callback
 * mode (opts.callbacks with a host that accepts everything and an
 * on_paused hook: scripted decisions are then refused at their line);
 * bit 3 run the text from a file (smtpd_transcript_run_file). The rest
 * is the transcript. Transcripts
 * whose \{N:...} repeats add up to more than 2 MB are skipped (the byte
 * split of such a body takes seconds; the limits themselves are unit
 * tested). Build: tests/fuzz.cmake.
 */
#define _GNU_SOURCE /* open_memstream */
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "smtpd/transcript.h"

static size_t repeats(const char *t, size_t n) {
  size_t i, sum = 0;
  for (i = 0; i + 2 < n; i++)
    if (t[i] == '\\' && t[i + 1] == '{') {
      size_t v = 0, j = i + 2;
      while (j < n && t[j] >= '0' && t[j] <= '9' && v < 100000000)
        v = v * 10 + (size_t)(t[j++] - '0');
      sum += v;
    }
  return sum;
}

/* the transcript pins its split: a line "@split ..." (the parser also
 * takes blanks between '@' and the name) */
static int pins_split(const char *t, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (t[i] == '@') {
      size_t j = i + 1;
      while (j < n && (t[j] == ' ' || t[j] == '\t'))
        j++;
      if (j + 5 <= n && !memcmp(t + j, "split", 5))
        return 1;
    }
    while (i < n && t[i] != '\n')
      i++;
    i++;
  }
  return 0;
}

/* The words of the directive line at t[i..n) ("@ on body ..."), split at
 * spaces as the transcript parser does: up to 3 of them in w/wl. */
static int directive_words(const char *t, size_t i, size_t n,
                           const char **w, size_t *wl) {
  int k = 0;
  i++; /* the '@' */
  while (k < 3) {
    while (i < n && t[i] == ' ')
      i++;
    if (i >= n || t[i] == '\n')
      break;
    w[k] = t + i;
    while (i < n && t[i] != ' ' && t[i] != '\n')
      i++;
    wl[k] = (size_t)(t + i - w[k]);
    k++;
  }
  return k;
}

#define WORD_IS(w, l, lit) ((l) == sizeof lit - 1 && !memcmp(w, lit, l))

/* body_count_matters - the transcript scripts on_body answers whose use
 * depends on how many calls a body comes in: two or more "@on body", or
 * an "@every body" that does not accept. The number of on_body calls
 * depends on the split (docs/transcripts.md, "body"), so such a
 * transcript may pass with one split and fail with another; the split
 * oracle does not compare its runs. */
static int body_count_matters(const char *t, size_t n) {
  size_t i = 0;
  int ons = 0;
  while (i < n) {
    if (t[i] == '@') {
      const char *w[3];
      size_t wl[3];
      int k = directive_words(t, i, n, w, wl);
      if (k >= 2 && WORD_IS(w[1], wl[1], "body")) {
        if (WORD_IS(w[0], wl[0], "on"))
          ons++;
        else if (WORD_IS(w[0], wl[0], "every") &&
                 !(k == 3 && WORD_IS(w[2], wl[2], "accept")))
          return 1;
      }
    }
    while (i < n && t[i] != '\n')
      i++;
    i++;
  }
  return ons >= 2;
}

static int printable(const char *p) {
  for (; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
      return 0;
  return 1;
}

static void trace(const char *line, void *ctx) {
  size_t *n = ctx;
  FZ_CHECK(line && printable(line), "trace line not printable");
  (*n)++;
}

static int terminated(const char *f, size_t cap) {
  return memchr(f, 0, cap) != NULL;
}

static smtpd_verdict cb_accept(smtpd_session *s, void *ud) {
  (void)s;
  (void)ud;
  return SMTPD_ACCEPT;
}

static int on_paused(smtpd_session *s, void *ud) {
  (void)ud;
  return smtpd_session_resume(s, SMTPD_ACCEPT);
}

typedef struct outcome {
  int rv;
  smtpd_transcript_result res;
} outcome;

static void run(const char *text, size_t len, smtpd_transcript_split split,
                size_t chunk, int mode, outcome *o) {
  smtpd_transcript_opts opts;
  fz_mem mem;
  smtpd_mem m;
  char *rep = NULL;
  size_t replen = 0, lines = 0;
  FILE *f = open_memstream(&rep, &replen);
  memset(&mem, 0, sizeof mem);
  m = fz_make_mem(&mem);
  if (!f)
    abort();
  smtpd_transcript_opts_default(&opts);
  opts.split = split;
  opts.chunk = chunk;
  opts.mem = &m;
  opts.trace = trace;
  opts.trace_ctx = &lines;
  opts.report = f;
  opts.name = "fuzz";
  if (mode & 4) {
    static smtpd_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.version = SMTPD_CALLBACKS_VERSION;
    cb.on_connect = cb_accept;
    cb.on_data = cb_accept;
    opts.callbacks = &cb;
    opts.on_paused = on_paused;
  }
  memset(&o->res, 0x5a, sizeof o->res);
  if (mode & 8) {
    char path[64];
    FILE *tf;
    snprintf(path, sizeof path, "/tmp/smtpd-fuzz-tr-%d.txt", (int)getpid());
    tf = fopen(path, "wb");
    FZ_CHECK(tf && fwrite(text, 1, len, tf) == len, "temp file");
    fclose(tf);
    o->rv = smtpd_transcript_run_file(path, &opts, &o->res);
    unlink(path);
  } else {
    o->rv = smtpd_transcript_run_buffer(text, len, &opts, &o->res);
  }
  fclose(f);
  FZ_CHECK(o->rv == SMTPD_OK || o->rv == SMTPD_TRANSCRIPT_MISMATCH ||
               o->rv == SMTPD_ERR_INVALID_ARGUMENT,
           "run_buffer returned %d: %s", o->rv,
           terminated(o->res.message, sizeof o->res.message) ? o->res.message
                                                             : "?");
  FZ_CHECK(o->res.status == o->rv && o->res.passed == (o->rv == SMTPD_OK),
           "result status %d passed %d for %d", o->res.status, o->res.passed,
           o->rv);
  FZ_CHECK(terminated(o->res.split, sizeof o->res.split) &&
               terminated(o->res.expected, sizeof o->res.expected) &&
               terminated(o->res.actual, sizeof o->res.actual) &&
               terminated(o->res.message, sizeof o->res.message),
           "result text not NUL-terminated");
  FZ_CHECK(printable(o->res.expected) && printable(o->res.actual),
           "expected/actual not escaped: [%s] [%s]", o->res.expected,
           o->res.actual);
  if (o->rv == SMTPD_OK)
    FZ_CHECK(replen == 0, "a passing run wrote a report");
  else
    FZ_CHECK(replen > 6 && (!strncmp(rep, "FAIL ", 5) ||
                            !strncmp(rep, "ERROR ", 6)),
             "report for %d: [%.60s]", o->rv, rep ? rep : "");
  free(rep);
  FZ_CHECK(mem.live == 0, "%ld blocks (%zu octets) leaked by the driver",
           mem.live, mem.bytes_live);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text;
  size_t len, rep;
  smtpd_transcript_split split;
  size_t chunk = 1;
  outcome a, b;
  int pinned, mode;
  if (size < 1 || size > 65536)
    return 0;
  text = (const char *)data + 1;
  len = size - 1;
  rep = repeats(text, len);
  if (rep > 2000000)
    return 0;
  mode = data[0] & 12;
  split = (data[0] & 3) == 1   ? SMTPD_TRANSCRIPT_SPLIT_BYTE
          : (data[0] & 3) == 2 ? SMTPD_TRANSCRIPT_SPLIT_CHUNK
                               : SMTPD_TRANSCRIPT_SPLIT_WHOLE;
  if (split == SMTPD_TRANSCRIPT_SPLIT_CHUNK)
    chunk = data[0] / 16 + 1;
  if (split == SMTPD_TRANSCRIPT_SPLIT_BYTE && rep + len > 200000)
    split = SMTPD_TRANSCRIPT_SPLIT_WHOLE;
  run(text, len, split, chunk, mode, &a);
  if (getenv("FUZZ_DEBUG"))
    fprintf(stderr, "transcript: %d (split %s) line %u: %s\n", a.rv,
            a.res.split, a.res.line, a.res.message);
  {
    char name[24];
    if (!pins_split(text, len))
      FZ_CHECK(!strcmp(a.res.split, smtpd_transcript_split_name(
                                        split, chunk, name, sizeof name)) ||
                   a.rv == SMTPD_ERR_INVALID_ARGUMENT,
               "split reported as %s", a.res.split);
  }
  pinned = pins_split(text, len);
  if (pinned || body_count_matters(text, len))
    return 0;
  /* the other split: byte by byte when small, 7-octet pieces otherwise */
  if (split != SMTPD_TRANSCRIPT_SPLIT_BYTE && rep + len <= 200000)
    run(text, len, SMTPD_TRANSCRIPT_SPLIT_BYTE, 1, mode & 4, &b);
  else
    run(text, len, SMTPD_TRANSCRIPT_SPLIT_CHUNK,
        split == SMTPD_TRANSCRIPT_SPLIT_CHUNK && chunk == 7 ? 5 : 7, mode & 4,
        &b);
  FZ_CHECK(a.rv == b.rv, "split changed the verdict: %d (%s) vs %d (%s) at "
                         "lines %u / %u: %s | %s",
           a.rv, a.res.split, b.rv, b.res.split, a.res.line, b.res.line,
           a.res.message, b.res.message);
  if (a.rv == SMTPD_ERR_INVALID_ARGUMENT)
    FZ_CHECK(a.res.line == b.res.line && !strcmp(a.res.message, b.res.message),
             "a malformed transcript is reported differently per split");
  /* the STARTTLS discard notice comes once per feed call, with that
   * call's count: the only event whose number depends on the split */
  /* a transcript that counts starttls-discard notices may fail at a
   * different line per split: those come once per feed call (the only
   * events whose number depends on the split); its verdict still holds */
  if (a.rv == SMTPD_TRANSCRIPT_MISMATCH &&
      !memmem(text, len, "starttls-discard", 16))
    FZ_CHECK(a.res.line == b.res.line && !strcmp(a.res.expected,
                                                 b.res.expected) &&
                 (!strcmp(a.res.actual, b.res.actual) ||
                  strstr(a.res.actual, "starttls-discard") ||
                  strstr(b.res.actual, "starttls-discard")),
             "split changed where the transcript failed: line %u [%s|%s] vs "
             "line %u [%s|%s]",
             a.res.line, a.res.expected, a.res.actual, b.res.line,
             b.res.expected, b.res.actual);
  return 0;
}
