/*
 * check_milter.c - the Milter adapter (libsmtpd-milter) against scripted
 * in-memory filters: a real smtpd_session whose callbacks go through a
 * smtpd_milter_chain, and for each filter a peer that decodes every
 * packet the client writes (length, command, payload) and answers from
 * the test's script. Also the header splitter, the rewriter and the
 * address parser on their own.
 *
 * What is asserted is what goes over the wire: the commands and macros
 * each filter received in order, the SMTP replies, the edit list and the
 * delivered message byte for byte.
 */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/milter.h"

/* ---- a growable string ----------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
} sbuf;

static void sb_put(sbuf *b, const void *d, size_t n)
{
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    ck_assert_ptr_nonnull(b->p);
  }
  if (n)
    memcpy(b->p + b->len, d, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_free(sbuf *b)
{
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* ---- a scripted filter ------------------------------------------------------- */

typedef struct pkt {
  char cmd;
  char *d;
  size_t n;
} pkt;

typedef struct peer peer;
/* a test's answer to one command: return 1 when it queued the reply
 * itself, 0 for the default (CONTINUE, nothing for D/A/Q/NR) */
typedef int (*script_fn)(peer *p, char cmd, const char *d, size_t n);

struct peer {
  uint32_t version, actions, flags;
  const char *symlist; /* raw SETSYMLIST octets appended to OPTNEG */
  size_t symlist_len;
  script_fn script;
  void *ctx;
  sbuf in;        /* octets from the client not parsed yet */
  sbuf out;       /* reply octets for the client */
  pkt got[4096];
  size_t ngot;
  sbuf cmds;      /* the command letters received, in order */
  int silent;     /* read but never answer */
  int count[256]; /* per command letter */
};

static void peer_send(peer *p, char cmd, const void *d, size_t n)
{
  uint8_t h[5];
  uint32_t l = (uint32_t)n + 1;
  h[0] = (uint8_t)(l >> 24);
  h[1] = (uint8_t)(l >> 16);
  h[2] = (uint8_t)(l >> 8);
  h[3] = (uint8_t)l;
  h[4] = (uint8_t)cmd;
  sb_put(&p->out, h, 5);
  if (n)
    sb_put(&p->out, d, n);
}

static void peer_send_s(peer *p, char cmd, const char *s)
{
  peer_send(p, cmd, s, strlen(s) + 1);
}

/* two strings as one payload ("name\0value\0"), after an optional index */
static void peer_send_2(peer *p, char cmd, int index, const char *a,
                        const char *b)
{
  char buf[2048];
  size_t n = 0, la = strlen(a) + 1, lb = b ? strlen(b) + 1 : 0;
  if (index >= 0) {
    buf[0] = (char)((unsigned)index >> 24);
    buf[1] = (char)((unsigned)index >> 16);
    buf[2] = (char)((unsigned)index >> 8);
    buf[3] = (char)index;
    n = 4;
  }
  memcpy(buf + n, a, la);
  n += la;
  if (b)
    memcpy(buf + n, b, lb);
  n += lb;
  peer_send(p, cmd, buf, n);
}

static uint32_t nr_of(char cmd)
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

static void peer_packet(peer *p, char cmd, const char *d, size_t n)
{
  pkt *k;
  ck_assert_uint_lt(p->ngot, 4096);
  k = &p->got[p->ngot++];
  k->cmd = cmd;
  k->d = malloc(n + 1);
  if (n)
    memcpy(k->d, d, n);
  k->d[n] = '\0';
  k->n = n;
  sb_put(&p->cmds, &cmd, 1);
  p->count[(unsigned char)cmd]++;
  if (p->silent)
    return;
  if (cmd == 'O') {
    char r[12 + 512];
    uint32_t v[3] = {p->version, p->actions, p->flags};
    int i;
    ck_assert_uint_eq(n, 12);
    for (i = 0; i < 3; i++) {
      r[i * 4] = (char)(v[i] >> 24);
      r[i * 4 + 1] = (char)(v[i] >> 16);
      r[i * 4 + 2] = (char)(v[i] >> 8);
      r[i * 4 + 3] = (char)v[i];
    }
    if (p->symlist_len)
      memcpy(r + 12, p->symlist, p->symlist_len);
    peer_send(p, 'O', r, 12 + p->symlist_len);
    return;
  }
  if (p->script && p->script(p, cmd, d, n))
    return;
  if (cmd == 'D' || cmd == 'A' || cmd == 'Q' || (p->flags & nr_of(cmd)))
    return;
  peer_send(p, 'c', NULL, 0);
}

static void peer_recv(peer *p, const uint8_t *d, size_t n)
{
  sb_put(&p->in, d, n);
  for (;;) {
    uint32_t l;
    const uint8_t *b = (const uint8_t *)p->in.p;
    if (p->in.len < 4)
      return;
    l = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
        ((uint32_t)b[2] << 8) | b[3];
    ck_assert_uint_ge(l, 1);
    ck_assert_uint_le(l, 65536);
    if (p->in.len < 4 + l)
      return;
    peer_packet(p, (char)b[4], (const char *)b + 5, l - 1);
    memmove(p->in.p, p->in.p + 4 + l, p->in.len - 4 - l);
    p->in.len -= 4 + l;
  }
}

static void peer_free(peer *p)
{
  size_t i;
  for (i = 0; i < p->ngot; i++)
    free(p->got[i].d);
  sb_free(&p->in);
  sb_free(&p->out);
  sb_free(&p->cmds);
}

/* the i-th packet with command cmd (0-based), or NULL */
static const pkt *nth(const peer *p, char cmd, int i)
{
  size_t k;
  for (k = 0; k < p->ngot; k++)
    if (p->got[k].cmd == cmd && i-- == 0)
      return &p->got[k];
  return NULL;
}

/* the macro packet sent for command c: "name=value;..." */
static void macros_for(const peer *p, char c, int occurrence, char *out,
                       size_t cap)
{
  size_t k, i;
  out[0] = '\0';
  for (k = 0; k < p->ngot; k++) {
    const pkt *m = &p->got[k];
    if (m->cmd != 'D' || m->d[0] != c || occurrence-- != 0)
      continue;
    for (i = 1; i < m->n;) {
      const char *nm = m->d + i, *v = nm + strlen(nm) + 1;
      snprintf(out + strlen(out), cap - strlen(out), "%s=%s;", nm, v);
      i = (size_t)(v + strlen(v) + 1 - m->d);
    }
    return;
  }
}

/* ---- a host: session + chain + spool ------------------------------------------- */

typedef struct host {
  smtpd_config *cfg;
  smtpd_session *s;
  smtpd_milter_conf *mc;
  smtpd_milter_chain *ch;
  peer p[3];
  size_t np;
  int connect_late; /* do not report the filters connected at once */
  sbuf in;          /* what the client still has to send */
  size_t in_off;
  sbuf replies;     /* what the client received */
  sbuf spool;       /* the message as on_body gave it */
  sbuf delivered;   /* what the end-of-message hook wrote */
  int hook_calls;
  int discarded;
  smtpd_verdict hook_verdict;
  size_t nedits;
  smtpd_milter_edit edits[64];
  char *edit_text[64][2];
  int byte_feed;    /* client input one octet at a time */
} host;

