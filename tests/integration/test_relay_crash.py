"""Crash test: relayd is killed with SIGKILL at random points while it
relays to a real Postfix; after a final run every message has reached
Postfix at least once and the queue is empty (a crash repeats at most the
last attempt, never loses one). Quick: 40 messages, 10 kills; POSTERN_SOAK=1:
200 messages, 40 kills."""
import os
import pathlib
import random
import socket
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "postfix"))
from postfix import Postfix, RelayCA  # noqa: E402
from relaybox import RelayBox  # noqa: E402

SOAK = os.environ.get("POSTERN_SOAK") == "1"
MESSAGES, KILLS = (200, 40) if SOAK else (40, 10)


def ports(n):
    out = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            out.append(s.getsockname()[1])
    return out


@pytest.fixture
def smarthost(tmp_path):
    pf = Postfix(RelayCA(tmp_path / "ca"))
    pf.start(*ports(2))
    yield pf
    pf.cleanup()


def tags_in(pf):
    found = set()
    for _, m in pf.sink():
        for line in m.split(b"\n"):
            if line.startswith(b"Subject: crash "):
                found.add(line[len(b"Subject: crash "):].decode())
    return found


def test_kill9_loses_nothing(smarthost, hostbin):
    pf = smarthost
    conf = (f"host localhost\nport {pf.port_starttls}\nverify ca\nca-file {pf.ca.crt}\n"
            "user relay\npassword-file smarthost.pass\n")
    box = RelayBox(hostbin("relayd"), conf, sessions=2)
    rng = random.Random(int(os.environ.get("POSTERN_SEED", time.time())))
    try:
        tags = [f"m{i:03d}" for i in range(MESSAGES)]
        for t in tags:
            box.enqueue(b"From: alice@example.com\r\nDate: Sun, 29 Nov 2026 02:00:00 +0000\r\n"
                        b"Subject: crash " + t.encode() + b"\r\n\r\n" +
                        b"line\r\n" * rng.randint(1, 2000), ["sink@remote.test"])
        kills = 0
        for k in range(KILLS):
            box.start()
            # Kill at a random point: after a random number of further
            # deliveries, or at once (mid-connect, mid-TLS, mid-DATA).
            target = len(pf.sink()) + rng.randint(0, 2 * MESSAGES // KILLS)
            end = time.time() + 10
            while len(pf.sink()) < target and box.queued() and time.time() < end:
                time.sleep(0.002)
            time.sleep(rng.random() * 0.05)
            box.kill9()
            kills += 1
            if not box.queued():
                break
        box.start()
        box.wait(lambda: not box.queued(), timeout=120, what="queue empty")
        missing = set(tags) - tags_in(pf)
        if missing:
            pf.wait_sink(MESSAGES, timeout=20)
            missing = set(tags) - tags_in(pf)
        assert not missing, (sorted(missing), box.logtext()[-2000:])
        assert kills >= 1
        dups = len(pf.sink()) - MESSAGES
        print(f"{MESSAGES} messages, {kills} kills, {dups} duplicates")
    finally:
        box.cleanup()
