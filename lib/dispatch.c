/*
 * dispatch.c - the command table: one row per verb with its flags, its
 * handler and its decision; the checks every row's flags ask for
 * (rejected session, TLS or AUTH required, HELO/MAIL/RCPT first, the end
 * of a pipelined group); the host's registered verbs; what is left over
 * (not implemented, HTTP, unknown).
 */
#include <string.h>

#include "internal.h"
#include "reply.h"

#define ROW(verb, flags, run, dec, text) \
  {verb, sizeof verb - 1, 0, flags, run, dec, text}
#define ROW_IF(only, verb, flags, run, dec, text) \
  {verb, sizeof verb - 1, only, flags, run, dec, text}
#define BT SMTPD_CMD_BEFORE_TLS
#define BA SMTPD_CMD_BEFORE_AUTH
#define EG SMTPD_CMD_ENDS_GROUP

/* Kept out of smtpd_i_dispatch so that its common path stays small. */
#if defined(__GNUC__)
#define OUT_OF_LINE __attribute__((noinline))
#else
#define OUT_OF_LINE
#endif

/* core_row() and by_letter[] find MAIL, RCPT, DATA, EHLO, HELO and QUIT
 * by their first letter (core_row then searches the rest): keep the first
 * five first, in this order, and QUIT eighth. */
static const smtpd_i_row table[] = {
    ROW("MAIL", SMTPD_CMD_NEEDS_HELO | SMTPD_CMD_NO_MAIL, smtpd_i_cmd_mail,
        &smtpd_i_dec_mail, "Error: nested MAIL command"),
    ROW("RCPT", SMTPD_CMD_NEEDS_MAIL, smtpd_i_cmd_rcpt, &smtpd_i_dec_rcpt,
        NULL),
    ROW("DATA", EG | SMTPD_CMD_NEEDS_MAIL | SMTPD_CMD_NEEDS_RCPT,
        smtpd_i_cmd_data, &smtpd_i_dec_data, NULL),
    ROW_IF(R_SMTP, "EHLO", EG | BT | BA, smtpd_i_cmd_ehlo, &smtpd_i_dec_helo,
           NULL),
    ROW_IF(R_SMTP, "HELO", EG | BT | BA, smtpd_i_cmd_helo, &smtpd_i_dec_helo,
           NULL),
    ROW("RSET", BT | BA, smtpd_i_cmd_rset, NULL, NULL),
    ROW("NOOP", EG | BT | BA, smtpd_i_cmd_noop, NULL, NULL),
    ROW("QUIT", BT | BA, smtpd_i_cmd_quit, NULL, NULL),
    ROW("VRFY", EG | BA, smtpd_i_cmd_vrfy, &smtpd_i_dec_vrfy, NULL),
    ROW("EXPN", EG | BA, smtpd_i_cmd_expn, NULL, NULL),
    ROW("HELP", BT | BA, smtpd_i_cmd_help, NULL, NULL),
    ROW("AUTH", BA | SMTPD_CMD_NO_MAIL, smtpd_i_cmd_auth, NULL, NULL),
    ROW("STARTTLS", EG | BT | BA | SMTPD_CMD_NO_MAIL, smtpd_i_cmd_starttls,
        &smtpd_i_dec_starttls, NULL),
    /* BDAT checks its own state: a refused chunk must still be read */
    ROW_IF(R_BDAT, "BDAT", BT | BA, smtpd_i_cmd_bdat, NULL, NULL),
    ROW_IF(R_LMTP, "LHLO", EG | BT | BA, smtpd_i_cmd_lhlo, &smtpd_i_dec_helo,
           NULL),
    ROW_IF(R_XCLIENT, "XCLIENT", EG | BT | BA | SMTPD_CMD_NO_MAIL,
           smtpd_i_cmd_xclient, &smtpd_i_dec_xclient, NULL),
};

/* Old or unsafe verbs answered 502 unless the host registered them. */
static const char *const not_implemented[] = {"TURN", "ETRN", "BDAT",
                                              "SEND", "SOML", "SAML"};

/* A row that exists only under an option is unknown without it. */
static int row_enabled(const smtpd_config *c, const smtpd_i_row *r) {
  switch (r->only) {
  case R_SMTP:
    return !c->options[SMTPD_OPT_LMTP];
  case R_LMTP:
    return c->options[SMTPD_OPT_LMTP];
  case R_BDAT:
    return c->options[SMTPD_OPT_CHUNKING];
  case R_XCLIENT:
    return c->options[SMTPD_OPT_XCLIENT];
  default:
    return 1;
  }
}

