"""Shared fixtures for integration tests: host-built programs (make host) run
on loopback against real peers."""
import os
import pathlib
import shutil
import socket
import sys
import tempfile

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
HB = TOP / os.environ.get("HB", "build/host")


@pytest.fixture
def hostbin():
    """Path of a host-built program: hostbin('postern')."""
    def path(name):
        p = HB / "bin" / name
        assert p.exists(), f"{p} is missing: run `make host`"
        return str(p)
    return path


@pytest.fixture
def free_port():
    def get():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return get


@pytest.fixture
def work():
    """A private directory outside /tmp/pytest-of-root, for daemons that run
    as nobody: a second pytest run resets that directory to 0700 when it
    starts."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="work-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def provider(free_port):
    """A private Dovecot as the provider's POP3 server (STLS and POP3S),
    with the user alice (password alice-secret)."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dovecot"))
    from provider import Dovecot
    prov = Dovecot()
    prov.add_user("alice", "alice-secret")
    prov.start(free_port(), free_port())
    yield prov
    prov.cleanup()
