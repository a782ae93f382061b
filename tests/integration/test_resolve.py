"""lumi resolve / install against a real embedded repository: a real resolver, readable
conflicts, locks, and other teams' clients made importable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from shop.catalog import Catalog
from shop.inventory import Inventory

from lumi.config import load_config
from lumi.model.semver import parse_range
from lumi.packaging import oci
from lumi.packaging.errors import IntegrityError, ResolutionError
from lumi.packaging.install import LOCK_FILE, SITE, Lock, install, resolve_app
from lumi.packaging.repository import Repository, open_repository
from lumi.packaging.resolve import resolve
from tests.packaging_kit import client_artifact

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def repo(tmp_path: Path) -> Repository:
    """An embedded repository with several versions of two teams' services."""
    repository = open_repository(str(tmp_path / "repo"))
    for version in ("1.0.0", "1.2.0", "2.0.0", "2.1.0", "2.3.1", "3.0.0"):
        await repository.push(client_artifact(Inventory, version, {"Catalog": "^1.0"}))
    for version in ("1.0.0", "1.4.0", "2.0.0"):
        await repository.push(client_artifact(Catalog, version))
    return repository


def local(**services: dict[str, str]) -> dict[str, tuple[str, dict[str, str]]]:
    return {name: ("1.0.0", ranges) for name, ranges in services.items()}


async def test_picks_the_newest_versions_that_satisfy_every_range(repo: Repository) -> None:
    """^2.1 picks Inventory 2.3.1; its own Catalog ^1.0 picks Catalog 1.4.0 (not 2.0.0)."""
    chosen = await resolve(repo, local(Storefront={"Inventory": "^2.1"}))
    assert chosen["Inventory"].version == "2.3.1"
    assert chosen["Catalog"].version == "1.4.0"
    assert chosen["Inventory"].digest == (await repo.manifest("Inventory", "2.3.1")).digest


async def test_backtracks_when_the_newest_version_conflicts(repo: Repository) -> None:
    """Wanting Catalog 2.x forces a version of Inventory whose own range allows it."""
    await repo.push(client_artifact(Inventory, "2.4.0", {"Catalog": "^2.0"}))
    chosen = await resolve(repo, local(Storefront={"Inventory": ">=2.1", "Catalog": "^1.0"}))
    # 3.0.0 and 2.4.0 are newer, but only the ^1.0-Catalog versions fit; 3.0.0 needs ^1.0 too
    assert (chosen["Inventory"].version, chosen["Catalog"].version) == ("3.0.0", "1.4.0")
    chosen = await resolve(repo, local(Storefront={"Inventory": "~2", "Catalog": "^2"}))
    assert (chosen["Inventory"].version, chosen["Catalog"].version) == ("2.4.0", "2.0.0")


async def test_a_conflict_is_one_paragraph_naming_the_chain(repo: Repository) -> None:
    """Inventory 2.x needs Catalog ^1.0 while the app wants Catalog ^2: both requirements,
    the chosen version that brought one in, and what is published are named."""
    with pytest.raises(ResolutionError) as caught:
        await resolve(repo, local(Storefront={"Inventory": "~2.3", "Catalog": "^2"}))
    message = str(caught.value)
    assert "\n" not in message
    assert "Storefront requires Catalog ^2 (<3.0.0,>=2.0.0)" in message
    assert "Inventory 2.3.1 requires Catalog ^1.0 (<2.0.0,>=1.0.0)" in message
    assert "where Inventory 2.3.1 was chosen for Storefront's Inventory ~2.3" in message
    assert "published Catalog versions: 1.0.0, 1.4.0, 2.0.0" in message


async def test_nothing_published_in_range_names_what_is(repo: Repository) -> None:
    """A range no version meets, and a service nobody published, each say so."""
    with pytest.raises(ResolutionError, match=r"Storefront requires Inventory \^9.*nothing "
                       r"matches.*published Inventory versions: 1.0.0, 1.2.0"):  # fmt: skip
        await resolve(repo, local(Storefront={"Inventory": "^9"}))
    with pytest.raises(ResolutionError, match=r"Payments is not published in oci-layout:"):
        await resolve(repo, local(Storefront={"Payments": "^1"}))


async def test_the_apps_own_services_take_part_with_their_version(repo: Repository) -> None:
    """A published service that requires a service of this app must accept its version."""
    await repo.push(client_artifact(Catalog, "1.5.0", {"Storefront": "^2"}))
    chosen = await resolve(repo, local(Storefront={"Catalog": "^1.0"}))
    assert chosen["Catalog"].version == "1.4.0"  # 1.5.0 wants Storefront ^2; this one is 1.0.0
    assert chosen["Storefront"].digest is None


STOREFRONT = '''
import lumi
from inventory_client import AsyncInventoryClient


class Storefront(lumi.Service):
    """Shows what the Inventory team's service has in stock."""

    @lumi.api
    async def stock(self, base_url: str, sku: str) -> int:
        async with AsyncInventoryClient(base_url) as inventory:
            return await inventory.available(sku=sku)
'''


