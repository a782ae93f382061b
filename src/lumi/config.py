"""App configuration: ``lumi.toml`` (or ``[tool.lumi]`` in ``pyproject.toml``) with named
environments.

```toml
[app]
name = "shop"
services = ["shop.inventory:Inventory", "shop.orders:Orders"]

[defaults]
rpc = "http"          # http | grpc | thrift, or a list of them (each backend installed)
events = "embedded"   # embedded | memory | kafka://… | nats://… | redis://… | sns://…
runtime = "process"   # process | inproc | container | function

[services.Orders]
replicas = 2

[env.prod.defaults]
events = "kafka://kafka:9092"
```

Every mistake — an unknown key, a bad value, a service that does not import — raises one
:class:`ConfigError` naming the file, the key and what would be valid.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import importlib
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pydantic

from lumi.backends import BROKERS, RUNTIMES, TRANSPORTS
from lumi.config_refs import Variant, check_references
from lumi.model.errors import ConfigError
from lumi.model.hints import Retry
from lumi.model.service import Service
from lumi.model.suggest import close_matches

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_STRICT = pydantic.ConfigDict(extra="forbid")


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        match = close_matches(value, allowed, n=1)
        hint = f"; did you mean {match[0]!r}?" if match else ""
        raise ValueError(f"unknown {what} {value!r} (valid: {', '.join(allowed)}){hint}")
    return value


_INSTALLED: contextvars.ContextVar[bool] = contextvars.ContextVar("installed", default=True)
"""While validating: whether the backends named must be installed (the chosen environment)."""


def _rpc(value: str | list[str]) -> list[str]:
    values = [value] if isinstance(value, str) else list(value)
    if not values:
        raise ValueError(f"name at least one RPC transport ({', '.join(TRANSPORTS.names())})")
    if len(set(values)) != len(values):
        raise ValueError(f"each RPC transport once, not {values}")
    for name in values:
        TRANSPORTS.check(name, installed=_INSTALLED.get())
    return values


def _events(value: str) -> str:
    # "kafka://host:9092" or "embedded?retention=3d": the scheme decides the broker
    scheme = value.split("://", 1)[0] if "://" in value else value.split("?", 1)[0]
    BROKERS.check(scheme, installed=_INSTALLED.get())
    return value


def _runtime(value: str) -> str:
    RUNTIMES.check(value, installed=_INSTALLED.get())
    return value


class Binding(pydantic.BaseModel):
    """Where and how services run; ``[defaults]`` and each ``[services.X]`` override it."""

    model_config = _STRICT

    rpc: list[str] | None = None
    events: str | None = None
    runtime: str | None = None

    @pydantic.field_validator("rpc", mode="before")
    @classmethod
    def _check_rpc(cls, value: Any) -> Any:
        return None if value is None else _rpc(value)

    @pydantic.field_validator("events")
    @classmethod
    def _check_events(cls, value: str | None) -> str | None:
        return None if value is None else _events(value)

    @pydantic.field_validator("runtime")
    @classmethod
    def _check_runtime(cls, value: str | None) -> str | None:
        return None if value is None else _runtime(value)


def _log_level(value: str | None) -> str | None:
    return None if value is None else _one_of(value.upper(), LOG_LEVELS, "log level")


def _retry(value: Any) -> Any:
    if isinstance(value, bool | int | dict | Retry) or value is None:
        try:
            return Retry.coerce(value)
        except (TypeError, pydantic.ValidationError) as exc:
            raise ValueError(str(exc).splitlines()[0]) from None
    raise ValueError(
        f"retry is a number of attempts, true/false, or a table like "
        f"{{attempts = 5, backoff = 0.05, max_backoff = 2.0}}, not {value!r}"
    )


class Defaults(Binding):
    rpc: list[str] | None = ["http"]
    events: str | None = "embedded"
    runtime: str | None = "process"
    grace_period: float = pydantic.Field(
        default=10.0, ge=0, description="seconds for in-flight calls at stop"
    )
    host: str = pydantic.Field(default="127.0.0.1", description="the address services listen on")
    start_timeout: float = pydantic.Field(default=30.0, gt=0, description="seconds to get ready")
    max_body: int = pydantic.Field(default=4 * 1024 * 1024, ge=1024, description="request bytes")
    pool_size: int = pydantic.Field(
        default=256, ge=1, le=65536, description="connections a caller keeps per endpoint"
    )
    header_timeout: float = pydantic.Field(
        default=10.0, gt=0, description="seconds for a request's headers to arrive"
    )
    body_timeout: float = pydantic.Field(
        default=30.0, gt=0, description="seconds for a request's body to arrive"
    )
    strict: bool = pydantic.Field(
        default=True, description="validate arguments as strictly as the published schema"
    )
    threads: int = pydantic.Field(
        default=16, ge=1, le=1024, description="threads per service for its sync methods"
    )
    expose_errors: bool = pydantic.Field(
        default=False, description="send an unexpected exception's text to callers"
    )
    log_level: str = "INFO"

    @pydantic.field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        return _log_level(value) or "INFO"


class CallPolicyConfig(pydantic.BaseModel):
    """Timeout and retry of calls; ``[resilience]`` and ``[services.X.capabilities.Y]``."""

    model_config = _STRICT

    timeout: float | None = pydantic.Field(default=None, gt=0)
    retry: Retry | None = None

    @pydantic.field_validator("retry", mode="before")
    @classmethod
    def _check_retry(cls, value: Any) -> Any:
        return _retry(value)


class CapabilityConfig(CallPolicyConfig):
    """How one service calls one capability: ``[services.X.capabilities.Y]``."""

    transport: str | None = pydantic.Field(
        default=None, description="the RPC transport to call it over (default: its first)"
    )
    pool_size: int | None = pydantic.Field(
        default=None, ge=1, le=65536, description="connections per endpoint (defaults.pool_size)"
    )

    @pydantic.field_validator("transport")
    @classmethod
    def _check_transport(cls, value: str | None) -> str | None:
        if value is not None:
            TRANSPORTS.check(value, installed=_INSTALLED.get())
        return value


class BreakerConfig(pydantic.BaseModel):
    model_config = _STRICT

    min_deadline: float = pydantic.Field(
        default=0.1, ge=0, description="seconds an attempt must have had for a timeout to count"
    )
    failure_rate: float = pydantic.Field(default=0.5, gt=0, le=1, description="to open")
    window: int = pydantic.Field(default=20, ge=1, description="recent calls considered")
    min_calls: int = pydantic.Field(default=10, ge=1, description="before it may open")
    reset: float = pydantic.Field(default=1.0, gt=0, description="seconds open before a trial")
    max_reset: float = pydantic.Field(default=10.0, gt=0)


class BudgetConfig(pydantic.BaseModel):
    model_config = _STRICT

    ratio: float = pydantic.Field(default=0.2, ge=0, le=1, description="retries per call")
    reserve: float = pydantic.Field(default=10.0, ge=0, description="retries allowed at start")


class ResilienceConfig(CallPolicyConfig):
    timeout: float | None = pydantic.Field(
        default=30.0, gt=0, description="default deadline of an outbound call, seconds"
    )
    breaker: BreakerConfig = pydantic.Field(default_factory=BreakerConfig)
    budget: BudgetConfig = pydantic.Field(default_factory=BudgetConfig)
    dedupe: bool = True
    dedupe_max_bytes: int = pydantic.Field(
        default=64 * 1024 * 1024, ge=0, description="bytes of answers the dedupe cache keeps"
    )
    ready_timeout: float = pydantic.Field(default=60.0, gt=0, description="start-up waits")


class TracingConfig(pydantic.BaseModel):
    model_config = _STRICT

    sample_ratio: float = pydantic.Field(default=1.0, ge=0, le=1)
    max_per_second: float = pydantic.Field(default=100.0, ge=0, description="0: no limit")
    store: bool = True  # the local span store, <app>/.lumi/traces.db


class FunctionConfig(pydantic.BaseModel):
    """How a ``runtime = "function"`` service scales: ``[services.X.function]``."""

    model_config = _STRICT

    idle_timeout: float = pydantic.Field(
        default=60.0, gt=0, description="seconds without calls before an instance stops"
    )
    concurrency: int = pydantic.Field(default=16, ge=1, description="calls per instance at once")
    max_instances: int = pydantic.Field(default=4, ge=1, le=64)
    min_instances: int = pydantic.Field(default=0, ge=0, description="kept warm (0: to zero)")
    queue_timeout: float = pydantic.Field(
        default=30.0, gt=0, description="seconds a call may wait for a free instance"
    )

    @pydantic.model_validator(mode="after")
    def _check_bounds(self) -> FunctionConfig:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances ({self.min_instances}) is above max_instances "
                f"({self.max_instances})"
            )
        return self


class AutoscaleConfig(pydantic.BaseModel):
    """A HorizontalPodAutoscaler for the service on Kubernetes."""

    model_config = _STRICT

    min: int = pydantic.Field(default=1, ge=1)
    max: int = pydantic.Field(default=5, ge=1)
    cpu_percent: int = pydantic.Field(default=80, ge=1, le=1000)

    @pydantic.model_validator(mode="after")
    def _check_bounds(self) -> AutoscaleConfig:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class KubernetesConfig(pydantic.BaseModel):
    """What ``lumi deploy --target kubernetes`` renders for one service:
    ``[services.X.kubernetes]``."""

    model_config = _STRICT

    cpu: str = pydantic.Field(default="100m", pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: str = pydantic.Field(default="128Mi", pattern=r"^[0-9]+(Ki|Mi|Gi|K|M|G)?$")
    cpu_limit: str | None = pydantic.Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory_limit: str | None = pydantic.Field(default="256Mi", pattern=r"^[0-9]+(Ki|Mi|Gi|K|M|G)?$")
    autoscale: AutoscaleConfig | None = None
    min_available: int | None = pydantic.Field(
        default=None, ge=0, description="a PodDisruptionBudget keeping this many replicas"
    )
    secrets: dict[str, str] = pydantic.Field(
        default_factory=dict, description="env variable → 'secret-name/key' to read it from"
    )


class AccessConfig(pydantic.BaseModel):
    """Who may call a service: ``[services.X.access]`` (see docs/security.md).

    ``allow`` names the callers (services of the app, ``"operator"``, or ``"*"`` for any of
    them) that may call every method; ``methods.M`` those that may also call ``M``. A caller
    named nowhere may call a method not listed in ``methods`` only when ``default`` is
    ``"allow"``.
    """

    model_config = _STRICT

    default: Literal["allow", "deny"] = "deny"
    allow: list[str] = pydantic.Field(default_factory=list)
    methods: dict[str, list[str]] = pydantic.Field(default_factory=dict)


class ClusterCertificates(pydantic.BaseModel):
    """``[security.kubernetes]``: where rendered Kubernetes workloads get their certificates.

    ``"secret"``: ``lumi deploy --target kubernetes`` issues each service a certificate from the
    app's CA (``.lumi/ca/`` or ``security.ca_dir``) into ``base/tls/`` next to the manifests,
    and Kustomize makes it a ``kubernetes.io/tls`` Secret; ``"cert-manager"``: a cert-manager
    ``Certificate`` per service, issued by ``issuer`` (an ``Issuer`` or ``ClusterIssuer``).
    """

    model_config = _STRICT

    certificates: Literal["secret", "cert-manager"] = "secret"
    issuer: str = "lumi-ca"
    issuer_kind: Literal["Issuer", "ClusterIssuer"] = "Issuer"
    cert_lifetime: float = pydantic.Field(
        default=30 * 86400.0, ge=3600, le=366 * 86400, description="seconds; renewed at 2/3"
    )


class SecurityConfig(pydantic.BaseModel):
    """``[security]``: identities, mTLS and the local CA (docs/security.md)."""

    model_config = _STRICT

    # On by default: every runtime carries certificates (docs/security.md, "The default")
    mtls: bool = True
    operator: Literal["all", "policy"] = pydantic.Field(
        default="all", description="the operator may call everything, or only where allowed"
    )
    cert_lifetime: float = pydantic.Field(
        default=3600.0, ge=5, le=366 * 86400, description="seconds; renewed at half"
    )
    key_type: Literal["ec", "ed25519"] = "ec"
    ca_dir: str | None = None  # your own CA: a folder with ca.crt and ca.key
    kubernetes: ClusterCertificates = pydantic.Field(default_factory=ClusterCertificates)


class ServiceConfig(Binding):
    replicas: int = pydantic.Field(default=1, ge=1, le=64)
    port: int | None = pydantic.Field(default=None, ge=1, le=65535, description="first replica's")
    placement: Literal["default", "per-node"] = "default"
    threads: int | None = pydantic.Field(
        default=None, ge=1, le=1024, description="threads for its sync methods"
    )
    environment: dict[str, str] = pydantic.Field(default_factory=dict)
    log_level: str | None = None
    capabilities: dict[str, CapabilityConfig] = pydantic.Field(default_factory=dict)
    # other services' interfaces this one needs, with version ranges: {Inventory = "^2.1"}
    requires: dict[str, str] = pydantic.Field(default_factory=dict)
    access: AccessConfig | None = None  # who may call it (mTLS identities)

    @pydantic.field_validator("requires")
    @classmethod
    def _check_requires(cls, value: dict[str, str]) -> dict[str, str]:
        from lumi.model.semver import VersionError, parse_range

        for name, text in value.items():
            try:
                parse_range(text)
            except VersionError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value

    function: FunctionConfig = pydantic.Field(default_factory=FunctionConfig)
    kubernetes: KubernetesConfig = pydantic.Field(default_factory=KubernetesConfig)

    @pydantic.field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str | None) -> str | None:
        return _log_level(value)


class RepositoryConfig(pydantic.BaseModel):
    """Where artifacts are published (``[repository]``); see docs/shipping.md."""

    model_config = _STRICT

    url: str | None = None  # a folder (OCI image layout) or http(s)/oci://host/namespace
    trust_key: str | None = None  # ed25519 public key (PEM); pulls must be signed by it


class ImageConfig(pydantic.BaseModel):
    """Container images of the app's services (``lumi build image``): ``[image]``."""

    model_config = _STRICT

    base: str = pydantic.Field(
        default="docker.io/library/python:3.11-slim-bookworm",
        min_length=1,
        description="the image both build stages start from (it needs python3 with venv)",
    )
    registry: str = pydantic.Field(
        default="localhost", min_length=1, description="prefix of image references"
    )


