/*
 * tmp_sweep.h - smtpd-maildir: remove stale files from a Maildir's tmp/
 * at start-up.
 *
 * The Maildir convention (maildir(5), qmail): a file in tmp/ that was not
 * touched for 36 hours belongs to a delivery that died; it is removed.
 * Younger files are kept whatever their name, so another program (or a
 * second instance of this server) delivering into the same Maildir right
 * now loses nothing. Only regular files directly in tmp/ are looked at.
 */
#ifndef SMTPD_MAILDIR_TMP_SWEEP_H
#define SMTPD_MAILDIR_TMP_SWEEP_H

#include <time.h>

#define TMP_SWEEP_AGE (36 * 3600) /* seconds */

/* tmp_sweep - in the directory open as tmpfd, unlink the regular files
 * whose modification time is at least max_age seconds before now. Returns
 * how many were removed, or -1 (errno set) when tmp/ cannot be read. */
long tmp_sweep(int tmpfd, time_t max_age, time_t now);

#endif
