#!/usr/bin/env python3
"""test_smtplib.py - smtpd-maildir against Python's smtplib.

Several recipients, an 8-bit body, lines starting with dots, a 1 MB body,
several messages per session; each delivered Maildir file is compared
byte for byte (after the Received: field) with what smtplib sent. Also:
--max-size, --max-recipients, --max-sessions, IPv6, --help.
"""

import email.generator
import email.message
import email.policy
import io
import os
import smtplib
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Client, Results, Server, parse_args, read, split_received  # noqa: E402


def wire_bytes(msg):
    """What smtplib.send_message puts between DATA and the final dot,
    before dot-stuffing: the message flattened with CRLF line ends."""
    bio = io.BytesIO()
    g = email.generator.BytesGenerator(bio, policy=msg.policy.clone(linesep="\r\n"))
    g.flatten(msg, linesep="\r\n")
    data = bio.getvalue()
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def body_of_newest(srv, before):
    files = [f for f in srv.new_files() if f not in before]
    if len(files) != 1:
        return None, files
    rec, rest = split_received(read(files[0]))
    return (rec, rest), files


def main():
    args = parse_args()
    r = Results("smtplib")
    srv = Server(args.server, ["--hostname", "mx.test.example"])
    try:
        # 1. send_message: three recipients, 8-bit UTF-8 body, dot lines
        msg = email.message.EmailMessage(policy=email.policy.SMTP)
        msg["From"] = "Ann Sender <ann@example.org>"
        msg["To"] = "bob@example.org, carol@example.org"
        msg["Cc"] = "dave@example.net"
        msg["Subject"] = "interop: 8-bit and dots"
        body = ("Grüße aus Köln — ünïcödé\n.leading dot\n..two dots\n.\n"
                " .space dot\nlast line without newline")
        msg.set_content(body, cte="8bit")
        before = srv.new_files()
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            code, banner = c.ehlo("client.example")
            r.check("EHLO 250", code == 250, banner)
            r.check("8BITMIME advertised", c.has_extn("8bitmime"))
            refused = c.send_message(msg)
            r.check("all recipients accepted", refused == {}, refused)
        got, files = body_of_newest(srv, before)
        r.check("one file in new/", got is not None, files)
        if got:
            rec, rest = got
            r.check("Received: field first", rec is not None and
                    rec.startswith(b"Received: from client.example"), rec)
            r.check("Received: names our host", rec is not None and
                    b"by mx.test.example" in rec, rec)
            r.check("Received: with ESMTP", rec is not None and
                    b"with ESMTP" in rec, rec)
            r.check("body byte for byte", rest == wire_bytes(msg),
                    repr(rest[:200]))
            r.check("8-bit bytes kept", "Grüße".encode() in rest)
            r.check("dot lines unstuffed",
                    b"\r\n.leading dot\r\n..two dots\r\n.\r\n .space dot"
                    in rest)
        log = srv.log_text()
        r.check("log line per message", "nrcpt=3" in log and
                "from=<ann@example.org>" in log, log[-500:])

        # 2. raw bytes via sendmail: several messages in one session,
        #    RSET between, a 1 MB body, a body that is only dots
        msgs = [
            b"Subject: one\r\n\r\nfirst\r\n",
            b"Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.x\r\n",
            b"Subject: big\r\n\r\n" +
            b"".join(b"%06d " % i + b"x" * 90 + b"\r\n" for i in range(10000)),
            b"Subject: binaryish\r\n\r\n" + bytes(range(0x80, 0x100)) + b"\r\n",
        ]
        before = srv.new_files()
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=20) as c:
            for i, m in enumerate(msgs):
                c.sendmail("s@example.org", [f"r{i}@example.org"], m)
                c.rset()
        files = [f for f in srv.new_files() if f not in before]
        r.check("four files for four messages", len(files) == 4, files)
        bodies = sorted(split_received(read(f))[1] for f in files)
        r.check("each body byte for byte", bodies == sorted(msgs))
        r.check("tmp/ empty", srv.tmp_files() == [], srv.tmp_files())

        # 3. a single recipient appears in the Received: "for" clause
        before = srv.new_files()
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.sendmail("s@example.org", ["only@example.org"], b"x: y\r\n\r\nz\r\n")
        got, files = body_of_newest(srv, before)
        r.check("Received: for <only@example.org>", got and
                b"for <only@example.org>" in (got[0] or b""), got)

        # 4. HELO session: "with SMTP"
        before = srv.new_files()
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.helo("old.example")
            c.sendmail("s@example.org", ["a@example.org"], b"x: y\r\n\r\nz\r\n")
        got, files = body_of_newest(srv, before)
        r.check("HELO gives with SMTP", got and
                b"with SMTP " in (got[0] or b""), got)
    finally:
        status = srv.stop()
        r.check("server exits 0 on SIGTERM", status == 0, status)
        srv.cleanup()

    # 5. limits: --max-size, --max-recipients, --max-sessions
    srv = Server(args.server, ["--max-size", "10000", "--max-recipients", "2",
                               "--max-sessions", "2"])
    try:
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.ehlo("x")
            r.check("SIZE advertised with limit",
                    c.esmtp_features.get("size") == "10000",
                    c.esmtp_features)
            try:
                c.sendmail("s@example.org", ["a@example.org"],
                           b"Subject: big\r\n\r\n" + b"y" * 20000 + b"\r\n")
                r.check("oversized message refused (SIZE=)", False)
            except smtplib.SMTPSenderRefused as e:
                r.check("oversized message refused at MAIL (SIZE=) with 552",
                        e.smtp_code == 552, e)
            c.rset()
            c.mail("s@example.org")
            codes = [c.rcpt(f"r{i}@example.org")[0] for i in range(3)]
            r.check("third recipient refused", codes[:2] == [250, 250] and
                    codes[2] in (452, 552), codes)
            c.rset()
        # without SIZE= the limit applies while the body streams in
        c = Client(srv.port)
        c.reply()
        c.cmd(b"EHLO x")
        c.cmd(b"MAIL FROM:<s@example.org>")
        c.cmd(b"RCPT TO:<a@example.org>")
        r.check("DATA 354", c.cmd(b"DATA").startswith(b"354"))
        rep = c.cmd(b"Subject: big\r\n\r\n" + b"y\r\n" * 10000 + b".")
        r.check("oversized body refused with 552", rep.startswith(b"552"), rep)
        c.close()
        r.check("no file for the refused message", srv.new_files() == [] and
                srv.tmp_files() == [], (srv.new_files(), srv.tmp_files()))
        srv.wait_log("session end", 2)  # the two sessions above are gone
        a = Client(srv.port)
        b = Client(srv.port)
        ga, gb = a.reply(), b.reply()
        c3 = Client(srv.port)
        g3 = c3.reply()
        r.check("two sessions greeted", ga.startswith(b"220") and
                gb.startswith(b"220"), (ga, gb))
        r.check("third session gets 421 4.3.2", g3.startswith(b"421 4.3.2"), g3)
        r.check("third session closed", c3.closed())
        for x in (a, b, c3):
            x.close()
    finally:
        status = srv.stop()
        r.check("server exits 0", status == 0, status)
        srv.cleanup()

    # 6. IPv6 listener
    try:
        s6 = socket.socket(socket.AF_INET6)
        s6.bind(("::1", 0))
        s6.close()
        have6 = True
    except OSError:
        have6 = False
    if have6:
        srv = Server(args.server, listen="[::1]:0")
        try:
            with smtplib.SMTP("::1", srv.port, timeout=10) as c:
                c.sendmail("s@example.org", ["a@example.org"], b"x: y\r\n\r\nv6\r\n")
            files = srv.wait_files(1)
            r.check("delivered over IPv6", len(files) == 1 and
                    b"::1" in read(files[0]), files)
        finally:
            srv.stop()
            srv.cleanup()

    # 7. --help
    out = subprocess.run([args.server, "--help"], capture_output=True, text=True)
    r.check("--help exits 0 and lists options", out.returncode == 0 and
            "--listen" in out.stdout and "--maildir" in out.stdout, out)
    out = subprocess.run([args.server, "--bogus"], capture_output=True, text=True)
    r.check("unknown option exits 2", out.returncode == 2, out.returncode)
    r.finish()


if __name__ == "__main__":
    main()