static smtpd_verdict cb_connect(smtpd_session *s, void *ud)
{
  (void)s;
  return smtpd_milter_on_connect(((host *)ud)->ch);
}
static smtpd_verdict cb_helo(smtpd_session *s, const smtpd_helo *h, void *ud)
{
  (void)s;
  return smtpd_milter_on_helo(((host *)ud)->ch, h);
}
static smtpd_verdict cb_mail(smtpd_session *s, const smtpd_mail *m, void *ud)
{
  (void)s;
  return smtpd_milter_on_mail(((host *)ud)->ch, m);
}
static smtpd_verdict cb_rcpt(smtpd_session *s, const smtpd_rcpt *r, void *ud)
{
  (void)s;
  return smtpd_milter_on_rcpt(((host *)ud)->ch, r);
}
static smtpd_verdict cb_data(smtpd_session *s, void *ud)
{
  host *h = ud;
  (void)s;
  h->spool.len = 0;
  return smtpd_milter_on_data(h->ch);
}
static smtpd_verdict cb_body(smtpd_session *s, const uint8_t *d, size_t n,
                             void *ud)
{
  (void)s;
  sb_put(&((host *)ud)->spool, d, n);
  return SMTPD_ACCEPT;
}
static smtpd_verdict cb_complete(smtpd_session *s, const smtpd_message *m,
                                 void *ud)
{
  (void)s;
  return smtpd_milter_on_data_complete(((host *)ud)->ch, m);
}
static void cb_rset(smtpd_session *s, void *ud)
{
  (void)s;
  smtpd_milter_on_rset(((host *)ud)->ch);
}
static void cb_close(smtpd_session *s, smtpd_close_reason r, void *ud)
{
  (void)s;
  (void)r;
  smtpd_milter_chain_quit(((host *)ud)->ch);
}

static ptrdiff_t reader(void *ctx, uint64_t off, void *buf, size_t cap)
{
  host *h = ctx;
  size_t n;
  if (off >= h->spool.len)
    return 0;
  n = h->spool.len - (size_t)off;
  if (n > cap)
    n = cap;
  memcpy(buf, h->spool.p + off, n);
  return (ptrdiff_t)n;
}

/* write the edited message with the rewriter, fed in 1000-octet pieces */
static void rewrite(const smtpd_milter_edit *e, size_t ne, const char *msg,
                    size_t len, size_t piece, sbuf *out)
{
  smtpd_milter_rewriter *rw;
  size_t off = 0;
  const uint8_t *p;
  size_t n;
  ck_assert_int_eq(smtpd_milter_rewriter_new(&rw, NULL, e, ne, 0, 0), 0);
  while (off < len) {
    size_t want = len - off < piece ? len - off : piece;
    ptrdiff_t t = smtpd_milter_rewriter_feed(rw, msg + off, want);
    ck_assert_int_ge(t, 0);
    off += (size_t)t;
    while ((n = smtpd_milter_rewriter_output(rw, &p)) > 0) {
      sb_put(out, p, n);
      smtpd_milter_rewriter_consume(rw, n);
    }
  }
  ck_assert_int_eq(smtpd_milter_rewriter_finish(rw), 0);
  while ((n = smtpd_milter_rewriter_output(rw, &p)) > 0) {
    sb_put(out, p, n);
    smtpd_milter_rewriter_consume(rw, n);
  }
  smtpd_milter_rewriter_del(rw);
}

static smtpd_verdict eom_hook(smtpd_milter_chain *ch, smtpd_verdict v,
                              void *ctx)
{
  host *h = ctx;
  const smtpd_milter_edit *e;
  size_t n = smtpd_milter_chain_edits(ch, &e), i;
  h->hook_calls++;
  h->hook_verdict = v;
  h->discarded = smtpd_milter_chain_discard(ch);
  h->nedits = n < 64 ? n : 64;
  for (i = 0; i < h->nedits; i++) {
    h->edits[i] = e[i];
    h->edit_text[i][0] = e[i].name ? strdup(e[i].name) : NULL;
    h->edit_text[i][1] = e[i].value ? strdup(e[i].value) : NULL;
    h->edits[i].name = h->edit_text[i][0];
    h->edits[i].value = h->edit_text[i][1];
    h->edits[i].data = NULL;
  }
  if (v == SMTPD_ACCEPT && !h->discarded) {
    h->delivered.len = 0;
    rewrite(e, n, h->spool.p ? h->spool.p : "", h->spool.len, 1000,
            &h->delivered);
  }
  return v;
}

static void host_init(host *h, size_t nfilters, const smtpd_milter_action *act)
{
  smtpd_callbacks cb = {.version = SMTPD_CALLBACKS_VERSION,
                        .on_connect = cb_connect,
                        .on_helo = cb_helo,
                        .on_mail = cb_mail,
                        .on_rcpt = cb_rcpt,
                        .on_data = cb_data,
                        .on_body = cb_body,
                        .on_data_complete = cb_complete,
                        .on_rset = cb_rset,
                        .on_close = cb_close};
  size_t i;
  memset(h, 0, sizeof *h);
  ck_assert_int_eq(smtpd_config_new(&h->cfg, NULL), 0);
  smtpd_config_set_hostname(h->cfg, "mx.example.org");
  ck_assert_int_eq(smtpd_milter_conf_new(&h->mc, NULL), 0);
  for (i = 0; i < nfilters; i++) {
    char name[32];
    snprintf(name, sizeof name, "inet:127.0.0.1:%zu", 9000 + i);
    ck_assert_int_eq(smtpd_milter_conf_add(h->mc, name,
                                           act ? act[i] : SMTPD_MILTER_TEMPFAIL),
                     0);
    h->p[i].version = 6;
    h->p[i].actions = SMTPD_MILTER_ACT_ALL;
    h->p[i].flags = 0;
  }
  h->np = nfilters;
  ck_assert_int_eq(smtpd_session_new(&h->s, h->cfg, &cb, h), 0);
  smtpd_session_set_client(h->s, "192.0.2.1", NULL);
}

/* make the chain (after the test set up the peers) and start */
static void host_start(host *h)
{
  size_t i;
  ck_assert_int_eq(smtpd_milter_chain_new(&h->ch, h->mc, h->s), 0);
  ck_assert_uint_eq(smtpd_milter_chain_count(h->ch), h->np);
  smtpd_milter_chain_set_reader(h->ch, reader, h);
  smtpd_milter_chain_set_eom_hook(h->ch, eom_hook, h);
  smtpd_milter_chain_set_client(h->ch, 4, 40000);
  smtpd_milter_chain_set_macro(h->ch, "i", "QID1");
  if (!h->connect_late)
    for (i = 0; i < h->np; i++)
      ck_assert_int_eq(smtpd_milter_connected(smtpd_milter_chain_get(h->ch, i)),
                       0);
  ck_assert_int_eq(smtpd_session_start(h->s), 0);
}

