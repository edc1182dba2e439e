/*
 * milter.c - the Milter (protocol 6) client: configuration, the per
 * session chain that turns session decisions into filter commands, and
 * each filter's connection (packets in and out, negotiation, timeouts,
 * failure policy). No I/O: the host moves the bytes.
 *
 *   smtpd_milter_conf_*          filters, policy, timeouts, macros
 *   smtpd_milter_parse_address   "inet:host:port", "unix:/path"
 *   smtpd_milter_chain_*         one session's filters, results
 *   smtpd_milter_on_*            decisions (from the session callbacks)
 *   smtpd_milter_*               one connection: feed/output/consume
 *
 * A decision is an operation: the command is built once, then each
 * filter is asked in order (advance()). A filter that has not finished
 * connecting or negotiating, or owes a reply, makes the operation wait;
 * the session was told SMTPD_DEFER and is resumed by finish().
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlt.h"

#define MAX_MILTERS 16u
#define OUT_HIGH 65536u    /* body chunks wait while this much is queued */
#define ERR_CAP 200u
#define MAX_REPLY_LINES 32u

static const char *const default_macros[SMTPD_MILTER_STAGE_COUNT_] = {
    "j _ {daemon_name} {client_addr} {client_port} {client_name} {client_ptr}",
    "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
    "i {auth_type} {auth_authen} {auth_author} {mail_addr}",
    "i {rcpt_addr}",
    "i",
    "i",
    "i"};

struct smtpd_milter_conf {
  smtpd_mem mem;
  size_t n;
  char *name[MAX_MILTERS];
  smtpd_milter_action act[MAX_MILTERS];
  uint32_t timeout[SMTPD_MILTER_TIMEOUT_COUNT_];
  uint64_t limit[SMTPD_MILTER_LIMIT_COUNT_];
  char *macros[SMTPD_MILTER_STAGE_COUNT_];
  uint32_t actions, flags;
};

enum cstate { C_NEW, C_NEG, C_READY, C_FAILED, C_QUIT };

struct smtpd_milter {
  smtpd_milter_chain *ch;
  size_t idx;
  enum cstate st;
  uint32_t version, actions, flags;
  char *symlist[SMTPD_MILTER_STAGE_COUNT_];
  mlt_buf out;
  uint8_t lenbuf[4];
  size_t lenhave;
  uint32_t need;
  mlt_buf pkt;
  char expect;              /* command whose reply is awaited, 0 none */
  unsigned skip_session : 1, skip_message : 1, in_message : 1;
  char err[ERR_CAP];
};

enum op { OP_NONE, OP_CONNECT, OP_HELO, OP_MAIL, OP_RCPT, OP_DATA, OP_EOM };
enum eph { E_HEADERS, E_EOH, E_BODY, E_EOB };

typedef struct kv {
  char *name, *value;
} kv;

struct smtpd_milter_chain {
  const smtpd_milter_conf *conf;
  smtpd_session *s;
  smtpd_mem mem;
  size_t n;
  smtpd_milter *m[MAX_MILTERS];
  kv *macros;
  size_t nmacros;
  int family;
  uint16_t port;
  smtpd_milter_read_fn reader;
  void *reader_ctx;
  smtpd_milter_eom_fn eom;
  void *eom_ctx;
  /* the operation */
  enum op op;
  int deferred, in_call;
  size_t cur;
  char cmd;
  smtpd_milter_stage stage;
  mlt_buf args;
  char *mail_addr, *rcpt_addr;
  smtpd_verdict result;
  int resume_rc;
  int reply_code;           /* 0: the default reply for the verdict */
  char reply_enh[16];
  char *reply_lines[MAX_REPLY_LINES];
  size_t nreply;
  /* the message */
  int discard;
  smtpd_milter_edit *edits;
  size_t nedits, capedits, mark;
  mlt_buf repl;
  mlt_hlist work;
  uint64_t body_offset;
  const uint8_t *body;      /* a replaced body, or NULL: the spool */
  size_t body_len;
  enum eph eph;
  size_t hdr_i;
  uint64_t body_pos;
  uint8_t *chunk;
  int reader_failed;
};

/* ---- small helpers ----------------------------------------------------------- */

static char *xstrdup(const smtpd_mem *mem, const char *s)
{
  size_t n = strlen(s);
  char *d = mem->malloc(n + 1, mem->ctx);
  if (d)
    memcpy(d, s, n + 1);
  return d;
}

static void xfree(const smtpd_mem *mem, void *p)
{
  if (p)
    mem->free(p, mem->ctx);
}

static uint32_t get32(const uint8_t *p)
{
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* ---- configuration -------------------------------------------------------------- */

int smtpd_milter_conf_new(smtpd_milter_conf **out, const smtpd_mem *mem)
{
  smtpd_milter_conf *c;
  int i;
  if (!out)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!mem)
    mem = smtpd_mem_default();
  if (!mem->malloc || !mem->free || !mem->calloc || !mem->realloc)
    return SMTPD_ERR_INVALID_ARGUMENT;
  c = mem->calloc(1, sizeof *c, mem->ctx);
  if (!c)
    return SMTPD_ERR_NOMEM;
  c->mem = *mem;
  c->timeout[SMTPD_MILTER_TIMEOUT_CONNECT] = 30000;
  c->timeout[SMTPD_MILTER_TIMEOUT_COMMAND] = 30000;
  c->timeout[SMTPD_MILTER_TIMEOUT_CONTENT] = 300000;
  c->limit[SMTPD_MILTER_LIMIT_HEADER] = MLT_DEFAULT_HEADER;
  c->limit[SMTPD_MILTER_LIMIT_HEADERS] = MLT_DEFAULT_HEADERS;
  c->limit[SMTPD_MILTER_LIMIT_REPLBODY] = 64u * 1024u * 1024u;
  c->limit[SMTPD_MILTER_LIMIT_EDITS] = 10000;
  c->actions = SMTPD_MILTER_ACT_ALL;
  c->flags = SMTPD_MILTER_P_SUPPORTED;
  for (i = 0; i < SMTPD_MILTER_STAGE_COUNT_; i++) {
    c->macros[i] = xstrdup(mem, default_macros[i]);
    if (!c->macros[i]) {
      smtpd_milter_conf_del(c);
      return SMTPD_ERR_NOMEM;
    }
  }
  *out = c;
  return 0;
}

void smtpd_milter_conf_del(smtpd_milter_conf *c)
{
  size_t i;
  smtpd_mem mem;
  if (!c)
    return;
  mem = c->mem;
  for (i = 0; i < c->n; i++)
    xfree(&mem, c->name[i]);
  for (i = 0; i < SMTPD_MILTER_STAGE_COUNT_; i++)
    xfree(&mem, c->macros[i]);
  mem.free(c, mem.ctx);
}

int smtpd_milter_conf_add(smtpd_milter_conf *c, const char *name,
                          smtpd_milter_action on_failure)
{
  if (!c || !name || !*name || (unsigned)on_failure > SMTPD_MILTER_REJECT)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (c->n == MAX_MILTERS)
    return SMTPD_ERR_INVALID_STATE;
  c->name[c->n] = xstrdup(&c->mem, name);
  if (!c->name[c->n])
    return SMTPD_ERR_NOMEM;
  c->act[c->n++] = on_failure;
  return 0;
}

size_t smtpd_milter_conf_count(const smtpd_milter_conf *c)
{
  return c ? c->n : 0;
}

const char *smtpd_milter_conf_name(const smtpd_milter_conf *c, size_t i)
{
  return c && i < c->n ? c->name[i] : NULL;
}

int smtpd_milter_conf_set_timeout(smtpd_milter_conf *c,
                                  smtpd_milter_timeout_kind which, uint32_t ms)
{
  if (!c || which <= SMTPD_MILTER_TIMEOUT_NONE ||
      which >= SMTPD_MILTER_TIMEOUT_COUNT_)
    return SMTPD_ERR_INVALID_ARGUMENT;
  c->timeout[which] = ms;
  return 0;
}

