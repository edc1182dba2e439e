/*
 * check.c - expectation groups: what the session did since the previous
 * group, compared with the group's lines.
 *
 *   smtpd_tr_check_group  one group: server lines (S: exact or with \*
 *                         wildcards, S+ / S- keywords of a multi-line
 *                         reply), CLOSED, then events (E: / E!), body
 *                         lines (B:), timeouts (T:)
 *   glob_word             a pattern word against a text word (\* = 1+
 *                         bytes)
 *   pat_match             a pattern against a whole line, or a prefix of
 *                         its words
 *   reply_has             an EHLO keyword line in a reply
 *   smtpd_tr_show_line    one server line as an "S: ..." text for reports
 *   smtpd_tr_drain        read all queued output into the run's log
 */
#include <stdio.h>
#include <string.h>

#include "tr_internal.h"

/* smtpd_tr_drain - read and consume all queued output (byte by byte in the byte
 * split, which also exercises partial consumption). Returns bytes read. */
size_t smtpd_tr_drain(tr_run *r) {
  size_t total = 0;
  for (;;) {
    const uint8_t *d = NULL;
    size_t n = smtpd_session_output(r->s, &d), take;
    if (n == 0)
      break;
    if (d == NULL) {
      smtpd_tr_fail(r, r->cur_line, NULL, NULL,
                    "smtpd_session_output returned "
                    "%lu bytes and a NULL pointer",
                    (unsigned long)n);
      break;
    }
    take = r->split == SMTPD_TRANSCRIPT_SPLIT_BYTE ? 1 : n;
    if (smtpd_tr_buf_add(r->mem, &r->out, d, take) < 0) {
      smtpd_tr_nomem(r);
      break;
    }
    if (smtpd_session_consume(r->s, take) < 0) {
      smtpd_tr_fail(r, r->cur_line, NULL, NULL, "smtpd_session_consume failed");
      break;
    }
    total += take;
  }
  return total;
}

void smtpd_tr_show_line(const unsigned char *b, size_t len, size_t pos,
                        char *dst, size_t cap, size_t *adv) {
  tr_tbuf t;
  size_t i = pos;
  while (i + 1 < len && !(b[i] == '\r' && b[i + 1] == '\n'))
    i++;
  smtpd_tr_tb_init(&t, dst, cap);
  if (i + 1 < len) {
    smtpd_tr_tb_str(&t, "S: ");
    smtpd_tr_tb_esc(&t, b + pos, i - pos);
    *adv = i + 2 - pos;
  } else {
    smtpd_tr_tb_str(&t, "S~ ");
    smtpd_tr_tb_esc(&t, b + pos, len - pos);
    *adv = len - pos;
  }
}

static void show_item(const tr_run *r, const tr_item *it, const char *tag,
                      char *dst, size_t cap) {
  tr_tbuf t;
  smtpd_tr_tb_init(&t, dst, cap);
  smtpd_tr_tb_str(&t, tag);
  if (it->wild)
    smtpd_tr_tb_pat(&t, smtpd_tr_P(r->p, it->data), it->data.len);
  else
    smtpd_tr_tb_esc(&t, smtpd_tr_P(r->p, it->data), it->data.len);
}

/* ---- patterns ---------------------------------------------------------- */

/* glob_word - pattern word p[0..pn) (encoded: 0 0 a NUL, 0 '*' a
 * wildcard) against t[0..tn), which holds no space. A wildcard takes one
 * or more bytes. The usual backtracking to the last wildcard (a wildcard
 * is "one byte, then any run"), linear in practice, no allocation. */
static int glob_word(const unsigned char *p, size_t pn, const unsigned char *t,
                     size_t tn) {
  size_t pi = 0, ti = 0, star_p = 0, star_t = 0;
  int star = 0;
  while (ti < tn) {
    if (pi + 1 < pn && p[pi] == 0 && p[pi + 1] == TR_WILD) {
      pi += 2;
      star = 1;
      star_p = pi;
      star_t = ++ti; /* its first byte */
      continue;
    }
    if (pi < pn) {
      unsigned char c = p[pi];
      size_t step = c == 0 ? 2 : 1;
      if (t[ti] == c) {
        pi += step;
        ti++;
        continue;
      }
    }
    if (!star)
      return 0;
    pi = star_p;
    ti = ++star_t; /* the wildcard takes one more byte */
  }
  return pi == pn;
}