/* move octets until nothing moves */
static void pump(host *h)
{
  int guard;
  for (guard = 0; guard < 1000000; guard++) {
    int moved = 0;
    const uint8_t *p;
    size_t n, i;
    n = smtpd_session_output(h->s, &p);
    if (n) {
      sb_put(&h->replies, p, n);
      smtpd_session_consume(h->s, n);
      moved = 1;
    }
    for (i = 0; i < h->np; i++) {
      smtpd_milter *m = smtpd_milter_chain_get(h->ch, i);
      n = smtpd_milter_output(m, &p);
      if (n) {
        peer_recv(&h->p[i], p, n);
        ck_assert_int_eq(smtpd_milter_consume(m, n), 0);
        moved = 1;
      }
      if (h->p[i].out.len) {
        sbuf o = h->p[i].out;
        memset(&h->p[i].out, 0, sizeof o);
        ck_assert_int_eq(smtpd_milter_feed(m, o.p, o.len), (ptrdiff_t)o.len);
        sb_free(&o);
        moved = 1;
      }
    }
    n = smtpd_session_output(h->s, &p); /* a client reads, then talks */
    if (n) {
      sb_put(&h->replies, p, n);
      smtpd_session_consume(h->s, n);
    }
    if (h->in_off < h->in.len && h->replies.len &&
        smtpd_session_want_read(h->s)) {
      size_t want = h->in.len - h->in_off;
      ptrdiff_t t;
      if (h->byte_feed)
        want = 1;
      t = smtpd_session_feed(h->s, h->in.p + h->in_off, want);
      ck_assert_int_ge(t, 0);
      if (t) {
        h->in_off += (size_t)t;
        moved = 1;
      }
    }
    if (!moved)
      return;
  }
  ck_abort_msg("pump did not settle");
}

static void say(host *h, const char *text)
{
  sb_str(&h->in, text);
  pump(h);
}

static void host_free(host *h)
{
  size_t i;
  smtpd_milter_chain_del(h->ch);
  smtpd_session_del(h->s);
  smtpd_milter_conf_del(h->mc);
  smtpd_config_del(h->cfg);
  for (i = 0; i < h->np; i++)
    peer_free(&h->p[i]);
  for (i = 0; i < h->nedits; i++) {
    free(h->edit_text[i][0]);
    free(h->edit_text[i][1]);
  }
  sb_free(&h->in);
  sb_free(&h->replies);
  sb_free(&h->spool);
  sb_free(&h->delivered);
}

static const char *MSG =
    "From: a@example.org\r\n"
    "To: b@example.org\r\n"
    "Subject: hello\r\n"
    "  world\r\n"
    "X-Del: gone\r\n"
    "\r\n"
    "Body line 1\r\n"
    "Body line 2\r\n";

static void send_message(host *h, const char *rcpts)
{
  char buf[512];
  say(h, "EHLO client.example\r\n");
  say(h, "MAIL FROM:<a@example.org> SIZE=100\r\n");
  say(h, rcpts);
  say(h, "DATA\r\n");
  snprintf(buf, sizeof buf, "%s.\r\n", MSG);
  say(h, buf);
}

/* the reply text after the n-th CRLF-terminated line starting with code */
static int has_reply(const host *h, const char *line)
{
  return h->replies.p && strstr(h->replies.p, line) != NULL;
}

/* ---- the conversation ------------------------------------------------------ */

START_TEST(test_negotiation)
{
  host h;
  const pkt *o;
  smtpd_milter *m;
  host_init(&h, 1, NULL);
  h.p[0].actions = SMTPD_MILTER_ACT_ADDHDRS | SMTPD_MILTER_ACT_CHGBODY;
  h.p[0].flags = SMTPD_MILTER_P_NOHELO | SMTPD_MILTER_P_SKIP;
  host_start(&h);
  pump(&h);
  o = nth(&h.p[0], 'O', 0);
  ck_assert_ptr_nonnull(o);
  ck_assert_uint_eq(o->n, 12);
  /* version 6, every action, every supported step */
  ck_assert_mem_eq(o->d, "\0\0\0\6\0\0\1\xff\0\x1f\xf7\xff", 12);
  m = smtpd_milter_chain_get(h.ch, 0);
  ck_assert_uint_eq(smtpd_milter_actions(m),
                    SMTPD_MILTER_ACT_ADDHDRS | SMTPD_MILTER_ACT_CHGBODY);
  ck_assert_uint_eq(smtpd_milter_flags(m),
                    SMTPD_MILTER_P_NOHELO | SMTPD_MILTER_P_SKIP);
  ck_assert(has_reply(&h, "220 mx.example.org ESMTP"));
  say(&h, "HELO x\r\n");
  ck_assert_int_eq(h.p[0].count['H'], 0); /* NOHELO */
  ck_assert_str_eq(h.p[0].cmds.p, "ODC");
  host_free(&h);
}
END_TEST

START_TEST(test_version_and_flags_refused)
{
  static const struct {
    uint32_t version, actions, flags;
  } bad[] = {{1, 0, 0}, {7, 0, 0}, {6, 0x200, 0}, {6, 0, 0x800},
             {6, 0, 0x10000000}};
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    host h;
    host_init(&h, 1, NULL);
    h.p[0].version = bad[i].version;
    h.p[0].actions = bad[i].actions;
    h.p[0].flags = bad[i].flags;
    host_start(&h);
    pump(&h);
    ck_assert(smtpd_milter_is_failed(smtpd_milter_chain_get(h.ch, 0)));
    /* default action tempfail at connect: the session refuses */
    ck_assert(!has_reply(&h, "220 "));
    host_free(&h);
  }
}
END_TEST

START_TEST(test_full_conversation)
{
  host h;
  char mac[1024];
  const pkt *k;
  host_init(&h, 1, NULL);
  h.byte_feed = _i;
  host_start(&h);
  send_message(&h, "RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\n");
  say(&h, "QUIT\r\n");
  /* every command in order, macros before those with a macro stage */
  ck_assert_str_eq(h.p[0].cmds.p, "ODCHDMDRDRDTLLLLDNBDEQ");
  k = nth(&h.p[0], 'C', 0);
  ck_assert_uint_eq(k->n, 12 + 1 + 2 + 10);
  ck_assert_mem_eq(k->d, "[192.0.2.1]\0" "4" "\x9c\x40" "192.0.2.1\0", k->n);
  macros_for(&h.p[0], 'C', 0, mac, sizeof mac);
  ck_assert_str_eq(mac, "j=mx.example.org;_=unknown [192.0.2.1];"
                        "{daemon_name}=libsmtpd;{client_addr}=192.0.2.1;"
                        "{client_port}=40000;{client_name}=unknown;"
                        "{client_ptr}=unknown;");
  ck_assert_str_eq(nth(&h.p[0], 'H', 0)->d, "client.example");
  k = nth(&h.p[0], 'M', 0);
  ck_assert_mem_eq(k->d, "<a@example.org>\0SIZE=100\0", k->n);
  macros_for(&h.p[0], 'M', 0, mac, sizeof mac);
  ck_assert_str_eq(mac, "i=QID1;{mail_addr}=a@example.org;");
  macros_for(&h.p[0], 'R', 1, mac, sizeof mac);
  ck_assert_str_eq(mac, "i=QID1;{rcpt_addr}=c@example.org;");
  ck_assert_str_eq(nth(&h.p[0], 'R', 1)->d, "<c@example.org>");
  /* headers: leading blank removed, the fold as LF */
  k = nth(&h.p[0], 'L', 2);
  ck_assert_mem_eq(k->d, "Subject\0hello\n  world\0", k->n);
  k = nth(&h.p[0], 'L', 3);
  ck_assert_mem_eq(k->d, "X-Del\0gone\0", k->n);
  k = nth(&h.p[0], 'B', 0);
  ck_assert_mem_eq(k->d, "Body line 1\r\nBody line 2\r\n", k->n);
  ck_assert_uint_eq(nth(&h.p[0], 'E', 0)->n, 0);
  ck_assert(has_reply(&h, "250 2.0.0 Ok"));
  ck_assert_int_eq(h.hook_calls, 1);
  ck_assert_int_eq(h.hook_verdict, SMTPD_ACCEPT);
  ck_assert_str_eq(h.delivered.p, MSG); /* no edits: unchanged */
  ck_assert(smtpd_milter_is_done(smtpd_milter_chain_get(h.ch, 0)));
  host_free(&h);
}
END_TEST

