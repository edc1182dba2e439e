/*
 * sysio.h - smtpd-maildir: the hot system calls without glibc's thread
 * cancellation bookkeeping.
 *
 * recv, send, write, read, epoll_wait, and openat, fsync and close of
 * the message files are cancellation points. Once a
 * process has a second thread (the delivery threads), glibc brackets each
 * of them with __pthread_enable_asynccancel / _disable (about 150
 * instructions a call, over 600 per message here). This program never
 * cancels a thread, so on Linux, once the delivery threads run
 * (sysio_threaded), the loop and those threads make these calls through
 * syscall(2): the same system call, the same errno convention, no
 * bookkeeping. Before that, and on other systems, they are the libc
 * functions (cheaper than syscall(2) while the process has one thread). A file that includes this defines _GNU_SOURCE first
 * (syscall's declaration).
 */
#ifndef SMTPD_MAILDIR_SYSIO_H
#define SMTPD_MAILDIR_SYSIO_H

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>

/* set once, by deliver_new, before its threads start (deliver.c) */
extern int sysio_threaded;

static inline ssize_t sys_recv(int fd, void *buf, size_t n, int flags) {
  if (!sysio_threaded)
    return recv(fd, buf, n, flags);
  return (ssize_t)syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL);
}
static inline ssize_t sys_send(int fd, const void *buf, size_t n, int flags) {
  if (!sysio_threaded)
    return send(fd, buf, n, flags);
  return (ssize_t)syscall(SYS_sendto, fd, buf, n, flags, NULL, 0);
}
static inline ssize_t sys_write(int fd, const void *buf, size_t n) {
  if (!sysio_threaded)
    return write(fd, buf, n);
  return (ssize_t)syscall(SYS_write, fd, buf, n);
}
static inline ssize_t sys_read(int fd, void *buf, size_t n) {
  if (!sysio_threaded)
    return read(fd, buf, n);
  return (ssize_t)syscall(SYS_read, fd, buf, n);
}
static inline int sys_openat(int dirfd, const char *path, int flags,
                             unsigned mode) {
  if (!sysio_threaded)
    return openat(dirfd, path, flags, mode);
  return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}
static inline int sys_fsync(int fd) {
  if (!sysio_threaded)
    return fsync(fd);
  return (int)syscall(SYS_fsync, fd);
}
static inline int sys_close(int fd) {
  if (!sysio_threaded)
    return close(fd);
  return (int)syscall(SYS_close, fd);
}
#else
static inline ssize_t sys_recv(int fd, void *buf, size_t n, int flags) {
  return recv(fd, buf, n, flags);
}
static inline ssize_t sys_send(int fd, const void *buf, size_t n, int flags) {
  return send(fd, buf, n, flags);
}
static inline ssize_t sys_write(int fd, const void *buf, size_t n) {
  return write(fd, buf, n);
}
static inline ssize_t sys_read(int fd, void *buf, size_t n) {
  return read(fd, buf, n);
}
static inline int sys_openat(int dirfd, const char *path, int flags,
                             unsigned mode) {
  return openat(dirfd, path, flags, mode);
}
static inline int sys_fsync(int fd) {
  return fsync(fd);
}
static inline int sys_close(int fd) {
  return close(fd);
}
#endif

#endif /* SMTPD_MAILDIR_SYSIO_H */
