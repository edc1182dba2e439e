#!/usr/bin/env python3
"""test_lmtp.py - smtpd-maildir --lmtp against real LMTP clients.

  - Python's smtplib.LMTP over TCP and over a UNIX socket (--listen
    unix:PATH): LHLO, three recipients, one refused by the host
    (--reject-rcpt): after DATA exactly one reply per recipient, in
    order (250, 550 5.1.1, 250); one file whose X-Envelope-To fields name
    the two delivered recipients; Received: "with LMTP"; HELO/EHLO 500
  - BDAT LAST in LMTP mode: one reply per recipient as well
  - a private Postfix instance (own config_directory, queue_directory,
    port; the system Postfix is never touched) relays a two-recipient
    message over an lmtp:inet: transport with one recipient refused:
    Postfix's log shows status=sent for one and status=bounced with our
    550 5.1.1 "in reply to end of DATA command" for the other
"""
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time

from common import (Client, Results, Server, parse_args, read,
                    split_envelope)

REFUSED = "eve@example.net"


def lmtp_session(r, lmtp, srv, label):
    code, _ = lmtp.ehlo("client.example")  # smtplib.LMTP sends LHLO
    r.check(f"{label}: LHLO accepted", code == 250, code)
    r.check(f"{label}: LHLO advertises PIPELINING/CHUNKING",
            lmtp.has_extn("pipelining") and lmtp.has_extn("chunking"))
    before = set(srv.new_files())
    lmtp.mail("alice@example.org")
    rcpts = ["bob@example.net", REFUSED, "carol@example.net"]
    for rc in rcpts:
        code, _ = lmtp.rcpt(rc)
        r.check(f"{label}: RCPT {rc} accepted (decided at end of data)",
                code == 250, code)
    first = lmtp.data(b"Subject: lmtp\r\n\r\nper recipient\r\n")
    replies = [first] + [lmtp.getreply() for _ in rcpts[1:]]
    codes = [c for c, _ in replies]
    r.check(f"{label}: one reply per recipient, in order",
            codes == [250, 550, 250], replies)
    r.check(f"{label}: refused recipient gets 5.1.1",
            replies[1][1].startswith(b"5.1.1"), replies[1])
    files = [f for f in srv.wait_files(len(before) + 1) if f not in before]
    r.check(f"{label}: one file delivered", len(files) == 1, files)
    if files:
        data = read(files[0])
        rec, env, rest = split_envelope(data)
        r.check(f"{label}: Received: with LMTP", b"with LMTP" in (rec or b""),
                rec)
        r.check(f"{label}: X-Envelope-To names the delivered recipients",
                env == ["X-Envelope-From: <alice@example.org>",
                        "X-Envelope-To: <bob@example.net>",
                        "X-Envelope-To: <carol@example.net>"], env)
        r.check(f"{label}: body intact",
                rest == b"Subject: lmtp\r\n\r\nper recipient\r\n", rest)
    code, _ = lmtp.docmd("EHLO", "client.example")
    r.check(f"{label}: EHLO refused in LMTP mode (500)", code == 500, code)
    code, _ = lmtp.docmd("HELO", "client.example")
    r.check(f"{label}: HELO refused in LMTP mode (500)", code == 500, code)


def lmtp_bdat(r, srv):
    c = Client(srv.port)
    c.reply()
    c.cmd(b"LHLO client.example")
    body = b"Subject: bdat\r\n\r\nchunked lmtp\r\n"
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.net>\r\n"
           b"RCPT TO:<eve@example.net>\r\n"
           + b"BDAT %d LAST\r\n" % len(body) + body)
    rep = [c.reply() for _ in range(5)]
    r.check("BDAT LAST: one reply per recipient",
            rep[0].startswith(b"250") and rep[1].startswith(b"250") and
            rep[2].startswith(b"250") and rep[3].startswith(b"250 2.0.0") and
            rep[4].startswith(b"550 5.1.1"), rep)
    c.cmd(b"QUIT")
    c.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