START_TEST(test_connect_waits_for_filter)
{
  host h;
  smtpd_milter *m;
  host_init(&h, 1, NULL);
  h.connect_late = 1;
  host_start(&h);
  pump(&h);
  ck_assert_uint_eq(h.replies.len, 0); /* greeting waits */
  ck_assert(smtpd_session_is_paused(h.s));
  m = smtpd_milter_chain_get(h.ch, 0);
  {
    smtpd_milter_timeout_kind k;
    ck_assert_uint_eq(smtpd_milter_timeout(m, &k), 30000);
    ck_assert_int_eq(k, SMTPD_MILTER_TIMEOUT_CONNECT);
  }
  ck_assert_int_eq(smtpd_milter_connected(m), 0);
  pump(&h);
  ck_assert(has_reply(&h, "220 mx.example.org"));
  host_free(&h);
}
END_TEST

static int reject_bad_rcpt(peer *p, char cmd, const char *d, size_t n)
{
  (void)n;
  if (cmd == 'R' && strstr(d, "bad@")) {
    peer_send(p, 'r', NULL, 0);
    return 1;
  }
  if (cmd == 'R' && strstr(d, "later@")) {
    peer_send(p, 't', NULL, 0);
    return 1;
  }
  return 0;
}

START_TEST(test_per_recipient)
{
  host h;
  host_init(&h, 2, NULL);
  h.p[0].script = reject_bad_rcpt;
  host_start(&h);
  send_message(&h, "RCPT TO:<bad@example.org>\r\nRCPT TO:<b@example.org>\r\n"
                   "RCPT TO:<later@example.org>\r\n");
  ck_assert(has_reply(&h, "550 5.7.1 Command rejected\r\n250 2.1.5"));
  ck_assert(has_reply(&h, "451 4.7.1 Service unavailable - try again later"));
  /* the second filter is not asked about refused recipients */
  ck_assert_int_eq(h.p[1].count['R'], 1);
  ck_assert_str_eq(nth(&h.p[1], 'R', 0)->d, "<b@example.org>");
  ck_assert_str_eq(h.delivered.p, MSG);
  host_free(&h);
}
END_TEST

static const char *replycode;
static char replycode_at;
static int send_replycode(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd == replycode_at) {
    peer_send(p, 'y', replycode, strlen(replycode) + 1);
    return 1;
  }
  return 0;
}

START_TEST(test_replycode)
{
  static const struct {
    char at;
    const char *code;
    const char *want;
  } cases[] = {
      {'M', "550 5.7.1 Sender blocked", "550 5.7.1 Sender blocked\r\n"},
      {'R', "450 4.2.0 Greylisted, come back later",
       "450 4.2.0 Greylisted, come back later\r\n"},
      {'E', "554-5.7.1 line one\r\n554 5.7.1 line two",
       "554-5.7.1 line one\r\n554 5.7.1 line two\r\n"},
      {'T', "452 No thanks", "452 "},
      /* not a refusal, an injection, mixed codes, wrong class, control */
      {'M', "250 2.0.0 fine", "451 4.7.1 Service unavailable"},
      {'M', "550 5.7.1 x\r\nRSET", "451 4.7.1 Service unavailable"},
      {'M', "550-5.7.1 a\r\n451 4.7.1 b", "451 4.7.1 Service unavailable"},
      {'M', "550 4.7.1 wrong class", "451 4.7.1 Service unavailable"},
      {'M', "550 5.7.1 bell\a", "451 4.7.1 Service unavailable"},
      {'M', "550 5.7.1 x\n250 ok", "451 4.7.1 Service unavailable"},
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    host h;
    host_init(&h, 1, NULL);
    h.p[0].script = send_replycode;
    replycode = cases[i].code;
    replycode_at = cases[i].at;
    host_start(&h);
    send_message(&h, "RCPT TO:<b@example.org>\r\n");
    if (!has_reply(&h, cases[i].want))
      ck_abort_msg("case %zu: %s", i, h.replies.p);
    if (cases[i].want[0] == '4' && cases[i].at == 'M' && i >= 4)
      ck_assert(smtpd_milter_is_failed(smtpd_milter_chain_get(h.ch, 0)));
    host_free(&h);
  }
}
END_TEST

static char accept_at;
static int send_accept(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd == accept_at && p->count[(unsigned char)cmd] == 1) {
    peer_send(p, 'a', NULL, 0);
    return 1;
  }
  return 0;
}

START_TEST(test_accept_stops_asking)
{
  host h;
  /* at MAIL: nothing more for this message; the next one is asked */
  host_init(&h, 2, NULL);
  h.p[0].script = send_accept;
  accept_at = 'M';
  host_start(&h);
  send_message(&h, "RCPT TO:<b@example.org>\r\n");
  /* ABORT: the message is over for a filter that did not see its end */
  ck_assert_str_eq(h.p[0].cmds.p, "ODCHDMA");
  ck_assert_int_eq(h.p[1].count['E'], 1); /* the other filter goes on */
  say(&h, "MAIL FROM:<x@example.org>\r\n");
  ck_assert_str_eq(h.p[0].cmds.p, "ODCHDMADM");
  host_free(&h);
  /* at CONNECT: nothing more in the session but QUIT */
  host_init(&h, 1, NULL);
  h.p[0].script = send_accept;
  accept_at = 'C';
  host_start(&h);
  send_message(&h, "RCPT TO:<b@example.org>\r\n");
  say(&h, "QUIT\r\n");
  ck_assert_str_eq(h.p[0].cmds.p, "ODCQ");
  ck_assert_str_eq(h.delivered.p, MSG);
  host_free(&h);
}
END_TEST

static char discard_at;
static int send_discard(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd == discard_at) {
    peer_send(p, 'd', NULL, 0);
    return 1;
  }
  return 0;
}

START_TEST(test_discard)
{
  static const char at[] = {'R', 'E', 'L'};
  host h;
  host_init(&h, 2, NULL);
  h.p[0].script = send_discard;
  discard_at = at[_i];
  host_start(&h);
  send_message(&h, "RCPT TO:<b@example.org>\r\n");
  ck_assert(has_reply(&h, "250 2.1.5"));
  ck_assert(has_reply(&h, "250 2.0.0 Ok"));
  ck_assert_int_eq(h.hook_calls, 1);
  ck_assert_int_eq(h.discarded, 1);
  ck_assert_uint_eq(h.delivered.len, 0);
  ck_assert_int_eq(h.p[1].count['E'], 0); /* nobody else asked */
  host_free(&h);
}
END_TEST

static int eom_verdict;
static int send_eom_verdict(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd == 'E') {
    peer_send(p, (char)eom_verdict, NULL, 0);
    return 1;
  }
  return 0;
}

START_TEST(test_eom_verdicts)
{
  static const struct {
    char v;
    const char *want;
  } c[] = {{'r', "550 5.7.1 Command rejected"},
           {'t', "451 4.7.1 Service unavailable"},
           {'c', "250 2.0.0 Ok"},
           {'a', "250 2.0.0 Ok"}};
  host h;
  host_init(&h, 1, NULL);
  h.p[0].script = send_eom_verdict;
  eom_verdict = c[_i].v;
  host_start(&h);
  send_message(&h, "RCPT TO:<b@example.org>\r\n");
  ck_assert(has_reply(&h, c[_i].want));
  ck_assert_int_eq(h.hook_calls, 1);
  ck_assert_int_eq(h.hook_verdict, c[_i].v == 'r'   ? SMTPD_REJECT
                                   : c[_i].v == 't' ? SMTPD_TEMPFAIL
                                                    : SMTPD_ACCEPT);
  /* a second message: the filter is asked again */
  say(&h, "MAIL FROM:<x@example.org>\r\n");
  ck_assert_int_eq(h.p[0].count['M'], 2);
  host_free(&h);
}
END_TEST

