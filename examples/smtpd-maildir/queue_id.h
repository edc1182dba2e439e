/*
 * queue_id.h - smtpd-maildir's queue ids, made without printf and
 * without a clock read per message.
 *
 * An id is the process's prefix, fixed at queue_id_init (its start time
 * in seconds and its pid, in hex), followed by a hex counter of at least
 * five digits: unique among the ids of one process, distinct between
 * processes (--workers) and between restarts, and in the order the
 * messages arrived. Example: 692E3A1B0004D200001.
 */
#ifndef SMTPD_MAILDIR_QUEUE_ID_H
#define SMTPD_MAILDIR_QUEUE_ID_H

#include <stddef.h>
#include <stdint.h>

#define QUEUE_ID_MAX 40 /* with the NUL */

typedef struct queue_ids {
  char prefix[24];
  size_t prefix_len;
  uint64_t counter;
  char last[QUEUE_ID_MAX]; /* the last id given, counted up in place */
  size_t last_len;
} queue_ids;

/* queue_id_init - the prefix, from time() and getpid() (call it in the
 * process that hands the ids out). */
void queue_id_init(queue_ids *q);
/* queue_id_next - the next id into out (QUEUE_ID_MAX bytes); its length */
size_t queue_id_next(queue_ids *q, char *out);

#endif
