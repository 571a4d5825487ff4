"""The benchmark's load generator (tests/bench/smtpload.c) in the normal
test run, small: concurrent pipelined STARTTLS + AUTH sessions against
smtpd, where every message must arrive once and whole (a quick version of
bench_smtpd.py, no timing), and against its own null sink (the ceiling
path of the benchmark)."""
import pathlib
import subprocess
import sys

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "integration" / "peers" / "smtpd"))
from smtpd_box import SmtpdBox, USERS  # noqa: E402

SESSIONS, PER = 6, 15
BODY_LINE = b"x" * 76 + b"\r\n"


@pytest.fixture(scope="module")
def smtpload(tmp_path_factory):
    out = tmp_path_factory.mktemp("smtpload") / "smtpload"
    subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_DEFAULT_SOURCE",
                    "-D_GNU_SOURCE", "-o", str(out), str(TOP / "tests" / "bench" / "smtpload.c"),
                    "-lssl", "-lcrypto", "-lpthread"], check=True)
    return str(out)


def run_load(smtpload, port, user, password, extra=()):
    r = subprocess.run([smtpload, "--port", str(port), "--sessions", str(SESSIONS),
                        "--per", str(PER), "--user", user, "--pass", password,
                        "--from", f"{user}@example.com", "--to", "bob@example.com", *extra],
                       capture_output=True, text=True, timeout=600)
    fields = dict(kv.split("=", 1) for kv in r.stdout.split()[1:] if "=" in kv)
    return r, fields


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_pipelined_sessions_all_delivered_once(smtpload, hostbin, free_port, tls):
    box = SmtpdBox(hostbin("smtpd"), free_port(), free_port())
    try:
        box.start()
        port = box.port587 if tls == "starttls" else box.port465
        r, f = run_load(smtpload, port, "alice", USERS["alice"], ["--tls", tls])
        assert r.returncode == 0, r.stdout + r.stderr
        assert f["accepted"] == str(SESSIONS * PER) and f["failed"] == "0"
        subjects = []
        for m in box.messages("bob"):
            assert m.startswith(b"Received: "), m[:200]
            assert m.endswith(BODY_LINE) and m.count(BODY_LINE) == 130, "message not whole"
            subjects.append(m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode())
        assert sorted(subjects) == sorted(f"bench {n}-{i}" for n in range(SESSIONS)
                                          for i in range(PER))
    finally:
        box.cleanup()


def test_wrong_password_counts_failures(smtpload, hostbin, free_port):
    """The generator must be able to fail: nothing accepted, exit 1."""
    box = SmtpdBox(hostbin("smtpd"), free_port(), free_port())
    try:
        box.start()
        r, f = run_load(smtpload, box.port587, "alice", "wrong")
        assert r.returncode == 1
        assert f["accepted"] == "0" and f["failed"] == str(SESSIONS * PER)
        assert "AUTH: got 535" in r.stderr or "AUTH: got 454" in r.stderr, r.stderr
        assert box.messages("bob") == []
    finally:
        box.cleanup()


def test_sink(smtpload, tmp_path):
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(crt), "-subj", "/CN=localhost"], check=True, capture_output=True)
    p = subprocess.Popen([smtpload, "--sink", "--port", "0", "--cert", str(crt), "--key",
                          str(key)], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()   # "ready PORT": its readiness signal
        assert line.startswith("ready "), line
        r, f = run_load(smtpload, int(line.split()[1]), "alice", "x")
        assert r.returncode == 0, r.stderr
        assert f["accepted"] == str(SESSIONS * PER)
    finally:
        p.terminate()
        p.wait()
