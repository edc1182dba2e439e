#!/usr/bin/env python3
"""test_swaks.py - smtpd-maildir against swaks: plain, pipelined, with a
body of dot lines given verbatim, and a refused recipient limit."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Results, Server, need_tool, parse_args, read, split_received  # noqa: E402


def swaks(port, *extra):
    cmd = ["swaks", "--server", f"127.0.0.1:{port}", "--from", "s@example.org",
           "--helo", "swaks.example", "--timeout", "10"] + list(extra)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def main():
    args = parse_args()
    need_tool("swaks")
    r = Results("swaks")
    srv = Server(args.server)
    try:
        out = swaks(srv.port, "--to", "a@example.org")
        r.check("swaks plain exits 0", out.returncode == 0, out.stdout[-400:])
        files = srv.wait_files(1)
        r.check("one file delivered", len(files) == 1, files)
        if files:
            rec, rest = split_received(read(files[0]))
            r.check("swaks body present", b"This is a test mailing" in rest,
                    rest[:200])
            r.check("Received: from swaks.example", rec is not None and
                    rec.startswith(b"Received: from swaks.example"), rec)

        # swaks ends the data with "\r\n.\r\n" itself
        body = "Subject: dots\r\n\r\n.one\r\n..two\r\n.\r\nend"
        out = swaks(srv.port, "--to", "b@example.org,c@example.org",
                    "--pipeline", "--data", body)
        r.check("swaks --pipeline exits 0", out.returncode == 0,
                out.stdout[-600:])
        files = srv.wait_files(2)
        r.check("second file delivered", len(files) == 2, files)
        got = [split_received(read(f))[1] for f in files]
        want = body.encode() + b"\r\n"
        r.check("pipelined body byte for byte", want in got,
                [g[:120] for g in got])
        r.check("PIPELINING used", "PIPELINING" in out.stdout, out.stdout[-300:])
        r.check("log shows 2 recipients", "nrcpt=2" in srv.log_text())

        out = swaks(srv.port, "--to", "x@example.org", "--quit-after", "RCPT")
        r.check("quit after RCPT exits 0", out.returncode == 0, out.stdout[-300:])
        r.check("no file for an abandoned transaction",
                len(srv.new_files()) == 2 and srv.tmp_files() == [])
    finally:
        status = srv.stop()
        r.check("server exits 0", status == 0, status)
        srv.cleanup()
    r.finish()


if __name__ == "__main__":
    main()
