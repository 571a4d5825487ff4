"""fetchd against a scripted POP3 server (Python, in this file) that records
every byte it receives: the cases a real Dovecot will not produce.

- no STLS offered, a wrong host name, a wrong pin: the password (and no
  USER/PASS/AUTH command) ever reaches the server;
- STLS response injection (RFC 2595 section 4, DESIGN.md): capabilities sent
  in clear together with the STLS answer are not believed after TLS;
- a connection lost in the middle of RETR, malformed listings: nothing is
  delivered twice, nothing is deleted, the next fetch completes;
- a server without UIDL: delete mode works with the Message-ID guard; keep
  mode is refused with a clear message.
"""
import base64
import hashlib
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "smtpd"))
from privs import drop_args  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dovecot"))
from provider import make_cert  # noqa: E402

PASSWORD = "s3cret-Pa55word-xyzzy"
MSGS = [b"Subject: m%d\nMessage-ID: <m%d@remote.test>\n\nbody %d\n.dot\n" % (i, i, i)
        for i in range(1, 4)]


class FakePop3:
    """One POP3 server thread. Options: stls (offer STLS), implicit (TLS
    from the first byte), uidl (support UIDL), inject (after the STLS +OK,
    send a fake CAPA answer in the same segment), cut_retr (message number
    whose RETR is cut off half-way, once), bad_uidl (garbage listing),
    sasl (offer SASL PLAIN after TLS)."""

    def __init__(self, cert, key, msgs, stls=True, implicit=False, uidl=True, inject=False,
                 cut_retr=None, bad_uidl=False, sasl=False, drop_quit=False, bad_retr=None):
        self.cert, self.key = cert, key
        self.msgs = list(msgs)
        self.stls, self.implicit, self.uidl = stls, implicit, uidl
        self.inject, self.cut_retr, self.bad_uidl, self.sasl = inject, cut_retr, bad_uidl, sasl
        self.drop_quit = drop_quit
        self.bad_retr = bad_retr
        self.raw = b""
        self.cmds = []
        self.tls_failed = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.stop_flag = False
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def ctx(self):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_cert_chain(self.cert, self.key)
        return c

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop_flag:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(10)
            try:
                self.session(conn)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self):
        self.stop_flag = True
        self.t.join(5)
        self.sock.close()

    def readline(self, f):
        line = f.readline(2000)
        self.raw += line
        if not line:
            raise EOFError
        self.cmds.append(line.decode("latin-1").rstrip("\r\n"))
        return self.cmds[-1]

    def session(self, conn):
        tls = False
        if self.implicit:
            try:
                conn = self.ctx().wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                self.tls_failed = True
                self.raw += self.drain(conn)
                return
            tls = True
        f = conn.makefile("rb")
        w = lambda b: conn.sendall(b)  # noqa: E731
        w(b"+OK fake POP3 ready\r\n")
        deleted = set()
        try:
            while True:
                line = self.readline(f)
                verb = line.split(" ")[0].upper()
                if verb == "CAPA":
                    caps = ["TOP", "USER", "RESP-CODES"]
                    if self.uidl:
                        caps.append("UIDL")
                    if self.stls and not tls:
                        caps.append("STLS")
                    if self.sasl and tls:
                        caps.append("SASL PLAIN")
                    w(b"+OK\r\n" + b"".join(c.encode() + b"\r\n" for c in caps) + b".\r\n")
                elif verb == "STLS" and self.stls and not tls:
                    extra = b"+OK\r\nSASL PLAIN\r\nUSER\r\n.\r\n" if self.inject else b""
                    w(b"+OK begin TLS\r\n" + extra)
                    try:
                        conn = self.ctx().wrap_socket(conn, server_side=True)
                    except (ssl.SSLError, OSError):
                        self.tls_failed = True
                        self.raw += self.drain(conn)
                        return
                    tls = True
                    f = conn.makefile("rb")
                    w = lambda b: conn.sendall(b)  # noqa: E731
                elif verb in ("USER", "PASS"):
                    w(b"+OK\r\n" if tls else b"-ERR [AUTH] TLS required\r\n")
                elif verb == "AUTH":
                    w(b"+OK logged in\r\n")
                elif verb == "UIDL" and self.uidl:
                    if self.bad_uidl:
                        w(b"+OK\r\n1 has space\r\n.\r\n")
                        continue
                    w(b"+OK\r\n" + b"".join(b"%d %s\r\n" % (i + 1, self.uid(m))
                                            for i, m in enumerate(self.msgs)) + b".\r\n")
                elif verb == "LIST":
                    w(b"+OK\r\n" + b"".join(b"%d %d\r\n" % (i + 1, len(m) + m.count(b"\n"))
                                            for i, m in enumerate(self.msgs)) + b".\r\n")
                elif verb == "RETR":
                    n = int(line.split()[1])
                    body = self.wire(self.msgs[n - 1])
                    if self.bad_retr == n:
                        self.bad_retr = None
                        w(b"GARBAGE instead of a status line\r\n" + body + b".\r\n")
                        continue
                    if self.cut_retr == n:
                        self.cut_retr = None
                        w(b"+OK\r\n" + body[:len(body) // 2])
                        self.half_close(conn)
                        return
                    w(b"+OK\r\n" + body + b".\r\n")
                elif verb == "DELE":
                    deleted.add(int(line.split()[1]))
                    w(b"+OK\r\n")
                elif verb == "QUIT":
                    if self.drop_quit:
                        return
                    self.msgs = [m for i, m in enumerate(self.msgs) if i + 1 not in deleted]
                    w(b"+OK bye\r\n")
                    return
                else:
                    w(b"-ERR unknown\r\n")
        except EOFError:
            return

    @staticmethod
    def half_close(conn):
        """Ends the stream with a FIN, then reads what the client still
        sends (pipelined commands) until it closes. Closing with those
        bytes unread would make the kernel send a reset instead, and the
        client would see "connection reset", not the end of the stream."""
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(10)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    @staticmethod
    def uid(m):
        """Unique per message and never reused (RFC 1939 section 7)."""
        return hashlib.sha1(m).hexdigest()[:20].encode()

    @staticmethod
    def wire(m):
        out = []
        for ln in m.split(b"\n")[:-1] if m.endswith(b"\n") else m.split(b"\n"):
            out.append((b"." + ln if ln.startswith(b".") else ln) + b"\r\n")
        return b"".join(out)

    @staticmethod
    def drain(conn):
        try:
            conn.settimeout(1)
            return conn.recv(65536)
        except OSError:
            return b""


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    good = make_cert(d, "good", san="DNS:localhost,IP:127.0.0.1")
    other = make_cert(d, "other", san="DNS:other.example", cn="other.example")
    os.chmod(d, 0o755)          # certificates are public: fetchd reads them
    for c in d.glob("*.crt"):   # after dropping to its own user (privs.py)
        os.chmod(c, 0o644)
    return {"good": good, "other": other}


def setup_box(tmp_path, port, **kw):
    data = tmp_path / "data"
    for d in ("etc", "secrets", "mail", "fetch"):
        (data / d).mkdir(parents=True, exist_ok=True)
    (data / "secrets" / "acme.pass").write_text(PASSWORD + "\n")
    a = {"server": "127.0.0.1", "port": port, "tls": "stls", "user": "alice",
         "password-file": "acme.pass", "deliver-to": "anna"}
    a.update(kw)
    (data / "etc" / "postern.conf").write_text(
        "mail-domain example.com\n[account acme]\n" + "".join(f"{k} {v}\n" for k, v in a.items()))
    return data


def fetch(hostbin, data, timeout=60):
    return subprocess.run([hostbin("fetchd"), "--once", "-d", str(data), *drop_args(data)],
                          capture_output=True, text=True, timeout=timeout, env=env_of(data))


def env_of(data):
    """The status records go beside the data directory, not into the
    host's /run/postern/status (fetchd creates that as root)."""
    return dict(os.environ, POSTERN_STATUS_DIR=str(pathlib.Path(data).parent / "status"))


def delivered(data, user="anna"):
    out = []
    for sub in ("new", "cur"):
        d = data / "mail" / user / sub
        if d.exists():
            out += [f.read_bytes() for f in d.iterdir()]
    return sorted(out)


def assert_no_credentials(srv):
    assert PASSWORD.encode() not in srv.raw
    assert base64.b64encode(b"\0alice\0" + PASSWORD.encode()) not in srv.raw
    for c in srv.cmds:
        assert c.split(" ")[0].upper() not in ("USER", "PASS", "AUTH"), srv.cmds


def test_no_stls_no_password(tmp_path, certs, hostbin):
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS, stls=False)
    try:
        r = fetch(hostbin, setup_box(tmp_path, srv.port, verify="pin", pin=pin))
    finally:
        srv.close()
    assert r.returncode == 111
    assert "does not offer STLS; not sending the password" in r.stderr
    assert srv.cmds[:1] == ["CAPA"]
    assert_no_credentials(srv)


def test_wrong_host_name_no_password(tmp_path, certs, hostbin):
    crt, key, _ = certs["other"]
    srv = FakePop3(crt, key, MSGS)
    try:
        r = fetch(hostbin, setup_box(tmp_path, srv.port, server="localhost", verify="ca",
                                     **{"ca-file": crt}))
    finally:
        srv.close()
    assert r.returncode == 111, r.stderr
    assert "not sending the password" in r.stderr
    assert srv.tls_failed
    assert_no_credentials(srv)


@pytest.mark.parametrize("implicit", [False, True], ids=["stls", "implicit"])
def test_wrong_pin_no_password(tmp_path, certs, hostbin, implicit):
    crt, key, pin = certs["good"]
    _, _, other_pin = certs["other"]
    srv = FakePop3(crt, key, MSGS, implicit=implicit)
    try:
        r = fetch(hostbin, setup_box(tmp_path, srv.port, verify="pin", pin=other_pin,
                                     tls="implicit" if implicit else "stls"))
    finally:
        srv.close()
    assert r.returncode == 111
    assert "does not match the pin" in r.stderr and pin in r.stderr
    assert srv.tls_failed
    assert_no_credentials(srv)
    assert delivered(tmp_path / "data") == []


def test_stls_injection_ignored(tmp_path, certs, hostbin):
    """The server's (or an attacker's) bytes sent in clear behind the STLS
    answer claim SASL PLAIN; after TLS the real CAPA does not: the client
    must log in with USER/PASS, having discarded the clear-text bytes."""
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS, inject=True)
    try:
        r = fetch(hostbin, setup_box(tmp_path, srv.port, verify="pin", pin=pin))
    finally:
        srv.close()
    assert r.returncode == 0, r.stderr
    verbs = [c.split(" ")[0] for c in srv.cmds]
    assert verbs[:5] == ["CAPA", "STLS", "CAPA", "USER", "PASS"], srv.cmds
    assert "AUTH" not in verbs
    assert delivered(tmp_path / "data") == sorted(MSGS)


