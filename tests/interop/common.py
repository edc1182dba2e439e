"""common.py - shared pieces of the smtpd-maildir interop tests.

Server      start smtpd-maildir on 127.0.0.1 (port 0: it prints the port
            it got), with a temporary Maildir; stop it with a signal
Results     count checks, print "N passed, M failed", exit status
helpers     Maildir listing, message body after the Received: field,
            plain-socket SMTP conversations, tool lookup (skip = exit 77)

Standard library only.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77  # ctest SKIP_RETURN_CODE


def parse_args(extra=None):
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True, help="smtpd-maildir binary")
    if extra:
        extra(p)
    return p.parse_args()


def need_tool(path):
    """Exit with the skip status when a client program is missing."""
    found = shutil.which(path) or (os.access(path, os.X_OK) and path)
    if not found:
        print(f"SKIP: {path} not installed")
        sys.exit(SKIP)
    return found


class Results:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, what, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what} {detail}")
        sys.stdout.flush()
        return ok

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed or not self.passed else 0)


class Server:
    """One smtpd-maildir process with its own temporary directory."""

    def __init__(self, binary, args=(), listen="127.0.0.1:0", maildir=True,
                 tmp=None, env=None):
        """env: extra environment variables for the server (for example
        SMTPD_MAILDIR_FAULT, the server's fault-injection hook)."""
        self.tmp = tmp or tempfile.mkdtemp(prefix="smtpd-interop-")
        self.maildir = os.path.join(self.tmp, "mail")
        self.logpath = os.path.join(self.tmp, "server.log")
        cmd = [binary]
        if listen:
            cmd += ["--listen", listen]
        if maildir:
            cmd += ["--maildir", self.maildir]
        cmd += list(args)
        self.cmd = cmd
        self.log = open(self.logpath, "wb")
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     env=full_env)
        self.ports = []
        deadline = time.time() + 10
        while time.time() < deadline:
            text = self.log_text()
            self.ports = [int(m) for m in
                          re.findall(r"listening on \S+:(\d+)", text)]
            want = 1 + sum(1 for a in args if a == "--tls-listen") + \
                sum(1 for a in args if a == "--listen")
            # a UNIX socket listener says "listening on unix:PATH"
            nunix = sum(1 for i, a in enumerate(args[1:])
                        if args[i] == "--listen" and a.startswith("unix:"))
            if nunix:
                want -= nunix + (0 if listen else 1)
            if len(self.ports) >= want and \
                    text.count("listening on unix:") >= nunix:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {text}")
            time.sleep(0.02)
        else:
            raise RuntimeError("server did not start: " + self.log_text())
        self.port = self.ports[0] if self.ports else None

    @property
    def pid(self):
        return self.proc.pid

    def log_text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signal the server and wait; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "timeout"
        self.log.close()
        return self.proc.returncode

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def new_files(self):
        d = os.path.join(self.maildir, "new")
        return sorted(os.path.join(d, n) for n in os.listdir(d)) \
            if os.path.isdir(d) else []

    def tmp_files(self):
        d = os.path.join(self.maildir, "tmp")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def vm_hwm_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return -1

    def sanitized(self):
        """True when the binary was built with AddressSanitizer."""
        try:
            out = subprocess.run(["nm", "-D", self.cmd[0]],
                                 capture_output=True, text=True).stdout
            out += subprocess.run(["nm", self.cmd[0]],
                                  capture_output=True, text=True).stdout
        except OSError:
            return False
        return "__asan_init" in out

    def wait_log(self, text, count, timeout=10):
        """Wait until text appears count times in the log."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.log_text().count(text) < count:
            time.sleep(0.02)
        return self.log_text().count(text) >= count

    def wait_files(self, n, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline and len(self.new_files()) < n:
            time.sleep(0.05)
        return self.new_files()


def split_envelope(data):
    """(received_field, envelope_lines, message) of a delivered file: the
    Received: field is the first header (continuation lines start with a
    space or tab), then smtpd-maildir's X-Envelope-From/-To/-RequireTLS
    fields (one line each, returned as text), then the message as sent."""
    if not data.startswith(b"Received:"):
        return None, [], data
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return data, [], b""
        pos = end + 2
        if data[pos:pos + 1] not in (b" ", b"\t"):
            break
    rec, rest, env = data[:pos], data[pos:], []
    while rest.startswith(b"X-Envelope-") and b"\r\n" in rest:
        line, rest = rest.split(b"\r\n", 1)
        env.append(line.decode("utf-8", "replace"))
    return rec, env, rest


def split_received(data):
    """(received_field, message) of a delivered file, the X-Envelope-*
    fields after the Received: field left out (see split_envelope)."""
    rec, _, rest = split_envelope(data)
    return rec, rest


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Client:
    """A bare socket SMTP client: exact bytes in, replies out."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """One complete (possibly multi-line) reply, as bytes."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError(out + self.buf)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            out += line + b"\r\n"
            if len(line) < 4 or line[3:4] != b"-":
                return out

    def cmd(self, line):
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True

    def close(self):
        self.sock.close()
