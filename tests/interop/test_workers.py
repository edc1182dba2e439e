#!/usr/bin/env python3
"""test_workers.py - smtpd-maildir --workers 2: two processes, each with
its own loop and its own SO_REUSEPORT socket, both serve.

24 connections are opened at once and each sends one message; the queue
ids in the "250 2.0.0 Ok: queued as ID" replies carry the serving
process's pid (queue_id.h), and at least two distinct ones must appear,
both children of the supervisor. Every message is in new/ and SIGTERM
to the supervisor stops the workers and ends with exit status 0.
"""

import os
import re
import smtplib

from common import Results, Server, parse_args


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return sorted(int(p) for p in f.read().split())
    except OSError:
        return []


def main():
    args = parse_args()
    r = Results("workers")
    # 24 connections from 127.0.0.1 at once: the per-client cap (20 by
    # default) is counted per worker, so with it on this test would
    # depend on how the kernel spreads the 24 over the two workers; the
    # cap has its own tests (test_defences.py)
    srv = Server(args.server, ["--workers", "2", "--max-per-client", "0"])
    try:
        # each worker says so once its sockets are listening
        r.check("both workers ready", srv.wait_log(" ready, pid ", 2),
                srv.log_text())
        kids = children(srv.pid)
        r.check("two worker processes", len(kids) == 2, kids)
        conns = [smtplib.SMTP("127.0.0.1", srv.port, timeout=30)
                 for _ in range(24)]
        ids = []
        for i, s in enumerate(conns):
            s.ehlo("client.example")
            s.mail("a@example.org")
            s.rcpt("b@example.org")
            code, text = s.data(f"Subject: w{i}\r\n\r\nbody {i}\r\n".encode())
            m = re.search(rb"queued as ([0-9A-F]+)", text)
            r.check(f"message {i} accepted", code == 250 and m, (code, text))
            if m:
                ids.append(m.group(1).decode())
        for s in conns:
            s.quit()
        # queue id: 8 hex digits of start time, 6 of the pid, the counter
        pids = {int(q[8:14], 16) for q in ids}
        r.check("both workers served", len(pids) == 2, pids)
        r.check("served by the supervisor's children",
                pids <= set(kids), (pids, kids))
        r.check("queue ids unique", len(set(ids)) == len(ids), ids)
        r.check("24 files in new/", len(srv.wait_files(24)) == 24,
                len(srv.new_files()))
    finally:
        st = srv.stop()
        r.check("SIGTERM: exit 0", st == 0, st)
        r.check("workers gone", all(not os.path.exists(f"/proc/{k}")
                                    or open(f"/proc/{k}/stat").read().split()[2] == "Z"
                                    for k in kids), kids)
        srv.cleanup()
    r.finish()


if __name__ == "__main__":
    main()
