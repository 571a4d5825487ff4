"""Alert mails (`postern alerts check`, src/lib/alerts.h): a provider account
that fails against a real Dovecot N polls in a row, a certificate about to
expire, a stopped service and one that keeps crashing and restarting each
give exactly one mail per admin (none to other users) however often the
check runs, and one more when they clear. The dashboard shows the same
alerts as the command (one set of rules) and the restarting service's state."""
import os
import pathlib
import re
import shutil
import subprocess
import sys


HERE = pathlib.Path(__file__).resolve().parent
SVC_FINISH = HERE.parents[1] / "rootfs/usr/libexec/postern/svc-finish"
sys.path.insert(0, str(HERE / "peers" / "smtpd"))
from privs import drop_args, USER as DROP_USER  # noqa: E402
from webbox import Client, WebBox  # noqa: E402
from peers.users import pbkdf2_hash  # noqa: E402

ADMIN_PW = "Admin-pw-1"
HASH = "$pbkdf2-sha256$i=1000$MDEyMzQ1Njc4OWFiY2RlZg$" + "A" * 43   # never used to log in


def users_text():
    h = pbkdf2_hash(ADMIN_PW)
    return (f"user admin admin {h}\nuser boss admin {h}\nuser anna user {h}\n"
            f"user former admin !\n")


class Box:
    """A data directory as on the box, plus the status and service dirs."""

    def __init__(self, tmp_path, prov):
        self.data = tmp_path / "data"
        for d in ("etc", "secrets", "secrets/tls", "mail", "fetch", "queue"):
            (self.data / d).mkdir(parents=True, exist_ok=True)
        (self.data / "etc/postern.conf").write_text(
            "mail-domain example.com\n\n[account acme]\nserver 127.0.0.2\n"
            f"port {prov.port_stls}\ntls stls\nverify pin\npin {prov.pin}\nuser alice\n"
            "password-file acme.pass\ndeliver-to anna\n")
        (self.data / "etc/users").write_text(users_text())
        self.password("alice-secret")
        self.status = tmp_path / "status"
        self.status.mkdir()
        self.services = tmp_path / "service"
        for s in ("smtpd", "imapd"):
            self.service(s, "run")
        self.svc = tmp_path / "svc"                      # svc-finish's exit lines
        self.env = dict(os.environ, POSTERN_STATUS_DIR=str(self.status),
                        POSTERN_SVC_DIR=str(self.svc))
        self.env.pop("POSTERN_CONF", None)

    def password(self, pw):
        f = self.data / "secrets/acme.pass"
        f.write_text(pw + "\n")
        os.chmod(f, 0o600)

    def service(self, name, state):
        (self.services / name / "supervise").mkdir(parents=True, exist_ok=True)
        (self.services / name / "supervise/stat").write_text(state + "\n")

    def crash(self, name, code="3", sig="0"):
        """What runsv does when NAME's ./run ends: ./finish CODE SIGNAL, run
        in the service directory (the real finish helper of the image)."""
        subprocess.run([str(SVC_FINISH), code, sig], cwd=self.services / name,
                       env=self.env, check=True, timeout=30)

    def fetch(self, hostbin):
        args = drop_args(self.data)
        if os.geteuid() == 0:
            shutil.chown(self.status, DROP_USER)
        return subprocess.run([hostbin("fetchd"), "--once", "-d", str(self.data), *args],
                              capture_output=True, text=True, timeout=120, env=self.env)

    def check(self, hostbin, cmd="check"):
        r = subprocess.run([hostbin("postern"), "alerts", cmd, "--data", str(self.data),
                            "--services", str(self.services)],
                           capture_output=True, text=True, timeout=60, env=self.env)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def mails(self, user):
        out = []
        for sub in ("new", "cur"):
            d = self.data / "mail" / user / sub
            if d.exists():
                out += [f.read_bytes().decode() for f in sorted(d.iterdir())]
        return out


def subjects(box, user):
    return sorted(re.search(r"^Subject: (.*?)\r?$", m, re.M).group(1) for m in box.mails(user))


