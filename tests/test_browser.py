"""The web page of `kgmem serve` in a real browser: Debian's Chromium driven by Playwright.

Loads the page, asks a question about the shipped passages, watches the answer stream
in, clicks a citation and checks the highlighted span is the cited text, then draws an
entity's neighbourhood. KGMEM_SCREENSHOT=PATH also saves the screenshot there (the
README's picture is made this way)."""
from __future__ import annotations

import os
import shutil

import pytest

from .conftest import Served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make install)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine: apt-get install chromium")
APA = "Who was the first president of the American Psychological Association?"


@pytest.fixture(scope="module")
def page_server(tmp_path_factory, embedder, extractor, wiki_records):
    """A server answering with the default model ('auto': Qwen2.5-1.5B when installed,
    else the no-LLM reader), the way a user starts it."""
    from kgmem import Memory

    store = tmp_path_factory.mktemp("page") / "store"
    with Memory(store, embedder=embedder, extractor=extractor) as mem:
        mem.ingest(wiki_records[:120])
    server = Served(store, "auto")
    yield server
    server.close()


def test_the_page_asks_streams_cites_and_draws_the_graph(page_server, tmp_path):
    problems: list[str] = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.goto(f"{page_server.url}/?token={page_server.token}")  # the token comes once, then a cookie
        page.wait_for_function("document.getElementById('stats').textContent.includes('documents')")
        assert "120 documents" in page.inner_text("#stats")

        page.fill("#q", APA)
        page.press("#q", "Enter")
        page.wait_for_function("document.body.dataset.answered === '1'", timeout=180_000)
        answer = page.evaluate("window.kgmemLastAnswer")
        assert answer["found"] and page.inner_text("#answer").strip() == answer["answer"]
        assert int(page.evaluate("document.body.dataset.tokens || 0")) >= 1  # it streamed
        assert page.locator("#hits li").count() > 0 and page.locator("#hits li.cited").count() >= 1

        cite = page.locator("a.cite").first
        n = int(cite.get_attribute("data-n"))
        cited = next(c for c in answer["citations"] if c["n"] == n)
        cite.click()
        page.wait_for_selector("#cited-span", state="visible")
        assert page.inner_text("#cited-span") == cited["quote"]
        doc = page_server.client.get(f"/documents/{cited['doc_id']}").json()
        assert doc["text"][cited["start"]:cited["end"]] == cited["quote"]

        page.fill("#entity", "American Psychological Association")
        page.click("#graph-form button")
        page.wait_for_selector("#graph[data-ready='1']")
        assert int(page.get_attribute("#graph", "data-nodes")) > 1
        assert "facts" in page.inner_text("#graph-info")

        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 30_000
    if os.environ.get("KGMEM_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["KGMEM_SCREENSHOT"])
    assert problems == []
