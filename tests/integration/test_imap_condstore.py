"""CONDSTORE (RFC 7162 section 3) in imapd: HIGHESTMODSEQ on SELECT and
STATUS, FETCH MODSEQ and CHANGEDSINCE, STORE UNCHANGEDSINCE with MODIFIED,
SEARCH MODSEQ, MODSEQ in untagged FETCHes once enabled; modseqs raised by
flag changes from another connection, deliveries and expunges, and kept
across a restart; the answers have Dovecot's shape (Dovecot serving a copy
of the same Maildir)."""
import os
import pathlib
import re
import shutil
import sys

import pytest

from test_imap import MSG, PW, box  # noqa: F401 (fixture)
from test_imap_mime import Raw

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dovecot"))
from imap_peer import DovecotImap  # noqa: E402

NOBODY = 65534


class Client(Raw):
    """Raw with answers kept: cmd() returns (untagged lines, tagged line)."""

    def run(self, text):
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        out = []
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                return out, ln
            out.append(ln)

    def ok(self, text):
        out, done = self.run(text)
        assert re.match(rb"t\d+ OK", done), (text, done, out)
        return out, done


def hms(lines):
    for ln in lines:
        m = re.search(rb"HIGHESTMODSEQ (\d+)", ln)
        if m:
            return int(m.group(1))
    raise AssertionError(lines)


def modseqs(lines):
    """{sequence number: modseq} of the untagged FETCHes that carry one."""
    out = {}
    for ln in lines:
        m = re.match(rb"\* (\d+) FETCH \(.*MODSEQ \((\d+)\)", ln)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def deliver(md, i):
    name = f"17000000{i:02d}.M{i}P9.cond,S={len(MSG % (i, i))}"
    (md / "new" / name).write_bytes(MSG % (i, i))


def fill(box, n):
    c = Client(box.p993, True)
    c.ok(f"LOGIN alice {PW}")
    for i in range(n):
        deliver(box.maildir(), i)
    return c


def test_capability_enable_select(box):
    c = fill(box, 3)
    caps, _ = c.ok("CAPABILITY")
    assert b" CONDSTORE" in caps[0]
    out, _ = c.ok("ENABLE CONDSTORE")
    assert out == [b"* ENABLED CONDSTORE"]
    out, done = c.ok("SELECT INBOX (CONDSTORE)")
    assert hms(out) >= 1
    out, _ = c.ok("FETCH 1:* (MODSEQ)")
    assert all(re.fullmatch(rb"\* \d FETCH \(MODSEQ \(\d+\)\)", ln) for ln in out), out
    assert max(modseqs(out).values()) <= hms(c.ok("SELECT INBOX")[0])
    _, done = c.run("SELECT INBOX (NOSUCH)")
    assert b" BAD " in done


