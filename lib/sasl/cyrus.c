/*
 * cyrus.c - the Cyrus SASL (libsasl2) AUTH backend, libsmtpd-sasl-cyrus.
 *
 * Turns the smtpd_sasl_backend calls into sasl_server_new / _start /
 * _step / sasl_listmech / sasl_dispose and libsasl2's result codes into
 * smtpd_sasl_status values. One sasl_conn_t per AUTH exchange, disposed of
 * as soon as the exchange reaches an end (success, failure, cancel), so a
 * failed exchange can never leave state behind for the next AUTH (the
 * lesson of CVE-2011-1720).
 *
 *   smtpd_sasl_cyrus_options_init  default options
 *   smtpd_sasl_cyrus_new           create a backend (first one initialises
 *                                  libsasl2 for the process)
 *   smtpd_sasl_cyrus_del           free it (last one: sasl_server_done);
 *                                  refuses tables it did not make
 *
 * Process-wide state: libsasl2 is global by design (sasl_server_init
 * registers callbacks and an application name for the whole process, its
 * default mutexes are no-ops). The only mutable globals of libsmtpd live
 * here: a mutex that serialises every libsasl2 call, a count of live
 * backends, and the settings (appname, config directory, log function)
 * the callbacks given to sasl_server_init read.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sasl/sasl.h>

#include "smtpd/sasl_cyrus.h"

#define MAX_NAME 255u     /* appname, service, FQDN, realm, address */
#define MAX_DIR 4095u     /* config_dir */
#define MAX_IDENTITY 1024u /* user names coming back from libsasl2 */
#define MAX_MECH 20u      /* RFC 4422 3.1: mechanism names */
#define MAX_CLIENT_ID 768u /* user names from the client: see cb_canon */

static const char REASON_FAILED[] = "authentication failure";

/* ---- process-wide state ------------------------------------------------- */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned g_users; /* live backends sharing our sasl_server_init */
static char g_appname[MAX_NAME + 1];
static char g_confdir[MAX_DIR + 1];
static int g_has_confdir;
static smtpd_sasl_cyrus_log_fn g_log;
static void *g_log_ctx;
static sasl_callback_t g_callbacks[3];

static int cb_getconfpath(void *ctx, const char **path) {
  (void)ctx;
  if (!path)
    return SASL_BADPARAM;
  *path = g_confdir;
  return SASL_OK;
}

static int cb_log(void *ctx, int level, const char *msg) {
  (void)ctx;
  if (g_log && msg)
    g_log(level, msg, g_log_ctx);
  return SASL_OK;
}

/* ---- objects ------------------------------------------------------------ */

typedef struct cyrus {
  smtpd_sasl_backend table; /* first: smtpd_sasl_backend * <-> cyrus * */
  smtpd_mem mem;
  int owns_init;            /* counted in g_users */
  int allow_plaintext;
  char *service;
  char *fqdn;
  char *realm;
  char *local_addr;
} cyrus;

typedef struct exchange {
  cyrus *be;
  sasl_conn_t *conn; /* NULL once the exchange ended */
  char *authcid;
  char *authzid;
  int done;
  int login_user; /* LOGIN: the client's next answer is the user name */
} exchange;

static char *dup_str(const smtpd_mem *mem, const char *s, size_t len) {
  char *d = mem->malloc(len + 1, mem->ctx);
  if (d) {
    memcpy(d, s, len);
    d[len] = '\0';
  }
  return d;
}

static void free_str(const smtpd_mem *mem, char *s) {
  if (s) {
    volatile char *v = s;
    while (*v)
      *v++ = 0;
    mem->free(s, mem->ctx);
  }
}

