"""The web admin page on the booted image, through the forwarded port 8443
(HTTPS) and 8080 (HTTP): the setup wizard guarded by the setup code from the
provisioning file, run by headless Chromium; then a user added on the page
logs in to IMAPS on the running box at once (admind saved the users file and
ran `sv hup` for imapd); a custom certificate pasted on /certs/install is
then served by the restarted imapd and webd; then the network page changes the DHCP range and
the LAN address, which the running box follows without a reboot (ip addr,
iptables-save, udhcpd's configuration, the daemons restarted on the new
address). Screenshots go to build/web-shots/e2e-*.png."""
import http.client
import imaplib
import pathlib
import socket
import subprocess
import re
import ssl
import sys
import time

import pytest

from box import Box, TOP

selenium = pytest.importorskip("selenium")
from selenium.webdriver.common.by import By  # noqa: E402

sys.path.insert(0, str(TOP / "tests" / "integration" / "peers" / "chromium"))
from chrome import DRIVER, browser, submit as _submit  # noqa: E402

CODE = "E2E-WEB-7"
CONF = f"""# provisioned by tests/e2e/test_web_box.py
# setup-code: {CODE}
hostname        webbox
mail-domain     example.com
internal-domain office.lan

[lan]
address         192.168.77.1/24
"""
SHOTS = TOP / "build" / "web-shots"


def chrome():
    return browser()


def submit(d, label):
    _submit(d, label, timeout=120)      # TCG-emulated box: slower pages


def fill(d, fields):
    for name, value in fields.items():
        el = d.find_element(By.NAME, name)
        el.clear()
        el.send_keys(value)


def wait_https(port, deadline):
    ctx = ssl._create_unverified_context()
    while True:
        try:
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
            c.request("GET", "/")
            return c.getresponse().status
        except OSError:
            assert time.monotonic() < deadline, "webd did not answer on 8443"
            time.sleep(1)   # the forward exists before webd listens: poll


def poll(box, cmd, want, timeout=90):
    """Runs cmd on the console until its output holds want (services
    restart asynchronously under runit)."""
    deadline = time.monotonic() + timeout
    while True:
        out = box.sh(cmd, check=False)
        if want in out:
            return out
        assert time.monotonic() < deadline, f"{cmd}: {want!r} never came:\n{out}"
        time.sleep(1)


def network_range(box, d, base):
    """A new DHCP range: udhcpd restarted with it, the address unchanged."""
    assert "start 192.168.77.128" in box.sh("cat /run/postern/udhcpd.conf")
    d.get(base + "/network")
    fill(d, {"lan.dhcp-range": "192.168.77.150 192.168.77.160"})
    submit(d, "Save")
    assert "Saved" in d.find_element(By.CSS_SELECTOR, "p.notice").text, d.page_source[:3000]
    poll(box, "cat /run/postern/udhcpd.conf", "start 192.168.77.150")
    assert " inet 192.168.77.1/24 " in box.sh("ip -4 -o addr show")


def network_address(box, d, base):
    """A new LAN address: the page answers through the old one and names the
    new; then the box has moved (the forwarded ports end with the old
    address, so the rest is checked on the console)."""
    d.get(base + "/network")
    fill(d, {"lan.address": "192.168.78.1/24", "lan.dhcp-range": "192.168.78.100 192.168.78.120"})
    submit(d, "Save")
    d.save_screenshot(str(SHOTS / "e2e-network-moved.png"))
    assert "The LAN address has changed" in d.page_source, d.page_source[:3000]
    assert "https://192.168.78.1/" in d.page_source
    assert " inet 192.168.78.1/24 " in box.sh("ip -4 -o addr show")
    rules = box.sh("iptables-save -t filter")
    assert "-s 192.168.78.0/24" in rules and "192.168.77.0/24" not in rules, rules
    poll(box, "cat /run/postern/udhcpd.conf", "start 192.168.78.100")
    assert "POSTERN_LAN_ADDR=192.168.78.1" in box.sh("cat /run/postern/mail.env")
    poll(box, "netstat -ltn", "192.168.78.1:993")      # imapd restarted on the new address
    poll(box, "netstat -ltn", "192.168.78.1:443")      # and webd
    # the old address goes once the page's answer is out (POSTERN_LAN_GRACE)
    poll(box, "ip -4 -o addr show | grep -c 192.168.77.1", "0")
    conf = box.sh("cat /data/etc/postern.conf")
    assert re.search(r"^address\s+192\.168\.78\.1/24$", conf, re.M), conf


