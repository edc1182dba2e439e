/*
 * config.c - the shared, read-only session configuration.
 *
 *   smtpd_config_new, smtpd_config_del, smtpd_config_set_* / get_*
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "reply.h"

/* Append one "250-text" CRLF line to a growing string. */
static int add_line(const smtpd_mem *m, char **buf, size_t *len,
                    const char *a, const char *b) {
  size_t la = strlen(a), lb = b ? strlen(b) : 0;
  size_t n = smtpd_i_line_size(0, la, lb);
  char *p = smtpd_i_realloc(m, *buf, *len + n);
  if (!p)
    return SMTPD_ERR_NOMEM;
  smtpd_i_format_line(p + *len, 250, '-', NULL, 0, a, la, b, lb);
  *len += n;
  *buf = p;
  return 0;
}

/* v in decimal at dst (room for 20 digits); returns the length. */
static size_t decimal(char *dst, uint64_t v) {
  char num[24], *w = num + sizeof num;
  size_t n;
  do {
    *--w = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  n = (size_t)(num + sizeof num - w);
  memcpy(dst, w, n);
  return n;
}

/* Rebuild the greeting and the fixed parts of the EHLO reply (see
 * internal.h). */
int smtpd_i_config_rebuild(smtpd_config *c) {
  const smtpd_mem *m = &c->mem;
  char *pre = NULL, *post = NULL, *all, *greet, num[24];
  size_t pl = 0, ql = 0, i, hl = strlen(c->hostname), bl = strlen(c->banner);
  int rv;
  greet = smtpd_i_alloc(m, smtpd_i_line_size(0, hl + 1, bl));
  if (!greet)
    return SMTPD_ERR_NOMEM;
  smtpd_i_free(m, c->greeting);
  c->greeting = greet;
  c->greeting_len =
      smtpd_i_format_line(greet, 220, ' ', NULL, 0, c->hostname, hl, NULL, 0);
  /* the separator space then the banner, before CRLF */
  greet[c->greeting_len - 2] = ' ';
  memcpy(greet + c->greeting_len - 1, c->banner, bl);
  c->greeting_len += bl + 1;
  greet[c->greeting_len - 2] = '\r';
  greet[c->greeting_len - 1] = '\n';
  rv = add_line(m, &pre, &pl, c->hostname, NULL);
  if (!rv && c->options[SMTPD_OPT_PIPELINING])
    rv = add_line(m, &pre, &pl, "PIPELINING", NULL);
  if (!rv && c->options[SMTPD_OPT_SIZE]) {
    uint64_t v = c->limits[SMTPD_LIMIT_MESSAGE_SIZE];
    num[decimal(num, v)] = '\0';
    rv = add_line(m, &pre, &pl, c->limits[SMTPD_LIMIT_MESSAGE_SIZE] ? "SIZE "
                                                                       : "SIZE",
                  c->limits[SMTPD_LIMIT_MESSAGE_SIZE] ? num : NULL);
  }
  if (!rv && c->options[SMTPD_OPT_VRFY])
    rv = add_line(m, &pre, &pl, "VRFY", NULL);
  if (!rv && c->options[SMTPD_OPT_ENHANCEDSTATUSCODES])
    rv = add_line(m, &post, &ql, "ENHANCEDSTATUSCODES", NULL);
  if (!rv && c->options[SMTPD_OPT_8BITMIME])
    rv = add_line(m, &post, &ql, "8BITMIME", NULL);
  if (!rv && c->options[SMTPD_OPT_DSN])
    rv = add_line(m, &post, &ql, "DSN", NULL);
  if (!rv && c->options[SMTPD_OPT_SMTPUTF8])
    rv = add_line(m, &post, &ql, "SMTPUTF8", NULL);
  if (!rv && c->options[SMTPD_OPT_CHUNKING])
    rv = add_line(m, &post, &ql, "CHUNKING", NULL);
  if (!rv && c->options[SMTPD_OPT_CHUNKING] && c->options[SMTPD_OPT_BINARYMIME])
    rv = add_line(m, &post, &ql, "BINARYMIME", NULL);
  if (!rv && c->options[SMTPD_OPT_LIMITS]) {
    /* from the very limits the session enforces (RFC 9422) */
    char lim[64];
    size_t k = 0;
    memcpy(lim, "RCPTMAX=", 8);
    k = 8 + decimal(lim + 8, c->limits[SMTPD_LIMIT_RECIPIENTS]);
    if (c->limits[SMTPD_LIMIT_TRANSACTIONS]) {
      memcpy(lim + k, " MAILMAX=", 9);
      k += 9;
      k += decimal(lim + k, c->limits[SMTPD_LIMIT_TRANSACTIONS]);
    }
    lim[k] = '\0';
    rv = add_line(m, &post, &ql, "LIMITS ", lim);
  }
  if (!rv && c->options[SMTPD_OPT_XCLIENT])
    rv = add_line(m, &post, &ql,
                  "XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT",
                  NULL);
  for (i = 0; !rv && i < c->n_ehlo_extra; i++)
    rv = add_line(m, &post, &ql, c->ehlo_extra[i], NULL);
  if (rv) {
    smtpd_i_free(m, pre);
    smtpd_i_free(m, post);
    return rv;
  }
  if (ql) {
    /* the last line of the reply: '-' -> ' ' once, here, not per EHLO */
    size_t b = ql - 2;
    while (b > 0 && post[b - 1] != '\n')
      b--;
    post[b + 3] = ' ';
  }
  /* the whole reply when nothing goes between the two parts */
  all = smtpd_i_alloc(m, pl + ql);
  if (!all) {
    smtpd_i_free(m, pre);
    smtpd_i_free(m, post);
    return SMTPD_ERR_NOMEM;
  }
  memcpy(all, pre, pl);
  if (ql) {
    memcpy(all + pl, post, ql);
  } else {
    size_t b = pl - 2;
    while (b > 0 && all[b - 1] != '\n')
      b--;
    all[b + 3] = ' ';
  }
  smtpd_i_free(m, c->ehlo_pre);
  smtpd_i_free(m, c->ehlo_post);
  smtpd_i_free(m, c->ehlo_all);
  c->ehlo_pre = pre;
  c->ehlo_pre_len = pl;
  c->ehlo_post = post;
  c->ehlo_post_len = ql;
  c->ehlo_all = all;
  c->ehlo_all_len = pl + ql;
  return 0;
}

static const uint64_t default_limits[SMTPD_LIMIT_COUNT_] = {
    [SMTPD_LIMIT_MESSAGE_SIZE] = 10240000,
    [SMTPD_LIMIT_RECIPIENTS] = 1000,
    [SMTPD_LIMIT_COMMAND_LINE] = 512,
    [SMTPD_LIMIT_TEXT_LINE] = 1000,
    [SMTPD_LIMIT_ERRORS] = 20,
    [SMTPD_LIMIT_AUTH_FAILURES] = 3,
    [SMTPD_LIMIT_AUTH_LINE] = 12288,
    [SMTPD_LIMIT_OUTPUT] = 65536,
    [SMTPD_LIMIT_SOFT_ERRORS] = 10,
};

int smtpd_config_new(smtpd_config **out, const smtpd_mem *mem) {
  smtpd_config *c;
  if (!out)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!mem)
    mem = smtpd_i_default_mem();
  c = smtpd_i_calloc(mem, 1, sizeof *c);
  if (!c)
    return SMTPD_ERR_NOMEM;
  c->mem = *mem;
  c->hostname = smtpd_i_strdup(mem, "localhost");
  c->banner = smtpd_i_strdup(mem, "ESMTP");
  if (!c->hostname || !c->banner) {
    smtpd_config_del(c);
    return SMTPD_ERR_NOMEM;
  }
  memcpy(c->limits, default_limits, sizeof c->limits);
  c->timeouts[SMTPD_TIMEOUT_COMMAND] = 300000;
  c->timeouts[SMTPD_TIMEOUT_DATA] = 180000;
  c->timeouts[SMTPD_TIMEOUT_LINE] = 60000;
  c->timeouts[SMTPD_TIMEOUT_MESSAGE] = 1800000;
  c->timeouts[SMTPD_TIMEOUT_TARPIT] = 1000;
  c->body_avx2 = (unsigned char)smtpd_i_body_avx2_usable();
  c->options[SMTPD_OPT_ENHANCEDSTATUSCODES] = 1;
  c->options[SMTPD_OPT_PIPELINING] = 1;
  c->options[SMTPD_OPT_8BITMIME] = 1;
  c->options[SMTPD_OPT_SIZE] = 1;
  c->options[SMTPD_OPT_VRFY] = 1;
  if (smtpd_i_config_rebuild(c)) {
    smtpd_config_del(c);
    return SMTPD_ERR_NOMEM;
  }
  *out = c;
  return 0;
}

