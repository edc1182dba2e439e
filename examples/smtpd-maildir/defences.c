/*
 * defences.c - smtpd-maildir: per-address connection counts and AUTH
 * failure history (see defences.h).
 *
 * A hash table of entries keyed by the address text. Each entry holds
 * its open connections and a ring of its last auth_fail_limit failure
 * times; an entry with no connection and no failure inside the window is
 * dropped by def_sweep (the loop calls it every tick, so the table only
 * holds addresses that are connected or have failed recently).
 */
#include "defences.h"

#include <stdlib.h>
#include <string.h>

#define NBUCKETS 4096u

struct def_addr {
  struct def_addr *next; /* bucket chain */
  char addr[64];
  unsigned long conns;
  uint64_t *fails;       /* ring of failure times, auth_fail_limit long */
  unsigned nfails;       /* entries used (<= limit) */
  unsigned head;         /* next slot to write */
};

struct def_table {
  def_addr *buckets[NBUCKETS];
  size_t count;
  size_t idle;       /* entries without connections: what def_sweep may
                        free (none: it has nothing to look at) */
  unsigned limit;
  uint64_t window;
  unsigned sweep_at; /* next bucket def_sweep looks at */
};

static unsigned hash(const char *s) {
  unsigned h = 2166136261u; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h % NBUCKETS;
}

int def_table_new(def_table **out, unsigned auth_fail_limit,
                  uint64_t window_ms) {
  def_table *t = calloc(1, sizeof *t);
  *out = t;
  if (t == NULL)
    return -1;
  t->limit = auth_fail_limit > DEF_MAX_AUTH_FAIL_LIMIT
                 ? DEF_MAX_AUTH_FAIL_LIMIT
                 : auth_fail_limit;
  t->window = window_ms;
  return 0;
}

static void entry_free(def_addr *a) {
  free(a->fails);
  free(a);
}

void def_table_del(def_table *t) {
  if (t == NULL)
    return;
  for (unsigned i = 0; i < NBUCKETS; i++)
    for (def_addr *a = t->buckets[i], *n; a; a = n) {
      n = a->next;
      entry_free(a);
    }
  free(t);
}

static def_addr *lookup(def_table *t, const char *addr, int create) {
  unsigned h = hash(addr);
  for (def_addr *a = t->buckets[h]; a; a = a->next)
    if (strcmp(a->addr, addr) == 0)
      return a;
  if (!create || t->count >= DEF_MAX_ADDRS || strlen(addr) >= 64)
    return NULL;
  def_addr *a = calloc(1, sizeof *a);
  if (a == NULL)
    return NULL;
  memcpy(a->addr, addr, strlen(addr) + 1);
  a->next = t->buckets[h];
  t->buckets[h] = a;
  t->count++;
  t->idle++;
  return a;
}

def_addr *def_conn_open(def_table *t, const char *addr, unsigned long *count) {
  def_addr *a = lookup(t, addr, 1);
  *count = 0;
  if (a == NULL)
    return NULL;
  if (a->conns++ == 0)
    t->idle--;
  *count = a->conns;
  return a;
}

const char *def_addr_text(const def_addr *a) {
  return a->addr;
}

void def_conn_close(def_table *t, def_addr *a) {
  if (a && a->conns > 0 && --a->conns == 0)
    t->idle++;
}

/* the failures of a inside the window ending at now */
static unsigned recent(const def_table *t, const def_addr *a, uint64_t now) {
  unsigned n = 0;
  for (unsigned i = 0; i < a->nfails; i++)
    if (a->fails[i] + t->window > now)
      n++;
  return n;
}

int def_auth_penalized(const def_table *t, const def_addr *a, uint64_t now) {
  return a && t->limit && recent(t, a, now) >= t->limit;
}

void def_auth_failed(def_table *t, def_addr *a, uint64_t now) {
  if (a == NULL || t->limit == 0)
    return;
  if (a->fails == NULL) {
    a->fails = calloc(t->limit, sizeof *a->fails);
    if (a->fails == NULL)
      return;
  }
  a->fails[a->head] = now;
  a->head = (a->head + 1) % t->limit;
  if (a->nfails < t->limit)
    a->nfails++;
}

void def_sweep(def_table *t, uint64_t now) {
  /* a slice of the buckets per call: the loop's tick stays cheap; and
   * none while every address known has a connection */
  if (t->idle == 0)
    return;
  for (unsigned k = 0; k < NBUCKETS / 16; k++) {
    def_addr **pp = &t->buckets[t->sweep_at];
    t->sweep_at = (t->sweep_at + 1) % NBUCKETS;
    while (*pp) {
      def_addr *a = *pp;
      if (a->conns == 0 && recent(t, a, now) == 0) {
        *pp = a->next;
        entry_free(a);
        t->count--;
        t->idle--;
      } else {
        pp = &a->next;
      }
    }
  }
}

size_t def_count(const def_table *t) {
  return t->count;
}
