"""``lumi run`` end to end: real processes, real HTTP, restarts, bad input, clean stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHOP
from tests.integration.harness import LumiRun, alive, copy_app, wait

pytestmark = pytest.mark.slow
Start = Callable[..., LumiRun]


def lumi(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["Catalg.product", "sku=x"],
            "error: no service 'Catalg' in the running app; did you mean 'Catalog'?",
        ),
        (
            ["Catalog.prodct", "sku=x"],
            "error: Catalog has no method 'prodct'; did you mean 'product'?",
        ),
        (
            ["Catalog.product", "sk=x"],
            "error: Catalog.product has no parameter 'sk'; did you mean 'sku'?",
        ),
        (["Catalog.product", "--json", "[1"], "error: --json is not valid JSON"),
        (["Catalog"], "error: 'Catalog' is not SERVICE.METHOD"),
    ],
)
def test_cli_mistakes_get_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    """A mistyped service, method or argument gets one line with a suggestion."""
    app = copy_app(SHOP, tmp_path / "shop")
    run = LumiRun(app, "--env", "test")
    try:
        run.wait_ready()
        result = lumi("call", *args, "--app", str(app))
    finally:
        run.stop()
    assert result.returncode != 0
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_call_when_not_running(tmp_path: Path) -> None:
    """lumi call against an app that is not running says how to start it."""
    app = copy_app(SHOP, tmp_path / "shop")
    result = lumi("call", "Catalog.products", "--app", str(app))
    assert result.returncode == 2
    assert "is not running (start it with: lumi run" in result.stderr


def test_bad_requests_get_4xx_and_the_server_keeps_serving(lumi_run: Start, echo_app: Path) -> None:
    """Malformed JSON, huge bodies, unknown methods, wrong content types: 4xx, no crash."""
    run = lumi_run(echo_app)
    run.wait_ready()
    base = run.endpoint("Echo")
    http = run.http
    cases = [
        (run.post("Echo", "echo", b'{"text": '), 400, "INVALID_ARGUMENT"),
        (run.post("Echo", "echo", {"text": 5}), 400, "INVALID_ARGUMENT"),
        (run.post("Echo", "echo", {"text": "a", "extra": 1}), 400, "INVALID_ARGUMENT"),
        (run.post("Echo", "ecko", {"text": "a"}), 404, "NOT_FOUND"),
        (http.post(f"{base}/Nope/echo", content=b"{}"), 404, "NOT_FOUND"),
        (run.post("Echo", "blob", {"data": "x" * (5 * 1024 * 1024)}), 413, "RESOURCE_EXHAUSTED"),
        (
            http.post(
                f"{base}/Echo/echo",
                content=b"text=a",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            415,
            "INVALID_ARGUMENT",
        ),
        (http.get(f"{base}/Echo/echo"), 405, "INVALID_ARGUMENT"),
        (http.post(f"{base}/Echo", content=b"{}"), 404, "NOT_FOUND"),
        (
            run.post("Echo", "echo", {"text": "a"}, headers={"x-lumi-deadline": "soon"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            run.post("Echo", "echo", {"text": "a"}, headers={"x-lumi-deadline": "1000"}),
            504,
            "DEADLINE_EXCEEDED",
        ),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert "did you mean 'echo'" in run.post("Echo", "ecko", {}).json()["message"]
    chunked = http.post(
        f"{base}/Echo/blob",
        content=iter([b'{"data": "', b"x" * (5 * 1024 * 1024), b'"}']),
        headers={"content-type": "application/json"},
    )
    assert chunked.status_code == 413
    ok = run.post("Echo", "echo", {"text": "ab", "times": 2}, headers={"x-correlation-id": "cid-1"})
    assert ok.status_code == 200 and ok.json() == "abab"
    assert ok.headers["x-correlation-id"] == "cid-1"
    assert http.get(f"{base}/healthz").json() == {"status": "ok"}
    assert http.get(f"{base}/readyz").json()["status"] == "ready"
    assert "echo" in http.get(f"{base}/interface").json()["Echo"]["methods"]


def test_killed_replica_is_restarted_and_serving(lumi_run: Start, echo_app: Path) -> None:
    """kill -9 of a replica: the restart is logged with the exit code and it serves again."""
    run = lumi_run(echo_app)
    registry = run.wait_ready()
    victim = registry["services"]["Echo"]["replicas"][0]
    os.kill(victim["pid"], signal.SIGKILL)
    run.wait_output("Echo[0] exited with code -9 (SIGKILL); restarting")

    def restarted() -> dict[str, object] | None:
        replica = run.registry()["services"]["Echo"]["replicas"][0]
        return replica if replica["restarts"] == 1 and replica["state"] == "ready" else None

    replica = wait(restarted, message="Echo[0] to be restarted")
    assert replica["pid"] != victim["pid"] and alive(int(replica["pid"]))  # type: ignore[call-overload]
    response = run.http.post(
        f"{victim['endpoints'][0]}/Echo/whoami",
        content=b"{}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200 and response.json() == replica["pid"]
    assert run.post("Front", "relay", {"text": "x"}).json() == "xx"


def test_calls_are_balanced_over_replicas(lumi_run: Start, echo_app: Path) -> None:
    """A client spreads calls over every replica of a service; lumi ls shows each replica."""
    run = lumi_run(echo_app)
    registry = run.wait_ready()
    echo_pids = {r["pid"] for r in registry["services"]["Echo"]["replicas"]}
    seen = {run.post("Front", "whoami", {}).json() for _ in range(10)}
    assert seen == echo_pids
    listing = lumi("ls", "--app", str(echo_app))
    assert listing.returncode == 0, listing.stderr
    for replica in registry["services"]["Echo"]["replicas"]:
        assert (
            f"replica {replica['index']} {' '.join(replica['endpoints'])} ready, pid {replica['pid']}"
            in listing.stdout
        )
    assert "relay(text: str) -> str (idempotent)" in listing.stdout


def test_sigterm_drains_in_flight_calls_and_leaves_no_process(
    lumi_run: Start, echo_app: Path
) -> None:
    """SIGTERM: the in-flight call completes, services stop in reverse dependency order (Front,
    which calls Echo, before Echo), exit 0, no process left."""
    run = lumi_run(echo_app)
    run.wait_ready()
    pids = run.pids()
    results: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: results.append(run.post("Echo", "slow", {"seconds": 1.0}))
    )
    caller.start()
    run.wait_output("slow call started")
    assert run.stop(signal.SIGTERM) == 0
    caller.join(timeout=30)
    assert results and results[0].status_code == 200 and results[0].json() == 1.0
    assert not any(alive(pid) for pid in pids)
    assert not (echo_app / ".lumi" / "registry.json").exists()
    stopping = run.output.index("stopping (services in reverse dependency order)")
    front_stopped = run.output.index("stopped Front")
    assert stopping < front_stopped < run.output.index("stopped Echo")
    # Echo was told to drain only after Front had stopped: its drain line comes later.
    assert front_stopped < run.output.index("Echo[0] draining", stopping)


def test_ctrl_c_stops_cleanly(lumi_run: Start, echo_app: Path) -> None:
    """SIGINT (Ctrl-C) stops the app with exit code 0."""
    run = lumi_run(echo_app)
    run.wait_ready()
    pids = run.pids()
    assert run.stop(signal.SIGINT) == 0
    assert not any(alive(pid) for pid in pids)


def test_killed_supervisor_leaves_no_orphans(lumi_run: Start, echo_app: Path) -> None:
    """kill -9 of lumi run itself: every replica exits on its own."""
    run = lumi_run(echo_app)
    run.wait_ready()
    pids = run.pids()
    run.kill()
    wait(lambda: not any(alive(pid) for pid in pids), timeout=30, message="replicas to exit")


def test_failing_startup_stops_the_run_with_one_clear_line(lumi_run: Start, echo_app: Path) -> None:
    """A startup hook that raises: non-zero exit, one line naming the service and the cause."""
    run = lumi_run(echo_app, env={"ECHO_FAIL_STARTUP": "database is down"})
    assert run.proc.wait(timeout=60) == 1
    run.stop()
    assert (
        "error: Echo could not start: Echo: startup failed: RuntimeError: database is down"
        in run.output
    )
    assert "Front" not in run.output


def test_import_error_is_one_line(echo_app: Path) -> None:
    """A service that cannot be imported is named with the cause, without a traceback."""
    config = echo_app / "lumi.toml"
    config.write_text(config.read_text().replace("echo_app:Front", "echo_ap:Front"))
    result = lumi("run", str(echo_app))
    assert result.returncode == 2
    assert "app.services[1]: cannot import 'echo_ap'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_port_taken_names_the_service(echo_app: Path) -> None:
    """A configured port that is taken stops the run naming the service and the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = echo_app / "lumi.toml"
        config.write_text(config.read_text() + f"\n[services.Front]\nport = {port}\n")
        result = lumi("run", str(echo_app))
    assert result.returncode == 1
    assert (
        f"error: Front could not start: cannot listen on 127.0.0.1:{port}: Address already in use"
        in result.stdout
    )


