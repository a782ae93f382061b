"""One service as an AWS Lambda function: the handler ``lumi build lambda`` packages.

:class:`LambdaService` hosts the service once per execution environment (at init, outside
any invocation) on a persistent event loop, then answers each invocation by its payload:

* **API Gateway HTTP API (payload 2.0), Function URLs, REST API (payload 1.0)** —
  ``POST .../<Service>/<method>`` (or ``.../<method>``) with the JSON arguments as the body,
  the same headers as the HTTP transport (``x-correlation-id``, ``traceparent``,
  ``x-lumi-deadline``, ``idempotency-key``); the answer is the JSON result, or the error as
  ``{"code", "message", "details"}`` with the HTTP status of its code. ``GET .../interface``
  and ``GET .../readyz`` answer too.
* **SQS** — each record's body is a CloudEvents envelope (raw delivery) or an SNS notification
  carrying one; each is delivered to the subscription of its topic, and the records whose
  handler failed are returned as ``batchItemFailures`` so only those are retried (the event
  source mapping needs ``ReportBatchItemFailures``).
* **SNS** — the message is the envelope; a failing handler fails the invocation, so Lambda's
  asynchronous retries (and its on-failure destination) take over.

Every call and delivery goes through the same dispatcher and middleware as in any runtime:
validation, typed errors, correlation (the API Gateway request id when the caller sent none),
spans and JSON logs on stdout. The deadline is the invocation's remaining time. The app's state
folder is ``LUMI_STATE_DIR`` (``/tmp/lumi``: the only writable place in Lambda).

**Who may call.** Lambda has no client certificate to read, so an invocation has no service
identity: the access guard (:mod:`lumi.security.guard`) runs as for a caller without one. With
``security.mtls`` on, only ``@lumi.api(public=True)`` methods are served (any other is
UNAUTHENTICATED) and a bearer token goes to the service's ``@lumi.auth`` handler; a claimed
``x-lumi-caller`` or ``x-lumi-user`` is ignored. Who may invoke the function at all is AWS's
outer layer (IAM, the Function URL's ``AWS_IAM`` auth type, an API Gateway authorizer). To call
other services over mTLS the function needs a certificate of the app's CA in
``$LUMI_TLS_DIR``; without one its calls to them are refused here with one line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lumi import transports
from lumi.brokers import create_broker
from lumi.brokers.base import Broker, DeadLetter, Delivery, DeliveryHandler, Subscription
from lumi.config import load_config
from lumi.model.context import Metadata, new_id
from lumi.model.envelope import Envelope, EnvelopeError
from lumi.model.errors import AppError, InvalidArgument, LumiError, NotFound
from lumi.model.interface import interface
from lumi.paths import STATE_DIR_VARIABLE
from lumi.pipeline.call import Call, Handler, compose
from lumi.pipeline.edge import inbound_metadata
from lumi.runtime_services.resilience.balancer import Balancer
from lumi.runtimes import environment as envvars
from lumi.runtimes import stack
from lumi.runtimes.host import Host
from lumi.security import setup as security

log = logging.getLogger("lumi.lambda")

_DEADLINE_MARGIN = 0.2  # seconds kept to send the answer before Lambda stops the invocation


class _Subscriptions(Broker):
    """Publishes through the real broker; records subscriptions instead of consuming, since
    Lambda's event sources (SQS, SNS) push the events."""

    name = "lambda"

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self.broker = broker
        self.handlers: dict[str, tuple[str, DeliveryHandler]] = {}  # topic → (group, handler)

    async def start(self) -> None:
        await self.broker.start()
        self.started = True

    async def publish(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        await self.broker.publish(topic, envelopes)

    async def subscribe(
        self,
        topic: str,
        group: str | None,
        handler: DeliveryHandler,
        *,
        max_attempts: int = 5,
        start: str = "earliest",
    ) -> Subscription:
        self.handlers[topic] = (group or "", handler)
        return _Nothing()

    async def dead_letters(
        self, topic: str | None = None, group: str | None = None, *, limit: int = 1000
    ) -> list[DeadLetter]:
        return await self.broker.dead_letters(topic, group, limit=limit)

    async def replay(
        self,
        topic: str | None = None,
        group: str | None = None,
        *,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        return await self.broker.replay(topic, group, event_ids=event_ids)

    async def aclose(self) -> None:
        await self.broker.aclose()


class _Nothing(Subscription):
    async def aclose(self) -> None:
        return None


class LambdaService:
    """The service ``service`` of the app in ``app_dir``, ready to answer invocations."""

    def __init__(self, service: str, app_dir: str | Path, env: str | None = None) -> None:
        os.environ.setdefault(STATE_DIR_VARIABLE, "/tmp/lumi")
        self.loop = asyncio.new_event_loop()
        config = load_config(app_dir, env or os.environ.get(envvars.ENV))
        events = os.environ.get(envvars.EVENTS)
        self.config = envvars.with_events(config, events) if events else config
        self.services = stack.setup_process(self.config, service, stream_json=True, colour=False)
        _one_log_handler()
        classes = {cls.name: cls for cls in self.config.load_services()}
        self.interface = interface(classes[service])
        self.interfaces = {name: interface(cls) for name, cls in classes.items()}
        self.endpoints = envvars.endpoints_from(os.environ, classes)
        binding = self.config.binding(service)
        # Its own certificate, for calling others over mTLS: only from $LUMI_TLS_DIR.
        self.tls = (
            security.replica_tls(self.config, service, None)
            if os.environ.get(security.TLS_DIR_VARIABLE)
            else None
        )
        guard = security.guard(self.config, self.interfaces, [service], self._hosted)
        self.broker = _Subscriptions(
            create_broker(binding.events or "embedded", app_dir=self.config.root)
        )
        self.host = Host(
            [classes[service]],
            broker=self.broker,
            channel_for=self._channel_for,
            app=self.config.name,
            middlewares=stack.server_middlewares(service, self.services, guard=guard),
            external=self.interface.requires,
            publish_middlewares=lambda name: stack.publish_middlewares(name, self.services),
        )
        self.loop.run_until_complete(self._start())

    def _hosted(self, name: str) -> tuple[object, Any] | None:
        """The running instance of ``name`` and its ``@lumi.auth`` handler, if it has one."""
        instance = self.host.instances.get(name)
        auth = self.host.reflected[name].auth if name in self.host.reflected else None
        return None if instance is None or auth is None else (instance, auth)

    def _channel_for(self, name: str) -> Handler:
        urls = self.endpoints.get(name)
        if not urls:
            raise AppError(f"{name} has no endpoint: set {envvars.endpoints_variable(name)}")
        if self.config.security.mtls and self.tls is None:
            raise AppError(
                f"{self.interface.name} calls {name} over mTLS (security.mtls) but the function "
                f"has no certificate: set {security.TLS_DIR_VARIABLE} to a folder holding "
                f"tls.crt, tls.key and ca.crt"
            )
        transport = transports.get(transports_of(urls)[0])
        settings = security.channel_settings(self.config, self.tls, name)
        channels = [transport.channel(u, self.interfaces.get(name), settings) for u in urls]
        breakers = self.services.breakers(self.interface.name)
        balancer = Balancer(name, channels, breakers=breakers)
        return compose(balancer, stack.client_middlewares(self.interface.name, self.services))

    async def _start(self) -> None:
        await self.broker.start()
        await self.host.start()

    def handler(self, event: Any, context: Any) -> Any:
        """The Lambda entry point."""
        return self.loop.run_until_complete(self.invoke(event, context))

    async def invoke(self, event: Any, context: Any) -> Any:
        """Answer one invocation, whatever its payload kind."""
        if isinstance(event, dict) and isinstance(event.get("Records"), list):
            records = event["Records"]
            sources = {r.get("eventSource") or r.get("EventSource") for r in records}
            if sources == {"aws:sqs"}:
                return await self._sqs(records)
            if sources == {"aws:sns"}:
                await self._sns(records)
                return None
        if isinstance(event, dict) and ("requestContext" in event or "httpMethod" in event):
            return await self._http(event, context)
        raise InvalidArgument(
            "unknown invocation payload: expected API Gateway (v1 or v2), a Function URL, "
            "SQS or SNS records"
        )

    # -- HTTP: API Gateway v1/v2 and Function URLs --------------------------------------------

    async def _http(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        request = event.get("requestContext") or {}
        method = (request.get("http") or {}).get("method") or event.get("httpMethod") or "GET"
        path = event.get("rawPath") or event.get("path") or "/"
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        correlation = headers.get("x-correlation-id") or request.get("requestId") or new_id()
        try:
            if method.upper() == "GET":
                return self._get(path, correlation)
            if method.upper() != "POST":
                raise InvalidArgument(f"use POST /{self.interface.name}/<method> (got {method})")
            body = event.get("body") or ""
            raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
            if len(raw) > self.config.defaults.max_body:
                raise InvalidArgument(f"the body is over {self.config.defaults.max_body} bytes")
            metadata = self._metadata(headers, correlation, context)
            call = Call(self.interface.name, self._method(path), raw, metadata)
            result = await self.host.dispatcher.handle(call)
        except LumiError as exc:
            payload = json.dumps(exc.to_wire(), default=repr)
            return _http_answer(exc.code.http_status, payload, correlation)
        return _http_answer(200, result.decode(), correlation)

    def _method(self, path: str) -> str:
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise NotFound(f"no route {path!r}; use /{self.interface.name}/<method>")
        return parts[-1]

    def _get(self, path: str, correlation: str) -> dict[str, Any]:
        last = path.rstrip("/").rsplit("/", 1)[-1]
        if last == "interface":
            body = json.dumps({self.interface.name: self.interface.to_dict()}, sort_keys=True)
            return _http_answer(200, body, correlation)
        if last in ("readyz", "healthz"):
            ok = bool(self.host.health()["ok"])
            return _http_answer(200 if ok else 503, json.dumps({"ready": ok}), correlation)
        raise InvalidArgument(f"use POST /{self.interface.name}/<method>")

    def _metadata(self, headers: dict[str, str], correlation: str, context: Any) -> Metadata:
        # The edge's rules, with no verified peer: no caller, and a relayed user is ignored.
        metadata = inbound_metadata(headers.items())
        metadata.correlation_id = metadata.correlation_id or correlation
        remaining = _remaining(context)
        if remaining is not None:
            cap = time.time() + remaining - _DEADLINE_MARGIN
            metadata.deadline = min(metadata.deadline or cap, cap)
        return metadata

    # -- events: SQS and SNS ------------------------------------------------------------------

    async def _sqs(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        failures = []
        for record in records:
            attempt = int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1))
            try:
                await self._deliver(_sns_unwrapped(str(record.get("body", ""))), attempt)
            except Exception as exc:
                log.warning("event in SQS message %s failed: %s", record.get("messageId"), exc)
                failures.append({"itemIdentifier": record.get("messageId")})
        return {"batchItemFailures": failures}

    async def _sns(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            await self._deliver(str((record.get("Sns") or {}).get("Message", "")), 1)

    async def _deliver(self, body: str, attempt: int) -> None:
        try:
            envelope = Envelope.from_json(body)
        except EnvelopeError as exc:
            raise InvalidArgument(f"not a CloudEvents envelope: {exc}") from None
        found = self.broker.handlers.get(envelope.topic)
        if found is None:
            subscribed = ", ".join(sorted(self.broker.handlers)) or "nothing"
            raise NotFound(
                f"{self.interface.name} does not subscribe to {envelope.topic} "
                f"(it subscribes to {subscribed})"
            )
        group, handler = found
        await handler(Delivery(envelope.topic, group, envelope, attempt))


def _one_log_handler() -> None:
    """Drop the runtime client's own root handler: Lumi's JSON lines already carry each
    record (and CloudWatch adds the request id), so every line is written once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler).__module__.startswith("awslambdaric"):
            root.removeHandler(handler)


def transports_of(urls: list[str]) -> list[str]:
    return [url.partition("://")[0] for url in urls]


def _sns_unwrapped(body: str) -> str:
    """The envelope in an SQS body: the body itself, or the Message of an SNS notification."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:
        return str(data["Message"])
    return body


def _remaining(context: Any) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    return float(remaining()) / 1000.0


def _http_answer(status: int, body: str, correlation: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "x-correlation-id": correlation},
        "body": body,
        "isBase64Encoded": False,
    }
