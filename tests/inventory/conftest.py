"""Inventory fixtures: each store test gets a fresh SQLite file or a fresh PostgreSQL schema
(dropped afterwards), and the same tests run against both."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from controllerd.broker import PrivateBroker
from inventory import InventoryConfig, Store, open_store, parse_config

PG_URL = os.environ.get("INVENTORY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class StoreSpec:
    """Where one test's ledger lives."""

    kind: str
    url: str
    schema: str

    def open(self) -> Store:
        return open_store(self.url, schema=self.schema)

    async def execute(self, sql: str) -> None:
        """Raw SQL behind the service's back (tampering)."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite://"))
            try:
                conn.executescript(sql)
                conn.commit()
            finally:
                conn.close()
            return
        pg = await asyncpg.connect(self.url, server_settings={"search_path": self.schema})
        try:
            await pg.execute(sql)
        finally:
            await pg.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreSpec]:
    if request.param == "sqlite":
        yield StoreSpec(kind="sqlite", url=f"sqlite://{tmp_path / 'ledger.sqlite3'}", schema="x")
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is needed ({exc}); ./dev test starts one")
    await conn.close()
    yield StoreSpec(kind="postgresql", url=PG_URL, schema=schema)
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(workdir=tmp_path / "broker") as running:
        yield running


def inventory_config(spec: StoreSpec, *, port: int, site: str = "site-a") -> InventoryConfig:
    return parse_config(
        {
            "inventory": {"site": site},
            "mqtt": {"port": port, "reconnect_initial_s": 0.1, "reconnect_max_s": 1.0},
            "store": {"url": spec.url, "schema": spec.schema},
            "logging": {"format": "json"},
        }
    )


def config_toml(spec: StoreSpec, *, port: int, site: str = "site-a") -> str:
    return (
        f'[inventory]\nsite = "{site}"\n\n'
        f"[mqtt]\nport = {port}\nreconnect_initial_s = 0.1\nreconnect_max_s = 1.0\n\n"
        f'[store]\nurl = "{spec.url}"\nschema = "{spec.schema}"\n\n'
        '[logging]\nformat = "json"\n'
    )
