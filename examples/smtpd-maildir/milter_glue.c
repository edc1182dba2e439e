/*
 * milter_glue.c - smtpd-maildir: the Milter filters of docs/milter.md,
 * driven from the example's event loop (see milter_glue.h).
 *
 *   options, server     --milter* parsing; addresses resolved at start
 *   connections         one non-blocking socket per filter and session,
 *                       in the poller with object type MG_OBJ_MILTER
 *   decisions           mg_on_*: the chain's answer, and a "kick"
 *   events, timers      mg_event reads / completes connects, mg_tick
 *                       expires; both only kick
 *   settling            mg_next: writes, closes, re-arms poller and
 *                       timers of a kicked connection, outside every
 *                       library callback, then returns its owner
 *   end of message      the spool read back for the filters; the edits
 *                       applied with smtpd_milter_rewriter into a fresh
 *                       Maildir file that replaces the spool
 *
 * Nothing here blocks: sockets are non-blocking, connects complete in the
 * poller, names are resolved once before the loop starts. Socket I/O is
 * never done from inside a session callback (the chain may resume the
 * session from inside consume/feed, which must not happen while a
 * callback runs): callbacks only put the connection on the kick list.
 */
#define _GNU_SOURCE
#include "milter_glue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SMTPD_HAVE_MILTER

int mg_option(mg_options *o, int which, const char *arg) {
  (void)o;
  (void)which;
  (void)arg;
  fprintf(stderr, "smtpd-maildir: --milter: not built (SMTPD_WITH_MILTER)\n");
  return -1;
}
int mg_server_new(mg_server **out, const mg_options *o,
                  const char *conflict) {
  (void)o;
  (void)conflict;
  *out = NULL;
  return 0;
}
void mg_server_del(mg_server *ms) { (void)ms; }
int mg_conn_new(mg_conn **out, mg_server *ms, poller *p, smtpd_session *s,
                const struct sockaddr *client, maildir *md, maildir_msg *msg,
                mg_deliver_fn deliver, void *owner) {
  (void)ms, (void)p, (void)s, (void)client, (void)md, (void)msg;
  (void)deliver, (void)owner;
  *out = NULL;
  return 0;
}
void mg_conn_del(mg_conn *mc) { (void)mc; }
smtpd_verdict mg_on_connect(mg_conn *mc) { (void)mc; return SMTPD_ACCEPT; }
smtpd_verdict mg_on_helo(mg_conn *mc, const smtpd_helo *h) {
  (void)mc, (void)h;
  return SMTPD_ACCEPT;
}
smtpd_verdict mg_on_mail(mg_conn *mc, const smtpd_mail *m) {
  (void)mc, (void)m;
  return SMTPD_ACCEPT;
}
smtpd_verdict mg_on_rcpt(mg_conn *mc, const smtpd_rcpt *r) {
  (void)mc, (void)r;
  return SMTPD_ACCEPT;
}
smtpd_verdict mg_on_data(mg_conn *mc, const char *queue_id) {
  (void)mc, (void)queue_id;
  return SMTPD_ACCEPT;
}
smtpd_verdict mg_on_data_complete(mg_conn *mc, const smtpd_message *m) {
  (void)mc, (void)m;
  return SMTPD_ACCEPT;
}
void mg_on_rset(mg_conn *mc) { (void)mc; }
void mg_on_close(mg_conn *mc) { (void)mc; }
void mg_event(void *obj, unsigned events) { (void)obj, (void)events; }
void mg_tick(mg_server *ms, uint64_t now_ms) { (void)ms, (void)now_ms; }
void *mg_next(mg_server *ms) {
  (void)ms;
  return NULL;
}

#else /* SMTPD_HAVE_MILTER */

#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "smtpd/milter.h"
#include "log.h"

#define MG_BUF 65536

