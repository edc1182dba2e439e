#!/usr/bin/env python3
"""test_milter.py - smtpd-maildir --milter against real filters.

    test_milter.py --server PATH/smtpd-maildir

The filter is tests/milter/scripted_milter.py (a libmilter filter written
with Debian's python3-milter) playing the scenario named by the HELO name;
messages are sent with smtplib and the Maildir file is checked byte for
byte: the spool the server wrote (Received:, X-Envelope-* fields, the
message) with the filter's edits applied, nothing else changed.

  edits        ADDHEADER, INSHEADER (above the server's own fields),
               CHGHEADER, delete, REPLBODY, also on a 330 KB message, by
               BDAT and pipelined; envelope edits and QUARANTINE are
               logged, not written; ACCEPT, SKIP, PROGRESS; two filters
               in a chain (UNIX and inet sockets) each add their field,
               in order; OpenDKIM signs, OpenDKIM verifies (dkim=pass)
  replies      REJECT at MAIL, REPLYCODE for one recipient only (the
               others delivered), TEMPFAIL at RCPT, multi-line REPLYCODE
               and REJECT at the end of message, DISCARD (250, no file)
  down         a filter not listening: --milter-default-action tempfail
               (421 at connect), reject (554), accept (delivered as is);
               filters that close mid-body, send garbage or an oversized
               packet: the default action at that command
  responsive   a filter that accepts but never answers holds one session
               until --milter-timeout; another session is answered at
               once in the meantime (the event loop never blocks), then
               the held one gets the default action

Exits 77 (skipped) when python3-milter is not installed or the server was
built without the Milter adapter.
"""
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (SKIP, Client, Results, Server, parse_args,  # noqa: E402
                    read)

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTED = os.path.join(HERE, "..", "milter", "scripted_milter.py")
PY_MILTER = "/usr/bin/python3"  # the interpreter python3-milter is for

MESSAGE = (b"From: Alice <a@example.org>\r\n"
           b"To: Bob <b@example.org>\r\n"
           b"Subject: original subject\r\n"
           b"X-Remove: please\r\n"
           b"X-Folded: first\r\n"
           b"\tsecond\r\n"
           b"Message-ID: <1@example.org>\r\n"
           b"\r\n"
           b"Hello Bob,\r\n"
           b".this line starts with a dot.\r\n"
           b"Bye.\r\n")
HEAD, BODY = MESSAGE.split(b"\r\n\r\n", 1)

# what the server puts above the message: Received: (folded) and the
# X-Envelope-* fields
PREFIX_RE = re.compile(rb"\AReceived: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*"
                       rb"(?:X-Envelope-[A-Za-z]+: [^\r\n]*\r\n)*\Z")


