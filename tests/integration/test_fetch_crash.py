"""Crash test: fetchd is killed with SIGKILL at random points while it
fetches a mailbox from a private Dovecot, then run again until done. After
every kill, each message is either still on the server or delivered
(nothing deleted before it was stored); at the end each message is in the
Maildir exactly once, byte-identical (Message-IDs and bodies compared).

POSTERN_CRASH_MESSAGES / POSTERN_CRASH_KILLS scale it (issue 6 asks for
500 messages and 50 kills; the default is smaller to keep `make test`
quick)."""
import os
import pathlib
import random
import re
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dovecot"))
from provider import Dovecot  # noqa: E402
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "smtpd"))
from privs import drop_args  # noqa: E402

N = int(os.environ.get("POSTERN_CRASH_MESSAGES", "150"))
KILLS = int(os.environ.get("POSTERN_CRASH_KILLS", "15"))


def message(i):
    body = ("line %d of message %d\n" % (0, i)) * (1 + (i * 37) % 200)
    return ("From: s%d@remote.test\nTo: alice@provider.test\nSubject: crash %d\n"
            "Message-ID: <crash-%d@remote.test>\n\n%s.dot line\n" % (i, i, i, body)).encode()


def mid(m):
    return re.search(rb"Message-ID: <([^>]+)>", m).group(1).decode()


def delivered(data):
    out = []
    for sub in ("new", "cur"):
        d = data / "mail" / "anna" / sub
        if d.exists():
            out += [f.read_bytes() for f in d.iterdir()]
    return out


def kill_when_progress(p, data, rnd):
    """Waits until the kill point: mostly after a random number of further
    deliveries (so kills land mid-fetch whatever the machine's speed),
    sometimes after a random short time (handshake, login, UIDL: under
    40 ms, since a pipelined run can fetch a hundred messages in 150 ms)."""
    if rnd.random() < 0.15:
        time.sleep(rnd.uniform(0.0, 0.04))
        return
    start = len(delivered(data))
    # A few deliveries at most: fetchd commits in growing batches (1, 2, 4,
    # ... per run), so waiting for more would let a run finish the mailbox
    # before the test has killed it often enough.
    target = start + rnd.randint(1, 3)
    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline:
        if len(delivered(data)) >= target:
            break
        time.sleep(0.003)
    time.sleep(rnd.uniform(0.0, 0.01))   # anywhere in the next message's path


@pytest.mark.parametrize("keep", ["no", "yes"])
def test_kill9_exactly_once(work, free_port, hostbin, keep):
    """(work: a private directory, not under /tmp/pytest-of-root, which
    another pytest run resets to 0700 while this long test runs as nobody.)"""
    rnd = random.Random(6 + (keep == "yes"))
    msgs = [message(i) for i in range(N)]
    prov = Dovecot()
    try:
        prov.add_user("alice", "alice-secret")
        prov.seed("alice", msgs)
        prov.start(free_port(), free_port())
        data = work / "data"
        for d in ("etc", "secrets", "mail", "fetch"):
            (data / d).mkdir(parents=True)
        (data / "secrets" / "acme.pass").write_text("alice-secret\n")
        (data / "etc" / "postern.conf").write_text(
            "mail-domain example.com\n[account acme]\nserver 127.0.0.2\n"
            f"port {prov.port_stls}\nverify pin\npin {prov.pin}\nuser alice\n"
            f"password-file acme.pass\ndeliver-to anna\nkeep {keep}\n")
        cmd = [hostbin("fetchd"), "--once", "-d", str(data), *drop_args(data)]
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0",
                   POSTERN_STATUS_DIR=str(work / "status"))
        kills = partial = 0
        for _ in range(KILLS * 4):
            if kills >= KILLS or len(delivered(data)) >= N - 1:
                break
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=env)
            kill_when_progress(p, data, rnd)
            if p.poll() is None:
                p.kill()
                kills += 1
            p.wait()
            got = delivered(data)
            ids = [mid(m) for m in got]
            assert len(ids) == len(set(ids)), "a message was delivered twice"
            on_server = {mid(m) for m in prov.stored("alice")}
            missing = {mid(m) for m in msgs} - on_server - set(ids)
            assert not missing, f"deleted before delivery: {sorted(missing)[:5]}"
            partial += 0 < len(ids) < N
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        print(f"kills={kills} partial-states={partial}")
        # The kills the issue asks for all happened (a run that finishes
        # the mailbox before its kill point ends the loop early: then at
        # least half), each leaving a partial state behind.
        assert kills >= KILLS // 2 and partial >= kills // 2, (kills, partial)
        got = delivered(data)
        assert sorted(got) == sorted(msgs)
        assert len(prov.stored("alice")) == (N if keep == "yes" else 0)
    finally:
        prov.cleanup()
