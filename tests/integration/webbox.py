"""A host-built web admin stack for tests: admind (root, unix socket, in a
private mount namespace with the image's users) and webd (HTTPS +
redirect, dropping to `nobody`) running admin.cgi, on loopback high ports
in a private directory. Used by test_web*.py."""
import http.client
import os
import pathlib
import re
import shutil
import ssl
import subprocess
import tempfile
import urllib.parse

TOP = pathlib.Path(__file__).resolve().parents[2]
HB = TOP / os.environ.get("HB", "build/host")
WEB_USER = "nobody"
SETUP_CODE = "TESTCODE42"


def box_users(argv):
    """argv run with the box's users: in a private mount namespace where
    /etc/passwd and /etc/group are the image's (rootfs/etc), bind-mounted,
    so secrets get the box's owners (fetchd 105, relayd 106) and the host's
    user database is left alone (as test_postern_cli.py does)."""
    script = 'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(TOP / "rootfs/etc/passwd"),
            str(TOP / "rootfs/etc/group"), *argv]


class WebBox:
    def __init__(self, free_port, conf=None, users=""):
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="web-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        for d in ("etc", "run", "secrets", "secrets/tls", "service", "queue", "log", "state", "mail"):
            (self.root / d).mkdir()
        self.conf = self.root / "etc/postern.conf"
        self.users = self.root / "etc/users"
        if conf is not None:
            self.conf.write_text(conf)
        self.users.write_text(users)
        self.code_file = self.root / "etc/setup-code"
        self.code_file.write_text(SETUP_CODE + "\n")
        os.chmod(self.code_file, 0o600)
        shutil.chown(self.users, group="nogroup")
        os.chmod(self.users, 0o640)
        (self.root / "run/throttle").touch()
        shutil.chown(self.root / "run/throttle", WEB_USER)
        shutil.chown(self.root / "state", WEB_USER)
        os.chmod(self.root / "state", 0o700)
        (self.root / "log/messages").write_text(
            "Nov 1 smtpd[1]: session=1 peer=192.168.10.5 ready\n"
            "Nov 1 imapd[2]: login user=<script>alert(1)</script>\n")
        self.sv_log = self.root / "sv.log"
        self.sv = self.root / "fake-sv"
        self.sv.write_text("#!/bin/sh\necho \"$@\" >> %s\n[ -n \"$HUP_PIDS\" ] && kill -HUP $HUP_PIDS\nexit 0\n"
                           % self.sv_log)
        os.chmod(self.sv, 0o755)
        for s in ("imapd", "smtpd"):
            (self.root / "service" / s / "supervise").mkdir(parents=True)
            (self.root / "service" / s / "supervise/stat").write_text("run\n")
        self.cert = self.root / "secrets/tls/server.pem"
        self.key = self.root / "secrets/tls/server.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-keyout",
                        str(self.key), "-out", str(self.cert), "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        shutil.copy(self.cert, self.root / "secrets/tls/ca.pem")
        self.port, self.port80 = free_port(), free_port()
        self.sock = self.root / "run/admind.sock"
        self.procs = []
        self.hup_pids = ""

    def _start(self, argv, name, env=None):
        r, w = os.pipe()
        log = open(self.root / f"{name}.log", "ab")
        p = subprocess.Popen(argv + ["--ready-fd", str(w)], pass_fds=(w,), stderr=log,
                             stdout=log, env=env)
        os.close(w)
        ok = os.read(r, 1)
        os.close(r)
        assert ok == b"\n", (self.root / f"{name}.log").read_text()
        self.procs.append(p)
        return p

    def start(self, admind_args=()):
        """admind_args: more admind options (e.g. --certtool, --network)."""
        env = dict(os.environ, HUP_PIDS=self.hup_pids)
        uid = int(subprocess.run(["id", "-u", WEB_USER], capture_output=True, text=True).stdout)
        self.admind = self._start(box_users([str(HB / "bin/admind"), "--socket", str(self.sock),
                                   "--allow-uid", str(uid), "--conf", str(self.conf),
                                   "--users", str(self.users), "--secrets", str(self.root / "secrets"),
                                   "--tls-dir", str(self.root / "secrets/tls"),
                                   "--setup-code", str(self.code_file),
                                   "--console", str(self.root / "console"),
                                   "--sv", str(self.sv), "--service-dir", str(self.root / "service"),
                                   "--log", str(self.root / "log/messages"),
                                   "--queue", str(self.root / "queue"),
                                   "--users-group", "nogroup", "--mail", str(self.root / "mail"),
                                   *admind_args]), "admind", env)
        wenv = dict(os.environ, POSTERN_CONF=str(self.conf), POSTERN_USERS=str(self.users),
                    POSTERN_THROTTLE=str(self.root / "run/throttle"),
                    POSTERN_WEB_STATE=str(self.root / "state"), POSTERN_ADMIND=str(self.sock),
                    POSTERN_DATA=str(self.root))
        self.webd = self._start([str(HB / "bin/webd"), "--https", f"127.0.0.1:{self.port}",
                                 "--http", f"127.0.0.1:{self.port80}",
                                 "--redirect-port", str(self.port),
                                 "--cert", str(self.cert), "--key", str(self.key),
                                 "--user", WEB_USER, "--cgi", str(HB / "web/admin.cgi"),
                                 "--www", str(TOP / "web/www")], "webd", wenv)
        return self

    def stop(self):
        for p in self.procs:
            p.terminate()
            p.wait(10)
        self.procs = []

    def log(self, name):
        return (self.root / f"{name}.log").read_text(errors="replace")


class Client:
    """A browser-like HTTPS client: cookie jar, form posts with the page's
    CSRF token."""

    def __init__(self, box, host="localhost"):
        self.box, self.host = box, host
        self.cookies = {}
        self.ctx = ssl.create_default_context(cafile=str(box.cert))

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPSConnection(self.host, self.box.port, context=self.ctx, timeout=60)
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
            body = urllib.parse.urlencode(body)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read().decode("utf-8", "replace")
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, val = v.split(";")[0].split("=", 1)
                if "Max-Age=0" in v:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = val
        c.close()
        return r, data

    def get(self, path):
        return self.request("GET", path)

    @staticmethod
    def csrf(page):
        m = re.search(r'name="csrf" value="([0-9a-f]*)"', page)
        return m.group(1) if m else ""

    def post(self, path, fields, token=True):
        if token:
            _, page = self.get(path)
            fields = dict(fields, csrf=self.csrf(page))
        return self.request("POST", path, fields)

    def login(self, user, pw):
        _, page = self.get("/login")
        return self.request("POST", "/login", {"user": user, "password": pw,
                                               "csrf": self.csrf(page)})
