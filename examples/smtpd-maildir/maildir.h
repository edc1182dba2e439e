/*
 * maildir.h - smtpd-maildir: deliver messages into a Maildir, safely.
 *
 *   maildir_open / maildir_close    the tmp/ new/ cur/ directories
 *   maildir_begin                   create tmp/<unique> for one message
 *   maildir_write                   append bytes (buffered)
 *   maildir_commit                  flush, fsync, rename into new/, fsync
 *                                   new/ (call before answering 250)
 *   maildir_start_writeback         flush and start writing the file
 *                                   out (Linux: sync_file_range), so
 *                                   the fsyncs of a batch overlap
 *   maildir_commit_file             the first half: flush, fsync, rename
 *                                   into new/ (no directory fsync)
 *   maildir_sync_new                the second half: fsync new/ (one call
 *                                   may serve many commit_file calls:
 *                                   group commit, deliver.c)
 *   maildir_abort                   drop the message, unlink tmp/<unique>
 *
 * A message costs a 64 KiB write buffer only while it is being received
 * and committed; an idle session holds no maildir state. The loop keeps
 * up to MAILDIR_SPARE_BUFS buffers of finished messages for the next
 * ones (maildir_recycle), so a message in the steady state costs no
 * malloc/free of its buffer; maildir_close frees them.
 */
#ifndef SMTPD_MAILDIR_MAILDIR_H
#define SMTPD_MAILDIR_MAILDIR_H

#include <stddef.h>
#include <stdint.h>

#define MAILDIR_BUF_SIZE 65536
#define MAILDIR_SPARE_BUFS 4

typedef struct maildir {
  int tmpfd, newfd;      /* directory fds of tmp/ and new/ */
  char host[64];         /* this host's name, made safe for file names */
  unsigned long counter; /* per-process part of unique names */
  long pid;              /* getpid(), read at the first name */
  /* the loop's alone (the delivery threads read only the fds above): */
  char tail[96];         /* "P<pid>Q" of unique names, and its length */
  size_t tail_len;
  long long sec;         /* the second sec_text spells, and its length */
  char sec_text[24];
  size_t sec_len;
  unsigned char *spare[MAILDIR_SPARE_BUFS]; /* free write buffers */
  int nspare;
} maildir;

typedef struct maildir_msg {
  int fd;             /* -1 when no message is open */
  int failed;         /* a write failed: commit will refuse */
  int err;            /* errno of the first failure (ENOSPC: disk full) */
  char name[128];     /* unique file name, same in tmp/ and new/ */
  unsigned char *buf; /* MAILDIR_BUF_SIZE bytes */
  size_t buflen;
  uint64_t written;   /* bytes given to maildir_write */
} maildir_msg;

/* maildir_open - create DIR, DIR/tmp, DIR/new, DIR/cur as needed. 0 or -1
 * (errno set). */
int maildir_open(maildir *md, const char *dir);
void maildir_close(maildir *md);
/* maildir_unique - a fresh unique name "sec.MusecPpidQn.host" (also a
 * good queue id source). */
void maildir_unique(maildir *md, char *out, size_t cap);
/* maildir_begin - 0 or -1 (errno set). m->fd == -1 afterwards on failure. */
int maildir_begin(maildir *md, maildir_msg *m);
void maildir_write(maildir_msg *m, const void *data, size_t len);
/* maildir_commit - 0 when the message is safely in new/, else -1 and the
 * tmp file is gone. Either way m is closed and its buffer recycled. */
int maildir_commit(maildir *md, maildir_msg *m);
/* maildir_recycle - keep m's write buffer for the next message (or free
 * it when MAILDIR_SPARE_BUFS are kept already). The loop's thread only;
 * m must be closed (after maildir_commit_file). */
void maildir_recycle(maildir *md, maildir_msg *m);
/* maildir_start_writeback - write the buffer, and ask the kernel to
 * start writing the file to disk without waiting (Linux). A failure
 * shows at commit. Thread-safe as maildir_commit_file. */
void maildir_start_writeback(maildir_msg *m);
/* maildir_commit_file - flush, fsync and close the file, rename it into
 * new/. 0, or -1 with m->err set and the tmp file gone; m is closed
 * either way, and its buffer stays in m->buf for the loop to give back
 * with maildir_recycle. Not durable until maildir_sync_new returned 0.
 * delay_ms: the test hook's sleep before the fsync (0 in real use).
 * Touches only m and md's directory fds: safe on a thread of its own. */
int maildir_commit_file(maildir *md, maildir_msg *m, unsigned delay_ms);
/* maildir_sync_new - fsync new/ (after delay_ms). 0 or -1 (errno). */
int maildir_sync_new(maildir *md, unsigned delay_ms);
void maildir_abort(maildir *md, maildir_msg *m);

#endif
