"""lumi version / publish / repo through the CLI, as a team would use them: bumps checked
against the last release, refusals in one line that leave the repository as it was, signing,
and publishing to a real registry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lumi.packaging import oci
from lumi.packaging.repository import open_repository
from tests.integration.shipping import lumi, shop_repo
from tests.registry import PASSWORD, USER, Registry


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """The example shop in a fresh git repository."""
    return shop_repo(tmp_path / "src")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private embedded repository."""
    return {"LUMI_REPOSITORY": str(tmp_path / "repo")}


def ok(*args: str, app: Path, env: dict[str, str]) -> str:
    out = lumi(*args, cwd=app, env=env)
    assert out.returncode == 0, f"lumi {' '.join(args)}: {out.stderr}"
    return out.stdout


def refused(*args: str, app: Path, env: dict[str, str]) -> str:
    """The one-line refusal of a command."""
    out = lumi(*args, cwd=app, env=env)
    assert out.returncode == 2, f"lumi {' '.join(args)} was not refused: {out.stdout}"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


def versions(env: dict[str, str], service: str) -> list[str]:
    return asyncio.run(open_repository(env["LUMI_REPOSITORY"]).versions(service))


def edit(app: Path, module: str, old: str, new: str) -> None:
    file = app / "shop" / f"{module}.py"
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new))


ADD_METHOD = '''
    @lumi.api(idempotent=True)
    def count(self) -> int:
        """How many products there are."""
        return len(PRODUCTS)
'''


def test_versions_bumps_and_publishing(app: Path, env: dict[str, str]) -> None:
    """Show, publish, a compatible change with a patch bump, and the state after each."""
    shown = ok("version", app=app, env=env)
    assert "Catalog 0.1.0  never published" in shown
    ok("build", app=app, env=env)
    published = ok("publish", app=app, env=env)
    assert "Catalog@0.1.0" in published and "published" in published
    assert "Orders 0.1.0  published" in ok("version", app=app, env=env)
    (app / "shop" / "catalog.py").write_text((app / "shop" / "catalog.py").read_text() + ADD_METHOD)
    assert "changed since publishing: bump it" in ok("version", "Catalog", app=app, env=env)
    bumped = ok("version", "Catalog", "patch", app=app, env=env)
    assert bumped.startswith("Catalog 0.1.0 → 0.1.1 (in ")
    assert '    version = "0.1.1"\n' in (app / "shop" / "catalog.py").read_text()
    ok("build", "Catalog", app=app, env=env)
    ok("publish", app=app, env=env)
    assert versions(env, "Catalog") == ["0.1.0", "0.1.1"]


def test_a_breaking_change_needs_a_major_bump(app: Path, env: dict[str, str]) -> None:
    """Removing a method: a patch bump is refused in one line naming the change and leaves the
    source alone; the bump that announces it (minor, below 1.0) passes."""
    ok("build", app=app, env=env)
    ok("publish", app=app, env=env)
    edit(app, "catalog", "    @lumi.api(idempotent=True)\n    def products(self)",
         "    def products(self)")  # fmt: skip
    before = (app / "shop" / "catalog.py").read_text()
    line = refused("version", "Catalog", "patch", app=app, env=env)
    assert line == (
        "error: Catalog 0.1.1: 1 breaking change(s) since 0.1.0 (Catalog.products: "
        "method-removed) need version 0.2.0 or later: lumi version Catalog minor, or accept "
        "them in lumi-api-allow.toml"
    )
    assert (app / "shop" / "catalog.py").read_text() == before
    assert ok("version", "Catalog", "minor", app=app, env=env).startswith("Catalog 0.1.0 → 0.2.0")


def test_the_allow_list_accepts_a_breaking_change(app: Path, env: dict[str, str]) -> None:
    """An allow-list entry for the removed method lets a patch bump through."""
    ok("build", app=app, env=env)
    ok("publish", app=app, env=env)
    edit(app, "catalog", "    @lumi.api(idempotent=True)\n    def products(self)",
         "    def products(self)")  # fmt: skip
    (app / "lumi-api-allow.toml").write_text(
        '[[allow]]\npath = "Catalog.products"\nreason = "nobody called it"\n'
    )
    assert "→ 0.1.1" in ok("version", "Catalog", "patch", app=app, env=env)


