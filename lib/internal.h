/*
 * internal.h - internal: the session and config structures shared by the
 * core's modules, and each module's entry points, listed from the bottom
 * layer up. A module calls only modules listed above it here (see
 * docs/architecture.md):
 *
 *   util.c         allocator hook, error strings, neutering
 *   parse.c        argument parsers (parse.h)
 *   reply.c        the one reply formatter, the output queue, the default
 *                  reply table (its interface: reply.h)
 *   state.c        notices, errors, close, transaction and arena
 *   decide.c       running a decision callback and applying its verdict
 *   body.c         DATA body scanner
 *   auth.c         AUTH exchange framing
 *   commands.c     what each command does, and its decision's effect
 *   dispatch.c     the command table: lookup, flag checks, host verbs
 *   input.c        input framing: command lines, AUTH lines, body
 *   session.c      the public session API
 *   config.c       the public config API
 */
#ifndef SMTPD_LIB_INTERNAL_H
#define SMTPD_LIB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "smtpd/smtpd.h"
#include "smtpd/sasl.h"

#define SMTPD_I_MAX_EHLO_EXTRA 16
#define SMTPD_I_MAX_PARAMS 16     /* parameters on one MAIL/RCPT line */
#define SMTPD_I_MAX_DECLARED 32   /* host-declared parameters */
#define SMTPD_I_MAX_HOST_CMDS 32  /* host-registered verbs */
#define SMTPD_I_MAX_VERB 16
#define SMTPD_I_REPLY_MAX 2048    /* host-set reply, formatted */
#define SMTPD_I_PROXY_MAX 1040u   /* PROXY v2: 16 + 1024 */
#define SMTPD_I_OUT_FIRST 256u    /* first output buffer, allocated at need */

typedef struct smtpd_i_param_decl {
  char keyword[64];
  unsigned where;
  smtpd_param_value value;
} smtpd_i_param_decl;

typedef struct smtpd_i_host_cmd {
  char verb[SMTPD_I_MAX_VERB + 1];
  unsigned char len;
  unsigned flags;
} smtpd_i_host_cmd;

struct smtpd_config {
  smtpd_mem mem;
  char *hostname;
  char *banner;
  uint64_t limits[SMTPD_LIMIT_COUNT_];
  uint32_t timeouts[SMTPD_TIMEOUT_COUNT_];
  unsigned char options[SMTPD_OPT_COUNT_];
  smtpd_line_ending line_ending;
  smtpd_sync_policy sync;
  smtpd_long_line long_line;
  unsigned char body_avx2; /* the body scanner may use AVX2 (body.c) */
  char *ehlo_extra[SMTPD_I_MAX_EHLO_EXTRA];
  size_t n_ehlo_extra;
  const smtpd_sasl_backend *sasl; /* &sasl_copy, or NULL */
  smtpd_sasl_backend sasl_copy;   /* copied by the table's version */
  smtpd_i_param_decl params[SMTPD_I_MAX_DECLARED];
  size_t nparams;
  smtpd_i_host_cmd cmds[SMTPD_I_MAX_HOST_CMDS];
  size_t ncmds;
  /* EHLO reply pieces rebuilt by every setter: the lines before
   * STARTTLS/AUTH ("250-host" ... "250-VRFY") and after them, each line
   * ending CRLF and using '-' */
  char *ehlo_pre, *ehlo_post; /* ehlo_post, if any, ends in "250 " */
  size_t ehlo_pre_len, ehlo_post_len;
  /* both, the last line ending with "250 ": the whole reply when no
   * STARTTLS, REQUIRETLS or AUTH line goes between them */
  char *ehlo_all;
  size_t ehlo_all_len;
  char *greeting; /* "220 <hostname> <banner>" CRLF */
  size_t greeting_len;
};

int smtpd_i_config_rebuild(smtpd_config *c);

/* What the session is doing with its input. input.c relies on the order:
 * the states that read lines come before ST_BDAT. */
