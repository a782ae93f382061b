"""lumi deploy end to end, as a team would run it: the example shop built, published to the
embedded repository and to a real registry (Debian's docker-registry), deployed from the
registry to a local environment, then new versions of Catalog rolled out under steady load —
a good canary promoted with no failed call, a canary with a high error rate and one that
never gets ready both rolled back automatically with the previous version serving — every
refusal one line with nothing changed, and the history showing it all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lumi.deploy.state import EnvironmentState
from lumi.packaging import oci
from lumi.packaging.repository import open_repository
from lumi.transports.tls import Tls, TlsFiles
from tests.integration.harness import alive, wait
from tests.integration.shipping import ROOT, lumi, shop_repo
from tests.registry import PASSWORD, USER, Registry

pytestmark = pytest.mark.slow

# Fast steps so the test takes seconds, not the minutes a real bake would; latency is judged
# in the unit tests (a loaded 2-core machine makes a first call's p99 noise, not signal).
LOCAL = """
[env.local.deploy]
strategy = "canary"
weights = [20, 100]
bake = 2.0
interval = 0.2
min_requests = 5
p99_floor = 2.0

[env.staging]
"""


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry()
    yield server
    server.stop()


class Shop:
    """The example shop in a git repository, and the environment of every ``lumi`` it runs."""

    def __init__(self, root: Path, registry: Registry) -> None:
        self.app = shop_repo(root / "src")
        config = self.app / "lumi.toml"
        shipped = config.read_text().split("\n# The shop deployed from the repository")[0]
        config.write_text(shipped + LOCAL)  # the example's [env.local], with faster steps
        self.embedded = root / "embedded"
        self.registry = f"{registry.url}/shop-{uuid.uuid4().hex[:8]}"  # a namespace per test
        self.env = {
            "LUMI_REPOSITORY": self.registry,
            "LUMI_REGISTRY_USERNAME": USER,
            "LUMI_REGISTRY_PASSWORD": PASSWORD,
            "LUMI_DEPLOY_CACHE": str(root / "deploy-cache"),
            "NO_COLOR": "1",
        }

    def run(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return lumi(*args, cwd=self.app, env={**self.env, **(env or {})}, timeout=300)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = self.run(*args, env=env)
        assert out.returncode == 0, f"lumi {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return str(out.stdout)

    def refused(self, *args: str, code: int = 2, env: dict[str, str] | None = None) -> str:
        """The one line of a refused (code 2) or rolled-back (code 1) command."""
        out = self.run(*args, env=env)
        assert out.returncode == code, f"lumi {' '.join(args)}: {out.stdout}\n{out.stderr}"
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
        return str(lines[0])

    def release(self, module: str, old: str, new: str, bump: str = "patch") -> str:
        """Edit a service, bump its version, build, publish to both repositories."""
        edit(self.app, module, old, new)
        service = module.capitalize()
        self.ok("version", service, bump)
        self.ok("build", service)
        self.ok("publish", service, "-q")
        self.ok("publish", service, "-q", "--repo", str(self.embedded))
        return json.loads(self.ok("repo", "show", service))["version"]

    def start(self, *args: str) -> subprocess.Popen[str]:
        """``lumi ARGS`` started, not waited for (its stdout, and stderr after it)."""
        environ = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        environ.update({"PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200", **self.env})
        return subprocess.Popen([sys.executable, "-m", "lumi.cli.main", *args], cwd=self.app,
                                env=environ, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)  # fmt: skip

    def status(self, env: str = "local") -> dict[str, Any]:
        """What runs: from the control API while it is up (fast), else ``lumi status``."""
        state = self.state(env)
        control = state.control()
        if control is not None and alive(control.pid):
            headers = {"Authorization": f"Bearer {state.token()}"}
            found: dict[str, Any] = httpx.get(f"{control.url}/v1/status", headers=headers).json()
            return found
        return json.loads(self.ok("status", env, "--json"))

    def versions(self) -> dict[str, str]:
        return {name: s["version"] for name, s in self.status()["services"].items()}

    def running(self) -> dict[str, Any]:
        """The deployed environment's registry of running replicas."""
        return dict(json.loads((self.state().app / ".lumi" / "registry.json").read_text()))

    def endpoint(self, service: str) -> str:
        """Where to call ``service`` with :meth:`client` (``https://`` over mTLS, the default)."""
        registry = self.running()
        url = str(registry["services"][service]["endpoints"][0])
        return url.replace("http://", "https://", 1) if registry.get("mtls") else url

    def client(self) -> httpx.Client:
        """An HTTP client calling the deployed services as the operator, with the certificate
        the environment's supervisor issued (renewed: new connections use the current one)."""
        if not self.running().get("mtls"):
            return httpx.Client(timeout=30)
        tls = Tls(TlsFiles.in_folder(self.state().app / ".lumi" / "ca" / "certs" / "operator"))
        hooks = {"request": [lambda request: tls.reload() and None]}
        return httpx.Client(verify=tls.client_context(), timeout=30, event_hooks=hooks)

    def post(self, url: str, body: dict[str, Any]) -> Any:
        with self.client() as http:
            return http.post(url, json=body).json()

    def state(self, env: str = "local") -> EnvironmentState:
        return EnvironmentState(self.app, env)


