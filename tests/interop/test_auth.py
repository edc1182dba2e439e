#!/usr/bin/env python3
"""test_auth.py - smtpd-maildir with AUTH (RFC 4954) against real clients.

Built-in backend (--users FILE): smtplib.login and swaks --auth PLAIN /
LOGIN over STARTTLS, Received: "with ESMTPSA"; plaintext AUTH refused
with 504 5.5.4; a wrong password gets 535 5.7.8 and the session stays
usable. Cyrus SASL (--sasl cyrus:APP): a sasldb made with saslpasswd2 in
a temporary directory, an APP.conf pointing at it, PLAIN, LOGIN,
CRAM-MD5 (and DIGEST-MD5 / SCRAM where the plugins exist) via smtplib
and swaks. Skipped (77) when the server lacks TLS or AUTH support.
"""

import base64
import hmac
import os
import smtplib
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SKIP, Client, Results, Server, parse_args, read, split_received  # noqa: E402


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def newest(srv, before):
    files = [f for f in srv.new_files() if f not in before]
    return split_received(read(files[0])) if len(files) == 1 else (None, None)


def login_and_send(port, user, password, mech=None, tag="x"):
    """STARTTLS, AUTH (a given mechanism or smtplib's choice), one message.
    Returns (auth_code, auth_text, sent_ok)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.ehlo("auth.example")
        c.starttls(context=ctx())
        c.ehlo("auth.example")
        try:
            if mech:
                c.user, c.password = user, password
                fn = {"PLAIN": c.auth_plain, "LOGIN": c.auth_login,
                      "CRAM-MD5": c.auth_cram_md5}[mech]
                code, text = c.auth(mech, fn, initial_response_ok=(mech != "LOGIN"))
            else:
                code, text = c.login(user, password)
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code, e.smtp_error, False
        c.sendmail(f"{user}@example.org", ["b@example.org"],
                   f"Subject: {tag}\r\n\r\n{tag}\r\n".encode())
        return code, text, True


def swaks_auth(port, mech, user, password):
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "-tls", "--to", "b@example.org",
         "--auth", mech, "--auth-user", user, "--auth-password", password,
         "--timeout", "10"], capture_output=True, text=True)


def swaks_tls_ok():
    out = subprocess.run(["swaks", "--support"], capture_output=True, text=True)
    return "TLS supported" in out.stdout + out.stderr and \
        "TLS not supported" not in out.stdout + out.stderr


def test_builtin(r, server, tmp):
    users = os.path.join(tmp, "users")
    with open(users, "w") as f:
        f.write("# user:password\ndemo:demo-secret\nother:pa:ss\n")
    srv = Server(server, ["--selfsigned", "--users", users], tmp=tmp)
    try:
        # plaintext: no AUTH advertised, and refused
        c = Client(srv.port)
        c.reply()
        ehlo = c.cmd(b"EHLO plain.example")
        r.check("builtin: no AUTH offered without TLS", b"AUTH" not in ehlo, ehlo)
        rep = c.cmd(b"AUTH PLAIN " + base64.b64encode(b"\0demo\0demo-secret"))
        r.check("builtin: plaintext AUTH PLAIN gets 504 5.5.4",
                rep.startswith(b"504 5.5.4 Encryption required"), rep)
        c.close()

        before = srv.new_files()
        code, text, sent = login_and_send(srv.port, "demo", "demo-secret", tag="login")
        r.check("builtin: smtplib.login 235", code == 235 and sent, (code, text))
        rec, rest = newest(srv, before)
        r.check("builtin: Received: with ESMTPSA", rec is not None and
                b"with ESMTPSA" in rec, rec)
        code, text, _ = login_and_send(srv.port, "other", "pa:ss", "LOGIN")
        r.check("builtin: LOGIN with ':' in the password", code == 235, (code, text))
        code, text, _ = login_and_send(srv.port, "demo", "wrong", "PLAIN")
        r.check("builtin: wrong password 535 5.7.8", code == 535 and
                text.startswith(b"5.7.8"), (code, text))

        # a failed attempt leaves the session usable
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.ehlo("x")
            c.starttls(context=ctx())
            c.ehlo("x")
            try:
                c.login("demo", "nope")
            except smtplib.SMTPAuthenticationError:
                pass
            code, _ = c.login("demo", "demo-secret")
            r.check("builtin: login after a failure", code == 235, code)

        if swaks_tls_ok():
            for mech in ("PLAIN", "LOGIN"):
                before = srv.new_files()
                out = swaks_auth(srv.port, mech, "demo", "demo-secret")
                rec, rest = newest(srv, before)
                r.check(f"builtin: swaks -tls --auth {mech}", out.returncode == 0 and
                        rec is not None and b"with ESMTPSA" in rec,
                        out.stdout[-300:])
        else:
            print("note: swaks -tls skipped (install libnet-ssleay-perl)")
    finally:
        st = srv.stop()
        r.check("builtin: server exits 0", st == 0, st)


def test_cyrus(r, server, tmp):
    if not os.access("/usr/sbin/saslpasswd2", os.X_OK):
        print("note: Cyrus SASL tests skipped (no saslpasswd2)")
        return
    sasldb = os.path.join(tmp, "sasldb2")
    conf_dir = os.path.join(tmp, "sasl")
    os.makedirs(conf_dir, exist_ok=True)
    app = "smtpd-interop"
    plugdir = "/usr/lib/x86_64-linux-gnu/sasl2"
    mechs = ["PLAIN", "LOGIN", "CRAM-MD5"]
    with open(os.path.join(conf_dir, app + ".conf"), "w") as f:
        f.write(f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                f"sasldb_path: {sasldb}\nmech_list: {' '.join(mechs)} DIGEST-MD5\n")
    p = subprocess.run(["/usr/sbin/saslpasswd2", "-f", sasldb, "-a", app, "-c",
                        "-p", "cyrususer"], input=b"cyrus-secret",
                       capture_output=True)
    if p.returncode != 0:
        r.check("cyrus: saslpasswd2 made a sasldb", False, p.stderr)
        return
    srv = Server(server, ["--selfsigned", "--sasl", "cyrus:" + app,
                          "--sasl-config-dir", conf_dir], tmp=tmp)
    try:
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.ehlo("x")
            plain_offer = c.esmtp_features.get("auth", "").split()
            r.check("cyrus: no PLAIN/LOGIN offered without TLS",
                    "PLAIN" not in plain_offer and "LOGIN" not in plain_offer,
                    plain_offer)
            if "CRAM-MD5" in plain_offer:
                c.user, c.password = "cyrususer", "cyrus-secret"
                code, _ = c.auth("CRAM-MD5", c.auth_cram_md5)
                r.check("cyrus: CRAM-MD5 allowed without TLS", code == 235, code)
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            c.ehlo("x")
            c.starttls(context=ctx())
            c.ehlo("x")
            offered = c.esmtp_features.get("auth", "").split()
            r.check("cyrus: mechanisms from APP.conf offered",
                    all(m in offered for m in mechs), offered)
        for mech in mechs:
            before = srv.new_files()
            code, text, sent = login_and_send(srv.port, "cyrususer", "cyrus-secret",
                                              mech, tag=mech)
            rec, rest = newest(srv, before)
            r.check(f"cyrus: smtplib {mech} 235 and delivered", code == 235 and sent
                    and rec is not None and b"with ESMTPSA" in rec, (code, text))
        code, text, _ = login_and_send(srv.port, "cyrususer", "bad", "PLAIN")
        r.check("cyrus: wrong password 535", code == 535, (code, text))
        if swaks_tls_ok():
            for mech in ("PLAIN", "CRAM-MD5"):
                out = swaks_auth(srv.port, mech, "cyrususer", "cyrus-secret")
                r.check(f"cyrus: swaks --auth {mech}", out.returncode == 0,
                        out.stdout[-400:])
    finally:
        st = srv.stop()
        r.check("cyrus: server exits 0", st == 0, st)


def main():
    args = parse_args()
    helptext = subprocess.run([args.server, "--help"], capture_output=True,
                              text=True).stdout
    if "key (not built)" in helptext or "password lines (not built)" in helptext:
        print("SKIP: server built without TLS or the built-in AUTH backend")
        sys.exit(SKIP)
    r = Results("auth")
    tmp = tempfile.mkdtemp(prefix="smtpd-auth-")
    try:
        test_builtin(r, args.server, tmp)
        if "cyrus[:APP]" in helptext and "smtpd)" in helptext and \
                "Cyrus SASL (APP.conf, default smtpd) (not built)" not in helptext:
            test_cyrus(r, args.server, os.path.join(tmp, "cyrus"))
        else:
            print("note: server built without Cyrus SASL")
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    r.finish()


if __name__ == "__main__":
    main()
