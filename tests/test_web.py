"""``mailprobe serve`` against the audit lab, in a real browser: Debian's chromium, headless,
driven by Selenium through Debian's chromedriver (nothing is downloaded). Also the safety rules
over plain HTTP: a target outside --allow gets a 403 page and is never touched."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.auditlab import CLOSED_ADDRESS, CLOSED_NAME, OPEN_ADDRESS, OPEN_NAME, AuditLab
from lab.process import free_port, wait_for_tcp
from mailprobe.probes.relay.catalogue import CATALOGUE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Chromium's own background traffic (updates, sync, QUIC probes) would try the Internet.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1100,1300")
RED, ORANGE, BLUE = "rgba(198, 40, 40, 1)", "rgba(232, 113, 10, 1)", "rgba(21, 101, 192, 1)"


@dataclass
class Page:
    base: str
    lab: AuditLab
    untouched: socket.socket  # listens where the refused target's SMTP would be


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    if os.geteuid() != 0:
        pytest.skip("Postfix needs root to start")
    with AuditLab(closed=False) as lab:
        # 127.0.0.26 (mx2.relaylab.test in DNS) is outside --allow: a listener on its SMTP
        # port proves that nothing ever connects to it
        untouched = socket.create_server((CLOSED_ADDRESS, lab.port))
        untouched.setblocking(False)
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
        server = subprocess.Popen(
            [sys.executable, "-m", "mailprobe", "serve", *lab.report_args(), "-t", "30",
             "--listen", f"127.0.0.1:{port}", "--allow", f"{OPEN_ADDRESS}/32", "--rate", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            stdin=subprocess.DEVNULL)
        try:
            assert server.stdout is not None
            first = server.stdout.readline()
            assert first.startswith(f"mailprobe serve: http://127.0.0.1:{port}/"), first
            wait_for_tcp("127.0.0.1", port)
            yield Page(f"http://127.0.0.1:{port}", lab, untouched)
        finally:
            server.terminate()
            server.wait(10)
            untouched.close()


def post(page: Page, host: str, *, json_too: bool = False,
         portscan: bool = False) -> tuple[int, str]:
    fields = {"host": host} | ({"portscan": "on"} if portscan else {})
    request = urllib.request.Request(page.base + "/check",
                                     data=urllib.parse.urlencode(fields).encode())
    if json_too:
        request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def never_connected(page: Page) -> bool:
    try:
        page.untouched.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def test_refused_target_gets_403_and_is_never_touched(page: Page) -> None:
    status, html = post(page, CLOSED_ADDRESS)
    assert status == 403
    assert 'id="refused" data-status="403"' in html
    assert f"{CLOSED_ADDRESS} ({CLOSED_ADDRESS}) is not inside the networks this page may " \
           f"test ({OPEN_ADDRESS}/32): nothing was sent to it" in html
    status, html = post(page, CLOSED_NAME)  # a name is resolved first, then refused
    assert status == 403 and f"{CLOSED_NAME} ({CLOSED_ADDRESS})" in html
    assert never_connected(page)


def test_bad_input_gets_an_html_error_page(page: Page) -> None:
    status, html = post(page, f"{OPEN_ADDRESS}; cat /etc/passwd")
    assert status == 400
    assert html.startswith("<!DOCTYPE html>") and "not an IP address or a host name" in html
    status, html = post(page, "")
    assert status == 400 and "give a host name or an IP address" in html


def test_json_by_accept_header_and_by_format(page: Page) -> None:
    status, body = post(page, OPEN_NAME, json_too=True)
    assert status == 200
    data = json.loads(body)
    assert data["complete"] is True and data["state"] == "CRITICAL"
    mailer = data["mailers"][0]
    assert mailer["target"] == OPEN_NAME and mailer["addresses"] == [OPEN_ADDRESS]
    states = {s["key"]: s["state"] for s in mailer["sections"]}
    assert states["relay"] == "CRITICAL" and states["identity"] == "OK"
    relay = next(s for s in mailer["sections"] if s["key"] == "relay")
    assert not any(line.strip() == "-> DATA" for line in relay["evidence"]["transcript"])
    with urllib.request.urlopen(f"{page.base}/report/{data['id']}?format=json",
                                timeout=30) as response:
        again = json.loads(response.read())
    assert again["mailers"][0]["sections"] == mailer["sections"]


def test_portscan_box_scans_the_target_only(page: Page) -> None:
    """The "also scan NETBIOS ports" box: the exposure section scans the target's addresses
    (nothing else), 139/445 and the submission ports; the lab mailer has none of them open."""
    status, body = post(page, OPEN_ADDRESS, json_too=True, portscan=True)
    assert status == 200
    sections = {s["key"]: s for s in json.loads(body)["mailers"][0]["sections"]}
    exposure = sections["exposure"]
    assert exposure["state"] == "OK", exposure
    assert exposure["evidence"]["ports"] == [139, 445, 465, 587]
    assert exposure["evidence"]["open"] == []
    status, body = post(page, OPEN_ADDRESS, json_too=True)
    assert {s["key"]: s for s in json.loads(body)["mailers"][0]["sections"]}["exposure"][
        "state"] == "SKIPPED"  # not asked: not judged


def test_serve_needs_allow() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
    proc = subprocess.run([sys.executable, "-m", "mailprobe", "serve"], capture_output=True,
                          text=True, env=env, timeout=30)
    assert proc.returncode == 2
    assert proc.stdout == ("mailprobe serve: bad option: give --allow CIDR for each network "
                           "the page may test (see --help)\n")


@pytest.fixture
def browser() -> Iterator[object]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (./dev setup)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mailprobe-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_browser_type_host_press_enter_sections_fill_in(page: Page, browser: object,
                                                        tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(page.base + "/")  # type: ignore[attr-defined]
    box = driver.find_element(By.ID, "host")  # type: ignore[attr-defined]
    assert box == driver.switch_to.active_element  # type: ignore[attr-defined]
    box.send_keys(OPEN_NAME, Keys.ENTER)
    WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-complete") == "true")

    def section(key: str):
        return driver.find_element(By.ID, f"m0-{key}")  # type: ignore[attr-defined]

    relay, dnsbl, identity = section("relay"), section("dnsbl"), section("identity")
    assert "level-critical" in relay.get_attribute("class")
    # the lab Postfix offers neither XCLIENT, XFORWARD nor AUTH, and no PTR name is tried
    assert (f"open relay: {len(CATALOGUE) - 7} of {len(CATALOGUE)} relay attempts accepted"
            in relay.text)
    assert "level-warning" in dnsbl.get_attribute("class")
    assert f"{OPEN_ADDRESS} is listed on bl.spamcop.net" in dnsbl.text and "Blocked" in dnsbl.text
    link = dnsbl.find_element(By.CSS_SELECTOR, ".links a")
    assert link.get_attribute("href") == f"https://www.spamcop.net/bl.shtml?{OPEN_ADDRESS}"
    assert "level-ok" in identity.get_attribute("class")
    assert f"{OPEN_ADDRESS} -> {OPEN_NAME} -> {OPEN_ADDRESS}" in identity.text
    # the colours as a person sees them: red, orange, blue
    badge = ".state"
    assert relay.find_element(By.CSS_SELECTOR, badge).value_of_css_property(
        "background-color") == RED
    assert dnsbl.find_element(By.CSS_SELECTOR, badge).value_of_css_property(
        "background-color") == ORANGE
    assert identity.find_element(By.CSS_SELECTOR, badge).value_of_css_property(
        "background-color") == BLUE
    assert "level-ok" in section("backscatter").get_attribute("class")  # refuses unknown users
    overall = driver.find_element(By.ID, "overall")  # type: ignore[attr-defined]
    assert overall.text == "CRITICAL"
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-state="PENDING"]')  # type: ignore[attr-defined]
    shot = tmp_path / "report.png"
    driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000
    print(f"screenshot of the report page: {shot}")
    keep = os.environ.get("MAILPROBE_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