/* next_word - [*i, end of word) of a space-separated text; the word ends
 * at a space (a literal space in a pattern). */
static size_t word_end(const unsigned char *b, size_t n, size_t i,
                       int pattern) {
  while (i < n && b[i] != ' ') {
    if (pattern && b[i] == 0)
      i++; /* the second byte of a pair is never a space */
    i++;
  }
  return i < n ? i : n;
}

/* pat_match - pattern p (encoded) against text t: the whole text
 * (prefix 0), or its first words (prefix 1: the match ends at the end of
 * t or before a space, as E: lines match events). A wildcard never
 * matches a space, so the words line up one to one. */
static int pat_match(const unsigned char *p, size_t pn, const unsigned char *t,
                     size_t tn, int prefix) {
  size_t pi = 0, ti = 0;
  for (;;) {
    size_t pe = word_end(p, pn, pi, 1), te = word_end(t, tn, ti, 0);
    if (!glob_word(p + pi, pe - pi, t + ti, te - ti))
      return 0;
    if (pe >= pn)
      return te >= tn || prefix;
    if (te >= tn)
      return 0; /* the pattern has more words */
    pi = pe + 1;
    ti = te + 1;
  }
}

/* ev_match - event e matches pattern item it: equal, or it + ' ' ... */
static int ev_match(const tr_run *r, const tr_item *it,
                    const unsigned char *e, size_t en) {
  const unsigned char *pt = smtpd_tr_P(r->p, it->data);
  size_t pn = it->data.len;
  if (it->wild)
    return pat_match(pt, pn, e, en, 1);
  if (en < pn || memcmp(e, pt, pn) != 0)
    return 0;
  return en == pn || e[pn] == ' ';
}

/* ---- EHLO keywords ------------------------------------------------------ */

/* ci_eq - case-insensitive equality of two words. */
static int ci_eq(const unsigned char *a, size_t an, const unsigned char *b,
                 size_t bn) {
  size_t i;
  if (an != bn)
    return 0;
  for (i = 0; i < an; i++) {
    unsigned char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = (unsigned char)(x - 32);
    if (y >= 'a' && y <= 'z') y = (unsigned char)(y - 32);
    if (x != y)
      return 0;
  }
  return 1;
}

/* kw_line_has - the keyword line text l[0..ln) ("AUTH PLAIN LOGIN") has
 * keyword kw's first word as its first word and each further word of kw
 * among its own further words. */
static int kw_line_has(const unsigned char *l, size_t ln,
                       const unsigned char *kw, size_t kn) {
  size_t ki = 0, li = 0, ke, le;
  while (ki < kn && kw[ki] == ' ')
    ki++;
  ke = word_end(kw, kn, ki, 0);
  le = word_end(l, ln, 0, 0);
  if (!ci_eq(kw + ki, ke - ki, l, le))
    return 0;
  for (ki = ke; ki < kn; ki = ke) {
    int found = 0;
    while (ki < kn && kw[ki] == ' ')
      ki++;
    if (ki >= kn)
      break;
    ke = word_end(kw, kn, ki, 0);
    for (li = le; li < ln && !found;) {
      size_t e;
      while (li < ln && l[li] == ' ')
        li++;
      e = word_end(l, ln, li, 0);
      found = e > li && ci_eq(kw + ki, ke - ki, l + li, e - li);
      li = e;
    }
    if (!found)
      return 0;
  }
  return 1;
}

/* reply_end - the end of the multi-line reply whose lines start at
 * out[pos]: after the CRLF of its last line ("NNN " or "NNN"), or 0 when
 * the output ends before it. */
static size_t reply_end(const tr_buf *out, size_t pos) {
  while (pos < out->len) {
    size_t e = pos;
    while (e + 1 < out->len && !(out->p[e] == '\r' && out->p[e + 1] == '\n'))
      e++;
    if (e + 1 >= out->len)
      return 0; /* no CRLF */
    if (e - pos < 4 || out->p[pos + 3] != '-')
      return e + 2;
    pos = e + 2;
  }
  return 0;
}

/* reply_has - a line of out[from, to) (keyword lines: the text after
 * "NNN-" / "NNN ") has keyword kw; *at receives that line's start. */
