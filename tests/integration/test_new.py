"""``lumi new``: the scaffolded app passes its own tests, runs, answers calls, and its
dashboard (opened with ``lumi dashboard``) builds forms for enums, optionals and lists."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.browser import NODES_LAID_OUT, artifacts, chromium
from tests.integration.harness import LumiRun, wait

pytestmark = pytest.mark.slow
Start = Callable[..., LumiRun]


def lumi(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["new", "9lives"], "error: '9lives' is not a usable app name"),
        (
            ["new", "todo", "--template", "basik"],
            "error: no template 'basik'; did you mean 'basic'?",
        ),
    ],
)
def test_lumi_new_mistakes_get_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    """A bad name or an unknown template gets one line saying what would be right."""
    result = lumi(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_lumi_new_refuses_a_folder_that_has_files(tmp_path: Path) -> None:
    """Scaffolding never overwrites: a non-empty target is refused."""
    (tmp_path / "todo").mkdir()
    (tmp_path / "todo" / "keep.txt").write_text("mine")
    result = lumi("new", "todo", cwd=tmp_path)
    assert result.returncode == 1 and "already exists and is not empty" in result.stderr
    assert (tmp_path / "todo" / "keep.txt").read_text() == "mine"


class Dashboard:
    """``lumi dashboard --app DIR --port 0`` in a subprocess."""

    def __init__(self, app_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lumi.cli.main", "dashboard", "--app", str(app_dir),
             "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        found = wait(lambda: self._url(), timeout=60, message="the dashboard URL")
        self.url, self.base, self.token = found

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def _url(self) -> tuple[str, str, str] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"lumi dashboard exited: {''.join(self.lines)}")
        match = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)", "".join(self.lines))
        return (match.group(0), match.group(1), match.group(2)) if match else None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def test_scaffold_test_run_call_and_explore(lumi_run: Start, tmp_path: Path) -> None:
    """lumi new writes an app whose tests pass, that lumi run starts, whose methods answer,
    whose event reaches the other service, and whose forms cover enums/optionals/lists."""
    app = tmp_path / "todo"
    created = lumi("new", "todo", "--dir", str(app))
    assert created.returncode == 0, created.stderr
    for name in ("lumi.toml", "README.md", "todo/tasks.py", "todo/digest.py", "tests/test_app.py"):
        assert (app / name).is_file(), name

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=app, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout

    run = lumi_run(app, "--no-dashboard")
    run.wait_ready()
    added = lumi("call", "Tasks.add", "title=write the README", "priority=high",
                 'tags=["docs"]', "--app", str(app))  # fmt: skip
    assert added.returncode == 0, added.stderr
    task = json.loads(added.stdout)
    assert task["priority"] == "high" and task["tags"] == ["docs"] and task["notes"] is None

    def summary() -> Any:
        return json.loads(lumi("call", "Digest.summary", "--app", str(app)).stdout)

    wait(lambda: summary()["total"] == 1, message="the Tasks.added event to reach Digest")
    urgent = json.loads(lumi("call", "Digest.urgent", "--app", str(app)).stdout)
    assert [t["id"] for t in urgent] == [task["id"]]

    board = Dashboard(app)
    try:
        info = httpx.get(f"{board.base}/api/app", headers={"X-Lumi-Token": board.token}).json()
        assert [s["name"] for s in info["services"]] == ["Tasks", "Digest"]
        assert {"from": "Tasks", "to": "Digest", "kind": "event", "label": "Tasks.added"} in info[
            "edges"
        ]
        _explore(board.url, artifacts("new-app"))
    finally:
        assert board.stop() == 0


def _explore(url: str, shots: Path) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}#/explorer/Tasks/add")
        page.wait_for_selector("form.form[data-method='Tasks.add']")
        options = page.eval_on_selector_all(
            "[data-field=priority] select option", "os => os.map(o => o.textContent)"
        )
        assert options == ['"low"', '"normal"', '"high"']
        assert page.is_checked("[data-field=notes] .optional > input[type=checkbox]") is False
        page.fill("[data-field=title] input", "plan the launch")
        page.select_option("[data-field=priority] select", label='"high"')
        page.check("[data-field=tags] .optional > input[type=checkbox]")
        page.click("[data-field=tags] button:has-text('+ add str')")
        page.fill("[data-field=tags] .item input", "launch")
        page.screenshot(path=shots / "explorer-form.png", full_page=True)
        page.click("#call")
        result = json.loads(page.wait_for_selector("#result").inner_text())
        assert result["title"] == "plan the launch" and result["priority"] == "high"
        assert result["tags"] == ["launch"] and result["notes"] is None
        page.screenshot(path=shots / "explorer-result.png", full_page=True)
        page.fill("[data-field=title] input", "   ")
        page.click("#call")
        error = page.wait_for_selector(".result.bad[data-code=INVALID_ARGUMENT]").inner_text()
        assert "a task needs a title" in error
        page.goto(f"{url}#/graph")
        page.wait_for_selector("svg.graph .node[data-service=Digest]")
        assert page.locator("svg.graph .node").count() == 2
        assert page.evaluate(NODES_LAID_OUT)  # Digest calls Tasks and follows its event
        page.screenshot(path=shots / "graph.png", full_page=True)
        assert not errors, errors
