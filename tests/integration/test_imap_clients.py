"""Real IMAP clients against imapd: curl (imap:// with --ssl-reqd, imaps://),
mbsync (isync) doing full two-way syncs of a mailbox with flags until they
converge and a further sync changes nothing (200 messages here, 2,000 with
POSTERN_SOAK=1), and Dovecot pointed at Postern's Maildir: the same
messages and flags, and what Dovecot stores there shows up in Postern."""
import imaplib
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from test_imap import PW, box, ctx, login143  # noqa: F401 (fixture)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dovecot"))
from imap_peer import DovecotImap  # noqa: E402

NOBODY = 65534
SOAK = os.environ.get("POSTERN_SOAK") == "1"


def msg(i, size=0):
    body = b"".join(b"line %d of message %d\r\n" % (k, i) for k in range(3 + size))
    return (b"From: sender%d@example.com\r\nTo: alice@example.com\r\n"
            b"Subject: message %d\r\nMessage-ID: <m%d@example.com>\r\n\r\n" % (i, i, i)) + body


def seed(box, n, flags=lambda i: ""):
    """n messages straight into alice's Maildir (as the fetcher would)."""
    m = login143(box)   # creates the Maildir and its folders
    m.logout()
    md = box.maildir()
    for i in range(n):
        data = msg(i)
        fl = flags(i)
        sub = "cur" if fl else "new"
        name = f"{1700000000 + i}.M{i}P7.seed,S={len(data)}" + (f":2,{fl}" if fl else "")
        (md / sub / name).write_bytes(data)
    chown_tree(box.root / "mail")


def chown_tree(top):
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            os.chown(os.path.join(root, n), NOBODY, NOBODY)


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "20", "-k", *args],
                          capture_output=True, timeout=30)


# ---- curl ------------------------------------------------------------------------

