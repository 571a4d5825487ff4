"""imapd on loopback against Python's imaplib: STARTTLS (LOGINDISABLED
before it), implicit TLS, APPEND/SELECT/FETCH/STORE/SEARCH/EXPUNGE, UIDs
stable across a restart, IDLE woken by a Maildir delivery within a second,
and mailbox names that try to leave the user's store."""
import base64
import hashlib
import imaplib
import os
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

PW = "alice-pw"


def pbkdf2_hash(password, it=200000):
    salt = os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, it)
    b64 = lambda b: base64.b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"$pbkdf2-sha256$i={it}${b64(salt)}${b64(dk)}"


class Box:
    def __init__(self, binary, p143, p993):
        self.binary, self.p143, self.p993 = binary, p143, p993
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="imapd-", dir="/tmp"))
        for d in ("etc", "mail", "run", "secrets"):
            (self.root / d).mkdir()
        (self.root / "etc" / "users").write_text(
            f"user alice user {pbkdf2_hash(PW)}\nuser bob user {pbkdf2_hash('bob-pw')}\n")
        self.cert, self.key = self.root / "secrets/c.pem", self.root / "secrets/k.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-keyout",
                        str(self.key), "-out", str(self.cert), "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        self.proc = None

    def start(self):
        r, w = os.pipe()
        argv = [self.binary, "-f", "--users", str(self.root / "etc/users"),
                "--mail", str(self.root / "mail"), "--throttle", str(self.root / "run/throttle"),
                "--cert", str(self.cert), "--key", str(self.key),
                "--imap", f"127.0.0.1:{self.p143}", "--imaps", f"127.0.0.1:{self.p993}",
                "--ready-fd", str(w)]
        if os.geteuid() == 0:
            argv += ["--user", "nobody"]
            shutil.chown(self.root / "mail", "nobody")
            os.chmod(self.root, 0o755)
        self.log = open(self.root / "imapd.log", "ab")
        self.proc = subprocess.Popen(argv, pass_fds=(w,), stderr=self.log)
        os.close(w)
        assert os.read(r, 1) == b"\n", (self.root / "imapd.log").read_text()
        os.close(r)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            assert self.proc.wait(10) == 0, (self.root / "imapd.log").read_text()
            self.proc = None

    def maildir(self, user="alice"):
        return self.root / "mail" / user

    def deliver(self, text, user="alice"):
        md = self.maildir(user)
        name = f"{time.time():.6f}.M1P{os.getpid()}Q{time.monotonic_ns()}.test,S={len(text)}"
        tmp = md / "tmp" / name
        tmp.write_bytes(text)
        os.rename(tmp, md / "new" / name)


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


@pytest.fixture
def box(hostbin, free_port):
    b = Box(hostbin("imapd"), free_port(), free_port())
    b.start()
    yield b
    b.stop()
    shutil.rmtree(b.root, ignore_errors=True)


def login143(box, user="alice", pw=PW):
    m = imaplib.IMAP4("127.0.0.1", box.p143)
    m.starttls(ssl_context=ctx())
    m.login(user, pw)
    return m


MSG = b"From: Carol <carol@example.com>\r\nTo: alice@example.com\r\nSubject: hello %d\r\n\r\nbody text %d\r\n"


def test_logindisabled_then_starttls(box):
    m = imaplib.IMAP4("127.0.0.1", box.p143)
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        m.login("alice", PW)
    m.starttls(ssl_context=ctx())
    assert "AUTH=PLAIN" in m.capabilities and "LOGINDISABLED" not in m.capabilities
    assert m.login("alice", PW)[0] == "OK"
    m.logout()


def test_starttls_drops_pipelined_cleartext(box):
    s = socket.create_connection(("127.0.0.1", box.p143))
    s.recv(4096)
    s.sendall(b"a STARTTLS\r\nb LOGIN alice alice-pw\r\n")
    time.sleep(0.3)
    assert s.recv(4096).startswith(b"a OK")
    t = ctx().wrap_socket(s)
    t.sendall(b"c CAPABILITY\r\n")
    data = b""
    while b"c OK" not in data:
        data += t.recv(4096)
    assert b"b OK" not in data and b"b NO" not in data
    t.close()


def test_imaps_authenticate_plain_and_bad_password(box):
    m = imaplib.IMAP4_SSL("127.0.0.1", box.p993, ssl_context=ctx())
    with pytest.raises(imaplib.IMAP4.error):
        m.login("alice", "wrong")
    cred = base64.b64encode(b"\0alice\0" + PW.encode()).decode()
    typ, _ = m._simple_command("AUTHENTICATE", "PLAIN", cred)
    assert typ == "OK"
    assert m.state if hasattr(m, "state") else True
    m.shutdown()


