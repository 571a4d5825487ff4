"""smtpd (the submission server) on loopback high ports against real
clients: Python's smtplib, curl and swaks over 587-style STARTTLS and
465-style implicit TLS. Internal mail must land in the recipient's Maildir,
external mail in the queue; plus the security rules of DESIGN.md (STARTTLS
injection, SMTP smuggling, AUTH before TLS, spoofed senders, throttling)."""
import base64
import pathlib
import shutil
import smtplib
import ssl
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "smtpd"))
from smtpd_box import SmtpdBox, Raw, client_ctx, USERS  # noqa: E402

MSG = b"From: alice@example.com\r\nSubject: hello\r\n\r\nHi there.\r\n.leading dot\r\n"


@pytest.fixture
def box(hostbin, free_port):
    b = SmtpdBox(hostbin("smtpd"), free_port(), free_port())
    b.start()
    yield b
    rc = b.stop()
    log = b.log.read_text()
    print(log)   # shown when a test fails
    b.cleanup()
    assert rc == 0, f"smtpd exited {rc}:\n{log}"
    assert "ERROR: AddressSanitizer" not in log and "runtime error" not in log, log


def submit_587(box, user, sender, rcpts, msg=MSG):
    with smtplib.SMTP("127.0.0.1", box.port587, timeout=30) as s:
        s.starttls(context=client_ctx())
        s.login(user, USERS[user])
        return s.sendmail(sender, rcpts, msg)


def submit_465(box, user, sender, rcpts, msg=MSG):
    with smtplib.SMTP_SSL("127.0.0.1", box.port465, timeout=30, context=client_ctx()) as s:
        s.login(user, USERS[user])
        return s.sendmail(sender, rcpts, msg)


def test_smtplib_587_internal_and_external(box):
    assert submit_587(box, "alice", "alice@example.com",
                      ["bob@example.com", "friend@other.example", "team@example.com"]) == {}
    bob = box.messages("bob")
    assert len(bob) == 1   # reached directly and through the list: one copy
    assert len(box.messages("alice")) == 1   # through the list
    m = bob[0]
    assert m.startswith(b"Received: from ")
    assert b"with ESMTPSA id " in m
    assert b"\r\nDate: " in m and b"\r\nMessage-ID: <" in m   # added
    assert m.endswith(b"\r\nHi there.\r\n.leading dot\r\n")      # unstuffed
    q = box.queued()
    assert len(q) == 1
    env, msg = next(iter(q.values()))
    assert "from alice@example.com\n" in env and "user alice\n" in env
    assert "rcpt pending 0 " in env and env.rstrip().endswith("friend@other.example")
    assert msg == m   # the same bytes go out as were delivered


def test_smtplib_465_alias_sender(box):
    assert submit_465(box, "alice", "sales@example.com", ["carol@example.com"]) == {}
    assert len(box.messages("carol")) == 1
    assert box.queued() == {}


def test_curl_smtp_ssl_reqd_and_smtps(box, tmp_path):
    if not shutil.which("curl"):
        pytest.skip("curl missing")
    mail = tmp_path / "m.txt"
    mail.write_bytes(b"Subject: curl\r\n\r\nvia curl\r\n")
    base = ["curl", "-sS", "-k", "--mail-from", "bob@example.com", "--user",
            "bob:" + USERS["bob"], "--upload-file", str(mail)]
    subprocess.run(base + ["--ssl-reqd", "--url", f"smtp://127.0.0.1:{box.port587}",
                           "--mail-rcpt", "alice@example.com"], check=True, timeout=60)
    subprocess.run(base + ["--url", f"smtps://127.0.0.1:{box.port465}",
                           "--mail-rcpt", "outside@other.example"], check=True, timeout=60)
    assert [b"via curl" in m for m in box.messages("alice")] == [True]
    assert len(box.queued()) == 1


def swaks_tls_ok():
    if not shutil.which("swaks"):
        return False
    r = subprocess.run(["swaks", "--support"], capture_output=True, text=True)
    return "TLS supported" in r.stdout + r.stderr


