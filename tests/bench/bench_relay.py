#!/usr/bin/python3
"""Relay benchmark (issue 5): N queued ~10 KB messages relayed to a Postfix
smart host over STARTTLS + AUTH (certificate verified against a CA and the
host name), in one run, for

  - Postern's relayd (built like the firmware, without sanitizers,
    --sessions S): the messages are queued first (as smtpd queues them),
    then the clock runs from starting relayd until the last message is in
    the smart host's sink;
  - a second Postfix as the office relay (relayhost, smtp_tls_security_level
    verify, SASL, at most S connections to the smart host): the same
    messages are injected over SMTP and parked in its hold queue, then the
    clock runs from releasing them (postsuper -H ALL; postqueue -f) until
    the last is in the same sink.

So both sides are timed from "everything is durably queued" to "everything
is at the smart host". Every phase has a deadline and fails with what each
side logged instead of hanging. Prints the setup, each side's figures and
the ratio (relayd / Postfix).

    /usr/bin/python3 tests/bench/bench_relay.py [--messages N] [--sessions S]
                                               [--runs R] [--binary RELAYD]

Needs root (Postfix's master), postfix, sasl2-bin, openssl.
"""
import argparse
import os
import pathlib
import smtplib
import socket
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
INJECT_S = 300        # deadline: injecting into Postfix's hold queue
DELIVER_S = 600       # deadline: one side delivering every message
START_S = 60          # deadline: a daemon starting


class BenchError(Exception):
    pass


def message(i, tag):
    return (f"From: alice@example.com\r\nTo: r{i}@remote.test\r\nSubject: bench {tag} {i}\r\n"
            f"Message-ID: <{tag}.{i}@bench>\r\nDate: Sun, 29 Nov 2026 00:00:00 +0000\r\n\r\n"
            + BODY).encode()


def free_ports(n):
    socks, out = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        out.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return out


def sink_count(pf):
    new = pf.dir / "mail" / "sink" / "new"
    return len(os.listdir(new)) if new.exists() else 0


