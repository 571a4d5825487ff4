"""Failed-login throttling is shared by the daemons (issue 3, throttle.h):
smtpd and imapd given one throttle file and one users file. Failed SMTP
AUTHs for alice from 127.0.0.1 make imapd refuse alice's right password
from that address while the wait runs, and do not touch bob, who logs in
over IMAP from the same address (the key is user and address together:
nobody locks a user out from elsewhere)."""
import base64
import imaplib
import os
import signal
import subprocess
import time

import pytest

from peers.smtpd.smtpd_box import USERS, Raw, SmtpdBox, client_ctx


def imapd_start(binary, box, port):
    r, w = os.pipe()
    argv = [binary, "-f", "-c", str(box.data / "etc" / "postern.conf"),
            "--users", str(box.data / "etc" / "users"), "--mail", str(box.data / "mail"),
            "--throttle", str(box.data / "run" / "throttle"),
            "--cert", str(box.cert), "--key", str(box.key),
            "--imaps", f"127.0.0.1:{port}", "--ready-fd", str(w)]
    if box.run_user:
        argv += ["--user", box.run_user]
    log = open(box.root / "imapd.log", "ab")
    proc = subprocess.Popen(argv, pass_fds=(w,), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    os.close(w)
    ready = os.read(r, 1)
    os.close(r)
    assert ready == b"\n", (box.root / "imapd.log").read_text()
    return proc


def smtp_auth(box, user, password):
    c = Raw(box.port465)
    c.sock = client_ctx().wrap_socket(c.sock)
    c.sock.settimeout(60)   # a KDF under load
    try:
        c.reply()
        c.cmd("EHLO client")
        return c.cmd("AUTH PLAIN " + base64.b64encode(
            b"\0" + user.encode() + b"\0" + password.encode()).decode())
    finally:
        c.close()


def imap_login(port, user, password):
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_ctx(), timeout=60)
    try:
        m.login(user, password)
        m.logout()
        return "OK"
    except imaplib.IMAP4.error as e:
        return str(e)


@pytest.fixture
def pair(hostbin, free_port):
    box = SmtpdBox(hostbin("smtpd"), free_port(), free_port())
    box.start()
    port = free_port()
    proc = imapd_start(hostbin("imapd"), box, port)
    yield box, port
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    box.cleanup()


def test_smtp_failures_throttle_imap_login_of_that_user_only(pair):
    box, port = pair
    # Control: before any failure the right password works over IMAP.
    assert imap_login(port, "alice", USERS["alice"]) == "OK"
    # Seven failures over SMTP (3 free, then 1, 2, 4, 8 s waits); a refused
    # attempt during a wait (454) is not a failure, so wait it out.
    fails, end = 0, time.time() + 120   # a guard only: KDFs are slow under load
    while fails < 7 and time.time() < end:
        r = smtp_auth(box, "alice", "wrong")
        if r.startswith("535"):
            fails += 1
        else:
            assert r.startswith("454"), r
            time.sleep(0.5)
    assert fails == 7
    # Now a wait of 8 s runs for (alice, 127.0.0.1), in the shared file:
    # imapd refuses alice's right password without checking it...
    assert imap_login(port, "alice", USERS["alice"]) != "OK"
    assert "login throttled" in (box.root / "imapd.log").read_text()
    # ...while bob, from the same address, is not affected.
    assert imap_login(port, "bob", USERS["bob"]) == "OK"
