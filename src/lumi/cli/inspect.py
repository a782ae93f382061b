"""``lumi ls`` and ``lumi interface``: what an app is made of, read from its config (or, for
``lumi ls`` of a running app, from what its supervisor wrote: ``lumi.cli._quick_ls``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lumi.cli import _quick_ls
from lumi.cli._quick_ls import Running
from lumi.cli.output import fail, print_json, say, styled
from lumi.model.suggest import close_matches

if TYPE_CHECKING:
    from lumi.config import AppConfig
    from lumi.model.interface import ServiceInterface
    from lumi.runtimes.discovery import Registry

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]
Env = Annotated[str | None, typer.Option("--env", "-e", help="A named environment of the config.")]


def load_interfaces(config: AppConfig) -> dict[str, ServiceInterface]:
    from lumi.model.interface import interface

    return {cls.name: interface(cls) for cls in config.load_services()}


def pick_service(interfaces: dict[str, ServiceInterface], name: str) -> ServiceInterface:
    """The interface called ``name``, or exit with a did-you-mean line."""
    if name in interfaces:
        return interfaces[name]
    match = close_matches(name, list(interfaces), n=1)
    hint = f"; did you mean {match[0]!r}?" if match else ""
    fail(f"no service {name!r} in this app{hint} (services: {', '.join(interfaces)})")


def signature(name: str, method: dict[str, Any]) -> str:
    """``name(param: type, …) -> type`` of one method of an interface's JSON."""
    params = method.get("params", {})
    props, required = params.get("properties", {}), set(params.get("required", []))
    parts = []
    for param in method.get("param_order") or sorted(props):
        text = f"{param}: {schema_type(props.get(param, {}))}"
        parts.append(text if param in required else f"{text} = …")
    return f"{name}({', '.join(parts)}) -> {schema_type(method.get('returns', {}))}"


def schema_type(schema: dict[str, object]) -> str:
    """A short, Python-like rendering of a JSON Schema."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(schema_type(s) for s in schema["anyOf"])  # type: ignore[attr-defined]
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])  # type: ignore[attr-defined]
    if "const" in schema:
        return repr(schema["const"])
    kind = schema.get("type")
    if kind == "array":
        return f"list[{schema_type(schema.get('items', {}))}]"  # type: ignore[arg-type]
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"dict[str, {schema_type(schema['additionalProperties'])}]"  # type: ignore[arg-type]
    names = {
        "string": "str",
        "integer": "int",
        "number": "float",
        "boolean": "bool",
        "null": "None",
        "object": "dict",
    }
    if schema.get("format") in ("date-time",):
        return "datetime"
    if schema.get("format") in ("base64url", "binary"):
        return "bytes"
    return names.get(str(kind), "any")


def print_listing(running: Running) -> None:
    """What ``lumi ls`` prints: each service's interface, its replicas while the app runs and,
    with mTLS, who may call what."""
    if not running.mtls:
        say(
            styled("mTLS is off", "yellow") + " (security.mtls = false): any local process "
            "may call any method, and callers are not known"
        )
    for iface in running.interfaces:
        name, doc = iface["name"], iface.get("doc") or ""
        access = running.access[name]
        summary = doc.splitlines()[0] if doc else ""
        say(f"{styled(name, 'bold cyan')} {iface['version']}  {styled(summary, 'dim')}")
        for replica in running.replicas.get(name, []):
            runtime, node = replica.get("runtime", "process"), replica.get("node")
            where = f", {runtime}" if runtime != "process" else ""
            where += f", {node}" if node else ""
            facts = (
                f"{replica.get('state', 'starting')}, pid {replica.get('pid')}, "
                f"restarts {replica.get('restarts', 0)}{where}"
            )
            label = styled(f"replica {replica['index']}", "yellow")
            say(f"  {label} {' '.join(replica['endpoints'])} {styled(facts, 'dim')}")
        if running.mtls:
            say(f"  {styled(access['summary'], 'dim')}")
        for method_name, method in sorted(iface.get("methods", {}).items()):
            flag = " " + styled("(idempotent)", "dim") if method.get("idempotent") else ""
            if running.mtls or method.get("public"):
                flag += " " + styled(f"[{access['methods'][method_name]}]", "dim")
            say(f"  {signature(method_name, method)}{flag}")
        for event_name, event in sorted(iface.get("events", {}).items()):
            say(
                f"  {styled('event', 'magenta')} {name}.{event_name}: "
                f"{schema_type(event.get('payload', {}))}"
            )
        for sub in iface.get("subscriptions", []):
            topic = f"{sub['service']}.{sub['event']}"
            say(f"  {styled('on', 'green')} {topic} -> {sub['handler']}")


def register(app: typer.Typer) -> None:
    @app.command("interface")
    def interface_cmd(
        service: Annotated[
            str | None, typer.Argument(help="The service name; all services if omitted.")
        ] = None,
        app_dir: AppDir = Path("."),
        env: Env = None,
    ) -> None:
        """Print a service's interface JSON, or a {name: interface} map of all of them."""
        from lumi.config import load_config

        interfaces = load_interfaces(load_config(app_dir, env))
        if service is None:
            print_json({name: iface.to_dict() for name, iface in sorted(interfaces.items())})
        else:
            print_json(pick_service(interfaces, service).to_dict())

    @app.command("ls")
    def ls_cmd(app_dir: AppDir = Path("."), env: Env = None) -> None:
        """List the app's services with method signatures, events and, while it runs, endpoints."""
        running = _quick_ls.read(app_dir, env)
        if running is None:
            running = _from_config(app_dir, env)
        print_listing(running)


def _from_config(app_dir: Path, env: str | None) -> Running:
    """The listing from the config and the app's code (and the registry, while it runs)."""
    from lumi.config import load_config
    from lumi.model.errors import AppError
    from lumi.runtimes.discovery import read_registry
    from lumi.security.policy import policies

    config = load_config(app_dir, env)
    try:
        registry: Registry | None = read_registry(config.root)
    except AppError:
        registry = None
    interfaces = load_interfaces(config)
    access = {name: policy.listing() for name, policy in policies(config, interfaces).items()}
    replicas = {
        name: [replica.model_dump(mode="json") for replica in state.replicas]
        for name, state in (registry.services.items() if registry else ())
    }
    iface_json = [iface.to_dict() for iface in interfaces.values()]
    return Running(config.security.mtls, iface_json, access, replicas)
