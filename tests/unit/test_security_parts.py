"""The security parts one by one: the CA and its files, bundles and reloads, identities,
policies and their configuration errors, the guard's decisions, and the user on the wire."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

import lumi
from lumi.config import AccessConfig, load_config
from lumi.model.context import Metadata, User
from lumi.model.errors import ConfigError, Internal, InvalidArgument
from lumi.model.interface import interface
from lumi.model.reflect import AuthSpec
from lumi.pipeline.call import Call
from lumi.security import identity
from lumi.security.bundle import write_bundle
from lumi.security.ca import CertificateAuthority
from lumi.security.guard import Guard
from lumi.security.identity import Identity
from lumi.security.policy import Policy, check
from lumi.transports.tls import Tls, TlsFiles, peer_identity
from tests.tlskit import TlsKit

# -- the CA and its files ------------------------------------------------------------------------


def test_the_ca_is_created_once_in_private_files(tmp_path: Path) -> None:
    """load_or_create writes ca.crt/ca.key 0600 in a 0700 folder, and loads the same CA after."""
    folder = tmp_path / "ca"
    made = CertificateAuthority.load_or_create(folder, "shop")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("ca.crt", "ca.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    again = CertificateAuthority.load_or_create(folder, "shop")
    assert again.cert.serial_number == made.cert.serial_number


def test_a_broken_ca_folder_is_one_config_error_without_key_material(tmp_path: Path) -> None:
    """A missing key, or a key that is not the certificate's, is a ConfigError naming the folder
    and the problem, never the key's contents."""
    folder = tmp_path / "ca"
    CertificateAuthority.load_or_create(folder, "shop")
    other = tmp_path / "other"
    CertificateAuthority.load_or_create(other, "shop")
    key = (other / "ca.key").read_text()
    (folder / "ca.key").write_text(key)
    with pytest.raises(ConfigError, match="is not the key of ca.crt") as caught:
        CertificateAuthority.load(folder)
    assert key.splitlines()[1] not in str(caught.value)
    (folder / "ca.key").unlink()
    with pytest.raises(ConfigError, match="no ca.key"):
        CertificateAuthority.load(folder)