def have_pymilter():
    try:
        return subprocess.run([PY_MILTER, "-c", "import Milter"],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def wait_connect(addr, proc, seconds=15):
    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            s = socket.socket(socket.AF_UNIX if isinstance(addr, str)
                              else socket.AF_INET)
            s.connect(addr)
            s.close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def send(port, scenario, rcpts=("b@example.org",), message=MESSAGE):
    """(refused recipients or the exception, error) of one smtplib run"""
    c = smtplib.SMTP("127.0.0.1", port, local_hostname=scenario + ".test",
                     timeout=20)
    try:
        return c.sendmail("a@example.org", list(rcpts), message), None
    except smtplib.SMTPException as e:
        return None, e
    finally:
        try:
            c.quit()
        except smtplib.SMTPException:
            pass


def split_prefix(data):
    """(server prefix, message) of a delivered file"""
    i = data.find(b"From: Alice")
    if i < 0:
        return None, data
    return data[:i], data[i:]


class Run:
    def __init__(self, r, srv):
        self.r, self.srv = r, srv
        self.seen = set(srv.new_files())

    def fresh(self, wait=True):
        files = self.srv.wait_files(len(self.seen) + 1, timeout=5 if wait
                                    else 0.3)
        new = [f for f in files if f not in self.seen]
        self.seen.update(new)
        return [read(f) for f in new]


def group_edits(r, binary, sock, port2):
    srv = Server(binary, ["--milter", "unix:" + sock, "--milter-timeout",
                          "10"])
    try:
        run = Run(r, srv)

        def delivered(scenario, **kw):
            res, err = send(srv.port, scenario, **kw)
            files = run.fresh(wait=err is None)
            return res, err, files

        res, err, files = delivered("continue")
        ok = len(files) == 1
        pre, msg = split_prefix(files[0]) if ok else (None, None)
        r.check("CONTINUE: the message lands unchanged after the server's "
                "fields", ok and msg == MESSAGE and pre is not None and
                PREFIX_RE.match(pre), (err, files))

        def edited(scenario, expect, what):
            res, err, files = delivered(scenario)
            if len(files) != 1:
                r.check(what, False, (res, err, files))
                return
            pre, msg = split_prefix(files[0])
            r.check(what, pre is not None and PREFIX_RE.match(pre) and
                    msg == expect, (files[0], expect))

        edited("addheader", HEAD + b"\r\nX-Scripted: added\r\n\r\n" + BODY,
               "ADDHEADER: field appended to the header section, byte for "
               "byte")
        res, err, files = delivered("insheader")
        top = b"X-Inserted: at the top\r\n"
        rest = files[0][len(top):] if len(files) == 1 else b""
        pre, msg = split_prefix(rest)
        r.check("INSHEADER 0: above the server's Received:, rest unchanged",
                len(files) == 1 and files[0].startswith(top) and
                pre is not None and PREFIX_RE.match(pre) and msg == MESSAGE,
                (res, err, files))
        edited("chgheader", MESSAGE.replace(b"original subject",
                                            b"changed subject"),
               "CHGHEADER: Subject value replaced in place")
        edited("delheader", MESSAGE.replace(b"X-Remove: please\r\n", b""),
               "CHGHEADER with no value: field deleted")
        edited("replbody", HEAD + b"\r\n\r\nThe body was replaced.\r\n",
               "REPLBODY: body replaced, headers kept")
        edited("chgfrom", MESSAGE,
               "CHGFROM: envelope edit, the file is unchanged")
        r.check("CHGFROM: logged as an ignored envelope edit",
                srv.wait_log("envelope edits ignored", 1), srv.log_text())
        for sc in ("addrcpt", "addrcpt-par", "delrcpt"):
            edited(sc, MESSAGE, f"{sc.upper()}: envelope edit, the file is "
                   "unchanged")
        r.check("envelope edits logged each time",
                srv.wait_log("envelope edits ignored", 4), srv.log_text())
        edited("quarantine", MESSAGE,
               "QUARANTINE: delivered unchanged, the request logged")
        r.check("QUARANTINE logged", srv.wait_log("asked for quarantine", 1),
                srv.log_text())
        for sc, what in (("accept-mail", "ACCEPT at MAIL"),
                         ("accept-eom", "ACCEPT at end of message"),
                         ("skip", "SKIP after the first body chunk"),
                         ("progress", "PROGRESS three times, then CONTINUE")):
            edited(sc, MESSAGE, f"{what}: delivered unchanged")

        res, err, files = delivered("reject-mail")
        r.check("REJECT at MAIL: 550 5.7.1, nothing stored",
                isinstance(err, smtplib.SMTPSenderRefused) and
                err.smtp_code == 550 and not files, (err, files))

        res, err, files = delivered("replycode-rcpt",
                                    rcpts=("bad@example.org",
                                           "b@example.org"))
        pre, msg = split_prefix(files[0]) if len(files) == 1 else (b"", b"")
        r.check("REPLYCODE at RCPT: that recipient refused with the "
                "filter's text, the other delivered",
                res == {"bad@example.org": (550, b"5.7.1 Go away")} and
                msg == MESSAGE and b"X-Envelope-To: <b@example.org>" in pre
                and b"bad@" not in pre, (res, err, files))

        res, err, files = delivered("tempfail-rcpt",
                                    rcpts=("later@example.org",
                                           "b@example.org"))
        r.check("TEMPFAIL at RCPT: 451 4.7.1 for that recipient only",
                res is not None and res.get("later@example.org", (0,))[0]
                == 451 and len(files) == 1, (res, err, files))

        res, err, files = delivered("replycode-eom")
        r.check("REPLYCODE at end of message: multi-line 554, nothing "
                "stored", isinstance(err, smtplib.SMTPDataError) and
                err.smtp_code == 554 and
                err.smtp_error == b"5.7.1 line one\n5.7.1 line two" and
                not files, (err, files))

        res, err, files = delivered("reject-eom")
        r.check("REJECT at end of message: 550, nothing stored",
                isinstance(err, smtplib.SMTPDataError) and
                err.smtp_code == 550 and not files, (err, files))

        res, err, files = delivered("discard-eom")
        r.check("DISCARD: 250 to the client, nothing stored",
                res == {} and err is None and not files and
                srv.wait_log("discarded by milter", 1), (res, err, files))

        big = HEAD + b"\r\n\r\n" + b"".join(
            b"line %06d of a long body, to cross the 64 KiB pieces\r\n" % i
            for i in range(6000))
        res, err, files = delivered("addheader", message=big)
        msg = split_prefix(files[0])[1] if len(files) == 1 else None
        r.check("ADDHEADER on a %d-octet message: body streamed through "
                "unchanged" % len(big), msg == HEAD +
                b"\r\nX-Scripted: added\r\n\r\n" + big.split(
                    b"\r\n\r\n", 1)[1], (res, err, len(msg or b"")))

        # PIPELINING: the commands after a deferred decision wait in the
        # server and are answered in order once the filter replied
        c = Client(srv.port)
        c.reply()
        c.cmd(b"EHLO chgheader.test")
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
               b"DATA\r\n")
        replies = [c.reply() for _ in range(3)]
        c.send(MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\nQUIT\r\n")
        end, bye = c.reply(), c.reply()
        c.close()
        files = run.fresh()
        msg = split_prefix(files[0])[1] if len(files) == 1 else None
        r.check("pipelined MAIL/RCPT/DATA and end/QUIT answered in order",
                [x[:3] for x in replies + [end, bye]] ==
                [b"250", b"250", b"354", b"250", b"221"] and
                msg == MESSAGE.replace(b"original subject",
                                       b"changed subject"),
                (replies, end, bye, files))

        # CHUNKING: the same filter conversation for a BDAT message
        c = Client(srv.port)
        c.reply()
        c.cmd(b"EHLO addheader.test")
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
               b"BDAT 40\r\n" + MESSAGE[:40] +
               b"BDAT %d LAST\r\n" % (len(MESSAGE) - 40) + MESSAGE[40:] +
               b"QUIT\r\n")
        replies = [c.reply()[:3] for _ in range(5)]
        c.close()
        files = run.fresh()
        msg = split_prefix(files[0])[1] if len(files) == 1 else None
        r.check("BDAT: pipelined chunks, ADDHEADER applied byte for byte",
                replies == [b"250"] * 4 + [b"221"] and msg == HEAD +
                b"\r\nX-Scripted: added\r\n\r\n" + BODY,
                (replies, files))

        r.check("no spool file left in tmp/", srv.tmp_files() == [],
                srv.tmp_files())
        r.check("server exits cleanly (ASan: no leak)", srv.stop() == 0,
                srv.log_text()[-2000:])
    finally:
        srv.cleanup()

    # two filters, in order: UNIX socket, then inet
    srv = Server(binary, ["--milter", "unix:" + sock,
                          "--milter", "inet:127.0.0.1:%d" % port2])
    try:
        run = Run(r, srv)
        res, err = send(srv.port, "addheader")
        files = run.fresh()
        msg = split_prefix(files[0])[1] if len(files) == 1 else None
        r.check("chain of two filters (unix:, inet:): each adds its field",
                msg == HEAD + b"\r\nX-Scripted: added\r\nX-Scripted: added"
                b"\r\n\r\n" + BODY, (res, err, files))
        r.check("chain: server exits cleanly", srv.stop() == 0,
                srv.log_text()[-2000:])
    finally:
        srv.cleanup()


