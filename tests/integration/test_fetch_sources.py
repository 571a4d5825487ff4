"""The pinned-source fetcher refuses what it cannot verify and names the
version the mirror serves when a pin has gone (Debian drops superseded
versions after security updates)."""
import os
import pathlib
import subprocess

TOP = pathlib.Path(__file__).resolve().parents[2]
FETCH = TOP / "scripts" / "fetch-sources.sh"


def run(tmp_path, pins, sums="", *args):
    (tmp_path / "pins").write_text(pins)
    (tmp_path / "sums").write_text(sums)
    env = dict(os.environ, POSTERN_PINS=str(tmp_path / "pins"),
               POSTERN_SUMS=str(tmp_path / "sums"),
               POSTERN_CACHE=str(tmp_path / "cache"))
    return subprocess.run([str(FETCH), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_missing_version_names_the_available_one(tmp_path):
    r = run(tmp_path, "src musl 0.0.1-1\n", "", "musl")
    assert r.returncode != 0
    assert "musl 0.0.1-1 is no longer on the mirror" in r.stderr
    assert "1.2.3-1" in r.stderr, r.stderr
    assert "--bump" in r.stderr


def test_checksum_mismatch_is_refused(tmp_path):
    real = (TOP / "scripts" / "sha256sums").read_text().splitlines()
    bad = "\n".join(("0" * 64 + line[64:]) if "ca-certificates" in line else line
                    for line in real) + "\n"
    pin = [l for l in (TOP / "scripts" / "pins").read_text().splitlines()
           if l.startswith("deb ca-certificates ")][0]
    r = run(tmp_path, pin + "\n", bad, "ca-certificates")
    assert r.returncode != 0
    assert "checksum mismatch for ca-certificates_" in r.stderr, r.stderr
    assert not (tmp_path / "cache" / "src").exists() or not any(
        (tmp_path / "cache" / "src").iterdir())