def edit(app: Path, module: str, old: str, new: str) -> None:
    file = app / "shop" / f"{module}.py"
    text = file.read_text()
    assert old in text, f"{old!r} not in {file}"
    file.write_text(text.replace(old, new, 1))


class Load:
    """Steady calls of Inventory.available (which calls Catalog) from a thread, each call's
    time and status recorded."""

    def __init__(self, url: str, client: Callable[[], httpx.Client]) -> None:
        self.url = f"{url}/Inventory/available"
        self.client = client
        self.calls: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self.client() as http:
            while not self._stop.is_set():
                try:
                    status = http.post(self.url, json={"sku": "apple"}).status_code
                except httpx.HTTPError:
                    status = 0
                self.calls.append((time.time(), status))
                self._stop.wait(0.02)

    def failures(self, since: float = 0.0, until: float = float("inf")) -> list[tuple[float, int]]:
        return [(t, s) for t, s in self.calls if since <= t <= until and s != 200]

    def count(self, since: float) -> int:
        return sum(1 for t, _ in self.calls if t >= since)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture
def shop(tmp_path: Path, registry: Registry) -> Iterator[Shop]:
    """The shop, with every environment it brings up brought down (and nothing left) after."""
    app = Shop(tmp_path, registry)
    yield app
    for env in ("local", "staging"):
        state = app.state(env)
        control = state.control()
        pids = [r["pid"] for s in _replicas(state) for r in s if r.get("pid")]
        app.run("down", env)
        if control is not None and alive(control.pid):
            os.kill(control.pid, signal.SIGKILL)
        wait(lambda pids=pids: not any(alive(p) for p in pids), timeout=60, message="no orphans")


def _replicas(state: EnvironmentState) -> list[list[dict[str, Any]]]:
    try:
        registry = json.loads((state.app / ".lumi" / "registry.json").read_text())
    except (OSError, ValueError):
        return []
    return [s["replicas"] for s in registry["services"].values()]


