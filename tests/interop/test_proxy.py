#!/usr/bin/env python3
"""test_proxy.py - PROXY protocol (--proxy-from) behind a real HAProxy.

  - Debian's haproxy with send-proxy (v1) and send-proxy-v2 in front of
    smtpd-maildir --proxy-from 127.0.0.1/32; the client connects from
    127.0.0.5 (a loopback address that is not the proxy's): the
    delivered file's Received: line names [127.0.0.5], and the server's
    log names 127.0.0.5 with the client's own source port
  - raw sockets: a trusted peer that sends no header, or a garbage one,
    is closed without a reply; an untrusted peer (127.0.0.2) gets the
    greeting and its PROXY line is a command (500), never a header
"""
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time

from common import Client, Results, Server, parse_args, read, split_received

CLIENT_ADDR = "127.0.0.5"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def raw_part(r, srv):
    c = Client(srv.port)  # from 127.0.0.1: trusted, must send a header
    c.send(b"EHLO client.example\r\n")
    r.check("trusted peer without a header: closed without a reply",
            c.closed() and c.buf == b"", c.buf)
    c.close()
    c = Client(srv.port)
    c.send(b"PROXY GARBAGE here\r\nEHLO x\r\n")
    r.check("trusted peer with a garbage header: closed without a reply",
            c.closed() and c.buf == b"", c.buf)
    c.close()
    c = Client(srv.port)
    c.send(b"PROXY TCP4 198.51.100.1 127.0.0.1 5555 25\r\n")
    g = c.reply()
    r.check("trusted peer with a valid v1 header: greeted",
            g.startswith(b"220 "), g)
    c.cmd(b"QUIT")
    c.close()
    # untrusted: bind the client to 127.0.0.2
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", srv.port))
    c = Client.__new__(Client)
    c.sock, c.buf = s, b""
    g = c.reply()
    r.check("untrusted peer: greeted at once", g.startswith(b"220 "), g)
    rep = c.cmd(b"PROXY TCP4 198.51.100.1 127.0.0.1 5555 25")
    r.check("untrusted peer: a PROXY line is a command (500)",
            rep.startswith(b"500"), rep)
    c.cmd(b"QUIT")
    c.close()


def haproxy_part(r, srv, haproxy):
    tmp = tempfile.mkdtemp(prefix="smtpd-haproxy-")
    p1, p2 = free_port(), free_port()
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend v1
  bind 127.0.0.1:{p1}
  default_backend v1
backend v1
  server s1 127.0.0.1:{srv.port} send-proxy
frontend v2
  bind 127.0.0.1:{p2}
  default_backend v2
backend v2
  server s2 127.0.0.1:{srv.port} send-proxy-v2
""")
    log = open(os.path.join(tmp, "haproxy.log"), "wb")
    hp = subprocess.Popen([haproxy, "-db", "-f", cfg], stdout=log,
                          stderr=log)
    try:
        r.check("haproxy listens", wait_port(p1) and wait_port(p2))
        for label, port in (("send-proxy", p1), ("send-proxy-v2", p2)):
            before = set(srv.new_files())
            with smtplib.SMTP("127.0.0.1", port, timeout=10,
                              local_hostname="client.example",
                              source_address=(CLIENT_ADDR, 0)) as s:
                sport = s.sock.getsockname()[1]
                s.sendmail("a@example.org", ["b@example.net"],
                           f"Subject: {label}\r\n\r\nvia haproxy\r\n"
                           .encode())
            files = [f for f in srv.wait_files(len(before) + 1)
                     if f not in before]
            rec = split_received(read(files[0]))[0] if files else b""
            r.check(f"{label}: Received: names the original client",
                    (rec or b"").startswith(
                        b"Received: from client.example (unknown [%s])"
                        % CLIENT_ADDR.encode()), rec)
            r.check(f"{label}: log names the client's address and port",
                    srv.wait_log(f"client={CLIENT_ADDR}:{sport}", 1), sport)
    finally:
        hp.terminate()
        try:
            hp.wait(10)
        except subprocess.TimeoutExpired:
            hp.kill()
            hp.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    args = parse_args()
    r = Results("proxy")
    srv = Server(args.server, ["--proxy-from", "127.0.0.1/32"])
    try:
        raw_part(r, srv)
        haproxy = shutil.which("haproxy") or (
            os.access("/usr/sbin/haproxy", os.X_OK) and "/usr/sbin/haproxy")
        if haproxy:
            haproxy_part(r, srv, haproxy)
        else:
            print("SKIP: haproxy not installed (HAProxy part)")
    finally:
        r.check("server exits cleanly", srv.stop() == 0, srv.log_text())
        srv.cleanup()
    r.finish()


if __name__ == "__main__":
    main()
