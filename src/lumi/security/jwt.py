"""Verifying end users' JSON Web Tokens, for ``@lumi.auth`` handlers: ``lumi.Jwt``.

PyJWT does the verification (signature, ``exp``/``nbf``/``iat`` with ``leeway``, ``iss``,
``aud``, required claims); this wraps it for a server: a shared key read from the environment
when first needed, or a JWKS fetched over HTTP(S) and cached (fetched again, at most every
``min_refresh`` seconds, when a token names a key id it does not hold — the issuer rotated its
keys). Every failure is :class:`lumi.Unauthenticated` naming what was wrong with the token,
never the token, the key or the claims.

    verify = lumi.Jwt(key_env="SHOP_JWT_KEY", audience="shop")            # HS256, shared key
    verify = lumi.Jwt(jwks_url="https://issuer.example/.well-known/jwks.json", issuer=...)
    claims = await verify(token)
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

import jwt as pyjwt

from lumi.model.errors import ConfigError, Internal, Unauthenticated

MAX_TOKEN = 8192
SHARED_KEY_ALGORITHMS = ("HS256", "HS384", "HS512")
PUBLIC_KEY_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")


class Jwt:
    """A verifier of JSON Web Tokens (see the module docstring); call it with a token."""

    def __init__(
        self,
        *,
        key: str | bytes | None = None,
        key_env: str | None = None,
        jwks_url: str | None = None,
        algorithms: Sequence[str] | None = None,
        issuer: str | None = None,
        audience: str | Sequence[str] | None = None,
        leeway: float = 0.0,
        require: Sequence[str] = ("exp", "sub"),
        jwks_ttl: float = 300.0,
        min_refresh: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        given = [name for name, v in (("key", key), ("key_env", key_env),
                                      ("jwks_url", jwks_url)) if v is not None]  # fmt: skip
        if len(given) != 1:
            raise ConfigError(
                f"lumi.Jwt needs exactly one of key, key_env or jwks_url (got "
                f"{', '.join(given) or 'none'})"
            )
        self._key = key
        self._key_env = key_env
        self._jwks_url = jwks_url
        default = PUBLIC_KEY_ALGORITHMS if jwks_url else SHARED_KEY_ALGORITHMS
        self.algorithms = list(algorithms or default)
        if not self.algorithms or any(a.lower() == "none" for a in self.algorithms):
            raise ConfigError("lumi.Jwt: unsigned tokens (algorithm 'none') are never accepted")
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.require = list(require)
        self.jwks_ttl = jwks_ttl
        self.min_refresh = min_refresh
        self.timeout = timeout
        self._jwks: pyjwt.PyJWKSet | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never the key
        source = self._jwks_url or (f"${self._key_env}" if self._key_env else "a key")
        return f"<lumi.Jwt {','.join(self.algorithms)} from {source}>"

    async def __call__(self, token: str) -> dict[str, Any]:
        return await self.verify(token)

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once it is verified; :class:`Unauthenticated` otherwise."""
        if not token or len(token) > MAX_TOKEN or not token.isascii():
            raise Unauthenticated(f"the bearer token is not a JWT (1-{MAX_TOKEN} ASCII characters)")
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.PyJWTError:
            raise Unauthenticated("the bearer token is not a JWT") from None
        if header.get("alg") not in self.algorithms:
            raise Unauthenticated(
                f"the bearer token is signed with {str(header.get('alg'))[:16]!r}; accepted: "
                f"{', '.join(self.algorithms)}"
            )
        key = await self._key_for(header)
        try:
            claims: dict[str, Any] = pyjwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": self.require, "verify_aud": self.audience is not None},
            )
        except pyjwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired") from None
        except pyjwt.ImmatureSignatureError:
            raise Unauthenticated("the bearer token is not valid yet") from None
        except pyjwt.InvalidSignatureError:
            raise Unauthenticated("the bearer token's signature does not verify") from None
        except pyjwt.InvalidAudienceError:
            raise Unauthenticated("the bearer token is for another audience") from None
        except pyjwt.InvalidIssuerError:
            raise Unauthenticated("the bearer token is from another issuer") from None
        except pyjwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the bearer token has no {exc.claim!r} claim") from None
        except pyjwt.PyJWTError as exc:
            # PyJWT's messages describe the token's form, never its contents or the key.
            raise Unauthenticated(f"the bearer token is not valid: {exc}") from None
        return claims

    async def _key_for(self, header: dict[str, Any]) -> Any:
        if self._key is not None:
            return self._key
        if self._key_env is not None:
            value = os.environ.get(self._key_env)
            if not value:
                raise Internal(f"the JWT key variable {self._key_env} is not set")
            return value
        kid = header.get("kid")
        jwks = await self._keys(refresh=False)
        found = _find(jwks, kid)
        if found is None and time.monotonic() - self._fetched >= self.min_refresh:
            found = _find(await self._keys(refresh=True), kid)  # the issuer rotated its keys
        if found is None:
            raise Unauthenticated(
                f"the bearer token's key {str(kid)[:64]!r} is not in the issuer's key set"
            )
        return found

    async def _keys(self, *, refresh: bool) -> pyjwt.PyJWKSet:
        async with self._lock:
            fresh = time.monotonic() - self._fetched < self.jwks_ttl
            if self._jwks is not None and fresh and not refresh:
                return self._jwks
            assert self._jwks_url is not None
            try:
                data = await asyncio.to_thread(_fetch, self._jwks_url, self.timeout)
                self._jwks = pyjwt.PyJWKSet.from_dict(data)
            except (OSError, ValueError, pyjwt.PyJWTError) as exc:
                if self._jwks is None:
                    raise Internal(
                        f"cannot fetch the JWT key set from {self._jwks_url}: {exc}"
                    ) from None
            self._fetched = time.monotonic()
            return self._jwks


def _find(jwks: pyjwt.PyJWKSet, kid: Any) -> Any:
    for jwk in jwks.keys:
        if kid is None or jwk.key_id == kid:
            return jwk.key
    return None


def _fetch(url: str, timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = json.loads(response.read(1024 * 1024))
    if not isinstance(data, dict):
        raise ValueError("the key set is not a JSON object")
    return data