def served_der(port, deadline):
    """The leaf a forwarded TLS port serves now (retried while the daemon
    restarts)."""
    ctx = ssl._create_unverified_context()
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                with ctx.wrap_socket(raw) as t:
                    return t.getpeercert(binary_form=True)
        except OSError:
            assert time.monotonic() < deadline, f"nothing served on {port}"
            time.sleep(1)


def custom_cert(box, d, base, tmp):
    """A certificate made with openssl, pasted on /certs/install: the
    restarted imapd and webd serve it; the key is root's 0600."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-keyout",
                    str(tmp / "own.key"), "-out", str(tmp / "own.pem"), "-subj",
                    "/CN=webbox.office.lan", "-addext", "subjectAltName=DNS:webbox.office.lan"],
                   check=True, capture_output=True)
    pem = (tmp / "own.pem").read_text()
    d.get(base + "/certs/install")
    fill(d, {"chain": pem, "key": (tmp / "own.key").read_text()})
    submit(d, "Install certificate")
    d.save_screenshot(str(SHOTS / "e2e-cert-installed.png"))
    assert "Installed." in d.page_source and "Warning" not in d.page_source, d.page_source[:3000]
    der = ssl.PEM_cert_to_DER_cert(pem)
    for name in ("IMAPS", "HTTPS"):
        deadline = time.monotonic() + 120
        while served_der(box.ports[name], deadline) != der:
            assert time.monotonic() < deadline, f"{name} still serves the old certificate"
            time.sleep(1)
    out = box.sh("stat -c '%a %u %g' /data/secrets/tls/server.key; ls /data/secrets/tls")
    assert out.startswith("600 0 0\n") and "admin-installed" in out, out


def bob_logs_in(box):
    """The user added on the page logs in to IMAPS at once."""
    out = box.sh("grep -c '^user bob user' /data/etc/users; ls -l /data/etc/users")
    assert out.splitlines()[0].strip() == "1", out
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 60
    while True:   # imapd reloads the users file on the HUP admind sent
        m = imaplib.IMAP4_SSL("127.0.0.1", box.ports["IMAPS"], ssl_context=ctx, timeout=120)
        try:
            m.login("bob", "Bob-pw-2")
            break
        except imaplib.IMAP4.error:
            assert time.monotonic() < deadline
        finally:
            m.logout()


def test_web_on_the_box(tmp_path):
    if not pathlib.Path(DRIVER).exists():
        pytest.skip("chromium-driver not installed")
    conf = tmp_path / "postern.conf"
    conf.write_text(CONF)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with Box(tmp_path, provision=conf) as box:
        box.wait_ready()
        https, http_port = box.ports["HTTPS"], box.ports["HTTP"]
        assert wait_https(https, time.monotonic() + 120) == 303   # setup first
        c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
        c.request("GET", "/users", headers={"Host": "webbox.office.lan"})
        r = c.getresponse()
        assert r.status == 301 and r.getheader("Location") == "https://webbox.office.lan/users"
        d = chrome()
        try:
            base = f"https://localhost:{https}"
            d.get(base + "/")
            assert d.title.startswith("Set up this box")
            fill(d, {"code": CODE.lower(), "password": "Admin-pw-1", "password2": "Admin-pw-1",
                     "mail-domain": "example.com", "lan.address": "192.168.77.1/24"})
            d.save_screenshot(str(SHOTS / "e2e-setup.png"))
            submit(d, "Set up")
            assert d.title.startswith("Dashboard"), d.page_source[:3000]
            d.save_screenshot(str(SHOTS / "e2e-dashboard.png"))
            d.get(base + "/users")
            fill(d, {"name": "bob", "password": "Bob-pw-2", "password2": "Bob-pw-2"})
            submit(d, "Add user")
            assert "Saved" in d.find_element(By.CSS_SELECTOR, "p.notice").text
            d.save_screenshot(str(SHOTS / "e2e-users.png"))
            bob_logs_in(box)
            custom_cert(box, d, base, tmp_path)
            # last: once the LAN address moves, the forwarded ports end
            network_range(box, d, base)
            network_address(box, d, base)
        finally:
            d.quit()