static int progress_then(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd == 'E') {
    peer_send(p, 'p', NULL, 0);
    return 1; /* the test answers later */
  }
  return 0;
}

START_TEST(test_progress_and_timeouts)
{
  host h;
  smtpd_milter *m;
  smtpd_milter_timeout_kind k;
  host_init(&h, 1, NULL);
  smtpd_milter_conf_set_timeout(h.mc, SMTPD_MILTER_TIMEOUT_CONTENT, 1234);
  h.p[0].script = progress_then;
  host_start(&h);
  m = smtpd_milter_chain_get(h.ch, 0);
  ck_assert_uint_eq(smtpd_milter_timeout(m, &k), 30000); /* negotiating */
  ck_assert_int_eq(k, SMTPD_MILTER_TIMEOUT_COMMAND);
  pump(&h);
  ck_assert_uint_eq(smtpd_milter_timeout(m, &k), 0); /* idle */
  ck_assert_int_eq(k, SMTPD_MILTER_TIMEOUT_NONE);
  send_message(&h, "RCPT TO:<b@example.org>\r\n");
  /* PROGRESS arrived: still waiting, the content timeout applies */
  ck_assert(smtpd_session_is_paused(h.s));
  ck_assert_uint_eq(smtpd_milter_timeout(m, &k), 1234);
  ck_assert_int_eq(k, SMTPD_MILTER_TIMEOUT_CONTENT);
  ck_assert(!smtpd_milter_is_failed(m));
  peer_send(&h.p[0], 'p', NULL, 0);
  peer_send(&h.p[0], 'c', NULL, 0);
  pump(&h);
  ck_assert(has_reply(&h, "250 2.0.0 Ok"));
  ck_assert_str_eq(h.delivered.p, MSG);
  host_free(&h);
}
END_TEST

static int skip_body(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd == 'B') {
    peer_send(p, 's', NULL, 0);
    return 1;
  }
  return 0;
}

START_TEST(test_body_chunks_and_skip)
{
  host h;
  sbuf big = {0}, got = {0};
  size_t i;
  host_init(&h, 2, NULL);
  h.p[1].flags = SMTPD_MILTER_P_SKIP;
  h.p[1].script = skip_body;
  host_start(&h);
  say(&h, "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
  sb_str(&big, "Subject: big\r\n\r\n");
  for (i = 0; i < 3000; i++)
    sb_str(&big, "0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
  say(&h, big.p);
  say(&h, ".\r\n");
  ck_assert(has_reply(&h, "250 2.0.0 Ok"));
  /* filter 0: every chunk at most 65535 octets, together the body */
  for (i = 0; nth(&h.p[0], 'B', (int)i); i++) {
    const pkt *k = nth(&h.p[0], 'B', (int)i);
    ck_assert_uint_le(k->n, 65535);
    sb_put(&got, k->d, k->n);
  }
  ck_assert_uint_eq(i, 4);
  ck_assert_uint_eq(got.len, big.len - 16);
  ck_assert_mem_eq(got.p, big.p + 16, got.len);
  /* filter 1 said SKIP at the first chunk: straight to end of message */
  ck_assert_int_eq(h.p[1].count['B'], 1);
  ck_assert_int_eq(h.p[1].count['E'], 1);
  ck_assert_str_eq(h.delivered.p, big.p);
  sb_free(&big);
  sb_free(&got);
  host_free(&h);
}
END_TEST

START_TEST(test_no_reply_flags)
{
  host h;
  host_init(&h, 1, NULL);
  h.p[0].flags = SMTPD_MILTER_P_NR_CONN | SMTPD_MILTER_P_NR_HELO |
                 SMTPD_MILTER_P_NR_MAIL | SMTPD_MILTER_P_NR_RCPT |
                 SMTPD_MILTER_P_NR_DATA | SMTPD_MILTER_P_NR_HDR |
                 SMTPD_MILTER_P_NR_EOH | SMTPD_MILTER_P_NR_BODY;
  host_start(&h);
  send_message(&h, "RCPT TO:<b@example.org>\r\n");
  ck_assert_str_eq(h.p[0].cmds.p, "ODCHDMDRDTLLLLDNBDE");
  ck_assert(has_reply(&h, "250 2.0.0 Ok"));
  ck_assert_str_eq(h.delivered.p, MSG);
  host_free(&h);
}
END_TEST

START_TEST(test_skip_stage_flags)
{
  host h;
  host_init(&h, 1, NULL);
  h.p[0].flags = SMTPD_MILTER_P_NOCONNECT | SMTPD_MILTER_P_NOHELO |
                 SMTPD_MILTER_P_NOMAIL | SMTPD_MILTER_P_NORCPT |
                 SMTPD_MILTER_P_NODATA | SMTPD_MILTER_P_NOHDRS |
                 SMTPD_MILTER_P_NOEOH | SMTPD_MILTER_P_NOBODY;
  host_start(&h);
  send_message(&h, "RCPT TO:<b@example.org>\r\n");
  ck_assert_str_eq(h.p[0].cmds.p, "ODE");
  host_free(&h);
}
END_TEST

START_TEST(test_setsymlist_and_leadspc)
{
  static const char sym[] = "\0\0\0\0{client_addr} j\0"
                            "\0\0\0\2{mail_addr}\0";
  host h;
  char mac[512];
  host_init(&h, 1, NULL);
  h.p[0].actions = SMTPD_MILTER_ACT_SETSYMLIST | SMTPD_MILTER_ACT_ADDHDRS;
  h.p[0].flags = SMTPD_MILTER_P_HDR_LEADSPC;
  h.p[0].symlist = sym;
  h.p[0].symlist_len = sizeof sym - 1;
  host_start(&h);
  send_message(&h, "RCPT TO:<b@example.org>\r\n");
  macros_for(&h.p[0], 'C', 0, mac, sizeof mac);
  ck_assert_str_eq(mac, "{client_addr}=192.0.2.1;j=mx.example.org;");
  macros_for(&h.p[0], 'M', 0, mac, sizeof mac);
  ck_assert_str_eq(mac, "{mail_addr}=a@example.org;");
  /* HDR_LEADSPC: the value as it is, blank included */
  ck_assert_mem_eq(nth(&h.p[0], 'L', 0)->d, "From\0 a@example.org\0", 20);
  host_free(&h);
}
END_TEST

static int all_edits(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd != 'E')
    return 0;
  peer_send_2(p, 'h', -1, "X-Added", "yes");
  peer_send_2(p, 'i', 0, "X-Top", "first\n\tfolded");
  peer_send_2(p, 'm', 1, "Subject", "changed");
  peer_send_2(p, 'm', 1, "X-Del", "");
  peer_send_2(p, 'm', 3, "X-Missing", "appended");
  peer_send_2(p, 'e', -1, "<new@example.org>", "SIZE=5");
  peer_send_s(p, '+', "<added@example.org>");
  peer_send_2(p, '2', -1, "<par@example.org>", "NOTIFY=NEVER");
  peer_send_s(p, '-', "<b@example.org>");
  peer_send_s(p, 'q', "held for review");
  peer_send(p, 'b', "New body\r\n", 10);
  peer_send(p, 'b', "second chunk\r\n", 14);
  peer_send(p, 'c', NULL, 0);
  return 1;
}

START_TEST(test_every_edit)
{
  host h;
  host_init(&h, 1, NULL);
  h.p[0].script = all_edits;
  host_start(&h);
  send_message(&h, "RCPT TO:<b@example.org>\r\n");
  ck_assert(has_reply(&h, "250 2.0.0 Ok"));
  ck_assert_uint_eq(h.nedits, 11);
  ck_assert_int_eq(h.edits[0].kind, SMTPD_MILTER_EDIT_ADDHEADER);
  ck_assert_str_eq(h.edits[0].name, "X-Added");
  ck_assert_str_eq(h.edits[0].value, " yes");
  ck_assert_int_eq(h.edits[1].kind, SMTPD_MILTER_EDIT_INSHEADER);
  ck_assert_uint_eq(h.edits[1].index, 0);
  ck_assert_int_eq(h.edits[2].kind, SMTPD_MILTER_EDIT_CHGHEADER);
  ck_assert_str_eq(h.edits[3].value, "");
  ck_assert_int_eq(h.edits[5].kind, SMTPD_MILTER_EDIT_CHGFROM);
  ck_assert_str_eq(h.edits[5].name, "<new@example.org>");
  ck_assert_str_eq(h.edits[5].value, "SIZE=5");
  ck_assert_int_eq(h.edits[6].kind, SMTPD_MILTER_EDIT_ADDRCPT);
  ck_assert_str_eq(h.edits[6].name, "<added@example.org>");
  ck_assert_int_eq(h.edits[7].kind, SMTPD_MILTER_EDIT_ADDRCPT_PAR);
  ck_assert_str_eq(h.edits[7].value, "NOTIFY=NEVER");
  ck_assert_int_eq(h.edits[8].kind, SMTPD_MILTER_EDIT_DELRCPT);
  ck_assert_int_eq(h.edits[9].kind, SMTPD_MILTER_EDIT_QUARANTINE);
  ck_assert_str_eq(h.edits[9].name, "held for review");
  ck_assert_int_eq(h.edits[10].kind, SMTPD_MILTER_EDIT_REPLBODY);
  ck_assert_str_eq(h.delivered.p,
                   "X-Top: first\r\n\tfolded\r\n"
                   "From: a@example.org\r\n"
                   "To: b@example.org\r\n"
                   "Subject: changed\r\n"
                   "X-Added: yes\r\n"
                   "X-Missing: appended\r\n"
                   "\r\n"
                   "New body\r\nsecond chunk\r\n");
  host_free(&h);
}
END_TEST

static int unasked_edit(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd == 'E') {
    peer_send_2(p, 'h', -1, "X-Added", "yes");
    peer_send(p, 'c', NULL, 0);
    return 1;
  }
  if (cmd == 'M') { /* an edit before the end of the message */
    peer_send_2(p, 'h', -1, "X-Early", "no");
    return 1;
  }
  return 0;
}

