#!/usr/bin/python3
"""IMAP benchmark (issue 7), Postern's imapd (built without sanitizers) and
Dovecot on copies of the same Maildir, in one run:

1. mixed workload: Python client processes over IMAPS for S seconds (after one
   untimed login per user on each server, and, for Postern, a NOOP-only
   run that shows the Python generator's ceiling), each
   looping over login, SELECT, then a random mix of: FETCH headers of 20
   messages, FETCH one whole message, STORE flag changes, APPEND of a 5 KB
   message, IDLE (woken after 50 ms by DONE), and now and then LOGOUT and a
   new login. Prints operations/s for both and the ratio.
2. memory per idle IMAPS connection: N logged-in connections held open
   (users u0..u49, 20 connections each from 127.0.0.x source addresses, as
   the per-user and per-address limits allow), the growth of the summed
   proportional set size (PSS) of every server process divided by N.

    /usr/bin/python3 tests/bench/bench_imap.py [--clients C] [--seconds S]
        [--messages M] [--idle N]

Needs root (Dovecot), dovecot-imapd, openssl, gcc.
"""
import argparse
import base64
import hashlib
import multiprocessing
import os
import pathlib
import random
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "integration" / "peers" / "dovecot"))
from imap_peer import DovecotImap  # noqa: E402
from provider import make_cert  # noqa: E402
from benchlib import build_daemon  # noqa: E402

NOBODY = 65534
USERS = 50
PER_USER = 20     # imapd's IMAPD_CONNS_PER_USER
PER_ADDR = 50     # imapd's IMAPD_CONNS_PER_ADDR


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pbkdf2_hash(password, it=200000):
    salt = os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, it)
    b64 = lambda b: base64.b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"$pbkdf2-sha256$i={it}${b64(salt)}${b64(dk)}"


def message(i):
    body = "".join(f"line {k} of message {i}: " + "x" * 60 + "\r\n" for k in range(60))
    return (f"From: sender{i}@example.com\r\nTo: alice@example.com\r\nSubject: bench {i}\r\n"
            f"Message-ID: <b{i}@bench>\r\nDate: Sun, 29 Nov 2026 00:00:00 +0000\r\n\r\n"
            + body).encode()


def make_maildir(md, n):
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        data = message(i)
        (md / "cur" / f"{1700000000 + i}.M{i}P1.bench,S={len(data)}:2,{'S' if i % 2 else ''}"
         ).write_bytes(data)


def chown_tree(top):
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            os.chown(os.path.join(root, n), NOBODY, NOBODY)
    os.chown(top, NOBODY, NOBODY)


def build_imapd(out):
    return build_daemon("imapd", out)
def pss_kb(pids):
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---- the servers ------------------------------------------------------------------

class Postern:
    def __init__(self, binary, root, users):
        self.root = root
        (root / "etc").mkdir(parents=True)
        (root / "run").mkdir()
        (root / "etc" / "users").write_text("".join(
            f"user {u} user {pbkdf2_hash(pw)}\n" for u, pw in users.items()))
        self.cert, self.key, _ = make_cert(root / "etc", "imapd")
        self.port = free_port()
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            [str(binary), "-f", "--users", str(root / "etc/users"), "--mail", str(root / "mail"),
             "--throttle", str(root / "run/throttle"), "--cert", self.cert, "--key", self.key,
             "--imap", "", "--imaps", f"127.0.0.1:{self.port}", "--ready-fd", str(w),
             "--user", "nobody"], pass_fds=(w,), stderr=open(root / "imapd.log", "wb"))
        os.close(w)
        assert os.read(r, 1) == b"\n", (root / "imapd.log").read_text()
        os.close(r)

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Dovecot:
    def __init__(self, mailroot, users):
        self.dv = DovecotImap(mailroot)
        for u, pw in users.items():
            self.dv.add_user(u, pw)
        self.port = free_port()
        self.dv.start(free_port(), self.port)

    def pids(self):
        return self.dv.pids()

    def stop(self):
        self.dv.cleanup()


# ---- a client ---------------------------------------------------------------------

def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


