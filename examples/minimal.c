/* minimal.c - a complete SMTP server on libsmtpd: blocking sockets, one
 * client at a time, STARTTLS when given a certificate. Mail for anyone at
 * example.org is printed on stdout, other recipients are refused.
 * Usage: smtpd-minimal PORT [CERT.pem KEY.pem]. See docs/guide.md. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <smtpd/smtpd.h>
#include <smtpd/tls_gnutls.h>

/* Policy: a decision callback returns a verdict and may set the reply. */
static smtpd_verdict on_rcpt(smtpd_session *s, const smtpd_rcpt *r, void *ud) {
  const char *at = strrchr(r->address, '@');
  (void)ud;
  if (at && strcasecmp(at, "@example.org") == 0)
    return SMTPD_ACCEPT;
  smtpd_session_set_reply(s, 550, "5.1.1", "No such user here");
  return SMTPD_REJECT;
}

/* The body arrives in pieces, dot-unstuffed, with its CRLF line ends. */
static smtpd_verdict on_body(smtpd_session *s, const uint8_t *p, size_t n,
                             void *ud) {
  (void)s, (void)ud;
  return fwrite(p, 1, n, stdout) == n ? SMTPD_ACCEPT : SMTPD_TEMPFAIL;
}

/* The message is complete: store it, then accept ("250 2.0.0 Ok: queued"). */
static smtpd_verdict on_data_complete(smtpd_session *s, const smtpd_message *m,
                                      void *ud) {
  (void)s, (void)ud;
  printf("-- end of message from <%s>\n", m->sender);
  return fflush(stdout) == 0 ? SMTPD_ACCEPT : SMTPD_TEMPFAIL;
}

/* STARTTLS: make the TLS object now, or answer 454 and stay in plaintext. */
static smtpd_verdict on_starttls(smtpd_session *s, void *ud) {
  (void)s;
  return smtpd_tls_session_prepare(ud) == 0 ? SMTPD_ACCEPT : SMTPD_TEMPFAIL;
}

/* One client: write what the library says, read, feed what was read
 * (keeping what it did not take yet), until the library says done. */
static void serve(int fd, const smtpd_config *cfg, const smtpd_callbacks *cb,
                  smtpd_tls_ctx *tls) {
  smtpd_session *s;
  smtpd_tls_session *ts;
  unsigned char buf[4096];
  size_t off = 0, len = 0; /* buf[off..len) was read, not yet taken */
  if (smtpd_session_new(&s, cfg, cb, NULL) != 0)
    return;
  if (smtpd_tls_session_new(&ts, s, tls, SMTPD_TLS_STARTTLS) == 0) {
    smtpd_session_set_user_data(s, ts); /* the callbacks' ud */
    smtpd_session_start(s);             /* queues the 220 greeting */
    while (!smtpd_tls_session_is_done(ts)) {
      const uint8_t *out;
      size_t n;
      ssize_t r;
      if ((n = smtpd_tls_session_output(ts, &out)) > 0) {
        if ((r = write(fd, out, n)) <= 0)
          break;
        smtpd_tls_session_consume(ts, (size_t)r);
      } else if (off < len) {
        ptrdiff_t took = smtpd_tls_session_feed(ts, buf + off, len - off);
        if (took < 0)
          break; /* out of memory */
        off += (size_t)took;
      } else { /* nothing to write, everything fed: read, with a timeout */
        struct timeval tv = {smtpd_tls_session_timeout(ts, NULL) / 1000, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        r = read(fd, buf, sizeof buf);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
          smtpd_tls_session_timeout_expired(ts); /* 421, then done */
        else if (r <= 0)
          smtpd_tls_session_eof(ts); /* the client went away */
        off = 0, len = r > 0 ? (size_t)r : 0;
      }
    }
    smtpd_tls_session_del(ts);
  }
  smtpd_session_del(s);
}

int main(int argc, char **argv) {
  smtpd_config *cfg;
  smtpd_tls_ctx *tls = NULL;
  smtpd_callbacks cb = {.version = SMTPD_CALLBACKS_VERSION,
                        .on_rcpt = on_rcpt, .on_body = on_body,
                        .on_data_complete = on_data_complete,
                        .on_starttls = on_starttls};
  if ((argc != 2 && argc != 4) || smtpd_config_new(&cfg, NULL) != 0)
    return fprintf(stderr, "usage: %s PORT [CERT KEY]\n", argv[0]), 2;
  smtpd_config_set_hostname(cfg, "mx.example.org");
  if (argc == 4) { /* offer STARTTLS with this certificate */
    if (smtpd_tls_ctx_new(&tls, NULL) != 0 ||
        smtpd_tls_ctx_set_cert_files(tls, argv[2], argv[3]) != 0)
      return fprintf(stderr, "TLS: %s\n", smtpd_tls_ctx_error(tls)), 1;
    smtpd_config_set_option(cfg, SMTPD_OPT_STARTTLS, 1);
  }
  int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)atoi(argv[1])),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t salen = sizeof sa;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr *)&sa, salen) != 0 || listen(lfd, 16) != 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0)
    return perror("smtpd-minimal"), 1;
  fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
  signal(SIGPIPE, SIG_IGN); /* a client gone mid-write: write() fails */
  for (;;) { /* one client at a time */
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
      continue;
    serve(fd, cfg, &cb, tls);
    close(fd);
  }
}
