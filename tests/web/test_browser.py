"""The web pages in a real headless Chromium against ``contimg web`` serving a small night processed for real.

Each test saves a screenshot under ``test-artifacts/web/``.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from .conftest import OPERATOR, artifacts_dir

pytestmark = pytest.mark.integration


def _shot(browser, name: str) -> None:
    browser.save_screenshot(str(artifacts_dir() / f"{name}.png"))


def _loaded(browser, element) -> bool:
    """True once an <img> has loaded real pixels."""
    return bool(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", element))


def _wait_loaded(browser, element, timeout: float = 60) -> None:
    """Scroll ``element`` into view (lazy images load there) and wait until its pixels arrived."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.execute_script("arguments[0].scrollIntoView()", element)
    WebDriverWait(browser, timeout).until(lambda b: _loaded(b, element),
                                          message=f"image {element.get_attribute('src')} did not load")


def _group_state(url: str, key: str) -> str:
    with urllib.request.urlopen(f"{url}/api/groups/{key}", timeout=10) as resp:
        return json.load(resp)["state"]


def _login(browser, url: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/login")
    browser.find_element(By.NAME, "user").send_keys(user)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    # the login's redirect has set the cookie once the header names the user
    _until(browser, lambda b: f"{user} (" in b.find_element(By.CSS_SELECTOR, "header .who").text,
           "the login did not complete")


def _until(browser, condition, message: str, timeout: float = 30):
    """Wait for ``condition(browser)``, through the moments a navigation leaves no element or a stale one (a loaded
    machine is slow to load the next page: the review test read the old page once)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(condition, message=message)


def test_overview_lists_the_nights_groups(web_server, browser):
    from selenium.webdriver.common.by import By

    browser.get(web_server["url"] + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#groups tbody tr")
    links = [r.find_element(By.TAG_NAME, "a").text for r in rows]
    assert sorted(links) == sorted(web_server["keys"])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline a.tick.state-completed")) == len(web_server["keys"])
    assert "completed 2" in browser.find_element(By.ID, "counts").text
    _shot(browser, "overview")


def test_group_page_shows_its_images(web_server, browser):
    from selenium.webdriver.common.by import By

    key = web_server["keys"][0]
    browser.get(f"{web_server['url']}/groups/{key}")
    assert key in browser.find_element(By.TAG_NAME, "h1").text
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#images img.thumb")
    assert thumbs
    for t in thumbs:
        _wait_loaded(browser, t)
    assert "QA" in browser.find_element(By.ID, "images").text
    calplots = browser.find_elements(By.CSS_SELECTOR, "img.calplot")
    assert calplots
    for p in calplots:
        _wait_loaded(browser, p)
    browser.execute_script("window.scrollTo(0, 0)")
    _shot(browser, "group")


def test_source_page_draws_its_light_curve(web_server, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{web_server['url']}/sources/{web_server['source_id']}")
    lc = browser.find_element(By.ID, "lightcurve")
    _wait_loaded(browser, lc)
    assert browser.execute_script("return arguments[0].naturalWidth", lc) >= 600
    cutouts = browser.find_elements(By.CSS_SELECTOR, "#cutouts img")  # one strip, all epochs on one scale
    assert cutouts
    for c in cutouts:
        _wait_loaded(browser, c)
    _shot(browser, "source")


def test_an_unauthenticated_reprocess_is_refused(web_server, browser):
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    key = web_server["keys"][-1]
    browser.get(f"{web_server['url']}/groups/{key}")
    browser.find_element(By.CSS_SELECTOR, "#reprocess button").click()
    from selenium.webdriver.support.ui import WebDriverWait

    detail = WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "error-detail"),
                                              message="no error page after the refused form")[0]
    assert "log in as an operator" in detail.text
    _shot(browser, "reprocess_refused")
    assert _group_state(web_server["url"], key) == "completed"


def test_an_authenticated_reprocess_enqueues(web_server, browser):
    import redis
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    key = web_server["keys"][-1]
    _login(browser, web_server["url"], *OPERATOR)
    browser.get(f"{web_server['url']}/groups/{key}")
    Select(browser.find_element(By.NAME, "from_stage")).select_by_visible_text("image")
    browser.find_element(By.CSS_SELECTOR, "#reprocess button").click()
    _until(browser, lambda b: f"reprocessing {key}" in b.find_element(By.ID, "message").text,
           "no confirmation after the reprocess form")
    _shot(browser, "reprocess_accepted")
    assert _group_state(web_server["url"], key) == "pending"
    client = redis.Redis.from_url(web_server["redis"].url)
    from contimg.pipeline.stages import CONTROL_QUEUE

    # the run's first task (its start, on the control queue) waits in the real broker, naming the group
    messages = client.lrange(CONTROL_QUEUE, 0, -1)
    import base64

    assert len(messages) == 1, messages
    body = json.loads(base64.b64decode(json.loads(messages[0])["body"]))  # [args, kwargs, embed]
    assert body[1]["group_key"] == key, body
    browser.delete_all_cookies()


def test_an_operator_reviews_a_candidate(web_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _login(browser, web_server["url"], *OPERATOR)
    browser.get(f"{web_server['url']}/candidates")
    row = browser.find_element(By.CSS_SELECTOR, "#candidates tbody tr")
    Select(row.find_element(By.NAME, "status")).select_by_visible_text("confirmed")
    row.find_element(By.NAME, "notes").send_keys("dip seen by eye")
    row.find_element(By.CSS_SELECTOR, "button").click()
    _until(browser, lambda b: "is now confirmed" in b.find_element(By.ID, "message").text,
           "no confirmation after the review form")
    row = browser.find_element(By.CSS_SELECTOR, "#candidates tbody tr")
    assert row.find_element(By.CSS_SELECTOR, "td.status").text == "confirmed"
    _shot(browser, "candidates")
    browser.delete_all_cookies()


def test_no_secret_in_pages_or_the_server_log(web_server, browser):
    pages = ["/", f"/groups/{web_server['keys'][0]}", "/candidates", "/sources", "/login"]
    _login(browser, web_server["url"], *OPERATOR)
    for page in pages:
        browser.get(web_server["url"] + page)
        assert OPERATOR[1] not in browser.page_source
    browser.delete_all_cookies()
    assert OPERATOR[1] not in web_server["log"].read_text()
