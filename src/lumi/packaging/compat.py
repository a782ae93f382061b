"""Breaking-change detection between two versions of service interfaces (``lumi api diff``).

Every change gets a level, in the spirit of buf's breaking-change categories:

* ``wire`` — a client or consumer built against the old interface now fails or misreads data:
  a removed method, a new required parameter, a changed type, a tightened input constraint;
* ``source`` — traffic keeps working, but code written or generated against the old interface no
  longer type-checks or silently behaves differently: reordered parameters (positional callers),
  a renamed model (generated class names), a changed default, an output field that may now be
  absent (``field?:`` in TypeScript);
* ``compatible`` — additions and documentation.

Rules are direction-aware. A schema a caller *sends* (method parameters and the models they
reach) may widen: a new optional field, a value made nullable, a loosened constraint. A schema a
caller *receives* (return values) may narrow. Event payloads are read in both directions — old
subscribers read new events, and new subscribers replay old events still in the durable log — so
only additions of optional fields are compatible there (a schema registry's FULL compatibility).

Only the interface JSON is read, never a Python class, so two versions of an app can be compared
from files, folders or git refs.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lumi.codegen.schema import Type, ref_name, type_of
from lumi.model.errors import ConfigError
from lumi.model.interface import MethodInfo, ServiceInterface


class Level(enum.IntEnum):
    """How bad a change is; larger is worse."""

    COMPATIBLE = 0
    SOURCE = 1
    WIRE = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class Direction(enum.Flag):
    """Who reads a schema: the service (``IN``), its callers (``OUT``), or both."""

    IN = enum.auto()
    OUT = enum.auto()
    BOTH = IN | OUT


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference between the old and the new interface of a service."""

    service: str
    kind: str
    path: str
    level: Level
    message: str
    allowed: bool = False
    reason: str = ""

    @property
    def breaking(self) -> bool:
        return self.level > Level.COMPATIBLE

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "kind": self.kind,
            "path": self.path,
            "level": self.level.label,
            "message": self.message,
            "allowed": self.allowed,
            **({"reason": self.reason} if self.reason else {}),
        }


def _pick(direction: Direction, *, sent: Level, received: Level) -> Level:
    """The level of a change to a schema read in ``direction`` (the worse of the two)."""
    level = Level.COMPATIBLE
    if Direction.IN in direction:
        level = max(level, sent)
    if Direction.OUT in direction:
        level = max(level, received)
    return level


# Constraint keywords pydantic emits: a larger lower bound or a smaller upper bound tightens.
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_OTHER = ("pattern", "multipleOf", "format")
_DOC_KEYS = {"title", "description", "examples"}


