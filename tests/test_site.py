"""The website in a real browser: headless Chromium loads the landing page and every
chapter from _build/html (served on 127.0.0.1) and checks what a reader would notice.

Needs a built site (`make book`; `make test` builds it first) and Debian's chromium +
chromium-driver. Without them the test is skipped, unless VAE_TUTORIAL_REQUIRE_BROWSER=1
(as in CI), where a missing browser or site is a failure.
"""

import functools
import http.server
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
REQUIRED = os.environ.get("VAE_TUTORIAL_REQUIRE_BROWSER") == "1"


def _missing() -> str | None:
    if not (SITE / "book" / "intro.html").exists():
        return f"no built site in {SITE}: run `make book` first"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "Chromium is not installed: apt-get install chromium chromium-driver"
    return None


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    reason = _missing()
    if reason:
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="vae-book-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def load(driver, url: str) -> None:
    driver.get(url)
    deadline = time.time() + 30
    while time.time() < deadline:  # MathJax typesets after load; wait until it is done
        ready = driver.execute_script(
            "return document.readyState === 'complete' && (!window.MathJax ||"
            " (MathJax.startup && MathJax.startup.promise && MathJax._done === true))"
        )
        if ready:
            return
        driver.execute_script(
            "if (window.MathJax && MathJax.startup && MathJax.startup.promise && !MathJax._hooked)"
            " { MathJax._hooked = true; MathJax.startup.promise.then(() => { MathJax._done = true; }); }"
        )
        time.sleep(0.2)
    raise AssertionError(f"{url} did not finish loading and typesetting in 30 s")


# pydata-sphinx-theme's bundled script logs this on a visitor's first page (empty
# localStorage) before falling back to its default; it is the theme's, not ours, and
# sphinx-book-theme 1.3 offers no option to preset the mode.
THEME_FIRST_VISIT = "Got invalid theme mode: . Resetting to auto."


def own_console_errors(driver, origin: str) -> list[str]:
    """SEVERE console messages from scripts or resources served by the site itself."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE"
        and origin in entry["message"]
        and THEME_FIRST_VISIT not in entry["message"]
    ]


def check_page(driver, url: str, origin: str) -> None:
    load(driver, url)
    assert own_console_errors(driver, origin) == [], url
    images = driver.execute_script(
        "return [...document.images].map(i => [i.src, i.complete, i.naturalWidth])"
    )
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert broken == [], f"images that did not load on {url}: {broken}"
    unrendered = driver.execute_script(
        "return [...document.querySelectorAll('.math')]"
        ".filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60))"
    )
    assert unrendered == [], f"math left as raw TeX on {url}: {unrendered[:3]}"
    links = driver.execute_script(
        "return [...document.querySelectorAll('a[href]')].map(a => a.href)"
    )
    for link in links:
        parsed = urlparse(link)
        if link.startswith(origin) and parsed.path:
            target = SITE / parsed.path.lstrip("/")
            if parsed.path.endswith("/"):
                target = target / "index.html"
            assert target.exists(), f"broken internal link on {url}: {link}"


def expected_colab(chapter: str) -> str:
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    github = repo["url"].rstrip("/").removesuffix(".git").removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{github}/blob/{repo['branch']}/notebooks/{chapter}.ipynb"


def test_landing_page(browser, server):
    # the root is a redirect page without an icon link: browsers then ask for /favicon.ico
    assert (SITE / "favicon.ico").is_file(), "no favicon.ico at the site's root"
    check_page(browser, server, server)
    assert browser.current_url.endswith("book/intro.html")
    assert "VAE Tutorial Book" in browser.title
    assert browser.execute_script("return document.querySelectorAll('mjx-container').length") > 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "landing.png"))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page(browser, server, chapter):
    url = urljoin(server, f"notebooks/{chapter}.html")
    check_page(browser, url, server)
    assert browser.execute_script("return document.querySelectorAll('mjx-container').length") > 0
    figures = browser.execute_script("return document.querySelectorAll('.cell_output img').length")
    assert figures > 0, f"{chapter} shows no figure"
    solutions = browser.execute_script(
        "return [...document.querySelectorAll('.admonition.dropdown')].map(a =>"
        " [...a.querySelectorAll('.admonition-title ~ *')].every("
        "e => getComputedStyle(e).visibility === 'hidden'))"
    )
    assert len(solutions) >= 2 and all(solutions), f"{chapter}: solutions must start hidden"
    colab = browser.execute_script(
        "return [...document.querySelectorAll('a[href*=\"colab.research.google.com\"]')].map(a => a.href)"
    )
    assert colab, f"{chapter} has no Colab link"
    assert set(colab) == {expected_colab(chapter)}, colab
    wide = browser.execute_script(SIDEWAYS)
    assert wide == [], f"{chapter}: code or output that scrolls sideways at 1280 px: {wide[:5]}"
    if chapter == CHAPTERS[0]:
        browser.save_screenshot(str(SHOTS / f"{chapter}.png"))


# Every block of code or printed output whose content is wider than its box, so that the
# reader at a 1280-pixel window (the browser's size) would have to scroll it sideways:
# (which block, its first line, by how many pixels it overflows).
SIDEWAYS = """
return [...document.querySelectorAll('.cell_input pre, .cell_output pre, .output pre')]
  .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
  .map(pre => [pre.closest('.cell_output, .output') ? 'output' : 'code',
               pre.textContent.split('\\n').find(l => l.length > 0).slice(0, 50),
               pre.scrollWidth - pre.clientWidth])
