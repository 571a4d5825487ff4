"""relayd's SIGHUP (src/relayd/main.c load_all): a configuration whose
ca-file cannot be read changes nothing, so relaying goes on with the trust
anchors in use (it used to drop them, and every session then failed
verification until a good reload); a users file that cannot be read keeps
the users loaded before."""
import os
import pathlib
import shutil
import signal
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "postfix"))
from fakesmtp import FakeSmtp  # noqa: E402
from postfix import RelayCA  # noqa: E402
from relaybox import RelayBox  # noqa: E402

BODY = b"From: alice@example.com\r\nSubject: reload-marker\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return RelayCA(tmp_path_factory.mktemp("ca"))


def conf(port, ca_file):
    return (f"host localhost\nport {port}\ntls starttls\nverify ca\nca-file {ca_file}\n"
            "user relay\npassword-file smarthost.pass\n")


def hup(box, marker):
    """SIGHUP, then wait until relayd has logged marker (part of the error
    the reload meets)."""
    box.proc.send_signal(signal.SIGHUP)
    box.wait(lambda: marker in box.logtext(), what="the reload")


def test_unreadable_ca_file_keeps_relaying(ca, hostbin, tmp_path):
    crt, key, _ = ca.leaf("good")
    srv = FakeSmtp(cert=crt, key=key)
    srv.start()
    box = RelayBox(hostbin("relayd"), "")
    anchors = box.root / "ca.pem"            # readable after the privilege drop
    shutil.copy(ca.crt, anchors)
    anchors.chmod(0o644)
    box.set_conf(conf(srv.port, anchors))
    try:
        box.start()
        if os.geteuid() == 0:     # relayd's own secret, as `postern secret fix` makes it
            os.chown(box.data / "secrets/smarthost.pass", box.nobody.pw_uid, box.nobody.pw_gid)
        (box.data / "etc/users").write_text("this is not a users file\n")
        hup(box, "unknown record 'this'")
        box.wait(lambda: "configuration reloaded" in box.logtext(), what="the reload's end")
        assert "keeping the previous users" in box.logtext()
        box.set_conf(conf(srv.port, tmp_path / "missing-ca.pem"))
        hup(box, "missing-ca.pem")
        box.wait(lambda: "keeping the previous configuration" in box.logtext(),
                 what="the reload's end")
        qid = box.enqueue(BODY, ["friend@remote.test"])
        box.wait(lambda: box.env(qid) is None, what="the message relayed")
        assert srv.messages and b"reload-marker" in srv.messages[0][2]
    finally:
        box.cleanup()
        srv.stop()
