#!/usr/bin/env python3
"""test_tls.py - smtpd-maildir with STARTTLS and implicit TLS (RFC 3207,
RFC 8314) against real clients: Python smtplib.starttls() (TLS 1.2 and
1.3) and SMTP_SSL, gnutls-cli --starttls-proto=smtp, swaks -tls. Also:
STARTTLS injection (pipelined plaintext after STARTTLS is never
answered), garbage instead of a ClientHello, a client that closes during
the handshake. STARTTLS when the server cannot set up TLS for the
connection (SMTPD_MAILDIR_FAULT=starttls-setup): exactly "454 4.7.0 TLS
not available due to local problem", the session goes on in plaintext
and delivers (raw socket, smtplib, swaks --tls-optional), and a later
STARTTLS on the same connection works; without TLS configured, STARTTLS
gets 502. Skipped (77) when the server was built without TLS.
"""

import os
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SKIP, Client, Results, Server, parse_args, read, split_received  # noqa: E402


def client_ctx(maxver=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if maxver:
        ctx.maximum_version = maxver
    return ctx


def make_cert(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    tmpl = os.path.join(tmp, "cert.tmpl")
    with open(tmpl, "w") as f:
        f.write('cn = "mx.test.example"\ndns_name = "mx.test.example"\n'
                "expiration_days = 30\ntls_www_server\nsigning_key\n"
                "encryption_key\n")
    subprocess.run(["certtool", "--generate-privkey", "--key-type", "ecdsa",
                    "--outfile", key], check=True, capture_output=True)
    subprocess.run(["certtool", "--generate-self-signed", "--load-privkey", key,
                    "--template", tmpl, "--outfile", cert], check=True,
                   capture_output=True)
    return cert, key


def newest_received(srv, before):
    files = [f for f in srv.new_files() if f not in before]
    if len(files) != 1:
        return None, None
    return split_received(read(files[0]))


def gnutls_cli_session(port):
    """gnutls-cli does EHLO and STARTTLS itself, then relays stdin (LF made
    CRLF by --crlf). Its output is block-buffered, so the lines are paced
    with pauses instead of waiting for each reply. Returns its output."""
    p = subprocess.Popen(["gnutls-cli", "--insecure", "--crlf",
                          "--starttls-proto=smtp", "--port", str(port),
                          "127.0.0.1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        for line in (b"EHLO gnutls.example", b"MAIL FROM:<g@example.org>",
                     b"RCPT TO:<h@example.org>", b"DATA", b"Subject: gnutls",
                     b"", b"via gnutls-cli", b".", b"QUIT"):
            time.sleep(0.3)
            p.stdin.write(line + b"\n")
            p.stdin.flush()
        time.sleep(0.3)
        out, _ = p.communicate(timeout=10)
    except (subprocess.TimeoutExpired, OSError):
        p.kill()
        out, _ = p.communicate()
    return out


REPLY_454 = b"454 4.7.0 TLS not available due to local problem\r\n"


def test_starttls_unavailable(r, server):
    """The TLS object for STARTTLS cannot be made (a fault injected in the
    server): 454, and the plaintext session goes on."""
    bad = subprocess.run([server, "--listen", "127.0.0.1:0"],
                         env=dict(os.environ, SMTPD_MAILDIR_FAULT="no-such"),
                         capture_output=True, text=True, timeout=10)
    r.check("unknown SMTPD_MAILDIR_FAULT refused", bad.returncode == 2,
            (bad.returncode, bad.stderr))
    # the first three STARTTLS setups fail, later ones work
    srv = Server(server, ["--selfsigned", "--hostname", "mx.test.example"],
                 env={"SMTPD_MAILDIR_FAULT": "starttls-setup:3"})
    try:
        r.check("fault injection announced in the log",
                "test fault injection: starttls-setup:3" in srv.log_text(),
                srv.log_text())
        # 1. raw socket: the exact reply, then a plaintext transaction
        c = Client(srv.port)
        c.reply()
        ehlo = c.cmd(b"EHLO raw.example")
        r.check("454: STARTTLS advertised", b"250-STARTTLS\r\n" in ehlo, ehlo)
        rep = c.cmd(b"STARTTLS")
        r.check("454: exact reply", rep == REPLY_454, rep)
        r.check("454: still plaintext (NOOP answered)",
                c.cmd(b"NOOP").startswith(b"250 "))
        r.check("454: EHLO still offers STARTTLS",
                b"250-STARTTLS\r\n" in c.cmd(b"EHLO raw.example"))
        before = srv.new_files()
        reps = [c.cmd(b"MAIL FROM:<p@example.org>"),
                c.cmd(b"RCPT TO:<q@example.org>"), c.cmd(b"DATA"),
                c.cmd(b"Subject: raw\r\n\r\nplain after 454\r\n.")]
        r.check("454: plaintext transaction accepted",
                [x[:3] for x in reps] == [b"250", b"250", b"354", b"250"], reps)
        r.check("454: QUIT answered in plaintext",
                c.cmd(b"QUIT").startswith(b"221 "))
        r.check("454: connection closed after QUIT", c.closed())
        c.close()
        rec, rest = newest_received(srv, before)
        r.check("454: delivered without TLS", rec is not None and
                b"with ESMTP " in rec and b"ESMTPS" not in rec and
                rest == b"Subject: raw\r\n\r\nplain after 454\r\n", rec)

        # 2. smtplib: starttls() raises 454, sendmail in plaintext, then a
        #    second STARTTLS on the same connection succeeds
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as s:
            s.ehlo("smtplib.example")
            try:
                s.starttls(context=client_ctx())
                got = None
            except smtplib.SMTPResponseException as e:
                got = (e.smtp_code, e.smtp_error)
            r.check("smtplib: starttls() gets 454 4.7.0",
                    got == (454, b"4.7.0 TLS not available due to local problem"),
                    got)
            before = srv.new_files()
            s.sendmail("a@example.org", ["b@example.org"],
                       b"Subject: smtplib\r\n\r\nplain\r\n")
            rec, rest = newest_received(srv, before)
            r.check("smtplib: delivered in plaintext after 454",
                    rec is not None and b"ESMTPS" not in rec and
                    rest == b"Subject: smtplib\r\n\r\nplain\r\n", rec)
            # the third setup fails too: a second 454 on the same session
            s.ehlo("smtplib.example")
            try:
                s.starttls(context=client_ctx())
                got = None
            except smtplib.SMTPResponseException as e:
                got = e.smtp_code
            r.check("smtplib: second STARTTLS, second 454", got == 454, got)
            s.ehlo("smtplib.example")
            r.check("smtplib: STARTTLS still advertised",
                    s.has_extn("starttls"))
            s.starttls(context=client_ctx())
            r.check("smtplib: third STARTTLS negotiates TLS",
                    s.sock.version() in ("TLSv1.2", "TLSv1.3"),
                    s.sock.version())
            s.ehlo("smtplib.example")
            before = srv.new_files()
            s.sendmail("a@example.org", ["b@example.org"],
                       b"Subject: tls\r\n\r\nnow encrypted\r\n")
            rec, rest = newest_received(srv, before)
            r.check("smtplib: then delivered with ESMTPS",
                    rec is not None and b"with ESMTPS" in rec, rec)
        log = srv.log_text()
        r.check("454s logged", log.count("STARTTLS refused") == 3, log[-600:])
    finally:
        st = srv.stop()
        r.check("454 server exits 0", st == 0, st)
        srv.cleanup()

    # 3. no TLS configured at all: not offered, and 502 as Postfix (0.1
    #    answered 454 here)
    srv = Server(server)
    try:
        c = Client(srv.port)
        c.reply()
        ehlo = c.cmd(b"EHLO notls.example")
        r.check("no TLS: STARTTLS not advertised", b"STARTTLS" not in ehlo, ehlo)
        rep = c.cmd(b"STARTTLS")
        r.check("no TLS: STARTTLS gets 502 5.5.1",
                rep == b"502 5.5.1 Error: command not implemented\r\n", rep)
        r.check("no TLS: session goes on", c.cmd(b"NOOP").startswith(b"250 "))
        c.close()
    finally:
        st = srv.stop()
        r.check("no-TLS server exits 0", st == 0, st)
        srv.cleanup()

    # 4. swaks --tls-optional against a server that never can: 454, then
    #    the message goes through in plaintext
    srv = Server(server, ["--selfsigned"],
                 env={"SMTPD_MAILDIR_FAULT": "starttls-setup"})
    try:
        out = subprocess.run(["swaks", "--server", f"127.0.0.1:{srv.port}",
                              "--tls-optional", "--to", "a@example.org",
                              "--timeout", "10"],
                             capture_output=True, text=True, timeout=60)
        if "requires Net::SSLeay" in out.stdout + out.stderr:
            print("note: swaks --tls-optional skipped (install libnet-ssleay-perl)")
        else:
            r.check("swaks --tls-optional: sees 454 4.7.0",
                    "<** 454 4.7.0 TLS not available due to local problem"
                    in out.stdout, out.stdout[-600:])
            r.check("swaks --tls-optional: exits 0", out.returncode == 0,
                    out.stdout[-600:])
            files = srv.wait_files(1)
            rec = split_received(read(files[0]))[0] if len(files) == 1 else None
            r.check("swaks --tls-optional: delivered in plaintext",
                    rec is not None and b"ESMTPS" not in rec, rec)
    finally:
        st = srv.stop()
        r.check("always-454 server exits 0", st == 0, st)
        srv.cleanup()


def main():
    args = parse_args()
    probe = subprocess.run([args.server, "--help"], capture_output=True, text=True)
    if "STARTTLS with this certificate and key (not built)" in probe.stdout:
        print("SKIP: server built without TLS")
        sys.exit(SKIP)
    r = Results("tls")
    tmp = tempfile.mkdtemp(prefix="smtpd-tls-")
    cert, key = make_cert(tmp)
    srv = Server(args.server, ["--cert", cert, "--key", key,
                               "--hostname", "mx.test.example",
                               "--tls-listen", "127.0.0.1:0"], tmp=tmp)
    plain, implicit = srv.ports[0], srv.ports[1]
    try:
        # 1. smtplib STARTTLS, TLS 1.3 and TLS 1.2
        for ver, name in ((None, "TLSv1.3"), (ssl.TLSVersion.TLSv1_2, "TLSv1.2")):
            before = srv.new_files()
            with smtplib.SMTP("127.0.0.1", plain, timeout=10) as c:
                c.ehlo("tls.example")
                r.check(f"{name}: STARTTLS advertised", c.has_extn("starttls"))
                c.starttls(context=client_ctx(ver))
                got = c.sock.version()
                r.check(f"{name}: negotiated", got == name, got)
                c.ehlo("tls.example")
                r.check(f"{name}: STARTTLS not offered again",
                        not c.has_extn("starttls"))
                body = f"Subject: {name}\r\n\r\nover {name}\r\n.dot\r\n".encode()
                c.sendmail("a@example.org", ["b@example.org"], body)
            rec, rest = newest_received(srv, before)
            r.check(f"{name}: body intact", rest == body, rest)
            r.check(f"{name}: Received: with ESMTPS and cipher", rec is not None and
                    b"with ESMTPS" in rec and name.encode() in rec and
                    b"cipher" in rec, rec)

        # 2. implicit TLS (SMTP_SSL)
        before = srv.new_files()
        with smtplib.SMTP_SSL("127.0.0.1", implicit, timeout=10,
                              context=client_ctx()) as c:
            code, _ = c.ehlo("implicit.example")
            r.check("implicit TLS: EHLO 250", code == 250)
            r.check("implicit TLS: no STARTTLS offered", not c.has_extn("starttls"))
            c.sendmail("a@example.org", ["b@example.org"], b"Subject: ssl\r\n\r\nssl\r\n")
        rec, rest = newest_received(srv, before)
        r.check("implicit TLS: delivered with ESMTPS", rec is not None and
                b"with ESMTPS" in rec and rest == b"Subject: ssl\r\n\r\nssl\r\n", rec)

        # 3. gnutls-cli --starttls-proto=smtp
        if subprocess.run(["which", "gnutls-cli"], capture_output=True).returncode == 0:
            before = srv.new_files()
            out = gnutls_cli_session(plain)
            replies = re.findall(rb"^(\d{3})[ -]", out, re.M)
            r.check("gnutls-cli: EHLO, MAIL, RCPT, DATA, end, QUIT answered",
                    [x for x in replies if x != b"250"] == [b"354", b"221"] and
                    b"STARTTLS" not in out.split(b"8BITMIME")[-1], out[-400:])
            rec, rest = newest_received(srv, before)
            r.check("gnutls-cli: message delivered over TLS", rec is not None
                    and b"with ESMTPS" in rec and b"via gnutls-cli" in rest, rec)

        # 4. swaks -tls (needs Net::SSLeay)
        before = srv.new_files()
        out = subprocess.run(["swaks", "--server", f"127.0.0.1:{plain}", "-tls",
                              "--to", "a@example.org", "--timeout", "10"],
                             capture_output=True, text=True)
        if "requires Net::SSLeay" in out.stdout + out.stderr:
            print("note: swaks -tls skipped (install libnet-ssleay-perl)")
        else:
            rec, rest = newest_received(srv, before)
            r.check("swaks -tls delivers with ESMTPS", out.returncode == 0 and
                    rec is not None and b"with ESMTPS" in rec, out.stdout[-300:])

        # 5. STARTTLS injection: plaintext pipelined after STARTTLS is
        #    dropped; after the handshake the server says nothing first
        for inject in (b"RSET\r\n", b"EHLO evil\r\n",
                       b"MAIL FROM:<x@evil>\r\nRCPT TO:<y@evil>\r\nDATA\r\n"):
            c = Client(plain)
            c.reply()
            c.cmd(b"EHLO inj.example")
            c.send(b"STARTTLS\r\n" + inject)
            rep = c.reply()
            r.check(f"injection {inject[:4]!r}: 220 to STARTTLS", rep.startswith(b"220"), rep)
            tls = client_ctx().wrap_socket(c.sock, server_hostname="mx.test.example")
            tls.settimeout(0.5)
            try:
                early = tls.recv(100)
            except (socket.timeout, TimeoutError):
                early = b""
            r.check(f"injection {inject[:4]!r}: nothing answered in TLS", early == b"",
                    early)
            tls.settimeout(5)
            tls.sendall(b"MAIL FROM:<a@example.org>\r\n")
            rep = tls.recv(1000)
            r.check(f"injection {inject[:4]!r}: state reset, EHLO needed",
                    rep.startswith(b"503"), rep)
            tls.close()

        # 6. garbage instead of a ClientHello; close during the handshake
        c = Client(implicit)
        c.send(b"EHLO this is not TLS\r\n" * 10)
        r.check("garbage ClientHello: connection closed", c.closed())
        c.close()
        c = Client(plain)
        c.reply()
        c.cmd(b"EHLO x")
        c.cmd(b"STARTTLS")
        c.send(b"\x16\x03\x01\x00")  # a record header, then hang up
        c.close()
        time.sleep(0.2)
        with smtplib.SMTP_SSL("127.0.0.1", implicit, timeout=10,
                              context=client_ctx()) as s:
            r.check("server fine after broken handshakes", s.noop()[0] == 250)
        log = srv.log_text()
        r.check("handshake failures logged", log.count("session end") >= 2, log[-400:])
    finally:
        st = srv.stop()
        r.check("server exits 0", st == 0, st)
        srv.cleanup()
    test_starttls_unavailable(r, args.server)
    r.finish()


if __name__ == "__main__":
    main()
