"""The runtime services every service gets: the middleware stacks, assembled in one place.

Every runtime (in-process, local process, container, ...) asks this module for the server-side
stack (around each handled call and event delivery), the client-side stack (around each
outbound call) and the publish stack, so logging, correlation, tracing, metrics, deadlines and
retries are added once and inherited by every transport and broker::

    server:  ServerObserver (correlation, span, metrics, access log) → Guard (who may call,
             lumi.security.guard; before anything is parsed) → dispatcher, which validates
             the arguments, then IdempotencyCache (a guard) → the method
    client:  ClientObserver (span, metrics) → Resilience (deadline, retry, budget)
             → Balancer (endpoint, failover, breaker per endpoint and method) → channel
    publish: PublishObserver (span, traceparent into the envelope, counter) → broker

The state behind them (tracer, metrics registry, policies, retry budgets, circuit breakers, the
deduplication cache) is a :class:`RuntimeServices`. A service process sets its own with
:func:`setup_process`; an in-process app makes a fresh one, so tests never share breakers or
counts.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from lumi.config import AppConfig, ResilienceConfig
from lumi.paths import AppPaths
from lumi.pipeline import Middleware
from lumi.pipeline.dispatch import DispatchSettings
from lumi.runtime_services.observability.logs import configure_logging
from lumi.runtime_services.observability.metrics import Metrics
from lumi.runtime_services.observability.middleware import (
    ClientObserver,
    PublishObserver,
    ServerObserver,
)
from lumi.runtime_services.observability.tracing import Tracing, setup_tracing
from lumi.runtime_services.resilience.breaker import Breakers, CircuitBreaker, State
from lumi.runtime_services.resilience.idempotency import IdempotencyCache
from lumi.runtime_services.resilience.policies import (
    BreakerSettings,
    BudgetSettings,
    Override,
    Policies,
)
from lumi.runtime_services.resilience.retry import Resilience

log = logging.getLogger("lumi.runtime")


@dataclasses.dataclass
class RuntimeServices:
    """The state of the runtime services of one process (or one in-process app)."""

    tracing: Tracing = dataclasses.field(default_factory=Tracing)
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    policies: Policies = dataclasses.field(default_factory=Policies)
    dedupe: IdempotencyCache | None = dataclasses.field(default_factory=IdempotencyCache)
    ready_timeout: float = 60.0
    _clients: dict[str | None, Resilience] = dataclasses.field(default_factory=dict)
    _breakers: dict[str | None, Breakers] = dataclasses.field(default_factory=dict)

    def resilience(self, caller: str | None) -> Resilience:
        """The resilience middleware (one retry budget) of ``caller``."""
        found = self._clients.get(caller)
        if found is None:
            found = self._clients[caller] = Resilience(caller, self.policies, metrics=self.metrics)
        return found

    def breakers(self, caller: str | None) -> Breakers:
        """The circuit breakers of ``caller``'s balancers (one per endpoint and method)."""
        found = self._breakers.get(caller)
        if found is None:
            s = self.policies.breaker

            def make(endpoint: str, service: str, method: str) -> CircuitBreaker:
                return CircuitBreaker(
                    endpoint,
                    service,
                    method,
                    min_deadline=s.min_deadline,
                    failure_rate=s.failure_rate,
                    window=s.window,
                    min_calls=s.min_calls,
                    reset_timeout=s.reset_timeout,
                    max_reset_timeout=s.max_reset_timeout,
                    on_change=self._breaker_changed,
                )

            found = self._breakers[caller] = Breakers(make)
        return found

    def _breaker_changed(self, breaker: CircuitBreaker, state: State) -> None:
        level = logging.INFO if state is State.CLOSED else logging.WARNING
        log.log(
            level, "circuit for %s is now %s", breaker.name, state.name.lower().replace("_", "-")
        )
        self.metrics.circuit_state(breaker.endpoint, breaker.service, breaker.method, int(state))

    def fresh(self) -> RuntimeServices:
        """Same tracer and policies; new metrics, budgets, breakers and dedupe cache."""
        return RuntimeServices(
            tracing=self.tracing,
            metrics=Metrics(),
            policies=self.policies,
            dedupe=None
            if self.dedupe is None
            else IdempotencyCache(max_bytes=self.dedupe.max_bytes),
            ready_timeout=self.ready_timeout,
        )

    def shutdown(self) -> None:
        """Flush and stop span export."""
        self.tracing.shutdown()


_current: RuntimeServices | None = None


def current() -> RuntimeServices:
    """This process's runtime services (defaults until :func:`setup_process` or
    :func:`configure`)."""
    global _current
    if _current is None:
        _current = RuntimeServices()
    return _current


def configure(services: RuntimeServices) -> None:
    """Make ``services`` this process's runtime services."""
    global _current
    _current = services