def test_fetch_failing_mails_once_per_admin(work, provider, hostbin):
    box = Box(work, provider)
    assert box.fetch(hostbin).returncode == 0
    box.password("wrong")
    for i in range(3):
        r = box.fetch(hostbin)
        assert r.returncode == 111, r.stderr
        assert f"failures={i + 1}\n" in (box.status / "fetch-acme").read_text(), \
            r.stderr + subprocess.run(f"namei -l {box.status}/fetch-acme; ls -la {box.status}",
                                      shell=True, capture_output=True, text=True).stdout
        if i < 2:                      # ALERT_FETCH_FAILURES is 3: not yet
            assert box.check(hostbin) == ""
    for _ in range(5):                 # the check runs every few minutes
        box.check(hostbin)
    want = ["[Postern] ALERT: Fetching mail for the provider account acme failed 3 times "
            "in a row: wrong user name or password."]
    assert subjects(box, "admin") == want
    assert subjects(box, "boss") == want
    assert box.mails("anna") == [] or all("[Postern]" not in m for m in box.mails("anna"))
    assert not (box.data / "mail/former").exists()       # a disabled admin gets nothing
    m = box.mails("admin")[0]
    assert "\r\nTo: admin@example.com, boss@example.com\r\n" in m
    assert "Auto-Submitted: auto-generated" in m

    assert box.fetch(hostbin).returncode == 111          # still failing: nothing new
    box.check(hostbin)
    assert len(box.mails("admin")) == 1

    box.password("alice-secret")
    assert box.fetch(hostbin).returncode == 0
    assert box.check(hostbin).startswith("mailed 2 admin(s): resolved: Fetching mail")
    for _ in range(3):
        assert box.check(hostbin) == ""
    for u in ("admin", "boss"):
        s = subjects(box, u)
        assert len(s) == 2 and s[1].startswith("[Postern] resolved: Fetching mail"), s
    state = (box.data / "etc/alerts.state").read_text()
    assert state == ""
    keys = box.data / "mail/admin/postern-keys"
    assert not keys.exists() or list(keys.iterdir()) == []    # markers forgotten


def test_cert_and_service_alerts(work, provider, hostbin):
    box = Box(work, provider)
    cert = box.data / "secrets/tls/server.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "5", "-keyout",
                    str(work / "k.pem"), "-out", str(cert), "-subj", "/CN=postern"],
                   check=True, capture_output=True)
    box.service("imapd", "down")
    out = box.check(hostbin)
    assert re.search(r"^cert\tThe box's TLS certificate expires in [45] days\.$", out, re.M), out
    assert "service:imapd\tThe service imapd is not running." in out
    assert "service:smtpd" not in out
    box.check(hostbin)
    assert len(box.mails("admin")) == 2 and len(box.mails("boss")) == 2
    box.service("imapd", "run")
    box.check(hostbin)
    box.check(hostbin)
    s = subjects(box, "admin")
    assert len(s) == 3 and "[Postern] resolved: The service imapd is not running." in s
    assert box.check(hostbin, "show").startswith("cert\t")   # show mails nothing
    assert len(box.mails("admin")) == 3


