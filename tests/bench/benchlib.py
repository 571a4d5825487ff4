"""What the benchmarks share: building a daemon the way the firmware runs it."""
import os
import pathlib
import subprocess

TOP = pathlib.Path(__file__).resolve().parents[2]


def build_daemon(name, out):
    """src/lib + src/NAME without sanitizers, into out: static musl -O2 like
    the firmware when the target toolchain is built, else gcc -O2 against
    the host BearSSL. Returns which of the two it was, for the report."""
    src = [str(p) for p in sorted((TOP / "src" / "lib").glob("*.c"))
           + sorted((TOP / "src" / name).glob("*.c"))]
    tp = TOP / "build" / "x86_64" / "third-party"
    musl = tp / "musl" / "bin" / "musl-gcc"
    flags = ["-std=c11", "-O2", "-D_DEFAULT_SOURCE", "-D_GNU_SOURCE", "-Isrc/lib",
             '-DPOSTERN_VERSION="bench"']
    if musl.exists() and (tp / "bearssl" / "lib").exists():
        cmd = [str(musl), *flags, f"-I{tp}/bearssl/inc", "-static", "-o", str(out), *src,
               f"-L{tp}/bearssl/lib", "-lbearssl"]
        kind = "musl static -O2"
    else:
        hb = TOP / os.environ.get("HB", "build/host") / "third-party" / "bearssl"
        cmd = ["gcc", *flags, f"-I{hb}/inc", "-o", str(out), *src, f"-L{hb}/lib", "-lbearssl",
               "-lpthread"]
        kind = "gcc -O2 (glibc)"
    subprocess.run(cmd, cwd=TOP, check=True)
    return kind