@pytest.mark.timeout(900)  # five builds and four pip installs, on a machine others share
def test_build_publish_deploy_canary_rollbacks_and_history(shop: Shop) -> None:
    """The issue's end-to-end run, every step checked (see the module docstring)."""
    shop.ok("build")
    shop.ok("publish", "-q")
    shop.ok("publish", "-q", "--repo", str(shop.embedded))
    assert "Catalog 0.1.0" in shop.ok("repo", "ls", "--repo", str(shop.embedded))

    assert "environment local is up" in shop.ok("up", "local")
    out = shop.ok("deploy", "local")
    assert "#1 deploy Catalog - → 0.1.0, Inventory - → 0.1.0" in out and "succeeded" in out
    assert shop.versions() == dict.fromkeys(["Catalog", "Inventory", "Mailer", "Orders"], "0.1.0")
    assert "nothing to deploy: Catalog, Inventory, Mailer, Orders already deployed" in shop.ok(
        "deploy", "local"
    )
    catalog = shop.endpoint("Catalog")
    assert shop.post(f"{catalog}/Catalog/product", {"sku": "apple"})["name"] == "Apple"
    # each version runs from its installed artifact, not from the source folder
    python = shop.state().deployed().services["Catalog"].python
    assert Path(python).parent.parent.parent == Path(shop.env["LUMI_DEPLOY_CACHE"])

    load = Load(shop.endpoint("Inventory"), shop.client)
    try:
        # v2: a good canary, promoted with no failed call
        assert shop.release("catalog", '"Apple"', '"Green apple"') == "0.1.1"
        started = time.time()
        rollout = shop.start("deploy", "local", "Catalog@0.1.1")
        seen = wait(lambda: shop.status()["rollout"], timeout=120, message="a rollout in status")
        assert seen["what"].startswith("Catalog@0.1.1 (canary")
        busy = shop.refused("deploy", "local", "Orders")
        assert busy.startswith("error: a rollout is in progress in local (Catalog@0.1.1 (canary")
        out, _ = rollout.communicate(timeout=300)
        assert rollout.returncode == 0, out
        assert "step 1/2: 20% of calls to the canary" in out and "succeeded" in out
        assert load.count(started) > 50 and load.failures() == []
        assert shop.versions()["Catalog"] == "0.1.1"
        answer = shop.post(f"{catalog}/Catalog/product", {"sku": "apple"})
        assert answer["name"] == "Green apple"  # on the stable sockets: promoted
        v2 = shop.state().history()[-1]
        assert [s.weight for s in v2.steps] == [20, 100]
        assert all(s.canary.requests > 0 and s.verdict == "passed" for s in v2.steps)
        share = v2.steps[0].canary.requests / (
            v2.steps[0].canary.requests + v2.steps[0].stable.requests
        )
        assert 0.1 < share < 0.35, share  # 20% of Inventory's calls, over each step's window

        # v3: half its calls fail; the analysis rolls it back and v2 goes on serving
        broken = '        """One product by SKU; NOT_FOUND for an unknown SKU."""\n'
        shop.release("catalog", broken, broken + "        import random\n\n"
                     "        if random.random() < 0.5:\n"
                     '            raise RuntimeError("v3 is broken")\n')  # fmt: skip
        line = shop.refused("deploy", "local", "Catalog@0.1.2", code=1)
        assert line.startswith("error: rolled back: Catalog@0.1.2: error rate ")
        assert "against the stable version's 0.0%" in line
        v3 = shop.state().history()[-1]
        assert (v3.outcome, v3.changes[0].outcome) == ("rolled back", "rolled back")
        assert shop.versions()["Catalog"] == "0.1.1"
        back = v3.finished or 0.0
        calm = time.time()
        wait(lambda: load.count(calm) > 20, message="calls after the rollback")
        assert load.failures(since=back) == []
        assert load.failures(until=v3.started) == []  # failures only while the canary took calls

        # v4: cannot start; the canary never takes a call and v2 goes on serving
        start_fails = "    @lumi.api(idempotent=True)\n    def product"
        before_v4 = time.time()
        edit(shop.app, "catalog", broken + "        import random\n\n", broken)
        edit(shop.app, "catalog", "        if random.random() < 0.5:\n"
             '            raise RuntimeError("v3 is broken")\n', "")  # fmt: skip
        shop.release("catalog", start_fails, "    def startup(self) -> None:\n"
                     '        raise RuntimeError("v4 cannot start")\n\n' + start_fails)  # fmt: skip
        line = shop.refused("deploy", "local", "Catalog@0.1.3", code=1)
        assert line == (
            "error: rolled back: Catalog@0.1.3 is not ready: Catalog: startup failed: "
            "RuntimeError: v4 cannot start"
        )
        assert shop.versions()["Catalog"] == "0.1.1"
        assert load.failures(since=before_v4) == []
    finally:
        load.stop()

    history = json.loads(shop.ok("deploy", "history", "local", "--json"))
    assert [(r["id"], r["outcome"]) for r in history] == [
        (1, "succeeded"), (2, "succeeded"), (3, "rolled back"), (4, "rolled back")
    ]  # fmt: skip
    assert [r["changes"][-1]["to_version"] for r in history] == ["0.1.0", "0.1.1", "0.1.2", "0.1.3"]
    assert "error rate" in history[2]["reason"] and "not ready" in history[3]["reason"]
    shown = shop.ok("deploy", "history", "local")
    assert "#3 deploy Catalog 0.1.1 → 0.1.2 (canary): rolled back" in shown

    out = shop.ok("rollback", "local", "Catalog")
    assert "#5 rollback Catalog 0.1.1 → 0.1.0 (rolling): succeeded" in out
    assert shop.versions()["Catalog"] == "0.1.0"
    assert shop.post(f"{catalog}/Catalog/product", {"sku": "apple"})["name"] == "Apple"

    assert "Catalog      0.1.0" in shop.ok("status", "local")
    assert json.loads(shop.ok("status", "local", "--json"))["phase"] == "running"
    pids = [r["pid"] for s in _replicas(shop.state()) for r in s]
    assert "environment local is down" in shop.ok("down", "local")
    wait(lambda: not any(alive(p) for p in pids), timeout=30, message="every replica stopped")
    assert shop.status()["phase"] == "down" and shop.versions()["Catalog"] == "0.1.0"

    # up again: what was deployed comes back, from the artifacts' installed environments
    shop.ok("up", "local")
    status = shop.status()
    assert {n: s["version"] for n, s in status["services"].items()}["Catalog"] == "0.1.0"
    assert all(r["state"] == "ready" for s in status["services"].values() for r in s["replicas"])
    assert (
        shop.post(f"{shop.endpoint('Catalog')}/Catalog/product", {"sku": "pear"})["name"] == "Pear"
    )