typedef enum {
  ST_INIT = 0,   /* not started */
  ST_CMD,        /* reading commands */
  ST_DATA,       /* reading a message body */
  ST_AUTH,       /* reading an AUTH response line */
  ST_TLS_WAIT,   /* STARTTLS/implicit TLS handshake: input discarded */
  ST_REJECTED,   /* 554 greeting: only QUIT is honoured */
  ST_BDAT,       /* reading the octets of a BDAT chunk */
  ST_PROXY,      /* reading a PROXY protocol header, before the greeting */
  ST_CLOSED      /* closing: nothing more is read */
} smtpd_i_state;

/* Which default replies a decision uses (reply.c's table). */
typedef enum {
  K_CONNECT = 0,
  K_HELO,
  K_MAIL,
  K_RCPT,
  K_DATA,
  K_DATA_COMPLETE,
  K_RCPT_DATA,
  K_VRFY,
  K_STARTTLS,
  K_COMMAND,
  K_BODY,
  K_AUTH,
  K_XCLIENT,
  K_COUNT_
} smtpd_i_kind;

/* Rules for smtpd_session_set_reply during a decision. */
#define D_REPLY_354 0x1u     /* 354 allowed (DATA start) */
#define D_REPLY_NO_2XX 0x2u  /* no 2xx but 220 (connect) */
#define D_REPLY_FAIL 0x4u    /* 4xx/5xx only (body) */
#define D_REPLY_NONE 0x8u    /* no host reply at all (AUTH) */
#define D_OWN_SUCCESS 0x10u  /* on accept, apply() writes the reply */

/* A decision: its default replies, what accepting or refusing does, and
 * (for decisions resumed differently) its resume. Each command-table row
 * points at its command's decision, so the decision code never names a
 * command. */
typedef struct smtpd_i_decision {
  smtpd_i_kind kind;
  unsigned flags;
  /* after the reply was written (before, with D_OWN_SUCCESS and accepted);
   * host_reply: the host set the reply */
  void (*apply)(smtpd_session *s, int accepted, int host_reply);
  /* resume in place of smtpd_i_apply, when not NULL */
  void (*resume)(smtpd_session *s, smtpd_verdict v);
} smtpd_i_decision;

/* Body scanner position (body.c). */
typedef enum {
  DS_LINE_START = 0, /* after CRLF (or at body start) */
  DS_DOT,            /* "." at line start */
  DS_DOT_CR,         /* ".\r" at line start */
  DS_TEXT,           /* inside a line */
  DS_CR              /* "\r" inside a line */
} smtpd_i_dstate;

/* Why a message in progress will be refused at its end. */
typedef enum {
  DOOM_NONE = 0,
  DOOM_SIZE,
  DOOM_BARE_LF,
  DOOM_BARE_CR,
  DOOM_LONG_LINE,
  DOOM_HOST_REJECT,
  DOOM_HOST_TEMPFAIL
} smtpd_i_doom;

typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t cap, used;
  /* data follows */
} arena_chunk;

struct smtpd_session {
  const smtpd_config *cfg;
  smtpd_callbacks cb;
  unsigned cb_version;
  void *ud;

  smtpd_i_state state;
  const smtpd_i_decision *pending; /* deferred decision awaiting resume */
  const smtpd_i_decision *in_cb;   /* decision callback running */
  unsigned dec_flags;        /* command flags of the decision in progress */
  unsigned effects;          /* smtpd_session_set_effects, host command */
  int broken;                /* fatal error code, 0 if fine */
  unsigned started : 1, implicit_tls : 1, tls : 1, esmtp : 1, helo_seen : 1,
      in_mail : 1, smtputf8 : 1, skipping : 1, reply_set : 1,
      callback_running : 1, auth_big : 1, pend_crlf : 1, chunked : 1,
      bdat_last : 1, bdat_discard : 1, bdat_failed : 1, requiretls : 1,
      proxy : 1,
      pend_doom : 3, /* smtpd_i_doom applied at the next body scan */
      line_high : 1; /* the command line has an octet >= 0x80 */

  /* command line assembly */
  char *line;       /* cmdbuf or auth buffer */
  size_t line_len;
  size_t line_cap;  /* usable octets (limit) */
  char *cmdbuf;     /* cap = command limit + 1, then the first output
                     * buffer (smtpd_i_out_first); NULL until a command
                     * octet arrives (input.c) */
  char *authbuf;    /* allocated during AUTH, cap = auth limit + 67 */
  uint64_t skipped; /* octets of an overlong line skipped so far */