int smtpd_milter_conf_set_limit(smtpd_milter_conf *c,
                                smtpd_milter_limit which, uint64_t value)
{
  if (!c || (unsigned)which >= SMTPD_MILTER_LIMIT_COUNT_ || value == 0)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (which == SMTPD_MILTER_LIMIT_HEADER &&
      value > SMTPD_MILTER_MAX_PACKET - 16)
    return SMTPD_ERR_INVALID_ARGUMENT;
  c->limit[which] = value;
  return 0;
}

int smtpd_milter_conf_set_macros(smtpd_milter_conf *c,
                                 smtpd_milter_stage stage, const char *names)
{
  char *d;
  const char *p;
  if (!c || (unsigned)stage >= SMTPD_MILTER_STAGE_COUNT_ || !names)
    return SMTPD_ERR_INVALID_ARGUMENT;
  for (p = names; *p; p++)
    if ((unsigned char)*p < 32 || (unsigned char)*p > 126)
      return SMTPD_ERR_INVALID_ARGUMENT;
  d = xstrdup(&c->mem, names);
  if (!d)
    return SMTPD_ERR_NOMEM;
  xfree(&c->mem, c->macros[stage]);
  c->macros[stage] = d;
  return 0;
}

int smtpd_milter_conf_set_protocol(smtpd_milter_conf *c, uint32_t actions,
                                   uint32_t flags)
{
  if (!c || (actions & ~SMTPD_MILTER_ACT_ALL) ||
      (flags & ~SMTPD_MILTER_P_SUPPORTED))
    return SMTPD_ERR_INVALID_ARGUMENT;
  c->actions = actions;
  c->flags = flags;
  return 0;
}

int smtpd_milter_parse_address(const char *spec, int *family, char *host,
                               size_t cap, uint16_t *port)
{
  const char *p, *at, *colon, *h;
  size_t hl;
  unsigned long v;
  char *end;
  int fam = 4;

  if (!spec || !family || !host || !cap || !port)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!strncmp(spec, "unix:", 5) || !strncmp(spec, "local:", 6) ||
      spec[0] == '/') {
    p = spec[0] == '/' ? spec : strchr(spec, ':') + 1;
    if (!*p || strlen(p) >= cap)
      return SMTPD_ERR_INVALID_ARGUMENT;
    strcpy(host, p);
    *family = 'U';
    *port = 0;
    return 0;
  }
  p = spec;
  if (!strncmp(p, "inet6:", 6)) {
    fam = 6;
    p += 6;
  } else if (!strncmp(p, "inet:", 5)) {
    p += 5;
  }
  if ((at = strchr(p, '@')) != NULL) { /* Sendmail: PORT@HOST */
    v = strtoul(p, &end, 10);
    if (end != at)
      return SMTPD_ERR_INVALID_ARGUMENT;
    h = at + 1;
    hl = strlen(h);
  } else { /* Postfix: HOST:PORT */
    colon = strrchr(p, ':');
    if (!colon)
      return SMTPD_ERR_INVALID_ARGUMENT;
    v = strtoul(colon + 1, &end, 10);
    if (*end || end == colon + 1)
      return SMTPD_ERR_INVALID_ARGUMENT;
    h = p;
    hl = (size_t)(colon - p);
  }
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  if (v == 0 || v > 65535 || hl == 0 || hl >= cap)
    return SMTPD_ERR_INVALID_ARGUMENT;
  memcpy(host, h, hl);
  host[hl] = '\0';
  if (memchr(host, ':', hl))
    fam = 6;
  *family = fam;
  *port = (uint16_t)v;
  return 0;
}

/* ---- packets ------------------------------------------------------------------- */

static int put_packet(smtpd_milter *m, char cmd, const void *d, size_t n)
{
  const smtpd_mem *mem = &m->ch->mem;
  uint8_t h[5];
  int r;
  put32(h, (uint32_t)(n + 1));
  h[4] = (uint8_t)cmd;
  r = mlt_buf_put(mem, &m->out, h, 5);
  if (!r)
    r = mlt_buf_put(mem, &m->out, d, n);
  return r;
}

static void fail(smtpd_milter *m, const char *fmt, const char *arg);
static void advance(smtpd_milter_chain *ch);

static int send_packet(smtpd_milter *m, char cmd, const void *d, size_t n)
{
  if (put_packet(m, cmd, d, n)) {
    fail(m, "out of memory", NULL);
    return -1;
  }
  return 0;
}

/* ---- macros ---------------------------------------------------------------------- */

/* the name without braces, for comparing "{x}" with "x" */
static void bare(const char *name, size_t n, const char **p, size_t *len)
{
  if (n >= 2 && name[0] == '{' && name[n - 1] == '}') {
    name++;
    n -= 2;
  }
  *p = name;
  *len = n;
}

static int name_is(const char *name, size_t n, const char *want)
{
  const char *a, *b;
  size_t al, bl;
  bare(name, n, &a, &al);
  bare(want, strlen(want), &b, &bl);
  return al == bl && !memcmp(a, b, al);
}

/* the value of a macro now; tmp for formatted ones (NULL: no value) */
static const char *macro_value(smtpd_milter_chain *ch, const char *name,
                               size_t n, char *tmp, size_t cap)
{
  smtpd_session *s = ch->s;
  const smtpd_tls_info *tls = smtpd_session_tls(s);
  const char *addr = smtpd_session_client_addr(s);
  const char *rdns = smtpd_session_client_rdns(s);
  size_t i;

  for (i = 0; i < ch->nmacros; i++)
    if (name_is(name, n, ch->macros[i].name))
      return ch->macros[i].value;
  if (name_is(name, n, "j"))
    return smtpd_session_hostname(s);
  if (name_is(name, n, "v"))
    return smtpd_version(NULL);
  if (name_is(name, n, "daemon_name"))
    return "libsmtpd";
  if (name_is(name, n, "_")) {
    if (!addr)
      return NULL;
    snprintf(tmp, cap, "%s [%s]", rdns ? rdns : "unknown", addr);
    return tmp;
  }
  if (name_is(name, n, "client_addr"))
    return addr;
  if (name_is(name, n, "client_name") || name_is(name, n, "client_ptr"))
    return addr ? (rdns ? rdns : "unknown") : NULL;
  if (name_is(name, n, "client_port")) {
    if (!ch->port)
      return NULL;
    snprintf(tmp, cap, "%u", (unsigned)ch->port);
    return tmp;
  }
  if (tls && name_is(name, n, "tls_version"))
    return tls->protocol;
  if (tls && name_is(name, n, "cipher"))
    return tls->cipher;
  if (tls && name_is(name, n, "cipher_bits")) {
    snprintf(tmp, cap, "%d", tls->cipher_bits);
    return tmp;
  }
  if (tls && name_is(name, n, "cert_subject"))
    return tls->peer_subject;
  if (tls && name_is(name, n, "cert_issuer"))
    return tls->peer_issuer;
  if (name_is(name, n, "auth_type"))
    return smtpd_session_auth_mechanism(s);
  if (name_is(name, n, "auth_authen"))
    return smtpd_session_auth_user(s);
  if (name_is(name, n, "mail_addr"))
    return ch->mail_addr;
  if (name_is(name, n, "rcpt_addr"))
    return ch->rcpt_addr;
  return NULL;
}

