/*
 * api.c - the public functions of libsmtpd-transcript (transcript.h):
 * options taken by their version, a transcript from memory or a file,
 * and the readable report of a run that did not pass.
 *
 *   smtpd_transcript_opts_default  default options
 *   smtpd_transcript_run_buffer    parse and run a transcript in memory
 *   smtpd_transcript_run_file      read a file, then the same
 *   take_opts                      a caller's opts -> a full, checked copy
 *   report                         "FAIL name:line ...", context, -/+
 */
#include <stdio.h>
#include <string.h>

#include "tr_internal.h"

/* How many octets of smtpd_transcript_opts each version had. */
static size_t opts_size(unsigned version) {
  return version == 1 ? offsetof(smtpd_transcript_opts, callbacks)
                      : sizeof(smtpd_transcript_opts);
}

static int result_error(smtpd_transcript_result *res, int rc,
                        const char *msg) {
  if (res) {
    res->status = rc;
    res->passed = 0;
    snprintf(res->message, sizeof res->message, "%s", msg);
  }
  return rc;
}

/* take_opts - copy opts (NULL: defaults) by its version into o, with the
 * members of later versions absent, and check it. */
static int take_opts(const smtpd_transcript_opts *opts,
                     smtpd_transcript_opts *o, smtpd_transcript_result *res) {
  char msg[128];
  smtpd_transcript_opts_default(o);
  if (opts == NULL) {
    o->mem = smtpd_mem_default();
    return SMTPD_OK;
  }
  if (opts->version > SMTPD_TRANSCRIPT_OPTS_VERSION) {
    snprintf(msg, sizeof msg, "options version %u is newer than this "
             "library (%u)", opts->version,
             (unsigned)SMTPD_TRANSCRIPT_OPTS_VERSION);
    return result_error(res, SMTPD_ERR_UNSUPPORTED, msg);
  }
  if (opts->version == 0)
    return result_error(res, SMTPD_ERR_INVALID_ARGUMENT,
                        "invalid arguments: options version 0");
  memcpy(o, opts, opts_size(opts->version));
  o->version = SMTPD_TRANSCRIPT_OPTS_VERSION;
  if (o->mem == NULL)
    o->mem = smtpd_mem_default();
  if (o->split == SMTPD_TRANSCRIPT_SPLIT_CHUNK && o->chunk == 0)
    return result_error(res, SMTPD_ERR_INVALID_ARGUMENT,
                        "invalid arguments: SPLIT_CHUNK with chunk 0");
  if (o->sasl && o->config)
    return result_error(res, SMTPD_ERR_INVALID_ARGUMENT,
                        "invalid arguments: opts.sasl with opts.config (give "
                        "the backend to your config)");
  if (o->callbacks && o->callbacks->version == 0)
    return result_error(res, SMTPD_ERR_INVALID_ARGUMENT,
                        "invalid arguments: opts.callbacks version 0");
  if (o->callbacks && o->callbacks->version > SMTPD_CALLBACKS_VERSION) {
    snprintf(msg, sizeof msg, "opts.callbacks version %u is newer than this "
             "library (%u)", o->callbacks->version,
             (unsigned)SMTPD_CALLBACKS_VERSION);
    return result_error(res, SMTPD_ERR_UNSUPPORTED, msg);
  }
  return SMTPD_OK;
}

/* context - lines line-2 .. line+1 of text, the failing one marked. */
static void context(FILE *f, const char *text, size_t len, unsigned line) {
  size_t pos = 0;
  unsigned n = 0;
  if (line == 0)
    return;
  while (pos < len && n <= line + 1) {
    const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
    size_t k = nl ? (size_t)(nl - s) : len - pos;
    pos += k + (nl ? 1 : 0);
    n++;
    if (k && s[k - 1] == '\r')
      k--;
    if (n + 2 >= line && n <= line + 1) {
      if (k > 100)
        fprintf(f, "  %s %4u | %.97s...\n", n == line ? ">" : " ", n, s);
      else
        fprintf(f, "  %s %4u | %.*s\n", n == line ? ">" : " ", n, (int)k,
                s);
    }
  }
}

/* report - a run that did not pass, readable: what, where, the lines
 * around it, expected (-) and actual (+). */
static void report(FILE *f, const char *name, const char *text, size_t len,
                   int rc, const smtpd_transcript_result *res) {
  if (f == NULL || rc == SMTPD_OK)
    return;
  if (rc == SMTPD_TRANSCRIPT_MISMATCH) {
    fprintf(f, "FAIL %s:%u (split %s): %s\n", name, res->line, res->split,
            res->message);
    context(f, text, len, res->line);
    if (res->expected[0] || res->actual[0]) {
      fprintf(f, "  - %s\n", res->expected[0] ? res->expected : "(none)");
      fprintf(f, "  + %s\n", res->actual[0] ? res->actual : "(none)");
    }
  } else {
    fprintf(f, "ERROR %s: %s\n", name,
            res->message[0] ? res->message : smtpd_strerror(rc));
    context(f, text, len, res->line);
  }
  fflush(f);
}

