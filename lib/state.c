/*
 * state.c - session state every layer may change: notices, the client
 * error count, closing, and the transaction (sender, recipients and the
 * arena their strings live in). Calls only reply.c below it.
 *
 *   smtpd_i_notice, smtpd_i_close, smtpd_i_bump_errors,
 *   smtpd_i_protocol_error, smtpd_i_add_rcpt, smtpd_i_reset_transaction
 */
#include <string.h>

#include "internal.h"
#include "reply.h"
#include "parse.h"

/* ------------------------------------------------------------------ */
/* arena: transaction strings, reset at RSET / end of transaction       */

/* a chunk and its header in 1 KiB: small enough for a malloc's fast path */
#define ARENA_CHUNK (1024u - sizeof(arena_chunk))

/* The first chunk is the one in the command-line block (internal.h);
 * NULL before that block exists (no command yet). When used it is the
 * oldest in the chain, and the only one whose cap is SMTPD_I_ARENA_FIRST
 * (the others have at least ARENA_CHUNK). */
static arena_chunk *arena_first(const smtpd_session *s) {
  return s->cmdbuf ? (arena_chunk *)(void *)(s->cmdbuf +
                                             smtpd_i_arena_first_at(s->cfg))
                   : NULL;
}
#define IS_FIRST(c) ((c)->cap == SMTPD_I_ARENA_FIRST)

/* arena_grow - a chunk with room for n (a multiple of 8) at the head of
 * the chain: the first chunk when the chain is empty and n fits it, else
 * a new allocation. */
static void *arena_grow(smtpd_session *s, size_t n) {
  arena_chunk *c = s->arena;
  arena_chunk *nc = c ? NULL : arena_first(s);
  if (nc && n <= SMTPD_I_ARENA_FIRST) {
    nc->cap = SMTPD_I_ARENA_FIRST;
  } else {
    size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
    nc = smtpd_i_alloc(&s->cfg->mem, sizeof *nc + cap);
    if (!nc)
      return NULL;
    nc->cap = cap;
  }
  nc->used = n;
  nc->next = c;
  s->arena = nc;
  return nc + 1;
}

/* n octets, 8-aligned, from the head chunk when it has room (inline: a
 * recipient's address takes this way) */
static inline void *arena_take(smtpd_session *s, size_t n) {
  arena_chunk *c = s->arena;
  n = (n + 7u) & ~(size_t)7u;
  if (c && c->cap - c->used >= n) {
    void *p = (char *)(c + 1) + c->used;
    c->used += n;
    return p;
  }
  return arena_grow(s, n);
}

void *smtpd_i_arena_alloc(smtpd_session *s, size_t n) {
  return arena_take(s, n);
}

char *smtpd_i_arena_memdup(smtpd_session *s, const char *str, size_t n) {
  char *d = arena_take(s, n + 1);
  if (d) {
    smtpd_i_copy(d, str, n);
    d[n] = '\0';
  }
  return d;
}

/* Keep the oldest allocated chunk, free the newer ones; the first chunk
 * (in the command-line block) stays behind it, unused from now on, so a
 * session whose transactions outgrow the first chunk still allocates
 * nothing in the steady state. */
static void arena_reset(smtpd_session *s) {
  arena_chunk *c = s->arena;
  while (c && c->next && !IS_FIRST(c->next)) {
    arena_chunk *next = c->next;
    smtpd_i_free(&s->cfg->mem, c);
    c = next;
  }
  if (c)
    c->used = 0;
  s->arena = c;
}

/* All but the first chunk (the command-line block's). */
void smtpd_i_arena_free(smtpd_session *s) {
  arena_chunk *c = s->arena;
  while (c && !IS_FIRST(c)) {
    arena_chunk *next = c->next;
    smtpd_i_free(&s->cfg->mem, c);
    c = next;
  }
  s->arena = NULL;
}

/* add_rcpt_grow - smtpd_i_add_rcpt when the list is full or the head
 * chunk has no room: out of line, so that the common case saves few
 * registers. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int add_rcpt_grow(smtpd_session *s, const char *addr, size_t len) {
  char *d;
  if (s->nrcpts == s->rcpts_cap) {
    /* the list lives in the arena too: a longer one is a new copy, the
     * old one goes with the transaction. Room for 4 first (a sender, the
     * list and a recipient fit the first chunk), then 16, then twice. */
    size_t cap = !s->rcpts_cap        ? 4
                 : s->rcpts_cap < 16 ? 16
                                     : s->rcpts_cap * 2;
    char **p = arena_take(s, (cap + 1) * sizeof *p);
    if (!p)
      goto nomem;
    if (s->nrcpts)
      memcpy(p, s->rcpts, s->nrcpts * sizeof *p);
    s->rcpts = p;
    s->rcpts_cap = cap;
  }
  d = arena_take(s, len + 1);
  if (!d)
    goto nomem;
  smtpd_i_copy(d, addr, len);
  d[len] = '\0';
  s->rcpts[s->nrcpts++] = d;
  s->rcpts[s->nrcpts] = NULL;
  return 0;