def test_auth_plain_after_tls(tmp_path, certs, hostbin):
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS, sasl=True)
    try:
        r = fetch(hostbin, setup_box(tmp_path, srv.port, verify="pin", pin=pin))
    finally:
        srv.close()
    assert r.returncode == 0, r.stderr
    auth = [c for c in srv.cmds if c.startswith("AUTH")]
    assert auth == ["AUTH PLAIN " + base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()]
    assert PASSWORD not in r.stderr + r.stdout


def test_lost_connection_mid_retr(tmp_path, certs, hostbin):
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS, cut_retr=2)
    try:
        data = setup_box(tmp_path, srv.port, verify="pin", pin=pin)
        r = fetch(hostbin, data)
        assert r.returncode == 111
        assert "connection closed by the server" in r.stderr
        # Message 1 was delivered and recorded, its DELE never committed.
        assert delivered(data) == [MSGS[0]]
        assert len(srv.msgs) == 3
        r = fetch(hostbin, data)
        assert r.returncode == 0, r.stderr
        assert "2 fetched" in r.stdout and "1 delivered before" in r.stdout, r.stdout
        assert delivered(data) == sorted(MSGS)
        assert srv.msgs == []
    finally:
        srv.close()


def test_malformed_uidl_listing(tmp_path, certs, hostbin):
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS, bad_uidl=True)
    try:
        data = setup_box(tmp_path, srv.port, verify="pin", pin=pin)
        r = fetch(hostbin, data)
    finally:
        srv.close()
    assert r.returncode == 111
    assert "UIDL listing malformed" in r.stderr
    assert delivered(data) == [] and len(srv.msgs) == 3
    assert not any(c.startswith(("RETR", "DELE")) for c in srv.cmds)


