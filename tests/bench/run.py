#!/usr/bin/python3
"""`make bench`: measured figures for docs/PERFORMANCE.md.

Boot: time from QEMU start to `postern: ready` under TCG (SeaBIOS and OVMF),
and the booted box's idle memory use (MemTotal - MemAvailable, and the
resident set of every process) ten seconds after ready. Later issues add
their daemons' benchmarks (each against its peer, printed as ratios).
"""
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from box import Box, IMG  # noqa: E402


def boot_figures(firmware, runs):
    times, mem = [], None
    for i in range(runs):
        with tempfile.TemporaryDirectory() as d, Box(d, firmware=firmware) as box:
            times.append(box.wait_ready())
            if mem is None:
                time.sleep(10)
                info = box.sh("cat /proc/meminfo")
                kv = dict(re.findall(r"^(\w+):\s+(\d+) kB", info, re.M))
                used = int(kv["MemTotal"]) - int(kv["MemAvailable"])
                rss = box.sh("for p in /proc/[0-9]*; do awk '/^VmRSS/{s+=$2} END{print s+0}' $p/status 2>/dev/null; done | awk '{s+=$1} END{print s}'")
                mem = (used, int(kv["MemTotal"]), int(rss.strip() or 0))
    return times, mem


def daemon_benches():
    """Each daemon's benchmark against its peer, in this same run."""
    here = pathlib.Path(__file__).resolve().parent
    for script, args in (("bench_smtpd.py", ["--sessions", "20", "--per", "100"]),
                         ("bench_fetch.py", ["--messages", "1000"]),
                         ("bench_dns.py", ["--seconds", "10", "--records", "100000"]),
                         ("bench_imap.py", ["--clients", "4", "--seconds", "15", "--idle", "1000"]),
                         ("bench_relay.py", ["--messages", "500"])):
        print(f"== {script} {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, str(here / script), *args], check=False)


def main():
    print(f"image: {IMG.resolve().name} ({IMG.resolve().stat().st_size // 1024} KiB)")
    kernel = IMG.parent / "kernel"
    rootfs = IMG.parent / "rootfs.cpio.gz"
    print(f"kernel: {kernel.stat().st_size // 1024} KiB, rootfs.cpio.gz: {rootfs.stat().st_size // 1024} KiB")
    runs = int(os.environ.get("BENCH_BOOTS", "3"))
    for fw in ("bios", "uefi"):
        times, (used, total, rss) = boot_figures(fw, runs if fw == "bios" else 1)
        first, rest = times[0], times[1:]
        print(f"boot-to-ready {fw} (TCG): first boot {first:.1f} s"
              + (f", median of the other runs {sorted(rest)[len(rest) // 2]:.1f} s" if rest else "")
              + f" (runs: {', '.join(f'{t:.1f}' for t in times)})")
        print(f"idle memory {fw}: {used // 1024} MiB used of {total // 1024} MiB "
              f"(MemTotal-MemAvailable), processes' RSS sum {rss // 1024} MiB")
    daemon_benches()


if __name__ == "__main__":
    main()
