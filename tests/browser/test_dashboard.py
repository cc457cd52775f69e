"""The dashboard in a real browser (Debian's headless Chromium, driven by Selenium through
the system chromedriver) against a running daemon with real jobs: what each page shows,
the one action, the token prompt, a phone-width screen, keyboard use, and no console
errors anywhere. Every wait is on a condition in the page; screenshots go to a temp dir.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.integration.test_api_support import Setup, wait_taken
from tests.support import browser
from tests.support.helpers import wait_for, write_config

REASON = browser.missing()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no browser for the dashboard tests: {REASON}")

if REASON is None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

PACED_FILES = 120
PACE = 0.1  # seconds per file: a job of about twelve seconds, committing every two


def configure(setup: Setup, *, token: bool = False) -> Setup:
    """The API tests' sources (inbox; fx, scheduled, third-party; needy, missing its
    dependency; off, disabled), with fx listing its folder slowly."""
    setup.write(plugins=True, token=token)
    data = setup.root / "fixture-data"
    http = {"listen": "127.0.0.1:0", **({"token_file": str(setup.token_file)} if token else {})}
    write_config(setup.config, daemon={"state_dir": "state", "log_format": "json", "shutdown_timeout": 10}, http=http,
                 sources=[{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": 0.2},
                          {"name": "fx", "kind": "fixture", "folder": str(data), "every": "1h", "pace": PACE},
                          {"name": "needy", "kind": "needy"},
                          {"name": "off", "kind": "local", "path": "inbox", "enabled": False}])
    return setup


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One daemon for most tests here, with inbox documents, two versions of one of them
    and fx's first scheduled run done."""
    setup = configure(Setup(tmp_path_factory.mktemp("dashboard")))
    try:
        d = setup.start(setup.daemon(plugins=True))
        client = setup.client(d)
        wait_for(lambda: client.get("/jobs?source=fx&status=succeeded").json["jobs"], timeout=30,
                 message="fx's first scheduled run")
        for i in range(5):
            (setup.inbox / f"report-{i}.txt").write_bytes(b"first version %d\n" % i)
        wait_taken(setup, client)
        (setup.inbox / "report-0.txt").write_bytes(b"second version, longer than the first\n")
        wait_taken(setup, client)
        yield setup, d, client
        client.close()
        assert d.stop() == 0
    finally:
        setup.close()


@pytest.fixture(scope="module")
def chrome():
    with browser.browser() as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


def until(driver, condition, timeout: float = 30, message: str = ""):
    """The pages redraw as they poll: an element read as it is replaced is read again."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message)


def load(driver, url: str, page: str):
    """A full load of `url` (a fresh document, not a hash change), once `page` has drawn."""
    driver.get("about:blank")
    driver.get(url)
    browser.wait_ready(driver, page)


def text(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def rows(driver, table: str) -> list[list[str]]:
    """The table's cells as shown, read in one go (the page may redraw between two reads)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)]"
        ".map(tr => [...tr.querySelectorAll('td')].map(td => td.innerText.trim()))", table)


def first_status(driver) -> str | None:
    """The status of the newest job on the Jobs list, or None while the list is (re)drawn."""
    listed = rows(driver, "jobs")
    return listed[0][3] if listed else None


def no_console_errors(driver) -> None:
    entries = browser.console(driver)
    assert browser.errors(entries) == [], entries


def shot(driver, shots, name: str) -> None:
    driver.save_screenshot(str(shots / f"{name}.png"))


# -- Overview ------------------------------------------------------------------------------


def source_rows(driver) -> dict[str, dict[str, str]]:
    out = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#sources tbody tr"):
        cells = {td.get_attribute("data-label"): td for td in tr.find_elements(By.CSS_SELECTOR, "td")}
        out[cells["Source"].text] = {
            "state": cells["State"].find_element(By.CSS_SELECTOR, "[data-state]").get_attribute("data-state"),
            "state_text": cells["State"].text, "documents": cells["Documents"].text,
            "button": cells["Action"].find_element(By.CSS_SELECTOR, "button").is_enabled(),
        }
    return out


