"""smtpd's start-up and reload through src/lib/server.h (docs/smtpd.8.md
"Options", "Signals", "Exit status"): usage errors and an invalid
configuration exit 100 with a clear message; SIGHUP puts a changed
configuration into effect for the next connection and keeps the old one
when the new one is invalid."""
import pathlib
import signal
import smtplib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "smtpd"))
from smtpd_box import SmtpdBox  # noqa: E402

EXIT_PERM = 100


@pytest.fixture
def box(hostbin, free_port):
    b = SmtpdBox(hostbin("smtpd"), free_port(), free_port())
    yield b
    b.cleanup()


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("extra", [["--no-such-option"], ["stray-operand"], ["--queue"]])
def test_usage_error(box, extra):
    """An unknown option, an operand or a missing argument: the synopsis on
    stderr, exit 100, nothing bound."""
    r = run(box.argv() + extra)
    assert r.returncode == EXIT_PERM, r.stderr
    assert "usage: smtpd" in r.stderr
    assert "--submission ADDR:PORT" in r.stderr


def test_invalid_configuration_at_start(box):
    """The configuration's errors are logged with file and line; exit 100."""
    conf = box.data / "etc" / "postern.conf"
    conf.write_text("hostname box\nmail-domain example.com\n[smtp]\nmax-message-size lots\n")
    r = run(box.argv())
    assert r.returncode == EXIT_PERM, r.stderr
    assert f"{conf}:4:" in r.stderr
    assert "invalid configuration" in r.stderr


def ehlo_size(port):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.test")
        return int(s.esmtp_features["size"])


def test_sighup_applies_new_configuration(box):
    """SIGHUP: a valid new max-message-size is announced to the next client;
    an invalid file keeps it (and smtpd keeps serving)."""
    box.start()
    assert ehlo_size(box.port587) == 25 << 20
    conf = box.data / "etc" / "postern.conf"
    conf.write_text("hostname box\nmail-domain example.com\n[smtp]\nmax-message-size 1M\n")
    box.proc.send_signal(signal.SIGHUP)
    box.wait_log("configuration reloaded")
    assert ehlo_size(box.port587) == 1 << 20
    conf.write_text("hostname box\nmail-domain example.com\n[smtp]\nmax-message-size lots\n")
    box.proc.send_signal(signal.SIGHUP)
    box.wait_log("keeping the previous configuration")
    assert f"{conf}:4:" in box.log.read_text()
    assert ehlo_size(box.port587) == 1 << 20
    assert box.stop() == 0
