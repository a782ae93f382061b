"""``lumi publish`` and ``lumi repo ls|show|pull|keygen``: the artifact repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lumi.cli.output import print_json, stderr, stdout

if TYPE_CHECKING:
    from lumi.config import AppConfig
    from lumi.packaging.artifact import Artifact
    from lumi.packaging.repository import Repository

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]
Repo = Annotated[
    str | None, typer.Option("--repo", "-r", help="Repository URL (default: from config).")
]
TrustKey = Annotated[
    str | None, typer.Option("--trust-key", help="Refuse artifacts not signed by this key.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _config(app_dir: Path) -> AppConfig | None:
    """The app's config if ``app_dir`` holds one (repo commands also work outside an app)."""
    from lumi.config import load_config
    from lumi.model.errors import ConfigError

    try:
        return load_config(app_dir)
    except ConfigError:
        if app_dir != Path("."):
            raise
        return None


def register(app: typer.Typer) -> None:
    @app.command("publish")
    def publish_cmd(
        services: Annotated[
            list[str] | None, typer.Argument(help="Services to publish (default: all built).")
        ] = None,
        app_dir: AppDir = Path("."),
        repo: Repo = None,
        sign_key: Annotated[
            str | None, typer.Option("--sign-key", help="Sign with this ed25519 key (PEM).")
        ] = None,
        quiet: Quiet = False,
    ) -> None:
        """Push the last build's artifacts; refuses all if any version is taken or breaks."""
        from lumi.config import load_config
        from lumi.packaging.build import BUILD_DIR, load_built
        from lumi.packaging.errors import BuildError
        from lumi.packaging.progress import transfer_bars
        from lumi.packaging.publish import publish
        from lumi.packaging.settings import repository_for

        config = load_config(app_dir)
        repository = repository_for(config, url=repo, signing_key=sign_key)

        async def run() -> None:
            async with repository:
                artifacts = await load_built(config.root / BUILD_DIR)
                if services:
                    known = {a.manifest.service for a in artifacts}
                    missing = [s for s in services if s not in known]
                    if missing:
                        raise BuildError(
                            f"{missing[0]} is not in the last build (built: "
                            f"{', '.join(sorted(known))}); run lumi build {missing[0]}"
                        )
                    artifacts = [a for a in artifacts if a.manifest.service in services]
                with transfer_bars(stderr, enabled=not quiet) as progress:
                    results = await publish(
                        repository, artifacts, app_dir=config.root, progress=progress
                    )
            for result in results:
                state = "published" if result.created else "already published, unchanged"
                mark = ", signed" if result.signed else ""
                stdout.print(f"{result.ref}  {result.digest}  [dim]{state}{mark}[/]",
                             highlight=False)  # fmt: skip
            stdout.print(f"to {repository.url}", highlight=False)

        _run(run())

    repo_app = typer.Typer(help="Look into an artifact repository.", no_args_is_help=True)
    app.add_typer(repo_app, name="repo")

    @repo_app.command("ls")
    def ls_cmd(
        service: Annotated[str | None, typer.Argument(help="List this service's versions.")] = None,
        app_dir: AppDir = Path("."),
        repo: Repo = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """List the services in the repository, or one service's versions."""
        from lumi.packaging.settings import repository_for

        repository = repository_for(_config(app_dir), url=repo)

        async def run() -> dict[str, list[str]]:
            async with repository:
                names = [service] if service else await repository.services()
                return {name: await repository.versions(name) for name in names}

        listing = _run(run())
        if as_json:
            print_json(listing)
            return
        if not any(listing.values()):
            stdout.print(f"nothing published in {repository.url}", highlight=False)
        for name, versions in listing.items():
            stdout.print(f"[bold cyan]{name}[/] {' '.join(versions) or '-'}", highlight=False)

    @repo_app.command("show")
    def show_cmd(
        ref: Annotated[str, typer.Argument(help="SERVICE[@VERSION] (default: the latest).")],
        app_dir: AppDir = Path("."),
        repo: Repo = None,
        trust_key: TrustKey = None,
    ) -> None:
        """Print the Lumi manifest of a published version (digest-checked) as JSON."""
        from lumi.packaging.repository import parse_ref
        from lumi.packaging.settings import repository_for

        repository = repository_for(_config(app_dir), url=repo, trust_key=trust_key)
        service, reference = parse_ref(ref)

        async def run() -> None:
            async with repository:
                published = await repository.manifest(service, reference)
            print_json({"digest": published.digest, "size": published.size,
                        **published.manifest.model_dump(mode="json")})  # fmt: skip

        _run(run())

    @repo_app.command("pull")
    def pull_cmd(
        ref: Annotated[str, typer.Argument(help="SERVICE[@VERSION] (default: the latest).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the files.")] = Path("."),
        app_dir: AppDir = Path("."),
        repo: Repo = None,
        trust_key: TrustKey = None,
        quiet: Quiet = False,
    ) -> None:
        """Download a published version's layers (checked) and manifest into a folder."""
        from lumi.packaging.repository import parse_ref
        from lumi.packaging.settings import repository_for

        repository = repository_for(_config(app_dir), url=repo, trust_key=trust_key)
        service, reference = parse_ref(ref)
        artifact = _run(_pull(repository, service, reference, quiet))
        out.mkdir(parents=True, exist_ok=True)
        for layer in artifact.layers:
            (out / Path(layer.descriptor.title).name).write_bytes(layer.data)
        (out / "manifest.json").write_text(
            json.dumps(artifact.manifest.model_dump(mode="json"), indent=2) + "\n"
        )
        stdout.print(f"{artifact.ref} {artifact.digest} → {out}", highlight=False)

    @repo_app.command("keygen")
    def keygen_cmd(
        folder: Annotated[Path, typer.Argument(help="Where the key pair goes.")] = Path("."),
    ) -> None:
        """Make an ed25519 signing key pair (lumi-signing.key, lumi-signing.pub)."""
        from lumi.packaging.signing import generate_keypair

        private, public = generate_keypair(folder)
        stdout.print(f"wrote {private} (keep it secret) and {public} (the trust key)")


def _run(main: Any) -> Any:
    import asyncio

    return asyncio.run(main)


async def _pull(
    repository: Repository, service: str, reference: str | None, quiet: bool
) -> Artifact:
    from lumi.packaging.progress import transfer_bars

    async with repository:
        with transfer_bars(stderr, enabled=not quiet) as progress:
            return await repository.pull(service, reference, progress=progress)
