"""Headless Chromium (selenium + Debian's chromedriver) runs the first-boot
wizard on the host build, then changes a setting on every page and checks
that it reached the configuration, the users file or the secrets. A
screenshot of each page is saved under build/web-shots/ (test artefacts,
not committed)."""
import pathlib
import sys
import tempfile

import pytest

from webbox import SETUP_CODE, TOP, WebBox

selenium = pytest.importorskip("selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers" / "chromium"))
from chrome import CHROME, DRIVER, browser, submit  # noqa: E402

SHOTS = TOP / "build" / "web-shots"


@pytest.fixture
def web(free_port):
    if not pathlib.Path(CHROME).exists() or not pathlib.Path(DRIVER).exists():
        pytest.skip("chromium / chromium-driver not installed")
    box = WebBox(free_port).start()
    tmp = tempfile.mkdtemp(prefix="chrome-", dir="/tmp")
    d = browser(tmp)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield box, d
    d.quit()
    box.stop()


class Page:
    def __init__(self, box, d, prefix):
        self.box, self.d, self.prefix = box, d, prefix

    def open(self, path):
        self.d.get(f"https://localhost:{self.box.port}{path}")

    def fill(self, name, value):
        el = self.d.find_element(By.NAME, name)
        if el.tag_name == "select":
            Select(el).select_by_visible_text(value)
        else:
            el.clear()
            el.send_keys(value)

    def submit(self, label):
        submit(self.d, label)

    def shot(self, name):
        self.d.save_screenshot(str(SHOTS / f"{self.prefix}-{name}.png"))

    def saved(self):
        notice = self.d.find_elements(By.CSS_SELECTOR, "p.notice")
        errs = [e.text for e in self.d.find_elements(By.CSS_SELECTOR, ".field-error, div.error")]
        assert notice and "Saved" in notice[0].text, errs


def test_wizard_then_every_page(web):
    box, d = web
    p = Page(box, d, "host")
    p.open("/")
    assert d.title.startswith("Set up this box")
    # a wrong code: the error is shown next to the field
    p.fill("code", "nope")
    p.fill("password", "Admin-pw-1")
    p.fill("password2", "Admin-pw-1")
    p.fill("mail-domain", "example.com")
    p.submit("Set up")
    err = d.find_element(By.ID, "f-code-err")
    assert "wrong setup code" in err.text
    assert d.find_element(By.ID, "f-code").get_attribute("aria-describedby").endswith("f-code-err")
    p.shot("setup-error")
    for name, value in [("code", SETUP_CODE), ("password", "Admin-pw-1"),
                        ("password2", "Admin-pw-1"), ("mail-domain", "example.com"),
                        ("account.name", "acme"), ("account.server", "pop.provider.example"),
                        ("account.tls", "implicit"), ("account.user", "office"),
                        ("account.password", "pop-secret"),
                        ("smarthost.host", "smtp.provider.example"), ("smarthost.port", "587"),
                        ("smarthost.user", "office"), ("smarthost.password", "smtp-secret")]:
        p.fill(name, value)
    p.shot("setup")
    p.submit("Set up")
    assert d.title.startswith("Dashboard"), d.page_source[:2000]
    p.saved()
    p.shot("dashboard")
    assert "[account acme]" in box.conf.read_text()

    p.open("/users")
    p.fill("name", "bob")
    p.fill("password", "Bob-pw-2")
    p.fill("password2", "Bob-pw-2")
    p.submit("Add user")
    p.saved()
    assert "bob" in d.find_element(By.TAG_NAME, "table").text
    p.shot("users")
    assert "user bob user" in box.users.read_text()

    p.open("/accounts?name=acme")
    p.fill("poll", "5m")
    p.submit("Save account")
    p.saved()
    p.shot("accounts")
    assert "poll 5m" in box.conf.read_text()

    p.open("/smarthost")
    p.fill("smarthost.port", "2525")
    p.submit("Save")
    p.saved()
    p.shot("smarthost")
    assert "port 2525" in box.conf.read_text()

    p.open("/network")
    p.fill("lan.dhcp-lease", "6h")
    p.submit("Save")
    p.saved()
    p.shot("network")
    assert "dhcp-lease 6h" in box.conf.read_text()

    p.open("/dns")
    p.fill("dns.host", "printer 192.168.10.20")
    p.submit("Save")
    p.saved()
    p.shot("dns")
    assert "host printer 192.168.10.20" in box.conf.read_text()

    p.open("/firewall")
    p.fill("firewall.log-blocked", "no")
    p.submit("Save")
    p.saved()
    p.shot("firewall")
    assert "log-blocked no" in box.conf.read_text()

    p.open("/certs")
    links = [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "main a")]
    assert any(h.endswith("/certs/ca.pem") for h in links)
    assert any(h.endswith("/certs/ca.der") for h in links)
    p.shot("certs")

    # your own certificate: a paste that is no certificate is refused
    # next to its field (test_web_cert.py installs real ones)
    p.open("/certs/install")
    p.fill("chain", "this is not a certificate")
    p.fill("key", "nor a key")
    p.submit("Install certificate")
    err = d.find_element(By.ID, "f-chain-err")
    assert "not a PEM certificate chain" in err.text
    assert "nor a key" not in d.page_source          # the key is never shown back
    p.shot("cert-install")

    p.open("/queue")
    assert "0 messages" in d.page_source
    p.shot("queue")

    p.open("/logs")
    p.fill("q", "smtpd")
    p.submit("Filter")
    log = d.find_element(By.CSS_SELECTOR, "pre.log").text
    assert "smtpd" in log and "imapd" not in log
    p.shot("logs")

    p.open("/password")
    p.fill("current", "Admin-pw-1")
    p.fill("password", "Admin-pw-9")
    p.fill("password2", "Admin-pw-9")
    p.submit("Change password")
    p.saved()
    p.shot("password")

    # sign out, sign in with the new password; bob sees only his password page
    p.submit("Sign out")
    assert d.title.startswith("Sign in")
    p.fill("user", "bob")
    p.fill("password", "Bob-pw-2")
    p.submit("Sign in")
    assert d.title.startswith("My password")
    assert not d.find_elements(By.LINK_TEXT, "Users")
    p.open("/users")
    assert "for administrators" in d.page_source
    p.shot("forbidden")
