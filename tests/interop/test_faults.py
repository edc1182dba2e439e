#!/usr/bin/env python3
"""test_faults.py - smtpd-maildir under hostile or unlucky clients.

- a client that disconnects mid-DATA (FIN or RST) leaves nothing in new/
  or tmp/ (and, under an ASan build, the clean exit proves no leak)
- 10 MB without a newline: the client gets a reply and is cut off while
  another client is served meanwhile
- a client that pipelines without reading is bounded (RSS) and does not
  block others
- an idle client is timed out with 421 4.4.2
- a half-closed client (FIN after QUIT) still gets its replies
- SIGTERM during load loses no message that got a 250
"""

import os
import smtplib
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Client, Results, Server, parse_args, read  # noqa: E402


def transaction_open(port):
    c = Client(port)
    c.reply()
    c.cmd(b"EHLO fault.example")
    c.cmd(b"MAIL FROM:<a@example.org>")
    c.cmd(b"RCPT TO:<b@example.org>")
    r = c.cmd(b"DATA")
    assert r.startswith(b"354"), r
    return c


def quick_send(port, tag):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail("a@example.org", ["b@example.org"],
                   f"Subject: {tag}\r\n\r\n{tag}\r\n".encode())


def test_mid_data(r, server):
    srv = Server(server)
    try:
        c = transaction_open(srv.port)
        c.send(b"Subject: x\r\n\r\n" + b"y" * 200000)
        time.sleep(0.2)
        c.close()
        c = transaction_open(srv.port)
        c.send(b"Subject: x\r\n\r\npartial line")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))  # close with RST
        time.sleep(0.1)
        c.close()
        deadline = time.time() + 5
        while time.time() < deadline and srv.log_text().count("session end") < 2:
            time.sleep(0.05)
        r.check("mid-DATA disconnect: two sessions ended",
                srv.log_text().count("session end") == 2, srv.log_text())
        r.check("mid-DATA disconnect: new/ empty", srv.new_files() == [],
                srv.new_files())
        r.check("mid-DATA disconnect: tmp/ empty", srv.tmp_files() == [],
                srv.tmp_files())
        quick_send(srv.port, "after")
        r.check("server still delivers", len(srv.wait_files(1)) == 1)
    finally:
        st = srv.stop()
        r.check("mid-DATA: clean exit (no leak under ASan)", st == 0, st)
        srv.cleanup()


def test_long_line(r, server):
    srv = Server(server)
    try:
        c = Client(srv.port, timeout=30)
        c.reply()
        sent = [0]

        def flood():
            chunk = b"A" * 65536
            try:
                for _ in range(160):  # 10 MiB, no newline
                    c.sock.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass

        t = threading.Thread(target=flood)
        t.start()
        time.sleep(0.2)
        t0 = time.time()
        quick_send(srv.port, "meanwhile")
        r.check("another client served during the flood",
                time.time() - t0 < 5 and len(srv.wait_files(1)) == 1)
        try:
            rep = c.reply()
        except (EOFError, OSError) as e:
            rep = getattr(e, "args", [b""])[0] if isinstance(e, EOFError) else b""
        r.check("flooder gets a 5xx reply", rep[:1] == b"5", rep)
        cut = c.closed(timeout=15)
        t.join(30)
        r.check("flooder is cut off", cut, f"sent {sent[0]} octets")
        c.close()
        r.check("flood: server RSS bounded", 0 < srv.vm_hwm_kb() < 256 * 1024,
                srv.vm_hwm_kb())
    finally:
        st = srv.stop()
        r.check("long line: clean exit", st == 0, st)
        srv.cleanup()