  /* output: out_cap 0 means no buffer yet; out is then NULL or the
   * config's greeting, borrowed (reply.c) */
  uint8_t *out;
  size_t out_start, out_len, out_cap;
  uint64_t out_total;    /* octets ever queued */
  uint64_t out_consumed; /* octets ever consumed */
  uint64_t sync_mark;    /* input before out_consumed reaches this is early */

  /* host-set reply for the decision in progress */
  char *reply;
  size_t reply_len;
  int reply_code;

  /* session facts */
  char *helo;       /* verbatim */
  char *helo_safe;  /* neutered */
  size_t helo_cap;
  char *scratch;    /* neutered HELO argument during on_helo */
  size_t scratch_cap;
  char *client_addr, *client_rdns;
  smtpd_tls_info tls_info;
  char *tls_strings; /* storage for tls_info strings */
  char *auth_user, *auth_mech;

  /* transaction: strings live in the arena */
  arena_chunk *arena;
  char *sender;
  char **rcpts;
  size_t nrcpts, rcpts_cap;
  smtpd_body_type body_type;
  size_t rcpt_reply; /* next recipient to answer (REPLY_PER_RCPT) */

  /* pending decision details (pointers into line buffer / arena) */
  struct {
    char *str;    /* HELO name, MAIL/RCPT address */
    int esmtp;
    unsigned len; /* strlen(str) for an address */
  } pend;

  /* BDAT: octets of the current chunk still to read */
  uint64_t bdat_left, bdat_size;
  /* PROXY header being read (ST_PROXY) */
  uint8_t *proxybuf;
  size_t proxy_len;
  /* client port, protocol override (XCLIENT PROTO=) */
  unsigned client_port;
  const char *proto;
  uint64_t transactions; /* MAIL commands accepted */
  /* deadlines and tarpit: lines read (a line's deadline is told apart
   * by it), the message's and the delay's epochs (0: none in force) */
  uint64_t lines, msg_epoch, epochs, delay_epoch;
  uint32_t delay_ms;      /* reply delay requested with delay_epoch */
  uint64_t delay_mark;    /* ... for the output queued up to here */

  /* DATA */
  smtpd_i_dstate dstate;
  smtpd_i_doom doom;
  uint64_t body_size;
  uint64_t text_line; /* octets in the current body line */

  /* counters */
  unsigned errors;
  unsigned auth_failures;

  /* AUTH exchange */
  void *sasl_exch;
  char sasl_mech[24];
};

/* The command-line buffer (allocated with the first command octet,
 * input.c) is followed by SMTPD_I_OUT_FIRST octets that become the output
 * buffer if the queue has none of its own by then (smtpd_i_out_adopt),
 * then SMTPD_I_HELO_FIRST octets for a HELO name and its neutered copy
 * when both fit (commands.c). */
#define SMTPD_I_HELO_FIRST 128u
/* ... and, 8-aligned after those, the transaction arena's first chunk
 * (state.c): a header and SMTPD_I_ARENA_FIRST octets, enough for a
 * sender, a short recipient list and a recipient of about 30 octets
 * each, so that a small transaction allocates nothing. With the default
 * 512-octet command line the block is then 1,032 octets, the largest
 * request glibc serves from its per-thread cache. */
#define SMTPD_I_ARENA_FIRST 104u
static inline size_t smtpd_i_arena_first_at(const smtpd_config *c) {
  return ((size_t)c->limits[SMTPD_LIMIT_COMMAND_LINE] + 1 + SMTPD_I_OUT_FIRST +
          SMTPD_I_HELO_FIRST + 7) & ~(size_t)7;
}
/* the size of the command-line block (input.c allocates it) */
static inline size_t smtpd_i_cmdbuf_size(const smtpd_config *c) {
  return smtpd_i_arena_first_at(c) + sizeof(arena_chunk) + SMTPD_I_ARENA_FIRST;
}
static inline uint8_t *smtpd_i_out_first(const smtpd_session *s) {
  return s->cmdbuf ? (uint8_t *)s->cmdbuf +
                         s->cfg->limits[SMTPD_LIMIT_COMMAND_LINE] + 1
                   : NULL;
}
static inline char *smtpd_i_helo_first(const smtpd_session *s) {
  return s->cmdbuf ? (char *)smtpd_i_out_first(s) + SMTPD_I_OUT_FIRST : NULL;
}