class DeployConfig(pydantic.BaseModel):
    """How ``lumi deploy`` rolls out a new version (``[deploy]``, ``[env.NAME.deploy]``); see
    docs/shipping.md."""

    model_config = _STRICT

    strategy: Literal["rolling", "canary"] = "canary"
    weights: list[int] = pydantic.Field(
        default_factory=lambda: [10, 50, 100], description="the canary's share of calls per step"
    )
    bake: float = pydantic.Field(default=30.0, gt=0, description="seconds each step is watched")
    interval: float = pydantic.Field(default=1.0, gt=0, description="seconds between checks")
    min_requests: int = pydantic.Field(default=20, ge=1, description="calls before a verdict")
    max_error_rate: float = pydantic.Field(
        default=0.02, ge=0, le=1, description="how far the canary's error rate may exceed stable's"
    )
    max_p99_ratio: float = pydantic.Field(
        default=2.0, ge=1, description="how many times the stable p99 the canary's may be"
    )
    p99_floor: float = pydantic.Field(
        default=0.1, ge=0, description="seconds: a p99 below this never fails a canary"
    )
    canary_replicas: int = pydantic.Field(default=1, ge=1, le=64)

    @pydantic.field_validator("weights")
    @classmethod
    def _check_weights(cls, value: list[int]) -> list[int]:
        if not value or value[-1] != 100:
            raise ValueError(f"weights must end at 100 (the canary takes every call), not {value}")
        if any(w < 1 or w > 100 for w in value) or value != sorted(set(value)):
            raise ValueError(
                f"weights are rising percentages from 1 to 100, like [10, 50, 100], not {value}"
            )
        return value


