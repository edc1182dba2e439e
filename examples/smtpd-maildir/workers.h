/*
 * workers.h - smtpd-maildir --workers N: N processes, each running its
 * own event loop over its own listening sockets, under one supervisor.
 *
 *   workers_start   fork the workers (SIGINT/SIGTERM blocked meanwhile)
 *   workers_ready   in a worker, once its signal handlers are in place
 *   workers_wait    in the supervisor: pass SIGINT/SIGTERM on to every
 *                   worker, wait for all of them, the exit status
 *
 * Nothing is restarted: when a worker fails (exit status not 0, or
 * killed), the others are told to stop (SIGTERM) and the supervisor
 * exits 1.
 */
#ifndef SMTPD_MAILDIR_WORKERS_H
#define SMTPD_MAILDIR_WORKERS_H

#define WORKERS_MAX 64

/* workers_start - start n (1..WORKERS_MAX) worker processes. In a worker
 * it returns the worker's index (0..n-1), in the supervisor n, and -1
 * when a fork failed (the workers already started are stopped). */
int workers_start(int n);
void workers_ready(void);
/* workers_wait - 0 when every worker exited 0, else 1 */
int workers_wait(void);

#endif
