"""FETCH through the MIME parser, compared with Dovecot: the same messages
(tests/fuzz/corpus/mime/*.eml) in one Maildir, served by imapd and by a
private Dovecot pointed at that Maildir; ENVELOPE, BODY, BODYSTRUCTURE and
BODY[section] answers must match byte for byte (after the case of
strings that RFC 3501 leaves to the server)."""
import os
import pathlib
import re
import socket
import ssl
import sys

import pytest

from test_imap import PW, box, ctx  # noqa: F401 (fixture)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dovecot"))
from imap_peer import DovecotImap  # noqa: E402

CORPUS = pathlib.Path(__file__).resolve().parents[1] / "fuzz" / "corpus" / "mime"
NOBODY = 65534


class Raw:
    """A minimal IMAP client that returns the exact bytes of each answer."""

    def __init__(self, port, tls):
        s = socket.create_connection(("127.0.0.1", port))
        self.s = ctx().wrap_socket(s) if tls else s
        self.s.settimeout(20)
        self.buf = b""
        self.n = 0
        self.line()

    def line(self):
        buf = bytearray(self.buf)
        while b"\r\n" not in buf:
            chunk = self.s.recv(65536)
            assert chunk, bytes(buf)
            buf += chunk
        line, _, rest = bytes(buf).partition(b"\r\n")
        m = re.search(rb"\{(\d+)\}$", line)
        if m:   # a literal: take its bytes and the rest of the line
            n = int(m.group(1))
            buf = bytearray(rest)
            while len(buf) < n:
                buf += self.s.recv(1 << 20)
            self.buf = bytes(buf[n:])
            return line + b"\r\n" + bytes(buf[:n]) + self.line()
        self.buf = rest
        return line

    def cmd(self, text):
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        out = []
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                assert ln.startswith(tag + b" OK"), (text, ln, out)
                return out
            out.append(ln)


def fetch(raw, seq, item):
    lines = [x for x in raw.cmd(f"FETCH {seq} ({item})") if re.match(rb"\* \d+ FETCH", x)]
    assert len(lines) == 1, lines
    return re.sub(rb"^\* \d+ FETCH \(|\)$", b"", lines[0])


ITEMS = ["ENVELOPE", "BODY", "BODYSTRUCTURE", "BODY.PEEK[]", "BODY.PEEK[HEADER]",
         "BODY.PEEK[TEXT]", "BODY.PEEK[1]", "BODY.PEEK[1.MIME]", "BODY.PEEK[2]",
         "BODY.PEEK[1.1]", "BODY.PEEK[1.2]", "BODY.PEEK[2.MIME]", "BODY.PEEK[3]",
         "BODY.PEEK[4]", "BODY.PEEK[4.HEADER]", "BODY.PEEK[4.TEXT]", "BODY.PEEK[4.1]",
         "BODY.PEEK[4.2.MIME]", "BODY.PEEK[4.2]", "BODY.PEEK[1.TEXT]", "BODY.PEEK[1.HEADER]",
         "BODY.PEEK[HEADER.FIELDS (From Subject)]", "BODY.PEEK[HEADER.FIELDS.NOT (To)]",
         "BODY.PEEK[TEXT]<2.5>", "BODY.PEEK[1]<0.3>", "RFC822.SIZE", "RFC822.HEADER"]


def normalize(b):
    # RFC 3501 leaves the case of body type names and parameter names to
    # the server (they are case-insensitive): compare them case-folded.
    # A string may be quoted or a literal: printable literals as quoted.
    out, pos = b"", 0
    for m in re.finditer(rb"\{(\d+)\}\r\n", b):
        if m.start() < pos:
            continue
        s = b[m.end():m.end() + int(m.group(1))]
        out += b[pos:m.start()]
        if all(0x20 <= c <= 0x7e for c in s) and not b[:m.start()].endswith(b"] "):
            out += b'"' + s.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        else:
            out += b[m.start():m.end()] + s
        pos = m.end() + len(s)
    return (out + b[pos:]).lower()


@pytest.fixture
def both(box, free_port):
    raw = Raw(box.p993, True)
    raw.cmd(f"LOGIN alice {PW}")   # creates the Maildir
    md = box.maildir()
    names = sorted(CORPUS.glob("*.eml"))
    for i, f in enumerate(names):
        (md / "new" / f"{1700000000 + i}.M{i}P1.corpus,S={f.stat().st_size}").write_bytes(
            f.read_bytes())
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(box.root / "mail"):
            for n in dirs + files:
                os.chown(os.path.join(root, n), NOBODY, NOBODY)
    raw.cmd("EXAMINE INBOX")
    dv = DovecotImap(box.root / "mail")
    dv.add_user("alice", "dvpw")
    ports = [free_port(), free_port()]
    dv.start(*ports)
    draw = Raw(ports[0], False)
    draw.cmd("LOGIN alice dvpw")
    draw.cmd("EXAMINE INBOX")
    yield raw, draw, names
    dv.cleanup()


def test_fetch_matches_dovecot(both):
    raw, draw, names = both
    diffs = []
    for seq, name in enumerate(names, 1):
        for item in ITEMS:
            ours, theirs = fetch(raw, seq, item), fetch(draw, seq, item)
            if normalize(ours) != normalize(theirs):
                diffs.append(f"{name.name} {item}:\n  postern: {ours!r}\n  dovecot: {theirs!r}")
    assert not diffs, "\n".join(diffs)


def rss_peak_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_large_bodies_stream_from_the_file(box):
    """An 8 MB message with bare LFs: BODY[] and windows of it come out with
    CRLF line ends, exactly, and the daemon's peak memory does not grow by
    the message's size (sections are read from the file as sent)."""
    raw = Raw(box.p993, True)
    raw.cmd(f"LOGIN alice {PW}")
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n"
    body = line * (8 * 1024 * 1024 // len(line))
    data = b"Subject: big\nContent-Type: text/plain\n\n" + body
    want = data.replace(b"\n", b"\r\n")
    md = box.maildir()
    (md / "new" / f"1700000000.Mbig.P1.big,S={len(data)}").write_bytes(data)
    if os.geteuid() == 0:
        os.chown(md / "new" / f"1700000000.Mbig.P1.big,S={len(data)}", NOBODY, NOBODY)
    raw.cmd("EXAMINE INBOX")
    before = rss_peak_kb(box.proc.pid)
    got = fetch(raw, 1, "BODY.PEEK[]")
    assert got == b"BODY[] {%d}\r\n" % len(want) + want
    assert fetch(raw, 1, "RFC822.SIZE") == b"RFC822.SIZE %d" % len(want)
    for o, n in ((0, 100), (37, 200000), (len(want) - 10, 100), (4345678, 3000001)):
        got = fetch(raw, 1, f"BODY.PEEK[]<{o}.{n}>")
        part = want[o:o + n]
        assert got == b"BODY[]<%d> {%d}\r\n" % (o, len(part)) + part, (o, n)
    got = fetch(raw, 1, "BODY.PEEK[TEXT]<1000.70000>")
    assert got.endswith(want[want.index(b"\r\n\r\n") + 4 + 1000:][:70000])
    grown = rss_peak_kb(box.proc.pid) - before
    print(f"peak memory grew by {grown} KB")
    assert grown < 4 * 1024, f"peak memory grew by {grown} KB for a {len(want) >> 20} MB message"
