/*
 * defences.h - smtpd-maildir: what the server remembers per client
 * address, across connections (the part of Postfix's anvil this example
 * needs).
 *
 *   def_table_new / def_table_del   the table
 *   def_conn_open / def_conn_close  count concurrent connections per
 *                                   address (--max-per-client)
 *   def_addr_text                   the address an entry counts
 *   def_auth_penalized              the address failed AUTH --auth-fail-
 *                                   limit times within --auth-fail-window
 *   def_auth_failed                 count one more failure
 *   def_sweep                       forget addresses with no connection
 *                                   and no failure inside the window
 *
 * An address is the text of the socket peer's IP address (IPv4 dotted,
 * IPv6 as getnameinfo writes it), before any PROXY header or XCLIENT.
 * The table does no I/O and reads no clock: the caller passes "now" in
 * monotonic milliseconds.
 */
#ifndef SMTPD_MAILDIR_DEFENCES_H
#define SMTPD_MAILDIR_DEFENCES_H

#include <stddef.h>
#include <stdint.h>

typedef struct def_table def_table;
typedef struct def_addr def_addr;

/* At most this many addresses are remembered; beyond it new addresses
 * are not counted (their connections are still served, and --max-
 * sessions still bounds them). */
#define DEF_MAX_ADDRS 100000u
/* Largest --auth-fail-limit (one timestamp per failure is kept). */
#define DEF_MAX_AUTH_FAIL_LIMIT 1000u

/* def_table_new - auth_fail_limit failures (0: no AUTH penalty) within
 * window_ms make an address penalized. 0 or -1 (out of memory). */
int def_table_new(def_table **out, unsigned auth_fail_limit,
                  uint64_t window_ms);
void def_table_del(def_table *t);

/* def_conn_open - one more connection from addr. Returns its entry (hand
 * it back to def_conn_close) and sets *count to the connections from
 * addr now open, this one included; NULL (and *count 0) when the table is
 * full or out of memory. */
def_addr *def_conn_open(def_table *t, const char *addr, unsigned long *count);
void def_conn_close(def_table *t, def_addr *a); /* a may be NULL */
/* def_addr_text - the address text a was opened with (def_conn_open), so
 * a connection need not keep its own copy. */
const char *def_addr_text(const def_addr *a);

/* def_auth_penalized - a already failed AUTH auth_fail_limit times within
 * the window ending at now. a may be NULL (never penalized). */
int def_auth_penalized(const def_table *t, const def_addr *a, uint64_t now);
/* def_auth_failed - record one failed AUTH of a at now. */
void def_auth_failed(def_table *t, def_addr *a, uint64_t now);

/* def_sweep - forget entries that hold nothing any more. */
void def_sweep(def_table *t, uint64_t now);
/* def_count - entries remembered (tests, logs). */
size_t def_count(const def_table *t);

#endif
