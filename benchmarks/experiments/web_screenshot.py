"""The README's screenshot of the web page: the real server on a kb, a question asked through the page in headless
chromium (as tests/test_web.py drives it), the first document expanded.

    .venv/bin/python benchmarks/experiments/web_screenshot.py --kb runs/kb-bench-serve \
        --question "Who founded Durnavel Clockworks?" --out docs/web-page.png
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from prag.pipeline import Pipeline
from prag.serve import create_app, serve_in_thread
from prag.store import KnowledgeBase


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kb", required=True)
    ap.add_argument("--question", required=True)
    ap.add_argument("--method", default="prag")
    ap.add_argument("--out", default="docs/web-page.png")
    args = ap.parse_args()
    pipe = Pipeline(KnowledgeBase.open(Path(args.kb)))
    pipe.backend.start()
    server, url = serve_in_thread(create_app(pipe))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.goto(url + "/")
        page.wait_for_selector("#doc-list li.doc-row")
        page.fill("#question", args.question)
        page.select_option("#method", args.method)
        page.click("#ask")
        page.wait_for_selector("#retrieved details.retrieved-doc", timeout=120_000)
        page.locator("#retrieved details.retrieved-doc summary").first.click()
        page.wait_for_function("document.querySelector('#retrieved details').dataset.loaded === '1'")
        page.screenshot(path=args.out)
        print(page.inner_text("#answer"), "->", args.out)
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
