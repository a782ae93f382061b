"""Access policies: which authenticated callers may call which methods of a service.

``[services.Store.access]`` (:class:`lumi.config.AccessConfig`) compiles into one
:class:`Policy` per service: for each method, the set of callers allowed — service names,
``"operator"`` — or "any identity of the app". The rules, checked in this order:

1. the operator identity may call everything while ``security.operator = "all"`` (the default);
2. a service with no ``access`` table admits every service of the app (and the operator);
3. a method listed in ``access.methods`` admits ``access.allow`` plus its own list;
4. any other method admits ``access.allow``, or everyone when ``access.default = "allow"``.

Public methods (``@lumi.api(public=True)``) admit everyone, with or without a certificate, so
an access list on one is a configuration error. :func:`check` validates the tables against the
app's interfaces (did-you-mean for service and method names) and :meth:`Policy.describe` is
what ``lumi ls`` prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from lumi.config import AccessConfig, AppConfig
from lumi.model.errors import ConfigError
from lumi.model.interface import ServiceInterface
from lumi.model.suggest import close_matches
from lumi.security.identity import OPERATOR, Identity

ANY = "*"
_REMEMBERED = 4096  # decisions a policy keeps (see Policy.allows)


@dataclasses.dataclass(frozen=True)
class Rule:
    """Who may call one method: ``callers`` (None: any identity of the app)."""

    public: bool
    callers: frozenset[str] | None


class Policy:
    """The effective access rules of one service of an app."""

    def __init__(
        self,
        app: str,
        iface: ServiceInterface,
        access: AccessConfig | None,
        *,
        operator: str = "all",
    ) -> None:
        self.app = app
        self.service = iface.name
        self.access = access
        self.operator_everywhere = operator == "all"
        self.bearer = iface.auth  # its public methods verify bearer tokens
        self.rules: dict[str, Rule] = {}
        self._allowed: dict[tuple[str, str, str], bool] = {}
        for name, method in iface.methods.items():
            self.rules[name] = Rule(method.public, None if method.public else self._callers(name))

    def _callers(self, method: str) -> frozenset[str] | None:
        access = self.access
        if access is None:
            return None
        listed = access.methods.get(method)
        if listed is None and access.default == "allow":
            return None
        names = {*access.allow, *(listed or ())}
        return None if ANY in names else frozenset(names)

    def rule(self, method: str) -> Rule:
        """The rule of ``method``; an unknown method is private (the dispatcher will say
        NOT_FOUND to a caller allowed to ask)."""
        found = self.rules.get(method)
        if found is None:
            return Rule(False, self._callers(method))
        return found

    def caller_name(self, identity: Identity) -> str | None:
        """The name ``identity`` has in access lists: a service name, ``"operator"``, or None
        for an identity that is not of this app."""
        if identity.is_operator(self.app):
            return OPERATOR
        return identity.service(self.app)

    def allows(self, identity: Identity, method: str) -> bool:
        """True if the authenticated ``identity`` may call ``method``."""
        # Asked on every call, by a handful of callers: remembered (bounded by the methods
        # and the identities of one app; cleared if some caller floods it with names).
        key = (identity.trust_domain, identity.path, method)
        found = self._allowed.get(key)
        if found is None:
            if len(self._allowed) >= _REMEMBERED:
                self._allowed.clear()
            found = self._allowed[key] = self._allows(identity, method)
        return found

    def _allows(self, identity: Identity, method: str) -> bool:
        name = self.caller_name(identity)
        if name is None:
            return False
        if name == OPERATOR and self.operator_everywhere:
            return True
        rule = self.rule(method)
        return rule.public or rule.callers is None or name in rule.callers

    def describe(self, method: str) -> str:
        """Who may call ``method``, in a few words (``lumi ls``)."""
        rule = self.rule(method)
        if rule.public:
            return "public"
        if rule.callers is None:
            return "any service"
        names = sorted(rule.callers)
        if self.operator_everywhere and OPERATOR not in names:
            names.append(OPERATOR)
        return ", ".join(names) if names else "no one"

    def summary(self) -> str:
        """Who may call the service, in one line (``lumi ls``, before each method's callers)."""
        access = self.access
        if access is None:
            text = "access: any service of the app (no [access] table)"
        else:
            allowed = ", ".join(access.allow) or "no one"
            text = f"access: default {access.default}; every method: {allowed}"
        if self.operator_everywhere:
            text += "; the operator: every method"
        if self.bearer:
            text += "; bearer tokens verified for public methods"
        return text

    def listing(self) -> dict[str, Any]:
        """What ``lumi ls`` prints of the policy: the summary and each method's callers."""
        return {"summary": self.summary(), "methods": {m: self.describe(m) for m in self.rules}}


def policies(config: AppConfig, interfaces: Mapping[str, ServiceInterface]) -> dict[str, Policy]:
    """Every service's policy (the configuration checked first, see :func:`check`)."""
    check(config, interfaces)
    return {
        name: Policy(
            config.name, iface, config.service(name).access, operator=config.security.operator
        )
        for name, iface in interfaces.items()
    }


def check(config: AppConfig, interfaces: Mapping[str, ServiceInterface]) -> None:
    """Raise one :class:`ConfigError` for the first access table that names an unknown service
    or method, lists callers of a public method, or needs mTLS that is off."""
    names = sorted(interfaces)
    callers = [*names, OPERATOR, ANY]
    for service, settings in config.services.items():
        access = settings.access
        if access is None or service not in interfaces:
            continue
        key = f"services.{service}.access"
        if not config.security.mtls:
            raise _error(
                config, key, "needs security.mtls = true (callers are known by their certificates)"
            )
        iface = interfaces[service]
        _check_callers(config, f"{key}.allow", access.allow, callers)
        for method, listed in access.methods.items():
            where = f"{key}.methods.{method}"
            if method not in iface.methods:
                known = sorted(iface.methods)
                raise _error(
                    config,
                    where,
                    f"{service} has no method {method!r}{_did_you_mean(method, known)} "
                    f"(methods: {', '.join(known) or 'none'})",
                )
            if iface.methods[method].public:
                raise _error(
                    config,
                    where,
                    f"{service}.{method} is public (anyone may call it): an access list has no "
                    f"effect; remove it, or make the method private",
                )
            _check_callers(config, where, listed, callers)


def _check_callers(config: AppConfig, key: str, listed: Iterable[str], known: list[str]) -> None:
    for name in listed:
        if name not in known:
            raise _error(
                config,
                key,
                f"no service {name!r} in this app{_did_you_mean(name, known)} (callers: "
                f"{', '.join(known)})",
            )


def _did_you_mean(word: str, choices: list[str]) -> str:
    match = close_matches(word, choices, n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def _error(config: AppConfig, key: str, message: str) -> ConfigError:
    return ConfigError(f"{config.path}: {key}: {message}")