/* SMFIC_MACRO before cmd: the stage's names that have a value */
static int send_macros(smtpd_milter *m, smtpd_milter_stage stage, char cmd)
{
  smtpd_milter_chain *ch = m->ch;
  const char *list = m->symlist[stage] ? m->symlist[stage]
                                       : ch->conf->macros[stage];
  mlt_buf b = {0};
  char tmp[64];
  const char *p = list, *v;
  size_t n;
  int r = 0, any = 0;

  r = mlt_buf_put(&ch->mem, &b, &cmd, 1);
  while (!r && p && *p) {
    while (*p == ' ' || *p == ',')
      p++;
    n = strcspn(p, " ,");
    if (n) {
      v = macro_value(ch, p, n, tmp, sizeof tmp);
      if (v) {
        r = mlt_buf_put(&ch->mem, &b, p, n);
        if (!r)
          r = mlt_buf_put(&ch->mem, &b, "", 1);
        if (!r)
          r = mlt_buf_put(&ch->mem, &b, v, strlen(v) + 1);
        any = 1;
      }
    }
    p += n;
  }
  if (!r && any)
    r = put_packet(m, 'D', b.p, b.len);
  mlt_buf_free(&ch->mem, &b);
  if (r)
    fail(m, "out of memory", NULL);
  return r ? -1 : 0;
}

/* ---- chain ------------------------------------------------------------------------ */

static void milter_free(smtpd_milter *m)
{
  const smtpd_mem *mem = &m->ch->mem;
  int i;
  for (i = 0; i < SMTPD_MILTER_STAGE_COUNT_; i++)
    xfree(mem, m->symlist[i]);
  mlt_buf_free(mem, &m->out);
  mlt_buf_free(mem, &m->pkt);
  mem->free(m, mem->ctx);
}

int smtpd_milter_chain_new(smtpd_milter_chain **out,
                           const smtpd_milter_conf *conf, smtpd_session *s)
{
  smtpd_milter_chain *ch;
  size_t i;
  if (!out || !conf || !s)
    return SMTPD_ERR_INVALID_ARGUMENT;
  ch = conf->mem.calloc(1, sizeof *ch, conf->mem.ctx);
  if (!ch)
    return SMTPD_ERR_NOMEM;
  ch->conf = conf;
  ch->s = s;
  ch->mem = conf->mem;
  for (i = 0; i < conf->n; i++) {
    smtpd_milter *m = ch->mem.calloc(1, sizeof *m, ch->mem.ctx);
    if (!m) {
      smtpd_milter_chain_del(ch);
      return SMTPD_ERR_NOMEM;
    }
    m->ch = ch;
    m->idx = i;
    ch->m[ch->n++] = m;
  }
  *out = ch;
  return 0;
}

static void clear_reply(smtpd_milter_chain *ch)
{
  size_t i;
  for (i = 0; i < ch->nreply; i++)
    xfree(&ch->mem, ch->reply_lines[i]);
  ch->nreply = 0;
  ch->reply_code = 0;
  ch->reply_enh[0] = '\0';
}

static void clear_edits(smtpd_milter_chain *ch)
{
  size_t i;
  for (i = 0; i < ch->nedits; i++) {
    smtpd_milter_edit *e = &ch->edits[i];
    xfree(&ch->mem, (void *)e->name);
    xfree(&ch->mem, (void *)e->value);
    xfree(&ch->mem, (void *)e->data);
  }
  ch->nedits = ch->mark = 0;
  mlt_buf_free(&ch->mem, &ch->repl);
}

static void clear_message(smtpd_milter_chain *ch)
{
  clear_edits(ch);
  mlt_hlist_clear(&ch->mem, &ch->work);
  ch->body = NULL;
  ch->body_len = 0;
  ch->discard = 0;
}

void smtpd_milter_chain_del(smtpd_milter_chain *ch)
{
  size_t i;
  smtpd_mem mem;
  if (!ch)
    return;
  mem = ch->mem;
  clear_message(ch);
  clear_reply(ch);
  for (i = 0; i < ch->n; i++)
    milter_free(ch->m[i]);
  for (i = 0; i < ch->nmacros; i++) {
    xfree(&mem, ch->macros[i].name);
    xfree(&mem, ch->macros[i].value);
  }
  xfree(&mem, ch->macros);
  xfree(&mem, ch->edits);
  xfree(&mem, ch->mail_addr);
  xfree(&mem, ch->rcpt_addr);
  xfree(&mem, ch->chunk);
  mlt_buf_free(&mem, &ch->args);
  mem.free(ch, mem.ctx);
}

size_t smtpd_milter_chain_count(const smtpd_milter_chain *ch)
{
  return ch ? ch->n : 0;
}

smtpd_milter *smtpd_milter_chain_get(smtpd_milter_chain *ch, size_t i)
{
  return ch && i < ch->n ? ch->m[i] : NULL;
}

int smtpd_milter_chain_set_reader(smtpd_milter_chain *ch,
                                  smtpd_milter_read_fn fn, void *ctx)
{
  if (!ch)
    return SMTPD_ERR_INVALID_ARGUMENT;
  ch->reader = fn;
  ch->reader_ctx = ctx;
  return 0;
}

int smtpd_milter_chain_set_eom_hook(smtpd_milter_chain *ch,
                                    smtpd_milter_eom_fn fn, void *ctx)
{
  if (!ch)
    return SMTPD_ERR_INVALID_ARGUMENT;
  ch->eom = fn;
  ch->eom_ctx = ctx;
  return 0;
}

int smtpd_milter_chain_set_macro(smtpd_milter_chain *ch, const char *name,
                                 const char *value)
{
  size_t i;
  char *v = NULL, *nm;
  kv *p;
  if (!ch || !name || !*name)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (value && !(v = xstrdup(&ch->mem, value)))
    return SMTPD_ERR_NOMEM;
  for (i = 0; i < ch->nmacros; i++) {
    if (name_is(name, strlen(name), ch->macros[i].name)) {
      xfree(&ch->mem, ch->macros[i].value);
      if (v) {
        ch->macros[i].value = v;
      } else {
        xfree(&ch->mem, ch->macros[i].name);
        ch->macros[i] = ch->macros[--ch->nmacros];
      }
      return 0;
    }
  }
  if (!v)
    return 0;
  nm = xstrdup(&ch->mem, name);
  p = ch->mem.realloc(ch->macros, (ch->nmacros + 1) * sizeof *p, ch->mem.ctx);
  if (!nm || !p) {
    xfree(&ch->mem, nm);
    xfree(&ch->mem, v);
    if (p)
      ch->macros = p;
    return SMTPD_ERR_NOMEM;
  }
  ch->macros = p;
  p[ch->nmacros].name = nm;
  p[ch->nmacros++].value = v;
  return 0;
}

int smtpd_milter_chain_set_client(smtpd_milter_chain *ch, int family,
                                  uint16_t port)
{
  if (!ch || (family != 0 && family != 4 && family != 6 && family != 'U'))
    return SMTPD_ERR_INVALID_ARGUMENT;
  ch->family = family;
  ch->port = port;
  return 0;
}

size_t smtpd_milter_chain_edits(const smtpd_milter_chain *ch,
                                const smtpd_milter_edit **edits)
{
  if (!ch) {
    if (edits)
      *edits = NULL;
    return 0;
  }
  if (edits)
    *edits = ch->edits;
  return ch->nedits;
}

int smtpd_milter_chain_discard(const smtpd_milter_chain *ch)
{
  return ch ? ch->discard : 0;
}

int smtpd_milter_chain_busy(const smtpd_milter_chain *ch)
{
  return ch ? ch->op != OP_NONE : 0;
}

/* ---- operations ---------------------------------------------------------------------- */

static int is_message_op(enum op op)
{
  return op == OP_MAIL || op == OP_RCPT || op == OP_DATA || op == OP_EOM;
}

static void set_default_reply(smtpd_milter_chain *ch, smtpd_verdict v)
{
  if (ch->reply_code || ch->op == OP_CONNECT)
    return;
  if (v == SMTPD_REJECT)
    smtpd_session_set_reply(ch->s, 550, "5.7.1", "Command rejected");
  else if (v == SMTPD_TEMPFAIL)
    smtpd_session_set_reply(ch->s, 451, "4.7.1",
                            "Service unavailable - try again later");
}

static void send_abort(smtpd_milter *m)
{
  if (m->st == C_READY && m->in_message) {
    m->in_message = 0;
    send_packet(m, 'A', NULL, 0);
  }
}

