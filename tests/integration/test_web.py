"""The web admin page on the host build: webd (HTTPS, redirect on HTTP) runs
admin.cgi as an unprivileged user; admind (root) validates and applies every
change. Covers the setup code, login throttling, sessions (fixation, idle
timeout, cookie flags), CSRF, escaping (stored XSS), roles, settings with
errors next to their fields, secrets, the CA download, and a change taking
effect in a running daemon (a user added on the page logs in to IMAP)."""
import http.client
import imaplib
import os
import pathlib
import re
import shutil
import sys
import socket
import ssl
import subprocess
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "dovecot"))
from webbox import SETUP_CODE, Client, WebBox
from peers.users import pbkdf2_hash

ADMIN_PW = "Admin-pw-1"
BOB_PW = "Bob-pw-2"


CONF = "mail-domain example.com\n"
USERS = f"user admin admin {pbkdf2_hash(ADMIN_PW)}\nuser bob user {pbkdf2_hash(BOB_PW)}\n"


@pytest.fixture
def fresh(free_port):
    box = WebBox(free_port).start()
    yield box
    box.stop()


@pytest.fixture
def box(free_port):
    box = WebBox(free_port, conf=CONF, users=USERS).start()
    yield box
    box.stop()


def setup_fields(**over):
    f = {"code": SETUP_CODE, "admin": "admin", "password": ADMIN_PW, "password2": ADMIN_PW,
         "mail-domain": "example.com", "internal-domain": "office.lan", "hostname": "postern",
         "lan.address": "192.168.20.1/24", "wan.mode": "dhcp",
         "account.name": "acme", "account.server": "pop.provider.example",
         "account.tls": "implicit", "account.user": "office@provider.example",
         "account.password": "pop-secret",
         "smarthost.host": "smtp.provider.example", "smarthost.port": "465",
         "smarthost.tls": "implicit", "smarthost.user": "office@provider.example",
         "smarthost.password": "smtp-secret"}
    f.update(over)
    return f


# ---- transport ----------------------------------------------------------

def test_http_redirects_to_https(box):
    c = http.client.HTTPConnection("127.0.0.1", box.port80, timeout=10)
    c.request("GET", "/users?x=1", headers={"Host": "box.office.lan"})
    r = c.getresponse()
    assert r.status == 301
    assert r.getheader("Location") == f"https://box.office.lan:{box.port}/users?x=1"
    # a hostile Host header is not reflected
    c = http.client.HTTPConnection("127.0.0.1", box.port80, timeout=10)
    c.request("GET", "/", headers={"Host": "evil\"><x"})
    r = c.getresponse()
    assert r.getheader("Location") == f"https://127.0.0.1:{box.port}/"


def test_security_headers_static_and_bad_requests(box):
    c = Client(box)
    r, page = c.get("/login")
    assert r.status == 200
    assert "max-age" in r.getheader("Strict-Transport-Security")
    assert "frame-ancestors 'none'" in r.getheader("Content-Security-Policy")
    assert r.getheader("X-Frame-Options") == "DENY"
    assert r.getheader("Cache-Control") == "no-store"
    assert "<script" not in page  # works without JavaScript
    r, css = c.get("/static/style.css")
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/css")
    assert c.get("/static/%2e%2e/main.c")[0].status == 400
    assert c.get("/static/nothing.css")[0].status == 404
    # raw: Transfer-Encoding is refused (no CL/TE smuggling)
    ctx = ssl.create_default_context(cafile=str(box.cert))
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", box.port)),
                         server_hostname="localhost") as s:
        s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 501")


# ---- first-boot setup ---------------------------------------------------

