"""A private Dovecot IMAP server on loopback serving Maildirs in Postern's
layout (imap.conf.in beside this file; the instance itself is dovecot_base.py,
shared with provider.py): for imapd's interoperability tests
(Dovecot pointed at Postern's store) and the benchmark.

    dv = DovecotImap(mailroot, uid, gid); dv.add_user("alice", "pw")
    dv.start(port, port_tls) ... dv.cleanup()
"""
import os
import pathlib

from dovecot_base import DovecotInstance


class DovecotImap(DovecotInstance):
    def __init__(self, mailroot, uid=65534, gid=65534):
        super().__init__("postern-dovecot-imap-")
        self.mailroot, self.uid, self.gid = pathlib.Path(mailroot), uid, gid

    def add_user(self, user, password):
        super().add_user(user, password)
        home = self.dir / "home" / user
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, self.uid, self.gid)

    def start(self, port, port_tls):
        self.port, self.port_tls = port, port_tls
        self._launch("imap.conf.in", {"@MAILROOT@": self.mailroot, "@PORT@": port,
                                      "@PORT_TLS@": port_tls, "@UID@": self.uid,
                                      "@GID@": self.gid},
                     [("127.0.0.1", port), ("127.0.0.1", port_tls)])

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
