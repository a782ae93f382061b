"""Planning a deploy from a real embedded repository: what moves, in which order, and every
refusal — one line, before anything changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from shop.catalog import Catalog
from shop.inventory import Inventory

from lumi.config import AppConfig, load_config
from lumi.deploy.errors import RefusedError
from lumi.deploy.plan import make_plan
from lumi.deploy.state import Deployed, DeployedService
from lumi.packaging import Repository, open_repository
from tests.packaging_kit import client_artifact


@pytest.fixture
async def repo(tmp_path: Path) -> Repository:
    """Catalog 1.0.0, 1.1.0, 2.0.0 and Inventory 1.0.0 (needs Catalog ^1.0), app "team"."""
    repository = open_repository(str(tmp_path / "repo"))
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        await repository.push(client_artifact(Catalog, version))
    await repository.push(client_artifact(Inventory, "1.0.0", {"Catalog": "^1.0"}))
    return repository


def team(tmp_path: Path, extra: str = "") -> AppConfig:
    (tmp_path / "lumi.toml").write_text(
        '[app]\nname = "team"\nservices = ["team.x:Catalog", "team.x:Inventory"]\n'
        f"[env.local]\n{extra}"
    )
    return load_config(tmp_path, "local")


async def deployed(repo: Repository, **versions: str) -> Deployed:
    """What an environment running ``versions`` would have recorded."""
    services = {}
    for name, version in versions.items():
        published = await repo.manifest(name, version)
        m = published.manifest
        services[name] = DeployedService(
            version=version,
            digest=published.digest,
            entry=m.entry,
            fingerprint=m.fingerprint,
            interface=m.interface,
            requires=m.requires,
            python="/nowhere",
        )
    return Deployed(services=services)


async def test_no_names_mean_every_service_of_the_app_at_its_latest_capabilities_first(
    repo: Repository, tmp_path: Path
) -> None:
    """An empty environment: Catalog 2.0.0 is the latest, but Inventory's ^1.0 refuses it."""
    with pytest.raises(RefusedError) as caught:
        await make_plan(repo, team(tmp_path), Deployed(), [])
    assert str(caught.value) == (
        "cannot deploy Inventory@1.0.0 to local: Inventory 1.0.0 (new) requires Catalog ^1.0 "
        "(<2.0.0,>=1.0.0), and Catalog 2.0.0 (new) is outside it; deploy Catalog in that "
        "range, or a version of Inventory that accepts 2.0.0"
    )
    plan = await make_plan(repo, team(tmp_path), Deployed(), ["Inventory", "Catalog@1.1.0"])
    assert [m.ref for m in plan.moves] == ["Catalog@1.1.0", "Inventory@1.0.0"]
    assert all(m.current is None for m in plan.moves)


async def test_what_already_runs_is_not_moved(repo: Repository, tmp_path: Path) -> None:
    """The deployed digest of a named version is left alone; the other service moves."""
    now = await deployed(repo, Catalog="1.0.0", Inventory="1.0.0")
    plan = await make_plan(repo, team(tmp_path), now, ["Catalog@1.1.0", "Inventory@1.0.0"])
    assert [m.ref for m in plan.moves] == ["Catalog@1.1.0"] and plan.unchanged == ["Inventory"]
    move = plan.moves[0]
    assert (move.current_version, move.current) == ("1.0.0", now.services["Catalog"].digest)
    by_digest = await make_plan(repo, team(tmp_path), now, [f"Catalog@{move.target.digest}"])
    assert by_digest.moves[0].target.version == "1.1.0"


async def test_a_dependants_range_refuses_a_new_major(repo: Repository, tmp_path: Path) -> None:
    """Catalog 2.0.0 beside an Inventory that needs ^1.0 is refused, naming both."""
    now = await deployed(repo, Catalog="1.1.0", Inventory="1.0.0")
    with pytest.raises(RefusedError) as caught:
        await make_plan(repo, team(tmp_path), now, ["Catalog@2.0.0"])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        "cannot deploy Catalog@2.0.0 to local: Inventory 1.0.0 (deployed) requires Catalog "
        "^1.0 (<2.0.0,>=1.0.0), and Catalog 2.0.0 (new) is outside it"
    )


async def test_a_capability_that_is_not_deployed_is_named(repo: Repository, tmp_path: Path) -> None:
    """Inventory alone cannot go where no Catalog runs; the message says what to deploy."""
    missing = r"requires Catalog \^1\.0, which is not deployed in local \(deploy it too: lumi"
    with pytest.raises(RefusedError, match=missing):
        await make_plan(repo, team(tmp_path), Deployed(), ["Inventory@1.0.0"])


async def test_the_old_version_must_fit_while_both_run(repo: Repository, tmp_path: Path) -> None:
    """Inventory 2 needing Catalog ^2 cannot roll out beside Catalog 1 — nor can Catalog 2 go
    first while Inventory 1 (needing ^1.0) still runs."""
    await repo.push(client_artifact(Inventory, "2.0.0", {"Catalog": "^2.0"}))
    now = await deployed(repo, Catalog="1.1.0", Inventory="1.0.0")
    with pytest.raises(RefusedError, match=r"Inventory 1\.0\.0 \(deployed\) requires Catalog"):
        await make_plan(repo, team(tmp_path), now, ["Catalog@2.0.0", "Inventory@2.0.0"])


async def test_other_apps_and_other_runtimes_are_refused(repo: Repository, tmp_path: Path) -> None:
    """An artifact of another app, or a service configured on another runtime."""
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "lumi.toml").write_text(
        '[app]\nname = "shop"\nservices = ["x:Catalog"]\n[env.local]\n'
    )
    with pytest.raises(RefusedError, match="Catalog@1.1.0 belongs to app 'team', and local runs"):
        await make_plan(
            repo, load_config(tmp_path / "other", "local"), Deployed(), ["Catalog@1.1.0"]
        )
    inproc = team(tmp_path, "[env.local.services.Catalog]\nruntime = 'inproc'\n")
    with pytest.raises(RefusedError, match="Catalog runs on the 'inproc' runtime in local"):
        await make_plan(repo, inproc, Deployed(), ["Catalog@1.1.0"])
    with pytest.raises(RefusedError, match="each service once"):
        await make_plan(repo, team(tmp_path), Deployed(), ["Catalog@1.0.0", "Catalog@1.1.0"])