def test_setup_code_guards_the_wizard(fresh):
    c = Client(fresh)
    r, _ = c.get("/")
    assert r.status == 303 and r.getheader("Location") == "/setup"
    r, page = c.post("/setup", setup_fields(code="WRONG-CODE"))
    assert r.status == 400
    assert re.search(r'id="f-code-err">wrong setup code', page)
    assert not fresh.conf.exists() and "admin" not in fresh.users.read_text()
    # after 3 free failures the next ones are throttled, the right code included
    failures, tries = 1, 0
    while failures < 6:        # the 6th failure makes the next attempt wait 4 s
        r, _ = c.post("/setup", setup_fields(code="WRONG"))
        assert r.status in (400, 429) and tries < 30
        failures, tries = failures + (r.status == 400), tries + 1
    r, page = c.post("/setup", setup_fields())
    assert r.status == 429 and "Too many wrong setup codes" in page
    assert not fresh.conf.exists()


def test_setup_wizard_applies_everything(fresh):
    c = Client(fresh)
    r, page = c.post("/setup", setup_fields(code=SETUP_CODE.lower()[:4] + "-" + SETUP_CODE[4:]))
    assert r.status == 303, page
    assert r.getheader("Location") == "/?saved=1"
    conf = fresh.conf.read_text()
    for line in ("mail-domain example.com", "[account acme]", "server pop.provider.example",
                 "password-file acme.pass", "deliver-to admin", "host smtp.provider.example",
                 "password-file smarthost.pass", "address 192.168.20.1/24"):
        assert line in conf, conf
    assert re.search(r"^user admin admin \$pbkdf2", fresh.users.read_text(), re.M)
    sec = fresh.root / "secrets/acme.pass"
    assert sec.read_text().strip() == "pop-secret"
    st = os.stat(sec)
    assert oct(st.st_mode & 0o777) == "0o600"
    assert st.st_uid == 105                       # fetchd in rootfs/etc/passwd
    assert not fresh.code_file.exists()          # one-time
    assert f"hup {fresh.root}/service/imapd" in fresh.sv_log.read_text()
    r, page = c.get("/")                          # signed in as the new admin
    assert r.status == 200 and "Dashboard" in page
    # the wizard is closed now, even with the old code
    r, _ = Client(fresh).get("/setup")
    assert r.status == 303 and r.getheader("Location") == "/login"


def test_setup_field_errors_next_to_fields(fresh):
    c = Client(fresh)
    r, page = c.post("/setup", setup_fields(**{"mail-domain": "not a domain",
                                               "password2": "other"}))
    assert r.status == 400
    assert 'id="f-password2-err">The two passwords differ' in page
    r, page = c.post("/setup", setup_fields(**{"mail-domain": "nodots"}))
    assert r.status == 400
    assert re.search(r'id="f-mail-domain-err">[^<]*mail-domain', page), page
    assert fresh.code_file.exists()


def test_setup_code_from_provisioning_file(free_port):
    box = WebBox(free_port, conf="# setup-code: PROV-1234\nhostname provbox\nmail-domain example.com\n")
    box.code_file.unlink()
    box.start()
    try:
        assert "postern: web setup code: PROV1234" in (box.root / "console").read_text()
        c = Client(box)
        _, page = c.get("/setup")              # prefilled from the provisioned file
        assert 'name="hostname" value="provbox"' in page
        fields = {k: v for k, v in setup_fields(code="prov-1234").items()
                  if not k.startswith(("smarthost.", "account.", "hostname"))}
        fields.update({"smarthost.tls": "starttls", "account.tls": "stls"})  # selects always post
        r, page = c.post("/setup", fields)
        assert r.status == 303, page
        conf = box.conf.read_text()
        assert "[smarthost]" not in conf and "hostname provbox" in conf
        assert "# setup-code: PROV-1234" in conf   # comments are kept
    finally:
        box.stop()


def test_random_setup_code_shown_on_console(free_port):
    box = WebBox(free_port)
    box.code_file.unlink()
    box.start()
    try:
        m = re.search(r"setup code: (\w+)", (box.root / "console").read_text())
        assert m and len(m.group(1)) == 10
        assert Client(box).post("/setup", setup_fields(code=m.group(1)))[0].status == 303
    finally:
        box.stop()


# ---- sign-in and sessions -----------------------------------------------

