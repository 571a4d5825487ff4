"""The web admin page on the booted image, through the forwarded port 8443
(HTTPS) and 8080 (HTTP): the setup wizard guarded by the setup code from the
provisioning file, run by headless Chromium; then a user added on the page
logs in to IMAPS on the running box at once (admind saved the users file and
ran `sv hup` for imapd). Screenshots go to build/web-shots/e2e-*.png."""
import http.client
import imaplib
import pathlib
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
        finally:
            d.quit()
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
