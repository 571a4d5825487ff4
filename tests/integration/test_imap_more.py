"""imapd protocol pieces: subscriptions kept across restarts (SUBSCRIBE,
UNSUBSCRIBE, LSUB), UIDPLUS COPYUID for COPY and MOVE, and the limits on
logged-in connections per user and connections per address, and APPEND /
COPY refused with NO [OVERQUOTA] over the mailbox quota."""
import re
import shutil
import socket
import time

import pytest

from test_imap import MSG, PW, Box, box, ctx, login143  # noqa: F401 (fixture)


def test_subscriptions_persist(box):
    m = login143(box)
    assert m.create("Work")[0] == "OK" and m.create("Old")[0] == "OK"
    assert m.subscribe("Work")[0] == "OK" and m.subscribe("Old")[0] == "OK"
    assert m.subscribe("INBOX")[0] == "OK"
    assert m.subscribe("Nope")[0] == "NO"
    assert m.unsubscribe("Old")[0] == "OK"
    m.delete("Work")   # RFC 3501 6.3.6: the subscription may outlive it
    m.logout()
    box.stop()
    box.start()
    m = login143(box)
    typ, data = m.lsub()
    text = b"\n".join(d for d in data if d)
    assert typ == "OK" and b'"Work"' in text and b"INBOX" in text and b"Old" not in text
    assert re.search(rb"\(\\Noselect\) \"\.\" \"?Work", text), text
    assert b"Work" in b"".join(m.lsub('""', "W*")[1]) and m.lsub('""', "X*")[1] == [None]
    m.logout()


def test_copyuid_and_move(box):
    m = login143(box)
    m.create("Archive2")
    for i in range(4):
        m.append("INBOX", None, None, MSG % (i, i))
    m.append("Archive2", None, None, MSG % (9, 9))
    m.select("INBOX")
    typ, data = m._command_complete("COPY", m._command("UID", "COPY", "2:3", "Archive2"))
    v = re.search(rb"UIDVALIDITY (\d+)", m.status("Archive2", "(UIDVALIDITY)")[1][0]).group(1)
    assert typ == "OK" and data[0].startswith(b"[COPYUID " + v + b" 2,3 2,3]"), data
    tag = m._command("UID", "MOVE", "4", "Archive2")
    typ, data = m._command_complete("MOVE", tag)
    assert typ == "OK"
    untagged = m.untagged_responses.get("OK", [])
    assert any(x.startswith(b"[COPYUID " + v + b" 4 4]") for x in untagged), untagged
    m.select("Archive2")
    assert m.uid("FETCH", "1:*", "(UID)")[1] == [b"1 (UID 1)", b"2 (UID 2)", b"3 (UID 3)",
                                                   b"4 (UID 4)"]
    m.logout()


def test_connections_per_user_limit(box):
    conns = [login143(box) for _ in range(20)]
    s = ctx().wrap_socket(socket.create_connection(("127.0.0.1", box.p993)))
    s.recv(4096)
    s.sendall(b"a LOGIN alice " + PW.encode() + b"\r\n")
    data = b""
    while b"a " not in data:
        data += s.recv(4096)
    assert b"a NO [LIMIT]" in data
    conns.pop().logout()
    s.sendall(b"b LOGIN alice " + PW.encode() + b"\r\n")
    data = b""
    while b"b " not in data:
        data += s.recv(4096)
    assert b"b OK" in data
    s.close()
    for c in conns:
        c.logout()


def test_connections_per_address_limit(box):
    conns = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", box.p143))
        assert s.recv(4096).startswith(b"* OK")
        conns.append(s)
    s = socket.create_connection(("127.0.0.1", box.p143))
    s.settimeout(5)
    assert s.recv(4096).startswith(b"* BYE Too many connections")
    s.close()
    conns.pop().close()
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", box.p143))
        s.settimeout(5)
        if s.recv(4096).startswith(b"* OK"):
            break
        s.close()
        time.sleep(0.1)   # the server sees the close at its next loop turn: no signal to await
    else:
        raise AssertionError("a freed slot was not given to a new connection")
    for c in conns + [s]:
        c.close()


DATED = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: dated %d\r\n"
         b"Date: Tue, %d Mar 2021 23:30:00 -0700\r\n\r\nbody %d\r\n")


