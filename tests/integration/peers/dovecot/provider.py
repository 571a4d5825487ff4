"""A private Dovecot POP3 server on loopback acting as the hosting provider
(adapted from the shared peers recipe: dovecot.conf.in beside this file;
the instance itself is dovecot_base.py, shared with imap_peer.py).

    prov = Dovecot(); prov.add_user("alice", "alicepass")
    prov.seed("alice", [b"Subject: x\\n\\nbody\\n"]); prov.start(port_stls, port_tls)
    ... prov.stored("alice") ... prov.cleanup()

STLS listens on 127.0.0.2 (clear-text logins refused, as a remote
provider), implicit TLS (POP3S) on 127.0.0.1. The certificate is
self-signed for DNS:localhost, IP:127.0.0.1, IP:127.0.0.2 (make_cert).
"""
import os
import time

from dovecot_base import HERE, DovecotInstance, make_cert, wait_port  # noqa: F401 (re-exported)

NOBODY = 65534


class Dovecot(DovecotInstance):
    def __init__(self):
        super().__init__("postern-dovecot-")

    def maildir(self, user):
        return self.dir / "mail" / user / "Maildir"

    def add_user(self, user, password):
        super().add_user(user, password)
        for sub in ("cur", "new", "tmp"):
            (self.maildir(user) / sub).mkdir(parents=True, exist_ok=True)
        self._chown(self.dir / "mail")

    def seed(self, user, messages):
        """Adds messages (bytes, LF line ends as Maildir stores them)."""
        new = self.maildir(user) / "new"
        base = len(list(new.iterdir())) + len(list((self.maildir(user) / "cur").iterdir()))
        for i, m in enumerate(messages):
            (new / f"{1700000000 + base + i}.M{base + i}P1.provider").write_bytes(m)
        self._chown(self.dir / "mail")

    def stored(self, user):
        """The messages still on the server (bytes), in name order. A Dovecot
        session left behind by a killed client may still be renaming files
        (new/ -> cur/, flag changes) while we read: list again then."""
        for _ in range(50):
            try:
                out = []
                for sub in ("new", "cur"):
                    for f in sorted((self.maildir(user) / sub).iterdir()):
                        out.append(f.read_bytes())
                return out
            except FileNotFoundError:
                time.sleep(0.05)
        raise AssertionError(f"{user}'s Maildir kept changing while being read")

    def _chown(self, top):
        for root, dirs, files in os.walk(top):
            for n in dirs + files:
                os.chown(os.path.join(root, n), NOBODY, NOBODY)
        os.chown(top, NOBODY, NOBODY)

    def start(self, port_stls, port_tls):
        self.port_stls, self.port_tls = port_stls, port_tls
        self._launch("dovecot.conf.in", {"@PORT_STLS@": port_stls, "@PORT_TLS@": port_tls},
                     [("127.0.0.2", port_stls), ("127.0.0.1", port_tls)])
