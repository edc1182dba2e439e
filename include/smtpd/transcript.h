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
 * The driver is its own library, libsmtpd-transcript (pkg-config
 * libsmtpd-transcript, CMake smtpd::transcript); the core library has no
 * transcript code and reads no files.
 *
 * Two ways to decide: the transcript scripts the host's decisions itself
 * (@on / @every / @effects / !resume VERDICT), or it runs against the
 * host's real callbacks (opts.callbacks, opts.user_data, opts.config,
 * opts.on_paused), so a unit test checks the policy, not a mock of it.
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
 *   S: text            expected server line (exact bytes, CRLF implied;
 *                      \* matches a run of non-space bytes)
 *   S+ KEYWORD [ARG]   the current multi-line reply (EHLO) has this
 *   S- KEYWORD [ARG]   keyword line / has none
 *   NOTHING            expect no server output at this point
 *   CLOSED             expect the session to be closing (wants no input)
 *   E: event           this event fired since the previous check
 *   E! event           no such event fired since the previous check
 *   B: text / B~ text  expected message body line (CRLF implied / not)
 *   T: kind [ms]       the timeout that applies now (none/command/data)
 *   !timeout !tls !close !resume   host actions (with host callbacks,
 *                      a bare !resume asks opts.on_paused again)
 *
 * Configuration directives set up the smtpd_config (@hostname, @option,
 * @param, @command, ...); decision directives (@on, @every, @effects)
 * answer the session's callbacks with a verdict: accept, reject,
 * tempfail, defer, disconnect or abort.
 *
 * Escapes in text: \r \n \t \0 \\ \xHH, and \{N:chars} for chars
 * repeated N times (chars: printable, no '}', no '\'); in S: and E: lines
 * also \*, a wildcard for one or more bytes other than a space (queue
 * ids, sizes).
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
#include <stdio.h>

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

/* What opts.on_paused returns to leave the session paused (see below). */
#define SMTPD_TRANSCRIPT_HOLD 1

/* Options. Versioned like smtpd_callbacks: set version to
 * SMTPD_TRANSCRIPT_OPTS_VERSION (smtpd_transcript_opts_default does); the
 * library reads as many members as that version had, treats the newer
 * ones as absent, and refuses a newer version with SMTPD_ERR_UNSUPPORTED.
 * Members are only ever added at the end.
 *  version 1 (0.2): version .. trace_ctx
 *  version 2 (0.3): callbacks, user_data, config, on_paused, report,
 *                   name */
#define SMTPD_TRANSCRIPT_OPTS_VERSION 2
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

  /* ---- version 2 ---- */
  /* callbacks - the host's own callbacks (copied by their version, as
   * smtpd_session_new does): the session calls them with user_data as
   * ud, so the transcript tests the real policy. The driver sits between
   * the session and them, logs every callback as the same event as in
   * the scripted form (so E: / E! lines and B: lines still work), then
   * calls the host's (none set: the library's default). A transcript
   * with @on, @every, @effects or "!resume VERDICT" is then refused
   * (SMTPD_ERR_INVALID_ARGUMENT at that line): it would script what the
   * host decides. In this mode the session's own user data
   * (smtpd_session_user_data) belongs to the driver: use the ud
   * argument, and do not call smtpd_session_set_user_data. */
  const smtpd_callbacks *callbacks;
  void *user_data;
  /* config - the host's configuration, used as it is (borrowed, not
   * changed; it must outlive the run). Configuration directives (@hostname,
   * @option, @sasl, ...) are then refused at their line, and so is
   * opts.sasl (give the backend to your config). NULL: the driver makes
   * one from the directives. @client, @implicit-tls, @proxy and @split
   * still apply (they are not configuration). */
  smtpd_config *config;
  /* on_paused - a host callback deferred a decision (SMTPD_DEFER) and
   * the call the driver made (start, feed, resume, an action) returned
   * with the session paused: do what the host's event loop would do when
   * the deferred work completes, i.e. optionally smtpd_session_set_reply,
   * then smtpd_session_resume(s, verdict), and return what resume
   * returned (0, or SMTPD_ERR_CALLBACK_FAILURE after SMTPD_ABORT). Or
   * return SMTPD_TRANSCRIPT_HOLD to leave the session paused: the
   * transcript goes on (a group can check NOTHING, E! ...) and the hook
   * is called again at the next bare "!resume" line. ud is user_data.
   * Called with the session only, never from inside a callback. NULL: a
   * deferral is a mismatch. */
  int (*on_paused)(smtpd_session *s, void *ud);
  /* report - when set, a run that did not pass writes a readable report
   * here: "FAIL NAME:LINE (split S): message", the transcript lines
   * around LINE with their numbers (the failing one marked '>'), then
   * "  - EXPECTED" / "  + ACTUAL" (e.g. "  - S: 250 2.1.5 Ok" and
   * "  + S: 550 5.1.1 ..."); a malformed transcript gives "ERROR NAME:
   * message" and the context. Nothing is written for a passing run. */
  FILE *report;
  /* name - the transcript's name in the report; NULL: the path given to
   * smtpd_transcript_run_file, or "transcript". */
  const char *name;
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
 * allocator, no SASL backend, no trace; scripted decisions (no host
 * callbacks, config or hook), no report. */
SMTPD_API void smtpd_transcript_opts_default(smtpd_transcript_opts *opts);

/* smtpd_transcript_run_buffer - parse text[0..len) as a transcript and run
 * it once with the split of opts (or the file's @split). opts may be NULL
 * (defaults); res may be NULL. Returns SMTPD_OK when every expectation
 * held, SMTPD_TRANSCRIPT_MISMATCH when the session differed (res says
 * where), SMTPD_ERR_INVALID_ARGUMENT for a malformed transcript (res->line
 * and res->message say what is wrong; nothing was run) or bad opts
 * (version 0, SPLIT_CHUNK with chunk 0, callbacks of version 0, sasl
 * together with config), SMTPD_ERR_UNSUPPORTED for an opts version newer
 * than SMTPD_TRANSCRIPT_OPTS_VERSION (or callbacks newer than
 * SMTPD_CALLBACKS_VERSION), SMTPD_ERR_NOMEM when an allocation failed. */
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