def test_malformed_retr_response(tmp_path, certs, hostbin):
    """A RETR answered with neither +OK nor -ERR: a clear log line, the
    session ends, nothing is deleted and nothing lost; the next poll
    fetches everything, each message once."""
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS, bad_retr=2)
    try:
        data = setup_box(tmp_path, srv.port, verify="pin", pin=pin)
        r = fetch(hostbin, data)
        assert r.returncode == 111, r.stdout + r.stderr
        assert "RETR" in r.stderr and "GARBAGE" in r.stderr, r.stderr
        assert len(srv.msgs) == 3                       # no DELE committed
        assert len(delivered(data)) <= 1
        r = fetch(hostbin, data)
        assert r.returncode == 0, r.stdout + r.stderr
        assert delivered(data) == sorted(MSGS) and srv.msgs == []
    finally:
        srv.close()


def test_no_uidl_keep_refused(tmp_path, certs, hostbin):
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS, uidl=False)
    try:
        data = setup_box(tmp_path, srv.port, verify="pin", pin=pin, keep="yes")
        r = fetch(hostbin, data)
    finally:
        srv.close()
    assert r.returncode == 111
    assert "does not support UIDL: keep mode" in r.stderr
    assert not any(c.startswith("RETR") for c in srv.cmds)


def test_no_uidl_delete_mode_guard(tmp_path, certs, hostbin):
    """Without UIDL, a QUIT that never commits re-serves the same messages:
    the Message-ID guard keeps them from being delivered twice."""
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS, uidl=False, drop_quit=True)
    try:
        data = setup_box(tmp_path, srv.port, verify="pin", pin=pin)
        r = fetch(hostbin, data)
        assert "3 fetched" in r.stdout, r.stdout + r.stderr
        assert len(srv.msgs) == 3  # QUIT not committed
        srv.drop_quit = False
        r = fetch(hostbin, data)
        assert r.returncode == 0, r.stderr
        assert "0 fetched" in r.stdout and "3 delivered before" in r.stdout, r.stdout
        assert srv.msgs == []
        assert delivered(data) == sorted(MSGS)
    finally:
        srv.close()