def test_store_fetch_search(box):
    c = fill(box, 4)
    out, _ = c.ok("SELECT INBOX (CONDSTORE)")
    h0 = hms(out)
    out, _ = c.ok("STORE 2 +FLAGS (\\Flagged)")
    # RFC 7162 3.2: MODSEQ in the untagged FETCH once enabled
    assert re.fullmatch(rb"\* 2 FETCH \(FLAGS \(\\Flagged\) MODSEQ \((\d+)\)\)", out[0]), out
    m2 = modseqs(out)[2]
    assert m2 > h0
    # CHANGEDSINCE: only what changed, MODSEQ implied
    out, _ = c.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {h0})")
    assert list(modseqs(out)) == [2] and b"FLAGS (\\Flagged)" in out[0], out
    out, _ = c.ok(f"UID FETCH 1:* (UID) (CHANGEDSINCE {m2})")
    assert out == []
    # UNCHANGEDSINCE: 2 changed after h0 -> MODIFIED; 1 and 3 stored, even .SILENT
    out, done = c.ok(f"STORE 1:3 (UNCHANGEDSINCE {h0}) +FLAGS.SILENT (\\Seen)")
    assert re.search(rb"OK \[MODIFIED 2\]", done), done
    assert sorted(modseqs(out)) == [1, 3], out
    m13 = modseqs(out)[1]
    assert m13 > m2 and modseqs(out)[3] == m13
    out, _ = c.ok("FETCH 2 (FLAGS)")
    assert b"\\Seen" not in out[0]
    out, done = c.ok(f"UID STORE 2 (UNCHANGEDSINCE {m2}) FLAGS (\\Answered)")
    assert b"MODIFIED" not in done and re.search(rb"UID 2 MODSEQ \(\d+\)", out[0]), out
    # SEARCH MODSEQ with the highest modseq of the result
    out, _ = c.ok(f"SEARCH MODSEQ {m13}")
    m = re.fullmatch(rb"\* SEARCH ((?:\d+ ?)+) \(MODSEQ (\d+)\)", out[0])
    assert m and m.group(1).split() == [b"1", b"2", b"3"], out
    out, _ = c.ok(f'UID SEARCH MODSEQ "/flags/\\\\draft" all {m13} UNSEEN')
    assert re.fullmatch(rb"\* SEARCH 2 \(MODSEQ \d+\)", out[0]), out
    out, _ = c.ok("SEARCH MODSEQ 9223372036854775807")
    assert out == [b"* SEARCH"]
    # STATUS HIGHESTMODSEQ is the mailbox's
    out, _ = c.ok("STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
    assert hms(out) == max(modseqs(c.ok("FETCH 1:* (MODSEQ)")[0]).values())


def test_changes_by_others_deliveries_expunges(box):
    a = fill(box, 3)
    b = Client(box.p993, True)
    b.ok(f"LOGIN alice {PW}")
    a.ok("SELECT INBOX")
    out, _ = b.ok("SELECT INBOX")
    h0 = hms(out)
    # before CONDSTORE is enabled: no MODSEQ in untagged FETCHes
    b.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
    out, _ = a.ok("NOOP")
    assert out == [b"* 1 FETCH (UID 1 FLAGS (\\Seen))"], out
    a.ok("ENABLE CONDSTORE")
    b.ok("STORE 3 +FLAGS.SILENT (\\Flagged)")
    out, _ = a.ok("NOOP")
    assert re.fullmatch(rb"\* 3 FETCH \(UID 3 FLAGS \(\\Flagged\) MODSEQ \((\d+)\)\)", out[0]), out
    h1 = modseqs(out)[3]
    assert h1 > h0
    # a delivery (smtpd/fetchd write the Maildir): a new, higher modseq
    deliver(box.maildir(), 50)
    out, _ = a.ok("STATUS INBOX (HIGHESTMODSEQ)")
    h2 = hms(out)
    assert h2 > h1
    assert b"* 4 EXISTS" in a.ok("NOOP")[0]
    out, _ = a.ok("FETCH 4 (MODSEQ)")
    assert modseqs(out)[4] == h2
    # an expunge raises HIGHESTMODSEQ too
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    out, _ = a.ok("STATUS INBOX (HIGHESTMODSEQ)")
    h3 = hms(out)
    assert h3 > h2
    assert b"* 2 EXPUNGE" in a.ok("NOOP")[0]
    before = modseqs(a.ok("FETCH 1:* (MODSEQ)")[0])
    # kept across a restart
    box.stop()
    box.start()
    c = Client(box.p993, True)
    c.ok(f"LOGIN alice {PW}")
    out, _ = c.ok("SELECT INBOX (CONDSTORE)")
    assert hms(out) == h3
    assert modseqs(c.ok("FETCH 1:* (MODSEQ)")[0]) == before


def items(line):
    """The item names of an untagged FETCH, in order."""
    body = re.sub(rb"\([^()]*\)", b"()", re.sub(rb"^\* \d+ FETCH \(|\)$", b"", line))
    return sorted(re.findall(rb"([A-Z][A-Z0-9.]*) ", body + b" "))


def test_shapes_match_dovecot(box, free_port):
    """The same dialogue against imapd and Dovecot (a copy of the Maildir):
    the same messages are named and the answers have the same items."""
    c = fill(box, 3)
    c.ok("SELECT INBOX")
    copy = pathlib.Path(str(box.root) + "-dv")
    shutil.copytree(box.root / "mail", copy / "mail")
    for p in (copy / "mail" / "alice").glob("postern-*"):
        p.unlink()
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(copy):
            for n in dirs + files:
                os.chown(os.path.join(root, n), NOBODY, NOBODY)
        os.chown(copy, NOBODY, NOBODY)
    dv = DovecotImap(copy / "mail")
    dv.add_user("alice", "dvpw")
    ports = [free_port(), free_port()]
    dv.start(*ports)
    try:
        d = Client(ports[0], False)
        d.ok("LOGIN alice dvpw")
        ours, theirs = {}, {}
        for cl, res in ((c, ours), (d, theirs)):
            out, _ = cl.ok("SELECT INBOX (CONDSTORE)")
            h0 = hms(out)
            res["fetch"] = [items(x) for x in cl.ok("FETCH 1:* (MODSEQ FLAGS)")[0]]
            out, _ = cl.ok("STORE 2 +FLAGS (\\Flagged)")
            res["store"] = [items(x) for x in out]
            m2 = modseqs(out)[2]
            res["store_grew"] = m2 > h0
            out, _ = cl.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {h0})")
            res["changed"] = [(x.split()[1], items(x)) for x in out]
            out, done = cl.ok(f"STORE 1:2 (UNCHANGEDSINCE {h0}) +FLAGS (\\Seen)")
            res["modified"] = re.sub(rb"^t\d+ OK (\[MODIFIED [0-9,:]+\]).*", rb"\1", done)
            res["unchanged"] = [(x.split()[1], items(x)) for x in out]
            out, _ = cl.ok(f"SEARCH MODSEQ {m2}")
            res["search"] = re.sub(rb"MODSEQ \d+", b"MODSEQ n", out[0])
            res["status"] = bool(re.search(rb"HIGHESTMODSEQ \d+",
                                           cl.ok("STATUS INBOX (HIGHESTMODSEQ)")[0][0]))
        assert ours == theirs
    finally:
        dv.cleanup()
        shutil.rmtree(copy, ignore_errors=True)