void smtpd_config_del(smtpd_config *c) {
  size_t i;
  if (!c)
    return;
  smtpd_i_free(&c->mem, c->hostname);
  smtpd_i_free(&c->mem, c->banner);
  smtpd_i_free(&c->mem, c->greeting);
  smtpd_i_free(&c->mem, c->ehlo_pre);
  smtpd_i_free(&c->mem, c->ehlo_post);
  smtpd_i_free(&c->mem, c->ehlo_all);
  for (i = 0; i < c->n_ehlo_extra; i++)
    smtpd_i_free(&c->mem, c->ehlo_extra[i]);
  smtpd_i_free(&c->mem, c);
}

/* Printable ASCII; spaces allowed only when `spaces`. */
static int printable(const char *s, int spaces, size_t max) {
  size_t n = 0;
  for (; *s; s++, n++) {
    unsigned char ch = (unsigned char)*s;
    if (ch < 0x20 || ch > 0x7e || (ch == ' ' && !spaces) || n >= max)
      return 0;
  }
  return 1;
}

static int replace_string(smtpd_config *c, char **slot, const char *v) {
  char *d = smtpd_i_strdup(&c->mem, v);
  if (!d)
    return SMTPD_ERR_NOMEM;
  smtpd_i_free(&c->mem, *slot);
  *slot = d;
  return 0;
}

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF,
 * so "220 " hostname " " banner CRLF must fit. */
