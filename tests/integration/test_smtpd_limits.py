"""Per-address connection limits of smtpd (src/smtpd/limits.c): at most
SMTPD_CONNS_PER_ADDR (32) connections at once and SMTPD_RATE_PER_ADDR
(120) new connections per minute from one address; beyond either, 421 and
close before the greeting, and a slot freed by a QUIT is usable again.
Mailbox quota (mailbox-quota, users quota=): 452 4.2.2 at RCPT for a full
mailbox (RFC 3463), and after DATA when the message itself does not fit;
nothing delivered to anyone then."""
import os
import pathlib
import smtplib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "smtpd"))
from smtpd_box import USERS, Raw, SmtpdBox, client_ctx  # noqa: E402

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


# ---- mailbox quota ----------------------------------------------------------

QUOTA = 10240


def fill(b, user, size):
    """A Maildir holding one message of `size` bytes (the name carries S=,
    which is what the usage sums), owned like smtpd's own files."""
    root = b.data / "mail" / user
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    f = root / "cur" / f"1700000000.M1P1Q1.box,S={size}:2,S"
    f.write_bytes(b"x" * size)
    if b.run_user:
        st = (b.data / "mail").stat()
        for p in [root, *root.rglob("*")]:
            os.chown(p, st.st_uid, st.st_gid)


@pytest.fixture
def qbox(hostbin, free_port):
    b = SmtpdBox(hostbin("smtpd"), free_port(), free_port(),
                 conf_extra=f"mailbox-quota {QUOTA}\n")
    with open(b.data / "etc" / "users", "a") as f:   # dave: no limit for him
        f.write("user dave user ! quota=0\n")
    fill(b, "bob", QUOTA)               # exactly full
    fill(b, "alice", QUOTA - 1000)      # room for 1000 bytes
    fill(b, "dave", 5 * QUOTA)
    b.start()
    yield b
    b.cleanup()


def session(b):
    s = smtplib.SMTP("127.0.0.1", b.port587, timeout=60)
    s.starttls(context=client_ctx())
    s.login("carol", USERS["carol"])
    return s


MSG = b"From: carol@example.com\r\nSubject: q\r\n\r\nhello\r\n"


def test_rcpt_452_for_full_mailbox_others_fine(qbox):
    with session(qbox) as s:
        assert s.mail("carol@example.com")[0] == 250
        code, text = s.rcpt("bob@example.com")
        assert (code, text) == (452, b"4.2.2 Mailbox full"), (code, text)
        assert s.rcpt("team@example.com")[0] == 452        # the list reaches bob
        assert s.rcpt("carol@example.com")[0] == 250
        assert s.rcpt("dave@example.com")[0] == 250        # quota=0 overrides
        assert s.data(MSG)[0] == 250
    assert len(qbox.messages("carol")) == 1
    assert len(qbox.messages("dave")) == 1
    assert qbox.messages("bob") == []
    assert "recipient over quota to=<bob@example.com>" in qbox.log.read_text()


def test_rcpt_size_param(qbox):
    """RFC 1870 SIZE= is checked at RCPT: too big for alice's 1000 bytes left."""
    with session(qbox) as s:
        assert s.mail("carol@example.com", ["SIZE=5000"])[0] == 250
        assert s.rcpt("alice@example.com")[0] == 452
        assert s.rcpt("carol@example.com")[0] == 250       # empty: 5000 fits
        s.rset()
        assert s.mail("carol@example.com", ["SIZE=50"])[0] == 250
        assert s.rcpt("alice@example.com")[0] == 250


def test_data_452_when_message_does_not_fit(qbox):
    """alice passes RCPT (not yet full) but the message is larger than
    her room: 452 4.2.2 after DATA, and carol gets nothing either."""
    big = MSG + (b"y" * 70 + b"\r\n") * 30
    with session(qbox) as s:
        assert s.mail("carol@example.com")[0] == 250
        assert s.rcpt("alice@example.com")[0] == 250
        assert s.rcpt("carol@example.com")[0] == 250
        code, text = s.data(big)
        assert (code, text) == (452, b"4.2.2 Mailbox full"), (code, text)
        assert s.mail("carol@example.com")[0] == 250       # the session goes on
        assert s.rcpt("alice@example.com")[0] == 250
        assert s.data(MSG)[0] == 250                       # a small one fits
        # (with its Received: header)
    assert len(qbox.messages("alice")) == 1
    assert qbox.messages("carol") == []
    assert qbox.queued() == {}
