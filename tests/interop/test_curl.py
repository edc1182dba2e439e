#!/usr/bin/env python3
"""test_curl.py - smtpd-maildir against curl's smtp:// client: two
recipients, an uploaded file with CRLF lines and dot lines, delivered byte
for byte."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Results, Server, need_tool, parse_args, read, split_received  # noqa: E402


def main():
    args = parse_args()
    need_tool("curl")
    r = Results("curl")
    srv = Server(args.server)
    try:
        msg = (b"From: a@example.org\r\nTo: b@example.org\r\n"
               b"Subject: curl\r\n\r\nhello from curl\r\n.dot line\r\n"
               b"..two\r\n.\r\n" + "8-bit: é\r\n".encode())
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(msg)
            path = f.name
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "20", f"smtp://127.0.0.1:{srv.port}/client.example",
             "--mail-from", "a@example.org", "--mail-rcpt", "b@example.org",
             "--mail-rcpt", "c@example.org", "--upload-file", path],
            capture_output=True, text=True)
        os.unlink(path)
        r.check("curl exits 0", out.returncode == 0, out.stderr)
        files = srv.wait_files(1)
        r.check("one file delivered", len(files) == 1, files)
        if files:
            rec, rest = split_received(read(files[0]))
            r.check("body byte for byte", rest == msg, repr(rest))
            r.check("Received: from client.example", rec is not None and
                    b"from client.example" in rec, rec)
        r.check("log shows 2 recipients", srv.wait_log("nrcpt=2", 1))

        # VRFY through curl (no --mail-rcpt upload): a 252 is not an error
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "10", f"smtp://127.0.0.1:{srv.port}",
             "--mail-rcpt", "someone@example.org"],
            capture_output=True, text=True)
        r.check("curl VRFY answered", out.returncode == 0 and "252" in out.stdout,
                (out.returncode, out.stdout, out.stderr))
    finally:
        status = srv.stop()
        r.check("server exits 0", status == 0, status)
        srv.cleanup()
    r.finish()


if __name__ == "__main__":
    main()