#define REPLY_LINE_MAX 512u

int smtpd_config_set_hostname(smtpd_config *c, const char *name) {
  int rv;
  if (!c || !name || !*name || !printable(name, 0, 255) ||
      4 + strlen(name) + 1 + strlen(c->banner) + 2 > REPLY_LINE_MAX)
    return SMTPD_ERR_INVALID_ARGUMENT;
  rv = replace_string(c, &c->hostname, name);
  return rv ? rv : smtpd_i_config_rebuild(c);
}

int smtpd_config_set_banner(smtpd_config *c, const char *text) {
  int rv;
  if (!c || !text || !printable(text, 1, 400) ||
      4 + strlen(c->hostname) + 1 + strlen(text) + 2 > REPLY_LINE_MAX)
    return SMTPD_ERR_INVALID_ARGUMENT;
  rv = replace_string(c, &c->banner, text);
  return rv ? rv : smtpd_i_config_rebuild(c);
}

int smtpd_config_set_limit(smtpd_config *c, smtpd_limit which, uint64_t v) {
  if (!c || (unsigned)which >= SMTPD_LIMIT_COUNT_)
    return SMTPD_ERR_INVALID_ARGUMENT;
  switch (which) {
  case SMTPD_LIMIT_COMMAND_LINE:
    if (v < 512 || v > 65536)
      return SMTPD_ERR_INVALID_ARGUMENT;
    break;
  case SMTPD_LIMIT_AUTH_LINE:
    if (v < 12288 || v > 1048576)
      return SMTPD_ERR_INVALID_ARGUMENT;
    break;
  case SMTPD_LIMIT_TEXT_LINE:
    if (v < 1000)
      return SMTPD_ERR_INVALID_ARGUMENT;
    break;
  case SMTPD_LIMIT_SOFT_ERRORS:
  case SMTPD_LIMIT_TRANSACTIONS:
    if (v > 1000000)
      return SMTPD_ERR_INVALID_ARGUMENT;
    break;
  case SMTPD_LIMIT_RECIPIENTS:
  case SMTPD_LIMIT_ERRORS:
  case SMTPD_LIMIT_AUTH_FAILURES:
    if (v < 1 || v > 1000000)
      return SMTPD_ERR_INVALID_ARGUMENT;
    break;
  case SMTPD_LIMIT_OUTPUT:
    if (v < 1024)
      return SMTPD_ERR_INVALID_ARGUMENT;
    break;
  default:
    break;
  }
  c->limits[which] = v;
  return which == SMTPD_LIMIT_MESSAGE_SIZE ||
                 which == SMTPD_LIMIT_RECIPIENTS ||
                 which == SMTPD_LIMIT_TRANSACTIONS
             ? smtpd_i_config_rebuild(c)
             : 0;
}

