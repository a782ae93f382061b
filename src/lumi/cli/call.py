"""``lumi call SERVICE.METHOD key=value ...``: call a method of the running app."""

from __future__ import annotations

import asyncio
import difflib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer

from lumi.cli.output import fail, print_json
from lumi.config import load_config
from lumi.model.errors import AppError, ConfigError
from lumi.model.interface import ServiceInterface, interface
from lumi.pipeline.client import Client
from lumi.runtimes.discovery import read_registry
from lumi.transports import wiring


def _did_you_mean(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


async def fetch_interface(endpoint: str, service: str) -> ServiceInterface:
    async with aiohttp.ClientSession() as session, session.get(f"{endpoint}/interface") as resp:
        data = await resp.json()
    return ServiceInterface.from_dict(data[service])


def parse_arguments(
    iface: ServiceInterface, method: str, pairs: list[str], raw: str | None
) -> dict[str, Any]:
    """``key=value`` pairs (values are JSON when they parse, else strings) or ``--json``."""
    info = iface.methods[method]
    properties = info.params.get("properties", {})
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
            fail(
                f"argument {pair!r} is not key=value "
                f"(parameters: {', '.join(info.param_names) or 'none'})"
            )
        if key not in properties:
            fail(
                f"{iface.name}.{method} has no parameter {key!r}"
                f"{_did_you_mean(key, list(properties))} "
                f"(parameters: {', '.join(info.param_names) or 'none'})"
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
        timeout: Annotated[
            float, typer.Option("--timeout", help="Seconds to wait for the answer.")
        ] = 30.0,
        transport: Annotated[
            str | None,
            typer.Option(
                "--transport", "-t", help="http, grpc or thrift (default: the service's first)."
            ),
        ] = None,
    ) -> None:
        """Call a method of the running app and print the result as JSON."""
        service, sep, method = target.partition(".")
        if not sep or not service or not method:
            fail(f"{target!r} is not SERVICE.METHOD, e.g. Orders.place")
        registry = read_registry(app_dir.resolve())
        if service not in registry.services:
            names = list(registry.services)
            fail(
                f"no service {service!r} in the running app{_did_you_mean(service, names)} "
                f"(services: {', '.join(names)})"
            )
        endpoints = registry.services[service].endpoints
        if transport is not None and transport not in wiring.TRANSPORTS:
            fail(
                f"--transport {transport!r} is not one of {', '.join(wiring.TRANSPORTS)}"
                f"{_did_you_mean(transport, list(wiring.TRANSPORTS))}"
            )
        try:
            chosen = wiring.pick(service, endpoints, transport, where="--transport")
        except ConfigError as exc:
            fail(str(exc))
        root = app_dir.resolve()
        options = wiring.options_for(root, registry.app.replace("-", "_"), 64 << 20, 0)
        interface = _interface(root, registry.env, endpoints, service)
        result = asyncio.run(
            _call(chosen, interface, options, service, method, arguments or [], json_args, timeout)
        )
        print_json(result)


def _interface(
    root: Path, env: str | None, endpoints: list[str], service: str
) -> Callable[[], Awaitable[ServiceInterface]]:
    """Where the interface comes from: the running service's ``GET /interface`` when it
    serves HTTP, else the app's code (gRPC and Thrift serve no interface JSON)."""
    http = [e for e in endpoints if wiring.scheme(e) == "http"]

    async def read() -> ServiceInterface:
        if not http:
            classes = {cls.name: cls for cls in load_config(root, env).load_services()}
            return interface(classes[service])
        try:
            return await fetch_interface(http[0], service)
        except (aiohttp.ClientError, OSError, KeyError, ValueError) as exc:
            raise AppError(f"cannot read the interface of {service} at {http[0]}: {exc}") from None

    return read


async def _call(
    endpoints: list[str],
    read_interface: Callable[[], Awaitable[ServiceInterface]],
    options: wiring.WireOptions,
    service: str,
    method: str,
    pairs: list[str],
    raw: str | None,
    timeout: float,
) -> Any:
    iface = await read_interface()
    if method not in iface.methods:
        names = sorted(iface.methods)
        fail(
            f"{service} has no method {method!r}{_did_you_mean(method, names)} "
            f"(methods: {', '.join(names)})"
        )
    arguments = parse_arguments(iface, method, pairs, raw)
    channel = wiring.channel(endpoints, interface=iface, options=options)
    try:
        return await Client(iface, channel.call).invoke(method, arguments, timeout=timeout)
    finally:
        await channel.aclose()