/* the operation ends with v: the session learns it now (inside its
 * callback) or through resume */
static void finish(smtpd_milter_chain *ch, smtpd_verdict v)
{
  enum op op = ch->op;
  size_t i;
  const char *lines[MAX_REPLY_LINES];

  if (op == OP_EOM) {
    for (i = 0; i < ch->n; i++)
      send_abort(ch->m[i]); /* filters that did not see the end */
    mlt_hlist_clear(&ch->mem, &ch->work);
    if (v != SMTPD_ACCEPT)
      clear_edits(ch);
  }
  if (ch->reply_code) {
    for (i = 0; i < ch->nreply; i++)
      lines[i] = ch->reply_lines[i];
    smtpd_session_set_reply_lines(ch->s, ch->reply_code,
                                  ch->reply_enh[0] ? ch->reply_enh : NULL,
                                  lines, ch->nreply);
  } else {
    set_default_reply(ch, v);
  }
  ch->op = OP_NONE;
  if (op == OP_EOM && ch->eom) {
    v = ch->eom(ch, v, ch->eom_ctx);
    if (v == SMTPD_DEFER)
      v = SMTPD_TEMPFAIL;
  }
  clear_reply(ch);
  if (ch->in_call) {
    ch->result = v;
  } else if (ch->deferred) {
    ch->deferred = 0;
    ch->resume_rc = smtpd_session_resume(ch->s, v);
  }
}

/* the failure policy of filter i decides the operation */
static int policy(smtpd_milter_chain *ch, size_t i)
{
  switch (ch->conf->act[i]) {
  case SMTPD_MILTER_ACCEPT:
    return 0;
  case SMTPD_MILTER_REJECT:
    finish(ch, SMTPD_REJECT);
    return 1;
  default:
    finish(ch, SMTPD_TEMPFAIL);
    return 1;
  }
}

static uint32_t no_flag(char cmd)
{
  switch (cmd) {
  case 'C': return SMTPD_MILTER_P_NOCONNECT;
  case 'H': return SMTPD_MILTER_P_NOHELO;
  case 'M': return SMTPD_MILTER_P_NOMAIL;
  case 'R': return SMTPD_MILTER_P_NORCPT;
  case 'T': return SMTPD_MILTER_P_NODATA;
  default: return 0;
  }
}

static uint32_t nr_flag(char cmd)
{
  switch (cmd) {
  case 'C': return SMTPD_MILTER_P_NR_CONN;
  case 'H': return SMTPD_MILTER_P_NR_HELO;
  case 'M': return SMTPD_MILTER_P_NR_MAIL;
  case 'R': return SMTPD_MILTER_P_NR_RCPT;
  case 'T': return SMTPD_MILTER_P_NR_DATA;
  case 'L': return SMTPD_MILTER_P_NR_HDR;
  case 'N': return SMTPD_MILTER_P_NR_EOH;
  case 'B': return SMTPD_MILTER_P_NR_BODY;
  default: return 0;
  }
}

/* filter cur is finished with the message: its edits become part of what
 * the next filter sees */
static int commit_filter(smtpd_milter_chain *ch)
{
  size_t i;
  smtpd_milter_edit *e;
  for (i = ch->mark; i < ch->nedits; i++)
    if (mlt_hlist_apply(&ch->mem, &ch->work, &ch->edits[i]))
      return SMTPD_ERR_NOMEM;
  if (ch->repl.len || ch->repl.p) {
    if (ch->nedits == ch->capedits) {
      size_t cap = ch->capedits ? ch->capedits * 2 : 16;
      e = ch->mem.realloc(ch->edits, cap * sizeof *e, ch->mem.ctx);
      if (!e)
        return SMTPD_ERR_NOMEM;
      ch->edits = e;
      ch->capedits = cap;
    }
    e = &ch->edits[ch->nedits++];
    memset(e, 0, sizeof *e);
    e->kind = SMTPD_MILTER_EDIT_REPLBODY;
    e->milter = ch->cur;
    e->data = ch->repl.p ? ch->repl.p : ch->mem.malloc(1, ch->mem.ctx);
    e->len = ch->repl.len;
    if (!e->data) {
      ch->nedits--;
      return SMTPD_ERR_NOMEM;
    }
    memset(&ch->repl, 0, sizeof ch->repl);
    ch->body = e->data;
    ch->body_len = e->len;
  }
  ch->mark = ch->nedits;
  return 0;
}

/* drop what filter cur did to this message (it failed) */
static void drop_filter(smtpd_milter_chain *ch)
{
  while (ch->nedits > ch->mark) {
    smtpd_milter_edit *e = &ch->edits[--ch->nedits];
    xfree(&ch->mem, (void *)e->name);
    xfree(&ch->mem, (void *)e->value);
    xfree(&ch->mem, (void *)e->data);
  }
  mlt_buf_free(&ch->mem, &ch->repl);
}

static void next_filter(smtpd_milter_chain *ch, int commit)
{
  if (ch->op == OP_EOM) {
    if (commit) {
      if (commit_filter(ch)) {
        drop_filter(ch);
        fail(ch->m[ch->cur], "out of memory", NULL);
        return;
      }
    } else {
      drop_filter(ch);
    }
    ch->eph = E_HEADERS;
    ch->hdr_i = 0;
    ch->body_pos = 0;
  }
  ch->cur++;
}

/* the end-of-message conversation with filter m; 1: wait */
static int eom_step(smtpd_milter_chain *ch, smtpd_milter *m)
{
  ptrdiff_t n;
  mlt_buf b = {0};
  const mlt_hdr *h;
  int r;

  switch (ch->eph) {
  case E_HEADERS:
    if ((m->flags & SMTPD_MILTER_P_NOHDRS) || ch->hdr_i >= ch->work.n) {
      ch->eph = E_EOH;
      return 0;
    }
    if (mlt_buf_avail(&m->out) >= OUT_HIGH)
      return 1;
    h = ch->work.h[ch->hdr_i++];
    r = mlt_buf_put(&ch->mem, &b, h->name, strlen(h->name) + 1);
    if (!r)
      r = mlt_value_for_filter(&ch->mem, h->value, h->value_len,
                               (m->flags & SMTPD_MILTER_P_HDR_LEADSPC) != 0,
                               &b);
    if (!r)
      r = put_packet(m, 'L', b.p, b.len);
    mlt_buf_free(&ch->mem, &b);
    if (r) {
      fail(m, "out of memory", NULL);
      return 0;
    }
    if (m->flags & SMTPD_MILTER_P_NR_HDR)
      return 0;
    m->expect = 'L';
    return 1;
  case E_EOH:
    ch->eph = E_BODY;
    ch->body_pos = 0;
    if (m->flags & SMTPD_MILTER_P_NOEOH)
      return 0;
    if (send_macros(m, SMTPD_MILTER_STAGE_EOH, 'N') ||
        send_packet(m, 'N', NULL, 0))
      return 0;
    if (m->flags & SMTPD_MILTER_P_NR_EOH)
      return 0;
    m->expect = 'N';
    return 1;
  case E_BODY:
    if (m->flags & SMTPD_MILTER_P_NOBODY) {
      ch->eph = E_EOB;
      return 0;
    }
    if (mlt_buf_avail(&m->out) >= OUT_HIGH)
      return 1;
    if (ch->body) {
      n = (ptrdiff_t)(ch->body_len - ch->body_pos);
      if (n > (ptrdiff_t)SMTPD_MILTER_CHUNK)
        n = SMTPD_MILTER_CHUNK;
      if (n && send_packet(m, 'B', ch->body + ch->body_pos, (size_t)n))
        return 0;
    } else {
      if (!ch->chunk &&
          !(ch->chunk = ch->mem.malloc(SMTPD_MILTER_CHUNK, ch->mem.ctx))) {
        fail(m, "out of memory", NULL);
        return 0;
      }
      n = ch->reader ? ch->reader(ch->reader_ctx,
                                  ch->body_offset + ch->body_pos, ch->chunk,
                                  SMTPD_MILTER_CHUNK)
                     : 0;
      if (n < 0 || n > (ptrdiff_t)SMTPD_MILTER_CHUNK) {
        ch->reader_failed = 1;
        finish(ch, SMTPD_TEMPFAIL);
        return 1;
      }
      if (n && send_packet(m, 'B', ch->chunk, (size_t)n))
        return 0;
    }
    if (n == 0) {
      ch->eph = E_EOB;
      return 0;
    }
    ch->body_pos += (uint64_t)n;
    if (m->flags & SMTPD_MILTER_P_NR_BODY)
      return 0;
    m->expect = 'B';
    return 1;
  case E_EOB:
    if (send_macros(m, SMTPD_MILTER_STAGE_EOM, 'E') ||
        send_packet(m, 'E', NULL, 0))
      return 0;
    m->expect = 'E';
    return 1;
  }
  return 1;
}