def test_dashboard_agrees_with_the_mails(work, provider, hostbin, free_port, monkeypatch):
    """The page lists exactly what `postern alerts show` lists."""
    status = work / "status"
    status.mkdir()
    (status / "fetch-acme").write_text(
        "kind=fetch\nname=acme\ntime=1764393000\nresult=tls-pin\nfetched=0\nfailures=7\n"
        "last-ok=0\ndetail=TLS: server key does not match the pin\n")
    monkeypatch.setenv("POSTERN_STATUS_DIR", str(status))
    monkeypatch.delenv("POSTERN_CONF", raising=False)
    conf = ("mail-domain example.com\n\n[account acme]\nserver 127.0.0.2\nport 1\ntls stls\n"
            f"verify pin\npin {provider.pin}\nuser alice\npassword-file acme.pass\n"
            "deliver-to anna\n")
    web = WebBox(free_port, conf=conf, users=users_text())
    (web.root / "service/imapd/supervise/stat").write_text("down\n")
    web.start()
    try:
        r = subprocess.run([hostbin("postern"), "alerts", "show", "--data", str(web.root),
                            "--services", str(web.root / "service")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        cli = [tuple(line.split("\t", 1)) for line in r.stdout.splitlines()]
        assert [k for k, _ in cli] == ["fetch:acme", "service:imapd"], cli
        cl = Client(web)
        assert cl.login("admin", ADMIN_PW)[0].status == 303
        _, page = cl.get("/")
        shown = re.findall(r'<li class="alert" data-key="([^"]+)">([^<]*)</li>', page)
        unescape = lambda s: s.replace("&#39;", "'").replace("&amp;", "&")  # noqa: E731
        assert [(k, unescape(t)) for k, t in shown] == cli
        assert "certificate does not match the pin" in cli[0][1]
    finally:
        web.stop()


def test_restarting_service_mails_once_and_clears(work, provider, hostbin):
    """runsv restarts a crashing service, so its stat says "run": the exits
    svc-finish records make it "restarting" (more than 3 in 10 minutes)."""
    box = Box(work, provider)
    for _ in range(3):                 # STATUS_SVC_RESTARTS: not yet
        box.crash("smtpd")
    assert box.check(hostbin) == ""
    for _ in range(16):
        box.crash("smtpd", "-1", "11")   # killed by SIGSEGV
    lines = (box.svc / "exits-smtpd").read_text().splitlines()
    assert len(lines) == 16 and lines[-1].endswith(" -1 11"), lines   # the last 16 kept
    assert (box.services / "smtpd/supervise/stat").read_text() == "run\n"
    want = ("service:smtpd\tThe service smtpd keeps restarting: it stopped 16 times in 10 "
            "minutes (last: killed by signal 11).")
    assert want in box.check(hostbin, "show")
    for _ in range(3):
        box.check(hostbin)
    s = subjects(box, "admin")
    assert s == ["[Postern] ALERT: The service smtpd keeps restarting: it stopped 16 times "
                 "in 10 minutes (last: killed by signal 11)."], s
    assert subjects(box, "boss") == s
    # Ten minutes later nothing crashed again: the exits have aged out.
    f = box.svc / "exits-smtpd"
    old = [f"{int(line.split()[0]) - 601} {line.split(None, 1)[1]}" for line in lines]
    f.write_text("\n".join(old) + "\n")
    assert box.check(hostbin).startswith("mailed 2 admin(s): resolved: The service smtpd "
                                         "keeps restarting")
    assert box.check(hostbin) == ""
    assert len(box.mails("admin")) == 2


def test_restarting_service_on_the_dashboard(work, hostbin, free_port, monkeypatch):
    """The services list says "restarting" with the last exit; a stopped
    service with the same exits is simply down."""
    svc = work / "svc"
    svc.mkdir()
    monkeypatch.setenv("POSTERN_SVC_DIR", str(svc))
    monkeypatch.setenv("POSTERN_STATUS_DIR", str(work / "status"))
    monkeypatch.delenv("POSTERN_CONF", raising=False)
    web = WebBox(free_port, conf="mail-domain example.com\n", users=users_text())
    for name in ("imapd", "smtpd"):
        for _ in range(5):
            subprocess.run([str(SVC_FINISH), "2", "0"], cwd=web.root / "service" / name,
                           check=True, timeout=30)
    (web.root / "service/imapd/supervise/stat").write_text("down\n")
    web.start()
    try:
        cl = Client(web)
        assert cl.login("admin", ADMIN_PW)[0].status == 303
        _, page = cl.get("/")
        shown = dict(re.findall(r'<li class="(?:up|down)">([a-z]+): ([^<]*)</li>', page))
        assert shown["smtpd"] == "restarting (5 times in 10 minutes, last: exit code 2)", shown
        assert shown["imapd"] == "down", shown
        assert "The service smtpd keeps restarting" in page
    finally:
        web.stop()