MASTER_CF = """\
{smtpd_addr} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_test(r, binary):
    postfix = shutil.which("postfix") or "/usr/sbin/postfix"
    if not os.access(postfix, os.X_OK):
        print("SKIP: postfix not installed (Postfix LMTP part)")
        return
    srv = Server(binary, ["--lmtp", "--reject-rcpt", REFUSED,
                          "--hostname", "lmtp.test"])
    tmp = tempfile.mkdtemp(prefix="smtpd-postfix-")
    conf = os.path.join(tmp, "conf")
    os.makedirs(conf)
    port = free_port()
    maillog = os.path.join(tmp, "maillog")
    pf = None
    started = False
    try:
        with open(os.path.join(conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(smtpd_addr=f"127.0.0.1:{port}"))
        main_cf = {
            "compatibility_level": "3.6",
            "queue_directory": os.path.join(tmp, "queue"),
            "data_directory": os.path.join(tmp, "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "postfix.test",
            "mydestination": "",
            "relay_domains": "example.net",
            "relay_transport": f"lmtp:inet:127.0.0.1:{srv.port}",
            "mynetworks": "127.0.0.0/8",
            "maillog_file": maillog,
            "maillog_file_prefixes": tmp,
            "smtputf8_enable": "no",
            "alias_maps": "", "alias_database": "",
            "smtpd_banner": "$myhostname ESMTP private-test-instance",
            "lmtp_host_lookup": "native",
            "delay_warning_time": "0",
            # nothing leaves this instance but the LMTP relay: the bounce
            # for the refused recipient fails locally, no DNS, no network
            "default_transport": "error:private test instance",
        }
        with open(os.path.join(conf, "main.cf"), "w") as f:
            for k, v in main_cf.items():
                f.write(f"{k} = {v}\n")
        os.makedirs(os.path.join(tmp, "data"))
        os.makedirs(os.path.join(tmp, "queue"))
        shutil.chown(os.path.join(tmp, "data"), "postfix", "postfix")
        os.chmod(tmp, 0o755)
        pf = subprocess.run([postfix, "-c", conf, "start"],
                            capture_output=True, text=True, timeout=60)
        started = pf.returncode == 0
        if not r.check("private Postfix instance starts", started,
                       pf.stdout + pf.stderr + (open(maillog).read()
                                                if os.path.exists(maillog)
                                                else "")):
            return
        # wait for its smtpd port
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            refused = s.sendmail("alice@example.org",
                                 ["bob@example.net", REFUSED],
                                 b"Subject: via postfix\r\n\r\nhello\r\n")
        r.check("Postfix accepts both recipients from its client",
                refused == {}, refused)
        deadline = time.time() + 30
        text = ""
        while time.time() < deadline:
            text = open(maillog).read() if os.path.exists(maillog) else ""
            if "to=<bob@example.net>" in text and f"to=<{REFUSED}>" in text:
                break
            time.sleep(0.2)
        lines = [l for l in text.splitlines() if "lmtp[" in l]
        ok_line = [l for l in lines if "to=<bob@example.net>" in l]
        bad_line = [l for l in lines if f"to=<{REFUSED}>" in l]
        r.check("Postfix log: bob status=sent by our 250",
                any("status=sent" in l and "250 2.0.0 Ok: delivered as" in l
                    for l in ok_line), ok_line or text[-2000:])
        r.check("Postfix log: eve status=bounced by our 550 5.1.1 after DATA",
                any("status=bounced" in l and "550 5.1.1" in l and
                    "end of DATA" in l for l in bad_line),
                bad_line or text[-2000:])
        files = srv.wait_files(1)
        r.check("exactly one file delivered through Postfix",
                len(files) == 1, files)
        if files:
            data = read(files[0])
            r.check("file names bob only, Received: with LMTP",
                    b"X-Envelope-To: <bob@example.net>" in data and
                    REFUSED.encode() not in data and b"with LMTP" in data,
                    data[:400])
    finally:
        if started:
            subprocess.run([postfix, "-c", conf, "stop"],
                           capture_output=True, timeout=60)
        r.check("LMTP server behind Postfix exits cleanly", srv.stop() == 0,
                srv.log_text())
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    args = parse_args()
    r = Results("lmtp")
    tmp = tempfile.mkdtemp(prefix="smtpd-lmtp-")
    sock = os.path.join(tmp, "lmtp.sock")
    srv = Server(args.server, ["--lmtp", "--reject-rcpt", REFUSED,
                               "--listen", f"unix:{sock}"])
    try:
        with smtplib.LMTP("127.0.0.1", srv.port, timeout=10) as lmtp:
            lmtp_session(r, lmtp, srv, "LMTP over TCP")
        with smtplib.LMTP(sock, timeout=10) as lmtp:
            lmtp_session(r, lmtp, srv, "LMTP over a UNIX socket")
        lmtp_bdat(r, srv)
        before = set(srv.new_files())
        with smtplib.LMTP(sock, timeout=10) as lmtp:
            lmtp.sendmail("jösé@exämple.org", ["ñandú@exämple.net"],
                          "Subject: utf8\r\n\r\nhola\r\n".encode(),
                          mail_options=["SMTPUTF8"])
        files = [f for f in srv.wait_files(len(before) + 1)
                 if f not in before]
        rec = split_envelope(read(files[0]))[0] if files else b""
        r.check("SMTPUTF8 over LMTP: Received: with UTF8LMTP",
                b"with UTF8LMTP" in (rec or b""), rec)
    finally:
        r.check("server exits cleanly", srv.stop() == 0, srv.log_text())
        r.check("UNIX socket removed at shutdown", not os.path.exists(sock))
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    postfix_test(r, args.server)
    r.finish()


if __name__ == "__main__":
    main()
