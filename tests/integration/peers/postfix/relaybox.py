"""relayd on loopback for the integration tests: a data directory (the
configuration, a users file, Maildirs, the queue, the smart-host password),
messages queued exactly as smtpd queues them (docs/QUEUE.md), and the
daemon started as `nobody` with a readiness pipe."""
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "smtpd"))
from smtpd_box import pbkdf2_hash  # noqa: E402


class RelayBox:
    def __init__(self, binary, smarthost_conf, scale=1, sessions=2):
        self.binary = binary
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="relayd-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        for d in ("etc", "mail", "queue", "secrets"):
            (self.data / d).mkdir(parents=True)
        self.q = self.data / "queue"
        for d in ("tmp", "msg", "env"):
            (self.q / d).mkdir()
        self.set_conf(smarthost_conf)
        (self.data / "etc" / "users").write_text(
            f"user alice user {pbkdf2_hash('alice-pw')}\nuser bob user {pbkdf2_hash('bob-pw')}\n")
        (self.data / "secrets" / "smarthost.pass").write_text("relaypass\n")
        os.chmod(self.data / "secrets" / "smarthost.pass", 0o600)
        self.scale, self.sessions = scale, sessions
        self.proc = None
        self.log = self.root / "relayd.log"
        self.nobody = pwd.getpwnam("nobody")

    def set_conf(self, smarthost_conf):
        (self.data / "etc" / "postern.conf").write_text(
            "hostname box\nmail-domain example.com\n\n[smarthost]\n" + smarthost_conf)

    def chown(self):
        """Everything to the daemon's user, except the secrets: as on the box
        (rootfs services, mail_permissions) the directory is root's 0711
        (relayd may open a file in it, not list it) and the password is
        root's until a test hands it over."""
        if os.geteuid() != 0:
            return
        secrets = self.data / "secrets"
        for p in [self.data, *self.data.rglob("*")]:
            if p != secrets and p.parent != secrets:
                os.chown(p, self.nobody.pw_uid, self.nobody.pw_gid)
        os.chown(secrets, 0, 0)
        os.chmod(secrets, 0o711)

    def enqueue(self, body, rcpts, sender="alice@example.com", user="alice", created=None):
        """Queues body (bytes, CRLF) for rcpts as smtpd would; returns the id."""
        created = int(created or time.time())
        qid = f"{created & 0xffffffff:08x}{secrets.randbits(32):08x}"
        tmp = self.q / "tmp" / qid
        tmp.write_bytes(body)
        os.rename(tmp, self.q / "msg" / qid)
        env = (f"postern-queue 1\nid {qid}\ncreated {created}\nuser {user}\nfrom {sender}\n"
               f"size {len(body)}\n" +
               "".join(f"rcpt pending 0 {created} {r}\n" for r in rcpts))
        t = self.q / "env" / f".{qid}.tmp-x"
        t.write_text(env)
        if os.geteuid() == 0:
            for p in (self.q / "msg" / qid, t):
                os.chown(p, self.nobody.pw_uid, self.nobody.pw_gid)
        os.rename(t, self.q / "env" / qid)
        return qid

    def queued(self):
        return sorted(p.name for p in (self.q / "env").iterdir() if not p.name.startswith("."))

    def env(self, qid):
        p = self.q / "env" / qid
        return p.read_text() if p.exists() else None

    def argv(self, once=False):
        a = [self.binary, "-f", "-d", str(self.data), "--sessions", str(self.sessions),
             "--time-scale", str(self.scale)]
        if os.geteuid() == 0:
            a += ["--user", "nobody"]
        if once:
            a.append("--once")
        return a

    def start(self):
        self.chown()
        r, w = os.pipe()
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
        self.proc = subprocess.Popen(self.argv() + ["--ready-fd", str(w)], pass_fds=(w,),
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     env=env)
        os.close(w)
        ready = os.read(r, 1)
        os.close(r)
        if ready != b"\n":
            raise RuntimeError("relayd did not start:\n" + self.logtext())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def logtext(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def maildir(self, user):
        new = self.data / "mail" / user / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []

    def wait(self, pred, timeout=30, what="condition"):
        end = time.time() + timeout
        while time.time() < end:
            v = pred()
            if v:
                return v
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"relayd exited ({self.proc.returncode}):\n" + self.logtext())
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n" + self.logtext()[-3000:])

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
