#!/usr/bin/python3
"""Writes a reproducible initramfs: a newc cpio archive of a staging tree,
gzip-compressed, with every entry owned by root, every mtime set to
SOURCE_DATE_EPOCH, names sorted, inode numbers assigned in order, and the
device nodes the kernel needs before devtmpfs is mounted (/dev/console,
/dev/null), so building it needs no root privileges.

usage: mkcpio.py STAGING_DIR OUT.cpio.gz
"""
import gzip
import os
import stat
import sys

DEVICES = [("dev/console", stat.S_IFCHR | 0o600, 5, 1),
           ("dev/null", stat.S_IFCHR | 0o666, 1, 3)]


def header(ino, mode, nlink, mtime, size, rmaj, rmin, name):
    fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, rmaj, rmin,
              len(name) + 1, 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def pad4(n):
    return b"\0" * ((4 - n % 4) % 4)


def entry(out, ino, mode, mtime, name, data=b"", rdev=(0, 0), nlink=1):
    h = header(ino, mode, nlink, mtime, len(data), rdev[0], rdev[1], name)
    nb = name.encode() + b"\0"
    out.append(h + nb + pad4(len(h) + len(nb)) + data + pad4(len(data)))


def walk(top):
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for n in sorted(dirs + files):
            p = os.path.join(root, n)
            yield os.path.relpath(p, top), p


def main():
    top, dst = sys.argv[1], sys.argv[2]
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    out, ino = [], 0
    names = sorted(walk(top))
    have = {n for n, _ in names}
    for name, path in names:
        ino += 1
        st = os.lstat(path)
        perm = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            entry(out, ino, stat.S_IFLNK | 0o777, mtime, name,
                  os.readlink(path).encode())
        elif stat.S_ISDIR(st.st_mode):
            entry(out, ino, stat.S_IFDIR | perm, mtime, name, nlink=2)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                entry(out, ino, stat.S_IFREG | perm, mtime, name, f.read())
        else:
            sys.exit(f"mkcpio: {name}: unsupported file type")
    for name, mode, maj, mn in DEVICES:
        if name in have:
            continue
        ino += 1
        entry(out, ino, mode, mtime, name, rdev=(maj, mn))
    entry(out, 0, 0, 0, "TRAILER!!!")
    data = b"".join(out)
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0,
                           filename="") as gz:
            gz.write(data)
    os.replace(tmp, dst)


if __name__ == "__main__":
    main()
