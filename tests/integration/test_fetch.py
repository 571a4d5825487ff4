"""fetchd (the POP3 fetcher) against a private Dovecot on loopback, the
hosting provider (tests/integration/peers/dovecot/): STLS (on 127.0.0.2,
where Dovecot refuses clear-text logins) and implicit TLS, with a pin and
with a CA bundle + host name. Every message must arrive byte-identical in
the right Maildir, and be deleted from the server only in delete mode."""
import os
import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dovecot"))
from provider import Dovecot  # noqa: E402
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "smtpd"))
from privs import drop_args  # noqa: E402

MSGS = [
    b"From: a@remote.test\nTo: alice@provider.test\nSubject: one\n"
    b"Message-ID: <1@remote.test>\n\nHello.\n.leading dot\n..two dots\n.\nend\n",
    b"From: b@remote.test\nSubject: two\nMessage-ID: <2@remote.test>\n\n" + b"x" * 5000 + b"\n",
    b"Subject: three, binary\n\n" + bytes(range(1, 10)) + b"\xff\xfe\n\n\nlast\n",
]


def big_message(n):
    lines = [b"Subject: big\nMessage-ID: <big@remote.test>\n\n"]
    for i in range(n // 77):
        lines.append(b".%075d\n" % i)
    return b"".join(lines)


@pytest.fixture
def provider(tmp_path, free_port):
    prov = Dovecot()
    prov.add_user("alice", "alice-secret")
    prov.start(free_port(), free_port())
    yield prov
    prov.cleanup()


def setup_box(tmp_path, account_lines, password="alice-secret"):
    data = tmp_path / "data"
    for d in ("etc", "secrets", "mail", "fetch"):
        (data / d).mkdir(parents=True, exist_ok=True)
    (data / "secrets" / "acme.pass").write_text(password + "\n")
    os.chmod(data / "secrets" / "acme.pass", 0o600)
    conf = "mail-domain example.com\n\n[account acme]\n" + "".join(
        f"{k} {v}\n" for k, v in account_lines.items())
    (data / "etc" / "postern.conf").write_text(conf)
    return data


def account(prov, **kw):
    a = {"server": "127.0.0.2", "port": prov.port_stls, "tls": "stls", "verify": "pin",
         "pin": prov.pin, "user": "alice", "password-file": "acme.pass",
         "deliver-to": "anna"}
    a.update(kw)
    return a


def fetch(hostbin, data, *args):
    r = subprocess.run([hostbin("fetchd"), "--once", "-d", str(data), *drop_args(data), *args],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, POSTERN_STATUS_DIR=str(data.parent / "status")))
    return r


def delivered(data, user="anna"):
    md = data / "mail" / user
    out = []
    for sub in ("new", "cur"):
        d = md / sub
        if d.exists():
            out += [f.read_bytes() for f in d.iterdir()]
    return sorted(out)


def log_after(provider, start, text, timeout=20):
    """Dovecot's log from offset start, once it holds text (its log
    process writes a moment after the connection ended) or the deadline
    passed."""
    import time
    end = time.monotonic() + timeout
    while text not in provider.log()[start:] and time.monotonic() < end:
        time.sleep(0.05)
    return provider.log()[start:]


def test_stls_pin_delete_mode(tmp_path, provider, hostbin):
    provider.seed("alice", MSGS)
    data = setup_box(tmp_path, account(provider))
    r = fetch(hostbin, data)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 fetched" in r.stdout and "3 deleted" in r.stdout, r.stdout
    assert delivered(data) == sorted(MSGS)
    assert provider.stored("alice") == []
    assert len((data / "fetch" / "acme" / "uidls").read_text().split()) == 2 + 3
    # Nothing more the second time; the UIDL store is pruned to what the
    # server still lists: nothing.
    r = fetch(hostbin, data)
    assert r.returncode == 0 and "0 fetched" in r.stdout, r.stdout + r.stderr
    assert delivered(data) == sorted(MSGS)
    assert (data / "fetch" / "acme" / "uidls").read_text() == "postern-uidl 1\n"


def test_implicit_tls_ca_keep_mode(tmp_path, provider, hostbin):
    provider.seed("alice", MSGS)
    big = big_message(3 * 1024 * 1024)
    provider.seed("alice", [big])
    data = setup_box(tmp_path, account(provider, server="localhost", port=provider.port_tls,
                                       tls="implicit", verify="ca", pin="",
                                       **{"ca-file": provider.crt, "keep": "yes"}))
    (data / "etc" / "postern.conf").write_text(
        (data / "etc" / "postern.conf").read_text().replace("pin \n", ""))
    r = fetch(hostbin, data)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 fetched" in r.stdout and "0 deleted" in r.stdout, r.stdout
    assert delivered(data) == sorted(MSGS + [big])
    assert len(provider.stored("alice")) == 4
    # Keep mode: delivered once, even across runs.
    r = fetch(hostbin, data)
    assert r.returncode == 0 and "0 fetched" in r.stdout and "4 delivered before" in r.stdout
    assert delivered(data) == sorted(MSGS + [big])
    # A new message arrives: only it is fetched.
    provider.seed("alice", [b"Subject: four\n\nnew\n"])
    r = fetch(hostbin, data)
    assert "1 fetched" in r.stdout, r.stdout + r.stderr
    assert len(delivered(data)) == 5


