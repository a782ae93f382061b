"""Playwright driving Debian's Chromium (headless), and where browser tests put screenshots."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("LUMI_ARTIFACTS", ROOT / "tmp" / "artifacts"))


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (the Debian package; Playwright's own download is never used)."""
    if not Path(CHROMIUM).is_file():
        raise AssertionError(f"{CHROMIUM} is missing: run scripts/test-deps (apt chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def artifacts(name: str) -> Path:
    """A fresh folder for one test module's screenshots (printed so a person can look)."""
    folder = ARTIFACTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"\nscreenshots: {folder}")
    return folder


NODES_LAID_OUT = """() => {
    const svg = document.querySelector('svg.graph').getBoundingClientRect();
    const boxes = [...document.querySelectorAll('svg.graph .node rect.card')]
        .map(r => r.getBoundingClientRect());
    const inside = boxes.every(b => b.left >= svg.left - 1 && b.right <= svg.right + 1
                                 && b.top >= svg.top - 1 && b.bottom <= svg.bottom + 1);
    const apart = boxes.every((a, i) => boxes.every((b, j) => i === j || a.right <= b.left
        || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top));
    return boxes.length > 0 && inside && apart;
}"""
"""True when every node of the graph is drawn inside it and no two overlap."""
