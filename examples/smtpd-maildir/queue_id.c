/*
 * queue_id.c - per-process queue ids (see queue_id.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "queue_id.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fmt.h"

void queue_id_init(queue_ids *q) {
  q->prefix_len = fmt_hex(q->prefix, (uint64_t)time(NULL), 8);
  q->prefix_len += fmt_hex(q->prefix + q->prefix_len,
                           (uint64_t)getpid() & 0xFFFFFFu, 6);
  q->counter = 0;
}

size_t queue_id_next(queue_ids *q, char *out) {
  memcpy(out, q->prefix, q->prefix_len);
  return q->prefix_len + fmt_hex(out + q->prefix_len, ++q->counter, 5);
}
