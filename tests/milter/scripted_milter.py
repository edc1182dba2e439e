#!/usr/bin/python3
"""scripted_milter.py - a real Milter (Python's `milter` module, libmilter
underneath) that plays one scenario per SMTP connection, for
tests/milter/test_milter.py.

    scripted_milter.py SOCKET LOG [--noreply]

SOCKET is a libmilter socket spec (unix:/path or inet:PORT@127.0.0.1).
The scenario is the first label of the HELO name ("addheader.test"), or
"accept-connect" when the client's name is accept-connect.test. Every
callback is appended to LOG as one line ("helo addheader.test"), so the
test can tell what the client sent. With --noreply the filter asks for
no replies to CONNECT, HELO, MAIL, RCPT, DATA, headers, EOH and body
(protocol 6 NR_* steps) and sets its macro lists with SETSYMLIST.
"""
import sys
import time

import Milter

LOG = None


def log(*words):
    with open(LOG, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\n")


class Scripted(Milter.Base):
    def __init__(self):
        self.sc = ""
        self.body_chunks = 0

    def connect(self, hostname, family, hostaddr):
        log("connect", hostname, hostaddr[0] if hostaddr else "-",
            self.getsymval("j"), self.getsymval("{client_addr}"))
        if hostname == "accept-connect.test":
            return Milter.ACCEPT
        return Milter.CONTINUE

    def hello(self, name):
        self.sc = name.split(".")[0]
        log("helo", name)
        return Milter.CONTINUE

    def envfrom(self, f, *params):
        log("mail", f, *params, self.getsymval("{mail_addr}"),
            self.getsymval("i"))
        if self.sc == "reject-mail":
            return Milter.REJECT
        if self.sc == "accept-mail":
            return Milter.ACCEPT
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        log("rcpt", to, *params)
        if self.sc == "tempfail-rcpt" and "later@" in to:
            return Milter.TEMPFAIL
        if self.sc == "replycode-rcpt" and "bad@" in to:
            self.setreply("550", "5.7.1", "Go away")
            return Milter.REJECT
        if self.sc == "discard-rcpt":
            return Milter.DISCARD
        return Milter.CONTINUE

    def data(self):
        log("data")
        return Milter.CONTINUE

    def header(self, name, value):
        log("header", name, repr(value))
        return Milter.CONTINUE

    def eoh(self):
        log("eoh")
        return Milter.CONTINUE

    def body(self, chunk):
        self.body_chunks += 1
        log("body", len(chunk))
        if self.sc == "skip":
            return Milter.SKIP
        return Milter.CONTINUE

    def eom(self):
        sc = self.sc
        log("eom", sc)
        if sc == "reject-eom":
            return Milter.REJECT
        if sc == "tempfail-eom":
            return Milter.TEMPFAIL
        if sc == "discard-eom":
            return Milter.DISCARD
        if sc == "accept-eom":
            return Milter.ACCEPT
        if sc == "replycode-eom":
            self.setreply("554", "5.7.1", "line one", "line two")
            return Milter.REJECT
        if sc == "progress":
            for _ in range(3):
                self.progress()
                time.sleep(0.3)
        if sc == "addheader":
            self.addheader("X-Scripted", "added")
        if sc == "insheader":
            self.addheader("X-Inserted", "at the top", 0)
        if sc == "chgheader":
            self.chgheader("Subject", 1, "changed subject")
        if sc == "delheader":
            self.chgheader("X-Remove", 1, None)
        if sc == "chgfrom":
            self.chgfrom("<new-sender@example.org>", "BODY=8BITMIME")
        if sc == "addrcpt":
            self.addrcpt("<added@example.org>")
        if sc == "addrcpt-par":
            self.addrcpt("<added@example.org>", "NOTIFY=NEVER")
        if sc == "delrcpt":
            self.delrcpt("<b@example.org>")
        if sc == "replbody":
            self.replacebody(b"The body was replaced.\r\n")
        if sc == "quarantine":
            self.quarantine("held by test")
        return Milter.CONTINUE

    def abort(self):
        log("abort")
        return Milter.CONTINUE

    def close(self):
        log("close")
        return Milter.CONTINUE


class NoReply(Milter.Base):
    """Asks for no replies wherever protocol 6 allows."""

    def negotiate(self, opts):
        # as Milter.Base.negotiate, with the macro list set here: this
        # pymilter's @symlist passes bytes where its C part wants str
        self._actions, p, _, _ = opts
        self._ctx.setsymlist(Milter.M_CONNECT, "{client_addr} j")
        opts[1] = self._protocol = p & ~self.protocol_mask()
        opts[2] = opts[3] = 0
        return Milter.CONTINUE

    @Milter.noreply
    def connect(self, hostname, family, hostaddr):
        log("nr-connect", hostname, self.getsymval("{client_addr}"),
            self.getsymval("j"), self.getsymval("{daemon_name}"))
        return Milter.CONTINUE

    @Milter.noreply
    def hello(self, name):
        log("nr-helo", name)
        return Milter.CONTINUE

    @Milter.noreply
    def envfrom(self, f, *params):
        log("nr-mail", f)
        return Milter.CONTINUE

    @Milter.noreply
    def envrcpt(self, to, *params):
        log("nr-rcpt", to)
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name, value):
        log("nr-header", name)
        return Milter.CONTINUE

    @Milter.noreply
    def eoh(self):
        log("nr-eoh")
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk):
        log("nr-body", len(chunk))
        return Milter.CONTINUE

    def eom(self):
        log("nr-eom")
        self.addheader("X-NoReply", "seen")
        return Milter.CONTINUE


def main():
    global LOG
    sock, LOG = sys.argv[1], sys.argv[2]
    cls = NoReply if "--noreply" in sys.argv[3:] else Scripted
    Milter.factory = cls
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY |
                     Milter.ADDRCPT | Milter.ADDRCPT_PAR | Milter.DELRCPT |
                     Milter.CHGFROM | Milter.QUARANTINE | Milter.SETSYMLIST)
    Milter.runmilter("scripted", sock, 240)


if __name__ == "__main__":
    main()