class AppSection(pydantic.BaseModel):
    model_config = _STRICT

    name: str = pydantic.Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    services: list[str] = pydantic.Field(min_length=1)
    version: str = "0.1.0"


class _File(pydantic.BaseModel):
    """The file's shape; ``env`` holds partial overlays of the other sections."""

    model_config = _STRICT

    app: AppSection
    defaults: Defaults = pydantic.Field(default_factory=Defaults)
    services: dict[str, ServiceConfig] = pydantic.Field(default_factory=dict)
    tracing: TracingConfig = pydantic.Field(default_factory=TracingConfig)
    resilience: ResilienceConfig = pydantic.Field(default_factory=ResilienceConfig)
    repository: RepositoryConfig = pydantic.Field(default_factory=RepositoryConfig)
    image: ImageConfig = pydantic.Field(default_factory=ImageConfig)
    security: SecurityConfig = pydantic.Field(default_factory=SecurityConfig)
    deploy: DeployConfig = pydantic.Field(default_factory=DeployConfig)
    env: dict[str, dict[str, Any]] = pydantic.Field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AppConfig:
    """A loaded, validated configuration for one environment."""

    path: Path  # the file it came from
    root: Path  # the app directory (imports resolve from here)
    app: AppSection
    defaults: Defaults
    services: dict[str, ServiceConfig]
    environment: str | None
    environments: tuple[str, ...]
    tracing: TracingConfig = dataclasses.field(default_factory=TracingConfig)
    resilience: ResilienceConfig = dataclasses.field(default_factory=ResilienceConfig)
    repository: RepositoryConfig = dataclasses.field(default_factory=RepositoryConfig)
    image: ImageConfig = dataclasses.field(default_factory=ImageConfig)
    security: SecurityConfig = dataclasses.field(default_factory=SecurityConfig)
    deploy: DeployConfig = dataclasses.field(default_factory=DeployConfig)
    # the services tables of the file and of every environment, checked by load_services
    variants: tuple[Variant, ...] = ()

    @property
    def name(self) -> str:
        return self.app.name

    def service(self, name: str) -> ServiceConfig:
        return self.services.get(name) or ServiceConfig()

    def log_level(self, name: str) -> str:
        """The log level of one service: its own, else ``defaults.log_level``."""
        return self.service(name).log_level or self.defaults.log_level

    def binding(self, name: str) -> Defaults:
        """The effective rpc/events/runtime of one service."""
        own = self.service(name)
        merged = self.defaults.model_dump()
        for key in ("rpc", "events", "runtime"):
            value = getattr(own, key)
            if value is not None:
                merged[key] = value
        return Defaults(**merged)

    def load_services(self) -> list[type[Service]]:
        """Import the service classes named in ``app.services``."""
        classes = [self._import(i, ref) for i, ref in enumerate(self.app.services)]
        check_references(self.path, self.variants or [self._variant("")], classes)
        return classes

    def _variant(self, prefix: str) -> Variant:
        return Variant(prefix, self.defaults.rpc or ["http"], self.services)

    def _import(self, index: int, ref: str) -> type[Service]:
        key = f"app.services[{index}]"
        module_name, sep, attr = ref.partition(":")
        if not sep or not module_name or not attr:
            raise _error(self.path, key, f"{ref!r} is not 'package.module:ClassName'")
        root = str(self.root)
        if root not in sys.path:
            sys.path.insert(0, root)
        # clients of other teams' services installed by `lumi install`
        site = str(self.root / ".lumi" / "site-packages")
        if site not in sys.path and Path(site).is_dir():
            sys.path.insert(1, site)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise _error(
                self.path, key, f"cannot import {module_name!r}: {exc} (looked in {root})"
            ) from None
        except Exception as exc:
            raise _error(
                self.path, key, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        cls = getattr(module, attr, None)
        if cls is None:
            candidates = [
                n
                for n, v in vars(module).items()
                if isinstance(v, type) and issubclass(v, Service) and v is not Service
            ]
            raise _error(
                self.path,
                key,
                f"module {module_name!r} has no {attr!r}{_did_you_mean(attr, candidates)} "
                f"(services there: {', '.join(sorted(candidates)) or 'none'})",
            )
        if not (isinstance(cls, type) and issubclass(cls, Service)):
            raise _error(self.path, key, f"{ref!r} is not a lumi.Service subclass")
        return cls


def find_config(path: str | Path) -> Path:
    """The config file for ``path`` (a file, or a folder holding lumi.toml or pyproject.toml)."""
    target = Path(path)
    if target.is_file():
        return target
    if not target.exists():
        raise ConfigError(f"{target}: no such file or directory")
    for candidate in ("lumi.toml", "pyproject.toml"):
        file = target / candidate
        if file.is_file() and (candidate == "lumi.toml" or "[tool.lumi" in file.read_text()):
            return file
    raise ConfigError(f"{target}: no lumi.toml (or [tool.lumi] in pyproject.toml) found")


def load_config(path: str | Path = ".", env: str | None = None) -> AppConfig:
    """Load and validate the config at ``path``, with environment ``env`` applied."""
    file = find_config(path)
    try:
        raw = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    if file.name == "pyproject.toml":
        raw = raw.get("tool", {}).get("lumi")
        if not isinstance(raw, dict):
            raise ConfigError(f"{file}: has no [tool.lumi] table")
    # Every environment's names are checked; only the chosen one's backends must be installed
    # (an image built for one environment need not carry the other environments' libraries).
    token = _INSTALLED.set(env is None)
    try:
        base = _validate(file, raw, prefix="")
    finally:
        _INSTALLED.reset(token)
    checked = {}
    for name, overlay in base.env.items():
        token = _INSTALLED.set(name == env)
        try:
            checked[name] = _validate(file, _merge(raw, overlay), prefix=f"env.{name}.")
        finally:
            _INSTALLED.reset(token)
    environments = tuple(sorted(base.env))
    if env is not None and env not in base.env:
        raise ConfigError(
            f"{file}: no environment {env!r}{_did_you_mean(env, environments)} "
            f"(environments: {', '.join(environments) or 'none; add [env.NAME] tables'})"
        )
    chosen = base if env is None else checked[env]
    variants = [("", base)] + [(f"env.{name}.", checked[name]) for name in environments]
    return AppConfig(
        path=file,
        root=file.parent.resolve(),
        app=chosen.app,
        defaults=chosen.defaults,
        services=chosen.services,
        environment=env,
        environments=environments,
        tracing=chosen.tracing,
        resilience=chosen.resilience,
        repository=chosen.repository,
        image=chosen.image,
        security=chosen.security,
        deploy=chosen.deploy,
        variants=tuple(
            Variant(prefix, f.defaults.rpc or ["http"], f.services)
            for prefix, f in variants
            if f.app.services == chosen.app.services
        ),
    )


def _merge(raw: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy({k: v for k, v in raw.items() if k != "env"})
    _deep_update(merged, overlay)
    return merged


def _deep_update(target: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _validate(file: Path, raw: dict[str, Any], *, prefix: str) -> _File:
    try:
        return _File.model_validate(raw)
    except pydantic.ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = [str(p) for p in error["loc"]]
        key = prefix + ".".join(loc)
        if error["type"] == "extra_forbidden":
            valid = _valid_keys(loc[:-1])
            hint = _did_you_mean(loc[-1], valid)
            message = f"unknown key{hint} (valid keys here: {', '.join(valid)})"
        elif error["type"] == "missing":
            message = "is required"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            if "input" in error and error["type"] != "value_error":
                message += f" (got {error['input']!r})"
        raise ConfigError(f"{file}: {key}: {message}") from None


def _valid_keys(loc: list[str]) -> list[str]:
    """The keys valid at ``loc`` (a path of table names, ``dict`` keys included)."""
    model: type[pydantic.BaseModel] = _File
    parts = list(loc)
    while parts:
        field = model.model_fields.get(parts.pop(0))
        if field is None:
            return sorted(model.model_fields)
        annotation = field.annotation
        optional = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(optional) == 1:
            annotation = optional[0]  # X | None
        if typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
            if parts:
                parts.pop(0)  # the key of the table (a service or capability name)
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            model = annotation
        else:
            return []
    return sorted(model.model_fields)


def _did_you_mean(word: str, choices: Any) -> str:
    match = close_matches(word, list(choices), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def _error(file: Path, key: str, message: str) -> ConfigError:
    return ConfigError(f"{file}: {key}: {message}")
