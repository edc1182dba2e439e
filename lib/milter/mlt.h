/*
 * mlt.h - internals shared by the Milter adapter's files (not installed).
 *
 *   mlt_buf     a growable octet buffer with a read offset
 *   mlt_hlist   an ordered list of header fields that edits apply to
 */
#ifndef SMTPD_MILTER_MLT_H
#define SMTPD_MILTER_MLT_H

#include "smtpd/milter.h"

typedef struct mlt_buf {
  uint8_t *p;
  size_t off, len, cap;
} mlt_buf;

int mlt_buf_reserve(const smtpd_mem *mem, mlt_buf *b, size_t more);
int mlt_buf_put(const smtpd_mem *mem, mlt_buf *b, const void *d, size_t n);
void mlt_buf_free(const smtpd_mem *mem, mlt_buf *b);
size_t mlt_buf_avail(const mlt_buf *b);
void mlt_buf_drop(mlt_buf *b, size_t n);

/* One header field. raw != NULL: an original field, written as is; else
 * a filter's, written "name:value" with line ends normalised. */
typedef struct mlt_hdr {
  char *name;
  char *value;           /* after the colon, up to the line end */
  size_t value_len;
  uint8_t *raw;
  size_t raw_len;
} mlt_hdr;

typedef struct mlt_hlist {
  mlt_hdr **h;
  size_t n, cap;
  size_t bytes;           /* name + value octets held */
} mlt_hlist;

int mlt_hlist_add_raw(const smtpd_mem *mem, mlt_hlist *l,
                      const smtpd_milter_header *h);
/* apply one header edit (ADDHEADER, INSHEADER, CHGHEADER); others: 0 */
int mlt_hlist_apply(const smtpd_mem *mem, mlt_hlist *l,
                    const smtpd_milter_edit *e);
void mlt_hlist_clear(const smtpd_mem *mem, mlt_hlist *l);
/* append the header section's text to b */
int mlt_hlist_write(const smtpd_mem *mem, const mlt_hlist *l, mlt_buf *b);
/* the value as a filter sees it in a HEADER command: leading blanks
 * removed unless leadspc, CRLF folds as LF; appended to b with a NUL */
int mlt_value_for_filter(const smtpd_mem *mem, const char *v, size_t len,
                         int leadspc, mlt_buf *b);

#define MLT_DEFAULT_HEADER 65000u
#define MLT_DEFAULT_HEADERS (1024u * 1024u)

#endif
