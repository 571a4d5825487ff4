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
                       capture_output=True, text=True, timeout=120)
    return r


def delivered(data, user="anna"):
    md = data / "mail" / user
    out = []
    for sub in ("new", "cur"):
        d = md / sub
        if d.exists():
            out += [f.read_bytes() for f in d.iterdir()]
    return sorted(out)


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
    r = fetch(hostbin, data)
    assert r.returncode == 111, r.stdout + r.stderr
    assert "does not match the pin" in r.stderr and "not sending the password" in r.stderr
    assert provider.pin in r.stderr  # names the key the server showed
    assert delivered(data) == []
    assert len(provider.stored("alice")) == 3
    assert "alice" not in provider.log().split("auth:")[-1] or "Login" not in provider.log()


def test_wrong_password(tmp_path, provider, hostbin):
    provider.seed("alice", MSGS)
    data = setup_box(tmp_path, account(provider), password="wrong")
    r = fetch(hostbin, data)
    assert r.returncode == 111
    assert "login as alice failed" in r.stderr
    assert "wrong" not in r.stderr
    assert len(provider.stored("alice")) == 3
