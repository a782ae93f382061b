"""``lumi up|down ENV``, ``lumi deploy ENV [SERVICE@VERSION...]``, ``lumi deploy history ENV``,
``lumi rollback ENV SERVICE``, ``lumi status ENV``: deploying artifacts from the repository;
``lumi deploy --target kubernetes --env ENV --out DIR``: an app's Kubernetes manifests (a
Kustomize base plus an overlay per environment), pinned to the repository's versions with
``--images REGISTRY``."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lumi.cli.output import fail, print_json, stderr, stdout

if TYPE_CHECKING:  # the commands import what they use: a CLI start stays cheap
    from lumi.deploy.state import EnvironmentState, Record

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]
Repo = Annotated[
    str | None, typer.Option("--repo", "-r", help="Repository URL (default: from config).")
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Env = Annotated[str, typer.Argument(help="The environment: an [env.NAME] of lumi.toml.")]


def _state(app_dir: Path, env: str) -> EnvironmentState:
    """The environment's state, once ``env`` is known to be one of the app's environments."""
    from lumi.config import load_config
    from lumi.deploy.state import EnvironmentState

    config = load_config(app_dir, env)
    return EnvironmentState(config.root, env)


def _progress(message: str) -> None:
    from rich.markup import escape

    # stdout, like the summary: stderr carries only the one line of an error
    stdout.print(f"[dim]{escape(message)}[/]", highlight=False)


def _rollout(state: EnvironmentState, path: str, body: dict[str, Any], as_json: bool) -> None:
    import asyncio

    from lumi.deploy import client
    from lumi.deploy.state import Record

    async def go() -> dict[str, Any] | None:
        async with client.ControlClient(state) as control:
            return await control.stream(path, body, (lambda _: None) if as_json else _progress)

    found = asyncio.run(go())
    if as_json:
        print_json(found)
    if found is None:
        return
    record = Record.model_validate(found)
    if not as_json:
        stdout.print(_summary(record), highlight=False)
    if record.outcome != "succeeded":
        fail(f"{record.outcome}: {record.reason}", code=1)


def _summary(record: Record) -> str:
    moved = ", ".join(
        f"{c.service} {c.from_version or '-'} → {c.to_version}" for c in record.changes
    )
    took = (record.finished or record.started) - record.started
    what = f"#{record.id} {record.action} {moved} ({record.strategy})"
    return f"{what}: {record.outcome} in {took:.1f}s"


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up_cmd(env: Env, app_dir: AppDir = Path(".")) -> None:
        """Start the environment's control plane in the background (and what was deployed)."""
        from lumi.config import load_config
        from lumi.deploy import client

        root = load_config(app_dir, env).root
        control, started = client.start(root, env)
        how = "is up" if started else "was already up"
        say = f"environment {env} {how}: control plane pid {control.pid}, {control.url}"
        stdout.print(say, highlight=False)

    @app.command("down")
    def down_cmd(env: Env, app_dir: AppDir = Path(".")) -> None:
        """Stop every service of the environment, then its control plane."""
        from lumi.config import load_config
        from lumi.deploy import client

        stopped = client.stop(load_config(app_dir, env).root, env)
        stdout.print(f"environment {env} {'is down' if stopped else 'was not up'}", highlight=False)

    @app.command("deploy")
    def deploy_cmd(
        env: Annotated[
            str | None, typer.Argument(help="The environment, or `history ENV`.")
        ] = None,
        refs: Annotated[
            list[str] | None,
            typer.Argument(metavar="[SERVICE[@VERSION]]...", help="Default: every service."),
        ] = None,
        app_dir: AppDir = Path("."),
        repo: Repo = None,
        as_json: Json = False,
        target: Annotated[
            str,
            typer.Option("--target", "-t", help="local (the control plane) or kubernetes."),
        ] = "local",
        envs: Annotated[
            list[str] | None,
            typer.Option("--env", "-e", help="kubernetes: an environment to render (repeat)."),
        ] = None,
        images: Annotated[
            str | None,
            typer.Option("--images", help="kubernetes: pin to the images in this registry."),
        ] = None,
        out: Annotated[
            Path, typer.Option("--out", "-o", help="kubernetes: the folder of base/, overlays/.")
        ] = Path("deploy/kubernetes"),
        apply: Annotated[
            bool, typer.Option("--apply", help="kubernetes: kubectl apply -k (one environment).")
        ] = False,
        check: Annotated[
            bool,
            typer.Option("--check", help="kubernetes: only say whether OUT is up to date."),
        ] = False,
    ) -> None:
        """Deploy versions from the repository to an environment, by its deploy strategy (a
        canary with automatic rollback, or rolling); `lumi deploy history ENV` lists them.
        With --target kubernetes, render manifests instead: Deployments (DaemonSets for
        per-node services), Services per transport port, probes, ConfigMap, HPA and PDB."""
        if env == "history":
            if len(refs or []) != 1:
                fail("lumi deploy history ENV: name one environment", code=2)
            _history(app_dir, (refs or [""])[0], as_json)
            return
        if target == "kubernetes":
            named = [env] if env else []
            _kubernetes(
                app_dir, [*named, *(envs or [])], refs or [], repo, images, out, apply, check
            )
            return
        if target != "local":
            fail(f"unknown deploy target {target!r} (valid: local, kubernetes)", code=2)
        if env is None:
            fail("lumi deploy ENV: name the environment to deploy to (an [env.NAME] of lumi.toml)",
                 code=2)  # fmt: skip
        if envs or apply or check or images:
            fail("--env, --images, --apply and --check are for --target kubernetes", code=2)
        state = _state(app_dir, env)
        _rollout(state, "/v1/deploy", {"refs": refs or [], "repo": repo}, as_json)

    @app.command("rollback")
    def rollback_cmd(
        env: Env,
        service: Annotated[str, typer.Argument(help="The service to take back a version.")],
        app_dir: AppDir = Path("."),
        repo: Repo = None,
        as_json: Json = False,
    ) -> None:
        """Put back the version a service ran before its current one (a rolling update)."""
        state = _state(app_dir, env)
        _rollout(state, "/v1/rollback", {"service": service, "repo": repo}, as_json)

    @app.command("status")
    def status_cmd(env: Env, app_dir: AppDir = Path("."), as_json: Json = False) -> None:
        """What runs in the environment: versions, digests, replicas, a rollout in progress."""
        import asyncio

        from lumi.deploy import client

        state = _state(app_dir, env)
        if client.running(state) is None:
            services = {
                name: {"version": s.version, "digest": s.digest, "replicas": []}
                for name, s in state.deployed().services.items()
            }
            status: dict[str, Any] = {"env": env, "phase": "down", "rollout": None}
            status["services"] = services
        else:

            async def ask() -> dict[str, Any]:
                async with client.ControlClient(state) as control:
                    return await control.status()

            status = asyncio.run(ask())
        if as_json:
            print_json(status)
            return
        _print_status(env, status)