def test_inproc_mode_serves_the_same_app(lumi_run: Start, echo_app: Path) -> None:
    """lumi run --inproc runs every service in one process, each on its own endpoint."""
    run = lumi_run(echo_app, "--inproc")
    registry = run.wait_ready()
    assert registry["mode"] == "inproc" and len(set(run.pids())) == 1
    assert run.post("Front", "relay", {"text": "y"}).json() == "yy"
    assert run.stop(signal.SIGINT) == 0


_TOGETHER = '''
import asyncio
from pathlib import Path

import lumi


class First(lumi.Service):
    """Ready only once Second has started: Second must not wait for First."""

    async def startup(self) -> None:
        async with asyncio.timeout(20):
            while not Path("second-started").exists():
                await asyncio.sleep(0.02)

    @lumi.api(idempotent=True)
    async def ping(self) -> str:
        return "first"


class Second(lumi.Service):
    async def startup(self) -> None:
        Path("second-started").touch()

    @lumi.api(idempotent=True)
    async def ping(self) -> str:
        return "second"
'''


def _start_order_app(tmp_path: Path, name: str, source: str, *services: str) -> Path:
    """An app of ``services`` (classes of ``source``) for the start-order tests."""
    app = tmp_path / name
    app.mkdir()
    (app / f"{name}_app.py").write_text(source)
    listed = ", ".join(f'"{name}_app:{service}"' for service in services)
    (app / "lumi.toml").write_text(
        f'[app]\nname = "{name}"\nservices = [{listed}]\n\n'
        '[defaults]\nevents = "memory"\nstart_timeout = 30\n\n[security]\nmtls = false\n'
    )
    return app