typedef struct mg_slot {
  int type;          /* MG_OBJ_MILTER: first, as every poller object */
  mg_conn *mc;       /* NULL once the connection is gone */
  size_t i;          /* filter index in the chain */
  int fd;            /* -1: closed (failed, done, never connected) */
  int connecting;    /* waiting for the non-blocking connect */
  int moved;         /* bytes moved since the timer was last set */
  unsigned watched;  /* POLLER_* mask registered */
  uint64_t deadline; /* monotonic ms; 0 = none */
  smtpd_milter_timeout_kind kind;
  struct mg_slot *next_dead;
} mg_slot;

struct mg_conn {
  mg_server *ms;
  poller *p;
  smtpd_session *s;
  smtpd_milter_chain *ch;
  mg_slot *slot[MG_MAX];
  size_t n;
  maildir *md;
  maildir_msg *msg; /* the spool: the Maildir tmp file being written */
  int rfd;          /* read descriptor of the spool, opened on demand */
  mg_deliver_fn deliver;
  void *owner;
  smtpd_message m; /* the message being decided (pointers: the session's) */
  char qid[40];
  int quit;
  int kicked;
  mg_conn *kprev, *knext; /* kick list */
  mg_conn *prev, *next;   /* every connection (timers) */
};

struct mg_server {
  smtpd_milter_conf *conf;
  struct sockaddr_storage addr[MG_MAX];
  socklen_t alen[MG_MAX];
  mg_conn *conns;
  mg_conn *khead, *ktail;
  mg_slot *dead; /* freed after the loop round: events may still name them */
  unsigned char rbuf[MG_BUF];
};

static uint64_t mg_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* into the program's log buffer (log.c), in order with its other lines */
static void mg_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlogmsg(fmt, ap);
  va_end(ap);
}

/* ---- options and server ------------------------------------------------- */

int mg_option(mg_options *o, int which, const char *arg) {
  switch (which) {
  case MG_OPT_MILTER:
    if (o->n == MG_MAX) {
      fprintf(stderr, "smtpd-maildir: at most %d --milter\n", MG_MAX);
      return -1;
    }
    o->spec[o->n++] = arg;
    return 0;
  case MG_OPT_ACTION:
    if (strcmp(arg, "tempfail") == 0)
      o->action = SMTPD_MILTER_TEMPFAIL;
    else if (strcmp(arg, "accept") == 0)
      o->action = SMTPD_MILTER_ACCEPT;
    else if (strcmp(arg, "reject") == 0)
      o->action = SMTPD_MILTER_REJECT;
    else
      return -1;
    return 0;
  case MG_OPT_TIMEOUT: {
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v <= 0 || v > 86400)
      return -1;
    o->timeout_s = v;
    return 0;
  }
  default:
    return -1;
  }
}

static int resolve(mg_server *ms, size_t i, const char *spec) {
  int fam;
  char host[256];
  uint16_t port;
  if (smtpd_milter_parse_address(spec, &fam, host, sizeof host, &port) != 0)
    return -1;
  if (fam == 'U') {
    struct sockaddr_un *un = (struct sockaddr_un *)&ms->addr[i];
    if (strlen(host) >= sizeof un->sun_path)
      return -1;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, host, strlen(host) + 1);
    ms->alen[i] = (socklen_t)sizeof *un;
    return 0;
  }
  char ps[8];
  snprintf(ps, sizeof ps, "%u", (unsigned)port);
  struct addrinfo hints = {0}, *ai;
  hints.ai_family = fam == 6 ? AF_INET6 : AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (getaddrinfo(host, ps, &hints, &ai) != 0)
    return -1;
  memcpy(&ms->addr[i], ai->ai_addr, ai->ai_addrlen);
  ms->alen[i] = (socklen_t)ai->ai_addrlen;
  freeaddrinfo(ai);
  return 0;
}

