"""Per-address connection limits of smtpd (src/smtpd/limits.c): at most
SMTPD_CONNS_PER_ADDR (32) connections at once and SMTPD_RATE_PER_ADDR
(120) new connections per minute from one address; beyond either, 421 and
close before the greeting, and a slot freed by a QUIT is usable again."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "smtpd"))
from smtpd_box import Raw, SmtpdBox  # noqa: E402

PER_ADDR = 32
RATE = 120


@pytest.fixture
def box(hostbin, free_port):
    b = SmtpdBox(hostbin("smtpd"), free_port(), free_port())
    b.start()
    yield b
    b.cleanup()


def greet(port):
    c = Raw(port)
    return c, c.reply()


def quit_and_wait(c):
    """QUIT, then read to the end: the server has released the slot when
    its close reaches us (one event loop: release before close)."""
    assert c.cmd("QUIT").startswith("221")
    while c.sock.recv(4096):
        pass
    c.close()


def test_connections_per_address(box):
    open_ = []
    try:
        for _ in range(PER_ADDR):
            c, g = greet(box.port587)
            assert g.startswith("220 "), g
            open_.append(c)
        c, g = greet(box.port587)
        assert g == "421 4.7.0 too many connections from your address", g
        assert c.sock.recv(100) == b""            # and closed
        c.close()
        quit_and_wait(open_.pop())
        c, g = greet(box.port587)                 # a freed slot serves again
        assert g.startswith("220 "), g
        open_.append(c)
    finally:
        for c in open_:
            c.close()
    assert "refused: too many connections" in box.log.read_text()


def test_new_connections_per_address_rate(box):
    admitted = 0
    while admitted <= RATE:
        c, g = greet(box.port587)
        if g.startswith("421"):
            c.close()
            break
        admitted += 1
        quit_and_wait(c)
    assert admitted == RATE
    assert g == "421 4.7.0 too many new connections from your address, try again later", g
