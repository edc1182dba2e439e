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
#include "parse.h"

/* ------------------------------------------------------------------ */
/* arena: transaction strings, reset at RSET / end of transaction       */

#define ARENA_CHUNK 2048u

void *smtpd_i_arena_alloc(smtpd_session *s, size_t n) {
  arena_chunk *c = s->arena;
  const smtpd_mem *m = &s->cfg->mem;
  n = (n + 7u) & ~(size_t)7u;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
    arena_chunk *nc = smtpd_i_alloc(m, sizeof *nc + cap);
    if (!nc)
      return NULL;
    nc->cap = cap;
    nc->used = 0;
    nc->next = c;
    s->arena = c = nc;
  }
  c->used += n;
  return (char *)(c + 1) + c->used - n;
}

char *smtpd_i_arena_strdup(smtpd_session *s, const char *str) {
  size_t n = strlen(str) + 1;
  char *d = smtpd_i_arena_alloc(s, n);
  if (d)
    memcpy(d, str, n);
  return d;
}

/* Keep the oldest chunk (the steady-state one), free the rest. */
static void arena_reset(smtpd_session *s) {
  arena_chunk *c = s->arena;
  while (c && c->next) {
    arena_chunk *next = c->next;
    smtpd_i_free(&s->cfg->mem, c);
    c = next;
  }
  if (c)
    c->used = 0;
  s->arena = c;
}

void smtpd_i_arena_free(smtpd_session *s) {
  arena_reset(s);
  smtpd_i_free(&s->cfg->mem, s->arena);
  s->arena = NULL;
}

int smtpd_i_add_rcpt(smtpd_session *s, const char *addr) {
  char *d;
  if (s->nrcpts == s->rcpts_cap) {
    size_t cap = s->rcpts_cap ? s->rcpts_cap * 2 : 8;
    char **p = smtpd_i_realloc(&s->cfg->mem, s->rcpts, (cap + 1) * sizeof *p);
    if (!p)
      goto nomem;
    s->rcpts = p;
    s->rcpts_cap = cap;
  }
  d = smtpd_i_arena_strdup(s, addr);
  if (!d)
    goto nomem;
  s->rcpts[s->nrcpts++] = d;
  s->rcpts[s->nrcpts] = NULL;
  return 0;
nomem:
  smtpd_i_fail(s, SMTPD_ERR_NOMEM);
  return SMTPD_ERR_NOMEM;
}

void smtpd_i_reset_transaction(smtpd_session *s) {
  s->in_mail = 0;
  s->smtputf8 = 0;
  s->sender = NULL;
  s->nrcpts = 0;
  s->rcpt_reply = 0;
  s->body_type = SMTPD_BODY_UNSPECIFIED;
  arena_reset(s);
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
  if (s->state == ST_DATA && s->doom == DOOM_NONE)
    smtpd_i_notice(s, SMTPD_NOTICE_MESSAGE_ABORTED, 0, 0);
  s->state = ST_CLOSED;
  s->pending = NULL;
  if (s->cb.on_close)
    s->cb.on_close(s, why, s->ud);
}

void smtpd_i_bump_errors(smtpd_session *s) {
  if (++s->errors >= s->cfg->limits[SMTPD_LIMIT_ERRORS] &&
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