int mg_server_new(mg_server **out, const mg_options *o,
                  const char *conflict) {
  *out = NULL;
  if (o->n == 0)
    return 0;
  if (conflict) {
    fprintf(stderr, "smtpd-maildir: --milter does not work with %s\n",
            conflict);
    return -1;
  }
  mg_server *ms = calloc(1, sizeof *ms);
  if (ms == NULL || smtpd_milter_conf_new(&ms->conf, NULL) != 0) {
    free(ms);
    return -1;
  }
  for (int i = 0; i < o->n; i++) {
    if (resolve(ms, (size_t)i, o->spec[i]) != 0 ||
        smtpd_milter_conf_add(ms->conf, o->spec[i],
                              (smtpd_milter_action)o->action) != 0) {
      fprintf(stderr, "smtpd-maildir: bad --milter %s\n", o->spec[i]);
      mg_server_del(ms);
      return -1;
    }
  }
  if (o->timeout_s > 0) {
    uint32_t t = (uint32_t)o->timeout_s * 1000u;
    smtpd_milter_conf_set_timeout(ms->conf, SMTPD_MILTER_TIMEOUT_CONNECT, t);
    smtpd_milter_conf_set_timeout(ms->conf, SMTPD_MILTER_TIMEOUT_COMMAND, t);
    smtpd_milter_conf_set_timeout(ms->conf, SMTPD_MILTER_TIMEOUT_CONTENT, t);
  }
  *out = ms;
  return 0;
}

static void reap(mg_server *ms) {
  while (ms->dead) {
    mg_slot *sl = ms->dead;
    ms->dead = sl->next_dead;
    free(sl);
  }
}

void mg_server_del(mg_server *ms) {
  if (ms == NULL)
    return;
  while (ms->conns)
    mg_conn_del(ms->conns);
  reap(ms);
  smtpd_milter_conf_del(ms->conf);
  free(ms);
}

/* ---- kick list ------------------------------------------------------------ */

static void kick(mg_conn *mc) {
  mg_server *ms = mc->ms;
  if (mc->kicked)
    return;
  mc->kicked = 1;
  mc->knext = NULL;
  mc->kprev = ms->ktail;
  if (ms->ktail)
    ms->ktail->knext = mc;
  else
    ms->khead = mc;
  ms->ktail = mc;
}

static void unkick(mg_conn *mc) {
  mg_server *ms = mc->ms;
  if (!mc->kicked)
    return;
  mc->kicked = 0;
  if (mc->kprev)
    mc->kprev->knext = mc->knext;
  else
    ms->khead = mc->knext;
  if (mc->knext)
    mc->knext->kprev = mc->kprev;
  else
    ms->ktail = mc->kprev;
  mc->kprev = mc->knext = NULL;
}

/* ---- the spool and the end of message ---------------------------------- */

static void close_rfd(mg_conn *mc) {
  if (mc->rfd >= 0)
    close(mc->rfd);
  mc->rfd = -1;
}

/* The message as written so far: the file, then what maildir_write still
 * buffers (the buffer is always flushed before anything is written past
 * it, so the file's size is where it starts). */
static ptrdiff_t read_spool(void *ctx, uint64_t off, void *buf, size_t cap) {
  mg_conn *mc = ctx;
  maildir_msg *m = mc->msg;
  struct stat st;
  if (m->fd < 0 || m->failed)
    return -1;
  if (mc->rfd < 0) {
    mc->rfd = openat(mc->md->tmpfd, m->name, O_RDONLY | O_CLOEXEC);
    if (mc->rfd < 0)
      return -1;
  }
  if (fstat(m->fd, &st) != 0)
    return -1;
  uint64_t disk = (uint64_t)st.st_size;
  if (off < disk) {
    size_t want = cap < disk - off ? cap : (size_t)(disk - off);
    ssize_t r;
    do
      r = pread(mc->rfd, buf, want, (off_t)off);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : (ptrdiff_t)r;
  }
  uint64_t in = off - disk;
  if (in >= m->buflen)
    return 0;
  size_t k = m->buflen - (size_t)in < cap ? m->buflen - (size_t)in : cap;
  memcpy(buf, m->buf + in, k);
  return (ptrdiff_t)k;
}

static void drain(smtpd_milter_rewriter *rw, maildir_msg *out) {
  const uint8_t *p;
  size_t k;
  while ((k = smtpd_milter_rewriter_output(rw, &p)) > 0) {
    maildir_write(out, p, k);
    smtpd_milter_rewriter_consume(rw, k);
  }
}