static int skipped(const smtpd_milter_chain *ch, const smtpd_milter *m)
{
  if (m->skip_session || m->st == C_QUIT)
    return 1;
  if (is_message_op(ch->op) && m->skip_message)
    return 1;
  return (m->flags & no_flag(ch->cmd)) != 0;
}

static void advance(smtpd_milter_chain *ch)
{
  while (ch->op != OP_NONE) {
    smtpd_milter *m;
    if (ch->cur >= ch->n) {
      finish(ch, SMTPD_ACCEPT);
      return;
    }
    m = ch->m[ch->cur];
    if (m->st == C_FAILED) {
      if (policy(ch, ch->cur))
        return;
      next_filter(ch, 0);
      continue;
    }
    if (skipped(ch, m)) {
      next_filter(ch, 0);
      continue;
    }
    if (m->st == C_NEW || m->st == C_NEG || m->expect)
      return;
    if (ch->op == OP_EOM) {
      if (eom_step(ch, m))
        return;
      continue;
    }
    if (send_macros(m, ch->stage, ch->cmd) ||
        send_packet(m, ch->cmd, ch->args.p, ch->args.len))
      continue; /* failed: the policy applies on the next round */
    if (ch->cmd == 'M')
      m->in_message = 1;
    if (m->flags & nr_flag(ch->cmd)) {
      next_filter(ch, 1);
      continue;
    }
    m->expect = ch->cmd;
    return;
  }
}

static smtpd_verdict start(smtpd_milter_chain *ch, enum op op, char cmd,
                           smtpd_milter_stage stage)
{
  if (ch->op != OP_NONE)
    return SMTPD_TEMPFAIL; /* cannot happen: the session waits for us */
  ch->op = op;
  ch->cmd = cmd;
  ch->stage = stage;
  ch->cur = 0;
  ch->deferred = 0;
  ch->result = SMTPD_ACCEPT;
  clear_reply(ch);
  ch->in_call = 1;
  advance(ch);
  ch->in_call = 0;
  if (ch->op != OP_NONE) {
    ch->deferred = 1;
    return SMTPD_DEFER;
  }
  return ch->result;
}

static int args_str(smtpd_milter_chain *ch, const char *a, const char *b,
                    const char *c)
{
  int r = 0;
  if (a)
    r = mlt_buf_put(&ch->mem, &ch->args, a, strlen(a));
  if (!r && b)
    r = mlt_buf_put(&ch->mem, &ch->args, b, strlen(b));
  if (!r && c)
    r = mlt_buf_put(&ch->mem, &ch->args, c, strlen(c));
  if (!r)
    r = mlt_buf_put(&ch->mem, &ch->args, "", 1);
  return r;
}

smtpd_verdict smtpd_milter_on_connect(smtpd_milter_chain *ch)
{
  const char *addr, *rdns;
  char fam;
  uint8_t port[2];
  int r;
  if (!ch)
    return SMTPD_TEMPFAIL;
  addr = smtpd_session_client_addr(ch->s);
  rdns = smtpd_session_client_rdns(ch->s);
  ch->args.len = ch->args.off = 0;
  if (!addr)
    fam = 'U';
  else if (ch->family == 'U')
    fam = 'L';
  else if (ch->family == 6 || (ch->family == 0 && strchr(addr, ':')))
    fam = '6';
  else
    fam = '4';
  if (rdns)
    r = args_str(ch, rdns, NULL, NULL);
  else if (addr)
    r = args_str(ch, "[", addr, "]");
  else
    r = args_str(ch, "unknown", NULL, NULL);
  if (!r)
    r = mlt_buf_put(&ch->mem, &ch->args, &fam, 1);
  if (!r && fam != 'U') {
    port[0] = (uint8_t)(ch->port >> 8);
    port[1] = (uint8_t)ch->port;
    r = mlt_buf_put(&ch->mem, &ch->args, port, 2);
    if (!r)
      r = args_str(ch, addr, NULL, NULL);
  }
  if (r)
    return SMTPD_TEMPFAIL;
  return start(ch, OP_CONNECT, 'C', SMTPD_MILTER_STAGE_CONNECT);
}

smtpd_verdict smtpd_milter_on_helo(smtpd_milter_chain *ch,
                                   const smtpd_helo *helo)
{
  if (!ch || !helo)
    return SMTPD_TEMPFAIL;
  ch->args.len = ch->args.off = 0;
  if (args_str(ch, helo->name, NULL, NULL))
    return SMTPD_TEMPFAIL;
  return start(ch, OP_HELO, 'H', SMTPD_MILTER_STAGE_HELO);
}

static int args_params(smtpd_milter_chain *ch, const smtpd_param *p,
                       size_t n)
{
  size_t i;
  int r = 0;
  for (i = 0; i < n && !r; i++)
    r = args_str(ch, p[i].keyword, p[i].value ? "=" : NULL, p[i].value);
  return r;
}

static void abort_all(smtpd_milter_chain *ch)
{
  size_t i;
  for (i = 0; i < ch->n; i++) {
    send_abort(ch->m[i]);
    ch->m[i]->skip_message = 0;
  }
}

smtpd_verdict smtpd_milter_on_mail(smtpd_milter_chain *ch,
                                   const smtpd_mail *mail)
{
  if (!ch || !mail)
    return SMTPD_TEMPFAIL;
  abort_all(ch);
  clear_message(ch);
  xfree(&ch->mem, ch->mail_addr);
  xfree(&ch->mem, ch->rcpt_addr);
  ch->rcpt_addr = NULL;
  ch->args.len = ch->args.off = 0;
  ch->mail_addr = xstrdup(&ch->mem, mail->address);
  if (!ch->mail_addr || args_str(ch, "<", mail->address, ">") ||
      args_params(ch, mail->params, mail->nparams))
    return SMTPD_TEMPFAIL;
  return start(ch, OP_MAIL, 'M', SMTPD_MILTER_STAGE_MAIL);
}

smtpd_verdict smtpd_milter_on_rcpt(smtpd_milter_chain *ch,
                                   const smtpd_rcpt *rcpt)
{
  if (!ch || !rcpt)
    return SMTPD_TEMPFAIL;
  xfree(&ch->mem, ch->rcpt_addr);
  ch->args.len = ch->args.off = 0;
  ch->rcpt_addr = xstrdup(&ch->mem, rcpt->address);
  if (!ch->rcpt_addr || args_str(ch, "<", rcpt->address, ">") ||
      args_params(ch, rcpt->params, rcpt->nparams))
    return SMTPD_TEMPFAIL;
  return start(ch, OP_RCPT, 'R', SMTPD_MILTER_STAGE_RCPT);
}

smtpd_verdict smtpd_milter_on_data(smtpd_milter_chain *ch)
{
  if (!ch)
    return SMTPD_TEMPFAIL;
  ch->args.len = ch->args.off = 0;
  return start(ch, OP_DATA, 'T', SMTPD_MILTER_STAGE_DATA);
}

