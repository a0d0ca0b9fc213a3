"""The web console in a real browser (Debian's chromium + chromium-driver, headless, via Selenium)
against a live service: sign in, enrol two known people, identify a photo of both, read the labels
drawn on it, delete one, and a read key that sees no admin actions.

Screenshots go to ``FACEREC_SCREENSHOTS`` when set (the README's come from there), else a temp dir.
Without a browser the tests skip, unless ``FACEREC_REQUIRE_BROWSER=1`` (CI sets it) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.config import Settings
from app.keys import key_store
from app.testing import ADMIN_KEY, LiveServer

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("FACEREC_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and chromedriver are required (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium/chromedriver on this machine")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    with LiveServer(tmp / "state", tmp / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("FACEREC_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait(driver, condition, timeout: float = 120):
    """Wait for ``condition``; on timeout, fail with what the page shows (its error box and text)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(lambda d: condition(d))
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text
        pytest.fail(f"timed out; the page shows:\n{body[:2000]}")


def sign_in(driver, live: LiveServer, key: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(live.url + "/ui/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(live.url + "/ui/")
    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()


def tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f'.tab[data-tab="{name}"]').click()


def test_enrol_identify_and_delete_in_the_browser(browser, live, known: Path, data: Path, shots: Path):
    from selenium.webdriver.common.by import By

    d = browser
    sign_in(d, live, "wrong-key-0123456789abc")
    wait(d, lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "invalid_api_key" in d.find_element(By.ID, "error").text  # an error, never a blank page

    sign_in(d, live, ADMIN_KEY)
    wait(d, lambda d: "admin key" in d.find_element(By.ID, "who").text)
    assert not d.find_element(By.ID, "error").is_displayed()

    def enrol(name: str, photos: list[Path]) -> list[str]:
        tab(d, "enroll")
        box = d.find_element(By.ID, "enroll-name")
        box.clear()
        box.send_keys(name)
        files = d.find_element(By.ID, "enroll-files")
        assert files.get_attribute("value") == ""  # the form was reset after the last person
        files.send_keys("\n".join(str(p) for p in photos))
        d.find_element(By.CSS_SELECTOR, "#enroll-form button").click()
        wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#enroll-report li")) == len(photos) + 1)
        return [li.text for li in d.find_elements(By.CSS_SELECTOR, "#enroll-report li")]

    obama = sorted((known / "train" / "obama").iterdir())
    assert enrol("obama", obama)[-1] == f"obama: {len(obama)} of {len(obama)} photos enrolled."
    report = enrol("biden", [known / "train" / "biden" / "biden.jpg", data / "photos" / "crowds" / "dogs.jpg"])
    assert report[0] == "biden.jpg: enrolled" and report[-1] == "biden: 1 of 2 photos enrolled."
    assert report[1].startswith("dogs.jpg: ") and "0 faces" in report[1]  # the API's own words
    d.save_screenshot(str(shots / "enroll.png"))

    tab(d, "identify")
    d.find_element(By.ID, "identify-file").send_keys(str(known / "test" / "obama_and_biden.jpg"))
    d.find_element(By.CSS_SELECTOR, '#fpr option[value="0.01"]').click()
    d.find_element(By.CSS_SELECTOR, "#identify-form button").click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#identify-faces li[data-label]"))
    labels = [li.get_attribute("data-label") for li in d.find_elements(By.CSS_SELECTOR, "#identify-faces > li")]
    assert {"obama", "biden"} <= set(labels), labels
    # The labels are drawn on the photo: green boxes for matches (#1a7f37) are on the canvas.
    green = d.execute_script(
        "const c = document.getElementById('identify-canvas'); const px = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 0; i < px.length; i += 4) if (px[i] === 26 && px[i+1] === 127 && px[i+2] === 55) n++; return n;"
    )
    assert green > 500, green
    first = d.find_element(By.CSS_SELECTOR, "#identify-faces > li button")
    first.click()  # the top candidates of a face, on click
    assert first.get_attribute("aria-expanded") == "true"
    assert d.find_element(By.CSS_SELECTOR, "#identify-faces > li .candidates").is_displayed()
    d.save_screenshot(str(shots / "identify.png"))
    # Another operating point re-labels from the same answer: no new request, a new threshold.
    d.find_element(By.CSS_SELECTOR, '#fpr option[value="0.0001"]').click()
    wait(d, lambda d: "0.0001" in d.find_element(By.ID, "identify-summary").text)

    tab(d, "verify")  # 1:1: a photo against an enrolled person, then against another photo
    with live.client() as api:
        obama_id = next(i["id"] for i in api.get("/identities").json() if i["name"] == "obama")
    d.find_element(By.ID, "verify-a").send_keys(str(known / "test" / "obama1.jpg"))
    d.find_element(By.CSS_SELECTOR, 'input[name="verify-with"][value="identity"]').click()
    d.find_element(By.ID, "verify-identity").send_keys(str(obama_id))
    d.find_element(By.CSS_SELECTOR, "#verify-form button").click()
    wait(d, lambda d: d.find_element(By.ID, "verify-verdict").text)
    assert d.find_element(By.ID, "verify-verdict").text == "Same person as obama (2 enrolled faces)"
    d.save_screenshot(str(shots / "verify.png"))
    d.find_element(By.CSS_SELECTOR, 'input[name="verify-with"][value="photo"]').click()
    d.find_element(By.ID, "verify-b").send_keys(str(known / "train" / "biden" / "biden.jpg"))
    d.find_element(By.CSS_SELECTOR, "#verify-form button").click()
    wait(d, lambda d: "second photo" in d.find_element(By.ID, "verify-verdict").text)
    assert d.find_element(By.ID, "verify-verdict").text == "Not the same person as the second photo"

    tab(d, "gallery")
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery-table tbody tr")) == 2)
    search = d.find_element(By.ID, "gallery-search")
    search.send_keys("OBA")
    d.find_element(By.CSS_SELECTOR, "#gallery-form button").click()
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery-table tbody tr")) == 1)
    d.save_screenshot(str(shots / "gallery.png"))
    d.find_element(By.CSS_SELECTOR, '#gallery-table button[aria-label="Delete obama"]').click()
    alert = wait(d, lambda d: d.switch_to.alert)
    assert "Delete obama" in alert.text
    alert.accept()
    wait(d, lambda d: "Nobody matches" in d.find_element(By.ID, "gallery-caption").text)
    with live.client() as api:
        assert [i["name"] for i in api.get("/identities").json()] == ["biden"]

    tab(d, "model")
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#model-table tbody tr"))
    assert "LFW accuracy" in d.find_element(By.ID, "model-facts").text
    d.save_screenshot(str(shots / "model.png"))
    d.set_window_size(390, 844)  # a phone
    tab(d, "identify")
    d.save_screenshot(str(shots / "phone.png"))
    width = d.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400, f"the page scrolls sideways at phone width ({width} px)"
    d.set_window_size(1200, 900)


def test_a_read_key_sees_no_admin_actions(browser, live):
    from selenium.webdriver.common.by import By

    store = key_store(Settings(state_dir=live.state_dir))
    _, key = store.create(name="kiosk", role="read")
    sign_in(browser, live, key)
    wait(browser, lambda d: "read key" in d.find_element(By.ID, "who").text)
    assert not browser.find_element(By.CSS_SELECTOR, '.tab[data-tab="enroll"]').is_displayed()
    tab(browser, "gallery")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery-table tbody tr"))
    assert not [b for b in browser.find_elements(By.CSS_SELECTOR, "#gallery-table button") if b.is_displayed()]


def test_the_console_is_served_with_a_strict_content_security_policy(client):
    """Only the console's own files may run or load; it cannot be framed."""
    r = client.get("/ui/")
    assert r.status_code == 200 and "facerec console" in r.text
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in client.get("/ui/app.js").headers


def test_the_api_docs_render_from_the_services_own_files(browser, live):
    """Swagger UI (/docs) and ReDoc (/redoc) draw the API in the browser from scripts and styles the
    service serves: they work on a machine with no internet. (ReDoc's sidebar shows Redocly's logo
    from their CDN, a picture; offline it is missing and nothing else is.)"""
    from selenium.webdriver.common.by import By

    for page, drawn in (
        ("/docs", lambda d: d.find_elements(By.XPATH, "//*[contains(@class,'opblock-summary-path')][.='/identify']")),
        ("/redoc", lambda d: "Self-hosted face recognition" in d.find_element(By.TAG_NAME, "body").text),
    ):
        browser.get(live.url + page)
        wait(browser, drawn, timeout=60)
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').filter(e => e.initiatorType != 'img').map(e => e.name)"
        )
        assert loaded and all(url.startswith(live.url + "/") for url in loaded), (page, loaded)


def test_the_api_docs_pages_name_only_files_the_service_serves(client):
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls and all(u.startswith("/docs-assets/") for u in urls), (page, urls)
        for url in urls:
            assert client.get(url).status_code == 200, url