/* The spool with the edits applied, into a new Maildir file that then
 * takes the spool's place. 0 or -1 (spool unchanged). */
static int rewrite(mg_conn *mc, const smtpd_milter_edit *e, size_t n) {
  maildir_msg out;
  smtpd_milter_rewriter *rw = NULL;
  unsigned char *buf = malloc(MG_BUF);
  int rc = -1;
  if (buf == NULL)
    return -1;
  if (maildir_begin(mc->md, &out) != 0) {
    free(buf);
    return -1;
  }
  if (smtpd_milter_rewriter_new(&rw, NULL, e, n, 0, 0) != 0)
    goto done;
  for (uint64_t off = 0;;) {
    ptrdiff_t r = read_spool(mc, off, buf, MG_BUF);
    if (r < 0)
      goto done;
    if (r == 0)
      break;
    off += (uint64_t)r;
    for (size_t pos = 0; pos < (size_t)r;) {
      ptrdiff_t t = smtpd_milter_rewriter_feed(rw, buf + pos, (size_t)r - pos);
      if (t < 0)
        goto done;
      pos += (size_t)t;
      drain(rw, &out);
      if (t == 0 && smtpd_milter_rewriter_output(rw, &(const uint8_t *){0}) == 0)
        goto done; /* no progress: cannot happen, never spin */
    }
  }
  if (smtpd_milter_rewriter_finish(rw) != 0)
    goto done;
  drain(rw, &out);
  rc = out.failed ? -1 : 0;
done:
  smtpd_milter_rewriter_del(rw);
  free(buf);
  if (rc != 0) {
    maildir_abort(mc->md, &out);
    return -1;
  }
  close_rfd(mc);
  maildir_abort(mc->md, mc->msg); /* the original */
  *mc->msg = out;
  return 0;
}

static smtpd_verdict on_eom(smtpd_milter_chain *ch, smtpd_verdict v,
                            void *ctx) {
  mg_conn *mc = ctx;
  const smtpd_milter_edit *e;
  size_t n = smtpd_milter_chain_edits(ch, &e), content = 0, envelope = 0;
  if (v != SMTPD_ACCEPT) {
    close_rfd(mc);
    maildir_abort(mc->md, mc->msg);
    mg_log("smtpd-maildir: %s: refused by milter (%s)", mc->qid,
           v == SMTPD_REJECT ? "reject" : "tempfail");
    return v;
  }
  if (smtpd_milter_chain_discard(ch)) {
    close_rfd(mc);
    maildir_abort(mc->md, mc->msg);
    mg_log("smtpd-maildir: %s: discarded by milter", mc->qid);
    char text[80];
    snprintf(text, sizeof text, "Ok: queued as %s", mc->qid);
    smtpd_session_set_reply(mc->s, 250, "2.0.0", text);
    return SMTPD_ACCEPT;
  }
  for (size_t i = 0; i < n; i++) {
    switch (e[i].kind) {
    case SMTPD_MILTER_EDIT_ADDHEADER:
    case SMTPD_MILTER_EDIT_INSHEADER:
    case SMTPD_MILTER_EDIT_CHGHEADER:
    case SMTPD_MILTER_EDIT_REPLBODY:
      content++;
      break;
    case SMTPD_MILTER_EDIT_QUARANTINE:
      mg_log("smtpd-maildir: %s: milter %zu asked for quarantine "
             "(delivered anyway)", mc->qid, e[i].milter);
      break;
    default:
      envelope++;
    }
  }
  if (envelope)
    mg_log("smtpd-maildir: %s: %zu envelope edits ignored (a Maildir has "
           "no envelope)", mc->qid, envelope);
  if (content && rewrite(mc, e, n) != 0) {
    close_rfd(mc);
    maildir_abort(mc->md, mc->msg);
    mg_log("smtpd-maildir: %s: cannot apply the milter edits", mc->qid);
    smtpd_session_set_reply(mc->s, 451, "4.3.0",
                            "Error: cannot store message");
    return SMTPD_TEMPFAIL;
  }
  close_rfd(mc);
  return mc->deliver(mc->s, &mc->m, mc->owner);
}