static int reply_has(const tr_buf *out, size_t from, size_t to,
                     const unsigned char *kw, size_t kn, size_t *at) {
  size_t pos = from;
  while (pos < to) {
    size_t e = pos;
    while (e + 1 < to && !(out->p[e] == '\r' && out->p[e + 1] == '\n'))
      e++;
    if (e - pos > 4 && kw_line_has(out->p + pos + 4, e - pos - 4, kw, kn)) {
      *at = pos;
      return 1;
    }
    pos = e + 2;
  }
  return 0;
}

/* keywords_text - the keyword lines of out[from, to) for a report:
 * "keywords: PIPELINING, SIZE 10240000, ..." */
static void keywords_text(const tr_buf *out, size_t from, size_t to,
                          char *dst, size_t cap) {
  tr_tbuf t;
  size_t pos = from;
  smtpd_tr_tb_init(&t, dst, cap);
  smtpd_tr_tb_str(&t, "keywords: ");
  if (from >= to)
    smtpd_tr_tb_str(&t, "(none)");
  while (pos < to) {
    size_t e = pos;
    while (e + 1 < to && !(out->p[e] == '\r' && out->p[e + 1] == '\n'))
      e++;
    if (pos != from)
      smtpd_tr_tb_str(&t, ", ");
    if (e - pos > 4)
      smtpd_tr_tb_esc(&t, out->p + pos + 4, e - pos - 4);
    pos = e + 2;
  }
}

/* ---- a group ------------------------------------------------------------- */

/* window_text - the events of the current window for messages. */
static void window_text(const tr_run *r, char *dst, size_t cap) {
  tr_tbuf t;
  size_t i;
  smtpd_tr_tb_init(&t, dst, cap);
  if (r->ev.len == r->ev_mark) {
    smtpd_tr_tb_str(&t, "(no events)");
    return;
  }
  smtpd_tr_tb_str(&t, "events: ");
  for (i = r->ev_mark; i < r->ev.len;) {
    size_t n;
    const unsigned char *e = smtpd_tr_ev_next(r, &i, &n);
    smtpd_tr_tb_esc(&t, e, n);
    if (i < r->ev.len)
      smtpd_tr_tb_str(&t, "; ");
  }
}

static const char *timeout_name(int k) {
  return k == SMTPD_TIMEOUT_COMMAND ? "command"
       : k == SMTPD_TIMEOUT_DATA ? "data" : "none";
}

/* check_server - the S:, S+ and S- lines of the group against the output
 * read; *last_s receives the line of the last one. */
