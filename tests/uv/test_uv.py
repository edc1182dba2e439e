#!/usr/bin/env python3
"""libsmtpd-uv against real clients (ctest: uv_*).

test_uv.py --hello UV_HELLO --testd UV_TESTD CASE

examples/uv-hello is driven by smtplib (STARTTLS, AUTH), swaks and
Postfix's smtp-source; tests/uv/uv-testd by raw sockets for deferred
decisions, a client that never reads, a client that drops mid-DATA, the
connection caps, graceful shutdown, implicit TLS, UNIX and IPv6 sockets.
Exit 0 pass, 1 fail, 77 skipped (a client program is missing).
"""
import argparse
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---- servers -----------------------------------------------------------------

class Server:
    """A server process; its stdout lines are collected by a thread."""

    def __init__(self, argv, env=None):
        self.lines = []
        self.cv = threading.Condition()
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                  stderr=self.err, env=env, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.lines.append(None)
            self.cv.notify_all()

    def wait_line(self, pred, timeout=20):
        end = time.time() + timeout
        with self.cv:
            while True:
                for l in self.lines:
                    if l is not None and pred(l):
                        return l
                left = end - time.time()
                if left <= 0 or None in self.lines:
                    return None
                self.cv.wait(left)

    def count(self, prefix):
        with self.cv:
            return sum(1 for l in self.lines if l and l.startswith(prefix))

    def rss_kb(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if sig is not None and self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise Fail("server did not stop within %ds" % timeout)
        err = self.stderr()
        check("ERROR: AddressSanitizer" not in err and
              "runtime error" not in err and "LeakSanitizer" not in err,
              "sanitizer report:\n" + err)
        check(rc == 0, "server exit status %s; stderr:\n%s" % (rc, err))


def testd(args, extra=()):
    s = Server([args.testd] + list(extra))
    check(s.wait_line(lambda l: l == "ready") is not None,
          "uv-testd did not start: " + s.stderr())
    s.port = int(s.wait_line(lambda l: l.startswith("port ")).split()[1])
    return s


def hello(args, maildir):
    for d in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(maildir, d), exist_ok=True)
    env = dict(os.environ, UV_HELLO_USER="bob", UV_HELLO_PASS="s3cret")
    err = tempfile.TemporaryFile()
    p = subprocess.Popen([args.hello, "0", maildir], stderr=err, env=env)
    end = time.time() + 20
    port = None
    while time.time() < end and port is None:
        err.seek(0)
        for line in err.read().decode().splitlines():
            if line.startswith("listening on "):
                port = int(line.rsplit(":", 1)[1])
        time.sleep(0.05)
    check(port, "uv-hello did not start")

    class H:
        pass
    h = H()
    h.p, h.port, h.err = p, port, err

    def stop():
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
        err.seek(0)
        text = err.read().decode(errors="replace")
        check("Sanitizer" not in text and "runtime error" not in text,
              "sanitizer report:\n" + text)
        check(rc == 0, "uv-hello exit status %s: %s" % (rc, text))
    h.stop = stop
    return h


def delivered(maildir):
    d = os.path.join(maildir, "new")
    return sorted(os.path.join(d, f) for f in os.listdir(d))


def wait_files(maildir, n, timeout=30):
    end = time.time() + timeout
    while time.time() < end and len(delivered(maildir)) < n:
        time.sleep(0.05)
    return delivered(maildir)


# ---- a raw SMTP client ----------------------------------------------------------