def test_login_cookie_flags_and_roles(box):
    c = Client(box)
    _, page = c.get("/login")
    r = c.request("POST", "/login", {"user": "admin", "password": ADMIN_PW, "csrf": c.csrf(page)})[0]
    assert r.status == 303 and r.getheader("Location") == "/"
    sid = [v for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("__Host-sid=")][0]
    assert re.match(r"__Host-sid=[0-9a-f]{64}; Path=/; Secure; HttpOnly; SameSite=Strict", sid)
    assert c.get("/users")[0].status == 200
    # a plain user may only change their own password
    u = Client(box)
    r, _ = u.login("bob", BOB_PW)
    assert r.getheader("Location") == "/password"
    r, page = u.get("/users")
    assert r.status == 403 and "for administrators" in page
    r, page = u.post("/users", {"op": "add", "name": "eve", "role": "admin",
                                "password": "x", "password2": "x"})
    assert r.status == 403 and "eve" not in box.users.read_text()
    r, page = u.post("/password", {"current": BOB_PW, "password": "New-bob-3",
                                   "password2": "New-bob-3"})
    assert r.status == 303
    assert Client(box).login("bob", "New-bob-3")[0].getheader("Location") == "/password"


def test_login_throttling(box):
    c = Client(box)
    failures, statuses = 0, []
    while failures < 6:        # the 6th failure makes the next attempt wait 4 s
        r, page = c.login("admin", "wrong")
        statuses.append(r.status)
        assert r.status in (401, 429) and len(statuses) < 30
        failures += r.status == 401
    assert statuses[:3] == [401, 401, 401]
    r, page = c.login("admin", ADMIN_PW)      # right password, but must wait
    assert r.status == 429 and "Too many failed attempts" in page
    assert "__Host-sid" not in c.cookies
    # another user from the same address is not slowed down
    assert Client(box).login("bob", BOB_PW)[0].status == 303


def test_session_fixation(box):
    planted = "ab" * 32
    c = Client(box)
    c.cookies["__Host-sid"] = planted
    r, _ = c.get("/")
    assert r.status == 303 and r.getheader("Location") == "/login"
    c.login("admin", ADMIN_PW)
    assert c.cookies["__Host-sid"] != planted
    attacker = Client(box)
    attacker.cookies["__Host-sid"] = planted
    assert attacker.get("/")[0].status == 303   # the planted id grants nothing
    assert c.get("/")[0].status == 200


def test_idle_timeout_and_logout(box):
    c = Client(box)
    c.login("admin", ADMIN_PW)
    assert c.get("/")[0].status == 200
    f = [p for p in (box.root / "state").iterdir()][0]
    user, admin, csrf, created, last = f.read_text().split()
    f.write_text(f"{user} {admin} {csrf} {created} {int(last) - 901}\n")
    r, _ = c.get("/")
    assert r.status == 303 and r.getheader("Location") == "/login"
    c.login("admin", ADMIN_PW)
    old = dict(c.cookies)
    r, _ = c.post("/logout", {}, token=False)   # needs the token too
    assert r.status == 403
    _, page = c.get("/")
    r, _ = c.request("POST", "/logout", {"csrf": c.csrf(page)})
    assert r.status == 303
    c.cookies = old                             # replaying the old cookie fails
    assert c.get("/")[0].status == 303


# ---- CSRF and escaping --------------------------------------------------

def test_csrf_refused(box):
    c = Client(box)
    c.login("admin", ADMIN_PW)
    fields = {"op": "add", "name": "mallory", "role": "admin", "password": "x", "password2": "x"}
    r, page = c.post("/users", fields, token=False)
    assert r.status == 403 and "CSRF" in page
    r, _ = c.request("POST", "/users", dict(fields, csrf="0" * 64))
    assert r.status == 403
    assert "mallory" not in box.users.read_text()
    # the login form has its own token
    r, _ = Client(box).request("POST", "/login", {"user": "admin", "password": ADMIN_PW})
    assert r.status == 403
    r, _ = c.post("/users", fields)
    assert r.status == 303 and "mallory" in box.users.read_text()