@pytest.mark.parametrize("key_type", ["ec", "ed25519"])
def test_a_leaf_names_its_identity_and_host_names(tmp_path: Path, key_type: Any) -> None:
    """An issued certificate carries the SPIFFE URI, the DNS names and IPs asked for, is not a
    CA, is valid for the lifetime asked, and chains to the CA (for both key types)."""
    ca = CertificateAuthority.create("shop", key_type=key_type)
    issued = ca.issue(
        "spiffe://shop/Orders", lifetime=600, dns=("orders.shop",), ips=("127.0.0.1",)
    )
    cert = x509.load_pem_x509_certificate(issued.cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://shop/Orders"]
    assert names.get_values_for_type(x509.DNSName) == ["orders.shop"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 600 <= lifetime.total_seconds() <= 661
    cert.verify_directly_issued_by(ca.cert)


def test_bundles_swap_generations_atomically_and_keep_two(tmp_path: Path) -> None:
    """Each write is a new generation the stable names point into; files are 0600 and only the
    two newest generations are kept."""
    folder = tmp_path / "b"
    for n in range(4):
        write_bundle(folder, {"tls.crt": f"cert {n}".encode(), "tls.key": b"k"})
    assert (folder / "tls.crt").read_text() == "cert 3"
    assert sorted(p.name for p in folder.glob("..gen-*")) == ["..gen-3", "..gen-4"]
    assert stat.S_IMODE((folder / "..data" / "tls.key").stat().st_mode) == 0o600


def test_tls_reloads_a_renewal_and_skips_a_broken_one(tmp_path: Path) -> None:
    """reload() is False while nothing changed, True after a renewal (new generation), and
    keeps the certificate in use when the new files do not load (a key of another cert)."""
    kit = TlsKit(tmp_path)
    tls = kit.tls("Orders")
    assert not tls.reload()
    kit.renew("Orders")
    assert tls.generation == 1
    first, second = kit.issue("Orders"), kit.issue("Orders")
    write_bundle(
        tmp_path / "Orders",
        {"tls.crt": first.cert, "tls.key": second.key, "ca.crt": kit.ca.cert_pem},
    )
    assert not tls.reload() and tls.generation == 1
    assert tls.pem.cert != first.cert


def test_a_missing_bundle_is_a_tls_error_naming_the_files(tmp_path: Path) -> None:
    """Loading a folder without the files says which files, not their contents."""
    from lumi.transports.tls import TlsError

    with pytest.raises(TlsError, match="tls.crt"):
        Tls(TlsFiles.in_folder(tmp_path / "nothing"))


# -- identities ----------------------------------------------------------------------------------


def test_identities_and_names() -> None:
    """SPIFFE ids, the operator's, server names, and parsing of what a certificate says."""
    assert identity.service_id("Shop", "Orders") == "spiffe://shop/Orders"
    assert identity.operator_id("shop") == "spiffe://shop/lumi/operator"
    assert identity.server_name("shop", "Order_Items") == "order-items.shop"
    parsed = Identity.parse("spiffe://shop/Orders")
    assert parsed is not None and parsed.service("shop") == "Orders"
    assert parsed.service("other") is None
    operator = Identity.parse(identity.operator_id("shop"))
    assert (
        operator is not None and operator.is_operator("shop") and operator.service("shop") is None
    )
    assert Identity.parse("https://shop/Orders") is None and Identity.parse("spiffe://shop") is None


def test_peer_identity_needs_exactly_one_spiffe_uri() -> None:
    """A certificate's identity is its one SPIFFE URI; none, or more than one URI, is no one."""
    one = {"subjectAltName": (("URI", "spiffe://shop/A"), ("DNS", "a.shop"))}
    two = {"subjectAltName": (("URI", "spiffe://shop/A"), ("URI", "spiffe://shop/B"))}
    other = {"subjectAltName": (("URI", "https://example.com"),)}
    assert peer_identity(one) == "spiffe://shop/A"
    assert peer_identity(two) is None and peer_identity(other) is None
    assert peer_identity(None) is None and peer_identity({}) is None


def test_a_user_crosses_the_wire_and_a_bad_value_is_refused_without_echo() -> None:
    """User.to_header/from_header round-trip; a forged or oversized value is INVALID_ARGUMENT
    naming the field, without repeating it."""
    user = User("ada", {"role": "buyer", "n": 2})
    assert User.from_header(user.to_header()) == user
    for bad in ("!!!", "e30", "x" * 5000):  # not base64 JSON; {} without an id; too long
        with pytest.raises(InvalidArgument, match="x-lumi-user") as caught:
            User.from_header(bad)
        assert bad not in caught.value.message


# -- policies ------------------------------------------------------------------------------------


class Store(lumi.Service):
    @lumi.api
    async def put(self, key: str) -> None: ...

    @lumi.api
    async def get(self, key: str) -> str: ...

    @lumi.api(public=True)
    async def hello(self) -> str: ...


def who(name: str) -> Identity:
    if name == "operator":
        found = Identity.parse(identity.operator_id("shop"))
    else:
        found = Identity.parse(identity.service_id("shop", name))
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("access", "operator", "allowed"),
    [
        (
            None,
            "all",
            {"put": {"Front", "Other", "operator"}, "get": {"Front", "Other", "operator"}},
        ),
        (
            AccessConfig(allow=["Front"]),
            "all",
            {"put": {"Front", "operator"}, "get": {"Front", "operator"}},
        ),
        (AccessConfig(allow=["Front"]), "policy", {"put": {"Front"}, "get": {"Front"}}),
        (
            AccessConfig(allow=["Front"], methods={"get": ["Other"]}),
            "policy",
            {"put": {"Front"}, "get": {"Front", "Other"}},
        ),
        (
            AccessConfig(default="allow", methods={"put": ["operator"]}),
            "policy",
            {"put": {"operator"}, "get": {"Front", "Other", "operator"}},
        ),
        (
            AccessConfig(allow=["*"]),
            "policy",
            {"put": {"Front", "Other", "operator"}, "get": {"Front", "Other", "operator"}},
        ),
    ],
    ids=["no-table", "allow", "operator-by-policy", "per-method", "default-allow", "anyone"],
)
def test_policy_rules(
    access: AccessConfig | None, operator: str, allowed: dict[str, set[str]]
) -> None:
    """Each combination of allow, methods, default and operator admits exactly the callers of
    the table; a public method admits everyone; an identity of another app no one."""
    policy = Policy("shop", interface(Store), access, operator=operator)
    for method, callers in allowed.items():
        admitted = {
            name for name in ("Front", "Other", "operator") if policy.allows(who(name), method)
        }
        assert admitted == callers, method
    assert all(policy.allows(who(name), "hello") for name in ("Front", "Other", "operator"))
    foreign = Identity.parse("spiffe://other/Front")
    assert foreign is not None and not policy.allows(foreign, "get")


def _app(tmp_path: Path, extra: str) -> Any:
    (tmp_path / "app_services.py").write_text(
        "import lumi\n\n\nclass Store(lumi.Service):\n    @lumi.api\n    async def put(self, key: str) -> None: ...\n\n"
        "    @lumi.api(public=True)\n    async def hello(self) -> str: ...\n\n\n"
        "class Front(lumi.Service):\n    store: Store\n\n    @lumi.api\n    async def go(self) -> None: ...\n"
    )
    (tmp_path / "lumi.toml").write_text(
        '[app]\nname = "shop"\nservices = ["app_services:Store", "app_services:Front"]\n' + extra
    )
    config = load_config(tmp_path)
    return config, {cls.name: interface(cls) for cls in config.load_services()}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[security]\nmtls = true\n[services.Store.access]\nallow = ["Frnt"]\n',
            "services.Store.access.allow: no service 'Frnt' in this app; did you mean 'Front'?",
        ),
        (
            "[security]\nmtls = true\n[services.Store.access.methods]\npt = []\n",
            "services.Store.access.methods.pt: Store has no method 'pt'; did you mean 'put'?",
        ),
        (
            '[security]\nmtls = true\n[services.Store.access.methods]\nhello = ["Front"]\n',
            "Store.hello is public",
        ),
        (
            '[security]\nmtls = false\n[services.Store.access]\nallow = ["Front"]\n',
            "needs security.mtls = true",
        ),
    ],
    ids=["caller", "method", "public", "mtls-off"],
)
def test_bad_access_tables_are_one_config_error(tmp_path: Path, extra: str, message: str) -> None:
    """An unknown caller or method (with a did-you-mean), a list on a public method, or a
    policy with mTLS off is one ConfigError naming the file and the key."""
    config, interfaces = _app(tmp_path, extra)
    with pytest.raises(ConfigError) as caught:
        check(config, interfaces)
    assert str(caught.value).startswith(f"{tmp_path / 'lumi.toml'}: ")
    assert message in str(caught.value)


