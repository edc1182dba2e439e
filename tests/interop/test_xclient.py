#!/usr/bin/env python3
"""test_xclient.py - XCLIENT (--xclient-from) by raw socket and nginx.

  - raw socket from a trusted peer (127.0.0.1): XCLIENT NAME= ADDR= PORT=
    HELO= gets a fresh 220 greeting; the delivered file's Received: line
    names the forwarded HELO, NAME and ADDR, the log the forwarded
    address and port; XCLIENT inside a transaction: 503 5.5.1; PROTO=SMTP
    gives "with SMTP", NAME=[UNAVAILABLE] "unknown"
  - from an untrusted peer (127.0.0.2): 550 5.7.0 Error: insufficient
    authorization, and the session goes on as before
  - nginx's mail proxy (Debian libnginx-mod-mail, "xclient on", a tiny
    auth_http responder in this script) in front of smtpd-maildir:
    the message a client sends to nginx from 127.0.0.6 arrives with
    [127.0.0.6] in Received:, as nginx forwarded it with XCLIENT
"""
import http.server
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading
import time

from common import Client, Results, Server, parse_args, read, split_received

NGINX_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def client_from(addr, port):
    s = socket.socket()
    s.bind((addr, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    c = Client.__new__(Client)
    c.sock, c.buf = s, b""
    return c


def raw_part(r, srv):
    c = Client(srv.port)
    c.reply()
    c.cmd(b"EHLO proxy.example")
    rep = c.cmd(b"XCLIENT NAME=mail.example.com ADDR=192.0.2.7 PORT=4711 "
                b"HELO=fwd.example")
    r.check("trusted XCLIENT: fresh 220 greeting", rep.startswith(b"220 "),
            rep)
    before = set(srv.new_files())
    c.cmd(b"EHLO fwd.example")
    c.cmd(b"MAIL FROM:<a@example.org>")
    rep = c.cmd(b"XCLIENT ADDR=192.0.2.8")
    r.check("XCLIENT inside a transaction: 503 5.5.1",
            rep.startswith(b"503 5.5.1"), rep)
    c.cmd(b"RCPT TO:<b@example.net>")
    c.cmd(b"DATA")
    rep = c.cmd(b"Subject: xclient\r\n\r\nforwarded\r\n.")
    r.check("message accepted after XCLIENT", rep.startswith(b"250"), rep)
    c.cmd(b"QUIT")
    c.close()
    files = [f for f in srv.wait_files(len(before) + 1) if f not in before]
    rec = split_received(read(files[0]))[0] if files else b""
    r.check("Received: names the forwarded client",
            (rec or b"").startswith(
                b"Received: from fwd.example (mail.example.com [192.0.2.7])"),
            rec)
    r.check("log names the forwarded address and port",
            srv.wait_log("client=192.0.2.7:4711", 1))

    # PROTO= is the protocol the Received: line names
    c = Client(srv.port)
    c.reply()
    c.cmd(b"EHLO proxy.example")
    c.cmd(b"XCLIENT PROTO=SMTP ADDR=192.0.2.10 NAME=[UNAVAILABLE]")
    before = set(srv.new_files())
    for line in (b"HELO old.example", b"MAIL FROM:<a@example.org>",
                 b"RCPT TO:<b@example.net>", b"DATA", b"x\r\n."):
        c.cmd(line)
    c.cmd(b"QUIT")
    c.close()
    files = [f for f in srv.wait_files(len(before) + 1) if f not in before]
    rec = split_received(read(files[0]))[0] if files else b""
    r.check("XCLIENT PROTO=SMTP: Received: with SMTP, NAME unavailable",
            (rec or b"").startswith(
                b"Received: from old.example (unknown [192.0.2.10])") and
            b" with SMTP id " in (rec or b""), rec)

    c = client_from("127.0.0.2", srv.port)
    c.reply()
    c.cmd(b"EHLO untrusted.example")
    rep = c.cmd(b"XCLIENT ADDR=192.0.2.9")
    r.check("untrusted XCLIENT: 550 5.7.0",
            rep == b"550 5.7.0 Error: insufficient authorization\r\n", rep)
    r.check("untrusted session goes on",
            c.cmd(b"MAIL FROM:<a@example.org>").startswith(b"250"))
    c.cmd(b"QUIT")
    c.close()


class AuthHandler(http.server.BaseHTTPRequestHandler):
    """nginx auth_http: every session goes to the smtpd-maildir port."""
    backend_port = 0
    seen = []

    def do_GET(self):
        AuthHandler.seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", "127.0.0.1")
        self.send_header("Auth-Port", str(self.backend_port))
        self.end_headers()

    def log_message(self, *a):
        pass


def nginx_part(r, srv, nginx):
    tmp = tempfile.mkdtemp(prefix="smtpd-nginx-")
    httpd = http.server.HTTPServer(("127.0.0.1", 0), AuthHandler)
    AuthHandler.backend_port = srv.port
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    nport = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""load_module {NGINX_MODULE};
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
mail {{
  server_name mx.proxy.test;
  auth_http 127.0.0.1:{httpd.server_address[1]}/auth;
  xclient on;
  smtp_auth none;
  proxy_pass_error_message on;
  server {{
    listen 127.0.0.1:{nport};
    protocol smtp;
  }}
}}
""")
    proc = subprocess.Popen([nginx, "-p", tmp, "-e", f"{tmp}/error.log",
                             "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 5
        up = False
        while time.time() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", nport), 1).close()
                up = True
                break
            except OSError:
                time.sleep(0.05)
        if not up:
            err = open(f"{tmp}/error.log").read() \
                if os.path.exists(f"{tmp}/error.log") else ""
            print(f"SKIP: nginx mail proxy did not start: {err[-500:]}")
            return
        before = set(srv.new_files())
        with smtplib.SMTP("127.0.0.1", nport, timeout=10,
                          local_hostname="nginx-client.example",
                          source_address=("127.0.0.6", 0)) as s:
            s.sendmail("a@example.org", ["b@example.net"],
                       b"Subject: via nginx\r\n\r\nxclient\r\n")
        files = [f for f in srv.wait_files(len(before) + 1)
                 if f not in before]
        rec = split_received(read(files[0]))[0] if files else b""
        r.check("nginx: auth_http was asked", len(AuthHandler.seen) >= 1)
        r.check("nginx xclient: Received: names the original client",
                b"[127.0.0.6]" in (rec or b"") and
                (rec or b"").startswith(b"Received: from nginx-client.example"),
                rec)
        r.check("nginx xclient: server log shows XCLIENT accepted",
                "XCLIENT client=127.0.0.1" in srv.log_text() and
                "addr=127.0.0.6" in srv.log_text())
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    args = parse_args()
    r = Results("xclient")
    srv = Server(args.server, ["--xclient-from", "127.0.0.1/32,::1"])
    try:
        raw_part(r, srv)
        nginx = shutil.which("nginx") or (
            os.access("/usr/sbin/nginx", os.X_OK) and "/usr/sbin/nginx")
        if nginx and os.path.exists(NGINX_MODULE):
            nginx_part(r, srv, nginx)
        else:
            print("SKIP: nginx with the mail module not installed "
                  "(nginx part)")
    finally:
        r.check("server exits cleanly", srv.stop() == 0, srv.log_text())
        srv.cleanup()
    r.finish()


if __name__ == "__main__":
    main()
