"""Retries, delay notices, give-up and DSNs (RFC 3464) with a sped-up queue
clock (--time-scale): a 4xx is retried with backoff, a 5xx bounces at
once into the local sender's Maildir, a message that stays deferred gets a
delay notice and finally bounces with status 5.4.7."""
import pathlib
import re
import sys
import threading

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "postfix"))
from fakesmtp import FakeSmtp  # noqa: E402
from postfix import RelayCA  # noqa: E402
from relaybox import RelayBox  # noqa: E402

BODY = b"From: alice@example.com\r\nSubject: retry-test\r\nMessage-ID: <r@x>\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return RelayCA(tmp_path_factory.mktemp("ca"))


class Script:
    """RCPT replies: perm@ 550, temp@ 451 until `ok` is set, others 250."""

    def __init__(self):
        self.ok = threading.Event()
        self.tries = {}

    def __call__(self, addr):
        self.tries[addr] = self.tries.get(addr, 0) + 1
        if addr.startswith("perm@"):
            return "550 5.1.1 <%s>: no such user" % addr
        if addr.startswith("temp@") and not self.ok.is_set():
            return "451 4.3.0 try again later"
        return "250 2.1.5 ok"


def make_setup(ca, hostbin, extra, scale):
    crt, key, _ = ca.leaf("retry")
    script = Script()
    srv = FakeSmtp(cert=crt, key=key, rcpt_reply=script)
    srv.start()
    conf = (f"host localhost\nport {srv.port}\nverify ca\nca-file {ca.crt}\n"
            "user relay\npassword-file smarthost.pass\n" + extra)
    return srv, script, RelayBox(hostbin("relayd"), conf, scale=scale)


def test_5xx_bounces_at_once_4xx_is_retried(ca, hostbin):
    srv, script, box = make_setup(ca, hostbin, "", 600)   # 5 minutes = 0.5 s
    try:
        qid = box.enqueue(BODY, ["perm@remote.test", "temp@remote.test", "good@remote.test"])
        box.start()
        dsn = box.wait(lambda: box.maildir("alice"), what="the DSN")[0]
        assert b"Content-Type: multipart/report; report-type=delivery-status" in dsn
        assert b"Final-Recipient: rfc822; perm@remote.test\r\nAction: failed\r\nStatus: 5.1.1" \
            in dsn.replace(b"\n", b"\r\n").replace(b"\r\r", b"\r")
        assert b"temp@remote.test" not in dsn.split(b"message/delivery-status")[1].split(
            b"text/rfc822-headers")[0]
        assert b"Subject: retry-test" in dsn   # the original header is attached
        # good@ was accepted once and is not sent again; temp@ is retried.
        box.wait(lambda: script.tries.get("temp@remote.test", 0) >= 3, what="retries")
        env = box.env(qid)
        assert re.search(r"rcpt pending \d+ \d+ temp@remote.test 451", env), env
        assert "rcpt sent 0" in env and "good@remote.test" in env
        assert "rcpt bounced 0" in env and "perm@remote.test 550" in env
        script.ok.set()
        box.wait(lambda: not box.queued(), what="queue empty")
        delivered = [r for _, rs, _ in srv.messages for r in rs]
        assert delivered.count("good@remote.test") == 1
        assert delivered.count("temp@remote.test") == 1
        assert len(box.maildir("alice")) == 1   # one bounce, no more
    finally:
        box.cleanup()
        srv.stop()


def test_delay_notice_then_give_up(ca, hostbin):
    # Queue time runs 3600x: delay notice after 1 h = 1 s, give up after 3 h.
    srv, script, box = make_setup(ca, hostbin, "delay-notice 1h\ngive-up 3h\n", 3600)
    try:
        qid = box.enqueue(BODY, ["temp@remote.test"])
        box.start()
        first = box.wait(lambda: box.maildir("alice"), timeout=20, what="delay notice")[0]
        assert b"Subject: Delayed Mail" in first
        assert b"Action: delayed" in first and b"Status: 4.3.0" in first
        box.wait(lambda: "notified 1" in (box.env(qid) or "") or not box.queued(), what="notified")
        box.wait(lambda: not box.queued(), timeout=30, what="give-up")
        msgs = box.maildir("alice")
        assert len(msgs) == 2, msgs
        final = [m for m in msgs if b"Undelivered Mail" in m][0]
        assert b"Action: failed" in final and b"Status: 5.4.7" in final
        assert b"gave up after" in final
    finally:
        box.cleanup()
        srv.stop()


def test_null_sender_never_bounced(ca, hostbin):
    srv, script, box = make_setup(ca, hostbin, "", 600)
    try:
        box.enqueue(BODY, ["perm@remote.test"], sender="")
        box.start()
        box.wait(lambda: not box.queued(), what="queue empty")
        assert box.maildir("alice") == []
        assert script.tries["perm@remote.test"] == 1
    finally:
        box.cleanup()
        srv.stop()