def test_stored_xss_escaped(box):
    c = Client(box)
    c.login("admin", ADMIN_PW)
    evil = "<script>alert(1)</script>"
    r, page = c.post("/users", {"op": "add", "name": evil, "role": "user",
                                "password": "x", "password2": "x"})
    assert r.status == 400
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page
    r, page = c.get("/logs")                     # a log line holding markup
    assert "user=&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    r, page = c.get("/logs?q=%3Cscript%3E")
    assert 'value="&lt;script&gt;"' in page and "<script" not in page


# ---- pages with real effect ---------------------------------------------

def test_settings_errors_next_to_field_and_apply(box):
    c = Client(box)
    c.login("admin", ADMIN_PW)
    r, page = c.post("/smarthost", {"smarthost.host": "smtp.provider.example",
                                    "smarthost.port": "70000", "smarthost.tls": "starttls",
                                    "smarthost.verify": "ca", "smarthost.masquerade": "domain"})
    assert r.status == 400
    assert re.search(r'id="f-smarthost-port-err">[^<]*70000', page), page
    assert 'aria-invalid="true"' in page
    assert "smtp.provider.example" not in box.conf.read_text()
    r, _ = c.post("/smarthost", {"smarthost.host": "smtp.provider.example",
                                 "smarthost.port": "465", "smarthost.tls": "implicit",
                                 "smarthost.verify": "ca", "smarthost.masquerade": "domain",
                                 "smarthost.user": "u", "smarthost.password": "pw"})
    assert r.status == 303
    conf = box.conf.read_text()
    assert "host smtp.provider.example" in conf and "port 465" in conf
    assert "verify" not in conf                   # unchanged defaults are not written
    assert (box.root / "secrets/smarthost.pass").read_text().strip() == "pw"
    assert f"hup {box.root}/service/smtpd" in box.sv_log.read_text()
    r, page = c.post("/dns", {"hostname": "postern", "internal-domain": "office.lan",
                              "dns.host": "printer 192.168.10.20\r\nnas 192.168.10.21\r\n",
                              "dns.upstream": "", "dns.transport": "udp", "dns.tls-name": ""})
    assert r.status == 303, page
    assert "host printer 192.168.10.20" in box.conf.read_text()


def test_accounts_page(box):
    c = Client(box)
    c.login("admin", ADMIN_PW)
    f = {"name": "acme", "server": "pop.provider.example", "port": "", "tls": "stls",
         "verify": "ca", "pin": "", "user": "me", "password": "pop-pw",
         "deliver-to": "bob", "keep": "no", "poll": "5m", "enabled": "yes"}
    r, page = c.post("/accounts", dict(f, poll="soon"))
    assert r.status == 400 and re.search(r'id="f-poll-err">', page), page
    r, page = c.post("/accounts", f)
    assert r.status == 303, page
    assert "[account acme]" in box.conf.read_text()
    assert (box.root / "secrets/acme.pass").read_text().strip() == "pop-pw"
    r, page = c.get("/accounts")
    assert "pop.provider.example" in page
    r, _ = c.post("/accounts", {"op": "delete", "name": "acme"})
    assert r.status == 303 and "acme" not in box.conf.read_text()


def test_ca_download(box):
    c = Client(box)
    c.login("admin", ADMIN_PW)
    r, pem = c.get("/certs/ca.pem")
    assert r.status == 200 and "BEGIN CERTIFICATE" in pem
    conn = http.client.HTTPSConnection("localhost", box.port, context=c.ctx)
    conn.request("GET", "/certs/ca.der", headers={"Cookie": "; ".join(
        f"{k}={v}" for k, v in c.cookies.items())})
    der = conn.getresponse().read()
    want = subprocess.run(["openssl", "x509", "-in", str(box.root / "secrets/tls/ca.pem"),
                           "-outform", "DER"], capture_output=True, check=True).stdout
    assert der == want


ROGUE = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(b"user-add\\0eve\\0admin\\0pw\\0")
    s.shutdown(socket.SHUT_WR)
    print(repr(s.recv(100)))