/* ---- util.c ------------------------------------------------------------ */
void *smtpd_i_alloc(const smtpd_mem *m, size_t n);
void *smtpd_i_calloc(const smtpd_mem *m, size_t n, size_t size);
void *smtpd_i_realloc(const smtpd_mem *m, void *p, size_t n);
void smtpd_i_free(const smtpd_mem *m, void *p);
char *smtpd_i_strdup(const smtpd_mem *m, const char *s);
/* src[0..n) (its NUL included) into both dst as it is and safe
 * neutered, in one pass */
void smtpd_i_copy_neutered(char *restrict dst, char *restrict safe,
                           const char *restrict src, size_t n);
const smtpd_mem *smtpd_i_default_mem(void);
/* a[0..n) equals upper[0..n) ignoring the case of ASCII letters in a. */
static inline int smtpd_i_ieq(const char *a, const char *upper, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)upper[i];
    if (x >= 'a' && x <= 'z')
      x = (unsigned char)(x - 32);
    if (x != y)
      return 0;
  }
  return 1;
}

/* memcpy for the short copies on every command's path (replies,
 * addresses): 4 to 32 octets as two overlapping moves of a fixed size,
 * inline, never reading or writing outside [0, n); others go to memcpy. */
static inline void smtpd_i_copy(void *dst, const void *src, size_t n) {
  unsigned char *d = (unsigned char *)dst;
  const unsigned char *p = (const unsigned char *)src;
  if (n >= 8 && n <= 16) {
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + n - 8, 8);
    memcpy(d, &a, 8);
    memcpy(d + n - 8, &b, 8);
  } else if (n > 16 && n <= 32) {
    uint64_t a, b, c, e;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    memcpy(&c, p + n - 16, 8);
    memcpy(&e, p + n - 8, 8);
    memcpy(d, &a, 8);
    memcpy(d + 8, &b, 8);
    memcpy(d + n - 16, &c, 8);
    memcpy(d + n - 8, &e, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + n - 4, 4);
    memcpy(d, &a, 4);
    memcpy(d + n - 4, &b, 4);
  } else {
    memcpy(d, p, n);
  }
}

/* ---- reply.c: reply.h ------------------------------------------------ */

/* ---- state.c ----------------------------------------------------------- */
void smtpd_i_notice(smtpd_session *s, smtpd_notice_type type, int code,
                    uint64_t count);
void smtpd_i_close(smtpd_session *s, smtpd_close_reason why);
void smtpd_i_bump_errors(smtpd_session *s);
/* hold back the output queued now (smtpd_session_reply_delay) */
void smtpd_i_tarpit(smtpd_session *s);
/* A reply caused by a client mistake: reply, notice, count. */
void smtpd_i_protocol_error(smtpd_session *s, int code, const char *enh,
                            const char *text, int with_host);
void *smtpd_i_arena_alloc(smtpd_session *s, size_t n);
/* A NUL-terminated copy of str[0..n) in the arena. */
char *smtpd_i_arena_memdup(smtpd_session *s, const char *str, size_t n);
void smtpd_i_arena_free(smtpd_session *s);
/* Add recipient addr (len octets and a NUL after them) to the list. */
int smtpd_i_add_rcpt(smtpd_session *s, const char *addr, size_t len);
/* copies of the client's address and name (either may be NULL) */
int smtpd_i_set_client(smtpd_session *s, const char *addr, const char *rdns);
void smtpd_i_reset_transaction(smtpd_session *s);

/* ---- decide.c (running a decision: decide.h) ------------------------- */
void smtpd_i_apply(smtpd_session *s, const smtpd_i_decision *d,
                   smtpd_verdict v);
/* DISCONNECT or ABORT: the 421 (the host's if it set a 421) and close */
void smtpd_i_end_by_host(smtpd_session *s, smtpd_verdict v);

/* ---- body.c ------------------------------------------------------------ */
/* 1 when this CPU can run the AVX2 body scan (read at config creation;
 * tests may clear smtpd_config.body_avx2 to exercise the SSE2 one) */