@pytest.fixture
def small_fs(tmp_path):
    """A 72 MiB tmpfs (fetchd keeps FETCH_FS_RESERVE = 64 MiB free)."""
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=72m", "tmpfs", str(d)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + r.stderr.decode(errors="replace"))
    yield d
    subprocess.run(["umount", "-l", str(d)])


def test_nearly_full_stops_without_deleting(small_fs, certs, hostbin):
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS[:1])
    try:
        data = setup_box(small_fs, srv.port, verify="pin", pin=pin)
        r = fetch(hostbin, data)
        assert r.returncode == 0 and "1 fetched" in r.stdout, r.stdout + r.stderr
        assert srv.msgs == []
        # Fill the partition to below the reserve; new mail must stay put.
        with open(small_fs / "filler", "wb") as f:
            f.write(b"\0" * (12 * 1024 * 1024))
        srv.msgs = MSGS[1:]
        r = fetch(hostbin, data)
        assert r.returncode == 111
        assert "nearly full; fetching stopped" in r.stderr
        assert len(srv.msgs) == 2
        assert not any(c.startswith(("RETR 1", "DELE")) for c in srv.cmds[-6:])
        assert delivered(data) == [MSGS[0]]
    finally:
        srv.close()


def test_multidrop(tmp_path, certs, hostbin):
    crt, key, pin = certs["good"]
    hops = b"".join(b"Received: from hop%d by x; Tue, 14 Nov 2023 22:13:20 +0000\n" % i
                    for i in range(60))
    msgs = {
        "envelope-first": b"Delivered-To: anna@example.com\nTo: bob@example.com\n\n1\n",
        "alias": b"X-Original-To: sales@example.com\nTo: list@lists.test\n\n2\n",
        "to-cc": b'To: "Anna, A." <anna@example.com>,\n (c) carl@Example.com\nCc: bob@example.com\n\n3\n',
        "list": b"To: team@example.com\nSubject: team\n\n4\n",
        "unknown": b"To: stranger@example.com, other@elsewhere.test\n\n5\n",
        "loop": hops + b"Delivered-To: carl@example.com\n\n6\n",
        "plus": b"To: ANNA+news@Example.COM\n\n7\n",
    }
    want = {
        "anna": ["envelope-first", "to-cc", "list", "plus"],
        "bob": ["alias", "to-cc", "list"],
        "carl": ["to-cc"],
        "admin": ["unknown", "loop"],
    }
    srv = FakePop3(crt, key, list(msgs.values()))
    try:
        data = setup_box(tmp_path, srv.port, verify="pin", pin=pin,
                         **{"deliver-to": "multidrop", "catch-all": "admin"})
        (data / "etc" / "users").write_text(
            "user anna user !\nuser bob user !\nuser carl user !\nuser admin admin !\n"
            "alias sales bob\nlist team anna bob\n")
        r = fetch(hostbin, data)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "mail loop suspected" in r.stderr
        for user, names in want.items():
            assert delivered(data, user) == sorted(msgs[n] for n in names), user
        assert srv.msgs == []
    finally:
        srv.close()