def test_security_settings_are_validated(tmp_path: Path) -> None:
    """Unknown [security] keys and values name what is valid."""
    with pytest.raises(ConfigError, match="security.mtl: unknown key; did you mean 'mtls'"):
        _app(tmp_path, "[security]\nmtl = true\n")
    with pytest.raises(ConfigError, match="security.operator"):
        _app(tmp_path, '[security]\noperator = "some"\n')


# -- the guard -----------------------------------------------------------------------------------


class Front(lumi.Service):
    @lumi.api
    async def private(self) -> str: ...

    @lumi.api(public=True)
    async def open(self) -> str: ...


class _Auth:
    """A stand-in service instance with an auth handler."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error, self.tokens = result, error, []  # type: ignore[var-annotated]

    async def authenticate(self, token: str | None) -> Any:
        self.tokens.append(token)
        if self.error is not None:
            raise self.error
        return self.result


def guard(auth: _Auth | None = None, *, accepts_none: bool = False, mtls: bool = True) -> Guard:
    policy = Policy("shop", interface(Front), AccessConfig(allow=["Orders"]))
    spec = AuthSpec("authenticate", True, accepts_none)

    def hosted(name: str) -> tuple[object, AuthSpec] | None:
        return None if auth is None else (auth, spec)

    return Guard("shop", {"Front": policy}, mtls=mtls, hosted=hosted)


async def decide(g: Guard, method: str, **meta: Any) -> tuple[Metadata, bool]:
    """Run ``g`` on one call; (the metadata the handler got, whether it ran)."""
    ran: list[Metadata] = []

    async def handler(call: Call) -> bytes:
        ran.append(call.metadata)
        return b"null"

    metadata = Metadata(**meta)
    await g(Call("Front", method, b"{not json", metadata), next_handler=handler)
    return metadata, bool(ran)


async def test_the_guard_refuses_before_the_handler() -> None:
    """No identity → UNAUTHENTICATED for a private method; an identity not allowed →
    PERMISSION_DENIED; an allowed one passes; an identity of another trust domain counts as
    no one; a relayed user from no one is dropped. The body (not JSON) is never looked at."""
    g = guard()
    with pytest.raises(lumi.Unauthenticated, match="Front.private is not public"):
        await decide(g, "private")
    with pytest.raises(lumi.PermissionDenied, match="spiffe://shop/Other may not call"):
        await decide(g, "private", caller="spiffe://shop/Other")
    with pytest.raises(lumi.Unauthenticated):
        await decide(g, "private", caller="spiffe://elsewhere/Orders")
    meta, ran = await decide(g, "private", caller="spiffe://shop/Orders", user=User("ada"))
    assert ran and meta.user == User("ada")
    meta, ran = await decide(g, "open", user=User("mallory"))
    assert ran and meta.user is None


async def test_the_guard_runs_the_auth_handler_for_tokens() -> None:
    """A bearer token goes to the auth handler, whose user the call gets; the token is then
    gone from the metadata. A public call without a token is refused unless the handler takes
    None; a token for a service without a handler is refused."""
    auth = _Auth(User("ada"))
    meta, ran = await decide(guard(auth), "open", authorization="Bearer abc.def")
    assert ran and meta.user == User("ada") and meta.authorization is None
    assert auth.tokens == ["abc.def"]
    with pytest.raises(lumi.Unauthenticated, match="needs a bearer token"):
        await decide(guard(auth), "open")
    meta, ran = await decide(guard(_Auth(None), accepts_none=True), "open")
    assert ran and meta.user is None
    with pytest.raises(lumi.Unauthenticated, match="no @lumi.auth handler"):
        await decide(guard(None), "open", authorization="Bearer abc")
    with pytest.raises(lumi.Unauthenticated, match="must be 'Bearer <token>'"):
        await decide(guard(auth), "open", authorization="Basic YWRhOnB3")


async def test_a_failing_auth_handler_is_internal_without_its_message() -> None:
    """An auth handler that raises something unexpected makes the call INTERNAL, and neither
    the answer nor the log repeats its message (it may hold the token)."""
    secret = "tok-SECRET-123"
    with pytest.raises(Internal) as caught:
        await decide(
            guard(_Auth(error=ValueError(secret))), "open", authorization=f"Bearer {secret}"
        )
    assert secret not in caught.value.message
    with pytest.raises(Internal, match="not a lumi.User"):
        await decide(guard(_Auth("ada")), "open", authorization="Bearer x")


async def test_with_mtls_off_only_tokens_are_checked() -> None:
    """With mTLS off nothing identifies a caller, so private methods are open; tokens are still
    verified by the auth handler."""
    meta, ran = await decide(guard(_Auth(User("ada")), mtls=False), "private")
    assert ran
    meta, ran = await decide(
        guard(_Auth(User("ada")), mtls=False), "open", authorization="Bearer t"
    )
    assert ran and meta.user == User("ada")


async def test_a_relayed_caller_is_believed_only_from_the_service_itself() -> None:
    """An activator's guard checks the caller and relays it (token untouched, "" for no one);
    an instance's guard believes the relay only from the service's own identity, and then
    checks the relayed caller as if it had called."""
    edge = Guard("shop", guard().policies, mtls=True, hosted=lambda name: None, relay=True)
    meta, ran = await decide(edge, "private", caller="spiffe://shop/Orders", authorization="B x")
    assert ran and meta.relayed_caller == "spiffe://shop/Orders" and meta.authorization == "B x"
    meta, ran = await decide(edge, "open")
    assert ran and meta.relayed_caller == ""
    with pytest.raises(lumi.PermissionDenied):
        await decide(edge, "private", caller="spiffe://shop/Other")
    own = "spiffe://shop/Front"
    meta, ran = await decide(guard(), "private", caller=own, relayed_caller="spiffe://shop/Orders")
    assert ran and meta.caller == "spiffe://shop/Orders" and meta.relayed_caller is None
    with pytest.raises(lumi.Unauthenticated):  # relayed: no one called the activator
        await decide(guard(), "private", caller=own, relayed_caller="")
    with pytest.raises(lumi.PermissionDenied, match="spiffe://shop/Other may not call"):
        await decide(guard(), "private", caller="spiffe://shop/Other",
                     relayed_caller="spiffe://shop/Orders")  # fmt: skip


def test_auth_handlers_are_checked_at_definition() -> None:
    """Two auth handlers, one with two parameters, or one that is also an @api method: a
    DefinitionError naming the service."""
    with pytest.raises(lumi.DefinitionError, match="two @lumi.auth handlers"):

        class Two(lumi.Service):
            @lumi.auth
            def a(self, token: str) -> lumi.User: ...

            @lumi.auth
            def b(self, token: str) -> lumi.User: ...

        interface(Two)
    with pytest.raises(lumi.DefinitionError, match="exactly one parameter"):

        class Wide(lumi.Service):
            @lumi.auth
            def a(self, token: str, other: str) -> lumi.User: ...

        interface(Wide)
    with pytest.raises(lumi.DefinitionError, match="is a str"):

        class Typed(lumi.Service):
            @lumi.auth
            def a(self, token: int) -> lumi.User: ...

        interface(Typed)


def test_public_and_auth_are_in_the_interface_only_when_used() -> None:
    """The interface marks public methods and a service with an auth handler; a service using
    neither serializes exactly as before (same fingerprint as without the fields)."""

    class Plain(lumi.Service):
        @lumi.api
        async def x(self) -> int: ...

    text = interface(Plain).to_json()
    assert '"public"' not in text and '"auth"' not in text
    front = interface(Front)
    assert front.methods["open"].public and not front.methods["private"].public
    assert lumi.ServiceInterface.from_json(front.to_json()) == front


def test_openapi_declares_the_security_schemes() -> None:
    """Every operation needs mutualTLS; a public one on a service with an auth handler needs a
    bearer token instead, and one without needs nothing."""
    from lumi.codegen.openapi import document

    class Gate(lumi.Service):
        @lumi.auth
        def who(self, token: str) -> lumi.User: ...

        @lumi.api(public=True)
        async def enter(self) -> None: ...

    doc = document(interface(Gate))
    assert doc["security"] == [{"mutualTLS": []}]
    assert set(doc["components"]["securitySchemes"]) == {"mutualTLS", "bearerAuth"}
    assert doc["paths"]["/Gate/enter"]["post"]["security"] == [{"bearerAuth": []}]
    assert document(interface(Front))["paths"]["/Front/open"]["post"]["security"] == [{}]
    assert "security" not in document(interface(Front))["paths"]["/Front/private"]["post"]


async def test_handshake_timeout_closes_a_silent_connection(tmp_path: Path) -> None:
    """A client that connects to a TLS port and sends nothing is dropped after the handshake
    timeout."""
    from lumi.transports.tls_server import TlsConnection

    kit = TlsKit(tmp_path)
    context = kit.tls("Server").server_context()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: TlsConnection(context, asyncio.Protocol(), handshake_timeout=0.2), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by the server
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


def test_policy_decisions_are_remembered_within_a_bound() -> None:
    """A decision asked again is the same answer, and a flood of distinct callers does not
    grow what a policy remembers past its bound."""
    from lumi.security import policy as policy_module

    policy = Policy("shop", interface(Store), AccessConfig(allow=["Front"]))
    for _ in range(2):
        assert policy.allows(who("Front"), "put")
        assert not policy.allows(who("Other"), "put")
    for n in range(policy_module._REMEMBERED + 10):
        caller = Identity.parse(f"spiffe://shop/S{n}")
        assert caller is not None and not policy.allows(caller, "put")
    assert len(policy._allowed) <= policy_module._REMEMBERED
    assert policy.allows(who("Front"), "put") and not policy.allows(who("Other"), "put")


async def test_tls_records_both_ways_and_no_session_tickets(tmp_path: Path) -> None:
    """Over a real connection, a message of many records arrives whole in each direction, the
    server knows the client's identity, and the server sent no session ticket (its channels
    never resume, so a ticket would be work for nothing)."""
    from lumi.transports.tls import transport_identity
    from lumi.transports.tls_server import TlsClientConnection, TlsConnection

    kit = TlsKit(tmp_path)
    message = bytes(range(256)) * 300  # 76,800 bytes: five records or more
    seen: list[str | None] = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            seen.append(transport_identity(transport))

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    class Reader(asyncio.Protocol):
        def __init__(self) -> None:
            self.received = bytearray()
            self.whole = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            self.received += data
            if len(self.received) >= len(message) and not self.whole.done():
                self.whole.set_result(None)

    loop = asyncio.get_running_loop()
    context = kit.tls("Server").server_context()
    server = await loop.create_server(lambda: TlsConnection(context, Echo()), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = Reader()
    client = TlsClientConnection(kit.tls("Front").client_context(), reader, "localhost")
    try:
        await loop.create_connection(lambda: client, "127.0.0.1", port)
        async with asyncio.timeout(10):
            await client.handshake
            client.transport.write(message)
            await reader.whole
        assert bytes(reader.received) == message
        assert seen == [kit.identity("Front")]
        session = client.sslobj.session
        assert session is None or not session.has_ticket
    finally:
        client.close()
        server.close()
        await server.wait_closed()
