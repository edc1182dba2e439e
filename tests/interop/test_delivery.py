#!/usr/bin/env python3
"""test_delivery.py - smtpd-maildir's delivery pipeline (deliver.c): the
event loop never waits for the disk, the 250 comes only after the file
and new/ are fsynced, and commits that end together share the fsync of
new/ (group commit).

The test hook SMTPD_MAILDIR_FAULT=slow-fsync:MS makes the delivery worker
sleep MS before every fsync (the file's and new/'s), standing for a slow
disk.

- slow-fsync:2000: client A's 250 comes after at least 2 s (two sleeps:
  file, then new/), and meanwhile client B gets its greeting, EHLO and
  NOOP replies at once (a hang guard well under the 2 s sleep)
- 20 concurrent clients: every message lands in new/, none stays in tmp/,
  and the server's count at shutdown shows fewer new/ fsyncs than
  messages (slow-fsync:200 makes the batching certain)
- the delivered file holds exactly the message sent, byte for byte
- LMTP: a message to two recipients gets one reply per recipient after
  the commit; a client that goes away while its commit is in flight
  leaves the server running; shutdown waits for a commit in flight
- --shutdown-timeout 1 ends a session whose commit (slow-fsync:3000) is
  still in flight: the client gets 421, never 250; the finished commit
  finds its connection gone, the server still waits for it, exits 0 and
  the file is in new/
"""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (Client, Results, Server, parse_args, read,  # noqa: E402
                    split_envelope)


def body(tag, n=2000):
    lines = [f"Subject: {tag}", "", f"message {tag}"]
    lines += [f"line {i} of {tag} " + "x" * (i % 70) for i in range(n)]
    return ("\r\n".join(lines) + "\r\n").encode()


def send_message(port, msg, rcpts=(b"b@example.org",), lmtp=False,
                 marks=None):
    """Send one message on a bare socket; returns (final replies, seconds
    from the end of data to the last reply). marks, a dict, gets the
    monotonic time the last reply arrived as "replied"."""
    c = Client(port, timeout=60)
    try:
        c.reply()
        c.cmd((b"LHLO" if lmtp else b"EHLO") + b" delivery.example")
        c.cmd(b"MAIL FROM:<a@example.org>")
        for rc in rcpts:
            c.cmd(b"RCPT TO:<" + rc + b">")
        r = c.cmd(b"DATA")
        assert r.startswith(b"354"), r
        t0 = time.monotonic()
        c.send(msg + b".\r\n")
        replies = [c.reply() for _ in (rcpts if lmtp else [0])]
        dt = time.monotonic() - t0
        if marks is not None:
            marks["replied"] = time.monotonic()
        c.cmd(b"QUIT")
        return replies, dt
    finally:
        c.close()


def stats(text):
    m = re.search(r"deliveries (\d+), file fsyncs (\d+), directory fsyncs "
                  r"(\d+), batches (\d+)", text)
    return tuple(int(x) for x in m.groups()) if m else None


def test_slow_disk(r, server):
    srv = Server(server, env={"SMTPD_MAILDIR_FAULT": "slow-fsync:2000"})
    try:
        msg = body("slow")
        out = {}
        marks = {}

        def client_a():
            out["a"] = send_message(srv.port, msg, marks=marks)

        ta = threading.Thread(target=client_a)
        ta.start()
        time.sleep(0.3)  # A's data is in; its commit sleeps in the worker
        t0 = time.monotonic()
        b = Client(srv.port)
        greet = b.reply()
        ehlo = b.cmd(b"EHLO other.example")
        noop = b.cmd(b"NOOP")
        b_done = time.monotonic()
        lat = b_done - t0
        b.cmd(b"QUIT")
        b.close()
        a_busy = ta.is_alive()
        print(f"client B: greeting + EHLO + NOOP in {lat * 1000:.1f} ms "
              f"while A's commit sleeps")
        r.check("B greeted", greet.startswith(b"220"), greet)
        r.check("B EHLO and NOOP answered",
                ehlo.startswith(b"250") and noop.startswith(b"250"),
                ehlo + noop)
        r.check("A was still waiting for its 250 meanwhile", a_busy)
        ta.join(30)
        # an order, not a time limit: a server that served B only after
        # A's commit would have sent A's 250 before B's NOOP reply
        r.check("B did not wait for A's disk: B's NOOP answered before "
                "A's 250", "replied" in marks and b_done < marks["replied"],
                (b_done, marks))
        replies, dt = out.get("a", ([b""], 0))
        print(f"client A: 250 after {dt:.2f} s")
        r.check("A got 250 queued as", replies[0].startswith(
            b"250 2.0.0 Ok: queued as "), replies)
        r.check("A's 250 only after the slow fsyncs (>= 2 s)",
                dt >= 2.0, f"{dt:.3f} s")
        files = srv.wait_files(1)
        r.check("A's message in new/", len(files) == 1, files)
        r.check("nothing left in tmp/", srv.tmp_files() == [],
                srv.tmp_files())
        if files:
            _, _, rest = split_envelope(read(files[0]))
            r.check("file content intact (byte for byte)", rest == msg,
                    f"{len(rest)} vs {len(msg)} bytes")
    finally:
        st = srv.stop()
        r.check("slow disk: clean exit", st == 0, st)
        r.check("slow disk: counts logged",
                stats(srv.log_text()) == (1, 1, 1, 1), srv.log_text())
        srv.cleanup()