static void check_server(tr_run *r, size_t from, size_t to,
                         unsigned *last_s) {
  const tr_parsed *p = r->p;
  size_t i, apos = 0;
  size_t kw_from = 0, kw_to = 0; /* keyword lines of the current S+ run */
  int in_kw = 0;      /* inside a run of S+ / S- lines */
  int mid_reply = 0;  /* the last S: line was a "NNN-" continuation */
  char exp[SMTPD_TRANSCRIPT_TEXT_MAX], act[SMTPD_TRANSCRIPT_TEXT_MAX];

  for (i = from; i < to && r->status == SMTPD_OK; i++) {
    const tr_item *it = &p->items[i];
    if (it->type == IT_S) {
      size_t adv = 0, ln;
      const unsigned char *e = smtpd_tr_P(p, it->data);
      int ok;
      in_kw = 0;
      *last_s = it->line;
      show_item(r, it, "S: ", exp, sizeof exp);
      if (apos >= r->out.len) {
        smtpd_tr_fail(r, it->line, exp, "(nothing)",
                      "the server sent nothing "
                      "more");
        return;
      }
      smtpd_tr_show_line(r->out.p, r->out.len, apos, act, sizeof act, &adv);
      /* a whole line: its CRLF was sent */
      ok = adv >= 2 && r->out.p[apos + adv - 2] == '\r' &&
           r->out.p[apos + adv - 1] == '\n';
      ln = ok ? adv - 2 : 0;
      if (ok && it->wild)
        ok = pat_match(e, it->data.len, r->out.p + apos, ln, 0);
      else if (ok)
        ok = ln == it->data.len && memcmp(r->out.p + apos, e, ln) == 0;
      if (!ok) {
        smtpd_tr_fail(r, it->line, exp, act, "server reply differs");
        return;
      }
      mid_reply = ln >= 4 && r->out.p[apos + 3] == '-';
      apos += adv;
    } else if (it->type == IT_SKW) {
      const unsigned char *kw = smtpd_tr_P(p, it->data);
      size_t at = 0;
      int has;
      *last_s = it->line;
      {
        tr_tbuf t;
        smtpd_tr_tb_init(&t, exp, sizeof exp);
        smtpd_tr_tb_str(&t, it->a ? "S+ " : "S- ");
        smtpd_tr_tb_esc(&t, kw, it->data.len);
      }
      if (!in_kw) {
        /* the rest of the current reply, or the next whole reply */
        size_t end = apos < r->out.len ? reply_end(&r->out, apos) : 0;
        if (end == 0) {
          if (apos < r->out.len) {
            size_t adv;
            smtpd_tr_show_line(r->out.p, r->out.len, apos, act, sizeof act,
                               &adv);
          } else {
            snprintf(act, sizeof act, "(nothing)");
          }
          smtpd_tr_fail(r, it->line, exp, act,
                        "expected a complete multi-line "
                        "reply (EHLO) for S+ / S-");
          return;
        }
        kw_from = apos;
        if (!mid_reply) {
          /* a whole reply: its first line is the greeting, not a keyword */
          while (kw_from + 1 < end && !(r->out.p[kw_from] == '\r' &&
                                        r->out.p[kw_from + 1] == '\n'))
            kw_from++;
          kw_from += 2;
        }
        kw_to = end;
        apos = end;
        in_kw = 1;
        mid_reply = 0;
      }
      has = kw_from < kw_to &&
            reply_has(&r->out, kw_from, kw_to, kw, it->data.len, &at);
      if (it->a && !has) {
        keywords_text(&r->out, kw_from, kw_to, act, sizeof act);
        smtpd_tr_fail(r, it->line, exp, act,
                      "the reply does not have this EHLO "
                      "keyword");
        return;
      }
      if (!it->a && has) {
        size_t adv;
        smtpd_tr_show_line(r->out.p, r->out.len, at, act, sizeof act, &adv);
        smtpd_tr_fail(r, it->line, exp, act,
                      "the reply has this EHLO keyword, "
                      "but must not");
        return;
      }
    }
  }
  if (r->status == SMTPD_OK && apos < r->out.len) {
    size_t adv;
    smtpd_tr_show_line(r->out.p, r->out.len, apos, act, sizeof act, &adv);
    smtpd_tr_fail(r, *last_s ? *last_s : p->items[from].line,
                  "(no more output)", act, "unexpected server output");
  }
}