def test_overview_shows_health_each_sources_state_and_the_last_hour(site, chrome, shots):
    setup, d, client = site
    load(chrome, d.base_url + "/", "overview")
    assert text(chrome, "#health-title") == "Health: healthy"
    sources = source_rows(chrome)
    assert list(sources) == ["inbox", "fx", "needy", "off"]
    assert sources["inbox"]["state"] == "idle" and sources["inbox"]["documents"] == "5"
    assert sources["fx"]["state"] == "idle" and sources["fx"]["button"]
    assert sources["needy"]["state"] == "unavailable" and not sources["needy"]["button"]
    assert "pip install 'ingestd[needy]'" in sources["needy"]["state_text"]  # the remediation, shown
    assert sources["off"]["state"] == "disabled" and not sources["off"]["button"]
    fx = client.get("/sources").json["sources"][1]
    assert fx["schedule"] in text(chrome, "#sources tbody tr:nth-child(2)")
    charts = chrome.find_elements(By.CSS_SELECTOR, "#charts-box figure")
    assert [c.get_attribute("data-chart") for c in charts] == ["files", "bytes", "errors", "queue_depth"]
    # the files chart shows the ingest once its slot is whole (the page re-reads it every 10 s)
    until(chrome, lambda dr: "peak 0.0" not in dr.find_element(By.CSS_SELECTOR, "[data-chart=files] svg")
          .get_attribute("aria-label"), timeout=40, message="the files chart to show the ingest")
    shot(chrome, shots, "overview")
    no_console_errors(chrome)


def test_ingest_now_asks_first_then_starts_a_job(site, chrome, shots):
    setup, d, client = site
    before = {j["job_id"] for j in client.get("/jobs?source=inbox").json["jobs"]}
    load(chrome, d.base_url + "/", "overview")
    button = chrome.find_element(By.CSS_SELECTOR, "button[data-source=inbox]")
    button.click()
    dialog = chrome.find_element(By.ID, "confirm")
    until(chrome, lambda _: dialog.get_attribute("open") is not None, message="the confirmation")
    assert "inbox" in text(chrome, "#confirm-text")
    shot(chrome, shots, "confirm")
    chrome.find_element(By.CSS_SELECTOR, "#confirm button[value=cancel]").click()
    until(chrome, lambda _: dialog.get_attribute("open") is None, message="the dialog to close")
    assert {j["job_id"] for j in client.get("/jobs?source=inbox").json["jobs"]} == before  # nothing started
    chrome.find_element(By.CSS_SELECTOR, "button[data-source=inbox]").click()
    until(chrome, lambda _: dialog.get_attribute("open") is not None, message="the confirmation")
    chrome.find_element(By.ID, "confirm-ok").click()
    notice = until(chrome, lambda dr: dr.find_elements(By.CSS_SELECTOR, ".result .notice.ok"), message="the answer")
    job_link = notice[0].find_element(By.CSS_SELECTOR, "a")
    job_id = job_link.text
    assert job_id not in before
    assert client.get(f"/ingest/{job_id}").json["trigger"] == "api"
    job_link.click()
    until(chrome, lambda dr: dr.execute_script("return document.body.dataset.ready") == "job")
    until(chrome, lambda dr: dr.find_element(By.CSS_SELECTOR, "#job-facts [data-state]").get_attribute("data-state")
          == "succeeded", message="the job to finish on its page")
    no_console_errors(chrome)


# -- Jobs ---------------------------------------------------------------------------------------


