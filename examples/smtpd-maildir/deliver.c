/*
 * deliver.c - smtpd-maildir: the delivery worker thread (deliver.h).
 *
 *   deliver_new, deliver_del, deliver_fd, deliver_submit, deliver_take,
 *   deliver_job_free
 *   worker        take the whole queue, commit_batch it, post it back
 *   commit_batch  writeback started for all, then file fsync + rename
 *                 per job, one new/ fsync per batch
 */
#define _GNU_SOURCE
#include "deliver.h"
#include "sysio.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct deliverer {
  maildir *md;
  unsigned slow_ms;
  pthread_t thread[DELIVER_THREADS_MAX];
  int nthreads;
  pthread_mutex_t mu;       /* guards everything below */
  pthread_cond_t cv;        /* the queue got a job, or stop */
  deliver_job *queue, **qtail;
  deliver_job *done, **dtail;
  int stop;
  int rfd, wfd;             /* wake-up pipe: a byte when done filled */
  deliver_stats st;         /* summed at the end of every batch */
  deliver_job *spare;       /* the loop's alone: freed jobs for reuse */
  int nspare;
};

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

static void *worker(void *arg) {
  deliverer *d = arg;
  pthread_mutex_lock(&d->mu);
  for (;;) {
    while (d->queue == NULL && !d->stop)
      pthread_cond_wait(&d->cv, &d->mu);
    if (d->queue == NULL)
      break; /* stop, and nothing left to do */
    deliver_job *batch = d->queue;
    d->queue = NULL;
    d->qtail = &d->queue;
    pthread_mutex_unlock(&d->mu);

    deliver_stats st = {0, 0, 0, 0};
    commit_batch(d, batch, &st);

    pthread_mutex_lock(&d->mu);
    d->st.jobs += st.jobs;
    d->st.file_fsyncs += st.file_fsyncs;
    d->st.dir_fsyncs += st.dir_fsyncs;
    d->st.batches += st.batches;
    int wake = d->done == NULL;
    *d->dtail = batch;
    while (*d->dtail)
      d->dtail = &(*d->dtail)->next;
    if (wake) {
      char b = 1;
      ssize_t w = sys_write(d->wfd, &b, 1); /* full pipe: a wake is pending */
      (void)w;
    }
  }
  pthread_mutex_unlock(&d->mu);
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
  d->qtail = &d->queue;
  d->dtail = &d->done;
  pthread_mutex_init(&d->mu, NULL);
  pthread_cond_init(&d->cv, NULL);
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
  pthread_mutex_lock(&d->mu);
  d->stop = 1;
  pthread_cond_broadcast(&d->cv);
  pthread_mutex_unlock(&d->mu);
  for (int i = 0; i < d->nthreads; i++)
    pthread_join(d->thread[i], NULL); /* they empty the queue first */
  if (st)
    *st = d->st;
  for (deliver_job *j = d->done, *next; j; j = next) {
    next = j->next;
    deliver_job_free(d, j);
  }
  for (deliver_job *j = d->spare, *next; j; j = next) {
    next = j->next;
    free(j);
  }
  pthread_cond_destroy(&d->cv);
  pthread_mutex_destroy(&d->mu);
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
  pthread_mutex_lock(&d->mu);
  *d->qtail = j;
  d->qtail = &j->next;
  pthread_cond_signal(&d->cv);
  pthread_mutex_unlock(&d->mu);
  return j;
}

deliver_job *deliver_take(deliverer *d) {
  char b[64];
  /* a short read found the pipe empty: no second read to hear EAGAIN */
  while (sys_read(d->rfd, b, sizeof b) == (ssize_t)sizeof b)
    ;
  pthread_mutex_lock(&d->mu);
  deliver_job *list = d->done;
  d->done = NULL;
  d->dtail = &d->done;
  pthread_mutex_unlock(&d->mu);
  return list;
}
