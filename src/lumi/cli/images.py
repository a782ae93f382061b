"""``lumi build image [SERVICE...]`` and ``lumi build lambda SERVICE``: what the container and
function runtimes (and ``lumi deploy``) run.

Both are subcommands of the ``lumi build`` group; when another module already registered that
group (``lumi build`` of artifacts), they join it, else this module makes the group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumi.cli.output import stderr, stdout

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]
Env = Annotated[str | None, typer.Option("--env", "-e", help="A named environment of the config.")]


def build_group(app: typer.Typer) -> typer.Typer:
    """The ``lumi build`` group: the one registered already, or a new one."""
    for info in app.registered_groups:
        if info.name == "build" and info.typer_instance is not None:
            return info.typer_instance
    group = typer.Typer(help="Build what services run as: images, Lambda zips.")
    app.add_typer(group, name="build")
    return group


def _step(message: str) -> None:
    stderr.print(f"[dim]… {message}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    build = build_group(app)

    @build.command("image")
    def image_cmd(
        services: Annotated[
            list[str] | None, typer.Argument(help="Services to build (default: all).")
        ] = None,
        app_dir: AppDir = Path("."),
        env: Env = None,
        base: Annotated[
            str | None, typer.Option(help="Base image (default: [image] base in lumi.toml).")
        ] = None,
    ) -> None:
        """Build a container image per service (Containerfile in .lumi/image-build/)."""
        from lumi.targets.image import build_images

        built = build_images(app_dir, services or [], env=env, base=base, step=_step)
        for image in built:
            stdout.print(f"[bold cyan]{image.service}[/] {image.ref}  [dim]{image.id[:19]}[/]")
        stdout.print(f"built {len(built)} image(s); recorded in .lumi/images.json")

    @build.command("lambda")
    def lambda_cmd(
        service: Annotated[str, typer.Argument(help="The service to package.")],
        app_dir: AppDir = Path("."),
        env: Env = None,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="The zip (default .lumi/lambda/S.zip).")
        ] = None,
        python: Annotated[str, typer.Option(help="The Lambda Python runtime, e.g. 3.12.")] = "3.12",
        arch: Annotated[str, typer.Option(help="x86_64 or arm64.")] = "x86_64",
    ) -> None:
        """Build a deployable AWS Lambda zip serving SERVICE (handler: lumi_lambda.handler)."""
        from lumi.targets.lambda_zip import build_lambda

        result = build_lambda(
            app_dir, service, env=env, out=out, python=python, arch=arch, step=_step
        )
        stdout.print(
            f"[bold cyan]{service}[/] {result.path} ({result.size / 1e6:.1f} MB); "
            f"handler {result.handler}, runtime python{python}, {arch}",
            highlight=False,
        )
