"""A private Dovecot IMAP server on loopback serving Maildirs in Postern's
layout (imap.conf.in beside this file): for imapd's interoperability tests
(Dovecot pointed at Postern's store) and the benchmark.

    dv = DovecotImap(mailroot, uid, gid); dv.add_user("alice", "pw")
    dv.start(port, port_tls) ... dv.cleanup()
"""
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile

from provider import HERE, make_cert, wait_port


class DovecotImap:
    def __init__(self, mailroot, uid=65534, gid=65534):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="postern-dovecot-imap-"))
        os.chmod(self.dir, 0o755)
        self.mailroot, self.uid, self.gid = pathlib.Path(mailroot), uid, gid
        self.users = {}
        self.proc = None
        self.crt, self.key, _ = make_cert(self.dir, "dovecot")
        os.chown(self.key, 0, 0)
        os.chmod(self.key, 0o600)

    def add_user(self, user, password):
        self.users[user] = password
        (self.dir / "users").write_text(
            "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self.users.items()))
        home = self.dir / "home" / user
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, self.uid, self.gid)

    def start(self, port, port_tls):
        self.port, self.port_tls = port, port_tls
        conf = (HERE / "imap.conf.in").read_text()
        for k, v in {"@DIR@": self.dir, "@MAILROOT@": self.mailroot, "@PORT@": port,
                     "@PORT_TLS@": port_tls, "@UID@": self.uid, "@GID@": self.gid}.items():
            conf = conf.replace(k, str(v))
        (self.dir / "dovecot.conf").write_text(conf)
        (self.dir / "state").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(self.dir / "dovecot.conf")],
                                     stdout=open(self.dir / "stdout.log", "wb"),
                                     stderr=subprocess.STDOUT)
        if not (wait_port("127.0.0.1", port) and wait_port("127.0.0.1", port_tls)):
            self.stop()
            raise RuntimeError("dovecot did not start:\n" + self.log())

    def log(self):
        p = self.dir / "dovecot.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def pids(self):
        """Every process of this instance (for memory figures)."""
        out = []
        for p in pathlib.Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                cmd = (p / "cmdline").read_bytes()
                env_dir = os.readlink(p / "cwd")
            except OSError:
                continue
            if self.proc and int(p.name) == self.proc.pid:
                out.append(int(p.name))
            elif b"dovecot" in cmd and str(self.dir) in env_dir:
                out.append(int(p.name))
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