def test_group_commit(r, server):
    n = 20
    srv = Server(server, env={"SMTPD_MAILDIR_FAULT": "slow-fsync:200"})
    try:
        msgs = [body(f"m{i}", 50 + i) for i in range(n)]
        res = [None] * n
        go = threading.Barrier(n)

        def client(i):
            c = Client(srv.port, timeout=60)
            c.reply()
            c.cmd(b"EHLO group.example")
            c.cmd(b"MAIL FROM:<a@example.org>")
            c.cmd(b"RCPT TO:<b@example.org>")
            c.cmd(b"DATA")
            go.wait(30)
            c.send(msgs[i] + b".\r\n")
            res[i] = c.reply()
            c.cmd(b"QUIT")
            c.close()

        ts = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        r.check("20 clients: every message answered 250",
                all(x and x.startswith(b"250 2.0.0 Ok: queued as ")
                    for x in res), res)
        files = srv.wait_files(n)
        r.check("20 clients: 20 files in new/", len(files) == n, len(files))
        r.check("20 clients: nothing left in tmp/", srv.tmp_files() == [],
                srv.tmp_files())
        got = sorted(split_envelope(read(f))[2] for f in files)
        r.check("20 clients: every file intact", got == sorted(msgs))
    finally:
        st = srv.stop()
        r.check("group commit: clean exit", st == 0, st)
        s = stats(srv.log_text())
        print(f"deliveries, file fsyncs, directory fsyncs, batches: {s}")
        r.check("group commit: one file fsync per message",
                s is not None and s[0] == n and s[1] == n, s)
        r.check("group commit: fewer directory fsyncs than messages",
                s is not None and s[2] < n, s)
        srv.cleanup()


def test_lmtp_and_gone(r, server):
    srv = Server(server, args=["--lmtp", "--reject-rcpt", "no@example.org"],
                 env={"SMTPD_MAILDIR_FAULT": "slow-fsync:300"})
    try:
        msg = body("lmtp", 20)
        replies, dt = send_message(
            srv.port, msg, (b"b@example.org", b"no@example.org",
                            b"c@example.org"), lmtp=True)
        r.check("LMTP: one reply per recipient after the commit",
                [x[:4] for x in replies] == [b"250 ", b"550 ", b"250 "],
                replies)
        r.check("LMTP: delivered as", b"Ok: delivered as" in replies[0],
                replies)
        r.check("LMTP: replies after the fsyncs (>= 0.6 s)", dt >= 0.6, dt)
        # a client that leaves while its commit is in flight
        c = Client(srv.port)
        c.reply()
        c.cmd(b"LHLO gone.example")
        c.cmd(b"MAIL FROM:<a@example.org>")
        c.cmd(b"RCPT TO:<b@example.org>")
        c.cmd(b"DATA")
        c.send(body("gone", 20) + b".\r\n")
        time.sleep(0.1)
        c.close()
        time.sleep(1.0)  # the commit ends after its client went
        replies, _ = send_message(srv.port, msg, lmtp=True)
        r.check("server alive after a client left mid-commit",
                replies[0].startswith(b"250 "), replies)
        # shutdown while a commit is in flight: it ends first
        c = Client(srv.port)
        c.reply()
        c.cmd(b"LHLO late.example")
        c.cmd(b"MAIL FROM:<a@example.org>")
        c.cmd(b"RCPT TO:<b@example.org>")
        c.cmd(b"DATA")
        c.send(body("late", 20) + b".\r\n")
        time.sleep(0.1)
        srv.proc.send_signal(15)
        late = c.reply()
        c.close()
        r.check("shutdown: the commit in flight is answered 250",
                late.startswith(b"250 "), late)
    finally:
        st = srv.stop()
        r.check("LMTP: clean exit", st == 0, st)
        r.check("LMTP: 4 messages in new/, tmp/ empty",
                len(srv.new_files()) == 4 and srv.tmp_files() == [],
                (srv.new_files(), srv.tmp_files()))
        srv.cleanup()


def test_shutdown_bound(r, server):
    srv = Server(server, args=["--shutdown-timeout", "1"],
                 env={"SMTPD_MAILDIR_FAULT": "slow-fsync:3000"})
    try:
        c = Client(srv.port, timeout=30)
        c.reply()
        c.cmd(b"EHLO bound.example")
        c.cmd(b"MAIL FROM:<a@example.org>")
        c.cmd(b"RCPT TO:<b@example.org>")
        c.cmd(b"DATA")
        c.send(body("bound", 20) + b".\r\n")
        time.sleep(0.3)
        t0 = time.monotonic()
        srv.proc.send_signal(15)
        rep = c.reply()
        c.close()
        r.check("shutdown bound: 421, not 250, while the commit is slow",
                rep.startswith(b"421 "), rep)
        st = srv.stop()
        dt = time.monotonic() - t0
        print(f"shutdown bound: exit after {dt:.2f} s")
        r.check("shutdown bound: exit 0", st == 0, st)
        r.check("shutdown bound: the exit waited for the commit (>= 2 s)",
                dt >= 2.0, dt)
        r.check("shutdown bound: counts logged",
                stats(srv.log_text()) == (1, 1, 1, 1), srv.log_text())
        r.check("shutdown bound: the file is in new/, tmp/ empty",
                len(srv.new_files()) == 1 and srv.tmp_files() == [],
                (srv.new_files(), srv.tmp_files()))
    finally:
        srv.stop()
        srv.cleanup()


def main():
    args = parse_args()
    r = Results("delivery")
    test_slow_disk(r, args.server)
    test_group_commit(r, args.server)
    test_lmtp_and_gone(r, args.server)
    test_shutdown_bound(r, args.server)
    r.finish()


if __name__ == "__main__":
    main()