/* printable - 1 when s is 1..max octets without controls (< 0x20, 0x7f). */
static int printable(const char *s, size_t max) {
  size_t i;
  if (!s || !*s)
    return 0;
  for (i = 0; s[i]; i++)
    if (i >= max || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return 0;
  return 1;
}

static void out_clear(smtpd_sasl_out *out) {
  memset(out, 0, sizeof *out);
}

/* ---- libsasl2 connections ----------------------------------------------- */

/* cb_canon - every user name a mechanism takes from the client passes here
 * before libsasl2's own canonicaliser. libsasl2 2.1.28's canonicaliser
 * leaks its copy of a name that does not fit its 1,024 octets with the
 * realm appended ("@" and up to MAX_NAME), so a client could grow the
 * process by a kilobyte per AUTH. Names over 768 octets are refused
 * (BADPROT: 501); with any realm the rest always fit. libsasl2 may pass a
 * name here again with the realm appended, so a client's name is refused
 * from 768 octets less "@realm". RFC 4616 asks for 255. Names that pass
 * are not changed. */
static int cb_canon(sasl_conn_t *conn, void *ctx, const char *in,
                    unsigned inlen, unsigned flags, const char *user_realm,
                    char *out, unsigned out_max, unsigned *out_len) {
  (void)conn;
  (void)ctx;
  (void)flags;
  (void)user_realm;
  if (!in || !out || !out_len)
    return SASL_BADPARAM;
  if (inlen > MAX_CLIENT_ID || inlen >= out_max)
    return SASL_BADPROT;
  memcpy(out, in, inlen);
  out[inlen] = '\0';
  *out_len = inlen;
  return SASL_OK;
}

/* bad_login_user - 1 when LOGIN's user name could fail libsasl2's
 * canonicaliser: empty, too long for cb_canon, or with white space at
 * either end (libsasl2 2.1.28 strips it and then takes, for example,
 * " j" for an all-white-space name). Its LOGIN plugin asks for the
 * password first and leaks it (17 octets plus its length) when the name
 * then fails, so such a name ends the exchange here. */
static int is_space(uint8_t c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}

static int bad_login_user(const uint8_t *p, size_t n) {
  return n == 0 || n > MAX_CLIENT_ID || is_space(p[0]) || is_space(p[n - 1]);
}

/* the callbacks of each connection: only the guard above */
static const sasl_callback_t conn_callbacks[] = {
    {SASL_CB_CANON_USER, (int (*)(void))(void (*)(void))cb_canon, NULL},
    {SASL_CB_LIST_END, NULL, NULL}};

/* ip_port_ok - 1 when s is "ip;port" with a numeric IPv4 or IPv6 address
 * and a decimal port: libsasl2 leaks memory when sasl_server_new refuses
 * an address, so it only ever sees addresses that parse. */
static int ip_port_ok(const char *s) {
  const char *semi = strchr(s, ';');
  char ip[INET6_ADDRSTRLEN];
  unsigned char bin[sizeof(struct in6_addr)];
  size_t n, i;

  if (!semi)
    return 0;
  n = (size_t)(semi - s);
  if (n == 0 || n >= sizeof ip)
    return 0;
  memcpy(ip, s, n);
  ip[n] = '\0';
  if (inet_pton(AF_INET, ip, bin) != 1 && inet_pton(AF_INET6, ip, bin) != 1)
    return 0;
  for (i = 1; semi[i]; i++)
    if (i > 5 || semi[i] < '0' || semi[i] > '9')
      return 0;
  return i > 1;
}

/* remote_port - "addr;0" for sasl_server_new (it wants "ip;port"), or
 * NULL when the address is unknown or not a numeric address. */
static const char *remote_port(const smtpd_sasl_channel *ch, char *buf,
                               size_t cap) {
  const char *a = ch->client_addr;
  int n;
  if (!a || !printable(a, 64))
    return NULL;
  if (strncmp(a, "IPv6:", 5) == 0) /* RFC 5321 literal style */
    a += 5;
  if (strchr(a, ';'))
    return ip_port_ok(a) ? a : NULL;
  n = snprintf(buf, cap, "%s;0", a);
  return n > 0 && (size_t)n < cap && ip_port_ok(buf) ? buf : NULL;
}

/* new_conn - a fresh server connection set up for the channel; the caller
 * holds g_lock. Returns a libsasl2 result. */
static int new_conn(cyrus *be, const smtpd_sasl_channel *ch,
                    sasl_conn_t **conn) {
  sasl_security_properties_t sp;
  sasl_ssf_t ssf = ch->tls ? (sasl_ssf_t)ch->ssf : 0;
  char rbuf[96];
  const char *remote = remote_port(ch, rbuf, sizeof rbuf);
  int r;

  *conn = NULL;
  r = sasl_server_new(be->service, be->fqdn, be->realm, be->local_addr,
                      remote, conn_callbacks, 0, conn);
  if (r == SASL_BADPARAM && (be->local_addr || remote)) {
    /* libsasl2 refused an address string: the addresses only matter to
     * mechanisms with security layers, which SMTP does not use. */
    if (*conn)
      sasl_dispose(conn);
    *conn = NULL;
    r = sasl_server_new(be->service, be->fqdn, be->realm, NULL, NULL,
                        conn_callbacks, 0, conn);
  }
  if (r != SASL_OK || !*conn)
    goto fail;
  r = sasl_setprop(*conn, SASL_SSF_EXTERNAL, &ssf);
  if (r != SASL_OK)
    goto fail;
  if (ch->tls && ch->external_id && printable(ch->external_id, MAX_IDENTITY)) {
    r = sasl_setprop(*conn, SASL_AUTH_EXTERNAL, ch->external_id);
    if (r != SASL_OK)
      goto fail;
  }
  memset(&sp, 0, sizeof sp);
  sp.min_ssf = 0;
  sp.max_ssf = 0;     /* no SASL security layer: SMTP has none */
  sp.maxbufsize = 0;
  sp.security_flags = SASL_SEC_NOANONYMOUS;
  if (!ch->tls && !ch->allow_plaintext && !be->allow_plaintext)
    sp.security_flags |= SASL_SEC_NOPLAINTEXT;
  r = sasl_setprop(*conn, SASL_SEC_PROPS, &sp);
  if (r != SASL_OK)
    goto fail;
  return SASL_OK;
fail:
  if (*conn)
    sasl_dispose(conn);
  *conn = NULL;
  return r == SASL_OK ? SASL_FAIL : r;
}

/* status_of - libsasl2 result -> smtpd_sasl_status (not OK/CONTINUE). */
static int status_of(int r) {
  switch (r) {
  case SASL_NOMECH:
    return SMTPD_SASL_NOMECH;
  case SASL_ENCRYPT:
  case SASL_TOOWEAK:
    return SMTPD_SASL_ENCRYPT;
  case SASL_BADPROT:
  case SASL_BADPARAM:
    return SMTPD_SASL_BADPROT;
  case SASL_TRYAGAIN:
  case SASL_UNAVAIL:
  case SASL_NOMEM:
    return SMTPD_SASL_TEMPFAIL;
  default:
    return SMTPD_SASL_FAIL;
  }
}

/* reason_of - a short, fixed reason for a failure: nothing that tells a
 * client whether a user exists. */
static const char *reason_of(int r) {
  switch (r) {
  case SASL_NOAUTHZ:
    return "authorization failure";
  case SASL_EXPIRED:
    return "passphrase expired, has to be reset";
  case SASL_DISABLED:
    return "account disabled";
  default:
    return REASON_FAILED;
  }
}

/* end_conn - dispose of the exchange's connection; caller holds g_lock. */
static void end_conn(exchange *x) {
  if (x->conn)
    sasl_dispose(&x->conn);
  x->conn = NULL;
  x->done = 1;
}

/* login_user_refused - when this answer is LOGIN's user name, check it
 * (bad_login_user); a bad one ends the exchange. Caller holds g_lock. */
static int login_user_refused(exchange *x, const uint8_t *p, size_t n) {
  if (!x->login_user)
    return 0;
  x->login_user = 0;
  if (!bad_login_user(p, n))
    return 0;
  end_conn(x);
  return 1;
}

/* conclude - turn a start/step result into the answer; holds g_lock. */
static int conclude(exchange *x, int r, const char *sout, unsigned slen,
                    smtpd_sasl_out *out) {
  const void *user = NULL, *auth = NULL;
  const smtpd_mem *mem = &x->be->mem;
  int differs;

  out_clear(out);
  if (r == SASL_CONTINUE) {
    out->challenge = (const uint8_t *)(sout ? sout : "");
    out->challenge_len = sout ? slen : 0;
    return SMTPD_SASL_CONTINUE;
  }
  if (r != SASL_OK) {
    int st = status_of(r);
    end_conn(x);
    if (st == SMTPD_SASL_FAIL)
      out->reason = reason_of(r);
    return st;
  }
  /* Success: SASL_AUTHUSER authenticated, SASL_USERNAME is who it acts
   * as; copy them before the connection goes. */
  if (sasl_getprop(x->conn, SASL_USERNAME, &user) != SASL_OK)
    user = NULL;
  if (sasl_getprop(x->conn, SASL_AUTHUSER, &auth) != SASL_OK)
    auth = NULL;
  if (!auth)
    auth = user;
  if (!auth) {
    end_conn(x);
    out->reason = REASON_FAILED;
    return SMTPD_SASL_FAIL;
  }
  if (!printable(auth, MAX_IDENTITY) ||
      (user && !printable(user, MAX_IDENTITY))) {
    end_conn(x);
    return SMTPD_SASL_BADPROT;
  }
  /* user and auth point into the connection: copy before ending it. */
  differs = user && strcmp(user, auth) != 0;
  x->authcid = dup_str(mem, auth, strlen(auth));
  if (differs)
    x->authzid = dup_str(mem, user, strlen(user));
  end_conn(x);
  if (!x->authcid || (differs && !x->authzid))
    return SMTPD_SASL_TEMPFAIL;
  out->authcid = x->authcid;
  out->authzid = x->authzid;
  return SMTPD_SASL_OK;
}

/* ---- the function table ------------------------------------------------- */

/* mech_name_ok - 1 for a mechanism name libsasl2 may be asked to start:
 * RFC 4422's characters, and not a "-PLUS" name. libsasl2 2.1.28 starts
 * "X-PLUS" as X when the connection has no channel binding, which the
 * adapter never sets (so it never lists such a name); "LOGIN-PLUS" would
 * otherwise start LOGIN past the user-name guard (bad_login_user). */
static int mech_name_ok(const char *m) {
  static const char plus[] = "-PLUS";
  size_t i;
  for (i = 0; m[i]; i++) {
    char c = m[i];
    if (i >= MAX_MECH ||
        !((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_'))
      return 0;
  }
  if (i >= sizeof plus - 1 && memcmp(m + i - (sizeof plus - 1), plus,
                                     sizeof plus - 1) == 0)
    return 0;
  return i > 0;
}

static int c_mechanisms(void *ctx, const smtpd_sasl_channel *ch, char *buf,
                        size_t cap) {
  cyrus *be = ctx;
  sasl_conn_t *conn = NULL;
  const char *list = NULL;
  unsigned len = 0;
  int count = 0, r;
  size_t n = 0, i = 0;

  if (!be || !ch || (cap && !buf))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (cap)
    buf[0] = '\0';
  pthread_mutex_lock(&g_lock);
  r = new_conn(be, ch, &conn);
  if (r != SASL_OK) {
    pthread_mutex_unlock(&g_lock);
    return SMTPD_ERR_SASL;
  }
  r = sasl_listmech(conn, NULL, "", " ", "", &list, &len, &count);
  if (r == SASL_OK && list) {
    /* Copy the names, keeping only well-formed ones. */
    while (i < len && list[i]) {
      size_t j = i, k;
      while (j < len && list[j] && list[j] != ' ')
        j++;
      if (j - i > 0 && j - i <= MAX_MECH) {
        int ok = 1;
        for (k = i; k < j; k++) {
          char c = list[k];
          if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_'))
            ok = 0;
        }
        if (ok) {
          if (n) {
            if (n + 1 < cap)
              buf[n] = ' ';
            n++;
          }
          for (k = i; k < j; k++, n++)
            if (n + 1 < cap)
              buf[n] = list[k];
        }
      }
      i = j;
      while (i < len && list[i] == ' ')
        i++;
    }
  } else if (r != SASL_NOMECH && r != SASL_OK) {
    sasl_dispose(&conn);
    pthread_mutex_unlock(&g_lock);
    return SMTPD_ERR_SASL;
  }
  sasl_dispose(&conn);
  pthread_mutex_unlock(&g_lock);
  if (cap)
    buf[n < cap ? n : cap - 1] = '\0';
  return n > INT32_MAX ? SMTPD_ERR_SASL : (int)n;
}

static int c_start(void *ctx, smtpd_session *s, const smtpd_sasl_channel *ch,
                   const char *mech, const uint8_t *resp, size_t len,
                   int has_resp, void **exch, smtpd_sasl_out *out) {
  cyrus *be = ctx;
  exchange *x;
  const char *sout = NULL;
  unsigned slen = 0;
  int r, st;

  (void)s;
  if (!out)
    return SMTPD_SASL_TEMPFAIL;
  out_clear(out);
  if (!be || !ch || !mech || !exch || (len && !resp) || len > UINT32_MAX)
    return SMTPD_SASL_TEMPFAIL;
  *exch = NULL;
  if (!mech_name_ok(mech))
    return SMTPD_SASL_NOMECH;
  x = be->mem.calloc(1, sizeof *x, be->mem.ctx);
  if (!x)
    return SMTPD_SASL_TEMPFAIL;
  x->be = be;
  *exch = x;

  pthread_mutex_lock(&g_lock);
  r = new_conn(be, ch, &x->conn);
  if (r != SASL_OK) {
    x->done = 1;
    pthread_mutex_unlock(&g_lock);
    return SMTPD_SASL_TEMPFAIL;
  }
  /* LOGIN's initial response, when not empty, is the user name */
  x->login_user = strcmp(mech, "LOGIN") == 0;
  if (has_resp && len && login_user_refused(x, resp, len)) {
    pthread_mutex_unlock(&g_lock);
    return SMTPD_SASL_BADPROT;
  }
  /* NULL: no initial response; "" with length 0: an empty one ("="). */
  r = sasl_server_start(x->conn, mech,
                        has_resp ? (len ? (const char *)resp : "") : NULL,
                        has_resp ? (unsigned)len : 0, &sout, &slen);
  st = conclude(x, r, sout, slen, out);
  pthread_mutex_unlock(&g_lock);
  return st;
}

static int c_step(void *exch, const uint8_t *resp, size_t len,
                  smtpd_sasl_out *out) {
  exchange *x = exch;
  const char *sout = NULL;
  unsigned slen = 0;
  int r, st;

  if (!out)
    return SMTPD_SASL_TEMPFAIL;
  out_clear(out);
  if (!x || (len && !resp) || len > UINT32_MAX)
    return SMTPD_SASL_TEMPFAIL;
  if (x->done || !x->conn)
    return SMTPD_SASL_BADPROT; /* the exchange is over */
  pthread_mutex_lock(&g_lock);
  if (login_user_refused(x, resp, len)) {
    pthread_mutex_unlock(&g_lock);
    return SMTPD_SASL_BADPROT;
  }
  r = sasl_server_step(x->conn, len ? (const char *)resp : "",
                       (unsigned)len, &sout, &slen);
  st = conclude(x, r, sout, slen, out);
  pthread_mutex_unlock(&g_lock);
  return st;
}

static int c_resume(void *exch, int verdict, smtpd_sasl_out *out) {
  exchange *x = exch;
  (void)verdict;
  if (!out)
    return SMTPD_SASL_TEMPFAIL;
  out_clear(out);
  /* This backend never defers; a resume is a misuse. */
  if (x && x->conn) {
    pthread_mutex_lock(&g_lock);
    end_conn(x);
    pthread_mutex_unlock(&g_lock);
  }
  out->reason = REASON_FAILED;
  return SMTPD_SASL_FAIL;
}

static void c_dispose(void *exch) {
  exchange *x = exch;
  smtpd_mem mem;

  if (!x)
    return;
  mem = x->be->mem;
  if (x->conn) {
    pthread_mutex_lock(&g_lock);
    end_conn(x);
    pthread_mutex_unlock(&g_lock);
  }
  free_str(&mem, x->authcid);
  free_str(&mem, x->authzid);
  mem.free(x, mem.ctx);
}

/* ---- constructor -------------------------------------------------------- */

void smtpd_sasl_cyrus_options_init(smtpd_sasl_cyrus_options *o) {
  if (!o)
    return;
  memset(o, 0, sizeof *o);
  o->version = SMTPD_SASL_CYRUS_OPTIONS_VERSION;
}

/* opt_copy - copy an optional option string (NULL stays NULL). */
static int opt_copy(const smtpd_mem *mem, char **dst, const char *src,
                    size_t max) {
  *dst = NULL;
  if (!src)
    return SMTPD_OK;
  if (!printable(src, max))
    return SMTPD_ERR_INVALID_ARGUMENT;
  *dst = dup_str(mem, src, strlen(src));
  return *dst ? SMTPD_OK : SMTPD_ERR_NOMEM;
}

static void free_backend(cyrus *be) {
  smtpd_mem mem = be->mem;
  free_str(&mem, be->service);
  free_str(&mem, be->fqdn);
  free_str(&mem, be->realm);
  free_str(&mem, be->local_addr);
  mem.free(be, mem.ctx);
}

/* global_init - count one more backend, initialising libsasl2 when it is
 * the first. Returns 0 or a negative smtpd_error. */
static int global_init(const smtpd_sasl_cyrus_options *o) {
  const char *app = o->appname ? o->appname : "smtpd";
  const char *dir = o->config_dir;
  int r, n = 0;

  if (!printable(app, MAX_NAME) || (dir && !printable(dir, MAX_DIR)))
    return SMTPD_ERR_INVALID_ARGUMENT;
  pthread_mutex_lock(&g_lock);
  if (g_users) {
    /* libsasl2 is already set up by a live backend: share it only when
     * it reads the same configuration and logs to the same place. */
    int same = strcmp(g_appname, app) == 0 && g_has_confdir == (dir != NULL) &&
               (!dir || strcmp(g_confdir, dir) == 0) && g_log == o->log &&
               g_log_ctx == o->log_ctx;
    if (same)
      g_users++;
    pthread_mutex_unlock(&g_lock);
    return same ? SMTPD_OK : SMTPD_ERR_INVALID_STATE;
  }
  snprintf(g_appname, sizeof g_appname, "%s", app);
  g_has_confdir = dir != NULL;
  snprintf(g_confdir, sizeof g_confdir, "%s", dir ? dir : "");
  g_log = o->log;
  g_log_ctx = o->log_ctx;
  /* libsasl2 stores every callback as int (*)(void); the cast through
   * void (*)(void) is the portable way to say so. */
  if (dir) {
    g_callbacks[n].id = SASL_CB_GETCONFPATH;
    g_callbacks[n].proc = (int (*)(void))(void (*)(void))cb_getconfpath;
    g_callbacks[n].context = NULL;
    n++;
  }
  if (o->log) {
    g_callbacks[n].id = SASL_CB_LOG;
    g_callbacks[n].proc = (int (*)(void))(void (*)(void))cb_log;
    g_callbacks[n].context = NULL;
    n++;
  }
  g_callbacks[n].id = SASL_CB_LIST_END;
  g_callbacks[n].proc = NULL;
  g_callbacks[n].context = NULL;
  r = sasl_server_init(g_callbacks, g_appname);
  if (r != SASL_OK) {
    /* libsasl2 counts a failed init as nothing; reset ours. */
    g_log = NULL;
    g_log_ctx = NULL;
    pthread_mutex_unlock(&g_lock);
    return SMTPD_ERR_SASL;
  }
  g_users = 1;
  pthread_mutex_unlock(&g_lock);
  return SMTPD_OK;
}

static void global_done(void) {
  pthread_mutex_lock(&g_lock);
  if (g_users && --g_users == 0) {
    sasl_server_done();
    g_log = NULL;
    g_log_ctx = NULL;
  }
  pthread_mutex_unlock(&g_lock);
}

static void c_destroy(smtpd_sasl_backend *backend);

/* own - the cyrus behind backend, or NULL when the table is not one
 * smtpd_sasl_cyrus_new made: another adapter's or a host's (destroy is not
 * ours), or a copy of ours (not the table inside its cyrus). */
static cyrus *own(smtpd_sasl_backend *backend) {
  cyrus *be;

  /* A version 1 table ends before destroy: do not read it. */
  if (!backend || backend->version < 2 || backend->destroy != c_destroy)
    return NULL;
  be = backend->ctx;
  return be && &be->table == backend ? be : NULL;
}

static void c_destroy(smtpd_sasl_backend *backend) {
  cyrus *be = own(backend);

  if (!be)
    return; /* a copy: the original is freed through itself */
  if (be->owns_init)
    global_done();
  free_backend(be);
}

int smtpd_sasl_cyrus_new(smtpd_sasl_backend **out, const smtpd_mem *mem,
                         const smtpd_sasl_cyrus_options *opts) {
  smtpd_sasl_cyrus_options defaults;
  cyrus *be;
  int rc;

  if (!out)
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (mem && (!mem->malloc || !mem->free || !mem->calloc || !mem->realloc))
    return SMTPD_ERR_INVALID_ARGUMENT;
  if (!mem)
    mem = smtpd_mem_default();
  if (!opts) {
    smtpd_sasl_cyrus_options_init(&defaults);
    opts = &defaults;
  }
  if (opts->version != SMTPD_SASL_CYRUS_OPTIONS_VERSION)
    return SMTPD_ERR_INVALID_ARGUMENT;

  be = mem->calloc(1, sizeof *be, mem->ctx);
  if (!be)
    return SMTPD_ERR_NOMEM;
  be->mem = *mem;
  be->allow_plaintext = opts->allow_plaintext != 0;
  if ((rc = opt_copy(mem, &be->service, opts->service ? opts->service : "smtp",
                     MAX_NAME)) != SMTPD_OK ||
      (rc = opt_copy(mem, &be->fqdn, opts->server_fqdn, MAX_NAME)) !=
          SMTPD_OK ||
      (rc = opt_copy(mem, &be->realm, opts->user_realm, MAX_NAME)) !=
          SMTPD_OK ||
      (rc = opt_copy(mem, &be->local_addr, opts->local_addr, MAX_NAME)) !=
          SMTPD_OK ||
      (be->local_addr && !ip_port_ok(be->local_addr) &&
       (rc = SMTPD_ERR_INVALID_ARGUMENT) != SMTPD_OK)) {
    free_backend(be);
    return rc;
  }
  if (!opts->host_initialised) {
    rc = global_init(opts);
    if (rc != SMTPD_OK) {
      free_backend(be);
      return rc;
    }
    be->owns_init = 1;
  }
  be->table.version = SMTPD_SASL_BACKEND_VERSION;
  be->table.ctx = be;
  be->table.mechanisms = c_mechanisms;
  be->table.start = c_start;
  be->table.step = c_step;
  be->table.resume = c_resume;
  be->table.dispose = c_dispose;
  be->table.destroy = c_destroy;
  *out = &be->table;
  return SMTPD_OK;
}

int smtpd_sasl_cyrus_del(smtpd_sasl_backend *backend) {
  if (!backend)
    return SMTPD_OK;
  if (!own(backend))
    return SMTPD_ERR_INVALID_ARGUMENT; /* not ours: refuse to free it */
  c_destroy(backend);
  return SMTPD_OK;
}
