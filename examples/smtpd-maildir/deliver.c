/*
 * deliver.c - smtpd-maildir: the delivery worker thread (deliver.h).
 *
 *   deliver_new, deliver_del, deliver_fd, deliver_submit, deliver_take,
 *   deliver_job_free
 *   worker        take the whole queue, commit_batch it, post it back
 *   commit_batch  writeback started for all, then file fsync + rename
 *                 per job, one new/ fsync per batch
 *   take, idle_wait, idle_wake
 *                 the hand-off: the queue in arrival order, an idle
 *                 worker's sleep and its wake-up
 */
#define _GNU_SOURCE
#include "deliver.h"
#include "sysio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

/* The hand-off (see deliver.h, "Threads"): two lock-free stacks and an
 * event count, so a message costs the loop and a worker a few atomic
 * operations and, when a worker sleeps, one futex wake (Linux; a mutex
 * and condition variable elsewhere, only to sleep and wake). */
struct deliverer {
  maildir *md;
  unsigned slow_ms;
  pthread_t thread[DELIVER_THREADS_MAX];
  int nthreads;
  _Atomic(deliver_job *) queue; /* submitted, newest first */
  _Atomic(deliver_job *) done;  /* finished, for deliver_take */
  atomic_uint seq;              /* bumped by every submit and by stop */
  atomic_int sleepers;          /* workers inside idle_wait */
  atomic_int stop;
  atomic_uint_fast64_t jobs, file_fsyncs, dir_fsyncs, batches;
#if !defined(__linux__)
  pthread_mutex_t mu;           /* idle_wait / idle_wake only */
  pthread_cond_t cv;
#endif
  int rfd, wfd;             /* wake-up pipe: a byte when done filled */
  deliver_job *spare;       /* the loop's alone: freed jobs for reuse */
  int nspare;
};

/* idle_wait - sleep until seq is no longer seen (or a spurious wake:
 * the caller looks again either way). */
static void idle_wait(deliverer *d, unsigned seen) {
#if defined(__linux__)
  syscall(SYS_futex, &d->seq, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
  pthread_mutex_lock(&d->mu);
  while (atomic_load(&d->seq) == seen)
    pthread_cond_wait(&d->cv, &d->mu);
  pthread_mutex_unlock(&d->mu);
#endif
}

/* idle_wake - seq moved: wake one sleeping worker (all: stop). */
static void idle_wake(deliverer *d, int all) {
#if defined(__linux__)
  syscall(SYS_futex, &d->seq, FUTEX_WAKE_PRIVATE, all ? INT_MAX : 1, NULL,
          NULL, 0);
#else
  pthread_mutex_lock(&d->mu);
  if (all)
    pthread_cond_broadcast(&d->cv);
  else
    pthread_cond_signal(&d->cv);
  pthread_mutex_unlock(&d->mu);
#endif
}

#define SPARE_JOBS_MAX 64

/* Every job of the batch: its file durable and in new/, then one fsync
 * of new/ for all the renames. A failed directory fsync fails every job
 * whose rename it was to make durable. The writeback of every file is
 * started first, so the file system can commit their blocks together
 * and the later fsyncs of the batch mostly find the work done. */
static void commit_batch(deliverer *d, deliver_job *batch,
                         deliver_stats *st) {
  int renamed = 0;
  if (batch->next) /* a lone job gains nothing */
    for (deliver_job *j = batch; j; j = j->next)
      maildir_start_writeback(&j->msg);
  for (deliver_job *j = batch; j; j = j->next) {
    st->jobs++;
    if (j->msg.fd >= 0 && !j->msg.failed)
      st->file_fsyncs++;
    j->rc = maildir_commit_file(d->md, &j->msg, d->slow_ms);
    j->err = j->rc == 0 ? 0 : j->msg.err ? j->msg.err : EIO;
    renamed += j->rc == 0;
  }
  st->batches++;
  if (renamed == 0)
    return;
  st->dir_fsyncs++;
  if (maildir_sync_new(d->md, d->slow_ms) != 0) {
    int e = errno;
    for (deliver_job *j = batch; j; j = j->next)
      if (j->rc == 0)
        j->rc = -1, j->err = e;
  }
}

/* take - the whole queue, oldest first, or NULL. */
static deliver_job *take(deliverer *d) {
  deliver_job *j = atomic_exchange(&d->queue, NULL), *fifo = NULL;
  while (j) { /* the stack is newest first: reverse it */
    deliver_job *next = j->next;
    j->next = fifo;
    fifo = j;
    j = next;
  }
  return fifo;
}

static void *worker(void *arg) {
  deliverer *d = arg;
  for (;;) {
    deliver_job *batch = take(d);
    if (batch == NULL) {
      if (atomic_load(&d->stop))
        break; /* stop, and nothing left to do */
      /* event count: the submit after our look at the queue moves seq,
       * so the futex does not sleep through it */
      unsigned seen = atomic_load(&d->seq);
      atomic_fetch_add(&d->sleepers, 1);
      if (atomic_load(&d->queue) == NULL && !atomic_load(&d->stop))
        idle_wait(d, seen);
      atomic_fetch_sub(&d->sleepers, 1);
      continue;
    }
    deliver_stats st = {0, 0, 0, 0};
    commit_batch(d, batch, &st);
    atomic_fetch_add_explicit(&d->jobs, st.jobs, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->file_fsyncs, st.file_fsyncs,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&d->dir_fsyncs, st.dir_fsyncs,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&d->batches, st.batches, memory_order_relaxed);
    deliver_job *last = batch;
    while (last->next)
      last = last->next;
    deliver_job *head = atomic_load(&d->done);
    do
      last->next = head;
    while (!atomic_compare_exchange_weak(&d->done, &head, batch));
    if (head == NULL) { /* the list was empty: the loop needs a wake */
      char b = 1;
      ssize_t w = sys_write(d->wfd, &b, 1); /* full pipe: a wake is pending */
      (void)w;
    }
  }
  return NULL;
}

int deliver_new(deliverer **out, maildir *md, int nthreads,
                unsigned slow_fsync_ms) {
  deliverer *d = calloc(1, sizeof *d);
  int p[2];
  if (d == NULL)
    return -1;
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
    free(d);
    return -1;
  }
  d->md = md;
  d->slow_ms = slow_fsync_ms;
  d->rfd = p[0];
  d->wfd = p[1];
  atomic_init(&d->queue, NULL);
  atomic_init(&d->done, NULL);
#if !defined(__linux__)
  pthread_mutex_init(&d->mu, NULL);
  pthread_cond_init(&d->cv, NULL);
#endif
  if (nthreads < 1 || nthreads > DELIVER_THREADS_MAX)
    nthreads = 1;
#if defined(__linux__)
  sysio_threaded = 1; /* before the first thread: see sysio.h */
#endif
  for (int i = 0; i < nthreads; i++) {
    int rc = pthread_create(&d->thread[i], NULL, worker, d);
    if (rc != 0) {
      deliver_del(d, NULL); /* the ones started */
      errno = rc;
      return -1;
    }
    d->nthreads++;
  }
  *out = d;
  return 0;
}

