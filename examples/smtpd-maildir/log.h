/*
 * log.h - smtpd-maildir's log: lines assembled without printf into one
 * buffer and written to stderr with one write per loop pass.
 *
 *   log_line ... log_line_end  one line written in place (the hot
 *                           lines, whose size is bounded beforehand)
 *   log_begin ... log_end   build one line from pieces: log_str,
 *                           log_text (client text made printable),
 *                           log_u64 (decimal); "smtpd-maildir: " is
 *                           put in front and "\n" behind
 *   logmsg                  a whole line, printf-style (rare lines:
 *                           start-up, errors, refusals)
 *   log_flush               write what is pending (the loop calls it,
 *                           through log_flush_pass, before it blocks,
 *                           and at exit)
 *
 * One buffer per process (the server is single-threaded; --workers
 * processes have one each). A line is at most LOG_LINE_MAX bytes before
 * its "\n" (longer ones are cut, as the printf version did). A write
 * never splits a line and is at most PIPE_BUF bytes, so lines of several
 * processes sharing one stderr never interleave. When the buffer cannot
 * take another line it is written at once.
 */
#ifndef SMTPD_MAILDIR_LOG_H
#define SMTPD_MAILDIR_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define LOG_LINE_MAX 1022
#define LOG_BUF_SIZE 16384

void log_begin(void);
void log_str(const char *s);
void log_mem(const char *s, size_t n);
/* log_copy_safe - copy at most max bytes of s (up to its NUL) to o, each one
 * outside 0x21..0x7e as '?', as log_text does; returns how many. */
size_t log_copy_safe(char *o, const char *s, size_t max);
/* log_text - at most max bytes of s, printable ASCII kept and every
 * other byte (space, controls, 8-bit) as '?'; NULL logs nothing. */
void log_text(const char *s, size_t max);
void log_u64(uint64_t v);
/* LOG_LIT - a string literal, its length known at compile time */
#define LOG_LIT(lit) log_mem("" lit, sizeof(lit) - 1)
void log_end(void);

/* log_line - room for a whole line of at most max bytes (max at most
 * LOG_LINE_MAX, "smtpd-maildir: " included and already written): the
 * caller writes its text at the pointer returned and gives the end to
 * log_line_end, which adds the "\n". For the lines of every message,
 * which know their size beforehand; no other log call in between. */
char *log_line(size_t max);
void log_line_end(char *end);

void logmsg(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

void vlogmsg(const char *fmt, va_list ap);

/* log_flush - write every complete line pending; errors are ignored (a
 * log must not stop the server). */
void log_flush(void);

/* The buffer (log.c's; here only for log_flush_pass). */
typedef struct log_buffer {
  size_t len;  /* bytes pending in buf */
  size_t line; /* where the line being built starts */
  char buf[LOG_BUF_SIZE];
} log_buffer;
extern log_buffer log_state;

/* log_flush_pass - log_flush when a line is pending (the loop, once a
 * pass: most passes log nothing and make no call). */
static inline void log_flush_pass(void) {
  if (log_state.len != 0)
    log_flush();
}

#endif