static int is_http_or_header(const char *line, size_t verb_len) {
  static const char *const http[] = {"GET",     "POST",   "HEAD",
                                     "PUT",     "CONNECT", "OPTIONS",
                                     "DELETE",  "TRACE",  "PATCH"};
  size_t i;
  for (i = 0; i < sizeof http / sizeof http[0]; i++)
    if (strlen(http[i]) == verb_len && smtpd_i_ieq(line, http[i], verb_len))
      return 1;
  /* "Name:" header field: printable chars up to a colon, no space */
  if (verb_len >= 2 && line[verb_len - 1] == ':') {
    for (i = 0; i + 1 < verb_len; i++) {
      unsigned char ch = (unsigned char)line[i];
      if (ch < 0x21 || ch > 0x7e || ch == ':')
        return 0;
    }
    return 1;
  }
  return 0;
}

/* The checks a row's flags ask for; 0 when the command may run. The
 * common case (no TLS or AUTH requirement, the session in the state the
 * row needs) costs a few tests; the replies are made out of line. */
#define STATE_FLAGS                                                          \
  (SMTPD_CMD_NEEDS_HELO | SMTPD_CMD_NO_MAIL | SMTPD_CMD_NEEDS_MAIL |         \
   SMTPD_CMD_NEEDS_RCPT)

OUT_OF_LINE static int refuse(smtpd_session *s, const smtpd_i_row *row) {
  const smtpd_config *c = s->cfg;
  unsigned f = row->flags;
  if (c->options[SMTPD_OPT_REQUIRE_TLS] && !s->tls &&
      !(f & SMTPD_CMD_BEFORE_TLS)) {
    smtpd_i_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
    if (s->cb.on_tls_required)
      s->cb.on_tls_required(s, row->verb, s->ud);
    return 1;
  }
  if ((f & SMTPD_CMD_NEEDS_HELO) && !s->helo_seen) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: send HELO/EHLO first", 0);
    return 1;
  }
  if ((f & SMTPD_CMD_NO_MAIL) && s->in_mail) {
    smtpd_i_protocol_error(s, 503, "5.5.1",
                           row->in_mail_text
                               ? row->in_mail_text
                               : "Error: MAIL transaction in progress",
                           0);
    return 1;
  }
  if ((f & SMTPD_CMD_NEEDS_MAIL) && !s->in_mail) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: need MAIL command", 0);
    return 1;
  }
  if ((f & SMTPD_CMD_NEEDS_RCPT) && !s->nrcpts) {
    smtpd_i_protocol_error(s, 503, "5.5.1", "Error: need RCPT command", 0);
    return 1;
  }
  if (c->options[SMTPD_OPT_REQUIRE_AUTH] && !s->auth_user &&
      !(f & SMTPD_CMD_BEFORE_AUTH)) {
    smtpd_i_reply(s, 530, "5.7.0", "Authentication required");
    return 1;
  }
  return 0;
}

/* Whether refuse() would pass: the same conditions, no replies. A row
 * whose state flags the session meets, with neither requirement on,
 * needs no further look; anything else asks refuse(). */
static inline int refused(smtpd_session *s, const smtpd_i_row *row) {
  const smtpd_config *c = s->cfg;
  unsigned f = row->flags;
  if (!(c->options[SMTPD_OPT_REQUIRE_TLS] |
        c->options[SMTPD_OPT_REQUIRE_AUTH]) &&
      (!(f & STATE_FLAGS) ||
       (f & STATE_FLAGS) == (s->in_mail ? SMTPD_CMD_NEEDS_MAIL : 0u)))
    return 0;
  return refuse(s, row);
}

static inline void run(smtpd_session *s, const smtpd_i_row *row, char *arg) {
  if (refused(s, row))
    return;
  row->run(s, row, arg);
  /* a command that ends a group and was answered at once; a decision
   * sets the mark itself when it is applied (now or at resume) */
  if ((row->flags & SMTPD_CMD_ENDS_GROUP) && !s->pending && !s->broken)
    smtpd_i_set_sync_mark(s);
}

/* The core's verbs are letters only: clearing bit 5 of each octet
 * upper-cases a letter, and maps no other octet onto an upper-case
 * letter, so four octets compare at once. */
static uint32_t upper4(const char *p) {
  uint32_t w;
  memcpy(&w, p, 4);
  return w & UINT32_C(0xDFDFDFDF);
}

static const smtpd_i_row *find_row(const smtpd_i_row *r,
                                   const smtpd_i_row *end, const char *line,
                                   size_t vl) {
  uint32_t w = upper4(line);
  for (; r < end; r++)
    if (r->len == vl && upper4(r->verb) == w &&
        (vl == 4 || smtpd_i_ieq(line + 4, r->verb + 4, vl - 4)))
      return r;
  return NULL;
}

/* The six most frequent rows by the upper-cased first letter of their
 * verb, then the rest. */
