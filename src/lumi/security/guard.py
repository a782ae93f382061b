"""The guard: server middleware that decides who may make each call, before its arguments are
parsed.

It runs after the observer (so a refused call is logged, traced and counted) and before the
idempotency cache and the dispatcher (so a refused caller never reaches a cached result, a
validator or a handler). For each RPC:

1. **Who calls.** ``Metadata.caller`` is what the transport read from the verified client
   certificate (:mod:`lumi.transports.tls`); an identity of another trust domain counts as no
   one. Without one, a relayed end user is dropped.
2. **Authentication.** With mTLS on, a caller without an identity reaches only public methods;
   any other call is UNAUTHENTICATED.
3. **Authorization.** An identified caller must be allowed by the service's
   :class:`~lumi.security.policy.Policy`, or the call is PERMISSION_DENIED.
4. **The end user.** A bearer token (``authorization: Bearer …``) is verified by the service's
   ``@lumi.auth`` handler, whose :class:`~lumi.model.context.User` becomes the call's (and
   follows it to every service it calls); a public call from outside without a token is
   refused unless the handler accepts ``None``. The token is removed from the metadata once
   read, so it is neither logged nor sent on.

With mTLS off nothing identifies a service, so steps 1-3 admit every call and only the end
user's token is checked.

**Behind an activator** (the function runtime): the activator serves the service's endpoints
with a guard made with ``relay=True``, which does steps 1-3 and forwards the call to an
instance with the caller it verified in ``Metadata.relayed_caller`` (and the token untouched,
for the instance's ``@lumi.auth`` handler). The instance's guard believes a relayed caller
only from a peer whose identity is the called service's own — the activator holds the
service's certificate — and then checks it as if it had called directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from lumi.model.context import User
from lumi.model.errors import Internal, LumiError, PermissionDenied, Unauthenticated
from lumi.model.reflect import AuthSpec
from lumi.pipeline import Call, Handler
from lumi.security.identity import Identity, service_id, trust_domain
from lumi.security.policy import Policy

log = logging.getLogger("lumi.security")

MAX_AUTHORIZATION = 8192 + 16

Hosted = Callable[[str], tuple[object, AuthSpec] | None]
"""Given a service name, its running instance and ``@lumi.auth`` handler (None: it has none)."""


class Guard:
    """The middleware of the module docstring, for the services one replica hosts."""

    def __init__(
        self,
        app: str,
        policies: Mapping[str, Policy],
        *,
        mtls: bool,
        hosted: Hosted,
        relay: bool = False,
    ) -> None:
        self.app = app
        self.domain = trust_domain(app)
        self.policies = policies
        self.mtls = mtls
        self.hosted = hosted
        self.relay = relay  # an activator's: check who calls, leave the end user to the instance

    async def __call__(self, call: Call, next_handler: Handler) -> bytes:
        if call.kind != "rpc":
            return await next_handler(call)
        meta = call.metadata
        token, meta.authorization = meta.authorization, None
        identity = Identity.parse(meta.caller)
        relayed, meta.relayed_caller = meta.relayed_caller, None
        if relayed is not None and identity is not None and identity == self._own(call.service):
            meta.caller = relayed or None  # the activator in front of us says who called it
            identity = Identity.parse(meta.caller)
        if identity is not None and identity.trust_domain != self.domain:
            identity = None  # a certificate our CA trusts, but of another app's trust domain
        if identity is None:
            meta.user = None
        policy = self.policies.get(call.service)
        public = policy is not None and policy.rule(call.method).public
        what = f"{call.service}.{call.method}"
        if self.mtls:
            if identity is None and not public:
                raise Unauthenticated(
                    f"{what} is not public: call it with a certificate of the app "
                    f"{self.app!r} (mTLS)"
                )
            if (
                identity is not None
                and policy is not None
                and not policy.allows(identity, call.method)
            ):
                raise PermissionDenied(f"{identity.uri} may not call {what}")
        if self.relay:
            meta.authorization = token
            meta.relayed_caller = identity.uri if identity is not None else ""
            return await next_handler(call)
        if token is not None:
            meta.user = await self._authenticate(call.service, _bearer(token), what)
        elif identity is None and public:
            found = self.hosted(call.service)
            if found is not None:
                if not found[1].accepts_none:
                    raise Unauthenticated(
                        f"{what} needs a bearer token (header authorization: Bearer <token>)"
                    )
                meta.user = await self._run(found, None, what)
        return await next_handler(call)

    def _own(self, service: str) -> Identity | None:
        return Identity.parse(service_id(self.app, service))

    async def _authenticate(self, service: str, token: str, what: str) -> User:
        found = self.hosted(service)
        if found is None:
            raise Unauthenticated(
                f"{service} does not take bearer tokens (it has no @lumi.auth handler)"
            )
        user = await self._run(found, token, what)
        if user is None:
            raise Unauthenticated(f"the bearer token was not accepted by {service}")
        return user

    async def _run(
        self, found: tuple[object, AuthSpec], token: str | None, what: str
    ) -> User | None:
        instance, spec = found
        func = getattr(instance, spec.attr)
        try:
            if spec.is_async:
                result: Any = await func(token)
            else:
                result = await asyncio.to_thread(func, token)
        except LumiError:
            raise
        except Exception as exc:
            # The type only: a message could hold what the handler was given.
            log.error("the @lumi.auth handler %s raised %s", spec.attr, type(exc).__name__)
            raise Internal(f"verifying the caller of {what} failed") from None
        if result is not None and not isinstance(result, User):
            raise Internal(
                f"the @lumi.auth handler {spec.attr} returned {type(result).__name__}, "
                f"not a lumi.User"
            )
        return result


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(value) > MAX_AUTHORIZATION:
        raise Unauthenticated("the authorization header must be 'Bearer <token>'")
    return token.strip()