void deliver_job_free(deliverer *d, deliver_job *j) {
  maildir_recycle(d->md, &j->msg);
  if (d->nspare < SPARE_JOBS_MAX) {
    j->next = d->spare;
    d->spare = j;
    d->nspare++;
  } else {
    free(j);
  }
}

void deliver_del(deliverer *d, deliver_stats *st) {
  if (d == NULL)
    return;
  atomic_store(&d->stop, 1);
  atomic_fetch_add(&d->seq, 1);
  idle_wake(d, 1);
  for (int i = 0; i < d->nthreads; i++)
    pthread_join(d->thread[i], NULL); /* they empty the queue first */
  if (st) {
    st->jobs = atomic_load(&d->jobs);
    st->file_fsyncs = atomic_load(&d->file_fsyncs);
    st->dir_fsyncs = atomic_load(&d->dir_fsyncs);
    st->batches = atomic_load(&d->batches);
  }
  for (deliver_job *j = atomic_load(&d->done), *next; j; j = next) {
    next = j->next;
    deliver_job_free(d, j);
  }
  for (deliver_job *j = d->spare, *next; j; j = next) {
    next = j->next;
    free(j);
  }
#if !defined(__linux__)
  pthread_cond_destroy(&d->cv);
  pthread_mutex_destroy(&d->mu);
#endif
  close(d->rfd);
  close(d->wfd);
  free(d);
}

int deliver_fd(const deliverer *d) {
  return d->rfd;
}

deliver_job *deliver_submit(deliverer *d, maildir_msg *m, void *owner) {
  deliver_job *j = d->spare;
  if (j != NULL) {
    d->spare = j->next;
    d->nspare--;
  } else if ((j = malloc(sizeof *j)) == NULL) {
    maildir_abort(d->md, m);
    return NULL;
  }
  j->next = NULL;
  j->rc = j->err = 0;
  j->msg = *m;  /* the fd and the buffer are the job's now */
  m->fd = -1;
  m->buf = NULL;
  m->buflen = 0;
  j->owner = owner;
  deliver_job *head = atomic_load(&d->queue);
  do
    j->next = head;
  while (!atomic_compare_exchange_weak(&d->queue, &head, j));
  atomic_fetch_add(&d->seq, 1);
  if (atomic_load(&d->sleepers) > 0) /* all busy: one takes it later */
    idle_wake(d, 0);
  return j;
}

deliver_job *deliver_take(deliverer *d) {
  char b[64];
  /* a short read found the pipe empty: no second read to hear EAGAIN */
  while (sys_read(d->rfd, b, sizeof b) == (ssize_t)sizeof b)
    ;
  return atomic_exchange(&d->done, NULL);
}
