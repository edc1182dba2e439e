/*
 * run.c - driving a session through a parsed transcript: the
 * configuration, the session's life (start, packets fed with the chosen
 * split, output read at expectation groups, host actions), deferred
 * decisions (a scripted resume, or the host's opts.on_paused), and the
 * checks at the end (every byte read, every decision used, nothing left
 * paused).
 *
 *   smtpd_tr_run_parsed  one run of a parsed transcript
 *   execute        walk the items
 *   pump           feed queued client bytes while the session reads them
 *   settle_pause   a pause: resume it (scripted) or ask the host's hook
 */
#include <stdio.h>
#include <string.h>

#include "tr_internal.h"

static unsigned line_at(const tr_run *r, size_t off) {
  size_t i;
  unsigned line = r->cur_line;
  for (i = 0; i < r->nlm && r->lm[i].off <= off; i++)
    line = r->lm[i].line;
  return line;
}

/* after_call - check what a call that may run decision callbacks
 * (start, feed, resume) returned against the ABORT verdicts given: after
 * ABORT it must return SMTPD_ERR_CALLBACK_FAILURE, which ends the session
 * for the driver (logged as the driver event "aborted"; client bytes not
 * yet fed are dropped, as a host closing the connection would). Returns 1
 * when the caller must stop (aborted or failed), else 0. */
static int after_call(tr_run *r, long rc, const char *what) {
  char act[64];
  if (r->abort_given && !r->aborted) {
    if (rc == SMTPD_ERR_CALLBACK_FAILURE) {
      r->aborted = 1;
      r->qpos = r->q.len;
      smtpd_tr_log_event(r, "aborted");
      return 1;
    }
    if (rc < 0)
      snprintf(act, sizeof act, "%s", smtpd_strerror((int)rc));
    else
      snprintf(act, sizeof act, "%ld", rc);
    smtpd_tr_fail(r, r->cur_line, smtpd_strerror(SMTPD_ERR_CALLBACK_FAILURE),
                  act,
                  "a decision answered abort but %s did not return "
                  "SMTPD_ERR_CALLBACK_FAILURE",
                  what);
    return 1;
  }
  if (rc < 0) {
    smtpd_tr_fail(r, r->cur_line, NULL, smtpd_strerror((int)rc),
                  "%s failed: %s%s", what, smtpd_strerror((int)rc),
                  rc == SMTPD_ERR_CALLBACK_FAILURE
                      ? " (no decision answered abort)"
                      : "");
    return 1;
  }
  return 0;
}

/* resume - scripted mode: give the verdict for the deferred decision. */
static void resume(tr_run *r, int verdict, const tr_reply *rep,
                   unsigned line) {
  int rc;
  r->cur_line = line;
  if (!smtpd_session_is_paused(r->s)) {
    smtpd_tr_fail(r, line, "paused", "not paused",
                  "a callback returned DEFER but "
                  "the session is not paused");
    return;
  }
  r->deferred = 0;
  r->defer_item = NULL;
  smtpd_tr_apply_reply(r, rep);
  if (verdict == SMTPD_ABORT)
    r->abort_given = 1;
  rc = smtpd_session_resume(r->s, (smtpd_verdict)verdict);
  after_call(r, rc, "smtpd_session_resume");
}

/* ask_host - host mode: the session is paused for a deferral of the
 * host's callbacks; let opts.on_paused resume it. Returns 1 when the
 * session stays paused (held, or a failure), 0 when it was resumed. */
