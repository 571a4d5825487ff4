"""A private Dovecot POP3 server on loopback acting as the hosting provider
(adapted from the shared peers recipe: dovecot.conf.in beside this file).

    prov = Dovecot(); prov.add_user("alice", "alicepass")
    prov.seed("alice", [b"Subject: x\\n\\nbody\\n"]); prov.start(port_stls, port_tls)
    ... prov.stored("alice") ... prov.cleanup()

STLS listens on 127.0.0.2 (clear-text logins refused, as a remote
provider), implicit TLS (POP3S) on 127.0.0.1. The certificate is
self-signed for DNS:localhost, IP:127.0.0.1, IP:127.0.0.2 (make_cert).
"""
import hashlib
import os
import pathlib
import signal
import socket
import subprocess
import shutil
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
NOBODY = 65534


def make_cert(d, name, san="DNS:localhost,IP:127.0.0.1,IP:127.0.0.2", cn="localhost"):
    """Self-signed certificate d/name.{crt,key}; returns (crt, key, spki_sha256_hex)."""
    d = pathlib.Path(d)
    d.mkdir(parents=True, exist_ok=True)
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
                    "-keyout", key, "-out", crt, "-subj", f"/CN={cn}/O=test-{name}",
                    "-addext", f"subjectAltName={san}"],
                   check=True, capture_output=True)
    pub = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-pubkey"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True).stdout
    os.chmod(key, 0o644)
    return str(crt), str(key), hashlib.sha256(der).hexdigest()


def wait_port(host, port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Dovecot:
    def __init__(self):
        # Dovecot's auth and mail processes run as other users: pytest's
        # tmp_path (under a 0700 directory) is out of their reach.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="postern-dovecot-"))
        os.chmod(self.dir, 0o755)
        self.users = {}
        self.proc = None
        self.crt, self.key, self.pin = make_cert(self.dir, "dovecot")
        os.chown(self.key, 0, 0)
        os.chmod(self.key, 0o600)

    def maildir(self, user):
        return self.dir / "mail" / user / "Maildir"

    def add_user(self, user, password):
        self.users[user] = password
        (self.dir / "users").write_text(
            "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self.users.items()))
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
        conf = (HERE / "dovecot.conf.in").read_text()
        conf = (conf.replace("@DIR@", str(self.dir)).replace("@PORT_STLS@", str(port_stls))
                .replace("@PORT_TLS@", str(port_tls)))
        (self.dir / "dovecot.conf").write_text(conf)
        (self.dir / "state").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(self.dir / "dovecot.conf")],
                                     stdout=open(self.dir / "stdout.log", "wb"),
                                     stderr=subprocess.STDOUT)
        ok = wait_port("127.0.0.2", port_stls) and wait_port("127.0.0.1", port_tls)
        if not ok:
            self.stop()
            raise RuntimeError("dovecot did not start:\n" + self.log())

    def log(self):
        p = self.dir / "dovecot.log"
        return p.read_text(errors="replace") if p.exists() else ""

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