/* run_text - parse and run with checked options. */
static int run_text(const char *text, size_t len,
                    const smtpd_transcript_opts *o, const char *name,
                    smtpd_transcript_result *res) {
  tr_parsed p;
  int rc;
  memset(&p, 0, sizeof p);
  p.mem = o->mem;
  p.host_callbacks = o->callbacks != NULL;
  p.host_config = o->config != NULL;
  if (len > TR_MAX_FILE)
    rc = smtpd_tr_perr(res, 0, "transcript larger than %u bytes", TR_MAX_FILE);
  else
    rc = smtpd_tr_parse(&p, text, len, res);
  if (rc == SMTPD_OK)
    rc = smtpd_tr_run_parsed(&p, o, res);
  else if (rc == SMTPD_ERR_NOMEM)
    snprintf(res->message, sizeof res->message, "out of memory");
  smtpd_tr_free(p.mem, p.items);
  smtpd_tr_buf_free(p.mem, &p.pay);
  res->status = rc;
  res->passed = rc == SMTPD_OK;
  report(o->report, name, text, len, rc, res);
  return rc;
}

void smtpd_transcript_opts_default(smtpd_transcript_opts *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof *opts);
  opts->version = SMTPD_TRANSCRIPT_OPTS_VERSION;
  opts->split = SMTPD_TRANSCRIPT_SPLIT_WHOLE;
  opts->chunk = 1;
}

int smtpd_transcript_run_buffer(const char *text, size_t len,
                                const smtpd_transcript_opts *opts,
                                smtpd_transcript_result *res) {
  smtpd_transcript_opts o;
  smtpd_transcript_result local;
  int rc;
  if (res == NULL)
    res = &local;
  memset(res, 0, sizeof *res);
  snprintf(res->split, sizeof res->split, "whole");
  rc = take_opts(opts, &o, res);
  if (rc != SMTPD_OK)
    return rc;
  if (text == NULL && len)
    return result_error(res, SMTPD_ERR_INVALID_ARGUMENT,
                        "invalid arguments: NULL text");
  return run_text(text ? text : "", len, &o,
                  o.name ? o.name : "transcript", res);
}

int smtpd_transcript_run_file(const char *path,
                              const smtpd_transcript_opts *opts,
                              smtpd_transcript_result *res) {
  smtpd_transcript_opts o;
  smtpd_transcript_result local;
  const char *name;
  char msg[SMTPD_TRANSCRIPT_TEXT_MAX];
  FILE *f;
  tr_buf b;
  int rc;
  if (res == NULL)
    res = &local;
  memset(res, 0, sizeof *res);
  snprintf(res->split, sizeof res->split, "whole");
  rc = take_opts(opts, &o, res);
  if (rc != SMTPD_OK)
    return rc;
  if (path == NULL)
    return result_error(res, SMTPD_ERR_INVALID_ARGUMENT,
                        "invalid arguments: NULL path");
  name = o.name ? o.name : path;
  memset(&b, 0, sizeof b);
  f = fopen(path, "rb");
  if (f == NULL) {
    snprintf(msg, sizeof msg, "cannot open %s", path);
    rc = result_error(res, SMTPD_ERR_IO, msg);
    report(o.report, name, "", 0, rc, res);
    return rc;
  }
  for (;;) {
    size_t got;
    if (smtpd_tr_buf_reserve(o.mem, &b, 65536) < 0) {
      fclose(f);
      smtpd_tr_buf_free(o.mem, &b);
      rc = result_error(res, SMTPD_ERR_NOMEM, "out of memory");
      report(o.report, name, "", 0, rc, res);
      return rc;
    }
    got = fread(b.p + b.len, 1, 65536, f);
    b.len += got;
    if (got < 65536 || b.len > TR_MAX_FILE)
      break;
  }
  if (ferror(f)) {
    fclose(f);
    smtpd_tr_buf_free(o.mem, &b);
    snprintf(msg, sizeof msg, "cannot read %s", path);
    rc = result_error(res, SMTPD_ERR_IO, msg);
    report(o.report, name, "", 0, rc, res);
    return rc;
  }
  fclose(f);
  rc = run_text(b.p ? (const char *)b.p : "", b.len, &o, name, res);
  smtpd_tr_buf_free(o.mem, &b);
  return rc;
}