def test_services_that_require_nothing_of_each_other_start_together(
    lumi_run: Start, tmp_path: Path
) -> None:
    """Two services with no capability between them start at once: the first listed waits in
    its startup for the second to have started, which one start after the other never
    allows."""
    app = _start_order_app(tmp_path, "together", _TOGETHER, "First", "Second")
    run = lumi_run(app, "--no-dashboard")
    run.wait_ready(timeout=60)
    result = lumi("call", "First.ping", "--app", str(app))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "first"


_EARLY = '''
import asyncio
import json
import os
from pathlib import Path

import lumi

# In a replica of Front (lumi serve's spec names its service), before it waits for Back.
if json.loads(os.environ.get("LUMI_REPLICA_SPEC", "{}")).get("service") == "Front":
    Path("front-launched").touch()


class Back(lumi.Service):
    """Ready only once a replica of Front, which requires it, has started."""

    async def startup(self) -> None:
        async with asyncio.timeout(20):
            while not Path("front-launched").exists():
                await asyncio.sleep(0.02)

    @lumi.api(idempotent=True)
    async def ping(self) -> str:
        return "back"


class Front(lumi.Service):
    back: Back

    @lumi.api(idempotent=True)
    async def ping(self) -> str:
        return "front " + await self.back.ping()
'''


def test_a_dependant_starts_beside_what_it_requires_and_serves_after_it(
    lumi_run: Start, tmp_path: Path
) -> None:
    """Front's replica is started while Back, which it requires, is still starting (Back waits
    in its startup for Front's process to exist, which starting Front after Back never allows),
    and the run is "running" with Front calling Back."""
    app = _start_order_app(tmp_path, "early", _EARLY, "Front", "Back")
    run = lumi_run(app, "--no-dashboard")
    run.wait_ready(timeout=60)
    result = lumi("call", "Front.ping", "--app", str(app))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "front back"
