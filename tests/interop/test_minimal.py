#!/usr/bin/env python3
"""test_minimal.py - examples/minimal.c (smtpd-minimal) against real
clients: Python smtplib in plaintext and with STARTTLS (TLS 1.3 and 1.2),
swaks -tls when installed, and a bare socket for the exact replies.

- mail for example.org is accepted and its body printed on stdout,
  byte for byte with CRLF line ends, dot lines unstuffed
- other recipients get exactly "550 5.1.1 No such user here"; all of
  them refused: SMTPRecipientsRefused
- one client after another; a client that hangs up mid-DATA does not
  stop the next one
- STARTTLS is offered only with a certificate; commands pipelined after
  STARTTLS are discarded (the session inside TLS has no MAIL)
- the server never crashes (a sanitizer report in its stderr fails)

Standard library only; certtool (gnutls-bin) makes the certificate.
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Client, Results, parse_args  # noqa: E402


class Minimal:
    """One smtpd-minimal process; stdout (the messages) and stderr kept."""

    def __init__(self, binary, tmp, *args):
        self.out = os.path.join(tmp, f"stdout{len(os.listdir(tmp))}")
        self.err = self.out + ".err"
        self.proc = subprocess.Popen(
            [binary, "0", *args], stdout=open(self.out, "wb"),
            stderr=open(self.err, "wb"))
        deadline = time.time() + 10
        while time.time() < deadline:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.stderr())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("smtpd-minimal did not start: " + self.stderr())

    def stderr(self):
        with open(self.err, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout(self):
        with open(self.out, "rb") as f:
            return f.read()

    def wait_messages(self, n, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline and \
                self.stdout().count(b"-- end of message") < n:
            time.sleep(0.02)
        return self.stdout().count(b"-- end of message") >= n

    def stop(self):
        """SIGTERM; the status it died with (-15 when it was still fine)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "timeout"