def wait_for(pred, timeout=20):
    import time
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_daemon_polls_on_demand(tmp_path, certs, hostbin):
    """The daemon polls at start, on SIGUSR1 and when the control file
    fetch/poll-now appears, not otherwise (poll 1h); SIGTERM stops it."""
    import signal
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS[:1])
    data = setup_box(tmp_path, srv.port, verify="pin", pin=pin, poll="1h")
    p = subprocess.Popen([hostbin("fetchd"), "-f", "-d", str(data), *drop_args(data)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env_of(data))
    try:
        # (wait for the QUIT too: the fake server commits DELEs then)
        assert wait_for(lambda: len(delivered(data)) == 1 and not srv.msgs)
        srv.msgs = [MSGS[1]]
        p.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: len(delivered(data)) == 2 and not srv.msgs)
        srv.msgs = [MSGS[2]]
        (data / "fetch" / "poll-now").write_text("")
        assert wait_for(lambda: len(delivered(data)) == 3)
        assert not (data / "fetch" / "poll-now").exists()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0
        assert delivered(data) == sorted(MSGS)
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()
        srv.close()


def test_root_without_user_refused(tmp_path, certs, hostbin):
    """Started as root, fetchd must be told whom to become (-u): the POP3
    parser never runs as root (privdrop.h); nothing is fetched."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS[:1])
    try:
        data = setup_box(tmp_path, srv.port, verify="pin", pin=pin)
        r = subprocess.run([hostbin("fetchd"), "--once", "-d", str(data)],
                           capture_output=True, text=True, timeout=60, env=env_of(data))
        assert r.returncode == 100 and "refusing to run as root" in r.stderr, r.stderr
        assert srv.msgs == MSGS[:1] and delivered(data) == []
        r = fetch(hostbin, data)       # with -u: the files are the mail group's
        assert r.returncode == 0, r.stderr
        f = next((data / "mail" / "anna" / "new").iterdir())
        assert f.stat().st_mode & 0o777 == 0o660, oct(f.stat().st_mode)
        assert f.stat().st_uid != 0
    finally:
        srv.close()


SILENT_DNS = """
import socket, subprocess, sys, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["mount", "--bind", sys.argv[1], "/etc/resolv.conf"], check=True)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))           # bound, never answers: no ICMP either
t = time.monotonic()
r = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=120)
print("%d %.1f %s" % (r.returncode, time.monotonic() - t, r.stderr.replace("\\n", " ")))
"""


def test_name_lookup_deadline(tmp_path, certs, hostbin):
    """A resolver that never answers (and would be waited for 60 s per
    try): fetchd gives up after its lookup deadline (FETCH_RESOLVE_MS,
    10 s), in a network and mount namespace of its own."""
    if os.geteuid() != 0:
        pytest.skip("needs root for the namespaces")
    data = setup_box(tmp_path, 110, server="pop.hang.test", verify="pin", pin="00" * 32)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:2\n")
    cmd = [hostbin("fetchd"), "--once", "-d", str(data), *drop_args(data)]
    r = subprocess.run(["unshare", "-nm", "/usr/bin/python3", "-c", SILENT_DNS, str(resolv), *cmd],
                       capture_output=True, text=True, timeout=180,
                       env=dict(env_of(data), RES_OPTIONS="timeout:30 attempts:2"))
    assert r.returncode == 0, r.stderr
    rc, secs, err = r.stdout.split(" ", 2)
    assert rc == "111" and "cannot resolve pop.hang.test: no answer in time" in err, r.stdout
    assert 9 <= float(secs) < 20, r.stdout


class SilentServer:
    """Accepts TCP connections and never sends a byte (a provider whose
    POP3 server hangs): records what the client sent."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.raw = b""
        self.conns = []
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.conns.append(conn)
        conn.settimeout(200)
        try:
            while chunk := conn.recv(65536):
                self.raw += chunk
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def timed_fetch(hostbin, data):
    import time
    t = time.monotonic()
    r = fetch_long(hostbin, data)
    return r, time.monotonic() - t


