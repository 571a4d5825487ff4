"""A private Postfix on loopback acting as the provider's smart host
(adapted from the shared peers recipe: main.cf.in / master.cf.in beside
this file).

    ca = RelayCA(dir)                    # a CA and certificates it signs
    pf = Postfix(ca); pf.start(port_starttls, port_tls)
    ... pf.sink() -> list of (path, bytes) ... pf.stop()

STARTTLS+AUTH (relay / relaypass, cyrus sasldb) on port_starttls, implicit
TLS on port_tls; AUTH is offered only after TLS. Every accepted message is
delivered into DIR/mail/sink/new with Return-Path: <envelope sender> and
Delivered-To: <recipient>.
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
NOBODY = 65534
USER, PASSWORD = "relay", "relaypass"


def _run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, **kw)


def spki_pin(crt):
    pub = _run("openssl", "x509", "-in", crt, "-noout", "-pubkey").stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


class RelayCA:
    """An EC CA in d and leaf certificates signed by it (or self-signed)."""

    def __init__(self, d):
        self.dir = pathlib.Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.crt, self.key = self.dir / "ca.crt", self.dir / "ca.key"
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-keyout", self.key,
             "-out", self.crt, "-subj", "/CN=Relay Test CA")

    def leaf(self, name, dns="localhost", self_signed=False):
        """d/name.{crt,key} for DNS:dns + IP:127.0.0.1; returns (crt, key, pin)."""
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        san = f"subjectAltName=DNS:{dns},IP:127.0.0.1"
        if self_signed:
            _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-keyout", key,
                 "-out", crt, "-subj", f"/CN={dns}", "-addext", san)
        else:
            csr = self.dir / f"{name}.csr"
            ext = self.dir / f"{name}.ext"
            ext.write_text(san + "\n")
            _run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                 "-subj", f"/CN={dns}")
            _run("openssl", "x509", "-req", "-in", csr, "-CA", self.crt, "-CAkey", self.key,
                 "-CAcreateserial", "-days", "30", "-out", crt, "-extfile", ext)
        return str(crt), str(key), spki_pin(crt)


def _override(text, extra):
    """main.cf text with extra's settings in place of the same parameters
    in text. A parameter given twice makes every Postfix process log
    "overriding earlier entry"; postlogd then logs that to itself through
    its own datagram socket and, once the socket is full, blocks for good,
    and with it every process that logs (smtpd before its greeting, pickup,
    qmgr): the hang that the relay benchmark's Postfix half used to show."""
    keys = {line.split("=", 1)[0].strip() for line in extra.splitlines()
            if "=" in line and not line.lstrip().startswith("#")}
    kept, dropping = [], False
    for line in text.splitlines():
        if line[:1] in (" ", "\t"):   # a continuation line
            if not dropping:
                kept.append(line)
            continue
        dropping = "=" in line and not line.startswith("#") and \
            line.split("=", 1)[0].strip() in keys
        if not dropping:
            kept.append(line)
    return "\n".join(kept) + "\n"


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _alive(pid):
    """True while pid runs (a zombie counts as gone: PID 1 reaps slowly)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Postfix:
    def __init__(self, ca, extra=""):
        # Postfix's own processes run as postfix/nobody: not under pytest's
        # 0700 tmp directories.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="postern-postfix-"))
        os.chmod(self.dir, 0o755)
        self.ca = ca
        self.extra = extra
        self.running = False

    def _setup(self, port_starttls, port_tls):
        etc = self.dir / "etc"
        (etc / "sasl").mkdir(parents=True)
        for sub in ("queue", "data", "mail"):
            (self.dir / sub).mkdir()
        shutil.chown(self.dir / "data", "postfix")
        os.chown(self.dir / "mail", NOBODY, NOBODY)
        subst = {"@DIR@": str(self.dir), "@PORT_STARTTLS@": str(port_starttls),
                 "@PORT_TLS@": str(port_tls), "@EXTRA@": self.extra}
        for name in ("main.cf", "master.cf"):
            text = (HERE / f"{name}.in").read_text()
            if name == "main.cf":
                text = _override(text, self.extra)
            for k, v in subst.items():
                text = text.replace(k, v)
            (etc / name).write_text(text)
        (etc / "vdomains.regexp").write_text("/^[A-Za-z0-9-][A-Za-z0-9.-]*$/ OK\n")
        (etc / "sasl" / "smtpd.conf").write_text(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
            f"sasldb_path: {etc}/sasl/sasldb2\n")
        subprocess.run(["saslpasswd2", "-p", "-c", "-f", str(etc / "sasl" / "sasldb2"),
                        "-u", "provider.test", USER], input=PASSWORD.encode(), check=True)
        shutil.chown(etc / "sasl" / "sasldb2", "root", "postfix")
        os.chmod(etc / "sasl" / "sasldb2", 0o640)
        crt, key, self.pin = self.ca.leaf("postfix")
        shutil.copy(crt, etc / "server.crt")
        shutil.copy(key, etc / "server.key")
        shutil.copy(self.ca.crt, etc / "ca.crt")
        os.chmod(etc / "server.key", 0o600)

    def prepare(self, port_starttls, port_tls):
        """Writes the configuration and creates the queue (`postfix check`)
        without starting: mail may then be dropped in with sendmail -C."""
        self.port_starttls, self.port_tls = port_starttls, port_tls
        self._setup(port_starttls, port_tls)
        self.postfix("check")
        self.prepared = True

    def start(self, port_starttls, port_tls):
        if not getattr(self, "prepared", False):
            self.prepare(port_starttls, port_tls)
        r = self.postfix("start")
        if r.returncode != 0 or not (wait_port(port_starttls) and wait_port(port_tls)):
            self.stop()
            raise RuntimeError(f"postfix did not start: {r.stdout!r}\n{self.log()}")
        self.running = True

    def postfix(self, *args, timeout=60):
        try:
            return subprocess.run(["postfix", "-c", str(self.dir / "etc"), *args],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 1, str(e.stdout), "timed out")

    def log(self):
        p = self.dir / "maillog"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""

    def sink(self):
        """Delivered messages: [(name, bytes)], by name."""
        out = []
        new = self.dir / "mail" / "sink" / "new"
        if new.exists():
            for f in sorted(new.iterdir()):
                try:
                    out.append((f.name, f.read_bytes()))
                except FileNotFoundError:
                    pass
        return out

    def wait_sink(self, count, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            got = self.sink()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.sink()

    def _master_pid(self):
        try:
            return int((self.dir / "queue" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        if self.running:
            pid = self._master_pid()
            self.postfix("stop", timeout=20)
            # The master's pid file outlives it: wait for the ports to close.
            end = time.time() + 10
            while time.time() < end and (_listening(self.port_starttls) or
                                         (pid and _alive(pid))):
                time.sleep(0.05)
            if pid and _alive(pid):
                # A master that did not stop (it hung): ours, by its pid file.
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.running = False

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
