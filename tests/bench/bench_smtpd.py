#!/usr/bin/python3
"""Submission benchmark (issue 4): 10 KB messages over STARTTLS + AUTH by N
parallel client sessions (at least 100 messages each), timed until the last
message is in the recipient's Maildir new/, for Postern's smtpd (built
without sanitizers) and for Postfix configured the same way (submission
with STARTTLS + SASL AUTH, local Maildir delivery) on the same machine in
the same run. Prints msgs/s, the ratio, the peak RSS summed over every
process of each server, and the load generator's own ceiling against a
null server (STARTTLS + AUTH, discards the data).

The load generator is tests/bench/smtpload.c (built here with gcc -O2
against the host's OpenSSL): one thread per session, MAIL/RCPT/DATA
pipelined where PIPELINING is offered, 250s after the final dot counted;
`smtpload --sink` is the null server.

    /usr/bin/python3 tests/bench/bench_smtpd.py [--sessions N] [--per M]

Needs root (Postfix's master), postfix, sasl2-bin (saslpasswd2), openssl, gcc and
libssl-dev (smtpload).
"""
import argparse
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "integration" / "peers" / "smtpd"))
from smtpd_box import SmtpdBox, USERS  # noqa: E402
from benchlib import build_daemon  # noqa: E402

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the load generator: tests/bench/smtpload.c -------------------------------
def build_smtpload(out):
    """The C load generator, host gcc -O2 against OpenSSL (a test tool)."""
    subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-D_DEFAULT_SOURCE", "-D_GNU_SOURCE",
                    "-o", str(out), str(TOP / "tests" / "bench" / "smtpload.c"),
                    "-lssl", "-lcrypto", "-lpthread"], check=True)
    return out


SMTPLOAD = None   # set by main()


def load(port, user, password, sender, rcpt, sessions, per):
    """Runs smtpload: N sessions of STARTTLS + AUTH + per messages each,
    pipelined where offered. Returns (messages that got their 250, the
    wall-clock start of the sessions)."""
    r = subprocess.run([str(SMTPLOAD), "--port", str(port), "--sessions", str(sessions),
                        "--per", str(per), "--user", user, "--pass", password,
                        "--from", sender, "--to", rcpt],
                       capture_output=True, text=True, timeout=1800)
    fields = dict(kv.split("=", 1) for kv in r.stdout.split()[1:] if "=" in kv)
    if r.returncode != 0 or "accepted" not in fields:
        raise RuntimeError(f"smtpload failed ({r.returncode}): {r.stdout}{r.stderr[-2000:]}")
    return int(fields["accepted"]), float(fields["t0"])


def count(d):
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


def wait_delivered(newdir, total, t0, timeout=600):
    end = time.time() + timeout
    while time.time() < end:
        if count(newdir) >= total:
            return time.time() - t0
        time.sleep(0.02)
    raise RuntimeError(f"only {count(newdir)} of {total} messages in {newdir}")


# ---- memory: peak of the summed RSS of a process tree ---------------------------
def tree(root_pid):
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root_pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakRss(threading.Thread):
    def __init__(self, root_pid):
        super().__init__(daemon=True)
        self.root, self.peak, self.stop = root_pid, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, sum(rss_kb(p) for p in tree(self.root)))
            time.sleep(0.05)


# ---- Postern ------------------------------------------------------------------
def build_smtpd(out):
    return build_daemon("smtpd", out)


def bench_postern(binary, sessions, per):
    box = SmtpdBox(str(binary), free_port(), free_port())
    try:
        box.start()
        mon = PeakRss(box.proc.pid)
        mon.start()
        done, t0 = load(box.port587, "alice", USERS["alice"], "alice@example.com",
                        "bob@example.com", sessions, per)
        dt = wait_delivered(box.data / "mail" / "bob" / "new", done, t0)
        mon.stop.set()
        mon.join()
        return done / dt, mon.peak
    finally:
        box.cleanup()


