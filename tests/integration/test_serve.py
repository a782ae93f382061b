"""``lumi serve SERVICE`` on its own (as in a container or a pod): ports, capability endpoints
and the broker from LUMI_* variables, a clean SIGTERM, one line for each mistake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import wait
from tests.servers import free_port

pytestmark = pytest.mark.slow


class Served:
    def __init__(self, app: Path, service: str, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lumi.cli.main", "serve", service, "--app", str(app), *args],
            env={**os.environ, "NO_COLOR": "1", **env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def finish(self) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=60)
        return self.proc.returncode, out

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, out


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for one in started:
        one.stop()


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_services_find_each_other_through_the_environment(
    echo_app: Path, served: list[Served], tmp_path: Path
) -> None:
    """Echo on LUMI_PORT, Front on --port with LUMI_ENDPOINTS_ECHO: Front relays to Echo, and
    SIGTERM drains both to exit 0; the endpoints file is written once serving, and the
    container HEALTHCHECK command reads it (ready while serving, not after)."""
    echo_port, front_port = free_port(), free_port()
    marks = tmp_path / "echo-endpoints.json"
    echo = Served(
        echo_app, "Echo", {"LUMI_PORT": str(echo_port), "LUMI_ENDPOINTS_FILE": str(marks)}
    )
    served.append(echo)
    front = Served(echo_app, "Front", {"LUMI_ENDPOINTS_ECHO": f"http://127.0.0.1:{echo_port}"},
                   "--port", str(front_port))  # fmt: skip
    served.append(front)
    for port in (echo_port, front_port):
        wait(
            lambda port=port: ready(f"http://127.0.0.1:{port}"), timeout=60, message=f"port {port}"
        )
    answer = httpx.post(
        f"http://127.0.0.1:{front_port}/Front/relay", json={"text": "ab"}, timeout=10
    )
    assert answer.status_code == 200 and answer.json() == "abab"
    assert json.loads(marks.read_text()) == [f"http://127.0.0.1:{echo_port}"]
    assert healthcheck(marks).returncode == 0  # the image's HEALTHCHECK command
    for one in (front, echo):
        code, out = one.stop()
        assert code == 0, out
        assert "draining" in out
    failed = healthcheck(marks)
    assert failed.returncode == 1 and failed.stderr.startswith("not ready: ")
    assert healthcheck(tmp_path / "absent.json").stderr.startswith("not serving yet")


def healthcheck(endpoints: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumi.runtimes.healthcheck"],
        env={**os.environ, "LUMI_ENDPOINTS_FILE": str(endpoints)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("service", "env", "message"),
    [
        ("Front", {}, "Front requires Echo: say where with LUMI_ENDPOINTS_ECHO=http://HOST:PORT"),
        ("Nope", {}, "no service 'Nope' in"),
        ("Echo", {"LUMI_EVENTS": "kafak://x"}, "LUMI_EVENTS: unknown event broker 'kafak'"),
        ("Echo", {"LUMI_PORT": "eighty"}, "LUMI_PORT must be a port number, not 'eighty'"),
    ],
)
def test_mistakes_are_one_line(
    echo_app: Path, service: str, env: dict[str, str], message: str
) -> None:
    """A missing capability endpoint, an unknown service, broker or port: one line, exit 1."""
    code, out = Served(echo_app, service, env).finish()
    assert code == 1
    assert out.strip().startswith("lumi serve: error: ") and message in out
    assert len(out.strip().splitlines()) == 1, out
