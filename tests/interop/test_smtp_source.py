#!/usr/bin/env python3
"""test_smtp_source.py - smtpd-maildir against Postfix's smtp-source.

Interop (one session, a few messages), connection churn (one message per
connection) and the load test: 20 parallel sessions, 2,000 messages,
exactly 2,000 intact files, server peak RSS bounded. The system Postfix is
never started; smtp-source is only a client.
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Results, Server, need_tool, parse_args, read, split_received  # noqa: E402

SOURCE = "/usr/sbin/smtp-source"


def source(port, sessions, messages, length, *extra, timeout=120):
    cmd = [SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(length),
           "-f", "sender@example.org", "-t", "rcpt@example.org",
           "-M", "source.example"] + list(extra) + [f"127.0.0.1:{port}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_files(r, what, files, n, length):
    """Every file: our Received: field, smtp-source's four headers, and the
    same payload of `length` octets; Message-Ids all different."""
    r.check(f"{what}: exactly {n} files", len(files) == n, len(files))
    ids, bad, payload0 = set(), [], None
    for f in files:
        rec, rest = split_received(read(f))
        head, sep, payload = rest.partition(b"\r\n\r\n")
        mid = re.search(rb"^Message-Id: (\S+)\r?$", head, re.M | re.I)
        ok = (rec is not None and sep and mid is not None and
              head.startswith(b"From: <sender@example.org>") and
              re.fullmatch(rb"(?:\d*X*\r\n)+", payload) is not None)
        if payload0 is None:
            payload0 = payload
        if not ok or payload != payload0:
            bad.append(f)
        if mid:
            ids.add(mid.group(1))
    r.check(f"{what}: every file intact", not bad, bad[:3])
    plen = len((payload0 or b"").replace(b"\r\n", b""))
    r.check(f"{what}: payload has the size asked for", abs(plen - length) <= length // 50 + 8,
            plen)
    r.check(f"{what}: Message-Ids unique", len(ids) == len(files), len(ids))


def main():
    args = parse_args()
    need_tool(SOURCE)
    r = Results("smtp-source")
    srv = Server(args.server, ["--quiet"])
    try:
        out = source(srv.port, 1, 5, 2000, "-d")
        r.check("smtp-source 1x5 exits 0", out.returncode == 0, out.stderr)
        check_files(r, "1x5", srv.wait_files(5), 5, 2000)

        before = len(srv.new_files())
        out = source(srv.port, 10, 200, 500)  # one message per connection
        r.check("churn 10x200 exits 0", out.returncode == 0, out.stderr)
        files = srv.wait_files(before + 200)
        r.check("churn: 200 more files", len(files) == before + 200, len(files))
    finally:
        status = srv.stop()
        r.check("server exits 0", status == 0, status)
        srv.cleanup()

    # load: 20 sessions, 2,000 messages of 1 KB
    srv = Server(args.server, ["--quiet"])
    try:
        t0 = time.time()
        out = source(srv.port, 20, 2000, 1000, "-d", timeout=300)
        dt = time.time() - t0
        r.check("load 20x2000 exits 0", out.returncode == 0, out.stderr)
        files = srv.wait_files(2000)
        check_files(r, "load", files, 2000, 1000)
        r.check("tmp/ empty after load", srv.tmp_files() == [], srv.tmp_files()[:3])
        hwm = srv.vm_hwm_kb()
        limit = 256 * 1024 if srv.sanitized() else 32 * 1024
        r.check(f"peak RSS {hwm} KiB under {limit} KiB", 0 < hwm < limit, hwm)
        print(f"load: 2000 messages in {dt:.1f} s ({2000 / dt:.0f} msgs/s), "
              f"VmHWM {hwm} KiB")
    finally:
        status = srv.stop()
        r.check("server exits 0 after load", status == 0, status)
        srv.cleanup()
    r.finish()


if __name__ == "__main__":
    main()
