"""relayd never sends credentials or mail to a server it has not verified:
wrong pin, wrong host name, self-signed without a pin, no STARTTLS, and a
STARTTLS response injection. Asserted on the bytes the fake server
received; a positive control shows the same server does receive them when
verification passes."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "postfix"))
from fakesmtp import FakeSmtp  # noqa: E402
from postfix import RelayCA  # noqa: E402
from relaybox import RelayBox  # noqa: E402

BODY = b"From: alice@example.com\r\nSubject: secret-body-marker\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return RelayCA(tmp_path_factory.mktemp("ca"))


def run_against(hostbin, srv, conf):
    """Queues one message, lets relayd try once, returns (box, env text)."""
    srv.start()
    box = RelayBox(hostbin("relayd"), conf)
    try:
        qid = box.enqueue(BODY, ["friend@remote.test"])
        box.start()
        box.wait(lambda: "rcpt pending 1 " in (box.env(qid) or "") or not box.queued(),
                 what="one attempt")
        return box.logtext(), box.env(qid)
    finally:
        box.cleanup()
        srv.stop()


def conf(port, verify, extra=""):
    return (f"host localhost\nport {port}\ntls starttls\nverify {verify}\n"
            "user relay\npassword-file smarthost.pass\n" + extra)


def assert_nothing_sent(srv):
    got = srv.received()
    for secret in (b"AUTH", b"MAIL FROM", b"RCPT", b"secret-body-marker",
                   b"cmVsYXlwYXNz", b"AHJlbGF5AHJlbGF5cGFzcw=="):
        assert secret not in got, (secret, got)
    assert not srv.messages


def test_control_verified_server_gets_the_message(ca, hostbin):
    crt, key, pin = ca.leaf("good")
    srv = FakeSmtp(cert=crt, key=key)
    log, env = run_against(hostbin, srv, conf(srv.port, "ca", f"ca-file {ca.crt}\n"))
    assert env is None, log   # delivered and removed
    assert b"AUTH PLAIN AHJlbGF5AHJlbGF5cGFzcw==" in srv.received()
    assert srv.messages and b"secret-body-marker" in srv.messages[0][2]


def test_wrong_pin(ca, hostbin):
    crt, key, pin = ca.leaf("pinned")
    srv = FakeSmtp(cert=crt, key=key)
    log, env = run_against(hostbin, srv, conf(srv.port, "pin", "pin " + "ab" * 32 + "\n"))
    assert_nothing_sent(srv)
    assert "TLS" in env and "nothing sent" in env, env
    assert pin in log   # the error names the key the server presented


def test_wrong_host_name(ca, hostbin):
    crt, key, _ = ca.leaf("other", dns="other.example")
    srv = FakeSmtp(cert=crt, key=key)
    log, env = run_against(hostbin, srv, conf(srv.port, "ca", f"ca-file {ca.crt}\n"))
    assert_nothing_sent(srv)
    assert "TLS" in env, env


def test_self_signed_without_pin(ca, hostbin):
    crt, key, _ = ca.leaf("selfsigned", self_signed=True)
    srv = FakeSmtp(cert=crt, key=key)
    log, env = run_against(hostbin, srv, conf(srv.port, "ca", f"ca-file {ca.crt}\n"))
    assert_nothing_sent(srv)
    assert "TLS" in env, env


def test_no_starttls_offered(ca, hostbin):
    crt, key, _ = ca.leaf("nostarttls")
    srv = FakeSmtp(cert=crt, key=key, starttls=False)
    log, env = run_against(hostbin, srv, conf(srv.port, "ca", f"ca-file {ca.crt}\n"))
    assert_nothing_sent(srv)
    assert b"EHLO box.example.com" in srv.received()
    assert "does not offer STARTTLS" in env, env


def test_starttls_response_injection(ca, hostbin):
    crt, key, _ = ca.leaf("inject")
    srv = FakeSmtp(cert=crt, key=key, inject=True)
    log, env = run_against(hostbin, srv, conf(srv.port, "ca", f"ca-file {ca.crt}\n"))
    assert_nothing_sent(srv)
    assert "injection" in env, env
    # The session was aborted: no TLS handshake completed, no EHLO after it.
    assert srv.received().count(b"EHLO") == 1
