#!/usr/bin/python3
"""Relay benchmark (issue 5): N queued ~10 KB messages relayed to a Postfix
smart host over STARTTLS + AUTH (certificate verified against a CA), timed
from the start of the queue runner until the last message is in the smart
host's sink, for Postern's relayd (built without sanitizers, --sessions S)
and for a second Postfix relaying the same messages to the same target
(relayhost, smtp_tls_security_level verify, SASL), in one run. Prints
msgs/s for both and the ratio.

    /usr/bin/python3 tests/bench/bench_relay.py [--messages N] [--sessions S]

Needs root (Postfix's master), postfix, sasl2-bin, openssl.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "integration" / "peers" / "postfix"))
from postfix import Postfix, RelayCA  # noqa: E402
from relaybox import RelayBox  # noqa: E402
from benchlib import build_daemon  # noqa: E402

BODY = ("x" * 76 + "\r\n") * 130   # ~10 KB


def message(i):
    return (f"From: alice@example.com\r\nTo: r{i}@remote.test\r\nSubject: bench {i}\r\n"
            f"Message-ID: <{i}@bench>\r\nDate: Sun, 29 Nov 2026 00:00:00 +0000\r\n\r\n"
            + BODY).encode()


def free_ports(n):
    import socket
    out = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            out.append(s.getsockname()[1])
    return out


def build_relayd(out):
    return build_daemon("relayd", out)
def wait_count(pf, n, timeout=600):
    end = time.time() + timeout
    while time.time() < end:
        new = pf.dir / "mail" / "sink" / "new"
        if new.exists() and len(os.listdir(new)) >= n:
            return time.time()
        time.sleep(0.01)
    raise RuntimeError(f"only {len(pf.sink())} of {n} arrived:\n{pf.log()}")


def bench_postern(binary, target, n, sessions):
    conf = (f"host localhost\nport {target.port_starttls}\nverify ca\n"
            f"ca-file {target.ca.crt}\nuser relay\npassword-file smarthost.pass\n")
    box = RelayBox(str(binary), conf, sessions=sessions)
    try:
        for i in range(n):
            box.enqueue(message(i), [f"r{i}@remote.test"])
        box.chown()
        t0 = time.time()
        box.start()
        t1 = wait_count(target, n)
        box.wait(lambda: not box.queued(), timeout=60, what="queue empty")
        return n / (t1 - t0)
    finally:
        box.cleanup()


def bench_postfix(ca, target, n):
    """The same messages dropped into a Postfix not yet started (sendmail/
    postdrop into its maildrop), then timed from `postfix start` until the last is in
    the target's sink: pickup and cleanup are counted (for relayd, smtpd did
    that work when the message was submitted)."""
    extra = (f"virtual_mailbox_domains =\ndefault_transport = smtp\nrelay_transport = smtp\n"
             f"relayhost = [localhost]:{target.port_starttls}\n"
             "smtp_tls_security_level = verify\nsmtp_tls_verify_cert_match = hostname\n"
             "smtp_destination_concurrency_limit = 20\nsmtp_host_lookup = native\n")
    relay = Postfix(ca, extra=extra)
    ports = free_ports(2)
    relay.prepare(*ports)
    try:
        base = len(target.sink())
        for i in range(n):
            subprocess.run(["sendmail", "-C", str(relay.dir / "etc"), "-f", "alice@example.com",
                            f"r{i}@remote.test"], input=message(i), check=True,
                           stderr=subprocess.DEVNULL)
        t0 = time.time()
        relay.start(*ports)
        t1 = wait_count(target, base + n)
        return n / (t1 - t0)
    finally:
        relay.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--sessions", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        binary = work / "relayd"
        build_relayd(binary)
        ca = RelayCA(work / "ca")
        target = Postfix(ca)
        target.start(*free_ports(2))
        try:
            prate = bench_postern(binary, target, a.messages, a.sessions)
            frate = bench_postfix(ca, target, a.messages)
        finally:
            target.cleanup()
    print(f"relay {a.messages} x 10 KB over STARTTLS+AUTH to Postfix: "
          f"relayd ({a.sessions} sessions) {prate:.0f} msgs/s, "
          f"Postfix relayhost {frate:.0f} msgs/s, ratio {prate / frate:.2f}")


if __name__ == "__main__":
    main()