class _Differ:
    """Compares one service's old and new interface and collects :class:`Change` values."""

    def __init__(self, old: ServiceInterface, new: ServiceInterface) -> None:
        self.old, self.new = old, new
        self.changes: list[Change] = []
        self.old_use = _usage(old)
        self.seen_models: set[tuple[str, str]] = set()

    def add(self, kind: str, path: str, level: Level, message: str) -> None:
        self.changes.append(Change(self.old.name, kind, path, level, message))

    def run(self) -> list[Change]:
        old, new, name = self.old, self.new, self.old.name
        if old.doc != new.doc:
            self.add("doc-changed", name, Level.COMPATIBLE, "service documentation changed")
        self._methods()
        self._events()
        for cap in sorted(set(old.requires) - set(new.requires)):
            self.add("capability-removed", name, Level.COMPATIBLE, f"no longer uses {cap}")
        for cap in sorted(set(new.requires) - set(old.requires)):
            self.add("capability-added", name, Level.COMPATIBLE, f"now uses {cap}")
        old_subs = {(s.topic, s.handler) for s in old.subscriptions}
        new_subs = {(s.topic, s.handler) for s in new.subscriptions}
        for topic, handler in sorted(old_subs - new_subs):
            self.add(
                "subscription-removed",
                f"{name}.{handler}",
                Level.COMPATIBLE,
                f"no longer handles {topic}",
            )
        for topic, handler in sorted(new_subs - old_subs):
            self.add(
                "subscription-added", f"{name}.{handler}", Level.COMPATIBLE, f"now handles {topic}"
            )
        return self.changes

    # -- methods and events ------------------------------------------------------------------

    def _methods(self) -> None:
        old, new, name = self.old.methods, self.new.methods, self.old.name
        removed = sorted(set(old) - set(new))
        added = sorted(set(new) - set(old))
        for method in removed:
            twin = [a for a in added if _same_signature(old[method], new[a])]
            if len(twin) == 1:
                added.remove(twin[0])
                self.add(
                    "method-renamed",
                    f"{name}.{method}",
                    Level.WIRE,
                    f"method {method} renamed to {twin[0]}; callers of {method} fail",
                )
            else:
                self.add(
                    "method-removed",
                    f"{name}.{method}",
                    Level.WIRE,
                    f"method {method} removed; its callers fail with NOT_FOUND",
                )
        for method in added:
            self.add("method-added", f"{name}.{method}", Level.COMPATIBLE, f"new method {method}")
        for method in sorted(set(old) & set(new)):
            was, now, path = old[method], new[method], f"{name}.{method}"
            if was.idempotent and not now.idempotent:
                self.add(
                    "idempotency-removed",
                    path,
                    Level.WIRE,
                    "no longer idempotent; callers (and Lumi's automatic retries) that "
                    "retry it now repeat its effects",
                )
            elif now.idempotent and not was.idempotent:
                self.add("idempotency-added", path, Level.COMPATIBLE, "now idempotent")
            if was.public and not now.public:
                self.add(
                    "public-removed",
                    path,
                    Level.WIRE,
                    "no longer public; callers from outside the app (no service certificate) "
                    "are refused with UNAUTHENTICATED",
                )
            elif now.public and not was.public:
                self.add("public-added", path, Level.COMPATIBLE, "now public")
            if was.doc != now.doc:
                self.add("doc-changed", path, Level.COMPATIBLE, "documentation changed")
            if (was.timeout, was.retry) != (now.timeout, now.retry):
                self.add(
                    "policy-changed",
                    path,
                    Level.COMPATIBLE,
                    f"timeout/retry hints changed ({_policy(was)} → {_policy(now)})",
                )
            if was.sensitive != now.sensitive:
                self.add("sensitive-changed", path, Level.COMPATIBLE, "redacted parameters changed")
            self._object(was.params, now.params, f"{path}(", Direction.IN, params=True)
            kept = [p for p in was.param_names if p in now.param_names]
            if kept != [p for p in now.param_names if p in was.param_names]:
                self.add(
                    "params-reordered",
                    f"{path}()",
                    Level.SOURCE,
                    f"parameter order {', '.join(was.param_names)} → "
                    f"{', '.join(now.param_names)}; positional callers break",
                )
            self._schema(was.returns, now.returns, f"{path}() ->", Direction.OUT)

    def _events(self) -> None:
        old, new, name = self.old.events, self.new.events, self.old.name
        for event in sorted(set(old) - set(new)):
            self.add(
                "event-removed",
                f"{name}.{event}",
                Level.WIRE,
                f"event {event} removed; subscribers to {name}.{event} get nothing",
            )
        for event in sorted(set(new) - set(old)):
            self.add("event-added", f"{name}.{event}", Level.COMPATIBLE, f"new event {event}")
        for event in sorted(set(old) & set(new)):
            was, now, path = old[event], new[event], f"{name}.{event}"
            if was.key != now.key:
                self.add(
                    "event-key-changed",
                    path,
                    Level.WIRE,
                    f"partition key {was.key} → {now.key}; per-key ordering for "
                    "subscribers changes",
                )
            if was.doc != now.doc:
                self.add("doc-changed", path, Level.COMPATIBLE, "documentation changed")
            self._schema(was.payload, now.payload, f"{path} payload", Direction.BOTH)

    # -- schemas ------------------------------------------------------------------------------

    def _schema(self, was: dict[str, Any], now: dict[str, Any], path: str, d: Direction) -> None:
        """Compare two schema fragments read in direction ``d``."""
        if "$ref" in was and "$ref" in now:
            self._refs(ref_name(was["$ref"]), ref_name(now["$ref"]), path)
            return
        old_t, new_t = type_of(was), type_of(now)
        if old_t.nullable != new_t.nullable and _strip(old_t) == _strip(new_t):
            if new_t.nullable:
                level = _pick(d, sent=Level.COMPATIBLE, received=Level.WIRE)
                self.add("nullable-added", path, level, "may now be null")
            else:
                level = _pick(d, sent=Level.WIRE, received=Level.COMPATIBLE)
                self.add("nullable-removed", path, level, "may no longer be null")
            was, now = _non_null(was), _non_null(now)
            old_t, new_t = _strip(old_t), _strip(new_t)
        if old_t.kind != new_t.kind:
            self.add("type-changed", path, Level.WIRE, f"type {_render(old_t)} → {_render(new_t)}")
            return
        if old_t.kind == "ref":
            self._refs(old_t.ref, new_t.ref, path)
        elif old_t.kind == "literal":
            self._values(set(old_t.values), set(new_t.values), path, d, "literal")
        elif old_t.kind == "union":
            self._values(
                {_render(v) for v in old_t.variants},
                {_render(v) for v in new_t.variants},
                path,
                d,
                "union",
            )
            old_refs = {v.ref for v in old_t.variants if v.kind == "ref"}
            for name in sorted(old_refs & {v.ref for v in new_t.variants if v.kind == "ref"}):
                self._refs(name, name, path)  # a model arm kept: compare its fields
        elif old_t.kind == "array":
            self._schema(_items(was), _items(now), f"{path}[]", d)
        elif old_t.kind == "map":
            self._schema(_values_of(was), _values_of(now), f"{path}{{}}", d)
        self._constraints(was, now, path, d)

    def _refs(self, old_name: str, new_name: str, path: str) -> None:
        """Two model references: the same model (compared once, on its own), a rename, or a
        different model."""
        old_def, new_def = self.old.defs.get(old_name, {}), self.new.defs.get(new_name, {})
        if old_name != new_name:
            if _strip_docs(old_def) == _strip_docs(new_def):
                self.add(
                    "model-renamed",
                    path,
                    Level.SOURCE,
                    f"model {old_name} renamed to {new_name}; same shape on the wire, "
                    "new names in generated code",
                )
            else:
                self.add("type-changed", path, Level.WIRE, f"type {old_name} → {new_name}")
                return
        if (old_name, new_name) in self.seen_models:
            return
        self.seen_models.add((old_name, new_name))
        d = self.old_use.get(old_name, Direction.BOTH)
        if "enum" in old_def or "enum" in new_def:
            if "enum" in old_def and "enum" in new_def:
                path = f"{self.old.name}.{old_name}"
                self._values(set(old_def["enum"]), set(new_def["enum"]), path, d, "enum")
            else:
                self.add(
                    "type-changed",
                    f"{self.old.name}.{old_name}",
                    Level.WIRE,
                    f"{old_name} changed between enum and model",
                )
            return
        self._object(old_def, new_def, f"{self.old.name}.{old_name}.", d)

    def _object(
        self,
        was: dict[str, Any],
        now: dict[str, Any],
        prefix: str,
        d: Direction,
        *,
        params: bool = False,
    ) -> None:
        """Compare the fields of two object schemas (method parameters or a model)."""
        suffix = ")" if params else ""
        what = "parameter" if params else "field"
        old_props, new_props = was.get("properties", {}), now.get("properties", {})
        old_req, new_req = set(was.get("required", [])), set(now.get("required", []))
        removed = sorted(set(old_props) - set(new_props))
        added = sorted(set(new_props) - set(old_props))
        for name in list(removed):
            twin = [a for a in added if _strip_docs(old_props[name]) == _strip_docs(new_props[a])]
            if len(twin) == 1:
                removed.remove(name)
                added.remove(twin[0])
                level = _pick(d, sent=Level.WIRE, received=Level.WIRE)
                self.add(
                    f"{what}-renamed",
                    f"{prefix}{name}{suffix}",
                    level,
                    f"{what} {name} renamed to {twin[0]}",
                )
        for name in removed:
            path = f"{prefix}{name}{suffix}"
            if params:
                self.add(
                    "parameter-removed",
                    path,
                    Level.WIRE,
                    f"parameter {name} removed; callers that pass it are rejected",
                )
            else:
                optional_out = name not in old_req
                level = _pick(
                    d, sent=Level.WIRE, received=Level.COMPATIBLE if optional_out else Level.WIRE
                )
                self.add("field-removed", path, level, f"field {name} removed")
        for name in added:
            path = f"{prefix}{name}{suffix}"
            if name in new_req:
                level = _pick(d, sent=Level.WIRE, received=Level.COMPATIBLE)
                self.add(
                    f"required-{what}-added",
                    path,
                    level,
                    f"new required {what} {name}; old senders do not send it",
                )
            else:
                self.add(
                    f"optional-{what}-added", path, Level.COMPATIBLE, f"new optional {what} {name}"
                )
        for name in sorted(set(old_props) & set(new_props)):
            path = f"{prefix}{name}{suffix}"
            o, n = old_props[name], new_props[name]
            if name in old_req and name not in new_req:
                level = _pick(d, sent=Level.COMPATIBLE, received=Level.SOURCE)
                self.add("required-to-optional", path, level, f"{what} {name} is now optional")
            elif name in new_req and name not in old_req:
                level = _pick(d, sent=Level.WIRE, received=Level.COMPATIBLE)
                self.add(
                    "optional-to-required",
                    path,
                    level,
                    f"{what} {name} is now required; old senders may omit it",
                )
            if "default" in o and "default" in n and o["default"] != n["default"]:
                self.add(
                    "default-changed",
                    path,
                    _pick(d, sent=Level.SOURCE, received=Level.COMPATIBLE),
                    f"default {o['default']!r} → {n['default']!r}; callers that omit it "
                    "get different behaviour",
                )
            if o.get("description") != n.get("description"):
                self.add("doc-changed", path, Level.COMPATIBLE, "documentation changed")
            self._schema(o, n, path, d)

    def _values(self, old: set[Any], new: set[Any], path: str, d: Direction, what: str) -> None:
        """Enum/literal values or union arms: senders may gain, receivers may lose."""
        for value in sorted(old - new, key=repr):
            level = _pick(d, sent=Level.WIRE, received=Level.COMPATIBLE)
            self.add(f"{what}-value-removed", path, level, f"{what} value {value!r} removed")
        for value in sorted(new - old, key=repr):
            level = _pick(d, sent=Level.COMPATIBLE, received=Level.WIRE)
            self.add(
                f"{what}-value-added",
                path,
                level,
                f"{what} value {value!r} added; old receivers reject it",
            )

    def _constraints(
        self, was: dict[str, Any], now: dict[str, Any], path: str, d: Direction
    ) -> None:
        """Bounds, patterns and formats: a sender may face looser ones, a receiver tighter."""
        for key in (*_LOWER, *_UPPER, *_OTHER):
            o, n = was.get(key), now.get(key)
            if o == n:
                continue
            text = f"{key} {o!r} → {n!r}"
            if o is not None and n is not None and key in _OTHER:
                self.add("constraint-changed", path, Level.WIRE, text)
                continue
            if o is None or n is None:  # a bound added tightens, a bound dropped loosens
                tighter = o is None
            elif key in _LOWER:
                tighter = n > o
            else:
                tighter = n < o
            if tighter:
                level = _pick(d, sent=Level.WIRE, received=Level.COMPATIBLE)
                self.add("constraint-tightened", path, level, text)
            else:
                level = _pick(d, sent=Level.COMPATIBLE, received=Level.WIRE)
                self.add("constraint-loosened", path, level, text)