START_TEST(test_edit_refused)
{
  host h;
  host_init(&h, 1, NULL);
  h.p[0].actions = _i ? SMTPD_MILTER_ACT_ALL : SMTPD_MILTER_ACT_CHGBODY;
  h.p[0].script = unasked_edit;
  host_start(&h);
  if (!_i) {
    /* not negotiated: at EOM the policy answers */
    say(&h, "EHLO c\r\n");
    h.p[0].script = NULL;
    say(&h, "MAIL FROM:<a@x>\r\n");
    h.p[0].script = unasked_edit;
    say(&h, "RCPT TO:<b@x>\r\nDATA\r\n");
    say(&h, "Subject: x\r\n\r\nhi\r\n.\r\n");
  } else {
    send_message(&h, "RCPT TO:<b@x>\r\n");
  }
  ck_assert(smtpd_milter_is_failed(smtpd_milter_chain_get(h.ch, 0)));
  ck_assert(has_reply(&h, "451 4.7.1 Service unavailable"));
  host_free(&h);
}
END_TEST

/* filter 0 adds a header and replaces the body; filter 1 must see both */
static int first_edits(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd != 'E')
    return 0;
  peer_send_2(p, 'h', -1, "X-First", "1");
  peer_send_2(p, 'm', 1, "Subject", "");
  peer_send(p, 'b', "replaced\r\n", 10);
  peer_send(p, 'c', NULL, 0);
  return 1;
}
static int second_edits(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd != 'E')
    return 0;
  peer_send_2(p, 'i', 1, "X-Second", "2");
  peer_send(p, 'c', NULL, 0);
  return 1;
}

START_TEST(test_chain_sees_predecessors)
{
  host h;
  host_init(&h, 2, NULL);
  h.p[0].script = first_edits;
  h.p[1].script = second_edits;
  host_start(&h);
  send_message(&h, "RCPT TO:<b@example.org>\r\n");
  ck_assert_int_eq(h.p[1].count['L'], 4); /* From To X-Del X-First */
  ck_assert_mem_eq(nth(&h.p[1], 'L', 3)->d, "X-First\0" "1\0", 10);
  ck_assert_str_eq(nth(&h.p[1], 'B', 0)->d, "replaced\r\n");
  ck_assert_uint_eq(h.nedits, 4);
  ck_assert_uint_eq(h.edits[0].milter, 0);
  ck_assert_uint_eq(h.edits[3].milter, 1);
  ck_assert_str_eq(h.delivered.p, "From: a@example.org\r\n"
                                  "X-Second: 2\r\n"
                                  "To: b@example.org\r\n"
                                  "X-Del: gone\r\n"
                                  "X-First: 1\r\n"
                                  "\r\n"
                                  "replaced\r\n");
  host_free(&h);
}
END_TEST

static int go_silent_at_body(peer *p, char cmd, const char *d, size_t n)
{
  (void)d;
  (void)n;
  if (cmd == 'B') {
    p->silent = 1;
    return 1;
  }
  return 0;
}

/* faults: _i selects timeout / close mid-body / garbage / oversized */
START_TEST(test_faults_and_policy)
{
  static const smtpd_milter_action acts[] = {
      SMTPD_MILTER_TEMPFAIL, SMTPD_MILTER_REJECT, SMTPD_MILTER_ACCEPT};
  int a;
  for (a = 0; a < 3; a++) {
    host h;
    smtpd_milter *m;
    smtpd_milter_action act[1];
    act[0] = acts[a];
    host_init(&h, 1, act);
    h.p[0].script = go_silent_at_body;
    host_start(&h);
    m = smtpd_milter_chain_get(h.ch, 0);
    send_message(&h, "RCPT TO:<b@example.org>\r\n");
    ck_assert(smtpd_session_is_paused(h.s));
    switch (_i) {
    case 0:
      ck_assert_int_eq(smtpd_milter_timeout_expired(m), 0);
      break;
    case 1:
      ck_assert_int_eq(smtpd_milter_fail(m, "connection closed"), 0);
      break;
    case 2:
      ck_assert_int_eq(smtpd_milter_feed(m, "\0\0\0\2Zx", 6), 6);
      break;
    case 3:
      ck_assert_int_eq(smtpd_milter_feed(m, "\x7f\0\0\0", 4), 4);
      break;
    }
    pump(&h);
    ck_assert(smtpd_milter_is_failed(m));
    ck_assert(smtpd_milter_is_done(m));
    ck_assert_str_ne(smtpd_milter_error(m), "");
    ck_assert(!smtpd_session_is_paused(h.s));
    if (a == 0)
      ck_assert(has_reply(&h, "451 4.7.1 Service unavailable"));
    else if (a == 1)
      ck_assert(has_reply(&h, "550 5.7.1 Command rejected"));
    else
      ck_assert(has_reply(&h, "250 2.0.0 Ok"));
    /* the filter is not asked again; the next decision gets the policy */
    {
      size_t before = h.p[0].ngot;
      say(&h, "MAIL FROM:<x@example.org>\r\n");
      ck_assert_uint_eq(h.p[0].ngot, before);
      if (a == 2)
        ck_assert(has_reply(&h, "250 2.1.0"));
      else
        ck_assert(strstr(h.replies.p + h.replies.len - 60,
                         a ? "\n550 5.7.1" : "\n451 4.7.1"));
    }
    host_free(&h);
  }
}
END_TEST