def wait_until(pred, deadline_s, what, diag):
    """Polls pred until true; on the deadline raises BenchError with what
    and diag() (the logs that say why)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if pred():
            return time.monotonic()
        time.sleep(0.005)
    raise BenchError(f"timed out after {deadline_s} s: {what}\n{diag()}")


def bench_postern(binary, target, n, sessions, tag):
    conf = (f"host localhost\nport {target.port_starttls}\nverify ca\n"
            f"ca-file {target.ca.crt}\nuser relay\npassword-file smarthost.pass\n")
    box = RelayBox(str(binary), conf, sessions=sessions)
    base = sink_count(target)
    try:
        for i in range(n):
            box.enqueue(message(i, tag), [f"r{i}@remote.test"])
        box.chown()
        t0 = time.monotonic()
        box.start()
        diag = lambda: (f"relayd log:\n{box.logtext()[-3000:]}\nsmart host log:\n{target.log()}")
        t1 = wait_until(lambda: sink_count(target) >= base + n, DELIVER_S,
                        f"relayd: {sink_count(target) - base} of {n} at the smart host", diag)
        wait_until(lambda: not box.queued(), START_S, "relayd: the queue did not empty", diag)
        return t1 - t0
    finally:
        box.cleanup()


def postfix_relay(ca, target, sessions):
    extra = (f"virtual_mailbox_domains =\ndefault_transport = smtp\nrelay_transport = smtp\n"
             f"relayhost = [localhost]:{target.port_starttls}\n"
             "smtp_tls_security_level = verify\nsmtp_tls_verify_cert_match = hostname\n"
             f"smtp_destination_concurrency_limit = {sessions}\n"
             f"default_destination_concurrency_limit = {sessions}\n"
             "smtp_host_lookup = native\n"
             # Injection: plain SMTP from loopback, every message parked in
             # the hold queue until the timed phase releases it.
             "mynetworks = 127.0.0.0/8\n"
             "smtpd_relay_restrictions = permit_mynetworks, reject\n"
             "smtpd_recipient_restrictions = check_client_access static:HOLD, "
             "permit_mynetworks, reject\n")
    return Postfix(ca, extra=extra)


def queue_count(pf, sub):
    n = 0
    for _, _, files in os.walk(pf.dir / "queue" / sub):
        n += len(files)
    return n


def inject(relay, n, tag):
    """n messages over one plain SMTP session (pipelined by smtplib's
    send_message: one round trip each). Returns after all are on hold."""
    diag = lambda: f"queue: {postqueue(relay)}\nrelay log:\n{relay.log()}"
    try:
        with smtplib.SMTP("127.0.0.1", relay.port_starttls, timeout=INJECT_S) as c:
            for i in range(n):
                c.sendmail("alice@example.com", [f"r{i}@remote.test"], message(i, tag))
    except (OSError, smtplib.SMTPException) as e:
        raise BenchError(f"injecting into Postfix: {e!r}\n{diag()}") from e
    wait_until(lambda: queue_count(relay, "hold") >= n, INJECT_S,
               f"Postfix: {queue_count(relay, 'hold')} of {n} on hold", diag)


def postqueue(pf):
    r = subprocess.run(["postqueue", "-c", str(pf.dir / "etc"), "-p"], capture_output=True,
                       text=True, timeout=60)
    return r.stdout[-1500:]


def bench_postfix(ca, target, n, sessions, tag):
    relay = postfix_relay(ca, target, sessions)
    try:
        relay.start(*free_ports(2))
        inject(relay, n, tag)
        base = sink_count(target)
        etc = str(relay.dir / "etc")
        t0 = time.monotonic()
        subprocess.run(["postsuper", "-c", etc, "-H", "ALL"], check=True, capture_output=True,
                       timeout=START_S)
        subprocess.run(["postqueue", "-c", etc, "-f"], check=True, capture_output=True,
                       timeout=START_S)
        diag = lambda: (f"queue: {postqueue(relay)}\nrelay log:\n{relay.log()}\n"
                        f"smart host log:\n{target.log()}")
        t1 = wait_until(lambda: sink_count(target) >= base + n, DELIVER_S,
                        f"Postfix: {sink_count(target) - base} of {n} at the smart host", diag)
        return t1 - t0
    finally:
        relay.cleanup()


def load():
    return open("/proc/loadavg").read().split()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--sessions", type=int, default=8,
                    help="relayd sessions = Postfix's connections to the smart host")
    ap.add_argument("--runs", type=int, default=1, help="alternating pairs of runs")
    ap.add_argument("--binary", help="a relayd already built (e.g. an older version) "
                    "instead of building the tree's")
    a = ap.parse_args()
    size = len(message(0, "r0"))
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        binary = work / "relayd"
        if a.binary:
            binary, kind = pathlib.Path(a.binary).resolve(), f"given: {a.binary}"
        else:
            kind = build_daemon("relayd", binary)
        ca = RelayCA(work / "ca")
        target = Postfix(ca)
        target.start(*free_ports(2))
        print(f"setup: {a.messages} messages x {size} bytes, 1 recipient each; smart host "
              f"Postfix {subprocess.getoutput('postconf -d -h mail_version')} STARTTLS+AUTH, "
              f"CA + host name verified; relayd ({kind}) --sessions {a.sessions}; Postfix "
              f"relayhost with destination concurrency {a.sessions}", flush=True)
        ratios = []
        try:
            for r in range(a.runs):
                l0 = load()
                tp = bench_postern(binary, target, a.messages, a.sessions, f"p{r}")
                tf = bench_postfix(ca, target, a.messages, a.sessions, f"f{r}")
                ratios.append(tf / tp)
                print(f"run {r + 1}: relayd {a.messages / tp:.0f} msgs/s ({tp:.2f} s), "
                      f"Postfix {a.messages / tf:.0f} msgs/s ({tf:.2f} s), "
                      f"ratio {tf / tp:.2f} (load {l0} -> {load()})", flush=True)
        except BenchError as e:
            print(f"FAILED: {e}", file=sys.stderr)
            sys.exit(1)
        finally:
            target.cleanup()
    ratios.sort()
    print(f"relay {a.messages} x {size // 1024} KB over STARTTLS+AUTH to Postfix, "
          f"{a.sessions} sessions: ratio relayd/Postfix median {ratios[len(ratios) // 2]:.2f} "
          f"(runs: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