nomem:
  smtpd_i_fail(s, SMTPD_ERR_NOMEM);
  return SMTPD_ERR_NOMEM;
}

/* The common case inline: room in the list and in the head chunk. addr
 * is NUL-terminated (len octets, then the NUL), copied with its NUL. */
int smtpd_i_add_rcpt(smtpd_session *s, const char *addr, size_t len) {
  arena_chunk *c = s->arena;
  size_t n = (len + 8u) & ~(size_t)7u;
  if (s->nrcpts < s->rcpts_cap && c && c->cap - c->used >= n) {
    char *d = (char *)(c + 1) + c->used;
    c->used += n;
    smtpd_i_copy(d, addr, len + 1);
    s->rcpts[s->nrcpts++] = d;
    s->rcpts[s->nrcpts] = NULL;
    return 0;
  }
  return add_rcpt_grow(s, addr, len);
}

void smtpd_i_reset_transaction(smtpd_session *s) {
  s->in_mail = 0;
  s->smtputf8 = 0;
  s->sender = NULL;
  s->nrcpts = 0;
  s->rcpts = NULL; /* in the arena */
  s->rcpts_cap = 0;
  s->rcpt_reply = 0;
  s->chunked = 0;
  s->bdat_failed = 0;
  s->msg_epoch = 0;
  s->requiretls = 0;
  s->body_type = SMTPD_BODY_UNSPECIFIED;
  arena_reset(s);
}

/* ------------------------------------------------------------------ */
/* the client (set by the host, a PROXY header or XCLIENT)              */

int smtpd_i_set_client(smtpd_session *s, const char *addr,
                       const char *rdns) {
  char *a = NULL, *r = NULL;
  const smtpd_mem *m;
  m = &s->cfg->mem;
  if ((addr && strlen(addr) > 255) || (rdns && strlen(rdns) > 255))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if ((addr && !(a = smtpd_i_strdup(m, addr))) ||
      (rdns && !(r = smtpd_i_strdup(m, rdns)))) {
    smtpd_i_free(m, a);
    return SMTPD_ERR_NOMEM;
  }
  smtpd_i_free(m, s->client_addr);
  smtpd_i_free(m, s->client_rdns);
  s->client_addr = a;
  s->client_rdns = r;
  return 0;
}

/* ------------------------------------------------------------------ */
/* events                                                               */

void smtpd_i_notice(smtpd_session *s, smtpd_notice_type type, int code,
                    uint64_t count) {
  smtpd_notice n;
  char cmd[80];
  if (!s->cb.on_notice)
    return;
  n.type = type;
  n.code = code;
  n.count = count;
  n.command = NULL;
  if (type != SMTPD_NOTICE_STARTTLS_DISCARD &&
      type != SMTPD_NOTICE_MESSAGE_ABORTED && s->line_len) {
    size_t len = s->line_len;
    while (len && (s->line[len - 1] == '\n' || s->line[len - 1] == '\r' ||
                   s->line[len - 1] == '\0'))
      len--;
    smtpd_i_sanitize(cmd, sizeof cmd, s->line, len);
    n.command = cmd;
  }
  s->cb.on_notice(s, &n, s->ud);
}

void smtpd_i_close(smtpd_session *s, smtpd_close_reason why) {
  if (s->state == ST_CLOSED)
    return;
  if ((s->state == ST_DATA || (s->chunked && s->in_mail)) &&
      s->doom == DOOM_NONE && !s->bdat_failed)
    smtpd_i_notice(s, SMTPD_NOTICE_MESSAGE_ABORTED, 0, 0);
  s->state = ST_CLOSED;
  s->pending = NULL;
  if (s->cb.on_close)
    s->cb.on_close(s, why, s->ud);
}

void smtpd_i_tarpit(smtpd_session *s) {
  uint32_t ms = s->cfg->timeouts[SMTPD_TIMEOUT_TARPIT];
  if (ms) {
    s->delay_ms = ms;
    s->delay_epoch = (s->epochs += 2);
    s->delay_mark = s->out_total;
  }
}

void smtpd_i_bump_errors(smtpd_session *s) {
  if (++s->errors > s->cfg->limits[SMTPD_LIMIT_SOFT_ERRORS])
    smtpd_i_tarpit(s);
  if (s->errors >= s->cfg->limits[SMTPD_LIMIT_ERRORS] &&
      s->state != ST_CLOSED) {
    smtpd_i_reply_host(s, 421, "4.7.0", "Error: too many errors");
    smtpd_i_close(s, SMTPD_CLOSE_TOO_MANY_ERRORS);
  }
}

void smtpd_i_protocol_error(smtpd_session *s, int code, const char *enh,
                            const char *text, int with_host) {
  if (with_host)
    smtpd_i_reply_host(s, code, enh, text);
  else
    smtpd_i_reply(s, code, enh, text);
  smtpd_i_notice(s, SMTPD_NOTICE_PROTOCOL_ERROR, code, 0);
  smtpd_i_bump_errors(s);
}