static int ask_host(tr_run *r) {
  int rc;
  r->hook_asked = 1;
  if (!smtpd_session_is_paused(r->s)) {
    smtpd_tr_fail(r, r->cur_line, "paused", "not paused",
                  "a host callback "
                  "returned SMTPD_DEFER but the session is not paused");
    return 1;
  }
  if (r->opts->on_paused == NULL) {
    smtpd_tr_fail(r, r->cur_line, "(opts.on_paused)", "SMTPD_DEFER",
                  "a host callback deferred its decision, but there is no "
                  "opts.on_paused hook to resume the session");
    return 1;
  }
  smtpd_tr_trace(r, "(on_paused)", NULL, 0);
  /* callbacks that the hook's resume runs are not "while paused" */
  r->deferred = 0;
  rc = r->opts->on_paused(r->s, r->opts->user_data);
  if (smtpd_session_user_data(r->s) != (void *)r) {
    smtpd_session_set_user_data(r->s, r);
    smtpd_tr_fail(r, r->cur_line, NULL, "on_paused",
                  "opts.on_paused changed the "
                  "session's user data; with host callbacks it belongs to the "
                  "driver");
    return 1;
  }
  if (r->status != SMTPD_OK)
    return 1;
  if (rc == SMTPD_TRANSCRIPT_HOLD) {
    if (r->deferred || !smtpd_session_is_paused(r->s)) {
      smtpd_tr_fail(r, r->cur_line, "paused", "resumed",
                    "opts.on_paused returned "
                    "SMTPD_TRANSCRIPT_HOLD but resumed the session");
      return 1;
    }
    r->deferred = 1; /* held until a bare !resume */
    return 1;
  }
  if (rc == SMTPD_ERR_CALLBACK_FAILURE)
    r->abort_given = 1; /* resumed with SMTPD_ABORT */
  if ((rc != SMTPD_OK || r->abort_given) &&
      after_call(r, rc, "smtpd_session_resume (from opts.on_paused)"))
    return 1;
  if (rc > 0) {
    smtpd_tr_fail(r, r->cur_line, "0 or SMTPD_TRANSCRIPT_HOLD",
                  "a positive value", "opts.on_paused returned %d", rc);
    return 1;
  }
  if (!r->deferred && smtpd_session_is_paused(r->s)) {
    smtpd_tr_fail(
        r, r->cur_line, "resumed", "paused",
        "opts.on_paused returned 0 "
        "but the session is still paused (call smtpd_session_resume, or "
        "return SMTPD_TRANSCRIPT_HOLD)");
    return 1;
  }
  return 0;
}

/* settle_pause - a decision is deferred: resume it now when the
 * transcript or the host says so. Returns 1 when it stays paused. */
static int settle_pause(tr_run *r) {
  if (r->host) {
    if (r->hook_asked)
      return 1; /* held: asked again at a bare !resume */
    return ask_host(r);
  }
  if (r->defer_item->autoverdict < 0) {
    if (!smtpd_session_is_paused(r->s))
      smtpd_tr_fail(r, r->cur_line, "paused", "not paused",
                    "a callback returned "
                    "DEFER but the session is not paused");
    return 1; /* held until !resume */
  }
  resume(r, r->defer_item->autoverdict, &r->defer_item->rep, r->cur_line);
  return 0;
}

/* pump - feed queued client bytes while the session reads them. */
static void pump(tr_run *r) {
  size_t b = 0;
  while (r->status == SMTPD_OK) {
    size_t end, n;
    ptrdiff_t got;
    if (r->deferred) {
      if (settle_pause(r))
        return;
      continue;
    }
    if (r->qpos >= r->q.len)
      return;
    if (r->aborted || smtpd_session_is_closing(r->s)) {
      r->qpos = r->q.len; /* the client's bytes are never read */
      return;
    }
    while (b < r->nbounds && r->bounds[b] <= r->qpos)
      b++;
    end = b < r->nbounds ? r->bounds[b] : r->q.len;
    n = end - r->qpos;
    if (r->split == SMTPD_TRANSCRIPT_SPLIT_BYTE)
      n = 1;
    else if (r->split == SMTPD_TRANSCRIPT_SPLIT_CHUNK && n > r->chunk)
      n = r->chunk;
    r->cur_line = line_at(r, r->qpos);
    got = smtpd_session_feed(r->s, r->q.p + r->qpos, n);
    if (r->status != SMTPD_OK)
      return;
    if ((got < 0 || r->abort_given) &&
        after_call(r, (long)got, "smtpd_session_feed"))
      return;
    if ((size_t)got > n) {
      smtpd_tr_fail(r, r->cur_line, NULL, NULL,
                    "smtpd_session_feed took more "
                    "bytes than given");
      return;
    }
    r->qpos += (size_t)got;
    if ((size_t)got < n && !r->deferred && !smtpd_session_is_closing(r->s)) {
      size_t drained;
      if (smtpd_session_is_paused(r->s)) {
        smtpd_tr_fail(r, r->cur_line, NULL, NULL,
                      "the session paused though no "
                      "decision was deferred");
        return;
      }
      /* output backlog: a real client reads it, then the host feeds on */
      drained = smtpd_tr_drain(r);
      if (got == 0 && drained == 0) {
        if (!smtpd_session_want_read(r->s)) {
          r->qpos = end; /* e.g. waiting for a TLS handshake: unread */
        } else {
          smtpd_tr_fail(r, r->cur_line, NULL, NULL,
                        "smtpd_session_feed took no "
                        "input although the session wants to read");
          return;
        }
      }
    }
  }
}