def test_publish_refuses_an_unannounced_break_and_changes_nothing(
    app: Path, env: dict[str, str]
) -> None:
    """A breaking change with only a patch bump written by hand: publish refuses everything."""
    ok("build", app=app, env=env)
    ok("publish", app=app, env=env)
    edit(app, "catalog", "    @lumi.api(idempotent=True)\n    def products(self)",
         "    def products(self)")  # fmt: skip
    edit(app, "catalog", '    """The products on sale."""\n',
         '    """The products on sale."""\n\n    version = "0.1.1"\n')  # fmt: skip
    edit(app, "orders", '    """Customer orders."""\n',
         '    """Customer orders."""\n\n    version = "0.1.1"\n')  # fmt: skip
    ok("build", app=app, env=env)
    line = refused("publish", app=app, env=env)
    assert "Catalog 0.1.1: 1 breaking change(s) since 0.1.0" in line
    assert versions(env, "Catalog") == ["0.1.0"] and versions(env, "Orders") == ["0.1.0"]


def test_a_duplicate_version_is_refused_and_the_published_one_stays(
    app: Path, env: dict[str, str]
) -> None:
    """Changed code under an unchanged version: refused, the published digest unchanged."""
    ok("build", app=app, env=env)
    ok("publish", app=app, env=env)
    repo = open_repository(env["LUMI_REPOSITORY"])
    before = asyncio.run(repo.published_digest("Catalog", "0.1.0"))
    edit(app, "catalog", '"Apple"', '"Green apple"')
    ok("build", app=app, env=env)
    line = refused("publish", app=app, env=env)
    assert line.startswith("error: Catalog@0.1.0 is already published in oci-layout:")
    assert "versions are immutable: bump the version (lumi version Catalog patch)" in line
    assert asyncio.run(repo.published_digest("Catalog", "0.1.0")) == before


def test_a_tampered_artifact_is_refused_and_nothing_is_written(
    app: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """lumi repo pull of an artifact whose wheel changed on disk: one line, no files."""
    ok("build", "Mailer", app=app, env=env)
    ok("publish", app=app, env=env)
    artifact = asyncio.run(open_repository(env["LUMI_REPOSITORY"]).pull("Mailer"))
    digest = artifact.layer(oci.WHEEL_MEDIA_TYPE).descriptor.digest
    blob = Path(env["LUMI_REPOSITORY"]) / "blobs" / "sha256" / digest.removeprefix("sha256:")
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    out = tmp_path / "pulled"
    line = refused("repo", "pull", "Mailer@0.1.0", "--out", str(out), app=app, env=env)
    assert "Mailer@0.1.0 shop-0.1.0-py3-none-any.whl: content does not match its digest" in line
    assert not out.exists()


def test_signed_publishing_and_verified_reading(
    app: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """keygen, publish --sign-key, show --trust-key; an unsigned artifact is refused."""
    ok("repo", "keygen", str(tmp_path / "keys"), app=app, env=env)
    ok("build", "Catalog", "Mailer", app=app, env=env)
    key, pub = tmp_path / "keys" / "lumi-signing.key", tmp_path / "keys" / "lumi-signing.pub"
    ok("publish", "Catalog", "--sign-key", str(key), app=app, env=env)
    ok("publish", "Mailer", app=app, env=env)
    shown = json.loads(ok("repo", "show", "Catalog@0.1.0", "--trust-key", str(pub),
                          app=app, env=env))  # fmt: skip
    assert shown["service"] == "Catalog" and shown["digest"].startswith("sha256:")
    line = refused("repo", "show", "Mailer", "--trust-key", str(pub), app=app, env=env)
    assert line == "error: Mailer@0.1.0 is not signed, and a trust key is configured"
    listed = json.loads(ok("repo", "ls", "--json", app=app, env=env))
    assert listed == {"Catalog": ["0.1.0"], "Mailer": ["0.1.0"]}


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry()
    yield server
    server.stop()


def test_publishing_to_a_registry_and_a_bad_password(app: Path, registry: Registry) -> None:
    """With the right password publish lands in the registry; with a wrong one it is refused
    in one line and the registry keeps what it had."""
    url = f"{registry.url}/shop"
    good = {"LUMI_REPOSITORY": url, "LUMI_REGISTRY_USERNAME": USER,
            "LUMI_REGISTRY_PASSWORD": PASSWORD}  # fmt: skip
    ok("build", "Inventory", app=app, env=good)
    assert "Inventory@0.1.0" in ok("publish", app=app, env=good)
    edit(app, "inventory", '    """Stock per SKU."""\n',
         '    """Stock per SKU."""\n\n    version = "0.1.1"\n')  # fmt: skip
    ok("build", "Inventory", app=app, env=good)
    bad = {**good, "LUMI_REGISTRY_PASSWORD": "nope"}
    line = refused("publish", app=app, env=bad)
    assert line == f"error: registry {registry.url} refused the password of user 'lumi' (HTTP 401)"
    assert json.loads(ok("repo", "ls", "Inventory", "--json", app=app, env=good)) == {
        "Inventory": ["0.1.0"]
    }
