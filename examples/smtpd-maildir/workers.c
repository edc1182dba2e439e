/*
 * workers.c - the --workers supervisor (see workers.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "workers.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* The supervisor's children, read by its signal handler. */
static pid_t worker_pid[WORKERS_MAX];
static int nworkers;

static void block_stop_signals(int how) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(how, &set, NULL);
}

static void forward(int sig) { /* async-signal-safe: kill only */
  int saved = errno;
  for (int i = 0; i < nworkers; i++)
    if (worker_pid[i] > 0)
      kill(worker_pid[i], sig);
  errno = saved;
}

int workers_start(int n) {
  if (n < 1 || n > WORKERS_MAX) {
    errno = EINVAL;
    return -1;
  }
  /* until a worker has its handlers, a stop signal waits */
  block_stop_signals(SIG_BLOCK);
  for (int i = 0; i < n; i++) {
    pid_t p = fork();
    if (p == 0) {
      nworkers = 0;
      return i;
    }
    if (p < 0) {
      int e = errno;
      forward(SIGTERM);
      workers_wait();
      errno = e;
      return -1;
    }
    worker_pid[nworkers++] = p;
  }
  return n;
}

void workers_ready(void) { block_stop_signals(SIG_UNBLOCK); }

int workers_wait(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  block_stop_signals(SIG_UNBLOCK);
  int failed = 0, left = nworkers;
  while (left > 0) {
    int st;
    pid_t p = waitpid(-1, &st, 0);
    if (p < 0) {
      if (errno == EINTR)
        continue;
      break; /* ECHILD: nothing left to wait for */
    }
    for (int i = 0; i < nworkers; i++)
      if (worker_pid[i] == p) {
        worker_pid[i] = 0;
        left--;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
          if (!failed)
            forward(SIGTERM); /* one failed: stop the others */
          failed = 1;
        }
      }
  }
  return failed || left > 0;
}