@pytest.mark.timeout(900)
def test_refusals_are_one_line_and_change_nothing(shop: Shop) -> None:
    """An unsatisfiable range, a tampered artifact, a duplicate version, a breaking change
    without a major bump, a bad registry password, no control token: each one line, with the
    running environment (versions, digests, pids, history) and the repository as they were."""
    shop.ok("build")
    shop.ok("publish", "-q")
    shop.ok("publish", "-q", "--repo", str(shop.embedded))
    line = shop.refused("deploy", "local")
    assert line == "error: environment 'local' is not up (start it: lumi up local)"
    shop.ok("up", "local")
    assert "#1 deploy Catalog - → 0.1.0" in shop.ok("deploy", "local", "Catalog")
    added = shop.ok("deploy", "local")  # the others join the running environment
    assert "adding Inventory@0.1.0" in added and "#2 deploy Inventory - → 0.1.0, Mailer" in added
    shown = shop.ok("status", "local")
    assert "Inventory    0.1.0" in shown and "1/1 ready" in shown and "2/2 ready" in shown

    def snapshot() -> tuple[Any, ...]:
        status = shop.status()
        services = {n: (s["version"], s["digest"], [r["pid"] for r in s["replicas"]])
                    for n, s in status["services"].items()}  # fmt: skip
        return services, shop.state().history_file.read_text()

    before = snapshot()

    # a minor bump below 1.0 is outside Inventory's ^0.1.0
    shop.release("catalog", '"Apple"', '"Red apple"', bump="minor")
    line = shop.refused("deploy", "local", "Catalog@0.2.0")
    assert line.startswith(
        "error: cannot deploy Catalog@0.2.0 to local: Inventory 0.1.0 (deployed) requires "
        "Catalog ^0.1.0 (<0.2.0,>=0.1.0), and Catalog 0.2.0 (new) is outside it"
    )
    assert snapshot() == before

    # a tampered wheel in the embedded repository: refused at pull, nothing installed or run
    shop.release("mailer", '"""Sends order confirmations', '"""Sends order confirmations (v2)')
    artifact = asyncio.run(open_repository(str(shop.embedded)).pull("Mailer", "0.1.1"))
    digest = artifact.layer(oci.WHEEL_MEDIA_TYPE).descriptor.digest
    blob = shop.embedded / "blobs" / "sha256" / digest.removeprefix("sha256:")
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    cache = sorted(Path(shop.env["LUMI_DEPLOY_CACHE"]).iterdir())
    line = shop.refused("deploy", "local", "Mailer@0.1.1", "--repo", str(shop.embedded))
    assert line.startswith("error: cannot deploy Mailer@0.1.1: Mailer@sha256:")
    assert "shop-0.1.0-py3-none-any.whl: content does not match its digest" in line
    assert snapshot() == before and sorted(Path(shop.env["LUMI_DEPLOY_CACHE"]).iterdir()) == cache

    # a duplicate version and a breaking change without a major bump: publish refuses both
    edit(shop.app, "catalog", '"Red apple"', '"Blue apple"')
    shop.ok("build", "Catalog")
    assert "versions are immutable" in shop.refused("publish", "Catalog")
    edit(shop.app, "catalog", "    @lumi.api(idempotent=True)\n    def products(self)",
         "    def products(self)")  # fmt: skip
    edit(shop.app, "catalog", 'version = "0.2.0"', 'version = "0.2.1"')
    shop.ok("build", "Catalog")
    assert "breaking change(s) since 0.2.0" in shop.refused("publish", "Catalog")
    assert json.loads(shop.ok("repo", "ls", "Catalog", "--json")) == {"Catalog": ["0.1.0", "0.2.0"]}
    assert snapshot() == before

    # the control API without the token, and with it but with bad requests
    url = shop.state().control().url  # type: ignore[union-attr]
    assert httpx.get(f"{url}/v1/status").status_code == 401
    wrong = httpx.post(f"{url}/v1/deploy", json={"refs": []}, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401 and "token" in wrong.json()["error"]
    token = {"Authorization": f"Bearer {shop.state().token()}"}
    for path, body, error in [
        ("/v1/deploy", b"not json", "the body is not JSON"),
        ("/v1/deploy", b'["Catalog"]', "the body is a JSON object"),
        ("/v1/deploy", b'{"refs": "Catalog"}', "refs is a list of SERVICE[@VERSION] strings"),
        ("/v1/deploy", b'{"ref": []}', "unknown field 'ref' (fields: refs, repo)"),
        ("/v1/rollback", b'{"service": ""}', "service names the service to roll back"),
    ]:
        answer = httpx.post(f"{url}{path}", content=body, headers=token)
        assert (answer.status_code, answer.json()) == (400, {"error": error})
    assert snapshot() == before

    # a wrong registry password: staging comes up, but cannot read the registry
    bad = {"LUMI_REGISTRY_PASSWORD": "wrong"}
    shop.ok("up", "staging", env=bad)
    line = shop.refused("deploy", "staging", env=bad)
    assert (
        line
        == f"error: registry {shop.registry.rsplit('/', 1)[0]} refused the password of user 'lumi' (HTTP 401)"
    )
    assert shop.status("staging")["services"] == {} and shop.state("staging").history() == []
    assert snapshot() == before
