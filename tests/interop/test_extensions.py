#!/usr/bin/env python3
"""test_extensions.py - smtpd-maildir's ESMTP extensions on the wire.

What it proves, against the real server on a free port:
  - EHLO advertises SIZE, PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, DSN,
    SMTPUTF8, CHUNKING, BINARYMIME, LIMITS by default; STARTTLS and
    REQUIRETLS only with TLS configured
  - a pipelined multi-chunk BDAT message, sent in one write, with
    "\\r\\n.\\r\\n" inside a chunk, arrives byte for byte; each chunk is
    answered in order and a command pipelined behind a chunk is a command
  - a BODY=BINARYMIME body with NUL, bare CR, bare LF and "\\r\\n.\\r\\n"
    arrives byte for byte; DATA with BODY=BINARYMIME gets 503 5.5.1
  - DSN: RET/ENVID and per-recipient NOTIFY/ORCPT land in the delivered
    file's X-Envelope-From / X-Envelope-To fields; a bad NOTIFY gets 501
  - SMTPUTF8 through smtplib: UTF-8 addresses, Received: "with UTF8SMTP"
  - REQUIRETLS: 530 5.7.10 in plaintext; under STARTTLS (smtplib) the
    file carries X-Envelope-RequireTLS: yes and "with ESMTPS"
"""
import smtplib
import ssl

from common import Client, Results, Server, parse_args, read, split_envelope


def envelope_and_body(data):
    """(received, [X-Envelope-* lines], body) of a delivered file."""
    return split_envelope(data)


def ehlo_keywords(reply):
    return [l[4:].decode().split(" ")[0] for l in reply.split(b"\r\n")[1:]
            if l]