def server_middlewares(
    service: str, runtime: RuntimeServices | None = None, *, guard: Middleware | None = None
) -> list[Middleware]:
    """Middleware around calls and event deliveries handled by ``service`` (outermost first);
    ``guard`` decides who may call (after the observer logs a call, before anything is cached
    or parsed)."""
    r = runtime or current()
    stack: list[Middleware] = [ServerObserver(r.tracing, r.metrics)]
    if guard is not None:
        stack.append(guard)
    return stack


def server_guards(service: str, runtime: RuntimeServices | None = None) -> list[Middleware]:
    """Guards around the running of ``service``'s methods, after their arguments validated."""
    r = runtime or current()
    return [] if r.dedupe is None else [r.dedupe]


def dispatch_settings(config: AppConfig, service: str) -> DispatchSettings:
    """How ``service`` is served, from ``defaults.*`` and ``services.<service>.*``."""
    own = config.service(service)
    return DispatchSettings(
        strict=config.defaults.strict,
        threads=own.threads or config.defaults.threads,
        expose_errors=config.defaults.expose_errors,
    )


def client_middlewares(
    service: str | None, runtime: RuntimeServices | None = None
) -> list[Middleware]:
    """Middleware around calls made by ``service`` (None: a client outside any service)."""
    r = runtime or current()
    return [ClientObserver(service, r.tracing, r.metrics), r.resilience(service)]


def publish_middlewares(service: str, runtime: RuntimeServices | None = None) -> list[Middleware]:
    """Middleware around every publish by ``service``."""
    r = runtime or current()
    return [PublishObserver(service, r.tracing, r.metrics)]


def policies_from(config: ResilienceConfig, capabilities: dict[str, Override]) -> Policies:
    return Policies(
        retry=config.retry,
        timeout=config.timeout,
        capabilities=capabilities,
        breaker=BreakerSettings(
            min_deadline=config.breaker.min_deadline,
            failure_rate=config.breaker.failure_rate,
            window=config.breaker.window,
            min_calls=config.breaker.min_calls,
            reset_timeout=config.breaker.reset,
            max_reset_timeout=config.breaker.max_reset,
        ),
        budget=BudgetSettings(ratio=config.budget.ratio, reserve=config.budget.reserve),
    )


def runtime_for(config: AppConfig, service: str | None, *, tracing: Tracing) -> RuntimeServices:
    """Runtime services for ``service`` of an app, following its configuration."""
    own = config.service(service).capabilities if service else {}
    overrides = {name: Override(retry=c.retry, timeout=c.timeout) for name, c in own.items()}
    return RuntimeServices(
        tracing=tracing,
        policies=policies_from(config.resilience, overrides),
        dedupe=IdempotencyCache(max_bytes=config.resilience.dedupe_max_bytes)
        if config.resilience.dedupe
        else None,
        ready_timeout=config.resilience.ready_timeout,
    )


def setup_process(
    config: AppConfig,
    service: str,
    *,
    replica: int = 0,
    log_file: Path | None = None,
    level: str | None = None,
    stream_json: bool | None = None,
    colour: bool | None = None,
    lean: bool = False,
) -> RuntimeServices:
    """Set up one service process: logs, tracing, metrics and policies from ``config``.

    Call once at start, before building the dispatcher and clients; returns (and installs as
    :func:`current`) the process's runtime services.
    """
    configure_logging(
        service=service,
        replica=replica,
        log_file=log_file
        if log_file is not None
        else AppPaths(config.root).log_file(service, replica),
        level=level or config.log_level(service),
        json=stream_json,
        colour=colour,
        lean=lean,
    )
    return _setup_tracing(config, service)


def _setup_tracing(config: AppConfig, service: str) -> RuntimeServices:
    store = AppPaths(config.root).traces if config.tracing.store else None
    tracing = setup_tracing(
        service=service,
        store=store,
        sample_ratio=config.tracing.sample_ratio,
        max_per_second=config.tracing.max_per_second,
        set_global=True,
    )
    services = runtime_for(config, service, tracing=tracing)
    configure(services)
    return services


def setup_shared_process(config: AppConfig) -> RuntimeServices:
    """Set up a process that hosts replicas of several services (the ``inproc`` runtime):
    each replica's lines go to its own log file, at its service's level, as they would from a
    process of its own; tracing and policies as :func:`setup_process`."""
    levels = {name: logging.getLevelName(config.log_level(name)) for name in config.services}
    default = logging.getLevelName(config.defaults.log_level)
    configure_logging(
        service=None,
        replica=None,
        level=min([default, *levels.values()]),
        service_files=config.root,
        service_levels=levels,
    )
    return _setup_tracing(config, config.name)
