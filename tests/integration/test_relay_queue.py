"""`postern queue list|flush|delete` with a running relayd: the list shows
each recipient's state and last reply, flush makes relayd retry at once
(not after the 5-minute backoff), delete removes a message."""
import os
import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "postfix"))
from fakesmtp import FakeSmtp  # noqa: E402
from postfix import RelayCA  # noqa: E402
from relaybox import RelayBox  # noqa: E402

BODY = b"From: alice@example.com\r\nSubject: q\r\n\r\nhello\r\n"


@pytest.fixture
def setup(tmp_path, hostbin):
    ca = RelayCA(tmp_path / "ca")
    crt, key, _ = ca.leaf("q")
    tries = []
    srv = FakeSmtp(cert=crt, key=key, rcpt_reply=lambda a: tries.append(a) or "451 4.7.1 later")
    srv.start()
    conf = (f"host localhost\nport {srv.port}\nverify ca\nca-file {ca.crt}\n"
            "user relay\npassword-file smarthost.pass\n")
    box = RelayBox(hostbin("relayd"), conf)   # real time: backoff 5 minutes
    yield box, tries
    box.cleanup()
    srv.stop()


def postern(hostbin, box, *args):
    return subprocess.run([hostbin("postern"), "queue", *args], capture_output=True, text=True,
                          env=dict(os.environ, POSTERN_QUEUE=str(box.q)))


def test_list_flush_delete(setup, hostbin):
    box, tries = setup
    a = box.enqueue(BODY, ["one@remote.test"])
    b = box.enqueue(BODY, ["two@remote.test"])
    box.start()
    box.wait(lambda: len(tries) == 2, what="first attempts")
    box.wait(lambda: all("rcpt pending 1 " in (box.env(i) or "") for i in (a, b)),
             what="deferred")
    out = postern(hostbin, box, "list").stdout
    assert a in out and b in out
    assert "pending" in out and "451 4.7.1 later" in out, out
    r = postern(hostbin, box, "flush")
    assert r.returncode == 0, r.stderr
    box.wait(lambda: len(tries) >= 4, timeout=10, what="retry after flush")
    assert not (box.q / "flush").exists()
    box.wait(lambda: "rcpt pending 2 " in (box.env(a) or ""), what="second deferral")
    r = postern(hostbin, box, "delete", a)
    assert r.returncode == 0, r.stderr + r.stdout
    assert box.queued() == [b]
    assert not (box.q / "msg" / a).exists()
    r = postern(hostbin, box, "delete", a)
    assert r.returncode == 1 and "not queued" in r.stderr
    assert postern(hostbin, box, "delete", "../etc").returncode == 1
