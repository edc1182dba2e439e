/*
 * deliver.h - smtpd-maildir: durable delivery off the event loop, with
 * group commit.
 *
 *   deliver_new / deliver_del   start the worker threads / finish every
 *                               queued job, join them, report the counts
 *   deliver_fd                  readable when finished jobs wait (the
 *                               loop registers it with its poller)
 *   deliver_submit              hand a received message (tmp/ file still
 *                               open) to the worker; the loop pauses the
 *                               session meanwhile
 *   deliver_take                the finished jobs, in a list
 *   deliver_job_free            after the loop has answered one (the
 *                               job and its message's buffer are kept
 *                               for the next: no malloc per message)
 *
 * The worker takes every job queued at that moment as one batch: for
 * each, the rest of its buffer is written, the file fsynced, closed and
 * renamed into new/; then ONE fsync of new/ makes every rename of the
 * batch durable (group commit: file fsyncs cannot be shared, the
 * directory's can). Only then are the jobs handed back, so the 250 goes
 * out after the message is durable. Messages that end while the worker
 * is busy wait for the next batch and share its directory fsync.
 *
 * Threads: the worker touches only the maildir_msg and the rc/err of the
 * jobs it holds, and the Maildir's directory fds (fixed after
 * maildir_open). The queue and the finished list are lock-free stacks
 * (C11 atomics: a push is a compare-and-swap, a take one exchange of
 * the whole list); an idle worker sleeps on an event count (a futex on
 * Linux, a condition variable elsewhere) that deliver_submit moves and
 * wakes only when a worker sleeps; owner is the loop's alone (set it to NULL when the connection goes:
 * the finished job then only needs freeing).
 */
#ifndef SMTPD_MAILDIR_DELIVER_H
#define SMTPD_MAILDIR_DELIVER_H

#include <stdint.h>

#include "maildir.h"

#define DELIVER_THREADS_MAX 16

typedef struct deliverer deliverer;

typedef struct deliver_job {
  struct deliver_job *next; /* queue, batch or finished list */
  maildir_msg msg;          /* the message, moved from the session */
  int rc;                   /* worker: 0 durable in new/, -1 failed */
  int err;                  /* worker: errno of the failure */
  void *owner;              /* loop only: who waits, NULL when gone */
} deliver_job;

typedef struct deliver_stats {
  uint64_t jobs;        /* messages committed or failed */
  uint64_t file_fsyncs; /* one per message that got that far */
  uint64_t dir_fsyncs;  /* one per batch with a rename in it */
  uint64_t batches;
} deliver_stats;

/* deliver_new - start nthreads workers (1..DELIVER_THREADS_MAX) for md
 * (borrowed; its directory fds must stay open until deliver_del). Each
 * idle worker takes the whole queue as its batch, so batches of several
 * workers overlap on the disk. slow_fsync_ms: the test hook's sleep
 * before every fsync (0 in real use). 0 or -1 (errno). */
int deliver_new(deliverer **out, maildir *md, int nthreads,
                unsigned slow_fsync_ms);
/* deliver_del - wait until every queued job is done, stop the worker,
 * free the jobs nobody took; the counts go to *st (may be NULL). */
void deliver_del(deliverer *d, deliver_stats *st);
int deliver_fd(const deliverer *d);
/* deliver_submit - take over *m (m->fd is -1 afterwards, even on
 * failure: then the message was dropped). The job or NULL (no memory). */
deliver_job *deliver_submit(deliverer *d, maildir_msg *m, void *owner);
/* deliver_take - every finished job (linked by next), or NULL. Empties
 * the wake-up pipe first, so a job finished later wakes the loop again. */
deliver_job *deliver_take(deliverer *d);
/* deliver_job_free - the loop is done with j: its buffer goes back to
 * the Maildir (maildir_recycle), j to a small list of spare jobs. */
void deliver_job_free(deliverer *d, deliver_job *j);

#endif