def make_cert(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    tmpl = os.path.join(tmp, "cert.tmpl")
    with open(tmpl, "w") as f:
        f.write('cn = "mx.example.org"\ndns_name = "mx.example.org"\n'
                "expiration_days = 30\ntls_www_server\nsigning_key\n")
    subprocess.run(["certtool", "--generate-privkey", "--key-type", "ecdsa",
                    "--outfile", key], check=True, capture_output=True)
    subprocess.run(["certtool", "--generate-self-signed", "--load-privkey", key,
                    "--template", tmpl, "--outfile", cert], check=True,
                   capture_output=True)
    return cert, key


def tls_ctx(maxver=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if maxver:
        ctx.maximum_version = maxver
    return ctx


# smtplib dot-stuffs it on the wire; the server prints it as it was
BODY = (b"Subject: minimal\r\n\r\nfirst line\r\n.leading dot\r\n"
        b"..two dots\r\nlast line\r\n")


def sane(r, srv, what):
    err = srv.stderr()
    r.check(f"{what}: no sanitizer report",
            "Sanitizer" not in err and "runtime error" not in err, err[-800:])


def test_plain(r, binary, tmp):
    srv = Minimal(binary, tmp)
    try:
        # 1. smtplib: accepted and refused recipients in one message
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as s:
            code, banner = s.ehlo("client.example")
            r.check("plain: EHLO 250", code == 250, banner)
            r.check("plain: STARTTLS not offered without a certificate",
                    not s.has_extn("starttls"))
            refused = s.sendmail("a@sender.test",
                                 ["ann@example.org", "Bob@EXAMPLE.ORG",
                                  "nobody@elsewhere.test"], BODY)
            r.check("plain: one recipient refused with 550 5.1.1",
                    refused == {"nobody@elsewhere.test":
                                (550, b"5.1.1 No such user here")}, refused)
        r.check("plain: message printed", srv.wait_messages(1), srv.stdout())
        out = srv.stdout()
        r.check("plain: body byte for byte, dots unstuffed",
                out.startswith(BODY + b"-- end of message") and b"-- end of message from <a@sender.test>\n" in out,
                out[:300])

        # 2. every recipient refused
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as s:
            try:
                s.sendmail("a@sender.test", ["x@elsewhere.test"], BODY)
                ok = False
            except smtplib.SMTPRecipientsRefused as e:
                ok = e.recipients == {"x@elsewhere.test":
                                      (550, b"5.1.1 No such user here")}
            r.check("plain: all refused -> SMTPRecipientsRefused", ok)

        # 3. the exact conversation on a bare socket, pipelined
        c = Client(srv.port)
        r.check("raw: greeting", c.reply() == b"220 mx.example.org ESMTP\r\n")
        ehlo = c.cmd(b"EHLO raw.example")
        r.check("raw: EHLO lists PIPELINING",
                ehlo.startswith(b"250-mx.example.org") and
                b"PIPELINING" in ehlo, ehlo)
        c.send(b"MAIL FROM:<r@sender.test>\r\nRCPT TO:<zed@example.org>\r\n"
               b"RCPT TO:<no@where.test>\r\nDATA\r\n")
        got = [c.reply() for _ in range(4)]
        r.check("raw: pipelined replies", got == [
            b"250 2.1.0 Ok\r\n", b"250 2.1.5 Ok\r\n",
            b"550 5.1.1 No such user here\r\n",
            b"354 End data with <CR><LF>.<CR><LF>\r\n"], got)
        r.check("raw: end of data", c.cmd(b"raw body\r\n.") ==
                b"250 2.0.0 Ok: queued\r\n")
        r.check("raw: QUIT", c.cmd(b"QUIT") == b"221 2.0.0 Bye\r\n")
        r.check("raw: server closes after QUIT", c.closed())
        c.close()
        r.check("raw: message printed", srv.wait_messages(2))

        # 4. a client that hangs up mid-DATA, then the next one is served
        c = Client(srv.port)
        c.reply()
        c.cmd(b"EHLO gone.example")
        c.cmd(b"MAIL FROM:<g@sender.test>")
        c.cmd(b"RCPT TO:<g@example.org>")
        c.cmd(b"DATA")
        c.send(b"Subject: cut\r\n\r\nhalf a mess")
        c.close()
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as s:
            s.sendmail("n@sender.test", ["next@example.org"],
                       b"Subject: next\r\n\r\nafter the cut\r\n")
        r.check("hang-up: the next client is served", srv.wait_messages(3))
        out = srv.stdout()
        r.check("hang-up: the cut message never completed",
                out.count(b"-- end of message") == 3 and
                b"after the cut\r\n-- end of message from <n@sender.test>"
                in out, out[-300:])
        sane(r, srv, "plain")
    finally:
        st = srv.stop()
        r.check("plain: server was running until stopped",
                st == -signal.SIGTERM, st)


def test_tls(r, binary, tmp):
    if not shutil.which("certtool"):
        print("SKIP: TLS part (certtool not installed)")
        return
    cert, key = make_cert(tmp)
    srv = Minimal(binary, tmp, cert, key)
    try:
        n = 0
        for name, ver in (("TLS 1.3", None),
                          ("TLS 1.2", ssl.TLSVersion.TLSv1_2)):
            with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as s:
                s.ehlo("tls.example")
                r.check(f"{name}: STARTTLS offered", s.has_extn("starttls"))
                code, _ = s.starttls(context=tls_ctx(ver))
                r.check(f"{name}: 220 to STARTTLS", code == 220, code)
                want = "TLSv1.3" if ver is None else "TLSv1.2"
                r.check(f"{name}: negotiated", s.sock.version() == want,
                        s.sock.version())
                s.ehlo("tls.example")
                r.check(f"{name}: STARTTLS not offered again",
                        not s.has_extn("starttls"))
                s.sendmail("t@sender.test", ["tls@example.org"],
                           f"Subject: {name}\r\n\r\nsecret\r\n".encode())
            n += 1
            r.check(f"{name}: message printed", srv.wait_messages(n))
            r.check(f"{name}: body",
                    f"Subject: {name}\r\n\r\nsecret\r\n".encode()
                    in srv.stdout())

        # commands pipelined behind STARTTLS are discarded
        c = Client(srv.port)
        c.reply()
        c.cmd(b"EHLO inject.example")
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@sender.test>\r\n")
        r.check("injection: 220", c.reply() == b"220 2.0.0 Ready to start TLS\r\n")
        tls = tls_ctx().wrap_socket(c.sock, server_hostname="mx.example.org")
        tls.sendall(b"RCPT TO:<victim@example.org>\r\n")
        rep = tls.recv(4096)
        r.check("injection: no MAIL inside TLS (503)",
                rep.startswith(b"503 5.5.1"), rep)
        tls.sendall(b"QUIT\r\n")
        r.check("injection: QUIT inside TLS",
                tls.recv(4096) == b"221 2.0.0 Bye\r\n")
        tls.close()

        if shutil.which("swaks"):
            p = subprocess.run(["swaks", "--server", f"127.0.0.1:{srv.port}",
                                "-tls", "--from", "s@sender.test",
                                "--to", "swaks@example.org"],
                               capture_output=True, timeout=60)
            out = p.stdout + p.stderr
            if b"Net::SSLeay" in out or b"not available" in out:
                print("SKIP: swaks -tls (Net::SSLeay missing)")
            else:
                r.check("swaks -tls: exit 0", p.returncode == 0, out[-600:])
                r.check("swaks -tls: message printed",
                        srv.wait_messages(n + 1))
        sane(r, srv, "tls")
    finally:
        st = srv.stop()
        r.check("tls: server was running until stopped",
                st == -signal.SIGTERM, st)


def main():
    args = parse_args()
    r = Results("minimal")
    tmp = tempfile.mkdtemp(prefix="smtpd-minimal-")
    try:
        p = subprocess.run([args.server], capture_output=True)
        r.check("usage on bad arguments", p.returncode == 2 and
                b"usage:" in p.stderr, p.stderr)
        test_plain(r, args.server, tmp)
        test_tls(r, args.server, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()
