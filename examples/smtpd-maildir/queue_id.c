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
  memcpy(q->last, q->prefix, q->prefix_len);
  q->last_len = q->prefix_len + fmt_hex(q->last + q->prefix_len, 0, 5);
}

/* The counter's hex digits of the last id are counted up in place; only
 * when they all carry over (another digit is due) is it formatted anew. */
size_t queue_id_next(queue_ids *q, char *out) {
  q->counter++;
  size_t i = q->last_len;
  while (i > q->prefix_len) {
    char d = q->last[--i];
    if (d == 'F') {
      q->last[i] = '0';
      continue;
    }
    q->last[i] = d == '9' ? 'A' : (char)(d + 1);
    memcpy(out, q->last, q->last_len + 1);
    return q->last_len;
  }
  q->last_len = q->prefix_len + fmt_hex(q->last + q->prefix_len, q->counter, 5);
  memcpy(out, q->last, q->last_len + 1);
  return q->last_len;
}