def test_curl_starttls_and_imaps(box):
    seed(box, 3)
    r = curl("--ssl-reqd", f"imap://127.0.0.1:{box.p143}/INBOX;UID=2", "-u", f"alice:{PW}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.replace(b"\r\n", b"\n") == msg(1).replace(b"\r\n", b"\n")
    r = curl(f"imaps://127.0.0.1:{box.p993}/INBOX", "-u", f"alice:{PW}", "-X", "SEARCH ALL")
    assert r.returncode == 0 and b"SEARCH 1 2 3" in r.stdout, r
    r = curl(f"imaps://127.0.0.1:{box.p993}/", "-u", f"alice:{PW}")
    assert r.returncode == 0 and b"INBOX" in r.stdout and b"\\Sent" in r.stdout, r
    r = curl(f"imaps://127.0.0.1:{box.p993}/INBOX;UID=3;SECTION=HEADER.FIELDS%20(SUBJECT)",
             "-u", f"alice:{PW}")
    assert r.returncode == 0 and r.stdout.strip() == b"Subject: message 2", r
    # Without --ssl-reqd curl tries LOGIN in clear: refused (LOGINDISABLED).
    r = curl(f"imap://127.0.0.1:{box.p143}/INBOX;UID=1", "-u", f"alice:{PW}")
    assert r.returncode != 0


# ---- mbsync ----------------------------------------------------------------------

MBSYNCRC = """IMAPAccount postern
Host localhost
Port {port}
User alice
Pass {pw}
SSLType IMAPS
CertificateFile {cert}

IMAPStore far
Account postern

MaildirStore near
Path {near}/
Inbox {near}/INBOX
SubFolders Verbatim

Channel all
Far :far:
Near :near:
Patterns *
Create Both
Expunge Both
Sync All
SyncState *
"""


class Mbsync:
    def __init__(self, box):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mbsync-"))
        self.near = self.dir / "near"
        self.near.mkdir()
        (self.dir / "rc").write_text(MBSYNCRC.format(port=box.p993, pw=PW, cert=box.cert,
                                                     near=self.near))

    def run(self):
        r = subprocess.run(["mbsync", "-c", str(self.dir / "rc"), "-a"], capture_output=True,
                           timeout=600)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
        return r

    def inbox(self):
        return self.near / "INBOX"


def maildir_state(md):
    """{message-id: flags} of a Maildir (new/ counts as no flags)."""
    out = {}
    for sub in ("new", "cur"):
        for f in (md / sub).iterdir():
            mid = re.search(rb"Message-ID: (<[^>]+>)", f.read_bytes(), re.I)
            flags = f.name.split(":2,")[1] if ":2," in f.name else ""
            out[mid.group(1).decode() if mid else f.name] = "".join(sorted(flags))
    return out


def listing(md):
    return sorted(str(p.relative_to(md)) for p in md.rglob("*")
                  if p.is_file() and "/tmp/" not in str(p) and ".mbsyncstate" not in p.name
                  and "postern-uids" not in p.name)


def test_mbsync_two_way_converges(box):
    n = 2000 if SOAK else 200
    seed(box, n, flags=lambda i: "S" if i % 3 == 0 else ("FS" if i % 7 == 0 else ""))
    mb = Mbsync(box)
    t0 = time.monotonic()
    mb.run()
    first = time.monotonic() - t0
    assert maildir_state(mb.inbox()) == maildir_state(box.maildir())
    assert len(maildir_state(mb.inbox())) == n
    # Changes on both sides: near marks messages seen and adds one; the
    # server flags others (another client) and gets a new delivery.
    cur = mb.inbox() / "cur"
    changed = 0
    for f in sorted((mb.inbox() / "new").iterdir())[:10] + sorted(cur.iterdir())[:20]:
        base, _, fl = f.name.partition(":2,")
        if "S" not in fl:
            f.rename(cur / f"{base}:2,{''.join(sorted(fl + 'S'))}")
            changed += 1
    assert changed
    newmsg = msg(n + 1)
    (mb.inbox() / "new" / f"{int(time.time())}.near1.host").write_bytes(newmsg)
    m = login143(box)
    m.select("INBOX")
    m.store("1:10", "+FLAGS", "(\\Flagged \\Answered)")
    m.append("INBOX", "(\\Seen)", None, msg(n + 2))
    m.logout()
    mb.run()
    want = maildir_state(box.maildir())
    assert len(want) == n + 2
    assert maildir_state(mb.inbox()) == want
    # A further sync changes nothing on either side.
    before = (listing(box.maildir()), listing(mb.inbox()))
    mb.run()
    assert (listing(box.maildir()), listing(mb.inbox())) == before
    print(f"mbsync first sync of {n} messages: {first:.2f} s")
    shutil.rmtree(mb.dir, ignore_errors=True)


# ---- Dovecot on the same Maildir -------------------------------------------------

def free_ports(k):
    out = []
    for _ in range(k):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        out.append(s.getsockname()[1])
        s.close()
    return out


def test_dovecot_on_postern_maildir(box):
    seed(box, 5, flags=lambda i: "S" if i % 2 else "")
    m = login143(box)
    m.select("INBOX")
    m.store("2", "+FLAGS", "(\\Flagged $Forwarded)")
    m.append("INBOX", "(\\Answered)", None, msg(50))
    chown_tree(box.root / "mail")
    dv = DovecotImap(box.root / "mail")
    try:
        dv.add_user("alice", "dvpw")
        p, ptls = free_ports(2)
        dv.start(p, ptls)
        d = imaplib.IMAP4("127.0.0.1", p)
        d.login("alice", "dvpw")
        d.select("INBOX")

        def flags(conn):
            typ, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            out = {}
            for item in data:
                if isinstance(item, tuple):
                    mid = re.search(rb"<[^>]+>", item[1]).group(0)
                    fl = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).split()
                    out[mid] = sorted(f for f in fl if f != b"\\Recent")
            return out

        ours = flags(m)
        assert len(ours) == 6 and flags(d) == ours
        # Dovecot stores: a new message (APPEND) and a flag change.
        d.append("INBOX", "(\\Seen \\Flagged)", None, msg(60))
        d.store("3", "+FLAGS", "(Junk)")   # keywords: the same letters and names
        d.store("1", "+FLAGS", "(\\Deleted)")
        d.expunge()
        d.logout()
        m.noop()
        after = flags(m)
        assert b"<m60@example.com>" in after and b"<m0@example.com>" not in after
        assert after[b"<m60@example.com>"] == [b"\\Flagged", b"\\Seen"]
        assert len(after) == 6
        assert after[b"<m1@example.com>"] == [b"$Forwarded", b"\\Flagged", b"\\Seen"]
        assert after[b"<m2@example.com>"] == [b"Junk"]
        m.logout()
    finally:
        dv.cleanup()