static void work_header(void *ctx, const smtpd_milter_header *h)
{
  smtpd_milter_chain *ch = ctx;
  if (mlt_hlist_add_raw(&ch->mem, &ch->work, h))
    ch->reader_failed = 1;
}

/* read the header section back from the host's spool */
static int load_headers(smtpd_milter_chain *ch)
{
  smtpd_milter_hsplit *hs;
  uint64_t off = 0;
  ptrdiff_t n, t;
  int r;

  mlt_hlist_clear(&ch->mem, &ch->work);
  ch->body = NULL;
  ch->body_len = 0;
  ch->body_offset = 0;
  if (!ch->reader)
    return 0;
  if (!ch->chunk &&
      !(ch->chunk = ch->mem.malloc(SMTPD_MILTER_CHUNK, ch->mem.ctx)))
    return SMTPD_ERR_NOMEM;
  r = smtpd_milter_hsplit_new(&hs, &ch->mem,
                              (size_t)ch->conf->limit[SMTPD_MILTER_LIMIT_HEADER],
                              (size_t)ch->conf->limit[SMTPD_MILTER_LIMIT_HEADERS]);
  if (r)
    return r;
  ch->reader_failed = 0;
  for (;;) {
    n = ch->reader(ch->reader_ctx, off, ch->chunk, SMTPD_MILTER_CHUNK);
    if (n < 0 || n > (ptrdiff_t)SMTPD_MILTER_CHUNK) {
      r = SMTPD_ERR_IO;
      break;
    }
    if (n == 0) {
      smtpd_milter_hsplit_finish(hs, work_header, ch);
      break;
    }
    t = smtpd_milter_hsplit_feed(hs, ch->chunk, (size_t)n, work_header, ch);
    if (t < 0) {
      r = (int)t;
      break;
    }
    off += (uint64_t)n;
    if (smtpd_milter_hsplit_state(hs) != SMTPD_MILTER_HS_MORE)
      break;
  }
  if (!r && ch->reader_failed)
    r = SMTPD_ERR_NOMEM;
  ch->body_offset = smtpd_milter_hsplit_body_offset(hs);
  smtpd_milter_hsplit_del(hs);
  return r;
}

smtpd_verdict smtpd_milter_on_data_complete(smtpd_milter_chain *ch,
                                            const smtpd_message *msg)
{
  smtpd_verdict v;
  (void)msg;
  if (!ch)
    return SMTPD_TEMPFAIL;
  clear_edits(ch);
  ch->eph = E_HEADERS;
  ch->hdr_i = 0;
  ch->body_pos = 0;
  if (load_headers(ch)) {
    v = SMTPD_TEMPFAIL;
    if (ch->eom)
      v = ch->eom(ch, SMTPD_TEMPFAIL, ch->eom_ctx);
    return v == SMTPD_DEFER ? SMTPD_TEMPFAIL : v;
  }
  ch->args.len = ch->args.off = 0;
  return start(ch, OP_EOM, 'E', SMTPD_MILTER_STAGE_EOM);
}

void smtpd_milter_on_rset(smtpd_milter_chain *ch)
{
  if (!ch)
    return;
  abort_all(ch);
  clear_message(ch);
}

void smtpd_milter_chain_quit(smtpd_milter_chain *ch)
{
  size_t i;
  if (!ch)
    return;
  ch->op = OP_NONE;
  ch->deferred = 0;
  for (i = 0; i < ch->n; i++) {
    smtpd_milter *m = ch->m[i];
    if (m->st == C_READY || m->st == C_NEG) {
      if (m->st == C_READY)
        send_abort(m);
      m->expect = 0;
      put_packet(m, 'Q', NULL, 0);
      m->st = C_QUIT;
    } else if (m->st == C_NEW) {
      m->st = C_QUIT;
    }
  }
}

/* ---- replies ------------------------------------------------------------------------ */

static void fail(smtpd_milter *m, const char *fmt, const char *arg)
{
  smtpd_milter_chain *ch = m->ch;
  if (m->st == C_FAILED || m->st == C_QUIT)
    return;
  snprintf(m->err, sizeof m->err, fmt, arg ? arg : "");
  m->st = C_FAILED;
  m->expect = 0;
  m->out.off = m->out.len = 0;
  (void)ch;
}

/* after an event from outside: let the operation go on */
static void kick(smtpd_milter_chain *ch)
{
  if (ch->op != OP_NONE && !ch->in_call)
    advance(ch);
}

/* NUL-terminated strings of a packet; returns how many, -1 if malformed */
static int strings(const uint8_t *d, size_t len, const char **out, int max)
{
  size_t i = 0;
  int n = 0;
  if (len == 0 || d[len - 1] != '\0')
    return -1;
  while (i < len) {
    if (n == max)
      return -1;
    out[n++] = (const char *)d + i;
    i += strlen((const char *)d + i) + 1;
  }
  return n;
}

static int printable(const char *s, int allow_lines)
{
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c < 32 && !(allow_lines && (c == '\r' || c == '\n' || c == '\t'))) ||
        c == 127)
      return 0;
  }
  return 1;
}

static int is_header_name(const char *s)
{
  if (!*s)
    return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= 32 || (unsigned char)*s >= 127 || *s == ':')
      return 0;
  return 1;
}

/* SMFIR_REPLYCODE: "DDD[ -]x.y.z text" lines joined by CRLF. Each line
 * must carry the same 4xx/5xx code; the text is printable ASCII; the
 * enhanced code, when the first line has one, must match the class. */
static int parse_replycode(smtpd_milter_chain *ch, const uint8_t *d,
                           size_t len)
{
  const char *s = (const char *)d, *line, *eol, *t;
  size_t ll, el;
  int code = 0, c;

  if (len < 4 || d[len - 1] != '\0' || memchr(d, '\0', len - 1))
    return -1;
  clear_reply(ch);
  line = s;
  for (;;) {
    eol = strstr(line, "\r\n");
    if (eol && eol[2] == '\0')
      eol = NULL; /* a final CRLF ends the last line */
    ll = eol ? (size_t)(eol - line) : strlen(line);
    if (!eol && ll >= 2 && line[ll - 2] == '\r' && line[ll - 1] == '\n')
      ll -= 2;
    if (ll < 3 || line[0] < '4' || line[0] > '5' || line[1] < '0' ||
        line[1] > '9' || line[2] < '0' || line[2] > '9')
      return -1;
    c = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (code && c != code)
      return -1;
    code = c;
    if (ll > 3 && line[3] != ' ' && line[3] != '-')
      return -1;
    if ((eol && ll > 3 && line[3] != '-') || (!eol && ll > 3 && line[3] != ' '))
      return -1;
    t = ll > 4 ? line + 4 : line + ll;
    /* enhanced status code */
    el = 0;
    if (t[0] == line[0] && t[1] == '.') {
      const char *q = t + 2;
      int parts = 2;
      while ((*q >= '0' && *q <= '9') || *q == '.') {
        if (*q == '.')
          parts++;
        q++;
      }
      if (parts == 3 && (q == line + ll || *q == ' ') && q[-1] != '.' &&
          (size_t)(q - t) < sizeof ch->reply_enh)
        el = (size_t)(q - t);
    }
    if (el) {
      if (ch->nreply == 0) {
        memcpy(ch->reply_enh, t, el);
        ch->reply_enh[el] = '\0';
      }
      t += el;
      if (*t == ' ')
        t++;
    } else if (ch->nreply == 0 && t[0] >= '0' && t[0] <= '9' && t[1] == '.') {
      return -1; /* an enhanced code of the wrong class */
    }
    if (ch->nreply == MAX_REPLY_LINES ||
        (size_t)(line + ll - t) > 500)
      return -1;
    {
      size_t tl = (size_t)(line + ll - t), k;
      char *dup = ch->mem.malloc(tl + 1, ch->mem.ctx);
      if (!dup)
        return -1;
      memcpy(dup, t, tl);
      dup[tl] = '\0';
      ch->reply_lines[ch->nreply++] = dup;
      for (k = 0; k < tl; k++)
        if ((unsigned char)dup[k] < 32 || (unsigned char)dup[k] > 126)
          return -1;
    }
    if (!eol)
      break;
    line = eol + 2;
  }
  ch->reply_code = code;
  return code;
}