def test_max_size_left_on_server(tmp_path, provider, hostbin):
    provider.seed("alice", [MSGS[0], big_message(200000)])
    data = setup_box(tmp_path, account(provider, **{"max-size": "100K"}))
    r = fetch(hostbin, data)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 fetched" in r.stdout and "1 too large" in r.stdout, r.stdout
    assert delivered(data) == [MSGS[0]]
    assert len(provider.stored("alice")) == 1


def test_wrong_pin_no_login(tmp_path, provider, hostbin):
    provider.seed("alice", MSGS)
    data = setup_box(tmp_path, account(provider, pin="00" * 32))
    start = len(provider.log())
    r = fetch(hostbin, data)
    assert r.returncode == 111, r.stdout + r.stderr
    assert "does not match the pin" in r.stderr and "not sending the password" in r.stderr
    assert provider.pin in r.stderr  # names the key the server showed
    assert delivered(data) == []
    assert len(provider.stored("alice")) == 3
    # What Dovecot saw (auth_debug logs every AUTH it receives, as in
    # test_wrong_password): a connection that ended in the TLS handshake,
    # without any authentication attempt.
    log = log_after(provider, start, "no auth attempts")
    assert "TLS handshaking" in log and "no auth attempts" in log, log
    assert "client in: AUTH" not in log and "user=<alice>" not in log, log


def test_wrong_password(tmp_path, provider, hostbin):
    provider.seed("alice", MSGS)
    data = setup_box(tmp_path, account(provider), password="Wr0ng-pa55-xyzzy")
    start = len(provider.log())
    r = fetch(hostbin, data)
    assert r.returncode == 111
    # the control for test_wrong_pin_no_login: here Dovecot saw the attempt
    assert "client in: AUTH" in log_after(provider, start, "client in: AUTH")
    assert "login as alice failed" in r.stderr
    assert "Wr0ng-pa55-xyzzy" not in r.stderr + r.stdout
    assert len(provider.stored("alice")) == 3


def has_user(name):
    import pwd
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_postern_fetch_by_hand(work, provider, hostbin):
    """`postern fetch [ACCOUNT]` runs one poll through fetchd --once (found
    on PATH, as on the box: here a wrapper naming the data directory and
    the user to become) and prints what it did, per account."""
    provider.seed("alice", MSGS[:2])
    data = setup_box(work, account(provider))
    conf = data / "etc" / "postern.conf"
    conf.write_text(conf.read_text() + "\n[account dead]\nserver 127.0.0.1\nport 1\n"
                    "tls implicit\nverify pin\npin " + "00" * 32 + "\nuser x\n"
                    "password-file acme.pass\ndeliver-to anna\n")
    args = drop_args(data)
    bindir = work / "bin"
    bindir.mkdir()
    # (the wrapper's own options come last: they win over postern's -u
    # fetchd, a user the host may have, to whom data does not belong)
    (bindir / "fetchd").write_text(
        f'#!/bin/sh\necho "$@" >> {work}/argv\n'
        f'exec {hostbin("fetchd")} "$@" -d {data} {" ".join(args)}\n')
    (bindir / "fetchd").chmod(0o755)
    status = work / "status"
    status.mkdir(mode=0o777)
    status.chmod(0o777)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", POSTERN_STATUS_DIR=str(status))
    r = subprocess.run([hostbin("postern"), "fetch", "acme"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("acme: ok: 2 on the server, 2 fetched"), r.stdout
    assert "2 deleted" in r.stdout and "dead" not in r.stdout + r.stderr
    assert delivered(data) == sorted(MSGS[:2]) and provider.stored("alice") == []
    argv = (work / "argv").read_text().split()
    want = ["--once", "-u", "fetchd", "acme"] if os.geteuid() == 0 and has_user("fetchd") \
        else ["--once", "acme"]
    assert argv == want, argv
    # Every account: the dead one fails (temporary), the summary says so.
    r = subprocess.run([hostbin("postern"), "fetch"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 111, r.stdout + r.stderr
    assert "acme: ok: 0 on the server" in r.stdout, r.stdout
    assert "dead" in r.stdout + r.stderr, r.stdout + r.stderr
    assert subprocess.run([hostbin("postern"), "fetch", "-x"], capture_output=True,
                          env=env).returncode == 1


PEAK_RSS = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(r.stdout)
sys.stderr.write(r.stderr)
print("peak-rss-kib %d" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r.returncode)
"""


def test_huge_message_streamed(work, provider, hostbin):
    """A 40 MB message arrives byte-identical while fetchd's peak RSS
    stays far below its size: RETR is streamed to disk, never held whole
    in memory (the ASan build's own overhead included)."""
    big = big_message(40 * 1024 * 1024)
    provider.seed("alice", [big])
    data = setup_box(work, account(provider, **{"max-size": "100M"}))
    # (a wrapper whose only child is fetchd measures fetchd's peak RSS)
    r = subprocess.run(["/usr/bin/python3", "-c", PEAK_RSS, hostbin("fetchd"), "--once",
                        "-d", str(data), *drop_args(data)], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, POSTERN_STATUS_DIR=str(work / "st")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 fetched" in r.stdout, r.stdout
    got = delivered(data)
    assert len(got) == 1 and got[0] == big
    assert provider.stored("alice") == []
    peak_mib = int(r.stdout.split("peak-rss-kib ")[1]) / 1024
    print(f"fetchd peak RSS {peak_mib:.1f} MiB for a 40 MiB message")
    assert peak_mib < 30, f"peak RSS {peak_mib:.1f} MiB for a 40 MiB message"