def fetch_long(hostbin, data):
    return fetch(hostbin, data, timeout=300)


def test_tls_handshake_timeout(work, certs, hostbin):
    """Implicit TLS to a server that never answers the ClientHello: fetchd
    gives up when the handshake deadline (FETCH_TLS_MS, 30 s) passes, with
    a clear message, having sent nothing but the ClientHello."""
    _, _, pin = certs["good"]
    srv = SilentServer()
    try:
        data = setup_box(work, srv.port, verify="pin", pin=pin, tls="implicit")
        r, took = timed_fetch(hostbin, data)
    finally:
        srv.close()
    assert r.returncode == 111, r.stdout + r.stderr
    assert "timeout during the TLS handshake; not sending the password" in r.stderr, r.stderr
    assert took >= 29, took                   # the deadline, not an early error
    assert srv.raw[:1] == b"\x16"             # a TLS record: the ClientHello
    assert PASSWORD.encode() not in srv.raw and b"USER" not in srv.raw


@pytest.mark.skipif(not os.environ.get("POSTERN_SOAK"), reason="about 60 s: POSTERN_SOAK=1")
def test_greeting_timeout(work, certs, hostbin):
    """STLS mode, a server that accepts and never greets: the reply
    deadline (FETCH_REPLY_MS, 60 s) ends the session."""
    _, _, pin = certs["good"]
    srv = SilentServer()
    try:
        data = setup_box(work, srv.port, verify="pin", pin=pin)
        r, took = timed_fetch(hostbin, data)
    finally:
        srv.close()
    assert r.returncode == 111, r.stdout + r.stderr
    assert "timed out" in r.stderr, r.stderr
    assert took >= 59, took
    assert srv.raw == b""


def status_record(data, name="acme"):
    p = pathlib.Path(data).parent / "status" / f"fetch-{name}"
    return dict(ln.split("=", 1) for ln in p.read_text().splitlines() if "=" in ln)


def test_over_quota_left_on_server(tmp_path, certs, hostbin):
    """anna's Maildir is full (mailbox-quota): nothing is delivered or
    deleted, the status record names her; once her users-file quota=0
    lifts the limit, the next poll delivers and deletes everything."""
    crt, key, pin = certs["good"]
    srv = FakePop3(crt, key, MSGS)
    try:
        data = setup_box(tmp_path, srv.port, verify="pin", pin=pin)
        conf = data / "etc" / "postern.conf"
        conf.write_text("mailbox-quota 1000\n" + conf.read_text())
        (data / "etc" / "users").write_text("user anna user !\n")
        full = data / "mail" / "anna"
        for sub in ("tmp", "new", "cur"):
            (full / sub).mkdir(parents=True)
        (full / "cur" / "1700000000.M1P1Q1.box,S=990:2,S").write_bytes(b"x" * 990)
        status = tmp_path / "status"      # where env_of points fetchd
        status.mkdir()
        status.chmod(0o777)
        r = fetch(hostbin, data)
        assert r.returncode == 0, r.stderr
        assert "0 fetched" in r.stdout and "3 over quota" in r.stdout, r.stdout
        assert "anna: mailbox full (quota 1000 bytes); left on the server" in r.stderr
        assert len(delivered(data)) == 1                      # only the filler
        assert not any(c.startswith("DELE") for c in srv.cmds), srv.cmds
        assert len(srv.msgs) == 3
        st = status_record(data)
        assert st["result"] == "delivery" and "anna: mailbox full" in st["detail"], st
        (data / "etc" / "users").write_text("user anna user ! quota=0\n")
        r = fetch(hostbin, data)
        assert r.returncode == 0, r.stderr
        assert "3 fetched" in r.stdout and "0 over quota" in r.stdout, r.stdout
        assert srv.msgs == []
        assert status_record(data)["result"] == "ok"
        assert set(MSGS) <= set(delivered(data))
    finally:
        srv.close()
