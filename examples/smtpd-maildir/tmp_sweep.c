/*
 * tmp_sweep.c - smtpd-maildir: the start-up sweep of tmp/ (tmp_sweep.h).
 */
#define _GNU_SOURCE
#include "tmp_sweep.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

long tmp_sweep(int tmpfd, time_t max_age, time_t now) {
  int fd = openat(tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  long removed = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    struct stat st;
    if (de->d_name[0] == '.')
      continue;
    if (fstatat(tmpfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode))
      continue;
    if (st.st_mtime > now - max_age)
      continue;
    if (unlinkat(tmpfd, de->d_name, 0) == 0)
      removed++;
  }
  closedir(d);
  return removed;
}