static int add_edit(smtpd_milter_chain *ch, smtpd_milter *m,
                    smtpd_milter_edit_kind kind, uint32_t index,
                    const char *name, const char *value, int lead)
{
  smtpd_milter_edit *e;
  char *nm = NULL, *v = NULL;

  if (ch->nedits >= ch->conf->limit[SMTPD_MILTER_LIMIT_EDITS])
    return -1;
  if (ch->nedits == ch->capedits) {
    size_t cap = ch->capedits ? ch->capedits * 2 : 16;
    e = ch->mem.realloc(ch->edits, cap * sizeof *e, ch->mem.ctx);
    if (!e)
      return -1;
    ch->edits = e;
    ch->capedits = cap;
  }
  if (name && !(nm = xstrdup(&ch->mem, name)))
    return -1;
  if (value) {
    /* a filter without HDR_LEADSPC gets "Name: value" */
    size_t vl = strlen(value), add = (lead && *value) ? 1 : 0;
    v = ch->mem.malloc(vl + add + 1, ch->mem.ctx);
    if (!v) {
      xfree(&ch->mem, nm);
      return -1;
    }
    if (add)
      v[0] = ' ';
    memcpy(v + add, value, vl + 1);
  }
  e = &ch->edits[ch->nedits++];
  memset(e, 0, sizeof *e);
  e->kind = kind;
  e->milter = m->idx;
  e->index = index;
  e->name = nm;
  e->value = v;
  return 0;
}

static uint32_t action_for(char cmd)
{
  switch (cmd) {
  case 'h': case 'i': return SMTPD_MILTER_ACT_ADDHDRS;
  case 'm': return SMTPD_MILTER_ACT_CHGHDRS;
  case 'e': return SMTPD_MILTER_ACT_CHGFROM;
  case '+': return SMTPD_MILTER_ACT_ADDRCPT;
  case '2': return SMTPD_MILTER_ACT_ADDRCPT_PAR;
  case '-': return SMTPD_MILTER_ACT_DELRCPT;
  case 'b': return SMTPD_MILTER_ACT_CHGBODY;
  case 'q': return SMTPD_MILTER_ACT_QUARANTINE;
  default: return 0;
  }
}

/* an edit at end of message; 0 ok, -1 protocol error (reason set) */
static int on_edit(smtpd_milter *m, char cmd, const uint8_t *d, size_t len)
{
  smtpd_milter_chain *ch = m->ch;
  const char *s[4];
  int n, lead = !(m->flags & SMTPD_MILTER_P_HDR_LEADSPC);
  uint32_t idx = 0;

  if (m->expect != 'E') {
    fail(m, "edit '%s' before end of message", (char[]){cmd, 0});
    return -1;
  }
  if (!(m->actions & action_for(cmd))) {
    fail(m, "edit '%s' not negotiated", (char[]){cmd, 0});
    return -1;
  }
  if (cmd == 'b') {
    if (ch->repl.len + len > ch->conf->limit[SMTPD_MILTER_LIMIT_REPLBODY] ||
        mlt_buf_reserve(&ch->mem, &ch->repl, len ? len : 1)) {
      fail(m, "replacement body too large", NULL);
      return -1;
    }
    if (len)
      mlt_buf_put(&ch->mem, &ch->repl, d, len);
    return 0;
  }
  if (cmd == 'i' || cmd == 'm') {
    if (len < 4) {
      fail(m, "malformed header edit", NULL);
      return -1;
    }
    idx = get32(d);
    d += 4;
    len -= 4;
  }
  n = strings(d, len, s, 4);
  switch (cmd) {
  case 'h': case 'i': case 'm':
    if (n != 2 || !is_header_name(s[0]) || !printable(s[1], 1)) {
      fail(m, "malformed header edit", NULL);
      return -1;
    }
    if (add_edit(ch, m, (smtpd_milter_edit_kind)cmd, idx, s[0], s[1], lead))
      goto nomem;
    return 0;
  case 'e': case '2':
    if (n < 1 || n > 2 || !*s[0] || !printable(s[0], 0) ||
        (n == 2 && !printable(s[1], 0))) {
      fail(m, "malformed envelope edit", NULL);
      return -1;
    }
    if (add_edit(ch, m, (smtpd_milter_edit_kind)cmd, 0, s[0],
                 n == 2 ? s[1] : NULL, 0))
      goto nomem;
    return 0;
  case '+': case '-': case 'q':
    if (n != 1 || (cmd != 'q' && !*s[0]) || !printable(s[0], 0)) {
      fail(m, "malformed edit", NULL);
      return -1;
    }
    if (add_edit(ch, m, (smtpd_milter_edit_kind)cmd, 0, s[0], NULL, 0))
      goto nomem;
    return 0;
  }
  fail(m, "unknown edit", NULL);
  return -1;
nomem:
  fail(m, "too many edits or out of memory", NULL);
  return -1;
}

static int negotiate(smtpd_milter *m, const uint8_t *d, size_t len)
{
  const smtpd_milter_conf *c = m->ch->conf;
  uint32_t st;
  size_t i, sl;

  if (len < 12) {
    fail(m, "short option negotiation", NULL);
    return -1;
  }
  m->version = get32(d);
  m->actions = get32(d + 4);
  m->flags = get32(d + 8);
  if (m->version < 2 || m->version > SMTPD_MILTER_VERSION) {
    fail(m, "unsupported protocol version", NULL);
    return -1;
  }
  if (m->actions & ~c->actions) {
    fail(m, "filter wants actions that were not offered", NULL);
    return -1;
  }
  if (m->flags & ~c->flags) {
    fail(m, "filter wants protocol steps that were not offered", NULL);
    return -1;
  }
  for (i = 12; i < len;) {
    if (len - i < 5 || !(m->actions & SMTPD_MILTER_ACT_SETSYMLIST)) {
      fail(m, "malformed macro list", NULL);
      return -1;
    }
    st = get32(d + i);
    i += 4;
    sl = strnlen((const char *)d + i, len - i);
    if (st >= SMTPD_MILTER_STAGE_COUNT_ || sl == len - i) {
      fail(m, "malformed macro list", NULL);
      return -1;
    }
    xfree(&m->ch->mem, m->symlist[st]);
    m->symlist[st] = m->ch->mem.malloc(sl + 1, m->ch->mem.ctx);
    if (!m->symlist[st]) {
      fail(m, "out of memory", NULL);
      return -1;
    }
    memcpy(m->symlist[st], d + i, sl + 1);
    i += sl + 1;
  }
  m->st = C_READY;
  m->expect = 0;
  return 0;
}

