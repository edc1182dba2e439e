/*
 * maildir.c - smtpd-maildir: Maildir delivery (tmp/ -> fsync -> new/).
 *
 *   maildir_open, maildir_close, maildir_unique, maildir_begin,
 *   maildir_write, maildir_start_writeback, maildir_commit (=
 *   maildir_commit_file + maildir_sync_new), maildir_recycle,
 *   maildir_abort
 *
 * The protocol: create tmp/<unique> exclusively, write, fsync, rename to
 * new/<unique>, fsync new/ so the rename itself is durable. Only then may
 * the server say 250. Readers never see a partial message in new/.
 */
#define _GNU_SOURCE
#include "maildir.h"

#include "fmt.h"
#include "sysio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int open_sub(const char *dir, const char *sub) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/%s", dir, sub) >= (int)sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  if (mkdir(path, 0700) != 0 && errno != EEXIST)
    return -1;
  return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

int maildir_open(maildir *md, const char *dir) {
  memset(md, 0, sizeof *md);
  md->tmpfd = md->newfd = -1;
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return -1;
  int curfd = open_sub(dir, "cur");
  if (curfd < 0)
    return -1;
  close(curfd);
  md->tmpfd = open_sub(dir, "tmp");
  md->newfd = open_sub(dir, "new");
  if (md->tmpfd < 0 || md->newfd < 0) {
    maildir_close(md);
    return -1;
  }
  /* '/' and ':' have a meaning in Maildir names; keep the host safe. */
  if (gethostname(md->host, sizeof md->host) != 0)
    strcpy(md->host, "localhost");
  md->host[sizeof md->host - 1] = '\0';
  for (char *p = md->host; *p; p++)
    if (*p == '/' || *p == ':')
      *p = '_';
  return 0;
}

void maildir_close(maildir *md) {
  if (md->tmpfd >= 0)
    close(md->tmpfd);
  if (md->newfd >= 0)
    close(md->newfd);
  md->tmpfd = md->newfd = -1;
  while (md->nspare > 0)
    free(md->spare[--md->nspare]);
}

/* no printf: this runs for every message. The seconds are spelled once
 * a second, "P<pid>Q" once. */
void maildir_unique(maildir *md, char *out, size_t cap) {
  struct timeval tv;
  char buf[160];
  size_t n, hl = strlen(md->host);
  gettimeofday(&tv, NULL);
  if (md->pid == 0) {
    md->pid = getpid();
    md->tail[0] = 'P';
    md->tail_len = 1 + fmt_u64(md->tail + 1, (uint64_t)md->pid);
    md->tail[md->tail_len++] = 'Q';
  }
  if (md->sec_len == 0 || (long long)tv.tv_sec != md->sec) {
    md->sec = (long long)tv.tv_sec;
    md->sec_len = fmt_u64(md->sec_text, (uint64_t)tv.tv_sec);
  }
  /* "%lld.M%06ldP%ldQ%lu.%s" */
  memcpy(buf, md->sec_text, md->sec_len);
  n = md->sec_len;
  buf[n++] = '.';
  buf[n++] = 'M';
  unsigned long us = (unsigned long)tv.tv_usec % 1000000u; /* %06ld */
  for (int i = 5; i >= 0; i--, us /= 10)
    buf[n + (size_t)i] = (char)('0' + us % 10);
  n += 6;
  memcpy(buf + n, md->tail, md->tail_len);
  n += md->tail_len;
  n += fmt_u64(buf + n, ++md->counter);
  buf[n++] = '.';
  memcpy(buf + n, md->host, hl);
  n += hl;
  if (cap == 0)
    return;
  if (n >= cap)
    n = cap - 1;
  memcpy(out, buf, n);
  out[n] = '\0';
}

int maildir_begin(maildir *md, maildir_msg *m) {
  m->fd = -1;
  m->failed = m->err = 0;
  m->buflen = 0;
  m->written = 0;
  m->buf = md->nspare > 0 ? md->spare[--md->nspare] : malloc(MAILDIR_BUF_SIZE);
  if (m->buf == NULL)
    return -1;
  maildir_unique(md, m->name, sizeof m->name);
  m->fd = sys_openat(md->tmpfd, m->name,
                     O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (m->fd < 0) {
    int e = errno;
    maildir_recycle(md, m);
    errno = e;
    return -1;
  }
  return 0;
}

void maildir_recycle(maildir *md, maildir_msg *m) {
  if (m->buf != NULL) {
    if (md->nspare < MAILDIR_SPARE_BUFS)
      md->spare[md->nspare++] = m->buf;
    else
      free(m->buf);
  }
  m->buf = NULL;
  m->buflen = 0;
}

static void write_all(maildir_msg *m, const unsigned char *p, size_t n) {
  while (n > 0 && !m->failed) {
    ssize_t w = sys_write(m->fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      m->err = w < 0 ? errno : EIO;
      m->failed = 1; /* disk full, quota...: refused at commit */
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static void flush(maildir_msg *m) {
  write_all(m, m->buf, m->buflen);
  m->buflen = 0;
}

void maildir_write(maildir_msg *m, const void *data, size_t len) {
  const unsigned char *p = data;
  m->written += len;
  if (m->fd < 0 || m->failed)
    return;
  if (m->buflen + len > MAILDIR_BUF_SIZE) {
    flush(m);
    if (len >= MAILDIR_BUF_SIZE) { /* big chunk: skip the copy */
      write_all(m, p, len);
      return;
    }
  }
  memcpy(m->buf + m->buflen, p, len);
  m->buflen += len;
}

static void release(maildir_msg *m) {
  if (m->fd >= 0)
    sys_close(m->fd);
  m->fd = -1;
  m->buflen = 0; /* the buffer stays: maildir_recycle */
}

void maildir_start_writeback(maildir_msg *m) {
  if (m->fd < 0)
    return;
  flush(m);
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
  if (!m->failed)
    sync_file_range(m->fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint only */
#endif
}

/* nap - the test hook's delay before an fsync (slow-fsync:MS) */
static void nap(unsigned ms) {
  if (ms == 0)
    return; /* real use: no hook, no arithmetic */
  struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

int maildir_commit_file(maildir *md, maildir_msg *m, unsigned delay_ms) {
  if (m->fd < 0)
    return -1;
  flush(m);
  nap(delay_ms);
  if (!m->failed && sys_fsync(m->fd) != 0)
    m->failed = 1, m->err = errno;
  if (!m->failed && sys_close(m->fd) != 0)
    m->failed = 1, m->err = errno;
  m->fd = -1;
  if (!m->failed && renameat(md->tmpfd, m->name, md->newfd, m->name) != 0)
    m->failed = 1, m->err = errno;
  if (m->failed) {
    unlinkat(md->tmpfd, m->name, 0);
    release(m);
    return -1;
  }
  release(m);
  return 0;
}

int maildir_sync_new(maildir *md, unsigned delay_ms) {
  nap(delay_ms);
  return sys_fsync(md->newfd);
}

int maildir_commit(maildir *md, maildir_msg *m) {
  int rc = maildir_commit_file(md, m, 0);
  maildir_recycle(md, m);
  if (rc != 0)
    return -1;
  /* The message is in new/; make the directory entry durable too. A
   * failure here is reported: the 250 must not be sent on a guess. */
  if (maildir_sync_new(md, 0) != 0) {
    m->err = errno;
    return -1;
  }
  return 0;
}

void maildir_abort(maildir *md, maildir_msg *m) {
  if (m->fd < 0)
    return;
  release(m);
  maildir_recycle(md, m);
  unlinkat(md->tmpfd, m->name, 0);
}