def test_a_running_job_updates_live_on_the_list_and_on_its_page(site, chrome, shots):
    setup, d, client = site
    data = setup.root / "fixture-data"
    for i in range(PACED_FILES):
        (data / f"paced-{i:03d}.txt").write_bytes(b"paced %d\n" % i)
    for name in ("link-1.txt", "link-2.txt"):  # symlinks are not followed: two skipped items...
        (data / name).symlink_to(data / "one.txt")
    (data / "folder.txt").mkdir()  # ...and a folder, not a regular file: another error code
    load(chrome, d.base_url + "/#/jobs?source=fx", "jobs")
    shown = len(rows(chrome, "jobs"))
    job_id = client.post("/ingest", {"source": "fx"}).json["job_id"]
    # the list picks the new job up by itself, and its status moves on without a reload
    until(chrome, lambda dr: len(rows(dr, "jobs")) == shown + 1, message="the new job on the list")
    until(chrome, lambda dr: first_status(dr) == "running", message="the job running on the list")
    assert all(r[1] == "fx" for r in rows(chrome, "jobs"))
    chrome.find_element(By.LINK_TEXT, job_id).click()
    until(chrome, lambda dr: dr.execute_script("return document.body.dataset.ready") == "job")
    seen: list[tuple[str, int]] = []
    progress: list[tuple[str, str, str]] = []  # (status, phase, items done) as the Progress line showed them

    def observe(dr):
        state, counters, shown = dr.execute_script(
            "const c = {}; for (const dt of document.querySelectorAll('#counters dt')) "
            "c[dt.textContent] = dt.nextElementSibling.textContent;"
            "const p = document.querySelector('#job-progress');"
            "const s = document.querySelector('#job-facts [data-state]');"
            "return [s && s.dataset.state, c, p && [p.dataset.phase, p.dataset.done, p.textContent]]")
        if shown and (not progress or progress[-1][:3] != (state, *shown[:2])):
            progress.append((state, *shown))
        ingested = int(counters.get("ingested", "0").replace(",", ""))
        if not seen or seen[-1] != (state, ingested):
            seen.append((state, ingested))
            if state == "running" and len(seen) == 2:
                shot(chrome, shots, "job-running")
                assert "so far" in dr.find_element(By.ID, "job-facts").text  # its duration grows too
        return state in ("succeeded", "partial", "failed")

    until(chrome, observe, timeout=60, message="the job to finish")
    moving = {n for state, n in seen if state == "running" and n > 0}
    assert len(moving) >= 2, seen  # the counters moved while it ran, seen without a reload
    assert seen[-1] == ("succeeded", PACED_FILES), seen
    assert "so far" not in text(chrome, "#job-facts")
    # a running job's progress line moved with it, and went when it ended
    assert len({done for state, _phase, done, _text in progress if state == "running" and int(done) > 0}) >= 2, progress
    assert all(" items" in line for *_, line in progress), progress
    assert not chrome.find_elements(By.ID, "job-progress")
    chrome.back()
    until(chrome, lambda dr: dr.execute_script("return document.body.dataset.ready") == "jobs")
    until(chrome, lambda dr: first_status(dr) == "succeeded", message="the list to catch up")
    no_console_errors(chrome)


def test_jobs_filter_by_source_and_status_with_the_keyboard(site, chrome):
    setup, d, client = site
    load(chrome, d.base_url + "/#/jobs", "jobs")
    until(chrome, lambda dr: len(dr.find_elements(By.CSS_SELECTOR, "#f-source option")) == 5, message="sources")
    assert {r[1] for r in rows(chrome, "jobs")} >= {"inbox", "fx"}
    select = chrome.find_element(By.ID, "f-source")
    assert chrome.find_element(By.CSS_SELECTOR, "label[for=f-source]").text == "Source"
    select.send_keys("inbox")  # typing picks the option, as a keyboard user would
    until(chrome, lambda dr: "source=inbox" in dr.current_url, message="the filter to apply")
    until(chrome, lambda dr: dr.execute_script("return document.body.dataset.ready") == "jobs")
    until(chrome, lambda dr: {r[1] for r in rows(dr, "jobs")} == {"inbox"}, message="only inbox's jobs")
    chrome.find_element(By.ID, "f-status").send_keys("failed")
    until(chrome, lambda dr: "status=failed" in dr.current_url and "source=inbox" in dr.current_url)
    until(chrome, lambda dr: dr.execute_script("return document.body.dataset.ready") == "jobs")
    assert text(chrome, "#jobs-box") == "No jobs match."
    no_console_errors(chrome)