int smtpd_config_get_limit(const smtpd_config *c, smtpd_limit which,
                           uint64_t *value) {
  if (!c || !value || (unsigned)which >= SMTPD_LIMIT_COUNT_)
    return SMTPD_ERR_INVALID_ARGUMENT;
  *value = c->limits[which];
  return 0;
}

int smtpd_config_set_timeout(smtpd_config *c, smtpd_timeout which,
                             uint32_t ms) {
  if (!c || which <= SMTPD_TIMEOUT_NONE || which >= SMTPD_TIMEOUT_COUNT_)
    return SMTPD_ERR_INVALID_ARGUMENT;
  c->timeouts[which] = ms;
  return 0;
}

int smtpd_config_set_option(smtpd_config *c, smtpd_option opt, int on) {
  if (!c || (unsigned)opt >= SMTPD_OPT_COUNT_)
    return SMTPD_ERR_INVALID_ARGUMENT;
  c->options[opt] = on ? 1 : 0;
  return smtpd_i_config_rebuild(c);
}

int smtpd_config_get_option(const smtpd_config *c, smtpd_option opt,
                            int *on) {
  if (!c || !on || (unsigned)opt >= SMTPD_OPT_COUNT_)
    return SMTPD_ERR_INVALID_ARGUMENT;
  *on = c->options[opt];
  return 0;
}

int smtpd_config_set_line_ending(smtpd_config *c, smtpd_line_ending p) {
  if (!c || (unsigned)p > SMTPD_LINE_ENDING_ACCEPT)
    return SMTPD_ERR_INVALID_ARGUMENT;
  c->line_ending = p;
  return 0;
}

int smtpd_config_set_sync_policy(smtpd_config *c, smtpd_sync_policy p) {
  if (!c || (unsigned)p > SMTPD_SYNC_ALLOW)
    return SMTPD_ERR_INVALID_ARGUMENT;
  c->sync = p;
  return 0;
}

int smtpd_config_set_long_line(smtpd_config *c, smtpd_long_line p) {
  if (!c || (unsigned)p > SMTPD_LONG_LINE_REJECT)
    return SMTPD_ERR_INVALID_ARGUMENT;
  c->long_line = p;
  return 0;
}

int smtpd_config_add_ehlo_keyword(smtpd_config *c, const char *kw) {
  char *d;
  if (!c || !kw || !*kw || *kw == ' ' || !printable(kw, 1, 400))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (c->n_ehlo_extra >= SMTPD_I_MAX_EHLO_EXTRA)
    return SMTPD_ERR_INVALID_STATE;
  d = smtpd_i_strdup(&c->mem, kw);
  if (!d)
    return SMTPD_ERR_NOMEM;
  c->ehlo_extra[c->n_ehlo_extra++] = d;
  return smtpd_i_config_rebuild(c);
}