/* end_packet - the packet being built is complete: feed it. */
static void end_packet(tr_run *r, int *open) {
  if (!*open)
    return;
  *open = 0;
  if (r->nbounds == r->capbounds) {
    size_t cap = r->capbounds ? r->capbounds * 2 : 32;
    size_t *nb = smtpd_tr_realloc(r->mem, r->bounds, cap * sizeof *nb);
    if (nb == NULL) {
      smtpd_tr_nomem(r);
      return;
    }
    r->bounds = nb;
    r->capbounds = cap;
  }
  r->bounds[r->nbounds++] = r->q.len;
  pump(r);
}

static void add_client(tr_run *r, const tr_item *it) {
  const tr_parsed *p = r->p;
  if (r->nlm == r->caplm) {
    size_t cap = r->caplm ? r->caplm * 2 : 32;
    tr_linemark *nl = smtpd_tr_realloc(r->mem, r->lm, cap * sizeof *nl);
    if (nl == NULL) {
      smtpd_tr_nomem(r);
      return;
    }
    r->lm = nl;
    r->caplm = cap;
  }
  r->lm[r->nlm].off = r->q.len;
  r->lm[r->nlm].line = it->line;
  r->nlm++;
  smtpd_tr_trace(r, it->raw ? "C~ " : "C: ", smtpd_tr_P(p, it->data),
                 it->data.len);
  if (smtpd_tr_buf_add(r->mem, &r->q, smtpd_tr_P(p, it->data), it->data.len) <
          0 ||
      (!it->raw && smtpd_tr_buf_add(r->mem, &r->q, "\r\n", 2) < 0))
    smtpd_tr_nomem(r);
}

static void do_action(tr_run *r, const tr_item *it) {
  const tr_parsed *p = r->p;
  int rc = 0;
  char a[256], b[256];
  r->cur_line = it->line;
  switch (it->sub) {
  case ACT_TIMEOUT:
    smtpd_tr_trace(r, "!timeout", NULL, 0);
    rc = smtpd_session_timeout_expired(r->s);
    break;
  case ACT_TLS: {
    smtpd_tls_info info;
    memset(&info, 0, sizeof info);
    snprintf(a, sizeof a, "%.*s", (int)it->data.len, it->data.set
             ? (const char *)smtpd_tr_P(p, it->data) : "");
    snprintf(b, sizeof b, "%.*s", (int)it->data2.len, it->data2.set
             ? (const char *)smtpd_tr_P(p, it->data2) : "");
    info.protocol = it->data.set ? a : "TLSv1.3";
    info.cipher = it->data2.set ? b : "TLS_AES_256_GCM_SHA384";
    info.cipher_bits = (int)it->num;
    info.alg_bits = (int)it->num;
    smtpd_tr_trace(r, "!tls", NULL, 0);
    rc = smtpd_session_tls_established(r->s, &info);
    break;
  }
  case ACT_CLOSE:
    snprintf(a, sizeof a, "%.*s", (int)it->data.len, it->data.set
             ? (const char *)smtpd_tr_P(p, it->data) : "");
    snprintf(b, sizeof b, "%.*s", (int)it->data2.len, it->data2.set
             ? (const char *)smtpd_tr_P(p, it->data2) : "");
    smtpd_tr_trace(r, "!close", NULL, 0);
    rc = smtpd_session_close(r->s, it->data.set ? a : NULL,
                             it->data2.set ? b : NULL);
    break;
  case ACT_RESUME:
    smtpd_tr_trace(r, "!resume", NULL, 0);
    if (!r->deferred) {
      smtpd_tr_fail(r, it->line, NULL, NULL,
                    "!resume but no decision is "
                    "deferred");
      return;
    }
    if (r->host) {
      if (ask_host(r))
        return; /* held again, or failed */
    } else {
      resume(r, it->b, &it->rep, it->line);
    }
    break;
  }
  if (rc < 0) {
    smtpd_tr_fail(r, it->line, NULL, smtpd_strerror(rc),
                  "host action failed: %s", smtpd_strerror(rc));
    return;
  }
  pump(r);
}