def _kubernetes(
    app_dir: Path,
    environments: list[str],
    refs: list[str],
    repo: str | None,
    images: str | None,
    out: Path,
    apply: bool,
    check: bool,
) -> None:
    """Render the base and each environment's overlay; with ``images``, pin one environment to
    the repository's versions of ``refs`` (an overlay on top of its own)."""
    import asyncio

    from rich.markup import escape

    from lumi.config import load_config
    from lumi.deploy import kubernetes
    from lumi.targets import kustomize
    from lumi.targets.kubernetes import image_names

    environments = list(dict.fromkeys(environments))
    if (apply or images) and len(environments) != 1:
        fail("--apply and --images take one environment: give exactly one", code=2)
    if refs and not images:
        fail("SERVICE@VERSION pins images: add --images REGISTRY (where they were pushed)", code=2)
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
    issued = kustomize.write_certificates(app_dir, rendered, out)
    if issued:
        stdout.print(
            f"issued {len(issued)} certificate(s) from the app's CA into tls/ (private keys: "
            f"kept out of git): {', '.join(issued)}",
            highlight=False,
        )
    target = environments[0] if environments else None
    if images and target is not None:
        config = load_config(app_dir, target)
        folder, pins = asyncio.run(
            kubernetes.render_pinned(
                config, refs, repo=repo, images=images, out=out, rendered=image_names(config)
            )
        )
        for pin in pins:
            stdout.print(f"{pin.service}@{pin.version}  {pin.reference}", highlight=False)
        stdout.print(f"wrote {folder / 'kustomization.yaml'} (kubectl apply -k {folder})",
                     highlight=False)  # fmt: skip
        target = folder.name
    if apply and target is not None:
        stdout.print(kustomize.apply(out, target).rstrip(), highlight=False)


def _print_status(env: str, status: dict[str, Any]) -> None:
    phase = status["phase"]
    where = f" (control plane pid {status['pid']})" if phase != "down" else f" (lumi up {env})"
    stdout.print(f"environment [bold]{env}[/]: {phase}{where}", highlight=False)
    for name, service in status["services"].items():
        replicas = service["replicas"]
        ready = sum(1 for r in replicas if r["state"] == "ready")
        shown = f"{ready}/{len(replicas)} ready" if replicas else "not running"
        digest = service["digest"][:19]
        line = f"  [bold cyan]{name:<12}[/] {service['version']:<10} {digest}…  {shown}"
        stdout.print(line, highlight=False)
    rollout = status.get("rollout")
    if rollout:
        line = f"  rollout: {rollout['what']}"
        canary = rollout.get("canary")
        if canary:
            line += f"; canary {canary['requests']} calls, {canary['errors']} errors"
        stdout.print(line, highlight=False)


def _history(app_dir: Path, env: str, as_json: bool) -> None:
    from rich.markup import escape

    records = _state(app_dir, env).history()
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        stdout.print(f"nothing deployed to {env} yet", highlight=False)
    for record in records:
        stdout.print(f"{_when(record.started)}  {_summary(record)}", highlight=False)
        if record.reason:
            stdout.print(f"    [dim]{escape(record.reason)}[/]", highlight=False)
        for step in record.steps:
            seen = f"canary {step.canary.describe()}; stable {step.stable.describe()}"
            line = f"    [dim]{step.weight:>3}%  {seen}: {escape(step.verdict)}[/]"
            stdout.print(line, highlight=False)
