"""relayd against a real Postfix smart host: STARTTLS+AUTH (CA + host name)
and implicit TLS (SPKI pin); the masqueraded envelope and the byte-intact
body arrive; several messages share a connection; the queue empties."""
import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "postfix"))
from postfix import Postfix, RelayCA  # noqa: E402
from relaybox import RelayBox  # noqa: E402


@pytest.fixture(scope="module")
def smarthost(tmp_path_factory):
    import socket
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    ca = RelayCA(tmp_path_factory.mktemp("ca"))
    pf = Postfix(ca)
    pf.start(*ports)
    yield pf
    pf.cleanup()


def message(tag, extra=b""):
    return (b"Received: from x by box\r\nFrom: Alice <alice@box.office.lan>\r\n"
            b"To: friend@remote.test\r\nDate: Sun, 29 Nov 2026 02:00:00 +0000\r\nSubject: relay " + tag.encode() + b"\r\n"
            b"Message-ID: <" + tag.encode() + b"@box>\r\n\r\nHello " + tag.encode() +
            b"\r\n.leading dot line\r\n..two dots\r\n.\r\n8bit: \xc3\xa9t\xc3\xa9\r\n" + extra)


def arrived(pf, tag):
    return [m for _, m in pf.sink() if b"Subject: relay " + tag.encode() + b"\r" in m or
            b"Subject: relay " + tag.encode() + b"\n" in m]


def starttls_conf(pf, extra=""):
    return (f"host localhost\nport {pf.port_starttls}\ntls starttls\nverify ca\n"
            f"ca-file {pf.ca.crt}\nuser relay\npassword-file smarthost.pass\n" + extra)


def test_starttls_auth_masquerade_and_body(smarthost, hostbin):
    box = RelayBox(hostbin("relayd"), starttls_conf(smarthost, "masquerade domain\n"))
    try:
        box.start()
        body = message("one")
        qid = box.enqueue(body, ["friend@remote.test", "other@remote.test"],
                          sender="alice@box.office.lan")
        box.wait(lambda: not box.queued(), what="queue empty")
        box.wait(lambda: len(arrived(smarthost, "one")) == 2, what="two copies")
        got = arrived(smarthost, "one")
        for m in got:
            # The masqueraded envelope sender, as Postfix recorded it.
            assert b"Return-Path: <alice@example.com>" in m
            # Postfix prepends its headers and stores LF line ends: the
            # original text, dot lines included, is the tail, byte for byte.
            assert m.endswith(body.replace(b"\r\n", b"\n")), m
        rcpts = sorted(m.split(b"Delivered-To: ")[1].split(b"\n")[0] for m in got)
        assert rcpts == [b"friend@remote.test", b"other@remote.test"]
        assert f"queue={qid}" in box.logtext()
        assert "TLS established" in box.logtext()
    finally:
        box.cleanup()


def test_implicit_tls_pin_login_masquerade_and_batch(smarthost, hostbin):
    conf = (f"host 127.0.0.1\nport {smarthost.port_tls}\ntls implicit\nverify pin\n"
            f"pin {smarthost.pin}\nuser relay@provider.test\npassword-file smarthost.pass\n"
            "masquerade login\n")
    box = RelayBox(hostbin("relayd"), conf, sessions=1)
    try:
        ids = [box.enqueue(message(f"batch{i}"), ["x@remote.test"]) for i in range(5)]
        box.start()
        box.wait(lambda: not box.queued(), what="queue empty")
        for i in range(5):
            got = box.wait(lambda i=i: arrived(smarthost, f"batch{i}"), what=f"batch{i}")
            assert b"Return-Path: <relay@provider.test>" in got[0]
        # One session carried all five (several messages per connection).
        assert "session closed: 5 message(s)" in box.logtext(), box.logtext()
        assert len(ids) == 5
    finally:
        box.cleanup()


def test_new_message_noticed_promptly(smarthost, hostbin):
    box = RelayBox(hostbin("relayd"), starttls_conf(smarthost, "masquerade off\n"))
    try:
        box.start()
        box.enqueue(message("late"), ["late@remote.test"])   # after start: inotify
        got = box.wait(lambda: arrived(smarthost, "late"), timeout=15, what="late message")
        assert b"Return-Path: <alice@example.com>" in got[0]
        box.wait(lambda: not box.queued(), what="queue empty")
    finally:
        box.cleanup()


def test_missing_password_waits_then_relays(smarthost, hostbin):
    """No smart-host password yet (a fresh box): relayd keeps running, sends
    nothing and says why; once the secret is stored, the queue goes out
    without a restart or a signal. The secrets directory is root's 0711 as
    on the box: relayd, no longer root, reads the new secret through the
    directory descriptor it opened before dropping root (it once failed
    here with "Permission denied" on the booted box only)."""
    box = RelayBox(hostbin("relayd"), starttls_conf(smarthost, "masquerade off\n"))
    secret = box.data / "secrets" / "smarthost.pass"
    try:
        secret.unlink()
        box.start()
        box.enqueue(message("nopw"), ["nopw@remote.test"])
        box.wait(lambda: "smart-host password" in box.logtext(), what="the reason logged")
        assert box.proc.poll() is None, "relayd stopped"
        assert box.queued() and not arrived(smarthost, "nopw")
        secret.write_text("relaypass\n")
        secret.chmod(0o600)
        if os.geteuid() == 0:     # relayd's own file, as `postern secret set` makes it
            os.chown(secret, box.nobody.pw_uid, box.nobody.pw_gid)
        box.wait(lambda: arrived(smarthost, "nopw"), timeout=60, what="relayed after the secret")
        box.wait(lambda: not box.queued(), what="queue empty")
    finally:
        box.cleanup()