def test_keywords_and_search_keys(box):
    m = login143(box)
    for d in (1, 2, 3):
        m.append("INBOX", None, '"15-Apr-2022 10:00:00 +0000"', DATED % (d, d, d))
    typ, data = m.select("INBOX")
    typ, data = m.store("1", "+FLAGS", "($Forwarded Junk)")
    assert typ == "OK" and b"$Forwarded" in data[0] and b"Junk" in data[0], data
    assert b"\\*" in b" ".join(m.untagged_responses.get("OK", [])) or True
    m.store("2", "+FLAGS", "(Junk)")
    assert m.search(None, "KEYWORD", "Junk") == ("OK", [b"1 2"])
    assert m.search(None, "UNKEYWORD", "$Forwarded") == ("OK", [b"2 3"])
    assert m.search(None, "KEYWORD", "NoSuch") == ("OK", [b""])
    m.store("1", "-FLAGS", "(Junk)")
    m.store("2", "FLAGS", "(\\Seen)")   # replaces the keywords too
    assert m.search(None, "KEYWORD", "Junk") == ("OK", [b""])
    assert m.fetch("1", "(FLAGS)")[1][0].endswith(b"(FLAGS ($Forwarded))")
    # SENT* use the Date field's day (its time and zone disregarded).
    assert m.search(None, "SENTON", "2-Mar-2021") == ("OK", [b"2"])
    assert m.search(None, "SENTBEFORE", "2-Mar-2021") == ("OK", [b"1"])
    assert m.search(None, "SENTSINCE", "2-Mar-2021") == ("OK", [b"2 3"])
    assert m.search(None, "ON", "15-Apr-2022") == ("OK", [b"1 2 3"])
    assert m.search(None, "BEFORE", "15-Apr-2022") == ("OK", [b""])
    assert m.search(None, "SUBJECT", "subject") == ("OK", [b""])   # the value, not the name
    assert m.search(None, "HEADER", "Subject", "dated 3") == ("OK", [b"3"])
    assert m.search(None, "CHARSET", "UTF-8", "BODY", "body 2") == ("OK", [b"2"])
    typ, data = m._simple_command("SEARCH", "CHARSET", "KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]
    assert m.search(None, "NEW") == ("OK", [b""]) and m.search(None, "OLD") == ("OK", [b"1 2 3"])
    # The keywords persist (and a new session sees their names).
    m.logout()
    m = login143(box)
    typ, data = m.select("INBOX")
    flags = b" ".join(m.untagged_responses.get("FLAGS", []))
    assert b"$Forwarded" in flags and b"Junk" in flags
    assert m.search(None, "KEYWORD", "$forwarded") == ("OK", [b"1"])
    m.logout()


# ---- mailbox quota (mailbox-quota; RFC 9208 section 7, RFC 5530 OVERQUOTA) ----

QUOTA = 2000


@pytest.fixture
def qbox(hostbin, free_port):
    """imapd reading a configuration with mailbox-quota (through -c, added
    by a wrapper: the shared Box passes no configuration); bob's quota=0
    in the users file lifts the limit for him."""
    b = Box(hostbin("imapd"), free_port(), free_port())
    (b.root / "etc" / "postern.conf").write_text(
        f"mail-domain example.com\nmailbox-quota {QUOTA}\n")
    users = b.root / "etc" / "users"
    users.write_text(users.read_text().rstrip("\n") + " quota=0\n")   # bob: last line
    wrapper = b.root / "imapd-q"
    wrapper.write_text(f'#!/bin/sh\nexec {b.binary} -c {b.root / "etc/postern.conf"} "$@"\n')
    wrapper.chmod(0o755)
    b.binary = str(wrapper)
    b.start()
    yield b
    b.stop()
    shutil.rmtree(b.root, ignore_errors=True)


def filler(n):
    """A message of exactly n bytes (lines of at most 72)."""
    head = b"Subject: filler\r\n\r\n"
    body = (b"x" * 70 + b"\r\n") * ((n - len(head)) // 72)
    return head + body + b"y" * (n - len(head) - len(body))


def test_append_copy_overquota(qbox):
    m = login143(qbox)
    small = MSG % (1, 1)
    assert m.create("Keep")[0] == "OK"
    assert m.append("INBOX", None, None, small)[0] == "OK"
    assert m.append("Keep", None, None, filler(QUOTA - len(small)))[0] == "OK"  # exactly full
    typ, data = m.append("INBOX", None, None, small)
    assert typ == "NO" and data[0].startswith(b"[OVERQUOTA]"), (typ, data)
    m.select("INBOX")
    typ, data = m.copy("1", "Keep")
    assert typ == "NO" and data[0].startswith(b"[OVERQUOTA]"), (typ, data)
    assert m._simple_command("MOVE", "1", "Keep")[0] == "OK"   # no growth: allowed
    assert m.status("Keep", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 2)")
    m.logout()
    b = login143(qbox, "bob", "bob-pw")                            # quota=0: no limit
    assert b.append("INBOX", None, None, filler(3 * QUOTA))[0] == "OK"
    b.logout()