except OSError:
    print("refused")
"""


def test_admind_refuses_other_users(box):
    """Only the web user (and root) may talk to the helper (SO_PEERCRED)."""
    out = subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups",
                          "/usr/bin/python3", "-c", ROGUE, str(box.sock)],
                         capture_output=True, text=True)
    assert out.stdout.strip() in ("b''", "refused"), out
    assert "eve" not in box.users.read_text()
    out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                          "/usr/bin/python3", "-c", ROGUE, str(box.sock)],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "b'ok\\n'", out     # the web user is served
    assert "eve" in box.users.read_text()


def test_new_user_logs_in_to_imap_at_once(free_port, hostbin):
    box = WebBox(free_port, conf=CONF, users=USERS)
    p143 = free_port()
    mail = box.root / "mail"
    shutil.chown(mail, "nobody")
    r, w = os.pipe()
    imapd = subprocess.Popen([hostbin("imapd"), "-f", "--users", str(box.users), "--mail", str(mail),
                              "--throttle", str(box.root / "run/throttle"), "--cert", str(box.cert),
                              "--key", str(box.key), "--imap", f"127.0.0.1:{p143}",
                              "--imaps", f"127.0.0.1:{free_port()}", "--ready-fd", str(w),
                              "--user", "nobody"], pass_fds=(w,),
                             stderr=open(box.root / "imapd.log", "ab"))
    os.close(w)
    assert os.read(r, 1) == b"\n"
    box.hup_pids = str(imapd.pid)
    box.start()
    try:
        c = Client(box)
        c.login("admin", ADMIN_PW)
        r, page = c.post("/users", {"op": "add", "name": "carol", "role": "user",
                                    "password": "Carol-pw-4", "password2": "Carol-pw-4"})
        assert r.status == 303, page
        ctx = ssl.create_default_context(cafile=str(box.cert))
        deadline = time.monotonic() + 10
        while True:   # imapd re-reads the users file on the SIGHUP admind sent
            m = imaplib.IMAP4("127.0.0.1", p143)
            m.starttls(ssl_context=ctx)
            try:
                m.login("carol", "Carol-pw-4")
                break
            except imaplib.IMAP4.error:
                assert time.monotonic() < deadline, (box.root / "imapd.log").read_text()
            finally:
                m.logout()
    finally:
        box.stop()
        imapd.terminate()
        imapd.wait(10)


def test_aliases_and_user_delete(box):
    c = Client(box)
    c.login("admin", ADMIN_PW)
    r, page = c.post("/users", {"op": "alias-add", "alias": "sales", "owner": "nobody-here"})
    assert r.status == 400 and re.search(r'id="f-alias-err">[^<]*nobody-here', page), page
    assert c.post("/users", {"op": "alias-add", "alias": "sales", "owner": "bob"})[0].status == 303
    assert "alias sales bob" in re.sub(r"\s+", " ", box.users.read_text())
    _, page = c.get("/users")
    assert "sales &rarr; bob" in page
    r, page = c.post("/users", {"op": "delete", "name": "admin"})
    assert r.status == 400 and "cannot delete yourself" in page
    assert c.post("/users", {"op": "delete", "name": "bob"})[0].status == 303
    users = box.users.read_text()
    assert "bob" not in users and "sales" not in users
    assert Client(box).login("bob", BOB_PW)[0].status == 401


def queue_message(box, qid, rcpt="friend@other.example"):
    for d in ("tmp", "msg", "env"):
        (box.root / "queue" / d).mkdir(exist_ok=True)
    body = b"Subject: hi\r\n\r\nhello\r\n"
    (box.root / "queue/msg" / qid).write_bytes(body)
    (box.root / "queue/env" / qid).write_text(
        f"postern-queue 1\nid {qid}\ncreated 1795910886\nuser admin\nfrom admin@example.com\n"
        f"size {len(body)}\nrcpt pending 2 4102444800 {rcpt} 451 4.3.0 <b>try later</b>\n")


def test_queue_page_retry_and_delete(box):
    queue_message(box, "6b0b6ce6ddb61fde")
    queue_message(box, "6b0b6ce6ddb61fdf")
    c = Client(box)
    c.login("admin", ADMIN_PW)
    _, page = c.get("/queue")
    assert "6b0b6ce6ddb61fde" in page and "admin@example.com" in page
    assert "451 4.3.0 &lt;b&gt;try later&lt;/b&gt;" in page and "2 messages" in page
    assert "2 messages" in c.get("/")[1] or "Queue</dt><dd>2 messages" in c.get("/")[1]
    r, _ = c.post("/queue", {"op": "retry", "id": "6b0b6ce6ddb61fde"})
    assert r.status == 303
    env = (box.root / "queue/env/6b0b6ce6ddb61fde").read_text()
    assert "rcpt pending 2 0 friend@other.example" in env
    r, _ = c.post("/queue", {"op": "delete", "id": "6b0b6ce6ddb61fdf"})
    assert r.status == 303
    assert not (box.root / "queue/env/6b0b6ce6ddb61fdf").exists()
    assert not (box.root / "queue/msg/6b0b6ce6ddb61fdf").exists()
    r, page = c.post("/queue", {"op": "delete", "id": "../../etc/users"})
    assert r.status == 400 and "not a queue ID" in page


def test_firewall_page_preview(box):
    c = Client(box)
    c.login("admin", ADMIN_PW)
    _, page = c.get("/firewall")
    assert "Rules preview" in page and "*filter" in page
    r, page = c.post("/firewall", {"firewall.single-interface": "yes",
                                   "firewall.blocked-ports": "25 465 587 2525 110 995 143 993",
                                   "firewall.foreign-dns": "redirect",
                                   "firewall.allow": "192.168.10.50 25",
                                   "firewall.log-blocked": "yes"})
    assert r.status == 400        # single-interface needs the office router's address
    assert re.search(r'class="field-error"', page) or "gateway" in page
    r, page = c.post("/firewall", {"firewall.single-interface": "no",
                                   "firewall.blocked-ports": "25 465 587 2525 110 995 143 993",
                                   "firewall.foreign-dns": "reject",
                                   "firewall.allow": "192.168.10.50 25",
                                   "firewall.log-blocked": "yes"})
    assert r.status == 303, page
    conf = box.conf.read_text()
    assert "allow 192.168.10.50 25" in conf and "foreign-dns reject" in conf
    assert "192.168.10.50" in c.get("/firewall")[1]


def free_ports(n):
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return ports


def run_probe(c, kind, name, timeout=120):
    """The "Test connection" button of the settings page: POST /probe starts
    the test and redirects to its page, which refreshes itself until the
    result is there; returns that page."""
    _, page = c.get("/smarthost" if kind == "smarthost" else f"/accounts?name={name}")
    assert 'action="/probe"' in page, page
    r, page = c.request("POST", "/probe", {"kind": kind, "name": name, "csrf": c.csrf(page)})
    assert r.status == 303, page
    loc = r.getheader("Location")
    deadline = time.monotonic() + timeout
    while True:
        r, page = c.get(loc)
        assert r.status == 200, page
        if not r.getheader("Refresh"):
            return page
        assert time.monotonic() < deadline, page
        time.sleep(0.2)


def test_account_test_connection_and_pin(box):
    """Against Dovecot (STLS on 127.0.0.2): the CA check fails for its
    self-signed key, the page shows the key's SPKI fingerprint, one click
    pins it, and the next test passes."""
    from provider import Dovecot
    prov = Dovecot()
    prov.add_user("alice", "alice-secret")
    prov.start(*free_ports(2))
    try:
        c = Client(box)
        c.login("admin", ADMIN_PW)
        r, page = c.post("/accounts", {"name": "acme", "server": "127.0.0.2",
                                       "port": str(prov.port_stls), "tls": "stls", "verify": "ca",
                                       "pin": "", "user": "alice", "password": "alice-secret",
                                       "deliver-to": "bob", "keep": "no", "poll": "10m",
                                       "enabled": "yes"})
        assert r.status == 303, page
        page = run_probe(c, "account", "acme")
        assert "Failed:" in page, page
        assert prov.pin in page
        r, page = c.post("/accounts", {"op": "pin", "name": "acme", "pin": prov.pin})
        assert r.status == 303, page
        conf = box.conf.read_text()
        assert "verify pin" in conf and f"pin {prov.pin}" in conf
        page = run_probe(c, "account", "acme")
        assert "Connected to" in page and "over TLS" in page, page
    finally:
        prov.cleanup()


def test_smarthost_test_connection_implicit(box):
    """openssl s_server as an implicit-TLS smart host whose certificate the
    configured CA file vouches for: the test passes; with a wrong pin it
    fails and names the real key."""
    port = free_ports(1)[0]
    srv = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                            str(box.cert), "-key", str(box.key), "-naccept", "2"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)   # stdin EOF would stop it
    try:
        while "ACCEPT" not in srv.stdout.readline():
            pass
        c = Client(box)
        c.login("admin", ADMIN_PW)
        r, page = c.post("/smarthost", {"smarthost.host": "localhost", "smarthost.port": str(port),
                                        "smarthost.tls": "implicit", "smarthost.verify": "ca",
                                        "smarthost.masquerade": "domain"})
        assert r.status == 303, page
        box.conf.write_text(box.conf.read_text().replace(
            "tls implicit", f"tls implicit\nca-file {box.cert}"))
        page = run_probe(c, "smarthost", "")
        assert "Connected to" in page and "over TLS" in page, page
        r, _ = c.post("/smarthost", {"op": "pin", "pin": "0" * 64})   # a wrong pin
        assert r.status == 303 and "pin " + "0" * 64 in box.conf.read_text()
        page = run_probe(c, "smarthost", "")
        assert "Failed:" in page and "does not match the pin" in page, page
    finally:
        srv.kill()
        srv.wait()


def test_login_fails_closed_without_throttle_file(box):
    t = box.root / "run/throttle"
    shutil.chown(t, "root")
    os.chmod(t, 0o600)
    r, page = Client(box).login("admin", ADMIN_PW)
    assert r.status == 503 and "throttle file cannot be used" in page


def test_lists(box):
    c = Client(box)
    c.login("admin", ADMIN_PW)
    r, page = c.post("/users", {"op": "list-set", "list": "all", "members": "admin, ghost"})
    assert r.status == 400 and re.search(r'id="f-list-err">[^<]*ghost', page), page
    r, _ = c.post("/users", {"op": "list-set", "list": "all", "members": "admin bob"})
    assert r.status == 303
    assert re.search(r"^list\s+all\s+admin bob", box.users.read_text(), re.M)
    assert "all: admin bob" in c.get("/users")[1]
    assert c.post("/users", {"op": "list-del", "list": "all"})[0].status == 303
    assert "list" not in box.users.read_text()


def test_dashboard_mail_chart(box):
    now = time.time()
    for user, ages in (("admin", [0, 0, 1]), ("bob", [0, 3, 20])):
        for sub in ("new", "cur", "tmp"):
            (box.root / "mail" / user / sub).mkdir(parents=True)
        for i, days in enumerate(ages):
            f = box.root / "mail" / user / ("new" if i % 2 else "cur") / f"{i}.msg"
            f.write_text("x")
            os.utime(f, (now - days * 86400, now - days * 86400))
        (box.root / "mail" / user / "tmp" / "partial").write_text("not a message")
    c = Client(box)
    c.login("admin", ADMIN_PW)
    _, page = c.get("/")
    today = time.strftime("%Y-%m-%d")
    assert re.search(rf"<title>{today}: 3</title>", page), page
    assert "<svg" in page and "Messages received in the last 14 days" in page
    assert sum(int(n) for n in re.findall(r"<tr><td>[0-9-]+</td><td>(\d+)</td></tr>", page)) == 5