def _same_signature(was: MethodInfo, now: MethodInfo) -> bool:
    """Two methods with the same parameters and result (a rename candidate)."""
    return bool(
        _strip_docs(was.params) == _strip_docs(now.params)
        and _strip_docs(was.returns) == _strip_docs(now.returns)
    )


def _policy(method: MethodInfo) -> str:
    retry = f"retry {method.retry.attempts}" if method.retry else "no retry"
    timeout = f"timeout {method.timeout}s" if method.timeout else "no timeout"
    return f"{timeout}, {retry}"


def _usage(iface: ServiceInterface) -> dict[str, Direction]:
    """For every model, the directions it is read in (through any chain of references)."""
    found: dict[str, Direction] = {}

    def visit(schema: Any, d: Direction) -> None:
        if isinstance(schema, dict):
            if isinstance(schema.get("$ref"), str):
                name = ref_name(schema["$ref"])
                if d not in found.get(name, Direction(0)):
                    found[name] = found.get(name, Direction(0)) | d
                    visit(iface.defs.get(name, {}), d)
            for value in schema.values():
                visit(value, d)
        elif isinstance(schema, list):
            for value in schema:
                visit(value, d)

    for method in iface.methods.values():
        visit(method.params, Direction.IN)
        visit(method.returns, Direction.OUT)
    for event in iface.events.values():
        visit(event.payload, Direction.BOTH)
    return found


