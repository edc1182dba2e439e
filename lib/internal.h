/*
 * internal.h - internal: the session and config structures shared by the
 * core's modules (session.c, data.c, auth.c, config.c, util.c).
 *
 *   smtpd_i_alloc / smtpd_i_free / smtpd_i_realloc   allocator hook use
 *   smtpd_i_reply*        queue a reply (session.c)
 *   smtpd_i_data_*        DATA body scanner (data.c)
 *   smtpd_i_auth_*        AUTH exchange (auth.c)
 */
#ifndef SMTPD_LIB_INTERNAL_H
#define SMTPD_LIB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "smtpd/smtpd.h"
#include "smtpd/sasl.h"

#define SMTPD_I_MAX_EHLO_EXTRA 16
#define SMTPD_I_MAX_PARAMS 16
#define SMTPD_I_REPLY_MAX 2048 /* host-set reply, formatted */

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
  char *ehlo_extra[SMTPD_I_MAX_EHLO_EXTRA];
  size_t n_ehlo_extra;
  const smtpd_sasl_backend *sasl;
  /* EHLO reply pieces rebuilt by every setter: the lines before
   * STARTTLS/AUTH ("250-host" ... "250-VRFY") and after them, each line
   * ending CRLF and using '-' */
  char *ehlo_pre, *ehlo_post;
  size_t ehlo_pre_len, ehlo_post_len;
};

int smtpd_i_config_rebuild(smtpd_config *c);

/* What the session is doing with its input. */
typedef enum {
  ST_INIT = 0,   /* not started */
  ST_CMD,        /* reading commands */
  ST_DATA,       /* reading a message body */
  ST_AUTH,       /* reading an AUTH response line */
  ST_TLS_WAIT,   /* STARTTLS/implicit TLS handshake: input discarded */
  ST_REJECTED,   /* 554 greeting: only QUIT is honoured */
  ST_CLOSED      /* closing: nothing more is read */
} smtpd_i_state;

/* Which decision is outstanding (also: which callback is running). */
typedef enum {
  PEND_NONE = 0,
  PEND_CONNECT,
  PEND_HELO,
  PEND_MAIL,
  PEND_RCPT,
  PEND_DATA,
  PEND_DATA_COMPLETE,
  PEND_VRFY,
  PEND_BODY,
  PEND_AUTH
} smtpd_i_pending;

/* Body scanner position (data.c). */
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
  void *ud;

  smtpd_i_state state;
  smtpd_i_pending pending;   /* deferred decision awaiting resume */
  smtpd_i_pending in_cb;     /* decision callback running (set_reply) */
  int broken;                /* fatal error code, 0 if fine */
  unsigned started : 1, implicit_tls : 1, tls : 1, esmtp : 1, helo_seen : 1,
      in_mail : 1, smtputf8 : 1, skipping : 1, reply_set : 1,
      callback_running : 1, auth_big : 1, pend_crlf : 1;

  /* command line assembly */
  char *line;       /* cmdbuf or auth buffer */
  size_t line_len;
  size_t line_cap;  /* usable octets (limit) */
  char *cmdbuf;     /* cap = command limit + 1 */
  char *authbuf;    /* allocated during AUTH, cap = auth limit + 67 */
  uint64_t skipped; /* octets of an overlong line skipped so far */

  /* output */
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

  /* pending decision details (pointers into line buffer / arena) */
  struct {
    char *str;   /* HELO name, MAIL/RCPT address */
    int esmtp;
  } pend;

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

/* allocation (util.c) */
void *smtpd_i_alloc(const smtpd_mem *m, size_t n);
void *smtpd_i_calloc(const smtpd_mem *m, size_t n, size_t size);
void *smtpd_i_realloc(const smtpd_mem *m, void *p, size_t n);
void smtpd_i_free(const smtpd_mem *m, void *p);
char *smtpd_i_strdup(const smtpd_mem *m, const char *s);
const smtpd_mem *smtpd_i_default_mem(void);

/* session.c services used by data.c and auth.c */
/* smtpd_i_reply is a macro so that strlen of literal texts folds at the
 * call site: replies are on every command's path. */
int smtpd_i_reply_n(smtpd_session *s, int code, const char *enh, size_t elen,
                    const char *text, size_t tlen);
static inline size_t smtpd_i_slen(const char *p) {
  return p ? strlen(p) : 0;
}
#define smtpd_i_reply(s, code, enh, text)                                   \
  smtpd_i_reply_n((s), (code), (enh), smtpd_i_slen(enh), (text),           \
                  strlen(text))
/* reply "code enh <hostname> text" */
int smtpd_i_reply_host(smtpd_session *s, int code, const char *enh,
                       const char *text);
int smtpd_i_append(smtpd_session *s, const void *p, size_t n);
void smtpd_i_protocol_error(smtpd_session *s, int code, const char *enh,
                            const char *text, int with_host);
void smtpd_i_close(smtpd_session *s, smtpd_close_reason why);
void smtpd_i_notice(smtpd_session *s, smtpd_notice_type type, int code,
                    uint64_t count);
void smtpd_i_reset_transaction(smtpd_session *s);
void smtpd_i_fail(smtpd_session *s, int err);
void smtpd_i_set_sync_mark(smtpd_session *s);
void smtpd_i_apply(smtpd_session *s, smtpd_i_pending kind, int verdict);
void smtpd_i_bump_errors(smtpd_session *s);

/* data.c */
void smtpd_i_data_begin(smtpd_session *s);
const uint8_t *smtpd_i_data_scan(smtpd_session *s, const uint8_t *p,
                                 const uint8_t *end);
void smtpd_i_end_of_data(smtpd_session *s); /* session.c */
void smtpd_i_data_resume_body(smtpd_session *s, int verdict);

/* auth.c */
void smtpd_i_auth_command(smtpd_session *s, char *arg);
void smtpd_i_auth_response(smtpd_session *s, char *line, size_t len);
void smtpd_i_auth_resume(smtpd_session *s, int verdict);
void smtpd_i_auth_reset(smtpd_session *s);
size_t smtpd_i_auth_mechanisms(smtpd_session *s, char *buf, size_t cap);
void smtpd_i_sasl_channel(const smtpd_session *s, smtpd_sasl_channel *ch);

#endif /* SMTPD_LIB_INTERNAL_H */