def test_a_jobs_page_groups_errors_and_pages_its_items(site, chrome, shots):
    setup, d, client = site
    job = next(j for j in client.get("/jobs?source=fx").json["jobs"] if j["counters"]["ingested"] == PACED_FILES)
    load(chrome, d.base_url + f"/#/jobs/{job['job_id']}", "job")
    codes: dict[str, list[str]] = {}
    for e in job["errors"]:
        codes.setdefault(e["code"], []).append(e["item"])
    assert len(codes) == 2 and sorted(map(len, codes.values())) == [1, 2]
    shown = {r[0]: r for r in rows(chrome, "errors")}  # one row per code, with its count and examples
    assert {code: int(r[1]) for code, r in shown.items()} == {code: len(items) for code, items in codes.items()}
    for code, items in codes.items():
        assert all(item in shown[code][2] for item in items)
    listed, outcomes = [], []
    for page in range(3):
        items = rows(chrome, "items")
        listed += [r[1] for r in items]
        outcomes += [r[0] for r in items]
        if page < 2:
            assert len(items) == 50
            chrome.find_element(By.LINK_TEXT, "Next page").click()
            until(chrome, lambda dr: dr.execute_script("return document.body.dataset.ready") == "job"
                  and (shown_now := rows(dr, "items")) and shown_now[0][1] not in listed, message="the next page")
    api, after = [], ""
    while True:
        body = client.get(f"/ingest/{job['job_id']}/items?limit=500{after}").json
        api += [i["origin_uri"] for i in body["items"]]
        if not body["next_after"]:
            break
        after = f"&after={body['next_after']}"
    assert listed == api and len(listed) == PACED_FILES + 3
    assert outcomes.count("skipped") == 3 and outcomes.count("ingested") == PACED_FILES
    shot(chrome, shots, "job")
    # each ingested item links to its document
    first = chrome.find_element(By.CSS_SELECTOR, "#items tbody tr a")
    doc_id = first.get_attribute("title")
    first.click()
    until(chrome, lambda dr: dr.execute_script("return document.body.dataset.ready") == "document")
    assert doc_id in text(chrome, "h1")
    no_console_errors(chrome)


# -- Document --------------------------------------------------------------------------------------


