"""Resource connections against a real PostgreSQL: start-up waits, outage, reconnect, health."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import lumi
from lumi.model.hints import Retry
from lumi.runtime_services.resilience.policies import BudgetSettings, Policies
from lumi.runtimes.stack import RuntimeServices
from lumi.testing import wait_until
from tests.servers import PG_BIN, Postgres

pytestmark = pytest.mark.skipif(not PG_BIN.is_dir(), reason="needs apt postgresql")

DSN: dict[str, str] = {}


class Ledger(lumi.Service):
    """Answers from PostgreSQL through a lumi.resource connection."""

    db = lumi.resource(
        lambda: psycopg.AsyncConnection.connect(DSN["url"], autocommit=True),
        check=lambda conn: conn.execute("SELECT 1"),
        close=lambda conn: conn.close(),
        errors=(psycopg.OperationalError,),
        retry=Retry(attempts=100, backoff=0.02, max_backoff=0.2),
    )

    @lumi.api(idempotent=True)
    async def answer(self) -> int:
        async def query(conn: Any) -> int:
            cursor = await conn.execute("SELECT 41 + 1")
            row = await cursor.fetchone()
            return int(row[0])

        return await self.db.run(query)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A private PostgreSQL cluster (not started), destroyed after the test."""
    server = Postgres()
    DSN["url"] = server.dsn
    try:
        yield server
    finally:
        server.destroy()


def patient() -> RuntimeServices:
    """Client retries long enough to ride out a database restart."""
    return RuntimeServices(
        policies=Policies(
            retry=Retry(attempts=60, backoff=0.02, max_backoff=0.25),
            budget=BudgetSettings(ratio=0.2, reserve=200),
        )
    )


async def test_startup_waits_for_the_database_with_a_line_per_attempt(
    postgres: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    """A service whose database is down at start-up waits, logging, and starts once it is up."""
    app = lumi.App([Ledger])
    with caplog.at_level(logging.INFO, logger="lumi.resource"):
        starting = asyncio.create_task(app.start())
        await wait_until(
            lambda: any("waiting for Ledger.db" in r.getMessage() for r in caplog.records),
            message="a waiting line",
        )
        assert not starting.done() and not app.health()["ok"]
        await asyncio.to_thread(postgres.start)
        await asyncio.wait_for(starting, 20)
    try:
        assert app.health()["ok"] and await app.client(Ledger).answer() == 42
        waiting = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
        assert "attempt 1" in waiting[0] and "OperationalError" in waiting[0]
    finally:
        await app.stop()


async def test_service_keeps_answering_across_a_database_restart(postgres: Postgres) -> None:
    """The database stops under load: calls fail UNAVAILABLE, health drops; once it is back the
    connection is re-opened and every call succeeds again."""
    await asyncio.to_thread(postgres.start)
    async with lumi.App([Ledger], runtime=patient()) as app:
        client = app.client(Ledger)
        resource = app.service(Ledger).db
        outcomes: list[object] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                try:
                    outcomes.append(await client.answer())
                except lumi.LumiError as exc:
                    outcomes.append(exc)
                await asyncio.sleep(0.005)

        workers = [asyncio.create_task(load()) for _ in range(3)]
        await wait_until(lambda: len(outcomes) >= 20, message="answers before the outage")
        await asyncio.to_thread(postgres.stop)
        await wait_until(lambda: not app.health()["ok"], timeout=10, message="health to drop")
        assert "OperationalError" in app.health()["services"]["Ledger"]["db"]["error"]
        await asyncio.to_thread(postgres.start)
        await wait_until(lambda: app.health()["ok"], timeout=15, message="health to recover")
        # Once the breaker's next trial succeeds, every call answers again.
        await wait_until(
            lambda: outcomes[-30:] == [42] * 30, timeout=15, message="30 answers in a row"
        )
        stop.set()
        await asyncio.gather(*workers)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert all(isinstance(e, lumi.Unavailable) for e in errors)
    assert outcomes[:20] == [42] * 20
    assert resource.reconnects >= 1


async def test_connect_opens_a_resource_outside_a_service(postgres: Postgres) -> None:
    """lumi.connect() opens with retry and reports a connection failure as UNAVAILABLE."""
    await asyncio.to_thread(postgres.start)
    res = await lumi.connect(
        lambda: psycopg.AsyncConnection.connect(DSN["url"], autocommit=True),
        name="pg",
        close=lambda conn: conn.close(),
        errors=(psycopg.OperationalError,),
    )
    try:
        assert res.health()["ok"]
        await asyncio.to_thread(postgres.stop)
        with pytest.raises(lumi.Unavailable, match="pg is unavailable"):
            await res.run(lambda conn: conn.execute("SELECT 1"))
        assert not res.health()["ok"]
    finally:
        await res.aclose()