class Client:
    def __init__(self, port, src="127.0.0.1"):
        s = socket.create_connection(("127.0.0.1", port), source_address=(src, 0), timeout=60)
        self.s = ctx().wrap_socket(s)
        self.buf = b""
        self.n = 0
        self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        if line.endswith(b"}") and b"{" in line:
            n = int(line[line.rindex(b"{") + 1:-1])
            while len(self.buf) < n:
                self.buf += self.s.recv(max(65536, n - len(self.buf)))
            self.buf = self.buf[n:]
            return line + self.line()
        return line

    def cmd(self, text, literal=None):
        self.n += 1
        tag = b"c%d" % self.n
        if literal is not None:
            self.s.sendall(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        else:
            self.s.sendall(tag + b" " + text + b"\r\n")
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                if not ln.startswith(tag + b" OK"):
                    raise RuntimeError(ln)
                return

    def idle(self):
        self.n += 1
        tag = b"c%d" % self.n
        self.s.sendall(tag + b" IDLE\r\n")
        while not self.line().startswith(b"+"):
            pass
        time.sleep(0.05)
        self.s.sendall(b"DONE\r\n")
        while not self.line().startswith(tag + b" "):
            pass


def noop_worker(args):
    """The generator's ceiling: NOOPs only, the cheapest round trip."""
    port, user, pw, seconds = args[:4]
    c = Client(port)
    c.cmd(b"LOGIN " + user.encode() + b" " + pw.encode())
    ops, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        c.cmd(b"NOOP")
        ops += 1
    c.cmd(b"LOGOUT")
    return ops


def worker(args):
    port, user, pw, seconds, nmsg, seed = args
    rnd = random.Random(seed)
    ops, end = 0, time.monotonic() + seconds
    c = None
    while time.monotonic() < end:
        if c is None or rnd.random() < 0.02:
            if c:
                c.cmd(b"LOGOUT")
                c.s.close()
            c = Client(port)
            c.cmd(b"LOGIN " + user.encode() + b" " + pw.encode())
            c.cmd(b"SELECT INBOX")
            ops += 2
            continue
        r = rnd.random()
        if r < 0.35:
            lo = rnd.randrange(1, nmsg - 20)
            c.cmd(b"FETCH %d:%d (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"
                  % (lo, lo + 19))
        elif r < 0.6:
            c.cmd(b"FETCH %d BODY.PEEK[]" % rnd.randrange(1, nmsg))
        elif r < 0.8:
            c.cmd(b"STORE %d %sFLAGS (\\Flagged)" % (rnd.randrange(1, nmsg),
                                                     rnd.choice([b"+", b"-"])))
        elif r < 0.9:
            c.cmd(b"APPEND INBOX (\\Seen)", message(rnd.randrange(10 ** 6)))
        else:
            c.idle()
        ops += 1
    if c:
        c.cmd(b"LOGOUT")
    return ops


def mixed(port, clients, seconds, nmsg, fn=worker):
    args = [(port, "u%d" % (i % USERS), "pw%d" % (i % USERS), seconds, nmsg, i)
            for i in range(clients)]
    with multiprocessing.Pool(clients) as pool:
        t0 = time.monotonic()
        ops = sum(pool.map(fn, args))
        dt = time.monotonic() - t0
    return ops / dt


def warm_logins(port, clients):
    """One login per benchmark user before the timed part, so neither
    server's first password check (Postern: PBKDF2, then its verified-
    credential cache; Dovecot here: {PLAIN}) falls into the window."""
    for i in range(min(clients, USERS)):
        c = Client(port)
        c.cmd(b"LOGIN u%d pw%d" % (i, i))
        c.cmd(b"LOGOUT")


def idle_memory(server, n):
    before = pss_kb(server.pids())
    conns = []
    for i in range(n):
        u = i // PER_USER
        src = f"127.0.{1 + i // PER_ADDR // 250}.{1 + (i // PER_ADDR) % 250}"
        try:
            c = Client(server.port, src)
            c.cmd(b"LOGIN u%d pw%d" % (u % USERS, u % USERS))
        except (OSError, RuntimeError) as e:
            raise RuntimeError(f"connection {i} from {src}: {e}") from e
        conns.append(c)
    time.sleep(1)
    after = pss_kb(server.pids())
    for c in conns:
        c.s.close()
    return (after - before) / n, after


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--idle", type=int, default=1000)
    a = ap.parse_args()
    assert a.idle <= USERS * PER_USER
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-imap-"))
    os.chmod(work, 0o755)
    users = {f"u{i}": f"pw{i}" for i in range(USERS)}
    try:
        binary = work / "imapd"
        build_imapd(binary)
        for side in ("postern", "dovecot"):   # two copies of the same store
            for u in users:
                make_maildir(work / side / "mail" / u, a.messages if u == "u0" or
                             int(u[1:]) < a.clients else 1)
            chown_tree(work / side / "mail")
        results = {}
        for name in ("postern", "dovecot"):
            srv = (Postern(binary, work / name, users) if name == "postern"
                   else Dovecot(work / name / "mail", users))
            try:
                warm_logins(srv.port, a.clients)
                if name == "postern":   # the Python generator's own limit
                    ceiling = mixed(srv.port, a.clients, min(a.seconds, 5), a.messages,
                                    noop_worker)
                    print(f"generator ceiling (NOOP only, {a.clients} clients): "
                          f"{ceiling:.0f} ops/s", flush=True)
                ops = mixed(srv.port, a.clients, a.seconds, a.messages)
                per, total = idle_memory(srv, a.idle)
                results[name] = (ops, per, total)
                print(f"{name}: mixed workload {ops:.0f} ops/s ({a.clients} clients, "
                      f"{a.seconds} s); {a.idle} idle IMAPS connections: {per:.1f} KB PSS each "
                      f"({total // 1024} MB in all)", flush=True)
            finally:
                srv.stop()
        p, d = results["postern"], results["dovecot"]
        print(f"ratio postern/dovecot: throughput {p[0] / d[0]:.2f}x, "
              f"memory per idle connection {p[1] / d[1]:.2f}x")
    finally:
        if os.environ.get("BENCH_KEEP"):
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
