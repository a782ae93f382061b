"""``lumi ls`` and ``lumi interface``: what an app is made of, read from its config."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lumi.cli.output import fail, print_json, say, styled

if TYPE_CHECKING:
    from lumi.config import AppConfig
    from lumi.model.interface import MethodInfo, ServiceInterface
    from lumi.runtimes.discovery import Registry
    from lumi.security.policy import Policy

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]
Env = Annotated[str | None, typer.Option("--env", "-e", help="A named environment of the config.")]


def load_interfaces(config: AppConfig) -> dict[str, ServiceInterface]:
    from lumi.model.interface import interface

    return {cls.name: interface(cls) for cls in config.load_services()}


def pick_service(interfaces: dict[str, ServiceInterface], name: str) -> ServiceInterface:
    """The interface called ``name``, or exit with a did-you-mean line."""
    if name in interfaces:
        return interfaces[name]
    match = difflib.get_close_matches(name, list(interfaces), n=1)
    hint = f"; did you mean {match[0]!r}?" if match else ""
    fail(f"no service {name!r} in this app{hint} (services: {', '.join(interfaces)})")


def signature(name: str, method: MethodInfo, iface: ServiceInterface) -> str:
    props = method.params.get("properties", {})
    required = set(method.required_params)
    parts = []
    for param in method.param_names:
        text = f"{param}: {schema_type(props.get(param, {}))}"
        parts.append(text if param in required else f"{text} = …")
    return f"{name}({', '.join(parts)}) -> {schema_type(method.returns)}"


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


def access_summary(policy: Policy, iface: ServiceInterface) -> str:
    """One line on who may call a service (``lumi ls``); each method's callers follow it."""
    access = policy.access
    if access is None:
        text = "access: any service of the app (no [access] table)"
    else:
        allowed = ", ".join(access.allow) or "no one"
        text = f"access: default {access.default}; every method: {allowed}"
    if policy.operator_everywhere:
        text += "; the operator: every method"
    if iface.auth:
        text += "; bearer tokens verified for public methods"
    return text


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
        from lumi.config import load_config
        from lumi.model.errors import AppError
        from lumi.runtimes.discovery import read_registry
        from lumi.security.policy import policies

        config = load_config(app_dir, env)
        try:
            running: Registry | None = read_registry(config.root)
        except AppError:
            running = None
        interfaces = load_interfaces(config)
        access = policies(config, interfaces)
        if not config.security.mtls:
            say(
                styled("mTLS is off", "yellow") + " (security.mtls = false): any local process "
                "may call any method, and callers are not known"
            )
        for name, iface in interfaces.items():
            summary = iface.doc.splitlines()[0] if iface.doc else ""
            say(f"{styled(name, 'bold cyan')} {iface.version}  {styled(summary, 'dim')}")
            state = running.services.get(name) if running else None
            for replica in state.replicas if state else []:
                where = f", {replica.runtime}" if replica.runtime != "process" else ""
                where += f", {replica.node}" if replica.node else ""
                facts = f"{replica.state}, pid {replica.pid}, restarts {replica.restarts}{where}"
                say(
                    f"  {styled(f'replica {replica.index}', 'yellow')} "
                    f"{' '.join(replica.endpoints)} {styled(facts, 'dim')}"
                )
            if config.security.mtls:
                say(f"  {styled(access_summary(access[name], iface), 'dim')}")
            for method_name, method in sorted(iface.methods.items()):
                flag = " " + styled("(idempotent)", "dim") if method.idempotent else ""
                if config.security.mtls or method.public:
                    flag += " " + styled(f"[{access[name].describe(method_name)}]", "dim")
                say(f"  {signature(method_name, method, iface)}{flag}")
            for event_name, event in sorted(iface.events.items()):
                say(
                    f"  {styled('event', 'magenta')} {iface.topic(event_name)}: "
                    f"{schema_type(event.payload)}"
                )
            for sub in iface.subscriptions:
                say(f"  {styled('on', 'green')} {sub.topic} -> {sub.handler}")
