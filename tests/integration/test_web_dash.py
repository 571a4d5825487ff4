"""The dashboard's live parts (docs/web.md "Dashboard"): fetchd's status
record per provider account against a real Dovecot (a good poll, a wrong
password, a wrong pin, an unreachable server) shown on the page in plain
words; blocked firewall attempts per LAN host and destination port through
admind; the progress page of a long operation (the connection test)."""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers" / "smtpd"))
from privs import drop_args, USER as DROP_USER  # noqa: E402
from webbox import Client, WebBox  # noqa: E402
from peers.users import pbkdf2_hash  # noqa: E402

ADMIN_PW = "Admin-pw-1"
MSGS = [b"From: a@remote.test\nSubject: one\nMessage-ID: <1@r.test>\n\nHello.\n",
        b"From: b@remote.test\nSubject: two\nMessage-ID: <2@r.test>\n\nWorld.\n",
        b"Subject: three\nMessage-ID: <3@r.test>\n\n3\n"]


USERS = f"user admin admin {pbkdf2_hash(ADMIN_PW)}\nuser anna user {pbkdf2_hash('Anna-pw-1')}\n"


def account_conf(name, prov, port=None, pin=None):
    return (f"[account {name}]\nserver 127.0.0.2\nport {port or prov.port_stls}\ntls stls\n"
            f"verify pin\npin {pin or prov.pin}\nuser alice\npassword-file {name}.pass\n"
            f"deliver-to anna\n\n")


def make_data(tmp_path, conf, passwords):
    data = tmp_path / "data"
    for d in ("etc", "secrets", "mail", "fetch"):
        (data / d).mkdir(parents=True, exist_ok=True)
    for name, pw in passwords.items():
        (data / "secrets" / f"{name}.pass").write_text(pw + "\n")
        os.chmod(data / "secrets" / f"{name}.pass", 0o600)
    (data / "etc" / "postern.conf").write_text("mail-domain example.com\n\n" + conf)
    status = tmp_path / "status"
    status.mkdir()
    if os.geteuid() == 0:          # fetchd drops to DROP_USER: its directory
        shutil.chown(status, DROP_USER)
    return data, status