@pytest.mark.skipif(not swaks_tls_ok(), reason="swaks without TLS (libnet-ssleay-perl)")
def test_swaks_587_and_465(box):
    common = ["swaks", "--server", "127.0.0.1", "--from", "carol@example.com",
              "--auth-user", "carol", "--auth-password", USERS["carol"]]
    subprocess.run(common + ["--port", str(box.port587), "--tls", "--auth", "PLAIN",
                             "--to", "bob@example.com"], check=True, capture_output=True,
                   timeout=60)
    subprocess.run(common + ["--port", str(box.port465), "--tlsc", "--auth", "LOGIN",
                             "--to", "bob@example.com,x@other.example"], check=True,
                   capture_output=True, timeout=60)
    assert len(box.messages("bob")) == 2
    assert len(box.queued()) == 1


def test_starttls_injection(box):
    """Commands pipelined in clear after STARTTLS are never executed."""
    c = Raw(box.port587)
    assert c.reply().startswith("220 ")
    c.cmd("EHLO client")
    c.send(b"STARTTLS\r\nRSET\r\n")   # one write
    assert c.reply() == "220 2.0.0 Ready to start TLS"
    # An answer to the RSET in clear would sit between this 220 and the
    # server's first TLS record, so the handshake itself would fail on it
    # (no waiting for bytes that should not come).
    try:
        c.starttls()
    except ssl.SSLError as e:
        raise AssertionError(f"clear-text bytes after the 220 broke the handshake: {e}")
    # The first reply through TLS is the one to our EHLO: the RSET was dropped.
    r = c.cmd("EHLO client")
    assert r.startswith("250-box.office.lan") and "AUTH PLAIN LOGIN" in r
    assert "STARTTLS" not in r
    assert c.cmd("QUIT").startswith("221 ")
    c.close()


def test_auth_before_tls(box):
    c = Raw(box.port587)
    c.reply()
    r = c.cmd("EHLO client")
    assert "AUTH" not in r and "STARTTLS" in r
    plain = base64.b64encode(b"\0alice\0" + USERS["alice"].encode()).decode()
    assert c.cmd("AUTH PLAIN " + plain).startswith("530 5.7.0")
    assert c.cmd("AUTH LOGIN").startswith("530 5.7.0")
    assert c.cmd("MAIL FROM:<alice@example.com>").startswith("530 5.7.0")
    c.close()
    # smtplib refuses to log in in clear too, but the server is what counts
    with smtplib.SMTP("127.0.0.1", box.port587, timeout=10) as s:
        s.ehlo()
        code, _ = s.docmd("AUTH", "PLAIN " + plain)
        assert code == 530


def tls_session(box, user="alice"):
    c = Raw(box.port465)
    c.sock = client_ctx().wrap_socket(c.sock)
    assert c.reply().startswith("220 ")
    c.cmd("EHLO client")
    plain = base64.b64encode(b"\0" + user.encode() + b"\0" + USERS[user].encode()).decode()
    assert c.cmd("AUTH PLAIN " + plain).startswith("235 ")
    return c


