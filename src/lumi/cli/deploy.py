"""``lumi deploy --target kubernetes --env ENV --out DIR``: render (and ``--apply``) an app's
Kubernetes manifests: a Kustomize base plus an overlay per environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lumi.cli.output import fail, stderr, stdout

TARGETS = ("kubernetes",)


def register(app: typer.Typer) -> None:
    @app.command("deploy")
    def deploy_cmd(
        target: Annotated[
            str, typer.Option("--target", "-t", help="Where to deploy: kubernetes.")
        ] = "kubernetes",
        envs: Annotated[
            list[str] | None,
            typer.Option("--env", "-e", help="An environment to render an overlay for (repeat)."),
        ] = None,
        out: Annotated[
            Path, typer.Option("--out", "-o", help="The folder for base/ and overlays/.")
        ] = Path("deploy/kubernetes"),
        app_dir: Annotated[
            Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")
        ] = Path("."),
        apply: Annotated[
            bool, typer.Option("--apply", help="kubectl apply -k the overlay (one --env).")
        ] = False,
        check: Annotated[
            bool,
            typer.Option("--check", help="Only say whether OUT is up to date (exit 1 if not)."),
        ] = False,
    ) -> None:
        """Render Kubernetes manifests: Deployments (DaemonSets for per-node services),
        Services per transport port, probes, ConfigMap, optional HPA and PDB."""
        if target not in TARGETS:
            fail(f"unknown deploy target {target!r} (valid: {', '.join(TARGETS)})", code=2)
        environments = list(dict.fromkeys(envs or []))
        if apply and len(environments) != 1:
            fail("--apply applies one environment: give exactly one --env", code=2)
        from lumi.targets import kustomize

        rendered = kustomize.layout(app_dir, environments)
        for warning, where in rendered.warnings.items():
            stderr.print(f"[yellow]warning:[/] {escape(warning)} [dim]({', '.join(where)})[/]")
        if check:
            differ = kustomize.stale(rendered.files, out)
            if differ:
                fail(f"{out} is out of date ({', '.join(differ)}); run without --check", code=1)
            stdout.print(f"{out} is up to date", highlight=False)
            return
        changed = kustomize.write(rendered.files, out)
        stdout.print(
            f"wrote {len(rendered.files)} files to {out} ({len(changed)} changed): base/ and "
            f"{', '.join(f'overlays/{e}/' for e in environments) or 'no overlays (use --env)'}",
            highlight=False,
        )
        if apply:
            stdout.print(kustomize.apply(out, environments[0]).rstrip(), highlight=False)