START_TEST(test_rset_aborts_and_quit)
{
  host h;
  host_init(&h, 1, NULL);
  host_start(&h);
  say(&h, "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRSET\r\n");
  ck_assert_str_eq(h.p[0].cmds.p, "ODCHDMDRA");
  say(&h, "RSET\r\n"); /* no transaction: nothing sent */
  say(&h, "MAIL FROM:<a@x>\r\nQUIT\r\n");
  ck_assert_str_eq(h.p[0].cmds.p, "ODCHDMDRADMAQ");
  ck_assert(smtpd_milter_is_done(smtpd_milter_chain_get(h.ch, 0)));
  host_free(&h);
}
END_TEST

/* ---- splitter ------------------------------------------------------------------- */

typedef struct hs_log {
  sbuf text;
} hs_log;

static void hs_cb(void *ctx, const smtpd_milter_header *h)
{
  hs_log *l = ctx;
  sb_str(&l->text, "[");
  sb_put(&l->text, h->name, h->name_len);
  sb_str(&l->text, "|");
  sb_put(&l->text, h->value, h->value_len);
  sb_str(&l->text, "]");
}

/* split msg with pieces of the given size; returns the log */
static void split(const char *msg, size_t len, size_t piece, size_t max_field,
                  size_t max_section, sbuf *log, smtpd_milter_hsplit_end *end,
                  uint64_t *body_off, sbuf *pending)
{
  smtpd_milter_hsplit *h;
  hs_log l = {{0}};
  size_t off = 0;
  const uint8_t *p;
  size_t n;
  ck_assert_int_eq(smtpd_milter_hsplit_new(&h, NULL, max_field, max_section),
                   0);
  while (off < len) {
    size_t w = len - off < piece ? len - off : piece;
    ptrdiff_t t = smtpd_milter_hsplit_feed(h, msg + off, w, hs_cb, &l);
    ck_assert_int_ge(t, 0);
    off += (size_t)t;
    if ((size_t)t < w)
      break;
  }
  smtpd_milter_hsplit_finish(h, hs_cb, &l);
  *end = smtpd_milter_hsplit_state(h);
  *body_off = smtpd_milter_hsplit_body_offset(h);
  n = smtpd_milter_hsplit_pending(h, &p);
  if (n)
    sb_put(pending, p, n);
  *log = l.text;
  smtpd_milter_hsplit_del(h);
}

START_TEST(test_splitter)
{
  static const struct {
    const char *msg;
    size_t max_field;
    const char *log;
    smtpd_milter_hsplit_end end;
    uint64_t body;
    const char *pending;
  } c[] = {
      {"A: 1\r\nB:2\r\n\tfold\r\n\r\nbody", 0, "[A| 1][B|2\r\n\tfold]",
       SMTPD_MILTER_HS_BLANK, 20, ""},
      {"A: 1\r\nno colon here\r\nC: 3\r\n\r\n", 0, "[A| 1]",
       SMTPD_MILTER_HS_NOT_HEADER, 6, "no "},
      {"A: 1\r\n fold-first-ok\r\n\r\n", 0, "[A| 1\r\n fold-first-ok]",
       SMTPD_MILTER_HS_BLANK, 24, ""},
      {" leading fold\r\nA: 1\r\n", 0, "", SMTPD_MILTER_HS_NOT_HEADER, 0,
       ""},
      {"A: 1\r\nB: 2", 0, "[A| 1][B| 2]", SMTPD_MILTER_HS_EOF, 10, ""},
      {"Name : v\r\n\r\n", 0, "[Name| v]", SMTPD_MILTER_HS_BLANK, 12, ""},
      {"A: 1\r\nLong: 0123456789012345678901234567890\r\n\r\n", 20,
       "[A| 1]", SMTPD_MILTER_HS_TOO_LONG, 6, "Long: 01234567890123"},
      {"A: 1\nB: 2\n\nbody", 0, "[A| 1][B| 2]", SMTPD_MILTER_HS_BLANK, 11,
       ""},
      {"", 0, "", SMTPD_MILTER_HS_EOF, 0, ""},
      {"\r\nbody", 0, "", SMTPD_MILTER_HS_BLANK, 2, ""},
      {"Bad\x01Name: x\r\n\r\n", 0, "", SMTPD_MILTER_HS_NOT_HEADER, 0,
       "Bad"},
  };
  static const size_t pieces[] = {1, 7, 1000};
  size_t i, k, piece;
  for (i = 0; i < sizeof c / sizeof c[0]; i++) {
    for (k = 0; k < 3; k++) {
      piece = pieces[k];
      sbuf log = {0}, pend = {0};
      smtpd_milter_hsplit_end end;
      uint64_t body;
      split(c[i].msg, strlen(c[i].msg), piece, c[i].max_field, 0, &log,
            &end, &body, &pend);
      ck_assert_msg(!strcmp(log.p ? log.p : "", c[i].log),
                    "case %zu piece %zu: %s", i, piece, log.p);
      ck_assert_int_eq(end, c[i].end);
      ck_assert_uint_eq(body, c[i].body);
      ck_assert_str_eq(pend.p ? pend.p : "", c[i].pending);
      sb_free(&log);
      sb_free(&pend);
    }
  }
}
END_TEST

START_TEST(test_splitter_section_limit)
{
  sbuf msg = {0}, log = {0}, pend = {0};
  smtpd_milter_hsplit_end end;
  uint64_t body;
  int i;
  for (i = 0; i < 100; i++)
    sb_str(&msg, "X-Many: 0123456789\r\n"); /* 20 octets each */
  sb_str(&msg, "\r\nbody\r\n");
  split(msg.p, msg.len, 13, 0, 1010, &log, &end, &body, &pend);
  ck_assert_int_eq(end, SMTPD_MILTER_HS_TOO_LONG);
  ck_assert_uint_eq(body, 50 * 20); /* the 51st field would pass 1010 */
  ck_assert_str_eq(pend.p, "X-Many: 01");
  sb_free(&msg);
  sb_free(&log);
  sb_free(&pend);
}
END_TEST

/* ---- rewriter ------------------------------------------------------------------- */

