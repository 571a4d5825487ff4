"""Runs every C unit-test program (tests/unit/test_*.c, built by `make host`
with ASan+UBSan into build/host/tests/) as one pytest case each."""
import os
import pathlib
import subprocess

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
HB = TOP / os.environ.get("HB", "build/host")
SOURCES = sorted((TOP / "tests" / "unit").glob("test_*.c"))


@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_c_unit(src, tmp_path):
    exe = HB / "tests" / src.stem
    assert exe.exists(), f"{exe} is missing: run `make host`"
    env = dict(os.environ, TMPDIR=str(tmp_path),
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    r = subprocess.run([str(exe)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"{src.name} failed:\n{r.stdout}\n{r.stderr}"