/* apply_config - the configuration directives, on the driver's config. */
static int apply_config(tr_run *r) {
  const tr_parsed *p = r->p;
  size_t i;
  char *s1 = NULL, *s2 = NULL;
  int rc = SMTPD_OK;
  for (i = 0; i < p->n && rc == SMTPD_OK; i++) {
    const tr_item *it = &p->items[i];
    if (it->type != IT_CFG)
      continue;
    s1 = s2 = NULL;
    if (it->data.set) {
      s1 = smtpd_tr_malloc(r->mem, it->data.len + 1);
      if (s1 == NULL)
        return SMTPD_ERR_NOMEM;
      memcpy(s1, smtpd_tr_P(p, it->data), it->data.len);
      s1[it->data.len] = '\0';
    }
    if (it->data2.set) {
      s2 = smtpd_tr_malloc(r->mem, it->data2.len + 1);
      if (s2 == NULL) {
        smtpd_tr_free(r->mem, s1);
        return SMTPD_ERR_NOMEM;
      }
      memcpy(s2, smtpd_tr_P(p, it->data2), it->data2.len);
      s2[it->data2.len] = '\0';
    }
    switch (it->sub) {
    case CFG_SASL:
      if (r->sasl == NULL) {
        r->sasl_cred = s1;
        s1 = NULL;
        rc = smtpd_sasl_builtin_new(&r->sasl, r->mem, smtpd_tr_sasl_verify, r);
        if (rc == SMTPD_OK)
          rc = smtpd_config_set_sasl(r->cfg, r->sasl);
      }
      break;
    case CFG_HOSTNAME: rc = smtpd_config_set_hostname(r->cfg, s1); break;
    case CFG_BANNER: rc = smtpd_config_set_banner(r->cfg, s1); break;
    case CFG_EHLO_KEYWORD:
      rc = smtpd_config_add_ehlo_keyword(r->cfg, s1);
      break;
    case CFG_PARAM:
      rc = smtpd_config_add_param(r->cfg, (unsigned)it->a, s1,
                                  (smtpd_param_value)it->b);
      break;
    case CFG_COMMAND:
      rc = smtpd_config_add_command(r->cfg, s1, (unsigned)it->a);
      break;
    case CFG_LIMIT:
      rc = smtpd_config_set_limit(r->cfg, (smtpd_limit)it->a, it->num);
      break;
    case CFG_TIMEOUT:
      rc = smtpd_config_set_timeout(r->cfg, (smtpd_timeout)it->a,
                                    (uint32_t)it->num);
      break;
    case CFG_OPTION:
      rc = smtpd_config_set_option(r->cfg, (smtpd_option)it->a, it->b);
      break;
    case CFG_LINE_ENDING:
      rc = smtpd_config_set_line_ending(r->cfg, (smtpd_line_ending)it->a);
      break;
    case CFG_SYNC:
      rc = smtpd_config_set_sync_policy(r->cfg, (smtpd_sync_policy)it->a);
      break;
    case CFG_LONG_LINE:
      rc = smtpd_config_set_long_line(r->cfg, (smtpd_long_line)it->a);
      break;
    default:
      break; /* session-level items are applied later */
    }
    smtpd_tr_free(r->mem, s1);
    smtpd_tr_free(r->mem, s2);
    if (rc < 0 && rc != SMTPD_ERR_NOMEM) {
      if (r->res) {
        r->res->line = it->line;
        snprintf(r->res->message, sizeof r->res->message,
                 "line %u: the configuration refused this setting: %s",
                 it->line, smtpd_strerror(rc));
      }
      return SMTPD_ERR_INVALID_ARGUMENT;
    }
  }
  return rc;
}

