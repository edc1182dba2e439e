/*
 * result.c - what a run reports: the first mismatch (later ones are
 * dropped, so the report names the cause), running out of memory, the
 * trace hook's lines, and the printable name of the split the run used.
 * Every other file of the driver records through these; they call
 * nothing of the driver but text.c.
 *
 *   smtpd_tr_fail                the first mismatch, with expected/actual
 *   smtpd_tr_nomem               out of memory
 *   smtpd_tr_trace               one escaped line to opts.trace
 *   smtpd_transcript_split_name  printable name of a split mode (public)
 */
#include <stdarg.h>
#include <stdio.h>

#include "tr_internal.h"

void smtpd_tr_fail(tr_run *r, unsigned line, const char *exp, const char *act,
                   const char *fmt, ...) {
  va_list ap;
  smtpd_transcript_result *res = r->res;
  if (r->status != SMTPD_OK)
    return;
  r->status = SMTPD_TRANSCRIPT_MISMATCH;
  if (res == NULL)
    return;
  res->line = line;
  va_start(ap, fmt);
  vsnprintf(res->message, sizeof res->message, fmt, ap);
  va_end(ap);
  snprintf(res->expected, sizeof res->expected, "%s", exp ? exp : "");
  snprintf(res->actual, sizeof res->actual, "%s", act ? act : "");
}

void smtpd_tr_nomem(tr_run *r) {
  if (r->status == SMTPD_OK) {
    r->status = SMTPD_ERR_NOMEM;
    if (r->res)
      snprintf(r->res->message, sizeof r->res->message, "out of memory");
  }
}

void smtpd_tr_trace(tr_run *r, const char *prefix, const unsigned char *b,
                    size_t n) {
  char line[1024];
  tr_tbuf t;
  if (r->opts->trace == NULL)
    return;
  smtpd_tr_tb_init(&t, line, sizeof line);
  smtpd_tr_tb_str(&t, prefix);
  smtpd_tr_tb_esc(&t, b, n);
  r->opts->trace(line, r->opts->trace_ctx);
}

const char *smtpd_transcript_split_name(smtpd_transcript_split split,
                                        size_t chunk, char *buf, size_t cap) {
  if (buf == NULL || cap == 0)
    return "";
  if (split == SMTPD_TRANSCRIPT_SPLIT_BYTE)
    snprintf(buf, cap, "byte");
  else if (split == SMTPD_TRANSCRIPT_SPLIT_CHUNK)
    snprintf(buf, cap, "%lu", (unsigned long)chunk);
  else
    snprintf(buf, cap, "whole");
  return buf;
}