def test_a_documents_page_shows_provenance_and_every_version(site, chrome, shots):
    setup, d, client = site
    jobs = client.get("/jobs?source=inbox&limit=500").json["jobs"]
    item = next(i for j in jobs for i in client.get(f"/ingest/{j['job_id']}/items").json["items"]
                if i["origin_uri"].endswith("/report-0.txt") and i["size"] > 20)
    paths = client.get("/openapi.json").json["paths"]
    if "/documents/{doc_id}/text" in paths:  # its text settled first, so the page has one thing to show
        wait_for(lambda: client.get(f"/documents/{item['doc_id']}").json["text"]["status"] != "pending",
                 timeout=60, message="the text extracted")
    doc = client.get(f"/documents/{item['doc_id']}").json
    assert len(doc["versions"]) == 1
    load(chrome, d.base_url + f"/#/documents/{item['doc_id']}", "document")
    assert doc["origin_uri"] in text(chrome, "#provenance") and doc["sha256"] in text(chrome, "#provenance")
    versions = chrome.find_elements(By.CSS_SELECTOR, "#versions tbody tr")
    hashes = [tr.find_element(By.CSS_SELECTOR, "td[data-label='SHA-256'] code").get_attribute("title") for tr in versions]
    assert hashes == [doc["sha256"], doc["versions"][0]["sha256"]]
    assert "current" in versions[0].text and "current" not in versions[1].text
    assert [tr.find_element(By.CSS_SELECTOR, "td").text.split()[0] for tr in versions] == ["v2", "v1"]
    assert client.get(f"/ingest/{doc['job_id']}").status == 200
    if "/documents/{doc_id}/content" in paths:
        # each version's link reads that version's bytes
        for tr, sha in zip(versions, hashes):
            href = tr.find_element(By.CSS_SELECTOR, "a.download").get_attribute("href")
            got = chrome.execute_async_script(
                "const done = arguments[1]; fetch(arguments[0]).then(r => r.arrayBuffer())"
                ".then(b => done(Array.from(new Uint8Array(b))))", href)
            assert hashlib.sha256(bytes(got)).hexdigest() == sha
    else:
        assert "not serve" in text(chrome, "main")  # says so, rather than a link that fails
    if "/documents/{doc_id}/text" not in paths:
        assert text(chrome, "#text") == "Text extraction is not available on this daemon."
    elif doc["text"]["status"] == "extracted":
        body = client.get(f"/documents/{item['doc_id']}/text").data.decode()
        assert body.strip().splitlines()[0] in text(chrome, "#text")
    else:  # said from the record, without a request that fails in the console
        assert text(chrome, "#text").startswith(("Not extracted", "Extraction failed")), doc["text"]
    shot(chrome, shots, "document")
    no_console_errors(chrome)


def test_the_documents_list_pages_or_says_it_is_not_served(site, chrome):
    setup, d, client = site
    load(chrome, d.base_url + "/#/documents", "documents")
    if "/documents" in client.get("/openapi.json").json["paths"]:
        listed = rows(chrome, "documents")
        assert listed and all(len(r) == 6 for r in listed)
    else:
        assert "does not list documents" in text(chrome, "main")
    no_console_errors(chrome)


# -- Everyone's screen ---------------------------------------------------------------------------


CONTRAST = """
function lum(c) { const v = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(x => x / 255)
  .map(x => x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4));
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; }
function bg(el) { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
  if (!/rgba\\(.*, 0\\)$/.test(c) && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; }
const bad = [];
for (const el of document.querySelectorAll('body *')) {
  if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
  if (!el.getClientRects().length || el.closest('.sr-only,[hidden]')) continue;
  const a = lum(getComputedStyle(el).color), b = lum(bg(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5 && !el.matches('button:disabled, button:disabled *')) bad.push([el.tagName, el.textContent.trim().slice(0, 30), ratio.toFixed(2)]);
}
return bad;
"""

LABELS = """
const unlabelled = [...document.querySelectorAll('input, select, textarea')].filter(e => !e.labels.length)
  .map(e => e.outerHTML.slice(0, 80));
const nameless = [...document.querySelectorAll('button, a[href]')]
  .filter(e => e.getClientRects().length && !(e.getAttribute('aria-label') || e.textContent.trim()))
  .map(e => e.outerHTML.slice(0, 80));
return unlabelled.concat(nameless);
"""