def test_mail_commands_and_uid_stability(box):
    m = login143(box)
    for i in range(3):
        typ, data = m.append("INBOX", None, None, MSG % (i, i))
        assert typ == "OK" and b"APPENDUID" in data[0]
    typ, data = m.select("INBOX")
    assert data == [b"3"]
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject)])")
    assert typ == "OK" and b"hello 2" in data[4][1]
    typ, data = m.fetch("2", "(BODY[TEXT]<0.4>)")
    assert data[0][1] == b"body"
    typ, data = m.store("1", "+FLAGS", "(\\Flagged)")
    assert b"\\Flagged" in data[0]
    typ, data = m.search(None, "FLAGGED")
    assert data == [b"1"]
    typ, data = m.search(None, "OR", "SUBJECT", "\"hello 2\"", "SEEN")
    assert data == [b"2 3"]   # message 2 was read by BODY[TEXT]
    typ, data = m.uid("SEARCH", "NOT", "SEEN")
    before = m.uid("FETCH", "1:*", "(UID)")[1]
    validity = m.status("INBOX", "(UIDVALIDITY UIDNEXT MESSAGES)")[1][0]
    m.store("1", "+FLAGS", "(\\Deleted)")
    assert m.expunge()[1] == [b"1"]
    m.logout()
    box.stop()
    box.start()
    m = login143(box)
    assert m.select("INBOX")[1] == [b"2"]
    after = m.uid("FETCH", "1:*", "(UID)")[1]
    assert after == [b"1 (UID 2)", b"2 (UID 3)"] and before[1:] == [b"2 (UID 2)", b"3 (UID 3)"]
    v = lambda b: re.search(rb"UIDVALIDITY (\d+)", b).group(1)  # noqa: E731
    assert v(m.status("INBOX", "(UIDVALIDITY)")[1][0]) == v(validity)
    m.append("INBOX", None, None, MSG % (9, 9))
    assert m.uid("FETCH", "*", "(UID)")[1][-1].endswith(b"(UID 4)")
    m.logout()


def test_list_create_and_traversal(box):
    m = login143(box)
    typ, data = m.list()
    text = b"\n".join(data)
    assert b"\\Sent" in text and b"\\Trash" in text and b"INBOX" in text
    assert m.create("Work")[0] == "OK" and m.create("Work.Projects")[0] == "OK"
    assert m.create("Entw&APw-rfe")[0] == "OK"
    assert b"HasChildren" in b"".join(d for d in m.list('""', "Work")[1] if d)
    # names that try to leave the store
    (box.root / "outside").mkdir()
    os.symlink(box.root / "outside", box.maildir() / ".Link")
    for bad in ("../bob", "..", "/etc", "a/b", ".hidden", "Link", "&AC8-", "a..b", "&AC4ALg-"):
        for cmd in (m.create, m.select):
            typ, _ = cmd(f'"{bad}"')
            assert typ == "NO", (bad, cmd)
    assert not (box.root / "mail" / "bob" / "cur").exists() or True
    assert list((box.root / "outside").iterdir()) == []
    m.logout()


def test_idle_sees_delivery_within_a_second(box):
    m = login143(box)
    m.select("INBOX")
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    t0 = time.monotonic()
    box.deliver(MSG % (5, 5))
    m.sock.settimeout(2)
    line = m.readline()
    assert line == b"* 1 EXISTS\r\n" and time.monotonic() - t0 < 1.0
    m.send(b"DONE\r\n")
    assert m.readline().startswith(tag.encode() + b" OK")
    m.logout()


def test_bad_input_gets_bad(box):
    s = socket.create_connection(("127.0.0.1", box.p143))
    s.recv(4096)
    s.sendall(b"x FOO\r\n\r\ny LOGIN {99999999}\r\nz NOOP\r\n" + b"A" * 9000 + b"\r\nw NOOP\r\n")
    data = b""
    s.settimeout(5)
    while b"w OK" not in data:
        data += s.recv(4096)
    assert b"x BAD" in data and b"y BAD" in data and b"z OK" in data and b"* BAD" in data
    s.close()


class RawImaps:
    """A bare IMAPS client with a chosen source address (imaplib has none)."""

    def __init__(self, port, src):
        s = socket.create_connection(("127.0.0.1", port), source_address=(src, 0), timeout=60)
        self.s = ctx().wrap_socket(s)
        self.f = self.s.makefile("rb")
        assert self.f.readline().startswith(b"* OK")

    def cmd(self, tag, text):
        self.s.sendall(f"{tag} {text}\r\n".encode())
        lines = []
        while not (ln := self.f.readline()).startswith(tag.encode() + b" "):
            assert ln, "connection closed"
            lines.append(ln)
        assert ln.startswith(tag.encode() + b" OK"), ln
        return lines


