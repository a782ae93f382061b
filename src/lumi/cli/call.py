"""``lumi call SERVICE.METHOD key=value ...``: call a method of the running app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lumi.cli.output import fail, print_json
from lumi.model.suggest import close_matches

if TYPE_CHECKING:
    from lumi.model.interface import ServiceInterface
    from lumi.transports.base import ChannelSettings


def _did_you_mean(word: str, choices: list[str]) -> str:
    match = close_matches(word, choices, n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def parse_arguments(
    iface: ServiceInterface, method: str, pairs: list[str], raw: str | None
) -> dict[str, Any]:
    """``key=value`` pairs (values are JSON when they parse, else strings) or ``--json``."""
    info = iface.methods[method]
    properties = info.params.get("properties", {})
    return _arguments(f"{iface.name}.{method}", properties, info.param_names, pairs, raw)


def _arguments(
    target: str, properties: dict[str, Any], names: list[str], pairs: list[str], raw: str | None
) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if raw is not None:
        try:
            loaded = json.loads(raw)
        except ValueError as exc:
            fail(f"--json is not valid JSON: {exc}")
        if not isinstance(loaded, dict):
            fail('--json must be a JSON object of arguments, e.g. \'{"sku": "apple"}\'')
        arguments.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            fail(f"argument {pair!r} is not key=value (parameters: {', '.join(names) or 'none'})")
        if key not in properties:
            fail(
                f"{target} has no parameter {key!r}{_did_you_mean(key, list(properties))} "
                f"(parameters: {', '.join(names) or 'none'})"
            )
        arguments[key] = _value(properties[key], value)
    return arguments


def _value(schema: dict[str, Any], text: str) -> Any:
    if schema.get("type") == "string":
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def register(app: typer.Typer) -> None:
    @app.command("call")
    def call_cmd(
        target: Annotated[str, typer.Argument(metavar="SERVICE.METHOD", help="What to call.")],
        arguments: Annotated[
            list[str] | None, typer.Argument(metavar="[KEY=VALUE]...", help="Arguments.")
        ] = None,
        json_args: Annotated[
            str | None, typer.Option("--json", help="All arguments as one JSON object.")
        ] = None,
        app_dir: Annotated[Path, typer.Option("--app", "-a", help="The app folder.")] = Path("."),
        transport: Annotated[
            str | None,
            typer.Option(
                "--transport", "-t", help="The RPC transport (default: the service's first)."
            ),
        ] = None,
        timeout: Annotated[
            float, typer.Option("--timeout", help="Seconds to wait for the answer.")
        ] = 30.0,
    ) -> None:
        """Call a method of the running app and print the result as JSON."""
        service, sep, method = target.partition(".")
        if not sep or not service or not method:
            fail(f"{target!r} is not SERVICE.METHOD, e.g. Orders.place")
        root = app_dir.resolve()
        from lumi.cli._quick_call import prepare

        quick = prepare(root, service, method, transport)
        if quick is not None:  # plain HTTP: the standard library's socket is enough
            pairs = arguments or []
            args = _arguments(target, quick.properties, quick.param_names, pairs, json_args)
            answer = quick.send(args, timeout)
            if answer is not None:
                print_json(answer.value)
                return

        import asyncio

        from lumi.runtimes.discovery import read_interface, read_registry
        from lumi.transports import idl
        from lumi.transports.base import transport_of

        registry = read_registry(root)
        if service not in registry.services:
            names = list(registry.services)
            fail(
                f"no service {service!r} in the running app{_did_you_mean(service, names)} "
                f"(services: {', '.join(names)})"
            )
        iface = read_interface(root, service)
        if method not in iface.methods:
            names = sorted(iface.methods)
            fail(
                f"{service} has no method {method!r}{_did_you_mean(method, names)} "
                f"(methods: {', '.join(names)})"
            )
        endpoints = registry.services[service].endpoints
        offered = list(dict.fromkeys(transport_of(url) for url in endpoints))
        chosen = transport or offered[0]
        if chosen not in offered:
            fail(
                f"{service} does not serve {chosen!r}{_did_you_mean(chosen, offered)} "
                f"(transports: {', '.join(offered)})"
            )
        arguments_obj = parse_arguments(iface, method, arguments or [], json_args)
        urls = [url for url in endpoints if transport_of(url) == chosen]
        idl.configure(idl.for_app(root, registry.app))  # gRPC/Thrift: the app's package, lock
        # mTLS: call as the operator, with the certificate lumi run issued
        settings = None
        if registry.mtls:
            from lumi.security.identity import server_name
            from lumi.security.issuer import operator_tls
            from lumi.transports.base import ChannelSettings

            settings = ChannelSettings(
                tls=operator_tls(root), server_name=server_name(registry.app, service)
            )
        result = asyncio.run(_call(iface, chosen, urls, method, arguments_obj, timeout, settings))
        print_json(result)


async def _call(
    iface: ServiceInterface,
    transport_name: str,
    urls: list[str],
    method: str,
    arguments: dict[str, Any],
    timeout: float,
    settings: ChannelSettings | None = None,
) -> Any:
    """One call through the same client pipeline a service uses (balancing, retries)."""
    from lumi import transports
    from lumi.pipeline.call import compose
    from lumi.pipeline.client import Client
    from lumi.runtime_services.resilience.balancer import Balancer
    from lumi.runtime_services.resilience.breaker import Breakers
    from lumi.runtime_services.resilience.policies import Policies
    from lumi.runtime_services.resilience.retry import Resilience

    transport = transports.get(transport_name)
    balancer = Balancer(
        iface.name, [transport.channel(url, iface, settings) for url in urls], breakers=Breakers()
    )
    handler = compose(balancer, [Resilience(None, Policies())])
    try:
        return await Client(iface, handler).invoke(method, arguments, timeout=timeout)
    finally:
        await balancer.aclose()
