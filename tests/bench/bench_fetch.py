#!/usr/bin/python3
"""Fetch benchmark (issue 6): 1000 messages of 50 KB over STLS from a
private Dovecot (the provider), fetched and deleted by Postern's fetchd
(built without sanitizers) and by fetchmail on the same data in the same
run, each delivering into a Maildir. Prints the time of each, the ratio and
the peak RSS summed over each fetcher's processes.

fetchmail verifies the server like fetchd does (STLS required, the
server's certificate pinned: fetchd by SPKI SHA-256, fetchmail by its
certificate fingerprint, as Dovecot's test certificate does not name
127.0.0.2 in a way fetchmail accepts) and
delivers through maildrop as its MDA (fsync of each message file, then a
link into new/); fetchmail sends DELE only after the MDA has succeeded.
fetchd is at least as durable: it also fsyncs new/ and records each
batch's UIDLs (fdatasync) before its DELEs.

    /usr/bin/python3 tests/bench/bench_fetch.py [--messages N] [--size BYTES]

Needs root (Dovecot), dovecot, fetchmail, maildrop, openssl.
"""
import argparse
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "integration" / "peers" / "dovecot"))
sys.path.insert(0, str(TOP / "tests" / "bench"))
from provider import Dovecot  # noqa: E402
from bench_smtpd import PeakRss  # noqa: E402
from benchlib import build_daemon  # noqa: E402

PASSWORD = "alice-bench-secret"


def message(i, size):
    head = (f"From: s{i}@remote.test\nTo: alice@provider.test\nSubject: bench {i}\n"
            f"Message-ID: <bench-{i}@remote.test>\n\n")
    line = "%-75s\n" % ("line of message %d" % i)
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_fetchd(out):
    return build_daemon("fetchd", out)
def maildir_count(d):
    return sum(len(os.listdir(d / s)) for s in ("new", "cur") if (d / s).exists())


def timed(cmd, env=None):
    """Runs cmd; returns (seconds, peak RSS in KiB of its process tree, result)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    mon = PeakRss(p.pid)
    mon.start()
    out, err = p.communicate(timeout=1800)
    dt = time.monotonic() - t0
    mon.stop.set()
    mon.join()
    return dt, mon.peak, (p.returncode, out, err)


def run_postern(binary, prov, work):
    data = work / "postern"
    for d in ("etc", "secrets", "mail", "fetch"):
        (data / d).mkdir(parents=True)
    (data / "secrets" / "acme.pass").write_text(PASSWORD + "\n")
    (data / "etc" / "postern.conf").write_text(
        "mail-domain example.com\n[account acme]\nserver 127.0.0.2\n"
        f"port {prov.port_stls}\ntls stls\nverify pin\npin {prov.pin}\nuser alice\n"
        "password-file acme.pass\ndeliver-to anna\nkeep no\n")
    os.chmod(work, 0o755)
    subprocess.run(["chown", "-R", "nobody:", str(data)], check=True)
    dt, rss, (rc, out, err) = timed([str(binary), "--once", "-d", str(data), "-u", "nobody"])
    if rc != 0:
        raise RuntimeError(f"fetchd failed ({rc}): {out}{err[-2000:]}")
    return dt, rss, maildir_count(data / "mail" / "anna")


def fingerprint(crt):
    """fetchmail's pin: the MD5 fingerprint of the server's certificate
    (fetchd pins the SPKI SHA-256; both refuse any other certificate)."""
    out = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-fingerprint", "-md5"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1].upper()


def run_fetchmail(prov, work):
    home = work / "fetchmail"
    md = home / "Maildir"
    for s in ("tmp", "new", "cur"):
        (md / s).mkdir(parents=True)
    filt = home / "mailfilter"
    filt.write_text(f'to "{md}/"\n')
    os.chmod(filt, 0o600)
    rc_file = home / "fetchmailrc"
    rc_file.write_text(
        "set no syslog\n"
        f"poll 127.0.0.2 service {prov.port_stls} proto pop3 auth password\n"
        f"  user \"bob\" password \"{PASSWORD}\" is root here\n"
        f"  sslproto 'TLS1.2+' no sslcertck sslfingerprint \"{fingerprint(prov.crt)}\"\n"
        f"  mda \"/usr/bin/maildrop {filt}\"\n"
        "  fetchall nokeep\n")
    os.chmod(rc_file, 0o600)
    env = dict(os.environ, HOME=str(home))
    dt, rss, (rc, out, err) = timed(["fetchmail", "-f", str(rc_file), "-i", str(home / "ids"),
                                     "--pidfile", str(home / "pid"), "--nodetach"], env)
    n = maildir_count(md)
    if rc not in (0, 1) or n == 0:
        raise RuntimeError(f"fetchmail failed ({rc}): {out}{err[-2000:]}")
    if os.environ.get("BENCH_VERBOSE") == "1":
        print(out, err)
    return dt, rss, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=int(os.environ.get("BENCH_FETCH_N", 1000)))
    ap.add_argument("--size", type=int, default=50 * 1024)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_fetch: needs root (Dovecot)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="fetch-bench-"))
    prov = Dovecot()
    try:
        binary = work / "fetchd"
        kind = build_fetchd(binary)
        msgs = [message(i, a.size) for i in range(a.messages)]
        # One mailbox per fetcher, both seeded before Dovecot starts: a
        # Maildir refilled within the second of its last scan can look
        # unchanged to Dovecot.
        for user in ("alice", "bob"):
            prov.add_user(user, PASSWORD)
            prov.seed(user, msgs)
        prov.start(free_port(), free_port())
        print(f"fetch bench: {a.messages} messages of {len(msgs[0])} bytes over STLS from "
              f"Dovecot, delete mode (fetchd: {kind})")
        pt, prss, pn = run_postern(binary, prov, work)
        left = len(prov.stored("alice"))
        print(f"  postern:   {pt:6.1f} s  {pn / pt:6.0f} msgs/s  peak RSS {prss / 1024:5.1f} MiB"
              f"  ({pn} delivered, {left} left on the server)")
        ft, frss, fn = run_fetchmail(prov, work)
        left = len(prov.stored("bob"))
        print(f"  fetchmail: {ft:6.1f} s  {fn / ft:6.0f} msgs/s  peak RSS {frss / 1024:5.1f} MiB"
              f"  ({fn} delivered, {left} left on the server; MDA maildrop)")
        print(f"  ratio postern/fetchmail: {ft / pt:.2f}x faster")
        # A ratio is only a result when both fetched the whole mailbox.
        for who, n, user in (("postern", pn, "alice"), ("fetchmail", fn, "bob")):
            if n != a.messages or prov.stored(user):
                sys.exit(f"bench_fetch: {who} delivered {n} of {a.messages} messages and left "
                         f"{len(prov.stored(user))} on the server: the ratio above is void")
    finally:
        prov.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