static void on_packet(smtpd_milter *m, char cmd, const uint8_t *d, size_t len)
{
  smtpd_milter_chain *ch = m->ch;
  char ex = m->expect;
  int code, env = ch->op != OP_EOM;

  if (m->st == C_NEG) {
    if (cmd != 'O') {
      fail(m, "expected option negotiation, got '%s'", (char[]){cmd, 0});
      return;
    }
    if (negotiate(m, d, len) == 0)
      advance(ch);
    return;
  }
  if (!ex || ch->op == OP_NONE || ch->cur != m->idx) {
    fail(m, "unexpected reply '%s'", (char[]){cmd, 0});
    return;
  }
  if (action_for(cmd)) {
    on_edit(m, cmd, d, len);
    return;
  }
  if (cmd == 'p') /* PROGRESS: still working; the host's timer restarts */
    return;
  if (ex == 'E' && strchr("catryd", cmd))
    m->in_message = 0; /* the filter saw the end of the message */
  switch (cmd) {
  case 'c':
    m->expect = 0;
    if (!env && ex != 'E')
      break; /* more of the message */
    next_filter(ch, 1);
    break;
  case 'a':
    m->expect = 0;
    if (ch->op == OP_CONNECT || ch->op == OP_HELO)
      m->skip_session = 1;
    else
      m->skip_message = 1;
    next_filter(ch, 1);
    break;
  case 's':
    if (ex != 'B') {
      fail(m, "SKIP outside the body", NULL);
      return;
    }
    m->expect = 0;
    ch->eph = E_EOB;
    break;
  case 'd':
    m->expect = 0;
    if (!is_message_op(ch->op)) { /* not meaningful before MAIL */
      m->skip_session = 1;
      next_filter(ch, 0);
      break;
    }
    {
      size_t i;
      for (i = 0; i < ch->n; i++)
        ch->m[i]->skip_message = 1;
    }
    ch->discard = 1;
    finish(ch, SMTPD_ACCEPT);
    return;
  case 'r':
  case 't':
    m->expect = 0;
    finish(ch, cmd == 'r' ? SMTPD_REJECT : SMTPD_TEMPFAIL);
    return;
  case 'y':
    code = parse_replycode(ch, d, len);
    if (code < 0) {
      clear_reply(ch);
      fail(m, "invalid REPLYCODE", NULL);
      return;
    }
    m->expect = 0;
    finish(ch, code >= 500 ? SMTPD_REJECT : SMTPD_TEMPFAIL);
    return;
  default:
    fail(m, "unknown reply '%s'", (char[]){cmd, 0});
    return;
  }
  advance(ch);
}

/* ---- connection API ------------------------------------------------------------------- */

size_t smtpd_milter_index(const smtpd_milter *m) { return m ? m->idx : 0; }

const char *smtpd_milter_name(const smtpd_milter *m)
{
  return m ? m->ch->conf->name[m->idx] : NULL;
}

/* what resuming the session returned, once */
static int rc_of(smtpd_milter_chain *ch)
{
  int r = ch->resume_rc;
  ch->resume_rc = 0;
  return r;
}

int smtpd_milter_connected(smtpd_milter *m)
{
  const smtpd_milter_conf *c;
  uint8_t d[12];
  if (!m)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (m->st != C_NEW)
    return SMTPD_ERR_INVALID_STATE;
  c = m->ch->conf;
  put32(d, SMTPD_MILTER_VERSION);
  put32(d + 4, c->actions);
  put32(d + 8, c->flags);
  m->st = C_NEG;
  if (send_packet(m, 'O', d, sizeof d) == 0)
    m->expect = 'O';
  kick(m->ch);
  return rc_of(m->ch);
}

int smtpd_milter_fail(smtpd_milter *m, const char *reason)
{
  if (!m)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (m->st == C_QUIT) { /* closing after QUIT is the normal end */
    m->out.off = m->out.len = 0;
    return 0;
  }
  fail(m, "%s", reason ? reason : "connection failed");
  kick(m->ch);
  return rc_of(m->ch);
}

ptrdiff_t smtpd_milter_feed(smtpd_milter *m, const void *data, size_t len)
{
  const uint8_t *d = data;
  size_t i = 0, take;
  int r;

  if (!m || (!data && len))
    return SMTPD_ERR_INVALID_ARGUMENT;
  while (i < len && (m->st == C_NEG || m->st == C_READY || m->st == C_NEW)) {
    if (m->st == C_NEW) {
      fail(m, "data before the connection was reported", NULL);
      break;
    }
    if (m->lenhave < 4) {
      m->lenbuf[m->lenhave++] = d[i++];
      if (m->lenhave == 4) {
        m->need = get32(m->lenbuf);
        m->pkt.len = m->pkt.off = 0;
        if (m->need == 0 || m->need > SMTPD_MILTER_MAX_PACKET) {
          fail(m, m->need ? "oversized packet" : "empty packet", NULL);
          break;
        }
      }
      continue;
    }
    take = m->need - m->pkt.len;
    if (take > len - i)
      take = len - i;
    if (mlt_buf_put(&m->ch->mem, &m->pkt, d + i, take)) {
      fail(m, "out of memory", NULL);
      break;
    }
    i += take;
    if (m->pkt.len == m->need) {
      m->lenhave = 0;
      on_packet(m, (char)m->pkt.p[0], m->pkt.p + 1, m->pkt.len - 1);
    }
  }
  kick(m->ch);
  r = rc_of(m->ch);
  return r < 0 ? r : (ptrdiff_t)len;
}

size_t smtpd_milter_output(smtpd_milter *m, const uint8_t **data)
{
  if (!m || !data)
    return 0;
  *data = m->out.p ? m->out.p + m->out.off : NULL;
  return mlt_buf_avail(&m->out);
}

int smtpd_milter_consume(smtpd_milter *m, size_t n)
{
  if (!m || n > mlt_buf_avail(&m->out))
    return SMTPD_ERR_INVALID_ARGUMENT;
  mlt_buf_drop(&m->out, n);
  kick(m->ch); /* body chunks waiting for room */
  return rc_of(m->ch);
}

int smtpd_milter_want_read(const smtpd_milter *m)
{
  return m && (m->st == C_NEG || m->st == C_READY);
}

int smtpd_milter_want_write(const smtpd_milter *m)
{
  return m && (m->st == C_NEW || mlt_buf_avail(&m->out) > 0);
}

uint32_t smtpd_milter_timeout(const smtpd_milter *m,
                              smtpd_milter_timeout_kind *kind)
{
  smtpd_milter_timeout_kind k = SMTPD_MILTER_TIMEOUT_NONE;
  if (m) {
    const smtpd_milter_chain *ch = m->ch;
    if (m->st == C_NEW)
      k = SMTPD_MILTER_TIMEOUT_CONNECT;
    else if (m->st == C_NEG)
      k = SMTPD_MILTER_TIMEOUT_COMMAND;
    else if (m->st == C_READY && ch->op == OP_EOM && ch->cur == m->idx)
      k = SMTPD_MILTER_TIMEOUT_CONTENT;
    else if (m->st == C_READY && (m->expect || mlt_buf_avail(&m->out)))
      k = SMTPD_MILTER_TIMEOUT_COMMAND;
    else if (m->st == C_QUIT && mlt_buf_avail(&m->out))
      k = SMTPD_MILTER_TIMEOUT_COMMAND;
  }
  if (kind)
    *kind = k;
  return k == SMTPD_MILTER_TIMEOUT_NONE ? 0 : m->ch->conf->timeout[k];
}

int smtpd_milter_timeout_expired(smtpd_milter *m)
{
  smtpd_milter_timeout_kind k;
  if (!m)
    return SMTPD_ERR_INVALID_ARGUMENT;
  smtpd_milter_timeout(m, &k);
  if (k == SMTPD_MILTER_TIMEOUT_NONE)
    return 0;
  if (m->st == C_QUIT) {
    m->out.off = m->out.len = 0;
    return 0;
  }
  fail(m, "%s timeout",
       k == SMTPD_MILTER_TIMEOUT_CONNECT   ? "connect"
       : k == SMTPD_MILTER_TIMEOUT_CONTENT ? "content"
                                           : "command");
  kick(m->ch);
  return rc_of(m->ch);
}

int smtpd_milter_is_failed(const smtpd_milter *m)
{
  return m && m->st == C_FAILED;
}

int smtpd_milter_is_done(const smtpd_milter *m)
{
  return m && (m->st == C_FAILED ||
               (m->st == C_QUIT && mlt_buf_avail(&m->out) == 0));
}

const char *smtpd_milter_error(const smtpd_milter *m)
{
  return m ? m->err : "";
}

uint32_t smtpd_milter_actions(const smtpd_milter *m)
{
  return m ? m->actions : 0;
}

uint32_t smtpd_milter_flags(const smtpd_milter *m) { return m ? m->flags : 0; }
