"""Shared fixtures for integration tests: host-built programs (make host) run
on loopback against real peers."""
import os
import pathlib
import socket

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