class Raw:
    def __init__(self, port=None, family=socket.AF_INET, addr=None,
                 src=None, path=None):
        if path:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(20)
            self.s.connect(path)
        else:
            self.s = socket.socket(family, socket.SOCK_STREAM)
            self.s.settimeout(20)
            if src:
                self.s.bind((src, 0))
            self.s.connect((addr or "127.0.0.1", port))
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("connection closed; have %r" % self.buf)
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode()

    def reply(self):
        """the last line of one (multi-line) reply"""
        while True:
            l = self.line()
            if len(l) < 4 or l[3] != "-":
                return l

    def send(self, data):
        self.s.sendall(data.encode() if isinstance(data, str) else data)

    def cmd(self, c):
        self.send(c + "\r\n")
        return self.reply()

    def closed(self, timeout=20):
        """True once the server closed the connection (after any lines)"""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, ConnectionResetError):
            return False

    def close(self):
        self.s.close()


def session(c, rcpts=("u@example.org",), body="Subject: t\r\n\r\nhello\r\n"):
    check(c.reply().startswith("220"), "greeting")
    check(c.cmd("EHLO client.example").startswith("250"), "EHLO")
    check(c.cmd("MAIL FROM:<a@example.net>").startswith("250"), "MAIL")
    for r in rcpts:
        check(c.cmd("RCPT TO:<%s>" % r).startswith("250"), "RCPT")
    check(c.cmd("DATA").startswith("354"), "DATA")
    r = c.cmd(body + ".")
    check(r.startswith("250"), "end of data: " + r)
    return r


# ---- cases: uv-hello -------------------------------------------------------------

def case_hello_smtplib(args):
    with tempfile.TemporaryDirectory() as md:
        h = hello(args, md)
        msg1 = "Subject: one\r\n\r\nline 1\r\n.leading dot\r\n"
        msg2 = "Subject: two\r\n\r\n" + "x" * 5000 + "\r\n"
        s = smtplib.SMTP("127.0.0.1", h.port, timeout=20)
        code, text = s.ehlo()
        check(code == 250 and b"STARTTLS" in text, "EHLO offers STARTTLS")
        check(b"AUTH" not in text, "no AUTH before TLS")
        s.sendmail("a@example.net", ["u@example.org"], msg1)
        try:
            s.sendmail("a@example.net", ["u@elsewhere.test"], msg2)
            raise Fail("relay accepted without AUTH")
        except smtplib.SMTPRecipientsRefused as e:
            check(e.recipients["u@elsewhere.test"][0] == 554, "554 relay")
        s.starttls(context=tls_ctx())
        code, text = s.ehlo()
        check(b"AUTH PLAIN LOGIN" in text, "AUTH offered under TLS")
        try:
            s.login("bob", "wrong")
            raise Fail("bad password accepted")
        except smtplib.SMTPAuthenticationError:
            pass
        s.login("bob", "s3cret")
        s.sendmail("a@example.net", ["u@elsewhere.test"], msg2)
        s.quit()
        files = wait_files(md, 2)
        check(len(files) == 2, "2 messages delivered, not %d" % len(files))
        bodies = sorted(open(f, "rb").read() for f in files)
        check(sorted([msg1.encode(), msg2.encode()]) == bodies,
              "messages intact")
        h.stop()