static const smtpd_i_row *core_row(const char *line, size_t vl) {
  const smtpd_i_row *r = NULL;
  if (vl != 4 && vl != 7 && vl != 8)
    return NULL;
  switch (line[0] & 0xDF) {
  case 'M': r = find_row(&table[0], &table[1], line, vl); break;
  case 'R': r = find_row(&table[1], &table[2], line, vl); break;
  case 'D': r = find_row(&table[2], &table[3], line, vl); break;
  case 'E': r = find_row(&table[3], &table[4], line, vl); break;
  case 'H': r = find_row(&table[4], &table[5], line, vl); break;
  case 'Q': r = find_row(&table[7], &table[8], line, vl); break;
  default: break;
  }
  return r ? r
           : find_row(&table[5], table + sizeof table / sizeof table[0],
                      line, vl);
}

/* The six most frequent rows (see core_row) by the five low bits of the
 * first letter of their verb (either case). */
static const smtpd_i_row *const by_letter[32] = {
    ['M' & 31] = &table[0], ['R' & 31] = &table[1], ['D' & 31] = &table[2],
    ['E' & 31] = &table[3], ['H' & 31] = &table[4], ['Q' & 31] = &table[7]};

/* The row of one of those verbs at the start of line, followed by a space
 * or the end: the common case, found without scanning for the verb's end
 * (the four octets equal the verb upper-cased only when they are its
 * letters, so the verb is four long). NULL for anything else. A line
 * starts a command-line or AUTH buffer, whose first 16 octets are always
 * defined (input.c), so its first four are read at once even when it is
 * shorter; line[4] is read only after they matched four letters. */
static const smtpd_i_row *four_letter_row(const char *line) {
  const smtpd_i_row *r = by_letter[line[0] & 31];
  if (!r || upper4(r->verb) != upper4(line) ||
      (line[4] != ' ' && line[4] != '\0'))
    return NULL;
  return r;
}

/* Everything but a frequent verb in the command state: the rejected
 * session, the verb's length and row, rows under an option, the host's
 * verbs (its row built in *host), the rest. Returns the row to run with
 * *arg set, or NULL when the line was answered. */
OUT_OF_LINE static const smtpd_i_row *
other_row(smtpd_session *s, char *line, char **arg, smtpd_i_row *host) {
  const smtpd_config *c = s->cfg;
  const smtpd_i_row *row;
  size_t vl = 0, i;
  while (line[vl] && line[vl] != ' ')
    vl++;
  *arg = line + vl;

  if (s->state == ST_REJECTED) {
    if (vl == 4 && smtpd_i_ieq(line, "QUIT", 4))
      smtpd_i_cmd_quit(s, NULL, *arg);
    else
      smtpd_i_protocol_error(s, 503, "5.5.1", "Error: no SMTP service here",
                             0);
    return NULL;
  }
  row = core_row(line, vl);
  if (row && row->only && !row_enabled(c, row)) {
    if (vl == 4 && smtpd_i_ieq(line, "BDAT", 4)) {
      smtpd_i_protocol_error(s, 502, "5.5.1",
                             "Error: command not implemented", 0);
      return NULL;
    }
    row = NULL;
  }
  if (row)
    return row;
  for (i = 0; i < c->ncmds; i++) {
    const smtpd_i_host_cmd *h = &c->cmds[i];
    if (h->len == vl && smtpd_i_ieq(line, h->verb, vl)) {
      host->verb = h->verb;
      host->len = h->len;
      host->only = 0;
      host->flags = h->flags;
      host->run = smtpd_i_cmd_host;
      host->decision = &smtpd_i_dec_command;
      host->in_mail_text = NULL;
      return host;
    }
  }
  if (vl == 4)
    for (i = 0; i < sizeof not_implemented / sizeof not_implemented[0]; i++)
      if (smtpd_i_ieq(line, not_implemented[i], 4)) {
        smtpd_i_protocol_error(s, 502, "5.5.1",
                               "Error: command not implemented", 0);
        return NULL;
      }
  if (is_http_or_header(line, vl)) {
    smtpd_i_reply(s, 221, "2.7.0", "Error: I can break rules, too. Goodbye.");
    smtpd_i_notice(s, SMTPD_NOTICE_HTTP_COMMAND, 221, 0);
    smtpd_i_close(s, SMTPD_CLOSE_HTTP);
    return NULL;
  }
  smtpd_i_protocol_error(s, 500, "5.5.2", "Error: command not recognized", 0);
  return NULL;
}

void smtpd_i_dispatch(smtpd_session *s, char *line) {
  smtpd_i_row host;
  const smtpd_i_row *row = four_letter_row(line);
  char *arg = line + 4;
  if (!row || row->only || s->state == ST_REJECTED) {
    row = other_row(s, line, &arg, &host);
    if (!row)
      return;
  }
  run(s, row, arg);
}