static int apply_session_config(tr_run *r) {
  const tr_parsed *p = r->p;
  size_t i;
  int rc = SMTPD_OK;
  for (i = 0; i < p->n && rc == SMTPD_OK; i++) {
    const tr_item *it = &p->items[i];
    char a[512], b[512];
    if (it->type != IT_CFG)
      continue;
    if (it->sub == CFG_CLIENT) {
      snprintf(a, sizeof a, "%.*s", (int)it->data.len,
               (const char *)smtpd_tr_P(p, it->data));
      snprintf(b, sizeof b, "%.*s", (int)it->data2.len,
               it->data2.set ? (const char *)smtpd_tr_P(p, it->data2) : "");
      rc = smtpd_session_set_client(r->s, a, it->data2.set ? b : NULL);
    } else if (it->sub == CFG_IMPLICIT_TLS) {
      rc = smtpd_session_set_implicit_tls(r->s);
    } else if (it->sub == CFG_PROXY) {
      rc = smtpd_session_set_proxy(r->s);
    }
    if (rc < 0 && rc != SMTPD_ERR_NOMEM) {
      if (r->res) {
        r->res->line = it->line;
        snprintf(r->res->message, sizeof r->res->message,
                 "line %u: the session refused this setting: %s", it->line,
                 smtpd_strerror(rc));
      }
      return SMTPD_ERR_INVALID_ARGUMENT;
    }
  }
  return rc;
}

static void start(tr_run *r, int *started, unsigned line) {
  int rc;
  if (*started)
    return;
  *started = 1;
  r->cur_line = line;
  rc = smtpd_session_start(r->s);
  if (r->status != SMTPD_OK)
    return;
  if ((rc < 0 || r->abort_given) &&
      after_call(r, rc, "smtpd_session_start") && !r->aborted)
    return;
  pump(r);
}

/* execute - walk the items (config already applied). */
static void execute(tr_run *r) {
  const tr_parsed *p = r->p;
  size_t i, group = 0;
  int started = 0, packet = 0, in_group = 0;
  unsigned last_line = 0;

  for (i = 0; i < p->n && r->status == SMTPD_OK; i++) {
    const tr_item *it = &p->items[i];
    last_line = it->line;
    switch (it->type) {
    case IT_CFG:
      break;
    case IT_DECIDE:
      if (it->a) {
        r->pushed[r->npushed++] = i;
      } else {
        r->deflt[it->sub] = (long)i;
      }
      break;
    case IT_EFFECTS:
      r->pushed[r->npushed++] = i;
      break;
    case IT_BREAK:
      end_packet(r, &packet);
      break;
    case IT_C:
      start(r, &started, it->line);
      if (in_group) {
        smtpd_tr_check_group(r, group, i);
        in_group = 0;
      }
      if (r->status != SMTPD_OK)
        break;
      packet = 1;
      add_client(r, it);
      break;
    case IT_ACTION:
      start(r, &started, it->line);
      end_packet(r, &packet);
      if (in_group) {
        smtpd_tr_check_group(r, group, i);
        in_group = 0;
      }
      if (r->status == SMTPD_OK)
        do_action(r, it);
      break;
    default: /* expectation */
      start(r, &started, it->line);
      end_packet(r, &packet);
      if (!in_group) {
        in_group = 1;
        group = i;
      }
      break;
    }
  }
  if (r->status != SMTPD_OK)
    return;
  start(r, &started, last_line);
  end_packet(r, &packet);
  if (in_group)
    smtpd_tr_check_group(r, group, p->n);
  if (r->status != SMTPD_OK)
    return;
  r->cur_line = last_line;
  smtpd_tr_drain(r);
  if (r->out.len) {
    char act[SMTPD_TRANSCRIPT_TEXT_MAX];
    size_t adv;
    smtpd_tr_show_line(r->out.p, r->out.len, 0, act, sizeof act, &adv);
    smtpd_tr_fail(r, last_line, "(end of transcript)", act,
                  "server output after "
                  "the last expectation (add S: lines)");
    return;
  }
  if (r->deferred) {
    smtpd_tr_fail(r, r->host ? last_line : r->defer_item->line,
                  r->host ? "(resumed)" : "!resume", "(end of transcript)",
                  "a deferred decision was never resumed");
    return;
  }
  for (i = 0; i < r->npushed; i++)
    if (!r->used[r->pushed[i]]) {
      const tr_item *it = &p->items[r->pushed[i]];
      smtpd_tr_fail(r, it->line, smtpd_tr_ev_names[it->sub], "(no such event)",
                    "this %s was never used: no \"%s\" event came after it",
                    it->type == IT_EFFECTS ? "@effects" : "decision",
                    smtpd_tr_ev_names[it->sub]);
      return;
    }
}