def case_hello_swaks(args):
    if not shutil.which("swaks"):
        return SKIP
    with tempfile.TemporaryDirectory() as md:
        h = hello(args, md)
        base = ["swaks", "--server", "127.0.0.1", "--port", str(h.port),
                "--from", "a@example.net", "--h-Subject", "swaks"]
        r = subprocess.run(base + ["--to", "u@example.org"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "swaks plain: " + r.stdout + r.stderr)
        r = subprocess.run(base + ["--to", "u@elsewhere.test", "--tls",
                                   "--auth", "LOGIN", "--auth-user", "bob",
                                   "--auth-password", "s3cret"],
                           capture_output=True, text=True, timeout=60)
        if "TLS" in r.stderr and "not available" in r.stderr:
            return SKIP  # swaks without Net::SSLeay
        check(r.returncode == 0, "swaks TLS+AUTH: " + r.stdout + r.stderr)
        check("250" in r.stdout and "235" in r.stdout, "235 and 250 seen")
        r = subprocess.run(base + ["--to", "u@elsewhere.test"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode != 0 and "554" in r.stdout, "relay refused")
        check(len(wait_files(md, 2)) == 2, "2 messages delivered")
        h.stop()


def case_hello_smtp_source(args):
    src = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not os.access(src, os.X_OK):
        return SKIP
    n, sessions, size = 2000, 20, 2048
    with tempfile.TemporaryDirectory() as md:
        h = hello(args, md)
        t0 = time.time()
        r = subprocess.run([src, "-s", str(sessions), "-m", str(n), "-l",
                            str(size), "-f", "a@example.net", "-t",
                            "u@example.org", "127.0.0.1:%d" % h.port],
                           capture_output=True, text=True, timeout=240)
        check(r.returncode == 0, "smtp-source: " + r.stdout + r.stderr)
        files = wait_files(md, n)
        check(len(files) == n, "%d of %d messages delivered" % (len(files), n))
        sizes = set()
        for f in files:
            data = open(f, "rb").read()
            check(data.endswith(b"\r\n"), "message ends with CRLF: " + f)
            body = data.split(b"\r\n\r\n", 1)
            check(len(body) == 2, "header and body: " + f)
            sizes.add(len(body[1]))
        check(len(sizes) == 1 and min(sizes) >= size,
              "bodies intact (sizes %s)" % sorted(sizes)[:5])
        print("%d messages over %d sessions in %.2fs" % (n, sessions,
                                                         time.time() - t0))
        h.stop()


def case_hello_shutdown_load(args):
    """SIGTERM while 10 clients send: every acknowledged message is kept"""
    with tempfile.TemporaryDirectory() as md:
        h = hello(args, md)
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def client(k):
            try:
                s = smtplib.SMTP("127.0.0.1", h.port, timeout=20)
                i = 0
                while True:
                    mid = "m-%d-%d" % (k, i)
                    s.sendmail("a@example.net", ["u@example.org"],
                               "Subject: %s\r\n\r\n%s\r\n" % (mid, "z" * 3000))
                    with lock:
                        acked.append(mid)
                    i += 1
            except (smtplib.SMTPException, OSError):
                pass  # the 421, or the connection closed
        threads = [threading.Thread(target=client, args=(k,)) for k in range(10)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        h.p.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        rc = h.p.wait(30)
        check(rc == 0, "uv-hello exit status %s" % rc)
        got = set()
        for f in delivered(md):
            data = open(f, "rb").read().decode()
            got.add(data.split("Subject: ", 1)[1].split("\r\n", 1)[0])
        missing = [m for m in acked if m not in got]
        print("%d messages acknowledged before the shutdown, %d delivered"
              % (len(acked), len(got)))
        check(len(acked) > 0, "messages were sent")
        check(not missing, "acknowledged but lost: %s" % missing[:5])
        check(not os.listdir(os.path.join(md, "tmp")), "no file left in tmp/")


# ---- cases: uv-testd --------------------------------------------------------------

def case_defer_rcpt(args):
    s = testd(args, ["--defer-rcpt", "400"])
    c = Raw(s.port)
    check(c.reply().startswith("220"), "greeting")
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<a@example.net>")
    # while the RCPT waits on its timer, another client is served at once
    result = {}

    def rcpt():
        t = time.time()
        result["ok"] = c.cmd("RCPT TO:<u@example.org>")
        result["t"] = time.time() - t
        result["deny"] = c.cmd("RCPT TO:<deny@example.org>")
    th = threading.Thread(target=rcpt)
    th.start()
    time.sleep(0.1)
    d = Raw(s.port)
    t = time.time()
    check(d.reply().startswith("220"), "second client greeted")
    check(d.cmd("NOOP").startswith("250"), "second client served")
    check(time.time() - t < 0.3, "the loop is not blocked by the pause")
    d.close()
    th.join(10)
    check(result.get("ok", "").startswith("250"), "deferred RCPT accepted")
    check(result["t"] >= 0.35, "RCPT answered after the timer (%.2fs)"
          % result["t"])
    check(result["deny"].startswith("5"), "deferred RCPT refused")
    # pipelined: input kept while paused is fed after the resume
    c.send("RSET\r\nMAIL FROM:<b@example.net>\r\nRCPT TO:<v@example.org>\r\n"
           "DATA\r\n")
    check(c.reply().startswith("250"), "RSET")
    check(c.reply().startswith("250"), "MAIL")
    check(c.reply().startswith("250"), "RCPT (deferred, pipelined)")
    check(c.reply().startswith("354"), "DATA")
    check(c.cmd("Subject: d\r\n\r\nbody\r\n.").startswith("250"), "queued")
    check(c.cmd("QUIT").startswith("221"), "QUIT")
    check(c.closed(), "closed after QUIT")
    check(s.wait_line(lambda l: l.startswith("delivered")), "delivered")
    s.stop()


def case_async_body(args):
    """on_body defers while a uv_fs_write stores the chunk"""
    d = tempfile.mkdtemp()
    path = os.path.join(d, "bodies")
    try:
        s = testd(args, ["--async-body", path])
        msgs = ["Subject: a%d\r\n\r\n" % i +
                "".join(".line %d %s\r\n" % (k, "b" * (k % 90))
                        for k in range(3000 * (i + 1)))
                for i in range(3)]
        c = smtplib.SMTP("127.0.0.1", s.port, timeout=30)
        for m in msgs:
            c.sendmail("a@example.net", ["u@example.org"], m)
        c.quit()
        end = time.time() + 10
        while time.time() < end and s.count("delivered") < 3:
            time.sleep(0.05)
        check(s.count("delivered") == 3, "3 messages delivered")
        s.stop()
        data = open(path, "rb").read()
        check(data == "".join(msgs).encode(), "bodies written intact "
              "(%d of %d octets)" % (len(data), len("".join(msgs))))
    finally:
        shutil.rmtree(d)


def case_never_reads(args):
    s = testd(args, ["--timeout", "2000"])
    warm = Raw(s.port)
    session(warm)
    warm.close()
    time.sleep(0.3)
    rss0 = s.rss_kb()
    c = Raw(s.port)
    check(c.reply().startswith("220"), "greeting")
    check(c.cmd("EHLO x").startswith("250"), "EHLO")
    # RSET may be pipelined anywhere (RFC 2920): each one is answered, and
    # the answers are never read
    c.s.setblocking(False)
    chunk = b"RSET\r\n" * 10000
    sent, stalled = 0, None
    end = time.time() + 30
    while time.time() < end:
        try:
            sent += c.s.send(chunk)
            stalled = None
        except BlockingIOError:
            if stalled is None:
                stalled = time.time()
            elif time.time() - stalled > 1.0:
                break
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            break
    rss1 = s.rss_kb()
    print("client pushed %d octets without reading; server RSS %d -> %d kB"
          % (sent, rss0, rss1))
    check(rss1 - rss0 < 16 * 1024, "server memory bounded (grew %d kB)"
          % (rss1 - rss0))
    # the session's timeouts end it: 421, then given up on
    end = time.time() + 30
    while time.time() < end and s.count("closed") < 2:
        time.sleep(0.05)
    check(s.count("closed") == 2, "connection closed by the timeouts")
    check(stalled is not None, "the client's writes stalled (backpressure)")
    print("closed %.1fs after the client stalled" % (time.time() - stalled))
    c.close()
    # and the server goes on serving
    d = Raw(s.port)
    session(d)
    d.close()
    s.stop()


def case_deadline(args):
    """a command line trickled in: the line deadline ends it, the idle
    timer (restarted by every octet) would not"""
    s = testd(args, ["--line-deadline", "1500", "--timeout", "1000"])
    c = Raw(s.port)
    check(c.reply().startswith("220"), "greeting")
    t = time.time()
    reply = None
    line = "EHLO " + "x" * 100
    sent = 0
    try:
        for ch in line:
            c.send(ch)
            sent += 1
            c.s.settimeout(0.3)
            try:
                d = c.s.recv(1000)
                if d:
                    reply = d.decode()
                    break
            except socket.timeout:
                pass
    except OSError:
        pass
    took = time.time() - t
    check(reply and reply.startswith("421 4.4.2"), "421 4.4.2: %r" % reply)
    # the trickle takes 0.3 s an octet, about 31 s: the cut comes in its
    # middle, and not before the 1.5 s deadline
    check(took > 1.4 and sent < len(line),
          "after the line deadline (%.1fs, %d of %d octets sent)"
          % (took, sent, len(line)))
    # the idle timeout alone: a silent client
    d = Raw(s.port)
    check(d.reply().startswith("220"), "greeting")
    t = time.time()
    r = d.reply()
    check(r.startswith("421 4.4.2"), "idle 421: " + r)
    check(time.time() - t > 0.9, "not before the idle timeout")
    check(d.closed(), "closed")
    s.stop()


def case_drop_mid_data(args):
    s = testd(args)
    for how in ("fin", "rst"):
        c = Raw(s.port)
        check(c.reply().startswith("220"), "greeting")
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<a@example.net>")
        c.cmd("RCPT TO:<u@example.org>")
        check(c.cmd("DATA").startswith("354"), "DATA")
        c.send("Subject: cut\r\n\r\n" + "y" * 100000 + "\r\npartial")
        time.sleep(0.2)
        if how == "rst":
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                           b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    end = time.time() + 10
    while time.time() < end and s.count("closed") < 2:
        time.sleep(0.05)
    check(s.count("closed") == 2, "both connections closed")
    check(s.count("delivered") == 0, "nothing delivered from a cut message")
    d = Raw(s.port)
    session(d)
    d.close()
    check(s.wait_line(lambda l: l.startswith("delivered")), "next delivered")
    s.stop()


def case_caps(args):
    s = testd(args, ["--max-per-addr", "2", "--max-sessions", "3"])
    a = [Raw(s.port), Raw(s.port)]
    for c in a:
        check(c.reply().startswith("220"), "first two greeted")
    c = Raw(s.port)
    r = c.reply()
    check(r == "421 4.7.0 Error: too many connections from 127.0.0.1" or
          r.startswith("421 4.7.0") and "too many connections from 127.0.0.1"
          in r, "per-address cap: " + r)
    check(c.closed(), "closed after the 421")
    try:
        b = Raw(s.port, src="127.0.0.2")
    except OSError:
        return SKIP  # no 127.0.0.2 here
    check(b.reply().startswith("220"), "third session from another address")
    e = Raw(s.port, src="127.0.0.3")
    r = e.reply()
    check(r.startswith("421 4.7.0") and "too many sessions" in r,
          "max sessions: " + r)
    check(e.closed(), "closed after the 421")
    a[0].cmd("QUIT")
    check(a[0].closed(), "QUIT")
    time.sleep(0.2)
    f = Raw(s.port)
    check(f.reply().startswith("220"), "room again after a close")
    for x in (a[1], b, f):
        x.close()
    s.stop()


def case_shutdown(args):
    s = testd(args, ["--shutdown-ms", "3000"])
    idle = Raw(s.port)
    check(idle.reply().startswith("220"), "greeting")
    idle.cmd("EHLO x")
    busy = Raw(s.port)
    check(busy.reply().startswith("220"), "greeting")
    busy.cmd("EHLO x")
    busy.cmd("MAIL FROM:<a@example.net>")
    busy.cmd("RCPT TO:<u@example.org>")
    check(busy.cmd("DATA").startswith("354"), "DATA")
    busy.send("Subject: in flight\r\n\r\nfirst half\r\n")
    stuck = Raw(s.port)
    check(stuck.reply().startswith("220"), "greeting")
    stuck.cmd("EHLO x")
    stuck.cmd("MAIL FROM:<a@example.net>")
    s.p.send_signal(signal.SIGTERM)
    r = idle.reply()
    check(r.startswith("421"), "idle client told 421: " + r)
    check(idle.closed(), "idle client closed")
    time.sleep(0.3)
    try:
        n = Raw(s.port)
        n.s.settimeout(2)
        got = n.s.recv(100)
        check(not got, "no new connection accepted: %r" % got)
    except (ConnectionRefusedError, ConnectionResetError, OSError):
        pass
    busy.send("second half\r\n.\r\n")
    r = busy.reply()
    check(r.startswith("250"), "open transaction finished: " + r)
    r = busy.reply()
    check(r.startswith("421"), "then 421: " + r)
    check(busy.closed(), "busy client closed")
    check(s.wait_line(lambda l: l.startswith("delivered")), "delivered")
    t = time.time()
    r = stuck.reply()
    check(r.startswith("421"), "stuck transaction answered 421 at the "
          "deadline: " + r)
    check(time.time() - t < 5, "within the deadline")
    check(s.wait_line(lambda l: l == "shutdown done"), "shutdown done")
    s.stop(sig=None)


def case_implicit_tls(args):
    s = testd(args, ["--implicit"])
    port = int(s.wait_line(lambda l: l.startswith("implicit ")).split()[1])
    c = smtplib.SMTP_SSL("127.0.0.1", port, context=tls_ctx(), timeout=20)
    c.ehlo()
    check(not c.has_extn("starttls"), "no STARTTLS under implicit TLS")
    c.sendmail("a@example.net", ["u@example.org"], "Subject: tls\r\n\r\nx\r\n")
    c.quit()
    # STARTTLS on the plain port too
    p = smtplib.SMTP("127.0.0.1", s.port, timeout=20)
    p.starttls(context=tls_ctx())
    p.sendmail("a@example.net", ["u@example.org"], "Subject: st\r\n\r\ny\r\n")
    p.quit()
    # a TLS client that gives up during the handshake
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(b"\x16\x03\x01\x00\x05hello")
    raw.close()
    end = time.time() + 10
    while time.time() < end and s.count("delivered") < 2:
        time.sleep(0.05)
    check(s.count("delivered") == 2, "both delivered")
    check(s.wait_line(lambda l: l.startswith("closed"), 10), "closed")
    s.stop()


def case_unix(args):
    d = tempfile.mkdtemp()
    path = os.path.join(d, "smtpd.sock")
    try:
        s = testd(args, ["--unix", path])
        c = Raw(path=path)
        session(c)
        c.cmd("QUIT")
        c.close()
        check(s.wait_line(lambda l: l.startswith("delivered")), "delivered")
        check(s.wait_line(lambda l: l == "closed unix"), "closed")
        s.stop()
    finally:
        shutil.rmtree(d)


def case_ipv6(args):
    s = testd(args, ["--ipv6"])
    l = s.wait_line(lambda l: l.startswith("ipv6 "))
    if l == "ipv6 none":
        s.stop()
        return SKIP
    port = int(l.split()[1])
    c = Raw(port, family=socket.AF_INET6, addr="::1")
    session(c)
    c.cmd("QUIT")
    c.close()
    check(s.wait_line(lambda l: l == "closed ::1"), "client address ::1")
    s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hello", required=True)
    ap.add_argument("--testd", required=True)
    ap.add_argument("case")
    args = ap.parse_args()
    fn = globals().get("case_" + args.case)
    if not fn:
        print("unknown case " + args.case)
        return 2
    try:
        rc = fn(args)
    except Fail as e:
        print("FAIL: %s" % e)
        return 1
    if rc == SKIP:
        print("skipped")
        return SKIP
    print("ok: " + args.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
