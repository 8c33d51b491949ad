"""The web page at / in a real headless browser (Debian's chromium driven by Playwright): ask a question and see
the streamed answer and the documents used, expand one, add a document and see it listed, with an API key."""
import shutil

import pytest

from conftest import FICTIONAL, small_config

KEY = "page-test-key"
Q = "Who commands the icebreaker Halvard Sorrel?"


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model_dir, tiny_lm):
    from prag.pipeline import Pipeline
    from prag.serve import create_app, serve_in_thread
    from prag.store import KnowledgeBase

    cfg = small_config(tiny_model_dir, max_seq_len=128, max_new_tokens=6)
    kb = KnowledgeBase.create(tmp_path_factory.mktemp("web") / "kb", FICTIONAL / "corpus.jsonl", cfg)
    pipe = Pipeline(kb, tiny_lm)
    pipe.parameterize(["fic-05", "fic-03"], progress=False)
    server, url = serve_in_thread(create_app(pipe, "prag-tiny", api_key=KEY), log_level="warning")
    yield pipe, url
    server.should_exit = True


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "no chromium on PATH: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])  # --no-sandbox: tests may run as root
        yield b
        b.close()


def test_the_page_asks_shows_the_documents_and_adds_one(site, browser):
    import httpx

    pipe, url = site
    ref = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                     json={"messages": [{"role": "user", "content": Q}], "method": "prag", "top_k": 2}).json()
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    # without the key the page says so, and lists nothing
    page.wait_for_selector("#doc-list .error")
    assert "API key" in page.inner_text("#doc-list")
    page.fill("#api-key", KEY)
    page.dispatch_event("#api-key", "change")
    page.wait_for_selector("#doc-list li.doc-row")
    assert page.locator("#doc-list li.doc-row").count() == len(pipe.kb.docs)
    assert page.locator('#doc-list li[data-id="fic-05"] .status').inner_text() == "done"

    # the method list is the server's registry, so a new method shows up without touching the page
    from prag.methods import METHODS
    assert page.eval_on_selector_all("#method option", "os => os.map(o => o.value)") == METHODS.names()
    assert page.input_value("#method") == "prag"

    page.fill("#question", Q)
    page.select_option("#method", "prag")
    page.fill("#top-k", "2")
    page.click("#ask")
    page.wait_for_selector("#retrieved details.retrieved-doc")
    assert page.inner_text("#answer") == ref["choices"][0]["message"]["content"]  # streamed, the same answer
    shown = page.locator("#retrieved details.retrieved-doc")
    assert [shown.nth(i).get_attribute("data-id") for i in range(shown.count())] == \
        [d["id"] for d in ref["prag"]["documents"]]
    assert f"weight {ref['prag']['documents'][0]['weight']:.3f}" in shown.first.inner_text()
    shown.first.locator("summary").click()
    page.wait_for_function("document.querySelector('#retrieved details').dataset.loaded === '1'")
    assert pipe.kb.by_id["fic-05"].text in shown.first.inner_text()

    page.fill("#add-id", "web-added")
    page.fill("#add-title", "Quillfen Abbey")
    page.fill("#add-text", "Quillfen Abbey was founded in 1204 by the monk Aldric Penhale.")
    page.click("#add")
    page.wait_for_selector('#doc-list li[data-id="web-added"]')
    assert "web-added" in pipe.kb.by_id and pipe.kb.by_id["web-added"].title == "Quillfen Abbey"
    assert page.inner_text("#add-status").startswith("added web-added")
    page.on("dialog", lambda d: d.accept())
    page.click('#doc-list li[data-id="web-added"] button')
    page.wait_for_selector('#doc-list li[data-id="web-added"]', state="detached")
    assert "web-added" not in pipe.kb.by_id
    assert not errors, errors
    page.close()