/* ---- connections ------------------------------------------------------------ */

static void slot_close(mg_conn *mc, mg_slot *sl) {
  if (sl->fd < 0)
    return;
  poller_remove(mc->p, sl->fd);
  close(sl->fd);
  sl->fd = -1;
  sl->watched = 0;
  sl->deadline = 0;
}

int mg_conn_new(mg_conn **out, mg_server *ms, poller *p, smtpd_session *s,
                const struct sockaddr *client, maildir *md, maildir_msg *msg,
                mg_deliver_fn deliver, void *owner) {
  *out = NULL;
  if (ms == NULL)
    return 0;
  mg_conn *mc = calloc(1, sizeof *mc);
  if (mc == NULL)
    return -1;
  mc->ms = ms;
  mc->p = p;
  mc->s = s;
  mc->md = md;
  mc->msg = msg;
  mc->rfd = -1;
  mc->deliver = deliver;
  mc->owner = owner;
  if (smtpd_milter_chain_new(&mc->ch, ms->conf, s) != 0) {
    free(mc);
    return -1;
  }
  mc->next = ms->conns;
  if (mc->next)
    mc->next->prev = mc;
  ms->conns = mc;
  uint16_t port = 0;
  int fam = 0;
  if (client->sa_family == AF_INET) {
    fam = 4;
    port = ntohs(((const struct sockaddr_in *)client)->sin_port);
  } else if (client->sa_family == AF_INET6) {
    fam = 6;
    port = ntohs(((const struct sockaddr_in6 *)client)->sin6_port);
  }
  if (smtpd_milter_chain_set_client(mc->ch, fam, port) != 0 ||
      smtpd_milter_chain_set_reader(mc->ch, read_spool, mc) != 0 ||
      smtpd_milter_chain_set_eom_hook(mc->ch, on_eom, mc) != 0 ||
      smtpd_milter_chain_set_macro(mc->ch, "{daemon_name}", "smtpd-maildir") !=
          0) {
    mg_conn_del(mc);
    return -1;
  }
  mc->n = smtpd_milter_chain_count(mc->ch);
  uint64_t now = mg_now();
  for (size_t i = 0; i < mc->n; i++) {
    mg_slot *sl = calloc(1, sizeof *sl);
    if (sl == NULL) {
      mg_conn_del(mc);
      return -1;
    }
    sl->type = MG_OBJ_MILTER;
    sl->mc = mc;
    sl->i = i;
    sl->fd = -1;
    mc->slot[i] = sl;
    smtpd_milter *m = smtpd_milter_chain_get(mc->ch, i);
    const struct sockaddr *sa = (const struct sockaddr *)&ms->addr[i];
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    if (fd >= 0 && connect(fd, sa, ms->alen[i]) != 0 && errno != EINPROGRESS) {
      int err = errno;
      close(fd);
      fd = -1;
      errno = err;
    }
    if (fd < 0) {
      mg_log("smtpd-maildir: milter %s: connect: %s", smtpd_milter_name(m),
             strerror(errno));
      smtpd_milter_fail(m, strerror(errno));
      continue;
    }
    /* connected at once (UNIX sockets) or not: the poller says writable */
    sl->fd = fd;
    sl->connecting = 1;
    sl->watched = POLLER_OUT;
    if (poller_set(p, fd, POLLER_OUT, sl) != 0) {
      slot_close(mc, sl);
      smtpd_milter_fail(m, "poller");
      continue;
    }
    uint32_t ms_to = smtpd_milter_timeout(m, &sl->kind);
    sl->deadline = ms_to ? now + ms_to : 0;
  }
  *out = mc;
  return 0;
}