/* How many octets of smtpd_sasl_backend each version had. */
static size_t backend_size(unsigned version) {
  switch (version) {
  case 1:
    return offsetof(smtpd_sasl_backend, destroy);
  case 2:
    return sizeof(smtpd_sasl_backend);
  default:
    return 0;
  }
}

int smtpd_config_set_sasl(smtpd_config *c, const smtpd_sasl_backend *b) {
  if (!c)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!b) {
    c->sasl = NULL;
    return 0;
  }
  if (b->version > SMTPD_SASL_BACKEND_VERSION)
    return SMTPD_ERR_UNSUPPORTED;
  if (b->version < 1 || !b->start || !b->mechanisms || !b->dispose)
    return SMTPD_ERR_INVALID_ARGUMENT;
  /* the table is copied by its version: newer members stay NULL */
  memset(&c->sasl_copy, 0, sizeof c->sasl_copy);
  memcpy(&c->sasl_copy, b, backend_size(b->version));
  c->sasl = &c->sasl_copy;
  return 0;
}

/* "A".."Z", "0".."9", "-"; upper-cased into dst (cap incl. NUL). */
static int keyword_upper(char *dst, size_t cap, const char *src) {
  size_t i;
  for (i = 0; src[i]; i++) {
    char ch = src[i];
    if (i + 1 >= cap)
      return -1;
    if (ch >= 'a' && ch <= 'z')
      ch = (char)(ch - 32);
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          (ch == '-' && i > 0)))
      return -1;
    dst[i] = ch;
  }
  dst[i] = '\0';
  return i ? 0 : -1;
}

int smtpd_config_add_command(smtpd_config *c, const char *verb,
                             unsigned flags) {
  static const char *const core[] = {"HELO", "EHLO", "MAIL", "RCPT",
                                     "DATA", "RSET", "NOOP", "QUIT",
                                     "VRFY", "EXPN", "HELP", "AUTH",
                                     "STARTTLS"};
  char up[SMTPD_I_MAX_VERB + 1];
  size_t i;
  if (!c || !verb || keyword_upper(up, sizeof up, verb) ||
      (flags & ~(unsigned)0x7f))
    return SMTPD_ERR_INVALID_ARGUMENT;
  for (i = 0; i < sizeof core / sizeof core[0]; i++)
    if (!strcmp(up, core[i]))
      return SMTPD_ERR_INVALID_STATE;
  for (i = 0; i < c->ncmds && strcmp(c->cmds[i].verb, up); i++)
    ;
  if (i == c->ncmds) {
    if (c->ncmds >= SMTPD_I_MAX_HOST_CMDS)
      return SMTPD_ERR_INVALID_STATE;
    c->ncmds++;
  }
  memcpy(c->cmds[i].verb, up, strlen(up) + 1);
  c->cmds[i].len = (unsigned char)strlen(up);
  c->cmds[i].flags = flags;
  return 0;
}

int smtpd_config_add_param(smtpd_config *c, unsigned where,
                           const char *keyword, smtpd_param_value value) {
  char up[sizeof c->params[0].keyword];
  size_t i;
  if (!c || !keyword || !where ||
      (where & ~(SMTPD_PARAM_MAIL | SMTPD_PARAM_RCPT)) ||
      (unsigned)value > SMTPD_PARAM_OPTIONAL_VALUE ||
      keyword_upper(up, sizeof up, keyword))
    return SMTPD_ERR_INVALID_ARGUMENT;
  for (i = 0; i < c->nparams && strcmp(c->params[i].keyword, up); i++)
    ;
  if (i == c->nparams) {
    if (c->nparams >= SMTPD_I_MAX_DECLARED)
      return SMTPD_ERR_INVALID_STATE;
    c->nparams++;
  }
  memcpy(c->params[i].keyword, up, strlen(up) + 1);
  c->params[i].where = where;
  c->params[i].value = value;
  return 0;
}