int smtpd_i_body_avx2_usable(void);
void smtpd_i_body_begin(smtpd_session *s);
/* BDAT chunk octets: no dot or line handling; returns how many were taken
 * (all of them, unless the host paused after a part) */
const uint8_t *smtpd_i_body_raw(smtpd_session *s, const uint8_t *p,
                                const uint8_t *end);
/* Scan body input; *ended is set when <CRLF>.<CRLF> was read (the state
 * is then ST_CMD and the caller answers the message). */
const uint8_t *smtpd_i_body_scan(smtpd_session *s, const uint8_t *p,
                                 const uint8_t *end, int *ended);

/* ---- auth.c ------------------------------------------------------------ */
void smtpd_i_auth_command(smtpd_session *s, char *arg);
void smtpd_i_auth_response(smtpd_session *s, char *line, size_t len);
void smtpd_i_auth_malformed(smtpd_session *s, char *line, size_t len);
void smtpd_i_auth_reset(smtpd_session *s);
/* the "250-AUTH mechs" EHLO line for this channel, if any */
int smtpd_i_auth_advertise(smtpd_session *s);
void smtpd_i_sasl_channel(const smtpd_session *s, smtpd_sasl_channel *ch);

/* ---- commands.c -------------------------------------------------------- */
typedef struct smtpd_i_row smtpd_i_row;
typedef void smtpd_i_handler(smtpd_session *s, const smtpd_i_row *row,
                             char *arg);
/* Rows that exist only under an option (row->only). */
#define R_SMTP 1u    /* not in LMTP mode */
#define R_LMTP 2u    /* only in LMTP mode */
#define R_BDAT 3u    /* only with CHUNKING */
#define R_XCLIENT 4u /* only with XCLIENT */

/* One command: its verb, flags, handler and decision. */
struct smtpd_i_row {
  const char *verb;
  unsigned char len;
  unsigned char only; /* R_*, 0: always */
  unsigned flags;
  smtpd_i_handler *run;
  const smtpd_i_decision *decision; /* NULL: answered without one */
  const char *in_mail_text; /* NO_MAIL refusal; NULL: the generic one */
};
extern const smtpd_i_decision smtpd_i_dec_connect;
extern const smtpd_i_decision smtpd_i_dec_helo;
extern const smtpd_i_decision smtpd_i_dec_mail;
extern const smtpd_i_decision smtpd_i_dec_rcpt;
extern const smtpd_i_decision smtpd_i_dec_data;
extern const smtpd_i_decision smtpd_i_dec_vrfy;
extern const smtpd_i_decision smtpd_i_dec_starttls;
extern const smtpd_i_decision smtpd_i_dec_command;
extern const smtpd_i_decision smtpd_i_dec_xclient;
smtpd_i_handler smtpd_i_cmd_lhlo, smtpd_i_cmd_bdat, smtpd_i_cmd_xclient;
smtpd_i_handler smtpd_i_cmd_helo, smtpd_i_cmd_ehlo, smtpd_i_cmd_mail,
    smtpd_i_cmd_rcpt, smtpd_i_cmd_data, smtpd_i_cmd_rset, smtpd_i_cmd_noop,
    smtpd_i_cmd_quit, smtpd_i_cmd_vrfy, smtpd_i_cmd_expn, smtpd_i_cmd_help,
    smtpd_i_cmd_starttls, smtpd_i_cmd_auth, smtpd_i_cmd_host;
void smtpd_i_connect(smtpd_session *s);
void smtpd_i_end_of_data(smtpd_session *s);
/* the last octet of a BDAT chunk was read */
void smtpd_i_bdat_chunk_done(smtpd_session *s);

/* ---- dispatch.c -------------------------------------------------------- */
/* A complete command line (NUL-terminated, no CRLF). */
void smtpd_i_dispatch(smtpd_session *s, char *line);

/* ---- input.c ----------------------------------------------------------- */
const uint8_t *smtpd_i_input(smtpd_session *s, const uint8_t *p,
                             const uint8_t *end);
/* finish framing work a resumed decision left (a BDAT chunk fully read
 * while its last part was paused) */
void smtpd_i_input_settle(smtpd_session *s);

#endif /* SMTPD_LIB_INTERNAL_H */