def test_smtp_smuggling(box):
    """Only CRLF.CRLF ends DATA; bare LF / CR fail the message, once."""
    c = tls_session(box)
    assert c.cmd("MAIL FROM:<alice@example.com>").startswith("250 ")
    assert c.cmd("RCPT TO:<bob@example.com>").startswith("250 ")
    assert c.cmd("DATA").startswith("354 ")
    c.send(b"Subject: first\r\n\r\nhello\n.\nMAIL FROM:<alice@example.com>\r\n"
           b"RCPT TO:<carol@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
    r = c.reply()
    assert r.startswith("554 5.6.0"), r
    assert c.cmd("NOOP") == "250 2.0.0 Ok"   # nothing else was answered
    # bare CR
    c.cmd("MAIL FROM:<alice@example.com>")
    c.cmd("RCPT TO:<bob@example.com>")
    c.cmd("DATA")
    c.send(b"a\r.\rb\r\n.\r\n")
    assert c.reply().startswith("554 5.6.0")
    assert c.cmd("QUIT").startswith("221")
    c.close()
    assert box.messages("bob") == [] and box.messages("carol") == []
    assert box.queued() == {}


def test_spoofed_sender(box):
    c = tls_session(box, "bob")
    assert c.cmd("MAIL FROM:<alice@example.com>").startswith("553 5.7.1")
    assert c.cmd("MAIL FROM:<sales@example.com>").startswith("553 5.7.1")   # alice's alias
    assert c.cmd("MAIL FROM:<team@example.com>").startswith("553 5.7.1")    # a list
    assert c.cmd("MAIL FROM:<bob@other.example>").startswith("553 5.7.1")
    assert c.cmd("MAIL FROM:<>").startswith("553 ")
    assert c.cmd("MAIL FROM:<Bob@Example.com>").startswith("250 ")
    c.close()
    with pytest.raises(smtplib.SMTPSenderRefused):
        submit_587(box, "carol", "alice@example.com", ["bob@example.com"])


def test_unknown_local_recipient_and_vrfy(box):
    c = tls_session(box)
    assert c.cmd("VRFY bob").startswith("252 ")
    assert c.cmd("EXPN team").startswith("502 ")
    c.cmd("MAIL FROM:<alice@example.com>")
    assert c.cmd("RCPT TO:<nobody@example.com>").startswith("550 5.1.1")
    assert c.cmd("DATA").startswith("554 5.5.1")
    c.close()


def test_unknown_recipients_relay(hostbin, free_port):
    b = SmtpdBox(hostbin("smtpd"), free_port(), free_port(),
                 "[smtp]\nunknown-recipients relay\n")
    try:
        b.start()
        assert submit_587(b, "alice", "alice@example.com", ["moved@example.com"]) == {}
        q = b.queued()
        assert len(q) == 1 and "moved@example.com" in next(iter(q.values()))[0]
    finally:
        b.cleanup()


def auth_once(box, password):
    c = Raw(box.port465)
    c.sock = client_ctx().wrap_socket(c.sock)
    c.reply()
    c.cmd("EHLO client")
    r = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0" + password).decode())
    c.close()
    return r


def test_auth_throttled(box):
    """Failed logins are throttled per user and address (throttle.h): 3
    free, then 1 s, 2 s, 4 s ...; while a wait runs even the right password
    is refused without being checked."""
    fails, refused, end = 0, 0, time.time() + 120   # a guard only: KDFs are slow under load
    while fails < 6 and time.time() < end:
        r = auth_once(box, b"wrong")
        if r.startswith("535 5.7.8"):
            fails += 1
        else:
            assert r.startswith("454 4.7.0"), r
            assert fails >= 4
            refused += 1
            time.sleep(0.5)
    assert fails == 6
    # six failures: a 4 s wait (whole seconds, so at least 3 s are left)
    assert auth_once(box, USERS["alice"].encode()).startswith("454 4.7.0")
    assert "auth throttled" in box.log.read_text()


def test_size_limit_and_pipelining(box):
    c = tls_session(box)
    r = c.cmd("MAIL FROM:<alice@example.com> SIZE=999999999")
    assert r.startswith("552 5.3.4")
    # PIPELINING: a whole transaction in one write, replies in order
    c.send(b"MAIL FROM:<alice@example.com> BODY=8BITMIME\r\nRCPT TO:<bob@example.com>\r\n"
           b"RCPT TO:<nobody@example.com>\r\nDATA\r\n")
    assert [c.reply()[:3] for _ in range(4)] == ["250", "250", "550", "354"]
    c.send("Subject: ümlaut\r\n\r\n8bit body é\r\n.\r\n".encode())
    assert c.reply().startswith("250 2.0.0 Ok: queued as ")
    c.close()
    assert "8bit body é".encode() in box.messages("bob")[0]


def test_concurrent_sessions(box):
    """20 sessions at once, STARTTLS handshakes and deliveries overlapping
    (worker threads): every message arrives once."""
    import threading
    errors = []

    def one(n):
        try:
            with smtplib.SMTP("127.0.0.1", box.port587, timeout=60) as s:
                s.starttls(context=client_ctx())
                s.login("bob", USERS["bob"])
                for i in range(5):
                    s.sendmail("bob@example.com", ["alice@example.com"],
                               f"Subject: c{n}-{i}\r\n\r\nbody\r\n".encode())
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    subjects = sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in box.messages("alice"))
    assert subjects == sorted(f"c{n}-{i}".encode() for n in range(20) for i in range(5))


