"""Headless Debian Chromium for the admin-page tests (host build and booted
image): a browser that cannot reach anything but localhost, and a form
submit that waits for the next page without racing the navigation."""
import tempfile

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROME = "/usr/lib/chromium/chromium"
DRIVER = "/usr/bin/chromedriver"


def browser(profile=None):
    o = webdriver.ChromeOptions()
    o.binary_location = CHROME
    profile = profile or tempfile.mkdtemp(prefix="chrome-", dir="/tmp")
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1100,1400", f"--user-data-dir={profile}",
              "--proxy-server=http://127.0.0.1:9",
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--no-first-run", "--no-default-browser-check"]:
        o.add_argument(a)
    o.accept_insecure_certs = True
    return webdriver.Chrome(service=Service(DRIVER), options=o)


def submit(d, label, timeout=60):
    """Clicks the button and waits until a new document has replaced this
    one and finished loading. The old document is marked with a window
    property, which a new page does not have; asking an element of the
    old page whether it went stale races the navigation (chromedriver
    then reports 'Node with given id does not belong to the document')."""
    d.execute_script("window.__posternOldPage = true")
    d.find_element(By.XPATH, f"//button[normalize-space()='{label}']").click()

    def loaded(drv):
        try:
            return drv.execute_script(
                "return window.__posternOldPage !== true && document.readyState === 'complete'")
        except WebDriverException:
            return False        # mid-navigation: ask again
    WebDriverWait(d, timeout).until(loaded)