def _strip_docs(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_docs(v) for k, v in schema.items() if k not in _DOC_KEYS}
    if isinstance(schema, list):
        return [_strip_docs(v) for v in schema]
    return schema


def _strip(t: Type) -> Type:
    return dataclasses.replace(t, nullable=False)


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``T | None`` as the schema of ``T``."""
    arms = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return arms[0] if len(arms) == 1 else schema


def _items(schema: dict[str, Any]) -> dict[str, Any]:
    items = schema.get("items", {})
    return items if isinstance(items, dict) else {}


def _values_of(schema: dict[str, Any]) -> dict[str, Any]:
    extra = schema.get("additionalProperties", {})
    return extra if isinstance(extra, dict) else {}


def _render(t: Type) -> str:
    text = {
        "ref": t.ref,
        "array": f"list[{_render(t.item) if t.item else 'any'}]",
        "map": f"dict[str, {_render(t.item) if t.item else 'any'}]",
        "literal": " | ".join(map(repr, t.values)),
        "union": " | ".join(map(_render, t.variants)),
    }.get(t.kind, t.kind)
    return f"{text} | null" if t.nullable else text


# -- whole apps, versions and the allow-list ----------------------------------------------------


def diff_interfaces(old: ServiceInterface, new: ServiceInterface) -> list[Change]:
    """Every change from ``old`` to ``new`` (two versions of one service)."""
    return _Differ(old, new).run()


def diff_apps(old: dict[str, ServiceInterface], new: dict[str, ServiceInterface]) -> list[Change]:
    """Every change between two sets of interfaces, keyed by service name."""
    changes: list[Change] = []
    for name in sorted(set(old) - set(new)):
        changes.append(
            Change(
                name,
                "service-removed",
                name,
                Level.WIRE,
                f"service {name} removed; its callers and subscribers fail",
            )
        )
    for name in sorted(set(new) - set(old)):
        changes.append(Change(name, "service-added", name, Level.COMPATIBLE, f"new service {name}"))
    for name in sorted(set(old) & set(new)):
        changes += diff_interfaces(old[name], new[name])
    return changes


_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+].*)?$")


def parse_version(text: str) -> tuple[int, int, int]:
    match = _SEMVER.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def version_errors(
    old: dict[str, ServiceInterface], new: dict[str, ServiceInterface], changes: list[Change]
) -> list[str]:
    """Services whose version does not say what changed: a breaking change (not allowed by the
    allow-list) needs a major bump — a minor bump while the major is 0, as in Cargo — and a
    version never goes down."""
    errors = [
        f"{c.service}: service removed; no version can announce that (add it to the allow-list)"
        for c in changes
        if c.kind == "service-removed" and not c.allowed
    ]
    for name in sorted(set(old) & set(new)):
        was, now = old[name].version, new[name].version
        try:
            o, n = parse_version(was), parse_version(now)
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if n < o:
            errors.append(f"{name}: version went down ({was} → {now})")
            continue
        breaking = [c for c in changes if c.service == name and c.breaking and not c.allowed]
        if not breaking:
            continue
        needed = (o[0] + 1, 0, 0) if o[0] > 0 else (0, o[1] + 1, 0)
        if n < needed:
            errors.append(
                f"{name}: {len(breaking)} breaking change(s) but version {was} → {now}; "
                f"needs at least {'.'.join(map(str, needed))}"
            )
    return errors


@dataclasses.dataclass(frozen=True)
class Allowance:
    """One accepted breaking change: ``path`` and ``kind`` are glob patterns."""

    path: str
    reason: str
    kind: str = "*"

    def matches(self, change: Change) -> bool:
        return fnmatch.fnmatchcase(change.path, self.path) and fnmatch.fnmatchcase(
            change.kind, self.kind
        )


ALLOW_FILE = "lumi-api-allow.toml"


def load_allow_list(path: Path) -> list[Allowance]:
    """Read an allow-list: ``[[allow]]`` tables with ``path``, ``reason`` and optional ``kind``."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"allow"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (valid: allow)")
    out = []
    for index, entry in enumerate(data.get("allow", [])):
        where = f"{path}: allow[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table with path, reason and optional kind")
        extra = sorted(set(entry) - {"path", "kind", "reason"})
        if extra:
            raise ConfigError(f"{where}: unknown key {extra[0]!r} (valid: path, kind, reason)")
        for key in ("path", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise ConfigError(f"{where}: {key!r} is required (a non-empty string)")
        out.append(Allowance(entry["path"], entry["reason"], entry.get("kind", "*")))
    return out


def apply_allow_list(
    changes: Iterable[Change], allow: list[Allowance]
) -> tuple[list[Change], list[Allowance]]:
    """Mark the breaking changes the allow-list accepts; also return entries that matched
    nothing (stale entries should be removed once the break has shipped)."""
    used: set[int] = set()
    out = []
    for change in changes:
        for index, entry in enumerate(allow):
            if change.breaking and entry.matches(change):
                used.add(index)
                change = dataclasses.replace(change, allowed=True, reason=entry.reason)
                break
        out.append(change)
    return out, [entry for index, entry in enumerate(allow) if index not in used]
