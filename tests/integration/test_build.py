"""lumi build on the example app: OCI artifacts with a wheel, a lock, clients and a manifest;
reproducible across builds and clones; lumi build routes subcommands."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

import pytest

from lumi.packaging import oci
from lumi.packaging.build import BUILD_DIR, load_built
from tests.integration.shipping import COMMIT_EPOCH, digests, git, lumi, shop_repo

SERVICES = ["Catalog", "Inventory", "Orders", "Mailer"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The example shop in its own git repository, built once."""
    app = shop_repo(tmp_path_factory.mktemp("build"))
    out = lumi("build", cwd=app)
    assert out.returncode == 0, out.stderr
    return app, digests(out.stdout)


def test_build_makes_one_artifact_per_service(built: tuple[Path, dict[str, str]]) -> None:
    """Four services, four digests, all in the build layout."""
    app, found = built
    assert sorted(found) == sorted(SERVICES)
    artifacts = asyncio.run(load_built(app / BUILD_DIR))
    assert {a.manifest.service: a.digest for a in artifacts} == found


def test_an_artifact_is_an_oci_manifest_with_wheel_lock_and_clients(
    built: tuple[Path, dict[str, str]],
) -> None:
    """The manifest is OCI image-spec; its config is the Lumi manifest; layers hold a real
    wheel, the committed lock and the generated clients."""
    app, _ = built
    orders = next(a for a in asyncio.run(load_built(app / BUILD_DIR))
                  if a.manifest.service == "Orders")  # fmt: skip
    raw = json.loads(orders.manifest_bytes)
    assert raw["schemaVersion"] == 2 and raw["mediaType"] == oci.MANIFEST_MEDIA_TYPE
    assert raw["config"]["mediaType"] == oci.CONFIG_MEDIA_TYPE
    assert raw["annotations"][oci.REVISION] == git(app.parent, "rev-parse", "HEAD")
    wheel = zipfile.ZipFile(io.BytesIO(orders.layer(oci.WHEEL_MEDIA_TYPE).data))
    names = wheel.namelist()
    assert "shop/orders.py" in names and "shop-0.1.0.dist-info/METADATA" in names
    assert {info.date_time for info in wheel.infolist()} == {(2026, 3, 1, 12, 0, 0)}
    assert orders.layer(oci.LOCK_MEDIA_TYPE).data == (app / "requirements.lock").read_bytes()
    clients = oci.read_targz(orders.layer(oci.CLIENTS_MEDIA_TYPE).data)
    assert "python/orders_client/client.py" in clients
    assert "typescript/orders.ts" in clients or any(p.startswith("typescript/") for p in clients)


def test_the_manifest_says_what_deploy_and_the_resolver_need(
    built: tuple[Path, dict[str, str]],
) -> None:
    """Version, interface + fingerprint, ranges of required services, bindings, provenance."""
    app, _ = built
    by_name = {a.manifest.service: a.manifest for a in asyncio.run(load_built(app / BUILD_DIR))}
    orders = by_name["Orders"]
    assert orders.version == "0.1.0" and orders.entry == "shop.orders:Orders"
    assert orders.service_interface().fingerprint == orders.fingerprint
    assert orders.requires == {"Inventory": "^0.1.0"}
    assert by_name["Catalog"].bindings.replicas == 2
    assert orders.bindings.rpc == ["http"] and orders.bindings.runtime == "process"
    provenance = orders.provenance
    assert provenance.commit == git(app.parent, "rev-parse", "HEAD") and not provenance.dirty
    assert provenance.source_date_epoch == COMMIT_EPOCH
    assert provenance.created == "2026-03-01T12:00:00Z"
    assert provenance.build_backend.startswith("hatchling ")


def test_builds_are_reproducible_again_and_from_a_clone(
    built: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A second build and a build of a fresh clone (other path, other mtimes) give the same
    digests."""
    app, first = built
    again = lumi("build", cwd=app)
    assert again.returncode == 0, again.stderr
    assert digests(again.stdout) == first
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(app.parent), str(clone))
    (clone / "shop" / "shop" / "orders.py").touch()
    cloned = lumi("build", cwd=clone / "shop")
    assert cloned.returncode == 0, cloned.stderr
    assert digests(cloned.stdout) == first


def test_a_change_shows_in_the_digest_and_the_dirty_flag(tmp_path: Path) -> None:
    """Editing a service changes every artifact (they share the wheel) and marks it dirty;
    SOURCE_DATE_EPOCH pins the time."""
    app = shop_repo(tmp_path)
    before = digests(lumi("build", "Catalog", cwd=app).stdout)
    source = app / "shop" / "catalog.py"
    source.write_text(source.read_text().replace('"Apple"', '"Green apple"'))
    out = lumi("build", "Catalog", cwd=app, env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert out.returncode == 0, out.stderr
    assert digests(out.stdout)["Catalog"] != before["Catalog"]
    (catalog,) = asyncio.run(load_built(app / BUILD_DIR))
    assert catalog.manifest.provenance.dirty
    assert catalog.manifest.provenance.created == "2023-11-14T22:13:20Z"


def test_build_names_services_and_routes_subcommands(tmp_path: Path) -> None:
    """`lumi build Orders` builds only Orders; `lumi build lock` is the lock subcommand;
    a misspelt service gets one did-you-mean line."""
    app = shop_repo(tmp_path)
    one = lumi("build", "Orders", cwd=app)
    assert one.returncode == 0, one.stderr
    assert list(digests(one.stdout)) == ["Orders"]
    (app / "requirements.lock").unlink()
    lock = lumi("build", "lock", cwd=app)
    assert lock.returncode == 0, lock.stderr
    assert lock.stdout.startswith("wrote ") and "pinned packages" in lock.stdout
    assert "pydantic==" in (app / "requirements.lock").read_text()
    typo = lumi("build", "Ordrs", cwd=app)
    assert typo.returncode == 2
    assert typo.stderr.strip() == (
        "error: no service 'Ordrs' in this app; did you mean 'Orders'? "
        "(services: Catalog, Inventory, Orders, Mailer)"
    )


def test_build_refuses_an_app_without_pyproject_or_with_a_stale_lock(tmp_path: Path) -> None:
    """No pyproject.toml, or a lock that does not pin a dependency: one line each."""
    app = shop_repo(tmp_path)
    lock = app / "requirements.lock"
    lock.write_text("\n".join(line for line in lock.read_text().splitlines()
                              if not line.startswith("pydantic==")))  # fmt: skip
    stale = lumi("build", cwd=app)
    assert stale.returncode == 2
    assert "requirements.lock does not pin pydantic" in stale.stderr
    assert stale.stderr.count("\n") == 1
    (app / "pyproject.toml").unlink()
    bare = lumi("build", cwd=app)
    assert bare.returncode == 2 and "no pyproject.toml" in bare.stderr
