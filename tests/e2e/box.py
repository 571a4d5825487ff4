"""Drives a Postern image under QEMU for end-to-end tests.

A Box boots build/<board>/postern-<board>.img through scripts/run-qemu.sh on a
private qcow2 overlay (the built image is never modified), with its own free
loopback ports, and talks to the console on QEMU's stdin/stdout:

    with Box(tmp_path) as box:
        box.wait_ready()
        out = box.sh("cat /proc/mounts")
"""
import os
import pathlib
import re
import socket
import subprocess
import sys
import threading
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
BOARD = os.environ.get("BOARD", "x86_64")
# POSTERN_IMG: boot another image (e.g. a private `make B=build/img-NAME` one).
IMG = pathlib.Path(os.environ.get("POSTERN_IMG") or TOP / "build" / BOARD / f"postern-{BOARD}.img")
READY = "postern: ready"
BOOT_TIMEOUT = float(os.environ.get("POSTERN_BOOT_TIMEOUT", "300"))
PORTS = ("SMTP", "SMTPS", "IMAP", "IMAPS", "HTTPS", "HTTP", "DNS")


def free_port():
    """A TCP port free on 127.0.0.1 whose UDP twin is free as well."""
    while True:
        with socket.socket() as t, socket.socket(type=socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def lan_net_of(conf):
    """"a.b.c.0/24" for the [lan] address of a configuration text when it is
    a /24, else None (run-qemu.sh's default LAN)."""
    section = ""
    for line in conf.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[] ")
        elif section == "lan" and line.split()[:1] == ["address"]:
            m = re.fullmatch(r"(\d+\.\d+\.\d+)\.\d+/24", line.split()[1])
            return f"{m.group(1)}.0/24" if m else None
    return None


class Box:
    def __init__(self, workdir, firmware="bios", provision=None, disk=None,
                 extra="", name="box", lan_netdev=None, wan_netdev=None, pass_fds=(),
                 wan_guestfwd=()):
        """lan_netdev: the LAN NIC's QEMU -netdev (id=lan) instead of user
        networking, e.g. "tap,id=lan,fd=N" with N in pass_fds. Otherwise the
        user-network LAN follows the provisioned [lan] address (a /24;
        default 192.168.10.0/24) so the forwarded ports reach the box."""
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.firmware = firmware
        self.provision = provision
        self.disk = pathlib.Path(disk) if disk else self.workdir / f"{name}.qcow2"
        self.extra = extra
        self.lan_netdev = lan_netdev
        self.wan_netdev = wan_netdev
        # ["tcp:10.0.2.100:587-tcp:127.0.0.1:PORT", ...]: the box's WAN
        # connections to a guest address reach a host loopback port.
        self.wan_guestfwd = tuple(wan_guestfwd)
        self.pass_fds = tuple(pass_fds)
        self.ports = {p: free_port() for p in PORTS}
        self.log_path = self.workdir / f"{name}-console.log"
        self.proc = None
        self._buf = ""
        self._pos = 0
        self._cond = threading.Condition()
        self._seq = 0

    # -- life cycle -----------------------------------------------------------
    def start(self):
        if not self.disk.exists():
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                            "-b", str(IMG.resolve()), str(self.disk), "1G"],
                           check=True)
        env = dict(os.environ, DISK=str(self.disk), FIRMWARE=self.firmware,
                   QEMU_EXTRA=self.extra,
                   RUN_DIR=str(self.workdir))
        for p, v in self.ports.items():
            env[f"PORT_{p}"] = str(v)
        if self.provision:
            env["PROVISION"] = str(self.provision)
            net = lan_net_of(pathlib.Path(self.provision).read_text(errors="replace"))
            if net:
                env["LAN_NET"] = net
        if self.lan_netdev:
            env["LAN_NETDEV"] = self.lan_netdev
        if self.wan_netdev:
            env["WAN_NETDEV"] = self.wan_netdev
        if self.wan_guestfwd:
            env["WAN_GUESTFWD"] = " ".join(self.wan_guestfwd)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [str(TOP / "scripts" / "run-qemu.sh"), str(IMG)], cwd=TOP, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, pass_fds=self.pass_fds)
        self._log = open(self.log_path, "w", errors="replace")
        threading.Thread(target=self._reader, daemon=True).start()
        return self

    def _reader(self):
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 4096)
            if not data:
                break
            text = data.decode("utf-8", "replace").replace("\r", "")
            self._log.write(text)
            self._log.flush()
            with self._cond:
                self._buf += text
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.proc:
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.report()
        self.stop()

    def report(self):
        """After a failing test: the box's own view (its load and uptime,
        the tail of its log) on stderr, which pytest prints with the
        failure; the console log under tmp_path is gone by the time CI
        shows the output."""
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            out = self.sh("cat /proc/loadavg /proc/uptime; tail -n 80 /data/log/messages",
                          timeout=60, check=False)
        except Exception as e:   # noqa: BLE001 - the console may be stuck too
            out = f"(the console did not answer: {e})"
        sys.stderr.write(f"\n--- the box after the failure (host load {os.getloadavg()}, "
                         f"console log {self.log_path}) ---\n{out}\n")

    # -- console --------------------------------------------------------------
    def expect(self, pattern, timeout=60):
        """Waits for a regex in console output after what was already matched;
        returns the match. Raises with the console tail on timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self._buf, self._pos)
                if m:
                    self._pos = m.end()
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not m):
                    tail = self._buf[-3000:]
                    raise AssertionError(
                        f"console: no /{pattern}/ within {timeout}s "
                        f"(qemu exit {self.proc.poll()}); log {self.log_path}; tail:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def wait_ready(self, timeout=BOOT_TIMEOUT):
        self.expect(re.escape(READY), timeout)
        self.ready_after = time.monotonic() - self.t0
        self.write("\n")
        self.expect(r"[#$] ", 30)
        self.sh("dmesg -n 1")  # keep kernel messages out of command output
        return self.ready_after

    def write(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def sh(self, cmd, timeout=60, check=True):
        """Runs a shell command on the console; returns its output. The markers
        are split in the typed text so the terminal echo never matches them."""
        self._seq += 1
        n = self._seq
        self.write(f"echo '@@B'{n}'@@'; {cmd}; echo '@@E'{n}'@@' $?\n")
        self.expect(f"@@B{n}@@\n", timeout)
        m = self.expect(rf"@@E{n}@@ (\d+)\n", timeout)
        out = self._buf[:m.start()]
        out = out[out.rfind(f"@@B{n}@@\n") + len(f"@@B{n}@@\n"):]
        rc = int(m.group(1))
        if check and rc != 0:
            raise AssertionError(f"`{cmd}` exited {rc}:\n{out}")
        return out