@pytest.fixture
def storefront(tmp_path: Path) -> Path:
    """An app that needs Inventory ^2.1 but has none of its source."""
    app = tmp_path / "storefront"
    (app / "storefront").mkdir(parents=True)
    (app / "storefront" / "__init__.py").write_text("")
    (app / "storefront" / "app.py").write_text(textwrap.dedent(STOREFRONT))
    (app / "lumi.toml").write_text(
        '[app]\nname = "storefront"\nservices = ["storefront.app:Storefront"]\n\n'
        '[services.Storefront]\nrequires = {Inventory = "^2.1"}\n'
    )
    return app


def lumi(app: Path, *args: str, repo: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LUMI_REPOSITORY": str(repo)}
    return subprocess.run(
        [sys.executable, "-m", "lumi.cli.main", *args, "--app", str(app)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


async def test_install_makes_another_teams_client_importable(
    repo: Repository, storefront: Path, tmp_path: Path
) -> None:
    """Before install the app cannot load (no inventory_client); lumi install resolves
    Inventory 2.3.1, writes the lock and the client, and then the app loads and the client
    module is the one generated from 2.3.1."""
    before = lumi(storefront, "interface", repo=tmp_path / "repo")
    assert before.returncode != 0 and "inventory_client" in before.stderr
    done = lumi(storefront, "install", repo=tmp_path / "repo")
    assert done.returncode == 0, done.stderr
    assert "Inventory 2.3.1" in done.stdout and "import inventory_client" in done.stdout
    lock = json.loads((storefront / LOCK_FILE).read_text())
    assert lock["resolved"]["Inventory"]["version"] == "2.3.1"
    assert lock["resolved"]["Catalog"]["version"] == "1.4.0"
    after = lumi(storefront, "interface", repo=tmp_path / "repo")
    assert after.returncode == 0, after.stderr
    assert "Storefront" in json.loads(after.stdout)
    client = (storefront / SITE / "inventory_client" / "client.py").read_text()
    assert "Generated by `lumi gen python-client` from Inventory 2.3.1" in client
    installed = json.loads((storefront / SITE / "inventory_client" / "interface.json").read_text())
    assert installed["version"] == "2.3.1"


async def test_the_lock_is_kept_until_the_ranges_change(repo: Repository, storefront: Path) -> None:
    """A newer release does not move a locked version; --upgrade (or a changed range) does."""
    config = load_config(storefront)
    lock, changed = await resolve_app(repo, config)
    assert changed and lock.resolved["Inventory"].version == "2.3.1"
    await repo.push(client_artifact(Inventory, "2.5.0", {"Catalog": "^1.0"}))
    lock, changed = await resolve_app(repo, config)
    assert not changed and lock.resolved["Inventory"].version == "2.3.1"
    lock, changed = await resolve_app(repo, config, upgrade=True)
    assert changed and lock.resolved["Inventory"].version == "2.5.0"


async def test_a_tampered_artifact_installs_nothing(
    repo: Repository, storefront: Path, tmp_path: Path
) -> None:
    """When one pulled artifact fails its digest check, no client is written at all."""
    config = load_config(storefront)
    lock, _ = await resolve_app(repo, config)
    inventory = await repo.pull("Inventory", "2.3.1")
    clients = inventory.layer(oci.CLIENTS_MEDIA_TYPE).descriptor.digest
    blob = tmp_path / "repo" / "blobs" / "sha256" / clients.removeprefix("sha256:")
    blob.write_bytes(b"\x00" + blob.read_bytes()[1:])
    with pytest.raises(IntegrityError, match="does not match its digest"):
        await install(repo, config, lock)
    assert not (storefront / SITE).exists() or not any((storefront / SITE).iterdir())


def test_an_unsatisfiable_range_is_refused_in_one_line(storefront: Path, tmp_path: Path) -> None:
    """lumi resolve with a range nothing meets: exit 2, one line, no lock written."""
    config = storefront / "lumi.toml"
    config.write_text(config.read_text().replace("^2.1", "^7"))
    import asyncio

    async def publish() -> None:
        repository = open_repository(str(tmp_path / "repo"))
        await repository.push(client_artifact(Inventory, "2.0.0"))

    asyncio.run(publish())
    out = lumi(storefront, "resolve", repo=tmp_path / "repo")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: cannot resolve:")
    assert not (storefront / LOCK_FILE).exists()


def test_a_bad_range_in_config_names_the_key(storefront: Path) -> None:
    """``requires = {Inventory = "banana"}`` is a config error naming the service key."""
    config = storefront / "lumi.toml"
    config.write_text(config.read_text().replace("^2.1", "banana"))
    from lumi.model.errors import ConfigError

    with pytest.raises(ConfigError, match=r"services\.Storefront\.requires: Inventory: 'banana'"):
        load_config(storefront)
    assert parse_range("^2.1").meaning()
    assert Lock.read(storefront / LOCK_FILE) is None