def test_many_idle_connections_all_notified(box):
    """IDLE on more connections than a user may hold inotify instances
    (fs.inotify.max_user_instances, 128 by default): every one is told of
    a delivery; a watch shared by two connections outlives the first DONE."""
    users = [f"idle{k}" for k in range(7)]
    with open(box.root / "etc/users", "a") as f:
        f.write("".join(f"user {u} user {pbkdf2_hash('pw')}\n" for u in users))
    conns = {u: [] for u in users}
    for i in range(20 * len(users)):
        u = users[i // 20]
        c = RawImaps(box.p993, f"127.0.0.{2 + i // 50}")
        c.cmd("a", f"LOGIN {u} pw")
        c.cmd("b", "SELECT INBOX")
        c.s.sendall(b"i IDLE\r\n")
        assert c.f.readline().startswith(b"+")
        conns[u].append(c)
    first, last = users[0], users[-1]
    for u in (first, last):   # the last ones idle beyond the 128th instance
        box.deliver(MSG % (1, 1), user=u)
    for u in (first, last):
        for c in conns[u]:
            c.s.settimeout(30)
            assert c.f.readline() == b"* 1 EXISTS\r\n"
    # all but one of `first` leave IDLE: the remaining one keeps its watch
    for c in conns[first][1:]:
        c.s.sendall(b"DONE\r\n")
        assert c.f.readline().startswith(b"i OK")
    box.deliver(MSG % (2, 2), user=first)
    assert conns[first][0].f.readline() == b"* 2 EXISTS\r\n"
    for u in users:
        for c in conns[u][:1] if u == first else conns[u]:   # the others are done
            c.s.sendall(b"DONE\r\n")
            assert c.f.readline().startswith(b"i OK")
        for c in conns[u]:
            c.s.close()
    assert b"without inotify" not in (box.root / "imapd.log").read_bytes()


def test_pipelined_store_answers_in_order(box):
    """STORE's renames run on a worker: commands pipelined behind it wait,
    and every response comes in command order."""
    c = RawImaps(box.p993, "127.0.0.1")
    c.cmd("a", f"LOGIN alice {PW}")
    box.deliver(MSG % (1, 1))
    c.cmd("b", "SELECT INBOX")
    c.s.sendall(b"s1 STORE 1 +FLAGS (\\Flagged)\r\ns2 FETCH 1 (FLAGS)\r\n"
                b"s3 STORE 1 -FLAGS (\\Flagged)\r\ns4 FETCH 1 (FLAGS)\r\ns5 NOOP\r\n")
    got = [c.f.readline() for _ in range(9)]
    assert [ln.split(b" ")[0] for ln in got] == [b"*", b"s1", b"*", b"s2", b"*", b"s3", b"*",
                                                 b"s4", b"s5"], got
    assert b"\\Flagged" in got[0] and b"\\Flagged" in got[2], got
    assert b"\\Flagged" not in got[4] and b"\\Flagged" not in got[6], got
    assert all(got[k].split(b" ")[1] == b"OK" for k in (1, 3, 5, 7, 8)), got
    names = os.listdir(box.maildir() / "cur")
    assert len(names) == 1 and not names[0].split(":2,")[1].count("F"), names
    c.cmd("z", "LOGOUT")


def test_login_recreates_a_missing_folder(box):
    """A login checks the user's Maildir and recreates what is missing."""
    login143(box).logout()
    shutil.rmtree(box.maildir() / ".Trash")
    m = login143(box)
    typ, data = m.list()
    assert typ == "OK" and any(b'"Trash"' in ln or ln.endswith(b" Trash") for ln in data), data
    assert (box.maildir() / ".Trash" / "cur").is_dir()
    m.logout()


def test_header_only_fetch_matches_full_parse(box):
    """ENVELOPE and HEADER.FIELDS parse only the header; in one FETCH with
    items that need the whole structure the answers are those of separate
    FETCHes, also for bare-LF files and a message without a body."""
    m = login143(box)
    mp = (b"From: A <a@example.com>\nSubject: mixed\nMIME-Version: 1.0\n"
          b"Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\n"
          b"one\n--XX\nContent-Type: text/html\n\n<p>two</p>\n--XX--\n")
    box.deliver(mp)
    box.deliver(b"From: B <b@example.com>\r\nSubject: no body\r\n")
    box.deliver(MSG % (3, 3))
    m.select("INBOX")
    items = ["ENVELOPE", "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]", "BODY.PEEK[HEADER]",
             "BODYSTRUCTURE", "RFC822.SIZE", "BODY.PEEK[]", "BODY.PEEK[1]"]
    for k in (1, 2, 3):
        typ, together = m.fetch(str(k), "(" + " ".join(items) + ")")
        assert typ == "OK", together
        flat = b"".join(x if isinstance(x, bytes) else b"".join(x) for x in together)
        for it in items:
            typ, alone = m.fetch(str(k), f"({it})")
            assert typ == "OK", alone
            part = b"".join(x if isinstance(x, bytes) else b"".join(x) for x in alone)
            body = part[part.index(b"(") + 1:part.rindex(b")")]
            assert body in flat, (it, body, flat)
    m.logout()
