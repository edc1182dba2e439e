/*
 * transcript.h - libsmtpd canned-conversation driver.
 *
 * A transcript is a small text file describing one SMTP conversation: what
 * the client sends, what the server must answer byte for byte, what the
 * host decides at each event, and which events must fire. The driver runs
 * it against a real smtpd_session through the public API only and reports
 * the first difference with its transcript line number.
 *
 *   smtpd_transcript_opts_default  fill an options struct with defaults
 *   smtpd_transcript_run_buffer    run a transcript held in memory
 *   smtpd_transcript_run_file      run a transcript file
 *   smtpd_transcript_split_name    "whole", "byte" or the chunk size
 *
 * File format (full reference with examples: docs/transcripts.md). One
 * item per line; the tag is the first two characters:
 *
 *   # text             comment (whole line only)
 *   @NAME ARGS         directive: configuration (before the first
 *                      conversation line) or a host decision (anywhere)
 *   C: text            client line: text, unescaped, plus CRLF
 *   C~ text            client bytes without the implied CRLF
 *   --                 (or a blank line) ends a packet without reading
 *   S: text            expected server line (exact bytes, CRLF implied)
 *   NOTHING            expect no server output at this point
 *   CLOSED             expect the session to be closing (wants no input)
 *   E: event           this event fired since the previous check
 *   E! event           no such event fired since the previous check
 *   B: text / B~ text  expected message body line (CRLF implied / not)
 *   T: kind [ms]       the timeout that applies now (none/command/data)
 *   !timeout !tls !close !resume   host actions
 *
 * Configuration directives set up the smtpd_config (@hostname, @option,
 * @param, @command, ...); decision directives (@on, @every, @effects)
 * answer the session's callbacks with a verdict: accept, reject,
 * tempfail, defer, disconnect or abort.
 *
 * Escapes in text: \r \n \t \0 \\ \xHH, and \{N:chars} for chars
 * repeated N times (chars: printable, no '}', no '\').
 *
 * Consecutive client lines form one packet, fed to the session together
 * (whole, one byte at a time, or in N-byte chunks: the split). Server
 * output is read (drained and consumed) only where the transcript has
 * expectation lines (S: E: E! B: T: NOTHING CLOSED), and everything read
 * there must equal the S: lines exactly. A client that sends packets with
 * no S: line between them has not read the replies, which is exactly
 * what the engine's pipelining-synchronization check looks at.
 */
#ifndef SMTPD_TRANSCRIPT_H
#define SMTPD_TRANSCRIPT_H

#include <stddef.h>

#include "smtpd/smtpd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the driver cuts each packet into smtpd_session_feed() calls. */
typedef enum smtpd_transcript_split {
  SMTPD_TRANSCRIPT_SPLIT_WHOLE = 0, /* one feed per packet */
  SMTPD_TRANSCRIPT_SPLIT_BYTE,      /* one feed per byte */
  SMTPD_TRANSCRIPT_SPLIT_CHUNK      /* feeds of opts.chunk bytes */
} smtpd_transcript_split;

/* Returned by the run functions (besides SMTPD_OK and negative errors)
 * when the transcript ran and the session did not behave as written. A
 * positive result, not an error (smtpd.h lists its value beside the error
 * table); compare with the name, never with a number. */
#define SMTPD_TRANSCRIPT_MISMATCH SMTPD_RESULT_TRANSCRIPT_MISMATCH

#define SMTPD_TRANSCRIPT_OPTS_VERSION 1
typedef struct smtpd_transcript_opts {
  unsigned version;              /* SMTPD_TRANSCRIPT_OPTS_VERSION */
  smtpd_transcript_split split;  /* default SPLIT_WHOLE */
  size_t chunk;                  /* bytes per feed for SPLIT_CHUNK (>= 1) */
  int ignore_pinned_split;       /* non-zero: ignore a file's @split */
  const smtpd_mem *mem;          /* allocator for the driver and the
                                    session; NULL = libc */
  const struct smtpd_sasl_backend *sasl; /* optional AUTH backend given to
                                    the configuration (NULL: none) */
  /* trace - when set, called with each conversation line as it happens
   * ("C: ...", "S: ...", "E: ...", "!tls", ...), escaped, no newline. */
  void (*trace)(const char *line, void *ctx);
  void *trace_ctx;
} smtpd_transcript_opts;

/* Outcome of one run. Text fields are NUL-terminated, escaped with the
 * transcript escapes (so they can be pasted into a transcript) and
 * truncated with "..." when longer than the field. */
#define SMTPD_TRANSCRIPT_TEXT_MAX 512
typedef struct smtpd_transcript_result {
  int status;        /* same as the run function's return value */
  int passed;        /* 1 when status == SMTPD_OK */
  unsigned line;     /* transcript line of the first difference or of the
                        syntax error; 0 when not tied to a line */
  char split[24];    /* split actually used: "whole", "byte", "3" */
  char expected[SMTPD_TRANSCRIPT_TEXT_MAX]; /* e.g. "S: 250 2.1.5 Ok" */
  char actual[SMTPD_TRANSCRIPT_TEXT_MAX];   /* e.g. "S: 550 5.1.1 No" */
  char message[SMTPD_TRANSCRIPT_TEXT_MAX];  /* human-readable summary */
} smtpd_transcript_result;

/* smtpd_transcript_opts_default - version set, whole-packet split, libc
 * allocator, no SASL backend, no trace. */
SMTPD_API void smtpd_transcript_opts_default(smtpd_transcript_opts *opts);

/* smtpd_transcript_run_buffer - parse text[0..len) as a transcript and run
 * it once with the split of opts (or the file's @split). opts may be NULL
 * (defaults); res may be NULL. Returns SMTPD_OK when every expectation
 * held, SMTPD_TRANSCRIPT_MISMATCH when the session differed (res says
 * where), SMTPD_ERR_INVALID_ARGUMENT for a malformed transcript (res->line
 * and res->message say what is wrong; nothing was run) or bad opts
 * (version 0, SPLIT_CHUNK with chunk 0), SMTPD_ERR_UNSUPPORTED for an
 * opts version newer than SMTPD_TRANSCRIPT_OPTS_VERSION, SMTPD_ERR_NOMEM
 * when an allocation failed. */
SMTPD_API int smtpd_transcript_run_buffer(const char *text, size_t len,
                                          const smtpd_transcript_opts *opts,
                                          smtpd_transcript_result *res);

/* smtpd_transcript_run_file - the same for a file; SMTPD_ERR_IO when it
 * cannot be read. */
SMTPD_API int smtpd_transcript_run_file(const char *path,
                                        const smtpd_transcript_opts *opts,
                                        smtpd_transcript_result *res);

/* smtpd_transcript_split_name - "whole", "byte" or the decimal chunk size,
 * written into buf (NUL-terminated, truncated to cap); returns buf. */
SMTPD_API const char *smtpd_transcript_split_name(smtpd_transcript_split split,
                                                  size_t chunk, char *buf,
                                                  size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* SMTPD_TRANSCRIPT_H */