def port25_box(hostbin, free_port, extra):
    b = SmtpdBox(hostbin("smtpd"), free_port(), free_port(),
                 "[smtp]\nport25 yes\n" + extra, port25=free_port())
    b.start()
    return b


def test_port25_devices(hostbin, free_port):
    """Port 25: configured LAN hosts may send without AUTH, to local users
    only (empty port25-recipients), or only to the listed recipients."""
    b = port25_box(hostbin, free_port, "port25-hosts 127.0.0.0/8\n")
    try:
        c = Raw(b.port25)
        assert c.reply().startswith("220 ")
        assert "STARTTLS" in c.cmd("EHLO scanner")
        assert c.cmd("MAIL FROM:<scanner@example.com>").startswith("250 ")
        assert c.cmd("RCPT TO:<bob@example.com>").startswith("250 ")
        assert c.cmd("RCPT TO:<x@other.example>").startswith("550 5.7.1")
        assert c.cmd("DATA").startswith("354 ")
        assert c.cmd("Subject: scan\r\n\r\npdf\r\n.").startswith("250 ")
        c.close()
        m = b.messages("bob")
        assert len(m) == 1 and b"with ESMTP id " in m[0]
        assert b.queued() == {}
    finally:
        b.cleanup()
    b = port25_box(hostbin, free_port,
                   "port25-hosts 127.0.0.1\nport25-recipients carol scans@other.example\n")
    try:
        c = Raw(b.port25)
        c.reply()
        c.cmd("HELO printer")
        c.cmd("MAIL FROM:<printer@example.com>")
        assert c.cmd("RCPT TO:<bob@example.com>").startswith("550 5.7.1")
        assert c.cmd("RCPT TO:<carol@example.com>").startswith("250 ")
        assert c.cmd("RCPT TO:<scans@other.example>").startswith("250 ")
        c.close()
    finally:
        b.cleanup()
    b = port25_box(hostbin, free_port, "port25-hosts 10.0.0.0/8\n")
    try:
        c = Raw(b.port25)
        assert c.reply().startswith("421 ")   # not an allowed device
        c.close()
    finally:
        b.cleanup()


def test_users_file_change_and_sighup(box):
    """A user added to the users file can log in without a restart; SIGHUP
    re-reads the configuration (an invalid one is ignored)."""
    import os
    import signal
    from smtpd_box import pbkdf2_hash
    users = box.data / "etc" / "users"
    text = users.read_text() + f"user dave user {pbkdf2_hash('dave-pw')}\n"
    tmp = users.with_name("users.new")
    tmp.write_text(text)
    os.chown(tmp, users.stat().st_uid, users.stat().st_gid)
    os.replace(tmp, users)
    with smtplib.SMTP_SSL("127.0.0.1", box.port465, timeout=30, context=client_ctx()) as s:
        s.login("dave", "dave-pw")
        s.sendmail("dave@example.com", ["bob@example.com"], MSG)
    assert len(box.messages("bob")) == 1
    conf = box.data / "etc" / "postern.conf"
    conf.write_text("this is not valid\n")
    box.proc.send_signal(signal.SIGHUP)
    box.wait_log("keeping the previous configuration")   # the reload happened
    assert box.proc.poll() is None   # still serving on the old configuration
    assert submit_587(box, "alice", "alice@example.com", ["bob@example.com"]) == {}
    assert "keeping the previous configuration" in box.log.read_text()