def main():
    args = parse_args()
    r = Results("extensions")
    srv = Server(args.server)
    try:
        c = Client(srv.port)
        r.check("greeting", c.reply().startswith(b"220 "))
        kw = ehlo_keywords(c.cmd(b"EHLO client.example"))
        for k in ("SIZE", "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
                  "DSN", "SMTPUTF8", "CHUNKING", "BINARYMIME", "LIMITS"):
            r.check(f"EHLO advertises {k}", k in kw, kw)
        r.check("no STARTTLS/REQUIRETLS without TLS",
                "STARTTLS" not in kw and "REQUIRETLS" not in kw, kw)

        # pipelined multi-chunk BDAT, all in one write
        chunks = [b"Subject: chunked\r\n\r\nfirst line\r\n.\r\n",
                  b"a dot line above stays data\r\n..two dots\r\n",
                  b"last chunk without a final line end"]
        wire = (b"MAIL FROM:<alice@example.org>\r\n"
                b"RCPT TO:<bob@example.net>\r\n")
        for i, ch in enumerate(chunks):
            last = b" LAST" if i == len(chunks) - 1 else b""
            wire += b"BDAT %d%s\r\n" % (len(ch), last) + ch
        wire += b"NOOP\r\n"
        c.send(wire)
        replies = [c.reply() for _ in range(2 + len(chunks) + 1)]
        r.check("MAIL/RCPT accepted",
                replies[0].startswith(b"250") and
                replies[1].startswith(b"250"), replies[:2])
        for i, ch in enumerate(chunks[:-1]):
            r.check(f"chunk {i} answered with its size",
                    replies[2 + i] ==
                    b"250 2.0.0 Ok: %d octets received\r\n" % len(ch),
                    replies[2 + i])
        r.check("BDAT LAST queued",
                replies[2 + len(chunks) - 1].startswith(b"250 2.0.0 Ok: queued"),
                replies[2 + len(chunks) - 1])
        r.check("NOOP after the last chunk is a command",
                replies[-1].startswith(b"250"), replies[-1])
        files = srv.wait_files(1)
        _, env, body = envelope_and_body(read(files[0])) if files else \
            (None, [], b"")
        r.check("BDAT body byte for byte", body == b"".join(chunks),
                repr(body[:200]))
        r.check("X-Envelope-From written",
                "X-Envelope-From: <alice@example.org>" in env, env)

        # BINARYMIME: every octet is data
        binary = (b"Content-Type: application/octet-stream\r\n\r\n"
                  b"\x00NUL\rbare CR\nbare LF\r\n.\r\n\x00\xff\x80end")
        c.send(b"MAIL FROM:<alice@example.org> BODY=BINARYMIME\r\n"
               b"RCPT TO:<bob@example.net>\r\n"
               + b"BDAT 10\r\n" + binary[:10]
               + b"BDAT %d LAST\r\n" % (len(binary) - 10) + binary[10:])
        rep = [c.reply() for _ in range(4)]
        r.check("BINARYMIME message accepted",
                all(x.startswith(b"250") for x in rep), rep)
        files = srv.wait_files(2)
        newest = [f for f in files if b"BINARYMIME" not in b"" and
                  b"octet-stream" in read(f)]
        body = envelope_and_body(read(newest[0]))[2] if newest else b""
        r.check("BINARYMIME body (NUL, bare CR/LF, CRLF.CRLF) byte for byte",
                body == binary, repr(body[:120]))
        r.check("DATA with BODY=BINARYMIME: 503 5.5.1",
                c.cmd(b"MAIL FROM:<a@example.org> BODY=BINARYMIME")
                .startswith(b"250") and
                c.cmd(b"RCPT TO:<b@example.net>").startswith(b"250") and
                c.cmd(b"DATA").startswith(b"503 5.5.1"))
        c.cmd(b"RSET")

        # DSN parameters recorded per message and per recipient
        before = set(srv.new_files())
        c.send(b"MAIL FROM:<alice@example.org> RET=HDRS ENVID=QQ+2B1\r\n"
               b"RCPT TO:<dave@example.net>\r\n"
               b"RCPT TO:<bob@example.net> NOTIFY=SUCCESS,DELAY "
               b"ORCPT=rfc822;bob+40example.net\r\n"
               b"RCPT TO:<carol@example.net> NOTIFY=NEVER\r\n"
               b"BDAT 16 LAST\r\nSubject: dsn\r\n\r\n")
        rep = [c.reply() for _ in range(5)]
        r.check("DSN transaction accepted",
                all(x.startswith(b"250") for x in rep), rep)
        files = [f for f in srv.wait_files(3) if f not in before]
        env = envelope_and_body(read(files[0]))[1] if files else []
        r.check("RET and ENVID recorded",
                "X-Envelope-From: <alice@example.org>; RET=HDRS; ENVID=QQ+2B1"
                in env, env)
        r.check("a recipient without DSN parameters before them: none "
                "recorded", "X-Envelope-To: <dave@example.net>" in env, env)
        r.check("NOTIFY and ORCPT recorded for the second recipient",
                "X-Envelope-To: <bob@example.net>; NOTIFY=SUCCESS,DELAY; "
                "ORCPT=rfc822;bob@example.net" in env, env)
        r.check("NOTIFY=NEVER recorded for the third recipient",
                "X-Envelope-To: <carol@example.net>; NOTIFY=NEVER" in env,
                env)
        m = c.cmd(b"MAIL FROM:<a@example.org>")
        x = c.cmd(b"RCPT TO:<b@example.net> NOTIFY=NEVER,SUCCESS")
        r.check("NOTIFY=NEVER,SUCCESS refused with 501 5.5.4",
                m.startswith(b"250") and x.startswith(b"501 5.5.4"), (m, x))
        c.cmd(b"RSET")
        x = c.cmd(b"MAIL FROM:<a@example.org> REQUIRETLS")
        r.check("REQUIRETLS without TLS configured: 555 5.5.4",
                x.startswith(b"555 5.5.4"), x)
        c.cmd(b"QUIT")
        c.close()

        # SMTPUTF8 through smtplib
        before = set(srv.new_files())
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as s:
            s.sendmail("jösé@exämple.org", ["ñandú@exämple.net"],
                       "Subject: utf8\r\n\r\nhola\r\n".encode(),
                       mail_options=["SMTPUTF8"])
        files = [f for f in srv.wait_files(len(before) + 1)
                 if f not in before]
        rec, env, _ = envelope_and_body(read(files[0])) if files else \
            (b"", [], b"")
        r.check("SMTPUTF8: Received: with UTF8SMTP", b"with UTF8SMTP" in
                (rec or b""), rec)
        r.check("SMTPUTF8: UTF-8 envelope kept",
                "X-Envelope-From: <jösé@exämple.org>" in env and
                "X-Envelope-To: <ñandú@exämple.net>" in env, env)
    finally:
        r.check("server exits cleanly", srv.stop() == 0, srv.log_text())
        srv.cleanup()

    # REQUIRETLS under STARTTLS
    srv = Server(args.server, ["--selfsigned", "--hostname", "mx.test"])
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as s:
            s.ehlo()
            r.check("STARTTLS advertised with --selfsigned",
                    s.has_extn("starttls") and not s.has_extn("requiretls"))
            code, msg = s.docmd("MAIL FROM:<a@example.org> REQUIRETLS")
            r.check("REQUIRETLS in plaintext: 530 5.7.10",
                    code == 530 and msg.startswith(b"5.7.10"), (code, msg))
            s.rset()
            s.starttls(context=ctx)
            s.ehlo()
            r.check("REQUIRETLS advertised under TLS", s.has_extn("requiretls"))
            s.sendmail("a@example.org", ["b@example.net"],
                       b"Subject: rt\r\n\r\nsecret\r\n",
                       mail_options=["REQUIRETLS"])
        files = srv.wait_files(1)
        rec, env, _ = envelope_and_body(read(files[0])) if files else \
            (b"", [], b"")
        r.check("REQUIRETLS recorded", "X-Envelope-RequireTLS: yes" in env,
                env)
        r.check("Received: with ESMTPS", b"with ESMTPS" in (rec or b""), rec)
    finally:
        r.check("TLS server exits cleanly", srv.stop() == 0, srv.log_text())
        srv.cleanup()
    r.finish()


if __name__ == "__main__":
    main()