def fetch(hostbin, data, status, *args):
    env = dict(os.environ, POSTERN_STATUS_DIR=str(status))
    return subprocess.run([hostbin("fetchd"), "--once", "-d", str(data), *drop_args(data), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def record(status, name):
    text = (status / f"fetch-{name}").read_text()
    return dict(line.split("=", 1) for line in text.splitlines())


def test_fetch_status_records(work, provider, hostbin):
    """Each poll's outcome lands in STATUS_DIR/fetch-NAME with the right
    result; failures count on and a success resets them."""
    provider.seed("alice", MSGS)
    bad_pin = "0" * 64
    conf = (account_conf("acme", provider) + account_conf("pinned", provider, pin=bad_pin) +
            account_conf("gone", provider, port=1))
    data, status = make_data(work, conf, {"acme": "alice-secret", "pinned": "alice-secret",
                                              "gone": "alice-secret"})
    r = fetch(hostbin, data, status, "acme")
    assert r.returncode == 0, r.stderr
    rec = record(status, "acme")
    assert rec["result"] == "ok" and rec["fetched"] == "3" and rec["failures"] == "0", rec
    assert int(rec["last-ok"]) == int(rec["time"]) > 0

    (data / "secrets" / "acme.pass").write_text("wrong-password\n")
    for n in (1, 2):
        r = fetch(hostbin, data, status, "acme")
        assert r.returncode == 111, r.stderr
        rec2 = record(status, "acme")
        assert rec2["result"] == "login" and rec2["failures"] == str(n), rec2
        assert rec2["last-ok"] == rec["last-ok"]          # the last success is kept

    r = fetch(hostbin, data, status, "pinned")
    assert r.returncode == 111
    assert record(status, "pinned")["result"] == "tls-pin"
    r = fetch(hostbin, data, status, "gone")
    assert r.returncode == 111
    assert record(status, "gone")["result"] == "unreachable"

    (data / "secrets" / "acme.pass").write_text("alice-secret\n")
    provider.seed("alice", [b"Subject: four\nMessage-ID: <4@r.test>\n\n4\n"])
    r = fetch(hostbin, data, status, "acme")
    assert r.returncode == 0, r.stderr
    rec3 = record(status, "acme")
    assert rec3["result"] == "ok" and rec3["failures"] == "0" and rec3["fetched"] == "1", rec3
    assert all(not f.name.startswith(".") for f in status.iterdir())    # no temp left


def test_dashboard_shows_fetch_results(work, provider, hostbin, free_port, monkeypatch):
    """The dashboard shows each account's last poll in plain words, escaped."""
    provider.seed("alice", MSGS)
    conf = account_conf("acme", provider) + account_conf("broken", provider) + \
        account_conf("fresh", provider)
    data, status = make_data(work, conf, {"acme": "alice-secret", "broken": "not-it",
                                              "fresh": "alice-secret"})
    assert fetch(hostbin, data, status, "acme").returncode == 0
    assert fetch(hostbin, data, status, "broken").returncode == 111
    os.chmod(work, 0o755)
    monkeypatch.setenv("POSTERN_STATUS_DIR", str(status))
    box = WebBox(free_port, conf="mail-domain example.com\n\n" + conf, users=USERS).start()
    try:
        cl = Client(box)
        r, _ = cl.login("admin", ADMIN_PW)
        assert r.status == 303
        r, page = cl.get("/")
        assert r.status == 200
        rows = {m.group(1): m.group(2) for m in re.finditer(
            r'<tr[^>]*><th scope="row">([a-z]+)</th>(.*?)</tr>', page, re.S)}
        assert "3 messages fetched" in rows["acme"], rows
        assert "wrong user name or password" in rows["broken"], rows
        assert "1 failed polls in a row" in rows["broken"]
        assert "no poll yet" in rows["fresh"]
    finally:
        box.stop()


FW_RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:postern-block - [0:0]
:postern-count - [0:0]
-A OUTPUT -p tcp -m multiport --dports 110,995 -j postern-block
-A postern-block -j postern-count
-A postern-block -p tcp -j REJECT --reject-with tcp-reset
-A postern-count -s 127.0.0.5/32 -j RETURN
-A postern-count -s 127.0.0.6/32 -j RETURN
-A postern-count -s 127.0.0.0/8 -j RETURN
-A postern-count -j RETURN
COMMIT
"""

FW_LOG = (
    "Nov 29 05:10:01 postern kern.warn kernel: postern-fw blocked: IN=br-lan OUT=eth0 "
    "SRC=127.0.0.5 DST=203.0.113.5 LEN=60 PROTO=TCP SPT=40000 DPT=110 SYN URGP=0\n"
    "Nov 29 05:10:31 postern kern.warn kernel: postern-fw blocked: IN=br-lan OUT=eth0 "
    "SRC=127.0.0.5 DST=203.0.113.5 LEN=60 PROTO=TCP SPT=40002 DPT=110 SYN URGP=0\n"
    "Nov 29 05:11:00 postern kern.warn kernel: postern-fw blocked: IN=br-lan OUT=eth0 "
    "SRC=127.0.0.6 DST=198.51.100.7 LEN=60 PROTO=TCP SPT=40003 DPT=995 SYN URGP=0\n"
    "Nov 29 05:12:00 postern kern.warn kernel: postern-fw blocked: IN=br-lan OUT=eth0 "
    "SRC=<img/src=x> DST=9.9.9.9 LEN=60 PROTO=UDP SPT=1 DPT=53\n")


@pytest.fixture
def fw_netns(tmp_path):
    """A network namespace with the firewall's counting chains hooked to
    OUTPUT (the box's FORWARD needs two more namespaces: see
    test_firewall.py), and a wrapper that runs its iptables-save."""
    if os.geteuid() != 0 or not shutil.which("iptables-legacy-restore"):
        pytest.skip("needs root and iptables-legacy")
    ns = f"dash-fw-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "iptables-legacy-restore"], input=FW_RULES,
                       text=True, check=True)
        wrap = tmp_path / "fw"
        (tmp_path / "fw-save").write_text(
            f"#!/bin/sh\nexec ip netns exec {ns} iptables-legacy-save \"$@\"\n")
        os.chmod(tmp_path / "fw-save", 0o755)
        yield ns, str(wrap)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def attempt(ns, src, port):
    """A desktop (address src) trying a blocked server port: refused."""
    code = ("import socket,sys\ns=socket.socket()\ns.bind((sys.argv[1],0))\n"
            "try:\n s.connect(('127.0.0.1',int(sys.argv[2])))\nexcept ConnectionRefusedError:\n"
            " print('refused')\n")
    r = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", code, src, str(port)],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "refused", r.stderr


def blocked_rows(page):
    sect = page.split("<h2>Blocked attempts</h2>", 1)[1].split("</section>", 1)[0]
    return sect, {m.group(1): m.group(2) for m in re.finditer(
        r'<tr><th scope="row">([^<]+)</th>(.*?)</tr>', sect, re.S)}


def dash_box(free_port, monkeypatch, tmp_path, iptables):
    monkeypatch.setenv("POSTERN_IPTABLES", iptables)
    monkeypatch.setenv("POSTERN_IP6TABLES", "/nonexistent/ip6tables")
    monkeypatch.setenv("POSTERN_STATUS_DIR", str(tmp_path / "no-status"))
    box = WebBox(free_port, conf="mail-domain example.com\n", users=USERS)
    with open(box.root / "log/messages", "a") as f:
        f.write(FW_LOG)
    return box.start()


def test_dashboard_blocked_per_host(work, fw_netns, free_port, monkeypatch):
    """Real kernel counters per LAN host (iptables-save -c through admind)
    and the servers each host tried, from the firewall's log lines."""
    ns, wrap = fw_netns
    for _ in range(3):
        attempt(ns, "127.0.0.5", 110)
    attempt(ns, "127.0.0.6", 995)
    box = dash_box(free_port, monkeypatch, work, wrap)
    try:
        cl = Client(box)
        assert cl.login("admin", ADMIN_PW)[0].status == 303
        r, page = cl.get("/")
        assert r.status == 200
        sect, rows = blocked_rows(page)
        assert "cannot be read" not in sect
        # SYN counted once per attempt (a reset ends each one)
        assert re.match(r"<td>3</td>", rows["127.0.0.5"]), rows
        assert "203.0.113.5 port 110 (TCP, fetching mail (POP3)): 2 logged, last Nov 29 05:10:31" \
            in rows["127.0.0.5"]
        assert re.match(r"<td>1</td>", rows["127.0.0.6"]), rows
        assert "198.51.100.7 port 995" in rows["127.0.0.6"]
        assert "127.0.0.0/8" not in rows                    # zero counters are not listed
        assert "&lt;img/src=x&gt;" in sect and "<img/src" not in sect   # escaped
    finally:
        box.stop()


def test_dashboard_blocked_without_counters(work, free_port, monkeypatch):
    """iptables-save missing: the page says so and still shows the log's part."""
    box = dash_box(free_port, monkeypatch, work, "/nonexistent/iptables")
    try:
        cl = Client(box)
        assert cl.login("admin", ADMIN_PW)[0].status == 303
        _, page = cl.get("/")
        sect, rows = blocked_rows(page)
        assert "counters cannot be read" in sect
        assert "<td>-</td>" in rows["127.0.0.5"] and "203.0.113.5 port 110" in rows["127.0.0.5"]
    finally:
        box.stop()


def wait_done(cl, loc, deadline_s=60):
    """Follows the progress page as a browser does (it refreshes itself)
    until the result is there; returns every page seen."""
    seen = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        r, page = cl.get(loc)
        assert r.status == 200, page
        seen.append((r, page))
        if 'aria-busy="false"' in page:
            return seen
        assert r.getheader("Refresh") == "1", r.getheaders()
        time.sleep(0.2)   # the page asks for 1 s; polling faster only saves test time
    raise AssertionError("the test never finished: " + seen[-1][1])


def test_probe_progress_page(work, provider, free_port, monkeypatch):
    """The connection test runs in the background: POST redirects at once to a
    page that refreshes itself (Refresh header, meta refresh, aria-live) while
    a slow server keeps it waiting, then shows the result; the job is the
    starting user's only."""
    import socket
    import threading
    monkeypatch.setenv("POSTERN_STATUS_DIR", str(work / "no-status"))
    slow = socket.socket()
    slow.bind(("127.0.0.1", 0))
    slow.listen(1)
    sport = slow.getsockname()[1]
    conf = ("mail-domain example.com\n\n[smarthost]\nhost 127.0.0.1\nport %d\ntls starttls\n"
            "verify pin\npin %s\nuser office\npassword-file smarthost.pass\n\n" % (sport, "0" * 64)
            + account_conf("acme", provider))
    users = USERS + f"user boss admin {pbkdf2_hash('Boss-pw-1')}\n"
    box = WebBox(free_port, conf=conf, users=users).start()
    accepted = []
    t = threading.Thread(target=lambda: accepted.append(slow.accept()[0]), daemon=True)
    t.start()
    try:
        cl = Client(box)
        assert cl.login("admin", ADMIN_PW)[0].status == 303
        r, _ = cl.request("POST", "/probe", {"kind": "smarthost",
                                             "csrf": Client.csrf(cl.get("/smarthost")[1])})
        assert r.status == 303
        loc = r.getheader("Location")
        assert re.fullmatch(r"/probe\?id=[0-9a-f]{32}", loc), loc
        t.join(30)
        assert accepted, "the test never connected"
        r, page = cl.get(loc)                       # the server says nothing yet
        assert r.status == 200 and r.getheader("Refresh") == "1"
        assert 'aria-live="polite"' in page and 'aria-busy="true"' in page
        assert '<meta http-equiv="refresh" content="1">' in page
        assert f"Testing the connection to 127.0.0.1 port {sport}" in page
        other = Client(box)                          # another admin: not theirs
        assert other.login("boss", "Boss-pw-1")[0].status == 303
        assert other.get(loc)[0].status == 404
        assert other.get("/probe?id=../../etc/passwd")[0].status == 404
        accepted[0].sendall(b"554 5.3.2 not now\r\n")  # refuses: the test ends
        accepted[0].close()
        r, page = wait_done(cl, loc)[-1]
        assert r.getheader("Refresh") is None and "refresh" not in page
        assert "Failed: the server did not accept STARTTLS" in page, page

        r, _ = cl.request("POST", "/probe", {"kind": "account", "name": "acme",
                                             "csrf": Client.csrf(cl.get("/accounts")[1])})
        assert r.status == 303
        r, page = wait_done(cl, r.getheader("Location"))[-1]
        assert f"Connected to 127.0.0.2 port {provider.port_stls} over TLS" in page, page
        assert f'name="pin" value="{provider.pin}"' in page and 'action="/accounts"' in page
        r, _ = cl.request("POST", "/probe", {"kind": "account", "name": "acme"})   # no token
        assert r.status == 403
    finally:
        box.stop()
        slow.close()


def test_probe_progress_in_chromium(work, free_port, monkeypatch):
    """A real browser without any script of ours: after the POST it sits on
    the progress page, which reloads itself until the result replaces it.
    Screenshots: build/web-shots/dash-probe-*.png, dash-dashboard.png."""
    import socket
    import threading
    sys.path.insert(0, str(HERE / "peers" / "chromium"))
    pytest.importorskip("selenium")
    from chrome import CHROME, DRIVER, browser, submit
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    if not pathlib.Path(CHROME).exists() or not pathlib.Path(DRIVER).exists():
        pytest.skip("chromium / chromium-driver not installed")
    shots = HERE.parents[1] / "build" / "web-shots"
    shots.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("POSTERN_STATUS_DIR", str(work / "no-status"))
    slow = socket.socket()
    slow.bind(("127.0.0.1", 0))
    slow.listen(1)
    conf = ("mail-domain example.com\n\n[smarthost]\nhost 127.0.0.1\nport %d\ntls starttls\n"
            "verify pin\npin %s\nuser office\npassword-file smarthost.pass\n"
            % (slow.getsockname()[1], "0" * 64))
    box = WebBox(free_port, conf=conf, users=USERS).start()
    accepted = []
    threading.Thread(target=lambda: accepted.append(slow.accept()[0]), daemon=True).start()
    d = browser(str(work / "chrome"))
    try:
        base = f"https://localhost:{box.port}"
        d.get(base + "/login")
        d.find_element(By.NAME, "user").send_keys("admin")
        d.find_element(By.NAME, "password").send_keys(ADMIN_PW)
        submit(d, "Sign in")
        d.get(base + "/")
        d.save_screenshot(str(shots / "dash-dashboard.png"))
        d.get(base + "/smarthost")
        # The settings page's button still posts to itself: post the same
        # fields to /probe from a form of our own, as the page will.
        d.execute_script(
            "var f=document.createElement('form');f.method='post';f.action='/probe';"
            "for (const [k,v] of [['kind','smarthost'],['csrf',"
            "document.querySelector('input[name=csrf]').value]]) {"
            "var i=document.createElement('input');i.type='hidden';i.name=k;i.value=v;"
            "f.appendChild(i);} var b=document.createElement('button');b.textContent='Go';"
            "f.appendChild(b);document.body.appendChild(f);")
        submit(d, "Go")
        assert re.search(r"/probe\?id=[0-9a-f]{32}$", d.current_url), d.current_url
        assert "Testing the connection to 127.0.0.1" in d.page_source
        live = d.find_element(By.CSS_SELECTOR, "section[aria-live='polite']")
        assert live.get_attribute("aria-busy") == "true"
        d.save_screenshot(str(shots / "dash-probe-running.png"))
        WebDriverWait(d, 30).until(lambda drv: accepted)
        url = d.current_url
        accepted[0].sendall(b"554 5.3.2 not now\r\n")
        accepted[0].close()
        WebDriverWait(d, 60).until(lambda drv: "Failed:" in drv.page_source)
        assert d.current_url == url                    # the page reloaded itself
        assert "the server did not accept STARTTLS" in d.page_source
        d.save_screenshot(str(shots / "dash-probe-done.png"))
    finally:
        d.quit()
        box.stop()
        slow.close()


def test_relay_status_record(work, hostbin, monkeypatch, tmp_path_factory):
    """relayd records its last smart-host session: a verified server that
    takes the message (ok, 1 sent), then a wrong pin (tls-pin, nothing sent),
    counted in a row."""
    sys.path.insert(0, str(HERE / "peers" / "postfix"))
    from fakesmtp import FakeSmtp
    from postfix import RelayCA
    from relaybox import RelayBox
    status = work / "status"
    status.mkdir()
    if os.geteuid() == 0:
        shutil.chown(status, DROP_USER)
    monkeypatch.setenv("POSTERN_STATUS_DIR", str(status))
    ca = RelayCA(tmp_path_factory.mktemp("ca"))
    crt, key, pin = ca.leaf("good")

    def attempt(verify):
        srv = FakeSmtp(cert=crt, key=key)
        srv.start()
        rec = status / "relay-smarthost"
        old = rec.read_text() if rec.exists() else ""
        box = RelayBox(hostbin("relayd"), f"host localhost\nport {srv.port}\ntls starttls\n"
                       f"{verify}\nuser relay\npassword-file smarthost.pass\n")
        try:
            box.enqueue(b"Subject: x\r\n\r\nhi\r\n", ["friend@remote.test"])
            box.start()
            box.wait(lambda: rec.exists() and rec.read_text() != old, what="a status record")
            return dict(line.split("=", 1) for line in rec.read_text().splitlines()), srv
        finally:
            box.cleanup()
            srv.stop()

    r, srv = attempt(f"verify ca\nca-file {ca.crt}")
    assert r["result"] == "ok" and r["fetched"] == "1" and r["failures"] == "0", r
    assert srv.messages
    r, srv = attempt("verify pin\npin " + "ab" * 32)
    assert r["result"] == "tls-pin" and r["failures"] == "1" and r["fetched"] == "0", r
    assert "does not match the pin" in r["detail"] and not srv.messages