def test_phone_width_contrast_labels_and_keyboard(site, chrome, shots):
    setup, d, client = site
    chrome.set_window_size(390, 844)
    try:
        job_id = client.get("/jobs?source=inbox&limit=1").json["jobs"][0]["job_id"]
        for url, page in (("/", "overview"), ("/#/jobs", "jobs"), (f"/#/jobs/{job_id}", "job")):
            load(chrome, d.base_url + url, page)
            width = chrome.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], (page, width)  # nothing needs sideways scrolling
            assert chrome.execute_script(CONTRAST) == [], page
            assert chrome.execute_script(LABELS) == [], page
            shot(chrome, shots, f"phone-{page}")
    finally:
        chrome.set_window_size(1280, 900)
    # the one action works from the keyboard: Tab to it, Enter, and Escape backs out
    load(chrome, d.base_url + "/", "overview")
    body = chrome.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    for _ in range(40):
        active = chrome.switch_to.active_element
        if active.get_attribute("data-source") == "inbox":
            break
        active.send_keys(Keys.TAB)
    assert chrome.switch_to.active_element.get_attribute("data-source") == "inbox"
    chrome.switch_to.active_element.send_keys(Keys.ENTER)
    dialog = chrome.find_element(By.ID, "confirm")
    until(chrome, lambda _: dialog.get_attribute("open") is not None, message="the dialog from the keyboard")
    assert chrome.switch_to.active_element.text == "Cancel"  # the safe choice has the focus
    chrome.switch_to.active_element.send_keys(Keys.ESCAPE)
    until(chrome, lambda _: dialog.get_attribute("open") is None, message="Escape to close the dialog")
    no_console_errors(chrome)


# -- Token ------------------------------------------------------------------------------------------


def test_the_token_is_asked_once_kept_for_the_tab_and_never_a_console_error(tmp_path, chrome, shots):
    setup = configure(Setup(tmp_path), token=True)
    d = setup.start(setup.daemon(plugins=True))
    load(chrome, d.base_url + "/", "token")
    label = chrome.find_element(By.CSS_SELECTOR, "label[for=token]")
    assert label.text == "Token"
    field = chrome.find_element(By.ID, "token")
    assert field.get_attribute("type") == "password" and chrome.switch_to.active_element == field
    shot(chrome, shots, "token")
    field.send_keys("not-the-token-at-all", Keys.ENTER)
    until(chrome, lambda dr: dr.find_element(By.CSS_SELECTOR, ".token .notice.error").is_displayed(), message="refusal")
    assert "refused" in text(chrome, ".token .notice.error")
    field.clear()
    field.send_keys(setup.token, Keys.ENTER)
    until(chrome, lambda dr: dr.execute_script("return document.body.dataset.ready") == "overview")
    assert [r for r in source_rows(chrome)] == ["inbox", "fx", "needy", "off"]
    assert chrome.execute_script("return sessionStorage.getItem('ingestd.token')") == setup.token
    assert chrome.execute_script("return localStorage.length") == 0  # never kept beyond the tab
    load(chrome, d.base_url + "/#/jobs", "jobs")  # a new page load in the same tab asks no more
    chrome.find_element(By.ID, "forget").click()
    until(chrome, lambda dr: dr.execute_script("return document.body.dataset.ready") == "token")
    assert chrome.execute_script("return sessionStorage.getItem('ingestd.token')") is None
    no_console_errors(chrome)  # not even the 401s a plain API client would have met
    assert d.stop() == 0
    assert setup.token not in d.log_text()
    events = [json.loads(line) for line in d.log_text().splitlines() if line.startswith("{")]
    assert not [e for e in events if e.get("event") == "http request" and e.get("status") == 401]


def test_a_document_without_text_says_why_without_a_failing_request(site, chrome):
    """A document no extractor reads: the page says so from the document's record rather
    than asking for a text that answers 404 (a console error in every browser)."""
    setup, d, client = site
    if "/documents/{doc_id}/text" not in client.get("/openapi.json").json["paths"]:
        pytest.skip("this daemon does not extract text")
    (setup.inbox / "opaque.bin").write_bytes(bytes(range(256)) * 8)
    wait_taken(setup, client)
    jobs = client.get("/jobs?source=inbox&limit=500").json["jobs"]
    item = next(i for j in jobs for i in client.get(f"/ingest/{j['job_id']}/items").json["items"]
                if i["origin_uri"].endswith("/opaque.bin"))
    assert client.get(f"/documents/{item['doc_id']}").json["text"]["status"] == "not_extracted"
    load(chrome, d.base_url + f"/#/documents/{item['doc_id']}", "document")
    assert text(chrome, "#text").startswith("Not extracted: no installed extractor reads")
    no_console_errors(chrome)
