"""A private smtpd on loopback for the integration tests: a data directory
(configuration, users with PBKDF2 hashes, Maildirs, queue), a throw-away
EC certificate, two high ports (587-style STARTTLS, 465-style implicit TLS),
and helpers to look at what arrived. Runs as `nobody` when the tests run as
root (smtpd refuses to serve as root)."""
import os
import pathlib
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import sys
import time

# tests/integration, for peers.users (also when a bench script imports this).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from peers.users import pbkdf2_hash  # noqa: E402,F401  (relaybox, test_smtpd use it)

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


class SmtpdBox:
    def __init__(self, binary, port587, port465, conf_extra="", port25=None):
        self.binary = binary
        self.port587, self.port465, self.port25 = port587, port465, port25
        # Not under pytest's 0700 tmp: the unprivileged user must reach it.
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="smtpd-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        for d in ("etc", "mail", "queue", "run", "secrets"):
            (self.data / d).mkdir(parents=True)
        (self.data / "etc" / "postern.conf").write_text(
            "hostname box\nmail-domain example.com\n" + conf_extra)
        lines = [f"user {u} user {pbkdf2_hash(p)}" for u, p in USERS.items()]
        lines += ["alias sales alice", "list team alice bob"]
        (self.data / "etc" / "users").write_text("\n".join(lines) + "\n")
        self.cert = self.data / "secrets" / "server.crt"
        self.key = self.data / "secrets" / "server.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                        "-keyout", str(self.key), "-out", str(self.cert),
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        self.run_user = None
        if os.geteuid() == 0:
            self.run_user = "nobody"
            pw = pwd.getpwnam("nobody")
            for p in [self.data, *self.data.rglob("*")]:
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.proc = None
        self.log = self.root / "smtpd.log"

    def argv(self):
        a = [self.binary, "-f", "--config", str(self.data / "etc" / "postern.conf"),
             "--users", str(self.data / "etc" / "users"),
             "--mail", str(self.data / "mail"), "--queue", str(self.data / "queue"),
             "--throttle", str(self.data / "run" / "throttle"),
             "--cert", str(self.cert), "--key", str(self.key),
             "--submission", f"127.0.0.1:{self.port587}",
             "--smtps", f"127.0.0.1:{self.port465}"]
        if self.port25:
            a += ["--smtp", f"127.0.0.1:{self.port25}"]
        if self.run_user:
            a += ["--user", self.run_user]
        return a

    def start(self):
        r, w = os.pipe()
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv() + ["--ready-fd", str(w)], pass_fds=(w,),
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
        os.close(w)
        ready = os.read(r, 16)   # readiness notification: no sleeping
        os.close(r)
        assert ready == b"\n", f"smtpd did not start:\n{self.log.read_text()}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode if self.proc else 0
        self.proc = None
        return rc

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- looking at the results ----
    def maildir(self, user):
        new = self.data / "mail" / user / "new"
        return sorted(new.iterdir()) if new.exists() else []

    def messages(self, user):
        return [p.read_bytes() for p in self.maildir(user)]

    def queued(self):
        """{id: (envelope text, message bytes)}"""
        env = self.data / "queue" / "env"
        out = {}
        for p in sorted(env.iterdir()) if env.exists() else []:
            if not p.name.startswith("."):
                out[p.name] = (p.read_text(),
                               (self.data / "queue" / "msg" / p.name).read_bytes())
        return out

    def wait_log(self, text, timeout=60):
        """Waits until smtpd has logged text (a readiness signal for what
        has no reply of its own, e.g. a SIGHUP), failing after timeout."""
        end = time.time() + timeout
        while text not in self.log.read_text(errors="replace"):
            assert time.time() < end, f"smtpd never logged {text!r}:\n{self.log.read_text()}"
            time.sleep(0.05)


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw:
    """A raw line client, for what smtplib will not send."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """One complete (possibly multi-line) reply as text."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise EOFError("closed; got %r" % (lines,))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] == b" ":
                return "\n".join(lines)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def starttls(self):
        assert self.buf == b"", f"clear-text bytes left before TLS: {self.buf!r}"
        self.sock = client_ctx().wrap_socket(self.sock)

    def close(self):
        self.sock.close()