# ---- Postfix ------------------------------------------------------------------
MAIN_CF = """compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
maillog_file = {d}/maillog
maillog_file_prefixes = {d}, /dev/stdout
syslog_name = postfix-bench
myhostname = box.example.com
mydomain = example.com
myorigin = $mydomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_peername_lookup = no
mydestination =
local_recipient_maps =
relay_domains =
alias_maps =
alias_database =
biff = no
default_transport = error:5.7.1 no outbound in the benchmark
relay_transport = error:5.7.1 no outbound in the benchmark
virtual_mailbox_domains = example.com
virtual_mailbox_maps = static:bob/
virtual_mailbox_base = {d}/mail
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_tls_cert_file = {d}/etc/server.crt
smtpd_tls_key_file = {d}/etc/server.key
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {d}/etc/sasl
smtpd_sasl_local_domain = example.com
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
default_process_limit = 100
"""
MASTER_CF = """127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def pf(d, *args):
    # Postfix reports errors only on a tty: run it under script(1).
    return subprocess.run(["script", "-qec", f"postfix -c {d}/etc " + " ".join(args),
                           "/dev/null"], capture_output=True, text=True, timeout=120)


def postfix_master_pid(d):
    p = pathlib.Path(d) / "data" / "master.lock"
    for _ in range(200):
        try:
            return int(p.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            time.sleep(0.05)
    raise RuntimeError("no Postfix master pid")


def bench_postfix(sessions, per):
    d = tempfile.mkdtemp(prefix="pf-bench-", dir="/tmp")
    os.chmod(d, 0o755)   # postfix and the delivery user must reach data/ and mail/
    port = free_port()
    try:
        for sub in ("etc/sasl", "queue", "data", "mail"):
            os.makedirs(f"{d}/{sub}")
        pathlib.Path(f"{d}/etc/main.cf").write_text(MAIN_CF.format(d=d))
        pathlib.Path(f"{d}/etc/master.cf").write_text(MASTER_CF.format(port=port))
        pathlib.Path(f"{d}/etc/sasl/smtpd.conf").write_text(
            f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
            f"sasldb_path: {d}/etc/sasl/sasldb2\n")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                        "-keyout", f"{d}/etc/server.key", "-out", f"{d}/etc/server.crt",
                        "-subj", "/CN=localhost"], check=True, capture_output=True)
        subprocess.run(["saslpasswd2", "-p", "-c", "-f", f"{d}/etc/sasl/sasldb2", "-u",
                        "example.com", "alice"], input=USERS["alice"], text=True, check=True)
        pw = pwd.getpwnam("postfix")
        os.chown(f"{d}/data", pw.pw_uid, -1)
        os.chown(f"{d}/etc/sasl/sasldb2", 0, pw.pw_gid)
        os.chmod(f"{d}/etc/sasl/sasldb2", 0o640)
        os.chown(f"{d}/mail", 65534, 65534)
        r = pf(d, "start")
        if r.returncode != 0:
            raise RuntimeError(f"postfix start: {r.stdout}{r.stderr}")
        master = postfix_master_pid(d)
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        mon = PeakRss(master)
        mon.start()
        done, t0 = load(port, "alice@example.com", USERS["alice"], "alice@example.com",
                        "bob@example.com", sessions, per)
        dt = wait_delivered(f"{d}/mail/bob/new", done, t0)
        mon.stop.set()
        mon.join()
        return done / dt, mon.peak
    finally:
        pf(d, "stop")
        time.sleep(0.5)
        shutil.rmtree(d, ignore_errors=True)


# ---- the null server: smtpload --sink (STARTTLS + AUTH, data discarded) --------
def bench_null(sessions, per, cert, key):
    p = subprocess.Popen([str(SMTPLOAD), "--sink", "--port", "0", "--cert", cert, "--key", key],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()   # "ready PORT": the readiness signal
        if not line.startswith("ready "):
            raise RuntimeError(f"smtpload --sink did not start: {line!r}")
        done, t0 = load(int(line.split()[1]), "alice", "x", "alice@example.com",
                        "bob@example.com", sessions, per)
        return done / (time.time() - t0)
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=int(os.environ.get("BENCH_SESSIONS", 20)))
    ap.add_argument("--per", type=int, default=int(os.environ.get("BENCH_PER", 100)))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_smtpd: needs root (Postfix)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="smtpd-bench-"))
    try:
        global SMTPLOAD
        binary = work / "smtpd"
        kind = build_smtpd(binary)
        SMTPLOAD = build_smtpload(work / "smtpload")
        total = a.sessions * a.per
        print(f"smtpd bench: {a.sessions} sessions x {a.per} messages of ~10 KB, STARTTLS + "
              f"AUTH, pipelined, until the last is in Maildir new/ (smtpd: {kind}; "
              f"generator: smtpload.c; load average {open('/proc/loadavg').read().split()[0]})")
        prate, prss = bench_postern(binary, a.sessions, a.per)
        print(f"  postern: {prate:7.0f} msgs/s  peak RSS {prss / 1024:6.1f} MiB (1 process)")
        frate, frss = bench_postfix(a.sessions, a.per)
        print(f"  postfix: {frate:7.0f} msgs/s  peak RSS {frss / 1024:6.1f} MiB (all processes)")
        print(f"  ratio postern/postfix: {prate / frate:.2f}x  ({total} messages each)")
        cert = work / "null.crt"
        key = work / "null.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-keyout", str(key),
                        "-out", str(cert), "-subj", "/CN=localhost"], check=True,
                       capture_output=True)
        nrate = bench_null(a.sessions, a.per, str(cert), str(key))
        print(f"  load generator ceiling (smtpload against its null sink): {nrate:7.0f} msgs/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