void mg_conn_del(mg_conn *mc) {
  if (mc == NULL)
    return;
  mg_server *ms = mc->ms;
  if (mc->ch && !mc->quit) {
    mc->quit = 1;
    smtpd_milter_chain_quit(mc->ch);
  }
  for (size_t i = 0; i < mc->n; i++) {
    mg_slot *sl = mc->slot[i];
    if (sl == NULL)
      continue;
    if (sl->fd >= 0 && !sl->connecting) { /* QUIT, if it fits now */
      smtpd_milter *m = smtpd_milter_chain_get(mc->ch, i);
      const uint8_t *p;
      size_t k = smtpd_milter_output(m, &p);
      if (k > 0) {
        ssize_t w = send(sl->fd, p, k, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
      }
    }
    slot_close(mc, sl);
    sl->mc = NULL;
    sl->next_dead = ms->dead;
    ms->dead = sl;
  }
  close_rfd(mc);
  smtpd_milter_chain_del(mc->ch);
  unkick(mc);
  if (mc->prev)
    mc->prev->next = mc->next;
  else
    ms->conns = mc->next;
  if (mc->next)
    mc->next->prev = mc->prev;
  free(mc);
}

/* ---- decisions --------------------------------------------------------------- */

smtpd_verdict mg_on_connect(mg_conn *mc) {
  if (mc == NULL)
    return SMTPD_ACCEPT;
  smtpd_verdict v = smtpd_milter_on_connect(mc->ch);
  kick(mc);
  return v;
}

smtpd_verdict mg_on_helo(mg_conn *mc, const smtpd_helo *h) {
  if (mc == NULL)
    return SMTPD_ACCEPT;
  smtpd_verdict v = smtpd_milter_on_helo(mc->ch, h);
  kick(mc);
  return v;
}

smtpd_verdict mg_on_mail(mg_conn *mc, const smtpd_mail *m) {
  if (mc == NULL)
    return SMTPD_ACCEPT;
  smtpd_verdict v = smtpd_milter_on_mail(mc->ch, m);
  kick(mc);
  return v;
}

smtpd_verdict mg_on_rcpt(mg_conn *mc, const smtpd_rcpt *r) {
  if (mc == NULL)
    return SMTPD_ACCEPT;
  smtpd_verdict v = smtpd_milter_on_rcpt(mc->ch, r);
  kick(mc);
  return v;
}

smtpd_verdict mg_on_data(mg_conn *mc, const char *queue_id) {
  if (mc == NULL)
    return SMTPD_ACCEPT;
  close_rfd(mc);
  snprintf(mc->qid, sizeof mc->qid, "%s", queue_id);
  smtpd_milter_chain_set_macro(mc->ch, "i", mc->qid);
  smtpd_verdict v = smtpd_milter_on_data(mc->ch);
  kick(mc);
  return v;
}

smtpd_verdict mg_on_data_complete(mg_conn *mc, const smtpd_message *m) {
  mc->m = *m;
  smtpd_verdict v = smtpd_milter_on_data_complete(mc->ch, m);
  kick(mc);
  return v;
}

void mg_on_rset(mg_conn *mc) {
  if (mc == NULL)
    return;
  close_rfd(mc);
  smtpd_milter_on_rset(mc->ch);
  kick(mc);
}

void mg_on_close(mg_conn *mc) {
  if (mc == NULL)
    return;
  if (!mc->quit) {
    mc->quit = 1;
    smtpd_milter_chain_quit(mc->ch);
  }
  kick(mc);
}

/* ---- events, timers, settling ------------------------------------------------- */

void mg_event(void *obj, unsigned events) {
  mg_slot *sl = obj;
  mg_conn *mc = sl->mc;
  if (mc == NULL || sl->fd < 0)
    return; /* closed earlier in this round */
  smtpd_milter *m = smtpd_milter_chain_get(mc->ch, sl->i);
  if (sl->connecting) {
    if (events & (POLLER_OUT | POLLER_ERR)) {
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(sl->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
      sl->connecting = 0;
      sl->moved = 1;
      if (err) {
        mg_log("smtpd-maildir: milter %s: connect: %s", smtpd_milter_name(m),
               strerror(err));
        smtpd_milter_fail(m, strerror(err));
      } else {
        smtpd_milter_connected(m);
      }
    }
  } else if (events & (POLLER_IN | POLLER_ERR)) {
    ssize_t r = recv(sl->fd, mc->ms->rbuf, sizeof mc->ms->rbuf, 0);
    if (r > 0) {
      sl->moved = 1;
      smtpd_milter_feed(m, mc->ms->rbuf, (size_t)r);
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
                          errno != EINTR)) {
      const char *why = r == 0 ? "closed by the filter" : strerror(errno);
      mg_log("smtpd-maildir: milter %s: %s", smtpd_milter_name(m), why);
      smtpd_milter_fail(m, why);
    }
  }
  /* a resumed session may have been closed: sl->mc is still valid (only
   * mg_conn_del, from the loop, frees it) */
  kick(mc);
}

void mg_tick(mg_server *ms, uint64_t now) {
  if (ms == NULL)
    return;
  for (mg_conn *mc = ms->conns; mc; mc = mc->next)
    for (size_t i = 0; i < mc->n; i++) {
      mg_slot *sl = mc->slot[i];
      if (sl && sl->fd >= 0 && sl->deadline && sl->deadline <= now) {
        smtpd_milter *m = smtpd_milter_chain_get(mc->ch, i);
        sl->deadline = 0;
        mg_log("smtpd-maildir: milter %s: timeout", smtpd_milter_name(m));
        smtpd_milter_timeout_expired(m);
        kick(mc);
      }
    }
}

/* Write what the filters have queued (a write may let the chain go on and
 * queue more, for this filter or another), close finished sockets, then
 * set poller interest and timers. */
static void settle(mg_conn *mc) {
  for (int round = 0; round < 16; round++) {
    int wrote = 0;
    for (size_t i = 0; i < mc->n; i++) {
      mg_slot *sl = mc->slot[i];
      if (sl == NULL || sl->fd < 0 || sl->connecting)
        continue;
      smtpd_milter *m = smtpd_milter_chain_get(mc->ch, i);
      const uint8_t *p;
      size_t k;
      while (!smtpd_milter_is_failed(m) &&
             (k = smtpd_milter_output(m, &p)) > 0) {
        ssize_t w = send(sl->fd, p, k, MSG_NOSIGNAL);
        if (w < 0) {
          if (errno == EINTR)
            continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK) {
            mg_log("smtpd-maildir: milter %s: %s", smtpd_milter_name(m),
                   strerror(errno));
            smtpd_milter_fail(m, strerror(errno));
            wrote = 1;
          }
          break;
        }
        sl->moved = 1;
        wrote = 1;
        smtpd_milter_consume(m, (size_t)w);
      }
    }
    if (!wrote)
      break;
  }
  uint64_t now = mg_now();
  for (size_t i = 0; i < mc->n; i++) {
    mg_slot *sl = mc->slot[i];
    if (sl == NULL || sl->fd < 0)
      continue;
    smtpd_milter *m = smtpd_milter_chain_get(mc->ch, i);
    if (smtpd_milter_is_done(m)) {
      slot_close(mc, sl);
      continue;
    }
    const uint8_t *p;
    unsigned want = sl->connecting ? POLLER_OUT
                    : (smtpd_milter_want_read(m) ? POLLER_IN : 0) |
                          (smtpd_milter_output(m, &p) > 0 ? POLLER_OUT : 0);
    if (want != sl->watched && poller_set(mc->p, sl->fd, want, sl) == 0)
      sl->watched = want;
    smtpd_milter_timeout_kind kind;
    uint32_t to = smtpd_milter_timeout(m, &kind);
    if (to == 0)
      sl->deadline = 0;
    else if (sl->moved || sl->deadline == 0 || kind != sl->kind)
      sl->deadline = now + to;
    sl->kind = kind;
    sl->moved = 0;
  }
}

void *mg_next(mg_server *ms) {
  if (ms == NULL)
    return NULL;
  mg_conn *mc = ms->khead;
  if (mc == NULL) {
    reap(ms);
    return NULL;
  }
  unkick(mc);
  settle(mc);
  return mc->owner;
}

#endif /* SMTPD_HAVE_MILTER */