"""


def test_the_sideways_check_sees_a_line_that_is_too_long(browser, server):
    load(browser, urljoin(server, f"notebooks/{CHAPTERS[0]}.html"))
    assert browser.execute_script(SIDEWAYS) == []
    browser.execute_script(
        "document.querySelector('.cell_input pre').textContent = 'x = ' + '1 + '.repeat(40)"
    )
    assert len(browser.execute_script(SIDEWAYS)) == 1


def test_latent_explorer_follows_the_pointer_without_the_network(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    load(browser, urljoin(server, "notebooks/13_latent_explorer.html"))
    plane = browser.find_element(By.CSS_SELECTOR, ".vae-explorer-plane")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", plane)
    width, height = plane.size["width"], plane.size["height"]
    grid = browser.execute_script(
        "return JSON.parse(document.querySelector('.vae-explorer + script').textContent"
        ".match(/const data = (\\{.*\\});/)[1]).n"
    )
    cells, pictures = [], []
    for fx, fy in [(-0.3, -0.35), (0.3, 0.25)]:  # offsets from the plane's centre, in widths
        ox, oy = int(fx * width), int(fy * height)
        ActionChains(browser).move_to_element_with_offset(plane, ox, oy).perform()
        cell = browser.execute_script("return document.querySelector('.vae-explorer').dataset.cell")
        i, j = map(int, cell.split(","))
        assert abs(i - (0.5 + oy / height) * (grid - 1)) <= 1.01, (cell, fx, fy)
        assert abs(j - (0.5 + ox / width) * (grid - 1)) <= 1.01, (cell, fx, fy)
        ink = browser.execute_script(
            "const c = document.querySelector('.vae-explorer-digit');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let dark = 0; for (let k = 0; k < d.length; k += 4) if (d[k] < 128) dark++;"
            "return dark / (c.width * c.height);"
        )
        assert 0.02 < ink < 0.6, f"the digit canvas at {cell} is blank or black ({ink:.3f})"
        cells.append(cell)
        pictures.append(
            browser.execute_script(
                "return document.querySelector('.vae-explorer-digit').toDataURL()"
            )
        )
    assert cells[0] != cells[1] and pictures[0] != pictures[1]
    external = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(u => !u.startsWith(location.origin) && !u.startsWith('data:'))"
    )
    assert external == [], f"the page fetched from outside the site: {external}"
    browser.save_screenshot(str(SHOTS / "13_latent_explorer.png"))