START_TEST(test_rewriter_semantics)
{
  smtpd_milter_edit e[] = {
      {SMTPD_MILTER_EDIT_CHGHEADER, 0, 2, "received", " second changed", NULL, 0},
      {SMTPD_MILTER_EDIT_CHGHEADER, 0, 0, "X-A", "", NULL, 0},
      {SMTPD_MILTER_EDIT_INSHEADER, 0, 99, "X-End", " e", NULL, 0},
      {SMTPD_MILTER_EDIT_INSHEADER, 0, 1, "X-One", " 1\nBcc: evil", NULL, 0},
      {SMTPD_MILTER_EDIT_CHGHEADER, 0, 5, "Nope", "", NULL, 0},
      {SMTPD_MILTER_EDIT_ADDRCPT, 0, 0, "<x@y>", NULL, NULL, 0},
  };
  static const char *in = "Received: first\r\n"
                          "X-A: a\r\n"
                          "Received: second\r\n"
                          "\tfolded\r\n"
                          "\r\n"
                          "body\r\n.stuffed? no\r\n";
  static const char *want = "Received: first\r\n"
                            "X-One: 1\r\n Bcc: evil\r\n"
                            "Received: second changed\r\n"
                            "X-End: e\r\n"
                            "\r\n"
                            "body\r\n.stuffed? no\r\n";
  size_t piece;
  for (piece = 1; piece < 200; piece += 9) {
    sbuf out = {0};
    rewrite(e, sizeof e / sizeof e[0], in, strlen(in), piece, &out);
    ck_assert_str_eq(out.p, want);
    sb_free(&out);
  }
  {
    /* no separator: a filter's header goes before the first body line */
    smtpd_milter_edit a = {SMTPD_MILTER_EDIT_ADDHEADER, 0, 0, "X-New",
                           " v", NULL, 0};
    sbuf out = {0};
    rewrite(&a, 1, "A: 1\r\nnot a header\r\n", 21, 5, &out);
    ck_assert_str_eq(out.p, "A: 1\r\nX-New: v\r\nnot a header\r\n");
    sb_free(&out);
  }
  {
    /* body replaced, message that ended in its headers */
    smtpd_milter_edit b = {SMTPD_MILTER_EDIT_REPLBODY, 0, 0, NULL, NULL,
                           (const uint8_t *)"new\r\n", 5};
    sbuf out = {0};
    rewrite(&b, 1, "A: 1", 4, 2, &out);
    ck_assert_str_eq(out.p, "A: 1\r\n\r\nnew\r\n");
    sb_free(&out);
  }
}
END_TEST

START_TEST(test_parse_address)
{
  char host[128];
  int fam;
  uint16_t port;
  ck_assert_int_eq(smtpd_milter_parse_address("inet:127.0.0.1:8891", &fam,
                                              host, sizeof host, &port),
                   0);
  ck_assert_int_eq(fam, 4);
  ck_assert_str_eq(host, "127.0.0.1");
  ck_assert_uint_eq(port, 8891);
  ck_assert_int_eq(smtpd_milter_parse_address("inet:[::1]:25", &fam, host,
                                              sizeof host, &port),
                   0);
  ck_assert_int_eq(fam, 6);
  ck_assert_str_eq(host, "::1");
  ck_assert_int_eq(smtpd_milter_parse_address("inet:8891@localhost", &fam,
                                              host, sizeof host, &port),
                   0);
  ck_assert_str_eq(host, "localhost");
  ck_assert_uint_eq(port, 8891);
  ck_assert_int_eq(smtpd_milter_parse_address("unix:/run/f.sock", &fam, host,
                                              sizeof host, &port),
                   0);
  ck_assert_int_eq(fam, 'U');
  ck_assert_str_eq(host, "/run/f.sock");
  ck_assert_int_lt(smtpd_milter_parse_address("inet:host", &fam, host,
                                              sizeof host, &port),
                   0);
  ck_assert_int_lt(smtpd_milter_parse_address("inet:h:0", &fam, host,
                                              sizeof host, &port),
                   0);
  ck_assert_int_lt(smtpd_milter_parse_address("inet:h:70000", &fam, host,
                                              sizeof host, &port),
                   0);
}
END_TEST

/* every allocation fails in turn: no leak, no crash, an answer */
typedef struct failmem {
  long countdown;
} failmem;
static void *f_malloc(size_t n, void *c)
{
  failmem *f = c;
  if (f->countdown-- == 0)
    return NULL;
  return malloc(n);
}
static void f_free(void *p, void *c)
{
  (void)c;
  free(p);
}
static void *f_calloc(size_t a, size_t b, void *c)
{
  failmem *f = c;
  if (f->countdown-- == 0)
    return NULL;
  return calloc(a, b);
}
static void *f_realloc(void *p, size_t n, void *c)
{
  failmem *f = c;
  if (f->countdown-- == 0)
    return NULL;
  return realloc(p, n);
}

START_TEST(test_failing_allocator)
{
  long k;
  for (k = 0; k < 400; k++) {
    failmem fm = {k};
    smtpd_mem mem = {&fm, f_malloc, f_free, f_calloc, f_realloc};
    host h;
    int r;
    memset(&h, 0, sizeof h);
    host_init(&h, 1, NULL);
    smtpd_milter_conf_del(h.mc);
    h.mc = NULL;
    r = smtpd_milter_conf_new(&h.mc, &mem);
    if (r == 0)
      r = smtpd_milter_conf_add(h.mc, "inet:127.0.0.1:1", SMTPD_MILTER_TEMPFAIL);
    if (r == 0)
      r = smtpd_milter_chain_new(&h.ch, h.mc, h.s);
    if (r != 0) {
      ck_assert_int_eq(r, SMTPD_ERR_NOMEM);
      smtpd_session_del(h.s);
      smtpd_milter_conf_del(h.mc);
      smtpd_config_del(h.cfg);
      continue;
    }
    h.p[0].script = all_edits;
    smtpd_milter_chain_set_reader(h.ch, reader, &h);
    smtpd_milter_chain_set_eom_hook(h.ch, eom_hook, &h);
    smtpd_milter_connected(smtpd_milter_chain_get(h.ch, 0));
    smtpd_session_start(h.s);
    send_message(&h, "RCPT TO:<b@example.org>\r\n");
    ck_assert(h.replies.len > 0);
    host_free(&h);
  }
}
END_TEST

int main(void)
{
  Suite *s = suite_create("milter");
  TCase *tc = tcase_create("client");
  SRunner *sr;
  int failed;
  tcase_add_test(tc, test_negotiation);
  tcase_add_test(tc, test_version_and_flags_refused);
  tcase_add_loop_test(tc, test_full_conversation, 0, 2);
  tcase_add_test(tc, test_connect_waits_for_filter);
  tcase_add_test(tc, test_per_recipient);
  tcase_add_test(tc, test_replycode);
  tcase_add_test(tc, test_accept_stops_asking);
  tcase_add_loop_test(tc, test_discard, 0, 3);
  tcase_add_loop_test(tc, test_eom_verdicts, 0, 4);
  tcase_add_test(tc, test_progress_and_timeouts);
  tcase_add_test(tc, test_body_chunks_and_skip);
  tcase_add_test(tc, test_no_reply_flags);
  tcase_add_test(tc, test_skip_stage_flags);
  tcase_add_test(tc, test_setsymlist_and_leadspc);
  tcase_add_test(tc, test_every_edit);
  tcase_add_loop_test(tc, test_edit_refused, 0, 2);
  tcase_add_test(tc, test_chain_sees_predecessors);
  tcase_add_loop_test(tc, test_faults_and_policy, 0, 4);
  tcase_add_test(tc, test_rset_aborts_and_quit);
  tcase_add_test(tc, test_splitter);
  tcase_add_test(tc, test_splitter_section_limit);
  tcase_add_test(tc, test_rewriter_semantics);
  tcase_add_test(tc, test_parse_address);
  tcase_add_test(tc, test_failing_allocator);
  suite_add_tcase(s, tc);
  sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