def test_slow_reader(r, server):
    srv = Server(server)
    try:
        c = Client(srv.port)
        c.reply()
        c.cmd(b"EHLO slow.example")
        c.sock.setblocking(False)
        blob = b"RSET\r\n" * 5000000  # 30 MB in, ~70 MB of replies out
        off, t0 = 0, time.time()
        while off < len(blob) and time.time() - t0 < 2:
            try:
                off += c.sock.send(blob[off:off + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        r.check(f"non-reading client is throttled ({off} of {len(blob)} octets taken)",
                off < len(blob), off)
        t1 = time.time()
        quick_send(srv.port, "slow")
        r.check("others served while one does not read",
                time.time() - t1 < 5 and len(srv.wait_files(1)) == 1)
        hwm = srv.vm_hwm_kb()
        r.check(f"RSS bounded with a stuck reader ({hwm} KiB)",
                0 < hwm < (256 if srv.sanitized() else 32) * 1024, hwm)
        c.close()
    finally:
        st = srv.stop()
        r.check("slow reader: clean exit", st == 0, st)
        srv.cleanup()


def test_timeout_and_halfclose(r, server):
    srv = Server(server, ["--timeout", "1"])
    try:
        c = Client(srv.port)
        c.reply()
        t0 = time.time()
        try:
            rep = c.reply()
        except EOFError as e:
            rep = e.args[0]
        r.check("idle client gets 421 4.4.2", rep.startswith(b"421 4.4.2"), rep)
        r.check("timeout after about 1 s", 0.5 < time.time() - t0 < 4,
                time.time() - t0)
        r.check("timed-out client closed", c.closed())
        c.close()

        c = Client(srv.port)
        c.reply()
        c.cmd(b"EHLO half.example")
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        reps = [c.reply() for _ in range(3)]
        r.check("pipelined MAIL/RCPT/DATA", reps[2].startswith(b"354"), reps)
        c.send(b"Subject: half\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        a, b = c.reply(), c.reply()
        r.check("half-closed client gets 250 and 221",
                a.startswith(b"250") and b.startswith(b"221"), (a, b))
        r.check("half-closed client's message delivered",
                len(srv.wait_files(1)) == 1)
        c.close()
    finally:
        st = srv.stop()
        r.check("timeout: clean exit", st == 0, st)
        srv.cleanup()


def test_sigterm_under_load(r, server):
    srv = Server(server, ["--quiet"])
    acked, errors, stop = [], [], threading.Event()
    lock = threading.Lock()

    def worker(tid):
        n = 0
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", srv.port, timeout=15) as s:
                    while not stop.is_set():
                        tag = f"load-{tid}-{n}"
                        n += 1
                        s.sendmail("a@example.org", ["b@example.org"],
                                   f"X-Tag: {tag}\r\n\r\n{tag}\r\n".encode())
                        with lock:
                            acked.append(tag)
            except (OSError, smtplib.SMTPException) as e:
                with lock:
                    errors.append(repr(e))
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
        t0 = time.time()
        st = srv.stop(timeout=30)
        stop.set()
        for t in threads:
            t.join(20)
        r.check("SIGTERM under load: exit 0", st == 0, st)
        r.check("SIGTERM: stopped within the bound", time.time() - t0 < 12,
                time.time() - t0)
        tags = set()
        for f in srv.new_files():
            for line in read(f).split(b"\r\n"):
                if line.startswith(b"X-Tag: "):
                    tags.add(line[7:].decode())
        lost = [a for a in acked if a not in tags]
        r.check(f"SIGTERM: all {len(acked)} acknowledged messages on disk",
                acked and not lost, lost[:5])
        r.check("SIGTERM: no partial files", srv.tmp_files() == [],
                srv.tmp_files()[:3])
        print(f"sigterm: {len(acked)} acked, {len(tags)} files")
    finally:
        stop.set()
        srv.cleanup()


def main():
    args = parse_args()
    r = Results("faults")
    test_mid_data(r, args.server)
    test_long_line(r, args.server)
    test_slow_reader(r, args.server)
    test_timeout_and_halfclose(r, args.server)
    test_sigterm_under_load(r, args.server)
    r.finish()


if __name__ == "__main__":
    main()