def top_fields(data):
    """[(name, raw field)] of the header section of data, in order"""
    out, pos = [], 0
    while pos < len(data) and data[pos:pos + 2] != b"\r\n":
        end = data.find(b"\r\n", pos)
        while end >= 0 and data[end + 2:end + 3] in (b" ", b"\t"):
            end = data.find(b"\r\n", end + 2)
        if end < 0:
            break
        raw = data[pos:end + 2]
        out.append((raw.split(b":", 1)[0], raw))
        pos = end + 2
    return out


def group_opendkim(r, binary, tmp):
    """OpenDKIM signing, then OpenDKIM verifying, in one --milter chain."""
    if not shutil.which("opendkim") or not shutil.which("opendkim-genkey"):
        print("note: opendkim not installed, its checks are left out")
        return
    keydir = os.path.join(tmp, "keys")
    os.mkdir(keydir, 0o700)
    subprocess.run(["opendkim-genkey", "-b", "2048", "-d", "example.org",
                    "-s", "test", "-D", keydir], check=True)
    with open(os.path.join(keydir, "test.txt")) as f:
        txt = f.read()
    record = "".join(part for i, part in enumerate(txt.split('"'))
                     if i % 2 == 1)
    keys = os.path.join(tmp, "public-keys")
    with open(keys, "w") as f:
        f.write(f"test._domainkey.example.org {record}\n")
    procs, specs = [], []
    try:
        for mode in ("s", "v"):
            port = free_port()
            conf = os.path.join(tmp, f"opendkim-{mode}.conf")
            with open(conf, "w") as f:
                f.write(f"Mode {mode}\nSocket inet:{port}@127.0.0.1\n"
                        "Domain example.org\nSelector test\n"
                        f"KeyFile {keydir}/test.private\n"
                        f"TestPublicKeys {keys}\n"
                        "AuthservID mx.example.org\n"
                        "Canonicalization relaxed/simple\n"
                        "RequireSafeKeys no\nSyslog no\n"
                        "AlwaysAddARHeader yes\n"
                        f"PidFile {tmp}/opendkim-{mode}.pid\n")
                if mode == "v":  # 127.0.0.1 is not one of its own hosts
                    f.write("InternalHosts csl:192.0.2.99\n")
            p = subprocess.Popen(["opendkim", "-f", "-x", conf],
                                 stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
            specs += ["--milter", f"inet:127.0.0.1:{port}"]
            if not r.check(f"opendkim mode {mode} started",
                           wait_connect(("127.0.0.1", port), p)):
                return
        srv = Server(binary, specs)
        try:
            run = Run(r, srv)
            res, err = send(srv.port, "client")
            files = run.fresh()
            data = files[0] if len(files) == 1 else b""
            fields = top_fields(data)
            added = []
            while fields and fields[0][0] in (b"DKIM-Signature",
                                              b"Authentication-Results"):
                added.append(fields.pop(0))
            rest = data[sum(len(f[1]) for f in added):]
            pre, msg = split_prefix(rest)
            names = sorted(n for n, _ in added)
            sig = b"".join(f for n, f in added if n == b"DKIM-Signature")
            ar = b"".join(f for n, f in added
                          if n == b"Authentication-Results")
            r.check("OpenDKIM: accepted and stored", res == {} and
                    len(files) == 1, (res, err, files))
            r.check("OpenDKIM: signer and verifier inserted their fields on "
                    "top, the rest byte for byte as spooled",
                    names == [b"Authentication-Results", b"DKIM-Signature"]
                    and pre is not None and PREFIX_RE.match(pre) and
                    msg == MESSAGE, data)
            r.check("OpenDKIM: d=example.org; s=test signature, verified "
                    "in the same chain (dkim=pass)",
                    b"d=example.org" in sig and b"s=test" in sig and
                    b"dkim=pass" in ar, (sig, ar))
            r.check("OpenDKIM: server exits cleanly", srv.stop() == 0,
                    srv.log_text()[-2000:])
        finally:
            srv.cleanup()
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def group_faults(r, binary):
    """Filters that fail mid-session (tests/milter/test_milter.py's raw
    socket filters): the default action answers the command asked."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "milter_group_tests", os.path.join(HERE, "..", "milter",
                                           "test_milter.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cases = [("close-body", "tempfail", 451, "data"),
             ("close-body", "reject", 550, "data"),
             ("close-body", "accept", None, None),
             ("garbage", "reject", 550, "mail"),
             ("oversized", "tempfail", 451, "rcpt")]
    for behaviour, action, code, where in cases:
        t, port, done = mod.fake_milter(behaviour, None)
        srv = Server(binary, ["--milter", f"inet:127.0.0.1:{port}",
                              "--milter-default-action", action])
        try:
            run = Run(r, srv)
            res, err = send(srv.port, "c")
            files = run.fresh(wait=code is None)
            msg = split_prefix(files[0])[1] if len(files) == 1 else None
            if code is None:
                ok = res == {} and msg == MESSAGE
            elif where == "data":
                ok = isinstance(err, smtplib.SMTPDataError) and \
                    err.smtp_code == code and not files
            elif where == "mail":
                ok = isinstance(err, smtplib.SMTPSenderRefused) and \
                    err.smtp_code == code and not files
            else:
                ok = isinstance(err, smtplib.SMTPRecipientsRefused) and \
                    list(err.recipients.values())[0][0] == code and \
                    not files
            r.check(f"{behaviour} filter, default action {action}: "
                    f"{code or 'delivered as is'}"
                    f"{' at ' + where.upper() if where else ''}", ok,
                    (res, err, files))
            r.check(f"{behaviour}/{action}: no tmp/ file, clean exit",
                    srv.tmp_files() == [] and srv.stop() == 0,
                    srv.log_text()[-2000:])
        finally:
            srv.cleanup()
            done.set()
            t.join(5)


def greeting(port, timeout=20):
    """(first reply line, seconds it took)"""
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        line = s.makefile("rb").readline()
    except OSError as e:
        line = repr(e).encode()
    s.close()
    return line, time.time() - t0


def group_down(r, binary):
    dead = "inet:127.0.0.1:%d" % free_port()  # nothing listens there
    for action, expect in (("tempfail", b"421 "), ("reject", b"554 ")):
        srv = Server(binary, ["--milter", dead,
                              "--milter-default-action", action])
        try:
            line, _ = greeting(srv.port)
            r.check(f"filter down, default action {action}: {expect[:3]!r} "
                    "at connect", line.startswith(expect), line)
            r.check(f"filter down ({action}): server exits cleanly",
                    srv.stop() == 0, srv.log_text()[-2000:])
        finally:
            srv.cleanup()
    srv = Server(binary, ["--milter", dead, "--milter-default-action",
                          "accept"])
    try:
        run = Run(r, srv)
        res, err = send(srv.port, "continue")
        files = run.fresh()
        msg = split_prefix(files[0])[1] if len(files) == 1 else None
        r.check("filter down, default action accept: delivered unchanged",
                res == {} and msg == MESSAGE, (res, err, files))
        r.check("filter down (accept): server exits cleanly",
                srv.stop() == 0, srv.log_text()[-2000:])
    finally:
        srv.cleanup()


def group_responsive(r, binary):
    """A filter that holds its first connection without a word and closes
    every later one at once."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    held = []

    def serve():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            if not held:
                held.append(c)
            else:
                c.close()

    threading.Thread(target=serve, daemon=True).start()
    srv = Server(binary, ["--milter", "inet:127.0.0.1:%d" %
                          ls.getsockname()[1], "--milter-timeout", "3"])
    try:
        out = {}
        ta = threading.Thread(target=lambda: out.update(
            a=greeting(srv.port), a_at=time.monotonic()))
        ta.start()
        deadline = time.time() + 5
        while not held and time.time() < deadline:
            time.sleep(0.02)
        line_b, secs_b = greeting(srv.port)
        b_at = time.monotonic()
        ta.join(15)
        # an order, not a time limit: B's greeting came while A's was held
        r.check("while one session waits for a silent filter, another is "
                "answered first (filter closed: 421)",
                line_b.startswith(b"421 ") and "a_at" in out and
                b_at < out["a_at"], (line_b, secs_b, b_at, out))
        line_a, secs_a = out.get("a", (b"", 0))
        # --milter-timeout 3 against the library's 30 s default: not
        # before 3 s (0.5 s for the clocks), and within the 15 s join
        r.check("the held session gets the default action after "
                "--milter-timeout", line_a.startswith(b"421 ") and
                secs_a >= 2.5, (line_a, secs_a))
        r.check("the timeout is logged", srv.wait_log("timeout", 1),
                srv.log_text())
        r.check("responsive: server exits cleanly", srv.stop() == 0,
                srv.log_text()[-2000:])
    finally:
        srv.cleanup()
        ls.close()
        for c in held:
            c.close()


def main():
    args = parse_args()
    if not have_pymilter():
        print("SKIP: python3-milter is not installed")
        sys.exit(SKIP)
    probe = subprocess.run([args.server, "--milter", "unix:/nonexistent",
                            "--help"], capture_output=True, text=True)
    if "not built" in probe.stderr:
        print("SKIP: smtpd-maildir built without the Milter adapter")
        sys.exit(SKIP)
    r = Results("milter")
    d = tempfile.mkdtemp(prefix="smtpd-milter-")
    sock = os.path.join(d, "scripted.sock")
    log = os.path.join(d, "scripted.log")
    port2 = free_port()
    procs = [subprocess.Popen([PY_MILTER, SCRIPTED, "unix:" + sock, log]),
             subprocess.Popen([PY_MILTER, SCRIPTED,
                               "inet:%d@127.0.0.1" % port2, log + "2"])]
    try:
        if r.check("scripted milters started",
                   wait_connect(sock, procs[0]) and
                   wait_connect(("127.0.0.1", port2), procs[1])):
            group_edits(r, args.server, sock, port2)
        group_opendkim(r, args.server, d)
        group_down(r, args.server)
        group_faults(r, args.server)
        group_responsive(r, args.server)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(d, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()