void smtpd_tr_check_group(tr_run *r, size_t from, size_t to) {
  const tr_parsed *p = r->p;
  const tr_item *items = p->items;
  size_t i, ecur = r->ev_mark, bpos = 0;
  unsigned last_line = items[from].line, closed_line = 0, last_s = 0;
  unsigned first_b = 0, last_b = 0;
  int nb = 0;
  char exp[SMTPD_TRANSCRIPT_TEXT_MAX], act[SMTPD_TRANSCRIPT_TEXT_MAX];
  int closing;

  r->cur_line = items[from].line;
  smtpd_tr_drain(r);
  if (r->status != SMTPD_OK)
    return;
  /* trace what the server said */
  if (r->opts->trace)
    for (i = 0; i < r->out.len;) {
      size_t adv;
      smtpd_tr_show_line(r->out.p, r->out.len, i, act, sizeof act, &adv);
      r->opts->trace(act, r->opts->trace_ctx);
      i += adv;
    }

  for (i = from; i < to; i++) {
    const tr_item *it = &items[i];
    if (it->type == IT_DECIDE || it->type == IT_EFFECTS ||
        it->type == IT_BREAK)
      continue;
    last_line = it->line;
    if (it->type == IT_CLOSED) {
      closed_line = it->line;
    } else if (it->type == IT_B) {
      if (!nb++)
        first_b = it->line;
      last_b = it->line;
    }
  }
  check_server(r, from, to, &last_s);
  if (r->status != SMTPD_OK)
    return;

  /* close state (an aborted session is over too) */
  closing = r->aborted || smtpd_session_is_closing(r->s);
  if (closed_line) {
    if (!closing) {
      smtpd_tr_fail(r, closed_line, "CLOSED", "(session open)",
                    "the session is "
                    "not closing");
      return;
    }
    if (smtpd_session_want_read(r->s) || smtpd_session_want_write(r->s)) {
      smtpd_tr_fail(r, closed_line, "CLOSED", "(still wants I/O)",
                    "the session "
                    "is closing but still wants to read or write");
      return;
    }
    if (!smtpd_session_is_done(r->s)) {
      smtpd_tr_fail(
          r, closed_line, "CLOSED", "(not done)",
          "the session is "
          "closing and its output was read, but smtpd_session_is_done() "
          "is false");
      return;
    }
    r->closed_asserted = 1;
  } else if (closing && !r->closed_asserted) {
    smtpd_tr_fail(r, last_line, "(session open)", "CLOSED",
                  "the session is "
                  "closing here (write CLOSED if that is expected)");
    return;
  }

  /* events and bodies, in file order */
  for (i = from; i < to && r->status == SMTPD_OK; i++) {
    const tr_item *it = &items[i];
    const unsigned char *pt = smtpd_tr_P(p, it->data);
    if (it->type == IT_E || it->type == IT_ENOT) {
      size_t k = it->type == IT_E ? ecur : r->ev_mark;
      int found = 0;
      while (k < r->ev.len) {
        size_t en;
        const unsigned char *e = smtpd_tr_ev_next(r, &k, &en);
        if (ev_match(r, it, e, en)) {
          found = 1;
          if (it->type == IT_E)
            ecur = k;
          break;
        }
      }
      if (it->type == IT_E && !found) {
        show_item(r, it, "E: ", exp, sizeof exp);
        window_text(r, act, sizeof act);
        smtpd_tr_fail(r, it->line, exp, act,
                      ecur == r->ev_mark ? "event did not fire"
                                         : "event did not fire (after the "
                                           "events matched above)");
      } else if (it->type == IT_ENOT && found) {
        show_item(r, it, "E! ", exp, sizeof exp);
        window_text(r, act, sizeof act);
        smtpd_tr_fail(r, it->line, exp, act, "event fired but must not");
      }
    } else if (it->type == IT_B) {
      const unsigned char *lb = r->last_body.p;
      size_t want = it->data.len + (it->raw ? 0 : 2);
      if (!r->have_last_body) {
        show_item(r, it, it->raw ? "B~ " : "B: ", exp, sizeof exp);
        smtpd_tr_fail(r, first_b, exp, "(no message)",
                      "no message was completed "
                      "(data-complete) since the previous check");
        return;
      }
      if (bpos + want > r->last_body.len ||
          (it->data.len && memcmp(lb + bpos, pt, it->data.len) != 0) ||
          (!it->raw && memcmp(lb + bpos + it->data.len, "\r\n", 2) != 0)) {
        tr_tbuf t;
        size_t e = bpos;
        while (e < r->last_body.len && lb[e] != '\n')
          e++;
        if (e < r->last_body.len)
          e++;
        show_item(r, it, it->raw ? "B~ " : "B: ", exp, sizeof exp);
        smtpd_tr_tb_init(&t, act, sizeof act);
        if (bpos >= r->last_body.len) {
          smtpd_tr_tb_str(&t, "(end of body)");
        } else {
          smtpd_tr_tb_str(&t, "B~ ");
          smtpd_tr_tb_esc(&t, lb + bpos, e - bpos);
        }
        smtpd_tr_fail(r, it->line, exp, act, "message body differs");
        return;
      }
      bpos += want;
    } else if (it->type == IT_T) {
      smtpd_timeout kind = SMTPD_TIMEOUT_NONE;
      uint32_t ms = smtpd_session_timeout(r->s, &kind);
      if ((int)kind != it->sub || (it->a && (uint64_t)ms != it->num)) {
        snprintf(exp, sizeof exp, "T: %s %llu", timeout_name(it->sub),
                 (unsigned long long)it->num);
        snprintf(act, sizeof act, "T: %s %lu", timeout_name((int)kind),
                 (unsigned long)ms);
        smtpd_tr_fail(r, it->line, exp, act, "timeout differs");
      }
    }
  }
  if (r->status == SMTPD_OK && nb && bpos < r->last_body.len) {
    tr_tbuf t;
    size_t e = bpos;
    while (e < r->last_body.len && r->last_body.p[e] != '\n')
      e++;
    if (e < r->last_body.len)
      e++;
    smtpd_tr_tb_init(&t, act, sizeof act);
    smtpd_tr_tb_str(&t, "B~ ");
    smtpd_tr_tb_esc(&t, r->last_body.p + bpos, e - bpos);
    smtpd_tr_fail(r, last_b, "(end of body)", act,
                  "message body has more data");
  }
  /* next window */
  r->out.len = 0;
  r->ev_mark = r->ev.len;
  r->have_last_body = 0;
}