int smtpd_tr_run_parsed(tr_parsed *p, const smtpd_transcript_opts *opts,
                  smtpd_transcript_result *res) {
  tr_run r;
  smtpd_callbacks cb;
  int rc, k;

  memset(&r, 0, sizeof r);
  r.mem = p->mem;
  r.p = p;
  r.res = res;
  r.opts = opts;
  r.split = opts->split;
  r.chunk = opts->chunk ? opts->chunk : 1;
  if (p->pinned && !opts->ignore_pinned_split) {
    r.split = p->split;
    r.chunk = p->chunk ? p->chunk : 1;
  }
  if (res)
    smtpd_transcript_split_name(r.split, r.chunk, res->split,
                                sizeof res->split);
  for (k = 0; k < EV_COUNT_; k++)
    r.deflt[k] = -1;
  r.pushed = smtpd_tr_malloc(r.mem, (p->n ? p->n : 1) * sizeof *r.pushed);
  r.used = smtpd_tr_malloc(r.mem, p->n ? p->n : 1);
  if (r.pushed == NULL || r.used == NULL) {
    rc = SMTPD_ERR_NOMEM;
    goto out;
  }
  memset(r.used, 0, p->n ? p->n : 1);
  if (opts->callbacks) {
    rc = smtpd_tr_host_callbacks(&r, opts->callbacks);
    if (rc < 0) {
      if (res)
        snprintf(res->message, sizeof res->message, "opts.callbacks: "
                 "version %u %s", opts->callbacks->version,
                 rc == SMTPD_ERR_UNSUPPORTED ? "is newer than this library"
                                             : "is not valid");
      goto out;
    }
  }

  if (opts->config) {
    r.cfg = opts->config;
  } else {
    rc = smtpd_config_new(&r.cfg, r.mem);
    if (rc < 0)
      goto out;
    r.own_cfg = 1;
    rc = apply_config(&r);
    if (rc < 0)
      goto out;
    if (opts->sasl) {
      rc = smtpd_config_set_sasl(r.cfg, opts->sasl);
      if (rc < 0)
        goto out;
    }
  }
  smtpd_tr_callbacks(&r, &cb);
  rc = smtpd_session_new(&r.s, r.cfg, &cb, &r);
  if (rc < 0)
    goto out;
  rc = apply_session_config(&r);
  if (rc < 0)
    goto out;
  execute(&r);
  rc = r.status;
out:
  smtpd_session_del(r.s);
  if (r.own_cfg)
    smtpd_config_del(r.cfg);
  smtpd_tr_buf_free(r.mem, &r.q);
  smtpd_tr_buf_free(r.mem, &r.out);
  smtpd_tr_buf_free(r.mem, &r.ev);
  smtpd_tr_buf_free(r.mem, &r.body);
  smtpd_tr_buf_free(r.mem, &r.last_body);
  smtpd_sasl_builtin_del(r.sasl);
  smtpd_tr_free(r.mem, r.sasl_cred);
  smtpd_tr_free(r.mem, r.bounds);
  smtpd_tr_free(r.mem, r.lm);
  smtpd_tr_free(r.mem, r.pushed);
  smtpd_tr_free(r.mem, r.used);
  if (rc == SMTPD_ERR_NOMEM && res && res->message[0] == '\0')
    snprintf(res->message, sizeof res->message, "out of memory");
  return rc;
}
