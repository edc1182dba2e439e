/*
 * smtpd-transcript.c - run SMTP transcript files against libsmtpd.
 *
 *   smtpd-transcript [--split=whole|byte|N|all] [-v] FILE...
 *
 * Each file (format: docs/transcripts.md) is run with every requested
 * split (default "all": whole packets, then one byte at a time). Prints
 * "ok FILE" when every run passes, otherwise the first difference with
 * its line number, a few lines of context and the expected/actual text.
 * Exits 0 when every file passed, 1 on a mismatch, 2 on usage errors or
 * malformed/unreadable files. The failure report is the library's
 * (opts.report); the manual is smtpd-transcript(1).
 *
 *   main         argument parsing, one run per file and split
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/transcript.h"

/* print_trace - -v: the conversation as it happens. */
static void print_trace(const char *line, void *ctx) {
  (void)ctx;
  printf("    %s\n", line);
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: smtpd-transcript [--split=whole|byte|N|all] [-v] FILE...\n"
          "  Runs each SMTP transcript against libsmtpd and reports the\n"
          "  first difference. --split: how client packets are fed (all =\n"
          "  whole and byte, the default). -v: print the conversation.\n"
          "  Format: docs/transcripts.md\n");
}

int main(int argc, char **argv) {
  smtpd_transcript_split splits[2];
  size_t chunk = 1;
  int nsplits = 2, verbose = 0, i, worst = 0, files = 0, failed = 0;

  splits[0] = SMTPD_TRANSCRIPT_SPLIT_WHOLE;
  splits[1] = SMTPD_TRANSCRIPT_SPLIT_BYTE;
  for (i = 1; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
      verbose = 1;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strncmp(a, "--split=", 8) == 0) {
      const char *v = a + 8;
      char *end;
      unsigned long n;
      nsplits = 1;
      if (strcmp(v, "all") == 0) {
        nsplits = 2;
      } else if (strcmp(v, "whole") == 0) {
        splits[0] = SMTPD_TRANSCRIPT_SPLIT_WHOLE;
      } else if (strcmp(v, "byte") == 0) {
        splits[0] = SMTPD_TRANSCRIPT_SPLIT_BYTE;
      } else if ((n = strtoul(v, &end, 10)) > 0 && *end == '\0' &&
                 v[0] >= '0' && v[0] <= '9') {
        splits[0] = SMTPD_TRANSCRIPT_SPLIT_CHUNK;
        chunk = (size_t)n;
      } else {
        fprintf(stderr, "smtpd-transcript: bad --split value: %s\n", v);
        usage(stderr);
        return 2;
      }
    } else {
      fprintf(stderr, "smtpd-transcript: unknown option: %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }

  for (; i < argc; i++) {
    const char *path = argv[i];
    char names[64] = "";
    int k, ok = 1;
    files++;
    for (k = 0; k < nsplits && ok; k++) {
      smtpd_transcript_opts opts;
      smtpd_transcript_result res;
      int rc;
      smtpd_transcript_opts_default(&opts);
      opts.split = splits[k];
      opts.chunk = chunk;
      opts.report = stdout; /* FAIL/ERROR, context lines, - expected / +
                               actual */
      if (verbose) {
        char nm[24];
        opts.trace = print_trace;
        printf("run %s (split %s)\n", path,
               smtpd_transcript_split_name(splits[k], chunk, nm, sizeof nm));
      }
      rc = smtpd_transcript_run_file(path, &opts, &res);
      if (rc == SMTPD_OK) {
        if (strstr(names, res.split) == NULL) {
          if (names[0])
            strcat(names, ", ");
          strncat(names, res.split, sizeof names - strlen(names) - 1);
        }
        continue;
      }
      ok = 0;
      failed++;
      if (rc == SMTPD_TRANSCRIPT_MISMATCH) {
        if (worst < 1)
          worst = 1;
      } else {
        worst = 2;
      }
    }
    if (ok)
      printf("ok %s (%s)\n", path, names);
  }
  if (files > 1)
    printf("%d of %d transcript%s passed\n", files - failed, files,
           files == 1 ? "" : "s");
  return worst;
}
