"""One private Dovecot instance on loopback: what the provider (POP3,
provider.py) and the IMAP comparison peer (imap_peer.py) share - a
private directory reachable by Dovecot's unprivileged processes, a
self-signed certificate, the passwd-file of users, start-up from a
configuration template beside this file with a wait for its ports, the
log, stop and clean-up.
"""
import hashlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
START_TIMEOUT = 10   # seconds for each port to answer after the start
STOP_TIMEOUT = 10    # seconds for SIGTERM before SIGKILL


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


def wait_port(host, port, timeout=START_TIMEOUT):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class DovecotInstance:
    """The common part; a subclass adds its mail layout and calls
    _launch(template, substitutions, [(host, port), ...]) from start()."""

    def __init__(self, prefix):
        # Dovecot's auth and mail processes run as other users: pytest's
        # tmp_path (under a 0700 directory) is out of their reach.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(self.dir, 0o755)
        self.users = {}
        self.proc = None
        self.crt, self.key, self.pin = make_cert(self.dir, "dovecot")
        os.chown(self.key, 0, 0)
        os.chmod(self.key, 0o600)

    def add_user(self, user, password):
        """Adds user to the passwd-file (plain password, as a test peer)."""
        self.users[user] = password
        (self.dir / "users").write_text(
            "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self.users.items()))

    def _launch(self, template, subs, ports):
        """Writes dovecot.conf from template with @DIR@ and subs replaced,
        runs Dovecot in the foreground and waits until every (host, port)
        answers; stops it and raises with the log when one does not."""
        conf = (HERE / template).read_text().replace("@DIR@", str(self.dir))
        for k, v in subs.items():
            conf = conf.replace(k, str(v))
        (self.dir / "dovecot.conf").write_text(conf)
        (self.dir / "state").mkdir(exist_ok=True)
        with open(self.dir / "stdout.log", "wb") as out:
            self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(self.dir / "dovecot.conf")],
                                         stdout=out, stderr=subprocess.STDOUT)
        if not all(wait_port(h, p) for h, p in ports):
            self.stop()
            raise RuntimeError("dovecot did not start:\n" + self.log())

    def log(self):
        p = self.dir / "dovecot.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
